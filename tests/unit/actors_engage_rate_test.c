/*
 * actors_engage_rate_test.c — token buckets per user and action.
 *
 * Goal: the API.md defaults (likes 10/s, posts 30/h, comments 1/s,
 * follows 400/day) allow exactly their burst, refuse the next action
 * with the exact ms until a token is back, and allow it at exactly that
 * ms and not one ms earlier; RateLimit numbers (limit, remaining, reset)
 * are exact; a refusal changes nothing; a custom api_rate is honoured;
 * snapshots round-trip.
 *
 * Method: drive rate_take/rate_peek with explicit times around each
 * refill edge.
 */
#include "actors/engage.h"
#include "tests/test.h"

#define T0 1717200000000ull

static api_rate cfg[RATE_ACTIONS_COUNT];

static void
setup(rate_state *s)
{
	rate_defaults(cfg);
	rate_init(s);
}

/* Takes the whole burst at now, checking remaining counts down. */
static void
drain(rate_state *s, rate_action a, uint64_t now)
{
	rate_result r;
	for (uint32_t i = 1; i <= cfg[a].capacity; i++) {
		CHECK_EQ(rate_take(s, a, &cfg[a], now, &r), 0);
		CHECK_EQ(r.limit, cfg[a].capacity);
		CHECK_EQ(r.remaining, cfg[a].capacity - i);
		CHECK_EQ_U64(r.retry_after_ms, 0);
		CHECK_EQ_U64(r.reset_ms, (uint64_t)i * cfg[a].refill_ms);
	}
}

/* After a drained burst at T0: refused until exactly T0 + refill. */
static void
check_refill_edge(rate_action a)
{
	rate_state s;
	setup(&s);
	drain(&s, a, T0);
	uint64_t refill = cfg[a].refill_ms;
	rate_result r;
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0, &r), API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, refill);
	CHECK_EQ(r.remaining, 0);
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 + refill - 1, &r),
		API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, 1);
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 + refill, &r), 0);
	CHECK_EQ(r.remaining, 0);
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 + refill, &r), API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, refill);
}

TEST(actors_engage_rate_likes_10_per_second)
{
	CHECK_EQ(cfg[RATE_ACTION_LIKE].capacity, 0); /* not set up yet */
	setup(&(rate_state){0});
	CHECK_EQ(cfg[RATE_ACTION_LIKE].capacity, 10);
	CHECK_EQ_U64(cfg[RATE_ACTION_LIKE].refill_ms, 100);
	check_refill_edge(RATE_ACTION_LIKE);
}

TEST(actors_engage_rate_posts_30_per_hour)
{
	setup(&(rate_state){0});
	CHECK_EQ(cfg[RATE_ACTION_POST].capacity, 30);
	CHECK_EQ_U64(cfg[RATE_ACTION_POST].refill_ms, 120000);
	check_refill_edge(RATE_ACTION_POST);
}

TEST(actors_engage_rate_comments_1_per_second)
{
	setup(&(rate_state){0});
	CHECK_EQ(cfg[RATE_ACTION_COMMENT].capacity, 1);
	check_refill_edge(RATE_ACTION_COMMENT);
}

TEST(actors_engage_rate_follows_400_per_day)
{
	setup(&(rate_state){0});
	CHECK_EQ(cfg[RATE_ACTION_FOLLOW].capacity, 400);
	CHECK_EQ_U64(cfg[RATE_ACTION_FOLLOW].refill_ms, 216000);
	check_refill_edge(RATE_ACTION_FOLLOW);
}

TEST(actors_engage_rate_headers_between_edges)
{
	rate_state s;
	setup(&s);
	rate_action a = RATE_ACTION_LIKE;
	rate_result r;
	for (int i = 0; i < 3; i++)
		CHECK_EQ(rate_take(&s, a, &cfg[a], T0, &r), 0);
	CHECK_EQ(r.remaining, 7);
	CHECK_EQ_U64(r.reset_ms, 300);
	/* 150 ms later one token is back, the second half-way. */
	CHECK_EQ(rate_peek(&s, a, &cfg[a], T0 + 150, &r), 0);
	CHECK_EQ(r.remaining, 8);
	CHECK_EQ_U64(r.reset_ms, 150);
	CHECK_EQ(rate_peek(&s, a, &cfg[a], T0 + 199, &r), 0);
	CHECK_EQ(r.remaining, 8);
	CHECK_EQ(rate_peek(&s, a, &cfg[a], T0 + 200, &r), 0);
	CHECK_EQ(r.remaining, 9);
	CHECK_EQ(rate_peek(&s, a, &cfg[a], T0 + 300, &r), 0);
	CHECK_EQ(r.remaining, 10);
	CHECK_EQ_U64(r.reset_ms, 0);
	/* A long idle never stores more than the burst. */
	drain(&s, a, T0 + 3600000);
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 + 3600000, &r),
		API_ERATELIMITED);
}

TEST(actors_engage_rate_refusal_changes_nothing)
{
	rate_state s;
	setup(&s);
	rate_action a = RATE_ACTION_COMMENT;
	rate_result r;
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0, &r), 0);
	rate_state before = s;
	for (uint64_t t = T0; t < T0 + 1000; t += 7)
		CHECK_EQ(rate_take(&s, a, &cfg[a], t, &r), API_ERATELIMITED);
	CHECK(memcmp(&before, &s, sizeof s) == 0);
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 + 1000, &r), 0);
	/* Other actions have buckets of their own. */
	CHECK_EQ(rate_take(&s, RATE_ACTION_LIKE, &cfg[RATE_ACTION_LIKE], T0,
			 &r),
		0);
	CHECK_EQ(r.remaining, 9);
}

TEST(actors_engage_rate_custom_config_and_bad_input)
{
	rate_state s;
	rate_init(&s);
	api_rate two_per_minute = {2, 30000};
	rate_result r;
	CHECK_EQ(rate_take(&s, RATE_ACTION_POST, &two_per_minute, T0, &r), 0);
	CHECK_EQ(rate_take(&s, RATE_ACTION_POST, &two_per_minute, T0, &r), 0);
	CHECK_EQ(rate_take(&s, RATE_ACTION_POST, &two_per_minute, T0 + 29999,
			 &r),
		API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, 1);
	CHECK_EQ(rate_take(&s, RATE_ACTION_POST, &two_per_minute, T0 + 30000,
			 &r),
		0);
	api_rate zero = {0, 100}, no_refill = {5, 0};
	api_rate too_long = {2, RATE_WINDOW_MS_MAX};
	CHECK_EQ(rate_take(&s, RATE_ACTION_LIKE, &zero, T0, &r), API_EINVALID);
	CHECK_EQ(rate_take(&s, RATE_ACTION_LIKE, &no_refill, T0, &r),
		API_EINVALID);
	CHECK_EQ(rate_take(&s, RATE_ACTION_LIKE, &too_long, T0, &r),
		API_EINVALID);
	CHECK_EQ(rate_take(&s, RATE_ACTIONS_COUNT, &two_per_minute, T0, &r),
		API_EINVALID);
	CHECK_EQ(rate_peek(&s, RATE_ACTION_LIKE, NULL, T0, &r), API_EINVALID);
}

TEST(actors_engage_rate_clock_step_back_is_bounded)
{
	rate_state s;
	setup(&s);
	rate_action a = RATE_ACTION_LIKE;
	rate_result r;
	drain(&s, a, T0);
	/* The wall clock steps back an hour: at worst one window's wait. */
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 - ENGAGE_HOUR_MS, &r),
		API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, 100);
	CHECK_EQ_U64(r.reset_ms, 1000);
	CHECK_EQ(rate_take(&s, a, &cfg[a], T0 - ENGAGE_HOUR_MS + 100, &r), 0);
}

TEST(actors_engage_rate_snapshot_round_trip)
{
	rate_state s, back;
	setup(&s);
	drain(&s, RATE_ACTION_POST, T0);
	rate_result r;
	CHECK_EQ(rate_take(&s, RATE_ACTION_LIKE, &cfg[0], T0, &r), 0);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(rate_encode(&s, &pk), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	CHECK_EQ(rate_decode(&back, &u.data), 0);
	CHECK(memcmp(&s, &back, sizeof s) == 0);
	/* After the "restart" the refill edges are where they were. */
	CHECK_EQ(rate_take(&back, RATE_ACTION_POST, &cfg[RATE_ACTION_POST],
			 T0 + 119999, &r),
		API_ERATELIMITED);
	CHECK_EQ(rate_take(&back, RATE_ACTION_POST, &cfg[RATE_ACTION_POST],
			 T0 + 120000, &r),
		0);
	const unsigned char short_list[] = {0x92, 0x01, 0x93, 0x00, 0x00, 0x00};
	CHECK_EQ(engage_unpack(short_list, sizeof short_list, &u), 0);
	CHECK_EQ(rate_decode(&back, &u.data), API_EINVALID);
	const unsigned char signed_time[] = {0x92, 0x01, 0x94, 0x00, 0xff, 0x00,
		0x00};
	CHECK_EQ(engage_unpack(signed_time, sizeof signed_time, &u), 0);
	CHECK_EQ(rate_decode(&back, &u.data), API_EINVALID);
	const unsigned char version[] = {0x92, 0x07, 0x94, 0x00, 0x00, 0x00,
		0x00};
	CHECK_EQ(engage_unpack(version, sizeof version, &u), 0);
	CHECK_EQ(rate_decode(&back, &u.data), API_EINVALID);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}
