/*
 * actors/inbox.c — a user's notification inbox: a bounded ring with
 * per-user sequence numbers, read marks, and dedupe of repeated events.
 *
 * Invariants:
 *   - held entries have consecutive seqs ending at last_seq; a new entry
 *     gets last_seq + 1 and the oldest is dropped at INBOX_ENTRIES_MAX;
 *   - read_up_to_seq <= last_seq and never decreases;
 *   - an event id seen less than INBOX_DEDUPE_WINDOW_MS ago (and still
 *     among the last INBOX_DEDUPE_ENTRIES_MAX ids) never makes a second
 *     entry; the dedupe ring and its index hold the same ids;
 *   - nobody is notified of their own doing.
 *
 * What it deliberately does not do: push live events (the owning actor
 * publishes the new entry on its stream hub) or look up usernames.
 */
#include "actors/engage.h"

#include <stdlib.h>

/* Cursor text: 'n' and 16 hex digits of the exclusive upper seq. */
#define INBOX_CURSOR_LENGTH 17u

static_assert(INBOX_ENTRIES_MAX < INBOX_DEDUPE_ENTRIES_MAX,
	"dedupe remembers more than the ring holds");
static_assert((INBOX_DEDUPE_ENTRIES_MAX & (INBOX_DEDUPE_ENTRIES_MAX - 1)) ==
		0, "dedupe ring is a power of two (its index is twice it)");
static_assert((INBOX_GROWTH_START & (INBOX_GROWTH_START - 1)) == 0,
	"growth keeps the dedupe ring a power of two");

const char *
inbox_type_name(inbox_type type)
{
	switch (type) {
	case INBOX_TYPE_LIKE: return "like";
	case INBOX_TYPE_COMMENT: return "comment";
	case INBOX_TYPE_FOLLOW: return "follow";
	case INBOX_TYPE_MENTION: return "mention";
	}
	return NULL;
}

static void
put_u64_le(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t
inbox_event_id(inbox_type type, uint64_t actor_user_id, uint64_t post_id,
	uint64_t comment_id)
{
	unsigned char bytes[25];
	bytes[0] = (unsigned char)type;
	put_u64_le(bytes + 1, actor_user_id);
	put_u64_le(bytes + 9, post_id);
	put_u64_le(bytes + 17, comment_id);
	uint64_t id = actors__hash64(bytes, sizeof bytes);
	return id != 0 ? id : 1;
}

void
inbox_init(inbox *ib)
{
	ACTORS_ASSERT(ib != NULL);
	memset(ib, 0, sizeof *ib);
}

void
inbox_free(inbox *ib)
{
	ACTORS_ASSERT(ib != NULL);
	free(ib->entries);
	free(ib->dedupe);
	free(ib->dedupe_slots);
	inbox_init(ib);
}

/* ---- dedupe: a ring of ids in arrival order plus a linear-probing index */

/* Event ids may be sequential (a sender's journal ids): mix before use. */
static uint32_t
dedupe_home(uint64_t event_id, uint32_t mask)
{
	uint64_t z = event_id;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (uint32_t)z & mask;
}

/* The slot holding event_id, or UINT32_MAX. */
static uint32_t
dedupe_slot(const inbox *ib, uint64_t event_id)
{
	if (ib->dedupe_capacity == 0)
		return UINT32_MAX;
	uint32_t mask = 2u * ib->dedupe_capacity - 1u;
	uint32_t i = dedupe_home(event_id, mask);
	/* Bounded: the index is at most half full, so an empty slot ends
	 * every probe. */
	while (ib->dedupe_slots[i] != 0) {
		if (ib->dedupe[ib->dedupe_slots[i] - 1].event_id == event_id)
			return i;
		i = (i + 1u) & mask;
	}
	return UINT32_MAX;
}

static void
dedupe_index_put(inbox *ib, uint32_t ring_index)
{
	uint32_t mask = 2u * ib->dedupe_capacity - 1u;
	uint32_t i = dedupe_home(ib->dedupe[ring_index].event_id, mask);
	while (ib->dedupe_slots[i] != 0)
		i = (i + 1u) & mask;
	ib->dedupe_slots[i] = ring_index + 1u;
}

/* Backward-shift deletion keeps probes correct without tombstones. */
static void
dedupe_index_delete(inbox *ib, uint32_t hole)
{
	uint32_t mask = 2u * ib->dedupe_capacity - 1u;
	uint32_t j = hole;
	for (;;) {
		ib->dedupe_slots[hole] = 0;
		for (;;) {
			j = (j + 1u) & mask;
			uint32_t v = ib->dedupe_slots[j];
			if (v == 0)
				return;
			uint32_t k = dedupe_home(ib->dedupe[v - 1].event_id, mask);
			bool stays = hole <= j ? (hole < k && k <= j)
					       : (hole < k || k <= j);
			if (!stays) {
				ib->dedupe_slots[hole] = v;
				hole = j;
				break;
			}
		}
	}
}

static void
dedupe_drop_oldest(inbox *ib)
{
	ACTORS_ASSERT(ib->dedupe_count > 0);
	uint32_t slot = dedupe_slot(ib, ib->dedupe[ib->dedupe_head].event_id);
	ACTORS_ASSERT(slot != UINT32_MAX);
	dedupe_index_delete(ib, slot);
	ib->dedupe_head = (ib->dedupe_head + 1u) % ib->dedupe_capacity;
	ib->dedupe_count--;
}

static void
dedupe_expire(inbox *ib, uint64_t now_ms)
{
	while (ib->dedupe_count > 0) {
		const inbox_dedupe_entry *d = &ib->dedupe[ib->dedupe_head];
		if (d->seen_at_ms + INBOX_DEDUPE_WINDOW_MS > now_ms)
			return;
		dedupe_drop_oldest(ib);
	}
}

/* Regrows the dedupe ring to capacity (a power of two), oldest first at
 * 0, and rebuilds its index. Nothing changes on failure. */
static int
dedupe_resize(inbox *ib, uint32_t capacity)
{
	ACTORS_ASSERT(capacity >= ib->dedupe_count);
	inbox_dedupe_entry *ring = malloc(capacity * sizeof *ring);
	uint32_t *slots = calloc(2u * capacity, sizeof *slots);
	if (ring == NULL || slots == NULL) {
		free(ring);
		free(slots);
		return API_EUNAVAILABLE;
	}
	for (uint32_t i = 0; i < ib->dedupe_count; i++)
		ring[i] = ib->dedupe[(ib->dedupe_head + i) % ib->dedupe_capacity];
	free(ib->dedupe);
	free(ib->dedupe_slots);
	ib->dedupe = ring;
	ib->dedupe_slots = slots;
	ib->dedupe_capacity = capacity;
	ib->dedupe_head = 0;
	for (uint32_t i = 0; i < ib->dedupe_count; i++)
		dedupe_index_put(ib, i);
	return 0;
}

/* Appends an id the caller checked is absent; room must exist. */
static void
dedupe_append(inbox *ib, uint64_t event_id, uint64_t now_ms)
{
	ACTORS_ASSERT(ib->dedupe_count < ib->dedupe_capacity);
	uint32_t at = (ib->dedupe_head + ib->dedupe_count) %
		ib->dedupe_capacity;
	ib->dedupe[at].event_id = event_id;
	ib->dedupe[at].seen_at_ms = now_ms;
	ib->dedupe_count++;
	dedupe_index_put(ib, at);
}

/* ---- the ring ----------------------------------------------------------- */

static uint32_t
grown(uint32_t capacity, uint32_t max)
{
	uint32_t next = capacity == 0 ? INBOX_GROWTH_START : capacity * 2u;
	return next < max ? next : max;
}

static int
ring_resize(inbox *ib, uint32_t capacity)
{
	ACTORS_ASSERT(capacity >= ib->count);
	inbox_entry *ring = malloc(capacity * sizeof *ring);
	if (ring == NULL)
		return API_EUNAVAILABLE;
	for (uint32_t i = 0; i < ib->count; i++)
		ring[i] = ib->entries[(ib->head + i) % ib->capacity];
	free(ib->entries);
	ib->entries = ring;
	ib->capacity = capacity;
	ib->head = 0;
	return 0;
}

/* Makes sure one more entry and one more dedupe id fit (dropping oldest
 * only once both allocations are known to have succeeded). */
static int
reserve_one(inbox *ib)
{
	if (ib->count == ib->capacity && ib->capacity < INBOX_ENTRIES_MAX) {
		int rc = ring_resize(ib, grown(ib->capacity, INBOX_ENTRIES_MAX));
		if (rc != 0)
			return rc;
	}
	if (ib->dedupe_count == ib->dedupe_capacity &&
		ib->dedupe_capacity < INBOX_DEDUPE_ENTRIES_MAX) {
		int rc = dedupe_resize(ib,
			grown(ib->dedupe_capacity, INBOX_DEDUPE_ENTRIES_MAX));
		if (rc != 0)
			return rc;
	}
	return 0;
}

static bool
event_valid(const inbox_event *ev)
{
	if (inbox_type_name(ev->type) == NULL)
		return false;
	if (ev->event_id == 0 || ev->actor_user_id == 0)
		return false;
	return ev->target_user_id != 0;
}

int
inbox_add(inbox *ib, const inbox_event *ev, uint64_t now_ms,
	inbox_entry *out, bool *added)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(ev != NULL);
	ACTORS_ASSERT(added != NULL);
	*added = false;
	if (!event_valid(ev))
		return API_EINVALID;
	if (ev->actor_user_id == ev->target_user_id)
		return API_EINVALID;
	dedupe_expire(ib, now_ms);
	if (dedupe_slot(ib, ev->event_id) != UINT32_MAX)
		return 0;
	int rc = reserve_one(ib);
	if (rc != 0)
		return rc;
	if (ib->dedupe_count == ib->dedupe_capacity)
		dedupe_drop_oldest(ib);
	dedupe_append(ib, ev->event_id, now_ms);
	if (ib->count == ib->capacity) {
		ACTORS_ASSERT(ib->capacity == INBOX_ENTRIES_MAX);
		ib->head = (ib->head + 1u) % ib->capacity;
		ib->count--;
	}
	inbox_entry e = {
		.seq = ib->last_seq + 1u,
		.event_id = ev->event_id,
		.by_user_id = ev->actor_user_id,
		.post_id = ev->post_id,
		.comment_id = ev->comment_id,
		.created_at_ms = ev->created_at_ms,
		.type = (uint8_t)ev->type,
	};
	ib->entries[(ib->head + ib->count) % ib->capacity] = e;
	ib->count++;
	ib->last_seq = e.seq;
	ACTORS_ASSERT(ib->count <= INBOX_ENTRIES_MAX);
	ACTORS_ASSERT(ib->dedupe_count <= INBOX_DEDUPE_ENTRIES_MAX);
	if (out != NULL)
		*out = e;
	*added = true;
	return 0;
}

/* ---- reading ------------------------------------------------------------ */

/* Seq of the oldest held entry (last_seq + 1 when none). */
static uint64_t
oldest_seq(const inbox *ib)
{
	return ib->last_seq - ib->count + 1u;
}

static const inbox_entry *
entry_at_seq(const inbox *ib, uint64_t seq)
{
	uint64_t offset = seq - oldest_seq(ib);
	ACTORS_ASSERT(offset < ib->count);
	const inbox_entry *e =
		&ib->entries[(ib->head + (uint32_t)offset) % ib->capacity];
	ACTORS_ASSERT(e->seq == seq);
	return e;
}

uint32_t
inbox_list(const inbox *ib, uint64_t since_seq, uint64_t before_seq,
	uint32_t max, inbox_entry *out)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(out != NULL || max == 0);
	if (ib->count == 0)
		return 0;
	uint64_t top = ib->last_seq;
	if (before_seq != 0 && before_seq - 1u < top)
		top = before_seq - 1u;
	if (since_seq >= top)
		return 0;
	uint64_t bottom = oldest_seq(ib);
	if (since_seq + 1u > bottom)
		bottom = since_seq + 1u;
	uint32_t n = 0;
	for (uint64_t seq = top; seq >= bottom && n < max; seq--)
		out[n++] = *entry_at_seq(ib, seq);
	return n;
}

uint32_t
inbox_unread_count(const inbox *ib)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(ib->read_up_to_seq <= ib->last_seq);
	uint64_t floor = oldest_seq(ib) - 1u;
	if (ib->read_up_to_seq > floor)
		floor = ib->read_up_to_seq;
	return (uint32_t)(ib->last_seq - floor);
}

bool
inbox_entry_read(const inbox *ib, const inbox_entry *e)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(e != NULL);
	return e->seq <= ib->read_up_to_seq;
}

void
inbox_mark_read(inbox *ib, uint64_t up_to_seq)
{
	ACTORS_ASSERT(ib != NULL);
	if (up_to_seq > ib->last_seq)
		up_to_seq = ib->last_seq;
	if (up_to_seq > ib->read_up_to_seq)
		ib->read_up_to_seq = up_to_seq;
}

int
inbox_entry_pack(const inbox *ib, const inbox_entry *e, msgpack_packer *pk)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(e != NULL);
	uint32_t fields = 5u + (e->post_id != 0) + (e->comment_id != 0);
	int rc = msgpack_pack_map(pk, fields);
	actors__pack_key(pk, "seq");
	rc |= msgpack_pack_uint64(pk, e->seq);
	actors__pack_key(pk, "type");
	actors__pack_str(pk, inbox_type_name((inbox_type)e->type));
	actors__pack_key(pk, "by_user");
	rc |= msgpack_pack_map(pk, 1);
	actors__pack_key(pk, "user_id");
	actors__pack_id(pk, e->by_user_id);
	if (e->post_id != 0) {
		actors__pack_key(pk, "post_id");
		actors__pack_id(pk, e->post_id);
	}
	if (e->comment_id != 0) {
		actors__pack_key(pk, "comment_id");
		actors__pack_id(pk, e->comment_id);
	}
	actors__pack_key(pk, "created_at");
	actors__pack_time(pk, e->created_at_ms);
	actors__pack_key(pk, "read");
	rc |= inbox_entry_read(ib, e) ? msgpack_pack_true(pk)
				      : msgpack_pack_false(pk);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

static int
cursor_decode(const char *cursor, uint64_t *before_seq)
{
	uint64_t v;
	if (strlen(cursor) != INBOX_CURSOR_LENGTH || cursor[0] != 'n' ||
		!engage_parse_hex(cursor + 1, INBOX_CURSOR_LENGTH - 1u, &v) ||
		v == 0)
		return API_EINVALID;
	*before_seq = v;
	return 0;
}

int
inbox_list_pack(const inbox *ib, uint64_t since_seq, uint32_t limit,
	const char *cursor, msgpack_packer *pk)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(pk != NULL);
	uint64_t before_seq = 0;
	if (cursor != NULL && cursor_decode(cursor, &before_seq) != 0)
		return API_EINVALID;
	if (limit == 0)
		limit = API_PAGE_LIMIT_DEFAULT;
	if (limit > API_PAGE_LIMIT_MAX)
		limit = API_PAGE_LIMIT_MAX;
	/* One more than the page tells whether a next page exists. */
	inbox_entry page[API_PAGE_LIMIT_MAX + 1];
	uint32_t n = inbox_list(ib, since_seq, before_seq, limit + 1u, page);
	bool more = n > limit;
	if (more)
		n = limit;
	int rc = msgpack_pack_map(pk, 3);
	actors__pack_key(pk, "items");
	rc |= msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++)
		rc |= inbox_entry_pack(ib, &page[i], pk);
	actors__pack_key(pk, "unread_count");
	rc |= msgpack_pack_uint32(pk, inbox_unread_count(ib));
	actors__pack_key(pk, "next_cursor");
	if (more) {
		char text[INBOX_CURSOR_LENGTH + 1];
		snprintf(text, sizeof text, "n%016" PRIx64, page[n - 1].seq);
		actors__pack_str(pk, text);
	} else {
		rc |= msgpack_pack_nil(pk);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

/* ---- snapshot ----------------------------------------------------------- */

int
inbox_encode(const inbox *ib, msgpack_packer *pk)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 5);
	rc |= msgpack_pack_uint32(pk, INBOX_SNAPSHOT_VERSION);
	rc |= msgpack_pack_uint64(pk, ib->last_seq);
	rc |= msgpack_pack_uint64(pk, ib->read_up_to_seq);
	rc |= msgpack_pack_array(pk, ib->count);
	for (uint32_t i = 0; i < ib->count; i++) {
		const inbox_entry *e =
			&ib->entries[(ib->head + i) % ib->capacity];
		rc |= msgpack_pack_array(pk, 7);
		rc |= msgpack_pack_uint64(pk, e->seq);
		rc |= msgpack_pack_uint64(pk, e->event_id);
		rc |= msgpack_pack_uint8(pk, e->type);
		rc |= msgpack_pack_uint64(pk, e->by_user_id);
		rc |= msgpack_pack_uint64(pk, e->post_id);
		rc |= msgpack_pack_uint64(pk, e->comment_id);
		rc |= msgpack_pack_uint64(pk, e->created_at_ms);
	}
	rc |= msgpack_pack_array(pk, ib->dedupe_count);
	for (uint32_t i = 0; i < ib->dedupe_count; i++) {
		const inbox_dedupe_entry *d =
			&ib->dedupe[(ib->dedupe_head + i) % ib->dedupe_capacity];
		rc |= msgpack_pack_array(pk, 2);
		rc |= msgpack_pack_uint64(pk, d->event_id);
		rc |= msgpack_pack_uint64(pk, d->seen_at_ms);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

static bool
entry_decode(const msgpack_object *obj, inbox_entry *e)
{
	const msgpack_object *f = engage_get_tuple(obj, 7);
	uint64_t type;
	if (f == NULL || !engage_get_u64(&f[0], &e->seq) ||
		!engage_get_u64(&f[1], &e->event_id) ||
		!engage_get_u64(&f[2], &type) ||
		!engage_get_u64(&f[3], &e->by_user_id) ||
		!engage_get_u64(&f[4], &e->post_id) ||
		!engage_get_u64(&f[5], &e->comment_id) ||
		!engage_get_u64(&f[6], &e->created_at_ms))
		return false;
	if (type > 255 || inbox_type_name((inbox_type)type) == NULL)
		return false;
	e->type = (uint8_t)type;
	return e->event_id != 0 && e->by_user_id != 0;
}

/* The smallest growth step that holds n. */
static uint32_t
capacity_for(uint32_t n, uint32_t max)
{
	uint32_t c = 0;
	do
		c = grown(c, max);
	while (c < n);
	return c;
}

static int
entries_decode(inbox *ib, const msgpack_object *obj)
{
	const msgpack_object *items;
	uint32_t n;
	if (!engage_get_array(obj, INBOX_ENTRIES_MAX, &items, &n))
		return API_EINVALID;
	if (n == 0)
		return 0;
	if (ring_resize(ib, capacity_for(n, INBOX_ENTRIES_MAX)) != 0)
		return API_EUNAVAILABLE;
	for (uint32_t i = 0; i < n; i++) {
		inbox_entry e;
		if (!entry_decode(&items[i], &e))
			return API_EINVALID;
		if (e.seq != ib->last_seq - n + 1u + i)
			return API_EINVALID;
		ib->entries[i] = e;
		ib->count++;
	}
	return 0;
}

static int
dedupe_decode(inbox *ib, const msgpack_object *obj)
{
	const msgpack_object *items;
	uint32_t n;
	if (!engage_get_array(obj, INBOX_DEDUPE_ENTRIES_MAX, &items, &n))
		return API_EINVALID;
	if (n == 0)
		return 0;
	if (dedupe_resize(ib, capacity_for(n, INBOX_DEDUPE_ENTRIES_MAX)) != 0)
		return API_EUNAVAILABLE;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *f = engage_get_tuple(&items[i], 2);
		uint64_t id, at;
		if (f == NULL || !engage_get_u64(&f[0], &id) ||
			!engage_get_u64(&f[1], &at) || id == 0)
			return API_EINVALID;
		if (dedupe_slot(ib, id) != UINT32_MAX)
			return API_EINVALID;
		dedupe_append(ib, id, at);
	}
	return 0;
}

int
inbox_decode(inbox *ib, const msgpack_object *obj)
{
	ACTORS_ASSERT(ib != NULL);
	ACTORS_ASSERT(obj != NULL);
	inbox_free(ib);
	const msgpack_object *f = engage_get_tuple(obj, 5);
	uint64_t version;
	int rc = API_EINVALID;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != INBOX_SNAPSHOT_VERSION ||
		!engage_get_u64(&f[1], &ib->last_seq) ||
		!engage_get_u64(&f[2], &ib->read_up_to_seq))
		goto fail;
	if (ib->read_up_to_seq > ib->last_seq)
		goto fail;
	if (f[3].type == MSGPACK_OBJECT_ARRAY &&
		f[3].via.array.size > ib->last_seq)
		goto fail;
	rc = entries_decode(ib, &f[3]);
	if (rc != 0)
		goto fail;
	rc = dedupe_decode(ib, &f[4]);
	if (rc != 0)
		goto fail;
	return 0;
fail:
	inbox_free(ib);
	return rc;
}

/* ---- the event message -------------------------------------------------- */

int
inbox_event_encode(const inbox_event *ev, msgpack_packer *pk)
{
	ACTORS_ASSERT(ev != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 7);
	rc |= msgpack_pack_uint64(pk, ev->event_id);
	rc |= msgpack_pack_uint8(pk, (uint8_t)ev->type);
	rc |= msgpack_pack_uint64(pk, ev->actor_user_id);
	rc |= msgpack_pack_uint64(pk, ev->target_user_id);
	rc |= msgpack_pack_uint64(pk, ev->post_id);
	rc |= msgpack_pack_uint64(pk, ev->comment_id);
	rc |= msgpack_pack_uint64(pk, ev->created_at_ms);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
inbox_event_decode(const msgpack_object *obj, inbox_event *out)
{
	ACTORS_ASSERT(obj != NULL);
	ACTORS_ASSERT(out != NULL);
	const msgpack_object *f = engage_get_tuple(obj, 7);
	uint64_t type;
	if (f == NULL || !engage_get_u64(&f[0], &out->event_id) ||
		!engage_get_u64(&f[1], &type) ||
		!engage_get_u64(&f[2], &out->actor_user_id) ||
		!engage_get_u64(&f[3], &out->target_user_id) ||
		!engage_get_u64(&f[4], &out->post_id) ||
		!engage_get_u64(&f[5], &out->comment_id) ||
		!engage_get_u64(&f[6], &out->created_at_ms))
		return API_EINVALID;
	if (type > 255)
		return API_EINVALID;
	out->type = (inbox_type)type;
	return event_valid(out) ? 0 : API_EINVALID;
}
