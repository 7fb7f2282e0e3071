/*
 * ask.c — request/response with a correlation id and a deadline, and
 * inboxes (how threads that are no actor ask and receive).
 *
 * Role: an ask registers (correlation -> asker) and arms a deadline
 * timer in one step under the asks lock. Whichever comes first claims
 * the registration: the reply (when it is delivered on the asker's node,
 * send.c) or the deadline (timer.c calls rt__ask_expired). The loser
 * finds nothing and is dropped, so the asker sees exactly one of reply or
 * timeout. Claiming at delivery (not at rt_reply) makes this hold across
 * nodes: the claim is always made where the asker lives.
 *
 * An inbox's own asks skip that table: each inbox keeps its pending
 * correlations with their deadlines under its lock, claims a reply when
 * it is delivered there (so still where the asker lives), and arms one
 * timer at the earliest deadline it knows; the sweep it triggers times
 * out what is due and re-arms for the next. Clients ask far more than
 * actors do, and a runtime-wide lock plus a timer heap insert and remove
 * per ask were a sixth of a read-heavy mix's CPU.
 *
 * Inboxes have addresses of kind RT_KIND_INBOX and a runtime-unique id
 * whose top 16 bits name the node (rt_set_node_id; 0 before it is set).
 * Anything delivered there is queued; notify runs when the queue goes
 * from empty to non-empty.
 *
 * Invariants: lock order asks -> timers (arming under the asks lock);
 * timer firings and claims never hold the asks lock while taking another.
 * inbox table -> inbox lock -> timers (a sweep is armed under the
 * inbox's lock; firings run outside the timers lock); notify runs under
 * the table lock, so an inbox is never destroyed under a running notify.
 * Does not: retry, or keep replies for asks it no longer knows.
 */
#include "runtime/internal.h"

int
rt__ask_register(rt_runtime *rt, rt_addr asker, rt_message *m,
	uint64_t timeout_ms)
{
	rt__ask *ask = rt__alloc(rt, sizeof *ask);
	if (ask == NULL)
		return RT_ENOMEM;
	uint64_t correlation = atomic_fetch_add(&rt->next_correlation, 1);
	ask->asker = asker;
	ask->timer_id = 0;
	rt__timer proto;
	memset(&proto, 0, sizeof proto);
	proto.timer_kind = RT_TIMER_ASK;
	proto.correlation = correlation;
	proto.to = asker;
	proto.from = m->to;
	pthread_mutex_lock(&rt->asks.lock);
	int rc = rt__map_put(&rt->asks.pending, correlation, ask);
	if (rc == 0) {
		rc = rt__timer_arm(rt, &proto, timeout_ms, &ask->timer_id);
		if (rc != 0)
			rt__map_remove(&rt->asks.pending, correlation);
	}
	pthread_mutex_unlock(&rt->asks.lock);
	if (rc != 0) {
		rt__free(rt, ask, sizeof *ask);
		return rc;
	}
	m->correlation = correlation;
	return 0;
}

bool
rt__ask_claim(rt_runtime *rt, uint64_t correlation)
{
	pthread_mutex_lock(&rt->asks.lock);
	rt__ask *ask = rt__map_remove(&rt->asks.pending, correlation);
	pthread_mutex_unlock(&rt->asks.lock);
	if (ask == NULL)
		return false;
	/* RT_ENOTFOUND here means the deadline is firing right now; its
	 * claim will find nothing. */
	(void)rt__timer_disarm(rt, ask->timer_id);
	rt__free(rt, ask, sizeof *ask);
	return true;
}

void
rt__ask_expired(rt_runtime *rt, const rt__timer *timer)
{
	pthread_mutex_lock(&rt->asks.lock);
	rt__ask *ask = rt__map_remove(&rt->asks.pending, timer->correlation);
	pthread_mutex_unlock(&rt->asks.lock);
	if (ask == NULL)
		return; /* the reply won */
	rt_addr asker = ask->asker;
	rt__free(rt, ask, sizeof *ask);
	atomic_fetch_add_explicit(&rt->asks_timed_out_total, 1,
		memory_order_relaxed);
	rt_message *m = rt__message_new(rt, RT_TYPE_TIMEOUT, 0);
	if (m == NULL) {
		rt_log(rt, RT_LOG_ERROR, "ask", "timeout notice lost: no memory");
		return;
	}
	m->flags = RT_MESSAGE_F_TIMEOUT;
	m->correlation = timer->correlation;
	m->from = timer->from;
	m->to = asker;
	(void)rt__deliver(rt, m, RT_DELIVER_BYPASS_LIMIT);
}

void
rt__asks_destroy(rt_runtime *rt)
{
	rt__map *map = &rt->asks.pending;
	if (map->keys != NULL) {
		for (uint32_t i = 0; i <= map->mask; i++)
			if (map->keys[i] != 0)
				rt__free(rt, map->values[i], sizeof(rt__ask));
	}
	rt__map_free(map);
	pthread_mutex_destroy(&rt->asks.lock);
}

/* Sends m (taken) for asker; on failure undoes the registration. */
static int
ask_send(rt_runtime *rt, rt_addr asker, rt_addr to, rt_message *m,
	uint64_t timeout_ms, uint64_t *correlation_out, rt_actor *self)
{
	m->to = to;
	int rc = rt__ask_register(rt, asker, m, timeout_ms);
	if (rc != 0) {
		rt_message_free(rt, m);
		return rc;
	}
	uint64_t correlation = m->correlation;
	if (correlation_out != NULL)
		*correlation_out = correlation;
	if (self != NULL) {
		rc = rt_send(self, to, m);
	} else {
		m->from = asker;
		m->flags &= ~(uint32_t)RT_MESSAGE_F_INTERNAL;
		rc = rt__route_and_deliver(rt, m);
	}
	/* If the claim fails the deadline already fired: the timeout notice
	 * is this ask's one outcome, so report success. */
	if (rc != 0 && !rt__ask_claim(rt, correlation))
		return 0;
	return rc;
}

int
rt_ask(rt_actor *self, rt_addr to, rt_message *m, uint64_t timeout_ms,
	uint64_t *correlation_out)
{
	RT_ASSERT(self != NULL);
	RT_ASSERT(m != NULL);
	rt_runtime *rt = rt_actor_runtime(self);
	return ask_send(rt, rt_self(self), to, m, timeout_ms, correlation_out,
		self);
}

int
rt_reply(rt_actor *self, const rt_message *request, rt_message *reply)
{
	RT_ASSERT(self != NULL);
	RT_ASSERT(request != NULL);
	RT_ASSERT(reply != NULL);
	rt_runtime *rt = rt_actor_runtime(self);
	if (request->correlation == 0 ||
		(request->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))) {
		rt_message_free(rt, reply);
		return RT_EINVAL;
	}
	reply->correlation = request->correlation;
	reply->flags |= RT_MESSAGE_F_REPLY;
	return rt_send(self, request->from, reply);
}

/* ---- inboxes ----------------------------------------------------------- */

int
rt_inbox_create(rt_runtime *rt, rt_inbox_notify_callback notify, void *arg,
	rt_inbox **out)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(out != NULL);
	rt_inbox *inbox = calloc(1, sizeof *inbox);
	if (inbox == NULL)
		return RT_ENOMEM;
	inbox->rt = rt;
	inbox->notify = notify;
	inbox->notify_arg = arg;
	pthread_mutex_init(&inbox->lock, NULL);
	rt__map_init(&inbox->asks);
	if (rt__condvar_init_monotonic(&inbox->cond) != 0)
		goto fail_cond;
	pthread_mutex_lock(&rt->inbox_lock);
	RT_ASSERT(rt->next_inbox_id < (1ull << RT_INBOX_NODE_SHIFT));
	inbox->id = (uint64_t)atomic_load(&rt->node_id) << RT_INBOX_NODE_SHIFT |
		rt->next_inbox_id++;
	int rc = rt__map_put(&rt->inboxes, inbox->id, inbox);
	pthread_mutex_unlock(&rt->inbox_lock);
	if (rc != 0)
		goto fail_put;
	*out = inbox;
	return 0;
fail_put:
	pthread_cond_destroy(&inbox->cond);
fail_cond:
	pthread_mutex_destroy(&inbox->lock);
	free(inbox);
	return RT_ENOMEM;
}

void
rt_inbox_destroy(rt_inbox *inbox)
{
	if (inbox == NULL)
		return;
	rt_runtime *rt = inbox->rt;
	pthread_mutex_lock(&rt->inbox_lock);
	rt_inbox *removed = rt__map_remove(&rt->inboxes, inbox->id);
	pthread_mutex_unlock(&rt->inbox_lock);
	RT_ASSERT(removed == inbox);
	/* A sweep firing now finds no inbox under that id. */
	if (inbox->sweep_timer != 0)
		(void)rt__timer_disarm(rt, inbox->sweep_timer);
	rt__map_free(&inbox->asks);
	rt_message *m = inbox->head;
	while (m != NULL) {
		rt_message *next = m->next;
		rt_message_free(rt, m);
		m = next;
	}
	pthread_cond_destroy(&inbox->cond);
	pthread_mutex_destroy(&inbox->lock);
	free(inbox);
}

int
rt__inbox_deliver(rt_runtime *rt, rt_message *m)
{
	pthread_mutex_lock(&rt->inbox_lock);
	rt_inbox *inbox = m->to.id == 0 ? NULL : rt__map_get(&rt->inboxes, m->to.id);
	if (inbox == NULL) {
		pthread_mutex_unlock(&rt->inbox_lock);
		rt_message_free(rt, m);
		return RT_ENOTFOUND;
	}
	pthread_mutex_lock(&inbox->lock);
	if ((m->flags & RT_MESSAGE_F_REPLY) && m->correlation != 0 &&
		rt__map_remove(&inbox->asks, m->correlation) == NULL) {
		/* Its ask timed out (or was answered): drop. */
		pthread_mutex_unlock(&inbox->lock);
		pthread_mutex_unlock(&rt->inbox_lock);
		rt_message_free(rt, m);
		return 0;
	}
	if (!(m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT)) &&
		inbox->count >= RT_INBOX_MESSAGES_MAX) {
		pthread_mutex_unlock(&inbox->lock);
		pthread_mutex_unlock(&rt->inbox_lock);
		atomic_fetch_add_explicit(&rt->mailbox_full_total, 1,
			memory_order_relaxed);
		rt_message_free(rt, m);
		return RT_EMAILBOX_FULL;
	}
	m->next = NULL;
	if (inbox->tail != NULL)
		inbox->tail->next = m;
	else
		inbox->head = m;
	inbox->tail = m;
	bool was_empty = inbox->count == 0;
	inbox->count++;
	if (inbox->waiters > 0)
		pthread_cond_signal(&inbox->cond);
	pthread_mutex_unlock(&inbox->lock);
	if (was_empty && inbox->notify != NULL)
		inbox->notify(inbox->notify_arg);
	pthread_mutex_unlock(&rt->inbox_lock);
	return 0;
}

/* Under inbox->lock: arms the sweep at deadline (rt_now_ms) in place of
 * a later one. */
static int
inbox_sweep_arm_locked(rt_inbox *inbox, uint64_t deadline, uint64_t now)
{
	rt_runtime *rt = inbox->rt;
	rt__timer proto;
	memset(&proto, 0, sizeof proto);
	proto.timer_kind = RT_TIMER_INBOX_SWEEP;
	proto.to = rt_inbox_addr(inbox);
	uint64_t id = 0;
	int rc = rt__timer_arm(rt, &proto, deadline > now ? deadline - now : 0,
		&id);
	if (rc != 0)
		return rc;
	if (inbox->sweep_timer != 0)
		(void)rt__timer_disarm(rt, inbox->sweep_timer);
	inbox->sweep_timer = id;
	inbox->sweep_at_ms = deadline;
	return 0;
}

int
rt_inbox_ask(rt_inbox *inbox, rt_addr to, rt_message *m, uint64_t timeout_ms,
	uint64_t *correlation_out)
{
	RT_ASSERT(inbox != NULL);
	RT_ASSERT(m != NULL);
	rt_runtime *rt = inbox->rt;
	uint64_t correlation = atomic_fetch_add(&rt->next_correlation, 1);
	uint64_t now = rt_now_ms(rt);
	/* Stored as deadline + 1 so that no value is NULL. */
	uint64_t deadline = timeout_ms < UINT64_MAX - 1 - now
		? now + timeout_ms : UINT64_MAX - 1;
	pthread_mutex_lock(&inbox->lock);
	int rc = rt__map_put(&inbox->asks, correlation,
		(void *)(uintptr_t)(deadline + 1));
	if (rc == 0 && (inbox->sweep_timer == 0 ||
		deadline < inbox->sweep_at_ms)) {
		rc = inbox_sweep_arm_locked(inbox, deadline, now);
		if (rc != 0)
			(void)rt__map_remove(&inbox->asks, correlation);
	}
	pthread_mutex_unlock(&inbox->lock);
	if (rc != 0) {
		rt_message_free(rt, m);
		return rc;
	}
	if (correlation_out != NULL)
		*correlation_out = correlation;
	m->to = to;
	m->from = rt_inbox_addr(inbox);
	m->correlation = correlation;
	m->flags &= ~(uint32_t)RT_MESSAGE_F_INTERNAL;
	rc = rt__route_and_deliver(rt, m);
	if (rc == 0)
		return 0;
	pthread_mutex_lock(&inbox->lock);
	bool pending = rt__map_remove(&inbox->asks, correlation) != NULL;
	pthread_mutex_unlock(&inbox->lock);
	/* Gone already: its timeout notice is this ask's one outcome. */
	return pending ? rc : 0;
}

/* Asks one sweep times out before it looks again (the rest wait for a
 * second pass over the table). */
#define INBOX_SWEEP_BATCH 64u

/* Under inbox->lock: queues a timeout notice for correlation. */
static bool
inbox_timeout_locked(rt_runtime *rt, rt_inbox *inbox, uint64_t correlation)
{
	rt_message *m = rt__message_new(rt, RT_TYPE_TIMEOUT, 0);
	if (m == NULL) {
		rt_log(rt, RT_LOG_ERROR, "ask", "timeout notice lost: no memory");
		return false;
	}
	m->flags = RT_MESSAGE_F_TIMEOUT;
	m->correlation = correlation;
	m->from = rt_addr_make(RT_KIND_NONE, 0);
	m->to = rt_inbox_addr(inbox);
	m->next = NULL;
	if (inbox->tail != NULL)
		inbox->tail->next = m;
	else
		inbox->head = m;
	inbox->tail = m;
	inbox->count++;
	atomic_fetch_add_explicit(&rt->asks_timed_out_total, 1,
		memory_order_relaxed);
	return true;
}

/* Under inbox->lock: times out every ask due at now; returns the
 * earliest deadline left (UINT64_MAX: none) and how many it queued. */
static uint64_t
inbox_sweep_locked(rt_runtime *rt, rt_inbox *inbox, uint64_t now,
	uint32_t *queued)
{
	rt__map *asks = &inbox->asks;
	for (;;) {
		uint64_t due[INBOX_SWEEP_BATCH];
		uint32_t n = 0;
		uint64_t next = UINT64_MAX;
		for (uint32_t i = 0; asks->keys != NULL && i <= asks->mask; i++) {
			if (asks->keys[i] == 0)
				continue;
			uint64_t deadline = (uint64_t)(uintptr_t)asks->values[i] - 1;
			if (deadline > now) {
				if (deadline < next)
					next = deadline;
			} else if (n < INBOX_SWEEP_BATCH) {
				due[n++] = asks->keys[i];
			}
		}
		for (uint32_t i = 0; i < n; i++) {
			void *v = rt__map_remove(asks, due[i]);
			RT_ASSERT(v != NULL);
			*queued += inbox_timeout_locked(rt, inbox, due[i]);
		}
		if (n < INBOX_SWEEP_BATCH)
			return next;
	}
}

void
rt__inbox_sweep(rt_runtime *rt, const rt__timer *timer)
{
	pthread_mutex_lock(&rt->inbox_lock);
	rt_inbox *inbox = timer->to.id == 0 ? NULL
					   : rt__map_get(&rt->inboxes, timer->to.id);
	if (inbox == NULL) {
		pthread_mutex_unlock(&rt->inbox_lock);
		return;
	}
	pthread_mutex_lock(&inbox->lock);
	if (inbox->sweep_timer != timer->id) {
		/* Replaced by an earlier sweep while this one fired. */
		pthread_mutex_unlock(&inbox->lock);
		pthread_mutex_unlock(&rt->inbox_lock);
		return;
	}
	inbox->sweep_timer = 0;
	bool was_empty = inbox->count == 0;
	uint64_t now = rt_now_ms(rt);
	uint32_t queued = 0;
	uint64_t next = inbox_sweep_locked(rt, inbox, now, &queued);
	if (next != UINT64_MAX &&
		inbox_sweep_arm_locked(inbox, next, now) != 0)
		rt_log(rt, RT_LOG_ERROR, "ask",
			"inbox sweep not re-armed: no memory");
	if (queued > 0 && inbox->waiters > 0)
		pthread_cond_signal(&inbox->cond);
	pthread_mutex_unlock(&inbox->lock);
	if (queued > 0 && was_empty && inbox->notify != NULL)
		inbox->notify(inbox->notify_arg);
	pthread_mutex_unlock(&rt->inbox_lock);
}

rt_message *
rt_inbox_take(rt_inbox *inbox)
{
	RT_ASSERT(inbox != NULL);
	pthread_mutex_lock(&inbox->lock);
	rt_message *m = inbox->head;
	if (m != NULL) {
		inbox->head = m->next;
		if (inbox->head == NULL)
			inbox->tail = NULL;
		RT_ASSERT(inbox->count > 0);
		inbox->count--;
		m->next = NULL;
	}
	pthread_mutex_unlock(&inbox->lock);
	return m;
}

rt_message *
rt_inbox_take_all(rt_inbox *inbox)
{
	RT_ASSERT(inbox != NULL);
	pthread_mutex_lock(&inbox->lock);
	rt_message *m = inbox->head;
	inbox->head = NULL;
	inbox->tail = NULL;
	inbox->count = 0;
	pthread_mutex_unlock(&inbox->lock);
	return m;
}

static rt_message *
inbox_wait_deterministic(rt_inbox *inbox, uint64_t timeout_ms)
{
	rt_runtime *rt = inbox->rt;
	uint64_t start = rt->virtual_ms;
	uint64_t end = timeout_ms > UINT64_MAX - start ? UINT64_MAX : start + timeout_ms;
	for (;;) {
		rt_message *m = rt_inbox_take(inbox);
		if (m != NULL)
			return m;
		if (rt_det_step(rt))
			continue;
		uint64_t next = rt_det_next_timer_ms(rt);
		if (next > end) {
			/* Nothing due before the deadline: let it pass. */
			if (end != UINT64_MAX && end > rt->virtual_ms)
				rt_det_advance(rt, end - rt->virtual_ms);
			return rt_inbox_take(inbox);
		}
		rt_det_advance(rt, next > rt->virtual_ms ? next - rt->virtual_ms : 0);
	}
}

rt_message *
rt_inbox_wait(rt_inbox *inbox, uint64_t timeout_ms)
{
	RT_ASSERT(inbox != NULL);
	rt_runtime *rt = inbox->rt;
	if (rt->cfg.deterministic)
		return inbox_wait_deterministic(inbox, timeout_ms);
	struct timespec deadline;
	rt__clock_deadline(timeout_ms, &deadline);
	pthread_mutex_lock(&inbox->lock);
	while (inbox->count == 0) {
		inbox->waiters++;
		int rc = pthread_cond_timedwait(&inbox->cond, &inbox->lock, &deadline);
		inbox->waiters--;
		if (rc != 0 && inbox->count == 0)
			break; /* ETIMEDOUT */
	}
	pthread_mutex_unlock(&inbox->lock);
	return rt_inbox_take(inbox);
}

rt_addr
rt_inbox_addr(const rt_inbox *inbox)
{
	RT_ASSERT(inbox != NULL);
	return rt_addr_make(RT_KIND_INBOX, inbox->id);
}
