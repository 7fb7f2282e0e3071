/*
 * runtime_partition_test.c — what the cluster needs from the runtime to
 * move partitions: node ids in inbox ids and routing of other nodes'
 * inboxes, rt_passivate_where with the may_activate gate, undeliverable
 * replies for asks the route hook refuses, and rt_deliver_local past the
 * mailbox bound.
 *
 * Method: a counter kind whose state is a running total, stored by the
 * testkit's in-memory store. "Partitions" are the id's low bit. A route
 * hook plays the cluster: it owns partition 0 always and partition 1
 * until the test flips `moved`; after that it takes (holds) messages for
 * partition 1 and may_activate refuses them. The tests check that every
 * message sent ends in exactly one place (a stored total or the held
 * list), that done runs once, and that nothing of the moved partition
 * stays or comes back active. A real-mode run does the same under four
 * concurrent senders.
 */
#include "tests/unit/runtime_testkit.h"

#include <stdatomic.h>

enum { KIND_COUNTER = 1, KIND_SMALL = 2 };
enum { MSG_ADD = 1, MSG_GET = 2 };

typedef struct counter_state {
	uint64_t total;
} counter_state;

static void
counter_on_message(rt_actor *self, void *state, const rt_message *m)
{
	counter_state *s = state;
	if (m->type == MSG_ADD) {
		s->total += tk_u64(m);
		rt_mark_dirty(self);
	} else if (m->type == MSG_GET) {
		rt_message *r = rt_message_alloc(rt_actor_runtime(self), MSG_GET,
			8);
		memcpy(r->payload, &s->total, 8);
		CHECK_EQ(rt_reply(self, m, r), 0);
	}
}

static int
counter_encode(const void *state, rt_buffer *out)
{
	return tk_encode_u64s(state, 1, out);
}

static int
counter_decode(void *state, const void *bytes, size_t length)
{
	if (length != 8)
		return RT_ECORRUPT;
	memcpy(state, bytes, 8);
	return 0;
}

static const rt_actor_ops counter_ops = {
	.name = "counter",
	.state_size = sizeof(counter_state),
	.on_message = counter_on_message,
	.encode_state = counter_encode,
	.decode_state = counter_decode,
};

static const rt_actor_ops small_ops = {
	.name = "small",
	.state_size = sizeof(counter_state),
	.mailbox_messages_max = 2,
	.on_message = counter_on_message,
	.encode_state = counter_encode,
	.decode_state = counter_decode,
};

/* ---- the pretend cluster ------------------------------------------------ */

#define HELD_MAX 200000

typedef struct cluster {
	atomic_bool moved;       /* partition 1 belongs elsewhere */
	atomic_uint route_calls;
	atomic_uint gate_refusals;
	pthread_mutex_t lock;
	uint32_t held_count;
	uint64_t held_sum;       /* MSG_ADD amounts taken for partition 1 */
	rt_message *inbox_held;  /* last message for another node's inbox */
	rt_runtime *rt;
} cluster;

static bool
partition_one(rt_addr a)
{
	return a.kind != RT_KIND_INBOX && (a.id & 1u) == 1u;
}

static int
cluster_route(void *arg, rt_message *m)
{
	cluster *c = arg;
	atomic_fetch_add(&c->route_calls, 1);
	if (m->to.kind == RT_KIND_INBOX) {
		pthread_mutex_lock(&c->lock);
		if (c->inbox_held != NULL)
			rt_message_free(c->rt, c->inbox_held);
		c->inbox_held = m;
		pthread_mutex_unlock(&c->lock);
		return RT_ROUTE_TAKEN;
	}
	if (m->to.id == 666)
		return RT_EUNAVAILABLE;
	if (!partition_one(m->to) || !atomic_load(&c->moved))
		return RT_ROUTE_LOCAL;
	pthread_mutex_lock(&c->lock);
	CHECK(c->held_count < HELD_MAX);
	c->held_count++;
	if (m->type == MSG_ADD)
		c->held_sum += tk_u64(m);
	pthread_mutex_unlock(&c->lock);
	rt_message_free(c->rt, m);
	return RT_ROUTE_TAKEN;
}

static bool
cluster_may_activate(void *arg, rt_addr addr)
{
	cluster *c = arg;
	bool ok = !partition_one(addr) || !atomic_load(&c->moved);
	if (!ok)
		atomic_fetch_add(&c->gate_refusals, 1);
	return ok;
}

static const rt_route_ops cluster_ops = {
	.route = cluster_route,
	.may_activate = cluster_may_activate,
};

static bool
pred_partition_one(void *arg, rt_addr addr)
{
	(void)arg;
	return partition_one(addr);
}

typedef struct done_log {
	atomic_int calls;
	atomic_int status;
} done_log;

static void
on_done(void *arg, int status)
{
	done_log *d = arg;
	atomic_store(&d->status, status);
	atomic_fetch_add(&d->calls, 1);
}

static uint64_t
stored_total(tk_store *s, uint64_t id)
{
	pthread_mutex_lock(&s->lock);
	tk_entry *e = tk_store_find(s, rt_addr_make(KIND_COUNTER, id), false);
	uint64_t v = 0;
	if (e != NULL) {
		CHECK_EQ(e->bytes.length, 8);
		memcpy(&v, e->bytes.bytes, 8);
	}
	pthread_mutex_unlock(&s->lock);
	return v;
}

static rt_runtime *
cluster_runtime(bool deterministic, uint32_t workers, tk_store *store,
	cluster *c)
{
	rt_runtime *rt = tk_runtime(deterministic, 5, workers);
	CHECK_EQ(rt_register_kind(rt, KIND_COUNTER, &counter_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_SMALL, &small_ops), 0);
	tk_store_init(store);
	rt_set_store(rt, &tk_store_ops, store);
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	c->rt = rt;
	rt_set_route(rt, &cluster_ops, c);
	return rt;
}

/* ---- node ids ----------------------------------------------------------- */

TEST(runtime_partition_inbox_ids_carry_the_node_id)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(true, 0, &store, &c);
	rt_inbox *before;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &before), 0);
	CHECK_EQ(rt_inbox_addr(before).id >> RT_INBOX_NODE_SHIFT, 0);
	CHECK_EQ(rt_node_id(rt), 0);
	CHECK_EQ(rt_set_node_id(rt, 0), RT_EINVAL);
	CHECK_EQ(rt_set_node_id(rt, 7), 0);
	CHECK_EQ(rt_set_node_id(rt, 7), 0);
	CHECK_EQ(rt_set_node_id(rt, 8), RT_EEXIST);
	CHECK_EQ(rt_node_id(rt), 7);
	rt_inbox *after;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &after), 0);
	rt_addr a = rt_inbox_addr(after);
	CHECK_EQ(a.id >> RT_INBOX_NODE_SHIFT, 7);
	CHECK(a.id != rt_inbox_addr(before).id);

	/* Both local inboxes take sends without the route hook. */
	uint64_t one = 1;
	CHECK_EQ(tk_send(rt, a, MSG_ADD, &one, 8), 0);
	CHECK_EQ(tk_send(rt, rt_inbox_addr(before), MSG_ADD, &one, 8), 0);
	CHECK_EQ(atomic_load(&c.route_calls), 0);
	rt_message *m = rt_inbox_take(after);
	CHECK(m != NULL);
	rt_message_free(rt, m);
	m = rt_inbox_take(before);
	CHECK(m != NULL);
	rt_message_free(rt, m);

	/* Another node's inbox goes through the hook. */
	rt_addr remote = rt_addr_make(RT_KIND_INBOX,
		(uint64_t)9 << RT_INBOX_NODE_SHIFT | 3u);
	CHECK_EQ(tk_send(rt, remote, MSG_ADD, &one, 8), 0);
	CHECK_EQ(atomic_load(&c.route_calls), 1);
	CHECK(c.inbox_held != NULL);
	CHECK(rt_addr_equal(c.inbox_held->to, remote));

	/* Delivered on "node 9" it would find its inbox by the whole id. */
	rt_message_free(rt, c.inbox_held);
	c.inbox_held = NULL;
	rt_inbox_destroy(before);
	rt_inbox_destroy(after);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* ---- passivating a partition -------------------------------------------- */

TEST(runtime_partition_passivate_where_saves_and_gates)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(true, 0, &store, &c);
	enum { ACTORS = 200 };
	uint64_t expect[ACTORS] = {0};
	for (uint64_t id = 0; id < ACTORS; id++) {
		uint64_t v = id + 1;
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, id), MSG_ADD, &v,
				 8), 0);
		expect[id] += v;
	}
	rt_det_run_until_idle(rt, 0);
	/* More queued, not yet run, when the move starts. */
	for (uint64_t id = 0; id < ACTORS; id++) {
		uint64_t v = 1000;
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, id), MSG_ADD, &v,
				 8), 0);
		expect[id] += v;
	}
	atomic_store(&c.moved, true);
	done_log d = {0};
	CHECK_EQ(rt_passivate_where(rt, pred_partition_one, NULL, on_done, &d),
		0);
	CHECK_EQ(atomic_load(&d.calls), 0);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(atomic_load(&d.calls), 1);
	CHECK_EQ(atomic_load(&d.status), 0);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, ACTORS / 2);
	for (uint64_t id = 1; id < ACTORS; id += 2)
		CHECK_EQ_U64(stored_total(&store, id), expect[id]);

	/* Sends now go to the hook; a timer and rt_activate cannot bring a
	 * moved actor back either. */
	uint64_t v = 5;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 3), MSG_ADD, &v, 8), 0);
	CHECK_EQ(c.held_count, 1);
	CHECK_EQ(rt_activate(rt, rt_addr_make(KIND_COUNTER, 5)),
		RT_EUNAVAILABLE);
	CHECK_EQ(rt_timer_start(rt, rt_addr_make(KIND_COUNTER, 7), MSG_ADD, &v,
			 8, 10, 0, NULL), 0);
	rt_det_advance(rt, 20);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(c.held_count, 2);
	CHECK(atomic_load(&c.gate_refusals) >= 2);
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, ACTORS / 2);

	/* Nothing matches: done runs before the call returns. */
	done_log d2 = {0};
	CHECK_EQ(rt_passivate_where(rt, pred_partition_one, NULL, on_done,
			 &d2), 0);
	CHECK_EQ(atomic_load(&d2.calls), 1);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* A message that lands while the actor is being saved: it is handled
 * (after a reload of what was just saved) and saved again; done still
 * runs once, after the actor is gone. */
static rt_runtime *race_rt;
static int race_sends;

static void
race_on_save(void *arg, rt_addr addr)
{
	(void)arg;
	if (race_sends > 0 && addr.id == 1) {
		race_sends--;
		/* Straight into the mailbox, as a sender that routed before
		 * the move would. */
		rt_message *m = rt_message_alloc(race_rt, MSG_ADD, 8);
		uint64_t v = 100;
		memcpy(m->payload, &v, 8);
		m->to = addr;
		CHECK_EQ(rt_deliver_local(race_rt, m), 0);
	}
}

TEST(runtime_partition_message_racing_the_save_is_kept)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(true, 0, &store, &c);
	race_rt = rt;
	race_sends = 2;
	uint64_t v = 1;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &v, 8), 0);
	rt_det_run_until_idle(rt, 0);
	store.on_save = race_on_save;
	atomic_store(&c.moved, true);
	done_log d = {0};
	CHECK_EQ(rt_passivate_where(rt, pred_partition_one, NULL, on_done, &d),
		0);
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(atomic_load(&d.calls), 1);
	CHECK_EQ(race_sends, 0);
	CHECK_EQ_U64(stored_total(&store, 1), 201);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.actors_active, 0);
	rt_destroy(rt);
	tk_store_free(&store);
}

TEST(runtime_partition_stop_ends_a_running_pass)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(true, 0, &store, &c);
	uint64_t v = 1;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 1), MSG_ADD, &v, 8), 0);
	rt_det_run_until_idle(rt, 0);
	done_log d = {0};
	CHECK_EQ(rt_passivate_where(rt, pred_partition_one, NULL, on_done, &d),
		0);
	CHECK_EQ(rt_stop(rt), 0);
	CHECK_EQ(atomic_load(&d.calls), 1);
	CHECK_EQ(atomic_load(&d.status), RT_ESTOPPED);
	CHECK_EQ(rt_passivate_where(rt, pred_partition_one, NULL, on_done, &d),
		RT_ESTOPPED);
	CHECK_EQ_U64(stored_total(&store, 1), 1);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* Real mode: four threads keep sending to both partitions while the
 * move happens; every amount ends in a stored total or the held list. */
typedef struct sender_arg {
	rt_runtime *rt;
	uint32_t index;
	atomic_bool *stop;
	uint64_t sent_sum;
	uint64_t sent;
} sender_arg;

#define REAL_ACTORS 64u

static void *
sender_main(void *p)
{
	sender_arg *s = p;
	uint64_t rng = s->index * 7919u + 1;
	while (!atomic_load(s->stop) || s->sent < 2000) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t id = (rng >> 33) % REAL_ACTORS;
		uint64_t v = (rng >> 20) % 100 + 1;
		CHECK_EQ(tk_send(s->rt, rt_addr_make(KIND_COUNTER, id), MSG_ADD,
				 &v, 8), 0);
		s->sent_sum += v;
		s->sent++;
	}
	return NULL;
}

static uint64_t
ask_total(rt_runtime *rt, rt_inbox *inbox, uint64_t id)
{
	rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
	CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_COUNTER, id), m, 10000,
			 NULL), 0);
	rt_message *r = rt_inbox_wait(inbox, 10000);
	CHECK(r != NULL);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	uint64_t v = tk_u64(r);
	rt_message_free(rt, r);
	return v;
}

TEST_WITH_TIMEOUT(runtime_partition_move_under_concurrent_senders, 120)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(false, 3, &store, &c);
	CHECK_EQ(rt_start(rt), 0);
	atomic_bool stop = false;
	sender_arg args[4];
	pthread_t threads[4];
	for (uint32_t i = 0; i < 4; i++) {
		args[i] = (sender_arg){.rt = rt, .index = i, .stop = &stop};
		CHECK_EQ(pthread_create(&threads[i], NULL, sender_main, &args[i]),
			0);
	}
	struct timespec pause = {0, 20 * 1000 * 1000};
	nanosleep(&pause, NULL);
	atomic_store(&c.moved, true);
	done_log d = {0};
	CHECK_EQ(rt_passivate_where(rt, pred_partition_one, NULL, on_done, &d),
		0);
	/* generous: the machine may be shared with heavier tests */
	for (int k = 0; k < 90000 && atomic_load(&d.calls) == 0; k++) {
		struct timespec ms = {0, 1000 * 1000};
		nanosleep(&ms, NULL);
	}
	CHECK_EQ(atomic_load(&d.calls), 1);
	CHECK_EQ(atomic_load(&d.status), 0);
	atomic_store(&stop, true);
	uint64_t sent_sum = 0;
	for (uint32_t i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		sent_sum += args[i].sent_sum;
	}
	/* Partition 0 is still here: ask its totals (the asks queue behind
	 * every add). Partition 1's totals are in the store. */
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	uint64_t total = 0;
	for (uint64_t id = 0; id < REAL_ACTORS; id += 2)
		total += ask_total(rt, inbox, id);
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(rt), 0);
	for (uint64_t id = 1; id < REAL_ACTORS; id += 2)
		total += stored_total(&store, id);
	CHECK_EQ_U64(total + c.held_sum, sent_sum);
	rt_destroy(rt);
	tk_store_free(&store);
}

/* ---- undeliverable asks, deliveries past the bound ----------------------- */

TEST(runtime_partition_refused_ask_gets_undeliverable_reply)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(true, 0, &store, &c);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	rt_message *m = rt_message_alloc(rt, MSG_GET, 0);
	uint64_t correlation = 0;
	CHECK_EQ(rt_inbox_ask(inbox, rt_addr_make(KIND_COUNTER, 666), m, 5000,
			 &correlation), 0);
	rt_message *r = rt_inbox_wait(inbox, 100);
	CHECK(r != NULL);
	CHECK_EQ(r->type, RT_TYPE_UNDELIVERABLE);
	CHECK(r->flags & RT_MESSAGE_F_REPLY);
	CHECK_EQ_U64(r->correlation, correlation);
	int32_t code;
	CHECK_EQ(r->size, sizeof code);
	memcpy(&code, r->payload, sizeof code);
	CHECK_EQ(code, RT_EUNAVAILABLE);
	rt_message_free(rt, r);
	/* The ask was claimed: no timeout follows. */
	rt_det_advance(rt, 6000);
	rt_det_run_until_idle(rt, 0);
	CHECK(rt_inbox_take(inbox) == NULL);
	/* A plain send still fails with the hook's code. */
	uint64_t v = 1;
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_COUNTER, 666), MSG_ADD, &v, 8),
		RT_EUNAVAILABLE);
	rt_inbox_destroy(inbox);
	rt_destroy(rt);
	tk_store_free(&store);
}

TEST(runtime_partition_deliver_local_passes_the_mailbox_bound)
{
	tk_store store;
	cluster c;
	rt_runtime *rt = cluster_runtime(true, 0, &store, &c);
	rt_addr to = rt_addr_make(KIND_SMALL, 2);
	uint64_t v = 1;
	for (int i = 0; i < 10; i++) {
		rt_message *m = rt_message_alloc(rt, MSG_ADD, 8);
		memcpy(m->payload, &v, 8);
		m->to = to;
		CHECK_EQ(rt_deliver_local(rt, m), 0);
	}
	/* A local sender still sees the bound. */
	rt_message *m = rt_message_alloc(rt, MSG_ADD, 8);
	memcpy(m->payload, &v, 8);
	CHECK_EQ(rt_send_external(rt, to, m), RT_EMAILBOX_FULL);
	rt_det_run_until_idle(rt, 0);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.messages_delivered_total, 10);
	rt_destroy(rt);
	tk_store_free(&store);
}
