/*
 * persistence_store_test.c — the LMDB snapshot store and the snapshot
 * value format.
 *
 * Goal: snapshots round-trip with their LSN, damaged values are refused,
 * queued puts are readable before they commit, a put waits for its
 * journal record to be durable and is dropped when the record failed
 * (no checkpoint marker commits after that until the store is opened
 * again), a checkpoint marker commits after the puts queued before it, a full
 * map grows instead of failing, and the owing marks follow the puts that
 * set and clear them (and a partition drop).
 * Method: a real environment in the test's temp directory, with a tiny
 * initial map for growth; the durable-wait callback is a test double.
 */
#include "persistence/persistence.h"
#include "tests/test.h"

#include <pthread.h>

typedef struct got {
	uint64_t lsn;
	size_t bytes;
	unsigned char state[8192];
} got;

static int
take(void *arg, uint64_t lsn, const void *state, size_t bytes)
{
	got *g = arg;
	CHECK(bytes <= sizeof g->state);
	g->lsn = lsn;
	g->bytes = bytes;
	memcpy(g->state, state, bytes);
	return 0;
}

static const char *
store_dir(void)
{
	static char path[512];
	snprintf(path, sizeof path, "%s/snapshots", test_tmpdir());
	return path;
}

TEST(persistence_snapshot_value_roundtrip_and_damage)
{
	unsigned char v[256];
	rt_addr a = rt_addr_make(2, 77);
	size_t n = ps_snapshot_value_encode(a, 42, "state!", 6, v);
	CHECK_EQ(n, ps_snapshot_value_bytes(6));
	uint64_t lsn;
	const void *state;
	size_t bytes;
	CHECK_EQ(ps_snapshot_value_decode(a, v, n, &lsn, &state, &bytes), 0);
	CHECK_EQ_U64(lsn, 42);
	CHECK_EQ(bytes, 6);
	CHECK(memcmp(state, "state!", 6) == 0);
	/* Under another key (a value copied to the wrong actor) it fails. */
	CHECK_EQ(ps_snapshot_value_decode(rt_addr_make(2, 78), v, n, &lsn,
			 &state, &bytes),
		PS_ECORRUPT);
	for (size_t i = 0; i < n; i++) {
		v[i] ^= 0x04;
		int rc = ps_snapshot_value_decode(a, v, n, &lsn, &state, &bytes);
		CHECK(rc == PS_ECORRUPT || rc == PS_EVERSION);
		v[i] ^= 0x04;
	}
	for (size_t cut = 0; cut < n; cut++)
		CHECK_EQ(ps_snapshot_value_decode(a, v, cut, &lsn, &state, &bytes),
			PS_ECORRUPT);
	/* Keys sort by kind, then id, as big-endian bytes. */
	unsigned char k1[16], k2[16], k3[16];
	ps_snapshot_key(rt_addr_make(1, UINT64_MAX), k1);
	ps_snapshot_key(rt_addr_make(2, 0), k2);
	ps_snapshot_key(rt_addr_make(2, 256), k3);
	CHECK(memcmp(k1, k2, 16) < 0);
	CHECK(memcmp(k2, k3, 16) < 0);
}

TEST(persistence_store_put_get_reopen)
{
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	got g;
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 1), take, &g), PS_ENOTFOUND);
	for (uint64_t i = 0; i < 100; i++) {
		char state[32];
		int n = snprintf(state, sizeof state, "actor-%llu",
			(unsigned long long)i);
		CHECK_EQ(ps_store_put(s, rt_addr_make(1, i), 1000 + i, state,
				 (size_t)n),
			0);
	}
	/* Read-your-writes: visible whether or not committed yet. */
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 7), take, &g), 0);
	CHECK_EQ_U64(g.lsn, 1007);
	CHECK(memcmp(g.state, "actor-7", 7) == 0);
	/* A newer put of the same actor wins. */
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 7), 2000, "new", 3), 0);
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 7), take, &g), 0);
	CHECK_EQ_U64(g.lsn, 2000);
	CHECK_EQ(ps_store_checkpoint_lsn(s), 0);
	CHECK_EQ(ps_store_flush(s), 0);
	ps_store_close(s);
	CHECK_EQ(ps_store_open(&o, &s), 0);
	for (uint64_t i = 0; i < 100; i++) {
		CHECK_EQ(ps_store_get(s, rt_addr_make(1, i), take, &g), 0);
		CHECK_EQ_U64(g.lsn, i == 7 ? 2000 : 1000 + i);
	}
	ps_store_close(s);
}

static size_t
owing_now(ps_store *s, rt_addr *first_out)
{
	rt_addr *addrs;
	size_t n;
	CHECK_EQ(ps_store_scan_owing(s, &addrs, &n), 0);
	if (n > 0 && first_out != NULL)
		*first_out = addrs[0];
	free(addrs);
	return n;
}

TEST(persistence_store_owing_marks)
{
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(owing_now(s, NULL), 0);
	uint64_t p2 = (uint64_t)2 << PS_PARTITION_SHIFT;
	rt_addr a = rt_addr_make(1, 5), b = rt_addr_make(1, p2 | 9);
	CHECK_EQ(ps_store_put_owing(s, a, 10, "a", 1, true), 0);
	CHECK_EQ(ps_store_put_owing(s, b, 11, "b", 1, true), 0);
	/* Only committed marks count. */
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK_EQ(owing_now(s, NULL), 2);
	/* A plain put keeps the mark, an owing put clears it. */
	CHECK_EQ(ps_store_put(s, b, 12, "b2", 2), 0);
	CHECK_EQ(ps_store_put_owing(s, a, 13, "a2", 2, false), 0);
	CHECK_EQ(ps_store_flush(s), 0);
	ps_store_close(s);
	CHECK_EQ(ps_store_open(&o, &s), 0);
	rt_addr first = {0};
	CHECK_EQ(owing_now(s, &first), 1);
	CHECK(rt_addr_equal(first, b));
	/* Clearing an unmarked actor is no error. */
	CHECK_EQ(ps_store_put_owing(s, a, 14, "a3", 2, false), 0);
	CHECK_EQ(ps_store_drop_partition(s, 2), 0);
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK_EQ(owing_now(s, NULL), 0);
	got g;
	CHECK_EQ(ps_store_get(s, a, take, &g), 0);
	CHECK_EQ_U64(g.lsn, 14);
	ps_store_close(s);
}

typedef struct done_flag {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	int done;
	int status;
} done_flag;

static void
on_done(void *arg, int status)
{
	done_flag *d = arg;
	pthread_mutex_lock(&d->mutex);
	d->done++;
	d->status = status;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->mutex);
}

TEST(persistence_store_checkpoint_marker)
{
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 1), 5, "a", 1), 0);
	done_flag d = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 5, on_done, &d), 0);
	pthread_mutex_lock(&d.mutex);
	while (d.done == 0)
		pthread_cond_wait(&d.cond, &d.mutex);
	pthread_mutex_unlock(&d.mutex);
	CHECK_EQ(d.status, 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 5);
	ps_store_close(s);
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 5);
	ps_store_close(s);
}

/* A durable-wait double: LSNs up to `durable` are durable, LSNs in the
 * failed set failed; waits for anything else block until released. */
typedef struct fake_journal {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	uint64_t durable;
	uint64_t failed_lsn;
	uint64_t waits;
} fake_journal;

static int
fake_wait(void *arg, uint64_t lsn)
{
	fake_journal *f = arg;
	pthread_mutex_lock(&f->mutex);
	f->waits++;
	pthread_cond_broadcast(&f->cond);
	int rc = 0;
	for (;;) {
		if (lsn == f->failed_lsn) {
			rc = PS_EIO;
			break;
		}
		if (lsn <= f->durable)
			break;
		pthread_cond_wait(&f->cond, &f->mutex);
	}
	pthread_mutex_unlock(&f->mutex);
	return rc;
}

TEST(persistence_store_waits_for_journal)
{
	fake_journal f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
		10, 12, 0};
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	o.wait_durable = fake_wait;
	o.wait_arg = &f;
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 1), 11, "eleven", 6), 0);
	/* The writer is now blocked on LSN 11; the marker queued behind the
	 * put cannot commit before it. */
	done_flag d = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 11, on_done, &d), 0);
	pthread_mutex_lock(&f.mutex);
	while (f.waits == 0)
		pthread_cond_wait(&f.cond, &f.mutex);
	pthread_mutex_unlock(&f.mutex);
	CHECK_EQ(d.done, 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 0);
	pthread_mutex_lock(&f.mutex);
	f.durable = 11;
	pthread_cond_broadcast(&f.cond);
	pthread_mutex_unlock(&f.mutex);
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK_EQ(d.done, 1);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 11);
	/* A put whose record failed is dropped, not committed, and the
	 * flush says so. */
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 2), 12, "twelve", 6), 0);
	CHECK_EQ(ps_store_flush(s), PS_EIO);
	ps_store_close(s);
	o.wait_durable = NULL;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	got g;
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 1), take, &g), 0);
	CHECK_EQ_U64(g.lsn, 11);
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 2), take, &g), PS_ENOTFOUND);
	ps_store_close(s);
}

/* After a put is dropped (its record failed), no checkpoint marker
 * commits until the store is opened again: the dropped snapshot may have
 * been the only holder of journal records below the marker. */
TEST(persistence_store_no_checkpoint_after_dropped_put)
{
	fake_journal f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
		20, 12, 0};
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	o.wait_durable = fake_wait;
	o.wait_arg = &f;
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 1), 11, "eleven", 6), 0);
	done_flag d1 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 11, on_done, &d1), 0);
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK_EQ(d1.status, 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 11);
	/* 12 failed: its put is dropped, and the markers after it, in the
	 * same batch or a later one, are refused: checkpoints and flushes
	 * alike. */
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 2), 12, "twelve", 6), 0);
	done_flag d2 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 13, on_done, &d2), 0);
	CHECK_EQ(ps_store_flush(s), PS_EIO);
	CHECK_EQ(d2.done, 1);
	CHECK_EQ(d2.status, PS_EIO);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 3), 14, "fourteen", 8), 0);
	done_flag d3 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 14, on_done, &d3), 0);
	CHECK_EQ(ps_store_flush(s), PS_EIO);
	CHECK_EQ(d3.status, PS_EIO);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 11);
	ps_store_close(s);
	/* Opened again (the node's restart): the old marker stands, puts
	 * that were not dropped are there, and markers commit again. */
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 11);
	got g;
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 3), take, &g), 0);
	CHECK_EQ_U64(g.lsn, 14);
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 2), take, &g), PS_ENOTFOUND);
	done_flag d4 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 15, on_done, &d4), 0);
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK_EQ(d4.status, 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 15);
	ps_store_close(s);
}

/* A hand-off's imports are put at an LSN of the new owner's journal and
 * confirmed to the cluster by a flush marker (cluster/state_ps.c). When
 * that LSN's record fails, the import is dropped; the flush must fail
 * too, or the old owner would forget an actor whose state is then on
 * neither node (flocksim seed 403 of `--faults swarm`: a user lost in a
 * drain). */
TEST(persistence_store_flush_fails_after_dropped_import)
{
	fake_journal f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
		20, 21, 0};
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	o.wait_durable = fake_wait;
	o.wait_arg = &f;
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 7), 20, "kept", 4), 0);
	done_flag d1 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 0, on_done, &d1), 0);
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK_EQ(d1.status, 0);
	/* The imports, then the cluster's sync: 21 fails. */
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 8), 21, "imported", 8), 0);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 9), 21, "imported", 8), 0);
	done_flag d2 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 0, on_done, &d2), 0);
	CHECK_EQ(ps_store_flush(s), PS_EIO);
	CHECK_EQ(d2.done, 1);
	CHECK_EQ(d2.status, PS_EIO);
	got g;
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 8), take, &g), PS_ENOTFOUND);
	/* A sync asked again (the cluster retries) fails as well until the
	 * store is opened again: the import must be made again. */
	done_flag d3 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
	CHECK_EQ(ps_store_checkpoint(s, 0, on_done, &d3), 0);
	CHECK_EQ(ps_store_flush(s), PS_EIO);
	CHECK_EQ(d3.status, PS_EIO);
	ps_store_close(s);
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 7), take, &g), 0);
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 9), take, &g), PS_ENOTFOUND);
	CHECK_EQ(ps_store_flush(s), 0);
	ps_store_close(s);
}

TEST(persistence_store_map_grows_when_full)
{
	ps_store_options o;
	ps_store_options_default(&o, store_dir());
	o.map_bytes = 64 * 1024; /* a handful of pages */
	o.batch_puts_max = 64;
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	uint64_t before = ps_store_map_bytes(s);
	static unsigned char state[2000];
	for (uint64_t i = 0; i < 2000; i++) {
		memset(state, (int)(i & 0xff), sizeof state);
		CHECK_EQ(ps_store_put(s, rt_addr_make(4, i), i + 1, state,
				 sizeof state),
			0);
	}
	CHECK_EQ(ps_store_flush(s), 0);
	CHECK(ps_store_map_bytes(s) > before);
	/* Reads during and after growth see everything. */
	got g;
	for (uint64_t i = 0; i < 2000; i += 97) {
		CHECK_EQ(ps_store_get(s, rt_addr_make(4, i), take, &g), 0);
		CHECK_EQ_U64(g.lsn, i + 1);
		CHECK_EQ(g.bytes, sizeof state);
		CHECK_EQ(g.state[1999], (int)(i & 0xff));
	}
	ps_store_close(s);
	CHECK_EQ(ps_store_open(&o, &s), 0);
	CHECK_EQ(ps_store_get(s, rt_addr_make(4, 1999), take, &g), 0);
	ps_store_close(s);
}
