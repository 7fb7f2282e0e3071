/*
 * msgpack_same.h — whether two msgpack_objects unpacked from the same
 * bytes are the same object, for the tests and the fuzz target that hold
 * actors__unpack to msgpack-c's msgpack_unpack.
 *
 * Stricter than msgpack_object_equal: types must match exactly (FLOAT32
 * is not FLOAT64), floats compare by their bits (a NaN is the same NaN),
 * and strings, bins and exts must point at the same bytes (both point
 * into the input, neither copies; an empty one may point anywhere).
 */
#ifndef FLOCK_TESTS_MSGPACK_SAME_H
#define FLOCK_TESTS_MSGPACK_SAME_H

#include <stdbool.h>
#include <string.h>

#include <msgpack.h>

static inline bool
msgpack_same(const msgpack_object *a, const msgpack_object *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case MSGPACK_OBJECT_NIL:
		return true;
	case MSGPACK_OBJECT_BOOLEAN:
		return a->via.boolean == b->via.boolean;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return a->via.u64 == b->via.u64;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return a->via.i64 == b->via.i64;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return memcmp(&a->via.f64, &b->via.f64, sizeof a->via.f64) == 0;
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN:
		return a->via.str.size == b->via.str.size &&
			(a->via.str.size == 0 ||
				a->via.str.ptr == b->via.str.ptr);
	case MSGPACK_OBJECT_EXT:
		return a->via.ext.type == b->via.ext.type &&
			a->via.ext.size == b->via.ext.size &&
			(a->via.ext.size == 0 ||
				a->via.ext.ptr == b->via.ext.ptr);
	case MSGPACK_OBJECT_ARRAY:
		if (a->via.array.size != b->via.array.size)
			return false;
		for (uint32_t i = 0; i < a->via.array.size; i++)
			if (!msgpack_same(&a->via.array.ptr[i],
				    &b->via.array.ptr[i]))
				return false;
		return true;
	case MSGPACK_OBJECT_MAP:
		if (a->via.map.size != b->via.map.size)
			return false;
		for (uint32_t i = 0; i < a->via.map.size; i++)
			if (!msgpack_same(&a->via.map.ptr[i].key,
				    &b->via.map.ptr[i].key) ||
				!msgpack_same(&a->via.map.ptr[i].val,
					&b->via.map.ptr[i].val))
				return false;
		return true;
	default:
		return false;
	}
}

#endif
