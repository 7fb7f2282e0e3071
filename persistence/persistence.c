/*
 * persistence.c — error names, the log helper, asserts, and the address
 * map shared by the store and the node.
 *
 * The map is a plain open-addressing table: callers hold their own lock;
 * it never shrinks (a node's working set comes back).
 */
#include "persistence/internal.h"

#include <stdarg.h>

/* The map grows by doubling from this many slots. */
#define ADDR_MAP_CAPACITY_MIN 16u

const char *
ps_strerror(int code)
{
	switch (code) {
	case PS_OK: return "ok";
	case PS_ENOMEM: return "out of memory";
	case PS_EINVAL: return "invalid argument";
	case PS_EIO: return "i/o error";
	case PS_ENOSPC: return "no space left on device";
	case PS_ECORRUPT: return "stored data is corrupt";
	case PS_EREADONLY: return "journal failed: appends refused until a probe succeeds";
	case PS_ESTOPPED: return "stopped";
	case PS_EFULL: return "queue full";
	case PS_ENOTFOUND: return "not found";
	case PS_EVERSION: return "unknown format version";
	case PS_ETOOBIG: return "too big";
	case PS_EBUSY: return "busy";
	default: return "unknown error";
	}
}

int
ps_to_rt_error(int code)
{
	switch (code) {
	case PS_OK: return RT_OK;
	case PS_ENOMEM: return RT_ENOMEM;
	case PS_EFULL: return RT_ENOMEM;
	case PS_EINVAL: return RT_EINVAL;
	case PS_ECORRUPT: return RT_ECORRUPT;
	case PS_EVERSION: return RT_ECORRUPT;
	case PS_ESTOPPED: return RT_ESTOPPED;
	case PS_ENOTFOUND: return RT_ENOTFOUND;
	case PS_ETOOBIG: return RT_ETOOBIG;
	default: return RT_EIO;
	}
}

void
ps__assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	abort();
}

void
ps__log(ps_log_callback log, void *arg, rt_log_level level,
	const char *format, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, format);
	vsnprintf(line, sizeof line, format, ap);
	va_end(ap);
	if (log != NULL) {
		log(arg, level, line);
		return;
	}
	static const char *names[] = {"debug", "info", "warn", "error"};
	fprintf(stderr, "%s persistence: %s\n",
		level <= RT_LOG_ERROR ? names[level] : "?", line);
}

/* ---- address map --------------------------------------------------------- */

static size_t
addr_hash(rt_addr key)
{
	uint64_t h = key.id * 0x9E3779B97F4A7C15ull ^ (uint64_t)key.kind;
	h ^= h >> 29;
	h *= 0xBF58476D1CE4E5B9ull;
	h ^= h >> 32;
	return (size_t)h;
}

static size_t
addr_map_find(const ps__addr_map *map, rt_addr key)
{
	size_t mask = map->capacity - 1;
	size_t i = addr_hash(key) & mask;
	/* Bounded: load is at most 1/2, so an empty slot exists. */
	for (size_t n = 0; n < map->capacity; n++) {
		const ps__addr_slot *s = &map->slots[i];
		if (s->value == NULL || rt_addr_equal(s->key, key))
			return i;
		i = (i + 1) & mask;
	}
	ps__assert(!"address map has no empty slot");
	return 0;
}

void *
ps__addr_map_get(const ps__addr_map *map, rt_addr key)
{
	ps__assert(map != NULL);
	if (map->capacity == 0)
		return NULL;
	return map->slots[addr_map_find(map, key)].value;
}

static int
addr_map_grow(ps__addr_map *map)
{
	size_t capacity = map->capacity ? map->capacity * 2 : ADDR_MAP_CAPACITY_MIN;
	ps__addr_slot *slots = calloc(capacity, sizeof *slots);
	if (slots == NULL)
		return PS_ENOMEM;
	ps__addr_map old = *map;
	map->slots = slots;
	map->capacity = capacity;
	map->count = 0;
	for (size_t i = 0; i < old.capacity; i++) {
		if (old.slots[i].value == NULL)
			continue;
		size_t j = addr_map_find(map, old.slots[i].key);
		map->slots[j] = old.slots[i];
		map->count++;
	}
	ps__assert(map->count == old.count);
	free(old.slots);
	return PS_OK;
}

int
ps__addr_map_put(ps__addr_map *map, rt_addr key, void *value)
{
	ps__assert(map != NULL);
	ps__assert(value != NULL);
	if ((map->count + 1) * 2 > map->capacity) {
		int rc = addr_map_grow(map);
		if (rc != 0)
			return rc;
	}
	size_t i = addr_map_find(map, key);
	if (map->slots[i].value == NULL)
		map->count++;
	map->slots[i].key = key;
	map->slots[i].value = value;
	return PS_OK;
}

void *
ps__addr_map_remove(ps__addr_map *map, rt_addr key)
{
	ps__assert(map != NULL);
	if (map->capacity == 0)
		return NULL;
	size_t mask = map->capacity - 1;
	size_t i = addr_map_find(map, key);
	void *value = map->slots[i].value;
	if (value == NULL)
		return NULL;
	map->slots[i].value = NULL;
	map->count--;
	/* Backward-shift: move later members of the probe run into the hole
	 * when their home slot does not lie between the hole and them. */
	size_t hole = i;
	size_t j = (i + 1) & mask;
	while (map->slots[j].value != NULL) {
		size_t home = addr_hash(map->slots[j].key) & mask;
		bool movable = hole <= j ? (home <= hole || home > j)
					 : (home <= hole && home > j);
		if (movable) {
			map->slots[hole] = map->slots[j];
			map->slots[j].value = NULL;
			hole = j;
		}
		j = (j + 1) & mask;
	}
	return value;
}

void
ps__addr_map_free(ps__addr_map *map)
{
	ps__assert(map != NULL);
	free(map->slots);
	memset(map, 0, sizeof *map);
}
