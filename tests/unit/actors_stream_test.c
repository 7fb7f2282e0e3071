/*
 * actors_stream_test.c — live streams through api.h.
 *
 * Goal: a session subscribed to a user's stream receives every new feed
 * item, notification, story and deletion with seq +1 each; resuming with
 * since delivers exactly what followed, from every point, or a resync
 * once the events are gone; a subscriber that never acks is cut off at
 * the bound and loses nothing when it resumes; a celebrity's post reaches
 * only followers that are online; only the user may open its stream; a
 * renewal costs a subscribed stream nothing and brings back one its
 * actor forgot, from where it was, each event once; events lost on the
 * way are sent again, whether a later event shows the gap or a renewal
 * does.
 * Method: a deterministic runtime and one api client; streams collect
 * their events into arrays; api_client_wait runs the scheduler.
 */
#include "tests/unit/actors_helpers.h"

#include "actors/engage.h"
#include "actors/internal.h"

#define STREAM_EVENTS_KEPT 2048

typedef struct t_event {
	api_event_type type;
	uint64_t seq;
	uint64_t post_id;    /* data.post_id, when there is one */
	char kind[16];       /* data.type for notifications */
	char caption[32];    /* data.caption, when there is one */
	char username[32];   /* data.user.username, when there is one */
} t_event;

typedef struct t_stream {
	api_stream *s;
	uint32_t count;
	bool ack;            /* ack every event as it arrives */
	t_event events[STREAM_EVENTS_KEPT];
} t_stream;

static void
on_event(void *arg, const api_event *ev)
{
	t_stream *ts = arg;
	CHECK(ts->count < STREAM_EVENTS_KEPT);
	t_event *e = &ts->events[ts->count++];
	memset(e, 0, sizeof *e);
	e->type = ev->type;
	e->seq = ev->seq;
	if (ev->data != NULL) {
		e->post_id = api_body_id(ev->data, "post_id");
		(void)api_body_str(ev->data, "type", e->kind, sizeof e->kind);
		(void)api_body_str(ev->data, "caption", e->caption,
			sizeof e->caption);
		const msgpack_object *user = api_body_get(ev->data, "user");
		if (user != NULL)
			(void)api_body_str(user, "username", e->username,
				sizeof e->username);
	}
	if (ts->ack && ev->type != API_EVENT_CUT_OFF &&
		ev->type != API_EVENT_RESYNC)
		api_stream_ack(ts->s, ev->seq);
}

static t_stream *
stream_open(t_env *e, uint64_t user, bool has_since, uint64_t since)
{
	t_stream *ts = calloc(1, sizeof *ts);
	CHECK(ts != NULL);
	ts->ack = true;
	api_ctx ctx = {.user_id = user};
	CHECK_EQ(api_stream_open(e->c, &ctx, user, has_since, since, on_event,
			 ts, &ts->s),
		API_OK);
	t_settle(e);
	api_client_poll(e->c);
	return ts;
}

static void
stream_close(t_env *e, t_stream *ts)
{
	api_stream_close(ts->s);
	t_settle(e);
	api_client_poll(e->c);
	free(ts);
}

/* Runs until ts holds at least n events (or nothing more happens). */
static void
stream_wait(t_env *e, t_stream *ts, uint32_t n)
{
	for (int i = 0; i < 200 && ts->count < n; i++) {
		t_settle(e);
		api_client_poll(e->c);
	}
	CHECK_MSG(ts->count >= n, "stream has %u events, wanted %u", ts->count,
		n);
}

static void
check_consecutive(const t_stream *ts, uint64_t first)
{
	for (uint32_t i = 0; i < ts->count; i++)
		CHECK_EQ_U64(ts->events[i].seq, first + i);
}

static void
comment(t_env *e, uint64_t who, uint64_t post_id, const char *text)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	T_CALL(e, &r, api_comment_add(e->c, &ctx, post_id, text, t_callback,
			      &r));
	CHECK_MSG(r.code == API_OK, "comment: %d %s", r.code, r.detail);
	t_result_reset(&r);
}

TEST(actors_stream_only_the_user_opens_it)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	api_stream *s = NULL;
	api_ctx ctx = {.user_id = bob};
	CHECK_EQ(api_stream_open(e.c, &ctx, alice, false, 0, on_event, NULL,
			 &s),
		API_EFORBIDDEN);
	api_ctx none = {0};
	CHECK_EQ(api_stream_open(e.c, &none, alice, false, 0, on_event, NULL,
			 &s),
		API_EUNAUTHORIZED);
	CHECK_STR_EQ(api_event_type_name(API_EVENT_FEED_POST), "feed.post");
	CHECK_STR_EQ(api_event_type_name(API_EVENT_POST_DELETED),
		"post.deleted");
	CHECK(api_event_type_name((api_event_type)99) == NULL);
	t_close(&e);
}

/* A timeline push carries the post's reference only; a follower with a
 * stream gets the whole feed item from the author. With a store the push
 * holds it until every follower acknowledged; without one the push ends
 * as it is sent, and the author keeps the latest few. */
static void
pushed_post_carries_the_feed_item(bool durable)
{
	t_env e;
	t_open(&e, NULL, !durable, durable);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t carol = t_signup(&e, "carol");
	t_follow(&e, bob, "alice", true);
	t_follow(&e, carol, "alice", true);
	t_stream *sb = stream_open(&e, bob, false, 0);
	char caption[32];
	for (uint32_t i = 0; i < 6; i++) {
		snprintf(caption, sizeof caption, "live %u #flock", i);
		uint64_t post = t_post(&e, alice, caption);
		stream_wait(&e, sb, i + 1);
		const t_event *ev = &sb->events[i];
		CHECK_EQ(ev->type, API_EVENT_FEED_POST);
		CHECK_EQ_U64(ev->post_id, post);
		CHECK_STR_EQ(ev->caption, caption);
		CHECK_STR_EQ(ev->username, "alice");
	}
	check_consecutive(sb, sb->events[0].seq);
	/* carol has no stream: the post is in her feed all the same. */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx cc = {.user_id = carol};
	api_page page = {API_PAGE_LIMIT_MAX, NULL};
	T_CALL(&e, &r, api_feed(e.c, &cc, &page, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
	CHECK_EQ(items->via.array.size, 6u);
	t_result_reset(&r);
	(void)alice;
	stream_close(&e, sb);
	t_close(&e);
}

TEST(actors_stream_pushed_post_carries_the_feed_item)
{
	pushed_post_carries_the_feed_item(false);
}

TEST(actors_stream_pushed_post_carries_the_feed_item_durable)
{
	pushed_post_carries_the_feed_item(true);
}

TEST(actors_stream_feed_notifications_deletions)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	t_follow(&e, bob, "alice", true);
	t_stream *sa = stream_open(&e, alice, false, 0);
	t_stream *sb = stream_open(&e, bob, false, 0);
	/* bob's follow came before alice's stream opened: not on it. */
	CHECK_EQ(sa->count, 0);
	uint64_t post = t_post(&e, alice, "hello #flock");
	stream_wait(&e, sb, 1);
	CHECK_EQ(sb->events[0].type, API_EVENT_FEED_POST);
	CHECK_EQ_U64(sb->events[0].post_id, post);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx bc = {.user_id = bob}, ac = {.user_id = alice};
	T_CALL(&e, &r, api_like(e.c, &bc, post, true, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	comment(&e, bob, post, "nice");
	stream_wait(&e, sa, 2);
	CHECK_EQ(sa->events[0].type, API_EVENT_NOTIFICATION);
	CHECK_STR_EQ(sa->events[0].kind, "like");
	CHECK_STR_EQ(sa->events[1].kind, "comment");
	/* Liking one's own post notifies nobody. */
	T_CALL(&e, &r, api_like(e.c, &ac, post, true, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	T_CALL(&e, &r, api_post_delete(e.c, &ac, post, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	stream_wait(&e, sb, 2);
	CHECK_EQ(sb->events[1].type, API_EVENT_POST_DELETED);
	CHECK_EQ_U64(sb->events[1].post_id, post);
	/* The author's own stream says it too; no like of its own. */
	stream_wait(&e, sa, 3);
	CHECK_EQ(sa->count, 3);
	CHECK_EQ(sa->events[2].type, API_EVENT_POST_DELETED);
	check_consecutive(sa, 1);
	check_consecutive(sb, 1);
	t_result_reset(&r);
	stream_close(&e, sa);
	stream_close(&e, sb);
	t_close(&e);
}

/* Makes n notifications for alice (comments by bob on post). */
static void
notifications(t_env *e, uint64_t bob, uint64_t post, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		char text[32];
		snprintf(text, sizeof text, "comment %u", i);
		comment(e, bob, post, text);
	}
}

TEST_WITH_TIMEOUT(actors_stream_resume_from_every_point, 120)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "talk to me");
	t_stream *live = stream_open(&e, alice, false, 0);
	const uint32_t n = 24;
	notifications(&e, bob, post, n);
	stream_wait(&e, live, n);
	check_consecutive(live, 1);
	stream_close(&e, live);
	/* Every since from 0 to n: exactly the events after it. */
	for (uint64_t since = 0; since <= n; since++) {
		t_stream *ts = stream_open(&e, alice, true, since);
		t_settle(&e);
		api_client_poll(e.c);
		CHECK_EQ(ts->count, n - since);
		check_consecutive(ts, since + 1);
		for (uint32_t i = 0; i < ts->count; i++)
			CHECK_EQ(ts->events[i].type, API_EVENT_NOTIFICATION);
		stream_close(&e, ts);
	}
	/* Ahead of the stream: resync. */
	t_stream *ahead = stream_open(&e, alice, true, n + 5);
	CHECK_EQ(ahead->count, 1);
	CHECK_EQ(ahead->events[0].type, API_EVENT_RESYNC);
	stream_close(&e, ahead);
	/* A gap: more events than held while away, then resync. */
	notifications(&e, bob, post, INBOX_STREAM_EVENTS_MAX + 8);
	t_stream *gap = stream_open(&e, alice, true, n);
	CHECK_EQ(gap->count, 1);
	CHECK_EQ(gap->events[0].type, API_EVENT_RESYNC);
	/* And new events after a resync carry on from the stream's seq. */
	notifications(&e, bob, post, 1);
	stream_wait(&e, gap, 2);
	CHECK_EQ_U64(gap->events[1].seq, n + INBOX_STREAM_EVENTS_MAX + 8 + 1);
	stream_close(&e, gap);
	t_close(&e);
}

TEST_WITH_TIMEOUT(actors_stream_slow_subscriber_is_cut_off, 120)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "comment away");
	t_stream *slow = stream_open(&e, alice, false, 0);
	slow->ack = false;
	const uint32_t total = INBOX_STREAM_UNACKED_MAX + 40;
	notifications(&e, bob, post, total);
	t_settle(&e);
	api_client_poll(e.c);
	/* The bound's worth of events, then the cut-off; nothing more. */
	CHECK_EQ(slow->count, INBOX_STREAM_UNACKED_MAX + 1);
	CHECK_EQ(slow->events[INBOX_STREAM_UNACKED_MAX].type,
		API_EVENT_CUT_OFF);
	uint64_t last = slow->events[INBOX_STREAM_UNACKED_MAX - 1].seq;
	CHECK_EQ_U64(last, INBOX_STREAM_UNACKED_MAX);
	stream_close(&e, slow);
	/* It resumes from its last seq and loses nothing. */
	t_stream *again = stream_open(&e, alice, true, last);
	stream_wait(&e, again, total - INBOX_STREAM_UNACKED_MAX);
	CHECK_EQ(again->count, total - INBOX_STREAM_UNACKED_MAX);
	check_consecutive(again, last + 1);
	stream_close(&e, again);
	t_close(&e);
}

TEST_WITH_TIMEOUT(actors_stream_celebrity_pushes_to_online_followers_only, 120)
{
	api_config cfg;
	t_config(&cfg);
	cfg.celebrity_followers_min = 2;
	t_env e;
	t_open(&e, &cfg, true, false);
	uint64_t celeb = t_signup(&e, "celeb");
	uint64_t on1 = t_signup(&e, "on1");
	uint64_t off = t_signup(&e, "off");
	uint64_t on2 = t_signup(&e, "on2");
	t_follow(&e, on1, "celeb", true);
	t_follow(&e, off, "celeb", true);
	t_follow(&e, on2, "celeb", true);
	/* A first post past the threshold makes followers pull celeb. */
	(void)t_post(&e, celeb, "warming up");
	t_settle(&e);
	t_stream *s1 = stream_open(&e, on1, false, 0);
	t_stream *s2 = stream_open(&e, on2, false, 0);
	t_settle(&e);
	uint64_t post = t_post(&e, celeb, "live for the online");
	stream_wait(&e, s1, 1);
	stream_wait(&e, s2, 1);
	CHECK_EQ(s1->events[0].type, API_EVENT_FEED_POST);
	CHECK_EQ_U64(s1->events[0].post_id, post);
	CHECK_EQ_U64(s2->events[0].post_id, post);
	/* The offline follower holds nothing of it (it pulls at read). */
	t_stream *s3 = stream_open(&e, off, true, 0);
	t_settle(&e);
	CHECK_EQ(s3->count, 0);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx oc = {.user_id = off};
	api_page page = {10, NULL};
	T_CALL(&e, &r, api_feed(e.c, &oc, &page, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK_EQ(items->via.array.size, 2);
	CHECK_EQ_U64(api_body_id(&items->via.array.ptr[0], "post_id"), post);
	/* One leaves: the next post reaches the one still online (and the
	 * follower that came online since). */
	stream_close(&e, s1);
	uint64_t next = t_post(&e, celeb, "after one left");
	stream_wait(&e, s2, 2);
	stream_wait(&e, s3, 1);
	CHECK_EQ_U64(s2->events[1].post_id, next);
	CHECK_EQ_U64(s3->events[0].post_id, next);
	t_result_reset(&r);
	stream_close(&e, s2);
	stream_close(&e, s3);
	t_close(&e);
}

TEST(actors_stream_post_updated_when_media_turns_ready)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	t_follow(&e, bob, "alice", true);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = alice};
	rt_det_advance(e.rt, 1);
	T_CALL(&e, &r, api_post_create(e.c, &ac, "processing", 777,
			       t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	uint64_t post = api_body_id(r.body, "post_id");
	t_settle(&e);
	t_stream *sa = stream_open(&e, alice, false, 0);
	t_stream *sb = stream_open(&e, bob, false, 0);
	/* The media pipeline's message to the post (as media.c sends it). */
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, 777);
	wire_str(&w, "ready");
	wire_str(&w, "abcdef");
	rt_message *m = rt_message_alloc(e.rt, POST_T_MEDIA,
		(uint32_t)w.length);
	CHECK(m != NULL);
	memcpy(m->payload, w.bytes, w.length);
	wire_free(&w);
	CHECK_EQ(rt_send_external(e.rt, rt_addr_make(ACTORS_KIND_POST, post),
			 m),
		0);
	stream_wait(&e, sb, 1);
	stream_wait(&e, sa, 1);
	CHECK_EQ(sb->events[0].type, API_EVENT_POST_UPDATED);
	CHECK_EQ_U64(sb->events[0].post_id, post);
	CHECK_EQ(sa->events[0].type, API_EVENT_POST_UPDATED);
	t_result_reset(&r);
	stream_close(&e, sa);
	stream_close(&e, sb);
	t_close(&e);
}

/* Sends the user's actor a stream request op in ts's session's name,
 * behind the client's back. */
static void
session_request(t_env *e, uint64_t user, const t_stream *ts,
	inbox_stream_op op)
{
	rt_addr session = actors__client_addr(e->c);
	unsigned char payload[40];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_u32(&w, session.kind);
	wire_u64(&w, session.id);
	wire_u8(&w, op);
	wire_u64(&w, actors__stream_subscription_id(ts->s));
	wire_u64(&w, 0);
	wire_u8(&w, 0);
	CHECK(!w.failed);
	rt_message *m = rt_message_alloc(e->rt, USER_T_STREAM,
		(uint32_t)w.length);
	CHECK(m != NULL);
	memcpy(m->payload, payload, w.length);
	CHECK_EQ(rt_send_external(e->rt, rt_addr_make(ACTORS_KIND_USER, user),
			 m),
		0);
	t_settle(e);
}

/* Makes the actor forget ts's session, as a move or a restart does. */
static void
forget_session(t_env *e, uint64_t user, const t_stream *ts)
{
	session_request(e, user, ts, INBOX_STREAM_OP_UNSUBSCRIBE);
}

TEST_WITH_TIMEOUT(actors_stream_renewal_brings_back_a_forgotten_session, 120)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "talk to me");
	notifications(&e, bob, post, 2); /* before the session: not sent */
	t_stream *ts = stream_open(&e, alice, false, 0);
	CHECK_EQ(ts->count, 0);
	/* Forgotten before its first event: it renews from where it was
	 * subscribed (the subscribe's answer), so nothing is missed. */
	forget_session(&e, alice, ts);
	notifications(&e, bob, post, 3);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 0); /* silent: the actor has no session */
	api_stream_renew(ts->s);
	stream_wait(&e, ts, 3);
	check_consecutive(ts, 1);
	/* Subscribed: a renewal sends nothing again. */
	api_stream_renew(ts->s);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 3);
	notifications(&e, bob, post, 2);
	stream_wait(&e, ts, 5);
	/* Forgotten after events: the renewal replays what followed. */
	forget_session(&e, alice, ts);
	notifications(&e, bob, post, 4);
	api_stream_renew(ts->s);
	stream_wait(&e, ts, 9);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 9);
	check_consecutive(ts, 1);
	for (uint32_t i = 0; i < ts->count; i++)
		CHECK_EQ(ts->events[i].type, API_EVENT_NOTIFICATION);
	stream_close(&e, ts);
	t_close(&e);
}

TEST_WITH_TIMEOUT(actors_stream_renewal_drops_events_sent_twice, 120)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "talk to me");
	t_stream *ts = stream_open(&e, alice, false, 0);
	notifications(&e, bob, post, 2);
	stream_wait(&e, ts, 2);
	forget_session(&e, alice, ts);
	notifications(&e, bob, post, 3);
	/* Two renewals from the same position, the actor forgetting the
	 * session in between, before the client reads anything: the
	 * events after it come twice; the client takes each seq once. */
	api_stream_renew(ts->s); /* position 2: replays 3..5 */
	t_settle(&e);
	forget_session(&e, alice, ts);
	api_stream_renew(ts->s); /* still position 2: 3..5 again */
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 5);
	check_consecutive(ts, 1);
	/* And what follows comes once, in order. */
	notifications(&e, bob, post, 2);
	stream_wait(&e, ts, 7);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 7);
	check_consecutive(ts, 1);
	stream_close(&e, ts);
	t_close(&e);
}

TEST_WITH_TIMEOUT(actors_stream_lost_events_are_sent_again, 120)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "talk to me");
	t_stream *ts = stream_open(&e, alice, false, 0);
	notifications(&e, bob, post, 2);
	stream_wait(&e, ts, 2);
	/* Events 3..5 lost on the way: the actor forgets the session, they
	 * are published, and the session is subscribed again from now
	 * without a since (as if the actor had sent them), all behind the
	 * client's back. */
	forget_session(&e, alice, ts);
	notifications(&e, bob, post, 3);
	session_request(&e, alice, ts, INBOX_STREAM_OP_SUBSCRIBE);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 2);
	/* The next event shows the gap: the client holds it back and
	 * renews at once, and gets 3..6 in order, each once. */
	notifications(&e, bob, post, 1);
	stream_wait(&e, ts, 6);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 6);
	check_consecutive(ts, 1);
	/* Lost at the tail, with nothing after to show it: the next
	 * renewal finds the session behind and sends what it missed. */
	forget_session(&e, alice, ts);
	notifications(&e, bob, post, 2);
	session_request(&e, alice, ts, INBOX_STREAM_OP_SUBSCRIBE);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 6);
	api_stream_renew(ts->s);
	stream_wait(&e, ts, 8);
	t_settle(&e);
	api_client_poll(e.c);
	CHECK_EQ(ts->count, 8);
	check_consecutive(ts, 1);
	stream_close(&e, ts);
	t_close(&e);
}
