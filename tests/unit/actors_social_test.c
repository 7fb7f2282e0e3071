/*
 * actors_social_test.c — the social core end to end through api.h.
 *
 * Goal: every behaviour and limit of accounts, follows, posts, likes,
 * comments and listings answers as API.md says, with the edges of each
 * limit (username 30/31, password 7/8/128/129, bio 150/151, caption
 * 2,200/2,201 and 30/31 hashtags, comment 2,200/2,201), bad input
 * (unknown users and posts, invalid names, duplicate signup in any
 * letter case) and exact counters.
 * Method: one runtime in deterministic mode, no store (durability has its
 * own file), the synchronous harness of actors_helpers.h; bodies are
 * checked field by field.
 */
#include "tests/unit/actors_helpers.h"

static void
repeat(char *buf, char ch, size_t n)
{
	memset(buf, ch, n);
	buf[n] = '\0';
}

TEST(actors_social_signup_and_profile)
{
	t_env e;
	t_open(&e, NULL, true, false);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(&e, &r, api_signup(e.c, &none, "Alice", "alice@example.com",
			       "password1", t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	uint64_t alice = api_body_id(r.body, "user_id");
	CHECK(alice != 0);
	/* taken in any letter case */
	T_CALL(&e, &r, api_signup(e.c, &none, "ALICE", "a2@example.com",
			       "password1", t_callback, &r));
	CHECK_EQ(r.code, API_ECONFLICT);
	T_CALL(&e, &r, api_user_get(e.c, &none, "aLiCe", t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ_U64(api_body_id(r.body, "user_id"), alice);
	char name[64];
	CHECK(api_body_str(r.body, "username", name, sizeof name));
	CHECK_STR_EQ(name, "alice");
	CHECK_EQ(api_body_int(r.body, "followers_count", -1), 0);
	CHECK_EQ(api_body_int(r.body, "posts_count", -1), 0);
	/* login: right and wrong password, unknown user */
	T_CALL(&e, &r, api_login(e.c, &none, "alice", "password1", t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ_U64(api_body_id(r.body, "user_id"), alice);
	T_CALL(&e, &r, api_login(e.c, &none, "alice", "password2", t_callback,
			       &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	T_CALL(&e, &r, api_login(e.c, &none, "nobody", "password1",
			       t_callback, &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	T_CALL(&e, &r, api_user_get(e.c, &none, "nobody", t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	T_CALL(&e, &r, api_user_get_by_id(e.c, &none, alice + 1, t_callback,
			       &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_social_signup_limits)
{
	t_env e;
	t_open(&e, NULL, true, false);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	char name[64], pw[200];
	repeat(name, 'a', 30);
	T_CALL(&e, &r, api_signup(e.c, &none, name, "x@example.com",
			       "password1", t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	repeat(name, 'b', 31);
	T_CALL(&e, &r, api_signup(e.c, &none, name, "x@example.com",
			       "password1", t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	const char *bad[] = {"", "with space", "dash-name", "émile", "a/b"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		T_CALL(&e, &r, api_signup(e.c, &none, bad[i], "x@example.com",
				       "password1", t_callback, &r));
		CHECK_MSG(r.code == API_EINVALID, "name '%s'", bad[i]);
	}
	T_CALL(&e, &r, api_signup(e.c, &none, "ok.name_1", "not-an-email",
			       "password1", t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	struct {
		size_t n;
		int code;
	} pws[] = {{7, API_EINVALID}, {8, API_OK}, {128, API_OK},
		{129, API_EINVALID}};
	for (size_t i = 0; i < 4; i++) {
		repeat(pw, 'p', pws[i].n);
		snprintf(name, sizeof name, "pw%zu", i);
		T_CALL(&e, &r, api_signup(e.c, &none, name, "x@example.com", pw,
				       t_callback, &r));
		CHECK_MSG(r.code == pws[i].code, "password %zu: %d", pws[i].n,
			r.code);
	}
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_social_profile_update)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t u = t_signup(&e, "bob");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = u};
	/* 150 code points of a 2-byte letter: 300 bytes, still ok */
	char bio[700] = "";
	for (int i = 0; i < 150; i++)
		strcat(bio, "\xc3\xa9");
	T_CALL(&e, &r, api_user_update(e.c, &ctx, bio, 0, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	char got[700];
	CHECK(api_body_str(r.body, "bio", got, sizeof got));
	CHECK_STR_EQ(got, bio);
	strcat(bio, "x");
	T_CALL(&e, &r, api_user_update(e.c, &ctx, bio, 0, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	T_CALL(&e, &r, api_user_update(e.c, &ctx, "\xff\xfe", 0, t_callback,
			       &r));
	CHECK_EQ(r.code, API_EINVALID);
	T_CALL(&e, &r, api_user_update(e.c, &ctx, NULL, 42, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK(api_body_str(r.body, "profile_pic_url", got, sizeof got));
	api_ctx none = {0};
	T_CALL(&e, &r, api_user_update(e.c, &none, "x", 0, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	t_result_reset(&r);
	t_close(&e);
}

static int64_t
profile_int(t_env *e, const char *name, const char *field)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(e, &r, api_user_get(e->c, &none, name, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	int64_t v = api_body_int(r.body, field, -1);
	t_result_reset(&r);
	return v;
}

TEST(actors_social_follow)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t a = t_signup(&e, "ann");
	uint64_t b = t_signup(&e, "ben");
	t_follow(&e, a, "ben", true);
	t_follow(&e, a, "BEN", true); /* idempotent */
	t_settle(&e);
	CHECK_EQ(profile_int(&e, "ben", "followers_count"), 1);
	CHECK_EQ(profile_int(&e, "ann", "following_count"), 1);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = a};
	T_CALL(&e, &r, api_user_get(e.c, &ctx, "ben", t_callback, &r));
	CHECK(api_body_bool(r.body, "followed_by_me", false));
	T_CALL(&e, &r, api_follow(e.c, &ctx, "ann", true, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID); /* no self-follow */
	T_CALL(&e, &r, api_follow(e.c, &ctx, "ghost", true, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	api_page page = {0, NULL};
	T_CALL(&e, &r, api_follow_list(e.c, &ctx, "ben", false, &page,
			       t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items != NULL && items->via.array.size == 1);
	CHECK_EQ_U64(api_body_id(&items->via.array.ptr[0], "user_id"), a);
	t_follow(&e, a, "ben", false);
	t_follow(&e, a, "ben", false);
	t_settle(&e);
	CHECK_EQ(profile_int(&e, "ben", "followers_count"), 0);
	CHECK_EQ(profile_int(&e, "ann", "following_count"), 0);
	(void)b;
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_social_follow_list_paging)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t star = t_signup(&e, "star");
	(void)star;
	enum { FANS = 45 };
	for (int i = 0; i < FANS; i++) {
		char name[32];
		snprintf(name, sizeof name, "fan%d", i);
		t_follow(&e, t_signup(&e, name), "star", true);
	}
	t_settle(&e);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	char cursor[128] = "";
	int seen = 0, pages = 0;
	uint64_t last = UINT64_MAX;
	for (;;) {
		api_page page = {20, cursor[0] ? cursor : NULL};
		T_CALL(&e, &r, api_follow_list(e.c, &none, "star", false,
				       &page, t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		const msgpack_object *items = api_body_get(r.body, "items");
		for (uint32_t i = 0; i < items->via.array.size; i++) {
			uint64_t id = api_body_id(&items->via.array.ptr[i],
				"user_id");
			CHECK(id < last); /* newest first, no repeats */
			last = id;
			seen++;
		}
		pages++;
		if (!api_body_str(r.body, "next_cursor", cursor, sizeof cursor))
			break;
	}
	CHECK_EQ(seen, FANS);
	CHECK_EQ(pages, 3);
	api_page bad = {20, "not-a-cursor"};
	T_CALL(&e, &r, api_follow_list(e.c, &none, "star", false, &bad,
			       t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	api_page big = {51, NULL};
	T_CALL(&e, &r, api_follow_list(e.c, &none, "star", false, &big,
			       t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_social_posts_limits_and_tags)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t u = t_signup(&e, "poster");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = u};
	static char caption[3000];
	repeat(caption, 'c', 2200);
	T_CALL(&e, &r, api_post_create(e.c, &ctx, caption, 0, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	repeat(caption, 'c', 2201);
	T_CALL(&e, &r, api_post_create(e.c, &ctx, caption, 0, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	caption[0] = '\0';
	for (int i = 0; i < 30; i++) {
		char tag[16];
		snprintf(tag, sizeof tag, "#t%d ", i);
		strcat(caption, tag);
	}
	strcat(caption, "hello @Ann and #T0 again");
	T_CALL(&e, &r, api_post_create(e.c, &ctx, caption, 0, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	const msgpack_object *tags = api_body_get(r.body, "tags");
	CHECK(tags != NULL && tags->via.array.size == 30);
	const msgpack_object *mentions = api_body_get(r.body, "mentions");
	CHECK(mentions != NULL && mentions->via.array.size == 1);
	strcat(caption, " #t30");
	T_CALL(&e, &r, api_post_create(e.c, &ctx, caption, 0, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	api_ctx none = {0};
	T_CALL(&e, &r, api_post_create(e.c, &none, "x", 0, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	t_settle(&e);
	CHECK_EQ(profile_int(&e, "poster", "posts_count"), 2);
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_social_likes_comments_delete)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t author = t_signup(&e, "author");
	uint64_t fan = t_signup(&e, "fan");
	uint64_t other = t_signup(&e, "other");
	uint64_t post = t_post(&e, author, "first #post");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx fc = {.user_id = fan}, oc = {.user_id = other},
		ac = {.user_id = author};
	T_CALL(&e, &r, api_like(e.c, &fc, post, true, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ(api_body_int(r.body, "likes_count", -1), 1);
	T_CALL(&e, &r, api_like(e.c, &fc, post, true, t_callback, &r));
	CHECK_EQ(api_body_int(r.body, "likes_count", -1), 1); /* idempotent */
	T_CALL(&e, &r, api_like(e.c, &oc, post, true, t_callback, &r));
	CHECK_EQ(api_body_int(r.body, "likes_count", -1), 2);
	T_CALL(&e, &r, api_like(e.c, &oc, post, false, t_callback, &r));
	CHECK_EQ(api_body_int(r.body, "likes_count", -1), 1);
	CHECK(!api_body_bool(r.body, "liked", true));
	T_CALL(&e, &r, api_like(e.c, &fc, post + 1, true, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	T_CALL(&e, &r, api_post_get(e.c, &fc, post, t_callback, &r));
	CHECK(api_body_bool(r.body, "liked_by_me", false));
	/* comments: limits, order, paging, delete rights */
	static char text[3000];
	repeat(text, 'w', 2200);
	T_CALL(&e, &r, api_comment_add(e.c, &fc, post, text, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	uint64_t c1 = api_body_id(r.body, "comment_id");
	repeat(text, 'w', 2201);
	T_CALL(&e, &r, api_comment_add(e.c, &fc, post, text, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	uint64_t ids[25];
	ids[0] = c1;
	for (int i = 1; i < 25; i++) {
		snprintf(text, sizeof text, "comment %d", i);
		T_CALL(&e, &r, api_comment_add(e.c, i % 2 ? &oc : &fc, post,
				       text, t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		ids[i] = api_body_id(r.body, "comment_id");
		CHECK(ids[i] > ids[i - 1]);
	}
	api_page p1 = {20, NULL};
	T_CALL(&e, &r, api_comments(e.c, &fc, post, &p1, t_callback, &r));
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK_EQ(items->via.array.size, 20);
	CHECK_EQ_U64(api_body_id(&items->via.array.ptr[0], "comment_id"), c1);
	char cursor[128];
	CHECK(api_body_str(r.body, "next_cursor", cursor, sizeof cursor));
	api_page p2 = {20, cursor};
	T_CALL(&e, &r, api_comments(e.c, &fc, post, &p2, t_callback, &r));
	items = api_body_get(r.body, "items");
	CHECK_EQ(items->via.array.size, 5);
	CHECK_EQ_U64(api_body_id(&items->via.array.ptr[0], "comment_id"),
		ids[20]);
	CHECK(api_body_get(r.body, "next_cursor")->type == MSGPACK_OBJECT_NIL);
	/* ids[1] is other's: fan may not delete it, the post's author may */
	T_CALL(&e, &r, api_comment_delete(e.c, &fc, post, ids[1], t_callback,
			       &r));
	CHECK_EQ(r.code, API_EFORBIDDEN);
	T_CALL(&e, &r, api_comment_delete(e.c, &ac, post, ids[1], t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	T_CALL(&e, &r, api_comment_delete(e.c, &oc, post, ids[3], t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	T_CALL(&e, &r, api_comment_delete(e.c, &oc, post, ids[3], t_callback,
			       &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	T_CALL(&e, &r, api_post_get(e.c, &fc, post, t_callback, &r));
	CHECK_EQ(api_body_int(r.body, "comments_count", -1), 23);
	/* delete by its author only; then gone everywhere */
	T_CALL(&e, &r, api_post_delete(e.c, &fc, post, t_callback, &r));
	CHECK_EQ(r.code, API_EFORBIDDEN);
	T_CALL(&e, &r, api_post_delete(e.c, &ac, post, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK(r.body == NULL);
	T_CALL(&e, &r, api_post_get(e.c, &fc, post, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	T_CALL(&e, &r, api_like(e.c, &fc, post, true, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	T_CALL(&e, &r, api_comment_add(e.c, &fc, post, "late", t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	t_settle(&e);
	CHECK_EQ(profile_int(&e, "author", "posts_count"), 0);
	t_result_reset(&r);
	t_close(&e);
}
