/*
 * outbox.c — the effect outbox a source actor keeps in its state, and the
 * dedupe table a target keeps in its state (protocol in persistence.h).
 *
 * Both are plain data owned by one actor's state: no locks, no threads.
 * Their encodings are little-endian with a version byte so they can sit
 * inside any kind's snapshot; decoders check every length.
 *
 * Outbox encoding: u32 version, u64 next_sequence, u32 count, then per
 * effect: u32 kind, u64 id, u32 type, u64 sequence, u64 lsn, u32 bytes,
 * payload.
 * Dedupe encoding: u32 version, u32 count, then per source: u32 kind,
 * u64 id, u64 sequence.
 */
#include "persistence/internal.h"

#define OUTBOX_FORMAT_VERSION 1u
#define DEDUPE_FORMAT_VERSION 1u
#define OUTBOX_EFFECT_HEADER_BYTES 36u
#define DEDUPE_ENTRY_BYTES 20u
/* An outbox array this small is not shrunk further (only freed when
 * empty): the effects of one event fit. */
#define OUTBOX_CAPACITY_KEPT 8u

/* ---- outbox ---------------------------------------------------------------- */

static int
outbox_reserve(ps_outbox *o, uint32_t count)
{
	if (count <= o->capacity)
		return PS_OK;
	uint32_t capacity = o->capacity ? o->capacity * 2 : 8;
	while (capacity < count)
		capacity *= 2;
	ps_effect *e = realloc(o->effects, capacity * sizeof *e);
	if (e == NULL)
		return PS_ENOMEM;
	o->effects = e;
	o->capacity = capacity;
	return PS_OK;
}

/* Gives back what a burst grew: the array is freed when the last effect
 * is confirmed and halved when a quarter of it is in use, so an actor
 * that owed thousands of effects for a moment does not keep room for
 * them while it stays active (a follow burst on Reed98 left ~12 MB of
 * outbox arrays behind, nearly all empty). Halving at a quarter keeps
 * a steady count from reallocating back and forth. */
static void
outbox_shrink(ps_outbox *o)
{
	if (o->count == 0) {
		free(o->effects);
		o->effects = NULL;
		o->capacity = 0;
		return;
	}
	if (o->capacity <= OUTBOX_CAPACITY_KEPT || o->count > o->capacity / 4)
		return;
	uint32_t capacity = o->capacity / 2;
	ps_effect *e = realloc(o->effects, capacity * sizeof *e);
	if (e == NULL)
		return; /* keeps the larger array: still valid */
	o->effects = e;
	o->capacity = capacity;
}

int
ps_outbox_add(ps_outbox *o, rt_addr target, uint32_t type, const void *payload,
	size_t payload_bytes, uint64_t lsn, uint64_t *sequence_out)
{
	ps__assert(o != NULL);
	ps__assert(payload != NULL || payload_bytes == 0);
	if (payload_bytes > PS_EFFECT_PAYLOAD_BYTES_MAX)
		return PS_ETOOBIG;
	if (o->count >= PS_OUTBOX_EFFECTS_MAX)
		return PS_EFULL;
	int rc = outbox_reserve(o, o->count + 1);
	if (rc != 0)
		return rc;
	unsigned char *copy = malloc(payload_bytes ? payload_bytes : 1);
	if (copy == NULL)
		return PS_ENOMEM;
	if (payload_bytes > 0)
		memcpy(copy, payload, payload_bytes);
	ps_effect *e = &o->effects[o->count++];
	e->target = target;
	e->type = type;
	e->payload_bytes = (uint32_t)payload_bytes;
	e->sequence = ++o->next_sequence;
	e->lsn = lsn;
	e->payload = copy;
	e->sent = false;
	if (sequence_out != NULL)
		*sequence_out = e->sequence;
	return PS_OK;
}

int
ps_outbox_confirm(ps_outbox *o, uint64_t sequence)
{
	ps__assert(o != NULL);
	/* Effects are in sequence order; confirmations mostly hit the front. */
	for (uint32_t i = 0; i < o->count; i++) {
		if (o->effects[i].sequence != sequence)
			continue;
		free(o->effects[i].payload);
		memmove(&o->effects[i], &o->effects[i + 1],
			(o->count - i - 1) * sizeof *o->effects);
		o->count--;
		outbox_shrink(o);
		return PS_OK;
	}
	return PS_ENOTFOUND;
}

uint32_t
ps_outbox_pending(const ps_outbox *o, const ps_effect **effects_out)
{
	ps__assert(o != NULL);
	ps__assert(effects_out != NULL);
	*effects_out = o->effects;
	return o->count;
}

void
ps_outbox_reset_sent(ps_outbox *o)
{
	for (uint32_t i = 0; i < o->count; i++)
		o->effects[i].sent = false;
}

size_t
ps_outbox_encoded_bytes(const ps_outbox *o)
{
	size_t n = 16;
	for (uint32_t i = 0; i < o->count; i++)
		n += OUTBOX_EFFECT_HEADER_BYTES + o->effects[i].payload_bytes;
	return n;
}

size_t
ps_outbox_encode(const ps_outbox *o, void *out)
{
	unsigned char *p = out;
	ps__store_u32(p, OUTBOX_FORMAT_VERSION);
	ps__store_u64(p + 4, o->next_sequence);
	ps__store_u32(p + 12, o->count);
	size_t n = 16;
	for (uint32_t i = 0; i < o->count; i++) {
		const ps_effect *e = &o->effects[i];
		ps__store_u32(p + n, e->target.kind);
		ps__store_u64(p + n + 4, e->target.id);
		ps__store_u32(p + n + 12, e->type);
		ps__store_u64(p + n + 16, e->sequence);
		ps__store_u64(p + n + 24, e->lsn);
		ps__store_u32(p + n + 32, e->payload_bytes);
		n += OUTBOX_EFFECT_HEADER_BYTES;
		if (e->payload_bytes > 0)
			memcpy(p + n, e->payload, e->payload_bytes);
		n += e->payload_bytes;
	}
	ps__assert(n == ps_outbox_encoded_bytes(o));
	return n;
}

void
ps_outbox_free(ps_outbox *o)
{
	if (o == NULL)
		return;
	for (uint32_t i = 0; i < o->count; i++)
		free(o->effects[i].payload);
	free(o->effects);
	memset(o, 0, sizeof *o);
}

int
ps_outbox_decode(ps_outbox *o, const void *bytes, size_t length,
	size_t *consumed_out)
{
	ps__assert(o != NULL);
	const unsigned char *p = bytes;
	if (length < 16)
		return PS_ECORRUPT;
	if (ps__load_u32(p) != OUTBOX_FORMAT_VERSION)
		return PS_EVERSION;
	uint32_t count = ps__load_u32(p + 12);
	if (count > PS_OUTBOX_EFFECTS_MAX)
		return PS_ECORRUPT;
	ps_outbox fresh = {0};
	fresh.next_sequence = ps__load_u64(p + 4);
	size_t n = 16;
	int rc = outbox_reserve(&fresh, count);
	for (uint32_t i = 0; i < count && rc == 0; i++) {
		if (length - n < OUTBOX_EFFECT_HEADER_BYTES) {
			rc = PS_ECORRUPT;
			break;
		}
		const unsigned char *h = p + n;
		uint32_t payload_bytes = ps__load_u32(h + 32);
		uint64_t sequence = ps__load_u64(h + 16);
		n += OUTBOX_EFFECT_HEADER_BYTES;
		bool ordered = fresh.count == 0 ||
			sequence > fresh.effects[fresh.count - 1].sequence;
		if (payload_bytes > PS_EFFECT_PAYLOAD_BYTES_MAX ||
			payload_bytes > length - n || !ordered ||
			sequence > fresh.next_sequence) {
			rc = PS_ECORRUPT;
			break;
		}
		unsigned char *copy = malloc(payload_bytes ? payload_bytes : 1);
		if (copy == NULL) {
			rc = PS_ENOMEM;
			break;
		}
		memcpy(copy, p + n, payload_bytes);
		n += payload_bytes;
		fresh.effects[fresh.count++] = (ps_effect){
			.target = rt_addr_make(ps__load_u32(h), ps__load_u64(h + 4)),
			.type = ps__load_u32(h + 12),
			.payload_bytes = payload_bytes,
			.sequence = sequence,
			.lsn = ps__load_u64(h + 24),
			.payload = copy,
			.sent = false,
		};
	}
	if (rc != 0) {
		ps_outbox_free(&fresh);
		return rc;
	}
	ps_outbox_free(o);
	*o = fresh;
	if (consumed_out != NULL)
		*consumed_out = n;
	return PS_OK;
}

int
ps_effect_parse(const void *bytes, size_t length, ps_effect_header *out,
	const void **payload_out, size_t *payload_bytes_out)
{
	if (bytes == NULL || length < sizeof *out)
		return PS_ECORRUPT;
	memcpy(out, bytes, sizeof *out);
	if (out->reserved != 0 || out->source_kind == RT_KIND_NONE)
		return PS_ECORRUPT;
	*payload_out = (const unsigned char *)bytes + sizeof *out;
	*payload_bytes_out = length - sizeof *out;
	return PS_OK;
}

/* ---- dedupe ----------------------------------------------------------------- */

static int
addr_compare(rt_addr a, rt_addr b)
{
	if (a.kind != b.kind)
		return a.kind < b.kind ? -1 : 1;
	if (a.id != b.id)
		return a.id < b.id ? -1 : 1;
	return 0;
}

/* Index of source, or of where it would go. */
static uint32_t
dedupe_find(const ps_dedupe *d, rt_addr source, bool *found)
{
	uint32_t lo = 0, hi = d->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = addr_compare(d->entries[mid].source, source);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

bool
ps_dedupe_seen(const ps_dedupe *d, rt_addr source, uint64_t sequence)
{
	ps__assert(d != NULL);
	bool found;
	uint32_t i = dedupe_find(d, source, &found);
	return found && d->entries[i].sequence >= sequence;
}

int
ps_dedupe_record(ps_dedupe *d, rt_addr source, uint64_t sequence)
{
	ps__assert(d != NULL);
	bool found;
	uint32_t i = dedupe_find(d, source, &found);
	if (found) {
		if (sequence > d->entries[i].sequence)
			d->entries[i].sequence = sequence;
		return PS_OK;
	}
	if (d->count >= PS_DEDUPE_SOURCES_MAX)
		return PS_EFULL;
	if (d->count == d->capacity) {
		uint32_t capacity = d->capacity ? d->capacity * 2 : 8;
		ps_dedupe_entry *e = realloc(d->entries, capacity * sizeof *e);
		if (e == NULL)
			return PS_ENOMEM;
		d->entries = e;
		d->capacity = capacity;
	}
	memmove(&d->entries[i + 1], &d->entries[i],
		(d->count - i) * sizeof *d->entries);
	d->entries[i] = (ps_dedupe_entry){source, sequence};
	d->count++;
	return PS_OK;
}

size_t
ps_dedupe_encoded_bytes(const ps_dedupe *d)
{
	return 8 + (size_t)d->count * DEDUPE_ENTRY_BYTES;
}

size_t
ps_dedupe_encode(const ps_dedupe *d, void *out)
{
	unsigned char *p = out;
	ps__store_u32(p, DEDUPE_FORMAT_VERSION);
	ps__store_u32(p + 4, d->count);
	size_t n = 8;
	for (uint32_t i = 0; i < d->count; i++, n += DEDUPE_ENTRY_BYTES) {
		ps__store_u32(p + n, d->entries[i].source.kind);
		ps__store_u64(p + n + 4, d->entries[i].source.id);
		ps__store_u64(p + n + 12, d->entries[i].sequence);
	}
	return n;
}

int
ps_dedupe_decode(ps_dedupe *d, const void *bytes, size_t length,
	size_t *consumed_out)
{
	const unsigned char *p = bytes;
	if (length < 8)
		return PS_ECORRUPT;
	if (ps__load_u32(p) != DEDUPE_FORMAT_VERSION)
		return PS_EVERSION;
	uint32_t count = ps__load_u32(p + 4);
	if (count > PS_DEDUPE_SOURCES_MAX ||
		(length - 8) / DEDUPE_ENTRY_BYTES < count)
		return PS_ECORRUPT;
	ps_dedupe fresh = {0};
	if (count > 0) {
		fresh.entries = malloc(count * sizeof *fresh.entries);
		if (fresh.entries == NULL)
			return PS_ENOMEM;
		fresh.capacity = count;
	}
	size_t n = 8;
	for (uint32_t i = 0; i < count; i++, n += DEDUPE_ENTRY_BYTES) {
		rt_addr source = rt_addr_make(ps__load_u32(p + n),
			ps__load_u64(p + n + 4));
		if (i > 0 && addr_compare(fresh.entries[i - 1].source, source) >= 0) {
			free(fresh.entries);
			return PS_ECORRUPT;
		}
		fresh.entries[i] = (ps_dedupe_entry){source,
			ps__load_u64(p + n + 12)};
		fresh.count++;
	}
	ps_dedupe_free(d);
	*d = fresh;
	if (consumed_out != NULL)
		*consumed_out = n;
	return PS_OK;
}

void
ps_dedupe_free(ps_dedupe *d)
{
	if (d == NULL)
		return;
	free(d->entries);
	memset(d, 0, sizeof *d);
}
