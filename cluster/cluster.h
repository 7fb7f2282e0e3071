/*
 * cluster.h — flock's cluster: the one public header of cluster/ (cl_).
 *
 * Role: spread the 8,192 logical partitions of the id space over nodes,
 * carry messages between nodes, detect failures and move partitions when
 * nodes join, drain or leave. Parts, bottom up:
 *
 *   placement   partition of an id, the versioned partition map (epoch),
 *               bounded-load rendezvous hashing that moves only what
 *               must move, the map's wire form and its file in data dir
 *   envelope    the msgpack wire form of a cross-node message, batched
 *   transport   cl_transport_ops: send a frame to a peer, receive frames;
 *               an nng twin (transport_nng.c, the only file including
 *               nng) and an in-memory twin (tests, the simulator)
 *   node        cl_node: plugs into the runtime's route seam, keeps
 *               reliable credit-windowed links to peers, runs SWIM
 *               membership, leases, the coordinator, and partition
 *               handoff; answers flockctl on its control endpoint
 *
 * Invariants:
 *   - every cross-node envelope carries the sender's map epoch; a node
 *     that receives a message for a partition it does not own forwards it
 *     to the owner it knows; nothing is dropped for being misrouted;
 *   - map changes are made by one coordinator (the leader of a term,
 *     elected by a majority of the voting members), and a map is
 *     committed by a majority of the voters, each having persisted it,
 *     before any node acts on it: no two maps share an epoch;
 *   - a node serves its partitions only while it holds a lease (heard
 *     from a majority of the map's members within CL_LEASE_MS);
 *   - messages from one sender to one receiver stay in order across a
 *     handoff (fences; see node.c).
 *
 * What it deliberately does not do: it knows no actor kind and no
 * domain; it stores no actor state itself (cl_state_ops, filled from
 * persistence, exports and imports snapshot bytes); it replicates
 * nothing (a node removed while down takes its partitions' data with it
 * until it returns).
 *
 * Errors: 0 or a negative CL_E... code; cl_strerror names them. Codes are
 * stable. cl_to_rt_error maps them for the runtime's route hook.
 */
#ifndef FLOCK_CLUSTER_H
#define FLOCK_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/runtime.h"

/* ---- errors ------------------------------------------------------------ */

enum {
	CL_OK = 0,
	CL_EINVAL = -200,       /* a caller broke a documented precondition */
	CL_ENOMEM = -201,       /* out of memory */
	CL_EIO = -202,          /* a file or socket operation failed */
	CL_ECORRUPT = -203,     /* bytes failed their checks */
	CL_EVERSION = -204,     /* a wire or file format this build can't read */
	CL_EUNAVAILABLE = -205, /* the owner or peer cannot be reached */
	CL_EBUSY = -206,        /* a bounded buffer is full: backpressure */
	CL_ENOTFOUND = -207,    /* no such node / file */
	CL_ETIMEDOUT = -208,    /* no answer in time */
	CL_ESTATE = -209,       /* refused in the current state (see message) */
	CL_EEXIST = -210,       /* already exists */
	CL_ETOOBIG = -211,      /* exceeds a size limit */
	CL_ENOTLEADER = -212,   /* only the coordinator does that */
};

/* Static string naming code; never NULL. */
const char *cl_strerror(int code);
/* The nearest RT_E code: CL_EBUSY -> RT_EMAILBOX_FULL, CL_EUNAVAILABLE
 * and CL_ETIMEDOUT -> RT_EUNAVAILABLE, CL_ENOMEM -> RT_ENOMEM, ... */
int cl_to_rt_error(int code);

/* ---- placement: partitions of the id space ----------------------------- */

/* id = ms since custom epoch (41) | partition (13) | sequence (10). */
#define CL_PARTITION_BITS 13u
#define CL_PARTITION_SHIFT 10u
#define CL_PARTITIONS (1u << CL_PARTITION_BITS)
#define CL_PARTITION_MASK (CL_PARTITIONS - 1u)

static inline uint32_t
cl_partition_of(uint64_t id)
{
	return (uint32_t)((id >> CL_PARTITION_SHIFT) & CL_PARTITION_MASK);
}

/*
 * Inbox addresses (kind RT_KIND_INBOX) belong to a node, not a partition:
 * an inbox never moves. Their id carries the owning node's id in the top
 * 16 bits: id = node_id << 48 | per-node sequence (48 bits). Node ids are
 * 1..CL_NODE_ID_MAX; node id 0 in an inbox id means "this node" (a
 * runtime that was not told its node id), which is delivered locally.
 */
#define CL_INBOX_NODE_SHIFT 48u

static inline uint16_t
cl_inbox_node(uint64_t inbox_id)
{
	return (uint16_t)(inbox_id >> CL_INBOX_NODE_SHIFT);
}

static inline uint64_t
cl_inbox_id_make(uint16_t node_id, uint64_t sequence)
{
	return ((uint64_t)node_id << CL_INBOX_NODE_SHIFT) |
	       (sequence & ((1ull << CL_INBOX_NODE_SHIFT) - 1u));
}

/* ---- limits ------------------------------------------------------------ */

/* Nodes one map holds: far above the clusters this code is run in, and
 * small enough that the whole member table rides on every SWIM ping. */
#define CL_NODES_MAX 64u
/* Node ids are 1..this (0 is "none"); ids are never reused in a map. */
#define CL_NODE_ID_MAX 65535u
/* "host:port" of a node's cluster endpoint, NUL included. */
#define CL_ADDRESS_BYTES_MAX 64u
/* Partitions one rebalance step moves at most (1/128 of the space).
 * Messages to a partition in a step wait (held, in order) from the map
 * change until its state has moved, so the step's share of the traffic
 * is the share that sees a step's delay: under 1% keeps the p99 of
 * requests where it was. 100,000 actors of 1 KiB move in ~3.5-3.8 s
 * on loopback at this size, 128 steps of ~28 ms, most of it the new
 * owner's state sync (~10 ms) and the export (~6 ms) (cluster_bench
 * handoff_ps, on a loaded 2-core machine). */
#define CL_REBALANCE_STEP_PARTITIONS_DEFAULT 64u
/* A node serves its partitions only while it has heard from a majority
 * of members within this many ms; removing a down node is allowed only
 * after twice this, so the removed node has surely stopped serving. */
#define CL_LEASE_MS_DEFAULT 3000u

/* ---- the partition map ------------------------------------------------- */

/* A member's state in the map (what the operator decided). */
typedef enum cl_node_state {
	CL_NODE_STANDBY = 0,  /* a member that owns nothing (joined, drained) */
	CL_NODE_ACTIVE = 1,   /* eligible to own partitions */
	CL_NODE_DRAINING = 2, /* its partitions are being moved away */
} cl_node_state;

typedef struct cl_map_node {
	uint16_t id;                        /* 1..CL_NODE_ID_MAX */
	uint8_t state;                      /* cl_node_state */
	uint8_t reserved;                   /* zero */
	char address[CL_ADDRESS_BYTES_MAX]; /* "host:port", NUL-terminated */
} cl_map_node;

/*
 * The versioned map: who owns each partition at `epoch`. A plain value
 * (about 53 KiB): copy it, compare it, keep old ones. owner[p] is a node
 * id, or 0 while no node is active (a fresh, empty cluster).
 */
typedef struct cl_map {
	uint64_t epoch;
	uint16_t next_node_id; /* the id the next joiner gets */
	uint16_t nodes_count;
	cl_map_node nodes[CL_NODES_MAX]; /* sorted by id */
	uint16_t owner[CL_PARTITIONS];
	/* The epoch (low 32 bits: 2^32 steps are decades away) at which
	 * owner[p] became its value, 0 for the first map: the name both
	 * sides of a handoff give it, whatever epochs each skipped. Set by
	 * the coordinator's commit. */
	uint32_t moved_at[CL_PARTITIONS];
} cl_map;

/* An empty map: epoch 0, no nodes, next id 1. */
void cl_map_init(cl_map *map);
/* The node with that id, or NULL. Borrowed from map. */
const cl_map_node *cl_map_find(const cl_map *map, uint16_t id);
const cl_map_node *cl_map_find_address(const cl_map *map,
	const char *address);
/* Adds a member with the next id; *id_out gets it. CL_EEXIST if the
 * address is taken, CL_ETOOBIG if CL_NODES_MAX are members. */
int cl_map_add_node(cl_map *map, const char *address, cl_node_state state,
	uint16_t *id_out);
/* Sets a member's state. CL_ENOTFOUND. */
int cl_map_set_state(cl_map *map, uint16_t id, cl_node_state state);
/* Deletes a member; its partitions get owner 0 until the next
 * cl_map_target (which reassigns them). CL_ENOTFOUND. */
int cl_map_remove_node(cl_map *map, uint16_t id);
/* Partitions each node owns, by the index of the node in map->nodes. */
void cl_map_counts(const cl_map *map, uint32_t counts[CL_NODES_MAX]);

/*
 * The placement function. Computes into *target the owners the active
 * members should have, starting from map's owners and moving as little as
 * possible: every active node gets floor(P/N) or ceil(P/N) partitions
 * (max/mean <= 1.0002 for 8 nodes); partitions leave only nodes above
 * their quota, chosen by lowest rendezvous score, and go to nodes below
 * theirs, chosen by highest rendezvous score (HRW with bounded load).
 * A join moves exactly the partitions the joiner gets, all to it.
 * target's epoch is map's; nodes are copied. Pure; deterministic.
 * Returns the number of partitions whose owner differs.
 */
uint32_t cl_map_target(const cl_map *map, cl_map *target);
/*
 * One throttled step toward target: *next = map with at most moves_max
 * partitions (lowest partition numbers first) set to their target owner,
 * epoch + 1. Returns the number moved (0: map already is the target;
 * then *next is a copy of map with the same epoch).
 */
uint32_t cl_map_step(const cl_map *map, const cl_map *target,
	uint32_t moves_max, cl_map *next);

/* The rendezvous score of (partition, node id): the hash both the
 * placement and the benchmarks use. */
uint64_t cl_rendezvous_score(uint32_t partition, uint16_t node_id);

/* Appends the map's msgpack form (versioned) to out. */
int cl_map_encode(const cl_map *map, rt_buffer *out);
/* Decodes; CL_ECORRUPT / CL_EVERSION. Checks every owner is a member. */
int cl_map_decode(const void *bytes, size_t length, cl_map *map);

/*
 * The map file: <dir>/cluster.map holds this node's id and the map in
 * two copies; a save overwrites the older copy in place and fdatasyncs
 * (the file is created whole once, through a renamed temporary file), so
 * a crash leaves the new save or the one before it, never a torn one.
 * load returns the newest whole copy; CL_ENOTFOUND when there is no
 * file, CL_ECORRUPT when neither copy is whole.
 */
int cl_map_save(const char *dir, uint16_t self_id, const cl_map *map);
int cl_map_load(const char *dir, uint16_t *self_id_out, cl_map *map);

/* ---- envelopes: the wire form of one cross-node message ---------------- */

/* Format version of envelopes and frames; bumped on any layout change
 * (3: a handoff's STATE and DONE name their shipment, and RESUME, QUERY
 * and REFENCE resume a handoff a crash interrupted). */
#define CL_WIRE_VERSION 3u

/* Flags above the runtime's RT_MESSAGE_F_* bits. */
#define CL_ENVELOPE_F_SYSTEM (1u << 16)    /* cluster protocol, not an actor's */
#define CL_ENVELOPE_F_FORWARDED (1u << 17) /* re-sent by a former owner */
#define CL_ENVELOPE_F_ASK (1u << 18)       /* an ask: undeliverable -> reply */

/*
 * A decoded envelope. payload points into the frame it was decoded from
 * (borrowed: valid until the frame's buffer is released).
 */
typedef struct cl_envelope {
	uint64_t epoch;
	rt_addr from;
	rt_addr to;
	uint64_t correlation;
	uint32_t type;
	uint32_t flags;
	const unsigned char *payload;
	uint32_t size;
} cl_envelope;

/* Appends one envelope (a msgpack array of 10) to out. */
int cl_envelope_encode(const cl_envelope *e, rt_buffer *out);
/* Decodes one envelope from the front of bytes; *used_out gets its
 * length. CL_ECORRUPT on any malformed input, CL_EVERSION. */
int cl_envelope_decode(const void *bytes, size_t length, cl_envelope *e,
	size_t *used_out);

/*
 * A frame is what one transport send carries: a header (version, source
 * node, source incarnation, frame sequence, acknowledged sequence) and a
 * batch of envelopes. frame_begin starts one in out; frame_add appends an
 * envelope; frame_end patches the count. Decoding walks the envelopes
 * with a callback that borrows each until it returns.
 */
typedef struct cl_frame_header {
	uint16_t source;      /* sending node id; 0 before it has one */
	uint64_t incarnation; /* sender's process incarnation */
	uint64_t sequence;    /* 1.. for reliable frames; 0: unsequenced */
	uint64_t ack;         /* highest sequence received from the peer */
	/* The receiver's incarnation as the sender knows it (0: not heard
	 * from yet). A receiver takes sequenced envelopes and acks only
	 * from frames that name its own incarnation: a frame resent to a
	 * restarted peer is from the session with its previous life and was
	 * delivered (or lost) there. Since wire version 2. */
	uint64_t peer_incarnation;
	uint32_t count;       /* envelopes in the frame */
} cl_frame_header;

typedef struct cl_frame_writer {
	rt_buffer *out;
	size_t count_offset;
	uint32_t count;
} cl_frame_writer;

int cl_frame_begin(cl_frame_writer *w, rt_buffer *out,
	const cl_frame_header *h);
int cl_frame_add(cl_frame_writer *w, const cl_envelope *e);
void cl_frame_end(cl_frame_writer *w);

typedef int (*cl_frame_envelope_callback)(void *arg, const cl_envelope *e);
/* Decodes the header into *h, then calls cb per envelope in order
 * (stops at the first non-zero return and passes it on). Checks the
 * whole frame's shape before the first callback, so a corrupt frame
 * delivers nothing. */
int cl_frame_decode(const void *bytes, size_t length, cl_frame_header *h,
	cl_frame_envelope_callback cb, void *arg);

/* ---- transport seam ---------------------------------------------------- */

/* Receives one frame; bytes borrowed until return. Called on a transport
 * thread, one frame at a time per transport. */
typedef void (*cl_frame_receive_callback)(void *arg, const void *bytes,
	size_t length);

/*
 * What the node needs from a network. Peers are named by node id; peer 0
 * is the bootstrap peer (the --join address) before this node has an id.
 * Frames may be lost, never corrupted or reordered per peer (the node's
 * links sequence, acknowledge and resend them).
 */
typedef struct cl_transport_ops {
	/* Starts receiving on address ("host:port"). */
	int (*listen)(void *self, const char *address);
	/* Where peer is; (re)connects with backoff as needed. */
	int (*peer_set)(void *self, uint16_t peer, const char *address);
	int (*peer_drop)(void *self, uint16_t peer);
	/* Sends a copy of bytes. CL_EBUSY when the peer's queue is full
	 * (try later), CL_EUNAVAILABLE when the peer is unknown. */
	int (*send)(void *self, uint16_t peer, const void *bytes,
		size_t length);
	void (*set_receive)(void *self, cl_frame_receive_callback cb,
		void *arg);
	/* Stops threads and frees; no callback runs after it returns. */
	void (*destroy)(void *self);
} cl_transport_ops;

/* nng: one push socket dialed per peer, one pull socket listening. */
int cl_transport_nng_create(const cl_transport_ops **ops_out, void **out);

/*
 * In memory: a network object holds endpoints by address; frames are
 * copied and delivered by cl_memnet_run (the test's or simulator's
 * thread), in per-link FIFO order. Links can be blocked (frames dropped)
 * to cut a node off.
 */
typedef struct cl_memnet cl_memnet;
int cl_memnet_create(cl_memnet **out);
void cl_memnet_destroy(cl_memnet *net);
/* A transport endpoint on net; destroy it through its ops. */
int cl_memnet_transport(cl_memnet *net, const cl_transport_ops **ops_out,
	void **out);
/* Delivers queued frames, at most max (0: all); returns how many. */
uint64_t cl_memnet_run(cl_memnet *net, uint64_t max);
/* Drops every frame between the two addresses while blocked. */
void cl_memnet_block(cl_memnet *net, const char *a, const char *b,
	bool blocked);

/* ---- the node ---------------------------------------------------------- */

/*
 * Where actor state comes from and goes to during a handoff (persistence
 * fills it; NULL ops: nothing is shipped). Called on the cluster thread.
 */
typedef int (*cl_state_item_callback)(void *arg, rt_addr addr,
	const void *bytes, size_t length);
/* A sync finished: status 0 (durable) or an error (ask again). */
typedef void (*cl_state_synced_callback)(void *arg, int status);
typedef struct cl_state_ops {
	/* Calls item for every actor stored in partition (all of them,
	 * active or not; actors are passivated already). bytes borrowed. */
	int (*export_partition)(void *arg, uint32_t partition,
		cl_state_item_callback item, void *item_arg);
	/* Stores one actor's snapshot so that its next activation here
	 * loads it. Replaces what was stored for addr. */
	int (*import_actor)(void *arg, rt_addr addr, const void *bytes,
		size_t length);
	/* Forgets what is stored for partition here (it moved away). */
	int (*drop_partition)(void *arg, uint32_t partition);
	/* Makes every import_actor that returned before it durable, then
	 * calls done, on any thread, possibly much later (never from
	 * within sync itself). The new owner serves a partition, and the
	 * old owner forgets it, only after its imports are durable. NULL:
	 * imports are durable when import_actor returns. Returns 0 or an
	 * error (done is then not called). */
	int (*sync)(void *arg, cl_state_synced_callback done, void *done_arg);
	/* Optional. The node serves its partitions (again): it holds its
	 * lease, after starting without one or losing it. Wakes what
	 * waited for that (actors recovery could not activate). Called on
	 * the ticking thread, no lock of the node held. */
	void (*serving)(void *arg);
} cl_state_ops;

/* cl_state_ops over persistence (state_ps.c): state_arg is the node's
 * ps_node. Static; never freed. */
typedef struct ps_node ps_node;
const cl_state_ops *cl_state_ops_persistence(void);

/*
 * Passivation seam: stop the local fast path for addresses in
 * partition, let active actors finish the messages already queued, save
 * and free them, then call done. NULL with a runtime: the node uses
 * rt_passivate_where (one pass for every partition a step moves) and the
 * route hook's may_activate keeps the partition from waking again here.
 * NULL without a runtime: no actor is active (tests).
 */
typedef void (*cl_passivated_callback)(void *arg, uint32_t partition,
	int status);
typedef struct cl_passivate_ops {
	int (*passivate_partition)(void *arg, uint32_t partition,
		cl_passivated_callback done, void *done_arg);
} cl_passivate_ops;

typedef struct cl_node_config {
	const char *listen;   /* "host:port" of this node's cluster endpoint */
	const char *join;     /* NULL, or a member's "host:port" to join */
	const char *data_dir; /* holds cluster.map */
	/* NULL: nng. Otherwise borrowed, and transport is taken (destroyed
	 * by cl_node_close). */
	const cl_transport_ops *transport_ops;
	void *transport;
	const cl_state_ops *state_ops; /* borrowed; may be NULL */
	void *state_arg;
	/* true: state_ops come later (cl_node_set_state) and no handoff
	 * ships before they do. A node opens its cluster before its
	 * persistence, so that recovery's wake-ups are already routed. */
	bool state_deferred;
	const cl_passivate_ops *passivate_ops; /* borrowed; may be NULL */
	void *passivate_arg;
	/* true: no thread; the caller drives cl_node_tick (the simulator,
	 * tests). false: a cluster thread ticks every CL_TICK_MS. */
	bool manual_tick;
	/* Control endpoint for flockctl ("host:port"); NULL: the cluster
	 * port + 1. Ignored with a non-nng transport. */
	const char *control;
	uint64_t seed;                 /* SWIM probe order */
	uint64_t lease_ms;             /* 0: CL_LEASE_MS_DEFAULT */
	uint64_t probe_interval_ms;    /* 0: default (200) */
	uint64_t suspect_timeout_ms;   /* 0: default (1200) */
	uint32_t rebalance_step_partitions; /* 0: default */
	/* Make this node's first map give it every partition when there is
	 * no map file and no join (a new single-node cluster). Default on. */
	bool bootstrap;
} cl_node_config;

void cl_node_config_default(cl_node_config *cfg);

typedef struct cl_node cl_node;

/*
 * Opens the node: loads <data_dir>/cluster.map (or bootstraps a single
 * node cluster, or joins through cfg->join), listens, installs the route
 * hook on rt (rt may be NULL only for tests that drive envelopes
 * directly), and starts the cluster thread unless manual_tick. Call after
 * the kinds are registered and before rt_start, so the first send is
 * already routed. A join completes asynchronously (cl_node_wait_joined).
 * Returns 0, CL_EIO (cannot listen / write the map), CL_ECORRUPT, ...
 * *out owned; cl_node_close it before rt_destroy.
 */
int cl_node_open(const cl_node_config *cfg, rt_runtime *rt, cl_node **out);
/* Stops the thread and the transport, removes the route hook. Does not
 * drain: run `flockctl drain` first for a graceful exit. */
void cl_node_close(cl_node *node);
/* Sets the state seam of a node opened with state_deferred. ops and arg
 * borrowed until cl_node_close. Any thread. */
void cl_node_set_state(cl_node *node, const cl_state_ops *ops, void *arg);

/* Waits (real time) until the node has an id and a map. CL_ETIMEDOUT. */
int cl_node_wait_joined(cl_node *node, uint64_t timeout_ms);

/* Drives timers (probes, leases, resends, coordinator steps) at now_ms
 * (monotonic ms). Only with manual_tick. */
void cl_node_tick(cl_node *node, uint64_t now_ms);

/* This node's id (0 until joined) and a copy of its current map. */
uint16_t cl_node_id(const cl_node *node);
void cl_node_map(cl_node *node, cl_map *out);

/*
 * Routes one envelope as if an actor on this node had sent it (tests
 * and the simulator; the route hook does the same for rt_messages).
 * Returns 0 (delivered locally, forwarded or buffered), CL_EBUSY,
 * CL_EUNAVAILABLE.
 */
int cl_node_send(cl_node *node, const cl_envelope *e);
/* With rt NULL, envelopes for this node are handed to this callback
 * instead of the runtime (tests). Borrowed until return. */
typedef void (*cl_deliver_callback)(void *arg, const cl_envelope *e);
void cl_node_set_deliver(cl_node *node, cl_deliver_callback cb, void *arg);

/* ---- operator actions (also reachable through flockctl) ---------------- */

/* Each runs at the coordinator only (CL_ENOTLEADER elsewhere; flockctl
 * goes there). With a cluster thread they return once the new map is
 * committed by a majority (not once moved; CL_ETIMEDOUT after 10 s
 * without a commit); with manual ticks (tests, the simulator) once the
 * coordinator queued the change, which the caller's ticks then commit
 * (or lose, if the coordinator changes first). */
int cl_node_admin_add(cl_node *node, const char *address);
int cl_node_admin_drain(cl_node *node, uint16_t id);
int cl_node_admin_remove(cl_node *node, uint16_t id, bool force);
int cl_node_admin_rebalance(cl_node *node);

/* What `flockctl status` shows, per member, from this node's view. */
typedef enum cl_liveness {
	CL_LIVE_ALIVE = 0,
	CL_LIVE_SUSPECT = 1,
	CL_LIVE_DOWN = 2,
} cl_liveness;

typedef struct cl_member_status {
	uint16_t id;
	uint8_t state;    /* cl_node_state */
	uint8_t liveness; /* cl_liveness */
	char address[CL_ADDRESS_BYTES_MAX];
	uint32_t partitions;    /* owned in the current map */
	uint64_t actors_active; /* as last gossiped by the node */
	uint64_t messages_in;   /* cross-node messages it received, total */
	uint64_t incarnation;
} cl_member_status;

typedef struct cl_status {
	uint16_t self;
	uint16_t coordinator;
	uint64_t epoch;
	bool lease_held;
	/* partitions not yet at their target (at the coordinator, plus the
	 * map changes queued or not yet committed) */
	uint32_t moves_pending;
	uint32_t moves_in_flight; /* partitions in handoff at this node */
	uint32_t members_count;
	cl_member_status members[CL_NODES_MAX];
} cl_status;

void cl_node_status(cl_node *node, cl_status *out);

#endif /* FLOCK_CLUSTER_H */
