/*
 * transport_nng.c — the cluster's network over nng, and the control
 * endpoint flockctl talks to. The only file in flock that includes nng.
 *
 * Data: every node listens with one pull socket on its cluster address
 * and dials one push socket per peer (one socket per peer direction). A
 * frame is one nng message; nng's dialer reconnects with backoff
 * (100 ms doubling to 2 s). A push socket buffers at most
 * PUSH_SEND_FRAMES_MAX frames; past that send returns CL_EBUSY and the
 * node's link keeps the frame for later, so memory stays bounded.
 * Receiving is one nng_aio loop: frames from all peers are handed to the
 * receive callback one at a time, on an nng thread.
 *
 * Frames lost when a connection breaks are resent by the node's link
 * layer (sequence numbers and acks in the frame header), not here.
 *
 * Control: a rep socket on its own address (cluster port + 1 by default)
 * served by one thread; flockctl is a req client (cl__control_call).
 */
#include "cluster/internal.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>

/* Frames a push socket queues before send says CL_EBUSY: with frames of
 * up to 256 KiB this bounds a slow peer's backlog near 64 MiB. */
#define PUSH_SEND_FRAMES_MAX 256
/* Largest frame accepted: a batch is sealed at 256 KiB, but one
 * envelope may carry a 1 MiB payload plus its header. */
#define FRAME_RECEIVE_BYTES_MAX ((size_t)4u << 20)
/* Reconnect backoff bounds. */
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
/* Control requests and replies are small (a map is ~21 KiB). */
#define CONTROL_MESSAGE_BYTES_MAX ((size_t)1u << 20)
/* URL buffer: "tcp://" + address. */
#define URL_BYTES_MAX (CL_ADDRESS_BYTES_MAX + 16u)

typedef struct nng_peer {
	uint16_t id;
	bool used;
	nng_socket push;
	char address[CL_ADDRESS_BYTES_MAX];
} nng_peer;

typedef struct nng_transport {
	pthread_mutex_t lock;
	nng_socket pull;
	bool listening;
	nng_aio *receive_aio;
	cl_frame_receive_callback receive;
	void *receive_arg;
	nng_peer peers[CL_NODES_MAX + 1];
} nng_transport;

static int
from_nng(int rv)
{
	switch (rv) {
	case 0: return CL_OK;
	case NNG_ENOMEM: return CL_ENOMEM;
	case NNG_EAGAIN: return CL_EBUSY;
	case NNG_ETIMEDOUT: return CL_ETIMEDOUT;
	case NNG_ECONNREFUSED:
	case NNG_ECONNRESET:
	case NNG_ECLOSED:
	case NNG_EUNREACHABLE:
	case NNG_ECONNSHUT: return CL_EUNAVAILABLE;
	case NNG_EINVAL:
	case NNG_EADDRINVAL: return CL_EINVAL;
	default: return CL_EIO;
	}
}

static int
make_url(const char *address, char *url, size_t size)
{
	if ((size_t)snprintf(url, size, "tcp://%s", address) >= size)
		return CL_EINVAL;
	return CL_OK;
}

static void
receive_callback(void *arg)
{
	nng_transport *t = arg;
	int rv = nng_aio_result(t->receive_aio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (rv == 0) {
		nng_msg *m = nng_aio_get_msg(t->receive_aio);
		pthread_mutex_lock(&t->lock);
		cl_frame_receive_callback cb = t->receive;
		void *cb_arg = t->receive_arg;
		pthread_mutex_unlock(&t->lock);
		if (cb != NULL)
			cb(cb_arg, nng_msg_body(m), nng_msg_len(m));
		nng_msg_free(m);
	}
	nng_recv_aio(t->pull, t->receive_aio);
}

static int
nng_listen_address(void *self, const char *address)
{
	nng_transport *t = self;
	char url[URL_BYTES_MAX];
	int rc = make_url(address, url, sizeof url);
	if (rc != 0)
		return rc;
	int rv = nng_pull0_open(&t->pull);
	if (rv != 0)
		return from_nng(rv);
	nng_socket_set_size(t->pull, NNG_OPT_RECVMAXSZ, FRAME_RECEIVE_BYTES_MAX);
	rv = nng_listen(t->pull, url, NULL, 0);
	if (rv != 0)
		goto fail_socket;
	rv = nng_aio_alloc(&t->receive_aio, receive_callback, t);
	if (rv != 0)
		goto fail_socket;
	t->listening = true;
	nng_recv_aio(t->pull, t->receive_aio);
	return CL_OK;
fail_socket:
	nng_close(t->pull);
	return rv == NNG_EADDRINUSE ? CL_EIO : from_nng(rv);
}

static nng_peer *
peer_find(nng_transport *t, uint16_t id)
{
	for (uint32_t i = 0; i <= CL_NODES_MAX; i++)
		if (t->peers[i].used && t->peers[i].id == id)
			return &t->peers[i];
	return NULL;
}

static int
peer_open(nng_peer *p, const char *address)
{
	char url[URL_BYTES_MAX];
	int rc = make_url(address, url, sizeof url);
	if (rc != 0)
		return rc;
	int rv = nng_push0_open(&p->push);
	if (rv != 0)
		return from_nng(rv);
	nng_socket_set_int(p->push, NNG_OPT_SENDBUF, PUSH_SEND_FRAMES_MAX);
	nng_socket_set_ms(p->push, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS);
	nng_socket_set_ms(p->push, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS);
	nng_socket_set_bool(p->push, NNG_OPT_TCP_NODELAY, true);
	/* non-blocking dial: the dialer keeps retrying in the background */
	rv = nng_dial(p->push, url, NULL, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		nng_close(p->push);
		return from_nng(rv);
	}
	snprintf(p->address, sizeof p->address, "%s", address);
	return CL_OK;
}

static int
nng_peer_set(void *self, uint16_t peer, const char *address)
{
	nng_transport *t = self;
	pthread_mutex_lock(&t->lock);
	nng_peer *p = peer_find(t, peer);
	if (p != NULL && strcmp(p->address, address) == 0) {
		pthread_mutex_unlock(&t->lock);
		return CL_OK;
	}
	if (p != NULL) {
		nng_close(p->push);
		p->used = false;
	}
	for (uint32_t i = 0; i <= CL_NODES_MAX && p == NULL; i++)
		if (!t->peers[i].used)
			p = &t->peers[i];
	if (p == NULL) {
		pthread_mutex_unlock(&t->lock);
		return CL_ETOOBIG;
	}
	int rc = peer_open(p, address);
	if (rc == 0) {
		p->id = peer;
		p->used = true;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static int
nng_peer_drop(void *self, uint16_t peer)
{
	nng_transport *t = self;
	pthread_mutex_lock(&t->lock);
	nng_peer *p = peer_find(t, peer);
	if (p != NULL) {
		nng_close(p->push);
		p->used = false;
	}
	pthread_mutex_unlock(&t->lock);
	return CL_OK;
}

static int
nng_send_frame(void *self, uint16_t peer, const void *bytes, size_t length)
{
	nng_transport *t = self;
	nng_msg *m;
	int rv = nng_msg_alloc(&m, length);
	if (rv != 0)
		return CL_ENOMEM;
	memcpy(nng_msg_body(m), bytes, length);
	pthread_mutex_lock(&t->lock);
	nng_peer *p = peer_find(t, peer);
	if (p == NULL) {
		pthread_mutex_unlock(&t->lock);
		nng_msg_free(m);
		return CL_EUNAVAILABLE;
	}
	nng_socket s = p->push;
	pthread_mutex_unlock(&t->lock);
	/* a socket closed meanwhile fails with NNG_ECLOSED: a lost frame */
	rv = nng_sendmsg(s, m, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		nng_msg_free(m);
		return from_nng(rv);
	}
	return CL_OK;
}

static void
nng_set_receive(void *self, cl_frame_receive_callback cb, void *arg)
{
	nng_transport *t = self;
	pthread_mutex_lock(&t->lock);
	t->receive = cb;
	t->receive_arg = arg;
	pthread_mutex_unlock(&t->lock);
}

static void
nng_destroy(void *self)
{
	nng_transport *t = self;
	if (t->listening) {
		nng_aio_stop(t->receive_aio);
		nng_close(t->pull);
		nng_aio_free(t->receive_aio);
	}
	for (uint32_t i = 0; i <= CL_NODES_MAX; i++)
		if (t->peers[i].used)
			nng_close(t->peers[i].push);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static const cl_transport_ops nng_ops = {
	.listen = nng_listen_address,
	.peer_set = nng_peer_set,
	.peer_drop = nng_peer_drop,
	.send = nng_send_frame,
	.set_receive = nng_set_receive,
	.destroy = nng_destroy,
};

int
cl_transport_nng_create(const cl_transport_ops **ops_out, void **out)
{
	CL_ASSERT(ops_out != NULL);
	CL_ASSERT(out != NULL);
	nng_transport *t = calloc(1, sizeof *t);
	if (t == NULL)
		return CL_ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	*ops_out = &nng_ops;
	*out = t;
	return CL_OK;
}

/* ---- control endpoint -------------------------------------------------- */

struct cl__control_server {
	nng_socket rep;
	pthread_t thread;
	cl__control_handler handler;
	void *arg;
};

static void *
control_thread(void *arg)
{
	cl__control_server *s = arg;
	for (;;) {
		nng_msg *m;
		int rv = nng_recvmsg(s->rep, &m, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv != 0)
			continue;
		rt_buffer reply = {0};
		s->handler(s->arg, nng_msg_body(m), nng_msg_len(m), &reply);
		nng_msg_free(m);
		nng_msg *r;
		if (nng_msg_alloc(&r, reply.length) == 0) {
			memcpy(nng_msg_body(r), reply.bytes, reply.length);
			if (nng_sendmsg(s->rep, r, 0) != 0)
				nng_msg_free(r);
		}
		rt_buffer_free(&reply);
	}
	return NULL;
}

int
cl__control_server_start(const char *address, cl__control_handler handler,
	void *arg, cl__control_server **out)
{
	CL_ASSERT(address != NULL);
	CL_ASSERT(handler != NULL);
	char url[URL_BYTES_MAX];
	int rc = make_url(address, url, sizeof url);
	if (rc != 0)
		return rc;
	cl__control_server *s = calloc(1, sizeof *s);
	if (s == NULL)
		return CL_ENOMEM;
	s->handler = handler;
	s->arg = arg;
	int rv = nng_rep0_open(&s->rep);
	if (rv != 0)
		goto fail_alloc;
	nng_socket_set_size(s->rep, NNG_OPT_RECVMAXSZ, CONTROL_MESSAGE_BYTES_MAX);
	rv = nng_listen(s->rep, url, NULL, 0);
	if (rv != 0)
		goto fail_socket;
	if (pthread_create(&s->thread, NULL, control_thread, s) != 0) {
		rv = NNG_ENOMEM;
		goto fail_socket;
	}
	*out = s;
	return CL_OK;
fail_socket:
	nng_close(s->rep);
fail_alloc:
	free(s);
	return rv == NNG_EADDRINUSE ? CL_EIO : from_nng(rv);
}

void
cl__control_server_stop(cl__control_server *s)
{
	if (s == NULL)
		return;
	nng_close(s->rep);
	pthread_join(s->thread, NULL);
	free(s);
}

int
cl__control_call(const char *address, const void *request, size_t length,
	uint64_t timeout_ms, rt_buffer *reply)
{
	CL_ASSERT(address != NULL);
	CL_ASSERT(reply != NULL);
	char url[URL_BYTES_MAX];
	int rc = make_url(address, url, sizeof url);
	if (rc != 0)
		return rc;
	nng_socket req;
	int rv = nng_req0_open(&req);
	if (rv != 0)
		return from_nng(rv);
	nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
	nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
	nng_socket_set_size(req, NNG_OPT_RECVMAXSZ, CONTROL_MESSAGE_BYTES_MAX);
	/* a blocking dial fails at once when nothing listens there */
	rv = nng_dial(req, url, NULL, 0);
	if (rv != 0) {
		rc = rv == NNG_EADDRINVAL || rv == NNG_EINVAL ? CL_EINVAL
							     : CL_EUNAVAILABLE;
		goto done;
	}
	rv = nng_send(req, (void *)request, length, 0);
	if (rv != 0) {
		rc = from_nng(rv);
		goto done;
	}
	nng_msg *m;
	rv = nng_recvmsg(req, &m, 0);
	if (rv != 0) {
		rc = from_nng(rv);
		goto done;
	}
	rc = rt_buffer_append(reply, nng_msg_body(m), nng_msg_len(m)) == 0
		     ? CL_OK
		     : CL_ENOMEM;
	nng_msg_free(m);
done:
	nng_close(req);
	return rc;
}

int
cl__control_address(const char *cluster_address, char *out, size_t size)
{
	CL_ASSERT(cluster_address != NULL);
	const char *colon = strrchr(cluster_address, ':');
	if (colon == NULL)
		return CL_EINVAL;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port >= 65535)
		return CL_EINVAL;
	if ((size_t)snprintf(out, size, "%.*s:%ld",
		    (int)(colon - cluster_address), cluster_address,
		    port + 1) >= size)
		return CL_EINVAL;
	return CL_OK;
}
