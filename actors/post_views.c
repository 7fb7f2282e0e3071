/*
 * actors/post_views.c — the node's read-mostly copies of its active
 * posts' summaries, for feed and listing hydration without an ask per
 * post.
 *
 * Role: a post actor publishes its view (the POST_T_SUMMARY answer for a
 * viewer who has not liked it, the offset of its liked_by_me byte, and
 * its likers when they are few) at activation and at the end of every
 * turn that changed it, and withdraws it at passivation. A reader on any
 * thread takes a copy of the view under the entry's stripe lock; a view
 * that cannot answer for this viewer (too many likers to copy) or is
 * absent (post not active here, on another node, unknown) is a miss and
 * the reader asks the post actor as before.
 *
 * Prefetches read without the lock: a stripe's slot arrays are kept
 * until the table is destroyed (a grown stripe retires its old one), its
 * slots, capacity and slot fields are written with atomic stores under
 * the lock and read there plainly, and a prefetch loads them atomically
 * and only hints the addresses it finds (an entry it names may be gone:
 * it is never read).
 *
 * Invariants: a view is published in the turn that made the change,
 * before the change's reply can leave (replies wait for durability), so
 * a read that starts after a write's answer sees the write, as an ask
 * would; entries are owned by the actor instance that published them
 * (owner) and only it replaces or withdraws them; a reader never holds a
 * pointer into an entry past the stripe lock.
 *
 * What it deliberately does not do: hold views of posts active on other
 * nodes; keep views past passivation; copy the likers of a post with
 * more than POST_VIEW_LIKERS_MAX of them (their liked_by_me is asked).
 */
#include "actors/internal.h"

#include <pthread.h>
#include <stdlib.h>

/* Stripes of the table: readers (api clients) and writers (post actors
 * on the workers) of different posts rarely share one. */
#define POST_VIEW_STRIPES 64u
/* Cache lines of an entry a prefetch loads: its header and a typical
 * post's body (about 400 bytes) behind a few likers. */
#define POST_VIEW_PREFETCH_LINES 8u
/* An entry's room for likers and body is rounded up to this many bytes,
 * so a like that grows a count or adds a liker is written over the entry
 * in place (no allocation, and the slot's line, which readers on other
 * cores hold, is not written) rather than into a new one. */
#define POST_VIEW_ROOM_QUANTUM_BYTES 64u
/* Initial slots of a stripe's table (power of two; it doubles at 1/2:
 * short probes). */
#define POST_VIEW_STRIPE_SLOTS_MIN 64u

struct actors__post_view {
	uint64_t id;
	const void *owner;
	actors__summary summary;
	uint32_t body_length;
	uint32_t liked_offset;  /* the liked_by_me bool byte in body */
	uint32_t likers_count;  /* UINT32_MAX: not kept */
	uint32_t room_bytes;    /* for likers and body behind the header */
	unsigned char *body;    /* points into the same allocation */
	uint64_t likers[];
};

/* A slot keeps the id next to the pointer: probing reads no entry. */
typedef struct view_slot {
	uint64_t id;
	actors__post_view *view; /* NULL = empty */
} view_slot;

/* Slot arrays a stripe can have retired: it doubles from
 * POST_VIEW_STRIPE_SLOTS_MIN within a 32-bit capacity. */
#define POST_VIEW_STRIPE_RETIRED_MAX 32u
/* Slots a prefetch probes past the first for its id. */
#define POST_VIEW_PREFETCH_PROBES 4u

typedef struct stripe {
	pthread_mutex_t lock;
	view_slot *slots; /* open addressing, at most half full */
	uint32_t count;
	uint32_t capacity;
	/* Arrays the stripe grew out of, freed with the table: a prefetch
	 * that loaded slots just before a grow still reads valid memory. */
	uint32_t retired_count;
	view_slot *retired[POST_VIEW_STRIPE_RETIRED_MAX];
} stripe;

struct actors__post_views {
	stripe stripes[POST_VIEW_STRIPES];
	_Atomic uint64_t hits;
	_Atomic uint64_t misses;
};

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

int
actors__post_views_create(actors__post_views **out)
{
	actors__post_views *v = calloc(1, sizeof *v);
	if (v == NULL)
		return API_EUNAVAILABLE;
	for (uint32_t i = 0; i < POST_VIEW_STRIPES; i++)
		pthread_mutex_init(&v->stripes[i].lock, NULL);
	*out = v;
	return API_OK;
}

void
actors__post_views_destroy(actors__post_views *v)
{
	if (v == NULL)
		return;
	for (uint32_t i = 0; i < POST_VIEW_STRIPES; i++) {
		stripe *s = &v->stripes[i];
		for (uint32_t j = 0; j < s->capacity; j++)
			free(s->slots[j].view);
		free(s->slots);
		for (uint32_t j = 0; j < s->retired_count; j++)
			free(s->retired[j]);
		pthread_mutex_destroy(&s->lock);
	}
	free(v);
}

static stripe *
stripe_of(actors__post_views *v, uint64_t id, uint64_t *hash)
{
	*hash = mix64(id);
	return &v->stripes[*hash & (POST_VIEW_STRIPES - 1)];
}

/* Writes a slot a prefetch may be reading. Locked. */
static void
slot_store(view_slot *slot, uint64_t id, actors__post_view *view)
{
	__atomic_store_n(&slot->id, id, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->view, view, __ATOMIC_RELAXED);
}

/* The slot holding id, or the empty slot where it would go. Locked. */
static uint32_t
slot_find(const stripe *s, uint64_t hash, uint64_t id)
{
	ACTORS_ASSERT(s->capacity > 0);
	uint32_t mask = s->capacity - 1;
	uint32_t i = (uint32_t)(hash >> 8) & mask;
	while (s->slots[i].view != NULL && s->slots[i].id != id)
		i = (i + 1) & mask;
	return i;
}

static bool
stripe_grow(stripe *s)
{
	if (s->retired_count == POST_VIEW_STRIPE_RETIRED_MAX)
		return false;
	uint32_t capacity = s->capacity ? s->capacity * 2
					: POST_VIEW_STRIPE_SLOTS_MIN;
	view_slot *slots = calloc(capacity, sizeof *slots);
	if (slots == NULL)
		return false;
	/* Filled before it is published: no prefetch sees it half done. */
	stripe grown = {.slots = slots, .capacity = capacity};
	for (uint32_t i = 0; i < s->capacity; i++)
		if (s->slots[i].view != NULL)
			slots[slot_find(&grown, mix64(s->slots[i].id),
				s->slots[i].id)] = s->slots[i];
	if (s->slots != NULL)
		s->retired[s->retired_count++] = s->slots;
	/* Slots before capacity: a prefetch that loads the new capacity
	 * (acquire) then loads these slots or later ones. */
	__atomic_store_n(&s->slots, slots, __ATOMIC_RELEASE);
	__atomic_store_n(&s->capacity, capacity, __ATOMIC_RELEASE);
	return true;
}

/* Writes summary, body and likers into e, which has room for them. */
static void
view_fill(actors__post_view *e, const void *owner,
	const actors__summary *summary, const void *body, size_t body_length,
	size_t liked_offset, const uint64_t *likers, uint32_t likers_count)
{
	bool keep = likers_count <= POST_VIEW_LIKERS_MAX;
	size_t n = keep ? likers_count : 0;
	ACTORS_ASSERT(n * sizeof(uint64_t) + body_length <= e->room_bytes);
	e->id = summary->post_id;
	e->owner = owner;
	e->summary = *summary;
	e->body_length = (uint32_t)body_length;
	e->liked_offset = (uint32_t)liked_offset;
	e->likers_count = keep ? likers_count : UINT32_MAX;
	if (n > 0)
		memcpy(e->likers, likers, n * sizeof(uint64_t));
	e->body = (unsigned char *)&e->likers[n];
	if (body_length > 0)
		memcpy(e->body, body, body_length);
}

/* Writes the view over the one id already has in s, when that one is
 * owner's and has room: true, else false (nothing changed). Locked. */
static bool
view_overwrite(stripe *s, uint64_t hash, const void *owner,
	const actors__summary *summary, const void *body, size_t body_length,
	size_t liked_offset, const uint64_t *likers, uint32_t likers_count)
{
	if (s->capacity == 0)
		return false;
	actors__post_view *e = s->slots[slot_find(s, hash,
		summary->post_id)].view;
	size_t n = likers_count <= POST_VIEW_LIKERS_MAX ? likers_count : 0;
	if (e == NULL || e->owner != owner ||
		n * sizeof(uint64_t) + body_length > e->room_bytes)
		return false;
	view_fill(e, owner, summary, body, body_length, liked_offset, likers,
		likers_count);
	return true;
}

void
actors__post_views_put(actors__post_views *v, const void *owner,
	const actors__summary *summary, const void *body, size_t body_length,
	size_t liked_offset, const uint64_t *likers, uint32_t likers_count)
{
	ACTORS_ASSERT(owner != NULL);
	ACTORS_ASSERT(body_length == 0 || liked_offset < body_length);
	uint64_t hash;
	stripe *s = stripe_of(v, summary->post_id, &hash);
	pthread_mutex_lock(&s->lock);
	bool done = view_overwrite(s, hash, owner, summary, body, body_length,
		liked_offset, likers, likers_count);
	pthread_mutex_unlock(&s->lock);
	if (done)
		return;
	size_t n = likers_count <= POST_VIEW_LIKERS_MAX ? likers_count : 0;
	size_t room = n * sizeof(uint64_t) + body_length;
	room = (room + POST_VIEW_ROOM_QUANTUM_BYTES - 1) /
		POST_VIEW_ROOM_QUANTUM_BYTES * POST_VIEW_ROOM_QUANTUM_BYTES;
	actors__post_view *e = malloc(sizeof *e + room);
	if (e == NULL) {
		actors__post_views_remove(v, summary->post_id, owner);
		return; /* readers ask */
	}
	e->room_bytes = (uint32_t)room;
	view_fill(e, owner, summary, body, body_length, liked_offset, likers,
		likers_count);
	actors__post_view *old = NULL;
	pthread_mutex_lock(&s->lock);
	if ((s->count + 1) * 2 > s->capacity && !stripe_grow(s)) {
		uint32_t i = s->capacity ? slot_find(s, hash, e->id) : 0;
		if (s->capacity == 0 || s->slots[i].view == NULL) {
			pthread_mutex_unlock(&s->lock);
			free(e);
			return; /* no room: readers ask */
		}
	}
	uint32_t i = slot_find(s, hash, e->id);
	old = s->slots[i].view;
	if (old == NULL)
		s->count++;
	slot_store(&s->slots[i], e->id, e);
	pthread_mutex_unlock(&s->lock);
	free(old);
}

void
actors__post_views_remove(actors__post_views *v, uint64_t post_id,
	const void *owner)
{
	uint64_t hash;
	stripe *s = stripe_of(v, post_id, &hash);
	actors__post_view *gone = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->capacity > 0) {
		uint32_t mask = s->capacity - 1;
		uint32_t i = slot_find(s, hash, post_id);
		if (s->slots[i].view != NULL &&
			s->slots[i].view->owner == owner) {
			gone = s->slots[i].view;
			slot_store(&s->slots[i], 0, NULL);
			s->count--;
			/* Put the rest of the run where a probe finds it. */
			for (uint32_t j = (i + 1) & mask;
				s->slots[j].view != NULL; j = (j + 1) & mask) {
				view_slot e = s->slots[j];
				slot_store(&s->slots[j], 0, NULL);
				slot_store(&s->slots[slot_find(s, mix64(e.id),
						   e.id)],
					e.id, e.view);
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	free(gone);
}

static bool
likers_contain(const actors__post_view *e, uint64_t viewer)
{
	for (uint32_t i = 0; i < e->likers_count; i++)
		if (e->likers[i] == viewer)
			return true;
	return false;
}

int
actors__post_views_get(actors__post_views *v, uint64_t post_id,
	uint64_t viewer, actors__summary *summary, rt_buffer *bodies,
	size_t *body_length)
{
	*body_length = 0;
	uint64_t hash;
	stripe *s = stripe_of(v, post_id, &hash);
	int rc = 0;
	pthread_mutex_lock(&s->lock);
	const actors__post_view *e = NULL;
	if (s->capacity > 0)
		e = s->slots[slot_find(s, hash, post_id)].view;
	if (e != NULL && (e->summary.deleted || e->likers_count != UINT32_MAX ||
				 viewer == 0)) {
		*summary = e->summary;
		rc = 1;
		if (!e->summary.deleted && e->body_length > 0) {
			/* Into the reader's buffer: one growth now and then
			 * instead of an allocation per item. */
			if (rt_buffer_reserve(bodies, e->body_length) != 0) {
				rc = 0; /* ask instead */
			} else {
				unsigned char *copy = bodies->bytes +
					bodies->length;
				memcpy(copy, e->body, e->body_length);
				if (viewer != 0 && likers_contain(e, viewer))
					copy[e->liked_offset] = 0xc3; /* true */
				bodies->length += e->body_length;
				*body_length = e->body_length;
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add_explicit(rc ? &v->hits : &v->misses, 1,
		memory_order_relaxed);
	return rc;
}

/* Without the lock: the first slots of id's probe, loaded atomically
 * (see the file's head); *slots NULL when the stripe has none. */
static void
probe_start(actors__post_views *v, uint64_t post_id, view_slot **slots,
	uint32_t *mask, uint32_t *first)
{
	uint64_t hash;
	stripe *s = stripe_of(v, post_id, &hash);
	uint32_t capacity = __atomic_load_n(&s->capacity, __ATOMIC_ACQUIRE);
	*slots = __atomic_load_n(&s->slots, __ATOMIC_ACQUIRE);
	*mask = capacity > 0 ? capacity - 1 : 0;
	*first = (uint32_t)(hash >> 8) & *mask;
	if (capacity == 0)
		*slots = NULL;
}

void
actors__post_views_prefetch_slot(actors__post_views *v, uint64_t post_id)
{
	uint64_t hash;
	stripe *s = stripe_of(v, post_id, &hash);
	__builtin_prefetch(s, 1, 3); /* the lock the get takes */
	view_slot *slots;
	uint32_t mask, first;
	probe_start(v, post_id, &slots, &mask, &first);
	if (slots != NULL)
		__builtin_prefetch(&slots[first], 0, 3);
}

void
actors__post_views_prefetch(actors__post_views *v, uint64_t post_id)
{
	view_slot *slots;
	uint32_t mask, first;
	probe_start(v, post_id, &slots, &mask, &first);
	for (uint32_t k = 0; slots != NULL && k <= POST_VIEW_PREFETCH_PROBES;
		k++) {
		view_slot *slot = &slots[(first + k) & mask];
		const actors__post_view *e = __atomic_load_n(&slot->view,
			__ATOMIC_RELAXED);
		if (e == NULL)
			return;
		if (__atomic_load_n(&slot->id, __ATOMIC_RELAXED) != post_id)
			continue;
		/* the header (summary, lengths), then the likers and the
		 * body behind it, as far as a typical entry goes (reading
		 * e->body here would wait for the very miss this hides) */
		for (uint32_t line = 0; line < POST_VIEW_PREFETCH_LINES; line++)
			__builtin_prefetch((const char *)e + 64 * line, 0, 3);
		return;
	}
}

void
actors__post_views_counts(actors__post_views *v, uint64_t *hits,
	uint64_t *misses)
{
	*hits = atomic_load_explicit(&v->hits, memory_order_relaxed);
	*misses = atomic_load_explicit(&v->misses, memory_order_relaxed);
}
