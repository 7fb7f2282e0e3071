/*
 * internal.h — names shared between the files of runtime/ (rt__ prefix).
 *
 * Role: the structs behind the opaque types of runtime.h and the helpers
 * the runtime's files call in one another. Nothing outside runtime/
 * includes this file.
 *
 * Files:
 *   runtime.c     create/start/stop/destroy, kinds, stats, errors, buffers
 *   alloc.c       size-class pools with per-thread caches (no malloc on
 *                 hot paths)
 *   registry.c    sharded (kind, id) -> actor hash, striped spin locks
 *   send.c        send/deliver/route, mailbox push, activation, eviction
 *   actor.c       a turn: activation, messages, passivation, snapshots
 *   scheduler.c   workers, run queues, stealing, parking; the
 *                 deterministic scheduler
 *   timer.c       timer heap, timer thread, virtual time
 *   ask.c         pending asks, inboxes
 *   map.c         u64 -> pointer open-addressing map
 *   log.c         structured log lines
 *   clock_real.c  the only file that reads clocks or the OS's randomness
 *
 * Invariants held across files (each is asserted where it is used):
 *   - an actor's `pending` counts messages pushed onto its mailbox and
 *     not yet retired by a turn; the sender whose increment moves it from
 *     0 to 1 schedules the actor, and only the worker running a turn
 *     subtracts, so an actor is in at most one run queue and on at most
 *     one thread;
 *   - push + increment happen under the actor's registry shard lock, so
 *     under that lock `pending` is exact: passivation removes an actor
 *     only when it is 0 there, and no sender can hold a pointer to it;
 *   - lock order: registry shard -> registry arena; asks -> (nothing);
 *     timers -> (nothing); inbox table -> inbox. A thread never holds two
 *     shard locks.
 */
#ifndef FLOCK_RUNTIME_INTERNAL_H
#define FLOCK_RUNTIME_INTERNAL_H

#include "runtime/runtime.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- asserts (on in release builds) ------------------------------------ */

_Noreturn void rt__assert_fail(const char *expr, const char *file, int line);
#define RT_ASSERT(cond)                                                      \
	do {                                                                 \
		if (__builtin_expect(!(cond), 0))                            \
			rt__assert_fail(#cond, __FILE__, __LINE__);          \
	} while (0)

#define RT_CONTAINER_OF(ptr, type, member)                                   \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define RT_LIKELY(x) __builtin_expect(!!(x), 1)
#define RT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- limits ------------------------------------------------------------ */

/* Registry shards: 256 striped locks keep two workers and a few external
 * threads from meeting on one lock; the shard is the hash's top byte. */
#define RT_REGISTRY_SHARDS 256u
/* First slot count of a shard (a power of two). */
#define RT_REGISTRY_SLOTS_INITIAL 64u
/* A shard doubles when more than 11/16 (69%) of its slots are used:
 * linear probing stays short (a miss probes ~6 slots at the worst, ~2 on
 * average, mostly in one cache line), and 8-byte slots cost 12-23 bytes
 * per actor. */
#define RT_REGISTRY_LOAD_NUMERATOR 11u
#define RT_REGISTRY_LOAD_DENOMINATOR 16u
/* Slot arrays of at least this many bytes (512 slots: a shard past 176
 * actors, a registry past ~45,000) come from the registry's huge-page
 * arena; smaller ones from calloc, so small runtimes (tests, simulated
 * nodes) never map a 2 MiB chunk. */
#define RT_REGISTRY_ARENA_BYTES_MIN 4096u
/* The arena's chunk (one huge page) and its unit (the smallest block). */
#define RT_REGISTRY_ARENA_CHUNK_BYTES (2u * 1024u * 1024u)
#define RT_REGISTRY_ARENA_UNITS \
	(RT_REGISTRY_ARENA_CHUNK_BYTES / RT_REGISTRY_ARENA_BYTES_MIN)
/* Block orders: unit << 0 .. unit << 9 (the whole chunk). */
#define RT_REGISTRY_ARENA_ORDERS 10u
/* A worker's local run queue: a power of two; 256 as in Go's scheduler,
 * large enough that overflow (half moves to the global queue) is rare. */
#define RT_RUNQ_SLOTS 256u
/* A worker's LIFO of actors its own turns made runnable, run before its
 * FIFO queue. Go keeps one such slot ("runnext") so a message chain
 * stays on one core; a few more make fork-join patterns (a parent that
 * spawns children, a fan-out) run the newest children while their actor
 * and message lines are still in cache instead of after the whole
 * queue. The oldest entry overflows to the FIFO queue, where thieves
 * see it. 16 holds all ten children of a turn that spawns ten (skynet's
 * tree, a fan-out of ten) with room for the chain they came from; with
 * 8, two of every ten went cold to the FIFO's tail. A power of two. */
#define RT_LIFO_SLOTS 16u
/* Every this many turns a worker looks at the global queue first, so
 * work injected from outside is not starved by a busy local queue. */
#define RT_GLOBAL_CHECK_TURNS 16u
/* Snapshot turns a checkpoint's walk keeps queued at once. The walk
 * notes every dirty actor, then queues their snapshots this many at a
 * time behind the work already queued (the global queue's tail), one
 * more as each finishes: a checkpoint of 100,000 actors queued at once
 * held both workers for seconds while asks timed out behind it. 64
 * turns of ~20-100 us each is a few ms of snapshots in any queue. */
#define RT_SNAPSHOT_WINDOW_ACTORS 64u
/* A worker reads the coarse clock (for actors' last-active stamps) once
 * per this many turns and after parking: the stamps feed an idle sweep
 * measured in seconds, and a clock read per turn was 5% of a short turn. */
#define RT_CLOCK_REFRESH_TURNS 16u
/* Rounds a worker with nothing to do tries to steal before it parks. */
#define RT_SPIN_ROUNDS 64u
/* Plain (non-reply) messages an inbox holds before senders see
 * RT_EMAILBOX_FULL: an external thread that stops taking must not grow
 * without bound. */
#define RT_INBOX_MESSAGES_MAX 65536u
/* Size classes serve objects up to this size; larger ones are malloc'd
 * (payloads that large are rare and never on the hot path). */
#define RT_ALLOC_CLASS_BYTES_MAX 4096u
#define RT_ALLOC_CLASSES 35u
/* A slab chunk carved into objects; 256 KiB amortises malloc well while
 * wasting little at the tail. */
#define RT_ALLOC_CHUNK_BYTES (256u * 1024u)
/* A cache that has carved this many chunks is big (a million actors):
 * its later chunks are 2 MiB, aligned and advised as huge pages, so
 * random access over millions of actors misses the TLB far less. Small
 * runtimes (tests, the simulator's nodes) never get there. */
#define RT_ALLOC_SMALL_CHUNKS_MAX 8u
#define RT_ALLOC_HUGE_CHUNK_BYTES (2u * 1024u * 1024u)
/* Objects moved between a thread cache and the global pool at once. */
#define RT_ALLOC_BATCH_BYTES (8u * 1024u)
/* Actors sampled per eviction under a memory budget (as Redis samples
 * for approximate LRU: 8 gives a good approximation at low cost). */
#define RT_EVICTION_SAMPLES 8u
/* Housekeeping (idle passivation sweep) runs every passivate_idle_ms / 4,
 * within these bounds. */
#define RT_HOUSEKEEPING_MS_MIN 5u
#define RT_HOUSEKEEPING_MS_MAX 5000u

/* Runtime-private message types (never reach on_message). */
#define RT_TYPE_INTERNAL_BASE (RT_TYPE_RUNTIME_BASE + 0x100)
#define RT_TYPE_INTERNAL_PASSIVATE (RT_TYPE_INTERNAL_BASE + 1)
#define RT_TYPE_INTERNAL_SNAPSHOT (RT_TYPE_INTERNAL_BASE + 2)
/* rt_passivate_where's request; payload: the rt__pass pointer (internal
 * messages never leave the runtime). */
#define RT_TYPE_INTERNAL_EVICT (RT_TYPE_INTERNAL_BASE + 3)
/* m->flags bit: created by the runtime for itself. */
#define RT_MESSAGE_F_INTERNAL 0x100u

/* ---- PRNG: xoshiro256**, seeded through splitmix64 --------------------- */

typedef struct rt__prng {
	uint64_t s[4];
} rt__prng;

static inline uint64_t
rt__splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void
rt__prng_seed(rt__prng *p, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		p->s[i] = rt__splitmix64(&x);
}

static inline uint64_t
rt__rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t
rt__prng_next(rt__prng *p)
{
	uint64_t *s = p->s;
	uint64_t result = rt__rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rt__rotl(s[3], 45);
	return result;
}

/* ---- spin lock (registry shards; held for a few dozen instructions) ---- */

typedef struct rt__spin {
	atomic_uint locked;
} rt__spin;

void rt__spin_lock_slow(rt__spin *s);

static inline void
rt__spin_lock(rt__spin *s)
{
	if (RT_LIKELY(atomic_exchange_explicit(&s->locked, 1,
		memory_order_acquire) == 0))
		return;
	rt__spin_lock_slow(s);
}

static inline void
rt__spin_unlock(rt__spin *s)
{
	atomic_store_explicit(&s->locked, 0, memory_order_release);
}

static inline void
rt__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---- u64 -> pointer map (map.c); caller locks ------------------------- */

typedef struct rt__map {
	uint64_t *keys; /* 0 = empty */
	void **values;
	uint32_t mask;  /* capacity - 1, capacity a power of two */
	uint32_t count;
} rt__map;

void rt__map_init(rt__map *map);
void rt__map_free(rt__map *map);
/* RT_ENOMEM if growing failed; key must be non-zero and absent. */
int rt__map_put(rt__map *map, uint64_t key, void *value);
void *rt__map_get(const rt__map *map, uint64_t key);
/* Removes and returns the value, or NULL. */
void *rt__map_remove(rt__map *map, uint64_t key);

/* ---- allocator (alloc.c) ---------------------------------------------- */

typedef struct rt__free_list {
	void *head;
	uint32_t count;
	uint32_t release_at; /* count at which a batch goes to the pool */
} rt__free_list;

typedef struct rt__cache {
	rt__free_list lists[RT_ALLOC_CLASSES];
	char *bump;     /* carve position in the current chunk */
	char *bump_end;
	uint32_t chunks; /* chunks this cache has carved from */
} rt__cache;

typedef struct rt__pool {
	pthread_mutex_t lock;
	void *batches[RT_ALLOC_CLASSES]; /* batch chain, linked via word 1 */
	void *chunks;                    /* every chunk, linked via word 0 */
	uint64_t chunk_bytes;            /* their sizes, summed (under lock) */
	pthread_mutex_t external_lock;   /* guards `external` */
	rt__cache external;              /* cache for threads that are no worker */
} rt__pool;

/* Under AddressSanitizer nothing is pooled (alloc.c says why). */
#if defined(__SANITIZE_ADDRESS__)
#define RT_ALLOC_PLAIN 1
#else
#define RT_ALLOC_PLAIN 0
#endif

/* Classes of 16 to 128 bytes in 8-byte steps. */
#define RT_ALLOC_SMALL_CLASSES 15u

/* The size class of a request: 8-byte steps from 16 to 128, then four
 * classes per power of two up to RT_ALLOC_CLASS_BYTES_MAX. An object of
 * a class whose size is a multiple of 16 is 16-aligned, others 8: an
 * actor of a 32-byte header and a 16-byte state takes 48 bytes, and one
 * of a 24-byte state 56, not 64
 * (a million such actors are 9 MB less fresh memory, each page of it a
 * fault). Inline (with its inverse) because every message and actor
 * allocation asks it. */
static inline uint32_t
rt__alloc_class(size_t bytes)
{
	RT_ASSERT(bytes > 0);
	RT_ASSERT(bytes <= RT_ALLOC_CLASS_BYTES_MAX);
	if (bytes <= 128u)
		return bytes <= 16u ? 0u : (uint32_t)((bytes + 7u) >> 3) - 2u;
	uint32_t g = 63u - (uint32_t)__builtin_clzll((unsigned long long)(bytes - 1u));
	size_t step = ((size_t)1 << g) >> 2;
	uint32_t index = (uint32_t)((bytes - ((size_t)1 << g) + step - 1u) >> (g - 2u)) - 1u;
	uint32_t c = RT_ALLOC_SMALL_CLASSES + (g - 7u) * 4u + index;
	RT_ASSERT(c < RT_ALLOC_CLASSES);
	return c;
}

static inline size_t
rt__alloc_class_bytes(uint32_t c)
{
	RT_ASSERT(c < RT_ALLOC_CLASSES);
	if (c < RT_ALLOC_SMALL_CLASSES)
		return (size_t)(c + 2u) * 8u;
	uint32_t g = 7u + (c - RT_ALLOC_SMALL_CLASSES) / 4u;
	size_t base = (size_t)1 << g;
	return base + (size_t)((c - RT_ALLOC_SMALL_CLASSES) % 4u + 1u) * (base >> 2);
}

/* Bytes actually reserved for a request of `bytes`. */
static inline size_t
rt__alloc_size(size_t bytes)
{
	if (RT_ALLOC_PLAIN || bytes > RT_ALLOC_CLASS_BYTES_MAX)
		return (bytes + 15u) & ~(size_t)15u;
	return rt__alloc_class_bytes(rt__alloc_class(bytes));
}

void rt__pool_init(rt__pool *pool);
void rt__pool_destroy(rt__pool *pool);
/* A zeroed cache with its release thresholds set. */
void rt__cache_init(rt__cache *cache);
/* rt__alloc / rt__free (below, inline) when the calling worker's free
 * list cannot serve: other threads, empty or full lists, big objects. */
void *rt__alloc_slow(rt_runtime *rt, size_t bytes);
void rt__free_slow(rt_runtime *rt, void *p, size_t bytes);
void rt__cache_flush(rt_runtime *rt, rt__cache *cache);

/* ---- actors ------------------------------------------------------------ */

/* Shared flags (in the mailbox word; atomic; read by registry walkers
 * under the shard lock) */
#define RT_ACTOR_LOADED 1u        /* state loaded, on_activate ran */
#define RT_ACTOR_DIRTY 2u         /* rt_mark_dirty since last save */
#define RT_ACTOR_EVICTING 4u      /* a passivate request is queued */
/* Local flags (in the stamp word; written in actor context only) */
#define RT_ACTOR_FAILED 1u        /* load/on_activate failed: drain + drop */
#define RT_ACTOR_ACTIVATE_TOKEN 2u /* created by rt_activate: pending
				     counts one unit with no message */
#define RT_ACTOR_WANT_PASSIVATE 4u /* passivate at the end of this turn */
#define RT_ACTOR_DEFERRED 8u       /* messages a turn took and did not
				     reach wait in rt->deferred */

/* The mailbox word: the newest message's address in the low 48 bits
 * (user-space addresses fit, as registry slots assume), the shared
 * flags above it and the kind in the top byte. */
#define RT_ACTOR_POINTER_MASK ((1ull << 48) - 1u)
#define RT_ACTOR_SHARED_SHIFT 48u
#define RT_ACTOR_KIND_SHIFT 56u
_Static_assert(RT_KINDS_MAX <= 256, "a kind fits the mailbox word's top byte");
/* The stamp word: the last turn's rt-relative ms (mod 2^24: 4.6 hours)
 * above the local flags' byte. */
#define RT_ACTOR_STAMP_SHIFT 8u
#define RT_ACTOR_STAMP_MASK ((1u << 24) - 1u)
/* Idle passivation waits at most this long (2.3 hours): an age is read
 * modulo 2^24 ms, and a sweep (at most RT_HOUSEKEEPING_MS_MAX apart)
 * must see an idle actor before its age wraps. */
#define RT_ACTOR_IDLE_MS_MAX (1u << 23)

/* 24 bytes: with an 8-byte state an idle actor is one 32-byte object,
 * with skynet's 16 bytes one 40-byte object (a million actors are that
 * many times a header of fresh memory, each page of it a fault). The
 * state follows the header, 8-byte aligned (runtime.h says so).
 * The mailbox is one word: a turn takes the whole stack into a FIFO of
 * its own (actor.c), and the messages it does not reach before it
 * yields (RT_TURN_MESSAGES_MAX) wait in the runtime's deferred table
 * until the actor's next turn, so no consumer queue is kept per actor.
 * The kind and the flags ride in the spare bits of the mailbox word and
 * the stamp: producers push with a CAS that keeps them, the consumer
 * takes the stack with an atomic AND that keeps them. */
struct rt_actor {
	/* newest message | shared flags << 48 | kind << 56; producers push
	 * (LIFO) */
	_Atomic uint64_t mailbox;
	uint64_t id;
	atomic_int pending;          /* see the invariants above */
	/* rt-relative ms of the last turn << 8 | local flags; one writer at
	 * a time (the actor's turn) */
	atomic_uint stamp;
	_Alignas(8) unsigned char state[];
};
_Static_assert(sizeof(rt_actor) == 24, "actor header stays lean");

static inline uint32_t
rt__actor_kind(const rt_actor *a)
{
	return (uint32_t)(atomic_load_explicit(&((rt_actor *)a)->mailbox,
		memory_order_relaxed) >> RT_ACTOR_KIND_SHIFT);
}

/* The newest message pushed, or NULL (a hint unless in actor context). */
static inline rt_message *
rt__actor_newest(const rt_actor *a)
{
	return (rt_message *)(uintptr_t)(atomic_load_explicit(
		&((rt_actor *)a)->mailbox, memory_order_relaxed) &
		RT_ACTOR_POINTER_MASK);
}

static inline uint8_t
rt__actor_shared(const rt_actor *a)
{
	return (uint8_t)(atomic_load_explicit(&((rt_actor *)a)->mailbox,
		memory_order_relaxed) >> RT_ACTOR_SHARED_SHIFT);
}

static inline void
rt__actor_shared_set(rt_actor *a, unsigned flags)
{
	atomic_fetch_or_explicit(&a->mailbox,
		(uint64_t)flags << RT_ACTOR_SHARED_SHIFT, memory_order_relaxed);
}

static inline void
rt__actor_shared_clear(rt_actor *a, unsigned flags)
{
	atomic_fetch_and_explicit(&a->mailbox,
		~((uint64_t)flags << RT_ACTOR_SHARED_SHIFT), memory_order_relaxed);
}

static inline uint8_t
rt__actor_local(const rt_actor *a)
{
	return (uint8_t)atomic_load_explicit(&((rt_actor *)a)->stamp,
		memory_order_relaxed);
}

/* Actor context (or before the actor is published): one writer, so a
 * load and a store, no locked instruction. */
static inline void
rt__actor_local_set(rt_actor *a, unsigned flags)
{
	unsigned w = atomic_load_explicit(&a->stamp, memory_order_relaxed);
	atomic_store_explicit(&a->stamp, w | flags, memory_order_relaxed);
}

static inline void
rt__actor_local_clear(rt_actor *a, unsigned flags)
{
	unsigned w = atomic_load_explicit(&a->stamp, memory_order_relaxed);
	atomic_store_explicit(&a->stamp, w & ~flags, memory_order_relaxed);
}

/* Actor context: records the time of a turn (rt-relative ms). */
static inline void
rt__actor_stamp(rt_actor *a, uint32_t now_ms)
{
	unsigned w = atomic_load_explicit(&a->stamp, memory_order_relaxed);
	atomic_store_explicit(&a->stamp, (now_ms << RT_ACTOR_STAMP_SHIFT) |
		(w & 0xffu), memory_order_relaxed);
}

/* The stamp's ms (mod 2^24). */
static inline uint32_t
rt__actor_last_active(const rt_actor *a)
{
	return atomic_load_explicit(&((rt_actor *)a)->stamp,
		memory_order_relaxed) >> RT_ACTOR_STAMP_SHIFT;
}

/* ms from a stamp to now_ms (rt-relative), modulo the stamp's width. */
static inline uint32_t
rt__stamp_age(uint32_t now_ms, uint32_t stamp_ms)
{
	return (now_ms - stamp_ms) & RT_ACTOR_STAMP_MASK;
}

typedef struct rt__kind {
	const rt_actor_ops *ops;
	uint32_t mailbox_max;
	uint32_t actor_bytes; /* header + state, as requested from the pool */
} rt__kind;

/* ---- registry (registry.c) -------------------------------------------- */

/* A slot is one word: the actor's pointer in the low RT_SLOT_POINTER_BITS
 * and the low RT_SLOT_TAG_BITS of its address's hash above them (0: an
 * empty slot). The tag holds a shard's slot index (for shards of up to
 * 2^16 slots: 11 million actors in the registry; a larger shard reads
 * its actors' addresses to grow), so probing past other actors and
 * growing never load an actor (each would be a cache miss),
 * and a hit loads only the actor sought, which its caller writes next
 * (the mailbox push). Eight bytes: 16-byte slots holding the full hash
 * cost a million-actor registry 16 MiB more fresh memory, and a cache
 * line held four of them. */
typedef struct rt__slot {
	uint64_t word;
} rt__slot;

#define RT_SLOT_POINTER_BITS 48u
#define RT_SLOT_TAG_BITS 16u
#define RT_SLOT_TAG_MASK ((1u << RT_SLOT_TAG_BITS) - 1u)

static inline rt_actor *
rt__slot_actor(rt__slot slot)
{
	return (rt_actor *)(uintptr_t)(slot.word &
		((1ull << RT_SLOT_POINTER_BITS) - 1u));
}

/* The low RT_SLOT_TAG_BITS of the hash of the slot's actor. */
static inline uint32_t
rt__slot_tag(rt__slot slot)
{
	return (uint32_t)(slot.word >> RT_SLOT_POINTER_BITS);
}

static inline rt__slot
rt__slot_make(uint64_t hash, rt_actor *a)
{
	RT_ASSERT(((uintptr_t)a >> RT_SLOT_POINTER_BITS) == 0);
	rt__slot slot = {((hash & RT_SLOT_TAG_MASK) << RT_SLOT_POINTER_BITS) |
		(uintptr_t)a};
	return slot;
}

/* The lock and count, which every send and activation writes, sit on
 * their own cache line; the slot array and mask, read by each probe and
 * written only when the shard grows, on the next. A sender reads them
 * before it locks, to start loading the slot it will probe, without
 * waiting for the lock line the other worker last wrote. */
typedef struct rt__shard {
	_Alignas(64) rt__spin lock;
	uint32_t count;
	_Alignas(64) uint32_t mask; /* slots - 1 */
	rt__slot *slots;
} rt__shard;
_Static_assert(sizeof(rt__shard) == 128, "lock line, then slot line");

/* Large slot arrays come from 2 MiB chunks advised as huge pages and
 * split as buddies (registry.c): a shard's growth takes a block there
 * and returns its old one, which merges with its buddy (the neighbour
 * shard's old array, carved next to it) into a block the next shard's
 * growth takes. Growing a million-actor registry through calloc touched
 * some 16,000 fresh 4 KiB pages, each a page fault (~4-5 us here). */
typedef struct rt__arena_chunk {
	char *base; /* RT_REGISTRY_ARENA_CHUNK_BYTES, aligned to that */
	/* Per unit: order + 1 if a free block of that order starts there,
	 * else 0. */
	uint8_t free_order[RT_REGISTRY_ARENA_UNITS];
	/* Per unit: written since the chunk came from the OS (a block whose
	 * units are all clean is known zero and needs no memset). */
	uint64_t dirty[RT_REGISTRY_ARENA_UNITS / 64u];
} rt__arena_chunk;

typedef struct rt__arena {
	pthread_mutex_t lock; /* taken under a shard lock, never the reverse */
	rt__arena_chunk **chunks;
	uint32_t chunks_count;
	uint32_t chunks_capacity;
	/* Free blocks per order, doubly linked through their first 16 bytes. */
	void *free_heads[RT_REGISTRY_ARENA_ORDERS];
} rt__arena;

typedef struct rt__registry {
	rt__shard shards[RT_REGISTRY_SHARDS];
	rt__arena arena;
} rt__registry;

/* Ids that differ only in their low RT_REGISTRY_GROUP_BITS form a group:
 * the hash mixes the rest, and the group's ids keep their low bits in
 * the hash's, so (a shard's mask being at least 63) they share a shard
 * and four neighbouring slots of one line, in id order. Ids handed out
 * in sequence (a fan-out over consecutive actors, a parent's children)
 * then cost one registry miss per four sends instead of one each; ids
 * far apart are placed as randomly as before. Groups of eight (a whole
 * line of 8-byte slots) halved a fan-out's misses again but made runs
 * of eight filled slots that an activation's miss probes through:
 * skynet ran 6% more instructions, most of them in the probe. */
#define RT_REGISTRY_GROUP_BITS 2u

static inline uint64_t
rt__addr_hash(uint32_t kind, uint64_t id)
{
	const uint64_t low = ((uint64_t)1 << RT_REGISTRY_GROUP_BITS) - 1u;
	uint64_t x = (id >> RT_REGISTRY_GROUP_BITS) ^ ((uint64_t)kind << 58) ^
		((uint64_t)kind * 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (x & ~low) | (id & low);
}

static inline rt__shard *
rt__registry_shard(rt__registry *reg, uint64_t hash)
{
	return &reg->shards[hash >> 56];
}

/* Starts loading the home slot of hash (no lock: a shard growing
 * meanwhile may give an old array or a mask of the new one; a prefetch
 * of any address is harmless). */
static inline void
rt__registry_prefetch(rt__registry *reg, uint64_t hash)
{
	rt__shard *s = rt__registry_shard(reg, hash);
	rt__slot *slots = __atomic_load_n(&s->slots, __ATOMIC_RELAXED);
	uint32_t mask = __atomic_load_n(&s->mask, __ATOMIC_RELAXED);
	__builtin_prefetch(&slots[(uint32_t)hash & mask], 0, 3);
}

/* Takes the shard lock, finds the slot of hash (comparing hashes only:
 * no actor is read) and starts loading its actor's header for writing. */
void rt__registry_prefetch_actor(rt__registry *reg, uint64_t hash);
int rt__registry_init(rt__registry *reg);
void rt__registry_destroy(rt__registry *reg);
/* Under the shard lock. */
rt_actor *rt__registry_find(rt__shard *s, uint64_t hash, uint32_t kind,
	uint64_t id);
/* On a miss *hole_out is the empty slot that ended the probe: with no
 * change to the shard since, rt__registry_insert_at puts the actor
 * there (one probe per activation instead of two). */
rt_actor *rt__registry_find_hole(rt__shard *s, uint64_t hash, uint32_t kind,
	uint64_t id, uint32_t *hole_out);
/* True when inserting one more actor into s doubles it first. */
bool rt__registry_full(const rt__shard *s);
/* hole from rt__registry_find_hole, or UINT32_MAX to probe. When s is
 * full it doubles first, into grown if that is not NULL (zeroed, twice
 * s's slots, from rt__registry_slots_new; taken), so the caller can
 * fetch that memory before it takes the lock; grown is NULL when s is
 * not full. RT_ENOMEM if the shard is full and could not grow. */
int rt__registry_insert_at(rt__registry *reg, rt__shard *s, uint64_t hash,
	rt_actor *a, uint32_t hole, rt__slot *grown);
/* A zeroed slot array (slots a power of two) or NULL; no lock needed
 * (the arena has its own). A fresh one costs page faults, and a reused
 * one a memset: outside the shard lock, the other workers keep going. */
rt__slot *rt__registry_slots_new(rt__registry *reg, uint32_t slots);
void rt__registry_slots_release(rt__registry *reg, rt__slot *slots,
	uint32_t count);
void rt__registry_remove(rt__shard *s, uint64_t hash, rt_actor *a);

/* ---- run queues and workers (scheduler.c) ----------------------------- */

typedef struct rt__runq {
	_Alignas(64) atomic_uint head; /* consumers (owner and thieves) CAS */
	_Alignas(64) atomic_uint tail; /* owner stores */
	_Atomic(rt_actor *) slots[RT_RUNQ_SLOTS];
} rt__runq;

typedef struct rt__global_queue {
	pthread_mutex_t lock;
	rt_actor **items;
	size_t capacity; /* power of two */
	size_t head;
	atomic_size_t count;
} rt__global_queue;

/* Actor counters kept per thread (a worker's, or the runtime's for other
 * threads) so activations on two workers do not bounce one cache line;
 * rt_get_stats and the budget check add them up. Each may go negative
 * alone (an actor activated here, passivated there); the sums do not. */
typedef struct rt__counters {
	atomic_llong actors_active;
	atomic_llong bytes_actors;
	atomic_llong activated_total;
	atomic_llong passivated_total;
	bool owned; /* a worker's: written by that worker alone */
} rt__counters;

typedef struct rt_worker {
	rt_runtime *rt;
	uint32_t index;
	pthread_t thread;
	bool thread_started;
	/* actor context of the turn being run */
	rt_actor *current;
	const rt_message *current_message;
	uint32_t runnext_streak;
	uint32_t tick;
	uint32_t now_ms;   /* rt-relative coarse ms at the last refresh */
	rt_actor *lifo[RT_LIFO_SLOTS]; /* owner only; ring from lifo_base */
	uint32_t lifo_base;
	uint32_t lifo_count;
	rt__runq runq;
	rt__cache cache;
	rt__prng prng;
	/* parking */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
	bool wake;
	bool idle_listed; /* under rt->idle_lock */
	/* rt_passivate_where passes whose request this turn took (at most
	 * one per pass per actor is queued at a time) */
	struct rt__pass *evict_passes[RT_PASSIVATE_PASSES_MAX];
	uint32_t evict_count;
	/* rt_prefetch: the hashes of the last RT_PREFETCH_LAG hints of the
	 * turn running (current when they were given), oldest at
	 * prefetch_next */
	uint64_t prefetch_hashes[RT_PREFETCH_LAG];
	const rt_actor *prefetch_turn;
	uint32_t prefetch_next;
	/* statistics (relaxed; summed by rt_get_stats) */
	atomic_ullong messages_delivered;
	atomic_ullong steals;
	rt__counters counters;
} rt_worker;

/* ---- timers (timer.c) ------------------------------------------------- */

typedef enum rt__timer_kind {
	RT_TIMER_MESSAGE = 0,
	RT_TIMER_ASK = 1,          /* an ask's deadline */
	RT_TIMER_HOUSEKEEPING = 2, /* idle passivation sweep */
	RT_TIMER_INBOX_SWEEP = 3,  /* an inbox's earliest ask deadline */
} rt__timer_kind;

typedef struct rt__timer {
	uint64_t deadline_ms;
	uint64_t sequence; /* tie-break: arming order */
	uint64_t id;
	uint64_t period_ms;
	uint64_t correlation; /* RT_TIMER_ASK */
	rt_addr to;
	rt_addr from;
	uint32_t heap_index;
	uint32_t type;
	uint32_t size;
	rt__timer_kind timer_kind;
	unsigned char payload[RT_TIMER_PAYLOAD_BYTES_MAX];
} rt__timer;

typedef struct rt__timers {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	rt__timer **heap;
	uint32_t count;
	uint32_t capacity;
	rt__map by_id;
	uint64_t next_id;
	uint64_t next_sequence;
	pthread_t thread;
	bool thread_started;
	bool stop;
} rt__timers;

int rt__timers_init(rt__timers *t);
void rt__timers_destroy(rt_runtime *rt);
int rt__timers_start_thread(rt_runtime *rt);
void rt__timers_stop_thread(rt_runtime *rt);
/* Arms a timer; *id_out names it. */
int rt__timer_arm(rt_runtime *rt, const rt__timer *proto, uint64_t delay_ms,
	uint64_t *id_out);
int rt__timer_disarm(rt_runtime *rt, uint64_t id);
/* Deterministic: fires every timer due at or before now_ms. */
void rt__timers_fire_due(rt_runtime *rt, uint64_t now_ms);

/* ---- asks and inboxes (ask.c) ----------------------------------------- */

typedef struct rt__ask {
	rt_addr asker;
	uint64_t timer_id;
} rt__ask;

typedef struct rt__asks {
	pthread_mutex_t lock;
	rt__map pending; /* correlation -> rt__ask (pool memory) */
} rt__asks;

struct rt_inbox {
	rt_runtime *rt;
	uint64_t id;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	rt_message *head;
	rt_message *tail;
	uint32_t count;
	uint32_t waiters;
	rt_inbox_notify_callback notify;
	void *notify_arg;
	/* The inbox's own asks (under lock): correlation -> deadline ms
	 * (as a pointer-sized integer). A reply or undeliverable notice is
	 * taken only if its correlation is still here; one timer, armed at
	 * the earliest deadline known, times out what is due. No runtime-wide
	 * lock or per-ask timer: an inbox ask costs a map put and a remove. */
	rt__map asks;
	uint64_t sweep_timer; /* armed sweep's id; 0: none */
	uint64_t sweep_at_ms; /* its deadline (rt_now_ms) */
};

/* Registers an ask by asker; m->correlation gets the id. */
int rt__ask_register(rt_runtime *rt, rt_addr asker, rt_message *m,
	uint64_t timeout_ms);
/* Claims an ask: true (and its timer is disarmed) if it was pending. */
bool rt__ask_claim(rt_runtime *rt, uint64_t correlation);
/* The ask timer fired: delivers the timeout notice if still pending. */
void rt__ask_expired(rt_runtime *rt, const rt__timer *timer);
/* Delivers m (taken) to the inbox named by m->to.id; a reply only if the
 * inbox still waits for its correlation. */
int rt__inbox_deliver(rt_runtime *rt, rt_message *m);
/* An inbox's sweep timer fired: times out its asks that are due. */
void rt__inbox_sweep(rt_runtime *rt, const rt__timer *timer);
void rt__asks_destroy(rt_runtime *rt);

/* ---- passivation passes (actor.c) ------------------------------------- */

/* One rt_passivate_where: `outstanding` counts the walk's own hold plus
 * one per actor whose request is queued or being handled; the release
 * that takes it to zero runs done and frees the pass. */
typedef struct rt__pass {
	atomic_uint outstanding;
	atomic_int status; /* first error, or 0 */
	rt_passivate_done_callback done;
	void *done_arg;
	uint32_t slot; /* index in rt->passes */
} rt__pass;

/* Drops one hold on pass (status: 0 or an error to record). */
void rt__pass_release(rt_runtime *rt, rt__pass *pass, int status);

/* ---- the runtime ------------------------------------------------------ */

struct rt_runtime {
	rt_config cfg;
	char node_name[64];
	atomic_int log_level;
	rt__kind kinds[RT_KINDS_MAX];
	rt_store_ops store;
	void *store_arg;
	bool has_store;
	rt_route_ops route;
	void *route_arg;
	bool has_route;
	atomic_uint node_id; /* rt_set_node_id; 0: none */

	atomic_bool started;
	atomic_bool stopping;
	bool stopped;
	uint64_t start_ms; /* monotonic ms at create (real) or 0 (virtual) */

	rt__registry registry;
	rt__pool pool;

	/* scheduler */
	uint32_t workers_count;
	rt_worker *workers;
	rt__global_queue global;
	pthread_mutex_t idle_lock;
	rt_worker *idle_stack[RT_WORKERS_MAX];
	uint32_t idle_stack_count;
	_Alignas(64) atomic_uint idle_workers;
	atomic_bool workers_exit;

	/* deterministic mode */
	rt_worker *det_worker;
	rt_actor **runnable;
	size_t runnable_count;
	size_t runnable_capacity;
	uint64_t virtual_ms;
	rt__prng det_prng;
	uint64_t trace_hash;
	uint64_t det_sequence;

	/* timers, asks, inboxes */
	rt__timers timers;
	rt__asks asks;
	atomic_ullong next_correlation;
	pthread_mutex_t inbox_lock;
	rt__map inboxes;
	uint64_t next_inbox_id;
	uint64_t housekeeping_timer;

	/* The FIFOs of the actors whose last turn yielded before it reached
	 * every message it took (RT_ACTOR_DEFERRED): actor -> oldest
	 * message, linked through next. Only a turn that hit its bound
	 * comes here, once per RT_TURN_MESSAGES_MAX messages. */
	pthread_mutex_t deferred_lock;
	rt__map deferred;

	/* passivation passes running (rt_passivate_where), by slot */
	pthread_mutex_t passes_lock;
	rt__pass *passes[RT_PASSIVATE_PASSES_MAX];

	/* snapshot pass */
	atomic_bool snapshot_running;
	atomic_uint snapshot_outstanding;
	atomic_int snapshot_status;
	rt_snapshot_done_callback snapshot_done;
	void *snapshot_arg;
	/* the walk's list of dirty actors and how far it has been queued,
	 * under snapshot_lock (see RT_SNAPSHOT_WINDOW_ACTORS) */
	pthread_mutex_t snapshot_lock;
	rt_addr *snapshot_addrs;   /* owned; NULL once all are queued */
	size_t snapshot_addrs_count;
	size_t snapshot_addrs_next;
	uint32_t snapshot_queued;  /* snapshot turns queued, not yet run */

	/* randomness for threads that are no worker */
	pthread_mutex_t prng_lock;
	rt__prng prng;

	/* statistics */
	rt__counters counters; /* threads that are no worker */
	atomic_ullong mailbox_full_total;
	atomic_ullong asks_timed_out_total;
	atomic_ullong messages_delivered_external; /* turns on no worker */
};

/* The current thread's worker when it belongs to rt, else NULL. */
extern _Thread_local rt_worker *rt__tls_worker;
static inline rt_worker *
rt__current_worker(const rt_runtime *rt)
{
	rt_worker *w = rt__tls_worker;
	return (w != NULL && w->rt == rt) ? w : NULL;
}

/* Returns owned memory of `bytes`, or NULL: 16-aligned when bytes is a
 * multiple of 16, else 8-aligned (the size classes). The common case
 * pops the calling worker's free list of the class. */
static inline void *
rt__alloc(rt_runtime *rt, size_t bytes)
{
	RT_ASSERT(bytes > 0);
	if (!RT_ALLOC_PLAIN && RT_LIKELY(bytes <= RT_ALLOC_CLASS_BYTES_MAX)) {
		rt_worker *w = rt__current_worker(rt);
		if (RT_LIKELY(w != NULL)) {
			rt__free_list *list = &w->cache.lists[rt__alloc_class(bytes)];
			void *p = list->head;
			if (RT_LIKELY(p != NULL)) {
				memcpy(&list->head, p, sizeof list->head);
				list->count--;
				/* The next allocation reads the new head's link:
				 * freed on another worker, its line is often
				 * elsewhere. */
				if (list->head != NULL)
					__builtin_prefetch(list->head, 1, 3);
				return p;
			}
		}
	}
	return rt__alloc_slow(rt, bytes);
}

/* rt__alloc when the calling worker's free list of the class can serve
 * at once, else NULL (no refill: that may take the pool's mutex or carve
 * a fresh chunk, whose first touch is a page fault). For allocations
 * under a spin lock; the caller unlocks and calls rt__alloc on NULL. */
static inline void *
rt__alloc_cached(rt_runtime *rt, size_t bytes)
{
	RT_ASSERT(bytes > 0);
	if (!RT_ALLOC_PLAIN && RT_LIKELY(bytes <= RT_ALLOC_CLASS_BYTES_MAX)) {
		rt_worker *w = rt__current_worker(rt);
		if (RT_LIKELY(w != NULL)) {
			rt__free_list *list = &w->cache.lists[rt__alloc_class(bytes)];
			if (RT_LIKELY(list->head != NULL))
				return rt__alloc(rt, bytes);
		}
	}
	return NULL;
}

/* Frees p (from rt__alloc with the same `bytes`); NULL is a no-op. */
static inline void
rt__free(rt_runtime *rt, void *p, size_t bytes)
{
	if (!RT_ALLOC_PLAIN && RT_LIKELY(p != NULL &&
		bytes <= RT_ALLOC_CLASS_BYTES_MAX)) {
		rt_worker *w = rt__current_worker(rt);
		if (RT_LIKELY(w != NULL)) {
			rt__free_list *list = &w->cache.lists[rt__alloc_class(bytes)];
			if (RT_LIKELY(list->count + 1u < list->release_at)) {
				memcpy(p, &list->head, sizeof list->head);
				list->head = p;
				list->count++;
				return;
			}
		}
	}
	rt__free_slow(rt, p, bytes);
}

static inline rt__counters *
rt__counters_here(rt_runtime *rt)
{
	rt_worker *w = rt__current_worker(rt);
	return w != NULL ? &w->counters : &rt->counters;
}

/* Adds delta to a counter of c (from rt__counters_here). A worker's
 * counters have one writer, so a load and a store do and no locked
 * instruction is paid per activation; the runtime's are shared by every
 * thread that is no worker. */
static inline void
rt__count(rt__counters *c, atomic_llong *counter, long long delta)
{
	if (c->owned)
		atomic_store_explicit(counter, atomic_load_explicit(counter,
			memory_order_relaxed) + delta, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(counter, delta, memory_order_relaxed);
}

static inline void
rt__count_activated(rt_runtime *rt)
{
	rt__counters *c = rt__counters_here(rt);
	rt__count(c, &c->activated_total, 1);
}

static inline void
rt__count_passivated(rt_runtime *rt)
{
	rt__counters *c = rt__counters_here(rt);
	rt__count(c, &c->passivated_total, 1);
}

/* Sum of one counter over every thread. */
long long rt__counters_sum(rt_runtime *rt, size_t offset);

/* clock_real.c: the one place that reads clocks and OS randomness. */
uint64_t rt__clock_monotonic_ms(void);
uint64_t rt__clock_coarse_ms(void);
uint64_t rt__clock_wall_ms(void);
/* CLOCK_MONOTONIC timespec `ms` from now, for timed condvar waits. */
void rt__clock_deadline(uint64_t ms, struct timespec *out);
int rt__condvar_init_monotonic(pthread_cond_t *cond);

/* send.c */
#define RT_DELIVER_BYPASS_LIMIT 1u /* runtime's own: replies, timers */
#define RT_DELIVER_NO_ROUTE 2u
#define RT_DELIVER_NO_GATE 4u /* route said local after may_activate said no */
int rt__deliver(rt_runtime *rt, rt_message *m, unsigned how);
/* True when an inbox id names this runtime's node (or none). */
static inline bool
rt__inbox_is_local(const rt_runtime *rt, uint64_t inbox_id)
{
	uint64_t node = inbox_id >> RT_INBOX_NODE_SHIFT;
	return node == 0 ||
		node == atomic_load_explicit(&((rt_runtime *)rt)->node_id,
			memory_order_relaxed);
}
/* Through the route hook (if any), then rt__deliver. m taken. */
int rt__route_and_deliver(rt_runtime *rt, rt_message *m);
/* Creates addr's actor if absent, with no message (rt_activate). */
int rt__activate(rt_runtime *rt, rt_addr addr);
/* Under the shard lock: pushes an internal message to a. */
void rt__push_internal_locked(rt_runtime *rt, rt_actor *a, rt_message *m,
	bool *schedule_out);
rt_message *rt__message_new(rt_runtime *rt, uint32_t type, uint32_t size);

/* actor.c */
void rt__turn(rt_worker *w, rt_actor *a);
void rt__actor_stop(rt_runtime *rt, rt_actor *a); /* passivate at stop */
void rt__actor_discard(rt_runtime *rt, rt_actor *a); /* free, no save */
void rt__housekeeping(rt_runtime *rt);
void rt__evict_one(rt_runtime *rt);
uint32_t rt__now_relative_ms(rt_runtime *rt);

/* The time a turn or an activation stamps into last_active_ms: a
 * worker's cached clock in real mode (RT_CLOCK_REFRESH_TURNS), else
 * rt__now_relative_ms. */
static inline uint32_t
rt__stamp_ms(rt_runtime *rt)
{
	rt_worker *w = rt__current_worker(rt);
	if (w != NULL && !rt->cfg.deterministic)
		return w->now_ms;
	return rt__now_relative_ms(rt);
}

/* scheduler.c */
int rt__scheduler_init(rt_runtime *rt);
void rt__scheduler_destroy(rt_runtime *rt);
int rt__scheduler_start(rt_runtime *rt);
void rt__scheduler_stop(rt_runtime *rt);
/* Makes a runnable; called by the sender that moved pending 0 -> 1. */
void rt__schedule(rt_runtime *rt, rt_actor *a);
/* Like rt__schedule, for an actor that was active and idle (a message
 * woke it): a worker puts it under its LIFO's entries, so the actors its
 * turns spawned run first and their messages to it (a fork-join's
 * replies) are taken in one turn. */
void rt__schedule_woken(rt_runtime *rt, rt_actor *a);
/* Re-queues a behind the other runnable actors (its turn yielded). */
void rt__reschedule(rt_worker *w, rt_actor *a);
/* Like rt__schedule, but behind everything already queued (the global
 * queue's tail) even from a worker: background work that must not run
 * ahead of queued requests. */
void rt__schedule_behind(rt_runtime *rt, rt_actor *a);
/* Stop: runs every runnable actor on the calling thread until none is. */
void rt__drain(rt_runtime *rt);

/* log.c */
void rt__log_init(rt_runtime *rt);

#endif /* FLOCK_RUNTIME_INTERNAL_H */
