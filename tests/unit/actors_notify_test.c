/*
 * actors_notify_test.c — notifications through api.h.
 *
 * Goal: likes, comments, follows and @mentions land in the affected
 * user's inbox with seq +1 each (never for one's own doing); a like taken
 * back and given again is one notification; a crash, which makes the
 * post actor send its effect again, never duplicates nor loses one; the
 * inbox keeps its newest INBOX_ENTRIES_MAX with seq going on; since,
 * limit, paging and read marks behave; by_user carries the username.
 * Method: a deterministic runtime for the logic; for the crash, a forked
 * child runs a real node with the journal on and _exit()s (no snapshot),
 * and the parent reopens the same directory.
 */
#include "tests/unit/actors_helpers.h"

#include "actors/engage.h"

#include <sys/wait.h>
#include <unistd.h>

typedef struct t_inbox {
	uint32_t count;
	uint64_t unread;
	uint64_t seq[64];
	char type[64][16];
	char by[64][32];
	uint64_t post[64];
	bool read[64];
	char next[64];
} t_inbox;

static void
inbox_get(t_env *e, uint64_t who, uint32_t limit, uint64_t since,
	const char *cursor, t_inbox *out)
{
	memset(out, 0, sizeof *out);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	T_CALL(e, &r, api_notifications(e->c, &ctx, limit, since, cursor,
			      t_callback, &r));
	CHECK_MSG(r.code == API_OK, "notifications: %d %s", r.code, r.detail);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
	out->count = items->via.array.size;
	for (uint32_t i = 0; i < out->count && i < 64; i++) {
		const msgpack_object *it = &items->via.array.ptr[i];
		out->seq[i] = (uint64_t)api_body_int(it, "seq", 0);
		(void)api_body_str(it, "type", out->type[i],
			sizeof out->type[i]);
		(void)api_body_str(api_body_get(it, "by_user"), "username",
			out->by[i], sizeof out->by[i]);
		out->post[i] = api_body_id(it, "post_id");
		out->read[i] = api_body_bool(it, "read", true);
	}
	out->unread = (uint64_t)api_body_int(r.body, "unread_count", -1);
	if (!api_body_str(r.body, "next_cursor", out->next, sizeof out->next))
		out->next[0] = '\0';
	t_result_reset(&r);
}

static int
like(t_env *e, uint64_t who, uint64_t post, bool on)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	T_CALL(e, &r, api_like(e->c, &ctx, post, on, t_callback, &r));
	int code = r.code;
	t_result_reset(&r);
	return code;
}

static int
comment(t_env *e, uint64_t who, uint64_t post, const char *text)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = who};
	T_CALL(e, &r, api_comment_add(e->c, &ctx, post, text, t_callback,
			      &r));
	int code = r.code;
	t_result_reset(&r);
	return code;
}

TEST(actors_notify_likes_comments_follows_mentions)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t carol = t_signup(&e, "carol");
	t_follow(&e, bob, "alice", true);
	uint64_t post = t_post(&e, alice, "look @carol, and @nobody_here");
	CHECK_EQ(like(&e, bob, post, true), API_OK);
	CHECK_EQ(comment(&e, bob, post, "hi @carol @alice"), API_OK);
	/* One's own doing notifies nobody. */
	CHECK_EQ(like(&e, alice, post, true), API_OK);
	CHECK_EQ(comment(&e, alice, post, "thanks"), API_OK);
	t_settle(&e);
	t_inbox in;
	inbox_get(&e, alice, 0, 0, NULL, &in);
	/* Newest first: the comment (its mention of alice is the comment
	 * notification already... and a mention of its own), the like, the
	 * follow. */
	CHECK_EQ(in.count, 4);
	CHECK_EQ_U64(in.unread, 4);
	CHECK_STR_EQ(in.type[3], "follow");
	CHECK_STR_EQ(in.by[3], "bob");
	CHECK_STR_EQ(in.type[2], "like");
	CHECK_EQ_U64(in.post[2], post);
	CHECK_STR_EQ(in.type[1], "comment");
	CHECK_STR_EQ(in.type[0], "mention");
	for (uint32_t i = 0; i < in.count; i++) {
		CHECK_EQ_U64(in.seq[i], in.count - i);
		CHECK(!in.read[i]);
	}
	/* carol: mentioned by alice's caption and by bob's comment. */
	inbox_get(&e, carol, 0, 0, NULL, &in);
	CHECK_EQ(in.count, 2);
	CHECK_STR_EQ(in.type[0], "mention");
	CHECK_STR_EQ(in.by[0], "bob");
	CHECK_STR_EQ(in.type[1], "mention");
	CHECK_STR_EQ(in.by[1], "alice");
	inbox_get(&e, bob, 0, 0, NULL, &in);
	CHECK_EQ(in.count, 0);
	t_close(&e);
}

TEST(actors_notify_like_again_is_one_notification)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "like me");
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(like(&e, bob, post, true), API_OK);
		CHECK_EQ(like(&e, bob, post, false), API_OK);
	}
	CHECK_EQ(like(&e, bob, post, true), API_OK);
	t_settle(&e);
	t_inbox in;
	inbox_get(&e, alice, 0, 0, NULL, &in);
	CHECK_EQ(in.count, 1);
	CHECK_STR_EQ(in.type[0], "like");
	/* Unfollow and follow again: one follow notification too. */
	t_follow(&e, bob, "alice", true);
	t_follow(&e, bob, "alice", false);
	t_follow(&e, bob, "alice", true);
	t_settle(&e);
	inbox_get(&e, alice, 0, 0, NULL, &in);
	CHECK_EQ(in.count, 2);
	t_close(&e);
}

TEST_WITH_TIMEOUT(actors_notify_ring_overflow_paging_and_read, 120)
{
	t_env e;
	t_open(&e, NULL, true, false);
	uint64_t alice = t_signup(&e, "alice");
	uint64_t bob = t_signup(&e, "bob");
	uint64_t post = t_post(&e, alice, "comment away");
	const uint32_t total = INBOX_ENTRIES_MAX + 25;
	for (uint32_t i = 0; i < total; i++) {
		char text[32];
		snprintf(text, sizeof text, "c%u", i);
		CHECK_EQ(comment(&e, bob, post, text), API_OK);
	}
	t_settle(&e);
	t_inbox in;
	inbox_get(&e, alice, 50, 0, NULL, &in);
	CHECK_EQ(in.count, 50);
	CHECK_EQ_U64(in.seq[0], total);
	CHECK_EQ_U64(in.unread, INBOX_ENTRIES_MAX);
	/* Page through everything held: exactly the newest 1,000. */
	uint32_t seen = 0;
	uint64_t expect = total;
	char cursor[64] = "";
	do {
		inbox_get(&e, alice, 50, 0, cursor[0] ? cursor : NULL, &in);
		for (uint32_t i = 0; i < in.count; i++)
			CHECK_EQ_U64(in.seq[i], expect--);
		seen += in.count;
		snprintf(cursor, sizeof cursor, "%s", in.next);
	} while (cursor[0] != '\0');
	CHECK_EQ(seen, INBOX_ENTRIES_MAX);
	CHECK_EQ_U64(expect, total - INBOX_ENTRIES_MAX);
	/* since: only what is newer. */
	inbox_get(&e, alice, 50, total - 3, NULL, &in);
	CHECK_EQ(in.count, 3);
	/* Read marks: up to a seq, never back. */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = alice};
	T_CALL(&e, &r, api_notifications_read(e.c, &ac, total - 10,
			       t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK(r.body == NULL);
	T_CALL(&e, &r, api_notifications_read(e.c, &ac, 5, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	inbox_get(&e, alice, 20, 0, NULL, &in);
	CHECK_EQ_U64(in.unread, 10);
	CHECK(!in.read[9]);
	CHECK(in.read[10]);
	T_CALL(&e, &r, api_notifications(e.c, &ac, 51, 0, NULL, t_callback,
			       &r));
	CHECK_EQ(r.code, API_EINVALID);
	T_CALL(&e, &r, api_notifications(e.c, &ac, 10, 0, "bogus",
			       t_callback, &r));
	CHECK_EQ(r.code, API_EINVALID);
	t_result_reset(&r);
	t_close(&e);
}

/* ---- across a crash ------------------------------------------------------- */

static uint64_t
user_id(t_env *e, const char *name)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(e, &r, api_user_get(e->c, &none, name, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	uint64_t id = api_body_id(r.body, "user_id");
	t_result_reset(&r);
	return id;
}

static uint64_t
first_post(t_env *e, const char *name)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	api_page page = {1, NULL};
	T_CALL(e, &r, api_user_posts(e->c, &none, name, &page, t_callback,
			      &r));
	CHECK_EQ(r.code, API_OK);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items->via.array.size == 1);
	uint64_t id = api_body_id(&items->via.array.ptr[0], "post_id");
	t_result_reset(&r);
	return id;
}

/* Waits (real time) until alice's inbox holds n. */
static void
wait_inbox(t_env *e, uint64_t alice, uint32_t n, t_inbox *in)
{
	for (int i = 0; i < 200; i++) {
		inbox_get(e, alice, 0, 0, NULL, in);
		if (in->count >= n)
			return;
		t_settle(e);
	}
	CHECK_MSG(false, "inbox holds %u, wanted %u", in->count, n);
}

typedef struct t_seen {
	uint64_t last_seq;
	bool resync;
	uint64_t after_resync_seq;
} t_seen;

static void
on_event(void *arg, const api_event *ev)
{
	t_seen *s = arg;
	if (ev->type == API_EVENT_RESYNC)
		s->resync = true;
	else if (s->resync && s->after_resync_seq == 0)
		s->after_resync_seq = ev->seq;
	else if (ev->type == API_EVENT_NOTIFICATION)
		s->last_seq = ev->seq;
}

static void
crash_child(int round)
{
	t_env e;
	t_open(&e, NULL, false, true);
	if (round == 0) {
		uint64_t alice = t_signup(&e, "alice");
		uint64_t bob = t_signup(&e, "bob");
		uint64_t post = t_post(&e, alice, "crash me");
		t_seen seen = {0, false, 0};
		api_ctx ac = {.user_id = alice};
		api_stream *s;
		CHECK_EQ(api_stream_open(e.c, &ac, alice, false, 0, on_event,
				 &seen, &s),
			API_OK);
		CHECK_EQ(like(&e, bob, post, true), API_OK);
		t_inbox in;
		wait_inbox(&e, alice, 1, &in);
		for (int i = 0; i < 100 && seen.last_seq == 0; i++)
			api_client_wait(e.c, 10);
		CHECK_EQ_U64(seen.last_seq, 1); /* a client saw seq 1 */
	} else {
		/* Like again after taking it back, and a comment: the like is
		 * the same event; the comment is new. */
		uint64_t bob = user_id(&e, "bob");
		uint64_t post = first_post(&e, "alice");
		CHECK_EQ(like(&e, bob, post, false), API_OK);
		CHECK_EQ(like(&e, bob, post, true), API_OK);
		CHECK_EQ(comment(&e, bob, post, "after a crash"), API_OK);
	}
	_exit(0); /* crash: no snapshot, outboxes unconfirmed on disk */
}

TEST_WITH_TIMEOUT(actors_notify_dedupe_across_crashes, 120)
{
	for (int round = 0; round < 2; round++) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			crash_child(round);
		int status = 0;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			"child failed: %d", status);
	}
	t_env e;
	t_open(&e, NULL, false, true);
	uint64_t alice = user_id(&e, "alice");
	t_inbox in;
	wait_inbox(&e, alice, 2, &in);
	/* Recovery re-sends every effect whose confirmation was lost; the
	 * inbox takes each event once. */
	struct timespec ts = {0, 300 * 1000 * 1000};
	nanosleep(&ts, NULL);
	inbox_get(&e, alice, 0, 0, NULL, &in);
	CHECK_EQ(in.count, 2);
	CHECK_STR_EQ(in.type[0], "comment");
	CHECK_STR_EQ(in.type[1], "like");
	CHECK_EQ_U64(in.seq[0], 2);
	CHECK_EQ_U64(in.seq[1], 1);
	/* The stream lost what it held in the crash: a client that saw seq
	 * 1 is told to resync, and no seq it saw is given again. */
	t_seen seen = {0, false, 0};
	api_ctx ac = {.user_id = alice};
	api_stream *s;
	CHECK_EQ(api_stream_open(e.c, &ac, alice, true, 1, on_event, &seen,
			 &s),
		API_OK);
	for (int i = 0; i < 100 && !seen.resync; i++)
		api_client_wait(e.c, 10);
	CHECK(seen.resync);
	uint64_t post = first_post(&e, "alice");
	CHECK_EQ(comment(&e, user_id(&e, "bob"), post, "after"), API_OK);
	for (int i = 0; i < 100 && seen.after_resync_seq == 0; i++)
		api_client_wait(e.c, 10);
	CHECK(seen.after_resync_seq > (1ull << 32));
	api_stream_close(s);
	t_close(&e);
}
