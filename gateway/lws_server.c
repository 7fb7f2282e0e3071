/*
 * lws_server.c — the only file that includes libwebsockets.
 *
 * Role: the gateway's event loops, one per two cores by default: the first
 * on the program's libuv loop, the others each on a thread with its own
 * libuv loop. Each loop has its own lws context (LWS_SERVER_OPTION_LIBUV
 * + foreign_loops; Debian's libwebsockets-evlib-uv plugin) and its own
 * listen socket on the shared port (SO_REUSEPORT; accepted sockets are
 * adopted into that loop's context). It turns lws callbacks into
 * gw__request / gw__ws_conn events for handlers.c and stream.c, and
 * writes their responses and frames. It also owns what lws 4.1.6 as
 * Debian builds it lacks: per-IP connection caps (checked at accept,
 * counted when lws instantiates the connection, released at
 * WSI_DESTROY; the table is shared by the loops), security headers on
 * every response, and each loop's api client wake-up (uv_async ->
 * api_client_poll).
 *
 * Invariants:
 *   - a loop's lws context is only called on that loop's thread; other
 *     threads reach a loop through its api client's notify
 *     (uv_async_send) and its control handle (control_send) only;
 *   - a request is written only after it responded, one lws_write per
 *     writable callback; a WebSocket writes its queued frames from a
 *     writable callback while the socket takes them, two or more of
 *     them framed here and written in one raw send; the exceptions
 *     are a cached image (serve_cached_media), whose whole prebuilt
 *     response is written from the HTTP callback itself, and, when the
 *     api client's wake-up ends, a stream's new frames (write_woken),
 *     then a domain answer that fits one write (write_answered), on
 *     sockets that are not choked;
 *   - a connection counted at accept is released exactly once (its slot
 *     rides in the wsi's opaque user data).
 *
 * What it deliberately does not do: TLS (a fronting proxy or a later
 * change), HTTP/2, routing or JSON (handlers.c).
 */
#include "gateway/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

static_assert(LWS_PRE == GW_WS_PRE, "GW_WS_PRE must equal LWS_PRE");

/* Body bytes written per writable callback: large enough to amortise the
 * callback, small enough that lws never has to buffer much of a partial
 * send. */
#define WRITE_CHUNK_BYTES (64u * 1024u)
/* A WebSocket frame header without a mask: 2, 4 or 10 bytes. */
#define FRAME_HEADER_BYTES_MAX 10u
/* Frames gathered into one send: within one response turn's buffer. */
#define FRAMES_BATCH_BYTES WRITE_CHUNK_BYTES
/* Room for the status line and every header we write. */
#define HEADER_BYTES_MAX 6144u
/* One response turn: headers and a body chunk after lws's prefix. */
#define WRITE_BUFFER_BYTES (LWS_PRE + HEADER_BYTES_MAX + WRITE_CHUNK_BYTES)
static_assert(LWS_PRE + FRAMES_BATCH_BYTES <= WRITE_BUFFER_BYTES,
	"gathered frames fit the write buffer");
/* Connections taken per readable listen socket: a burst of connects is
 * taken in a few turns without starving the loop's other sockets. */
#define ACCEPTS_PER_WAKE_MAX 64
/* lws header pool: one ah is held per HTTP request until it completes,
 * including while the domain answers, so it bounds concurrent requests
 * at the socket level; each costs max_http_header_data bytes while held. */
#define HEADER_POOL_MAX 4096
/* Request headers kept per connection (Authorization with a token is
 * ~300 bytes; browsers send ~1-2 KiB in all). */
#define HEADER_DATA_BYTES 8192
/* WebSocket receive buffer: client messages are acks (~30 bytes); a
 * small buffer keeps idle sockets cheap (longer frames arrive in parts). */
#define WS_RX_BUFFER_BYTES 256
/* Polls per wake-up: completions that arrive while polling are taken in
 * the same turn, but the loop is not starved. */
#define POLLS_PER_WAKE_MAX 64
/* How often shutdown checks for in-flight requests. */
#define SHUTDOWN_TICK_MS 20u
/* After the grace period, live streams get this long to send their
 * close frames before the context goes. */
#define SHUTDOWN_CLOSE_MS 300u

enum session_kind {
	SESSION_NONE = 0,
	SESSION_HTTP = 1,
	SESSION_WS = 2,
	SESSION_RAW = 3,          /* not HTTP: refused, closing */
	SESSION_CLOSING = 4,      /* answered outside a callback: the next
				     writable callback closes it */
};

/* lws per-session data: a tag, then either an HTTP request or a live
 * stream. */
typedef struct session {
	uint32_t kind;
	union {
		gw__request *req;
		gw__ws_conn ws;
	} u;
} session;

static gw *
gw_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

/* Seconds on the gateway's own clock (fits 32 bits for 136 years). */
static uint32_t
clock_s(const gw *g)
{
	return (uint32_t)((gw__now_us() / 1000 - g->clock_base_ms) / 1000);
}

/* Formats a peer address the same way at accept and later ("1.2.3.4",
 * v4-mapped v6 shown as v4). */
static void
format_address(const struct sockaddr *sa, char *out, size_t size)
{
	out[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, out, (socklen_t)size);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], out,
				(socklen_t)size);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, out,
				(socklen_t)size);
	} else {
		snprintf(out, size, "unix");
	}
}

static void
peer_address(struct lws *wsi, char *out, size_t size)
{
	/* A counted connection's address is in its slot: one lookup
	 * instead of a getpeername per request. */
	uintptr_t slot = (uintptr_t)lws_get_opaque_user_data(wsi);
	if (slot != 0) {
		gw__conn_address(gw_of(wsi)->conns, (uint32_t)(slot - 1u), out,
			size);
		return;
	}
	struct sockaddr_storage ss;
	socklen_t n = sizeof ss;
	int fd = lws_get_socket_fd(wsi);
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &n) != 0) {
		snprintf(out, size, "unknown");
		return;
	}
	format_address((const struct sockaddr *)&ss, out, size);
}

/* ---- the api client's wake-up --------------------------------------------- */

static void
notify_from_any_thread(void *arg)
{
	gw *g = arg;
	uv_async_send(&g->async);
}

static void write_answered(gw *g);
static void write_woken(gw *g);

static void
async_callback(uv_async_t *handle)
{
	gw *g = handle->data;
	if (g->client == NULL)
		return;
	g->answering = true;
	for (int i = 0; i < POLLS_PER_WAKE_MAX; i++)
		if (api_client_poll(g->client) == 0)
			break;
	g->answering = false;
	/* Frames first: a wake-up at 10,000 likes/s holds a hundred
	 * answers, and a frame written after them waited milliseconds
	 * for their sends (like -> frame p50 2.1 ms of 13.6 on a loaded
	 * machine, 0.3 ms frames first). */
	gw__uv_poll_batch_begin();
	write_woken(g);
	write_answered(g);
	gw__uv_poll_batch_end();
}

/* ---- writing responses ------------------------------------------------------ */

static int
add_header(struct lws *wsi, const char *name, const char *value,
	unsigned char **p, unsigned char *end)
{
	return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
		(const unsigned char *)value, (int)strlen(value), p, end);
}

static bool
response_has_body(const gw__request *r)
{
	return r->method != GW_METHOD_HEAD && r->status != 204 &&
		r->status != 304;
}

static uint64_t
response_length(const gw__request *r)
{
	return r->file_fd >= 0 ? r->file_size
			       : r->response.length - r->response_offset;
}

/* Writes the status line and headers into [start, end); returns the end
 * of what was written, or NULL if it did not fit. */
static unsigned char *
build_headers(struct lws *wsi, gw__request *r, unsigned char *start,
	unsigned char *end)
{
	unsigned char *p = start;
	if (lws_add_http_header_status(wsi, (unsigned)r->status, &p, end))
		return NULL;
	if (r->response_type != NULL &&
		add_header(wsi, "content-type:", r->response_type, &p, end))
		return NULL;
	if (r->status != 204 && r->status != 304) {
		char length[24];
		snprintf(length, sizeof length, "%" PRIu64, response_length(r));
		if (add_header(wsi, "content-length:", length, &p, end))
			return NULL;
	}
	for (size_t i = 0; i < gw__security_headers_count; i++)
		if (add_header(wsi, gw__security_headers[i][0],
			    gw__security_headers[i][1], &p, end))
			return NULL;
	const char *cache = r->cache_control;
	if (cache == NULL)
		cache = "no-store";
	if (add_header(wsi, "cache-control:", cache, &p, end))
		return NULL;
	for (uint32_t i = 0; i < r->headers_count; i++)
		if (add_header(wsi, r->headers[i].name, r->headers[i].value, &p,
			    end))
			return NULL;
	if ((r->close_after || r->g->stopping) &&
		add_header(wsi, "connection:", "close", &p, end))
		return NULL;
	if (lws_finalize_http_header(wsi, &p, end))
		return NULL;
	return p;
}

/* Copies the next part of the body into dst; returns bytes, or -1. */
static ssize_t
next_body_part(gw__request *r, unsigned char *dst, size_t room)
{
	uint64_t total = response_length(r);
	uint64_t left = total - r->response_sent;
	size_t n = left < room ? (size_t)left : room;
	if (n == 0)
		return 0;
	if (r->file_fd >= 0) {
		ssize_t got = pread(r->file_fd, dst, n, (off_t)r->response_sent);
		if (got <= 0)
			return -1;
		n = (size_t)got;
	} else {
		memcpy(dst, r->response.bytes + r->response_offset +
				r->response_sent,
			n);
	}
	r->response_sent += n;
	return (ssize_t)n;
}

/* One writable turn: returns 1 when the response is complete, 0 when more
 * is to come, -1 to drop the connection. */
static int
write_response(struct lws *wsi, gw__request *r)
{
	unsigned char *buf = r->g->write_buffer;
	unsigned char *start = buf + LWS_PRE;
	unsigned char *end = buf + WRITE_BUFFER_BYTES;
	unsigned char *p = start;
	bool body = response_has_body(r);
	if (!r->headers_sent) {
		p = build_headers(wsi, r, start, start + HEADER_BYTES_MAX);
		if (p == NULL)
			return -1;
		r->headers_sent = true;
		/* The whole body in memory with room in front of it: the
		 * headers go there and it is sent from where it is. */
		size_t header_length = (size_t)(p - start);
		uint64_t body_length = body ? response_length(r) : 0;
		if (r->file_fd < 0 && body_length > 0 &&
			body_length <= WRITE_CHUNK_BYTES &&
			r->response_offset >= LWS_PRE + header_length) {
			unsigned char *head = r->response.bytes +
				r->response_offset - header_length;
			memcpy(head, start, header_length);
			size_t length = header_length + (size_t)body_length;
			r->response_sent = (size_t)body_length;
			return lws_write(wsi, head, length,
				       LWS_WRITE_HTTP_FINAL) < (int)length
				? -1
				: 1;
		}
	}
	if (body) {
		ssize_t n = next_body_part(r, p, (size_t)(end - p));
		if (n < 0)
			return -1;
		p += n;
	}
	bool done = !body || r->response_sent == response_length(r);
	size_t length = (size_t)(p - start);
	if (length > 0 &&
		lws_write(wsi, start, length,
			done ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
			(int)length)
		return -1;
	return done ? 1 : 0;
}

void
gw__transport_respond(gw__request *r)
{
	gw *g = r->g;
	uint64_t latency = gw__now_us() - r->started_us;
	gw__metrics_observe(g->metrics, r->match.info->id, r->status, latency);
	if (g->cfg.log_requests)
		rt_log(g->rt, RT_LOG_INFO, "gateway",
			"request method=%s route=%s status=%d duration_us=%"
			PRIu64 " user=%" PRIu64 " ip=%s",
			gw__method_name(r->method),
			gw__route_label(r->match.info->id), r->status, latency,
			r->user_id, r->ip);
	if (r->conn == NULL) {
		if (!r->pending)
			gw__request_free(r);
		return;
	}
	if (g->answering) {
		/* Written when the wake-up ends (write_answered): the
		 * handler that responded may still hold r until then. */
		r->answered_next = g->answered;
		g->answered = r;
		return;
	}
	lws_callback_on_writable(r->conn);
}

/* ---- HTTP requests ------------------------------------------------------------ */

static gw__method
method_of(struct lws *wsi)
{
	static const struct {
		enum lws_token_indexes token;
		gw__method method;
	} methods[] = {
		{WSI_TOKEN_GET_URI, GW_METHOD_GET},
		{WSI_TOKEN_POST_URI, GW_METHOD_POST},
		{WSI_TOKEN_PUT_URI, GW_METHOD_PUT},
		{WSI_TOKEN_PATCH_URI, GW_METHOD_PATCH},
		{WSI_TOKEN_DELETE_URI, GW_METHOD_DELETE},
		{WSI_TOKEN_HEAD_URI, GW_METHOD_HEAD},
		{WSI_TOKEN_OPTIONS_URI, GW_METHOD_OPTIONS},
	};
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (lws_hdr_total_length(wsi, methods[i].token) > 0)
			return methods[i].method;
	return GW_METHOD_OTHER;
}

/* Copies a header; an absent or oversized one leaves "". Returns false
 * when it was present but too long. */
static bool
copy_header(struct lws *wsi, enum lws_token_indexes token, char *dst,
	size_t size)
{
	dst[0] = '\0';
	int total = lws_hdr_total_length(wsi, token);
	if (total <= 0)
		return true;
	if ((size_t)total >= size)
		return false;
	if (lws_hdr_copy(wsi, dst, (int)size, token) < 0) {
		dst[0] = '\0';
		return false;
	}
	return true;
}

static void
read_query(struct lws *wsi, gw__query *q)
{
	gw__query_init(q);
	char fragment[GW_QUERY_BYTES_MAX];
	for (int n = 0; n < GW_QUERY_PARAMS_MAX * 2; n++) {
		int len = lws_hdr_copy_fragment(wsi, fragment, sizeof fragment,
			WSI_TOKEN_HTTP_URI_ARGS, n);
		if (len < 0)
			break;
		gw__query_add(q, fragment, (size_t)len);
	}
}

static void
read_headers(struct lws *wsi, gw__request *r)
{
	if (!copy_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, r->authorization,
		    sizeof r->authorization))
		r->authorization[0] = '\0';
	char value[256];
	if (copy_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, value, sizeof value) &&
		value[0] != '\0') {
		if (gw__content_type(value, r->content_type,
			    sizeof r->content_type, r->boundary,
			    sizeof r->boundary) < 0)
			snprintf(r->content_type, sizeof r->content_type,
				"invalid/invalid");
	}
	char length[32];
	if (copy_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, length,
		    sizeof length) &&
		length[0] != '\0') {
		if (gw__parse_u64(length, &r->content_length) == 0)
			r->has_content_length = true;
	}
	copy_header(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH, r->if_none_match,
		sizeof r->if_none_match);
	static const char idem[] = "idempotency-key:";
	int n = lws_hdr_custom_length(wsi, idem, (int)sizeof idem - 1);
	if (n > 0 && (size_t)n < sizeof r->idempotency_key)
		lws_hdr_custom_copy(wsi, r->idempotency_key,
			(int)sizeof r->idempotency_key, idem,
			(int)sizeof idem - 1);
	else if (n > 0)
		snprintf(r->idempotency_key, sizeof r->idempotency_key, " ");
}

static int
spa_file_callback(void *data, const char *name, const char *filename,
	char *buf, int len, enum lws_spa_fileupload_states state)
{
	(void)filename;
	gw__request *r = data;
	return gw__form_file(&r->form, name, buf, len, (gw__form_state)state);
}

static const char *const form_fields[] = {"caption", "media"};

/* True for an HTTP/1.1 request line (the version lws_http_action took
 * for keep-alive): the prebuilt responses say HTTP/1.1. */
static bool
http11(struct lws *wsi)
{
	char v[16];
	return lws_hdr_copy(wsi, v, (int)sizeof v, WSI_TOKEN_HTTP) == 8 &&
		memcmp(v, "HTTP/1.1", 8) == 0;
}

/*
 * GET /media/{hash}/{variant} of a variant in the media cache: its
 * prebuilt 200 in one write, straight from the HTTP callback, with no
 * request state, file or domain call (the bytes never change: they are
 * addressed by their hash). Anything else about the request (a body,
 * If-None-Match, HEAD, HTTP/1.0, a shutdown's Connection: close) takes
 * the request path, which also fills the cache. Returns false when it
 * did not answer; else *rc is the callback's return.
 */
static bool
serve_cached_media(struct lws *wsi, gw *g, const char *uri, int *rc)
{
	static const char prefix[] = "/media/";
	if (g->media_cache == NULL || g->stopping || uri == NULL ||
		strncmp(uri, prefix, sizeof prefix - 1) != 0)
		return false;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 ||
		lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 ||
		lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 ||
		lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0 ||
		!http11(wsi))
		return false;
	const char *key = uri + sizeof prefix - 1;
	const gw__media_entry *e = gw__media_cache_find(g->media_cache, key,
		strlen(key));
	if (e == NULL)
		return false;
	uint64_t started = gw__now_us();
	int n = lws_write(wsi, e->response, e->response_length,
		LWS_WRITE_HTTP_FINAL);
	uint64_t latency = gw__now_us() - started;
	gw__metrics_observe(g->metrics, GW_ROUTE_MEDIA_FILE, 200, latency);
	if (g->cfg.log_requests) {
		char ip[GW_IP_BYTES_MAX];
		peer_address(wsi, ip, sizeof ip);
		rt_log(g->rt, RT_LOG_INFO, "gateway",
			"request method=GET route=%s status=200 duration_us=%"
			PRIu64 " user=0 ip=%s cached=1",
			gw__route_label(GW_ROUTE_MEDIA_FILE), latency, ip);
	}
	if (n < (int)e->response_length)
		*rc = -1;
	else
		*rc = lws_http_transaction_completed(wsi) ? -1 : 0;
	return true;
}

static int
on_http(struct lws *wsi, session *s, const char *uri)
{
	gw *g = gw_of(wsi);
	if (s == NULL)
		return -1;
	int cached_rc;
	if (serve_cached_media(wsi, g, uri, &cached_rc))
		return cached_rc;
	gw__request *r = calloc(1, sizeof *r);
	if (r == NULL)
		return -1;
	r->g = g;
	r->conn = wsi;
	r->file_fd = -1;
	r->started_us = gw__now_us();
	r->method = method_of(wsi);
	snprintf(r->path, sizeof r->path, "%s", uri ? uri : "/");
	peer_address(wsi, r->ip, sizeof r->ip);
	read_query(wsi, &r->query);
	read_headers(wsi, r);
	s->kind = SESSION_HTTP;
	s->u.req = r;
	if (gw__request_begin(r))
		return 0;
	bool body = r->has_content_length && r->content_length > 0;
	if (!body) {
		gw__handle(r);
		return 0;
	}
	if (r->multipart) {
		lws_spa_create_info_t info;
		memset(&info, 0, sizeof info);
		info.param_names = form_fields;
		info.count_params = 2;
		info.max_storage = GW_FORM_FIELD_BYTES_MAX;
		info.opt_cb = spa_file_callback;
		info.opt_data = r;
		r->spa = lws_spa_create_via_info(wsi, &info);
		if (r->spa == NULL) {
			r->close_after = true;
			gw__respond_problem(r, 400, "bad multipart body");
		}
	}
	return 0;
}

static void
body_refused(gw__request *r, int rc)
{
	r->close_after = true;
	if (rc == GW_ETOOLARGE)
		gw__respond_problem(r, 413, "the body is too large");
	else if (rc == GW_ENOMEM)
		gw__respond_problem(r, 503, "out of memory");
	else
		gw__respond_problem(r, 400, "bad multipart body");
}

static int
on_http_body(session *s, const void *in, size_t len)
{
	gw__request *r = s->kind == SESSION_HTTP ? s->u.req : NULL;
	if (r == NULL || r->responded || r->dispatched)
		return 0;
	if (r->multipart) {
		if (r->spa == NULL)
			return 0;
		if (lws_spa_process(r->spa, in, (int)len) < 0 ||
			r->form.error != 0)
			body_refused(r, r->form.error ? r->form.error
						      : GW_EINVAL);
		return 0;
	}
	int rc = gw__body_append(&r->body, in, len);
	if (rc < 0)
		body_refused(r, rc);
	return 0;
}

static int
on_http_body_done(session *s)
{
	gw__request *r = s->kind == SESSION_HTTP ? s->u.req : NULL;
	if (r == NULL || r->responded || r->dispatched)
		return 0;
	if (r->multipart && r->spa != NULL) {
		lws_spa_finalize(r->spa);
		if (r->form.error != 0) {
			body_refused(r, r->form.error);
			return 0;
		}
		int n = lws_spa_get_length(r->spa, 0);
		const char *caption = lws_spa_get_string(r->spa, 0);
		if (n > 0 && caption != NULL)
			r->caption = strndup(caption, (size_t)n);
		lws_spa_destroy(r->spa);
		r->spa = NULL;
	}
	gw__handle(r);
	return 0;
}

static void
detach_request(session *s)
{
	if (s == NULL || s->kind != SESSION_HTTP || s->u.req == NULL)
		return;
	gw__request *r = s->u.req;
	s->u.req = NULL;
	s->kind = SESSION_NONE;
	if (r->spa != NULL) {
		lws_spa_destroy(r->spa);
		r->spa = NULL;
	}
	r->conn = NULL;
	if (!r->pending)
		gw__request_free(r);
}

static int
on_http_writable(struct lws *wsi, session *s)
{
	if (s != NULL && s->kind == SESSION_CLOSING)
		return -1;
	gw__request *r = s != NULL && s->kind == SESSION_HTTP ? s->u.req : NULL;
	if (r == NULL || !r->responded)
		return 0;
	int rc = write_response(wsi, r);
	if (rc == 0) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	bool close_after = r->close_after || r->g->stopping || rc < 0;
	detach_request(s);
	if (close_after)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}

/* The domain's answers of one wake-up. An answer that fits one write, on
 * a socket with nothing of an earlier write still buffered, is written
 * here instead of through a writable callback: with Debian's libuv
 * (1.44) every change of a socket's poll events is an epoll_ctl DEL and
 * ADD, and asking for POLLOUT and clearing it again cost four of them
 * per request (a fifth of the loop's CPU on GET /v1/feed). What the
 * kernel does not take lws keeps and sends when writable (at most
 * WRITE_CHUNK_BYTES), and completes the transaction after it. Anything
 * else (a file, a big or last answer) takes the writable path. The
 * wake-up runs this inside a uv_poll batch (uv_poll.c). */
static void
write_answered(gw *g)
{
	while (g->answered != NULL) {
		gw__request *r = g->answered;
		g->answered = r->answered_next;
		r->answered_next = NULL;
		struct lws *wsi = r->conn;
		session *s = wsi != NULL ? lws_wsi_user(wsi) : NULL;
		if (s == NULL || s->kind != SESSION_HTTP || s->u.req != r) {
			/* Not reachable: no lws callback runs during a
			 * wake-up, so the connection is still r's. */
			if (wsi != NULL)
				lws_callback_on_writable(wsi);
			continue;
		}
		if (r->file_fd >= 0 || r->close_after || g->stopping ||
			response_length(r) > WRITE_CHUNK_BYTES ||
			lws_partial_buffered(wsi)) {
			lws_callback_on_writable(wsi);
			continue;
		}
		int rc = write_response(wsi, r);
		if (rc == 0) {
			lws_callback_on_writable(wsi);
			continue;
		}
		detach_request(s);
		if (rc < 0 || lws_http_transaction_completed(wsi)) {
			/* Closing is a callback's answer (-1); a timeout to
			 * kill it asynchronously waits for the loop's next
			 * timer, seconds away on an idle node. */
			s->kind = SESSION_CLOSING;
			lws_callback_on_writable(wsi);
			continue;
		}
		/* lws waits for POLLOUT before it reads the next request
		 * (its "deferring action" state), and asked for it; the
		 * socket just took the whole response, so it is writable:
		 * say so now, and the POLLOUT lws asked for and clears
		 * again never reaches epoll (the batch nets it out). */
		if (!lws_partial_buffered(wsi)) {
			struct lws_pollfd pfd = {
				.fd = lws_get_socket_fd(wsi),
				.events = LWS_POLLOUT,
				.revents = LWS_POLLOUT,
			};
			lws_service_fd(lws_get_context(wsi), &pfd);
		}
	}
}

/* ---- WebSocket upgrade and frames -------------------------------------------- */

/* Writes a problem+json response with Connection: close; the status
 * line by hand (lws 4.1 writes HTTP/1.0 during an upgrade, which
 * WebSocket clients refuse to read, and has no status for a raw socket).
 * 0 when written, -1 when it did not fit or the write failed. */
static int
write_problem_close(struct lws *wsi, int status, const char *detail,
	const char *www_authenticate, enum lws_write_protocol mode)
{
	size_t n = 0;
	char *body = gw__problem_render(status, detail, &n);
	unsigned char buf[LWS_PRE + 4096];
	unsigned char *start = buf + LWS_PRE, *p = start;
	unsigned char *end = buf + sizeof buf;
	if (body == NULL || n > 1024)
		goto fail;
	int w = snprintf((char *)p, (size_t)(end - p), "HTTP/1.1 %d %s\r\n",
		status, gw__status_title(status));
	if (w < 0 || w >= end - p)
		goto fail;
	p += w;
	if (add_header(wsi, "content-type:", "application/problem+json", &p,
		    end))
		goto fail;
	char length[24];
	snprintf(length, sizeof length, "%zu", n);
	if (add_header(wsi, "content-length:", length, &p, end) ||
		add_header(wsi, "cache-control:", "no-store", &p, end) ||
		add_header(wsi, "connection:", "close", &p, end))
		goto fail;
	for (size_t i = 0; i < gw__security_headers_count; i++)
		if (add_header(wsi, gw__security_headers[i][0],
			    gw__security_headers[i][1], &p, end))
			goto fail;
	if (www_authenticate != NULL &&
		add_header(wsi, "www-authenticate:", www_authenticate, &p, end))
		goto fail;
	if (lws_finalize_http_header(wsi, &p, end))
		goto fail;
	memcpy(p, body, n);
	p += n;
	free(body);
	body = NULL;
	if (lws_write(wsi, start, (size_t)(p - start), mode) <
		(int)(p - start))
		return -1;
	return 0;
fail:
	free(body);
	return -1;
}

/* Refuses an upgrade with an HTTP error; returns 1 (lws: responded), or
 * -1 to drop the connection when even that failed. */
static int
refuse_upgrade(struct lws *wsi, int status, const char *detail,
	const char *www_authenticate)
{
	return write_problem_close(wsi, status, detail, www_authenticate,
		       LWS_WRITE_HTTP_FINAL) == 0 ? 1 : -1;
}

/* The stream's user and resume point from the upgrade request. Returns 0,
 * or an HTTP status to refuse with (detail filled). */
static int
stream_params(struct lws *wsi, gw__ws_conn *c, const char **detail)
{
	gw *g = gw_of(wsi);
	char path[64];
	if (!copy_header(wsi, WSI_TOKEN_GET_URI, path, sizeof path) ||
		strcmp(path, "/v1/stream") != 0) {
		*detail = "no WebSocket here: use /v1/stream";
		return 404;
	}
	gw__query q;
	read_query(wsi, &q);
	char auth[GW_TOKEN_BYTES_MAX + 16];
	const char *token = NULL;
	size_t length = 0;
	if (copy_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof auth) &&
		auth[0] != '\0') {
		if (gw__bearer(auth, &token, &length) < 0)
			token = NULL;
	} else {
		token = gw__query_get(&q, "access_token");
		length = token ? strlen(token) : 0;
	}
	if (token == NULL || length == 0) {
		*detail = "a bearer token or ?access_token= is required";
		return 401;
	}
	int rc = gw__token_verify(&g->key, token, length, gw__wall_s(),
		&c->user_id);
	if (rc < 0) {
		*detail = rc == GW_EEXPIRED ? "the token has expired"
					    : "the token is not valid";
		return 401;
	}
	const char *since = gw__query_get(&q, "since");
	if (since != NULL) {
		if (gw__parse_u64(since, &c->since_seq) < 0) {
			*detail = "since must be a sequence number";
			return 400;
		}
		c->has_since = true;
	}
	if (g->stopping) {
		*detail = "the node is shutting down";
		return 503;
	}
	return 0;
}

static int
on_confirm_upgrade(struct lws *wsi)
{
	gw *g = gw_of(wsi);
	uint64_t started = gw__now_us();
	gw__ws_conn probe;
	memset(&probe, 0, sizeof probe);
	const char *detail = NULL;
	int status = stream_params(wsi, &probe, &detail);
	gw__metrics_observe(g->metrics, GW_ROUTE_STREAM,
		status == 0 ? 101 : status, gw__now_us() - started);
	if (status == 0)
		return 0;
	return refuse_upgrade(wsi, status, detail,
		status == 401 ? "Bearer" : NULL);
}

static int
close_ws(struct lws *wsi, uint16_t code)
{
	lws_close_reason(wsi, (enum lws_close_status)code, NULL, 0);
	return -1;
}

static int
on_ws_established(struct lws *wsi, session *s)
{
	if (s == NULL)
		return -1;
	s->kind = SESSION_WS;
	gw__ws_conn *c = &s->u.ws;
	memset(c, 0, sizeof *c);
	c->g = gw_of(wsi);
	c->conn = wsi;
	const char *detail = NULL;
	if (stream_params(wsi, c, &detail) != 0) {
		s->kind = SESSION_NONE;
		return close_ws(wsi, 1008); /* policy: checked at upgrade */
	}
	c->last_rx_s = clock_s(c->g);
	int fd = lws_get_socket_fd(wsi);
	int sndbuf = GW_WS_SNDBUF_BYTES;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	if (gw__stream_open(c) < 0) {
		s->kind = SESSION_NONE;
		return close_ws(wsi, 1013); /* try again later */
	}
	return 0;
}

static int
on_ws_receive(struct lws *wsi, session *s, const void *in, size_t len)
{
	if (s == NULL || s->kind != SESSION_WS)
		return -1;
	gw__ws_conn *c = &s->u.ws;
	c->last_rx_s = clock_s(c->g);
	c->ping_sent = false;
	if (lws_frame_is_binary(wsi))
		return close_ws(wsi, 1003); /* unsupported data */
	if (c->rx == NULL) {
		c->rx = malloc(GW_WS_CLIENT_MESSAGE_BYTES_MAX);
		if (c->rx == NULL)
			return close_ws(wsi, 1011);
		c->rx_length = 0;
	}
	if (len > GW_WS_CLIENT_MESSAGE_BYTES_MAX - c->rx_length)
		return close_ws(wsi, 1009); /* message too big */
	memcpy(c->rx + c->rx_length, in, len);
	c->rx_length += (uint32_t)len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return 0;
	int code = gw__stream_receive(c, c->rx, c->rx_length);
	free(c->rx);
	c->rx = NULL;
	c->rx_length = 0;
	return code != 0 ? close_ws(wsi, (uint16_t)code) : 0;
}

/* The queue's head frame has gone to the socket. */
static void
frame_sent(gw__ws_conn *c)
{
	gw__frame *f = gw__frame_peek(&c->queue);
	gw__assert(f != NULL);
	uint64_t seq = f->seq;
	gw__frame_pop(&c->queue);
	gw__count(&c->g->metrics->ws_queue_frames, -1);
	gw__count(&c->g->metrics->ws_frames_sent_total, 1);
	if (seq != 0)
		gw__stream_written(c, seq, gw__frame_peek(&c->queue) == NULL);
}

/* A server text frame's header (RFC 6455 5.2: FIN, opcode 1, no mask)
 * for a payload of length bytes, written at h; returns its size. */
static size_t
frame_header(unsigned char *h, uint32_t length)
{
	h[0] = 0x81;
	if (length < 126) {
		h[1] = (unsigned char)length;
		return 2;
	}
	if (length < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(length >> 8);
		h[3] = (unsigned char)length;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)((uint64_t)length >> (56 - 8 * i));
	return FRAME_HEADER_BYTES_MAX;
}

/* The queued frames from the head that fit one send, framed one after
 * another into the loop's write buffer; their count and bytes. */
static uint32_t
gather_frames(gw__ws_conn *c, uint32_t frames_max, size_t *length)
{
	unsigned char *out = c->g->write_buffer + LWS_PRE;
	size_t used = 0;
	uint32_t n = 0;
	for (gw__frame *f = gw__frame_peek(&c->queue);
		f != NULL && n < frames_max; f = f->next) {
		if (used + FRAME_HEADER_BYTES_MAX + f->length >
			FRAMES_BATCH_BYTES)
			break;
		used += frame_header(out + used, f->length);
		memcpy(out + used, f->bytes + LWS_PRE, f->length);
		used += f->length;
		n++;
	}
	gw__assert(used <= FRAMES_BATCH_BYTES);
	*length = used;
	return n;
}

/* The queued frames while the socket takes them (lws allows more writes
 * when lws_send_pipe_choked says so). Two or more frames go in one send
 * (framed here, written raw), so a burst of events on a stream costs one
 * send, not one per frame. 0, or -1 when a write failed. */
static int
write_frames(struct lws *wsi, gw__ws_conn *c)
{
	uint32_t written = 0;
	while (written < GW_WS_WRITES_PER_CALLBACK_MAX) {
		gw__frame *f = gw__frame_peek(&c->queue);
		if (f == NULL || (written > 0 && lws_send_pipe_choked(wsi)))
			break;
		size_t length = 0;
		uint32_t n = f->next == NULL ? 0 : gather_frames(c,
			GW_WS_WRITES_PER_CALLBACK_MAX - written, &length);
		if (n < 2) {
			/* One frame (or one too big to gather): lws frames
			 * it in the headroom it was queued with. */
			if (lws_write(wsi, f->bytes + LWS_PRE, f->length,
				    LWS_WRITE_TEXT) < (int)f->length)
				return -1;
			n = 1;
		} else if (lws_write(wsi, c->g->write_buffer + LWS_PRE, length,
				   LWS_WRITE_RAW) < (int)length) {
			return -1;
		}
		for (uint32_t i = 0; i < n; i++)
			frame_sent(c);
		written += n;
	}
	return 0;
}

static int
on_ws_writable(struct lws *wsi, session *s)
{
	if (s == NULL || s->kind != SESSION_WS)
		return 0;
	gw__ws_conn *c = &s->u.ws;
	if (c->write_failed)
		return -1;
	/* A closing stream first flushes what it had queued, so a client
	 * that resumes from its last seq makes progress every time; the
	 * close wait (GW_WS_CLOSE_WAIT_S) bounds a reader that never drains. */
	if (c->close_code != 0 && gw__frame_peek(&c->queue) == NULL)
		return close_ws(wsi, c->close_code);
	if (c->ping_due && c->close_code == 0) {
		unsigned char ping[LWS_PRE + 1];
		c->ping_due = false;
		c->ping_sent = true;
		if (lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0)
			return -1;
		if (gw__frame_peek(&c->queue) != NULL)
			lws_callback_on_writable(wsi);
		return 0;
	}
	if (write_frames(wsi, c) < 0)
		return -1;
	if (gw__frame_peek(&c->queue) != NULL || c->close_code != 0)
		lws_callback_on_writable(wsi);
	return 0;
}

/*
 * Pings and hangups for live streams, by one sweep a second over the
 * stream list instead of lws's validity timers: lws 4.1 keeps those in a
 * sorted list with O(n) inserts, which at tens of thousands of sockets
 * spent most of the loop's time re-sorting (seen under perf). A silent
 * peer gets a ping after ws_ping_s and is dropped at ws_hangup_s. The
 * same sweep renews each stream's subscription (gw__stream_renew).
 */
static void
ping_sweep(uv_timer_t *t)
{
	gw *g = t->data;
	uint32_t now = clock_s(g);
	for (gw__link *l = g->streams.next; l != &g->streams; l = l->next) {
		gw__ws_conn *c = gw__container_of(l, gw__ws_conn, link);
		uint32_t silent = now - c->last_rx_s;
		if (c->conn == NULL || c->close_code != 0)
			continue;
		gw__stream_renew(c, now);
		if (silent >= g->cfg.ws_hangup_s) {
			lws_set_timeout(c->conn, PENDING_TIMEOUT_USER_OK,
				LWS_TO_KILL_ASYNC);
			continue;
		}
		if (silent >= g->cfg.ws_ping_s && !c->ping_sent && !c->ping_due) {
			c->ping_due = true;
			lws_callback_on_writable(c->conn);
		}
	}
}

void
gw__transport_ws_wake(gw__ws_conn *c)
{
	if (c->conn == NULL)
		return;
	gw *g = c->g;
	if (g->answering) {
		if (!c->woken) {
			c->woken = true;
			c->woken_next = g->woken;
			g->woken = c;
		}
		return;
	}
	lws_callback_on_writable(c->conn);
}

/* The streams woken during one wake-up of the api client: their frames
 * are written now when the socket takes them, as write_answered does for
 * HTTP answers, instead of asking for POLLOUT and writing from the
 * writable callback (with Debian's libuv each poll change is an
 * epoll_ctl DEL and ADD, and the frame waited one more loop turn). No
 * lws callback runs during a wake-up, so every woken stream's socket is
 * still open. A closing stream, a due ping or a choked socket take the
 * writable path as before. */
static void
write_woken(gw *g)
{
	while (g->woken != NULL) {
		gw__ws_conn *c = g->woken;
		g->woken = c->woken_next;
		c->woken_next = NULL;
		c->woken = false;
		struct lws *wsi = c->conn;
		if (wsi == NULL)
			continue;
		if (c->close_code != 0 || c->ping_due ||
			lws_send_pipe_choked(wsi)) {
			lws_callback_on_writable(wsi);
			continue;
		}
		if (write_frames(wsi, c) < 0) {
			/* Closing is a callback's answer (-1). */
			c->write_failed = true;
			lws_callback_on_writable(wsi);
			continue;
		}
		if (gw__frame_peek(&c->queue) != NULL)
			lws_callback_on_writable(wsi);
	}
}

bool
gw__transport_ws_choked(gw__ws_conn *c)
{
	return c->conn == NULL || lws_send_pipe_choked(c->conn) != 0;
}

void
gw__transport_ws_close_soon(gw__ws_conn *c)
{
	if (c->conn == NULL)
		return;
	lws_set_timeout(c->conn, PENDING_TIMEOUT_CLOSE_SEND,
		GW_WS_CLOSE_WAIT_S);
	lws_callback_on_writable(c->conn);
}

/* ---- connections ----------------------------------------------------------------- */

static void
on_new_client(struct lws *wsi)
{
	gw *g = gw_of(wsi);
	char ip[GW_IP_BYTES_MAX];
	peer_address(wsi, ip, sizeof ip);
	uint32_t slot;
	if (gw__conn_open(g->conns, ip, &slot) < 0) {
		gw__count(&g->metrics->connections_refused_total, 1);
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	lws_set_opaque_user_data(wsi, (void *)(uintptr_t)(slot + 1u));
	gw__count(&g->metrics->connections_open, 1);
}

static void
on_wsi_destroy(struct lws *wsi)
{
	uintptr_t slot = (uintptr_t)lws_get_opaque_user_data(wsi);
	if (slot == 0)
		return;
	gw *g = gw_of(wsi);
	lws_set_opaque_user_data(wsi, NULL);
	gw__conn_release(g->conns, (uint32_t)(slot - 1u));
	gw__assert(g->metrics->connections_open > 0);
	gw__count(&g->metrics->connections_open, -1);
}

/*
 * A first line that is not HTTP (an unknown method, a TLS hello, ...):
 * lws 4.1 would answer with its own HTML page, or nothing. With
 * LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG it hands the
 * connection over as a raw socket instead, and it gets a problem+json
 * 400 like every other error, then the connection closes.
 */
static int
on_raw_rx(struct lws *wsi, session *s)
{
	if (s == NULL)
		return -1;
	if (s->kind == SESSION_RAW)
		return 0; /* answered already; the rest is dropped */
	s->kind = SESSION_RAW;
	gw *g = gw_of(wsi);
	gw__metrics_observe(g->metrics, GW_ROUTE_UNMATCHED, 400, 0);
	if (write_problem_close(wsi, 400, "the request line is not HTTP/1.1",
		    NULL, LWS_WRITE_RAW) != 0)
		return -1;
	/* Hang up once it is out (lws flushes a partial write first). */
	lws_callback_on_writable(wsi);
	return 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	void *in, size_t len)
{
	session *s = user;
	switch (reason) {
	case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
		on_new_client(wsi);
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		on_wsi_destroy(wsi);
		return 0;
	case LWS_CALLBACK_HTTP:
		return on_http(wsi, s, in);
	case LWS_CALLBACK_HTTP_BODY:
		return s ? on_http_body(s, in, len) : 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		return s ? on_http_body_done(s) : 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_http_writable(wsi, s);
	case LWS_CALLBACK_CLOSED_HTTP:
		detach_request(s);
		return 0;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		if (in == NULL || strcmp(in, "websocket") != 0)
			return -1;
		return on_confirm_upgrade(wsi);
	case LWS_CALLBACK_ESTABLISHED:
		return on_ws_established(wsi, s);
	case LWS_CALLBACK_RECEIVE:
		return on_ws_receive(wsi, s, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_ws_writable(wsi, s);
	case LWS_CALLBACK_RECEIVE_PONG:
		if (s != NULL && s->kind == SESSION_WS) {
			s->u.ws.last_rx_s = clock_s(s->u.ws.g);
			s->u.ws.ping_sent = false;
		}
		return 0;
	case LWS_CALLBACK_RAW_ADOPT:
		return 0;
	case LWS_CALLBACK_RAW_RX:
		return on_raw_rx(wsi, s);
	case LWS_CALLBACK_RAW_WRITEABLE:
		return s != NULL && s->kind == SESSION_RAW ? -1 : 0;
	case LWS_CALLBACK_CLOSED:
		if (s != NULL && s->kind == SESSION_WS) {
			gw__stream_closed(&s->u.ws);
			s->u.ws.conn = NULL;
			s->kind = SESSION_NONE;
		}
		return 0;
	default:
		return 0;
	}
}

/* The largest single send: a cached image's whole response, one
 * response turn (headers and a body chunk) or one frame. lws 4.1 caps
 * each send() at tx_packet_size, and at rx_buffer_size when it is 0: with
 * the 256-byte receive buffer that split a 40 KB image into some 150
 * sends, each with an epoll rearm. */
#define TX_PACKET_BYTES                                                    \
	(GW_MEDIA_HEADER_BYTES_MAX + GW_MEDIA_CACHE_FILE_BYTES_MAX)
static_assert(TX_PACKET_BYTES >= HEADER_BYTES_MAX + WRITE_CHUNK_BYTES,
	"a response turn is one send");

static const struct lws_protocols protocols[] = {
	{"flock", callback, sizeof(session), WS_RX_BUFFER_BYTES, 0, NULL,
		TX_PACKET_BYTES},
	{NULL, NULL, 0, 0, 0, NULL, 0}, /* 4.1.6: no LWS_PROTOCOL_LIST_TERM */
};

/* ---- lifetime ----------------------------------------------------------------------- */

/* True when host:port can be bound now (port 0 always can). Checked
 * before lws touches the loop, so the common failure (the port is taken)
 * leaves the loop clean. */
static bool
port_free(const char *host, uint16_t port)
{
	if (port == 0 || host == NULL)
		return true;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	socklen_t n;
	int family;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		family = AF_INET;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		n = sizeof *in;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		family = AF_INET6;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		n = sizeof *in6;
	} else {
		return true; /* a name: the listen socket resolves and reports */
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	bool ok = bind(fd, (struct sockaddr *)&ss, n) == 0;
	close(fd);
	return ok;
}

/* The lws levels the gateway logs (lws_set_log_level is given the
 * same). */
#define LWS_LOG_LEVELS (LLL_ERR | LLL_WARN)

/* Debian's lws 4.1 is built with its debug logging compiled in: its
 * header parser calls _lws_log for every byte it takes (LLL_PARSER),
 * and a request passes a dozen more info and debug lines. Each call
 * saved the vector registers and went on to _lws_logv only to find its
 * level filtered: 2-3% of the loop's CPU samples in DeathStarBench's mix.
 * flockd exports _lws_log (Makefile, LWS_LOG_EXPORTS), so lws's calls,
 * which go through its PLT, come here and a filtered level returns at
 * once; the others go on to lws's own _lws_logv as before. A program
 * that does not export it (the test runner) keeps lws's. */
void
_lws_log(int filter, const char *format, ...)
{
	if ((filter & LWS_LOG_LEVELS) == 0)
		return;
	va_list ap;
	va_start(ap, format);
	_lws_logv(filter, format, ap);
	va_end(ap);
}

static void
lws_log_to_rt(int level, const char *line)
{
	(void)level;
	rt_log(NULL, RT_LOG_WARN, "lws", "%.*s", (int)strcspn(line, "\n"),
		line);
}

/* ---- accepting ------------------------------------------------------------------------ */

/*
 * Each loop accepts on its own listen socket; all of them are bound to
 * the same address with SO_REUSEPORT, so the kernel spreads connections
 * over the loops. lws 4.1 cannot share a port between contexts itself
 * (it sets SO_REUSEPORT only with several service threads, which
 * Debian's build, LWS_MAX_SMP 1, does not have), so the gateway accepts
 * and hands each socket to its loop's lws context (lws_adopt_socket_
 * vhost: the same path lws's own listener takes after accept).
 */
static void
listen_close(gw *g)
{
	if (!g->listening)
		return;
	g->listening = false;
	uv_poll_stop(&g->listen_poll);
	uv_close((uv_handle_t *)&g->listen_poll, NULL);
	close(g->listen_fd);
	g->listen_fd = -1;
}

static void
on_listen_readable(uv_poll_t *handle, int status, int events)
{
	gw *g = handle->data;
	(void)events;
	if (status < 0 || !g->listening)
		return;
	for (int i = 0; i < ACCEPTS_PER_WAKE_MAX; i++) {
		struct sockaddr_storage ss;
		socklen_t n = sizeof ss;
		int fd = accept4(g->listen_fd, (struct sockaddr *)&ss, &n,
			SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break; /* EAGAIN, or out of descriptors for now */
		char ip[GW_IP_BYTES_MAX];
		format_address((const struct sockaddr *)&ss, ip, sizeof ip);
		if (g->stopping || gw__conn_full(g->conns, ip)) {
			gw__count(&g->metrics->connections_refused_total, 1);
			close(fd);
			continue;
		}
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				sizeof one);
		}
		/* lws owns fd from here, also when adopting fails. */
		lws_adopt_socket_vhost(g->vhost, fd);
	}
}

/* Binds this loop's listen socket (SO_REUSEPORT) to the configured
 * host and port (the first loop's port for the others) and starts
 * accepting. 0 or GW_EIO. */
static int
listen_open(gw *g, uint16_t port)
{
	char service[8];
	snprintf(service, sizeof service, "%u", port);
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(g->cfg.listen_host, service, &hints, &res) != 0 ||
		res == NULL)
		return GW_EIO;
	int fd = socket(res->ai_family,
		SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	bool ok = fd >= 0 &&
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ==
			0 &&
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ==
			0 &&
		bind(fd, res->ai_addr, res->ai_addrlen) == 0 &&
		listen(fd, SOMAXCONN) == 0;
	freeaddrinfo(res);
	struct sockaddr_storage ss;
	socklen_t n = sizeof ss;
	if (ok && getsockname(fd, (struct sockaddr *)&ss, &n) == 0)
		port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
	else
		ok = false;
	if (ok && uv_poll_init(g->loop, &g->listen_poll, fd) != 0)
		ok = false;
	if (!ok) {
		if (fd >= 0)
			close(fd);
		return GW_EIO;
	}
	g->listen_poll.data = g;
	g->listen_fd = fd;
	g->listening = true;
	g->port = port;
	uv_poll_start(&g->listen_poll, UV_READABLE, on_listen_readable);
	return 0;
}

/* ---- one loop ------------------------------------------------------------------------ */

enum {
	CONTROL_STOP = 1u,    /* begin the shutdown on that loop */
	CONTROL_CHECK = 2u,   /* first: another loop quiesced */
	CONTROL_DESTROY = 4u, /* tear that loop's lws context down */
};

static void begin_stop(gw *g);
static void loop_free(gw *g);
static void check_quiesced(gw *first);
static void loop_close(gw *g);

/* Any thread: asks loop to act on flag on its own thread. Under the
 * first's control_lock, so a loop that sends after the receiver closed
 * its control handle (the last CHECK racing the first's teardown) sends
 * nothing instead of waking a closed handle. */
static void
control_send(gw *loop, uint32_t flag)
{
	uv_mutex_lock(&loop->first->control_lock);
	if (!loop->control_closed) {
		__atomic_fetch_or(&loop->control_flags, flag,
			__ATOMIC_ACQ_REL);
		uv_async_send(&loop->control);
	}
	uv_mutex_unlock(&loop->first->control_lock);
}

static void
control_close(gw *g)
{
	uv_mutex_lock(&g->first->control_lock);
	g->control_closed = true;
	uv_close((uv_handle_t *)&g->control, NULL);
	uv_mutex_unlock(&g->first->control_lock);
}

static void
control_callback(uv_async_t *handle)
{
	gw *g = handle->data;
	uint32_t flags = __atomic_exchange_n(&g->control_flags, 0,
		__ATOMIC_ACQ_REL);
	if (flags & CONTROL_STOP)
		begin_stop(g);
	if ((flags & CONTROL_CHECK) && g == g->first)
		check_quiesced(g);
	if (flags & CONTROL_DESTROY)
		loop_close(g);
}

/* The handles and the lws context of one loop, on that loop's thread.
 * port is where to listen (0: the configured port, the first loop). */
static int
loop_open(gw *g, uv_loop_t *loop, uint16_t port)
{
	g->loop = loop;
	if (g->domain != NULL && api_client_create(g->domain,
				     notify_from_any_thread, g, &g->client) != 0)
		return GW_ENOMEM;
	/* Answers are rendered from their packed bytes (handlers.c). */
	if (g->client != NULL)
		api_client_set_packed_bodies(g->client, true);
	if (uv_async_init(loop, &g->async, async_callback) != 0)
		return GW_EIO;
	g->async.data = g;
	uv_async_init(loop, &g->control, control_callback);
	g->control.data = g;
	uv_timer_init(loop, &g->shutdown_timer);
	g->shutdown_timer.data = g;
	uv_timer_init(loop, &g->ping_timer);
	g->ping_timer.data = g;
	g->clock_base_ms = gw__now_us() / 1000;
	uv_timer_start(&g->ping_timer, ping_sweep, 1000, 1000);
	g->handles_open = true;

	/* No lws validity timers: ping_sweep does pings and hangups. */
	static const lws_retry_bo_t retry = {0};
	void *foreign_loops[1] = {loop};
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	/* A server vhost without a listener: accepts are adopted. */
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	/* Not-HTTP first lines come to on_raw_rx instead of lws's HTML. */
	info.options = LWS_SERVER_OPTION_LIBUV |
		LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG |
		LWS_SERVER_OPTION_DISABLE_IPV6;
	info.foreign_loops = foreign_loops;
	info.user = g;
	info.retry_and_idle_policy = &retry;
	info.max_http_header_pool = HEADER_POOL_MAX;
	info.max_http_header_data = HEADER_DATA_BYTES;
	info.keepalive_timeout = 30;
	info.timeout_secs = 30;
	info.vhost_name = "flock";
	/* With a foreign loop the context finishes dying on the loop; lws
	 * clears this pointer when it has, and the loop's end completes it
	 * otherwise (as lws's foreign-loop example does). */
	info.pcontext = (struct lws_context **)&g->context_alive;
	struct lws_context *context = lws_create_context(&info);
	if (context == NULL)
		return GW_EIO;
	g->context = context;
	g->context_alive = context;
	g->vhost = lws_get_vhost_by_name(context, "flock");
	if (g->vhost == NULL || listen_open(g, port) != 0) {
		rt_log(g->rt, RT_LOG_ERROR, "gateway",
			"could not listen on %s:%u", g->cfg.listen_host,
			port != 0 ? port : g->cfg.listen_port);
		return GW_EIO;
	}
	return 0;
}

/* Undoes a loop_open that failed part way. A failed lws context may
 * leave handles on the loop whose callbacks lived in the plugin it
 * unloaded: that loop is not run again (flockd exits). */
static void loop_release(gw *g);

static void
loop_open_failed(gw *g)
{
	loop_release(g);
	g->context_alive = NULL;
}

/* Stops listening, destroys the loop's lws context, closes its handles. */
static void
loop_release(gw *g)
{
	listen_close(g);
	if (g->context != NULL) {
		lws_context_destroy(g->context);
		g->context = NULL;
	}
	if (g->handles_open) {
		uv_close((uv_handle_t *)&g->async, NULL);
		control_close(g);
		uv_close((uv_handle_t *)&g->shutdown_timer, NULL);
		uv_close((uv_handle_t *)&g->ping_timer, NULL);
		g->handles_open = false;
	}
}

/* Tears the loop's lws context down and closes its handles; its libuv
 * loop then runs out. On the loop's thread. */
static void
loop_close(gw *g)
{
	uv_timer_stop(&g->shutdown_timer);
	loop_release(g);
}

/* The thread of a loop after the first: opens it, says so, runs it
 * until its handles are closed (loop_close), finishes lws's teardown. */
static void
loop_thread(void *arg)
{
	gw *g = arg;
	int rc = GW_EIO;
	if (uv_loop_init(&g->own_loop) == 0) {
		rc = loop_open(g, &g->own_loop, g->first->port);
		if (rc != 0)
			loop_open_failed(g);
	}
	g->start_rc = rc;
	uv_sem_post(&g->started);
	if (rc != 0)
		return;
	uv_run(&g->own_loop, UV_RUN_DEFAULT);
	if (g->context_alive != NULL)
		lws_context_destroy(g->context_alive);
	g->context_alive = NULL;
	uv_run(&g->own_loop, UV_RUN_NOWAIT);
	uv_loop_close(&g->own_loop);
}

/* A loop's memory and its tables (the shared ones with the first). */
static gw *
loop_alloc(gw *first, uint32_t index, uint32_t count, rt_runtime *rt,
	api *domain, const gw_key *key, const gw_config *cfg)
{
	gw *g = calloc(1, sizeof *g);
	if (g == NULL)
		return NULL;
	g->first = first != NULL ? first : g;
	g->index = index;
	g->rt = rt;
	g->domain = domain;
	g->key = *key;
	g->cfg = *cfg;
	/* The node-wide bound, split over the loops. */
	g->cfg.requests_in_flight_max =
		(cfg->requests_in_flight_max + count - 1) / count;
	g->listen_fd = -1;
	if (uv_mutex_init(&g->control_lock) != 0) {
		free(g);
		return NULL;
	}
	gw__list_init(&g->requests);
	gw__list_init(&g->streams);
	snprintf(g->web_dir, sizeof g->web_dir, "%s",
		cfg->web_dir ? cfg->web_dir : "gateway/web");
	g->metrics = calloc(1, sizeof *g->metrics);
	g->write_buffer = malloc(WRITE_BUFFER_BYTES);
	if (g->metrics == NULL || g->write_buffer == NULL ||
		gw__media_cache_create(GW_MEDIA_CACHE_BYTES_MAX / count,
			&g->media_cache) < 0 ||
		gw__json_cache_create(&g->json_cache) < 0 ||
		gw__token_cache_create(&g->tokens) < 0)
		goto fail;
	if (first == NULL) {
		if (gw__rate_table_create(cfg->rate_signup,
			    GW_LIMIT_ENTRIES_MAX, &g->rate_signup) < 0 ||
			gw__rate_table_create(cfg->rate_login,
				GW_LIMIT_ENTRIES_MAX, &g->rate_login) < 0 ||
			gw__conn_table_create(cfg->connections_per_ip_max,
				GW_LIMIT_ENTRIES_MAX, &g->conns) < 0)
			goto fail;
	} else {
		g->rate_signup = first->rate_signup;
		g->rate_login = first->rate_login;
		g->conns = first->conns;
	}
	return g;
fail:
	g->first = g; /* frees its own tables only */
	if (first != NULL) {
		g->rate_signup = NULL;
		g->rate_login = NULL;
		g->conns = NULL;
	}
	loop_free(g);
	return NULL;
}

static void
loop_free(gw *g)
{
	gw__assert(g->context == NULL);
	if (g->context_alive != NULL)
		lws_context_destroy(g->context_alive);
	g->context_alive = NULL;
	/* Requests the domain never answered: the client is gone, and after
	 * api_client_destroy no callback can name them. */
	if (g->client != NULL) {
		api_client_destroy(g->client);
		g->client = NULL;
	}
	while (!gw__list_empty(&g->requests)) {
		gw__request *r = gw__container_of(g->requests.next,
			gw__request, link);
		gw__list_remove(&r->link);
		r->pending = false;
		gw__request_free(r);
	}
	if (g->first == g) {
		gw__rate_table_destroy(g->rate_signup);
		gw__rate_table_destroy(g->rate_login);
		gw__conn_table_destroy(g->conns);
	}
	gw__media_cache_destroy(g->media_cache);
	gw__json_cache_destroy(g->json_cache);
	gw__token_cache_destroy(g->tokens);
	free(g->write_buffer);
	free(g->metrics);
	uv_mutex_destroy(&g->control_lock);
	free(g);
}

/* Event loops for cfg: as asked, else one per two cores the process may
 * use. The actors' workers default to one per core, and the loops share
 * the cores with them: on the 2-core development machines, shared with
 * other tenants, two loops were no faster than one on GET /v1/feed
 * (three paired runs: 5,286-7,815 req/s against 6,262-7,968) and cost
 * more CPU per request (85-104 us against 83-93: fewer requests per
 * wake-up, more switches), and a hot stream's loop fell behind the likes
 * the other loop took (gateway/README.md). */
static uint32_t
loops_wanted(const gw_config *cfg)
{
	uint32_t n = cfg->loops;
	if (n == 0)
		n = (uint32_t)uv_available_parallelism() / 2;
	if (n < 1)
		n = 1;
	if (n > GW_LOOPS_MAX)
		n = GW_LOOPS_MAX;
	return n;
}

/* Starts loop index on its own thread and waits until it listens. */
static int
loop_start(gw *first, uint32_t index)
{
	gw *g = loop_alloc(first, index, first->loops_count, first->rt,
		first->domain, &first->key, &first->cfg);
	if (g == NULL)
		return GW_ENOMEM;
	/* The per-loop split was already applied to first's copy. */
	g->cfg.requests_in_flight_max = first->cfg.requests_in_flight_max;
	if (uv_sem_init(&g->started, 0) != 0) {
		loop_free(g);
		return GW_ENOMEM;
	}
	if (uv_thread_create(&g->thread, loop_thread, g) != 0) {
		uv_sem_destroy(&g->started);
		loop_free(g);
		return GW_ENOMEM;
	}
	g->thread_started = true;
	uv_sem_wait(&g->started);
	uv_sem_destroy(&g->started);
	first->loops[index] = g;
	if (g->start_rc != 0)
		return g->start_rc;
	__atomic_store_n(&first->loops_started, index + 1, __ATOMIC_RELEASE);
	return 0;
}

int
gw_create(uv_loop_t *loop, rt_runtime *rt, api *domain, const gw_key *key,
	const gw_config *cfg, gw **out)
{
	gw__assert(loop != NULL);
	gw__assert(key != NULL);
	gw__assert(cfg != NULL);
	if (!port_free(cfg->listen_host, cfg->listen_port)) {
		rt_log(rt, RT_LOG_ERROR, "gateway", "%s:%u is in use",
			cfg->listen_host, cfg->listen_port);
		return GW_EIO;
	}
	uint32_t count = loops_wanted(cfg);
	gw *g = loop_alloc(NULL, 0, count, rt, domain, key, cfg);
	if (g == NULL)
		return GW_ENOMEM;
	g->loops_count = count;
	g->loops[0] = g;
	lws_set_log_level(LWS_LOG_LEVELS, lws_log_to_rt);
	int rc = loop_open(g, loop, cfg->listen_port);
	if (rc != 0) {
		loop_open_failed(g);
		gw_destroy(g);
		return rc;
	}
	__atomic_store_n(&g->loops_started, 1, __ATOMIC_RELEASE);
	for (uint32_t i = 1; i < count && rc == 0; i++)
		rc = loop_start(g, i);
	if (rc != 0) {
		/* The loops that started close on their threads (gw_destroy
		 * joins them); the first's loop is not run again. */
		for (uint32_t i = 1; i < count; i++)
			if (g->loops[i] != NULL && g->loops[i]->start_rc == 0)
				control_send(g->loops[i], CONTROL_DESTROY);
		loop_close(g);
		gw_destroy(g);
		return rc;
	}
	*out = g;
	return 0;
}

uint16_t
gw_port(const gw *g)
{
	return g->first->port;
}

void
gw_set_ready(gw *g, bool ready)
{
	__atomic_store_n(&g->first->ready, ready, __ATOMIC_RELAXED);
}

void
gw_set_metrics_extra(gw *g, gw_metrics_extra_callback cb, void *arg)
{
	gw *first = g->first;
	first->metrics_extra_arg = arg;
	__atomic_store_n(&first->metrics_extra, cb, __ATOMIC_RELEASE);
}

/* ---- shutdown ----------------------------------------------------------------------- */

/*
 * Every loop stops accepting, drains its requests and closes its
 * streams on its own (shutdown_tick), then says it has quiesced. When
 * all have, the first calls the caller's done (which stops the threads
 * that open descriptors: lws 4.1 closes its event pipe twice at
 * teardown) and only then tells each loop to destroy its lws context.
 */
static void
loop_quiesced(gw *g)
{
	uv_timer_stop(&g->shutdown_timer);
	g->quiesced = true;
	gw *first = g->first;
	if (g == first) {
		check_quiesced(first);
		return;
	}
	__atomic_add_fetch(&first->loops_quiesced, 1, __ATOMIC_ACQ_REL);
	control_send(first, CONTROL_CHECK);
}

static void
check_quiesced(gw *first)
{
	gw__assert(first->first == first);
	if (!first->quiesced || first->stopped_called ||
		__atomic_load_n(&first->loops_quiesced, __ATOMIC_ACQUIRE) <
			first->loops_count - 1)
		return;
	first->stopped_called = true;
	gw_stopped_callback stopped = first->stopped;
	first->stopped = NULL;
	if (stopped != NULL)
		stopped(first->stopped_arg);
	for (uint32_t i = 1; i < first->loops_count; i++)
		control_send(first->loops[i], CONTROL_DESTROY);
	loop_close(first);
}

static void
shutdown_tick(uv_timer_t *t)
{
	gw *g = t->data;
	uint64_t now = gw__now_us() / 1000;
	uint64_t elapsed = now - g->shutdown_started_ms;
	bool drained = gw__list_empty(&g->requests);
	bool grace_over = elapsed >= g->cfg.shutdown_grace_ms;
	if (g->quiesced)
		return;
	if (!g->streams_closing && (drained || grace_over)) {
		g->streams_closing = true;
		g->shutdown_started_ms = now; /* the close phase's clock */
		for (gw__link *l = g->streams.next; l != &g->streams;
			l = l->next) {
			gw__ws_conn *c = gw__container_of(l, gw__ws_conn, link);
			if (c->close_code == 0)
				c->close_code = 1001; /* going away */
			gw__transport_ws_close_soon(c);
		}
		if (!drained)
			rt_log(g->rt, RT_LOG_WARN, "gateway",
				"shutdown grace over with requests in flight");
		return;
	}
	if (g->streams_closing &&
		(gw__list_empty(&g->streams) || elapsed >= SHUTDOWN_CLOSE_MS)) {
		g->streams_closing = false;
		loop_quiesced(g);
	}
}

/* On the loop's thread: no more accepts, then the drain. */
static void
begin_stop(gw *g)
{
	if (g->stopping)
		return;
	g->stopping = true;
	listen_close(g);
	g->shutdown_started_ms = gw__now_us() / 1000;
	uv_timer_start(&g->shutdown_timer, shutdown_tick, 0, SHUTDOWN_TICK_MS);
}

int
gw_shutdown(gw *g, gw_stopped_callback done, void *arg)
{
	gw__assert(g->first == g);
	if (g->stopping)
		return GW_ESTATE;
	__atomic_store_n(&g->ready, false, __ATOMIC_RELAXED);
	g->stopped = done;
	g->stopped_arg = arg;
	rt_log(g->rt, RT_LOG_INFO, "gateway",
		"shutting down: no new connections, %s in flight",
		gw__list_empty(&g->requests) ? "nothing" : "requests");
	begin_stop(g);
	for (uint32_t i = 1; i < g->loops_count; i++)
		control_send(g->loops[i], CONTROL_STOP);
	return 0;
}

void
gw_destroy(gw *g)
{
	if (g == NULL)
		return;
	gw__assert(g->first == g);
	for (uint32_t i = g->loops_count; i-- > 1;) {
		gw *loop = g->loops[i];
		if (loop == NULL)
			continue;
		if (loop->thread_started)
			uv_thread_join(&loop->thread);
		loop_free(loop);
		g->loops[i] = NULL;
	}
	loop_free(g);
}
