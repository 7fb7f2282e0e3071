/*
 * media_cache.c — hot image variants in memory, each with its whole 200
 * response (status line, headers, bytes) prebuilt, so the transport
 * answers GET /media/{hash}/{variant} with one write and no file system
 * or domain call.
 *
 * Media files are content-addressed and never change once stored: an
 * entry never goes stale, so there is no invalidation, only eviction of
 * the least recently used entries past GW_MEDIA_CACHE_BYTES_MAX.
 *
 * Invariants:
 *   - bytes_used is the sum of entry_cost over the entries, and stays at
 *     or under bytes_max after every insert;
 *   - an entry is on exactly one hash chain and the LRU list (most
 *     recently used at the head);
 *   - an entry's key is "<hash>/<variant>", exactly what follows /media/
 *     in a path that served it, so a lookup needs no parsing;
 *   - the prebuilt headers are what lws_server.c's build_headers writes
 *     for the same 200 (same names, values and order).
 *
 * What it deliberately does not do: read files (handlers.c), write to
 * sockets (lws_server.c), HEAD, 304 or Connection: close responses (the
 * request path builds those).
 */
#include "gateway/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hash chains: a power of two; 64 MiB of ~30 KB images is ~2,000
 * entries, thumbnails of ~1 KB at most 65,536: chains stay short. */
#define MEDIA_CACHE_BUCKETS 8192u

/* The counters are written by the cache's own loop and read by any loop
 * rendering /metrics (gw__media_cache_stats): relaxed atomic stores. */
#define STAT_SET(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)

struct gw__media_cache {
	size_t bytes_max;
	size_t bytes_used;
	uint32_t entries;
	uint64_t hits;
	uint64_t misses;
	uint64_t evictions;
	gw__link lru;              /* most recently used first */
	gw__media_entry *buckets[MEDIA_CACHE_BUCKETS];
};

static uint64_t
key_hash(const char *key, size_t length)
{
	/* FNV-1a: keys start with a SHA-256 in hex, already uniform. */
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < length; i++) {
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static size_t
entry_cost(const gw__media_entry *e)
{
	return sizeof *e + GW_WS_PRE + e->response_length;
}

int
gw__media_cache_create(size_t bytes_max, gw__media_cache **out)
{
	gw__assert(out != NULL);
	gw__media_cache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return GW_ENOMEM;
	c->bytes_max = bytes_max;
	gw__list_init(&c->lru);
	*out = c;
	return 0;
}

static void
entry_unlink(gw__media_cache *c, gw__media_entry *e)
{
	gw__media_entry **p = &c->buckets[e->key_hash & (MEDIA_CACHE_BUCKETS - 1)];
	while (*p != e) {
		gw__assert(*p != NULL);
		p = &(*p)->next;
	}
	*p = e->next;
	gw__list_remove(&e->lru);
	gw__assert(c->bytes_used >= entry_cost(e));
	gw__assert(c->entries > 0);
	STAT_SET(c->bytes_used, c->bytes_used - entry_cost(e));
	STAT_SET(c->entries, c->entries - 1);
}

void
gw__media_cache_destroy(gw__media_cache *c)
{
	if (c == NULL)
		return;
	while (!gw__list_empty(&c->lru)) {
		gw__media_entry *e = gw__container_of(c->lru.next,
			gw__media_entry, lru);
		entry_unlink(c, e);
		free(e);
	}
	gw__assert(c->bytes_used == 0);
	free(c);
}

static gw__media_entry *
lookup(gw__media_cache *c, const char *key, size_t length)
{
	uint64_t h = key_hash(key, length);
	gw__media_entry *e = c->buckets[h & (MEDIA_CACHE_BUCKETS - 1)];
	while (e != NULL && (e->key_hash != h || e->key_length != length ||
				    memcmp(e->key, key, length) != 0))
		e = e->next;
	return e;
}

static void
push_front(gw__media_cache *c, gw__media_entry *e)
{
	e->lru.next = c->lru.next;
	e->lru.prev = &c->lru;
	c->lru.next->prev = &e->lru;
	c->lru.next = &e->lru;
}

const gw__media_entry *
gw__media_cache_find(gw__media_cache *c, const char *key, size_t length)
{
	if (c == NULL)
		return NULL;
	gw__media_entry *e = length < GW_MEDIA_KEY_BYTES_MAX ?
		lookup(c, key, length) : NULL;
	if (e == NULL) {
		STAT_SET(c->misses, c->misses + 1);
		return NULL;
	}
	if (c->lru.next != &e->lru) {
		gw__list_remove(&e->lru);
		push_front(c, e);
	}
	STAT_SET(c->hits, c->hits + 1);
	return e;
}

/* Writes the 200 response headers; returns their length, or 0 if they
 * did not fit. */
static size_t
write_headers(char *dst, size_t size, const char *content_type,
	size_t length, const char *key)
{
	size_t used = 0;
	int n = snprintf(dst, size,
		"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %zu\r\n",
		content_type, length);
	if (n < 0 || (size_t)n >= size)
		return 0;
	used = (size_t)n;
	for (size_t i = 0; i < gw__security_headers_count; i++) {
		n = snprintf(dst + used, size - used, "%s %s\r\n",
			gw__security_headers[i][0], gw__security_headers[i][1]);
		if (n < 0 || (size_t)n >= size - used)
			return 0;
		used += (size_t)n;
	}
	/* The ETag is the key with '-' for '/': "<hash>-<variant>". */
	const char *slash = strchr(key, '/');
	gw__assert(slash != NULL);
	n = snprintf(dst + used, size - used,
		"cache-control: %s\r\nETag: \"%.*s-%s\"\r\n\r\n",
		GW_CACHE_CONTROL_IMMUTABLE, (int)(slash - key), key, slash + 1);
	if (n < 0 || (size_t)n >= size - used)
		return 0;
	return used + (size_t)n;
}

int
gw__media_cache_insert(gw__media_cache *c, const char *hash,
	const char *variant, const char *content_type, const void *bytes,
	size_t length, const gw__media_entry **out)
{
	gw__assert(c != NULL);
	gw__assert(hash != NULL && variant != NULL);
	gw__assert(bytes != NULL || length == 0);
	*out = NULL;
	char key[GW_MEDIA_KEY_BYTES_MAX];
	int n = snprintf(key, sizeof key, "%s/%s", hash, variant);
	if (n <= 0 || (size_t)n >= sizeof key)
		return GW_EINVAL;
	if (length > GW_MEDIA_CACHE_FILE_BYTES_MAX)
		return GW_ETOOLARGE;
	const gw__media_entry *found = lookup(c, key, (size_t)n);
	if (found != NULL) {
		*out = found;
		return 0;
	}
	char headers[GW_MEDIA_HEADER_BYTES_MAX];
	size_t header_length = write_headers(headers, sizeof headers,
		content_type, length, key);
	if (header_length == 0)
		return GW_ETOOLARGE;
	gw__media_entry *e = malloc(sizeof *e + GW_WS_PRE + header_length +
		length);
	if (e == NULL)
		return GW_ENOMEM;
	memset(e, 0, sizeof *e);
	memcpy(e->key, key, (size_t)n + 1);
	e->key_length = (uint32_t)n;
	e->key_hash = key_hash(key, (size_t)n);
	e->content_type = content_type;
	e->header_length = header_length;
	e->response_length = header_length + length;
	e->response = e->storage + GW_WS_PRE;
	memcpy(e->response, headers, header_length);
	if (length > 0)
		memcpy(e->response + header_length, bytes, length);
	if (entry_cost(e) > c->bytes_max) {
		free(e);
		return GW_ETOOLARGE;
	}
	while (c->bytes_used + entry_cost(e) > c->bytes_max) {
		gw__assert(!gw__list_empty(&c->lru));
		gw__media_entry *old = gw__container_of(c->lru.prev,
			gw__media_entry, lru);
		entry_unlink(c, old);
		free(old);
		STAT_SET(c->evictions, c->evictions + 1);
	}
	gw__media_entry **bucket =
		&c->buckets[e->key_hash & (MEDIA_CACHE_BUCKETS - 1)];
	e->next = *bucket;
	*bucket = e;
	push_front(c, e);
	STAT_SET(c->bytes_used, c->bytes_used + entry_cost(e));
	STAT_SET(c->entries, c->entries + 1);
	gw__assert(c->bytes_used <= c->bytes_max);
	*out = e;
	return 0;
}

void
gw__media_cache_stats(const gw__media_cache *c, gw__media_cache_stat *out)
{
	memset(out, 0, sizeof *out);
	if (c == NULL)
		return;
	out->entries = __atomic_load_n(&c->entries, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&c->bytes_used, __ATOMIC_RELAXED);
	out->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
	out->misses = __atomic_load_n(&c->misses, __ATOMIC_RELAXED);
	out->evictions = __atomic_load_n(&c->evictions, __ATOMIC_RELAXED);
}
