/*
 * stream.c — the live stream (GET /v1/stream) over api_stream.
 *
 * Role: once a WebSocket is open for an authenticated user, subscribe to
 * that user's stream (with ?since= to resume); render each event as one
 * JSON text frame {"type", "seq", "data"} into the socket's bounded
 * queue (the configured bound applies while the socket is choked; a burst
 * to a socket that keeps up may reach GW_WS_QUEUE_FRAMES_BURST_MAX); ack to the domain what has been written to the socket (client
 * acks are optional and forwarded only when ahead). A queue past its bound, or the domain's own
 * API_EVENT_CUT_OFF, closes the socket with 4008: the client resumes with
 * ?since= and loses nothing (the domain holds the events).
 *
 * Invariants: callbacks from the domain arrive on the loop thread (from
 * api_client_poll); after gw__stream_closed no callback names the
 * connection (api_stream_close is synchronous on this thread).
 *
 * What it deliberately does not do: write to the socket (lws_server.c
 * does, the frames queued for a socket in one send), keep events itself
 * (the user actor holds them for resume).
 */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

static void
close_with(gw__ws_conn *c, uint16_t code)
{
	if (c->close_code != 0)
		return;
	c->close_code = code;
	if (code == GW_WS_CLOSE_SLOW)
		gw__count(&c->g->metrics->ws_closed_slow_total, 1);
	/* The close frame goes out when the socket drains; a reader that
	 * never drains is dropped after GW_WS_CLOSE_WAIT_S. */
	gw__transport_ws_close_soon(c);
}

static void
stream_event(void *arg, const api_event *ev)
{
	gw__ws_conn *c = arg;
	if (c->close_code != 0)
		return; /* closing: the client resumes from its last seq */
	if (ev->type == API_EVENT_CUT_OFF) {
		close_with(c, GW_WS_CLOSE_SLOW);
		return;
	}
	const char *type = ev->type == API_EVENT_RESYNC
		? "resync"
		: api_event_type_name(ev->type);
	if (type == NULL)
		return; /* a newer domain's event this gateway cannot name */
	size_t length = 0;
	char *text = gw__ws_render_event(type,
		ev->type == API_EVENT_RESYNC ? 0 : ev->seq,
		ev->type == API_EVENT_RESYNC ? NULL : ev->data, &length);
	if (text == NULL) {
		close_with(c, 1011);
		return;
	}
	uint32_t before = c->queue.frames;
	uint64_t seq = ev->type == API_EVENT_RESYNC ? 0 : ev->seq;
	int rc = gw__frame_push(&c->queue, text, length, seq,
		c->g->cfg.ws_queue_frames_max);
	if (rc == GW_EFULL && !gw__transport_ws_choked(c))
		rc = gw__frame_push(&c->queue, text, length, seq,
			GW_WS_QUEUE_FRAMES_BURST_MAX);
	free(text);
	if (rc == GW_EFULL) {
		close_with(c, GW_WS_CLOSE_SLOW);
		return;
	}
	if (rc < 0) {
		close_with(c, 1011);
		return;
	}
	gw__count(&c->g->metrics->ws_queue_frames, 1);
	if (before == 0)
		gw__transport_ws_wake(c);
}

void
gw__stream_renew(gw__ws_conn *c, uint32_t now_s)
{
	if (c->stream == NULL)
		return;
	if (c->renewed_s == 0) {
		c->renewed_s = now_s; /* opened since the last sweep */
		return;
	}
	if (now_s - c->renewed_s < GW_STREAM_RENEW_S)
		return;
	c->renewed_s = now_s;
	api_stream_renew(c->stream);
}

int
gw__stream_open(gw__ws_conn *c)
{
	gw__assert(c->user_id != 0);
	gw__assert(c->stream == NULL);
	api_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.user_id = c->user_id;
	int rc = api_stream_open(c->g->client, &ctx, c->user_id, c->has_since,
		c->since_seq, stream_event, c, &c->stream);
	if (rc < 0) {
		c->stream = NULL;
		return rc;
	}
	gw__list_push(&c->g->streams, &c->link);
	gw__count(&c->g->metrics->ws_open, 1);
	return 0;
}

int
gw__stream_receive(gw__ws_conn *c, const unsigned char *text, size_t length)
{
	if (!gw__utf8_valid(text, length))
		return 1007; /* RFC 6455: inconsistent data */
	uint64_t seq;
	/* The gateway already acks what it writes (gw__stream_written); a
	 * client ack only matters if it is ahead, which it cannot honestly
	 * be, so older ones are dropped rather than sent to the actor. */
	if (gw__ws_parse_client((const char *)text, length, &seq) == 0 &&
		c->stream != NULL && seq > c->acked_seq) {
		c->acked_seq = seq;
		api_stream_ack(c->stream, seq);
	}
	/* Unknown messages are ignored: newer clients may send more. */
	return 0;
}

/* Frames written between acks to the domain: one actor message per
 * batch, not per frame, and well inside its 256-event credit. */
#define STREAM_ACK_FRAMES 32u

void
gw__stream_written(gw__ws_conn *c, uint64_t seq, bool queue_empty)
{
	/*
	 * Acks are optional for clients (API.md). The domain's credit is
	 * flow control between the user actor and this socket, so the
	 * gateway acks what it has handed to TCP; a reader too slow for
	 * the socket is caught by this side's queue bound (4008).
	 */
	if (c->stream == NULL || seq <= c->acked_seq)
		return;
	if (!queue_empty && seq - c->acked_seq < STREAM_ACK_FRAMES)
		return;
	c->acked_seq = seq;
	api_stream_ack(c->stream, seq);
}

void
gw__stream_closed(gw__ws_conn *c)
{
	gw *g = c->g;
	if (c->stream != NULL) {
		api_stream_close(c->stream);
		c->stream = NULL;
		gw__list_remove(&c->link);
		gw__assert(g->metrics->ws_open > 0);
		gw__count(&g->metrics->ws_open, -1);
	}
	gw__assert(g->metrics->ws_queue_frames >= c->queue.frames);
	gw__count(&g->metrics->ws_queue_frames, -(int64_t)(c->queue.frames));
	gw__frame_clear(&c->queue);
	free(c->rx);
	c->rx = NULL;
	c->rx_length = 0;
}
