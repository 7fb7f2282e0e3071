/*
 * unpack_fuzz.c — actors__unpack, the api client's decoder of answer
 * bodies, never crashes and agrees with msgpack-c: bytes it accepts,
 * msgpack_unpack accepts as the same object; bytes it refuses,
 * msgpack_unpack refuses too. msgpack-c is only fed bytes whose
 * containers announce no more elements than bytes remain (it reserves
 * what a header announces), which engage_msgpack_check makes sure of.
 */
#include <stdint.h>
#include <stdlib.h>

#include "actors/engage.h"
#include "actors/internal.h"
#include "tests/msgpack_same.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	msgpack_zone *mine = msgpack_zone_new(4096);
	msgpack_zone *theirs = msgpack_zone_new(4096);
	if (mine == NULL || theirs == NULL)
		abort();
	msgpack_object a, b;
	int rc = actors__unpack(data, size, mine, &a);
	if (rc != API_OK && rc != API_EINVALID)
		abort();
	if (engage_msgpack_check(data, size)) {
		size_t offset = 0;
		bool ok = msgpack_unpack((const char *)data, size, &offset,
				  theirs, &b) == MSGPACK_UNPACK_SUCCESS;
		if (ok != (rc == API_OK))
			abort();
		if (ok && !msgpack_same(&a, &b))
			abort();
	} else if (rc == API_OK) {
		abort(); /* not exactly one bounded object, yet accepted */
	}
	msgpack_zone_free(mine);
	msgpack_zone_free(theirs);
	return 0;
}
