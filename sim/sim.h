/*
 * sim.h — flocksim, the deterministic simulator: the one public header of
 * sim/ (prefix sim_).
 *
 * Role: run N flockd-like nodes (runtime + persistence + domain + cluster)
 * in one process on one thread, drive them with a seeded workload of
 * clients, inject faults (crashes, torn journal tails, disk errors,
 * network drops, duplicates, reordering, delays, partitions, clock skew,
 * joins and drains), and check the system's invariants continuously and
 * at quiescence. Everything random is drawn from one seed, so a failing
 * run replays exactly from its seed.
 *
 * Two parts:
 *   - sim_sometimes(name): a counter other modules may bump where a rare
 *     state is reached (a duplicate deduplicated, a torn tail cut). It is
 *     the one thing of sim/ that lower layers may include: this header
 *     depends on nothing but <stdint.h>, and the counter costs one
 *     relaxed atomic add. Sweeps report how often each site was reached
 *     and fail when one never was.
 *   - sim_run: one simulated run of a seed, and the sweep helpers the CLI
 *     (flocksim.c), the tests and the benchmark share.
 *
 * What it deliberately does not do: simulate the gateway (clients call
 * actors/api.h directly), or touch wall-clock time in any decision.
 *
 * Errors: sim_run returns 0 when the run executed (passed or failed: see
 * sim_result), or a negative SIM_E code when it could not run.
 */
#ifndef FLOCK_SIM_H
#define FLOCK_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sometimes-assertions -------------------------------------------- */

/* One call site of sim_sometimes. Every site is listed in the linker
 * section below whether or not it ever ran, so a sweep can name the ones
 * that were never reached. */
typedef struct sim_sometimes_site {
	const char *name;
	const char *file;
	int line;
	uint64_t hits; /* bumped with relaxed atomics: any thread */
} sim_sometimes_site;

#define SIM_SOMETIMES_SECTION "flock_sometimes"

/* Counts that the rare state `name` (a string literal) was reached. */
#define sim_sometimes(name)                                                  \
	do {                                                                 \
		static sim_sometimes_site sim__site_ = {(name), __FILE__,    \
			__LINE__, 0};                                        \
		static sim_sometimes_site *sim__site_entry_                 \
			__attribute__((section(SIM_SOMETIMES_SECTION), used, \
				aligned(sizeof(void *)))) = &sim__site_;     \
		(void)sim__site_entry_;                                      \
		__atomic_fetch_add(&sim__site_.hits, 1, __ATOMIC_RELAXED);   \
	} while (0)

/* Calls cb for every site linked into this program (sites of one name
 * may repeat: one per call site). */
typedef void (*sim_sometimes_visit)(void *arg, const sim_sometimes_site *s);
void sim_sometimes_each(sim_sometimes_visit cb, void *arg);
/* Sets every site's hits to 0. */
void sim_sometimes_reset(void);

/* ---- runs -------------------------------------------------------------- */

enum {
	SIM_OK = 0,
	SIM_EINVAL = -1, /* bad options */
	SIM_EIO = -2,    /* the run directory could not be made */
	SIM_ESETUP = -3, /* the world could not be built (see failure) */
};

/* Fault classes. Swarm mode draws a subset of the allowed ones per seed
 * and how hard each hits; a list runs exactly those (intensity drawn). */
enum {
	SIM_FAULT_CRASH = 1u << 0,     /* node crash, restart from disk */
	SIM_FAULT_TORN = 1u << 1,      /* crashes keep a torn journal tail */
	SIM_FAULT_DROP = 1u << 2,      /* frames lost */
	SIM_FAULT_DUPLICATE = 1u << 3, /* frames delivered twice */
	SIM_FAULT_REORDER = 1u << 4,   /* frames overtaken */
	SIM_FAULT_DELAY = 1u << 5,     /* long, jittery latency */
	SIM_FAULT_PARTITION = 1u << 6, /* symmetric, one-way, isolate one */
	SIM_FAULT_DISK = 1u << 7,      /* write and fdatasync errors */
	SIM_FAULT_SKEW = 1u << 8,      /* wall clocks apart */
	SIM_FAULT_JOIN = 1u << 9,      /* a node joins, partitions move */
	SIM_FAULT_DRAIN = 1u << 10,    /* a node drains and leaves */
};
#define SIM_FAULTS_ALL 0x7ffu
#define SIM_FAULT_NAMES_COUNT 11u
/* "crash", "torn", ... by bit index. */
extern const char *const sim_fault_names[SIM_FAULT_NAMES_COUNT];

typedef enum sim_mode {
	SIM_MODE_SAFETY = 0,   /* invariants; unavailability is no failure */
	SIM_MODE_LIVENESS = 1, /* also: converge within a bound after healing */
} sim_mode;

typedef struct sim_options {
	uint64_t seed;
	uint32_t nodes;          /* initial nodes; 0: 3 */
	uint32_t users;          /* 0: drawn from the seed */
	const char *graph;       /* edge file; NULL: seeded power law */
	uint64_t sim_time_ms;    /* workload and faults; 0: one hour */
	bool swarm;              /* faults drawn per seed from `faults` */
	uint32_t faults;         /* SIM_FAULT_* allowed (swarm) or exact */
	sim_mode mode;
	uint32_t ops_per_minute; /* 0: drawn from the seed */
	bool verbose;            /* progress lines on stderr */
	bool check_recovery;     /* invariant 7: restart all twice at the end */
	/* After a journal write or fdatasync fails: false (the default) the
	 * node is restarted, fail-stop, as its supervisor would; true it
	 * probes and carries on, as persistence itself does (its actors keep
	 * the failed writes in memory until a restart: see the README). */
	bool disk_probe;
	/* Every hashed event, one line each, to this file (NULL: none):
	 * diff two traces to find where runs part. */
	const char *trace_path;
	/* With verbose: every answer to user index watch_user - 1 is logged
	 * (0: none). */
	uint32_t watch_user;
	const char *tmp_dir;     /* NULL: /dev/shm if present, else TMPDIR */
} sim_options;

/* Swarm over every fault class, 3 nodes, one hour, safety mode. */
void sim_options_default(sim_options *o);

/* Parses "swarm" (every class may be drawn), "swarm:a,b" (only those),
 * "swarm:-a,-b" (all but those), "none", or a comma list of
 * sim_fault_names (exactly those). */
int sim_faults_parse(const char *text, bool *swarm_out, uint32_t *faults_out);

typedef struct sim_result {
	bool passed;
	uint64_t trace_hash;     /* every event of the run */
	uint64_t sim_ms;         /* simulated time covered */
	uint64_t ops_issued;
	uint64_t ops_acked;
	uint64_t crashes;
	uint64_t partitions;
	uint64_t disk_faults;
	uint64_t joins;
	uint64_t drains;
	uint64_t frames;
	uint64_t turns;          /* actor turns, all nodes */
	uint64_t streams_checked; /* live streams that passed the probe */
	uint32_t faults_enabled; /* SIM_FAULT_* the seed ran */
	bool stories;            /* the domain has stories linked */
	char knobs[1024];        /* the seed and every drawn knob, one line */
	char failure[1024];      /* the first violation, when !passed */
} sim_result;

/* Runs one seed. Returns 0 (see out->passed) or a SIM_E code. Single
 * threaded; uses a fresh directory under tmp_dir, removed after. */
int sim_run(const sim_options *o, sim_result *out);

/* The flocksim command line that replays o's seed. */
void sim_command_line(const sim_options *o, char *out, size_t size);

#endif /* FLOCK_SIM_H */
