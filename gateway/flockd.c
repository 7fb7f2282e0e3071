/*
 * flockd.c — the node's main: composes runtime, persistence, domain and
 * gateway, and takes them down in reverse.
 *
 * Start: flags and environment -> the runtime (rt_create) -> the domain
 * (api_create registers its actor kinds) -> with --cluster, the cluster
 * node (cl_node_open: the route hook, so recovery's wake-ups below are
 * already routed; a --join waits until the node has its id, which the
 * gateway's inboxes then carry) -> persistence (ps_node_open on the data
 * directory: recovery, the store hook; api_bind_store; the cluster's
 * state seam) -> rt_start -> the gateway on a libuv loop. It prints
 * "flock listening on http://HOST:PORT/" once the socket is bound.
 *
 * Stop (SIGINT or SIGTERM): the gateway stops accepting and lets
 * in-flight requests finish (bounded), closes live streams, then the
 * runtime passivates every actor (snapshots), the cluster node closes,
 * persistence commits and closes the journal, and the process exits 0.
 * Leaving a cluster for good is `flockctl drain` first.
 *
 * Configuration: every flag has an environment twin (FLOCK_LISTEN for
 * --listen, ...); flags win. Defaults serve `make run`.
 *
 * What it deliberately does not do: daemonise, drop privileges, TLS.
 */
#include "cluster/cluster.h"
#include "gateway/gateway.h"
#include "persistence/persistence.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

/* Default bind: loopback, as `make run` uses. */
#define LISTEN_DEFAULT "127.0.0.1:8080"
#define DATA_DEFAULT "./data"
/* How long a --join waits for the coordinator to accept it before the
 * node gives up: joins retry every 500 ms, so this is many tries. */
#define CLUSTER_JOIN_TIMEOUT_MS 30000u
/* Password hashing cost when FLOCK_TEST=1 and --insecure-fast-passwords:
 * libsodium's minimums (8 KiB, 1 pass), ~1000x cheaper than OWASP's. */
#define TEST_PASSWORD_MEMLIMIT_BYTES 8192u
#define TEST_PASSWORD_OPSLIMIT 1u

typedef struct options {
	char listen_host[256];
	uint16_t listen_port;
	const char *data_dir;
	const char *web_dir;
	const char *token_key_file;
	uint32_t workers;
	bool fast_passwords;
	rt_log_level log_level;
	const char *cluster;   /* cluster listen "host:port"; NULL: alone */
	const char *join;      /* a member's cluster address, or NULL */
	const char *node_name; /* in log lines */
	gw_config gw;
	api_config api;
} options;

typedef struct node {
	options opts;
	rt_runtime *rt;
	api *domain;
	ps_node *store;
	cl_node *cluster;
	gw *gateway;
	uv_loop_t loop;
	uv_signal_t sigint;
	uv_signal_t sigterm;
	int signals;
} node;

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: flockd [options]   (each option has an env twin)\n"
		"  --listen HOST:PORT          FLOCK_LISTEN (" LISTEN_DEFAULT
		"; port 0 picks one)\n"
		"  --data DIR                  FLOCK_DATA (" DATA_DEFAULT ")\n"
		"  --web-dir DIR               FLOCK_WEB_DIR (gateway/web)\n"
		"  --token-key-file PATH       FLOCK_TOKEN_KEY_FILE "
		"(DATA/token.key, made 0600)\n"
		"  --workers N                 FLOCK_WORKERS (cores)\n"
		"  --gateway-loops N           FLOCK_GATEWAY_LOOPS (cores / 2, at most 16)\n"
		"  --connections-per-ip N      FLOCK_CONNECTIONS_PER_IP (256)\n"
		"  --rate-signup N/SECONDS     FLOCK_RATE_SIGNUP (5/1800 per IP)\n"
		"  --rate-login N/SECONDS      FLOCK_RATE_LOGIN (25/300 per IP)\n"
		"  --rate-likes N/SECONDS      FLOCK_RATE_LIKES (10/1 per user)\n"
		"  --rate-posts N/SECONDS      FLOCK_RATE_POSTS (30/3600)\n"
		"  --rate-comments N/SECONDS   FLOCK_RATE_COMMENTS (1/1)\n"
		"  --rate-follows N/SECONDS    FLOCK_RATE_FOLLOWS (400/86400)\n"
		"  --json-body-max BYTES       FLOCK_JSON_BODY_MAX (65536)\n"
		"  --token-ttl SECONDS         FLOCK_TOKEN_TTL (86400)\n"
"  --upload-url-ttl SECONDS    FLOCK_UPLOAD_URL_TTL (900)\n"
		"  --ws-queue-max FRAMES       FLOCK_WS_QUEUE_MAX (256)\n"
		"  --ws-ping SECONDS           FLOCK_WS_PING (30)\n"
		"  --shutdown-grace-ms MS      FLOCK_SHUTDOWN_GRACE_MS (5000)\n"
		"  --log-level LEVEL           FLOCK_LOG_LEVEL (info)\n"
		"  --cluster HOST:PORT         FLOCK_CLUSTER (none: one node "
		"alone); flockctl talks to PORT+1\n"
		"  --join HOST:PORT            FLOCK_JOIN (a member's --cluster "
		"address; first start only)\n"
		"  --node-name NAME            FLOCK_NODE_NAME (flockd; in log "
		"lines)\n"
		"  --no-request-log            FLOCK_NO_REQUEST_LOG=1\n"
		"  --insecure-fast-passwords   tests only: needs FLOCK_TEST=1\n");
}

static int
parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* "N/SECONDS" into a gateway rate. */
static int
parse_rate(const char *s, gw_rate *out)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s", s);
	char *slash = strchr(buf, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	if (parse_u32(buf, &out->capacity) < 0 ||
		parse_u32(slash + 1, &out->window_s) < 0 ||
		out->capacity == 0 || out->window_s == 0)
		return -1;
	return 0;
}

/* The same for the domain's buckets (capacity, ms per token). */
static int
parse_api_rate(const char *s, api_rate *out)
{
	gw_rate r;
	if (parse_rate(s, &r) < 0)
		return -1;
	out->capacity = r.capacity;
	out->refill_ms = (uint64_t)r.window_s * 1000u / r.capacity;
	if (out->refill_ms == 0)
		out->refill_ms = 1;
	return 0;
}

static int
parse_listen(const char *s, options *o)
{
	const char *colon = strrchr(s, ':');
	uint32_t port;
	if (colon == NULL || parse_u32(colon + 1, &port) < 0 || port > 65535)
		return -1;
	size_t n = (size_t)(colon - s);
	if (n == 0 || n >= sizeof o->listen_host)
		return -1;
	memcpy(o->listen_host, s, n);
	o->listen_host[n] = '\0';
	o->listen_port = (uint16_t)port;
	return 0;
}

static int
parse_level(const char *s, rt_log_level *out)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (rt_log_level)i;
			return 0;
		}
	return -1;
}

/* Applies one option (from a flag or its env twin). */
static int
apply(options *o, const char *name, const char *value)
{
	uint32_t v;
	if (strcmp(name, "listen") == 0)
		return parse_listen(value, o);
	if (strcmp(name, "data") == 0)
		return (o->data_dir = value) ? 0 : -1;
	if (strcmp(name, "web-dir") == 0)
		return (o->web_dir = value) ? 0 : -1;
	if (strcmp(name, "token-key-file") == 0)
		return (o->token_key_file = value) ? 0 : -1;
	if (strcmp(name, "workers") == 0)
		return parse_u32(value, &o->workers);
	if (strcmp(name, "gateway-loops") == 0)
		return parse_u32(value, &o->gw.loops) == 0 && o->gw.loops >= 1 &&
				o->gw.loops <= GW_LOOPS_MAX
			? 0 : -1;
	if (strcmp(name, "connections-per-ip") == 0) {
		if (parse_u32(value, &v) < 0 || v == 0)
			return -1;
		o->gw.connections_per_ip_max = v;
		return 0;
	}
	if (strcmp(name, "rate-signup") == 0)
		return parse_rate(value, &o->gw.rate_signup);
	if (strcmp(name, "rate-login") == 0)
		return parse_rate(value, &o->gw.rate_login);
	if (strcmp(name, "rate-likes") == 0)
		return parse_api_rate(value, &o->api.rate_likes);
	if (strcmp(name, "rate-posts") == 0)
		return parse_api_rate(value, &o->api.rate_posts);
	if (strcmp(name, "rate-comments") == 0)
		return parse_api_rate(value, &o->api.rate_comments);
	if (strcmp(name, "rate-follows") == 0)
		return parse_api_rate(value, &o->api.rate_follows);
	if (strcmp(name, "json-body-max") == 0)
		return parse_u32(value, &o->gw.json_body_bytes_max);
	if (strcmp(name, "token-ttl") == 0) {
		if (parse_u32(value, &v) < 0 || v == 0)
			return -1;
		o->gw.token_ttl_s = v;
		return 0;
	}
	if (strcmp(name, "upload-url-ttl") == 0) {
		if (parse_u32(value, &v) < 0 || v == 0)
			return -1;
		o->gw.upload_url_ttl_s = v;
		return 0;
	}
	if (strcmp(name, "ws-queue-max") == 0) {
		if (parse_u32(value, &v) < 0 || v == 0)
			return -1;
		o->gw.ws_queue_frames_max = v;
		return 0;
	}
	if (strcmp(name, "ws-ping") == 0) {
		if (parse_u32(value, &v) < 0 || v == 0 || v > 3600)
			return -1;
		o->gw.ws_ping_s = v;
		o->gw.ws_hangup_s = v + v / 2;
		return 0;
	}
	if (strcmp(name, "shutdown-grace-ms") == 0)
		return parse_u32(value, &o->gw.shutdown_grace_ms);
	if (strcmp(name, "log-level") == 0)
		return parse_level(value, &o->log_level);
	if (strcmp(name, "cluster") == 0)
		return strchr(value, ':') != NULL &&
				strlen(value) < CL_ADDRESS_BYTES_MAX
			? (o->cluster = value, 0) : -1;
	if (strcmp(name, "join") == 0)
		return strchr(value, ':') != NULL &&
				strlen(value) < CL_ADDRESS_BYTES_MAX
			? (o->join = value, 0) : -1;
	if (strcmp(name, "node-name") == 0)
		return value[0] != '\0' ? (o->node_name = value, 0) : -1;
	return -1;
}

static const char *const valued[] = {"listen", "data", "web-dir",
	"token-key-file", "workers", "gateway-loops", "connections-per-ip", "rate-signup",
	"rate-login", "rate-likes", "rate-posts", "rate-comments",
	"rate-follows", "json-body-max", "token-ttl", "upload-url-ttl",
	"ws-queue-max",
	"ws-ping", "shutdown-grace-ms", "log-level", "cluster", "join",
	"node-name"};
#define VALUED_COUNT (sizeof valued / sizeof valued[0])

/* FLOCK_<NAME> with '-' as '_' and upper case. */
static const char *
env_twin(const char *name)
{
	char key[64] = "FLOCK_";
	size_t n = strlen(key);
	for (const char *s = name; *s && n + 1 < sizeof key; s++)
		key[n++] = *s == '-' ? '_' : (char)(*s - 32 * (*s >= 'a' && *s <= 'z'));
	key[n] = '\0';
	return getenv(key);
}

static bool
dir_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* --web-dir, else ./gateway/web (make run), else next to the binary
 * (build/<mode>/flockd -> ../../gateway/web). */
static const char *
find_web_dir(void)
{
	static char path[PATH_MAX];
	if (dir_exists("gateway/web"))
		return "gateway/web";
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(path, sizeof path, "%.*s/../../gateway/web",
				(int)(sizeof path - 32), exe);
			if (dir_exists(path))
				return path;
		}
	}
	return "gateway/web";
}

static int
parse_options(int argc, char **argv, options *o)
{
	memset(o, 0, sizeof *o);
	gw_config_default(&o->gw);
	api_config_default(&o->api);
	o->log_level = RT_LOG_INFO;
	o->data_dir = DATA_DEFAULT;
	parse_listen(LISTEN_DEFAULT, o);
	for (size_t i = 0; i < VALUED_COUNT; i++) {
		const char *v = env_twin(valued[i]);
		if (v != NULL && apply(o, valued[i], v) < 0) {
			fprintf(stderr, "flockd: bad value in env for %s: %s\n",
				valued[i], v);
			return -1;
		}
	}
	const char *quiet = getenv("FLOCK_NO_REQUEST_LOG");
	if (quiet != NULL && strcmp(quiet, "1") == 0)
		o->gw.log_requests = false;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(arg, "--insecure-fast-passwords") == 0) {
			o->fast_passwords = true;
			continue;
		}
		if (strcmp(arg, "--no-request-log") == 0) {
			o->gw.log_requests = false;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0 || i + 1 >= argc ||
			apply(o, arg + 2, argv[i + 1]) < 0) {
			fprintf(stderr, "flockd: bad option %s\n", arg);
			usage(stderr);
			return -1;
		}
		i++;
	}
	if (o->fast_passwords) {
		const char *test = getenv("FLOCK_TEST");
		if (test == NULL || strcmp(test, "1") != 0) {
			fprintf(stderr, "flockd: --insecure-fast-passwords is "
					"refused unless FLOCK_TEST=1\n");
			return -1;
		}
		o->api.password_memlimit_bytes = TEST_PASSWORD_MEMLIMIT_BYTES;
		o->api.password_opslimit = TEST_PASSWORD_OPSLIMIT;
	}
	if (o->join != NULL && o->cluster == NULL) {
		fprintf(stderr, "flockd: --join needs --cluster (this node's "
				"own cluster address)\n");
		return -1;
	}
	if (o->web_dir == NULL)
		o->web_dir = find_web_dir();
	o->gw.listen_host = o->listen_host;
	o->gw.listen_port = o->listen_port;
	o->gw.web_dir = o->web_dir;
	o->api.data_dir = o->data_dir;
	return 0;
}

/* ---- metrics from persistence and the cluster ---------------------------- */

static size_t
cluster_metrics(cl_node *cluster, char *buf, size_t size)
{
	cl_status *st = malloc(sizeof *st);
	if (st == NULL || size == 0) {
		free(st);
		return 0;
	}
	cl_node_status(cluster, st);
	uint32_t alive = 0, owned = 0;
	for (uint32_t i = 0; i < st->members_count; i++) {
		alive += st->members[i].liveness == CL_LIVE_ALIVE;
		if (st->members[i].id == st->self)
			owned = st->members[i].partitions;
	}
	int w = snprintf(buf, size,
		"# TYPE flock_cluster_epoch gauge\n"
		"flock_cluster_epoch %" PRIu64 "\n"
		"# TYPE flock_cluster_lease_held gauge\n"
		"flock_cluster_lease_held %d\n"
		"# TYPE flock_cluster_members gauge\n"
		"flock_cluster_members %u\n"
		"# TYPE flock_cluster_members_alive gauge\n"
		"flock_cluster_members_alive %u\n"
		"# TYPE flock_cluster_partitions_owned gauge\n"
		"flock_cluster_partitions_owned %u\n"
		"# TYPE flock_cluster_moves_pending gauge\n"
		"flock_cluster_moves_pending %u\n",
		st->epoch, st->lease_held ? 1 : 0, st->members_count, alive,
		owned, st->moves_pending);
	free(st);
	if (w < 0)
		return 0;
	return (size_t)w < size ? (size_t)w : size - 1;
}

/* The group commits' fdatasync durations as a histogram in seconds
 * (cumulative buckets, as Prometheus has them). */
static size_t
fsync_metrics(const ps_journal_stats *js, char *buf, size_t size)
{
	size_t used = 0;
	uint64_t cumulative = 0;
	int w = snprintf(buf, size,
		"# TYPE flock_journal_fsync_seconds histogram\n");
	for (uint32_t b = 0; w >= 0 && b < PS_JOURNAL_SYNC_BUCKETS; b++) {
		used += (size_t)w < size - used ? (size_t)w : size - used - 1;
		cumulative += js->sync_buckets[b];
		uint64_t bound = ps_journal_sync_bound_us(b);
		if (bound == UINT64_MAX)
			w = snprintf(buf + used, size - used,
				"flock_journal_fsync_seconds_bucket{le=\"+Inf\"} "
				"%" PRIu64 "\n"
				"flock_journal_fsync_seconds_sum %.6f\n"
				"flock_journal_fsync_seconds_count %" PRIu64 "\n",
				cumulative, (double)js->sync_us_total / 1e6,
				cumulative);
		else
			w = snprintf(buf + used, size - used,
				"flock_journal_fsync_seconds_bucket{le=\"%g\"} "
				"%" PRIu64 "\n",
				(double)bound / 1e6, cumulative);
	}
	if (w >= 0)
		used += (size_t)w < size - used ? (size_t)w : size - used - 1;
	return used;
}

static size_t
journal_metrics(void *arg, char *buf, size_t size)
{
	node *n = arg;
	if (n->store == NULL)
		return 0;
	ps_journal_stats js;
	ps_journal_get_stats(ps_node_journal(n->store), &js);
	ps_node_stats ns;
	ps_node_get_stats(n->store, &ns);
	int w = snprintf(buf, size,
		"# TYPE flock_journal_appends_total counter\n"
		"flock_journal_appends_total %" PRIu64 "\n"
		"# TYPE flock_journal_group_commits_total counter\n"
		"flock_journal_group_commits_total %" PRIu64 "\n"
		"# TYPE flock_journal_fsyncs_total counter\n"
		"flock_journal_fsyncs_total %" PRIu64 "\n"
		"# TYPE flock_journal_bytes_written_total counter\n"
		"flock_journal_bytes_written_total %" PRIu64 "\n"
		"# TYPE flock_journal_failures_total counter\n"
		"flock_journal_failures_total %" PRIu64 "\n"
		"# TYPE flock_journal_segments gauge\n"
		"flock_journal_segments %" PRIu64 "\n"
		"# TYPE flock_checkpoints_total counter\n"
		"flock_checkpoints_total %" PRIu64 "\n"
		"# TYPE flock_snapshots_saved_total counter\n"
		"flock_snapshots_saved_total %" PRIu64 "\n",
		js.appends, js.batches, js.syncs, js.bytes_written, js.failures,
		js.segments, ns.checkpoints, ns.snapshots_saved);
	if (w < 0)
		return 0;
	size_t used = (size_t)w < size ? (size_t)w : size - 1;
	used += fsync_metrics(&js, buf + used, size - used);
	if (n->cluster != NULL)
		used += cluster_metrics(n->cluster, buf + used, size - used);
	return used;
}

/* ---- signals -------------------------------------------------------------- */

static void stop_domain_threads(node *n);

/* The gateway answered its last request: the domain's threads stop here,
 * before libwebsockets is torn down (gateway.h, gw_shutdown). */
static void
gateway_stopped(void *arg)
{
	node *n = arg;
	uv_close((uv_handle_t *)&n->sigint, NULL);
	uv_close((uv_handle_t *)&n->sigterm, NULL);
	stop_domain_threads(n);
}

static void
on_signal(uv_signal_t *handle, int signum)
{
	node *n = handle->data;
	n->signals++;
	rt_log(n->rt, RT_LOG_INFO, "flockd", "signal %d: stopping", signum);
	if (n->signals == 1)
		gw_shutdown(n->gateway, gateway_stopped, n);
}

/* ---- composition ----------------------------------------------------------- */

static void
raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The cluster node before persistence: its route hook and activation
 * gate are in place when recovery wakes actors, so only partitions this
 * node owns wake here. A joining node waits for its id, which the
 * gateway's inboxes carry so replies from other nodes find them. */
static int
open_cluster(node *n)
{
	options *o = &n->opts;
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = o->cluster;
	cfg.join = o->join;
	cfg.data_dir = o->data_dir;
	cfg.state_deferred = true;
	int rc = cl_node_open(&cfg, n->rt, &n->cluster);
	if (rc != 0) {
		fprintf(stderr, "flockd: cluster on %s: %s\n", o->cluster,
			cl_strerror(rc));
		return -1;
	}
	rc = cl_node_wait_joined(n->cluster, CLUSTER_JOIN_TIMEOUT_MS);
	if (rc != 0) {
		fprintf(stderr, "flockd: joining through %s: %s\n",
			o->join != NULL ? o->join : "(map file)", cl_strerror(rc));
		return -1;
	}
	rt_log(n->rt, RT_LOG_INFO, "flockd", "cluster node=%u listen=%s",
		cl_node_id(n->cluster), o->cluster);
	return 0;
}

static int
open_domain(node *n)
{
	options *o = &n->opts;
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = o->workers;
	rc.log_level = o->log_level;
	rc.node_name = o->node_name != NULL ? o->node_name : "flockd";
	if (rt_create(&rc, &n->rt) != 0) {
		fprintf(stderr, "flockd: rt_create failed\n");
		return -1;
	}
	rt_log_set_level(n->rt, o->log_level);
	int rc_api = api_create(n->rt, NULL, &o->api, &n->domain);
	if (rc_api != 0) {
		fprintf(stderr, "flockd: api_create: %s\n",
			api_strerror(rc_api));
		return -1;
	}
	if (o->cluster != NULL && open_cluster(n) != 0)
		return -1;
	/* api.h's order: the kinds exist before recovery replays into them;
	 * the store is bound before any actor runs. */
	ps_node_report report;
	memset(&report, 0, sizeof report);
	/* Snapshots that still owe effects are marked, so their actors wake
	 * at the next open and send them (api_state_owes). */
	ps_node_options po = {.owes = api_state_owes};
	int rc_ps = ps_node_open(o->data_dir, n->rt, &po, &report, &n->store);
	if (rc_ps != 0) {
		fprintf(stderr, "flockd: opening storage in %s failed (%d)\n",
			o->data_dir, rc_ps);
		return -1;
	}
	api_bind_store(n->domain, n->store);
	if (n->cluster != NULL)
		cl_node_set_state(n->cluster, cl_state_ops_persistence(),
			n->store);
	if (rt_start(n->rt) != 0) {
		fprintf(stderr, "flockd: rt_start failed\n");
		return -1;
	}
	rt_log(n->rt, RT_LOG_INFO, "flockd",
		"storage open dir=%s records_recovered=%" PRIu64
		" actors_recovered=%" PRIu64,
		o->data_dir, report.records_recovered,
		report.actors_recovered);
	return 0;
}

/* Stops the runtime, the cluster and the store (the journal flushed):
 * afterwards no thread of the domain runs. The api and the runtime stay
 * allocated for the gateway's client until close_domain. */
static void
stop_domain_threads(node *n)
{
	if (n->rt != NULL)
		rt_stop(n->rt);
	/* After rt_stop: the last sends of passivating actors are routed. */
	cl_node_close(n->cluster);
	n->cluster = NULL;
	if (n->store != NULL)
		ps_node_close(n->store);
	n->store = NULL;
}

static void
close_domain(node *n)
{
	stop_domain_threads(n);
	if (n->domain != NULL)
		api_destroy(n->domain);
	n->domain = NULL;
	if (n->rt != NULL)
		rt_destroy(n->rt);
	n->rt = NULL;
}

/* Free heap kept mapped before glibc returns it to the kernel. */
#define MALLOC_TRIM_THRESHOLD_BYTES (64 * 1024 * 1024)

int
main(int argc, char **argv)
{
	static node n;
	if (parse_options(argc, argv, &n.opts) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	/* Responses are built in and freed from heap buffers of 10-20 KiB,
	 * dozens at a time: with glibc's 128 KiB trim threshold the heap top
	 * went back to the kernel after a burst and came back page fault by
	 * page fault (8% of a feed read's CPU). */
	mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
	if (sodium_init() < 0)
		return 1;
	options *o = &n.opts;
	if (mkdir(o->data_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "flockd: cannot create %s: %s\n", o->data_dir,
			strerror(errno));
		return 1;
	}
	char key_path[PATH_MAX];
	if (o->token_key_file != NULL)
		snprintf(key_path, sizeof key_path, "%s", o->token_key_file);
	else
		snprintf(key_path, sizeof key_path, "%s/token.key",
			o->data_dir);
	gw_key key;
	int rc = gw_key_load_or_create(key_path, &key);
	if (rc != 0) {
		fprintf(stderr, "flockd: token key %s: %s%s\n", key_path,
			gw_strerror(rc),
			rc == GW_EINVAL ? " (must be 32 bytes, mode 0600)" : "");
		return 1;
	}
	int status = 1;
	if (open_domain(&n) != 0)
		goto fail_domain;
	if (uv_loop_init(&n.loop) != 0)
		goto fail_domain;
	rc = gw_create(&n.loop, n.rt, n.domain, &key, &o->gw, &n.gateway);
	sodium_memzero(&key, sizeof key);
	if (rc != 0) {
		fprintf(stderr, "flockd: cannot listen on %s:%u: %s\n",
			o->listen_host, o->listen_port, gw_strerror(rc));
		/* The loop is not run again after a failed gw_create. */
		close_domain(&n);
		return 1;
	}
	gw_set_metrics_extra(n.gateway, journal_metrics, &n);
	gw_set_ready(n.gateway, true);
	uv_signal_init(&n.loop, &n.sigint);
	uv_signal_init(&n.loop, &n.sigterm);
	n.sigint.data = &n;
	n.sigterm.data = &n;
	uv_signal_start(&n.sigint, on_signal, SIGINT);
	uv_signal_start(&n.sigterm, on_signal, SIGTERM);
	printf("flock listening on http://%s:%u/\n", o->listen_host,
		gw_port(n.gateway));
	fflush(stdout);

	uv_run(&n.loop, UV_RUN_DEFAULT);

	gw_destroy(n.gateway);
	n.gateway = NULL;
	status = 0;
	uv_run(&n.loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&n.loop) != 0)
		rt_log(n.rt, RT_LOG_WARN, "flockd", "loop closed with handles");
fail_domain:
	close_domain(&n);
	if (status == 0)
		rt_log(NULL, RT_LOG_INFO, "flockd", "stopped cleanly");
	return status;
}
