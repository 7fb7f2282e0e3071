/*
 * runtime.h — flock's actor runtime: the one public header of runtime/.
 *
 * Role: actors addressed by (kind, 64-bit id), each with a bounded
 * lock-free MPSC mailbox, run by N worker threads with per-worker run
 * queues and work stealing, or by one thread in deterministic mode where
 * the order of runnable actors is drawn from a seeded PRNG and time is
 * virtual. Virtual actors: a send to an inactive address activates it
 * (through the store hook that persistence fills); idle actors are
 * passivated after a configurable time or under a memory budget.
 *
 * Invariants:
 *   - an actor never runs on two threads at once;
 *   - messages from one sender to one receiver arrive in send order;
 *   - a turn handles at most RT_TURN_MESSAGES_MAX messages, then yields;
 *   - a worker runs at most RT_LIFO_STREAK_MAX turns from its LIFO (the
 *     actors its own turns made runnable) between two turns from its
 *     FIFO queue while that queue holds an actor;
 *   - an ask gets exactly one of reply or timeout;
 *   - there is no global state: several runtimes may live in one process
 *     (the simulator runs one per simulated node).
 *
 * What it deliberately does not do: it knows no disk and no network.
 * Persistence plugs in through rt_store_ops, the cluster through
 * rt_route_ops. Actor code never calls time(), rand(), a socket, a thread
 * or a file: it asks the runtime (rt_now_ms, rt_random_u64, timers).
 *
 * Errors: functions return 0 or a negative RT_E... code; rt_strerror
 * names them. Codes are stable.
 */
#ifndef FLOCK_RUNTIME_H
#define FLOCK_RUNTIME_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------ */

enum {
	RT_OK = 0,
	RT_ENOMEM = -1,       /* a pool or budget is exhausted: backpressure */
	RT_EMAILBOX_FULL = -2, /* the receiver's mailbox is at its kind's limit */
	RT_ETIMEDOUT = -3,    /* an ask's deadline passed before its reply */
	RT_ENOTFOUND = -4,    /* no such actor kind, or no stored state */
	RT_EINVAL = -5,       /* a caller broke a documented precondition */
	RT_ESTOPPED = -6,     /* the runtime is stopping or stopped */
	RT_EUNAVAILABLE = -7, /* the owner of the address cannot be reached */
	RT_EIO = -8,          /* storage failed (from the store hook) */
	RT_ECORRUPT = -9,     /* stored bytes failed their checks */
	RT_EEXIST = -10,      /* already registered / already exists */
	RT_ETOOBIG = -11,     /* a payload exceeds RT_MESSAGE_BYTES_MAX */
};

/* Returns a static string naming code; never NULL. */
const char *rt_strerror(int code);

/* ---- limits ------------------------------------------------------------ */

/* Kinds are small integers indexing a table; 64 is far above the handful
 * of actor kinds the domain has and keeps the table in one cache line
 * of pointers per 8 kinds. */
#define RT_KINDS_MAX 64
/* A turn drains at most this many messages before the actor yields its
 * worker, so one busy actor cannot starve the others. */
#define RT_TURN_MESSAGES_MAX 64
/* A worker runs the actors its own turns made runnable (its LIFO: a
 * message chain, the children a turn just spawned) before its FIFO
 * queue, at most this many turns in a row; then the FIFO's head gets a
 * turn. So an actor waiting in a worker's FIFO waits for at most this
 * many turns of a chain plus the actors ahead of it (each turn itself
 * bounded by RT_TURN_MESSAGES_MAX). 512 lets a tree of actors spawned
 * depth first (a parent's children, theirs) finish subtrees while their
 * lines are in cache; 32 broke off every 33 turns to start the FIFO
 * head's subtree cold. */
#define RT_LIFO_STREAK_MAX 512
/* Largest payload one message may carry; bigger data goes by reference
 * (e.g. a media hash), never through a mailbox. 1 MiB bounds one copy. */
#define RT_MESSAGE_BYTES_MAX (1u << 20)
/* Default per-kind mailbox bound when the kind sets none. */
#define RT_MAILBOX_MESSAGES_DEFAULT 4096u
/* Worker threads at most; the machine has 2 cores, 64 leaves headroom. */
#define RT_WORKERS_MAX 64

/* ---- addresses and messages -------------------------------------------- */

/* Kind 0 is reserved: "no actor" (an external sender, or none). */
#define RT_KIND_NONE 0u
/* The last kind is reserved for inboxes (external threads' endpoints). */
#define RT_KIND_INBOX (RT_KINDS_MAX - 1u)
/* An inbox id carries its node's id (rt_set_node_id) in its top 16 bits:
 * id = node_id << RT_INBOX_NODE_SHIFT | per-runtime sequence. Node 0
 * means "this node" (a runtime that was never given a node id). */
#define RT_INBOX_NODE_SHIFT 48u

typedef struct rt_addr {
	uint32_t kind;
	uint32_t reserved; /* zero; keeps the struct 16 bytes with no holes */
	uint64_t id;
} rt_addr;

static inline rt_addr
rt_addr_make(uint32_t kind, uint64_t id)
{
	rt_addr a = {kind, 0, id};
	return a;
}

static inline bool
rt_addr_equal(rt_addr a, rt_addr b)
{
	return a.kind == b.kind && a.id == b.id;
}

/*
 * A message: a fixed header and an inline payload of `size` bytes.
 * Payloads are position-independent bytes (no pointers), so any message
 * can be copied to another node or the simulator's network unchanged.
 * The runtime owns message memory; see rt_message_alloc.
 */
typedef struct rt_message rt_message;
struct rt_message {
	rt_message *next;     /* intrusive mailbox link; runtime-private */
	rt_addr from;         /* sender, or kind RT_KIND_NONE */
	rt_addr to;           /* receiver */
	uint64_t correlation; /* ask id; 0 for a plain send */
	uint32_t type;        /* meaning is the receiving kind's */
	uint32_t size;        /* payload bytes */
	uint32_t flags;       /* RT_MESSAGE_F_* */
	uint32_t capacity;    /* payload bytes allocated; runtime-private */
	_Alignas(16) unsigned char payload[];
};
/* One cache line of header: a message with up to 16 payload bytes is an
 * 80-byte object, one with none 64 (each message is fresh or recycled
 * memory a sender writes and a receiver reads). */
_Static_assert(offsetof(rt_message, payload) == 64, "message header is a line");

/* The message is a reply to an ask (correlation names the ask). */
#define RT_MESSAGE_F_REPLY 1u
/* The message is an ask's timeout notice (size 0, type RT_TYPE_TIMEOUT). */
#define RT_MESSAGE_F_TIMEOUT 2u

/* Types at and above this are the runtime's own. */
#define RT_TYPE_RUNTIME_BASE 0xffff0000u
#define RT_TYPE_TIMEOUT (RT_TYPE_RUNTIME_BASE + 1) /* ask timed out */
#define RT_TYPE_TIMER (RT_TYPE_RUNTIME_BASE + 2)   /* timer fired */
#define RT_TYPE_UNDELIVERABLE (RT_TYPE_RUNTIME_BASE + 3) /* reply to an ask whose target failed; payload int32 code */

/* ---- the runtime ------------------------------------------------------- */

typedef struct rt_runtime rt_runtime;
typedef struct rt_actor rt_actor;
typedef struct rt_inbox rt_inbox;

typedef enum rt_log_level {
	RT_LOG_DEBUG = 0,
	RT_LOG_INFO = 1,
	RT_LOG_WARN = 2,
	RT_LOG_ERROR = 3,
} rt_log_level;

typedef struct rt_config {
	uint32_t workers;            /* 0: number of online cores */
	bool deterministic;          /* one thread, seeded order, virtual time */
	uint64_t seed;               /* PRNG seed (both modes) */
	uint64_t start_time_ms;      /* deterministic: virtual epoch ms */
	uint64_t passivate_idle_ms;  /* 0: never passivate for idleness;
				      * at most 2^23 ms (2.3 h) is honoured */
	uint64_t memory_budget_bytes; /* 0: unlimited; else LRU passivation */
	rt_log_level log_level;
	const char *node_name;       /* appears in log lines; may be NULL */
} rt_config;

/* Fills cfg with defaults: workers 0 (cores), real mode, seed 1,
 * passivate after 10 minutes idle, no budget, INFO logging. */
void rt_config_default(rt_config *cfg);

/* Creates a runtime; *out owned by the caller, release with rt_destroy.
 * Workers do not start until rt_start. */
int rt_create(const rt_config *cfg, rt_runtime **out);

/* Real mode: starts the worker threads. Deterministic mode: no-op. */
int rt_start(rt_runtime *rt);

/* Passivates every active actor (saving through the store hook), stops
 * the workers and timers. Further sends return RT_ESTOPPED. Messages
 * already queued are handled first (their own sends fail with
 * RT_ESTOPPED). Call from a thread that is no worker, with no other
 * thread still sending; idempotent. */
int rt_stop(rt_runtime *rt);

/* Frees everything. rt_stop first if started. */
void rt_destroy(rt_runtime *rt);

/* Asks the OS to run the calling thread in short time slices, so that
 * its wake-ups preempt busier threads instead of waiting out their
 * slice: for threads that sleep until a message needs them (the
 * runtime's workers and timer thread call it themselves; the journal's
 * writer too). Same CPU share and policy; best effort (ignored where the
 * kernel does not support it). Any thread, on itself. */
void rt_thread_short_slice(void);

/* Names this runtime's node (1..65535) so the inboxes it makes from now
 * on carry it (RT_INBOX_NODE_SHIFT) and other nodes route replies and
 * events to them. Inboxes made before keep node 0 ("this node"). Any
 * thread, before the inboxes that must be reachable from other nodes
 * are made. RT_EINVAL for 0, RT_EEXIST if another id was set. */
int rt_set_node_id(rt_runtime *rt, uint16_t node_id);
/* The id set by rt_set_node_id, or 0. */
uint16_t rt_node_id(const rt_runtime *rt);

/* ---- actor kinds ------------------------------------------------------- */

/*
 * An actor kind's ops table. All callbacks run in the actor's context
 * (one thread at a time per actor). `state` points to state_size bytes,
 * 8-byte aligned (enough for any integer, double or pointer; the state
 * lives right after a 24-byte actor header so idle actors stay small),
 * zeroed before on_activate/decode_state.
 */
typedef struct rt_buffer {
	unsigned char *bytes;
	size_t length;
	size_t capacity;
} rt_buffer;

typedef struct rt_actor_ops {
	const char *name;
	size_t state_size;
	uint32_t mailbox_messages_max; /* 0: RT_MAILBOX_MESSAGES_DEFAULT */
	/* After state is loaded (decoded + replayed) or, for a fresh actor,
	 * zeroed. `fresh` is true when the store had nothing. May send. */
	int (*on_activate)(rt_actor *self, void *state, bool fresh);
	/* One message; borrowed until return. */
	void (*on_message)(rt_actor *self, void *state, const rt_message *m);
	/* Before the state is saved and freed. Must not send asks. */
	void (*on_passivate)(rt_actor *self, void *state);
	/* Appends the state's stored form to out (grow with rt_buffer_*). */
	int (*encode_state)(const void *state, rt_buffer *out);
	/* Rebuilds state from stored bytes; RT_ECORRUPT on bad input. */
	int (*decode_state)(void *state, const void *bytes, size_t length);
	/* Applies one journaled event during recovery (idempotent). */
	int (*apply_record)(void *state, uint32_t type, const void *payload,
		size_t length);
	/* Frees memory the state owns (called after passivation/stop). */
	void (*free_state)(void *state);
} rt_actor_ops;

/* Registers ops for kind (1..RT_KINDS_MAX-1). ops borrowed for the life
 * of the runtime. RT_EEXIST if the kind is taken. Before rt_start. */
int rt_register_kind(rt_runtime *rt, uint32_t kind, const rt_actor_ops *ops);
/* The ops registered for kind, or NULL. Borrowed for the runtime's life.
 * Lets persistence rebuild a stored actor's state without activating it
 * (a partition export). Any thread. */
const rt_actor_ops *rt_kind_ops(const rt_runtime *rt, uint32_t kind);

/* ---- messages ---------------------------------------------------------- */

/* Allocates a message with room for `size` payload bytes (uninitialised).
 * Returns owned; give it to a send (which takes it) or rt_message_free. */
rt_message *rt_message_alloc(rt_runtime *rt, uint32_t type, uint32_t size);
void rt_message_free(rt_runtime *rt, rt_message *m);

/* ---- sending (from anywhere) ------------------------------------------- */

/*
 * Sends m (taken, always: on error it is freed) to `to`. From an actor's
 * on_message use rt_send with self so `from` is filled and per-sender
 * order is kept. Returns 0, RT_EMAILBOX_FULL, RT_ENOTFOUND (unknown
 * kind), RT_ENOMEM, RT_ESTOPPED. Never blocks.
 */
int rt_send(rt_actor *self, rt_addr to, rt_message *m);
/* Same from a thread that is no actor (from = RT_KIND_NONE). */
int rt_send_external(rt_runtime *rt, rt_addr to, rt_message *m);
/* Same, for a message the receiver is owed (the completion of a request
 * it made, such as a durable notice for its own journal append): not
 * refused by the receiver's mailbox bound, as replies are not. Whoever
 * sends these bounds how many can be owed at once; a mailbox full of
 * other work must not lose the completions of work already accepted. */
int rt_send_owed(rt_runtime *rt, rt_addr to, rt_message *m);
/* Copies payload into a new message and sends it. */
int rt_send_copy(rt_actor *self, rt_addr to, uint32_t type,
	const void *payload, uint32_t size);
/* A hint from self's turn that it will send to `to` a few sends from
 * now: starts loading the registry entry that send looks up, so a loop
 * sending to many actors (a fan-out) overlaps those cache misses rather
 * than taking them one after another. The hint given RT_PREFETCH_LAG
 * hints earlier in the same turn, whose entry has had that long to
 * arrive, also starts loading its actor's header (the send reads its id
 * and pushes onto its mailbox there): give hints at least twice that
 * many sends ahead. No effect on what happens; a hash, a prefetch, and
 * for the older hint a probe of its registry shard under the shard's
 * lock. */
#define RT_PREFETCH_LAG 4u
void rt_prefetch(rt_actor *self, rt_addr to);

/*
 * Ask from an actor: sends m with a fresh correlation id and a deadline
 * timeout_ms from now. Exactly one of these arrives later at self: a
 * message with RT_MESSAGE_F_REPLY and that correlation, or one with
 * RT_MESSAGE_F_TIMEOUT (type RT_TYPE_TIMEOUT). *correlation_out gets the id.
 * If it returns an error nothing arrives. Replies and timeouts bypass the
 * asker's mailbox bound. The reply/timeout race is settled where the
 * asker lives, when the reply is delivered there.
 */
int rt_ask(rt_actor *self, rt_addr to, rt_message *m, uint64_t timeout_ms,
	uint64_t *correlation_out);

/* Replies to `request` (borrowed) with reply (taken). A request that was a
 * plain send (correlation 0) gets no reply: reply is freed, RT_EINVAL. */
int rt_reply(rt_actor *self, const rt_message *request, rt_message *reply);

/* ---- external threads: inboxes ---------------------------------------- */

/*
 * An inbox lets a thread that is no actor (an event loop, a test's main)
 * ask actors. Replies and timeouts are queued on the inbox and `notify`
 * is called (from any thread) when it goes from empty to non-empty, so
 * the owner can wake its loop (e.g. uv_async_send). notify may be NULL
 * for a polling owner; it must not call back into the runtime's inbox
 * functions (it runs under the runtime's inbox-table lock).
 * Plain sends to an inbox are bounded at 65,536 queued (RT_EMAILBOX_FULL
 * beyond; replies and timeouts are not bounded). An inbox belongs to the
 * node that made it: a send to an inbox whose id names another node
 * (RT_INBOX_NODE_SHIFT) goes through the route hook; every other inbox
 * send is delivered here without it.
 */
typedef void (*rt_inbox_notify_callback)(void *arg);
int rt_inbox_create(rt_runtime *rt, rt_inbox_notify_callback notify,
	void *arg, rt_inbox **out);
void rt_inbox_destroy(rt_inbox *inbox);
/* Ask from an inbox; same contract as rt_ask. */
int rt_inbox_ask(rt_inbox *inbox, rt_addr to, rt_message *m,
	uint64_t timeout_ms, uint64_t *correlation_out);
/* Takes the oldest queued reply/timeout, or NULL. Returned owned. */
rt_message *rt_inbox_take(rt_inbox *inbox);
/* Takes every queued message at once, oldest first, linked through
 * m->next (NULL-terminated), or NULL: one lock for a burst of replies.
 * Each returned owned. */
rt_message *rt_inbox_take_all(rt_inbox *inbox);
/* Blocks up to timeout_ms (real time, or runs the deterministic
 * scheduler until one arrives) for a message. Owned or NULL. */
rt_message *rt_inbox_wait(rt_inbox *inbox, uint64_t timeout_ms);
/* The inbox's own address (replies are routed to it). Its kind is
 * RT_KIND_INBOX. Any actor may also rt_send plain messages to it (live
 * stream events to a gateway session do): they are queued on the inbox
 * exactly like replies, in per-sender order, and notify fires. */
rt_addr rt_inbox_addr(const rt_inbox *inbox);

/* ---- inside an actor --------------------------------------------------- */

rt_addr rt_self(const rt_actor *self);
rt_runtime *rt_actor_runtime(const rt_actor *self);
/* Messages currently queued for this actor (approximate under races). */
uint32_t rt_mailbox_length(const rt_actor *self);
/* Marks the actor's state changed since its last snapshot. */
void rt_mark_dirty(rt_actor *self);
/* Asks the runtime to passivate this actor after the current turn. */
void rt_request_passivate(rt_actor *self);

/* ---- clock, randomness, timers (the seams) ----------------------------- */

/* Monotonic ms (virtual in deterministic mode). */
uint64_t rt_now_ms(rt_runtime *rt);
/* rt_now_ms as the calling worker last read it (a coarse clock read every
 * RT_CLOCK_REFRESH_TURNS turns and after idling: it may lag by a few ms
 * and a turn, and may be below an rt_now_ms read earlier), for checks of
 * deadlines of seconds made once per message; rt_now_ms itself off the
 * workers and in deterministic mode. */
uint64_t rt_now_coarse_ms(rt_runtime *rt);
/* Wall-clock ms since the Unix epoch (virtual epoch + virtual time in
 * deterministic mode). */
uint64_t rt_wall_ms(rt_runtime *rt);
/* Next 64 random bits. From an actor: the worker's PRNG (seeded from the
 * runtime seed); deterministic mode: the one run PRNG. Thread-safe. */
uint64_t rt_random_u64(rt_runtime *rt);

/* Timers deliver a message of `type` with `payload` (copied, at most
 * RT_TIMER_PAYLOAD_BYTES_MAX) to `to` after delay_ms, then every
 * period_ms if period_ms > 0. *timer_out (may be NULL) names it.
 * The message comes from RT_KIND_NONE and bypasses the mailbox bound.
 * RT_ETOOBIG, RT_EINVAL, RT_ESTOPPED, RT_ENOMEM. */
#define RT_TIMER_PAYLOAD_BYTES_MAX 64u
typedef uint64_t rt_timer_id;
int rt_timer_start(rt_runtime *rt, rt_addr to, uint32_t type,
	const void *payload, uint32_t size, uint64_t delay_ms,
	uint64_t period_ms, rt_timer_id *timer_out);
/* Cancels; a firing already queued may still arrive. 0 or RT_ENOTFOUND. */
int rt_timer_cancel(rt_runtime *rt, rt_timer_id timer);

/* ---- deterministic mode ------------------------------------------------ */

/* Runs one scheduling step: picks a runnable actor by the PRNG and runs
 * one turn. Returns true if anything ran. */
bool rt_det_step(rt_runtime *rt);
/* Runs steps until nothing is runnable (timers not advanced). Returns the
 * number of turns run. max_turns bounds the loop (0: unbounded). */
uint64_t rt_det_run_until_idle(rt_runtime *rt, uint64_t max_turns);
/* Moves virtual time forward by delta_ms, firing due timers in (deadline,
 * arming sequence) order; virtual time reads each timer's deadline as it
 * fires. Runs no turn: fired messages wait for rt_det_step. */
void rt_det_advance(rt_runtime *rt, uint64_t delta_ms);
/* Virtual ms of the next armed timer, or UINT64_MAX. */
uint64_t rt_det_next_timer_ms(rt_runtime *rt);
/* The running trace hash: every delivered message (receiver, sender,
 * type, payload bytes), in delivery order. Also kept in real mode per
 * worker is NOT meaningful; use only in deterministic mode. */
uint64_t rt_trace_hash(rt_runtime *rt);

/* ---- seams for persistence and cluster --------------------------------- */

/*
 * Store hook (persistence fills it). load: fill state for addr (decode
 * the snapshot with ops->decode_state, replay with ops->apply_record);
 * RT_ENOTFOUND if nothing stored. save: store the encoded state at
 * passivation. Called on a worker thread, in the actor's context.
 */
typedef struct rt_store_ops {
	int (*load)(void *arg, rt_addr addr, const rt_actor_ops *ops,
		void *state);
	int (*save)(void *arg, rt_addr addr, const rt_actor_ops *ops,
		const void *state);
} rt_store_ops;
void rt_set_store(rt_runtime *rt, const rt_store_ops *ops, void *arg);

/*
 * Checkpoint support: in the context of every active actor marked dirty
 * (rt_mark_dirty) the runtime calls store->save and clears the mark;
 * once every one of them has been saved it calls done(arg, status) on
 * some worker thread (status: 0, or the first save error). Returns 0 or
 * RT_ESTOPPED. At most one pass runs at a time (RT_EEXIST otherwise).
 * The pass notes the dirty actors when called and queues their saves a
 * bounded window at a time behind the work already queued, so requests
 * keep being served while it runs; an actor noted dirty that was saved
 * or passivated meanwhile is skipped (that save holds its state).
 */
typedef void (*rt_snapshot_done_callback)(void *arg, int status);
int rt_snapshot_dirty(rt_runtime *rt, rt_snapshot_done_callback done,
	void *arg);

/* Activates addr if it is not active (loading its state through the
 * store hook, running on_activate), without delivering a message.
 * Recovery uses it to wake actors that have effects to re-drive.
 * Asynchronous: returns once the activation is queued (0), or
 * RT_ENOTFOUND (unknown kind), RT_ENOMEM, RT_ESTOPPED. */
int rt_activate(rt_runtime *rt, rt_addr addr);

/*
 * Route hook (cluster fills it). Called for every send whose receiver
 * is not already known to be local. Returns RT_ROUTE_LOCAL to deliver
 * here, RT_ROUTE_TAKEN when the hook took ownership of m (forwarded it),
 * or a negative RT_E code: m is then freed by the runtime, and if m was
 * an ask its asker gets an RT_TYPE_UNDELIVERABLE reply carrying the code
 * (the send itself then reports 0: the reply is the ask's one outcome).
 *
 * may_activate (optional; NULL: always true) answers whether addr's
 * actor may be activated on this node now. It is asked whenever a
 * message or rt_activate would create an actor that is not active (not
 * on every send), under the registry lock of addr: it must be cheap and
 * lock-free and must not call the runtime. When it says false, a message
 * is handed to route (which forwards or holds it; RT_ROUTE_LOCAL then
 * delivers it after all) and rt_activate returns RT_EUNAVAILABLE. So a
 * partition that is moving away is never re-activated here by a sender
 * that routed before the move, a timer or a reply: the hook's owner
 * changes its answer first, then calls rt_passivate_where, whose walk
 * takes the same locks.
 */
#define RT_ROUTE_LOCAL 0
#define RT_ROUTE_TAKEN 1
typedef struct rt_route_ops {
	int (*route)(void *arg, rt_message *m);
	bool (*may_activate)(void *arg, rt_addr addr);
} rt_route_ops;
void rt_set_route(rt_runtime *rt, const rt_route_ops *ops, void *arg);
/* Delivers a message that arrived from another node, bypassing routing
 * (may_activate still applies) and the receiver's mailbox bound:
 * cross-node traffic is bounded by the sender's link window instead, and
 * refusing here would lose a message the sender was told went out.
 * m taken. 0, RT_ENOTFOUND (unknown kind or inbox), RT_ENOMEM,
 * RT_ESTOPPED, RT_EMAILBOX_FULL (an inbox at its bound only). */
int rt_deliver_local(rt_runtime *rt, rt_message *m);

/*
 * Passivates every active actor for which pred(pred_arg, addr) is true:
 * each finishes the messages already queued for it (and any that race
 * in), runs on_passivate, is saved through the store hook and freed;
 * once the last one is gone done(done_arg, status) runs (status 0, or
 * the first error: RT_ENOMEM when a request could not be queued, a save
 * error -- the actor is freed anyway, the store keeps its last good
 * state). pred runs under a registry lock: it must be cheap and must not
 * call the runtime. Actors activated after the walk are not included:
 * pair it with route->may_activate, which keeps them from coming back.
 * done runs on a worker thread, or on the calling thread before this
 * returns when nothing matched; with RT_ESTOPPED if the runtime stops
 * first. Any thread, actors included. 0, RT_ESTOPPED, RT_ENOMEM (more
 * than RT_PASSIVATE_PASSES_MAX passes running: try again later).
 */
#define RT_PASSIVATE_PASSES_MAX 8u
typedef bool (*rt_addr_predicate)(void *arg, rt_addr addr);
typedef void (*rt_passivate_done_callback)(void *arg, int status);
int rt_passivate_where(rt_runtime *rt, rt_addr_predicate pred,
	void *pred_arg, rt_passivate_done_callback done, void *done_arg);

/* ---- statistics -------------------------------------------------------- */

typedef struct rt_stats {
	uint64_t actors_active;
	uint64_t actors_passivated_total;
	uint64_t actors_activated_total;
	uint64_t messages_delivered_total;
	uint64_t mailbox_full_total;
	uint64_t asks_timed_out_total;
	uint64_t steals_total;
	uint64_t bytes_actors; /* memory held by active actors and states */
	/* Chunks the size-class pools took for messages, actors and timers
	 * (kept to the end: the pools' high-water mark). */
	uint64_t bytes_pooled;
} rt_stats;
void rt_get_stats(rt_runtime *rt, rt_stats *out);

/* ---- buffers ----------------------------------------------------------- */

/* Growable byte buffer helpers. rt_buffer_reserve returns RT_ENOMEM. */
int rt_buffer_reserve(rt_buffer *b, size_t extra);
int rt_buffer_append(rt_buffer *b, const void *bytes, size_t length);
void rt_buffer_free(rt_buffer *b);

/* ---- logging ----------------------------------------------------------- */

/* One line per event to stderr: "ts level node component: message k=v".
 * rt may be NULL (process-wide default level INFO). Thread-safe. */
void rt_log(rt_runtime *rt, rt_log_level level, const char *component,
	const char *format, ...) __attribute__((format(printf, 4, 5)));
/* Sets rt's threshold; with rt NULL it does nothing (no global state). */
void rt_log_set_level(rt_runtime *rt, rt_log_level level);

#endif /* FLOCK_RUNTIME_H */
