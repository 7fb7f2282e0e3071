/*
 * internal.h — names shared only inside gateway/ (prefix gw__).
 *
 * The gateway is split so that its core is testable without a socket or
 * the domain:
 *   router.c     routes, query strings, header values (pure)
 *   body.c       request bodies collected under a cap (pure)
 *   json.c       msgpack->JSON transcoding, request JSON, problem+json
 *   token.c      Ed25519 JWTs and pre-signed upload URLs (libsodium)
 *   limits.c     per-IP token buckets and connection counts (pure)
 *   metrics.c    counters, histograms, Prometheus text (pure)
 *   wsqueue.c    WebSocket frame queue, UTF-8 check, client messages
 *   form.c       multipart field sink fed by lws_spa (pure)
 *   handlers.c   routes -> api.h calls -> responses
 *   media_cache.c hot image variants with prebuilt responses (pure)
 *   stream.c     the live stream over api_stream
 *   lws_server.c the only file that includes libwebsockets
 *   flockd.c     the node's main
 *
 * Nothing here is thread-safe: all of it runs on the loop thread.
 */
#ifndef FLOCK_GATEWAY_INTERNAL_H
#define FLOCK_GATEWAY_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "actors/api.h"
#include "gateway/gateway.h"

/* Asserts stay on in release builds (STYLE.md). */
#define gw__assert(cond) assert(cond)

/* ---- limits ------------------------------------------------------------ */

/* Request paths longer than this are refused (414 is not in API.md: 404);
 * the longest real route with two ids is under 100 bytes. */
#define GW_PATH_BYTES_MAX 1024
/* Path parameters per route: /v1/posts/{post}/comments/{comment}. */
#define GW_PATH_PARAMS_MAX 2
/* One path parameter: usernames are 30, ids 20 digits, hashes 64 hex;
 * static file names stay under this. */
#define GW_PATH_PARAM_BYTES_MAX 128
/* Query parameters kept per request; more are ignored (paging uses 2,
 * search 4, the signed upload URL 3). */
#define GW_QUERY_PARAMS_MAX 8
/* Bytes of all query names and values together. */
#define GW_QUERY_BYTES_MAX 2048
/* A bearer token: an Ed25519 JWT is about 250 bytes. */
#define GW_TOKEN_BYTES_MAX 1024
/* Default JSON body cap: the longest valid body (a 2,200-character
 * caption, 4 bytes each in UTF-8, with keys) fits in 16 KiB; 64 KiB leaves
 * room without letting a client pin memory. */
#define GW_JSON_BODY_BYTES_DEFAULT (64u * 1024u)
/* Nesting allowed when transcoding a domain answer to JSON. */
#define GW_JSON_DEPTH_MAX 32
/* Idempotency-Key header value (api.h's limit). */
#define GW_IDEMPOTENCY_KEY_BYTES_MAX API_IDEMPOTENCY_KEY_BYTES_MAX
/* Extra response headers one response may carry (Link, RateLimit...). */
#define GW_RESPONSE_HEADERS_MAX 8
/* One extra header value; a Link with a cursor fits easily. */
#define GW_HEADER_VALUE_BYTES_MAX 512
/* Per-IP tables hold this many addresses; the least recently used entry
 * is replaced past it (an attacker with more addresses than this gets
 * fresh buckets, which bounds memory and is the usual trade-off). */
#define GW_LIMIT_ENTRIES_MAX 16384u
/* The textual form of an IPv6 address with scope fits in 64 bytes. */
#define GW_IP_BYTES_MAX 64
/* Frames queued for one WebSocket before it is closed with 4008: a
 * client that lets 256 events pile up is not keeping up; it resumes with
 * ?since= and loses nothing. */
#define GW_WS_QUEUE_FRAMES_DEFAULT 256u
/* Frames queued for a socket that is not choked (a burst arriving in
 * one poll, faster than one loop turn): a reader is only "slow" when its
 * socket is choked too; this bounds the burst. */
#define GW_WS_QUEUE_FRAMES_BURST_MAX 4096u
/* Frames written per writable callback while the socket takes them. */
#define GW_WS_WRITES_PER_CALLBACK_MAX 64u
/* Bytes queued for one WebSocket before 4008, whatever the count. */
#define GW_WS_QUEUE_BYTES_MAX (1024u * 1024u)
/* An event frame's opening, {"type":"<name>","seq":<u64>: the longest
 * name is a few words. */
#define GW_WS_EVENT_HEAD_BYTES_MAX 96u
/* Room reserved for an event frame at once: a notification or a feed
 * item fits, so rendering one reallocates rarely. */
#define GW_WS_EVENT_BYTES_TYPICAL 1024u
/* A client message (an ack) is tiny; anything bigger is closed 1009. */
#define GW_WS_CLIENT_MESSAGE_BYTES_MAX 1024u
/* Kernel send buffer of a stream socket (Linux doubles it): bounds the
 * kernel memory a slow reader can pin and lets the frame queue notice a
 * reader that stopped within ~100 events, instead of after megabytes of
 * autotuned buffer. */
#define GW_WS_SNDBUF_BYTES (32 * 1024)
/* Seconds a closing socket may take to flush its close frame. */
#define GW_WS_CLOSE_WAIT_S 5
/* Seconds between a stream's renewals with the user's actor (actors/api.h
 * api_stream_renew): the longest a stream stays silent after its actor
 * moved to another node or restarted; a renewal of a stream still
 * subscribed is one message. */
#define GW_STREAM_RENEW_S 15u
/* Close code for a reader too slow for its queue (API.md). */
#define GW_WS_CLOSE_SLOW 4008
/* multipart: the caption field's stored bytes (2,200 characters of up to
 * 4 bytes each, plus the other small fields). */
#define GW_FORM_FIELD_BYTES_MAX (16u * 1024u)
/* Image variants kept in memory with their prebuilt responses: the hot
 * set of a feed (a page shows 20 small images of ~30 KB; 64 MiB holds
 * about a hundred pages' worth) without letting the cache grow with the
 * store. Least recently used entries go first. */
#define GW_MEDIA_CACHE_BYTES_MAX (64u * 1024u * 1024u)
/* A file larger than this is served from disk each time, 64 KiB per
 * writable turn. A cached one is written whole from the HTTP callback,
 * and lws keeps a copy of whatever a slow reader's socket did not take:
 * the cap bounds that copy per connection. Feed images (medium, ~40-100
 * KB) and most large variants (1080 wide, ~100-400 KB) fit. */
#define GW_MEDIA_CACHE_FILE_BYTES_MAX (256u * 1024u)
/* "<64 hex>/<variant>" and a NUL. */
#define GW_MEDIA_KEY_BYTES_MAX 80u
/* The prebuilt 200 headers: security headers (~450 bytes), the ETag and
 * the rest fit in 1 KiB. */
#define GW_MEDIA_HEADER_BYTES_MAX 1024u
/* Cache-Control of content-addressed images. */
#define GW_CACHE_CONTROL_IMMUTABLE "public, max-age=31536000, immutable"
/* Latency histogram buckets (upper bounds, microseconds). */
#define GW_LATENCY_BUCKETS 14

/* ---- HTTP methods and routes ------------------------------------------- */

typedef enum gw__method {
	GW_METHOD_GET = 0,
	GW_METHOD_HEAD,
	GW_METHOD_POST,
	GW_METHOD_PUT,
	GW_METHOD_PATCH,
	GW_METHOD_DELETE,
	GW_METHOD_OPTIONS,
	GW_METHOD_OTHER,
	GW_METHOD_COUNT,
} gw__method;

const char *gw__method_name(gw__method m);

typedef enum gw__route_id {
	GW_ROUTE_SIGNUP = 0,
	GW_ROUTE_LOGIN,
	GW_ROUTE_USER_ME,
	GW_ROUTE_USER_GET,
	GW_ROUTE_FOLLOW,
	GW_ROUTE_FOLLOWERS,
	GW_ROUTE_FOLLOWING,
	GW_ROUTE_USER_POSTS,
	GW_ROUTE_MEDIA_UPLOAD,
	GW_ROUTE_MEDIA_RESERVE,
	GW_ROUTE_MEDIA_PUT,
	GW_ROUTE_MEDIA_GET,
	GW_ROUTE_POST_CREATE,
	GW_ROUTE_POST_GET,
	GW_ROUTE_POST_DELETE,
	GW_ROUTE_LIKE,
	GW_ROUTE_COMMENTS,
	GW_ROUTE_COMMENT_ADD,
	GW_ROUTE_COMMENT_DELETE,
	GW_ROUTE_FEED,
	GW_ROUTE_STORY_POST,
	GW_ROUTE_STORIES,
	GW_ROUTE_STORY_SEEN,
	GW_ROUTE_NOTIFICATIONS,
	GW_ROUTE_NOTIFICATIONS_READ,
	GW_ROUTE_SEARCH,
	GW_ROUTE_STREAM,
	GW_ROUTE_MEDIA_FILE,
	GW_ROUTE_METRICS,
	GW_ROUTE_HEALTHZ,
	GW_ROUTE_READYZ,
	GW_ROUTE_INDEX,
	GW_ROUTE_STATIC,
	GW_ROUTE_UNMATCHED, /* 404 and 405: one metrics label */
	GW_ROUTE_COUNT,
} gw__route_id;

/* How a route takes its body. */
typedef enum gw__body_kind {
	GW_BODY_NONE = 0,  /* a body is read (under the JSON cap), ignored */
	GW_BODY_JSON,      /* application/json, capped by json_body_bytes_max */
	GW_BODY_UPLOAD,    /* image bytes (image/...) or multipart `media` */
	GW_BODY_POST,      /* JSON, or multipart `media` + `caption` */
	GW_BODY_RAW_IMAGE, /* image bytes only (pre-signed PUT) */
} gw__body_kind;

#define GW_ROUTE_F_AUTH 1u       /* a valid bearer token is required */
#define GW_ROUTE_F_IDEMPOTENT 2u /* Idempotency-Key is honoured */
#define GW_ROUTE_F_PAGED 4u      /* limit + after_cursor, Link header */
#define GW_ROUTE_F_API 8u        /* Cache-Control: no-store */

typedef struct gw__route_info {
	gw__route_id id;
	gw__method method;
	const char *pattern;  /* "/v1/posts/{}"; "{*}" takes the rest */
	gw__body_kind body;
	uint32_t flags;       /* GW_ROUTE_F_* */
	int success_status;   /* 200, 201 or 204 when the domain says OK */
} gw__route_info;

typedef struct gw__route_match {
	const gw__route_info *info;
	uint32_t params_count;
	char params[GW_PATH_PARAMS_MAX][GW_PATH_PARAM_BYTES_MAX];
	uint32_t allowed_methods; /* bit per gw__method, for 405's Allow */
} gw__route_match;

/*
 * Matches method + path (no query, already percent-decoded by the HTTP
 * parser) against the route table. 0 with out filled; GW_ENOTFOUND when
 * no pattern matches the path; GW_EMETHOD when one does for another
 * method (out->allowed_methods says which). Parameters longer than
 * GW_PATH_PARAM_BYTES_MAX, empty segments and "." / ".." never match.
 */
int gw__route(gw__method method, const char *path, gw__route_match *out);
/* The pattern, as a metrics label ("/v1/posts/{}"). Never NULL. */
const char *gw__route_label(gw__route_id id);
const gw__route_info *gw__route_info_of(gw__route_id id);
/* "GET, POST" for an Allow header. */
void gw__allow_header(uint32_t allowed_methods, char *buf, size_t size);

/* ---- query strings ------------------------------------------------------ */

typedef struct gw__query {
	uint32_t count;
	uint32_t used;                     /* bytes of storage used */
	const char *names[GW_QUERY_PARAMS_MAX];
	const char *values[GW_QUERY_PARAMS_MAX];
	char storage[GW_QUERY_BYTES_MAX];
} gw__query;

void gw__query_init(gw__query *q);
/* Adds one "name=value" fragment (already decoded; a fragment without '='
 * has an empty value). GW_ETOOLARGE when the storage or the count is
 * exhausted (the fragment is dropped). */
int gw__query_add(gw__query *q, const char *fragment, size_t length);
/* Parses a raw query string ("a=1&b=%20x+y"): splits on '&', decodes
 * %XX and '+'. GW_EINVAL on a bad escape or an encoded NUL. */
int gw__query_parse(gw__query *q, const char *raw, size_t length);
/* The first value of name, or NULL. Borrowed from q. */
const char *gw__query_get(const gw__query *q, const char *name);

/* Percent-encodes src into dst for use in a query value (unreserved
 * characters kept). GW_ETOOLARGE if dst is too small. */
int gw__percent_encode(const char *src, char *dst, size_t size);

/* Parses a decimal uint64 (no sign, no spaces, no leading '+'; at most
 * 20 digits, no overflow). GW_EINVAL otherwise. */
int gw__parse_u64(const char *s, uint64_t *out);

/* Paging from a query: limit 1..API_PAGE_LIMIT_MAX (larger is clamped),
 * after_cursor up to cursor_size-1 bytes. GW_EINVAL on a bad limit. */
int gw__parse_page(const gw__query *q, uint32_t *limit, const char **cursor);

/* ---- header values ------------------------------------------------------ */

/* "Bearer <token>" (scheme case-insensitive). Returns a pointer into
 * value and its length, or GW_EINVAL. */
int gw__bearer(const char *value, const char **token, size_t *length);
/* Media type of a Content-Type value, lower-cased, without parameters
 * ("image/png"); and the multipart boundary when present. GW_EINVAL on a
 * malformed value. */
int gw__content_type(const char *value, char *type, size_t type_size,
	char *boundary, size_t boundary_size);
/* If-None-Match: true when etag (with quotes) is listed, W/ or not, or
 * the value is "*". */
bool gw__etag_matches(const char *if_none_match, const char *etag);
/* Idempotency-Key: 1..255 visible ASCII characters. */
bool gw__idempotency_key_valid(const char *key, size_t length);
/* Static file names below /static/: [A-Za-z0-9._-/], no "..", no "//",
 * not starting with '/' or '.'. */
bool gw__static_path_valid(const char *path);
/* Content-Type for a file name by extension ("application/octet-stream"
 * when unknown). */
const char *gw__content_type_for(const char *file_name);

/* ---- request bodies ----------------------------------------------------- */

typedef struct gw__body {
	unsigned char *bytes; /* owned; NULL until the first byte */
	size_t length;
	size_t capacity;
	size_t cap;           /* bytes allowed; one more is GW_ETOOLARGE */
} gw__body;

void gw__body_init(gw__body *b, size_t cap);
/* Appends; GW_ETOOLARGE when length + n > cap (nothing appended),
 * GW_ENOMEM when allocation fails. Growth never allocates past cap (+1
 * for a terminating NUL kept after the bytes). */
int gw__body_append(gw__body *b, const void *bytes, size_t n);
/* The bytes (owned by the caller from now: free()) and their length;
 * b is empty after, as after gw__body_free. */
void *gw__body_take(gw__body *b, size_t *length);
/* Allocates room for n more bytes (at most up to the cap) so appends up
 * to them do not reallocate. GW_ENOMEM. */
int gw__body_reserve(gw__body *b, size_t n);
void gw__body_free(gw__body *b);

/* ---- JSON ---------------------------------------------------------------- */

/* msgpack object -> new jansson value (owned). GW_EINVAL for a shape JSON
 * cannot carry (invalid UTF-8 in a string, depth past GW_JSON_DEPTH_MAX);
 * integers above INT64_MAX become decimal strings, binary becomes
 * base64. */
int gw__msgpack_to_json(const msgpack_object *o, json_t **out);
/* Renders v compactly; returns a malloc'd NUL-terminated string and its
 * length, or NULL on allocation failure. */
char *gw__json_render(const json_t *v, size_t *length);

/* Rendered JSON of list items (maps inside arrays), keyed by their exact
 * msgpack bytes: many readers see the same post. Loop thread only. */
typedef struct gw__json_cache gw__json_cache;
int gw__json_cache_create(gw__json_cache **out);
void gw__json_cache_destroy(gw__json_cache *c);
void gw__json_cache_counts(const gw__json_cache *c, uint64_t *hits,
	uint64_t *misses);
/* Appends o as compact JSON to out: the same text gw__msgpack_to_json +
 * gw__json_render give, without building the tree (structure, plain
 * ASCII strings, integers, booleans and null written here, other scalars
 * rendered by jansson). Also GW_EINVAL for a
 * map with a repeated key. cache may be NULL. On error out is as it was
 * (GW_EINVAL shape, GW_ENOMEM, GW_ETOOLARGE from out's cap). */
int gw__msgpack_render(gw__json_cache *cache, const msgpack_object *o,
	gw__body *out);
/* The same, for o unpacked by msgpack-c from raw (whose strings point
 * into it, as the unpacker leaves them): the cache keys items by their
 * packed bytes instead of copying every field. raw may be NULL. */
int gw__msgpack_render_raw(gw__json_cache *cache, const msgpack_object *o,
	const void *raw, size_t raw_length, gw__body *out);
/* The same for a packed answer (cache not NULL): list items found in
 * the cache under their packed bytes are not decoded. GW_EINVAL also
 * for bytes that are not one msgpack object. A top-level "next_cursor"
 * string that fits is copied to cursor ("" otherwise). */
int gw__msgpack_render_packed(gw__json_cache *cache, const void *bytes,
	size_t length, gw__body *out, char *cursor, size_t cursor_size);

/* Parses a request body that must be one JSON object. GW_EINVAL with a
 * detail (static or in detail_buf) otherwise. *out owned. */
int gw__json_parse_object(const void *bytes, size_t length, json_t **out,
	char *detail, size_t detail_size);
/* Unknown keys (not in allowed[count]) -> GW_EINVAL with the key named. */
int gw__json_only_keys(const json_t *obj, const char *const *allowed,
	size_t count, char *detail, size_t detail_size);
/* A string field: GW_ENOTFOUND absent (when !required, *out = NULL and
 * 0), GW_EINVAL wrong type. Borrowed from obj. */
int gw__json_string(const json_t *obj, const char *key, bool required,
	const char **out, char *detail, size_t detail_size);
/* An id field: a decimal string (or a non-negative integer). */
int gw__json_id(const json_t *obj, const char *key, bool required,
	uint64_t *out, char *detail, size_t detail_size);
/* A boolean-valued enum string ("follow"/"unfollow"). */
int gw__json_action(const json_t *obj, const char *key, const char *yes,
	const char *no, bool *out, char *detail, size_t detail_size);
/* A non-negative integer field. */
int gw__json_uint(const json_t *obj, const char *key, bool required,
	uint64_t max, uint64_t *out, char *detail, size_t detail_size);

/* RFC 9457 body for status with a title from the status and the given
 * detail (may be NULL). Returns malloc'd NUL-terminated JSON. */
char *gw__problem_render(int status, const char *detail, size_t *length);
/* "Not Found", ... for a status; "Error" for unknown ones. */
const char *gw__status_title(int status);
/* The problem type slug for a status ("/problems/not-found"). */
const char *gw__problem_type(int status);
/* HTTP status for an api.h code. */
int gw__status_for_api(int code);

/* ---- tokens -------------------------------------------------------------- */

/*
 * JWT, compact form, Ed25519 ("EdDSA"). The header is fixed
 * {"alg":"EdDSA","typ":"JWT","kid":...}; on verification the header is
 * parsed only to refuse anything whose alg is not exactly "EdDSA" (so
 * "none" and "HS256" are refused), and the signature is always checked
 * with Ed25519 and the configured key: the token never chooses the
 * algorithm. Claims: sub (user id, decimal string), iat, exp (seconds
 * since the Unix epoch), iss "flock". Valid while now_s < exp.
 */
int gw__token_issue(const gw_key *key, uint64_t user_id, uint64_t now_s,
	uint64_t ttl_s, char *out, size_t size);
/* GW_EBADTOKEN (malformed, wrong alg, bad signature, bad claims),
 * GW_EEXPIRED (signature good, now_s >= exp). */
int gw__token_verify(const gw_key *key, const char *token, size_t length,
	uint64_t now_s, uint64_t *user_id);
/* Tokens that verified, with their user and exp (loop thread only). */
typedef struct gw__token_cache gw__token_cache;
int gw__token_cache_create(gw__token_cache **out);
void gw__token_cache_destroy(gw__token_cache *c);
/* Lookups that found the token, and those that verified it. */
void gw__token_cache_counts(const gw__token_cache *c, uint64_t *hits,
	uint64_t *misses);
/* gw__token_verify's answer, from the cache when this exact token
 * verified before (then only its expiry is checked again). c may be
 * NULL (no cache). */
int gw__token_verify_cached(gw__token_cache *c, const gw_key *key,
	const char *token, size_t length, uint64_t now_s, uint64_t *user_id);

/* Pre-signed upload URL path+query for media_id owned by user_id:
 * "/v1/media/uploads/<id>?user=<u>&expires=<s>&sig=<b64url Ed25519>". */
int gw__upload_url_sign(const gw_key *key, uint64_t media_id,
	uint64_t user_id, uint64_t expires_s, char *out, size_t size);
/* Checks the signature over (media_id, user, expires) from the query.
 * GW_EBADTOKEN altered or malformed, GW_EEXPIRED past expires. */
int gw__upload_url_verify(const gw_key *key, uint64_t media_id,
	const gw__query *q, uint64_t now_s, uint64_t *user_id);

/* base64url without padding. Return bytes written or GW_E*. */
int gw__b64url_encode(const void *bytes, size_t n, char *out, size_t size);
int gw__b64url_decode(const char *s, size_t n, void *out, size_t size,
	size_t *written);

/* ---- per-IP limits -------------------------------------------------------- */

typedef struct gw__bucket_state {
	uint32_t limit;      /* capacity */
	uint32_t remaining;  /* whole tokens left after this request */
	uint64_t reset_s;    /* seconds until the bucket is full again */
	uint64_t retry_after_s; /* when refused: seconds until one token */
} gw__bucket_state;

typedef struct gw__rate_table gw__rate_table;
/* A table of token buckets keyed by client address, each holding
 * rate.capacity tokens refilled evenly over rate.window_s. */
int gw__rate_table_create(gw_rate rate, uint32_t entries_max,
	gw__rate_table **out);
void gw__rate_table_destroy(gw__rate_table *t);
/* Takes one token for ip at now_ms: 0, or GW_ELIMITED (state says when
 * to retry). state is filled either way. */
int gw__rate_take(gw__rate_table *t, const char *ip, uint64_t now_ms,
	gw__bucket_state *state);
gw_rate gw__rate_table_rate(const gw__rate_table *t);

typedef struct gw__conn_table gw__conn_table;
int gw__conn_table_create(uint32_t per_ip_max, uint32_t entries_max,
	gw__conn_table **out);
void gw__conn_table_destroy(gw__conn_table *t);
/* Counts one more connection from ip: 0 with *slot_out naming its entry
 * (stable while the count is non-zero), or GW_ELIMITED at the cap,
 * GW_ENOMEM when the table is full of live addresses. */
int gw__conn_open(gw__conn_table *t, const char *ip, uint32_t *slot_out);
/* True when one more connection from ip would be refused. */
bool gw__conn_full(gw__conn_table *t, const char *ip);
/* The address of a connection counted in slot (its count keeps the
 * slot's address): what getpeername would say, without the call. */
void gw__conn_address(gw__conn_table *t, uint32_t slot, char *out,
	size_t size);
/* Forgets one connection counted in slot. */
void gw__conn_release(gw__conn_table *t, uint32_t slot);
/* Forgets one connection from ip (which gw__conn_open counted). */
void gw__conn_close(gw__conn_table *t, const char *ip);
uint32_t gw__conn_count(gw__conn_table *t, const char *ip);

/* ---- metrics ------------------------------------------------------------- */

/* Statuses with a row of their own; others count under "other". */
#define GW_STATUS_SLOTS 20

typedef struct gw__metrics {
	uint64_t requests[GW_ROUTE_COUNT][GW_STATUS_SLOTS];
	uint64_t latency_buckets[GW_ROUTE_COUNT][GW_STATUS_SLOTS]
		[GW_LATENCY_BUCKETS];
	uint64_t latency_sum_us[GW_ROUTE_COUNT][GW_STATUS_SLOTS];
	uint64_t connections_open;      /* sockets, HTTP and WebSocket */
	uint64_t connections_refused_total;
	uint64_t ws_open;               /* live streams */
	uint64_t ws_frames_sent_total;
	uint64_t ws_closed_slow_total;  /* 4008 */
	uint64_t ws_queue_frames;       /* frames queued now, all sockets */
	uint64_t rate_limited_total;
	uint64_t requests_in_flight;
} gw__metrics;

typedef struct gw__process_stats {
	uint64_t rss_bytes;
	rt_stats runtime;
	bool have_runtime;
	uint32_t api_pending;
} gw__process_stats;

/* Each gateway loop has its own gw__metrics, written by that loop only
 * and read by whichever loop renders /metrics (gw__metrics_add): every
 * field is loaded and stored with relaxed atomics, which on the one
 * writer costs what a plain increment does and never tears a read. */
static inline void
gw__count(uint64_t *counter, int64_t delta)
{
	__atomic_store_n(counter,
		__atomic_load_n(counter, __ATOMIC_RELAXED) + (uint64_t)delta,
		__ATOMIC_RELAXED);
}

void gw__metrics_observe(gw__metrics *m, gw__route_id route, int status,
	uint64_t latency_us);
/* Adds another loop's counters into sum (sum is the caller's own). */
void gw__metrics_add(gw__metrics *sum, const gw__metrics *m);
/* Bytes the Prometheus text may take (every route x status with its
 * histogram is about 600 KiB). */
#define GW_METRICS_BYTES_MAX (4u * 1024u * 1024u)
/* Appends Prometheus text to out (init with GW_METRICS_BYTES_MAX);
 * GW_ENOMEM or GW_ETOOLARGE. */
int gw__metrics_render(const gw__metrics *m, const gw__process_stats *ps,
	const char *extra, gw__body *out);
/* Resident set size of this process, from /proc/self/statm. */
uint64_t gw__process_rss_bytes(void);

/* ---- WebSocket frames ------------------------------------------------------ */

/* Room a rendered body keeps in front of it for the headers (and
 * LWS_PRE): a response's headers are ~800 bytes. */
#define GW_RESPONSE_HEADROOM 2048u
/* Bytes libwebsockets wants before each payload (LWS_PRE); checked
 * against the real value in lws_server.c. */
#define GW_WS_PRE 16

typedef struct gw__frame gw__frame;
struct gw__frame {
	gw__frame *next;
	uint64_t seq;     /* the event's stream seq; 0 for none (resync) */
	uint32_t length;  /* payload bytes after the headroom */
	uint32_t reserved;
	unsigned char bytes[]; /* GW_WS_PRE headroom, then the payload */
};

typedef struct gw__frame_queue {
	gw__frame *head;
	gw__frame *tail;
	uint32_t frames;
	uint32_t bytes;
} gw__frame_queue;

/* Takes the text (copied) as a new frame at the tail. GW_EFULL past
 * frames_max or GW_WS_QUEUE_BYTES_MAX (nothing queued), GW_ENOMEM. */
int gw__frame_push(gw__frame_queue *q, const char *text, size_t length,
	uint64_t seq, uint32_t frames_max);
/* The head (borrowed) or NULL. */
gw__frame *gw__frame_peek(gw__frame_queue *q);
/* Drops the head. */
void gw__frame_pop(gw__frame_queue *q);
void gw__frame_clear(gw__frame_queue *q);

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
bool gw__utf8_valid(const unsigned char *s, size_t n);

/* A client->server message: {"type":"ack","seq":N}. 0 with *seq, or
 * GW_EINVAL for anything else (the caller ignores unknown types). */
int gw__ws_parse_client(const char *text, size_t length, uint64_t *seq);
/* One event frame: {"type":..., "seq":N, "data":...}. malloc'd text. */
char *gw__ws_render_event(const char *type, uint64_t seq,
	const msgpack_object *data, size_t *length);

/* ---- multipart sink (fed by lws_spa file callbacks) ------------------------ */

/* Collects the `media` file of a multipart body under a byte cap; other
 * file fields are refused. */
typedef struct gw__form {
	gw__body media;   /* the file bytes */
	bool media_seen;  /* a `media` part opened */
	bool media_done;  /* its final chunk arrived */
	int error;        /* first error: GW_ETOOLARGE, GW_EINVAL */
} gw__form;

void gw__form_init(gw__form *f, size_t media_cap);
/* States mirror lws_spa_fileupload_states. Returns 0 or -1 (stop). */
typedef enum gw__form_state {
	GW_FORM_CONTENT = 0,
	GW_FORM_FINAL_CONTENT = 1,
	GW_FORM_OPEN = 2,
	GW_FORM_CLOSE = 3,
} gw__form_state;
int gw__form_file(gw__form *f, const char *name, const char *buf, int len,
	gw__form_state state);
void gw__form_free(gw__form *f);


/* ---- the gateway, requests and live streams ------------------------------ */

typedef struct gw__request gw__request;
typedef struct gw__ws_conn gw__ws_conn;

/* Intrusive doubly linked list link. */
typedef struct gw__link {
	struct gw__link *prev;
	struct gw__link *next;
} gw__link;

#define gw__container_of(ptr, type, member)                                 \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

void gw__list_init(gw__link *head);
void gw__list_push(gw__link *head, gw__link *item);
void gw__list_remove(gw__link *item);
bool gw__list_empty(const gw__link *head);

/* ---- media cache (media_cache.c) ------------------------------------------ */

typedef struct gw__media_cache gw__media_cache;

/* One cached variant: the whole 200 response, GW_WS_PRE bytes of
 * headroom before it (lws_write may use them). */
typedef struct gw__media_entry {
	gw__link lru;                   /* in the LRU list */
	struct gw__media_entry *next;   /* hash chain */
	uint64_t key_hash;
	uint32_t key_length;
	char key[GW_MEDIA_KEY_BYTES_MAX]; /* "<hash>/<variant>" */
	const char *content_type;       /* static */
	size_t header_length;           /* bytes of response before the body */
	size_t response_length;         /* headers + body */
	unsigned char *response;        /* into storage, after the headroom */
	unsigned char storage[];
} gw__media_entry;

typedef struct gw__media_cache_stat {
	uint32_t entries;
	size_t bytes;
	uint64_t hits, misses, evictions;
} gw__media_cache_stat;

/* An empty cache holding at most bytes_max (entries' memory included).
 * 0 or GW_ENOMEM. */
int gw__media_cache_create(size_t bytes_max, gw__media_cache **out);
void gw__media_cache_destroy(gw__media_cache *c);
/* The entry whose key is exactly key[0..length) ("<hash>/<variant>", as
 * after /media/ in a path), made most recently used; NULL when absent
 * (c may be NULL). Borrowed until the next gw__media_cache_insert. */
const gw__media_entry *gw__media_cache_find(gw__media_cache *c,
	const char *key, size_t length);
/* Caches the bytes of a stored variant (copied) with its 200 response;
 * evicts least recently used entries to stay under the cap. An entry
 * already there is returned as it is. content_type must be static.
 * 0 with *out (borrowed as above), GW_ETOOLARGE past
 * GW_MEDIA_CACHE_FILE_BYTES_MAX or the cap, GW_EINVAL, GW_ENOMEM. */
int gw__media_cache_insert(gw__media_cache *c, const char *hash,
	const char *variant, const char *content_type, const void *bytes,
	size_t length, const gw__media_entry **out);
void gw__media_cache_stats(const gw__media_cache *c,
	gw__media_cache_stat *out);

/*
 * One event loop of the gateway. The node's gateway is several of these
 * (gw_config.loops, one per two cores by default): each has its own thread
 * and libuv loop (the first runs on the caller's loop), its own lws
 * context, listen socket on the shared port (SO_REUSEPORT: the kernel
 * spreads connections over them), api client, requests, streams,
 * caches and metrics. What they share is behind first: the per-IP rate
 * and connection tables (locked, limits.c), readiness, the metrics
 * callback, and the list of loops that /metrics sums. A connection
 * lives and dies on the loop that accepted it; nothing of one loop is
 * touched by another loop's thread except its metrics counters (relaxed
 * atomics, gw__count) and its control flags (control).
 */
struct gw {
	gw *first;                /* loop 0: owns the shared parts */
	uint32_t index;           /* 0 for first */
	/* first only: every loop (loops[0] == first); loops_started counts
	 * the ones whose fields other loops may read (release/acquire). */
	gw *loops[GW_LOOPS_MAX];
	uint32_t loops_count;
	uint32_t loops_started;
	uint32_t loops_quiesced;  /* first only: loops done draining */
	bool quiesced;            /* this loop: drained, streams closed */
	uv_loop_t own_loop;       /* loops after the first run this one */
	uv_thread_t thread;
	bool thread_started;
	uv_sem_t started;         /* the thread's setup is done */
	int start_rc;
	uv_async_t control;       /* another loop asks: stop, destroy, check */
	uint32_t control_flags;   /* CONTROL_* (lws_server.c), atomic */
	bool control_closed;      /* under first->control_lock */
	uv_mutex_t control_lock;  /* first's: control sends and closes */
	int listen_fd;            /* -1 once closed */
	uv_poll_t listen_poll;
	bool listening;
	unsigned char *write_buffer; /* one response turn (lws_server.c) */
	void *vhost;              /* struct lws_vhost * adopting accepts */
	bool stopped_called;      /* first: the caller's done ran */
	uv_loop_t *loop;
	rt_runtime *rt;
	api *domain;
	api_client *client;
	gw_key key;
	gw_config cfg;
	char web_dir[512];
	void *context;            /* struct lws_context, until shutdown */
	void *context_alive;      /* lws NULLs it once fully destroyed */
	uv_async_t async;         /* api client notify */
	uv_timer_t shutdown_timer;
	uv_timer_t ping_timer;    /* sweeps streams for pings and hangups */
	uint64_t clock_base_ms;   /* gw clock zero (monotonic ms) */
	gw__metrics *metrics;
	gw__rate_table *rate_signup;
	gw__rate_table *rate_login;
	gw__conn_table *conns;
	gw__media_cache *media_cache; /* hot variants; NULL: none */
	gw__json_cache *json_cache;   /* rendered list items */
	gw__token_cache *tokens;      /* verified bearer tokens */
	gw_metrics_extra_callback metrics_extra;
	void *metrics_extra_arg;
	gw__link requests;        /* gw__request waiting for the domain */
	gw__link streams;         /* gw__ws_conn open */
	/* Answers the domain gave during one wake-up of the api client,
	 * written when the wake-up ends (lws_server.c, write_answered). */
	gw__request *answered;
	/* Streams that got their first queued frame during that wake-up,
	 * written when it ends too (lws_server.c, write_woken). */
	gw__ws_conn *woken;
	bool answering;           /* inside that wake-up */
	uint64_t shutdown_started_ms;
	gw_stopped_callback stopped;
	void *stopped_arg;
	uint16_t port;
	bool ready;
	bool stopping;
	bool handles_open;
	bool streams_closing;     /* shutdown: close frames sent */
};

/* An extra response header. */
typedef struct gw__header {
	char name[32];
	char value[GW_HEADER_VALUE_BYTES_MAX];
} gw__header;

/* One HTTP request from its headers to its response. Heap-allocated so
 * it can outlive its connection while the domain answers: when the
 * connection closes first, conn becomes NULL and the answer frees it. */
struct gw__request {
	gw *g;
	void *conn;                 /* struct lws *, NULL once closed */
	gw__link link;              /* in g->requests while pending */
	uint64_t started_us;
	gw__method method;
	gw__route_match match;
	gw__query query;
	char path[GW_PATH_BYTES_MAX];
	char ip[GW_IP_BYTES_MAX];
	char content_type[128];     /* media type, lower case */
	char boundary[80];
	char idempotency_key[GW_IDEMPOTENCY_KEY_BYTES_MAX + 1];
	char if_none_match[256];
	char authorization[GW_TOKEN_BYTES_MAX + 16];
	uint64_t content_length;
	bool has_content_length;
	uint64_t user_id;           /* authenticated user, 0 for none */
	uint64_t chained_media_id;  /* multipart post: the uploaded media */
	gw__body body;              /* JSON or raw bytes */
	bool multipart;
	gw__form form;
	char *caption;              /* multipart caption (owned) */
	void *spa;                  /* struct lws_spa * */
	bool pending;               /* a domain call is in flight */
	bool dispatched;            /* gw__handle ran */
	/* response */
	bool responded;
	int status;
	const char *response_type;  /* Content-Type */
	gw__body response;          /* body bytes */
	gw__header headers[GW_RESPONSE_HEADERS_MAX];
	uint32_t headers_count;
	int file_fd;                /* -1, or a file to stream */
	uint64_t file_size;
	uint64_t file_sent;
	bool headers_sent;
	size_t response_sent;
	/* The body starts this far into response.bytes: room for the
	 * status line and headers (and LWS_PRE) in front of it, so a body
	 * that fits one write is sent from where it was rendered. */
	size_t response_offset;
	bool close_after;           /* the body was not read: close */
	const char *cache_control;  /* NULL: no-store for API routes */
	gw__request *answered_next; /* in g->answered */
};

/* handlers.c: after the headers. Routes, authenticates, applies per-IP
 * limits and body caps. Returns true when it has already responded (an
 * error), false when the body (if any) should be collected and then
 * gw__handle called. */
bool gw__request_begin(gw__request *r);
/* handlers.c: with the body complete, calls the domain (or answers). */
void gw__handle(gw__request *r);
/* handlers.c: frees a request and what it owns. */
void gw__request_free(gw__request *r);

/* Responses (handlers.c). Each sets the status and body and hands the
 * request to the transport once (gw__transport_respond). */
void gw__respond_problem(gw__request *r, int status, const char *detail);
void gw__respond_json(gw__request *r, int status, json_t *body_taken);
void gw__respond_text(gw__request *r, int status, const char *type,
	const char *text, size_t length);
void gw__respond_empty(gw__request *r, int status);
void gw__response_header(gw__request *r, const char *name,
	const char *value);
/* The response headers every response carries (name, value pairs). */
extern const char *const gw__security_headers[][2];
extern const size_t gw__security_headers_count;

/* lws_server.c: the response is ready; write it (or free the request if
 * its connection is gone). */
void gw__transport_respond(gw__request *r);
/* uv_poll.c: uv_poll_start calls on this thread until the batch ends
 * are applied then, once each, as their net change (see uv_poll.c). */
void gw__uv_poll_batch_begin(void);
void gw__uv_poll_batch_end(void);
/* Microseconds on a monotonic clock. */
uint64_t gw__now_us(void);
/* Seconds since the Unix epoch. */
uint64_t gw__wall_s(void);

/* One live stream; lives in the connection's libwebsockets session data,
 * so keep it small (100,000 idle sockets at <= 4 KiB each). */
struct gw__ws_conn {
	gw *g;
	void *conn;                /* struct lws * */
	gw__link link;             /* in g->streams */
	api_stream *stream;
	gw__frame_queue queue;
	uint64_t user_id;
	uint64_t since_seq;
	unsigned char *rx;         /* partial client message, lazily */
	uint32_t rx_length;
	uint64_t acked_seq;        /* last seq acked to the domain */
	uint32_t last_rx_s;        /* gw clock: the peer's last frame */
	uint32_t renewed_s;        /* gw clock: the stream's last renewal */
	uint16_t close_code;       /* non-zero: close with it when writable */
	bool has_since;
	bool ping_due;             /* send a ping when writable */
	bool ping_sent;            /* a ping is out since last_rx_s */
	bool woken;                /* in g->woken: frames to write */
	bool write_failed;         /* a write outside a callback failed:
				      the next writable callback closes */
	gw__ws_conn *woken_next;   /* in g->woken */
};

/* stream.c: the socket is open: subscribe. 0 or an API_E/GW_E code. */
int gw__stream_open(gw__ws_conn *c);
/* stream.c: a complete client text message. Returns a close code or 0. */
int gw__stream_receive(gw__ws_conn *c, const unsigned char *text,
	size_t length);
/* stream.c: frames up to seq were written to the socket. */
void gw__stream_written(gw__ws_conn *c, uint64_t seq, bool queue_empty);
/* stream.c: renews the subscription at the user's actor, now_s being the
 * gw clock, once GW_STREAM_RENEW_S have passed since the last. */
void gw__stream_renew(gw__ws_conn *c, uint32_t now_s);
/* stream.c: the socket closed: unsubscribe and free the queue. */
void gw__stream_closed(gw__ws_conn *c);
/* lws_server.c: true when c's socket cannot take more right now. */
bool gw__transport_ws_choked(gw__ws_conn *c);
/* lws_server.c: c has frames to write: during the api client's wake-up
 * they are written when it ends (if the socket takes them), else at the
 * next writable callback. */
void gw__transport_ws_wake(gw__ws_conn *c);
/* lws_server.c: c->close_code is set: send it when writable, and drop
 * the socket if that has not happened within GW_WS_CLOSE_WAIT_S. */
void gw__transport_ws_close_soon(gw__ws_conn *c);

#endif /* FLOCK_GATEWAY_INTERNAL_H */
