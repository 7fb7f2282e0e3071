/*
 * scheduler.c — who runs which actor, and when.
 *
 * Real mode: N worker threads. Each has a small LIFO of the actors its
 * turns made runnable (RT_LIFO_SLOTS; the newest runs next on the same
 * worker: message chains such as a ring stay on one core and need no
 * wake-up, and children a turn just spawned run while still in cache;
 * the oldest overflows to the FIFO, where thieves see it; an idle actor
 * a message woke goes under the entries already there, so a parent runs
 * after the children it spawned and takes their replies in one turn,
 * not one turn each: skynet's 1,111,111 actors took 2.13 M turns with
 * every wake on top, 1.39 M with wakes under), a bounded FIFO
 * run queue of RT_RUNQ_SLOTS (as Go's scheduler: the owner pushes at the
 * tail, the owner and thieves take from the head with a CAS), and
 * overflow to a global queue in batches of half the ring. A worker with
 * nothing to do takes a batch from the global queue, then steals half of
 * a victim's queue (O(batch), never a walk of the victim's whole queue),
 * spins a little, then parks on its condition variable.
 *
 * Wake-ups: a push into a run queue wakes a parked worker only when some
 * worker is parked, so a send costs no syscall in steady state. Parking
 * announces itself (idle count, seq_cst) before re-checking every queue,
 * and a pusher checks the idle count after a seq_cst fence, so no
 * wake-up is lost. Only a push into a queue holding at most one actor
 * pays that fence: a worker that parked saw every queue empty, so the
 * push that made one non-empty (or, after a lone yielding actor that
 * wakes nobody, the next push) told it; pushes into a longer queue need
 * not, and a thief that took more than one actor passes the wake-up on
 * (as Go's spinning threads do). A fence per send was a store-buffer
 * drain per message in a fan-out.
 *
 * Fairness: a turn is bounded (actor.c); an actor that yields goes to the
 * tail of the FIFO; the LIFO is served at most RT_LIFO_STREAK_MAX
 * times in a row, then the FIFO's head once; the global queue is looked at every
 * RT_GLOBAL_CHECK_TURNS turns.
 *
 * Deterministic mode: no threads; runnable actors sit in an array and
 * rt_det_step draws one with the run PRNG.
 *
 * Invariants: an actor is in at most one of {a LIFO, a run queue,
 * the global queue, the runnable array}, because only the sender that
 * moved its pending count from 0 schedules it, and only its turn
 * re-queues it.
 */
#include "runtime/internal.h"

#include <sched.h>
#include <unistd.h>

_Thread_local rt_worker *rt__tls_worker;

/* ---- global queue ------------------------------------------------------ */

static int
global_init(rt__global_queue *q)
{
	memset(q, 0, sizeof *q);
	pthread_mutex_init(&q->lock, NULL);
	q->capacity = 1024;
	q->items = malloc(q->capacity * sizeof *q->items);
	return q->items == NULL ? RT_ENOMEM : 0;
}

static void
global_destroy(rt__global_queue *q)
{
	free(q->items);
	q->items = NULL;
	pthread_mutex_destroy(&q->lock);
}

/* Under q->lock. Growth failure is fatal: dropping a runnable actor would
 * strand its messages, and 8 bytes per actor is within any budget. */
static void
global_append_locked(rt__global_queue *q, rt_actor *a)
{
	size_t count = atomic_load_explicit(&q->count, memory_order_relaxed);
	if (count == q->capacity) {
		size_t capacity = q->capacity * 2;
		rt_actor **items = malloc(capacity * sizeof *items);
		RT_ASSERT(items != NULL);
		for (size_t i = 0; i < count; i++)
			items[i] = q->items[(q->head + i) & (q->capacity - 1)];
		free(q->items);
		q->items = items;
		q->capacity = capacity;
		q->head = 0;
	}
	q->items[(q->head + count) & (q->capacity - 1)] = a;
	atomic_store_explicit(&q->count, count + 1, memory_order_release);
}

/* Under q->lock: appends n actors with one capacity check and one
 * count update (an overflow moves half a run queue at once). */
static void
global_append_batch_locked(rt__global_queue *q, rt_actor *const *batch,
	size_t n)
{
	size_t count = atomic_load_explicit(&q->count, memory_order_relaxed);
	while (count + n > q->capacity) {
		size_t capacity = q->capacity * 2;
		rt_actor **items = malloc(capacity * sizeof *items);
		RT_ASSERT(items != NULL); /* see global_append_locked */
		for (size_t i = 0; i < count; i++)
			items[i] = q->items[(q->head + i) & (q->capacity - 1)];
		free(q->items);
		q->items = items;
		q->capacity = capacity;
		q->head = 0;
	}
	size_t mask = q->capacity - 1;
	for (size_t i = 0; i < n; i++)
		q->items[(q->head + count + i) & mask] = batch[i];
	atomic_store_explicit(&q->count, count + n, memory_order_release);
}

static rt_actor *
global_take_locked(rt__global_queue *q)
{
	size_t count = atomic_load_explicit(&q->count, memory_order_relaxed);
	if (count == 0)
		return NULL;
	rt_actor *a = q->items[q->head];
	q->head = (q->head + 1) & (q->capacity - 1);
	atomic_store_explicit(&q->count, count - 1, memory_order_release);
	return a;
}

/* ---- waking and parking ------------------------------------------------ */

static void
wake_one(rt_runtime *rt)
{
	pthread_mutex_lock(&rt->idle_lock);
	if (rt->idle_stack_count == 0) {
		pthread_mutex_unlock(&rt->idle_lock);
		return;
	}
	rt_worker *w = rt->idle_stack[--rt->idle_stack_count];
	w->idle_listed = false;
	atomic_fetch_sub(&rt->idle_workers, 1);
	pthread_mutex_unlock(&rt->idle_lock);
	pthread_mutex_lock(&w->park_lock);
	w->wake = true;
	pthread_cond_signal(&w->park_cond);
	pthread_mutex_unlock(&w->park_lock);
}

/* The store-load barrier between "publish work" and "is anyone parked?"
 * (and, in park, between "I am parked" and "is there work?"). A fence is
 * cheapest; ThreadSanitizer does not model fences, so under it both
 * sides use an RMW on idle_workers, which orders them just as well. */
static inline unsigned
idle_after_barrier(rt_runtime *rt)
{
#if defined(__SANITIZE_THREAD__)
	return atomic_fetch_add_explicit(&rt->idle_workers, 0, memory_order_seq_cst);
#else
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&rt->idle_workers, memory_order_relaxed);
#endif
}

static inline void
maybe_wake(rt_runtime *rt)
{
	if (idle_after_barrier(rt) != 0)
		wake_one(rt);
}

static bool
work_visible(rt_runtime *rt)
{
	if (atomic_load_explicit(&rt->global.count, memory_order_acquire) != 0)
		return true;
	for (uint32_t i = 0; i < rt->workers_count; i++) {
		rt__runq *q = &rt->workers[i].runq;
		if (atomic_load_explicit(&q->tail, memory_order_acquire) !=
			atomic_load_explicit(&q->head, memory_order_acquire))
			return true;
	}
	return false;
}

static void
park(rt_worker *w)
{
	rt_runtime *rt = w->rt;
	pthread_mutex_lock(&rt->idle_lock);
	RT_ASSERT(rt->idle_stack_count < RT_WORKERS_MAX);
	rt->idle_stack[rt->idle_stack_count++] = w;
	w->idle_listed = true;
	atomic_fetch_add(&rt->idle_workers, 1);
	pthread_mutex_unlock(&rt->idle_lock);
	(void)idle_after_barrier(rt);
	if (work_visible(rt) || atomic_load(&rt->workers_exit)) {
		pthread_mutex_lock(&rt->idle_lock);
		if (w->idle_listed) {
			for (uint32_t i = 0; i < rt->idle_stack_count; i++) {
				if (rt->idle_stack[i] == w) {
					rt->idle_stack[i] =
						rt->idle_stack[--rt->idle_stack_count];
					break;
				}
			}
			w->idle_listed = false;
			atomic_fetch_sub(&rt->idle_workers, 1);
		}
		pthread_mutex_unlock(&rt->idle_lock);
		return;
	}
	pthread_mutex_lock(&w->park_lock);
	while (!w->wake && !atomic_load(&rt->workers_exit))
		pthread_cond_wait(&w->park_cond, &w->park_lock);
	w->wake = false;
	pthread_mutex_unlock(&w->park_lock);
}

/* ---- local run queue --------------------------------------------------- */

/* Moves half the full queue plus a to the global queue. False if thieves
 * raced us (the caller retries the fast path). */
static bool
runq_overflow(rt_worker *w, rt_actor *a, unsigned head, unsigned tail)
{
	rt__runq *q = &w->runq;
	enum { HALF = RT_RUNQ_SLOTS / 2 };
	rt_actor *batch[HALF + 1];
	RT_ASSERT(tail - head == RT_RUNQ_SLOTS);
	for (unsigned i = 0; i < HALF; i++)
		batch[i] = atomic_load_explicit(
			&q->slots[(head + i) & (RT_RUNQ_SLOTS - 1)],
			memory_order_relaxed);
	if (!atomic_compare_exchange_strong_explicit(&q->head, &head,
		head + HALF, memory_order_acq_rel, memory_order_relaxed))
		return false;
	batch[HALF] = a;
	rt_runtime *rt = w->rt;
	pthread_mutex_lock(&rt->global.lock);
	global_append_batch_locked(&rt->global, batch, HALF + 1);
	pthread_mutex_unlock(&rt->global.lock);
	return true;
}

/* Owner only. Returns the queue length before the push. */
static unsigned
runq_push(rt_worker *w, rt_actor *a)
{
	rt__runq *q = &w->runq;
	for (;;) {
		unsigned head = atomic_load_explicit(&q->head, memory_order_acquire);
		unsigned tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
		if (tail - head < RT_RUNQ_SLOTS) {
			atomic_store_explicit(&q->slots[tail & (RT_RUNQ_SLOTS - 1)],
				a, memory_order_relaxed);
			atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
			return tail - head;
		}
		if (runq_overflow(w, a, head, tail))
			return RT_RUNQ_SLOTS;
	}
}

/* Owner only. */
static rt_actor *
runq_pop(rt_worker *w)
{
	rt__runq *q = &w->runq;
	for (;;) {
		unsigned head = atomic_load_explicit(&q->head, memory_order_acquire);
		unsigned tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
		if (tail == head)
			return NULL;
		rt_actor *a = atomic_load_explicit(
			&q->slots[head & (RT_RUNQ_SLOTS - 1)], memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(&q->head, &head,
			head + 1, memory_order_acq_rel, memory_order_relaxed))
			return a;
	}
}

/* Steals half of victim's queue into w's (which is empty); returns one
 * of them to run now, or NULL. */
static rt_actor *
runq_steal(rt_worker *w, rt_worker *victim)
{
	rt__runq *q = &victim->runq;
	rt__runq *mine = &w->runq;
	unsigned my_tail = atomic_load_explicit(&mine->tail, memory_order_relaxed);
	RT_ASSERT(my_tail == atomic_load_explicit(&mine->head, memory_order_relaxed));
	for (;;) {
		unsigned head = atomic_load_explicit(&q->head, memory_order_acquire);
		unsigned tail = atomic_load_explicit(&q->tail, memory_order_acquire);
		unsigned n = tail - head;
		n = n - n / 2;
		if (n == 0)
			return NULL;
		if (n > RT_RUNQ_SLOTS / 2)
			continue; /* torn read of head/tail: retry */
		for (unsigned i = 0; i < n; i++) {
			rt_actor *a = atomic_load_explicit(
				&q->slots[(head + i) & (RT_RUNQ_SLOTS - 1)],
				memory_order_relaxed);
			atomic_store_explicit(
				&mine->slots[(my_tail + i) & (RT_RUNQ_SLOTS - 1)], a,
				memory_order_relaxed);
		}
		if (!atomic_compare_exchange_weak_explicit(&q->head, &head,
			head + n, memory_order_acq_rel, memory_order_relaxed))
			continue;
		n--;
		rt_actor *a = atomic_load_explicit(
			&mine->slots[(my_tail + n) & (RT_RUNQ_SLOTS - 1)],
			memory_order_relaxed);
		if (n > 0) {
			atomic_store_explicit(&mine->tail, my_tail + n,
				memory_order_release);
			/* More than one to run: pass the wake-up on (pushes
			 * into a busy queue wake nobody). */
			maybe_wake(w->rt);
		}
		atomic_fetch_add_explicit(&w->steals, 1, memory_order_relaxed);
		return a;
	}
}

/* Takes a batch from the global queue: one to run, the rest into w's
 * queue (which has room: called only when it is empty or nearly). */
static rt_actor *
global_take(rt_worker *w)
{
	rt_runtime *rt = w->rt;
	rt__global_queue *g = &rt->global;
	if (atomic_load_explicit(&g->count, memory_order_acquire) == 0)
		return NULL;
	pthread_mutex_lock(&g->lock);
	size_t count = atomic_load_explicit(&g->count, memory_order_relaxed);
	size_t n = count / rt->workers_count + 1;
	if (n > count)
		n = count;
	rt__runq *q = &w->runq;
	unsigned used = atomic_load_explicit(&q->tail, memory_order_relaxed) -
		atomic_load_explicit(&q->head, memory_order_acquire);
	size_t room = RT_RUNQ_SLOTS / 2 > used ? RT_RUNQ_SLOTS / 2 - used : 0;
	if (n > room + 1)
		n = room + 1;
	rt_actor *first = global_take_locked(g);
	/* The rest in order behind the local queue's tail, published with
	 * one store (only this worker pushes there). */
	unsigned tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	size_t mask = g->capacity - 1;
	for (size_t i = 1; i < n; i++)
		atomic_store_explicit(&q->slots[(tail + i - 1) & (RT_RUNQ_SLOTS - 1)],
			g->items[(g->head + i - 1) & mask], memory_order_relaxed);
	if (n > 1) {
		g->head = (g->head + n - 1) & mask;
		atomic_store_explicit(&g->count, atomic_load_explicit(&g->count,
			memory_order_relaxed) - (n - 1), memory_order_release);
		atomic_store_explicit(&q->tail, tail + (unsigned)(n - 1),
			memory_order_release);
	}
	pthread_mutex_unlock(&g->lock);
	return first;
}

static rt_actor *
steal_any(rt_worker *w)
{
	rt_runtime *rt = w->rt;
	uint32_t n = rt->workers_count;
	if (n < 2)
		return NULL;
	uint32_t start = (uint32_t)(rt__prng_next(&w->prng) % n);
	for (uint32_t i = 0; i < n; i++) {
		rt_worker *victim = &rt->workers[(start + i) % n];
		if (victim == w)
			continue;
		rt_actor *a = runq_steal(w, victim);
		if (a != NULL)
			return a;
	}
	return NULL;
}

/* Owner only. */
static rt_actor *
lifo_pop(rt_worker *w)
{
	RT_ASSERT(w->lifo_count > 0);
	w->lifo_count--;
	return w->lifo[(w->lifo_base + w->lifo_count) & (RT_LIFO_SLOTS - 1)];
}

/* Owner only. Returns the oldest entry it pushed out, or NULL. */
static rt_actor *
lifo_push(rt_worker *w, rt_actor *a)
{
	rt_actor *out = NULL;
	if (w->lifo_count == RT_LIFO_SLOTS) {
		out = w->lifo[w->lifo_base];
		w->lifo_base = (w->lifo_base + 1) & (RT_LIFO_SLOTS - 1);
		w->lifo_count--;
	}
	w->lifo[(w->lifo_base + w->lifo_count) & (RT_LIFO_SLOTS - 1)] = a;
	w->lifo_count++;
	return out;
}

static rt_actor *
find_work(rt_worker *w)
{
	w->tick++;
	if (w->tick % RT_GLOBAL_CHECK_TURNS == 0) {
		rt_actor *a = global_take(w);
		if (a != NULL)
			return a;
	}
	if (w->lifo_count > 0 && w->runnext_streak < RT_LIFO_STREAK_MAX) {
		w->runnext_streak++;
		return lifo_pop(w);
	}
	w->runnext_streak = 0;
	rt_actor *a = runq_pop(w);
	if (a != NULL)
		return a;
	if (w->lifo_count > 0)
		return lifo_pop(w);
	a = global_take(w);
	if (a != NULL)
		return a;
	return steal_any(w);
}

/* Owner only: the actor find_work will most likely return next (a hint:
 * a thief may take it first). */
static rt_actor *
peek_next(rt_worker *w)
{
	if (w->lifo_count > 0)
		return w->lifo[(w->lifo_base + w->lifo_count - 1u) &
			(RT_LIFO_SLOTS - 1)];
	rt__runq *q = &w->runq;
	unsigned head = atomic_load_explicit(&q->head, memory_order_relaxed);
	if (atomic_load_explicit(&q->tail, memory_order_relaxed) == head)
		return NULL;
	return atomic_load_explicit(&q->slots[head & (RT_RUNQ_SLOTS - 1)],
		memory_order_relaxed);
}

static void *
worker_main(void *arg)
{
	rt_worker *w = arg;
	rt_runtime *rt = w->rt;
	rt__tls_worker = w;
	/* A worker sleeps until a message needs it, then runs for µs. */
	rt_thread_short_slice();
	w->now_ms = rt__now_relative_ms(rt);
	while (!atomic_load_explicit(&rt->workers_exit, memory_order_acquire)) {
		rt_actor *a = find_work(w);
		if (w->tick % RT_CLOCK_REFRESH_TURNS == 0)
			w->now_ms = rt__now_relative_ms(rt);
		for (uint32_t spin = 0; a == NULL && spin < RT_SPIN_ROUNDS; spin++) {
			if (spin % 16 == 15)
				sched_yield();
			else
				rt__cpu_relax();
			a = global_take(w);
			if (a == NULL)
				a = steal_any(w);
		}
		if (a != NULL) {
			/* Load the next actor's header while this one runs: an
			 * actor made runnable by another worker's send is a
			 * cache miss otherwise, taken at the start of its turn. */
			rt_actor *next = peek_next(w);
			if (next != NULL)
				__builtin_prefetch(next, 1, 3);
			/* a's header came in the same way a turn ago: start on
			 * its newest message while the turn sets up. */
			rt_message *newest = rt__actor_newest(a);
			if (newest != NULL)
				__builtin_prefetch(newest, 1, 3);
			rt__turn(w, a);
			continue;
		}
		park(w);
		w->now_ms = rt__now_relative_ms(rt);
	}
	rt__tls_worker = NULL;
	return NULL;
}

/* Owner only: puts a under the LIFO's other entries (it runs after
 * them); returns a itself when the LIFO is full (it goes to the FIFO). */
static rt_actor *
lifo_push_under(rt_worker *w, rt_actor *a)
{
	if (w->lifo_count == RT_LIFO_SLOTS)
		return a;
	w->lifo_base = (w->lifo_base - 1u) & (RT_LIFO_SLOTS - 1);
	w->lifo[w->lifo_base] = a;
	w->lifo_count++;
	return NULL;
}

/* ---- scheduling entry points ------------------------------------------- */

static void
runnable_append(rt_runtime *rt, rt_actor *a)
{
	if (rt->runnable_count == rt->runnable_capacity) {
		size_t capacity = rt->runnable_capacity ? rt->runnable_capacity * 2 : 1024;
		rt_actor **items = realloc(rt->runnable, capacity * sizeof *items);
		RT_ASSERT(items != NULL); /* see global_append_locked */
		rt->runnable = items;
		rt->runnable_capacity = capacity;
	}
	rt->runnable[rt->runnable_count++] = a;
}

void
rt__schedule(rt_runtime *rt, rt_actor *a)
{
	if (rt->cfg.deterministic) {
		runnable_append(rt, a);
		return;
	}
	rt_worker *w = rt__current_worker(rt);
	if (w != NULL && !atomic_load_explicit(&rt->workers_exit,
		memory_order_relaxed)) {
		rt_actor *old = lifo_push(w, a);
		/* Only a queue that was (nearly) empty can have a parked
		 * worker that has not been told: see "Wake-ups" above. */
		if (old != NULL && runq_push(w, old) <= 1)
			maybe_wake(rt);
		return;
	}
	pthread_mutex_lock(&rt->global.lock);
	global_append_locked(&rt->global, a);
	pthread_mutex_unlock(&rt->global.lock);
	maybe_wake(rt);
}

void
rt__schedule_woken(rt_runtime *rt, rt_actor *a)
{
	rt_worker *w = rt__current_worker(rt);
	if (rt->cfg.deterministic || w == NULL || atomic_load_explicit(
		&rt->workers_exit, memory_order_relaxed)) {
		rt__schedule(rt, a);
		return;
	}
	/* Under what this worker's turns made runnable before: the actors
	 * a turn spawned run first, and a parent their replies wake takes
	 * them in one turn rather than one turn each. */
	rt_actor *out = lifo_push_under(w, a);
	if (out != NULL && runq_push(w, out) <= 1)
		maybe_wake(rt);
}

void
rt__schedule_behind(rt_runtime *rt, rt_actor *a)
{
	if (rt->cfg.deterministic) {
		runnable_append(rt, a);
		return;
	}
	pthread_mutex_lock(&rt->global.lock);
	global_append_locked(&rt->global, a);
	pthread_mutex_unlock(&rt->global.lock);
	maybe_wake(rt);
}

void
rt__reschedule(rt_worker *w, rt_actor *a)
{
	rt_runtime *rt = w->rt;
	if (rt->cfg.deterministic) {
		runnable_append(rt, a);
		return;
	}
	/* A lone yielding actor runs again here next; wake a helper only
	 * when others are already waiting behind it. */
	if (runq_push(w, a) > 0)
		maybe_wake(rt);
}

/* ---- life cycle ------------------------------------------------------- */

static int
worker_init(rt_runtime *rt, rt_worker *w, uint32_t index)
{
	memset(w, 0, sizeof *w);
	w->rt = rt;
	w->index = index;
	rt__cache_init(&w->cache);
	w->counters.owned = true;
	rt__prng_seed(&w->prng, rt->cfg.seed ^ (0xa0761d6478bd642full * (index + 1u)));
	pthread_mutex_init(&w->park_lock, NULL);
	pthread_cond_init(&w->park_cond, NULL);
	return 0;
}

static void
worker_destroy(rt_runtime *rt, rt_worker *w)
{
	rt__cache_flush(rt, &w->cache);
	pthread_mutex_destroy(&w->park_lock);
	pthread_cond_destroy(&w->park_cond);
}

int
rt__scheduler_init(rt_runtime *rt)
{
	uint32_t n = rt->cfg.workers;
	if (rt->cfg.deterministic) {
		n = 1;
	} else if (n == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		n = cores > 0 ? (uint32_t)cores : 1u;
	}
	if (n > RT_WORKERS_MAX)
		n = RT_WORKERS_MAX;
	rt->workers = aligned_alloc(64, ((sizeof(rt_worker) * n + 63u) / 64u) * 64u);
	if (rt->workers == NULL)
		return RT_ENOMEM;
	rt->workers_count = n;
	for (uint32_t i = 0; i < n; i++)
		worker_init(rt, &rt->workers[i], i);
	if (rt->cfg.deterministic)
		rt->det_worker = &rt->workers[0];
	pthread_mutex_init(&rt->idle_lock, NULL);
	if (global_init(&rt->global) != 0) {
		rt__scheduler_destroy(rt);
		return RT_ENOMEM;
	}
	return 0;
}

void
rt__scheduler_destroy(rt_runtime *rt)
{
	if (rt->workers != NULL) {
		for (uint32_t i = 0; i < rt->workers_count; i++)
			worker_destroy(rt, &rt->workers[i]);
		free(rt->workers);
		rt->workers = NULL;
	}
	global_destroy(&rt->global);
	pthread_mutex_destroy(&rt->idle_lock);
	free(rt->runnable);
	rt->runnable = NULL;
}

int
rt__scheduler_start(rt_runtime *rt)
{
	if (rt->cfg.deterministic)
		return 0;
	for (uint32_t i = 0; i < rt->workers_count; i++) {
		rt_worker *w = &rt->workers[i];
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			rt__scheduler_stop(rt);
			return RT_ENOMEM;
		}
		w->thread_started = true;
	}
	return 0;
}

void
rt__scheduler_stop(rt_runtime *rt)
{
	atomic_store(&rt->workers_exit, true);
	for (uint32_t i = 0; i < rt->workers_count; i++) {
		rt_worker *w = &rt->workers[i];
		pthread_mutex_lock(&w->park_lock);
		w->wake = true;
		pthread_cond_signal(&w->park_cond);
		pthread_mutex_unlock(&w->park_lock);
	}
	for (uint32_t i = 0; i < rt->workers_count; i++) {
		rt_worker *w = &rt->workers[i];
		if (w->thread_started) {
			pthread_join(w->thread, NULL);
			w->thread_started = false;
		}
	}
}

/* Takes any runnable actor; only when no worker thread runs. */
static rt_actor *
drain_take(rt_runtime *rt)
{
	if (rt->cfg.deterministic) {
		if (rt->runnable_count == 0)
			return NULL;
		return rt->runnable[--rt->runnable_count];
	}
	for (uint32_t i = 0; i < rt->workers_count; i++) {
		rt_worker *w = &rt->workers[i];
		if (w->lifo_count > 0)
			return lifo_pop(w);
		rt_actor *a = runq_pop(w);
		if (a != NULL)
			return a;
	}
	pthread_mutex_lock(&rt->global.lock);
	rt_actor *a = global_take_locked(&rt->global);
	pthread_mutex_unlock(&rt->global.lock);
	return a;
}

void
rt__drain(rt_runtime *rt)
{
	rt_worker *saved = rt__tls_worker;
	rt_worker *w = &rt->workers[0];
	rt__tls_worker = w;
	rt_actor *a;
	/* Sends are refused while stopping, so this ends: each actor has a
	 * finite mailbox and nothing new arrives. */
	while ((a = drain_take(rt)) != NULL)
		rt__turn(w, a);
	rt__tls_worker = saved;
}

/* ---- deterministic mode ------------------------------------------------ */

bool
rt_det_step(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(rt->cfg.deterministic);
	if (rt->runnable_count == 0)
		return false;
	size_t i = (size_t)(rt__prng_next(&rt->det_prng) % rt->runnable_count);
	rt_actor *a = rt->runnable[i];
	rt->runnable[i] = rt->runnable[--rt->runnable_count];
	rt_worker *saved = rt__tls_worker;
	rt__tls_worker = rt->det_worker;
	rt__turn(rt->det_worker, a);
	rt__tls_worker = saved;
	return true;
}

uint64_t
rt_det_run_until_idle(rt_runtime *rt, uint64_t max_turns)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(rt->cfg.deterministic);
	uint64_t turns = 0;
	while ((max_turns == 0 || turns < max_turns) && rt_det_step(rt))
		turns++;
	return turns;
}
