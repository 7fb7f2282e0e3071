/*
 * persistence_crash_test.c — kill -9 at random moments, restart, repeat.
 *
 * Goal: across many crashes no acknowledged write is lost or applied
 * twice, and every effect derived from a write reaches its target exactly
 * once (the outbox and dedupe protocol).
 * Method: each cycle forks a child running a real runtime + ps_node on
 * one data directory. The child recovers, then sends increments with
 * unique ids to CRASH_COUNTERS counter actors; a counter reports an id on
 * a pipe only from its durable notice; every increment derives an effect
 * on one of TOY_TALLIES tally actors. The child also checkpoints now and
 * then and passivates idle actors, so snapshots, segment deletion and
 * recovery from a checkpoint all happen. The parent reads acks and
 * SIGKILLs the child after a seeded random delay. After the cycles
 * (FLOCK_CRASH_CYCLES, default 20) a final child recovers, lets every
 * outbox drain, stops cleanly, and checks every snapshot: each acked id
 * present in its counter exactly once, each counter's count equal to its
 * distinct ids, each tally equal to the writes of its counters, and no
 * effect left unconfirmed.
 */
#include "tests/unit/persistence_toy.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#define CRASH_COUNTERS 1000u
#define CRASH_CYCLES_DEFAULT 20u
/* Writes in flight per child: enough for group commits of hundreds. */
#define CRASH_INFLIGHT_MAX 256
/* Writes one child sends at most: bounds the parent's ack table at
 * cycles x this, whatever the disk's speed. */
#define CRASH_WRITES_PER_CYCLE_MAX 40000u
#define CRASH_SEGMENT_BYTES (256u * 1024u)

static uint64_t *acked;
static size_t acked_count;
static size_t acked_max;

static const char *
crash_dir(void)
{
	static char path[512];
	snprintf(path, sizeof path, "%s/node", test_tmpdir());
	return path;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The child of one cycle: recover, then write until killed. */
static _Noreturn void
crash_child(uint64_t cycle, int ack_fd)
{
	toy_ack_fd = ack_fd;
	ps_node_report rep;
	rt_runtime *rt = toy_start(crash_dir(), 200, CRASH_SEGMENT_BYTES, &rep);
	uint64_t sent = 0;
	for (uint64_t i = 0; i < CRASH_WRITES_PER_CYCLE_MAX; i++) {
		/* Bounded in flight: acks count durable increments. */
		while ((long)sent - atomic_load(&toy_acks) > CRASH_INFLIGHT_MAX)
			toy_sleep_ms(1);
		uint64_t id = (cycle << 32) | i;
		int rc = toy_send_increment(rt, id, CRASH_COUNTERS);
		if (rc != 0) {
			toy_sleep_ms(1);
			continue;
		}
		sent++;
		if (i % 500 == 499)
			ps_node_checkpoint(toy_node, NULL, NULL);
	}
	for (;;)
		toy_sleep_ms(1000); /* until killed */
}

static int
compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void
read_acks(int fd)
{
	uint64_t buf[512];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		/* Pipe writes of 8 bytes are atomic; reads may split them only
		 * at 8-byte boundaries since every write is 8 bytes. */
		CHECK(n % 8 == 0);
		for (ssize_t i = 0; i < n / 8; i++) {
			CHECK(acked_count < acked_max);
			acked[acked_count++] = buf[i];
		}
	}
}

static void
run_cycle(uint64_t cycle, uint64_t *rng)
{
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		crash_child(cycle, p[1]);
	}
	close(p[1]);
	/* Seeded kill moment: 150..650 ms after start, recovery included. */
	*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t deadline = now_ms() + 150 + (*rng >> 33) % 500;
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	size_t before = acked_count;
	while (now_ms() < deadline) {
		read_acks(p[0]);
		toy_sleep_ms(2);
	}
	kill(pid, SIGKILL);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		"cycle %llu: child died on its own (status %d)",
		(unsigned long long)cycle, status);
	fcntl(p[0], F_SETFL, 0);
	read_acks(p[0]); /* acks written before the kill still count */
	close(p[0]);
	printf("cycle %llu: %zu acks\n", (unsigned long long)cycle,
		acked_count - before);
}

/* The final child: recover, drain every outbox, stop, check snapshots. */
static void
verify_child(void)
{
	ps_node_report rep;
	rt_runtime *rt = toy_start(crash_dir(), 0, CRASH_SEGMENT_BYTES, &rep);
	toy_wait_recovered(rt, &rep);
	/* Wake every counter so its on_activate re-sends its outbox. */
	for (uint32_t c = 0; c < CRASH_COUNTERS; c++)
		CHECK_EQ(rt_activate(rt, rt_addr_make(TOY_KIND_COUNTER, c)), 0);
	/* Every counter's on_activate must have returned before the
	 * unconfirmed count means anything: a counter still waiting for its
	 * turn has not added its outbox yet, and rt_stop would activate it
	 * with sends refused and save its outbox as it was. (The runtime's
	 * activation total counts tallies as well, so it reached the number
	 * of counters with up to TOY_TALLIES of them still queued.) Counters
	 * never passivate here (idle passivation off) and nothing adds
	 * effects, so once all are in, zero unconfirmed stays zero. */
	toy_wait_counters_activated(CRASH_COUNTERS);
	toy_wait_confirmed(30);
	toy_stop(rt);

	char path[600];
	snprintf(path, sizeof path, "%s/snapshots", crash_dir());
	ps_store_options o;
	ps_store_options_default(&o, path);
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	qsort(acked, acked_count, sizeof *acked, compare_u64);
	for (size_t i = 1; i < acked_count; i++)
		CHECK_MSG(acked[i] != acked[i - 1], "id acked twice");
	uint64_t tallied[TOY_TALLIES] = {0};
	size_t found = 0;
	uint64_t total = 0;
	for (uint32_t c = 0; c < CRASH_COUNTERS; c++) {
		toy_snapshot snap;
		memset(&snap, 0, sizeof snap);
		snap.counter_kind = true;
		int rc = ps_store_get(s, rt_addr_make(TOY_KIND_COUNTER, c),
			toy_take, &snap);
		CHECK(rc == 0 || rc == PS_ENOTFOUND);
		CHECK_EQ_U64(snap.counter.count, snap.counter.ids_count);
		CHECK_EQ(snap.counter.outbox.count, 0);
		for (uint32_t i = 0; i < snap.counter.ids_count; i++) {
			uint64_t id = snap.counter.ids[i];
			CHECK_EQ(toy_counter_index(id, CRASH_COUNTERS), c);
			found += bsearch(&id, acked, acked_count, sizeof *acked,
					 compare_u64) != NULL;
		}
		total += snap.counter.count;
		tallied[c % TOY_TALLIES] += snap.counter.count;
		toy_counter_free(&snap.counter);
	}
	/* Every acked id is in its counter (ids are unique per counter, so
	 * finding all of them means each exactly once). */
	CHECK_MSG(found == acked_count, "acked %zu, found %zu", acked_count,
		found);
	for (uint32_t t = 0; t < TOY_TALLIES; t++) {
		toy_snapshot snap;
		memset(&snap, 0, sizeof snap);
		int rc = ps_store_get(s, rt_addr_make(TOY_KIND_TALLY, t), toy_take,
			&snap);
		CHECK(rc == 0 || (rc == PS_ENOTFOUND && tallied[t] == 0));
		CHECK_MSG(snap.tally.count == tallied[t],
			"tally %u: %llu effects for %llu writes", t,
			(unsigned long long)snap.tally.count,
			(unsigned long long)tallied[t]);
		toy_tally_free(&snap.tally);
	}
	ps_store_close(s);
	printf("verified: %zu acked, %llu applied\n", acked_count,
		(unsigned long long)total);
}

/* 20 cycles take about 10 s; `make crash CYCLES=200` about 100 s. */
TEST_WITH_TIMEOUT(persistence_crash_kill9_cycles, 600)
{
	unsigned cycles = CRASH_CYCLES_DEFAULT;
	const char *env = getenv("FLOCK_CRASH_CYCLES");
	if (env != NULL && atoi(env) > 0)
		cycles = (unsigned)atoi(env);
	acked_max = (size_t)cycles * CRASH_WRITES_PER_CYCLE_MAX;
	acked = malloc(acked_max * sizeof *acked);
	CHECK(acked != NULL);
	uint64_t rng = 0x5eed0000u + cycles;
	for (uint64_t c = 1; c <= cycles; c++)
		run_cycle(c, &rng);
	CHECK_MSG(acked_count > cycles, "too few acks: %zu", acked_count);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		verify_child();
		fflush(stdout);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"verification failed (status %d)", status);
	free(acked);
}
