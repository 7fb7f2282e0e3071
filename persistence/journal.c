/*
 * journal.c — the append-only journal: segment files, one writer thread
 * doing group commit, verified recovery, failure handling.
 *
 * Appenders (any thread) take the mutex, get the next LSN, encode their
 * record into the pending batch and leave; the writer swaps the pending
 * batch for its own, writes it with one pwritev at the segment's durable
 * end, fdatasyncs once, and then runs every record's callback in LSN
 * order. Records queued while one batch is being synced form the next.
 *
 * Invariants:
 *   - file order is LSN order (LSNs are handed out under the same lock
 *     that appends to the pending batch);
 *   - durable_lsn only grows, and only after a successful fdatasync that
 *     covered every record up to it;
 *   - after a failed write or fdatasync the descriptor is closed and never
 *     synced again (fsyncgate); every record not yet durable fails with
 *     the error; appends are refused (PS_EREADONLY) until a probe has
 *     truncated the segment to its durable end on a fresh descriptor and
 *     started a new segment whose first LSN skips the failed ones;
 *   - the segment being written is never deleted.
 *
 * Manual mode (the simulator): no writer thread. ps_journal_pump does the
 * writer's work one disk step at a time on the caller's thread (write the
 * queued batch; later fdatasync it and complete it), and ps_journal_retry
 * probes inline, so the caller decides when each disk operation happens.
 * Both modes share the steps below; only who calls them differs.
 *
 * Zeroed space: the writer keeps zero bytes written ahead of the
 * segment's durable end (zero_ahead), so most group commits overwrite
 * space whose size and blocks are already durable and their fdatasync is
 * one data write and a cache flush. An fdatasync that extends the file
 * must also persist its size: on ext4 a synchronous inode write after
 * the data (without a filesystem journal) or a commit of the filesystem's
 * journal, shared with every other writer on it, each a further I/O or a
 * kernel thread to wait for. Recovery reads a tail of zeros as a clean
 * end (a record's LSN is never 0); a clean close cuts it. Manual journals
 * (the simulator) append as before: its fault disk tears appends but
 * rolls overwrites back whole, so zeroed space would hide torn tails
 * from it.
 *
 * Zeroing while idle: a writer on the real disk that has had nothing to
 * write for ZERO_IDLE_MS zeroes further ahead, ZERO_IDLE_STEP_BYTES and
 * one fdatasync at a time, until ZERO_IDLE_AHEAD_BYTES lie zeroed past
 * the durable end (or the segment's end); between steps it takes any
 * record that arrived. A burst after a quiet spell (up to that many bytes
 * of records) then finds its space and size durable, and none of its
 * group commits waits for a zero write and an inode update; a record that
 * arrives during a step waits for that one step. Sustained load leaves
 * the writer no idle time, and zero_ahead serves it as before. A failed
 * step fails the journal as a failed batch does (the descriptor is never
 * synced again). The fault disk (tests that count its calls) and manual
 * journals do not zero while idle.
 *
 * Tracing (ps_journal_set_trace, for benchmarks): the writer stamps each
 * batch's stages and hands them over after its callbacks; appenders stamp
 * a batch's first item. Nothing reads the clock while no trace is set.
 *
 * It does not use O_DIRECT or preallocate with fallocate (writing to
 * unwritten extents converts them, which is again a metadata update).
 */
#include "persistence/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <time.h>

/* Initial bytes of each batch buffer: many small records per fsync
 * without reallocating; larger batches grow it once and keep it. */
#define BATCH_BYTES_INITIAL (1u << 20)
/* Zero bytes written at once past a batch that reaches the end of those
 * written before: one slower fdatasync per this many bytes of records
 * (~10,000 small ones) and at most this much unused space per segment. */
#define ZERO_AHEAD_BYTES (1u << 20)
/* Quiet time after which an idle writer zeroes ahead: longer than the
 * gaps within a burst, so a busy writer never pauses for it. */
#define ZERO_IDLE_MS 50u
/* Zeros an idle writer keeps past the durable end: the records of a
 * burst of ~100,000 small appends (a second or more at 10,000 likes/s). */
#define ZERO_IDLE_AHEAD_BYTES (8u << 20)
/* Zeros per idle step, each with its fdatasync: what a record arriving
 * during a step waits for. */
#define ZERO_IDLE_STEP_BYTES (256u << 10)
/* The static buffer those zeros are written from. */
#define ZERO_CHUNK_BYTES (64u << 10)
/* Failed LSN ranges remembered for ps_journal_wait: each is one failure
 * of the disk; older ones are forgotten (waits on them return 0). */
#define FAILED_RANGES_MAX 64u
/* Segment files one journal holds at most; at the default segment size
 * this is 64 TiB of journal, far past any checkpoint interval. */
#define SEGMENTS_MAX 1000000u

typedef struct completion {
	uint64_t lsn;
	ps_durable_callback cb;
	void *arg;
} completion;

typedef struct batch {
	unsigned char *bytes;
	size_t length;
	size_t capacity;
	completion *items;
	uint32_t count;
	uint64_t first_lsn; /* of its records; 0 if it holds only barriers */
	uint64_t last_lsn;
	uint64_t first_queued_ns; /* while tracing: its first item queued */
} batch;

typedef struct segment_entry {
	uint64_t first_lsn;
	uint64_t previous_lsn;
} segment_entry;

typedef struct failed_range {
	uint64_t low;
	uint64_t high;
	int code;
} failed_range;

struct ps_journal {
	ps_disk disk;
	char directory[PS_PATH_BYTES_MAX];
	uint64_t segment_bytes;
	uint32_t queue_records_max;
	uint64_t queue_bytes_max;
	uint64_t retry_interval_ms;
	ps_log_callback log;
	void *log_arg;
	bool manual;

	pthread_mutex_t mutex;
	pthread_cond_t wake;    /* the writer waits here */
	pthread_cond_t changed; /* durable LSN, status or probe changed */
	batch pending;
	uint64_t next_lsn;
	uint64_t durable_lsn;
	int status;
	bool closing;
	bool writer_done;
	bool retry_requested;
	uint64_t probe_generation;
	int probe_result;
	failed_range failed[FAILED_RANGES_MAX];
	uint32_t failed_count; /* total; the ring keeps the newest */
	segment_entry *segments;
	uint32_t segment_count;
	uint32_t segment_capacity;
	ps_journal_stats stats;
	ps_journal_trace_callback trace;
	void *trace_arg;

	/* Writer thread only (and open/close, before/after it runs). */
	batch writing;
	batch failing;
	int fd;                    /* current segment; -1 after a failure */
	uint64_t file_bytes;       /* its durable end */
	uint64_t zeroed_bytes;     /* its size: zeros from file_bytes on */
	bool zero_when_idle;       /* real disk, writer thread: see above */
	bool idle;                 /* nothing to write for ZERO_IDLE_MS */
	uint64_t zero_fills;       /* zero_ahead writes (stats copy it) */
	uint64_t file_first_lsn;   /* its first LSN (names it) */
	uint64_t written_lsn;      /* last durable LSN in the files */
	uint64_t stale_first_lsn;  /* a half-created segment to remove; 0 */
	bool unsynced;             /* `writing` is written, not yet synced */
	uint64_t unsynced_bytes;   /* its bytes past file_bytes */
	uint64_t unsynced_last_lsn;
	uint64_t sync_ns;          /* the last group commit's fdatasync */
	pthread_t writer;
};

static void
segment_path(const ps_journal *j, uint64_t first_lsn, char *out, size_t n)
{
	char name[64];
	ps__segment_name(first_lsn, name, sizeof name);
	snprintf(out, n, "%s/%s", j->directory, name);
}

static int
batch_init(batch *b, uint32_t records_max)
{
	memset(b, 0, sizeof *b);
	b->bytes = malloc(BATCH_BYTES_INITIAL);
	/* items below count are written before they are read: no need to
	 * zero a queue's worth of them on every open */
	b->items = malloc(records_max * sizeof *b->items);
	if (b->bytes == NULL || b->items == NULL) {
		free(b->bytes);
		free(b->items);
		return PS_ENOMEM;
	}
	b->capacity = BATCH_BYTES_INITIAL;
	return PS_OK;
}

static void
batch_reset(batch *b)
{
	b->length = 0;
	b->count = 0;
	b->first_lsn = 0;
	b->last_lsn = 0;
	b->first_queued_ns = 0;
}

static void
batch_free(batch *b)
{
	free(b->bytes);
	free(b->items);
	memset(b, 0, sizeof *b);
}

/* Runs every callback of b with status (0: durable). Writer thread, no
 * lock held. */
static void
batch_complete(ps_journal *j, batch *b, int status)
{
	(void)j;
	for (uint32_t i = 0; i < b->count; i++) {
		completion *c = &b->items[i];
		if (c->cb != NULL)
			c->cb(c->arg, c->lsn, status);
	}
	batch_reset(b);
}

/* ---- segments ---------------------------------------------------------- */

static int
segments_push(ps_journal *j, uint64_t first_lsn, uint64_t previous_lsn)
{
	if (j->segment_count == j->segment_capacity) {
		if (j->segment_capacity >= SEGMENTS_MAX)
			return PS_EFULL;
		uint32_t capacity = j->segment_capacity ? j->segment_capacity * 2 : 16;
		segment_entry *s = realloc(j->segments, capacity * sizeof *s);
		if (s == NULL)
			return PS_ENOMEM;
		j->segments = s;
		j->segment_capacity = capacity;
	}
	ps__assert(j->segment_count == 0 ||
		j->segments[j->segment_count - 1].first_lsn < first_lsn);
	j->segments[j->segment_count].first_lsn = first_lsn;
	j->segments[j->segment_count].previous_lsn = previous_lsn;
	j->segment_count++;
	j->stats.segments = j->segment_count;
	return PS_OK;
}

static int
write_all(ps_journal *j, int fd, const void *bytes, size_t length,
	uint64_t offset)
{
	size_t done = 0;
	/* Bounded: each round writes at least one byte or fails. */
	while (done < length) {
		ps_iovec v = {(const char *)bytes + done, length - done};
		size_t n = 0;
		int rc = j->disk.ops->pwritev(j->disk.ctx, fd, &v, 1,
			offset + done, &n);
		if (rc != 0)
			return rc;
		if (n == 0)
			return PS_EIO;
		done += n;
	}
	return PS_OK;
}

/* Creates the segment starting at first_lsn, header written and synced,
 * its directory entry synced, and makes it current. On failure the old
 * segment stays current and the half-made file is removed if possible. */
static int
segment_create(ps_journal *j, uint64_t first_lsn, uint64_t previous_lsn)
{
	char path[PS_PATH_BYTES_MAX + 64];
	segment_path(j, first_lsn, path, sizeof path);
	const ps_disk_ops *ops = j->disk.ops;
	unsigned char header[PS_SEGMENT_HEADER_BYTES];
	ps_segment_header_encode(first_lsn, previous_lsn, header);
	int fd = -1;
	int rc = ops->open(j->disk.ctx, path, PS_DISK_CREATE | PS_DISK_TRUNCATE,
		&fd);
	if (rc != 0)
		goto fail;
	rc = write_all(j, fd, header, sizeof header, 0);
	if (rc != 0)
		goto fail_close;
	rc = ops->fdatasync(j->disk.ctx, fd);
	if (rc != 0)
		goto fail_close;
	rc = ops->sync_dir(j->disk.ctx, j->directory);
	if (rc != 0)
		goto fail_close;
	pthread_mutex_lock(&j->mutex);
	rc = segments_push(j, first_lsn, previous_lsn);
	pthread_mutex_unlock(&j->mutex);
	if (rc != 0)
		goto fail_close;
	if (j->fd >= 0)
		ops->close(j->disk.ctx, j->fd);
	j->fd = fd;
	j->file_bytes = PS_SEGMENT_HEADER_BYTES;
	j->zeroed_bytes = PS_SEGMENT_HEADER_BYTES;
	j->file_first_lsn = first_lsn;
	return PS_OK;

fail_close:
	ops->close(j->disk.ctx, fd);
	if (ops->unlink(j->disk.ctx, path) != 0)
		j->stale_first_lsn = first_lsn;
fail:
	ps__log(j->log, j->log_arg, RT_LOG_ERROR,
		"journal: cannot create segment path=%s error=%s", path,
		ps_strerror(rc));
	return rc;
}

/* ---- the writer ----------------------------------------------------------- */

static uint64_t
monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writes zeros over [from, to) of the open segment, ZERO_CHUNK_BYTES at
 * a time. Writer (or pump) only. */
static int
zeros_write(ps_journal *j, uint64_t from, uint64_t to)
{
	static const unsigned char zeros[ZERO_CHUNK_BYTES];
	for (uint64_t at = from; at < to;) {
		uint64_t n = to - at;
		if (n > ZERO_CHUNK_BYTES)
			n = ZERO_CHUNK_BYTES;
		int rc = write_all(j, j->fd, zeros, (size_t)n, at);
		if (rc != 0)
			return rc;
		at += n;
	}
	return PS_OK;
}

/* Before a batch of `length` bytes at the durable end: when it reaches
 * past the zeroed space, writes ZERO_AHEAD_BYTES of zeros after it (not
 * past the roll-over size unless the batch itself is), which the batch's
 * own fdatasync makes durable. Writer (or pump) only. */
static int
zero_ahead(ps_journal *j, size_t length)
{
	uint64_t end = j->file_bytes + length;
	if (end <= j->zeroed_bytes || j->manual)
		return PS_OK;
	uint64_t target = end + ZERO_AHEAD_BYTES;
	uint64_t cap = j->segment_bytes > end ? j->segment_bytes : end;
	if (target > cap)
		target = cap;
	/* Bounded: ZERO_AHEAD_BYTES / ZERO_CHUNK_BYTES rounds. */
	int rc = zeros_write(j, end, target);
	if (rc != 0)
		return rc;
	j->zeroed_bytes = target;
	j->zero_fills++;
	return PS_OK;
}

/* After the writer stopped: cuts the zeros past the durable end, so a
 * closed journal's files end at their last record. Not synced: a crash
 * before the cut leaves zeros, which recovery reads as a clean end. */
static void
zeros_cut(ps_journal *j)
{
	if (j->fd < 0 || j->status != 0 || j->unsynced ||
		j->zeroed_bytes <= j->file_bytes)
		return;
	if (j->disk.ops->truncate(j->disk.ctx, j->fd, j->file_bytes) == 0)
		j->zeroed_bytes = j->file_bytes;
}

/* Whether an idle writer has zeroing to do. Lock held. */
static bool
zero_idle_due_locked(const ps_journal *j)
{
	ps__assert(j->fd < 0 || j->zeroed_bytes >= j->file_bytes);
	return j->zero_when_idle && j->status == 0 && j->fd >= 0 &&
		!j->unsynced && j->zeroed_bytes < j->segment_bytes &&
		j->zeroed_bytes - j->file_bytes < ZERO_IDLE_AHEAD_BYTES;
}

/* One idle step: ZERO_IDLE_STEP_BYTES more zeros (not past the roll-over
 * size) and their fdatasync. Writer thread, no lock held. */
static int
zero_idle_step(ps_journal *j)
{
	static_assert(ZERO_IDLE_STEP_BYTES % ZERO_CHUNK_BYTES == 0,
		"whole chunks");
	ps__assert(j->zeroed_bytes < j->segment_bytes);
	uint64_t target = j->zeroed_bytes + ZERO_IDLE_STEP_BYTES;
	if (target > j->segment_bytes)
		target = j->segment_bytes;
	/* Bounded: ZERO_IDLE_STEP_BYTES / ZERO_CHUNK_BYTES rounds. */
	int rc = zeros_write(j, j->zeroed_bytes, target);
	if (rc == 0)
		rc = j->disk.ops->fdatasync(j->disk.ctx, j->fd);
	if (rc != 0)
		return rc;
	j->zeroed_bytes = target;
	return PS_OK;
}

/* The first half of a group commit: b's bytes written after the
 * segment's durable end, not synced. Writer (or pump) only. */
static int
batch_write_step(ps_journal *j, batch *b)
{
	ps__assert(!j->unsynced);
	j->unsynced_bytes = 0;
	j->unsynced_last_lsn = 0;
	if (b->length == 0)
		return PS_OK; /* barriers only: everything before is durable */
	ps__assert(b->first_lsn != 0);
	ps__assert(b->last_lsn >= b->first_lsn);
	if (j->fd < 0)
		return PS_EIO;
	if (j->file_bytes >= j->segment_bytes) {
		int rc = segment_create(j, b->first_lsn, j->written_lsn);
		if (rc != 0)
			return rc;
	}
	int rc = zero_ahead(j, b->length);
	if (rc != 0)
		return rc;
	rc = write_all(j, j->fd, b->bytes, b->length, j->file_bytes);
	if (rc != 0)
		return rc;
	j->unsynced_bytes = b->length;
	j->unsynced_last_lsn = b->last_lsn;
	return PS_OK;
}

/* The second half: fdatasync what batch_write_step wrote. */
static int
batch_sync_step(ps_journal *j)
{
	if (j->unsynced_bytes == 0)
		return PS_OK;
	uint64_t start = j->manual ? 0 : monotonic_ns();
	int rc = j->disk.ops->fdatasync(j->disk.ctx, j->fd);
	if (rc != 0)
		return rc;
	j->sync_ns = j->manual ? 0 : monotonic_ns() - start;
	j->file_bytes += j->unsynced_bytes;
	j->written_lsn = j->unsynced_last_lsn;
	j->unsynced_bytes = 0;
	return PS_OK;
}

/* Enters the failed state. Lock held. Every LSN handed out and not durable
 * has failed; the pending batch moves to `failing` to be completed. */
static void
fail_locked(ps_journal *j, int rc)
{
	ps__assert(rc != 0);
	j->status = rc;
	j->stats.failures++;
	if (j->next_lsn - 1 > j->durable_lsn) {
		failed_range *f = &j->failed[j->failed_count % FAILED_RANGES_MAX];
		f->low = j->durable_lsn + 1;
		f->high = j->next_lsn - 1;
		f->code = rc;
		j->failed_count++;
	}
	batch t = j->failing;
	j->failing = j->pending;
	j->pending = t;
	batch_reset(&j->pending);
}

static const uint64_t sync_bounds_us[PS_JOURNAL_SYNC_BUCKETS] = {50, 100,
	250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	1000000, UINT64_MAX};

uint64_t
ps_journal_sync_bound_us(uint32_t bucket)
{
	ps__assert(bucket < PS_JOURNAL_SYNC_BUCKETS);
	return sync_bounds_us[bucket];
}

/* Counts a group commit's fdatasync of ns. Lock held. */
static void
sync_observe_locked(ps_journal *j, uint64_t ns)
{
	uint64_t us = ns / 1000u;
	uint32_t b = 0;
	while (us > sync_bounds_us[b]) /* the last bound takes all */
		b++;
	j->stats.sync_buckets[b]++;
	j->stats.sync_us_total += us;
}

/* The fate of `writing` is known (rc). Lock held on entry and on return;
 * dropped while the callbacks run. */
static void
batch_finish_locked(ps_journal *j, int rc)
{
	if (rc == 0) {
		if (j->writing.last_lsn != 0)
			j->durable_lsn = j->writing.last_lsn;
		j->stats.batches++;
		j->stats.syncs += j->unsynced_last_lsn != 0;
		if (j->unsynced_last_lsn != 0 && !j->manual)
			sync_observe_locked(j, j->sync_ns);
		j->stats.bytes_written += j->writing.length;
		j->stats.zero_fills = j->zero_fills;
	} else {
		ps__log(j->log, j->log_arg, RT_LOG_ERROR,
			"journal: write failed, appends refused until a probe succeeds error=%s durable_lsn=%" PRIu64,
			ps_strerror(rc), j->durable_lsn);
		if (j->fd >= 0) {
			j->disk.ops->close(j->disk.ctx, j->fd);
			j->fd = -1;
		}
		j->unsynced_bytes = 0;
		fail_locked(j, rc);
	}
	j->unsynced = false;
	pthread_cond_broadcast(&j->changed);
	pthread_mutex_unlock(&j->mutex);
	batch_complete(j, &j->writing, rc);
	if (rc != 0)
		batch_complete(j, &j->failing, rc);
	pthread_mutex_lock(&j->mutex);
}

/* `writing` was written and awaits its sync. Lock held. */
static void
batch_written_locked(ps_journal *j)
{
	j->unsynced = true;
#ifdef FLOCK_BUG_ACK_BEFORE_FSYNC
	/* PLANTED BUG (make sim-zoo): acknowledges the batch before its
	 * fdatasync, so a crash in between loses acknowledged writes. */
	if (j->writing.last_lsn != 0)
		j->durable_lsn = j->writing.last_lsn;
	pthread_mutex_unlock(&j->mutex);
	batch_complete(j, &j->writing, 0);
	pthread_mutex_lock(&j->mutex);
#endif
}

/* Takes the pending batch as the one to write. Lock held. */
static void
take_pending_locked(ps_journal *j)
{
	ps__assert(!j->unsynced);
	batch t = j->writing;
	j->writing = j->pending;
	j->pending = t;
}

/* Recovery probe. Writer thread (or pump), no lock held. */
static int
probe(ps_journal *j)
{
	const ps_disk_ops *ops = j->disk.ops;
	char path[PS_PATH_BYTES_MAX + 64];
	if (j->fd >= 0) {
		ops->close(j->disk.ctx, j->fd);
		j->fd = -1;
	}
	if (j->stale_first_lsn != 0) {
		segment_path(j, j->stale_first_lsn, path, sizeof path);
		int rc = ops->unlink(j->disk.ctx, path);
		if (rc != 0 && rc != PS_ENOTFOUND)
			return rc;
		j->stale_first_lsn = 0;
	}
	/* Cut what the failed batch may have left after the durable end, on
	 * a fresh descriptor: its bytes are never trusted, only rewritten. */
	segment_path(j, j->file_first_lsn, path, sizeof path);
	int fd;
	int rc = ops->open(j->disk.ctx, path, 0, &fd);
	if (rc != 0)
		return rc;
	rc = ops->truncate(j->disk.ctx, fd, j->file_bytes);
	if (rc == 0)
		rc = ops->fdatasync(j->disk.ctx, fd);
	ops->close(j->disk.ctx, fd);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&j->mutex);
	uint64_t first = j->next_lsn;
	pthread_mutex_unlock(&j->mutex);
	return segment_create(j, first, j->written_lsn);
}

/* Runs a probe and publishes its result. Lock held on entry and on
 * return, dropped during the probe. */
static void
probe_locked(ps_journal *j)
{
	pthread_mutex_unlock(&j->mutex);
	int rc = probe(j);
	pthread_mutex_lock(&j->mutex);
	if (rc == 0) {
		sim_sometimes("persistence: failed journal recovered by a probe");
		j->status = 0;
		ps__log(j->log, j->log_arg, RT_LOG_WARN,
			"journal: probe succeeded, appends accepted from lsn=%" PRIu64,
			j->next_lsn);
	}
	j->probe_result = rc;
	j->probe_generation++;
	pthread_cond_broadcast(&j->changed);
}

static void
writer_wait_retry(ps_journal *j)
{
	if (j->retry_interval_ms == UINT64_MAX) {
		pthread_cond_wait(&j->wake, &j->mutex);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (j->retry_interval_ms % 1000) * 1000000u;
	ts.tv_sec += (time_t)(j->retry_interval_ms / 1000 + ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	if (pthread_cond_timedwait(&j->wake, &j->mutex, &ts) == ETIMEDOUT)
		j->retry_requested = true;
}

/* Nothing queued and zeroing due: waits ZERO_IDLE_MS for a record (once
 * per quiet spell), then runs one zeroing step. Lock held on entry and on
 * return, dropped during the step. */
static void
writer_idle_locked(ps_journal *j)
{
	if (!j->idle) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + ZERO_IDLE_MS * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000u);
		ts.tv_nsec = (long)(ns % 1000000000u);
		if (pthread_cond_timedwait(&j->wake, &j->mutex, &ts) !=
			ETIMEDOUT)
			return; /* a record, a close, or spurious: look again */
		if (j->pending.count > 0 || j->closing)
			return;
		j->idle = true;
	}
	pthread_mutex_unlock(&j->mutex);
	int rc = zero_idle_step(j);
	pthread_mutex_lock(&j->mutex);
	if (rc == 0) {
		j->stats.zero_idle_steps++;
		return;
	}
	/* As a failed batch: the descriptor is not synced again; records
	 * queued meanwhile fail with the error. */
	ps__log(j->log, j->log_arg, RT_LOG_ERROR,
		"journal: zeroing ahead failed, appends refused until a probe succeeds error=%s durable_lsn=%" PRIu64,
		ps_strerror(rc), j->durable_lsn);
	j->disk.ops->close(j->disk.ctx, j->fd);
	j->fd = -1;
	fail_locked(j, rc);
	pthread_cond_broadcast(&j->changed);
	pthread_mutex_unlock(&j->mutex);
	batch_complete(j, &j->failing, rc);
	pthread_mutex_lock(&j->mutex);
}

static void *
writer_main(void *arg)
{
	ps_journal *j = arg;
	/* Each durable notice waits for this thread's wake-up. */
	rt_thread_short_slice();
	pthread_mutex_lock(&j->mutex);
	for (;;) {
		if (j->status != 0) {
			if (j->closing)
				break;
			if (!j->retry_requested) {
				writer_wait_retry(j);
				continue;
			}
			j->retry_requested = false;
			probe_locked(j);
			continue;
		}
		if (j->pending.count == 0) {
			if (j->closing)
				break;
			if (zero_idle_due_locked(j)) {
				writer_idle_locked(j);
				continue;
			}
			pthread_cond_wait(&j->wake, &j->mutex);
			continue;
		}
		j->idle = false;
		take_pending_locked(j);
		ps_journal_trace_callback trace = j->trace;
		void *trace_arg = j->trace_arg;
		ps_journal_batch_trace t = {j->writing.first_lsn,
			j->writing.last_lsn, j->writing.count,
			j->writing.first_queued_ns, 0, 0, 0, 0};
		pthread_mutex_unlock(&j->mutex);
		if (trace != NULL)
			t.taken_ns = monotonic_ns();
		int rc = batch_write_step(j, &j->writing);
		if (trace != NULL)
			t.written_ns = monotonic_ns();
		pthread_mutex_lock(&j->mutex);
		if (rc == 0) {
			batch_written_locked(j);
			pthread_mutex_unlock(&j->mutex);
			rc = batch_sync_step(j);
			if (trace != NULL)
				t.synced_ns = monotonic_ns();
			pthread_mutex_lock(&j->mutex);
		}
		batch_finish_locked(j, rc);
		if (trace != NULL && rc == 0) {
			pthread_mutex_unlock(&j->mutex);
			t.completed_ns = monotonic_ns();
			trace(trace_arg, &t);
			pthread_mutex_lock(&j->mutex);
		}
	}
	j->writer_done = true;
	pthread_cond_broadcast(&j->changed);
	pthread_mutex_unlock(&j->mutex);
	return NULL;
}

/* ---- manual mode: the caller is the writer -------------------------------- */

static ps_pump_step
next_step_locked(const ps_journal *j)
{
	if (j->unsynced)
		return PS_PUMP_SYNC;
	if (j->status == 0 && j->pending.count > 0)
		return PS_PUMP_WRITE;
	return PS_PUMP_IDLE;
}

ps_pump_step
ps_journal_next_step(ps_journal *j)
{
	ps__assert(j != NULL);
	pthread_mutex_lock(&j->mutex);
	ps_pump_step step = next_step_locked(j);
	pthread_mutex_unlock(&j->mutex);
	return step;
}

ps_pump_step
ps_journal_pump(ps_journal *j)
{
	ps__assert(j != NULL);
	ps__assert(j->manual);
	pthread_mutex_lock(&j->mutex);
	ps_pump_step step = next_step_locked(j);
	int rc = 0;
	if (step == PS_PUMP_SYNC) {
		pthread_mutex_unlock(&j->mutex);
		rc = batch_sync_step(j);
		pthread_mutex_lock(&j->mutex);
		batch_finish_locked(j, rc);
	} else if (step == PS_PUMP_WRITE) {
		take_pending_locked(j);
		pthread_mutex_unlock(&j->mutex);
		rc = batch_write_step(j, &j->writing);
		pthread_mutex_lock(&j->mutex);
		if (rc == 0)
			batch_written_locked(j);
		else
			batch_finish_locked(j, rc);
	}
	pthread_mutex_unlock(&j->mutex);
	return step;
}

/* ---- appending ---------------------------------------------------------- */

/* b's first item was just queued: wakes the writer (stamping the time
 * while tracing). Lock held. */
static void
first_queued_locked(ps_journal *j, batch *b)
{
	if (j->trace != NULL)
		b->first_queued_ns = monotonic_ns();
	pthread_cond_signal(&j->wake);
}

/* Makes room for one more completion and `bytes` more bytes. Lock held. */
static int
pending_reserve(ps_journal *j, size_t bytes)
{
	batch *b = &j->pending;
	if (j->closing)
		return PS_ESTOPPED;
	if (j->status != 0)
		return PS_EREADONLY;
	if (b->count >= j->queue_records_max)
		return PS_EFULL;
	if (b->length + bytes > j->queue_bytes_max && b->length > 0)
		return PS_EFULL;
	if (b->length + bytes > b->capacity) {
		size_t capacity = b->capacity * 2;
		while (capacity < b->length + bytes)
			capacity *= 2;
		unsigned char *p = realloc(b->bytes, capacity);
		if (p == NULL)
			return PS_ENOMEM;
		b->bytes = p;
		b->capacity = capacity;
	}
	return PS_OK;
}

int
ps_journal_append(ps_journal *j, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, ps_durable_callback cb,
	void *arg, uint64_t *lsn_out)
{
	ps__assert(j != NULL);
	ps__assert(payload != NULL || payload_bytes == 0);
	if (payload_bytes > PS_RECORD_PAYLOAD_BYTES_MAX)
		return PS_ETOOBIG;
	/* The checksum covers the payload first, so it is computed here,
	 * outside the lock; the header part is added once the LSN is known. */
	uint32_t payload_crc = ps_crc32c(0, payload, payload_bytes);
	size_t bytes = ps_record_encoded_bytes(payload_bytes);
	pthread_mutex_lock(&j->mutex);
	int rc = pending_reserve(j, bytes);
	if (rc != 0) {
		pthread_mutex_unlock(&j->mutex);
		return rc;
	}
	batch *b = &j->pending;
	uint64_t lsn = j->next_lsn++;
	unsigned char *p = b->bytes + b->length;
	ps__record_header_encode(lsn, addr, type, (uint32_t)payload_bytes,
		payload_crc, p);
	if (payload_bytes > 0)
		memcpy(p + PS_RECORD_HEADER_BYTES, payload, payload_bytes);
	b->length += bytes;
	if (b->first_lsn == 0)
		b->first_lsn = lsn;
	b->last_lsn = lsn;
	b->items[b->count++] = (completion){lsn, cb, arg};
	j->stats.appends++;
	if (b->count == 1)
		first_queued_locked(j, b);
	pthread_mutex_unlock(&j->mutex);
	if (lsn_out != NULL)
		*lsn_out = lsn;
	return PS_OK;
}

int
ps_journal_barrier(ps_journal *j, ps_durable_callback cb, void *arg)
{
	ps__assert(j != NULL);
	pthread_mutex_lock(&j->mutex);
	int rc = pending_reserve(j, 0);
	if (rc == 0) {
		batch *b = &j->pending;
		b->items[b->count++] = (completion){j->next_lsn - 1, cb, arg};
		if (b->count == 1)
			first_queued_locked(j, b);
	}
	pthread_mutex_unlock(&j->mutex);
	return rc;
}

uint64_t
ps_journal_durable_lsn(ps_journal *j)
{
	pthread_mutex_lock(&j->mutex);
	uint64_t lsn = j->durable_lsn;
	pthread_mutex_unlock(&j->mutex);
	return lsn;
}

uint64_t
ps_journal_last_lsn(ps_journal *j)
{
	pthread_mutex_lock(&j->mutex);
	uint64_t lsn = j->next_lsn - 1;
	pthread_mutex_unlock(&j->mutex);
	return lsn;
}

int
ps_journal_status(ps_journal *j)
{
	pthread_mutex_lock(&j->mutex);
	int rc = j->status;
	pthread_mutex_unlock(&j->mutex);
	return rc;
}

static int
failed_code_locked(const ps_journal *j, uint64_t lsn)
{
	uint32_t n = j->failed_count < FAILED_RANGES_MAX ? j->failed_count
							 : FAILED_RANGES_MAX;
	for (uint32_t i = 0; i < n; i++)
		if (lsn >= j->failed[i].low && lsn <= j->failed[i].high)
			return j->failed[i].code;
	return 0;
}

int
ps_journal_wait(ps_journal *j, uint64_t lsn)
{
	ps__assert(j != NULL);
	pthread_mutex_lock(&j->mutex);
	int rc;
	for (;;) {
		rc = failed_code_locked(j, lsn);
		if (rc != 0)
			break;
		if (lsn <= j->durable_lsn)
			break;
		if (j->writer_done) {
			rc = PS_ESTOPPED;
			break;
		}
		if (j->manual) {
			rc = PS_EBUSY; /* only the caller's pump can move it */
			break;
		}
		pthread_cond_wait(&j->changed, &j->mutex);
	}
	pthread_mutex_unlock(&j->mutex);
	return rc;
}

int
ps_journal_retry(ps_journal *j)
{
	ps__assert(j != NULL);
	pthread_mutex_lock(&j->mutex);
	int rc = 0;
	if (j->status != 0 && j->manual) {
		probe_locked(j);
		rc = j->probe_result;
	} else if (j->status != 0) {
		uint64_t generation = j->probe_generation;
		j->retry_requested = true;
		pthread_cond_signal(&j->wake);
		while (j->probe_generation == generation && !j->writer_done)
			pthread_cond_wait(&j->changed, &j->mutex);
		rc = j->probe_generation != generation ? j->probe_result
						       : PS_ESTOPPED;
	}
	pthread_mutex_unlock(&j->mutex);
	return rc;
}

int
ps_journal_release(ps_journal *j, uint64_t checkpoint_lsn,
	uint64_t *deleted_out)
{
	ps__assert(j != NULL);
	pthread_mutex_lock(&j->mutex);
	uint32_t n = 0;
	/* Segment n holds LSNs up to the next one's previous_lsn. */
	while (n + 1 < j->segment_count &&
		j->segments[n + 1].previous_lsn <= checkpoint_lsn)
		n++;
	segment_entry doomed[64];
	if (n > 64)
		n = 64; /* the rest go at the next checkpoint */
	memcpy(doomed, j->segments, n * sizeof *doomed);
	memmove(j->segments, j->segments + n,
		(j->segment_count - n) * sizeof *j->segments);
	j->segment_count -= n;
	j->stats.segments = j->segment_count;
	pthread_mutex_unlock(&j->mutex);
	int rc = 0;
	for (uint32_t i = 0; i < n; i++) {
		char path[PS_PATH_BYTES_MAX + 64];
		segment_path(j, doomed[i].first_lsn, path, sizeof path);
		int e = j->disk.ops->unlink(j->disk.ctx, path);
		if (e != 0 && e != PS_ENOTFOUND) {
			/* Left behind it is harmless: recovery skips records at
			 * or below the checkpoint. */
			ps__log(j->log, j->log_arg, RT_LOG_WARN,
				"journal: cannot delete segment path=%s error=%s",
				path, ps_strerror(e));
			rc = e;
		}
	}
	if (deleted_out != NULL)
		*deleted_out = n;
	return rc;
}

void
ps_journal_set_trace(ps_journal *j, ps_journal_trace_callback cb, void *arg)
{
	ps__assert(j != NULL);
	pthread_mutex_lock(&j->mutex);
	j->trace = cb;
	j->trace_arg = arg;
	pthread_mutex_unlock(&j->mutex);
}

void
ps_journal_get_stats(ps_journal *j, ps_journal_stats *out)
{
	pthread_mutex_lock(&j->mutex);
	*out = j->stats;
	pthread_mutex_unlock(&j->mutex);
}

/* ---- opening: recovery ---------------------------------------------------- */

typedef struct name_list {
	uint64_t *first_lsns;
	uint32_t count;
	uint32_t capacity;
	int error;
} name_list;

static void
name_list_add(void *arg, const char *name)
{
	name_list *l = arg;
	uint64_t first;
	if (!ps__segment_name_parse(name, &first) || l->error != 0)
		return;
	if (l->count == l->capacity) {
		uint32_t capacity = l->capacity ? l->capacity * 2 : 16;
		uint64_t *p = capacity <= SEGMENTS_MAX
			? realloc(l->first_lsns, capacity * sizeof *p)
			: NULL;
		if (p == NULL) {
			l->error = PS_ENOMEM;
			return;
		}
		l->first_lsns = p;
		l->capacity = capacity;
	}
	l->first_lsns[l->count++] = first;
}

static int
compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Reads a whole file into a new buffer (*bytes_out owned). */
static int
read_file(ps_journal *j, const char *path, unsigned char **bytes_out,
	size_t *length_out)
{
	const ps_disk_ops *ops = j->disk.ops;
	int fd;
	int rc = ops->open(j->disk.ctx, path, 0, &fd);
	if (rc != 0)
		return rc;
	uint64_t size = 0;
	rc = ops->size(j->disk.ctx, fd, &size);
	unsigned char *bytes = NULL;
	if (rc == 0 && size > SIZE_MAX / 2)
		rc = PS_ETOOBIG;
	if (rc == 0) {
		bytes = malloc(size > 0 ? (size_t)size : 1);
		if (bytes == NULL)
			rc = PS_ENOMEM;
	}
	size_t got = 0;
	if (rc == 0)
		rc = ops->pread(j->disk.ctx, fd, bytes, (size_t)size, 0, &got);
	ops->close(j->disk.ctx, fd);
	if (rc != 0) {
		free(bytes);
		return rc;
	}
	*bytes_out = bytes;
	*length_out = got;
	return PS_OK;
}

typedef struct replay_filter {
	uint64_t from_lsn;
	ps_record_callback cb;
	void *arg;
	ps_journal_report *report;
} replay_filter;

static int
replay_one(void *arg, const ps_record *r)
{
	replay_filter *f = arg;
	f->report->records++;
	if (r->lsn <= f->from_lsn || f->cb == NULL)
		return 0;
	f->report->records_replayed++;
	return f->cb(f->arg, r);
}

/* Copies src into dst, cut to fit (paths are checked short at open). */
static void
copy_string(char *dst, size_t n, const char *src)
{
	size_t len = strlen(src);
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static int
report_corrupt(ps_journal *j, ps_journal_report *report, const char *path,
	uint64_t offset, const char *why)
{
	copy_string(report->corrupt_path, sizeof report->corrupt_path, path);
	report->corrupt_offset = offset;
	ps__log(j->log, j->log_arg, RT_LOG_ERROR,
		"journal: corrupt, recovery stopped path=%s offset=%" PRIu64
		" reason=%s",
		path, offset, why);
	return PS_ECORRUPT;
}

/* Cuts the last segment's torn tail and syncs the cut. */
static int
cut_tail(ps_journal *j, ps_journal_report *report, const char *path,
	uint64_t offset, uint64_t size)
{
	const ps_disk_ops *ops = j->disk.ops;
	int fd;
	int rc = ops->open(j->disk.ctx, path, 0, &fd);
	if (rc != 0)
		return rc;
	rc = ops->truncate(j->disk.ctx, fd, offset);
	if (rc == 0)
		rc = ops->fdatasync(j->disk.ctx, fd);
	ops->close(j->disk.ctx, fd);
	if (rc != 0)
		return rc;
	sim_sometimes("persistence: torn journal tail truncated");
	report->torn_tail = true;
	report->torn_offset = offset;
	report->torn_bytes = size - offset;
	copy_string(report->torn_path, sizeof report->torn_path, path);
	ps__log(j->log, j->log_arg, RT_LOG_WARN,
		"journal: torn tail truncated path=%s offset=%" PRIu64
		" bytes=%" PRIu64,
		path, offset, size - offset);
	return PS_OK;
}

/* Scans segment `first` (the last one when is_last); on success *last_lsn
 * advances and the segment is listed; *end_out is its last record's end
 * and *size_out its size after any cut (past the end: zeros only). */
static int
recover_segment(ps_journal *j, uint64_t first, bool is_last,
	bool is_first, replay_filter *filter, uint64_t *last_lsn,
	uint64_t *end_out, uint64_t *size_out, bool *dropped_out)
{
	ps_journal_report *report = filter->report;
	char path[PS_PATH_BYTES_MAX + 64];
	segment_path(j, first, path, sizeof path);
	unsigned char *bytes;
	size_t length;
	int rc = read_file(j, path, &bytes, &length);
	if (rc != 0)
		return rc;
	ps_segment_scan_result res;
	rc = ps_segment_scan(bytes, length, replay_one, filter, &res);
	free(bytes);
	*dropped_out = false;
	if (res.header_bad && rc == PS_ECORRUPT) {
		/* A segment whose creation was cut short holds no record. */
		if (!is_last || length > PS_SEGMENT_HEADER_BYTES)
			return report_corrupt(j, report, path, 0, "bad segment header");
		ps__log(j->log, j->log_arg, RT_LOG_WARN,
			"journal: removing half-created segment path=%s bytes=%zu",
			path, length);
		rc = j->disk.ops->unlink(j->disk.ctx, path);
		*dropped_out = rc == 0;
		return rc;
	}
	if (rc == PS_EVERSION)
		return rc;
	if (res.first_lsn != first)
		return report_corrupt(j, report, path, 16, "first lsn differs from name");
	if (!is_first && res.previous_lsn != *last_lsn)
		return report_corrupt(j, report, path, 24, "segment chain broken");
	if (is_first && res.previous_lsn > filter->from_lsn)
		return report_corrupt(j, report, path, 24,
			"records after the checkpoint are missing");
	if (rc == PS_ECORRUPT) {
		if (!is_last || res.good_after_damage)
			return report_corrupt(j, report, path, res.valid_bytes,
				is_last ? "bad record followed by good ones"
					: "bad record in a sealed segment");
		rc = cut_tail(j, report, path, res.valid_bytes, length);
	}
	if (rc != 0)
		return rc;
	*last_lsn = res.last_lsn;
	*end_out = res.valid_bytes;
	*size_out = res.zero_tail ? length : res.valid_bytes;
	report->segments++;
	return segments_push(j, first, res.previous_lsn);
}

static int
recover(ps_journal *j, const ps_journal_options *opts,
	ps_journal_report *report)
{
	name_list names = {0};
	int rc = j->disk.ops->list(j->disk.ctx, j->directory, name_list_add,
		&names);
	if (rc == 0)
		rc = names.error;
	if (rc != 0)
		goto out;
	if (names.count > 0)
		qsort(names.first_lsns, names.count, sizeof *names.first_lsns,
			compare_u64);
	replay_filter filter = {opts->replay_from_lsn, opts->on_record,
		opts->record_arg, report};
	uint64_t last_lsn = 0, end = 0, size = 0;
	uint32_t live = names.count;
	for (uint32_t i = 0; i < names.count && rc == 0; i++) {
		bool dropped;
		rc = recover_segment(j, names.first_lsns[i], i + 1 == names.count,
			i == 0, &filter, &last_lsn, &end, &size, &dropped);
		live -= dropped;
	}
	if (rc != 0)
		goto out;
	/* LSNs continue above both the files and the checkpoint, so a wiped
	 * journal never reuses LSNs that snapshots already cover. */
	uint64_t base = last_lsn > opts->replay_from_lsn ? last_lsn
							 : opts->replay_from_lsn;
	j->next_lsn = base + 1;
	j->durable_lsn = base;
	j->written_lsn = last_lsn;
	report->last_lsn = last_lsn;
	ps__assert(live == j->segment_count);
	if (j->segment_count == 0) {
		rc = segment_create(j, j->next_lsn, base);
		goto out;
	}
	/* Append to the last segment after its last good record; its bytes
	 * were read back, so sync them before anything depends on them. */
	char path[PS_PATH_BYTES_MAX + 64];
	uint64_t first = j->segments[j->segment_count - 1].first_lsn;
	segment_path(j, first, path, sizeof path);
	rc = j->disk.ops->open(j->disk.ctx, path, 0, &j->fd);
	if (rc == 0)
		rc = j->disk.ops->fdatasync(j->disk.ctx, j->fd);
	j->file_first_lsn = first;
	j->file_bytes = end;
	j->zeroed_bytes = size;
out:
	free(names.first_lsns);
	return rc;
}

void
ps_journal_options_default(ps_journal_options *opts, const char *directory)
{
	memset(opts, 0, sizeof *opts);
	opts->directory = directory;
}

int
ps_journal_open(const ps_journal_options *opts, ps_journal_report *report,
	ps_journal **out)
{
	ps__assert(opts != NULL);
	ps__assert(out != NULL);
	ps_journal_report scratch;
	if (report == NULL)
		report = &scratch;
	memset(report, 0, sizeof *report);
	/* Leave room for "/journal-<20 digits>.seg" in PS_PATH_BYTES_MAX. */
	if (opts->directory == NULL ||
		strlen(opts->directory) >= PS_PATH_BYTES_MAX - 64)
		return PS_EINVAL;
	if (opts->segment_bytes != 0 && opts->segment_bytes < PS_SEGMENT_BYTES_MIN)
		return PS_EINVAL;
	ps_journal *j = calloc(1, sizeof *j);
	if (j == NULL)
		return PS_ENOMEM;
	j->disk = opts->disk != NULL ? *opts->disk : *ps_disk_real();
	snprintf(j->directory, sizeof j->directory, "%s", opts->directory);
	j->segment_bytes = opts->segment_bytes ? opts->segment_bytes
					       : PS_SEGMENT_BYTES_DEFAULT;
	j->queue_records_max = opts->queue_records_max
		? opts->queue_records_max : PS_JOURNAL_QUEUE_RECORDS_DEFAULT;
	j->queue_bytes_max = opts->queue_bytes_max ? opts->queue_bytes_max
						   : PS_JOURNAL_QUEUE_BYTES_DEFAULT;
	j->retry_interval_ms = opts->retry_interval_ms
		? opts->retry_interval_ms : PS_JOURNAL_RETRY_INTERVAL_MS_DEFAULT;
	j->log = opts->log;
	j->log_arg = opts->log_arg;
	j->manual = opts->manual;
	j->zero_when_idle = !j->manual && j->disk.ops == ps_disk_real()->ops;
	j->fd = -1;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&j->mutex, NULL);
	pthread_cond_init(&j->wake, &attr);
	pthread_cond_init(&j->changed, NULL);
	pthread_condattr_destroy(&attr);
	int rc = batch_init(&j->pending, j->queue_records_max);
	if (rc != 0)
		goto fail;
	rc = batch_init(&j->writing, j->queue_records_max);
	if (rc != 0)
		goto fail_pending;
	rc = batch_init(&j->failing, j->queue_records_max);
	if (rc != 0)
		goto fail_writing;
	rc = j->disk.ops->mkdir(j->disk.ctx, j->directory);
	if (rc != 0)
		goto fail_failing;
	rc = recover(j, opts, report);
	if (rc != 0)
		goto fail_recover;
	if (!j->manual &&
		pthread_create(&j->writer, NULL, writer_main, j) != 0) {
		rc = PS_ENOMEM;
		goto fail_recover;
	}
	*out = j;
	return PS_OK;

fail_recover:
	if (j->fd >= 0)
		j->disk.ops->close(j->disk.ctx, j->fd);
	free(j->segments);
fail_failing:
	batch_free(&j->failing);
fail_writing:
	batch_free(&j->writing);
fail_pending:
	batch_free(&j->pending);
fail:
	pthread_cond_destroy(&j->changed);
	pthread_cond_destroy(&j->wake);
	pthread_mutex_destroy(&j->mutex);
	free(j);
	return rc;
}

static void
journal_free(ps_journal *j)
{
	if (j->fd >= 0)
		j->disk.ops->close(j->disk.ctx, j->fd);
	free(j->segments);
	batch_free(&j->failing);
	batch_free(&j->writing);
	batch_free(&j->pending);
	pthread_cond_destroy(&j->changed);
	pthread_cond_destroy(&j->wake);
	pthread_mutex_destroy(&j->mutex);
	free(j);
}

void
ps_journal_close(ps_journal *j)
{
	if (j == NULL)
		return;
	if (j->manual) {
		/* What the writer would do before it stops; bounded: each
		 * round empties the queue or fails it, and closing refuses
		 * new appends. */
		pthread_mutex_lock(&j->mutex);
		j->closing = true;
		pthread_mutex_unlock(&j->mutex);
		while (ps_journal_pump(j) != PS_PUMP_IDLE)
			continue;
		pthread_mutex_lock(&j->mutex);
		j->writer_done = true;
		pthread_mutex_unlock(&j->mutex);
	} else {
		pthread_mutex_lock(&j->mutex);
		j->closing = true;
		pthread_cond_signal(&j->wake);
		pthread_mutex_unlock(&j->mutex);
		pthread_join(j->writer, NULL);
	}
	ps__assert(j->pending.count == 0);
	zeros_cut(j);
	journal_free(j);
}

void
ps_journal_abandon(ps_journal *j)
{
	if (j == NULL)
		return;
	ps__assert(j->manual);
	pthread_mutex_lock(&j->mutex);
	j->closing = true;
	j->writer_done = true;
	j->unsynced = false;
	pthread_mutex_unlock(&j->mutex);
	batch_complete(j, &j->writing, PS_ESTOPPED);
	batch_complete(j, &j->pending, PS_ESTOPPED);
	journal_free(j);
}

bool
ps__journal_failed_between(ps_journal *j, uint64_t low, uint64_t high)
{
	ps__assert(low <= high);
	pthread_mutex_lock(&j->mutex);
	bool hit = false;
	uint32_t n = j->failed_count < FAILED_RANGES_MAX ? j->failed_count
							 : FAILED_RANGES_MAX;
	for (uint32_t i = 0; i < n && !hit; i++)
		hit = j->failed[i].low <= high && low <= j->failed[i].high;
	pthread_mutex_unlock(&j->mutex);
	return hit;
}
