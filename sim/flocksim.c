/*
 * sim/flocksim.c — the simulator's command line.
 *
 *   flocksim --seed S [--seeds K] [--nodes N] [--users U] [--graph FILE]
 *            [--sim-time 24h] [--faults swarm|none|LIST]
 *            [--check-determinism] [--mode safety|liveness]
 *            [--ops-per-minute N] [--no-recovery-check]
 *            [--require-sometimes] [--expect-failure]
 *            [--disk-policy restart|probe] [--verbose]
 *
 * Prints, per seed, the seed and every knob it drew (one line), then
 * "ok ..." or "FAIL ..." with the first violation and the one command
 * line that replays it. With --seeds K it runs seeds S..S+K-1, reports
 * how often each sometimes-assertion was reached, and ends with
 * "N passed, N failed". Exit status 0 only when everything passed.
 * --check-determinism runs every seed twice and fails a seed whose two
 * runs' event hashes differ. --expect-failure (the bug zoo) stops at the
 * first failing seed, prints "caught by seed S", and succeeds only then.
 * Exit status: 0 all passed, 1 some failed, 2 bad arguments, 3 two runs
 * of a seed differed.
 *
 * Wall-clock time is read here only to report speed; no decision of a
 * run depends on it.
 */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Distinct sometimes names a sweep tracks. */
#define SOMETIMES_NAMES_MAX 256u

static void
usage(void)
{
	fprintf(stderr,
		"usage: flocksim --seed S [--seeds K] [--nodes N] [--users U]\n"
		"                [--graph FILE] [--sim-time 24h|30m|90s]\n"
		"                [--faults swarm|none|crash,torn,drop,duplicate,"
		"reorder,delay,partition,disk,skew,join,drain]\n"
		"                [--check-determinism] [--mode safety|liveness]\n"
		"                [--ops-per-minute N] [--no-recovery-check]\n"
		"                [--require-sometimes] [--expect-failure]\n"
		"                [--disk-policy restart|probe] [--verbose]\n");
}

static int
parse_u64(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(text, &end, 10);
	if (end == text || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int
parse_duration(const char *text, uint64_t *ms_out)
{
	char *end;
	unsigned long long v = strtoull(text, &end, 10);
	if (end == text)
		return -1;
	uint64_t unit;
	if (strcmp(end, "ms") == 0)
		unit = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		unit = 1000;
	else if (strcmp(end, "m") == 0)
		unit = 60000;
	else if (strcmp(end, "h") == 0)
		unit = 3600000;
	else if (strcmp(end, "d") == 0)
		unit = 86400000;
	else
		return -1;
	*ms_out = v * unit;
	return *ms_out > 0 ? 0 : -1;
}

static double
wall_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the sometimes report --------------------------------------------- */

typedef struct sometimes_row {
	const char *name;
	uint64_t seeds; /* seeds that reached it */
	uint64_t hits;
} sometimes_row;

typedef struct sometimes_table {
	sometimes_row rows[SOMETIMES_NAMES_MAX];
	uint32_t count;
	uint32_t faults_seen;  /* union over the sweep's seeds */
	bool stories;
	bool disk_probe;       /* --disk-policy probe */
} sometimes_table;

static sometimes_row *
row_of(sometimes_table *t, const char *name)
{
	for (uint32_t i = 0; i < t->count; i++)
		if (strcmp(t->rows[i].name, name) == 0)
			return &t->rows[i];
	if (t->count == SOMETIMES_NAMES_MAX)
		return NULL;
	sometimes_row *r = &t->rows[t->count++];
	memset(r, 0, sizeof *r);
	r->name = name;
	return r;
}

typedef struct seed_pass {
	sometimes_table *t;
	const char *seen[SOMETIMES_NAMES_MAX];
	uint32_t seen_count;
} seed_pass;

static void
collect_site(void *arg, const sim_sometimes_site *s)
{
	seed_pass *p = arg;
	sometimes_row *r = row_of(p->t, s->name);
	if (r == NULL || s->hits == 0)
		return;
	r->hits += s->hits;
	for (uint32_t i = 0; i < p->seen_count; i++)
		if (strcmp(p->seen[i], s->name) == 0)
			return; /* several sites of one name: one seed */
	if (p->seen_count < SOMETIMES_NAMES_MAX)
		p->seen[p->seen_count++] = s->name;
	r->seeds++;
}

static void
sometimes_after_seed(sometimes_table *t, const sim_result *r)
{
	seed_pass p = {.t = t};
	sim_sometimes_each(collect_site, &p);
	sim_sometimes_reset();
	t->faults_seen |= r->faults_enabled;
	t->stories |= r->stories;
}

/* What a site needs before a sweep may demand it was reached: fault
 * classes (any one of them) and the stories feature. Names not listed
 * need nothing. */
static const struct {
	const char *name;
	uint32_t faults;
	bool stories;
	int policy; /* 0: any disk policy; 1: only probe; 2: only restart */
} requirements[] = {
	{"persistence: torn journal tail truncated", SIM_FAULT_TORN, false, 0},
	{"persistence: failed journal recovered by a probe", SIM_FAULT_DISK,
		false, 1},
	{"sim: node restarted after its journal failed", SIM_FAULT_DISK,
		false, 2},
	{"actors: re-sent timeline push deduplicated", SIM_FAULT_CRASH, false, 0},
	{"sim: a call was lost with its node", SIM_FAULT_CRASH, false, 0},
	{"sim: node crashed during a handoff",
		SIM_FAULT_JOIN | SIM_FAULT_DRAIN, false, 0},
	{"sim: frame dropped by the network", SIM_FAULT_DROP, false, 0},
	{"sim: a live stream reopened from its position", SIM_FAULT_CRASH,
		false, 0},
	{"sim: a live stream resynced", SIM_FAULT_CRASH, false, 0},
	{"sim: frame duplicated by the network", SIM_FAULT_DUPLICATE, false, 0},
	{"sim: frame overtaken by later ones", SIM_FAULT_REORDER, false, 0},
	{"sim: story expiring during a partition", SIM_FAULT_PARTITION, true, 0},
	{"cluster: message held during a handoff",
		SIM_FAULT_JOIN | SIM_FAULT_DRAIN, false, 0},
	{"cluster: a handoff resumed after a crash",
		SIM_FAULT_JOIN | SIM_FAULT_DRAIN, false, 0},
	/* a coordinator dies between its proposal and the commit, and the
	 * next one holds the proposal: only joins and drains change maps */
	{"cluster: a new leader proposes an entry again",
		SIM_FAULT_JOIN | SIM_FAULT_DRAIN, false, 0},
};

static bool
required(const sometimes_table *t, const char *name)
{
	for (size_t i = 0; i < sizeof requirements / sizeof requirements[0];
		i++) {
		if (strcmp(requirements[i].name, name) != 0)
			continue;
		if ((requirements[i].faults & t->faults_seen) == 0 &&
			requirements[i].faults != 0)
			return false;
		if ((requirements[i].policy == 1 && !t->disk_probe) ||
			(requirements[i].policy == 2 && t->disk_probe))
			return false;
		return !requirements[i].stories || t->stories;
	}
	return true;
}

/* Prints the table; returns how many required names were never reached. */
static uint32_t
sometimes_report(const sometimes_table *t, uint64_t seeds)
{
	uint32_t missing = 0;
	printf("sometimes (seeds reaching it, of %" PRIu64 "):\n", seeds);
	for (uint32_t i = 0; i < t->count; i++) {
		const sometimes_row *r = &t->rows[i];
		bool need = required(t, r->name);
		printf("  %6" PRIu64 " seeds %9" PRIu64 " hits  %s%s\n", r->seeds,
			r->hits, r->name,
			r->seeds > 0 ? "" : need ? "  NEVER REACHED"
						 : "  (not exercised here)");
		if (r->seeds == 0 && need)
			missing++;
	}
	return missing;
}

/* ---- running seeds ------------------------------------------------------ */

/* Exit status when two runs of a seed differed (beats failed seeds). */
#define EXIT_NONDETERMINISTIC 3

static bool nondeterministic;

static bool
run_seed(const sim_options *o, bool check_determinism, sometimes_table *t,
	double *sim_seconds)
{
	sim_result r;
	double started = wall_seconds();
	int rc = sim_run(o, &r);
	double wall = wall_seconds() - started;
	printf("%s\n", r.knobs);
	if (t != NULL)
		sometimes_after_seed(t, &r);
	bool ok = rc == 0 && r.passed;
	char failure[1200];
	snprintf(failure, sizeof failure, "%s", rc != 0 && r.failure[0] == '\0'
		? "the simulation could not run" : r.failure);
	if (check_determinism) {
		sim_result again;
		int rc2 = sim_run(o, &again);
		sim_sometimes_reset();
		if (rc2 != rc || again.trace_hash != r.trace_hash ||
			again.passed != r.passed) {
			ok = false;
			r.passed = false;
			nondeterministic = true;
			snprintf(failure, sizeof failure, "determinism: two runs "
				"of the seed differ: hash %016" PRIx64 " vs %016"
				PRIx64 ", %s vs %s", r.trace_hash,
				again.trace_hash, r.passed ? "pass" : "fail",
				again.passed ? "pass" : "fail");
		}
	}
	*sim_seconds += (double)r.sim_ms / 1000.0;
	if (ok) {
		printf("ok seed=%" PRIu64 " hash=%016" PRIx64 " sim_s=%" PRIu64
			" wall_s=%.2f speed=%.0fx ops=%" PRIu64 "/%" PRIu64
			" crashes=%" PRIu64 " partitions=%" PRIu64
			" disk_faults=%" PRIu64 " joins=%" PRIu64 " drains=%"
			PRIu64 " frames=%" PRIu64 " turns=%" PRIu64
			" streams=%" PRIu64 "\n",
			o->seed, r.trace_hash, r.sim_ms / 1000, wall,
			wall > 0 ? (double)r.sim_ms / 1000.0 / wall : 0.0,
			r.ops_acked, r.ops_issued, r.crashes, r.partitions,
			r.disk_faults, r.joins, r.drains, r.frames, r.turns,
			r.streams_checked);
	} else {
		char line[1024];
		sim_command_line(o, line, sizeof line);
		printf("FAIL seed=%" PRIu64 " hash=%016" PRIx64 ": %s\n",
			o->seed, r.trace_hash, failure);
		printf("reproduce: %s\n", line);
	}
	fflush(stdout);
	return ok;
}

int
main(int argc, char **argv)
{
	sim_options o;
	sim_options_default(&o);
	uint64_t seeds = 1;
	bool check_determinism = false;
	bool require_sometimes = false;
	bool expect_failure = false;
	bool seed_given = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x;
		if (strcmp(a, "--check-determinism") == 0) {
			check_determinism = true;
			continue;
		}
		if (strcmp(a, "--require-sometimes") == 0) {
			require_sometimes = true;
			continue;
		}
		if (strcmp(a, "--expect-failure") == 0) {
			expect_failure = true;
			continue;
		}
		if (strcmp(a, "--verbose") == 0) {
			o.verbose = true;
			continue;
		}
		if (strcmp(a, "--no-recovery-check") == 0) {
			o.check_recovery = false;
			continue;
		}
		if (v == NULL) {
			usage();
			return 2;
		}
		i++;
		int bad = 0;
		if (strcmp(a, "--seed") == 0) {
			bad = parse_u64(v, &o.seed);
			seed_given = true;
		} else if (strcmp(a, "--seeds") == 0) {
			bad = parse_u64(v, &seeds) || seeds == 0;
		} else if (strcmp(a, "--nodes") == 0) {
			bad = parse_u64(v, &x) || x == 0 || x > 6;
			o.nodes = (uint32_t)x;
		} else if (strcmp(a, "--users") == 0) {
			bad = parse_u64(v, &x) || x < 2 || x > 100000;
			o.users = (uint32_t)x;
		} else if (strcmp(a, "--ops-per-minute") == 0) {
			bad = parse_u64(v, &x) || x == 0 || x > 600000;
			o.ops_per_minute = (uint32_t)x;
		} else if (strcmp(a, "--watch-user") == 0) {
			bad = parse_u64(v, &x) || x >= 100000;
			o.watch_user = (uint32_t)x + 1;
			o.verbose = true;
		} else if (strcmp(a, "--trace") == 0) {
			o.trace_path = v;
		} else if (strcmp(a, "--graph") == 0) {
			o.graph = v;
		} else if (strcmp(a, "--sim-time") == 0) {
			bad = parse_duration(v, &o.sim_time_ms);
		} else if (strcmp(a, "--faults") == 0) {
			bad = sim_faults_parse(v, &o.swarm, &o.faults) != 0;
		} else if (strcmp(a, "--disk-policy") == 0) {
			if (strcmp(v, "restart") == 0)
				o.disk_probe = false;
			else if (strcmp(v, "probe") == 0)
				o.disk_probe = true;
			else
				bad = 1;
		} else if (strcmp(a, "--mode") == 0) {
			if (strcmp(v, "safety") == 0)
				o.mode = SIM_MODE_SAFETY;
			else if (strcmp(v, "liveness") == 0)
				o.mode = SIM_MODE_LIVENESS;
			else
				bad = 1;
		} else {
			bad = 1;
		}
		if (bad) {
			fprintf(stderr, "flocksim: bad %s %s\n", a, v);
			usage();
			return 2;
		}
	}
	if (!seed_given) {
		usage();
		return 2;
	}
	sometimes_table *table = calloc(1, sizeof *table);
	if (table == NULL)
		return 1;
	table->disk_probe = o.disk_probe;
	sim_sometimes_reset();
	uint64_t passed = 0, failed = 0;
	double started = wall_seconds(), sim_seconds = 0.0;
	uint64_t first = o.seed;
	for (uint64_t k = 0; k < seeds; k++) {
		o.seed = first + k;
		if (run_seed(&o, check_determinism, table, &sim_seconds)) {
			passed++;
			continue;
		}
		failed++;
		if (expect_failure) {
			printf("caught by seed %" PRIu64 " after %" PRIu64
				" seeds\n", o.seed, k + 1);
			break;
		}
	}
	double wall = wall_seconds() - started;
	int status = failed == 0 ? 0 : 1;
	if (nondeterministic)
		status = EXIT_NONDETERMINISTIC;
	if (expect_failure) {
		if (failed == 0)
			printf("not caught in %" PRIu64 " seeds\n", seeds);
		status = failed > 0 ? 0 : 1;
	}
	if ((seeds > 1 && !expect_failure) || require_sometimes) {
		uint32_t missing = sometimes_report(table, seeds);
		if (require_sometimes && missing > 0) {
			printf("FAIL sometimes: %u rare states never reached\n",
				missing);
			status = 1;
		}
		printf("speed: %.0f simulated s per wall s, %.1f seeds per "
			"minute\n", wall > 0 ? sim_seconds / wall : 0.0,
			wall > 0 ? (double)seeds * 60.0 / wall : 0.0);
	}
	printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
	free(table);
	return status;
}
