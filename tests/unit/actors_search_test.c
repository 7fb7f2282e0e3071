/*
 * actors_search_test.c — search through api.h.
 *
 * Goal: users by username prefix (an exact match first, then by
 * followers), hashtags and caption words (newest first), paged without
 * repeats or gaps; results hydrated (users with their picture and
 * follower count, posts as feed items); a deleted post leaves the index;
 * the index is fed by the post and user actors' journaled events, so
 * after a crash (no snapshot of any index shard) every acknowledged user
 * and post is found again.
 * Method: a deterministic runtime for ranking and paging; a forked child
 * on a real node with the journal on for the crash.
 */
#include "tests/unit/actors_helpers.h"

#include <sys/wait.h>
#include <unistd.h>

typedef struct t_hits {
	uint32_t count;
	char names[50][32];
	uint64_t ids[50];
	int64_t followers[50];
	char next[64];
} t_hits;

static void
search(t_env *e, uint64_t viewer, const char *q, api_search_type type,
	uint32_t limit, const char *cursor, t_hits *out)
{
	memset(out, 0, sizeof *out);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = viewer};
	api_page page = {limit, cursor};
	T_CALL(e, &r, api_search(e->c, &ctx, q, type, &page, t_callback, &r));
	CHECK_MSG(r.code == API_OK, "search %s: %d %s", q, r.code, r.detail);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
	out->count = items->via.array.size;
	for (uint32_t i = 0; i < out->count && i < 50; i++) {
		const msgpack_object *it = &items->via.array.ptr[i];
		if (type == API_SEARCH_USERS) {
			CHECK(api_body_str(it, "username", out->names[i],
				sizeof out->names[i]));
			out->ids[i] = api_body_id(it, "user_id");
			out->followers[i] = api_body_int(it, "followers_count",
				-1);
			CHECK(api_body_get(it, "profile_pic_url") != NULL);
		} else {
			out->ids[i] = api_body_id(it, "post_id");
			CHECK(api_body_get(it, "user") != NULL);
			CHECK(api_body_get(it, "likes_count") != NULL);
		}
	}
	if (!api_body_str(r.body, "next_cursor", out->next, sizeof out->next))
		out->next[0] = '\0';
	t_result_reset(&r);
}

TEST(actors_search_users_by_prefix_ranked)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t ali = t_signup(&e, "ali");
	(void)t_signup(&e, "alice");
	(void)t_signup(&e, "alicia");
	(void)t_signup(&e, "alison");
	(void)t_signup(&e, "bob");
	const char *fans[] = {"f1", "f2", "f3"};
	for (int i = 0; i < 3; i++) {
		(void)t_signup(&e, fans[i]);
		t_settle(&e); /* the account, then its index entry, follow */
		uint64_t fan = 0;
		t_hits h;
		search(&e, 0, fans[i], API_SEARCH_USERS, 1, NULL, &h);
		CHECK_EQ(h.count, 1);
		fan = h.ids[0];
		t_follow(&e, fan, "alicia", true);
		if (i < 2)
			t_follow(&e, fan, "alison", true);
		if (i < 1)
			t_follow(&e, fan, "alice", true);
	}
	t_settle(&e);
	t_hits h;
	search(&e, 0, "ali", API_SEARCH_USERS, 10, NULL, &h);
	CHECK_EQ(h.count, 4);
	CHECK_STR_EQ(h.names[0], "ali"); /* exact match first */
	CHECK_EQ_U64(h.ids[0], ali);
	CHECK_STR_EQ(h.names[1], "alicia");
	CHECK_EQ(h.followers[1], 3);
	CHECK_STR_EQ(h.names[2], "alison");
	CHECK_STR_EQ(h.names[3], "alice");
	/* Longer prefixes, case and '@' ignored. */
	search(&e, 0, "@ALIS", API_SEARCH_USERS, 10, NULL, &h);
	CHECK_EQ(h.count, 1);
	CHECK_STR_EQ(h.names[0], "alison");
	search(&e, 0, "a", API_SEARCH_USERS, 10, NULL, &h);
	CHECK_EQ(h.count, 4);
	search(&e, 0, "zzz", API_SEARCH_USERS, 10, NULL, &h);
	CHECK_EQ(h.count, 0);
	/* Paging: one at a time, in rank order, no repeats. */
	const char *order[] = {"ali", "alicia", "alison", "alice"};
	char cursor[64] = "";
	for (int i = 0; i < 4; i++) {
		search(&e, 0, "ali", API_SEARCH_USERS, 1, cursor[0] ? cursor
								   : NULL,
			&h);
		CHECK_EQ(h.count, 1);
		CHECK_STR_EQ(h.names[0], order[i]);
		snprintf(cursor, sizeof cursor, "%s", h.next);
	}
	CHECK_STR_EQ(cursor, "");
	t_close(&e);
}

/* A user's picture comes with the username hits, and a new one replaces
 * it there (the user actor re-indexes on a picture change). */
TEST(actors_search_users_show_their_picture)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t pia = t_signup(&e, "pia");
	(void)t_signup(&e, "pim");
	for (uint64_t pic = 42; pic <= 43; pic++) {
		t_result r = {0};
		msgpack_unpacked_init(&r.unpacked);
		api_ctx ctx = {.user_id = pia};
		T_CALL(&e, &r, api_user_update(e.c, &ctx, NULL, pic,
				       t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		t_result_reset(&r);
		t_settle(&e);
		msgpack_unpacked_init(&r.unpacked);
		api_page page = {10, NULL};
		T_CALL(&e, &r, api_search(e.c, &ctx, "pi", API_SEARCH_USERS,
				       &page, t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		const msgpack_object *items = api_body_get(r.body, "items");
		CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
		CHECK_EQ(items->via.array.size, 2);
		char want[64], got[64];
		snprintf(want, sizeof want, "/v1/media/%llu",
			(unsigned long long)pic);
		bool seen_pia = false, seen_pim = false;
		for (uint32_t i = 0; i < 2; i++) {
			const msgpack_object *it = &items->via.array.ptr[i];
			const msgpack_object *url = api_body_get(it,
				"profile_pic_url");
			CHECK(url != NULL);
			CHECK(api_body_get(it, "pic") == NULL);
			if (api_body_id(it, "user_id") == pia) {
				CHECK(api_body_str(it, "profile_pic_url", got,
					sizeof got));
				CHECK_STR_EQ(got, want);
				seen_pia = true;
			} else {
				CHECK(url->type == MSGPACK_OBJECT_NIL);
				seen_pim = true;
			}
		}
		CHECK(seen_pia && seen_pim);
		t_result_reset(&r);
	}
	t_close(&e);
}

TEST(actors_search_tags_and_words_newest_first)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t p[5];
	for (int i = 0; i < 5; i++) {
		char caption[64];
		snprintf(caption, sizeof caption, "sunny beach day %d #Sun%s",
			i, i % 2 ? " #sea" : "");
		p[i] = t_post(&e, i % 2 ? bob : alice, caption);
	}
	t_settle(&e);
	t_hits h;
	search(&e, alice, "sun", API_SEARCH_TAGS, 10, NULL, &h);
	CHECK_EQ(h.count, 5);
	for (int i = 0; i < 5; i++)
		CHECK_EQ_U64(h.ids[i], p[4 - i]);
	search(&e, alice, "#sea", API_SEARCH_TAGS, 10, NULL, &h);
	CHECK_EQ(h.count, 2);
	CHECK_EQ_U64(h.ids[0], p[3]);
	search(&e, alice, "Beach", API_SEARCH_POSTS, 10, NULL, &h);
	CHECK_EQ(h.count, 5);
	/* Pages of 2: every post once, newest first. */
	char cursor[64] = "";
	uint32_t seen = 0;
	do {
		search(&e, alice, "sun", API_SEARCH_TAGS, 2,
			cursor[0] ? cursor : NULL, &h);
		for (uint32_t i = 0; i < h.count; i++)
			CHECK_EQ_U64(h.ids[i], p[4 - seen - i]);
		seen += h.count;
		snprintf(cursor, sizeof cursor, "%s", h.next);
	} while (cursor[0] != '\0');
	CHECK_EQ(seen, 5);
	/* A deleted post leaves the index. */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx bc = {.user_id = bob};
	T_CALL(&e, &r, api_post_delete(e.c, &bc, p[3], t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	t_settle(&e);
	search(&e, alice, "sea", API_SEARCH_TAGS, 10, NULL, &h);
	CHECK_EQ(h.count, 1);
	CHECK_EQ_U64(h.ids[0], p[1]);
	/* Bad input. */
	api_page page = {0, NULL};
	T_CALL(&e, &r, api_search(e.c, &bc, "", API_SEARCH_TAGS, &page,
			       t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	page.limit = 51;
	T_CALL(&e, &r, api_search(e.c, &bc, "sun", API_SEARCH_TAGS, &page,
			       t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	page.limit = 10;
	page.cursor = "not-a-cursor";
	T_CALL(&e, &r, api_search(e.c, &bc, "sun", API_SEARCH_TAGS, &page,
			       t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	t_result_reset(&r);
	t_close(&e);
}

/* ---- after a crash ------------------------------------------------------- */

#define SEARCH_CRASH_USERS 30

static void
crash_child(void)
{
	t_env e;
	t_open(&e, NULL, false, true);
	uint64_t first = 0;
	for (int i = 0; i < SEARCH_CRASH_USERS; i++) {
		char name[32];
		snprintf(name, sizeof name, "zed%02d", i);
		uint64_t id = t_signup(&e, name);
		if (i == 0)
			first = id;
		char caption[64];
		snprintf(caption, sizeof caption, "#crashtest number %d", i);
		(void)t_post(&e, id, caption);
	}
	(void)first;
	_exit(0); /* crash right after the last ack: no snapshot anywhere */
}

TEST_WITH_TIMEOUT(actors_search_survives_a_crash, 120)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		crash_child();
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"child failed: %d", status);
	t_env e;
	t_open(&e, NULL, false, true);
	t_hits h;
	for (int i = 0; i < 100; i++) {
		search(&e, 0, "crashtest", API_SEARCH_TAGS, 50, NULL, &h);
		if (h.count == SEARCH_CRASH_USERS)
			break;
		t_settle(&e); /* recovery re-sends unconfirmed effects */
	}
	CHECK_EQ(h.count, SEARCH_CRASH_USERS);
	search(&e, 0, "zed", API_SEARCH_USERS, 50, NULL, &h);
	CHECK_EQ(h.count, SEARCH_CRASH_USERS);
	/* And once more after a clean stop and start (snapshots now). */
	t_close(&e);
	t_open(&e, NULL, false, true);
	search(&e, 0, "crashtest", API_SEARCH_TAGS, 50, NULL, &h);
	CHECK_EQ(h.count, SEARCH_CRASH_USERS);
	search(&e, 0, "zed0", API_SEARCH_USERS, 50, NULL, &h);
	CHECK_EQ(h.count, 10);
	t_close(&e);
}
