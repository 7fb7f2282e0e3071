/*
 * runtime_passivate_test.c — virtual actors: activation from the store,
 * idle passivation, reactivation with state intact, a message arriving
 * during passivation, memory-budget (approximate LRU) passivation,
 * rt_request_passivate and rt_snapshot_dirty.
 *
 * Method: deterministic runtimes with an in-test store hook that keeps
 * each actor's encoded state in memory and counts loads and saves. The
 * race "a message arrives while the actor is being saved" is made
 * certain by a save hook that sends the actor a message from inside the
 * save. A real-mode run repeats passivation under concurrent senders and
 * checks no increment is lost.
 */
#include "tests/unit/runtime_testkit.h"

#include <stdatomic.h>

enum { KIND_COUNTER = 1, KIND_BIG = 2 };
enum { MSG_ADD = 1, MSG_GET = 2, MSG_SLEEP = 3, MSG_TOUCH = 4 };

typedef struct counter_state {
	uint64_t total;
	uint64_t activations;
} counter_state;

static atomic_uint activated_fresh;
static atomic_uint activated_loaded;
static atomic_uint passivated;

static int
counter_on_activate(rt_actor *self, void *state, bool fresh)
{
	(void)self;
	counter_state *s = state;
	s->activations++;
	if (fresh)
		activated_fresh++;
	else
		activated_loaded++;
	return 0;
}

static void
counter_on_passivate(rt_actor *self, void *state)
{
	(void)self;
	(void)state;
	passivated++;
}

static void
counter_on_message(rt_actor *self, void *state, const rt_message *m)
{
	counter_state *s = state;
	switch (m->type) {
	case MSG_ADD:
		s->total += tk_u64(m);
		rt_mark_dirty(self);
		break;
	case MSG_GET: {
		rt_message *r = rt_message_alloc(rt_actor_runtime(self), MSG_GET, 16);
		memcpy(r->payload, s, 16);
		CHECK_EQ(rt_reply(self, m, r), 0);
		break;
	}
	case MSG_SLEEP:
		rt_request_passivate(self);
		break;
	}
}

static int
counter_encode(const void *state, rt_buffer *out)
{
	return tk_encode_u64s(state, 2, out);
}

static int
counter_decode(void *state, const void *bytes, size_t length)
{
	if (length != sizeof(counter_state))
		return RT_ECORRUPT;
	memcpy(state, bytes, length);
	return 0;
}

static const rt_actor_ops counter_ops = {
	.name = "counter",
	.state_size = sizeof(counter_state),
	.on_activate = counter_on_activate,
	.on_message = counter_on_message,
	.on_passivate = counter_on_passivate,
	.encode_state = counter_encode,
	.decode_state = counter_decode,
};

static counter_state
ask_state(rt_runtime *rt, rt_inbox *inbox, rt_addr to)
{
	rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
	CHECK_EQ(rt_inbox_ask(inbox, to, m, 100000, NULL), 0);
	rt_message *r = rt_inbox_wait(inbox, 100000);
	CHECK(r != NULL);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	counter_state s;
	memcpy(&s, r->payload, sizeof s);
	rt_message_free(rt, r);
	return s;
}

static rt_runtime *
det_runtime(uint64_t idle_ms, uint64_t budget)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.deterministic = true;
	cfg.seed = 9;
	cfg.passivate_idle_ms = idle_ms;
	cfg.memory_budget_bytes = budget;
	cfg.log_level = RT_LOG_WARN;
	rt_runtime *rt;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	return rt;
}

TEST(runtime_idle_passivation_and_reactivation_keep_state)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = det_runtime(100, 0);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	rt_addr a = rt_addr_make(KIND_COUNTER, 42);
	for (uint64_t i = 1; i <= 5; i++)
		CHECK_EQ(tk_send(rt, a, MSG_ADD, &i, 8), 0);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(activated_fresh, 1);
	CHECK_EQ(store.loads, 1);
	CHECK_EQ(store.loads_found, 0);
	/* Idle for less than the limit: still active. */
	rt_det_advance(rt, 60);
	rt_det_run_until_idle(rt, 0);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 1);
	/* Past the limit (sweeps run every 25 ms): passivated and saved. */
	for (int i = 0; i < 10; i++) {
		rt_det_advance(rt, 25);
		rt_det_run_until_idle(rt, 0);
	}
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 0);
	CHECK_EQ_U64(st.actors_passivated_total, 1);
	CHECK_EQ(passivated, 1);
	CHECK_EQ(store.saves, 1);
	/* The next message reactivates it from the store. */
	counter_state s = ask_state(rt, inbox, a);
	CHECK_EQ_U64(s.total, 15);
	CHECK_EQ_U64(s.activations, 2);
	CHECK_EQ(activated_loaded, 1);
	CHECK_EQ(store.loads_found, 1);
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 1);
	CHECK_EQ_U64(st.actors_activated_total, 2);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* From inside save: a message races in while the actor passivates. */
typedef struct race_arg {
	rt_runtime *rt;
	int remaining;
} race_arg;

static void
race_on_save(void *arg, rt_addr addr)
{
	race_arg *r = arg;
	if (r->remaining <= 0)
		return;
	r->remaining--;
	uint64_t hundred = 100;
	CHECK_EQ(tk_send(r->rt, addr, MSG_ADD, &hundred, 8), 0);
}

TEST(runtime_message_during_passivation_reactivates)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = det_runtime(0, 0);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	rt_addr a = rt_addr_make(KIND_COUNTER, 7);
	uint64_t one = 1;
	CHECK_EQ(tk_send(rt, a, MSG_ADD, &one, 8), 0);
	rt_det_run_until_idle(rt, 0);
	race_arg race = {rt, 1};
	store.on_save = race_on_save;
	store.on_save_arg = &race;
	CHECK_EQ(tk_send(rt, a, MSG_SLEEP, NULL, 0), 0);
	rt_det_run_until_idle(rt, 0);
	/* It was saved (total 1), the raced message kept it in the registry,
	 * it was re-loaded and then handled the message. */
	CHECK_EQ(passivated, 1);
	CHECK_EQ(store.saves, 1);
	CHECK_EQ(activated_loaded, 1);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 1);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	counter_state s = ask_state(rt, inbox, a);
	CHECK_EQ_U64(s.total, 101);
	CHECK_EQ_U64(s.activations, 2);
	/* Passivating for real now (no race): gone, and saved. */
	CHECK_EQ(tk_send(rt, a, MSG_SLEEP, NULL, 0), 0);
	rt_det_run_until_idle(rt, 0);
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 0);
	tk_entry *e = tk_store_find(&store, a, false);
	CHECK(e != NULL);
	CHECK_EQ_U64(((counter_state *)(void *)e->bytes.bytes)->total, 101);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* ---- memory budget ------------------------------------------------------ */

typedef struct big_state {
	uint64_t touched;
	uint64_t pad[15];
} big_state;

static unsigned big_passivated[256];

static void
big_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)m;
	big_state *s = state;
	s->touched++;
	(void)self;
}

static void
big_on_passivate(rt_actor *self, void *state)
{
	(void)state;
	uint64_t id = rt_self(self).id;
	CHECK(id < 256);
	big_passivated[id]++;
}

static int
big_encode(const void *state, rt_buffer *out)
{
	return rt_buffer_append(out, state, sizeof(big_state));
}

static int
big_decode(void *state, const void *bytes, size_t length)
{
	CHECK_EQ(length, sizeof(big_state));
	memcpy(state, bytes, length);
	return 0;
}

static const rt_actor_ops big_ops = {
	.name = "big",
	.state_size = sizeof(big_state),
	.on_message = big_on_message,
	.on_passivate = big_on_passivate,
	.encode_state = big_encode,
	.decode_state = big_decode,
};

TEST(runtime_memory_budget_passivates_least_recently_used)
{
	/* Bytes per actor, measured. */
	rt_runtime *probe = det_runtime(0, 0);
	CHECK_EQ(rt_register_kind(probe, KIND_BIG, &big_ops), 0);
	CHECK_EQ(rt_activate(probe, rt_addr_make(KIND_BIG, 1)), 0);
	rt_det_run_until_idle(probe, 0);
	rt_stats st;
	rt_get_stats(probe, &st);
	uint64_t per_actor = st.bytes_actors;
	CHECK(per_actor >= sizeof(big_state));
	rt_destroy(probe);

	static tk_store store;
	tk_store_init(&store);
	enum { BUDGET_ACTORS = 50, HOT = 10, TOTAL = 250 };
	rt_runtime *rt = det_runtime(0, per_actor * BUDGET_ACTORS);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_BIG, &big_ops), 0);
	uint64_t peak = 0;
	for (uint64_t id = 0; id < TOTAL; id++) {
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_BIG, id), MSG_TOUCH, NULL, 0), 0);
		rt_det_run_until_idle(rt, 0);
		rt_det_advance(rt, 1);
		/* The hot set is used all the time. */
		for (uint64_t h = 0; h < HOT && h < id; h++)
			CHECK_EQ(tk_send(rt, rt_addr_make(KIND_BIG, h), MSG_TOUCH, NULL, 0), 0);
		rt_det_run_until_idle(rt, 0);
		rt_det_advance(rt, 1);
		rt_get_stats(rt, &st);
		if (st.actors_active > peak)
			peak = st.actors_active;
	}
	rt_get_stats(rt, &st);
	CHECK_MSG(st.actors_active <= BUDGET_ACTORS + 1, "active %llu",
		(unsigned long long)st.actors_active);
	CHECK_MSG(peak <= BUDGET_ACTORS + 2, "peak %llu", (unsigned long long)peak);
	CHECK(st.bytes_actors <= per_actor * (BUDGET_ACTORS + 1));
	CHECK(st.actors_passivated_total >= TOTAL - BUDGET_ACTORS - 1);
	/* Approximate LRU: the hot actors were (almost) never chosen, the
	 * cold ones were. */
	unsigned hot_evictions = 0, cold_evictions = 0;
	for (int id = 0; id < TOTAL; id++) {
		if (id < HOT)
			hot_evictions += big_passivated[id];
		else
			cold_evictions += big_passivated[id];
	}
	CHECK_MSG(hot_evictions <= 2, "hot actors passivated %u times", hot_evictions);
	CHECK(cold_evictions >= TOTAL - BUDGET_ACTORS - 1 - hot_evictions);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* ---- snapshots ------------------------------------------------------------ */

static int snapshot_done_calls;
static int snapshot_done_status = 99;

static void
on_snapshot_done(void *arg, int status)
{
	CHECK(arg == &snapshot_done_calls);
	snapshot_done_calls++;
	snapshot_done_status = status;
}

TEST(runtime_snapshot_dirty_saves_only_dirty_actors)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = det_runtime(0, 0);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	uint64_t v = 3;
	for (uint64_t id = 1; id <= 3; id++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, id), MSG_ADD, &v, 8), 0);
	CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_COUNTER, 4)), 0); /* clean */
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(store.saves, 0);
	CHECK_EQ(rt_snapshot_dirty(rt, on_snapshot_done, &snapshot_done_calls), 0);
	CHECK_EQ(rt_snapshot_dirty(rt, on_snapshot_done, &snapshot_done_calls),
		RT_EEXIST);
	CHECK_EQ(snapshot_done_calls, 0);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(snapshot_done_calls, 1);
	CHECK_EQ(snapshot_done_status, 0);
	CHECK_EQ(store.saves, 3);
	CHECK(tk_store_find(&store, rt_addr_make(KIND_COUNTER, 4), false) == NULL);
	/* Nothing dirty now: done at once, no saves. */
	CHECK_EQ(rt_snapshot_dirty(rt, on_snapshot_done, &snapshot_done_calls), 0);
	CHECK_EQ(snapshot_done_calls, 2);
	CHECK_EQ(store.saves, 3);
	/* One more change, one more save. */
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 2), MSG_ADD, &v, 8), 0);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(rt_snapshot_dirty(rt, on_snapshot_done, &snapshot_done_calls), 0);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(snapshot_done_calls, 3);
	CHECK_EQ(store.saves, 4);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* A checkpoint's snapshots are queued a window at a time behind other
 * work, not all at once: a request sent after a pass over 10,000 dirty
 * actors starts is answered while most of them are still unsaved (all
 * queued at once, it waited behind a random share of them: 10,000 turns
 * at worst). The pass still saves every one and ends once. */
static unsigned counted_saves;

static int
counted_load(void *arg, rt_addr addr, const rt_actor_ops *ops, void *state)
{
	(void)arg;
	(void)addr;
	(void)ops;
	(void)state;
	return RT_ENOTFOUND;
}

static int
counted_save(void *arg, rt_addr addr, const rt_actor_ops *ops,
	const void *state)
{
	(void)arg;
	(void)addr;
	(void)ops;
	(void)state;
	counted_saves++;
	return 0;
}

static const rt_store_ops counted_store_ops = {counted_load, counted_save};

TEST(runtime_snapshot_dirty_paces_its_turns_behind_requests)
{
	enum { DIRTY = 10000 };
	rt_runtime *rt = det_runtime(0, 0);
	rt_set_store(rt, &counted_store_ops, NULL);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	uint64_t v = 1;
	for (uint64_t id = 1; id <= DIRTY; id++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, id), MSG_ADD, &v, 8), 0);
	rt_det_run_until_idle(rt, 0);
	int calls = snapshot_done_calls;
	CHECK_EQ(rt_snapshot_dirty(rt, on_snapshot_done, &snapshot_done_calls), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
	CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_COUNTER, 7), m, 100000,
		NULL), 0);
	rt_message *r = NULL;
	while (r == NULL && rt_det_step(rt))
		r = rt_inbox_take(inbox);
	CHECK(r != NULL);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	rt_message_free(rt, r);
	CHECK(counted_saves < DIRTY / 10);
	CHECK_EQ(snapshot_done_calls, calls);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(snapshot_done_calls, calls + 1);
	CHECK_EQ(snapshot_done_status, 0);
	CHECK_EQ(counted_saves, DIRTY);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
}

/* ---- real mode: passivation under concurrent senders ------------------ */

typedef struct sender_arg {
	rt_runtime *rt;
	uint64_t count;
} sender_arg;

static void *
adder_thread(void *p)
{
	sender_arg *a = p;
	uint64_t one = 1;
	for (uint64_t i = 0; i < a->count; i++) {
		rt_addr to = rt_addr_make(KIND_COUNTER, i % 4);
		CHECK_EQ(tk_send(a->rt, to, MSG_ADD, &one, 8), 0);
		if (i % 16 == 0)
			CHECK_EQ(tk_send(a->rt, to, MSG_SLEEP, NULL, 0), 0);
	}
	return NULL;
}

TEST(runtime_passivation_loses_no_message_under_concurrency)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = tk_runtime(false, 5, 2);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	enum { THREADS = 3 };
	uint64_t per = test_sanitized() ? 2000 : 20000;
	pthread_t threads[THREADS];
	sender_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (sender_arg){rt, per};
		CHECK_EQ(pthread_create(&threads[i], NULL, adder_thread, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	uint64_t total = 0;
	for (uint64_t id = 0; id < 4; id++)
		total += ask_state(rt, inbox, rt_addr_make(KIND_COUNTER, id)).total;
	CHECK_EQ_U64(total, per * THREADS);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK(st.actors_passivated_total > 0);
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
	tk_store_free(&store);
}
