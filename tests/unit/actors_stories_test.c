/*
 * actors_stories_test.c — stories through api.h, on the virtual clock.
 *
 * Goal: a story is in its followers' trays while now < expires_at and
 * never after (24 h by default, at most 24 h: 86401 s is refused);
 * trays group by author, newest first, unseen trays first; a story
 * marked seen stays seen; a celebrity's stories are pulled at read; a
 * follower's live stream gets a "story" event; the author's own tray
 * leads its own list; 100 active stories is the cap.
 * Method: a deterministic runtime; rt_det_advance moves virtual time (the
 * runtime's wall clock, which the stories read) to just before and at an
 * expiry.
 */
#include "tests/unit/actors_helpers.h"

#include "actors/engage.h"

#define DAY_MS (24ull * 3600ull * 1000ull)

static uint64_t
story(t_env *e, uint64_t who, uint64_t media, uint32_t expires_in_s)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	rt_det_advance(e->rt, 1); /* distinct, time-ordered ids */
	T_CALL(e, &r, api_story_post(e->c, &ctx, media, expires_in_s,
			      t_callback, &r));
	CHECK_MSG(r.code == API_OK, "story: %d %s", r.code, r.detail);
	uint64_t id = api_body_id(r.body, "story_id");
	CHECK(id != 0);
	CHECK(api_body_get(r.body, "expires_at") != NULL);
	t_result_reset(&r);
	return id;
}

/* The trays bob sees: fills names (usernames in order) and returns how
 * many trays. */
typedef struct tray_view {
	uint32_t count;
	char names[8][32];
	uint32_t items[8];
	bool seen[8][4];
	uint64_t first_item[8];
} tray_view;

static void
trays(t_env *e, uint64_t viewer, tray_view *v)
{
	memset(v, 0, sizeof *v);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = viewer};
	T_CALL(e, &r, api_stories(e->c, &ctx, t_callback, &r));
	CHECK_MSG(r.code == API_OK, "trays: %d %s", r.code, r.detail);
	const msgpack_object *t = api_body_get(r.body, "trays");
	CHECK(t != NULL && t->type == MSGPACK_OBJECT_ARRAY);
	v->count = t->via.array.size;
	for (uint32_t i = 0; i < v->count && i < 8; i++) {
		const msgpack_object *tray = &t->via.array.ptr[i];
		CHECK(api_body_str(api_body_get(tray, "user"), "username",
			v->names[i], sizeof v->names[i]));
		const msgpack_object *items = api_body_get(tray, "items");
		v->items[i] = items->via.array.size;
		v->first_item[i] = api_body_id(&items->via.array.ptr[0],
			"story_id");
		for (uint32_t k = 0; k < items->via.array.size && k < 4; k++)
			v->seen[i][k] = api_body_bool(&items->via.array.ptr[k],
				"seen", false);
	}
	t_result_reset(&r);
}

static int
seen(t_env *e, uint64_t viewer, uint64_t story_id)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = viewer};
	T_CALL(e, &r, api_story_seen(e->c, &ctx, story_id, t_callback, &r));
	int code = r.code;
	t_result_reset(&r);
	return code;
}

TEST(actors_stories_visible_until_expiry_to_the_millisecond)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	t_follow(&e, bob, "alice", true);
	uint64_t before = rt_wall_ms(e.rt) + 1; /* story() advances 1 ms */
	uint64_t id = story(&e, alice, 42, 0);
	CHECK_EQ_U64(rt_wall_ms(e.rt), before);
	tray_view v;
	trays(&e, bob, &v);
	CHECK_EQ(v.count, 1);
	CHECK_STR_EQ(v.names[0], "alice");
	CHECK_EQ_U64(v.first_item[0], id);
	/* 24 h - 1 ms after posting: still there. */
	rt_det_advance(e.rt, DAY_MS - 1);
	CHECK_EQ_U64(rt_wall_ms(e.rt), before + DAY_MS - 1);
	trays(&e, bob, &v);
	CHECK_EQ(v.count, 1);
	/* At 24 h: gone (and the expiry timer collects it). */
	rt_det_advance(e.rt, 1);
	trays(&e, bob, &v);
	CHECK_EQ(v.count, 0);
	trays(&e, alice, &v);
	CHECK_EQ(v.count, 0);
	t_close(&e);
}

TEST(actors_stories_expiry_bounds)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	t_follow(&e, bob, "alice", true);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = alice};
	T_CALL(&e, &r, api_story_post(e.c, &ac, 42, 86401, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	T_CALL(&e, &r, api_story_post(e.c, &ac, 0, 60, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	api_ctx none = {0};
	T_CALL(&e, &r, api_story_post(e.c, &none, 42, 60, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	(void)story(&e, alice, 42, 86400);
	(void)story(&e, alice, 43, 3600);
	tray_view v;
	trays(&e, bob, &v);
	CHECK_EQ(v.items[0], 2);
	rt_det_advance(e.rt, 3600ull * 1000ull);
	trays(&e, bob, &v);
	CHECK_EQ(v.items[0], 1);
	t_result_reset(&r);
	t_close(&e);
}

TEST(actors_stories_seen_state_and_tray_order)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t carol = t_signup(&e, "carol");
	uint64_t bob = t_signup(&e, "bob");
	t_follow(&e, bob, "alice", true);
	t_follow(&e, bob, "carol", true);
	uint64_t a1 = story(&e, alice, 1, 0);
	uint64_t c1 = story(&e, carol, 2, 0);
	uint64_t a2 = story(&e, alice, 3, 0);
	tray_view v;
	trays(&e, bob, &v);
	/* Both unseen: the newest story's author first; items newest first. */
	CHECK_EQ(v.count, 2);
	CHECK_STR_EQ(v.names[0], "alice");
	CHECK_EQ_U64(v.first_item[0], a2);
	CHECK_EQ(v.items[0], 2);
	CHECK_STR_EQ(v.names[1], "carol");
	/* alice's tray seen: carol's, still unseen, comes first. */
	CHECK_EQ(seen(&e, bob, a1), API_OK);
	CHECK_EQ(seen(&e, bob, a2), API_OK);
	CHECK_EQ(seen(&e, bob, a2), API_OK); /* again: stays seen */
	trays(&e, bob, &v);
	CHECK_STR_EQ(v.names[0], "carol");
	CHECK(!v.seen[0][0]);
	CHECK_STR_EQ(v.names[1], "alice");
	CHECK(v.seen[1][0] && v.seen[1][1]);
	/* Seen is per viewer. */
	uint64_t dave = t_signup(&e, "dave");
	t_follow(&e, dave, "alice", true);
	(void)c1;
	rt_det_advance(e.rt, 1);
	trays(&e, dave, &v);
	CHECK_EQ(v.count, 1);
	CHECK(!v.seen[0][0]);
	/* The author sees its own tray first. */
	trays(&e, alice, &v);
	CHECK_EQ(v.count, 1);
	CHECK_STR_EQ(v.names[0], "alice");
	t_close(&e);
}

TEST(actors_stories_of_celebrities_are_pulled)
{
	api_config cfg;
	t_config(&cfg);
	cfg.celebrity_followers_min = 1;
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t celeb = t_signup(&e, "celeb");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t carol = t_signup(&e, "carol");
	t_follow(&e, bob, "celeb", true);
	t_follow(&e, carol, "celeb", true);
	uint64_t id = story(&e, celeb, 7, 0);
	t_settle(&e);
	tray_view v;
	trays(&e, bob, &v);
	CHECK_EQ(v.count, 1);
	CHECK_STR_EQ(v.names[0], "celeb");
	CHECK_EQ_U64(v.first_item[0], id);
	trays(&e, carol, &v);
	CHECK_EQ(v.count, 1);
	rt_det_advance(e.rt, DAY_MS);
	trays(&e, bob, &v);
	CHECK_EQ(v.count, 0);
	t_close(&e);
}

typedef struct t_story_events {
	uint32_t stories;
	uint64_t last_story_id;
} t_story_events;

static void
on_story_event(void *arg, const api_event *ev)
{
	t_story_events *s = arg;
	if (ev->type == API_EVENT_STORY) {
		s->stories++;
		s->last_story_id = api_body_id(ev->data, "story_id");
	}
}

TEST(actors_stories_reach_followers_streams)
{
	api_config cfg;
	t_config(&cfg);
	cfg.celebrity_followers_min = 1;
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t celeb = t_signup(&e, "celeb");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t carol = t_signup(&e, "carol");
	t_follow(&e, bob, "alice", true);
	t_follow(&e, bob, "celeb", true);
	t_follow(&e, carol, "celeb", true);
	(void)story(&e, celeb, 1, 0); /* bob and carol pull celeb from now */
	t_settle(&e);
	t_story_events got = {0};
	api_ctx bc = {.user_id = bob};
	api_stream *s;
	CHECK_EQ(api_stream_open(e.c, &bc, bob, false, 0, on_story_event, &got,
			 &s),
		API_OK);
	t_settle(&e);
	uint64_t pushed = story(&e, alice, 2, 0);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(got.stories, 1);
	CHECK_EQ_U64(got.last_story_id, pushed);
	uint64_t live = story(&e, celeb, 3, 0);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(got.stories, 2);
	CHECK_EQ_U64(got.last_story_id, live);
	api_stream_close(s);
	t_close(&e);
}

TEST_WITH_TIMEOUT(actors_stories_cap_of_one_hundred, 60)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	for (uint32_t i = 0; i < STORIES_ACTIVE_MAX; i++)
		(void)story(&e, alice, 100 + i, 0);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = alice};
	T_CALL(&e, &r, api_story_post(e.c, &ac, 1, 0, t_callback, &r));
	CHECK_EQ(r.code, API_ERATELIMITED);
	rt_det_advance(e.rt, DAY_MS);
	T_CALL(&e, &r, api_story_post(e.c, &ac, 1, 0, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	t_result_reset(&r);
	t_close(&e);
}
