/*
 * actors/calls.c — the api.h calls of the social core (accounts, follows,
 * posts, likes, comments, listings), coordinated on the caller's thread.
 *
 * Role: validate input, then ask the owning actor; reads that span
 * several actors (a listing hydrated from many posts or users) ask them
 * in parallel and assemble the API.md body here. Writes go to exactly one
 * owning actor, which answers once its record is durable.
 *
 * Invariants: every call that returned 0 completes exactly once (each
 * continuation ends in actors__complete or hands over to one that does);
 * validation errors complete through the callback with a detail text, so
 * the gateway can show why.
 *
 * Likes and comments go to the acting user's actor, which takes a token
 * from its bucket and forwards them to the post with the caller's
 * reply-to (one hop more, no round trip more); posts and follows are the
 * user actor's own writes. Writes with an Idempotency-Key run through
 * calls__keyed; @mentions are resolved here before the write goes out.
 *
 * What it deliberately does not do: tokens (the gateway's), keep keys or
 * buckets (the user actor does, see user_engage.c).
 */
#include "actors/internal.h"

#include <stdio.h>
#include <stdlib.h>


/* ---- common plumbing ----------------------------------------------------- */

typedef struct deferred {
	api_callback cb;
	void *arg;
	int code;
	char detail[ACTORS_DETAIL_BYTES_MAX + 1];
} deferred;

static void
deferred_step(api_client *c, void *opaque, const rt_message *m)
{
	deferred *d = opaque;
	(void)m;
	actors__complete(c, d->cb, d->arg, d->code, d->detail,
		strlen(d->detail), NULL, 0);
	free(d);
}

/* Runs step(op) from the client's next poll or wait, through a
 * POOL_DONE to its own inbox: never inside the api call that asks.
 * Returns 0 or API_EUNAVAILABLE (then step never runs). */
static int
run_later(api_client *c, actors__step step, void *op)
{
	uint64_t token = actors__token(c, step, op);
	if (token == 0)
		return API_EUNAVAILABLE;
	actors__pool_done done;
	memset(&done, 0, sizeof done);
	done.token = token;
	api *a = actors__client_api(c);
	rt_message *msg = rt_message_alloc(a->rt, ACTORS_T_POOL_DONE,
		sizeof done);
	if (msg == NULL) {
		actors__token_cancel(c, token);
		return API_EUNAVAILABLE;
	}
	memcpy(msg->payload, &done, sizeof done);
	if (rt_send_external(a->rt, actors__client_addr(c), msg) != 0) {
		actors__token_cancel(c, token);
		return API_EUNAVAILABLE;
	}
	return API_OK;
}

int
calls__fail(api_client *c, api_callback cb, void *arg, int code,
	const char *detail)
{
	deferred *d = calloc(1, sizeof *d);
	if (d == NULL)
		return API_EUNAVAILABLE;
	d->cb = cb;
	d->arg = arg;
	d->code = code;
	snprintf(d->detail, sizeof d->detail, "%s", detail ? detail : "");
	if (run_later(c, deferred_step, d) != API_OK) {
		free(d);
		return API_EUNAVAILABLE;
	}
	actors__call_begin(c);
	return API_OK;
}

/* A call that is one ask whose reply is the answer. */
typedef struct forward_op {
	api_callback cb;
	void *arg;
} forward_op;

static void
forward_step(api_client *c, void *opaque, const rt_message *m)
{
	forward_op *op = opaque;
	actors__complete_reply(c, op->cb, op->arg, m);
	free(op);
}

int
calls__forward(api_client *c, rt_addr to, uint32_t type, const wire_writer *w,
	api_callback cb, void *arg)
{
	if (w->failed)
		return API_EUNAVAILABLE;
	forward_op *op = malloc(sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	op->cb = cb;
	op->arg = arg;
	int rc = actors__ask(c, to, type, w->bytes, w->length, forward_step,
		op);
	if (rc != 0) {
		free(op);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}

/* The wall-clock ms (this node's clock) at which an ask sent now times
 * out here. Engagement asks carry it so the actors refuse one that
 * arrives after its caller gave up (held in a link to a cut-off node, or
 * overtaken by the caller's next call through another node): applying it
 * then would undo that next call. */
static uint64_t
ask_deadline_ms(api_client *c)
{
	const api *a = actors__client_api(c);
	return rt_wall_ms(a->rt) + a->cfg.ask_timeout_ms;
}

static rt_addr
user_addr(uint64_t id)
{
	return rt_addr_make(ACTORS_KIND_USER, id);
}

static rt_addr
post_addr(uint64_t id)
{
	return rt_addr_make(ACTORS_KIND_POST, id);
}

static rt_addr
names_addr(const char *lower)
{
	return rt_addr_make(ACTORS_KIND_NAMES,
		(uint64_t)actors__name_partition(lower)
			<< ACTORS_ID_SEQUENCE_BITS);
}

/* ---- username resolution -------------------------------------------------- */


typedef struct resolve_op {
	api_callback cb;
	void *arg;
	calls__resolved_fn next;
	void *next_op;
	int missing_code; /* what an unknown name answers */
	uint64_t user_id; /* a name the client knew: resolved_step */
	char lower[API_USERNAME_BYTES_MAX + 2];
} resolve_op;

static void
resolve_step(api_client *c, void *opaque, const rt_message *m)
{
	resolve_op *op = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	uint64_t user_id = 0;
	if (code == API_OK && body_length == sizeof user_id)
		memcpy(&user_id, body, sizeof user_id);
	if (user_id == 0) {
		if (code == API_OK || code == API_ENOTFOUND)
			code = op->missing_code;
		actors__complete(c, op->cb, op->arg, code,
			code == API_EUNAUTHORIZED ? "bad credentials"
						  : "no such user",
			code == API_EUNAUTHORIZED ? 15 : 12, NULL, 0);
		free(op->next_op);
		free(op);
		return;
	}
	actors__client_name_put(c, op->lower, user_id);
	op->next(c, op->next_op, user_id);
	free(op);
}

/* A name the client had resolved before: next runs from the next poll,
 * as it would after the names actor's answer, without that ask (a
 * worker's turn and a reply; a user timeline read was two asks). */
static void
resolved_step(api_client *c, void *opaque, const rt_message *m)
{
	resolve_op *op = opaque;
	(void)m;
	op->next(c, op->next_op, op->user_id);
	free(op);
}

/* Resolves name, then runs next(next_op, user_id); on failure completes
 * (cb, arg) and frees next_op. The call is counted as begun. */
int
calls__resolve(api_client *c, const char *name, api_callback cb, void *arg,
	calls__resolved_fn next, void *next_op, int missing_code)
{
	char lower[API_USERNAME_BYTES_MAX + 2];
	if (!actors__username_normalize(name, lower, sizeof lower)) {
		free(next_op);
		return calls__fail(c, cb, arg, missing_code == API_EUNAUTHORIZED
				? API_EUNAUTHORIZED
				: API_EINVALID,
			"invalid username");
	}
	resolve_op *op = malloc(sizeof *op);
	if (op == NULL) {
		free(next_op);
		return API_EUNAVAILABLE;
	}
	*op = (resolve_op){cb, arg, next, next_op, missing_code, 0, {0}};
	memcpy(op->lower, lower, strlen(lower) + 1);
	op->user_id = actors__client_name_get(c, lower);
	if (op->user_id != 0) {
		if (run_later(c, resolved_step, op) != API_OK) {
			free(op);
			free(next_op);
			return API_EUNAVAILABLE;
		}
		actors__call_begin(c);
		return API_OK;
	}
	wire_writer w;
	wire_init(&w);
	wire_str(&w, lower);
	int rc = w.failed ? API_EUNAVAILABLE
			  : actors__ask(c, names_addr(lower), NAMES_T_LOOKUP,
				w.bytes, w.length, resolve_step, op);
	wire_free(&w);
	if (rc != 0) {
		free(op);
		free(next_op);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}

/* After resolution the call is already counted: the next ask must not
 * count it again. Asks that fail right away complete with the error. */
static void
ask_or_complete(api_client *c, rt_addr to, uint32_t type, wire_writer *w,
	api_callback cb, void *arg)
{
	forward_op *op = malloc(sizeof *op);
	int rc = API_EUNAVAILABLE;
	if (op != NULL && !w->failed) {
		op->cb = cb;
		op->arg = arg;
		rc = actors__ask(c, to, type, w->bytes, w->length, forward_step,
			op);
	}
	wire_free(w);
	if (rc != 0) {
		free(op);
		actors__complete(c, cb, arg, rc, "unavailable", 11, NULL, 0);
	}
}

/* ---- signup and login ----------------------------------------------------- */

typedef struct signup_op {
	api_callback cb;
	void *arg;
	char name[API_USERNAME_BYTES_MAX + 2];
	char email[API_EMAIL_BYTES_MAX + 1];
	char hash[128];
} signup_op;

static void
signup_claim(api_client *c, signup_op *op)
{
	api *a = actors__client_api(c);
	uint32_t partition = actors__name_partition(op->name);
	uint64_t user_id = actors__idgen_next(&a->ids, partition,
		rt_wall_ms(a->rt));
	wire_writer w;
	wire_init(&w);
	wire_str(&w, op->name);
	wire_u64(&w, user_id);
	wire_str(&w, op->name);
	wire_str(&w, op->email);
	wire_str(&w, op->hash);
	ask_or_complete(c, names_addr(op->name), NAMES_T_CLAIM, &w, op->cb,
		op->arg);
	free(op);
}

static void
signup_hashed(api_client *c, void *opaque, const rt_message *m)
{
	signup_op *op = opaque;
	actors__pool_done done;
	if (m->size != sizeof done) {
		actors__complete(c, op->cb, op->arg, API_EINTERNAL, NULL, 0,
			NULL, 0);
		free(op);
		return;
	}
	memcpy(&done, m->payload, sizeof done);
	if (done.code != API_OK) {
		actors__complete(c, op->cb, op->arg, done.code,
			"password hashing failed", 23, NULL, 0);
		free(op);
		return;
	}
	memcpy(op->hash, done.hash, sizeof op->hash);
	op->hash[sizeof op->hash - 1] = '\0';
	signup_claim(c, op);
}

static int
signup_validate(const char *username, const char *email, char *lower,
	const char **detail)
{
	if (!actors__username_normalize(username, lower,
		    API_USERNAME_BYTES_MAX + 2)) {
		*detail = "username must match ^[a-z0-9._]{1,30}$";
		return API_EINVALID;
	}
	if (!actors__email_valid(email)) {
		*detail = "invalid email";
		return API_EINVALID;
	}
	return API_OK;
}

int
api_signup(api_client *c, const api_ctx *ctx, const char *username,
	const char *email, const char *password, api_callback cb, void *arg)
{
	(void)ctx;
	char lower[API_USERNAME_BYTES_MAX + 2];
	const char *detail = NULL;
	if (signup_validate(username, email, lower, &detail) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID, detail);
	if (!actors__password_valid(password))
		return calls__fail(c, cb, arg, API_EINVALID,
			"password must be 8 to 128 bytes");
	signup_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	op->cb = cb;
	op->arg = arg;
	memcpy(op->name, lower, sizeof op->name);
	snprintf(op->email, sizeof op->email, "%s", email);
	uint64_t token = actors__token(c, signup_hashed, op);
	if (token == 0) {
		free(op);
		return API_EUNAVAILABLE;
	}
	int rc = actors__pool_hash(actors__client_api(c),
		actors__client_addr(c), token, password);
	if (rc != 0) {
		actors__token_cancel(c, token);
		free(op);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}

int
api_signup_prehashed(api_client *c, const api_ctx *ctx, const char *username,
	const char *email, const char *password_hash, api_callback cb,
	void *arg)
{
	(void)ctx;
	char lower[API_USERNAME_BYTES_MAX + 2];
	const char *detail = NULL;
	if (signup_validate(username, email, lower, &detail) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID, detail);
	if (password_hash == NULL || strlen(password_hash) >= 128)
		return calls__fail(c, cb, arg, API_EINVALID, "bad hash");
	signup_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	op->cb = cb;
	op->arg = arg;
	memcpy(op->name, lower, sizeof op->name);
	snprintf(op->email, sizeof op->email, "%s", email);
	snprintf(op->hash, sizeof op->hash, "%s", password_hash);
	actors__call_begin(c);
	signup_claim(c, op);
	return API_OK;
}

typedef struct login_op {
	api_callback cb;
	void *arg;
	uint64_t user_id;
	char password[API_PASSWORD_BYTES_MAX + 1];
} login_op;

static void
login_verified(api_client *c, void *opaque, const rt_message *m)
{
	login_op *op = opaque;
	actors__pool_done done;
	int code = API_EINTERNAL;
	if (m->size == sizeof done) {
		memcpy(&done, m->payload, sizeof done);
		code = done.code;
	}
	if (code != API_OK) {
		actors__complete(c, op->cb, op->arg, code, "bad credentials",
			15, NULL, 0);
		free(op);
		return;
	}
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_map(&b.packer, 1);
	actors__pack_key(&b.packer, "user_id");
	actors__pack_id(&b.packer, op->user_id);
	actors__complete(c, op->cb, op->arg, API_OK, NULL, 0, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
	free(op);
}

static void
login_hash(api_client *c, void *opaque, const rt_message *m)
{
	login_op *op = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	char hash[128];
	if (code == API_OK && (body_length == 0 || body_length >= sizeof hash))
		code = API_EUNAUTHORIZED;
	if (code != API_OK) {
		if (code == API_ENOTFOUND)
			code = API_EUNAUTHORIZED;
		actors__complete(c, op->cb, op->arg, code, "bad credentials",
			15, NULL, 0);
		free(op);
		return;
	}
	memcpy(hash, body, body_length);
	hash[body_length] = '\0';
	uint64_t token = actors__token(c, login_verified, op);
	int rc = token == 0 ? API_EUNAVAILABLE
			    : actors__pool_verify(actors__client_api(c),
				actors__client_addr(c), token, hash,
				op->password);
	if (rc != 0) {
		actors__token_cancel(c, token);
		actors__complete(c, op->cb, op->arg, rc, "busy", 4, NULL, 0);
		free(op);
	}
}

static void
login_resolved(api_client *c, void *opaque, uint64_t user_id)
{
	login_op *op = opaque;
	op->user_id = user_id;
	int rc = actors__ask(c, user_addr(user_id), USER_T_CREDENTIALS, NULL, 0,
		login_hash, op);
	if (rc != 0) {
		actors__complete(c, op->cb, op->arg, rc, "unavailable", 11,
			NULL, 0);
		free(op);
	}
}

int
api_login(api_client *c, const api_ctx *ctx, const char *username,
	const char *password, api_callback cb, void *arg)
{
	(void)ctx;
	if (!actors__password_valid(password))
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED,
			"bad credentials");
	login_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	op->cb = cb;
	op->arg = arg;
	snprintf(op->password, sizeof op->password, "%s", password);
	return calls__resolve(c, username, cb, arg, login_resolved, op,
		API_EUNAUTHORIZED);
}

/* ---- profiles and follows -------------------------------------------------- */

typedef struct user_op {
	api_callback cb;
	void *arg;
	uint64_t viewer;
	uint32_t type;
	uint8_t flag;
} user_op;

static void
profile_resolved(api_client *c, void *opaque, uint64_t user_id)
{
	user_op *op = opaque;
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, op->viewer);
	ask_or_complete(c, user_addr(user_id), USER_T_PROFILE, &w, op->cb,
		op->arg);
	free(op);
}

int
api_user_get(api_client *c, const api_ctx *ctx, const char *username,
	api_callback cb, void *arg)
{
	user_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	*op = (user_op){cb, arg, ctx != NULL ? ctx->user_id : 0, 0, 0};
	return calls__resolve(c, username, cb, arg, profile_resolved, op,
		API_ENOTFOUND);
}

int
api_user_get_by_id(api_client *c, const api_ctx *ctx, uint64_t user_id,
	api_callback cb, void *arg)
{
	if (user_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such user");
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx != NULL ? ctx->user_id : 0);
	int rc = calls__forward(c, user_addr(user_id), USER_T_PROFILE, &w, cb,
		arg);
	wire_free(&w);
	return rc;
}

int
api_user_update(api_client *c, const api_ctx *ctx, const char *bio,
	uint64_t profile_pic_media_id, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	const char *detail = NULL;
	if (bio != NULL && actors__bio_check(bio, &detail) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID, detail);
	wire_writer w;
	wire_init(&w);
	wire_u8(&w, bio != NULL);
	wire_str(&w, bio);
	wire_u64(&w, profile_pic_media_id);
	int rc = calls__forward(c, user_addr(ctx->user_id), USER_T_UPDATE, &w,
		cb, arg);
	wire_free(&w);
	return rc;
}

static void
follow_resolved(api_client *c, void *opaque, uint64_t user_id)
{
	user_op *op = opaque;
	if (user_id == op->viewer) {
		actors__complete(c, op->cb, op->arg, API_EINVALID,
			"cannot follow yourself", 22, NULL, 0);
		free(op);
		return;
	}
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, user_id);
	wire_u8(&w, op->flag);
	wire_u64(&w, ask_deadline_ms(c));
	ask_or_complete(c, user_addr(op->viewer), USER_T_FOLLOW, &w, op->cb,
		op->arg);
	free(op);
}

typedef struct follow_args {
	bool follow;
	char username[];
} follow_args;

static int
follow_run(api_client *c, const api_ctx *ctx, void *args, api_callback cb,
	void *arg)
{
	follow_args *f = args;
	return api_follow(c, ctx, f->username, f->follow, cb, arg);
}

int
api_follow(api_client *c, const api_ctx *ctx, const char *username,
	bool follow, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (ctx->idempotency_key != NULL) {
		size_t n = strlen(username != NULL ? username : "");
		follow_args *f = malloc(sizeof *f + n + 1);
		if (f == NULL)
			return API_EUNAVAILABLE;
		f->follow = follow;
		memcpy(f->username, username != NULL ? username : "", n + 1);
		return calls__keyed(c, ctx, follow_run, f, NULL, cb, arg);
	}
	user_op *op = calloc(1, sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	*op = (user_op){cb, arg, ctx->user_id, 0, follow ? 1 : 0};
	return calls__resolve(c, username, cb, arg, follow_resolved, op,
		API_ENOTFOUND);
}

/* ---- posts, likes, comments ------------------------------------------------ */

/* A write that names accounts (@mentions): the names are resolved
 * first, then the write goes to the acting user's actor with their ids
 * appended (u32 count, u64 ids). */
typedef struct mention_write {
	api_callback cb;
	void *arg;
	uint64_t user_id;
	uint32_t type;    /* USER_T_POST_CREATE or USER_T_COMMENT */
	wire_writer w;    /* the request before the mentions */
} mention_write;

static void
mention_write_send(api_client *c, void *opaque, const uint64_t *ids,
	uint32_t count)
{
	mention_write *op = opaque;
	wire_u32(&op->w, count);
	for (uint32_t i = 0; i < count; i++)
		wire_u64(&op->w, ids[i]);
	ask_or_complete(c, user_addr(op->user_id), op->type, &op->w, op->cb,
		op->arg);
	free(op);
}

/* Sends w (taken) to the acting user's actor, after the mentions in text
 * are resolved. Counts the call. */
static int
mention_write_start(api_client *c, uint64_t user_id, uint32_t type,
	wire_writer *w, const char *text, api_callback cb, void *arg)
{
	mention_write *op = malloc(sizeof *op);
	if (op == NULL || w->failed) {
		free(op);
		wire_free(w);
		return API_EUNAVAILABLE;
	}
	*op = (mention_write){cb, arg, user_id, type, *w};
	actors__call_begin(c);
	calls__mentions(c, text, mention_write_send, op);
	return API_OK;
}

typedef struct post_args {
	uint64_t media_id;
	char caption[];
} post_args;

static int
post_create_run(api_client *c, const api_ctx *ctx, void *args,
	api_callback cb, void *arg)
{
	post_args *p = args;
	return api_post_create(c, ctx, p->caption, p->media_id, cb, arg);
}

int
api_post_create(api_client *c, const api_ctx *ctx, const char *caption,
	uint64_t media_id, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (caption == NULL)
		caption = "";
	const char *detail = NULL;
	if (actors__caption_check(caption, &detail) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID, detail);
	if (ctx->idempotency_key != NULL) {
		size_t n = strlen(caption);
		post_args *p = malloc(sizeof *p + n + 1);
		if (p == NULL)
			return API_EUNAVAILABLE;
		p->media_id = media_id;
		memcpy(p->caption, caption, n + 1);
		return calls__keyed(c, ctx, post_create_run, p, NULL, cb, arg);
	}
	wire_writer w;
	wire_init(&w);
	wire_str(&w, caption);
	wire_u64(&w, media_id);
	if (strchr(caption, '@') != NULL)
		return mention_write_start(c, ctx->user_id, USER_T_POST_CREATE,
			&w, caption, cb, arg);
	int rc = calls__forward(c, user_addr(ctx->user_id), USER_T_POST_CREATE,
		&w, cb, arg);
	wire_free(&w);
	return rc;
}

static int
post_simple(api_client *c, const api_ctx *ctx, uint64_t post_id,
	uint32_t type, int flag, api_callback cb, void *arg)
{
	if (post_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such post");
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx != NULL ? ctx->user_id : 0);
	if (flag >= 0)
		wire_u8(&w, (uint8_t)flag);
	int rc = calls__forward(c, post_addr(post_id), type, &w, cb, arg);
	wire_free(&w);
	return rc;
}

int
api_post_get(api_client *c, const api_ctx *ctx, uint64_t post_id,
	api_callback cb, void *arg)
{
	return post_simple(c, ctx, post_id, POST_T_GET, -1, cb, arg);
}

int
api_post_delete(api_client *c, const api_ctx *ctx, uint64_t post_id,
	api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	return post_simple(c, ctx, post_id, POST_T_DELETE, -1, cb, arg);
}

typedef struct like_args {
	uint64_t post_id;
	bool like;
} like_args;

static int
like_run(api_client *c, const api_ctx *ctx, void *args, api_callback cb,
	void *arg)
{
	like_args *l = args;
	return api_like(c, ctx, l->post_id, l->like, cb, arg);
}

int
api_like(api_client *c, const api_ctx *ctx, uint64_t post_id, bool like,
	api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (post_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such post");
	if (ctx->idempotency_key != NULL) {
		like_args *l = malloc(sizeof *l);
		if (l == NULL)
			return API_EUNAVAILABLE;
		*l = (like_args){post_id, like};
		return calls__keyed(c, ctx, like_run, l, NULL, cb, arg);
	}
	/* Through the liker's actor, which takes a token from its like
	 * bucket and forwards to the post; the post answers here. */
	unsigned char payload[17];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_u64(&w, post_id);
	wire_u8(&w, like ? 1 : 0);
	wire_u64(&w, ask_deadline_ms(c));
	return calls__forward(c, user_addr(ctx->user_id), USER_T_LIKE, &w, cb,
		arg);
}

typedef struct comment_args {
	uint64_t post_id;
	char text[];
} comment_args;

static int
comment_run(api_client *c, const api_ctx *ctx, void *args, api_callback cb,
	void *arg)
{
	comment_args *a = args;
	return api_comment_add(c, ctx, a->post_id, a->text, cb, arg);
}

int
api_comment_add(api_client *c, const api_ctx *ctx, uint64_t post_id,
	const char *text, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	const char *detail = NULL;
	if (actors__comment_check(text, &detail) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID, detail);
	if (post_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such post");
	if (ctx->idempotency_key != NULL) {
		size_t n = strlen(text);
		comment_args *a = malloc(sizeof *a + n + 1);
		if (a == NULL)
			return API_EUNAVAILABLE;
		a->post_id = post_id;
		memcpy(a->text, text, n + 1);
		return calls__keyed(c, ctx, comment_run, a, NULL, cb, arg);
	}
	/* Through the commenter's actor: its comment bucket, its username,
	 * then the post, which answers here. */
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, post_id);
	wire_str(&w, text);
	if (strchr(text, '@') != NULL)
		return mention_write_start(c, ctx->user_id, USER_T_COMMENT, &w,
			text, cb, arg);
	wire_u32(&w, 0);
	int rc = calls__forward(c, user_addr(ctx->user_id), USER_T_COMMENT,
		&w, cb, arg);
	wire_free(&w);
	return rc;
}

int
api_comment_delete(api_client *c, const api_ctx *ctx, uint64_t post_id,
	uint64_t comment_id, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (post_id == 0 || comment_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such comment");
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx->user_id);
	wire_u64(&w, comment_id);
	int rc = calls__forward(c, post_addr(post_id), POST_T_COMMENT_DELETE,
		&w, cb, arg);
	wire_free(&w);
	return rc;
}

typedef struct comments_op {
	api_callback cb;
	void *arg;
	uint64_t post_id;
} comments_op;

static void
comments_step(api_client *c, void *opaque, const rt_message *m)
{
	comments_op *op = opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	if (code != API_OK || body_length < 9) {
		actors__complete(c, op->cb, op->arg,
			code != API_OK ? code : API_EINTERNAL, detail,
			detail_length, NULL, 0);
		free(op);
		return;
	}
	const unsigned char *p = body;
	bool more = p[0] != 0;
	uint64_t last = 0;
	for (int k = 0; k < 8; k++)
		last |= (uint64_t)p[1 + k] << (8 * k);
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_map(&b.packer, 2);
	actors__pack_key(&b.packer, "items");
	msgpack_sbuffer_write(&b.buffer, (const char *)p + 9, body_length - 9);
	actors__pack_key(&b.packer, "next_cursor");
	if (more) {
		actors__cursor cur = {ACTORS_CURSOR_COMMENTS, op->post_id, last};
		char text[ACTORS_CURSOR_TEXT_BYTES];
		actors__cursor_encode(&cur, text, sizeof text);
		actors__pack_str(&b.packer, text);
	} else {
		msgpack_pack_nil(&b.packer);
	}
	actors__complete(c, op->cb, op->arg, API_OK, NULL, 0, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
	free(op);
}

int
calls__page_args(const api_page *page, uint8_t kind, uint64_t owner,
	uint64_t first, uint32_t *limit, uint64_t *boundary)
{
	*limit = page != NULL && page->limit != 0 ? page->limit
						  : API_PAGE_LIMIT_DEFAULT;
	if (*limit > API_PAGE_LIMIT_MAX)
		return API_EINVALID;
	*boundary = first;
	if (page == NULL || page->cursor == NULL || page->cursor[0] == '\0')
		return API_OK;
	actors__cursor cur;
	int rc = actors__cursor_decode(page->cursor, kind, owner, &cur);
	if (rc != API_OK)
		return rc;
	*boundary = cur.boundary;
	return API_OK;
}

int
api_comments(api_client *c, const api_ctx *ctx, uint64_t post_id,
	const api_page *page, api_callback cb, void *arg)
{
	(void)ctx;
	if (post_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such post");
	uint32_t limit;
	uint64_t boundary;
	if (calls__page_args(page, ACTORS_CURSOR_COMMENTS, post_id, 0, &limit,
		    &boundary) != API_OK)
		return calls__fail(c, cb, arg, API_EINVALID,
			"bad limit or cursor");
	comments_op *op = malloc(sizeof *op);
	if (op == NULL)
		return API_EUNAVAILABLE;
	*op = (comments_op){cb, arg, post_id};
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, boundary);
	wire_u32(&w, limit);
	int rc = w.failed ? API_EUNAVAILABLE
			  : actors__ask(c, post_addr(post_id), POST_T_COMMENTS,
				w.bytes, w.length, comments_step, op);
	wire_free(&w);
	if (rc != 0) {
		free(op);
		return rc;
	}
	actors__call_begin(c);
	return API_OK;
}
