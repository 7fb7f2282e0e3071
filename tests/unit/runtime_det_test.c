/*
 * runtime_det_test.c — deterministic mode: same seed, same run.
 *
 * Method: a gossip workload where each message makes an actor send to
 * peers picked with rt_random_u64, plus timers and asks, run to
 * completion in deterministic mode. Two runs with one seed must give the
 * same trace hash (every delivered message: receiver, sender, type,
 * payload, in order), the same virtual time and the same statistics; a
 * different seed must give a different trace hash.
 */
#include "tests/unit/runtime_testkit.h"

enum { KIND_GOSSIP = 1 };
enum { MSG_RUMOR = 1, MSG_TICK = 2 };

#define PEERS 40

typedef struct gossip_state {
	uint64_t heard;
	uint64_t ticks;
} gossip_state;

static void
gossip_on_message(rt_actor *self, void *state, const rt_message *m)
{
	gossip_state *s = state;
	rt_runtime *rt = rt_actor_runtime(self);
	if (m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))
		return;
	if (m->type == MSG_TICK) {
		s->ticks++;
		return;
	}
	s->heard++;
	uint64_t hops = tk_u64(m);
	if (m->correlation != 0) {
		rt_message *r = rt_message_alloc(rt, MSG_RUMOR, 8);
		memcpy(r->payload, &s->heard, 8);
		CHECK_EQ(rt_reply(self, m, r), 0);
	}
	if (hops == 0)
		return;
	hops--;
	for (int i = 0; i < 2; i++) {
		uint64_t peer = rt_random_u64(rt) % PEERS;
		rt_message *out = rt_message_alloc(rt, MSG_RUMOR, 8);
		memcpy(out->payload, &hops, 8);
		if (i == 0 && rt_random_u64(rt) % 4 == 0)
			CHECK_EQ(rt_ask(self, rt_addr_make(KIND_GOSSIP, peer), out,
				rt_random_u64(rt) % 20, NULL), 0);
		else
			CHECK_EQ(rt_send(self, rt_addr_make(KIND_GOSSIP, peer), out), 0);
	}
	if (hops % 3 == 0)
		CHECK_EQ(rt_timer_start(rt, rt_self(self), MSG_TICK, NULL, 0,
			rt_random_u64(rt) % 50, 0, NULL), 0);
}

static const rt_actor_ops gossip_ops = {
	.name = "gossip",
	.state_size = sizeof(gossip_state),
	.mailbox_messages_max = 1u << 20,
	.on_message = gossip_on_message,
};

typedef struct run_result {
	uint64_t trace;
	uint64_t now_ms;
	uint64_t delivered;
	uint64_t timeouts;
} run_result;

static run_result
run(uint64_t seed)
{
	rt_runtime *rt = tk_runtime(true, seed, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_GOSSIP, &gossip_ops), 0);
	uint64_t hops = 9;
	for (uint64_t i = 0; i < 4; i++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_GOSSIP, i), MSG_RUMOR, &hops, 8), 0);
	for (;;) {
		rt_det_run_until_idle(rt, 0);
		uint64_t next = rt_det_next_timer_ms(rt);
		if (next == UINT64_MAX)
			break;
		rt_det_advance(rt, next - rt_now_ms(rt));
	}
	run_result r;
	rt_stats st;
	rt_get_stats(rt, &st);
	r.trace = rt_trace_hash(rt);
	r.now_ms = rt_now_ms(rt);
	r.delivered = st.messages_delivered_total;
	r.timeouts = st.asks_timed_out_total;
	rt_destroy(rt);
	return r;
}

TEST(runtime_deterministic_same_seed_same_trace)
{
	run_result a = run(1234);
	run_result b = run(1234);
	run_result c = run(1235);
	CHECK(a.delivered > 1000);
	CHECK_EQ_U64(a.trace, b.trace);
	CHECK_EQ_U64(a.now_ms, b.now_ms);
	CHECK_EQ_U64(a.delivered, b.delivered);
	CHECK_EQ_U64(a.timeouts, b.timeouts);
	CHECK(a.trace != c.trace);
}

TEST(runtime_deterministic_order_differs_by_seed)
{
	/* Same messages, no randomness in the actors: only the scheduling
	 * order differs between seeds, and the trace hash sees it. */
	uint64_t traces[4];
	for (uint64_t seed = 0; seed < 4; seed++) {
		rt_runtime *rt = tk_runtime(true, seed + 100, 0);
		CHECK_EQ(rt_register_kind(rt, KIND_GOSSIP, &gossip_ops), 0);
		uint64_t zero = 0;
		for (uint64_t i = 0; i < 20; i++)
			CHECK_EQ(tk_send(rt, rt_addr_make(KIND_GOSSIP, i), MSG_RUMOR,
				&zero, 8), 0);
		CHECK_EQ_U64(rt_det_run_until_idle(rt, 0), 20);
		traces[seed] = rt_trace_hash(rt);
		rt_destroy(rt);
	}
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			CHECK(traces[i] != traces[j]);
}
