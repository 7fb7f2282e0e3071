/*
 * map.c — a u64 -> pointer map with linear probing.
 *
 * Role: pending asks (by correlation), timers (by id) and inboxes (by id)
 * are looked up by a 64-bit key. Deletion shifts later entries back, so
 * there are no tombstones and lookups stay short.
 *
 * Invariants: capacity is a power of two; load stays at most 1/2; key 0
 * marks an empty slot (callers never use 0 as a key).
 * Does not: lock. Callers hold their own lock.
 */
#include "runtime/internal.h"

/* First capacity: small, because most maps (inboxes) stay small. */
#define MAP_CAPACITY_INITIAL 16u

static uint32_t
map_slot(const rt__map *map, uint64_t key)
{
	uint64_t x = key * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 32) & map->mask;
}

void
rt__map_init(rt__map *map)
{
	memset(map, 0, sizeof *map);
}

void
rt__map_free(rt__map *map)
{
	free(map->keys);
	free(map->values);
	memset(map, 0, sizeof *map);
}

static int
map_grow(rt__map *map)
{
	uint32_t capacity = map->keys == NULL ? MAP_CAPACITY_INITIAL
					      : (map->mask + 1u) * 2u;
	RT_ASSERT(capacity != 0);
	uint64_t *keys = calloc(capacity, sizeof *keys);
	void **values = calloc(capacity, sizeof *values);
	if (keys == NULL || values == NULL) {
		free(keys);
		free(values);
		return RT_ENOMEM;
	}
	rt__map old = *map;
	map->keys = keys;
	map->values = values;
	map->mask = capacity - 1u;
	map->count = 0;
	if (old.keys != NULL) {
		for (uint32_t i = 0; i <= old.mask; i++) {
			if (old.keys[i] != 0) {
				int rc = rt__map_put(map, old.keys[i], old.values[i]);
				RT_ASSERT(rc == 0);
			}
		}
	}
	free(old.keys);
	free(old.values);
	return 0;
}

int
rt__map_put(rt__map *map, uint64_t key, void *value)
{
	RT_ASSERT(key != 0);
	if (map->keys == NULL || (map->count + 1u) * 2u > map->mask + 1u) {
		int rc = map_grow(map);
		if (rc != 0)
			return rc;
	}
	uint32_t i = map_slot(map, key);
	while (map->keys[i] != 0) {
		RT_ASSERT(map->keys[i] != key);
		i = (i + 1u) & map->mask;
	}
	map->keys[i] = key;
	map->values[i] = value;
	map->count++;
	return 0;
}

void *
rt__map_get(const rt__map *map, uint64_t key)
{
	RT_ASSERT(key != 0);
	if (map->keys == NULL)
		return NULL;
	uint32_t i = map_slot(map, key);
	while (map->keys[i] != 0) {
		if (map->keys[i] == key)
			return map->values[i];
		i = (i + 1u) & map->mask;
	}
	return NULL;
}

void *
rt__map_remove(rt__map *map, uint64_t key)
{
	RT_ASSERT(key != 0);
	if (map->keys == NULL)
		return NULL;
	uint32_t i = map_slot(map, key);
	while (map->keys[i] != key) {
		if (map->keys[i] == 0)
			return NULL;
		i = (i + 1u) & map->mask;
	}
	void *value = map->values[i];
	RT_ASSERT(map->count > 0);
	map->count--;
	/* Backward-shift: move later members of the probe run into the hole
	 * when their home slot does not lie cyclically in (hole, j]. */
	uint32_t hole = i;
	uint32_t j = i;
	for (;;) {
		j = (j + 1u) & map->mask;
		if (map->keys[j] == 0)
			break;
		uint32_t home = map_slot(map, map->keys[j]);
		bool in_range = hole <= j ? (hole < home && home <= j)
					  : (hole < home || home <= j);
		if (in_range)
			continue;
		map->keys[hole] = map->keys[j];
		map->values[hole] = map->values[j];
		hole = j;
	}
	map->keys[hole] = 0;
	map->values[hole] = NULL;
	return value;
}
