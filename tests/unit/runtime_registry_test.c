/*
 * runtime_registry_test.c — a registry large enough that its slot arrays
 * come from the huge-page arena finds every actor, through growth,
 * removal and re-activation.
 *
 * Method: a real runtime (two workers, so shards grow on both while
 * the test thread sends too) gets 100,000 actors, which takes every
 * shard's array from calloc through four arena sizes (4 to 32 KiB, each
 * growth freeing a block whose buddy merges). Each actor counts its
 * messages in its state and records a mismatch if the count differs
 * from the round number the message carries: a lookup that found a
 * wrong or stale actor, or two actors for one address, shows up there.
 * Round 2 asks every actor to passivate (removals shift probe runs);
 * round 3 must find each one absent and create it fresh (count 1).
 * Statistics must agree at every step.
 */
#include "tests/unit/runtime_testkit.h"

#include <stdatomic.h>
#include <time.h>

enum { KIND_TALLY = 1 };

/* Enough actors for shards of ~390, past 256-slot and 512-slot arrays. */
#define TALLY_ACTORS 100000u

static atomic_ullong tally_handled;
static atomic_ullong tally_mismatches;

typedef struct tally_state {
	uint64_t messages;
	uint64_t id;
} tally_state;

static void
tally_on_message(rt_actor *self, void *state, const rt_message *m)
{
	tally_state *s = state;
	uint64_t expect = tk_u64(m);
	if (s->messages == 0)
		s->id = rt_self(self).id;
	s->messages++;
	if (s->messages != expect || s->id != rt_self(self).id)
		atomic_fetch_add(&tally_mismatches, 1);
	if (m->type == 2)
		rt_request_passivate(self);
	atomic_fetch_add(&tally_handled, 1);
}

static const rt_actor_ops tally_ops = {
	.name = "tally",
	.state_size = sizeof(tally_state),
	.on_message = tally_on_message,
};

static void
wait_handled(uint64_t target)
{
	while (atomic_load(&tally_handled) < target) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

static void
send_round(rt_runtime *rt, uint32_t type, uint64_t expect)
{
	for (uint64_t id = 0; id < TALLY_ACTORS; id++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_TALLY, id), type, &expect,
			sizeof expect), 0);
}

TEST(runtime_large_registry_finds_every_actor)
{
	rt_runtime *rt = tk_runtime(false, 5, 2);
	CHECK_EQ(rt_register_kind(rt, KIND_TALLY, &tally_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	rt_stats st;

	send_round(rt, 1, 1);
	wait_handled(TALLY_ACTORS);
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, TALLY_ACTORS);
	CHECK_EQ_U64(st.actors_activated_total, TALLY_ACTORS);

	/* Same actors, state intact; each then passivates. */
	send_round(rt, 2, 2);
	wait_handled(2u * TALLY_ACTORS);
	/* The passivated count moves before the actor is freed (and the
	 * active count drops): wait for both. */
	do {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		rt_get_stats(rt, &st);
	} while (st.actors_passivated_total < TALLY_ACTORS ||
		st.actors_active != 0);
	CHECK_EQ_U64(st.actors_passivated_total, TALLY_ACTORS);

	/* Every address is gone: each is created again, fresh. */
	send_round(rt, 1, 1);
	wait_handled(3u * TALLY_ACTORS);
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, TALLY_ACTORS);
	CHECK_EQ_U64(st.actors_activated_total, 2u * TALLY_ACTORS);
	CHECK_EQ_U64(atomic_load(&tally_mismatches), 0);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
}
