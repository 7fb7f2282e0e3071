/*
 * persistence_bench.c — durability throughput and recovery speed.
 *
 * Prints `figure <name> <value> <unit>` and `ratio <name> <peer> <value>`:
 *   - the disk's fdatasync latency after a 4 KiB append, p50 and p99, and
 *     after a 4 KiB write into space zeroed and synced before (the
 *     journal's zeroed space), in turn with the appends;
 *   - durable acknowledged writes/s through the journal with 1, 16 and 64
 *     writer threads, each waiting for its ack before its next write;
 *   - the same with one LMDB write transaction per write (commit with
 *     LMDB's default sync), on the same disk in the same run, and the
 *     ratio journal/LMDB per writer count (goal >= 20 at 64 writers);
 *   - journal recovery time per million records (open + verify + replay);
 *   - activation reads from the snapshot store, actors/s on one thread
 *     (goal >= 100,000/s per core).
 * Data lives in a fresh directory under FLOCK_BENCH_DIR (default /tmp),
 * removed at the end. Durations are fixed wall-clock windows, so numbers
 * vary with the disk; no figure is asserted.
 */
#include "persistence/persistence.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds each throughput window runs: long enough for hundreds of
 * fsyncs, short enough that the whole bench stays under a minute. */
#define WINDOW_MS 1500u
/* fdatasync samples for the latency percentiles. */
#define SYNC_SAMPLES 400
/* Records written for the recovery figure. */
#define RECOVERY_RECORDS 1000000u
/* Snapshots read for the activation figure. */
#define ACTIVATION_ACTORS 200000u
#define WRITERS_MAX 64

static char base_dir[512];

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
fail(const char *what, int rc)
{
	fprintf(stderr, "persistence_bench: %s: %s\n", what, ps_strerror(rc));
	exit(1);
}

static int
compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- fdatasync latency ---------------------------------------------------- */

/* Syncs a 4 KiB write at each of SYNC_SAMPLES offsets of two files, in
 * turn: one growing by appends, one whose space was zeroed and synced
 * first (as the journal keeps it ahead of its records), so its syncs
 * persist no new size. Alternating shares the load between them. */
static void
bench_fdatasync(void)
{
	const ps_disk *d = ps_disk_real();
	char path[2][600];
	int fd[2];
	static unsigned char block[4096], zeros[4096];
	memset(block, 0xab, sizeof block);
	for (int f = 0; f < 2; f++) {
		snprintf(path[f], sizeof path[f], "%s/sync%d.dat", base_dir, f);
		int rc = d->ops->open(d->ctx, path[f],
			PS_DISK_CREATE | PS_DISK_TRUNCATE, &fd[f]);
		if (rc != 0)
			fail("open", rc);
	}
	for (int i = 0; i < SYNC_SAMPLES; i++) {
		ps_iovec v = {zeros, sizeof zeros};
		size_t n;
		int rc = d->ops->pwritev(d->ctx, fd[1], &v, 1,
			(uint64_t)i * sizeof zeros, &n);
		if (rc != 0 || n != sizeof zeros)
			fail("pwritev", rc ? rc : PS_EIO);
	}
	int rc = d->ops->fdatasync(d->ctx, fd[1]);
	if (rc != 0)
		fail("fdatasync", rc);
	static uint64_t samples[2][SYNC_SAMPLES];
	for (int i = 0; i < SYNC_SAMPLES; i++) {
		for (int f = 0; f < 2; f++) {
			ps_iovec v = {block, sizeof block};
			size_t n;
			rc = d->ops->pwritev(d->ctx, fd[f], &v, 1,
				(uint64_t)i * sizeof block, &n);
			if (rc != 0 || n != sizeof block)
				fail("pwritev", rc ? rc : PS_EIO);
			uint64_t t = now_ns();
			rc = d->ops->fdatasync(d->ctx, fd[f]);
			samples[f][i] = now_ns() - t;
			if (rc != 0)
				fail("fdatasync", rc);
		}
	}
	for (int f = 0; f < 2; f++) {
		d->ops->close(d->ctx, fd[f]);
		d->ops->unlink(d->ctx, path[f]);
		qsort(samples[f], SYNC_SAMPLES, sizeof samples[f][0],
			compare_u64);
	}
	printf("figure persistence_fdatasync_4k_p50 %.1f us\n",
		samples[0][SYNC_SAMPLES / 2] / 1000.0);
	printf("figure persistence_fdatasync_4k_p99 %.1f us\n",
		samples[0][SYNC_SAMPLES * 99 / 100] / 1000.0);
	printf("figure persistence_fdatasync_4k_zeroed_p50 %.1f us\n",
		samples[1][SYNC_SAMPLES / 2] / 1000.0);
	printf("figure persistence_fdatasync_4k_zeroed_p99 %.1f us\n",
		samples[1][SYNC_SAMPLES * 99 / 100] / 1000.0);
	printf("ratio persistence_fdatasync_4k_zeroed_p99 append_p99 %.2f\n",
		(double)samples[1][SYNC_SAMPLES * 99 / 100] /
			(double)samples[0][SYNC_SAMPLES * 99 / 100]);
}

/* ---- acknowledged writes ------------------------------------------------------ */

typedef struct writer {
	pthread_t thread;
	int index;
	ps_journal *journal;
	ps_store *store;
	atomic_bool *stop;
	uint64_t writes;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	bool acked;
	int status;
} writer;

static void
on_ack(void *arg, uint64_t lsn, int status)
{
	(void)lsn;
	writer *w = arg;
	pthread_mutex_lock(&w->mutex);
	w->acked = true;
	w->status = status;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mutex);
}

static void *
journal_writer(void *arg)
{
	writer *w = arg;
	unsigned char payload[100];
	memset(payload, w->index, sizeof payload);
	while (!atomic_load(w->stop)) {
		w->acked = false;
		int rc = ps_journal_append(w->journal,
			rt_addr_make(1, (uint64_t)w->index), 1, payload,
			sizeof payload, on_ack, w, NULL);
		if (rc != 0)
			fail("append", rc);
		pthread_mutex_lock(&w->mutex);
		while (!w->acked)
			pthread_cond_wait(&w->cond, &w->mutex);
		pthread_mutex_unlock(&w->mutex);
		if (w->status != 0)
			fail("durable", w->status);
		w->writes++;
	}
	return NULL;
}

static void *
lmdb_writer(void *arg)
{
	writer *w = arg;
	unsigned char payload[100];
	memset(payload, w->index, sizeof payload);
	while (!atomic_load(w->stop)) {
		int rc = ps_store_bench_put_sync(w->store,
			rt_addr_make(1, (uint64_t)w->index), w->writes + 1, payload,
			sizeof payload);
		if (rc != 0)
			fail("lmdb put", rc);
		w->writes++;
	}
	return NULL;
}

static double
run_writers(int count, void *(*fn)(void *), ps_journal *j, ps_store *s)
{
	static writer ws[WRITERS_MAX];
	atomic_bool stop = false;
	for (int i = 0; i < count; i++) {
		ws[i] = (writer){.index = i, .journal = j, .store = s, .stop = &stop};
		pthread_mutex_init(&ws[i].mutex, NULL);
		pthread_cond_init(&ws[i].cond, NULL);
	}
	uint64_t start = now_ns();
	for (int i = 0; i < count; i++)
		pthread_create(&ws[i].thread, NULL, fn, &ws[i]);
	struct timespec window = {WINDOW_MS / 1000, (WINDOW_MS % 1000) * 1000000L};
	nanosleep(&window, NULL);
	atomic_store(&stop, true);
	uint64_t total = 0;
	for (int i = 0; i < count; i++) {
		pthread_join(ws[i].thread, NULL);
		total += ws[i].writes;
	}
	double seconds = (now_ns() - start) / 1e9;
	return total / seconds;
}

static void
bench_writes(void)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/journal", base_dir);
	ps_journal_options jo;
	ps_journal_options_default(&jo, dir);
	ps_journal *j;
	int rc = ps_journal_open(&jo, NULL, &j);
	if (rc != 0)
		fail("journal open", rc);
	snprintf(dir, sizeof dir, "%s/lmdb", base_dir);
	ps_store_options so;
	ps_store_options_default(&so, dir);
	ps_store *s;
	rc = ps_store_open(&so, &s);
	if (rc != 0)
		fail("store open", rc);
	int counts[] = {1, 16, 64};
	for (int i = 0; i < 3; i++) {
		double journal = run_writers(counts[i], journal_writer, j, NULL);
		double lmdb = run_writers(counts[i], lmdb_writer, NULL, s);
		printf("figure persistence_journal_acked_writes_%d %.0f writes/s\n",
			counts[i], journal);
		printf("figure persistence_lmdb_txn_writes_%d %.0f writes/s\n",
			counts[i], lmdb);
		printf("ratio persistence_journal_acked_writes_%d lmdb_txn_per_write %.2f\n",
			counts[i], journal / lmdb);
		fflush(stdout);
	}
	ps_journal_stats st;
	ps_journal_get_stats(j, &st);
	printf("figure persistence_journal_records_per_fsync %.1f records\n",
		st.syncs ? (double)st.appends / (double)st.syncs : 0.0);
	ps_journal_close(j);
	ps_store_close(s);
}

/* ---- recovery ---------------------------------------------------------------- */

static int
count_record(void *arg, const ps_record *r)
{
	(void)r;
	(*(uint64_t *)arg)++;
	return 0;
}

static void
bench_recovery(void)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/recovery", base_dir);
	ps_journal_options jo;
	ps_journal_options_default(&jo, dir);
	ps_journal *j;
	int rc = ps_journal_open(&jo, NULL, &j);
	if (rc != 0)
		fail("journal open", rc);
	unsigned char payload[64];
	memset(payload, 7, sizeof payload);
	for (uint64_t i = 0; i < RECOVERY_RECORDS;) {
		rc = ps_journal_append(j, rt_addr_make(1, i % 100000), 1, payload,
			sizeof payload, NULL, NULL, NULL);
		if (rc == PS_EFULL) {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (rc != 0)
			fail("append", rc);
		i++;
	}
	ps_journal_close(j);
	uint64_t seen = 0;
	jo.on_record = count_record;
	jo.record_arg = &seen;
	uint64_t t = now_ns();
	rc = ps_journal_open(&jo, NULL, &j);
	double ms = (now_ns() - t) / 1e6;
	if (rc != 0 || seen != RECOVERY_RECORDS)
		fail("recovery", rc ? rc : PS_ECORRUPT);
	ps_journal_close(j);
	printf("figure persistence_recovery_per_million_records %.0f ms\n",
		ms * 1e6 / RECOVERY_RECORDS);
}

/* ---- activation reads ------------------------------------------------------------ */

static int
take_state(void *arg, uint64_t lsn, const void *state, size_t bytes)
{
	unsigned char *out = arg;
	(void)lsn;
	memcpy(out, state, bytes < 256 ? bytes : 256);
	return 0;
}

static void
bench_activation(void)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/activation", base_dir);
	ps_store_options so;
	ps_store_options_default(&so, dir);
	ps_store *s;
	int rc = ps_store_open(&so, &s);
	if (rc != 0)
		fail("store open", rc);
	unsigned char state[128];
	memset(state, 3, sizeof state);
	for (uint64_t i = 0; i < ACTIVATION_ACTORS; i++) {
		while ((rc = ps_store_put(s, rt_addr_make(2, i * 7919), i + 1,
				state, sizeof state)) == PS_EFULL)
			ps_store_flush(s);
		if (rc != 0)
			fail("put", rc);
	}
	ps_store_flush(s);
	unsigned char out[256];
	uint64_t t = now_ns();
	for (uint64_t i = 0; i < ACTIVATION_ACTORS; i++) {
		rc = ps_store_get(s, rt_addr_make(2, i * 7919), take_state, out);
		if (rc != 0)
			fail("get", rc);
	}
	double seconds = (now_ns() - t) / 1e9;
	printf("figure persistence_activation_reads %.0f actors/s\n",
		ACTIVATION_ACTORS / seconds);
	ps_store_close(s);
}

int
main(void)
{
	const char *root = getenv("FLOCK_BENCH_DIR");
	snprintf(base_dir, sizeof base_dir, "%s/flock-ps-bench-XXXXXX",
		root != NULL ? root : "/tmp");
	if (mkdtemp(base_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	bench_fdatasync();
	bench_writes();
	bench_recovery();
	bench_activation();
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
	return system(cmd) == 0 ? 0 : 1;
}
