/*
 * sim_smoke_test.c — the simulator's smoke sweep in `make test`: the
 * flocksim binary next to this test binary runs SIM_SMOKE_SEEDS seeds
 * (default 50) of ten simulated minutes each, swarm faults, every seed
 * checked for determinism on a few; the sweep must pass and reach every
 * sometimes-assertion its faults can reach.
 *
 * Method: fork and exec build/<mode>/flocksim (found through
 * /proc/self/exe) and read its exit status; its output is shown when it
 * fails. Skipped only when the binary is absent (sanitizer builds make
 * the tests alone). The fault classes come from SIM_SMOKE_FAULTS (see
 * sim/README.md for why some may be held out while a bug is open).
 */
#include "tests/test.h"

#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

/* Seeds and simulated time of the sweep: 50 x 10 minutes fits in about a
 * minute of one core. */
#define SMOKE_SEEDS_DEFAULT "50"
#define SMOKE_TIME "10m"
/* Joins and drains stay out until the open handoff bugs are fixed
 * (sim/README.md "Open findings"); make sim-long runs them. */
#define SMOKE_FAULTS_DEFAULT "swarm:-join,-drain"

static bool
flocksim_path(char *out, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return false;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	snprintf(out, size, "%s/flocksim", self);
	return access(out, X_OK) == 0;
}

static int
run(char *const argv[])
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST_WITH_TIMEOUT(sim_smoke_sweep, 600)
{
	char path[PATH_MAX + 16];
	if (!flocksim_path(path, sizeof path))
		TEST_SKIP("no flocksim next to this binary");
	const char *seeds = getenv("SIM_SMOKE_SEEDS");
	const char *faults = getenv("SIM_SMOKE_FAULTS");
	char *argv[] = {path, "--seed", "1", "--seeds",
		(char *)(seeds != NULL ? seeds : SMOKE_SEEDS_DEFAULT),
		"--sim-time", SMOKE_TIME, "--faults",
		(char *)(faults != NULL ? faults : SMOKE_FAULTS_DEFAULT),
		"--require-sometimes", NULL};
	CHECK_EQ(run(argv), 0);
}

TEST_WITH_TIMEOUT(sim_smoke_determinism, 300)
{
	char path[PATH_MAX + 16];
	if (!flocksim_path(path, sizeof path))
		TEST_SKIP("no flocksim next to this binary");
	char *argv[] = {path, "--seed", "1000", "--seeds", "4", "--sim-time",
		"5m", "--check-determinism", NULL};
	/* a seed may fail an invariant (the sweep above judges those); two
	 * runs that differ (exit 3) are what this test is about */
	int status = run(argv);
	CHECK(status == 0 || status == 1);
	char *again[] = {path, "--seed", "1000", "--seeds", "4", "--sim-time",
		"5m", "--check-determinism", "--faults", "none", NULL};
	CHECK_EQ(run(again), 0);
}
