/*
 * actors_memory_bench.c — how much memory user actors take, through the
 * real actors, api, journal and snapshot store (in temp dirs).
 *
 * Part 1, Reed98: socfb-Reed98 loaded (962 users, 18,812 mutual
 * follows) and the seed's daily mix played over it (MIX_OPS operations,
 * one call in flight per user); figures: VmRSS growth from the opened,
 * empty node to after the mix, per user, and per active actor (users and the posts the mix
 * made), with the anonymous part split into the runtime's pools,
 * malloc's other live allocations and the rest. Skipped when the
 * dataset is absent.
 *
 * Part 2, a node with REGISTERED accounts of which ACTIVE are in use:
 * every account signs up through the api; after each batch of
 * MEMORY_BATCH_USERS signups the accounts that are not among the active
 * ones are passivated (rt_passivate_where: saved through the store hook
 * into LMDB and freed, as idle passivation would); then the active ones
 * follow MEMORY_FOLLOWS others each, post once and read their feed.
 * Figures: VmRSS and its peak (and its anonymous and file-backed parts:
 * LMDB maps its file, so the store's touched pages count in VmRSS), the
 * runtime's actor bytes and active actor count, bytes per active and per
 * registered user, the snapshot store and journal on disk, and `ratio
 * memory_1m budget_4gib <VmRSS / 4 GiB>` (below 1: fits; the goal).
 * Each part runs in a process of its own (part 1 in a child, first),
 * so part 2's figures are of a process that did nothing else and part
 * 1's are growth since before its load. A call of part 2
 * answered 503 (overloaded, or its deadline passed: on a loaded machine
 * a disk stall of seconds does that) is made again after a pause, as
 * API.md asks of clients; figure memory_1m_calls_retried counts them.
 *
 * Usage: actors_memory_bench [registered] [active] [--no-reed98 |
 * --reed98-only] (defaults 1,000,000 and 100,000; --reed98-only runs
 * part 1 alone, in the bench's own process: under valgrind or
 * heaptrack that is the part looked at).
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/api.h"
#include "actors/internal.h" /* ACTORS_KIND_USER */
#include "actors/workload.h"
#include "persistence/persistence.h"

#define MEMORY_REGISTERED_DEFAULT 1000000u
#define MEMORY_ACTIVE_DEFAULT 100000u
/* Signups between two passivation walks: an idle sweep would keep the
 * inactive ones out of memory as they go; this bounds how many are in
 * memory at once the same way. */
#define MEMORY_BATCH_USERS 100000u
/* Calls in flight while loading. */
#define MEMORY_CONCURRENCY 1000u
/* Follows per active user (to other active users). */
#define MEMORY_FOLLOWS 5u
/* Daily-mix operations over Reed98. */
#define MIX_OPS 100000u
/* One in-flight call per Reed98 user. */
#define MIX_CONCURRENCY 962u
/* The goal: a node this size fits in 4 GiB. */
#define MEMORY_BUDGET_BYTES (4ull << 30)
/* Longest wait for one completion or a passivation walk. */
#define MEMORY_WAIT_MS 120000u

static void
die(const char *what)
{
	fprintf(stderr, "actors_memory_bench: %s\n", what);
	exit(1);
}

static long
status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return 0;
	char line[256];
	long kib = 0;
	size_t n = strlen(key);
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, key, n) == 0)
			kib = strtol(line + n, NULL, 10);
	fclose(f);
	return kib;
}

/* A bijection on 64-bit integers (splitmix64's finalizer). */
static uint64_t
mix64_name(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Bytes malloc has handed out and not had back, all arenas. */
static double
malloc_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return (double)mi.uordblks + (double)mi.hblkhd;
}

static void
report(const char *name, double value, const char *unit)
{
	printf("figure %s %.6g %s\n", name, value, unit);
	fflush(stdout);
}

static double
now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes under dir (du -sb). */
static double
dir_bytes(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "du -sb '%s' 2>/dev/null", dir);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	double bytes = -1;
	if (fscanf(p, "%lf", &bytes) != 1)
		bytes = -1;
	pclose(p);
	return bytes;
}

typedef struct node {
	rt_runtime *rt;
	ps_node *ps;
	api *a;
	api_client *c;
	char dir[64];
} node;

static void
node_open(node *n, const char *name)
{
	memset(n, 0, sizeof *n);
	snprintf(n->dir, sizeof n->dir, "/tmp/flock-memory-XXXXXX");
	if (mkdtemp(n->dir) == NULL)
		die("mkdtemp");
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 2;
	rc.log_level = RT_LOG_WARN;
	rc.node_name = name;
	/* Passivation is explicit here (part 2) or not wanted (part 1). */
	rc.passivate_idle_ms = 0;
	api_config cfg;
	api_config_default(&cfg);
	cfg.rate_likes = (api_rate){0, 0};
	cfg.rate_posts = (api_rate){0, 0};
	cfg.rate_comments = (api_rate){0, 0};
	cfg.rate_follows = (api_rate){0, 0};
	if (rt_create(&rc, &n->rt) != 0 ||
		api_create(n->rt, NULL, &cfg, &n->a) != 0)
		die("runtime or api");
	if (ps_node_open(n->dir, n->rt, NULL, NULL, &n->ps) != 0)
		die("ps_node_open");
	api_bind_store(n->a, n->ps);
	if (rt_start(n->rt) != 0 ||
		api_client_create(n->a, NULL, NULL, &n->c) != 0)
		die("start");
}

static void
node_close(node *n)
{
	api_client_destroy(n->c);
	rt_stop(n->rt);
	ps_node_close(n->ps);
	api_destroy(n->a);
	rt_destroy(n->rt);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "actors_memory_bench: could not remove %s\n",
			n->dir);
}

/* ---- part 1: Reed98 after the daily mix ----------------------------------- */

static void
reed98(void)
{
	const char *path = wl_reed98_path();
	if (path == NULL) {
		fprintf(stderr, "actors_memory_bench: Reed98 skipped: "
			"../shared/datasets/socfb-Reed98 not found\n");
		return;
	}
	wl_graph g;
	if (wl_graph_load(path, &g) != 0)
		die("Reed98 graph");
	node n;
	node_open(&n, "reed98");
	/* After the node's open: its fixed cost (threads, pools, the
	 * journal's buffers) is not the users'. */
	long rss0 = status_kib("VmRSS:");
	long anon0 = status_kib("RssAnon:");
	double heap0 = malloc_in_use();
	rt_stats rs0;
	rt_get_stats(n.rt, &rs0);
	wl_world w;
	if (wl_load(n.c, &g, MIX_CONCURRENCY, &w) != 0)
		die("Reed98 load");
	wl_stats st;
	if (wl_play(n.c, &w, WL_MIX_DAILY, MIX_OPS, 0, MIX_CONCURRENCY, 42,
		    &st) != 0)
		die("Reed98 mix");
	long rss1 = status_kib("VmRSS:");
	long anon1 = status_kib("RssAnon:");
	rt_stats rs;
	rt_get_stats(n.rt, &rs);
	uint64_t posts = st.count[WL_OP_POST];
	report("memory_reed98_users", w.users, "users");
	report("memory_reed98_active_actors", (double)rs.actors_active,
		"actors");
	report("memory_reed98_rss_per_user",
		(double)(rss1 - rss0) * 1024.0 / w.users, "bytes");
	report("memory_reed98_rss_per_actor",
		(double)(rss1 - rss0) * 1024.0 / (double)(w.users + posts),
		"bytes");
	/* The anonymous part (heap, pools); the rest is file-backed:
	 * LMDB maps its file, so the store's touched pages count too. */
	report("memory_reed98_rss_anon_per_user",
		(double)(anon1 - anon0) * 1024.0 / w.users, "bytes");
	report("memory_reed98_actor_bytes_per_user",
		(double)rs.bytes_actors / w.users, "bytes");
	/* Where the anonymous growth is: the runtime's pools (messages,
	 * actors, timers: their high-water mark, never given back), the
	 * rest of malloc's live allocations (actor states' lists and rings,
	 * outboxes, the journal's queue, ...), and what neither holds
	 * (memory malloc keeps free, thread stacks). */
	double pooled = (double)(rs.bytes_pooled - rs0.bytes_pooled);
	double heap = malloc_in_use() - heap0;
	report("memory_reed98_pool_per_user", pooled / w.users, "bytes");
	report("memory_reed98_heap_per_user", (heap - pooled) / w.users,
		"bytes");
	report("memory_reed98_anon_not_in_use_per_user",
		((double)(anon1 - anon0) * 1024.0 - heap) / w.users, "bytes");
	node_close(&n);
	wl_world_free(&w);
	wl_graph_free(&g);
}

/* ---- part 2: a million accounts, a tenth of them active -------------------- */

/* A call of part 2, kept so an overloaded answer (503) can be made
 * again, as API.md asks of clients. */
typedef enum op_kind {
	OP_SIGNUP,
	OP_LOOKUP, /* a retried signup that found its name taken: by itself */
	OP_FOLLOW,
	OP_POST,
	OP_FEED,
} op_kind;

typedef struct op {
	op_kind kind;
	uint32_t i;      /* account */
	uint32_t target; /* OP_FOLLOW: the account followed */
} op;

typedef struct call {
	bool busy;
	op what;
} call;

typedef struct loop {
	node *n;
	call calls[MEMORY_CONCURRENCY];
	uint32_t in_flight;
	uint32_t cursor;
	int first_error;
	uint64_t *ids;   /* account -> user id */
	op *retry;       /* answered 503: made again after the drain */
	uint32_t retry_count;
	uint32_t retry_capacity;
	uint64_t retried; /* calls made again, all phases */
} loop;

/* Rounds of retries a phase makes before it gives up, and the pause
 * before the first (doubling). */
#define MEMORY_RETRY_ROUNDS 8u
#define MEMORY_RETRY_PAUSE_MS 100u

/* What part 2 is doing (named in its first error). */
static const char *phase = "signup";

/* Account i's username: its number scrambled into base 36, so names
 * spread over the search index's prefix shards as real ones do ("u0",
 * "u1", ... would all share the shards of "u"). Distinct per i. */
static void
username(uint32_t i, char *out, size_t size)
{
	uint64_t x = mix64_name(i);
	char digits[16];
	int n = 0;
	do {
		digits[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[x % 36u];
		x /= 36u;
	} while (x != 0 && n < 13);
	snprintf(out, size, "%.*s", n, digits);
}

static loop *the_loop;

static void
retry_push(loop *l, const op *o)
{
	if (l->retry_count == l->retry_capacity) {
		uint32_t capacity = l->retry_capacity ? l->retry_capacity * 2
						      : 1024;
		op *v = realloc(l->retry, capacity * sizeof *v);
		if (v == NULL)
			die("out of memory");
		l->retry = v;
		l->retry_capacity = capacity;
	}
	l->retry[l->retry_count++] = *o;
}

static void
done_counted(void *arg, const api_result *r)
{
	call *k = arg;
	loop *l = the_loop;
	k->busy = false;
	l->in_flight--;
	op o = k->what;
	if (r->code == API_OK) {
		if (o.kind == OP_SIGNUP || o.kind == OP_LOOKUP)
			l->ids[o.i] = api_body_id(r->body, "user_id");
		return;
	}
	/* Overloaded (or its deadline passed): the client tries again. */
	if (r->code == API_EUNAVAILABLE) {
		static const char *told;
		if (told != phase)
			fprintf(stderr, "actors_memory_bench: first 503 of %s: "
				"%s (made again)\n", phase,
				r->detail ? r->detail : "");
		told = phase;
		retry_push(l, &o);
		return;
	}
	/* A signup made again after a 503 that had taken the name: names
	 * are distinct per account, so it is this account's. */
	if (r->code == API_ECONFLICT && o.kind == OP_SIGNUP &&
		l->ids[o.i] == 0) {
		o.kind = OP_LOOKUP;
		retry_push(l, &o);
		return;
	}
	if (r->code == API_ECONFLICT)
		return;
	if (l->first_error == 0) {
		l->first_error = r->code;
		fprintf(stderr, "actors_memory_bench: first error (%s) %s: %s\n",
			phase, api_strerror(r->code), r->detail ? r->detail : "");
	}
}

static call *
slot(loop *l)
{
	while (l->in_flight >= MEMORY_CONCURRENCY)
		if (api_client_wait(l->n->c, MEMORY_WAIT_MS) == 0)
			die("a call never completed");
	for (uint32_t k = 0; k < MEMORY_CONCURRENCY; k++) {
		uint32_t i = (l->cursor + k) % MEMORY_CONCURRENCY;
		if (!l->calls[i].busy) {
			l->cursor = (i + 1) % MEMORY_CONCURRENCY;
			l->in_flight++;
			l->calls[i].busy = true;
			return &l->calls[i];
		}
	}
	die("no free call");
	return NULL;
}

static void
issue(loop *l, const op *o)
{
	call *k = slot(l);
	k->what = *o;
	char name[32], email[48];
	api_ctx ctx = {0};
	int rc = 0;
	switch (o->kind) {
	case OP_SIGNUP:
		username(o->i, name, sizeof name);
		snprintf(email, sizeof email, "%s@example.com", name);
		rc = api_signup_prehashed(l->n->c, &ctx, name, email,
			"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
			done_counted, k);
		break;
	case OP_LOOKUP:
		username(o->i, name, sizeof name);
		rc = api_user_get(l->n->c, &ctx, name, done_counted, k);
		break;
	case OP_FOLLOW:
		username(o->target, name, sizeof name);
		ctx.user_id = l->ids[o->i];
		rc = api_follow(l->n->c, &ctx, name, true, done_counted, k);
		break;
	case OP_POST:
		ctx.user_id = l->ids[o->i];
		rc = api_post_create(l->n->c, &ctx, "hello #memory", 0,
			done_counted, k);
		break;
	case OP_FEED: {
		ctx.user_id = l->ids[o->i];
		api_page page = {API_PAGE_LIMIT_DEFAULT, NULL};
		rc = api_feed(l->n->c, &ctx, &page, done_counted, k);
		break;
	}
	}
	if (rc != 0)
		die("a call was refused");
}

/* Waits for every call, making again (after a pause) those answered 503,
 * up to MEMORY_RETRY_ROUNDS rounds. */
static void
drain(loop *l)
{
	for (uint32_t round = 0;; round++) {
		while (l->in_flight > 0)
			if (api_client_wait(l->n->c, MEMORY_WAIT_MS) == 0)
				die("a call never completed");
		if (l->first_error != 0) {
			fprintf(stderr, "actors_memory_bench: %s\n",
				api_strerror(l->first_error));
			exit(1);
		}
		if (l->retry_count == 0)
			return;
		if (round == MEMORY_RETRY_ROUNDS) {
			fprintf(stderr, "actors_memory_bench: %u calls of %s "
				"still unavailable after %u rounds\n",
				l->retry_count, phase, round);
			exit(1);
		}
		uint64_t ms = (uint64_t)MEMORY_RETRY_PAUSE_MS << round;
		struct timespec ts = {(time_t)(ms / 1000),
			(long)(ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		uint32_t n = l->retry_count;
		op *v = malloc(n * sizeof *v);
		if (v == NULL)
			die("out of memory");
		memcpy(v, l->retry, n * sizeof *v);
		l->retry_count = 0;
		l->retried += n;
		for (uint32_t j = 0; j < n; j++)
			issue(l, &v[j]);
		free(v);
	}
}

/* Active accounts: every `stride`-th one. */
typedef struct active_set {
	uint64_t *ids; /* open addressing, 0 = empty */
	uint64_t mask;
} active_set;

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static void
active_add(active_set *s, uint64_t id)
{
	uint64_t i = mix64(id) & s->mask;
	while (s->ids[i] != 0 && s->ids[i] != id)
		i = (i + 1) & s->mask;
	s->ids[i] = id;
}

static bool
active_has(const active_set *s, uint64_t id)
{
	for (uint64_t i = mix64(id) & s->mask;; i = (i + 1) & s->mask) {
		if (s->ids[i] == id)
			return true;
		if (s->ids[i] == 0)
			return false;
	}
}

static bool
inactive_user(void *arg, rt_addr addr)
{
	/* Users only: the username index and posts stay as they are. */
	return addr.kind == ACTORS_KIND_USER && !active_has(arg, addr.id);
}

static atomic_int walk_status;
static atomic_bool walk_done;

static void
walked(void *arg, int status)
{
	(void)arg;
	atomic_store(&walk_status, status);
	atomic_store(&walk_done, true);
}

static void
passivate_inactive(node *n, active_set *active)
{
	atomic_store(&walk_done, false);
	for (int tries = 0;; tries++) {
		int rc = rt_passivate_where(n->rt, inactive_user, active,
			walked, NULL);
		if (rc == 0)
			break;
		if (rc != RT_ENOMEM || tries == 1000)
			die("rt_passivate_where");
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	double t0 = now_seconds();
	while (!atomic_load(&walk_done)) {
		if (now_seconds() - t0 > MEMORY_WAIT_MS / 1000.0)
			die("a passivation walk never ended");
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (atomic_load(&walk_status) != 0)
		fprintf(stderr, "actors_memory_bench: passivation: %s\n",
			rt_strerror(atomic_load(&walk_status)));
}

static void
million(uint32_t registered, uint32_t active)
{
	node n;
	node_open(&n, "million");
	loop *l = calloc(1, sizeof *l);
	uint64_t *ids = calloc(registered, sizeof *ids);
	active_set set = {0};
	uint64_t slots = 1;
	while (slots < (uint64_t)active * 2u)
		slots *= 2;
	set.ids = calloc(slots, sizeof *set.ids);
	set.mask = slots - 1;
	if (l == NULL || ids == NULL || set.ids == NULL)
		die("out of memory");
	l->n = &n;
	l->ids = ids;
	the_loop = l;
	uint32_t stride = active ? registered / active : 0;
	double t0 = now_seconds();
	for (uint32_t i = 0; i < registered; i++) {
		issue(l, &(op){OP_SIGNUP, i, 0});
		if ((i + 1) % MEMORY_BATCH_USERS == 0 || i + 1 == registered) {
			drain(l);
			for (uint32_t j = i + 1 - ((i % MEMORY_BATCH_USERS) + 1);
				j <= i; j++)
				if (stride != 0 && j % stride == 0 && ids[j] != 0)
					active_add(&set, ids[j]);
			passivate_inactive(&n, &set);
		}
	}
	report("memory_1m_signup_seconds", now_seconds() - t0, "s");
	/* The active ones: follows among themselves, a post, a feed read. */
	phase = "follow";
	uint32_t actives = 0;
	for (uint32_t i = 0; stride != 0 && i < registered; i += stride)
		actives++;
	for (uint32_t i = 0; stride != 0 && i < registered; i += stride) {
		for (uint32_t f = 1; f <= MEMORY_FOLLOWS; f++) {
			uint32_t target = (i + f * stride * 7919u) % registered;
			target -= target % stride;
			if (target == i)
				continue;
			issue(l, &(op){OP_FOLLOW, i, target});
		}
	}
	drain(l);
	phase = "post";
	for (uint32_t i = 0; stride != 0 && i < registered; i += stride)
		issue(l, &(op){OP_POST, i, 0});
	drain(l);
	phase = "feed";
	for (uint32_t i = 0; stride != 0 && i < registered; i += stride)
		issue(l, &(op){OP_FEED, i, 0});
	drain(l);
	/* Their posts' fan-out settles. */
	struct timespec ts = {1, 0};
	nanosleep(&ts, NULL);
	long rss = status_kib("VmRSS:");
	long peak = status_kib("VmHWM:");
	long anon = status_kib("RssAnon:");
	long file = status_kib("RssFile:");
	rt_stats rs;
	rt_get_stats(n.rt, &rs);
	report("memory_1m_registered_users", registered, "users");
	report("memory_1m_active_users", actives, "users");
	report("memory_1m_active_actors", (double)rs.actors_active, "actors");
	report("memory_1m_passivated_total", (double)rs.actors_passivated_total,
		"actors");
	report("memory_1m_rss_bytes", (double)rss * 1024.0, "bytes");
	report("memory_1m_peak_rss_bytes", (double)peak * 1024.0, "bytes");
	/* VmRSS counts the snapshot store's mapped file pages too (LMDB
	 * maps its file: reclaimable, not the process's own memory). */
	report("memory_1m_rss_anon_bytes", (double)anon * 1024.0, "bytes");
	report("memory_1m_rss_file_bytes", (double)file * 1024.0, "bytes");
	report("memory_1m_actor_bytes", (double)rs.bytes_actors, "bytes");
	report("memory_1m_rss_per_active_user",
		(double)rss * 1024.0 / (actives ? actives : 1), "bytes");
	report("memory_1m_rss_per_registered_user",
		(double)rss * 1024.0 / registered, "bytes");
	report("memory_1m_disk_bytes", dir_bytes(n.dir), "bytes");
	/* Calls answered 503 (overloaded, or their deadline passed) and made
	 * again; a retried post may have been made twice. */
	report("memory_1m_calls_retried", (double)l->retried, "calls");
	printf("ratio memory_1m budget_4gib %.4g rss\n",
		(double)rss * 1024.0 / (double)MEMORY_BUDGET_BYTES);
	fflush(stdout);
	node_close(&n);
	free(set.ids);
	free(ids);
	free(l->retry);
	free(l);
}

int
main(int argc, char **argv)
{
	uint32_t registered = MEMORY_REGISTERED_DEFAULT;
	uint32_t active = MEMORY_ACTIVE_DEFAULT;
	bool with_reed98 = true;
	bool only_reed98 = false;
	int positional = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-reed98") == 0)
			with_reed98 = false;
		else if (strcmp(argv[i], "--reed98-only") == 0)
			only_reed98 = true;
		else if (positional++ == 0)
			registered = (uint32_t)strtoul(argv[i], NULL, 10);
		else
			active = (uint32_t)strtoul(argv[i], NULL, 10);
	}
	if (registered == 0 || active > registered ||
		(only_reed98 && !with_reed98))
		die("usage: actors_memory_bench [registered] [active] "
		    "[--no-reed98 | --reed98-only]");
	if (only_reed98) {
		reed98();
		return 0;
	}
	/* Each part in a process of its own, before any thread exists:
	 * part 2's VmRSS is its node's alone, and part 1's growth is not
	 * hidden by the memory part 2 freed (run after it in one process,
	 * Reed98's growth measured negative). */
	if (with_reed98) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			reed98();
			fflush(stdout);
			_exit(0);
		}
		int status = 0;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
			WEXITSTATUS(status) != 0)
			die("Reed98 part failed");
	}
	million(registered, active);
	return 0;
}
