/*
 * actors/inbox_stream.c — a user's live stream hub (events with the
 * user's stream seq, a bounded ring for resume, subscribers with credit)
 * and a celebrity's set of online followers.
 *
 * Invariants:
 *   - held events have consecutive seqs ending at last_seq, at most
 *     INBOX_STREAM_EVENTS_MAX of them and INBOX_STREAM_BYTES_MAX bytes;
 *     their data lies in one arena in seq order (it may wrap once);
 *   - every subscriber has acked_seq <= sent_seq <= last_seq and
 *     sent_seq - acked_seq <= INBOX_STREAM_UNACKED_MAX; one more event
 *     for a subscriber at the bound is a CUT_OFF and its removal;
 *   - a subscriber receives every event after its start exactly once and
 *     in seq order, or a RESYNC / CUT_OFF that tells it to refetch.
 *
 * What it deliberately does not do: send (the deliver callback does, with
 * rt_send, which never blocks), time out silent sessions (the gateway's
 * pings close them and unsubscribe), or hold events for ever.
 */
#include "actors/engage.h"

#include <stdlib.h>

/* {"reason": "slow"}, {"reason": "replaced"}, {} as msgpack. */
static const unsigned char cut_slow_data[] = {0x81, 0xa6, 'r', 'e', 'a', 's',
	'o', 'n', 0xa4, 's', 'l', 'o', 'w'};
static const unsigned char cut_replaced_data[] = {0x81, 0xa6, 'r', 'e', 'a',
	's', 'o', 'n', 0xa8, 'r', 'e', 'p', 'l', 'a', 'c', 'e', 'd'};
static const unsigned char resync_data[] = {0x80};

static_assert(INBOX_STREAM_EVENT_BYTES_MAX <= INBOX_STREAM_BYTES_MAX,
	"one event fits the arena");
static_assert(INBOX_STREAM_UNACKED_MAX >= INBOX_STREAM_EVENTS_MAX,
	"a full replay does not cut a subscriber off by itself");

void
inbox_stream_init(inbox_stream *s)
{
	ACTORS_ASSERT(s != NULL);
	memset(s, 0, sizeof *s);
}

void
inbox_stream_free(inbox_stream *s)
{
	ACTORS_ASSERT(s != NULL);
	free(s->bytes);
	inbox_stream_init(s);
}

bool
inbox_stream_online(const inbox_stream *s)
{
	ACTORS_ASSERT(s != NULL);
	return s->subscribers_count > 0;
}

void
inbox_stream_skip(inbox_stream *s)
{
	ACTORS_ASSERT(s != NULL);
	s->count = 0;
	s->head = 0;
	s->last_seq++;
	for (uint32_t i = 0; i < s->subscribers_count; i++)
		s->subscribers[i].sent_seq = s->subscribers[i].acked_seq =
			s->last_seq;
}

void
inbox_stream_reset(inbox_stream *s, uint64_t seq_gap)
{
	ACTORS_ASSERT(s != NULL);
	s->subscribers_count = 0;
	if (seq_gap == 0)
		return;
	s->count = 0;
	s->head = 0;
	s->last_seq += seq_gap;
}

static bool
content_type(api_event_type type)
{
	return type >= API_EVENT_FEED_POST && type <= API_EVENT_POST_UPDATED;
}

/* ---- the event ring and its arena --------------------------------------- */

static const inbox_stream_slot *
slot_at(const inbox_stream *s, uint32_t i)
{
	ACTORS_ASSERT(i < s->count);
	return &s->slots[(s->head + i) % INBOX_STREAM_EVENTS_MAX];
}

static void
drop_oldest(inbox_stream *s)
{
	ACTORS_ASSERT(s->count > 0);
	s->head = (s->head + 1u) % INBOX_STREAM_EVENTS_MAX;
	s->count--;
}

static uint32_t
bytes_held(const inbox_stream *s)
{
	uint32_t total = 0;
	for (uint32_t i = 0; i < s->count; i++)
		total += slot_at(s, i)->length;
	return total;
}

/* Where length bytes fit without dropping anything, or UINT32_MAX. The
 * arena is used from the oldest event's offset to the newest's end,
 * wrapping to 0 at most once. */
static uint32_t
arena_fit(const inbox_stream *s, uint32_t length)
{
	if (s->count == 0)
		return length <= s->bytes_capacity ? 0 : UINT32_MAX;
	const inbox_stream_slot *oldest = slot_at(s, 0);
	const inbox_stream_slot *newest = slot_at(s, s->count - 1u);
	uint32_t start = oldest->offset;
	uint32_t end = newest->offset + newest->length;
	if (newest->offset >= start) {
		if (s->bytes_capacity - end >= length)
			return end;
		return length <= start ? 0 : UINT32_MAX;
	}
	return start - end >= length ? end : UINT32_MAX;
}

/* Moves the held events into a fresh arena of capacity bytes, oldest at
 * offset 0. Nothing changes on failure. */
static int
arena_resize(inbox_stream *s, uint32_t capacity)
{
	ACTORS_ASSERT(capacity <= INBOX_STREAM_BYTES_MAX);
	ACTORS_ASSERT(capacity >= bytes_held(s));
	unsigned char *bytes = malloc(capacity);
	if (bytes == NULL)
		return API_EUNAVAILABLE;
	uint32_t at = 0;
	for (uint32_t i = 0; i < s->count; i++) {
		inbox_stream_slot *slot =
			&s->slots[(s->head + i) % INBOX_STREAM_EVENTS_MAX];
		memcpy(bytes + at, s->bytes + slot->offset, slot->length);
		slot->offset = at;
		at += slot->length;
	}
	free(s->bytes);
	s->bytes = bytes;
	s->bytes_capacity = capacity;
	return 0;
}

/* Finds room for length bytes: grows the arena while it is below its cap
 * and too small, then drops oldest events. Returns the offset, or
 * UINT32_MAX when out of memory (nothing changed then). */
static uint32_t
arena_place(inbox_stream *s, uint32_t length)
{
	/* bytes_held walks the ring: only asked while the arena may grow. */
	uint32_t need;
	if (s->bytes_capacity < INBOX_STREAM_BYTES_MAX &&
		arena_fit(s, length) == UINT32_MAX &&
		(need = bytes_held(s) + length) > s->bytes_capacity) {
		uint32_t capacity = s->bytes_capacity == 0
			? INBOX_STREAM_BYTES_START
			: s->bytes_capacity;
		while (capacity < need && capacity < INBOX_STREAM_BYTES_MAX)
			capacity *= 2u;
		if (capacity > INBOX_STREAM_BYTES_MAX)
			capacity = INBOX_STREAM_BYTES_MAX;
		if (arena_resize(s, capacity) != 0)
			return UINT32_MAX;
	}
	if (s->count == INBOX_STREAM_EVENTS_MAX)
		drop_oldest(s);
	uint32_t offset;
	/* Bounded by count: each turn drops one event, and an empty arena
	 * fits any event (capacity >= INBOX_STREAM_EVENT_BYTES_MAX once
	 * grown for it). */
	while ((offset = arena_fit(s, length)) == UINT32_MAX)
		drop_oldest(s);
	return offset;
}

static void
store_event(inbox_stream *s, api_event_type type, const void *data,
	uint32_t length, uint32_t offset)
{
	ACTORS_ASSERT(s->count < INBOX_STREAM_EVENTS_MAX);
	inbox_stream_slot *slot =
		&s->slots[(s->head + s->count) % INBOX_STREAM_EVENTS_MAX];
	slot->offset = offset;
	slot->length = length;
	slot->type = (uint8_t)type;
	memcpy(s->bytes + offset, data, length);
	s->count++;
	s->last_seq++;
}

/* ---- subscribers -------------------------------------------------------- */

static uint32_t
subscriber_find(const inbox_stream *s, rt_addr addr, uint64_t id)
{
	for (uint32_t i = 0; i < s->subscribers_count; i++) {
		const inbox_stream_subscriber *sub = &s->subscribers[i];
		if (rt_addr_equal(sub->addr, addr) &&
			sub->subscription_id == id)
			return i;
	}
	return UINT32_MAX;
}

static void
subscriber_remove(inbox_stream *s, uint32_t i)
{
	ACTORS_ASSERT(i < s->subscribers_count);
	memmove(&s->subscribers[i], &s->subscribers[i + 1],
		(s->subscribers_count - i - 1u) * sizeof s->subscribers[0]);
	s->subscribers_count--;
}

/* Tells subscriber i it is cut off (seq = the last it was sent, where it
 * resumes from) and removes it. */
static void
cut_off(inbox_stream *s, uint32_t i, inbox_stream_cut_reason reason,
	inbox_stream_deliver_callback deliver, void *arg)
{
	inbox_stream_subscriber sub = s->subscribers[i];
	subscriber_remove(s, i);
	inbox_stream_event ev = {
		.type = API_EVENT_CUT_OFF,
		.seq = sub.sent_seq,
		.data = reason == INBOX_STREAM_CUT_SLOW ? cut_slow_data
							: cut_replaced_data,
		.length = reason == INBOX_STREAM_CUT_SLOW
			? (uint32_t)sizeof cut_slow_data
			: (uint32_t)sizeof cut_replaced_data,
	};
	deliver(arg, &sub, &ev);
}

int
inbox_stream_publish(inbox_stream *s, api_event_type type, const void *data,
	uint32_t length, uint32_t flags, inbox_stream_deliver_callback deliver,
	void *arg, uint64_t *seq_out)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(deliver != NULL);
	if (seq_out != NULL)
		*seq_out = 0;
	if (!content_type(type) || data == NULL || length == 0)
		return API_EINVALID;
	if (length > INBOX_STREAM_EVENT_BYTES_MAX)
		return API_ETOOLARGE;
	if ((flags & INBOX_STREAM_F_ONLINE_ONLY) && s->subscribers_count == 0)
		return 0;
	uint32_t offset = arena_place(s, length);
	if (offset == UINT32_MAX)
		return API_EUNAVAILABLE;
	store_event(s, type, data, length, offset);
	inbox_stream_event ev = {type, s->last_seq, data, length};
	for (uint32_t i = 0; i < s->subscribers_count;) {
		inbox_stream_subscriber *sub = &s->subscribers[i];
		ACTORS_ASSERT(sub->sent_seq + 1u == s->last_seq);
		if (sub->sent_seq - sub->acked_seq >= INBOX_STREAM_UNACKED_MAX) {
			cut_off(s, i, INBOX_STREAM_CUT_SLOW, deliver, arg);
			continue;
		}
		sub->sent_seq = s->last_seq;
		deliver(arg, sub, &ev);
		i++;
	}
	if (seq_out != NULL)
		*seq_out = s->last_seq;
	return 0;
}

/* Replays held events after since_seq to the newest subscriber, or sends
 * it one RESYNC when they are not all held. */
static void
resume(inbox_stream *s, bool has_since, uint64_t since_seq,
	inbox_stream_deliver_callback deliver, void *arg)
{
	inbox_stream_subscriber *sub =
		&s->subscribers[s->subscribers_count - 1u];
	if (!has_since || since_seq == s->last_seq)
		return;
	uint64_t oldest = s->last_seq - s->count + 1u;
	if (since_seq > s->last_seq || s->count == 0 ||
		since_seq + 1u < oldest) {
		inbox_stream_event ev = {API_EVENT_RESYNC, s->last_seq,
			resync_data, (uint32_t)sizeof resync_data};
		deliver(arg, sub, &ev);
		return;
	}
	sub->acked_seq = since_seq;
	ACTORS_ASSERT(sub->sent_seq - sub->acked_seq <= INBOX_STREAM_UNACKED_MAX);
	for (uint64_t seq = since_seq + 1u; seq <= s->last_seq; seq++) {
		const inbox_stream_slot *slot = slot_at(s,
			(uint32_t)(seq - oldest));
		inbox_stream_event ev = {(api_event_type)slot->type, seq,
			s->bytes + slot->offset, slot->length};
		deliver(arg, sub, &ev);
	}
}

int
inbox_stream_subscribe(inbox_stream *s, rt_addr addr,
	uint64_t subscription_id, bool has_since, uint64_t since_seq,
	inbox_stream_deliver_callback deliver, void *arg)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(deliver != NULL);
	if (addr.kind == RT_KIND_NONE || addr.kind >= RT_KINDS_MAX)
		return API_EINVALID;
	uint32_t existing = subscriber_find(s, addr, subscription_id);
	if (existing != UINT32_MAX)
		subscriber_remove(s, existing);
	if (s->subscribers_count == INBOX_STREAM_SUBSCRIBERS_MAX)
		cut_off(s, 0, INBOX_STREAM_CUT_REPLACED, deliver, arg);
	inbox_stream_subscriber *sub =
		&s->subscribers[s->subscribers_count++];
	sub->addr = addr;
	sub->subscription_id = subscription_id;
	sub->sent_seq = s->last_seq;
	sub->acked_seq = s->last_seq;
	resume(s, has_since, since_seq, deliver, arg);
	return 0;
}

int
inbox_stream_ack(inbox_stream *s, rt_addr addr, uint64_t subscription_id,
	uint64_t seq)
{
	ACTORS_ASSERT(s != NULL);
	uint32_t i = subscriber_find(s, addr, subscription_id);
	if (i == UINT32_MAX)
		return API_ENOTFOUND;
	inbox_stream_subscriber *sub = &s->subscribers[i];
	if (seq > sub->sent_seq)
		return API_EINVALID;
	if (seq > sub->acked_seq)
		sub->acked_seq = seq;
	return 0;
}

int
inbox_stream_unsubscribe(inbox_stream *s, rt_addr addr,
	uint64_t subscription_id)
{
	ACTORS_ASSERT(s != NULL);
	uint32_t i = subscriber_find(s, addr, subscription_id);
	if (i == UINT32_MAX)
		return API_ENOTFOUND;
	subscriber_remove(s, i);
	return 0;
}

/* ---- snapshot ----------------------------------------------------------- */

int
inbox_stream_encode(const inbox_stream *s, msgpack_packer *pk)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 4);
	rc |= msgpack_pack_uint32(pk, INBOX_STREAM_SNAPSHOT_VERSION);
	rc |= msgpack_pack_uint64(pk, s->last_seq);
	rc |= msgpack_pack_array(pk, s->count);
	for (uint32_t i = 0; i < s->count; i++) {
		const inbox_stream_slot *slot = slot_at(s, i);
		rc |= msgpack_pack_array(pk, 2);
		rc |= msgpack_pack_uint8(pk, slot->type);
		rc |= msgpack_pack_bin(pk, slot->length);
		rc |= msgpack_pack_bin_body(pk, s->bytes + slot->offset,
			slot->length);
	}
	rc |= msgpack_pack_array(pk, s->subscribers_count);
	for (uint32_t i = 0; i < s->subscribers_count; i++) {
		const inbox_stream_subscriber *sub = &s->subscribers[i];
		rc |= msgpack_pack_array(pk, 5);
		rc |= msgpack_pack_uint32(pk, sub->addr.kind);
		rc |= msgpack_pack_uint64(pk, sub->addr.id);
		rc |= msgpack_pack_uint64(pk, sub->subscription_id);
		rc |= msgpack_pack_uint64(pk, sub->sent_seq);
		rc |= msgpack_pack_uint64(pk, sub->acked_seq);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

static int
events_decode(inbox_stream *s, const msgpack_object *obj)
{
	const msgpack_object *items;
	uint32_t n;
	if (!engage_get_array(obj, INBOX_STREAM_EVENTS_MAX, &items, &n) ||
		n > s->last_seq)
		return API_EINVALID;
	uint64_t total = 0;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *f = engage_get_tuple(&items[i], 2);
		uint64_t type;
		if (f == NULL || !engage_get_u64(&f[0], &type) ||
			type < API_EVENT_FEED_POST ||
			type > API_EVENT_POST_UPDATED ||
			f[1].type != MSGPACK_OBJECT_BIN)
			return API_EINVALID;
		uint32_t length = f[1].via.bin.size;
		if (length == 0 || length > INBOX_STREAM_EVENT_BYTES_MAX ||
			!engage_msgpack_check(f[1].via.bin.ptr, length))
			return API_EINVALID;
		total += length;
	}
	if (total > INBOX_STREAM_BYTES_MAX)
		return API_EINVALID;
	uint32_t capacity = INBOX_STREAM_BYTES_START;
	while (capacity < total)
		capacity *= 2u;
	if (n > 0 && arena_resize(s, capacity) != 0)
		return API_EUNAVAILABLE;
	uint64_t last_seq = s->last_seq;
	s->last_seq = last_seq - n;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *f = items[i].via.array.ptr;
		uint32_t offset = arena_fit(s, f[1].via.bin.size);
		ACTORS_ASSERT(offset != UINT32_MAX);
		store_event(s, (api_event_type)f[0].via.u64,
			f[1].via.bin.ptr, f[1].via.bin.size, offset);
	}
	ACTORS_ASSERT(s->last_seq == last_seq);
	return 0;
}

static int
subscribers_decode(inbox_stream *s, const msgpack_object *obj)
{
	const msgpack_object *items;
	uint32_t n;
	if (!engage_get_array(obj, INBOX_STREAM_SUBSCRIBERS_MAX, &items, &n))
		return API_EINVALID;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *f = engage_get_tuple(&items[i], 5);
		uint64_t kind;
		inbox_stream_subscriber sub = {0};
		if (f == NULL || !engage_get_u64(&f[0], &kind) ||
			!engage_get_u64(&f[1], &sub.addr.id) ||
			!engage_get_u64(&f[2], &sub.subscription_id) ||
			!engage_get_u64(&f[3], &sub.sent_seq) ||
			!engage_get_u64(&f[4], &sub.acked_seq))
			return API_EINVALID;
		if (kind == RT_KIND_NONE || kind >= RT_KINDS_MAX)
			return API_EINVALID;
		sub.addr.kind = (uint32_t)kind;
		if (sub.sent_seq != s->last_seq || sub.acked_seq > sub.sent_seq ||
			sub.sent_seq - sub.acked_seq > INBOX_STREAM_UNACKED_MAX)
			return API_EINVALID;
		if (subscriber_find(s, sub.addr, sub.subscription_id) !=
			UINT32_MAX)
			return API_EINVALID;
		s->subscribers[s->subscribers_count++] = sub;
	}
	return 0;
}

int
inbox_stream_decode(inbox_stream *s, const msgpack_object *obj)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(obj != NULL);
	inbox_stream_free(s);
	const msgpack_object *f = engage_get_tuple(obj, 4);
	uint64_t version;
	int rc = API_EINVALID;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != INBOX_STREAM_SNAPSHOT_VERSION ||
		!engage_get_u64(&f[1], &s->last_seq))
		goto fail;
	rc = events_decode(s, &f[2]);
	if (rc != 0)
		goto fail;
	rc = subscribers_decode(s, &f[3]);
	if (rc != 0)
		goto fail;
	return 0;
fail:
	inbox_stream_free(s);
	return rc;
}

/* ---- requests and event messages ---------------------------------------- */

int
inbox_stream_request_encode(const inbox_stream_request *r, msgpack_packer *pk)
{
	ACTORS_ASSERT(r != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 4);
	rc |= msgpack_pack_uint8(pk, (uint8_t)r->op);
	rc |= msgpack_pack_uint64(pk, r->subscription_id);
	rc |= msgpack_pack_uint64(pk, r->seq);
	rc |= r->has_since ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
inbox_stream_request_decode(const msgpack_object *obj,
	inbox_stream_request *out)
{
	ACTORS_ASSERT(obj != NULL);
	ACTORS_ASSERT(out != NULL);
	const msgpack_object *f = engage_get_tuple(obj, 4);
	uint64_t op;
	if (f == NULL || !engage_get_u64(&f[0], &op) ||
		!engage_get_u64(&f[1], &out->subscription_id) ||
		!engage_get_u64(&f[2], &out->seq) ||
		!engage_get_bool(&f[3], &out->has_since))
		return API_EINVALID;
	if (op < INBOX_STREAM_OP_SUBSCRIBE || op > INBOX_STREAM_OP_RENEW)
		return API_EINVALID;
	out->op = (inbox_stream_op)op;
	return 0;
}

bool
inbox_stream_subscribed(const inbox_stream *s, rt_addr from,
	uint64_t subscription_id)
{
	ACTORS_ASSERT(s != NULL);
	return subscriber_find(s, from, subscription_id) != UINT32_MAX;
}

bool
inbox_stream_renewal_idle(const inbox_stream *s, rt_addr from,
	const inbox_stream_request *r)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(r != NULL);
	return inbox_stream_subscribed(s, from, r->subscription_id) &&
		(!r->has_since || r->seq >= s->last_seq);
}

int
inbox_stream_apply(inbox_stream *s, rt_addr from,
	const inbox_stream_request *r, inbox_stream_deliver_callback deliver,
	void *arg)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(r != NULL);
	switch (r->op) {
	case INBOX_STREAM_OP_SUBSCRIBE:
		return inbox_stream_subscribe(s, from, r->subscription_id,
			r->has_since, r->seq, deliver, arg);
	case INBOX_STREAM_OP_ACK:
		return inbox_stream_ack(s, from, r->subscription_id, r->seq);
	case INBOX_STREAM_OP_UNSUBSCRIBE:
		return inbox_stream_unsubscribe(s, from, r->subscription_id);
	case INBOX_STREAM_OP_RENEW:
		if (inbox_stream_renewal_idle(s, from, r))
			return 0;
		return inbox_stream_subscribe(s, from, r->subscription_id,
			r->has_since, r->seq, deliver, arg);
	}
	return API_EINVALID;
}

int
inbox_stream_message_encode(uint64_t subscription_id,
	const inbox_stream_event *ev, msgpack_packer *pk)
{
	ACTORS_ASSERT(ev != NULL);
	ACTORS_ASSERT(pk != NULL);
	ACTORS_ASSERT(ev->length > 0);
	int rc = msgpack_pack_array(pk, 4);
	rc |= msgpack_pack_uint64(pk, subscription_id);
	rc |= msgpack_pack_uint8(pk, (uint8_t)ev->type);
	rc |= msgpack_pack_uint64(pk, ev->seq);
	/* data is already one msgpack object: written as is. */
	rc |= pk->callback(pk->data, ev->data, ev->length);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
inbox_stream_message_decode(const msgpack_object *obj,
	uint64_t *subscription_id, api_event_type *type, uint64_t *seq,
	const msgpack_object **data)
{
	ACTORS_ASSERT(obj != NULL);
	const msgpack_object *f = engage_get_tuple(obj, 4);
	uint64_t t;
	if (f == NULL || !engage_get_u64(&f[0], subscription_id) ||
		!engage_get_u64(&f[1], &t) || !engage_get_u64(&f[2], seq))
		return API_EINVALID;
	if (t < API_EVENT_FEED_POST || t > API_EVENT_CUT_OFF)
		return API_EINVALID;
	*type = (api_event_type)t;
	*data = &f[3];
	return 0;
}

/* ---- online followers (presence) ---------------------------------------- */

/* The set starts with this many slots and doubles; it stays at most half
 * full so every probe ends at an empty slot. */
#define PRESENCE_SLOTS_START 16u

void
inbox_presence_init(inbox_presence *p)
{
	ACTORS_ASSERT(p != NULL);
	memset(p, 0, sizeof *p);
}

void
inbox_presence_free(inbox_presence *p)
{
	ACTORS_ASSERT(p != NULL);
	free(p->slots);
	inbox_presence_init(p);
}

static uint32_t
presence_home(uint64_t id, uint32_t mask)
{
	uint64_t z = id * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(z >> 32) & mask;
}

/* Slot holding id, or the empty slot where it would go. */
static uint32_t
presence_probe(const inbox_presence *p, uint64_t id)
{
	uint32_t mask = p->slots_count - 1u;
	uint32_t i = presence_home(id, mask);
	while (p->slots[i] != 0 && p->slots[i] != id)
		i = (i + 1u) & mask;
	return i;
}

static int
presence_grow(inbox_presence *p)
{
	uint32_t count = p->slots_count == 0 ? PRESENCE_SLOTS_START
					     : p->slots_count * 2u;
	uint64_t *slots = calloc(count, sizeof *slots);
	if (slots == NULL)
		return API_EUNAVAILABLE;
	inbox_presence old = *p;
	p->slots = slots;
	p->slots_count = count;
	for (uint32_t i = 0; i < old.slots_count; i++) {
		if (old.slots[i] != 0)
			p->slots[presence_probe(p, old.slots[i])] = old.slots[i];
	}
	free(old.slots);
	return 0;
}

static void
presence_delete(inbox_presence *p, uint32_t hole)
{
	uint32_t mask = p->slots_count - 1u;
	uint32_t j = hole;
	p->slots[hole] = 0;
	for (;;) {
		j = (j + 1u) & mask;
		uint64_t v = p->slots[j];
		if (v == 0)
			return;
		uint32_t k = presence_home(v, mask);
		bool stays = hole <= j ? (hole < k && k <= j)
				       : (hole < k || k <= j);
		if (!stays) {
			p->slots[hole] = v;
			p->slots[j] = 0;
			hole = j;
		}
	}
}

int
inbox_presence_set(inbox_presence *p, uint64_t user_id, bool online)
{
	ACTORS_ASSERT(p != NULL);
	if (user_id == 0)
		return API_EINVALID;
	if (!online) {
		if (p->slots_count == 0)
			return 0;
		uint32_t i = presence_probe(p, user_id);
		if (p->slots[i] == user_id) {
			presence_delete(p, i);
			p->count--;
		}
		return 0;
	}
	if (inbox_presence_has(p, user_id))
		return 0;
	if (p->count == INBOX_PRESENCE_MAX)
		return API_EUNAVAILABLE;
	if (2u * (p->count + 1u) > p->slots_count) {
		int rc = presence_grow(p);
		if (rc != 0)
			return rc;
	}
	p->slots[presence_probe(p, user_id)] = user_id;
	p->count++;
	ACTORS_ASSERT(2u * p->count <= p->slots_count);
	return 0;
}

bool
inbox_presence_has(const inbox_presence *p, uint64_t user_id)
{
	ACTORS_ASSERT(p != NULL);
	if (p->slots_count == 0 || user_id == 0)
		return false;
	return p->slots[presence_probe(p, user_id)] == user_id;
}

static int
u64_compare(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

uint32_t
inbox_presence_list(const inbox_presence *p, uint64_t *out, uint32_t max)
{
	ACTORS_ASSERT(p != NULL);
	ACTORS_ASSERT(out != NULL || max == 0);
	uint32_t n = 0;
	for (uint32_t i = 0; i < p->slots_count && n < max; i++) {
		if (p->slots[i] != 0)
			out[n++] = p->slots[i];
	}
	qsort(out, n, sizeof *out, u64_compare);
	return n;
}

int
inbox_presence_encode(const inbox_presence *p, msgpack_packer *pk)
{
	ACTORS_ASSERT(p != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint32(pk, INBOX_PRESENCE_SNAPSHOT_VERSION);
	rc |= msgpack_pack_array(pk, p->count);
	for (uint32_t i = 0; i < p->slots_count; i++) {
		if (p->slots[i] != 0)
			rc |= msgpack_pack_uint64(pk, p->slots[i]);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
inbox_presence_decode(inbox_presence *p, const msgpack_object *obj)
{
	ACTORS_ASSERT(p != NULL);
	ACTORS_ASSERT(obj != NULL);
	inbox_presence_free(p);
	const msgpack_object *f = engage_get_tuple(obj, 2);
	uint64_t version;
	const msgpack_object *ids;
	uint32_t n;
	int rc = API_EINVALID;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != INBOX_PRESENCE_SNAPSHOT_VERSION ||
		!engage_get_array(&f[1], INBOX_PRESENCE_MAX, &ids, &n))
		return API_EINVALID;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id;
		if (!engage_get_u64(&ids[i], &id) || id == 0 ||
			inbox_presence_has(p, id)) {
			rc = API_EINVALID;
			goto fail;
		}
		rc = inbox_presence_set(p, id, true);
		if (rc != 0)
			goto fail;
	}
	return 0;
fail:
	inbox_presence_free(p);
	return rc;
}
