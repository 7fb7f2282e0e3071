/*
 * runtime_bench.c — the actor runtime's micro-benchmarks.
 *
 * Prints `figure <name> <value> <unit>` lines:
 *   spawn    activate 1,000,000 idle actors (rt_activate); wall time and
 *            VmRSS growth per actor (the actor, its tiny state, its
 *            registry entry and the scheduler's share)
 *   ring     1,000 actors pass one token 10,000,000 hops; hops per second
 *   fan-out  one actor sends a small message to each of 100,000 actors,
 *            each appends it to a list in its state; messages per second
 *            end to end, first round (activating the receivers) and warm.
 *            fanout_hinted is the same in a fresh runtime with the sender
 *            calling rt_prefetch 8 receivers ahead, as flock's timeline
 *            fan-out (actors/user.c) does; the plain figures stay the
 *            comparison with the peers' code, which has no such hint.
 *   skynet   1,000,000 leaves under a tree of fan-out 10; the root's sum
 *            must be 499999500000; wall time. Every actor stays active
 *            (a virtual actor is not gone when its work is done).
 *            skynet_exit is the same in a fresh runtime with every actor
 *            passivating itself after it sends its result, as the peers'
 *            goroutines and processes end after theirs.
 * Then, if tests/bench/peers/run.sh exists, runs it and prints
 * `ratio <name> <peer> <flock/peer> <unit>` for each figure both report:
 * throughput ratios above 1 and time/byte ratios below 1 favour flock.
 *
 * Each also gets a `<name>_cpu_seconds` figure (process CPU time over the
 * timed part), steadier than wall time on a loaded machine.
 * Options: --quick (smaller sizes, for a smoke run), --no-peers.
 * Each benchmark runs in a fresh runtime with default workers (cores).
 */
#include "runtime/runtime.h"

#include <stdatomic.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIGURES_MAX 32

typedef struct figure {
	char name[64];
	double value;
	char unit[32];
} figure;

static figure figures[FIGURES_MAX];
static int figures_count;

static void
report(const char *name, double value, const char *unit)
{
	printf("figure %s %.6g %s\n", name, value, unit);
	fflush(stdout);
	if (figures_count < FIGURES_MAX) {
		figure *f = &figures[figures_count++];
		snprintf(f->name, sizeof f->name, "%s", name);
		f->value = value;
		snprintf(f->unit, sizeof f->unit, "%s", unit);
	}
}

static double
now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Process CPU seconds (user + system): on a busy shared machine the wall
 * figures swing with other load, CPU time much less. */
static double
cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long
rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	char line[256];
	long kb = -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static void
die(const char *what, int rc)
{
	fprintf(stderr, "runtime_bench: %s: %s\n", what, rt_strerror(rc));
	exit(1);
}

static rt_runtime *
bench_runtime(void)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.passivate_idle_ms = 0;
	cfg.log_level = RT_LOG_WARN;
	cfg.node_name = "bench";
	rt_runtime *rt;
	int rc = rt_create(&cfg, &rt);
	if (rc != 0)
		die("rt_create", rc);
	return rt;
}

static void
check(int rc, const char *what)
{
	if (rc != 0)
		die(what, rc);
}

static uint64_t
payload_u64(const rt_message *m)
{
	uint64_t x;
	memcpy(&x, m->payload, sizeof x);
	return x;
}

static int
send_u64(rt_actor *self, rt_addr to, uint32_t type, uint64_t value)
{
	return rt_send_copy(self, to, type, &value, sizeof value);
}

static rt_message *
wait_inbox(rt_inbox *inbox)
{
	rt_message *m = rt_inbox_wait(inbox, 600000);
	if (m == NULL) {
		fprintf(stderr, "runtime_bench: no completion\n");
		exit(1);
	}
	return m;
}

/* ---- spawn ---------------------------------------------------------------- */

enum { KIND_IDLE = 1, KIND_RING = 2, KIND_SOURCE = 3, KIND_SINK = 4,
	KIND_SKY = 5 };

static void
idle_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	(void)m;
}

static const rt_actor_ops idle_ops = {
	.name = "idle",
	.state_size = 8,
	.on_message = idle_on_message,
};

static void
bench_spawn(uint64_t count)
{
	rt_runtime *rt = bench_runtime();
	check(rt_register_kind(rt, KIND_IDLE, &idle_ops), "register");
	check(rt_start(rt), "start");
	long before = rss_bytes();
	double c0 = cpu_seconds();
	double t0 = now_seconds();
	for (uint64_t id = 0; id < count; id++)
		check(rt_activate(rt, rt_addr_make(KIND_IDLE, id)), "activate");
	rt_stats st;
	for (;;) {
		rt_get_stats(rt, &st);
		if (st.actors_activated_total >= count)
			break;
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	double t1 = now_seconds();
	double c1 = cpu_seconds();
	long after = rss_bytes();
	report("runtime_spawn_seconds", t1 - t0, "s");
	report("runtime_spawn_cpu_seconds", c1 - c0, "s");
	report("runtime_spawn_bytes_per_actor", (double)(after - before) / (double)count,
		"bytes");
	check(rt_stop(rt), "stop");
	rt_destroy(rt);
}

/* ---- ring ----------------------------------------------------------------- */

static rt_addr ring_done;
static uint64_t ring_size;

static void
ring_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	uint64_t left = payload_u64(m);
	if (left == 0) {
		check(send_u64(self, ring_done, 1, 0), "ring done");
		return;
	}
	rt_addr next = rt_addr_make(KIND_RING, (rt_self(self).id + 1) % ring_size);
	check(send_u64(self, next, 1, left - 1), "ring send");
}

static const rt_actor_ops ring_ops = {
	.name = "ring",
	.state_size = 8,
	.on_message = ring_on_message,
};

static void
bench_ring(uint64_t actors, uint64_t hops)
{
	rt_runtime *rt = bench_runtime();
	check(rt_register_kind(rt, KIND_RING, &ring_ops), "register");
	rt_inbox *inbox;
	check(rt_inbox_create(rt, NULL, NULL, &inbox), "inbox");
	ring_done = rt_inbox_addr(inbox);
	ring_size = actors;
	check(rt_start(rt), "start");
	/* Activate the ring first: the figure is message passing. */
	for (uint64_t id = 0; id < actors; id++)
		check(rt_activate(rt, rt_addr_make(KIND_RING, id)), "activate");
	rt_stats st;
	do {
		rt_get_stats(rt, &st);
	} while (st.actors_activated_total < actors);
	double c0 = cpu_seconds();
	double t0 = now_seconds();
	rt_message *m = rt_message_alloc(rt, 1, 8);
	memcpy(m->payload, &hops, 8);
	check(rt_send_external(rt, rt_addr_make(KIND_RING, 0), m), "ring start");
	rt_message_free(rt, wait_inbox(inbox));
	double t1 = now_seconds();
	report("runtime_ring_hops_per_second", (double)hops / (t1 - t0), "hops/s");
	report("runtime_ring_cpu_seconds", cpu_seconds() - c0, "s");
	rt_inbox_destroy(inbox);
	check(rt_stop(rt), "stop");
	rt_destroy(rt);
}

/* ---- fan-out -------------------------------------------------------------- */

#define SINK_LIST_MAX 6
/* Sends ahead that fanout_hinted prefetches: about one registry miss's
 * latency worth of sends. */
#define FAN_PREFETCH_DISTANCE 8

typedef struct sink_state {
	uint32_t count;
	uint32_t reserved;
	uint64_t items[SINK_LIST_MAX];
} sink_state;

static uint64_t fan_count;
static bool fan_hint; /* rt_prefetch ahead of each send */
static rt_addr fan_done;
static atomic_ullong fan_received;
static uint64_t fan_target;

static void
source_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	uint64_t round = payload_u64(m);
	for (uint64_t id = 0; id < fan_count; id++) {
		if (fan_hint && id + FAN_PREFETCH_DISTANCE < fan_count)
			rt_prefetch(self, rt_addr_make(KIND_SINK,
				id + FAN_PREFETCH_DISTANCE));
		check(send_u64(self, rt_addr_make(KIND_SINK, id), 1, round), "fan send");
	}
}

static void
sink_on_message(rt_actor *self, void *state, const rt_message *m)
{
	sink_state *s = state;
	if (s->count < SINK_LIST_MAX)
		s->items[s->count++] = payload_u64(m);
	if (atomic_fetch_add_explicit(&fan_received, 1, memory_order_relaxed) + 1 ==
		fan_target)
		check(send_u64(self, fan_done, 1, 0), "fan done");
}

static const rt_actor_ops source_ops = {
	.name = "source",
	.state_size = 8,
	.on_message = source_on_message,
};

static const rt_actor_ops sink_ops = {
	.name = "sink",
	.state_size = sizeof(sink_state),
	.on_message = sink_on_message,
};

/* Returns messages per second; *cpu_out gets the round's CPU seconds. */
static double
fan_round(rt_runtime *rt, rt_inbox *inbox, uint64_t round, double *cpu_out)
{
	fan_target = fan_count * round;
	double c0 = cpu_seconds();
	double t0 = now_seconds();
	rt_message *m = rt_message_alloc(rt, 1, 8);
	memcpy(m->payload, &round, 8);
	check(rt_send_external(rt, rt_addr_make(KIND_SOURCE, 0), m), "fan start");
	rt_message_free(rt, wait_inbox(inbox));
	double t1 = now_seconds();
	*cpu_out = cpu_seconds() - c0;
	return (double)fan_count / (t1 - t0);
}

static void
bench_fanout(uint64_t count, bool hint)
{
	fan_hint = hint;
	atomic_store(&fan_received, 0);
	rt_runtime *rt = bench_runtime();
	check(rt_register_kind(rt, KIND_SOURCE, &source_ops), "register");
	check(rt_register_kind(rt, KIND_SINK, &sink_ops), "register");
	rt_inbox *inbox;
	check(rt_inbox_create(rt, NULL, NULL, &inbox), "inbox");
	fan_done = rt_inbox_addr(inbox);
	fan_count = count;
	check(rt_start(rt), "start");
	double first_cpu, warm_cpu;
	double first = fan_round(rt, inbox, 1, &first_cpu);
	double warm = fan_round(rt, inbox, 2, &warm_cpu);
	const char *name = hint ? "fanout_hinted" : "fanout";
	char figure_name[64];
	snprintf(figure_name, sizeof figure_name, "runtime_%s_first_msgs_per_second", name);
	report(figure_name, first, "msgs/s");
	snprintf(figure_name, sizeof figure_name, "runtime_%s_first_cpu_seconds", name);
	report(figure_name, first_cpu, "s");
	snprintf(figure_name, sizeof figure_name, "runtime_%s_warm_msgs_per_second", name);
	report(figure_name, warm, "msgs/s");
	snprintf(figure_name, sizeof figure_name, "runtime_%s_warm_cpu_seconds", name);
	report(figure_name, warm_cpu, "s");
	rt_inbox_destroy(inbox);
	check(rt_stop(rt), "stop");
	rt_destroy(rt);
}

/* ---- skynet --------------------------------------------------------------- */

enum { SKY_START = 1, SKY_RESULT = 2 };

typedef struct sky_state {
	uint64_t sum;
	uint32_t replies;
	uint32_t reserved;
} sky_state;

static uint32_t sky_levels; /* leaves at this level; 6 for 1,000,000 */
static bool sky_exit;       /* an actor passivates after its result */
static rt_addr sky_done;

static uint64_t
sky_id(uint64_t level, uint64_t num)
{
	return (level << 40) | num;
}

static void
sky_on_message(rt_actor *self, void *state, const rt_message *m)
{
	sky_state *s = state;
	uint64_t id = rt_self(self).id;
	uint64_t level = id >> 40;
	uint64_t num = id & ((1ull << 40) - 1);
	uint64_t value;
	if (m->type == SKY_START) {
		if (level == sky_levels) {
			value = num;
		} else {
			for (uint64_t i = 0; i < 10; i++)
				check(rt_send_copy(self, rt_addr_make(KIND_SKY,
					sky_id(level + 1, num * 10 + i)), SKY_START, NULL, 0),
					"sky spawn");
			return;
		}
	} else {
		s->sum += payload_u64(m);
		if (++s->replies < 10)
			return;
		value = s->sum;
	}
	rt_addr parent = level == 0 ? sky_done
				    : rt_addr_make(KIND_SKY, sky_id(level - 1, num / 10));
	check(send_u64(self, parent, SKY_RESULT, value), "sky reply");
	if (sky_exit)
		rt_request_passivate(self);
}

static const rt_actor_ops sky_ops = {
	.name = "skynet",
	.state_size = sizeof(sky_state),
	.on_message = sky_on_message,
};

static void
bench_skynet(uint32_t levels, bool exit_when_done)
{
	sky_exit = exit_when_done;
	rt_runtime *rt = bench_runtime();
	check(rt_register_kind(rt, KIND_SKY, &sky_ops), "register");
	rt_inbox *inbox;
	check(rt_inbox_create(rt, NULL, NULL, &inbox), "inbox");
	sky_done = rt_inbox_addr(inbox);
	sky_levels = levels;
	check(rt_start(rt), "start");
	double c0 = cpu_seconds();
	double t0 = now_seconds();
	rt_message *m = rt_message_alloc(rt, SKY_START, 0);
	check(rt_send_external(rt, rt_addr_make(KIND_SKY, sky_id(0, 0)), m), "sky");
	rt_message *r = wait_inbox(inbox);
	double t1 = now_seconds();
	double c1 = cpu_seconds();
	uint64_t leaves = 1;
	for (uint32_t i = 0; i < levels; i++)
		leaves *= 10;
	uint64_t expect = leaves * (leaves - 1) / 2;
	if (payload_u64(r) != expect) {
		fprintf(stderr, "runtime_bench: skynet sum %llu, expected %llu\n",
			(unsigned long long)payload_u64(r), (unsigned long long)expect);
		exit(1);
	}
	rt_message_free(rt, r);
	report(exit_when_done ? "runtime_skynet_exit_seconds" : "runtime_skynet_seconds",
		t1 - t0, "s");
	report(exit_when_done ? "runtime_skynet_exit_cpu_seconds"
			      : "runtime_skynet_cpu_seconds", c1 - c0, "s");
	rt_inbox_destroy(inbox);
	check(rt_stop(rt), "stop");
	rt_destroy(rt);
}

/* ---- peers ---------------------------------------------------------------- */

/* Our figure's name -> the peers' suffix (after "erlang_" / "go_"). */
static const char *
peer_suffix(const char *ours)
{
	static const char *map[][2] = {
		{"runtime_spawn_seconds", "spawn_seconds"},
		{"runtime_spawn_bytes_per_actor", "spawn_bytes_per_process"},
		{"runtime_ring_hops_per_second", "ring_hops_per_second"},
		{"runtime_fanout_first_msgs_per_second", "fanout_first_msgs_per_second"},
		{"runtime_fanout_warm_msgs_per_second", "fanout_warm_msgs_per_second"},
		{"runtime_fanout_hinted_first_msgs_per_second",
			"fanout_first_msgs_per_second"},
		{"runtime_fanout_hinted_warm_msgs_per_second",
			"fanout_warm_msgs_per_second"},
		{"runtime_skynet_seconds", "skynet_seconds"},
		{"runtime_skynet_exit_seconds", "skynet_seconds"},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i][0], ours) == 0)
			return map[i][1];
	return NULL;
}

static void
compare_with_peers(void)
{
	FILE *check_file = fopen("tests/bench/peers/run.sh", "r");
	if (check_file == NULL) {
		fprintf(stderr, "runtime_bench: no tests/bench/peers/run.sh here; "
			"run from the repository root for peer ratios\n");
		return;
	}
	fclose(check_file);
	FILE *p = popen("sh tests/bench/peers/run.sh all", "r");
	if (p == NULL)
		return;
	char line[256];
	while (fgets(line, sizeof line, p) != NULL) {
		char name[96], unit[32];
		double value;
		if (sscanf(line, "figure %95s %lf %31s", name, &value, unit) != 3)
			continue;
		printf("%s", line);
		const char *peer = NULL;
		const char *suffix = NULL;
		if (strncmp(name, "erlang_", 7) == 0) {
			peer = "erlang";
			suffix = name + 7;
		} else if (strncmp(name, "go_", 3) == 0) {
			peer = "go";
			suffix = name + 3;
		} else {
			continue;
		}
		for (int i = 0; i < figures_count; i++) {
			const char *want = peer_suffix(figures[i].name);
			if (want == NULL || strcmp(want, suffix) != 0 || value <= 0)
				continue;
			printf("ratio %s %s %.4g %s\n", figures[i].name, peer,
				figures[i].value / value, figures[i].unit);
		}
	}
	int status = pclose(p);
	if (status != 0)
		fprintf(stderr, "runtime_bench: peers exited with %d\n", status);
}

int
main(int argc, char **argv)
{
	bool quick = false;
	bool peers = true;
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--no-peers") == 0)
			peers = false;
		else
			only = argv[i];
	}
	if (only == NULL || strcmp(only, "spawn") == 0)
		bench_spawn(quick ? 100000 : 1000000);
	if (only == NULL || strcmp(only, "ring") == 0)
		bench_ring(1000, quick ? 1000000 : 10000000);
	if (only == NULL || strcmp(only, "fanout") == 0)
		bench_fanout(100000, false);
	if (only == NULL || strcmp(only, "fanout_hinted") == 0)
		bench_fanout(100000, true);
	if (only == NULL || strcmp(only, "skynet") == 0)
		bench_skynet(quick ? 5 : 6, false);
	if (only == NULL || strcmp(only, "skynet_exit") == 0)
		bench_skynet(quick ? 5 : 6, true);
	if (peers && only == NULL)
		compare_with_peers();
	return 0;
}
