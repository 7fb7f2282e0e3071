/*
 * sim_bench.c — how fast the simulator runs.
 *
 * Prints `figure <name> <value> <unit>`:
 *   - sim_speed_ratio: simulated seconds per wall second for 3 nodes and
 *     2,000 users under the daily mix (33 ops per user per day, about 46
 *     ops a simulated minute), no faults, over two simulated hours (setup
 *     and the checks at quiescence included); goal >= 1,000;
 *   - sim_speed_ratio_cpu: the same per second of this process's CPU
 *     time (the wall figure also counts time other programs took from a
 *     shared machine);
 *   - sim_speed_ratio_faults, _faults_cpu: the same run with swarm
 *     faults but joins and drains (seed 2's draw: crashes, restarts and
 *     their recoveries cost the most);
 *   - sim_smoke_seeds_per_minute: smoke seeds (10 simulated minutes,
 *     swarm faults but joins and drains, the seed's own users and rate)
 *     finished per wall minute with two processes on the machine's two
 *     cores; goal >= 100;
 *   - sim_smoke_sweep_seeds_per_minute: the sweep `make test` runs
 *     (tests/unit/sim_smoke_test.c: seeds 1 to 50, 10 simulated minutes,
 *     swarm:crash,torn,drop,duplicate,reorder,delay,partition,skew)
 *     split over two processes, per wall minute; goal >= 100; _cpu:
 *     per minute of two cores of the processes' own CPU time (what two
 *     free cores would do).
 * Seeds are fixed, so the work is the same every time; only the machine
 * varies. No figure is asserted.
 */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The speed run: 3 nodes, 2,000 users, two simulated hours. */
#define SPEED_USERS 2000u
#define SPEED_SIM_MS (2u * 3600u * 1000u)
/* 2,000 users x 33 ops a day / 1,440 minutes. */
#define SPEED_OPS_PER_MINUTE 46u
/* Smoke seeds per process, two processes. */
#define SMOKE_SEEDS_PER_PROCESS 15u
#define SMOKE_SIM_MS (10u * 60u * 1000u)
/* The sweep of `make test` (sim_smoke_test.c and the Makefile's
 * SIM_SMOKE_SEEDS and SIM_SMOKE_FAULTS). */
#define SWEEP_SEEDS 50u
#define SWEEP_FAULTS \
	"swarm:crash,torn,drop,duplicate,reorder,delay,partition,skew"

static double
wall_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void
speed(const char *name, uint64_t seed, bool swarm, uint32_t faults)
{
	sim_options o;
	sim_options_default(&o);
	o.seed = seed;
	o.users = SPEED_USERS;
	o.sim_time_ms = SPEED_SIM_MS;
	o.ops_per_minute = SPEED_OPS_PER_MINUTE;
	o.swarm = swarm;
	o.faults = faults;
	sim_result r;
	double wall = wall_seconds(), cpu = cpu_seconds();
	if (sim_run(&o, &r) != 0) {
		fprintf(stderr, "sim_bench: the speed run could not run\n");
		exit(1);
	}
	wall = wall_seconds() - wall;
	cpu = cpu_seconds() - cpu;
	double simulated = (double)r.sim_ms / 1000.0;
	printf("# speed run: %s\n", r.knobs);
	printf("# %s: %.0f simulated s, %" PRIu64 " turns, %" PRIu64
		" frames%s%s\n", r.passed ? "passed" : "failed", simulated,
		r.turns, r.frames, r.passed ? "" : ": ", r.failure);
	printf("figure %s %.0f simulated-s/wall-s\n", name, simulated / wall);
	printf("figure %s_cpu %.0f simulated-s/cpu-s\n", name, simulated / cpu);
	fflush(stdout);
}

static void
smoke_seeds(uint64_t first, uint32_t count)
{
	sim_options o;
	sim_options_default(&o);
	o.sim_time_ms = SMOKE_SIM_MS;
	o.faults = SIM_FAULTS_ALL & ~(SIM_FAULT_JOIN | SIM_FAULT_DRAIN);
	for (uint32_t i = 0; i < count; i++) {
		o.seed = first + i;
		sim_result r;
		(void)sim_run(&o, &r);
	}
}

static void
smoke(void)
{
	double wall = wall_seconds();
	pid_t children[2];
	for (int k = 0; k < 2; k++) {
		children[k] = fork();
		if (children[k] < 0) {
			perror("fork");
			exit(1);
		}
		if (children[k] == 0) {
			smoke_seeds(1 + (uint64_t)k * SMOKE_SEEDS_PER_PROCESS,
				SMOKE_SEEDS_PER_PROCESS);
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++)
		waitpid(children[k], NULL, 0);
	wall = wall_seconds() - wall;
	printf("figure sim_smoke_seeds_per_minute %.0f seeds/min\n",
		2.0 * SMOKE_SEEDS_PER_PROCESS * 60.0 / wall);
}

static double
children_cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Runs the sweep's seeds k+1, k+3, ...; exits with how many failed. */
static void
sweep_half(int k)
{
	sim_options o;
	sim_options_default(&o);
	o.sim_time_ms = SMOKE_SIM_MS;
	o.check_recovery = true;
	if (sim_faults_parse(SWEEP_FAULTS, &o.swarm, &o.faults) != 0)
		_exit(255);
	unsigned failed = 0;
	for (uint32_t seed = 1u + (uint32_t)k; seed <= SWEEP_SEEDS; seed += 2) {
		o.seed = seed;
		sim_result r;
		if (sim_run(&o, &r) != 0 || !r.passed)
			failed++;
	}
	_exit((int)(failed < 250 ? failed : 250));
}

static void
smoke_sweep(void)
{
	double wall = wall_seconds(), cpu = children_cpu_seconds();
	pid_t children[2];
	for (int k = 0; k < 2; k++) {
		children[k] = fork();
		if (children[k] < 0) {
			perror("fork");
			exit(1);
		}
		if (children[k] == 0)
			sweep_half(k);
	}
	unsigned failed = 0;
	for (int k = 0; k < 2; k++) {
		int status = 0;
		waitpid(children[k], &status, 0);
		failed += WIFEXITED(status) ? (unsigned)WEXITSTATUS(status)
					    : SWEEP_SEEDS;
	}
	wall = wall_seconds() - wall;
	cpu = children_cpu_seconds() - cpu;
	printf("# smoke sweep: %u seeds, %u failed, %.1f s wall, %.1f s CPU\n",
		SWEEP_SEEDS, failed, wall, cpu);
	printf("figure sim_smoke_sweep_seeds_per_minute %.0f seeds/min\n",
		SWEEP_SEEDS * 60.0 / wall);
	printf("figure sim_smoke_sweep_seeds_per_minute_cpu %.0f seeds/min\n",
		SWEEP_SEEDS * 60.0 / (cpu / 2.0));
	fflush(stdout);
}

int
main(void)
{
	speed("sim_speed_ratio", 1, false, 0);
	speed("sim_speed_ratio_faults", 2, true,
		SIM_FAULTS_ALL & ~(SIM_FAULT_JOIN | SIM_FAULT_DRAIN));
	smoke();
	smoke_sweep();
	return 0;
}
