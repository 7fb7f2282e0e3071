/*
 * sim/internal.h — names shared inside sim/ only (prefix sim__).
 *
 * Files:
 *   rng.c       seeded PRNG streams and the run's event hash
 *   events.c    the event queue: (virtual ms, sequence) ordered heap
 *   net.c       the simulated network behind cl_transport_ops: delay,
 *               drop, duplicate, reorder, partitions
 *   disk.c      the hashing disk layer over each node's fault disk
 *   node.c      one simulated node: compose, crash, restart, close
 *   model.c     what the clients were told: every acknowledged write
 *   driver.c    the seeded workload of clients over actors/api.h
 *   check.c     the invariants, continuous and at quiescence
 *   streams.c   live streams kept open through the run, and their checks
 *   faults.c    the swarm: which faults a seed gets and when
 *   run.c       sim_run: the main loop, quiescence, teardown
 *   sometimes.c the sometimes-assertion report
 *   flocksim.c  the command line (not in the library)
 *
 * Determinism rules every file follows: no wall clock, no thread, no
 * iteration over a pointer-keyed or unordered container in a decision;
 * randomness only from the run's streams (sim__rng); ties in the event
 * queue break on a sequence number.
 */
#ifndef FLOCK_SIM_INTERNAL_H
#define FLOCK_SIM_INTERNAL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/api.h"
#include "cluster/cluster.h"
#include "persistence/persistence.h"
#include "runtime/runtime.h"
#include "sim/sim.h"

/* Asserts stay on in release builds (STYLE rule 6). */
#define SIM_ASSERT(cond)                                                     \
	do {                                                                 \
		if (!(cond))                                                 \
			sim__assert_fail(__FILE__, __LINE__, #cond);         \
	} while (0)
_Noreturn void sim__assert_fail(const char *file, int line, const char *expr);

/* ---- limits ------------------------------------------------------------ */

/* Nodes one run has at most, joiners included: enough for 5 nodes plus
 * a few joins; the cluster allows 64. */
#define SIM_NODES_MAX 8u
/* Users one run has at most (the speed goal is 2,000). */
#define SIM_USERS_MAX 100000u
/* Clients' calls in flight at once across the run. */
#define SIM_INFLIGHT_MAX 4096u
/* Events in the queue at once: frames in flight dominate. */
#define SIM_EVENTS_MAX (1u << 22)
/* Paths under the run directory. */
#define SIM_PATH_BYTES_MAX 512u
/* Virtual epoch of every run: 2025-06-15T00:00:00Z, after the domain's
 * id epoch, so ids carry sensible times. */
#define SIM_EPOCH_MS 1749945600000ull
/* One failure message. */
#define SIM_FAILURE_BYTES_MAX 1024u

/* ---- PRNG streams (rng.c) ---------------------------------------------- */

/* xoshiro256** seeded through splitmix64 from (seed, stream). */
typedef struct sim_rng {
	uint64_t s[4];
} sim_rng;

enum {
	SIM_STREAM_KNOBS = 1,    /* swarm: which faults, how hard */
	SIM_STREAM_WORKLOAD = 2, /* ops, users, targets */
	SIM_STREAM_NETWORK = 3,  /* delay, drop, duplicate, reorder */
	SIM_STREAM_DISK = 4,     /* disk latency, write/sync failures, tears */
	SIM_STREAM_SCHED = 5,    /* which node runs next, runtime seeds */
	SIM_STREAM_CHOICE = 6,   /* which node a client talks to */
	SIM_STREAM_FAULTS = 7,   /* when faults happen, whom they hit */
	SIM_STREAM_CHECK = 8,    /* what the checker samples */
	SIM_STREAM_LIVE = 9,     /* who keeps a live stream, on which node */
};

void sim__rng_seed(sim_rng *r, uint64_t seed, uint64_t stream);
uint64_t sim__rng_next(sim_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t sim__rng_below(sim_rng *r, uint64_t n);
/* Uniform in [lo, hi]. */
uint64_t sim__rng_range(sim_rng *r, uint64_t lo, uint64_t hi);
/* True with probability ppm / 1,000,000. */
bool sim__rng_ppm(sim_rng *r, uint32_t ppm);
/* splitmix64 finaliser: mixes a value into a hash word. */
uint64_t sim__mix(uint64_t x);
static inline uint64_t
sim__hash_step(uint64_t h, uint64_t v)
{
	return sim__mix(h ^ sim__mix(v + 0x9e3779b97f4a7c15ull));
}
uint64_t sim__hash_bytes(uint64_t h, const void *bytes, size_t length);

/* ---- events (events.c) ------------------------------------------------- */

typedef enum sim_event_kind {
	SIM_EV_FRAME = 1,      /* a frame reaches node `node` */
	SIM_EV_DISK = 2,       /* node's disk does its next step */
	SIM_EV_TICK = 3,       /* node's cluster periodic tick */
	SIM_EV_CHECKPOINT = 4, /* node checkpoints */
	SIM_EV_OP = 5,         /* the workload issues its next op */
	SIM_EV_FAULT = 6,      /* the fault schedule's next action */
	SIM_EV_RESTART = 7,    /* a crashed node comes back */
	SIM_EV_RETRY = 8,      /* node's failed journal probes again */
	SIM_EV_FLUSH = 9,      /* node's cluster links flush (after work) */
	SIM_EV_CALL = 10,      /* a model-check follow-up call is due */
	SIM_EV_LIVE = 11,      /* live streams renew (or reopen) */
} sim_event_kind;

typedef struct sim_event {
	uint64_t at_ms;
	uint64_t sequence;
	uint32_t kind;
	uint32_t node;
	uint32_t incarnation; /* node events: stale after a restart */
	uint32_t from;        /* frames: sending node */
	uint64_t arg;
	void *data;           /* frames: owned bytes */
	size_t length;
} sim_event;

typedef struct sim_events {
	sim_event *heap;
	uint32_t count;
	uint32_t capacity;
	uint64_t next_sequence;
} sim_events;

void sim__events_init(sim_events *q);
void sim__events_free(sim_events *q);
/* Queues a copy of e (its sequence is assigned here). 0 or -1 (full). */
int sim__events_push(sim_events *q, sim_event e);
/* The earliest event's time, or UINT64_MAX. */
uint64_t sim__events_next_ms(const sim_events *q);
/* Pops the earliest event into *out; false if empty. */
bool sim__events_pop(sim_events *q, sim_event *out);

/* ---- the world --------------------------------------------------------- */

typedef struct sim_world sim_world;
typedef struct sim_node sim_node;
typedef struct sim_net sim_net;
typedef struct sim_model sim_model;
typedef struct sim_driver sim_driver;

/* What the seed drew (printed on the first line). */
typedef struct sim_knobs {
	uint32_t nodes;
	uint32_t users;
	uint32_t follows_avg;
	uint64_t sim_time_ms;
	uint32_t ops_per_minute;      /* workload arrival rate */
	uint32_t celebrity_followers; /* the domain's push/pull threshold */
	uint32_t timeline_entries;
	/* network */
	uint32_t latency_ms;          /* base one-way delay */
	uint32_t jitter_ms;
	uint32_t drop_ppm;
	uint32_t duplicate_ppm;
	uint32_t reorder_ppm;         /* a frame overtaken: extra delay */
	/* faults */
	uint32_t crash_per_hour;
	uint32_t partition_per_hour;
	uint32_t disk_fault_ppm;      /* per journal step */
	uint32_t torn_crash_percent;
	uint32_t clock_skew_ms;       /* max wall offset between nodes */
	uint32_t join_per_hour;
	uint32_t drain_per_hour;
	uint32_t checkpoint_s;        /* checkpoint interval per node */
	uint32_t disk_latency_ms;     /* write to fdatasync */
	uint32_t tick_ms;             /* cluster tick period */
	bool membership;              /* joins and drains drawn at all */
} sim_knobs;

/* ---- network (net.c) ---------------------------------------------------- */

int sim__net_create(sim_world *w, sim_net **out);
void sim__net_destroy(sim_net *net);
/* A transport endpoint for node index (new on each incarnation). */
int sim__net_endpoint(sim_net *net, uint32_t node,
	const cl_transport_ops **ops_out, void **endpoint_out);
/* Delivers a frame event (called by the run loop). */
void sim__net_deliver(sim_net *net, const sim_event *e);
/* Partitions: block[a][b] drops frames from a to b. */
void sim__net_block(sim_net *net, uint32_t from, uint32_t to, bool blocked);
void sim__net_heal(sim_net *net);
bool sim__net_partitioned(const sim_net *net);
/* Frames in flight (queued deliveries). */
uint64_t sim__net_in_flight(const sim_net *net);
/* Network faults off (healing) or back to the knobs. */
void sim__net_set_faults(sim_net *net, bool on);

/* ---- disk (disk.c) ----------------------------------------------------- */

/* A per-incarnation disk: hashing layer over a fault disk over the real
 * one. */
typedef struct sim_disk {
	ps_disk disk;          /* what the journal gets */
	ps_fault_disk *fault;  /* below it */
	sim_world *w;
	uint32_t node;
	size_t prefix_bytes;   /* path prefix not hashed (the run dir) */
} sim_disk;

int sim__disk_init(sim_disk *d, sim_world *w, uint32_t node,
	const char *dir);
void sim__disk_free(sim_disk *d);

/* ---- nodes (node.c) ---------------------------------------------------- */

#define SIM_ACTIVE_SLOTS_INITIAL 1024u

/* Addresses of actors loaded in one incarnation (invariant 6). */
typedef struct sim_active {
	rt_addr *slots; /* open addressing; kind 0: empty */
	uint32_t capacity;
	uint32_t count;
} sim_active;

struct sim_node {
	sim_world *w;
	uint32_t index;
	uint16_t id;              /* cluster node id */
	bool exists;              /* created (initial or joined) */
	bool up;
	bool removed;             /* drained and left */
	uint32_t incarnation;
	uint64_t born_ms;         /* global ms when this rt started */
	int64_t skew_ms;          /* wall clock offset of this incarnation */
	char address[CL_ADDRESS_BYTES_MAX];
	char dir[SIM_PATH_BYTES_MAX + 16];
	rt_runtime *rt;
	ps_node *ps;
	api *api;
	cl_node *cl;
	api_client *client;
	sim_disk disk;
	uint64_t trace_hash;      /* of finished incarnations */
	/* scheduling */
	bool runnable;            /* may have runnable actors */
	bool flush_queued;        /* a FLUSH event is queued */
	bool disk_queued;         /* a DISK event is queued */
	bool retry_queued;
	bool disk_check;          /* something ran on it since plan_disks
				   * last looked at its journal and store */
	uint64_t turns;
	/* checks */
	sim_active active;
	uint64_t max_epoch;
	uint64_t epoch_checked_ms;
	uint64_t sync_not_before_ms; /* a torn crash is due before it */
	uint32_t inflight;        /* client calls in flight on it */
	bool client_ready;        /* its client's inbox went non-empty
				   * since the last poll */
};

/* Creates node index's data dir names; does not start it. */
void sim__node_init(sim_world *w, uint32_t index);
/* Starts an incarnation (recovery from its dir). join: a member's
 * address to join through, or NULL. 0 or -1. */
int sim__node_start(sim_world *w, uint32_t index, const char *join);
/* Kills it: unsynced bytes dropped (torn with a seed), memory lost. */
void sim__node_crash(sim_world *w, uint32_t index, bool torn);
/* Stops it cleanly (end of run). */
void sim__node_stop(sim_world *w, uint32_t index);
/* Global ms -> the node's monotonic ms. */
uint64_t sim__node_now(const sim_node *n);
/* Runs at most max turns of this node's actors. Returns turns run. */
uint64_t sim__node_run(sim_world *w, uint32_t index, uint64_t max);
/* The node's trace hash (finished incarnations and the current one). */
uint64_t sim__node_trace(const sim_node *n);

/* ---- model and driver (model.c, driver.c) ------------------------------- */

/* u64 -> u32 open-addressing map (lookups only: never iterated). */
typedef struct sim_map {
	uint64_t *keys;
	uint32_t *values;
	uint8_t *used;
	uint32_t capacity;
	uint32_t count;
} sim_map;

bool sim__map_get(const sim_map *m, uint64_t key, uint32_t *value_out);
void sim__map_put(sim_map *m, uint64_t key, uint32_t value);
void sim__map_free(sim_map *m);

/* Growable u32 array. */
typedef struct sim_u32s {
	uint32_t *items;
	uint32_t count;
	uint32_t capacity;
} sim_u32s;

void sim__u32s_push(sim_u32s *a, uint32_t v);
bool sim__u32s_has(const sim_u32s *a, uint32_t v);
void sim__u32s_free(sim_u32s *a);

/* A boolean a client sets (a follow, a like): the value of the last
 * acknowledged op, and whether an op with an unknown outcome came after
 * it (then either value is legal). */
typedef struct sim_flag {
	uint8_t value;
	uint8_t uncertain;
	uint8_t ever_on;      /* an op setting it on was acknowledged */
	uint8_t maybe_on;     /* one setting it on had an unknown outcome */
	uint16_t generation;  /* bumped by every op issued on it */
	uint64_t acked_ms;    /* when the last definite op was acknowledged */
	uint64_t visible_ms;  /* follows: when the followee showed it; 0 */
} sim_flag;

typedef struct sim_user {
	uint64_t id;
	char name[16];
	bool busy;               /* one op in flight per user */
	uint32_t uncertain_posts; /* creations whose outcome is unknown */
	sim_u32s followees;      /* users it ever followed or unfollowed */
	sim_u32s posts;          /* its acknowledged posts */
	sim_u32s stories;        /* its acknowledged stories */
} sim_user;

enum {
	SIM_POST_LIVE = 0,
	SIM_POST_DELETED = 1,
	SIM_POST_DELETE_UNCERTAIN = 2,
};

typedef struct sim_comment {
	uint64_t id;
	uint32_t author;
	uint8_t state; /* SIM_POST_* */
} sim_comment;

typedef struct sim_post {
	uint64_t id;
	uint32_t author;
	uint8_t state;
	uint64_t issued_ms;  /* when the create was sent */
	uint64_t acked_ms;
	uint64_t deleted_ms; /* when the delete was acknowledged */
	sim_u32s likers;     /* users that ever liked or unliked it */
	sim_comment *comments;
	uint32_t comments_count;
	uint32_t comments_capacity;
	uint32_t uncertain_comments;
} sim_post;

typedef struct sim_story {
	uint64_t id;
	uint32_t author;
	uint64_t expires_at_ms; /* wall clock, from the answer */
	uint64_t acked_ms;
} sim_story;

struct sim_model {
	sim_user *users;
	uint32_t users_count;
	sim_post *posts;
	uint32_t posts_count;
	uint32_t posts_capacity;
	sim_map post_by_id;   /* id -> index */
	sim_flag *flags;
	uint32_t flags_count;
	uint32_t flags_capacity;
	sim_map follows;      /* follower << 32 | followee -> flag */
	sim_map likes;        /* post << 32 | user -> flag */
	sim_story *stories;
	uint32_t stories_count;
	uint32_t stories_capacity;
	uint32_t recent[256]; /* ring of recent post indices */
	uint32_t recent_count;
	uint32_t recent_next;
};

int sim__model_create(sim_world *w, sim_model **out);
void sim__model_destroy(sim_model *m);
/* The flag for key in map, created (off, certain) when absent. */
sim_flag *sim__model_flag(sim_model *m, sim_map *map, uint64_t key);
/* The flag or NULL. */
sim_flag *sim__model_flag_find(sim_model *m, const sim_map *map,
	uint64_t key);
/* Adds an acknowledged post; returns its index. */
uint32_t sim__model_post_add(sim_model *m, uint64_t id, uint32_t author,
	uint64_t issued_ms, uint64_t acked_ms);
/* Index of the post with id, or -1. */
int64_t sim__model_post_find(const sim_model *m, uint64_t id);
void sim__model_comment_add(sim_post *p, uint64_t id, uint32_t author);
sim_comment *sim__model_comment_find(sim_post *p, uint64_t id);
uint32_t sim__model_story_add(sim_model *m, uint64_t id, uint32_t author,
	uint64_t expires_at_ms, uint64_t acked_ms);

int sim__driver_create(sim_world *w, sim_driver **out);
void sim__driver_destroy(sim_driver *d);
/* Signs the users up and makes the graph's follows (no faults yet).
 * 0, or -1 with the failure recorded. */
int sim__driver_setup(sim_driver *d);
/* Issues the workload's next op (an SIM_EV_OP event). */
void sim__driver_op(sim_driver *d);
/* Stops issuing ops (quiescence); calls in flight finish. */
void sim__driver_stop(sim_driver *d);
/* Calls in flight. */
uint32_t sim__driver_inflight(const sim_driver *d);
/* The node's client is going away (crash): its calls are lost. */
void sim__driver_node_down(sim_driver *d, uint32_t node);
/* The node's client (created once the node knows its cluster id), or
 * NULL while it is down or has not joined. */
api_client *sim__node_client(sim_world *w, uint32_t index);
bool sim__active_has(const sim_active *s, rt_addr a);
/* Asks node index's runtime whether addr is in its registry (and
 * rebuilds its active set from the registry). 1, 0, or -1 when the
 * runtime could not be asked. */
int sim__node_active_now(sim_world *w, uint32_t index, rt_addr addr);
/* Settles suspected double activations (checked after each slice). */
void sim__check_suspects(sim_world *w);
/* The cluster agrees (every member up, one epoch, leases, no moves). */
bool sim__converged(sim_world *w);
/* Runs the completions ready on every live node's client. */
void sim__driver_poll(sim_driver *d);
/* A follow-up call (SIM_EV_CALL) is due. */
void sim__driver_call_event(sim_driver *d, const sim_event *e);

/* ---- checks (check.c) -------------------------------------------------- */

/* Records a violation (the first one fails the run). */
void sim__fail(sim_world *w, const char *invariant, const char *format,
	...) __attribute__((format(printf, 3, 4)));
/* Invariant 6 on every activation. */
void sim__check_load(sim_world *w, uint32_t node, rt_addr addr);
/* Invariant 6 on map epochs, after a node's tick. */
void sim__check_epochs(sim_world *w, uint32_t node);
/* The checks at quiescence (invariants 1-5 and 7). 0 or -1. */
int sim__check_quiescent(sim_world *w);

/* ---- live streams (streams.c) ------------------------------------------ */

int sim__lives_create(sim_world *w);
void sim__lives_destroy(sim_world *w);
/* Opens the run's streams (after setup) and starts their renewals. */
void sim__lives_start(sim_world *w);
/* SIM_EV_LIVE: renews open streams, reopens closed ones. */
void sim__lives_tick(sim_world *w);
/* node's client is about to be destroyed: its streams close (and are
 * reopened from their positions once it is back). */
void sim__lives_client_gone(sim_world *w, uint32_t node);
/* Once healed and settled, before the quiescence checks: every stream
 * carries a new notification (invariant "stream"); the probe follows
 * are in the model like the workload's. 0 or -1. */
int sim__lives_check(sim_world *w);

/* ---- faults (faults.c) ------------------------------------------------- */

/* Draws the knobs from the seed (swarm) or the options. */
void sim__knobs_draw(sim_world *w);
/* Prints them as one line. */
void sim__knobs_print(const sim_world *w, FILE *out);
/* Queues the first fault event. */
void sim__faults_start(sim_world *w);
/* A fault event is due. */
void sim__faults_event(sim_world *w, const sim_event *e);
/* Ends every fault: heal the network, restart crashed nodes. */
void sim__faults_heal(sim_world *w);
/* A journal batch was just written (not synced) on node: a torn crash
 * that is due strikes now. */
void sim__faults_written(sim_world *w, uint32_t node);
/* Disk faults for a journal step of node (called before the step). */
void sim__faults_disk_step(sim_world *w, uint32_t node);

/* ---- the run (run.c) ---------------------------------------------------- */

/* A map epoch and the hash of its owners, as first seen on any node. */
typedef struct sim_epoch_seen {
	uint64_t epoch;
	uint64_t owners;
} sim_epoch_seen;

struct sim_world {
	sim_options opts;
	sim_knobs knobs;
	uint64_t seed;
	sim_rng rng[10]; /* by SIM_STREAM_* */
	uint64_t now_ms;  /* global virtual time since the run's start */
	uint64_t end_ms;  /* when the workload and faults stop */
	sim_events events;
	sim_net *net;
	sim_model *model;
	sim_driver *driver;
	uint32_t nodes_count; /* created so far (indices < it) */
	sim_node nodes[SIM_NODES_MAX];
	char dir[SIM_PATH_BYTES_MAX];
	uint64_t hash;        /* events of the run (network, disk, faults) */
	bool faults_on;
	bool healing;
	bool failed;
	char failure[SIM_FAILURE_BYTES_MAX];
	uint64_t failure_ms;
	sim_result *result;
	uint32_t knobs_enabled; /* SIM_FAULT_* this seed runs */
	bool features_stories;
	bool features_notifications;
	FILE *log;            /* progress lines (stderr); NULL: quiet */
	FILE *trace;          /* --trace: every hashed event */
	/* the join or drain in progress (one at a time) */
	bool membership_busy;
	bool membership_drain;
	uint32_t membership_node;
	int membership_stage;
	uint32_t check_next_node; /* reads go to the nodes in turn */
	uint64_t partition_started_ms;
	bool torn_crash_pending;  /* at the next batch written anywhere */
	uint32_t aimed_crash_polls; /* a crash waiting for a handoff: polls */
	uint64_t torn_crash_down_ms;
	struct sim_lives *lives; /* streams.c */
	sim_epoch_seen *epochs;
	uint32_t epochs_count;
	uint32_t epochs_capacity;
	/* activations of an address the active set of another node holds:
	 * verified against that node's registry after the slice */
	struct {
		rt_addr addr;
		uint32_t node;  /* where it was activated */
		uint32_t other; /* where the set says it is active */
		uint32_t node_incarnation;
		uint32_t other_incarnation;
	} suspects[64];
	uint32_t suspects_count;
};

static inline sim_rng *
sim__rng(sim_world *w, int stream)
{
	return &w->rng[stream];
}

void sim__trace(sim_world *w, uint64_t a, uint64_t b, uint64_t c);

/* Mixes an event into the run's hash. */
static inline void
sim__hash(sim_world *w, uint64_t a, uint64_t b, uint64_t c)
{
	w->hash = sim__hash_step(sim__hash_step(sim__hash_step(w->hash, a),
		b), c);
	if (w->trace != NULL)
		sim__trace(w, a, b, c);
}

/* Queues an event (asserts the queue has room). */
void sim__schedule(sim_world *w, uint64_t at_ms, uint32_t kind,
	uint32_t node, uint64_t arg);
/* Marks the node as having work: its actors may be runnable and its
 * links want a flush soon. */
void sim__node_poke(sim_world *w, uint32_t node);
/* Runs the world until pred(arg) holds or deadline (global ms); true if
 * it held. The loop of the whole simulation. */
bool sim__run_until(sim_world *w, uint64_t deadline_ms,
	bool (*pred)(sim_world *w, void *arg), void *arg);
/* Nothing in flight anywhere: no call, frame, runnable actor or disk
 * work, every member up. A predicate for sim__run_until. */
bool sim__quiet(sim_world *w, void *arg);
/* Runs until quiet and converged (checked every simulated second) or
 * bound_ms from now. */
bool sim__settle(sim_world *w, uint64_t bound_ms);
/* What keeps the world from settling, for a failure message. */
void sim__why_unsettled(sim_world *w, char *out, size_t size);
/* Progress line when verbose. */
void sim__log(sim_world *w, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* FLOCK_SIM_INTERNAL_H */
