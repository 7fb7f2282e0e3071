/*
 * actors_fanout_bench.c — one post fanned out into 100,000 followers'
 * home timelines through the real actors and api (journal and snapshots
 * on, in a temp dir), end to end until every follower's timeline holds
 * it, against Redis doing the same the way Twitter's and Mastodon's
 * timelines do it (LPUSH + LTRIM 800 per follower, pipelined), in the
 * same run on the same machine.
 *
 * flock: one author and FOLLOWERS followers, signed up and following
 * through the api first (not timed); the author is below the celebrity
 * threshold, so its posts are pushed. A round is api_post_create by the
 * author, timed until the last follower's actor has put the post in its
 * timeline (api_config.timeline_observer counts them); the post's own
 * answer (its record durable) is timed too. What a follower holds is
 * recoverable after a crash: the author's post record is journaled
 * before the answer and the push is re-driven until every follower
 * acknowledged it durably (actors/user.c).
 *
 * Redis: the Debian redis-server, started here on a free 127.0.0.1 port
 * with --save "" --appendonly no in a temp dir and stopped at the end
 * (so Redis keeps nothing durable: the comparison favours it). A round
 * pushes one post id onto FOLLOWERS lists "timeline:<follower id>" and
 * trims each to 800, driven two ways: `redis-cli --pipe` fed generated
 * RESP (its fastest client mode; the RESP is written before the clock
 * starts), and a small C client on one socket sending batches of 1,000
 * commands and reading their 1,000 replies before the next batch.
 *
 * Figures: each system's first round (fresh timelines, new lists) and
 * the median of all ROUNDS rounds, in seconds and followers per second;
 * `ratio actors_fanout redis <flock / faster Redis>` on the medians
 * (above 1 favours flock; goal >= 10). Also the process's CPU seconds
 * per flock round (steadier than wall time on a loaded machine) and the
 * 1-minute load average.
 *
 * Usage: actors_fanout_bench [followers] [--no-redis]
 * Skips the Redis half (no ratio, a note on stderr) when redis-server
 * or redis-cli is missing: `make bench` installs them (PACKAGES_BENCH).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "actors/api.h"
#include "tests/bench/port.h"
#include "persistence/persistence.h"

/* The size: one post into 100,000 timelines. */
#define FANOUT_FOLLOWERS_DEFAULT 100000u
/* Rounds per system: the first (cold) and warm ones; the median of all
 * is the figure the ratio uses. */
#define FANOUT_ROUNDS 5u
/* Calls in flight while the graph is loaded. */
#define FANOUT_LOAD_CONCURRENCY 1000u
/* Timelines keep this many entries (Twitter's 800; flock's default). */
#define FANOUT_TIMELINE_ENTRIES 800u
/* Commands the C client sends before reading their replies. */
#define REDIS_BATCH_COMMANDS 1000u
/* Longest wait for one completion, a round, or Redis to start. */
#define FANOUT_WAIT_MS 120000u
/* Followers whose feeds are read back after the rounds (spread evenly). */
#define FANOUT_VERIFY_SAMPLE 500u

/* Process CPU seconds (user + system, every thread). */
static double
cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double
now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "actors_fanout_bench: %s\n", what);
	exit(1);
}

static int
by_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : (a > b ? 1 : 0);
}

static double
median(const double *v, size_t n)
{
	double s[FANOUT_ROUNDS];
	memcpy(s, v, n * sizeof *s);
	qsort(s, n, sizeof *s, by_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- flock ------------------------------------------------------------------ */

typedef struct flock_env {
	rt_runtime *rt;
	ps_node *node;
	api *a;
	api_client *c;
	char dir[64];
	uint64_t author;
	uint64_t *followers; /* user ids */
	uint32_t followers_count;
} flock_env;

static atomic_ullong inserts; /* timeline inserts applied, all rounds */
static atomic_ullong inserts_target; /* the round's last insert */
static sem_t round_done;            /* posted at that insert */

static void
observe(void *arg, uint64_t follower_id, uint64_t post_id)
{
	(void)arg;
	(void)follower_id;
	(void)post_id;
	unsigned long long n = atomic_fetch_add_explicit(&inserts, 1,
		memory_order_relaxed) + 1;
	if (n == atomic_load_explicit(&inserts_target, memory_order_relaxed))
		sem_post(&round_done);
}

typedef struct call {
	bool busy;
	int code;
	uint64_t *id_out;   /* signup: the new user's id */
	uint64_t post_id;   /* post: its id */
	double done_at;
} call;

static uint32_t in_flight;
static int first_error;

static void
call_done(void *arg, const api_result *r)
{
	call *k = arg;
	k->busy = false;
	k->code = r->code;
	k->done_at = now_seconds();
	in_flight--;
	if (r->code != API_OK && r->code != API_ECONFLICT && first_error == 0)
		first_error = r->code;
	if (r->code == API_OK && r->body != NULL) {
		if (k->id_out != NULL)
			*k->id_out = api_body_id(r->body, "user_id");
		k->post_id = api_body_id(r->body, "post_id");
	}
}

static call *
free_call(flock_env *e, call *calls, uint32_t n)
{
	while (in_flight >= n)
		if (api_client_wait(e->c, FANOUT_WAIT_MS) == 0)
			die("a load call never completed");
	for (uint32_t i = 0; i < n; i++)
		if (!calls[i].busy)
			return &calls[i];
	die("no free call");
	return NULL;
}

static void
drain(flock_env *e)
{
	while (in_flight > 0)
		if (api_client_wait(e->c, FANOUT_WAIT_MS) == 0)
			die("a load call never completed");
	if (first_error != 0) {
		fprintf(stderr, "actors_fanout_bench: load: %s\n",
			api_strerror(first_error));
		exit(1);
	}
}

static const char password_hash[] =
	"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA";

static void
flock_signup(flock_env *e, call *calls, const char *name, uint64_t *id_out)
{
	call *k = free_call(e, calls, FANOUT_LOAD_CONCURRENCY);
	*k = (call){.busy = true, .id_out = id_out};
	char email[64];
	snprintf(email, sizeof email, "%s@example.com", name);
	api_ctx ctx = {0};
	if (api_signup_prehashed(e->c, &ctx, name, email, password_hash,
		    call_done, k) != 0)
		die("signup refused");
	in_flight++;
}

static void
flock_open(flock_env *e, uint32_t followers)
{
	memset(e, 0, sizeof *e);
	snprintf(e->dir, sizeof e->dir, "/tmp/flock-fanout-XXXXXX");
	if (mkdtemp(e->dir) == NULL)
		die("mkdtemp");
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 2;
	rc.log_level = RT_LOG_WARN;
	rc.node_name = "fanout";
	api_config cfg;
	api_config_default(&cfg);
	/* The author's posts are pushed (a celebrity's would be pulled at
	 * read time instead: no fan-out to measure). */
	cfg.celebrity_followers_min = followers + 1;
	cfg.timeline_entries_max = FANOUT_TIMELINE_ENTRIES;
	/* 100,000 follows and a few posts in seconds are far past any
	 * per-user bucket; the bench measures the fan-out, not 429s. */
	cfg.rate_likes = (api_rate){0, 0};
	cfg.rate_posts = (api_rate){0, 0};
	cfg.rate_comments = (api_rate){0, 0};
	cfg.rate_follows = (api_rate){0, 0};
	cfg.timeline_observer = observe;
	if (rt_create(&rc, &e->rt) != 0 ||
		api_create(e->rt, NULL, &cfg, &e->a) != 0)
		die("runtime or api");
	if (ps_node_open(e->dir, e->rt, NULL, NULL, &e->node) != 0)
		die("ps_node_open");
	api_bind_store(e->a, e->node);
	if (rt_start(e->rt) != 0 ||
		api_client_create(e->a, NULL, NULL, &e->c) != 0)
		die("start");
	e->followers = calloc(followers, sizeof *e->followers);
	if (e->followers == NULL)
		die("out of memory");
	e->followers_count = followers;
}

typedef struct feed_count {
	bool done;
	int64_t followers;
} feed_count;

static void
count_done(void *arg, const api_result *r)
{
	feed_count *c = arg;
	c->done = true;
	c->followers = r->code == API_OK
		? api_body_int(r->body, "followers_count", -1) : -1;
}

static void
flock_load(flock_env *e)
{
	call *calls = calloc(FANOUT_LOAD_CONCURRENCY, sizeof *calls);
	if (calls == NULL)
		die("out of memory");
	flock_signup(e, calls, "author", &e->author);
	for (uint32_t i = 0; i < e->followers_count; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%u", i);
		flock_signup(e, calls, name, &e->followers[i]);
	}
	drain(e);
	for (uint32_t i = 0; i < e->followers_count; i++) {
		call *k = free_call(e, calls, FANOUT_LOAD_CONCURRENCY);
		*k = (call){.busy = true};
		api_ctx ctx = {.user_id = e->followers[i]};
		if (api_follow(e->c, &ctx, "author", true, call_done, k) != 0)
			die("follow refused");
		in_flight++;
	}
	drain(e);
	free(calls);
	/* A follow answers once the follower's record is durable; the
	 * author learns of it through an effect right after. Post only
	 * once the author counts every follower. */
	for (int tries = 0;; tries++) {
		feed_count c = {0};
		api_ctx none = {0};
		if (api_user_get(e->c, &none, "author", count_done, &c) != 0)
			die("profile refused");
		while (!c.done)
			if (api_client_wait(e->c, FANOUT_WAIT_MS) == 0)
				die("a profile read never completed");
		if (c.followers == (int64_t)e->followers_count)
			break;
		if (tries == 12000)
			die("the author never counted every follower");
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* One post; returns the seconds until every follower's timeline holds
 * it (*ack_out: until the post's own answer). */
static double
flock_round(flock_env *e, uint32_t round, uint64_t *post_out,
	double *ack_out, double *cpu_out)
{
	unsigned long long target = (unsigned long long)e->followers_count *
		(round + 1u);
	call k = {.busy = true};
	api_ctx ctx = {.user_id = e->author};
	char caption[64];
	snprintf(caption, sizeof caption, "fan-out round %u #bench", round);
	atomic_store(&inserts_target, target);
	double c0 = cpu_seconds();
	double t0 = now_seconds();
	if (api_post_create(e->c, &ctx, caption, 0, call_done, &k) != 0)
		die("post refused");
	in_flight++;
	/* The post's answer, then the last insert (the observer posts the
	 * semaphore on the worker that applied it): blocking waits, so this
	 * thread takes no CPU from the workers meanwhile. */
	while (k.busy)
		if (api_client_wait(e->c, FANOUT_WAIT_MS) == 0)
			die("a post never completed");
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += FANOUT_WAIT_MS / 1000u;
	while (sem_timedwait(&round_done, &deadline) != 0)
		if (errno != EINTR)
			die("a fan-out never completed");
	double done = now_seconds();
	*cpu_out = cpu_seconds() - c0;
	if (atomic_load(&inserts) < target)
		die("short fan-out");
	if (k.code != API_OK)
		die("post failed");
	*post_out = k.post_id;
	*ack_out = k.done_at - t0;
	return done - t0;
}

typedef struct feed_check {
	bool done;
	int code;
	uint32_t found;
	const uint64_t *posts;
	uint32_t posts_count;
} feed_check;

static void
feed_done(void *arg, const api_result *r)
{
	feed_check *f = arg;
	f->done = true;
	f->code = r->code;
	const msgpack_object *items = api_body_get(r->body, "items");
	if (r->code != API_OK || items == NULL ||
		items->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		uint64_t id = api_body_id(&items->via.array.ptr[i], "post_id");
		for (uint32_t j = 0; j < f->posts_count; j++)
			f->found += id == f->posts[j];
	}
}

/* Reads back a sample of followers' feeds: each holds every post. */
static void
flock_verify(flock_env *e, const uint64_t *posts, uint32_t posts_count)
{
	uint32_t step = e->followers_count / FANOUT_VERIFY_SAMPLE;
	if (step == 0)
		step = 1;
	for (uint32_t i = 0; i < e->followers_count; i += step) {
		feed_check f = {.posts = posts, .posts_count = posts_count};
		api_ctx ctx = {.user_id = e->followers[i]};
		api_page page = {API_PAGE_LIMIT_MAX, NULL};
		if (api_feed(e->c, &ctx, &page, feed_done, &f) != 0)
			die("feed refused");
		while (!f.done)
			if (api_client_wait(e->c, FANOUT_WAIT_MS) == 0)
				die("a feed read never completed");
		if (f.code != API_OK || f.found != posts_count) {
			fprintf(stderr, "actors_fanout_bench: follower %u sees "
				"%u of %u posts (code %d)\n", i, f.found,
				posts_count, f.code);
			exit(1);
		}
	}
}

/* Waits until the node is quiet (acknowledgements of the last pushes
 * and their records settle), so stopping drops nothing in flight. */
static void
flock_settle(flock_env *e)
{
	/* Past the redrive timers armed by the last calls (2 s). */
	struct timespec first = {2, 500 * 1000 * 1000};
	nanosleep(&first, NULL);
	rt_stats before, after;
	rt_get_stats(e->rt, &before);
	for (int i = 0; i < 600; i++) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		rt_get_stats(e->rt, &after);
		if (after.messages_delivered_total ==
			before.messages_delivered_total)
			return;
		before = after;
	}
}

static void
flock_close(flock_env *e)
{
	flock_settle(e);
	api_client_destroy(e->c);
	rt_stop(e->rt);
	ps_node_close(e->node);
	api_destroy(e->a);
	rt_destroy(e->rt);
	free(e->followers);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "actors_fanout_bench: could not remove %s\n",
			e->dir);
}

/* ---- Redis ------------------------------------------------------------------- */

typedef struct redis_env {
	pid_t pid;
	int port;
	char dir[64];
	char cli[256];
} redis_env;

static bool
find_program(const char *name, char *out, size_t size)
{
	const char *path = getenv("PATH");
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path != NULL ? path
						       : "/usr/bin:/bin");
	for (char *dir = strtok(buf, ":"); dir != NULL;
		dir = strtok(NULL, ":")) {
		snprintf(out, size, "%s/%s", dir, name);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

static int
redis_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = {.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static bool
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Reads until `replies` simple replies (+..., :..., -...) arrived;
 * returns how many were errors, or -1 on a broken connection. */
static long
read_replies(int fd, uint32_t replies)
{
	static char buf[1 << 16];
	long errors = 0;
	bool line_start = true;
	while (replies > 0) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n; i++) {
			if (line_start && buf[i] == '-')
				errors++;
			line_start = buf[i] == '\n';
			if (line_start)
				replies--;
		}
	}
	return errors;
}

static bool
redis_command(int port, const char *resp, uint32_t replies)
{
	int fd = redis_connect(port);
	if (fd < 0)
		return false;
	bool ok = write_all(fd, resp, strlen(resp)) &&
		read_replies(fd, replies) == 0;
	close(fd);
	return ok;
}

static bool
redis_start(redis_env *r)
{
	char server[256];
	memset(r, 0, sizeof *r);
	if (!find_program("redis-server", server, sizeof server) ||
		!find_program("redis-cli", r->cli, sizeof r->cli)) {
		fprintf(stderr, "actors_fanout_bench: redis-server or redis-cli "
			"not found; `make bench` installs them (apt-get install "
			"-y redis-server): no Redis figures\n");
		return false;
	}
	snprintf(r->dir, sizeof r->dir, "/tmp/flock-redis-XXXXXX");
	if (mkdtemp(r->dir) == NULL)
		return false;
	r->port = free_port();
	if (r->port <= 0)
		return false;
	char port[16], log[128];
	snprintf(port, sizeof port, "%d", r->port);
	snprintf(log, sizeof log, "%s/redis.log", r->dir);
	r->pid = fork();
	if (r->pid < 0)
		return false;
	if (r->pid == 0) {
		execl(server, server, "--bind", "127.0.0.1", "--port", port,
			"--save", "", "--appendonly", "no", "--dir", r->dir,
			"--daemonize", "no", "--logfile", log, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		if (redis_command(r->port, "*1\r\n$4\r\nPING\r\n", 1))
			return true;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "actors_fanout_bench: redis-server did not answer "
		"(see %s)\n", log);
	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	r->pid = 0;
	return false;
}

static void
redis_stop(redis_env *r)
{
	if (r->pid > 0) {
		int fd = redis_connect(r->port);
		if (fd >= 0) {
			const char *cmd = "*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n";
			(void)write_all(fd, cmd, strlen(cmd));
			char c;
			(void)read(fd, &c, 1); /* EOF once it is gone */
			close(fd);
		}
		int status;
		for (int i = 0; i < 500; i++) {
			if (waitpid(r->pid, &status, WNOHANG) == r->pid)
				break;
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
			if (i == 499) {
				kill(r->pid, SIGKILL);
				waitpid(r->pid, &status, 0);
			}
		}
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
	if (r->dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "actors_fanout_bench: could not remove %s\n",
			r->dir);
}

/* RESP for one round: per follower LPUSH timeline:<id> <post> and LTRIM
 * timeline:<id> 0 799. Returns malloc'd bytes (*length_out). */
static char *
resp_round(const uint64_t *followers, uint32_t count, uint64_t post,
	size_t *length_out)
{
	size_t capacity = (size_t)count * 160u + 64u;
	char *out = malloc(capacity);
	if (out == NULL)
		die("out of memory");
	char value[24];
	int value_length = snprintf(value, sizeof value, "%llu",
		(unsigned long long)post);
	char stop[8];
	int stop_length = snprintf(stop, sizeof stop, "%u",
		FANOUT_TIMELINE_ENTRIES - 1u);
	size_t n = 0;
	for (uint32_t i = 0; i < count; i++) {
		char key[40];
		int key_length = snprintf(key, sizeof key, "timeline:%llu",
			(unsigned long long)followers[i]);
		n += (size_t)snprintf(out + n, capacity - n,
			"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
			"*4\r\n$5\r\nLTRIM\r\n$%d\r\n%s\r\n$1\r\n0\r\n$%d\r\n%s\r\n",
			key_length, key, value_length, value, key_length, key,
			stop_length, stop);
	}
	*length_out = n;
	return out;
}

/* redis-cli --pipe < file; returns seconds, or -1. */
static double
redis_pipe_round(redis_env *r, const char *resp, size_t length)
{
	char path[128];
	snprintf(path, sizeof path, "%s/round.resp", r->dir);
	FILE *f = fopen(path, "w");
	if (f == NULL || fwrite(resp, 1, length, f) != length) {
		if (f != NULL)
			fclose(f);
		return -1;
	}
	fclose(f);
	char port[16];
	snprintf(port, sizeof port, "%d", r->port);
	double t0 = now_seconds();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int in = open(path, O_RDONLY);
		int null = open("/dev/null", O_WRONLY);
		if (in < 0 || null < 0)
			_exit(127);
		dup2(in, 0);
		dup2(null, 1);
		execl(r->cli, r->cli, "-h", "127.0.0.1", "-p", port, "--pipe",
			(char *)NULL);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	double t = now_seconds() - t0;
	/* --pipe exits non-zero when any reply was an error. */
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? t : -1;
}

/* The C client: batches of REDIS_BATCH_COMMANDS commands, each batch's
 * replies read before the next goes out. Returns seconds, or -1. */
static double
redis_client_round(redis_env *r, const char *resp, size_t length)
{
	int fd = redis_connect(r->port);
	if (fd < 0)
		return -1;
	double t0 = now_seconds();
	size_t start = 0;
	bool ok = true;
	while (ok && start < length) {
		/* A batch ends after REDIS_BATCH_COMMANDS commands: every
		 * command here starts with '*' at a line start. */
		size_t end = start;
		uint32_t commands = 0;
		while (end < length) {
			if (resp[end] == '*' && (end == 0 || resp[end - 1] == '\n')) {
				if (commands == REDIS_BATCH_COMMANDS)
					break;
				commands++;
			}
			end++;
		}
		ok = write_all(fd, resp + start, end - start) &&
			read_replies(fd, commands) == 0;
		start = end;
	}
	double t = now_seconds() - t0;
	close(fd);
	return ok ? t : -1;
}

/* ---- main ---------------------------------------------------------------------- */

static void
report(const char *name, double value, const char *unit)
{
	printf("figure %s %.6g %s\n", name, value, unit);
	fflush(stdout);
}

static double
load_average(void)
{
	double load = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f != NULL) {
		if (fscanf(f, "%lf", &load) != 1)
			load = -1;
		fclose(f);
	}
	return load;
}

int
main(int argc, char **argv)
{
	uint32_t followers = FANOUT_FOLLOWERS_DEFAULT;
	bool with_redis = true;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-redis") == 0)
			with_redis = false;
		else
			followers = (uint32_t)strtoul(argv[i], NULL, 10);
	}
	if (followers == 0)
		die("usage: actors_fanout_bench [followers] [--no-redis]");
	report("load_average_1m", load_average(), "load");

	flock_env e;
	if (sem_init(&round_done, 0, 0) != 0)
		die("sem_init");
	flock_open(&e, followers);
	double t0 = now_seconds();
	flock_load(&e);
	report("actors_fanout_setup_seconds", now_seconds() - t0, "s");
	/* The load's own tail (effects confirmed, their redrive timers run
	 * out) must not run inside the first rounds. */
	flock_settle(&e);
	double flock_s[FANOUT_ROUNDS], ack_s[FANOUT_ROUNDS];
	double cpu_s[FANOUT_ROUNDS];
	uint64_t posts[FANOUT_ROUNDS];
	for (uint32_t i = 0; i < FANOUT_ROUNDS; i++) {
		flock_s[i] = flock_round(&e, i, &posts[i], &ack_s[i],
			&cpu_s[i]);
		fprintf(stderr, "flock round %u: %.4f s, %.4f CPU s (post "
			"answered after %.4f s)\n", i, flock_s[i], cpu_s[i],
			ack_s[i]);
	}
	flock_verify(&e, posts, FANOUT_ROUNDS);
	report("actors_fanout_first_seconds", flock_s[0], "s");
	report("actors_fanout_first_followers_per_second",
		followers / flock_s[0], "followers/s");
	report("actors_fanout_seconds", median(flock_s, FANOUT_ROUNDS), "s");
	report("actors_fanout_followers_per_second",
		followers / median(flock_s, FANOUT_ROUNDS), "followers/s");
	report("actors_fanout_post_ack_seconds", median(ack_s, FANOUT_ROUNDS),
		"s");
	report("actors_fanout_cpu_seconds", median(cpu_s, FANOUT_ROUNDS), "s");
	double flock_rate = followers / median(flock_s, FANOUT_ROUNDS);

	redis_env r;
	if (!with_redis || !redis_start(&r)) {
		flock_close(&e);
		return 0;
	}
	double pipe_s[FANOUT_ROUNDS], client_s[FANOUT_ROUNDS];
	bool ok = true;
	for (uint32_t i = 0; ok && i < FANOUT_ROUNDS; i++) {
		size_t length;
		char *resp = resp_round(e.followers, followers, posts[i], &length);
		pipe_s[i] = redis_pipe_round(&r, resp, length);
		free(resp);
		ok = pipe_s[i] > 0;
	}
	/* The client pushes the same posts to another set of lists, so its
	 * first round also starts from empty lists. */
	for (uint32_t i = 0; ok && i < followers; i++)
		e.followers[i] ^= 1ull << 63;
	for (uint32_t i = 0; ok && i < FANOUT_ROUNDS; i++) {
		size_t length;
		char *resp = resp_round(e.followers, followers, posts[i], &length);
		client_s[i] = redis_client_round(&r, resp, length);
		free(resp);
		ok = client_s[i] > 0;
	}
	for (uint32_t i = 0; i < followers; i++)
		e.followers[i] ^= 1ull << 63;
	redis_stop(&r);
	flock_close(&e);
	if (!ok)
		die("a Redis round failed");
	report("redis_fanout_pipe_first_seconds", pipe_s[0], "s");
	report("redis_fanout_pipe_seconds", median(pipe_s, FANOUT_ROUNDS), "s");
	report("redis_fanout_pipe_followers_per_second",
		followers / median(pipe_s, FANOUT_ROUNDS), "followers/s");
	report("redis_fanout_client_first_seconds", client_s[0], "s");
	report("redis_fanout_client_seconds", median(client_s, FANOUT_ROUNDS),
		"s");
	report("redis_fanout_client_followers_per_second",
		followers / median(client_s, FANOUT_ROUNDS), "followers/s");
	double redis_rate = followers / median(pipe_s, FANOUT_ROUNDS);
	double client_rate = followers / median(client_s, FANOUT_ROUNDS);
	if (client_rate > redis_rate)
		redis_rate = client_rate;
	printf("ratio actors_fanout redis %.4g followers/s\n",
		flock_rate / redis_rate);
	report("load_average_1m", load_average(), "load");
	return 0;
}
