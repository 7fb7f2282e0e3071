/*
 * runtime_sched_test.c — mailbox bounds and scheduling fairness.
 *
 * Method: the mailbox bound is checked in a deterministic runtime before
 * any turn runs, so the count is exact: the kind's limit is accepted and
 * one more is refused with RT_EMAILBOX_FULL (limits 1 and 8), from an
 * external thread and from an actor. Fairness in deterministic mode:
 * a flooded actor and a quiet one are runnable together; every step (one
 * turn) handles at most RT_TURN_MESSAGES_MAX messages and the quiet one
 * runs after a bounded number of the flooded one's turns. In real mode
 * (one worker, so turn boundaries are visible): a probe actor that
 * re-sends itself a message runs between the flooded actor's turns, so
 * the longest run of flooded messages without a probe in between is at
 * most RT_TURN_MESSAGES_MAX. A ping-pong pair, which runs from the
 * worker's LIFO, lets a queued actor that yields every turn run at
 * least once every RT_LIFO_STREAK_MAX of its turns.
 */
#include "tests/unit/runtime_testkit.h"

#include <stdatomic.h>

enum { KIND_SMALL = 1, KIND_ONE = 2, KIND_FLOOD = 3, KIND_QUIET = 4,
	KIND_PROBE = 5, KIND_BLASTER = 6, KIND_PING = 7, KIND_YIELDER = 8 };

static uint64_t small_handled;

static void
small_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	(void)m;
	small_handled++;
}

static const rt_actor_ops small_ops = {
	.name = "small",
	.state_size = 8,
	.mailbox_messages_max = 8,
	.on_message = small_on_message,
};

static const rt_actor_ops one_ops = {
	.name = "one",
	.state_size = 8,
	.mailbox_messages_max = 1,
	.on_message = small_on_message,
};

/* Sends `count` (payload) messages to small actor 1 from inside a turn
 * and records the return codes. */
static int blaster_codes[16];

static void
blaster_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	uint64_t count = tk_u64(m);
	for (uint64_t i = 0; i < count && i < 16; i++)
		blaster_codes[i] = rt_send_copy(self, rt_addr_make(KIND_SMALL, 1),
			1, NULL, 0);
}

static const rt_actor_ops blaster_ops = {
	.name = "blaster",
	.state_size = 8,
	.on_message = blaster_on_message,
};

TEST(runtime_mailbox_full_at_exactly_the_limit)
{
	rt_runtime *rt = tk_runtime(true, 1, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_SMALL, &small_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_ONE, &one_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_BLASTER, &blaster_ops), 0);
	rt_addr small = rt_addr_make(KIND_SMALL, 1);
	for (int i = 0; i < 8; i++) {
		rt_message *m = rt_message_alloc(rt, 1, 0);
		CHECK_EQ(rt_send_external(rt, small, m), 0);
	}
	rt_message *m = rt_message_alloc(rt, 1, 0);
	CHECK_EQ(rt_send_external(rt, small, m), RT_EMAILBOX_FULL);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.mailbox_full_total, 1);
	/* Limit 1: the first is accepted, the second refused. */
	rt_addr one = rt_addr_make(KIND_ONE, 1);
	CHECK_EQ(rt_send_external(rt, one, rt_message_alloc(rt, 1, 0)), 0);
	CHECK_EQ(rt_send_external(rt, one, rt_message_alloc(rt, 1, 0)),
		RT_EMAILBOX_FULL);
	CHECK_EQ_U64(rt_det_run_until_idle(rt, 0), 2);
	CHECK_EQ_U64(small_handled, 9);
	/* Drained: room again, exactly 8. From an actor this time. */
	uint64_t ten = 10;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_BLASTER, 1), 1, &ten, 8), 0);
	CHECK(rt_det_step(rt)); /* the blaster's turn only */
	for (int i = 0; i < 8; i++)
		CHECK_EQ(blaster_codes[i], 0);
	CHECK_EQ(blaster_codes[8], RT_EMAILBOX_FULL);
	CHECK_EQ(blaster_codes[9], RT_EMAILBOX_FULL);
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.mailbox_full_total, 4);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ_U64(small_handled, 17);
	rt_destroy(rt);
}

/* ---- fairness ------------------------------------------------------------ */

static atomic_ullong flood_handled;
static uint64_t flood_at_quiet = UINT64_MAX;
static uint64_t flood_run;     /* flooded messages since the last probe */
static uint64_t flood_run_max;
static uint64_t probe_runs;

static void
flood_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	(void)m;
	flood_handled++;
	flood_run++;
	if (flood_run > flood_run_max)
		flood_run_max = flood_run;
}

static void
quiet_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	(void)m;
	flood_at_quiet = flood_handled;
}

static void
probe_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	(void)m;
	probe_runs++;
	flood_run = 0;
	if (flood_handled < 20000) {
		int rc = rt_send_copy(self, rt_self(self), 1, NULL, 0);
		CHECK(rc == 0 || rc == RT_ESTOPPED);
	}
}

static const rt_actor_ops flood_ops = {
	.name = "flood",
	.state_size = 8,
	.mailbox_messages_max = 100000,
	.on_message = flood_on_message,
};
static const rt_actor_ops quiet_ops = {
	.name = "quiet",
	.state_size = 8,
	.on_message = quiet_on_message,
};
static const rt_actor_ops probe_ops = {
	.name = "probe",
	.state_size = 8,
	.on_message = probe_on_message,
};

TEST(runtime_fairness_deterministic_turns_are_bounded)
{
	rt_runtime *rt = tk_runtime(true, 42, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_FLOOD, &flood_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_QUIET, &quiet_ops), 0);
	for (int i = 0; i < 20000; i++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_FLOOD, 1), 1, NULL, 0), 0);
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_QUIET, 1), 1, NULL, 0), 0);
	uint64_t flood_turns_before_quiet = 0;
	uint64_t steps = 0;
	bool full_turn_seen = false;
	for (;;) {
		uint64_t before = flood_handled;
		if (!rt_det_step(rt))
			break;
		steps++;
		uint64_t turn = flood_handled - before;
		CHECK(turn <= RT_TURN_MESSAGES_MAX);
		full_turn_seen |= turn == RT_TURN_MESSAGES_MAX;
		if (flood_at_quiet == UINT64_MAX)
			flood_turns_before_quiet++;
	}
	CHECK(full_turn_seen);
	CHECK_EQ_U64(flood_handled, 20000);
	CHECK(flood_at_quiet != UINT64_MAX);
	/* Two runnable actors, one drawn per step: the quiet one ran long
	 * before the flood drained (20000 / 64 = 313 turns). */
	CHECK_MSG(flood_turns_before_quiet <= 32, "quiet waited %llu turns",
		(unsigned long long)flood_turns_before_quiet);
	CHECK(steps >= 20000 / RT_TURN_MESSAGES_MAX);
	rt_destroy(rt);
}

TEST(runtime_fairness_real_mode_turn_size)
{
	rt_runtime *rt = tk_runtime(false, 42, 1);
	CHECK_EQ(rt_register_kind(rt, KIND_FLOOD, &flood_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_QUIET, &quiet_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_PROBE, &probe_ops), 0);
	/* Queue everything before the worker starts: the flood first. */
	for (int i = 0; i < 20000; i++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_FLOOD, 1), 1, NULL, 0), 0);
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_QUIET, 1), 1, NULL, 0), 0);
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_PROBE, 1), 1, NULL, 0), 0);
	CHECK_EQ(rt_start(rt), 0);
	/* rt_stop drains what is queued, so after it everything ran. */
	while (atomic_load(&flood_handled) < 20000) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ(rt_stop(rt), 0);
	CHECK_EQ_U64(flood_handled, 20000);
	CHECK(flood_at_quiet < 20000);
	CHECK(probe_runs > 1);
	CHECK_MSG(flood_run_max <= RT_TURN_MESSAGES_MAX,
		"a turn handled %llu messages", (unsigned long long)flood_run_max);
	rt_destroy(rt);
}

/* ---- the LIFO streak bound ---------------------------------------------- */

/* Hops the ping-pong pair makes: more streaks than the yielder has
 * turns, so the pair is runnable for as long as the yielder is. */
#define PING_HOPS (32u * RT_LIFO_STREAK_MAX)
/* The yielder's messages: it yields after every full turn. */
#define YIELDER_MESSAGES (RT_TURN_MESSAGES_MAX * 16u)

static atomic_bool ping_done;
static atomic_ullong yielder_handled;
static uint64_t ping_turns;        /* worker thread only (one worker) */
static uint64_t ping_since_yielder; /* ping turns since the yielder ran */
static uint64_t ping_gap_max;
static uint64_t yielder_turn_gaps;  /* yielder turns seen between pings */
static bool yielder_finished;

static void
ping_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	uint64_t left = tk_u64(m);
	ping_turns++;
	ping_since_yielder++;
	/* Only while the yielder still waits in the FIFO. */
	if (!yielder_finished && ping_since_yielder > ping_gap_max)
		ping_gap_max = ping_since_yielder;
	if (left == 0) {
		atomic_store(&ping_done, true);
		return;
	}
	left--;
	rt_addr partner = rt_addr_make(KIND_PING, rt_self(self).id ^ 1u);
	CHECK_EQ(rt_send_copy(self, partner, 1, &left, sizeof left), 0);
}

static void
yielder_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	(void)m;
	if (ping_since_yielder > 0 && !atomic_load(&ping_done))
		yielder_turn_gaps++;
	ping_since_yielder = 0;
	if (atomic_fetch_add(&yielder_handled, 1) + 1 == YIELDER_MESSAGES)
		yielder_finished = true;
}

static const rt_actor_ops ping_ops = {
	.name = "ping",
	.state_size = 8,
	.on_message = ping_on_message,
};
static const rt_actor_ops yielder_ops = {
	.name = "yielder",
	.state_size = 8,
	.mailbox_messages_max = YIELDER_MESSAGES,
	.on_message = yielder_on_message,
};

TEST(runtime_fairness_lifo_streak_is_bounded)
{
	rt_runtime *rt = tk_runtime(false, 42, 1);
	CHECK_EQ(rt_register_kind(rt, KIND_PING, &ping_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_YIELDER, &yielder_ops), 0);
	/* The yielder's turns are full, so it re-queues itself at the tail
	 * of the worker's FIFO after each; the pair's sends land in the
	 * worker's LIFO, run before the FIFO for at most a streak. */
	for (uint32_t i = 0; i < YIELDER_MESSAGES; i++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_YIELDER, 1), 1, NULL, 0), 0);
	uint64_t hops = PING_HOPS;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_PING, 0), 1, &hops, sizeof hops), 0);
	CHECK_EQ(rt_start(rt), 0);
	while (!atomic_load(&ping_done) ||
		atomic_load(&yielder_handled) < YIELDER_MESSAGES) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ(rt_stop(rt), 0);
	CHECK_EQ_U64(ping_turns, PING_HOPS + 1u);
	/* The yielder ran between the pair's turns, more than once. */
	CHECK(yielder_turn_gaps >= 2);
	/* A streak, plus once the pair's head: its first turn came from
	 * the FIFO, where it was queued ahead of the yielder. */
	CHECK_MSG(ping_gap_max <= RT_LIFO_STREAK_MAX + 1u,
		"the pair ran %llu turns in a row", (unsigned long long)ping_gap_max);
	rt_destroy(rt);
}
