/*
 * transport_mem.c — an in-memory network for tests and the simulator.
 *
 * Endpoints register under their listen address. A send copies the
 * frame onto the network's one FIFO queue; cl_memnet_run, called by the
 * test's (or simulator's) thread, delivers queued frames in order, so
 * frames between two endpoints arrive in send order. A blocked pair of
 * addresses loses every frame between them (both directions), which is
 * how tests cut a node off.
 *
 * Invariants: callbacks run without the network's lock held (a receiver
 * may send from inside its callback); a frame in the queue owns a copy.
 *
 * What it does not do: delay, reorder or duplicate (the simulator's own
 * network does that, behind the same cl_transport_ops).
 */
#include "cluster/internal.h"

#include <pthread.h>

/* Endpoints on one network: a few simulated nodes, a bootstrap peer. */
#define MEMNET_ENDPOINTS_MAX 128u
/* Frames queued at most: past it sends are CL_EBUSY (a bounded queue). */
#define MEMNET_QUEUE_FRAMES_MAX 65536u
/* Blocked address pairs at most. */
#define MEMNET_BLOCKS_MAX 64u

typedef struct memnet_frame {
	struct memnet_frame *next;
	char to[CL_ADDRESS_BYTES_MAX];
	size_t length;
	unsigned char bytes[];
} memnet_frame;

typedef struct memnet_endpoint {
	cl_memnet *net;
	char address[CL_ADDRESS_BYTES_MAX]; /* "" until listen */
	cl_frame_receive_callback receive;
	void *receive_arg;
	uint16_t peer_ids[CL_NODES_MAX + 1];
	char peer_addresses[CL_NODES_MAX + 1][CL_ADDRESS_BYTES_MAX];
	uint32_t peers_count;
	bool used;
} memnet_endpoint;

struct cl_memnet {
	pthread_mutex_t lock;
	memnet_endpoint endpoints[MEMNET_ENDPOINTS_MAX];
	memnet_frame *head;
	memnet_frame *tail;
	uint64_t queued;
	char blocked[MEMNET_BLOCKS_MAX][2][CL_ADDRESS_BYTES_MAX];
	uint32_t blocked_count;
};

int
cl_memnet_create(cl_memnet **out)
{
	CL_ASSERT(out != NULL);
	cl_memnet *net = calloc(1, sizeof *net);
	if (net == NULL)
		return CL_ENOMEM;
	pthread_mutex_init(&net->lock, NULL);
	*out = net;
	return CL_OK;
}

void
cl_memnet_destroy(cl_memnet *net)
{
	if (net == NULL)
		return;
	while (net->head != NULL) {
		memnet_frame *f = net->head;
		net->head = f->next;
		free(f);
	}
	pthread_mutex_destroy(&net->lock);
	free(net);
}

static bool
is_blocked(cl_memnet *net, const char *a, const char *b)
{
	for (uint32_t i = 0; i < net->blocked_count; i++) {
		const char *x = net->blocked[i][0];
		const char *y = net->blocked[i][1];
		if ((strcmp(x, a) == 0 && strcmp(y, b) == 0) ||
			(strcmp(x, b) == 0 && strcmp(y, a) == 0))
			return true;
	}
	return false;
}

void
cl_memnet_block(cl_memnet *net, const char *a, const char *b, bool blocked)
{
	CL_ASSERT(net != NULL);
	pthread_mutex_lock(&net->lock);
	for (uint32_t i = 0; i < net->blocked_count; i++) {
		const char *x = net->blocked[i][0];
		const char *y = net->blocked[i][1];
		if ((strcmp(x, a) == 0 && strcmp(y, b) == 0) ||
			(strcmp(x, b) == 0 && strcmp(y, a) == 0)) {
			if (!blocked)
				memcpy(net->blocked[i],
					net->blocked[--net->blocked_count],
					sizeof net->blocked[i]);
			pthread_mutex_unlock(&net->lock);
			return;
		}
	}
	if (blocked) {
		CL_ASSERT(net->blocked_count < MEMNET_BLOCKS_MAX);
		snprintf(net->blocked[net->blocked_count][0],
			CL_ADDRESS_BYTES_MAX, "%s", a);
		snprintf(net->blocked[net->blocked_count][1],
			CL_ADDRESS_BYTES_MAX, "%s", b);
		net->blocked_count++;
	}
	pthread_mutex_unlock(&net->lock);
}

static int
mem_listen(void *self, const char *address)
{
	memnet_endpoint *ep = self;
	pthread_mutex_lock(&ep->net->lock);
	snprintf(ep->address, sizeof ep->address, "%s", address);
	pthread_mutex_unlock(&ep->net->lock);
	return CL_OK;
}

static int
peer_index(memnet_endpoint *ep, uint16_t peer)
{
	for (uint32_t i = 0; i < ep->peers_count; i++)
		if (ep->peer_ids[i] == peer)
			return (int)i;
	return -1;
}

static int
mem_peer_set(void *self, uint16_t peer, const char *address)
{
	memnet_endpoint *ep = self;
	pthread_mutex_lock(&ep->net->lock);
	int i = peer_index(ep, peer);
	if (i < 0) {
		CL_ASSERT(ep->peers_count <= CL_NODES_MAX);
		i = (int)ep->peers_count++;
		ep->peer_ids[i] = peer;
	}
	snprintf(ep->peer_addresses[i], CL_ADDRESS_BYTES_MAX, "%s", address);
	pthread_mutex_unlock(&ep->net->lock);
	return CL_OK;
}

static int
mem_peer_drop(void *self, uint16_t peer)
{
	memnet_endpoint *ep = self;
	pthread_mutex_lock(&ep->net->lock);
	int i = peer_index(ep, peer);
	if (i >= 0) {
		uint32_t last = --ep->peers_count;
		ep->peer_ids[i] = ep->peer_ids[last];
		memcpy(ep->peer_addresses[i], ep->peer_addresses[last],
			CL_ADDRESS_BYTES_MAX);
	}
	pthread_mutex_unlock(&ep->net->lock);
	return CL_OK;
}

static int
mem_send(void *self, uint16_t peer, const void *bytes, size_t length)
{
	memnet_endpoint *ep = self;
	cl_memnet *net = ep->net;
	memnet_frame *f = malloc(sizeof *f + length);
	if (f == NULL)
		return CL_ENOMEM;
	pthread_mutex_lock(&net->lock);
	int i = peer_index(ep, peer);
	if (i < 0) {
		pthread_mutex_unlock(&net->lock);
		free(f);
		return CL_EUNAVAILABLE;
	}
	if (net->queued >= MEMNET_QUEUE_FRAMES_MAX) {
		pthread_mutex_unlock(&net->lock);
		free(f);
		return CL_EBUSY;
	}
	if (is_blocked(net, ep->address, ep->peer_addresses[i])) {
		pthread_mutex_unlock(&net->lock);
		free(f); /* lost on the wire */
		return CL_OK;
	}
	snprintf(f->to, sizeof f->to, "%s", ep->peer_addresses[i]);
	f->length = length;
	memcpy(f->bytes, bytes, length);
	f->next = NULL;
	if (net->tail == NULL)
		net->head = f;
	else
		net->tail->next = f;
	net->tail = f;
	net->queued++;
	pthread_mutex_unlock(&net->lock);
	return CL_OK;
}

static void
mem_set_receive(void *self, cl_frame_receive_callback cb, void *arg)
{
	memnet_endpoint *ep = self;
	pthread_mutex_lock(&ep->net->lock);
	ep->receive = cb;
	ep->receive_arg = arg;
	pthread_mutex_unlock(&ep->net->lock);
}

static void
mem_destroy(void *self)
{
	memnet_endpoint *ep = self;
	pthread_mutex_lock(&ep->net->lock);
	ep->used = false;
	ep->receive = NULL;
	ep->address[0] = '\0';
	pthread_mutex_unlock(&ep->net->lock);
}

static const cl_transport_ops mem_ops = {
	.listen = mem_listen,
	.peer_set = mem_peer_set,
	.peer_drop = mem_peer_drop,
	.send = mem_send,
	.set_receive = mem_set_receive,
	.destroy = mem_destroy,
};

int
cl_memnet_transport(cl_memnet *net, const cl_transport_ops **ops_out,
	void **out)
{
	CL_ASSERT(net != NULL);
	pthread_mutex_lock(&net->lock);
	for (uint32_t i = 0; i < MEMNET_ENDPOINTS_MAX; i++) {
		memnet_endpoint *ep = &net->endpoints[i];
		if (ep->used)
			continue;
		memset(ep, 0, sizeof *ep);
		ep->used = true;
		ep->net = net;
		pthread_mutex_unlock(&net->lock);
		*ops_out = &mem_ops;
		*out = ep;
		return CL_OK;
	}
	pthread_mutex_unlock(&net->lock);
	return CL_ETOOBIG;
}

uint64_t
cl_memnet_run(cl_memnet *net, uint64_t max)
{
	CL_ASSERT(net != NULL);
	uint64_t delivered = 0;
	while (max == 0 || delivered < max) {
		pthread_mutex_lock(&net->lock);
		memnet_frame *f = net->head;
		if (f == NULL) {
			pthread_mutex_unlock(&net->lock);
			break;
		}
		net->head = f->next;
		if (net->head == NULL)
			net->tail = NULL;
		net->queued--;
		cl_frame_receive_callback cb = NULL;
		void *arg = NULL;
		for (uint32_t i = 0; i < MEMNET_ENDPOINTS_MAX; i++) {
			memnet_endpoint *ep = &net->endpoints[i];
			if (ep->used && strcmp(ep->address, f->to) == 0) {
				cb = ep->receive;
				arg = ep->receive_arg;
				break;
			}
		}
		pthread_mutex_unlock(&net->lock);
		if (cb != NULL)
			cb(arg, f->bytes, f->length);
		free(f);
		delivered++;
	}
	return delivered;
}
