/*
 * json.c — msgpack->JSON transcoding, request JSON, problem+json.
 *
 * Role: the domain answers in msgpack maps shaped exactly like API.md's
 * JSON bodies; this file turns them into JSON without knowing the domain
 * (generic over the msgpack types). Request bodies are parsed with
 * jansson and read through typed accessors that name the offending field
 * in their detail. Every error body is RFC 9457 problem+json.
 *
 * Invariants: recursion is bounded by GW_JSON_DEPTH_MAX; request objects
 * refuse duplicate keys; output is always valid UTF-8 JSON.
 *
 * What it deliberately does not do: validate domain limits (lengths,
 * formats of usernames): the domain does, in one place.
 */
#include "gateway/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* ---- msgpack -> JSON ----------------------------------------------------- */

static int to_json(const msgpack_object *o, int depth, json_t **out);

/* A string's bytes. msgpack-c leaves ptr NULL for an empty string in
 * some encodings (fixstr 0xa0) and points into the buffer in others
 * (str8 0xd9 0x00); both are "", and must render the same: the item
 * cache keys a map by content, so text that depended on the encoding
 * would differ between a hit and a fresh render. */
static const char *
str_bytes(const msgpack_object_str *s)
{
	return s->ptr != NULL ? s->ptr : "";
}

static int
map_to_json(const msgpack_object_map *map, int depth, json_t **out)
{
	json_t *obj = json_object();
	if (obj == NULL)
		return GW_ENOMEM;
	for (uint32_t i = 0; i < map->size; i++) {
		const msgpack_object_kv *kv = &map->ptr[i];
		char key[64];
		const char *k;
		size_t klen;
		if (kv->key.type == MSGPACK_OBJECT_STR) {
			k = str_bytes(&kv->key.via.str);
			klen = kv->key.via.str.size;
		} else if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
			klen = (size_t)snprintf(key, sizeof key, "%" PRIu64,
				kv->key.via.u64);
			k = key;
		} else {
			json_decref(obj);
			return GW_EINVAL;
		}
		/* JSON allows "\u0000" in a key; many parsers (jansson's
		 * included) refuse it, so no answer carries one. */
		if (memchr(k, '\0', klen) != NULL) {
			json_decref(obj);
			return GW_EINVAL;
		}
		json_t *v;
		int rc = to_json(&kv->val, depth + 1, &v);
		if (rc < 0) {
			json_decref(obj);
			return rc;
		}
		/* json_object_setn_new checks the key's UTF-8. */
		if (json_object_setn_new(obj, k, klen, v) != 0) {
			json_decref(obj);
			return GW_EINVAL;
		}
	}
	*out = obj;
	return 0;
}

static int
to_json(const msgpack_object *o, int depth, json_t **out)
{
	if (depth > GW_JSON_DEPTH_MAX)
		return GW_EINVAL;
	json_t *v = NULL;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		v = json_null();
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		v = json_boolean(o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX) {
			char digits[24];
			snprintf(digits, sizeof digits, "%" PRIu64, o->via.u64);
			v = json_string(digits);
		} else {
			v = json_integer((json_int_t)o->via.u64);
		}
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v = json_integer((json_int_t)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		/* JSON has no NaN or infinity. */
		if (o->via.f64 != o->via.f64 || o->via.f64 > 1e308 ||
			o->via.f64 < -1e308)
			v = json_null();
		else
			v = json_real(o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
		v = json_stringn(str_bytes(&o->via.str), o->via.str.size);
		if (v == NULL)
			return GW_EINVAL; /* invalid UTF-8 */
		break;
	case MSGPACK_OBJECT_BIN: {
		size_t n = sodium_base64_encoded_len(o->via.bin.size,
			sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		char *b64 = malloc(n);
		if (b64 == NULL)
			return GW_ENOMEM;
		sodium_bin2base64(b64, n,
			(const unsigned char *)(o->via.bin.ptr != NULL
					? o->via.bin.ptr
					: ""),
			o->via.bin.size,
			sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		v = json_string(b64);
		free(b64);
		break;
	}
	case MSGPACK_OBJECT_ARRAY: {
		json_t *arr = json_array();
		if (arr == NULL)
			return GW_ENOMEM;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *item;
			int rc = to_json(&o->via.array.ptr[i], depth + 1, &item);
			if (rc < 0) {
				json_decref(arr);
				return rc;
			}
			if (json_array_append_new(arr, item) != 0) {
				json_decref(arr);
				return GW_ENOMEM;
			}
		}
		*out = arr;
		return 0;
	}
	case MSGPACK_OBJECT_MAP:
		return map_to_json(&o->via.map, depth, out);
	default:
		v = json_null(); /* ext: nothing JSON can say */
		break;
	}
	if (v == NULL)
		return GW_ENOMEM;
	*out = v;
	return 0;
}

int
gw__msgpack_to_json(const msgpack_object *o, json_t **out)
{
	gw__assert(o != NULL);
	gw__assert(out != NULL);
	*out = NULL;
	return to_json(o, 0, out);
}

char *
gw__json_render(const json_t *v, size_t *length)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s != NULL && length != NULL)
		*length = strlen(s);
	return s;
}

/* ---- msgpack -> JSON text, without the tree ------------------------------ */

/* A scalar rendered by jansson (escaping, UTF-8 checks, number formats):
 * the same text json_dumps writes for it inside a tree. Takes v. */
static int
render_scalar(json_t *v, gw__body *out)
{
	if (v == NULL)
		return GW_EINVAL;
	char small[256];
	size_t n = json_dumpb(v, small, sizeof small,
		JSON_COMPACT | JSON_ENCODE_ANY);
	int rc = GW_ENOMEM;
	if (n == 0) {
		rc = GW_EINVAL;
	} else if (n <= sizeof small) {
		rc = gw__body_append(out, small, n);
	} else {
		char *big = malloc(n);
		if (big != NULL &&
			json_dumpb(v, big, n, JSON_COMPACT | JSON_ENCODE_ANY) ==
				n)
			rc = gw__body_append(out, big, n);
		free(big);
	}
	json_decref(v);
	return rc;
}

/* Printable ASCII without '"' or '\\': jansson writes such a string
 * between quotes as it is (it escapes only those two, control bytes,
 * and '/' or non-ASCII under flags not used here). */
static bool
plain_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			return false;
	}
	return true;
}

/* A string: a plain one written here, any other through jansson; both
 * the text json_dumps writes. A jansson value per scalar was an
 * allocation, a copy and a free each: most of a stream event's render. */
static int
render_string(const char *s, size_t n, gw__body *out)
{
	if (!plain_ascii(s, n)) {
		json_t *v = json_stringn(s, n);
		return v == NULL ? GW_EINVAL : render_scalar(v, out);
	}
	int rc = gw__body_reserve(out, n + 2);
	if (rc == 0)
		rc = gw__body_append(out, "\"", 1);
	if (rc == 0 && n > 0)
		rc = gw__body_append(out, s, n);
	return rc != 0 ? rc : gw__body_append(out, "\"", 1);
}

/* The scalars whose JSON text is fixed or a plain decimal (as jansson's
 * "%lld"): written here. 1 when o is another kind. */
static int
render_simple(const msgpack_object *o, gw__body *out)
{
	char digits[24];
	int n;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return gw__body_append(out, "null", 4);
	case MSGPACK_OBJECT_BOOLEAN:
		return o->via.boolean ? gw__body_append(out, "true", 4)
				      : gw__body_append(out, "false", 5);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return 1; /* a decimal string */
		n = snprintf(digits, sizeof digits, "%" PRIu64, o->via.u64);
		return gw__body_append(out, digits, (size_t)n);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		n = snprintf(digits, sizeof digits, "%" PRId64, o->via.i64);
		return gw__body_append(out, digits, (size_t)n);
	case MSGPACK_OBJECT_STR:
		return render_string(str_bytes(&o->via.str), o->via.str.size,
			out);
	default:
		return 1;
	}
}

static int render(gw__json_cache *cache, const msgpack_object *o, int depth,
	gw__body *out);

/* Keys of one map as JSON object keys (integers in decimal, as the tree
 * does); GW_EINVAL for another type, a NUL or a repeated key (the tree
 * would keep one of them: the domain never sends such a map). */
/* Key i of map as a JSON object key (integers in decimal, as the tree
 * does); GW_EINVAL for another type, a NUL or a repeated key (the tree
 * would keep one of them: the domain never sends such a map). Looks at
 * the keys only. */
static int
render_key(const msgpack_object_map *map, uint32_t i, gw__body *out)
{
	const msgpack_object *key = &map->ptr[i].key;
	char digits[24];
	const char *k;
	size_t klen;
	if (key->type == MSGPACK_OBJECT_STR) {
		k = str_bytes(&key->via.str);
		klen = key->via.str.size;
	} else if (key->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		klen = (size_t)snprintf(digits, sizeof digits, "%" PRIu64,
			key->via.u64);
		k = digits;
	} else {
		return GW_EINVAL;
	}
	if (klen > 0 && memchr(k, '\0', klen) != NULL)
		return GW_EINVAL;
	for (uint32_t j = 0; j < i; j++) {
		const msgpack_object *seen = &map->ptr[j].key;
		if (key->type == MSGPACK_OBJECT_STR &&
			seen->type == MSGPACK_OBJECT_STR &&
			seen->via.str.size == klen &&
			(klen == 0 || memcmp(seen->via.str.ptr, k, klen) == 0))
			return GW_EINVAL;
		if (key->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
			seen->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
			seen->via.u64 == key->via.u64)
			return GW_EINVAL;
		if (seen->type != key->type) {
			/* "7" and 7 are the same JSON key. */
			char other[24];
			const char *ok = str_bytes(&seen->via.str);
			size_t olen = seen->via.str.size;
			if (seen->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
				olen = (size_t)snprintf(other, sizeof other,
					"%" PRIu64, seen->via.u64);
				ok = other;
			} else if (seen->type != MSGPACK_OBJECT_STR) {
				continue;
			}
			if (olen == klen &&
				(klen == 0 || memcmp(ok, k, klen) == 0))
				return GW_EINVAL;
		}
	}
	return render_string(k, klen, out);
}

static int
render_map(gw__json_cache *cache, const msgpack_object_map *map, int depth,
	gw__body *out)
{
	int rc = gw__body_append(out, "{", 1);
	for (uint32_t i = 0; i < map->size && rc == 0; i++) {
		if (i > 0)
			rc = gw__body_append(out, ",", 1);
		if (rc == 0)
			rc = render_key(map, i, out);
		if (rc == 0)
			rc = gw__body_append(out, ":", 1);
		if (rc == 0)
			rc = render(cache, &map->ptr[i].val, depth + 1, out);
	}
	return rc != 0 ? rc : gw__body_append(out, "}", 1);
}

/* ---- the fragment cache ---- */

/* Slots of the cache, in sets of FRAGMENT_WAYS: a feed page is 20-50
 * posts; the hot set of DeathStarBench's mix over Reed98 is the ten
 * newest posts of each of its 962 users (user timelines) plus the
 * newest posts followed (home timelines), about 10,000 items. With 4,096
 * direct-mapped slots 61% of the user timeline's items missed (each miss
 * is an unpack and a render, ~7 us of the loop). A set replaces the
 * entry used longest ago; 10,000 items fill the sets 2.4 deep on
 * average, and one set in 500 holds more than its ways. */
#define FRAGMENT_SLOTS 32768u
#define FRAGMENT_WAYS 8u
/* Only maps this small (packed) are cached: a post item is ~400 bytes
 * packed and ~700 as text. */
#define FRAGMENT_KEY_BYTES_MAX 2048u
#define FRAGMENT_TEXT_BYTES_MAX 8192u
/* Keys and texts held in all, whatever their sizes (the slots alone
 * would allow FRAGMENT_SLOTS * 10 KiB): an entry that would pass it
 * is not kept. ~1.1 KB an item: ~22,000 items. */
#define FRAGMENT_BYTES_MAX (24u * 1024u * 1024u)

typedef struct fragment {
	uint64_t hash;
	uint16_t key_length;
	uint16_t text_length;
	uint32_t used;       /* the cache's clock when last hit or made */
	unsigned char *key;  /* owned: the map packed as msgpack */
	char *text;          /* owned: its JSON */
} fragment;

/* A map's cache key: its shape and bytes in an unambiguous form (type,
 * sizes, then contents), written straight from the unpacked object. */
typedef struct item_key {
	unsigned char bytes[FRAGMENT_KEY_BYTES_MAX];
	size_t length;
	bool overflow;
} item_key;

/* Subtrees after the last anchor a raw key takes. */
#define RAW_TAIL_MAX 64u

typedef struct raw_walk {
	const char *lo, *hi;
	const char *first; /* first anchor's text */
	const char *last;  /* last anchor's text */
	const char *end;   /* last anchor's end */
	uint32_t tails;    /* subtrees after it, last first */
	const msgpack_object *tail[RAW_TAIL_MAX];
	bool failed;
} raw_walk;

struct gw__json_cache {
	uint64_t seed;
	uint64_t hits;
	uint64_t misses;
	struct item_key *key; /* scratch for render_item */
	struct raw_walk *walk; /* scratch for raw_key */
	msgpack_zone *zone;    /* render_packed's decoded pieces */
	char *cursor;          /* render_packed: the page's next_cursor */
	size_t cursor_size;
	/* During gw__msgpack_render_raw: the packed bytes the object was
	 * unpacked from (its strings point into them); else NULL. */
	const char *raw_lo;
	const char *raw_hi;
	uint32_t clock;        /* counts lookups: fragment.used */
	size_t bytes;          /* keys and texts held */
	fragment slots[FRAGMENT_SLOTS];
};

int
gw__json_cache_create(gw__json_cache **out)
{
	gw__json_cache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return GW_ENOMEM;
	c->key = malloc(sizeof *c->key);
	c->walk = malloc(sizeof *c->walk);
	c->zone = msgpack_zone_new(8192);
	if (c->key == NULL || c->walk == NULL || c->zone == NULL) {
		free(c->key);
		free(c->walk);
		if (c->zone != NULL)
			msgpack_zone_free(c->zone);
		free(c);
		return GW_ENOMEM;
	}
	/* Seeded so no client can aim posts at one slot. */
	randombytes_buf(&c->seed, sizeof c->seed);
	*out = c;
	return 0;
}

void
gw__json_cache_destroy(gw__json_cache *c)
{
	if (c == NULL)
		return;
	for (uint32_t i = 0; i < FRAGMENT_SLOTS; i++) {
		free(c->slots[i].key);
		free(c->slots[i].text);
	}
	free(c->key);
	free(c->walk);
	msgpack_zone_free(c->zone);
	free(c);
}

void
gw__json_cache_counts(const gw__json_cache *c, uint64_t *hits,
	uint64_t *misses)
{
	*hits = c != NULL ? c->hits : 0;
	*misses = c != NULL ? c->misses : 0;
}


static void
key_put(item_key *k, const void *bytes, size_t n)
{
	if (k->overflow || n > sizeof k->bytes - k->length) {
		k->overflow = true;
		return;
	}
	if (n > 0)
		memcpy(k->bytes + k->length, bytes, n);
	k->length += n;
}

static void
key_object(item_key *k, const msgpack_object *o, int depth)
{
	if (depth > GW_JSON_DEPTH_MAX) {
		k->overflow = true;
		return;
	}
	unsigned char type = (unsigned char)o->type;
	key_put(k, &type, 1);
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		break;
	case MSGPACK_OBJECT_BOOLEAN: {
		unsigned char b = o->via.boolean ? 1 : 0;
		key_put(k, &b, 1);
		break;
	}
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		key_put(k, &o->via.u64, sizeof o->via.u64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		key_put(k, &o->via.f64, sizeof o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN:
		key_put(k, &o->via.str.size, sizeof o->via.str.size);
		key_put(k, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		key_put(k, &o->via.array.size, sizeof o->via.array.size);
		for (uint32_t i = 0; i < o->via.array.size && !k->overflow; i++)
			key_object(k, &o->via.array.ptr[i], depth + 1);
		break;
	case MSGPACK_OBJECT_MAP:
		key_put(k, &o->via.map.size, sizeof o->via.map.size);
		for (uint32_t i = 0; i < o->via.map.size && !k->overflow; i++) {
			key_object(k, &o->via.map.ptr[i].key, depth + 1);
			key_object(k, &o->via.map.ptr[i].val, depth + 1);
		}
		break;
	default:
		/* ext renders as null whatever it holds. */
		break;
	}
}

/*
 * A map's key from the bytes it was unpacked from, without visiting
 * every field: msgpack-c points a string at its text in the packed
 * buffer, and packs a tree depth first, so the bytes from the first
 * non-empty string's text to the last one's end (R) are the packing of
 * everything in between. The key is a marker, the walk before the
 * first such string as key_object writes it (H, that string as its
 * size only), R's length, R, and the complete subtrees after the last
 * such string, as key_object writes them (T). H, R and T read back to
 * the same objects in the same order, so equal keys are equal maps. H
 * is found walking forward and T walking back from the end: both are
 * a few objects on a feed item. Empty strings are not anchors
 * (msgpack-c may point them anywhere); an anchor outside the buffer,
 * anchors out of order, and anything too big make raw_key fail
 * (false): the caller then keys by key_object.
 */
#define RAW_KEY_MARKER 0xfeu
#define RAW_KEY_ANCHOR 0xffu
/* A list item keyed by its packed bytes (render_packed). */
#define RAW_KEY_PACKED 0xfdu

/* A non-empty string: an anchor, or a failure when not in the buffer. */
static bool
raw_anchor(raw_walk *w, const msgpack_object *o)
{
	if ((o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN) ||
		o->via.str.size == 0)
		return false;
	const char *p = o->via.str.ptr;
	if (p == NULL || p < w->lo || p >= w->hi ||
		o->via.str.size > (size_t)(w->hi - p))
		w->failed = true;
	return true;
}

/* Writes H into k up to the first anchor; true when it was found. */
static bool
raw_head(raw_walk *w, item_key *k, const msgpack_object *o, int depth)
{
	if (depth > GW_JSON_DEPTH_MAX) {
		w->failed = true;
		return false;
	}
	if (raw_anchor(w, o)) {
		unsigned char a[2] = {RAW_KEY_ANCHOR, (unsigned char)o->type};
		key_put(k, a, sizeof a);
		key_put(k, &o->via.str.size, sizeof o->via.str.size);
		w->first = o->via.str.ptr;
		return !w->failed;
	}
	if (o->type == MSGPACK_OBJECT_ARRAY) {
		unsigned char type = (unsigned char)o->type;
		key_put(k, &type, 1);
		key_put(k, &o->via.array.size, sizeof o->via.array.size);
		for (uint32_t i = 0; i < o->via.array.size && !w->failed; i++)
			if (raw_head(w, k, &o->via.array.ptr[i], depth + 1))
				return true;
		return false;
	}
	if (o->type == MSGPACK_OBJECT_MAP) {
		unsigned char type = (unsigned char)o->type;
		key_put(k, &type, 1);
		key_put(k, &o->via.map.size, sizeof o->via.map.size);
		for (uint32_t i = 0; i < o->via.map.size && !w->failed; i++) {
			if (raw_head(w, k, &o->via.map.ptr[i].key, depth + 1) ||
				(!w->failed &&
					raw_head(w, k, &o->via.map.ptr[i].val,
						depth + 1)))
				return true;
		}
		return false;
	}
	key_object(k, o, depth);
	return false;
}

static bool raw_back(raw_walk *w, const msgpack_object *o, int depth);

/* One child of raw_back's walk: true when the last anchor is in it;
 * else it is a whole subtree of T. */
static bool
raw_back_child(raw_walk *w, const msgpack_object *o, int depth)
{
	if (raw_back(w, o, depth))
		return true;
	if (w->failed)
		return false;
	if (w->tails == RAW_TAIL_MAX) {
		w->failed = true;
		return false;
	}
	w->tail[w->tails++] = o;
	return false;
}

/* Walks back from the end of o to its last anchor. */
static bool
raw_back(raw_walk *w, const msgpack_object *o, int depth)
{
	if (depth > GW_JSON_DEPTH_MAX) {
		w->failed = true;
		return false;
	}
	if (raw_anchor(w, o)) {
		w->last = o->via.str.ptr;
		w->end = w->last + o->via.str.size;
		return !w->failed;
	}
	if (o->type == MSGPACK_OBJECT_ARRAY) {
		for (uint32_t i = o->via.array.size; i-- > 0 && !w->failed;)
			if (raw_back_child(w, &o->via.array.ptr[i], depth + 1))
				return true;
	} else if (o->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = o->via.map.size; i-- > 0 && !w->failed;) {
			if (raw_back_child(w, &o->via.map.ptr[i].val,
				    depth + 1) ||
				(!w->failed &&
					raw_back_child(w,
						&o->via.map.ptr[i].key,
						depth + 1)))
				return true;
		}
	}
	return false;
}

static bool
raw_key(gw__json_cache *cache, item_key *k, const msgpack_object *o,
	int depth)
{
	if (cache->raw_lo == NULL)
		return false;
	raw_walk *w = cache->walk;
	w->lo = cache->raw_lo;
	w->hi = cache->raw_hi;
	w->first = w->last = w->end = NULL;
	w->tails = 0;
	w->failed = false;
	unsigned char marker = RAW_KEY_MARKER;
	key_put(k, &marker, 1);
	if (!raw_head(w, k, o, depth) || !raw_back(w, o, depth) ||
		w->failed || w->last < w->first)
		return false;
	uint64_t r_length = (uint64_t)(w->end - w->first);
	key_put(k, &r_length, sizeof r_length);
	key_put(k, w->first, (size_t)r_length);
	for (uint32_t i = w->tails; i-- > 0 && !k->overflow;)
		key_object(k, w->tail[i], depth + 1);
	return !k->overflow;
}

/* 64-bit hash of the key under the cache's secret seed: spreads slots,
 * decides nothing (a hit compares the whole key). Four independent
 * lanes of 8 bytes each, so the multiplies overlap (a key is ~700 bytes
 * for a feed item; one chain of them was most of a cache hit's time). */
static uint64_t
hash_step(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0xff51afd7ed558ccdull;
	return h ^ (h >> 32);
}

static uint64_t
key_hash(const gw__json_cache *cache, const item_key *k)
{
	uint64_t h0 = cache->seed ^ (k->length * 0x9e3779b97f4a7c15ull);
	uint64_t h1 = h0 ^ 0x243f6a8885a308d3ull;
	uint64_t h2 = h0 ^ 0x13198a2e03707344ull;
	uint64_t h3 = h0 ^ 0xa4093822299f31d0ull;
	size_t i = 0;
	for (; i + 32 <= k->length; i += 32) {
		uint64_t w[4];
		memcpy(w, k->bytes + i, sizeof w);
		h0 = hash_step(h0, w[0]);
		h1 = hash_step(h1, w[1]);
		h2 = hash_step(h2, w[2]);
		h3 = hash_step(h3, w[3]);
	}
	for (; i + 8 <= k->length; i += 8) {
		uint64_t w;
		memcpy(&w, k->bytes + i, 8);
		h0 = hash_step(h0, w);
	}
	uint64_t tail = 0;
	memcpy(&tail, k->bytes + i, k->length - i);
	uint64_t h = hash_step(h0, tail);
	h = hash_step(h, h1);
	h = hash_step(h, h2);
	h = hash_step(h, h3) * 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 29);
}

static int unpack_range(gw__json_cache *cache, const unsigned char *p,
	const unsigned char *end, msgpack_object *out);

/* A map through the cache under key: o, or (o NULL) the packed map in
 * [p, end), unpacked only on a miss. */
static int
render_keyed(gw__json_cache *cache, item_key *key, const msgpack_object *o,
	const unsigned char *p, const unsigned char *end, int depth,
	gw__body *out)
{
	msgpack_object unpacked_map;
	if (key->overflow && o == NULL) {
		if (unpack_range(cache, p, end, &unpacked_map) != 0 ||
			unpacked_map.type != MSGPACK_OBJECT_MAP)
			return GW_EINVAL;
		o = &unpacked_map;
	}
	if (key->overflow)
		return render_map(cache, &o->via.map, depth, out);
	uint64_t hash = key_hash(cache, key);
	fragment *set = &cache->slots[(hash & ((FRAGMENT_SLOTS /
		FRAGMENT_WAYS) - 1)) * FRAGMENT_WAYS];
	uint32_t clock = ++cache->clock;
	fragment *f = &set[0];
	for (uint32_t i = 0; i < FRAGMENT_WAYS; i++) {
		fragment *w = &set[i];
		if (w->key != NULL && w->hash == hash &&
			w->key_length == key->length &&
			memcmp(w->key, key->bytes, key->length) == 0) {
			cache->hits++;
			w->used = clock;
			return gw__body_append(out, w->text, w->text_length);
		}
		/* The victim: an empty way, else the one used longest ago
		 * (clock - used is its age, also across the clock's wrap). */
		if (f->key != NULL && (w->key == NULL ||
			clock - w->used > clock - f->used))
			f = w;
	}
	cache->misses++;
	if (o == NULL) {
		if (unpack_range(cache, p, end, &unpacked_map) != 0 ||
			unpacked_map.type != MSGPACK_OBJECT_MAP)
			return GW_EINVAL;
		o = &unpacked_map;
	}
	/* render_map may reach render_item again (a list inside an item),
	 * which may replace entries of this set: render first, then take
	 * the victim again from the key kept. */
	unsigned char *k = malloc(key->length);
	if (k == NULL)
		return render_map(cache, &o->via.map, depth, out);
	memcpy(k, key->bytes, key->length);
	uint16_t k_length = (uint16_t)key->length;
	size_t start = out->length;
	int rc = render_map(cache, &o->via.map, depth, out);
	size_t text_length = out->length - start;
	char *text = rc == 0 && text_length <= FRAGMENT_TEXT_BYTES_MAX
		? malloc(text_length)
		: NULL;
	if (text == NULL) {
		free(k);
		return rc;
	}
	memcpy(text, out->bytes + start, text_length);
	f = &set[0];
	for (uint32_t i = 1; i < FRAGMENT_WAYS; i++)
		if (f->key != NULL && (set[i].key == NULL ||
			clock - set[i].used > clock - f->used))
			f = &set[i];
	if (f->key != NULL)
		cache->bytes -= (size_t)f->key_length + f->text_length;
	free(f->key);
	free(f->text);
	*f = (fragment){0};
	if (cache->bytes + k_length + text_length > FRAGMENT_BYTES_MAX) {
		free(k);
		free(text);
		return 0;
	}
	cache->bytes += (size_t)k_length + text_length;
	*f = (fragment){hash, k_length, (uint16_t)text_length, clock, k, text};
	return 0;
}

/* A map inside an array (an item of a list: a post, a comment, a user)
 * through the cache. The key is the map's exact content, so a hit is the
 * same map and renders the same text. */
static int
render_item(gw__json_cache *cache, const msgpack_object *o, int depth,
	gw__body *out)
{
	item_key *key = cache->key;
	key->length = 0;
	key->overflow = false;
	if (!raw_key(cache, key, o, depth)) {
		key->length = 0;
		key->overflow = false;
		key_object(key, o, depth);
	}
	return render_keyed(cache, key, o, NULL, NULL, depth, out);
}

static int
render(gw__json_cache *cache, const msgpack_object *o, int depth,
	gw__body *out)
{
	if (depth > GW_JSON_DEPTH_MAX)
		return GW_EINVAL;
	switch (o->type) {
	case MSGPACK_OBJECT_ARRAY: {
		int rc = gw__body_append(out, "[", 1);
		for (uint32_t i = 0; i < o->via.array.size && rc == 0; i++) {
			const msgpack_object *e = &o->via.array.ptr[i];
			if (i > 0)
				rc = gw__body_append(out, ",", 1);
			if (rc != 0)
				break;
			if (e->type == MSGPACK_OBJECT_MAP && cache != NULL &&
				depth + 1 <= GW_JSON_DEPTH_MAX)
				rc = render_item(cache, e, depth + 1, out);
			else
				rc = render(cache, e, depth + 1, out);
		}
		return rc != 0 ? rc : gw__body_append(out, "]", 1);
	}
	case MSGPACK_OBJECT_MAP:
		return render_map(cache, &o->via.map, depth, out);
	default: {
		int rc = render_simple(o, out);
		if (rc <= 0)
			return rc;
		json_t *v;
		rc = to_json(o, depth, &v);
		return rc < 0 ? rc : render_scalar(v, out);
	}
	}
}

/* ---- packed answers, rendered without unpacking their items ----------- */

/*
 * The answer's bytes are walked here only far enough to find each
 * object's extent; every object is still decoded by msgpack-c
 * (unpack_range) and every key and scalar rendered by jansson, except a
 * map inside an array (a list item) found in the cache under its packed
 * bytes, which is not decoded at all. The api client leaves an answer
 * packed for this (api_client_set_packed_bodies): a feed page was
 * packed by the domain and unpacked again on the loop only to find its
 * items in the cache.
 */

/* One packed object's header: a container's count, or the length of
 * what follows the header. */
typedef struct packed_head {
	char kind;        /* 'a'rray, 'm'ap, 's'tring, 'o'ther */
	uint32_t count;   /* a container's elements (a map's pairs) */
	size_t head;      /* header bytes */
	size_t body;      /* bytes after the header ('s' and 'o') */
} packed_head;

static uint64_t
big_endian(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Reads the header at p; false when it is not msgpack or does not fit
 * in [p, end). */
static bool
packed_head_of(const unsigned char *p, const unsigned char *end,
	packed_head *h)
{
	if (p >= end)
		return false;
	size_t avail = (size_t)(end - p);
	unsigned b = p[0];
	*h = (packed_head){.kind = 'o', .head = 1};
	size_t len_bytes = 0; /* a length or count of this many bytes */
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b <= 0x8f) {
		h->kind = 'm';
		h->count = b & 0x0f;
		return true;
	}
	if (b <= 0x9f) {
		h->kind = 'a';
		h->count = b & 0x0f;
		return true;
	}
	if (b <= 0xbf) {
		h->kind = 's';
		h->body = b & 0x1f;
		return h->body <= avail - 1;
	}
	switch (b) {
	case 0xc4: case 0xd9: len_bytes = 1; break;
	case 0xc5: case 0xda: len_bytes = 2; break;
	case 0xc6: case 0xdb: len_bytes = 4; break;
	case 0xc7: len_bytes = 1; h->head = 1; break; /* ext: + type */
	case 0xc8: len_bytes = 2; h->head = 1; break;
	case 0xc9: len_bytes = 4; h->head = 1; break;
	case 0xca: h->body = 4; break;
	case 0xcb: h->body = 8; break;
	case 0xcc: case 0xd0: h->body = 1; break;
	case 0xcd: case 0xd1: h->body = 2; break;
	case 0xce: case 0xd2: h->body = 4; break;
	case 0xcf: case 0xd3: h->body = 8; break;
	case 0xd4: h->body = 2; break;
	case 0xd5: h->body = 3; break;
	case 0xd6: h->body = 5; break;
	case 0xd7: h->body = 9; break;
	case 0xd8: h->body = 17; break;
	case 0xdc: case 0xde: len_bytes = 2; break;
	case 0xdd: case 0xdf: len_bytes = 4; break;
	default:
		return false; /* 0xc1 */
	}
	if (len_bytes > 0) {
		if (avail < 1 + len_bytes)
			return false;
		uint64_t n = big_endian(p + 1, len_bytes);
		h->head = 1 + len_bytes;
		if (b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf) {
			h->kind = b <= 0xdd ? 'a' : 'm';
			h->count = (uint32_t)n;
			return true;
		}
		h->body = (size_t)n;
		if (b >= 0xc7 && b <= 0xc9)
			h->head += 1; /* the ext type byte */
		else if (b >= 0xd9)
			h->kind = 's';
	}
	return h->head <= avail && h->body <= avail - h->head;
}

/* The end of the packed object at p, or NULL: a count of the objects
 * still to pass, no recursion (a list item's extent is its cache key,
 * found on every hit). Depth is not checked here: a hit was rendered at
 * the same depth before (the depth is in its key), and msgpack-c and
 * render check it on a miss. */
static const unsigned char *
packed_skip(const unsigned char *p, const unsigned char *end)
{
	uint64_t left = 1;
	while (left > 0) {
		if (p >= end)
			return NULL;
		unsigned b = *p;
		if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3 &&
						      b != 0xc1)) {
			p++; /* fixint, nil, bool */
		} else if (b >= 0xa0 && b <= 0xbf) {
			p += 1 + (b & 0x1f); /* fixstr */
		} else if (b <= 0x9f) {
			left += (b <= 0x8f ? 2u : 1u) * (b & 0x0f);
			p++;
		} else {
			packed_head h;
			if (!packed_head_of(p, end, &h))
				return NULL;
			p += h.head;
			if (h.kind == 'a' || h.kind == 'm')
				left += (h.kind == 'm' ? 2ull : 1ull) * h.count;
			else
				p += h.body;
		}
		left--;
		if (left > (uint64_t)(end - p))
			return NULL; /* more objects than bytes */
	}
	return p <= end ? p : NULL;
}

/* Decodes exactly the object in [p, end) with msgpack-c, into the
 * cache's zone (cleared when the render ends). */
static int
unpack_range(gw__json_cache *cache, const unsigned char *p,
	const unsigned char *end, msgpack_object *out)
{
	size_t offset = 0;
	if (cache->zone == NULL ||
		msgpack_unpack((const char *)p, (size_t)(end - p), &offset,
			cache->zone, out) != MSGPACK_UNPACK_SUCCESS ||
		offset != (size_t)(end - p))
		return GW_EINVAL;
	return 0;
}

/* A top-level "next_cursor" whose value in [v, v_end) is a string
 * without NUL that fits: copied to the cache's cursor. */
static void
note_cursor(gw__json_cache *cache, const msgpack_object *key,
	const unsigned char *v, const unsigned char *v_end)
{
	packed_head h;
	if (key->type != MSGPACK_OBJECT_STR || key->via.str.size != 11 ||
		memcmp(key->via.str.ptr, "next_cursor", 11) != 0 ||
		!packed_head_of(v, v_end, &h) || h.kind != 's' ||
		h.body >= cache->cursor_size ||
		memchr(v + h.head, '\0', h.body) != NULL)
		return;
	memcpy(cache->cursor, v + h.head, h.body);
	cache->cursor[h.body] = '\0';
}

/* Renders the packed object at p (within [p, end)) and sets *next to
 * its end. Each byte is looked at once, except a list item's, whose
 * extent is found first (its key). */
static int
render_packed(gw__json_cache *cache, const unsigned char *p,
	const unsigned char *end, int depth, gw__body *out,
	const unsigned char **next)
{
	if (depth > GW_JSON_DEPTH_MAX)
		return GW_EINVAL;
	packed_head h;
	if (!packed_head_of(p, end, &h))
		return GW_EINVAL;
	const unsigned char *q = p + h.head;
	if (h.kind == 'a') {
		int rc = gw__body_append(out, "[", 1);
		for (uint32_t i = 0; i < h.count && rc == 0; i++) {
			if (i > 0)
				rc = gw__body_append(out, ",", 1);
			if (rc != 0)
				break;
			if (q < end && ((*q >= 0x80 && *q <= 0x8f) ||
					       *q == 0xde || *q == 0xdf) &&
				depth + 1 <= GW_JSON_DEPTH_MAX) {
				/* A list item: keyed by its packed bytes
				 * and its depth. */
				const unsigned char *e =
					packed_skip(q, end);
				if (e == NULL)
					return GW_EINVAL;
				item_key *key = cache->key;
				key->length = 0;
				key->overflow = false;
				unsigned char mark[2] = {RAW_KEY_PACKED,
					(unsigned char)(depth + 1)};
				key_put(key, mark, sizeof mark);
				key_put(key, q, (size_t)(e - q));
				rc = render_keyed(cache, key, NULL, q, e,
					depth + 1, out);
				q = e;
			} else {
				rc = render_packed(cache, q, end, depth + 1,
					out, &q);
			}
		}
		*next = q;
		return rc != 0 ? rc : gw__body_append(out, "]", 1);
	}
	if (h.kind == 'm') {
		/* Keys decoded (render_key checks them against the ones
		 * before); values rendered packed. */
		if (h.count > (size_t)(end - q) / 2)
			return GW_EINVAL;
		msgpack_object_map map = {.size = h.count};
		if (h.count > 0) {
			map.ptr = msgpack_zone_malloc(cache->zone,
				h.count * sizeof *map.ptr);
			if (map.ptr == NULL)
				return GW_ENOMEM;
		}
		int rc = gw__body_append(out, "{", 1);
		for (uint32_t i = 0; i < h.count && rc == 0; i++) {
			const unsigned char *k_end =
				packed_skip(q, end);
			if (k_end == NULL)
				return GW_EINVAL;
			rc = unpack_range(cache, q, k_end, &map.ptr[i].key);
			if (rc == 0 && i > 0)
				rc = gw__body_append(out, ",", 1);
			if (rc == 0)
				rc = render_key(&map, i, out);
			if (rc == 0)
				rc = gw__body_append(out, ":", 1);
			const unsigned char *v = k_end;
			if (rc == 0)
				rc = render_packed(cache, k_end, end, depth + 1,
					out, &q);
			if (rc == 0 && depth == 0 && cache->cursor_size > 0)
				note_cursor(cache, &map.ptr[i].key, v, q);
		}
		*next = q;
		return rc != 0 ? rc : gw__body_append(out, "}", 1);
	}
	const unsigned char *e = q + h.body;
	msgpack_object o;
	int rc = unpack_range(cache, p, e, &o);
	*next = e;
	return rc != 0 ? rc : render(cache, &o, depth, out);
}

int
gw__msgpack_render_packed(gw__json_cache *cache, const void *bytes,
	size_t length, gw__body *out, char *cursor, size_t cursor_size)
{
	gw__assert(cache != NULL);
	gw__assert(out != NULL);
	const unsigned char *p = bytes;
	const unsigned char *end = p + length;
	size_t start = out->length;
	if (cursor_size > 0)
		cursor[0] = '\0';
	cache->cursor = cursor;
	cache->cursor_size = cursor_size;
	int rc = GW_EINVAL;
	if (bytes != NULL) {
		/* Strings decoded here point into bytes: nested lists
		 * key their items by them (raw_key). */
		cache->raw_lo = (const char *)p;
		cache->raw_hi = (const char *)end;
		const unsigned char *next = NULL;
		rc = render_packed(cache, p, end, 0, out, &next);
		if (rc == 0 && next != end)
			rc = GW_EINVAL; /* not one object */
		cache->raw_lo = NULL;
		cache->raw_hi = NULL;
	}
	cache->cursor = NULL;
	cache->cursor_size = 0;
	if (cache->zone != NULL)
		msgpack_zone_clear(cache->zone);
	if (rc != 0) {
		out->length = start;
		if (out->bytes != NULL)
			out->bytes[start] = '\0';
		if (cursor_size > 0)
			cursor[0] = '\0';
	}
	return rc;
}

int
gw__msgpack_render_raw(gw__json_cache *cache, const msgpack_object *o,
	const void *raw, size_t raw_length, gw__body *out)
{
	if (cache == NULL || raw == NULL)
		return gw__msgpack_render(cache, o, out);
	cache->raw_lo = raw;
	cache->raw_hi = (const char *)raw + raw_length;
	int rc = gw__msgpack_render(cache, o, out);
	cache->raw_lo = NULL;
	cache->raw_hi = NULL;
	return rc;
}

int
gw__msgpack_render(gw__json_cache *cache, const msgpack_object *o,
	gw__body *out)
{
	gw__assert(o != NULL);
	gw__assert(out != NULL);
	size_t start = out->length;
	int rc = render(cache, o, 0, out);
	if (rc != 0) {
		out->length = start;
		if (out->bytes != NULL)
			out->bytes[start] = '\0';
	}
	return rc;
}

/* ---- request JSON -------------------------------------------------------- */

int
gw__json_parse_object(const void *bytes, size_t length, json_t **out,
	char *detail, size_t detail_size)
{
	*out = NULL;
	json_error_t error;
	json_t *v = json_loadb((const char *)bytes, length,
		JSON_REJECT_DUPLICATES, &error);
	if (v == NULL) {
		snprintf(detail, detail_size,
			"malformed JSON at line %d column %d: %s", error.line,
			error.column, error.text);
		return GW_EINVAL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		snprintf(detail, detail_size, "the body must be a JSON object");
		return GW_EINVAL;
	}
	*out = v;
	return 0;
}

int
gw__json_only_keys(const json_t *obj, const char *const *allowed,
	size_t count, char *detail, size_t detail_size)
{
	const char *key;
	json_t *value;
	json_object_foreach((json_t *)obj, key, value)
	{
		(void)value;
		bool known = false;
		for (size_t i = 0; i < count && !known; i++)
			known = strcmp(key, allowed[i]) == 0;
		if (!known) {
			snprintf(detail, detail_size,
				"unknown field \"%.64s\"", key);
			return GW_EINVAL;
		}
	}
	return 0;
}

int
gw__json_string(const json_t *obj, const char *key, bool required,
	const char **out, char *detail, size_t detail_size)
{
	*out = NULL;
	json_t *v = json_object_get(obj, key);
	if (v == NULL || (json_is_null(v) && !required)) {
		if (!required)
			return 0;
		snprintf(detail, detail_size, "\"%s\" is required", key);
		return GW_EINVAL;
	}
	if (!json_is_string(v)) {
		snprintf(detail, detail_size, "\"%s\" must be a string", key);
		return GW_EINVAL;
	}
	/* Embedded NULs would truncate the C string the domain sees. */
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(detail, detail_size, "\"%s\" contains NUL", key);
		return GW_EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

int
gw__json_id(const json_t *obj, const char *key, bool required,
	uint64_t *out, char *detail, size_t detail_size)
{
	*out = 0;
	json_t *v = json_object_get(obj, key);
	if (v == NULL || (json_is_null(v) && !required)) {
		if (!required)
			return 0;
		snprintf(detail, detail_size, "\"%s\" is required", key);
		return GW_EINVAL;
	}
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v) &&
		gw__parse_u64(json_string_value(v), out) == 0 && *out != 0)
		return 0;
	snprintf(detail, detail_size,
		"\"%s\" must be an id (a decimal string)", key);
	return GW_EINVAL;
}

int
gw__json_action(const json_t *obj, const char *key, const char *yes,
	const char *no, bool *out, char *detail, size_t detail_size)
{
	const char *s;
	int rc = gw__json_string(obj, key, true, &s, detail, detail_size);
	if (rc < 0)
		return rc;
	if (strcmp(s, yes) == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(s, no) == 0) {
		*out = false;
		return 0;
	}
	snprintf(detail, detail_size, "\"%s\" must be \"%s\" or \"%s\"", key,
		yes, no);
	return GW_EINVAL;
}

int
gw__json_uint(const json_t *obj, const char *key, bool required,
	uint64_t max, uint64_t *out, char *detail, size_t detail_size)
{
	*out = 0;
	json_t *v = json_object_get(obj, key);
	if (v == NULL || (json_is_null(v) && !required)) {
		if (!required)
			return 0;
		snprintf(detail, detail_size, "\"%s\" is required", key);
		return GW_EINVAL;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		(uint64_t)json_integer_value(v) > max) {
		snprintf(detail, detail_size,
			"\"%s\" must be an integer from 0 to %" PRIu64, key,
			max);
		return GW_EINVAL;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* ---- problem+json -------------------------------------------------------- */

const char *
gw__status_title(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

const char *
gw__problem_type(int status)
{
	switch (status) {
	case 400: return "/problems/invalid-request";
	case 401: return "/problems/unauthorized";
	case 403: return "/problems/forbidden";
	case 404: return "/problems/not-found";
	case 405: return "/problems/method-not-allowed";
	case 409: return "/problems/conflict";
	case 410: return "/problems/gone";
	case 411: return "/problems/length-required";
	case 413: return "/problems/too-large";
	case 415: return "/problems/unsupported-media-type";
	case 422: return "/problems/idempotency-key-reused";
	case 429: return "/problems/rate-limited";
	case 503: return "/problems/unavailable";
	default: return "/problems/internal";
	}
}

char *
gw__problem_render(int status, const char *detail, size_t *length)
{
	json_t *p = json_pack("{s:s, s:s, s:i}", "type",
		gw__problem_type(status), "title", gw__status_title(status),
		"status", status);
	if (p == NULL)
		return NULL;
	if (detail != NULL && detail[0] != '\0') {
		/* A detail from a parser may hold invalid UTF-8: drop it
		 * rather than fail the whole error. */
		json_t *d = json_string(detail);
		if (d != NULL)
			json_object_set_new(p, "detail", d);
	}
	char *s = gw__json_render(p, length);
	json_decref(p);
	return s;
}

int
gw__status_for_api(int code)
{
	switch (code) {
	case API_OK: return 200;
	case API_EINVALID: return 400;
	case API_EUNAUTHORIZED: return 401;
	case API_EFORBIDDEN: return 403;
	case API_ENOTFOUND: return 404;
	case API_ECONFLICT: return 409;
	case API_ETOOLARGE: return 413;
	case API_EMEDIATYPE: return 415;
	case API_EIDEMPOTENCY: return 422;
	case API_ERATELIMITED: return 429;
	case API_EUNAVAILABLE: return 503;
	case API_EGONE: return 410;
	default: return 500;
	}
}
