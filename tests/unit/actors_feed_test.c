/*
 * actors_feed_test.c — hybrid fan-out and the ranked, paged feed.
 *
 * Goal: a post reaches every follower's feed whether it was pushed or is
 * pulled; crossing the celebrity threshold either way loses nothing;
 * pages never repeat or skip an item while new posts arrive; deleted
 * posts and unfollowed authors disappear at read (and an unfollow frees
 * the author's room in the timeline); malformed cursors are
 * API_EINVALID; the score orders a window as documented.
 * Method: deterministic runtime, no store, a small celebrity threshold
 * (3 followers) in the config; feeds read to the end by cursor and
 * compared as sets of post ids.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "tests/unit/actors_helpers.h"

#include "actors/internal.h"

#define FEED_MAX 512

typedef struct feed_ids {
	uint64_t ids[FEED_MAX];
	uint32_t count;
	uint32_t pages;
} feed_ids;

static void
read_feed(t_env *e, uint64_t reader, uint32_t limit, feed_ids *out,
	void (*between)(t_env *, void *), void *arg)
{
	memset(out, 0, sizeof *out);
	char cursor[128] = "";
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = reader};
	for (int guard = 0; guard < 100; guard++) {
		api_page page = {limit, cursor[0] ? cursor : NULL};
		T_CALL(e, &r, api_feed(e->c, &ctx, &page, t_callback, &r));
		CHECK_MSG(r.code == API_OK, "feed: %d %s", r.code, r.detail);
		const msgpack_object *items = api_body_get(r.body, "items");
		CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
		for (uint32_t i = 0; i < items->via.array.size; i++) {
			CHECK(out->count < FEED_MAX);
			out->ids[out->count++] = api_body_id(
				&items->via.array.ptr[i], "post_id");
		}
		out->pages++;
		if (!api_body_str(r.body, "next_cursor", cursor, sizeof cursor))
			break;
		if (between != NULL)
			between(e, arg);
	}
	t_result_reset(&r);
}

static bool
has(const feed_ids *f, uint64_t id)
{
	for (uint32_t i = 0; i < f->count; i++)
		if (f->ids[i] == id)
			return true;
	return false;
}

static void
check_distinct(const feed_ids *f)
{
	for (uint32_t i = 0; i < f->count; i++)
		for (uint32_t j = i + 1; j < f->count; j++)
			CHECK_MSG(f->ids[i] != f->ids[j], "duplicate %" PRIu64,
				f->ids[i]);
}

static void
small_threshold(api_config *cfg)
{
	t_config(cfg);
	cfg->celebrity_followers_min = 3;
}

TEST(actors_feed_fanout_push)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t a = t_signup(&e, "writer");
	uint64_t f1 = t_signup(&e, "reader1");
	uint64_t f2 = t_signup(&e, "reader2");
	t_follow(&e, f1, "writer", true);
	t_follow(&e, f2, "writer", true);
	uint64_t p1 = t_post(&e, a, "one");
	uint64_t p2 = t_post(&e, a, "two");
	t_settle(&e);
	feed_ids f;
	read_feed(&e, f1, 20, &f, NULL, NULL);
	CHECK_EQ(f.count, 2);
	CHECK(has(&f, p1) && has(&f, p2));
	read_feed(&e, a, 20, &f, NULL, NULL); /* own posts are in own feed */
	CHECK_EQ(f.count, 2);
	/* unfollow: the author's posts leave the feed at read time */
	t_follow(&e, f2, "writer", false);
	t_settle(&e);
	read_feed(&e, f2, 20, &f, NULL, NULL);
	CHECK_EQ(f.count, 0);
	/* delete: gone from every feed */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = a};
	T_CALL(&e, &r, api_post_delete(e.c, &ac, p1, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	read_feed(&e, f1, 20, &f, NULL, NULL);
	CHECK_EQ(f.count, 1);
	CHECK(has(&f, p2) && !has(&f, p1));
	t_result_reset(&r);
	t_close(&e);
}

/* An unfollow takes the author's entries out of the home timeline, so a
 * full ring keeps room for the posts of the people followed now (they
 * were filtered at read, yet pushed the followees' posts off). */
TEST(actors_feed_unfollow_frees_timeline_room)
{
	api_config cfg;
	t_config(&cfg);
	cfg.timeline_entries_max = 10;
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t kept_author = t_signup(&e, "kept");
	uint64_t gone_author = t_signup(&e, "dropped");
	uint64_t reader = t_signup(&e, "reader");
	t_follow(&e, reader, "kept", true);
	t_follow(&e, reader, "dropped", true);
	t_settle(&e);
	uint64_t kept[8];
	for (int i = 0; i < 4; i++) {
		kept[i] = t_post(&e, kept_author, "early");
		t_settle(&e);
	}
	for (int i = 0; i < 6; i++) {
		(void)t_post(&e, gone_author, "gone");
		t_settle(&e);
	}
	t_follow(&e, reader, "dropped", false);
	t_settle(&e);
	for (int i = 4; i < 8; i++) {
		kept[i] = t_post(&e, kept_author, "late");
		t_settle(&e);
	}
	feed_ids f;
	read_feed(&e, reader, 20, &f, NULL, NULL);
	/* 4 + 6 + 4 entries in a ring of 10 would have dropped the four
	 * early posts of the author still followed. */
	CHECK_EQ(f.count, 8);
	for (int i = 0; i < 8; i++)
		CHECK_MSG(has(&f, kept[i]), "post %d missing", i);
	t_close(&e);
}

TEST(actors_feed_celebrity_threshold_crossing)
{
	api_config cfg;
	small_threshold(&cfg);
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t star = t_signup(&e, "star");
	uint64_t fans[5];
	char name[32];
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof name, "fan%d", i);
		fans[i] = t_signup(&e, name);
	}
	for (int i = 0; i < 3; i++)
		t_follow(&e, fans[i], "star", true);
	t_settle(&e);
	uint64_t pushed = t_post(&e, star, "3 followers: pushed");
	t_follow(&e, fans[3], "star", true); /* 4 > 3: celebrity now */
	t_settle(&e);
	uint64_t pulled = t_post(&e, star, "4 followers: pulled");
	t_follow(&e, fans[4], "star", true); /* a follower after the fact */
	t_settle(&e);
	uint64_t pulled2 = t_post(&e, star, "5 followers: pulled");
	/* back below the threshold: pushed again, old pulls still covered */
	t_follow(&e, fans[3], "star", false);
	t_follow(&e, fans[4], "star", false);
	t_settle(&e);
	uint64_t pushed2 = t_post(&e, star, "3 followers again: pushed");
	t_settle(&e);
	feed_ids f;
	for (int i = 0; i < 3; i++) {
		read_feed(&e, fans[i], 2, &f, NULL, NULL);
		check_distinct(&f);
		CHECK_EQ(f.count, 4);
		CHECK(has(&f, pushed) && has(&f, pulled) && has(&f, pulled2) &&
			has(&f, pushed2));
	}
	/* fans 3 and 4 unfollowed: nothing of star's */
	read_feed(&e, fans[3], 20, &f, NULL, NULL);
	CHECK_EQ(f.count, 0);
	/* a new follower of a former celebrity pulls its unpushed posts */
	uint64_t late = t_signup(&e, "late");
	t_follow(&e, late, "star", true);
	t_settle(&e);
	read_feed(&e, late, 20, &f, NULL, NULL);
	CHECK(has(&f, pulled) && has(&f, pulled2));
	t_close(&e);
}

typedef struct arrivals {
	uint64_t author;
	uint32_t posted;
	uint64_t ids[64];
} arrivals;

static void
post_between_pages(t_env *e, void *arg)
{
	arrivals *w = arg;
	char caption[32];
	snprintf(caption, sizeof caption, "late %u", w->posted);
	w->ids[w->posted++] = t_post(e, w->author, caption);
	t_settle(e);
}

TEST(actors_feed_paging_while_posts_arrive)
{
	api_config cfg;
	small_threshold(&cfg);
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t reader = t_signup(&e, "reader");
	uint64_t pusher = t_signup(&e, "pusher");
	uint64_t celeb = t_signup(&e, "celeb");
	t_follow(&e, reader, "pusher", true);
	t_follow(&e, reader, "celeb", true);
	char name[32];
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof name, "extra%d", i);
		t_follow(&e, t_signup(&e, name), "celeb", true);
	}
	t_settle(&e);
	uint64_t before[60];
	for (int i = 0; i < 60; i++) {
		before[i] = t_post(&e, i % 3 == 0 ? celeb : pusher, "x");
		if (i % 7 == 0) {
			/* engagement so ranking reorders within windows */
			t_result r = {0};
			msgpack_unpacked_init(&r.unpacked);
			api_ctx rc = {.user_id = reader};
			T_CALL(&e, &r, api_like(e.c, &rc, before[i], true,
					       t_callback, &r));
			t_result_reset(&r);
		}
	}
	t_settle(&e);
	arrivals w = {.author = pusher};
	feed_ids f;
	read_feed(&e, reader, 7, &f, post_between_pages, &w);
	check_distinct(&f);
	CHECK_EQ(f.count, 60); /* exactly the posts there at the first page */
	for (int i = 0; i < 60; i++)
		CHECK(has(&f, before[i]));
	CHECK(w.posted >= 8);
	for (uint32_t i = 0; i < w.posted; i++)
		CHECK(!has(&f, w.ids[i]));
	/* a new first page shows the late posts */
	read_feed(&e, reader, 50, &f, NULL, NULL);
	check_distinct(&f);
	CHECK_EQ(f.count, 60 + w.posted);
	(void)celeb;
	t_close(&e);
}

TEST(actors_feed_bad_cursor_and_auth)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t u = t_signup(&e, "u1");
	uint64_t v = t_signup(&e, "u2");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = u};
	const char *bad[] = {"x", "", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"};
	for (int i = 0; i < 4; i++) {
		api_page page = {10, bad[i]};
		T_CALL(&e, &r, api_feed(e.c, &ctx, &page, t_callback, &r));
		CHECK_MSG(r.code == (bad[i][0] ? API_EINVALID : API_OK),
			"cursor '%s': %d", bad[i], r.code);
	}
	/* a cursor of another user's feed is not valid for this one */
	actors__cursor cur = {ACTORS_CURSOR_FEED, v, 12345};
	char text[ACTORS_CURSOR_TEXT_BYTES];
	actors__cursor_encode(&cur, text, sizeof text);
	api_page page = {10, text};
	T_CALL(&e, &r, api_feed(e.c, &ctx, &page, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	api_ctx none = {0};
	T_CALL(&e, &r, api_feed(e.c, &none, NULL, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_feed_user_posts_listing)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t u = t_signup(&e, "lister");
	uint64_t ids[30];
	for (int i = 0; i < 30; i++)
		ids[i] = t_post(&e, u, "p");
	t_settle(&e);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	char cursor[128] = "";
	int seen = 0;
	for (int guard = 0; guard < 10; guard++) {
		api_page page = {8, cursor[0] ? cursor : NULL};
		T_CALL(&e, &r, api_user_posts(e.c, &none, "lister", &page,
				       t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		const msgpack_object *items = api_body_get(r.body, "items");
		for (uint32_t i = 0; i < items->via.array.size; i++) {
			CHECK_EQ_U64(api_body_id(&items->via.array.ptr[i],
					     "post_id"),
				ids[29 - seen]);
			seen++;
		}
		if (!api_body_str(r.body, "next_cursor", cursor, sizeof cursor))
			break;
	}
	CHECK_EQ(seen, 30);
	T_CALL(&e, &r, api_user_posts(e.c, &none, "nobody", NULL, t_callback,
			       &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	t_result_reset(&r);
	t_close(&e);
}

/* A name the client resolved before is not asked of the names actor
 * again (fewer messages delivered for the same answer), and the answer,
 * or a failure found after the name (a bad cursor), still comes from a
 * later poll, never inside the call. */
TEST(actors_feed_known_name_is_not_looked_up_again)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t u = t_signup(&e, "known");
	uint64_t post = t_post(&e, u, "p");
	t_settle(&e);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	uint64_t delivered[3];
	for (int pass = 0; pass < 2; pass++) {
		rt_stats st;
		rt_get_stats(e.rt, &st);
		delivered[pass] = st.messages_delivered_total;
		t_result_reset(&r);
		CHECK_EQ(api_user_posts(e.c, &none, "KNOWN", NULL, t_callback,
				 &r),
			0);
		CHECK(!r.done);
		t_wait(&e, &r);
		CHECK_EQ(r.code, API_OK);
		const msgpack_object *items = api_body_get(r.body, "items");
		CHECK_EQ((int)items->via.array.size, 1);
		CHECK_EQ_U64(api_body_id(&items->via.array.ptr[0], "post_id"),
			post);
		t_settle(&e);
	}
	rt_stats st;
	rt_get_stats(e.rt, &st);
	delivered[2] = st.messages_delivered_total;
	CHECK(delivered[2] - delivered[1] < delivered[1] - delivered[0]);
	api_page bad = {10, "not-a-cursor"};
	t_result_reset(&r);
	CHECK_EQ(api_user_posts(e.c, &none, "known", &bad, t_callback, &r), 0);
	CHECK(!r.done);
	t_wait(&e, &r);
	CHECK_EQ(r.code, API_EINVALID);
	T_CALL(&e, &r, api_user_posts(e.c, &none, "unknown", NULL, t_callback,
			       &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	t_result_reset(&r);
	t_close(&e);
}

/* The item of post_id in reader's first feed page, packed, or 0 bytes. */
static size_t
feed_item(t_env *e, uint64_t reader, uint64_t post_id, char *out,
	size_t size)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = reader};
	api_page page = {50, NULL};
	T_CALL(e, &r, api_feed(e->c, &ctx, &page, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
	size_t n = 0;
	for (uint32_t i = 0; i < items->via.array.size; i++) {
		const msgpack_object *it = &items->via.array.ptr[i];
		if (api_body_id(it, "post_id") != post_id)
			continue;
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, *it);
		CHECK(sb.size <= size);
		memcpy(out, sb.data, sb.size);
		n = sb.size;
		msgpack_sbuffer_destroy(&sb);
	}
	t_result_reset(&r);
	return n;
}

/* The same post read directly (an ask to its actor), packed. */
static size_t
post_read(t_env *e, uint64_t reader, uint64_t post_id, char *out,
	size_t size)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = reader};
	T_CALL(e, &r, api_post_get(e->c, &ctx, post_id, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *r.body);
	CHECK(sb.size <= size);
	memcpy(out, sb.data, sb.size);
	size_t n = sb.size;
	msgpack_sbuffer_destroy(&sb);
	t_result_reset(&r);
	return n;
}

static void
like_as(t_env *e, uint64_t who, uint64_t post_id, bool on)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	T_CALL(e, &r, api_like(e->c, &ctx, post_id, on, t_callback, &r));
	CHECK_MSG(r.code == API_OK, "like: %d %s", r.code, r.detail);
	t_result_reset(&r);
}

/* Feed items hydrated from the views post actors publish on their node
 * are the bytes a read of the post gives: counts, liked_by_me (from the
 * copied likers, and asked past POST_VIEW_LIKERS_MAX of them), a like
 * taken back, a comment, a deletion at once after its answer. */
TEST(actors_feed_views_answer_as_reads)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t a = t_signup(&e, "writer");
	uint64_t reader = t_signup(&e, "reader");
	t_follow(&e, reader, "writer", true);
	uint64_t p1 = t_post(&e, a, "one #tag @reader");
	uint64_t p2 = t_post(&e, a, "two");
	t_settle(&e);
	static char want[4096], got[4096];
	uint64_t hits0, misses0;
	actors__post_views_counts(e.a->post_views, &hits0, &misses0);
	size_t n = feed_item(&e, reader, p1, got, sizeof got);
	CHECK(n > 0);
	CHECK(n == post_read(&e, reader, p1, want, sizeof want) &&
		memcmp(got, want, n) == 0);
	uint64_t hits1, misses1;
	actors__post_views_counts(e.a->post_views, &hits1, &misses1);
	CHECK_MSG(hits1 >= hits0 + 2, "views not used: %" PRIu64 " hits",
		hits1 - hits0);

	like_as(&e, reader, p1, true);
	n = feed_item(&e, reader, p1, got, sizeof got);
	CHECK(n == post_read(&e, reader, p1, want, sizeof want) &&
		memcmp(got, want, n) == 0);
	CHECK(memmem(got, n, "liked_by_me\xc3", 12) != NULL);
	/* Another viewer of the same view has not liked it. */
	n = feed_item(&e, a, p1, got, sizeof got);
	CHECK(memmem(got, n, "liked_by_me\xc2", 12) != NULL);
	like_as(&e, reader, p1, false);
	n = feed_item(&e, reader, p1, got, sizeof got);
	CHECK(memmem(got, n, "liked_by_me\xc2", 12) != NULL);
	CHECK(n == post_read(&e, reader, p1, want, sizeof want) &&
		memcmp(got, want, n) == 0);

	/* More likers than a view copies: liked_by_me is asked. */
	like_as(&e, reader, p2, true);
	for (uint32_t i = 0; i < POST_VIEW_LIKERS_MAX + 5; i++) {
		char name[32];
		snprintf(name, sizeof name, "fan%u", i);
		like_as(&e, t_signup(&e, name), p2, true);
	}
	n = feed_item(&e, reader, p2, got, sizeof got);
	CHECK(memmem(got, n, "liked_by_me\xc3", 12) != NULL);
	CHECK(n == post_read(&e, reader, p2, want, sizeof want) &&
		memcmp(got, want, n) == 0);
	n = feed_item(&e, a, p2, got, sizeof got);
	CHECK(memmem(got, n, "liked_by_me\xc2", 12) != NULL);

	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx rc = {.user_id = reader};
	T_CALL(&e, &r, api_comment_add(e.c, &rc, p1, "nice", t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	n = feed_item(&e, reader, p1, got, sizeof got);
	CHECK(n == post_read(&e, reader, p1, want, sizeof want) &&
		memcmp(got, want, n) == 0);
	api_ctx ac = {.user_id = a};
	T_CALL(&e, &r, api_post_delete(e.c, &ac, p1, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ(feed_item(&e, reader, p1, got, sizeof got), 0);
	CHECK(feed_item(&e, reader, p2, got, sizeof got) > 0);
	t_result_reset(&r);
	t_close(&e);
}

/* The views table alone: many posts in and out (runs shifted back on
 * removal), only the owner replaces or withdraws, liked_by_me from the
 * copied likers, more likers than kept is a miss for a viewer. */
TEST(actors_feed_post_views_table)
{
	actors__post_views *v;
	CHECK_EQ(actors__post_views_create(&v), API_OK);
	const unsigned char body[] = {0x81, 0xa1, 'x', 0xc2};
	int owner_a, owner_b;
	for (uint64_t id = 1; id <= 5000; id++) {
		actors__summary s = {id, 7, (uint32_t)id, 0, 0, 0};
		uint64_t liker = 100 + id;
		actors__post_views_put(v, &owner_a, &s, body, sizeof body, 3,
			&liker, 1);
	}
	for (uint64_t id = 1; id <= 5000; id += 2)
		actors__post_views_remove(v, id, &owner_a);
	for (uint64_t id = 2; id <= 5000; id += 4)
		actors__post_views_remove(v, id, &owner_b); /* not its own */
	rt_buffer out = {0};
	for (uint64_t id = 1; id <= 5000; id++) {
		actors__summary s;
		size_t n;
		out.length = 0;
		int rc = actors__post_views_get(v, id, 100 + id, &s, &out, &n);
		CHECK_EQ(rc, id % 2 == 0 ? 1 : 0);
		if (rc == 1) {
			CHECK_EQ_U64(s.likes, id);
			CHECK(n == sizeof body && out.length == n &&
				out.bytes[3] == 0xc3 &&
				memcmp(out.bytes, body, 3) == 0);
			CHECK_EQ(actors__post_views_get(v, id, 1, &s, &out, &n), 1);
			CHECK(n == sizeof body && out.length == 2 * n);
			CHECK(out.bytes[n + 3] == 0xc2);
		} else {
			CHECK(out.length == 0);
		}
	}
	/* Past the likers it copies, a viewer's liked_by_me is asked; a
	 * deleted post answers without a body for anyone. */
	actors__summary s = {9, 7, POST_VIEW_LIKERS_MAX + 1, 0, 0, 0};
	actors__post_views_put(v, &owner_a, &s, body, sizeof body, 3, NULL,
		POST_VIEW_LIKERS_MAX + 1);
	size_t n;
	out.length = 0;
	CHECK_EQ(actors__post_views_get(v, 9, 5, &s, &out, &n), 0);
	s.deleted = 1;
	actors__post_views_put(v, &owner_a, &s, NULL, 0, 0, NULL,
		POST_VIEW_LIKERS_MAX + 1);
	CHECK_EQ(actors__post_views_get(v, 9, 5, &s, &out, &n), 1);
	CHECK(s.deleted == 1 && out.length == 0 && n == 0);
	rt_buffer_free(&out);
	actors__post_views_destroy(v);
}

/* Prefetches read the table without its lock while a post actor grows
 * and shifts it: a writer thread puts and withdraws 20,000 views
 * (stripes grow many times, runs shift back) while this thread
 * prefetches ids in and out of the table; under the sanitizers a read
 * of a freed slot array fails the test. Afterwards every view still
 * answers. */
typedef struct views_writer {
	actors__post_views *v;
	int owner;
	atomic_bool done;
} views_writer;

static void *
views_writer_main(void *arg)
{
	views_writer *w = arg;
	const unsigned char body[] = {0x81, 0xa1, 'x', 0xc2};
	for (uint64_t id = 1; id <= 20000; id++) {
		actors__summary s = {id, 7, 1, 0, 0, 0};
		actors__post_views_put(w->v, &w->owner, &s, body, sizeof body,
			3, NULL, 0);
		if (id % 3 == 0)
			actors__post_views_remove(w->v, id - 1, &w->owner);
	}
	atomic_store(&w->done, true);
	return NULL;
}

TEST(actors_feed_post_views_prefetch_while_growing)
{
	views_writer w = {0};
	CHECK_EQ(actors__post_views_create(&w.v), API_OK);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, views_writer_main, &w), 0);
	uint64_t rounds = 0;
	while (!atomic_load(&w.done) || rounds < 1000) {
		uint64_t id = rounds * 7919 % 25000 + 1;
		actors__post_views_prefetch_slot(w.v, id);
		actors__post_views_prefetch(w.v, id);
		rounds++;
	}
	CHECK_EQ(pthread_join(t, NULL), 0);
	rt_buffer out = {0};
	for (uint64_t id = 1; id <= 20000; id++) {
		actors__summary s;
		size_t n;
		int rc = actors__post_views_get(w.v, id, 0, &s, &out, &n);
		CHECK_EQ(rc, id % 3 == 2 && id < 20000 ? 0 : 1);
	}
	rt_buffer_free(&out);
	actors__post_views_destroy(w.v);
}

static uint32_t
position(const feed_ids *f, uint64_t id)
{
	for (uint32_t i = 0; i < f->count; i++)
		if (f->ids[i] == id)
			return i;
	return UINT32_MAX;
}

/* The reader's past likes lift an author's new post above a newer post
 * of an author it never interacted with, among 14 authors it liked (the
 * candidates' affinities come from an index of all of them); a reader
 * without those likes sees the newer post first. */
TEST(actors_feed_affinity_lifts_an_author)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t reader = t_signup(&e, "reader");
	uint64_t other = t_signup(&e, "other");
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	t_follow(&e, reader, "alice", true);
	t_follow(&e, reader, "bob", true);
	t_follow(&e, other, "alice", true);
	t_follow(&e, other, "bob", true);
	char name[32];
	uint64_t liked[14];
	for (int i = 0; i < 14; i++) {
		snprintf(name, sizeof name, "author%d", i);
		uint64_t author = i == 7 ? alice : t_signup(&e, name);
		liked[i] = t_post(&e, author, "liked");
	}
	for (int i = 0; i < 14; i++) {
		t_result r = {0};
		msgpack_unpacked_init(&r.unpacked);
		api_ctx ctx = {.user_id = reader};
		T_CALL(&e, &r, api_like(e.c, &ctx, liked[i], true, t_callback,
				       &r));
		CHECK_EQ(r.code, API_OK);
		t_result_reset(&r);
	}
	t_settle(&e);
	uint64_t b1 = t_post(&e, bob, "first");
	uint64_t a2 = t_post(&e, alice, "second");
	uint64_t b2 = t_post(&e, bob, "third");
	t_settle(&e);
	CHECK(b1 < a2);
	CHECK(a2 < b2);
	feed_ids f;
	read_feed(&e, reader, 50, &f, NULL, NULL);
	CHECK(position(&f, a2) != UINT32_MAX);
	CHECK(position(&f, b2) != UINT32_MAX);
	CHECK(position(&f, a2) < position(&f, b2));
	CHECK(position(&f, b2) < position(&f, b1));
	read_feed(&e, other, 50, &f, NULL, NULL);
	CHECK(position(&f, b2) < position(&f, a2));
	CHECK(position(&f, a2) < position(&f, b1));
	t_close(&e);
}
