/*
 * runtime.c — a runtime's life cycle, kinds, seams, statistics, errors
 * and byte buffers.
 *
 * Role: rt_create wires the parts (registry, pools, scheduler, timers,
 * asks, inboxes); rt_start starts worker and timer threads (real mode);
 * rt_stop refuses new sends, stops timers and workers, runs what is
 * still queued on the calling thread, then passivates every actor
 * (on_passivate, save, free_state); rt_destroy frees everything.
 *
 * Invariants: no global mutable state -- everything hangs off rt_runtime,
 * so several runtimes live in one process; the only thread-local is the
 * current worker (scheduler.c).
 * Does not: know any actor kind, disk or network.
 */
#include "runtime/internal.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void
rt__assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	abort();
}

const char *
rt_strerror(int code)
{
	switch (code) {
	case RT_OK: return "ok";
	case RT_ENOMEM: return "out of memory";
	case RT_EMAILBOX_FULL: return "mailbox full";
	case RT_ETIMEDOUT: return "timed out";
	case RT_ENOTFOUND: return "not found";
	case RT_EINVAL: return "invalid argument";
	case RT_ESTOPPED: return "runtime stopped";
	case RT_EUNAVAILABLE: return "unavailable";
	case RT_EIO: return "i/o error";
	case RT_ECORRUPT: return "corrupt data";
	case RT_EEXIST: return "already exists";
	case RT_ETOOBIG: return "too big";
	}
	return "unknown error";
}

void
rt_config_default(rt_config *cfg)
{
	RT_ASSERT(cfg != NULL);
	memset(cfg, 0, sizeof *cfg);
	cfg->workers = 0;
	cfg->deterministic = false;
	cfg->seed = 1;
	cfg->passivate_idle_ms = 10u * 60u * 1000u;
	cfg->memory_budget_bytes = 0;
	cfg->log_level = RT_LOG_INFO;
}

static int
housekeeping_arm(rt_runtime *rt)
{
	uint64_t idle = rt->cfg.passivate_idle_ms;
	if (idle == 0)
		return 0;
	uint64_t every = idle / 4;
	if (every < RT_HOUSEKEEPING_MS_MIN)
		every = RT_HOUSEKEEPING_MS_MIN;
	if (every > RT_HOUSEKEEPING_MS_MAX)
		every = RT_HOUSEKEEPING_MS_MAX;
	rt__timer proto;
	memset(&proto, 0, sizeof proto);
	proto.timer_kind = RT_TIMER_HOUSEKEEPING;
	proto.period_ms = every;
	return rt__timer_arm(rt, &proto, every, &rt->housekeeping_timer);
}

/*
 * Where this runtime's correlation ids start. Inbox ids restart at 1 in
 * every life of a node, so a reply still on its way to a previous life
 * (a peer answering an ask the crashed process made) reaches an inbox of
 * the new one; it must not match one of its asks. Each life starts its
 * correlations at a 64-bit point of its own: drawn from the seed in
 * deterministic mode (the simulator seeds every restart afresh), from
 * the kernel otherwise. Below 2^63, never 0, so they never wrap.
 */
static uint64_t
correlation_start(const rt_config *cfg)
{
	uint64_t x = cfg->seed ^ 0x9e3779b97f4a7c15ull;
	if (!cfg->deterministic) {
		uint64_t r = 0;
		if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			r = ((uint64_t)ts.tv_sec * 1000000000u +
				(uint64_t)ts.tv_nsec) ^ (uint64_t)getpid() << 32;
		}
		x ^= r;
	}
	return (rt__splitmix64(&x) >> 2) | 1u;
}

int
rt_create(const rt_config *cfg, rt_runtime **out)
{
	RT_ASSERT(cfg != NULL);
	RT_ASSERT(out != NULL);
	size_t size = (sizeof(rt_runtime) + 63u) / 64u * 64u;
	rt_runtime *rt = aligned_alloc(64, size);
	if (rt == NULL)
		return RT_ENOMEM;
	memset(rt, 0, size);
	rt->cfg = *cfg;
	if (cfg->node_name != NULL)
		snprintf(rt->node_name, sizeof rt->node_name, "%s", cfg->node_name);
	rt->cfg.node_name = rt->node_name;
	rt__log_init(rt);
	rt__pool_init(&rt->pool);
	if (rt__registry_init(&rt->registry) != 0)
		goto fail_registry;
	if (rt__timers_init(&rt->timers) != 0)
		goto fail_timers;
	pthread_mutex_init(&rt->asks.lock, NULL);
	rt__map_init(&rt->asks.pending);
	pthread_mutex_init(&rt->inbox_lock, NULL);
	rt__map_init(&rt->inboxes);
	pthread_mutex_init(&rt->prng_lock, NULL);
	pthread_mutex_init(&rt->passes_lock, NULL);
	pthread_mutex_init(&rt->snapshot_lock, NULL);
	pthread_mutex_init(&rt->deferred_lock, NULL);
	rt__map_init(&rt->deferred);
	rt->next_inbox_id = 1;
	atomic_store(&rt->next_correlation, correlation_start(cfg));
	rt__prng_seed(&rt->prng, cfg->seed ^ 0x5851f42d4c957f2dull);
	rt__prng_seed(&rt->det_prng, cfg->seed);
	rt->trace_hash = 0xcbf29ce484222325ull;
	rt->start_ms = cfg->deterministic ? 0 : rt__clock_coarse_ms();
	if (rt__scheduler_init(rt) != 0)
		goto fail_scheduler;
	if (housekeeping_arm(rt) != 0)
		goto fail_housekeeping;
	*out = rt;
	return 0;
fail_housekeeping:
	rt__scheduler_destroy(rt);
fail_scheduler:
	rt__map_free(&rt->deferred);
	pthread_mutex_destroy(&rt->deferred_lock);
	pthread_mutex_destroy(&rt->passes_lock);
	pthread_mutex_destroy(&rt->snapshot_lock);
	pthread_mutex_destroy(&rt->prng_lock);
	rt__map_free(&rt->inboxes);
	pthread_mutex_destroy(&rt->inbox_lock);
	rt__asks_destroy(rt);
	rt__timers_destroy(rt);
fail_timers:
	rt__registry_destroy(&rt->registry);
fail_registry:
	rt__pool_destroy(&rt->pool);
	free(rt);
	return RT_ENOMEM;
}

int
rt_start(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	if (atomic_load(&rt->stopping))
		return RT_ESTOPPED;
	if (atomic_exchange(&rt->started, true))
		return RT_EEXIST;
	if (rt->cfg.deterministic)
		return 0;
	int rc = rt__scheduler_start(rt);
	if (rc != 0)
		return rc;
	rc = rt__timers_start_thread(rt);
	if (rc != 0)
		rt__scheduler_stop(rt);
	return rc;
}

/* With no other thread running: every actor leaves through rt__actor_stop. */
static void
passivate_all(rt_runtime *rt)
{
	rt_worker *saved = rt__tls_worker;
	rt__tls_worker = &rt->workers[0];
	for (uint32_t i = 0; i < RT_REGISTRY_SHARDS; i++) {
		rt__shard *s = &rt->registry.shards[i];
		for (uint32_t b = 0; s->count > 0 && b <= s->mask; b++) {
			rt_actor *a = rt__slot_actor(s->slots[b]);
			if (a == NULL)
				continue;
			s->slots[b].word = 0;
			s->count--;
			rt__actor_stop(rt, a);
		}
		RT_ASSERT(s->count == 0);
	}
	rt__tls_worker = saved;
}

/* Passivation passes still counting when everything is stopped: their
 * requests went with the actors, so they end here. */
static void
passes_abandon(rt_runtime *rt)
{
	for (uint32_t i = 0; i < RT_PASSIVATE_PASSES_MAX; i++) {
		pthread_mutex_lock(&rt->passes_lock);
		rt__pass *pass = rt->passes[i];
		rt->passes[i] = NULL;
		pthread_mutex_unlock(&rt->passes_lock);
		if (pass == NULL)
			continue;
		if (pass->done != NULL)
			pass->done(pass->done_arg, RT_ESTOPPED);
		free(pass);
	}
}

int
rt_stop(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	if (rt->stopped)
		return 0;
	RT_ASSERT(rt__current_worker(rt) == NULL); /* not from an actor */
	atomic_store(&rt->stopping, true);
	bool started = atomic_load(&rt->started);
	if (!rt->cfg.deterministic) {
		rt__timers_stop_thread(rt);
		rt__scheduler_stop(rt);
	}
	if (started || rt->cfg.deterministic)
		rt__drain(rt);
	passivate_all(rt);
	passes_abandon(rt);
	rt->stopped = true;
	rt_log(rt, RT_LOG_DEBUG, "runtime", "stopped");
	return 0;
}

void
rt_destroy(rt_runtime *rt)
{
	if (rt == NULL)
		return;
	rt_stop(rt);
	/* Inboxes the owner left behind. */
	if (rt->inboxes.keys != NULL) {
		for (uint32_t i = 0; i <= rt->inboxes.mask; i++) {
			rt_inbox *inbox = rt->inboxes.keys[i] ? rt->inboxes.values[i] : NULL;
			if (inbox != NULL) {
				rt->inboxes.keys[i] = 0;
				rt_message *m = inbox->head;
				while (m != NULL) {
					rt_message *next = m->next;
					rt_message_free(rt, m);
					m = next;
				}
				rt__map_free(&inbox->asks);
				pthread_cond_destroy(&inbox->cond);
				pthread_mutex_destroy(&inbox->lock);
				free(inbox);
			}
		}
	}
	rt__map_free(&rt->inboxes);
	pthread_mutex_destroy(&rt->inbox_lock);
	rt__asks_destroy(rt);
	rt__timers_destroy(rt);
	rt__scheduler_destroy(rt);
	rt__registry_destroy(&rt->registry);
	/* Every actor left through actor_free, which took its FIFO. */
	RT_ASSERT(rt->deferred.count == 0);
	rt__map_free(&rt->deferred);
	pthread_mutex_destroy(&rt->deferred_lock);
	pthread_mutex_destroy(&rt->passes_lock);
	pthread_mutex_destroy(&rt->snapshot_lock);
	free(rt->snapshot_addrs);
	pthread_mutex_destroy(&rt->prng_lock);
	rt__pool_destroy(&rt->pool);
	free(rt);
}

int
rt_set_node_id(rt_runtime *rt, uint16_t node_id)
{
	RT_ASSERT(rt != NULL);
	if (node_id == 0)
		return RT_EINVAL;
	unsigned expected = 0;
	if (atomic_compare_exchange_strong(&rt->node_id, &expected, node_id) ||
		expected == node_id)
		return 0;
	return RT_EEXIST;
}

uint16_t
rt_node_id(const rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	return (uint16_t)atomic_load(&((rt_runtime *)rt)->node_id);
}

int
rt_register_kind(rt_runtime *rt, uint32_t kind, const rt_actor_ops *ops)
{
	RT_ASSERT(rt != NULL);
	if (ops == NULL || ops->on_message == NULL)
		return RT_EINVAL;
	if (kind == RT_KIND_NONE || kind >= RT_KINDS_MAX || kind == RT_KIND_INBOX)
		return RT_EINVAL;
	if (atomic_load(&rt->started) && !rt->cfg.deterministic)
		return RT_EINVAL;
	if (rt->kinds[kind].ops != NULL)
		return RT_EEXIST;
	size_t bytes = sizeof(rt_actor) + ((ops->state_size + 7u) & ~(size_t)7u);
	if (bytes > UINT32_MAX)
		return RT_ETOOBIG;
	rt->kinds[kind].ops = ops;
	rt->kinds[kind].mailbox_max = ops->mailbox_messages_max != 0
		? ops->mailbox_messages_max : RT_MAILBOX_MESSAGES_DEFAULT;
	if (rt->kinds[kind].mailbox_max > INT32_MAX / 2)
		rt->kinds[kind].mailbox_max = INT32_MAX / 2;
	rt->kinds[kind].actor_bytes = (uint32_t)bytes;
	return 0;
}

const rt_actor_ops *
rt_kind_ops(const rt_runtime *rt, uint32_t kind)
{
	RT_ASSERT(rt != NULL);
	if (kind == RT_KIND_NONE || kind >= RT_KINDS_MAX)
		return NULL;
	return rt->kinds[kind].ops;
}

void
rt_set_store(rt_runtime *rt, const rt_store_ops *ops, void *arg)
{
	RT_ASSERT(rt != NULL);
	if (ops == NULL) {
		rt->has_store = false;
		return;
	}
	RT_ASSERT(ops->load != NULL);
	RT_ASSERT(ops->save != NULL);
	rt->store = *ops;
	rt->store_arg = arg;
	rt->has_store = true;
}

void
rt_set_route(rt_runtime *rt, const rt_route_ops *ops, void *arg)
{
	RT_ASSERT(rt != NULL);
	if (ops == NULL) {
		rt->has_route = false;
		return;
	}
	RT_ASSERT(ops->route != NULL);
	rt->route = *ops;
	rt->route_arg = arg;
	rt->has_route = true;
}

uint64_t
rt_random_u64(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	if (rt->cfg.deterministic)
		return rt__prng_next(&rt->det_prng);
	rt_worker *w = rt__current_worker(rt);
	if (w != NULL)
		return rt__prng_next(&w->prng);
	pthread_mutex_lock(&rt->prng_lock);
	uint64_t x = rt__prng_next(&rt->prng);
	pthread_mutex_unlock(&rt->prng_lock);
	return x;
}

uint64_t
rt_trace_hash(rt_runtime *rt)
{
	RT_ASSERT(rt != NULL);
	return rt->trace_hash;
}

long long
rt__counters_sum(rt_runtime *rt, size_t offset)
{
	RT_ASSERT(offset + sizeof(atomic_llong) <= sizeof(rt__counters));
	long long sum = atomic_load_explicit(
		(atomic_llong *)(void *)((char *)&rt->counters + offset),
		memory_order_relaxed);
	for (uint32_t i = 0; i < rt->workers_count; i++)
		sum += atomic_load_explicit((atomic_llong *)(void *)(
			(char *)&rt->workers[i].counters + offset),
			memory_order_relaxed);
	return sum;
}

void
rt_get_stats(rt_runtime *rt, rt_stats *out)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(out != NULL);
	memset(out, 0, sizeof *out);
	long long active = rt__counters_sum(rt, offsetof(rt__counters, actors_active));
	out->actors_active = active > 0 ? (uint64_t)active : 0;
	out->actors_passivated_total = (uint64_t)rt__counters_sum(rt,
		offsetof(rt__counters, passivated_total));
	out->actors_activated_total = (uint64_t)rt__counters_sum(rt,
		offsetof(rt__counters, activated_total));
	out->mailbox_full_total = atomic_load(&rt->mailbox_full_total);
	out->asks_timed_out_total = atomic_load(&rt->asks_timed_out_total);
	long long bytes = rt__counters_sum(rt, offsetof(rt__counters, bytes_actors));
	out->bytes_actors = bytes > 0 ? (uint64_t)bytes : 0;
	pthread_mutex_lock(&rt->pool.lock);
	out->bytes_pooled = rt->pool.chunk_bytes;
	pthread_mutex_unlock(&rt->pool.lock);
	for (uint32_t i = 0; i < rt->workers_count; i++) {
		out->messages_delivered_total += atomic_load_explicit(
			&rt->workers[i].messages_delivered, memory_order_relaxed);
		out->steals_total += atomic_load_explicit(&rt->workers[i].steals,
			memory_order_relaxed);
	}
}

/* ---- buffers ----------------------------------------------------------- */

int
rt_buffer_reserve(rt_buffer *b, size_t extra)
{
	RT_ASSERT(b != NULL);
	RT_ASSERT(b->length <= b->capacity);
	if (extra > SIZE_MAX - b->length)
		return RT_ENOMEM;
	size_t need = b->length + extra;
	if (need <= b->capacity)
		return 0;
	size_t capacity = b->capacity ? b->capacity : 64;
	while (capacity < need)
		capacity = capacity > SIZE_MAX / 2 ? need : capacity * 2;
	unsigned char *bytes = realloc(b->bytes, capacity);
	if (bytes == NULL)
		return RT_ENOMEM;
	b->bytes = bytes;
	b->capacity = capacity;
	return 0;
}

int
rt_buffer_append(rt_buffer *b, const void *bytes, size_t length)
{
	RT_ASSERT(b != NULL);
	RT_ASSERT(length == 0 || bytes != NULL);
	int rc = rt_buffer_reserve(b, length);
	if (rc != 0)
		return rc;
	if (length > 0)
		memcpy(b->bytes + b->length, bytes, length);
	b->length += length;
	return 0;
}

void
rt_buffer_free(rt_buffer *b)
{
	if (b == NULL)
		return;
	free(b->bytes);
	b->bytes = NULL;
	b->length = 0;
	b->capacity = 0;
}
