/*
 * gateway_bench.c — the gateway's benchmarks, each printing
 * `figure <name> <value> <unit>` lines (and `ratio` against nginx).
 *
 *  1. feed: GET /v1/feed with wrk on the machine's 2 cores, against
 *     nginx serving a static file of the same size (same wrk, same run).
 *  2. mix: DeathStarBench's social-network mix (60% home timeline, 30%
 *     user timeline, 10% compose) over the socfb-Reed98 graph, with wrk
 *     and tests/bench/gateway/mix.lua at rising connection counts: the
 *     best req/s whose p99 stays within 5 ms.
 *  3. like -> frame: likes at a paced 10,000/s on keep-alive
 *     connections; the author's WebSocket receives one notification per
 *     like; p50/p99 from request sent to frame received.
 *  4. idle streams: authenticated WebSockets opened from several 127.x
 *     source addresses (fd limits raised), held idle; flockd's RSS per
 *     connection. A process holds at most its descriptor limit; a target
 *     beyond it spreads over a cluster of flockd nodes on this machine
 *     (one client process per node), RSS summed over the nodes.
 *
 * Method: each part starts its own flockd (FLOCK_TEST=1,
 * --insecure-fast-passwords so setup is not argon2-bound, per-user rates
 * raised) on a free loopback port with a temp data directory, loads data
 * through tests/bench/gateway/setup.py, measures, and stops it. Parts
 * whose tool is missing (wrk, nginx) print why and are skipped.
 * FLOCK_BENCH_WS_CONNECTIONS sets part 4's target (100,000).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/gateway/bench.h"

/* wrk run lengths: long enough for a stable rate on 2 cores. */
#define FEED_SECONDS 10
/* Waiting for the feed's media to be processed: polls and their spacing
 * (30 s in all; a few 16-pixel images take well under a second). */
#define FEED_READY_POLLS_MAX 300
#define FEED_READY_POLL_MS 100
#define MIX_SECONDS 5
/* Like pushes: rate and duration of the paced run. */
#define LIKE_RATE_PER_S 10000u
#define LIKE_SECONDS 3u
#define LIKE_LIKERS 100u
#define LIKE_POSTS 300u
#define LIKE_CONNECTIONS 64u
/* Idle streams: default target, per-user cap (the domain keeps 8 live
 * subscribers per user), handshakes in flight at once. */
#define WS_TARGET_DEFAULT 100000u
#define WS_PER_USER 8u
#define WS_HANDSHAKES_IN_FLIGHT 256u
#define WS_SOURCE_ADDRESSES 8u
#define WS_CONNECT_SECONDS_MAX 180u
/* A single HTTP answer the bench reads whole. */
#define RESPONSE_BYTES_MAX (1u << 20)

/* ---- data ------------------------------------------------------------------ */

/* A part that could not run says so here: the bench then exits 1
 * rather than print no figure and succeed. */
static bool bench_failed;

static bool
setup(const node *n, const char *users_out, const char *const *args)
{
	char port[16], script[PATH_MAX];
	snprintf(port, sizeof port, "%d", n->port);
	snprintf(script, sizeof script, "%s/tests/bench/gateway/setup.py", root);
	char *argv[32];
	int a = 0;
	argv[a++] = "/usr/bin/python3";
	argv[a++] = script;
	argv[a++] = "--port";
	argv[a++] = port;
	argv[a++] = "--out";
	argv[a++] = (char *)users_out;
	for (int i = 0; args[i] != NULL && a < 30; i++)
		argv[a++] = (char *)args[i];
	argv[a] = NULL;
	char out[4096];
	int rc = run_capture(argv, NULL, out, sizeof out);
	if (rc != 0)
		fprintf(stderr, "bench: setup failed (%d): %s\n", rc, out);
	return rc == 0;
}

/* Reads line `index` of the users file: name, id, token, media. */
static bool
user_line(const char *path, size_t index, char *name, char *token,
	char *media, uint64_t *user_id)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char line[2048];
	size_t i = 0;
	bool ok = false;
	while (fgets(line, sizeof line, f) != NULL) {
		if (i++ != index)
			continue;
		char id[64];
		ok = sscanf(line, "%63s %63s %1023s %63s", name, id, token,
			     media) == 4;
		if (ok && user_id != NULL)
			*user_id = strtoull(id, NULL, 10);
		break;
	}
	fclose(f);
	return ok;
}

/* ---- a blocking HTTP GET (setup checks) -------------------------------- */

/* GET path with a bearer token; the body into out; returns status. */
static int
http_get(int port, const char *path, const char *token, char *out,
	size_t size, size_t *body_length)
{
	int fd = connect_local(port, NULL);
	if (fd < 0)
		return -1;
	char req[2048];
	int n = snprintf(req, sizeof req,
		"GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		"Connection: close\r\n\r\n",
		path, token);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	size_t used = 0;
	ssize_t got;
	while (used + 1 < size && (got = read(fd, out + used, size - 1 - used)) > 0)
		used += (size_t)got;
	out[used] = '\0';
	close(fd);
	int status = 0;
	sscanf(out, "HTTP/1.%*d %d", &status);
	char *body = strstr(out, "\r\n\r\n");
	if (body == NULL)
		return -1;
	body += 4;
	*body_length = used - (size_t)(body - out);
	memmove(out, body, *body_length + 1);
	return status;
}

/* ---- 1. feed vs nginx ------------------------------------------------------- */

static pid_t
nginx_start(const char *body, size_t length, int *port_out)
{
	char dir[300], path[400], conf[400];
	snprintf(dir, sizeof dir, "%s/nginx", tmp_root);
	mkdir(dir, 0755);
	snprintf(path, sizeof path, "%s/www", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/www/v1", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/www/v1/feed", dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fwrite(body, 1, length, f);
	fclose(f);
	int port = free_port();
	snprintf(conf, sizeof conf, "%s/nginx.conf", dir);
	f = fopen(conf, "w");
	if (f == NULL)
		return -1;
	fprintf(f,
		"user root;\nworker_processes 2;\ndaemon off;\n"
		"pid %s/nginx.pid;\nerror_log %s/error.log;\n"
		"events { worker_connections 4096; }\n"
		"http {\n access_log off;\n keepalive_requests 1000000;\n"
		" server {\n  listen 127.0.0.1:%d;\n  root %s/www;\n"
		"  default_type application/json;\n"
		"  location / { add_header Cache-Control no-store; }\n }\n}\n",
		dir, dir, port, dir);
	fclose(f);
	char log[400];
	snprintf(log, sizeof log, "%s/nginx.out", dir);
	char *argv[] = {"/usr/sbin/nginx", "-p", dir, "-c", conf, NULL};
	pid_t pid = spawn(argv, log, NULL);
	for (int i = 0; i < 50; i++) {
		usleep(100000);
		int fd = connect_local(port, NULL);
		if (fd >= 0) {
			close(fd);
			*port_out = port;
			return pid;
		}
	}
	stop(pid);
	return -1;
}

static void
bench_feed(void)
{
	if (!executable("/usr/bin/wrk")) {
		printf("skip feed: wrk is not installed (make bench installs it)\n");
		return;
	}
	node n;
	if (!node_start(&n, "feed", NULL))
		return;
	char users[400];
	snprintf(users, sizeof users, "%s/feed-users.txt", tmp_root);
	const char *args[] = {"--users", "21", "--prefix", "f", "--star",
		"--posts-per-user", "1", NULL};
	char name[64], token[1024], media[64];
	if (!setup(&n, users, args) ||
		!user_line(users, 0, name, token, media, NULL)) {
		stop(n.pid);
		return;
	}
	static char body[RESPONSE_BYTES_MAX];
	size_t length = 0;
	/* Uploads are processed after the post is answered: wait until every
	 * item's media is ready, so the page measured (and the file nginx
	 * serves) is the full one, with its variant URLs. */
	int status = 0;
	for (int i = 0; i < FEED_READY_POLLS_MAX; i++) {
		status = http_get(n.port, "/v1/feed?limit=20", token, body,
			sizeof body, &length);
		if (status != 200 || strstr(body, "\"processing\"") == NULL)
			break;
		usleep(FEED_READY_POLL_MS * 1000);
	}
	printf("feed response: status %d, %zu bytes\n", status, length);
	wrk_result g = wrk_cpu("gateway_feed", n.pid, n.port,
		"/v1/feed?limit=20", FEED_SECONDS, token);
	/* The same path without the domain's feed assembly: a profile read
	 * (one actor ask) and /healthz (the gateway alone), to tell the
	 * gateway's share from the domain's. */
	wrk_cpu("gateway_profile", n.pid, n.port, "/v1/users/f2",
		FEED_SECONDS / 2, token);
	wrk_cpu("gateway_healthz", n.pid, n.port, "/healthz", FEED_SECONDS / 2,
		NULL);
	stop(n.pid);
	if (!executable("/usr/sbin/nginx")) {
		printf("skip nginx: nginx-light is not installed\n");
		return;
	}
	int port = 0;
	pid_t ng = nginx_start(body, length, &port);
	if (ng < 0) {
		printf("skip nginx: it did not start\n");
		return;
	}
	wrk_result x = wrk(port, "/v1/feed?limit=20", 64, FEED_SECONDS, NULL,
		NULL, NULL);
	stop(ng);
	figure("nginx_static_rps", x.rps, "req/s");
	figure("nginx_static_p99_ms", x.p99_ms, "ms");
	if (x.rps > 0)
		printf("ratio gateway_feed_p99 nginx %.3f\n",
			g.p99_ms / (x.p99_ms > 0 ? x.p99_ms : 1));
	if (x.rps > 0)
		printf("ratio gateway_feed nginx %.3f\n", g.rps / x.rps);
}

/* ---- 2. DeathStarBench mix over Reed98 ------------------------------------- */

static void
bench_mix(void)
{
	if (!executable("/usr/bin/wrk")) {
		printf("skip mix: wrk is not installed\n");
		return;
	}
	char dataset[PATH_MAX];
	const char *env_dir = getenv("FLOCK_DATASETS");
	snprintf(dataset, sizeof dataset, "%s/socfb-Reed98",
		env_dir ? env_dir : "../shared/datasets");
	char edges[PATH_MAX + 32];
	snprintf(edges, sizeof edges, "%s/socfb-Reed98.edges", dataset);
	if (access(edges, R_OK) != 0) {
		snprintf(dataset, sizeof dataset,
			"%s/../shared/datasets/socfb-Reed98", root);
		snprintf(edges, sizeof edges, "%s/socfb-Reed98.edges", dataset);
	}
	if (access(edges, R_OK) != 0) {
		printf("skip mix: no socfb-Reed98 under ../shared/datasets\n");
		return;
	}
	node n;
	if (!node_start(&n, "mix", NULL))
		return;
	char users[400];
	snprintf(users, sizeof users, "%s/mix-users.txt", tmp_root);
	const char *args[] = {"--reed98", dataset, "--prefix", "r",
		"--posts-per-user", "3", NULL};
	uint64_t t0 = now_ns();
	if (!setup(&n, users, args)) {
		stop(n.pid);
		return;
	}
	printf("mix: Reed98 loaded in %.1f s\n", (double)(now_ns() - t0) / 1e9);
	char script[PATH_MAX], env_users[600];
	snprintf(script, sizeof script, "%s/tests/bench/gateway/mix.lua", root);
	snprintf(env_users, sizeof env_users, "FLOCK_BENCH_USERS=%s", users);
	char *env[] = {env_users, NULL};
	static const int connections[] = {1, 2, 4, 8, 16, 32, 64};
	double best = 0, best_cpu_us = 0;
	for (size_t i = 0; i < sizeof connections / sizeof connections[0]; i++) {
		uint64_t cpu_before = cpu_us(n.pid);
		wrk_result r = wrk(n.port, "/", connections[i], MIX_SECONDS,
			NULL, script, env);
		/* flockd's CPU per request: what other tenants of the machine
		 * distort least (req/s and p99 move with their load). */
		double cpu_per_request = r.rps > 0
			? (double)(cpu_us(n.pid) - cpu_before) /
				(r.rps * MIX_SECONDS)
			: 0;
		printf("mix: %d connections: %.0f req/s, p50 %.2f ms, p99 %.2f "
		       "ms, %.0f us CPU per request\n",
			connections[i], r.rps, r.p50_ms, r.p99_ms,
			cpu_per_request);
		if (r.ok && r.p99_ms <= 5.0 && r.rps > best) {
			best = r.rps;
			best_cpu_us = cpu_per_request;
		}
	}
	stop(n.pid);
	figure("gateway_mix_rps_p99_5ms", best, "req/s");
	if (best > 0)
		figure("gateway_mix_cpu_per_request", best_cpu_us, "us");
}

/* ---- WebSocket plumbing (raw, for parts 3 and 4) ---------------------------- */

static int
ws_request(char *buf, size_t size, const char *token)
{
	return snprintf(buf, size,
		"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
		token);
}

/* A blocking upgrade; returns the fd or -1. */
static int
ws_open_blocking(int port, const char *token)
{
	int fd = connect_local(port, NULL);
	if (fd < 0)
		return -1;
	char req[2048], resp[2048];
	int n = ws_request(req, sizeof req, token);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	size_t used = 0;
	while (used + 1 < sizeof resp) {
		ssize_t got = read(fd, resp + used, 1);
		if (got <= 0)
			break;
		used++;
		if (used >= 4 && memcmp(resp + used - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	resp[used] = '\0';
	if (strstr(resp, " 101 ") == NULL) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
ws_send_text(int fd, const char *text)
{
	unsigned char frame[256];
	size_t n = strlen(text);
	if (n > 125)
		return;
	frame[0] = 0x81;
	frame[1] = (unsigned char)(0x80 | n);
	memcpy(frame + 2, "\x01\x02\x03\x04", 4);
	for (size_t i = 0; i < n; i++)
		frame[6 + i] = (unsigned char)text[i] ^ frame[2 + (i % 4)];
	ssize_t w = write(fd, frame, 6 + n);
	(void)w;
}

/* ---- 3. like -> frame latency --------------------------------------------- */

typedef struct like_conn {
	int fd;
	bool busy;
	size_t pair; /* of the like in flight */
	char in[8192];
	size_t in_used;
} like_conn;

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static uint64_t *post_ids;
static size_t post_count;

static long
post_index(uint64_t id)
{
	uint64_t *p = bsearch(&id, post_ids, post_count, sizeof id, cmp_u64);
	return p == NULL ? -1 : (long)(p - post_ids);
}

static uint64_t liker_ids[LIKE_LIKERS];
static uint64_t like_ok, like_failed;
/* Per (liker, post), monotonic ns: when the like was sent and when its
 * HTTP answer came (the sender's thread), for the split of the latency
 * into the answer and what the frame took after it. */
static uint64_t *like_sent_at, *like_answered_at;
static char like_tokens[LIKE_LIKERS + 1][1024];

static long
liker_index(uint64_t id)
{
	for (size_t i = 0; i < LIKE_LIKERS; i++)
		if (liker_ids[i] == id)
			return (long)i;
	return -1;
}

/* Consumes complete HTTP responses on c; returns how many finished. */
static int
http_drain(like_conn *c)
{
	int done = 0;
	for (;;) {
		char *end = memmem(c->in, c->in_used, "\r\n\r\n", 4);
		if (end == NULL)
			return done;
		size_t head = (size_t)(end - c->in) + 4;
		if (c->in_used > 12 && c->in[9] == '2')
			like_ok++;
		else
			like_failed++;
		size_t body = 0;
		char *cl = memmem(c->in, head, "content-length:", 15);
		if (cl != NULL)
			body = (size_t)atol(cl + 15);
		if (c->in_used < head + body)
			return done;
		memmove(c->in, c->in + head + body, c->in_used - head - body);
		c->in_used -= head + body;
		if (c->busy && like_answered_at != NULL)
			like_answered_at[c->pair] = now_ns();
		c->busy = false;
		done++;
	}
}

/*
 * The author's stream is read by a thread of its own (like_reader), so a
 * frame's arrival is stamped when it arrives and the socket is drained as
 * fast as the gateway writes, whatever the sender is doing: read from
 * the sender's loop, a sender busy pacing likes left frames in the
 * socket, the gateway's queue for it filled and the domain cut the
 * stream off (4008) as a slow reader. The sender stamps sent_ns before
 * each like and the reader takes the stamp (atomics); latencies grow by
 * the reader only and are published with a release store.
 */
typedef struct like_state {
	uint64_t *sent_ns;    /* per (liker, post) */
	uint64_t *latency_ns;
	size_t latencies;
	int ws_fd;
	bool stop;            /* the reader ends (atomic) */
	uint64_t frames;
	unsigned char ws_in[1 << 20];
	size_t ws_used;
	uint64_t last_seq;
	uint64_t acked_seq;
	uint64_t last_match_ns;
	uint64_t *frame_at;   /* per (liker, post): the frame came */
	char first_frame[512];
} like_state;

/* Parses complete server frames; records like notifications. */
static void
ws_frames(like_state *s, int ws_fd)
{
	for (;;) {
		if (s->ws_used < 2)
			return;
		size_t n = s->ws_in[1] & 0x7f, off = 2;
		if (n == 126) {
			if (s->ws_used < 4)
				return;
			n = (size_t)s->ws_in[2] << 8 | s->ws_in[3];
			off = 4;
		} else if (n == 127) {
			return; /* never this large */
		}
		if (s->ws_used < off + n)
			return;
		char text[70000];
		size_t tn = n < sizeof text - 1 ? n : sizeof text - 1;
		memcpy(text, s->ws_in + off, tn);
		text[tn] = '\0';
		memmove(s->ws_in, s->ws_in + off + n, s->ws_used - off - n);
		s->ws_used -= off + n;
		uint64_t now = now_ns();
		s->frames++;
		if (s->frames == 1)
			snprintf(s->first_frame, sizeof s->first_frame, "%.300s",
				text);
		char *seq = strstr(text, "\"seq\":");
		if (seq != NULL)
			s->last_seq = strtoull(seq + 6, NULL, 10);
		char *pid = strstr(text, "\"post_id\":\"");
		static const char by_user[] = "\"by_user\":{\"user_id\":\"";
		char *who = strstr(text, by_user);
		if (strstr(text, "\"like\"") != NULL && pid != NULL && who != NULL) {
			long p = post_index(strtoull(pid + 11, NULL, 10));
			long l = liker_index(strtoull(who + sizeof by_user - 1,
				NULL, 10));
			if (p >= 0 && l >= 0 && l < (long)LIKE_LIKERS) {
				size_t k = (size_t)l * post_count + (size_t)p;
				uint64_t sent = __atomic_exchange_n(
					&s->sent_ns[k], 0, __ATOMIC_ACQ_REL);
				if (sent != 0) {
					__atomic_store_n(&s->frame_at[k], now,
						__ATOMIC_RELEASE);
					s->latency_ns[s->latencies] = now - sent;
					__atomic_store_n(&s->last_match_ns, now,
						__ATOMIC_RELAXED);
					__atomic_store_n(&s->latencies,
						s->latencies + 1,
						__ATOMIC_RELEASE);
				}
			}
		}
		if (s->last_seq >= s->acked_seq + 32) {
			char ack[64];
			snprintf(ack, sizeof ack, "{\"type\":\"ack\",\"seq\":%" PRIu64 "}",
				s->last_seq);
			ws_send_text(ws_fd, ack);
			s->acked_seq = s->last_seq;
		}
	}
}

static void *
like_reader(void *arg)
{
	like_state *s = arg;
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		ssize_t got = read(s->ws_fd, s->ws_in + s->ws_used,
			sizeof s->ws_in - s->ws_used);
		if (got > 0) {
			s->ws_used += (size_t)got;
			ws_frames(s, s->ws_fd);
		} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
			break; /* closed */
		}
	}
	return NULL;
}

static size_t
latencies_now(like_state *s)
{
	return __atomic_load_n(&s->latencies, __ATOMIC_ACQUIRE);
}

static bool
load_posts(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	post_ids = calloc(LIKE_POSTS, sizeof *post_ids);
	char line[64];
	while (post_count < LIKE_POSTS && fgets(line, sizeof line, f) != NULL)
		if (isdigit((unsigned char)line[0]))
			post_ids[post_count++] = strtoull(line, NULL, 10);
	fclose(f);
	qsort(post_ids, post_count, sizeof *post_ids, cmp_u64);
	return post_count > 0;
}

/* Where a phase's time went: sent -> HTTP answer (the like durable and
 * answered through the gateway) and HTTP answer -> frame (the
 * notification's way from the post's durable notice to the socket),
 * over the likes of pairs [first, last) that got both. */
static void
like_split_print(like_state *s, size_t first, size_t last)
{
	size_t n = 0, frame_first = 0;
	uint64_t *answer = calloc(last - first + 1, sizeof *answer);
	uint64_t *after = calloc(last - first + 1, sizeof *after);
	for (size_t pair = first; pair < last && answer != NULL &&
		after != NULL; pair++) {
		size_t k = (pair % LIKE_LIKERS) * post_count +
			pair / LIKE_LIKERS;
		uint64_t frame = __atomic_load_n(&s->frame_at[k],
			__ATOMIC_ACQUIRE);
		if (frame == 0 || like_answered_at[k] == 0)
			continue;
		answer[n] = like_answered_at[k] - like_sent_at[k];
		if (frame < like_answered_at[k])
			frame_first++;
		after[n] = frame > like_answered_at[k]
			? frame - like_answered_at[k]
			: 0;
		n++;
	}
	if (n > 0) {
		qsort(answer, n, sizeof *answer, cmp_u64);
		qsort(after, n, sizeof *after, cmp_u64);
		printf("  %zu likes: sent -> HTTP answer p50 %.3f ms, p99 %.3f "
		       "ms; HTTP answer -> frame p50 %.3f ms, p99 %.3f ms "
		       "(%zu frames came before their answer)\n",
			n, (double)answer[n / 2] / 1e6,
			(double)answer[n * 99 / 100] / 1e6,
			(double)after[n / 2] / 1e6,
			(double)after[n * 99 / 100] / 1e6, frame_first);
	}
	free(answer);
	free(after);
}

/* One paced phase: rate likes per second for LIKE_SECONDS, then waits
 * (bounded) for their notifications; prints its figures. */
static void
like_phase(like_state *s, int ep, like_conn *conns, uint32_t rate,
	size_t *next_pair)
{
	size_t pairs = LIKE_LIKERS * post_count;
	size_t first = *next_pair;
	size_t total = (size_t)rate * LIKE_SECONDS;
	if (first + total > pairs)
		total = pairs - first;
	size_t sent = 0, behind = 0, matched_before = latencies_now(s);
	uint64_t ok_before = like_ok;
	uint64_t start = now_ns();
	uint64_t deadline = start + (uint64_t)(LIKE_SECONDS + 10) * 1000000000u;
	while (now_ns() < deadline) {
		uint64_t now = now_ns();
		size_t due = (size_t)((now - start) * rate / 1000000000u);
		if (due > total)
			due = total;
		for (size_t i = 0; i < LIKE_CONNECTIONS && sent < due; i++) {
			if (conns[i].busy)
				continue;
			size_t k = first + sent;
			size_t liker = k % LIKE_LIKERS;
			size_t post = k / LIKE_LIKERS;
			char req[1400];
			int len = snprintf(req, sizeof req,
				"POST /v1/posts/%" PRIu64 "/like HTTP/1.1\r\n"
				"Host: x\r\nAuthorization: Bearer %s\r\n"
				"Content-Type: application/json\r\n"
				"Content-Length: 17\r\n\r\n{\"action\":\"like\"}",
				post_ids[post], like_tokens[1 + liker]);
			size_t pair = liker * post_count + post;
			uint64_t at = now_ns();
			like_sent_at[pair] = at;
			__atomic_store_n(&s->sent_ns[pair], at,
				__ATOMIC_RELEASE);
			conns[i].pair = pair;
			if (write(conns[i].fd, req, (size_t)len) == len)
				conns[i].busy = true;
			sent++;
		}
		if (sent + LIKE_CONNECTIONS < due)
			behind++;
		struct epoll_event events[128];
		int n = epoll_wait(ep, events, 128, 1);
		for (int e = 0; e < n; e++) {
			like_conn *c = &conns[events[e].data.u64];
			ssize_t got;
			while ((got = read(c->fd, c->in + c->in_used,
					sizeof c->in - c->in_used)) > 0)
				c->in_used += (size_t)got;
			http_drain(c);
		}
		bool idle = true;
		for (size_t i = 0; i < LIKE_CONNECTIONS && idle; i++)
			idle = !conns[i].busy;
		if (sent >= total && idle &&
			latencies_now(s) - matched_before >= like_ok - ok_before)
			break;
	}
	*next_pair = first + sent;
	double elapsed_s = (double)(now_ns() - start) / 1e9;
	size_t matched = latencies_now(s) - matched_before;
	printf("like push at %u/s: %zu likes sent (%" PRIu64 " 2xx), %zu "
	       "notifications matched in %.1f s%s\n",
		rate, sent, like_ok - ok_before, matched, elapsed_s,
		behind > 0 ? " (the sender fell behind the pace)" : "");
	if (matched == 0)
		return;
	uint64_t *l = s->latency_ns + matched_before;
	qsort(l, matched, sizeof *l, cmp_u64);
	char name[64];
	double window_s = (double)(__atomic_load_n(&s->last_match_ns,
				  __ATOMIC_RELAXED) - start) / 1e9;
	snprintf(name, sizeof name, "like_push_at_%u_rate", rate);
	figure(name, (double)matched / (window_s > 0 ? window_s : elapsed_s),
		"pushes/s");
	snprintf(name, sizeof name, "like_push_at_%u_p50_ms", rate);
	figure(name, (double)l[matched / 2] / 1e6, "ms");
	snprintf(name, sizeof name, "like_push_at_%u_p99_ms", rate);
	figure(name, (double)l[matched * 99 / 100] / 1e6, "ms");
	like_split_print(s, first, *next_pair);
}

static void
bench_like_push(void)
{
	node n;
	if (!node_start(&n, "like", NULL))
		return;
	char users[400], posts[400];
	snprintf(users, sizeof users, "%s/like-users.txt", tmp_root);
	snprintf(posts, sizeof posts, "%s/like-posts.txt", tmp_root);
	char likers[16], author_posts[16];
	snprintf(likers, sizeof likers, "%u", LIKE_LIKERS + 1);
	snprintf(author_posts, sizeof author_posts, "%u", LIKE_POSTS);
	const char *args[] = {"--users", likers, "--prefix", "lk", "--media",
		"--author-posts", author_posts, "--posts-out", posts, NULL};
	char name[64], media[64];
	
	if (!setup(&n, users, args) || !load_posts(posts)) {
		stop(n.pid);
		return;
	}
	for (size_t i = 0; i <= LIKE_LIKERS; i++)
		user_line(users, i, name, like_tokens[i], media,
			i > 0 ? &liker_ids[i - 1] : NULL);
	int ws = ws_open_blocking(n.port, like_tokens[0]);
	if (ws < 0) {
		printf("skip like push: the author's stream did not open\n");
		stop(n.pid);
		return;
	}
	static like_state s;
	size_t pairs = LIKE_LIKERS * post_count;
	s.sent_ns = calloc(pairs, sizeof *s.sent_ns);
	s.latency_ns = calloc(pairs, sizeof *s.latency_ns);
	s.frame_at = calloc(pairs, sizeof *s.frame_at);
	like_sent_at = calloc(pairs, sizeof *like_sent_at);
	like_answered_at = calloc(pairs, sizeof *like_answered_at);
	like_conn *conns = calloc(LIKE_CONNECTIONS, sizeof *conns);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN};
	/* Blocking reads that wake every 100 ms to see whether to stop. */
	struct timeval tick = {.tv_sec = 0, .tv_usec = 100000};
	setsockopt(ws, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
	s.ws_fd = ws;
	pthread_t reader;
	if (pthread_create(&reader, NULL, like_reader, &s) != 0) {
		printf("skip like push: no reader thread\n");
		stop(n.pid);
		return;
	}
	for (size_t i = 0; i < LIKE_CONNECTIONS; i++) {
		conns[i].fd = connect_local(n.port, NULL);
		int one = 1;
		setsockopt(conns[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
		ev.data.u64 = i;
		epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
	}
	/* Two paced phases on disjoint (liker, post) pairs: a moderate rate
	 * and the target rate. */
	static const uint32_t rates[] = {1000u, LIKE_RATE_PER_S};
	size_t next = 0;
	for (size_t ph = 0; ph < sizeof rates / sizeof rates[0]; ph++)
		like_phase(&s, ep, conns, rates[ph], &next);
	__atomic_store_n(&s.stop, true, __ATOMIC_RELEASE);
	pthread_join(reader, NULL);
	for (size_t i = 0; i < LIKE_CONNECTIONS; i++)
		close(conns[i].fd);
	close(ws);
	close(ep);
	stop(n.pid);
	free(s.sent_ns);
	free(s.latency_ns);
	free(s.frame_at);
	free(like_sent_at);
	free(like_answered_at);
	like_sent_at = like_answered_at = NULL;
	free(conns);
}

/* ---- 4. idle authenticated WebSockets --------------------------------------- */

/* Reads what the server sent an idle socket: answers pings with pongs;
 * false when the socket closed. */
static bool
answer_pings(int fd)
{
	unsigned char buf[512];
	ssize_t got = read(fd, buf, sizeof buf);
	if (got == 0)
		return false;
	if (got < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK;
	size_t off = 0;
	while (off + 2 <= (size_t)got) {
		unsigned op = buf[off] & 0x0f;
		size_t n = buf[off + 1] & 0x7f;
		if (n > 125 || off + 2 + n > (size_t)got)
			break;
		if (op == 8)
			return false;
		if (op == 9) {
			unsigned char pong[140];
			pong[0] = 0x8a;
			pong[1] = (unsigned char)(0x80 | n);
			memcpy(pong + 2, "\x05\x06\x07\x08", 4);
			for (size_t i = 0; i < n; i++)
				pong[6 + i] = buf[off + 2 + i] ^ pong[2 + (i % 4)];
			ssize_t w = write(fd, pong, 6 + n);
			(void)w;
		}
		off += 2 + n;
	}
	return true;
}

typedef struct ws_slot {
	int fd;
	uint8_t state; /* 0 connecting, 1 sent, 2 open, 3 failed */
	uint16_t got;
} ws_slot;

static void
raise_fd_limit(rlim_t want)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	unsigned long nr_open = 1048576;
	if (f != NULL) {
		if (fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 1048576;
		fclose(f);
	}
	if (want > nr_open)
		want = nr_open;
	if (rl.rlim_max < want)
		rl.rlim_max = want; /* root may raise the hard limit */
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* One client process's share of the idle streams: opens `count`
 * streams to `port` (tokens from `first` on, WS_PER_USER per user), writes
 * "opened failed lost seconds\n" to `report` once the connect phase ends,
 * then holds them open, answering pings, until `hold` reads end of file.
 * Each client process has its own descriptor budget. */
static void
idle_client(int port, char **tokens, uint32_t loaded, uint32_t first,
	uint32_t count, int report, int hold)
{
	ws_slot *slots = calloc(count, sizeof *slots);
	int ep = epoll_create1(0);
	uint32_t opened = 0, failed = 0, started = 0, in_flight = 0, lost = 0;
	uint64_t deadline = now_ns() + (uint64_t)WS_CONNECT_SECONDS_MAX * 1000000000u;
	uint64_t t0 = now_ns();
	while (opened + failed < count && now_ns() < deadline) {
		while (started < count && in_flight < WS_HANDSHAKES_IN_FLIGHT) {
			ws_slot *s = &slots[started];
			char source[32];
			snprintf(source, sizeof source, "127.0.1.%u",
				2 + (first + started) % WS_SOURCE_ADDRESSES);
			s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			struct sockaddr_in src = {.sin_family = AF_INET};
			inet_pton(AF_INET, source, &src.sin_addr);
			struct sockaddr_in dst = {.sin_family = AF_INET};
			dst.sin_port = htons((uint16_t)port);
			dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (s->fd < 0 ||
				bind(s->fd, (struct sockaddr *)&src, sizeof src) != 0 ||
				(connect(s->fd, (struct sockaddr *)&dst, sizeof dst) != 0 &&
					errno != EINPROGRESS)) {
				if (s->fd >= 0)
					close(s->fd);
				s->fd = -1;
				s->state = 3;
				failed++;
				started++;
				continue;
			}
			struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN,
				.data.u32 = started};
			epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
			started++;
			in_flight++;
		}
		struct epoll_event events[1024];
		int k = epoll_wait(ep, events, 1024, 10);
		for (int e = 0; e < k; e++) {
			uint32_t i = events[e].data.u32;
			ws_slot *s = &slots[i];
			if (s->state == 0 && (events[e].events & EPOLLOUT)) {
				char req[2048];
				int len = ws_request(req, sizeof req,
					tokens[((first + i) / WS_PER_USER) % loaded]);
				if (write(s->fd, req, (size_t)len) != len) {
					s->state = 3;
				} else {
					s->state = 1;
					struct epoll_event ev = {.events = EPOLLIN,
						.data.u32 = i};
					epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
				}
			} else if (s->state == 1 && (events[e].events & EPOLLIN)) {
				char resp[512];
				ssize_t got = read(s->fd, resp, sizeof resp - 1);
				if (got > 12 && memcmp(resp + 9, "101", 3) == 0)
					s->state = 2;
				else
					s->state = 3;
			} else if (events[e].events & (EPOLLERR | EPOLLHUP)) {
				s->state = 3;
			}
			if (s->state == 2 && s->got == 0) {
				/* Open: keep reading, to answer pings. */
				s->got = 1;
				in_flight--;
				opened++;
			} else if (s->state == 2 && (events[e].events & EPOLLIN)) {
				if (!answer_pings(s->fd))
					s->state = 3;
			}
			if (s->state == 3 && s->fd >= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
				if (s->got == 0) {
					in_flight--;
					failed++;
				} else {
					opened--;
					lost++;
				}
				close(s->fd);
				s->fd = -1;
			}
		}
	}
	double connect_s = (double)(now_ns() - t0) / 1e9;
	/* Hold them idle a moment (answering pings) before reporting. */
	uint64_t hold_until = now_ns() + 3000000000ull;
	struct epoll_event hev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	bool reported = false;
	for (;;) {
		if (!reported && now_ns() >= hold_until) {
			char line[128];
			int n = snprintf(line, sizeof line, "%u %u %u %.1f\n", opened,
				failed, lost, connect_s);
			if (write(report, line, (size_t)n) != n)
				break;
			reported = true;
			epoll_ctl(ep, EPOLL_CTL_ADD, hold, &hev);
		}
		struct epoll_event events[1024];
		int k = epoll_wait(ep, events, 1024, 50);
		bool done = false;
		for (int e = 0; e < k; e++) {
			if (events[e].data.u32 == UINT32_MAX) {
				done = true;
				continue;
			}
			ws_slot *s = &slots[events[e].data.u32];
			if (s->state == 2 && !answer_pings(s->fd)) {
				s->state = 3;
				opened--;
				lost++;
				epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
				close(s->fd);
				s->fd = -1;
			}
		}
		if (done)
			break;
	}
	for (uint32_t i = 0; i < started; i++)
		if (slots[i].fd >= 0)
			close(slots[i].fd);
	close(ep);
	free(slots);
}

/* Runs flockctl against the member at cluster port `port`. */
static bool
flockctl(int port, const char *a1, const char *a2)
{
	char exe[PATH_MAX + 16], node_arg[32];
	snprintf(exe, sizeof exe, "%s", flockd_path);
	char *slash = strrchr(exe, '/');
	snprintf(slash + 1, sizeof exe - (size_t)(slash + 1 - exe), "flockctl");
	snprintf(node_arg, sizeof node_arg, "127.0.0.1:%d", port);
	char *argv[] = {exe, "--node", node_arg, (char *)a1, (char *)a2, NULL};
	char out[4096];
	int rc = run_capture(argv, NULL, out, sizeof out);
	if (rc != 0)
		fprintf(stderr, "bench: flockctl %s %s: %d %s\n", a1,
			a2 != NULL ? a2 : "", rc, out);
	return rc == 0;
}

/* Starts `count` flockd nodes: one alone, or a cluster on loopback that
 * shares one token key, every member added and the ring rebalanced. */
static int
idle_nodes_start(node *nodes, int count)
{
	if (count == 1)
		return node_start(&nodes[0], "idle", NULL) ? 1 : 0;
	char key[300], name[16], nname[16], cluster[8][32];
	snprintf(key, sizeof key, "%s/idle-token.key", tmp_root);
	int base = 20000 + (int)(getpid() % 500) * 20;
	for (int i = 0; i < count; i++)
		snprintf(cluster[i], sizeof cluster[i], "127.0.0.1:%d",
			base + i * 2);
	int started = 0;
	for (int i = 0; i < count; i++) {
		snprintf(name, sizeof name, "idle%d", i + 1);
		snprintf(nname, sizeof nname, "n%d", i + 1);
		const char *extra[] = {"--cluster", cluster[i], "--node-name",
			nname, "--token-key-file", key, "--join", cluster[0], NULL};
		if (i == 0)
			extra[6] = NULL;
		if (!node_start(&nodes[i], name, extra))
			break;
		started++;
	}
	bool ok = started == count;
	for (int i = 1; ok && i < count; i++)
		ok = flockctl(base, "add", cluster[i]);
	if (ok)
		ok = flockctl(base, "rebalance", NULL);
	if (!ok) {
		for (int i = 0; i < started; i++)
			stop(nodes[i].pid);
		return 0;
	}
	return count;
}

#define WS_NODES_MAX 8

static void
bench_idle_streams(void)
{
	uint32_t target = WS_TARGET_DEFAULT;
	const char *t = getenv("FLOCK_BENCH_WS_CONNECTIONS");
	if (t != NULL && atoi(t) > 0)
		target = (uint32_t)atoi(t);
	raise_fd_limit((rlim_t)target + 10000);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	/* One process holds at most its descriptor limit less a margin for
	 * the node's own files. Past that, the streams spread over a cluster
	 * of nodes on this machine, each with its own client process. */
	uint32_t per_process = rl.rlim_cur > 2000 ? (uint32_t)(rl.rlim_cur - 1000)
						  : 0;
	if (per_process == 0) {
		printf("skip idle streams: no file descriptors to spare\n");
		return;
	}
	int nodes_n = (int)((target + per_process - 1) / per_process);
	if (nodes_n > WS_NODES_MAX) {
		nodes_n = WS_NODES_MAX;
		target = per_process * WS_NODES_MAX;
	}
	if (nodes_n > 1)
		printf("idle streams: fd limit %llu per process, so %u streams "
		       "over a %d-node cluster on this machine\n",
			(unsigned long long)rl.rlim_cur, target, nodes_n);
	node nodes[WS_NODES_MAX];
	if (idle_nodes_start(nodes, nodes_n) != nodes_n) {
		fprintf(stderr, "bench: idle streams: %d flockd nodes did not "
			"start as one cluster\n", nodes_n);
		bench_failed = true;
		return;
	}
	uint32_t users_count = (target + WS_PER_USER - 1) / WS_PER_USER;
	char users[400], count[16];
	snprintf(users, sizeof users, "%s/idle-users.txt", tmp_root);
	snprintf(count, sizeof count, "%u", users_count);
	const char *args[] = {"--users", count, "--prefix", "w", "--threads",
		"16", NULL};
	uint64_t t0 = now_ns();
	bool ok = setup(&nodes[0], users, args);
	char **tokens = calloc(users_count, sizeof *tokens);
	uint32_t loaded = 0;
	if (ok) {
		printf("idle streams: %u users in %.1f s\n", users_count,
			(double)(now_ns() - t0) / 1e9);
		FILE *f = fopen(users, "r");
		char line[2048];
		while (f != NULL && loaded < users_count &&
			fgets(line, sizeof line, f)) {
			char name[64], id[64], token[1024], media[64];
			if (sscanf(line, "%63s %63s %1023s %63s", name, id, token,
				    media) == 4)
				tokens[loaded++] = strdup(token);
		}
		if (f != NULL)
			fclose(f);
		ok = loaded > 0;
	}
	if (ok) {
		sleep(1);
		uint64_t rss_before = 0;
		for (int i = 0; i < nodes_n; i++)
			rss_before += rss_bytes(nodes[i].pid);
		/* Node i's client opens its share; a stream on node i subscribes
		 * to a user whose actor may live on any node. */
		pid_t clients[WS_NODES_MAX];
		int reports[WS_NODES_MAX], holds[WS_NODES_MAX];
		uint32_t share = (target + (uint32_t)nodes_n - 1) / (uint32_t)nodes_n;
		for (int i = 0; i < nodes_n; i++) {
			int rp[2], hp[2];
			if (pipe(rp) != 0 || pipe(hp) != 0)
				exit(2);
			uint32_t first = share * (uint32_t)i;
			uint32_t n = first >= target ? 0 :
				(target - first < share ? target - first : share);
			fflush(stdout);
			clients[i] = fork();
			if (clients[i] == 0) {
				/* Only the parent may hold the write ends of the
				 * hold pipes, or a client never sees its end. */
				for (int j = 0; j < i; j++) {
					close(holds[j]);
					close(reports[j]);
				}
				close(rp[0]);
				close(hp[1]);
				idle_client(nodes[i].port, tokens, loaded, first, n,
					rp[1], hp[0]);
				_exit(0);
			}
			close(rp[1]);
			close(hp[0]);
			reports[i] = rp[0];
			holds[i] = hp[1];
		}
		uint32_t opened = 0, failed = 0, lost = 0;
		double connect_s = 0;
		for (int i = 0; i < nodes_n; i++) {
			char line[128] = {0};
			ssize_t got = read(reports[i], line, sizeof line - 1);
			unsigned o = 0, f = 0, l = 0;
			double s = 0;
			if (got > 0 && sscanf(line, "%u %u %u %lf", &o, &f, &l, &s) == 4) {
				opened += o;
				failed += f;
				lost += l;
				if (s > connect_s)
					connect_s = s;
			}
		}
		uint64_t rss_after = 0, streams = 0;
		for (int i = 0; i < nodes_n; i++) {
			rss_after += rss_bytes(nodes[i].pid);
			char metrics[RESPONSE_BYTES_MAX / 4];
			size_t ml = 0;
			if (http_get(nodes[i].port, "/metrics", "x", metrics,
				    sizeof metrics, &ml) == 200) {
				char *p = strstr(metrics, "\nflock_ws_streams_open ");
				if (p != NULL)
					streams += strtoull(p + 23, NULL, 10);
			}
		}
		for (int i = 0; i < nodes_n; i++) {
			close(holds[i]);
			close(reports[i]);
			waitpid(clients[i], NULL, 0);
		}
		printf("idle streams: %u open, %u failed, %u closed by the server, "
		       "in %.1f s; %" PRIu64 " live streams in /metrics; RSS %.1f "
		       "-> %.1f MiB over %d node%s; fd limit %llu per process\n",
			opened, failed, lost, connect_s, streams,
			rss_before / 1048576.0, rss_after / 1048576.0, nodes_n,
			nodes_n == 1 ? "" : "s", (unsigned long long)rl.rlim_cur);
		figure("ws_idle_connections", opened, "connections");
		figure("ws_idle_nodes", nodes_n, "processes");
		if (opened > 0)
			figure("ws_rss_per_connection",
				(double)(rss_after > rss_before ?
						 rss_after - rss_before : 0) / opened,
				"bytes");
	}
	for (int i = nodes_n - 1; i >= 0; i--)
		stop(nodes[i].pid);
	for (uint32_t i = 0; i < loaded; i++)
		free(tokens[i]);
	free(tokens);
}

/* ---- main ---------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	locate();
	if (!executable(flockd_path)) {
		printf("skip gateway bench: no flockd at %s\n", flockd_path);
		return 0;
	}
	snprintf(tmp_root, sizeof tmp_root, "/tmp/flock-gw-bench-XXXXXX");
	if (mkdtemp(tmp_root) == NULL)
		return 1;
	chmod(tmp_root, 0755);
	const char *only = argc > 1 ? argv[1] : "";
	if (only[0] == '\0' || strcmp(only, "feed") == 0)
		bench_feed();
	if (only[0] == '\0' || strcmp(only, "mix") == 0)
		bench_mix();
	if (only[0] == '\0' || strcmp(only, "like") == 0)
		bench_like_push();
	if (only[0] == '\0' || strcmp(only, "idle") == 0)
		bench_idle_streams();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "bench: could not remove %s\n", tmp_root);
	return bench_failed ? 1 : 0;
}
