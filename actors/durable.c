/*
 * actors/durable.c — the glue between the social core's actors and the
 * journal: append a record and get an ACTORS_T_DURABLE notice back, or
 * (no store) get the notice at once from a local sequence.
 *
 * Invariants: every journal call and every barrier yields exactly one
 * notice to the actor (unless the append itself failed, which is
 * returned); notices carry the caller's cookie unchanged.
 *
 * Effects: actors__outbox_run sends what an outbox owes and keeps a
 * redrive timer while anything stays unconfirmed; each firing re-sends
 * every unconfirmed effect, in order, until its target confirms (targets
 * apply duplicates idempotently, so a slow confirmation costs a
 * duplicate, never a double application).
 *
 * Deferred acknowledgements: a follower's copy of another actor's
 * journaled event (a post in a home timeline) is applied in memory and
 * acknowledged only once a checkpoint that started after it committed.
 * Copies add (source, key, follower) to striped lists; a checkpoint
 * seals everything added so far, and when it commits, the node sends
 * each source one ACTORS_T_PUSH_ACKS per key (chunks of
 * ACTORS_ACK_IDS_PER_MESSAGE followers). Why that is enough: the
 * follower marked itself dirty before adding its entry, so the
 * checkpoint's walk (which starts after the seal) saves it, or a save
 * since (passivation, another pass) queued its snapshot before the
 * checkpoint's commit marker. The first entry after a quiet spell arms
 * a timer (to the actor that added it) ACTORS_ACK_CHECKPOINT_MS ahead,
 * and the checkpoint starts when it fires: a follower that gets many
 * posts meanwhile is snapshotted once for all of them. At most one runs;
 * a failed one puts its entries back and the timer is armed again. A
 * timer that never fires (its actor went, or its partition moved to
 * another node) is armed again by the first entry after
 * ACTORS_ACK_KICK_STALE_MS.
 *
 * What it deliberately does not do: decide what a record means (the
 * kinds do), retry a failed journal (persistence does).
 */
#include "actors/internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "persistence/persistence.h"

static int
notice_now(api *a, rt_actor *self, const actors__cookie *cookie,
	uint64_t lsn)
{
	ps_durable_notice n;
	memset(&n, 0, sizeof n);
	n.lsn = lsn;
	n.status = 0;
	n.cookie_bytes = sizeof *cookie;
	memcpy(n.cookie, cookie, sizeof *cookie);
	(void)a;
	int rc = rt_send_copy(self, rt_self(self), ACTORS_T_DURABLE, &n,
		sizeof n);
	return rc == 0 ? API_OK : API_EUNAVAILABLE;
}

int
actors__journal(api *a, rt_actor *self, uint32_t record_type,
	const void *payload, size_t length, const actors__cookie *cookie,
	uint64_t *lsn_out)
{
	ACTORS_ASSERT(a != NULL);
	ACTORS_ASSERT(cookie != NULL);
	if (a->store == NULL) {
		uint64_t lsn = atomic_fetch_add(&a->local_sequence, 1) + 1;
		*lsn_out = lsn;
		return notice_now(a, self, cookie, lsn);
	}
	int rc = ps_node_append_notify(a->store, rt_self(self), record_type,
		payload, length, rt_self(self), ACTORS_T_DURABLE, cookie,
		sizeof *cookie, lsn_out);
	if (rc != 0) {
		rt_log(a->rt, RT_LOG_WARN, "actors",
			"journal append failed: %s", ps_strerror(rc));
		return API_EUNAVAILABLE;
	}
	return API_OK;
}

int
actors__journal_quiet(api *a, rt_actor *self, uint32_t record_type,
	const void *payload, size_t length, uint64_t *lsn_out)
{
	ACTORS_ASSERT(a != NULL);
	if (a->store == NULL) {
		*lsn_out = atomic_fetch_add(&a->local_sequence, 1) + 1;
		return API_OK;
	}
	int rc = ps_node_append(a->store, rt_self(self), record_type, payload,
		length, NULL, NULL, lsn_out);
	if (rc != 0) {
		rt_log(a->rt, RT_LOG_WARN, "actors",
			"journal append failed: %s", ps_strerror(rc));
		return API_EUNAVAILABLE;
	}
	return API_OK;
}

int
actors__barrier(api *a, rt_actor *self, const actors__cookie *cookie)
{
	if (a->store == NULL)
		return notice_now(a, self, cookie, 0);
	int rc = ps_node_barrier_notify(a->store, rt_self(self),
		ACTORS_T_DURABLE, cookie, sizeof *cookie);
	return rc == 0 ? API_OK : API_EUNAVAILABLE;
}

int
actors__notice_code(int status)
{
	if (status == 0)
		return API_OK;
	if (status == PS_EFULL || status == PS_ESTOPPED)
		return API_EUNAVAILABLE;
	return API_EINTERNAL;
}

void
actors__redrive_arm(api *a, rt_actor *self, bool *armed)
{
	if (*armed)
		return;
	if (rt_timer_start(a->rt, rt_self(self), ACTORS_T_REDRIVE, NULL, 0,
		    ACTORS_REDRIVE_MS, 0, NULL) == 0)
		*armed = true;
}

void
actors__passivate_owing(api *a, rt_actor *self, bool owes)
{
	if (!owes || a == NULL || a->store == NULL)
		return;
	if (ps_node_wake_later(a->store, rt_self(self)) != 0)
		rt_log(a->rt, RT_LOG_WARN, "actors",
			"an actor owing effects sleeps unremembered: a message "
			"to it sends them");
}

void
actors__outbox_run(api *a, rt_actor *self, ps_outbox *o, uint64_t lsn,
	bool *armed)
{
	(void)ps_outbox_send(self, o, lsn, ACTORS_T_EFFECT_CONFIRM);
	const ps_effect *effects;
	if (ps_outbox_pending(o, &effects) > 0)
		actors__redrive_arm(a, self, armed);
}

void
actors__outbox_redrive(api *a, rt_actor *self, ps_outbox *o, uint64_t lsn,
	bool *armed)
{
	*armed = false;
	const ps_effect *effects;
	if (ps_outbox_pending(o, &effects) == 0)
		return;
	ps_outbox_reset_sent(o);
	actors__outbox_run(a, self, o, lsn, armed);
}

/* ---- deferred acknowledgements ---------------------------------------- */

/* Lists copies are added to: each thread adds to its own (threads
 * numbered as they first add, modulo this), so the workers of a fan-out,
 * adding one entry per message each, do not meet on a lock and each
 * keeps its list's lock and tail in its own cache. */
#define ACKS_STRIPES 16u
/* Entries a stripe keeps room for once sealed (96 KiB): a fan-out
 * burst grows one to hundreds of thousands, and kept, that room stayed
 * taken until the node closed. */
#define ACKS_STRIPE_CAPACITY_KEPT 4096u

static atomic_uint acks_threads;
static _Thread_local uint32_t acks_stripe_plus_one;

static uint32_t
acks_stripe(void)
{
	if (acks_stripe_plus_one == 0)
		acks_stripe_plus_one = atomic_fetch_add_explicit(&acks_threads,
			1, memory_order_relaxed) % ACKS_STRIPES + 1u;
	return acks_stripe_plus_one - 1u;
}

typedef struct owed_ack {
	uint64_t source;
	uint64_t key;
	uint64_t follower;
} owed_ack;

typedef struct ack_list {
	atomic_bool held; /* stripes only: stripe_take / stripe_drop */
	owed_ack *v;
	uint32_t count;
	uint32_t capacity;
} ack_list;

/* A stripe's lock: held for one append by the thread the stripe is
 * numbered for, or by a seal moving the list, so rarely contended; a
 * waiter spins, yielding now and then. A pthread mutex's lock and
 * unlock were 60 instructions per follower of a fan-out (callgrind). */
#define ACKS_STRIPE_SPINS_PER_YIELD 64u

static void
stripe_take(ack_list *l)
{
	uint32_t spins = 0;
	while (atomic_exchange_explicit(&l->held, true, memory_order_acquire))
		while (atomic_load_explicit(&l->held, memory_order_relaxed))
			if (++spins % ACKS_STRIPE_SPINS_PER_YIELD == 0)
				sched_yield();
}

static void
stripe_drop(ack_list *l)
{
	ACTORS_ASSERT(atomic_load_explicit(&l->held, memory_order_relaxed));
	atomic_store_explicit(&l->held, false, memory_order_release);
}

typedef struct actors__acks {
	api *a;
	ack_list stripes[ACKS_STRIPES];
	pthread_mutex_t lock; /* guards the fields below */
	ack_list sealed;      /* the running checkpoint's entries */
	/* Written under lock; read without it by actors__ack_after_checkpoint
	 * (see there why a stale value is harmless). */
	atomic_bool running;
	atomic_bool kick_armed;
	_Atomic uint64_t kick_armed_ms; /* runtime clock when it was armed */
} actors__acks;

/* Armed and not yet stale (ACTORS_ACK_KICK_STALE_MS); the clock is
 * read only when armed, and a fan-out asks once per follower: the
 * worker's coarse clock (a clock_gettime per follower was 5% of a
 * fan-out's CPU), which may read below the precise arming time. */
static bool
kick_pending(actors__acks *k)
{
	if (!atomic_load_explicit(&k->kick_armed, memory_order_relaxed))
		return false;
	uint64_t now = rt_now_coarse_ms(k->a->rt);
	uint64_t armed = atomic_load_explicit(&k->kick_armed_ms,
		memory_order_relaxed);
	return now < armed || now - armed < ACTORS_ACK_KICK_STALE_MS;
}

static int
list_append(ack_list *l, const owed_ack *items, uint32_t n)
{
	if (n > UINT32_MAX - l->count)
		return -1;
	if (l->count + n > l->capacity) {
		uint64_t capacity = l->capacity ? l->capacity : 64u;
		while (capacity < (uint64_t)l->count + n)
			capacity *= 2u;
		if (capacity > UINT32_MAX)
			return -1;
		owed_ack *v = realloc(l->v, (size_t)capacity * sizeof *v);
		if (v == NULL)
			return -1;
		l->v = v;
		l->capacity = (uint32_t)capacity;
	}
	memcpy(l->v + l->count, items, n * sizeof *items);
	l->count += n;
	return 0;
}

static actors__acks *
acks_get(api *a)
{
	actors__acks *k = atomic_load_explicit(&a->acks, memory_order_acquire);
	if (k != NULL)
		return k;
	k = calloc(1, sizeof *k);
	if (k == NULL)
		return NULL;
	k->a = a;
	pthread_mutex_init(&k->lock, NULL);
	actors__acks *expected = NULL;
	if (atomic_compare_exchange_strong(&a->acks, &expected, k))
		return k;
	pthread_mutex_destroy(&k->lock);
	free(k);
	return expected;
}

/* Under k->lock: moves every stripe's entries to sealed. Returns false
 * when out of memory (what did not move stays for the next one). */
static bool
acks_seal_locked(actors__acks *k)
{
	bool ok = true;
	for (uint32_t i = 0; i < ACKS_STRIPES; i++) {
		ack_list *l = &k->stripes[i];
		stripe_take(l);
		if (l->count > 0 && list_append(&k->sealed, l->v, l->count) == 0)
			l->count = 0;
		else if (l->count > 0)
			ok = false;
		if (l->count == 0 && l->capacity > ACKS_STRIPE_CAPACITY_KEPT) {
			/* A burst's room goes back; the stripe grows again
			 * by doubling if the next one comes. */
			free(l->v);
			l->v = NULL;
			l->capacity = 0;
		}
		stripe_drop(l);
	}
	return ok;
}

static bool
acks_waiting(actors__acks *k)
{
	bool waiting = false;
	for (uint32_t i = 0; i < ACKS_STRIPES && !waiting; i++) {
		stripe_take(&k->stripes[i]);
		waiting = k->stripes[i].count > 0;
		stripe_drop(&k->stripes[i]);
	}
	return waiting;
}

static int
by_source_key_follower(const void *x, const void *y)
{
	const owed_ack *a = x, *b = y;
	if (a->source != b->source)
		return a->source < b->source ? -1 : 1;
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return a->follower < b->follower ? -1 : (a->follower > b->follower);
}

/* Sends the acknowledgements of committed entries (v sorted here). A
 * message that cannot go is dropped: its source's redrive asks again. */
static void
acks_send(api *a, owed_ack *v, uint32_t n)
{
	qsort(v, n, sizeof *v, by_source_key_follower);
	uint32_t i = 0;
	while (i < n) {
		uint32_t end = i;
		uint32_t distinct = 0;
		while (end < n && v[end].source == v[i].source &&
			v[end].key == v[i].key &&
			distinct < ACTORS_ACK_IDS_PER_MESSAGE) {
			if (end == i || v[end].follower != v[end - 1].follower)
				distinct++;
			end++;
		}
		/* end may stop on a duplicate's second entry: harmless. */
		uint32_t size = 12u + 8u * distinct;
		rt_message *m = rt_message_alloc(a->rt, ACTORS_T_PUSH_ACKS, size);
		if (m != NULL) {
			wire_writer w = {m->payload, 0, size, false};
			wire_u64(&w, v[i].key);
			wire_u32(&w, distinct);
			for (uint32_t j = i; j < end; j++)
				if (j == i || v[j].follower != v[j - 1].follower)
					wire_u64(&w, v[j].follower);
			ACTORS_ASSERT(!w.failed && w.length == size);
			(void)rt_send_external(a->rt,
				rt_addr_make(ACTORS_KIND_USER, v[i].source), m);
		}
		i = end;
	}
}

static void acks_kick_at(actors__acks *k, rt_addr where);

static void
acks_checkpoint_done(void *arg, int status, uint64_t lsn)
{
	actors__acks *k = arg;
	api *a = k->a;
	(void)lsn;
	pthread_mutex_lock(&k->lock);
	ack_list done = k->sealed;
	memset(&k->sealed, 0, sizeof k->sealed);
	k->running = false;
	rt_addr where = rt_addr_make(ACTORS_KIND_USER,
		done.count > 0 ? done.v[0].follower : 0);
	if (status != 0 && done.count > 0) {
		ack_list *l = &k->stripes[0];
		stripe_take(l);
		if (list_append(l, done.v, done.count) != 0)
			rt_log(a->rt, RT_LOG_WARN, "actors",
				"deferred acknowledgements dropped (re-sent "
				"later): out of memory");
		stripe_drop(l);
	}
	pthread_mutex_unlock(&k->lock);
	if (status == 0)
		acks_send(a, done.v, done.count);
	else
		rt_log(a->rt, RT_LOG_WARN, "actors",
			"checkpoint for acknowledgements failed: %s",
			ps_strerror(status));
	free(done.v);
	if (where.id != 0 && acks_waiting(k))
		acks_kick_at(k, where);
}

/* Under k->lock: arms the ACTORS_T_ACK_KICK timer to `where` (an actor
 * of the user kind) unless it or a checkpoint is already on its way. */
static void
acks_arm_locked(actors__acks *k, rt_addr where)
{
	if (k->running || kick_pending(k) || where.id == 0)
		return;
	if (rt_timer_start(k->a->rt, where, ACTORS_T_ACK_KICK, NULL, 0,
		    ACTORS_ACK_CHECKPOINT_MS, 0, NULL) == 0) {
		atomic_store_explicit(&k->kick_armed_ms, rt_now_ms(k->a->rt),
			memory_order_relaxed);
		k->kick_armed = true;
	}
}

static void
acks_kick_at(actors__acks *k, rt_addr where)
{
	pthread_mutex_lock(&k->lock);
	acks_arm_locked(k, where);
	pthread_mutex_unlock(&k->lock);
}

/* The timer fired: seals what was gathered and starts its checkpoint. */
static void
acks_checkpoint_start(actors__acks *k, rt_addr where)
{
	api *a = k->a;
	pthread_mutex_lock(&k->lock);
	k->kick_armed = false;
	if (k->running) {
		pthread_mutex_unlock(&k->lock);
		return;
	}
	(void)acks_seal_locked(k);
	if (k->sealed.count == 0) {
		pthread_mutex_unlock(&k->lock);
		return;
	}
	k->running = true;
	pthread_mutex_unlock(&k->lock);
	int rc = ps_node_checkpoint(a->store, acks_checkpoint_done, k);
	if (rc == 0)
		return;
	/* Another checkpoint runs (or the node stops): try again later. */
	pthread_mutex_lock(&k->lock);
	ack_list *l = &k->stripes[0];
	stripe_take(l);
	if (list_append(l, k->sealed.v, k->sealed.count) != 0)
		rt_log(a->rt, RT_LOG_WARN, "actors",
			"deferred acknowledgements dropped (re-sent later): "
			"out of memory");
	stripe_drop(l);
	k->sealed.count = 0;
	k->running = false;
	if (rc != PS_ESTOPPED)
		acks_arm_locked(k, where);
	pthread_mutex_unlock(&k->lock);
}

int
actors__ack_after_checkpoint(api *a, rt_actor *self, uint64_t source,
	uint64_t key)
{
	ACTORS_ASSERT(a->store != NULL);
	actors__acks *k = acks_get(a);
	if (k == NULL)
		return API_EUNAVAILABLE;
	uint64_t follower = rt_self(self).id;
	owed_ack e = {source, key, follower};
	ack_list *l = &k->stripes[acks_stripe()];
	stripe_take(l);
	int rc = 0;
	if (l->count < l->capacity) /* one per follower: no memcpy call */
		l->v[l->count++] = e;
	else
		rc = list_append(l, &e, 1);
	stripe_drop(l);
	if (rc != 0)
		return API_EUNAVAILABLE;
	/* A timer on its way or a checkpoint running takes this entry, so
	 * the global lock is not taken once per follower of a fan-out. A
	 * stale true is harmless: each store of false (under k->lock) comes
	 * before that side's next pass over the stripe locks (the seal, or
	 * acks_waiting after a checkpoint), so either that pass finds this
	 * entry or the stripe lock taken above ordered the store before this
	 * load, which then reads false and arms. */
	if (kick_pending(k) ||
		atomic_load_explicit(&k->running, memory_order_relaxed))
		return API_OK;
	acks_kick_at(k, rt_self(self));
	return API_OK;
}

void
actors__acks_kick(api *a, rt_actor *self)
{
	actors__acks *k = atomic_load_explicit(&a->acks, memory_order_acquire);
	if (k == NULL)
		return;
	acks_checkpoint_start(k, rt_self(self));
}

void
actors__acks_destroy(api *a)
{
	actors__acks *k = atomic_exchange(&a->acks, NULL);
	if (k == NULL)
		return;
	for (uint32_t i = 0; i < ACKS_STRIPES; i++)
		free(k->stripes[i].v);
	free(k->sealed.v);
	pthread_mutex_destroy(&k->lock);
	free(k);
}
