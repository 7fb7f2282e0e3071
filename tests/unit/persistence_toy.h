/*
 * persistence_toy.h — two toy actor kinds for the node and crash tests.
 *
 * counter (TOY_KIND_COUNTER): applies increments that carry a unique id,
 * at most once per id (the dedupe of client retries and of replay); each
 * new id derives one effect, through the counter's outbox, on a tally.
 * tally (TOY_KIND_TALLY): counts effects, once per (source, sequence),
 * journaling each before confirming it (the protocol in persistence.h).
 *
 * Test-only globals: the node (actors reach it the way the domain will
 * through its context), an ack pipe written on every durable increment,
 * the number of unconfirmed effects in active counters, and the number
 * of counter activations whose on_activate has returned (its effects are
 * counted in the unconfirmed ones from then on).
 */
#ifndef FLOCK_PERSISTENCE_TOY_H
#define FLOCK_PERSISTENCE_TOY_H

#include "persistence/persistence.h"
#include "tests/test.h"

#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define TOY_FN __attribute__((unused)) static

#define TOY_KIND_COUNTER 1u
#define TOY_KIND_TALLY 2u
#define TOY_TALLIES 10u

enum {
	TOY_MSG_INCREMENT = 1,  /* payload u64 id */
	TOY_MSG_NOTICE = 2,     /* ps_durable_notice, cookie = id */
	TOY_MSG_CONFIRM = 3,    /* ps_effect_confirm */
	TOY_MSG_EFFECT = 4,     /* ps_effect_header + u64 id */
	TOY_MSG_TALLY_NOTICE = 5, /* ps_durable_notice, cookie = header */
	TOY_MSG_RETRY = 6,      /* timer: re-send the outbox */
};

enum {
	TOY_EVENT_INCREMENT = 1, /* u64 id */
	TOY_EVENT_EFFECT = 2,    /* u32 kind, u64 id, u64 sequence */
};

static ps_node *toy_node;
static int toy_ack_fd = -1;
static atomic_long toy_unconfirmed;
static atomic_long toy_acks;
static atomic_long toy_counters_activated;

typedef struct toy_counter {
	uint64_t count;
	uint32_t ids_count;
	uint32_t ids_capacity;
	uint64_t *ids; /* sorted */
	ps_outbox outbox;
	bool retry_armed;
} toy_counter;

typedef struct toy_tally {
	uint64_t count;
	ps_dedupe dedupe;
} toy_tally;

TOY_FN bool
toy_ids_find(const toy_counter *c, uint64_t id, uint32_t *at)
{
	uint32_t lo = 0, hi = c->ids_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (c->ids[mid] == id) {
			*at = mid;
			return true;
		}
		if (c->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return false;
}

TOY_FN uint32_t
toy_counter_index(uint64_t id, uint32_t counters)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;
	return (uint32_t)((h >> 32) % counters);
}

/* Applies an increment (deterministic, idempotent). */
TOY_FN int
toy_counter_apply(toy_counter *c, rt_addr self, uint64_t id, uint64_t lsn,
	bool *applied)
{
	uint32_t at;
	*applied = false;
	if (toy_ids_find(c, id, &at))
		return 0;
	if (c->ids_count == c->ids_capacity) {
		uint32_t cap = c->ids_capacity ? c->ids_capacity * 2 : 8;
		uint64_t *p = realloc(c->ids, cap * sizeof *p);
		if (p == NULL)
			return RT_ENOMEM;
		c->ids = p;
		c->ids_capacity = cap;
	}
	memmove(&c->ids[at + 1], &c->ids[at], (c->ids_count - at) * sizeof *c->ids);
	c->ids[at] = id;
	c->ids_count++;
	c->count++;
	rt_addr tally = rt_addr_make(TOY_KIND_TALLY, self.id % TOY_TALLIES);
	int rc = ps_outbox_add(&c->outbox, tally, TOY_MSG_EFFECT, &id, sizeof id,
		lsn, NULL);
	*applied = true;
	return rc == 0 ? 0 : RT_ENOMEM;
}

/* apply_record gets no address, so an increment record carries the
 * counter's id next to the increment's id (the id names its tally). */
TOY_FN int
toy_counter_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	if (type != TOY_EVENT_INCREMENT || length != 16)
		return RT_ECORRUPT;
	uint64_t v[2];
	memcpy(v, payload, sizeof v);
	bool applied;
	return toy_counter_apply(state, rt_addr_make(TOY_KIND_COUNTER, v[1]),
		v[0], 0, &applied);
}

TOY_FN void
toy_counter_send(rt_actor *self, toy_counter *c, uint64_t durable)
{
	uint32_t unsent = ps_outbox_send(self, &c->outbox, durable,
		TOY_MSG_CONFIRM);
	if (unsent > 0 && !c->retry_armed && durable == UINT64_MAX) {
		c->retry_armed = true;
		rt_timer_start(rt_actor_runtime(self), rt_self(self),
			TOY_MSG_RETRY, NULL, 0, 10, 0, NULL);
	}
}

TOY_FN int
toy_counter_activate(rt_actor *self, void *state, bool fresh)
{
	(void)fresh;
	toy_counter *c = state;
	atomic_fetch_add(&toy_unconfirmed, (long)c->outbox.count);
	ps_outbox_reset_sent(&c->outbox);
	toy_counter_send(self, c, UINT64_MAX);
	/* Last: a waiter that sees this count sees the effects above. */
	atomic_fetch_add(&toy_counters_activated, 1);
	return 0;
}

TOY_FN void
toy_counter_passivate(rt_actor *self, void *state)
{
	(void)self;
	toy_counter *c = state;
	atomic_fetch_sub(&toy_unconfirmed, (long)c->outbox.count);
}

TOY_FN void
toy_counter_message(rt_actor *self, void *state, const rt_message *m)
{
	toy_counter *c = state;
	rt_addr me = rt_self(self);
	if (m->type == TOY_MSG_INCREMENT) {
		uint64_t id;
		CHECK(m->size == sizeof id);
		memcpy(&id, m->payload, sizeof id);
		uint32_t at;
		if (toy_ids_find(c, id, &at))
			return; /* a retry of an applied increment */
		uint64_t record[2] = {id, me.id};
		uint64_t lsn;
		int rc = ps_node_append_notify(toy_node, me, TOY_EVENT_INCREMENT,
			record, sizeof record, me, TOY_MSG_NOTICE, &id, sizeof id,
			&lsn);
		if (rc != 0)
			return; /* not applied: the client sees no ack */
		bool applied;
		CHECK_EQ(toy_counter_apply(c, me, id, lsn, &applied), 0);
		atomic_fetch_add(&toy_unconfirmed, 1);
		rt_mark_dirty(self);
	} else if (m->type == TOY_MSG_NOTICE) {
		const ps_durable_notice *n = (const void *)m->payload;
		if (n->status != 0)
			return;
		uint64_t id;
		memcpy(&id, n->cookie, sizeof id);
		atomic_fetch_add(&toy_acks, 1);
		if (toy_ack_fd >= 0)
			CHECK_EQ(write(toy_ack_fd, &id, sizeof id), sizeof id);
		toy_counter_send(self, c, n->lsn);
	} else if (m->type == TOY_MSG_CONFIRM) {
		ps_effect_confirm conf;
		memcpy(&conf, m->payload, sizeof conf);
		if (ps_outbox_confirm(&c->outbox, conf.sequence) == 0) {
			atomic_fetch_sub(&toy_unconfirmed, 1);
			rt_mark_dirty(self);
		}
	} else if (m->type == TOY_MSG_RETRY || m->type == RT_TYPE_TIMER) {
		c->retry_armed = false;
		toy_counter_send(self, c, UINT64_MAX);
	}
}

TOY_FN int
toy_counter_encode(const void *state, rt_buffer *out)
{
	const toy_counter *c = state;
	size_t n = 12 + (size_t)c->ids_count * 8 + ps_outbox_encoded_bytes(&c->outbox);
	int rc = rt_buffer_reserve(out, n);
	if (rc != 0)
		return rc;
	unsigned char *p = out->bytes + out->length;
	memcpy(p, &c->count, 8);
	memcpy(p + 8, &c->ids_count, 4);
	memcpy(p + 12, c->ids, (size_t)c->ids_count * 8);
	ps_outbox_encode(&c->outbox, p + 12 + (size_t)c->ids_count * 8);
	out->length += n;
	return 0;
}

TOY_FN int
toy_counter_decode(void *state, const void *bytes, size_t length)
{
	toy_counter *c = state;
	const unsigned char *p = bytes;
	if (length < 12)
		return RT_ECORRUPT;
	memcpy(&c->count, p, 8);
	memcpy(&c->ids_count, p + 8, 4);
	if ((length - 12) / 8 < c->ids_count)
		return RT_ECORRUPT;
	c->ids_capacity = c->ids_count ? c->ids_count : 1;
	c->ids = malloc(c->ids_capacity * sizeof *c->ids);
	if (c->ids == NULL)
		return RT_ENOMEM;
	memcpy(c->ids, p + 12, (size_t)c->ids_count * 8);
	size_t off = 12 + (size_t)c->ids_count * 8;
	size_t used;
	return ps_outbox_decode(&c->outbox, p + off, length - off, &used) == 0
		? 0 : RT_ECORRUPT;
}

TOY_FN void
toy_counter_free(void *state)
{
	toy_counter *c = state;
	free(c->ids);
	ps_outbox_free(&c->outbox);
}

TOY_FN int
toy_tally_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	toy_tally *t = state;
	if (type != TOY_EVENT_EFFECT || length != sizeof(ps_effect_header))
		return RT_ECORRUPT;
	ps_effect_header h;
	memcpy(&h, payload, sizeof h);
	rt_addr source = rt_addr_make(h.source_kind, h.source_id);
	if (ps_dedupe_seen(&t->dedupe, source, h.sequence))
		return 0;
	if (ps_dedupe_record(&t->dedupe, source, h.sequence) != 0)
		return RT_ENOMEM;
	t->count++;
	return 0;
}

TOY_FN void
toy_tally_message(rt_actor *self, void *state, const rt_message *m)
{
	toy_tally *t = state;
	rt_addr me = rt_self(self);
	if (m->type == TOY_MSG_EFFECT) {
		ps_effect_header h;
		const void *payload;
		size_t bytes;
		CHECK_EQ(ps_effect_parse(m->payload, m->size, &h, &payload, &bytes), 0);
		rt_addr source = rt_addr_make(h.source_kind, h.source_id);
		if (ps_dedupe_seen(&t->dedupe, source, h.sequence)) {
			/* Confirm once what we journaled is durable. */
			ps_node_barrier_notify(toy_node, me, TOY_MSG_TALLY_NOTICE,
				&h, sizeof h);
			return;
		}
		if (ps_node_append_notify(toy_node, me, TOY_EVENT_EFFECT, &h,
			    sizeof h, me, TOY_MSG_TALLY_NOTICE, &h, sizeof h,
			    NULL) != 0)
			return; /* unconfirmed: the source re-sends */
		CHECK_EQ(toy_tally_apply_record(t, TOY_EVENT_EFFECT, &h, sizeof h), 0);
		rt_mark_dirty(self);
	} else if (m->type == TOY_MSG_TALLY_NOTICE) {
		const ps_durable_notice *n = (const void *)m->payload;
		if (n->status != 0)
			return;
		ps_effect_header h;
		memcpy(&h, n->cookie, sizeof h);
		ps_effect_confirm_send(self, &h);
	}
}

TOY_FN int
toy_tally_encode(const void *state, rt_buffer *out)
{
	const toy_tally *t = state;
	size_t n = 8 + ps_dedupe_encoded_bytes(&t->dedupe);
	int rc = rt_buffer_reserve(out, n);
	if (rc != 0)
		return rc;
	memcpy(out->bytes + out->length, &t->count, 8);
	ps_dedupe_encode(&t->dedupe, out->bytes + out->length + 8);
	out->length += n;
	return 0;
}

TOY_FN int
toy_tally_decode(void *state, const void *bytes, size_t length)
{
	toy_tally *t = state;
	if (length < 8)
		return RT_ECORRUPT;
	memcpy(&t->count, bytes, 8);
	return ps_dedupe_decode(&t->dedupe, (const unsigned char *)bytes + 8,
		       length - 8, NULL) == 0 ? 0 : RT_ECORRUPT;
}

TOY_FN void
toy_tally_free(void *state)
{
	ps_dedupe_free(&((toy_tally *)state)->dedupe);
}

static const rt_actor_ops toy_counter_ops = {
	.name = "toy_counter",
	.state_size = sizeof(toy_counter),
	.mailbox_messages_max = 1u << 16,
	.on_activate = toy_counter_activate,
	.on_message = toy_counter_message,
	.on_passivate = toy_counter_passivate,
	.encode_state = toy_counter_encode,
	.decode_state = toy_counter_decode,
	.apply_record = toy_counter_apply_record,
	.free_state = toy_counter_free,
};

static const rt_actor_ops toy_tally_ops = {
	.name = "toy_tally",
	.state_size = sizeof(toy_tally),
	.mailbox_messages_max = 1u << 18,
	.on_message = toy_tally_message,
	.encode_state = toy_tally_encode,
	.decode_state = toy_tally_decode,
	.apply_record = toy_tally_apply_record,
	.free_state = toy_tally_free,
};

/* The node's owes callback: a counter owes while its outbox holds
 * effects; a tally owes nothing. */
TOY_FN bool
toy_owes(void *arg, rt_addr addr, const void *state)
{
	(void)arg;
	return addr.kind == TOY_KIND_COUNTER &&
		((const toy_counter *)state)->outbox.count > 0;
}

/* Creates a started runtime with both kinds and opens the node on dir. */
TOY_FN rt_runtime *
toy_start(const char *dir, uint64_t passivate_idle_ms, uint64_t segment_bytes,
	ps_node_report *report)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.workers = 2;
	cfg.passivate_idle_ms = passivate_idle_ms;
	cfg.log_level = RT_LOG_WARN;
	rt_runtime *rt;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	CHECK_EQ(rt_register_kind(rt, TOY_KIND_COUNTER, &toy_counter_ops), 0);
	CHECK_EQ(rt_register_kind(rt, TOY_KIND_TALLY, &toy_tally_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	ps_node_options o = {0};
	o.segment_bytes = segment_bytes;
	o.owes = toy_owes;
	int rc = ps_node_open(dir, rt, &o, report, &toy_node);
	CHECK_MSG(rc == 0, "ps_node_open: %s", ps_strerror(rc));
	return rt;
}

TOY_FN void
toy_stop(rt_runtime *rt)
{
	CHECK_EQ(rt_stop(rt), 0);
	ps_node_close(toy_node);
	toy_node = NULL;
	rt_destroy(rt);
}

TOY_FN int
toy_send_increment(rt_runtime *rt, uint64_t id, uint32_t counters)
{
	rt_message *m = rt_message_alloc(rt, TOY_MSG_INCREMENT, sizeof id);
	if (m == NULL)
		return RT_ENOMEM;
	memcpy(m->payload, &id, sizeof id);
	return rt_send_external(rt, rt_addr_make(TOY_KIND_COUNTER,
					    toy_counter_index(id, counters)),
		m);
}

TOY_FN void
toy_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Waits (bounded) until the actors recovery woke have activated. */
TOY_FN void
toy_wait_recovered(rt_runtime *rt, const ps_node_report *report)
{
	rt_stats st;
	for (int i = 0; i < 4000; i++) {
		rt_get_stats(rt, &st);
		if (st.actors_activated_total >= report->actors_recovered)
			return;
		toy_sleep_ms(5);
	}
	CHECK_MSG(false, "recovered actors not activated: %llu of %llu",
		(unsigned long long)st.actors_activated_total,
		(unsigned long long)report->actors_recovered);
}

/* Waits (bounded) until `count` counter activations have returned from
 * on_activate in this process. The runtime's activation total is no
 * substitute: it counts tallies too. */
TOY_FN void
toy_wait_counters_activated(long count)
{
	for (int i = 0; i < 4000; i++) {
		if (atomic_load(&toy_counters_activated) >= count)
			return;
		toy_sleep_ms(5);
	}
	CHECK_MSG(false, "counters not activated: %ld of %ld",
		atomic_load(&toy_counters_activated), count);
}

/* Waits (bounded) until every active counter's effects are confirmed. */
TOY_FN void
toy_wait_confirmed(unsigned seconds)
{
	for (unsigned i = 0; i < seconds * 100; i++) {
		if (atomic_load(&toy_unconfirmed) == 0)
			return;
		toy_sleep_ms(10);
	}
	CHECK_MSG(false, "effects still unconfirmed: %ld",
		atomic_load(&toy_unconfirmed));
}

typedef struct toy_snapshot {
	toy_counter counter;
	toy_tally tally;
	uint64_t lsn;
	bool counter_kind;
} toy_snapshot;

TOY_FN int
toy_take(void *arg, uint64_t lsn, const void *state, size_t bytes)
{
	toy_snapshot *s = arg;
	s->lsn = lsn;
	return s->counter_kind ? toy_counter_decode(&s->counter, state, bytes)
			       : toy_tally_decode(&s->tally, state, bytes);
}

#endif /* FLOCK_PERSISTENCE_TOY_H */
