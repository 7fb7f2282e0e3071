/*
 * config.c — the gateway's defaults and error names.
 *
 * Every default is a named number with its reason next to it; flockd
 * overrides them from flags and the environment.
 */
#include "gateway/internal.h"

#include <string.h>

/* API.md: signups 5 per 30 min per IP, logins 25 per 5 min per IP. */
#define SIGNUP_PER_IP_CAPACITY 5u
#define SIGNUP_PER_IP_WINDOW_S (30u * 60u)
#define LOGIN_PER_IP_CAPACITY 25u
#define LOGIN_PER_IP_WINDOW_S (5u * 60u)
/* One client address rarely needs more than a browser's 6 per host times
 * a few tabs plus its WebSockets; 256 leaves NATs room. */
#define CONNECTIONS_PER_IP_DEFAULT 256u
/* Tokens live a day: long enough for a session, short enough that a
 * leaked token ages out without a revocation list. */
#define TOKEN_TTL_S_DEFAULT (24u * 3600u)
/* A pre-signed upload URL is used right after it is handed out. */
#define UPLOAD_URL_TTL_S_DEFAULT 900u
/* API.md: ping every 30 s; a peer silent 15 s after that is gone. */
#define WS_PING_S_DEFAULT 30u
#define WS_HANGUP_S_DEFAULT 45u
/* Shutdown waits this long for requests the domain is still answering;
 * longer than an ask deadline so nothing acknowledged is cut off. */
#define SHUTDOWN_GRACE_MS_DEFAULT 5000u
/* Domain calls waiting at once before 503: bounds the memory held by
 * request bodies and pending responses. */
#define REQUESTS_IN_FLIGHT_DEFAULT 8192u

void
gw_config_default(gw_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->listen_host = "127.0.0.1";
	cfg->listen_port = 8080;
	cfg->web_dir = NULL;
	cfg->connections_per_ip_max = CONNECTIONS_PER_IP_DEFAULT;
	cfg->json_body_bytes_max = GW_JSON_BODY_BYTES_DEFAULT;
	cfg->upload_body_bytes_max = API_UPLOAD_BYTES_MAX;
	cfg->token_ttl_s = TOKEN_TTL_S_DEFAULT;
	cfg->upload_url_ttl_s = UPLOAD_URL_TTL_S_DEFAULT;
	cfg->rate_signup.capacity = SIGNUP_PER_IP_CAPACITY;
	cfg->rate_signup.window_s = SIGNUP_PER_IP_WINDOW_S;
	cfg->rate_login.capacity = LOGIN_PER_IP_CAPACITY;
	cfg->rate_login.window_s = LOGIN_PER_IP_WINDOW_S;
	cfg->ws_ping_s = WS_PING_S_DEFAULT;
	cfg->ws_hangup_s = WS_HANGUP_S_DEFAULT;
	cfg->ws_queue_frames_max = GW_WS_QUEUE_FRAMES_DEFAULT;
	cfg->shutdown_grace_ms = SHUTDOWN_GRACE_MS_DEFAULT;
	cfg->requests_in_flight_max = REQUESTS_IN_FLIGHT_DEFAULT;
	cfg->log_requests = true;
}

const char *
gw_strerror(int code)
{
	switch (code) {
	case GW_OK: return "ok";
	case GW_EINVAL: return "invalid input";
	case GW_ENOMEM: return "out of memory or table full";
	case GW_ETOOLARGE: return "too large";
	case GW_ENOTFOUND: return "not found";
	case GW_EMETHOD: return "method not allowed";
	case GW_EEXPIRED: return "expired";
	case GW_EBADTOKEN: return "bad token or signature";
	case GW_EIO: return "i/o error";
	case GW_ELIMITED: return "limited";
	case GW_EFULL: return "queue full";
	case GW_ESTATE: return "wrong state";
	default: return "unknown error";
	}
}
