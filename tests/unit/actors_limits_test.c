/*
 * actors_limits_test.c — per-user rate limits and idempotency keys
 * through api.h.
 *
 * Goal: each bucket (likes, posts, comments, follows) refuses the action
 * past its capacity with API_ERATELIMITED, retry_after_ms and the
 * bucket's state, and refills one token per refill_ms of virtual time;
 * a refused action changes nothing. A keyed write repeated with the same
 * body answers the first answer without acting again; another body is
 * API_EIDEMPOTENCY; a repeat while the first runs is API_ECONFLICT; keys
 * expire after idempotency_ttl_ms; after a crash a repeat still replays
 * the first answer.
 * Method: a deterministic runtime (rt_det_advance moves the buckets'
 * clock); a forked child on a real node with the journal on for the
 * crash.
 */
#include "tests/unit/actors_helpers.h"

#include <sys/wait.h>
#include <unistd.h>

typedef struct t_rate {
	int code;
	uint64_t retry_after_ms;
	uint32_t limit, remaining;
	uint64_t reset_ms;
} t_rate;

static void
rate_callback(void *arg, const api_result *res)
{
	t_rate *r = arg;
	r->code = res->code;
	r->retry_after_ms = res->retry_after_ms;
	r->limit = res->rate_limit;
	r->remaining = res->rate_remaining;
	r->reset_ms = res->rate_reset_ms;
}

static t_rate
like_rate(t_env *e, uint64_t who, uint64_t post, bool on)
{
	t_rate r = {1, 0, 0, 0, 0};
	api_ctx ctx = {.user_id = who};
	CHECK_EQ(api_like(e->c, &ctx, post, on, rate_callback, &r), 0);
	for (int i = 0; i < 1000 && r.code == 1; i++)
		api_client_wait(e->c, 100);
	CHECK(r.code != 1);
	return r;
}

static void
limited_config(api_config *cfg)
{
	t_config(cfg);
	cfg->rate_likes = (api_rate){10, 100};     /* 10/s */
	cfg->rate_posts = (api_rate){3, 1200000};  /* 3 per hour */
	cfg->rate_comments = (api_rate){1, 1000};  /* 1/s */
	cfg->rate_follows = (api_rate){2, 43200000}; /* 2 per day */
}

TEST(actors_limits_like_bucket_refills_on_the_virtual_clock)
{
	api_config cfg;
	limited_config(&cfg);
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "like me often");
	for (int i = 0; i < 10; i++) {
		t_rate r = like_rate(&e, bob, post, i % 2 == 0);
		CHECK_EQ(r.code, API_OK);
		if (i % 2 == 0) /* taking a like back spends nothing */
			continue;
		t_rate u = like_rate(&e, bob, post, false);
		CHECK_EQ(u.code, API_OK);
	}
	/* Five likes spent: five more, then refused. */
	for (int i = 0; i < 5; i++)
		CHECK_EQ(like_rate(&e, bob, post, true).code, API_OK);
	t_rate r = like_rate(&e, bob, post, true);
	CHECK_EQ(r.code, API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, 100);
	CHECK_EQ(r.limit, 10);
	CHECK_EQ(r.remaining, 0);
	CHECK_EQ_U64(r.reset_ms, 1000);
	/* 99 ms later: still refused, 1 ms to go. */
	rt_det_advance(e.rt, 99);
	r = like_rate(&e, bob, post, true);
	CHECK_EQ(r.code, API_ERATELIMITED);
	CHECK_EQ_U64(r.retry_after_ms, 1);
	rt_det_advance(e.rt, 1);
	CHECK_EQ(like_rate(&e, bob, post, true).code, API_OK);
	CHECK_EQ(like_rate(&e, bob, post, true).code, API_ERATELIMITED);
	/* A full second refills the whole bucket. */
	rt_det_advance(e.rt, 1000);
	for (int i = 0; i < 10; i++)
		CHECK_EQ(like_rate(&e, bob, post, true).code, API_OK);
	CHECK_EQ(like_rate(&e, bob, post, true).code, API_ERATELIMITED);
	/* Buckets are per user: alice still has hers. */
	CHECK_EQ(like_rate(&e, alice, post, true).code, API_OK);
	t_close(&e);
}

TEST(actors_limits_posts_comments_follows)
{
	api_config cfg;
	limited_config(&cfg);
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	(void)t_signup(&e, "carol");
	(void)t_signup(&e, "dave");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = alice}, bc = {.user_id = bob};
	uint64_t post = 0;
	for (int i = 0; i < 3; i++)
		post = t_post(&e, alice, "one of three");
	T_CALL(&e, &r, api_post_create(e.c, &ac, "one too many", 0,
			       t_callback, &r));
	CHECK_EQ(r.code, API_ERATELIMITED);
	rt_det_advance(e.rt, 1200000);
	T_CALL(&e, &r, api_post_create(e.c, &ac, "a token came back", 0,
			       t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	/* Comments: one per second. */
	T_CALL(&e, &r, api_comment_add(e.c, &bc, post, "first", t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	T_CALL(&e, &r, api_comment_add(e.c, &bc, post, "too soon",
			       t_callback, &r));
	CHECK_EQ(r.code, API_ERATELIMITED);
	rt_det_advance(e.rt, 1000);
	T_CALL(&e, &r, api_comment_add(e.c, &bc, post, "in time", t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	/* The refused comment was never made. */
	api_page page = {50, NULL};
	T_CALL(&e, &r, api_comments(e.c, &bc, post, &page, t_callback, &r));
	CHECK_EQ(api_body_get(r.body, "items")->via.array.size, 2);
	/* Follows: two a day; following again spends nothing. */
	t_follow(&e, bob, "alice", true);
	t_follow(&e, bob, "alice", true);
	t_follow(&e, bob, "carol", true);
	T_CALL(&e, &r, api_follow(e.c, &bc, "dave", true, t_callback, &r));
	CHECK_EQ(r.code, API_ERATELIMITED);
	t_follow(&e, bob, "carol", false); /* unfollowing is free */
	rt_det_advance(e.rt, 43200000);
	t_follow(&e, bob, "dave", true);
	t_result_reset(&r);
	t_close(&e);
}

/* ---- idempotency ---------------------------------------------------------- */

static api_ctx
keyed(uint64_t user, const char *key, uint8_t digest_byte)
{
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.user_id = user;
	ctx.idempotency_key = key;
	memset(ctx.body_digest, digest_byte, sizeof ctx.body_digest);
	return ctx;
}

static int64_t
posts_count(t_env *e, const char *name)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(e, &r, api_user_get(e->c, &none, name, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	int64_t n = api_body_int(r.body, "posts_count", -1);
	t_result_reset(&r);
	return n;
}

TEST(actors_limits_idempotency_keys)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx k1 = keyed(alice, "key-1", 1);
	T_CALL(&e, &r, api_post_create(e.c, &k1, "only once", 0, t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	uint64_t first = api_body_id(r.body, "post_id");
	CHECK(first != 0);
	/* Same key, same body: the first answer, nothing done again. */
	for (int i = 0; i < 3; i++) {
		T_CALL(&e, &r, api_post_create(e.c, &k1, "only once", 0,
				       t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		CHECK_EQ_U64(api_body_id(r.body, "post_id"), first);
	}
	t_settle(&e);
	CHECK_EQ(posts_count(&e, "alice"), 1);
	/* Same key, another body. */
	api_ctx k1b = keyed(alice, "key-1", 2);
	T_CALL(&e, &r, api_post_create(e.c, &k1b, "something else", 0,
			       t_callback, &r));
	CHECK_EQ(r.code, API_EIDEMPOTENCY);
	/* A refused first answer is kept too (400 stays 400). */
	api_ctx k2 = keyed(alice, "key-2", 3);
	T_CALL(&e, &r, api_like(e.c, &k2, 12345, true, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	T_CALL(&e, &r, api_like(e.c, &k2, 12345, true, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	/* While the first runs: conflict. */
	t_result r2 = {0};
	msgpack_unpacked_init(&r2.unpacked);
	api_ctx k3 = keyed(alice, "key-3", 4);
	t_result_reset(&r);
	CHECK_EQ(api_post_create(e.c, &k3, "racing", 0, t_callback, &r), 0);
	CHECK_EQ(api_post_create(e.c, &k3, "racing", 0, t_callback, &r2), 0);
	t_wait(&e, &r);
	t_wait(&e, &r2);
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ(r2.code, API_ECONFLICT);
	t_settle(&e);
	CHECK_EQ(posts_count(&e, "alice"), 2);
	/* Keys live 24 h: after that, the same key acts again. */
	rt_det_advance(e.rt, 24ull * 3600 * 1000);
	T_CALL(&e, &r, api_post_create(e.c, &k1, "only once", 0, t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	CHECK(api_body_id(r.body, "post_id") != first);
	/* Malformed keys. */
	char big[API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
	memset(big, 'k', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	api_ctx kbig = keyed(alice, big, 5);
	T_CALL(&e, &r, api_post_create(e.c, &kbig, "x", 0, t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	t_result_reset(&r);
	t_result_reset(&r2);
	t_close(&e);
}

static void
crash_child(void)
{
	t_env e;
	t_open(&e, NULL, false, true);
	uint64_t alice = t_signup(&e, "alice");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx k = keyed(alice, "before-the-crash", 9);
	T_CALL(&e, &r, api_post_create(e.c, &k, "kept", 0, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	char line[32];
	snprintf(line, sizeof line, "%" PRIu64,
		api_body_id(r.body, "post_id"));
	char path[600];
	snprintf(path, sizeof path, "%s/first_post", test_tmpdir());
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(line, f);
	fclose(f);
	_exit(0); /* crash right after the ack */
}

TEST_WITH_TIMEOUT(actors_limits_idempotent_replay_after_a_crash, 120)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		crash_child();
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"child failed: %d", status);
	char path[600], line[32] = "";
	snprintf(path, sizeof path, "%s/first_post", test_tmpdir());
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	CHECK(fgets(line, sizeof line, f) != NULL);
	fclose(f);
	uint64_t first = strtoull(line, NULL, 10);
	t_env e;
	t_open(&e, NULL, false, true);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(&e, &r, api_user_get(e.c, &none, "alice", t_callback, &r));
	uint64_t alice = api_body_id(r.body, "user_id");
	api_ctx k = keyed(alice, "before-the-crash", 9);
	T_CALL(&e, &r, api_post_create(e.c, &k, "kept", 0, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ_U64(api_body_id(r.body, "post_id"), first);
	CHECK_EQ(posts_count(&e, "alice"), 1);
	t_result_reset(&r);
	t_close(&e);
}
