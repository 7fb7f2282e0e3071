/*
 * cluster_swim_test.c — the SWIM state machine under a fake clock.
 *
 * Method: N cl__swim instances exchange their actions through a tiny
 * in-test network that delivers at once (or drops everything to/from a
 * crashed member); virtual time moves 10 ms per step. Checks: a crash is
 * seen as down by every survivor within 3 s; 10 virtual minutes with
 * everyone up and one lossy member give no false down; a member told it
 * is suspect refutes with a higher incarnation.
 */
#include "cluster/internal.h"
#include "tests/test.h"

#define SWIM_N 5

typedef struct world {
	cl__swim s[SWIM_N];
	bool crashed[SWIM_N];
	uint64_t now;
	uint64_t rng;
	uint32_t drop_percent_of[SWIM_N]; /* lossy member: drops its sends */
} world;

static void gossip(world *w, int from, int to);

static void
run_actions(world *w, int from, const cl__swim_actions *a)
{
	for (uint32_t i = 0; i < a->count; i++) {
		const cl__swim_action *x = &a->items[i];
		if (x->kind == CL__SWIM_CHANGED)
			continue;
		int to = x->to - 1;
		if (w->crashed[to] || w->crashed[from])
			continue;
		if (w->drop_percent_of[from] > 0 &&
			cl__rand_next(&w->rng) % 100 < w->drop_percent_of[from])
			continue;
		gossip(w, from, to);
		cl__swim_actions out = {0};
		uint16_t src = (uint16_t)(from + 1);
		if (x->kind == CL__SWIM_PING)
			cl__swim_on_ping(&w->s[to], src, x->origin, x->sequence,
				w->now, &out);
		else if (x->kind == CL__SWIM_ACK)
			cl__swim_on_ack(&w->s[to], src, x->target, x->origin,
				x->sequence, w->now, &out);
		else
			cl__swim_on_ping_req(&w->s[to], src, x->target,
				x->sequence, w->now, &out);
		run_actions(w, to, &out);
	}
}

static void
gossip(world *w, int from, int to)
{
	cl__swim_update u[CL_NODES_MAX];
	uint32_t n = cl__swim_updates(&w->s[from], u, CL_NODES_MAX);
	cl__swim_actions out = {0};
	for (uint32_t i = 0; i < n; i++)
		cl__swim_merge(&w->s[to], (uint16_t)(from + 1), &u[i], w->now,
			&out);
}

static void
world_init(world *w)
{
	memset(w, 0, sizeof *w);
	w->rng = 99;
	uint16_t ids[SWIM_N];
	for (int i = 0; i < SWIM_N; i++)
		ids[i] = (uint16_t)(i + 1);
	for (int i = 0; i < SWIM_N; i++) {
		cl__swim_init(&w->s[i], ids[i], 1, 1000 + i, 200, 1200, 0);
		cl__swim_set_members(&w->s[i], ids, SWIM_N, 0);
	}
}

static void
world_step(world *w)
{
	w->now += 10;
	for (int i = 0; i < SWIM_N; i++) {
		if (w->crashed[i])
			continue;
		cl__swim_actions out = {0};
		cl__swim_tick(&w->s[i], w->now, &out);
		run_actions(w, i, &out);
	}
}

TEST(cluster_swim_detects_crash_within_3s)
{
	world *w = malloc(sizeof *w);
	world_init(w);
	for (int k = 0; k < 500; k++)
		world_step(w);
	w->crashed[2] = true;
	uint64_t crashed_at = w->now;
	bool all_down = false;
	while (!all_down && w->now - crashed_at < 10000) {
		world_step(w);
		all_down = true;
		for (int i = 0; i < SWIM_N; i++)
			if (!w->crashed[i] &&
				cl__swim_find(&w->s[i], 3)->liveness != CL_LIVE_DOWN)
				all_down = false;
	}
	CHECK(all_down);
	uint64_t took = w->now - crashed_at;
	printf("figure swim_detect_ms %" PRIu64 " ms\n", took);
	CHECK_MSG(took <= 3000, "took %" PRIu64 " ms", took);
	free(w);
}

TEST(cluster_swim_no_false_positive_ten_minutes_lossy)
{
	world *w = malloc(sizeof *w);
	world_init(w);
	w->drop_percent_of[1] = 20; /* one member loses a fifth of its sends */
	for (uint64_t k = 0; k < 60000; k++) {
		world_step(w);
		for (int i = 0; i < SWIM_N; i++)
			for (int j = 0; j < SWIM_N; j++)
				CHECK(cl__swim_find(&w->s[i], (uint16_t)(j + 1))
						->liveness != CL_LIVE_DOWN);
	}
	free(w);
}

TEST(cluster_swim_refutes_suspicion)
{
	world *w = malloc(sizeof *w);
	world_init(w);
	cl__swim_update u = {.id = 1, .liveness = CL_LIVE_SUSPECT,
		.incarnation = 1};
	cl__swim_actions out = {0};
	cl__swim_merge(&w->s[0], 2, &u, 0, &out);
	CHECK_EQ_U64(w->s[0].incarnation, 2);
	/* a member that suspected 1 at incarnation 1 takes alive@2 */
	cl__swim_merge(&w->s[1], 3, &u, 0, &out);
	CHECK_EQ(cl__swim_find(&w->s[1], 1)->liveness, CL_LIVE_SUSPECT);
	gossip(w, 0, 1);
	CHECK_EQ(cl__swim_find(&w->s[1], 1)->liveness, CL_LIVE_ALIVE);
	CHECK_EQ_U64(cl__swim_find(&w->s[1], 1)->incarnation, 2);
	free(w);
}

/* A member whose pings are lost but whose other frames keep arriving (a
 * busy node shipping a partition, acks stuck behind its data) is heard,
 * so it is neither suspected for long nor declared down. */
TEST(cluster_swim_heard_member_is_not_declared_down)
{
	cl__swim a;
	uint16_t ids[2] = {1, 2};
	cl__swim_init(&a, 1, 1, 7, 200, 1200, 0);
	cl__swim_set_members(&a, ids, 2, 0);
	cl__swim_member *b = cl__swim_find(&a, 2);
	for (uint64_t now = 0; now < 60000; now += 10) {
		cl__swim_actions out = {0};
		cl__swim_tick(&a, now, &out);
		if (now % 50 == 0)
			cl__swim_heard(&a, 2, now); /* data frames, no acks */
		CHECK(b->liveness != CL_LIVE_DOWN);
	}
	/* Silent from now on: down within the usual bound. */
	uint64_t silent_from = 60000;
	uint64_t now = silent_from;
	for (; now < silent_from + 10000 && b->liveness != CL_LIVE_DOWN;
		now += 10) {
		cl__swim_actions out = {0};
		cl__swim_tick(&a, now, &out);
	}
	CHECK_EQ(b->liveness, CL_LIVE_DOWN);
	CHECK(now - silent_from <= 3000);
}
