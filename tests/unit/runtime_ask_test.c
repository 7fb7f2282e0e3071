/*
 * runtime_ask_test.c — ask/reply: the asker gets exactly one of reply or
 * timeout; inboxes for threads that are no actor, woken through libuv.
 *
 * Method: deterministic runs place the reply before, after, or never
 * relative to the deadline (a responder that answers after a delay set
 * by the request) and count what the asker receives per correlation id,
 * also after time has moved far past the deadline. A real-mode run fires
 * many asks with responders that answer on either side of a short
 * deadline, then checks each correlation saw exactly one outcome. The
 * libuv test runs a real uv loop: the inbox's notify calls
 * uv_async_send, and the async callback drains replies.
 */
#include "tests/unit/runtime_testkit.h"

#include <uv.h>

enum { KIND_RESPONDER = 1, KIND_ASKER = 2 };
enum { MSG_ECHO = 1, MSG_DELAYED = 2, MSG_IGNORE = 3, MSG_FIRE = 4,
	MSG_START = 5, MSG_REPORT = 6 };

/* Responder state: one pending delayed request (copied). */
typedef struct responder_state {
	rt_addr from;
	uint64_t correlation;
	bool holding;
} responder_state;

static void
responder_on_message(rt_actor *self, void *state, const rt_message *m)
{
	responder_state *s = state;
	rt_runtime *rt = rt_actor_runtime(self);
	switch (m->type) {
	case MSG_ECHO: {
		rt_message *r = rt_message_alloc(rt, MSG_ECHO, m->size);
		memcpy(r->payload, m->payload, m->size);
		CHECK_EQ(rt_reply(self, m, r), 0);
		break;
	}
	case MSG_DELAYED: {
		/* Answer after payload ms, through a timer. */
		s->from = m->from;
		s->correlation = m->correlation;
		s->holding = true;
		CHECK_EQ(rt_timer_start(rt, rt_self(self), MSG_FIRE, NULL, 0,
			tk_u64(m), 0, NULL), 0);
		break;
	}
	case MSG_FIRE: {
		CHECK(s->holding);
		/* Rebuild the request header to reply to it later. */
		rt_message request;
		memset(&request, 0, sizeof request);
		request.from = s->from;
		request.correlation = s->correlation;
		rt_message *r = rt_message_alloc(rt, MSG_DELAYED, 0);
		CHECK_EQ(rt_reply(self, &request, r), 0);
		s->holding = false;
		break;
	}
	case MSG_IGNORE:
		/* A plain send cannot be replied to. */
		if (m->correlation == 0) {
			rt_message *r = rt_message_alloc(rt, 1, 0);
			CHECK_EQ(rt_reply(self, m, r), RT_EINVAL);
		}
		break;
	}
}

static const rt_actor_ops responder_ops = {
	.name = "responder",
	.state_size = sizeof(responder_state),
	.on_message = responder_on_message,
};

/* Asker actor: on START(delay) asks the responder with a deadline of
 * 100 ms; counts replies and timeouts for its one correlation. */
typedef struct asker_state {
	uint64_t correlation;
	uint64_t replies;
	uint64_t timeouts;
	uint64_t strays;
} asker_state;

static asker_state asker_seen;

static void
asker_on_message(rt_actor *self, void *state, const rt_message *m)
{
	asker_state *s = state;
	rt_runtime *rt = rt_actor_runtime(self);
	if (m->type == MSG_START) {
		uint64_t delay = tk_u64(m);
		rt_message *q = rt_message_alloc(rt, MSG_DELAYED, 8);
		memcpy(q->payload, &delay, 8);
		CHECK_EQ(rt_ask(self, rt_addr_make(KIND_RESPONDER, 1), q, 100,
			&s->correlation), 0);
		CHECK(s->correlation != 0);
	} else if (m->flags & RT_MESSAGE_F_REPLY) {
		CHECK_EQ_U64(m->correlation, s->correlation);
		CHECK_EQ(m->from.kind, KIND_RESPONDER);
		s->replies++;
	} else if (m->flags & RT_MESSAGE_F_TIMEOUT) {
		CHECK_EQ(m->type, RT_TYPE_TIMEOUT);
		CHECK_EQ_U64(m->correlation, s->correlation);
		s->timeouts++;
	} else {
		s->strays++;
	}
	asker_seen = *s;
}

static const rt_actor_ops asker_ops = {
	.name = "asker",
	.state_size = sizeof(asker_state),
	.on_message = asker_on_message,
};

static void
run_for(rt_runtime *rt, uint64_t ms)
{
	for (uint64_t i = 0; i < ms; i++) {
		rt_det_run_until_idle(rt, 0);
		rt_det_advance(rt, 1);
	}
	rt_det_run_until_idle(rt, 0);
}

TEST(runtime_ask_reply_or_timeout_exactly_once_deterministic)
{
	/* delay < deadline: reply; delay > deadline: timeout; == deadline:
	 * whichever the (deadline, sequence) order fires first, but one. */
	uint64_t delays[] = {0, 1, 50, 99, 100, 101, 150, 1000};
	for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
		rt_runtime *rt = tk_runtime(true, 1 + i, 0);
		CHECK_EQ(rt_register_kind(rt, KIND_RESPONDER, &responder_ops), 0);
		CHECK_EQ(rt_register_kind(rt, KIND_ASKER, &asker_ops), 0);
		memset(&asker_seen, 0, sizeof asker_seen);
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_ASKER, 1), MSG_START,
			&delays[i], 8), 0);
		run_for(rt, 1500);
		CHECK_EQ_U64(asker_seen.replies + asker_seen.timeouts, 1);
		CHECK_EQ_U64(asker_seen.strays, 0);
		if (delays[i] < 100)
			CHECK_EQ_U64(asker_seen.replies, 1);
		if (delays[i] > 100)
			CHECK_EQ_U64(asker_seen.timeouts, 1);
		rt_stats st;
		rt_get_stats(rt, &st);
		CHECK_EQ_U64(st.asks_timed_out_total, asker_seen.timeouts);
		rt_destroy(rt);
	}
}

TEST(runtime_inbox_ask_deterministic_wait)
{
	rt_runtime *rt = tk_runtime(true, 3, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_RESPONDER, &responder_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	CHECK_EQ(rt_inbox_addr(inbox).kind, RT_KIND_INBOX);
	rt_addr to = rt_addr_make(KIND_RESPONDER, 1);
	/* Echo: rt_inbox_wait runs the scheduler until the reply is in. */
	rt_message *m = rt_message_alloc(rt, MSG_ECHO, 8);
	uint64_t v = 1234, correlation = 0;
	memcpy(m->payload, &v, 8);
	CHECK_EQ(rt_inbox_ask(inbox, to, m, 500, &correlation), 0);
	rt_message *r = rt_inbox_wait(inbox, 1000);
	CHECK(r != NULL);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	CHECK_EQ_U64(r->correlation, correlation);
	CHECK_EQ_U64(tk_u64(r), 1234);
	rt_message_free(rt, r);
	CHECK_EQ_U64(rt_now_ms(rt), 0); /* no time had to pass */
	/* Never answered: the timeout arrives at exactly the deadline. */
	m = rt_message_alloc(rt, MSG_IGNORE, 0);
	CHECK_EQ(rt_inbox_ask(inbox, to, m, 250, &correlation), 0);
	r = rt_inbox_wait(inbox, 1000);
	CHECK(r != NULL);
	CHECK(r->flags & RT_MESSAGE_F_TIMEOUT);
	CHECK_EQ(r->type, RT_TYPE_TIMEOUT);
	CHECK_EQ_U64(r->correlation, correlation);
	CHECK_EQ_U64(rt_now_ms(rt), 250);
	rt_message_free(rt, r);
	/* Nothing else: a wait times out in virtual time. */
	CHECK(rt_inbox_wait(inbox, 100) == NULL);
	CHECK_EQ_U64(rt_now_ms(rt), 350);
	/* A late reply (after the deadline) is dropped. */
	m = rt_message_alloc(rt, MSG_DELAYED, 8);
	v = 300;
	memcpy(m->payload, &v, 8);
	CHECK_EQ(rt_inbox_ask(inbox, to, m, 100, &correlation), 0);
	r = rt_inbox_wait(inbox, 1000);
	CHECK(r != NULL && (r->flags & RT_MESSAGE_F_TIMEOUT));
	rt_message_free(rt, r);
	CHECK(rt_inbox_wait(inbox, 1000) == NULL);
	/* Plain sends to an inbox land there too. */
	CHECK_EQ(tk_send(rt, rt_inbox_addr(inbox), 9, &v, 8), 0);
	r = rt_inbox_take(inbox);
	CHECK(r != NULL && r->type == 9);
	rt_message_free(rt, r);
	CHECK(rt_inbox_take(inbox) == NULL);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
}

/* A late reply from a previous life of the node (inbox ids restart at 1)
 * must not match an ask of this life: each life starts its correlation
 * ids somewhere of its own. */
static uint64_t
first_correlation(rt_runtime *rt, rt_inbox *inbox)
{
	rt_message *m = rt_message_alloc(rt, MSG_IGNORE, 0);
	uint64_t correlation = 0;
	CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_RESPONDER, 1), m, 1000,
		&correlation), 0);
	return correlation;
}

TEST(runtime_correlations_differ_between_lives)
{
	uint64_t first[4];
	uint64_t seeds[4] = {3, 3, 4, 1};
	bool modes[4] = {true, true, true, false};
	for (int i = 0; i < 4; i++) {
		rt_runtime *rt = tk_runtime(modes[i], seeds[i], 1);
		CHECK_EQ(rt_register_kind(rt, KIND_RESPONDER, &responder_ops), 0);
		rt_inbox *inbox;
		CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
		first[i] = first_correlation(rt, inbox);
		CHECK(first[i] != 0);
		rt_inbox_destroy(inbox);
		rt_destroy(rt);
	}
	CHECK_EQ_U64(first[0], first[1]); /* deterministic: from the seed */
	CHECK(first[2] != first[0]);      /* a restart's new seed */
	/* Real mode, the same seed twice (flockd's default): new each life. */
	rt_runtime *old_life = tk_runtime(false, 1, 1);
	CHECK_EQ(rt_register_kind(old_life, KIND_RESPONDER, &responder_ops), 0);
	rt_inbox *old_inbox;
	CHECK_EQ(rt_inbox_create(old_life, NULL, NULL, &old_inbox), 0);
	uint64_t old_correlation = first_correlation(old_life, old_inbox);
	rt_addr old_addr = rt_inbox_addr(old_inbox);
	rt_inbox_destroy(old_inbox);
	rt_destroy(old_life);
	CHECK(old_correlation != first[3]);
	/* The new life's inbox has the old one's address; a reply meant for
	 * the old life's ask finds no ask of its own and is dropped. */
	rt_runtime *rt = tk_runtime(false, 1, 1);
	CHECK_EQ(rt_register_kind(rt, KIND_RESPONDER, &responder_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	CHECK_EQ_U64(rt_inbox_addr(inbox).id, old_addr.id);
	uint64_t correlation = first_correlation(rt, inbox);
	CHECK(correlation != old_correlation);
	rt_message *late = rt_message_alloc(rt, MSG_ECHO, 0);
	late->correlation = old_correlation;
	late->flags |= RT_MESSAGE_F_REPLY;
	CHECK_EQ(rt_send_external(rt, rt_inbox_addr(inbox), late), 0);
	CHECK(rt_inbox_take(inbox) == NULL);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
}

/* ---- real mode: many asks racing their deadlines ------------------------- */

#define RACE_ASKS 400

TEST(runtime_ask_exactly_once_real_mode)
{
	rt_runtime *rt = tk_runtime(false, 3, 2);
	CHECK_EQ(rt_register_kind(rt, KIND_RESPONDER, &responder_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	CHECK_EQ(rt_start(rt), 0);
	static uint64_t correlations[RACE_ASKS];
	static int outcomes[RACE_ASKS];
	for (int i = 0; i < RACE_ASKS; i++) {
		/* Delays spread around the 20 ms deadline; each responder id
		 * holds one request at a time. */
		uint64_t delay = (uint64_t)(i % 41);
		rt_message *m = rt_message_alloc(rt, i % 5 == 0 ? MSG_ECHO : MSG_DELAYED, 8);
		memcpy(m->payload, &delay, 8);
		CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_RESPONDER, (uint64_t)i),
			m, 20, &correlations[i]), 0);
	}
	int received = 0;
	while (received < RACE_ASKS) {
		rt_message *r = rt_inbox_wait(inbox, 30000);
		CHECK(r != NULL);
		int found = -1;
		for (int i = 0; i < RACE_ASKS; i++)
			if (correlations[i] == r->correlation)
				found = i;
		CHECK(found >= 0);
		CHECK(r->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT));
		outcomes[found]++;
		received++;
		rt_message_free(rt, r);
	}
	/* Let every late reply arrive (longest delay 40 ms): none may. */
	CHECK(rt_inbox_wait(inbox, 200) == NULL);
	for (int i = 0; i < RACE_ASKS; i++)
		CHECK_EQ(outcomes[i], 1);
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
}

/* ---- libuv: inbox notify -> uv_async_send ------------------------------ */

#define UV_ASKS 200

typedef struct uv_test {
	uv_loop_t loop;
	uv_async_t async;
	uv_timer_t watchdog;
	rt_runtime *rt;
	rt_inbox *inbox;
	int replies;
	int notifies_seen;
	uint64_t sum;
	bool timed_out;
} uv_test;

static void
inbox_notify(void *arg)
{
	uv_test *t = arg;
	CHECK_EQ(uv_async_send(&t->async), 0);
}

static void
on_async(uv_async_t *handle)
{
	uv_test *t = handle->data;
	t->notifies_seen++;
	rt_message *r;
	while ((r = rt_inbox_take(t->inbox)) != NULL) {
		CHECK(r->flags & RT_MESSAGE_F_REPLY);
		t->sum += tk_u64(r);
		t->replies++;
		rt_message_free(t->rt, r);
	}
	if (t->replies == UV_ASKS) {
		uv_close((uv_handle_t *)&t->async, NULL);
		uv_close((uv_handle_t *)&t->watchdog, NULL);
	}
}

static void
on_watchdog(uv_timer_t *handle)
{
	uv_test *t = handle->data;
	t->timed_out = true;
	uv_stop(&t->loop);
}

TEST(runtime_inbox_wakes_libuv_loop)
{
	static uv_test t;
	CHECK_EQ(uv_loop_init(&t.loop), 0);
	CHECK_EQ(uv_async_init(&t.loop, &t.async, on_async), 0);
	t.async.data = &t;
	CHECK_EQ(uv_timer_init(&t.loop, &t.watchdog), 0);
	t.watchdog.data = &t;
	CHECK_EQ(uv_timer_start(&t.watchdog, on_watchdog, 50000, 0), 0);
	t.rt = tk_runtime(false, 4, 2);
	CHECK_EQ(rt_register_kind(t.rt, KIND_RESPONDER, &responder_ops), 0);
	CHECK_EQ(rt_inbox_create(t.rt, inbox_notify, &t, &t.inbox), 0);
	CHECK_EQ(rt_start(t.rt), 0);
	uint64_t expect = 0;
	for (uint64_t i = 1; i <= UV_ASKS; i++) {
		rt_message *m = rt_message_alloc(t.rt, MSG_ECHO, 8);
		memcpy(m->payload, &i, 8);
		CHECK_EQ(rt_inbox_ask(t.inbox, rt_addr_make(KIND_RESPONDER, i % 13),
			m, 60000, NULL), 0);
		expect += i;
	}
	CHECK_EQ(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
	CHECK(!t.timed_out);
	CHECK_EQ(t.replies, UV_ASKS);
	CHECK_EQ_U64(t.sum, expect);
	CHECK(t.notifies_seen >= 1);
	CHECK_EQ(uv_loop_close(&t.loop), 0);
	rt_inbox_destroy(t.inbox);
	CHECK_EQ(rt_stop(t.rt), 0);
	rt_destroy(t.rt);
}
