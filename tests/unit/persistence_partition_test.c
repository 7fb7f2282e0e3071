/*
 * persistence_partition_test.c — moving a partition's stored state:
 * the store's partition-ordered keys (scan, drop, the format-1 move),
 * and the node's export / import / drop.
 *
 * Goal: a scan returns exactly one partition's actors with their newest
 * state (queued puts win); a drop takes them away at once for readers
 * and on disk after the commit, and leaves other partitions alone; a
 * format-1 store opens as format 2 with every snapshot still readable;
 * export gives each actor's latest state even when part of it is still
 * only in the journal (rebuilt with apply_record); import makes the next
 * activation load it and is never overlaid by older records of the same
 * actor on the importing node; after drop a restart replays nothing of
 * the partition.
 *
 * Method: a real store in the test's directory (the format-1 store is
 * written with LMDB directly, as the old build laid it out); nodes on
 * deterministic runtimes with an "accumulator" kind that journals each
 * addition and applies it on replay. A route hook's may_activate keeps a
 * partition asleep, as the cluster does for partitions it does not own.
 */
#include "persistence/persistence.h"
#include "tests/test.h"

#include <lmdb.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

/* ---- the store ----------------------------------------------------------- */

#define SEEN_MAX 256

typedef struct seen {
	uint32_t count;
	rt_addr addr[SEEN_MAX];
	uint64_t value[SEEN_MAX];
} seen;

static int
collect(void *arg, rt_addr addr, uint64_t lsn, const void *state,
	size_t bytes)
{
	(void)lsn;
	seen *s = arg;
	CHECK(s->count < SEEN_MAX);
	CHECK_EQ(bytes, 8);
	s->addr[s->count] = addr;
	memcpy(&s->value[s->count], state, 8);
	s->count++;
	return 0;
}

static uint64_t
in_partition(uint32_t partition, uint64_t n)
{
	return n << 23 | (uint64_t)partition << PS_PARTITION_SHIFT | (n & 1023u);
}

static uint64_t
seen_value(const seen *s, rt_addr addr)
{
	for (uint32_t i = 0; i < s->count; i++)
		if (rt_addr_equal(s->addr[i], addr))
			return s->value[i];
	CHECK_MSG(false, "actor %" PRIu64 " not seen", addr.id);
	return 0;
}

static ps_store *
store_open(const char *dir)
{
	ps_store_options o;
	ps_store_options_default(&o, dir);
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	return s;
}

static void
store_put(ps_store *s, rt_addr a, uint64_t value)
{
	CHECK_EQ(ps_store_put(s, a, 1, &value, 8), 0);
}

TEST(persistence_partition_scan_and_drop)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/snapshots", test_tmpdir());
	ps_store *s = store_open(dir);
	/* Partitions 4, 5, 6; two kinds; some committed, some queued. */
	for (uint64_t n = 0; n < 10; n++)
		for (uint32_t p = 4; p <= 6; p++)
			store_put(s, rt_addr_make(1 + (uint32_t)(n % 2),
				in_partition(p, n)), p * 100 + n);
	CHECK_EQ(ps_store_flush(s), 0);
	store_put(s, rt_addr_make(1, in_partition(5, 0)), 999);
	store_put(s, rt_addr_make(1, in_partition(5, 77)), 777);
	seen a = {0};
	CHECK_EQ(ps_store_scan_partition(s, 5, collect, &a), 0);
	CHECK_EQ(a.count, 11);
	for (uint32_t i = 0; i < a.count; i++)
		CHECK_EQ(ps_partition_of(a.addr[i].id), 5);
	CHECK_EQ_U64(seen_value(&a, rt_addr_make(1, in_partition(5, 0))), 999);
	CHECK_EQ_U64(seen_value(&a, rt_addr_make(2, in_partition(5, 3))), 503);
	CHECK_EQ_U64(seen_value(&a, rt_addr_make(1, in_partition(5, 77))), 777);
	seen empty = {0};
	CHECK_EQ(ps_store_scan_partition(s, 7, collect, &empty), 0);
	CHECK_EQ(empty.count, 0);
	CHECK_EQ(ps_store_scan_partition(s, PS_PARTITIONS, collect, &empty),
		PS_EINVAL);

	/* Drop: gone for readers at once, queued or committed. */
	CHECK_EQ(ps_store_drop_partition(s, 5), 0);
	uint64_t lsn;
	(void)lsn;
	seen b = {0};
	CHECK_EQ(ps_store_scan_partition(s, 5, collect, &b), 0);
	CHECK_EQ(b.count, 0);
	/* A put after the drop survives it. */
	store_put(s, rt_addr_make(1, in_partition(5, 8)), 5555);
	CHECK_EQ(ps_store_flush(s), 0);
	ps_store_close(s);
	s = store_open(dir);
	seen c = {0};
	CHECK_EQ(ps_store_scan_partition(s, 5, collect, &c), 0);
	CHECK_EQ(c.count, 1);
	CHECK_EQ_U64(c.value[0], 5555);
	seen d = {0};
	CHECK_EQ(ps_store_scan_partition(s, 4, collect, &d), 0);
	CHECK_EQ(d.count, 10);
	CHECK_EQ(ps_store_scan_partition(s, 6, collect, &d), 0);
	CHECK_EQ(d.count, 20);
	ps_store_close(s);
}

/* Writes a format-1 environment: "snapshots" keyed by ps_snapshot_key,
 * meta format_version 1. */
static void
write_format_1(const char *dir, uint32_t actors)
{
	mkdir(dir, 0755);
	MDB_env *env;
	CHECK_EQ(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 4);
	mdb_env_set_mapsize(env, 64u << 20);
	CHECK_EQ(mdb_env_open(env, dir, MDB_NOTLS, 0644), 0);
	MDB_txn *txn;
	MDB_dbi snaps, meta;
	CHECK_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
	CHECK_EQ(mdb_dbi_open(txn, "snapshots", MDB_CREATE, &snaps), 0);
	CHECK_EQ(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
	unsigned char version[4] = {1, 0, 0, 0};
	MDB_val k = {14, "format_version"};
	MDB_val v = {4, version};
	CHECK_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
	for (uint32_t i = 0; i < actors; i++) {
		rt_addr a = rt_addr_make(1 + i % 3, in_partition(i % 50, i));
		uint64_t value = i;
		unsigned char key[16], bytes[64];
		ps_snapshot_key(a, key);
		size_t n = ps_snapshot_value_encode(a, 7, &value, 8, bytes);
		MDB_val kk = {16, key}, vv = {n, bytes};
		CHECK_EQ(mdb_put(txn, snaps, &kk, &vv, 0), 0);
	}
	CHECK_EQ(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static int
take_u64(void *arg, uint64_t lsn, const void *state, size_t bytes)
{
	CHECK_EQ_U64(lsn, 7);
	CHECK_EQ(bytes, 8);
	memcpy(arg, state, 8);
	return 0;
}

TEST(persistence_partition_format_1_store_is_moved_over)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/old", test_tmpdir());
	/* More than one bounded move transaction. */
	const uint32_t actors = 10000;
	write_format_1(dir, actors);
	ps_store *s = store_open(dir);
	for (uint32_t i = 0; i < actors; i += 97) {
		uint64_t value = UINT64_MAX;
		CHECK_EQ(ps_store_get(s, rt_addr_make(1 + i % 3,
			in_partition(i % 50, i)), take_u64, &value), 0);
		CHECK_EQ_U64(value, i);
	}
	seen p = {0};
	CHECK_EQ(ps_store_scan_partition(s, 49, collect, &p), 0);
	CHECK_EQ(p.count, actors / 50);
	ps_store_close(s);
	/* Open again: already format 2, nothing to move. */
	s = store_open(dir);
	uint64_t value = 0;
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, in_partition(0, 0)), take_u64,
			 &value), 0);
	ps_store_close(s);
}

/* ---- the node ----------------------------------------------------------- */

#define KIND_ACC 1u
enum { MSG_ADD = 1 };
enum { EVENT_ADD = 1 };

typedef struct acc_state {
	uint64_t total;
	uint64_t events;
} acc_state;

/* Actors find their node through their runtime. */
static rt_runtime *node_rt[2];
static ps_node *node_ps[2];

static ps_node *
node_of(rt_runtime *rt)
{
	return node_rt[0] == rt ? node_ps[0] : node_ps[1];
}

static void
acc_message(rt_actor *self, void *state, const rt_message *m)
{
	acc_state *s = state;
	CHECK_EQ(m->type, MSG_ADD);
	uint64_t v;
	memcpy(&v, m->payload, 8);
	CHECK_EQ(ps_node_append(node_of(rt_actor_runtime(self)), rt_self(self),
			 EVENT_ADD, &v, 8, NULL, NULL, NULL), 0);
	s->total += v;
	s->events++;
	rt_mark_dirty(self);
}

static int
acc_apply(void *state, uint32_t type, const void *payload, size_t length)
{
	acc_state *s = state;
	if (type != EVENT_ADD || length != 8)
		return RT_ECORRUPT;
	uint64_t v;
	memcpy(&v, payload, 8);
	s->total += v;
	s->events++;
	return 0;
}

static int
acc_encode(const void *state, rt_buffer *out)
{
	return rt_buffer_append(out, state, sizeof(acc_state));
}

static int
acc_decode(void *state, const void *bytes, size_t length)
{
	if (length != sizeof(acc_state))
		return RT_ECORRUPT;
	memcpy(state, bytes, length);
	return 0;
}

static const rt_actor_ops acc_ops = {
	.name = "acc",
	.state_size = sizeof(acc_state),
	.on_message = acc_message,
	.apply_record = acc_apply,
	.encode_state = acc_encode,
	.decode_state = acc_decode,
};

/* The pretend cluster: partitions in `away` are owned elsewhere. */
static uint32_t away_partition = UINT32_MAX;

static int
route_local(void *arg, rt_message *m)
{
	(void)arg;
	(void)m;
	return RT_ROUTE_LOCAL;
}

static bool
may_activate(void *arg, rt_addr addr)
{
	(void)arg;
	return ps_partition_of(addr.id) != away_partition;
}

static const rt_route_ops gate_ops = {
	.route = route_local,
	.may_activate = may_activate,
};

static void
node_open(int i, const char *name, ps_node_report *report)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.deterministic = true;
	cfg.passivate_idle_ms = 0;
	cfg.log_level = RT_LOG_WARN;
	CHECK_EQ(rt_create(&cfg, &node_rt[i]), 0);
	CHECK_EQ(rt_register_kind(node_rt[i], KIND_ACC, &acc_ops), 0);
	rt_set_route(node_rt[i], &gate_ops, NULL);
	char dir[512];
	snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), name);
	CHECK_EQ(ps_node_open(dir, node_rt[i], NULL, report, &node_ps[i]), 0);
	CHECK_EQ(rt_start(node_rt[i]), 0);
	rt_det_run_until_idle(node_rt[i], 0);
}

static void
node_close(int i)
{
	CHECK_EQ(rt_stop(node_rt[i]), 0);
	ps_node_close(node_ps[i]);
	rt_destroy(node_rt[i]);
	node_rt[i] = NULL;
	node_ps[i] = NULL;
}

/* Like a crash for what the store holds: nothing active is saved. */
static void
node_close_unsaved(int i)
{
	rt_set_store(node_rt[i], NULL, NULL);
	node_close(i);
}

static atomic_int checkpointed;

static void
on_checkpoint(void *arg, int status, uint64_t lsn)
{
	(void)arg;
	(void)lsn;
	CHECK_EQ(status, 0);
	atomic_store(&checkpointed, 1);
}

static void
checkpoint(int i)
{
	atomic_store(&checkpointed, 0);
	/* Everything appended is durable first, so the checkpoint covers
	 * it. */
	ps_journal *j = ps_node_journal(node_ps[i]);
	CHECK_EQ(ps_journal_wait(j, ps_journal_last_lsn(j)), 0);
	CHECK_EQ(ps_node_checkpoint(node_ps[i], on_checkpoint, NULL), 0);
	for (int k = 0; k < 100000 && !atomic_load(&checkpointed); k++) {
		rt_det_run_until_idle(node_rt[i], 0);
		struct timespec ms = {0, 1000 * 1000};
		nanosleep(&ms, NULL);
	}
	CHECK(atomic_load(&checkpointed));
}

static void
add(int i, uint64_t id, uint64_t v)
{
	rt_message *m = rt_message_alloc(node_rt[i], MSG_ADD, 8);
	memcpy(m->payload, &v, 8);
	CHECK_EQ(rt_send_external(node_rt[i], rt_addr_make(KIND_ACC, id), m), 0);
	rt_det_run_until_idle(node_rt[i], 0);
}

typedef struct exported {
	uint32_t count;
	rt_addr addr[64];
	acc_state state[64];
} exported;

static int
on_export(void *arg, rt_addr addr, const void *state, size_t bytes)
{
	exported *e = arg;
	CHECK(e->count < 64);
	CHECK_EQ(bytes, sizeof(acc_state));
	e->addr[e->count] = addr;
	memcpy(&e->state[e->count], state, bytes);
	e->count++;
	return 0;
}

static const acc_state *
exported_state(const exported *e, uint64_t id)
{
	for (uint32_t i = 0; i < e->count; i++)
		if (e->addr[i].id == id)
			return &e->state[i];
	CHECK_MSG(false, "actor %" PRIu64 " not exported", id);
	return NULL;
}

static bool
pred_partition(void *arg, rt_addr addr)
{
	return ps_partition_of(addr.id) == *(const uint32_t *)arg;
}

static void
passivate_partition(int i, uint32_t partition)
{
	CHECK_EQ(rt_passivate_where(node_rt[i], pred_partition, &partition,
			 NULL, NULL), 0);
	rt_det_run_until_idle(node_rt[i], 0);
}

static uint64_t
total_of(int i, uint64_t id)
{
	/* Passivate the partition, then read what the store holds. */
	passivate_partition(i, ps_partition_of(id));
	exported e = {0};
	CHECK_EQ(ps_node_export_partition(node_ps[i], ps_partition_of(id),
			 on_export, &e), 0);
	for (uint32_t k = 0; k < e.count; k++)
		if (e.addr[k].id == id)
			return e.state[k].total;
	return 0;
}

TEST_WITH_TIMEOUT(persistence_partition_export_import_drop, 60)
{
	const uint32_t P = 3, Q = 4;
	uint64_t a1 = in_partition(P, 1), a2 = in_partition(P, 2);
	uint64_t a3 = in_partition(P, 3), b1 = in_partition(Q, 1);
	ps_node_report report;
	node_open(0, "a", &report);
	/* a1: snapshot only (saved at stop); a2: snapshot + records after
	 * it (a checkpoint, then more adds); a3: records only. */
	add(0, a1, 10);
	add(0, a2, 20);
	add(0, b1, 40);
	checkpoint(0);
	add(0, a2, 1);
	add(0, a3, 30);
	add(0, a3, 3);
	/* No snapshot of the tails. */
	node_close_unsaved(0);
	/* Reopen with partition P owned elsewhere: its actors stay asleep
	 * with their records held. */
	away_partition = P;
	node_open(0, "a", &report);
	rt_stats st;
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 0);
	exported e = {0};
	CHECK_EQ(ps_node_export_partition(node_ps[0], P, on_export, &e), 0);
	CHECK_EQ(e.count, 3);
	CHECK_EQ_U64(exported_state(&e, a1)->total, 10);
	CHECK_EQ_U64(exported_state(&e, a2)->total, 21);
	CHECK_EQ_U64(exported_state(&e, a2)->events, 2);
	CHECK_EQ_U64(exported_state(&e, a3)->total, 33);

	/* Node B had an earlier life of a2 (records 1000 + 1000, no
	 * snapshot); P arrives while its actors are asleep there. */
	away_partition = UINT32_MAX;
	node_open(1, "b", &report);
	add(1, a2, 1000);
	add(1, a2, 1000);
	node_close_unsaved(1);
	away_partition = P;
	node_open(1, "b", &report);
	for (uint32_t i = 0; i < e.count; i++)
		CHECK_EQ(ps_node_import_snapshot(node_ps[1], e.addr[i],
				 &e.state[i], sizeof e.state[i]), 0);
	away_partition = UINT32_MAX;
	add(1, a1, 5);
	CHECK_EQ_U64(total_of(1, a1), 15);
	/* The import replaced the earlier life, across a restart too. */
	node_close(1);
	node_open(1, "b", &report);
	add(1, a2, 100);
	add(1, a3, 100);
	CHECK_EQ_U64(total_of(1, a2), 121);
	CHECK_EQ_U64(total_of(1, a3), 133);
	node_close(1);

	/* A drops P: its records are not replayed after a restart, and
	 * the other partition is untouched. */
	CHECK_EQ(ps_node_drop_partition(node_ps[0], P), 0);
	exported none = {0};
	CHECK_EQ(ps_node_export_partition(node_ps[0], P, on_export, &none), 0);
	CHECK_EQ(none.count, 0);
	node_close(0);
	node_open(0, "a", &report);
	CHECK_EQ_U64(report.actors_recovered, 0);
	CHECK_EQ(ps_node_export_partition(node_ps[0], P, on_export, &none), 0);
	CHECK_EQ(none.count, 0);
	CHECK_EQ_U64(total_of(0, b1), 40);
	node_close(0);
}

/*
 * A restarted cluster node serves nothing until it holds its lease, so
 * recovery cannot wake the actors with records after the checkpoint; it
 * must wake them once the node serves their partitions (ps_node_wake,
 * which the cluster calls when it gains the lease): they owe effects
 * that only they send again. Before, they slept until a message came.
 */
TEST_WITH_TIMEOUT(persistence_partition_wake_after_the_partition_is_served,
	60)
{
	const uint32_t P = 6, Q = 7;
	uint64_t a1 = in_partition(P, 1), a2 = in_partition(P, 2);
	uint64_t b1 = in_partition(Q, 1);
	ps_node_report report;
	away_partition = UINT32_MAX;
	node_open(0, "w", &report);
	add(0, a1, 1);
	add(0, a2, 2);
	add(0, b1, 3);
	node_close_unsaved(0);
	/* P not served at recovery: its two actors sleep, Q's wakes. */
	away_partition = P;
	node_open(0, "w", &report);
	CHECK_EQ_U64(report.actors_recovered, 3);
	rt_stats st;
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 1);
	/* Still not served: a wake leaves them asleep, records kept. */
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 1);
	/* Served now: the wake activates them, with their records. */
	away_partition = UINT32_MAX;
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 3);
	CHECK_EQ_U64(total_of(0, a1), 1);
	CHECK_EQ_U64(total_of(0, a2), 2);
	/* Their records were taken: a second wake finds nothing to wake
	 * (the reads above put P to sleep again). */
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 1);
	node_close(0);
}

/*
 * An actor that goes to sleep owing effects (a node that lost its lease
 * puts every actor to sleep, and the timer that would re-send them finds
 * no lease) asks to be woken: ps_node_wake activates it once its
 * partition is served, once; a partition that moved away forgets it.
 */
TEST_WITH_TIMEOUT(persistence_partition_wake_later_wakes_a_sleeper_once, 60)
{
	const uint32_t P = 8, Q = 9;
	uint64_t a1 = in_partition(P, 1), b1 = in_partition(Q, 1);
	ps_node_report report;
	away_partition = UINT32_MAX;
	node_open(0, "s", &report);
	add(0, a1, 5);
	add(0, b1, 6);
	CHECK_EQ(ps_node_wake_later(node_ps[0], rt_addr_make(KIND_ACC, a1)), 0);
	CHECK_EQ(ps_node_wake_later(node_ps[0], rt_addr_make(KIND_ACC, b1)), 0);
	passivate_partition(0, P);
	passivate_partition(0, Q);
	rt_stats st;
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 0);
	/* P not served: only Q's sleeper wakes; P's keeps waiting. */
	away_partition = P;
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 1);
	away_partition = UINT32_MAX;
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 2);
	/* Woken once: asleep again, nothing wakes them. */
	passivate_partition(0, P);
	passivate_partition(0, Q);
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 0);
	/* A partition dropped here forgets its sleepers. */
	CHECK_EQ(ps_node_wake_later(node_ps[0], rt_addr_make(KIND_ACC, a1)), 0);
	CHECK_EQ(ps_node_drop_partition(node_ps[0], P), 0);
	CHECK_EQ(ps_node_wake(node_ps[0]), 0);
	rt_det_run_until_idle(node_rt[0], 0);
	rt_get_stats(node_rt[0], &st);
	CHECK_EQ_U64(st.actors_active, 0);
	node_close(0);
}
