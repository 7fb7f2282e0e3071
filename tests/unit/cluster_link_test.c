/*
 * cluster_link_test.c — the receiving side of a link: frames that arrive
 * after a gap are held and taken in order once the gap fills.
 *
 * Goal: a lost frame costs one resend, not one resend round per frame
 * behind it (before, a frame after a gap was dropped, so at a few
 * percent loss a busy link fell minutes behind: flocksim saw a like
 * arrive 247 s after it was sent). Held frames are bounded, duplicates
 * are held once, a copy taken directly releases the held one, and a new
 * peer incarnation empties the buffer.
 *
 * Method: one cl__link over a transport that sends nothing; the test
 * plays the receiver's calls (accept, hold, take) as node.c makes them
 * for frames arriving in a chosen order, with distinct bytes per
 * sequence.
 */
#include "cluster/internal.h"
#include "tests/test.h"

static int
null_send(void *self, uint16_t peer, const void *bytes, size_t length)
{
	(void)self;
	(void)peer;
	(void)bytes;
	(void)length;
	return CL_OK;
}

static const cl_transport_ops null_ops = {.send = null_send};

/* A frame's bytes for sequence s: s repeated, 100 bytes. */
static void
frame_of(uint64_t s, unsigned char *out)
{
	memset(out, (int)(s & 0xff), 100);
}

/* What the receiver does for a sequenced frame of the current session:
 * take it in order, or hold it; returns whether it was taken. */
static bool
arrive(cl__link *l, uint64_t s)
{
	unsigned char bytes[100];
	frame_of(s, bytes);
	if (cl__link_accept_locked(l, s))
		return true;
	(void)cl__link_hold_locked(l, s, bytes, sizeof bytes);
	return false;
}

/* Takes the held frames now in order; returns how many, checking each
 * carries the bytes of its sequence. */
static uint32_t
drain(cl__link *l)
{
	uint32_t n = 0;
	rt_buffer b = {0};
	while (cl__link_take_held_locked(l, &b)) {
		uint64_t s = l->received + 1;
		unsigned char want[100];
		frame_of(s, want);
		CHECK_EQ(b.length, sizeof want);
		CHECK(memcmp(b.bytes, want, sizeof want) == 0);
		CHECK(cl__link_accept_locked(l, s));
		rt_buffer_free(&b);
		n++;
	}
	return n;
}

static void
link_open(cl__link *l)
{
	CHECK_EQ(cl__link_init(l, &null_ops, NULL, 1, 7), 0);
	cl__link_observe_locked(l, 99);
}

TEST(cluster_link_frames_after_a_gap_are_taken_once_it_fills)
{
	cl__link l;
	link_open(&l);
	CHECK(arrive(&l, 1));
	/* 2 is lost; 3..10 arrive and are held */
	for (uint64_t s = 3; s <= 10; s++)
		CHECK(!arrive(&l, s));
	CHECK_EQ(l.received, 1);
	CHECK_EQ(drain(&l), 0);
	CHECK_EQ(l.reorder_bytes, 8 * 100);
	/* the resend of 2 arrives: 3..10 follow without a resend */
	CHECK(arrive(&l, 2));
	CHECK_EQ(drain(&l), 8);
	CHECK_EQ(l.received, 10);
	CHECK_EQ(l.reorder_bytes, 0);
	/* the resend of 3..10 that follows finds them taken */
	for (uint64_t s = 3; s <= 10; s++)
		CHECK(!arrive(&l, s));
	CHECK_EQ(l.reorder_bytes, 0);
	cl__link_destroy(&l);
}

TEST(cluster_link_held_frames_are_bounded_and_held_once)
{
	cl__link l;
	link_open(&l);
	CHECK(arrive(&l, 1));
	unsigned char bytes[100];
	frame_of(5, bytes);
	CHECK(cl__link_hold_locked(&l, 5, bytes, sizeof bytes));
	CHECK(cl__link_hold_locked(&l, 5, bytes, sizeof bytes));
	CHECK_EQ(l.reorder_bytes, 100);
	/* the next in order is taken, never held; nor is one taken already */
	CHECK(!cl__link_hold_locked(&l, 2, bytes, sizeof bytes));
	CHECK(!cl__link_hold_locked(&l, 1, bytes, sizeof bytes));
	/* beyond the buffer's reach */
	CHECK(!cl__link_hold_locked(&l, 1 + CL_LINK_REORDER_FRAMES + 1, bytes,
		sizeof bytes));
	CHECK(cl__link_hold_locked(&l, 1 + CL_LINK_REORDER_FRAMES, bytes,
		sizeof bytes));
	/* past the byte bound */
	static unsigned char big[CL_LINK_REORDER_BYTES_MAX];
	CHECK(!cl__link_hold_locked(&l, 7, big, sizeof big));
	CHECK_EQ(l.reorder_bytes, 200);
	cl__link_destroy(&l);
}

TEST(cluster_link_resent_copy_releases_the_held_one)
{
	cl__link l;
	link_open(&l);
	CHECK(arrive(&l, 1));
	CHECK(!arrive(&l, 3));
	CHECK(arrive(&l, 2));
	/* before the drain runs, a resend of 3 is taken directly */
	CHECK(arrive(&l, 3));
	CHECK_EQ(l.reorder_bytes, 0);
	CHECK_EQ(drain(&l), 0);
	/* slots are reused as the window moves on */
	for (uint64_t s = 4; s < 4 + 3 * CL_LINK_REORDER_FRAMES; s += 2) {
		CHECK(!arrive(&l, s + 1));
		CHECK(arrive(&l, s));
		CHECK_EQ(drain(&l), 1);
	}
	CHECK_EQ(l.reorder_bytes, 0);
	cl__link_destroy(&l);
}

TEST(cluster_link_new_peer_life_empties_the_held_frames)
{
	cl__link l;
	link_open(&l);
	CHECK(arrive(&l, 1));
	CHECK(!arrive(&l, 3));
	CHECK_EQ(l.reorder_bytes, 100);
	/* the peer restarted: its new session starts at 1, and 3 of the old
	 * one must never be taken */
	cl__link_observe_locked(&l, 100);
	CHECK_EQ(l.reorder_bytes, 0);
	CHECK_EQ(l.received, 0);
	CHECK(arrive(&l, 1));
	CHECK(arrive(&l, 2));
	CHECK_EQ(drain(&l), 0);
	CHECK_EQ(l.received, 2);
	cl__link_destroy(&l);
}
