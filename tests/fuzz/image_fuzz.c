/*
 * image_fuzz.c — libFuzzer target for what untrusted bytes reach first.
 *
 * Goal: no input crashes, hangs or leaks in the upload checks (content
 * sniffing, libvips' loader choice, the header read and the pixel limit)
 * or in the media actor's stored-state decoder.
 *
 * Method: the first byte picks the path. Header-only: pixels are never
 * decoded here (media_probe reads headers; a full decode per input would
 * make the fuzzer too slow to explore). States that decode must encode
 * back to bytes that decode to the same state.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "actors/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_state(const uint8_t *data, size_t size)
{
	media_state st;
	if (media_state_decode(&st, data, size) != 0)
		return;
	rt_buffer out = {0};
	if (media_state_encode(&st, &out) != 0)
		abort();
	media_state again;
	if (media_state_decode(&again, out.bytes, out.length) != 0)
		abort();
	if (again.media_id != st.media_id || again.status != st.status ||
		strcmp(again.hash, st.hash) != 0 ||
		again.watchers_count != st.watchers_count)
		abort();
	rt_buffer_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const uint8_t *rest = data + 1;
	size_t n = size - 1;
	switch (data[0] % 3) {
	case 0: {
		media_format f = media_sniff(rest, n);
		if (f != MEDIA_FORMAT_NONE && n < 3)
			abort();
		break;
	}
	case 1: {
		media_probe_result probe;
		const char *detail = NULL;
		int rc = media_probe(rest, n, &probe, &detail);
		if (rc == 0 && ((uint64_t)probe.width * probe.height >
			API_UPLOAD_PIXELS_MAX || probe.width == 0))
			abort();
		if (rc != 0 && detail == NULL)
			abort();
		break;
	}
	default:
		fuzz_state(rest, n);
		break;
	}
	return 0;
}
