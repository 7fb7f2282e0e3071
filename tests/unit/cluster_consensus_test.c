/*
 * cluster_consensus_test.c — each epoch's map is committed by a majority
 * before anyone acts on it.
 *
 * Goal: no two nodes ever hold different maps at one epoch, and no node
 * adopts (acts on) a map a majority did not accept, when the coordinator
 * crashes right after it saved a proposal no member accepted, or after a
 * minority accepted it; when two nodes both believe they coordinate (one
 * cut off); and when a node comes back with a stale map while the
 * coordinator dies. Also the pure parts: the vote rule, majorities, the
 * messages' forms and the consensus state in the map file.
 *
 * Method: three or five cl_nodes on one cl_memnet in manual-tick mode,
 * opened from map files written as an operator would (every node
 * active), driven by a loop that advances virtual time 10 ms, ticks
 * every open node and runs the network. After every tick, every open
 * node's committed map is recorded by epoch, the first one seen at each
 * epoch kept: a node holding another map at a recorded epoch, or a node
 * whose epoch goes down (across its restarts too), fails the test. A
 * crash is cl_node_close without a drain; a restart opens the same data
 * directory with a new incarnation. Links are cut with cl_memnet_block.
 */
#include "cluster/internal.h"
#include "tests/test.h"

#include <sys/stat.h>

#define NODES_MAX 5
#define EPOCHS_MAX 4096
#define TICKS_MAX 6000

typedef struct harness {
	cl_memnet *net;
	uint32_t count;
	cl_node *nodes[NODES_MAX];
	char dirs[NODES_MAX][300];
	char addresses[NODES_MAX][32];
	uint64_t lives[NODES_MAX];
	uint64_t max_epoch[NODES_MAX];
	uint64_t seen[EPOCHS_MAX]; /* map hash by epoch; 0: none yet */
	uint64_t now;
} harness;

/* What a map decides: owners and members' states. */
static uint64_t
map_hash(const cl_map *m)
{
	uint64_t h = cl__fnv64(m->owner, sizeof m->owner);
	for (uint32_t i = 0; i < m->nodes_count; i++)
		h = h * 31u + cl__mix64((uint64_t)m->nodes[i].id << 8 |
				     m->nodes[i].state);
	return h | 1u;
}

static void
record(harness *h)
{
	cl_map *m = malloc(sizeof *m);
	CHECK(m != NULL);
	for (uint32_t i = 0; i < h->count; i++) {
		if (h->nodes[i] == NULL)
			continue;
		cl_node_map(h->nodes[i], m);
		CHECK_MSG(m->epoch >= h->max_epoch[i], "n%u went from epoch "
			"%" PRIu64 " to %" PRIu64, i + 1, h->max_epoch[i],
			m->epoch);
		h->max_epoch[i] = m->epoch;
		CHECK(m->epoch < EPOCHS_MAX);
		uint64_t x = map_hash(m);
		if (h->seen[m->epoch] == 0)
			h->seen[m->epoch] = x;
		CHECK_MSG(h->seen[m->epoch] == x, "n%u holds another map at "
			"epoch %" PRIu64, i + 1, m->epoch);
	}
	free(m);
}

static void
open_node(harness *h, uint32_t i, const char *join)
{
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = h->addresses[i];
	cfg.join = join;
	cfg.data_dir = h->dirs[i];
	CHECK_EQ(cl_memnet_transport(h->net, &cfg.transport_ops,
			 &cfg.transport), 0);
	cfg.manual_tick = true;
	/* a new incarnation for every life (manual mode: seed | 1) */
	cfg.seed = (uint64_t)i * 1000 + 2 * ++h->lives[i];
	cfg.rebalance_step_partitions = 1024;
	CHECK_EQ(cl_node_open(&cfg, NULL, &h->nodes[i]), 0);
}

static void
crash(harness *h, uint32_t i)
{
	cl_node_close(h->nodes[i]);
	h->nodes[i] = NULL;
}

static void
tick(harness *h)
{
	h->now += 10;
	for (uint32_t i = 0; i < h->count; i++)
		if (h->nodes[i] != NULL)
			cl_node_tick(h->nodes[i], h->now);
	cl_memnet_run(h->net, 0);
	record(h);
}

static void
ticks(harness *h, int k)
{
	for (int j = 0; j < k; j++)
		tick(h);
}

/* Cuts node i off from node j (both ways), or heals it. */
static void
cut(harness *h, uint32_t i, uint32_t j, bool blocked)
{
	cl_memnet_block(h->net, h->addresses[i], h->addresses[j], blocked);
	cl_memnet_block(h->net, h->addresses[j], h->addresses[i], blocked);
}

static void
status(harness *h, uint32_t i, cl_status *st)
{
	CHECK(h->nodes[i] != NULL);
	cl_node_status(h->nodes[i], st);
}

/* Node i leads (as it sees itself) with a lease. */
static bool
leads(harness *h, uint32_t i)
{
	if (h->nodes[i] == NULL)
		return false;
	cl_status st;
	status(h, i, &st);
	return st.coordinator == st.self && st.lease_held;
}

static uint64_t
epoch_of(harness *h, uint32_t i)
{
	cl_status st;
	status(h, i, &st);
	return st.epoch;
}

static void
until_leads(harness *h, uint32_t i)
{
	int k = 0;
	while (k < TICKS_MAX && !leads(h, i)) {
		tick(h);
		k++;
	}
	CHECK_MSG(k < TICKS_MAX, "n%u does not lead", i + 1);
}

static void
until_epoch(harness *h, uint32_t i, uint64_t epoch)
{
	int k = 0;
	while (k < TICKS_MAX && epoch_of(h, i) < epoch) {
		tick(h);
		k++;
	}
	CHECK_MSG(k < TICKS_MAX, "n%u is not at epoch %" PRIu64, i + 1,
		epoch);
}

/* Every open node at one epoch, one leader they all follow, nothing
 * moving. */
static bool
settled(harness *h)
{
	cl_status st;
	uint64_t epoch = 0;
	uint16_t coordinator = 0;
	for (uint32_t i = 0; i < h->count; i++) {
		if (h->nodes[i] == NULL)
			continue;
		status(h, i, &st);
		if (st.coordinator == 0 || st.moves_in_flight != 0 ||
			!st.lease_held ||
			(st.coordinator == st.self && st.moves_pending != 0))
			return false;
		if ((epoch != 0 && st.epoch != epoch) ||
			(coordinator != 0 && st.coordinator != coordinator))
			return false;
		epoch = st.epoch;
		coordinator = st.coordinator;
	}
	return true;
}

static void
until_settled(harness *h)
{
	int k = 0;
	while (k < TICKS_MAX && !settled(h)) {
		tick(h);
		k++;
	}
	CHECK_MSG(k < TICKS_MAX, "not settled");
	ticks(h, 50);
	CHECK(settled(h));
}

/* count nodes, every one active, epoch 1, as an operator writes them. */
static harness *
harness_new(uint32_t count, uint32_t spare)
{
	harness *h = calloc(1, sizeof *h);
	CHECK(h != NULL);
	h->count = count + spare;
	h->now = 1000;
	CHECK_EQ(cl_memnet_create(&h->net), 0);
	static int runs;
	runs++;
	cl_map *map = malloc(2 * sizeof *map);
	CHECK(map != NULL);
	cl_map *target = map + 1;
	cl_map_init(map);
	for (uint32_t i = 0; i < h->count; i++) {
		snprintf(h->dirs[i], sizeof h->dirs[i], "%s/r%d-n%u",
			test_tmpdir(), runs, i);
		mkdir(h->dirs[i], 0755);
		snprintf(h->addresses[i], sizeof h->addresses[i],
			"node%u:7400", i);
		uint16_t id;
		if (i < count) {
			CHECK_EQ(cl_map_add_node(map, h->addresses[i],
					 CL_NODE_ACTIVE, &id), 0);
			CHECK_EQ(id, i + 1);
		}
	}
	cl_map_target(map, target);
	target->epoch = 1;
	for (uint32_t i = 0; i < count; i++)
		CHECK_EQ(cl_map_save(h->dirs[i], (uint16_t)(i + 1), target), 0);
	free(map);
	for (uint32_t i = 0; i < count; i++)
		open_node(h, i, NULL);
	/* the lowest id stands first and wins */
	until_leads(h, 0);
	until_settled(h);
	return h;
}

static void
harness_free(harness *h)
{
	for (uint32_t i = 0; i < h->count; i++)
		cl_node_close(h->nodes[i]);
	cl_memnet_destroy(h->net);
	free(h);
}

/* The state of member id in node i's committed map. */
static int
state_at(harness *h, uint32_t i, uint16_t id)
{
	cl_map *m = malloc(sizeof *m);
	CHECK(m != NULL);
	cl_node_map(h->nodes[i], m);
	const cl_map_node *x = cl_map_find(m, id);
	int state = x == NULL ? -1 : x->state;
	free(m);
	return state;
}

/* What node i's map file holds above its committed map. */
static bool
saved_entry(harness *h, uint32_t i, cl_map *entry, uint64_t *term)
{
	cl_map *m = malloc(sizeof *m);
	CHECK(m != NULL);
	cl__vote_state v = {.entry = entry};
	uint16_t self;
	CHECK_EQ(cl__map_file_load_vote(h->dirs[i], &self, m, NULL, NULL, &v),
		0);
	free(m);
	*term = v.entry_term;
	return v.has_entry;
}

/* ---- the pure parts ---------------------------------------------------- */

TEST(cluster_consensus_vote_rule)
{
	/* a later epoch wins, committed or not */
	CHECK(cl__vote_up_to_date(5, 6, 1, 5, 5, 0));
	CHECK(!cl__vote_up_to_date(5, 5, 0, 5, 6, 1));
	CHECK(cl__vote_up_to_date(7, 7, 0, 5, 6, 9));
	/* the same epoch: committed beats accepted, never the reverse */
	CHECK(cl__vote_up_to_date(6, 6, 0, 5, 6, 3));
	CHECK(!cl__vote_up_to_date(5, 6, 9, 6, 6, 0));
	CHECK(cl__vote_up_to_date(6, 6, 0, 6, 6, 0));
	/* two accepted at one epoch: the later term */
	CHECK(cl__vote_up_to_date(5, 6, 4, 5, 6, 4));
	CHECK(cl__vote_up_to_date(5, 6, 5, 5, 6, 4));
	CHECK(!cl__vote_up_to_date(5, 6, 3, 5, 6, 4));
}

TEST(cluster_consensus_majorities_count_voters)
{
	cl_map *m = malloc(sizeof *m);
	cl_map_init(m);
	uint16_t id;
	CHECK_EQ(cl_map_add_node(m, "a:1", CL_NODE_ACTIVE, &id), 0);
	CHECK_EQ(cl_map_add_node(m, "b:1", CL_NODE_DRAINING, &id), 0);
	CHECK_EQ(cl_map_add_node(m, "c:1", CL_NODE_ACTIVE, &id), 0);
	CHECK_EQ(cl_map_add_node(m, "d:1", CL_NODE_STANDBY, &id), 0);
	CHECK(cl__map_voter(m, 2));
	CHECK(!cl__map_voter(m, 4));
	CHECK(!cl__map_voter(m, 9));
	uint16_t two[] = {1, 2};
	uint16_t one_and_standby[] = {1, 4, 4};
	uint16_t dup[] = {3, 3};
	CHECK(cl__map_majority(m, two, 2));
	CHECK(!cl__map_majority(m, one_and_standby, 3));
	CHECK(!cl__map_majority(m, dup, 2));
	/* nobody active (a cluster being formed): every member votes */
	cl_map_set_state(m, 1, CL_NODE_STANDBY);
	cl_map_set_state(m, 2, CL_NODE_STANDBY);
	cl_map_set_state(m, 3, CL_NODE_STANDBY);
	CHECK(cl__map_voter(m, 4));
	uint16_t three[] = {1, 2, 4};
	CHECK(cl__map_majority(m, three, 3));
	CHECK(!cl__map_majority(m, two, 2));
	free(m);
}

TEST(cluster_consensus_messages_roundtrip_and_refuse_garbage)
{
	rt_buffer b = {0};
	cl__vote_request q = {.term = 9, .pre = true, .committed = 4,
		.last_epoch = 5, .last_term = 8}, q2;
	CHECK_EQ(cl__vote_request_encode(&q, &b), 0);
	CHECK_EQ(cl__vote_request_decode(b.bytes, b.length, &q2), 0);
	CHECK(q2.term == 9 && q2.pre && q2.committed == 4 &&
		q2.last_epoch == 5 && q2.last_term == 8);
	CHECK(cl__vote_request_decode(b.bytes, b.length - 1, &q2) != 0);
	/* a request is no reply: its third field (4) is no flag */
	cl__vote_reply v2;
	CHECK(cl__vote_reply_decode(b.bytes, b.length, &v2) != 0);
	b.length = 0;
	cl__vote_reply v = {.term = 3, .asked = 4, .granted = true,
		.leader = 65535};
	CHECK_EQ(cl__vote_reply_encode(&v, &b), 0);
	CHECK_EQ(cl__vote_reply_decode(b.bytes, b.length, &v2), 0);
	CHECK(v2.term == 3 && v2.asked == 4 && v2.granted && !v2.pre &&
		v2.leader == 65535);
	b.length = 0;
	cl__accepted a = {.term = 7, .epoch = 11, .ok = true}, a2;
	CHECK_EQ(cl__accepted_encode(&a, &b), 0);
	CHECK_EQ(cl__accepted_decode(b.bytes, b.length, &a2), 0);
	CHECK(a2.term == 7 && a2.epoch == 11 && a2.ok);
	/* a flag that is not 0 or 1, a request whose last is below its
	 * committed epoch */
	static const unsigned char bad_flag[] = {0x93, 0x01, 0x02, 0x05};
	CHECK(cl__accepted_decode(bad_flag, sizeof bad_flag, &a2) != 0);
	cl__vote_request below = {.term = 1, .committed = 5, .last_epoch = 4};
	b.length = 0;
	CHECK_EQ(cl__vote_request_encode(&below, &b), 0);
	CHECK(cl__vote_request_decode(b.bytes, b.length, &q2) != 0);
	cl_map *m = malloc(2 * sizeof *m);
	cl_map_init(m);
	uint16_t id;
	CHECK_EQ(cl_map_add_node(m, "a:1", CL_NODE_ACTIVE, &id), 0);
	cl_map_target(m, m + 1);
	m[1].epoch = 12;
	b.length = 0;
	CHECK_EQ(cl__propose_encode(6, m + 1, &b), 0);
	uint64_t term = 0;
	CHECK_EQ(cl__propose_decode(b.bytes, b.length, &term, m), 0);
	CHECK_EQ(term, 6);
	CHECK(memcmp(m, m + 1, sizeof *m) == 0);
	CHECK(cl__propose_decode(b.bytes, b.length / 2, &term, m) != 0);
	free(m);
	rt_buffer_free(&b);
}

TEST(cluster_consensus_map_file_keeps_the_vote_and_the_entry)
{
	char dir[300];
	snprintf(dir, sizeof dir, "%s/vote", test_tmpdir());
	mkdir(dir, 0755);
	cl_map *m = malloc(3 * sizeof *m);
	cl_map_init(m);
	uint16_t id;
	CHECK_EQ(cl_map_add_node(m, "a:1", CL_NODE_ACTIVE, &id), 0);
	CHECK_EQ(cl_map_add_node(m, "b:1", CL_NODE_ACTIVE, &id), 0);
	cl_map_target(m, m + 1);
	m[1].epoch = 4;
	m[2] = m[1];
	m[2].epoch = 5;
	cl_map_set_state(&m[2], 2, CL_NODE_DRAINING);
	/* no consensus state (an older build's file): term 0, no entry */
	CHECK_EQ(cl_map_save(dir, 1, &m[1]), 0);
	cl_map *back = malloc(2 * sizeof *back);
	cl__vote_state v = {.term = 99, .entry = back + 1};
	uint16_t self;
	CHECK_EQ(cl__map_file_load_vote(dir, &self, back, NULL, NULL, &v), 0);
	CHECK(v.term == 0 && v.voted_for == 0 && !v.has_entry);
	cl__vote_state w = {.term = 7, .voted_for = 2, .has_entry = true,
		.entry_term = 6, .entry = &m[2]};
	CHECK_EQ(cl__map_file_save_vote(dir, 1, &m[1], NULL, 0, &w), 0);
	CHECK_EQ(cl__map_file_load_vote(dir, &self, back, NULL, NULL, &v), 0);
	CHECK(v.term == 7 && v.voted_for == 2 && v.has_entry &&
		v.entry_term == 6);
	CHECK(memcmp(back, &m[1], sizeof *back) == 0);
	CHECK(memcmp(back + 1, &m[2], sizeof *back) == 0);
	/* the plain load (an older reader) still reads the map */
	CHECK_EQ(cl_map_load(dir, &self, back), 0);
	CHECK_EQ(back->epoch, 4);
	/* an entry not above the map it is saved with is refused */
	m[2].epoch = 4;
	CHECK_EQ(cl__map_file_save_vote(dir, 1, &m[1], NULL, 0, &w), 0);
	CHECK_EQ(cl__map_file_load_vote(dir, &self, back, NULL, NULL, &v),
		CL_ECORRUPT);
	free(back);
	free(m);
}

/* ---- the protocol ------------------------------------------------------ */

/* The bug flocksim found (seed 3 of --faults crash,join,drain): the
 * coordinator saves a map no member accepted and crashes; another
 * coordinator makes a different map at that epoch; the first comes back
 * holding its own. Now it never adopts its own, and takes the other. */
TEST_WITH_TIMEOUT(cluster_consensus_coordinator_crash_after_save_before_any_ack,
	120)
{
	harness *h = harness_new(3, 0);
	uint64_t e = epoch_of(h, 0);
	cut(h, 0, 1, true);
	cut(h, 0, 2, true);
	CHECK_EQ(cl_node_admin_drain(h->nodes[0], 3), 0);
	ticks(h, 5);
	/* saved (the map file holds it above the committed map), not
	 * adopted */
	cl_map *entry = malloc(sizeof *entry);
	uint64_t term;
	CHECK(saved_entry(h, 0, entry, &term));
	CHECK_EQ(entry->epoch, e + 1);
	CHECK_EQ(cl_map_find(entry, 3)->state, CL_NODE_DRAINING);
	CHECK_EQ(epoch_of(h, 0), e);
	CHECK_EQ(state_at(h, 0, 3), CL_NODE_ACTIVE);
	crash(h, 0);
	cut(h, 0, 1, false);
	cut(h, 0, 2, false);
	/* n2 takes over once n1 is seen down, and makes another map at
	 * the same epoch */
	until_leads(h, 1);
	CHECK_EQ(cl_node_admin_drain(h->nodes[1], 2), 0);
	until_epoch(h, 1, e + 1);
	CHECK_EQ(state_at(h, 1, 2), CL_NODE_DRAINING);
	CHECK_EQ(state_at(h, 1, 3), CL_NODE_ACTIVE);
	open_node(h, 0, NULL);
	until_settled(h);
	/* n1 holds n2's map; its own was never committed anywhere */
	CHECK(epoch_of(h, 0) >= e + 1);
	CHECK_EQ(state_at(h, 0, 3), CL_NODE_ACTIVE);
	CHECK(!saved_entry(h, 0, entry, &term));
	free(entry);
	harness_free(h);
}

/* Five nodes; the coordinator reaches one member only: that member
 * accepts its proposal (two of five: no majority). */
static harness *
minority_accepts(uint64_t *e, uint64_t *accepted)
{
	harness *h = harness_new(5, 0);
	*e = epoch_of(h, 0);
	for (uint32_t j = 2; j < 5; j++)
		cut(h, 0, j, true);
	CHECK_EQ(cl_node_admin_drain(h->nodes[0], 5), 0);
	ticks(h, 10);
	cl_map *entry = malloc(sizeof *entry);
	uint64_t term;
	CHECK(saved_entry(h, 1, entry, &term));
	CHECK_EQ(entry->epoch, *e + 1);
	*accepted = map_hash(entry);
	free(entry);
	for (uint32_t i = 0; i < 5; i++)
		CHECK_EQ(epoch_of(h, i), *e);
	crash(h, 0);
	return h;
}

/* The member that accepted is cut off too: the other three commit
 * another map at that epoch, and the member drops what it accepted. */
TEST_WITH_TIMEOUT(cluster_consensus_minority_ack_is_replaced, 120)
{
	uint64_t e, accepted;
	harness *h = minority_accepts(&e, &accepted);
	for (uint32_t j = 2; j < 5; j++)
		cut(h, 1, j, true);
	until_leads(h, 2);
	CHECK_EQ(cl_node_admin_drain(h->nodes[2], 4), 0);
	until_epoch(h, 2, e + 1);
	for (uint32_t j = 0; j < 5; j++)
		cut(h, 0, j, false), cut(h, 1, j, false);
	open_node(h, 0, NULL);
	until_settled(h);
	for (uint32_t i = 0; i < 5; i++) {
		CHECK(epoch_of(h, i) >= e + 1);
		CHECK_EQ(state_at(h, i, 5), CL_NODE_ACTIVE);
	}
	CHECK(h->seen[e + 1] != accepted);
	harness_free(h);
}

/* Everyone can talk again: the member that accepted stands first, and
 * as the new leader commits what it accepted, under its own term. */
TEST_WITH_TIMEOUT(cluster_consensus_minority_ack_is_proposed_again, 120)
{
	uint64_t e, accepted;
	harness *h = minority_accepts(&e, &accepted);
	for (uint32_t j = 2; j < 5; j++)
		cut(h, 0, j, false);
	until_leads(h, 1);
	until_epoch(h, 1, e + 1);
	/* the map committed at that epoch is the one n2 accepted */
	CHECK_EQ_U64(h->seen[e + 1], accepted);
	open_node(h, 0, NULL);
	until_settled(h);
	CHECK(state_at(h, 0, 5) == CL_NODE_DRAINING ||
		state_at(h, 0, 5) == CL_NODE_STANDBY);
	harness_free(h);
}

/* The coordinator is cut off from both others: they elect one of their
 * own while it still believes it coordinates. Only the majority's map is
 * committed; once healed the old coordinator follows. */
TEST_WITH_TIMEOUT(cluster_consensus_competing_coordinators, 120)
{
	harness *h = harness_new(3, 0);
	uint64_t e = epoch_of(h, 0);
	cut(h, 0, 1, true);
	cut(h, 0, 2, true);
	CHECK_EQ(cl_node_admin_drain(h->nodes[0], 2), 0);
	until_leads(h, 1);
	cl_status st;
	for (int k = 0; k < TICKS_MAX; k++) {
		status(h, 0, &st);
		if (!st.lease_held)
			break;
		tick(h);
	}
	CHECK_EQ(st.coordinator, 1); /* it still believes it leads */
	CHECK(!st.lease_held);
	/* without a lease it takes no request at all */
	CHECK_EQ(cl_node_admin_drain(h->nodes[0], 2), CL_EUNAVAILABLE);
	CHECK_EQ(cl_node_admin_drain(h->nodes[1], 3), 0);
	until_epoch(h, 1, e + 1);
	CHECK_EQ(epoch_of(h, 0), e);
	cut(h, 0, 1, false);
	cut(h, 0, 2, false);
	until_settled(h);
	for (uint32_t i = 0; i < 3; i++) {
		status(h, i, &st);
		CHECK_EQ(st.coordinator, 2);
		CHECK_EQ(state_at(h, i, 2), CL_NODE_ACTIVE);
	}
	harness_free(h);
}

/* A node down while epochs were committed comes back with its old map
 * just as the coordinator dies: it must not lead (it would make a map
 * at an epoch already taken); the member that has the epochs does. */
TEST_WITH_TIMEOUT(cluster_consensus_restart_with_stale_epoch, 120)
{
	harness *h = harness_new(3, 2);
	uint64_t e = epoch_of(h, 0);
	crash(h, 2);
	/* two joins (standby members: nothing moves), each an epoch */
	for (uint32_t j = 3; j < 5; j++) {
		open_node(h, j, h->addresses[0]);
		for (int k = 0; k < 1000 && cl_node_id(h->nodes[j]) == 0; k++)
			tick(h);
		CHECK(cl_node_id(h->nodes[j]) != 0);
	}
	ticks(h, 20);
	uint64_t now_epoch = epoch_of(h, 0);
	CHECK_EQ(now_epoch, e + 2);
	open_node(h, 2, NULL);
	crash(h, 0);
	CHECK_EQ(epoch_of(h, 2), e);
	int k = 0;
	for (; k < TICKS_MAX && !leads(h, 1); k++) {
		tick(h);
		cl_status st;
		status(h, 2, &st);
		CHECK_MSG(st.coordinator != st.self || st.epoch >= now_epoch,
			"n3 leads with the stale epoch %" PRIu64, st.epoch);
	}
	CHECK(k < TICKS_MAX);
	until_epoch(h, 2, now_epoch);
	open_node(h, 0, NULL);
	until_settled(h);
	cl_status st;
	status(h, 2, &st);
	CHECK_EQ(st.coordinator, 2);
	harness_free(h);
}
