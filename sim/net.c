/*
 * sim/net.c — the simulated network: cl_transport_ops endpoints whose
 * frames travel as events of the run's queue.
 *
 * A send copies the frame and decides its fate from the network stream:
 * lost (drop_ppm, or a partition blocking from -> to), delivered once
 * after the base latency plus jitter, delivered twice (duplicate_ppm),
 * or overtaken (reorder_ppm: delivered later than frames sent after it).
 * Frames of one link are otherwise delivered in send order (TCP-like),
 * so what the cluster's links see is loss, duplication and reordering
 * the way a reconnecting connection shows them. A frame also dies when
 * a partition blocks its link at delivery time, or when its sender or
 * its receiver restarted meanwhile (the connection it travelled on is
 * gone: a process's frames never arrive after its successor's).
 *
 * Every send, delivery and loss is mixed into the run's hash.
 *
 * Invariants: an endpoint belongs to one node incarnation; the net
 * holds at most one live endpoint per node; a frame in flight owns its
 * bytes (the event's data).
 * Does not: corrupt bytes (the transport contract excludes it).
 */
#include "sim/internal.h"

/* Extra delay of an overtaken frame: long enough to land behind the
 * frames that follow it. */
#define NET_REORDER_EXTRA_MS_MIN 5u
#define NET_REORDER_EXTRA_MS_MAX 200u
/* A duplicate arrives this much after the original, at most. */
#define NET_DUPLICATE_LAG_MS_MAX 50u

typedef struct endpoint {
	sim_net *net;
	uint32_t node;
	uint32_t incarnation;
	char address[CL_ADDRESS_BYTES_MAX];
	cl_frame_receive_callback receive;
	void *receive_arg;
	uint16_t peer_ids[CL_NODES_MAX + 1];
	int32_t peer_nodes[CL_NODES_MAX + 1]; /* node index, -1 unknown */
	uint32_t peers_count;
} endpoint;

struct sim_net {
	sim_world *w;
	endpoint *live[SIM_NODES_MAX];
	bool blocked[SIM_NODES_MAX][SIM_NODES_MAX];
	uint64_t fifo_ms[SIM_NODES_MAX][SIM_NODES_MAX]; /* last delivery */
	bool faults;
	uint64_t in_flight;
};

int
sim__net_create(sim_world *w, sim_net **out)
{
	sim_net *net = calloc(1, sizeof *net);
	if (net == NULL)
		return -1;
	net->w = w;
	net->faults = false; /* on from sim__faults_start */
	*out = net;
	return 0;
}

void
sim__net_destroy(sim_net *net)
{
	if (net == NULL)
		return;
	for (uint32_t i = 0; i < SIM_NODES_MAX; i++)
		SIM_ASSERT(net->live[i] == NULL); /* cl_node_close frees them */
	free(net);
}

/* The node index listening on address, or -1. */
static int
node_of_address(sim_world *w, const char *address)
{
	for (uint32_t i = 0; i < w->nodes_count; i++)
		if (strcmp(w->nodes[i].address, address) == 0)
			return (int)i;
	return -1;
}

/* ---- the transport ops -------------------------------------------------- */

static int
ep_listen(void *self, const char *address)
{
	endpoint *e = self;
	snprintf(e->address, sizeof e->address, "%s", address);
	return CL_OK;
}

static int
ep_peer_set(void *self, uint16_t peer, const char *address)
{
	endpoint *e = self;
	int node = node_of_address(e->net->w, address);
	for (uint32_t i = 0; i < e->peers_count; i++)
		if (e->peer_ids[i] == peer) {
			e->peer_nodes[i] = node;
			return CL_OK;
		}
	if (e->peers_count == CL_NODES_MAX + 1)
		return CL_ETOOBIG;
	e->peer_ids[e->peers_count] = peer;
	e->peer_nodes[e->peers_count] = node;
	e->peers_count++;
	return CL_OK;
}

static int
ep_peer_drop(void *self, uint16_t peer)
{
	endpoint *e = self;
	for (uint32_t i = 0; i < e->peers_count; i++)
		if (e->peer_ids[i] == peer) {
			e->peers_count--;
			e->peer_ids[i] = e->peer_ids[e->peers_count];
			e->peer_nodes[i] = e->peer_nodes[e->peers_count];
			return CL_OK;
		}
	return CL_OK;
}

/* Queues one delivery of a copy of bytes at at_ms. */
static void
queue_frame(sim_net *net, uint32_t from, uint32_t to, uint32_t incarnation,
	const void *bytes, size_t length, uint64_t at_ms)
{
	sim_world *w = net->w;
	void *copy = malloc(length > 0 ? length : 1);
	SIM_ASSERT(copy != NULL);
	memcpy(copy, bytes, length);
	sim_event e = {.at_ms = at_ms, .kind = SIM_EV_FRAME, .node = to,
		.incarnation = incarnation, .from = from, .data = copy,
		.length = length, .arg = w->nodes[from].incarnation};
	SIM_ASSERT(sim__events_push(&w->events, e) == 0);
	net->in_flight++;
}

static int
ep_send(void *self, uint16_t peer, const void *bytes, size_t length)
{
	endpoint *e = self;
	sim_net *net = e->net;
	sim_world *w = net->w;
	int to = -1;
	for (uint32_t i = 0; i < e->peers_count; i++)
		if (e->peer_ids[i] == peer)
			to = e->peer_nodes[i];
	if (to < 0)
		return CL_EUNAVAILABLE;
	uint64_t h = sim__hash_bytes(0, bytes, length);
	sim__hash(w, 0x5e4d, (uint64_t)e->node << 32 | (uint32_t)to, h);
	w->result->frames++;
	endpoint *target = net->live[to];
	sim_rng *r = sim__rng(w, SIM_STREAM_NETWORK);
	const sim_knobs *k = &w->knobs;
	/* Every draw happens whatever the outcome, so one fault's verdict
	 * does not shift the network's later choices. */
	bool drop = sim__rng_ppm(r, net->faults ? k->drop_ppm : 0);
	bool duplicate = sim__rng_ppm(r, net->faults ? k->duplicate_ppm : 0);
	bool reorder = sim__rng_ppm(r, net->faults ? k->reorder_ppm : 0);
	uint64_t delay = k->latency_ms + (net->faults && k->jitter_ms > 0
		? sim__rng_below(r, k->jitter_ms + 1u) : 0);
	uint64_t extra = sim__rng_range(r, NET_REORDER_EXTRA_MS_MIN,
		NET_REORDER_EXTRA_MS_MAX);
	uint64_t lag = sim__rng_below(r, NET_DUPLICATE_LAG_MS_MAX + 1u);
	if (target == NULL || drop || net->blocked[e->node][to]) {
		sim__hash(w, 0xd409, (uint64_t)e->node << 32 | (uint32_t)to, h);
		if (drop && target != NULL)
			sim_sometimes("sim: frame dropped by the network");
		return CL_OK; /* lost on the way: the link resends */
	}
	uint64_t at = w->now_ms + delay;
	if (reorder) {
		at += extra;
		sim_sometimes("sim: frame overtaken by later ones");
	} else {
		if (at < net->fifo_ms[e->node][to])
			at = net->fifo_ms[e->node][to];
		net->fifo_ms[e->node][to] = at;
	}
	queue_frame(net, e->node, (uint32_t)to, target->incarnation, bytes,
		length, at);
	if (duplicate) {
		queue_frame(net, e->node, (uint32_t)to, target->incarnation,
			bytes, length, at + lag);
		sim_sometimes("sim: frame duplicated by the network");
	}
	return CL_OK;
}

static void
ep_set_receive(void *self, cl_frame_receive_callback cb, void *arg)
{
	endpoint *e = self;
	e->receive = cb;
	e->receive_arg = arg;
}

static void
ep_destroy(void *self)
{
	endpoint *e = self;
	if (e->net->live[e->node] == e)
		e->net->live[e->node] = NULL;
	free(e);
}

static const cl_transport_ops endpoint_ops = {
	.listen = ep_listen,
	.peer_set = ep_peer_set,
	.peer_drop = ep_peer_drop,
	.send = ep_send,
	.set_receive = ep_set_receive,
	.destroy = ep_destroy,
};

int
sim__net_endpoint(sim_net *net, uint32_t node, const cl_transport_ops **ops_out,
	void **endpoint_out)
{
	SIM_ASSERT(node < SIM_NODES_MAX);
	SIM_ASSERT(net->live[node] == NULL);
	endpoint *e = calloc(1, sizeof *e);
	if (e == NULL)
		return -1;
	e->net = net;
	e->node = node;
	e->incarnation = net->w->nodes[node].incarnation;
	net->live[node] = e;
	/* A new incarnation: nothing of the old connections survives. */
	for (uint32_t i = 0; i < SIM_NODES_MAX; i++) {
		net->fifo_ms[node][i] = 0;
		net->fifo_ms[i][node] = 0;
	}
	*ops_out = &endpoint_ops;
	*endpoint_out = e;
	return 0;
}

void
sim__net_deliver(sim_net *net, const sim_event *ev)
{
	sim_world *w = net->w;
	SIM_ASSERT(net->in_flight > 0);
	net->in_flight--;
	endpoint *e = net->live[ev->node];
	uint64_t h = sim__hash_bytes(0, ev->data, ev->length);
	endpoint *sender = net->live[ev->from];
	if (e == NULL || e->incarnation != ev->incarnation || sender == NULL ||
		sender->incarnation != ev->arg ||
		net->blocked[ev->from][ev->node] || e->receive == NULL) {
		sim__hash(w, 0xdead, (uint64_t)ev->from << 32 | ev->node, h);
		return;
	}
	sim__hash(w, 0xde11, (uint64_t)ev->from << 32 | ev->node, h);
	e->receive(e->receive_arg, ev->data, ev->length);
	sim__node_poke(w, ev->node);
}

void
sim__net_block(sim_net *net, uint32_t from, uint32_t to, bool blocked)
{
	SIM_ASSERT(from < SIM_NODES_MAX && to < SIM_NODES_MAX);
	net->blocked[from][to] = blocked;
}

void
sim__net_heal(sim_net *net)
{
	memset(net->blocked, 0, sizeof net->blocked);
}

bool
sim__net_partitioned(const sim_net *net)
{
	for (uint32_t a = 0; a < SIM_NODES_MAX; a++)
		for (uint32_t b = 0; b < SIM_NODES_MAX; b++)
			if (net->blocked[a][b])
				return true;
	return false;
}

uint64_t
sim__net_in_flight(const sim_net *net)
{
	return net->in_flight;
}

void
sim__net_set_faults(sim_net *net, bool on)
{
	net->faults = on;
}
