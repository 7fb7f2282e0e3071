/*
 * internal.h — names shared between the files of cluster/ (cl__ prefix).
 *
 * Files:
 *   errors.c          cl_strerror, cl_to_rt_error, the assert hook
 *   placement.c       the map, rendezvous scores, target and steps
 *   map_file.c        the map's msgpack form and its file in data dir
 *   envelope.c        envelope and frame codec (msgpack)
 *   membership.c      SWIM state machine: pure, clock passed in
 *   transport_mem.c   in-memory transport (tests, simulator)
 *   transport_nng.c   nng transport and the control endpoint's rep/req
 *                     (the only file including nng)
 *   link.c            per-peer reliable, credit-windowed, batching link
 *   node.c            cl_node: routing, membership glue, leases,
 *                     coordinator, handoff, admin
 *   state_ps.c        cl_state_ops over persistence (export, import, drop)
 *   control.c         control request/reply codec shared with flockctl
 *   consensus.c       the map consensus's messages and its vote and
 *                     quorum rules (node.c runs the protocol)
 *  *   flockctl.c        the operator CLI's main (not in the library)
 *
 * Invariants across files: lock order node->lock -> link->lock ->
 * (nothing); the route fast path reads only the atomic route table.
 */
#ifndef FLOCK_CLUSTER_INTERNAL_H
#define FLOCK_CLUSTER_INTERNAL_H

#include "cluster/cluster.h"
/* Only for sim_sometimes, the simulator's dependency-free counter. */
#include "sim/sim.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- asserts (on in release builds) ------------------------------------ */

_Noreturn void cl__assert_fail(const char *expr, const char *file, int line);
#define CL_ASSERT(cond)                                                      \
	do {                                                                 \
		if (__builtin_expect(!(cond), 0))                            \
			cl__assert_fail(#cond, __FILE__, __LINE__);          \
	} while (0)

#define CL_CONTAINER_OF(ptr, type, member)                                   \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- hashing ----------------------------------------------------------- */

/* splitmix64's finaliser: a bijective 64-bit mix with full avalanche. */
static inline uint64_t
cl__mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* FNV-1a 64 over bytes: the map file's checksum. */
uint64_t cl__fnv64(const void *bytes, size_t length);

/* now - then, or 0 when then is later: times are read on several
 * threads, and a `now` read before a lock wait can be older than a
 * timestamp another thread stored meanwhile. */
static inline uint64_t
cl__elapsed_ms(uint64_t now_ms, uint64_t then_ms)
{
	return now_ms > then_ms ? now_ms - then_ms : 0;
}

/* xorshift64* step; state never 0. */
static inline uint64_t
cl__rand_next(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* ---- msgpack helpers (envelope.c) -------------------------------------- */

/* A packer writing into an rt_buffer; errors stick in *status. */
typedef struct cl__packer {
	msgpack_packer pk;
	rt_buffer *out;
	int status;
} cl__packer;
void cl__packer_init(cl__packer *p, rt_buffer *out);

/* Reads from a msgpack_object, CL_ECORRUPT on a type mismatch. */
int cl__obj_u64(const msgpack_object *o, uint64_t *out);
int cl__obj_u32(const msgpack_object *o, uint32_t *out);
int cl__obj_bin(const msgpack_object *o, const unsigned char **bytes,
	uint32_t *length);
int cl__obj_str(const msgpack_object *o, char *out, size_t size);
int cl__obj_array(const msgpack_object *o, uint32_t count_min,
	const msgpack_object **items, uint32_t *count);

/* Decodes a whole msgpack document into a zone; CL_ECORRUPT if bytes are
 * not exactly one object. */
int cl__unpack(const void *bytes, size_t length, msgpack_zone *zone,
	msgpack_object *out);

/* Map helpers for the wire/disk form (map_file.c). */
int cl__map_pack(cl__packer *p, const cl_map *map);
int cl__map_from_object(const msgpack_object *o, cl_map *map);
/* Index of id in map->nodes, or -1. */
int cl__map_index(const cl_map *map, uint16_t id);
/* A handoff in flight, as the map file keeps it: what a restart resumes
 * (node.c). */
enum { CL__HANDOFF_LEAVING = 1, CL__HANDOFF_ARRIVING = 2 };
typedef struct cl__handoff_record {
	uint32_t partition;
	uint8_t mode;  /* CL__HANDOFF_LEAVING (peer: new owner) or _ARRIVING */
	uint16_t peer; /* (peer: old owner) */
	uint64_t epoch; /* the map epoch the handoff began at */
} cl__handoff_record;
/* What a node keeps of the map consensus (consensus.c, node.c), saved
 * in the map file with the map: the term it knows, whom it voted for in
 * it, and the last map it accepted (or proposed) above its committed one
 * with the term of that proposal. */
typedef struct cl__vote_state {
	uint64_t term;
	uint16_t voted_for;    /* 0: nobody in term */
	bool has_entry;
	uint64_t entry_term;
	cl_map *entry;         /* save: read when has_entry; load: room for
				* one (NULL: not read) */
} cl__vote_state;
/* cl_map_save / cl_map_load with the handoffs in flight (count of them,
 * at most CL_PARTITIONS; records NULL when count is 0). load: records
 * has room for CL_PARTITIONS, or is NULL to skip them. */
int cl__map_file_save(const char *dir, uint16_t self_id, const cl_map *map,
	const cl__handoff_record *records, uint32_t count);
int cl__map_file_load(const char *dir, uint16_t *self_id_out, cl_map *map,
	cl__handoff_record *records, uint32_t *count);
/* The same with the consensus state (vote NULL: none saved / not read;
 * a file without one loads as term 0, no vote, no entry). */
int cl__map_file_save_vote(const char *dir, uint16_t self_id,
	const cl_map *map, const cl__handoff_record *records, uint32_t count,
	const cl__vote_state *vote);
int cl__map_file_load_vote(const char *dir, uint16_t *self_id_out,
	cl_map *map, cl__handoff_record *records, uint32_t *count,
	cl__vote_state *vote);
/* Debug check of a map's invariants (sorted ids, owners are members). */
bool cl__map_valid(const cl_map *map);

/* ---- map consensus: messages and rules (consensus.c) -------------------- */

/* A candidate asks for a vote (pre: would you vote, changing nothing).
 * committed: its committed map's epoch; last_epoch, last_term: its last
 * map accepted above that (last_epoch == committed: none). */
typedef struct cl__vote_request {
	uint64_t term;
	bool pre;
	uint64_t committed;
	uint64_t last_epoch;
	uint64_t last_term;
} cl__vote_request;

/* The answer: the voter's term, the term asked for, and the leader the
 * voter follows (0: none), which a refused candidate then follows. */
typedef struct cl__vote_reply {
	uint64_t term;
	uint64_t asked;
	bool granted;
	bool pre;
	uint16_t leader;
} cl__vote_reply;

/* A member took (ok) or refused the leader's proposal of epoch. */
typedef struct cl__accepted {
	uint64_t term;
	uint64_t epoch;
	bool ok;
} cl__accepted;

int cl__vote_request_encode(const cl__vote_request *r, rt_buffer *out);
int cl__vote_request_decode(const void *bytes, size_t length,
	cl__vote_request *r);
int cl__vote_reply_encode(const cl__vote_reply *r, rt_buffer *out);
int cl__vote_reply_decode(const void *bytes, size_t length,
	cl__vote_reply *r);
int cl__accepted_encode(const cl__accepted *a, rt_buffer *out);
int cl__accepted_decode(const void *bytes, size_t length, cl__accepted *a);
/* PROPOSE: [term, map]. */
int cl__propose_encode(uint64_t term, const cl_map *map, rt_buffer *out);
int cl__propose_decode(const void *bytes, size_t length, uint64_t *term,
	cl_map *map);

/* Members that vote on maps: the active and draining ones (every member
 * when none is). */
bool cl__map_voter(const cl_map *map, uint16_t id);
/* Whether ids (count of them, duplicates counted once) are a majority
 * of map's voters. */
bool cl__map_majority(const cl_map *map, const uint16_t *ids,
	uint32_t count);
/* Whether a candidate's maps (committed epoch, last accepted epoch and
 * term) are at least as far as the voter's: a later epoch wins; at the
 * same epoch a committed map wins over one only accepted, and of two
 * accepted ones the later term. A committed map at an epoch is the only
 * map that can be committed there, so a voter holding one votes only
 * for a candidate that holds it committed too. */
bool cl__vote_up_to_date(uint64_t candidate_committed,
	uint64_t candidate_last_epoch, uint64_t candidate_last_term,
	uint64_t committed, uint64_t last_epoch, uint64_t last_term);

/* ---- SWIM membership (membership.c) ------------------------------------ */

/* Members SWIM pings ask k others to probe a silent one through. */
#define CL_SWIM_INDIRECT_PROBES 3u
/* Actions one tick or one message yields at most. */
#define CL_SWIM_ACTIONS_MAX (CL_SWIM_INDIRECT_PROBES + 4u)

typedef enum cl__swim_action_kind {
	CL__SWIM_PING = 1,     /* send ping(seq) to `to` */
	CL__SWIM_ACK = 2,      /* send ack(seq) to `to` (for `target`) */
	CL__SWIM_PING_REQ = 3, /* ask `to` to ping `target` for us */
	CL__SWIM_CHANGED = 4,  /* member `target` changed liveness */
} cl__swim_action_kind;

typedef struct cl__swim_action {
	uint8_t kind;
	uint16_t to;
	uint16_t target;
	uint16_t origin; /* for an ACK relayed for a ping-req: who asked */
	uint64_t sequence;
} cl__swim_action;

typedef struct cl__swim_actions {
	uint32_t count;
	cl__swim_action items[CL_SWIM_ACTIONS_MAX * 2];
} cl__swim_actions;

/* What members tell each other about a member (gossiped on every ping). */
typedef struct cl__swim_update {
	uint16_t id;
	uint8_t liveness; /* cl_liveness */
	uint64_t incarnation;
	uint64_t actors_active; /* load, carried along for status */
	uint64_t messages_in;
	uint64_t epoch;   /* the map epoch the member has adopted */
	uint32_t pending; /* partitions in handoff at the member */
} cl__swim_update;

typedef struct cl__swim_member {
	uint16_t id;
	uint8_t liveness;
	uint64_t incarnation;
	uint64_t suspect_since_ms;
	uint64_t last_heard_ms; /* any direct message from it */
	uint64_t actors_active;
	uint64_t messages_in;
	uint64_t epoch;
	uint32_t pending;
} cl__swim_member;

typedef struct cl__swim {
	uint16_t self;
	uint64_t incarnation;
	uint64_t probe_interval_ms;
	uint64_t probe_timeout_ms;
	uint64_t suspect_timeout_ms;
	uint64_t rng;
	uint32_t count;
	cl__swim_member members[CL_NODES_MAX]; /* self included */
	/* the probe in progress */
	uint16_t probe_target;
	uint64_t probe_sequence;
	uint64_t probe_started_ms;
	bool probe_indirect_sent;
	bool probe_acked;
	uint64_t next_probe_ms;
	uint64_t sequence;
	/* round-robin order of the probes (shuffled each round) */
	uint16_t order[CL_NODES_MAX];
	uint32_t order_count;
	uint32_t order_next;
} cl__swim;

void cl__swim_init(cl__swim *s, uint16_t self, uint64_t incarnation,
	uint64_t seed, uint64_t probe_interval_ms,
	uint64_t suspect_timeout_ms, uint64_t now_ms);
/* Makes the member set equal to ids (self is always kept). New members
 * start alive, heard at now. */
void cl__swim_set_members(cl__swim *s, const uint16_t *ids, uint32_t count,
	uint64_t now_ms);
cl__swim_member *cl__swim_find(cl__swim *s, uint16_t id);
void cl__swim_tick(cl__swim *s, uint64_t now_ms, cl__swim_actions *out);
/* Something arrived from `from` (any frame counts as life). */
void cl__swim_heard(cl__swim *s, uint16_t from, uint64_t now_ms);
/* A ping from `from`, probing on behalf of origin (origin == from for a
 * direct probe): answer with an ack carrying origin back. */
void cl__swim_on_ping(cl__swim *s, uint16_t from, uint16_t origin,
	uint64_t sequence, uint64_t now_ms, cl__swim_actions *out);
/* An ack from `from` about `target` for origin's probe seq. If origin is
 * another node we relay it; if it is us it may answer our probe.
 * Returns true if it answered our probe. */
bool cl__swim_on_ack(cl__swim *s, uint16_t from, uint16_t target,
	uint16_t origin, uint64_t sequence, uint64_t now_ms,
	cl__swim_actions *out);
void cl__swim_on_ping_req(cl__swim *s, uint16_t from, uint16_t target,
	uint64_t sequence, uint64_t now_ms, cl__swim_actions *out);
/* Merges one gossiped update (incarnation rules of SWIM; a rumour that
 * self is suspect or down is refuted by raising self's incarnation). */
void cl__swim_merge(cl__swim *s, uint16_t from, const cl__swim_update *u,
	uint64_t now_ms, cl__swim_actions *out);
/* The table to gossip. Returns count written (<= max). */
uint32_t cl__swim_updates(const cl__swim *s, cl__swim_update *out,
	uint32_t max);
/* Members heard from (self counts) within window_ms of now. */
uint32_t cl__swim_heard_within(const cl__swim *s, uint64_t now_ms,
	uint64_t window_ms);

/* ---- control protocol (control.c) -------------------------------------- */

typedef enum cl__control_op {
	CL__CONTROL_STATUS = 1,
	CL__CONTROL_RING = 2,
	CL__CONTROL_ADD = 3,
	CL__CONTROL_DRAIN = 4,
	CL__CONTROL_REMOVE = 5,
	CL__CONTROL_REBALANCE = 6,
	/* test-only (the node needs FLOCK_TEST=1): drop every frame to and
	 * from the member at address (force: true blocks, false unblocks),
	 * as a network partition would */
	CL__CONTROL_BLOCK = 7,
} cl__control_op;

typedef struct cl__control_request {
	uint32_t op;
	uint16_t node;     /* drain/remove */
	bool force;        /* remove */
	char address[CL_ADDRESS_BYTES_MAX]; /* add */
} cl__control_request;

int cl__control_request_encode(const cl__control_request *r,
	rt_buffer *out);
int cl__control_request_decode(const void *bytes, size_t length,
	cl__control_request *r);
/* Reply: [code, message, status, map-or-nil]. */
int cl__control_reply_encode(int code, const char *message,
	const cl_status *status, const cl_map *map, rt_buffer *out);
int cl__control_reply_decode(const void *bytes, size_t length, int *code,
	char *message, size_t message_size, cl_status *status, cl_map *map,
	bool *has_map);

/* Control endpoint (transport_nng.c). handler fills the reply. */
typedef void (*cl__control_handler)(void *arg, const void *request,
	size_t length, rt_buffer *reply);
typedef struct cl__control_server cl__control_server;
int cl__control_server_start(const char *address,
	cl__control_handler handler, void *arg, cl__control_server **out);
void cl__control_server_stop(cl__control_server *s);
/* One request/reply round trip to address. *reply owned by the caller
 * (rt_buffer_free). CL_EUNAVAILABLE / CL_ETIMEDOUT. */
int cl__control_call(const char *address, const void *request,
	size_t length, uint64_t timeout_ms, rt_buffer *reply);
/* "host:port" -> "host:port+1". CL_EINVAL on a malformed address. */
int cl__control_address(const char *cluster_address, char *out,
	size_t size);

/* Sleep helper for control waits (real time). */
uint64_t cl__monotonic_ms(void);
uint64_t cl__wall_ms(void);
void cl__sleep_ms(uint64_t ms);

#endif /* FLOCK_CLUSTER_INTERNAL_H */

/* ---- links: one per peer (link.c) -------------------------------------- */

/* A batch is sealed into a frame at this size: large enough that the
 * per-frame cost (one nng message, one decode) is amortised over
 * thousands of small envelopes, small enough to keep latency low. */
#define CL_BATCH_BYTES 65536u
/* Bytes sent and not yet acknowledged by the peer, at most: the credit
 * window. At 2M msgs/s of ~40 bytes this is ~200 ms of traffic; past it
 * sends to that peer are CL_EBUSY (RT_EMAILBOX_FULL to the actor). */
#define CL_LINK_WINDOW_BYTES (16u << 20)
/* System messages (maps, fences, handoff state) may exceed the window
 * by this much more before they too are refused. */
#define CL_LINK_SYSTEM_SLACK_BYTES (16u << 20)
/* Sealed frames a link keeps for resending, at most (window / ~64 KiB,
 * doubled for the slack and for small frames under light load). */
#define CL_LINK_FRAMES_MAX 4096u
/* No ack progress for this long with frames outstanding: resend them
 * all (go-back-N); also how a lost connection's frames come back. */
#define CL_LINK_RESEND_MS 1000u

/* Frames after a gap the receiver keeps until the gap is filled, at
 * most (and bytes, below): taking only the next sequence made every lost
 * frame cost the ones behind it a resend round (CL_LINK_RESEND_MS), so
 * at a few percent loss a busy link fell minutes behind (found by
 * flocksim: a like sent under 10% loss and 400 ms jitter arrived 247 s
 * later). 64 frames cover a resend round of a busy link's flushes. */
#define CL_LINK_REORDER_FRAMES 64u
#define CL_LINK_REORDER_BYTES_MAX (4u << 20)

typedef struct cl__held {
	uint64_t sequence; /* 0: empty */
	rt_buffer bytes;   /* the whole frame as it arrived */
} cl__held;

typedef struct cl__sealed {
	uint64_t sequence;
	bool sent;
	rt_buffer bytes;
} cl__sealed;

typedef struct cl__link {
	pthread_mutex_t lock;
	_Atomic uint16_t peer; /* node id; 0: slot unused */
	bool dead;             /* peer removed from the map */
	char address[CL_ADDRESS_BYTES_MAX];
	const cl_transport_ops *transport_ops;
	void *transport;
	uint16_t self;
	uint64_t self_incarnation;
	/* sending */
	rt_buffer open;        /* the batch being filled */
	cl_frame_writer writer;
	uint64_t next_sequence;
	cl__sealed *frames;    /* ring of CL_LINK_FRAMES_MAX */
	uint32_t frames_head;  /* oldest unacked */
	uint32_t frames_count;
	uint64_t acked;        /* highest sequence the peer acknowledged */
	size_t unacked_bytes;  /* sealed and not acked (open not included) */
	uint64_t last_progress_ms;
	/* receiving */
	uint64_t peer_incarnation;
	uint64_t received;     /* highest in-order sequence taken */
	bool ack_due;
	/* frames after a gap, slot sequence % CL_LINK_REORDER_FRAMES */
	cl__held *reorder;
	size_t reorder_bytes;
	/* counters */
	uint64_t envelopes_sent;
	uint64_t frames_resent;
} cl__link;

int cl__link_init(cl__link *l, const cl_transport_ops *ops, void *transport,
	uint16_t self, uint64_t incarnation);
void cl__link_destroy(cl__link *l);
/* The following take l->lock themselves unless named _locked. */
/* Points the link at peer (resets send/receive state when it changes). */
void cl__link_bind_locked(cl__link *l, uint16_t peer, const char *address,
	uint64_t now_ms);
/* Appends e to the open batch; seals and sends when it is full.
 * CL_EBUSY when the window is full (system: past the slack too). */
int cl__link_enqueue_locked(cl__link *l, const cl_envelope *e, bool system,
	uint64_t now_ms);
/* Seals the open batch, sends what the transport takes, resends after
 * CL_LINK_RESEND_MS without progress, and sends a bare ack when one is
 * due and nothing else carried it. */
void cl__link_flush_locked(cl__link *l, uint64_t now_ms);
/* The peer acknowledged everything up to ack. */
void cl__link_on_ack_locked(cl__link *l, uint64_t ack, uint64_t now_ms);
/* Every frame from the peer shows its incarnation: a new one resets. */
void cl__link_observe_locked(cl__link *l, uint64_t incarnation);
/* Rewrites the peer incarnation of an encoded frame (envelope.c). */
void cl__frame_readdress(unsigned char *frame, size_t length,
	uint64_t peer_incarnation);
/* Decides whether to take a sequenced frame: returns true for the next
 * in-order one (and records it), false for duplicates and gaps. */
bool cl__link_accept_locked(cl__link *l, uint64_t sequence);
/* Keeps a copy of a frame of the peer's current session that arrived
 * after a gap (sequence beyond received + 1, within
 * CL_LINK_REORDER_FRAMES and the byte bound), so the resend of the
 * missing frame is all the gap costs. True when the frame is held. */
bool cl__link_hold_locked(cl__link *l, uint64_t sequence, const void *bytes,
	size_t length);
/* Moves the held frame that is next in order (received + 1) to *out
 * (owned by the caller) and returns true; false when it is not held.
 * The caller receives it as if it had just arrived. */
bool cl__link_take_held_locked(cl__link *l, rt_buffer *out);
/* Sends one unsequenced frame with e (SWIM, joins) right away. */
int cl__link_send_now_locked(cl__link *l, const cl_envelope *e);
/* Bytes the window has left. */
size_t cl__link_window_left_locked(const cl__link *l);
