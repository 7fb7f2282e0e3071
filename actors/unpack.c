/*
 * actors/unpack.c — one msgpack object from bytes into msgpack_object
 * form, for the answers an api client hands its callers.
 *
 * msgpack-c's msgpack_unpack walks a byte-at-a-time state machine and
 * asks its zone for every container: a 20-item feed page (some 600
 * objects) cost about 27,000 instructions to unpack, a quarter of the
 * api client's thread in the daily mix. Here one recursive pass tests
 * the common heads first (fixstr, fixint, fixmap, fixarray) and bumps
 * the zone once per container.
 *
 * Invariants: the result is what msgpack_unpack gives for the same bytes
 * (same types, integers of either sign folded as msgpack-c folds them,
 * strings, bins and exts pointing into the bytes, not copied), and the
 * same bytes are refused: a container nested deeper than msgpack-c's 32
 * open containers, a truncated object, a 0xc1 byte, bytes left over. A
 * container never announces more elements than bytes remain (each takes
 * at least one), so a few hostile bytes cannot reserve much memory.
 *
 * What it deliberately does not do: read a stream of objects, or copy
 * the bytes (the result is valid while they and the zone are).
 */
#include "actors/internal.h"

#include <string.h>

/* msgpack-c's unpacker holds at most this many open containers
 * (MSGPACK_EMBED_STACK_SIZE); deeper bytes are refused, as there. */
#define UNPACK_DEPTH_MAX 32u

static_assert(sizeof(msgpack_object_kv) == 2 * sizeof(msgpack_object),
	"a map's pairs are laid out as two objects each");

typedef struct unpacker {
	const unsigned char *at;  /* next byte to read */
	const unsigned char *end;
	msgpack_zone *zone;
	bool nomem;
} unpacker;

static uint64_t
be(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static void
set_int(msgpack_object *o, int64_t v)
{
	if (v < 0) {
		o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
		o->via.i64 = v;
	} else {
		o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		o->via.u64 = (uint64_t)v;
	}
}

static bool unpack_objects(unpacker *u, msgpack_object *v, uint64_t count,
	uint32_t depth);

/* n bytes of a string, bin or ext body at the cursor. */
static bool
take_bytes(unpacker *u, uint64_t n, const char **out)
{
	if (n > (uint64_t)(u->end - u->at))
		return false;
	*out = (const char *)u->at;
	u->at += n;
	return true;
}

/* A count or fixed-width value of n bytes at the cursor. */
static bool
take_be(unpacker *u, size_t n, uint64_t *out)
{
	if (n > (size_t)(u->end - u->at))
		return false;
	*out = be(u->at, n);
	u->at += n;
	return true;
}

/* n elements (2n objects for a map) after a container's head; depth is
 * the containers open around it, as msgpack-c counts them. */
static bool
unpack_container(unpacker *u, msgpack_object *o, uint64_t n, bool map,
	uint32_t depth)
{
	if (depth >= UNPACK_DEPTH_MAX)
		return false;
	uint64_t objects = map ? 2 * n : n;
	/* each takes a byte at least: refused before any room is taken */
	if (objects > (uint64_t)(u->end - u->at))
		return false;
	msgpack_object *v = NULL;
	if (objects > 0) {
		v = msgpack_zone_malloc(u->zone,
			(size_t)objects * sizeof(msgpack_object));
		if (v == NULL) {
			u->nomem = true;
			return false;
		}
	}
	if (map) {
		o->type = MSGPACK_OBJECT_MAP;
		o->via.map.size = (uint32_t)n;
		o->via.map.ptr = (msgpack_object_kv *)(void *)v;
	} else {
		o->type = MSGPACK_OBJECT_ARRAY;
		o->via.array.size = (uint32_t)n;
		o->via.array.ptr = v;
	}
	return unpack_objects(u, v, objects, depth + 1);
}

static bool
unpack_ext(unpacker *u, msgpack_object *o, uint64_t n)
{
	const char *body;
	if (!take_bytes(u, n + 1, &body)) /* the type byte, then n */
		return false;
	o->type = MSGPACK_OBJECT_EXT;
	o->via.ext.type = (int8_t)body[0];
	o->via.ext.size = (uint32_t)n;
	o->via.ext.ptr = body + 1;
	return true;
}

static bool
unpack_bytes(unpacker *u, msgpack_object *o, msgpack_object_type type,
	uint64_t n)
{
	o->type = type;
	o->via.str.size = (uint32_t)n;
	return take_bytes(u, n, &o->via.str.ptr);
}

/* Heads from 0xc0 to 0xdf, after the head byte h. */
static bool
unpack_other(unpacker *u, msgpack_object *o, unsigned char h,
	uint32_t depth)
{
	uint64_t v;
	switch (h) {
	case 0xc0:
		o->type = MSGPACK_OBJECT_NIL;
		return true;
	case 0xc2: case 0xc3:
		o->type = MSGPACK_OBJECT_BOOLEAN;
		o->via.boolean = h == 0xc3;
		return true;
	case 0xc4: case 0xc5: case 0xc6:
		return take_be(u, (size_t)1 << (h - 0xc4), &v) &&
			unpack_bytes(u, o, MSGPACK_OBJECT_BIN, v);
	case 0xc7: case 0xc8: case 0xc9:
		return take_be(u, (size_t)1 << (h - 0xc7), &v) &&
			unpack_ext(u, o, v);
	case 0xca: {
		if (!take_be(u, 4, &v))
			return false;
		uint32_t bits = (uint32_t)v;
		float f;
		memcpy(&f, &bits, sizeof f);
		o->type = MSGPACK_OBJECT_FLOAT32;
		o->via.f64 = (double)f;
		return true;
	}
	case 0xcb:
		if (!take_be(u, 8, &v))
			return false;
		o->type = MSGPACK_OBJECT_FLOAT64;
		memcpy(&o->via.f64, &v, sizeof v);
		return true;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		if (!take_be(u, (size_t)1 << (h - 0xcc), &v))
			return false;
		o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		o->via.u64 = v;
		return true;
	case 0xd0:
		if (!take_be(u, 1, &v))
			return false;
		set_int(o, (int8_t)v);
		return true;
	case 0xd1:
		if (!take_be(u, 2, &v))
			return false;
		set_int(o, (int16_t)v);
		return true;
	case 0xd2:
		if (!take_be(u, 4, &v))
			return false;
		set_int(o, (int32_t)v);
		return true;
	case 0xd3:
		if (!take_be(u, 8, &v))
			return false;
		set_int(o, (int64_t)v);
		return true;
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
		return unpack_ext(u, o, (uint64_t)1 << (h - 0xd4));
	case 0xd9: case 0xda: case 0xdb:
		return take_be(u, (size_t)1 << (h - 0xd9), &v) &&
			unpack_bytes(u, o, MSGPACK_OBJECT_STR, v);
	case 0xdc: case 0xdd:
		return take_be(u, (size_t)2 << (h - 0xdc), &v) &&
			unpack_container(u, o, v, false, depth);
	case 0xde: case 0xdf:
		return take_be(u, (size_t)2 << (h - 0xde), &v) &&
			unpack_container(u, o, v, true, depth);
	default:
		return false; /* 0xc1 */
	}
}

/* count objects into v, each at the given depth. The common heads
 * (fixstr, positive fixint, fixmap, fixarray, negative fixint) are read
 * here with the cursor in a register; the rest in unpack_other. */
static bool
unpack_objects(unpacker *u, msgpack_object *v, uint64_t count,
	uint32_t depth)
{
	const unsigned char *p = u->at;
	const unsigned char *end = u->end;
	for (uint64_t i = 0; i < count; i++) {
		msgpack_object *o = &v[i];
		if (p >= end)
			return false;
		unsigned char h = *p++;
		if (h >= 0xa0 && h <= 0xbf) {
			size_t n = h & 0x1fu;
			if (n > (size_t)(end - p))
				return false;
			o->type = MSGPACK_OBJECT_STR;
			o->via.str.size = (uint32_t)n;
			o->via.str.ptr = (const char *)p;
			p += n;
			continue;
		}
		if (h <= 0x7f) {
			o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
			o->via.u64 = h;
			continue;
		}
		if (h >= 0xe0) {
			o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
			o->via.i64 = (int8_t)h;
			continue;
		}
		u->at = p;
		bool ok = h <= 0x9f
			? unpack_container(u, o, h & 0x0fu, h <= 0x8f, depth)
			: unpack_other(u, o, h, depth);
		if (!ok)
			return false;
		p = u->at;
	}
	u->at = p;
	return true;
}

int
actors__unpack(const void *bytes, size_t length, msgpack_zone *zone,
	msgpack_object *out)
{
	ACTORS_ASSERT(bytes != NULL || length == 0);
	ACTORS_ASSERT(zone != NULL);
	const unsigned char *p = bytes;
	unpacker u = {p, p + length, zone, false};
	if (length == 0 || !unpack_objects(&u, out, 1, 0))
		return u.nomem ? API_EUNAVAILABLE : API_EINVALID;
	if (u.at != u.end)
		return API_EINVALID;
	return API_OK;
}
