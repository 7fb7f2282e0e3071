/*
 * sim/driver.c — the seeded workload: clients calling actors/api.h on the
 * simulated nodes, and the model updated from what they were told.
 *
 * Setup (no faults): every user signs up (pre-hashed password), then
 * makes the graph's follows (actors/workload.h's seeded power law or an
 * edge file), and the world settles. Then ops arrive at the seed's rate:
 * posts, likes and unlikes, comments and their deletion, follows and
 * unfollows, post deletion, feed reads, stories and story trays. Each op
 * is a user's (drawn from the workload stream) sent through the client
 * of a node drawn from the choice stream, as a gateway would forward it.
 *
 * The model: a user has at most one op in flight, so its own ops are
 * ordered and a flag (follow, like) always has a last definite value.
 * An answer OK updates the model; a definite refusal (4xx) leaves it; an
 * unknown outcome (503/500, a timeout, a crash of the node holding the
 * call) marks what it touched uncertain. After a follow is acknowledged
 * a probe asks the followee until it shows the follower (the effect is
 * asynchronous): posts sent after that must reach the follower's feed.
 *
 * Reads during the run are checked on the spot (check.c): a feed page
 * never repeats an item nor shows a post whose deletion was acknowledged
 * before the read was sent; a story tray shows no expired story.
 *
 * Does not: retry (a client that got no answer just moves on), use the
 * gateway, or measure latency.
 */
#include "sim/internal.h"

#include "actors/workload.h"

/* Setup calls in flight at once. */
#define DRIVER_SETUP_CONCURRENCY 64u
/* Setup must finish within this much simulated time. */
#define DRIVER_SETUP_MS_MAX (30u * 60u * 1000u)
/* Follow-visibility probes: first after, then every, at most. */
#define DRIVER_PROBE_FIRST_MS 200u
#define DRIVER_PROBE_EVERY_MS 1000u
#define DRIVER_PROBE_ATTEMPTS_MAX 600u
/* Draws of a user before an op is skipped because all were busy. */
#define DRIVER_PICK_TRIES 8u
/* Stories live 1 to 10 minutes in the simulation, so they expire
 * within runs (the API allows up to 24 h). */
#define DRIVER_STORY_SECONDS_MIN 60u
#define DRIVER_STORY_SECONDS_MAX 600u
/* Faults that may leave a call unanswered (503) on their own. */
#define DRIVER_CUTTING_FAULTS (SIM_FAULT_CRASH | SIM_FAULT_TORN | \
	SIM_FAULT_DROP | SIM_FAULT_DELAY | SIM_FAULT_PARTITION | SIM_FAULT_DISK)
/* Stories need a media id; the domain does not look it up, and the
 * simulator uploads no media (libvips runs on threads). */
#define STORY_MEDIA_BASE 1000000u

/* Stories live in actors/ modules that a build may leave out; when they
 * are not linked these are NULL and their ops are skipped. */
#pragma weak api_story_post
#pragma weak api_stories

enum {
	OP_SIGNUP = 1,
	OP_FOLLOW,
	OP_UNFOLLOW,
	OP_POST,
	OP_DELETE,
	OP_LIKE,
	OP_UNLIKE,
	OP_COMMENT,
	OP_UNCOMMENT,
	OP_FEED,
	OP_STORY,
	OP_STORIES,
	OP_PROBE,
	OP_SETUP_FOLLOW,
};

typedef struct sim_call {
	sim_driver *d;
	uint32_t op;
	uint32_t node;
	uint32_t user;
	uint32_t target;   /* user index: follow, probe */
	uint32_t post;     /* post index */
	uint64_t comment;  /* comment id */
	uint16_t generation;
	uint32_t attempt;
	uint64_t issued_ms;
	bool used;
	uint32_t next_free;
} sim_call;

struct sim_driver {
	sim_world *w;
	sim_call calls[SIM_INFLIGHT_MAX];
	uint32_t free_head; /* index + 1; 0: none */
	uint32_t inflight;
	bool stopped;
	wl_graph graph;
	uint32_t setup_signups; /* issued */
	uint32_t setup_edges;   /* issued */
	bool setup_failed;
	uint64_t post_sequence;
};

static const char PREHASH[] = "$argon2id$v=19$m=8,t=1,p=1$c2ltdWxhdG9y$"
			      "c2ltdWxhdG9yc2ltdWxhdG9y";

/* ---- calls --------------------------------------------------------------- */

static sim_call *
call_new(sim_driver *d, uint32_t op, uint32_t node, uint32_t user)
{
	if (d->free_head == 0)
		return NULL;
	sim_call *c = &d->calls[d->free_head - 1];
	d->free_head = c->next_free;
	SIM_ASSERT(!c->used);
	uint32_t next = c->next_free;
	memset(c, 0, sizeof *c);
	(void)next;
	c->d = d;
	c->op = op;
	c->node = node;
	c->user = user;
	c->issued_ms = d->w->now_ms;
	c->used = true;
	d->inflight++;
	d->w->nodes[node].inflight++;
	return c;
}

static void
call_free(sim_driver *d, sim_call *c)
{
	SIM_ASSERT(c->used);
	c->used = false;
	SIM_ASSERT(d->inflight > 0);
	d->inflight--;
	d->w->nodes[c->node].inflight--;
	c->next_free = d->free_head;
	d->free_head = (uint32_t)(c - d->calls) + 1;
}

/* A live node with a client, drawn from the choice stream; -1 if none. */
static int
pick_node(sim_driver *d)
{
	sim_world *w = d->w;
	uint32_t up[SIM_NODES_MAX];
	uint32_t k = 0;
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].up && !w->nodes[i].removed &&
			sim__node_client(w, i) != NULL)
			up[k++] = i;
	uint64_t x = sim__rng_next(sim__rng(w, SIM_STREAM_CHOICE));
	return k == 0 ? -1 : (int)up[x % k];
}

static bool
uncertain_code(int code)
{
	return code == API_EUNAVAILABLE || code == API_EINTERNAL;
}

static api_ctx
ctx_of(const sim_driver *d, uint32_t user)
{
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.user_id = d->w->model->users[user].id;
	return ctx;
}

/* ---- answers --------------------------------------------------------------- */

static void on_answer(void *arg, const api_result *r);

static void schedule_probe(sim_driver *d, uint32_t user, uint32_t target,
	uint16_t generation, uint32_t attempt, uint64_t delay_ms);

static void
follow_answered(sim_driver *d, sim_call *c, int code)
{
	sim_model *m = d->w->model;
	uint64_t key = (uint64_t)c->user << 32 | c->target;
	sim_flag *f = sim__model_flag(m, &m->follows, key);
	bool on = c->op != OP_UNFOLLOW;
	if (on && code == API_OK)
		f->ever_on = 1;
	else if (on && uncertain_code(code))
		f->maybe_on = 1;
	if (f->generation != c->generation)
		return; /* a later op on this flag settles it */
	if (code == API_OK) {
		f->value = on;
		f->uncertain = 0;
		f->acked_ms = d->w->now_ms;
		f->visible_ms = 0;
		if (on)
			schedule_probe(d, c->user, c->target, f->generation, 0,
				DRIVER_PROBE_FIRST_MS);
	} else if (uncertain_code(code)) {
		f->uncertain = 1;
	}
}

static void
like_answered(sim_driver *d, sim_call *c, int code)
{
	sim_model *m = d->w->model;
	uint64_t key = (uint64_t)c->post << 32 | c->user;
	sim_flag *f = sim__model_flag(m, &m->likes, key);
	if (c->op == OP_LIKE && code == API_OK)
		f->ever_on = 1;
	else if (c->op == OP_LIKE && uncertain_code(code))
		f->maybe_on = 1;
	if (f->generation != c->generation)
		return;
	if (code == API_OK) {
		f->value = c->op == OP_LIKE;
		f->uncertain = 0;
		f->acked_ms = d->w->now_ms;
	} else if (uncertain_code(code)) {
		f->uncertain = 1;
	}
}

static void
post_answered(sim_driver *d, sim_call *c, const api_result *r)
{
	sim_model *m = d->w->model;
	if (r->code == API_OK) {
		uint64_t id = api_body_id(r->body, "post_id");
		if (id == 0 || sim__model_post_find(m, id) >= 0) {
			sim__fail(d->w, "1 acknowledged write", "post create by "
				"user%u answered ok with %s post id %" PRIu64,
				c->user, id == 0 ? "no" : "a reused", id);
			return;
		}
		sim__model_post_add(m, id, c->user, c->issued_ms, d->w->now_ms);
	} else if (uncertain_code(r->code)) {
		m->users[c->user].uncertain_posts++;
	}
}

static void
delete_answered(sim_driver *d, sim_call *c, int code)
{
	sim_post *p = &d->w->model->posts[c->post];
	if (code == API_OK) {
		p->state = SIM_POST_DELETED;
		p->deleted_ms = d->w->now_ms;
	} else if (uncertain_code(code) && p->state == SIM_POST_LIVE) {
		p->state = SIM_POST_DELETE_UNCERTAIN;
	}
}

static void
comment_answered(sim_driver *d, sim_call *c, const api_result *r)
{
	sim_post *p = &d->w->model->posts[c->post];
	if (c->op == OP_COMMENT) {
		if (r->code == API_OK) {
			uint64_t id = api_body_id(r->body, "comment_id");
			if (id == 0)
				sim__fail(d->w, "1 acknowledged write", "comment "
					"answered ok without a comment_id");
			else
				sim__model_comment_add(p, id, c->user);
		} else if (uncertain_code(r->code)) {
			p->uncertain_comments++;
		}
		return;
	}
	sim_comment *x = sim__model_comment_find(p, c->comment);
	if (x == NULL)
		return;
	if (r->code == API_OK)
		x->state = SIM_POST_DELETED;
	else if (uncertain_code(r->code) && x->state == SIM_POST_LIVE)
		x->state = SIM_POST_DELETE_UNCERTAIN;
}

uint64_t sim__parse_time_ms(const char *text);

static void
story_answered(sim_driver *d, sim_call *c, const api_result *r)
{
	if (r->code != API_OK)
		return; /* an unknown story cannot be checked: not modelled */
	uint64_t id = api_body_id(r->body, "story_id");
	char when[64];
	uint64_t expires = 0;
	if (api_body_str(r->body, "expires_at", when, sizeof when))
		expires = sim__parse_time_ms(when);
	if (id == 0 || expires == 0) {
		sim__fail(d->w, "1 acknowledged write", "story answered ok "
			"without story_id or expires_at");
		return;
	}
	sim__model_story_add(d->w->model, id, c->user, expires, d->w->now_ms);
}

static void
probe_answered(sim_driver *d, sim_call *c, const api_result *r)
{
	sim_model *m = d->w->model;
	sim_flag *f = sim__model_flag_find(m, &m->follows,
		(uint64_t)c->user << 32 | c->target);
	if (f == NULL || f->generation != c->generation || !f->value ||
		f->uncertain)
		return;
	if (r->code == API_OK && api_body_bool(r->body, "followed_by_me", false)) {
		f->visible_ms = d->w->now_ms;
		return;
	}
	if (c->attempt + 1 < DRIVER_PROBE_ATTEMPTS_MAX)
		schedule_probe(d, c->user, c->target, c->generation,
			c->attempt + 1, DRIVER_PROBE_EVERY_MS);
}

void sim__check_feed_page(sim_world *w, uint32_t reader, uint64_t issued_ms,
	const msgpack_object *body);
void sim__check_story_tray(sim_world *w, uint32_t viewer, uint32_t node,
	const msgpack_object *body);

static void
on_answer(void *arg, const api_result *r)
{
	sim_call *c = arg;
	sim_driver *d = c->d;
	sim_world *w = d->w;
	sim_model *m = w->model;
	sim__hash(w, 0xa25e, c->op, (uint64_t)(uint32_t)r->code);
	/* Liveness: with no fault that cuts a node off or stalls it, every
	 * call is answered (503 here is a call that timed out or found its
	 * owner unreachable: something lost it). */
	if (r->code == API_EUNAVAILABLE && w->opts.mode == SIM_MODE_LIVENESS &&
		(w->knobs_enabled & DRIVER_CUTTING_FAULTS) == 0)
		sim__fail(w, "liveness", "user%u's call (op %u, sent at t=%" PRIu64
			" ms) answered 503 with no fault to explain it", c->user,
			c->op, c->issued_ms);
	if (w->log != NULL && w->opts.watch_user == c->user + 1)
		sim__log(w, "user%u op %u on n%u (sent t=%" PRIu64 " ms): %s",
			c->user, c->op, c->node + 1, c->issued_ms,
			api_strerror(r->code));
	if (r->code == API_OK)
		w->result->ops_acked++;
	switch (c->op) {
	case OP_SIGNUP:
		if (r->code == API_OK)
			m->users[c->user].id = api_body_id(r->body, "user_id");
		if (r->code != API_OK || m->users[c->user].id == 0) {
			d->setup_failed = true;
			sim__fail(w, "setup", "signup of user%u: %s", c->user,
				api_strerror(r->code));
		}
		break;
	case OP_SETUP_FOLLOW:
		if (r->code != API_OK) {
			d->setup_failed = true;
			sim__fail(w, "setup", "follow user%u -> user%u: %s",
				c->user, c->target, api_strerror(r->code));
		}
		follow_answered(d, c, r->code);
		break;
	case OP_FOLLOW:
	case OP_UNFOLLOW:
		follow_answered(d, c, r->code);
		break;
	case OP_POST:
		post_answered(d, c, r);
		break;
	case OP_DELETE:
		delete_answered(d, c, r->code);
		break;
	case OP_LIKE:
	case OP_UNLIKE:
		like_answered(d, c, r->code);
		break;
	case OP_COMMENT:
	case OP_UNCOMMENT:
		comment_answered(d, c, r);
		break;
	case OP_FEED:
		if (r->code == API_OK)
			sim__check_feed_page(w, c->user, c->issued_ms, r->body);
		break;
	case OP_STORY:
		story_answered(d, c, r);
		break;
	case OP_STORIES:
		if (r->code == API_OK)
			sim__check_story_tray(w, c->user, c->node, r->body);
		break;
	case OP_PROBE:
		probe_answered(d, c, r);
		break;
	default:
		SIM_ASSERT(!"unknown op");
	}
	if (c->op != OP_PROBE)
		m->users[c->user].busy = false;
	call_free(d, c);
}

/* The node holding these calls died: their outcome is unknown. */
void
sim__driver_node_down(sim_driver *d, uint32_t node)
{
	sim_world *w = d->w;
	sim_model *m = w->model;
	for (uint32_t i = 0; i < SIM_INFLIGHT_MAX; i++) {
		sim_call *c = &d->calls[i];
		if (!c->used || c->node != node)
			continue;
		switch (c->op) {
		case OP_SIGNUP:
		case OP_SETUP_FOLLOW:
			d->setup_failed = true;
			sim__fail(w, "setup", "a node went down during setup");
			break;
		case OP_FOLLOW:
		case OP_UNFOLLOW:
			follow_answered(d, c, API_EUNAVAILABLE);
			break;
		case OP_POST:
			m->users[c->user].uncertain_posts++;
			break;
		case OP_DELETE:
			delete_answered(d, c, API_EUNAVAILABLE);
			break;
		case OP_LIKE:
		case OP_UNLIKE:
			like_answered(d, c, API_EUNAVAILABLE);
			break;
		case OP_COMMENT:
		case OP_UNCOMMENT: {
			api_result r = {.code = API_EUNAVAILABLE};
			comment_answered(d, c, &r);
			break;
		}
		case OP_PROBE:
			schedule_probe(d, c->user, c->target, c->generation,
				c->attempt + 1, DRIVER_PROBE_EVERY_MS);
			break;
		default:
			break;
		}
		if (c->op != OP_PROBE)
			m->users[c->user].busy = false;
		if (w->log != NULL && w->opts.watch_user == c->user + 1)
			sim__log(w, "user%u op %u on n%u (sent t=%" PRIu64
				" ms): lost with the node", c->user, c->op,
				c->node + 1, c->issued_ms);
		sim_sometimes("sim: a call was lost with its node");
		call_free(d, c);
	}
}

/* ---- issuing ----------------------------------------------------------------- */

/* Sends c with rc = the api call's return; on a refusal at once the call
 * is answered now. */
static void
sent(sim_driver *d, sim_call *c, int rc)
{
	sim__node_poke(d->w, c->node);
	if (rc == 0)
		return;
	api_result r;
	memset(&r, 0, sizeof r);
	r.code = rc;
	on_answer(c, &r);
}

static void
issue_signup(sim_driver *d, uint32_t user)
{
	int node = pick_node(d);
	if (node < 0)
		return;
	sim_call *c = call_new(d, OP_SIGNUP, (uint32_t)node, user);
	SIM_ASSERT(c != NULL);
	const sim_user *u = &d->w->model->users[user];
	char email[64];
	snprintf(email, sizeof email, "%s@sim.example", u->name);
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	sent(d, c, api_signup_prehashed(d->w->nodes[node].client, &ctx,
		u->name, email, PREHASH, on_answer, c));
}

static void
issue_follow(sim_driver *d, uint32_t op, uint32_t node, uint32_t user,
	uint32_t target)
{
	sim_model *m = d->w->model;
	sim_call *c = call_new(d, op, node, user);
	if (c == NULL)
		return;
	c->target = target;
	sim_flag *f = sim__model_flag(m, &m->follows,
		(uint64_t)user << 32 | target);
	if (!sim__u32s_has(&m->users[user].followees, target))
		sim__u32s_push(&m->users[user].followees, target);
	c->generation = ++f->generation;
	m->users[user].busy = op != OP_SETUP_FOLLOW;
	api_ctx ctx = ctx_of(d, user);
	sent(d, c, api_follow(d->w->nodes[node].client, &ctx,
		m->users[target].name, op != OP_UNFOLLOW, on_answer, c));
}

static bool
setup_done(sim_world *w, void *arg)
{
	sim_driver *d = arg;
	return d->setup_failed || (d->setup_signups == w->model->users_count &&
		d->setup_edges == d->graph.edges_count && d->inflight == 0);
}

/* Keeps DRIVER_SETUP_CONCURRENCY setup calls in flight. */
static bool
setup_pump(sim_world *w, void *arg)
{
	sim_driver *d = arg;
	sim_model *m = w->model;
	while (!d->setup_failed && d->inflight < DRIVER_SETUP_CONCURRENCY) {
		if (d->setup_signups < m->users_count) {
			issue_signup(d, d->setup_signups++);
			continue;
		}
		if (d->inflight > 0 || d->setup_edges == d->graph.edges_count)
			break; /* follows wait until every id is known */
		while (d->setup_edges < d->graph.edges_count &&
			d->inflight < DRIVER_SETUP_CONCURRENCY) {
			const uint32_t *e = d->graph.edges[d->setup_edges++];
			int node = pick_node(d);
			if (node < 0)
				break;
			issue_follow(d, OP_SETUP_FOLLOW, (uint32_t)node, e[0], e[1]);
			if (d->graph.undirected)
				issue_follow(d, OP_SETUP_FOLLOW, (uint32_t)node,
					e[1], e[0]);
		}
		break;
	}
	return setup_done(w, arg);
}

int
sim__driver_setup(sim_driver *d)
{
	sim_world *w = d->w;
	uint64_t deadline = w->now_ms + DRIVER_SETUP_MS_MAX;
	if (!sim__run_until(w, deadline, setup_pump, d) || d->setup_failed) {
		if (!w->failed)
			sim__fail(w, "setup", "setup did not finish in time");
		return -1;
	}
	if (!sim__run_until(w, w->now_ms + DRIVER_SETUP_MS_MAX, sim__quiet,
		    NULL)) {
		if (!w->failed)
			sim__fail(w, "setup", "the world did not settle after "
				"setup");
		return -1;
	}
	/* Settled: every follower effect is applied. */
	sim_model *m = w->model;
	for (uint32_t i = 0; i < m->flags_count; i++)
		if (m->flags[i].value && m->flags[i].visible_ms == 0)
			m->flags[i].visible_ms = w->now_ms;
	return 0;
}

static void
schedule_probe(sim_driver *d, uint32_t user, uint32_t target,
	uint16_t generation, uint32_t attempt, uint64_t delay_ms)
{
	uint64_t arg = (uint64_t)user | (uint64_t)target << 24 |
		(uint64_t)generation << 48;
	sim_world *w = d->w;
	sim_event e = {.at_ms = w->now_ms + delay_ms, .kind = SIM_EV_CALL,
		.node = SIM_NODES_MAX, .arg = arg, .from = attempt};
	SIM_ASSERT(sim__events_push(&w->events, e) == 0);
}

void
sim__driver_call_event(sim_driver *d, const sim_event *e)
{
	uint32_t user = (uint32_t)(e->arg & 0xffffffu);
	uint32_t target = (uint32_t)(e->arg >> 24 & 0xffffffu);
	uint16_t generation = (uint16_t)(e->arg >> 48);
	sim_model *m = d->w->model;
	sim_flag *f = sim__model_flag_find(m, &m->follows,
		(uint64_t)user << 32 | target);
	if (f == NULL || f->generation != generation || !f->value)
		return;
	int node = pick_node(d);
	sim_call *c = node >= 0 ? call_new(d, OP_PROBE, (uint32_t)node, user)
				: NULL;
	if (c == NULL) {
		schedule_probe(d, user, target, generation, e->from + 1,
			DRIVER_PROBE_EVERY_MS);
		return;
	}
	c->target = target;
	c->generation = generation;
	c->attempt = e->from;
	api_ctx ctx = ctx_of(d, user);
	sent(d, c, api_user_get(d->w->nodes[node].client, &ctx,
		m->users[target].name, on_answer, c));
}

/* ---- the op mix ------------------------------------------------------------- */

static const struct {
	uint32_t op;
	uint32_t weight;
} mix[] = {
	{OP_POST, 12}, {OP_LIKE, 25}, {OP_UNLIKE, 4}, {OP_COMMENT, 8},
	{OP_UNCOMMENT, 2}, {OP_FOLLOW, 6}, {OP_UNFOLLOW, 3}, {OP_FEED, 25},
	{OP_DELETE, 2}, {OP_STORY, 5}, {OP_STORIES, 8},
};

static uint32_t
draw_op(sim_driver *d)
{
	uint32_t total = 0;
	for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++)
		total += mix[i].weight;
	uint64_t x = sim__rng_below(sim__rng(d->w, SIM_STREAM_WORKLOAD), total);
	for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
		if (x < mix[i].weight)
			return mix[i].op;
		x -= mix[i].weight;
	}
	return OP_FEED;
}

/* A recent live post, or -1. */
static int64_t
draw_post(sim_driver *d)
{
	sim_model *m = d->w->model;
	if (m->recent_count == 0)
		return -1;
	uint64_t x = sim__rng_below(sim__rng(d->w, SIM_STREAM_WORKLOAD),
		m->recent_count);
	uint32_t index = m->recent[x];
	return m->posts[index].state == SIM_POST_LIVE ? (int64_t)index : -1;
}

static void
issue_post_op(sim_driver *d, uint32_t op, uint32_t node, uint32_t user)
{
	sim_world *w = d->w;
	sim_model *m = w->model;
	sim_rng *r = sim__rng(w, SIM_STREAM_WORKLOAD);
	api_client *client = w->nodes[node].client;
	api_ctx ctx = ctx_of(d, user);
	int64_t post = -1;
	if (op == OP_DELETE) {
		const sim_u32s *own = &m->users[user].posts;
		if (own->count == 0)
			return;
		post = own->items[sim__rng_below(r, own->count)];
		if (m->posts[post].state != SIM_POST_LIVE)
			return;
	} else {
		post = draw_post(d);
		if (post < 0)
			return;
	}
	sim_post *p = &m->posts[post];
	uint64_t comment = 0;
	if (op == OP_UNCOMMENT) {
		/* one of this user's own live comments on it */
		for (uint32_t i = 0; i < p->comments_count && comment == 0; i++)
			if (p->comments[i].author == user &&
				p->comments[i].state == SIM_POST_LIVE)
				comment = p->comments[i].id;
		if (comment == 0)
			return;
	}
	sim_call *c = call_new(d, op, node, user);
	if (c == NULL)
		return;
	c->post = (uint32_t)post;
	c->comment = comment;
	m->users[user].busy = true;
	int rc;
	switch (op) {
	case OP_LIKE:
	case OP_UNLIKE: {
		sim_flag *f = sim__model_flag(m, &m->likes,
			(uint64_t)post << 32 | user);
		if (!sim__u32s_has(&p->likers, user))
			sim__u32s_push(&p->likers, user);
		c->generation = ++f->generation;
		rc = api_like(client, &ctx, p->id, op == OP_LIKE, on_answer, c);
		break;
	}
	case OP_COMMENT: {
		char text[64];
		snprintf(text, sizeof text, "comment %" PRIu64 " by %s",
			++d->post_sequence, m->users[user].name);
		rc = api_comment_add(client, &ctx, p->id, text, on_answer, c);
		break;
	}
	case OP_UNCOMMENT:
		rc = api_comment_delete(client, &ctx, p->id, comment, on_answer,
			c);
		break;
	default:
		rc = api_post_delete(client, &ctx, p->id, on_answer, c);
		break;
	}
	sent(d, c, rc);
}

static void
issue_op(sim_driver *d, uint32_t op, uint32_t node, uint32_t user)
{
	sim_world *w = d->w;
	sim_model *m = w->model;
	sim_rng *r = sim__rng(w, SIM_STREAM_WORKLOAD);
	api_client *client = w->nodes[node].client;
	api_ctx ctx = ctx_of(d, user);
	sim_call *c;
	switch (op) {
	case OP_FOLLOW: {
		/* biased towards low indices: the graph's celebrities */
		uint64_t a = sim__rng_below(r, m->users_count);
		uint32_t target = (uint32_t)sim__rng_below(r, a + 1);
		if (target != user)
			issue_follow(d, op, node, user, target);
		return;
	}
	case OP_UNFOLLOW: {
		const sim_u32s *f = &m->users[user].followees;
		if (f->count == 0)
			return;
		issue_follow(d, op, node, user,
			f->items[sim__rng_below(r, f->count)]);
		return;
	}
	case OP_POST: {
		c = call_new(d, op, node, user);
		if (c == NULL)
			return;
		m->users[user].busy = true;
		char caption[96];
		uint64_t n = ++d->post_sequence;
		snprintf(caption, sizeof caption, "post %" PRIu64 " from %s #t%"
			PRIu64, n, m->users[user].name, n % 7);
		sent(d, c, api_post_create(client, &ctx, caption, 0, on_answer,
			c));
		return;
	}
	case OP_FEED: {
		c = call_new(d, op, node, user);
		if (c == NULL)
			return;
		m->users[user].busy = true;
		api_page page = {.limit = API_PAGE_LIMIT_MAX};
		sent(d, c, api_feed(client, &ctx, &page, on_answer, c));
		return;
	}
	case OP_STORY:
	case OP_STORIES: {
		if (api_story_post == NULL || api_stories == NULL)
			return;
		c = call_new(d, op, node, user);
		if (c == NULL)
			return;
		m->users[user].busy = true;
		uint32_t seconds = (uint32_t)sim__rng_range(r,
			DRIVER_STORY_SECONDS_MIN, DRIVER_STORY_SECONDS_MAX);
		sent(d, c, op == OP_STORY
			? api_story_post(client, &ctx, STORY_MEDIA_BASE + user,
				  seconds, on_answer, c)
			: api_stories(client, &ctx, on_answer, c));
		return;
	}
	default:
		issue_post_op(d, op, node, user);
		return;
	}
}

void
sim__driver_op(sim_driver *d)
{
	sim_world *w = d->w;
	if (d->stopped || w->now_ms >= w->end_ms)
		return;
	sim_rng *r = sim__rng(w, SIM_STREAM_WORKLOAD);
	uint64_t mean = 60000u / (w->knobs.ops_per_minute ? w->knobs.ops_per_minute
							 : 1u);
	uint64_t gap = sim__rng_range(r, 1, 2 * mean > 1 ? 2 * mean - 1 : 1);
	sim__schedule(w, w->now_ms + gap, SIM_EV_OP, SIM_NODES_MAX, 0);
	uint32_t op = draw_op(d);
	int64_t user = -1;
	for (uint32_t i = 0; i < DRIVER_PICK_TRIES && user < 0; i++) {
		uint32_t u = (uint32_t)sim__rng_below(r, w->model->users_count);
		if (!w->model->users[u].busy)
			user = u;
	}
	int node = pick_node(d);
	if (user < 0 || node < 0)
		return;
	w->result->ops_issued++;
	issue_op(d, op, (uint32_t)node, (uint32_t)user);
}

/* ---- life cycle ------------------------------------------------------------------- */

int
sim__driver_create(sim_world *w, sim_driver **out)
{
	sim_driver *d = calloc(1, sizeof *d);
	if (d == NULL)
		return -1;
	d->w = w;
	w->result->stories = api_story_post != NULL && api_stories != NULL;
	for (uint32_t i = 0; i < SIM_INFLIGHT_MAX; i++)
		d->calls[i].next_free = i + 2 <= SIM_INFLIGHT_MAX ? i + 2 : 0;
	d->free_head = 1;
	int rc;
	if (w->opts.graph != NULL) {
		rc = wl_graph_load(w->opts.graph, &d->graph);
		if (rc == 0 && d->graph.users == 0)
			for (uint32_t i = 0; i < d->graph.edges_count; i++)
				for (int k = 0; k < 2; k++)
					if (d->graph.edges[i][k] + 1 > d->graph.users)
						d->graph.users = d->graph.edges[i][k] + 1;
		if (rc == 0 && (d->graph.users < 2 ||
				       d->graph.users > SIM_USERS_MAX))
			rc = API_EINVALID;
		if (rc == 0)
			w->knobs.users = d->graph.users;
	} else {
		rc = wl_graph_powerlaw(w->knobs.users, w->knobs.follows_avg,
			sim__mix(w->seed ^ 0x6a09e667f3bcc908ull), &d->graph);
	}
	if (rc != 0) {
		sim__fail(w, "setup", "graph: %s", api_strerror(rc));
		wl_graph_free(&d->graph);
		free(d);
		return -1;
	}
	*out = d;
	return 0;
}

void
sim__driver_destroy(sim_driver *d)
{
	if (d == NULL)
		return;
	wl_graph_free(&d->graph);
	free(d);
}

void
sim__driver_stop(sim_driver *d)
{
	d->stopped = true;
}

uint32_t
sim__driver_inflight(const sim_driver *d)
{
	return d->inflight;
}

void
sim__driver_poll(sim_driver *d)
{
	sim_world *w = d->w;
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		/* cleared before the poll, which runs until the inbox is
		 * empty: a completion queued meanwhile sets it again */
		if (n->up && n->client != NULL && n->client_ready) {
			n->client_ready = false;
			api_client_poll(n->client);
		}
	}
}
