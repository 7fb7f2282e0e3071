/*
 * sim/check.c — the invariants.
 *
 * Continuously (as things happen):
 *   6. every activation: the actor is not active on another live node;
 *      every tick: a node's map epoch never goes down (across restarts
 *      too), and two nodes at one epoch hold the same owners;
 *   3. every feed page a client reads: no item twice, no post whose
 *      deletion was acknowledged before the read was sent;
 *   4. every story tray a client reads: no story past its expiry by more
 *      than the clocks' skew bound.
 *
 * At quiescence (faults healed, crashed nodes back, cluster converged),
 * through the api like any client:
 *   1. every acknowledged write is there: users, follows (both lists),
 *      posts (get and the author's listing), likes (liked_by_me for the
 *      liker), comments; nothing acknowledged as deleted is;
 *   2. likes_count = the number of users whose liked_by_me is true;
 *      comments_count = the comments listed; followers_count and
 *      following_count = their lists; following and followers symmetric;
 *   3. every reader's feed, all pages: no duplicates, no deleted or
 *      never-created post, and every live post of a followee sent after
 *      the followee showed the follow (pull or push alike);
 *   4. no expired story in any tray; every live story of a followee in
 *      the follower's tray;
 *   7. restarting every node (crash, recovery from the journal) gives
 *      the same answers, and doing it again too: recovery is the durable
 *      prefix, and replaying a journal twice changes nothing.
 * Flags whose last op had an unknown outcome accept either value; posts
 * and comments created with an unknown outcome may appear, as many as
 * there were such creations.
 *
 * Does not: check anything that depends on ranking order or on time
 * passing during the checks (reads run in simulated time too).
 */
#include "sim/internal.h"

#include <stdarg.h>

/* Pages of one listing at most (50 items each): far above a run's
 * lists; past it the listing is reported as endless. */
#define CHECK_PAGES_MAX 2000u
/* One read's wait, simulated: past it the read failed. */
#define CHECK_READ_MS_MAX (60u * 1000u)
/* Readers whose whole feed is checked at quiescence, at most. */
#define CHECK_FEED_READERS_MAX 400u
/* A feed expecting more than this share of the timeline ring is not
 * checked for completeness (old entries fall off by design). */
#define CHECK_FEED_RING_PERCENT 90u
/* Extra slack on story expiry beyond the skew bound: one tick of
 * message latency. */
#define CHECK_STORY_SLACK_MS 2000u
/* Bound on settling after each restart of the recovery check. */
#define RUN_RECOVERY_SETTLE_MS (5u * 60u * 1000u)

#pragma weak api_stories
#pragma weak api_notifications
/* The notification inbox keeps this many entries (actors/engage.h's
 * INBOX_ENTRIES_MAX): past it the oldest go, so completeness is checked
 * only for inboxes that never filled. */
#define CHECK_INBOX_ENTRIES_MAX 1000u

/* ---- failures -------------------------------------------------------------- */

uint64_t sim__parse_time_ms(const char *text);

/* RFC 3339 UTC "YYYY-MM-DDTHH:MM:SS(.mmm)Z" -> ms since the Unix epoch;
 * 0 when malformed. */
uint64_t
sim__parse_time_ms(const char *text)
{
	unsigned y, mo, d, h, mi, s, ms = 0;
	int n = 0;
	if (sscanf(text, "%4u-%2u-%2uT%2u:%2u:%2u%n", &y, &mo, &d, &h, &mi, &s,
		    &n) != 6)
		return 0;
	if (text[n] == '.') {
		unsigned frac = 0, digits = 0;
		n++;
		while (text[n] >= '0' && text[n] <= '9') {
			if (digits < 3) {
				frac = frac * 10 + (unsigned)(text[n] - '0');
				digits++;
			}
			n++;
		}
		while (digits < 3) {
			frac *= 10;
			digits++;
		}
		ms = frac;
	}
	if (text[n] != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31)
		return 0;
	/* days from civil (Howard Hinnant's algorithm) */
	int yy = (int)y - (mo <= 2);
	int era = (yy >= 0 ? yy : yy - 399) / 400;
	unsigned yoe = (unsigned)(yy - era * 400);
	unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = (int64_t)era * 146097 + (int64_t)doe - 719468;
	return (uint64_t)(((days * 24 + h) * 60 + mi) * 60 + s) * 1000u + ms;
}

/* ---- continuous checks ------------------------------------------------------ */

void
sim__check_load(sim_world *w, uint32_t node, rt_addr addr)
{
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		if (i == node || !w->nodes[i].up ||
			!sim__active_has(&w->nodes[i].active, addr))
			continue;
		/* The set only grows between scans: ask the registry, after
		 * this turn (a runtime is not asked from inside another's). */
		if (w->suspects_count == sizeof w->suspects / sizeof w->suspects[0])
			continue;
		w->suspects[w->suspects_count].addr = addr;
		w->suspects[w->suspects_count].node = node;
		w->suspects[w->suspects_count].other = i;
		w->suspects[w->suspects_count].node_incarnation =
			w->nodes[node].incarnation;
		w->suspects[w->suspects_count].other_incarnation =
			w->nodes[i].incarnation;
		w->suspects_count++;
	}
}

void
sim__check_suspects(sim_world *w)
{
	for (uint32_t k = 0; k < w->suspects_count && !w->failed; k++) {
		rt_addr addr = w->suspects[k].addr;
		uint32_t node = w->suspects[k].node, other = w->suspects[k].other;
		if (!w->nodes[node].up || !w->nodes[other].up ||
			w->nodes[node].incarnation != w->suspects[k].node_incarnation ||
			w->nodes[other].incarnation != w->suspects[k].other_incarnation)
			continue;
		if (sim__node_active_now(w, other, addr) == 1 &&
			sim__node_active_now(w, node, addr) == 1)
			sim__fail(w, "6 one active copy", "actor kind %u id %"
				PRIu64 " is active on n%u and on n%u", addr.kind,
				addr.id, node + 1, other + 1);
	}
	w->suspects_count = 0;
}

static sim_epoch_seen *epochs_seen(sim_world *w, uint32_t *count, bool grow);

static uint64_t
owners_hash(const cl_map *map)
{
	return sim__hash_bytes(map->epoch, map->owner, sizeof map->owner);
}

void
sim__check_epochs(sim_world *w, uint32_t node)
{
	sim_node *n = &w->nodes[node];
	cl_map *map = malloc(sizeof *map);
	SIM_ASSERT(map != NULL);
	cl_node_map(n->cl, map);
	if (map->epoch < n->max_epoch)
		sim__fail(w, "6 epochs only increase", "n%u went from epoch %"
			PRIu64 " to %" PRIu64, node + 1, n->max_epoch, map->epoch);
	if (map->epoch > n->max_epoch && map->epoch > 0) {
		n->max_epoch = map->epoch;
		uint64_t h = owners_hash(map);
		uint32_t count;
		sim_epoch_seen *seen = epochs_seen(w, &count, false);
		bool found = false;
		for (uint32_t i = 0; i < count; i++)
			if (seen[i].epoch == map->epoch) {
				found = true;
				if (seen[i].owners != h)
					sim__fail(w, "6 one owner per epoch",
						"n%u holds another map at epoch %"
						PRIu64, node + 1, map->epoch);
			}
		if (!found) {
			seen = epochs_seen(w, &count, true);
			seen[count - 1] = (sim_epoch_seen){map->epoch, h};
		}
	}
	free(map);
}

/* The run's table of epochs, as first seen on any node. */
static sim_epoch_seen *
epochs_seen(sim_world *w, uint32_t *count, bool grow)
{
	if (grow) {
		if (w->epochs_count == w->epochs_capacity) {
			uint32_t capacity = w->epochs_capacity
				? w->epochs_capacity * 2 : 16;
			sim_epoch_seen *items = realloc(w->epochs,
				capacity * sizeof *items);
			SIM_ASSERT(items != NULL);
			w->epochs = items;
			w->epochs_capacity = capacity;
		}
		w->epochs_count++;
	}
	*count = w->epochs_count;
	return w->epochs;
}

static const msgpack_object *
items_of(const msgpack_object *body, uint32_t *count)
{
	const msgpack_object *items = api_body_get(body, "items");
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY) {
		*count = 0;
		return NULL;
	}
	*count = items->via.array.size;
	return items->via.array.ptr;
}

void sim__check_feed_page(sim_world *w, uint32_t reader, uint64_t issued_ms,
	const msgpack_object *body);

void
sim__check_feed_page(sim_world *w, uint32_t reader, uint64_t issued_ms,
	const msgpack_object *body)
{
	sim_model *m = w->model;
	uint32_t count;
	const msgpack_object *items = items_of(body, &count);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t id = api_body_id(&items[i], "post_id");
		for (uint32_t k = 0; k < i; k++)
			if (api_body_id(&items[k], "post_id") == id)
				sim__fail(w, "3 feed", "user%u's feed page shows "
					"post %" PRIu64 " twice", reader, id);
		int64_t p = sim__model_post_find(m, id);
		if (p >= 0 && m->posts[p].state == SIM_POST_DELETED &&
			m->posts[p].deleted_ms < issued_ms)
			sim__fail(w, "3 feed", "user%u's feed shows post %" PRIu64
				" whose deletion was acknowledged at t=%" PRIu64
				" ms, before the read", reader, id,
				m->posts[p].deleted_ms);
	}
}

/* The wall clock every node's would be without skew. */
static uint64_t
true_wall(const sim_world *w)
{
	return SIM_EPOCH_MS + w->now_ms;
}

static uint64_t
skew_bound(const sim_world *w)
{
	return 2u * (uint64_t)w->knobs.clock_skew_ms + CHECK_STORY_SLACK_MS;
}

void sim__check_story_tray(sim_world *w, uint32_t viewer, uint32_t node,
	const msgpack_object *body);

void
sim__check_story_tray(sim_world *w, uint32_t viewer, uint32_t node,
	const msgpack_object *body)
{
	(void)node;
	const msgpack_object *trays = api_body_get(body, "trays");
	if (trays == NULL || trays->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t t = 0; t < trays->via.array.size; t++) {
		uint32_t count;
		const msgpack_object *items = items_of(&trays->via.array.ptr[t],
			&count);
		for (uint32_t i = 0; i < count; i++) {
			char when[64];
			if (!api_body_str(&items[i], "expires_at", when,
				    sizeof when))
				continue;
			uint64_t expires = sim__parse_time_ms(when);
			if (expires + skew_bound(w) < true_wall(w))
				sim__fail(w, "4 stories", "user%u sees story %"
					PRIu64 " %" PRIu64 " ms after it expired",
					viewer, api_body_id(&items[i], "story_id"),
					true_wall(w) - expires);
		}
	}
}

/* ---- reads at quiescence ------------------------------------------------------- */

typedef struct read_slot {
	bool done;
	int code;
	msgpack_sbuffer raw;
	msgpack_unpacked unpacked;
	const msgpack_object *body;
} read_slot;

static void
read_reset(read_slot *s)
{
	if (s->raw.data != NULL)
		msgpack_sbuffer_destroy(&s->raw);
	msgpack_unpacked_destroy(&s->unpacked);
	memset(s, 0, sizeof *s);
	msgpack_unpacked_init(&s->unpacked);
}

static void
read_callback(void *arg, const api_result *r)
{
	read_slot *s = arg;
	s->done = true;
	s->code = r->code;
	msgpack_sbuffer_init(&s->raw);
	if (r->body == NULL)
		return;
	msgpack_packer pk;
	msgpack_packer_init(&pk, &s->raw, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *r->body);
	size_t off = 0;
	if (msgpack_unpack_next(&s->unpacked, s->raw.data, s->raw.size, &off) ==
		MSGPACK_UNPACK_SUCCESS)
		s->body = &s->unpacked.data;
}

static bool
read_done(sim_world *w, void *arg)
{
	(void)w;
	return ((read_slot *)arg)->done;
}

/* A client for a read: the nodes in turn. NULL if none is up. */
static api_client *
reader_client(sim_world *w, uint32_t *node_out)
{
	for (uint32_t k = 0; k < w->nodes_count; k++) {
		uint32_t i = (w->check_next_node + k) % w->nodes_count;
		api_client *c = w->nodes[i].removed ? NULL
						    : sim__node_client(w, i);
		if (c != NULL) {
			w->check_next_node = i + 1;
			*node_out = i;
			return c;
		}
	}
	return NULL;
}

enum {
	READ_USER = 1,
	READ_FOLLOWERS,
	READ_FOLLOWING,
	READ_USER_POSTS,
	READ_POST,
	READ_COMMENTS,
	READ_FEED,
	READ_STORIES,
	READ_NOTIFICATIONS,
};

typedef struct read_args {
	int kind;
	uint64_t viewer;     /* ctx.user_id */
	const char *name;    /* username */
	uint64_t post_id;
	const char *cursor;  /* page cursor; NULL: first */
} read_args;

static int
issue_read(api_client *c, const read_args *a, read_slot *s)
{
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.user_id = a->viewer;
	api_page page = {.limit = API_PAGE_LIMIT_MAX, .cursor = a->cursor};
	switch (a->kind) {
	case READ_USER:
		return api_user_get(c, &ctx, a->name, read_callback, s);
	case READ_FOLLOWERS:
	case READ_FOLLOWING:
		return api_follow_list(c, &ctx, a->name,
			a->kind == READ_FOLLOWING, &page, read_callback, s);
	case READ_USER_POSTS:
		return api_user_posts(c, &ctx, a->name, &page, read_callback, s);
	case READ_POST:
		return api_post_get(c, &ctx, a->post_id, read_callback, s);
	case READ_COMMENTS:
		return api_comments(c, &ctx, a->post_id, &page, read_callback, s);
	case READ_FEED:
		return api_feed(c, &ctx, &page, read_callback, s);
	case READ_STORIES:
		return api_stories(c, &ctx, read_callback, s);
	case READ_NOTIFICATIONS:
		return api_notifications(c, &ctx, API_PAGE_LIMIT_MAX, 0,
			a->cursor, read_callback, s);
	default:
		SIM_ASSERT(!"unknown read");
		return API_EINVALID;
	}
}

/* Sends one read and runs the world until it is answered. Returns its
 * code; API_EUNAVAILABLE when no node could take it or no answer came. */
static int
read_call(sim_world *w, const read_args *a, read_slot *s)
{
	read_reset(s);
	uint32_t node;
	api_client *c = reader_client(w, &node);
	if (c == NULL)
		return API_EUNAVAILABLE;
	int rc = issue_read(c, a, s);
	if (rc != 0)
		return rc;
	sim__node_poke(w, node);
	sim__run_until(w, w->now_ms + CHECK_READ_MS_MAX, read_done, s);
	int code = s->done ? s->code : API_EUNAVAILABLE;
	if (code != API_OK && code != API_ENOTFOUND && w->log != NULL)
		sim__log(w, "read %d on n%u (viewer %" PRIu64 ", name %s, post %"
			PRIu64 ") failed: %s%s", a->kind, node + 1, a->viewer,
			a->name != NULL ? a->name : "-", a->post_id,
			api_strerror(code), s->done ? "" : " (no answer)");
	return code;
}

/* Reads every page of a listing, calling item(arg, object) for each.
 * Returns the last code (API_OK when all pages were read). */
typedef void (*item_callback)(void *arg, const msgpack_object *item);

static int
read_all(sim_world *w, read_args a, item_callback item, void *arg)
{
	read_slot s = {0};
	msgpack_unpacked_init(&s.unpacked);
	char cursor[128];
	int rc = API_OK;
	for (uint32_t page = 0; page < CHECK_PAGES_MAX; page++) {
		rc = read_call(w, &a, &s);
		if (rc != API_OK)
			break;
		uint32_t count;
		const msgpack_object *items = items_of(s.body, &count);
		for (uint32_t i = 0; i < count; i++)
			item(arg, &items[i]);
		if (!api_body_str(s.body, "next_cursor", cursor, sizeof cursor))
			break;
		a.cursor = cursor;
		if (page + 1 == CHECK_PAGES_MAX)
			rc = API_EINTERNAL;
	}
	read_reset(&s);
	msgpack_unpacked_destroy(&s.unpacked);
	return rc;
}

/* ---- what the system answers (a view) ----------------------------------- */

typedef struct id_list {
	uint64_t *ids;
	uint32_t count;
	uint32_t capacity;
} id_list;

static void
id_push(id_list *l, uint64_t id)
{
	if (l->count == l->capacity) {
		uint32_t capacity = l->capacity ? l->capacity * 2 : 8;
		uint64_t *ids = realloc(l->ids, capacity * sizeof *ids);
		SIM_ASSERT(ids != NULL);
		l->ids = ids;
		l->capacity = capacity;
	}
	l->ids[l->count++] = id;
}

static bool
id_has(const id_list *l, uint64_t id)
{
	for (uint32_t i = 0; i < l->count; i++)
		if (l->ids[i] == id)
			return true;
	return false;
}

static int
compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void
id_sort(id_list *l)
{
	if (l->count > 1)
		qsort(l->ids, l->count, sizeof *l->ids, compare_u64);
}

typedef struct user_view {
	int code; /* API_OK when every read of it succeeded */
	uint32_t followers_count;
	uint32_t following_count;
	uint32_t posts_count;
	id_list followers; /* user ids */
	id_list following;
	id_list posts;     /* post ids */
} user_view;

typedef struct post_view {
	int code;          /* of the get: API_OK, API_ENOTFOUND, ... */
	bool complete;     /* every read of it succeeded */
	uint64_t author;
	uint32_t likes;
	uint32_t comments;
	id_list likers;    /* model likers whose liked_by_me is true */
	id_list comment_ids;
} post_view;

typedef struct view {
	user_view *users;
	post_view *posts;
	uint32_t users_count;
	uint32_t posts_count;
	uint32_t reads_failed;
} view;

static void
view_free(view *v)
{
	for (uint32_t i = 0; i < v->users_count; i++) {
		free(v->users[i].followers.ids);
		free(v->users[i].following.ids);
		free(v->users[i].posts.ids);
	}
	for (uint32_t i = 0; i < v->posts_count; i++) {
		free(v->posts[i].likers.ids);
		free(v->posts[i].comment_ids.ids);
	}
	free(v->users);
	free(v->posts);
	memset(v, 0, sizeof *v);
}

static void
collect_user_id(void *arg, const msgpack_object *item)
{
	id_push(arg, api_body_id(item, "user_id"));
}

static void
collect_post_id(void *arg, const msgpack_object *item)
{
	id_push(arg, api_body_id(item, "post_id"));
}

static void
collect_comment_id(void *arg, const msgpack_object *item)
{
	id_push(arg, api_body_id(item, "comment_id"));
}

static int
worst(int a, int b)
{
	return a != API_OK ? a : b;
}

static void
collect_user(sim_world *w, uint32_t index, user_view *u)
{
	const sim_user *mu = &w->model->users[index];
	read_slot s = {0};
	msgpack_unpacked_init(&s.unpacked);
	read_args a = {.kind = READ_USER, .name = mu->name};
	u->code = read_call(w, &a, &s);
	if (u->code == API_OK) {
		if (api_body_id(s.body, "user_id") != mu->id)
			sim__fail(w, "1 acknowledged write", "%s answers with "
				"user id %" PRIu64 ", signed up as %" PRIu64,
				mu->name, api_body_id(s.body, "user_id"), mu->id);
		u->followers_count = (uint32_t)api_body_int(s.body,
			"followers_count", -1);
		u->following_count = (uint32_t)api_body_int(s.body,
			"following_count", -1);
		u->posts_count = (uint32_t)api_body_int(s.body, "posts_count",
			-1);
	}
	read_reset(&s);
	msgpack_unpacked_destroy(&s.unpacked);
	a.kind = READ_FOLLOWERS;
	u->code = worst(u->code, read_all(w, a, collect_user_id,
		&u->followers));
	a.kind = READ_FOLLOWING;
	u->code = worst(u->code, read_all(w, a, collect_user_id,
		&u->following));
	a.kind = READ_USER_POSTS;
	u->code = worst(u->code, read_all(w, a, collect_post_id, &u->posts));
	id_sort(&u->followers);
	id_sort(&u->following);
	id_sort(&u->posts);
}

static void
collect_post(sim_world *w, uint32_t index, post_view *p)
{
	sim_model *m = w->model;
	const sim_post *mp = &m->posts[index];
	read_slot s = {0};
	msgpack_unpacked_init(&s.unpacked);
	read_args a = {.kind = READ_POST, .post_id = mp->id};
	p->code = read_call(w, &a, &s);
	p->complete = p->code == API_OK || p->code == API_ENOTFOUND;
	if (p->code == API_OK) {
		p->author = api_body_id(api_body_get(s.body, "user"), "user_id");
		p->likes = (uint32_t)api_body_int(s.body, "likes_count", -1);
		p->comments = (uint32_t)api_body_int(s.body, "comments_count",
			-1);
		for (uint32_t i = 0; i < mp->likers.count; i++) {
			uint32_t liker = mp->likers.items[i];
			a.viewer = m->users[liker].id;
			int rc = read_call(w, &a, &s);
			if (rc != API_OK) {
				p->complete = false;
				continue;
			}
			if (api_body_bool(s.body, "liked_by_me", false))
				id_push(&p->likers, a.viewer);
		}
		a.viewer = 0;
		a.kind = READ_COMMENTS;
		if (read_all(w, a, collect_comment_id, &p->comment_ids) != API_OK)
			p->complete = false;
		id_sort(&p->likers);
		id_sort(&p->comment_ids);
	}
	read_reset(&s);
	msgpack_unpacked_destroy(&s.unpacked);
}

static void
collect(sim_world *w, view *v)
{
	sim_model *m = w->model;
	memset(v, 0, sizeof *v);
	v->users_count = m->users_count;
	v->posts_count = m->posts_count;
	v->users = calloc(v->users_count, sizeof *v->users);
	v->posts = calloc(v->posts_count ? v->posts_count : 1, sizeof *v->posts);
	SIM_ASSERT(v->users != NULL && v->posts != NULL);
	for (uint32_t i = 0; i < v->users_count && !w->failed; i++) {
		collect_user(w, i, &v->users[i]);
		v->reads_failed += v->users[i].code != API_OK;
	}
	for (uint32_t i = 0; i < v->posts_count && !w->failed; i++) {
		collect_post(w, i, &v->posts[i]);
		v->reads_failed += !v->posts[i].complete;
	}
}

/* ---- invariants 1 and 2 over a view ------------------------------------------ */

static int64_t
user_index(const sim_world *w, const sim_map *ids, uint64_t id)
{
	(void)w;
	uint32_t index;
	return sim__map_get(ids, id, &index) ? (int64_t)index : -1;
}

static void
verify_follows(sim_world *w, const view *v, const sim_map *ids)
{
	sim_model *m = w->model;
	for (uint32_t i = 0; i < v->users_count && !w->failed; i++) {
		const user_view *u = &v->users[i];
		if (u->code != API_OK)
			continue;
		if (u->followers_count != u->followers.count ||
			u->following_count != u->following.count) {
			/* name a certain followee the listing left out */
			const char *left_out = "none of the model's";
			const sim_u32s *f = &m->users[i].followees;
			for (uint32_t k = 0; k < f->count; k++) {
				const sim_flag *flag = sim__model_flag_find(m,
					&m->follows, (uint64_t)i << 32 | f->items[k]);
				if (flag != NULL && flag->value && !flag->uncertain &&
					!id_has(&u->following, m->users[f->items[k]].id))
					left_out = m->users[f->items[k]].name;
			}
			sim__fail(w, "2 counts", "%s: followers_count %u with %u "
				"listed, following_count %u with %u listed (left "
				"out: %s)", m->users[i].name, u->followers_count,
				u->followers.count, u->following_count,
				u->following.count, left_out);
		}
		/* symmetry: i follows x  <=>  x lists i as a follower */
		for (uint32_t k = 0; k < u->following.count && !w->failed; k++) {
			int64_t x = user_index(w, ids, u->following.ids[k]);
			if (x < 0) {
				sim__fail(w, "2 symmetry", "%s follows unknown "
					"user id %" PRIu64, m->users[i].name,
					u->following.ids[k]);
				break;
			}
			const user_view *t = &v->users[x];
			if (t->code == API_OK &&
				!id_has(&t->followers, m->users[i].id))
				sim__fail(w, "2 symmetry", "%s follows %s, who "
					"does not list it as a follower",
					m->users[i].name, m->users[x].name);
		}
		for (uint32_t k = 0; k < u->followers.count && !w->failed; k++) {
			int64_t x = user_index(w, ids, u->followers.ids[k]);
			const user_view *t = x >= 0 ? &v->users[x] : NULL;
			if (x < 0 || (t->code == API_OK &&
					     !id_has(&t->following, m->users[i].id)))
				sim__fail(w, "2 symmetry", "%s lists follower id %"
					PRIu64 " who does not follow it",
					m->users[i].name, u->followers.ids[k]);
		}
		/* every certain follow of the model */
		const sim_u32s *f = &m->users[i].followees;
		for (uint32_t k = 0; k < f->count && !w->failed; k++) {
			uint32_t t = f->items[k];
			const sim_flag *flag = sim__model_flag_find(m, &m->follows,
				(uint64_t)i << 32 | t);
			if (flag == NULL || flag->uncertain)
				continue;
			bool listed = id_has(&u->following, m->users[t].id);
			if (listed != (flag->value != 0))
				sim__fail(w, "1 acknowledged write", "%s %s %s "
					"(acknowledged at t=%" PRIu64 " ms) but "
					"the following list says otherwise",
					m->users[i].name,
					flag->value ? "follows" : "unfollowed",
					m->users[t].name, flag->acked_ms);
		}
	}
}

static void
verify_own_posts(sim_world *w, const view *v)
{
	sim_model *m = w->model;
	for (uint32_t i = 0; i < v->users_count && !w->failed; i++) {
		const user_view *u = &v->users[i];
		if (u->code != API_OK)
			continue;
		const sim_user *mu = &m->users[i];
		uint32_t unknown = 0;
		uint64_t unknown_id = 0;
		for (uint32_t k = 0; k < u->posts.count; k++) {
			int64_t p = sim__model_post_find(m, u->posts.ids[k]);
			if (p < 0) {
				unknown++;
				unknown_id = u->posts.ids[k];
				continue;
			}
			if (m->posts[p].author != i)
				sim__fail(w, "1 acknowledged write", "%s lists "
					"post %" PRIu64 " of another author",
					mu->name, u->posts.ids[k]);
			if (m->posts[p].state == SIM_POST_DELETED)
				sim__fail(w, "1 acknowledged write", "%s still "
					"lists post %" PRIu64 ", deleted at t=%"
					PRIu64 " ms", mu->name, u->posts.ids[k],
					m->posts[p].deleted_ms);
		}
		if (unknown > mu->uncertain_posts)
			sim__fail(w, "1 acknowledged write", "%s lists %u posts "
				"never acknowledged (e.g. %" PRIu64 ", created at "
				"t=%" PRId64 " ms), but only %u creations had an "
				"unknown outcome (%u acknowledged)", mu->name,
				unknown, unknown_id,
				(int64_t)((unknown_id >> 23) + 1704067200000ull -
					SIM_EPOCH_MS),
				mu->uncertain_posts, mu->posts.count);
		for (uint32_t k = 0; k < mu->posts.count && !w->failed; k++) {
			const sim_post *p = &m->posts[mu->posts.items[k]];
			if (p->state == SIM_POST_LIVE && !id_has(&u->posts, p->id))
				sim__fail(w, "1 acknowledged write", "post %"
					PRIu64 " by %s (acknowledged at t=%" PRIu64
					" ms) is missing from its listing", p->id,
					mu->name, p->acked_ms);
		}
		if (u->posts_count != u->posts.count)
			sim__fail(w, "2 counts", "%s: posts_count %u with %u "
				"listed", mu->name, u->posts_count, u->posts.count);
	}
}

static void
verify_posts(sim_world *w, const view *v)
{
	sim_model *m = w->model;
	for (uint32_t i = 0; i < v->posts_count && !w->failed; i++) {
		const post_view *p = &v->posts[i];
		const sim_post *mp = &m->posts[i];
		if (!p->complete)
			continue;
		if (mp->state == SIM_POST_LIVE && p->code != API_OK) {
			sim__fail(w, "1 acknowledged write", "post %" PRIu64
				" by %s (acknowledged at t=%" PRIu64 " ms) "
				"answers %s", mp->id, m->users[mp->author].name,
				mp->acked_ms, api_strerror(p->code));
			return;
		}
		if (mp->state == SIM_POST_DELETED && p->code != API_ENOTFOUND) {
			sim__fail(w, "1 acknowledged write", "post %" PRIu64
				" deleted at t=%" PRIu64 " ms still answers",
				mp->id, mp->deleted_ms);
			return;
		}
		if (p->code != API_OK)
			continue;
		if (p->author != m->users[mp->author].id)
			sim__fail(w, "1 acknowledged write", "post %" PRIu64
				" names author %" PRIu64 ", created by %s", mp->id,
				p->author, m->users[mp->author].name);
		if (p->likes != p->likers.count)
			sim__fail(w, "2 counts", "post %" PRIu64 ": likes_count %u"
				" but %u users see liked_by_me", mp->id, p->likes,
				p->likers.count);
		for (uint32_t k = 0; k < mp->likers.count && !w->failed; k++) {
			uint32_t liker = mp->likers.items[k];
			const sim_flag *f = sim__model_flag_find(m, &m->likes,
				(uint64_t)i << 32 | liker);
			if (f == NULL || f->uncertain)
				continue;
			bool liked = id_has(&p->likers, m->users[liker].id);
			if (liked != (f->value != 0))
				sim__fail(w, "1 acknowledged write", "%s %s post %"
					PRIu64 " (acknowledged at t=%" PRIu64 " ms)"
					" but liked_by_me is %s",
					m->users[liker].name,
					f->value ? "liked" : "unliked", mp->id,
					f->acked_ms, liked ? "true" : "false");
		}
		if (p->comments != p->comment_ids.count)
			sim__fail(w, "2 counts", "post %" PRIu64 ": comments_count"
				" %u but %u listed", mp->id, p->comments,
				p->comment_ids.count);
		uint32_t unknown = 0;
		for (uint32_t k = 0; k < p->comment_ids.count; k++) {
			sim_comment *c = sim__model_comment_find(
				&m->posts[i], p->comment_ids.ids[k]);
			if (c == NULL)
				unknown++;
			else if (c->state == SIM_POST_DELETED)
				sim__fail(w, "1 acknowledged write", "comment %"
					PRIu64 " on post %" PRIu64 " was deleted "
					"but is listed", c->id, mp->id);
		}
		if (unknown > mp->uncertain_comments)
			sim__fail(w, "1 acknowledged write", "post %" PRIu64
				" lists %u comments never acknowledged (%u had "
				"an unknown outcome)", mp->id, unknown,
				mp->uncertain_comments);
		for (uint32_t k = 0; k < mp->comments_count && !w->failed; k++) {
			const sim_comment *c = &mp->comments[k];
			if (c->state == SIM_POST_LIVE &&
				!id_has(&p->comment_ids, c->id))
				sim__fail(w, "1 acknowledged write", "comment %"
					PRIu64 " on post %" PRIu64 " is missing",
					c->id, mp->id);
		}
	}
}

/* ---- invariant 3: feeds, and 4: story trays ------------------------------------ */

static void
verify_feed(sim_world *w, uint32_t reader, const id_list *existing)
{
	sim_model *m = w->model;
	const sim_user *r = &m->users[reader];
	id_list feed = {0};
	read_args a = {.kind = READ_FEED, .viewer = r->id};
	int rc = read_all(w, a, collect_post_id, &feed);
	if (rc != API_OK) {
		free(feed.ids);
		if (w->opts.mode == SIM_MODE_LIVENESS)
			sim__fail(w, "liveness", "%s's feed unreadable after "
				"healing: %s", r->name, api_strerror(rc));
		return;
	}
	id_list sorted = feed;
	sorted.ids = malloc((feed.count ? feed.count : 1) * sizeof *sorted.ids);
	SIM_ASSERT(sorted.ids != NULL);
	if (feed.count > 0)
		memcpy(sorted.ids, feed.ids, feed.count * sizeof *feed.ids);
	id_sort(&sorted);
	for (uint32_t i = 1; i < sorted.count && !w->failed; i++)
		if (sorted.ids[i] == sorted.ids[i - 1])
			sim__fail(w, "3 feed", "%s's feed holds post %" PRIu64
				" twice", r->name, sorted.ids[i]);
	for (uint32_t i = 0; i < feed.count && !w->failed; i++) {
		int64_t p = sim__model_post_find(m, feed.ids[i]);
		if (p >= 0 && m->posts[p].state == SIM_POST_DELETED)
			sim__fail(w, "3 feed", "%s's feed holds post %" PRIu64
				", deleted at t=%" PRIu64 " ms", r->name,
				feed.ids[i], m->posts[p].deleted_ms);
		else if (p < 0 && !id_has(existing, feed.ids[i]))
			sim__fail(w, "3 feed", "%s's feed holds post %" PRIu64
				", which no author lists", r->name, feed.ids[i]);
	}
	/* completeness: live posts of followees sent after the followee
	 * showed the follow */
	uint32_t expected = 0, missing = 0;
	uint64_t first_missing = 0;
	uint32_t first_author = 0;
	for (uint32_t k = 0; k < r->followees.count; k++) {
		uint32_t t = r->followees.items[k];
		const sim_flag *f = sim__model_flag_find(m, &m->follows,
			(uint64_t)reader << 32 | t);
		if (f == NULL || f->uncertain || !f->value || f->visible_ms == 0)
			continue;
		const sim_u32s *posts = &m->users[t].posts;
		for (uint32_t j = 0; j < posts->count; j++) {
			const sim_post *p = &m->posts[posts->items[j]];
			if (p->state != SIM_POST_LIVE || p->issued_ms <= f->visible_ms)
				continue;
			expected++;
			if (!id_has(&sorted, p->id) && missing++ == 0) {
				first_missing = p->id;
				first_author = t;
			}
		}
	}
	if (missing > 0 && expected * 100u <=
		w->knobs.timeline_entries * CHECK_FEED_RING_PERCENT)
		sim__fail(w, "3 feed", "%s's feed misses %u of %u posts it must "
			"hold, e.g. post %" PRIu64 " by %s", r->name, missing,
			expected, first_missing, m->users[first_author].name);
	free(sorted.ids);
	free(feed.ids);
}

typedef struct tray_pass {
	sim_world *w;
	uint32_t viewer;
	id_list seen;
} tray_pass;

static void
verify_stories(sim_world *w, uint32_t viewer)
{
	sim_model *m = w->model;
	const sim_user *r = &m->users[viewer];
	read_slot s = {0};
	msgpack_unpacked_init(&s.unpacked);
	read_args a = {.kind = READ_STORIES, .viewer = r->id};
	int rc = read_call(w, &a, &s);
	if (rc != API_OK) {
		if (w->opts.mode == SIM_MODE_LIVENESS)
			sim__fail(w, "liveness", "%s's stories unreadable after "
				"healing: %s", r->name, api_strerror(rc));
		goto done;
	}
	sim__check_story_tray(w, viewer, 0, s.body);
	id_list seen = {0};
	const msgpack_object *trays = api_body_get(s.body, "trays");
	for (uint32_t t = 0; trays != NULL && trays->type == MSGPACK_OBJECT_ARRAY &&
		t < trays->via.array.size; t++) {
		uint32_t count;
		const msgpack_object *items = items_of(&trays->via.array.ptr[t],
			&count);
		for (uint32_t i = 0; i < count; i++)
			id_push(&seen, api_body_id(&items[i], "story_id"));
	}
	for (uint32_t k = 0; k < r->followees.count && !w->failed; k++) {
		uint32_t t = r->followees.items[k];
		const sim_flag *f = sim__model_flag_find(m, &m->follows,
			(uint64_t)viewer << 32 | t);
		if (f == NULL || f->uncertain || !f->value || f->visible_ms == 0)
			continue;
		const sim_u32s *own = &m->users[t].stories;
		for (uint32_t j = 0; j < own->count; j++) {
			const sim_story *st = &m->stories[own->items[j]];
			bool live = st->expires_at_ms > true_wall(w) + skew_bound(w);
			if (live && st->acked_ms > f->visible_ms &&
				!id_has(&seen, st->id))
				sim__fail(w, "4 stories", "%s does not see story %"
					PRIu64 " of %s, live until %" PRIu64 " ms "
					"from now", r->name, st->id,
					m->users[t].name,
					st->expires_at_ms - true_wall(w));
		}
	}
	free(seen.ids);
done:
	read_reset(&s);
	msgpack_unpacked_destroy(&s.unpacked);
}

/* ---- invariant 5: the notification inbox ------------------------------------ */

typedef struct note {
	uint64_t seq;
	uint32_t type; /* 'l' like, 'c' comment, 'f' follow, 'm' mention */
	uint64_t by;
	uint64_t post;
	uint64_t comment;
} note;

typedef struct notes {
	note *items;
	uint32_t count;
	uint32_t capacity;
} notes;

static void
collect_note(void *arg, const msgpack_object *item)
{
	notes *n = arg;
	if (n->count == n->capacity) {
		uint32_t capacity = n->capacity ? n->capacity * 2 : 64;
		note *items = realloc(n->items, capacity * sizeof *items);
		SIM_ASSERT(items != NULL);
		n->items = items;
		n->capacity = capacity;
	}
	char type[16] = "";
	api_body_str(item, "type", type, sizeof type);
	n->items[n->count++] = (note){
		.seq = (uint64_t)api_body_int(item, "seq", 0),
		.type = (uint32_t)(unsigned char)type[0],
		.by = api_body_id(api_body_get(item, "by_user"), "user_id"),
		.post = api_body_id(item, "post_id"),
		.comment = api_body_id(item, "comment_id"),
	};
}

static uint32_t
notes_find(const notes *n, uint32_t type, uint64_t by, uint64_t post,
	uint64_t comment)
{
	uint32_t found = 0;
	for (uint32_t i = 0; i < n->count; i++)
		found += n->items[i].type == type && n->items[i].by == by &&
			n->items[i].post == post && n->items[i].comment == comment;
	return found;
}

static int
compare_seq(const void *a, const void *b)
{
	uint64_t x = ((const note *)a)->seq, y = ((const note *)b)->seq;
	return x < y ? -1 : x > y;
}

/* What the model says u must find (*must), and what it may find
 * (*may_*), in its inbox; checks each expected entry is there once. */
static void
verify_inbox_expected(sim_world *w, uint32_t u, const notes *n,
	uint32_t *must)
{
	sim_model *m = w->model;
	const sim_user *owner = &m->users[u];
	*must = 0;
	/* likes and comments on its posts */
	for (uint32_t k = 0; k < owner->posts.count && !w->failed; k++) {
		uint32_t pi = owner->posts.items[k];
		const sim_post *p = &m->posts[pi];
		for (uint32_t j = 0; j < p->likers.count && !w->failed; j++) {
			uint32_t v = p->likers.items[j];
			const sim_flag *f = sim__model_flag_find(m, &m->likes,
				(uint64_t)pi << 32 | v);
			if (v == u || f == NULL)
				continue;
			uint32_t seen = notes_find(n, 'l', m->users[v].id, p->id, 0);
			if (f->ever_on) {
				(*must)++;
				if (seen == 0)
					sim__fail(w, "5 notifications", "%s has no "
						"notification of %s's like of post %"
						PRIu64, owner->name, m->users[v].name,
						p->id);
			} else if (!f->maybe_on && seen > 0) {
				sim__fail(w, "5 notifications", "%s is told %s "
					"liked post %" PRIu64 ", which never "
					"happened", owner->name, m->users[v].name,
					p->id);
			}
		}
		for (uint32_t j = 0; j < p->comments_count && !w->failed; j++) {
			const sim_comment *c = &p->comments[j];
			if (c->author == u)
				continue;
			(*must)++;
			if (notes_find(n, 'c', m->users[c->author].id, p->id,
				    c->id) == 0)
				sim__fail(w, "5 notifications", "%s has no "
					"notification of comment %" PRIu64 " by %s",
					owner->name, c->id, m->users[c->author].name);
		}
	}
	/* follows of it */
	for (uint32_t v = 0; v < m->users_count && !w->failed; v++) {
		const sim_flag *f = sim__model_flag_find(m, &m->follows,
			(uint64_t)v << 32 | u);
		if (v == u || f == NULL)
			continue;
		uint32_t seen = notes_find(n, 'f', m->users[v].id, 0, 0);
		if (f->ever_on) {
			(*must)++;
			if (seen == 0)
				sim__fail(w, "5 notifications", "%s has no "
					"notification of %s's follow", owner->name,
					m->users[v].name);
		} else if (!f->maybe_on && seen > 0) {
			sim__fail(w, "5 notifications", "%s is told %s follows "
				"it, which never happened", owner->name,
				m->users[v].name);
		}
	}
}

static void
verify_inbox(sim_world *w, uint32_t u)
{
	sim_model *m = w->model;
	notes n = {0};
	read_args a = {.kind = READ_NOTIFICATIONS, .viewer = m->users[u].id};
	int rc = read_all(w, a, collect_note, &n);
	if (rc != API_OK) {
		if (w->opts.mode == SIM_MODE_LIVENESS)
			sim__fail(w, "liveness", "%s's notifications unreadable "
				"after healing: %s", m->users[u].name,
				api_strerror(rc));
		free(n.items);
		return;
	}
	/* once each, and numbered without gaps (oldest dropped past the
	 * ring's size only) */
	for (uint32_t i = 0; i < n.count && !w->failed; i++)
		if (notes_find(&n, n.items[i].type, n.items[i].by,
			    n.items[i].post, n.items[i].comment) > 1)
			sim__fail(w, "5 notifications", "%s's inbox holds a %c "
				"notification by user id %" PRIu64 " (post %" PRIu64
				") twice", m->users[u].name, (char)n.items[i].type,
				n.items[i].by, n.items[i].post);
	if (n.count > 1)
		qsort(n.items, n.count, sizeof *n.items, compare_seq);
	for (uint32_t i = 1; i < n.count && !w->failed; i++)
		if (n.items[i].seq != n.items[i - 1].seq + 1)
			sim__fail(w, "5 notifications", "%s's inbox goes from seq "
				"%" PRIu64 " to %" PRIu64, m->users[u].name,
				n.items[i - 1].seq, n.items[i].seq);
	uint32_t must = 0;
	if (!w->failed && (n.count == 0 || n.items[0].seq == 1) &&
		n.count < CHECK_INBOX_ENTRIES_MAX)
		verify_inbox_expected(w, u, &n, &must);
	free(n.items);
}

/* ---- invariant 7: restart everything, twice ----------------------------------- */

static bool
lists_equal(const id_list *a, const id_list *b)
{
	return a->count == b->count &&
		(a->count == 0 ||
			memcmp(a->ids, b->ids, a->count * sizeof *a->ids) == 0);
}

static void
compare_views(sim_world *w, const view *a, const view *b, int round)
{
	sim_model *m = w->model;
	for (uint32_t i = 0; i < a->users_count && !w->failed; i++) {
		const user_view *x = &a->users[i], *y = &b->users[i];
		if (x->code != API_OK || y->code != API_OK)
			continue;
		if (x->followers_count != y->followers_count ||
			x->following_count != y->following_count ||
			x->posts_count != y->posts_count ||
			!lists_equal(&x->followers, &y->followers) ||
			!lists_equal(&x->following, &y->following) ||
			!lists_equal(&x->posts, &y->posts))
			sim__fail(w, "7 recovery", "after restart %d %s differs: "
				"followers %u->%u following %u->%u posts %u->%u",
				round, m->users[i].name, x->followers.count,
				y->followers.count, x->following.count,
				y->following.count, x->posts.count, y->posts.count);
	}
	for (uint32_t i = 0; i < a->posts_count && !w->failed; i++) {
		const post_view *x = &a->posts[i], *y = &b->posts[i];
		if (!x->complete || !y->complete)
			continue;
		if (x->code != y->code || x->likes != y->likes ||
			x->comments != y->comments ||
			!lists_equal(&x->likers, &y->likers) ||
			!lists_equal(&x->comment_ids, &y->comment_ids))
			sim__fail(w, "7 recovery", "after restart %d post %" PRIu64
				" differs: code %d->%d likes %u->%u comments %u->%u",
				round, m->posts[i].id, x->code, y->code, x->likes,
				y->likes, x->comments, y->comments);
	}
}

static void
verify_recovery(sim_world *w, const view *before)
{
	for (int round = 1; round <= 2 && !w->failed; round++) {
		for (uint32_t i = 0; i < w->nodes_count; i++)
			if (w->nodes[i].up)
				sim__node_crash(w, i, false);
		for (uint32_t i = 0; i < w->nodes_count; i++)
			if (w->nodes[i].exists && !w->nodes[i].removed)
				sim__node_start(w, i, NULL);
		if (!sim__settle(w, RUN_RECOVERY_SETTLE_MS)) {
			char why[700];
			sim__why_unsettled(w, why, sizeof why);
			if (!w->failed)
				sim__fail(w, "7 recovery", "the cluster did not "
					"settle after restart %d: %s", round, why);
			return;
		}
		view after;
		collect(w, &after);
		compare_views(w, before, &after, round);
		view_free(&after);
	}
}

/* ---- at quiescence ----------------------------------------------------------------- */

int
sim__check_quiescent(sim_world *w)
{
	sim_model *m = w->model;
	sim_map ids = {0};
	for (uint32_t i = 0; i < m->users_count; i++)
		sim__map_put(&ids, m->users[i].id, i);
	view v;
	collect(w, &v);
	sim__log(w, "quiescent view: %u users, %u posts, %u reads failed",
		v.users_count, v.posts_count, v.reads_failed);
	if (v.reads_failed > 0 && w->opts.mode == SIM_MODE_LIVENESS)
		sim__fail(w, "liveness", "%u reads failed after healing",
			v.reads_failed);
	if (!w->failed)
		verify_follows(w, &v, &ids);
	if (!w->failed)
		verify_own_posts(w, &v);
	if (!w->failed)
		verify_posts(w, &v);
	id_list existing = {0};
	for (uint32_t i = 0; i < v.users_count; i++)
		for (uint32_t k = 0; k < v.users[i].posts.count; k++)
			id_push(&existing, v.users[i].posts.ids[k]);
	id_sort(&existing);
	uint32_t readers = m->users_count < CHECK_FEED_READERS_MAX
		? m->users_count : CHECK_FEED_READERS_MAX;
	sim_rng *r = sim__rng(w, SIM_STREAM_CHECK);
	for (uint32_t k = 0; k < readers && !w->failed; k++) {
		uint32_t reader = readers == m->users_count
			? k : (uint32_t)sim__rng_below(r, m->users_count);
		verify_feed(w, reader, &existing);
		if (api_stories != NULL && !w->failed)
			verify_stories(w, reader);
		if (api_notifications != NULL && !w->failed)
			verify_inbox(w, reader);
	}
	free(existing.ids);
	if (!w->failed && w->opts.check_recovery)
		verify_recovery(w, &v);
	view_free(&v);
	sim__map_free(&ids);
	return w->failed ? -1 : 0;
}
