/*
 * alloc.c — size-class pools: messages, actors, timers and asks come from
 * here, so hot paths do not call malloc.
 *
 * Role: 35 size classes from 16 to 4096 bytes (8-byte steps to 128, then
 * four steps per power of two). Each worker has a private cache (a free
 * list per class); a thread that is no worker shares one cache under a
 * mutex. A cache that holds two batches of a class gives one batch to the
 * runtime's global pool; an empty cache takes a batch from the pool or
 * carves one from a 256 KiB chunk. Memory freed on another thread simply
 * joins that thread's cache, and batches flow back through the pool.
 *
 * Invariants: objects of a class that is a multiple of 16 bytes are
 * 16-aligned, the others (24, 40, ... 120) 8-aligned; a free object's
 * word 0 links its
 * list, word 1 links batches in the pool; chunks are freed only by
 * rt__pool_destroy (memory is reused, never returned to the OS early).
 * Does not: serve more than RT_ALLOC_CLASS_BYTES_MAX (malloc does), or
 * pool anything under AddressSanitizer (plain malloc, so ASan sees every
 * use-after-free and leak).
 */
#include "runtime/internal.h"

#include <sys/mman.h>

/* Most objects of a class moved as one batch. */
#define ALLOC_BATCH_OBJECTS_MAX 256u
#define ALLOC_BATCH_OBJECTS_MIN 4u

static uint32_t
class_of(size_t bytes)
{
	return rt__alloc_class(bytes);
}

static size_t
class_bytes(uint32_t c)
{
	return rt__alloc_class_bytes(c);
}

static uint32_t
class_batch(uint32_t c)
{
	size_t n = RT_ALLOC_BATCH_BYTES / class_bytes(c);
	if (n < ALLOC_BATCH_OBJECTS_MIN)
		n = ALLOC_BATCH_OBJECTS_MIN;
	if (n > ALLOC_BATCH_OBJECTS_MAX)
		n = ALLOC_BATCH_OBJECTS_MAX;
	return (uint32_t)n;
}

static inline void *
link_get(void *p, int word)
{
	void *next;
	memcpy(&next, (char *)p + (size_t)word * sizeof(void *), sizeof next);
	return next;
}

static inline void
link_set(void *p, int word, void *next)
{
	memcpy((char *)p + (size_t)word * sizeof(void *), &next, sizeof next);
}

void
rt__cache_init(rt__cache *cache)
{
	memset(cache, 0, sizeof *cache);
	for (uint32_t c = 0; c < RT_ALLOC_CLASSES; c++)
		cache->lists[c].release_at = 2u * class_batch(c);
}

void
rt__pool_init(rt__pool *pool)
{
	memset(pool, 0, sizeof *pool);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_mutex_init(&pool->external_lock, NULL);
	rt__cache_init(&pool->external);
}

void
rt__pool_destroy(rt__pool *pool)
{
	void *chunk = pool->chunks;
	while (chunk != NULL) {
		void *next = link_get(chunk, 0);
		free(chunk);
		chunk = next;
	}
	pool->chunks = NULL;
	pthread_mutex_destroy(&pool->lock);
	pthread_mutex_destroy(&pool->external_lock);
}

/* Carves a batch of class c from the cache's chunk onto its list. */
static int
cache_carve(rt__pool *pool, rt__cache *cache, uint32_t c)
{
	size_t size = class_bytes(c);
	uint32_t n = class_batch(c);
	size_t need = size * n;
	/* Carving goes on where the last batch, maybe of a class of
	 * 8-aligned objects, ended: a class of multiples of 16 realigns. */
	if (size % 16u == 0 && cache->bump != NULL)
		cache->bump = (char *)(((uintptr_t)cache->bump + 15u) &
			~(uintptr_t)15u);
	if (cache->bump > cache->bump_end ||
		(size_t)(cache->bump_end - cache->bump) < need) {
		/* The chunk's first 64 bytes hold the chunk link. */
		bool huge = cache->chunks >= RT_ALLOC_SMALL_CHUNKS_MAX;
		size_t bytes = huge ? RT_ALLOC_HUGE_CHUNK_BYTES : RT_ALLOC_CHUNK_BYTES;
		char *chunk = aligned_alloc(huge ? RT_ALLOC_HUGE_CHUNK_BYTES : 64, bytes);
		if (chunk == NULL)
			return RT_ENOMEM;
#if defined(MADV_HUGEPAGE)
		if (huge)
			(void)madvise(chunk, bytes, MADV_HUGEPAGE); /* a hint */
#endif
		cache->chunks++;
		/* The first touch of a fresh chunk is a page fault (a huge
		 * one: up to milliseconds here); take it before the pool's
		 * lock, which the other workers' refills need. */
		link_set(chunk, 0, NULL);
		pthread_mutex_lock(&pool->lock);
		link_set(chunk, 0, pool->chunks);
		pool->chunks = chunk;
		pool->chunk_bytes += bytes;
		pthread_mutex_unlock(&pool->lock);
		cache->bump = chunk + 64;
		cache->bump_end = chunk + bytes;
		RT_ASSERT((size_t)(cache->bump_end - cache->bump) >= need);
	}
	rt__free_list *list = &cache->lists[c];
	for (uint32_t i = 0; i < n; i++) {
		void *p = cache->bump;
		cache->bump += size;
		link_set(p, 0, list->head);
		list->head = p;
	}
	list->count += n;
	return 0;
}

static void *
cache_pop(rt__pool *pool, rt__cache *cache, uint32_t c)
{
	rt__free_list *list = &cache->lists[c];
	if (RT_UNLIKELY(list->head == NULL)) {
		RT_ASSERT(list->count == 0);
		pthread_mutex_lock(&pool->lock);
		void *batch = pool->batches[c];
		if (batch != NULL)
			pool->batches[c] = link_get(batch, 1);
		pthread_mutex_unlock(&pool->lock);
		if (batch != NULL) {
			list->head = batch;
			list->count = class_batch(c);
		} else if (cache_carve(pool, cache, c) != 0) {
			return NULL;
		}
	}
	void *p = list->head;
	list->head = link_get(p, 0);
	list->count--;
	return p;
}

/* Moves one batch of class c from the cache to the pool. */
static void
cache_release_batch(rt__pool *pool, rt__cache *cache, uint32_t c)
{
	rt__free_list *list = &cache->lists[c];
	uint32_t n = class_batch(c);
	RT_ASSERT(list->count >= n);
	void *first = list->head;
	void *last = first;
	for (uint32_t i = 1; i < n; i++)
		last = link_get(last, 0);
	list->head = link_get(last, 0);
	list->count -= n;
	link_set(last, 0, NULL);
	pthread_mutex_lock(&pool->lock);
	link_set(first, 1, pool->batches[c]);
	pool->batches[c] = first;
	pthread_mutex_unlock(&pool->lock);
}

static void
cache_push(rt__pool *pool, rt__cache *cache, uint32_t c, void *p)
{
	rt__free_list *list = &cache->lists[c];
	link_set(p, 0, list->head);
	list->head = p;
	list->count++;
	if (RT_UNLIKELY(list->count >= list->release_at))
		cache_release_batch(pool, cache, c);
}

void *
rt__alloc_slow(rt_runtime *rt, size_t bytes)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(bytes > 0);
	if (RT_ALLOC_PLAIN || bytes > RT_ALLOC_CLASS_BYTES_MAX)
		return aligned_alloc(16, (bytes + 15u) & ~(size_t)15u);
	uint32_t c = class_of(bytes);
	rt_worker *w = rt__current_worker(rt);
	if (RT_LIKELY(w != NULL))
		return cache_pop(&rt->pool, &w->cache, c);
	pthread_mutex_lock(&rt->pool.external_lock);
	void *p = cache_pop(&rt->pool, &rt->pool.external, c);
	pthread_mutex_unlock(&rt->pool.external_lock);
	return p;
}

void
rt__free_slow(rt_runtime *rt, void *p, size_t bytes)
{
	RT_ASSERT(rt != NULL);
	if (p == NULL)
		return;
	if (RT_ALLOC_PLAIN || bytes > RT_ALLOC_CLASS_BYTES_MAX) {
		free(p);
		return;
	}
	uint32_t c = class_of(bytes);
	rt_worker *w = rt__current_worker(rt);
	if (RT_LIKELY(w != NULL)) {
		cache_push(&rt->pool, &w->cache, c, p);
		return;
	}
	pthread_mutex_lock(&rt->pool.external_lock);
	cache_push(&rt->pool, &rt->pool.external, c, p);
	pthread_mutex_unlock(&rt->pool.external_lock);
}

void
rt__cache_flush(rt_runtime *rt, rt__cache *cache)
{
	for (uint32_t c = 0; c < RT_ALLOC_CLASSES; c++)
		while (cache->lists[c].count >= class_batch(c))
			cache_release_batch(&rt->pool, cache, c);
}
