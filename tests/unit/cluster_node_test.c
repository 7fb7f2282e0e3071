/*
 * cluster_node_test.c — nodes over the in-memory transport.
 *
 * Goal: joins, rebalancing under traffic with no message lost, duplicated
 * or reordered per sender; handoff ships state; forwarding after a map
 * change; fail-fast for a down owner; a cut-off minority loses its lease.
 *
 * Method: three or four cl_nodes on one cl_memnet, each in manual-tick
 * mode with its own data dir, driven by a loop that advances virtual
 * time 10 ms and runs the network; deliveries are recorded through
 * cl_node_set_deliver; state lives in a per-node in-memory store behind
 * cl_state_ops.
 */
#include "cluster/internal.h"
#include "tests/test.h"

#include <sys/stat.h>

#define NODES_MAX 4
#define SENDERS 16
#define STORE_MAX 20000

typedef struct store {
	uint32_t count;
	rt_addr addr[STORE_MAX];
	uint32_t value[STORE_MAX];
} store;

typedef struct harness {
	cl_memnet *net;
	cl_node *nodes[NODES_MAX];
	store stores[NODES_MAX];
	char dirs[NODES_MAX][300];
	char addresses[NODES_MAX][32];
	uint64_t now;
	/* next expected sequence per (sender, partition bucket) */
	uint64_t expect[SENDERS][64];
	uint64_t delivered;
	uint64_t duplicates_or_gaps;
} harness;

static harness *H;

/* A transport that passes everything to the in-memory one and records
 * the largest frame sent since the test last cleared it. */
typedef struct counting {
	const cl_transport_ops *ops;
	void *self;
} counting;

static size_t largest_frame_bytes;
/* QUERY envelopes (SYS_QUERY, 13 in node.c: an old owner asking where a
 * handoff stands) sent since the test last cleared it. */
#define SYS_QUERY_TYPE 13u
static uint64_t queries_sent;

static int
count_query(void *arg, const cl_envelope *e)
{
	(void)arg;
	if ((e->flags & CL_ENVELOPE_F_SYSTEM) && e->type == SYS_QUERY_TYPE)
		queries_sent++;
	return 0;
}

static int
counting_listen(void *self, const char *address)
{
	counting *c = self;
	return c->ops->listen(c->self, address);
}

static int
counting_peer_set(void *self, uint16_t peer, const char *address)
{
	counting *c = self;
	return c->ops->peer_set(c->self, peer, address);
}

static int
counting_peer_drop(void *self, uint16_t peer)
{
	counting *c = self;
	return c->ops->peer_drop(c->self, peer);
}

static int
counting_send(void *self, uint16_t peer, const void *bytes, size_t length)
{
	counting *c = self;
	if (length > largest_frame_bytes)
		largest_frame_bytes = length;
	cl_frame_header fh;
	(void)cl_frame_decode(bytes, length, &fh, count_query, NULL);
	return c->ops->send(c->self, peer, bytes, length);
}

static void
counting_set_receive(void *self, cl_frame_receive_callback cb, void *arg)
{
	counting *c = self;
	c->ops->set_receive(c->self, cb, arg);
}

static void
counting_destroy(void *self)
{
	counting *c = self;
	c->ops->destroy(c->self);
	free(c);
}

static const cl_transport_ops counting_ops = {
	.listen = counting_listen,
	.peer_set = counting_peer_set,
	.peer_drop = counting_peer_drop,
	.send = counting_send,
	.set_receive = counting_set_receive,
	.destroy = counting_destroy,
};

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
	CHECK(s->count < STORE_MAX);
	s->addr[s->count] = addr;
	memcpy(&s->value[s->count], bytes, length);
	s->count++;
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

/* The same store with a sync that finishes only when the test says so
 * (syncs_finish): a new owner whose imports take long to be durable. */
#define SYNCS_MAX 4096
static struct {
	cl_state_synced_callback done;
	void *arg;
} syncs[SYNCS_MAX];
static uint32_t syncs_count;
static bool stalled_sync;

static int
store_sync(void *arg, cl_state_synced_callback done, void *done_arg)
{
	(void)arg;
	CHECK(syncs_count < SYNCS_MAX);
	syncs[syncs_count].done = done;
	syncs[syncs_count].arg = done_arg;
	syncs_count++;
	return 0;
}

static void
syncs_finish(void)
{
	for (uint32_t i = 0; i < syncs_count; i++)
		syncs[i].done(syncs[i].arg, 0);
	syncs_count = 0;
}

static const cl_state_ops store_sync_ops = {
	.export_partition = store_export,
	.import_actor = store_import,
	.drop_partition = store_drop,
	.sync = store_sync,
};

static void
on_deliver(void *arg, const cl_envelope *e)
{
	(void)arg;
	CHECK_EQ(e->size, 8);
	uint64_t seq;
	memcpy(&seq, e->payload, 8);
	uint32_t sender = (uint32_t)e->from.id;
	uint32_t bucket = cl_partition_of(e->to.id) / 128;
	CHECK(sender < SENDERS);
	if (seq != H->expect[sender][bucket]) {
		if (H->duplicates_or_gaps < 10)
			fprintf(stderr, "order: sender %u partition %u got %"
				PRIu64 " expected %" PRIu64 " at node %p flags %x\n",
				sender, cl_partition_of(e->to.id), seq,
				H->expect[sender][bucket], arg, e->flags);
		H->duplicates_or_gaps++;
	}
	H->expect[sender][bucket] = seq + 1;
	H->delivered++;
}

static void
open_node(harness *h, int i, const char *join)
{
	snprintf(h->dirs[i], sizeof h->dirs[i], "%s/n%d", test_tmpdir(), i);
	mkdir(h->dirs[i], 0755);
	snprintf(h->addresses[i], sizeof h->addresses[i], "node%d:7400", i);
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = h->addresses[i];
	cfg.join = join;
	cfg.data_dir = h->dirs[i];
	counting *c = calloc(1, sizeof *c);
	CHECK(c != NULL);
	CHECK_EQ(cl_memnet_transport(h->net, &c->ops, &c->self), 0);
	cfg.transport_ops = &counting_ops;
	cfg.transport = c;
	cfg.state_ops = stalled_sync ? &store_sync_ops : &store_ops;
	cfg.state_arg = &h->stores[i];
	cfg.manual_tick = true;
	cfg.seed = (uint64_t)i * 1000 + 7;
	cfg.rebalance_step_partitions = 512;
	CHECK_EQ(cl_node_open(&cfg, NULL, &h->nodes[i]), 0);
	cl_node_set_deliver(h->nodes[i], on_deliver, (void *)(uintptr_t)(i + 1));
}

static void
step(harness *h)
{
	h->now += 10;
	for (int i = 0; i < NODES_MAX; i++)
		if (h->nodes[i] != NULL)
			cl_node_tick(h->nodes[i], h->now);
	cl_memnet_run(h->net, 0);
}

static harness *
harness_new(int nodes)
{
	harness *h = calloc(1, sizeof *h);
	H = h;
	CHECK_EQ(cl_memnet_create(&h->net), 0);
	h->now = 1000;
	open_node(h, 0, NULL);
	for (int i = 1; i < nodes; i++) {
		open_node(h, i, h->addresses[0]);
		for (int k = 0; k < 300 && cl_node_id(h->nodes[i]) == 0; k++)
			step(h);
		CHECK(cl_node_id(h->nodes[i]) != 0);
	}
	for (int k = 0; k < 100; k++)
		step(h);
	return h;
}

static void
harness_free(harness *h)
{
	for (int i = 0; i < NODES_MAX; i++)
		cl_node_close(h->nodes[i]);
	cl_memnet_destroy(h->net);
	free(h);
}

static uint64_t sent_seq[SENDERS][64];
static uint64_t send_rng = 12345;

static void
send_some(harness *h, int count)
{
	for (int k = 0; k < count; k++) {
		uint32_t sender = (uint32_t)(cl__rand_next(&send_rng) % SENDERS);
		uint32_t bucket = (uint32_t)(cl__rand_next(&send_rng) % 64);
		int at = (int)(sender % NODES_MAX);
		if (h->nodes[at] == NULL)
			at = 0;
		/* the same sender always sends from the same node */
		uint32_t partition = bucket * 128 + (sender % 128);
		uint64_t seq = sent_seq[sender][bucket];
		cl_envelope e = {
			.from = rt_addr_make(5, sender),
			.to = rt_addr_make(6, (uint64_t)partition << 10),
			.type = 1,
			.payload = (const unsigned char *)&seq,
			.size = 8,
		};
		int rc = cl_node_send(h->nodes[at], &e);
		CHECK_MSG(rc == 0, "send: %s", cl_strerror(rc));
		sent_seq[sender][bucket]++;
	}
}

static uint64_t
total_sent(void)
{
	uint64_t t = 0;
	for (int s = 0; s < SENDERS; s++)
		for (int b = 0; b < 64; b++)
			t += sent_seq[s][b];
	return t;
}

TEST_WITH_TIMEOUT(cluster_node_join_and_rebalance_under_traffic, 120)
{
	harness *h = harness_new(3);
	cl_map map;
	cl_node_map(h->nodes[0], &map);
	CHECK_EQ(map.nodes_count, 3);
	/* node 1 owns everything; give it state for every partition */
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		store *s = &h->stores[0];
		s->addr[s->count] = rt_addr_make(6, (uint64_t)p << 10);
		s->value[s->count] = p;
		s->count++;
	}
	send_some(h, 2000);
	step(h);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[1]), 0);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[2]), 0);
	cl_status st;
	for (int k = 0; k < 3000; k++) {
		send_some(h, 50);
		step(h);
		cl_node_status(h->nodes[0], &st);
		if (st.moves_pending == 0 && st.moves_in_flight == 0 && k > 50)
			break;
	}
	CHECK_EQ(st.moves_pending, 0);
	for (int k = 0; k < 200; k++)
		step(h);
	cl_node_map(h->nodes[0], &map);
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(&map, counts);
	for (int i = 0; i < 3; i++)
		CHECK(counts[i] == 2730 || counts[i] == 2731);
	CHECK_EQ_U64(H->delivered, total_sent());
	CHECK_EQ_U64(H->duplicates_or_gaps, 0);
	/* each node's store holds exactly its partitions */
	uint32_t held = 0;
	for (int i = 0; i < 3; i++) {
		store *s = &h->stores[i];
		uint16_t id = cl_node_id(h->nodes[i]);
		for (uint32_t k = 0; k < s->count; k++) {
			CHECK_EQ(map.owner[cl_partition_of(s->addr[k].id)], id);
			CHECK_EQ(s->value[k], cl_partition_of(s->addr[k].id));
		}
		held += s->count;
	}
	CHECK_EQ(held, CL_PARTITIONS);
	harness_free(h);
}

TEST_WITH_TIMEOUT(cluster_node_forwards_after_map_change, 60)
{
	harness *h = harness_new(2);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[1]), 0);
	cl_status st;
	for (int k = 0; k < 2000; k++) {
		step(h);
		cl_node_status(h->nodes[0], &st);
		if (st.moves_pending == 0 && st.moves_in_flight == 0 && k > 50)
			break;
	}
	cl_map map;
	cl_node_map(h->nodes[1], &map);
	/* a message for a partition node 2 owns, given to node 1 as if a
	 * stale sender routed it there, is forwarded, not dropped */
	uint32_t p = 0;
	while (map.owner[p] != cl_node_id(h->nodes[1]))
		p++;
	uint64_t before = H->delivered;
	memset(sent_seq, 0, sizeof sent_seq);
	memset(H->expect, 0, sizeof H->expect);
	uint64_t seq = 0;
	cl_envelope e = {
		.epoch = 1,
		.from = rt_addr_make(5, (uint64_t)(p % 128 == 0 ? 0 : 0)),
		.to = rt_addr_make(6, (uint64_t)p << 10),
		.type = 1,
		.payload = (const unsigned char *)&seq,
		.size = 8,
		.flags = 0,
	};
	CHECK_EQ(cl_node_send(h->nodes[0], &e), 0);
	for (int k = 0; k < 20; k++)
		step(h);
	CHECK_EQ_U64(H->delivered, before + 1);
	harness_free(h);
}

/* An old owner that shipped waits for SETTLED, which comes once the new
 * owner's imports are durable. While it waits it asks (QUERY: the answer
 * is lost only with a crash) less and less often, not every second: a
 * minute of waiting costs each partition a handful of asks. Once the
 * sync finishes the step settles. */
TEST_WITH_TIMEOUT(cluster_node_old_owner_backs_off_while_waiting_to_settle,
	60)
{
	stalled_sync = true;
	harness *h = harness_new(2);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[1]), 0);
	cl_status st;
	for (int k = 0; k < 100; k++)
		step(h);
	cl_node_status(h->nodes[0], &st);
	uint32_t waiting = st.moves_in_flight;
	CHECK(waiting > 0);
	CHECK(syncs_count > 0);
	queries_sent = 0;
	for (int k = 0; k < 6000; k++) /* a minute */
		step(h);
	cl_node_status(h->nodes[0], &st);
	CHECK_EQ(st.moves_in_flight, waiting); /* still waiting */
	/* once a second would be 60 each; backing off from 1 s by doubling
	 * up to 16 s is 6 */
	CHECK(queries_sent > 0);
	CHECK_MSG(queries_sent <= 8u * waiting, "%" PRIu64 " asks for %u "
		"partitions in a minute", queries_sent, waiting);
	syncs_finish();
	stalled_sync = false;
	for (int k = 0; k < 3000; k++) {
		step(h);
		syncs_finish();
		cl_node_status(h->nodes[0], &st);
		if (st.moves_pending == 0 && st.moves_in_flight == 0)
			break;
	}
	CHECK_EQ(st.moves_pending, 0);
	CHECK_EQ(st.moves_in_flight, 0);
	harness_free(h);
}

TEST_WITH_TIMEOUT(cluster_node_down_owner_fails_fast_and_minority_stops, 60)
{
	harness *h = harness_new(3);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[1]), 0);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[2]), 0);
	cl_status st;
	for (int k = 0; k < 3000; k++) {
		step(h);
		cl_node_status(h->nodes[0], &st);
		if (st.moves_pending == 0 && st.moves_in_flight == 0 && k > 50)
			break;
	}
	CHECK_EQ(st.moves_pending, 0);
	/* cut node 3 off from both others */
	cl_memnet_block(h->net, h->addresses[2], h->addresses[0], true);
	cl_memnet_block(h->net, h->addresses[2], h->addresses[1], true);
	uint64_t cut_at = h->now;
	for (int k = 0; k < 600; k++)
		step(h);
	cl_node_status(h->nodes[0], &st);
	CHECK_EQ(st.members[2].liveness, CL_LIVE_DOWN);
	cl_map map;
	cl_node_map(h->nodes[0], &map);
	uint32_t p = 0;
	while (map.owner[p] != cl_node_id(h->nodes[2]))
		p++;
	uint64_t seq = 0;
	cl_envelope e = {
		.from = rt_addr_make(5, 1),
		.to = rt_addr_make(6, (uint64_t)p << 10),
		.correlation = 9,
		.type = 1,
		.payload = (const unsigned char *)&seq,
		.size = 8,
	};
	CHECK_EQ(cl_node_send(h->nodes[0], &e), CL_EUNAVAILABLE);
	/* the minority lost its lease: it refuses its own partitions */
	cl_node_status(h->nodes[2], &st);
	CHECK(!st.lease_held);
	CHECK_EQ(cl_node_send(h->nodes[2], &e), CL_EUNAVAILABLE);
	CHECK(h->now - cut_at >= 3000);
	/* removal of the down node reassigns its partitions at once */
	CHECK_EQ(cl_node_admin_remove(h->nodes[0], cl_node_id(h->nodes[2]),
			 false), 0);
	for (int k = 0; k < 50; k++)
		step(h);
	cl_node_map(h->nodes[1], &map);
	CHECK_EQ(map.nodes_count, 2);
	CHECK(map.owner[p] != 0);
	harness_free(h);
}

/* A node that comes back (its map file says it is a member) holds no
 * lease until a majority has answered it: it could have been cut off or
 * removed while it was away, and must not serve on its own say-so. */
TEST_WITH_TIMEOUT(cluster_node_restart_holds_no_lease_until_heard, 60)
{
	harness *h = harness_new(3);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[1]), 0);
	CHECK_EQ(cl_node_admin_add(h->nodes[0], h->addresses[2]), 0);
	cl_status st;
	for (int k = 0; k < 3000; k++) {
		step(h);
		cl_node_status(h->nodes[0], &st);
		if (st.moves_pending == 0 && st.moves_in_flight == 0 && k > 50)
			break;
	}
	uint16_t id = cl_node_id(h->nodes[2]);
	cl_node_close(h->nodes[2]);
	h->nodes[2] = NULL;
	for (int k = 0; k < 50; k++)
		step(h);
	open_node(h, 2, NULL);
	CHECK_EQ(cl_node_id(h->nodes[2]), id);
	cl_node_status(h->nodes[2], &st);
	CHECK(!st.lease_held);
	for (int k = 0; k < 100 && !st.lease_held; k++) {
		step(h);
		cl_node_status(h->nodes[2], &st);
	}
	CHECK(st.lease_held);
	harness_free(h);
}

/* Nodes that start from their map files gossip that map's epoch. Before,
 * they gossiped epoch 0 until the next map change, so the coordinator
 * took them for members behind it and pushed them the whole map (16 KiB)
 * every half second, for as long as the map stayed the same. */
TEST_WITH_TIMEOUT(cluster_node_restart_from_map_file_gossips_its_epoch, 60)
{
	harness *h = harness_new(3);
	for (int i = 0; i < 3; i++) {
		cl_node_close(h->nodes[i]);
		h->nodes[i] = NULL;
	}
	for (int i = 0; i < 3; i++)
		open_node(h, i, NULL);
	cl_status st;
	for (int k = 0; k < 300; k++)
		step(h);
	for (int i = 0; i < 3; i++) {
		cl_node_status(h->nodes[i], &st);
		CHECK(st.lease_held);
	}
	/* idle: SWIM's pings and acks, no map */
	largest_frame_bytes = 0;
	for (int k = 0; k < 500; k++)
		step(h);
	CHECK_MSG(largest_frame_bytes < sizeof(uint16_t) * CL_PARTITIONS,
		"an idle cluster sent a frame of %zu bytes (a map)",
		largest_frame_bytes);
	harness_free(h);
}
