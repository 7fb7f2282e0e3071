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
#include "actors/user_internal.h"
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

/* The follower-set effect sequence of a held message (0: another
 * message). */
static uint64_t
follower_effect_sequence(const rt_message *m, uint8_t *on)
{
	if (m == NULL || m->type != USER_T_FOLLOWER_SET)
		return 0;
	ps_effect_header hd;
	const void *payload;
	size_t length;
	CHECK_EQ(ps_effect_parse(m->payload, m->size, &hd, &payload, &length),
		0);
	CHECK(length >= 9);
	*on = ((const uint8_t *)payload)[8];
	return hd.sequence;
}

/* A follower's follow effect reaches its target only after the unfollow
 * that followed it (the target lost it in a crash and the follower
 * re-sent it): the target keeps the unfollow. */
TEST(actors_order_follower_effect_after_a_later_one)
{
	t_env e;
	holder h;
	order_open(&e, &h);
	uint64_t star = t_signup(&e, "star");
	uint64_t fan = t_signup(&e, "fan");
	t_settle(&e);
	hold_start(&e, &h, rt_addr_make(ACTORS_KIND_USER, star));
	t_follow(&e, fan, "star", true);
	t_follow(&e, fan, "star", false);
	t_settle(&e);
	h.holding = false;
	uint32_t follow = UINT32_MAX, unfollow = UINT32_MAX;
	for (uint32_t i = 0; i < h.count; i++) {
		uint8_t on = 0;
		uint64_t seq = follower_effect_sequence(h.held[i], &on);
		if (seq == 0)
			continue;
		if (on && follow == UINT32_MAX)
			follow = i;
		if (!on && unfollow == UINT32_MAX)
			unfollow = i;
	}
	CHECK(follow != UINT32_MAX);
	CHECK(unfollow != UINT32_MAX);
	CHECK(follow < unfollow);
	/* The later effect first, then (after a snapshot and a reload of
	 * the target) the earlier one. */
	CHECK_EQ(rt_deliver_local(e.rt, held_take(&h, unfollow)), 0);
	t_settle(&e);
	int done = 0;
	CHECK_EQ(rt_passivate_where(e.rt, is_target, &h.target, passivated,
			 &done), 0);
	rt_det_run_until_idle(e.rt, 0);
	CHECK_EQ(done, 1);
	CHECK_EQ(rt_deliver_local(e.rt, held_take(&h, follow)), 0);
	t_settle(&e);
	check_counts(&e, star, 0, 0);
	check_counts(&e, fan, 0, 0);
	/* A new follow still lands, and is told once. */
	t_follow(&e, fan, "star", true);
	t_settle(&e);
	check_counts(&e, star, 1, 0);
	order_close(&e, &h);
}

/* Decodes bytes as a user's snapshot; frees what it made. */
static int
user_decode(t_env *e, const void *bytes, size_t length, uint32_t *seqs)
{
	const rt_actor_ops *ops = &e->a->user_ops;
	void *state = calloc(1, ops->state_size);
	CHECK(state != NULL);
	int rc = ops->decode_state(state, bytes, length);
	if (rc == 0) {
		*seqs = ((const user_state *)state)->follower_seqs_count;
		ops->free_state(state);
	}
	free(state);
	return rc;
}

/* Packs obj with the engagement tuple (the last element) cut to its
 * first `fields` elements and version `version`, or with its follower
 * sequences replaced by `seqs` (length bytes) when seqs is not NULL. */
static void
user_repack(const msgpack_object *obj, uint32_t fields, uint32_t version,
	const void *seqs, uint32_t length, msgpack_sbuffer *out)
{
	msgpack_sbuffer_init(out);
	msgpack_packer pk;
	msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
	uint32_t n = obj->via.array.size;
	msgpack_pack_array(&pk, n);
	for (uint32_t i = 0; i + 1 < n; i++)
		msgpack_pack_object(&pk, obj->via.array.ptr[i]);
	const msgpack_object *engage = &obj->via.array.ptr[n - 1];
	CHECK_EQ(engage->type, MSGPACK_OBJECT_ARRAY);
	CHECK_EQ(engage->via.array.size, 16u);
	msgpack_pack_array(&pk, fields);
	msgpack_pack_uint32(&pk, version);
	for (uint32_t i = 1; i < fields; i++) {
		if (i == 15 && seqs != NULL) {
			msgpack_pack_bin(&pk, length);
			msgpack_pack_bin_body(&pk, seqs, length);
		} else {
			msgpack_pack_object(&pk, engage->via.array.ptr[i]);
		}
	}
}

/* A user's snapshot keeps its follower sequences; one of the version
 * before them decodes with none; malformed ones are refused. */
TEST(actors_order_follower_seqs_snapshot_versions)
{
	t_env e;
	holder h;
	order_open(&e, &h);
	uint64_t star = t_signup(&e, "star");
	uint64_t fan = t_signup(&e, "fan");
	(void)fan;
	t_follow(&e, fan, "star", true);
	t_settle(&e);
	hold_start(&e, &h, rt_addr_make(ACTORS_KIND_USER, star));
	tk_entry *saved = tk_store_find(h.store,
		rt_addr_make(ACTORS_KIND_USER, star), false);
	CHECK(saved != NULL);
	uint32_t seqs = 0;
	CHECK_EQ(user_decode(&e, saved->bytes.bytes, saved->bytes.length,
			 &seqs), 0);
	CHECK_EQ(seqs, 1u);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	CHECK_EQ(msgpack_unpack_next(&u, (const char *)saved->bytes.bytes,
			 saved->bytes.length, &off), MSGPACK_UNPACK_SUCCESS);
	msgpack_sbuffer b;
	/* Version 1: fifteen fields, no sequences. */
	user_repack(&u.data, 15, 1, NULL, 0, &b);
	seqs = 99;
	CHECK_EQ(user_decode(&e, b.data, b.size, &seqs), 0);
	CHECK_EQ(seqs, 0u);
	msgpack_sbuffer_destroy(&b);
	/* Version 1 with sixteen fields, and version 2 with fifteen. */
	user_repack(&u.data, 16, 1, NULL, 0, &b);
	CHECK(user_decode(&e, b.data, b.size, &seqs) != 0);
	msgpack_sbuffer_destroy(&b);
	user_repack(&u.data, 15, 2, NULL, 0, &b);
	CHECK(user_decode(&e, b.data, b.size, &seqs) != 0);
	msgpack_sbuffer_destroy(&b);
	/* Sequences: a torn pair, a follower twice, a follower 0. */
	uint64_t pairs[4] = {fan, 3, fan, 4};
	user_repack(&u.data, 16, 2, pairs, 12, &b);
	CHECK(user_decode(&e, b.data, b.size, &seqs) != 0);
	msgpack_sbuffer_destroy(&b);
	user_repack(&u.data, 16, 2, pairs, sizeof pairs, &b);
	CHECK(user_decode(&e, b.data, b.size, &seqs) != 0);
	msgpack_sbuffer_destroy(&b);
	pairs[2] = 0;
	user_repack(&u.data, 16, 2, pairs, sizeof pairs, &b);
	CHECK(user_decode(&e, b.data, b.size, &seqs) != 0);
	msgpack_sbuffer_destroy(&b);
	pairs[2] = fan + 1;
	user_repack(&u.data, 16, 2, pairs, sizeof pairs, &b);
	CHECK_EQ(user_decode(&e, b.data, b.size, &seqs), 0);
	CHECK_EQ(seqs, 2u);
	msgpack_sbuffer_destroy(&b);
	msgpack_unpacked_destroy(&u);
	order_close(&e, &h);
}

/* A few bytes announcing a huge map or array are refused before
 * msgpack-c reserves room for them (found by actor_state_fuzz: under
 * ASan the reservation ran out of memory). */
TEST(actors_order_state_decoders_refuse_huge_announcements)
{
	t_env e;
	holder h;
	order_open(&e, &h);
	static const unsigned char map[] = {0xdf, 0xff, 0xff, 0x8a, 0x47};
	static const unsigned char array[] = {0xdd, 0x7f, 0xff, 0xff, 0xff,
		0x00};
	const rt_actor_ops *kinds[2] = {&e.a->user_ops, &e.a->post_ops};
	for (int k = 0; k < 2; k++) {
		void *state = calloc(1, kinds[k]->state_size);
		CHECK(state != NULL);
		CHECK_EQ(kinds[k]->decode_state(state, map, sizeof map),
			RT_ECORRUPT);
		CHECK_EQ(kinds[k]->decode_state(state, array, sizeof array),
			RT_ECORRUPT);
		free(state);
	}
	order_close(&e, &h);
}
