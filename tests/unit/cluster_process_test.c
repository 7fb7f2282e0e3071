/*
 * cluster_process_test.c — real flockd processes in a cluster on
 * loopback, driven over HTTP, WebSocket and flockctl.
 *
 * Goal, as an operator and a client would see it:
 *   - a seeded workload keeps writing while a fourth node joins (flockctl
 *     add) and later one drains (flockctl drain); afterwards every
 *     acknowledged write is present exactly once, in each writer's order;
 *     the join moves 1/(N+1) of the partitions (and of the test's actors,
 *     within sampling), all of them to the new node;
 *   - a WebSocket session on one node gets live events from actors that
 *     live on another;
 *   - kill -9 of a node is detected (time printed as a figure), requests for its
 *     partitions then fail fast with 503, and the node restarts from its
 *     data directory, rejoins and serves what it had; so do requests for
 *     its partitions that a join started moving while it was down (held
 *     at the new owner, which waits for the state), until it is back
 *     and the move completes;
 *   - a network partition (test-only transport block) never leaves one
 *     actor served on two sides: the cut-off node stops serving and
 *     passivates everything within its lease, the majority refuses its
 *     partitions; after healing everything acknowledged is there;
 *   - flockctl status/ring (human and --json), and a clear error for an
 *     unreachable node.
 *
 * Method: the test forks flockd from the directory of its own binary
 * (build/<mode>/flockd, flockctl next to it; skipped when absent), with
 * FLOCK_TEST=1, cheap passwords, a shared token key and generous rate
 * limits, each node in its own data directory under the test's temp dir
 * and on ports derived from the test's pid. Children die with the test
 * (PR_SET_PDEATHSIG). Writes are comments "c<seq>" each writer adds to
 * its own post, sent one at a time through a node drawn from a seeded
 * PRNG, retried with the same Idempotency-Key until acknowledged (201),
 * so "exactly once, in order" is the comment list 0..n-1.
 */
#include "actors/internal.h" /* actors__name_partition: a signup's partition */
#include "cluster/cluster.h"
#include "tests/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NODES_MAX 4
/* A request that takes longer failed (the gateway answers 503 itself
 * well before: its domain calls time out at 5 s). */
#define HTTP_TIMEOUT_MS 15000
#define HTTP_RESPONSE_BYTES_MAX (1u << 20)
/* How long the test waits for a killed node to be marked down. The 3 s
 * detection goal itself is checked on a virtual clock
 * (cluster_swim_test.c) and measured here as a figure: wall-clock
 * bounds belong to benchmarks, not to pass/fail tests on a shared
 * machine. */
#define DETECT_WAIT_MS_MAX 20000u
/* Slack past the lease for a cut-off minority to notice and passivate,
 * generous for a loaded machine; safety (no second copy) is checked
 * separately below. */
#define MINORITY_SLACK_MS 10000u

/* ---- clock and randomness ---------------------------------------------- */

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static uint64_t rng_state = 20261128;

static uint32_t
rnd(uint32_t n)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)((rng_state >> 33) % n);
}

/* A measured figure: to stderr (kept with a failure's log) and, when
 * FLOCK_FIGURES names a file, appended there. */
static void
figure(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void
figure(const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	const char *path = getenv("FLOCK_FIGURES");
	FILE *f = path != NULL ? fopen(path, "a") : NULL;
	if (f != NULL) {
		va_start(ap, format);
		vfprintf(f, format, ap);
		va_end(ap);
		fclose(f);
	}
}

/* ---- processes ------------------------------------------------------------ */

typedef struct flockd {
	pid_t pid;
	int index;
	uint16_t http_port;
	uint16_t cluster_port;
	char cluster[32];
	char data[400];
	char log[400];
	uint16_t id; /* cluster node id, once known */
} flockd;

static char bin_dir[PATH_MAX];
static char key_file[400];
static flockd nodes[NODES_MAX];
static uint16_t port_base;

static bool
binaries_found(void)
{
	ssize_t n = readlink("/proc/self/exe", bin_dir, sizeof bin_dir - 1);
	if (n <= 0)
		return false;
	bin_dir[n] = '\0';
	char *slash = strrchr(bin_dir, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/flockd", bin_dir);
	if (access(path, X_OK) != 0)
		return false;
	snprintf(path, sizeof path, "%s/flockctl", bin_dir);
	return access(path, X_OK) == 0;
}

/* One of these tests at a time on the machine: each runs three or four
 * nodes, and two at once on two cores would measure each other. The
 * lock goes with the test process. */
static void
take_machine(void)
{
	int fd = open("/tmp/flock-cluster-process-test.lock",
		O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	CHECK(fd >= 0);
	CHECK_EQ(flock(fd, LOCK_EX), 0);
}

static void
setup(int count)
{
	if (!binaries_found())
		TEST_SKIP("flockd and flockctl are not next to the test binary");
	take_machine();
	/* Ports from the pid, so concurrent runs do not meet, below the
	 * ephemeral range (32768..), where outgoing connections take them. */
	port_base = (uint16_t)(10000 + (getpid() % 900) * 24);
	snprintf(key_file, sizeof key_file, "%s/token.key", test_tmpdir());
	int fd = open(key_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	unsigned char key[32];
	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)rnd(256);
	CHECK_EQ(write(fd, key, sizeof key), (ssize_t)sizeof key);
	close(fd);
	for (int i = 0; i < count; i++) {
		flockd *x = &nodes[i];
		memset(x, 0, sizeof *x);
		x->index = i;
		x->http_port = (uint16_t)(port_base + i * 4);
		x->cluster_port = (uint16_t)(port_base + i * 4 + 1);
		snprintf(x->cluster, sizeof x->cluster, "127.0.0.1:%u",
			x->cluster_port);
		snprintf(x->data, sizeof x->data, "%s/node%d", test_tmpdir(),
			i + 1);
		/* FLOCK_TEST_LOGS keeps the nodes' logs past the test */
		const char *logs = getenv("FLOCK_TEST_LOGS");
		snprintf(x->log, sizeof x->log, "%s/node%d.log",
			logs != NULL ? logs : test_tmpdir(), i + 1);
	}
}

static void
flockd_start(flockd *x, const char *join)
{
	char exe[PATH_MAX + 16], listen[32], name[16];
	snprintf(exe, sizeof exe, "%s/flockd", bin_dir);
	snprintf(listen, sizeof listen, "127.0.0.1:%u", x->http_port);
	snprintf(name, sizeof name, "n%d", x->index + 1);
	const char *argv[40];
	int k = 0;
	argv[k++] = exe;
	argv[k++] = "--listen";
	argv[k++] = listen;
	argv[k++] = "--data";
	argv[k++] = x->data;
	argv[k++] = "--cluster";
	argv[k++] = x->cluster;
	argv[k++] = "--node-name";
	argv[k++] = name;
	argv[k++] = "--token-key-file";
	argv[k++] = key_file;
	argv[k++] = "--workers";
	argv[k++] = "2";
	argv[k++] = "--insecure-fast-passwords";
	argv[k++] = "--no-request-log";
	argv[k++] = "--rate-comments";
	argv[k++] = "1000000/1";
	argv[k++] = "--rate-posts";
	argv[k++] = "1000000/1";
	argv[k++] = "--rate-signup";
	argv[k++] = "1000000/1";
	argv[k++] = "--rate-login";
	argv[k++] = "1000000/1";
	argv[k++] = "--rate-follows";
	argv[k++] = "1000000/1";
	argv[k++] = "--rate-likes";
	argv[k++] = "1000000/1";
	if (join != NULL) {
		argv[k++] = "--join";
		argv[k++] = join;
	}
	argv[k] = NULL;
	pid_t parent = getpid();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int fd = open(x->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setenv("FLOCK_TEST", "1", 1);
		execv(exe, (char **)argv);
		_exit(127);
	}
	x->pid = pid;
}

static void
dump_log(const flockd *x)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "tail -n 25 '%s' >&2", x->log);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log %s)\n", x->log);
}

static int http(int port, const char *method, const char *path,
	const char *token, const char *idempotency_key, const char *body,
	char *out, size_t out_size);

static void
flockd_wait_ready(flockd *x)
{
	char body[256];
	for (int k = 0; k < 600; k++) {
		int status;
		pid_t w = waitpid(x->pid, &status, WNOHANG);
		if (w == x->pid) {
			dump_log(x);
			CHECK_MSG(false, "flockd n%d exited early", x->index + 1);
		}
		if (http(x->http_port, "GET", "/healthz", NULL, NULL, NULL, body,
			    sizeof body) == 200)
			return;
		sleep_ms(50);
	}
	dump_log(x);
	CHECK_MSG(false, "flockd n%d not ready", x->index + 1);
}

/* SIGTERM and a clean exit, or SIGKILL. */
static void
flockd_stop(flockd *x, int sig)
{
	if (x->pid <= 0)
		return;
	kill(x->pid, sig);
	int status = 0;
	for (int k = 0; k < 400; k++) {
		if (waitpid(x->pid, &status, WNOHANG) == x->pid)
			break;
		sleep_ms(25);
		if (k == 399) {
			kill(x->pid, SIGKILL);
			waitpid(x->pid, &status, 0);
			dump_log(x);
			CHECK_MSG(false, "flockd n%d did not stop", x->index + 1);
		}
	}
	if (sig == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		dump_log(x);
		CHECK_MSG(false, "flockd n%d stopped uncleanly", x->index + 1);
	}
	x->pid = 0;
}

/* Runs flockctl against node x; stdout into out. Returns its exit code. */
static int
flockctl(const flockd *x, char *out, size_t size, const char *args)
{
	static char cmd[PATH_MAX + 1024];
	int w = snprintf(cmd, sizeof cmd, "'%s/flockctl' --node "
		"127.0.0.1:%u %s 2>&1", bin_dir, x->cluster_port, args);
	CHECK(w > 0 && (size_t)w < sizeof cmd);
	FILE *f = popen(cmd, "r");
	CHECK(f != NULL);
	size_t n = fread(out, 1, size - 1, f);
	out[n] = '\0';
	int status = pclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static json_t *
flockctl_json(const flockd *x, const char *args)
{
	static char out[1 << 20];
	char full[256];
	snprintf(full, sizeof full, "--json %s", args);
	int rc = flockctl(x, out, sizeof out, full);
	CHECK_MSG(rc == 0, "flockctl %s: exit %d: %s", args, rc, out);
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	CHECK_MSG(j != NULL, "flockctl %s: not JSON: %s", args, out);
	return j;
}

/* ---- HTTP/1.1 over a fresh connection per request ------------------------ */

static int
connect_local(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct timeval tv = {HTTP_TIMEOUT_MS / 1000, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool
send_all(int fd, const char *bytes, size_t length)
{
	while (length > 0) {
		ssize_t w = send(fd, bytes, length, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		bytes += w;
		length -= (size_t)w;
	}
	return true;
}

/* Decodes a chunked body in place; returns its length. */
static size_t
dechunk(char *body, size_t length)
{
	size_t in = 0, out = 0;
	while (in < length) {
		char *end;
		unsigned long n = strtoul(body + in, &end, 16);
		char *line = strstr(body + in, "\r\n");
		if (line == NULL || n == 0)
			break;
		in = (size_t)(line - body) + 2;
		if (in + n > length)
			n = length - in;
		memmove(body + out, body + in, n);
		out += n;
		in += n + 2;
	}
	body[out] = '\0';
	return out;
}

/* One request; the body of the answer into out (NUL-terminated). Returns
 * the status, or -1 when the node could not be reached or answered
 * nothing. */
static int
http(int port, const char *method, const char *path, const char *token,
	const char *idempotency_key, const char *body, char *out,
	size_t out_size)
{
	out[0] = '\0';
	int fd = connect_local(port);
	if (fd < 0)
		return -1;
	char head[2048];
	size_t blen = body != NULL ? strlen(body) : 0;
	int n = snprintf(head, sizeof head,
		"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
		"Content-Type: application/json\r\nContent-Length: %zu\r\n"
		"%s%s%s%s%s%s\r\n",
		method, path, port, blen,
		token ? "Authorization: Bearer " : "", token ? token : "",
		token ? "\r\n" : "",
		idempotency_key ? "Idempotency-Key: " : "",
		idempotency_key ? idempotency_key : "",
		idempotency_key ? "\r\n" : "");
	CHECK(n > 0 && (size_t)n < sizeof head);
	if (!send_all(fd, head, (size_t)n) ||
		(blen > 0 && !send_all(fd, body, blen))) {
		close(fd);
		return -1;
	}
	static char buf[HTTP_RESPONSE_BYTES_MAX];
	size_t got = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == sizeof buf - 1)
			break;
	}
	close(fd);
	buf[got] = '\0';
	int status = -1;
	if (got < 12 || sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		return -1;
	char *sep = strstr(buf, "\r\n\r\n");
	if (sep == NULL)
		return status;
	*sep = '\0';
	char *payload = sep + 4;
	size_t plen = got - (size_t)(payload - buf);
	if (strcasestr(buf, "transfer-encoding: chunked") != NULL)
		plen = dechunk(payload, plen);
	if (plen >= out_size)
		plen = out_size - 1;
	memcpy(out, payload, plen);
	out[plen] = '\0';
	return status;
}

static json_t *
parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	CHECK_MSG(j != NULL, "not JSON: %.200s", text);
	return j;
}

static uint64_t
json_id(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	CHECK_MSG(s != NULL, "no %s", key);
	return strtoull(s, NULL, 10);
}

/* ---- the workload: writers commenting on their own posts ----------------- */

#define USERS_MAX 400

typedef struct user {
	char name[32];
	char token[512];
	uint64_t user_id;
	uint64_t post_id;
	uint32_t acked;     /* comments "c0".."c<acked-1>" acknowledged */
	uint32_t node;      /* where the last write went */
} user;

static user users[USERS_MAX];
static uint32_t users_count;

typedef struct latency {
	uint64_t count;
	uint64_t samples[1 << 16];
} latency;

static latency lat_normal, lat_moving;
static uint32_t alive_nodes[NODES_MAX];
static uint32_t alive_count;

static void
nodes_alive(const int *indices, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		alive_nodes[i] = (uint32_t)indices[i];
	alive_count = count;
}

static const flockd *
any_node(void)
{
	return &nodes[alive_nodes[rnd(alive_count)]];
}

static void
signup_users(uint32_t count, const char *prefix)
{
	char out[4096], body[512];
	for (uint32_t i = 0; i < count; i++) {
		CHECK(users_count < USERS_MAX);
		user *u = &users[users_count];
		memset(u, 0, sizeof *u);
		snprintf(u->name, sizeof u->name, "%s%u", prefix, i);
		snprintf(body, sizeof body, "{\"username\":\"%s\",\"email\":\"%s"
			"@test.org\",\"password\":\"password123\"}", u->name,
			u->name);
		int st = -1;
		for (int tries = 0; tries < 50 && st != 201; tries++) {
			st = http(any_node()->http_port, "POST", "/v1/signup",
				NULL, NULL, body, out, sizeof out);
			if (st == 409) { /* an earlier try went through */
				st = http(any_node()->http_port, "POST",
					"/v1/login", NULL, NULL, body, out,
					sizeof out);
				if (st == 200)
					st = 201;
			}
			if (st != 201)
				sleep_ms(50);
		}
		CHECK_MSG(st == 201, "signup %s: %d %s", u->name, st, out);
		json_t *j = parse(out);
		u->user_id = json_id(j, "user_id");
		snprintf(u->token, sizeof u->token, "%s",
			json_string_value(json_object_get(j, "token")));
		json_decref(j);
		char key[64];
		snprintf(key, sizeof key, "post-%s", u->name);
		for (int tries = 0; tries < 50; tries++) {
			st = http(any_node()->http_port, "POST", "/v1/posts",
				u->token, key, "{\"caption\":\"mine\"}", out,
				sizeof out);
			if (st == 201)
				break;
			sleep_ms(50);
		}
		CHECK_MSG(st == 201, "post of %s: %d %s", u->name, st, out);
		j = parse(out);
		u->post_id = json_id(j, "post_id");
		json_decref(j);
		users_count++;
	}
}

/* One write: the next comment of a random writer, through a random
 * node, retried with its key until acknowledged. Returns its latency. */
static uint64_t retries;

static uint64_t
write_one(uint32_t first_user, uint32_t users_n)
{
	user *u = &users[first_user + rnd(users_n)];
	char path[128], key[96], body[64], out[4096];
	snprintf(path, sizeof path, "/v1/posts/%" PRIu64 "/comments", u->post_id);
	snprintf(key, sizeof key, "%s-c%u", u->name, u->acked);
	snprintf(body, sizeof body, "{\"text\":\"c%u\"}", u->acked);
	uint64_t t0 = now_us();
	int st = 0;
	for (int tries = 0; tries < 400; tries++) {
		const flockd *x = any_node();
		st = http(x->http_port, "POST", path, u->token, key, body,
			out, sizeof out);
		if (st == 201) {
			u->acked++;
			u->node = (uint32_t)x->index;
			return now_us() - t0;
		}
		/* 503 (moving, unreachable owner), 409 (the first try still
		 * runs): the same key again */
		CHECK_MSG(st == 503 || st == 409 || st == -1,
			"comment %s: %d %s", key, st, out);
		retries++;
		if (getenv("FLOCK_TEST_LOGS") != NULL)
			fprintf(stderr, "retry %s via n%d: %d %.160s\n", key,
				x->index + 1, st, out);
		sleep_ms(20);
	}
	for (int i = 0; i < NODES_MAX; i++)
		if (nodes[i].pid > 0)
			dump_log(&nodes[i]);
	CHECK_MSG(false, "comment %s never acknowledged: %d %s", key, st, out);
	return 0;
}

static void
record(latency *l, uint64_t us)
{
	if (l->count < sizeof l->samples / sizeof l->samples[0])
		l->samples[l->count] = us;
	l->count++;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double
p99_ms(latency *l)
{
	uint64_t n = l->count < sizeof l->samples / sizeof l->samples[0]
		? l->count : sizeof l->samples / sizeof l->samples[0];
	if (n == 0)
		return 0;
	qsort(l->samples, n, sizeof l->samples[0], cmp_u64);
	return l->samples[n * 99 / 100] / 1000.0;
}

/* Every writer's comments, oldest first, read through random nodes:
 * exactly c0..c<acked-1>. */
static void
verify_users(uint32_t first, uint32_t count)
{
	static char out[HTTP_RESPONSE_BYTES_MAX];
	for (uint32_t i = first; i < first + count; i++) {
		user *u = &users[i];
		uint32_t next = 0;
		char cursor[512] = "";
		for (int page = 0; page < 1000; page++) {
			char path[800];
			snprintf(path, sizeof path, "/v1/posts/%" PRIu64
				"/comments?limit=50%s%s", u->post_id,
				cursor[0] ? "&after_cursor=" : "", cursor);
			int st = -1;
			for (int tries = 0; tries < 100 && st != 200; tries++) {
				st = http(any_node()->http_port, "GET", path,
					u->token, NULL, NULL, out, sizeof out);
				if (st != 200)
					sleep_ms(50);
			}
			CHECK_MSG(st == 200, "comments of %s: %d %s", u->name, st,
				out);
			json_t *j = parse(out);
			json_t *items = json_object_get(j, "items");
			for (size_t k = 0; k < json_array_size(items); k++) {
				const char *t = json_string_value(json_object_get(
					json_array_get(items, k), "text"));
				char want[32];
				snprintf(want, sizeof want, "c%u", next);
				CHECK_MSG(t != NULL && strcmp(t, want) == 0,
					"%s: comment %u is %s (acked %u): lost, "
					"duplicated or reordered", u->name, next,
					t ? t : "(none)", u->acked);
				next++;
			}
			const char *nc = json_string_value(json_object_get(j,
				"next_cursor"));
			bool more = nc != NULL && json_array_size(items) > 0;
			if (more)
				snprintf(cursor, sizeof cursor, "%s", nc);
			json_decref(j);
			if (!more)
				break;
		}
		CHECK_MSG(next == u->acked, "%s: %u comments, %u acknowledged",
			u->name, next, u->acked);
	}
}

/* ---- cluster helpers -------------------------------------------------------- */

static void
cluster_up(int count)
{
	setup(count > NODES_MAX ? NODES_MAX : count);
	flockd_start(&nodes[0], NULL);
	flockd_wait_ready(&nodes[0]);
	for (int i = 1; i < count; i++) {
		flockd_start(&nodes[i], nodes[0].cluster);
		flockd_wait_ready(&nodes[i]);
	}
	char out[4096], args[128];
	for (int i = 1; i < count; i++) {
		snprintf(args, sizeof args, "add %s", nodes[i].cluster);
		int rc = flockctl(&nodes[i % count], out, sizeof out, args);
		CHECK_MSG(rc == 0, "flockctl %s: %d %s", args, rc, out);
	}
	int rc = flockctl(&nodes[0], out, sizeof out, "rebalance");
	CHECK_MSG(rc == 0, "rebalance: %d %s", rc, out);
	json_t *st = flockctl_json(&nodes[0], "status");
	json_t *members = json_object_get(st, "nodes");
	CHECK_EQ(json_array_size(members), (size_t)count);
	for (size_t k = 0; k < json_array_size(members); k++) {
		json_t *m = json_array_get(members, k);
		const char *address = json_string_value(json_object_get(m,
			"address"));
		for (int i = 0; i < count; i++)
			if (strcmp(address, nodes[i].cluster) == 0)
				nodes[i].id = (uint16_t)json_integer_value(
					json_object_get(m, "id"));
	}
	json_decref(st);
	for (int i = 0; i < count; i++)
		CHECK(nodes[i].id != 0);
}

static void
cluster_down(int count)
{
	for (int i = count - 1; i >= 0; i--)
		flockd_stop(&nodes[i], SIGTERM);
}

/* owner[p] from `flockctl ring --json`. */
static void
ring(const flockd *x, uint16_t owner[CL_PARTITIONS])
{
	json_t *r = flockctl_json(x, "ring");
	json_t *ranges = json_object_get(r, "ranges");
	memset(owner, 0, CL_PARTITIONS * sizeof *owner);
	for (size_t k = 0; k < json_array_size(ranges); k++) {
		json_t *g = json_array_get(ranges, k);
		json_int_t lo = json_integer_value(json_array_get(g, 0));
		json_int_t hi = json_integer_value(json_array_get(g, 1));
		json_int_t id = json_integer_value(json_array_get(g, 2));
		for (json_int_t p = lo; p <= hi && p < CL_PARTITIONS; p++)
			owner[p] = (uint16_t)id;
	}
	json_decref(r);
}

/* The member row of node `id` in x's status, or NULL (borrowed from st). */
static json_t *
member(json_t *st, uint16_t id)
{
	json_t *members = json_object_get(st, "nodes");
	for (size_t k = 0; k < json_array_size(members); k++) {
		json_t *m = json_array_get(members, k);
		if (json_integer_value(json_object_get(m, "id")) == id)
			return m;
	}
	return NULL;
}

/* Every node sees every member alive (after a heal or a restart). */
static void
wait_all_alive(const int *indices, int count)
{
	uint64_t start = now_ms();
	for (;;) {
		bool all = true;
		for (int i = 0; all && i < count; i++) {
			json_t *st = flockctl_json(&nodes[indices[i]], "status");
			for (int k = 0; all && k < count; k++) {
				json_t *m = member(st, nodes[indices[k]].id);
				all = m != NULL && strcmp(json_string_value(
					json_object_get(m, "liveness")), "alive") == 0;
			}
			all = all && json_is_true(json_object_get(st, "lease"));
			json_decref(st);
		}
		if (all)
			return;
		CHECK_MSG(now_ms() - start < 20000, "members not all alive");
		sleep_ms(50);
	}
}

static bool
rebalanced(const int *indices, int count)
{
	json_t *st = flockctl_json(&nodes[indices[0]], "status");
	bool done = json_integer_value(json_object_get(st, "moves_pending")) == 0;
	json_int_t epoch = json_integer_value(json_object_get(st, "epoch"));
	json_decref(st);
	for (int i = 0; done && i < count; i++) {
		json_t *s = flockctl_json(&nodes[indices[i]], "status");
		done = json_integer_value(json_object_get(s, "moves_in_flight"))
				== 0 &&
			json_integer_value(json_object_get(s, "epoch")) == epoch;
		json_decref(s);
	}
	return done;
}

/* Keeps writing until the cluster has settled (and at least min_ms). */
static void
write_until_settled(const int *indices, int count, uint64_t min_ms,
	uint64_t max_ms, latency *lat)
{
	uint64_t start = now_ms(), next_poll = start + 100;
	for (;;) {
		record(lat, write_one(0, users_count));
		uint64_t t = now_ms();
		if (t >= next_poll) {
			next_poll = t + 150;
			if (t - start >= min_ms && rebalanced(indices, count))
				return;
		}
		CHECK_MSG(t - start < max_ms, "cluster did not settle in %" PRIu64
			" ms", max_ms);
	}
}

/* ---- tests -------------------------------------------------------------------- */

/* nodes[3] as a fourth node, not started. */
static void
node4_prepare(void)
{
	memset(&nodes[3], 0, sizeof nodes[3]);
	nodes[3].index = 3;
	nodes[3].http_port = (uint16_t)(port_base + 12);
	nodes[3].cluster_port = (uint16_t)(port_base + 13);
	snprintf(nodes[3].cluster, sizeof nodes[3].cluster, "127.0.0.1:%u",
		nodes[3].cluster_port);
	snprintf(nodes[3].data, sizeof nodes[3].data, "%s/node4",
		test_tmpdir());
	const char *logs = getenv("FLOCK_TEST_LOGS");
	snprintf(nodes[3].log, sizeof nodes[3].log, "%s/node4.log",
		logs != NULL ? logs : test_tmpdir());
}

TEST_WITH_TIMEOUT(cluster_process_join_and_drain_under_load, 300)
{
	cluster_up(3);
	int three[] = {0, 1, 2};
	nodes_alive(three, 3);
	signup_users(test_sanitized() ? 60 : 240, "w");
	for (int k = 0; k < 300; k++)
		record(&lat_normal, write_one(0, users_count));

	/* A fourth node joins while the writes go on. */
	uint16_t before[CL_PARTITIONS], after[CL_PARTITIONS];
	ring(&nodes[0], before);
	node4_prepare();
	flockd_start(&nodes[3], nodes[1].cluster);
	flockd_wait_ready(&nodes[3]);
	char out[8192], args[128];
	snprintf(args, sizeof args, "add %s", nodes[3].cluster);
	int rc = flockctl(&nodes[2], out, sizeof out, args);
	CHECK_MSG(rc == 0, "add: %d %s", rc, out);
	int four[] = {0, 1, 2, 3};
	write_until_settled(four, 4, 500, 120000, &lat_moving);
	nodes_alive(four, 4);
	ring(&nodes[0], after);
	json_t *st = flockctl_json(&nodes[0], "status");
	json_t *m4 = NULL;
	json_t *members = json_object_get(st, "nodes");
	for (size_t k = 0; k < json_array_size(members); k++) {
		json_t *m = json_array_get(members, k);
		if (strcmp(json_string_value(json_object_get(m, "address")),
			    nodes[3].cluster) == 0)
			m4 = m;
	}
	CHECK(m4 != NULL);
	nodes[3].id = (uint16_t)json_integer_value(json_object_get(m4, "id"));
	json_decref(st);
	uint32_t moved = 0, elsewhere = 0;
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (before[p] != after[p]) {
			moved++;
			elsewhere += after[p] != nodes[3].id;
		}
	double fraction = (double)moved / CL_PARTITIONS;
	/* The test's actors: each writer's user and post share a partition. */
	uint32_t actors_moved = 0;
	for (uint32_t i = 0; i < users_count; i++) {
		uint32_t p = cl_partition_of(users[i].user_id);
		CHECK_EQ(p, cl_partition_of(users[i].post_id));
		actors_moved += before[p] != after[p];
	}
	double actor_fraction = (double)actors_moved / users_count;
	/* sampling: users fall in partitions at random, so the actor
	 * fraction has a binomial spread around the partition fraction */
	double sigma = sqrt(0.25 * 0.75 / users_count);
	figure("figure join_partitions_moved_fraction %.4f (ideal "
		"%.4f)\nfigure join_actors_moved_fraction %.4f of %u\n"
		"figure join_write_p99_ms %.1f (before %.1f)\n", fraction, 0.25,
		actor_fraction, users_count, p99_ms(&lat_moving),
		p99_ms(&lat_normal));
	CHECK_EQ(elsewhere, 0);
	CHECK(fabs(fraction - 0.25) <= 0.02);
	CHECK_MSG(fabs(actor_fraction - 0.25) <= 0.02 + 3 * sigma,
		"actors moved %.4f", actor_fraction);

	/* Node 2 drains while the writes go on; it ends owning nothing. */
	snprintf(args, sizeof args, "drain %u", nodes[1].id);
	rc = flockctl(&nodes[0], out, sizeof out, args);
	CHECK_MSG(rc == 0, "drain: %d %s", rc, out);
	write_until_settled(four, 4, 500, 120000, &lat_moving);
	ring(&nodes[0], after);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		CHECK(after[p] != nodes[1].id && after[p] != 0);
	for (int k = 0; k < 200; k++)
		record(&lat_normal, write_one(0, users_count));
	verify_users(0, users_count);
	/* The drained node still serves as a gateway. */
	char body[4096];
	CHECK_EQ(http(nodes[1].http_port, "GET", "/v1/users/w0", users[0].token,
			 NULL, NULL, body, sizeof body), 200);
	cluster_down(4);
}

/* ---- WebSocket ------------------------------------------------------------ */

static int
ws_open(int port, const char *token)
{
	int fd = connect_local(port);
	CHECK(fd >= 0);
	char req[1024];
	int n = snprintf(req, sizeof req,
		"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\n"
		"Authorization: Bearer %s\r\n\r\n", port, token);
	CHECK(send_all(fd, req, (size_t)n));
	char buf[2048];
	size_t got = 0;
	while (got < sizeof buf - 1) {
		ssize_t r = recv(fd, buf + got, 1, 0);
		CHECK(r == 1);
		got++;
		if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	buf[got] = '\0';
	CHECK_MSG(strstr(buf, " 101 ") != NULL, "upgrade: %s", buf);
	return fd;
}

static bool
recv_exact(int fd, void *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(fd, (char *)p + got, n - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* Next text frame into out, skipping pings; false on timeout. */
static bool
ws_next(int fd, char *out, size_t size, int timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	for (;;) {
		unsigned char h[2];
		if (!recv_exact(fd, h, 2))
			return false;
		uint64_t len = h[1] & 0x7f;
		if (len == 126) {
			unsigned char e[2];
			CHECK(recv_exact(fd, e, 2));
			len = (uint64_t)e[0] << 8 | e[1];
		} else if (len == 127) {
			unsigned char e[8];
			CHECK(recv_exact(fd, e, 8));
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | e[i];
		}
		CHECK(len < size);
		CHECK(recv_exact(fd, out, (size_t)len));
		out[len] = '\0';
		if ((h[0] & 0x0f) == 1)
			return true;
	}
}

TEST_WITH_TIMEOUT(cluster_process_live_events_cross_nodes, 120)
{
	cluster_up(3);
	int three[] = {0, 1, 2};
	nodes_alive(three, 3);
	uint16_t owner[CL_PARTITIONS];
	ring(&nodes[0], owner);
	signup_users(24, "ev");
	/* a follower and an author owned by two different nodes, and a
	 * gateway node that owns neither */
	int a = -1, b = -1;
	for (uint32_t i = 0; i < users_count && b < 0; i++)
		for (uint32_t j = 0; j < users_count && b < 0; j++) {
			uint16_t oi = owner[cl_partition_of(users[i].user_id)];
			uint16_t oj = owner[cl_partition_of(users[j].user_id)];
			if (oi != oj) {
				a = (int)i;
				b = (int)j;
			}
		}
	CHECK(b >= 0);
	uint16_t oa = owner[cl_partition_of(users[a].user_id)];
	uint16_t ob = owner[cl_partition_of(users[b].user_id)];
	int gateway = 0;
	while (nodes[gateway].id == oa || nodes[gateway].id == ob)
		gateway++;
	char out[8192], path[256];
	snprintf(path, sizeof path, "/v1/users/%s/follow", users[b].name);
	CHECK_EQ(http(nodes[ob == nodes[0].id ? 1 : 0].http_port, "POST", path,
			 users[a].token, NULL, "{\"action\":\"follow\"}", out,
			 sizeof out), 200);
	int ws = ws_open(nodes[gateway].http_port, users[a].token);
	sleep_ms(300);
	/* b posts through yet another node; a's session gets it live */
	CHECK_EQ(http(nodes[(gateway + 1) % 3].http_port, "POST", "/v1/posts",
			 users[b].token, NULL, "{\"caption\":\"live across\"}",
			 out, sizeof out), 201);
	char frame[65536];
	bool seen = false;
	for (int k = 0; k < 10 && !seen; k++) {
		if (!ws_next(ws, frame, sizeof frame, 5000))
			break;
		seen = strstr(frame, "\"feed.post\"") != NULL &&
		       strstr(frame, "live across") != NULL;
	}
	CHECK_MSG(seen, "no live event on n%d for a post by a user of node %u",
		gateway + 1, ob);
	/* b likes a's post: a notification from a's own actor, pushed to
	 * a's session on the third node */
	snprintf(path, sizeof path, "/v1/posts/%" PRIu64 "/like",
		users[a].post_id);
	CHECK_EQ(http(nodes[(gateway + 2) % 3].http_port, "POST", path,
			 users[b].token, NULL, "{\"action\":\"like\"}", out,
			 sizeof out), 200);
	seen = false;
	for (int k = 0; k < 10 && !seen; k++) {
		if (!ws_next(ws, frame, sizeof frame, 5000))
			break;
		seen = strstr(frame, "\"notification\"") != NULL;
	}
	CHECK_MSG(seen, "no notification event");
	close(ws);
	cluster_down(3);
}

/* Users whose partition node `id` owns. */
static uint32_t
users_of(const uint16_t owner[CL_PARTITIONS], uint16_t id, uint32_t *out,
	uint32_t max)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < users_count && n < max; i++)
		if (owner[cl_partition_of(users[i].user_id)] == id)
			out[n++] = i;
	return n;
}

TEST_WITH_TIMEOUT(cluster_process_kill9_detect_fail_fast_restart, 240)
{
	cluster_up(3);
	int three[] = {0, 1, 2};
	nodes_alive(three, 3);
	signup_users(60, "k");
	for (int k = 0; k < 300; k++)
		write_one(0, users_count);
	uint16_t owner[CL_PARTITIONS];
	ring(&nodes[0], owner);
	uint32_t victims[USERS_MAX];
	uint32_t nv = users_of(owner, nodes[2].id, victims, USERS_MAX);
	CHECK(nv > 0);

	uint64_t killed = now_ms();
	kill(nodes[2].pid, SIGKILL);
	waitpid(nodes[2].pid, NULL, 0);
	nodes[2].pid = 0;
	uint64_t detected = 0;
	while (detected == 0 && now_ms() - killed < DETECT_WAIT_MS_MAX) {
		json_t *st = flockctl_json(&nodes[0], "status");
		json_t *m = member(st, nodes[2].id);
		CHECK(m != NULL);
		if (strcmp(json_string_value(json_object_get(m, "liveness")),
			    "down") == 0)
			detected = now_ms();
		json_decref(st);
		if (detected == 0)
			sleep_ms(50);
	}
	CHECK(detected != 0);
	figure("figure kill9_detection_ms %" PRIu64 "\n",
		detected - killed);
	/* Its partitions fail fast through the survivors; others serve. */
	char out[4096], path[128];
	uint64_t slowest = 0;
	for (uint32_t k = 0; k < nv && k < 20; k++) {
		user *u = &users[victims[k]];
		snprintf(path, sizeof path, "/v1/posts/%" PRIu64 "/comments",
			u->post_id);
		uint64_t t0 = now_us();
		int st = http(nodes[k % 2].http_port, "POST", path, u->token,
			"never", "{\"text\":\"lost\"}", out, sizeof out);
		uint64_t took = now_us() - t0;
		slowest = took > slowest ? took : slowest;
		CHECK_MSG(st == 503, "owner down: %d %s", st, out);
	}
	figure("figure down_owner_503_slowest_ms %.1f\n",
		slowest / 1000.0);
	/* Each answer must be 503; how fast is a figure (a request that
	 * reached the owner before it was marked down can still wait for
	 * the gateway's 5 s domain deadline - seen once under heavy load). */
	int two[] = {0, 1};
	nodes_alive(two, 2);
	uint32_t others[USERS_MAX];
	uint32_t no = 0;
	for (int id = 0; id < 2; id++)
		no += users_of(owner, nodes[id].id, others + no, USERS_MAX - no);
	for (uint32_t k = 0; k < no && k < 20; k++) {
		user *u = &users[others[k]];
		snprintf(path, sizeof path, "/v1/posts/%" PRIu64 "/comments",
			u->post_id);
		char key[64], body[64];
		snprintf(key, sizeof key, "%s-c%u", u->name, u->acked);
		snprintf(body, sizeof body, "{\"text\":\"c%u\"}", u->acked);
		int st = http(nodes[k % 2].http_port, "POST", path, u->token,
			key, body, out, sizeof out);
		CHECK_MSG(st == 201, "live owner: %d %s", st, out);
		u->acked++;
	}
	/* Restart from its data directory: it rejoins and serves its
	 * partitions with everything acknowledged before the kill. */
	flockd_start(&nodes[2], NULL);
	flockd_wait_ready(&nodes[2]);
	nodes_alive(three, 3);
	wait_all_alive(three, 3);
	for (int k = 0; k < 200; k++)
		write_one(0, users_count);
	verify_users(0, users_count);
	cluster_down(3);
}

/* A signup of name through node index i: the status; the problem (or
 * the answer) in out. */
static int
signup_one(int i, const char *name, char *out, size_t size)
{
	char body[256];
	snprintf(body, sizeof body, "{\"username\":\"%s\",\"email\":\"%s"
		"@test.org\",\"password\":\"password123\"}", name, name);
	return http(nodes[i].http_port, "POST", "/v1/signup", NULL, NULL, body,
		out, size);
}

/*
 * A join starts moving partitions of a node that is down: the new owner
 * holds them, waiting for state that cannot come. Requests for them
 * must fail fast with 503 (the node that holds them answers "owner
 * unavailable"), not wait in the hold until the gateway gives up ("timed
 * out"), and be served once the node is back and the move completes.
 * A signup goes first to the username shard of the name's partition, so
 * names are picked to land in the held partitions.
 */
TEST_WITH_TIMEOUT(cluster_process_down_old_owner_mid_handoff_fails_fast, 240)
{
	cluster_up(3);
	int three[] = {0, 1, 2};
	nodes_alive(three, 3);
	node4_prepare();
	flockd_start(&nodes[3], nodes[0].cluster);
	flockd_wait_ready(&nodes[3]);
	uint16_t before[CL_PARTITIONS], after[CL_PARTITIONS];
	ring(&nodes[0], before);

	uint16_t victim = nodes[2].id;
	kill(nodes[2].pid, SIGKILL);
	waitpid(nodes[2].pid, NULL, 0);
	nodes[2].pid = 0;
	bool down = false;
	uint64_t killed = now_ms();
	while (!down && now_ms() - killed < DETECT_WAIT_MS_MAX) {
		json_t *st = flockctl_json(&nodes[0], "status");
		json_t *m = member(st, victim);
		CHECK(m != NULL);
		down = strcmp(json_string_value(json_object_get(m,
			"liveness")), "down") == 0;
		json_decref(st);
		if (!down)
			sleep_ms(50);
	}
	CHECK(down);

	/* The join's first step moves some of the dead node's partitions to
	 * the new one; the step cannot finish, so no later step starts. */
	char out[8192], args[128];
	snprintf(args, sizeof args, "add %s", nodes[3].cluster);
	int rc = flockctl(&nodes[0], out, sizeof out, args);
	CHECK_MSG(rc == 0, "add: %d %s", rc, out);
	json_t *st = flockctl_json(&nodes[0], "status");
	json_t *members = json_object_get(st, "nodes");
	for (size_t k = 0; k < json_array_size(members); k++) {
		json_t *m = json_array_get(members, k);
		if (strcmp(json_string_value(json_object_get(m, "address")),
			    nodes[3].cluster) == 0)
			nodes[3].id = (uint16_t)json_integer_value(
				json_object_get(m, "id"));
	}
	json_decref(st);
	CHECK(nodes[3].id != 0);
	uint32_t held = 0;
	uint64_t added = now_ms();
	/* generous: a sanitized build on a loaded machine can lose and
	 * regain its lease meanwhile */
	while (held == 0 && now_ms() - added < 90000) {
		ring(&nodes[0], after);
		for (uint32_t p = 0; p < CL_PARTITIONS; p++)
			held += before[p] == victim && after[p] == nodes[3].id;
		if (held == 0)
			sleep_ms(50);
	}
	CHECK_MSG(held > 0, "no partition of the dead node started moving");

	/* Names whose username shard is in a held partition. */
	char names[3][32];
	uint32_t found = 0;
	for (uint32_t i = 0; found < 3 && i < 10000000u; i++) {
		snprintf(names[found], sizeof names[found], "held%u", i);
		uint32_t p = actors__name_partition(names[found]);
		if (before[p] == victim && after[p] == nodes[3].id)
			found++;
	}
	CHECK_EQ(found, 3u);
	/* Through the new owner itself and through a third node. */
	int via[] = {3, 0, 1};
	for (uint32_t k = 0; k < 3; k++) {
		int status = signup_one(via[k], names[k], out, sizeof out);
		CHECK_MSG(status == 503, "held partition via node %d: %d %s",
			via[k] + 1, status, out);
		CHECK_MSG(strstr(out, "timed out") == NULL,
			"held partition via node %d waited: %s", via[k] + 1,
			out);
	}

	/* Back: the move completes and the names are served. */
	flockd_start(&nodes[2], NULL);
	flockd_wait_ready(&nodes[2]);
	int four[] = {0, 1, 2, 3};
	wait_all_alive(four, 4);
	uint64_t back = now_ms();
	while (!rebalanced(four, 4)) {
		CHECK_MSG(now_ms() - back < 120000, "the join did not finish");
		sleep_ms(100);
	}
	for (uint32_t k = 0; k < 3; k++) {
		int status = -1;
		for (int tries = 0; tries < 50 && status != 201; tries++) {
			status = signup_one(via[k], names[k], out, sizeof out);
			if (status != 201)
				sleep_ms(100);
		}
		CHECK_MSG(status == 201, "after the return: %d %s", status,
			out);
	}
	cluster_down(4);
}

TEST_WITH_TIMEOUT(cluster_process_partition_never_two_copies, 240)
{
	cluster_up(3);
	int three[] = {0, 1, 2};
	nodes_alive(three, 3);
	signup_users(60, "p");
	for (int k = 0; k < 200; k++)
		write_one(0, users_count);
	uint16_t owner[CL_PARTITIONS];
	ring(&nodes[0], owner);
	uint32_t cut[USERS_MAX];
	uint32_t nc = users_of(owner, nodes[2].id, cut, USERS_MAX);
	CHECK(nc > 0);
	/* Touch node 3's users so their actors are active there. */
	char out[4096], path[128], args[128];
	for (uint32_t k = 0; k < nc; k++) {
		snprintf(path, sizeof path, "/v1/posts/%" PRIu64,
			users[cut[k]].post_id);
		CHECK_EQ(http(nodes[2].http_port, "GET", path,
				 users[cut[k]].token, NULL, NULL, out, sizeof out),
			200);
	}
	/* Cut node 3 off from both others, both ways. */
	for (int i = 0; i < 2; i++) {
		snprintf(args, sizeof args, "block %s", nodes[i].cluster);
		CHECK_EQ(flockctl(&nodes[2], out, sizeof out, args), 0);
		snprintf(args, sizeof args, "block %s", nodes[2].cluster);
		CHECK_EQ(flockctl(&nodes[i], out, sizeof out, args), 0);
	}
	uint64_t cut_at = now_ms();
	/* Minority: it stops serving and passivates within its lease. */
	uint64_t lost = 0;
	while (lost == 0) {
		json_t *st = flockctl_json(&nodes[2], "status");
		bool lease = json_is_true(json_object_get(st, "lease"));
		json_t *me = member(st, nodes[2].id);
		uint64_t actors = (uint64_t)json_integer_value(
			json_object_get(me, "actors"));
		json_decref(st);
		if (!lease && actors == 0)
			lost = now_ms();
		CHECK_MSG(now_ms() - cut_at <
				CL_LEASE_MS_DEFAULT + MINORITY_SLACK_MS,
			"minority still serving (lease %d, actors %" PRIu64 ")",
			lease, actors);
		sleep_ms(50);
	}
	figure("figure partition_minority_stopped_ms %" PRIu64 "\n",
		lost - cut_at);
	/* From here on no side serves node 3's users: the minority has no
	 * lease, the majority does not own them. */
	uint64_t until = now_ms() + 3000;
	while (now_ms() < until) {
		user *u = &users[cut[rnd(nc)]];
		snprintf(path, sizeof path, "/v1/posts/%" PRIu64 "/comments",
			u->post_id);
		for (int side = 0; side < 3; side++) {
			int st = http(nodes[side].http_port, "POST", path,
				u->token, "partitioned", "{\"text\":\"x\"}", out,
				sizeof out);
			CHECK_MSG(st == 503, "n%d served a cut-off actor: %d %s",
				side + 1, st, out);
		}
		json_t *st = flockctl_json(&nodes[2], "status");
		json_t *me = member(st, nodes[2].id);
		CHECK_EQ(json_integer_value(json_object_get(me, "actors")), 0);
		json_decref(st);
	}
	/* The majority still serves its own. */
	int two[] = {0, 1};
	nodes_alive(two, 2);
	uint32_t mine[USERS_MAX];
	uint32_t nm = users_of(owner, nodes[0].id, mine, USERS_MAX);
	for (uint32_t k = 0; k < nm && k < 10; k++) {
		user *u = &users[mine[k]];
		snprintf(path, sizeof path, "/v1/posts/%" PRIu64 "/comments",
			u->post_id);
		char key[64], body[64];
		snprintf(key, sizeof key, "%s-c%u", u->name, u->acked);
		snprintf(body, sizeof body, "{\"text\":\"c%u\"}", u->acked);
		CHECK_EQ(http(nodes[k % 2].http_port, "POST", path, u->token, key,
				 body, out, sizeof out), 201);
		u->acked++;
	}
	/* Heal: node 3 gets its lease back and serves again, with
	 * everything that was acknowledged. */
	for (int i = 0; i < 2; i++) {
		snprintf(args, sizeof args, "unblock %s", nodes[i].cluster);
		CHECK_EQ(flockctl(&nodes[2], out, sizeof out, args), 0);
		snprintf(args, sizeof args, "unblock %s", nodes[2].cluster);
		CHECK_EQ(flockctl(&nodes[i], out, sizeof out, args), 0);
	}
	nodes_alive(three, 3);
	wait_all_alive(three, 3);
	for (int k = 0; k < 200; k++)
		write_one(0, users_count);
	verify_users(0, users_count);
	cluster_down(3);
}

TEST_WITH_TIMEOUT(cluster_process_flockctl_against_real_nodes, 120)
{
	cluster_up(2);
	char out[65536];
	CHECK_EQ(flockctl(&nodes[1], out, sizeof out, "status"), 0);
	CHECK_MSG(strstr(out, "coordinator") != NULL &&
			  strstr(out, nodes[0].cluster) != NULL &&
			  strstr(out, nodes[1].cluster) != NULL &&
			  strstr(out, "active") != NULL,
		"status: %s", out);
	CHECK_EQ(flockctl(&nodes[0], out, sizeof out, "ring"), 0);
	CHECK_MSG(strstr(out, "8192 partitions") != NULL &&
			  strstr(out, nodes[1].cluster) != NULL,
		"ring: %s", out);
	uint16_t owner[CL_PARTITIONS];
	ring(&nodes[1], owner);
	uint32_t counts[3] = {0};
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		CHECK(owner[p] == nodes[0].id || owner[p] == nodes[1].id);
		counts[owner[p] == nodes[0].id]++;
	}
	CHECK(counts[0] == 4096 && counts[1] == 4096);
	/* rebalance on a balanced cluster: done at once, with progress */
	CHECK_EQ(flockctl(&nodes[1], out, sizeof out, "rebalance"), 0);
	CHECK_MSG(strstr(out, "0 partitions left") != NULL, "%s", out);
	/* refusals say why */
	CHECK_EQ(flockctl(&nodes[0], out, sizeof out, "add 127.0.0.1:1"), 1);
	CHECK_MSG(strstr(out, "no member at 127.0.0.1:1") != NULL, "%s", out);
	char args[64];
	snprintf(args, sizeof args, "remove %u", nodes[1].id);
	CHECK_EQ(flockctl(&nodes[0], out, sizeof out, args), 1);
	CHECK_MSG(strstr(out, "drain it first") != NULL, "%s", out);
	/* an unreachable node: exit 3 and a message naming it */
	flockd dead = nodes[1];
	dead.cluster_port = (uint16_t)(port_base + 20);
	CHECK_EQ(flockctl(&dead, out, sizeof out, "status"), 3);
	CHECK_MSG(strstr(out, "unreachable") != NULL, "%s", out);
	CHECK_EQ(flockctl(&nodes[0], out, sizeof out, "bogus"), 2);
	cluster_down(2);
}
