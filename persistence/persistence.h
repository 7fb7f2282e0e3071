/*
 * persistence.h — flock's journal, snapshot store and crash recovery: the
 * one public header of persistence/.
 *
 * Role: make actor state survive crashes under the durability contract
 * (DESIGN.md): a write is acknowledged only after its journal record is
 * on disk, shared by every record of one group commit; snapshots in LMDB
 * bound how much journal a recovery replays; effects on other actors go
 * through an outbox and are deduplicated by their targets.
 *
 * Parts, bottom up:
 *   ps_crc32c        CRC32C (SSE4.2 when the CPU has it, tables otherwise)
 *   ps_disk          the disk seam: every file operation of the journal;
 *                    a real twin (disk_real.c, the only file that calls
 *                    open/pwrite/fdatasync) and a fault-injecting one
 *   ps_journal       append-only segment files, one writer thread doing
 *                    group commit, verified replay, torn-tail truncation
 *   ps_store         the LMDB snapshot store (store_lmdb.c is the only file
 *                    that includes lmdb.h), one writer thread batching puts
 *   ps_node          binds journal + store + runtime: recovery, the
 *                    runtime's store hook, checkpoints, durable notices
 *   ps_outbox        effects an actor owes other actors, kept in its state
 *   ps_dedupe        what a target has already applied, kept in its state
 *
 * Invariants:
 *   - nothing is reported durable before the fdatasync covering it
 *     returned success; after a failed fdatasync the data is never assumed
 *     written (the journal refuses appends until a probe has rewritten the
 *     segment tail from the last durable offset on a fresh descriptor);
 *   - LSNs are unique and increase in file order; within one segment they
 *     are consecutive; a gap can only appear at a segment boundary, where
 *     the LSNs of failed (never acknowledged) records were skipped;
 *   - a snapshot with LSN L is committed only once every journal record up
 *     to L is durable (or failed);
 *   - recovery never skips data: a damaged record followed by good ones,
 *     or any damaged record in a segment that is not the last, stops it
 *     with PS_ECORRUPT naming the file and offset.
 *
 * What it deliberately does not do: it never interprets payloads (msgpack
 * to the domain, opaque bytes here), never decides what an event means,
 * never blocks an actor (actors use the notice forms; the blocking calls
 * say so), and runs no timers of its own for checkpoints (the composer
 * decides when to call ps_node_checkpoint).
 *
 * Errors: functions return 0 or a negative PS_E... code; ps_strerror names
 * them; ps_to_rt_error maps them onto the runtime's codes for the store
 * hook. Codes are stable.
 */
#ifndef FLOCK_PERSISTENCE_H
#define FLOCK_PERSISTENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/runtime.h"

/* ---- errors ------------------------------------------------------------ */

enum {
	PS_OK = 0,
	PS_ENOMEM = -1,     /* out of memory */
	PS_EINVAL = -2,     /* a caller broke a documented precondition */
	PS_EIO = -3,        /* the disk failed a read, write or sync */
	PS_ENOSPC = -4,     /* the disk is full */
	PS_ECORRUPT = -5,   /* stored bytes failed their checks */
	PS_EREADONLY = -6,  /* the journal failed; appends refused until a
			       recovery probe (ps_journal_retry) succeeds */
	PS_ESTOPPED = -7,   /* closing or closed */
	PS_EFULL = -8,      /* a bounded queue or table is full: backpressure */
	PS_ENOTFOUND = -9,  /* nothing stored under that name */
	PS_EVERSION = -10,  /* an on-disk format version this build cannot read */
	PS_ETOOBIG = -11,   /* a payload or state exceeds its limit */
	PS_EBUSY = -12,     /* another such operation is running */
};

/* Returns a static string naming code; never NULL. */
const char *ps_strerror(int code);
/* Maps a PS_E code onto the nearest RT_E code (0 stays 0). */
int ps_to_rt_error(int code);

/* ---- limits ------------------------------------------------------------ */

/* A record's payload is one event; events ride in messages, so the
 * message bound is the natural one. */
#define PS_RECORD_PAYLOAD_BYTES_MAX RT_MESSAGE_BYTES_MAX
/* Default segment roll-over size: 64 MiB keeps a segment readable into
 * memory at recovery and makes deletion after a checkpoint coarse enough
 * that the directory stays small. */
#define PS_SEGMENT_BYTES_DEFAULT (64ull << 20)
/* Smallest allowed roll-over size (tests use small segments). */
#define PS_SEGMENT_BYTES_MIN 4096ull
/* Records queued and not yet durable, at most: 64 writers x hundreds of
 * records each between two fsyncs. Past it appends get PS_EFULL. */
#define PS_JOURNAL_QUEUE_RECORDS_DEFAULT 65536u
/* Bytes queued and not yet durable, at most (64 MiB). */
#define PS_JOURNAL_QUEUE_BYTES_DEFAULT (64ull << 20)
/* How often a failed journal probes the disk again, by default. */
#define PS_JOURNAL_RETRY_INTERVAL_MS_DEFAULT 1000u
/* Paths inside the data directory stay well under PATH_MAX. */
#define PS_PATH_BYTES_MAX 512u
/* Initial LMDB map: 64 MiB, grown by doubling on MDB_MAP_FULL. */
#define PS_STORE_MAP_BYTES_DEFAULT (64ull << 20)
/* Largest map the store grows to (1 TiB of address space, not memory). */
#define PS_STORE_MAP_BYTES_MAX_DEFAULT (1ull << 40)
/* Puts in one LMDB write transaction at most: bounds a txn's dirty pages
 * while still amortising its fsync over many snapshots. */
#define PS_STORE_BATCH_PUTS_MAX 4096u
/* Puts queued and not committed, at most: a checkpoint of a million dirty
 * actors fits; past it saves get PS_EFULL. */
#define PS_STORE_QUEUE_PUTS_MAX (1u << 20)
/* A snapshot's encoded state, at most (64 MiB: a celebrity's lists). */
#define PS_STATE_BYTES_MAX (64u << 20)
/* Caller bytes carried back in a durable notice. */
#define PS_NOTICE_COOKIE_BYTES_MAX 32u
/* Effects one outbox holds unconfirmed; past it ps_outbox_add returns
 * PS_EFULL and the actor must wait for confirmations. */
#define PS_OUTBOX_EFFECTS_MAX 4096u
/* One effect's payload, at most (it travels as a message). */
#define PS_EFFECT_PAYLOAD_BYTES_MAX (RT_MESSAGE_BYTES_MAX - 64u)
/* Sources one dedupe table remembers; past it PS_EFULL (the effect is
 * then not confirmed and will be re-sent: never silently dropped). */
#define PS_DEDUPE_SOURCES_MAX 65536u

/* ---- logging ----------------------------------------------------------- */

/* Receives one formatted line. NULL sinks write to stderr; ps_node routes
 * them to rt_log with component "persistence". Called from any thread. */
typedef void (*ps_log_callback)(void *arg, rt_log_level level,
	const char *message);

/* ---- CRC32C ------------------------------------------------------------ */

/* CRC32C (Castagnoli) of length bytes, continuing from crc (0 to start).
 * Pure; any thread. */
uint32_t ps_crc32c(uint32_t crc, const void *bytes, size_t length);
/* The table-only path, for testing the fast path against. */
uint32_t ps_crc32c_portable(uint32_t crc, const void *bytes, size_t length);

/* ---- the disk seam ------------------------------------------------------ */

/*
 * Every file operation the journal performs. Functions return 0 or a
 * negative PS_E code (errno translated where it enters: EIO -> PS_EIO,
 * ENOSPC/EDQUOT -> PS_ENOSPC, ENOENT -> PS_ENOTFOUND, EINVAL/EBADF ->
 * PS_EINVAL, others -> PS_EIO). Descriptors are ints owned
 * by the table that opened them. All functions may be called from any
 * thread; one descriptor is used by one thread at a time.
 */
typedef struct ps_iovec {
	const void *base;
	size_t length;
} ps_iovec;

/* open flags */
#define PS_DISK_CREATE 1u   /* create if missing */
#define PS_DISK_TRUNCATE 2u /* truncate to zero bytes */

typedef void (*ps_disk_list_callback)(void *arg, const char *name);

typedef struct ps_disk_ops {
	/* Opens path read-write. */
	int (*open)(void *ctx, const char *path, uint32_t flags, int *fd_out);
	int (*close)(void *ctx, int fd);
	/* Writes at offset; may write fewer bytes (*written_out says). */
	int (*pwritev)(void *ctx, int fd, const ps_iovec *iov, int iovcnt,
		uint64_t offset, size_t *written_out);
	/* Reads at offset; fewer bytes only at end of file. */
	int (*pread)(void *ctx, int fd, void *buffer, size_t length,
		uint64_t offset, size_t *read_out);
	int (*fdatasync)(void *ctx, int fd);
	int (*size)(void *ctx, int fd, uint64_t *size_out);
	int (*truncate)(void *ctx, int fd, uint64_t size);
	int (*unlink)(void *ctx, const char *path);
	int (*rename)(void *ctx, const char *from, const char *to);
	/* Creates a directory; an existing one is success. */
	int (*mkdir)(void *ctx, const char *path);
	/* Makes the directory's entries (creations, renames) durable. */
	int (*sync_dir)(void *ctx, const char *path);
	/* Calls cb once per entry name (no "." or ".."), in no order. */
	int (*list)(void *ctx, const char *path, ps_disk_list_callback cb,
		void *arg);
} ps_disk_ops;

typedef struct ps_disk {
	const ps_disk_ops *ops;
	void *ctx;
} ps_disk;

/* The real disk (POSIX calls). Static; never freed. */
const ps_disk *ps_disk_real(void);

/*
 * The fault-injecting disk wraps another (usually the real one) and can:
 * fail the Nth write or fdatasync from now with PS_EIO or PS_ENOSPC (for
 * `count` calls, UINT64_MAX: until healed), make writes short, and
 * "crash": every byte not covered by a successful fdatasync is rolled
 * back (overwrites restored, appends cut, files created since their
 * directory's last sync removed) and every later call fails with PS_EIO.
 * A failed fdatasync also rolls back the unsynced bytes of that file, as
 * a kernel that dropped the dirty pages would (fsyncgate): a journal that
 * retried the fsync and believed it would lose acknowledged data.
 * Thread-safe. The simulator reuses it.
 */
typedef struct ps_fault_disk ps_fault_disk;
typedef struct ps_fault_stats {
	uint64_t writes;        /* pwritev calls seen */
	uint64_t syncs;         /* fdatasync calls seen */
	uint64_t faults;        /* calls failed or shortened on purpose */
	uint64_t bytes_dropped; /* bytes rolled back by crash/sync failure */
} ps_fault_stats;

/* under borrowed for the life of the fault disk; *out owned. */
int ps_fault_disk_create(const ps_disk *under, ps_fault_disk **out);
/* Closes nothing: descriptors belong to their users. */
void ps_fault_disk_destroy(ps_fault_disk *fault);
/* The disk to hand to a journal; valid until destroy. */
const ps_disk *ps_fault_disk_disk(ps_fault_disk *fault);
/* The write `after`+1 calls from now fails with code, then `count`-1
 * more. code: PS_EIO or PS_ENOSPC. */
void ps_fault_disk_fail_writes(ps_fault_disk *fault, uint64_t after,
	uint64_t count, int code);
void ps_fault_disk_fail_syncs(ps_fault_disk *fault, uint64_t after,
	uint64_t count, int code);
/* Every `every`-th write writes only half its bytes (0: off). */
void ps_fault_disk_short_writes(ps_fault_disk *fault, uint64_t every);
/* Clears planned failures (not a crash). */
void ps_fault_disk_heal(ps_fault_disk *fault);
/* Rolls back everything not fdatasynced; later calls fail PS_EIO. */
void ps_fault_disk_crash(ps_fault_disk *fault);
/* Like crash, but of each file's unsynced appended bytes a prefix
 * survives, its length drawn from seed: the kernel wrote back some dirty
 * pages before the power cut, so recovery finds a torn tail. */
void ps_fault_disk_crash_torn(ps_fault_disk *fault, uint64_t seed);
void ps_fault_disk_stats(ps_fault_disk *fault, ps_fault_stats *out);

/* ---- journal records ---------------------------------------------------- */

/*
 * One journal record as read back. The on-disk layout (segment header,
 * record header, checksum coverage, version) is defined and documented in
 * persistence/internal.h.
 */
typedef struct ps_record {
	uint64_t lsn;
	rt_addr addr;
	uint32_t type;
	uint32_t payload_bytes;
	const unsigned char *payload; /* borrowed: valid during the callback */
} ps_record;

/* Receives one verified record; return 0 to go on or a PS_E code to stop
 * (the scan then returns that code). */
typedef int (*ps_record_callback)(void *arg, const ps_record *record);

/* What a scan of one segment's bytes found. */
typedef struct ps_segment_scan_result {
	uint64_t first_lsn;     /* from the header */
	uint64_t previous_lsn;  /* header: last LSN before this segment */
	uint64_t records;       /* good records, in order */
	uint64_t last_lsn;      /* last good record's, or previous_lsn */
	uint64_t valid_bytes;   /* offset just past the last good record */
	bool header_bad;        /* header missing, torn or checksum bad */
	bool damaged;           /* a bad record starts at valid_bytes */
	bool good_after_damage; /* a good record follows it: corruption in
				   the middle, not a torn tail */
	bool zero_tail;         /* only zero bytes follow valid_bytes: space
				   the writer zeroed ahead, a clean end */
} ps_segment_scan_result;

/*
 * Verifies one segment image (header, then records) and calls cb for every
 * good record before the first bad one (cb may be NULL). Returns 0 when
 * the bytes end exactly after a good record, or when only zero bytes
 * follow it (zero_tail: never a record, as a record's LSN is not 0);
 * PS_ECORRUPT when the header
 * or a record is bad (see out: header_bad, or damaged at valid_bytes with
 * good_after_damage telling a torn tail from mid-segment corruption);
 * PS_EVERSION for an unknown format version; or cb's code. Pure: the
 * journal's recovery and the fuzzer both call it.
 */
int ps_segment_scan(const void *bytes, size_t length, ps_record_callback cb,
	void *arg, ps_segment_scan_result *out);

/* Encodes one record (header + payload) into out, which has room for
 * ps_record_encoded_bytes(payload_bytes). Returns bytes written. */
size_t ps_record_encoded_bytes(size_t payload_bytes);
size_t ps_record_encode(uint64_t lsn, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, void *out);
/* Encodes a segment header into out (PS_SEGMENT_HEADER_BYTES in
 * internal.h, exposed here as a function for tests and fuzz seeds). */
size_t ps_segment_header_encode(uint64_t first_lsn, uint64_t previous_lsn,
	void *out);

/* ---- the journal -------------------------------------------------------- */

typedef struct ps_journal ps_journal;

/* Runs on the journal's writer thread once the record's fate is known, in
 * LSN order:
 * status 0 after the fdatasync covering it returned, else PS_EIO,
 * PS_ENOSPC (the record is not acknowledged and the journal has failed)
 * or PS_ESTOPPED. Must not block for long and must not call back into the
 * journal's blocking functions (ps_journal_wait, _retry, _close). */
typedef void (*ps_durable_callback)(void *arg, uint64_t lsn, int status);

typedef struct ps_journal_options {
	const char *directory;       /* created if missing */
	const ps_disk *disk;         /* NULL: ps_disk_real() */
	uint64_t segment_bytes;      /* roll-over size; 0: default */
	uint32_t queue_records_max;  /* 0: default */
	uint64_t queue_bytes_max;    /* 0: default */
	uint64_t retry_interval_ms;  /* automatic re-probe when failed; 0:
					default; UINT64_MAX: only
					ps_journal_retry */
	uint64_t replay_from_lsn;    /* records with lsn > this reach on_record */
	ps_record_callback on_record; /* may be NULL; during open only */
	void *record_arg;
	ps_log_callback log;         /* may be NULL */
	void *log_arg;
	/* true: no writer thread; the caller drives every write, fdatasync
	 * and probe with ps_journal_pump / ps_journal_retry on its own
	 * thread (the simulator, which decides when each disk syncs). */
	bool manual;
} ps_journal_options;

/* Zeroes opts (every field takes its default) and sets directory. */
void ps_journal_options_default(ps_journal_options *opts,
	const char *directory);

/* What open found. Paths are inside the journal directory. */
typedef struct ps_journal_report {
	uint64_t segments;
	uint64_t records;          /* good records read */
	uint64_t records_replayed; /* passed to on_record */
	uint64_t last_lsn;         /* 0 for an empty journal */
	bool torn_tail;            /* the last segment's tail was cut */
	uint64_t torn_offset;      /* where it was cut */
	uint64_t torn_bytes;       /* how many bytes were dropped */
	char torn_path[PS_PATH_BYTES_MAX];
	char corrupt_path[PS_PATH_BYTES_MAX]; /* set with PS_ECORRUPT */
	uint64_t corrupt_offset;
} ps_journal_report;

/*
 * Opens (or creates) the journal in opts->directory: reads and verifies
 * every segment, passes records after replay_from_lsn to on_record in LSN
 * order, truncates a torn tail of the last segment (logged with its
 * offset), fdatasyncs it (so every record replayed is durable), and starts
 * the writer thread. Returns 0, PS_ECORRUPT (report names file and
 * offset), PS_EVERSION, PS_EIO, PS_ENOMEM, or on_record's code. report
 * may be NULL. *out owned; release with ps_journal_close. Blocking; not
 * from an actor.
 */
int ps_journal_open(const ps_journal_options *opts, ps_journal_report *report,
	ps_journal **out);

/*
 * Queues one record; any thread, never blocks on the disk. payload is
 * copied before return. *lsn_out (may be NULL) gets the record's LSN. cb
 * (may be NULL) runs once on the writer thread with the record's fate.
 * Returns 0; PS_EREADONLY when the journal has failed; PS_EFULL when the
 * queue is at its bound (backpressure: try later); PS_ETOOBIG;
 * PS_ESTOPPED; PS_ENOMEM. On error cb is not called.
 */
int ps_journal_append(ps_journal *journal, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, ps_durable_callback cb,
	void *arg, uint64_t *lsn_out);

/* Calls cb once every record appended before this call is durable (status
 * 0, lsn = the last such LSN) or has failed. Any thread; same returns as
 * append. */
int ps_journal_barrier(ps_journal *journal, ps_durable_callback cb,
	void *arg);

/* Highest LSN known durable (records up to it are durable or, in a gap
 * left by a failure, never acknowledged). Any thread. */
uint64_t ps_journal_durable_lsn(ps_journal *journal);
/* Highest LSN handed out so far. */
uint64_t ps_journal_last_lsn(ps_journal *journal);

/* Blocks until record lsn is durable (0) or known failed (its error), or
 * the journal closes (PS_ESTOPPED). Not from an actor or a durable
 * callback. A manual journal never blocks: PS_EBUSY while lsn is
 * neither durable nor failed. */
int ps_journal_wait(ps_journal *journal, uint64_t lsn);

/* 0 while healthy, else the error that failed it. Any thread. */
int ps_journal_status(ps_journal *journal);

/*
 * When failed: probes now, on the writer thread, and blocks for the
 * result. The probe reopens the segment, truncates it to its last durable
 * offset, fdatasyncs, and starts a fresh segment (header written and
 * synced) after the LSNs of the failed records; success returns 0 and
 * appends are accepted again. When healthy: returns 0 at once. Not from
 * an actor or a durable callback.
 */
int ps_journal_retry(ps_journal *journal);

/*
 * Manual journals (opts->manual): the writer's work, one disk step at a
 * time, on the caller's thread. A group commit is two steps: WRITE takes
 * every queued record and barrier and writes them (no sync); SYNC
 * fdatasyncs what WRITE wrote and then runs their callbacks in LSN
 * order. A crash of the disk between the two loses the written batch,
 * which was never acknowledged. A failed step fails the batch and every
 * queued record (their callbacks run before the pump returns) and the
 * journal turns read-only until ps_journal_retry.
 */
typedef enum ps_pump_step {
	PS_PUMP_IDLE = 0,  /* nothing queued, nothing written unsynced */
	PS_PUMP_WRITE = 1, /* records or barriers queued: write them */
	PS_PUMP_SYNC = 2,  /* a written batch awaits its fdatasync */
} ps_pump_step;
/* What ps_journal_pump would do now. PS_PUMP_IDLE also while failed. */
ps_pump_step ps_journal_next_step(ps_journal *journal);
/* Does that step; returns the step done. Manual journals only. */
ps_pump_step ps_journal_pump(ps_journal *journal);

/* Deletes segments all of whose records have LSN <= checkpoint_lsn (never
 * the segment being written). *deleted_out may be NULL. Any thread. */
int ps_journal_release(ps_journal *journal, uint64_t checkpoint_lsn,
	uint64_t *deleted_out);

/* Buckets of the group commits' fdatasync durations in ps_journal_stats:
 * bucket i counts those of at most ps_journal_sync_bound_us(i) µs. */
#define PS_JOURNAL_SYNC_BUCKETS 14u
/* The upper bound of bucket i in µs (UINT64_MAX for the last): 50 µs to
 * 1 s in about x2.5 steps. Pure. */
uint64_t ps_journal_sync_bound_us(uint32_t bucket);

typedef struct ps_journal_stats {
	uint64_t appends;       /* records accepted */
	uint64_t batches;       /* group commits written */
	uint64_t syncs;         /* fdatasync calls */
	uint64_t bytes_written;
	uint64_t failures;      /* times the journal entered the failed state */
	uint64_t segments;      /* live segment files */
	uint64_t zero_fills;    /* zeros written ahead on a group commit's path */
	uint64_t zero_idle_steps; /* zeros written ahead while idle (steps) */
	/* Writer-thread journals only (a manual one reads no clock): each
	 * group commit's fdatasync by duration, and their sum in µs. */
	uint64_t sync_buckets[PS_JOURNAL_SYNC_BUCKETS];
	uint64_t sync_us_total;
} ps_journal_stats;
void ps_journal_get_stats(ps_journal *journal, ps_journal_stats *out);

/* One group commit's timeline, CLOCK_MONOTONIC ns, for benchmarks that
 * break a write's latency into stages. */
typedef struct ps_journal_batch_trace {
	uint64_t first_lsn;       /* 0 when it held barriers only */
	uint64_t last_lsn;
	uint32_t items;           /* records and barriers */
	uint64_t first_queued_ns; /* its first item was queued */
	uint64_t taken_ns;        /* the writer took it */
	uint64_t written_ns;      /* its bytes were written */
	uint64_t synced_ns;       /* its fdatasync returned */
	uint64_t completed_ns;    /* every callback of it ran */
} ps_journal_batch_trace;
typedef void (*ps_journal_trace_callback)(void *arg,
	const ps_journal_batch_trace *trace);
/* Calls cb (NULL: stops) after each group commit that succeeded, on the
 * writer thread with no lock held; cb copies what it keeps and returns.
 * Timestamps cost a clock read per batch and per first item, only while
 * set. Writer-thread journals only (a manual one never calls it). Any
 * thread. */
void ps_journal_set_trace(ps_journal *journal, ps_journal_trace_callback cb,
	void *arg);

/* Writes and syncs everything queued (their callbacks run), stops the
 * writer and frees the journal. Blocking; not from an actor. */
void ps_journal_close(ps_journal *journal);
/* The process died: frees the journal without another disk write or
 * sync. Queued and written-unsynced records fail with PS_ESTOPPED (their
 * callbacks run). Manual journals only (the simulator's crash). */
void ps_journal_abandon(ps_journal *journal);

/* ---- snapshot values ---------------------------------------------------- */

/* Encoded size of a snapshot value holding state_bytes of state. */
size_t ps_snapshot_value_bytes(size_t state_bytes);
/* Encodes a snapshot value for addr (format in internal.h). out has room
 * for ps_snapshot_value_bytes(state_bytes). Returns bytes written. */
size_t ps_snapshot_value_encode(rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes, void *out);
/* Checks and decodes a stored value for addr: *state_out points into
 * bytes (borrowed). Returns 0, PS_ECORRUPT or PS_EVERSION. Pure. */
int ps_snapshot_value_decode(rt_addr addr, const void *bytes, size_t length,
	uint64_t *lsn_out, const void **state_out, size_t *state_bytes_out);
/* The 16-byte big-endian identity of addr (kind as u64, then id) that a
 * snapshot value's checksum covers, so a value cannot pass for another
 * actor's. (The store's LMDB key is another layout: internal.h.) */
void ps_snapshot_key(rt_addr addr, unsigned char out[16]);

/* ---- partitions --------------------------------------------------------- */

/* The id layout of DESIGN.md "Addressing": ms (41 bits) | partition (13)
 * | sequence (10). The store keeps actors in partition order so a
 * partition moves with one range scan; cluster.h's cl_partition_of is the
 * same function. */
#define PS_PARTITION_SHIFT 10u
#define PS_PARTITIONS 8192u
static inline uint32_t
ps_partition_of(uint64_t id)
{
	return (uint32_t)(id >> PS_PARTITION_SHIFT) & (PS_PARTITIONS - 1u);
}

/* ---- the snapshot store (LMDB) ------------------------------------------ */

/*
 * One LMDB environment per node. Puts are queued and committed by the
 * store's writer thread, many per write transaction; a put with LSN L is
 * committed only after wait_durable(L) returned 0 (puts whose record
 * failed are dropped and logged). Reads (ps_store_get) run on the calling
 * thread in a read-only transaction: the environment is opened with
 * MDB_NOTLS, so any thread, including actor threads at activation, may
 * read; reads see queued puts first (read-your-writes). When LMDB reports
 * MDB_MAP_FULL the writer doubles the map (mdb_env_set_mapsize while
 * readers are held off) and retries the transaction.
 */
typedef struct ps_store ps_store;

/* Blocks until lsn is durable: 0, or the record's error. */
typedef int (*ps_store_wait_callback)(void *arg, uint64_t lsn);
/* Runs on the store's writer thread after a checkpoint or flush
 * committed (status 0) or failed. */
typedef void (*ps_store_done_callback)(void *arg, int status);
/* Receives a stored snapshot during ps_store_get; bytes borrowed until
 * return. Returns 0 or an error that ps_store_get passes on. */
typedef int (*ps_snapshot_callback)(void *arg, uint64_t lsn,
	const void *state, size_t state_bytes);

typedef struct ps_store_options {
	const char *directory;            /* the environment's directory */
	uint64_t map_bytes;               /* initial map; 0: default */
	uint64_t map_bytes_max;           /* growth limit; 0: default */
	uint32_t batch_puts_max;          /* 0: PS_STORE_BATCH_PUTS_MAX */
	ps_store_wait_callback wait_durable; /* NULL: puts need no wait */
	void *wait_arg;
	ps_log_callback log;              /* may be NULL */
	void *log_arg;
	/* true: no writer thread; ps_store_pump commits on the caller's
	 * thread, and wait_durable must not block (PS_EBUSY: not yet). */
	bool manual;
} ps_store_options;

void ps_store_options_default(ps_store_options *opts, const char *directory);
/* Opens or creates the environment and starts the writer. Returns 0,
 * PS_EVERSION (meta records another format), PS_EIO, PS_ENOMEM. */
int ps_store_open(const ps_store_options *opts, ps_store **out);
/* Queues a put of state (copied) for addr at lsn. Any thread; never
 * blocks on the disk. PS_EFULL at the queue bound, PS_ETOOBIG. */
int ps_store_put(ps_store *store, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes);
/* Like ps_store_put, and the transaction that commits it also sets
 * (owing) or clears addr's mark in the store's set of actors whose
 * snapshot owes effects (ps_store_put leaves the mark as it is). */
int ps_store_put_owing(ps_store *store, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes, bool owing);
/* The committed marks of ps_store_put_owing: *addrs_out (owned: free()
 * it, also when *count_out is 0) gets every marked address in key
 * order. Queued puts are not looked at: call
 * it before any is queued (a node's open). Any thread. 0, PS_ENOMEM,
 * PS_ECORRUPT, PS_EIO. */
int ps_store_scan_owing(ps_store *store, rt_addr **addrs_out,
	size_t *count_out);
/* Calls cb with addr's newest snapshot (queued or committed). Returns 0,
 * PS_ENOTFOUND, PS_ECORRUPT, PS_EIO or cb's code. Any thread. */
int ps_store_get(ps_store *store, rt_addr addr, ps_snapshot_callback cb,
	void *arg);
/* Queues a marker after every put queued so far: they commit, then the
 * meta checkpoint LSN becomes lsn in the same transaction, then cb runs.
 * lsn 0 only flushes (meta unchanged). Once a put was dropped (its
 * journal record failed) every later marker fails with PS_EIO until the
 * store is opened again. */
int ps_store_checkpoint(ps_store *store, uint64_t lsn,
	ps_store_done_callback cb, void *arg);
/* Blocks until everything queued is committed: PS_EIO once a put was
 * dropped (see ps_store_checkpoint). Not from an actor. */
int ps_store_flush(ps_store *store);
/* The committed checkpoint LSN (0 if none). */
uint64_t ps_store_checkpoint_lsn(ps_store *store);
/* The current map size in bytes. */
uint64_t ps_store_map_bytes(ps_store *store);
/* Flushes, stops the writer, closes the environment. */
void ps_store_close(ps_store *store);
/* Receives one stored actor of a scanned partition; state borrowed until
 * return. Returns 0, or an error that stops the scan and is passed on. */
typedef int (*ps_store_item_callback)(void *arg, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes);
/* Calls cb for every actor of partition the store holds (queued puts
 * win over committed ones), in key order then queued ones, after the read
 * transaction has ended (cb may block). Any thread. 0, PS_ENOMEM,
 * PS_ECORRUPT, PS_EIO, or cb's code. */
int ps_store_scan_partition(ps_store *store, uint32_t partition,
	ps_store_item_callback cb, void *arg);
/* Queues the deletion of every snapshot of partition, ordered after the
 * puts queued before it (puts queued after it survive). Reads stop seeing
 * the partition's queued puts at once. Any thread. 0, PS_ENOMEM,
 * PS_ESTOPPED, PS_EINVAL. */
int ps_store_drop_partition(ps_store *store, uint32_t partition);
/* Manual stores: commits one batch (up to batch_puts_max requests, in
 * queue order, stopping before a put whose record wait_durable reports
 * PS_EBUSY) and runs its markers' callbacks. Returns the requests done
 * (0: nothing could move). */
uint32_t ps_store_pump(ps_store *store);
/* Requests (puts and markers) queued and not yet committed. */
uint32_t ps_store_queued(ps_store *store);
/* The process died: drops every queued request without committing it
 * (markers' callbacks run with PS_ESTOPPED) and closes the environment.
 * Manual stores only. */
void ps_store_abandon(ps_store *store);
/* Benchmark baseline only: one write transaction with one put, committed
 * with LMDB's default sync, on the calling thread. Not for product code. */
int ps_store_bench_put_sync(ps_store *store, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes);

/* ---- durable notices (the actor form of append) -------------------------- */

/* Payload of the message an actor gets when its record's fate is known.
 * Little-endian host layout; it never leaves the node. */
typedef struct ps_durable_notice {
	uint64_t lsn;
	int32_t status;        /* 0 durable, else PS_E code */
	uint32_t cookie_bytes; /* valid bytes in cookie */
	unsigned char cookie[PS_NOTICE_COOKIE_BYTES_MAX];
} ps_durable_notice;
_Static_assert(sizeof(ps_durable_notice) == 48, "notice is 48 bytes");

/* ---- the node: journal + store + runtime ---------------------------------- */

typedef struct ps_node ps_node;

/* Observes every activation load through the store hook (status: 0, or
 * RT_ENOTFOUND for a fresh actor, or the error), in the actor's context.
 * The simulator's checks use it. */
typedef void (*ps_load_observer)(void *arg, rt_addr addr, int status);
/* Says whether state (addr's, of addr's kind) owes effects: an outbox
 * with unconfirmed ones. Called in the actor's context at every snapshot
 * the node saves; cheap, no runtime calls. */
typedef bool (*ps_owes_callback)(void *arg, rt_addr addr, const void *state);

typedef struct ps_node_options {
	const ps_disk *disk;         /* journal disk; NULL: real */
	uint64_t segment_bytes;      /* 0: default */
	uint64_t map_bytes;          /* 0: default */
	uint64_t retry_interval_ms;  /* 0: default */
	/* true: journal and store run no threads; the caller pumps them
	 * (ps_journal_pump, ps_store_pump on ps_node_journal/_store) and
	 * must run a deterministic runtime. */
	bool manual;
	ps_load_observer on_load;    /* may be NULL */
	void *on_load_arg;
	/* may be NULL: then no snapshot is marked, and after a crash only
	 * actors with journal records after the checkpoint wake up, so an
	 * effect owed by an actor whose records were all checkpointed waits
	 * until something activates that actor */
	ps_owes_callback owes;
	void *owes_arg;
} ps_node_options;

typedef struct ps_node_report {
	ps_journal_report journal;
	uint64_t checkpoint_lsn;     /* from the store's meta */
	uint64_t actors_recovered;   /* actors with records after it */
	uint64_t records_recovered;
	uint64_t actors_owing;       /* marked owing in the store (woken too) */
} ps_node_report;

/*
 * Opens data_dir/journal and data_dir/snapshots, reads the checkpoint
 * LSN, scans the journal from it (verifying every record) and groups the
 * records after it by actor in memory, installs the runtime's store hook
 * (activation = snapshot + those records with LSN above the snapshot's,
 * in order), then rt_activate()s every actor that had such records, and
 * every actor whose committed snapshot the owes callback said owes
 * effects (each snapshot the node saves sets or clears that mark in the
 * store, in the snapshot's own transaction), so its on_activate can
 * re-drive effects. *out is set before those
 * activations, so actors that reach the node through *out find it. Call
 * after every kind is registered; in real mode after rt_start. opts may
 * be NULL. Returns 0 or PS_E codes
 * (PS_ECORRUPT: report->journal names file and offset). Not from an
 * actor.
 */
int ps_node_open(const char *data_dir, rt_runtime *rt,
	const ps_node_options *opts, ps_node_report *report, ps_node **out);

/*
 * Journals an event of addr (call from addr's own context, so the node's
 * per-actor last LSN stays exact). cb as ps_journal_append.
 */
int ps_node_append(ps_node *node, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, ps_durable_callback cb,
	void *arg, uint64_t *lsn_out);

/*
 * The actor form: like ps_node_append, and when the record's fate is
 * known a message of reply_type whose payload is a ps_durable_notice
 * (lsn, status, cookie copied here) is sent to reply_to with
 * rt_send_owed. The message is allocated here, so a notice never fails
 * for memory later, and it is owed, so a mailbox full of other work does
 * not refuse it (the node's pool of notice contexts bounds how many are
 * owed at once: PS_EFULL when it is empty). Dropped (logged and counted)
 * only when the runtime stops or routing fails.
 */
int ps_node_append_notify(ps_node *node, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, rt_addr reply_to,
	uint32_t reply_type, const void *cookie, size_t cookie_bytes,
	uint64_t *lsn_out);

/* Sends the notice once everything journaled before this call is durable
 * (no record written). Targets use it to confirm a duplicate effect. */
int ps_node_barrier_notify(ps_node *node, rt_addr reply_to,
	uint32_t reply_type, const void *cookie, size_t cookie_bytes);

/*
 * Checkpoint: notes the journal's durable LSN L, asks the runtime to save
 * every dirty actor (rt_snapshot_dirty; each save queues a put), then
 * commits them with checkpoint LSN L' in meta and deletes journal segments
 * wholly at or before L'. L' is L lowered below the first record of any
 * actor whose records are not yet in a queued snapshot (one recovered but
 * not yet activated, or one that appended without rt_mark_dirty), so a
 * checkpoint never drops a record that no snapshot holds. cb (may be
 * NULL) runs on the store's writer thread with the status and L'.
 * PS_EBUSY while another checkpoint runs. Any thread, actors included.
 */
typedef void (*ps_checkpoint_callback)(void *arg, int status, uint64_t lsn);
int ps_node_checkpoint(ps_node *node, ps_checkpoint_callback cb, void *arg);
/* Blocking form for external threads (tests, shutdown). Real mode only. */
int ps_node_checkpoint_wait(ps_node *node, uint64_t *lsn_out);

ps_journal *ps_node_journal(ps_node *node);
ps_store *ps_node_store(ps_node *node);

typedef struct ps_node_stats {
	uint64_t notices_dropped;  /* notice messages delivery refused */
	/* Notices asked for and not yet sent (each holds a message until
	 * its record is durable; NODE_NOTICES_MAX at most). */
	uint64_t notices_pending;
	uint64_t snapshots_saved;  /* puts queued by the store hook */
	uint64_t actors_loaded;
	uint64_t records_applied;  /* recovered records replayed at load */
	uint64_t checkpoints;
} ps_node_stats;
void ps_node_get_stats(ps_node *node, ps_node_stats *out);

/*
 * Partition hand-off (the cluster's state seam). The partition's actors
 * must not be active here while these run (rt_passivate_where first).
 *
 * export: calls cb once per actor of partition stored here with its
 * latest state: the newest snapshot, and when journal records recovered
 * at open follow it, that snapshot decoded, the records applied with the
 * kind's apply_record and the result encoded again. Not from an actor.
 * 0, PS_ENOMEM, PS_ECORRUPT, PS_EIO, PS_EINVAL, or cb's code.
 */
typedef int (*ps_export_callback)(void *arg, rt_addr addr, const void *state,
	size_t state_bytes);
int ps_node_export_partition(ps_node *node, uint32_t partition,
	ps_export_callback cb, void *arg);
/*
 * import: stores state (copied) as addr's snapshot, so that its next
 * activation here loads it. The snapshot's LSN is this journal's last
 * LSN, so records journaled here in an earlier life of the actor on this
 * node are never replayed on top; any such records still held from
 * recovery are forgotten. Any thread. 0, PS_ENOMEM, PS_ETOOBIG, PS_EFULL,
 * PS_ESTOPPED.
 */
int ps_node_import_snapshot(ps_node *node, rt_addr addr, const void *state,
	size_t state_bytes);
/*
 * drop: forgets partition here once it lives elsewhere: queues the
 * deletion of its snapshots, frees its recovered records and per-actor
 * bookkeeping (so checkpoints are not held back by them), and journals a
 * marker so that a recovery after a restart replays none of the
 * partition's earlier records. Any thread. 0, PS_ENOMEM, PS_EREADONLY,
 * PS_EFULL, PS_ESTOPPED.
 */
int ps_node_drop_partition(ps_node *node, uint32_t partition);

/*
 * wake: activates the actors recovery could not wake because this node
 * did not serve their partitions then (rt_activate said
 * RT_EUNAVAILABLE: a restarted cluster node holds no lease until a
 * majority has answered it), and those ps_node_wake_later remembered,
 * so the effects they owe are sent again.
 * Those still refused keep waiting for the next call. The cluster calls
 * it (cl_state_ops.serving) once it serves its partitions. Any thread.
 * 0 or PS_ENOMEM.
 */
int ps_node_wake(ps_node *node);
/*
 * wake later: remembers addr, going to sleep (on_passivate) while it
 * owes effects that only its own timers send again, for the next
 * ps_node_wake to activate. A node that loses its lease puts every actor
 * to sleep, and a timer firing at a sleeping actor while the node serves
 * nothing is dropped: without this such effects waited for a client to
 * touch their source. In memory only (a restart finds the actors with
 * records through recovery, and with ps_node_options.owes those whose
 * snapshot owes effects). Actor context or any thread. 0 or
 * PS_ENOMEM.
 */
int ps_node_wake_later(ps_node *node, rt_addr addr);

/* After rt_stop (which passivates every actor through the hook): commits
 * the store, closes journal and store, frees the node. The runtime's
 * store hook must not be used afterwards. */
void ps_node_close(ps_node *node);
/* The process died (manual nodes only, after rt_stop): nothing more is
 * written or synced; queued records fail with PS_ESTOPPED, queued
 * snapshots are dropped; frees the node. What the disk holds is what a
 * restart recovers from. */
void ps_node_crash(ps_node *node);

/* ---- effects: outbox and dedupe ---------------------------------------- */

/*
 * The effect protocol (at-least-once delivery, exactly-once application):
 *
 *  1. A source actor derives an effect from one of its journaled events
 *     inside apply (so replay rebuilds it): ps_outbox_add(target, type,
 *     payload) gives it the next sequence of this outbox. The outbox is
 *     part of the source's state and of its snapshot.
 *  2. The source sends an effect only once the event that created it is
 *     durable: from its durable notice (ps_outbox_send(self, outbox,
 *     notice lsn)) and, after a crash, from on_activate (everything loaded
 *     is durable). The effect message is a ps_effect_header (source
 *     address, sequence, confirm type) followed by the payload. Within one
 *     source, effects to one target are sent in sequence order, and after
 *     a failed send to a target nothing later is sent to that target in
 *     the same pass, so a target never sees a sequence before an earlier
 *     one of the same source (per-sender FIFO does the rest).
 *  3. The target asks ps_dedupe_seen(source, sequence). If new, it applies
 *     the effect by journaling an event that carries (source, sequence),
 *     whose apply calls ps_dedupe_record, and confirms only from that
 *     event's durable notice. If already seen, it confirms once
 *     everything it journaled so far is durable (ps_node_barrier_notify).
 *     So a confirmation always means "durable on the target": the target
 *     confirms by journaling, never by waiting for a checkpoint.
 *  4. The confirmation is a message of the effect's confirm type carrying
 *     a ps_effect_confirm; the source calls ps_outbox_confirm, which
 *     drops the effect (no journal record: a confirmation lost in a crash
 *     only causes a re-send, which the target deduplicates).
 *
 * A crash anywhere re-sends from the source's recovered outbox; the
 * target's dedupe (journaled with its events) absorbs the duplicates.
 * The node wakes a source after a crash when it has journal records
 * after the checkpoint, or when its committed snapshot owes effects
 * (ps_node_options.owes): a checkpoint may pass every record of a source
 * while an effect it sent is still unconfirmed and its target's record
 * of it not yet durable.
 */
typedef struct ps_effect_header {
	uint32_t source_kind;
	uint32_t confirm_type; /* message type the target confirms with */
	uint64_t source_id;
	uint64_t sequence;
	uint64_t reserved;     /* zero */
} ps_effect_header;
_Static_assert(sizeof(ps_effect_header) == 32, "effect header is 32 bytes");

typedef struct ps_effect_confirm {
	uint64_t sequence;
} ps_effect_confirm;

typedef struct ps_effect {
	rt_addr target;
	uint32_t type;          /* the effect message's type */
	uint32_t payload_bytes;
	uint64_t sequence;
	uint64_t lsn;           /* the source event that created it */
	unsigned char *payload; /* owned by the outbox */
	bool sent;              /* sent since activation (not stored) */
} ps_effect;

typedef struct ps_outbox {
	uint64_t next_sequence; /* the last sequence handed out */
	uint32_t count;
	uint32_t capacity;
	ps_effect *effects;     /* owned; ordered by sequence */
} ps_outbox;

/* A zeroed ps_outbox is empty and valid. */
/* Adds an effect created by the event at lsn; payload copied. *sequence_out
 * may be NULL. PS_EFULL past PS_OUTBOX_EFFECTS_MAX, PS_ETOOBIG, PS_ENOMEM.
 * Deterministic: replaying the same events gives the same sequences. */
int ps_outbox_add(ps_outbox *outbox, rt_addr target, uint32_t type,
	const void *payload, size_t payload_bytes, uint64_t lsn,
	uint64_t *sequence_out);
/* Drops the effect with that sequence. PS_ENOTFOUND if none (a duplicate
 * confirmation: harmless). */
int ps_outbox_confirm(ps_outbox *outbox, uint64_t sequence);
/* Unconfirmed effects, oldest first: *effects_out borrowed until the next
 * change of the outbox. */
uint32_t ps_outbox_pending(const ps_outbox *outbox,
	const ps_effect **effects_out);
/* Marks every effect unsent (on activation, before re-sending). */
void ps_outbox_reset_sent(ps_outbox *outbox);
/* Encoded form, appended to the owner's snapshot: size, then encode into
 * out (room for that size). decode replaces the outbox's contents from
 * bytes (PS_ECORRUPT, PS_EVERSION, PS_ENOMEM); *consumed_out gets the
 * bytes used. */
size_t ps_outbox_encoded_bytes(const ps_outbox *outbox);
size_t ps_outbox_encode(const ps_outbox *outbox, void *out);
int ps_outbox_decode(ps_outbox *outbox, const void *bytes, size_t length,
	size_t *consumed_out);
void ps_outbox_free(ps_outbox *outbox);

/*
 * Sends, from the source actor's context, every unsent effect whose event
 * LSN is <= durable_lsn (UINT64_MAX: all, e.g. in on_activate), in
 * sequence order, each as ps_effect_header + payload with confirm_type.
 * Stops sending to a target after a failed send to it. Returns the number
 * of effects still unsent (0: all out); the actor retries those later
 * (a timer). Needs the runtime.
 */
uint32_t ps_outbox_send(rt_actor *self, ps_outbox *outbox,
	uint64_t durable_lsn, uint32_t confirm_type);

/* Splits an effect message's payload. Returns 0 or PS_ECORRUPT. Pure. */
int ps_effect_parse(const void *bytes, size_t length, ps_effect_header *out,
	const void **payload_out, size_t *payload_bytes_out);
/* Sends the confirmation for header from the target's context. */
int ps_effect_confirm_send(rt_actor *self, const ps_effect_header *header);

typedef struct ps_dedupe_entry {
	rt_addr source;
	uint64_t sequence; /* highest applied */
} ps_dedupe_entry;

typedef struct ps_dedupe {
	uint32_t count;
	uint32_t capacity;
	ps_dedupe_entry *entries; /* owned; sorted by source */
} ps_dedupe;

/* A zeroed ps_dedupe is empty and valid. */
/* True when (source, sequence) was applied already. */
bool ps_dedupe_seen(const ps_dedupe *dedupe, rt_addr source,
	uint64_t sequence);
/* Records (source, sequence) applied (idempotent). PS_EFULL past
 * PS_DEDUPE_SOURCES_MAX, PS_ENOMEM. */
int ps_dedupe_record(ps_dedupe *dedupe, rt_addr source, uint64_t sequence);
size_t ps_dedupe_encoded_bytes(const ps_dedupe *dedupe);
size_t ps_dedupe_encode(const ps_dedupe *dedupe, void *out);
int ps_dedupe_decode(ps_dedupe *dedupe, const void *bytes, size_t length,
	size_t *consumed_out);
void ps_dedupe_free(ps_dedupe *dedupe);

#endif /* FLOCK_PERSISTENCE_H */
