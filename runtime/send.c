/*
 * send.c — getting a message into an actor's mailbox.
 *
 * Role: message allocation, the route hook, and delivery: find the
 * receiver in the registry (creating it if the address is inactive: a
 * virtual actor), push onto its lock-free MPSC mailbox, and schedule it
 * if this push moved it from idle to runnable. Also rt_activate and the
 * memory-budget eviction that activation triggers.
 *
 * The mailbox: producers push onto an intrusive stack with one atomic
 * exchange (Treiber push); the consumer takes the whole stack at once
 * and reverses it into a private FIFO (actor.c). Each producer's pushes
 * keep their order through the reversal, so messages from one sender
 * arrive in send order.
 *
 * Invariants: push and the `pending` increment happen under the shard
 * lock (internal.h); the mailbox bound is checked there too, so it is
 * exact against other senders. Runtime-made messages (replies, timeouts,
 * timer firings, internal requests) bypass the bound: they are bounded
 * by what the receiver asked for, and losing one would break the ask
 * contract.
 * Does not: block, or run actor code.
 */
#include "runtime/internal.h"

/* Bytes of a message with `capacity` payload bytes. */
static inline size_t
message_bytes(uint32_t capacity)
{
	return offsetof(rt_message, payload) + capacity;
}

rt_message *
rt__message_new(rt_runtime *rt, uint32_t type, uint32_t size)
{
	/* A multiple of 16: the class is, so the payload is 16-aligned. */
	size_t bytes = rt__alloc_size((message_bytes(size) + 15u) & ~(size_t)15u);
	rt_message *m = rt__alloc(rt, bytes);
	if (m == NULL)
		return NULL;
	memset(m, 0, offsetof(rt_message, payload));
	m->type = type;
	m->size = size;
	m->capacity = (uint32_t)(bytes - offsetof(rt_message, payload));
	RT_ASSERT(m->capacity >= size);
	return m;
}

rt_message *
rt_message_alloc(rt_runtime *rt, uint32_t type, uint32_t size)
{
	RT_ASSERT(rt != NULL);
	if (size > RT_MESSAGE_BYTES_MAX)
		return NULL;
	return rt__message_new(rt, type, size);
}

void
rt_message_free(rt_runtime *rt, rt_message *m)
{
	RT_ASSERT(rt != NULL);
	if (m == NULL)
		return;
	RT_ASSERT(m->size <= m->capacity);
	rt__free(rt, m, message_bytes(m->capacity));
}

/* Pushes m onto a's stack; returns the old pending count. Shard locked. */
static inline int
mailbox_push_locked(rt_actor *a, rt_message *m)
{
	uint64_t word = atomic_load_explicit(&a->mailbox, memory_order_relaxed);
	do {
		m->next = (rt_message *)(uintptr_t)(word & RT_ACTOR_POINTER_MASK);
	} while (!atomic_compare_exchange_weak_explicit(&a->mailbox, &word,
		(word & ~RT_ACTOR_POINTER_MASK) | (uintptr_t)m,
		memory_order_release, memory_order_relaxed));
	return atomic_fetch_add_explicit(&a->pending, 1, memory_order_acq_rel);
}

void
rt__push_internal_locked(rt_runtime *rt, rt_actor *a, rt_message *m,
	bool *schedule_out)
{
	(void)rt;
	m->flags |= RT_MESSAGE_F_INTERNAL;
	m->to = rt_addr_make(rt__actor_kind(a), a->id);
	*schedule_out = mailbox_push_locked(a, m) == 0;
}

static void
actor_init(rt_runtime *rt, rt_actor *a, uint32_t kind, uint64_t id)
{
	/* The state is zeroed by the actor's first turn (actor_load), on the
	 * worker that runs it: a sender activating many actors (a fan-out)
	 * writes only their headers. */
	RT_ASSERT(kind < RT_KINDS_MAX);
	atomic_store_explicit(&a->mailbox, (uint64_t)kind << RT_ACTOR_KIND_SHIFT,
		memory_order_relaxed);
	a->id = id;
	atomic_store_explicit(&a->pending, 0, memory_order_relaxed);
	atomic_store_explicit(&a->stamp, rt__stamp_ms(rt) << RT_ACTOR_STAMP_SHIFT,
		memory_order_relaxed);
}

/*
 * Activation under the shard lock takes only memory that is at hand: a
 * pop from the worker's free list, and a slot array fetched beforehand
 * when the shard must double. Anything else (a pool batch, a fresh slab
 * or arena chunk whose first touch is a page fault, ~0.1-4 ms for a
 * 2 MiB page here, or the memset of a reused slot array) is fetched with
 * the lock released, then the probe is done again: with the lock held
 * through a page fault, the other worker soon needed the same shard and
 * spun for the rest of it.
 */
typedef struct spare {
	rt_actor *actor;      /* k->actor_bytes, uninitialised, or NULL */
	rt__slot *slots;      /* zeroed slot array of slots_count, or NULL */
	uint32_t slots_count;
	uint32_t slots_want;  /* set by activation_locked: fetch this many */
	bool slots_failed;    /* a fetch failed: insert grows as it can */
} spare;

#define ACTIVATION_FETCH 1

/* Under s's lock, after a miss that left hole: creates and registers
 * (kind, id) into *out (0), or returns ACTIVATION_FETCH (the caller
 * unlocks, calls spare_fetch and probes again) or RT_ENOMEM. */
static int
activation_locked(rt_runtime *rt, rt__shard *s, const rt__kind *k,
	uint32_t kind, uint64_t id, uint64_t hash, uint32_t hole, spare *sp,
	rt_actor **out)
{
	rt__slot *grown = NULL;
	if (rt__registry_full(s) && !sp->slots_failed) {
		uint32_t want = (s->mask + 1u) * 2u;
		RT_ASSERT(want != 0);
		if (sp->slots == NULL || sp->slots_count != want) {
			sp->slots_want = want;
			return ACTIVATION_FETCH;
		}
		grown = sp->slots;
	}
	rt_actor *a = sp->actor;
	if (a == NULL) {
		a = rt__alloc_cached(rt, k->actor_bytes);
		if (a == NULL)
			return ACTIVATION_FETCH;
	}
	actor_init(rt, a, kind, id);
	if (rt__registry_insert_at(&rt->registry, s, hash, a, hole, grown) != 0) {
		/* A grown array is never refused: this was a grow failing. */
		RT_ASSERT(grown == NULL);
		sp->actor = a; /* spare_release gives it back */
		return RT_ENOMEM;
	}
	sp->actor = NULL;
	if (grown != NULL)
		sp->slots = NULL;
	*out = a;
	return 0;
}

/* With the shard unlocked: fetches what activation_locked asked for. */
static int
spare_fetch(rt_runtime *rt, const rt__kind *k, spare *sp)
{
	if (sp->slots_want != 0) {
		if (sp->slots != NULL)
			rt__registry_slots_release(&rt->registry, sp->slots,
				sp->slots_count);
		sp->slots = rt__registry_slots_new(&rt->registry, sp->slots_want);
		sp->slots_count = sp->slots_want;
		sp->slots_failed = sp->slots == NULL;
		sp->slots_want = 0;
	}
	if (sp->actor == NULL)
		sp->actor = rt__alloc(rt, k->actor_bytes);
	return sp->actor == NULL ? RT_ENOMEM : 0;
}

/* With the shard unlocked: gives back what was fetched and not used. */
static inline void
spare_release(rt_runtime *rt, const rt__kind *k, spare *sp)
{
	if (RT_LIKELY(sp->actor == NULL && sp->slots == NULL))
		return;
	if (sp->actor != NULL)
		rt__free(rt, sp->actor, k->actor_bytes);
	if (sp->slots != NULL)
		rt__registry_slots_release(&rt->registry, sp->slots,
			sp->slots_count);
	sp->actor = NULL;
	sp->slots = NULL;
}

static void
actor_created(rt_runtime *rt, const rt__kind *k)
{
	rt__counters *c = rt__counters_here(rt);
	rt__count(c, &c->actors_active, 1);
	rt__count(c, &c->bytes_actors, (long long)rt__alloc_size(k->actor_bytes));
	if (rt->cfg.memory_budget_bytes != 0) {
		long long bytes = rt__counters_sum(rt,
			offsetof(rt__counters, bytes_actors));
		if (bytes > 0 && (uint64_t)bytes > rt->cfg.memory_budget_bytes)
			rt__evict_one(rt);
	}
}

static int route_failed(rt_runtime *rt, rt_message *m, int code);

/* may_activate said no: the route hook decides where m goes instead. */
static int
deliver_refused(rt_runtime *rt, rt_message *m, unsigned how)
{
	int rc = rt->route.route(rt->route_arg, m);
	if (rc == RT_ROUTE_TAKEN)
		return 0;
	if (rc < 0)
		return route_failed(rt, m, rc);
	RT_ASSERT(rc == RT_ROUTE_LOCAL);
	/* Owned again since may_activate looked: deliver after all. */
	return rt__deliver(rt, m, how | RT_DELIVER_NO_GATE);
}

/* how bit (send.c only): the caller computed hash and prefetched its
 * slot already. */
#define DELIVER_PREFETCHED 0x100u

/* rt__deliver with hash == rt__addr_hash(m->to.kind, m->to.id) (any
 * value when m goes to an inbox or names no kind). */
static int
deliver_hashed(rt_runtime *rt, rt_message *m, unsigned how, uint64_t hash)
{
	RT_ASSERT(m != NULL);
	uint32_t kind = m->to.kind;
	if (RT_UNLIKELY(atomic_load_explicit(&rt->stopping, memory_order_acquire))) {
		rt_message_free(rt, m);
		return RT_ESTOPPED;
	}
	if (m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))
		how |= RT_DELIVER_BYPASS_LIMIT;
	/* Inboxes claim their own asks' replies (ask.c). */
	if ((m->flags & RT_MESSAGE_F_REPLY) && m->correlation != 0 &&
		kind != RT_KIND_INBOX && !rt__ask_claim(rt, m->correlation)) {
		/* The ask already timed out (or was answered): drop. */
		rt_message_free(rt, m);
		return 0;
	}
	if (kind == RT_KIND_INBOX)
		return rt__inbox_deliver(rt, m);
	if (RT_UNLIKELY(kind >= RT_KINDS_MAX || rt->kinds[kind].ops == NULL)) {
		rt_message_free(rt, m);
		return RT_ENOTFOUND;
	}
	const rt__kind *k = &rt->kinds[kind];
	uint64_t id = m->to.id;
	rt__shard *s = rt__registry_shard(&rt->registry, hash);
	uint32_t hole;
	spare sp = {0};
	/* The slot loads while the lock is taken. */
	if (!(how & DELIVER_PREFETCHED))
		rt__registry_prefetch(&rt->registry, hash);
again:
	rt__spin_lock(&s->lock);
	rt_actor *a = rt__registry_find_hole(s, hash, kind, id, &hole);
	if (a == NULL) {
		if (atomic_load_explicit(&rt->stopping, memory_order_relaxed))
			goto stopped;
		/* Under the shard lock, so a passivation walk that follows
		 * the hook owner's change of answer sees what is made here. */
		if (RT_UNLIKELY(rt->has_route && rt->route.may_activate != NULL) &&
			!(how & RT_DELIVER_NO_GATE) &&
			!rt->route.may_activate(rt->route_arg, m->to)) {
			rt__spin_unlock(&s->lock);
			spare_release(rt, k, &sp);
			return deliver_refused(rt, m, how);
		}
		int rc = activation_locked(rt, s, k, kind, id, hash, hole, &sp, &a);
		if (rc == ACTIVATION_FETCH) {
			rt__spin_unlock(&s->lock);
			if (spare_fetch(rt, k, &sp) != 0) {
				spare_release(rt, k, &sp);
				rt_message_free(rt, m);
				return RT_ENOMEM;
			}
			goto again;
		}
		if (rc != 0)
			goto nomem;
		/* Spawned with its first message: no other thread can see a
		 * before the shard unlocks, so plain stores do what the
		 * mailbox push's two locked instructions would. */
		m->next = NULL;
		atomic_store_explicit(&a->mailbox, atomic_load_explicit(
			&a->mailbox, memory_order_relaxed) | (uintptr_t)m,
			memory_order_relaxed);
		atomic_store_explicit(&a->pending, 1, memory_order_relaxed);
		rt__spin_unlock(&s->lock);
		spare_release(rt, k, &sp);
		rt__schedule(rt, a);
		actor_created(rt, k);
		return 0;
	} else if (!(how & RT_DELIVER_BYPASS_LIMIT) &&
		atomic_load_explicit(&a->pending, memory_order_relaxed) >=
			(int)k->mailbox_max) {
		rt__spin_unlock(&s->lock);
		spare_release(rt, k, &sp);
		atomic_fetch_add_explicit(&rt->mailbox_full_total, 1,
			memory_order_relaxed);
		rt_message_free(rt, m);
		return RT_EMAILBOX_FULL;
	}
	int old = mailbox_push_locked(a, m);
	rt__spin_unlock(&s->lock);
	if (RT_UNLIKELY(sp.actor != NULL || sp.slots != NULL))
		spare_release(rt, k, &sp);
	if (old == 0)
		rt__schedule_woken(rt, a);
	return 0;
stopped:
	rt__spin_unlock(&s->lock);
	spare_release(rt, k, &sp);
	rt_message_free(rt, m);
	return RT_ESTOPPED;
nomem:
	rt__spin_unlock(&s->lock);
	spare_release(rt, k, &sp);
	rt_message_free(rt, m);
	return RT_ENOMEM;
}

int
rt__deliver(rt_runtime *rt, rt_message *m, unsigned how)
{
	RT_ASSERT(m != NULL);
	uint64_t hash = m->to.kind < RT_KINDS_MAX && m->to.kind != RT_KIND_INBOX ?
		rt__addr_hash(m->to.kind, m->to.id) : 0;
	return deliver_hashed(rt, m, how, hash);
}

int
rt__activate(rt_runtime *rt, rt_addr addr)
{
	uint32_t kind = addr.kind;
	if (atomic_load_explicit(&rt->stopping, memory_order_acquire))
		return RT_ESTOPPED;
	if (kind == RT_KIND_NONE || kind >= RT_KINDS_MAX || kind == RT_KIND_INBOX ||
		rt->kinds[kind].ops == NULL)
		return RT_ENOTFOUND;
	const rt__kind *k = &rt->kinds[kind];
	uint64_t hash = rt__addr_hash(kind, addr.id);
	rt__shard *s = rt__registry_shard(&rt->registry, hash);
	uint32_t hole;
	spare sp = {0};
again:
	rt__spin_lock(&s->lock);
	if (rt__registry_find_hole(s, hash, kind, addr.id, &hole) != NULL) {
		rt__spin_unlock(&s->lock);
		spare_release(rt, k, &sp);
		return 0; /* active, or its activation is already queued */
	}
	if (rt->has_route && rt->route.may_activate != NULL &&
		!rt->route.may_activate(rt->route_arg, addr)) {
		rt__spin_unlock(&s->lock);
		spare_release(rt, k, &sp);
		return RT_EUNAVAILABLE; /* owned elsewhere, or moving away */
	}
	rt_actor *a = NULL;
	int rc = activation_locked(rt, s, k, kind, addr.id, hash, hole, &sp, &a);
	if (rc == ACTIVATION_FETCH) {
		rt__spin_unlock(&s->lock);
		if (spare_fetch(rt, k, &sp) != 0) {
			spare_release(rt, k, &sp);
			return RT_ENOMEM;
		}
		goto again;
	}
	if (rc != 0) {
		rt__spin_unlock(&s->lock);
		spare_release(rt, k, &sp);
		return RT_ENOMEM;
	}
	/* No message: the token stands for one pending unit. */
	rt__actor_local_set(a, RT_ACTOR_ACTIVATE_TOKEN);
	atomic_store_explicit(&a->pending, 1, memory_order_relaxed);
	rt__spin_unlock(&s->lock);
	spare_release(rt, k, &sp);
	rt__schedule(rt, a);
	actor_created(rt, k);
	return 0;
}

/* The route hook refused m (taken) with code. An ask becomes an
 * RT_TYPE_UNDELIVERABLE reply to its asker, which is the ask's one
 * outcome (0); anything else fails with code. */
static int
route_failed(rt_runtime *rt, rt_message *m, int code)
{
	bool ask = m->correlation != 0 &&
		!(m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT)) &&
		m->from.kind != RT_KIND_NONE;
	rt_message *r = ask ? rt__message_new(rt, RT_TYPE_UNDELIVERABLE,
		sizeof(int32_t)) : NULL;
	if (r == NULL) {
		rt_message_free(rt, m);
		return code;
	}
	int32_t value = code;
	memcpy(r->payload, &value, sizeof value);
	r->from = m->to;
	r->to = m->from;
	r->correlation = m->correlation;
	r->flags = RT_MESSAGE_F_REPLY;
	rt_message_free(rt, m);
	/* The asker is local unless m came from another node; a reply is
	 * no ask, so this does not recurse further. */
	return rt__route_and_deliver(rt, r) == 0 ? 0 : code;
}

/* Routes m (to/from set) and delivers it locally (how) when the hook
 * says so. */
static int
route_and_deliver_how(rt_runtime *rt, rt_message *m, unsigned how)
{
	if (rt->has_route && (m->to.kind != RT_KIND_INBOX ||
		!rt__inbox_is_local(rt, m->to.id))) {
		if (atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
			rt_message_free(rt, m);
			return RT_ESTOPPED;
		}
		int rc = rt->route.route(rt->route_arg, m);
		if (rc == RT_ROUTE_TAKEN)
			return 0;
		if (rc < 0)
			return route_failed(rt, m, rc);
		RT_ASSERT(rc == RT_ROUTE_LOCAL);
	}
	return rt__deliver(rt, m, how);
}

int
rt__route_and_deliver(rt_runtime *rt, rt_message *m)
{
	return route_and_deliver_how(rt, m, 0);
}

int
rt_send(rt_actor *self, rt_addr to, rt_message *m)
{
	RT_ASSERT(self != NULL);
	RT_ASSERT(m != NULL);
	rt_worker *w = rt__tls_worker;
	RT_ASSERT(w != NULL);
	RT_ASSERT(w->current == self);
	m->from = rt_addr_make(rt__actor_kind(self), self->id);
	m->to = to;
	m->flags &= ~(uint32_t)RT_MESSAGE_F_INTERNAL;
	return rt__route_and_deliver(w->rt, m);
}

int
rt_send_external(rt_runtime *rt, rt_addr to, rt_message *m)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(m != NULL);
	m->from = rt_addr_make(RT_KIND_NONE, 0);
	m->to = to;
	m->flags &= ~(uint32_t)RT_MESSAGE_F_INTERNAL;
	return rt__route_and_deliver(rt, m);
}

int
rt_send_owed(rt_runtime *rt, rt_addr to, rt_message *m)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(m != NULL);
	m->from = rt_addr_make(RT_KIND_NONE, 0);
	m->to = to;
	m->flags &= ~(uint32_t)RT_MESSAGE_F_INTERNAL;
	return route_and_deliver_how(rt, m, RT_DELIVER_BYPASS_LIMIT);
}

int
rt_send_copy(rt_actor *self, rt_addr to, uint32_t type, const void *payload,
	uint32_t size)
{
	RT_ASSERT(self != NULL);
	RT_ASSERT(size == 0 || payload != NULL);
	if (size > RT_MESSAGE_BYTES_MAX)
		return RT_ETOOBIG;
	rt_worker *w = rt__tls_worker;
	RT_ASSERT(w != NULL);
	RT_ASSERT(w->current == self);
	rt_runtime *rt = w->rt;
	/* The registry probe at the end of this send is its one likely cache
	 * miss: start it now, so the message's allocation and copy overlap
	 * it. The hash is the one the probe uses. */
	bool local_kind = to.kind != RT_KIND_NONE && to.kind < RT_KINDS_MAX &&
		to.kind != RT_KIND_INBOX;
	uint64_t hash = 0;
	if (local_kind) {
		hash = rt__addr_hash(to.kind, to.id);
		rt__registry_prefetch(&rt->registry, hash);
	}
	rt_message *m = rt__message_new(rt, type, size);
	if (m == NULL)
		return RT_ENOMEM;
	if (size > 0)
		memcpy(m->payload, payload, size);
	/* rt_send's work, with the flags rt__message_new cleared. */
	m->from = rt_addr_make(rt__actor_kind(self), self->id);
	m->to = to;
	if (RT_UNLIKELY(rt->has_route) || !local_kind)
		return rt__route_and_deliver(rt, m);
	return deliver_hashed(rt, m, DELIVER_PREFETCHED, hash);
}

void
rt_prefetch(rt_actor *self, rt_addr to)
{
	RT_ASSERT(self != NULL);
	rt_worker *w = rt__tls_worker;
	RT_ASSERT(w != NULL && w->current == self);
	if (to.kind == RT_KIND_NONE || to.kind >= RT_KINDS_MAX ||
		to.kind == RT_KIND_INBOX)
		return;
	uint64_t hash = rt__addr_hash(to.kind, to.id);
	rt__registry_prefetch(&w->rt->registry, hash);
	if (w->prefetch_turn != self) {
		/* Hints of an earlier turn are stale. */
		memset(w->prefetch_hashes, 0, sizeof w->prefetch_hashes);
		w->prefetch_turn = self;
		w->prefetch_next = 0;
	}
	uint32_t k = w->prefetch_next;
	uint64_t older = w->prefetch_hashes[k];
	w->prefetch_hashes[k] = hash;
	w->prefetch_next = (k + 1u) % RT_PREFETCH_LAG;
	if (older != 0)
		rt__registry_prefetch_actor(&w->rt->registry, older);
}

int
rt_deliver_local(rt_runtime *rt, rt_message *m)
{
	RT_ASSERT(rt != NULL);
	RT_ASSERT(m != NULL);
	m->flags &= ~(uint32_t)RT_MESSAGE_F_INTERNAL;
	return rt__deliver(rt, m, RT_DELIVER_BYPASS_LIMIT);
}

int
rt_activate(rt_runtime *rt, rt_addr addr)
{
	RT_ASSERT(rt != NULL);
	return rt__activate(rt, addr);
}
