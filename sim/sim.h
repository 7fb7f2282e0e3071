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

#endif /* FLOCK_SIM_H */
