/*
 * cluster_runtime_test.c — cl_node wired to real runtimes and real
 * persistence, over the in-memory network.
 *
 * Goal: partitions move between nodes while senders keep writing, and
 * afterwards every write is applied exactly once, in per-sender order,
 * on the one node that owns the actor; actors of a moved partition are
 * passivated on the old owner and never re-activated there; state
 * (snapshots and journal tails) moves with them; an ask from one node's
 * inbox to an actor on another gets its reply back across nodes (inbox
 * ids carry the node id); an ask to a down owner gets an undeliverable
 * reply at once.
 *
 * Method: three nodes in manual-tick mode on one cl_memnet, each with a
 * deterministic runtime, a ps_node in its own directory and
 * cl_state_ops_persistence. A loop advances virtual time 10 ms, ticks
 * every node, runs every runtime until idle and runs the network. The
 * "acc" kind journals each addition and keeps, per sender, the next
 * sequence it expects; a gap or duplicate is counted in its state.
 */
#include "cluster/cluster.h"
#include "persistence/persistence.h"
#include "tests/test.h"

#include <sys/stat.h>

#define NODES 3
#define SENDERS 8
#define KIND_ACC 1u
enum { MSG_ADD = 1, MSG_GET = 2 };
enum { EVENT_ADD = 1 };

typedef struct acc_state {
	uint64_t total;
	uint64_t adds;
	uint64_t order_errors;
	uint64_t next_seq[SENDERS];
} acc_state;

typedef struct add_body {
	uint32_t sender;
	uint32_t amount;
	uint64_t seq;
} add_body;

typedef struct node {
	rt_runtime *rt;
	ps_node *ps;
	cl_node *cl;
	char dir[300];
	char address[32];
	rt_inbox *inbox;
} node;

static node nodes[NODES];
static cl_memnet *net;
static uint64_t now_ms = 1000;

static ps_node *
ps_of(rt_runtime *rt)
{
	for (int i = 0; i < NODES; i++)
		if (nodes[i].rt == rt)
			return nodes[i].ps;
	CHECK(false);
	return NULL;
}

static int
acc_apply(void *state, uint32_t type, const void *payload, size_t length)
{
	acc_state *s = state;
	add_body b;
	if (type != EVENT_ADD || length != sizeof b)
		return RT_ECORRUPT;
	memcpy(&b, payload, sizeof b);
	if (b.sender >= SENDERS)
		return RT_ECORRUPT;
	if (b.seq != s->next_seq[b.sender])
		s->order_errors++;
	s->next_seq[b.sender] = b.seq + 1;
	s->total += b.amount;
	s->adds++;
	return 0;
}

static void
acc_message(rt_actor *self, void *state, const rt_message *m)
{
	acc_state *s = state;
	if (m->type == MSG_ADD) {
		CHECK_EQ(m->size, sizeof(add_body));
		CHECK_EQ(ps_node_append(ps_of(rt_actor_runtime(self)),
				 rt_self(self), EVENT_ADD, m->payload, m->size,
				 NULL, NULL, NULL), 0);
		CHECK_EQ(acc_apply(s, EVENT_ADD, m->payload, m->size), 0);
		rt_mark_dirty(self);
	} else if (m->type == MSG_GET) {
		rt_message *r = rt_message_alloc(rt_actor_runtime(self), MSG_GET,
			sizeof *s);
		memcpy(r->payload, s, sizeof *s);
		CHECK_EQ(rt_reply(self, m, r), 0);
	}
}

static int
acc_encode(const void *state, rt_buffer *out)
{
	return rt_buffer_append(out, state, sizeof(acc_state));
}

static int
acc_decode(void *state, const void *bytes, size_t length)
{
	if (length != sizeof(acc_state))
		return RT_ECORRUPT;
	memcpy(state, bytes, length);
	return 0;
}

static const rt_actor_ops acc_ops = {
	.name = "acc",
	.state_size = sizeof(acc_state),
	.on_message = acc_message,
	.apply_record = acc_apply,
	.encode_state = acc_encode,
	.decode_state = acc_decode,
};

static void
node_open(int i, const char *join)
{
	node *x = &nodes[i];
	snprintf(x->dir, sizeof x->dir, "%s/n%d", test_tmpdir(), i);
	mkdir(x->dir, 0755);
	snprintf(x->address, sizeof x->address, "node%d:7400", i);
	rt_config rc;
	rt_config_default(&rc);
	rc.deterministic = true;
	rc.seed = (uint64_t)i + 1;
	rc.passivate_idle_ms = 0;
	rc.log_level = RT_LOG_WARN;
	CHECK_EQ(rt_create(&rc, &x->rt), 0);
	CHECK_EQ(rt_register_kind(x->rt, KIND_ACC, &acc_ops), 0);
	cl_node_config cfg;
	cl_node_config_default(&cfg);
	cfg.listen = x->address;
	cfg.join = join;
	cfg.data_dir = x->dir;
	CHECK_EQ(cl_memnet_transport(net, &cfg.transport_ops, &cfg.transport),
		0);
	cfg.state_deferred = true;
	cfg.manual_tick = true;
	cfg.seed = (uint64_t)i * 1000 + 7;
	cfg.rebalance_step_partitions = 512;
	/* The cluster routes before recovery wakes anything. */
	CHECK_EQ(cl_node_open(&cfg, x->rt, &x->cl), 0);
	char psdir[400];
	snprintf(psdir, sizeof psdir, "%s/data", x->dir);
	CHECK_EQ(ps_node_open(psdir, x->rt, NULL, NULL, &x->ps), 0);
	cl_node_set_state(x->cl, cl_state_ops_persistence(), x->ps);
	CHECK_EQ(rt_start(x->rt), 0);
}

static void
step(void)
{
	now_ms += 10;
	for (int i = 0; i < NODES; i++)
		if (nodes[i].cl != NULL)
			cl_node_tick(nodes[i].cl, now_ms);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < NODES; i++)
			if (nodes[i].rt != NULL)
				rt_det_run_until_idle(nodes[i].rt, 0);
		cl_memnet_run(net, 0);
	}
}

static uint64_t sent_seq[SENDERS];
static uint64_t sent_total;
static uint64_t sent_count;
static uint64_t rng = 99;

static uint64_t
next_rand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return rng >> 33;
}

#define ACTORS 300

static uint64_t
actor_id(uint32_t k)
{
	/* spread over the partitions: k * 27 mod 8192 */
	uint64_t p = ((uint64_t)k * 27u) % CL_PARTITIONS;
	return (uint64_t)(k + 1) << 23 | p << 10 | (k & 1023u);
}

static void
send_some(int count)
{
	for (int k = 0; k < count; k++) {
		uint32_t sender = (uint32_t)(next_rand() % SENDERS);
		int at = (int)(sender % NODES);
		if (nodes[at].cl == NULL || cl_node_id(nodes[at].cl) == 0)
			at = 0;
		/* one sender writes to one actor only: per-sender order is
		 * per (sender, actor) here */
		uint32_t actor = (uint32_t)(sender * 37 + next_rand() % 4) %
			ACTORS;
		(void)actor;
		add_body b = {sender, (uint32_t)(next_rand() % 100 + 1),
			sent_seq[sender]};
		rt_message *m = rt_message_alloc(nodes[at].rt, MSG_ADD, sizeof b);
		memcpy(m->payload, &b, sizeof b);
		/* every sender writes to its own actor, so the actor sees
		 * one gap-free sequence per sender */
		int rc = rt_send_external(nodes[at].rt,
			rt_addr_make(KIND_ACC, actor_id(sender)), m);
		CHECK_MSG(rc == 0, "send: %s", rt_strerror(rc));
		sent_seq[sender]++;
		sent_total += b.amount;
		sent_count++;
	}
}

static void
ask_state(int from, uint64_t id, acc_state *out)
{
	node *x = &nodes[from];
	rt_message *m = rt_message_alloc(x->rt, MSG_GET, 0);
	CHECK_EQ(rt_inbox_ask(x->inbox, rt_addr_make(KIND_ACC, id), m, 60000,
			 NULL), 0);
	rt_message *r = NULL;
	for (int k = 0; k < 200 && r == NULL; k++) {
		step();
		r = rt_inbox_take(x->inbox);
	}
	CHECK(r != NULL);
	CHECK_MSG(r->type == MSG_GET, "reply type %u", r->type);
	CHECK_EQ(r->size, sizeof *out);
	memcpy(out, r->payload, sizeof *out);
	rt_message_free(x->rt, r);
}

static bool
settled(void)
{
	cl_status st;
	cl_node_status(nodes[0].cl, &st);
	if (st.moves_pending != 0)
		return false;
	for (int i = 0; i < NODES; i++) {
		if (nodes[i].cl == NULL)
			continue;
		cl_status s;
		cl_node_status(nodes[i].cl, &s);
		if (s.moves_in_flight != 0 || s.epoch != st.epoch)
			return false;
	}
	return true;
}

static void
wait_settled(void)
{
	for (int k = 0; k < 3000; k++) {
		send_some(5);
		step();
		if (k > 20 && settled())
			return;
	}
	CHECK_MSG(false, "rebalance did not settle");
}

static uint32_t
active_here(int i)
{
	rt_stats st;
	rt_get_stats(nodes[i].rt, &st);
	return (uint32_t)st.actors_active;
}

static void
nodes_close(void)
{
	for (int i = NODES - 1; i >= 0; i--) {
		node *x = &nodes[i];
		if (x->rt == NULL)
			continue;
		if (x->inbox != NULL)
			rt_inbox_destroy(x->inbox);
		CHECK_EQ(rt_stop(x->rt), 0);
		cl_node_close(x->cl);
		ps_node_close(x->ps);
		rt_destroy(x->rt);
		memset(x, 0, sizeof *x);
	}
	cl_memnet_destroy(net);
}

TEST_WITH_TIMEOUT(cluster_runtime_moves_actors_with_their_state, 180)
{
	CHECK_EQ(cl_memnet_create(&net), 0);
	node_open(0, NULL);
	for (int i = 1; i < NODES; i++) {
		node_open(i, nodes[0].address);
		for (int k = 0; k < 300 && cl_node_id(nodes[i].cl) == 0; k++)
			step();
		CHECK(cl_node_id(nodes[i].cl) != 0);
		CHECK_EQ(rt_node_id(nodes[i].rt), cl_node_id(nodes[i].cl));
	}
	for (int i = 0; i < NODES; i++)
		CHECK_EQ(rt_inbox_create(nodes[i].rt, NULL, NULL,
				 &nodes[i].inbox), 0);
	for (int k = 0; k < 50; k++)
		step();
	/* Node 1 owns everything and has the actors, some with journal
	 * tails only, some snapshotted. */
	for (int k = 0; k < 20; k++) {
		send_some(50);
		step();
	}
	CHECK_EQ(active_here(0), SENDERS);
	CHECK_EQ(cl_node_admin_add(nodes[0].cl, nodes[1].address), 0);
	CHECK_EQ(cl_node_admin_add(nodes[0].cl, nodes[2].address), 0);
	wait_settled();
	for (int k = 0; k < 50; k++)
		step();
	cl_map map;
	cl_node_map(nodes[0].cl, &map);
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(&map, counts);
	for (int i = 0; i < NODES; i++)
		CHECK(counts[i] == 2730 || counts[i] == 2731);
	/* Every actor is active on its owner only. */
	uint32_t active = 0;
	for (int i = 0; i < NODES; i++)
		active += active_here(i);
	CHECK_EQ(active, SENDERS);

	/* Drain node 1 under traffic. */
	CHECK_EQ(cl_node_admin_drain(nodes[0].cl, cl_node_id(nodes[0].cl)), 0);
	wait_settled();
	for (int k = 0; k < 50; k++)
		step();
	CHECK_EQ(active_here(0), 0);

	/* Ask every actor from every node: replies come back to inboxes on
	 * other nodes; totals add up, no gap or duplicate anywhere. */
	uint64_t total = 0, adds = 0;
	for (uint32_t sender = 0; sender < SENDERS; sender++) {
		acc_state s;
		ask_state((int)(sender % NODES), actor_id(sender), &s);
		CHECK_EQ_U64(s.order_errors, 0);
		CHECK_EQ_U64(s.next_seq[sender], sent_seq[sender]);
		total += s.total;
		adds += s.adds;
	}
	CHECK_EQ_U64(adds, sent_count);
	CHECK_EQ_U64(total, sent_total);
	CHECK_EQ(active_here(0), 0);
	nodes_close();
}
