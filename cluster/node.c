/*
 * node.c — cl_node: the cluster as one node sees it.
 *
 * Routing. route[p] is an atomic word per partition: the owner's node id
 * and a mode (local, remote, hold, down, none). The runtime's route hook
 * reads it without a lock; a remote send locks the owner's link and
 * reads the word again under that lock, so once a map change has stored
 * new words and queued its fences, no send that read an old word can
 * land behind a fence. Inbox addresses go to the node named in their id.
 *
 * Map changes. Only the coordinator makes a new epoch: operator actions
 * and throttled rebalance steps (at most rebalance_step_partitions moves
 * per epoch; the next step waits until every member reports the epoch
 * adopted and no handoff pending). A node persists a map before it
 * adopts it.
 *
 * Epochs are committed. The coordinator is the leader of a term, elected
 * by a majority of the voting members (active and draining ones), and a
 * map is committed at an epoch once a majority of the voters of the
 * committed map and of the new one have persisted it (PROPOSE, ACCEPTED);
 * nobody, the coordinator included, adopts (acts on) a map before that,
 * and only committed maps are pushed (MAP) and adopted. One proposal is
 * in flight at a time, for the epoch after the committed one. Each node
 * persists, in the map file, its term, its vote in it, and the last map
 * it accepted above its committed one (the entry) with the term that
 * proposed it. A candidate asks first whether it would win (a pre-vote
 * changes no term, so a node that cannot win, one just restarted under a
 * live leader, does not depose it) and then for votes; a member votes
 * once per term, only while it follows no live leader, and only for a
 * candidate whose maps are at least as far as its own
 * (cl__vote_up_to_date). A new leader proposes again, under its term,
 * its last map (its entry, else its committed map) before anything new:
 * an entry that some majority may have committed is committed again, the
 * same map at the same epoch, and one no majority took is replaced (a
 * member takes the leader's proposal over its own entry). So no two maps
 * are ever committed at one epoch: a committed map is held (committed or
 * as an entry) by a majority, every later leader is elected by a
 * majority, one of which holds it, and it votes only for a candidate
 * holding it too. Members follow the lowest-id voter first (the others
 * wait rank x CL_ELECTION_STAGGER_MS after losing their leader), and a
 * leader that is no voter any more (drained) stands down.
 *
 * Handoff of partition p from A to B at epoch e, preserving per-sender
 * order without losing or duplicating anything:
 *   every node S, on adopting e, re-points p at B and then sends FENCE(e)
 *   to A (all it sent to A before is ahead of the fence on that link);
 *   A holds every message for p (local sends and arrivals), passivates
 *   p's actors, ships their snapshots (STATE), sends DONE, forwards what
 *   it held in order (fences included, as markers) and from then on
 *   forwards stragglers; B holds messages for p that did not come from
 *   A until it has DONE and a fence from every live member, then
 *   delivers them in order and serves p; B tells A (SETTLED) so A drops
 *   its copy of p's state. Both name the handoff by the epoch at which
 *   p's owner became B (map.moved_at[p]), whatever maps either skipped.
 *
 * Crashes in the middle of a handoff. Each node keeps its handoffs in
 * flight in the map file with the map (written before it acts on a
 * map), so a restart resumes them: A holds p again and asks B (QUERY);
 * B asks A for the state (RESUME) under its own incarnation, the token
 * STATE and DONE must carry, so nothing shipped to a previous life of B
 * (or by one of A) completes the handoff; A ships only what B asked for,
 * starting over if B asks again, and asks every member to fence again
 * (REFENCE); a restarted node fences every member itself. B serves p
 * only once its imports are durable (the state seam's sync) and the map
 * file no longer lists p, so a B that comes back either still arrives
 * (and is shipped the state again) or serves what it has, and A forgets
 * p only after that (SETTLED, also the answer to a QUERY for a handoff B
 * no longer runs). A side waiting on the other asks again backing off
 * (1 s, doubling to 16 s), and at once when the other side restarts or
 * comes back from down. While the other side is down, new messages for
 * p fail fast (CL_EUNAVAILABLE) instead of waiting in the hold.
 *
 * Leases. A node serves its partitions only while it heard from a
 * majority of the map's members within lease_ms; without, sends to its
 * partitions fail with CL_EUNAVAILABLE, so a cut-off minority stops
 * serving before the majority may remove it (2 x lease_ms later).
 *
 * Threads: the runtime's workers call the route hook; the transport's
 * thread delivers frames; the cluster thread (or cl_node_tick) flushes
 * links, runs SWIM, leases, the coordinator and handoffs; the control
 * thread answers flockctl. Lock order: node->lock -> node->hold_lock ->
 * link->lock.
 *
 * What it does not do: replicate state (only the map is agreed on);
 * change the voters by more than one at a time within one map (an
 * operator action changes one member; a commit needs majorities of the
 * voters before and after, so two such quorums always meet).
 */
#include "cluster/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>

/* The cluster thread's period: bounds the latency a sealed-at-flush batch
 * adds under light load. */
#define CL_TICK_MS 1u
/* Coordinator duties, lease checks and join retries run this often. */
#define CL_DUTY_INTERVAL_MS 20u
/* A joiner repeats its request this often until accepted. */
#define CL_JOIN_RETRY_MS 500u
/* A node behind the coordinator's epoch gets the map again this often. */
#define CL_MAP_REPUSH_MS 500u
/* State is shipped in chunks of about this many bytes. */
#define CL_STATE_CHUNK_BYTES (256u << 10)
/* Messages held for one partition during a handoff, at most, in bytes:
 * past it local senders see CL_EBUSY. */
#define CL_HOLD_BYTES_MAX (8u << 20)
/* Envelopes stashed per link while this node lags the sender's epoch. */
#define CL_STASH_BYTES_MAX (32u << 20)
/* How long a handoff waits for link credit before giving up a round. */
#define CL_SHIP_WAIT_MS 10000u
/* The runtime takes cross-node deliveries past the mailbox bound (the
 * link window bounds them); only running out of memory is retried, for
 * this long, before the message is counted as dropped. */
#define CL_DELIVER_RETRY_MS 100u
/* Partitions shipped per unlocked round of the cluster thread: bounds
 * how long one round keeps the next duties waiting. */
#define CL_SHIP_ROUND_PARTITIONS 64u
/* cl_node_close waits this long (ms) for runtime passivation passes
 * still running (a close before rt_stop). */
#define CL_CLOSE_PASSES_WAIT_MS 30000u
/* A handoff waiting on a word from its other side (the old owner for
 * SETTLED, after shipping or a restart: QUERY; the new owner for the
 * state: RESUME) asks again after this, then after twice as long each
 * time, up to CL_RESUME_RETRY_MAX_MS: on a link the answer is lost only
 * with a crash of either side, and a new life of the peer (or its
 * return from down) makes every handoff ask at once. Asking every
 * second sent one message per waiting partition per second for as long
 * as the other side was slow or down. */
#define CL_RESUME_RETRY_MS 1000u
#define CL_RESUME_RETRY_MAX_MS 16000u
/* The map file is rewritten for handoffs that finished at the old owner
 * at most this often: a stale entry costs only a QUERY after a restart,
 * and 64 partitions settle within a few ms of each other. */
#define CL_RECORDS_SAVE_MS 1000u
/* A leader sends its proposal again to members that have not answered
 * this often (an answer is lost only with a crash of either side). */
#define CL_PROPOSE_RESEND_MS 500u
/* After losing its leader (down, restarted, no voter any more) a voter
 * waits its rank among the live voters (by id) times this before it
 * stands, so that the lowest-id one usually wins alone; an election not
 * won is tried again after CL_ELECTION_RETRY_MS (plus the same wait). */
#define CL_ELECTION_STAGGER_MS 300u
#define CL_ELECTION_RETRY_MS 1000u
/* Operator requests a coordinator queues for its next proposals. */
#define CL_ADMIN_QUEUE_MAX 16u
/* How long an operator action waits (real time) for its map to be
 * committed before it answers "not committed yet". */
#define CL_ADMIN_COMMIT_WAIT_MS 10000u

enum { R_NONE = 0, R_LOCAL = 1, R_REMOTE = 2, R_HOLD = 3, R_DOWN = 4 };
#define ROUTE_WORD(mode, id) ((uint32_t)(mode) << 16 | (uint32_t)(id))
#define ROUTE_MODE(w) ((w) >> 16)
#define ROUTE_ID(w) ((uint16_t)((w)&0xffffu))

enum {
	SYS_PING = 1,
	SYS_ACK = 2,
	SYS_PING_REQ = 3,
	SYS_JOIN = 4,
	SYS_JOIN_ACCEPT = 5,
	SYS_MAP = 6,
	SYS_MAP_PULL = 7,
	SYS_FENCE = 8,
	SYS_STATE = 9,
	SYS_DONE = 10,
	SYS_SETTLED = 11,
	/* new owner -> old owner: ship (again) under this attempt token */
	SYS_RESUME = 12,
	/* restarted old owner -> new owner: where is this handoff? */
	SYS_QUERY = 13,
	/* old owner -> every member: fence me again (the fences of a
	 * handoff that is shipped again, or that outlived a crash) */
	SYS_REFENCE = 14,
	/* the map consensus (consensus.c has their forms) */
	SYS_VOTE_REQ = 15,
	SYS_VOTE = 16,
	SYS_PROPOSE = 17,
	SYS_ACCEPTED = 18,
};

enum { E_NONE = 0, E_PRE = 1, E_VOTE = 2 };

enum { P_NORMAL = 0, P_LEAVING = 1, P_ARRIVING = 2 };
enum {
	/* set up from the map file at a restart: holds, and waits for the
	 * new owner's RESUME (ship again) or SETTLED (it has the state) */
	L_RESTORED = 0,
	L_START = 1,
	L_PASSIVATING = 2,
	L_PASSIVATED = 3,
	L_SHIPPING = 4, /* the cluster thread ships it, unlocked */
	L_SHIPPED = 5,
};

typedef struct hold {
	rt_buffer bytes; /* encoded envelopes, in arrival order */
	uint32_t count;
} hold;

typedef struct part {
	uint8_t mode;
	uint8_t stage;
	bool done;       /* arriving: DONE received from the old owner */
	bool restored;   /* set up from the map file at this start */
	bool ready;      /* arriving: released once the file drops it */
	bool reship;     /* leaving: a RESUME came while shipping */
	bool skip_state; /* leaving: the new owner has the state already */
	bool resume_due; /* arriving: ask for the shipment at this tick */
	uint16_t peer;   /* leaving: new owner; arriving: old owner */
	uint64_t epoch;
	uint64_t fenced; /* arriving: bit i = member i of the map fenced */
	/* The shipment: the new owner asks for it (RESUME) under its own
	 * incarnation and takes STATE and DONE only with that token, so a
	 * shipment cut by a crash of either side never completes a later
	 * one. Leaving: 0 until asked; nothing ships before. */
	uint64_t attempt;
	uint64_t sync_gen; /* arriving: the state sync covering its imports */
	/* when to ask the other side again (QUERY or RESUME), and the wait
	 * after that (resume_round_locked) */
	uint64_t ask_at_ms;
	uint32_t ask_backoff_ms;
	hold *held;
} part;

/* Where a state sync's callback reports; shared with the callbacks so
 * that one arriving after cl_node_close finds it (the last one out frees
 * it). */
typedef struct sync_box {
	_Atomic uint64_t done_gen; /* syncs up to this one are durable */
	_Atomic bool failed;       /* one failed: issue again */
	_Atomic uint32_t refs;     /* the node + each sync in flight */
} sync_box;

typedef struct sync_call {
	sync_box *box;
	uint64_t gen;
} sync_call;

struct cl_node {
	pthread_mutex_t lock;
	pthread_mutex_t hold_lock;
	char listen[CL_ADDRESS_BYTES_MAX];
	char join[CL_ADDRESS_BYTES_MAX];
	char data_dir[1024];
	char control[CL_ADDRESS_BYTES_MAX];
	cl_node_config cfg;
	rt_runtime *rt;
	const cl_transport_ops *tops;
	void *transport;
	cl_deliver_callback deliver;
	void *deliver_arg;

	_Atomic uint16_t self;
	uint64_t incarnation;
	cl_map map;
	_Atomic uint64_t epoch;
	_Atomic uint32_t route[CL_PARTITIONS];
	_Atomic bool lease_held;
	_Atomic bool joined;
	part parts[CL_PARTITIONS];
	_Atomic uint8_t passivated[CL_PARTITIONS]; /* set by the callback */
	/* arriving, DONE in: the old owner's state is here, and what it
	 * forwards is delivered at once (ahead of what is held here) */
	_Atomic uint8_t arrived[CL_PARTITIONS];
	uint32_t pending; /* partitions in handoff here */
	/* handoffs in the map file that finished since it was written */
	bool records_dirty;
	uint64_t records_saved_ms;
	bool releases_due;     /* some arriving partition is ready */
	uint64_t sync_wanted;  /* state syncs asked for */
	uint64_t sync_issued;  /* and handed to the state seam */
	uint64_t sync_seen;    /* sync->done_gen when arrivals last looked */
	sync_box *sync;
	/* a peer restarted or came back from down: every handoff asks its
	 * other side at the next duty, whatever its backoff */
	_Atomic bool asks_due;
	uint64_t refence_due;  /* lowest epoch to ask fences for; 0: none */
	/* runtime passivation passes not yet done (they point at the node) */
	_Atomic uint32_t passes;
	bool lease_pass_due; /* the lease was lost: passivate everything */
	/* the lease was gained (or the state seam set while held): call
	 * state_ops->serving at the end of the tick */
	_Atomic bool serving_due;
	/* test-only (FLOCK_TEST=1): frames to and from these nodes are
	 * dropped, as a network partition would */
	_Atomic uint8_t blocked[CL_NODE_ID_MAX + 1];
	const cl_transport_ops *inner_ops; /* the transport under the shim */
	void *inner;

	/* SWIM has its own lock, so pings are answered and liveness is
	 * tracked while the node lock is held for map files and handoffs
	 * (order: node->lock -> swim_lock -> link->lock). */
	pthread_mutex_t swim_lock;
	cl__swim swim;
	_Atomic bool routes_stale; /* liveness changed: refresh the words */
	/* liveness DOWN per node id, for routing without the SWIM lock */
	_Atomic uint8_t down[CL_NODE_ID_MAX + 1];
	_Atomic uint32_t pending_gossip; /* `pending`, for the gossip */
	cl__link links[CL_NODES_MAX];
	cl__link bootstrap; /* peer 0: the --join address */
	rt_buffer stash[CL_NODES_MAX];
	bool stashing[CL_NODES_MAX];

	uint64_t now_ms;
	_Atomic uint64_t clock_ms; /* node_now_cached */
	uint64_t next_duty_ms;
	uint64_t next_join_ms;
	uint64_t next_repush_ms;
	uint64_t step_epoch;    /* epoch of the step in flight (coordinator) */
	uint32_t step_moves;
	uint32_t step_settled;
	uint32_t moves_pending; /* cached cl_map_target diff */
	uint64_t target_epoch;  /* map epoch coordinate_locked last placed */
	/* what routes_refresh_locked last derived the words from */
	bool routes_valid;
	uint64_t routes_epoch;
	uint32_t routes_count;
	uint16_t routes_ids[CL_NODES_MAX];
	uint32_t routes_words[CL_NODES_MAX];
	_Atomic uint64_t messages_in;
	_Atomic uint64_t messages_dropped;

	/* The map consensus (see "Epochs are committed" above). */
	uint64_t term;        /* saved */
	uint16_t voted_for;   /* saved: whom this node voted for in term */
	cl_map *entry;        /* saved when entry_valid: the last map
			       * accepted above map.epoch, of entry_term */
	bool entry_valid;
	uint64_t entry_term;
	_Atomic uint16_t leader; /* the leader of term as known; 0: none */
	bool leading;         /* this node leads term */
	bool ready;           /* leading, and a proposal of term committed */
	bool proposing;       /* the proposal (entry, else map) in flight */
	uint64_t proposal_epoch;
	uint16_t acks[CL_NODES_MAX];
	uint32_t acks_count;
	uint64_t propose_resend_ms;
	uint8_t electing;     /* E_NONE, E_PRE or E_VOTE */
	uint64_t election_term; /* the term asked for */
	uint16_t votes[CL_NODES_MAX];
	uint32_t votes_count;
	uint64_t leader_lost_ms; /* when the leader was found lost; 0: known */
	uint64_t election_at_ms; /* the next time this node stands */
	/* operator requests waiting for a proposal (coordinator) */
	cl__control_request admin_queue[CL_ADMIN_QUEUE_MAX];
	uint64_t admin_queue_seq[CL_ADMIN_QUEUE_MAX];
	uint32_t admin_count;
	uint64_t admin_seq;       /* requests queued, total */
	uint64_t admin_proposed;  /* the request the proposal carries; 0 */
	uint64_t admin_done;      /* requests finished up to this one */
	int admin_results[CL_ADMIN_QUEUE_MAX]; /* by seq % max */

	pthread_t thread;
	_Atomic bool stopping;
	bool thread_started;
	cl__control_server *control_server;
};

/* ---- small helpers ----------------------------------------------------- */

static void
node_log(cl_node *n, rt_log_level level, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void
node_log(cl_node *n, rt_log_level level, const char *format, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, format);
	vsnprintf(line, sizeof line, format, ap);
	va_end(ap);
	rt_log(n->rt, level, "cluster", "%s node=%u", line,
		(unsigned)atomic_load(&n->self));
}

static uint64_t
node_now(cl_node *n)
{
	return n->cfg.manual_tick ? n->now_ms : cl__monotonic_ms();
}

/* The clock as of the last tick (at most CL_TICK_MS old): the send path
 * reads it per message, where a clock read would cost more than the
 * rest of the routing. */
static uint64_t
node_now_cached(cl_node *n)
{
	return n->cfg.manual_tick ? n->now_ms
				  : atomic_load_explicit(&n->clock_ms,
					    memory_order_relaxed);
}

static cl__link *
link_for(cl_node *n, uint16_t id)
{
	if (id == 0)
		return NULL;
	for (uint32_t i = 0; i < CL_NODES_MAX; i++)
		if (atomic_load(&n->links[i].peer) == id)
			return &n->links[i];
	return NULL;
}

static int
link_slot(cl_node *n, uint16_t id)
{
	for (uint32_t i = 0; i < CL_NODES_MAX; i++)
		if (atomic_load(&n->links[i].peer) == id)
			return (int)i;
	return -1;
}

static uint8_t
liveness_of(cl_node *n, uint16_t id)
{
	pthread_mutex_lock(&n->swim_lock);
	cl__swim_member *m = cl__swim_find(&n->swim, id);
	uint8_t liveness = m == NULL ? CL_LIVE_ALIVE : m->liveness;
	pthread_mutex_unlock(&n->swim_lock);
	return liveness;
}

/* The coordinator as this node knows it: the leader of its term (0:
 * none known yet). */
static uint16_t
coordinator_locked(cl_node *n)
{
	return n->leading ? atomic_load(&n->self) : atomic_load(&n->leader);
}

/* Encodes a system message body; payload points into *scratch. */
static void
system_envelope(cl_envelope *e, uint32_t type, uint64_t epoch,
	const rt_buffer *body)
{
	memset(e, 0, sizeof *e);
	e->epoch = epoch;
	e->type = type;
	e->flags = CL_ENVELOPE_F_SYSTEM;
	e->payload = body->bytes;
	e->size = (uint32_t)body->length;
}

/* Sends a system message reliably to peer (link queue). */
static int
send_system(cl_node *n, uint16_t peer, uint32_t type, uint64_t epoch,
	const rt_buffer *body)
{
	cl__link *l = link_for(n, peer);
	if (l == NULL)
		return CL_EUNAVAILABLE;
	cl_envelope e;
	system_envelope(&e, type, epoch, body);
	pthread_mutex_lock(&l->lock);
	int rc = cl__link_enqueue_locked(l, &e, true, node_now(n));
	pthread_mutex_unlock(&l->lock);
	return rc;
}

/* A system message whose body is msgpack nil (an empty body would not
 * decode, and the receiver would drop it). */
static void
send_nil_locked(cl_node *n, uint16_t peer, uint32_t type, uint64_t epoch)
{
	static const unsigned char nil = 0xc0;
	rt_buffer body = {.bytes = (unsigned char *)&nil, .length = 1};
	send_system(n, peer, type, epoch, &body);
}

/* ---- route table ------------------------------------------------------- */

static uint32_t
word_for_owner(cl_node *n, uint16_t owner)
{
	if (owner == 0)
		return ROUTE_WORD(R_NONE, 0);
	if (owner == atomic_load(&n->self))
		return ROUTE_WORD(R_LOCAL, owner);
	if (liveness_of(n, owner) == CL_LIVE_DOWN)
		return ROUTE_WORD(R_DOWN, owner);
	return ROUTE_WORD(R_REMOTE, owner);
}

/* Re-derives the words of partitions not in a handoff. A member's word
 * is worked out once, not once per partition, and nothing is rewritten
 * when neither the map nor any member's word changed: SWIM flips members
 * between alive and suspect many times a second under a jittery network
 * (a suspect member keeps its word), and 8,192 stores each time were
 * most of the simulator's time. Words of partitions that leave a handoff
 * are set by the handoff itself, from the same word_for_owner. */
static void
routes_refresh_locked(cl_node *n)
{
	uint32_t words[CL_NODES_MAX];
	uint16_t ids[CL_NODES_MAX];
	uint32_t count = n->map.nodes_count;
	for (uint32_t i = 0; i < count; i++) {
		ids[i] = n->map.nodes[i].id;
		words[i] = word_for_owner(n, ids[i]);
	}
	if (n->routes_valid && n->routes_epoch == n->map.epoch &&
		n->routes_count == count &&
		memcmp(n->routes_ids, ids, count * sizeof *ids) == 0 &&
		memcmp(n->routes_words, words, count * sizeof *words) == 0)
		return;
	n->routes_valid = true;
	n->routes_epoch = n->map.epoch;
	n->routes_count = count;
	memcpy(n->routes_ids, ids, count * sizeof *ids);
	memcpy(n->routes_words, words, count * sizeof *words);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		if (n->parts[p].mode != P_NORMAL)
			continue;
		uint16_t owner = n->map.owner[p];
		uint32_t word = ROUTE_WORD(R_NONE, 0);
		for (uint32_t i = 0; owner != 0 && i < count; i++)
			if (n->map.nodes[i].id == owner)
				word = words[i];
		atomic_store(&n->route[p], word);
	}
}

static void
hold_begin_locked(cl_node *n, uint32_t p)
{
	pthread_mutex_lock(&n->hold_lock);
	if (n->parts[p].held == NULL) {
		n->parts[p].held = calloc(1, sizeof(hold));
		CL_ASSERT(n->parts[p].held != NULL);
	}
	atomic_store(&n->route[p], ROUTE_WORD(R_HOLD, n->parts[p].peer));
	pthread_mutex_unlock(&n->hold_lock);
}

static int
hold_append_locked(hold *h, const cl_envelope *e, bool bounded)
{
	if (bounded && h->bytes.length + e->size > CL_HOLD_BYTES_MAX)
		return CL_EBUSY;
	int rc = cl_envelope_encode(e, &h->bytes);
	if (rc == 0)
		h->count++;
	return rc;
}

/* ---- delivery ---------------------------------------------------------- */

static bool
is_ask(const cl_envelope *e)
{
	return e->correlation != 0 &&
	       (e->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT)) == 0;
}

static int route_envelope(cl_node *n, const cl_envelope *e, uint16_t via,
	bool local_origin);

/* Hands e to the runtime (or the test's callback). */
static void
deliver_local(cl_node *n, const cl_envelope *e)
{
	atomic_fetch_add(&n->messages_in, 1);
	if (n->rt == NULL) {
		if (n->deliver != NULL)
			n->deliver(n->deliver_arg, e);
		return;
	}
	uint64_t deadline = cl__monotonic_ms() + CL_DELIVER_RETRY_MS;
	for (;;) {
		rt_message *m = rt_message_alloc(n->rt, e->type, e->size);
		if (m != NULL) {
			m->from = e->from;
			m->to = e->to;
			m->correlation = e->correlation;
			m->flags = e->flags & (RT_MESSAGE_F_REPLY |
						      RT_MESSAGE_F_TIMEOUT);
			if (e->size > 0)
				memcpy(m->payload, e->payload, e->size);
			/* past the mailbox bound: only a full inbox or a gone
			 * receiver refuses, and those are final */
			int rc = rt_deliver_local(n->rt, m);
			if (rc != RT_ENOMEM)
				return;
		}
		if (cl__monotonic_ms() >= deadline)
			break;
		cl__sleep_ms(1);
	}
	atomic_fetch_add(&n->messages_dropped, 1);
}

/* A message that cannot reach its owner: an ask gets an undeliverable
 * reply (so the asker fails fast); anything else is counted. */
static void
undeliverable(cl_node *n, const cl_envelope *e, int code)
{
	if (!is_ask(e)) {
		atomic_fetch_add(&n->messages_dropped, 1);
		return;
	}
	int32_t rt_code = cl_to_rt_error(code);
	cl_envelope r = {0};
	r.epoch = atomic_load(&n->epoch);
	r.from = e->to;
	r.to = e->from;
	r.correlation = e->correlation;
	r.type = RT_TYPE_UNDELIVERABLE;
	r.flags = RT_MESSAGE_F_REPLY;
	r.payload = (const unsigned char *)&rt_code;
	r.size = sizeof rt_code;
	if (route_envelope(n, &r, 0, false) == RT_ROUTE_LOCAL)
		deliver_local(n, &r);
}

/* ---- routing ----------------------------------------------------------- */

static int
send_remote(cl_node *n, uint16_t owner, const cl_envelope *e, uint32_t p,
	uint32_t word, bool local_origin)
{
	cl__link *l = link_for(n, owner);
	if (l == NULL)
		return CL_EUNAVAILABLE;
	pthread_mutex_lock(&l->lock);
	if (p != UINT32_MAX && atomic_load(&n->route[p]) != word) {
		pthread_mutex_unlock(&l->lock);
		return CL_EINVAL; /* the word changed: route again */
	}
	cl_envelope f = *e;
	f.epoch = atomic_load(&n->epoch);
	if (!local_origin)
		f.flags |= CL_ENVELOPE_F_FORWARDED;
	/* Forwarded messages and replies may use the system slack past the
	 * window: refusing a reply would leave its asker to time out, with
	 * no sender left that could try again. */
	bool slack = !local_origin || (e->flags & RT_MESSAGE_F_REPLY) != 0;
	int rc = cl__link_enqueue_locked(l, &f, slack, node_now_cached(n));
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static int
hold_or_retry(cl_node *n, const cl_envelope *e, uint32_t p, uint32_t word,
	bool local_origin)
{
	pthread_mutex_lock(&n->hold_lock);
	hold *h = n->parts[p].held;
	if (atomic_load(&n->route[p]) != word || h == NULL) {
		pthread_mutex_unlock(&n->hold_lock);
		return CL_EINVAL;
	}
	int rc = hold_append_locked(h, e, local_origin);
	pthread_mutex_unlock(&n->hold_lock);
	return rc;
}

/*
 * The one routing function. Returns RT_ROUTE_LOCAL (deliver here),
 * RT_ROUTE_TAKEN (forwarded or held), or a negative CL_E code. via is
 * the node whose link it came on (0: sent on this node).
 */
static int
route_envelope(cl_node *n, const cl_envelope *e, uint16_t via,
	bool local_origin)
{
	uint16_t self = atomic_load(&n->self);
	if (e->to.kind == RT_KIND_INBOX) {
		uint16_t owner = cl_inbox_node(e->to.id);
		if (owner == 0 || owner == self)
			return RT_ROUTE_LOCAL;
		if (atomic_load_explicit(&n->down[owner], memory_order_relaxed))
			return CL_EUNAVAILABLE;
		int rc = send_remote(n, owner, e, UINT32_MAX, 0, local_origin);
		return rc == 0 ? RT_ROUTE_TAKEN : rc;
	}
	uint32_t p = cl_partition_of(e->to.id);
	for (int attempt = 0; attempt < 1000; attempt++) {
		uint32_t word = atomic_load(&n->route[p]);
		int rc;
		switch (ROUTE_MODE(word)) {
		case R_LOCAL:
			if (!atomic_load(&n->lease_held))
				return CL_EUNAVAILABLE;
			return RT_ROUTE_LOCAL;
		case R_REMOTE:
			/* a partition leaving here keeps the word its handoff
			 * set (routes_refresh_locked skips it): its new owner
			 * may be down */
			if (atomic_load_explicit(&n->down[ROUTE_ID(word)],
				    memory_order_relaxed))
				return CL_EUNAVAILABLE;
			rc = send_remote(n, ROUTE_ID(word), e, p, word,
				local_origin);
			break;
		case R_HOLD:
			/* arriving: the old owner's traffic is in order */
			if (via != 0 && via == ROUTE_ID(word) &&
				n->parts[p].mode == P_ARRIVING &&
				n->parts[p].done)
				return RT_ROUTE_LOCAL;
			/* The other side of the handoff is down: nothing
			 * moves until it is back or removed, so new messages
			 * fail fast rather than wait in the hold (an arrival
			 * whose state is in needs only fences and a sync) */
			if (atomic_load_explicit(&n->down[ROUTE_ID(word)],
				    memory_order_relaxed) &&
				atomic_load(&n->arrived[p]) == 0)
				return CL_EUNAVAILABLE;
			rc = hold_or_retry(n, e, p, word, local_origin);
			break;
		case R_DOWN:
		default:
			return CL_EUNAVAILABLE;
		}
		if (rc != CL_EINVAL)
			return rc == 0 ? RT_ROUTE_TAKEN : rc;
	}
	return CL_EBUSY;
}

int
cl_node_send(cl_node *node, const cl_envelope *e)
{
	CL_ASSERT(node != NULL);
	CL_ASSERT(e != NULL);
	int rc = route_envelope(node, e, 0, true);
	if (rc == RT_ROUTE_LOCAL) {
		deliver_local(node, e);
		return CL_OK;
	}
	return rc == RT_ROUTE_TAKEN ? CL_OK : rc;
}

void
cl_node_set_deliver(cl_node *node, cl_deliver_callback cb, void *arg)
{
	CL_ASSERT(node != NULL);
	node->deliver = cb;
	node->deliver_arg = arg;
}

/* ---- SWIM glue --------------------------------------------------------- */

/* The *_swim functions below run with swim_lock held. */
static void
refresh_self_locked(cl_node *n)
{
	cl__swim_member *me = cl__swim_find(&n->swim, atomic_load(&n->self));
	if (me != NULL) {
		rt_stats st = {0};
		if (n->rt != NULL)
			rt_get_stats(n->rt, &st);
		me->actors_active = st.actors_active;
		me->messages_in = atomic_load(&n->messages_in);
		me->epoch = atomic_load(&n->epoch);
		me->pending = atomic_load(&n->pending_gossip);
	}
}

static void
pack_updates(cl_node *n, cl__packer *p)
{
	refresh_self_locked(n);
	cl__swim_update u[CL_NODES_MAX];
	uint32_t count = cl__swim_updates(&n->swim, u, CL_NODES_MAX);
	msgpack_pack_array(&p->pk, count);
	for (uint32_t i = 0; i < count; i++) {
		msgpack_pack_array(&p->pk, 7);
		msgpack_pack_uint16(&p->pk, u[i].id);
		msgpack_pack_uint8(&p->pk, u[i].liveness);
		msgpack_pack_uint64(&p->pk, u[i].incarnation);
		msgpack_pack_uint64(&p->pk, u[i].actors_active);
		msgpack_pack_uint64(&p->pk, u[i].messages_in);
		msgpack_pack_uint64(&p->pk, u[i].epoch);
		msgpack_pack_uint32(&p->pk, u[i].pending);
	}
}

static void swim_apply_locked(cl_node *n, const cl__swim_actions *a);

static void
merge_updates_locked(cl_node *n, uint16_t from, const msgpack_object *o)
{
	const msgpack_object *items;
	uint32_t count;
	if (cl__obj_array(o, 0, &items, &count) != 0)
		return;
	cl__swim_actions out = {0};
	for (uint32_t i = 0; i < count && i < CL_NODES_MAX; i++) {
		const msgpack_object *f;
		uint32_t k;
		uint32_t id, liveness;
		cl__swim_update u = {0};
		if (cl__obj_array(&items[i], 7, &f, &k) != 0 ||
			cl__obj_u32(&f[0], &id) != 0 ||
			cl__obj_u32(&f[1], &liveness) != 0 ||
			cl__obj_u64(&f[2], &u.incarnation) != 0 ||
			cl__obj_u64(&f[3], &u.actors_active) != 0 ||
			cl__obj_u64(&f[4], &u.messages_in) != 0 ||
			cl__obj_u64(&f[5], &u.epoch) != 0 ||
			cl__obj_u32(&f[6], &u.pending) != 0 ||
			id > CL_NODE_ID_MAX || liveness > CL_LIVE_DOWN)
			return;
		u.id = (uint16_t)id;
		u.liveness = (uint8_t)liveness;
		cl__swim_merge(&n->swim, from, &u, node_now(n), &out);
	}
	swim_apply_locked(n, &out);
}

static void
swim_send_locked(cl_node *n, const cl__swim_action *a)
{
	rt_buffer body = {0};
	cl__packer p;
	cl__packer_init(&p, &body);
	uint32_t type;
	if (a->kind == CL__SWIM_PING) {
		type = SYS_PING;
		msgpack_pack_array(&p.pk, 3);
		msgpack_pack_uint16(&p.pk, a->origin);
		msgpack_pack_uint64(&p.pk, a->sequence);
	} else if (a->kind == CL__SWIM_ACK) {
		type = SYS_ACK;
		msgpack_pack_array(&p.pk, 4);
		msgpack_pack_uint16(&p.pk, a->target);
		msgpack_pack_uint16(&p.pk, a->origin);
		msgpack_pack_uint64(&p.pk, a->sequence);
	} else {
		type = SYS_PING_REQ;
		msgpack_pack_array(&p.pk, 3);
		msgpack_pack_uint16(&p.pk, a->target);
		msgpack_pack_uint64(&p.pk, a->sequence);
	}
	pack_updates(n, &p);
	cl__link *l = link_for(n, a->to);
	if (p.status == 0 && l != NULL) {
		cl_envelope e;
		system_envelope(&e, type, 0, &body);
		pthread_mutex_lock(&l->lock);
		cl__link_send_now_locked(l, &e);
		pthread_mutex_unlock(&l->lock);
	}
	rt_buffer_free(&body);
}

static void
swim_apply_locked(cl_node *n, const cl__swim_actions *a)
{
	bool changed = false;
	for (uint32_t i = 0; i < a->count; i++) {
		const cl__swim_action *x = &a->items[i];
		if (x->kind == CL__SWIM_CHANGED) {
			changed = true;
			cl__swim_member *m = cl__swim_find(&n->swim, x->target);
			bool down = m != NULL && m->liveness == CL_LIVE_DOWN;
			if (!down && atomic_exchange(&n->down[x->target], 0))
				atomic_store(&n->asks_due, true); /* it is back */
			atomic_store(&n->down[x->target], down);
			node_log(n, RT_LOG_INFO, "member %u is %s", x->target,
				m == NULL ? "?" :
				m->liveness == CL_LIVE_ALIVE ? "alive" :
				m->liveness == CL_LIVE_SUSPECT ? "suspect" :
								 "down");
			continue;
		}
		swim_send_locked(n, x);
	}
	if (changed) /* the words are the node lock's: its next tick */
		atomic_store(&n->routes_stale, true);
}

static void
on_swim_locked(cl_node *n, uint16_t from, const cl_envelope *e,
	const msgpack_object *f, uint32_t count)
{
	cl__swim_actions out = {0};
	uint32_t a, b;
	uint64_t seq;
	uint64_t now = node_now(n);
	if (e->type == SYS_PING && count >= 3 && cl__obj_u32(&f[0], &a) == 0 &&
		cl__obj_u64(&f[1], &seq) == 0) {
		merge_updates_locked(n, from, &f[2]);
		cl__swim_on_ping(&n->swim, from, (uint16_t)a, seq, now, &out);
	} else if (e->type == SYS_ACK && count >= 4 &&
		   cl__obj_u32(&f[0], &a) == 0 &&
		   cl__obj_u32(&f[1], &b) == 0 &&
		   cl__obj_u64(&f[2], &seq) == 0) {
		merge_updates_locked(n, from, &f[3]);
		cl__swim_on_ack(&n->swim, from, (uint16_t)a, (uint16_t)b, seq,
			now, &out);
	} else if (e->type == SYS_PING_REQ && count >= 3 &&
		   cl__obj_u32(&f[0], &a) == 0 &&
		   cl__obj_u64(&f[1], &seq) == 0) {
		merge_updates_locked(n, from, &f[2]);
		cl__swim_on_ping_req(&n->swim, from, (uint16_t)a, seq, now,
			&out);
	}
	swim_apply_locked(n, &out);
}

/* ---- adopting a map ---------------------------------------------------- */

static void replay_stashes_locked(cl_node *n);
static void admin_apply_locked(cl_node *n);
static void try_release_locked(cl_node *n, uint32_t p);
static void send_resume_locked(cl_node *n, uint32_t p);

/* Points links at the map's members; links of removed members die. */
static void
links_sync_locked(cl_node *n)
{
	uint16_t self = atomic_load(&n->self);
	uint64_t now = node_now(n);
	for (uint32_t i = 0; i < CL_NODES_MAX; i++) {
		cl__link *l = &n->links[i];
		uint16_t peer = atomic_load(&l->peer);
		if (peer != 0 && cl_map_find(&n->map, peer) == NULL) {
			pthread_mutex_lock(&l->lock);
			l->dead = true;
			atomic_store(&l->peer, 0);
			l->address[0] = '\0';
			pthread_mutex_unlock(&l->lock);
			n->tops->peer_drop(n->transport, peer);
		}
	}
	for (uint32_t k = 0; k < n->map.nodes_count; k++) {
		const cl_map_node *m = &n->map.nodes[k];
		if (m->id == self)
			continue;
		int s = link_slot(n, m->id);
		if (s < 0)
			s = link_slot(n, 0);
		CL_ASSERT(s >= 0);
		cl__link *l = &n->links[s];
		pthread_mutex_lock(&l->lock);
		l->self = self;
		cl__link_bind_locked(l, m->id, m->address, now);
		pthread_mutex_unlock(&l->lock);
	}
	uint16_t ids[CL_NODES_MAX];
	for (uint32_t k = 0; k < n->map.nodes_count; k++)
		ids[k] = n->map.nodes[k].id;
	pthread_mutex_lock(&n->swim_lock);
	cl__swim_set_members(&n->swim, ids, n->map.nodes_count, now);
	for (uint32_t k = 0; k < n->map.nodes_count; k++) {
		cl__swim_member *m = cl__swim_find(&n->swim, ids[k]);
		atomic_store(&n->down[ids[k]],
			m != NULL && m->liveness == CL_LIVE_DOWN);
	}
	pthread_mutex_unlock(&n->swim_lock);
}

/* The epoch a handoff of p under map is named by, on both sides: when
 * p's owner became map's (a node that skipped maps adopts a later one). */
static uint64_t
handoff_epoch(const cl_map *map, uint32_t p)
{
	return map->moved_at[p] != 0 ? map->moved_at[p] : map->epoch;
}

/* What adopting map, whose owner of p goes from `from` to `to`, starts
 * here: P_LEAVING or P_ARRIVING (*peer: the other side), or P_NORMAL. */
static uint8_t
transition_of(cl_node *n, const cl_map *map, uint32_t p, uint16_t from,
	uint16_t to, uint16_t *peer)
{
	uint16_t self = atomic_load(&n->self);
	CL_ASSERT(from != to);
	if (n->parts[p].mode != P_NORMAL)
		return P_NORMAL; /* a transition already runs; it finishes first */
	if (from == self && to != 0) {
		*peer = to;
		return P_LEAVING;
	}
	if (to == self && from != 0 && cl_map_find(map, from) != NULL) {
		*peer = from;
		return P_ARRIVING;
	}
	return P_NORMAL;
}

/* The handoffs in flight once map is adopted (old: the map before it,
 * or NULL when nothing changes owner): those running, less the ready
 * arrivals (writing the file without them is what lets them go), and
 * those the change starts. out has room for CL_PARTITIONS. */
static uint32_t
records_collect_locked(cl_node *n, const cl_map *old, const cl_map *map,
	cl__handoff_record *out)
{
	uint32_t count = 0;
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		const part *x = &n->parts[p];
		uint16_t peer = 0;
		uint8_t mode = x->mode;
		uint64_t epoch = x->epoch;
		if (mode == P_ARRIVING && x->ready)
			continue;
		if (mode != P_NORMAL) {
			peer = x->peer;
		} else if (old != NULL && old->owner[p] != map->owner[p]) {
			mode = transition_of(n, map, p, old->owner[p],
				map->owner[p], &peer);
			epoch = handoff_epoch(map, p);
		}
		if (mode == P_NORMAL)
			continue;
		out[count++] = (cl__handoff_record){p, mode, peer, epoch};
	}
	return count;
}

/* Persists map with the handoffs in flight (see records_collect_locked). */
static int
map_save_locked(cl_node *n, const cl_map *old, const cl_map *map)
{
	cl__handoff_record *records = malloc(CL_PARTITIONS * sizeof *records);
	if (records == NULL)
		return CL_ENOMEM;
	uint32_t count = records_collect_locked(n, old, map, records);
	/* the entry goes with it while it is above the map saved */
	cl__vote_state vote = {.term = n->term, .voted_for = n->voted_for,
		.has_entry = n->entry_valid && n->entry->epoch > map->epoch,
		.entry_term = n->entry_term, .entry = n->entry};
	int rc = cl__map_file_save_vote(n->data_dir, atomic_load(&n->self),
		map, records, count, &vote);
	free(records);
	if (rc == 0) {
		n->records_dirty = false;
		n->records_saved_ms = node_now(n);
	}
	return rc;
}

/* The next ask of x's handoff: after delay_ms, then backing off. */
static void
ask_later_locked(cl_node *n, part *x, uint64_t delay_ms)
{
	x->ask_at_ms = node_now(n) + delay_ms;
	x->ask_backoff_ms = CL_RESUME_RETRY_MS;
}

static void
begin_transition_locked(cl_node *n, uint32_t p, uint16_t from, uint16_t to)
{
	part *x = &n->parts[p];
	uint16_t peer = 0;
	uint8_t mode = transition_of(n, &n->map, p, from, to, &peer);
	if (mode == P_NORMAL)
		return;
	x->restored = false;
	x->ready = false;
	x->reship = false;
	x->skip_state = false;
	x->attempt = 0;
	x->sync_gen = 0;
	if (mode == P_LEAVING) {
		x->mode = P_LEAVING;
		x->stage = L_START;
		x->peer = peer;
		x->epoch = handoff_epoch(&n->map, p);
		n->pending++;
		atomic_store(&n->pending_gossip, n->pending);
		hold_begin_locked(n, p);
	} else {
		x->mode = P_ARRIVING;
		x->done = false;
		x->fenced = 0;
		x->peer = peer;
		x->epoch = handoff_epoch(&n->map, p);
		x->attempt = n->incarnation;
		x->resume_due = true;
		ask_later_locked(n, x, CL_RESUME_RETRY_MS);
		n->pending++;
		atomic_store(&n->pending_gossip, n->pending);
		hold_begin_locked(n, p);
	}
}

static void
send_fences_locked(cl_node *n, const cl_map *old)
{
	uint16_t self = atomic_load(&n->self);
	bool sent[CL_NODES_MAX] = {false};
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		uint16_t from = old->owner[p];
		if (from == n->map.owner[p] || from == 0 || from == self)
			continue;
		int i = cl__map_index(&n->map, from);
		if (i < 0 || sent[i])
			continue;
		sent[i] = true;
		rt_buffer body = {0};
		cl__packer pk;
		cl__packer_init(&pk, &body);
		msgpack_pack_uint16(&pk.pk, self);
		send_system(n, from, SYS_FENCE, n->map.epoch, &body);
		rt_buffer_free(&body);
	}
}

/* FENCE(this node's epoch) to every other member: after a restart (the
 * fences this node sent when it adopted its epoch may have died with
 * it), and to answer a REFENCE (to that member only: to != 0). */
static void
send_fences_to_all_locked(cl_node *n, uint16_t to)
{
	uint16_t self = atomic_load(&n->self);
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_uint16(&pk.pk, self);
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		uint16_t id = n->map.nodes[i].id;
		if (id != self && (to == 0 || id == to))
			send_system(n, id, SYS_FENCE, n->map.epoch, &body);
	}
	rt_buffer_free(&body);
}

/* Persists and adopts map; starts the handoffs it implies. */
static int
adopt_map_locked(cl_node *n, const cl_map *map)
{
	if (map->epoch <= n->map.epoch && atomic_load(&n->joined))
		return CL_OK;
	int rc = map_save_locked(n, &n->map, map);
	if (rc != 0) {
		node_log(n, RT_LOG_ERROR, "cannot persist map epoch=%" PRIu64
			": %s", map->epoch, cl_strerror(rc));
		return rc;
	}
	cl_map *old = malloc(sizeof *old);
	CL_ASSERT(old != NULL);
	*old = n->map;
	n->map = *map;
	atomic_store(&n->epoch, map->epoch);
	/* the entry was saved only while above the map (map_save_locked) */
	if (n->entry_valid && n->entry->epoch <= n->map.epoch)
		n->entry_valid = false;
	links_sync_locked(n);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (old->owner[p] != map->owner[p])
			begin_transition_locked(n, p, old->owner[p],
				map->owner[p]);
	routes_refresh_locked(n);
	/* words are stored: fences now follow everything sent on old ones */
	send_fences_locked(n, old);
	free(old);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		part *x = &n->parts[p];
		if (x->mode == P_ARRIVING && x->resume_due) {
			x->resume_due = false;
			send_resume_locked(n, p);
		}
		if (x->mode == P_ARRIVING)
			try_release_locked(n, p);
	}
	replay_stashes_locked(n);
	node_log(n, RT_LOG_INFO, "adopted map epoch=%" PRIu64 " pending=%u",
		map->epoch, n->pending);
	return CL_OK;
}

/* ---- the map consensus ------------------------------------------------- */

/* Writes the map file as it stands (the consensus state changed). */
static int
persist_locked(cl_node *n)
{
	int rc = map_save_locked(n, NULL, &n->map);
	if (rc != 0)
		node_log(n, RT_LOG_ERROR, "cannot persist the term and the map "
			"accepted: %s", cl_strerror(rc));
	return rc;
}

/* The last map this node holds: its entry, else its committed map. */
static const cl_map *
last_map_locked(cl_node *n)
{
	return n->entry_valid ? n->entry : &n->map;
}

static bool
ids_has(const uint16_t *ids, uint32_t count, uint16_t id)
{
	for (uint32_t i = 0; i < count; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static void
ids_add(uint16_t *ids, uint32_t *count, uint16_t id)
{
	if (!ids_has(ids, *count, id) && *count < CL_NODES_MAX)
		ids[(*count)++] = id;
}

/* Sends body to the members of the committed map and of also (NULL or
 * a map above it), self and the ids in skip excepted. */
static void
send_members_locked(cl_node *n, const cl_map *also, uint32_t type,
	const rt_buffer *body, const uint16_t *skip, uint32_t skip_count)
{
	uint16_t self = atomic_load(&n->self);
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		uint16_t id = n->map.nodes[i].id;
		if (id != self && !ids_has(skip, skip_count, id))
			send_system(n, id, type, 0, body);
	}
	for (uint32_t i = 0; also != NULL && i < also->nodes_count; i++) {
		uint16_t id = also->nodes[i].id;
		if (id != self && !ids_has(skip, skip_count, id) &&
			cl_map_find(&n->map, id) == NULL)
			send_system(n, id, type, 0, body);
	}
}

/* Operator requests queued or in flight end without a commit here (this
 * node leads no more; the one in flight may still be committed by the
 * next leader). */
static void
admin_drop_locked(cl_node *n)
{
	for (uint64_t q = n->admin_done + 1; q <= n->admin_seq; q++)
		n->admin_results[q % CL_ADMIN_QUEUE_MAX] = CL_ENOTLEADER;
	n->admin_done = n->admin_seq;
	n->admin_count = 0;
	n->admin_proposed = 0;
}

/* Follows term (when later than this node's: no vote in it yet) and
 * leader (0: none known); leads and stands for nothing. The caller
 * persists. */
static void
term_follow_locked(cl_node *n, uint64_t term, uint16_t leader)
{
	if (term > n->term) {
		n->term = term;
		n->voted_for = 0;
	}
	if (n->leading) {
		node_log(n, RT_LOG_INFO, "leads no more (term %" PRIu64 ")",
			n->term);
		admin_drop_locked(n);
	}
	n->leading = false;
	n->ready = false;
	n->proposing = false;
	n->electing = E_NONE;
	atomic_store(&n->leader, leader);
	n->leader_lost_ms = 0;
}

/* JOIN_ACCEPT to a member the committed map has: its id and the map,
 * unsequenced (the joiner has no link to us until it has the map). */
static void
send_join_accept_locked(cl_node *n, uint16_t id)
{
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_array(&pk.pk, 2);
	msgpack_pack_uint16(&pk.pk, id);
	cl__map_pack(&pk, &n->map);
	cl__link *l = link_for(n, id);
	if (l != NULL && pk.status == 0) {
		cl_envelope a;
		system_envelope(&a, SYS_JOIN_ACCEPT, 0, &body);
		pthread_mutex_lock(&l->lock);
		cl__link_send_now_locked(l, &a);
		pthread_mutex_unlock(&l->lock);
	}
	rt_buffer_free(&body);
}

/* PROPOSE(term, the map in flight) to the members (all: every one; else
 * those that have not accepted it). */
static void
propose_send_locked(cl_node *n, bool all)
{
	const cl_map *m = last_map_locked(n);
	rt_buffer body = {0};
	if (cl__propose_encode(n->term, m, &body) == 0)
		send_members_locked(n, n->entry_valid ? n->entry : NULL,
			SYS_PROPOSE, &body, all ? NULL : n->acks,
			all ? 0 : n->acks_count);
	rt_buffer_free(&body);
	n->propose_resend_ms = node_now(n) + CL_PROPOSE_RESEND_MS;
}

/* The proposal in flight is committed once a majority of the committed
 * map's voters and of the proposed map's voters accepted it: the leader
 * adopts it and pushes it to every member. */
static void
proposal_check_locked(cl_node *n)
{
	if (!n->proposing)
		return;
	const cl_map *next = n->entry_valid ? n->entry : NULL;
	if (!cl__map_majority(&n->map, n->acks, n->acks_count) ||
		(next != NULL &&
			!cl__map_majority(next, n->acks, n->acks_count)))
		return;
	n->proposing = false;
	if (next != NULL) {
		cl_map *maps = malloc(2 * sizeof *maps);
		CL_ASSERT(maps != NULL);
		cl_map *committed = maps;
		cl_map *old = maps + 1;
		*committed = *next;
		*old = n->map;
		int rc = adopt_map_locked(n, committed);
		if (rc != 0) {
			n->proposing = true; /* committed: adopted at the next duty */
			free(maps);
			return;
		}
		rt_buffer body = {0};
		if (cl_map_encode(&n->map, &body) == 0)
			send_members_locked(n, NULL, SYS_MAP, &body, NULL, 0);
		rt_buffer_free(&body);
		/* a joiner learns here that it is a member */
		for (uint32_t i = 0; i < n->map.nodes_count; i++)
			if (cl_map_find(old, n->map.nodes[i].id) == NULL)
				send_join_accept_locked(n, n->map.nodes[i].id);
		free(maps);
		n->moves_pending = UINT32_MAX; /* recomputed at the next duty */
	}
	if (!n->leading)
		return; /* deposed while the map was adopted */
	n->ready = true;
	if (n->admin_proposed != 0) {
		n->admin_results[n->admin_proposed % CL_ADMIN_QUEUE_MAX] = CL_OK;
		if (n->admin_done < n->admin_proposed)
			n->admin_done = n->admin_proposed;
		n->admin_proposed = 0;
	}
	n->next_duty_ms = 0; /* the next change may go at once */
}

/* Proposes map under this node's term: a map at the epoch after the
 * committed one, or (a new leader with no entry) the committed map
 * itself again. Saved here first, as each member saves it before it
 * accepts it. */
static int
propose_map_locked(cl_node *n, const cl_map *map)
{
	CL_ASSERT(n->leading && !n->proposing);
	CL_ASSERT(map->epoch >= n->map.epoch);
	bool was_valid = n->entry_valid;
	uint64_t was_term = n->entry_term;
	cl_map *was = NULL;
	if (map->epoch > n->map.epoch) {
		if (map != n->entry) {
			if (n->entry_valid) {
				was = malloc(sizeof *was);
				CL_ASSERT(was != NULL);
				*was = *n->entry;
			}
			*n->entry = *map;
		}
		n->entry_valid = true;
	} else {
		n->entry_valid = false;
	}
	n->entry_term = n->term;
	int rc = persist_locked(n);
	if (rc != 0) {
		n->entry_valid = was_valid;
		n->entry_term = was_term;
		if (was != NULL)
			*n->entry = *was;
		free(was);
		return rc;
	}
	free(was);
	n->proposing = true;
	n->proposal_epoch = map->epoch;
	n->acks_count = 0;
	ids_add(n->acks, &n->acks_count, atomic_load(&n->self));
	propose_send_locked(n, true);
	proposal_check_locked(n);
	return CL_OK;
}

/* The coordinator's change: next (a copy of the committed map, changed)
 * is proposed at the next epoch; it is adopted once committed. */
static int
propose_locked(cl_node *n, cl_map *next)
{
	next->epoch = n->map.epoch + 1;
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (next->owner[p] != n->map.owner[p])
			next->moved_at[p] = (uint32_t)next->epoch;
	return propose_map_locked(n, next);
}

/* The leader this node follows is up: known, a voter of the committed
 * map, and not down. */
static bool
leader_alive_locked(cl_node *n)
{
	if (n->leading)
		return true;
	uint16_t l = atomic_load(&n->leader);
	return l != 0 && cl__map_voter(&n->map, l) &&
	       !atomic_load_explicit(&n->down[l], memory_order_relaxed);
}

/* A vote is refused to anyone else while this node leads with a lease,
 * or follows a live leader heard from within the lease. */
static bool
leader_heard_locked(cl_node *n, uint16_t candidate)
{
	if (n->leading)
		return atomic_load(&n->lease_held);
	uint16_t l = atomic_load(&n->leader);
	if (l == 0 || l == candidate || !leader_alive_locked(n))
		return false;
	pthread_mutex_lock(&n->swim_lock);
	cl__swim_member *m = cl__swim_find(&n->swim, l);
	bool heard = m != NULL && cl__elapsed_ms(node_now(n),
		m->last_heard_ms) < n->cfg.lease_ms;
	pthread_mutex_unlock(&n->swim_lock);
	return heard;
}

/* Voters of the committed map below this node's id and not down. */
static uint32_t
voter_rank_locked(cl_node *n)
{
	uint16_t self = atomic_load(&n->self);
	uint32_t rank = 0;
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		uint16_t id = n->map.nodes[i].id;
		if (id < self && cl__map_voter(&n->map, id) &&
			!atomic_load_explicit(&n->down[id], memory_order_relaxed))
			rank++;
	}
	return rank;
}

static void
vote_request_send_locked(cl_node *n, bool pre)
{
	cl__vote_request r = {.term = n->election_term, .pre = pre,
		.committed = n->map.epoch,
		.last_epoch = last_map_locked(n)->epoch,
		.last_term = n->entry_valid ? n->entry_term : 0};
	rt_buffer body = {0};
	if (cl__vote_request_encode(&r, &body) == 0)
		send_members_locked(n, n->entry_valid ? n->entry : NULL,
			SYS_VOTE_REQ, &body, NULL, 0);
	rt_buffer_free(&body);
}

/* The election in progress is won once a majority of the voters of the
 * committed map and of the entry granted: a pre-vote then asks for the
 * votes, a vote makes this node the leader, which proposes its last map
 * again under its term before anything new. */
static void
election_check_locked(cl_node *n)
{
	if (n->electing == E_NONE)
		return;
	const cl_map *last = n->entry_valid ? n->entry : NULL;
	if (!cl__map_majority(&n->map, n->votes, n->votes_count) ||
		(last != NULL &&
			!cl__map_majority(last, n->votes, n->votes_count)))
		return;
	uint16_t self = atomic_load(&n->self);
	if (n->electing == E_PRE) {
		uint64_t was_term = n->term;
		uint16_t was_vote = n->voted_for;
		n->term = n->election_term;
		n->voted_for = self;
		if (persist_locked(n) != 0) {
			n->term = was_term;
			n->voted_for = was_vote;
			n->electing = E_NONE;
			return;
		}
		atomic_store(&n->leader, 0);
		n->electing = E_VOTE;
		n->votes_count = 0;
		ids_add(n->votes, &n->votes_count, self);
		vote_request_send_locked(n, false);
		election_check_locked(n); /* a lone voter wins at once */
		return;
	}
	n->electing = E_NONE;
	n->leading = true;
	n->ready = false;
	n->proposing = false;
	atomic_store(&n->leader, self);
	n->leader_lost_ms = 0;
	n->step_moves = 0;
	n->step_settled = 0;
	n->step_epoch = 0;
	n->moves_pending = UINT32_MAX;
	node_log(n, RT_LOG_INFO, "leads term %" PRIu64 " (epoch %" PRIu64
		", %s %" PRIu64 ")", n->term, n->map.epoch,
		n->entry_valid ? "proposing again" : "committed",
		last_map_locked(n)->epoch);
	if (n->entry_valid)
		sim_sometimes("cluster: a new leader proposes an entry again");
	/* a failure is tried again at the next duty */
	(void)propose_map_locked(n, last_map_locked(n));
}

/* Starts an election: a pre-vote for the next term. */
static void
stand_locked(cl_node *n, uint64_t now)
{
	n->electing = E_PRE;
	n->election_term = n->term + 1;
	n->votes_count = 0;
	ids_add(n->votes, &n->votes_count, atomic_load(&n->self));
	n->election_at_ms = now + CL_ELECTION_RETRY_MS +
		voter_rank_locked(n) * CL_ELECTION_STAGGER_MS;
	vote_request_send_locked(n, true);
	election_check_locked(n);
}

/* Every duty: a leader moves its proposal along (and stands down when
 * it is no voter any more); a voter without a live leader stands after
 * its rank's wait. */
static void
consensus_duty_locked(cl_node *n, uint64_t now)
{
	uint16_t self = atomic_load(&n->self);
	if (n->leading) {
		if (!cl__map_voter(&n->map, self)) {
			term_follow_locked(n, n->term, 0);
			return;
		}
		if (n->proposing) {
			proposal_check_locked(n);
			if (n->proposing && now >= n->propose_resend_ms)
				propose_send_locked(n, false);
		} else if (!n->ready) {
			(void)propose_map_locked(n, last_map_locked(n));
		}
		return;
	}
	if (leader_alive_locked(n)) {
		n->leader_lost_ms = 0;
		n->electing = E_NONE;
		return;
	}
	if (n->leader_lost_ms == 0) {
		n->leader_lost_ms = now;
		n->election_at_ms = now +
			voter_rank_locked(n) * CL_ELECTION_STAGGER_MS;
	}
	if (!cl__map_voter(&n->map, self) &&
		!(n->entry_valid && cl__map_voter(n->entry, self)))
		return;
	if (now >= n->election_at_ms)
		stand_locked(n, now);
}

/* A candidate asks for a vote (or whether it would get one). */
static void
on_vote_request_locked(cl_node *n, uint16_t from, const cl_envelope *e)
{
	cl__vote_request r;
	if (cl__vote_request_decode(e->payload, e->size, &r) != 0)
		return;
	cl__vote_reply a = {.term = n->term, .asked = r.term, .pre = r.pre,
		.leader = coordinator_locked(n)};
	bool member = cl_map_find(&n->map, from) != NULL ||
		(n->entry_valid && cl_map_find(n->entry, from) != NULL);
	bool up = cl__vote_up_to_date(r.committed, r.last_epoch, r.last_term,
		n->map.epoch, last_map_locked(n)->epoch,
		n->entry_valid ? n->entry_term : 0);
	if (member && r.term >= n->term && !leader_heard_locked(n, from)) {
		bool free_vote = r.term > n->term || n->voted_for == 0 ||
			n->voted_for == from;
		if (r.pre) {
			a.granted = up && free_vote;
		} else {
			bool changed = false;
			if (r.term > n->term) {
				term_follow_locked(n, r.term, 0);
				changed = true;
			}
			if (up && (n->voted_for == 0 || n->voted_for == from)) {
				changed = changed || n->voted_for != from;
				n->voted_for = from;
				a.granted = true;
			}
			if (changed && persist_locked(n) != 0)
				a.granted = false;
			if (a.granted) { /* give it time to win */
				n->leader_lost_ms = node_now(n);
				n->election_at_ms = node_now(n) +
					CL_ELECTION_RETRY_MS;
			}
			a.term = n->term;
			a.leader = coordinator_locked(n);
		}
	}
	rt_buffer body = {0};
	if (cl__vote_reply_encode(&a, &body) == 0)
		send_system(n, from, SYS_VOTE, 0, &body);
	rt_buffer_free(&body);
}

static void
on_vote_locked(cl_node *n, uint16_t from, const cl_envelope *e)
{
	cl__vote_reply v;
	uint16_t self = atomic_load(&n->self);
	if (cl__vote_reply_decode(e->payload, e->size, &v) != 0)
		return;
	if (v.term > n->term) {
		/* a member is at a later term: follow it, and its leader */
		term_follow_locked(n, v.term, v.leader == self ? 0 : v.leader);
		(void)persist_locked(n);
		return;
	}
	if (!v.granted) {
		/* refused for a live leader this node did not know of */
		if (v.leader != 0 && v.leader != self && v.term == n->term &&
			!n->leading && atomic_load(&n->leader) == 0) {
			atomic_store(&n->leader, v.leader);
			n->electing = E_NONE;
			n->leader_lost_ms = 0;
		}
		return;
	}
	if (n->electing == E_NONE || v.asked != n->election_term ||
		v.pre != (n->electing == E_PRE))
		return;
	ids_add(n->votes, &n->votes_count, from);
	election_check_locked(n);
}

/* The leader of term proposes map: accepted (saved as the entry, over
 * any other) unless this node is at a later term. A proposal of the
 * committed map itself (a new leader's) drops the entry: no majority
 * can have committed it, or the new leader would hold it. */
static void
on_propose_locked(cl_node *n, uint16_t from, const cl_envelope *e)
{
	uint64_t term;
	cl_map *map = malloc(sizeof *map);
	CL_ASSERT(map != NULL);
	if (cl__propose_decode(e->payload, e->size, &term, map) != 0) {
		free(map);
		return;
	}
	cl__accepted a = {.term = n->term, .epoch = map->epoch, .ok = false};
	if (term >= n->term && !(n->leading && term == n->term)) {
		bool changed = false;
		if (term > n->term) {
			term_follow_locked(n, term, from);
			changed = true;
		} else if (atomic_load(&n->leader) != from) {
			atomic_store(&n->leader, from);
			n->electing = E_NONE;
			n->leader_lost_ms = 0;
		}
		if (n->entry_valid && n->entry_term == term &&
			n->entry->epoch > map->epoch) {
			/* an older proposal of this term: links keep a
			 * leader's order, so only a duplicate could be it */
		} else if (map->epoch > n->map.epoch) {
			if (!n->entry_valid || n->entry_term != term ||
				n->entry->epoch != map->epoch) {
				*n->entry = *map;
				n->entry_valid = true;
				n->entry_term = term;
				changed = true;
			}
			a.ok = true;
		} else if (map->epoch == n->map.epoch) {
			if (n->entry_valid) {
				n->entry_valid = false;
				changed = true;
			}
			a.ok = true;
		} else {
			a.epoch = n->map.epoch; /* the leader is behind: refused */
		}
		if (changed && persist_locked(n) != 0)
			a.ok = false;
		a.term = n->term;
	}
	free(map);
	rt_buffer body = {0};
	if (cl__accepted_encode(&a, &body) == 0)
		send_system(n, from, SYS_ACCEPTED, 0, &body);
	rt_buffer_free(&body);
}

static void
on_accepted_locked(cl_node *n, uint16_t from, const cl_envelope *e)
{
	cl__accepted a;
	if (cl__accepted_decode(e->payload, e->size, &a) != 0)
		return;
	if (a.term > n->term) {
		term_follow_locked(n, a.term, 0);
		(void)persist_locked(n);
		return;
	}
	if (n->leading && a.term == n->term && !a.ok &&
		a.epoch > n->map.epoch) {
		/* a member committed more than this leader holds (it cannot
		 * win a vote then): take the map, which makes it stand down */
		send_nil_locked(n, from, SYS_MAP_PULL, 0);
		return;
	}
	if (!n->leading || !n->proposing || a.term != n->term || !a.ok ||
		a.epoch != n->proposal_epoch)
		return;
	ids_add(n->acks, &n->acks_count, from);
	proposal_check_locked(n);
}

/* ---- fences, release, settle ------------------------------------------- */

static void
send_fence_marker(cl_node *n, uint16_t to, uint16_t source, uint32_t p,
	uint64_t epoch)
{
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_array(&pk.pk, 2);
	msgpack_pack_uint16(&pk.pk, source);
	msgpack_pack_uint32(&pk.pk, p);
	send_system(n, to, SYS_FENCE, epoch, &body);
	rt_buffer_free(&body);
}

/* At the old owner: FENCE(e) from source, sent once source had adopted
 * e, so everything source sent here before it adopted any epoch up to e
 * is ahead of it. Every partition leaving here at e or before gets a
 * marker after what it holds, or one sent on directly; markers carry the
 * handoff's epoch. (A fence from a later epoch comes from a restarted
 * member, or answers a REFENCE.) */
static void
on_fence_at_old_owner_locked(cl_node *n, uint16_t source, uint64_t epoch)
{
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		part *x = &n->parts[p];
		if (x->mode != P_LEAVING || x->epoch > epoch)
			continue;
		if (x->stage < L_SHIPPED) {
			rt_buffer body = {0};
			cl__packer pk;
			cl__packer_init(&pk, &body);
			msgpack_pack_array(&pk.pk, 2);
			msgpack_pack_uint16(&pk.pk, source);
			msgpack_pack_uint32(&pk.pk, p);
			cl_envelope m;
			system_envelope(&m, SYS_FENCE, x->epoch, &body);
			pthread_mutex_lock(&n->hold_lock);
			hold_append_locked(x->held, &m, false);
			pthread_mutex_unlock(&n->hold_lock);
			rt_buffer_free(&body);
		} else {
			send_fence_marker(n, x->peer, source, p, x->epoch);
		}
	}
}

static bool
fences_complete_locked(cl_node *n, const part *x)
{
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		uint16_t id = n->map.nodes[i].id;
		if (id == x->peer || (x->fenced >> i & 1u))
			continue;
		if (liveness_of(n, id) == CL_LIVE_DOWN)
			continue; /* a dead sender sends nothing more */
		return false;
	}
	return true;
}

static void
deliver_held(void *arg, const unsigned char *bytes, size_t length)
{
	cl_node *n = arg;
	size_t offset = 0;
	while (offset < length) {
		cl_envelope e;
		size_t used;
		int rc = cl_envelope_decode(bytes + offset, length - offset,
			&e, &used);
		CL_ASSERT(rc == 0); /* we encoded it */
		offset += used;
		if (e.flags & CL_ENVELOPE_F_SYSTEM)
			continue; /* markers end here */
		deliver_local(n, &e);
	}
}

static void
part_finish_locked(cl_node *n, uint32_t p)
{
	part *x = &n->parts[p];
	CL_ASSERT(x->mode != P_NORMAL);
	CL_ASSERT(n->pending > 0);
	if (x->mode == P_LEAVING)
		n->records_dirty = true; /* the file still lists it */
	x->mode = P_NORMAL;
	x->restored = false;
	atomic_store(&n->arrived[p], 0);
	n->pending--;
	atomic_store(&n->pending_gossip, n->pending);
}

/* At the coordinator: one more partition of the step in flight settled;
 * the last one lets the next step start at the next tick, not at the
 * next duty interval. */
static void
step_settled_locked(cl_node *n)
{
	n->step_settled++;
	if (n->step_moves != 0 && n->step_settled >= n->step_moves)
		n->next_duty_ms = 0;
}

/* The state seam's sync finished (any thread, maybe after close). */
static void
sync_callback(void *arg, int status)
{
	sync_call *c = arg;
	sync_box *box = c->box;
	if (status != 0) {
		atomic_store(&box->failed, true);
	} else {
		uint64_t seen = atomic_load(&box->done_gen);
		while (seen < c->gen &&
			!atomic_compare_exchange_weak(&box->done_gen, &seen,
				c->gen))
			continue;
	}
	free(c);
	if (atomic_fetch_sub(&box->refs, 1) == 1)
		free(box);
}

/* Whether p's imports are durable here; asks for a sync the first time
 * (one sync, issued at the end of the tick, covers every partition whose
 * DONE came before it). */
static bool
state_synced_locked(cl_node *n, part *x)
{
	if (n->cfg.state_ops == NULL || n->cfg.state_ops->sync == NULL)
		return true;
	if (x->sync_gen == 0) {
		x->sync_gen = n->sync_issued + 1;
		if (n->sync_wanted < x->sync_gen)
			n->sync_wanted = x->sync_gen;
	}
	return atomic_load(&n->sync->done_gen) >= x->sync_gen;
}

/* Hands the wanted sync to the state seam (end of a tick). */
static void
sync_issue_locked(cl_node *n)
{
	if (atomic_exchange(&n->sync->failed, false))
		n->sync_issued = atomic_load(&n->sync->done_gen);
	if (n->sync_wanted <= n->sync_issued || n->cfg.state_ops == NULL ||
		n->cfg.state_ops->sync == NULL || n->cfg.state_deferred)
		return;
	sync_call *c = malloc(sizeof *c);
	CL_ASSERT(c != NULL);
	c->box = n->sync;
	c->gen = n->sync_wanted;
	atomic_fetch_add(&n->sync->refs, 1);
	int rc = n->cfg.state_ops->sync(n->cfg.state_arg, sync_callback, c);
	if (rc != 0) {
		atomic_fetch_sub(&n->sync->refs, 1);
		free(c);
		node_log(n, RT_LOG_WARN, "state sync for a handoff: %s; "
			"retrying", cl_strerror(rc));
		return;
	}
	n->sync_issued = n->sync_wanted;
}

/* At the new owner: p can be served once DONE and every live member's
 * fence are in and the imports are durable; it is then ready, and
 * releases_flush_locked serves it once the map file no longer lists it
 * (a crash after that restarts with the state here, none before it). */
static void
try_release_locked(cl_node *n, uint32_t p)
{
	part *x = &n->parts[p];
	if (x->mode != P_ARRIVING || x->ready)
		return;
	bool old_gone = cl_map_find(&n->map, x->peer) == NULL;
	if (!old_gone && (!x->done || !fences_complete_locked(n, x)))
		return;
	if (!old_gone && !state_synced_locked(n, x))
		return;
	x->ready = true;
	n->releases_due = true;
}

/* Serves p: what was held is delivered first, in arrival order. */
static void
release_locked(cl_node *n, uint32_t p)
{
	part *x = &n->parts[p];
	CL_ASSERT(x->mode == P_ARRIVING);
	CL_ASSERT(x->ready);
	bool old_gone = cl_map_find(&n->map, x->peer) == NULL;
	pthread_mutex_lock(&n->hold_lock);
	hold *h = x->held;
	x->held = NULL;
	atomic_store(&n->route[p], word_for_owner(n, n->map.owner[p]));
	/* deliveries go to mailboxes; the word is local so later sends
	 * queue behind these under the runtime's per-sender order */
	if (h != NULL)
		deliver_held(n, h->bytes.bytes, h->bytes.length);
	pthread_mutex_unlock(&n->hold_lock);
	if (h != NULL) {
		rt_buffer_free(&h->bytes);
		free(h);
	}
	uint16_t old = x->peer;
	uint64_t epoch = x->epoch;
	x->ready = false;
	part_finish_locked(n, p);
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_uint32(&pk.pk, p);
	if (!old_gone)
		send_system(n, old, SYS_SETTLED, epoch, &body);
	uint16_t c = coordinator_locked(n);
	if (c != 0 && c != old && c != atomic_load(&n->self))
		send_system(n, c, SYS_SETTLED, epoch, &body);
	if (c == atomic_load(&n->self) && epoch == n->step_epoch)
		step_settled_locked(n);
	rt_buffer_free(&body);
}

/* End of a tick: writes the map file without the ready arrivals, then
 * serves them; rewrites it for handoffs finished at the old owner now
 * and then. A failed write is retried at the next tick. */
static void
releases_flush_locked(cl_node *n)
{
	bool stale = n->records_dirty &&
		cl__elapsed_ms(node_now(n), n->records_saved_ms) >=
			CL_RECORDS_SAVE_MS;
	if (!n->releases_due && !stale)
		return;
	int rc = map_save_locked(n, NULL, &n->map);
	if (rc != 0) {
		node_log(n, RT_LOG_ERROR, "cannot persist the handoffs in "
			"flight: %s; retrying", cl_strerror(rc));
		return;
	}
	if (!n->releases_due)
		return;
	n->releases_due = false;
	for (uint32_t p = 0; p < CL_PARTITIONS && n->pending > 0; p++)
		if (n->parts[p].mode == P_ARRIVING && n->parts[p].ready)
			release_locked(n, p);
}

static void
on_fence_at_new_owner_locked(cl_node *n, uint16_t source, uint32_t p,
	uint64_t epoch)
{
	part *x = &n->parts[p];
	if (x->mode != P_ARRIVING || x->epoch != epoch)
		return;
	int i = cl__map_index(&n->map, source);
	if (i >= 0)
		x->fenced |= 1ull << i;
	try_release_locked(n, p);
}

/* ---- handoff: the old owner's side ------------------------------------- */

typedef struct ship {
	cl_node *n;
	uint32_t partition;
	uint16_t to;
	uint64_t epoch;
	uint64_t attempt;
	rt_buffer body;
	cl__packer pk;
	uint32_t items;
	size_t items_offset; /* where the items array header starts */
	int status;
	uint64_t actors;
} ship;

static void
ship_open(ship *s)
{
	s->body.length = 0;
	cl__packer_init(&s->pk, &s->body);
	msgpack_pack_array(&s->pk.pk, 3);
	msgpack_pack_uint32(&s->pk.pk, s->partition);
	msgpack_pack_uint64(&s->pk.pk, s->attempt);
	s->items_offset = s->body.length;
	unsigned char header[5] = {0xdd, 0, 0, 0, 0}; /* array32, patched */
	rt_buffer_append(&s->body, header, sizeof header);
	s->items = 0;
}

/* Sends the chunk, waiting for link credit (real mode) if needed. */
static int
ship_flush(ship *s)
{
	if (s->items == 0)
		return CL_OK;
	unsigned char *c = s->body.bytes + s->items_offset;
	c[1] = (unsigned char)(s->items >> 24);
	c[2] = (unsigned char)(s->items >> 16);
	c[3] = (unsigned char)(s->items >> 8);
	c[4] = (unsigned char)s->items;
	cl_node *n = s->n;
	cl__link *l = link_for(n, s->to);
	if (l == NULL)
		return CL_EUNAVAILABLE;
	cl_envelope e;
	system_envelope(&e, SYS_STATE, s->epoch, &s->body);
	uint64_t deadline = cl__monotonic_ms() + CL_SHIP_WAIT_MS;
	int rc;
	for (;;) {
		/* State takes at most half the window, so the partition's
		 * handoff never starves the link's other traffic. */
		pthread_mutex_lock(&l->lock);
		rc = cl__link_window_left_locked(l) < CL_LINK_WINDOW_BYTES / 2 +
				s->body.length
			? CL_EBUSY
			: cl__link_enqueue_locked(l, &e, false, node_now(n));
		if (rc == CL_EBUSY)
			cl__link_flush_locked(l, node_now(n));
		pthread_mutex_unlock(&l->lock);
		if (rc != CL_EBUSY || n->cfg.manual_tick ||
			cl__monotonic_ms() >= deadline)
			break;
		cl__sleep_ms(1);
	}
	ship_open(s);
	return rc;
}

static int
ship_item(void *arg, rt_addr addr, const void *bytes, size_t length)
{
	ship *s = arg;
	if (length > RT_MESSAGE_BYTES_MAX / 2)
		return CL_ETOOBIG;
	if (s->body.length + length + 32 > CL_STATE_CHUNK_BYTES) {
		int rc = ship_flush(s);
		if (rc != 0)
			return rc;
	}
	msgpack_pack_array(&s->pk.pk, 3);
	msgpack_pack_uint32(&s->pk.pk, addr.kind);
	msgpack_pack_uint64(&s->pk.pk, addr.id);
	msgpack_pack_bin(&s->pk.pk, length);
	msgpack_pack_bin_body(&s->pk.pk, bytes, length);
	s->items++;
	s->actors++;
	return s->pk.status;
}

/* After the state went out: DONE, then what was held, then the word. */
static void
ship_finish_locked(cl_node *n, uint32_t p)
{
	part *x = &n->parts[p];
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_array(&pk.pk, 2);
	msgpack_pack_uint32(&pk.pk, p);
	msgpack_pack_uint64(&pk.pk, x->attempt);
	send_system(n, x->peer, SYS_DONE, x->epoch, &body);
	rt_buffer_free(&body);
	cl__link *l = link_for(n, x->peer);
	pthread_mutex_lock(&n->hold_lock);
	hold *h = x->held;
	x->held = NULL;
	if (l != NULL && h != NULL) {
		pthread_mutex_lock(&l->lock);
		size_t offset = 0;
		while (offset < h->bytes.length) {
			cl_envelope e;
			size_t used;
			int rc = cl_envelope_decode(h->bytes.bytes + offset,
				h->bytes.length - offset, &e, &used);
			CL_ASSERT(rc == 0);
			offset += used;
#ifdef FLOCK_BUG_HANDOFF_DROPS_BUFFERED
			/* PLANTED BUG (make sim-zoo): what arrived for the
			 * partition during its handoff is dropped, not
			 * forwarded (the fences still go). */
			if ((e.flags & CL_ENVELOPE_F_SYSTEM) == 0)
				continue;
#endif
			e.epoch = x->epoch;
			if ((e.flags & CL_ENVELOPE_F_SYSTEM) == 0) {
				e.flags |= CL_ENVELOPE_F_FORWARDED;
				sim_sometimes("cluster: message held during a handoff");
			}
			rc = cl__link_enqueue_locked(l, &e, true, node_now(n));
			if (rc != 0)
				atomic_fetch_add(&n->messages_dropped, 1);
		}
		pthread_mutex_unlock(&l->lock);
	}
	atomic_store(&n->route[p], word_for_owner(n, x->peer));
	pthread_mutex_unlock(&n->hold_lock);
	if (h != NULL) {
		rt_buffer_free(&h->bytes);
		free(h);
	}
	x->stage = L_SHIPPED;
	/* SETTLED follows once the new owner serves p; a QUERY only if it
	 * is late (it is lost only if the new owner crashes) */
	ask_later_locked(n, x, CL_RESUME_RETRY_MS);
}

static void
passivated_callback(void *arg, uint32_t partition, int status)
{
	cl_node *n = arg;
	CL_ASSERT(partition < CL_PARTITIONS);
	(void)status; /* a failed save leaves state to the journal replay */
	atomic_store(&n->passivated[partition], 1);
}

/* One rt_passivate_where pass over a set of partitions (or, after a
 * lost lease, over every actor). The runtime calls pass_pred under its
 * registry locks, so it reads only this immutable bitmap. */
typedef struct passivation {
	cl_node *n;
	bool all; /* the lease was lost: every actor goes, no flag is set */
	uint64_t bits[CL_PARTITIONS / 64];
} passivation;

static bool
pass_pred(void *arg, rt_addr addr)
{
	const passivation *pv = arg;
	if (addr.kind == RT_KIND_INBOX)
		return false;
	uint32_t p = cl_partition_of(addr.id);
	return pv->all || (pv->bits[p / 64] >> (p % 64) & 1u);
}

static void
pass_done(void *arg, int status)
{
	passivation *pv = arg;
	cl_node *n = pv->n;
	if (status != 0 && status != RT_ESTOPPED)
		node_log(n, RT_LOG_ERROR, "passivation for a handoff ended "
			"with %s; the store keeps the last good state",
			rt_strerror(status));
	for (uint32_t p = 0; !pv->all && p < CL_PARTITIONS; p++)
		if (pv->bits[p / 64] >> (p % 64) & 1u)
			atomic_store(&n->passivated[p], 1);
	free(pv);
	atomic_fetch_sub(&n->passes, 1);
}

/* Starts the runtime's pass over pv's partitions (taken). false: the
 * runtime refused for now (too many passes); pv is freed. */
static bool
pass_start(cl_node *n, passivation *pv)
{
	pv->n = n;
	atomic_fetch_add(&n->passes, 1);
	int rc = rt_passivate_where(n->rt, pass_pred, pv, pass_done, pv);
	if (rc == 0)
		return true;
	atomic_fetch_sub(&n->passes, 1);
	free(pv);
	return false;
}

/* Moves each leaving partition toward shipping: one runtime pass for
 * every partition that starts leaving now. Shipping itself runs in
 * ships_run, without the node lock. */
static void
handoffs_run_locked(cl_node *n)
{
	passivation *pv = NULL;
	for (uint32_t p = 0; p < CL_PARTITIONS && n->pending > 0; p++) {
		part *x = &n->parts[p];
		if (x->mode != P_LEAVING)
			continue;
		if (x->stage == L_START) {
			x->stage = L_PASSIVATING;
			atomic_store(&n->passivated[p], 0);
			if (n->cfg.passivate_ops != NULL) {
				n->cfg.passivate_ops->passivate_partition(
					n->cfg.passivate_arg, p,
					passivated_callback, n);
			} else if (n->rt == NULL) {
				atomic_store(&n->passivated[p], 1);
			} else {
				if (pv == NULL)
					pv = calloc(1, sizeof *pv);
				CL_ASSERT(pv != NULL);
				pv->bits[p / 64] |= 1ull << (p % 64);
			}
		}
		if (x->stage == L_PASSIVATING &&
			atomic_load(&n->passivated[p]) != 0)
			x->stage = L_PASSIVATED;
	}
	if (pv != NULL) {
		uint64_t bits[CL_PARTITIONS / 64];
		memcpy(bits, pv->bits, sizeof bits);
		if (!pass_start(n, pv))
			for (uint32_t p = 0; p < CL_PARTITIONS; p++)
				if (bits[p / 64] >> (p % 64) & 1u)
					n->parts[p].stage = L_START;
	}
	if (n->lease_pass_due && n->rt != NULL) {
		passivation *all = calloc(1, sizeof *all);
		CL_ASSERT(all != NULL);
		all->all = true;
		if (pass_start(n, all))
			n->lease_pass_due = false;
	}
}

typedef struct ship_job {
	uint32_t partition;
	uint16_t to;
	uint64_t epoch;
	uint64_t attempt;
	bool skip_state; /* the new owner has it: DONE and the hold only */
	int status;
} ship_job;

/* Takes up to max passivated partitions for shipping. */
static uint32_t
ships_collect_locked(cl_node *n, ship_job *jobs, uint32_t max)
{
	uint32_t count = 0;
	if (n->cfg.state_deferred)
		return 0; /* what would ship is not reachable yet */
	for (uint32_t p = 0; p < CL_PARTITIONS && n->pending > 0 &&
		count < max; p++) {
		part *x = &n->parts[p];
		if (x->mode != P_LEAVING || x->stage != L_PASSIVATED ||
			x->attempt == 0)
			continue; /* not passivated, or not asked for yet */
		x->stage = L_SHIPPING;
		x->reship = false;
		jobs[count++] = (ship_job){p, x->peer, x->epoch, x->attempt,
			x->skip_state, 0};
	}
	return count;
}

/* Exports and ships the collected partitions without the node lock
 * (a shipment may wait for link credit, and the receive path and the
 * duties must not wait behind it), then finishes them under it. */
static void
ships_run(cl_node *n, ship_job *jobs, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		ship s = {.n = n, .partition = jobs[i].partition,
			.to = jobs[i].to, .epoch = jobs[i].epoch,
			.attempt = jobs[i].attempt};
		ship_open(&s);
		int rc = 0;
		if (n->cfg.state_ops != NULL && !jobs[i].skip_state)
			rc = n->cfg.state_ops->export_partition(n->cfg.state_arg,
				s.partition, ship_item, &s);
		if (rc == 0)
			rc = ship_flush(&s);
		rt_buffer_free(&s.body);
		jobs[i].status = rc;
	}
	pthread_mutex_lock(&n->lock);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t p = jobs[i].partition;
		CL_ASSERT(n->parts[p].stage == L_SHIPPING);
		if (n->parts[p].reship) {
			/* the new owner asked for another shipment meanwhile */
			n->parts[p].stage = L_PASSIVATED;
			continue;
		}
		if (jobs[i].status == 0) {
			ship_finish_locked(n, p);
			continue;
		}
		n->parts[p].stage = L_PASSIVATED;
		node_log(n, RT_LOG_WARN, "handoff of partition %u to %u failed: "
			"%s; retrying", p, jobs[i].to,
			cl_strerror(jobs[i].status));
	}
	pthread_mutex_unlock(&n->lock);
}

/* At the old owner (and the coordinator): the new owner serves p, from
 * the handoff that began at epoch, with its imports durable. A restored
 * handoff learns so from the answer to its QUERY. */
static void
on_settled_locked(cl_node *n, uint32_t p, uint64_t epoch)
{
	part *x = &n->parts[p];
	if (atomic_load(&n->self) == coordinator_locked(n) &&
		epoch == n->step_epoch)
		step_settled_locked(n);
	if (x->mode != P_LEAVING || x->epoch != epoch ||
		(x->stage != L_SHIPPED && x->stage != L_RESTORED))
		return;
	if (x->stage == L_RESTORED)
		ship_finish_locked(n, p); /* what it held goes on */
	if (n->cfg.state_ops != NULL)
		n->cfg.state_ops->drop_partition(n->cfg.state_arg, p);
	part_finish_locked(n, p);
}

/* At the new owner: one chunk of shipped state, taken only by the
 * handoff and shipment it belongs to: state for a partition served here
 * would replace what its active actors stand on. */
static void
on_state(cl_node *n, const msgpack_object *o, uint64_t epoch)
{
	const msgpack_object *f;
	const msgpack_object *items;
	uint32_t k, count, p;
	uint64_t attempt;
	if (cl__obj_array(o, 3, &f, &k) != 0 || cl__obj_u32(&f[0], &p) != 0 ||
		p >= CL_PARTITIONS || cl__obj_u64(&f[1], &attempt) != 0 ||
		cl__obj_array(&f[2], 0, &items, &count) != 0)
		return;
	const part *x = &n->parts[p];
	if (x->mode != P_ARRIVING || x->epoch != epoch || x->done ||
		x->attempt != attempt)
		return;
	for (uint32_t i = 0; i < count; i++) {
		const msgpack_object *g;
		uint32_t kind;
		uint64_t id;
		const unsigned char *bytes;
		uint32_t length;
		if (cl__obj_array(&items[i], 3, &g, &k) != 0 ||
			cl__obj_u32(&g[0], &kind) != 0 ||
			cl__obj_u64(&g[1], &id) != 0 ||
			cl__obj_bin(&g[2], &bytes, &length) != 0 ||
			kind >= RT_KINDS_MAX)
			return;
		if (n->cfg.state_ops != NULL)
			n->cfg.state_ops->import_actor(n->cfg.state_arg,
				rt_addr_make(kind, id), bytes, length);
	}
}

/* ---- resuming a handoff a crash interrupted ---------------------------- */

static void
send_resume_locked(cl_node *n, uint32_t p)
{
	const part *x = &n->parts[p];
	CL_ASSERT(x->mode == P_ARRIVING);
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_array(&pk.pk, 3);
	msgpack_pack_uint32(&pk.pk, p);
	msgpack_pack_uint64(&pk.pk, x->attempt);
	msgpack_pack_uint8(&pk.pk, x->done ? 1 : 0);
	send_system(n, x->peer, SYS_RESUME, x->epoch, &body);
	rt_buffer_free(&body);
}

/* At the old owner: the new owner asks for a shipment under attempt
 * (done: it has the state, only the hold and the fences are missing).
 * A new attempt starts the shipment over, holding again if it had gone
 * out; the members are asked to fence again, as the fences that went
 * with an earlier shipment died with a crash. */
static void
on_resume_locked(cl_node *n, uint16_t from, uint32_t p, uint64_t epoch,
	uint64_t attempt, bool done)
{
	part *x = &n->parts[p];
	if (x->mode != P_LEAVING || x->epoch != epoch || x->peer != from)
		return;
	if (x->stage != L_RESTORED && x->attempt == attempt &&
		x->skip_state == done)
		return; /* that shipment runs or ran already */
	if (x->restored || x->attempt != 0) {
		/* a shipment again: the fences that went with the first one
		 * (or came before a restart) may have died with a crash */
		sim_sometimes("cluster: a handoff resumed after a crash");
		if (n->refence_due == 0 || n->refence_due > epoch)
			n->refence_due = epoch;
	}
	x->attempt = attempt;
	x->skip_state = done;
	if (x->stage == L_RESTORED) {
		x->stage = L_START;
	} else if (x->stage == L_SHIPPING) {
		x->reship = true;
	} else if (x->stage == L_SHIPPED) {
		hold_begin_locked(n, p);
		x->stage = L_PASSIVATED;
	}
}

/* At the new owner: a restarted old owner asks where p's handoff of
 * epoch stands. Arriving: RESUME says which shipment to send. Otherwise
 * it was served here (the map file lists an arrival until its state is
 * durable here): SETTLED. */
static void
on_query_locked(cl_node *n, uint16_t from, uint32_t p, uint64_t epoch)
{
	const part *x = &n->parts[p];
	if (x->mode == P_ARRIVING && x->peer == from && x->epoch == epoch) {
		send_resume_locked(n, p);
		return;
	}
	if (x->mode == P_ARRIVING && x->epoch <= epoch)
		return; /* another handoff of p runs first: ask again later */
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	msgpack_pack_uint32(&pk.pk, p);
	send_system(n, from, SYS_SETTLED, epoch, &body);
	rt_buffer_free(&body);
}

/* While a handoff waits on a word from its other side, at its ask_at_ms
 * (backing off; all at once after a peer's restart or return): a
 * restarted old owner (or one shipped and waiting for SETTLED) asks the
 * new owner; a new owner without the state asks the old owner to ship.
 * Both are idempotent at the receiver. Nothing is asked of a peer that
 * is down (its return asks again). */
static void
resume_round_locked(cl_node *n, uint64_t now)
{
	bool all = atomic_exchange(&n->asks_due, false);
	for (uint32_t p = 0; p < CL_PARTITIONS && n->pending > 0; p++) {
		part *x = &n->parts[p];
		if (x->mode == P_NORMAL || (!all && now < x->ask_at_ms) ||
			atomic_load_explicit(&n->down[x->peer],
				memory_order_relaxed))
			continue;
		bool asked = true;
		if (x->mode == P_LEAVING &&
			(x->stage == L_RESTORED || x->stage == L_SHIPPED)) {
			rt_buffer body = {0};
			cl__packer pk;
			cl__packer_init(&pk, &body);
			msgpack_pack_uint32(&pk.pk, p);
			send_system(n, x->peer, SYS_QUERY, x->epoch, &body);
			rt_buffer_free(&body);
		} else if (x->mode == P_ARRIVING && !x->done &&
			   cl_map_find(&n->map, x->peer) != NULL) {
			send_resume_locked(n, p);
		} else {
			asked = false;
		}
		if (!asked)
			continue;
		x->ask_at_ms = now + x->ask_backoff_ms;
		x->ask_backoff_ms = x->ask_backoff_ms * 2u > CL_RESUME_RETRY_MAX_MS
			? CL_RESUME_RETRY_MAX_MS
			: x->ask_backoff_ms * 2u;
	}
}

/* Sets up the handoffs the map file lists (a restart): each holds what
 * comes for its partition until the other side answers. An arrival asks
 * for a shipment under this incarnation's token, so that nothing the
 * previous life was sent completes it. */
static void
restore_records_locked(cl_node *n, const cl__handoff_record *records,
	uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		const cl__handoff_record *r = &records[i];
		part *x = &n->parts[r->partition];
		CL_ASSERT(x->mode == P_NORMAL);
		memset(x, 0, sizeof *x);
		x->mode = r->mode;
		x->peer = r->peer;
		x->epoch = r->epoch;
		x->restored = true;
		x->stage = L_RESTORED;
		ask_later_locked(n, x, 0);
		if (r->mode == P_ARRIVING)
			x->attempt = n->incarnation;
		n->pending++;
		hold_begin_locked(n, r->partition);
	}
	atomic_store(&n->pending_gossip, n->pending);
	if (count > 0)
		node_log(n, RT_LOG_INFO, "resuming %u handoffs", count);
}

/* ---- joining ----------------------------------------------------------- */

static void
send_join_locked(cl_node *n)
{
	rt_buffer body = {0};
	cl__packer pk;
	cl__packer_init(&pk, &body);
	size_t len = strlen(n->listen);
	msgpack_pack_array(&pk.pk, 1);
	msgpack_pack_str(&pk.pk, len);
	msgpack_pack_str_body(&pk.pk, n->listen, len);
	cl_envelope e;
	system_envelope(&e, SYS_JOIN, 0, &body);
	pthread_mutex_lock(&n->bootstrap.lock);
	cl__link_send_now_locked(&n->bootstrap, &e);
	pthread_mutex_unlock(&n->bootstrap.lock);
	rt_buffer_free(&body);
}

/* At a member: a node at address asks to join. The coordinator proposes
 * a map with it (standby) and answers it once that is committed (or at
 * once, when it is a member already); others pass the request on. A
 * request that comes while another change is in flight is dropped: the
 * joiner asks again every CL_JOIN_RETRY_MS. */
static void
on_join_locked(cl_node *n, const msgpack_object *f, uint32_t count,
	const cl_envelope *e)
{
	char address[CL_ADDRESS_BYTES_MAX];
	if (count < 1 || cl__obj_str(&f[0], address, sizeof address) != 0)
		return;
	uint16_t self = atomic_load(&n->self);
	uint16_t c = coordinator_locked(n);
	if (c != self) {
		cl__link *l = link_for(n, c);
		if (l != NULL) {
			pthread_mutex_lock(&l->lock);
			cl__link_send_now_locked(l, e);
			pthread_mutex_unlock(&l->lock);
		}
		return;
	}
	const cl_map_node *m = cl_map_find_address(&n->map, address);
	if (m != NULL) {
		send_join_accept_locked(n, m->id);
		return;
	}
	if (!n->ready || n->proposing || !atomic_load(&n->lease_held))
		return;
	cl_map *next = malloc(sizeof *next);
	CL_ASSERT(next != NULL);
	*next = n->map;
	uint16_t id;
	if (cl_map_add_node(next, address, CL_NODE_STANDBY, &id) == 0 &&
		propose_locked(n, next) == 0)
		node_log(n, RT_LOG_INFO, "node %u joins from %s (epoch %" PRIu64
			" proposed)", id, address, next->epoch);
	free(next);
}

static void
on_join_accept_locked(cl_node *n, uint16_t from, const msgpack_object *f,
	uint32_t count)
{
	uint32_t id;
	cl_map *map = malloc(sizeof *map);
	CL_ASSERT(map != NULL);
	if (count >= 2 && cl__obj_u32(&f[0], &id) == 0 && id != 0 &&
		id <= CL_NODE_ID_MAX && cl__map_from_object(&f[1], map) == 0 &&
		cl_map_find(map, (uint16_t)id) != NULL &&
		!atomic_load(&n->joined)) {
		atomic_store(&n->self, (uint16_t)id);
		/* inboxes made from now on carry the id: replies find them */
		if (n->rt != NULL)
			rt_set_node_id(n->rt, (uint16_t)id);
		pthread_mutex_lock(&n->swim_lock);
		cl__swim_init(&n->swim, (uint16_t)id, n->incarnation,
			n->cfg.seed, n->cfg.probe_interval_ms,
			n->cfg.suspect_timeout_ms, node_now(n));
		pthread_mutex_unlock(&n->swim_lock);
		for (uint32_t i = 0; i < CL_NODES_MAX; i++)
			n->links[i].self = (uint16_t)id;
		if (adopt_map_locked(n, map) == 0) {
			atomic_store(&n->joined, true);
			/* the coordinator answered; its term comes with its
			 * next proposal */
			if (from != 0 && from != (uint16_t)id)
				atomic_store(&n->leader, from);
			node_log(n, RT_LOG_INFO, "joined as node %u", id);
		}
	}
	free(map);
}

/* ---- system messages --------------------------------------------------- */

static void
on_system_locked(cl_node *n, uint16_t from, const cl_envelope *e)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 4096))
		return;
	msgpack_object o;
	if (cl__unpack(e->payload, e->size, &zone, &o) != 0)
		goto done;
	const msgpack_object *f = NULL;
	uint32_t count = 0;
	if (o.type == MSGPACK_OBJECT_ARRAY)
		cl__obj_array(&o, 0, &f, &count);
	uint32_t v;
	switch (e->type) {
	case SYS_PING:
	case SYS_ACK:
	case SYS_PING_REQ:
		if (f != NULL) {
			pthread_mutex_lock(&n->swim_lock);
			on_swim_locked(n, from, e, f, count);
			pthread_mutex_unlock(&n->swim_lock);
		}
		break;
	case SYS_JOIN:
		on_join_locked(n, f, count, e);
		break;
	case SYS_JOIN_ACCEPT:
		on_join_accept_locked(n, from, f, count);
		break;
	case SYS_MAP: {
		cl_map *map = malloc(sizeof *map);
		CL_ASSERT(map != NULL);
		if (cl__map_from_object(&o, map) == 0 &&
			map->epoch > n->map.epoch && atomic_load(&n->joined)) {
			/* committed by a leader of a later term: this one
			 * leads no more (its proposal can no longer win) */
			if (n->leading)
				term_follow_locked(n, n->term, 0);
			adopt_map_locked(n, map);
		}
		free(map);
		break;
	}
	case SYS_MAP_PULL: {
		rt_buffer body = {0};
		if (cl_map_encode(&n->map, &body) == 0)
			send_system(n, from, SYS_MAP, 0, &body);
		rt_buffer_free(&body);
		break;
	}
	case SYS_FENCE:
		if (f == NULL && cl__obj_u32(&o, &v) == 0)
			on_fence_at_old_owner_locked(n, (uint16_t)v, e->epoch);
		else if (count == 2 && cl__obj_u32(&f[0], &v) == 0) {
			uint32_t p;
			if (cl__obj_u32(&f[1], &p) == 0 && p < CL_PARTITIONS)
				on_fence_at_new_owner_locked(n, (uint16_t)v, p,
					e->epoch);
		}
		break;
	case SYS_STATE:
		on_state(n, &o, e->epoch);
		break;
	case SYS_DONE: {
		uint64_t attempt;
		if (count == 2 && cl__obj_u32(&f[0], &v) == 0 &&
			v < CL_PARTITIONS && cl__obj_u64(&f[1], &attempt) == 0 &&
			n->parts[v].mode == P_ARRIVING &&
			n->parts[v].epoch == e->epoch &&
			n->parts[v].attempt == attempt && !n->parts[v].done) {
			n->parts[v].done = true;
			atomic_store(&n->arrived[v], 1);
			try_release_locked(n, v);
		}
		break;
	}
	case SYS_SETTLED:
		if (cl__obj_u32(&o, &v) == 0 && v < CL_PARTITIONS)
			on_settled_locked(n, v, e->epoch);
		break;
	case SYS_RESUME: {
		uint64_t attempt;
		uint32_t done;
		if (count == 3 && cl__obj_u32(&f[0], &v) == 0 &&
			v < CL_PARTITIONS && cl__obj_u64(&f[1], &attempt) == 0 &&
			cl__obj_u32(&f[2], &done) == 0)
			on_resume_locked(n, from, v, e->epoch, attempt, done != 0);
		break;
	}
	case SYS_QUERY:
		if (cl__obj_u32(&o, &v) == 0 && v < CL_PARTITIONS)
			on_query_locked(n, from, v, e->epoch);
		break;
	case SYS_REFENCE:
		/* epoch <= ours here (a request from ahead was stashed) */
		send_fences_to_all_locked(n, from);
		break;
	case SYS_VOTE_REQ:
		on_vote_request_locked(n, from, e);
		break;
	case SYS_VOTE:
		on_vote_locked(n, from, e);
		break;
	case SYS_PROPOSE:
		on_propose_locked(n, from, e);
		break;
	case SYS_ACCEPTED:
		on_accepted_locked(n, from, e);
		break;
	default:
		break;
	}
done:
	msgpack_zone_destroy(&zone);
}

/* ---- receiving frames -------------------------------------------------- */

typedef struct receive_ctx {
	cl_node *n;
	cl_frame_header *h;
	const void *bytes; /* the frame, to hold when it arrived early */
	size_t length;
	bool decided;
	bool taken;        /* a sequenced frame taken in order */
	int slot; /* link slot of the source, or -1 */
} receive_ctx;

/* Stops the frame (not delivered, not acknowledged: it comes again). */
#define RECEIVE_REJECT 1

static void
stash_locked(cl_node *n, int slot, const cl_envelope *e, uint16_t from)
{
	if (!n->stashing[slot]) {
		n->stashing[slot] = true;
		send_nil_locked(n, from, SYS_MAP_PULL, 0);
	}
	if (n->stash[slot].length + e->size > CL_STASH_BYTES_MAX) {
		atomic_fetch_add(&n->messages_dropped, 1);
		return;
	}
	cl_envelope_encode(e, &n->stash[slot]);
}

/* A SWIM message, under the SWIM lock only: answered even while the
 * node lock is held for a map file or a handoff. */
static void
on_swim(cl_node *n, uint16_t from, const cl_envelope *e)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 4096))
		return;
	msgpack_object o;
	const msgpack_object *f = NULL;
	uint32_t count = 0;
	if (cl__unpack(e->payload, e->size, &zone, &o) == 0 &&
		o.type == MSGPACK_OBJECT_ARRAY &&
		cl__obj_array(&o, 0, &f, &count) == 0) {
		pthread_mutex_lock(&n->swim_lock);
		on_swim_locked(n, from, e, f, count);
		pthread_mutex_unlock(&n->swim_lock);
	}
	msgpack_zone_destroy(&zone);
}

static void
process_envelope(cl_node *n, uint16_t from, int slot, const cl_envelope *e)
{
	bool system = (e->flags & CL_ENVELOPE_F_SYSTEM) != 0;
	if (!atomic_load(&n->joined)) {
		if (system && e->type == SYS_JOIN_ACCEPT) {
			pthread_mutex_lock(&n->lock);
			on_system_locked(n, from, e);
			pthread_mutex_unlock(&n->lock);
		}
		return;
	}
	/* SWIM carries no epoch and is never stashed */
	if (system && (e->type == SYS_PING || e->type == SYS_ACK ||
		e->type == SYS_PING_REQ)) {
		on_swim(n, from, e);
		return;
	}
	/* Nor is a map: it is what a stashing link waits for (stashing it
	 * too would wait forever); adopting it replays the stash in order.
	 * Nor the consensus, which carries no epoch and decides the maps. */
	if (system && (e->type == SYS_MAP || e->type == SYS_MAP_PULL ||
		e->type == SYS_VOTE_REQ || e->type == SYS_VOTE ||
		e->type == SYS_PROPOSE || e->type == SYS_ACCEPTED)) {
		pthread_mutex_lock(&n->lock);
		on_system_locked(n, from, e);
		pthread_mutex_unlock(&n->lock);
		return;
	}
	/* a sender ahead of us routed by a map we do not have yet: routing
	 * it by our older map could bounce it behind later messages */
	bool ahead = e->epoch > atomic_load(&n->epoch);
	if (slot >= 0 && (ahead || n->stashing[slot])) {
		pthread_mutex_lock(&n->lock);
		if (e->epoch > n->map.epoch || n->stashing[slot]) {
			stash_locked(n, slot, e, from);
			pthread_mutex_unlock(&n->lock);
			return;
		}
		pthread_mutex_unlock(&n->lock);
	}
	if (system) {
		pthread_mutex_lock(&n->lock);
		on_system_locked(n, from, e);
		pthread_mutex_unlock(&n->lock);
		return;
	}
	int rc = route_envelope(n, e, from, false);
	if (rc == RT_ROUTE_LOCAL)
		deliver_local(n, e);
	else if (rc < 0)
		undeliverable(n, e, rc);
}

static void
replay_stashes_locked(cl_node *n)
{
	for (uint32_t s = 0; s < CL_NODES_MAX; s++) {
		if (!n->stashing[s])
			continue;
		n->stashing[s] = false;
		rt_buffer b = n->stash[s];
		memset(&n->stash[s], 0, sizeof n->stash[s]);
		uint16_t from = atomic_load(&n->links[s].peer);
		size_t offset = 0;
		bool again = false;
		while (offset < b.length) {
			cl_envelope e;
			size_t used;
			int rc = cl_envelope_decode(b.bytes + offset,
				b.length - offset, &e, &used);
			CL_ASSERT(rc == 0);
			offset += used;
			if (again || e.epoch > n->map.epoch) {
				again = true; /* still ahead: keep the order */
				stash_locked(n, (int)s, &e, from);
				continue;
			}
			pthread_mutex_unlock(&n->lock);
			process_envelope(n, from, (int)s, &e);
			pthread_mutex_lock(&n->lock);
		}
		rt_buffer_free(&b);
	}
}

static bool
receive_decide(receive_ctx *c)
{
	cl_node *n = c->n;
	cl_frame_header *h = c->h;
	c->decided = true;
	if (atomic_load_explicit(&n->blocked[h->source], memory_order_relaxed))
		return false; /* a test's network partition: never arrived */
	if (h->source == 0 || h->source == atomic_load(&n->self))
		return h->sequence == 0;
	c->slot = link_slot(n, h->source);
	if (c->slot < 0)
		return h->sequence == 0; /* unknown yet: only unsequenced */
	cl__link *l = &n->links[c->slot];
	pthread_mutex_lock(&l->lock);
	uint64_t life = l->peer_incarnation;
	cl__link_observe_locked(l, h->incarnation);
	/* a new life of the peer: what it owed a handoff died with it, and
	 * it leads nothing (a leader's term dies with its process) */
	if (life != 0 && life != l->peer_incarnation) {
		atomic_store(&n->asks_due, true);
		uint16_t was = h->source;
		atomic_compare_exchange_strong(&n->leader, &was, 0);
	}
	/* A frame naming another life of this node (or none: the sender has
	 * not heard of this one yet) belongs to the session with that life:
	 * its sequence and ack mean nothing here. Taking it would run again
	 * what the previous life already ran (found by flocksim: a request
	 * resent to a restarted node made two posts); the bare ack it gets
	 * back tells the sender this incarnation, and it starts over. */
	bool ours = h->peer_incarnation == n->incarnation;
	if (ours)
		cl__link_on_ack_locked(l, h->ack, node_now(n));
	else
		l->ack_due = true;
	bool take = h->sequence == 0 ||
		(ours && cl__link_accept_locked(l, h->sequence));
	c->taken = take && h->sequence != 0;
	/* early (a frame before it was lost): kept until the gap fills */
	if (!take && ours && h->sequence != 0)
		(void)cl__link_hold_locked(l, h->sequence, c->bytes, c->length);
	pthread_mutex_unlock(&l->lock);
	pthread_mutex_lock(&n->swim_lock);
	cl__swim_heard(&n->swim, h->source, node_now(n));
	pthread_mutex_unlock(&n->swim_lock);
	return take;
}

static int
receive_envelope(void *arg, const cl_envelope *e)
{
	receive_ctx *c = arg;
	if (!c->decided && !receive_decide(c))
		return RECEIVE_REJECT;
	process_envelope(c->n, c->h->source, c->slot, e);
	return 0;
}

/* Receives one frame; returns the link slot it was taken on in order,
 * or -1. */
static int
receive_frame(cl_node *n, const void *bytes, size_t length)
{
	cl_frame_header h = {0};
	receive_ctx c = {.n = n, .h = &h, .bytes = bytes, .length = length,
		.slot = -1};
	int rc = cl_frame_decode(bytes, length, &h, receive_envelope, &c);
	if (rc == 0 && !c.decided)
		receive_decide(&c); /* a bare ack */
	else if (rc != 0 && rc != RECEIVE_REJECT)
		node_log(n, RT_LOG_WARN, "bad frame from %u: %s", h.source,
			cl_strerror(rc));
	return rc == 0 && c.taken ? c.slot : -1;
}

static void
on_frame(void *arg, const void *bytes, size_t length)
{
	cl_node *n = arg;
	if (atomic_load(&n->stopping))
		return;
	int slot = receive_frame(n, bytes, length);
	/* the frames held behind it that are now in order, one by one */
	while (slot >= 0 && !atomic_load(&n->stopping)) {
		cl__link *l = &n->links[slot];
		rt_buffer next = {0};
		pthread_mutex_lock(&l->lock);
		bool held = cl__link_take_held_locked(l, &next);
		pthread_mutex_unlock(&l->lock);
		if (!held)
			break;
		slot = receive_frame(n, next.bytes, next.length);
		rt_buffer_free(&next);
	}
}

/* ---- the coordinator --------------------------------------------------- */

static bool
members_caught_up_locked(cl_node *n)
{
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		uint16_t id = n->map.nodes[i].id;
		if (id == atomic_load(&n->self)) {
			if (n->pending != 0)
				return false;
			continue;
		}
		pthread_mutex_lock(&n->swim_lock);
		cl__swim_member *m = cl__swim_find(&n->swim, id);
		bool behind = m != NULL && m->liveness != CL_LIVE_DOWN &&
			(m->epoch < n->map.epoch || m->pending != 0);
		pthread_mutex_unlock(&n->swim_lock);
		if (behind)
			return false;
	}
	return true;
}

/* No handoff runs here nor, as gossiped, at any member that is not down.
 * What a coordinator that has not made the current step itself (it just
 * took over, or the last step is done) waits for before it moves more:
 * moving a partition again while it is still arriving somewhere would
 * chain two handoffs of it. */
static bool
nothing_pending_locked(cl_node *n)
{
	if (n->pending != 0)
		return false;
	bool quiet = true;
	pthread_mutex_lock(&n->swim_lock);
	for (uint32_t i = 0; i < n->map.nodes_count && quiet; i++) {
		cl__swim_member *m = cl__swim_find(&n->swim, n->map.nodes[i].id);
		if (m != NULL && m->id != atomic_load(&n->self) &&
			m->liveness != CL_LIVE_DOWN && m->pending != 0)
			quiet = false;
	}
	pthread_mutex_unlock(&n->swim_lock);
	return quiet;
}

/* Drained nodes that own nothing go to standby. */
static bool
finish_drains_locked(cl_node *n, cl_map *next)
{
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(&n->map, counts);
	bool changed = false;
	*next = n->map;
	for (uint32_t i = 0; i < n->map.nodes_count; i++)
		if (n->map.nodes[i].state == CL_NODE_DRAINING &&
			counts[i] == 0) {
			next->nodes[i].state = CL_NODE_STANDBY;
			changed = true;
		}
	return changed;
}

static void
coordinate_locked(cl_node *n)
{
	/* The target is a pure function of the map: once nothing is left to
	 * move at this epoch and the last step is settled (step_moves 0: the
	 * pass below already ran finish_drains_locked, which changes the
	 * epoch when it does anything), nothing changes until the next
	 * epoch. Skipping the placement pass (~0.35 ms for 8,192
	 * partitions) every duty keeps an idle coordinator cheap. */
	if (n->moves_pending == 0 && n->target_epoch == n->map.epoch &&
		n->step_moves == 0)
		return;
	cl_map *target = malloc(2 * sizeof *target);
	CL_ASSERT(target != NULL);
	cl_map *next = target + 1;
	n->moves_pending = cl_map_target(&n->map, target);
	n->target_epoch = n->map.epoch;
	bool step_done = n->step_moves == 0
		? nothing_pending_locked(n)
		: n->step_settled >= n->step_moves ||
			members_caught_up_locked(n);
	if (!step_done)
		goto done;
	if (n->moves_pending == 0) {
		n->step_moves = 0;
		if (finish_drains_locked(n, next))
			(void)propose_locked(n, next);
		goto done;
	}
	uint32_t moved = cl_map_step(&n->map, target,
		n->cfg.rebalance_step_partitions, next);
	uint32_t left = n->moves_pending - moved;
	if (moved > 0 && propose_locked(n, next) == 0) {
		/* proposed: its handoffs start where it is committed */
		n->step_epoch = next->epoch;
		n->step_moves = moved;
		n->step_settled = 0;
		node_log(n, RT_LOG_INFO, "rebalance step epoch=%" PRIu64
			" moves=%u left=%u", next->epoch, moved, left);
	}
done:
	free(target);
}

/* Pushes the map again to members whose gossip shows an older epoch. */
static void
repush_locked(cl_node *n)
{
	rt_buffer body = {0};
	bool encoded = false;
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		uint16_t id = n->map.nodes[i].id;
		pthread_mutex_lock(&n->swim_lock);
		cl__swim_member *m = cl__swim_find(&n->swim, id);
		bool skip = id == atomic_load(&n->self) || m == NULL ||
			m->liveness == CL_LIVE_DOWN || m->epoch >= n->map.epoch;
		pthread_mutex_unlock(&n->swim_lock);
		if (skip)
			continue;
		if (!encoded && cl_map_encode(&n->map, &body) != 0)
			break;
		encoded = true;
		send_system(n, id, SYS_MAP, 0, &body);
	}
	rt_buffer_free(&body);
}

/* ---- ticking ----------------------------------------------------------- */

static void
lease_update_locked(cl_node *n, uint64_t now)
{
	uint32_t members = n->map.nodes_count;
	pthread_mutex_lock(&n->swim_lock);
	uint32_t heard = cl__swim_heard_within(&n->swim, now, n->cfg.lease_ms);
	pthread_mutex_unlock(&n->swim_lock);
	bool held = members <= 1 || heard * 2 > members;
	if (held != atomic_load(&n->lease_held))
		node_log(n, held ? RT_LOG_INFO : RT_LOG_WARN, "lease %s "
			"(heard %u of %u)", held ? "held" : "lost", heard,
			members);
	/* Without a lease nothing is served here, and what is active goes
	 * to sleep: the majority may hand these partitions to others. */
	if (!held && atomic_load(&n->lease_held))
		n->lease_pass_due = true;
	/* Recovery leaves asleep what it found while no lease was held
	 * (found by flocksim: after every restart the recovered actors
	 * slept, and the effects they owed, a deleted post leaving its
	 * author's list, waited for a client to touch them). */
	if (held && !atomic_load(&n->lease_held))
		atomic_store(&n->serving_due, true);
	atomic_store(&n->lease_held, held);
}

static void
duties_locked(cl_node *n, uint64_t now)
{
	if (!atomic_load(&n->joined)) {
		if (now >= n->next_join_ms) {
			send_join_locked(n);
			n->next_join_ms = now + CL_JOIN_RETRY_MS;
		}
		return;
	}
	cl__swim_actions out = {0};
	pthread_mutex_lock(&n->swim_lock);
	cl__swim_tick(&n->swim, now, &out);
	swim_apply_locked(n, &out);
	pthread_mutex_unlock(&n->swim_lock);
	if (atomic_exchange(&n->routes_stale, false))
		routes_refresh_locked(n);
	lease_update_locked(n, now);
	if (n->pending > 0)
		resume_round_locked(n, now);
	if (n->refence_due != 0) {
		for (uint32_t i = 0; i < n->map.nodes_count; i++)
			if (n->map.nodes[i].id != atomic_load(&n->self))
				send_nil_locked(n, n->map.nodes[i].id,
					SYS_REFENCE, n->refence_due);
		n->refence_due = 0;
	}
	if (n->pending > 0 || n->lease_pass_due)
		handoffs_run_locked(n);
	for (uint32_t p = 0; p < CL_PARTITIONS && n->pending > 0; p++)
		if (n->parts[p].mode == P_ARRIVING)
			try_release_locked(n, p);
	consensus_duty_locked(n, now);
	/* the coordinator changes the map once its term has a map committed,
	 * one proposal at a time, operator requests first */
	bool coordinator = n->leading && n->ready && !n->proposing;
	if (coordinator && atomic_load(&n->lease_held)) {
		if (n->admin_count > 0)
			admin_apply_locked(n);
		else if (now >= n->next_duty_ms)
			coordinate_locked(n);
		if (now >= n->next_repush_ms) {
			repush_locked(n);
			n->next_repush_ms = now + CL_MAP_REPUSH_MS;
		}
	}
}

/* A state sync finished since the arrivals last looked: those it covers
 * may be ready now. Looked at every tick, so a step's arrivals go out a
 * tick after their imports are durable, not at the next duty (which
 * made every step wait ~10 ms more, 20 at worst). */
static void
arrivals_synced_locked(cl_node *n)
{
	uint64_t done = atomic_load(&n->sync->done_gen);
	if (done == n->sync_seen)
		return;
	n->sync_seen = done;
	for (uint32_t p = 0; p < CL_PARTITIONS && n->pending > 0; p++)
		if (n->parts[p].mode == P_ARRIVING)
			try_release_locked(n, p);
}

void
cl_node_tick(cl_node *node, uint64_t now_ms)
{
	CL_ASSERT(node != NULL);
	cl_node *n = node;
	ship_job jobs[CL_SHIP_ROUND_PARTITIONS];
	uint32_t jobs_count = 0;
	pthread_mutex_lock(&n->lock);
	if (n->cfg.manual_tick)
		n->now_ms = now_ms;
	else
		now_ms = cl__monotonic_ms(); /* not from before the lock wait */
	atomic_store_explicit(&n->clock_ms, now_ms, memory_order_relaxed);
	if (now_ms >= n->next_duty_ms || n->cfg.manual_tick) {
		duties_locked(n, now_ms);
		if (now_ms >= n->next_duty_ms)
			n->next_duty_ms = now_ms + CL_DUTY_INTERVAL_MS;
	} else if (n->pending > 0 || n->lease_pass_due) {
		/* a handoff moves on every tick, not every duty interval */
		handoffs_run_locked(n);
	}
	if (atomic_exchange(&n->routes_stale, false))
		routes_refresh_locked(n);
	arrivals_synced_locked(n);
	if (n->pending > 0)
		jobs_count = ships_collect_locked(n, jobs,
			CL_SHIP_ROUND_PARTITIONS);
	sync_issue_locked(n);
	releases_flush_locked(n);
	const cl_state_ops *state_ops = n->cfg.state_ops;
	void *state_arg = n->cfg.state_arg;
	pthread_mutex_unlock(&n->lock);
	if (jobs_count > 0)
		ships_run(n, jobs, jobs_count);
	if (state_ops != NULL && state_ops->serving != NULL &&
		atomic_load(&n->lease_held) &&
		atomic_exchange(&n->serving_due, false))
		state_ops->serving(state_arg);
	for (uint32_t i = 0; i < CL_NODES_MAX; i++) {
		cl__link *l = &n->links[i];
		if (atomic_load(&l->peer) == 0)
			continue;
		pthread_mutex_lock(&l->lock);
		cl__link_flush_locked(l, now_ms);
		pthread_mutex_unlock(&l->lock);
	}
}

static void *
node_thread(void *arg)
{
	cl_node *n = arg;
	while (!atomic_load(&n->stopping)) {
		cl_node_tick(n, cl__monotonic_ms());
		cl__sleep_ms(CL_TICK_MS);
	}
	return NULL;
}

/* ---- the runtime adapter ----------------------------------------------- */

static int
rt_route_hook(void *arg, rt_message *m)
{
	cl_node *n = arg;
	cl_envelope e = {
		.epoch = atomic_load(&n->epoch),
		.from = m->from,
		.to = m->to,
		.correlation = m->correlation,
		.type = m->type,
		.flags = m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT),
		.payload = m->payload,
		.size = m->size,
	};
	int rc = route_envelope(n, &e, 0, true);
	if (rc == RT_ROUTE_LOCAL)
		return RT_ROUTE_LOCAL;
	if (rc == RT_ROUTE_TAKEN) {
		rt_message_free(n->rt, m); /* encoded: the copy travels */
		return RT_ROUTE_TAKEN;
	}
	return cl_to_rt_error(rc);
}

/* The runtime asks before it activates an actor: only in a partition
 * served here, while the lease is held. A partition about to leave is
 * already in hold mode, so nothing re-activates it behind the
 * passivation pass. */
static bool
rt_may_activate_hook(void *arg, rt_addr addr)
{
	cl_node *n = arg;
	if (addr.kind == RT_KIND_INBOX)
		return true;
	uint32_t p = cl_partition_of(addr.id);
	uint32_t word = atomic_load_explicit(&n->route[p], memory_order_acquire);
	bool here = ROUTE_MODE(word) == R_LOCAL ||
		    (ROUTE_MODE(word) == R_HOLD &&
			    atomic_load_explicit(&n->arrived[p],
				    memory_order_acquire));
	return here &&
	       atomic_load_explicit(&n->lease_held, memory_order_acquire);
}

static const rt_route_ops route_ops = {
	.route = rt_route_hook,
	.may_activate = rt_may_activate_hook,
};

/* ---- open and close ---------------------------------------------------- */

void
cl_node_config_default(cl_node_config *cfg)
{
	CL_ASSERT(cfg != NULL);
	memset(cfg, 0, sizeof *cfg);
	cfg->seed = 1;
	cfg->lease_ms = CL_LEASE_MS_DEFAULT;
	cfg->probe_interval_ms = 200;
	cfg->suspect_timeout_ms = 1200;
	cfg->rebalance_step_partitions = CL_REBALANCE_STEP_PARTITIONS_DEFAULT;
	cfg->bootstrap = true;
}

static int
node_load_or_bootstrap(cl_node *n)
{
	uint16_t self = 0;
	uint32_t count = 0;
	cl__handoff_record *records = malloc(CL_PARTITIONS * sizeof *records);
	if (records == NULL)
		return CL_ENOMEM;
	cl__vote_state vote = {.entry = n->entry};
	int rc = cl__map_file_load_vote(n->data_dir, &self, &n->map, records,
		&count, &vote);
	if (rc == 0 && self != 0 && cl_map_find(&n->map, self) != NULL) {
		/* the term, the vote in it and the map accepted above the
		 * committed one outlive the process (a vote or an acceptance
		 * forgotten could let two maps be committed at one epoch) */
		n->term = vote.term;
		n->voted_for = vote.voted_for;
		n->entry_valid = vote.has_entry;
		n->entry_term = vote.entry_term;
		atomic_store(&n->self, self);
		/* gossiped and put on frames: a member whose gossip shows an
		 * older epoch than the map is pushed the map again */
		atomic_store(&n->epoch, n->map.epoch);
		atomic_store(&n->joined, true);
		if (n->rt != NULL)
			rt_set_node_id(n->rt, self);
		restore_records_locked(n, records, count);
		free(records);
		return CL_OK;
	}
	free(records);
	if (rc != 0 && rc != CL_ENOTFOUND)
		return rc;
	if (rc == 0 && n->join[0] == '\0') {
		/* Removed from the cluster: bootstrapping a cluster of its own
		 * would serve every partition a second time. */
		node_log(n, RT_LOG_ERROR, "node %u is no member of the map in "
			"%s: join a member with --join", self, n->data_dir);
		return CL_ESTATE;
	}
	cl_map_init(&n->map);
	if (n->join[0] != '\0')
		return CL_OK; /* joins once the transport runs */
	if (!n->cfg.bootstrap)
		return CL_EINVAL;
	cl_map *target = malloc(sizeof *target);
	if (target == NULL)
		return CL_ENOMEM;
	cl_map_add_node(&n->map, n->listen, CL_NODE_ACTIVE, &self);
	cl_map_target(&n->map, target);
	n->map = *target;
	n->map.epoch = 1;
	free(target);
	rc = cl_map_save(n->data_dir, self, &n->map);
	if (rc != 0)
		return rc;
	atomic_store(&n->self, self);
	atomic_store(&n->epoch, n->map.epoch);
	atomic_store(&n->joined, true);
	if (n->rt != NULL)
		rt_set_node_id(n->rt, self);
	return CL_OK;
}

static void control_handler(void *arg, const void *request, size_t length,
	rt_buffer *reply);

/* ---- the transport shim (test-only network partitions) ----------------- */

static int
shim_listen(void *self, const char *address)
{
	cl_node *n = self;
	return n->inner_ops->listen(n->inner, address);
}

static int
shim_peer_set(void *self, uint16_t peer, const char *address)
{
	cl_node *n = self;
	return n->inner_ops->peer_set(n->inner, peer, address);
}

static int
shim_peer_drop(void *self, uint16_t peer)
{
	cl_node *n = self;
	return n->inner_ops->peer_drop(n->inner, peer);
}

/* A frame to a blocked peer is lost on the way, as in a partition: the
 * link resends it once the block is lifted. */
static int
shim_send(void *self, uint16_t peer, const void *bytes, size_t length)
{
	cl_node *n = self;
	if (atomic_load_explicit(&n->blocked[peer], memory_order_relaxed))
		return CL_OK;
	return n->inner_ops->send(n->inner, peer, bytes, length);
}

static void
shim_set_receive(void *self, cl_frame_receive_callback cb, void *arg)
{
	cl_node *n = self;
	n->inner_ops->set_receive(n->inner, cb, arg);
}

static void
shim_destroy(void *self)
{
	cl_node *n = self;
	n->inner_ops->destroy(n->inner);
}

static const cl_transport_ops shim_ops = {
	.listen = shim_listen,
	.peer_set = shim_peer_set,
	.peer_drop = shim_peer_drop,
	.send = shim_send,
	.set_receive = shim_set_receive,
	.destroy = shim_destroy,
};

static int
node_start_io(cl_node *n)
{
	int rc = n->tops->listen(n->transport, n->listen);
	if (rc != 0)
		return rc;
	n->tops->set_receive(n->transport, on_frame, n);
	pthread_mutex_lock(&n->lock);
	if (atomic_load(&n->joined)) {
		pthread_mutex_lock(&n->swim_lock);
		cl__swim_init(&n->swim, atomic_load(&n->self), n->incarnation,
			n->cfg.seed, n->cfg.probe_interval_ms,
			n->cfg.suspect_timeout_ms, node_now(n));
		pthread_mutex_unlock(&n->swim_lock);
		links_sync_locked(n);
		/* A node coming back has heard from nobody yet: it holds no
		 * lease until a majority answers. Otherwise one that was cut
		 * off, or removed while it was down, would serve its old
		 * partitions for a lease on its own say-so. */
		pthread_mutex_lock(&n->swim_lock);
		for (uint32_t i = 0; i < n->swim.count; i++)
			if (n->swim.members[i].id != atomic_load(&n->self))
				n->swim.members[i].last_heard_ms = 0;
		pthread_mutex_unlock(&n->swim_lock);
		routes_refresh_locked(n);
		lease_update_locked(n, node_now(n));
		/* the fences this node sent when it adopted its epoch may have
		 * died with its previous life */
		send_fences_to_all_locked(n, 0);
		/* a lone voter leads at once; others ask (or wait their rank) */
		consensus_duty_locked(n, node_now(n));
	} else {
		pthread_mutex_lock(&n->bootstrap.lock);
		cl__link_bind_locked(&n->bootstrap, 0, n->join, node_now(n));
		pthread_mutex_unlock(&n->bootstrap.lock);
	}
	pthread_mutex_unlock(&n->lock);
	if (n->rt != NULL)
		rt_set_route(n->rt, &route_ops, n);
	if (n->cfg.transport_ops == NULL || n->cfg.control != NULL) {
		if (n->cfg.control != NULL)
			snprintf(n->control, sizeof n->control, "%s",
				n->cfg.control);
		else if (cl__control_address(n->listen, n->control,
				 sizeof n->control) != 0)
			return CL_EINVAL;
		rc = cl__control_server_start(n->control, control_handler, n,
			&n->control_server);
		if (rc != 0)
			return rc;
	}
	if (!n->cfg.manual_tick) {
		if (pthread_create(&n->thread, NULL, node_thread, n) != 0)
			return CL_ENOMEM;
		n->thread_started = true;
	}
	return CL_OK;
}

static int
node_copy_config(cl_node *n, const cl_node_config *cfg)
{
	n->cfg = *cfg;
	if (cfg->listen == NULL || cfg->data_dir == NULL ||
		strlen(cfg->listen) >= sizeof n->listen ||
		strlen(cfg->data_dir) >= sizeof n->data_dir ||
		(cfg->join != NULL && strlen(cfg->join) >= sizeof n->join))
		return CL_EINVAL;
	snprintf(n->listen, sizeof n->listen, "%s", cfg->listen);
	snprintf(n->data_dir, sizeof n->data_dir, "%s", cfg->data_dir);
	if (cfg->join != NULL)
		snprintf(n->join, sizeof n->join, "%s", cfg->join);
	n->cfg.listen = n->listen;
	n->cfg.data_dir = n->data_dir;
	n->cfg.join = n->join[0] ? n->join : NULL;
	if (n->cfg.lease_ms == 0)
		n->cfg.lease_ms = CL_LEASE_MS_DEFAULT;
	if (n->cfg.probe_interval_ms == 0)
		n->cfg.probe_interval_ms = 200;
	if (n->cfg.suspect_timeout_ms == 0)
		n->cfg.suspect_timeout_ms = 1200;
	if (n->cfg.rebalance_step_partitions == 0)
		n->cfg.rebalance_step_partitions =
			CL_REBALANCE_STEP_PARTITIONS_DEFAULT;
	return CL_OK;
}

int
cl_node_open(const cl_node_config *cfg, rt_runtime *rt, cl_node **out)
{
	CL_ASSERT(cfg != NULL);
	CL_ASSERT(out != NULL);
	cl_node *n = calloc(1, sizeof *n);
	if (n == NULL)
		return CL_ENOMEM;
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->hold_lock, NULL);
	pthread_mutex_init(&n->swim_lock, NULL);
	n->rt = rt;
	n->sync = calloc(1, sizeof *n->sync);
	n->entry = malloc(sizeof *n->entry);
	if (n->sync == NULL || n->entry == NULL) {
		free(n->sync);
		free(n->entry);
		free(n);
		return CL_ENOMEM;
	}
	atomic_store(&n->sync->refs, 1);
	int rc = node_copy_config(n, cfg);
	if (rc != 0)
		goto fail;
	n->inner_ops = cfg->transport_ops;
	n->inner = cfg->transport;
	if (n->inner_ops == NULL) {
		rc = cl_transport_nng_create(&n->inner_ops, &n->inner);
		if (rc != 0)
			goto fail;
	}
	n->tops = &shim_ops;
	n->transport = n;
	n->incarnation = cfg->manual_tick ? (cfg->seed | 1u) : cl__wall_ms();
	atomic_store(&n->clock_ms, cl__monotonic_ms());
	for (uint32_t i = 0; i < CL_NODES_MAX && rc == 0; i++)
		rc = cl__link_init(&n->links[i], n->tops, n->transport, 0,
			n->incarnation);
	if (rc == 0)
		rc = cl__link_init(&n->bootstrap, n->tops, n->transport, 0,
			n->incarnation);
	if (rc == 0)
		rc = node_load_or_bootstrap(n);
	for (uint32_t i = 0; rc == 0 && i < CL_NODES_MAX; i++)
		n->links[i].self = atomic_load(&n->self);
	if (rc == 0)
		rc = node_start_io(n);
	if (rc != 0)
		goto fail;
	*out = n;
	return CL_OK;
fail:
	cl_node_close(n);
	return rc;
}

void
cl_node_close(cl_node *node)
{
	if (node == NULL)
		return;
	cl_node *n = node;
	atomic_store(&n->stopping, true);
	if (n->thread_started)
		pthread_join(n->thread, NULL);
	/* Runtime passes point at the node until their done runs; rt_stop
	 * ends them all, so a node closed after rt_stop never waits. */
	for (uint32_t k = 0; k < CL_CLOSE_PASSES_WAIT_MS &&
		atomic_load(&n->passes) > 0; k++)
		cl__sleep_ms(1);
	CL_ASSERT(atomic_load(&n->passes) == 0);
	cl__control_server_stop(n->control_server);
	if (n->rt != NULL)
		rt_set_route(n->rt, NULL, NULL);
	if (n->inner_ops != NULL && n->inner != NULL)
		n->inner_ops->destroy(n->inner);
	for (uint32_t i = 0; i < CL_NODES_MAX; i++) {
		cl__link_destroy(&n->links[i]);
		rt_buffer_free(&n->stash[i]);
	}
	cl__link_destroy(&n->bootstrap);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (n->parts[p].held != NULL) {
			rt_buffer_free(&n->parts[p].held->bytes);
			free(n->parts[p].held);
		}
	pthread_mutex_destroy(&n->swim_lock);
	pthread_mutex_destroy(&n->hold_lock);
	pthread_mutex_destroy(&n->lock);
	if (atomic_fetch_sub(&n->sync->refs, 1) == 1)
		free(n->sync);
	free(n->entry);
	free(n);
}

void
cl_node_set_state(cl_node *node, const cl_state_ops *ops, void *arg)
{
	CL_ASSERT(node != NULL);
	pthread_mutex_lock(&node->lock);
	node->cfg.state_ops = ops;
	node->cfg.state_arg = arg;
	node->cfg.state_deferred = false;
	/* what was recovered meanwhile may be waiting for a lease held
	 * already */
	atomic_store(&node->serving_due, true);
	pthread_mutex_unlock(&node->lock);
}

int
cl_node_wait_joined(cl_node *node, uint64_t timeout_ms)
{
	CL_ASSERT(node != NULL);
	uint64_t deadline = cl__monotonic_ms() + timeout_ms;
	while (!atomic_load(&node->joined)) {
		if (cl__monotonic_ms() >= deadline)
			return CL_ETIMEDOUT;
		cl__sleep_ms(5);
	}
	return CL_OK;
}

uint16_t
cl_node_id(const cl_node *node)
{
	CL_ASSERT(node != NULL);
	return atomic_load(&((cl_node *)node)->self);
}

void
cl_node_map(cl_node *node, cl_map *out)
{
	CL_ASSERT(node != NULL);
	pthread_mutex_lock(&node->lock);
	*out = node->map;
	pthread_mutex_unlock(&node->lock);
}

/* ---- operator actions -------------------------------------------------- */

/* Removing: a live node must be drained first (or forced); a down one
 * only once it surely stopped serving (down for 2 x lease). Its
 * partitions are reassigned in the same epoch: nothing can be shipped
 * from a node that is gone. */
static int
admin_remove_locked(cl_node *n, const cl__control_request *r, cl_map *next,
	char *message, size_t size)
{
	const cl_map_node *m = cl_map_find(&n->map, r->node);
	if (m == NULL) {
		snprintf(message, size, "no node %u", r->node);
		return CL_ENOTFOUND;
	}
	if (r->node == atomic_load(&n->self)) {
		snprintf(message, size, "node %u is the coordinator; drain it, "
			"stop it, and remove it from another node", r->node);
		return CL_ESTATE;
	}
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(&n->map, counts);
	uint32_t owned = counts[cl__map_index(&n->map, r->node)];
	pthread_mutex_lock(&n->swim_lock);
	cl__swim_member *s = cl__swim_find(&n->swim, r->node);
	bool down = s != NULL && s->liveness == CL_LIVE_DOWN;
	uint64_t silent = s == NULL ? 0 :
		cl__elapsed_ms(node_now(n), s->last_heard_ms);
	pthread_mutex_unlock(&n->swim_lock);
	if (!r->force && owned > 0 && !down) {
		snprintf(message, size, "node %u is alive and owns %u "
			"partitions: drain it first (or --force)", r->node, owned);
		return CL_ESTATE;
	}
	if (!r->force && owned > 0 && silent < 2 * n->cfg.lease_ms) {
		snprintf(message, size, "node %u went silent %" PRIu64 " ms "
			"ago; its lease may still run: retry after %" PRIu64
			" ms", r->node, silent, 2 * n->cfg.lease_ms - silent);
		return CL_ESTATE;
	}
	cl_map_remove_node(next, r->node);
	cl_map *target = malloc(sizeof *target);
	CL_ASSERT(target != NULL);
	cl_map_target(next, target);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (next->owner[p] == 0)
			next->owner[p] = target->owner[p];
	free(target);
	return CL_OK;
}

/* Writes r's change into next (a copy of the committed map); checks it
 * against that map. */
static int
admin_change_locked(cl_node *n, const cl__control_request *r, cl_map *next,
	char *message, size_t size)
{
	int rc = CL_OK;
	if (r->op == CL__CONTROL_ADD) {
		const cl_map_node *m = cl_map_find_address(&n->map, r->address);
		if (m == NULL) {
			snprintf(message, size, "no member at %s: start it with "
				"flockd --join <member>", r->address);
			rc = CL_ENOTFOUND;
		} else {
			rc = cl_map_set_state(next, m->id, CL_NODE_ACTIVE);
		}
	} else if (r->op == CL__CONTROL_DRAIN) {
		rc = cl_map_set_state(next, r->node, CL_NODE_DRAINING);
		if (rc != 0)
			snprintf(message, size, "no node %u", r->node);
	} else if (r->op == CL__CONTROL_REMOVE) {
		rc = admin_remove_locked(n, r, next, message, size);
	} else {
		snprintf(message, size, "bad request");
		rc = CL_EINVAL;
	}
	return rc;
}

/* An operator request at the coordinator: checked against the committed
 * map and queued for the next proposals (*seq: its number; 0 when there
 * is nothing to commit, a rebalance). */
static int
admin_locked(cl_node *n, const cl__control_request *r, char *message,
	size_t size, uint64_t *seq)
{
	*seq = 0;
	if (!n->leading) {
		uint16_t c = coordinator_locked(n);
		if (c != 0)
			snprintf(message, size, "node %u is the coordinator", c);
		else
			snprintf(message, size, "no coordinator elected yet; "
				"retry");
		return CL_ENOTLEADER;
	}
	if (!atomic_load(&n->lease_held)) {
		snprintf(message, size, "no lease: cannot reach a majority");
		return CL_EUNAVAILABLE;
	}
	n->next_duty_ms = 0; /* start the rebalance at once */
	if (r->op == CL__CONTROL_REBALANCE) {
		snprintf(message, size, "epoch %" PRIu64, n->map.epoch);
		return CL_OK;
	}
	cl_map *next = malloc(sizeof *next);
	CL_ASSERT(next != NULL);
	*next = n->map;
	int rc = admin_change_locked(n, r, next, message, size);
	free(next);
	if (rc != 0)
		return rc;
	if (n->admin_count == CL_ADMIN_QUEUE_MAX) {
		snprintf(message, size, "%u map changes wait to be committed; "
			"retry", n->admin_count);
		return CL_EBUSY;
	}
	n->admin_seq++;
	n->admin_queue[n->admin_count] = *r;
	n->admin_queue_seq[n->admin_count] = n->admin_seq;
	n->admin_count++;
	*seq = n->admin_seq;
	snprintf(message, size, "queued after epoch %" PRIu64, n->map.epoch);
	return CL_OK;
}

/* The coordinator's duty: proposes the first queued request (checked
 * again: the map may have changed since); one that changes nothing, or
 * no longer applies, ends here. */
static void
admin_apply_locked(cl_node *n)
{
	CL_ASSERT(n->admin_count > 0);
	cl__control_request r = n->admin_queue[0];
	uint64_t seq = n->admin_queue_seq[0];
	n->admin_count--;
	memmove(n->admin_queue, n->admin_queue + 1,
		n->admin_count * sizeof *n->admin_queue);
	memmove(n->admin_queue_seq, n->admin_queue_seq + 1,
		n->admin_count * sizeof *n->admin_queue_seq);
	cl_map *next = malloc(sizeof *next);
	CL_ASSERT(next != NULL);
	*next = n->map;
	char message[256] = "";
	int rc = admin_change_locked(n, &r, next, message, sizeof message);
	if (rc == 0 && memcmp(next, &n->map, sizeof *next) != 0) {
		rc = propose_locked(n, next);
		if (rc == 0 && n->proposing) {
			n->admin_proposed = seq;
			free(next);
			return;
		}
	} else if (rc != 0) {
		node_log(n, RT_LOG_WARN, "operator request dropped: %s",
			message);
	}
	n->admin_results[seq % CL_ADMIN_QUEUE_MAX] = rc;
	if (n->admin_done < seq)
		n->admin_done = seq;
	free(next);
}

/* Runs r at this node (the coordinator) and, with a cluster thread,
 * waits until its map is committed. With manual ticks (tests, the
 * simulator) it returns once the request is queued: the caller's ticks
 * commit it. */
static int
admin(cl_node *n, const cl__control_request *r, char *message, size_t size)
{
	uint64_t seq;
	pthread_mutex_lock(&n->lock);
	int rc = admin_locked(n, r, message, size, &seq);
	pthread_mutex_unlock(&n->lock);
	if (rc != 0 || seq == 0 || n->cfg.manual_tick)
		return rc;
	uint64_t deadline = cl__monotonic_ms() + CL_ADMIN_COMMIT_WAIT_MS;
	for (;;) {
		pthread_mutex_lock(&n->lock);
		bool done = n->admin_done >= seq;
		if (done) {
			rc = n->admin_results[seq % CL_ADMIN_QUEUE_MAX];
			if (rc == 0)
				snprintf(message, size, "epoch %" PRIu64,
					n->map.epoch);
			else
				snprintf(message, size, "not committed: %s (see "
					"the coordinator's log; status shows the "
					"map)", cl_strerror(rc));
		}
		pthread_mutex_unlock(&n->lock);
		if (done)
			return rc;
		if (cl__monotonic_ms() >= deadline) {
			snprintf(message, size, "not committed by a majority "
				"within %u ms; status shows whether it is later",
				CL_ADMIN_COMMIT_WAIT_MS);
			return CL_ETIMEDOUT;
		}
		cl__sleep_ms(1);
	}
}

int
cl_node_admin_add(cl_node *node, const char *address)
{
	CL_ASSERT(node != NULL);
	CL_ASSERT(address != NULL);
	cl__control_request r = {.op = CL__CONTROL_ADD};
	snprintf(r.address, sizeof r.address, "%s", address);
	char message[256];
	return admin(node, &r, message, sizeof message);
}

int
cl_node_admin_drain(cl_node *node, uint16_t id)
{
	cl__control_request r = {.op = CL__CONTROL_DRAIN, .node = id};
	char message[256];
	return admin(node, &r, message, sizeof message);
}

int
cl_node_admin_remove(cl_node *node, uint16_t id, bool force)
{
	cl__control_request r = {.op = CL__CONTROL_REMOVE, .node = id,
		.force = force};
	char message[256];
	return admin(node, &r, message, sizeof message);
}

int
cl_node_admin_rebalance(cl_node *node)
{
	cl__control_request r = {.op = CL__CONTROL_REBALANCE};
	char message[256];
	return admin(node, &r, message, sizeof message);
}

static void
status_locked(cl_node *n, cl_status *out)
{
	memset(out, 0, sizeof *out);
	out->self = atomic_load(&n->self);
	out->coordinator = coordinator_locked(n);
	out->epoch = n->map.epoch;
	out->lease_held = atomic_load(&n->lease_held);
	out->moves_in_flight = n->pending;
	if (n->moves_pending == UINT32_MAX || out->coordinator != out->self) {
		cl_map *target = malloc(sizeof *target);
		CL_ASSERT(target != NULL);
		n->moves_pending = cl_map_target(&n->map, target);
		free(target);
	}
	out->moves_pending = n->moves_pending;
	/* at the coordinator, map changes not committed yet count too */
	if (n->leading)
		out->moves_pending += n->admin_count +
			(n->proposing || !n->ready ? 1u : 0u);
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(&n->map, counts);
	pthread_mutex_lock(&n->swim_lock);
	refresh_self_locked(n);
	for (uint32_t i = 0; i < n->map.nodes_count; i++) {
		cl_member_status *m = &out->members[out->members_count++];
		const cl_map_node *x = &n->map.nodes[i];
		m->id = x->id;
		m->state = x->state;
		snprintf(m->address, sizeof m->address, "%s", x->address);
		m->partitions = counts[i];
		cl__swim_member *s = cl__swim_find(&n->swim, x->id);
		if (s != NULL) {
			m->liveness = s->liveness;
			m->actors_active = s->actors_active;
			m->messages_in = s->messages_in;
			m->incarnation = s->incarnation;
		}
	}
	pthread_mutex_unlock(&n->swim_lock);
}

void
cl_node_status(cl_node *node, cl_status *out)
{
	CL_ASSERT(node != NULL);
	CL_ASSERT(out != NULL);
	pthread_mutex_lock(&node->lock);
	status_locked(node, out);
	pthread_mutex_unlock(&node->lock);
}

/* Test-only: cuts this node off from one member, both directions. */
static int
block_locked(cl_node *n, const cl__control_request *r, char *message,
	size_t size)
{
	const char *test = getenv("FLOCK_TEST");
	if (test == NULL || strcmp(test, "1") != 0) {
		snprintf(message, size, "block is for tests: start the node "
			"with FLOCK_TEST=1");
		return CL_ESTATE;
	}
	const cl_map_node *m = cl_map_find_address(&n->map, r->address);
	if (m == NULL) {
		snprintf(message, size, "no member at %s", r->address);
		return CL_ENOTFOUND;
	}
	atomic_store(&n->blocked[m->id], r->force ? 1 : 0);
	snprintf(message, size, "node %u %s", m->id,
		r->force ? "blocked" : "unblocked");
	node_log(n, RT_LOG_WARN, "test: frames to and from node %u %s", m->id,
		r->force ? "dropped" : "pass again");
	return CL_OK;
}

static void
control_handler(void *arg, const void *request, size_t length,
	rt_buffer *reply)
{
	cl_node *n = arg;
	cl__control_request r;
	char message[256] = "";
	int decoded = cl__control_request_decode(request, length, &r);
	int rc = decoded;
	cl_status *st = calloc(1, sizeof *st);
	cl_map *map = malloc(sizeof *map);
	CL_ASSERT(st != NULL);
	CL_ASSERT(map != NULL);
	/* an admin request waits for its commit without the node lock */
	if (rc == 0 && r.op != CL__CONTROL_BLOCK && r.op != CL__CONTROL_STATUS &&
		r.op != CL__CONTROL_RING)
		rc = admin(n, &r, message, sizeof message);
	pthread_mutex_lock(&n->lock);
	if (rc == 0 && r.op == CL__CONTROL_BLOCK)
		rc = block_locked(n, &r, message, sizeof message);
	else if (decoded != 0)
		snprintf(message, sizeof message, "bad request");
	status_locked(n, st);
	*map = n->map;
	pthread_mutex_unlock(&n->lock);
	bool with_map = rc == 0 && r.op == CL__CONTROL_RING;
	cl__control_reply_encode(rc, message, st, with_map ? map : NULL, reply);
	free(map);
	free(st);
}
