/*
 * sim/node.c — one simulated flockd: a deterministic runtime, the domain
 * (api_create), persistence in manual mode on the node's disk, and a
 * cluster node ticked by the run over the simulated network. The same
 * parts, composed the way flockd composes them: rt_create, api_create,
 * ps_node_open (recovery), api_bind_store, cl_node_open, rt_start.
 *
 * The cluster opens before persistence (state seam deferred), as in
 * flockd, so recovery's wake-ups are routed; handoffs ship through
 * cl_state_ops_persistence and passivate through the runtime.
 *
 * A crash is a process death: the disk keeps only what was fdatasynced
 * (or a torn prefix of the rest), everything in memory is dropped
 * without another write, and clients connected to the node lose their
 * calls in flight. A restart is a new incarnation recovering from that
 * disk, with a new wall-clock offset when skew is on.
 *
 * Invariants: a node's runtime time equals the run's time minus the
 * incarnation's birth; a node's events carry its incarnation and are
 * ignored once it is stale.
 */
#include "sim/internal.h"

#include <errno.h>
#include <sys/stat.h>

/* Journal segments roll over at 1 MiB so runs create, seal and release
 * segments (the production default of 64 MiB never rolls in a run). */
#define NODE_SEGMENT_BYTES (1ull << 20)
/* A dying node's client: time jumps past every ask's deadline, this
 * many times at most (a call that asks again after a timeout, like a
 * name lookup and then the write, needs a round per step). */
#define NODE_DRAIN_ROUNDS 16u
#define NODE_DRAIN_JUMP_MS (10u * 60u * 1000u)
/* LMDB map per node: small runs fit; the store doubles it when full. */
#define NODE_MAP_BYTES (8ull << 20)

/* ---- the active set (invariant 6) ------------------------------------- */

static uint64_t
addr_hash(rt_addr a)
{
	return sim__mix(a.id ^ ((uint64_t)a.kind << 56));
}

static bool
active_add(sim_active *s, rt_addr a)
{
	if ((s->count + 1) * 2 > s->capacity) {
		uint32_t capacity = s->capacity ? s->capacity * 2
						: SIM_ACTIVE_SLOTS_INITIAL;
		rt_addr *slots = calloc(capacity, sizeof *slots);
		SIM_ASSERT(slots != NULL);
		for (uint32_t i = 0; i < s->capacity; i++) {
			if (s->slots[i].kind == 0)
				continue;
			uint32_t j = (uint32_t)addr_hash(s->slots[i]) & (capacity - 1);
			while (slots[j].kind != 0)
				j = (j + 1) & (capacity - 1);
			slots[j] = s->slots[i];
		}
		free(s->slots);
		s->slots = slots;
		s->capacity = capacity;
	}
	uint32_t j = (uint32_t)addr_hash(a) & (s->capacity - 1);
	while (s->slots[j].kind != 0) {
		if (rt_addr_equal(s->slots[j], a))
			return false;
		j = (j + 1) & (s->capacity - 1);
	}
	s->slots[j] = a;
	s->count++;
	return true;
}

bool
sim__active_has(const sim_active *s, rt_addr a)
{
	if (s->capacity == 0)
		return false;
	uint32_t j = (uint32_t)addr_hash(a) & (s->capacity - 1);
	while (s->slots[j].kind != 0) {
		if (rt_addr_equal(s->slots[j], a))
			return true;
		j = (j + 1) & (s->capacity - 1);
	}
	return false;
}

static void
active_clear(sim_active *s)
{
	free(s->slots);
	memset(s, 0, sizeof *s);
}

/* Enumerates a runtime's registry through rt_passivate_where with a
 * predicate that records every address and passivates nothing. */
typedef struct registry_scan {
	sim_active rebuilt;
	rt_addr target;
	bool found;
} registry_scan;

static bool
scan_one(void *arg, rt_addr a)
{
	registry_scan *s = arg;
	active_add(&s->rebuilt, a);
	if (rt_addr_equal(a, s->target))
		s->found = true;
	return false;
}

static void
scan_done(void *arg, int status)
{
	(void)arg;
	(void)status;
}

int
sim__node_active_now(sim_world *w, uint32_t index, rt_addr addr)
{
	sim_node *n = &w->nodes[index];
	if (!n->up)
		return 0;
	registry_scan s = {.target = addr};
	if (rt_passivate_where(n->rt, scan_one, &s, scan_done, NULL) != 0) {
		active_clear(&s.rebuilt);
		return -1;
	}
	/* The registry is the truth: actors passivated since (handoffs,
	 * lost leases) leave the set. */
	active_clear(&n->active);
	n->active = s.rebuilt;
	return s.found ? 1 : 0;
}

/* ---- life cycle --------------------------------------------------------- */

static void
on_load(void *arg, rt_addr addr, int status)
{
	sim_node *n = arg;
	if (status != 0 && status != RT_ENOTFOUND)
		return;
	sim__check_load(n->w, n->index, addr);
	active_add(&n->active, addr);
}

void
sim__node_init(sim_world *w, uint32_t index)
{
	SIM_ASSERT(index < SIM_NODES_MAX);
	sim_node *n = &w->nodes[index];
	memset(n, 0, sizeof *n);
	n->w = w;
	n->index = index;
	n->exists = true;
	snprintf(n->address, sizeof n->address, "n%u.sim:7000", index + 1);
	snprintf(n->dir, sizeof n->dir, "%s/n%u", w->dir, index + 1);
	SIM_ASSERT(mkdir(n->dir, 0755) == 0 || errno == EEXIST);
}

uint64_t
sim__node_now(const sim_node *n)
{
	return n->w->now_ms - n->born_ms;
}

uint64_t
sim__node_trace(const sim_node *n)
{
	uint64_t h = n->trace_hash;
	if (n->up)
		h = sim__hash_step(h, rt_trace_hash(n->rt));
	return h;
}

static void
api_config_for(sim_world *w, sim_node *n, api_config *cfg, char *media,
	size_t media_size)
{
	api_config_default(cfg);
	/* argon2 at its floor and inline: hashing is no part of what the
	 * simulator checks, and a thread would break the determinism. */
	cfg->password_memlimit_bytes = 8192;
	cfg->password_opslimit = 1;
	cfg->password_threads = 0;
	cfg->media_threads = 0;
	cfg->celebrity_followers_min = w->knobs.celebrity_followers;
	cfg->timeline_entries_max = w->knobs.timeline_entries;
	/* Each node's clock is off by up to the skew knob either way. */
	cfg->clock_skew_ms_max = 2u * (uint64_t)w->knobs.clock_skew_ms;
	snprintf(media, media_size, "%s/media", n->dir);
	cfg->data_dir = media;
}

static int
open_runtime(sim_world *w, sim_node *n)
{
	rt_config rc;
	rt_config_default(&rc);
	rc.deterministic = true;
	rc.workers = 1;
	rc.seed = sim__rng_next(sim__rng(w, SIM_STREAM_SCHED));
	rc.start_time_ms = (uint64_t)((int64_t)(SIM_EPOCH_MS + w->now_ms) +
		n->skew_ms);
	/* Idle passivation off: an actor stays active for the life of its
	 * incarnation, so the active sets below are exact (invariant 6). */
	rc.passivate_idle_ms = 0;
	rc.log_level = w->opts.verbose ? RT_LOG_WARN : RT_LOG_ERROR + 1;
	char name[16];
	snprintf(name, sizeof name, "n%u", n->index + 1);
	rc.node_name = name;
	return rt_create(&rc, &n->rt) == 0 ? 0 : -1;
}

static int
open_cluster(sim_world *w, sim_node *n, const char *join)
{
	const cl_transport_ops *tops;
	void *ep;
	if (sim__net_endpoint(w->net, n->index, &tops, &ep) != 0)
		return -1;
	char cluster_dir[SIM_PATH_BYTES_MAX + 48];
	snprintf(cluster_dir, sizeof cluster_dir, "%s/cluster", n->dir);
	SIM_ASSERT(mkdir(cluster_dir, 0755) == 0 || errno == EEXIST);
	cl_node_config cc;
	cl_node_config_default(&cc);
	cc.listen = n->address;
	cc.join = join;
	cc.data_dir = cluster_dir;
	cc.transport_ops = tops;
	cc.transport = ep;
	cc.manual_tick = true;
	cc.bootstrap = false;
	cc.state_deferred = true;
	/* The incarnation number the cluster puts on every frame comes from
	 * the seed (seed | 1 in manual mode): new for every restart. */
	cc.seed = sim__mix(w->seed ^ (uint64_t)n->index << 40 ^
		(uint64_t)n->incarnation << 48);
	int rc = cl_node_open(&cc, n->rt, &n->cl);
	if (rc != 0) {
		sim__fail(w, "setup", "node %u: cl_node_open: %s", n->index + 1,
			cl_strerror(rc));
		return -1;
	}
	n->id = cl_node_id(n->cl);
	return 0;
}

int
sim__node_start(sim_world *w, uint32_t index, const char *join)
{
	sim_node *n = &w->nodes[index];
	SIM_ASSERT(n->exists && !n->up);
	n->incarnation++;
	n->born_ms = w->now_ms;
	n->skew_ms = 0;
	if (w->knobs.clock_skew_ms > 0)
		n->skew_ms = (int64_t)sim__rng_below(sim__rng(w, SIM_STREAM_FAULTS),
			2u * w->knobs.clock_skew_ms + 1u) -
			(int64_t)w->knobs.clock_skew_ms;
	sim__hash(w, 0x57a7, index, n->incarnation);
	if (open_runtime(w, n) != 0)
		return -1;
	api_config cfg;
	char media[SIM_PATH_BYTES_MAX + 48];
	api_config_for(w, n, &cfg, media, sizeof media);
	if (api_create(n->rt, NULL, &cfg, &n->api) != 0)
		goto fail_rt;
	if (sim__disk_init(&n->disk, w, index, n->dir) != 0)
		goto fail_api;
	n->up = true; /* loads during recovery are checked as live */
	if (open_cluster(w, n, join) != 0)
		goto fail_disk;
	ps_node_options po = {
		.disk = &n->disk.disk,
		.segment_bytes = NODE_SEGMENT_BYTES,
		.map_bytes = NODE_MAP_BYTES,
		.retry_interval_ms = UINT64_MAX,
		.manual = true,
		.on_load = on_load,
		.on_load_arg = n,
		.owes = api_state_owes,
	};
	char data[SIM_PATH_BYTES_MAX + 48];
	snprintf(data, sizeof data, "%s/data", n->dir);
	ps_node_report report;
	int prc = ps_node_open(data, n->rt, &po, &report, &n->ps);
	if (prc != 0) {
		sim__fail(w, "7 recovery", "node %u incarnation %u: recovery "
			"failed: %s (%s at %" PRIu64 ")", index + 1,
			n->incarnation, ps_strerror(prc),
			report.journal.corrupt_path, report.journal.corrupt_offset);
		goto fail_cluster;
	}
	api_bind_store(n->api, n->ps);
	cl_node_set_state(n->cl, cl_state_ops_persistence(), n->ps);
	if (n->id != 0)
		(void)rt_set_node_id(n->rt, n->id);
	SIM_ASSERT(rt_start(n->rt) == 0);
	n->runnable = true;
	n->disk_queued = false;
	n->retry_queued = false;
	n->disk_check = true;
	uint64_t phase = sim__rng_below(sim__rng(w, SIM_STREAM_SCHED),
		w->knobs.tick_ms) + 1;
	sim__schedule(w, w->now_ms + phase, SIM_EV_TICK, index, 0);
	sim__schedule(w, w->now_ms + (uint64_t)w->knobs.checkpoint_s * 1000u +
		phase, SIM_EV_CHECKPOINT, index, 0);
	sim__node_poke(w, index);
	return 0;

fail_cluster:
	cl_node_close(n->cl);
	n->cl = NULL;
fail_disk:
	n->up = false;
	sim__disk_free(&n->disk);
fail_api:
	api_destroy(n->api);
	n->api = NULL;
fail_rt:
	rt_destroy(n->rt);
	n->rt = NULL;
	return -1;
}

/* What both a crash and a stop do first: the cluster goes (no frame
 * leaves any more), then the client. Its calls in flight end the way a
 * real client's do when its node dies, unanswered: the node's time jumps
 * past every ask's deadline (no actor runs) and the client runs the
 * timeouts, so each call frees its own state and answers 503. */
static void
detach(sim_world *w, sim_node *n)
{
	cl_node_close(n->cl);
	n->cl = NULL;
	if (n->client != NULL) {
		sim__lives_client_gone(w, n->index);
		if (api_client_pending(n->client) > 0)
			sim_sometimes("sim: a call was lost with its node");
		n->up = false; /* the answers must not pick this node again */
		for (uint32_t round = 0; round < NODE_DRAIN_ROUNDS &&
			api_client_pending(n->client) > 0; round++) {
			rt_det_advance(n->rt, NODE_DRAIN_JUMP_MS);
			api_client_poll(n->client);
		}
		n->up = true;
		api_client_destroy(n->client);
		n->client = NULL;
	}
	sim__driver_node_down(w->driver, n->index);
}

static void
release(sim_node *n)
{
	api_destroy(n->api);
	n->api = NULL;
	n->trace_hash = sim__hash_step(n->trace_hash, rt_trace_hash(n->rt));
	rt_destroy(n->rt);
	n->rt = NULL;
	sim__disk_free(&n->disk);
	active_clear(&n->active);
	n->up = false;
	n->runnable = false;
}

void
sim__node_crash(sim_world *w, uint32_t index, bool torn)
{
	sim_node *n = &w->nodes[index];
	SIM_ASSERT(n->up);
	sim__hash(w, 0xc4a5, index, torn);
	/* The disk first: whatever happens below must not reach it. */
	if (torn)
		ps_fault_disk_crash_torn(n->disk.fault,
			sim__rng_next(sim__rng(w, SIM_STREAM_DISK)));
	else
		ps_fault_disk_crash(n->disk.fault);
	detach(w, n);
	rt_stop(n->rt);
	ps_node_crash(n->ps);
	n->ps = NULL;
	release(n);
}

void
sim__node_stop(sim_world *w, uint32_t index)
{
	sim_node *n = &w->nodes[index];
	SIM_ASSERT(n->up);
	detach(w, n);
	rt_stop(n->rt);
	ps_node_close(n->ps);
	n->ps = NULL;
	release(n);
}

uint64_t
sim__node_run(sim_world *w, uint32_t index, uint64_t max)
{
	sim_node *n = &w->nodes[index];
	if (!n->up)
		return 0;
	uint64_t turns = 0;
	while (turns < max && rt_det_step(n->rt))
		turns++;
	if (turns < max)
		n->runnable = false;
	if (turns > 0)
		n->disk_check = true; /* records, checkpoints */
	n->turns += turns;
	w->result->turns += turns;
	return turns;
}

/* The client's inbox went from empty to non-empty: the next poll has
 * completions to run (sim__driver_poll skips the clients with none). */
static void
client_notify(void *arg)
{
	sim_node *n = arg;
	n->client_ready = true;
}

api_client *
sim__node_client(sim_world *w, uint32_t index)
{
	sim_node *n = &w->nodes[index];
	if (!n->up)
		return NULL;
	if (n->client != NULL)
		return n->client;
	if (n->id == 0) {
		n->id = cl_node_id(n->cl); /* a joiner learns it late */
		if (n->id == 0)
			return NULL;
	}
	(void)rt_set_node_id(n->rt, n->id);
	n->client_ready = false;
	if (api_client_create(n->api, client_notify, n, &n->client) != 0)
		return NULL;
	return n->client;
}
