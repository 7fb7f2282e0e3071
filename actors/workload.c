/*
 * actors/workload.c — graph loading/generation and a seeded operation
 * mix driven through api.h (see workload.h).
 *
 * Invariants: the same seed gives the same graph and the same sequence
 * of operations (the completion order may differ in real mode); at most
 * `concurrency` calls are in flight.
 *
 * What it deliberately does not do: check answers beyond their codes
 * (tests do that), sleep between operations (it is a closed loop).
 */
#include "actors/workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <math.h>

/* Recent post ids the driver likes and comments on. */
#define WL_POSTS_RING 4096u
/* Latency samples kept per operation (reservoir). */
#define WL_SAMPLES_MAX (1u << 20)
/* Edges in an edge file at most (Reed98 has 18,812). */
#define WL_EDGES_MAX (64u << 20)
/* Longest wait for one completion before the driver gives up. */
#define WL_WAIT_MS 10000u

static uint64_t
splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

const char *
wl_op_name(wl_op op)
{
	static const char *const names[WL_OPS] = {"post", "feed", "like",
		"comment", "user_timeline"};
	return op < WL_OPS ? names[op] : "?";
}

const char *
wl_reed98_path(void)
{
	static const char *const candidates[] = {
		"../shared/datasets/socfb-Reed98/socfb-Reed98.edges",
		"../../shared/datasets/socfb-Reed98/socfb-Reed98.edges",
		"/work/shared/datasets/socfb-Reed98/socfb-Reed98.edges",
	};
	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
		if (access(candidates[i], R_OK) == 0)
			return candidates[i];
	return NULL;
}

/* ---- graphs ---------------------------------------------------------------- */

static int
edges_push(wl_graph *g, uint32_t *capacity, uint32_t a, uint32_t b)
{
	if (g->edges_count == *capacity) {
		uint32_t grown = *capacity ? *capacity * 2 : 1024;
		void *v = realloc(g->edges, grown * sizeof *g->edges);
		if (v == NULL)
			return API_EUNAVAILABLE;
		g->edges = v;
		*capacity = grown;
	}
	g->edges[g->edges_count][0] = a;
	g->edges[g->edges_count][1] = b;
	g->edges_count++;
	if (a + 1 > g->users)
		g->users = a + 1;
	if (b + 1 > g->users)
		g->users = b + 1;
	return API_OK;
}

int
wl_graph_load(const char *path, wl_graph *out)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return API_ENOTFOUND;
	out->undirected = true;
	uint32_t capacity = 0;
	unsigned long a, b;
	int rc = API_OK;
	char line[128];
	while (rc == API_OK && fgets(line, sizeof line, f) != NULL) {
		if (line[0] == '\n' || line[0] == '%' || line[0] == '#')
			continue;
		if (sscanf(line, "%lu %lu", &a, &b) != 2 || a > UINT32_MAX - 1 ||
			b > UINT32_MAX - 1 || out->edges_count >= WL_EDGES_MAX)
			rc = API_EINVALID;
		else
			rc = edges_push(out, &capacity, (uint32_t)a,
				(uint32_t)b);
	}
	fclose(f);
	if (rc != API_OK)
		wl_graph_free(out);
	return rc;
}

int
wl_graph_powerlaw(uint32_t users, uint32_t follows_avg, uint64_t seed,
	wl_graph *out)
{
	memset(out, 0, sizeof *out);
	if (users < 2)
		return API_EINVALID;
	uint64_t s = seed;
	uint32_t capacity = 0;
	/* Zipf(1) over popularity ranks by inverse transform of a harmonic
	 * approximation: rank = users^u - 1, u uniform. */
	for (uint32_t a = 0; a < users; a++) {
		uint32_t n = (uint32_t)(splitmix(&s) % (2u * follows_avg + 1));
		for (uint32_t k = 0; k < n; k++) {
			double u = (double)(splitmix(&s) >> 11) / 9007199254740992.0;
			double r = exp2(u * log2((double)users)) - 1.0;
			uint32_t b = (uint32_t)r % users;
			if (b == a)
				continue;
			if (edges_push(out, &capacity, a, b) != API_OK) {
				wl_graph_free(out);
				return API_EUNAVAILABLE;
			}
		}
	}
	out->users = users;
	return API_OK;
}

int
wl_graph_write(const wl_graph *g, const char *path)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return API_EINTERNAL;
	for (uint32_t i = 0; i < g->edges_count; i++)
		fprintf(f, "%u %u\n", g->edges[i][0], g->edges[i][1]);
	return fclose(f) == 0 ? API_OK : API_EINTERNAL;
}

void
wl_graph_free(wl_graph *g)
{
	free(g->edges);
	memset(g, 0, sizeof *g);
}

/* ---- a closed loop of calls ---------------------------------------------- */

typedef struct wl_call {
	struct wl_loop *loop;
	wl_op op;
	double started_us;
	uint32_t user;
	bool busy;
	uint64_t *id_out; /* signups: where the new user id goes */
} wl_call;

typedef struct wl_loop {
	api_client *c;
	wl_world *w;
	uint32_t in_flight;
	int first_error;
	wl_call *calls;
	double *samples[WL_OPS];
	uint32_t samples_count[WL_OPS];
	uint64_t seen[WL_OPS];
	wl_stats *stats;
	uint64_t rng;
	uint32_t cursor; /* where the search for a free call starts */
} wl_loop;

static void
world_post_add(wl_world *w, uint64_t id)
{
	if (id == 0 || w->posts == NULL)
		return;
	w->posts[w->posts_next] = id;
	w->posts_next = (w->posts_next + 1) % w->posts_capacity;
	if (w->posts_count < w->posts_capacity)
		w->posts_count++;
}

static void
record(wl_loop *l, wl_op op, double us)
{
	if (l->samples[op] == NULL)
		return;
	uint64_t seen = ++l->seen[op];
	if (l->samples_count[op] < WL_SAMPLES_MAX) {
		l->samples[op][l->samples_count[op]++] = us;
		return;
	}
	uint64_t j = splitmix(&l->rng) % seen;
	if (j < WL_SAMPLES_MAX)
		l->samples[op][j] = us;
}

static void
call_done(void *arg, const api_result *r)
{
	wl_call *call = arg;
	wl_loop *l = call->loop;
	call->busy = false;
	l->in_flight--;
	if (l->stats != NULL) {
		l->stats->count[call->op]++;
		/* A per-user bucket saying "not now" is an answer, not a
		 * failure: a mix at full speed trips the defaults. */
		if (r->code != API_OK && r->code != API_ERATELIMITED)
			l->stats->errors[call->op]++;
		record(l, call->op, now_us() - call->started_us);
	} else if (r->code != API_OK && r->code != API_ECONFLICT &&
		l->first_error == 0) {
		l->first_error = r->code;
	}
	if (r->code != API_OK || r->body == NULL)
		return;
	if (call->id_out != NULL) {
		*call->id_out = api_body_id(r->body, "user_id");
		return;
	}
	if (call->op == WL_OP_POST) {
		world_post_add(l->w, api_body_id(r->body, "post_id"));
	} else if (call->op == WL_OP_FEED) {
		const msgpack_object *items = api_body_get(r->body, "items");
		if (items != NULL && items->type == MSGPACK_OBJECT_ARRAY &&
			items->via.array.size > 0)
			world_post_add(l->w,
				api_body_id(&items->via.array.ptr[0],
					"post_id"));
	}
}

static wl_call *
loop_slot(wl_loop *l, uint32_t concurrency)
{
	while (l->in_flight >= concurrency)
		if (api_client_wait(l->c, WL_WAIT_MS) == 0)
			return NULL;
	/* Calls finish roughly in the order they were issued, so the one
	 * after the last issued is usually free: a scan from 0 walked most
	 * of a thousand busy calls per operation. */
	for (uint32_t k = 0; k < concurrency; k++) {
		uint32_t i = (l->cursor + k) % concurrency;
		if (!l->calls[i].busy) {
			l->cursor = (i + 1) % concurrency;
			return &l->calls[i];
		}
	}
	return NULL;
}

static void
loop_drain(wl_loop *l)
{
	while (l->in_flight > 0)
		if (api_client_wait(l->c, WL_WAIT_MS) == 0)
			break;
}

/* ---- loading --------------------------------------------------------------- */

static int
load_signups(wl_loop *l, const wl_graph *g, uint32_t concurrency)
{
	for (uint32_t i = 0; i < g->users && l->first_error == 0; i++) {
		wl_call *call = loop_slot(l, concurrency);
		if (call == NULL)
			return API_EUNAVAILABLE;
		char name[32], email[48];
		snprintf(name, sizeof name, "user%u", i);
		snprintf(email, sizeof email, "user%u@example.com", i);
		*call = (wl_call){l, WL_OP_POST, 0, i, true, &l->w->user_ids[i]};
		api_ctx ctx = {0};
		int rc = api_signup_prehashed(l->c, &ctx, name, email,
			"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
			call_done, call);
		if (rc != 0) {
			call->busy = false;
			return rc;
		}
		l->in_flight++;
	}
	loop_drain(l);
	return l->first_error;
}

static int
load_follow(wl_loop *l, uint32_t concurrency, uint32_t a, uint32_t b)
{
	wl_call *call = loop_slot(l, concurrency);
	if (call == NULL)
		return API_EUNAVAILABLE;
	char name[32];
	snprintf(name, sizeof name, "user%u", b);
	*call = (wl_call){l, WL_OP_POST, 0, a, true, NULL};
	api_ctx ctx = {.user_id = l->w->user_ids[a]};
	int rc = api_follow(l->c, &ctx, name, true, call_done, call);
	if (rc != 0) {
		call->busy = false;
		return rc;
	}
	l->in_flight++;
	return API_OK;
}

int
wl_load(api_client *c, const wl_graph *g, uint32_t concurrency,
	wl_world *out)
{
	memset(out, 0, sizeof *out);
	if (concurrency == 0)
		concurrency = 64;
	out->users = g->users;
	out->user_ids = calloc(g->users ? g->users : 1, sizeof(uint64_t));
	out->posts = calloc(WL_POSTS_RING, sizeof(uint64_t));
	out->posts_capacity = WL_POSTS_RING;
	wl_loop l = {.c = c, .w = out};
	l.calls = calloc(concurrency, sizeof *l.calls);
	int rc = API_EUNAVAILABLE;
	if (out->user_ids == NULL || out->posts == NULL || l.calls == NULL)
		goto done;
	rc = load_signups(&l, g, concurrency);
	for (uint32_t i = 0; rc == API_OK && i < g->edges_count; i++) {
		uint32_t a = g->edges[i][0], b = g->edges[i][1];
		if (a == b)
			continue;
		rc = load_follow(&l, concurrency, a, b);
		if (rc == API_OK && g->undirected)
			rc = load_follow(&l, concurrency, b, a);
		if (rc == API_OK)
			rc = l.first_error;
	}
	loop_drain(&l);
	if (rc == API_OK)
		rc = l.first_error;
done:
	free(l.calls);
	if (rc != API_OK)
		wl_world_free(out);
	return rc;
}

void
wl_world_free(wl_world *w)
{
	free(w->user_ids);
	free(w->posts);
	memset(w, 0, sizeof *w);
}

/* ---- playing --------------------------------------------------------------- */

static wl_op
draw_op(wl_mix mix, uint64_t r)
{
	if (mix == WL_MIX_DEATHSTAR) {
		uint64_t x = r % 10;
		return x < 6 ? WL_OP_FEED : (x < 9 ? WL_OP_USER_TIMELINE
						   : WL_OP_POST);
	}
	uint64_t x = r % 33; /* 1 post, 10 feeds, 20 likes, 2 comments */
	if (x < 1)
		return WL_OP_POST;
	if (x < 11)
		return WL_OP_FEED;
	if (x < 31)
		return WL_OP_LIKE;
	return WL_OP_COMMENT;
}

static int
issue(wl_loop *l, wl_call *call, uint64_t r)
{
	wl_world *w = l->w;
	api_ctx ctx = {.user_id = w->user_ids[call->user]};
	uint64_t post = w->posts_count > 0
		? w->posts[(r >> 17) % w->posts_count]
		: 0;
	wl_op op = call->op;
	if ((op == WL_OP_LIKE || op == WL_OP_COMMENT) && post == 0)
		op = call->op = WL_OP_POST;
	switch (op) {
	case WL_OP_POST:
		return api_post_create(l->c, &ctx, "a day at the beach #sun #sea",
			0, call_done, call);
	case WL_OP_FEED: {
		api_page page = {API_PAGE_LIMIT_DEFAULT, NULL};
		return api_feed(l->c, &ctx, &page, call_done, call);
	}
	case WL_OP_LIKE:
		return api_like(l->c, &ctx, post, true, call_done, call);
	case WL_OP_COMMENT:
		return api_comment_add(l->c, &ctx, post, "nice!", call_done,
			call);
	case WL_OP_USER_TIMELINE: {
		char name[32];
		snprintf(name, sizeof name, "user%u",
			(uint32_t)((r >> 23) % w->users));
		api_page page = {10, NULL};
		return api_user_posts(l->c, &ctx, name, &page, call_done,
			call);
	}
	default:
		return API_EINVALID;
	}
}

static int
by_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : (a > b ? 1 : 0);
}

int
wl_play(api_client *c, wl_world *w, wl_mix mix, uint64_t ops,
	uint32_t active_users, uint32_t concurrency, uint64_t seed,
	wl_stats *out)
{
	memset(out, 0, sizeof *out);
	if (w->users == 0)
		return API_EINVALID;
	if (active_users == 0 || active_users > w->users)
		active_users = w->users;
	if (concurrency == 0)
		concurrency = 64;
	wl_loop l = {.c = c, .w = w, .stats = out, .rng = seed ^ 0x5eed};
	l.calls = calloc(concurrency, sizeof *l.calls);
	int rc = l.calls == NULL ? API_EUNAVAILABLE : API_OK;
	for (int i = 0; i < WL_OPS && rc == API_OK; i++) {
		l.samples[i] = malloc(WL_SAMPLES_MAX * sizeof(double));
		if (l.samples[i] == NULL)
			rc = API_EUNAVAILABLE;
	}
	uint64_t s = seed;
	double t0 = now_us();
	for (uint64_t i = 0; i < ops && rc == API_OK; i++) {
		wl_call *call = loop_slot(&l, concurrency);
		if (call == NULL) {
			rc = API_EUNAVAILABLE;
			break;
		}
		uint64_t r = splitmix(&s);
		*call = (wl_call){&l, draw_op(mix, r),
			now_us(), (uint32_t)(splitmix(&s) % active_users), true,
			NULL};
		int irc = issue(&l, call, r);
		if (irc != 0) {
			call->busy = false;
			out->errors[call->op]++;
			continue;
		}
		l.in_flight++;
	}
	loop_drain(&l);
	out->seconds = (now_us() - t0) / 1e6;
	uint64_t total = 0;
	for (int i = 0; i < WL_OPS; i++) {
		total += out->count[i];
		uint32_t n = l.samples_count[i];
		if (n > 0) {
			qsort(l.samples[i], n, sizeof(double), by_double);
			out->p50_us[i] = l.samples[i][n / 2];
			out->p99_us[i] = l.samples[i][(uint64_t)n * 99 / 100];
		}
		free(l.samples[i]);
	}
	out->ops_per_second = out->seconds > 0 ? (double)total / out->seconds
					       : 0;
	free(l.calls);
	return rc;
}
