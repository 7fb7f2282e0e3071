/*
 * gateway.h — flock's HTTP + WebSocket gateway: the one public header of
 * gateway/.
 *
 * Role: the protocol adapter between clients (API.md) and the social
 * domain (actors/api.h). It serves one port from one or more event loops
 * (gw_config.loops, one per two cores by default): the first is a libuv loop
 * the program owns, the others run on the gateway's own threads; each
 * has its own libwebsockets context and listen socket (SO_REUSEPORT).
 * Every domain call is asynchronous and its answer comes back on the
 * loop that asked, through that loop's api client notify (uv_async) and
 * api_client_poll. The gateway owns what the domain deliberately does not
 * do: HTTP routing, JSON, bearer tokens, per-IP limits (rate and
 * connections), security headers, metrics, and the WebSocket live stream.
 *
 * Invariants:
 *   - a libwebsockets context is called from its own loop's thread only;
 *   - every error a client sees is RFC 9457 problem+json;
 *   - every response carries the security headers;
 *   - every queue (request bodies, WebSocket frames, per-IP tables) is
 *     bounded by a named constant or a configured limit.
 *
 * What it deliberately does not do: decide who may do what to which
 * object (the domain does; the gateway passes the authenticated user id),
 * hash passwords, process images.
 *
 * Errors: functions return 0 or a negative GW_E... code; gw_strerror
 * names them. Codes are stable.
 */
#ifndef FLOCK_GATEWAY_H
#define FLOCK_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "actors/api.h"
#include "runtime/runtime.h"

/* ---- errors ------------------------------------------------------------ */

enum {
	GW_OK = 0,
	GW_EINVAL = -200,     /* malformed input or a broken precondition */
	GW_ENOMEM = -201,     /* an allocation or a fixed table is exhausted */
	GW_ETOOLARGE = -202,  /* past a size cap */
	GW_ENOTFOUND = -203,  /* no such route, file or entry */
	GW_EMETHOD = -204,    /* the path exists, the method does not */
	GW_EEXPIRED = -205,   /* a token or signed URL is past its expiry */
	GW_EBADTOKEN = -206,  /* a token or signature failed verification */
	GW_EIO = -207,        /* a file or socket operation failed */
	GW_ELIMITED = -208,   /* a rate or connection limit refused it */
	GW_EFULL = -209,      /* a bounded queue is full */
	GW_ESTATE = -210,     /* called in the wrong state (e.g. stopping) */
};

/* Returns a static string naming code; never NULL. */
const char *gw_strerror(int code);

/* ---- token key --------------------------------------------------------- */

/* Ed25519 key that signs access tokens and pre-signed upload URLs. Every
 * node of a cluster that holds the same key file verifies the same tokens. */
typedef struct gw_key {
	uint8_t secret_key[64]; /* libsodium crypto_sign secret key */
	uint8_t public_key[32];
	char key_id[12];        /* first 8 bytes of the public key, hex-ish */
} gw_key;

/*
 * Loads the key from path (a 32-byte Ed25519 seed), or when the file does
 * not exist creates it with mode 0600 from fresh randomness. Refuses
 * (GW_EINVAL) a file that is not exactly 32 bytes or that group or others
 * may read. GW_EIO on other file errors.
 */
int gw_key_load_or_create(const char *path, gw_key *out);

/* ---- configuration ----------------------------------------------------- */

typedef struct gw_rate {
	uint32_t capacity; /* requests allowed in one window (burst) */
	uint32_t window_s; /* the window the capacity refills over */
} gw_rate;

typedef struct gw_config {
	const char *listen_host;        /* "127.0.0.1" */
	uint16_t listen_port;           /* 8080; 0 picks a free port */
	const char *web_dir;            /* bundled web client files */
	uint32_t connections_per_ip_max; /* open sockets per peer address */
	uint32_t json_body_bytes_max;   /* JSON request bodies; 413 past it */
	uint32_t upload_body_bytes_max; /* image uploads; 413 past it */
	uint64_t token_ttl_s;           /* access token lifetime */
	uint64_t upload_url_ttl_s;      /* pre-signed upload URL lifetime */
	gw_rate rate_signup;            /* per IP: 5 per 30 min */
	gw_rate rate_login;             /* per IP: 25 per 5 min */
	uint32_t ws_ping_s;             /* idle seconds before a ping */
	uint32_t ws_hangup_s;           /* idle seconds before hanging up */
	uint32_t ws_queue_frames_max;   /* frames queued per socket; 4008 past */
	uint32_t shutdown_grace_ms;     /* wait for in-flight requests */
	uint32_t requests_in_flight_max; /* domain calls pending; 503 past
					    (split evenly over the loops) */
	bool log_requests;              /* one rt_log line per request */
	uint32_t loops;                 /* event loops serving the port:
					   0 = one per two cores */
} gw_config;

/* Event loops one gateway may run (each a thread with its own lws
 * context and listen socket on the same port): more than the cores a
 * node has only adds switches. */
#define GW_LOOPS_MAX 16u

/* Fills cfg with the defaults documented on each field. */
void gw_config_default(gw_config *cfg);

/* ---- lifetime ---------------------------------------------------------- */

typedef struct gw gw;

/*
 * Creates the gateway, its first event loop on loop (borrowed; the
 * caller runs it) and cfg->loops - 1 more on threads of its own, over the
 * domain a (borrowed) and the runtime rt (borrowed, for logs and stats),
 * signing with key (copied). Starts listening before returning; the
 * bound port is gw_port. *out owned; gw_destroy after the loop is done.
 * Loop thread only. GW_EIO when the address cannot be bound; after any
 * failure the loop must not be run again (libwebsockets may have left
 * handles on it).
 */
int gw_create(uv_loop_t *loop, rt_runtime *rt, api *a, const gw_key *key,
	const gw_config *cfg, gw **out);

/* The TCP port the gateway listens on (useful with listen_port 0). */
uint16_t gw_port(const gw *g);

/* Readiness for /readyz (storage open and the domain up). */
void gw_set_ready(gw *g, bool ready);

/* A callback that renders extra Prometheus lines (journal fsync
 * latency, ...) into buf; returns the bytes written. Called on whichever
 * loop's thread answers GET /metrics (so it must be thread-safe), never
 * once the shutdown has begun. */
typedef size_t (*gw_metrics_extra_callback)(void *arg, char *buf,
	size_t size);
void gw_set_metrics_extra(gw *g, gw_metrics_extra_callback cb, void *arg);

/*
 * Begins a clean shutdown: stops accepting, lets in-flight requests finish
 * (bounded by shutdown_grace_ms), closes live streams with 1001, on
 * every loop; when all have, calls done(arg) on the first loop's thread,
 * then tears each loop's libwebsockets down on its thread. done is
 * where the caller stops every other thread that opens descriptors (the
 * runtime, the cluster, the journal): libwebsockets 4.1 closes its event
 * pipe twice while it is torn down, in lws_context_destroy and again in
 * the loop's close callback, so a descriptor another thread opened in
 * between would be closed under that thread (glibc aborts when it is the
 * netlink socket of a name lookup). After done, the loop has no more
 * gateway handles once it has run them closed; then gw_destroy (which
 * joins the other loops' threads). The first loop's thread only.
 */
typedef void (*gw_stopped_callback)(void *arg);
int gw_shutdown(gw *g, gw_stopped_callback done, void *arg);

/* Frees the gateway. After gw_shutdown's done, or if never started. */
void gw_destroy(gw *g);

#endif /* FLOCK_GATEWAY_H */
