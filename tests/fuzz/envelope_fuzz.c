/*
 * envelope_fuzz.c — libFuzzer target for the cluster's wire decoders.
 *
 * Feeds arbitrary bytes to cl_envelope_decode, cl_frame_decode and
 * cl_map_decode; a decoded envelope is re-encoded and must decode to the
 * same fields. Any crash, sanitizer report or mismatch is a finding.
 */
#include "cluster/internal.h"

#include <stdint.h>
#include <stdlib.h>

static int
check_envelope(void *arg, const cl_envelope *e)
{
	(void)arg;
	rt_buffer b = {0};
	if (cl_envelope_encode(e, &b) != 0)
		abort();
	cl_envelope d;
	if (cl_envelope_decode(b.bytes, b.length, &d, NULL) != 0)
		abort();
	if (d.epoch != e->epoch || d.type != e->type || d.size != e->size ||
		d.flags != e->flags || d.correlation != e->correlation ||
		!rt_addr_equal(d.from, e->from) || !rt_addr_equal(d.to, e->to) ||
		(e->size > 0 && memcmp(d.payload, e->payload, e->size) != 0))
		abort();
	rt_buffer_free(&b);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cl_envelope e;
	size_t used;
	if (cl_envelope_decode(data, size, &e, &used) == 0) {
		if (used > size)
			abort();
		check_envelope(NULL, &e);
	}
	cl_frame_header h;
	cl_frame_decode(data, size, &h, check_envelope, NULL);
	static cl_map map;
	cl_map_decode(data, size, &map);
	return 0;
}
