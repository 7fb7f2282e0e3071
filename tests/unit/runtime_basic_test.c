/*
 * runtime_basic_test.c — the runtime's edges: error codes, stop, several
 * runtimes in one process, the route hook, rt_activate, failed
 * activation, and rt_stop saving every actor.
 *
 * Method: mostly deterministic runtimes driven step by step from the
 * test thread, asserting return codes and statistics; the multi-runtime
 * test also runs two real runtimes side by side with threads.
 */
#include "tests/unit/runtime_testkit.h"

#include <unistd.h>

enum { KIND_COUNTER = 1, KIND_OTHER = 2 };
enum { MSG_ADD = 1, MSG_GET = 2, MSG_FORWARD = 3 };

typedef struct counter_state {
	uint64_t total;
	uint64_t messages;
} counter_state;

static void
counter_on_message(rt_actor *self, void *state, const rt_message *m)
{
	counter_state *s = state;
	s->messages++;
	if (m->type == MSG_ADD) {
		s->total += tk_u64(m);
		rt_mark_dirty(self);
	} else if (m->type == MSG_GET) {
		rt_message *r = rt_message_alloc(rt_actor_runtime(self), MSG_GET,
			sizeof(uint64_t));
		CHECK(r != NULL);
		memcpy(r->payload, &s->total, sizeof s->total);
		CHECK_EQ(rt_reply(self, m, r), 0);
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
	.on_message = counter_on_message,
	.encode_state = counter_encode,
	.decode_state = counter_decode,
};

static uint64_t
ask_total(rt_runtime *rt, rt_inbox *inbox, rt_addr to)
{
	rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
	CHECK(m != NULL);
	uint64_t correlation = 0;
	CHECK_EQ(rt_inbox_ask(inbox, to, m, 10000, &correlation), 0);
	rt_message *r = rt_inbox_wait(inbox, 10000);
	CHECK(r != NULL);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	CHECK_EQ_U64(r->correlation, correlation);
	uint64_t total = tk_u64(r);
	rt_message_free(rt, r);
	return total;
}

TEST(runtime_strerror_names_every_code)
{
	for (int code = RT_ETOOBIG; code <= 0; code++) {
		const char *s = rt_strerror(code);
		CHECK(s != NULL);
		CHECK(strcmp(s, "unknown error") != 0);
	}
	CHECK_STR_EQ(rt_strerror(12345), "unknown error");
}

TEST(runtime_unregistered_kind_is_not_found)
{
	rt_runtime *rt = tk_runtime(true, 1, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), RT_EEXIST);
	CHECK_EQ(rt_register_kind(rt, 0, &counter_ops), RT_EINVAL);
	CHECK_EQ(rt_register_kind(rt, RT_KINDS_MAX, &counter_ops), RT_EINVAL);
	uint64_t one = 1;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_OTHER, 1), MSG_ADD, &one, 8),
		RT_ENOTFOUND);
	CHECK_EQ(tk_send(rt, rt_addr_make(40, 1), MSG_ADD, &one, 8), RT_ENOTFOUND);
	CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_OTHER, 1)), RT_ENOTFOUND);
	/* An inbox address that does not exist; kind "none" is no target. */
	CHECK_EQ(tk_send(rt, rt_addr_make(RT_KIND_INBOX, 999), MSG_ADD, &one, 8),
		RT_ENOTFOUND);
	CHECK_EQ(tk_send(rt, rt_addr_make(RT_KIND_NONE, 1), MSG_ADD, &one, 8),
		RT_ENOTFOUND);
	CHECK_EQ(rt_register_kind(rt, RT_KIND_INBOX, &counter_ops), RT_EINVAL);
	CHECK(rt_message_alloc(rt, 1, RT_MESSAGE_BYTES_MAX + 1) == NULL);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 0);
	rt_destroy(rt);
}

TEST(runtime_stopped_runtime_refuses_work)
{
	for (int det = 0; det < 2; det++) {
		rt_runtime *rt = tk_runtime(det == 1, 1, 2);
		CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
		CHECK_EQ(rt_start(rt), 0);
		uint64_t one = 1;
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &one, 8), 0);
		rt_inbox *inbox;
		CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
		CHECK_EQ(rt_stop(rt), 0);
		CHECK_EQ(rt_stop(rt), 0); /* idempotent */
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &one, 8),
			RT_ESTOPPED);
		CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_COUNTER, 2)), RT_ESTOPPED);
		CHECK_EQ(rt_timer_start(rt, rt_addr_make(KIND_COUNTER, 1), MSG_ADD,
			&one, 8, 10, 0, NULL), RT_ESTOPPED);
		CHECK_EQ(rt_snapshot_dirty(rt, NULL, NULL), RT_ESTOPPED);
		rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
		CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_COUNTER, 1), m, 10,
			NULL), RT_ESTOPPED);
		CHECK_EQ(rt_start(rt), RT_ESTOPPED);
		rt_stats st;
		rt_get_stats(rt, &st);
		CHECK_EQ_U64(st.actors_active, 0);
		rt_inbox_destroy(inbox);
		rt_destroy(rt);
	}
}

TEST(runtime_stop_saves_every_active_actor)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = tk_runtime(true, 3, 0);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	for (uint64_t id = 1; id <= 100; id++) {
		uint64_t v = id * 10;
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, id), MSG_ADD, &v, 8), 0);
	}
	/* Queued but not yet run: stop runs them, then saves all. */
	CHECK_EQ(rt_stop(rt), 0);
	CHECK_EQ(store.saves, 100);
	for (uint64_t id = 1; id <= 100; id++) {
		tk_entry *e = tk_store_find(&store, rt_addr_make(KIND_COUNTER, id), false);
		CHECK(e != NULL);
		counter_state s;
		CHECK_EQ(counter_decode(&s, e->bytes.bytes, e->bytes.length), 0);
		CHECK_EQ_U64(s.total, id * 10);
	}
	rt_destroy(rt);
	tk_store_free(&store);
}

TEST(runtime_activate_without_message)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = tk_runtime(true, 3, 0);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_COUNTER, 7)), 0);
	CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_COUNTER, 7)), 0);
	CHECK_EQ_U64(rt_det_run_until_idle(rt, 0), 1);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 1);
	CHECK_EQ_U64(st.actors_activated_total, 1);
	CHECK_EQ_U64(st.messages_delivered_total, 1); /* the activation unit */
	CHECK_EQ(store.loads, 1);
	/* Already active: nothing queued. */
	CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_COUNTER, 7)), 0);
	CHECK_EQ_U64(rt_det_run_until_idle(rt, 0), 0);
	rt_destroy(rt);
	tk_store_free(&store);
}

TEST(runtime_failed_activation_answers_asks_undeliverable)
{
	static tk_store store;
	tk_store_init(&store);
	store.fail_load = RT_EIO;
	rt_runtime *rt = tk_runtime(true, 3, 0);
	rt_set_store(rt, &tk_store_ops, &store);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
	CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_COUNTER, 1), m, 1000, NULL), 0);
	rt_message *r = rt_inbox_wait(inbox, 1000);
	CHECK(r != NULL);
	CHECK_EQ(r->type, RT_TYPE_UNDELIVERABLE);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	rt_message_free(rt, r);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 0); /* dropped, not kept half-made */
	/* The store recovers: the next message activates normally. */
	store.fail_load = 0;
	CHECK_EQ(ask_total(rt, inbox, rt_addr_make(KIND_COUNTER, 1)), 0);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
	tk_store_free(&store);
}

typedef struct route_log {
	int calls;
	int taken;
	rt_message *held[8];
} route_log;

static int
test_route(void *arg, rt_message *m)
{
	route_log *log = arg;
	log->calls++;
	if (m->to.kind == KIND_OTHER) {
		CHECK(log->taken < 8);
		log->held[log->taken++] = m;
		return RT_ROUTE_TAKEN;
	}
	if (m->to.id == 666)
		return RT_EUNAVAILABLE;
	return RT_ROUTE_LOCAL;
}

TEST(runtime_route_hook_sees_sends_and_deliver_local_bypasses_it)
{
	rt_runtime *rt = tk_runtime(true, 3, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_OTHER, &counter_ops), 0);
	route_log log;
	memset(&log, 0, sizeof log);
	rt_route_ops ops = {.route = test_route};
	rt_set_route(rt, &ops, &log);
	uint64_t five = 5;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &five, 8), 0);
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_OTHER, 1), MSG_ADD, &five, 8), 0);
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 666), MSG_ADD, &five, 8),
		RT_EUNAVAILABLE);
	CHECK_EQ(log.calls, 3);
	CHECK_EQ(log.taken, 1);
	CHECK_EQ(log.held[0]->to.kind, KIND_OTHER);
	/* The "remote" node delivers what the hook forwarded. */
	CHECK_EQ(rt_deliver_local(rt, log.held[0]), 0);
	CHECK_EQ(log.calls, 3);
	rt_det_run_until_idle(rt, 0);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 2);
	CHECK_EQ_U64(st.messages_delivered_total, 2);
	rt_destroy(rt);
}

/* ---- several runtimes in one process ------------------------------------ */

static void
forward_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	(void)self;
	/* Forward into another runtime named by the payload. */
	rt_runtime *other;
	memcpy(&other, m->payload, sizeof other);
	uint64_t one = 1;
	CHECK_EQ(tk_send(other, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &one, 8), 0);
}

static const rt_actor_ops forward_ops = {
	.name = "forward",
	.state_size = 8,
	.on_message = forward_on_message,
};

TEST(runtime_several_runtimes_in_one_process)
{
	/* Two deterministic runtimes on this thread: independent state. */
	rt_runtime *a = tk_runtime(true, 1, 0);
	rt_runtime *b = tk_runtime(true, 1, 0);
	CHECK_EQ(rt_register_kind(a, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_register_kind(b, KIND_COUNTER, &counter_ops), 0);
	uint64_t v = 3;
	for (int i = 0; i < 10; i++)
		CHECK_EQ(tk_send(a, rt_addr_make(KIND_COUNTER, (uint64_t)i), MSG_ADD, &v, 8), 0);
	CHECK_EQ(tk_send(b, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &v, 8), 0);
	rt_det_run_until_idle(a, 0);
	rt_det_run_until_idle(b, 0);
	rt_stats sa, sb;
	rt_get_stats(a, &sa);
	rt_get_stats(b, &sb);
	CHECK_EQ_U64(sa.actors_active, 10);
	CHECK_EQ_U64(sb.actors_active, 1);
	CHECK(rt_trace_hash(a) != rt_trace_hash(b));
	rt_destroy(a);
	rt_destroy(b);

	/* Two real runtimes; actors of one send into the other. */
	rt_runtime *r1 = tk_runtime(false, 1, 2);
	rt_runtime *r2 = tk_runtime(false, 2, 2);
	CHECK_EQ(rt_register_kind(r1, KIND_OTHER, &forward_ops), 0);
	CHECK_EQ(rt_register_kind(r2, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_start(r1), 0);
	CHECK_EQ(rt_start(r2), 0);
	enum { N = 200 };
	for (int i = 0; i < N; i++)
		CHECK_EQ(tk_send(r1, rt_addr_make(KIND_OTHER, (uint64_t)i % 7),
			1, &r2, sizeof r2), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(r2, NULL, NULL, &inbox), 0);
	uint64_t total = 0;
	for (int tries = 0; tries < 1000 && total < N; tries++)
		total = ask_total(r2, inbox, rt_addr_make(KIND_COUNTER, 1));
	CHECK_EQ_U64(total, N);
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(r1), 0);
	CHECK_EQ(rt_stop(r2), 0);
	rt_destroy(r1);
	rt_destroy(r2);
}

TEST(runtime_log_line_format)
{
	/* Capture stderr in a file of the test's temp directory. */
	char path[512];
	snprintf(path, sizeof path, "%s/log.txt", test_tmpdir());
	fflush(stderr);
	FILE *saved = fdopen(dup(fileno(stderr)), "w");
	CHECK(saved != NULL);
	CHECK(freopen(path, "w", stderr) != NULL);
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.deterministic = true;
	cfg.start_time_ms = 1700000000123ull;
	cfg.node_name = "node-7";
	cfg.passivate_idle_ms = 0;
	rt_runtime *rt;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	rt_log(rt, RT_LOG_INFO, "runtime", "hello k=%d", 1);
	rt_log(rt, RT_LOG_DEBUG, "runtime", "hidden");
	rt_log_set_level(rt, RT_LOG_DEBUG);
	rt_log(rt, RT_LOG_DEBUG, "timer", "shown");
	rt_destroy(rt);
	fflush(stderr);
	CHECK(dup2(fileno(saved), fileno(stderr)) >= 0);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	char line[256];
	CHECK(fgets(line, sizeof line, f) != NULL);
	CHECK_STR_EQ(line, "2023-11-14T22:13:20.123Z INFO node-7 runtime: hello k=1\n");
	CHECK(fgets(line, sizeof line, f) != NULL);
	CHECK_STR_EQ(line, "2023-11-14T22:13:20.123Z DEBUG node-7 timer: shown\n");
	fclose(f);
	fclose(saved);
}
