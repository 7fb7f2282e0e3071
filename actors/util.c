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

void
wire_u32(wire_writer *w, uint32_t v)
{
	unsigned char b[4];
	for (int i = 0; i < 4; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	wire_bytes(w, b, 4);
}

void
wire_u64(wire_writer *w, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	wire_bytes(w, b, 8);
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
	uint32_t v = 0;
	for (int i = 0; p != NULL && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

uint64_t
wire_get_u64(wire_reader *r)
{
	const unsigned char *p = wire_take(r, 8);
	uint64_t v = 0;
	for (int i = 0; p != NULL && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
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

void
actors__pack_id(msgpack_packer *p, uint64_t id)
{
	if (id == 0) {
		msgpack_pack_nil(p);
		return;
	}
	char buf[24];
	int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)id);
	actors__pack_strn(p, buf, (size_t)n);
}

void
actors__format_time(uint64_t unix_ms, char *buf, size_t size)
{
	time_t seconds = (time_t)(unix_ms / 1000u);
	struct tm tm;
	gmtime_r(&seconds, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, (unsigned)(unix_ms % 1000u));
}

void
actors__pack_time(msgpack_packer *p, uint64_t unix_ms)
{
	char buf[40];
	actors__format_time(unix_ms, buf, sizeof buf);
	actors__pack_str(p, buf);
}
