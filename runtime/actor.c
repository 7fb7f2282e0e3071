/*
 * actor.c — one turn of one actor, and the actor's life cycle.
 *
 * Role: a turn activates the actor if needed (store load or fresh zeroed
 * state, then on_activate), drains at most RT_TURN_MESSAGES_MAX messages
 * from its mailbox, then retires them from `pending` and re-queues the
 * actor if more arrived. Passivation (idle sweep, memory budget, the
 * actor's own request) runs at the end of a turn whose mailbox is empty:
 * on_passivate, store save, then -- under the shard lock -- removal only
 * if no message arrived meanwhile. If one did, the actor stays in the
 * registry, drops its state and is re-activated (re-loaded from the
 * store) on its next turn: no message is lost and the state seen is the
 * one just saved.
 *
 * Invariants: a turn runs with w->current == the actor, on one thread
 * (the scheduler hands an actor to one worker at a time); the LOADED flag
 * changes only inside a turn; an actor leaves the registry only here
 * (or at stop/destroy, when no other thread runs).
 * Does not: choose which actor runs (scheduler.c), or deliver (send.c).
 */
#include "runtime/internal.h"

uint32_t
rt__now_relative_ms(rt_runtime *rt)
{
	if (rt->cfg.deterministic)
		return (uint32_t)rt->virtual_ms;
	return (uint32_t)(rt__clock_coarse_ms() - rt->start_ms);
}

static inline rt_addr
actor_addr(const rt_actor *a)
{
	return rt_addr_make(rt__actor_kind(a), a->id);
}

static inline size_t
actor_bytes(const rt_runtime *rt, const rt_actor *a)
{
	return rt->kinds[rt__actor_kind(a)].actor_bytes;
}

/* Takes every message pushed onto a's stack, oldest first (the stack is
 * newest first; reversing keeps each sender's order), or NULL. */
static rt_message *
mailbox_take(rt_actor *a)
{
	if (rt__actor_newest(a) == NULL)
		return NULL;
	/* Clears the pointer and keeps the kind and shared flags. */
	rt_message *s = (rt_message *)(uintptr_t)(atomic_fetch_and_explicit(
		&a->mailbox, ~RT_ACTOR_POINTER_MASK, memory_order_acquire) &
		RT_ACTOR_POINTER_MASK);
	rt_message *fifo = NULL;
	while (s != NULL) {
		rt_message *next = s->next;
		s->next = fifo;
		fifo = s;
		s = next;
	}
	return fifo;
}

/* Actor context: the FIFO a's last turn left in the deferred table
 * (RT_ACTOR_DEFERRED), or NULL. Those messages are older than any on
 * the stack. */
static __attribute__((noinline)) rt_message *
deferred_take_slow(rt_runtime *rt, rt_actor *a)
{
	rt__actor_local_clear(a, RT_ACTOR_DEFERRED);
	pthread_mutex_lock(&rt->deferred_lock);
	rt_message *fifo = rt__map_remove(&rt->deferred, (uint64_t)(uintptr_t)a);
	pthread_mutex_unlock(&rt->deferred_lock);
	RT_ASSERT(fifo != NULL);
	return fifo;
}

static inline rt_message *
deferred_take(rt_runtime *rt, rt_actor *a)
{
	if (RT_LIKELY(!(rt__actor_local(a) & RT_ACTOR_DEFERRED)))
		return NULL;
	return deferred_take_slow(rt, a);
}

/* Actor context, end of a turn that yielded with fifo (not NULL) still
 * to handle: keeps it for a's next turn. False when the table could
 * not grow (the caller handles the rest now, past the turn's bound,
 * rather than lose them). */
static bool
deferred_put(rt_runtime *rt, rt_actor *a, rt_message *fifo)
{
	RT_ASSERT(fifo != NULL);
	RT_ASSERT(!(rt__actor_local(a) & RT_ACTOR_DEFERRED));
	pthread_mutex_lock(&rt->deferred_lock);
	int rc = rt__map_put(&rt->deferred, (uint64_t)(uintptr_t)a, fifo);
	pthread_mutex_unlock(&rt->deferred_lock);
	if (rc != 0)
		return false;
	rt__actor_local_set(a, RT_ACTOR_DEFERRED);
	return true;
}

static bool
mailbox_empty(rt_actor *a)
{
	return !(rt__actor_local(a) & RT_ACTOR_DEFERRED) &&
		(atomic_load_explicit(&a->mailbox, memory_order_acquire) &
			RT_ACTOR_POINTER_MASK) == 0;
}

static void
trace_message(rt_runtime *rt, const rt_message *m)
{
	/* FNV-1a over receiver, sender, type and payload. */
	uint64_t h = rt->trace_hash;
	const uint64_t prime = 0x100000001b3ull;
	uint64_t words[5] = {m->to.kind, m->to.id, m->from.kind, m->from.id,
		m->type};
	const unsigned char *p = (const unsigned char *)words;
	for (size_t i = 0; i < sizeof words; i++)
		h = (h ^ p[i]) * prime;
	for (uint32_t i = 0; i < m->size; i++)
		h = (h ^ m->payload[i]) * prime;
	rt->trace_hash = h;
}

static void
actor_load(rt_worker *w, rt_actor *a, const rt__kind *k)
{
	rt_runtime *rt = w->rt;
	const rt_actor_ops *ops = k->ops;
	int rc = RT_ENOTFOUND;
	/* Activation leaves the state as the slab had it (send.c). */
	memset(a->state, 0, ops->state_size);
	if (rt->has_store)
		rc = rt->store.load(rt->store_arg, actor_addr(a), ops, a->state);
	bool fresh = rc == RT_ENOTFOUND;
	if (fresh) {
		if (rt->has_store) /* a load that found nothing may have written */
			memset(a->state, 0, ops->state_size);
		rc = 0;
	}
	if (rc == 0 && ops->on_activate != NULL)
		rc = ops->on_activate(a, a->state, fresh);
	if (rc != 0) {
		rt_log(rt, RT_LOG_ERROR, "runtime",
			"activation failed kind=%s id=%llu code=%s", ops->name,
			(unsigned long long)a->id, rt_strerror(rc));
		if (ops->free_state != NULL)
			ops->free_state(a->state);
		memset(a->state, 0, ops->state_size);
		rt__actor_local_set(a, RT_ACTOR_FAILED);
		return;
	}
	rt__actor_shared_set(a, RT_ACTOR_LOADED);
	rt__count_activated(rt);
}

static void
snapshot_release(rt_runtime *rt)
{
	if (atomic_fetch_sub_explicit(&rt->snapshot_outstanding, 1,
		memory_order_acq_rel) != 1)
		return;
	rt_snapshot_done_callback done = rt->snapshot_done;
	void *arg = rt->snapshot_arg;
	int status = atomic_load_explicit(&rt->snapshot_status,
		memory_order_acquire);
	atomic_store_explicit(&rt->snapshot_running, false, memory_order_release);
	if (done != NULL)
		done(arg, status);
}

static void snapshot_turn_done(rt_runtime *rt);

static void
actor_save_dirty(rt_runtime *rt, rt_actor *a, const rt__kind *k)
{
	uint8_t flags = rt__actor_shared(a);
	if (!(flags & RT_ACTOR_LOADED) || !(flags & RT_ACTOR_DIRTY))
		return;
	rt__actor_shared_clear(a, RT_ACTOR_DIRTY);
	if (!rt->has_store)
		return;
	int rc = rt->store.save(rt->store_arg, actor_addr(a), k->ops, a->state);
	if (rc != 0) {
		rt__actor_shared_set(a, RT_ACTOR_DIRTY);
		int expected = 0;
		atomic_compare_exchange_strong(&rt->snapshot_status, &expected, rc);
	}
}

static void
handle_internal(rt_worker *w, rt_actor *a, const rt__kind *k,
	const rt_message *m)
{
	switch (m->type) {
	case RT_TYPE_INTERNAL_PASSIVATE:
		rt__actor_shared_clear(a, RT_ACTOR_EVICTING);
		rt__actor_local_set(a, RT_ACTOR_WANT_PASSIVATE);
		break;
	case RT_TYPE_INTERNAL_SNAPSHOT:
		actor_save_dirty(w->rt, a, k);
		snapshot_turn_done(w->rt);
		break;
	case RT_TYPE_INTERNAL_EVICT: {
		rt__pass *pass;
		RT_ASSERT(m->size == sizeof pass);
		memcpy(&pass, m->payload, sizeof pass);
		RT_ASSERT(w->evict_count < RT_PASSIVATE_PASSES_MAX);
		w->evict_passes[w->evict_count++] = pass;
		break;
	}
	default:
		RT_ASSERT(!"unknown internal message");
	}
}

/* The actor could not be activated: asks get RT_TYPE_UNDELIVERABLE. */
static void
fail_message(rt_worker *w, rt_actor *a, const rt_message *m)
{
	if (m->correlation == 0 || (m->flags & (RT_MESSAGE_F_REPLY |
		RT_MESSAGE_F_TIMEOUT)))
		return;
	rt_message *r = rt__message_new(w->rt, RT_TYPE_UNDELIVERABLE,
		sizeof(int32_t));
	if (r == NULL)
		return;
	int32_t code = RT_EUNAVAILABLE;
	memcpy(r->payload, &code, sizeof code);
	(void)rt_reply(a, m, r);
}

/* Inline: the turn's loop calls it per message. */
static inline __attribute__((always_inline)) void
handle(rt_worker *w, rt_actor *a, const rt__kind *k, rt_message *m)
{
	rt_runtime *rt = w->rt;
	if (RT_UNLIKELY(m->flags & RT_MESSAGE_F_INTERNAL)) {
		handle_internal(w, a, k, m);
	} else if (RT_UNLIKELY(rt__actor_local(a) & RT_ACTOR_FAILED)) {
		fail_message(w, a, m);
	} else {
		if (rt->cfg.deterministic)
			trace_message(rt, m);
		w->current_message = m;
		k->ops->on_message(a, a->state, m);
		w->current_message = NULL;
	}
	rt_message_free(rt, m);
}

/* Retires `processed` units and re-queues the actor if more are due. */
static void
turn_retire(rt_worker *w, rt_actor *a, int processed)
{
	int old = atomic_fetch_sub_explicit(&a->pending, processed,
		memory_order_acq_rel);
	/* old < processed happens when a message was taken before its
	 * sender's increment landed: that sender sees a non-zero count and
	 * does not schedule, and the count settles at zero. */
	if (old - processed > 0)
		rt__reschedule(w, a);
}

static void
free_list(rt_runtime *rt, rt_message *m)
{
	while (m != NULL) {
		rt_message *next = m->next;
		rt_message_free(rt, m);
		m = next;
	}
}

static void
actor_free(rt_runtime *rt, rt_actor *a)
{
	free_list(rt, deferred_take(rt, a));
	free_list(rt, mailbox_take(a));
	size_t bytes = actor_bytes(rt, a);
	rt__counters *c = rt__counters_here(rt);
	rt__count(c, &c->actors_active, -1);
	rt__count(c, &c->bytes_actors, -(long long)rt__alloc_size(bytes));
	rt__free(rt, a, bytes);
}

static void
actor_passivate(rt_worker *w, rt_actor *a, const rt__kind *k, int processed)
{
	rt_runtime *rt = w->rt;
	const rt_actor_ops *ops = k->ops;
	bool loaded = rt__actor_shared(a) & RT_ACTOR_LOADED;
	if (loaded) {
		w->current = a;
		if (ops->on_passivate != NULL)
			ops->on_passivate(a, a->state);
		int rc = rt->has_store ? rt->store.save(rt->store_arg,
			actor_addr(a), ops, a->state) : 0;
		w->current = NULL;
		if (rc != 0) {
			/* Keep the state rather than lose it; try again later. */
			rt_log(rt, RT_LOG_ERROR, "runtime",
				"passivation save failed kind=%s id=%llu code=%s",
				ops->name, (unsigned long long)a->id, rt_strerror(rc));
			rt__actor_local_clear(a, RT_ACTOR_WANT_PASSIVATE);
			turn_retire(w, a, processed);
			return;
		}
		rt__actor_shared_clear(a, RT_ACTOR_DIRTY);
	}
	uint64_t hash = rt__addr_hash(rt__actor_kind(a), a->id);
	rt__shard *s = rt__registry_shard(&rt->registry, hash);
	rt__spin_lock(&s->lock);
	int remaining = atomic_fetch_sub_explicit(&a->pending, processed,
		memory_order_acq_rel) - processed;
	RT_ASSERT(remaining >= 0);
	if (remaining == 0)
		rt__registry_remove(s, hash, a);
	rt__spin_unlock(&s->lock);
	if (loaded && ops->free_state != NULL)
		ops->free_state(a->state);
	if (loaded)
		rt__count_passivated(rt);
	if (remaining == 0) {
		actor_free(rt, a);
		return;
	}
	/* A message arrived during passivation: the actor was saved and is
	 * now re-activated from the store on its next turn. */
	memset(a->state, 0, ops->state_size);
	rt__actor_shared_clear(a, RT_ACTOR_LOADED);
	rt__actor_local_clear(a, (RT_ACTOR_WANT_PASSIVATE | RT_ACTOR_FAILED));
	rt__reschedule(w, a);
}

/* Under a's shard lock: queues one eviction request of pass. */
static bool
push_evict_locked(rt_runtime *rt, rt_actor *a, rt__pass *pass)
{
	rt_message *m = rt__message_new(rt, RT_TYPE_INTERNAL_EVICT,
		sizeof pass);
	if (m == NULL)
		return false;
	memcpy(m->payload, &pass, sizeof pass);
	bool schedule = false;
	rt__push_internal_locked(rt, a, m, &schedule);
	if (schedule)
		rt__schedule(rt, a);
	return true;
}

/*
 * The end of a turn that took rt_passivate_where requests: save and
 * free the actor once nothing is left in its mailbox. If messages raced
 * in during the save, the actor stays, re-loads what was just saved on
 * its next turn (as actor_passivate does), handles them, and the
 * requests are queued again behind them. A failed save is reported to
 * the passes and the actor is freed anyway: a partition that moves must
 * not leave an active copy behind (the store keeps the last good state).
 */
static void
actor_evict(rt_worker *w, rt_actor *a, const rt__kind *k, int processed)
{
	rt_runtime *rt = w->rt;
	uint32_t count = w->evict_count;
	rt__pass *passes[RT_PASSIVATE_PASSES_MAX];
	memcpy(passes, w->evict_passes, count * sizeof *passes);
	w->evict_count = 0;
	if (atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
		/* rt_stop passivates every actor itself. */
		for (uint32_t i = 0; i < count; i++)
			rt__pass_release(rt, passes[i], RT_ESTOPPED);
		turn_retire(w, a, processed);
		return;
	}
	const rt_actor_ops *ops = k->ops;
	bool loaded = rt__actor_shared(a) & RT_ACTOR_LOADED;
	int status = 0;
	if (loaded) {
		w->current = a;
		if (ops->on_passivate != NULL)
			ops->on_passivate(a, a->state);
		if (rt->has_store)
			status = rt->store.save(rt->store_arg, actor_addr(a), ops,
				a->state);
		w->current = NULL;
		if (status != 0)
			rt_log(rt, RT_LOG_ERROR, "runtime",
				"eviction save failed kind=%s id=%llu code=%s",
				ops->name, (unsigned long long)a->id,
				rt_strerror(status));
		rt__actor_shared_clear(a, RT_ACTOR_DIRTY);
	}
	uint64_t hash = rt__addr_hash(rt__actor_kind(a), a->id);
	rt__shard *s = rt__registry_shard(&rt->registry, hash);
	rt__spin_lock(&s->lock);
	int remaining = atomic_fetch_sub_explicit(&a->pending, processed,
		memory_order_acq_rel) - processed;
	RT_ASSERT(remaining >= 0);
	uint32_t requeued = 0;
	if (remaining == 0)
		rt__registry_remove(s, hash, a);
	else
		for (; requeued < count; requeued++)
			if (!push_evict_locked(rt, a, passes[requeued]))
				break;
	rt__spin_unlock(&s->lock);
	/* Requests that could not be queued again end here, with ENOMEM. */
	for (uint32_t i = requeued; remaining > 0 && i < count; i++)
		rt__pass_release(rt, passes[i], RT_ENOMEM);
	if (loaded && ops->free_state != NULL)
		ops->free_state(a->state);
	if (loaded)
		rt__count_passivated(rt);
	if (remaining == 0) {
		actor_free(rt, a);
		for (uint32_t i = 0; i < count; i++)
			rt__pass_release(rt, passes[i], status);
		return;
	}
	memset(a->state, 0, ops->state_size);
	rt__actor_shared_clear(a, RT_ACTOR_LOADED);
	rt__actor_local_clear(a, (RT_ACTOR_WANT_PASSIVATE | RT_ACTOR_FAILED));
	rt__reschedule(w, a);
}

void
rt__turn(rt_worker *w, rt_actor *a)
{
	RT_ASSERT(w->current == NULL);
	RT_ASSERT(atomic_load_explicit(&a->pending, memory_order_relaxed) != 0);
	rt_runtime *rt = w->rt;
	const rt__kind *k = &rt->kinds[rt__actor_kind(a)];
	RT_ASSERT(k->ops != NULL);
	int processed = 0;
	w->current = a;
	rt__actor_stamp(a, rt__stamp_ms(rt));
	if (rt__actor_local(a) & RT_ACTOR_ACTIVATE_TOKEN) {
		rt__actor_local_clear(a, RT_ACTOR_ACTIVATE_TOKEN);
		processed = 1;
	}
	if (!(rt__actor_shared(a) &
		RT_ACTOR_LOADED) && !(rt__actor_local(a) & RT_ACTOR_FAILED))
		actor_load(w, a, k);
	rt_message *fifo = deferred_take(rt, a);
	while (processed < RT_TURN_MESSAGES_MAX) {
		if (fifo == NULL) {
			fifo = mailbox_take(a);
			if (fifo == NULL)
				break;
		}
		rt_message *m = fifo;
		fifo = m->next;
		processed++;
		handle(w, a, k, m);
	}
	if (RT_UNLIKELY(fifo != NULL) && !deferred_put(rt, a, fifo)) {
		/* Out of memory for the table: handle them now. */
		while (fifo != NULL) {
			rt_message *m = fifo;
			fifo = m->next;
			processed++;
			handle(w, a, k, m);
		}
	}
	w->current = NULL;
	/* One writer (this worker): no locked add. */
	atomic_store_explicit(&w->messages_delivered, atomic_load_explicit(
		&w->messages_delivered, memory_order_relaxed) + (unsigned)processed,
		memory_order_relaxed);
	if (RT_UNLIKELY(w->evict_count > 0)) {
		actor_evict(w, a, k, processed);
		return;
	}
	if ((rt__actor_local(a) & (RT_ACTOR_WANT_PASSIVATE | RT_ACTOR_FAILED)) &&
		!atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
		if (mailbox_empty(a)) {
			actor_passivate(w, a, k, processed);
			return;
		}
		rt__actor_local_clear(a, RT_ACTOR_WANT_PASSIVATE);
	}
	turn_retire(w, a, processed);
}

/* ---- stop and destroy (no other thread runs) --------------------------- */

void
rt__actor_stop(rt_runtime *rt, rt_actor *a)
{
	rt_worker *w = rt__tls_worker;
	RT_ASSERT(w != NULL);
	RT_ASSERT(w->rt == rt);
	const rt_actor_ops *ops = rt->kinds[rt__actor_kind(a)].ops;
	if (rt__actor_shared(a) &
		RT_ACTOR_LOADED) {
		w->current = a;
		if (ops->on_passivate != NULL)
			ops->on_passivate(a, a->state);
		if (rt->has_store) {
			int rc = rt->store.save(rt->store_arg, actor_addr(a), ops,
				a->state);
			if (rc != 0)
				rt_log(rt, RT_LOG_ERROR, "runtime",
					"stop save failed kind=%s id=%llu code=%s",
					ops->name, (unsigned long long)a->id,
					rt_strerror(rc));
		}
		w->current = NULL;
		if (ops->free_state != NULL)
			ops->free_state(a->state);
		rt__count_passivated(rt);
	}
	actor_free(rt, a);
}

void
rt__actor_discard(rt_runtime *rt, rt_actor *a)
{
	const rt_actor_ops *ops = rt->kinds[rt__actor_kind(a)].ops;
	if ((rt__actor_shared(a) &
		RT_ACTOR_LOADED) && ops->free_state != NULL)
		ops->free_state(a->state);
	actor_free(rt, a);
}

/* ---- passivation requests: idle sweep and memory budget --------------- */

static bool
evictable(const rt_actor *a)
{
	uint8_t flags = rt__actor_shared(a);
	return (flags & RT_ACTOR_LOADED) && !(flags & RT_ACTOR_EVICTING) &&
		atomic_load_explicit(&a->pending, memory_order_relaxed) == 0;
}

/* Under the shard lock: queues a passivate request for a. */
static void
request_passivate_locked(rt_runtime *rt, rt_actor *a)
{
	rt_message *m = rt__message_new(rt, RT_TYPE_INTERNAL_PASSIVATE, 0);
	if (m == NULL)
		return;
	rt__actor_shared_set(a, RT_ACTOR_EVICTING);
	bool schedule = false;
	rt__push_internal_locked(rt, a, m, &schedule);
	if (schedule)
		rt__schedule(rt, a);
}

void
rt__housekeeping(rt_runtime *rt)
{
	uint64_t idle_ms = rt->cfg.passivate_idle_ms;
	if (idle_ms == 0 || atomic_load(&rt->stopping))
		return;
	if (idle_ms > RT_ACTOR_IDLE_MS_MAX)
		idle_ms = RT_ACTOR_IDLE_MS_MAX; /* ages wrap past the stamp's width */
	uint32_t now = rt__now_relative_ms(rt);
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &rt->registry.shards[i];
		rt__spin_lock(&s->lock);
		for (uint32_t b = 0; s->count > 0 && b <= s->mask; b++) {
			rt_actor *a = rt__slot_actor(s->slots[b]);
			if (a == NULL)
				continue;
			uint32_t last = rt__actor_last_active(a);
			if (evictable(a) && rt__stamp_age(now, last) >= idle_ms)
				request_passivate_locked(rt, a);
		}
		rt__spin_unlock(&s->lock);
	}
}

/* Under s's lock: looks at the run of occupied slots starting at the
 * first occupied one at or after b; keeps the oldest evictable actor. */
static void
sample_run(rt__shard *s, uint32_t b, uint32_t now, bool *found,
	uint32_t *best_age, uint32_t *best_kind, uint64_t *best_id)
{
	uint32_t mask = s->mask;
	uint32_t i = b & mask;
	for (uint32_t step = 0; step <= mask && s->slots[i].word == 0; step++)
		i = (i + 1u) & mask;
	/* A few actors from there: the slots are in hash order, so these are
	 * a random sample of the shard (neighbours may be one group of
	 * consecutive ids, rt__addr_hash; eight samples still span the
	 * registry). */
	for (uint32_t taken = 0; taken < 4 && s->slots[i].word != 0; taken++) {
		rt_actor *a = rt__slot_actor(s->slots[i]);
		uint32_t age = rt__stamp_age(now, rt__actor_last_active(a));
		if (evictable(a) && (!*found || age > *best_age)) {
			*found = true;
			*best_age = age;
			*best_kind = rt__actor_kind(a);
			*best_id = a->id;
		}
		i = (i + 1u) & mask;
	}
}

void
rt__evict_one(rt_runtime *rt)
{
	/* Approximate LRU, as Redis does it: sample a few actors at random
	 * and passivate the least recently active evictable one. A sample
	 * lands on the first non-empty shard and occupied slot at or after
	 * the drawn one; tables are at least 40% full, so the scan is short
	 * except in a nearly empty registry, where it is cheap anyway. */
	uint32_t now = rt__now_relative_ms(rt);
	uint32_t best_age = 0;
	uint32_t best_kind = 0;
	uint64_t best_id = 0;
	bool found = false;
	for (uint32_t i = 0; i < RT_EVICTION_SAMPLES; i++) {
		uint64_t r = rt_random_u64(rt);
		for (uint32_t k = 0; k < RT_REGISTRY_SHARDS; k++) {
			rt__shard *s = &rt->registry.shards[((r >> 56) + k) %
				RT_REGISTRY_SHARDS];
			rt__spin_lock(&s->lock);
			bool empty = s->count == 0;
			if (!empty)
				sample_run(s, (uint32_t)r, now, &found,
					&best_age, &best_kind, &best_id);
			rt__spin_unlock(&s->lock);
			if (!empty)
				break;
		}
	}
	if (!found)
		return;
	uint64_t hash = rt__addr_hash(best_kind, best_id);
	rt__shard *s = rt__registry_shard(&rt->registry, hash);
	rt__spin_lock(&s->lock);
	rt_actor *a = rt__registry_find(s, hash, best_kind, best_id);
	if (a != NULL && evictable(a))
		request_passivate_locked(rt, a);
	rt__spin_unlock(&s->lock);
}

/* ---- snapshots ---------------------------------------------------------- */

/* Queues snapshot turns for the walk's noted actors until
 * RT_SNAPSHOT_WINDOW_ACTORS are queued or none is left; drops the walk's
 * hold once every one was queued. Any thread (a worker finishing a
 * snapshot turn, or the walk's caller). An actor noted dirty that is no
 * longer active, no longer dirty or not loaded was saved since (at
 * passivation, or by an earlier pass), or is a later instance whose
 * state came from that save: nothing to do for it. */
static void
snapshot_feed(rt_runtime *rt)
{
	rt_addr *done_addrs = NULL;
	pthread_mutex_lock(&rt->snapshot_lock);
	if (rt->snapshot_addrs == NULL) {
		pthread_mutex_unlock(&rt->snapshot_lock);
		return;
	}
	while (rt->snapshot_queued < RT_SNAPSHOT_WINDOW_ACTORS &&
		rt->snapshot_addrs_next < rt->snapshot_addrs_count) {
		rt_addr addr = rt->snapshot_addrs[rt->snapshot_addrs_next++];
		uint64_t hash = rt__addr_hash(addr.kind, addr.id);
		rt__shard *s = rt__registry_shard(&rt->registry, hash);
		rt__spin_lock(&s->lock);
		rt_actor *a = rt__registry_find(s, hash, addr.kind, addr.id);
		uint8_t flags = a == NULL ? 0 : rt__actor_shared(a);
		if (!(flags & RT_ACTOR_LOADED) || !(flags & RT_ACTOR_DIRTY)) {
			rt__spin_unlock(&s->lock);
			continue;
		}
		rt_message *m = rt__message_new(rt, RT_TYPE_INTERNAL_SNAPSHOT, 0);
		if (m == NULL) {
			rt__spin_unlock(&s->lock);
			int expected = 0;
			atomic_compare_exchange_strong(&rt->snapshot_status,
				&expected, RT_ENOMEM);
			continue;
		}
		atomic_fetch_add(&rt->snapshot_outstanding, 1);
		rt->snapshot_queued++;
		bool schedule = false;
		rt__push_internal_locked(rt, a, m, &schedule);
		rt__spin_unlock(&s->lock);
		if (schedule)
			rt__schedule_behind(rt, a);
	}
	if (rt->snapshot_addrs_next == rt->snapshot_addrs_count) {
		done_addrs = rt->snapshot_addrs;
		rt->snapshot_addrs = NULL;
	}
	pthread_mutex_unlock(&rt->snapshot_lock);
	if (done_addrs != NULL) {
		free(done_addrs);
		snapshot_release(rt); /* the walk's own hold */
	}
}

/* A snapshot turn ran: room for the next one in the window. */
static void
snapshot_turn_done(rt_runtime *rt)
{
	pthread_mutex_lock(&rt->snapshot_lock);
	RT_ASSERT(rt->snapshot_queued > 0);
	rt->snapshot_queued--;
	bool more = rt->snapshot_addrs != NULL;
	pthread_mutex_unlock(&rt->snapshot_lock);
	if (more)
		snapshot_feed(rt);
	snapshot_release(rt);
}

/* The addresses of the loaded, dirty actors, in registry order (owned,
 * *count of them), or NULL when out of memory. Takes each shard's lock
 * in turn. */
static rt_addr *
snapshot_note_dirty(rt_runtime *rt, size_t *count)
{
	size_t n = 0, capacity = 0;
	rt_addr *v = NULL;
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &rt->registry.shards[i];
		rt__spin_lock(&s->lock);
		while (n + s->count > capacity || v == NULL) {
			size_t need = n + s->count + 1024;
			rt__spin_unlock(&s->lock);
			rt_addr *grown = realloc(v, need * sizeof *v);
			if (grown == NULL) {
				free(v);
				return NULL;
			}
			v = grown;
			capacity = need;
			rt__spin_lock(&s->lock);
		}
		for (uint32_t b = 0; s->count > 0 && b <= s->mask; b++) {
			rt_actor *a = rt__slot_actor(s->slots[b]);
			if (a == NULL)
				continue;
			uint8_t flags = rt__actor_shared(a);
			if ((flags & RT_ACTOR_LOADED) && (flags & RT_ACTOR_DIRTY))
				v[n++] = actor_addr(a);
		}
		RT_ASSERT(n <= capacity);
		rt__spin_unlock(&s->lock);
	}
	*count = n;
	return v;
}

int
rt_snapshot_dirty(rt_runtime *rt, rt_snapshot_done_callback done, void *arg)
{
	RT_ASSERT(rt != NULL);
	if (atomic_load(&rt->stopping))
		return RT_ESTOPPED;
	if (atomic_exchange(&rt->snapshot_running, true))
		return RT_EEXIST;
	rt->snapshot_done = done;
	rt->snapshot_arg = arg;
	atomic_store(&rt->snapshot_status, 0);
	atomic_store(&rt->snapshot_outstanding, 1); /* the walk's own hold */
	size_t count = 0;
	rt_addr *addrs = snapshot_note_dirty(rt, &count);
	if (addrs == NULL) {
		atomic_store(&rt->snapshot_status, RT_ENOMEM);
		snapshot_release(rt);
		return 0;
	}
	pthread_mutex_lock(&rt->snapshot_lock);
	RT_ASSERT(rt->snapshot_addrs == NULL);
	RT_ASSERT(rt->snapshot_queued == 0);
	rt->snapshot_addrs = addrs;
	rt->snapshot_addrs_count = count;
	rt->snapshot_addrs_next = 0;
	pthread_mutex_unlock(&rt->snapshot_lock);
	snapshot_feed(rt);
	return 0;
}

/* ---- passivation passes ------------------------------------------------ */

void
rt__pass_release(rt_runtime *rt, rt__pass *pass, int status)
{
	if (status != 0) {
		int expected = 0;
		atomic_compare_exchange_strong(&pass->status, &expected, status);
	}
	if (atomic_fetch_sub_explicit(&pass->outstanding, 1,
		memory_order_acq_rel) != 1)
		return;
	pthread_mutex_lock(&rt->passes_lock);
	RT_ASSERT(rt->passes[pass->slot] == pass);
	rt->passes[pass->slot] = NULL;
	pthread_mutex_unlock(&rt->passes_lock);
	if (pass->done != NULL)
		pass->done(pass->done_arg, atomic_load(&pass->status));
	free(pass);
}

int
rt_passivate_where(rt_runtime *rt, rt_addr_predicate pred, void *pred_arg,
	rt_passivate_done_callback done, void *done_arg)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(pred != NULL);
	if (atomic_load(&rt->stopping))
		return RT_ESTOPPED;
	rt__pass *pass = calloc(1, sizeof *pass);
	if (pass == NULL)
		return RT_ENOMEM;
	pass->done = done;
	pass->done_arg = done_arg;
	atomic_store(&pass->outstanding, 1); /* the walk's own hold */
	pthread_mutex_lock(&rt->passes_lock);
	uint32_t slot = 0;
	while (slot < RT_PASSIVATE_PASSES_MAX && rt->passes[slot] != NULL)
		slot++;
	if (slot < RT_PASSIVATE_PASSES_MAX) {
		pass->slot = slot;
		rt->passes[slot] = pass;
	}
	pthread_mutex_unlock(&rt->passes_lock);
	if (slot == RT_PASSIVATE_PASSES_MAX) {
		free(pass);
		return RT_ENOMEM;
	}
	int status = 0;
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &rt->registry.shards[i];
		rt__spin_lock(&s->lock);
		for (uint32_t b = 0; s->count > 0 && b <= s->mask; b++) {
			rt_actor *a = rt__slot_actor(s->slots[b]);
			if (a == NULL || !pred(pred_arg, actor_addr(a)))
				continue;
			atomic_fetch_add(&pass->outstanding, 1);
			if (!push_evict_locked(rt, a, pass)) {
				atomic_fetch_sub(&pass->outstanding, 1);
				status = RT_ENOMEM;
			}
		}
		rt__spin_unlock(&s->lock);
	}
	rt__pass_release(rt, pass, status);
	return 0;
}

/* ---- inside an actor ---------------------------------------------------- */

rt_addr
rt_self(const rt_actor *self)
{
	RT_ASSERT(self != NULL);
	return actor_addr(self);
}

rt_runtime *
rt_actor_runtime(const rt_actor *self)
{
	RT_ASSERT(self != NULL);
	rt_worker *w = rt__tls_worker;
	RT_ASSERT(w != NULL);
	RT_ASSERT(w->current == self);
	return w->rt;
}

uint32_t
rt_mailbox_length(const rt_actor *self)
{
	RT_ASSERT(self != NULL);
	int n = atomic_load_explicit(&((rt_actor *)self)->pending,
		memory_order_relaxed);
	return n > 0 ? (uint32_t)n : 0u;
}

void
rt_mark_dirty(rt_actor *self)
{
	RT_ASSERT(self != NULL);
	rt__actor_shared_set(self, RT_ACTOR_DIRTY);
}

void
rt_request_passivate(rt_actor *self)
{
	RT_ASSERT(self != NULL);
	RT_ASSERT(rt__tls_worker != NULL && rt__tls_worker->current == self);
	rt__actor_local_set(self, RT_ACTOR_WANT_PASSIVATE);
	/* The end of the turn removes self from the registry: start loading
	 * its slot while the rest of the turn runs. */
	rt__registry_prefetch(&rt__tls_worker->rt->registry,
		rt__addr_hash(rt__actor_kind(self), self->id));
}
