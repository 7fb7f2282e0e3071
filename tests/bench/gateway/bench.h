/*
 * bench.h — what the gateway benchmarks share: starting and stopping
 * processes (flockd, nginx), a free loopback port, wrk runs and their
 * parsed figures, CPU and RSS of a process from /proc.
 *
 * Included by tests/bench/gateway*_bench.c only, once per program: the
 * helpers are static (each bench links alone against libflock.a), and a
 * bench that leaves some unused is not warned about them.
 */
#ifndef FLOCK_TESTS_BENCH_GATEWAY_BENCH_H
#define FLOCK_TESTS_BENCH_GATEWAY_BENCH_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/port.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

static char root[PATH_MAX / 2];  /* the source tree */
static char flockd_path[PATH_MAX];
static char tmp_root[128];

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
figure(const char *name, double value, const char *unit)
{
	printf("figure %s %.3f %s\n", name, value, unit);
	fflush(stdout);
}

static bool
executable(const char *path)
{
	return access(path, X_OK) == 0;
}

/* ---- processes ------------------------------------------------------------ */

/* Starts argv with stdout+stderr to log; env entries "K=V" added. */
static pid_t
spawn(char *const argv[], const char *log, char *const env[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		for (int i = 0; env != NULL && env[i] != NULL; i++)
			putenv(env[i]);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int
stop(pid_t pid)
{
	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Runs argv to completion, stdout into out (NUL-terminated). */
static int
run_capture(char *const argv[], char *const env[], char *out, size_t size)
{
	int pipefd[2];
	if (pipe(pipefd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		for (int i = 0; env != NULL && env[i] != NULL; i++)
			putenv(env[i]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	size_t used = 0;
	ssize_t n;
	while ((n = read(pipefd[0], out + used, size - 1 - used)) > 0) {
		used += (size_t)n;
		if (used + 1 >= size)
			break;
	}
	out[used] = '\0';
	close(pipefd[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static uint64_t
rss_bytes(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	uint64_t kib = 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
			break;
	fclose(f);
	return kib * 1024u;
}

/* CPU time (user + system) the process has used, microseconds. */
static uint64_t
cpu_us(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long long utime = 0, stime = 0;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
				  "%*u %*u %llu %llu", &utime, &stime) != 2)
		return 0;
	return (uint64_t)(utime + stime) * 1000000u /
		(uint64_t)sysconf(_SC_CLK_TCK);
}

typedef struct node {
	pid_t pid;
	int port;
	char dir[256];
	char log[300];
} node;

/* Starts flockd with extra flags; waits for its URL line. */
static bool
node_start(node *n, const char *name, const char *const *extra)
{
	snprintf(n->dir, sizeof n->dir, "%s/%s-data", tmp_root, name);
	snprintf(n->log, sizeof n->log, "%s/%s.log", tmp_root, name);
	char *argv[40];
	int a = 0;
	argv[a++] = flockd_path;
	argv[a++] = "--listen";
	argv[a++] = "127.0.0.1:0";
	argv[a++] = "--data";
	argv[a++] = n->dir;
	argv[a++] = "--insecure-fast-passwords";
	argv[a++] = "--no-request-log";
	argv[a++] = "--log-level";
	argv[a++] = "warn";
	static const char *const rates[] = {"--rate-signup", "1000000/1",
		"--rate-login", "1000000/1", "--rate-likes", "1000000/1",
		"--rate-posts", "1000000/1", "--rate-comments", "1000000/1",
		"--rate-follows", "1000000/1", "--connections-per-ip",
		"1000000"};
	for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
		argv[a++] = (char *)rates[i];
	for (int i = 0; extra != NULL && extra[i] != NULL && a < 38; i++)
		argv[a++] = (char *)extra[i];
	argv[a] = NULL;
	static char test_env[] = "FLOCK_TEST=1";
	char *env[] = {test_env, NULL};
	n->pid = spawn(argv, n->log, env);
	n->port = 0;
	for (int i = 0; i < 300 && n->port == 0; i++) {
		usleep(50000);
		FILE *f = fopen(n->log, "r");
		char line[512];
		while (f != NULL && fgets(line, sizeof line, f) != NULL) {
			const char *p = strstr(line, "listening on http://127.0.0.1:");
			if (p != NULL)
				n->port = atoi(p + strlen("listening on http://127.0.0.1:"));
		}
		if (f != NULL)
			fclose(f);
	}
	if (n->port == 0) {
		fprintf(stderr, "bench: flockd did not start (see %s)\n", n->log);
		stop(n->pid);
		return false;
	}
	return true;
}

/* ---- loopback connections ------------------------------------------------ */

static int
connect_local(int port, const char *source)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (source != NULL) {
		struct sockaddr_in s = {.sin_family = AF_INET};
		inet_pton(AF_INET, source, &s.sin_addr);
		if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0) {
			close(fd);
			return -1;
		}
	}
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- wrk ------------------------------------------------------------------ */

typedef struct wrk_result {
	double rps;
	double p50_ms;
	double p99_ms;
	bool ok;
} wrk_result;

static double
to_ms(double v, const char *unit)
{
	if (strncmp(unit, "us", 2) == 0)
		return v / 1000.0;
	if (strncmp(unit, "ms", 2) == 0)
		return v;
	if (unit[0] == 's')
		return v * 1000.0;
	if (strncmp(unit, "m", 1) == 0)
		return v * 60000.0;
	return v;
}

static wrk_result
parse_wrk(const char *out)
{
	wrk_result r = {0};
	const char *p = strstr(out, "Requests/sec:");
	if (p != NULL)
		r.rps = atof(p + strlen("Requests/sec:"));
	double v;
	char unit[8];
	p = strstr(out, "     50%");
	if (p != NULL && sscanf(p, " 50%% %lf%7s", &v, unit) == 2)
		r.p50_ms = to_ms(v, unit);
	p = strstr(out, "     99%");
	if (p != NULL && sscanf(p, " 99%% %lf%7s", &v, unit) == 2)
		r.p99_ms = to_ms(v, unit);
	r.ok = r.rps > 0;
	return r;
}

static wrk_result
wrk(int port, const char *path, int connections, int seconds,
	const char *token, const char *script, char *const env[])
{
	char url[512], c[16], d[16], header[1200];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	snprintf(c, sizeof c, "%d", connections);
	snprintf(d, sizeof d, "%ds", seconds);
	char *argv[20];
	int a = 0;
	argv[a++] = "/usr/bin/wrk";
	argv[a++] = connections >= 2 ? "-t2" : "-t1";
	argv[a++] = "-c";
	argv[a++] = c;
	argv[a++] = "-d";
	argv[a++] = d;
	argv[a++] = "--latency";
	if (token != NULL) {
		snprintf(header, sizeof header, "Authorization: Bearer %s",
			token);
		argv[a++] = "-H";
		argv[a++] = header;
	}
	if (script != NULL) {
		argv[a++] = "-s";
		argv[a++] = (char *)script;
	}
	argv[a++] = url;
	argv[a] = NULL;
	static char out[65536];
	run_capture(argv, env, out, sizeof out);
	wrk_result r = parse_wrk(out);
	if (!r.ok)
		fprintf(stderr, "bench: wrk said: %.600s\n", out);
	return r;
}

/* Runs wrk against flockd and prints the CPU flockd spent per request:
 * a figure other tenants of the machine do not distort the way they
 * distort req/s. */
static wrk_result
wrk_cpu(const char *name, pid_t pid, int port, const char *path,
	int seconds, const char *token)
{
	uint64_t before = cpu_us(pid);
	wrk_result r = wrk(port, path, 64, seconds, token, NULL, NULL);
	uint64_t used = cpu_us(pid) - before;
	char figure_name[96];
	snprintf(figure_name, sizeof figure_name, "%s_rps", name);
	figure(figure_name, r.rps, "req/s");
	snprintf(figure_name, sizeof figure_name, "%s_p99_ms", name);
	figure(figure_name, r.p99_ms, "ms");
	if (r.rps > 0) {
		snprintf(figure_name, sizeof figure_name,
			"%s_cpu_per_request", name);
		figure(figure_name, (double)used / (r.rps * seconds), "us");
	}
	return r;
}

/* ---- where things are ----------------------------------------------------- */

static void
locate(void)
{
	char exe[PATH_MAX / 4];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		exit(2);
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	*slash = '\0'; /* build/<mode>/bench */
	snprintf(flockd_path, sizeof flockd_path, "%s/../flockd", exe);
	snprintf(root, sizeof root, "%s/../../..", exe);
	char probe[PATH_MAX];
	snprintf(probe, sizeof probe, "%s/tests/bench/gateway/setup.py", root);
	if (access(probe, R_OK) != 0)
		snprintf(root, sizeof root, ".");
}

#pragma GCC diagnostic pop

#endif /* FLOCK_TESTS_BENCH_GATEWAY_BENCH_H */
