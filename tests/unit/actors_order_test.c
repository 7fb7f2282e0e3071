/*
 * actors_order_test.c — a like, a follow or a follower-set effect that
 * arrives after a later one of the same user must not undo it.
 *
 * Goal: the reorderings the simulator found stay fixed. A like whose ask
 * the caller saw time out (it sat in a link to a node that was cut off)
 * reached the user's actor after the caller's next call, an unlike, was
 * acknowledged, and liked the post again (flocksim seed 71, one hour,
 * the smoke fault set); a follow likewise. A follower-set effect that
 * its target got again after a later one of the same follower (re-sent
 * after a crash, the confirmation of the later one having arrived first)
 * put back a follower who had left.
 * Method: one deterministic runtime, no journal, the runtime testkit's
 * in-memory store for snapshots (so an actor can be passivated and come
 * back with its state). A route hook plays the
 * cluster: while holding, it takes every message for one actor (which is
 * passivated first, so that sends to it are routed) and keeps it, as a
 * link to a cut-off node does; the test then delivers the held messages
 * itself, late or out of order, with rt_deliver_local, as the link does
 * after the heal.
 */
#include "actors/internal.h"
#include "tests/unit/actors_helpers.h"
#include "tests/unit/runtime_testkit.h"

#define HELD_MAX 64

typedef struct holder {
	tk_store *store;
	rt_addr target;
	bool holding;
	uint32_t count;
	rt_message *held[HELD_MAX];
} holder;

static int
hold_route(void *arg, rt_message *m)
{
	holder *h = arg;
	if (!h->holding || !rt_addr_equal(m->to, h->target))
		return RT_ROUTE_LOCAL;
	CHECK(h->count < HELD_MAX);
	h->held[h->count++] = m;
	return RT_ROUTE_TAKEN;
}

static bool
hold_may_activate(void *arg, rt_addr addr)
{
	holder *h = arg;
	return !h->holding || !rt_addr_equal(addr, h->target);
}

static const rt_route_ops hold_ops = {hold_route, hold_may_activate};

static bool
is_target(void *arg, rt_addr addr)
{
	return rt_addr_equal(addr, *(const rt_addr *)arg);
}

static void
passivated(void *arg, int status)
{
	*(int *)arg = status == 0 ? 1 : -1;
}

/* Opens the environment with snapshots kept in memory. */
/* How far the test's clocks may be apart (one node: they are not). */
#define ORDER_SKEW_MS_MAX 500u

static void
order_open(t_env *e, holder *h)
{
	api_config cfg;
	t_config(&cfg);
	cfg.clock_skew_ms_max = ORDER_SKEW_MS_MAX;
	t_open(e, &cfg, true, false);
	memset(h, 0, sizeof *h);
	h->store = calloc(1, sizeof *h->store);
	CHECK(h->store != NULL);
	tk_store_init(h->store);
	rt_set_store(e->rt, &tk_store_ops, h->store);
}

static void
order_close(t_env *e, holder *h)
{
	for (uint32_t i = 0; i < h->count; i++)
		if (h->held[i] != NULL)
			rt_message_free(e->rt, h->held[i]);
	t_close(e);
	tk_store_free(h->store);
	free(h->store);
}

/* Starts holding every message for addr's actor. */
static void
hold_start(t_env *e, holder *h, rt_addr addr)
{
	h->target = addr;
	h->holding = true;
	rt_set_route(e->rt, &hold_ops, h);
	int done = 0;
	CHECK_EQ(rt_passivate_where(e->rt, is_target, &h->target, passivated,
			 &done), 0);
	rt_det_run_until_idle(e->rt, 0);
	CHECK_EQ(done, 1);
}

/* The index of the first held message of type, or fails. */
static uint32_t
held_find(const holder *h, uint32_t type)
{
	for (uint32_t i = 0; i < h->count; i++)
		if (h->held[i] != NULL && h->held[i]->type == type)
			return i;
	CHECK_MSG(false, "no held message of type %u", type);
	return 0;
}

/* Takes held message i out of the list (the caller delivers or frees). */
static rt_message *
held_take(holder *h, uint32_t i)
{
	CHECK(i < h->count);
	rt_message *m = h->held[i];
	h->held[i] = NULL;
	return m;
}

static void
check_liked(t_env *e, uint64_t viewer, uint64_t post, bool liked,
	int64_t likes)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = viewer};
	T_CALL(e, &r, api_post_get(e->c, &ctx, post, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ(api_body_bool(r.body, "liked_by_me", !liked), liked);
	CHECK_EQ(api_body_int(r.body, "likes_count", -1), likes);
	t_result_reset(&r);
}

static void
check_counts(t_env *e, uint64_t user, int64_t followers, int64_t following)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(e, &r, api_user_get_by_id(e->c, &none, user, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ(api_body_int(r.body, "followers_count", -1), followers);
	CHECK_EQ(api_body_int(r.body, "following_count", -1), following);
	t_result_reset(&r);
}

/* A like that timed out at its caller arrives after the caller's next
 * call, an unlike, was acknowledged: the post stays unliked. */
TEST(actors_order_like_after_a_later_unlike)
{
	t_env e;
	holder h;
	order_open(&e, &h);
	uint64_t author = t_signup(&e, "author");
	uint64_t fan = t_signup(&e, "fan");
	uint64_t post = t_post(&e, author, "a post");
	t_settle(&e);
	hold_start(&e, &h, rt_addr_make(ACTORS_KIND_USER, fan));
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx fc = {.user_id = fan};
	T_CALL(&e, &r, api_like(e.c, &fc, post, true, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAVAILABLE); /* timed out: held */
	uint32_t like = held_find(&h, USER_T_LIKE);
	/* The heal for the next call, which goes another way. */
	h.holding = false;
	T_CALL(&e, &r, api_like(e.c, &fc, post, false, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK(!api_body_bool(r.body, "liked", true));
	check_liked(&e, fan, post, false, 0);
	/* The held like arrives now, later than its deadline by more than
	 * the clocks may be apart. */
	rt_det_advance(e.rt, ORDER_SKEW_MS_MAX + 1);
	CHECK_EQ(rt_deliver_local(e.rt, held_take(&h, like)), 0);
	t_settle(&e);
	check_liked(&e, fan, post, false, 0);
	/* A like in time still counts. */
	T_CALL(&e, &r, api_like(e.c, &fc, post, true, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	check_liked(&e, fan, post, true, 1);
	t_result_reset(&r);
	order_close(&e, &h);
}

/* The same for a follow that timed out, overtaken by an unfollow. */
TEST(actors_order_follow_after_a_later_unfollow)
{
	t_env e;
	holder h;
	order_open(&e, &h);
	uint64_t star = t_signup(&e, "star");
	uint64_t fan = t_signup(&e, "fan");
	t_settle(&e);
	hold_start(&e, &h, rt_addr_make(ACTORS_KIND_USER, fan));
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx fc = {.user_id = fan};
	T_CALL(&e, &r, api_follow(e.c, &fc, "star", true, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAVAILABLE);
	uint32_t follow = held_find(&h, USER_T_FOLLOW);
	h.holding = false;
	t_follow(&e, fan, "star", false);
	rt_det_advance(e.rt, ORDER_SKEW_MS_MAX + 1);
	CHECK_EQ(rt_deliver_local(e.rt, held_take(&h, follow)), 0);
	t_settle(&e);
	check_counts(&e, fan, 0, 0);
	check_counts(&e, star, 0, 0);
	t_follow(&e, fan, "star", true);
	t_settle(&e);
	check_counts(&e, fan, 0, 1);
	check_counts(&e, star, 1, 0);
	t_result_reset(&r);
	order_close(&e, &h);
}
