/*
 * sim/streams.c — live streams in the simulation: a few users each keep
 * one open on some node's client, through crashes, moves and partitions,
 * as the gateway keeps a WebSocket's.
 *
 * What a client does: it opens the stream once the workload starts,
 * renews it every SIM_LIVE_RENEW_MS (the gateway's GW_STREAM_RENEW_S),
 * and when its node goes down reopens it, once the node is back, from
 * the last seq it saw (a WebSocket reconnecting with ?since=). A CUT_OFF
 * is answered the same way.
 *
 * What is checked:
 *   - order, on every event: a stream's seqs go up by exactly one, or
 *     jump with a RESYNC; a gap without one is an event lost in silence,
 *     a repeat is one delivered twice;
 *   - liveness, once the world has healed and settled (and before the
 *     quiescence checks, which restart nodes): each streamed user is
 *     followed by a user that never followed it, and its stream must
 *     carry that follow's notification within SIM_LIVE_PROBE_MS. A
 *     stream whose actor moved or restarted during the run and forgot
 *     the session fails here unless its renewals brought it back. The
 *     probe's follows go into the model as the workload's do.
 *
 * Randomness from SIM_STREAM_LIVE only, so turning streams on or off
 * leaves every other stream's draws as they were.
 */
#include "sim/internal.h"

/* Streams one run keeps open. */
#define SIM_LIVE_MAX 8u
/* Between renewals (and reopen attempts): the gateway's period. */
#define SIM_LIVE_RENEW_MS 15000u
/* How long the liveness probe waits for its notification: a few
 * renewals, and the follow's own way to durability. */
#define SIM_LIVE_PROBE_MS 60000u

typedef struct sim_live {
	sim_world *w;
	uint32_t user;        /* model index */
	uint32_t node;        /* whose client carries it */
	api_stream *s;        /* NULL: closed, to reopen */
	bool positioned;
	uint64_t position;    /* the last seq seen (or a RESYNC's) */
	uint32_t events;
	uint32_t resyncs;
	uint32_t reopens;
	uint32_t cuts;
	/* the liveness probe */
	uint32_t prober;      /* model index; UINT32_MAX: none */
	bool probe_sent;
	bool probe_answered;
	int probe_code;
	bool probe_seen;
} sim_live;

struct sim_lives {
	sim_live live[SIM_LIVE_MAX];
	uint32_t count;
	bool stopped;
};

static void live_event(void *arg, const api_event *ev);

static void
live_open(sim_live *l)
{
	sim_world *w = l->w;
	api_client *c = sim__node_client(w, l->node);
	if (c == NULL)
		return;
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.user_id = w->model->users[l->user].id;
	if (api_stream_open(c, &ctx, ctx.user_id, l->positioned, l->position,
		    live_event, l, &l->s) != API_OK) {
		l->s = NULL;
		return;
	}
	sim__node_poke(w, l->node);
}

static void
live_event(void *arg, const api_event *ev)
{
	sim_live *l = arg;
	sim_world *w = l->w;
	sim__hash(w, 0x57e4, (uint64_t)l->user << 8 | ev->type, ev->seq);
	if (w->log != NULL && w->opts.watch_user == l->user + 1)
		sim__log(w, "user%u's stream on n%u: %s seq %" PRIu64, l->user,
			l->node + 1, api_event_type_name(ev->type), ev->seq);
	switch (ev->type) {
	case API_EVENT_CUT_OFF:
		/* Closed by the client already; released here, reopened
		 * from the position at the next renewal. */
		l->cuts++;
		api_stream_close(l->s);
		l->s = NULL;
		return;
	case API_EVENT_RESYNC:
		l->resyncs++;
		l->positioned = true;
		l->position = ev->seq;
		sim_sometimes("sim: a live stream resynced");
		return;
	default:
		break;
	}
	if (l->positioned && ev->seq != l->position + 1u) {
		sim__fail(w, "stream", "user%u's stream on n%u: seq %" PRIu64
			" after %" PRIu64 " without a resync (%s)", l->user,
			l->node + 1, ev->seq, l->position,
			ev->seq <= l->position ? "delivered twice"
					       : "events lost");
		return;
	}
	l->positioned = true;
	l->position = ev->seq;
	l->events++;
	if (ev->type != API_EVENT_NOTIFICATION || l->prober == UINT32_MAX ||
		ev->data == NULL)
		return;
	char type[16];
	const msgpack_object *by = api_body_get(ev->data, "by_user");
	if (api_body_str(ev->data, "type", type, sizeof type) &&
		strcmp(type, "follow") == 0 && by != NULL &&
		api_body_id(by, "user_id") == w->model->users[l->prober].id)
		l->probe_seen = true;
}

int
sim__lives_create(sim_world *w)
{
	w->lives = calloc(1, sizeof *w->lives);
	return w->lives == NULL ? -1 : 0;
}

void
sim__lives_destroy(sim_world *w)
{
	free(w->lives);
	w->lives = NULL;
}

/* A node that is up and has a client, drawn; or UINT32_MAX. */
static uint32_t
draw_node(sim_world *w)
{
	sim_rng *r = sim__rng(w, SIM_STREAM_LIVE);
	uint32_t start = (uint32_t)sim__rng_below(r, w->nodes_count);
	for (uint32_t k = 0; k < w->nodes_count; k++) {
		uint32_t i = (start + k) % w->nodes_count;
		sim_node *n = &w->nodes[i];
		if (n->exists && n->up && !n->removed &&
			sim__node_client(w, i) != NULL)
			return i;
	}
	return UINT32_MAX;
}

void
sim__lives_start(sim_world *w)
{
	struct sim_lives *ls = w->lives;
	sim_rng *r = sim__rng(w, SIM_STREAM_LIVE);
	uint32_t users = w->model->users_count;
	uint32_t want = users < SIM_LIVE_MAX ? users : SIM_LIVE_MAX;
	for (uint32_t tries = 0; ls->count < want && tries < 8u * want;
		tries++) {
		uint32_t user = (uint32_t)sim__rng_below(r, users);
		bool taken = false;
		for (uint32_t i = 0; i < ls->count; i++)
			taken |= ls->live[i].user == user;
		uint32_t node = draw_node(w);
		if (taken || node == UINT32_MAX)
			continue;
		sim_live *l = &ls->live[ls->count++];
		memset(l, 0, sizeof *l);
		l->w = w;
		l->user = user;
		l->node = node;
		l->prober = UINT32_MAX;
		sim__log(w, "user%u keeps a live stream on n%u", user, node + 1);
		live_open(l);
	}
	sim__schedule(w, w->now_ms + SIM_LIVE_RENEW_MS, SIM_EV_LIVE,
		SIM_NODES_MAX, 0);
}

void
sim__lives_tick(sim_world *w)
{
	struct sim_lives *ls = w->lives;
	if (ls == NULL || ls->stopped)
		return;
	for (uint32_t i = 0; i < ls->count; i++) {
		sim_live *l = &ls->live[i];
		sim_node *n = &w->nodes[l->node];
		if (l->s != NULL) {
			api_stream_renew(l->s);
			sim__node_poke(w, l->node);
			continue;
		}
		if (n->removed) { /* drained: another node carries it */
			uint32_t node = draw_node(w);
			if (node == UINT32_MAX)
				continue;
			l->node = node;
		}
		if (sim__node_client(w, l->node) == NULL)
			continue;
		l->reopens++;
		if (w->log != NULL && w->opts.watch_user == l->user + 1)
			sim__log(w, "user%u's stream reopens on n%u from %" PRIu64,
				l->user, l->node + 1, l->position);
		sim_sometimes("sim: a live stream reopened from its position");
		live_open(l);
	}
	sim__schedule(w, w->now_ms + SIM_LIVE_RENEW_MS, SIM_EV_LIVE,
		SIM_NODES_MAX, 0);
}

void
sim__lives_client_gone(sim_world *w, uint32_t node)
{
	struct sim_lives *ls = w->lives;
	if (ls == NULL)
		return;
	for (uint32_t i = 0; i < ls->count; i++) {
		sim_live *l = &ls->live[i];
		if (l->node != node || l->s == NULL)
			continue;
		api_stream_close(l->s);
		l->s = NULL;
	}
}

static void
probe_answered(void *arg, const api_result *r)
{
	sim_live *l = arg;
	sim_world *w = l->w;
	sim_model *m = w->model;
	l->probe_answered = true;
	l->probe_code = r->code;
	sim_flag *f = sim__model_flag(m, &m->follows,
		(uint64_t)l->prober << 32 | l->user);
	if (r->code == API_OK) {
		f->value = 1;
		f->ever_on = 1;
		f->uncertain = 0;
		f->acked_ms = w->now_ms;
	} else if (r->code == API_EUNAVAILABLE || r->code == API_EINTERNAL) {
		f->maybe_on = 1;
		f->uncertain = 1;
	}
}

static bool
probes_done(sim_world *w, void *arg)
{
	(void)arg;
	struct sim_lives *ls = w->lives;
	for (uint32_t i = 0; i < ls->count; i++) {
		const sim_live *l = &ls->live[i];
		if (l->probe_sent && (!l->probe_answered ||
			(l->probe_code == API_OK && !l->probe_seen)))
			return false;
	}
	return true;
}

/* A user that never followed user (no follow flag at all), other than
 * it: its follow is sure to notify. UINT32_MAX if none. */
static uint32_t
stranger_of(const sim_world *w, uint32_t user)
{
	sim_model *m = w->model;
	for (uint32_t v = 0; v < m->users_count; v++)
		if (v != user && sim__model_flag_find(m, &m->follows,
				     (uint64_t)v << 32 | user) == NULL)
			return v;
	return UINT32_MAX;
}

int
sim__lives_check(sim_world *w)
{
	struct sim_lives *ls = w->lives;
	if (ls == NULL || ls->count == 0)
		return 0;
	/* Streams a crash closed are open again (a client reconnects). */
	sim__lives_tick(w);
	sim__run_until(w, w->now_ms + SIM_LIVE_RENEW_MS, NULL, NULL);
	ls->stopped = true;
	sim_model *m = w->model;
	for (uint32_t i = 0; i < ls->count; i++) {
		sim_live *l = &ls->live[i];
		l->prober = stranger_of(w, l->user);
		api_client *c = sim__node_client(w, l->node);
		if (l->s == NULL || l->prober == UINT32_MAX || c == NULL)
			continue;
		api_ctx ctx;
		memset(&ctx, 0, sizeof ctx);
		ctx.user_id = m->users[l->prober].id;
		sim_flag *f = sim__model_flag(m, &m->follows,
			(uint64_t)l->prober << 32 | l->user);
		f->generation++;
		if (!sim__u32s_has(&m->users[l->prober].followees, l->user))
			sim__u32s_push(&m->users[l->prober].followees, l->user);
		if (api_follow(c, &ctx, m->users[l->user].name, true,
			    probe_answered, l) != API_OK)
			continue;
		l->probe_sent = true;
		sim__log(w, "user%u follows user%u to probe its stream",
			l->prober, l->user);
		sim__node_poke(w, l->node);
	}
	sim__run_until(w, w->now_ms + SIM_LIVE_PROBE_MS, probes_done, NULL);
	for (uint32_t i = 0; i < ls->count && !w->failed; i++) {
		sim_live *l = &ls->live[i];
		if (!l->probe_sent)
			continue;
		if (!l->probe_answered) {
			sim__fail(w, "stream", "user%u's probe follow from user%u"
				" was not answered in %u s", l->user, l->prober,
				SIM_LIVE_PROBE_MS / 1000u);
		} else if (l->probe_code != API_OK) {
			continue; /* not followed: nothing to carry */
		} else if (!l->probe_seen) {
			sim__fail(w, "stream", "user%u's stream on n%u did not carry "
				"the notification of user%u's follow within %u s "
				"(events %u, resyncs %u, reopens %u, cut off %u, "
				"position %" PRIu64 ")", l->user, l->node + 1,
				l->prober, SIM_LIVE_PROBE_MS / 1000u, l->events,
				l->resyncs, l->reopens, l->cuts, l->position);
		} else {
			w->result->streams_checked++;
		}
	}
	return w->failed ? -1 : 0;
}
