/*
 * sim/run.c — sim_run: builds a world from a seed, runs it on one
 * thread, heals it, checks it, tears it down.
 *
 * The loop. Global virtual time advances in jumps to the next thing that
 * can happen: the earliest queued event (frame, disk step, tick, op,
 * fault, restart) or the earliest armed timer of any node's runtime.
 * At each instant: due events run in (time, sequence) order; then, while
 * any node may have runnable actors, one is drawn from the scheduling
 * stream and runs a slice of turns (its runtime draws which actor); the
 * clients' completions run; every node that did work flushes its cluster
 * links (cl_node_tick), and a node whose journal or store has work gets
 * a disk step scheduled after a drawn latency. Nothing else moves time.
 *
 * Phases of a run: setup (users and graph, no faults), the workload with
 * faults until sim_time, healing (faults off, crashed nodes restarted,
 * network healed, workload stopped), settling until quiescent, the
 * live streams' probe, the checks at quiescence, teardown.
 *
 * Does not: read a clock (except for the wall time it reports, never
 * used in a decision), or iterate anything unordered in a decision.
 */
#include "sim/internal.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* Turns one node runs before the scheduler draws again: interleaves
 * nodes finely without a draw per turn. */
#define RUN_SLICE_TURNS 16u
/* After healing: time to settle before the quiescence checks start, and
 * the bound within which the cluster must converge (liveness mode) or
 * the checks give up waiting (safety mode). */
#define RUN_SETTLE_MS (60u * 1000u)
#define RUN_CONVERGE_MS_MAX (10u * 60u * 1000u)
#define RUN_LIVENESS_BOUND_MS (3u * 60u * 1000u)
/* How often each node's map epoch is checked (invariant 6). */
#define RUN_EPOCH_CHECK_MS 1000u
/* Retry interval of a failed journal's probe. */
#define RUN_PROBE_RETRY_MS 500u
/* Rounds of work one simulated instant may take before the run fails:
 * simulated time that stops advancing (an actor re-arming a 0 ms timer
 * forever, two actors bouncing a message) would otherwise hang the
 * sweep. A busy instant takes a few thousand. */
#define RUN_INSTANT_ROUNDS_MAX 1000000u

const char *const sim_fault_names[SIM_FAULT_NAMES_COUNT] = {
	"crash", "torn", "drop", "duplicate", "reorder", "delay",
	"partition", "disk", "skew", "join", "drain",
};

void
sim_options_default(sim_options *o)
{
	memset(o, 0, sizeof *o);
	o->seed = 1;
	o->nodes = 3;
	o->sim_time_ms = 60u * 60u * 1000u;
	o->swarm = true;
	o->faults = SIM_FAULTS_ALL;
	o->mode = SIM_MODE_SAFETY;
	o->check_recovery = true;
}

/* Parses a comma list of class names into *faults_out; a leading '-'
 * removes a class (from `start`). */
static int
parse_classes(const char *p, uint32_t start, uint32_t *faults_out)
{
	uint32_t faults = start;
	while (*p != '\0') {
		bool remove = *p == '-';
		p += remove;
		size_t n = strcspn(p, ",");
		bool found = false;
		for (uint32_t i = 0; i < SIM_FAULT_NAMES_COUNT; i++)
			if (strlen(sim_fault_names[i]) == n &&
				strncmp(p, sim_fault_names[i], n) == 0) {
				faults = remove ? faults & ~(1u << i)
						: faults | (1u << i);
				found = true;
			}
		if (!found)
			return SIM_EINVAL;
		p += n;
		if (*p == ',')
			p++;
	}
	*faults_out = faults;
	return 0;
}

int
sim_faults_parse(const char *text, bool *swarm_out, uint32_t *faults_out)
{
	*swarm_out = false;
	*faults_out = 0;
	if (strcmp(text, "none") == 0)
		return 0;
	if (strcmp(text, "swarm") == 0) {
		*swarm_out = true;
		*faults_out = SIM_FAULTS_ALL;
		return 0;
	}
	if (strncmp(text, "swarm:", 6) == 0) {
		*swarm_out = true;
		/* "swarm:-join,-drain" removes from all; "swarm:crash,disk"
		 * draws among those only */
		uint32_t start = text[6] == '-' ? SIM_FAULTS_ALL : 0;
		return parse_classes(text + 6, start, faults_out);
	}
	return parse_classes(text, 0, faults_out);
}

static void
format_duration(uint64_t ms, char *out, size_t size)
{
	if (ms % 3600000u == 0)
		snprintf(out, size, "%" PRIu64 "h", ms / 3600000u);
	else if (ms % 60000u == 0)
		snprintf(out, size, "%" PRIu64 "m", ms / 60000u);
	else if (ms % 1000u == 0)
		snprintf(out, size, "%" PRIu64 "s", ms / 1000u);
	else
		snprintf(out, size, "%" PRIu64 "ms", ms);
}

void
sim_command_line(const sim_options *o, char *out, size_t size)
{
	char faults[256] = "";
	if (o->swarm && o->faults == SIM_FAULTS_ALL)
		snprintf(faults, sizeof faults, "swarm");
	else if (o->faults == 0)
		snprintf(faults, sizeof faults, "none");
	else {
		if (o->swarm)
			snprintf(faults, sizeof faults, "swarm:");
		size_t start = strlen(faults);
		for (uint32_t i = 0; i < SIM_FAULT_NAMES_COUNT; i++)
			if (o->faults & (1u << i)) {
				size_t n = strlen(faults);
				snprintf(faults + n, sizeof faults - n, "%s%s",
					n > start ? "," : "", sim_fault_names[i]);
			}
	}
	char duration[32];
	format_duration(o->sim_time_ms, duration, sizeof duration);
	int n = snprintf(out, size, "flocksim --seed %" PRIu64 " --nodes %u"
		" --sim-time %s --faults %s --mode %s", o->seed, o->nodes,
		duration, faults,
		o->mode == SIM_MODE_LIVENESS ? "liveness" : "safety");
	if (n > 0 && (size_t)n < size && o->users != 0)
		n += snprintf(out + n, size - (size_t)n, " --users %u", o->users);
	if (n > 0 && (size_t)n < size && o->ops_per_minute != 0)
		n += snprintf(out + n, size - (size_t)n, " --ops-per-minute %u",
			o->ops_per_minute);
	if (n > 0 && (size_t)n < size && o->graph != NULL)
		n += snprintf(out + n, size - (size_t)n, " --graph %s", o->graph);
	if (n > 0 && (size_t)n < size && !o->check_recovery)
		n += snprintf(out + n, size - (size_t)n, " --no-recovery-check");
	if (n > 0 && (size_t)n < size && o->disk_probe)
		snprintf(out + n, size - (size_t)n, " --disk-policy probe");
}

/* ---- failures and logging ------------------------------------------------ */

void
sim__fail(sim_world *w, const char *invariant, const char *format, ...)
{
	if (w->failed)
		return;
	w->failed = true;
	w->failure_ms = w->now_ms;
	char detail[SIM_FAILURE_BYTES_MAX - 128];
	va_list ap;
	va_start(ap, format);
	vsnprintf(detail, sizeof detail, format, ap);
	va_end(ap);
	snprintf(w->failure, sizeof w->failure, "invariant %s at t=%" PRIu64
		".%03" PRIu64 "s: %s", invariant, w->now_ms / 1000,
		w->now_ms % 1000, detail);
}

void
sim__trace(sim_world *w, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t nodes = 0;
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].up)
			nodes = sim__hash_step(nodes, rt_trace_hash(w->nodes[i].rt));
	fprintf(w->trace, "%" PRIu64 " %" PRIx64 " %" PRIx64 " %" PRIx64
		" nodes=%016" PRIx64 "\n", w->now_ms, a, b, c, nodes);
}

void
sim__log(sim_world *w, const char *format, ...)
{
	if (w->log == NULL)
		return;
	va_list ap;
	va_start(ap, format);
	fprintf(w->log, "[t=%" PRIu64 ".%03" PRIu64 "s] ", w->now_ms / 1000,
		w->now_ms % 1000);
	vfprintf(w->log, format, ap);
	fputc('\n', w->log);
	va_end(ap);
}

/* ---- scheduling ------------------------------------------------------------ */

void
sim__schedule(sim_world *w, uint64_t at_ms, uint32_t kind, uint32_t node,
	uint64_t arg)
{
	sim_event e = {.at_ms = at_ms, .kind = kind, .node = node, .arg = arg};
	if (node < SIM_NODES_MAX)
		e.incarnation = w->nodes[node].incarnation;
	SIM_ASSERT(sim__events_push(&w->events, e) == 0);
}

void
sim__node_poke(sim_world *w, uint32_t node)
{
	sim_node *n = &w->nodes[node];
	if (!n->up)
		return;
	n->runnable = true;
	n->flush_queued = true;
	n->disk_check = true;
}

/* A node event for a past incarnation or a node that is down. */
static bool
stale(sim_world *w, const sim_event *e)
{
	const sim_node *n = &w->nodes[e->node];
	return !n->up || n->incarnation != e->incarnation;
}

static void
disk_event(sim_world *w, uint32_t index)
{
	sim_node *n = &w->nodes[index];
	n->disk_queued = false;
	ps_journal *j = ps_node_journal(n->ps);
	ps_pump_step step = ps_journal_next_step(j);
	if (step != PS_PUMP_IDLE) {
		sim__faults_disk_step(w, index);
		ps_journal_pump(j);
		ps_fault_disk_heal(n->disk.fault);
		sim__hash(w, 0xd15c, index, step);
		if (step == PS_PUMP_WRITE &&
			ps_journal_next_step(j) == PS_PUMP_SYNC) {
			sim__faults_written(w, index);
			if (!n->up)
				return;
		}
	}
	ps_store *s = ps_node_store(n->ps);
	if (ps_store_queued(s) > 0)
		ps_store_pump(s);
	n->runnable = true; /* notices went to its actors */
}

static void
retry_event(sim_world *w, uint32_t index)
{
	sim_node *n = &w->nodes[index];
	n->retry_queued = false;
	ps_journal *j = ps_node_journal(n->ps);
	if (ps_journal_status(j) == 0)
		return;
	if (!w->opts.disk_probe) {
		sim__log(w, "n%u: journal failed, restarting it", index + 1);
		sim_sometimes("sim: node restarted after its journal failed");
		sim__node_crash(w, index, false);
		sim__node_start(w, index, NULL);
		return;
	}
	sim__faults_disk_step(w, index);
	int rc = ps_journal_retry(j);
	ps_fault_disk_heal(n->disk.fault);
	sim__hash(w, 0x4e74, index, (uint64_t)(uint32_t)rc);
	n->runnable = true;
}

static void
tick_event(sim_world *w, uint32_t index)
{
	sim_node *n = &w->nodes[index];
	cl_node_tick(n->cl, sim__node_now(n));
	/* A map copy is 21 KiB: the epochs are looked at once a second. */
	if (w->now_ms >= n->epoch_checked_ms + RUN_EPOCH_CHECK_MS) {
		n->epoch_checked_ms = w->now_ms;
		sim__check_epochs(w, index);
	}
	n->runnable = true; /* it may have delivered held messages */
	sim__schedule(w, w->now_ms + w->knobs.tick_ms, SIM_EV_TICK, index, 0);
}

static void
dispatch(sim_world *w, const sim_event *e)
{
	/* whatever runs may give a journal or a store work: the node an
	 * event is for, every node for the world's own events */
	if (e->node < w->nodes_count)
		w->nodes[e->node].disk_check = true;
	else
		for (uint32_t i = 0; i < w->nodes_count; i++)
			w->nodes[i].disk_check = true;
	switch (e->kind) {
	case SIM_EV_FRAME:
		sim__net_deliver(w->net, e);
		return;
	case SIM_EV_OP:
		sim__driver_op(w->driver);
		return;
	case SIM_EV_CALL:
		sim__driver_call_event(w->driver, e);
		return;
	case SIM_EV_LIVE:
		sim__lives_tick(w);
		return;
	case SIM_EV_FAULT:
		sim__faults_event(w, e);
		for (uint32_t i = 0; i < w->nodes_count; i++)
			w->nodes[i].disk_check = true;
		return;
	case SIM_EV_RESTART: {
		sim_node *n = &w->nodes[e->node];
		if (n->exists && !n->up && !n->removed)
			sim__node_start(w, e->node, NULL);
		return;
	}
	default:
		break;
	}
	if (stale(w, e))
		return;
	switch (e->kind) {
	case SIM_EV_DISK:
		disk_event(w, e->node);
		break;
	case SIM_EV_RETRY:
		retry_event(w, e->node);
		break;
	case SIM_EV_TICK:
		tick_event(w, e->node);
		break;
	case SIM_EV_CHECKPOINT:
		(void)ps_node_checkpoint(w->nodes[e->node].ps, NULL, NULL);
		w->nodes[e->node].runnable = true;
		sim__schedule(w, w->now_ms + (uint64_t)w->knobs.checkpoint_s *
			1000u, SIM_EV_CHECKPOINT, e->node, 0);
		break;
	default:
		SIM_ASSERT(!"unknown event");
	}
}

/* Schedules disk steps and probes for nodes that need them. Only nodes
 * on which something ran since they were last looked at (disk_check):
 * a journal or a store gets work from actor turns, cluster ticks and
 * frames (handoffs), disk events and checkpoints, never by itself. */
static void
plan_disks(sim_world *w)
{
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->up || !n->disk_check)
			continue;
		n->disk_check = false;
		ps_journal *j = ps_node_journal(n->ps);
		if (!n->disk_queued) {
			ps_pump_step step = ps_journal_next_step(j);
			if (step != PS_PUMP_IDLE ||
				ps_store_queued(ps_node_store(n->ps)) > 0) {
				uint64_t latency = w->knobs.disk_latency_ms > 0
					? sim__rng_below(sim__rng(w, SIM_STREAM_DISK),
						  w->knobs.disk_latency_ms + 1u)
					: 0;
				uint64_t at = w->now_ms + latency;
				if (step == PS_PUMP_SYNC && at < n->sync_not_before_ms)
					at = n->sync_not_before_ms;
				sim__schedule(w, at, SIM_EV_DISK, i, 0);
				n->disk_queued = true;
			}
		}
		if (!n->retry_queued && ps_journal_status(j) != 0) {
			/* probe and carry on, or restart (fail-stop) */
			sim__schedule(w, w->now_ms + RUN_PROBE_RETRY_MS,
				SIM_EV_RETRY, i, 0);
			n->retry_queued = true;
		}
	}
}

/* Runs everything due at the current instant once. True if anything
 * happened (the caller loops until nothing does). */
static bool
run_instant(sim_world *w)
{
	bool worked = false;
	sim_event e;
	while (!w->failed && sim__events_next_ms(&w->events) <= w->now_ms &&
		sim__events_pop(&w->events, &e)) {
		dispatch(w, &e);
		free(e.data);
		worked = true;
	}
	sim_rng *sched = sim__rng(w, SIM_STREAM_SCHED);
	while (!w->failed) {
		uint32_t candidates[SIM_NODES_MAX];
		uint32_t k = 0;
		for (uint32_t i = 0; i < w->nodes_count; i++)
			if (w->nodes[i].up && w->nodes[i].runnable)
				candidates[k++] = i;
		if (k == 0)
			break;
		uint32_t pick = candidates[k == 1 ? 0 : sim__rng_below(sched, k)];
		if (sim__node_run(w, pick, RUN_SLICE_TURNS) > 0) {
			w->nodes[pick].flush_queued = true;
			worked = true;
		}
		if (w->suspects_count > 0)
			sim__check_suspects(w);
		sim__driver_poll(w->driver);
	}
	sim__driver_poll(w->driver);
	for (uint32_t i = 0; i < w->nodes_count && !w->failed; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->up || !n->flush_queued)
			continue;
		n->flush_queued = false;
		cl_node_tick(n->cl, sim__node_now(n));
		n->runnable = true; /* a tick may release held messages */
		n->disk_check = true;
	}
	plan_disks(w);
	return worked;
}

static uint64_t
next_time(sim_world *w)
{
	uint64_t t = sim__events_next_ms(&w->events);
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->up)
			continue;
		uint64_t next = rt_det_next_timer_ms(n->rt);
		if (next != UINT64_MAX && n->born_ms + next < t)
			t = n->born_ms + next;
	}
	return t < w->now_ms ? w->now_ms : t;
}

static void
advance_to(sim_world *w, uint64_t t)
{
	SIM_ASSERT(t >= w->now_ms);
	w->now_ms = t;
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->up)
			continue;
		uint64_t local = t - n->born_ms;
		uint64_t next = rt_det_next_timer_ms(n->rt);
		uint64_t now = rt_now_ms(n->rt);
		SIM_ASSERT(local >= now);
		rt_det_advance(n->rt, local - now);
		if (next <= local) {
			n->runnable = true;
			n->disk_check = true;
		}
	}
}

bool
sim__run_until(sim_world *w, uint64_t deadline_ms,
	bool (*pred)(sim_world *w, void *arg), void *arg)
{
	uint64_t instant_ms = w->now_ms;
	uint32_t instant_rounds = 0;
	for (;;) {
		if (w->failed)
			return false;
		if (pred != NULL && pred(w, arg))
			return true;
		if (w->now_ms != instant_ms) {
			instant_ms = w->now_ms;
			instant_rounds = 0;
		}
		if (run_instant(w)) {
			if (++instant_rounds > RUN_INSTANT_ROUNDS_MAX)
				sim__fail(w, "liveness", "simulated time stalled: "
					"%u rounds of work at one instant",
					RUN_INSTANT_ROUNDS_MAX);
			continue;
		}
		uint64_t t = next_time(w);
		if (t > deadline_ms) {
			if (deadline_ms > w->now_ms)
				advance_to(w, deadline_ms);
			return pred != NULL && pred(w, arg);
		}
		advance_to(w, t);
	}
}

/* ---- building the world ---------------------------------------------------- */

static int
remove_entry(const char *path, const struct stat *st, int flag,
	struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
make_run_dir(sim_world *w)
{
	const char *base = w->opts.tmp_dir;
	struct stat st;
	if (base == NULL)
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)
			? "/dev/shm"
			: (getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	snprintf(w->dir, sizeof w->dir, "%s/flocksim-%" PRIu64 "-XXXXXX",
		base, w->seed);
	return mkdtemp(w->dir) != NULL ? 0 : -1;
}

/* Writes the first map (every initial node active, partitions spread)
 * into each node's directory, as an operator's bootstrap would leave
 * it, so the run starts balanced without a handoff. */
static int
write_initial_maps(sim_world *w)
{
	cl_map *map = malloc(2 * sizeof *map);
	SIM_ASSERT(map != NULL);
	cl_map *target = map + 1;
	cl_map_init(map);
	uint16_t ids[SIM_NODES_MAX];
	for (uint32_t i = 0; i < w->nodes_count; i++)
		SIM_ASSERT(cl_map_add_node(map, w->nodes[i].address,
			CL_NODE_ACTIVE, &ids[i]) == 0);
	cl_map_target(map, target);
	*map = *target;
	map->epoch = 1;
	int rc = 0;
	for (uint32_t i = 0; i < w->nodes_count && rc == 0; i++) {
		char dir[SIM_PATH_BYTES_MAX + 48];
		snprintf(dir, sizeof dir, "%s/cluster", w->nodes[i].dir);
		SIM_ASSERT(mkdir(dir, 0755) == 0 || errno == EEXIST);
		rc = cl_map_save(dir, ids[i], map);
		w->nodes[i].id = ids[i];
	}
	free(map);
	return rc == 0 ? 0 : -1;
}

bool
sim__quiet(sim_world *w, void *arg)
{
	(void)arg;
	if (sim__driver_inflight(w->driver) > 0 ||
		sim__net_in_flight(w->net) > 0)
		return false;
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->exists || n->removed)
			continue;
		if (!n->up || n->runnable || n->disk_queued)
			return false;
		if (ps_journal_next_step(ps_node_journal(n->ps)) != PS_PUMP_IDLE ||
			ps_store_queued(ps_node_store(n->ps)) > 0 ||
			ps_journal_status(ps_node_journal(n->ps)) != 0)
			return false;
	}
	return true;
}

/* The cluster agrees: every live member on one epoch, leases held, no
 * partition moving. */
bool
sim__converged(sim_world *w)
{
	uint64_t epoch = 0;
	for (uint32_t i = 0; i < w->nodes_count; i++) {
		sim_node *n = &w->nodes[i];
		if (!n->exists || n->removed)
			continue;
		if (!n->up)
			return false;
		cl_status *st = malloc(sizeof *st);
		SIM_ASSERT(st != NULL);
		cl_node_status(n->cl, st);
		bool ok = st->self != 0 && st->lease_held &&
			st->moves_in_flight == 0 &&
			(st->coordinator != st->self || st->moves_pending == 0) &&
			(epoch == 0 || st->epoch == epoch);
		for (uint32_t k = 0; ok && k < st->members_count; k++)
			ok = st->members[k].liveness == CL_LIVE_ALIVE;
		epoch = st->epoch;
		free(st);
		if (!ok)
			return false;
	}
	return true;
}

/* Why the world is not settled, for the failure message. */
void
sim__why_unsettled(sim_world *w, char *out, size_t size)
{
	size_t n = 0;
	n += (size_t)snprintf(out + n, size - n, "calls=%u frames=%" PRIu64,
		sim__driver_inflight(w->driver), sim__net_in_flight(w->net));
	cl_status *st = malloc(sizeof *st);
	SIM_ASSERT(st != NULL);
	for (uint32_t i = 0; i < w->nodes_count && n < size; i++) {
		sim_node *x = &w->nodes[i];
		if (!x->exists || x->removed)
			continue;
		if (!x->up) {
			n += (size_t)snprintf(out + n, size - n, "; n%u down", i + 1);
			continue;
		}
		cl_node_status(x->cl, st);
		n += (size_t)snprintf(out + n, size - n, "; n%u id=%u epoch=%"
			PRIu64 " lease=%d coordinator=%u moves_pending=%u "
			"in_flight=%u runnable=%d disk=%d journal=%d members=",
			i + 1, st->self, st->epoch, st->lease_held,
			st->coordinator, st->moves_pending, st->moves_in_flight,
			x->runnable, x->disk_queued,
			ps_journal_status(ps_node_journal(x->ps)));
		for (uint32_t k = 0; k < st->members_count && n < size; k++)
			n += (size_t)snprintf(out + n, size - n, "%s%u:%c%c",
				k ? "," : "", st->members[k].id,
				"SAD"[st->members[k].state % 3],
				"asd"[st->members[k].liveness % 3]);
	}
	free(st);
}

/* Convergence costs a status per node: looked at once a second. */
#define RUN_SETTLE_STEP_MS 1000u

bool
sim__settle(sim_world *w, uint64_t bound_ms)
{
	uint64_t deadline = w->now_ms + bound_ms;
	while (!w->failed) {
		/* quiet is cheap and looked at every instant (SWIM keeps a
		 * frame in flight much of the time); convergence once quiet */
		if (sim__run_until(w, deadline, sim__quiet, NULL) &&
			sim__converged(w))
			return true;
		if (w->now_ms >= deadline)
			return false;
		uint64_t step = w->now_ms + RUN_SETTLE_STEP_MS;
		sim__run_until(w, step < deadline ? step : deadline, NULL, NULL);
	}
	return false;
}

/* Heals everything and waits until the cluster is quiet and converged. */
static int
heal_and_settle(sim_world *w)
{
	sim__driver_stop(w->driver);
	sim__faults_heal(w);
	uint64_t healed = w->now_ms;
	sim__log(w, "healed; settling");
	sim__run_until(w, healed + RUN_SETTLE_MS, NULL, NULL);
	uint64_t bound = w->opts.mode == SIM_MODE_LIVENESS
		? RUN_LIVENESS_BOUND_MS : RUN_CONVERGE_MS_MAX;
	if (w->failed)
		return -1;
	if (!sim__settle(w, bound)) {
		char why[700];
		sim__why_unsettled(w, why, sizeof why);
		if (!w->failed)
			sim__fail(w, "liveness", "not quiet and converged %" PRIu64
				" s after healing: %s", (w->now_ms - healed) / 1000,
				why);
		return -1;
	}
	sim__log(w, "settled after %" PRIu64 " ms", w->now_ms - healed);
	return 0;
}

static void
teardown(sim_world *w)
{
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (w->nodes[i].up)
			sim__node_stop(w, i);
	sim__driver_destroy(w->driver);
	sim__lives_destroy(w);
	sim__model_destroy(w->model);
	sim__events_free(&w->events);
	sim__net_destroy(w->net);
	free(w->epochs);
	nftw(w->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t
final_hash(const sim_world *w)
{
	uint64_t h = w->hash;
	for (uint32_t i = 0; i < w->nodes_count; i++)
		h = sim__hash_step(h, sim__node_trace(&w->nodes[i]));
	return h;
}

static int
build(sim_world *w)
{
	sim__events_init(&w->events);
	/* The driver first: an edge file decides the number of users. */
	if (sim__net_create(w, &w->net) != 0 ||
		sim__driver_create(w, &w->driver) != 0 ||
		sim__model_create(w, &w->model) != 0 ||
		sim__lives_create(w) != 0)
		return -1;
	sim__knobs_print(w, NULL);
	w->nodes_count = w->knobs.nodes;
	for (uint32_t i = 0; i < w->nodes_count; i++)
		sim__node_init(w, i);
	if (write_initial_maps(w) != 0)
		return -1;
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (sim__node_start(w, i, NULL) != 0)
			return -1;
	return 0;
}

static void
run_phases(sim_world *w)
{
	/* Nodes start from their map files, and such a node holds no lease
	 * until a majority has answered it (cluster.h): let them meet. */
	if (!sim__settle(w, RUN_CONVERGE_MS_MAX)) {
		char why[700];
		sim__why_unsettled(w, why, sizeof why);
		if (!w->failed)
			sim__fail(w, "setup", "the cluster did not form: %s", why);
		return;
	}
	if (sim__driver_setup(w->driver) != 0)
		return;
	sim__log(w, "setup done: %u users", w->knobs.users);
	w->end_ms = w->now_ms + w->knobs.sim_time_ms;
	w->faults_on = true;
	sim__faults_start(w);
	sim__lives_start(w);
	sim__schedule(w, w->now_ms + 1, SIM_EV_OP, SIM_NODES_MAX, 0);
	sim__run_until(w, w->end_ms, NULL, NULL);
	if (w->failed)
		return;
	w->faults_on = false;
	sim__log(w, "workload done");
	if (heal_and_settle(w) != 0)
		return;
	/* Before the quiescence checks, which restart nodes: a stream
	 * whose actor moved or restarted during the run must be live now. */
	if (sim__lives_check(w) != 0)
		return;
	if (!sim__settle(w, RUN_CONVERGE_MS_MAX)) {
		char why[700];
		sim__why_unsettled(w, why, sizeof why);
		if (!w->failed)
			sim__fail(w, "liveness", "not quiet after the streams' "
				"probe: %s", why);
		return;
	}
	sim__check_quiescent(w);
}

int
sim_run(const sim_options *o, sim_result *out)
{
	SIM_ASSERT(o != NULL);
	SIM_ASSERT(out != NULL);
	memset(out, 0, sizeof *out);
	if (o->nodes == 0 || o->nodes > SIM_NODES_MAX - 2 ||
		o->users > SIM_USERS_MAX)
		return SIM_EINVAL;
	sim_world *w = calloc(1, sizeof *w);
	if (w == NULL)
		return SIM_EIO;
	w->opts = *o;
	w->seed = o->seed;
	w->result = out;
	w->log = o->verbose ? stderr : NULL;
	if (o->trace_path != NULL && (w->trace = fopen(o->trace_path, "w")) ==
		NULL) {
		free(w);
		return SIM_EIO;
	}
	for (int s = 1; s <= SIM_STREAM_LIVE; s++)
		sim__rng_seed(&w->rng[s], o->seed, (uint64_t)s);
	sim__knobs_draw(w);
	if (make_run_dir(w) != 0) {
		if (w->trace != NULL)
			fclose(w->trace);
		free(w);
		return SIM_EIO;
	}
	int rc = SIM_OK;
	if (build(w) != 0) {
		if (!w->failed)
			sim__fail(w, "setup", "the world could not be built");
		rc = SIM_ESETUP;
	} else {
		run_phases(w);
	}
	out->sim_ms = w->now_ms;
	out->trace_hash = final_hash(w);
	out->passed = !w->failed;
	if (w->failed)
		snprintf(out->failure, sizeof out->failure, "%s", w->failure);
	teardown(w);
	if (w->trace != NULL)
		fclose(w->trace);
	free(w);
	return rc;
}
