/*
 * actors/engage_calls.c — the api.h calls of the engagement (stories,
 * notifications, search) and the client-side helpers calls.c uses for
 * keyed writes (idempotency) and @mentions, coordinated on the caller's
 * thread like calls.c and feed.c.
 *
 * Reads that span actors gather their answers here: story trays ask the
 * viewer's actor which authors to show, then every one of them for its
 * visible stories; notifications and search results are hydrated with
 * the users and posts they name, in parallel.
 *
 * Invariants: every call that returned 0 completes exactly once; a keyed
 * write's answer is journaled by the acting user's actor before the
 * caller hears it.
 *
 * What it deliberately does not do: cache anything between calls, or
 * key signups (no acting user to keep the key: a retried signup answers
 * 409 for the name it took).
 */
#include "actors/engage.h"
#include "actors/user_internal.h"

#include <stdio.h>
#include <stdlib.h>

static rt_addr
user_addr(uint64_t id)
{
	return rt_addr_make(ACTORS_KIND_USER, id);
}

static bool
signed_in(const api_ctx *ctx)
{
	return ctx != NULL && ctx->user_id != 0;
}

/* Copies a reply's body (NULL when empty or out of memory). */
static unsigned char *
body_copy(const void *body, size_t length)
{
	if (length == 0)
		return NULL;
	unsigned char *copy = malloc(length);
	if (copy != NULL)
		memcpy(copy, body, length);
	return copy;
}

/* ---- gathering the answers of many asks ----------------------------------- */

typedef struct gather_slot {
	int code;
	unsigned char *body; /* owned copy of the answer's body */
	size_t length;
} gather_slot;

typedef struct gather gather;
typedef void (*gather_done_fn)(api_client *c, gather *g);

/* The first member of each call's own state. */
struct gather {
	api_callback cb;
	void *arg;
	gather_done_fn done;
	uint32_t count;
	uint32_t outstanding;
	gather_slot *slots;
};

typedef struct gather_op {
	gather *g;
	uint32_t index;
} gather_op;

static int
gather_init(gather *g, api_callback cb, void *arg, gather_done_fn done,
	uint32_t count)
{
	g->cb = cb;
	g->arg = arg;
	g->done = done;
	g->count = count;
	g->outstanding = count + 1; /* +1 until every ask is out */
	g->slots = calloc(count ? count : 1, sizeof *g->slots);
	return g->slots != NULL ? 0 : API_EUNAVAILABLE;
}

static void
gather_free(gather *g)
{
	for (uint32_t i = 0; i < g->count && g->slots != NULL; i++)
		free(g->slots[i].body);
	free(g->slots);
	g->slots = NULL;
}

static void
gather_step(api_client *c, void *opaque, const rt_message *m)
{
	gather_op *op = opaque;
	gather *g = op->g;
	gather_slot *slot = &g->slots[op->index];
	free(op);
	const char *detail;
	size_t detail_length;
	const void *body;
	actors__reply_parse(m, &slot->code, &detail, &detail_length, &body,
		&slot->length);
	if (slot->code == API_OK)
		slot->body = body_copy(body, slot->length);
	if (slot->body == NULL)
		slot->length = 0;
	ACTORS_ASSERT(g->outstanding > 0);
	if (--g->outstanding == 0)
		g->done(c, g);
}

static void
gather_ask(api_client *c, gather *g, uint32_t index, rt_addr to,
	uint32_t type, const void *payload, size_t length)
{
	ACTORS_ASSERT(index < g->count);
	gather_op *op = malloc(sizeof *op);
	int rc = API_EUNAVAILABLE;
	if (op != NULL) {
		*op = (gather_op){g, index};
		rc = actors__ask(c, to, type, payload, length, gather_step, op);
	}
	if (rc != 0) {
		free(op);
		g->slots[index].code = rc;
		g->outstanding--;
	}
}

/* Slot index needs no ask (its answer is at hand): it counts as in. */
static void
gather_skip(gather *g, uint32_t index)
{
	ACTORS_ASSERT(index < g->count);
	ACTORS_ASSERT(g->outstanding > 1);
	g->slots[index].code = API_OK;
	g->outstanding--;
}

/* After the last gather_ask: runs done now if every answer is in. */
static void
gather_end(api_client *c, gather *g)
{
	ACTORS_ASSERT(g->outstanding > 0);
	if (--g->outstanding == 0)
		g->done(c, g);
}

/* Completes (cb, arg) with a packed body. */
static void
complete_body(api_client *c, api_callback cb, void *arg, actors__body *b)
{
	actors__complete(c, cb, arg, API_OK, NULL, 0, b->buffer.data,
		b->buffer.size);
}

static void
complete_code(api_client *c, api_callback cb, void *arg, int code,
	const char *detail)
{
	actors__complete(c, cb, arg, code, detail,
		detail != NULL ? strlen(detail) : 0, NULL, 0);
}

/* ---- stories ---------------------------------------------------------------- */

int
api_story_post(api_client *c, const api_ctx *ctx, uint64_t media_id,
	uint32_t expires_in_s, api_callback cb, void *arg);

typedef struct story_args {
	uint64_t media_id;
	uint32_t expires_in_s;
} story_args;

static int
story_post_run(api_client *c, const api_ctx *ctx, void *args,
	api_callback cb, void *arg)
{
	story_args *s = args;
	return api_story_post(c, ctx, s->media_id, s->expires_in_s, cb, arg);
}

int
api_story_post(api_client *c, const api_ctx *ctx, uint64_t media_id,
	uint32_t expires_in_s, api_callback cb, void *arg)
{
	if (!signed_in(ctx))
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (expires_in_s > API_STORY_SECONDS_MAX)
		return calls__fail(c, cb, arg, API_EINVALID,
			"expires_in is at most 86400 seconds");
	if (media_id == 0)
		return calls__fail(c, cb, arg, API_EINVALID,
			"media_id is required");
	if (ctx->idempotency_key != NULL) {
		story_args *s = malloc(sizeof *s);
		if (s == NULL)
			return API_EUNAVAILABLE;
		*s = (story_args){media_id, expires_in_s};
		return calls__keyed(c, ctx, story_post_run, s, NULL, cb, arg);
	}
	unsigned char payload[12];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_u64(&w, media_id);
	wire_u32(&w, expires_in_s);
	return calls__forward(c, user_addr(ctx->user_id), USER_T_STORY_POST,
		&w, cb, arg);
}

int
api_story_seen(api_client *c, const api_ctx *ctx, uint64_t story_id,
	api_callback cb, void *arg)
{
	if (!signed_in(ctx))
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (story_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such story");
	unsigned char payload[8];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_u64(&w, story_id);
	return calls__forward(c, user_addr(ctx->user_id), USER_T_STORY_SEEN,
		&w, cb, arg);
}

typedef struct trays_op {
	gather g;
	stories_seen seen;
	uint64_t viewer;
} trays_op;

static void
trays_free(trays_op *t)
{
	gather_free(&t->g);
	stories_seen_free(&t->seen);
	free(t);
}

/* One author's answer: [user_id, username, pic, stories]. Fills a and
 * *active (owned by the caller); false when unusable. */
static bool
tray_author(const msgpack_object *o, stories_author *a, stories *active,
	char *username, size_t username_size, char *pic, size_t pic_size)
{
	const msgpack_object *f = engage_get_tuple(o, 4);
	if (f == NULL || !engage_get_u64(&f[0], &a->user_id) ||
		f[1].type != MSGPACK_OBJECT_STR ||
		f[1].via.str.size >= username_size)
		return false;
	memcpy(username, f[1].via.str.ptr, f[1].via.str.size);
	username[f[1].via.str.size] = '\0';
	a->username = username;
	a->profile_pic_url = NULL;
	if (f[2].type == MSGPACK_OBJECT_STR && f[2].via.str.size < pic_size) {
		memcpy(pic, f[2].via.str.ptr, f[2].via.str.size);
		pic[f[2].via.str.size] = '\0';
		a->profile_pic_url = pic;
	}
	a->active = active;
	return stories_decode(active, &f[3]) == 0;
}

typedef struct tray_names {
	char username[API_USERNAME_BYTES_MAX + 1];
	char pic[64];
} tray_names;

static void
trays_done(api_client *c, gather *g)
{
	trays_op *t = (trays_op *)g;
	api *a = actors__client_api(c);
	stories_author *authors = calloc(g->count + 1, sizeof *authors);
	stories *active = calloc(g->count + 1, sizeof *active);
	tray_names *names = calloc(g->count + 1, sizeof *names);
	if (authors == NULL || active == NULL || names == NULL) {
		complete_code(c, g->cb, g->arg, API_EUNAVAILABLE,
			"out of memory");
		goto done;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < g->count; i++) {
		const gather_slot *s = &g->slots[i];
		if (s->code != API_OK || s->body == NULL)
			continue; /* an author that does not answer has no tray */
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		if (engage_unpack(s->body, s->length, &u) == 0 &&
			tray_author(&u.data, &authors[n], &active[n],
				names[n].username, sizeof names[n].username,
				names[n].pic, sizeof names[n].pic))
			n++;
		msgpack_unpacked_destroy(&u);
	}
	actors__body b;
	actors__body_init(&b);
	int rc = stories_trays_pack(authors, n, &t->seen, rt_wall_ms(a->rt),
		NULL, NULL, &b.packer);
	if (rc == 0)
		complete_body(c, g->cb, g->arg, &b);
	else
		complete_code(c, g->cb, g->arg, rc, "trays unavailable");
	actors__body_free(&b);
done:
	free(authors);
	free(active);
	free(names);
	trays_free(t);
}

/* Appends id to ids unless there already (the lists are short). */
static void
ids_add(uint64_t *ids, uint32_t *count, uint32_t max, uint64_t id)
{
	if (id == 0 || *count == max)
		return;
	for (uint32_t i = 0; i < *count; i++)
		if (ids[i] == id)
			return;
	ids[(*count)++] = id;
}

/* The viewer's answer [authors, pulls, seen]: ask each of them (and the
 * viewer, whose own stories lead the trays). */
static void
trays_feed(api_client *c, void *opaque, const rt_message *m)
{
	trays_op *t = opaque;
	uint64_t viewer = t->viewer;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	const msgpack_object *f = NULL;
	if (code == API_OK) {
		if (engage_unpack(body, body_length, &u) == 0)
			f = engage_get_tuple(&u.data, 3);
		if (f == NULL || f[0].type != MSGPACK_OBJECT_ARRAY ||
			f[1].type != MSGPACK_OBJECT_ARRAY ||
			stories_seen_decode(&t->seen, &f[2]) != 0)
			code = API_EINTERNAL;
	}
	uint64_t *ids = NULL;
	uint32_t n = 0;
	if (code == API_OK) {
		ids = malloc(STORIES_TRAY_AUTHORS_MAX * sizeof *ids);
		if (ids == NULL)
			code = API_EUNAVAILABLE;
	}
	if (code == API_OK) {
		ids_add(ids, &n, STORIES_TRAY_AUTHORS_MAX, viewer);
		for (uint32_t k = 0; k < 2; k++)
			for (uint32_t i = 0; i < f[k].via.array.size; i++) {
				uint64_t id = 0;
				(void)engage_get_u64(&f[k].via.array.ptr[i],
					&id);
				ids_add(ids, &n, STORIES_TRAY_AUTHORS_MAX, id);
			}
	}
	msgpack_unpacked_destroy(&u);
	if (code == API_OK && gather_init(&t->g, t->g.cb, t->g.arg,
				      trays_done, n) != 0)
		code = API_EUNAVAILABLE;
	if (code != API_OK) {
		if (code == API_ENOTFOUND)
			code = API_EUNAUTHORIZED;
		actors__complete(c, t->g.cb, t->g.arg, code, detail,
			detail_length, NULL, 0);
		free(ids);
		trays_free(t);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		gather_ask(c, &t->g, i, user_addr(ids[i]),
			USER_T_STORIES_ACTIVE, NULL, 0);
	free(ids);
	gather_end(c, &t->g);
}

int
api_stories(api_client *c, const api_ctx *ctx, api_callback cb, void *arg)
{
	if (!signed_in(ctx))
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	trays_op *t = calloc(1, sizeof *t);
	if (t == NULL)
		return API_EUNAVAILABLE;
	t->g.cb = cb;
	t->g.arg = arg;
	stories_seen_init(&t->seen);
	t->viewer = ctx->user_id;
	int rc = actors__ask(c, user_addr(ctx->user_id), USER_T_STORY_FEED,
		NULL, 0, trays_feed, t);
	if (rc != 0) {
		free(t);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}

/* ---- notifications ----------------------------------------------------------- */

typedef struct notes_op {
	gather g;
	unsigned char *body; /* the inbox's answer */
	size_t length;
	uint64_t *ids;       /* the distinct by_user ids, one per slot */
} notes_op;

static void
notes_free(notes_op *n)
{
	gather_free(&n->g);
	free(n->body);
	free(n->ids);
	free(n);
}

/* Packs one item with by_user replaced by the user's summary when it
 * answered (else kept as {user_id}). */
static void
notes_pack_item(notes_op *n, msgpack_packer *pk, const msgpack_object *item,
	const msgpack_object *users)
{
	if (item->type != MSGPACK_OBJECT_MAP) {
		msgpack_pack_object(pk, *item);
		return;
	}
	msgpack_pack_map(pk, item->via.map.size);
	for (uint32_t i = 0; i < item->via.map.size; i++) {
		const msgpack_object_kv *kv = &item->via.map.ptr[i];
		msgpack_pack_object(pk, kv->key);
		uint64_t id = api_body_id(&kv->val, "user_id");
		const msgpack_object *user = NULL;
		if (kv->key.type == MSGPACK_OBJECT_STR &&
			kv->key.via.str.size == 7 &&
			memcmp(kv->key.via.str.ptr, "by_user", 7) == 0)
			for (uint32_t k = 0; k < n->g.count && id != 0; k++)
				if (n->ids[k] == id &&
					users[k].type == MSGPACK_OBJECT_MAP)
					user = &users[k];
		msgpack_pack_object(pk, user != NULL ? *user : kv->val);
	}
}

static void
notes_done(api_client *c, gather *g)
{
	notes_op *n = (notes_op *)g;
	msgpack_unpacked page;
	msgpack_unpacked_init(&page);
	msgpack_unpacked *u = calloc(g->count + 1, sizeof *u);
	msgpack_object *users = calloc(g->count + 1, sizeof *users);
	if (u == NULL || users == NULL ||
		engage_unpack(n->body, n->length, &page) != 0 ||
		page.data.type != MSGPACK_OBJECT_MAP) {
		complete_code(c, g->cb, g->arg, API_EINTERNAL, "bad page");
		goto done;
	}
	for (uint32_t i = 0; i < g->count; i++) {
		msgpack_unpacked_init(&u[i]);
		users[i].type = MSGPACK_OBJECT_NIL;
		if (g->slots[i].body != NULL &&
			engage_unpack(g->slots[i].body, g->slots[i].length,
				&u[i]) == 0)
			users[i] = u[i].data;
	}
	actors__body b;
	actors__body_init(&b);
	const msgpack_object *map = &page.data;
	msgpack_pack_map(&b.packer, map->via.map.size);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		msgpack_pack_object(&b.packer, kv->key);
		if (kv->val.type != MSGPACK_OBJECT_ARRAY) {
			msgpack_pack_object(&b.packer, kv->val);
			continue;
		}
		msgpack_pack_array(&b.packer, kv->val.via.array.size);
		for (uint32_t k = 0; k < kv->val.via.array.size; k++)
			notes_pack_item(n, &b.packer, &kv->val.via.array.ptr[k],
				users);
	}
	complete_body(c, g->cb, g->arg, &b);
	actors__body_free(&b);
	for (uint32_t i = 0; i < g->count; i++)
		msgpack_unpacked_destroy(&u[i]);
done:
	free(u);
	free(users);
	msgpack_unpacked_destroy(&page);
	notes_free(n);
}

/* The inbox's page: ask every distinct by_user for its summary. */
static void
notes_got(api_client *c, void *opaque, const rt_message *m)
{
	notes_op *n = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	const msgpack_object *items = NULL;
	if (code == API_OK) {
		n->body = body_copy(body, body_length);
		n->length = body_length;
		if (n->body == NULL || engage_unpack(body, body_length, &u) != 0)
			code = API_EINTERNAL;
		else
			items = api_body_get(&u.data, "items");
	}
	uint32_t count = 0;
	if (items != NULL && items->type == MSGPACK_OBJECT_ARRAY) {
		n->ids = calloc(items->via.array.size + 1, sizeof *n->ids);
		for (uint32_t i = 0; n->ids != NULL &&
			i < items->via.array.size; i++)
			ids_add(n->ids, &count, items->via.array.size,
				api_body_id(api_body_get(&items->via.array.ptr[i],
						    "by_user"),
					"user_id"));
	}
	msgpack_unpacked_destroy(&u);
	if (code == API_OK && gather_init(&n->g, n->g.cb, n->g.arg,
				      notes_done, count) != 0)
		code = API_EUNAVAILABLE;
	if (code != API_OK) {
		if (code == API_ENOTFOUND)
			code = API_EUNAUTHORIZED;
		actors__complete(c, n->g.cb, n->g.arg, code, detail,
			detail_length, NULL, 0);
		notes_free(n);
		return;
	}
	for (uint32_t i = 0; i < count; i++)
		gather_ask(c, &n->g, i, user_addr(n->ids[i]), USER_T_SUMMARY,
			NULL, 0);
	gather_end(c, &n->g);
}

int
api_notifications(api_client *c, const api_ctx *ctx, uint32_t limit,
	uint64_t since_seq, const char *cursor, api_callback cb, void *arg)
{
	if (!signed_in(ctx))
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (limit > API_PAGE_LIMIT_MAX)
		return calls__fail(c, cb, arg, API_EINVALID, "limit above 50");
	if (cursor != NULL && strlen(cursor) >= 64)
		return calls__fail(c, cb, arg, API_EINVALID, "bad cursor");
	notes_op *n = calloc(1, sizeof *n);
	if (n == NULL)
		return API_EUNAVAILABLE;
	n->g.cb = cb;
	n->g.arg = arg;
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, since_seq);
	wire_u32(&w, limit);
	wire_str(&w, cursor != NULL ? cursor : "");
	int rc = w.failed ? API_EUNAVAILABLE
			  : actors__ask(c, user_addr(ctx->user_id),
				USER_T_NOTIFICATIONS, w.bytes, w.length,
				notes_got, n);
	wire_free(&w);
	if (rc != 0) {
		free(n);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}

int
api_notifications_read(api_client *c, const api_ctx *ctx, uint64_t up_to_seq,
	api_callback cb, void *arg)
{
	if (!signed_in(ctx))
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	unsigned char payload[8];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_u64(&w, up_to_seq);
	return calls__forward(c, user_addr(ctx->user_id), USER_T_NOTIFY_READ,
		&w, cb, arg);
}

/* ---- search -------------------------------------------------------------------- */

typedef struct search_op {
	gather g;
	api_search_type type;
	unsigned char *body; /* the shard's page {items, next_cursor} */
	size_t length;
} search_op;

static void
search_op_free(search_op *s)
{
	gather_free(&s->g);
	free(s->body);
	free(s);
}

/* A user hit the index answered whole (its picture known): packed from
 * the hit alone. */
static void
search_pack_user_hit(msgpack_packer *pk, const msgpack_object *hit,
	uint64_t pic)
{
	const msgpack_object *name = api_body_get(hit, "username");
	msgpack_pack_map(pk, 4);
	actors__pack_key(pk, "user_id");
	actors__pack_id(pk, api_body_id(hit, "user_id"));
	actors__pack_key(pk, "username");
	if (name != NULL)
		msgpack_pack_object(pk, *name);
	else
		msgpack_pack_nil(pk);
	actors__pack_key(pk, "profile_pic_url");
	user__pack_profile_pic(pk, pic);
	actors__pack_key(pk, "followers_count");
	msgpack_pack_uint64(pk,
		(uint64_t)api_body_int(hit, "followers_count", 0));
}

/* The index's picture of a user hit, or false (hydrate it). */
static bool
search_hit_pic(const msgpack_object *hit, uint64_t *pic)
{
	const msgpack_object *o = api_body_get(hit, "pic");
	if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*pic = o->via.u64;
	return true;
}

/* One user hit: the user's summary with the index's follower count, or
 * the hit itself when the index knows the picture. */
static bool
search_pack_user(msgpack_packer *pk, const gather_slot *slot,
	const msgpack_object *hit)
{
	uint64_t pic_media_id;
	if (search_hit_pic(hit, &pic_media_id)) {
		search_pack_user_hit(pk, hit, pic_media_id);
		return true;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	bool ok = slot->code == API_OK && slot->body != NULL &&
		engage_unpack(slot->body, slot->length, &u) == 0 &&
		u.data.type == MSGPACK_OBJECT_MAP;
	if (ok) {
		const msgpack_object *name = api_body_get(&u.data, "username");
		const msgpack_object *pic = api_body_get(&u.data,
			"profile_pic_url");
		msgpack_pack_map(pk, 4);
		actors__pack_key(pk, "user_id");
		actors__pack_id(pk, api_body_id(hit, "user_id"));
		actors__pack_key(pk, "username");
		if (name != NULL)
			msgpack_pack_object(pk, *name);
		else
			msgpack_pack_nil(pk);
		actors__pack_key(pk, "profile_pic_url");
		if (pic != NULL)
			msgpack_pack_object(pk, *pic);
		else
			msgpack_pack_nil(pk);
		actors__pack_key(pk, "followers_count");
		msgpack_pack_uint64(pk,
			(uint64_t)api_body_int(hit, "followers_count", 0));
	}
	msgpack_unpacked_destroy(&u);
	return ok;
}

/* A post hit that still exists: its hydrated body (feed-item shape). */
static bool
search_post_usable(const gather_slot *slot)
{
	actors__summary sum;
	if (slot->code != API_OK || slot->body == NULL ||
		slot->length <= sizeof sum)
		return false;
	memcpy(&sum, slot->body, sizeof sum);
	return sum.deleted == 0;
}

static void
search_done(api_client *c, gather *g)
{
	search_op *s = (search_op *)g;
	msgpack_unpacked page;
	msgpack_unpacked_init(&page);
	const msgpack_object *items = NULL;
	if (engage_unpack(s->body, s->length, &page) == 0)
		items = api_body_get(&page.data, "items");
	if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY ||
		items->via.array.size != g->count) {
		complete_code(c, g->cb, g->arg, API_EINTERNAL, "bad page");
		goto done;
	}
	/* A hit whose owner did not answer is not known to be gone: the
	 * page fails rather than skip it (the caller retries). */
	for (uint32_t i = 0; i < g->count; i++) {
		if (g->slots[i].code == API_EUNAVAILABLE) {
			complete_code(c, g->cb, g->arg, API_EUNAVAILABLE,
				"a result's owner did not answer");
			goto done;
		}
	}
	actors__body hits;
	actors__body_init(&hits);
	uint32_t shown = 0;
	for (uint32_t i = 0; i < g->count; i++) {
		const gather_slot *slot = &g->slots[i];
		if (s->type == API_SEARCH_USERS) {
			shown += search_pack_user(&hits.packer, slot,
				&items->via.array.ptr[i]);
		} else if (search_post_usable(slot)) {
			msgpack_sbuffer_write(&hits.buffer,
				(const char *)slot->body +
					sizeof(actors__summary),
				slot->length - sizeof(actors__summary));
			shown++;
		}
	}
	const msgpack_object *next = api_body_get(&page.data, "next_cursor");
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_map(&b.packer, 2);
	actors__pack_key(&b.packer, "items");
	msgpack_pack_array(&b.packer, shown);
	msgpack_sbuffer_write(&b.buffer, hits.buffer.data, hits.buffer.size);
	actors__pack_key(&b.packer, "next_cursor");
	if (next != NULL)
		msgpack_pack_object(&b.packer, *next);
	else
		msgpack_pack_nil(&b.packer);
	complete_body(c, g->cb, g->arg, &b);
	actors__body_free(&b);
	actors__body_free(&hits);
done:
	msgpack_unpacked_destroy(&page);
	search_op_free(s);
}

/* The shard's page: hydrate every hit. */
static void
search_got(api_client *c, void *opaque, const rt_message *m, uint64_t viewer)
{
	search_op *s = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	const msgpack_object *items = NULL;
	if (code == API_OK) {
		s->body = body_copy(body, body_length);
		s->length = body_length;
		if (s->body != NULL && engage_unpack(body, body_length, &u) == 0)
			items = api_body_get(&u.data, "items");
		if (items == NULL || items->type != MSGPACK_OBJECT_ARRAY)
			code = API_EINTERNAL;
	}
	if (code == API_OK && gather_init(&s->g, s->g.cb, s->g.arg,
				      search_done, items->via.array.size) != 0)
		code = API_EUNAVAILABLE;
	if (code != API_OK) {
		msgpack_unpacked_destroy(&u);
		actors__complete(c, s->g.cb, s->g.arg, code, detail,
			detail_length, NULL, 0);
		search_op_free(s);
		return;
	}
	for (uint32_t i = 0; i < s->g.count; i++) {
		const msgpack_object *hit = &items->via.array.ptr[i];
		uint64_t pic;
		if (s->type == API_SEARCH_USERS && search_hit_pic(hit, &pic))
			gather_skip(&s->g, i);
		else if (s->type == API_SEARCH_USERS)
			gather_ask(c, &s->g, i,
				user_addr(api_body_id(hit, "user_id")),
				USER_T_SUMMARY, NULL, 0);
		else
			gather_ask(c, &s->g, i,
				rt_addr_make(ACTORS_KIND_POST,
					api_body_id(hit, "post_id")),
				POST_T_SUMMARY, &viewer, sizeof viewer);
	}
	msgpack_unpacked_destroy(&u);
	gather_end(c, &s->g);
}

typedef struct search_call {
	search_op *op;
	uint64_t viewer;
} search_call;

static void
search_step(api_client *c, void *opaque, const rt_message *m)
{
	search_call *call = opaque;
	search_op *s = call->op;
	uint64_t viewer = call->viewer;
	free(call);
	search_got(c, s, m, viewer);
}

int
api_search(api_client *c, const api_ctx *ctx, const char *query,
	api_search_type type, const api_page *page, api_callback cb, void *arg)
{
	uint32_t limit = page != NULL ? page->limit : 0;
	const char *cursor = page != NULL && page->cursor != NULL &&
			page->cursor[0] != '\0'
		? page->cursor
		: NULL;
	uint32_t shard;
	if (query == NULL || (type != API_SEARCH_USERS &&
		type != API_SEARCH_TAGS && type != API_SEARCH_POSTS))
		return calls__fail(c, cb, arg, API_EINVALID, "bad search");
	if (limit > API_PAGE_LIMIT_MAX)
		return calls__fail(c, cb, arg, API_EINVALID, "limit above 50");
	if (cursor != NULL && strlen(cursor) >= SEARCH_CURSOR_BYTES)
		return calls__fail(c, cb, arg, API_EINVALID, "bad cursor");
	if (search_query_shard(type, query, &shard) != 0)
		return calls__fail(c, cb, arg, API_EINVALID,
			"q must be 1 to 100 bytes of a name, tag or word");
	search_op *s = calloc(1, sizeof *s);
	search_call *call = malloc(sizeof *call);
	if (s == NULL || call == NULL) {
		free(s);
		free(call);
		return API_EUNAVAILABLE;
	}
	s->g.cb = cb;
	s->g.arg = arg;
	s->type = type;
	*call = (search_call){s, ctx != NULL ? ctx->user_id : 0};
	actors__body b;
	actors__body_init(&b);
	int rc = search_query_message_encode(type, query, limit, cursor,
		&b.packer);
	if (rc == 0)
		rc = actors__ask(c, search_shard_addr(shard), SEARCH_T_QUERY,
			b.buffer.data, b.buffer.size, search_step, call);
	actors__body_free(&b);
	if (rc != 0) {
		free(s);
		free(call);
		return rc == API_EINVALID ? calls__fail(c, cb, arg, rc,
						    "bad search")
					  : API_EUNAVAILABLE;
	}
	actors__call_begin(c);
	return API_OK;
}

/* ---- keyed writes (Idempotency-Key) --------------------------------------------- */

typedef struct keyed_op {
	api_client *c;
	api_callback cb;
	void *arg;
	calls__keyed_fn fn;
	void *args;
	void (*free_args)(void *);
	uint64_t user_id;
	char key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
	uint8_t digest[IDEM_DIGEST_BYTES];
	/* the first run's answer while it is journaled */
	int code;
	char detail[ACTORS_DETAIL_BYTES_MAX + 1];
	unsigned char *body;
	size_t length;
} keyed_op;

static void
keyed_free(keyed_op *op)
{
	if (op->free_args != NULL)
		op->free_args(op->args);
	else
		free(op->args);
	free(op->body);
	free(op);
}

static void
keyed_key(wire_writer *w, const keyed_op *op)
{
	wire_str(w, op->key);
	wire_bytes(w, op->digest, sizeof op->digest);
}

/* Forgets a key whose run answered "try again" (or never started). */
static void
keyed_abort(keyed_op *op)
{
	api *a = actors__client_api(op->c);
	wire_writer w;
	wire_init(&w);
	keyed_key(&w, op);
	rt_message *m = w.failed ? NULL
				 : rt_message_alloc(a->rt, USER_T_IDEM_ABORT,
					   (uint32_t)w.length);
	if (m != NULL) {
		memcpy(m->payload, w.bytes, w.length);
		(void)rt_send_external(a->rt, user_addr(op->user_id), m);
	}
	wire_free(&w);
}

static void
keyed_finished(api_client *c, void *opaque, const rt_message *m)
{
	keyed_op *op = opaque;
	(void)m; /* journaled or not, the write happened: answer it */
	actors__complete(c, op->cb, op->arg, op->code, op->detail,
		strlen(op->detail), op->body, op->length);
	keyed_free(op);
}

static bool
keyed_transient(int code)
{
	return code == API_EUNAVAILABLE || code == API_EINTERNAL ||
		code == API_ERATELIMITED;
}

/* The first run's answer: journal it with the key, then answer. */
static void
keyed_done(void *arg, const api_result *r)
{
	keyed_op *op = arg;
	op->code = r->code;
	snprintf(op->detail, sizeof op->detail, "%s",
		r->detail != NULL ? r->detail : "");
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	if (r->body != NULL) {
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, *r->body);
	} else if (r->body_bytes != NULL) {
		/* A client that keeps bodies packed. */
		msgpack_sbuffer_write(&sb, r->body_bytes, r->body_length);
	}
	op->body = (unsigned char *)sb.data; /* taken */
	op->length = sb.size;
	int rc = API_EUNAVAILABLE;
	if (!keyed_transient(r->code)) {
		wire_writer w;
		wire_init(&w);
		keyed_key(&w, op);
		wire_u32(&w, (uint32_t)r->code);
		wire_bytes(&w, op->body, op->length);
		rc = w.failed ? API_EUNAVAILABLE
			      : actors__ask(op->c, user_addr(op->user_id),
				    USER_T_IDEM_FINISH, w.bytes, w.length,
				    keyed_finished, op);
		wire_free(&w);
	}
	if (rc == 0)
		return;
	keyed_abort(op);
	actors__complete(op->c, op->cb, op->arg, op->code, op->detail,
		strlen(op->detail), op->body, op->length);
	keyed_free(op);
}

static void
keyed_begun(api_client *c, void *opaque, const rt_message *m)
{
	keyed_op *op = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	const unsigned char *p = body;
	if (code == API_OK && (body_length == 0 ||
		(p[0] == 1 && body_length < 5)))
		code = API_EINTERNAL;
	if (code != API_OK) {
		actors__complete(c, op->cb, op->arg, code, detail,
			detail_length, NULL, 0);
		keyed_free(op);
		return;
	}
	if (p[0] == 1) { /* a repeat: the first answer, as it was */
		int32_t first = (int32_t)((uint32_t)p[1] |
			(uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
			(uint32_t)p[4] << 24);
		actors__complete(c, op->cb, op->arg, first, NULL, 0, p + 5,
			body_length - 5);
		keyed_free(op);
		return;
	}
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.user_id = op->user_id;
	memcpy(ctx.body_digest, op->digest, sizeof ctx.body_digest);
	int rc = op->fn(c, &ctx, op->args, keyed_done, op);
	if (rc != 0) {
		keyed_abort(op);
		complete_code(c, op->cb, op->arg, rc, "unavailable");
		keyed_free(op);
	}
}

int
calls__keyed(api_client *c, const api_ctx *ctx, calls__keyed_fn fn,
	void *args, void (*free_args)(void *), api_callback cb, void *arg)
{
	ACTORS_ASSERT(ctx != NULL && ctx->idempotency_key != NULL);
	size_t n = strlen(ctx->idempotency_key);
	keyed_op *op = calloc(1, sizeof *op);
	if (op == NULL) {
		if (free_args != NULL)
			free_args(args);
		else
			free(args);
		return API_EUNAVAILABLE;
	}
	*op = (keyed_op){.c = c, .cb = cb, .arg = arg, .fn = fn,
		.args = args, .free_args = free_args,
		.user_id = ctx->user_id};
	if (ctx->user_id == 0 || n == 0 || n > API_IDEMPOTENCY_KEY_BYTES_MAX) {
		keyed_free(op);
		return calls__fail(c, cb, arg,
			ctx->user_id == 0 ? API_EUNAUTHORIZED : API_EINVALID,
			ctx->user_id == 0 ? "sign in" : "bad Idempotency-Key");
	}
	memcpy(op->key, ctx->idempotency_key, n + 1);
	memcpy(op->digest, ctx->body_digest, sizeof op->digest);
	wire_writer w;
	wire_init(&w);
	keyed_key(&w, op);
	int rc = w.failed ? API_EUNAVAILABLE
			  : actors__ask(c, user_addr(ctx->user_id),
				USER_T_IDEM_BEGIN, w.bytes, w.length,
				keyed_begun, op);
	wire_free(&w);
	if (rc != 0) {
		keyed_free(op);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}

/* ---- @mentions --------------------------------------------------------------- */

typedef struct mentions_op {
	calls__mentions_fn next;
	void *op;
	uint32_t count;
	uint32_t outstanding;
	uint64_t ids[ACTORS_MENTIONS_MAX];
} mentions_op;

typedef struct mention_slot {
	mentions_op *m;
	uint32_t index;
} mention_slot;

typedef struct mention_names {
	uint32_t count;
	char names[ACTORS_MENTIONS_MAX][API_USERNAME_BYTES_MAX + 2];
} mention_names;

static void
mention_collect(void *arg, const char *tag, size_t length)
{
	mention_names *n = arg;
	char raw[API_USERNAME_BYTES_MAX + 2];
	if (n->count == ACTORS_MENTIONS_MAX || length >= sizeof raw)
		return;
	memcpy(raw, tag, length);
	raw[length] = '\0';
	if (actors__username_normalize(raw, n->names[n->count],
		    sizeof n->names[n->count]))
		n->count++;
}

static void
mentions_finish(api_client *c, mentions_op *m)
{
	uint64_t ids[ACTORS_MENTIONS_MAX];
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->count; i++)
		ids_add(ids, &n, ACTORS_MENTIONS_MAX, m->ids[i]);
	m->next(c, m->op, ids, n);
	free(m);
}

static void
mention_step(api_client *c, void *opaque, const rt_message *m)
{
	mention_slot *slot = opaque;
	mentions_op *op = slot->m;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	if (code == API_OK && body_length == sizeof(uint64_t))
		memcpy(&op->ids[slot->index], body, sizeof(uint64_t));
	free(slot);
	if (--op->outstanding == 0)
		mentions_finish(c, op);
}

void
calls__mentions(api_client *c, const char *text, calls__mentions_fn next,
	void *op)
{
	mention_names *names = calloc(1, sizeof *names);
	mentions_op *m = calloc(1, sizeof *m);
	if (names != NULL)
		(void)actors__parse_tags(text, strlen(text), '@',
			mention_collect, names);
	if (names == NULL || m == NULL || names->count == 0) {
		free(names);
		free(m);
		next(c, op, NULL, 0); /* nobody named (or no memory: none) */
		return;
	}
	m->next = next;
	m->op = op;
	m->count = names->count;
	m->outstanding = names->count + 1;
	for (uint32_t i = 0; i < names->count; i++) {
		mention_slot *slot = malloc(sizeof *slot);
		const char *name = names->names[i];
		rt_addr to = rt_addr_make(ACTORS_KIND_NAMES,
			(uint64_t)actors__name_partition(name)
				<< ACTORS_ID_SEQUENCE_BITS);
		wire_writer w;
		wire_init(&w);
		wire_str(&w, name);
		int rc = API_EUNAVAILABLE;
		if (slot != NULL && !w.failed) {
			*slot = (mention_slot){m, i};
			rc = actors__ask(c, to, NAMES_T_LOOKUP, w.bytes,
				w.length, mention_step, slot);
		}
		wire_free(&w);
		if (rc != 0) {
			free(slot);
			m->outstanding--;
		}
	}
	free(names);
	if (--m->outstanding == 0)
		mentions_finish(c, m);
}
