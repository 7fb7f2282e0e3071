/*
 * actors/search_actor.c — the search actor kind (SEARCH_KIND): one actor
 * per shard, addressed by search_shard_addr, holding that shard's
 * search_index.
 *
 * Messages (payloads are msgpack, see engage.h): SEARCH_T_POST_INDEX,
 * SEARCH_T_POST_UNINDEX, SEARCH_T_USER_UPSERT, SEARCH_T_USER_REMOVE as
 * plain sends from post and user actors; SEARCH_T_QUERY as an ask from
 * the client layer, answered with actors__reply (code, detail, body
 * {items, next_cursor}). A malformed update is dropped (an ask gets
 * API_EINVALID).
 *
 * Invariants: the index only ever holds keys of this actor's shard (its
 * id names the shard); every applied update marks the actor dirty so the
 * next checkpoint snapshots it.
 *
 * Durability: post and user actors send their updates as persistence
 * effects (SEARCH_T_EFFECT, from their outboxes, derived from their
 * journaled events). The shard applies one, journals it (apply_record
 * replays it) and confirms it once durable, so after a crash the index
 * is its last snapshot plus its journal tail, and an update not yet
 * confirmed is re-sent by its source (updates are idempotent). A
 * snapshot alone would not do: a post indexed after the last checkpoint
 * whose own records were checkpointed is never woken to send again.
 * Plain SEARCH_T_* updates (tests, tools) are applied without a record.
 *
 * One notice per shard: a shard's records ask no notice each. Their
 * effects wait in a list, and one journal barrier at a time covers what
 * the list held when it was asked; its notice confirms those and asks
 * the next barrier for what came meanwhile. So a shard has at most one
 * notice (a message the node allocates at the append and holds until
 * the disk answers) in flight, however many of its records wait on the
 * disk, and a burst costs it 32 bytes per waiting effect (the list,
 * freed when it empties); the records themselves are bounded by the
 * journal's queue (PS_EFULL: not confirmed, the source sends again).
 * With a notice per record, the shards' notices waiting on the disk or
 * in their mailboxes were the largest use of messages at the peak of
 * actors_memory_bench's Reed98 mix (12.6 MB), and they drew on the
 * node's pool of NODE_NOTICES_MAX notices that every actor shares.
 */
#include "actors/engage.h"

#include <stdlib.h>

#include "persistence/persistence.h"

/* A shard's mailbox: a burst of signups or posts lands here as effects
 * (each post sends one per shard its terms fall in). */
#define SEARCH_MAILBOX_MESSAGES_MAX (1u << 16)

typedef struct search_actor {
	search_index *index; /* owned; NULL until activated or decoded */
	/* Runtime only (not in the snapshot): effects applied and journaled,
	 * oldest first; the first `covered` wait for the barrier `barrier`
	 * (0: none asked), the rest for the next one. */
	ps_effect_header *unconfirmed; /* owned; NULL when empty */
	uint32_t unconfirmed_count;
	uint32_t unconfirmed_capacity;
	uint32_t covered;
	uint64_t barrier;
	/* The same effects by source and sequence (linear probing, half
	 * full at most): a source re-sends what is unconfirmed every
	 * ACTORS_REDRIVE_MS, and a copy of one still waiting here is
	 * dropped instead of journaled again. */
	struct search_waiting *waiting; /* owned; NULL when empty */
	uint32_t waiting_capacity;      /* a power of two, or 0 */
} search_actor;

typedef struct search_waiting {
	uint64_t id;
	uint64_t sequence; /* 0: a free slot (sequences start at 1) */
	uint32_t kind;
} search_waiting;

/* Applies one update (type 600..603, its msgpack payload) for shard,
 * creating the index first when a replay runs before any snapshot. */
static int
search_apply_update(search_actor *sa, uint32_t shard, uint32_t type,
	const void *bytes, size_t length)
{
	if (sa->index == NULL) {
		if (shard >= SEARCH_SHARDS)
			return API_EINVALID;
		int rc = search_index_create(shard, SEARCH_SHARDS, &sa->index);
		if (rc != 0)
			return rc;
	}
	if (type == SEARCH_T_QUERY || type == SEARCH_T_EFFECT)
		return API_EINVALID;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	search_message msg;
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0)
		rc = search_message_decode(type, &u.data, &msg);
	if (rc == 0)
		rc = search_index_apply(sa->index, &msg);
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* Journal records: type = the update's, payload = u32 shard (little
 * endian) + the update's msgpack. Updates are idempotent, so a record
 * replayed over a snapshot that has it changes nothing. */
static int
search_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	if (length < 4)
		return RT_ECORRUPT;
	const unsigned char *p = payload;
	uint32_t shard = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		(uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	int rc = search_apply_update(state, shard, type, p + 4, length - 4);
	/* A refused update (a bad name) is refused again: nothing to do. */
	return rc == API_EUNAVAILABLE ? RT_ENOMEM : 0;
}

/* Room for one more unconfirmed effect. False: out of memory. */
static bool
unconfirmed_reserve(search_actor *sa)
{
	if (sa->unconfirmed_count < sa->unconfirmed_capacity)
		return true;
	uint32_t capacity = sa->unconfirmed_capacity
		? sa->unconfirmed_capacity * 2u
		: 16u;
	ps_effect_header *v = realloc(sa->unconfirmed,
		capacity * sizeof *v);
	if (v == NULL)
		return false;
	sa->unconfirmed = v;
	sa->unconfirmed_capacity = capacity;
	return true;
}

static uint32_t
waiting_slot(const search_actor *sa, const ps_effect_header *h)
{
	uint64_t x = h->source_id * 0x9e3779b97f4a7c15ull ^
		h->sequence * 0xc2b2ae3d27d4eb4full ^ h->source_kind;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint32_t)x & (sa->waiting_capacity - 1u);
}

static bool
waiting_same(const search_waiting *w, const ps_effect_header *h)
{
	return w->sequence == h->sequence && w->id == h->source_id &&
		w->kind == h->source_kind;
}

/* The slot holding h, or the free slot that ends its probe. */
static uint32_t
waiting_probe(const search_actor *sa, const ps_effect_header *h)
{
	uint32_t i = waiting_slot(sa, h);
	while (sa->waiting[i].sequence != 0 && !waiting_same(&sa->waiting[i], h))
		i = (i + 1u) & (sa->waiting_capacity - 1u);
	return i;
}

static bool
waiting_has(const search_actor *sa, const ps_effect_header *h)
{
	return sa->waiting_capacity > 0 &&
		sa->waiting[waiting_probe(sa, h)].sequence != 0;
}

/* Adds h (not present). False: out of memory. */
static bool
waiting_add(search_actor *sa, const ps_effect_header *h)
{
	if (h->sequence == 0)
		return true; /* not a sequence a source hands out: not kept */
	if ((uint64_t)(sa->unconfirmed_count + 1u) * 2u > sa->waiting_capacity) {
		uint32_t capacity = sa->waiting_capacity
			? sa->waiting_capacity * 2u
			: 64u;
		search_waiting *old = sa->waiting;
		uint32_t old_capacity = sa->waiting_capacity;
		search_waiting *v = calloc(capacity, sizeof *v);
		if (v == NULL)
			return false;
		sa->waiting = v;
		sa->waiting_capacity = capacity;
		for (uint32_t i = 0; i < old_capacity; i++) {
			if (old[i].sequence == 0)
				continue;
			ps_effect_header o = {old[i].kind, 0, old[i].id,
				old[i].sequence, 0};
			sa->waiting[waiting_probe(sa, &o)] = old[i];
		}
		free(old);
	}
	uint32_t i = waiting_probe(sa, h);
	sa->waiting[i] = (search_waiting){h->source_id, h->sequence,
		h->source_kind};
	return true;
}

/* Removes h if present (backward shift: no tombstones). */
static void
waiting_remove(search_actor *sa, const ps_effect_header *h)
{
	if (sa->waiting_capacity == 0)
		return;
	uint32_t mask = sa->waiting_capacity - 1u;
	uint32_t i = waiting_probe(sa, h);
	if (sa->waiting[i].sequence == 0)
		return;
	for (uint32_t j = (i + 1u) & mask;; j = (j + 1u) & mask) {
		if (sa->waiting[j].sequence == 0)
			break;
		ps_effect_header o = {sa->waiting[j].kind, 0, sa->waiting[j].id,
			sa->waiting[j].sequence, 0};
		uint32_t home = waiting_slot(sa, &o);
		/* j's entry may move to i when its home is not in (i, j]. */
		bool between = i <= j ? (home > i && home <= j)
				      : (home > i || home <= j);
		if (!between) {
			sa->waiting[i] = sa->waiting[j];
			i = j;
		}
	}
	sa->waiting[i].sequence = 0;
}

/* Asks one barrier for every unconfirmed effect, when none is out. */
static void
barrier_ask(api *a, rt_actor *self, search_actor *sa)
{
	if (sa->barrier != 0 || sa->unconfirmed_count == 0)
		return;
	/* Random, from the runtime (so a deterministic run draws the same
	 * ones): a notice asked by an earlier activation of the shard must
	 * not pass for the current one's, which covers only what was
	 * journaled before it. A counter shared by the process made two
	 * simulations in one process differ. */
	uint64_t id;
	do
		id = rt_random_u64(rt_actor_runtime(self));
	while (id == 0);
	actors__cookie cookie = {SEARCH_KIND, SEARCH_T_EFFECT,
		rt_self(self).id, 0, id};
	if (actors__barrier(a, self, &cookie) != API_OK)
		return; /* the next effect or notice asks again */
	sa->barrier = id;
	sa->covered = sa->unconfirmed_count;
}

/* SEARCH_T_EFFECT: applied, journaled, confirmed once durable (so a
 * crash never loses an indexed post: the source re-sends until then). */
static void
search_on_effect(rt_actor *self, search_actor *sa, const rt_message *m)
{
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
	ps_effect_header h;
	const void *payload;
	size_t length;
	uint32_t shard;
	if (ps_effect_parse(m->payload, m->size, &h, &payload, &length) != 0 ||
		length < 8 || search_addr_shard(rt_self(self), &shard) != 0)
		return;
	if (waiting_has(sa, &h))
		return; /* a copy: the one waiting is confirmed in its turn */
	if (sa->unconfirmed_count >= UINT32_MAX / 2u ||
		!unconfirmed_reserve(sa) || !waiting_add(sa, &h))
		return; /* not confirmed: the source sends it again */
	const unsigned char *p = payload;
	uint32_t type = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
		(uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
	int rc = search_apply_update(sa, shard, type, p + 8, length - 8);
	if (rc == API_EUNAVAILABLE) {
		waiting_remove(sa, &h);
		return; /* not confirmed: the source sends it again */
	}
	if (rc == 0) {
		rt_mark_dirty(self);
		unsigned char *record = malloc(length - 4);
		if (record == NULL) {
			waiting_remove(sa, &h);
			return;
		}
		memcpy(record, &shard, 4); /* little-endian hosts only (user.c) */
		memcpy(record + 4, p + 8, length - 8);
		uint64_t lsn;
		rc = actors__journal_quiet(a, self, type, record, length - 4,
			&lsn);
		free(record);
		if (rc != API_OK) {
			waiting_remove(sa, &h);
			return; /* applied, not journaled: sent again */
		}
	}
	/* Journaled, or refused for good (confirmed with the rest: nothing
	 * to keep). */
	sa->unconfirmed[sa->unconfirmed_count++] = h;
	barrier_ask(a, self, sa);
}

/* A barrier's notice: the effects it covers are durable (or failed). */
static void
search_on_durable(rt_actor *self, search_actor *sa, const rt_message *m)
{
	ps_durable_notice n;
	actors__cookie cookie;
	if (m->size != sizeof n)
		return;
	memcpy(&n, m->payload, sizeof n);
	if (n.cookie_bytes != sizeof cookie)
		return;
	memcpy(&cookie, n.cookie, sizeof cookie);
	if (cookie.event != SEARCH_T_EFFECT || cookie.extra != sa->barrier ||
		sa->barrier == 0)
		return; /* a barrier of an earlier activation */
	uint32_t covered = sa->covered;
	ACTORS_ASSERT(covered <= sa->unconfirmed_count);
	for (uint32_t i = 0; i < covered; i++) {
		const ps_effect_header *h = &sa->unconfirmed[i];
		if (n.status == 0) /* else not confirmed: sent again */
			(void)ps_effect_confirm_send(self, h);
		waiting_remove(sa, h);
	}
	sa->unconfirmed_count -= covered;
	memmove(sa->unconfirmed, sa->unconfirmed + covered,
		sa->unconfirmed_count * sizeof *sa->unconfirmed);
	sa->covered = 0;
	sa->barrier = 0;
	if (sa->unconfirmed_count == 0) {
		/* A burst's room goes back. */
		free(sa->unconfirmed);
		sa->unconfirmed = NULL;
		sa->unconfirmed_capacity = 0;
		free(sa->waiting);
		sa->waiting = NULL;
		sa->waiting_capacity = 0;
	}
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
	barrier_ask(a, self, sa);
}

static int
search_on_activate(rt_actor *self, void *state, bool fresh)
{
	search_actor *sa = state;
	(void)fresh;
	uint32_t shard;
	if (search_addr_shard(rt_self(self), &shard) != 0)
		return RT_EINVAL;
	if (sa->index != NULL)
		return search_index_shard(sa->index) == shard ? 0 : RT_ECORRUPT;
	return search_index_create(shard, SEARCH_SHARDS, &sa->index) == 0
		? 0
		: RT_ENOMEM;
}

static void
search_answer_query(rt_actor *self, const search_index *ix,
	const rt_message *m, const search_message *q)
{
	char query[API_SEARCH_QUERY_BYTES_MAX + 1];
	char cursor[SEARCH_CURSOR_BYTES];
	ACTORS_ASSERT(q->text_length <= API_SEARCH_QUERY_BYTES_MAX);
	ACTORS_ASSERT(q->cursor_length < SEARCH_CURSOR_BYTES);
	if (q->text_length > 0)
		memcpy(query, q->text, q->text_length);
	query[q->text_length] = '\0';
	if (q->cursor != NULL)
		memcpy(cursor, q->cursor, q->cursor_length);
	cursor[q->cursor_length] = '\0';
	actors__body body;
	actors__body_init(&body);
	int rc = search_index_query_pack(ix, q->query_type, query, q->limit,
		q->cursor != NULL ? cursor : NULL, &body.packer);
	if (rc == 0)
		actors__reply(self, m, API_OK, NULL, body.buffer.data,
			body.buffer.size);
	else
		actors__reply(self, m, rc, "bad search query or cursor", NULL,
			0);
	actors__body_free(&body);
}

static void
search_on_message(rt_actor *self, void *state, const rt_message *m)
{
	search_actor *sa = state;
	ACTORS_ASSERT(sa->index != NULL);
	if (m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))
		return; /* it asks nobody */
	if (m->type == SEARCH_T_EFFECT) {
		search_on_effect(self, sa, m);
		return;
	}
	if (m->type == ACTORS_T_DURABLE) {
		search_on_durable(self, sa, m);
		return;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	search_message msg;
	int rc = engage_unpack(m->payload, m->size, &u);
	if (rc == 0)
		rc = search_message_decode(m->type, &u.data, &msg);
	if (rc == 0 && m->type == SEARCH_T_QUERY) {
		search_answer_query(self, sa->index, m, &msg);
	} else {
		if (rc == 0)
			rc = search_index_apply(sa->index, &msg);
		if (rc == 0)
			rt_mark_dirty(self);
		actors__reply(self, m, rc, NULL, NULL, 0);
	}
	msgpack_unpacked_destroy(&u);
}

static int
search_encode_state(const void *state, rt_buffer *out)
{
	const search_actor *sa = state;
	ACTORS_ASSERT(sa->index != NULL);
	actors__body body;
	actors__body_init(&body);
	int rc = search_index_encode(sa->index, &body.packer);
	if (rc == 0)
		rc = rt_buffer_append(out, body.buffer.data, body.buffer.size);
	else
		rc = RT_ENOMEM;
	actors__body_free(&body);
	return rc;
}

static int
search_decode_state(void *state, const void *bytes, size_t length)
{
	search_actor *sa = state;
	ACTORS_ASSERT(sa->index == NULL);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0)
		rc = search_index_decode(&u.data, &sa->index);
	msgpack_unpacked_destroy(&u);
	if (rc == API_EUNAVAILABLE)
		return RT_ENOMEM;
	return rc == 0 ? 0 : RT_ECORRUPT;
}

static void
search_free_state(void *state)
{
	search_actor *sa = state;
	search_index_destroy(sa->index);
	sa->index = NULL;
	/* Unconfirmed effects are sent again by their sources. */
	free(sa->unconfirmed);
	free(sa->waiting);
	memset(sa, 0, sizeof *sa);
}

const rt_actor_ops search_actor_ops = {
	.name = "search",
	.state_size = sizeof(search_actor),
	.mailbox_messages_max = SEARCH_MAILBOX_MESSAGES_MAX,
	.apply_record = search_apply_record,
	.on_activate = search_on_activate,
	.on_message = search_on_message,
	.encode_state = search_encode_state,
	.decode_state = search_decode_state,
	.free_state = search_free_state,
};
