/*
 * registry.c — the map from (kind, id) to an active actor.
 *
 * Role: 256 shards, each a chained hash table behind a spin lock. The
 * chain link lives in the actor (intrusive), so the table costs one
 * bucket pointer per actor at load factor 1 (8-16 bytes per actor). A
 * shard doubles its buckets when it holds more actors than buckets.
 *
 * Invariants: every function except init/destroy runs under the shard's
 * lock; an actor is in exactly one chain while active.
 * Does not: free actors (callers do), or shrink tables.
 */
#include "runtime/internal.h"

#include <sched.h>

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

int
rt__registry_init(rt__registry *reg)
{
	memset(reg, 0, sizeof *reg);
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &reg->shards[i];
		s->buckets = calloc(RT_REGISTRY_BUCKETS_INITIAL, sizeof *s->buckets);
		if (s->buckets == NULL)
			goto fail;
		s->mask = RT_REGISTRY_BUCKETS_INITIAL - 1u;
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
		free(reg->shards[i].buckets);
		reg->shards[i].buckets = NULL;
	}
}

rt_actor *
rt__registry_find(rt__shard *s, uint64_t hash, uint32_t kind, uint64_t id)
{
	rt_actor *a = s->buckets[hash & s->mask];
	while (a != NULL && (a->id != id || a->kind != kind))
		a = a->hash_next;
	return a;
}

static void
shard_grow(rt__shard *s)
{
	uint32_t capacity = (s->mask + 1u) * 2u;
	if (capacity == 0)
		return; /* 2^32 buckets: stop growing, chains just lengthen */
	rt_actor **buckets = calloc(capacity, sizeof *buckets);
	if (buckets == NULL)
		return; /* longer chains, still correct */
	uint32_t mask = capacity - 1u;
	for (uint32_t i = 0; i <= s->mask; i++) {
		rt_actor *a = s->buckets[i];
		while (a != NULL) {
			rt_actor *next = a->hash_next;
			uint64_t h = rt__addr_hash(a->kind, a->id);
			a->hash_next = buckets[h & mask];
			buckets[h & mask] = a;
			a = next;
		}
	}
	free(s->buckets);
	s->buckets = buckets;
	s->mask = mask;
}

int
rt__registry_insert(rt__shard *s, uint64_t hash, rt_actor *a)
{
	RT_ASSERT(a != NULL);
	RT_ASSERT(rt__addr_hash(a->kind, a->id) == hash);
	if (s->count > s->mask)
		shard_grow(s);
	rt_actor **bucket = &s->buckets[hash & s->mask];
	a->hash_next = *bucket;
	*bucket = a;
	s->count++;
	return 0;
}

void
rt__registry_remove(rt__shard *s, uint64_t hash, rt_actor *a)
{
	RT_ASSERT(a != NULL);
	RT_ASSERT(s->count > 0);
	rt_actor **link = &s->buckets[hash & s->mask];
	while (*link != a) {
		RT_ASSERT(*link != NULL);
		link = &(*link)->hash_next;
	}
	*link = a->hash_next;
	a->hash_next = NULL;
	s->count--;
}
