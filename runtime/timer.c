/*
 * timer.c — one-shot and periodic timers, ask deadlines, housekeeping,
 * and the clock seam (rt_now_ms, rt_wall_ms).
 *
 * Role: armed timers sit in a binary min-heap ordered by (deadline,
 * sequence) -- the sequence is the arming order, so equal deadlines fire
 * in a fixed order and the simulator replays exactly -- plus a map from
 * id to timer for cancel. Real mode: one timer thread sleeps on a
 * CLOCK_MONOTONIC condition variable until the earliest deadline.
 * Deterministic mode: no thread; rt_det_advance fires due timers one by
 * one, setting virtual time to each one's deadline as it fires.
 *
 * A firing is acted on outside the lock: a message timer is delivered to
 * its address (bypassing the mailbox bound: it is the runtime's own), an
 * ask timer claims its ask (ask.c), housekeeping sweeps idle actors.
 *
 * Invariants: heap[i]->heap_index == i; every armed timer is in both the
 * heap and the map; a periodic timer is re-armed (deadline += period,
 * fresh sequence) before its firing is acted on.
 * Does not: read the clock itself (clock_real.c does).
 */
#include "runtime/internal.h"

/* Timers copied out of the lock per round in real mode. */
#define FIRE_BATCH 32u

static bool
timer_less(const rt__timer *a, const rt__timer *b)
{
	if (a->deadline_ms != b->deadline_ms)
		return a->deadline_ms < b->deadline_ms;
	return a->sequence < b->sequence;
}

static void
heap_set(rt__timers *t, uint32_t i, rt__timer *e)
{
	t->heap[i] = e;
	e->heap_index = i;
}

static void
heap_up(rt__timers *t, uint32_t i)
{
	rt__timer *e = t->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!timer_less(e, t->heap[parent]))
			break;
		heap_set(t, i, t->heap[parent]);
		i = parent;
	}
	heap_set(t, i, e);
}

static void
heap_down(rt__timers *t, uint32_t i)
{
	rt__timer *e = t->heap[i];
	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= t->count)
			break;
		if (child + 1 < t->count && timer_less(t->heap[child + 1], t->heap[child]))
			child++;
		if (!timer_less(t->heap[child], e))
			break;
		heap_set(t, i, t->heap[child]);
		i = child;
	}
	heap_set(t, i, e);
}

static int
heap_push(rt__timers *t, rt__timer *e)
{
	if (t->count == t->capacity) {
		uint32_t capacity = t->capacity ? t->capacity * 2 : 64;
		rt__timer **heap = realloc(t->heap, capacity * sizeof *heap);
		if (heap == NULL)
			return RT_ENOMEM;
		t->heap = heap;
		t->capacity = capacity;
	}
	t->heap[t->count] = e;
	e->heap_index = t->count;
	t->count++;
	heap_up(t, e->heap_index);
	return 0;
}

static void
heap_remove(rt__timers *t, rt__timer *e)
{
	uint32_t i = e->heap_index;
	RT_ASSERT(i < t->count);
	RT_ASSERT(t->heap[i] == e);
	t->count--;
	if (i == t->count)
		return;
	heap_set(t, i, t->heap[t->count]);
	heap_down(t, i);
	heap_up(t, t->heap[i]->heap_index);
}

int
rt__timers_init(rt__timers *t)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	if (rt__condvar_init_monotonic(&t->cond) != 0) {
		pthread_mutex_destroy(&t->lock);
		return RT_ENOMEM;
	}
	rt__map_init(&t->by_id);
	t->next_id = 1;
	t->next_sequence = 1;
	return 0;
}

void
rt__timers_destroy(rt_runtime *rt)
{
	rt__timers *t = &rt->timers;
	for (uint32_t i = 0; i < t->count; i++)
		rt__free(rt, t->heap[i], sizeof(rt__timer));
	free(t->heap);
	t->heap = NULL;
	t->count = 0;
	rt__map_free(&t->by_id);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
}

int
rt__timer_arm(rt_runtime *rt, const rt__timer *proto, uint64_t delay_ms,
	uint64_t *id_out)
{
	rt__timers *t = &rt->timers;
	uint64_t now = rt_now_ms(rt);
	rt__timer *e = rt__alloc(rt, sizeof *e);
	if (e == NULL)
		return RT_ENOMEM;
	*e = *proto;
	e->deadline_ms = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
	pthread_mutex_lock(&t->lock);
	e->id = t->next_id++;
	e->sequence = t->next_sequence++;
	int rc = rt__map_put(&t->by_id, e->id, e);
	if (rc == 0) {
		rc = heap_push(t, e);
		if (rc != 0)
			rt__map_remove(&t->by_id, e->id);
	}
	if (rc != 0) {
		pthread_mutex_unlock(&t->lock);
		rt__free(rt, e, sizeof *e);
		return rc;
	}
	if (e->heap_index == 0 && t->thread_started)
		pthread_cond_signal(&t->cond);
	if (id_out != NULL)
		*id_out = e->id;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int
rt__timer_disarm(rt_runtime *rt, uint64_t id)
{
	rt__timers *t = &rt->timers;
	if (id == 0)
		return RT_ENOTFOUND;
	pthread_mutex_lock(&t->lock);
	rt__timer *e = rt__map_remove(&t->by_id, id);
	if (e != NULL)
		heap_remove(t, e);
	pthread_mutex_unlock(&t->lock);
	if (e == NULL)
		return RT_ENOTFOUND;
	rt__free(rt, e, sizeof *e);
	return 0;
}

/* Under the lock: takes the top timer's firing into *copy if it is due,
 * re-arming a periodic one. */
static bool
pop_due_locked(rt_runtime *rt, uint64_t now_ms, rt__timer *copy)
{
	rt__timers *t = &rt->timers;
	if (t->count == 0 || t->heap[0]->deadline_ms > now_ms)
		return false;
	rt__timer *e = t->heap[0];
	*copy = *e;
	if (e->period_ms > 0) {
		e->deadline_ms += e->period_ms;
		e->sequence = t->next_sequence++;
		heap_down(t, 0);
	} else {
		heap_remove(t, e);
		rt__map_remove(&t->by_id, e->id);
		rt__free(rt, e, sizeof *e);
	}
	return true;
}

static void
act(rt_runtime *rt, const rt__timer *e)
{
	switch (e->timer_kind) {
	case RT_TIMER_MESSAGE: {
		rt_message *m = rt__message_new(rt, e->type, e->size);
		if (m == NULL) {
			rt_log(rt, RT_LOG_WARN, "timer", "firing dropped: no memory");
			return;
		}
		memcpy(m->payload, e->payload, e->size);
		m->from = rt_addr_make(RT_KIND_NONE, 0);
		m->to = e->to;
		(void)rt__deliver(rt, m, RT_DELIVER_BYPASS_LIMIT);
		break;
	}
	case RT_TIMER_ASK:
		rt__ask_expired(rt, e);
		break;
	case RT_TIMER_HOUSEKEEPING:
		rt__housekeeping(rt);
		break;
	case RT_TIMER_INBOX_SWEEP:
		rt__inbox_sweep(rt, e);
		break;
	}
}

void
rt__timers_fire_due(rt_runtime *rt, uint64_t now_ms)
{
	RT_ASSERT(rt->cfg.deterministic);
	rt__timers *t = &rt->timers;
	rt__timer copy;
	for (;;) {
		pthread_mutex_lock(&t->lock);
		bool due = pop_due_locked(rt, now_ms, &copy);
		pthread_mutex_unlock(&t->lock);
		if (!due)
			break;
		if (copy.deadline_ms > rt->virtual_ms)
			rt->virtual_ms = copy.deadline_ms;
		act(rt, &copy);
	}
}

static void *
timer_main(void *arg)
{
	rt_runtime *rt = arg;
	rt__timers *t = &rt->timers;
	rt__timer batch[FIRE_BATCH];
	rt_thread_short_slice();
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		if (t->count == 0) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		uint64_t now = rt__clock_monotonic_ms();
		uint64_t deadline = t->heap[0]->deadline_ms;
		if (deadline > now) {
			struct timespec ts;
			rt__clock_deadline(deadline - now, &ts);
			pthread_cond_timedwait(&t->cond, &t->lock, &ts);
			continue;
		}
		uint32_t n = 0;
		while (n < FIRE_BATCH && pop_due_locked(rt, now, &batch[n]))
			n++;
		pthread_mutex_unlock(&t->lock);
		for (uint32_t i = 0; i < n; i++)
			act(rt, &batch[i]);
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int
rt__timers_start_thread(rt_runtime *rt)
{
	rt__timers *t = &rt->timers;
	pthread_mutex_lock(&t->lock);
	t->stop = false;
	int rc = pthread_create(&t->thread, NULL, timer_main, rt);
	t->thread_started = rc == 0;
	pthread_mutex_unlock(&t->lock);
	return rc == 0 ? 0 : RT_ENOMEM;
}

void
rt__timers_stop_thread(rt_runtime *rt)
{
	rt__timers *t = &rt->timers;
	pthread_mutex_lock(&t->lock);
	bool started = t->thread_started;
	t->stop = true;
	t->thread_started = false;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (started)
		pthread_join(t->thread, NULL);
}

/* ---- public ------------------------------------------------------------ */

int
rt_timer_start(rt_runtime *rt, rt_addr to, uint32_t type, const void *payload,
	uint32_t size, uint64_t delay_ms, uint64_t period_ms,
	rt_timer_id *timer_out)
{
	RT_ASSERT(rt != NULL);
	if (size > RT_TIMER_PAYLOAD_BYTES_MAX)
		return RT_ETOOBIG;
	if (size > 0 && payload == NULL)
		return RT_EINVAL;
	if (atomic_load(&rt->stopping))
		return RT_ESTOPPED;
	rt__timer proto;
	memset(&proto, 0, sizeof proto);
	proto.timer_kind = RT_TIMER_MESSAGE;
	proto.to = to;
	proto.type = type;
	proto.size = size;
	proto.period_ms = period_ms;
	if (size > 0)
		memcpy(proto.payload, payload, size);
	return rt__timer_arm(rt, &proto, delay_ms, timer_out);
}

int
rt_timer_cancel(rt_runtime *rt, rt_timer_id timer)
{
	RT_ASSERT(rt != NULL);
	return rt__timer_disarm(rt, timer);
}

uint64_t
rt_now_ms(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	if (rt->cfg.deterministic)
		return rt->virtual_ms;
	return rt__clock_monotonic_ms();
}

uint64_t
rt_now_coarse_ms(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	rt_worker *w = rt__current_worker(rt);
	if (w == NULL || rt->cfg.deterministic)
		return rt_now_ms(rt);
	/* now_ms is relative to start_ms, both of the coarse monotonic
	 * clock: the base rt_now_ms has. */
	return rt->start_ms + w->now_ms;
}

uint64_t
rt_wall_ms(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	if (rt->cfg.deterministic)
		return rt->cfg.start_time_ms + rt->virtual_ms;
	return rt__clock_wall_ms();
}

void
rt_det_advance(rt_runtime *rt, uint64_t delta_ms)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(rt->cfg.deterministic);
	uint64_t target = rt->virtual_ms + delta_ms;
	rt__timers_fire_due(rt, target);
	rt->virtual_ms = target;
}

uint64_t
rt_det_next_timer_ms(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	rt__timers *t = &rt->timers;
	pthread_mutex_lock(&t->lock);
	uint64_t next = t->count ? t->heap[0]->deadline_ms : UINT64_MAX;
	pthread_mutex_unlock(&t->lock);
	return next;
}
