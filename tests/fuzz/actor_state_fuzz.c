/*
 * actor_state_fuzz.c — libFuzzer target for the state decoders of the
 * social domain's actor kinds (user, post), which read snapshots from
 * the store and states shipped by another node in a handoff.
 *
 * Input: byte 0 picks the kind (low bit: 0 user, 1 post); the rest is
 * the encoded state.
 *
 * Properties checked (abort on violation): a decoder either refuses
 * (freeing what it made) or yields a state that encodes, and whose
 * encoding decodes again; nothing leaks, overflows or trips an assert
 * (ASan/UBSan and ACTORS_ASSERT).
 */
#include "actors/internal.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static rt_runtime *fuzz_rt;
static api *fuzz_api;

static void
fuzz_setup(void)
{
	if (fuzz_api != NULL)
		return;
	rt_config rc;
	rt_config_default(&rc);
	rc.deterministic = true;
	rc.workers = 1;
	rc.log_level = RT_LOG_ERROR;
	if (rt_create(&rc, &fuzz_rt) != 0)
		abort();
	api_config cfg;
	api_config_default(&cfg);
	cfg.password_threads = 0;
	cfg.media_threads = 0;
	if (api_create(fuzz_rt, NULL, &cfg, &fuzz_api) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_setup();
	const rt_actor_ops *ops =
		(data[0] & 1) ? &fuzz_api->post_ops : &fuzz_api->user_ops;
	void *state = calloc(1, ops->state_size);
	void *again = calloc(1, ops->state_size);
	if (state == NULL || again == NULL)
		abort();
	if (ops->decode_state(state, data + 1, size - 1) == 0) {
		rt_buffer b = {0};
		if (ops->encode_state(state, &b) != 0)
			abort();
		if (ops->decode_state(again, b.bytes, b.length) != 0)
			abort();
		ops->free_state(again);
		rt_buffer_free(&b);
		ops->free_state(state);
	}
	free(again);
	free(state);
	return 0;
}
