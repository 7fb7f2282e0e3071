/*
 * registry.c — the map from (kind, id) to an active actor.
 *
 * Role: 256 shards, each an open-addressing table (linear probing) behind
 * a spin lock. A slot is one word: the actor pointer tagged with the low
 * 16 bits of its address's hash (internal.h), so a miss (every
 * activation starts with one), a probe past other actors and a grow all
 * stay inside the slot array and load no actor but the one sought (a
 * load is a cache miss with a million actors; one whose tag matches by
 * chance, about one probe in 2^(16 - index bits), is read too). A
 * shard doubles past 11/16 load; removal shifts later members of the
 * probe run back, so there are no tombstones. Slot arrays of 4 KiB and
 * more come from the registry's arena: 2 MiB chunks advised as huge
 * pages, split and merged as buddies, so a growing registry takes one
 * page fault per 2 MiB instead of one per 4 KiB, and the array a growth
 * frees serves the next shard's growth once its buddy is freed too.
 *
 * Invariants: every function except init/destroy and the slot arrays'
 * allocation (rt__registry_slots_new/_release) runs under the shard's
 * lock; an actor is in exactly one slot while active; a slot's tag is
 * the low bits of rt__addr_hash(actor->kind, actor->id).
 * Does not: free actors (callers do), shrink tables, or give arena
 * chunks back to the OS before rt__registry_destroy.
 */
#include "runtime/internal.h"

#include <sched.h>
#include <sys/mman.h>

/* Spins before yielding the CPU: a shard is held for tens of ns, but on
 * a 2-core machine the holder may be preempted, so do not spin long. */
#define SPIN_BEFORE_YIELD 128

void
rt__spin_lock_slow(rt__spin *s)
{
	for (;;) {
		for (int i = 0; i < SPIN_BEFORE_YIELD; i++) {
			if (atomic_load_explicit(&s->locked, memory_order_relaxed) == 0 &&
				atomic_exchange_explicit(&s->locked, 1, memory_order_acquire) == 0)
				return;
			rt__cpu_relax();
		}
		sched_yield();
	}
}

/* ---- the slot arrays' huge-page arena ------------------------------------ */

_Static_assert(RT_REGISTRY_ARENA_BYTES_MIN << (RT_REGISTRY_ARENA_ORDERS - 1u) ==
	RT_REGISTRY_ARENA_CHUNK_BYTES, "the top order is the whole chunk");
_Static_assert(RT_REGISTRY_ARENA_UNITS % 64u == 0, "dirty bitmap words");
_Static_assert(RT_REGISTRY_SLOTS_INITIAL >= (1u << RT_REGISTRY_GROUP_BITS),
	"a group of ids fits in the smallest shard");

/* A free block's header, in its first bytes. */
typedef struct arena_free {
	struct arena_free *next;
	struct arena_free *prev;
} arena_free;

static uint32_t
arena_order(size_t bytes)
{
	RT_ASSERT(bytes >= RT_REGISTRY_ARENA_BYTES_MIN);
	RT_ASSERT(bytes <= RT_REGISTRY_ARENA_CHUNK_BYTES);
	uint32_t order = 0;
	while ((size_t)RT_REGISTRY_ARENA_BYTES_MIN << order < bytes)
		order++;
	RT_ASSERT((size_t)RT_REGISTRY_ARENA_BYTES_MIN << order == bytes);
	return order;
}

static rt__arena_chunk *
arena_chunk_of(rt__arena *arena, const void *p)
{
	for (uint32_t i = 0; i < arena->chunks_count; i++) {
		rt__arena_chunk *c = arena->chunks[i];
		if ((const char *)p >= c->base &&
			(const char *)p < c->base + RT_REGISTRY_ARENA_CHUNK_BYTES)
			return c;
	}
	RT_ASSERT(!"slot array not from the arena");
	return NULL;
}

static void
arena_mark_dirty(rt__arena_chunk *c, uint32_t unit, uint32_t units)
{
	for (uint32_t u = unit; u < unit + units; u++)
		c->dirty[u / 64u] |= 1ull << (u % 64u);
}

static bool
arena_is_clean(const rt__arena_chunk *c, uint32_t unit, uint32_t units)
{
	for (uint32_t u = unit; u < unit + units; u++)
		if (c->dirty[u / 64u] & (1ull << (u % 64u)))
			return false;
	return true;
}

/* Under the arena lock: puts the block at c's unit on the free list of
 * order (its header dirties its first unit). */
static void
arena_list_insert(rt__arena *arena, rt__arena_chunk *c, uint32_t unit,
	uint32_t order)
{
	RT_ASSERT(order < RT_REGISTRY_ARENA_ORDERS);
	RT_ASSERT(c->free_order[unit] == 0);
	arena_free *f = (arena_free *)(void *)(c->base +
		(size_t)unit * RT_REGISTRY_ARENA_BYTES_MIN);
	f->prev = NULL;
	f->next = arena->free_heads[order];
	if (f->next != NULL)
		f->next->prev = f;
	arena->free_heads[order] = f;
	c->free_order[unit] = (uint8_t)(order + 1u);
	arena_mark_dirty(c, unit, 1);
}

static void
arena_list_remove(rt__arena *arena, rt__arena_chunk *c, uint32_t unit,
	uint32_t order)
{
	RT_ASSERT(c->free_order[unit] == order + 1u);
	arena_free *f = (arena_free *)(void *)(c->base +
		(size_t)unit * RT_REGISTRY_ARENA_BYTES_MIN);
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		arena->free_heads[order] = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	c->free_order[unit] = 0;
}

/* Under the arena lock: adds c to the arena's chunks (false: no memory). */
static bool
arena_chunk_add(rt__arena *arena, rt__arena_chunk *c)
{
	if (arena->chunks_count == arena->chunks_capacity) {
		uint32_t capacity = arena->chunks_capacity ? arena->chunks_capacity * 2u : 8u;
		rt__arena_chunk **chunks = realloc(arena->chunks,
			capacity * sizeof *chunks);
		if (chunks == NULL)
			return false;
		arena->chunks = chunks;
		arena->chunks_capacity = capacity;
	}
	arena->chunks[arena->chunks_count++] = c;
	return true;
}

static void
arena_chunk_free(rt__arena_chunk *c)
{
	(void)munmap(c->base, RT_REGISTRY_ARENA_CHUNK_BYTES);
	free(c);
}

/* No lock: a new chunk, whole, in no list and no arena yet, its huge
 * page already faulted in (the first touch, up to milliseconds here, is
 * taken before the arena's lock, which other shards' growth needs). */
static rt__arena_chunk *
arena_chunk_new(void)
{
	rt__arena_chunk *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	/* A fresh anonymous mapping (known zero, so its blocks need no
	 * memset until reused), trimmed to an aligned chunk: a huge page
	 * needs 2 MiB alignment. */
	size_t span = 2u * (size_t)RT_REGISTRY_ARENA_CHUNK_BYTES;
	char *map = mmap(NULL, span, PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		free(c);
		return NULL;
	}
	uintptr_t align = RT_REGISTRY_ARENA_CHUNK_BYTES;
	char *base = (char *)(((uintptr_t)map + align - 1u) & ~(align - 1u));
	if (base > map)
		(void)munmap(map, (size_t)(base - map));
	char *end = base + RT_REGISTRY_ARENA_CHUNK_BYTES;
	if (end < map + span)
		(void)munmap(end, (size_t)(map + span - end));
	c->base = base;
#if defined(MADV_HUGEPAGE)
	(void)madvise(c->base, RT_REGISTRY_ARENA_CHUNK_BYTES, MADV_HUGEPAGE);
#endif
	/* Where arena_list_insert will write first (the chunk is known
	 * zero, so this changes nothing but when the fault happens). */
	*(volatile char *)c->base = 0;
	return c;
}

/* A zeroed block of `bytes` (a power of two in [BYTES_MIN, CHUNK_BYTES]),
 * or NULL. Needs no shard lock (activation calls it before taking one;
 * a growth under the lock, when that fetch failed, may call it too). */
static void *
arena_alloc(rt__arena *arena, size_t bytes)
{
	uint32_t order = arena_order(bytes);
	rt__arena_chunk *fresh = NULL;
	pthread_mutex_lock(&arena->lock);
	uint32_t o = order;
	while (o < RT_REGISTRY_ARENA_ORDERS && arena->free_heads[o] == NULL)
		o++;
	if (o == RT_REGISTRY_ARENA_ORDERS) {
		/* Map and fault a chunk with the lock released, then look
		 * again (another growth may have freed a block meanwhile;
		 * the chunk then stays whole on the top order's list). */
		pthread_mutex_unlock(&arena->lock);
		fresh = arena_chunk_new();
		if (fresh == NULL)
			return NULL;
		pthread_mutex_lock(&arena->lock);
		if (!arena_chunk_add(arena, fresh)) {
			pthread_mutex_unlock(&arena->lock);
			arena_chunk_free(fresh);
			return NULL;
		}
		o = order;
		while (o < RT_REGISTRY_ARENA_ORDERS && arena->free_heads[o] == NULL)
			o++;
		if (o < RT_REGISTRY_ARENA_ORDERS)
			arena_list_insert(arena, fresh, 0,
				RT_REGISTRY_ARENA_ORDERS - 1u);
	}
	rt__arena_chunk *c;
	uint32_t unit;
	if (o == RT_REGISTRY_ARENA_ORDERS) {
		c = fresh;
		o = RT_REGISTRY_ARENA_ORDERS - 1u;
		unit = 0;
	} else {
		char *p = arena->free_heads[o];
		c = arena_chunk_of(arena, p);
		unit = (uint32_t)((size_t)(p - c->base) / RT_REGISTRY_ARENA_BYTES_MIN);
		arena_list_remove(arena, c, unit, o);
	}
	/* Split down: the upper halves become free buddies. */
	while (o > order) {
		o--;
		arena_list_insert(arena, c, unit + (1u << o), o);
	}
	uint32_t units = 1u << order;
	bool clean = arena_is_clean(c, unit, units);
	arena_mark_dirty(c, unit, units);
	pthread_mutex_unlock(&arena->lock);
	char *block = c->base + (size_t)unit * RT_REGISTRY_ARENA_BYTES_MIN;
	if (!clean)
		memset(block, 0, bytes);
	return block;
}

/* Returns a block from arena_alloc; it merges with its free buddies. */
static void
arena_release(rt__arena *arena, void *p, size_t bytes)
{
	uint32_t order = arena_order(bytes);
	pthread_mutex_lock(&arena->lock);
	rt__arena_chunk *c = arena_chunk_of(arena, p);
	uint32_t unit = (uint32_t)((size_t)((char *)p - c->base) /
		RT_REGISTRY_ARENA_BYTES_MIN);
	RT_ASSERT(unit % (1u << order) == 0);
	while (order + 1u < RT_REGISTRY_ARENA_ORDERS) {
		uint32_t buddy = unit ^ (1u << order);
		if (c->free_order[buddy] != order + 1u)
			break;
		arena_list_remove(arena, c, buddy, order);
		unit = unit < buddy ? unit : buddy;
		order++;
	}
	arena_list_insert(arena, c, unit, order);
	pthread_mutex_unlock(&arena->lock);
}

static bool
arena_serves(size_t bytes)
{
	return !RT_ALLOC_PLAIN && bytes >= RT_REGISTRY_ARENA_BYTES_MIN &&
		bytes <= RT_REGISTRY_ARENA_CHUNK_BYTES;
}

/* A zeroed slot array of `slots` (a power of two), or NULL. Line
 * aligned: a group of ids shares one line (RT_REGISTRY_GROUP_BITS). */
static rt__slot *
slots_alloc(rt__registry *reg, uint32_t slots)
{
	size_t bytes = (size_t)slots * sizeof(rt__slot);
	if (arena_serves(bytes))
		return arena_alloc(&reg->arena, bytes);
	rt__slot *array = aligned_alloc(64, bytes < 64u ? 64u : bytes);
	if (array != NULL)
		memset(array, 0, bytes);
	return array;
}

static void
slots_free(rt__registry *reg, rt__slot *array, uint32_t slots)
{
	if (array == NULL)
		return;
	size_t bytes = (size_t)slots * sizeof(rt__slot);
	if (arena_serves(bytes))
		arena_release(&reg->arena, array, bytes);
	else
		free(array);
}

/* ---- shards --------------------------------------------------------------- */

int
rt__registry_init(rt__registry *reg)
{
	memset(reg, 0, sizeof *reg);
	pthread_mutex_init(&reg->arena.lock, NULL);
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &reg->shards[i];
		s->slots = slots_alloc(reg, RT_REGISTRY_SLOTS_INITIAL);
		if (s->slots == NULL)
			goto fail;
		s->mask = RT_REGISTRY_SLOTS_INITIAL - 1u;
	}
	return 0;
fail:
	rt__registry_destroy(reg);
	return RT_ENOMEM;
}

void
rt__registry_destroy(rt__registry *reg)
{
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &reg->shards[i];
		slots_free(reg, s->slots, s->mask + 1u);
		s->slots = NULL;
	}
	rt__arena *arena = &reg->arena;
	for (uint32_t i = 0; i < arena->chunks_count; i++)
		arena_chunk_free(arena->chunks[i]);
	free(arena->chunks);
	memset(arena->free_heads, 0, sizeof arena->free_heads);
	arena->chunks = NULL;
	arena->chunks_count = 0;
	arena->chunks_capacity = 0;
	pthread_mutex_destroy(&arena->lock);
}

rt_actor *
rt__registry_find_hole(rt__shard *s, uint64_t hash, uint32_t kind,
	uint64_t id, uint32_t *hole_out)
{
	uint32_t mask = s->mask;
	uint32_t tag = (uint32_t)hash & RT_SLOT_TAG_MASK;
	for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1u) & mask) {
		rt__slot slot = s->slots[i];
		if (slot.word == 0) {
			*hole_out = i;
			return NULL;
		}
		if (rt__slot_tag(slot) != tag)
			continue;
		/* A tag that matches is nearly always the actor sought, and
		 * its caller writes its header (the mailbox push): ask for
		 * the line exclusive now rather than shared, then again. */
		rt_actor *a = rt__slot_actor(slot);
		__builtin_prefetch(a, 1, 3);
		if (a->id == id && rt__actor_kind(a) == kind)
			return a;
	}
}

void
rt__registry_prefetch_actor(rt__registry *reg, uint64_t hash)
{
	rt__shard *s = rt__registry_shard(reg, hash);
	uint32_t tag = (uint32_t)hash & RT_SLOT_TAG_MASK;
	rt__spin_lock(&s->lock);
	uint32_t mask = s->mask;
	for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1u) & mask) {
		rt__slot slot = s->slots[i];
		if (slot.word == 0)
			break;
		if (rt__slot_tag(slot) == tag) {
			__builtin_prefetch(rt__slot_actor(slot), 1, 3);
			break;
		}
	}
	rt__spin_unlock(&s->lock);
}

rt_actor *
rt__registry_find(rt__shard *s, uint64_t hash, uint32_t kind, uint64_t id)
{
	uint32_t hole;
	return rt__registry_find_hole(s, hash, kind, id, &hole);
}

/* The low bits of a filled slot's hash, enough for a shard of mask:
 * the tag, or for a shard larger than a tag indexes the actor's own
 * address hashed again (a load of the actor). */
static inline uint32_t
slot_hash_low(rt__slot slot, uint32_t mask)
{
	if (RT_LIKELY(mask <= RT_SLOT_TAG_MASK))
		return rt__slot_tag(slot);
	const rt_actor *a = rt__slot_actor(slot);
	return (uint32_t)rt__addr_hash(rt__actor_kind(a), a->id);
}

static void
place(rt__slot *slots, uint32_t mask, uint32_t hash_low, rt__slot slot)
{
	uint32_t i = hash_low & mask;
	while (slots[i].word != 0)
		i = (i + 1u) & mask;
	slots[i] = slot;
}

rt__slot *
rt__registry_slots_new(rt__registry *reg, uint32_t slots)
{
	RT_ASSERT(slots != 0 && (slots & (slots - 1u)) == 0);
	return slots_alloc(reg, slots);
}

void
rt__registry_slots_release(rt__registry *reg, rt__slot *slots, uint32_t count)
{
	slots_free(reg, slots, count);
}

bool
rt__registry_full(const rt__shard *s)
{
	return (uint64_t)(s->count + 1u) * RT_REGISTRY_LOAD_DENOMINATOR >
		((uint64_t)s->mask + 1u) * RT_REGISTRY_LOAD_NUMERATOR;
}

/* Doubles s into `slots` (zeroed, twice s's slots; taken), or into a new
 * array when slots is NULL. */
static int
shard_grow(rt__registry *reg, rt__shard *s, rt__slot *slots)
{
	uint32_t capacity = (s->mask + 1u) * 2u;
	if (capacity == 0)
		return RT_ENOMEM;
	if (slots == NULL)
		slots = slots_alloc(reg, capacity);
	if (slots == NULL)
		return RT_ENOMEM;
	uint32_t mask = capacity - 1u;
	for (uint32_t i = 0; i <= s->mask; i++)
		if (s->slots[i].word != 0)
			place(slots, mask, slot_hash_low(s->slots[i], mask),
				s->slots[i]);
	slots_free(reg, s->slots, s->mask + 1u);
	/* Atomic stores: rt_prefetch reads these without the lock. */
	__atomic_store_n(&s->slots, slots, __ATOMIC_RELAXED);
	__atomic_store_n(&s->mask, mask, __ATOMIC_RELAXED);
	return 0;
}

int
rt__registry_insert_at(rt__registry *reg, rt__shard *s, uint64_t hash,
	rt_actor *a, uint32_t hole, rt__slot *grown)
{
	RT_ASSERT(a != NULL);
	uint64_t slots = (uint64_t)s->mask + 1u;
	if (rt__registry_full(s)) {
		/* Growing failed: keep going while a slot is free, else refuse. */
		if (shard_grow(reg, s, grown) != 0 && s->count + 1u >= slots)
			return RT_ENOMEM;
		if (s->mask + 1u != slots)
			hole = UINT32_MAX; /* grown: the hole moved */
	} else {
		RT_ASSERT(grown == NULL);
	}
	if (hole == UINT32_MAX) {
		place(s->slots, s->mask, (uint32_t)hash, rt__slot_make(hash, a));
	} else {
		RT_ASSERT(hole <= s->mask);
		RT_ASSERT(s->slots[hole].word == 0);
		s->slots[hole] = rt__slot_make(hash, a);
	}
	s->count++;
	return 0;
}

void
rt__registry_remove(rt__shard *s, uint64_t hash, rt_actor *a)
{
	RT_ASSERT(a != NULL);
	RT_ASSERT(s->count > 0);
	uint32_t mask = s->mask;
	uint32_t i = (uint32_t)hash & mask;
	while (rt__slot_actor(s->slots[i]) != a) {
		RT_ASSERT(s->slots[i].word != 0);
		i = (i + 1u) & mask;
	}
	RT_ASSERT(rt__slot_tag(s->slots[i]) == ((uint32_t)hash & RT_SLOT_TAG_MASK));
	s->count--;
	/* Backward shift: move later members of the probe run into the hole
	 * unless their home lies cyclically in (hole, j]. */
	uint32_t hole = i;
	for (uint32_t j = (i + 1u) & mask; s->slots[j].word != 0;
		j = (j + 1u) & mask) {
		uint32_t home = slot_hash_low(s->slots[j], mask) & mask;
		bool stays = hole <= j ? (hole < home && home <= j)
				       : (hole < home || home <= j);
		if (stays)
			continue;
		s->slots[hole] = s->slots[j];
		hole = j;
	}
	s->slots[hole].word = 0;
}
