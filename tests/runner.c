/*
 * runner.c — runs the registered tests, each in a child process.
 *
 * Usage: flock-tests [-j JOBS] [--list] [PREFIX...]
 * A test runs when its name starts with one of the PREFIXes (all when
 * none is given). Each child gets its own process group, a fresh temp
 * directory and a deadline; its output is kept in a file and printed
 * only when it fails, so parallel tests do not interleave. The last line
 * is "N passed, N failed" (", N skipped" when any were); the exit code is
 * non-zero when any failed.
 */
#include "tests/test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* More than the suite will ever hold; a fixed table keeps registration
 * (which runs in constructors, before main) free of allocation. */
#define TESTS_MAX 4096
/* Exit code a skipped test's child uses (automake's convention). */
#define TEST_EXIT_SKIP 77
#define TEST_JOBS_MAX 64

typedef struct test_entry {
	const char *name;
	test_function fn;
	unsigned timeout_s;
} test_entry;

static test_entry tests[TESTS_MAX];
static size_t tests_count;

void
test_register(const char *name, test_function fn, unsigned timeout_s)
{
	if (tests_count == TESTS_MAX) {
		fprintf(stderr, "runner: more than %d tests\n", TESTS_MAX);
		abort();
	}
	tests[tests_count].name = name;
	tests[tests_count].fn = fn;
	tests[tests_count].timeout_s = timeout_s;
	tests_count++;
}

void
test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(1);
}

void
test_skip(const char *why)
{
	fprintf(stderr, "skip: %s\n", why);
	fflush(stderr);
	_exit(TEST_EXIT_SKIP);
}

const char *
test_tmpdir(void)
{
	const char *d = getenv("FLOCK_TEST_TMPDIR");
	if (d == NULL)
		test_fail(__FILE__, __LINE__, "no FLOCK_TEST_TMPDIR");
	return d;
}

bool
test_sanitized(void)
{
	const char *s = getenv("FLOCK_SANITIZED");
	return s != NULL && s[0] == '1';
}

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
remove_tree(const char *path)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	return system(cmd);
}

typedef struct running {
	pid_t pid;
	size_t index;
	uint64_t started_ms;
	char dir[256];
	char log[300];
} running;

static bool
selected(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return true;
	for (int i = first; i < argc; i++)
		if (strncmp(name, argv[i], strlen(argv[i])) == 0)
			return true;
	return false;
}

static void
start(running *r, size_t index)
{
	const test_entry *t = &tests[index];
	char dir[sizeof r->dir] = "/tmp/flock-test-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	memcpy(r->dir, dir, sizeof dir);
	snprintf(r->log, sizeof r->log, "%s.log", dir);
	r->index = index;
	r->started_ms = now_ms();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		setpgid(0, 0);
		int fd = open(r->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setenv("FLOCK_TEST_TMPDIR", r->dir, 1);
		setenv("FLOCK_TEST_NAME", t->name, 1);
		alarm(t->timeout_s);
		t->fn();
		fflush(stdout);
		fflush(stderr);
		_exit(0);
	}
	setpgid(pid, pid);
	r->pid = pid;
}

static void
print_log(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	char line[1024];
	int lines = 0;
	while (fgets(line, sizeof line, f) != NULL && lines < 200) {
		printf("    %s", line);
		lines++;
	}
	fclose(f);
}

static char *
read_first_line(const char *path, char *buf, size_t size)
{
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return buf;
	char line[512];
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "skip: ", 6) == 0) {
			size_t n = strcspn(line + 6, "\n");
			if (n >= size)
				n = size - 1;
			memcpy(buf, line + 6, n);
			buf[n] = '\0';
			break;
		}
	}
	fclose(f);
	return buf;
}

int
main(int argc, char **argv)
{
	int jobs = 1;
	int first = 1;
	bool list = false;
	while (first < argc && argv[first][0] == '-') {
		if (strcmp(argv[first], "-j") == 0 && first + 1 < argc) {
			jobs = atoi(argv[first + 1]);
			first += 2;
		} else if (strcmp(argv[first], "--list") == 0) {
			list = true;
			first++;
		} else {
			fprintf(stderr, "usage: %s [-j JOBS] [--list] [PREFIX...]\n", argv[0]);
			return 2;
		}
	}
	if (jobs < 1)
		jobs = 1;
	if (jobs > TEST_JOBS_MAX)
		jobs = TEST_JOBS_MAX;
	if (list) {
		for (size_t i = 0; i < tests_count; i++)
			if (selected(tests[i].name, argc, argv, first))
				printf("%s\n", tests[i].name);
		return 0;
	}
	/* Children of tests (servers they start) must not outlive a kill. */
	signal(SIGPIPE, SIG_IGN);

	running slots[TEST_JOBS_MAX];
	int active = 0;
	size_t next = 0;
	unsigned passed = 0, failed = 0, skipped = 0;
	char failures[8192] = "";
	for (;;) {
		while (active < jobs && next < tests_count) {
			if (!selected(tests[next].name, argc, argv, first)) {
				next++;
				continue;
			}
			start(&slots[active++], next++);
		}
		if (active == 0)
			break;
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0) {
			uint64_t t = now_ms();
			for (int i = 0; i < active; i++) {
				running *r = &slots[i];
				uint64_t limit = (uint64_t)tests[r->index].timeout_s * 1000u + 5000u;
				if (t - r->started_ms > limit)
					kill(-r->pid, SIGKILL);
			}
			struct timespec ts = {0, 5 * 1000 * 1000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		int i = 0;
		while (i < active && slots[i].pid != pid)
			i++;
		if (i == active)
			continue;
		running r = slots[i];
		slots[i] = slots[--active];
		kill(-r.pid, SIGKILL); /* anything the test left running */
		const char *name = tests[r.index].name;
		uint64_t ms = now_ms() - r.started_ms;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("ok %s (%llu ms)\n", name, (unsigned long long)ms);
			passed++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_EXIT_SKIP) {
			char why[256];
			printf("skip %s: %s\n", name, read_first_line(r.log, why, sizeof why));
			skipped++;
		} else {
			if (WIFSIGNALED(status))
				printf("FAIL %s (signal %d%s, %llu ms)\n", name, WTERMSIG(status),
					WTERMSIG(status) == SIGALRM || WTERMSIG(status) == SIGKILL ? ": timeout?" : "",
					(unsigned long long)ms);
			else
				printf("FAIL %s (exit %d, %llu ms)\n", name, WEXITSTATUS(status),
					(unsigned long long)ms);
			print_log(r.log);
			failed++;
			size_t used = strlen(failures);
			snprintf(failures + used, sizeof failures - used, " %s", name);
		}
		fflush(stdout);
		remove_tree(r.dir);
		unlink(r.log);
	}
	if (failed > 0)
		printf("failed:%s\n", failures);
	if (skipped > 0)
		printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
	else
		printf("%u passed, %u failed\n", passed, failed);
	return failed > 0 ? 1 : 0;
}
