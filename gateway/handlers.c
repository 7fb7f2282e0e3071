/*
 * handlers.c — routes to api.h calls, answers to HTTP responses.
 *
 * Role: after the headers (gw__request_begin) a request is routed,
 * authenticated, checked against per-IP limits and its body cap; with
 * its body (gw__handle) it becomes one domain call whose answer (a
 * msgpack map shaped like API.md's JSON) is transcoded to the response.
 * Errors of every kind leave as problem+json.
 *
 * Invariants: a request gets exactly one response (gw__respond_* hand it
 * to the transport once); a request with a domain call in flight is on
 * g->requests and is freed by the call's callback, even if its
 * connection closed meanwhile.
 *
 * What it deliberately does not do: decide authorization on objects (the
 * domain answers 403), validate field contents beyond types (the domain
 * owns the limits), talk to sockets (lws_server.c does).
 */
#include "gateway/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

/* Detail strings built from client input stay this short. */
#define DETAIL_BYTES_MAX 256

/* Fits the bundled page: its own scripts, styles and images, blob:
 * previews of a photo being posted, data: icons; nothing inline, no
 * framing. */
const char *const gw__security_headers[][2] = {
	{"X-Content-Type-Options:", "nosniff"},
	{"Referrer-Policy:", "no-referrer"},
	{"X-Frame-Options:", "DENY"},
	{"Content-Security-Policy:",
		"default-src 'self'; script-src 'self'; style-src 'self'; "
		"img-src 'self' blob: data:; media-src 'self' blob:; "
		"connect-src 'self'; font-src 'self'; object-src 'none'; "
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"},
	{"Cross-Origin-Opener-Policy:", "same-origin"},
};
const size_t gw__security_headers_count =
	sizeof gw__security_headers / sizeof gw__security_headers[0];

/* ---- lists and clocks ----------------------------------------------------- */

void
gw__list_init(gw__link *head)
{
	head->prev = head;
	head->next = head;
}

void
gw__list_push(gw__link *head, gw__link *item)
{
	item->prev = head->prev;
	item->next = head;
	head->prev->next = item;
	head->prev = item;
}

void
gw__list_remove(gw__link *item)
{
	gw__assert(item->next != NULL);
	item->prev->next = item->next;
	item->next->prev = item->prev;
	item->prev = NULL;
	item->next = NULL;
}

bool
gw__list_empty(const gw__link *head)
{
	return head->next == head;
}

uint64_t
gw__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
gw__wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec;
}

/* ---- responses ----------------------------------------------------------- */

void
gw__response_header(gw__request *r, const char *name, const char *value)
{
	gw__assert(r->headers_count < GW_RESPONSE_HEADERS_MAX);
	gw__header *h = &r->headers[r->headers_count++];
	snprintf(h->name, sizeof h->name, "%s", name);
	snprintf(h->value, sizeof h->value, "%s", value);
}

static void
respond(gw__request *r, int status)
{
	gw__assert(!r->responded);
	r->responded = true;
	r->status = status;
	gw__transport_respond(r);
}

void
gw__respond_problem(gw__request *r, int status, const char *detail)
{
	size_t n = 0;
	char *s = gw__problem_render(status, detail, &n);
	gw__body_free(&r->response);
	gw__body_init(&r->response, SIZE_MAX / 2);
	r->response_offset = 0;
	if (s != NULL)
		gw__body_append(&r->response, s, n);
	free(s);
	r->response_type = "application/problem+json";
	r->cache_control = "no-store";
	respond(r, status);
}

void
gw__respond_json(gw__request *r, int status, json_t *body)
{
	size_t n = 0;
	char *s = gw__json_render(body, &n);
	json_decref(body);
	if (s == NULL) {
		gw__respond_problem(r, 500, "rendering the answer failed");
		return;
	}
	gw__body_init(&r->response, SIZE_MAX / 2);
	int rc = gw__body_append(&r->response, s, n);
	free(s);
	if (rc < 0) {
		gw__respond_problem(r, 500, "out of memory");
		return;
	}
	r->response_type = "application/json";
	respond(r, status);
}

void
gw__respond_text(gw__request *r, int status, const char *type,
	const char *text, size_t length)
{
	gw__body_init(&r->response, SIZE_MAX / 2);
	if (gw__body_append(&r->response, text, length) < 0) {
		gw__respond_problem(r, 500, "out of memory");
		return;
	}
	r->response_type = type;
	respond(r, status);
}

void
gw__respond_empty(gw__request *r, int status)
{
	r->response_type = NULL;
	respond(r, status);
}

void
gw__request_free(gw__request *r)
{
	if (r == NULL)
		return;
	gw__assert(!r->pending);
	gw__body_free(&r->body);
	gw__body_free(&r->response);
	gw__form_free(&r->form);
	free(r->caption);
	if (r->file_fd >= 0)
		close(r->file_fd);
	free(r);
}

/* ---- domain calls --------------------------------------------------------- */

static void
api_error(gw__request *r, const api_result *res)
{
	int status = gw__status_for_api(res->code);
	if (res->code == API_ERATELIMITED) {
		char v[64];
		uint64_t retry_s = (res->retry_after_ms + 999) / 1000;
		if (retry_s == 0)
			retry_s = 1;
		snprintf(v, sizeof v, "%" PRIu64, retry_s);
		gw__response_header(r, "Retry-After:", v);
		if (res->rate_limit > 0) {
			uint64_t reset_s = (res->rate_reset_ms + 999) / 1000;
			snprintf(v, sizeof v, "limit=%u, remaining=%u, reset=%" PRIu64,
				res->rate_limit, res->rate_remaining, reset_s);
			gw__response_header(r, "RateLimit:", v);
		}
	}
	gw__respond_problem(r, status,
		res->detail != NULL ? res->detail : api_strerror(res->code));
}

/* Adds Link: <path?...&after_cursor=C>; rel="next" when there is a next
 * page. */
static void
link_next(gw__request *r, const char *next)
{
	if (next == NULL || next[0] == '\0')
		return;
	char cursor[GW_HEADER_VALUE_BYTES_MAX / 2];
	if (gw__percent_encode(next, cursor, sizeof cursor) < 0)
		return;
	char link[GW_HEADER_VALUE_BYTES_MAX];
	size_t used = (size_t)snprintf(link, sizeof link, "<%s?", r->path);
	static const char *const keep[] = {"q", "type", "limit", "since"};
	for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
		const char *v = gw__query_get(&r->query, keep[i]);
		char enc[160];
		if (v == NULL || gw__percent_encode(v, enc, sizeof enc) < 0)
			continue;
		used += (size_t)snprintf(link + used, sizeof link - used,
			"%s=%s&", keep[i], enc);
		if (used >= sizeof link)
			return;
	}
	int n = snprintf(link + used, sizeof link - used,
		"after_cursor=%s>; rel=\"next\"", cursor);
	if (n < 0 || (size_t)n >= sizeof link - used)
		return;
	gw__response_header(r, "Link:", link);
}

/* Upload URLs are absolute when the Host header is plain. */
static void
add_upload_url(gw__request *r, json_t *body)
{
	uint64_t media_id = 0;
	const char *id = json_string_value(json_object_get(body, "media_id"));
	if (id == NULL || gw__parse_u64(id, &media_id) < 0)
		return;
	uint64_t expires = gw__wall_s() + r->g->cfg.upload_url_ttl_s;
	char path[400];
	if (gw__upload_url_sign(&r->g->key, media_id, r->user_id, expires,
		    path, sizeof path) < 0)
		return;
	json_object_set_new(body, "upload_url", json_string(path));
	json_object_set_new(body, "expires_in",
		json_integer((json_int_t)r->g->cfg.upload_url_ttl_s));
}

static bool
add_token(gw__request *r, json_t *body)
{
	uint64_t user_id = 0;
	json_t *id = json_object_get(body, "user_id");
	if (json_is_string(id))
		gw__parse_u64(json_string_value(id), &user_id);
	else if (json_is_integer(id))
		user_id = (uint64_t)json_integer_value(id);
	if (user_id == 0)
		return false;
	char token[GW_TOKEN_BYTES_MAX];
	if (gw__token_issue(&r->g->key, user_id, gw__wall_s(),
		    r->g->cfg.token_ttl_s, token, sizeof token) < 0)
		return false;
	json_object_set_new(body, "token", json_string(token));
	json_object_set_new(body, "expires_in",
		json_integer((json_int_t)r->g->cfg.token_ttl_s));
	return true;
}

static void
finish_pending(gw__request *r)
{
	gw__assert(r->pending);
	r->pending = false;
	gw__list_remove(&r->link);
	gw__assert(r->g->metrics->requests_in_flight > 0);
	gw__count(&r->g->metrics->requests_in_flight, -1);
}

/* Room taken for a rendered answer at once: a feed page of 20 posts with
 * media is ~9 KiB of JSON (growing by doubling from 1 KiB copied it four
 * times). */
#define RENDERED_BODY_RESERVE_BYTES (16u * 1024u)

/* An answer with its body unpacked: res itself, or (the api client
 * leaves API_OK bodies packed: lws_server.c) a copy in *local whose body
 * is unpacked into u (msgpack-c points it into the packed bytes, which
 * live until the callback returns). */
static const api_result *
unpacked(const api_result *res, api_result *local, msgpack_unpacked *u)
{
	if (res->body != NULL || res->body_bytes == NULL)
		return res;
	*local = *res;
	size_t offset = 0;
	if (msgpack_unpack_next(u, res->body_bytes, res->body_length,
		    &offset) == MSGPACK_UNPACK_SUCCESS)
		local->body = &u->data;
	return local;
}

/* The cursor of a page answer, copied out of its msgpack map (the Link
 * header's); "" when none. */
static void
next_cursor_of(const msgpack_object *body, char *out, size_t size)
{
	out[0] = '\0';
	if (body->type != MSGPACK_OBJECT_MAP)
		return;
	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object_kv *kv = &body->via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR ||
			kv->key.via.str.size != 11 ||
			memcmp(kv->key.via.str.ptr, "next_cursor", 11) != 0)
			continue;
		if (kv->val.type == MSGPACK_OBJECT_STR &&
			kv->val.via.str.size < size &&
			memchr(kv->val.via.str.ptr, '\0',
				kv->val.via.str.size) == NULL) {
			memcpy(out, kv->val.via.str.ptr, kv->val.via.str.size);
			out[kv->val.via.str.size] = '\0';
		}
		return;
	}
}

/* An answer sent as the domain shaped it: msgpack straight to JSON text
 * (list items through the gateway's cache of rendered items). */
static void
respond_rendered(gw__request *r, const gw__route_info *info,
	const api_result *res)
{
	const msgpack_object *body = res->body;
	char next[GW_HEADER_VALUE_BYTES_MAX / 2] = "";
	if ((info->flags & GW_ROUTE_F_PAGED) && body != NULL)
		next_cursor_of(body, next, sizeof next);
	static const unsigned char headroom[GW_RESPONSE_HEADROOM];
	gw__body_init(&r->response, SIZE_MAX / 2);
	int rc = gw__body_reserve(&r->response,
		GW_RESPONSE_HEADROOM + RENDERED_BODY_RESERVE_BYTES);
	if (rc == 0)
		rc = gw__body_append(&r->response, headroom, sizeof headroom);
	if (rc == 0)
		r->response_offset = sizeof headroom;
	if (rc == 0 && body == NULL)
		rc = gw__msgpack_render_packed(r->g->json_cache,
			res->body_bytes, res->body_length, &r->response, next,
			(info->flags & GW_ROUTE_F_PAGED) ? sizeof next : 0);
	else if (rc == 0)
		rc = gw__msgpack_render_raw(r->g->json_cache, body,
			res->body_bytes, res->body_length, &r->response);
	if (rc == GW_EINVAL) {
		gw__respond_problem(r, 500, "the answer is not JSON-shaped");
		return;
	}
	if (rc < 0) {
		gw__respond_problem(r, 500, "out of memory");
		return;
	}
	if (info->flags & GW_ROUTE_F_PAGED)
		link_next(r, next);
	r->response_type = "application/json";
	respond(r, info->success_status);
}

static void answer_through_tree(gw__request *r, const gw__route_info *info,
	const api_result *res);

static void
api_done(void *arg, const api_result *res)
{
	gw__request *r = arg;
	finish_pending(r);
	if (r->conn == NULL) {
		gw__request_free(r); /* the client left */
		return;
	}
	if (res->code != API_OK) {
		api_error(r, res);
		return;
	}
	const gw__route_info *info = r->match.info;
	if (info->success_status == 204 ||
		(res->body == NULL && res->body_bytes == NULL)) {
		gw__respond_empty(r, 204);
		return;
	}
	switch (info->id) {
	case GW_ROUTE_SIGNUP:
	case GW_ROUTE_LOGIN:
	case GW_ROUTE_MEDIA_RESERVE:
		break; /* the answer gains a field: through the tree */
	default:
		respond_rendered(r, info, res);
		return;
	}
	api_result local;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	res = unpacked(res, &local, &u);
	answer_through_tree(r, info, res);
	msgpack_unpacked_destroy(&u);
}

/* An answer that gains a field (a token, an upload URL): its body as a
 * jansson tree. */
static void
answer_through_tree(gw__request *r, const gw__route_info *info,
	const api_result *res)
{
	if (res->body == NULL) {
		gw__respond_problem(r, 500, "the answer is not JSON-shaped");
		return;
	}
	json_t *body;
	if (gw__msgpack_to_json(res->body, &body) < 0) {
		gw__respond_problem(r, 500, "the answer is not JSON-shaped");
		return;
	}
	switch (info->id) {
	case GW_ROUTE_SIGNUP:
	case GW_ROUTE_LOGIN:
		if (!add_token(r, body)) {
			json_decref(body);
			gw__respond_problem(r, 500, "no user id to sign");
			return;
		}
		break;
	case GW_ROUTE_MEDIA_RESERVE:
		add_upload_url(r, body);
		break;
	default:
		break;
	}
	if (info->flags & GW_ROUTE_F_PAGED)
		link_next(r, json_string_value(json_object_get(body,
				     "next_cursor")));
	gw__respond_json(r, info->success_status, body);
}

/* Multipart POST /v1/posts: the media is in; now the post. */
static void
chained_media_done(void *arg, const api_result *res)
{
	gw__request *r = arg;
	finish_pending(r);
	if (r->conn == NULL) {
		gw__request_free(r);
		return;
	}
	if (res->code != API_OK) {
		api_error(r, res);
		return;
	}
	api_result local;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	res = unpacked(res, &local, &u);
	uint64_t media_id = res->body != NULL
		? api_body_id(res->body, "media_id")
		: 0;
	msgpack_unpacked_destroy(&u);
	if (media_id == 0) {
		gw__respond_problem(r, 500, "the upload returned no media id");
		return;
	}
	r->chained_media_id = media_id;
	gw__handle(r); /* again, now with the media id */
}

static void
make_ctx(gw__request *r, api_ctx *ctx, bool with_key)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->user_id = r->user_id;
	ctx->client_ip = r->ip;
	if (with_key && r->idempotency_key[0] != '\0' &&
		(r->match.info->flags & GW_ROUTE_F_IDEMPOTENT)) {
		ctx->idempotency_key = r->idempotency_key;
		crypto_hash_sha256_state st;
		crypto_hash_sha256_init(&st);
		if (r->multipart) {
			const char *caption = r->caption ? r->caption : "";
			crypto_hash_sha256_update(&st,
				(const unsigned char *)caption,
				strlen(caption) + 1);
			if (r->form.media.bytes != NULL)
				crypto_hash_sha256_update(&st,
					r->form.media.bytes,
					r->form.media.length);
		} else if (r->body.bytes != NULL) {
			crypto_hash_sha256_update(&st, r->body.bytes,
				r->body.length);
		}
		crypto_hash_sha256_final(&st, ctx->body_digest);
	}
}

/* Starts bookkeeping for a call about to be made. */
static void
begin_pending(gw__request *r)
{
	gw__assert(!r->pending);
	r->pending = true;
	gw__list_push(&r->g->requests, &r->link);
	gw__count(&r->g->metrics->requests_in_flight, 1);
}

/* The call did not start: undo and answer with its code. */
static void
call_failed(gw__request *r, int rc)
{
	finish_pending(r);
	gw__respond_problem(r, gw__status_for_api(rc), api_strerror(rc));
}

/* ---- request bodies -------------------------------------------------------- */

typedef struct parsed {
	json_t *obj;
	char detail[DETAIL_BYTES_MAX];
} parsed;

/* Parses the JSON body (an empty body is {}) and checks its keys. */
static bool
parse_body(gw__request *r, parsed *p, const char *const *allowed,
	size_t count)
{
	p->obj = NULL;
	p->detail[0] = '\0';
	if (r->body.length == 0) {
		p->obj = json_object();
		return p->obj != NULL;
	}
	if (gw__json_parse_object(r->body.bytes, r->body.length, &p->obj,
		    p->detail, sizeof p->detail) < 0 ||
		gw__json_only_keys(p->obj, allowed, count, p->detail,
			sizeof p->detail) < 0) {
		json_decref(p->obj);
		p->obj = NULL;
		gw__respond_problem(r, 400, p->detail);
		return false;
	}
	return true;
}

#define KEYS(...) (const char *const[]){__VA_ARGS__},                       \
	sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)

static bool
id_param(gw__request *r, uint32_t index, uint64_t *out)
{
	gw__assert(index < r->match.params_count);
	if (gw__parse_u64(r->match.params[index], out) < 0 || *out == 0) {
		gw__respond_problem(r, 404, "no such id");
		return false;
	}
	return true;
}

static bool
page_of(gw__request *r, api_page *page)
{
	memset(page, 0, sizeof *page);
	if (gw__parse_page(&r->query, &page->limit, &page->cursor) < 0) {
		gw__respond_problem(r, 400,
			"limit must be an integer from 1 to 50");
		return false;
	}
	return true;
}

/* ---- route handlers: each returns the api call's code, or 1 when it has
 * already responded ----------------------------------------------------------- */

static int
h_signup(gw__request *r, const api_ctx *ctx)
{
	parsed p;
	if (!parse_body(r, &p, KEYS("username", "email", "password")))
		return 1;
	const char *username, *email, *password;
	int rc = gw__json_string(p.obj, "username", true, &username, p.detail,
		sizeof p.detail);
	if (rc == 0)
		rc = gw__json_string(p.obj, "email", true, &email, p.detail,
			sizeof p.detail);
	if (rc == 0)
		rc = gw__json_string(p.obj, "password", true, &password,
			p.detail, sizeof p.detail);
	if (rc < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	rc = api_signup(r->g->client, ctx, username, email, password, api_done,
		r);
	json_decref(p.obj);
	return rc;
}

static int
h_login(gw__request *r, const api_ctx *ctx)
{
	parsed p;
	if (!parse_body(r, &p, KEYS("username", "password")))
		return 1;
	const char *username, *password;
	int rc = gw__json_string(p.obj, "username", true, &username, p.detail,
		sizeof p.detail);
	if (rc == 0)
		rc = gw__json_string(p.obj, "password", true, &password,
			p.detail, sizeof p.detail);
	if (rc < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	rc = api_login(r->g->client, ctx, username, password, api_done, r);
	json_decref(p.obj);
	return rc;
}

static int
h_user_me(gw__request *r, const api_ctx *ctx)
{
	parsed p;
	/* The allow-list: nothing else of a profile is the client's to set. */
	if (!parse_body(r, &p, KEYS("bio", "profile_pic_media_id")))
		return 1;
	const char *bio;
	uint64_t pic;
	int rc = gw__json_string(p.obj, "bio", false, &bio, p.detail,
		sizeof p.detail);
	if (rc == 0)
		rc = gw__json_id(p.obj, "profile_pic_media_id", false, &pic,
			p.detail, sizeof p.detail);
	if (rc < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	rc = api_user_update(r->g->client, ctx, bio, pic, api_done, r);
	json_decref(p.obj);
	return rc;
}

static int
h_follow(gw__request *r, const api_ctx *ctx)
{
	parsed p;
	if (!parse_body(r, &p, KEYS("action")))
		return 1;
	bool follow;
	if (gw__json_action(p.obj, "action", "follow", "unfollow", &follow,
		    p.detail, sizeof p.detail) < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	json_decref(p.obj);
	return api_follow(r->g->client, ctx, r->match.params[0], follow,
		api_done, r);
}

static int
h_like(gw__request *r, const api_ctx *ctx)
{
	uint64_t post_id;
	if (!id_param(r, 0, &post_id))
		return 1;
	parsed p;
	if (!parse_body(r, &p, KEYS("action")))
		return 1;
	bool like;
	if (gw__json_action(p.obj, "action", "like", "unlike", &like, p.detail,
		    sizeof p.detail) < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	json_decref(p.obj);
	return api_like(r->g->client, ctx, post_id, like, api_done, r);
}

static int
h_post_create(gw__request *r, const api_ctx *ctx)
{
	if (r->multipart) {
		if (r->chained_media_id == 0) {
			if (!r->form.media_seen || r->form.media.length == 0) {
				gw__respond_problem(r, 400,
					"the multipart body has no media part");
				return 1;
			}
			/* Step one: the image, under a key of its own so a
			 * retry replays the same media item. */
			api_ctx media_ctx = *ctx;
			char key[GW_IDEMPOTENCY_KEY_BYTES_MAX + 8];
			if (ctx->idempotency_key != NULL) {
				snprintf(key, sizeof key, "%s#media",
					ctx->idempotency_key);
				media_ctx.idempotency_key = key;
			}
			size_t length;
			void *bytes = gw__body_take(&r->form.media, &length);
			return api_media_upload(r->g->client, &media_ctx,
				bytes, length, chained_media_done, r);
		}
		return api_post_create(r->g->client, ctx,
			r->caption ? r->caption : "", r->chained_media_id,
			api_done, r);
	}
	parsed p;
	if (!parse_body(r, &p, KEYS("caption", "media_id")))
		return 1;
	const char *caption;
	uint64_t media_id;
	int rc = gw__json_string(p.obj, "caption", false, &caption, p.detail,
		sizeof p.detail);
	if (rc == 0)
		rc = gw__json_id(p.obj, "media_id", false, &media_id, p.detail,
			sizeof p.detail);
	if (rc < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	rc = api_post_create(r->g->client, ctx, caption ? caption : "",
		media_id, api_done, r);
	json_decref(p.obj);
	return rc;
}

static int
h_comment_add(gw__request *r, const api_ctx *ctx)
{
	uint64_t post_id;
	if (!id_param(r, 0, &post_id))
		return 1;
	parsed p;
	if (!parse_body(r, &p, KEYS("text")))
		return 1;
	const char *text;
	if (gw__json_string(p.obj, "text", true, &text, p.detail,
		    sizeof p.detail) < 0) {
		json_decref(p.obj);
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	int rc = api_comment_add(r->g->client, ctx, post_id, text, api_done,
		r);
	json_decref(p.obj);
	return rc;
}

static int
h_story_post(gw__request *r, const api_ctx *ctx)
{
	parsed p;
	if (!parse_body(r, &p, KEYS("media_id", "expires_in")))
		return 1;
	uint64_t media_id, expires_in;
	int rc = gw__json_id(p.obj, "media_id", true, &media_id, p.detail,
		sizeof p.detail);
	if (rc == 0)
		rc = gw__json_uint(p.obj, "expires_in", false,
			API_STORY_SECONDS_MAX, &expires_in, p.detail,
			sizeof p.detail);
	json_decref(p.obj);
	if (rc < 0) {
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	return api_story_post(r->g->client, ctx, media_id,
		(uint32_t)expires_in, api_done, r);
}

static int
h_notifications(gw__request *r, const api_ctx *ctx)
{
	api_page page;
	if (!page_of(r, &page))
		return 1;
	uint64_t since = 0;
	const char *s = gw__query_get(&r->query, "since");
	if (s != NULL && gw__parse_u64(s, &since) < 0) {
		gw__respond_problem(r, 400, "since must be a sequence number");
		return 1;
	}
	return api_notifications(r->g->client, ctx, page.limit, since,
		page.cursor, api_done, r);
}

static int
h_notifications_read(gw__request *r, const api_ctx *ctx)
{
	parsed p;
	if (!parse_body(r, &p, KEYS("up_to_seq")))
		return 1;
	uint64_t seq;
	int rc = gw__json_uint(p.obj, "up_to_seq", true, INT64_MAX, &seq,
		p.detail, sizeof p.detail);
	json_decref(p.obj);
	if (rc < 0) {
		gw__respond_problem(r, 400, p.detail);
		return 1;
	}
	return api_notifications_read(r->g->client, ctx, seq, api_done, r);
}

static int
h_search(gw__request *r, const api_ctx *ctx)
{
	api_page page;
	if (!page_of(r, &page))
		return 1;
	const char *q = gw__query_get(&r->query, "q");
	if (q == NULL || q[0] == '\0') {
		gw__respond_problem(r, 400, "q is required");
		return 1;
	}
	const char *type = gw__query_get(&r->query, "type");
	api_search_type t = API_SEARCH_USERS;
	if (type == NULL || strcmp(type, "users") == 0)
		t = API_SEARCH_USERS;
	else if (strcmp(type, "tags") == 0)
		t = API_SEARCH_TAGS;
	else if (strcmp(type, "posts") == 0)
		t = API_SEARCH_POSTS;
	else {
		gw__respond_problem(r, 400,
			"type must be users, tags or posts");
		return 1;
	}
	return api_search(r->g->client, ctx, q, t, &page, api_done, r);
}

static int
h_media_put(gw__request *r, const api_ctx *base)
{
	uint64_t media_id;
	if (!id_param(r, 0, &media_id))
		return 1;
	uint64_t signer;
	int rc = gw__upload_url_verify(&r->g->key, media_id, &r->query,
		gw__wall_s(), &signer);
	if (rc == GW_EEXPIRED) {
		gw__respond_problem(r, 403, "the upload URL has expired");
		return 1;
	}
	if (rc < 0) {
		gw__respond_problem(r, 403, "the upload URL is not valid");
		return 1;
	}
	api_ctx ctx = *base;
	ctx.user_id = signer;
	r->user_id = signer;
	size_t length;
	void *bytes = gw__body_take(&r->body, &length);
	return api_media_upload_reserved(r->g->client, &ctx, media_id, bytes,
		length, api_done, r);
}

/* Calls the domain for routes that need it. */
static int
call_domain(gw__request *r, const api_ctx *ctx)
{
	api_client *c = r->g->client;
	const char *p0 = r->match.params[0];
	uint64_t id = 0, id2 = 0;
	api_page page;
	switch (r->match.info->id) {
	case GW_ROUTE_SIGNUP: return h_signup(r, ctx);
	case GW_ROUTE_LOGIN: return h_login(r, ctx);
	case GW_ROUTE_USER_ME: return h_user_me(r, ctx);
	case GW_ROUTE_USER_GET: return api_user_get(c, ctx, p0, api_done, r);
	case GW_ROUTE_FOLLOW: return h_follow(r, ctx);
	case GW_ROUTE_FOLLOWERS:
	case GW_ROUTE_FOLLOWING:
		if (!page_of(r, &page))
			return 1;
		return api_follow_list(c, ctx, p0,
			r->match.info->id == GW_ROUTE_FOLLOWING, &page,
			api_done, r);
	case GW_ROUTE_USER_POSTS:
		if (!page_of(r, &page))
			return 1;
		return api_user_posts(c, ctx, p0, &page, api_done, r);
	case GW_ROUTE_MEDIA_UPLOAD: {
		gw__body *b = r->multipart ? &r->form.media : &r->body;
		if (b->length == 0) {
			gw__respond_problem(r, 400, "no image bytes");
			return 1;
		}
		/* The domain takes the bytes and stores them off the loop. */
		size_t length;
		void *bytes = gw__body_take(b, &length);
		return api_media_upload(c, ctx, bytes, length, api_done, r);
	}
	case GW_ROUTE_MEDIA_RESERVE:
		return api_media_reserve(c, ctx, api_done, r);
	case GW_ROUTE_MEDIA_PUT: return h_media_put(r, ctx);
	case GW_ROUTE_MEDIA_GET:
		if (!id_param(r, 0, &id))
			return 1;
		return api_media_get(c, ctx, id, api_done, r);
	case GW_ROUTE_POST_CREATE: return h_post_create(r, ctx);
	case GW_ROUTE_POST_GET:
		if (!id_param(r, 0, &id))
			return 1;
		return api_post_get(c, ctx, id, api_done, r);
	case GW_ROUTE_POST_DELETE:
		if (!id_param(r, 0, &id))
			return 1;
		return api_post_delete(c, ctx, id, api_done, r);
	case GW_ROUTE_LIKE: return h_like(r, ctx);
	case GW_ROUTE_COMMENTS:
		if (!id_param(r, 0, &id) || !page_of(r, &page))
			return 1;
		return api_comments(c, ctx, id, &page, api_done, r);
	case GW_ROUTE_COMMENT_ADD: return h_comment_add(r, ctx);
	case GW_ROUTE_COMMENT_DELETE:
		if (!id_param(r, 0, &id) || !id_param(r, 1, &id2))
			return 1;
		return api_comment_delete(c, ctx, id, id2, api_done, r);
	case GW_ROUTE_FEED:
		if (!page_of(r, &page))
			return 1;
		return api_feed(c, ctx, &page, api_done, r);
	case GW_ROUTE_STORY_POST: return h_story_post(r, ctx);
	case GW_ROUTE_STORIES: return api_stories(c, ctx, api_done, r);
	case GW_ROUTE_STORY_SEEN:
		if (!id_param(r, 0, &id))
			return 1;
		return api_story_seen(c, ctx, id, api_done, r);
	case GW_ROUTE_NOTIFICATIONS: return h_notifications(r, ctx);
	case GW_ROUTE_NOTIFICATIONS_READ: return h_notifications_read(r, ctx);
	case GW_ROUTE_SEARCH: return h_search(r, ctx);
	default:
		gw__assert(!"not a domain route");
		return API_EINTERNAL;
	}
}

/* ---- local routes ----------------------------------------------------------- */

/* Opens a file under the web or media tree and responds with it. */
static void
respond_file(gw__request *r, const char *path, const char *type,
	const char *cache_control)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		gw__respond_problem(r, 404, "no such file");
		return;
	}
	r->file_fd = fd;
	r->file_size = (uint64_t)st.st_size;
	r->response_type = type;
	r->cache_control = cache_control;
	respond(r, 200);
}

/* The stored variant at path in the media cache (read once), or NULL
 * when there is no cache, the file is too large for it or unreadable. */
static const gw__media_entry *
media_cache_load(gw *g, const char *hash, const char *variant,
	const char *path, const char *type)
{
	if (g->media_cache == NULL)
		return NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	struct stat st;
	const gw__media_entry *e = NULL;
	unsigned char *bytes = NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		(uint64_t)st.st_size > GW_MEDIA_CACHE_FILE_BYTES_MAX)
		goto done;
	size_t length = (size_t)st.st_size;
	bytes = malloc(length > 0 ? length : 1);
	if (bytes == NULL)
		goto done;
	size_t got = 0;
	while (got < length) {
		ssize_t n = pread(fd, bytes + got, length - got, (off_t)got);
		if (n <= 0)
			goto done;
		got += (size_t)n;
	}
	(void)gw__media_cache_insert(g->media_cache, hash, variant, type, bytes,
		length, &e);
done:
	free(bytes);
	close(fd);
	return e;
}

static void
h_media_file(gw__request *r)
{
	const char *hash = r->match.params[0];
	const char *variant = r->match.params[1];
	char key[GW_MEDIA_KEY_BYTES_MAX];
	int n = snprintf(key, sizeof key, "%s/%s", hash, variant);
	const gw__media_entry *e = n > 0 && (size_t)n < sizeof key ?
		gw__media_cache_find(r->g->media_cache, key, (size_t)n) : NULL;
	char path[1024];
	const char *type = e != NULL ? e->content_type : NULL;
	if (e == NULL) {
		int rc = api_media_file(r->g->domain, hash, variant, path,
			sizeof path, &type);
		if (rc < 0 || type == NULL) {
			gw__respond_problem(r, 404, "no such image");
			return;
		}
	}
	/* The content is addressed by its hash: the ETag never changes. */
	char etag[GW_PATH_PARAM_BYTES_MAX * 2 + 4];
	snprintf(etag, sizeof etag, "\"%s-%s\"", hash, variant);
	gw__response_header(r, "ETag:", etag);
	static const char immutable[] = GW_CACHE_CONTROL_IMMUTABLE;
	if (r->if_none_match[0] != '\0' &&
		gw__etag_matches(r->if_none_match, etag)) {
		r->cache_control = immutable;
		gw__respond_empty(r, 304);
		return;
	}
	if (e == NULL)
		e = media_cache_load(r->g, hash, variant, path, type);
	if (e == NULL) {
		respond_file(r, path, type, immutable);
		return;
	}
	/* The transport answers later requests for it from the cache in one
	 * write; this one (the first, a HEAD, a Connection: close...) takes
	 * the ordinary path with a copy of the bytes. */
	size_t length = e->response_length - e->header_length;
	gw__body_free(&r->response);
	gw__body_init(&r->response, length);
	if (length > 0 && gw__body_append(&r->response,
				  e->response + e->header_length, length) < 0) {
		gw__respond_problem(r, 503, "out of memory");
		return;
	}
	r->response_type = type;
	r->cache_control = immutable;
	respond(r, 200);
}

static void
h_web(gw__request *r, const char *name)
{
	if (!gw__static_path_valid(name)) {
		gw__respond_problem(r, 404, "no such file");
		return;
	}
	char path[1024];
	int n = snprintf(path, sizeof path, "%s/%s", r->g->web_dir, name);
	if (n < 0 || (size_t)n >= sizeof path) {
		gw__respond_problem(r, 404, "no such file");
		return;
	}
	respond_file(r, path, gw__content_type_for(name), "no-cache");
}

static void
h_metrics(gw__request *r)
{
	gw *g = r->g;
	gw__process_stats ps;
	memset(&ps, 0, sizeof ps);
	ps.rss_bytes = gw__process_rss_bytes();
	if (g->rt != NULL) {
		rt_get_stats(g->rt, &ps.runtime);
		ps.have_runtime = true;
	}
	if (g->client != NULL)
		ps.api_pending = api_client_pending(g->client);
	/* The node's figures: every loop's counters summed. */
	gw *first = g->first;
	gw__metrics *sum = calloc(1, sizeof *sum);
	gw__media_cache_stat st;
	memset(&st, 0, sizeof st);
	uint32_t loops = __atomic_load_n(&first->loops_started,
		__ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < loops && sum != NULL; i++) {
		gw__metrics_add(sum, first->loops[i]->metrics);
		gw__media_cache_stat one;
		gw__media_cache_stats(first->loops[i]->media_cache, &one);
		st.entries += one.entries;
		st.bytes += one.bytes;
		st.hits += one.hits;
		st.misses += one.misses;
		st.evictions += one.evictions;
	}
	char *extra = NULL;
	/* Not while stopping: the caller's parts behind the callback stop
	 * once every loop has drained. */
	gw_metrics_extra_callback extra_cb = g->stopping ? NULL
		: __atomic_load_n(&first->metrics_extra, __ATOMIC_ACQUIRE);
	if (extra_cb != NULL) {
		extra = calloc(1, 64 * 1024);
		if (extra != NULL)
			extra_cb(first->metrics_extra_arg, extra,
				64 * 1024 - 1);
	}
	gw__body_init(&r->response, GW_METRICS_BYTES_MAX);
	int rc = sum == NULL ? GW_ENOMEM
			     : gw__metrics_render(sum, &ps, extra,
				       &r->response);
	free(extra);
	free(sum);
	if (rc == 0 && g->media_cache != NULL) {
		char lines[512];
		int n = snprintf(lines, sizeof lines,
			"flock_media_cache_entries %" PRIu32 "\n"
			"flock_media_cache_bytes %zu\n"
			"flock_media_cache_hits_total %" PRIu64 "\n"
			"flock_media_cache_misses_total %" PRIu64 "\n"
			"flock_media_cache_evictions_total %" PRIu64 "\n",
			st.entries, st.bytes, st.hits, st.misses,
			st.evictions);
		if (n > 0 && (size_t)n < sizeof lines)
			rc = gw__body_append(&r->response, lines, (size_t)n);
	}
	if (rc < 0) {
		gw__body_free(&r->response);
		gw__respond_problem(r, 500, "metrics too large");
		return;
	}
	r->response_type = "text/plain; version=0.0.4; charset=utf-8";
	r->cache_control = "no-store";
	respond(r, 200);
}

/* Routes the gateway answers itself. Returns false for domain routes. */
static bool
local_route(gw__request *r)
{
	static const char ok[] = "{\"status\":\"ok\"}";
	switch (r->match.info->id) {
	case GW_ROUTE_HEALTHZ:
		gw__respond_text(r, 200, "application/json", ok,
			sizeof ok - 1);
		return true;
	case GW_ROUTE_READYZ:
		if (__atomic_load_n(&r->g->first->ready, __ATOMIC_RELAXED) &&
			!r->g->stopping)
			gw__respond_text(r, 200, "application/json", ok,
				sizeof ok - 1);
		else
			gw__respond_problem(r, 503,
				r->g->stopping ? "shutting down"
					       : "storage is not open yet");
		return true;
	case GW_ROUTE_METRICS: h_metrics(r); return true;
	case GW_ROUTE_MEDIA_FILE: h_media_file(r); return true;
	case GW_ROUTE_INDEX: h_web(r, "index.html"); return true;
	case GW_ROUTE_STATIC: h_web(r, r->match.params[0]); return true;
	case GW_ROUTE_STREAM:
		gw__response_header(r, "Upgrade:", "websocket");
		gw__respond_problem(r, 400,
			"GET /v1/stream is a WebSocket: send Upgrade");
		return true;
	default:
		return false;
	}
}

void
gw__handle(gw__request *r)
{
	gw__assert(!r->responded);
	gw__assert(!r->pending);
	r->dispatched = true;
	if (local_route(r))
		return;
	if (r->g->metrics->requests_in_flight >=
		r->g->cfg.requests_in_flight_max) {
		gw__response_header(r, "Retry-After:", "1");
		gw__respond_problem(r, 503, "too many requests in flight");
		return;
	}
	api_ctx ctx;
	make_ctx(r, &ctx, true);
	begin_pending(r);
	int rc = call_domain(r, &ctx);
	if (rc == 1) {
		/* Responded without a call. */
		finish_pending(r);
		return;
	}
	if (rc < 0)
		call_failed(r, rc);
}

/* ---- after the headers ---------------------------------------------------- */

static bool
rate_limit(gw__request *r, gw__rate_table *t)
{
	gw__bucket_state st;
	int rc = gw__rate_take(t, r->ip, gw__now_us() / 1000, &st);
	char v[96];
	gw_rate rate = gw__rate_table_rate(t);
	snprintf(v, sizeof v, "%u;w=%u", rate.capacity, rate.window_s);
	gw__response_header(r, "RateLimit-Policy:", v);
	snprintf(v, sizeof v, "limit=%u, remaining=%u, reset=%" PRIu64,
		st.limit, st.remaining, st.reset_s);
	gw__response_header(r, "RateLimit:", v);
	if (rc == 0)
		return true;
	snprintf(v, sizeof v, "%" PRIu64, st.retry_after_s);
	gw__response_header(r, "Retry-After:", v);
	gw__count(&r->g->metrics->rate_limited_total, 1);
	r->close_after = r->has_content_length && r->content_length > 0;
	gw__respond_problem(r, 429, "too many attempts from this address");
	return false;
}

static bool
authenticate(gw__request *r)
{
	const char *token = NULL;
	size_t length = 0;
	if (r->authorization[0] == '\0' ||
		gw__bearer(r->authorization, &token, &length) < 0) {
		gw__response_header(r, "WWW-Authenticate:", "Bearer");
		gw__respond_problem(r, 401, "a bearer token is required");
		return false;
	}
	int rc = gw__token_verify_cached(r->g->tokens, &r->g->key, token,
		length, gw__wall_s(), &r->user_id);
	if (rc < 0) {
		gw__response_header(r, "WWW-Authenticate:",
			rc == GW_EEXPIRED
				? "Bearer error=\"invalid_token\", "
				  "error_description=\"expired\""
				: "Bearer error=\"invalid_token\"");
		gw__respond_problem(r, 401,
			rc == GW_EEXPIRED ? "the token has expired"
					  : "the token is not valid");
		return false;
	}
	return true;
}

static bool
is_json_type(const char *type)
{
	size_t n = strlen(type);
	return strcmp(type, "application/json") == 0 ||
		(n > 5 && strcmp(type + n - 5, "+json") == 0);
}

/* Decides how the body is read (JSON, raw image, multipart) and its cap.
 * Responds 415/413/411 and returns false when it cannot be taken. */
static bool
body_plan(gw__request *r)
{
	const gw__route_info *info = r->match.info;
	gw_config *cfg = &r->g->cfg;
	bool has_body = r->has_content_length && r->content_length > 0;
	bool multipart = strcmp(r->content_type, "multipart/form-data") == 0;
	bool image = strncmp(r->content_type, "image/", 6) == 0;
	size_t cap = cfg->json_body_bytes_max;
	switch (info->body) {
	case GW_BODY_NONE:
		/* Read and ignored (so a keep-alive connection stays in step),
		 * under the JSON cap. */
		break;
	case GW_BODY_JSON:
		if (has_body && r->content_type[0] != '\0' &&
			!is_json_type(r->content_type)) {
			r->close_after = true;
			gw__respond_problem(r, 415, "send application/json");
			return false;
		}
		break;
	case GW_BODY_UPLOAD:
	case GW_BODY_RAW_IMAGE:
		if (image || strcmp(r->content_type,
				     "application/octet-stream") == 0) {
			cap = cfg->upload_body_bytes_max;
		} else if (multipart && info->body == GW_BODY_UPLOAD) {
			r->multipart = true;
		} else {
			r->close_after = has_body;
			gw__respond_problem(r, 415,
				"send image bytes or multipart/form-data");
			return false;
		}
		break;
	case GW_BODY_POST:
		if (multipart) {
			r->multipart = true;
		} else if (has_body && r->content_type[0] != '\0' &&
			!is_json_type(r->content_type)) {
			r->close_after = true;
			gw__respond_problem(r, 415,
				"send application/json or multipart/form-data");
			return false;
		}
		break;
	}
	if (r->multipart) {
		if (r->boundary[0] == '\0') {
			r->close_after = has_body;
			gw__respond_problem(r, 400, "multipart without boundary");
			return false;
		}
		/* The image plus the caption and the framing around them. */
		cap = (size_t)cfg->upload_body_bytes_max +
			GW_FORM_FIELD_BYTES_MAX + 4096;
		gw__form_init(&r->form, cfg->upload_body_bytes_max);
	}
	if (r->has_content_length && r->content_length > cap) {
		r->close_after = true;
		char detail[96];
		snprintf(detail, sizeof detail,
			"the body is larger than %zu bytes", cap);
		gw__respond_problem(r, 413, detail);
		return false;
	}
	gw__body_init(&r->body, r->multipart ? 0 : cap);
	return true;
}

bool
gw__request_begin(gw__request *r)
{
	gw *g = r->g;
	int rc = gw__route(r->method, r->path, &r->match);
	if (rc == GW_EMETHOD) {
		char allow[96];
		gw__allow_header(r->match.allowed_methods, allow, sizeof allow);
		gw__response_header(r, "Allow:", allow);
		r->close_after = r->has_content_length && r->content_length > 0;
		char detail[160];
		snprintf(detail, sizeof detail, "%s is not allowed on %.100s",
			gw__method_name(r->method), r->path);
		gw__respond_problem(r, 405, detail);
		return true;
	}
	if (rc < 0) {
		r->close_after = r->has_content_length && r->content_length > 0;
		char detail[160];
		snprintf(detail, sizeof detail, "no route for %s %.100s",
			gw__method_name(r->method), r->path);
		gw__respond_problem(r, 404, detail);
		return true;
	}
	const gw__route_info *info = r->match.info;
	if (g->stopping && (info->flags & GW_ROUTE_F_API)) {
		r->close_after = true;
		gw__response_header(r, "Retry-After:", "1");
		gw__respond_problem(r, 503, "the node is shutting down");
		return true;
	}
	if (info->id == GW_ROUTE_SIGNUP && !rate_limit(r, g->rate_signup))
		return true;
	if (info->id == GW_ROUTE_LOGIN && !rate_limit(r, g->rate_login))
		return true;
	if ((info->flags & GW_ROUTE_F_AUTH) && !authenticate(r)) {
		r->close_after = r->has_content_length && r->content_length > 0;
		return true;
	}
	if (r->idempotency_key[0] != '\0' &&
		!gw__idempotency_key_valid(r->idempotency_key,
			strlen(r->idempotency_key))) {
		r->close_after = r->has_content_length && r->content_length > 0;
		gw__respond_problem(r, 400,
			"Idempotency-Key must be 1 to 255 visible characters");
		return true;
	}
	return !body_plan(r);
}
