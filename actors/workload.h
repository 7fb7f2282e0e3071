/*
 * actors/workload.h — a seeded social workload over api.h, shared by the
 * benchmarks, the simulator and the tests.
 *
 * Graphs: an edge file ("a b" per line, 0-based ids, as DeathStarBench's
 * socfb-Reed98.edges; each undirected edge becomes two follows) or a
 * seeded power-law graph with celebrities (directed: a follows b), which
 * can be written in the same format. Mixes: the seed's daily mix per
 * active user (1 post, 10 feed reads, 20 likes, 2 comments) and
 * DeathStarBench's (60% home timeline, 30% user timeline, 10% compose).
 *
 * Threading: one api_client, one thread (the caller's). Latencies are
 * measured with the caller's monotonic clock: the driver is not actor
 * code.
 */
#ifndef FLOCK_ACTORS_WORKLOAD_H
#define FLOCK_ACTORS_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "actors/api.h"

typedef struct wl_graph {
	uint32_t users;
	uint32_t edges_count;
	uint32_t (*edges)[2]; /* owned */
	bool undirected;      /* each edge is two follows */
} wl_graph;

/* Reads an edge file. API_EINVALID on a malformed line, API_ENOTFOUND
 * if the file is absent. */
int wl_graph_load(const char *path, wl_graph *out);
/* users accounts, each following about follows_avg others drawn with a
 * Zipf-like preference (exponent ~1), so a few accounts collect most
 * followers (celebrities). Deterministic in seed. */
int wl_graph_powerlaw(uint32_t users, uint32_t follows_avg, uint64_t seed,
	wl_graph *out);
int wl_graph_write(const wl_graph *g, const char *path);
void wl_graph_free(wl_graph *g);
/* The Reed98 edge file relative to the repo root (../shared/datasets);
 * NULL when absent. */
const char *wl_reed98_path(void);

typedef struct wl_world {
	uint32_t users;
	uint64_t *user_ids; /* owned; index = graph node */
	uint64_t *posts;    /* owned ring of recent post ids */
	uint32_t posts_count;
	uint32_t posts_capacity;
	uint32_t posts_next;
} wl_world;

/* Signs every node up ("user<i>", pre-hashed password) and makes the
 * follows, concurrency calls in flight. 0 or the first error. */
int wl_load(api_client *c, const wl_graph *g, uint32_t concurrency,
	wl_world *out);
void wl_world_free(wl_world *w);

typedef enum wl_op {
	WL_OP_POST = 0,
	WL_OP_FEED = 1,
	WL_OP_LIKE = 2,
	WL_OP_COMMENT = 3,
	WL_OP_USER_TIMELINE = 4,
	WL_OPS = 5,
} wl_op;

const char *wl_op_name(wl_op op);

typedef enum wl_mix {
	WL_MIX_DAILY = 0,     /* 1 post : 10 feeds : 20 likes : 2 comments */
	WL_MIX_DEATHSTAR = 1, /* 60% feed, 30% user timeline, 10% post */
} wl_mix;

typedef struct wl_stats {
	uint64_t count[WL_OPS];
	uint64_t errors[WL_OPS];
	double p50_us[WL_OPS];
	double p99_us[WL_OPS];
	double seconds;
	double ops_per_second;
} wl_stats;

/* Plays ops operations of mix from random active users (the first
 * active_users of the world; 0: all), keeping concurrency calls in
 * flight. */
int wl_play(api_client *c, wl_world *w, wl_mix mix, uint64_t ops,
	uint32_t active_users, uint32_t concurrency, uint64_t seed,
	wl_stats *out);

#endif /* FLOCK_ACTORS_WORKLOAD_H */
