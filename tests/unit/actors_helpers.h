/*
 * tests/unit/actors_helpers.h — a synchronous harness over the async api
 * for the actors_* tests: one runtime (deterministic unless asked), one
 * api, one client, and calls that wait for their completion and keep a
 * copy of the answer's body.
 */
#ifndef FLOCK_TESTS_ACTORS_HELPERS_H
#define FLOCK_TESTS_ACTORS_HELPERS_H

#include "actors/api.h"
#include "persistence/persistence.h"
#include "runtime/runtime.h"
#include "tests/test.h"

#include <time.h>

typedef struct t_result {
	bool done;
	int code;
	char detail[256];
	msgpack_sbuffer raw;
	msgpack_unpacked unpacked;
	const msgpack_object *body;
} t_result;

typedef struct t_env {
	rt_runtime *rt;
	ps_node *node;
	api *a;
	api_client *c;
	bool deterministic;
	char dir[512];
} t_env;

__attribute__((unused)) static void
t_result_reset(t_result *r)
{
	if (r->raw.data != NULL)
		msgpack_sbuffer_destroy(&r->raw);
	msgpack_unpacked_destroy(&r->unpacked);
	memset(r, 0, sizeof *r);
	msgpack_unpacked_init(&r->unpacked);
}

__attribute__((unused)) static void
t_callback(void *arg, const api_result *res)
{
	t_result *r = arg;
	r->done = true;
	r->code = res->code;
	snprintf(r->detail, sizeof r->detail, "%s",
		res->detail ? res->detail : "");
	msgpack_sbuffer_init(&r->raw);
	if (res->body != NULL) {
		msgpack_packer pk;
		msgpack_packer_init(&pk, &r->raw, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, *res->body);
		size_t off = 0;
		if (msgpack_unpack_next(&r->unpacked, r->raw.data, r->raw.size,
			    &off) == MSGPACK_UNPACK_SUCCESS)
			r->body = &r->unpacked.data;
	}
}

__attribute__((unused)) static void
t_wait(t_env *e, t_result *r)
{
	for (int i = 0; i < 20000 && !r->done; i++)
		api_client_wait(e->c, 100);
	CHECK_MSG(r->done, "call never completed");
}

__attribute__((unused)) static void
t_config(api_config *cfg)
{
	api_config_default(cfg);
	cfg->password_memlimit_bytes = 8192;
	cfg->password_opslimit = 1;
	cfg->password_threads = 0;
	/* No per-user buckets: the core's tests post, like and comment in
	 * bursts; actors_limits_test sets them where it tests them. */
	cfg->rate_likes = (api_rate){0, 0};
	cfg->rate_posts = (api_rate){0, 0};
	cfg->rate_comments = (api_rate){0, 0};
	cfg->rate_follows = (api_rate){0, 0};
}

__attribute__((unused)) static void
t_open(t_env *e, const api_config *cfg, bool deterministic, bool durable)
{
	memset(e, 0, sizeof *e);
	rt_config rc;
	rt_config_default(&rc);
	rc.deterministic = deterministic;
	rc.workers = 2;
	rc.seed = 7;
	rc.start_time_ms = 1750000000000ull;
	rc.passivate_idle_ms = 0;
	rc.log_level = RT_LOG_WARN;
	e->deterministic = deterministic;
	CHECK_EQ(rt_create(&rc, &e->rt), 0);
	api_config local;
	if (cfg == NULL) {
		t_config(&local);
		cfg = &local;
	}
	CHECK_EQ(api_create(e->rt, NULL, cfg, &e->a), 0);
	if (durable) {
		snprintf(e->dir, sizeof e->dir, "%s/data", test_tmpdir());
		ps_node_report report;
		int rc2 = ps_node_open(e->dir, e->rt, NULL, &report, &e->node);
		CHECK_MSG(rc2 == 0, "ps_node_open: %s", ps_strerror(rc2));
		api_bind_store(e->a, e->node);
	}
	CHECK_EQ(rt_start(e->rt), 0);
	CHECK_EQ(api_client_create(e->a, NULL, NULL, &e->c), 0);
}

__attribute__((unused)) static void
t_close(t_env *e)
{
	api_client_destroy(e->c);
	rt_stop(e->rt);
	if (e->node != NULL)
		ps_node_close(e->node);
	api_destroy(e->a);
	rt_destroy(e->rt);
	memset(e, 0, sizeof *e);
}

#define T_CALL(e, r, expr)                                                   \
	do {                                                                 \
		t_result_reset(r);                                           \
		int t_rc__ = (expr);                                         \
		CHECK_MSG(t_rc__ == 0, "%s returned %d", #expr, t_rc__);     \
		t_wait((e), (r));                                            \
	} while (0)

__attribute__((unused)) static uint64_t
t_signup(t_env *e, const char *name)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	char email[64];
	snprintf(email, sizeof email, "%s@example.com", name);
	api_ctx ctx = {0};
	T_CALL(e, &r, api_signup_prehashed(e->c, &ctx, name, email,
			      "$argon2id$v=19$m=8,t=1,p=1$x$y", t_callback,
			      &r));
	CHECK_MSG(r.code == 0, "signup %s: %d %s", name, r.code, r.detail);
	uint64_t id = api_body_id(r.body, "user_id");
	CHECK(id != 0);
	t_result_reset(&r);
	return id;
}

__attribute__((unused)) static void
t_follow(t_env *e, uint64_t who, const char *whom, bool on)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	T_CALL(e, &r, api_follow(e->c, &ctx, whom, on, t_callback, &r));
	CHECK_MSG(r.code == 0, "follow %s: %d %s", whom, r.code, r.detail);
	CHECK(api_body_bool(r.body, "following", !on) == on);
	t_result_reset(&r);
}

__attribute__((unused)) static uint64_t
t_post(t_env *e, uint64_t who, const char *caption)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	/* Ids are time-ordered to the millisecond only (the partition sits
	 * below the time): let virtual time pass between posts. */
	if (e->deterministic)
		rt_det_advance(e->rt, 1);
	T_CALL(e, &r, api_post_create(e->c, &ctx, caption, 0, t_callback, &r));
	CHECK_MSG(r.code == 0, "post: %d %s", r.code, r.detail);
	uint64_t id = api_body_id(r.body, "post_id");
	CHECK(id != 0);
	t_result_reset(&r);
	return id;
}

/* Drains deterministic work (fan-out that nobody waits for). */
__attribute__((unused)) static void
t_settle(t_env *e)
{
	if (e->deterministic)
		rt_det_run_until_idle(e->rt, 0);
	else {
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

#endif /* FLOCK_TESTS_ACTORS_HELPERS_H */
