/*
 * registry.c — the map from (kind, id) to an active actor.
 *
 * Role: 256 shards, each an open-addressing table (linear probing) behind
 * a spin lock. A slot holds the address's 64-bit hash and the actor
 * pointer, so a miss (every activation starts with one), a probe past
 * other actors and a grow all stay inside the slot array and never load
 * an actor (each such load is a cache miss with a million actors). A
 * shard doubles past 11/16 load; removal shifts later members of the
 * probe run back, so there are no tombstones.
 *
 * Invariants: every function except init/destroy runs under the shard's
 * lock; an actor is in exactly one slot while active; slot.hash ==
 * rt__addr_hash(actor->kind, actor->id).
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
		s->slots = calloc(RT_REGISTRY_SLOTS_INITIAL, sizeof *s->slots);
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
		free(reg->shards[i].slots);
		reg->shards[i].slots = NULL;
	}
}

rt_actor *
rt__registry_find_hole(rt__shard *s, uint64_t hash, uint32_t kind,
	uint64_t id, uint32_t *hole_out)
{
	uint32_t mask = s->mask;
	for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1u) & mask) {
		rt__slot *slot = &s->slots[i];
		if (slot->actor == NULL) {
			*hole_out = i;
			return NULL;
		}
		if (slot->hash != hash)
			continue;
		/* A hit is nearly always the actor sought, and its caller
		 * writes its header (the mailbox push): ask for the line
		 * exclusive now rather than shared, then again to write. */
		__builtin_prefetch(slot->actor, 1, 3);
		if (slot->actor->id == id && slot->actor->kind == kind)
			return slot->actor;
	}
}

rt_actor *
rt__registry_find(rt__shard *s, uint64_t hash, uint32_t kind, uint64_t id)
{
	uint32_t hole;
	return rt__registry_find_hole(s, hash, kind, id, &hole);
}

static void
place(rt__slot *slots, uint32_t mask, uint64_t hash, rt_actor *a)
{
	uint32_t i = (uint32_t)hash & mask;
	while (slots[i].actor != NULL)
		i = (i + 1u) & mask;
	slots[i].hash = hash;
	slots[i].actor = a;
}

static int
shard_grow(rt__shard *s)
{
	uint32_t capacity = (s->mask + 1u) * 2u;
	if (capacity == 0)
		return RT_ENOMEM;
	rt__slot *slots = calloc(capacity, sizeof *slots);
	if (slots == NULL)
		return RT_ENOMEM;
	uint32_t mask = capacity - 1u;
	for (uint32_t i = 0; i <= s->mask; i++)
		if (s->slots[i].actor != NULL)
			place(slots, mask, s->slots[i].hash, s->slots[i].actor);
	free(s->slots);
	/* Atomic stores: rt_prefetch reads these without the lock. */
	__atomic_store_n(&s->slots, slots, __ATOMIC_RELAXED);
	__atomic_store_n(&s->mask, mask, __ATOMIC_RELAXED);
	return 0;
}

int
rt__registry_insert_at(rt__shard *s, uint64_t hash, rt_actor *a,
	uint32_t hole)
{
	RT_ASSERT(a != NULL);
	uint64_t slots = (uint64_t)s->mask + 1u;
	if ((uint64_t)(s->count + 1u) * RT_REGISTRY_LOAD_DENOMINATOR >
		slots * RT_REGISTRY_LOAD_NUMERATOR) {
		/* Growing failed: keep going while a slot is free, else refuse. */
		if (shard_grow(s) != 0 && s->count + 1u >= slots)
			return RT_ENOMEM;
		if (s->mask + 1u != slots)
			hole = UINT32_MAX; /* grown: the hole moved */
	}
	if (hole == UINT32_MAX) {
		place(s->slots, s->mask, hash, a);
	} else {
		RT_ASSERT(hole <= s->mask);
		RT_ASSERT(s->slots[hole].actor == NULL);
		s->slots[hole].hash = hash;
		s->slots[hole].actor = a;
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
	while (s->slots[i].actor != a) {
		RT_ASSERT(s->slots[i].actor != NULL);
		i = (i + 1u) & mask;
	}
	RT_ASSERT(s->slots[i].hash == hash);
	s->count--;
	/* Backward shift: move later members of the probe run into the hole
	 * unless their home lies cyclically in (hole, j]. */
	uint32_t hole = i;
	for (uint32_t j = (i + 1u) & mask; s->slots[j].actor != NULL;
		j = (j + 1u) & mask) {
		uint32_t home = (uint32_t)s->slots[j].hash & mask;
		bool stays = hole <= j ? (hole < home && home <= j)
				       : (hole < home || home <= j);
		if (stays)
			continue;
		s->slots[hole] = s->slots[j];
		hole = j;
	}
	s->slots[hole].actor = NULL;
	s->slots[hole].hash = 0;
}
