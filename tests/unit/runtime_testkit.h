/*
 * runtime_testkit.h — helpers shared by the runtime's unit tests.
 *
 * An in-memory store hook (encoded state kept per address in a small
 * table, with counters of loads and saves), a runtime factory, and
 * message helpers. Everything is static inline so each test file takes
 * only what it uses.
 */
#ifndef FLOCK_RUNTIME_TESTKIT_H
#define FLOCK_RUNTIME_TESTKIT_H

#include "runtime/runtime.h"
#include "tests/test.h"

#include <pthread.h>
#include <sched.h>

#define TK_STORE_ENTRIES_MAX 4096

typedef struct tk_entry {
	rt_addr addr;
	bool used;
	rt_buffer bytes;
} tk_entry;

typedef struct tk_store {
	pthread_mutex_t lock;
	tk_entry entries[TK_STORE_ENTRIES_MAX];
	unsigned loads;
	unsigned loads_found;
	unsigned saves;
	int fail_load; /* returned by load when non-zero */
	/* called inside save (actor context), e.g. to race a message in */
	void (*on_save)(void *arg, rt_addr addr);
	void *on_save_arg;
} tk_store;

static inline tk_entry *
tk_store_find(tk_store *s, rt_addr addr, bool create)
{
	for (int i = 0; i < TK_STORE_ENTRIES_MAX; i++)
		if (s->entries[i].used && rt_addr_equal(s->entries[i].addr, addr))
			return &s->entries[i];
	if (!create)
		return NULL;
	for (int i = 0; i < TK_STORE_ENTRIES_MAX; i++) {
		if (!s->entries[i].used) {
			s->entries[i].used = true;
			s->entries[i].addr = addr;
			return &s->entries[i];
		}
	}
	CHECK_MSG(false, "tk_store full");
	return NULL;
}

static inline int
tk_store_load(void *arg, rt_addr addr, const rt_actor_ops *ops, void *state)
{
	tk_store *s = arg;
	pthread_mutex_lock(&s->lock);
	s->loads++;
	if (s->fail_load != 0) {
		pthread_mutex_unlock(&s->lock);
		return s->fail_load;
	}
	tk_entry *e = tk_store_find(s, addr, false);
	if (e == NULL) {
		pthread_mutex_unlock(&s->lock);
		return RT_ENOTFOUND;
	}
	s->loads_found++;
	int rc = ops->decode_state(state, e->bytes.bytes, e->bytes.length);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static inline int
tk_store_save(void *arg, rt_addr addr, const rt_actor_ops *ops,
	const void *state)
{
	tk_store *s = arg;
	pthread_mutex_lock(&s->lock);
	s->saves++;
	tk_entry *e = tk_store_find(s, addr, true);
	e->bytes.length = 0;
	int rc = ops->encode_state(state, &e->bytes);
	void (*hook)(void *, rt_addr) = s->on_save;
	void *hook_arg = s->on_save_arg;
	pthread_mutex_unlock(&s->lock);
	if (hook != NULL)
		hook(hook_arg, addr);
	return rc;
}

static inline void
tk_store_init(tk_store *s)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->lock, NULL);
}

static inline void
tk_store_free(tk_store *s)
{
	for (int i = 0; i < TK_STORE_ENTRIES_MAX; i++)
		rt_buffer_free(&s->entries[i].bytes);
	pthread_mutex_destroy(&s->lock);
}

static const rt_store_ops tk_store_ops = {
	.load = tk_store_load,
	.save = tk_store_save,
};

/* A runtime with test defaults: no idle passivation, quiet logs. */
static inline rt_runtime *
tk_runtime(bool deterministic, uint64_t seed, uint32_t workers)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.deterministic = deterministic;
	cfg.seed = seed;
	cfg.workers = workers;
	cfg.passivate_idle_ms = 0;
	cfg.log_level = RT_LOG_WARN;
	cfg.node_name = "test";
	rt_runtime *rt = NULL;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	CHECK(rt != NULL);
	return rt;
}

/* Sends a copy of payload from outside; retries while the mailbox is full. */
static inline int
tk_send(rt_runtime *rt, rt_addr to, uint32_t type, const void *payload,
	uint32_t size)
{
	for (;;) {
		rt_message *m = rt_message_alloc(rt, type, size);
		CHECK(m != NULL);
		if (size > 0)
			memcpy(m->payload, payload, size);
		int rc = rt_send_external(rt, to, m);
		if (rc != RT_EMAILBOX_FULL)
			return rc;
		sched_yield();
	}
}

static inline uint64_t
tk_u64(const rt_message *m)
{
	uint64_t x = 0;
	CHECK(m->size >= sizeof x);
	memcpy(&x, m->payload, sizeof x);
	return x;
}

static inline int
tk_encode_u64s(const void *state, size_t count, rt_buffer *out)
{
	return rt_buffer_append(out, state, count * sizeof(uint64_t));
}

#endif /* FLOCK_RUNTIME_TESTKIT_H */
