/*
 * actors_durable_test.c — writes survive a crash; fan-out is re-driven.
 *
 * Goal: every acknowledged write (accounts, follows, posts, likes,
 * comments) is there after a crash, and a crash in the middle of a
 * fan-out leaves, once the node is reopened on the same data directory,
 * every follower's feed with each acknowledged post exactly once.
 * Method: a forked child runs a real-mode node with the journal on,
 * builds a graph, checkpoints (every follower clean), posts once, likes
 * and comments, and waits for the checkpoint that releases the
 * followers' acknowledgements: the author's push is then done and only
 * the followers' snapshots hold the first post. A second post reaches every follower and its records settle
 * with no checkpoint (copies in memory only, acknowledgements not sent).
 * Then a trigger is armed and it posts again: the trigger, in the
 * timeline observer on the worker that applied the copy, _exit()s the
 * process as the third post reaches half its followers, so the crash
 * lands mid-fan-out by construction (no rt_stop, no snapshot: a crash as
 * far as the disk can tell, since acked records were fdatasynced). The
 * parent reopens the directory and reads every feed:
 * each post the author lists (the crashed one too: its record was
 * durable before its fan-out began) appears exactly once in every feed.
 */
#include "tests/unit/actors_helpers.h"

#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define DURABLE_FOLLOWERS 200
#define DURABLE_POSTS 4
/* Child exit codes the parent tells apart. */
#define CHILD_CRASHED 0
#define CHILD_NEVER_CRASHED 3

/* Timeline copies applied in the child, and the count at which it
 * crashes (0: not armed). */
static atomic_uint copies_applied;
static atomic_uint crash_at;

static void
count_copy(void *arg, uint64_t follower_id, uint64_t post_id)
{
	(void)arg;
	(void)follower_id;
	(void)post_id;
	unsigned n = atomic_fetch_add(&copies_applied, 1) + 1;
	unsigned at = atomic_load(&crash_at);
	if (at != 0 && n == at)
		_exit(CHILD_CRASHED); /* mid-fan-out, from a worker */
}

static void
child_run(void)
{
	api_config cfg;
	t_config(&cfg);
	cfg.timeline_observer = count_copy;
	t_env e;
	t_open(&e, &cfg, false, true);
	uint64_t author = t_signup(&e, "author");
	for (int i = 0; i < DURABLE_FOLLOWERS; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%d", i);
		t_follow(&e, t_signup(&e, name), "author", true);
	}
	/* Every follow's effect reaches the author before it posts. */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	for (int i = 0; i < 2000; i++) {
		T_CALL(&e, &r, api_user_get(e.c, &none, "author", t_callback,
				       &r));
		if (api_body_int(r.body, "followers_count", -1) ==
			DURABLE_FOLLOWERS)
			break;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ(api_body_int(r.body, "followers_count", -1),
		DURABLE_FOLLOWERS);
	/* Every follower clean: only the copy makes it dirty again. */
	uint64_t lsn = 0;
	CHECK_EQ(ps_node_checkpoint_wait(e.node, &lsn), 0);
	api_ctx ac = {.user_id = author};
	uint64_t first = t_post(&e, author, "before the crash");
	for (int i = 0; i < 20000 && atomic_load(&copies_applied) <
		DURABLE_FOLLOWERS; i++) {
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ(atomic_load(&copies_applied), DURABLE_FOLLOWERS);
	T_CALL(&e, &r, api_like(e.c, &ac, first, true, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	T_CALL(&e, &r, api_comment_add(e.c, &ac, first, "kept", t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	/* The node's own checkpoint for the deferred acknowledgements
	 * (ACTORS_ACK_CHECKPOINT_MS after the first copy) commits and the
	 * author gets them: its push is done, and from then on only the
	 * followers' snapshots hold the first post. */
	ps_node_stats ns;
	for (int i = 0; i < 3000; i++) {
		ps_node_get_stats(e.node, &ns);
		if (ns.checkpoints >= 2)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_MSG(ns.checkpoints >= 2, "no checkpoint for the acks");
	struct timespec acked = {0, 300 * 1000 * 1000};
	nanosleep(&acked, NULL);
	/* The second post reaches everyone and its records settle, but no
	 * checkpoint snapshots the copies: only the author's push still
	 * owes them after the crash. */
	(void)t_post(&e, author, "applied, in no snapshot");
	for (int i = 0; i < 20000 && atomic_load(&copies_applied) <
		2 * DURABLE_FOLLOWERS; i++) {
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ(atomic_load(&copies_applied), 2 * DURABLE_FOLLOWERS);
	struct timespec settle = {0, 300 * 1000 * 1000};
	nanosleep(&settle, NULL);
	atomic_store(&crash_at, 2 * DURABLE_FOLLOWERS + DURABLE_FOLLOWERS / 2);
	/* The crash comes from a worker during the third fan-out; the
	 * last post may or may not be made before it. */
	for (int i = 2; i < DURABLE_POSTS; i++)
		(void)t_post(&e, author, "in flight");
	struct timespec ts = {10, 0};
	nanosleep(&ts, NULL);
	_exit(CHILD_NEVER_CRASHED);
}

TEST_WITH_TIMEOUT(actors_durable_crash_mid_fanout, 180)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		child_run();
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_CRASHED,
		"child failed or never crashed mid-fan-out: %d", status);
	t_env e;
	t_open(&e, NULL, false, true);
	struct timespec ts = {0, 500 * 1000 * 1000};
	nanosleep(&ts, NULL); /* recovery re-drives the pushes */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx none = {0};
	T_CALL(&e, &r, api_user_get(e.c, &none, "author", t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	CHECK_EQ(api_body_int(r.body, "followers_count", -1),
		DURABLE_FOLLOWERS);
	/* Two posts fanned out before, the one crashed mid-fan-out, and
	 * maybe the last (made before the crash). */
	int64_t posts = api_body_int(r.body, "posts_count", -1);
	CHECK_MSG(posts >= 3 && posts <= DURABLE_POSTS, "%lld posts",
		(long long)posts);
	for (int i = 0; i < DURABLE_FOLLOWERS; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%d", i);
		T_CALL(&e, &r, api_user_get(e.c, &none, name, t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		api_ctx ctx = {.user_id = api_body_id(r.body, "user_id")};
		api_page page = {50, NULL};
		const msgpack_object *items = NULL;
		/* Recovery re-drives the interrupted fan-out: give it time. */
		for (int tries = 0; tries < 200; tries++) {
			T_CALL(&e, &r, api_feed(e.c, &ctx, &page, t_callback,
					       &r));
			CHECK_EQ(r.code, API_OK);
			items = api_body_get(r.body, "items");
			if (items->via.array.size >= (uint32_t)posts)
				break;
			struct timespec pause = {0, 50 * 1000 * 1000};
			nanosleep(&pause, NULL);
		}
		CHECK_MSG(items->via.array.size == (uint32_t)posts,
			"follower %d sees %u of %lld posts", i,
			items->via.array.size, (long long)posts);
		uint64_t seen[DURABLE_POSTS];
		for (uint32_t k = 0; k < items->via.array.size; k++) {
			const msgpack_object *it = &items->via.array.ptr[k];
			seen[k] = api_body_id(it, "post_id");
			for (uint32_t j = 0; j < k; j++)
				CHECK(seen[j] != seen[k]);
			if (api_body_int(it, "likes_count", 0) == 1)
				CHECK_EQ(api_body_int(it, "comments_count", -1),
					1);
		}
	}
	t_result_reset(&r);
	t_close(&e);
}
