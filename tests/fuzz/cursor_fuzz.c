/*
 * cursor_fuzz.c — the paging cursor decoder never crashes, accepts only
 * what the encoder makes, and round-trips what it accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "actors/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9 || size > 256)
		return 0;
	uint8_t kind = data[0];
	uint64_t owner;
	memcpy(&owner, data + 1, sizeof owner);
	char text[257];
	memcpy(text, data + 9, size - 9);
	text[size - 9] = '\0';
	actors__cursor c;
	if (actors__cursor_decode(text, kind, owner, &c) != API_OK)
		return 0;
	char again[ACTORS_CURSOR_TEXT_BYTES];
	actors__cursor_encode(&c, again, sizeof again);
	if (strcmp(again, text) != 0)
		abort(); /* two texts decode alike: not canonical */
	return 0;
}
