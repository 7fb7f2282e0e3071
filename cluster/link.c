/*
 * link.c — one peer direction made reliable, batched and bounded.
 *
 * Sending: envelopes are appended to an open batch (a frame being
 * written); a batch is sealed at CL_BATCH_BYTES or at the next flush
 * (the cluster thread flushes every CL_FLUSH_INTERVAL), numbered, kept
 * until the peer acknowledges its sequence, and handed to the
 * transport. Credit: bytes not yet acknowledged are bounded by
 * CL_LINK_WINDOW_BYTES; past it a data send gets CL_EBUSY, which the
 * route hook turns into RT_EMAILBOX_FULL for the sending actor. Acks
 * ride on every frame's header (the highest sequence taken from the
 * peer), and a bare ack frame goes out at the next flush when nothing
 * else carried it. Without ack progress for CL_LINK_RESEND_MS every
 * unacknowledged frame is sent again (go-back-N): that is how frames
 * lost with a broken connection come back.
 *
 * Receiving: only the next sequence is taken; duplicates are dropped,
 * and frames after a gap are held (a bounded reorder buffer) and taken
 * once the missing frame arrives, so a lost frame costs one resend, not
 * one per frame behind it. A new peer incarnation (the peer restarted)
 * restarts both directions at sequence 1 and empties the buffer.
 *
 * Invariants: frames are sent in sequence order; unacked_bytes equals
 * the open batch plus the sealed, unacknowledged frames; a link is used
 * under its lock only.
 */
#include "cluster/internal.h"

static uint32_t
ring_index(const cl__link *l, uint32_t k)
{
	return (l->frames_head + k) % CL_LINK_FRAMES_MAX;
}

int
cl__link_init(cl__link *l, const cl_transport_ops *ops, void *transport,
	uint16_t self, uint64_t incarnation)
{
	CL_ASSERT(l != NULL);
	CL_ASSERT(ops != NULL);
	memset(l, 0, sizeof *l);
	/* the ring (160 KiB) is allocated by the first enqueue: a node has
	 * a link for every possible peer and talks to a few */
	l->reorder = calloc(CL_LINK_REORDER_FRAMES, sizeof *l->reorder);
	if (l->reorder == NULL)
		return CL_ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	l->transport_ops = ops;
	l->transport = transport;
	l->self = self;
	l->self_incarnation = incarnation;
	l->next_sequence = 1;
	return CL_OK;
}

static void
reset_send(cl__link *l)
{
	for (uint32_t k = 0; k < l->frames_count; k++)
		rt_buffer_free(&l->frames[ring_index(l, k)].bytes);
	l->frames_head = 0;
	l->frames_count = 0;
	l->open.length = 0;
	l->writer.out = NULL;
	l->unacked_bytes = 0;
	l->acked = 0;
	l->next_sequence = 1;
}

/* Drops every held frame (a new session, or a new peer). */
static void
reorder_clear(cl__link *l)
{
	for (uint32_t k = 0; k < CL_LINK_REORDER_FRAMES; k++) {
		rt_buffer_free(&l->reorder[k].bytes);
		l->reorder[k].sequence = 0;
	}
	l->reorder_bytes = 0;
}

/* Empties the slot of sequence's ring position. */
static void
reorder_release(cl__link *l, cl__held *h)
{
	CL_ASSERT(l->reorder_bytes >= h->bytes.length);
	l->reorder_bytes -= h->bytes.length;
	rt_buffer_free(&h->bytes);
	h->sequence = 0;
}

void
cl__link_destroy(cl__link *l)
{
	if (l->transport_ops == NULL)
		return; /* never initialised */
	reorder_clear(l);
	free(l->reorder);
	l->reorder = NULL;
	reset_send(l);
	if (l->frames != NULL)
		for (uint32_t k = 0; k < CL_LINK_FRAMES_MAX; k++)
			rt_buffer_free(&l->frames[k].bytes);
	rt_buffer_free(&l->open);
	free(l->frames);
	l->frames = NULL;
	l->transport_ops = NULL;
	pthread_mutex_destroy(&l->lock);
}

void
cl__link_bind_locked(cl__link *l, uint16_t peer, const char *address,
	uint64_t now_ms)
{
	CL_ASSERT(address != NULL);
	if (atomic_load(&l->peer) == peer &&
		strcmp(l->address, address) == 0 && !l->dead)
		return;
	if (atomic_load(&l->peer) != peer) {
		reset_send(l);
		reorder_clear(l);
		l->peer_incarnation = 0;
		l->received = 0;
	}
	atomic_store(&l->peer, peer);
	l->dead = false;
	snprintf(l->address, sizeof l->address, "%s", address);
	l->last_progress_ms = now_ms;
	l->transport_ops->peer_set(l->transport, peer, address);
}

static int
open_batch(cl__link *l)
{
	cl_frame_header h = {
		.source = l->self,
		.incarnation = l->self_incarnation,
		.sequence = l->next_sequence,
		.ack = l->received,
		.peer_incarnation = l->peer_incarnation,
	};
	l->open.length = 0;
	return cl_frame_begin(&l->writer, &l->open, &h);
}

static void
send_pending(cl__link *l, uint64_t now_ms)
{
	for (uint32_t k = 0; k < l->frames_count; k++) {
		cl__sealed *f = &l->frames[ring_index(l, k)];
		if (f->sent)
			continue;
		int rc = l->transport_ops->send(l->transport,
			atomic_load(&l->peer), f->bytes.bytes, f->bytes.length);
		if (rc == CL_EBUSY)
			return; /* the transport is full: try at the next flush */
		/* any other failure is a lost frame: the resend covers it */
		f->sent = true;
		if (l->frames_count == 1 || l->acked + 1 == f->sequence)
			l->last_progress_ms = now_ms;
	}
}

static void
seal(cl__link *l, uint64_t now_ms)
{
	if (l->writer.out == NULL || l->writer.count == 0)
		return;
	CL_ASSERT(l->frames != NULL);
	CL_ASSERT(l->frames_count < CL_LINK_FRAMES_MAX);
	cl_frame_end(&l->writer);
	cl__sealed *f = &l->frames[ring_index(l, l->frames_count)];
	/* swap buffers: the sealed frame keeps the bytes, the next batch
	 * reuses the slot's old allocation */
	rt_buffer spare = f->bytes;
	f->bytes = l->open;
	f->sequence = l->next_sequence++;
	f->sent = false;
	l->open = spare;
	l->open.length = 0;
	l->writer.out = NULL;
	l->frames_count++;
	l->unacked_bytes += f->bytes.length;
	l->ack_due = false; /* the sealed header carries our ack */
	send_pending(l, now_ms);
}

size_t
cl__link_window_left_locked(const cl__link *l)
{
	size_t used = l->unacked_bytes + l->open.length;
	return used >= CL_LINK_WINDOW_BYTES ? 0 : CL_LINK_WINDOW_BYTES - used;
}

int
cl__link_enqueue_locked(cl__link *l, const cl_envelope *e, bool system,
	uint64_t now_ms)
{
	CL_ASSERT(e != NULL);
	CL_ASSERT(atomic_load(&l->peer) != 0);
	if (l->dead)
		return CL_EUNAVAILABLE;
	size_t used = l->unacked_bytes + l->open.length;
	size_t limit = CL_LINK_WINDOW_BYTES +
		       (system ? CL_LINK_SYSTEM_SLACK_BYTES : 0u);
	if (used + e->size > limit)
		return CL_EBUSY;
	if (l->frames_count + 1u >= CL_LINK_FRAMES_MAX)
		return CL_EBUSY;
	if (l->frames == NULL) {
		l->frames = calloc(CL_LINK_FRAMES_MAX, sizeof *l->frames);
		if (l->frames == NULL)
			return CL_ENOMEM;
	}
	if (l->writer.out == NULL) {
		int rc = open_batch(l);
		if (rc != 0)
			return rc;
	}
	size_t before = l->open.length;
	int rc = cl_frame_add(&l->writer, e);
	if (rc != 0) {
		l->open.length = before;
		return rc;
	}
	l->envelopes_sent++;
	if (l->open.length >= CL_BATCH_BYTES)
		seal(l, now_ms);
	return CL_OK;
}

static int
send_bare(cl__link *l, const cl_envelope *e)
{
	rt_buffer b = {0};
	cl_frame_writer w;
	cl_frame_header h = {
		.source = l->self,
		.incarnation = l->self_incarnation,
		.sequence = 0,
		.ack = l->received,
		.peer_incarnation = l->peer_incarnation,
	};
	int rc = cl_frame_begin(&w, &b, &h);
	if (rc == 0 && e != NULL)
		rc = cl_frame_add(&w, e);
	if (rc == 0) {
		cl_frame_end(&w);
		rc = l->transport_ops->send(l->transport, atomic_load(&l->peer),
			b.bytes, b.length);
	}
	rt_buffer_free(&b);
	return rc;
}

int
cl__link_send_now_locked(cl__link *l, const cl_envelope *e)
{
	CL_ASSERT(e != NULL);
	if (l->dead)
		return CL_EUNAVAILABLE;
	int rc = send_bare(l, e);
	if (rc == 0)
		l->ack_due = false;
	return rc;
}

void
cl__link_flush_locked(cl__link *l, uint64_t now_ms)
{
	if (l->dead || l->address[0] == 0)
		return;
	seal(l, now_ms);
	if (l->frames_count > 0 &&
		cl__elapsed_ms(now_ms, l->last_progress_ms) >= CL_LINK_RESEND_MS) {
		for (uint32_t k = 0; k < l->frames_count; k++)
			l->frames[ring_index(l, k)].sent = false;
		l->frames_resent += l->frames_count;
		l->last_progress_ms = now_ms;
	}
	send_pending(l, now_ms);
	if (l->ack_due && send_bare(l, NULL) == 0)
		l->ack_due = false;
}

void
cl__link_on_ack_locked(cl__link *l, uint64_t ack, uint64_t now_ms)
{
	if (ack <= l->acked)
		return;
	if (ack >= l->next_sequence)
		return; /* acks a previous life of ours; ignore */
	while (l->frames_count > 0) {
		cl__sealed *f = &l->frames[l->frames_head];
		if (f->sequence > ack)
			break;
		CL_ASSERT(l->unacked_bytes >= f->bytes.length);
		l->unacked_bytes -= f->bytes.length;
		f->bytes.length = 0;
		f->sent = false;
		l->frames_head = (l->frames_head + 1) % CL_LINK_FRAMES_MAX;
		l->frames_count--;
	}
	l->acked = ack;
	l->last_progress_ms = now_ms;
}

void
cl__link_observe_locked(cl__link *l, uint64_t incarnation)
{
	if (incarnation == l->peer_incarnation)
		return;
	/* a new life of the peer: what we had not delivered to the old one
	 * is lost with it (as with any crash); both directions restart at 1.
	 * First contact: the frames waiting for the peer were refused (they
	 * named no life of it) and now name this one. */
	if (l->peer_incarnation != 0) {
		reset_send(l);
	} else {
		for (uint32_t k = 0; k < l->frames_count; k++) {
			cl__sealed *f = &l->frames[ring_index(l, k)];
			cl__frame_readdress(f->bytes.bytes, f->bytes.length,
				incarnation);
			f->sent = false;
		}
		if (l->writer.out != NULL)
			cl__frame_readdress(l->open.bytes, l->open.length,
				incarnation);
	}
	l->peer_incarnation = incarnation;
	l->received = 0;
	reorder_clear(l);
}

bool
cl__link_accept_locked(cl__link *l, uint64_t sequence)
{
	CL_ASSERT(sequence != 0);
	l->ack_due = true;
	if (sequence != l->received + 1)
		return false;
	l->received = sequence;
	/* a held copy of it (a resend overtook the take) is no longer due */
	cl__held *h = &l->reorder[sequence % CL_LINK_REORDER_FRAMES];
	if (h->sequence == sequence)
		reorder_release(l, h);
	return true;
}

bool
cl__link_hold_locked(cl__link *l, uint64_t sequence, const void *bytes,
	size_t length)
{
	CL_ASSERT(bytes != NULL);
	if (sequence <= l->received + 1 ||
		sequence > l->received + CL_LINK_REORDER_FRAMES)
		return false;
	cl__held *h = &l->reorder[sequence % CL_LINK_REORDER_FRAMES];
	if (h->sequence == sequence)
		return true; /* a duplicate of one held already */
	/* the window (received, received + N] maps one to one onto the
	 * slots: another sequence here is one taken already */
	if (h->sequence != 0) {
		CL_ASSERT(h->sequence <= l->received);
		reorder_release(l, h);
	}
	if (l->reorder_bytes + length > CL_LINK_REORDER_BYTES_MAX)
		return false;
	if (rt_buffer_append(&h->bytes, bytes, length) != 0) {
		rt_buffer_free(&h->bytes);
		return false;
	}
	h->sequence = sequence;
	l->reorder_bytes += length;
	return true;
}

bool
cl__link_take_held_locked(cl__link *l, rt_buffer *out)
{
	CL_ASSERT(out != NULL);
	uint64_t next = l->received + 1;
	cl__held *h = &l->reorder[next % CL_LINK_REORDER_FRAMES];
	if (h->sequence != next)
		return false;
	CL_ASSERT(l->reorder_bytes >= h->bytes.length);
	l->reorder_bytes -= h->bytes.length;
	*out = h->bytes;
	memset(&h->bytes, 0, sizeof h->bytes);
	h->sequence = 0;
	return true;
}
