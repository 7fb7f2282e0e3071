/*
 * gateway_integration_test.c — the integration scripts, run by the test
 * registry.
 *
 * Goal: `make test` drives a real flockd over loopback with curl-free
 * HTTP and a real WebSocket client (Debian's python3-websockets), for the
 * full story, bad input, limits, media, a slow reader and restarts.
 * Method: each test forks /usr/bin/python3 tests/integration/<name>.py
 * --flockd <the flockd next to this test binary>, in the test's own temp
 * directory, and checks its exit status. Each script starts its own
 * flockd on port 0 and stops it; the runner's timeout bounds each.
 */
#include "tests/test.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Finds build/<mode>/flockd next to build/<mode>/flock-tests and the
 * source tree's tests/integration (two levels above the binary). */
static void
locate(char *flockd, size_t flockd_size, char *script_dir, size_t dir_size)
{
	char exe[PATH_MAX / 2];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	CHECK(n > 0);
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	CHECK(slash != NULL);
	*slash = '\0';
	snprintf(flockd, flockd_size, "%s/flockd", exe);
	snprintf(script_dir, dir_size, "%s/../../tests/integration", exe);
	struct stat st;
	if (stat(script_dir, &st) != 0)
		snprintf(script_dir, dir_size, "tests/integration");
}

static void
run_script(const char *name)
{
	char flockd[PATH_MAX], dir[PATH_MAX], script[PATH_MAX + 64];
	locate(flockd, sizeof flockd, dir, sizeof dir);
	if (access(flockd, X_OK) != 0)
		TEST_SKIP("flockd is not built next to the test binary");
	if (access("/usr/bin/python3", X_OK) != 0)
		TEST_SKIP("/usr/bin/python3 is missing");
	snprintf(script, sizeof script, "%s/%s.py", dir, name);
	CHECK_MSG(access(script, R_OK) == 0, "no script %s", script);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* Debian's interpreter: python3-websockets is installed there. */
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		setenv("TMPDIR", test_tmpdir(), 1);
		execl("/usr/bin/python3", "python3", script, "--flockd", flockd,
			(char *)NULL);
		_exit(127);
	}
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"%s.py failed (status %d)", name, status);
}

TEST_WITH_TIMEOUT(gateway_integration_story, 180)
{
	run_script("story");
}

TEST_WITH_TIMEOUT(gateway_integration_bad_input, 120)
{
	run_script("bad_input");
}

TEST_WITH_TIMEOUT(gateway_integration_limits, 120)
{
	run_script("limits");
}

TEST_WITH_TIMEOUT(gateway_integration_media, 120)
{
	run_script("media");
}

TEST_WITH_TIMEOUT(gateway_integration_slow_reader, 180)
{
	run_script("slow_reader");
}

TEST_WITH_TIMEOUT(gateway_integration_stream_burst, 120)
{
	run_script("stream_burst");
}

TEST_WITH_TIMEOUT(gateway_integration_restart, 180)
{
	run_script("restart");
}
