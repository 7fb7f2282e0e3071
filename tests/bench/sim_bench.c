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
 *     swarm faults, the seed's own users and rate) finished per wall
 *     minute with two processes on the machine's two cores; goal >= 100.
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

int
main(void)
{
	speed("sim_speed_ratio", 1, false, 0);
	speed("sim_speed_ratio_faults", 2, true,
		SIM_FAULTS_ALL & ~(SIM_FAULT_JOIN | SIM_FAULT_DRAIN));
	smoke();
	return 0;
}
