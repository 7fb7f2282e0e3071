/*
 * runtime_registry_test.c — a registry large enough that its slot arrays
 * come from the huge-page arena finds every actor, through growth,
 * removal and re-activation.
 *
 * Method: a real runtime (two workers, so shards grow on both while
 * the test thread sends too) gets 100,000 actors, which takes every
 * shard's array from aligned_alloc through two arena sizes (4 and
 * 8 KiB, each growth freeing a block whose buddy merges). Each actor counts its
 * messages in its state and records a mismatch if the count differs
 * from the round number the message carries: a lookup that found a
 * wrong or stale actor, or two actors for one address, shows up there.
 * Round 2 asks every actor to passivate (removals shift probe runs);
 * round 3 must find each one absent and create it fresh (count 1).
 * Statistics must agree at every step.
 */
#include "tests/unit/runtime_testkit.h"
#include "runtime/internal.h"

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

/* ---- a shard past what a slot's tag indexes ------------------------------ */

/* A slot keeps 16 bits of its actor's hash (internal.h): a shard of more
 * than 2^16 slots grows and shifts by the actor's own address instead.
 * One shard gets enough actors for 2^17 slots, directly through the
 * registry's calls (a runtime would spread them over 256 shards). */
#define BIG_SHARD_ACTORS 50000u

TEST(runtime_registry_shard_past_the_tag_finds_every_actor)
{
	rt__registry *reg = calloc(1, sizeof *reg);
	CHECK(reg != NULL);
	CHECK_EQ(rt__registry_init(reg), 0);
	rt_actor **actors = calloc(BIG_SHARD_ACTORS, sizeof *actors);
	uint64_t *hashes = calloc(BIG_SHARD_ACTORS, sizeof *hashes);
	CHECK(actors != NULL && hashes != NULL);
	const uint32_t kind = 3;
	rt__shard *s = &reg->shards[0];
	uint32_t n = 0;
	for (uint64_t id = 1; n < BIG_SHARD_ACTORS; id++) {
		uint64_t hash = rt__addr_hash(kind, id);
		if (rt__registry_shard(reg, hash) != s)
			continue;
		rt_actor *a = malloc(sizeof(rt_actor));
		CHECK(a != NULL);
		memset(a, 0, sizeof *a);
		a->id = id;
		atomic_store(&a->mailbox, (uint64_t)kind << RT_ACTOR_KIND_SHIFT);
		uint32_t hole;
		rt__spin_lock(&s->lock);
		CHECK(rt__registry_find_hole(s, hash, kind, id, &hole) == NULL);
		CHECK_EQ(rt__registry_insert_at(reg, s, hash, a, hole, NULL), 0);
		rt__spin_unlock(&s->lock);
		actors[n] = a;
		hashes[n] = hash;
		n++;
	}
	CHECK(s->mask > RT_SLOT_TAG_MASK);
	rt__spin_lock(&s->lock);
	for (uint32_t i = 0; i < n; i++)
		CHECK(rt__registry_find(s, hashes[i], kind, actors[i]->id) ==
			actors[i]);
	/* Every other one leaves: the backward shift moves the rest by
	 * their own homes. */
	for (uint32_t i = 0; i < n; i += 2)
		rt__registry_remove(s, hashes[i], actors[i]);
	for (uint32_t i = 0; i < n; i++)
		CHECK(rt__registry_find(s, hashes[i], kind, actors[i]->id) ==
			(i % 2 == 0 ? NULL : actors[i]));
	CHECK_EQ_U64(s->count, n / 2);
	rt__spin_unlock(&s->lock);
	for (uint32_t i = 0; i < n; i++)
		free(actors[i]);
	free(actors);
	free(hashes);
	rt__registry_destroy(reg);
	free(reg);
}
