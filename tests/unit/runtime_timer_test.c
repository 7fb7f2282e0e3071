/*
 * runtime_timer_test.c — timers and the clock seam.
 *
 * Method: in deterministic mode virtual time moves only by
 * rt_det_advance, so firings are asserted at exact virtual ms: a one-shot
 * fires at its deadline and not a ms before, a periodic one at every
 * period, equal deadlines in arming order, a cancelled one never. In real
 * mode a timer is only checked to fire (eventually) and a periodic one
 * to fire repeatedly until cancelled; no duration is asserted.
 */
#include "tests/unit/runtime_testkit.h"

enum { KIND_RECORDER = 1 };

#define FIRINGS_MAX 64

typedef struct firing {
	uint64_t at_ms;
	uint32_t type;
	uint64_t payload;
} firing;

static firing firings[FIRINGS_MAX];
static int firings_count;
static rt_addr forward_to; /* real mode: forward firings to an inbox */

static void
recorder_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	if (forward_to.id != 0) {
		/* A periodic firing queued before its cancel may still run
		 * (runtime.h): after the test destroyed its inbox, or in
		 * rt_stop's drain, where sends fail by contract. */
		int rc = rt_send_copy(self, forward_to, m->type, m->payload, m->size);
		CHECK_MSG(rc == 0 || (m->type == 2 && (rc == RT_ENOTFOUND ||
			rc == RT_ESTOPPED)), "forward: %s", rt_strerror(rc));
		return;
	}
	CHECK(firings_count < FIRINGS_MAX);
	firing *f = &firings[firings_count++];
	f->at_ms = rt_now_ms(rt_actor_runtime(self));
	f->type = m->type;
	f->payload = m->size >= 8 ? tk_u64(m) : 0;
	CHECK_EQ(m->from.kind, RT_KIND_NONE);
}

static const rt_actor_ops recorder_ops = {
	.name = "recorder",
	.state_size = 8,
	.on_message = recorder_on_message,
};

/* Advances one ms at a time, running turns in between, so each firing is
 * handled at the virtual time it fired. */
static void
advance_by_ms(rt_runtime *rt, uint64_t ms)
{
	for (uint64_t i = 0; i < ms; i++) {
		rt_det_advance(rt, 1);
		rt_det_run_until_idle(rt, 0);
	}
}

TEST(runtime_timers_virtual_one_shot_exact)
{
	rt_runtime *rt = tk_runtime(true, 1, 0);
	CHECK_EQ(rt_register_kind(rt, KIND_RECORDER, &recorder_ops), 0);
	rt_addr to = rt_addr_make(KIND_RECORDER, 1);
	CHECK_EQ_U64(rt_now_ms(rt), 0);
	uint64_t v = 77;
	rt_timer_id id = 0;
	CHECK_EQ(rt_timer_start(rt, to, 5, &v, 8, 100, 0, &id), 0);
	CHECK(id != 0);
	CHECK_EQ_U64(rt_det_next_timer_ms(rt), 100);
	advance_by_ms(rt, 99);
	CHECK_EQ(firings_count, 0);
	advance_by_ms(rt, 1);
	CHECK_EQ(firings_count, 1);
	CHECK_EQ_U64(firings[0].at_ms, 100);
	CHECK_EQ(firings[0].type, 5);
	CHECK_EQ_U64(firings[0].payload, 77);
	CHECK_EQ_U64(rt_det_next_timer_ms(rt), UINT64_MAX);
	CHECK_EQ(rt_timer_cancel(rt, id), RT_ENOTFOUND); /* already fired */
	/* Too big a payload. */
	unsigned char big[RT_TIMER_PAYLOAD_BYTES_MAX + 1] = {0};
	CHECK_EQ(rt_timer_start(rt, to, 5, big, sizeof big, 1, 0, NULL), RT_ETOOBIG);
	/* Wall clock is the virtual epoch plus virtual time. */
	CHECK_EQ_U64(rt_wall_ms(rt), rt_now_ms(rt));
	rt_destroy(rt);
}

TEST(runtime_timers_virtual_periodic_order_and_cancel)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.deterministic = true;
	cfg.passivate_idle_ms = 0;
	cfg.start_time_ms = 1700000000000ull;
	rt_runtime *rt;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_RECORDER, &recorder_ops), 0);
	rt_addr to = rt_addr_make(KIND_RECORDER, 1);
	rt_timer_id periodic, cancelled;
	uint64_t a = 1, b = 2, c = 3;
	CHECK_EQ(rt_timer_start(rt, to, 1, &a, 8, 10, 20, &periodic), 0);
	/* Same deadline as the periodic's first firing, armed later. */
	CHECK_EQ(rt_timer_start(rt, to, 2, &b, 8, 10, 0, NULL), 0);
	CHECK_EQ(rt_timer_start(rt, to, 3, &c, 8, 50, 0, &cancelled), 0);
	CHECK_EQ(rt_timer_cancel(rt, cancelled), 0);
	CHECK_EQ(rt_timer_cancel(rt, cancelled), RT_ENOTFOUND);
	advance_by_ms(rt, 95);
	/* 10 (periodic, then the one-shot), 30, 50, 70, 90. */
	CHECK_EQ(firings_count, 6);
	CHECK_EQ_U64(firings[0].at_ms, 10);
	CHECK_EQ(firings[0].type, 1);
	CHECK_EQ_U64(firings[1].at_ms, 10);
	CHECK_EQ(firings[1].type, 2);
	uint64_t expect[] = {30, 50, 70, 90};
	for (int i = 0; i < 4; i++) {
		CHECK_EQ_U64(firings[2 + i].at_ms, expect[i]);
		CHECK_EQ(firings[2 + i].type, 1);
	}
	CHECK_EQ(rt_timer_cancel(rt, periodic), 0);
	advance_by_ms(rt, 200);
	CHECK_EQ(firings_count, 6);
	CHECK_EQ_U64(rt_wall_ms(rt), 1700000000000ull + 295);
	/* One big advance fires a periodic timer once per period, in order. */
	CHECK_EQ(rt_timer_start(rt, to, 4, &a, 8, 100, 100, &periodic), 0);
	rt_det_advance(rt, 1000);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(firings_count, 16);
	CHECK_EQ(rt_timer_cancel(rt, periodic), 0);
	rt_destroy(rt);
}

TEST(runtime_timers_real_fire)
{
	rt_runtime *rt = tk_runtime(false, 1, 2);
	CHECK_EQ(rt_register_kind(rt, KIND_RECORDER, &recorder_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	forward_to = rt_inbox_addr(inbox);
	CHECK_EQ(rt_start(rt), 0);
	rt_addr to = rt_addr_make(KIND_RECORDER, 1);
	uint64_t before = rt_now_ms(rt);
	uint64_t one = 1, two = 2;
	CHECK_EQ(rt_timer_start(rt, to, 1, &one, 8, 20, 0, NULL), 0);
	rt_message *m = rt_inbox_wait(inbox, 30000);
	CHECK(m != NULL);
	CHECK_EQ(m->type, 1);
	CHECK_EQ_U64(tk_u64(m), 1);
	rt_message_free(rt, m);
	CHECK(rt_now_ms(rt) >= before); /* monotonic, no duration asserted */
	rt_timer_id periodic;
	CHECK_EQ(rt_timer_start(rt, to, 2, &two, 8, 5, 5, &periodic), 0);
	for (int i = 0; i < 3; i++) {
		m = rt_inbox_wait(inbox, 30000);
		CHECK(m != NULL);
		CHECK_EQ(m->type, 2);
		rt_message_free(rt, m);
	}
	CHECK_EQ(rt_timer_cancel(rt, periodic), 0);
	CHECK(rt_wall_ms(rt) > 1600000000000ull);
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
}

TEST(runtime_random_is_seeded)
{
	rt_runtime *a = tk_runtime(true, 5, 0);
	rt_runtime *b = tk_runtime(true, 5, 0);
	rt_runtime *c = tk_runtime(true, 6, 0);
	bool differs = false;
	for (int i = 0; i < 16; i++) {
		uint64_t x = rt_random_u64(a);
		CHECK_EQ_U64(x, rt_random_u64(b));
		differs |= x != rt_random_u64(c);
	}
	CHECK(differs);
	rt_destroy(a);
	rt_destroy(b);
	rt_destroy(c);
}
