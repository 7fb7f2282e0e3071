/*
 * actors/util.c — ids, hashing, the wire codec, replies and msgpack body
 * helpers shared by every actor kind of the social core.
 *
 * Invariants: wire fields are little-endian fixed width; a reader never
 * reads past its length (it sets failed and returns zeros instead); ids
 * from one generator strictly increase.
 *
 * What it deliberately does not do: read the clock (callers pass
 * rt_wall_ms) or draw randomness.
 */
#include "actors/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void
actors__assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	abort();
}

/* ---- ids ---------------------------------------------------------------- */

void
actors__idgen_init(actors__idgen *g)
{
	atomic_store(&g->last, 0);
}

uint64_t
actors__idgen_next(actors__idgen *g, uint32_t partition, uint64_t wall_ms)
{
	ACTORS_ASSERT(partition < ACTORS_PARTITIONS);
	uint64_t now = wall_ms > ACTORS_EPOCH_MS ? wall_ms - ACTORS_EPOCH_MS
						 : 0;
	uint64_t last = atomic_load_explicit(&g->last, memory_order_relaxed);
	uint64_t next;
	do {
		uint64_t last_ms = last >> ACTORS_ID_SEQUENCE_BITS;
		uint64_t last_seq = last & ACTORS_ID_SEQUENCE_MAX;
		if (now > last_ms)
			next = now << ACTORS_ID_SEQUENCE_BITS;
		else if (last_seq < ACTORS_ID_SEQUENCE_MAX)
			next = last + 1;
		else
			next = (last_ms + 1) << ACTORS_ID_SEQUENCE_BITS;
	} while (!atomic_compare_exchange_weak_explicit(&g->last, &last, next,
		memory_order_relaxed, memory_order_relaxed));
	uint64_t ms = next >> ACTORS_ID_SEQUENCE_BITS;
	ACTORS_ASSERT(ms < (1ull << ACTORS_ID_TIME_BITS));
	uint64_t id = (ms << (ACTORS_ID_SEQUENCE_BITS +
				     ACTORS_ID_PARTITION_BITS)) |
		((uint64_t)partition << ACTORS_ID_SEQUENCE_BITS) |
		(next & ACTORS_ID_SEQUENCE_MAX);
	ACTORS_ASSERT(actors__id_partition(id) == partition);
	return id;
}

uint64_t
actors__hash64(const void *bytes, size_t length)
{
	const unsigned char *p = bytes;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < length; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	/* FNV's low bits mix poorly for short keys; fold the high half in. */
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return h;
}

uint32_t
actors__name_partition(const char *lower_name)
{
	return (uint32_t)(actors__hash64(lower_name, strlen(lower_name)) &
		(ACTORS_PARTITIONS - 1u));
}

/* ---- wire --------------------------------------------------------------- */

void
wire_init(wire_writer *w)
{
	memset(w, 0, sizeof *w);
}

void
wire_free(wire_writer *w)
{
	free(w->bytes);
	memset(w, 0, sizeof *w);
}

static bool
wire_reserve(wire_writer *w, size_t extra)
{
	if (w->failed)
		return false;
	if (w->length + extra <= w->capacity)
		return true;
	size_t capacity = w->capacity ? w->capacity * 2 : 64;
	while (capacity < w->length + extra)
		capacity *= 2;
	unsigned char *bytes = realloc(w->bytes, capacity);
	if (bytes == NULL) {
		w->failed = true;
		return false;
	}
	w->bytes = bytes;
	w->capacity = capacity;
	return true;
}

void
wire_bytes(wire_writer *w, const void *bytes, size_t length)
{
	if (length == 0 || !wire_reserve(w, length))
		return;
	memcpy(w->bytes + w->length, bytes, length);
	w->length += length;
}

void
wire_u8(wire_writer *w, uint8_t v)
{
	wire_bytes(w, &v, 1);
}

/* Little-endian on the wire whatever the host; one load or store each
 * (fields are read and written several times per message of a
 * fan-out: byte loops cost 70 instructions a field). */
static inline uint32_t
to_le32(uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return __builtin_bswap32(v);
#else
	return v;
#endif
}

static inline uint64_t
to_le64(uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return __builtin_bswap64(v);
#else
	return v;
#endif
}

void
wire_u32(wire_writer *w, uint32_t v)
{
	if (!wire_reserve(w, 4))
		return;
	v = to_le32(v);
	memcpy(w->bytes + w->length, &v, 4);
	w->length += 4;
}

void
wire_u64(wire_writer *w, uint64_t v)
{
	if (!wire_reserve(w, 8))
		return;
	v = to_le64(v);
	memcpy(w->bytes + w->length, &v, 8);
	w->length += 8;
}

void
wire_f64(wire_writer *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof u);
	wire_u64(w, u);
}

void
wire_strn(wire_writer *w, const char *s, size_t length)
{
	ACTORS_ASSERT(length <= UINT32_MAX);
	wire_u32(w, (uint32_t)length);
	wire_bytes(w, s, length);
}

void
wire_str(wire_writer *w, const char *s)
{
	wire_strn(w, s, s == NULL ? 0 : strlen(s));
}

void
wire_reader_init(wire_reader *r, const void *bytes, size_t length)
{
	r->bytes = bytes;
	r->length = length;
	r->offset = 0;
	r->failed = false;
}

static const unsigned char *
wire_take(wire_reader *r, size_t n)
{
	if (r->failed || r->length - r->offset < n) {
		r->failed = true;
		return NULL;
	}
	const unsigned char *p = r->bytes + r->offset;
	r->offset += n;
	return p;
}

uint8_t
wire_get_u8(wire_reader *r)
{
	const unsigned char *p = wire_take(r, 1);
	return p ? p[0] : 0;
}

uint32_t
wire_get_u32(wire_reader *r)
{
	const unsigned char *p = wire_take(r, 4);
	if (p == NULL)
		return 0;
	uint32_t v;
	memcpy(&v, p, 4);
	return to_le32(v);
}

uint64_t
wire_get_u64(wire_reader *r)
{
	const unsigned char *p = wire_take(r, 8);
	if (p == NULL)
		return 0;
	uint64_t v;
	memcpy(&v, p, 8);
	return to_le64(v);
}

double
wire_get_f64(wire_reader *r)
{
	uint64_t u = wire_get_u64(r);
	double v;
	memcpy(&v, &u, sizeof v);
	return v;
}

const char *
wire_get_str(wire_reader *r, size_t max_length, size_t *length)
{
	uint32_t n = wire_get_u32(r);
	*length = 0;
	if (r->failed)
		return NULL;
	if (n > max_length) {
		r->failed = true;
		return NULL;
	}
	const unsigned char *p = wire_take(r, n);
	if (p == NULL)
		return NULL;
	*length = n;
	return (const char *)p;
}

char *
wire_get_strdup(wire_reader *r, size_t max_length)
{
	size_t n;
	const char *s = wire_get_str(r, max_length, &n);
	if (s == NULL)
		return NULL;
	char *out = malloc(n + 1);
	if (out == NULL) {
		r->failed = true;
		return NULL;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return out;
}

void
wire_get_strbuf(wire_reader *r, char *buf, size_t size)
{
	ACTORS_ASSERT(size > 0);
	size_t n;
	const char *s = wire_get_str(r, size - 1, &n);
	if (s == NULL) {
		buf[0] = '\0';
		return;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
}

bool
wire_done(const wire_reader *r)
{
	return !r->failed && r->offset == r->length;
}

/* ---- replies ------------------------------------------------------------ */

rt_message *
actors__reply_make(rt_runtime *rt, uint32_t type, int code,
	const char *detail, const void *body, size_t body_length)
{
	size_t detail_length = detail == NULL ? 0 : strlen(detail);
	if (detail_length > ACTORS_DETAIL_BYTES_MAX)
		detail_length = ACTORS_DETAIL_BYTES_MAX;
	size_t size = sizeof(actors__reply_header) + detail_length +
		body_length;
	if (size > RT_MESSAGE_BYTES_MAX)
		return NULL;
	rt_message *m = rt_message_alloc(rt, type, (uint32_t)size);
	if (m == NULL)
		return NULL;
	actors__reply_header h = {code, (uint32_t)detail_length};
	memcpy(m->payload, &h, sizeof h);
	if (detail_length > 0)
		memcpy(m->payload + sizeof h, detail, detail_length);
	if (body_length > 0)
		memcpy(m->payload + sizeof h + detail_length, body,
			body_length);
	return m;
}

void
actors__reply(rt_actor *self, const rt_message *to, int code,
	const char *detail, const void *body, size_t body_length)
{
	if (to->correlation == 0)
		return; /* a plain send wants no answer */
	rt_message *m = actors__reply_make(rt_actor_runtime(self), to->type,
		code, detail, body, body_length);
	if (m == NULL) {
		/* Too big or out of memory: answer the error at least. */
		m = actors__reply_make(rt_actor_runtime(self), to->type,
			API_EUNAVAILABLE, "reply too large or out of memory",
			NULL, 0);
		if (m == NULL)
			return;
	}
	(void)rt_reply(self, to, m);
}

void
actors__reply_to_from(actors__reply_to *to, const rt_message *m)
{
	to->from = m->from;
	to->correlation = m->correlation;
}

void
actors__reply_later(rt_actor *self, const actors__reply_to *to, int code,
	const char *detail, const void *body, size_t body_length)
{
	if (to->correlation == 0)
		return;
	/* rt_reply reads the request's sender and correlation only. */
	rt_message header;
	memset(&header, 0, sizeof header);
	header.from = to->from;
	header.to = rt_self(self);
	header.correlation = to->correlation;
	actors__reply(self, &header, code, detail, body, body_length);
}

void
wire_reply_to(wire_writer *w, const actors__reply_to *to)
{
	wire_u32(w, to->from.kind);
	wire_u64(w, to->from.id);
	wire_u64(w, to->correlation);
}

void
wire_get_reply_to(wire_reader *r, actors__reply_to *to)
{
	uint32_t kind = wire_get_u32(r);
	uint64_t id = wire_get_u64(r);
	to->from = rt_addr_make(kind, id);
	to->correlation = wire_get_u64(r);
}

/* ---- msgpack bodies ----------------------------------------------------- */

void
actors__body_init(actors__body *b)
{
	msgpack_sbuffer_init(&b->buffer);
	/* msgpack-c's first chunk is 8 KiB, past malloc's per-thread cache:
	 * that malloc was most of a like's notification encode (perf). On
	 * failure the buffer starts empty, as msgpack-c's would. */
	b->buffer.data = malloc(ACTORS_BODY_BYTES_INITIAL);
	if (b->buffer.data != NULL)
		b->buffer.alloc = ACTORS_BODY_BYTES_INITIAL;
	msgpack_packer_init(&b->packer, &b->buffer, msgpack_sbuffer_write);
}

void
actors__body_free(actors__body *b)
{
	msgpack_sbuffer_destroy(&b->buffer);
}

void
actors__pack_strn(msgpack_packer *p, const char *s, size_t length)
{
	msgpack_pack_str(p, length);
	msgpack_pack_str_body(p, s, length);
}

void
actors__pack_str(msgpack_packer *p, const char *s)
{
	if (s == NULL) {
		msgpack_pack_nil(p);
		return;
	}
	actors__pack_strn(p, s, strlen(s));
}

void
actors__pack_key(msgpack_packer *p, const char *key)
{
	actors__pack_strn(p, key, strlen(key));
}

/* Decimal digits of v written backwards ending at end; returns the first.
 * (snprintf was a tenth of a feed read's CPU: every post body carries
 * ids and a time.) */
static char *
decimal_backwards(char *end, uint64_t v)
{
	do {
		*--end = (char)('0' + v % 10u);
		v /= 10u;
	} while (v != 0);
	return end;
}

void
actors__pack_id(msgpack_packer *p, uint64_t id)
{
	if (id == 0) {
		msgpack_pack_nil(p);
		return;
	}
	char buf[24];
	char *start = decimal_backwards(buf + sizeof buf, id);
	actors__pack_strn(p, start, (size_t)(buf + sizeof buf - start));
}

/* Writes v as exactly `width` digits at out. */
static void
digits(char *out, uint32_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = (char)('0' + v % 10u);
		v /= 10u;
	}
}

void
actors__format_time(uint64_t unix_ms, char *buf, size_t size)
{
	/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm,
	 * exact for every day of the proleptic Gregorian calendar). */
	uint64_t seconds = unix_ms / 1000u;
	uint64_t days = seconds / 86400u;
	uint32_t in_day = (uint32_t)(seconds % 86400u);
	uint64_t z = days + 719468u;
	uint64_t era = z / 146097u;
	uint32_t doe = (uint32_t)(z - era * 146097u);
	uint32_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
	uint64_t year = (uint64_t)yoe + era * 400u;
	uint32_t doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);
	uint32_t mp = (5u * doy + 2u) / 153u;
	uint32_t day = doy - (153u * mp + 2u) / 5u + 1u;
	uint32_t month = mp < 10u ? mp + 3u : mp - 9u;
	year += month <= 2u;
	if (year > 9999u || size < 25u) {
		snprintf(buf, size, "%04llu-%02u-%02uT%02u:%02u:%02u.%03uZ",
			(unsigned long long)year, month, day, in_day / 3600u,
			in_day / 60u % 60u, in_day % 60u,
			(unsigned)(unix_ms % 1000u));
		return;
	}
	/* YYYY-MM-DDTHH:MM:SS.mmmZ */
	digits(buf, (uint32_t)year, 4);
	buf[4] = '-';
	digits(buf + 5, month, 2);
	buf[7] = '-';
	digits(buf + 8, day, 2);
	buf[10] = 'T';
	digits(buf + 11, in_day / 3600u, 2);
	buf[13] = ':';
	digits(buf + 14, in_day / 60u % 60u, 2);
	buf[16] = ':';
	digits(buf + 17, in_day % 60u, 2);
	buf[19] = '.';
	digits(buf + 20, (uint32_t)(unix_ms % 1000u), 3);
	buf[23] = 'Z';
	buf[24] = '\0';
}

void
actors__pack_time(msgpack_packer *p, uint64_t unix_ms)
{
	char buf[40];
	actors__format_time(unix_ms, buf, sizeof buf);
	actors__pack_str(p, buf);
}
