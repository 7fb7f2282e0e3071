/*
 * cluster_handoff_test.c — a crash in the middle of a partition handoff.
 *
 * Goal: when the old owner or the new owner of moving partitions dies at
 * any point of the handoff (before the state ships, while it ships,
 * after DONE, after the new owner serves, before the old owner hears
 * so) and comes back from its data directory, the handoff completes:
 * every partition's state ends exactly once, intact, at the node the map
 * names; nothing stays pending; and no message is delivered twice or out
 * of order per sender (a crash may lose what the dead node held in
 * memory, as any crash does).
 *
 * Method: three cl_nodes on one cl_memnet in manual-tick mode, each with
 * an in-memory store behind cl_state_ops that outlives the node (its
 * "disk": an import replaces, as persistence's does). Node 1 bootstraps
 * with one actor's state per partition; node 2 is added and the
 * rebalance runs to the end; then node 3 is added, which moves
 * partitions from nodes 1 and 2 to node 3. The network delivers one
 * frame per 10 ms tick, and the victim (node 2, an old owner, or node 3,
 * the new owner) is closed without a drain after k frames, for k spread
 * over the whole handoff (a first run without a crash measures its
 * length), then reopened from its directory with a new incarnation.
 * Senders on node 1 (never crashed) send numbered messages throughout.
 */
#include "cluster/internal.h"
#include "tests/test.h"

#include <sys/stat.h>

#define NODES 3
#define SENDERS 8
#define BUCKETS 64
/* Crash points per victim, spread over the handoff. */
#define CRASH_POINTS 12
/* Ticks a victim stays down: long enough for SWIM to mark it down
 * (1.4 s), so both the down and the back-again paths run. */
#define DOWN_TICKS 300
/* Ticks the whole thing may take to settle after the restart. */
#define SETTLE_TICKS_MAX 20000

typedef struct store {
	uint32_t count;
	rt_addr addr[CL_PARTITIONS];
	uint32_t value[CL_PARTITIONS];
} store;

typedef struct harness {
	cl_memnet *net;
	cl_node *nodes[NODES];
	store stores[NODES];
	char dirs[NODES][300];
	char addresses[NODES][32];
	uint64_t incarnations[NODES];
	uint64_t now;
	uint64_t sent[SENDERS][BUCKETS];
	uint64_t last[SENDERS][BUCKETS]; /* last delivered seq + 1 */
	uint64_t delivered;
	uint64_t duplicates_or_reordered;
	uint64_t rng;
} harness;

static int
store_export(void *arg, uint32_t partition, cl_state_item_callback item,
	void *item_arg)
{
	store *s = arg;
	for (uint32_t i = 0; i < s->count; i++)
		if (cl_partition_of(s->addr[i].id) == partition) {
			int rc = item(item_arg, s->addr[i], &s->value[i],
				sizeof s->value[i]);
			if (rc != 0)
				return rc;
		}
	return 0;
}

static int
store_import(void *arg, rt_addr addr, const void *bytes, size_t length)
{
	store *s = arg;
	CHECK_EQ(length, sizeof(uint32_t));
	uint32_t i = 0;
	while (i < s->count && (s->addr[i].kind != addr.kind ||
		s->addr[i].id != addr.id))
		i++;
	CHECK(i < CL_PARTITIONS);
	if (i == s->count)
		s->count++;
	s->addr[i] = addr;
	memcpy(&s->value[i], bytes, length);
	return 0;
}

static int
store_drop(void *arg, uint32_t partition)
{
	store *s = arg;
	uint32_t kept = 0;
	for (uint32_t i = 0; i < s->count; i++)
		if (cl_partition_of(s->addr[i].id) != partition) {
			s->addr[kept] = s->addr[i];
			s->value[kept] = s->value[i];
			kept++;
		}
	s->count = kept;
	return 0;
}

static const cl_state_ops store_ops = {
	.export_partition = store_export,
	.import_actor = store_import,
	.drop_partition = store_drop,
};

static harness *H;

static void
on_deliver(void *arg, const cl_envelope *e)
{
	(void)arg;
	CHECK_EQ(e->size, 8);
	uint64_t seq;
	memcpy(&seq, e->payload, 8);
	uint32_t sender = (uint32_t)e->from.id;
	uint32_t bucket = cl_partition_of(e->to.id) % BUCKETS;
	CHECK(sender < SENDERS);
	/* a crash may lose messages (a gap); never one twice or late */
	if (seq < H->last[sender][bucket]) {
		if (H->duplicates_or_reordered < 10)
			fprintf(stderr, "sender %u partition %u: got %" PRIu64
				" after %" PRIu64 "\n", sender,
				cl_partition_of(e->to.id), seq,
				H->last[sender][bucket] - 1);
		H->duplicates_or_reordered++;
	}
	H->last[sender][bucket] = seq + 1;
	H->delivered++;
}

static void
open_node(harness *h, int i, const char *join)
{
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = h->addresses[i];
	cfg.join = join;
	cfg.data_dir = h->dirs[i];
	CHECK_EQ(cl_memnet_transport(h->net, &cfg.transport_ops,
			 &cfg.transport), 0);
	cfg.state_ops = &store_ops;
	cfg.state_arg = &h->stores[i];
	cfg.manual_tick = true;
	/* a new incarnation for every life (manual mode: seed | 1) */
	cfg.seed = (uint64_t)i * 1000 + 2 * ++h->incarnations[i];
	cfg.rebalance_step_partitions = 256;
	CHECK_EQ(cl_node_open(&cfg, NULL, &h->nodes[i]), 0);
	cl_node_set_deliver(h->nodes[i], on_deliver, NULL);
}

static void
send_some(harness *h, int count)
{
	for (int k = 0; k < count; k++) {
		uint32_t sender = (uint32_t)(cl__rand_next(&h->rng) % SENDERS);
		uint32_t bucket = (uint32_t)(cl__rand_next(&h->rng) % BUCKETS);
		/* one partition per (sender, bucket): order is per pair */
		uint32_t partition = bucket + BUCKETS *
			((sender * 31u + bucket * 7u) % (CL_PARTITIONS / BUCKETS));
		uint64_t seq = h->sent[sender][bucket];
		cl_envelope e = {
			.from = rt_addr_make(5, sender),
			.to = rt_addr_make(6, (uint64_t)partition << 10),
			.type = 1,
			.payload = (const unsigned char *)&seq,
			.size = 8,
		};
		/* held partitions refuse past their bound: try later */
		if (cl_node_send(h->nodes[0], &e) == 0)
			h->sent[sender][bucket]++;
	}
}

/* One tick: every node, then at most `frames` frames (0: all). */
static uint64_t
tick(harness *h, uint64_t frames)
{
	h->now += 10;
	for (int i = 0; i < NODES; i++)
		if (h->nodes[i] != NULL)
			cl_node_tick(h->nodes[i], h->now);
	return cl_memnet_run(h->net, frames);
}

static bool
settled(harness *h)
{
	cl_status st;
	for (int i = 0; i < NODES; i++) {
		if (h->nodes[i] == NULL)
			return false;
		cl_node_status(h->nodes[i], &st);
		if (st.moves_pending != 0 || st.moves_in_flight != 0 ||
			!st.lease_held)
			return false;
	}
	cl_map a, b;
	cl_node_map(h->nodes[0], &a);
	for (int i = 1; i < NODES; i++) {
		cl_node_map(h->nodes[i], &b);
		if (a.epoch != b.epoch)
			return false;
	}
	return true;
}

static void
run_until_settled(harness *h)
{
	int k = 0;
	while (k < SETTLE_TICKS_MAX && !settled(h)) {
		send_some(h, 5);
		tick(h, 0);
		k++;
	}
	CHECK_MSG(k < SETTLE_TICKS_MAX, "not settled after %d ticks", k);
	for (int j = 0; j < 100; j++)
		tick(h, 0);
}

static harness *
harness_new(void)
{
	harness *h = calloc(1, sizeof *h);
	CHECK(h != NULL);
	H = h;
	h->rng = 0x5eed;
	h->now = 1000;
	CHECK_EQ(cl_memnet_create(&h->net), 0);
	static int runs;
	runs++;
	for (int i = 0; i < NODES; i++) {
		snprintf(h->dirs[i], sizeof h->dirs[i], "%s/r%d-n%d",
			test_tmpdir(), runs, i);
		mkdir(h->dirs[i], 0755);
		snprintf(h->addresses[i], sizeof h->addresses[i],
			"node%d:7400", i);
	}
	/* node 1 owns everything: one actor per partition, value = p */
	store *s = &h->stores[0];
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		s->addr[s->count] = rt_addr_make(6, (uint64_t)p << 10);
		s->value[s->count] = p * 7 + 1;
		s->count++;
	}
	open_node(h, 0, NULL);
	for (int i = 1; i < NODES; i++) {
		open_node(h, i, h->addresses[0]);
		for (int k = 0; k < 300 && cl_node_id(h->nodes[i]) == 0; k++)
			tick(h, 0);
		CHECK(cl_node_id(h->nodes[i]) != 0);
	}
	for (int k = 0; k < 100; k++)
		tick(h, 0);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[1]), 0);
	run_until_settled(h);
	return h;
}

static void
harness_free(harness *h)
{
	for (int i = 0; i < NODES; i++)
		cl_node_close(h->nodes[i]);
	cl_memnet_destroy(h->net);
	free(h);
}

/* Each partition's state once, intact, at its owner; nothing else. */
static void
check_state(harness *h)
{
	cl_map map;
	cl_node_map(h->nodes[0], &map);
	uint32_t held = 0;
	for (int i = 0; i < NODES; i++) {
		store *s = &h->stores[i];
		uint16_t id = cl_node_id(h->nodes[i]);
		for (uint32_t k = 0; k < s->count; k++) {
			uint32_t p = cl_partition_of(s->addr[k].id);
			CHECK_MSG(map.owner[p] == id, "partition %u held by "
				"node %u, owned by %u", p, id, map.owner[p]);
			CHECK_EQ(s->value[k], p * 7 + 1);
		}
		held += s->count;
	}
	CHECK_EQ(held, CL_PARTITIONS);
	CHECK_EQ_U64(h->duplicates_or_reordered, 0);
}

/* Adds node 3 and runs the handoff; with victim >= 0, the victim dies
 * once `crash_after` frames were delivered (frames are delivered one at
 * a time, so it dies between any two) and comes back DOWN_TICKS later.
 * Returns the frames the handoff took to settle. */
static uint64_t
handoff(int victim, uint64_t crash_after)
{
	harness *h = harness_new();
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[2]), 0);
	uint64_t frames = 0;
	bool crashed = false;
	int k = 0;
	for (; k < SETTLE_TICKS_MAX && (victim >= 0 || !settled(h)); k++) {
		send_some(h, 5);
		h->now += 10;
		for (int i = 0; i < NODES; i++)
			if (h->nodes[i] != NULL)
				cl_node_tick(h->nodes[i], h->now);
		while (cl_memnet_run(h->net, 1) == 1) {
			frames++;
			if (victim >= 0 && !crashed && frames >= crash_after) {
				cl_node_close(h->nodes[victim]);
				h->nodes[victim] = NULL;
				crashed = true;
			}
		}
		if (crashed)
			break;
	}
	CHECK(victim < 0 || crashed);
	for (int j = 0; crashed && j < DOWN_TICKS; j++) {
		send_some(h, 5);
		tick(h, 0);
	}
	if (crashed) {
		open_node(h, victim, NULL);
		for (k = 0; k < SETTLE_TICKS_MAX && !settled(h); k++) {
			send_some(h, 5);
			tick(h, 0);
		}
	}
	CHECK_MSG(k < SETTLE_TICKS_MAX, "victim %d crashed after %" PRIu64
		" frames: not settled", victim, crash_after);
	for (int j = 0; j < 100; j++)
		tick(h, 0);
	check_state(h);
	CHECK(h->delivered > 0);
	harness_free(h);
	return frames;
}

TEST_WITH_TIMEOUT(cluster_handoff_completes_without_crash, 120)
{
	CHECK(handoff(-1, 0) > 0);
}

TEST_WITH_TIMEOUT(cluster_handoff_old_owner_crash_at_each_step, 600)
{
	uint64_t length = handoff(-1, 0);
	for (uint64_t k = 0; k < CRASH_POINTS; k++)
		handoff(1, 1 + k * length / CRASH_POINTS);
}

TEST_WITH_TIMEOUT(cluster_handoff_new_owner_crash_at_each_step, 600)
{
	uint64_t length = handoff(-1, 0);
	for (uint64_t k = 0; k < CRASH_POINTS; k++)
		handoff(2, 1 + k * length / CRASH_POINTS);
}
