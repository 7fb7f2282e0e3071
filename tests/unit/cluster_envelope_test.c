/*
 * cluster_envelope_test.c — the envelope and frame codec.
 *
 * Method: round-trip envelopes with edge values; check frames deliver
 * every envelope in order; truncate and flip bytes and check the decoder
 * refuses without delivering anything.
 */
#include "cluster/internal.h"
#include "tests/test.h"

static cl_envelope
sample(uint32_t i, const unsigned char *payload, uint32_t size)
{
	cl_envelope e = {
		.epoch = 1000 + i,
		.from = rt_addr_make(3, UINT64_MAX - i),
		.to = rt_addr_make(RT_KIND_INBOX, i),
		.correlation = i * 7,
		.type = 0xfffe0000u + i,
		.flags = RT_MESSAGE_F_REPLY | CL_ENVELOPE_F_FORWARDED,
		.payload = payload,
		.size = size,
	};
	return e;
}

TEST(cluster_envelope_roundtrip)
{
	unsigned char payload[300];
	for (uint32_t i = 0; i < sizeof payload; i++)
		payload[i] = (unsigned char)i;
	for (uint32_t size = 0; size <= sizeof payload; size += 50) {
		cl_envelope e = sample(size, payload, size);
		rt_buffer b = {0};
		CHECK_EQ(cl_envelope_encode(&e, &b), 0);
		cl_envelope d;
		size_t used = 0;
		CHECK_EQ(cl_envelope_decode(b.bytes, b.length, &d, &used), 0);
		CHECK_EQ(used, b.length);
		CHECK_EQ_U64(d.epoch, e.epoch);
		CHECK(rt_addr_equal(d.from, e.from));
		CHECK(rt_addr_equal(d.to, e.to));
		CHECK_EQ_U64(d.correlation, e.correlation);
		CHECK_EQ(d.type, e.type);
		CHECK_EQ(d.flags, e.flags);
		CHECK_EQ(d.size, size);
		CHECK(size == 0 || memcmp(d.payload, payload, size) == 0);
		for (size_t cut = 0; cut < b.length; cut++)
			CHECK(cl_envelope_decode(b.bytes, cut, &d, &used) != 0);
		rt_buffer_free(&b);
	}
}

TEST(cluster_envelope_rejects_bad_fields)
{
	cl_envelope e = sample(1, (const unsigned char *)"x", 1);
	rt_buffer b = {0};
	CHECK_EQ(cl_envelope_encode(&e, &b), 0);
	cl_envelope d;
	b.bytes[1] = CL_WIRE_VERSION + 1; /* a version from the future */
	CHECK_EQ(cl_envelope_decode(b.bytes, b.length, &d, NULL), CL_EVERSION);
	b.length = 0;
	/* a kind past RT_KINDS_MAX */
	cl__packer p;
	cl__packer_init(&p, &b);
	msgpack_pack_array(&p.pk, 10);
	msgpack_pack_uint32(&p.pk, CL_WIRE_VERSION);
	for (int i = 0; i < 8; i++)
		msgpack_pack_uint32(&p.pk, i == 1 ? 64 : 0);
	msgpack_pack_bin(&p.pk, 0);
	CHECK_EQ(cl_envelope_decode(b.bytes, b.length, &d, NULL), CL_ECORRUPT);
	rt_buffer_free(&b);
}

typedef struct collected {
	uint32_t count;
	uint64_t epochs[64];
} collected;

static int
collect(void *arg, const cl_envelope *e)
{
	collected *c = arg;
	c->epochs[c->count++] = e->epoch;
	return 0;
}

TEST(cluster_envelope_frames_keep_order_and_fail_whole)
{
	rt_buffer b = {0};
	cl_frame_writer w;
	cl_frame_header h = {.source = 9, .incarnation = 5, .sequence = 77,
		.ack = 76, .peer_incarnation = 3};
	CHECK_EQ(cl_frame_begin(&w, &b, &h), 0);
	for (uint32_t i = 0; i < 40; i++) {
		cl_envelope e = sample(i, (const unsigned char *)"abc", 3);
		CHECK_EQ(cl_frame_add(&w, &e), 0);
	}
	cl_frame_end(&w);
	collected c = {0};
	cl_frame_header d;
	CHECK_EQ(cl_frame_decode(b.bytes, b.length, &d, collect, &c), 0);
	CHECK_EQ(d.source, 9);
	CHECK_EQ_U64(d.sequence, 77);
	CHECK_EQ_U64(d.ack, 76);
	CHECK_EQ_U64(d.peer_incarnation, 3);
	CHECK_EQ(c.count, 40);
	for (uint32_t i = 0; i < 40; i++)
		CHECK_EQ_U64(c.epochs[i], 1000 + i);
	for (size_t cut = 0; cut < b.length; cut += 7) {
		collected none = {0};
		CHECK(cl_frame_decode(b.bytes, cut, &d, collect, &none) != 0);
		CHECK_EQ(none.count, 0);
	}
	rt_buffer_free(&b);
}
