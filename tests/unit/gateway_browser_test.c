/*
 * gateway_browser_test.c — the bundled web client, end to end, in a real
 * browser.
 *
 * Goal: the page flockd serves at GET / works for people: sign up, follow
 * from a profile, upload a photo, see it arrive live in a follower's feed,
 * like it, and watch the author's notification badge update live, with
 * the page's strict CSP in force.
 *
 * Method: run tests/browser/browser_test.mjs (node + playwright-core
 * driving Debian's /usr/bin/chromium) against the flockd built next to
 * this test binary, in a child process with a deadline, and check its
 * exit status. The script starts and stops its own flockd on a free
 * loopback port with a temporary data directory, prints each step, and
 * saves screenshots under build/browser-artifacts/.
 *
 * Skips only when this build mode has no flockd (e.g. the ASan suite,
 * which builds tests but not programs). A missing node, node_modules or
 * Chromium is a failure that says how to install them.
 */
#include "tests/test.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The script bounds itself at 90 s; this is the backstop past it (and
 * below the test's own timeout) for a script that hangs anyway. */
#define BROWSER_DEADLINE_SECONDS 120
/* Grace between SIGTERM (the script stops flockd and Chromium) and
 * SIGKILL. */
#define BROWSER_TERM_GRACE_SECONDS 5
#define BROWSER_SCRIPT "tests/browser/browser_test.mjs"
#define BROWSER_CHROMIUM_DEFAULT "/usr/bin/chromium"

static bool
file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static bool
is_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		access(path, X_OK) == 0;
}

/* Directory of the running test binary (build/<mode>/), into dir. */
static bool
binary_dir(char *dir, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	return snprintf(dir, size, "%s", exe) < (int)size;
}

/* The repository root: the working directory when it holds the script,
 * else two levels above build/<mode>/. */
static bool
repo_root(const char *bin_dir, char *root, size_t size)
{
	char cwd[PATH_MAX];
	if (getcwd(cwd, sizeof cwd) != NULL) {
		char probe[PATH_MAX + 64];
		snprintf(probe, sizeof probe, "%s/%s", cwd, BROWSER_SCRIPT);
		if (file_exists(probe))
			return snprintf(root, size, "%s", cwd) < (int)size;
	}
	char up[PATH_MAX + 8];
	snprintf(up, sizeof up, "%s/../..", bin_dir);
	char real[PATH_MAX];
	if (realpath(up, real) == NULL)
		return false;
	char probe[PATH_MAX + 64];
	snprintf(probe, sizeof probe, "%s/%s", real, BROWSER_SCRIPT);
	if (!file_exists(probe))
		return false;
	return snprintf(root, size, "%s", real) < (int)size;
}

static bool
node_on_path(void)
{
	const char *path = getenv("PATH");
	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin";
	char buf[PATH_MAX];
	while (*path) {
		size_t n = strcspn(path, ":");
		if (n > 0 && n < sizeof buf - 6) {
			snprintf(buf, sizeof buf, "%.*s/node", (int)n, path);
			if (is_executable(buf))
				return true;
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

/* Waits for pid until deadline; kills it (TERM, then KILL) past it.
 * Returns the wait status, and sets *timed_out. */
static int
wait_with_deadline(pid_t pid, time_t deadline, bool *timed_out)
{
	int status = 0;
	*timed_out = false;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		if (w < 0 && errno != EINTR)
			test_fail(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
		if (time(NULL) >= deadline)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	*timed_out = true;
	kill(pid, SIGTERM);
	time_t grace = time(NULL) + BROWSER_TERM_GRACE_SECONDS;
	while (time(NULL) < grace) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

TEST_WITH_TIMEOUT(gateway_browser_end_to_end, BROWSER_DEADLINE_SECONDS + 20)
{
	char bin_dir[PATH_MAX];
	CHECK_MSG(binary_dir(bin_dir, sizeof bin_dir),
		"cannot tell where the test binary lives (/proc/self/exe)");

	char flockd[PATH_MAX + 16];
	const char *env_flockd = getenv("FLOCKD");
	if (env_flockd != NULL && env_flockd[0] != '\0')
		snprintf(flockd, sizeof flockd, "%s", env_flockd);
	else
		snprintf(flockd, sizeof flockd, "%s/flockd", bin_dir);
	if (!is_executable(flockd)) {
		static char why[PATH_MAX + 128];
		snprintf(why, sizeof why,
			"no flockd binary at %s (this build mode has no programs; "
			"`make MODE=release programs` builds one)", flockd);
		TEST_SKIP(why);
	}

	char root[PATH_MAX];
	CHECK_MSG(repo_root(bin_dir, root, sizeof root),
		"cannot find %s from the working directory or %s/../..",
		BROWSER_SCRIPT, bin_dir);
	CHECK_MSG(node_on_path(),
		"node is not on PATH: the browser test needs Node.js (Debian: "
		"apt-get install nodejs npm)");
	char modules[PATH_MAX + 64];
	snprintf(modules, sizeof modules,
		"%s/tests/browser/node_modules/playwright-core", root);
	CHECK_MSG(file_exists(modules),
		"%s is missing: run `npm ci --prefix tests/browser`", modules);
	const char *chromium = getenv("CHROMIUM");
	if (chromium == NULL || chromium[0] == '\0')
		chromium = BROWSER_CHROMIUM_DEFAULT;
	CHECK_MSG(is_executable(chromium),
		"no Chromium at %s: apt-get install chromium", chromium);

	/* The script's own log lines go to this test's output, which the
	 * runner prints when the test fails. */
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	CHECK_MSG(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (chdir(root) != 0)
			_exit(126);
		execlp("node", "node", BROWSER_SCRIPT, "--flockd", flockd,
			"--chromium", chromium, (char *)NULL);
		fprintf(stderr, "exec node: %s\n", strerror(errno));
		_exit(127);
	}
	bool timed_out = false;
	int status = wait_with_deadline(pid,
		time(NULL) + BROWSER_DEADLINE_SECONDS, &timed_out);
	CHECK_MSG(!timed_out, "the browser test ran past %d s and was killed",
		BROWSER_DEADLINE_SECONDS);
	CHECK_MSG(WIFEXITED(status),
		"the browser test died from signal %d",
		WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	CHECK_MSG(WEXITSTATUS(status) == 0,
		"the browser test failed (exit status %d; its output is above, "
		"screenshots and flockd.log in %s/build/browser-artifacts)",
		WEXITSTATUS(status), root);
}
