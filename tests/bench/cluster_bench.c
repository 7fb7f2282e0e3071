/*
 * cluster_bench.c — cluster figures, printed as `figure <name> <value>
 * <unit>`.
 *
 *   placement: max/mean actor load over 8 nodes for 1,000,000 actors and
 *     the fraction moved by an 8 -> 9 join, for pure rendezvous, rings of
 *     100 and 1000 virtual nodes, jump hash, and the bounded-load
 *     rendezvous the map uses;
 *   cross-node messages/s between two nodes over nng on loopback (two
 *     cl_nodes in one process, their own threads and sockets; envelopes
 *     of 16-byte payloads, delivered to a counting callback);
 *   handoff: 100,000 actors with 1 KiB of state moved from one node to
 *     another (add + drain), its time, and the p99 latency of messages
 *     sent meanwhile against the p99 before;
 *   handoff_ps: the same on real nodes: runtimes (one worker each) and
 *     ps_nodes (journal + LMDB) under the cluster, the state exported
 *     from one store and imported into the other, and the latency of
 *     asks from an inbox to random actors (activated from the store on
 *     the node that owns them at that moment).
 */
#include "cluster/internal.h"
#include "persistence/persistence.h"
#include "tests/bench/port.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>

#define ACTORS 1000000u
#define NODES 8u

/* ---- placement comparison --------------------------------------------- */

typedef uint16_t (*placer)(uint32_t partition, uint32_t nodes, void *ctx);

static uint16_t
place_hrw(uint32_t p, uint32_t nodes, void *ctx)
{
	(void)ctx;
	uint16_t best = 1;
	uint64_t best_score = 0;
	for (uint32_t n = 1; n <= nodes; n++) {
		uint64_t s = cl_rendezvous_score(p, (uint16_t)n);
		if (s > best_score) {
			best_score = s;
			best = (uint16_t)n;
		}
	}
	return best;
}

static uint16_t
place_jump(uint32_t p, uint32_t nodes, void *ctx)
{
	(void)ctx;
	uint64_t key = cl__mix64(p + 1);
	int64_t b = -1, j = 0;
	while (j < (int64_t)nodes) {
		b = j;
		key = key * 2862933555777941757ull + 1;
		j = (int64_t)((double)(b + 1) *
			      ((double)(1ll << 31) / (double)((key >> 33) + 1)));
	}
	return (uint16_t)(b + 1);
}

typedef struct ring {
	uint32_t vnodes;
	uint32_t count;
	uint64_t points[16 * 1000];
	uint16_t owners[16 * 1000];
} ring;

static int
cmp_u64_pair(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void
ring_build(ring *r, uint32_t nodes)
{
	uint64_t (*pairs)[2] = malloc(nodes * r->vnodes * sizeof *pairs);
	r->count = 0;
	for (uint32_t n = 1; n <= nodes; n++)
		for (uint32_t v = 0; v < r->vnodes; v++) {
			pairs[r->count][0] = cl__mix64((uint64_t)n << 32 | v);
			pairs[r->count][1] = n;
			r->count++;
		}
	qsort(pairs, r->count, sizeof *pairs, cmp_u64_pair);
	for (uint32_t i = 0; i < r->count; i++) {
		r->points[i] = pairs[i][0];
		r->owners[i] = (uint16_t)pairs[i][1];
	}
	free(pairs);
}

static uint16_t
place_ring(uint32_t p, uint32_t nodes, void *ctx)
{
	(void)nodes;
	ring *r = ctx;
	uint64_t h = cl__mix64((uint64_t)p * 0x9e3779b97f4a7c15ull + 1);
	uint32_t lo = 0, hi = r->count;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (r->points[mid] < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return r->owners[lo == r->count ? 0 : lo];
}

static uint32_t *actor_partitions;

static double
load_ratio(const uint16_t *owner, uint32_t nodes)
{
	uint64_t load[65] = {0};
	for (uint32_t a = 0; a < ACTORS; a++)
		load[owner[actor_partitions[a]]]++;
	uint64_t max = 0;
	for (uint32_t n = 1; n <= nodes; n++)
		max = load[n] > max ? load[n] : max;
	return (double)max / ((double)ACTORS / nodes);
}

static void
compare(const char *name, placer f, void *ctx8, void *ctx9)
{
	static uint16_t a[CL_PARTITIONS], b[CL_PARTITIONS];
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		a[p] = f(p, NODES, ctx8);
		b[p] = f(p, NODES + 1, ctx9);
	}
	uint32_t moved = 0, not_to_joiner = 0;
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (a[p] != b[p]) {
			moved++;
			not_to_joiner += b[p] != NODES + 1;
		}
	printf("figure placement_%s_max_over_mean %.4f ratio\n", name,
		load_ratio(a, NODES));
	printf("figure placement_%s_join_moved %.4f fraction\n", name,
		(double)moved / CL_PARTITIONS);
	printf("figure placement_%s_join_moved_elsewhere %u partitions\n",
		name, not_to_joiner);
}

static void
bench_placement(void)
{
	actor_partitions = malloc(ACTORS * sizeof *actor_partitions);
	uint64_t rng = 2024;
	for (uint32_t a = 0; a < ACTORS; a++)
		actor_partitions[a] = (uint32_t)(cl__rand_next(&rng) %
						 CL_PARTITIONS);
	compare("hrw", place_hrw, NULL, NULL);
	compare("jump", place_jump, NULL, NULL);
	ring *r8 = malloc(sizeof *r8), *r9 = malloc(sizeof *r9);
	uint32_t vn[2] = {100, 1000};
	for (int k = 0; k < 2; k++) {
		r8->vnodes = r9->vnodes = vn[k];
		ring_build(r8, NODES);
		ring_build(r9, NODES + 1);
		char name[32];
		snprintf(name, sizeof name, "ring%u", vn[k]);
		compare(name, place_ring, r8, r9);
	}
	free(r8);
	free(r9);
	/* the map's bounded-load rendezvous */
	cl_map *m = malloc(sizeof *m), *t = malloc(sizeof *t);
	cl_map_init(m);
	for (uint32_t n = 0; n < NODES; n++) {
		char address[32];
		snprintf(address, sizeof address, "10.0.0.%u:7400", n + 1);
		cl_map_add_node(m, address, CL_NODE_ACTIVE, NULL);
	}
	cl_map_target(m, t);
	*m = *t;
	printf("figure load_max_over_mean_8_nodes_1M_actors %.4f ratio\n",
		load_ratio(m->owner, NODES));
	cl_map_add_node(m, "10.0.0.9:7400", CL_NODE_ACTIVE, NULL);
	uint32_t moved = cl_map_target(m, t);
	uint32_t elsewhere = 0;
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		elsewhere += m->owner[p] != t->owner[p] && t->owner[p] != 9;
	printf("figure placement_bounded_join_moved %.4f fraction\n",
		(double)moved / CL_PARTITIONS);
	printf("figure placement_bounded_join_ideal %.4f fraction\n",
		1.0 / (NODES + 1));
	printf("figure placement_bounded_join_moved_elsewhere %u partitions\n",
		elsewhere);
	free(m);
	free(t);
	free(actor_partitions);
}

/* ---- two nodes over nng ------------------------------------------------ */

#define BENCH_STORE_ACTORS 100000u
#define BENCH_STATE_BYTES 1024u

typedef struct part_store {
	uint32_t count;
	uint32_t capacity;
	uint64_t *ids;
} part_store;

typedef struct bench_store {
	pthread_mutex_t lock;
	part_store parts[CL_PARTITIONS];
	uint64_t imported;
} bench_store;

static unsigned char state_bytes[BENCH_STATE_BYTES];

static int
bs_export(void *arg, uint32_t p, cl_state_item_callback item, void *ia)
{
	bench_store *s = arg;
	for (uint32_t i = 0; i < s->parts[p].count; i++) {
		int rc = item(ia, rt_addr_make(6, s->parts[p].ids[i]),
			state_bytes, sizeof state_bytes);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void
bs_add(bench_store *s, uint64_t id)
{
	part_store *ps = &s->parts[cl_partition_of(id)];
	if (ps->count == ps->capacity) {
		ps->capacity = ps->capacity ? 2 * ps->capacity : 16;
		ps->ids = realloc(ps->ids, ps->capacity * sizeof *ps->ids);
	}
	ps->ids[ps->count++] = id;
}

static int
bs_import(void *arg, rt_addr addr, const void *bytes, size_t length)
{
	bench_store *s = arg;
	(void)bytes;
	if (length != BENCH_STATE_BYTES)
		abort();
	pthread_mutex_lock(&s->lock);
	bs_add(s, addr.id);
	s->imported++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int
bs_drop(void *arg, uint32_t p)
{
	bench_store *s = arg;
	pthread_mutex_lock(&s->lock);
	s->parts[p].count = 0;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* In memory: an import is durable when it returns (no sync). */
static const cl_state_ops bs_ops = {
	.export_partition = bs_export,
	.import_actor = bs_import,
	.drop_partition = bs_drop,
};

static _Atomic uint64_t delivered;
static _Atomic uint64_t latency_samples_n;
static uint64_t latency_samples[1u << 22];

static uint64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
count_deliver(void *arg, const cl_envelope *e)
{
	(void)arg;
	atomic_fetch_add_explicit(&delivered, 1, memory_order_relaxed);
	if (e->type == 2 && e->size == 16) {
		uint64_t sent;
		memcpy(&sent, e->payload, 8);
		uint64_t i = atomic_fetch_add(&latency_samples_n, 1);
		if (i < (1u << 22))
			latency_samples[i] = now_us() - sent;
	}
}

static cl_node *
open_bench_node(const char *dir, const char *listen, const char *join,
	bench_store *s)
{
	mkdir(dir, 0755);
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = listen;
	cfg.join = join;
	cfg.data_dir = dir;
	cfg.state_ops = &bs_ops;
	cfg.state_arg = s;
	cl_node *n = NULL;
	int rc = cl_node_open(&cfg, NULL, &n);
	if (rc != 0) {
		fprintf(stderr, "bench: open %s: %s\n", listen, cl_strerror(rc));
		exit(1);
	}
	cl_node_set_deliver(n, count_deliver, NULL);
	return n;
}

static void
wait_settled(cl_node *a, cl_node *b, uint64_t timeout_ms)
{
	uint64_t deadline = cl__monotonic_ms() + timeout_ms;
	cl_status *x = malloc(sizeof *x), *y = malloc(sizeof *y);
	for (;;) {
		cl_node_status(a, x);
		cl_node_status(b, y);
		if (x->moves_pending == 0 && x->moves_in_flight == 0 &&
			y->moves_in_flight == 0 && y->epoch == x->epoch)
			break;
		if (cl__monotonic_ms() > deadline) {
			fprintf(stderr, "bench: rebalance stuck at %u\n",
				x->moves_pending);
			break;
		}
		cl__sleep_ms(5);
	}
	free(x);
	free(y);
}

static void
send_to(cl_node *from, uint64_t id, uint32_t type, const void *payload)
{
	cl_envelope e = {
		.from = rt_addr_make(5, 1),
		.to = rt_addr_make(6, id),
		.type = type,
		.payload = payload,
		.size = 16,
	};
	while (cl_node_send(from, &e) == CL_EBUSY)
		sched_yield();
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t
p99_us(uint64_t from, uint64_t to)
{
	if (to <= from)
		return 0;
	uint64_t n = to - from;
	uint64_t *c = malloc(n * sizeof *c);
	memcpy(c, latency_samples + from, n * sizeof *c);
	qsort(c, n, sizeof *c, cmp_u64);
	uint64_t v = c[n * 99 / 100];
	free(c);
	return v;
}

/*
 * A loopback cluster address whose port and port + 1 (the control
 * socket) are both free now, so runs beside other users of the
 * machine do not meet on fixed ports.
 */
static const char *
bench_addr(char *buf, size_t size)
{
	for (int tries = 0; tries < 100; tries++) {
		int port = free_port();
		if (port > 0 && port < 65535 && port_free(port + 1)) {
			snprintf(buf, size, "127.0.0.1:%d", port);
			return buf;
		}
	}
	fprintf(stderr, "bench: no free loopback port pair\n");
	exit(1);
}

static void
bench_throughput(const char *root)
{
	char da[300], db[300];
	snprintf(da, sizeof da, "%s/a", root);
	snprintf(db, sizeof db, "%s/b", root);
	static bench_store sa, sb;
	pthread_mutex_init(&sa.lock, NULL);
	pthread_mutex_init(&sb.lock, NULL);
	char aa[32], ab[32];
	bench_addr(aa, sizeof aa);
	cl_node *a = open_bench_node(da, aa, NULL, &sa);
	bench_addr(ab, sizeof ab);	/* after a holds its ports */
	cl_node *b = open_bench_node(db, ab, aa, &sb);
	if (cl_node_wait_joined(b, 5000) != 0) {
		fprintf(stderr, "bench: join timed out\n");
		exit(1);
	}
	cl_node_admin_add(a, ab);
	wait_settled(a, b, 30000);
	cl_map *map = malloc(sizeof *map);
	cl_node_map(a, map);
	uint64_t ids[256];
	uint32_t nids = 0;
	for (uint32_t p = 0; p < CL_PARTITIONS && nids < 256; p++)
		if (map->owner[p] == cl_node_id(b))
			ids[nids++] = (uint64_t)p << 10;
	free(map);
	const uint64_t total = 4000000;
	unsigned char payload[16] = {0};
	uint64_t base = atomic_load(&delivered);
	uint64_t t0 = now_us();
	for (uint64_t i = 0; i < total; i++)
		send_to(a, ids[i % nids], 1, payload);
	while (atomic_load(&delivered) - base < total &&
		now_us() - t0 < 60000000u)
		sched_yield();
	uint64_t took = now_us() - t0;
	uint64_t got = atomic_load(&delivered) - base;
	printf("figure cross_node_messages_per_second %.0f msgs/s\n",
		(double)got * 1e6 / (double)took);
	printf("figure cross_node_messages_lost %" PRIu64 " msgs\n",
		total - got);
	cl_node_close(b);
	cl_node_close(a);
}

typedef struct pacer {
	cl_node *from;
	_Atomic bool stop;
} pacer;

static void *
latency_sender(void *arg)
{
	pacer *p = arg;
	uint64_t rng = 7;
	while (!atomic_load(&p->stop)) {
		for (int k = 0; k < 20; k++) {
			uint64_t part = cl__rand_next(&rng) % CL_PARTITIONS;
			unsigned char payload[16] = {0};
			uint64_t t = now_us();
			memcpy(payload, &t, 8);
			send_to(p->from, part << 10, 2, payload);
		}
		cl__sleep_ms(1); /* ~20,000 msgs/s */
	}
	return NULL;
}

static void
bench_handoff(const char *root)
{
	char dc[300], dd[300];
	snprintf(dc, sizeof dc, "%s/c", root);
	snprintf(dd, sizeof dd, "%s/d", root);
	static bench_store sc, sd;
	pthread_mutex_init(&sc.lock, NULL);
	pthread_mutex_init(&sd.lock, NULL);
	uint64_t rng = 11;
	for (uint32_t i = 0; i < BENCH_STORE_ACTORS; i++) {
		uint64_t p = cl__rand_next(&rng) % CL_PARTITIONS;
		bs_add(&sc, (uint64_t)i << 23 | p << 10 | (i & 1023u));
	}
	char ac[32], ad[32];
	bench_addr(ac, sizeof ac);
	cl_node *c = open_bench_node(dc, ac, NULL, &sc);
	bench_addr(ad, sizeof ad);	/* after c holds its ports */
	cl_node *d = open_bench_node(dd, ad, ac, &sd);
	if (cl_node_wait_joined(d, 5000) != 0)
		exit(1);
	pacer pc = {.from = c};
	pthread_t t;
	pthread_create(&t, NULL, latency_sender, &pc);
	cl__sleep_ms(1000);
	uint64_t before = atomic_load(&latency_samples_n);
	uint64_t t0 = now_us();
	cl_node_admin_add(c, ad);
	cl_node_admin_drain(c, cl_node_id(c));
	wait_settled(c, d, 60000);
	uint64_t took = now_us() - t0;
	uint64_t during = atomic_load(&latency_samples_n);
	atomic_store(&pc.stop, true);
	pthread_join(t, NULL);
	printf("figure handoff_100k_actors_1KiB_seconds %.2f s\n",
		(double)took / 1e6);
	printf("figure handoff_actors_imported %" PRIu64 " actors\n",
		sd.imported);
	uint64_t p99_before = p99_us(0, before);
	uint64_t p99_during = p99_us(before, during);
	printf("figure handoff_p99_latency_before_ms %.2f ms\n",
		p99_before / 1000.0);
	printf("figure handoff_p99_latency_during_ms %.2f ms\n",
		p99_during / 1000.0);
	printf("figure handoff_p99_added_latency_ms %.2f ms\n",
		(p99_during > p99_before ? p99_during - p99_before : 0) / 1000.0);
	cl_node_close(d);
	cl_node_close(c);
}

/* ---- handoff with runtimes and persistence ---------------------------- */

#define PS_KIND 1u
enum { PS_MSG_GET = 1 };

typedef struct ps_actor {
	unsigned char bytes[BENCH_STATE_BYTES];
} ps_actor;

static void
ps_actor_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	if (m->type != PS_MSG_GET || m->correlation == 0)
		return;
	rt_message *r = rt_message_alloc(rt_actor_runtime(self), PS_MSG_GET, 8);
	if (r == NULL)
		return;
	memcpy(r->payload, m->payload, 8);
	(void)rt_reply(self, m, r);
}

static int
ps_actor_encode(const void *state, rt_buffer *out)
{
	return rt_buffer_append(out, state, sizeof(ps_actor));
}

static int
ps_actor_decode(void *state, const void *bytes, size_t length)
{
	if (length != sizeof(ps_actor))
		return RT_ECORRUPT;
	memcpy(state, bytes, length);
	return 0;
}

static int
ps_actor_apply(void *state, uint32_t type, const void *p, size_t n)
{
	(void)state;
	(void)type;
	(void)p;
	(void)n;
	return 0;
}

static const rt_actor_ops ps_actor_ops = {
	.name = "bench",
	.state_size = sizeof(ps_actor),
	.on_message = ps_actor_message,
	.encode_state = ps_actor_encode,
	.decode_state = ps_actor_decode,
	.apply_record = ps_actor_apply,
};

typedef struct real_node {
	rt_runtime *rt;
	ps_node *ps;
	cl_node *cl;
} real_node;

static void
real_node_open(real_node *x, const char *dir, const char *listen,
	const char *join)
{
	mkdir(dir, 0755);
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 1;
	rc.log_level = getenv("FLOCK_BENCH_LOG_INFO") ? RT_LOG_INFO : RT_LOG_WARN;
	if (rt_create(&rc, &x->rt) != 0 ||
		rt_register_kind(x->rt, PS_KIND, &ps_actor_ops) != 0)
		exit(1);
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = listen;
	cfg.join = join;
	cfg.data_dir = dir;
	cfg.state_deferred = true;
	const char *step = getenv("FLOCK_BENCH_STEP_PARTITIONS");
	if (step != NULL)
		cfg.rebalance_step_partitions = (uint32_t)atoi(step);
	if (cl_node_open(&cfg, x->rt, &x->cl) != 0 ||
		cl_node_wait_joined(x->cl, 5000) != 0) {
		fprintf(stderr, "bench: cluster on %s\n", listen);
		exit(1);
	}
	char data[400];
	snprintf(data, sizeof data, "%s/data", dir);
	if (ps_node_open(data, x->rt, NULL, NULL, &x->ps) != 0)
		exit(1);
	cl_node_set_state(x->cl, cl_state_ops_persistence(), x->ps);
	if (rt_start(x->rt) != 0)
		exit(1);
}

static void
real_node_close(real_node *x)
{
	rt_stop(x->rt);
	cl_node_close(x->cl);
	ps_node_close(x->ps);
	rt_destroy(x->rt);
}

static uint64_t ps_ids[BENCH_STORE_ACTORS];

typedef struct asker {
	rt_runtime *rt;
	_Atomic bool stop;
	uint64_t timeouts;
} asker;

/* Asks random actors from an inbox, ~20 every ms, and records each
 * reply's latency. */
static void *
asker_main(void *arg)
{
	asker *a = arg;
	rt_inbox *inbox;
	if (rt_inbox_create(a->rt, NULL, NULL, &inbox) != 0)
		exit(1);
	uint64_t rng = 5;
	uint64_t outstanding = 0;
	while (!atomic_load(&a->stop) || outstanding > 0) {
		for (int k = 0; k < 20 && !atomic_load(&a->stop); k++) {
			rt_message *m = rt_message_alloc(a->rt, PS_MSG_GET, 8);
			uint64_t t = now_us();
			memcpy(m->payload, &t, 8);
			uint64_t id = ps_ids[cl__rand_next(&rng) %
				BENCH_STORE_ACTORS];
			if (rt_inbox_ask(inbox, rt_addr_make(PS_KIND, id), m,
				    10000, NULL) == 0)
				outstanding++;
		}
		rt_message *r;
		uint64_t until = now_us() + 1000;
		while ((r = rt_inbox_wait(inbox, 1)) != NULL || now_us() < until) {
			if (r == NULL)
				continue;
			outstanding--;
			if (r->type == PS_MSG_GET && r->size == 8) {
				uint64_t sent;
				memcpy(&sent, r->payload, 8);
				uint64_t i = atomic_fetch_add(&latency_samples_n, 1);
				if (i < (1u << 22))
					latency_samples[i] = now_us() - sent;
			} else {
				a->timeouts++;
			}
			rt_message_free(a->rt, r);
		}
	}
	rt_inbox_destroy(inbox);
	return NULL;
}

static void
bench_handoff_ps(const char *root)
{
	char de[300], df[300];
	snprintf(de, sizeof de, "%s/e", root);
	snprintf(df, sizeof df, "%s/f", root);
	static real_node e, f;
	char ae[32], af[32];
	bench_addr(ae, sizeof ae);
	real_node_open(&e, de, ae, NULL);
	/* 100,000 stored actors of 1 KiB on e (imported: fast to make) */
	static ps_actor state;
	memset(&state, 0x5a, sizeof state);
	uint64_t rng = 13;
	for (uint32_t i = 0; i < BENCH_STORE_ACTORS; i++) {
		uint64_t p = cl__rand_next(&rng) % CL_PARTITIONS;
		ps_ids[i] = (uint64_t)(i + 1) << 23 | p << 10 | (i & 1023u);
		if (ps_node_import_snapshot(e.ps, rt_addr_make(PS_KIND,
			    ps_ids[i]), &state, sizeof state) != 0)
			exit(1);
	}
	ps_store_flush(ps_node_store(e.ps));
	bench_addr(af, sizeof af);	/* after e holds its ports */
	real_node_open(&f, df, af, ae);
	asker a = {.rt = e.rt};
	pthread_t t;
	atomic_store(&latency_samples_n, 0);
	pthread_create(&t, NULL, asker_main, &a);
	cl__sleep_ms(2000);
	uint64_t before = atomic_load(&latency_samples_n);
	uint64_t t0 = now_us();
	cl_node_admin_add(e.cl, af);
	cl_node_admin_drain(e.cl, cl_node_id(e.cl));
	wait_settled(e.cl, f.cl, 120000);
	uint64_t took = now_us() - t0;
	uint64_t during = atomic_load(&latency_samples_n);
	atomic_store(&a.stop, true);
	pthread_join(t, NULL);
	rt_stats st;
	rt_get_stats(e.rt, &st);
	printf("figure handoff_ps_100k_actors_1KiB_seconds %.2f s\n",
		(double)took / 1e6);
	printf("figure handoff_ps_actors_left_active_on_old_owner %" PRIu64
		" actors\n", st.actors_active);
	uint64_t p99_before = p99_us(0, before);
	uint64_t p99_during = p99_us(before, during);
	printf("figure handoff_ps_p99_ask_before_ms %.2f ms\n",
		p99_before / 1000.0);
	printf("figure handoff_ps_p99_ask_during_ms %.2f ms\n",
		p99_during / 1000.0);
	printf("figure handoff_ps_p99_added_latency_ms %.2f ms\n",
		(p99_during > p99_before ? p99_during - p99_before : 0) / 1000.0);
	printf("figure handoff_ps_asks_failed %" PRIu64 " asks\n", a.timeouts);
	if (getenv("FLOCK_BENCH_LOG_INFO") != NULL && during > before) {
		uint64_t n = during - before;
		uint64_t *c = malloc(n * sizeof *c);
		memcpy(c, latency_samples + before, n * sizeof *c);
		qsort(c, n, sizeof *c, cmp_u64);
		printf("asks %" PRIu64 " p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f "
			"max %.2f ms\n", n, c[n / 2] / 1e3, c[n * 9 / 10] / 1e3,
			c[n * 99 / 100] / 1e3, c[n * 999 / 1000] / 1e3,
			c[n - 1] / 1e3);
		free(c);
	}
	real_node_close(&f);
	real_node_close(&e);
}

/* No argument: every part. Otherwise the parts named: placement,
 * throughput, handoff, handoff_ps. */
static bool
wanted(int argc, char **argv, const char *part)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], part) == 0)
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	rt_log_set_level(NULL, RT_LOG_WARN);
	if (wanted(argc, argv, "placement"))
		bench_placement();
	char root[] = "/tmp/flock-cluster-bench-XXXXXX";
	if (mkdtemp(root) == NULL)
		return 1;
	if (wanted(argc, argv, "throughput"))
		bench_throughput(root);
	if (wanted(argc, argv, "handoff"))
		bench_handoff(root);
	if (wanted(argc, argv, "handoff_ps"))
		bench_handoff_ps(root);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : 1;
}
