/*
 * sim_core_test.c — the simulator's own machinery: seeded streams that
 * are independent and stable, an event queue that breaks ties by the
 * order events were queued, the fault-list syntax and the replay command
 * line, the sometimes registry, and the property everything else rests
 * on: one seed, run twice in one process, gives the same event hash and
 * the same verdict.
 *
 * Method: direct calls into sim/ (internal.h for the pieces), and two
 * tiny sim_run runs (a few users, a simulated minute or two).
 */
#include "sim/internal.h"
#include "tests/test.h"

TEST(sim_core_streams_are_seeded_and_independent)
{
	sim_rng a, b, c;
	sim__rng_seed(&a, 42, SIM_STREAM_NETWORK);
	sim__rng_seed(&b, 42, SIM_STREAM_NETWORK);
	sim__rng_seed(&c, 42, SIM_STREAM_DISK);
	uint32_t same_as_other_stream = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t x = sim__rng_next(&a);
		CHECK_EQ_U64(x, sim__rng_next(&b));
		same_as_other_stream += x == sim__rng_next(&c);
	}
	CHECK_EQ(same_as_other_stream, 0);
	/* bounded draws stay in bounds and reach both ends */
	bool low = false, high = false;
	for (int i = 0; i < 10000; i++) {
		uint64_t x = sim__rng_range(&a, 3, 7);
		CHECK(x >= 3 && x <= 7);
		low |= x == 3;
		high |= x == 7;
	}
	CHECK(low && high);
	CHECK(!sim__rng_ppm(&a, 0));
	CHECK(sim__rng_ppm(&a, 1000000));
}

TEST(sim_core_events_order_by_time_then_queueing)
{
	sim_events q;
	sim__events_init(&q);
	uint64_t times[] = {50, 10, 50, 10, 30, 10};
	for (uint64_t i = 0; i < 6; i++) {
		sim_event e = {.at_ms = times[i], .kind = SIM_EV_OP, .arg = i};
		CHECK_EQ(sim__events_push(&q, e), 0);
	}
	uint64_t want[] = {1, 3, 5, 4, 0, 2}; /* by time, ties in push order */
	sim_event e;
	for (int i = 0; i < 6; i++) {
		CHECK(sim__events_pop(&q, &e));
		CHECK_EQ_U64(e.arg, want[i]);
	}
	CHECK(!sim__events_pop(&q, &e));
	CHECK_EQ_U64(sim__events_next_ms(&q), UINT64_MAX);
	sim__events_free(&q);
}

TEST(sim_core_fault_lists_and_the_replay_line)
{
	bool swarm;
	uint32_t faults;
	CHECK_EQ(sim_faults_parse("swarm", &swarm, &faults), 0);
	CHECK(swarm);
	CHECK_EQ(faults, SIM_FAULTS_ALL);
	CHECK_EQ(sim_faults_parse("none", &swarm, &faults), 0);
	CHECK(!swarm);
	CHECK_EQ(faults, 0);
	CHECK_EQ(sim_faults_parse("crash,partition", &swarm, &faults), 0);
	CHECK(!swarm);
	CHECK_EQ(faults, SIM_FAULT_CRASH | SIM_FAULT_PARTITION);
	CHECK_EQ(sim_faults_parse("swarm:-join,-drain", &swarm, &faults), 0);
	CHECK(swarm);
	CHECK_EQ(faults, SIM_FAULTS_ALL & ~(SIM_FAULT_JOIN | SIM_FAULT_DRAIN));
	CHECK(sim_faults_parse("crash,meteor", &swarm, &faults) != 0);
	sim_options o;
	sim_options_default(&o);
	o.seed = 77;
	o.sim_time_ms = 90u * 60u * 1000u;
	o.swarm = true;
	o.faults = SIM_FAULT_DISK | SIM_FAULT_TORN;
	char line[512];
	sim_command_line(&o, line, sizeof line);
	CHECK_STR_EQ(line, "flocksim --seed 77 --nodes 3 --sim-time 90m "
		"--faults swarm:torn,disk --mode safety");
	CHECK_EQ(sim_faults_parse("swarm:torn,disk", &swarm, &faults), 0);
	CHECK_EQ(faults, o.faults);
}

typedef struct site_count {
	uint64_t sites;
	uint64_t hits;
} site_count;

static void
count_site(void *arg, const sim_sometimes_site *s)
{
	site_count *c = arg;
	if (strcmp(s->name, "sim test: a rare state") != 0)
		return;
	c->sites++;
	c->hits += s->hits;
}

static void
rare(void)
{
	sim_sometimes("sim test: a rare state");
}

TEST(sim_core_sometimes_sites_are_listed_and_counted)
{
	sim_sometimes_reset();
	site_count c = {0};
	sim_sometimes_each(count_site, &c);
	CHECK_EQ(c.sites, 1); /* listed before it ever ran */
	CHECK_EQ(c.hits, 0);
	rare();
	rare();
	memset(&c, 0, sizeof c);
	sim_sometimes_each(count_site, &c);
	CHECK_EQ(c.hits, 2);
	sim_sometimes_reset();
	memset(&c, 0, sizeof c);
	sim_sometimes_each(count_site, &c);
	CHECK_EQ(c.hits, 0);
}

TEST_WITH_TIMEOUT(sim_core_one_seed_twice_same_hash, 120)
{
	sim_options o;
	sim_options_default(&o);
	o.seed = 5;
	o.users = 12;
	o.sim_time_ms = 2u * 60u * 1000u;
	o.ops_per_minute = 120;
	o.tmp_dir = test_tmpdir();
	sim_result a, b;
	CHECK_EQ(sim_run(&o, &a), 0);
	CHECK_EQ(sim_run(&o, &b), 0);
	CHECK_EQ_U64(a.trace_hash, b.trace_hash);
	CHECK_EQ(a.passed, b.passed);
	CHECK_STR_EQ(a.knobs, b.knobs);
	CHECK(a.turns > 0);
	CHECK(a.frames > 0);
	/* another seed is another run */
	o.seed = 6;
	CHECK_EQ(sim_run(&o, &b), 0);
	CHECK(a.trace_hash != b.trace_hash);
}

TEST_WITH_TIMEOUT(sim_core_fault_free_run_passes, 120)
{
	sim_options o;
	sim_options_default(&o);
	o.seed = 9;
	o.users = 20;
	o.sim_time_ms = 3u * 60u * 1000u;
	o.swarm = false;
	o.faults = 0;
	o.tmp_dir = test_tmpdir();
	sim_result r;
	CHECK_EQ(sim_run(&o, &r), 0);
	CHECK_MSG(r.passed, "%s", r.failure);
	CHECK(r.ops_acked > 0);
	CHECK_EQ(r.crashes, 0);
}
