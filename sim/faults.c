/*
 * sim/faults.c — the swarm: which faults a seed gets, how hard, and when
 * they strike.
 *
 * Knobs are drawn from the knobs stream alone, in a fixed order, so a
 * seed's knobs never depend on anything that happens in the run. In
 * swarm mode each allowed fault class is on with probability 1/2 (a seed
 * that runs fewer kinds of faults harder finds bugs that a uniform mix
 * dilutes); a listed set turns exactly those on. Intensities are drawn
 * for every class either way (the draws happen whether or not a class is
 * on), so turning a class off does not shift the others' intensities.
 *
 * Timing: each fault class with a rate is a renewal process of its own
 * (the next strike 0.5x to 1.5x the mean interval after the last), on the
 * faults stream. Partitions last 5 s to 2 min, crashed nodes stay down
 * 1 s to 2 min, one partition at a time.
 *
 * Does not: inject anything while healing or during setup.
 */
#include "sim/internal.h"

enum {
	FAULT_CRASH = 1,
	FAULT_PARTITION = 2,
	FAULT_PARTITION_END = 3,
	FAULT_JOIN = 4,
	FAULT_DRAIN = 5,
	FAULT_MEMBERSHIP_STEP = 6, /* follow a join or drain through */
	FAULT_TORN_NOW = 7,        /* the torn crash of event.node */
	FAULT_CRASH_AIMED = 8,     /* a crash waiting for a handoff */
};

#define FAULT_DOWN_MS_MIN 1000u
#define FAULT_DOWN_MS_MAX 120000u
#define FAULT_PARTITION_MS_MIN 5000u
#define FAULT_PARTITION_MS_MAX 120000u
/* Membership steps are retried this often until the coordinator takes
 * them (it may be partitioned away or busy rebalancing). */
#define FAULT_MEMBERSHIP_RETRY_MS 2000u
/* In a seed with joins or drains, a crash waits one time in two for a
 * node with partitions in flight, polling this often up to this many
 * times (then it strikes anywhere): handoffs are short, and a crash at a
 * random instant rarely lands in one. */
#define FAULT_AIM_POLL_MS 50u
#define FAULT_AIM_POLLS_MAX 1200u
/* Active members a drain leaves at least (a quorum keeps serving). */
#define FAULT_ACTIVE_MIN 2u

static bool
on(const sim_world *w, uint32_t fault)
{
	return (w->knobs_enabled & fault) != 0;
}

void
sim__knobs_draw(sim_world *w)
{
	sim_rng *r = sim__rng(w, SIM_STREAM_KNOBS);
	const sim_options *o = &w->opts;
	sim_knobs *k = &w->knobs;
	memset(k, 0, sizeof *k);
	uint32_t enabled = 0;
	for (uint32_t i = 0; i < SIM_FAULT_NAMES_COUNT; i++) {
		bool coin = sim__rng_below(r, 2) == 1;
		if ((o->faults & (1u << i)) && (!o->swarm || coin))
			enabled |= 1u << i;
	}
	w->knobs_enabled = enabled;
	w->result->faults_enabled = enabled;
	k->nodes = o->nodes;
	uint32_t users = (uint32_t)sim__rng_range(r, 10, 120);
	k->users = o->users != 0 ? o->users : users;
	k->follows_avg = (uint32_t)sim__rng_range(r, 2, 8);
	k->sim_time_ms = o->sim_time_ms;
	uint32_t rate = (uint32_t)sim__rng_range(r, 20, 300);
	k->ops_per_minute = o->ops_per_minute != 0 ? o->ops_per_minute : rate;
	static const uint32_t celebrity[] = {3, 5, 10, 20, 10000};
	k->celebrity_followers = celebrity[sim__rng_below(r, 5)];
	k->timeline_entries = API_TIMELINE_ENTRIES_DEFAULT;
	k->latency_ms = (uint32_t)sim__rng_range(r, 1, 5);
	uint32_t jitter_small = (uint32_t)sim__rng_range(r, 0, 3);
	uint32_t jitter_large = (uint32_t)sim__rng_range(r, 20, 400);
	k->jitter_ms = on(w, SIM_FAULT_DELAY) ? jitter_large : jitter_small;
	uint32_t drop = (uint32_t)sim__rng_range(r, 1000, 100000);
	uint32_t duplicate = (uint32_t)sim__rng_range(r, 1000, 50000);
	uint32_t reorder = (uint32_t)sim__rng_range(r, 1000, 50000);
	k->drop_ppm = on(w, SIM_FAULT_DROP) ? drop : 0;
	k->duplicate_ppm = on(w, SIM_FAULT_DUPLICATE) ? duplicate : 0;
	k->reorder_ppm = on(w, SIM_FAULT_REORDER) ? reorder : 0;
	uint32_t crashes = (uint32_t)sim__rng_range(r, 3, 40);
	uint32_t torn = (uint32_t)sim__rng_range(r, 30, 100);
	uint32_t partitions = (uint32_t)sim__rng_range(r, 3, 30);
	uint32_t disk = (uint32_t)sim__rng_range(r, 2000, 50000);
	uint32_t skew = (uint32_t)sim__rng_range(r, 50, 5000);
	uint32_t joins = (uint32_t)sim__rng_range(r, 4, 24);
	uint32_t drains = (uint32_t)sim__rng_range(r, 4, 24);
	k->crash_per_hour = on(w, SIM_FAULT_CRASH) ? crashes : 0;
	k->torn_crash_percent = on(w, SIM_FAULT_TORN) ? torn : 0;
	k->partition_per_hour = on(w, SIM_FAULT_PARTITION) ? partitions : 0;
	k->disk_fault_ppm = on(w, SIM_FAULT_DISK) ? disk : 0;
	k->clock_skew_ms = on(w, SIM_FAULT_SKEW) ? skew : 0;
	k->join_per_hour = on(w, SIM_FAULT_JOIN) ? joins : 0;
	k->drain_per_hour = on(w, SIM_FAULT_DRAIN) ? drains : 0;
	k->checkpoint_s = (uint32_t)sim__rng_range(r, 5, 120);
	k->disk_latency_ms = (uint32_t)sim__rng_range(r, 0, 8);
	k->tick_ms = (uint32_t)sim__rng_range(r, 10, 50);
	sim__knobs_print(w, NULL);
}

void
sim__knobs_print(const sim_world *w, FILE *out)
{
	const sim_knobs *k = &w->knobs;
	char faults[256] = "";
	for (uint32_t i = 0; i < SIM_FAULT_NAMES_COUNT; i++)
		if (w->knobs_enabled & (1u << i)) {
			size_t n = strlen(faults);
			snprintf(faults + n, sizeof faults - n, "%s%s",
				n ? "," : "", sim_fault_names[i]);
		}
	char *line = w->result->knobs;
	snprintf(line, sizeof w->result->knobs,
		"seed=%" PRIu64 " nodes=%u users=%u follows_avg=%u "
		"sim_time_s=%" PRIu64 " ops_per_minute=%u celebrity=%u "
		"faults=%s latency_ms=%u jitter_ms=%u drop_ppm=%u "
		"duplicate_ppm=%u reorder_ppm=%u crash_per_hour=%u torn_pct=%u "
		"partition_per_hour=%u disk_fault_ppm=%u skew_ms=%u "
		"join_per_hour=%u drain_per_hour=%u checkpoint_s=%u "
		"disk_latency_ms=%u tick_ms=%u mode=%s disk_policy=%s",
		w->seed, k->nodes, k->users, k->follows_avg,
		k->sim_time_ms / 1000, k->ops_per_minute, k->celebrity_followers,
		faults[0] ? faults : "none", k->latency_ms, k->jitter_ms,
		k->drop_ppm, k->duplicate_ppm, k->reorder_ppm, k->crash_per_hour,
		k->torn_crash_percent, k->partition_per_hour, k->disk_fault_ppm,
		k->clock_skew_ms, k->join_per_hour, k->drain_per_hour,
		k->checkpoint_s, k->disk_latency_ms, k->tick_ms,
		w->opts.mode == SIM_MODE_LIVENESS ? "liveness" : "safety",
		w->opts.disk_probe ? "probe" : "restart");
	if (out != NULL)
		fprintf(out, "%s\n", line);
}

/* ---- timing --------------------------------------------------------------- */

static void
schedule_next(sim_world *w, uint32_t per_hour, uint32_t action)
{
	if (per_hour == 0)
		return;
	uint64_t mean = 3600000u / per_hour;
	uint64_t gap = sim__rng_range(sim__rng(w, SIM_STREAM_FAULTS), mean / 2,
		mean + mean / 2);
	sim__schedule(w, w->now_ms + gap, SIM_EV_FAULT, SIM_NODES_MAX, action);
}

void
sim__faults_start(sim_world *w)
{
	sim__net_set_faults(w->net, true);
	schedule_next(w, w->knobs.crash_per_hour, FAULT_CRASH);
	schedule_next(w, w->knobs.partition_per_hour, FAULT_PARTITION);
	schedule_next(w, w->knobs.join_per_hour, FAULT_JOIN);
	schedule_next(w, w->knobs.drain_per_hour, FAULT_DRAIN);
}

/* Up to SIM_NODES_MAX indices of nodes that are up (and not leaving). */
static uint32_t
up_nodes(sim_world *w, uint32_t *out)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].up && !w->nodes[i].removed)
			out[k++] = i;
	return k;
}

/* ---- crashes ------------------------------------------------------------------ */

/* Partitions are moving through this node (a status: crashes only). */
static bool
in_handoff(sim_node *n)
{
	if (!n->up || n->cl == NULL)
		return false;
	cl_status *st = malloc(sizeof *st);
	SIM_ASSERT(st != NULL);
	cl_node_status(n->cl, st);
	bool moving = st->moves_in_flight > 0;
	free(st);
	return moving;
}

static void
crash_node(sim_world *w, uint32_t index, uint64_t down)
{
	sim_node *n = &w->nodes[index];
	if (in_handoff(n))
		sim_sometimes("sim: node crashed during a handoff");
	sim__log(w, "crash n%u (clean), down %" PRIu64 " ms", index + 1, down);
	sim__node_crash(w, index, false);
	w->result->crashes++;
	sim__schedule(w, w->now_ms + down, SIM_EV_RESTART, index, 0);
}

static void
crash_one(sim_world *w)
{
	sim_rng *r = sim__rng(w, SIM_STREAM_FAULTS);
	uint32_t up[SIM_NODES_MAX];
	uint32_t k = up_nodes(w, up);
	uint64_t pick = sim__rng_next(r);
	uint64_t down = sim__rng_range(r, FAULT_DOWN_MS_MIN, FAULT_DOWN_MS_MAX);
	bool torn = sim__rng_below(r, 100) < w->knobs.torn_crash_percent;
	if (k == 0)
		return;
	if (torn) {
		/* A torn tail needs written, unsynced bytes: the crash waits
		 * for the next group commit's write (any node) and strikes
		 * between its write and its fdatasync. */
		w->torn_crash_pending = true;
		w->torn_crash_down_ms = down;
		return;
	}
	crash_node(w, up[pick % k], down);
}

/* A crash waiting for a handoff (FAULT_AIM_*): strikes a node with
 * partitions in flight now, or polls again, or gives up and strikes
 * anywhere. */
static void
crash_aimed(sim_world *w)
{
	uint32_t up[SIM_NODES_MAX];
	uint32_t k = up_nodes(w, up);
	uint32_t moving[SIM_NODES_MAX];
	uint32_t m = 0;
	for (uint32_t i = 0; i < k; i++)
		if (in_handoff(&w->nodes[up[i]]))
			moving[m++] = up[i];
	if (m > 0) {
		sim_rng *r = sim__rng(w, SIM_STREAM_FAULTS);
		uint64_t pick = sim__rng_next(r);
		uint64_t down = sim__rng_range(r, FAULT_DOWN_MS_MIN,
			FAULT_DOWN_MS_MAX);
		crash_node(w, moving[pick % m], down);
		return;
	}
	if (++w->aimed_crash_polls < FAULT_AIM_POLLS_MAX) {
		sim__schedule(w, w->now_ms + FAULT_AIM_POLL_MS, SIM_EV_FAULT,
			SIM_NODES_MAX, FAULT_CRASH_AIMED);
		return;
	}
	crash_one(w);
}

/* ---- partitions ------------------------------------------------------------- */

static void
partition(sim_world *w)
{
	sim_rng *r = sim__rng(w, SIM_STREAM_FAULTS);
	uint64_t shape = sim__rng_below(r, 3);
	uint64_t a = sim__rng_next(r), b = sim__rng_next(r);
	uint64_t mask = sim__rng_next(r);
	uint64_t duration = sim__rng_range(r, FAULT_PARTITION_MS_MIN,
		FAULT_PARTITION_MS_MAX);
	uint32_t n = w->nodes_count;
	if (sim__net_partitioned(w->net) || n < 2)
		return;
	uint32_t x = (uint32_t)(a % n), y = (uint32_t)(b % (n - 1));
	if (y >= x)
		y++;
	const char *what;
	if (shape == 0) {
		/* isolate one node both ways */
		for (uint32_t i = 0; i < n; i++)
			if (i != x) {
				sim__net_block(w->net, x, i, true);
				sim__net_block(w->net, i, x, true);
			}
		what = "isolate";
	} else if (shape == 1) {
		/* one direction of one link */
		sim__net_block(w->net, x, y, true);
		what = "one-way";
	} else {
		/* a random split, both ways; x and y on opposite sides */
		bool side[SIM_NODES_MAX];
		for (uint32_t i = 0; i < n; i++)
			side[i] = (mask >> i) & 1u;
		side[x] = true;
		side[y] = false;
		for (uint32_t i = 0; i < n; i++)
			for (uint32_t j = 0; j < n; j++)
				if (side[i] != side[j])
					sim__net_block(w->net, i, j, true);
		what = "split";
	}
	sim__log(w, "partition %s n%u/n%u for %" PRIu64 " ms", what, x + 1,
		y + 1, duration);
	w->partition_started_ms = w->now_ms;
	w->result->partitions++;
	sim__hash(w, 0x9a47, shape, (uint64_t)x << 32 | y);
	sim__schedule(w, w->now_ms + duration, SIM_EV_FAULT, SIM_NODES_MAX,
		FAULT_PARTITION_END);
}

/* Counts a story that expired while the network was split. */
static void
stories_expired_during(sim_world *w, uint64_t since_ms)
{
	const sim_model *m = w->model;
	for (uint32_t i = 0; i < m->stories_count; i++) {
		uint64_t at = m->stories[i].expires_at_ms;
		if (at >= SIM_EPOCH_MS + since_ms && at <= SIM_EPOCH_MS + w->now_ms) {
			sim_sometimes("sim: story expiring during a partition");
			return;
		}
	}
}

/* ---- membership ------------------------------------------------------------- */

/* The index of the node the live coordinator runs on, or -1. */
static int
coordinator(sim_world *w)
{
	cl_status *st = malloc(sizeof *st);
	SIM_ASSERT(st != NULL);
	int found = -1;
	for (uint32_t i = 0; i < w->nodes_count && found < 0; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->up || n->id == 0)
			continue;
		cl_node_status(n->cl, st);
		if (st->coordinator == st->self && st->lease_held)
			found = (int)i;
	}
	free(st);
	return found;
}

static void
join_one(sim_world *w)
{
	uint32_t up[SIM_NODES_MAX];
	uint32_t k = up_nodes(w, up);
	uint64_t pick = sim__rng_next(sim__rng(w, SIM_STREAM_FAULTS));
	if (w->nodes_count >= SIM_NODES_MAX || k == 0 || w->membership_busy)
		return;
	uint32_t index = w->nodes_count++;
	sim__node_init(w, index);
	const char *via = w->nodes[up[pick % k]].address;
	sim__log(w, "join n%u via %s", index + 1, via);
	if (sim__node_start(w, index, via) != 0)
		return;
	w->result->joins++;
	w->membership_busy = true;
	w->membership_node = index;
	w->membership_drain = false;
	sim__schedule(w, w->now_ms + FAULT_MEMBERSHIP_RETRY_MS, SIM_EV_FAULT,
		SIM_NODES_MAX, FAULT_MEMBERSHIP_STEP);
}

static void
drain_one(sim_world *w)
{
	uint32_t up[SIM_NODES_MAX];
	uint32_t k = up_nodes(w, up);
	uint64_t pick = sim__rng_next(sim__rng(w, SIM_STREAM_FAULTS));
	if (k <= FAULT_ACTIVE_MIN || w->membership_busy)
		return;
	uint32_t index = up[pick % k];
	sim__log(w, "drain n%u", index + 1);
	w->result->drains++;
	w->membership_busy = true;
	w->membership_node = index;
	w->membership_drain = true;
	w->membership_stage = 0;
	sim__schedule(w, w->now_ms + 1, SIM_EV_FAULT, SIM_NODES_MAX,
		FAULT_MEMBERSHIP_STEP);
}

/* The state of member id in the coordinator's committed map (c: its
 * index), -1 when it is no member. */
static int
member_state(sim_world *w, int c, uint16_t id, uint32_t *owned)
{
	cl_map *map = malloc(sizeof *map);
	SIM_ASSERT(map != NULL);
	cl_node_map(w->nodes[c].cl, map);
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(map, counts);
	int state = -1;
	for (uint32_t i = 0; i < map->nodes_count; i++)
		if (map->nodes[i].id == id) {
			state = map->nodes[i].state;
			*owned = counts[i];
		}
	free(map);
	return state;
}

/* Moves the join or drain in progress one step: admin add / drain at
 * the coordinator, then (drain) wait until it owns nothing, remove it,
 * stop it. A request is taken once it is queued at the coordinator and
 * done once its map is committed: each step looks at the coordinator's
 * committed map and asks again when a change of coordinator lost it.
 * Retried until each step is taken. */
static void
membership_step(sim_world *w)
{
	if (!w->membership_busy)
		return;
	sim_node *n = &w->nodes[w->membership_node];
	int c = coordinator(w);
	int rc = CL_EUNAVAILABLE;
	uint32_t owned = 0;
	int state = c >= 0 && n->id != 0 ? member_state(w, c, n->id, &owned)
					  : -1;
	if (!w->membership_drain) {
		if (n->up && n->id == 0)
			n->id = cl_node_id(n->cl);
		if (c >= 0 && n->up && n->id != 0)
			state = member_state(w, c, n->id, &owned);
		if (state == CL_NODE_ACTIVE || !n->up) {
			w->membership_busy = false;
			sim__log(w, "join n%u: %s", n->index + 1,
				n->up ? "active" : "gone");
			return;
		}
		if (c >= 0 && n->up && n->id != 0)
			rc = cl_node_admin_add(w->nodes[c].cl, n->address);
		(void)rc;
	} else if (w->membership_stage == 0) {
		if (c >= 0 && n->id != 0)
			rc = cl_node_admin_drain(w->nodes[c].cl, n->id);
		if (rc == 0)
			w->membership_stage = 1;
	} else if (c >= 0) {
		/* drained when the coordinator's map gives it nothing */
		if (state == CL_NODE_ACTIVE)
			w->membership_stage = 0; /* the drain was lost */
		else if (state < 0) {
			sim__log(w, "drain n%u: removed", n->index + 1);
			n->removed = true;
			if (n->up)
				sim__node_stop(w, n->index);
			w->membership_busy = false;
			return;
		} else if (owned == 0 && state == CL_NODE_STANDBY &&
			c != (int)n->index)
			(void)cl_node_admin_remove(w->nodes[c].cl, n->id, false);
	}
	sim__schedule(w, w->now_ms + FAULT_MEMBERSHIP_RETRY_MS, SIM_EV_FAULT,
		SIM_NODES_MAX, FAULT_MEMBERSHIP_STEP);
}

static void torn_crash_now(sim_world *w, const sim_event *e);

void
sim__faults_event(sim_world *w, const sim_event *e)
{
	uint32_t action = (uint32_t)e->arg;
	if (action == FAULT_MEMBERSHIP_STEP) {
		membership_step(w); /* finishes even while healing */
		return;
	}
	if (action == FAULT_TORN_NOW) {
		if (w->faults_on)
			torn_crash_now(w, e);
		return;
	}
	if (action == FAULT_PARTITION_END) {
		if (!w->faults_on)
			return;
		sim__net_heal(w->net);
		sim__log(w, "partition healed");
		stories_expired_during(w, w->partition_started_ms);
		return;
	}
	if (!w->faults_on)
		return;
	switch (action) {
	case FAULT_CRASH:
		/* The coin is drawn only in seeds with joins or drains, so
		 * the others keep their draws. */
		if ((on(w, SIM_FAULT_JOIN) || on(w, SIM_FAULT_DRAIN)) &&
			sim__rng_below(sim__rng(w, SIM_STREAM_FAULTS), 2) == 0) {
			w->aimed_crash_polls = 0;
			crash_aimed(w);
		} else {
			crash_one(w);
		}
		schedule_next(w, w->knobs.crash_per_hour, FAULT_CRASH);
		break;
	case FAULT_CRASH_AIMED:
		crash_aimed(w);
		break;
	case FAULT_PARTITION:
		partition(w);
		schedule_next(w, w->knobs.partition_per_hour, FAULT_PARTITION);
		break;
	case FAULT_JOIN:
		join_one(w);
		schedule_next(w, w->knobs.join_per_hour, FAULT_JOIN);
		break;
	case FAULT_DRAIN:
		drain_one(w);
		schedule_next(w, w->knobs.drain_per_hour, FAULT_DRAIN);
		break;
	default:
		SIM_ASSERT(!"unknown fault");
	}
}

void
sim__faults_written(sim_world *w, uint32_t node)
{
	if (!w->torn_crash_pending || !w->faults_on)
		return;
	w->torn_crash_pending = false;
	/* Strike a little later, before this batch's fdatasync (held back
	 * until then): whatever runs meanwhile (acknowledgements that should
	 * not have gone out, say) happens first. */
	uint64_t delay = sim__rng_range(sim__rng(w, SIM_STREAM_FAULTS), 1,
		4u * w->knobs.disk_latency_ms + 4u);
	w->nodes[node].sync_not_before_ms = w->now_ms + delay + 1;
	sim__schedule(w, w->now_ms + delay, SIM_EV_FAULT, node, FAULT_TORN_NOW);
}

static void
torn_crash_now(sim_world *w, const sim_event *e)
{
	sim_node *n = &w->nodes[e->node];
	if (!n->up || n->incarnation != e->incarnation)
		return;
	if (in_handoff(n))
		sim_sometimes("sim: node crashed during a handoff");
	sim__log(w, "crash n%u (torn, mid group commit), down %" PRIu64 " ms",
		e->node + 1, w->torn_crash_down_ms);
	sim__node_crash(w, e->node, true);
	w->result->crashes++;
	sim__schedule(w, w->now_ms + w->torn_crash_down_ms, SIM_EV_RESTART,
		e->node, 0);
}

void
sim__faults_heal(sim_world *w)
{
	w->faults_on = false;
	w->torn_crash_pending = false;
	sim__net_heal(w->net);
	sim__net_set_faults(w->net, false);
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		if (n->exists && !n->up && !n->removed)
			sim__node_start(w, i, NULL);
	}
}

void
sim__faults_disk_step(sim_world *w, uint32_t node)
{
	sim_rng *r = sim__rng(w, SIM_STREAM_DISK);
	bool fault = sim__rng_ppm(r, w->faults_on ? w->knobs.disk_fault_ppm : 0);
	uint64_t which = sim__rng_below(r, 4);
	if (!fault)
		return;
	ps_fault_disk *f = w->nodes[node].disk.fault;
	int code = which & 1u ? PS_ENOSPC : PS_EIO;
	if (which & 2u)
		ps_fault_disk_fail_syncs(f, 0, 1, code);
	else
		ps_fault_disk_fail_writes(f, 0, 1, code);
	w->result->disk_faults++;
	sim__hash(w, 0xd1f7, node, which);
}
