/*
 * actors/post.c — the post actor: author (id + username copy), caption,
 * media reference and status, likers, comments, deleted flag.
 *
 * Role: created by the POST_T_INIT effect of its author's "posted" event
 * (so a post exists once its author's record is durable, and a crash
 * re-sends the creation); answers reads for the post, its summary for
 * feed hydration and its comment pages; takes likes, comments and the
 * deletion, each a journaled event answered from its durable notice.
 *
 * Invariants: likes_count is the size of the likers set and
 * comments_count the number of comments not deleted, so both are exact;
 * comment ids increase in insertion order (one node-wide generator), so
 * the comment list is sorted oldest first; a deleted post answers 404 to
 * everything but its summary (which says deleted so feeds drop it).
 *
 * What it deliberately does not do: keep old comments out of memory
 * (every comment of an active post is resident); notify anyone of likes
 * other than the liker's own interaction score.
 */
#include "actors/engage.h"
#include "actors/internal.h"
#include "actors/media.h"

#include <stdio.h>
#include <stdlib.h>

#include "persistence/persistence.h"

/* Interaction weights fed to the reader's affinity scores. */
#define POST_LIKE_AFFINITY_WEIGHT 1.0
#define POST_COMMENT_AFFINITY_WEIGHT 2.0
/* Hex content hash of a media item, at most (sha256). */
#define POST_MEDIA_HASH_BYTES_MAX 64u
/* A post's mailbox: likes and comments of a viral post queue up here. */
#define POST_MAILBOX_MESSAGES_MAX (1u << 18)

typedef struct comment {
	uint64_t id;
	uint64_t author_id;
	char username[API_USERNAME_BYTES_MAX + 2];
	char *text;
} comment;

typedef struct liker_set {
	uint64_t *slots; /* open addressing, 0 = empty */
	uint32_t count;
	uint32_t capacity; /* power of two */
} liker_set;

typedef struct post_state {
	uint64_t id;
	uint64_t author_id;
	bool exists;
	bool deleted;
	char username[API_USERNAME_BYTES_MAX + 2];
	char *caption;
	uint64_t media_id;
	char media_status[16];
	char media_hash[POST_MEDIA_HASH_BYTES_MAX + 1];
	liker_set likers;
	comment *comments; /* sorted by id, oldest first */
	uint32_t comments_count;
	uint32_t comments_capacity;
	uint64_t durable_lsn; /* highest notice seen (not stored) */
	ps_outbox outbox;
	bool redrive_armed; /* volatile: an ACTORS_T_REDRIVE timer is set */
	/* Volatile: a record changed what the published view shows
	 * (post_views.c); republished at the end of the turn. */
	bool view_dirty;
	/* The answer body's fields that never change (post_id, user,
	 * caption, tags, mentions), packed at the first read (not stored):
	 * feeds read a post far more often than it changes, and packing
	 * them (tags parsed, ids formatted) was most of a summary's cost. */
	unsigned char *head;
	uint32_t head_length;
	/* The packed "media" value (four variant URLs formatted), kept
	 * until a record changes the media (not stored). */
	unsigned char *media_packed;
	uint32_t media_packed_length;
} post_state;

/* ---- likers ------------------------------------------------------------- */

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static bool
likers_has(const liker_set *s, uint64_t id)
{
	if (s->capacity == 0)
		return false;
	for (uint32_t i = (uint32_t)mix(id) & (s->capacity - 1);;
		i = (i + 1) & (s->capacity - 1)) {
		if (s->slots[i] == id)
			return true;
		if (s->slots[i] == 0)
			return false;
	}
}

static void
likers_put(uint64_t *slots, uint32_t capacity, uint64_t id)
{
	uint32_t i = (uint32_t)mix(id) & (capacity - 1);
	while (slots[i] != 0 && slots[i] != id)
		i = (i + 1) & (capacity - 1);
	slots[i] = id;
}

static int
likers_add(liker_set *s, uint64_t id)
{
	ACTORS_ASSERT(id != 0);
	if (likers_has(s, id))
		return 0;
	if ((s->count + 1) * 4 > s->capacity * 3) {
		uint32_t capacity = s->capacity ? s->capacity * 2 : 8;
		uint64_t *slots = calloc(capacity, sizeof *slots);
		if (slots == NULL)
			return -1;
		for (uint32_t i = 0; i < s->capacity; i++)
			if (s->slots[i] != 0)
				likers_put(slots, capacity, s->slots[i]);
		free(s->slots);
		s->slots = slots;
		s->capacity = capacity;
	}
	likers_put(s->slots, s->capacity, id);
	s->count++;
	return 1;
}

static void
likers_remove(liker_set *s, uint64_t id)
{
	if (!likers_has(s, id))
		return;
	uint32_t mask = s->capacity - 1;
	uint32_t i = (uint32_t)mix(id) & mask;
	while (s->slots[i] != id)
		i = (i + 1) & mask;
	s->slots[i] = 0;
	s->count--;
	/* Re-insert the rest of the cluster so lookups stay correct. */
	for (uint32_t j = (i + 1) & mask; s->slots[j] != 0; j = (j + 1) & mask) {
		uint64_t v = s->slots[j];
		s->slots[j] = 0;
		likers_put(s->slots, s->capacity, v);
	}
}

/* ---- comments ----------------------------------------------------------- */

static uint32_t
comments_lower_bound(const post_state *st, uint64_t id)
{
	uint32_t lo = 0, hi = st->comments_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (st->comments[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static comment *
comment_find(post_state *st, uint64_t id)
{
	uint32_t i = comments_lower_bound(st, id);
	if (i < st->comments_count && st->comments[i].id == id)
		return &st->comments[i];
	return NULL;
}

static int
comment_insert(post_state *st, const comment *c)
{
	uint32_t i = comments_lower_bound(st, c->id);
	if (i < st->comments_count && st->comments[i].id == c->id)
		return 0;
	if (st->comments_count == st->comments_capacity) {
		uint32_t capacity = st->comments_capacity
			? st->comments_capacity * 2
			: 4;
		comment *v = realloc(st->comments, capacity * sizeof *v);
		if (v == NULL)
			return -1;
		st->comments = v;
		st->comments_capacity = capacity;
	}
	memmove(st->comments + i + 1, st->comments + i,
		(st->comments_count - i) * sizeof *st->comments);
	st->comments[i] = *c;
	st->comments_count++;
	return 1;
}

static void
comment_remove(post_state *st, uint64_t id)
{
	uint32_t i = comments_lower_bound(st, id);
	if (i == st->comments_count || st->comments[i].id != id)
		return;
	free(st->comments[i].text);
	memmove(st->comments + i, st->comments + i + 1,
		(st->comments_count - i - 1) * sizeof *st->comments);
	st->comments_count--;
}

/* ---- bodies ------------------------------------------------------------- */

typedef struct post_view {
	uint64_t post_id;
	uint64_t author_id;
	const char *username;
	uint64_t author_pic;
	const char *caption;
	size_t caption_length;
	uint64_t media_id;
	const char *media_status;
	const char *media_hash;
	uint32_t likes;
	uint32_t comments;
	bool liked_by_me;
} post_view;

typedef struct tags_packer {
	msgpack_packer *p;
	uint32_t left;
} tags_packer;

static void
pack_tag(void *arg, const char *tag, size_t length)
{
	tags_packer *t = arg;
	if (t->left == 0)
		return;
	t->left--;
	actors__pack_strn(t->p, tag, length);
}

static void
pack_tags(msgpack_packer *p, const char *caption, size_t length)
{
	uint32_t n = actors__parse_tags(caption, length, '#', NULL, NULL);
	if (n > API_CAPTION_HASHTAGS_MAX)
		n = API_CAPTION_HASHTAGS_MAX;
	msgpack_pack_array(p, n);
	tags_packer t = {p, n};
	(void)actors__parse_tags(caption, length, '#', pack_tag, &t);
	ACTORS_ASSERT(t.left == 0);
}

static void
pack_mentions(msgpack_packer *p, const char *caption, size_t length)
{
	uint32_t n = actors__parse_tags(caption, length, '@', NULL, NULL);
	if (n > API_CAPTION_HASHTAGS_MAX)
		n = API_CAPTION_HASHTAGS_MAX; /* mentions share the tag bound */
	msgpack_pack_array(p, n);
	tags_packer t = {p, n};
	(void)actors__parse_tags(caption, length, '@', pack_tag, &t);
}

static const char *const post_variants[4] = {"thumb", "small", "medium",
	"large"};

static void
pack_media(const api *a, msgpack_packer *p, const post_view *v)
{
	if (v->media_id == 0) {
		msgpack_pack_nil(p);
		return;
	}
	msgpack_pack_map(p, 3);
	actors__pack_key(p, "media_id");
	actors__pack_id(p, v->media_id);
	actors__pack_key(p, "status");
	actors__pack_str(p, v->media_status);
	actors__pack_key(p, "variants");
	if (v->media_hash == NULL || v->media_hash[0] == '\0') {
		msgpack_pack_nil(p);
		return;
	}
	msgpack_pack_map(p, 4);
	for (int i = 0; i < 4; i++) {
		char url[300];
		snprintf(url, sizeof url, "%s/%s/%s",
			a != NULL ? a->media_base_url : "/media",
			v->media_hash, post_variants[i]);
		actors__pack_key(p, post_variants[i]);
		actors__pack_str(p, url);
	}
}

/* The body's unchanging fields (see post_state.head), then the rest. */
static void
pack_post_head(msgpack_packer *p, const post_view *v)
{
	msgpack_pack_map(p, 10);
	actors__pack_key(p, "post_id");
	actors__pack_id(p, v->post_id);
	actors__pack_key(p, "user");
	msgpack_pack_map(p, 3);
	actors__pack_key(p, "user_id");
	actors__pack_id(p, v->author_id);
	actors__pack_key(p, "username");
	actors__pack_str(p, v->username);
	actors__pack_key(p, "profile_pic_url");
	if (v->author_pic != 0) {
		char url[64];
		snprintf(url, sizeof url, "/v1/media/%llu",
			(unsigned long long)v->author_pic);
		actors__pack_str(p, url);
	} else {
		msgpack_pack_nil(p);
	}
	actors__pack_key(p, "caption");
	actors__pack_strn(p, v->caption, v->caption_length);
	actors__pack_key(p, "tags");
	pack_tags(p, v->caption, v->caption_length);
	actors__pack_key(p, "mentions");
	pack_mentions(p, v->caption, v->caption_length);
}

/* *liked_at (when written is the packer's running length) gets the
 * offset of the liked_by_me bool byte: published views patch it. */
static void
pack_post_rest_at(const api *a, msgpack_packer *p, const post_view *v,
	const unsigned char *media, size_t media_length, const size_t *written,
	size_t *liked_at)
{
	actors__pack_key(p, "media");
	if (media != NULL)
		(void)p->callback(p->data, (const char *)media, media_length);
	else
		pack_media(a, p, v);
	actors__pack_key(p, "likes_count");
	msgpack_pack_uint32(p, v->likes);
	actors__pack_key(p, "comments_count");
	msgpack_pack_uint32(p, v->comments);
	actors__pack_key(p, "liked_by_me");
	if (written != NULL)
		*liked_at = *written;
	msgpack_pack_bool(p, v->liked_by_me);
	actors__pack_key(p, "created_at");
	actors__pack_time(p, actors__id_ms(v->post_id));
}

static void
pack_post_rest(const api *a, msgpack_packer *p, const post_view *v)
{
	pack_post_rest_at(a, p, v, NULL, 0, NULL, NULL);
}

static void
pack_post(const api *a, msgpack_packer *p, const post_view *v)
{
	pack_post_head(p, v);
	pack_post_rest(a, p, v);
}

/* POST_T_INIT payload: author u64, username str, post id u64, pushed u8,
 * caption str, media id u64. */
typedef struct init_fields {
	uint64_t author_id;
	char username[API_USERNAME_BYTES_MAX + 2];
	uint64_t post_id;
	const char *caption;
	size_t caption_length;
	uint64_t media_id;
} init_fields;

static bool
init_parse(const void *bytes, size_t length, init_fields *f)
{
	wire_reader r;
	wire_reader_init(&r, bytes, length);
	f->author_id = wire_get_u64(&r);
	wire_get_strbuf(&r, f->username, sizeof f->username);
	f->post_id = wire_get_u64(&r);
	(void)wire_get_u8(&r);
	f->caption = wire_get_str(&r, API_CAPTION_CHARACTERS_MAX * 4,
		&f->caption_length);
	f->media_id = wire_get_u64(&r);
	return wire_done(&r) && f->caption != NULL && f->post_id != 0;
}

void actors__pack_post_init(api *a, msgpack_packer *p, const void *init,
	size_t length, uint64_t author_pic);

void
actors__pack_post_init(api *a, msgpack_packer *p, const void *init,
	size_t length, uint64_t author_pic)
{
	init_fields f;
	if (!init_parse(init, length, &f)) {
		msgpack_pack_nil(p);
		return;
	}
	post_view v = {f.post_id, f.author_id, f.username, author_pic,
		f.caption, f.caption_length, f.media_id,
		f.media_id ? "processing" : NULL, NULL, 0, 0, false};
	pack_post(a, p, &v);
}

static void
view_of(const post_state *st, uint64_t viewer, post_view *v)
{
	v->post_id = st->id;
	v->author_id = st->author_id;
	v->username = st->username;
	v->author_pic = 0;
	v->caption = st->caption != NULL ? st->caption : "";
	v->caption_length = strlen(v->caption);
	v->media_id = st->media_id;
	v->media_status = st->media_status;
	v->media_hash = st->media_hash;
	v->likes = st->likers.count;
	v->comments = st->comments_count;
	v->liked_by_me = viewer != 0 && likers_has(&st->likers, viewer);
}

static void
pack_comment(msgpack_packer *p, uint64_t post_id, const comment *c)
{
	msgpack_pack_map(p, 5);
	actors__pack_key(p, "comment_id");
	actors__pack_id(p, c->id);
	actors__pack_key(p, "post_id");
	actors__pack_id(p, post_id);
	actors__pack_key(p, "user");
	msgpack_pack_map(p, 2);
	actors__pack_key(p, "user_id");
	actors__pack_id(p, c->author_id);
	actors__pack_key(p, "username");
	actors__pack_str(p, c->username);
	actors__pack_key(p, "text");
	actors__pack_str(p, c->text);
	actors__pack_key(p, "created_at");
	actors__pack_time(p, actors__id_ms(c->id));
}

/* ---- apply -------------------------------------------------------------- */

static int
apply_init(post_state *st, const void *payload, size_t length, uint64_t lsn)
{
	init_fields f;
	if (!init_parse(payload, length, &f))
		return RT_ECORRUPT;
	if (st->exists)
		return 0;
	char *caption = malloc(f.caption_length + 1);
	if (caption == NULL)
		return RT_ENOMEM;
	memcpy(caption, f.caption, f.caption_length);
	caption[f.caption_length] = '\0';
	st->id = f.post_id;
	st->author_id = f.author_id;
	memcpy(st->username, f.username, sizeof st->username);
	st->caption = caption;
	st->media_id = f.media_id;
	snprintf(st->media_status, sizeof st->media_status, "%s",
		f.media_id ? "processing" : "none");
	st->exists = true;
	/* Searchable by its tags and words from its creation on. */
	return actors__search_post_effects(&st->outbox, st->id, st->caption,
		       false, lsn) == 0
		? 0
		: RT_ENOMEM;
}

static int
apply_deleted(post_state *st, uint64_t lsn)
{
	if (st->deleted)
		return 0;
	st->deleted = true;
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, st->id);
	int rc = w.failed ? PS_ENOMEM
			  : ps_outbox_add(&st->outbox,
				rt_addr_make(ACTORS_KIND_USER, st->author_id),
				USER_T_OWN_POST_REMOVE, w.bytes, w.length, lsn,
				NULL);
	wire_free(&w);
	if (rc == 0)
		rc = actors__search_post_effects(&st->outbox, st->id,
			st->caption != NULL ? st->caption : "", true, lsn);
	return rc == 0 ? 0 : RT_ENOMEM;
}

static int
apply_comment(post_state *st, wire_reader *r, uint64_t lsn)
{
	comment c;
	memset(&c, 0, sizeof c);
	c.id = wire_get_u64(r);
	c.author_id = wire_get_u64(r);
	wire_get_strbuf(r, c.username, sizeof c.username);
	c.text = wire_get_strdup(r, API_COMMENT_CHARACTERS_MAX * 4);
	/* Then the accounts the comment mentions, when there are any. */
	uint64_t mentions[ACTORS_MENTIONS_MAX];
	uint32_t mentions_count = r->offset < r->length ? wire_get_u32(r) : 0;
	for (uint32_t i = 0; i < mentions_count &&
		i < ACTORS_MENTIONS_MAX; i++)
		mentions[i] = wire_get_u64(r);
	if (r->failed || c.id == 0 || mentions_count > ACTORS_MENTIONS_MAX) {
		free(c.text);
		return RT_ECORRUPT;
	}
	int added = comment_insert(st, &c);
	if (added <= 0) {
		free(c.text);
		return added < 0 ? RT_ENOMEM : 0;
	}
	/* Derived from this event: the post's author and each mentioned
	 * account hear of it (never the commenter of its own doing). */
	uint64_t at = actors__id_ms(c.id);
	(void)actors__notify_effect(&st->outbox, INBOX_TYPE_COMMENT,
		c.author_id, st->author_id, st->id, c.id, at, lsn);
	for (uint32_t i = 0; i < mentions_count; i++)
		(void)actors__notify_effect(&st->outbox, INBOX_TYPE_MENTION,
			c.author_id, mentions[i], st->id, c.id, at, lsn);
	return 0;
}

static int
apply_media(post_state *st, wire_reader *r)
{
	uint64_t media_id = wire_get_u64(r);
	char status[16];
	char hash[POST_MEDIA_HASH_BYTES_MAX + 1];
	wire_get_strbuf(r, status, sizeof status);
	wire_get_strbuf(r, hash, sizeof hash);
	if (r->failed)
		return RT_ECORRUPT;
	if (media_id != st->media_id)
		return 0;
	memcpy(st->media_status, status, sizeof status);
	memcpy(st->media_hash, hash, sizeof hash);
	return 0;
}

static int
post_apply(post_state *st, uint32_t type, const void *payload,
	size_t length, uint64_t lsn)
{
	wire_reader r;
	wire_reader_init(&r, payload, length);
	int rc = 0;
	st->view_dirty = true;
	if (type == POST_R_INIT || type == POST_R_MEDIA) {
		free(st->media_packed);
		st->media_packed = NULL;
	}
	switch (type) {
	case POST_R_INIT:
		return apply_init(st, payload, length, lsn);
	case POST_R_DELETED:
		return apply_deleted(st, lsn);
	case POST_R_LIKE: {
		uint64_t viewer = wire_get_u64(&r);
		uint8_t on = wire_get_u8(&r);
		/* When it happened (the author's notification); records
		 * written before it was kept have none. */
		uint64_t at = r.offset < r.length ? wire_get_u64(&r) : 0;
		if (r.failed || viewer == 0)
			return RT_ECORRUPT;
		if (!on) {
			likers_remove(&st->likers, viewer);
			break;
		}
		int added = likers_add(&st->likers, viewer);
		if (added < 0)
			return RT_ENOMEM;
		/* A like taken back and given again is one event id: the
		 * author's inbox keeps one notification. */
		if (added > 0 && at != 0)
			(void)actors__notify_effect(&st->outbox,
				INBOX_TYPE_LIKE, viewer, st->author_id, st->id,
				0, at, lsn);
		break;
	}
	case POST_R_COMMENT:
		rc = apply_comment(st, &r, lsn);
		break;
	case POST_R_COMMENT_DELETED:
		comment_remove(st, wire_get_u64(&r));
		break;
	case POST_R_MEDIA:
		rc = apply_media(st, &r);
		break;
	default:
		return RT_ECORRUPT;
	}
	if (rc == 0 && r.failed)
		rc = RT_ECORRUPT;
	st->view_dirty = true;
	return rc;
}

static int
post_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	return post_apply(state, type, payload, length, 0);
}

static int
post_write(api *a, rt_actor *self, post_state *st, uint32_t record,
	const wire_writer *w, const actors__cookie *cookie)
{
	if (w->failed)
		return API_EUNAVAILABLE;
	uint64_t lsn = 0;
	int rc = actors__journal(a, self, record, w->bytes, w->length, cookie,
		&lsn);
	if (rc != 0)
		return rc;
	rc = post_apply(st, record, w->bytes, w->length, lsn);
	ACTORS_ASSERT(rc != RT_ECORRUPT);
	rt_mark_dirty(self);
	return rc == 0 ? API_OK : API_EUNAVAILABLE;
}

/* ---- requests ----------------------------------------------------------- */

static void
reply_code(rt_actor *self, const rt_message *m, int code, const char *detail)
{
	actors__reply(self, m, code, detail, NULL, 0);
}

/* A body packed on the stack, on the heap only past it (a read's
 * answer is a few hundred bytes; an sbuffer mallocs 8 KiB each time). */
#define POST_ANSWER_INLINE_BYTES 1024u

typedef struct answer_buffer {
	unsigned char *bytes;
	size_t length;
	size_t capacity;
	bool failed;
	unsigned char inline_bytes[POST_ANSWER_INLINE_BYTES];
} answer_buffer;

static int
answer_write(void *data, const char *bytes, size_t length)
{
	answer_buffer *b = data;
	if (b->failed)
		return -1;
	if (length > b->capacity - b->length) {
		size_t capacity = b->capacity * 2;
		while (capacity - b->length < length)
			capacity *= 2;
		unsigned char *grown = b->bytes == b->inline_bytes
			? malloc(capacity)
			: realloc(b->bytes, capacity);
		if (grown == NULL) {
			b->failed = true;
			return -1;
		}
		if (b->bytes == b->inline_bytes)
			memcpy(grown, b->inline_bytes, b->length);
		b->bytes = grown;
		b->capacity = capacity;
	}
	memcpy(b->bytes + b->length, bytes, length);
	b->length += length;
	return 0;
}

static void
answer_free(answer_buffer *b)
{
	if (b->bytes != b->inline_bytes)
		free(b->bytes);
}

/* Packs (once per activation) the fields of st->head. */
static bool
head_ready(post_state *st)
{
	if (st->head != NULL)
		return true;
	post_view v;
	view_of(st, 0, &v);
	actors__body b;
	actors__body_init(&b);
	pack_post_head(&b.packer, &v);
	st->head = malloc(b.buffer.size);
	if (st->head != NULL) {
		memcpy(st->head, b.buffer.data, b.buffer.size);
		st->head_length = (uint32_t)b.buffer.size;
	}
	actors__body_free(&b);
	return st->head != NULL;
}

/* Packs (once per media change) st->media_packed. */
static bool
media_ready(const api *a, post_state *st)
{
	if (st->media_packed != NULL)
		return true;
	post_view v;
	view_of(st, 0, &v);
	actors__body b;
	actors__body_init(&b);
	pack_media(a, &b.packer, &v);
	st->media_packed = malloc(b.buffer.size);
	if (st->media_packed != NULL) {
		memcpy(st->media_packed, b.buffer.data, b.buffer.size);
		st->media_packed_length = (uint32_t)b.buffer.size;
	}
	actors__body_free(&b);
	return st->media_packed != NULL;
}

static void
on_get(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t viewer = wire_get_u64(&r);
	post_view v;
	view_of(st, viewer, &v);
	answer_buffer b;
	b.bytes = b.inline_bytes;
	b.length = 0;
	b.capacity = sizeof b.inline_bytes;
	b.failed = false;
	msgpack_packer p;
	msgpack_packer_init(&p, &b, answer_write);
	if (m->type == POST_T_SUMMARY) {
		actors__summary s = {st->id, st->author_id, st->likers.count,
			st->comments_count, st->deleted ? 1u : 0u, 0};
		(void)answer_write(&b, (const char *)&s, sizeof s);
	}
	if (m->type != POST_T_SUMMARY || !st->deleted) {
		if (head_ready(st))
			(void)answer_write(&b, (const char *)st->head,
				st->head_length);
		else
			pack_post_head(&p, &v);
		bool media = media_ready(a, st);
		pack_post_rest_at(a, &p, &v, media ? st->media_packed : NULL,
			media ? st->media_packed_length : 0, NULL, NULL);
	}
	if (b.failed)
		reply_code(self, m, API_EUNAVAILABLE, "out of memory");
	else
		actors__reply(self, m, API_OK, NULL, b.bytes, b.length);
	answer_free(&b);
}

/* Publishes st's view for readers on this node (post_views.c): the
 * POST_T_SUMMARY answer for a viewer who has not liked it. */
static void
view_publish(api *a, post_state *st)
{
	st->view_dirty = false;
	if (!st->exists) {
		actors__post_views_remove(a->post_views, st->id, st);
		return;
	}
	actors__summary sum = {st->id, st->author_id, st->likers.count,
		st->comments_count, st->deleted ? 1u : 0u, 0};
	if (st->deleted) {
		actors__post_views_put(a->post_views, st, &sum, NULL, 0, 0,
			NULL, 0);
		return;
	}
	post_view v;
	view_of(st, 0, &v);
	answer_buffer b;
	b.bytes = b.inline_bytes;
	b.length = 0;
	b.capacity = sizeof b.inline_bytes;
	b.failed = false;
	msgpack_packer p;
	msgpack_packer_init(&p, &b, answer_write);
	if (head_ready(st))
		(void)answer_write(&b, (const char *)st->head,
			st->head_length);
	else
		pack_post_head(&p, &v);
	size_t liked_at = 0;
	bool media = media_ready(a, st);
	pack_post_rest_at(a, &p, &v, media ? st->media_packed : NULL,
		media ? st->media_packed_length : 0, &b.length, &liked_at);
	uint64_t likers[POST_VIEW_LIKERS_MAX];
	uint32_t n = 0;
	for (uint32_t i = 0; i < st->likers.capacity &&
		st->likers.count <= POST_VIEW_LIKERS_MAX; i++)
		if (st->likers.slots[i] != 0)
			likers[n++] = st->likers.slots[i];
	if (b.failed) {
		actors__post_views_remove(a->post_views, st->id, st);
	} else {
		ACTORS_ASSERT(liked_at < b.length);
		ACTORS_ASSERT(b.bytes[liked_at] == 0xc2); /* false */
		actors__post_views_put(a->post_views, st, &sum, b.bytes,
			b.length, liked_at, likers, st->likers.count);
	}
	answer_free(&b);
}

static void
on_delete(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t viewer = wire_get_u64(&r);
	if (viewer != st->author_id) {
		reply_code(self, m, API_EFORBIDDEN, "not the author");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, POST_T_DELETE, 0);
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, st->id);
	int rc = post_write(a, self, st, POST_R_DELETED, &w, &cookie);
	wire_free(&w);
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

/* A like or unlike by viewer at at_ms (0: unknown), answered to `to`. */
static void
like_apply(api *a, rt_actor *self, post_state *st, const actors__reply_to *to,
	uint64_t viewer, uint8_t on, uint64_t at_ms)
{
	actors__cookie cookie = actors__cookie_make(to, POST_T_LIKE, on);
	int rc;
	if (likers_has(&st->likers, viewer) == (on != 0)) {
		rc = actors__barrier(a, self, &cookie);
	} else {
		wire_writer w;
		wire_init(&w);
		wire_u64(&w, viewer);
		wire_u8(&w, on);
		wire_u64(&w, at_ms);
		rc = post_write(a, self, st, POST_R_LIKE, &w, &cookie);
		wire_free(&w);
		if (rc == 0 && on) {
			unsigned char i[16];
			wire_writer iw = {i, 0, sizeof i, false};
			wire_u64(&iw, st->author_id);
			wire_f64(&iw, POST_LIKE_AFFINITY_WEIGHT);
			(void)rt_send_copy(self,
				rt_addr_make(ACTORS_KIND_USER, viewer),
				USER_T_INTERACTION, i, sizeof i);
		}
	}
	if (rc != 0)
		actors__reply_later(self, to, rc, "journal unavailable", NULL,
			0);
}

/* POST_T_LIKE (asked directly): u64 viewer, u8 like. */
static void
on_like(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t viewer = wire_get_u64(&r);
	uint8_t on = wire_get_u8(&r);
	if (!wire_done(&r) || viewer == 0) {
		reply_code(self, m, API_EINVALID, "malformed like");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	like_apply(a, self, st, &to, viewer, on, rt_wall_ms(a->rt));
}

/* A comment by viewer (username), answered to `to`; mentions is the
 * u32 count and ids the client layer resolved (may be empty). */
static void
comment_apply(api *a, rt_actor *self, post_state *st,
	const actors__reply_to *to, uint64_t viewer, const char *username,
	size_t username_length, const char *text, size_t text_length,
	const void *mentions, size_t mentions_length)
{
	/* A comment lives with its post and is addressed through it, so its
	 * id carries the post's partition: ids then increase in insertion
	 * order within the post (one generator per node). */
	uint64_t id = actors__idgen_next(&a->ids, actors__id_partition(st->id),
		rt_wall_ms(a->rt));
	actors__cookie cookie = actors__cookie_make(to, POST_T_COMMENT_ADD,
		id);
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, id);
	wire_u64(&w, viewer);
	wire_strn(&w, username, username_length);
	wire_strn(&w, text, text_length);
	wire_bytes(&w, mentions, mentions_length);
	int rc = post_write(a, self, st, POST_R_COMMENT, &w, &cookie);
	wire_free(&w);
	if (rc != 0) {
		actors__reply_later(self, to, rc, "journal unavailable", NULL,
			0);
		return;
	}
	unsigned char i[16];
	wire_writer iw = {i, 0, sizeof i, false};
	wire_u64(&iw, st->author_id);
	wire_f64(&iw, POST_COMMENT_AFFINITY_WEIGHT);
	(void)rt_send_copy(self, rt_addr_make(ACTORS_KIND_USER, viewer),
		USER_T_INTERACTION, i, sizeof i);
}

/* POST_T_COMMENT_ADD (asked directly): u64 viewer, str username, str
 * text. */
static void
on_comment_add(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t viewer = wire_get_u64(&r);
	size_t username_length, text_length;
	const char *username = wire_get_str(&r, API_USERNAME_BYTES_MAX,
		&username_length);
	const char *text = wire_get_str(&r, API_COMMENT_CHARACTERS_MAX * 4,
		&text_length);
	if (!wire_done(&r) || viewer == 0 || username == NULL ||
		text == NULL) {
		reply_code(self, m, API_EINVALID, "malformed comment");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	comment_apply(a, self, st, &to, viewer, username, username_length,
		text, text_length, NULL, 0);
}

/* POST_T_LIKE_FWD and POST_T_COMMENT_FWD: the acting user's actor took
 * a rate-limit token and forwarded the request with the client's
 * reply-to, so the answer goes straight back to the client. */
static void
on_forwarded(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	actors__reply_to to;
	wire_get_reply_to(&r, &to);
	uint64_t viewer = wire_get_u64(&r);
	if (r.failed || viewer == 0)
		return; /* nobody to answer */
	if (!st->exists || st->deleted) {
		actors__reply_later(self, &to, API_ENOTFOUND, "no such post",
			NULL, 0);
		if (!st->exists)
			rt_request_passivate(self);
		return;
	}
	if (m->type == POST_T_LIKE_FWD) {
		uint8_t on = wire_get_u8(&r);
		uint64_t at = wire_get_u64(&r);
		/* The caller's deadline (senders before it was kept send
		 * none): a like its caller gave up on may have been
		 * overtaken by the caller's next like or unlike. */
		uint64_t deadline = r.offset < r.length ? wire_get_u64(&r)
							: 0;
		if (!wire_done(&r)) {
			actors__reply_later(self, &to, API_EINVALID,
				"malformed like", NULL, 0);
			return;
		}
		if (actors__ask_expired(a, deadline)) {
			actors__reply_later(self, &to, API_EUNAVAILABLE,
				"deadline passed", NULL, 0);
			return;
		}
		like_apply(a, self, st, &to, viewer, on, at);
		return;
	}
	size_t username_length, text_length;
	const char *username = wire_get_str(&r, API_USERNAME_BYTES_MAX,
		&username_length);
	const char *text = wire_get_str(&r, API_COMMENT_CHARACTERS_MAX * 4,
		&text_length);
	if (r.failed || username == NULL || text == NULL) {
		actors__reply_later(self, &to, API_EINVALID,
			"malformed comment", NULL, 0);
		return;
	}
	comment_apply(a, self, st, &to, viewer, username, username_length,
		text, text_length, m->payload + r.offset, m->size - r.offset);
}

static void
on_comment_delete(api *a, rt_actor *self, post_state *st,
	const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t viewer = wire_get_u64(&r);
	uint64_t comment_id = wire_get_u64(&r);
	if (!wire_done(&r)) {
		reply_code(self, m, API_EINVALID, "malformed request");
		return;
	}
	comment *c = comment_find(st, comment_id);
	if (c == NULL) {
		reply_code(self, m, API_ENOTFOUND, "no such comment");
		return;
	}
	if (viewer != c->author_id && viewer != st->author_id) {
		reply_code(self, m, API_EFORBIDDEN,
			"neither the comment's nor the post's author");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to,
		POST_T_COMMENT_DELETE, comment_id);
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, comment_id);
	int rc = post_write(a, self, st, POST_R_COMMENT_DELETED, &w, &cookie);
	wire_free(&w);
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

/* Answer: u8 more, u64 last id, then a msgpack array of comments with ids
 * above the boundary, oldest first. */
static void
on_comments(rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t boundary = wire_get_u64(&r);
	uint32_t limit = wire_get_u32(&r);
	if (!wire_done(&r) || limit == 0 || limit > API_PAGE_LIMIT_MAX) {
		reply_code(self, m, API_EINVALID, "malformed page");
		return;
	}
	uint32_t start = comments_lower_bound(st, boundary + 1);
	if (boundary == UINT64_MAX)
		start = st->comments_count;
	uint32_t n = st->comments_count - start;
	bool more = n > limit;
	if (more)
		n = limit;
	actors__body b;
	actors__body_init(&b);
	unsigned char head[9];
	head[0] = more;
	uint64_t last = n > 0 ? st->comments[start + n - 1].id : 0;
	for (int k = 0; k < 8; k++)
		head[1 + k] = (unsigned char)(last >> (8 * k));
	msgpack_sbuffer_write(&b.buffer, (const char *)head, sizeof head);
	msgpack_pack_array(&b.packer, n);
	for (uint32_t i = 0; i < n; i++)
		pack_comment(&b.packer, st->id, &st->comments[start + i]);
	actors__reply(self, m, API_OK, NULL, b.buffer.data, b.buffer.size);
	actors__body_free(&b);
}

/* A post whose media is still processing asks the media actor to say
 * when it settles (answered at once if it already has); the answer
 * arrives as POST_T_MEDIA. Registering twice is harmless, so this runs
 * at creation and again at every activation. */
static void
watch_media(rt_actor *self, const post_state *st)
{
	if (!st->exists || st->deleted || st->media_id == 0 ||
		strcmp(st->media_status, "processing") != 0)
		return;
	int rc = media_watch_send(self, st->media_id, st->author_id,
		POST_T_MEDIA, st->id);
	if (rc != 0)
		rt_log(rt_actor_runtime(self), RT_LOG_WARN, "post",
			"media watch not sent (next activation retries): %d",
			rc);
}

static void
on_effect(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	ps_effect_header h;
	const void *payload;
	size_t length;
	if (ps_effect_parse(m->payload, m->size, &h, &payload, &length) != 0)
		return;
	actors__cookie cookie = {h.source_kind, ACTORS_T_EFFECT_CONFIRM,
		h.source_id, 0, h.sequence};
	int rc;
	if (st->exists) {
		rc = actors__barrier(a, self, &cookie);
	} else {
		wire_writer w;
		wire_init(&w);
		wire_bytes(&w, payload, length);
		rc = post_write(a, self, st, POST_R_INIT, &w, &cookie);
		wire_free(&w);
		if (rc == 0)
			watch_media(self, st);
	}
	if (rc != 0)
		rt_log(a->rt, RT_LOG_WARN, "post",
			"creation not applied (will be re-sent): %d", rc);
}

static void
on_media(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t media_id = wire_get_u64(&r);
	if (r.failed || media_id != st->media_id)
		return;
	actors__cookie cookie = {0, POST_T_MEDIA, 0, 0, 0};
	char before[sizeof st->media_status];
	memcpy(before, st->media_status, sizeof before);
	wire_writer w;
	wire_init(&w);
	wire_bytes(&w, m->payload, m->size);
	int rc = post_write(a, self, st, POST_R_MEDIA, &w, &cookie);
	wire_free(&w);
	if (rc != 0 || !st->exists || st->deleted ||
		strcmp(before, st->media_status) == 0)
		return;
	/* "post.updated": the author's actor tells the streams that have
	 * the post (its own and its followers'). */
	post_view v;
	view_of(st, 0, &v);
	actors__body b;
	actors__body_init(&b);
	unsigned char head[9];
	for (int k = 0; k < 8; k++)
		head[k] = (unsigned char)(st->id >> (8 * k));
	head[8] = API_EVENT_POST_UPDATED;
	msgpack_sbuffer_write(&b.buffer, (const char *)head, sizeof head);
	pack_post(a, &b.packer, &v);
	(void)rt_send_copy(self, rt_addr_make(ACTORS_KIND_USER, st->author_id),
		USER_T_POST_EVENT, b.buffer.data, (uint32_t)b.buffer.size);
	actors__body_free(&b);
}

static void
answer_durable(rt_actor *self, post_state *st, const actors__cookie *cookie,
	int code)
{
	actors__reply_to to = actors__cookie_reply_to(cookie);
	if (code != API_OK) {
		actors__reply_later(self, &to, code, "journal failed", NULL, 0);
		return;
	}
	actors__body b;
	actors__body_init(&b);
	switch (cookie->event) {
	case POST_T_LIKE:
		msgpack_pack_map(&b.packer, 2);
		actors__pack_key(&b.packer, "liked");
		msgpack_pack_bool(&b.packer, cookie->extra != 0);
		actors__pack_key(&b.packer, "likes_count");
		msgpack_pack_uint32(&b.packer, st->likers.count);
		break;
	case POST_T_COMMENT_ADD: {
		const comment *c = comment_find(st, cookie->extra);
		if (c == NULL)
			msgpack_pack_nil(&b.packer);
		else
			pack_comment(&b.packer, st->id, c);
		break;
	}
	default: /* deletes answer 204: no body */
		break;
	}
	actors__reply_later(self, &to, API_OK, NULL, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
}

static void
on_durable(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	ps_durable_notice n;
	ACTORS_ASSERT(m->size == sizeof n);
	memcpy(&n, m->payload, sizeof n);
	actors__cookie cookie;
	ACTORS_ASSERT(n.cookie_bytes == sizeof cookie);
	memcpy(&cookie, n.cookie, sizeof cookie);
	int code = actors__notice_code(n.status);
	if (code == API_OK) {
		if (a->store == NULL)
			st->durable_lsn = UINT64_MAX;
		else if (n.lsn > st->durable_lsn)
			st->durable_lsn = n.lsn;
		actors__outbox_run(a, self, &st->outbox, st->durable_lsn,
			&st->redrive_armed);
	}
	if (cookie.event == ACTORS_T_EFFECT_CONFIRM) {
		ps_effect_header h = {cookie.from_kind, ACTORS_T_EFFECT_CONFIRM,
			cookie.from_id, cookie.extra, 0};
		if (code == API_OK)
			(void)ps_effect_confirm_send(self, &h);
		return;
	}
	if (cookie.event == POST_T_MEDIA)
		return;
	answer_durable(self, st, &cookie, code);
}

static bool
needs_post(uint32_t type)
{
	switch (type) {
	case POST_T_GET:
	case POST_T_DELETE:
	case POST_T_LIKE:
	case POST_T_COMMENT_ADD:
	case POST_T_COMMENT_DELETE:
	case POST_T_COMMENTS:
		return true;
	default:
		return false;
	}
}

static void
post_handle(api *a, rt_actor *self, post_state *st, const rt_message *m)
{
	if (m->type == POST_T_LIKE_FWD || m->type == POST_T_COMMENT_FWD) {
		on_forwarded(a, self, st, m);
		return;
	}
	if (needs_post(m->type) && (!st->exists || st->deleted)) {
		reply_code(self, m, API_ENOTFOUND, "no such post");
		if (!st->exists)
			rt_request_passivate(self);
		return;
	}
	switch (m->type) {
	case ACTORS_T_DURABLE:
		on_durable(a, self, st, m);
		break;
	case ACTORS_T_EFFECT_CONFIRM: {
		ps_effect_confirm c;
		if (m->size == sizeof c) {
			memcpy(&c, m->payload, sizeof c);
			(void)ps_outbox_confirm(&st->outbox, c.sequence);
			rt_mark_dirty(self);
		}
		break;
	}
	case ACTORS_T_RESEND:
		actors__outbox_run(a, self, &st->outbox, st->durable_lsn,
			&st->redrive_armed);
		break;
	case ACTORS_T_REDRIVE:
		actors__outbox_redrive(a, self, &st->outbox, st->durable_lsn,
			&st->redrive_armed);
		break;
	case POST_T_INIT:
		on_effect(a, self, st, m);
		break;
	case POST_T_SUMMARY:
		if (!st->exists) {
			reply_code(self, m, API_ENOTFOUND, "no such post");
			rt_request_passivate(self);
			break;
		}
		on_get(a, self, st, m);
		break;
	case POST_T_GET:
		on_get(a, self, st, m);
		break;
	case POST_T_DELETE:
		on_delete(a, self, st, m);
		break;
	case POST_T_LIKE:
		on_like(a, self, st, m);
		break;
	case POST_T_COMMENT_ADD:
		on_comment_add(a, self, st, m);
		break;
	case POST_T_COMMENT_DELETE:
		on_comment_delete(a, self, st, m);
		break;
	case POST_T_COMMENTS:
		on_comments(self, st, m);
		break;
	case POST_T_MEDIA:
		on_media(a, self, st, m);
		break;
	default:
		if (m->correlation != 0 && !(m->flags & RT_MESSAGE_F_REPLY))
			reply_code(self, m, API_EINVALID, "unknown request");
		break;
	}
}

static void
post_on_message(rt_actor *self, void *state, const rt_message *m)
{
	post_state *st = state;
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
	post_handle(a, self, st, m);
	/* Before any reply of this turn can be answered to a client (they
	 * wait for durable notices, later turns). */
	if (st->view_dirty)
		view_publish(a, st);
}

bool
actors__post_owes(const void *state)
{
	const post_state *st = state;
	return st->outbox.count > 0;
}

static void
post_on_passivate(rt_actor *self, void *state)
{
	post_state *st = state;
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
	actors__post_views_remove(a->post_views, st->id, st);
	st->view_dirty = false;
	actors__passivate_owing(a, self, actors__post_owes(st));
}

static int
post_on_activate(rt_actor *self, void *state, bool fresh)
{
	post_state *st = state;
	if (fresh)
		return 0;
	/* Everything loaded is durable; records written from now on wait
	 * for their notices (UINT64_MAX here sent their effects early). */
	api *a = actors__api_of(rt_actor_runtime(self));
	st->durable_lsn = a->store == NULL ? UINT64_MAX
		: ps_journal_durable_lsn(ps_node_journal(a->store));
	ps_outbox_reset_sent(&st->outbox);
	actors__outbox_run(actors__api_of(rt_actor_runtime(self)), self,
		&st->outbox, UINT64_MAX, &st->redrive_armed);
	watch_media(self, st);
	view_publish(a, st);
	return 0;
}

static void
post_free_state(void *state)
{
	post_state *st = state;
	free(st->caption);
	free(st->head);
	free(st->media_packed);
	free(st->likers.slots);
	for (uint32_t i = 0; i < st->comments_count; i++)
		free(st->comments[i].text);
	free(st->comments);
	ps_outbox_free(&st->outbox);
	memset(st, 0, sizeof *st);
}

/* ---- snapshots (msgpack) -------------------------------------------------
 * [version, id, author, exists, deleted, username, caption, media id,
 *  media status, media hash, likers(bin u64s), comments([[id, author,
 *  username, text]...]), outbox(bin)] */

#define POST_SNAPSHOT_VERSION 1u
#define POST_SNAPSHOT_FIELDS 13u

static int
buffer_write(void *data, const char *bytes, size_t length)
{
	return rt_buffer_append(data, bytes, length) == 0 ? 0 : -1;
}

static int
post_encode_state(const void *state, rt_buffer *out)
{
	const post_state *st = state;
	msgpack_packer p;
	msgpack_packer_init(&p, out, buffer_write);
	msgpack_pack_array(&p, POST_SNAPSHOT_FIELDS);
	msgpack_pack_uint32(&p, POST_SNAPSHOT_VERSION);
	msgpack_pack_uint64(&p, st->id);
	msgpack_pack_uint64(&p, st->author_id);
	msgpack_pack_bool(&p, st->exists);
	msgpack_pack_bool(&p, st->deleted);
	actors__pack_str(&p, st->username);
	actors__pack_str(&p, st->caption != NULL ? st->caption : "");
	msgpack_pack_uint64(&p, st->media_id);
	actors__pack_str(&p, st->media_status);
	actors__pack_str(&p, st->media_hash);
	msgpack_pack_bin(&p, st->likers.count * sizeof(uint64_t));
	for (uint32_t i = 0; i < st->likers.capacity; i++)
		if (st->likers.slots[i] != 0)
			msgpack_pack_bin_body(&p, &st->likers.slots[i],
				sizeof(uint64_t));
	msgpack_pack_array(&p, st->comments_count);
	for (uint32_t i = 0; i < st->comments_count; i++) {
		const comment *c = &st->comments[i];
		msgpack_pack_array(&p, 4);
		msgpack_pack_uint64(&p, c->id);
		msgpack_pack_uint64(&p, c->author_id);
		actors__pack_str(&p, c->username);
		actors__pack_str(&p, c->text);
	}
	size_t n = ps_outbox_encoded_bytes(&st->outbox);
	unsigned char *bytes = malloc(n ? n : 1);
	if (bytes == NULL)
		return RT_ENOMEM;
	ps_outbox_encode(&st->outbox, bytes);
	msgpack_pack_bin(&p, n);
	msgpack_pack_bin_body(&p, bytes, n);
	free(bytes);
	return 0;
}

static bool
copy_str(const msgpack_object *o, char *buf, size_t size)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
		return false;
	if (o->via.str.size > 0) /* an empty string's ptr may be NULL */
		memcpy(buf, o->via.str.ptr, o->via.str.size);
	buf[o->via.str.size] = '\0';
	return true;
}

static int
decode_comments(post_state *st, const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return RT_ECORRUPT;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *c = &o->via.array.ptr[i];
		if (c->type != MSGPACK_OBJECT_ARRAY || c->via.array.size != 4)
			return RT_ECORRUPT;
		const msgpack_object *f = c->via.array.ptr;
		if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
			f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
			f[3].type != MSGPACK_OBJECT_STR)
			return RT_ECORRUPT;
		comment cm;
		memset(&cm, 0, sizeof cm);
		cm.id = f[0].via.u64;
		cm.author_id = f[1].via.u64;
		if (!copy_str(&f[2], cm.username, sizeof cm.username))
			return RT_ECORRUPT;
		cm.text = malloc(f[3].via.str.size + 1);
		if (cm.text == NULL)
			return RT_ENOMEM;
		if (f[3].via.str.size > 0) /* else ptr may be NULL */
			memcpy(cm.text, f[3].via.str.ptr, f[3].via.str.size);
		cm.text[f[3].via.str.size] = '\0';
		if (comment_insert(st, &cm) <= 0) {
			free(cm.text);
			return RT_ECORRUPT;
		}
	}
	return 0;
}

static int
decode_fields(post_state *st, const msgpack_object *f)
{
	if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		f[0].via.u64 != POST_SNAPSHOT_VERSION ||
		f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		f[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		f[3].type != MSGPACK_OBJECT_BOOLEAN ||
		f[4].type != MSGPACK_OBJECT_BOOLEAN ||
		f[7].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		f[6].type != MSGPACK_OBJECT_STR || f[10].type != MSGPACK_OBJECT_BIN ||
		f[12].type != MSGPACK_OBJECT_BIN)
		return RT_ECORRUPT;
	st->id = f[1].via.u64;
	st->author_id = f[2].via.u64;
	st->exists = f[3].via.boolean;
	st->deleted = f[4].via.boolean;
	if (!copy_str(&f[5], st->username, sizeof st->username) ||
		!copy_str(&f[8], st->media_status, sizeof st->media_status) ||
		!copy_str(&f[9], st->media_hash, sizeof st->media_hash))
		return RT_ECORRUPT;
	st->caption = malloc(f[6].via.str.size + 1);
	if (st->caption == NULL)
		return RT_ENOMEM;
	if (f[6].via.str.size > 0) /* else ptr may be NULL */
		memcpy(st->caption, f[6].via.str.ptr, f[6].via.str.size);
	st->caption[f[6].via.str.size] = '\0';
	st->media_id = f[7].via.u64;
	if (f[10].via.bin.size % sizeof(uint64_t) != 0)
		return RT_ECORRUPT;
	for (uint32_t i = 0; i < f[10].via.bin.size / sizeof(uint64_t); i++) {
		uint64_t v;
		memcpy(&v, f[10].via.bin.ptr + i * sizeof v, sizeof v);
		if (v == 0 || likers_add(&st->likers, v) < 0)
			return RT_ECORRUPT;
	}
	int rc = decode_comments(st, &f[11]);
	if (rc != 0)
		return rc;
	size_t consumed;
	if (ps_outbox_decode(&st->outbox, f[12].via.bin.ptr,
		    f[12].via.bin.size, &consumed) != 0 ||
		consumed != f[12].via.bin.size)
		return RT_ECORRUPT;
	return 0;
}

static int
post_decode_state(void *state, const void *bytes, size_t length)
{
	post_state *st = state;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = RT_ECORRUPT;
	/* engage_unpack checks the announced sizes first: a few bytes
	 * announcing a huge map made msgpack-c reserve gigabytes. */
	if (engage_unpack(bytes, length, &u) == 0 &&
		u.data.type == MSGPACK_OBJECT_ARRAY &&
		u.data.via.array.size == POST_SNAPSHOT_FIELDS)
		rc = decode_fields(st, u.data.via.array.ptr);
	msgpack_unpacked_destroy(&u);
	if (rc != 0)
		post_free_state(st);
	return rc;
}

void
actors__post_ops(rt_actor_ops *ops)
{
	memset(ops, 0, sizeof *ops);
	ops->name = "post";
	ops->state_size = sizeof(post_state);
	ops->mailbox_messages_max = POST_MAILBOX_MESSAGES_MAX;
	ops->on_activate = post_on_activate;
	ops->on_passivate = post_on_passivate;
	ops->on_message = post_on_message;
	ops->encode_state = post_encode_state;
	ops->decode_state = post_decode_state;
	ops->apply_record = post_apply_record;
	ops->free_state = post_free_state;
}
