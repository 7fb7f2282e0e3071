/*
 * actors_durable_test.c — writes survive a crash; fan-out is re-driven.
 *
 * Goal: every acknowledged write (accounts, follows, posts, likes,
 * comments) is there after a crash, and a crash in the middle of a
 * fan-out leaves, once the node is reopened on the same data directory,
 * every follower's feed with each acknowledged post exactly once.
 * Method: a forked child runs a real-mode node with the journal on,
 * builds a graph, posts, and _exit()s right after the last post's ack
 * (no rt_stop, no snapshot: a crash as far as the disk can tell, since
 * acked records were fdatasynced); the parent reopens the directory and
 * reads every feed.
 */
#include "tests/unit/actors_helpers.h"

#include <sys/wait.h>
#include <unistd.h>

#define DURABLE_FOLLOWERS 200
#define DURABLE_POSTS 4

static void
child_run(void)
{
	t_env e;
	t_open(&e, NULL, false, true);
	uint64_t author = t_signup(&e, "author");
	for (int i = 0; i < DURABLE_FOLLOWERS; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%d", i);
		t_follow(&e, t_signup(&e, name), "author", true);
	}
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ac = {.user_id = author};
	uint64_t first = t_post(&e, author, "before the crash");
	struct timespec ts = {0, 300 * 1000 * 1000};
	nanosleep(&ts, NULL); /* the first fan-out completes */
	T_CALL(&e, &r, api_like(e.c, &ac, first, true, t_callback, &r));
	CHECK_EQ(r.code, API_OK);
	T_CALL(&e, &r, api_comment_add(e.c, &ac, first, "kept", t_callback,
			       &r));
	CHECK_EQ(r.code, API_OK);
	for (int i = 1; i < DURABLE_POSTS; i++)
		(void)t_post(&e, author, "in flight");
	_exit(0); /* crash: fan-out of the last posts is mid-way */
}

TEST_WITH_TIMEOUT(actors_durable_crash_mid_fanout, 120)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		child_run();
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"child failed: %d", status);
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
	CHECK_EQ(api_body_int(r.body, "posts_count", -1), DURABLE_POSTS);
	for (int i = 0; i < DURABLE_FOLLOWERS; i++) {
		char name[32];
		snprintf(name, sizeof name, "f%d", i);
		T_CALL(&e, &r, api_user_get(e.c, &none, name, t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		api_ctx ctx = {.user_id = api_body_id(r.body, "user_id")};
		api_page page = {50, NULL};
		T_CALL(&e, &r, api_feed(e.c, &ctx, &page, t_callback, &r));
		CHECK_EQ(r.code, API_OK);
		const msgpack_object *items = api_body_get(r.body, "items");
		CHECK_MSG(items->via.array.size == DURABLE_POSTS,
			"follower %d sees %u posts", i, items->via.array.size);
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
