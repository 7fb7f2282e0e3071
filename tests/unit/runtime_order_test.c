/*
 * runtime_order_test.c — per-sender FIFO, one actor never on two threads,
 * and sends across worker threads.
 *
 * Method: real runtimes with 2 workers. Several external threads and
 * several sender actors each number their messages to one receiver,
 * which checks every sender's sequence increases by exactly one. For
 * exclusion, an "inside" flag in each target's state is set with an
 * atomic exchange on entry and cleared on exit while many threads and
 * actors hammer a few targets: a second entry would find it set. (Also
 * run under `make tsan`, which would report the unsynchronised state
 * accesses of a concurrent turn.) No assertion depends on timing.
 */
#include "tests/unit/runtime_testkit.h"

#include <stdatomic.h>

enum { KIND_RECEIVER = 1, KIND_SENDER = 2, KIND_TARGET = 3 };
enum { MSG_SEQ = 1, MSG_GO = 2 };

/* Senders: 0..EXTERNAL-1 are threads, the rest actors. */
#define EXTERNAL_SENDERS 4
#define ACTOR_SENDERS 4
#define SENDERS (EXTERNAL_SENDERS + ACTOR_SENDERS)
/* Messages each actor sender sends per turn (it re-sends itself GO). */
#define CHUNK 200

typedef struct seq_msg {
	uint32_t sender;
	uint32_t reserved;
	uint64_t seq;
} seq_msg;

typedef struct receiver_state {
	uint64_t next[SENDERS];
	uint64_t received;
} receiver_state;

typedef struct order_test {
	uint64_t per_sender;
	rt_runtime *rt;
	rt_addr done_inbox;
} order_test;

/* A test's parameters reach actors through the payload of their first
 * message; this one is global only because the ops table is static. */
static order_test the_test;

static void
receiver_on_message(rt_actor *self, void *state, const rt_message *m)
{
	receiver_state *s = state;
	CHECK_EQ(m->type, MSG_SEQ);
	seq_msg x;
	memcpy(&x, m->payload, sizeof x);
	CHECK(x.sender < SENDERS);
	CHECK_MSG(x.seq == s->next[x.sender], "sender %u: got %llu, expected %llu",
		x.sender, (unsigned long long)x.seq,
		(unsigned long long)s->next[x.sender]);
	if (x.sender >= EXTERNAL_SENDERS) {
		CHECK_EQ(m->from.kind, KIND_SENDER);
		CHECK_EQ_U64(m->from.id, x.sender);
	} else {
		CHECK_EQ(m->from.kind, RT_KIND_NONE);
	}
	s->next[x.sender]++;
	s->received++;
	if (s->received == the_test.per_sender * SENDERS)
		CHECK_EQ(rt_send_copy(self, the_test.done_inbox, 1, NULL, 0), 0);
}

static const rt_actor_ops receiver_ops = {
	.name = "receiver",
	.state_size = sizeof(receiver_state),
	.mailbox_messages_max = 1u << 20,
	.on_message = receiver_on_message,
};

typedef struct sender_state {
	uint64_t seq;
} sender_state;

static void
sender_on_message(rt_actor *self, void *state, const rt_message *m)
{
	sender_state *s = state;
	CHECK_EQ(m->type, MSG_GO);
	rt_addr to = rt_addr_make(KIND_RECEIVER, 1);
	for (int i = 0; i < CHUNK && s->seq < the_test.per_sender; i++) {
		seq_msg x = {(uint32_t)rt_self(self).id, 0, s->seq++};
		CHECK_EQ(rt_send_copy(self, to, MSG_SEQ, &x, sizeof x), 0);
	}
	if (s->seq < the_test.per_sender)
		CHECK_EQ(rt_send_copy(self, rt_self(self), MSG_GO, NULL, 0), 0);
}

static const rt_actor_ops sender_ops = {
	.name = "sender",
	.state_size = sizeof(sender_state),
	.on_message = sender_on_message,
};

typedef struct thread_arg {
	rt_runtime *rt;
	uint32_t sender;
	uint64_t count;
} thread_arg;

static void *
external_sender(void *p)
{
	thread_arg *a = p;
	for (uint64_t i = 0; i < a->count; i++) {
		seq_msg x = {a->sender, 0, i};
		CHECK_EQ(tk_send(a->rt, rt_addr_make(KIND_RECEIVER, 1), MSG_SEQ,
			&x, sizeof x), 0);
	}
	return NULL;
}

TEST(runtime_per_sender_order_across_threads_and_actors)
{
	rt_runtime *rt = tk_runtime(false, 11, 2);
	the_test.per_sender = test_sanitized() ? 5000 : 30000;
	the_test.rt = rt;
	CHECK_EQ(rt_register_kind(rt, KIND_RECEIVER, &receiver_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_SENDER, &sender_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	the_test.done_inbox = rt_inbox_addr(inbox);
	CHECK_EQ(rt_start(rt), 0);
	pthread_t threads[EXTERNAL_SENDERS];
	thread_arg args[EXTERNAL_SENDERS];
	for (uint32_t i = 0; i < EXTERNAL_SENDERS; i++) {
		args[i] = (thread_arg){rt, i, the_test.per_sender};
		CHECK_EQ(pthread_create(&threads[i], NULL, external_sender, &args[i]), 0);
	}
	for (uint32_t i = EXTERNAL_SENDERS; i < SENDERS; i++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_SENDER, i), MSG_GO, NULL, 0), 0);
	for (uint32_t i = 0; i < EXTERNAL_SENDERS; i++)
		pthread_join(threads[i], NULL);
	rt_message *done = rt_inbox_wait(inbox, 50000);
	CHECK_MSG(done != NULL, "receiver did not get every message");
	rt_message_free(rt, done);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK(st.messages_delivered_total >= the_test.per_sender * SENDERS);
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
}

/* ---- exclusion ------------------------------------------------------------ */

#define TARGETS 4
#define HAMMER_ACTORS 8

typedef struct target_state {
	atomic_int inside;
	uint64_t plain; /* unsynchronised on purpose: tsan flags overlap */
	uint64_t handled;
} target_state;

static atomic_ullong handled_total;

static void
target_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)m;
	target_state *s = state;
	CHECK_MSG(atomic_exchange(&s->inside, 1) == 0,
		"two threads inside one actor");
	for (int i = 0; i < 20; i++) {
		s->plain++;
		__asm__ volatile("" ::: "memory");
	}
	s->handled++;
	CHECK_EQ(atomic_exchange(&s->inside, 0), 1);
	atomic_fetch_add(&handled_total, 1);
}

static const rt_actor_ops target_ops = {
	.name = "target",
	.state_size = sizeof(target_state),
	.mailbox_messages_max = 1u << 20,
	.on_message = target_on_message,
};

/* A hammer actor: each GO sends CHUNK messages spread over the targets,
 * then re-arms itself until its share is sent. */
typedef struct hammer_state {
	uint64_t sent;
} hammer_state;

static uint64_t hammer_share;

static void
hammer_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)m;
	hammer_state *s = state;
	for (int i = 0; i < CHUNK && s->sent < hammer_share; i++, s->sent++) {
		rt_addr to = rt_addr_make(KIND_TARGET, s->sent % TARGETS);
		CHECK_EQ(rt_send_copy(self, to, MSG_SEQ, &s->sent, 8), 0);
	}
	if (s->sent < hammer_share)
		CHECK_EQ(rt_send_copy(self, rt_self(self), MSG_GO, NULL, 0), 0);
}

static const rt_actor_ops hammer_ops = {
	.name = "hammer",
	.state_size = sizeof(hammer_state),
	.on_message = hammer_on_message,
};

static void *
external_hammer(void *p)
{
	thread_arg *a = p;
	for (uint64_t i = 0; i < a->count; i++)
		CHECK_EQ(tk_send(a->rt, rt_addr_make(KIND_TARGET, i % TARGETS),
			MSG_SEQ, &i, 8), 0);
	return NULL;
}

TEST(runtime_actor_never_runs_on_two_threads)
{
	rt_runtime *rt = tk_runtime(false, 5, 2);
	CHECK_EQ(rt_register_kind(rt, KIND_TARGET, &target_ops), 0);
	CHECK_EQ(rt_register_kind(rt, KIND_SENDER, &hammer_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	uint64_t per = test_sanitized() ? 4000 : 40000;
	hammer_share = per;
	pthread_t threads[EXTERNAL_SENDERS];
	thread_arg args[EXTERNAL_SENDERS];
	for (uint32_t i = 0; i < EXTERNAL_SENDERS; i++) {
		args[i] = (thread_arg){rt, i, per};
		CHECK_EQ(pthread_create(&threads[i], NULL, external_hammer, &args[i]), 0);
	}
	for (uint32_t i = 0; i < HAMMER_ACTORS; i++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_SENDER, i), MSG_GO, NULL, 0), 0);
	for (uint32_t i = 0; i < EXTERNAL_SENDERS; i++)
		pthread_join(threads[i], NULL);
	uint64_t expect = per * (EXTERNAL_SENDERS + HAMMER_ACTORS);
	/* Wait by polling the count; the bound is generous, not a timing
	 * assertion. */
	for (int i = 0; i < 60000 && atomic_load(&handled_total) < expect; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ_U64(atomic_load(&handled_total), expect);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
}

/* ---- cross-thread ping-pong --------------------------------------------- */

enum { KIND_PING = 4 };
#define PAIRS 16

static rt_addr pong_done;

static void
ping_on_message(rt_actor *self, void *state, const rt_message *m)
{
	uint64_t *count = state;
	uint64_t left = tk_u64(m);
	(*count)++;
	if (left == 0) {
		CHECK_EQ(rt_send_copy(self, pong_done, 1, count, 8), 0);
		return;
	}
	left--;
	rt_addr peer = rt_addr_make(KIND_PING, rt_self(self).id ^ 1u);
	CHECK_EQ(rt_send_copy(self, peer, 1, &left, 8), 0);
}

static const rt_actor_ops ping_ops = {
	.name = "ping",
	.state_size = 8,
	.on_message = ping_on_message,
};

TEST(runtime_cross_thread_ping_pong_pairs)
{
	rt_runtime *rt = tk_runtime(false, 9, 2);
	CHECK_EQ(rt_register_kind(rt, KIND_PING, &ping_ops), 0);
	rt_inbox *inbox;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &inbox), 0);
	pong_done = rt_inbox_addr(inbox);
	CHECK_EQ(rt_start(rt), 0);
	uint64_t hops = test_sanitized() ? 2000 : 20000;
	for (uint64_t p = 0; p < PAIRS; p++)
		CHECK_EQ(tk_send(rt, rt_addr_make(KIND_PING, 2 * p), 1, &hops, 8), 0);
	for (int i = 0; i < PAIRS; i++) {
		rt_message *m = rt_inbox_wait(inbox, 50000);
		CHECK(m != NULL);
		rt_message_free(rt, m);
	}
	rt_inbox_destroy(inbox);
	CHECK_EQ(rt_stop(rt), 0);
	rt_stats st;
	rt_get_stats(rt, &st);
	CHECK_EQ_U64(st.messages_delivered_total, PAIRS * (hops + 1));
	rt_destroy(rt);
}
