/*
 * envelope_fuzz.c — libFuzzer target for the cluster's wire decoders.
 *
 * Feeds arbitrary bytes to cl_envelope_decode, cl_frame_decode,
 * cl_map_decode and the map consensus's message decoders (VOTE_REQ,
 * VOTE, PROPOSE, ACCEPTED: the bodies of those system envelopes); a
 * decoded envelope or message is re-encoded and must decode to the same
 * fields. Any crash, sanitizer report or mismatch is a finding.
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

/* The consensus messages: what decodes encodes again to the same. */
static void
check_consensus(const uint8_t *data, size_t size, cl_map *map, cl_map *back)
{
	rt_buffer b = {0};
	cl__vote_request q, q2;
	if (cl__vote_request_decode(data, size, &q) == 0) {
		if (cl__vote_request_encode(&q, &b) != 0 ||
			cl__vote_request_decode(b.bytes, b.length, &q2) != 0 ||
			memcmp(&q, &q2, sizeof q) != 0)
			abort();
		b.length = 0;
	}
	cl__vote_reply v, v2;
	if (cl__vote_reply_decode(data, size, &v) == 0) {
		if (cl__vote_reply_encode(&v, &b) != 0 ||
			cl__vote_reply_decode(b.bytes, b.length, &v2) != 0 ||
			memcmp(&v, &v2, sizeof v) != 0)
			abort();
		b.length = 0;
	}
	cl__accepted a, a2;
	if (cl__accepted_decode(data, size, &a) == 0) {
		if (cl__accepted_encode(&a, &b) != 0 ||
			cl__accepted_decode(b.bytes, b.length, &a2) != 0 ||
			memcmp(&a, &a2, sizeof a) != 0)
			abort();
		b.length = 0;
	}
	uint64_t term, term2;
	if (cl__propose_decode(data, size, &term, map) == 0) {
		if (cl__propose_encode(term, map, &b) != 0 ||
			cl__propose_decode(b.bytes, b.length, &term2, back) != 0 ||
			term != term2 || memcmp(map, back, sizeof *map) != 0)
			abort();
	}
	rt_buffer_free(&b);
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
	static cl_map back;
	cl_map_decode(data, size, &map);
	check_consensus(data, size, &map, &back);
	return 0;
}
