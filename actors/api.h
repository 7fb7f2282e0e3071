/*
 * api.h — the one entry to flock's social domain.
 *
 * The gateway, the simulator's workload, the benchmarks and the tests all
 * call these functions; the gateway is only a protocol adapter around
 * them. Commands and queries are asynchronous: each takes a callback that
 * runs later on the caller's own thread, from api_client_poll or
 * api_client_wait. An api_client is single-threaded: one per event loop,
 * per simulator driver, per benchmark thread.
 *
 * Answers are msgpack maps shaped exactly like the JSON bodies of
 * ../shared/API.md (same keys; ids as decimal strings; times as RFC 3339
 * strings), so the gateway transcodes them to JSON without knowing the
 * domain, and the same bytes cross nodes unchanged.
 *
 * Who may do what is decided here, in one place: every call carries the
 * authenticated user (api_ctx.user_id, 0 for none) and the domain
 * refuses what that user may not do (API_EFORBIDDEN / API_EUNAUTHORIZED).
 *
 * Durability: a command's callback reports success only after its
 * journal record is durable (persistence's group commit). Effects on
 * other actors (fan-out, counters, notifications) are re-driven after a
 * crash and deduplicated by their targets.
 *
 * What it deliberately does not do: HTTP, JSON, tokens, per-IP limits
 * (the gateway's); where an actor lives (the runtime routes).
 */
#ifndef FLOCK_ACTORS_API_H
#define FLOCK_ACTORS_API_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/runtime.h"

typedef struct ps_node ps_node; /* persistence/persistence.h */

/* ---- errors: stable codes the gateway maps to HTTP statuses ----------- */

enum {
	API_OK = 0,
	API_EINVALID = -100,       /* 400 malformed or invalid input */
	API_EUNAUTHORIZED = -101,  /* 401 no or bad credentials */
	API_EFORBIDDEN = -102,     /* 403 not yours */
	API_ENOTFOUND = -103,      /* 404 no such thing */
	API_ECONFLICT = -104,      /* 409 taken, or idempotent request running */
	API_ETOOLARGE = -105,      /* 413 */
	API_EMEDIATYPE = -106,     /* 415 media type not accepted */
	API_EIDEMPOTENCY = -107,   /* 422 key reused with another body */
	API_ERATELIMITED = -108,   /* 429, retry_after_ms set */
	API_EUNAVAILABLE = -109,   /* 503 overloaded or owner unavailable */
	API_EINTERNAL = -110,      /* 500 a bug or storage failure */
	API_EGONE = -111,          /* 410 (e.g. an expired story) */
};

const char *api_strerror(int code);
/* The HTTP status for code (200 for API_OK). */
int api_http_status(int code);

/* ---- limits (API.md "Limits"); 400 past them --------------------------- */

#define API_USERNAME_BYTES_MAX 30  /* ^[a-z0-9._]{1,30}$ */
#define API_PASSWORD_BYTES_MIN 8
#define API_PASSWORD_BYTES_MAX 128
#define API_EMAIL_BYTES_MAX 254    /* RFC 5321 path limit */
#define API_BIO_CHARACTERS_MAX 150
#define API_CAPTION_CHARACTERS_MAX 2200
#define API_CAPTION_HASHTAGS_MAX 30
#define API_COMMENT_CHARACTERS_MAX 2200
#define API_PAGE_LIMIT_DEFAULT 20
#define API_PAGE_LIMIT_MAX 50
#define API_STORY_SECONDS_MAX 86400
#define API_IDEMPOTENCY_KEY_BYTES_MAX 255
#define API_SEARCH_QUERY_BYTES_MAX 100
/* Home timeline ring; older entries fall off (Twitter's timelines keep
 * 800 as well). Configurable in api_config. */
#define API_TIMELINE_ENTRIES_DEFAULT 800
/* Authors with more followers than this are celebrities: pulled at read
 * time, not pushed. Configurable. */
#define API_CELEBRITY_FOLLOWERS_DEFAULT 10000

/* ---- configuration and lifetime ---------------------------------------- */

/* A per-user token bucket (kept in the acting user's actor). A refused
 * action answers API_ERATELIMITED with retry_after_ms and the bucket's
 * state in api_result. capacity 0: no limit. */
typedef struct api_rate {
	uint32_t capacity;     /* bucket size (burst); 0: unlimited */
	uint64_t refill_ms;    /* time for one token to come back */
} api_rate;

typedef struct api_config {
	uint32_t timeline_entries_max;
	uint32_t celebrity_followers_min;
	uint64_t ask_timeout_ms;        /* deadline of every internal ask */
	/* How far two nodes' wall clocks may be apart. A like or follow
	 * that reaches its actor later than its caller's deadline (the
	 * caller's clock) by more than this is refused: the caller gave up
	 * on it and may have made a later call that it would undo. Clocks
	 * kept by NTP are within tens of ms; default 1,000 ms. */
	uint64_t clock_skew_ms_max;
	/* argon2id cost; OWASP minimum is 19 MiB and 2 passes. Tests and
	 * the simulator may lower it; flockd never does. */
	uint64_t password_memlimit_bytes;
	uint64_t password_opslimit;
	uint32_t password_threads;      /* bounded hashing pool size */
	uint32_t password_queue_max;    /* pending hashes before 503 */
	api_rate rate_likes;            /* 10/s */
	api_rate rate_posts;            /* 30/h */
	api_rate rate_comments;         /* 1/s */
	api_rate rate_follows;          /* 400/day */
	uint64_t idempotency_ttl_ms;    /* 24 h */
	const char *media_base_url;     /* "/media" */
	const char *data_dir;           /* media files live under it */
	uint32_t media_threads;         /* bounded libvips pool size */
	uint32_t media_queue_max;       /* queued items before 503 */
	uint32_t media_attempts_max;    /* tries before an item is failed */
	/* Benchmarks and tests: called on the worker thread that applied a
	 * post to a follower's home timeline (the timeline holds it from
	 * then on). Must be quick and thread-safe. NULL: none. */
	void (*timeline_observer)(void *arg, uint64_t follower_id,
		uint64_t post_id);
	void *timeline_observer_arg;
} api_config;

void api_config_default(api_config *cfg);

typedef struct api api;

/*
 * Registers the domain's actor kinds on rt and binds them to store
 * (NULL: no durability, for tests that say so). Call before rt_start.
 * *out owned; api_destroy after rt_stop.
 */
int api_create(rt_runtime *rt, ps_node *store, const api_config *cfg,
	api **out);
/*
 * Binds the store when it can only be opened after api_create
 * (ps_node_open wants the kinds registered before it replays): rt_create,
 * api_create(rt, NULL, ...), ps_node_open(rt), api_bind_store, rt_start.
 * Before rt_start and before any call; store borrowed until api_destroy.
 */
void api_bind_store(api *a, ps_node *store);
void api_destroy(api *a);
/*
 * The domain's answer to ps_node_options.owes (arg unused): whether a
 * snapshot's state still owes effects to other actors (an outbox with
 * unconfirmed effects, a fan-out not yet acknowledged by every follower).
 * The store marks such snapshots, and a node opening after a crash wakes
 * their actors so they send again, even when a checkpoint passed all of
 * their journal records. Kinds without owed effects answer false.
 */
bool api_state_owes(void *arg, rt_addr addr, const void *state);

/* ---- clients ----------------------------------------------------------- */

typedef struct api_client api_client;

/* notify is called from any thread when completions are waiting (wire it
 * to uv_async_send); NULL for a caller that polls or waits. */
int api_client_create(api *a, rt_inbox_notify_callback notify, void *arg,
	api_client **out);
void api_client_destroy(api_client *c);
/* Runs every completion that is ready; returns how many ran. */
int api_client_poll(api_client *c);
/* Waits up to timeout_ms for at least one completion, then polls. In
 * deterministic mode this runs the scheduler. Returns how many ran. */
int api_client_wait(api_client *c, uint64_t timeout_ms);
/* Calls in flight on this client. */
uint32_t api_client_pending(const api_client *c);
/* With packed on, an API_OK answer's body is not unpacked: the result
 * has body NULL and body_bytes/body_length set (a caller that renders
 * the bytes itself skips msgpack-c's tree). Off by default. */
void api_client_set_packed_bodies(api_client *c, bool packed);

/* ---- calls ------------------------------------------------------------- */

/* Who is asking and how. Borrowed for the duration of the call only. */
typedef struct api_ctx {
	uint64_t user_id;              /* authenticated user; 0 for none */
	const char *idempotency_key;   /* NULL for none */
	uint8_t body_digest[32];       /* digest of the request body, for keys */
	const char *client_ip;         /* for logs; may be NULL */
} api_ctx;

typedef struct api_result {
	int code;                      /* API_OK or API_E* */
	const char *detail;            /* human text for an error; may be NULL */
	uint64_t retry_after_ms;       /* with API_ERATELIMITED */
	/* rate-limit state for RateLimit headers: limit, remaining, reset */
	uint32_t rate_limit, rate_remaining;
	uint64_t rate_reset_ms;
	const msgpack_object *body;    /* NULL for no body (204) */
	/* The packed bytes body was unpacked from (its strings point into
	 * them, as msgpack-c's unpacker points them; with
	 * api_client_set_packed_bodies, body is NULL and these are the
	 * body), or NULL (also for a listing page built as objects). */
	const void *body_bytes;
	size_t body_length;
} api_result;

/* r and everything it points to are borrowed until the callback returns. */
typedef void (*api_callback)(void *arg, const api_result *r);

typedef struct api_page {
	uint32_t limit;                /* 0: API_PAGE_LIMIT_DEFAULT */
	const char *cursor;            /* NULL for the first page */
} api_page;

/* Every call returns 0 when the callback will run (exactly once), or a
 * negative API_E code right away (the callback will not run). Strings are
 * borrowed (copied before return). Bodies as in API.md. */

int api_signup(api_client *c, const api_ctx *ctx, const char *username,
	const char *email, const char *password, api_callback cb, void *arg);
int api_login(api_client *c, const api_ctx *ctx, const char *username,
	const char *password, api_callback cb, void *arg);

int api_user_get(api_client *c, const api_ctx *ctx, const char *username,
	api_callback cb, void *arg);
int api_user_get_by_id(api_client *c, const api_ctx *ctx, uint64_t user_id,
	api_callback cb, void *arg);
/* bio NULL: unchanged. profile_pic_media_id 0: unchanged. */
int api_user_update(api_client *c, const api_ctx *ctx, const char *bio,
	uint64_t profile_pic_media_id, api_callback cb, void *arg);
int api_follow(api_client *c, const api_ctx *ctx, const char *username,
	bool follow, api_callback cb, void *arg);
/* following=false lists followers, true lists followees. */
int api_follow_list(api_client *c, const api_ctx *ctx, const char *username,
	bool following, const api_page *page, api_callback cb, void *arg);
int api_user_posts(api_client *c, const api_ctx *ctx, const char *username,
	const api_page *page, api_callback cb, void *arg);

int api_post_create(api_client *c, const api_ctx *ctx, const char *caption,
	uint64_t media_id, api_callback cb, void *arg);
int api_post_get(api_client *c, const api_ctx *ctx, uint64_t post_id,
	api_callback cb, void *arg);
int api_post_delete(api_client *c, const api_ctx *ctx, uint64_t post_id,
	api_callback cb, void *arg);
int api_like(api_client *c, const api_ctx *ctx, uint64_t post_id, bool like,
	api_callback cb, void *arg);
int api_comments(api_client *c, const api_ctx *ctx, uint64_t post_id,
	const api_page *page, api_callback cb, void *arg);
int api_comment_add(api_client *c, const api_ctx *ctx, uint64_t post_id,
	const char *text, api_callback cb, void *arg);
int api_comment_delete(api_client *c, const api_ctx *ctx, uint64_t post_id,
	uint64_t comment_id, api_callback cb, void *arg);
int api_feed(api_client *c, const api_ctx *ctx, const api_page *page,
	api_callback cb, void *arg);

/* expires_in_s 0: the default (and maximum) 24 h. */
int api_story_post(api_client *c, const api_ctx *ctx, uint64_t media_id,
	uint32_t expires_in_s, api_callback cb, void *arg);
int api_stories(api_client *c, const api_ctx *ctx, api_callback cb,
	void *arg);
int api_story_seen(api_client *c, const api_ctx *ctx, uint64_t story_id,
	api_callback cb, void *arg);

/* since_seq: items with seq > since_seq, newest first. */
int api_notifications(api_client *c, const api_ctx *ctx, uint32_t limit,
	uint64_t since_seq, const char *cursor, api_callback cb, void *arg);
int api_notifications_read(api_client *c, const api_ctx *ctx,
	uint64_t up_to_seq, api_callback cb, void *arg);

typedef enum api_search_type {
	API_SEARCH_USERS = 0,
	API_SEARCH_TAGS = 1,
	API_SEARCH_POSTS = 2,
} api_search_type;
int api_search(api_client *c, const api_ctx *ctx, const char *query,
	api_search_type type, const api_page *page, api_callback cb,
	void *arg);

/* ---- media ------------------------------------------------------------ */

/* Upload limits (API.md): bytes, and pixels read from the header before
 * any decoding. */
#define API_UPLOAD_BYTES_MAX (30u * 1000u * 1000u)
#define API_UPLOAD_PIXELS_MAX 50000000ull

/*
 * Takes an uploaded image owned by ctx->user_id. bytes are taken: a
 * malloc'd buffer of length bytes that the domain frees (on any thread)
 * whatever happens, also when the call returns an error. They are
 * checked, hashed and stored durably off the caller's thread (the
 * caller, e.g. an event loop, goes on at once; the callback runs later
 * from api_client_poll as for every answer). The format is sniffed from
 * the content (JPEG, PNG, WebP, HEIF where libvips has it):
 * API_EMEDIATYPE otherwise, API_ETOOLARGE past API_UPLOAD_BYTES_MAX,
 * API_EUNAVAILABLE when too many uploads wait to be stored. Creates a
 * media item with status "processing" and queues it on the bounded
 * processing pool. Body {media_id, status}.
 */
int api_media_upload(api_client *c, const api_ctx *ctx, void *bytes,
	size_t length, api_callback cb, void *arg);
/* A media item awaiting its bytes (pre-signed upload). Body {media_id,
 * status: "awaiting_upload"}. The gateway signs the URL. */
int api_media_reserve(api_client *c, const api_ctx *ctx, api_callback cb,
	void *arg);
/* The bytes of a reserved item (from a pre-signed PUT; ctx->user_id is
 * the signer's), taken as by api_media_upload. Accepted once: a second
 * upload is API_ECONFLICT. */
int api_media_upload_reserved(api_client *c, const api_ctx *ctx,
	uint64_t media_id, void *bytes, size_t length, api_callback cb,
	void *arg);
/* Body {media_id, status, variants: {thumb, small, medium, large}
 * (URLs, when ready), reason (when failed)}. */
int api_media_get(api_client *c, const api_ctx *ctx, uint64_t media_id,
	api_callback cb, void *arg);
/* Operators: failed items (the dead letters) with their reasons. */
int api_media_failed_list(api_client *c, const api_ctx *ctx,
	const api_page *page, api_callback cb, void *arg);

/* Variant names, for /media/{hash}/{variant}. */
#define API_MEDIA_VARIANTS_COUNT 4
extern const char *const api_media_variants[API_MEDIA_VARIANTS_COUNT];
/*
 * Where a stored variant lives, for serving: fills path (absolute) and
 * content_type ("image/jpeg", ...) when hash is a well-formed content
 * hash and variant a known name and the file exists; API_ENOTFOUND
 * otherwise, API_EINVALID for a malformed hash or variant (so no path
 * traversal can reach the file system). Thread-safe; no actor asked.
 */
int api_media_file(const api *a, const char *hash, const char *variant,
	char *path, size_t path_size, const char **content_type);

/* ---- live streams ------------------------------------------------------ */

typedef enum api_event_type {
	API_EVENT_FEED_POST = 1,     /* "feed.post" */
	API_EVENT_NOTIFICATION = 2,  /* "notification" */
	API_EVENT_STORY = 3,         /* "story" */
	API_EVENT_POST_DELETED = 4,  /* "post.deleted" */
	API_EVENT_POST_UPDATED = 5,  /* "post.updated" (media turned ready) */
	API_EVENT_RESYNC = 6,        /* events after since are gone: refetch */
	API_EVENT_CUT_OFF = 7,       /* fell behind: closed, resume with since */
} api_event_type;

/* "feed.post", ... or NULL for an unknown type. */
const char *api_event_type_name(api_event_type type);

typedef struct api_event {
	api_event_type type;
	uint64_t seq;                  /* per-user stream sequence, +1 each */
	const msgpack_object *data;    /* borrowed until the callback returns */
} api_event;

typedef struct api_stream api_stream;
typedef void (*api_stream_callback)(void *arg, const api_event *ev);

/*
 * Subscribes to user_id's live stream (ctx->user_id must equal user_id).
 * With has_since, every held event after since_seq is delivered first,
 * or one API_EVENT_RESYNC if some are gone. Events run cb on the
 * client's thread from api_client_poll. The stream stays open until
 * api_stream_close or an API_EVENT_CUT_OFF (after which it is closed and
 * must still be released with api_stream_close).
 */
int api_stream_open(api_client *c, const api_ctx *ctx, uint64_t user_id,
	bool has_since, uint64_t since_seq, api_stream_callback cb, void *arg,
	api_stream **out);
/* The client has seen everything up to seq (lets the actor drop it and
 * refills the subscriber's credit). */
void api_stream_ack(api_stream *s, uint64_t seq);
/* Checks with the user's actor that the stream is still subscribed, and
 * subscribes it again from the last seq delivered if not: an actor that
 * moved to another node or restarted has forgotten its sessions, and
 * without a renewal the stream would stay open and silent. Events come
 * on after the last one delivered (each seq once), or one
 * API_EVENT_RESYNC if some are gone. Call it now and then (the gateway
 * does every GW_STREAM_RENEW_S); one still subscribed costs one message. */
void api_stream_renew(api_stream *s);
void api_stream_close(api_stream *s);

/* ---- helpers for readers of bodies ------------------------------------- */

/* Looks key up in a msgpack map; NULL if absent or obj is not a map. */
const msgpack_object *api_body_get(const msgpack_object *obj,
	const char *key);
/* A decimal-string id field as a number; 0 if absent or malformed. */
uint64_t api_body_id(const msgpack_object *obj, const char *key);
/* An integer field; def if absent. */
int64_t api_body_int(const msgpack_object *obj, const char *key, int64_t def);
/* A boolean field; def if absent. */
bool api_body_bool(const msgpack_object *obj, const char *key, bool def);
/* Copies a string field into buf (NUL-terminated); false if absent. */
bool api_body_str(const msgpack_object *obj, const char *key, char *buf,
	size_t size);

/* ---- bulk loading (workload driver, benchmarks, simulator) ------------- */

/* Registers a user with a pre-hashed password (from api_password_hash)
 * so graphs of thousands of users load without argon2 per user. */
int api_signup_prehashed(api_client *c, const api_ctx *ctx,
	const char *username, const char *email, const char *password_hash,
	api_callback cb, void *arg);
/* argon2id string (crypto_pwhash_STRBYTES) with the api's cost. */
int api_password_hash(const api *a, const char *password, char *out,
	size_t size);

#endif /* FLOCK_ACTORS_API_H */
