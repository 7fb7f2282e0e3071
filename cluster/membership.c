/*
 * membership.c — SWIM failure detection as a pure state machine.
 *
 * Every probe interval a node pings one member (round-robin over a
 * shuffled order, down members included so that their return is seen).
 * No ack within half an interval: it asks CL_SWIM_INDIRECT_PROBES other
 * members to ping the target for it (ping-req; they relay the ack). No
 * ack by the end of the interval: the target becomes suspect. A suspect
 * not refuted within suspect_timeout_ms becomes down. Every ping and
 * ack carries the sender's whole member table (at most CL_NODES_MAX
 * entries); tables merge by SWIM's rules: a higher incarnation wins; at
 * equal incarnations down > suspect > alive. A member that hears it is
 * suspect or down refutes by raising its own incarnation.
 *
 * Any frame heard from the target since a probe began answers it (an
 * implicit ack), and a suspect heard from within the suspect timeout is
 * not declared down: a node busy shipping a partition, or whose acks sit
 * behind its data in a socket, is talking, so it is alive. A crashed or
 * cut-off node sends nothing, so its detection time does not change.
 *
 * Defaults: interval 200 ms, suspect timeout 1200 ms: a crashed node is
 * suspect within ~0.2-0.4 s of its first missed probe by anyone, down
 * ~1.2 s later, well inside the 3 s goal; indirect probes through three
 * others keep one slow link from causing a false suspicion.
 *
 * What it does not do: send anything, read a clock or decide membership
 * (the map does): it returns actions, takes `now` as an argument and
 * tracks the members it is told about. The node turns actions into
 * frames.
 */
#include "cluster/internal.h"

static uint8_t
liveness_rank(uint8_t l)
{
	CL_ASSERT(l <= CL_LIVE_DOWN);
	return l; /* alive 0 < suspect 1 < down 2 */
}

static void
emit(cl__swim_actions *out, uint8_t kind, uint16_t to, uint16_t target,
	uint16_t origin, uint64_t sequence)
{
	CL_ASSERT(out != NULL);
	CL_ASSERT(out->count < sizeof out->items / sizeof out->items[0]);
	cl__swim_action *a = &out->items[out->count++];
	a->kind = kind;
	a->to = to;
	a->target = target;
	a->origin = origin;
	a->sequence = sequence;
}

void
cl__swim_init(cl__swim *s, uint16_t self, uint64_t incarnation,
	uint64_t seed, uint64_t probe_interval_ms,
	uint64_t suspect_timeout_ms, uint64_t now_ms)
{
	CL_ASSERT(s != NULL);
	CL_ASSERT(self != 0);
	CL_ASSERT(probe_interval_ms >= 2);
	memset(s, 0, sizeof *s);
	s->self = self;
	s->incarnation = incarnation;
	s->probe_interval_ms = probe_interval_ms;
	s->probe_timeout_ms = probe_interval_ms / 2;
	s->suspect_timeout_ms = suspect_timeout_ms;
	s->rng = seed == 0 ? 0x853c49e6748fea9bull : seed;
	s->next_probe_ms = now_ms;
	s->count = 1;
	s->members[0].id = self;
	s->members[0].liveness = CL_LIVE_ALIVE;
	s->members[0].incarnation = incarnation;
	s->members[0].last_heard_ms = now_ms;
}

cl__swim_member *
cl__swim_find(cl__swim *s, uint16_t id)
{
	for (uint32_t i = 0; i < s->count; i++)
		if (s->members[i].id == id)
			return &s->members[i];
	return NULL;
}

void
cl__swim_set_members(cl__swim *s, const uint16_t *ids, uint32_t count,
	uint64_t now_ms)
{
	CL_ASSERT(s != NULL);
	CL_ASSERT(count <= CL_NODES_MAX);
	cl__swim_member kept[CL_NODES_MAX];
	uint32_t n = 0;
	kept[n++] = *cl__swim_find(s, s->self);
	for (uint32_t i = 0; i < count; i++) {
		if (ids[i] == s->self)
			continue;
		cl__swim_member *old = cl__swim_find(s, ids[i]);
		if (old != NULL) {
			kept[n++] = *old;
			continue;
		}
		cl__swim_member m = {0};
		m.id = ids[i];
		m.liveness = CL_LIVE_ALIVE;
		m.last_heard_ms = now_ms;
		kept[n++] = m;
	}
	memcpy(s->members, kept, n * sizeof kept[0]);
	s->count = n;
	if (s->probe_target != 0 && cl__swim_find(s, s->probe_target) == NULL)
		s->probe_target = 0;
	s->order_count = 0; /* reshuffle on the next probe */
}

static void
shuffle_order(cl__swim *s)
{
	s->order_count = 0;
	for (uint32_t i = 0; i < s->count; i++)
		if (s->members[i].id != s->self)
			s->order[s->order_count++] = s->members[i].id;
	for (uint32_t i = s->order_count; i > 1; i--) {
		uint32_t j = (uint32_t)(cl__rand_next(&s->rng) % i);
		uint16_t t = s->order[i - 1];
		s->order[i - 1] = s->order[j];
		s->order[j] = t;
	}
	s->order_next = 0;
}

static void
set_liveness(cl__swim *s, cl__swim_member *m, uint8_t liveness,
	uint64_t now_ms, cl__swim_actions *out)
{
	if (m->liveness == liveness)
		return;
	m->liveness = liveness;
	if (liveness == CL_LIVE_SUSPECT)
		m->suspect_since_ms = now_ms;
	emit(out, CL__SWIM_CHANGED, 0, m->id, 0, 0);
	(void)s;
}

static void
send_indirect(cl__swim *s, cl__swim_actions *out)
{
	uint16_t candidates[CL_NODES_MAX];
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->count; i++) {
		const cl__swim_member *m = &s->members[i];
		if (m->id != s->self && m->id != s->probe_target &&
			m->liveness == CL_LIVE_ALIVE)
			candidates[n++] = m->id;
	}
	for (uint32_t k = 0; k < CL_SWIM_INDIRECT_PROBES && n > 0; k++) {
		uint32_t j = (uint32_t)(cl__rand_next(&s->rng) % n);
		emit(out, CL__SWIM_PING_REQ, candidates[j], s->probe_target,
			s->self, s->probe_sequence);
		candidates[j] = candidates[--n];
	}
	s->probe_indirect_sent = true;
}

void
cl__swim_tick(cl__swim *s, uint64_t now_ms, cl__swim_actions *out)
{
	CL_ASSERT(s != NULL);
	CL_ASSERT(out != NULL);
	for (uint32_t i = 0; i < s->count; i++) {
		cl__swim_member *m = &s->members[i];
		if (m->liveness == CL_LIVE_SUSPECT &&
			cl__elapsed_ms(now_ms, m->suspect_since_ms) >=
				s->suspect_timeout_ms &&
			cl__elapsed_ms(now_ms, m->last_heard_ms) >=
				s->suspect_timeout_ms)
			set_liveness(s, m, CL_LIVE_DOWN, now_ms, out);
	}
	if (s->probe_target != 0 && !s->probe_acked) {
		cl__swim_member *t = cl__swim_find(s, s->probe_target);
		if (t != NULL && t->last_heard_ms > s->probe_started_ms)
			s->probe_acked = true; /* heard since: implicitly acked */
	}
	if (s->probe_target != 0 && !s->probe_acked) {
		uint64_t waited = cl__elapsed_ms(now_ms, s->probe_started_ms);
		if (waited >= s->probe_interval_ms) {
			cl__swim_member *t = cl__swim_find(s, s->probe_target);
			if (t != NULL && t->liveness == CL_LIVE_ALIVE)
				set_liveness(s, t, CL_LIVE_SUSPECT, now_ms, out);
			s->probe_target = 0;
		} else if (waited >= s->probe_timeout_ms &&
			   !s->probe_indirect_sent) {
			send_indirect(s, out);
		}
	}
	if (now_ms < s->next_probe_ms)
		return;
	if (s->probe_target != 0 && !s->probe_acked)
		return; /* the previous probe has not run its course */
	if (s->order_next >= s->order_count)
		shuffle_order(s);
	if (s->order_count == 0)
		return;
	s->probe_target = s->order[s->order_next++];
	s->probe_sequence = ++s->sequence;
	s->probe_started_ms = now_ms;
	s->probe_acked = false;
	s->probe_indirect_sent = false;
	s->next_probe_ms = now_ms + s->probe_interval_ms;
	emit(out, CL__SWIM_PING, s->probe_target, s->probe_target, s->self,
		s->probe_sequence);
}

void
cl__swim_heard(cl__swim *s, uint16_t from, uint64_t now_ms)
{
	cl__swim_member *m = cl__swim_find(s, from);
	if (m != NULL && now_ms > m->last_heard_ms)
		m->last_heard_ms = now_ms;
}

void
cl__swim_on_ping(cl__swim *s, uint16_t from, uint16_t origin,
	uint64_t sequence, uint64_t now_ms, cl__swim_actions *out)
{
	CL_ASSERT(s != NULL);
	cl__swim_heard(s, from, now_ms);
	emit(out, CL__SWIM_ACK, from, s->self, origin, sequence);
}

bool
cl__swim_on_ack(cl__swim *s, uint16_t from, uint16_t target,
	uint16_t origin, uint64_t sequence, uint64_t now_ms,
	cl__swim_actions *out)
{
	CL_ASSERT(s != NULL);
	cl__swim_heard(s, from, now_ms);
	if (origin != s->self && origin != 0) {
		/* we pinged target for origin: pass the ack on */
		emit(out, CL__SWIM_ACK, origin, target, origin, sequence);
		return false;
	}
	if (target != s->probe_target || sequence != s->probe_sequence)
		return false; /* late ack of an older probe */
	s->probe_acked = true;
	return true;
}

void
cl__swim_on_ping_req(cl__swim *s, uint16_t from, uint16_t target,
	uint64_t sequence, uint64_t now_ms, cl__swim_actions *out)
{
	CL_ASSERT(s != NULL);
	cl__swim_heard(s, from, now_ms);
	if (target == s->self) {
		emit(out, CL__SWIM_ACK, from, s->self, from, sequence);
		return;
	}
	emit(out, CL__SWIM_PING, target, target, from, sequence);
}

void
cl__swim_merge(cl__swim *s, uint16_t from, const cl__swim_update *u,
	uint64_t now_ms, cl__swim_actions *out)
{
	CL_ASSERT(s != NULL);
	CL_ASSERT(u != NULL);
	if (u->liveness > CL_LIVE_DOWN)
		return;
	if (u->id == s->self) {
		if (u->liveness != CL_LIVE_ALIVE &&
			u->incarnation >= s->incarnation) {
			s->incarnation = u->incarnation + 1;
			s->members[0].incarnation = s->incarnation;
		}
		return;
	}
	cl__swim_member *m = cl__swim_find(s, u->id);
	if (m == NULL)
		return; /* not a member in our map (yet) */
	if (u->id == from) {
		m->actors_active = u->actors_active;
		m->messages_in = u->messages_in;
		m->epoch = u->epoch;
		m->pending = u->pending;
	}
	bool newer = u->incarnation > m->incarnation;
	bool stronger = u->incarnation == m->incarnation &&
			liveness_rank(u->liveness) > liveness_rank(m->liveness);
	if (!newer && !stronger)
		return;
	m->incarnation = u->incarnation;
	set_liveness(s, m, u->liveness, now_ms, out);
}

uint32_t
cl__swim_updates(const cl__swim *s, cl__swim_update *out, uint32_t max)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->count && n < max; i++) {
		const cl__swim_member *m = &s->members[i];
		cl__swim_update *u = &out[n++];
		u->id = m->id;
		u->liveness = m->liveness;
		u->incarnation = m->incarnation;
		u->actors_active = m->actors_active;
		u->messages_in = m->messages_in;
		u->epoch = m->epoch;
		u->pending = m->pending;
	}
	return n;
}

uint32_t
cl__swim_heard_within(const cl__swim *s, uint64_t now_ms, uint64_t window_ms)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->count; i++) {
		const cl__swim_member *m = &s->members[i];
		/* last_heard_ms 0: never heard since this node started */
		if (m->id == s->self || (m->last_heard_ms != 0 &&
			cl__elapsed_ms(now_ms, m->last_heard_ms) <= window_ms))
			n++;
	}
	return n;
}
