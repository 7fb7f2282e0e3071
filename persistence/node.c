/*
 * node.c — binds journal + snapshot store + runtime for one node:
 * recovery, the runtime's store hook, checkpoints, durable notices.
 *
 * Recovery: the journal is scanned from the store's checkpoint LSN and
 * every record after it is kept in memory, grouped by actor (the
 * `recovered` map); each such actor is then activated, and so is every
 * actor the store marks as owing effects (its committed snapshot has
 * unconfirmed ones: ps_node_options.owes). Loading an actor =
 * its snapshot (decode_state) + its recovered records above the
 * snapshot's LSN (apply_record, in LSN order); when records were applied
 * the rebuilt state is queued as a new snapshot at once, so the records
 * can leave memory and the next checkpoint may pass them.
 *
 * Per-actor bookkeeping (`actors` map, under the node mutex): the last
 * LSN appended, the LSN of the last queued snapshot, and the first LSN
 * not yet in one. A snapshot's LSN is the actor's last appended LSN (or
 * the committed checkpoint LSN when the actor has appended nothing since
 * it: it then has no record above that). A checkpoint at durable LSN L
 * commits with L' = L lowered below the first unsaved record of any actor,
 * so segments are deleted only when every record in them is in a
 * committed snapshot.
 *
 * Failed records: an actor whose records failed (journal disk error) may
 * hold their effect in memory. The node never snapshots such a state
 * (save returns RT_EIO, logged) and never checkpoints past its records, so a restart rebuilds it from
 * what is durable. It does not rebuild it in place.
 *
 * Lock order: node mutex, then the journal's; callbacks from the journal
 * and the store run without either held.
 */
#include "persistence/internal.h"

#include <inttypes.h>

/* Notices in flight at once: the journal's queue bound, so a notice
 * context never runs out before the journal says PS_EFULL itself. */
#define NODE_NOTICES_MAX PS_JOURNAL_QUEUE_RECORDS_DEFAULT

typedef struct recovered_record {
	uint64_t lsn;
	uint32_t type;
	uint32_t payload_bytes;
	unsigned char payload[];
} recovered_record;

typedef struct recovered_actor {
	uint32_t count;
	uint32_t capacity;
	recovered_record **records; /* LSN order */
} recovered_actor;

typedef struct actor_entry {
	uint64_t last_lsn;          /* last record appended or replayed */
	uint64_t saved_lsn;         /* LSN of the last queued snapshot */
	uint64_t first_unsaved_lsn; /* first record not in it; 0: none */
	rt_addr addr;               /* its key in `actors` */
	/* the partition's entries, so a partition drop touches only them */
	struct actor_entry *prev;
	struct actor_entry *next;
} actor_entry;

typedef struct notice_context {
	struct notice_context *next_free;
	ps_node *node;
	rt_addr reply_to;
	rt_message *message;
} notice_context;

struct ps_node {
	rt_runtime *rt;
	ps_journal *journal;
	ps_store *store;
	pthread_mutex_t mutex;
	/* Notices refused because the runtime stopped (records made durable
	 * by the journal's close, say): the first is logged, the rest once
	 * as a count when the node closes. */
	uint64_t notices_dropped_stopped;
	pthread_cond_t checkpoint_done;
	ps__addr_map recovered;
	/* actors that went to sleep owing effects (ps_node_wake_later);
	 * values are the node itself (the map wants non-NULL) */
	ps__addr_map wake;
	ps__addr_map actors;
	actor_entry **entries_by_partition;  /* PS_PARTITIONS list heads */
	uint32_t *recovered_by_partition;    /* PS_PARTITIONS counts */
	uint64_t checkpoint_lsn; /* committed */
	bool checkpoint_running;
	uint64_t checkpoint_target; /* L, noted at start */
	uint64_t checkpoint_commit; /* L', chosen after the saves */
	ps_checkpoint_callback checkpoint_cb;
	void *checkpoint_arg;
	notice_context *notices;
	notice_context *notices_free;
	ps_node_stats stats;
	bool manual;
	ps_load_observer on_load;
	void *on_load_arg;
	ps_owes_callback owes; /* may be NULL: no snapshot is marked */
	void *owes_arg;
};

static void
node_log(void *arg, rt_log_level level, const char *message)
{
	ps_node *node = arg;
	rt_log(node->rt, level, "persistence", "%s", message);
}

/* ---- recovery --------------------------------------------------------- */

static void recovered_free(recovered_actor *a);

/* Frees the recovered records of every actor of partition. Node mutex
 * held (or recovery, single-threaded). Keys are collected first: removal
 * shifts entries under a walk. */
static int
recovered_purge_locked(ps_node *node, uint32_t partition)
{
	if (node->recovered_by_partition[partition] == 0)
		return PS_OK;
	size_t n = 0;
	rt_addr *addrs = malloc((node->recovered.count + 1) * sizeof *addrs);
	if (addrs == NULL)
		return PS_ENOMEM;
	for (size_t i = 0; i < node->recovered.capacity; i++)
		if (node->recovered.slots[i].value != NULL &&
			ps_partition_of(node->recovered.slots[i].key.id) == partition)
			addrs[n++] = node->recovered.slots[i].key;
	for (size_t i = 0; i < n; i++)
		recovered_free(ps__addr_map_remove(&node->recovered, addrs[i]));
	ps__assert(node->recovered_by_partition[partition] == n);
	node->recovered_by_partition[partition] = 0;
	free(addrs);
	return PS_OK;
}

/* Takes addr's recovered records out of the map, or NULL. Mutex held. */
static recovered_actor *
recovered_take_locked(ps_node *node, rt_addr addr)
{
	recovered_actor *a = ps__addr_map_remove(&node->recovered, addr);
	if (a != NULL) {
		uint32_t p = ps_partition_of(addr.id);
		ps__assert(node->recovered_by_partition[p] > 0);
		node->recovered_by_partition[p]--;
	}
	return a;
}

/* Puts them (back) in. PS_ENOMEM. Mutex held. */
static int
recovered_put_locked(ps_node *node, rt_addr addr, recovered_actor *a)
{
	if (ps__addr_map_put(&node->recovered, addr, a) != 0)
		return PS_ENOMEM;
	node->recovered_by_partition[ps_partition_of(addr.id)]++;
	return PS_OK;
}

static int
collect_record(void *arg, const ps_record *r)
{
	ps_node *node = arg;
	if (r->addr.kind == RT_KIND_NONE) {
		/* The node's own marker: the partition left this node, and
		 * every earlier record of it went with its state. */
		if (r->type == PS__RECORD_DROP_PARTITION &&
			r->addr.id < PS_PARTITIONS)
			return recovered_purge_locked(node, (uint32_t)r->addr.id);
		return 0;
	}
	recovered_actor *a = ps__addr_map_get(&node->recovered, r->addr);
	if (a == NULL) {
		a = calloc(1, sizeof *a);
		if (a == NULL)
			return PS_ENOMEM;
		if (recovered_put_locked(node, r->addr, a) != 0) {
			free(a);
			return PS_ENOMEM;
		}
	}
	if (a->count == a->capacity) {
		uint32_t capacity = a->capacity ? a->capacity * 2 : 4;
		recovered_record **p = realloc(a->records, capacity * sizeof *p);
		if (p == NULL)
			return PS_ENOMEM;
		a->records = p;
		a->capacity = capacity;
	}
	recovered_record *rec = malloc(sizeof *rec + r->payload_bytes);
	if (rec == NULL)
		return PS_ENOMEM;
	rec->lsn = r->lsn;
	rec->type = r->type;
	rec->payload_bytes = r->payload_bytes;
	memcpy(rec->payload, r->payload, r->payload_bytes);
	ps__assert(a->count == 0 || a->records[a->count - 1]->lsn < r->lsn);
	a->records[a->count++] = rec;
	return 0;
}

static void
recovered_free(recovered_actor *a)
{
	for (uint32_t i = 0; i < a->count; i++)
		free(a->records[i]);
	free(a->records);
	free(a);
}

static int
wait_durable(void *arg, uint64_t lsn)
{
	ps_node *node = arg;
	return ps_journal_wait(node->journal, lsn);
}

/* ---- per-actor bookkeeping (node mutex held) --------------------------- */

static actor_entry *
entry_get_or_create(ps_node *node, rt_addr addr)
{
	actor_entry *e = ps__addr_map_get(&node->actors, addr);
	if (e != NULL)
		return e;
	e = calloc(1, sizeof *e);
	if (e == NULL)
		return NULL;
	if (ps__addr_map_put(&node->actors, addr, e) != 0) {
		free(e);
		return NULL;
	}
	e->addr = addr;
	actor_entry **head = &node->entries_by_partition[ps_partition_of(addr.id)];
	e->next = *head;
	if (*head != NULL)
		(*head)->prev = e;
	*head = e;
	return e;
}

/* Forgets an entry: out of the map and its partition's list, freed. */
static void
entry_remove_locked(ps_node *node, actor_entry *e)
{
	actor_entry *removed = ps__addr_map_remove(&node->actors, e->addr);
	ps__assert(removed == e);
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		node->entries_by_partition[ps_partition_of(e->addr.id)] = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	free(e);
}

static void
entry_appended(actor_entry *e, uint64_t lsn)
{
	ps__assert(lsn > e->last_lsn);
	if (e->first_unsaved_lsn == 0)
		e->first_unsaved_lsn = lsn;
	e->last_lsn = lsn;
}

static void
entry_saved(actor_entry *e, uint64_t lsn)
{
	if (lsn > e->saved_lsn)
		e->saved_lsn = lsn;
	if (e->saved_lsn >= e->last_lsn)
		e->first_unsaved_lsn = 0;
}

/* ---- the store hook ---------------------------------------------------------- */

typedef struct load_context {
	const rt_actor_ops *ops;
	void *state;
	int decode_rc;
	uint64_t lsn;
} load_context;

static int
load_snapshot(void *arg, uint64_t lsn, const void *state, size_t bytes)
{
	load_context *c = arg;
	c->lsn = lsn;
	c->decode_rc = c->ops->decode_state != NULL
		? c->ops->decode_state(c->state, state, bytes)
		: (bytes == 0 ? 0 : RT_ECORRUPT);
	return c->decode_rc != 0 ? PS_ECORRUPT : 0;
}

/* Queues the state as addr's snapshot at lsn. Actor context. */
static int
save_state(ps_node *node, rt_addr addr, const rt_actor_ops *ops,
	const void *state, uint64_t lsn)
{
	rt_buffer buffer = {0};
	int rc = ops->encode_state != NULL ? ops->encode_state(state, &buffer) : 0;
	if (rc != 0) {
		rt_buffer_free(&buffer);
		return rc;
	}
	if (node->owes != NULL)
		rc = ps_store_put_owing(node->store, addr, lsn, buffer.bytes,
			buffer.length, node->owes(node->owes_arg, addr, state));
	else
		rc = ps_store_put(node->store, addr, lsn, buffer.bytes,
			buffer.length);
	rt_buffer_free(&buffer);
	if (rc != 0)
		return ps_to_rt_error(rc);
	pthread_mutex_lock(&node->mutex);
	node->stats.snapshots_saved++;
	actor_entry *e = ps__addr_map_get(&node->actors, addr);
	if (e != NULL)
		entry_saved(e, lsn);
	pthread_mutex_unlock(&node->mutex);
	return 0;
}

static int
replay(ps_node *node, recovered_actor *a, const rt_actor_ops *ops,
	void *state, uint64_t from_lsn, uint64_t *last_out, uint32_t *applied_out)
{
	for (uint32_t i = 0; i < a->count; i++) {
		recovered_record *r = a->records[i];
		if (r->lsn <= from_lsn)
			continue;
		if (ops->apply_record == NULL)
			return RT_EINVAL;
		int rc = ops->apply_record(state, r->type, r->payload,
			r->payload_bytes);
		if (rc != 0)
			return rc;
		*last_out = r->lsn;
		(*applied_out)++;
	}
	(void)node;
	return 0;
}

static int store_load_inner(ps_node *node, rt_addr addr,
	const rt_actor_ops *ops, void *state);

static int
store_load(void *arg, rt_addr addr, const rt_actor_ops *ops, void *state)
{
	ps_node *node = arg;
	int rc = store_load_inner(node, addr, ops, state);
	if (node->on_load != NULL)
		node->on_load(node->on_load_arg, addr, rc);
	return rc;
}

static int
store_load_inner(ps_node *node, rt_addr addr, const rt_actor_ops *ops,
	void *state)
{
	load_context c = {ops, state, 0, 0};
	int rc = ps_store_get(node->store, addr, load_snapshot, &c);
	bool found = rc == 0;
	if (rc != 0 && rc != PS_ENOTFOUND) {
		rt_log(node->rt, RT_LOG_ERROR, "persistence",
			"snapshot unreadable kind=%" PRIu32 " id=%" PRIu64 " error=%s",
			addr.kind, addr.id,
			c.decode_rc != 0 ? rt_strerror(c.decode_rc) : ps_strerror(rc));
		return c.decode_rc != 0 ? c.decode_rc : ps_to_rt_error(rc);
	}
	pthread_mutex_lock(&node->mutex);
	recovered_actor *a = recovered_take_locked(node, addr);
	pthread_mutex_unlock(&node->mutex);
	uint64_t last = c.lsn;
	uint32_t applied = 0;
#ifdef FLOCK_BUG_SNAPSHOT_IGNORES_JOURNAL_TAIL
	/* PLANTED BUG (make sim-zoo): activation trusts the snapshot alone
	 * and drops the journal records after it. */
	if (a != NULL) {
		recovered_free(a);
		a = NULL;
	}
#endif
	if (a != NULL) {
		rc = replay(node, a, ops, state, c.lsn, &last, &applied);
		if (rc != 0) {
			/* Keep the records: a later activation may succeed. */
			pthread_mutex_lock(&node->mutex);
			if (recovered_put_locked(node, addr, a) != 0)
				recovered_free(a);
			pthread_mutex_unlock(&node->mutex);
			return rc;
		}
		recovered_free(a);
	}
	pthread_mutex_lock(&node->mutex);
	node->stats.actors_loaded++;
	node->stats.records_applied += applied;
	actor_entry *e = NULL;
	bool tracked = last > node->checkpoint_lsn;
	if (tracked) {
		e = entry_get_or_create(node, addr);
		if (e != NULL && last > e->last_lsn) {
			e->last_lsn = last;
			e->saved_lsn = c.lsn;
			e->first_unsaved_lsn = applied > 0 ? last : 0;
		}
	}
	pthread_mutex_unlock(&node->mutex);
	if (tracked && e == NULL)
		return RT_ENOMEM;
	if (applied > 0) {
		/* The records leave memory now; their state must not. */
		rc = save_state(node, addr, ops, state, last);
		if (rc != 0)
			return rc;
	}
	return found || applied > 0 ? 0 : RT_ENOTFOUND;
}

static int
store_save(void *arg, rt_addr addr, const rt_actor_ops *ops,
	const void *state)
{
	ps_node *node = arg;
	pthread_mutex_lock(&node->mutex);
	actor_entry *e = ps__addr_map_get(&node->actors, addr);
	uint64_t lsn = node->checkpoint_lsn;
	uint64_t unsaved_from = 0;
	if (e != NULL) {
		if (e->last_lsn > lsn)
			lsn = e->last_lsn;
		unsaved_from = e->first_unsaved_lsn;
	}
	pthread_mutex_unlock(&node->mutex);
	if (unsaved_from != 0 &&
		ps__journal_failed_between(node->journal, unsaved_from, lsn)) {
		rt_log(node->rt, RT_LOG_ERROR, "persistence",
			"snapshot refused: state holds a failed record kind=%" PRIu32
			" id=%" PRIu64 " (restart rebuilds it)",
			addr.kind, addr.id);
		return RT_EIO;
	}
	return save_state(node, addr, ops, state, lsn);
}

static const rt_store_ops node_store_ops = {
	.load = store_load,
	.save = store_save,
};

/* ---- appends and notices -------------------------------------------------- */

int
ps_node_append(ps_node *node, rt_addr addr, uint32_t type, const void *payload,
	size_t payload_bytes, ps_durable_callback cb, void *arg,
	uint64_t *lsn_out)
{
	ps__assert(node != NULL);
	pthread_mutex_lock(&node->mutex);
	actor_entry *e = entry_get_or_create(node, addr);
	int rc = PS_ENOMEM;
	uint64_t lsn = 0;
	if (e != NULL)
		rc = ps_journal_append(node->journal, addr, type, payload,
			payload_bytes, cb, arg, &lsn);
	if (rc == 0)
		entry_appended(e, lsn);
	pthread_mutex_unlock(&node->mutex);
	if (rc == 0 && lsn_out != NULL)
		*lsn_out = lsn;
	return rc;
}

static void
notice_done(void *arg, uint64_t lsn, int status)
{
	notice_context *c = arg;
	ps_node *node = c->node;
	ps_durable_notice *n = (ps_durable_notice *)c->message->payload;
	n->lsn = lsn;
	n->status = status;
	/* Owed: the actor asked for it with its append, and the node's pool
	 * of NODE_NOTICES_MAX contexts bounds how many are owed at once. */
	int rc = rt_send_owed(node->rt, c->reply_to, c->message);
	bool quiet = false;
	pthread_mutex_lock(&node->mutex);
	if (rc != 0)
		node->stats.notices_dropped++;
	if (rc == RT_ESTOPPED)
		quiet = node->notices_dropped_stopped++ > 0;
	c->message = NULL;
	c->next_free = node->notices_free;
	node->notices_free = c;
	ps__assert(node->stats.notices_pending > 0);
	node->stats.notices_pending--;
	pthread_mutex_unlock(&node->mutex);
	if (rc != 0 && !quiet)
		rt_log(node->rt, RT_LOG_WARN, "persistence",
			"durable notice dropped kind=%" PRIu32 " id=%" PRIu64
			" lsn=%" PRIu64 " status=%d error=%s",
			c->reply_to.kind, c->reply_to.id, lsn, status,
			rt_strerror(rc));
}

/* Takes a notice context with its message allocated. Node mutex held. */
static notice_context *
notice_take_locked(ps_node *node, rt_addr reply_to, uint32_t reply_type,
	const void *cookie, size_t cookie_bytes, int *rc)
{
	notice_context *c = node->notices_free;
	if (c == NULL) {
		*rc = PS_EFULL;
		return NULL;
	}
	rt_message *m = rt_message_alloc(node->rt, reply_type,
		sizeof(ps_durable_notice));
	if (m == NULL) {
		*rc = PS_EFULL;
		return NULL;
	}
	node->notices_free = c->next_free;
	node->stats.notices_pending++;
	ps_durable_notice *n = (ps_durable_notice *)m->payload;
	memset(n, 0, sizeof *n);
	n->cookie_bytes = (uint32_t)cookie_bytes;
	if (cookie_bytes > 0)
		memcpy(n->cookie, cookie, cookie_bytes);
	c->reply_to = reply_to;
	c->message = m;
	*rc = 0;
	return c;
}

static void
notice_give_back_locked(ps_node *node, notice_context *c)
{
	rt_message_free(node->rt, c->message);
	c->message = NULL;
	c->next_free = node->notices_free;
	node->notices_free = c;
	ps__assert(node->stats.notices_pending > 0);
	node->stats.notices_pending--;
}

int
ps_node_append_notify(ps_node *node, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, rt_addr reply_to,
	uint32_t reply_type, const void *cookie, size_t cookie_bytes,
	uint64_t *lsn_out)
{
	ps__assert(node != NULL);
	if (cookie_bytes > PS_NOTICE_COOKIE_BYTES_MAX)
		return PS_EINVAL;
	ps__assert(cookie != NULL || cookie_bytes == 0);
	pthread_mutex_lock(&node->mutex);
	int rc;
	notice_context *c = notice_take_locked(node, reply_to, reply_type,
		cookie, cookie_bytes, &rc);
	actor_entry *e = c != NULL ? entry_get_or_create(node, addr) : NULL;
	if (c != NULL && e == NULL)
		rc = PS_ENOMEM;
	uint64_t lsn = 0;
	if (rc == 0)
		rc = ps_journal_append(node->journal, addr, type, payload,
			payload_bytes, notice_done, c, &lsn);
	if (rc == 0)
		entry_appended(e, lsn);
	else if (c != NULL)
		notice_give_back_locked(node, c);
	pthread_mutex_unlock(&node->mutex);
	if (rc == 0 && lsn_out != NULL)
		*lsn_out = lsn;
	return rc;
}

int
ps_node_barrier_notify(ps_node *node, rt_addr reply_to, uint32_t reply_type,
	const void *cookie, size_t cookie_bytes)
{
	ps__assert(node != NULL);
	if (cookie_bytes > PS_NOTICE_COOKIE_BYTES_MAX)
		return PS_EINVAL;
	pthread_mutex_lock(&node->mutex);
	int rc;
	notice_context *c = notice_take_locked(node, reply_to, reply_type,
		cookie, cookie_bytes, &rc);
	if (rc == 0)
		rc = ps_journal_barrier(node->journal, notice_done, c);
	if (rc != 0 && c != NULL)
		notice_give_back_locked(node, c);
	pthread_mutex_unlock(&node->mutex);
	return rc;
}

/* ---- checkpoints -------------------------------------------------------------- */

/* The LSN a checkpoint may record: below the first record of any actor
 * that no queued snapshot holds yet. Node mutex held. */
static uint64_t
checkpoint_bound_locked(ps_node *node, uint64_t lsn)
{
	for (size_t i = 0; i < node->actors.capacity; i++) {
		const actor_entry *e = node->actors.slots[i].value;
		if (e != NULL && e->first_unsaved_lsn != 0 &&
			e->first_unsaved_lsn <= lsn)
			lsn = e->first_unsaved_lsn - 1;
	}
	for (size_t i = 0; i < node->recovered.capacity; i++) {
		const recovered_actor *a = node->recovered.slots[i].value;
		if (a != NULL && a->count > 0 && a->records[0]->lsn <= lsn)
			lsn = a->records[0]->lsn - 1;
	}
	return lsn;
}

/* Forgets actors whose every record is at or below the checkpoint. Node
 * mutex held. Bounded by the map's capacity; removal can shift a later
 * entry into slot i, so i is re-examined after a removal. */
static void
entries_prune_locked(ps_node *node, uint64_t checkpoint_lsn)
{
	size_t i = 0;
	while (i < node->actors.capacity) {
		actor_entry *e = node->actors.slots[i].value;
		if (e != NULL && e->first_unsaved_lsn == 0 &&
			e->last_lsn <= checkpoint_lsn) {
			entry_remove_locked(node, e);
			continue;
		}
		i++;
	}
}

static void
checkpoint_finish(ps_node *node, int status, uint64_t lsn)
{
	pthread_mutex_lock(&node->mutex);
	ps_checkpoint_callback cb = node->checkpoint_cb;
	void *arg = node->checkpoint_arg;
	node->checkpoint_running = false;
	if (status == 0)
		node->stats.checkpoints++;
	pthread_cond_broadcast(&node->checkpoint_done);
	pthread_mutex_unlock(&node->mutex);
	if (cb != NULL)
		cb(arg, status, lsn);
}

static void
checkpoint_committed(void *arg, int status)
{
	ps_node *node = arg;
	pthread_mutex_lock(&node->mutex);
	uint64_t lsn = node->checkpoint_commit;
	if (status == 0 && lsn > node->checkpoint_lsn) {
		node->checkpoint_lsn = lsn;
		entries_prune_locked(node, lsn);
	}
	pthread_mutex_unlock(&node->mutex);
	if (status == 0 && lsn > 0)
		ps_journal_release(node->journal, lsn, NULL);
	checkpoint_finish(node, status, lsn);
}

static void
checkpoint_saved(void *arg, int status)
{
	ps_node *node = arg;
	if (status != 0) {
		rt_log(node->rt, RT_LOG_ERROR, "persistence",
			"checkpoint: saving dirty actors failed error=%s",
			rt_strerror(status));
		checkpoint_finish(node, PS_EIO, 0);
		return;
	}
	pthread_mutex_lock(&node->mutex);
	uint64_t lsn = checkpoint_bound_locked(node, node->checkpoint_target);
	if (lsn < node->checkpoint_lsn)
		lsn = node->checkpoint_lsn;
	node->checkpoint_commit = lsn;
	pthread_mutex_unlock(&node->mutex);
	if (lsn < ps_journal_durable_lsn(node->journal))
		rt_log(node->rt, RT_LOG_DEBUG, "persistence",
			"checkpoint held back to lsn=%" PRIu64
			" by actors without a snapshot", lsn);
	int rc = ps_store_checkpoint(node->store, lsn, checkpoint_committed,
		node);
	if (rc != 0)
		checkpoint_finish(node, rc, 0);
}

int
ps_node_checkpoint(ps_node *node, ps_checkpoint_callback cb, void *arg)
{
	ps__assert(node != NULL);
	pthread_mutex_lock(&node->mutex);
	if (node->checkpoint_running) {
		pthread_mutex_unlock(&node->mutex);
		return PS_EBUSY;
	}
	node->checkpoint_running = true;
	node->checkpoint_cb = cb;
	node->checkpoint_arg = arg;
	node->checkpoint_target = ps_journal_durable_lsn(node->journal);
	pthread_mutex_unlock(&node->mutex);
	int rc = rt_snapshot_dirty(node->rt, checkpoint_saved, node);
	if (rc != 0) {
		pthread_mutex_lock(&node->mutex);
		node->checkpoint_running = false;
		pthread_cond_broadcast(&node->checkpoint_done);
		pthread_mutex_unlock(&node->mutex);
		return rc == RT_EEXIST ? PS_EBUSY : PS_ESTOPPED;
	}
	return PS_OK;
}

typedef struct checkpoint_wait {
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	bool done;
	int status;
	uint64_t lsn;
} checkpoint_wait;

static void
checkpoint_wait_done(void *arg, int status, uint64_t lsn)
{
	checkpoint_wait *w = arg;
	pthread_mutex_lock(&w->mutex);
	w->done = true;
	w->status = status;
	w->lsn = lsn;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mutex);
}

int
ps_node_checkpoint_wait(ps_node *node, uint64_t *lsn_out)
{
	checkpoint_wait w = {.done = false};
	pthread_mutex_init(&w.mutex, NULL);
	pthread_cond_init(&w.cond, NULL);
	int rc = ps_node_checkpoint(node, checkpoint_wait_done, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mutex);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.mutex);
		rc = w.status;
		pthread_mutex_unlock(&w.mutex);
		if (lsn_out != NULL)
			*lsn_out = w.lsn;
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.mutex);
	return rc;
}

/* ---- open and close ------------------------------------------------------------- */

/* The keys of one of the node's address maps, copied under its mutex
 * (activation removes entries, and in real mode it runs on worker
 * threads concurrently with the caller's loop). NULL when out of memory;
 * the caller frees. */
static rt_addr *
addr_map_keys(ps_node *node, const ps__addr_map *map, size_t *count)
{
	pthread_mutex_lock(&node->mutex);
	size_t n = map->count;
	rt_addr *addrs = malloc((n ? n : 1) * sizeof *addrs);
	size_t k = 0;
	for (size_t i = 0; addrs != NULL && i < map->capacity; i++)
		if (map->slots[i].value != NULL)
			addrs[k++] = map->slots[i].key;
	pthread_mutex_unlock(&node->mutex);
	ps__assert(addrs == NULL || k == n);
	*count = k;
	return addrs;
}

static int
activate_recovered(ps_node *node)
{
	size_t k;
	rt_addr *addrs = addr_map_keys(node, &node->recovered, &k);
	if (addrs == NULL)
		return PS_ENOMEM;
	size_t elsewhere = 0;
	for (size_t i = 0; i < k; i++) {
		int rc = rt_activate(node->rt, addrs[i]);
		if (rc == RT_EUNAVAILABLE) {
			/* The cluster keeps it from waking here: its partition
			 * is owned by another node, or by this one while it
			 * holds no lease. The records stay until a hand-off
			 * exports or drops them, or ps_node_wake wakes it. */
			elsewhere++;
		} else if (rc != 0) {
			rt_log(node->rt, RT_LOG_ERROR, "persistence",
				"recovery cannot activate kind=%" PRIu32 " id=%" PRIu64
				" error=%s",
				addrs[i].kind, addrs[i].id, rt_strerror(rc));
		}
	}
	if (elsewhere > 0)
		rt_log(node->rt, RT_LOG_INFO, "persistence",
			"recovery left %zu actors asleep: their partitions are "
			"not served here now", elsewhere);
	free(addrs);
	return PS_OK;
}

/* Activates the actors whose committed snapshot owes effects (the
 * store's marks, read at open); those the cluster keeps from waking here
 * wait in the wake set for ps_node_wake. Errors are logged: the actors
 * before them are awake already, so the open goes on. */
static void
activate_owing(ps_node *node, const rt_addr *addrs, size_t n)
{
	size_t refused = 0;
	if (n > 0)
		sim_sometimes("persistence: actors owing effects woken at open");
	for (size_t i = 0; i < n; i++) {
		int rc = rt_activate(node->rt, addrs[i]);
		if (rc == RT_EUNAVAILABLE) {
			refused++;
			pthread_mutex_lock(&node->mutex);
			rc = ps__addr_map_put(&node->wake, addrs[i], node) == 0
				? 0 : RT_ENOMEM;
			pthread_mutex_unlock(&node->mutex);
		}
		if (rc != 0) {
			rt_log(node->rt, RT_LOG_ERROR, "persistence",
				"recovery cannot activate kind=%" PRIu32 " id=%" PRIu64
				" (owes effects) error=%s",
				addrs[i].kind, addrs[i].id, rt_strerror(rc));
		}
	}
	if (refused > 0)
		rt_log(node->rt, RT_LOG_INFO, "persistence",
			"recovery left %zu actors owing effects asleep: their "
			"partitions are not served here now", refused);
}

int
ps_node_wake_later(ps_node *node, rt_addr addr)
{
	ps__assert(node != NULL);
	pthread_mutex_lock(&node->mutex);
	int rc = ps__addr_map_put(&node->wake, addr, node);
	pthread_mutex_unlock(&node->mutex);
	return rc == 0 ? PS_OK : PS_ENOMEM;
}

/* Activates the actors ps_node_wake_later remembered; those the runtime
 * took leave the set, the others wait for the next wake. */
static int
activate_sleepers(ps_node *node)
{
	size_t k;
	rt_addr *addrs = addr_map_keys(node, &node->wake, &k);
	if (addrs == NULL)
		return PS_ENOMEM;
	for (size_t i = 0; i < k; i++) {
		if (rt_activate(node->rt, addrs[i]) != 0)
			continue;
		pthread_mutex_lock(&node->mutex);
		(void)ps__addr_map_remove(&node->wake, addrs[i]);
		pthread_mutex_unlock(&node->mutex);
	}
	free(addrs);
	return PS_OK;
}

int
ps_node_wake(ps_node *node)
{
	ps__assert(node != NULL);
	int rc = activate_recovered(node);
	int rc_sleepers = activate_sleepers(node);
	return rc != 0 ? rc : rc_sleepers;
}

static void
node_free(ps_node *node)
{
	for (size_t i = 0; i < node->recovered.capacity; i++)
		if (node->recovered.slots[i].value != NULL)
			recovered_free(node->recovered.slots[i].value);
	ps__addr_map_free(&node->recovered);
	ps__addr_map_free(&node->wake);
	for (size_t i = 0; i < node->actors.capacity; i++)
		free(node->actors.slots[i].value);
	ps__addr_map_free(&node->actors);
	free(node->entries_by_partition);
	free(node->recovered_by_partition);
	free(node->notices);
	pthread_cond_destroy(&node->checkpoint_done);
	pthread_mutex_destroy(&node->mutex);
	free(node);
}

int
ps_node_open(const char *data_dir, rt_runtime *rt, const ps_node_options *opts,
	ps_node_report *report, ps_node **out)
{
	ps__assert(data_dir != NULL);
	ps__assert(rt != NULL);
	ps__assert(out != NULL);
	ps_node_options defaults = {0};
	if (opts == NULL)
		opts = &defaults;
	ps_node_report scratch;
	if (report == NULL)
		report = &scratch;
	memset(report, 0, sizeof *report);
	if (strlen(data_dir) >= PS_PATH_BYTES_MAX - 128)
		return PS_EINVAL;
	ps_node *node = calloc(1, sizeof *node);
	if (node == NULL)
		return PS_ENOMEM;
	node->rt = rt;
	node->manual = opts->manual;
	node->on_load = opts->on_load;
	node->on_load_arg = opts->on_load_arg;
	node->owes = opts->owes;
	node->owes_arg = opts->owes_arg;
	pthread_mutex_init(&node->mutex, NULL);
	pthread_cond_init(&node->checkpoint_done, NULL);
	int rc = PS_ENOMEM;
	node->notices = calloc(NODE_NOTICES_MAX, sizeof *node->notices);
	node->entries_by_partition = calloc(PS_PARTITIONS,
		sizeof *node->entries_by_partition);
	node->recovered_by_partition = calloc(PS_PARTITIONS,
		sizeof *node->recovered_by_partition);
	if (node->notices == NULL || node->entries_by_partition == NULL ||
		node->recovered_by_partition == NULL)
		goto fail;
	for (uint32_t i = 0; i < NODE_NOTICES_MAX; i++) {
		node->notices[i].node = node;
		node->notices[i].next_free = i + 1 < NODE_NOTICES_MAX
			? &node->notices[i + 1] : NULL;
	}
	node->notices_free = &node->notices[0];
	char journal_dir[PS_PATH_BYTES_MAX], store_dir[PS_PATH_BYTES_MAX];
	snprintf(journal_dir, sizeof journal_dir, "%s/journal", data_dir);
	snprintf(store_dir, sizeof store_dir, "%s/snapshots", data_dir);
	const ps_disk *real = ps_disk_real();
	rc = real->ops->mkdir(real->ctx, data_dir);
	if (rc != 0)
		goto fail;

	ps_store_options so;
	ps_store_options_default(&so, store_dir);
	so.map_bytes = opts->map_bytes;
	so.wait_durable = wait_durable;
	so.wait_arg = node;
	so.log = node_log;
	so.log_arg = node;
	so.manual = opts->manual;
	rc = ps_store_open(&so, &node->store);
	if (rc != 0)
		goto fail;
	node->checkpoint_lsn = ps_store_checkpoint_lsn(node->store);
	report->checkpoint_lsn = node->checkpoint_lsn;

	ps_journal_options jo;
	ps_journal_options_default(&jo, journal_dir);
	jo.disk = opts->disk;
	jo.segment_bytes = opts->segment_bytes;
	jo.retry_interval_ms = opts->retry_interval_ms;
	jo.replay_from_lsn = node->checkpoint_lsn;
	jo.on_record = collect_record;
	jo.record_arg = node;
	jo.log = node_log;
	jo.log_arg = node;
	jo.manual = opts->manual;
	rc = ps_journal_open(&jo, &report->journal, &node->journal);
	if (rc != 0)
		goto fail_store;
	report->actors_recovered = node->recovered.count;
	report->records_recovered = report->journal.records_replayed;
	rt_log(rt, RT_LOG_INFO, "persistence",
		"recovered checkpoint_lsn=%" PRIu64 " last_lsn=%" PRIu64
		" records=%" PRIu64 " actors=%" PRIu64,
		node->checkpoint_lsn, report->journal.last_lsn,
		report->records_recovered, report->actors_recovered);
	/* Read before anything wakes: no put is queued yet. */
	rt_addr *owing;
	size_t owing_count;
	rc = ps_store_scan_owing(node->store, &owing, &owing_count);
	if (rc != 0)
		goto fail_journal;
	report->actors_owing = owing_count;
	rt_set_store(rt, &node_store_ops, node);
	/* Published before the wake-up: recovered actors append at once. */
	*out = node;
	rc = activate_recovered(node);
	if (rc != 0) {
		free(owing);
		goto fail_journal;
	}
	activate_owing(node, owing, owing_count);
	free(owing);
	return PS_OK;

fail_journal:
	*out = NULL;
	ps_journal_close(node->journal);
fail_store:
	ps_store_close(node->store);
fail:
	node_free(node);
	return rc;
}

/* ---- partition hand-off ------------------------------------------------------ */

typedef struct export_entry {
	rt_addr addr;
	recovered_actor *records; /* NULL once exported with its snapshot */
} export_entry;

typedef struct export_context {
	ps_node *node;
	ps_export_callback cb;
	void *arg;
	export_entry *entries; /* the partition's recovered actors */
	size_t count;
} export_context;

/* addr's latest state from its snapshot (or none: zeroed) and the
 * recovered records above lsn, encoded again, then cb. */
static int
export_rebuilt(export_context *c, rt_addr addr, uint64_t lsn,
	const void *state, size_t state_bytes, bool has_snapshot,
	recovered_actor *a)
{
	const rt_actor_ops *ops = rt_kind_ops(c->node->rt, addr.kind);
	if (ops == NULL || ops->apply_record == NULL ||
		ops->encode_state == NULL ||
		(has_snapshot && ops->decode_state == NULL))
		return PS_EINVAL;
	size_t bytes = (ops->state_size + 15u) & ~(size_t)15u;
	void *s = aligned_alloc(16, bytes ? bytes : 16);
	if (s == NULL)
		return PS_ENOMEM;
	memset(s, 0, bytes);
	int rc = has_snapshot ? ops->decode_state(s, state, state_bytes) : 0;
	uint64_t last = lsn;
	uint32_t applied = 0;
	if (rc == 0)
		rc = replay(c->node, a, ops, s, lsn, &last, &applied);
	rt_buffer out = {0};
	if (rc == 0)
		rc = ops->encode_state(s, &out);
	if (ops->free_state != NULL)
		ops->free_state(s);
	free(s);
	if (rc == 0)
		rc = c->cb(c->arg, addr, out.bytes, out.length);
	else
		rc = PS_ECORRUPT;
	rt_buffer_free(&out);
	return rc;
}

static bool
has_records_after(const recovered_actor *a, uint64_t lsn)
{
	return a != NULL && a->count > 0 && a->records[a->count - 1]->lsn > lsn;
}

static int
export_snapshot(void *arg, rt_addr addr, uint64_t lsn, const void *state,
	size_t state_bytes)
{
	export_context *c = arg;
	recovered_actor *a = NULL;
	for (size_t i = 0; i < c->count; i++)
		if (rt_addr_equal(c->entries[i].addr, addr)) {
			a = c->entries[i].records;
			c->entries[i].records = NULL;
			break;
		}
	if (has_records_after(a, lsn))
		return export_rebuilt(c, addr, lsn, state, state_bytes, true, a);
	return c->cb(c->arg, addr, state, state_bytes);
}

int
ps_node_export_partition(ps_node *node, uint32_t partition,
	ps_export_callback cb, void *arg)
{
	ps__assert(node != NULL);
	ps__assert(cb != NULL);
	if (partition >= PS_PARTITIONS)
		return PS_EINVAL;
	export_context c = {.node = node, .cb = cb, .arg = arg};
	/* The partition's actors are asleep and gated, so no activation
	 * takes these records while the export reads them. */
	pthread_mutex_lock(&node->mutex);
	uint32_t recovered_here = node->recovered_by_partition[partition];
	c.entries = malloc((recovered_here + 1) * sizeof *c.entries);
	for (size_t i = 0; c.entries != NULL && recovered_here > 0 &&
		i < node->recovered.capacity; i++) {
		const ps__addr_slot *slot = &node->recovered.slots[i];
		if (slot->value != NULL &&
			ps_partition_of(slot->key.id) == partition)
			c.entries[c.count++] = (export_entry){slot->key,
				slot->value};
	}
	pthread_mutex_unlock(&node->mutex);
	if (c.entries == NULL)
		return PS_ENOMEM;
	int rc = ps_store_scan_partition(node->store, partition,
		export_snapshot, &c);
	/* Actors with records and no snapshot at all. */
	for (size_t i = 0; rc == 0 && i < c.count; i++)
		if (c.entries[i].records != NULL)
			rc = export_rebuilt(&c, c.entries[i].addr, 0, NULL, 0,
				false, c.entries[i].records);
	free(c.entries);
	return rc;
}

int
ps_node_import_snapshot(ps_node *node, rt_addr addr, const void *state,
	size_t state_bytes)
{
	ps__assert(node != NULL);
	ps__assert(state != NULL || state_bytes == 0);
	pthread_mutex_lock(&node->mutex);
	/* Above every LSN handed out here: an earlier life's records of the
	 * actor on this node are never replayed over the imported state. */
	uint64_t lsn = ps_journal_last_lsn(node->journal);
	if (lsn < node->checkpoint_lsn)
		lsn = node->checkpoint_lsn;
	recovered_actor *stale = recovered_take_locked(node, addr);
	/* An entry left from an earlier life here moves up to the import;
	 * without one, the activation starts tracking at the snapshot's
	 * LSN (store_load), so later snapshots never go below it. */
	actor_entry *e = ps__addr_map_get(&node->actors, addr);
	if (e != NULL) {
		if (e->last_lsn < lsn)
			e->last_lsn = lsn;
		e->saved_lsn = e->last_lsn;
		e->first_unsaved_lsn = 0;
	}
	pthread_mutex_unlock(&node->mutex);
	if (stale != NULL)
		recovered_free(stale);
	return ps_store_put(node->store, addr, lsn, state, state_bytes);
}

/* Forgets the sleepers of partition (it lives elsewhere now). Node
 * mutex held. */
static int
wake_purge_locked(ps_node *node, uint32_t partition)
{
	size_t n = 0;
	rt_addr *addrs = malloc((node->wake.count + 1) * sizeof *addrs);
	if (addrs == NULL)
		return PS_ENOMEM;
	for (size_t i = 0; i < node->wake.capacity; i++)
		if (node->wake.slots[i].value != NULL &&
			ps_partition_of(node->wake.slots[i].key.id) == partition)
			addrs[n++] = node->wake.slots[i].key;
	for (size_t i = 0; i < n; i++)
		(void)ps__addr_map_remove(&node->wake, addrs[i]);
	free(addrs);
	return PS_OK;
}

int
ps_node_drop_partition(ps_node *node, uint32_t partition)
{
	ps__assert(node != NULL);
	if (partition >= PS_PARTITIONS)
		return PS_EINVAL;
	pthread_mutex_lock(&node->mutex);
	int rc = recovered_purge_locked(node, partition);
	if (rc == 0)
		rc = wake_purge_locked(node, partition);
	/* Bookkeeping of the partition's actors: gone with them. */
	while (rc == 0 && node->entries_by_partition[partition] != NULL)
		entry_remove_locked(node, node->entries_by_partition[partition]);
	pthread_mutex_unlock(&node->mutex);
	if (rc == 0)
		rc = ps_store_drop_partition(node->store, partition);
	if (rc == 0)
		rc = ps_journal_append(node->journal,
			rt_addr_make(RT_KIND_NONE, partition),
			PS__RECORD_DROP_PARTITION, NULL, 0, NULL, NULL, NULL);
	return rc;
}

ps_journal *
ps_node_journal(ps_node *node)
{
	return node->journal;
}

ps_store *
ps_node_store(ps_node *node)
{
	return node->store;
}

void
ps_node_get_stats(ps_node *node, ps_node_stats *out)
{
	pthread_mutex_lock(&node->mutex);
	*out = node->stats;
	pthread_mutex_unlock(&node->mutex);
}

/* After the journal's close, which delivers its last notices. */
static void
log_dropped_while_stopped(ps_node *node)
{
	if (node->notices_dropped_stopped > 1)
		rt_log(node->rt, RT_LOG_WARN, "persistence",
			"durable notices dropped while the runtime stopped: %" PRIu64
			" (the first logged above)",
			node->notices_dropped_stopped);
}

void
ps_node_close(ps_node *node)
{
	if (node == NULL)
		return;
	if (node->manual) {
		/* No thread finishes a checkpoint here: its marker, if any, is
		 * queued in the store, and the pumps below complete it. Every
		 * record first, so every queued put can commit. */
		while (ps_journal_pump(node->journal) != PS_PUMP_IDLE)
			continue;
		ps_store_flush(node->store);
		ps__assert(!node->checkpoint_running);
		ps_journal_close(node->journal);
		log_dropped_while_stopped(node);
		ps_store_close(node->store);
		node_free(node);
		return;
	}
	pthread_mutex_lock(&node->mutex);
	while (node->checkpoint_running)
		pthread_cond_wait(&node->checkpoint_done, &node->mutex);
	pthread_mutex_unlock(&node->mutex);
	/* The store first: its queued puts wait on journal records, which the
	 * still-running journal makes durable; then the journal syncs and
	 * stops. */
	ps_store_flush(node->store);
	ps_journal_close(node->journal);
	log_dropped_while_stopped(node);
	ps_store_close(node->store);
	node_free(node);
}

void
ps_node_crash(ps_node *node)
{
	if (node == NULL)
		return;
	ps__assert(node->manual);
	ps_journal_abandon(node->journal);
	ps_store_abandon(node->store);
	node_free(node);
}
