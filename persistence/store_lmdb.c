/*
 * store_lmdb.c — the snapshot store: the only file of flock that includes
 * lmdb.h.
 *
 * One environment per node with three named databases: "partitioned"
 * (16-byte big-endian store key, partition first, -> snapshot value;
 * formats in internal.h), "meta" (format version, checkpoint LSN) and
 * "owing" (the same keys -> one zero byte: actors whose committed
 * snapshot owes effects, set or cleared by a put in the transaction that
 * commits it, so the set always matches the committed snapshots). A
 * format-1 store ("snapshots", keyed by kind then id) is moved over at
 * open; a store without "owing" gets an empty one.
 *
 * Threads: puts and checkpoint markers are queued (FIFO) by any thread and
 * committed by one writer thread, up to batch_puts_max requests per write
 * transaction, so one LMDB fsync covers many snapshots. Before a batch
 * commits, the writer waits until the journal is durable up to each put's
 * LSN (wait_durable); puts whose record failed are dropped, and from the
 * first such drop on the store commits no checkpoint or flush marker
 * until it is opened again (the marker's callback gets PS_EIO): the
 * dropped put's actor entry in the node already counted it as saved, so
 * a checkpoint could pass journal records that only the dropped snapshot
 * held, while the committed snapshot is older; and a flush confirms a
 * hand-off's imports to the cluster. Recovery after the restart replays
 * from the last marker committed before the drop. Reads run on
 * the calling thread in read-only transactions; the environment is opened
 * with MDB_NOTLS so read transactions are not tied to thread-local reader
 * slots and any thread may read. A read first looks at the queue (a map
 * from address to the newest queued put) so an actor re-activated before
 * its passivation snapshot committed still sees it.
 *
 * Manual mode (the simulator): no writer thread; ps_store_pump commits
 * one batch on the caller's thread, taking puts only as far as the first
 * whose journal record is not yet durable or failed (wait_durable answers
 * PS_EBUSY instead of blocking), so the caller decides when LMDB commits.
 *
 * Map growth: on MDB_MAP_FULL the writer aborts the transaction, takes the
 * resize lock exclusively (readers hold it shared around their
 * transactions, because mdb_env_set_mapsize needs no transaction active in
 * the process), doubles the map, and retries the batch.
 *
 * Partition hand-off: a scan reads one partition's key range (plus its
 * queued puts); a drop is a queued request that deletes the range in
 * queue order, so puts queued before it go and puts queued after it
 * stay. It never interprets state bytes.
 */
#include "persistence/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>

/* Concurrent read transactions: one per worker thread at most plus
 * external readers; 512 is far above RT_WORKERS_MAX. */
#define STORE_READERS_MAX 512u
/* Named databases in the environment (partitioned, meta, owing, and the
 * format-1 snapshots while it is moved over). */
#define STORE_DBS_MAX 4u
/* Entries one transaction of the format-1 move carries: bounds its dirty
 * pages far below LMDB's per-transaction limit. */
#define STORE_MIGRATE_BATCH 4096u

/* REQUEST_DROP keeps the partition in addr.id. */
enum { REQUEST_PUT = 1, REQUEST_MARKER = 2, REQUEST_DROP = 3 };
/* What a put does to its address's mark in "owing". */
enum { OWING_KEEP = 0, OWING_SET = 1, OWING_CLEAR = 2 };

typedef struct store_request {
	struct store_request *next;
	/* while it is its address's newest put (in `pending`): the
	 * partition's list of them, so a scan or drop of one partition
	 * never walks the whole table */
	struct store_request *part_prev;
	struct store_request *part_next;
	int kind;
	bool skip; /* puts: its journal record failed; markers: refused */
	int owing; /* puts: OWING_KEEP, _SET or _CLEAR */
	rt_addr addr;
	uint64_t lsn;
	ps_store_done_callback cb;
	void *arg;
	size_t value_bytes;
	unsigned char value[];
} store_request;

struct ps_store {
	MDB_env *env;
	MDB_dbi snapshots;
	MDB_dbi meta;
	MDB_dbi owing;
	uint64_t map_bytes_max;
	uint32_t batch_puts_max;
	ps_store_wait_callback wait_durable;
	void *wait_arg;
	ps_log_callback log;
	void *log_arg;
	bool manual;

	pthread_mutex_t mutex;
	pthread_cond_t wake;
	store_request *head;
	store_request *tail;
	uint32_t queued_puts;
	uint32_t queued_requests;
	ps__addr_map pending; /* addr -> newest queued put */
	uint16_t *drops_queued; /* per partition: drop requests queued */
	store_request **pending_by_partition; /* per partition: list heads */
	bool closing;
	bool put_dropped; /* writer only: no marker commits after it */
	uint64_t checkpoint_lsn;
	uint64_t map_bytes;

	pthread_rwlock_t resize;
	pthread_t writer;
};

static int
from_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS: return PS_OK;
	case MDB_NOTFOUND: return PS_ENOTFOUND;
	case MDB_MAP_FULL: return PS_ENOSPC;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID: return PS_ECORRUPT;
	case MDB_VERSION_MISMATCH: return PS_EVERSION;
	case ENOMEM: return PS_ENOMEM;
	case ENOSPC: return PS_ENOSPC;
	default: return PS_EIO;
	}
}

static const char META_VERSION[] = "format_version";
static const char META_CHECKPOINT[] = "checkpoint_lsn";

/* ---- the writer -------------------------------------------------------- */

static int
grow_map(ps_store *s)
{
	uint64_t bytes = s->map_bytes * 2;
	if (bytes > s->map_bytes_max)
		return PS_ENOSPC;
	pthread_rwlock_wrlock(&s->resize);
	int rc = mdb_env_set_mapsize(s->env, (size_t)bytes);
	pthread_rwlock_unlock(&s->resize);
	if (rc != 0)
		return from_mdb(rc);
	pthread_mutex_lock(&s->mutex);
	s->map_bytes = bytes;
	pthread_mutex_unlock(&s->mutex);
	ps__log(s->log, s->log_arg, RT_LOG_INFO,
		"store: map grown bytes=%" PRIu64, bytes);
	return PS_OK;
}

/* Deletes partition's key range of dbi in txn. */
static int
drop_range(MDB_dbi dbi, MDB_txn *txn, uint32_t partition)
{
	MDB_cursor *cursor;
	int rc = mdb_cursor_open(txn, dbi, &cursor);
	if (rc != 0)
		return rc;
	unsigned char start[PS_STORE_KEY_BYTES] = {0};
	start[0] = (unsigned char)(partition >> 8);
	start[1] = (unsigned char)partition;
	/* Seek again after each delete: simple, and O(log n) each. */
	for (;;) {
		MDB_val k = {sizeof start, start};
		MDB_val v;
		rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
		if (rc != 0)
			break;
		const unsigned char *key = k.mv_data;
		if (k.mv_size != PS_STORE_KEY_BYTES ||
			((uint32_t)key[0] << 8 | key[1]) != partition)
			break;
		rc = mdb_cursor_del(cursor, 0);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cursor);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A put's mark in "owing", in the put's transaction. */
static int
owing_update(ps_store *s, MDB_txn *txn, int owing, MDB_val *key)
{
	if (owing == OWING_SET) {
		unsigned char zero = 0;
		MDB_val v = {1, &zero};
		return mdb_put(txn, s->owing, key, &v, 0);
	}
	if (owing == OWING_CLEAR) {
		int rc = mdb_del(txn, s->owing, key, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	return 0;
}

/* One attempt at writing the batch in one transaction. */
static int
batch_txn(ps_store *s, store_request *first, uint32_t n, uint64_t *marker_lsn)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	store_request *r = first;
	for (uint32_t i = 0; i < n; i++, r = r->next) {
		if (r->kind == REQUEST_PUT && !r->skip) {
			unsigned char key[PS_STORE_KEY_BYTES];
			ps__store_key(r->addr, key);
			MDB_val k = {sizeof key, key};
			MDB_val v = {r->value_bytes, r->value};
			rc = mdb_put(txn, s->snapshots, &k, &v, 0);
			if (rc == 0)
				rc = owing_update(s, txn, r->owing, &k);
		} else if (r->kind == REQUEST_MARKER && r->lsn != 0 &&
			!r->skip) {
			unsigned char bytes[8];
			ps__store_u64(bytes, r->lsn);
			MDB_val k = {sizeof META_CHECKPOINT - 1,
				(void *)META_CHECKPOINT};
			MDB_val v = {sizeof bytes, bytes};
			rc = mdb_put(txn, s->meta, &k, &v, 0);
			*marker_lsn = r->lsn;
		} else if (r->kind == REQUEST_DROP) {
			rc = drop_range(s->snapshots, txn, (uint32_t)r->addr.id);
			if (rc == 0)
				rc = drop_range(s->owing, txn,
					(uint32_t)r->addr.id);
		}
		if (rc != 0) {
			mdb_txn_abort(txn);
			return rc;
		}
	}
	return mdb_txn_commit(txn);
}

static int
commit_batch(ps_store *s, store_request *first, uint32_t n)
{
	store_request *r = first;
	for (uint32_t i = 0; i < n; i++, r = r->next) {
		if (r->kind == REQUEST_MARKER && s->put_dropped) {
			/* A flush marker (lsn 0) promises every put queued
			 * before it is committed: a hand-off's imports, whose
			 * put waited on an LSN of this node's journal only
			 * to stay above its earlier records. Were a dropped
			 * import confirmed, the old owner would forget the
			 * actor and its state would be nowhere. */
			r->skip = true;
			if (r->lsn != 0)
				ps__log(s->log, s->log_arg, RT_LOG_ERROR,
					"store: checkpoint refused after a dropped snapshot lsn=%" PRIu64
					" (restart recovers from the last one committed)",
					r->lsn);
			else
				ps__log(s->log, s->log_arg, RT_LOG_ERROR,
					"store: flush refused after a dropped snapshot "
					"(restart recovers from the last checkpoint)");
			continue;
		}
		if (r->kind != REQUEST_PUT || s->wait_durable == NULL)
			continue;
		int rc = s->wait_durable(s->wait_arg, r->lsn);
		if (rc != 0) {
			r->skip = true;
			s->put_dropped = true;
			ps__log(s->log, s->log_arg, RT_LOG_WARN,
				"store: snapshot dropped, its journal record failed kind=%" PRIu32
				" id=%" PRIu64 " lsn=%" PRIu64 " error=%s",
				r->addr.kind, r->addr.id, r->lsn, ps_strerror(rc));
		}
	}
	/* Bounded: each retry doubles the map until map_bytes_max. */
	for (;;) {
		uint64_t marker_lsn = 0;
		int rc = batch_txn(s, first, n, &marker_lsn);
		if (rc == MDB_MAP_FULL) {
			int g = grow_map(s);
			if (g != 0)
				return g;
			continue;
		}
		if (rc != 0) {
			ps__log(s->log, s->log_arg, RT_LOG_ERROR,
				"store: commit failed error=%s", mdb_strerror(rc));
			return from_mdb(rc);
		}
		if (marker_lsn != 0) {
			pthread_mutex_lock(&s->mutex);
			s->checkpoint_lsn = marker_lsn;
			pthread_mutex_unlock(&s->mutex);
		}
		return PS_OK;
	}
}

/* The partition lists of the newest queued puts. Lock held. */
static void
part_link_locked(ps_store *s, store_request *r)
{
	store_request **head =
		&s->pending_by_partition[ps_partition_of(r->addr.id)];
	r->part_prev = NULL;
	r->part_next = *head;
	if (*head != NULL)
		(*head)->part_prev = r;
	*head = r;
}

static void
part_unlink_locked(ps_store *s, store_request *r)
{
	if (r->part_prev != NULL)
		r->part_prev->part_next = r->part_next;
	else
		s->pending_by_partition[ps_partition_of(r->addr.id)] =
			r->part_next;
	if (r->part_next != NULL)
		r->part_next->part_prev = r->part_prev;
	r->part_prev = NULL;
	r->part_next = NULL;
}

/* r stops being visible to reads (it still commits). Lock held. */
static void
pending_remove_locked(ps_store *s, store_request *r)
{
	store_request *removed = ps__addr_map_remove(&s->pending, r->addr);
	ps__assert(removed == r);
	part_unlink_locked(s, r);
}

/* Unlinks up to batch_puts_max requests from the head. Lock held. */
static store_request *
take_batch_locked(ps_store *s, uint32_t max, uint32_t *n_out)
{
	store_request *first = s->head;
	store_request *last = first;
	uint32_t n = 1;
	while (n < max && last->next != NULL) {
		last = last->next;
		n++;
	}
	s->head = last->next;
	if (s->head == NULL)
		s->tail = NULL;
	last->next = NULL;
	*n_out = n;
	return first;
}

/* After a batch's commit (rc): forgets its puts, runs its markers'
 * callbacks, frees it. No lock held. */
static void
batch_done(ps_store *s, store_request *first, uint32_t n, int rc)
{
	pthread_mutex_lock(&s->mutex);
	s->queued_requests -= n;
	for (store_request *r = first; r != NULL; r = r->next) {
		if (r->kind == REQUEST_DROP) {
			ps__assert(s->drops_queued[r->addr.id] > 0);
			s->drops_queued[r->addr.id]--;
		}
		if (r->kind != REQUEST_PUT)
			continue;
		s->queued_puts--;
		if (ps__addr_map_get(&s->pending, r->addr) == r)
			pending_remove_locked(s, r);
	}
	pthread_mutex_unlock(&s->mutex);
	while (first != NULL) {
		store_request *r = first;
		first = r->next;
		if (r->kind == REQUEST_MARKER && r->cb != NULL)
			r->cb(r->arg, rc == 0 && r->skip ? PS_EIO : rc);
		free(r);
	}
}

static void *
writer_main(void *arg)
{
	ps_store *s = arg;
	pthread_mutex_lock(&s->mutex);
	for (;;) {
		if (s->head == NULL) {
			if (s->closing)
				break;
			pthread_cond_wait(&s->wake, &s->mutex);
			continue;
		}
		uint32_t n;
		store_request *first = take_batch_locked(s, s->batch_puts_max,
			&n);
		pthread_mutex_unlock(&s->mutex);
		int rc = commit_batch(s, first, n);
		batch_done(s, first, n, rc);
		pthread_mutex_lock(&s->mutex);
	}
	pthread_mutex_unlock(&s->mutex);
	return NULL;
}

uint32_t
ps_store_pump(ps_store *s)
{
	ps__assert(s != NULL);
	ps__assert(s->manual);
	/* How far the batch may go: up to a put whose record is unresolved.
	 * Only this thread takes from the queue, so the prefix stays. */
	pthread_mutex_lock(&s->mutex);
	uint32_t n = 0;
	for (store_request *r = s->head; r != NULL && n < s->batch_puts_max;
		r = r->next) {
		if (r->kind == REQUEST_PUT && s->wait_durable != NULL &&
			s->wait_durable(s->wait_arg, r->lsn) == PS_EBUSY)
			break;
		n++;
	}
	store_request *first = n > 0 ? take_batch_locked(s, n, &n) : NULL;
	pthread_mutex_unlock(&s->mutex);
	if (first == NULL)
		return 0;
	int rc = commit_batch(s, first, n);
	batch_done(s, first, n, rc);
	return n;
}

uint32_t
ps_store_queued(ps_store *s)
{
	pthread_mutex_lock(&s->mutex);
	uint32_t n = s->queued_requests;
	pthread_mutex_unlock(&s->mutex);
	return n;
}

/* ---- queueing -------------------------------------------------------------- */

static void
enqueue_locked(ps_store *s, store_request *r)
{
	r->next = NULL;
	if (s->tail != NULL)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	s->queued_requests++;
	pthread_cond_signal(&s->wake);
}

static int
put_request(ps_store *s, rt_addr addr, uint64_t lsn, const void *state,
	size_t state_bytes, int owing)
{
	ps__assert(s != NULL);
	ps__assert(state != NULL || state_bytes == 0);
	if (state_bytes > PS_STATE_BYTES_MAX)
		return PS_ETOOBIG;
	size_t value_bytes = ps_snapshot_value_bytes(state_bytes);
	store_request *r = malloc(sizeof *r + value_bytes);
	if (r == NULL)
		return PS_ENOMEM;
	memset(r, 0, sizeof *r);
	r->kind = REQUEST_PUT;
	r->owing = owing;
	r->addr = addr;
	r->lsn = lsn;
	r->value_bytes = ps_snapshot_value_encode(addr, lsn, state, state_bytes,
		r->value);
	ps__assert(r->value_bytes == value_bytes);
	pthread_mutex_lock(&s->mutex);
	int rc = PS_OK;
	if (s->closing)
		rc = PS_ESTOPPED;
	else if (s->queued_puts >= PS_STORE_QUEUE_PUTS_MAX)
		rc = PS_EFULL;
	store_request *older = rc == 0 ? ps__addr_map_get(&s->pending, addr)
				       : NULL;
	if (rc == 0)
		rc = ps__addr_map_put(&s->pending, addr, r);
	if (rc == 0) {
		if (older != NULL)
			part_unlink_locked(s, older);
		part_link_locked(s, r);
	}
	if (rc == 0) {
		s->queued_puts++;
		enqueue_locked(s, r);
	}
	pthread_mutex_unlock(&s->mutex);
	if (rc != 0)
		free(r);
	return rc;
}

int
ps_store_put(ps_store *s, rt_addr addr, uint64_t lsn, const void *state,
	size_t state_bytes)
{
	return put_request(s, addr, lsn, state, state_bytes, OWING_KEEP);
}

int
ps_store_put_owing(ps_store *s, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes, bool owing)
{
	return put_request(s, addr, lsn, state, state_bytes,
		owing ? OWING_SET : OWING_CLEAR);
}

int
ps_store_checkpoint(ps_store *s, uint64_t lsn, ps_store_done_callback cb,
	void *arg)
{
	ps__assert(s != NULL);
	store_request *r = calloc(1, sizeof *r);
	if (r == NULL)
		return PS_ENOMEM;
	r->kind = REQUEST_MARKER;
	r->lsn = lsn;
	r->cb = cb;
	r->arg = arg;
	pthread_mutex_lock(&s->mutex);
	int rc = s->closing ? PS_ESTOPPED : PS_OK;
	if (rc == 0)
		enqueue_locked(s, r);
	pthread_mutex_unlock(&s->mutex);
	if (rc != 0)
		free(r);
	return rc;
}

static bool
drop_queued_locked(ps_store *s, uint32_t partition)
{
	return s->drops_queued[partition] > 0;
}

int
ps_store_drop_partition(ps_store *s, uint32_t partition)
{
	ps__assert(s != NULL);
	if (partition >= PS_PARTITIONS)
		return PS_EINVAL;
	store_request *r = calloc(1, sizeof *r);
	if (r == NULL)
		return PS_ENOMEM;
	r->kind = REQUEST_DROP;
	r->addr = rt_addr_make(RT_KIND_NONE, partition);
	pthread_mutex_lock(&s->mutex);
	int rc = s->closing ? PS_ESTOPPED : PS_OK;
	/* Queued puts of the partition stop being visible: they commit
	 * before the drop deletes them. Collected first, as removal shifts
	 * the table under a walk. */
	while (rc == 0 && s->pending_by_partition[partition] != NULL)
		pending_remove_locked(s, s->pending_by_partition[partition]);
	if (rc == 0) {
		s->drops_queued[partition]++;
		enqueue_locked(s, r);
	}
	pthread_mutex_unlock(&s->mutex);
	if (rc != 0)
		free(r);
	return rc;
}

typedef struct flush_wait {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	bool done;
	int status;
} flush_wait;

static void
flush_done(void *arg, int status)
{
	flush_wait *w = arg;
	pthread_mutex_lock(&w->mutex);
	w->done = true;
	w->status = status;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mutex);
}

int
ps_store_flush(ps_store *s)
{
	if (s->manual) {
		/* Bounded: every pump commits at least one request unless a
		 * put waits on an unresolved record, which ends the loop. */
		while (ps_store_pump(s) > 0)
			continue;
		if (ps_store_queued(s) != 0)
			return PS_EBUSY;
		return s->put_dropped ? PS_EIO : PS_OK;
	}
	flush_wait w = {.done = false};
	pthread_mutex_init(&w.mutex, NULL);
	pthread_cond_init(&w.cond, NULL);
	int rc = ps_store_checkpoint(s, 0, flush_done, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mutex);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.mutex);
		rc = w.status;
		pthread_mutex_unlock(&w.mutex);
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.mutex);
	return rc;
}

/* ---- reading ---------------------------------------------------------------- */

static int
deliver(rt_addr addr, const void *value, size_t value_bytes,
	ps_snapshot_callback cb, void *arg)
{
	uint64_t lsn;
	const void *state;
	size_t state_bytes;
	int rc = ps_snapshot_value_decode(addr, value, value_bytes, &lsn,
		&state, &state_bytes);
	if (rc != 0)
		return rc;
	return cb(arg, lsn, state, state_bytes);
}

int
ps_store_get(ps_store *s, rt_addr addr, ps_snapshot_callback cb, void *arg)
{
	ps__assert(s != NULL);
	ps__assert(cb != NULL);
	pthread_mutex_lock(&s->mutex);
	store_request *queued = ps__addr_map_get(&s->pending, addr);
	bool dropping = queued == NULL && drop_queued_locked(s,
		ps_partition_of(addr.id));
	unsigned char *copy = NULL;
	size_t copy_bytes = 0;
	if (queued != NULL) {
		copy_bytes = queued->value_bytes;
		copy = malloc(copy_bytes);
		if (copy != NULL)
			memcpy(copy, queued->value, copy_bytes);
	}
	pthread_mutex_unlock(&s->mutex);
	if (queued != NULL) {
		if (copy == NULL)
			return PS_ENOMEM;
		int rc = deliver(addr, copy, copy_bytes, cb, arg);
		free(copy);
		return rc;
	}
	if (dropping)
		return PS_ENOTFOUND; /* its snapshots are about to go */
	pthread_rwlock_rdlock(&s->resize);
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		pthread_rwlock_unlock(&s->resize);
		return from_mdb(rc);
	}
	unsigned char key[PS_STORE_KEY_BYTES];
	ps__store_key(addr, key);
	MDB_val k = {sizeof key, key};
	MDB_val v;
	rc = mdb_get(txn, s->snapshots, &k, &v);
	if (rc == 0)
		rc = deliver(addr, v.mv_data, v.mv_size, cb, arg);
	else
		rc = from_mdb(rc);
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->resize);
	return rc;
}

/* One actor found by a partition scan, copied out of its transaction. */
typedef struct scan_item {
	rt_addr addr;
	size_t value_bytes;
	unsigned char *value;
} scan_item;

typedef struct scan_list {
	scan_item *items;
	size_t count;
	size_t capacity;
} scan_list;

static int
scan_add(scan_list *l, rt_addr addr, const void *value, size_t bytes)
{
	if (l->count == l->capacity) {
		size_t capacity = l->capacity ? l->capacity * 2 : 64;
		scan_item *items = realloc(l->items, capacity * sizeof *items);
		if (items == NULL)
			return PS_ENOMEM;
		l->items = items;
		l->capacity = capacity;
	}
	unsigned char *copy = malloc(bytes ? bytes : 1);
	if (copy == NULL)
		return PS_ENOMEM;
	memcpy(copy, value, bytes);
	l->items[l->count++] = (scan_item){addr, bytes, copy};
	return PS_OK;
}

static void
scan_free(scan_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i].value);
	free(l->items);
}

/* The partition's queued puts, copied. Lock held. */
static int
scan_queued_locked(ps_store *s, uint32_t partition, scan_list *out)
{
	for (const store_request *r = s->pending_by_partition[partition];
		r != NULL; r = r->part_next) {
		int rc = scan_add(out, r->addr, r->value, r->value_bytes);
		if (rc != 0)
			return rc;
	}
	return PS_OK;
}

static bool
scan_has(const scan_list *l, rt_addr addr)
{
	for (size_t i = 0; i < l->count; i++)
		if (rt_addr_equal(l->items[i].addr, addr))
			return true;
	return false;
}

/* The partition's committed snapshots that no queued put replaces. */
static int
scan_committed(ps_store *s, uint32_t partition, const scan_list *queued,
	scan_list *out)
{
	pthread_rwlock_rdlock(&s->resize);
	MDB_txn *txn;
	MDB_cursor *cursor;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc == 0 && (rc = mdb_cursor_open(txn, s->snapshots, &cursor)) != 0)
		mdb_txn_abort(txn);
	if (rc != 0) {
		pthread_rwlock_unlock(&s->resize);
		return from_mdb(rc);
	}
	unsigned char start[PS_STORE_KEY_BYTES] = {0};
	start[0] = (unsigned char)(partition >> 8);
	start[1] = (unsigned char)partition;
	MDB_val k = {sizeof start, start};
	MDB_val v;
	int op = MDB_SET_RANGE;
	int status = PS_OK;
	while (status == 0 && (rc = mdb_cursor_get(cursor, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		rt_addr addr;
		if (!ps__store_key_parse(k.mv_data, k.mv_size, &addr)) {
			status = PS_ECORRUPT;
			break;
		}
		if (ps_partition_of(addr.id) != partition)
			break;
		if (!scan_has(queued, addr))
			status = scan_add(out, addr, v.mv_data, v.mv_size);
	}
	if (status == 0 && rc != 0 && rc != MDB_NOTFOUND)
		status = from_mdb(rc);
	mdb_cursor_close(cursor);
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->resize);
	return status;
}

int
ps_store_scan_partition(ps_store *s, uint32_t partition,
	ps_store_item_callback cb, void *arg)
{
	ps__assert(s != NULL);
	ps__assert(cb != NULL);
	if (partition >= PS_PARTITIONS)
		return PS_EINVAL;
	scan_list queued = {0}, committed = {0};
	pthread_mutex_lock(&s->mutex);
	bool dropping = drop_queued_locked(s, partition);
	int rc = scan_queued_locked(s, partition, &queued);
	pthread_mutex_unlock(&s->mutex);
	if (rc == 0 && !dropping)
		rc = scan_committed(s, partition, &queued, &committed);
	for (int pass = 0; pass < 2 && rc == 0; pass++) {
		const scan_list *l = pass == 0 ? &committed : &queued;
		for (size_t i = 0; rc == 0 && i < l->count; i++) {
			const scan_item *it = &l->items[i];
			uint64_t lsn;
			const void *state;
			size_t state_bytes;
			rc = ps_snapshot_value_decode(it->addr, it->value,
				it->value_bytes, &lsn, &state, &state_bytes);
			if (rc == 0)
				rc = cb(arg, it->addr, lsn, state, state_bytes);
		}
	}
	scan_free(&queued);
	scan_free(&committed);
	return rc;
}

int
ps_store_scan_owing(ps_store *s, rt_addr **addrs_out, size_t *count_out)
{
	ps__assert(s != NULL);
	ps__assert(addrs_out != NULL);
	ps__assert(count_out != NULL);
	*addrs_out = NULL;
	*count_out = 0;
	pthread_rwlock_rdlock(&s->resize);
	MDB_txn *txn;
	MDB_cursor *cursor;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc == 0 && (rc = mdb_cursor_open(txn, s->owing, &cursor)) != 0)
		mdb_txn_abort(txn);
	if (rc != 0) {
		pthread_rwlock_unlock(&s->resize);
		return from_mdb(rc);
	}
	MDB_stat st;
	rc = mdb_stat(txn, s->owing, &st);
	size_t capacity = rc == 0 ? st.ms_entries : 0;
	rt_addr *addrs = malloc((capacity ? capacity : 1) * sizeof *addrs);
	int status = rc != 0 ? from_mdb(rc) : addrs == NULL ? PS_ENOMEM : PS_OK;
	size_t n = 0;
	MDB_val k, v;
	int op = MDB_FIRST;
	while (status == 0 && (rc = mdb_cursor_get(cursor, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		/* Bounded by the entries counted in the same transaction. */
		if (n == capacity ||
			!ps__store_key_parse(k.mv_data, k.mv_size, &addrs[n])) {
			status = PS_ECORRUPT;
			break;
		}
		n++;
	}
	if (status == 0 && rc != 0 && rc != MDB_NOTFOUND)
		status = from_mdb(rc);
	mdb_cursor_close(cursor);
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->resize);
	if (status != 0) {
		free(addrs);
		return status;
	}
	*addrs_out = addrs;
	*count_out = n;
	return PS_OK;
}

uint64_t
ps_store_checkpoint_lsn(ps_store *s)
{
	pthread_mutex_lock(&s->mutex);
	uint64_t lsn = s->checkpoint_lsn;
	pthread_mutex_unlock(&s->mutex);
	return lsn;
}

uint64_t
ps_store_map_bytes(ps_store *s)
{
	pthread_mutex_lock(&s->mutex);
	uint64_t bytes = s->map_bytes;
	pthread_mutex_unlock(&s->mutex);
	return bytes;
}

int
ps_store_bench_put_sync(ps_store *s, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes)
{
	unsigned char value[4096];
	if (ps_snapshot_value_bytes(state_bytes) > sizeof value)
		return PS_ETOOBIG;
	size_t n = ps_snapshot_value_encode(addr, lsn, state, state_bytes,
		value);
	unsigned char key[PS_STORE_KEY_BYTES];
	ps__store_key(addr, key);
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return from_mdb(rc);
	MDB_val k = {sizeof key, key};
	MDB_val v = {n, value};
	rc = mdb_put(txn, s->snapshots, &k, &v, 0);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return from_mdb(rc);
	}
	return from_mdb(mdb_txn_commit(txn));
}

/* ---- open and close ----------------------------------------------------------- */

static int
put_version(ps_store *s, MDB_txn *txn)
{
	unsigned char bytes[4];
	ps__store_u32(bytes, PS_STORE_FORMAT_VERSION);
	MDB_val k = {sizeof META_VERSION - 1, (void *)META_VERSION};
	MDB_val v = {sizeof bytes, bytes};
	return mdb_put(txn, s->meta, &k, &v, 0);
}

/* Moves up to STORE_MIGRATE_BATCH format-1 entries to the partitioned
 * DB in txn; *moved_out says how many (0: the old DB is empty). */
static int
migrate_batch(ps_store *s, MDB_txn *txn, MDB_dbi old, uint32_t *moved_out)
{
	MDB_cursor *cursor;
	int rc = mdb_cursor_open(txn, old, &cursor);
	if (rc != 0)
		return rc;
	uint32_t moved = 0;
	MDB_val k, v;
	while (moved < STORE_MIGRATE_BATCH &&
		(rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)) == 0) {
		const unsigned char *p = k.mv_data;
		uint64_t kind = 0, id = 0;
		for (int i = 0; k.mv_size == 16 && i < 8; i++) {
			kind = kind << 8 | p[i];
			id = id << 8 | p[8 + i];
		}
		if (k.mv_size != 16 || kind > UINT32_MAX) {
			rc = MDB_CORRUPTED;
			break;
		}
		unsigned char key[PS_STORE_KEY_BYTES];
		ps__store_key(rt_addr_make((uint32_t)kind, id), key);
		MDB_val nk = {sizeof key, key};
		rc = mdb_put(txn, s->snapshots, &nk, &v, 0);
		if (rc == 0)
			rc = mdb_cursor_del(cursor, 0);
		if (rc != 0)
			break;
		moved++;
	}
	mdb_cursor_close(cursor);
	*moved_out = moved;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Format 1 -> 2: re-keys every snapshot, in bounded transactions; the
 * version turns 2 in the one that drops the emptied old DB. */
static int
migrate_v1(ps_store *s)
{
	uint64_t total = 0;
	for (;;) {
		MDB_txn *txn;
		int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (rc != 0)
			return from_mdb(rc);
		MDB_dbi old;
		uint32_t moved = 0;
		rc = mdb_dbi_open(txn, "snapshots", 0, &old);
		if (rc == 0)
			rc = migrate_batch(s, txn, old, &moved);
		if (rc == 0 && moved == 0)
			rc = mdb_drop(txn, old, 1);
		if (rc == MDB_NOTFOUND)
			rc = 0; /* no old DB: nothing was ever stored */
		if (rc == 0 && moved == 0)
			rc = put_version(s, txn);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc == MDB_MAP_FULL) {
			int g = grow_map(s);
			if (g != 0)
				return g;
			continue;
		}
		if (rc != 0)
			return from_mdb(rc);
		total += moved;
		if (moved == 0)
			break;
	}
	ps__log(s->log, s->log_arg, RT_LOG_INFO,
		"store: format 1 moved to format %u snapshots=%" PRIu64,
		PS_STORE_FORMAT_VERSION, total);
	return PS_OK;
}

/* Opens the databases and checks or writes the format version (moving a
 * format-1 store over); reads the checkpoint LSN. */
static int
open_databases(ps_store *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return from_mdb(rc);
	rc = mdb_dbi_open(txn, "partitioned", MDB_CREATE, &s->snapshots);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "owing", MDB_CREATE, &s->owing);
	if (rc != 0)
		goto fail;
	MDB_val k = {sizeof META_VERSION - 1, (void *)META_VERSION};
	MDB_val v;
	bool legacy = false;
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		rc = put_version(s, txn);
	} else if (rc == 0 && v.mv_size == 4 && ps__load_u32(v.mv_data) == 1u) {
		legacy = true;
	} else if (rc == 0 && (v.mv_size != 4 ||
			       ps__load_u32(v.mv_data) != PS_STORE_FORMAT_VERSION)) {
		mdb_txn_abort(txn);
		return PS_EVERSION;
	}
	if (rc != 0)
		goto fail;
	k = (MDB_val){sizeof META_CHECKPOINT - 1, (void *)META_CHECKPOINT};
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0 && v.mv_size == 8)
		s->checkpoint_lsn = ps__load_u64(v.mv_data);
	else if (rc == 0) {
		mdb_txn_abort(txn);
		return PS_ECORRUPT;
	} else if (rc != MDB_NOTFOUND)
		goto fail;
	rc = from_mdb(mdb_txn_commit(txn));
	if (rc == 0 && legacy)
		rc = migrate_v1(s);
	return rc;
fail:
	mdb_txn_abort(txn);
	return from_mdb(rc);
}

void
ps_store_options_default(ps_store_options *opts, const char *directory)
{
	memset(opts, 0, sizeof *opts);
	opts->directory = directory;
}

int
ps_store_open(const ps_store_options *opts, ps_store **out)
{
	ps__assert(opts != NULL);
	ps__assert(out != NULL);
	if (opts->directory == NULL)
		return PS_EINVAL;
	ps_store *s = calloc(1, sizeof *s);
	if (s == NULL)
		return PS_ENOMEM;
	s->map_bytes = opts->map_bytes ? opts->map_bytes : PS_STORE_MAP_BYTES_DEFAULT;
	s->map_bytes_max = opts->map_bytes_max ? opts->map_bytes_max
					       : PS_STORE_MAP_BYTES_MAX_DEFAULT;
	s->batch_puts_max = opts->batch_puts_max ? opts->batch_puts_max
						 : PS_STORE_BATCH_PUTS_MAX;
	s->wait_durable = opts->wait_durable;
	s->wait_arg = opts->wait_arg;
	s->log = opts->log;
	s->log_arg = opts->log_arg;
	s->manual = opts->manual;
	pthread_mutex_init(&s->mutex, NULL);
	pthread_cond_init(&s->wake, NULL);
	pthread_rwlock_init(&s->resize, NULL);
	int rc = PS_ENOMEM;
	s->drops_queued = calloc(PS_PARTITIONS, sizeof *s->drops_queued);
	s->pending_by_partition = calloc(PS_PARTITIONS,
		sizeof *s->pending_by_partition);
	if (s->drops_queued == NULL || s->pending_by_partition == NULL)
		goto fail;
	const ps_disk *disk = ps_disk_real();
	rc = disk->ops->mkdir(disk->ctx, opts->directory);
	if (rc != 0)
		goto fail;
	rc = from_mdb(mdb_env_create(&s->env));
	if (rc != 0)
		goto fail;
	mdb_env_set_maxdbs(s->env, STORE_DBS_MAX);
	mdb_env_set_maxreaders(s->env, STORE_READERS_MAX);
	mdb_env_set_mapsize(s->env, (size_t)s->map_bytes);
	int mrc = mdb_env_open(s->env, opts->directory, MDB_NOTLS, 0644);
	if (mrc != 0) {
		ps__log(s->log, s->log_arg, RT_LOG_ERROR,
			"store: cannot open path=%s error=%s", opts->directory,
			mdb_strerror(mrc));
		rc = from_mdb(mrc);
		goto fail_env;
	}
	/* An existing environment may be bigger than asked: keep its size. */
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	if (info.me_mapsize > s->map_bytes)
		s->map_bytes = info.me_mapsize;
	rc = open_databases(s);
	if (rc != 0)
		goto fail_env;
	if (!s->manual &&
		pthread_create(&s->writer, NULL, writer_main, s) != 0) {
		rc = PS_ENOMEM;
		goto fail_env;
	}
	*out = s;
	return PS_OK;

fail_env:
	mdb_env_close(s->env);
fail:
	free(s->drops_queued);
	free(s->pending_by_partition);
	pthread_rwlock_destroy(&s->resize);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->mutex);
	free(s);
	return rc;
}

static void
store_free(ps_store *s)
{
	ps__addr_map_free(&s->pending);
	free(s->drops_queued);
	free(s->pending_by_partition);
	mdb_env_close(s->env);
	pthread_rwlock_destroy(&s->resize);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->mutex);
	free(s);
}

void
ps_store_close(ps_store *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mutex);
	s->closing = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mutex);
	if (s->manual)
		ps_store_flush(s);
	else
		pthread_join(s->writer, NULL);
	ps__assert(s->head == NULL);
	ps__assert(s->queued_puts == 0);
	store_free(s);
}

void
ps_store_abandon(ps_store *s)
{
	if (s == NULL)
		return;
	ps__assert(s->manual);
	pthread_mutex_lock(&s->mutex);
	s->closing = true;
	store_request *first = s->head;
	uint32_t n = s->queued_requests;
	s->head = NULL;
	s->tail = NULL;
	pthread_mutex_unlock(&s->mutex);
	if (first != NULL)
		batch_done(s, first, n, PS_ESTOPPED);
	store_free(s);
}
