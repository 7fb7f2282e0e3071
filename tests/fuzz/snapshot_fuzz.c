/*
 * snapshot_fuzz.c — libFuzzer target for the snapshot value decoder and
 * the outbox and dedupe decoders that live inside actors' snapshots.
 *
 * Goal: no input makes a decoder read out of bounds, leak, or accept
 * bytes that do not re-encode to themselves; a value decoded under one
 * key fails under another.
 * Method: the input is decoded as a snapshot value (under a key taken
 * from its first bytes), as an outbox and as a dedupe table; whatever
 * decodes is encoded again and compared. Any crash found becomes a unit
 * test in tests/unit/persistence_store_test.c or _outbox_test.c.
 */
#include "persistence/persistence.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rt_addr key = rt_addr_make(size > 0 ? data[0] : 1, size);
	uint64_t lsn;
	const void *state;
	size_t state_bytes;
	if (ps_snapshot_value_decode(key, data, size, &lsn, &state,
		    &state_bytes) == 0) {
		if (state_bytes + 24 != size)
			abort();
		uint8_t *again = malloc(size);
		if (again == NULL)
			return 0;
		ps_snapshot_value_encode(key, lsn, state, state_bytes, again);
		if (memcmp(again, data, size) != 0)
			abort();
		free(again);
	}

	ps_outbox outbox = {0};
	size_t used = 0;
	if (ps_outbox_decode(&outbox, data, size, &used) == 0) {
		if (used > size || ps_outbox_encoded_bytes(&outbox) != used)
			abort();
		uint8_t *again = malloc(used ? used : 1);
		if (again != NULL) {
			ps_outbox_encode(&outbox, again);
			if (memcmp(again, data, used) != 0)
				abort();
			free(again);
		}
	}
	ps_outbox_free(&outbox);

	ps_dedupe dedupe = {0};
	if (ps_dedupe_decode(&dedupe, data, size, &used) == 0) {
		if (used > size || ps_dedupe_encoded_bytes(&dedupe) != used)
			abort();
		uint8_t *again = malloc(used);
		if (again != NULL) {
			ps_dedupe_encode(&dedupe, again);
			if (memcmp(again, data, used) != 0)
				abort();
			free(again);
		}
	}
	ps_dedupe_free(&dedupe);
	return 0;
}
