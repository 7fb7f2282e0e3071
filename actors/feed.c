/*
 * actors/feed.c — the ranked home feed and the hydrated listings (a
 * user's posts, followers, following), coordinated on the caller's
 * thread.
 *
 * Feed read, one page:
 *   1. ask the reader's user actor for its timeline refs below the
 *      cursor's boundary B (newest first, `limit` of them, authors it
 *      still follows or itself), the followees it pulls (celebrities now
 *      or at some post time) and its affinity to each author;
 *   2. ask every pulled followee for its unpushed posts below B;
 *   3. merge (distinct post ids), keep the `limit` largest ids: the
 *      window; hydrate each (summary + body for this viewer) from the
 *      view its post actor published on this node (post_views.c), or by
 *      asking the post actor when there is none, in parallel; drop
 *      deleted or unknown posts;
 *   4. rank the window by actors__rank_score and answer {items,
 *      next_cursor}; next_cursor carries the smallest id of the window.
 * Pages are consecutive id windows of the candidate set, ranked within
 * each window: a page never repeats or skips an item of the candidate
 * set, and posts that arrive later have larger ids than any boundary
 * already handed out, so they never shift later pages (they show on the
 * next first page).
 *
 * Score (documented in one place, here):
 *   score = (1 + affinity) * (1 + ln(1 + likes + 2 * comments))
 *           / (1 + age_hours / 2) ^ 1.5
 * recency dominates (a day-old post needs ~45x the engagement of a fresh
 * one), interactions with the author (likes 1, comments 2, decayed with
 * a one-week half-life) lift a post, and engagement counts on a log
 * scale so a viral post does not bury everything else.
 *
 * What it deliberately does not do: keep hydrated posts of its own
 * across reads (the post actors' views are the one copy, kept current
 * by them); backfill a window with older posts when some of it was
 * deleted.
 */
#include "actors/internal.h"

#include <math.h>
#include <stdlib.h>

/* Pulled followees one feed read asks at most: bounds a read's fan-in
 * (a reader following thousands of celebrities gets the most recent
 * 256 of them by id). */
#define FEED_PULLS_MAX 256u

double
actors__affinity_decay(double score, uint64_t age_ms)
{
	return score * exp2(-(double)age_ms /
			       (double)ACTORS_AFFINITY_HALF_LIFE_MS);
}

double
actors__rank_score(const actors__rank_input *in)
{
	double age_ms = in->now_ms > in->created_ms
		? (double)(in->now_ms - in->created_ms)
		: 0.0;
	double age_hours = age_ms / 3600000.0;
	double engagement = 1.0 + log1p((double)in->likes +
					2.0 * (double)in->comments);
	double affinity = in->affinity > 0.0 ? in->affinity : 0.0;
	return (1.0 + affinity) * engagement / pow(1.0 + age_hours / 2.0, 1.5);
}

/* ---- hydration of a list of ids ------------------------------------------ */

typedef struct item {
	uint64_t id;
	double affinity;
	double score;
	int code;
	bool deleted;
	uint32_t likes, comments;
	bool shown;          /* has a msgpack item in the listing's bodies */
	size_t body_offset;  /* where it starts there */
	size_t body_length;
} item;

typedef struct listing {
	api_callback cb;
	void *arg;
	uint64_t viewer;
	uint64_t owner;       /* cursor owner */
	uint8_t cursor_kind;
	bool more;
	bool rank;
	uint32_t outstanding;
	uint32_t count;
	uint32_t items_capacity;
	item *items;
	/* the items' msgpack bodies, back to back (one buffer per listing
	 * instead of an allocation per item) */
	rt_buffer bodies;
	/* feed only */
	uint32_t limit;
	uint64_t boundary;
	uint32_t pulls_outstanding;
	uint32_t pulls_count;
	uint64_t *pulls;
	double *pull_affinity;
	struct slot_op *slots; /* one per hydration ask, one allocation */
} listing;

typedef struct slot_op {
	listing *l;
	uint32_t index;
} slot_op;

/* A hydrated post item's msgpack body is about this big (a caption, an
 * author, tags, counts, a media map): the page's bodies buffer starts
 * with room for this many bytes per item. */
#define LISTING_ITEM_BYTES_TYPICAL 384u

/* Items ahead of the one taken whose post views are prefetched: each
 * view was written by a post actor on another core, and the copy of it
 * waited for its lines (the biggest cost of a feed read on the client's
 * thread in perf). The slot that holds the view's address is prefetched
 * further ahead still, so the view's prefetch does not wait for it. */
#define VIEW_PREFETCH_AHEAD 4u
#define VIEW_SLOT_PREFETCH_AHEAD 8u

/* Items of one listing at most: an id page of followers, following or
 * own posts holds up to four pages' worth (id_page's bound), a feed
 * window one page. */
#define LISTING_ITEMS_MAX (API_PAGE_LIMIT_MAX * 4u)

/* Windows up to this size are sorted by insertion: a page is 20 to 50
 * items, where glibc's qsort (a merge sort through an indirection for
 * items this big) cost a tenth of a feed read. */
#define FEED_INSERTION_SORT_MAX 64u

static void
items_sort(item *v, uint32_t n, int (*cmp)(const void *, const void *))
{
	if (n > FEED_INSERTION_SORT_MAX) {
		qsort(v, n, sizeof *v, cmp);
		return;
	}
	for (uint32_t i = 1; i < n; i++) {
		item x = v[i];
		uint32_t j = i;
		for (; j > 0 && cmp(&v[j - 1], &x) > 0; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

static void
listing_free(listing *l)
{
	rt_buffer_free(&l->bodies);
	free(l->items);
	free(l->pulls);
	free(l->pull_affinity);
	free(l->slots);
	free(l);
}

static int
by_score(const void *x, const void *y)
{
	const item *a = x, *b = y;
	if (a->score != b->score)
		return a->score < b->score ? 1 : -1;
	return a->id < b->id ? 1 : (a->id > b->id ? -1 : 0);
}

static void
listing_finish(api_client *c, listing *l)
{
	api *a = actors__client_api(c);
	/* An item whose owner did not answer (timed out, unreachable) is
	 * not known to be gone: a page without it would be a wrong answer
	 * (a list missing a follower, a count the page contradicts), so
	 * the page fails and the caller retries. Items known gone (deleted
	 * posts, unknown ids) are dropped. */
	for (uint32_t i = 0; i < l->count; i++) {
		if (l->items[i].code == API_EUNAVAILABLE) {
			actors__complete(c, l->cb, l->arg, API_EUNAVAILABLE,
				"an item's owner did not answer", 30, NULL, 0);
			listing_free(l);
			return;
		}
	}
	if (l->rank) {
		uint64_t now = rt_wall_ms(a->rt);
		for (uint32_t i = 0; i < l->count; i++) {
			item *it = &l->items[i];
			actors__rank_input in = {now, actors__id_ms(it->id),
				it->likes, it->comments, it->affinity};
			it->score = actors__rank_score(&in);
		}
	}
	/* The boundary is the smallest id of the window, before ranking. */
	uint64_t last = 0;
	for (uint32_t i = 0; i < l->count; i++)
		if (last == 0 || l->items[i].id < last)
			last = l->items[i].id;
	if (l->rank && l->count > 0)
		items_sort(l->items, l->count, by_score);
	/* The answer is built from the items' bytes where they lie (no
	 * page buffer packed here to be unpacked again by the client). */
	ACTORS_ASSERT(l->count <= LISTING_ITEMS_MAX);
	actors__span spans[LISTING_ITEMS_MAX];
	uint32_t shown = 0;
	for (uint32_t i = 0; i < l->count; i++)
		if (l->items[i].shown)
			spans[shown++] = (actors__span){l->items[i].body_offset,
				l->items[i].body_length};
	char text[ACTORS_CURSOR_TEXT_BYTES];
	if (l->more && last != 0) {
		actors__cursor cur = {l->cursor_kind, l->owner, last};
		actors__cursor_encode(&cur, text, sizeof text);
	}
	actors__complete_page(c, l->cb, l->arg, l->bodies.bytes, spans, shown,
		l->more && last != 0 ? text : NULL);
	listing_free(l);
}

static void
hydrated(api_client *c, void *opaque, const rt_message *m)
{
	slot_op *s = opaque; /* l's: freed with it */
	listing *l = s->l;
	item *it = &l->items[s->index];
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	it->code = code;
	if (code == API_OK && l->cursor_kind != ACTORS_CURSOR_FOLLOWERS &&
		l->cursor_kind != ACTORS_CURSOR_FOLLOWING) {
		actors__summary sum;
		if (body_length >= sizeof sum) {
			memcpy(&sum, body, sizeof sum);
			it->deleted = sum.deleted != 0;
			it->likes = sum.likes;
			it->comments = sum.comments;
			body = (const unsigned char *)body + sizeof sum;
			body_length -= sizeof sum;
		} else {
			it->deleted = true;
		}
	}
	if (code == API_OK && !it->deleted && body_length > 0) {
		size_t offset = l->bodies.length;
		if (rt_buffer_append(&l->bodies, body, body_length) == 0) {
			it->shown = true;
			it->body_offset = offset;
			it->body_length = body_length;
		}
	}
	ACTORS_ASSERT(l->outstanding > 0);
	if (--l->outstanding == 0)
		listing_finish(c, l);
}

/* The item from the view its post actor published on this node
 * (post_views.c), as its POST_T_SUMMARY answer would give it; false when
 * the post actor must be asked. */
static bool
view_take(api *a, listing *l, item *it)
{
	actors__summary sum;
	size_t offset = l->bodies.length;
	size_t body_length;
	if (!actors__post_views_get(a->post_views, it->id, l->viewer, &sum,
		    &l->bodies, &body_length))
		return false;
	it->code = API_OK;
	it->deleted = sum.deleted != 0;
	it->likes = sum.likes;
	it->comments = sum.comments;
	it->shown = body_length > 0;
	it->body_offset = offset;
	it->body_length = body_length;
	return true;
}

/* Asks for every item of l; completes when all answered. */
static void
listing_hydrate(api_client *c, listing *l)
{
	bool users = l->cursor_kind == ACTORS_CURSOR_FOLLOWERS ||
		l->cursor_kind == ACTORS_CURSOR_FOLLOWING;
	if (l->count == 0) {
		listing_finish(c, l);
		return;
	}
	l->outstanding = l->count + 1; /* +1 guards against early finish */
	ACTORS_ASSERT(l->slots == NULL);
	l->slots = malloc(l->count * sizeof *l->slots);
	/* Room for a page of typical items at once (a failure here only
	 * means growing later). */
	(void)rt_buffer_reserve(&l->bodies,
		(size_t)l->count * LISTING_ITEM_BYTES_TYPICAL);
	api *a = actors__client_api(c);
	for (uint32_t i = 0; !users && i < l->count &&
		i < VIEW_SLOT_PREFETCH_AHEAD; i++)
		actors__post_views_prefetch_slot(a->post_views,
			l->items[i].id);
	for (uint32_t i = 0; !users && i < l->count && i < VIEW_PREFETCH_AHEAD;
		i++)
		actors__post_views_prefetch(a->post_views, l->items[i].id);
	for (uint32_t i = 0; i < l->count; i++) {
		if (!users && i + VIEW_SLOT_PREFETCH_AHEAD < l->count)
			actors__post_views_prefetch_slot(a->post_views,
				l->items[i + VIEW_SLOT_PREFETCH_AHEAD].id);
		if (!users && i + VIEW_PREFETCH_AHEAD < l->count)
			actors__post_views_prefetch(a->post_views,
				l->items[i + VIEW_PREFETCH_AHEAD].id);
		if (!users && view_take(a, l, &l->items[i])) {
			l->outstanding--;
			continue;
		}
		slot_op *s = l->slots != NULL ? &l->slots[i] : NULL;
		int rc = API_EUNAVAILABLE;
		if (s != NULL) {
			*s = (slot_op){l, i};
			uint64_t viewer = l->viewer;
			rc = users ? actors__ask(c,
					     rt_addr_make(ACTORS_KIND_USER,
						     l->items[i].id),
					     USER_T_SUMMARY, NULL, 0, hydrated, s)
				   : actors__ask(c,
					     rt_addr_make(ACTORS_KIND_POST,
						     l->items[i].id),
					     POST_T_SUMMARY, &viewer,
					     sizeof viewer, hydrated, s);
		}
		if (rc != 0) {
			l->items[i].code = rc;
			l->outstanding--;
		}
	}
	if (--l->outstanding == 0)
		listing_finish(c, l);
}

static listing *
listing_new(api_callback cb, void *arg, uint64_t viewer, uint8_t kind)
{
	listing *l = calloc(1, sizeof *l);
	if (l == NULL)
		return NULL;
	l->cb = cb;
	l->arg = arg;
	l->viewer = viewer;
	l->cursor_kind = kind;
	return l;
}

static void
listing_fail(api_client *c, listing *l, int code, const char *detail,
	size_t detail_length)
{
	actors__complete(c, l->cb, l->arg, code, detail, detail_length, NULL,
		0);
	listing_free(l);
}

/* ---- id pages: own posts and follow lists ----------------------------------- */

static void
id_page(api_client *c, void *opaque, const rt_message *m)
{
	listing *l = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	if (code != API_OK) {
		listing_fail(c, l, code, detail, detail_length);
		return;
	}
	wire_reader r;
	wire_reader_init(&r, body, body_length);
	uint32_t n = wire_get_u32(&r);
	if (r.failed || n > LISTING_ITEMS_MAX ||
		(size_t)n * 8 + 5 != body_length) {
		listing_fail(c, l, API_EINTERNAL, "bad page", 8);
		return;
	}
	l->items = calloc(n ? n : 1, sizeof *l->items);
	if (l->items == NULL) {
		listing_fail(c, l, API_EUNAVAILABLE, "out of memory", 13);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		l->items[i].id = wire_get_u64(&r);
	l->count = n;
	l->more = wire_get_u8(&r) != 0;
	listing_hydrate(c, l);
}

typedef struct page_req {
	api_callback cb;
	void *arg;
	uint64_t viewer;
	uint8_t kind;
	uint32_t type;
	uint8_t which;
	uint32_t limit;
	api_page page;
	char cursor[ACTORS_CURSOR_TEXT_BYTES + 8];
} page_req;

static void
page_resolved(api_client *c, void *opaque, uint64_t user_id)
{
	page_req *q = opaque;
	listing *l = listing_new(q->cb, q->arg, q->viewer, q->kind);
	if (l == NULL) {
		actors__complete(c, q->cb, q->arg, API_EUNAVAILABLE,
			"out of memory", 13, NULL, 0);
		free(q);
		return;
	}
	l->owner = user_id;
	uint32_t limit;
	uint64_t boundary;
	int rc = calls__page_args(&q->page, l->cursor_kind, user_id,
		UINT64_MAX, &limit, &boundary);
	if (rc != API_OK) {
		free(q);
		listing_fail(c, l, API_EINVALID, "bad limit or cursor", 19);
		return;
	}
	wire_writer w;
	wire_init(&w);
	if (q->type == USER_T_FOLLOW_LIST)
		wire_u8(&w, q->which);
	wire_u64(&w, boundary);
	wire_u32(&w, limit);
	rc = w.failed ? API_EUNAVAILABLE
		      : actors__ask(c, rt_addr_make(ACTORS_KIND_USER, user_id),
			    q->type, w.bytes, w.length, id_page, l);
	wire_free(&w);
	free(q);
	if (rc != 0)
		listing_fail(c, l, rc, "unavailable", 11);
}

static int
page_start(api_client *c, const api_ctx *ctx, const char *username,
	const api_page *page, uint32_t type, uint8_t which, uint8_t kind,
	api_callback cb, void *arg)
{
	if (page != NULL && page->limit > API_PAGE_LIMIT_MAX)
		return calls__fail(c, cb, arg, API_EINVALID, "limit above 50");
	page_req *q = calloc(1, sizeof *q);
	if (q == NULL)
		return API_EUNAVAILABLE;
	q->cb = cb;
	q->arg = arg;
	q->viewer = ctx != NULL ? ctx->user_id : 0;
	q->kind = kind;
	q->type = type;
	q->which = which;
	if (page != NULL) {
		q->page.limit = page->limit;
		if (page->cursor != NULL) {
			if (strlen(page->cursor) >= sizeof q->cursor) {
				free(q);
				return calls__fail(c, cb, arg, API_EINVALID,
					"bad cursor");
			}
			memcpy(q->cursor, page->cursor,
				strlen(page->cursor) + 1);
			q->page.cursor = q->cursor;
		}
	}
	return calls__resolve(c, username, cb, arg, page_resolved, q,
		API_ENOTFOUND);
}

int
api_user_posts(api_client *c, const api_ctx *ctx, const char *username,
	const api_page *page, api_callback cb, void *arg)
{
	return page_start(c, ctx, username, page, USER_T_OWN_POSTS, 0,
		ACTORS_CURSOR_USER_POSTS, cb, arg);
}

int
api_follow_list(api_client *c, const api_ctx *ctx, const char *username,
	bool following, const api_page *page, api_callback cb, void *arg)
{
	return page_start(c, ctx, username, page, USER_T_FOLLOW_LIST,
		following ? 1 : 0,
		following ? ACTORS_CURSOR_FOLLOWING : ACTORS_CURSOR_FOLLOWERS,
		cb, arg);
}

/* ---- the feed ------------------------------------------------------------- */

static int
by_id_desc(const void *x, const void *y)
{
	const item *a = x, *b = y;
	return a->id < b->id ? 1 : (a->id > b->id ? -1 : 0);
}

/* Keeps the `limit` largest distinct ids, hydrates them. */
static void
feed_window(api_client *c, listing *l)
{
	if (l->count > 0)
		items_sort(l->items, l->count, by_id_desc);
	uint32_t n = 0;
	for (uint32_t i = 0; i < l->count; i++) {
		if (n > 0 && l->items[n - 1].id == l->items[i].id)
			continue;
		l->items[n++] = l->items[i];
	}
	if (n > l->limit) {
		l->more = true;
		n = l->limit;
	}
	l->count = n;
	listing_hydrate(c, l);
}

static int
feed_add(listing *l, uint64_t id, double affinity)
{
	if (l->count == l->items_capacity) {
		uint32_t grown = l->items_capacity ? l->items_capacity * 2 : 64;
		item *v = realloc(l->items, grown * sizeof *v);
		if (v == NULL)
			return -1;
		l->items = v;
		l->items_capacity = grown;
	}
	memset(&l->items[l->count], 0, sizeof l->items[l->count]);
	l->items[l->count].id = id;
	l->items[l->count].affinity = affinity;
	l->count++;
	return 0;
}

typedef struct pull_op {
	listing *l;
	uint32_t index;
} pull_op;

static void
pulled(api_client *c, void *opaque, const rt_message *m)
{
	pull_op *p = opaque;
	listing *l = p->l;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	if (code == API_OK) {
		wire_reader r;
		wire_reader_init(&r, body, body_length);
		uint32_t n = wire_get_u32(&r);
		if (n == l->limit)
			l->more = true;
		for (uint32_t i = 0; i < n && !r.failed; i++) {
			uint64_t id = wire_get_u64(&r);
			if (!r.failed &&
				feed_add(l, id, l->pull_affinity[p->index]) != 0)
				break;
		}
	}
	/* A celebrity that does not answer costs its posts on this page
	 * only; the page still comes (reads degrade, never fail). */
	free(p);
	ACTORS_ASSERT(l->pulls_outstanding > 0);
	if (--l->pulls_outstanding == 0)
		feed_window(c, l);
}

static bool
feed_parse_candidates(listing *l, wire_reader *r)
{
	uint32_t n = wire_get_u32(r);
	if (n == l->limit)
		l->more = true;
	for (uint32_t i = 0; i < n && !r->failed; i++) {
		uint64_t id = wire_get_u64(r);
		(void)wire_get_u64(r); /* author */
		double affinity = wire_get_f64(r);
		if (!r->failed && feed_add(l, id, affinity) != 0)
			return false;
	}
	uint32_t pulls = wire_get_u32(r);
	if (r->failed)
		return false;
	uint32_t keep = pulls > FEED_PULLS_MAX ? FEED_PULLS_MAX : pulls;
	l->pulls = calloc(keep ? keep : 1, sizeof *l->pulls);
	l->pull_affinity = calloc(keep ? keep : 1, sizeof(double));
	if (l->pulls == NULL || l->pull_affinity == NULL)
		return false;
	for (uint32_t i = 0; i < pulls; i++) {
		uint64_t author = wire_get_u64(r);
		double affinity = wire_get_f64(r);
		/* Past the bound keep the largest ids: the newest accounts
		 * come last in the sorted pull set. */
		if (i + keep >= pulls) {
			l->pulls[l->pulls_count] = author;
			l->pull_affinity[l->pulls_count] = affinity;
			l->pulls_count++;
		}
	}
	return !r->failed;
}

static void
feed_candidates(api_client *c, void *opaque, const rt_message *m)
{
	listing *l = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	if (code != API_OK) {
		if (code == API_ENOTFOUND)
			code = API_EUNAUTHORIZED;
		listing_fail(c, l, code, detail, detail_length);
		return;
	}
	wire_reader r;
	wire_reader_init(&r, body, body_length);
	if (!feed_parse_candidates(l, &r)) {
		listing_fail(c, l, API_EINTERNAL, "bad candidates", 14);
		return;
	}
	if (l->pulls_count == 0) {
		feed_window(c, l);
		return;
	}
	l->pulls_outstanding = l->pulls_count + 1;
	for (uint32_t i = 0; i < l->pulls_count; i++) {
		pull_op *p = malloc(sizeof *p);
		int rc = API_EUNAVAILABLE;
		unsigned char req[12];
		wire_writer w = {req, 0, sizeof req, false};
		wire_u64(&w, l->boundary);
		wire_u32(&w, l->limit);
		if (p != NULL) {
			*p = (pull_op){l, i};
			rc = actors__ask(c,
				rt_addr_make(ACTORS_KIND_USER, l->pulls[i]),
				USER_T_RECENT, req, sizeof req, pulled, p);
		}
		if (rc != 0) {
			free(p);
			l->pulls_outstanding--;
		}
	}
	if (--l->pulls_outstanding == 0)
		feed_window(c, l);
}

int
api_feed(api_client *c, const api_ctx *ctx, const api_page *page,
	api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	uint32_t limit;
	uint64_t boundary;
	if (calls__page_args(page, ACTORS_CURSOR_FEED, ctx->user_id, UINT64_MAX,
		    &limit, &boundary) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID,
			"bad limit or cursor");
	listing *l = listing_new(cb, arg, ctx->user_id, ACTORS_CURSOR_FEED);
	if (l == NULL)
		return API_EUNAVAILABLE;
	l->rank = true;
	l->owner = ctx->user_id;
	l->limit = limit;
	l->boundary = boundary;
	unsigned char req[12];
	wire_writer w = {req, 0, sizeof req, false};
	wire_u64(&w, boundary);
	wire_u32(&w, limit);
	int rc = actors__ask(c, rt_addr_make(ACTORS_KIND_USER, ctx->user_id),
		USER_T_FEED_CANDIDATES, req, sizeof req, feed_candidates, l);
	if (rc != 0) {
		listing_free(l);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}
