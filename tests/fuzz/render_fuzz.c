/*
 * render_fuzz.c — rendering a packed answer (gw__msgpack_render_packed)
 * under libFuzzer.
 *
 * Goal: the packed renderer never crashes or leaks, and for anything
 * msgpack-c unpacks whole it says
 * exactly what the tree renderer says (the same code, or GW_EINVAL for
 * both, and the same text), with its item cache cold and warm.
 * Method: the input is the packed answer; one cache lives across inputs
 * (so items from earlier inputs are hits), and each input is rendered
 * twice through it.
 */
#include "gateway/internal.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static gw__json_cache *cache;

/* msgpack-c reserves room for a container's announced count before it
 * reads the elements: an input announcing more elements than it has
 * bytes is not given to it whole (the packed renderer itself only hands
 * msgpack-c ranges whose elements it found). Any byte that could be
 * such a header counts, even inside a string. */
static bool
announces_too_much(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		size_t n = data[i] == 0xdc || data[i] == 0xde ? 2
			: data[i] == 0xdd || data[i] == 0xdf  ? 4
							      : 0;
		if (n == 0 || i + n >= size)
			continue;
		uint64_t count = 0;
		for (size_t j = 1; j <= n; j++)
			count = count << 8 | data[i + j];
		if (count > size)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (cache == NULL && gw__json_cache_create(&cache) != 0)
		abort();
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t offset = 0;
	bool whole = !announces_too_much(data, size) &&
		msgpack_unpack_next(&u, (const char *)data, size, &offset) ==
			MSGPACK_UNPACK_SUCCESS &&
		offset == size;
	gw__body tree;
	gw__body_init(&tree, SIZE_MAX / 2);
	int tree_rc = whole ? gw__msgpack_render(NULL, &u.data, &tree) : 0;
	for (int pass = 0; pass < 2; pass++) {
		gw__body b;
		gw__body_init(&b, SIZE_MAX / 2);
		char cursor[64];
		int rc = gw__msgpack_render_packed(cache, data, size, &b,
			cursor, sizeof cursor);
		if (rc == 0 && (b.length == 0 || strlen(cursor) >= sizeof cursor))
			abort();
		if (whole) {
			if (rc != tree_rc && !(rc < 0 && tree_rc < 0 &&
						 (rc == GW_ENOMEM ||
							 tree_rc == GW_ENOMEM)))
				abort();
			if (rc == 0 && (b.length != tree.length ||
					       memcmp(b.bytes, tree.bytes,
						       b.length) != 0))
				abort();
		}
		gw__body_free(&b);
	}
	gw__body_free(&tree);
	msgpack_unpacked_destroy(&u);
	return 0;
}
