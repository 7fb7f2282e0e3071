/*
 * actors/client.c — api_client: one caller thread's endpoint into the
 * domain. Asks go out through the client's rt_inbox; replies, timeouts
 * and password-pool results come back to it and run their continuation
 * (actors__step) on the caller's thread from api_client_poll/wait.
 *
 * Invariants: every continuation runs exactly once (reply, timeout or
 * undeliverable notice; the runtime guarantees one of them); the pending
 * table maps correlation ids (and pool tokens, top bit set) to
 * continuations; a client is used by one thread only.
 *
 * What it deliberately does not do: block in a call (only
 * api_client_wait blocks), retry (callers decide).
 */
#include "actors/internal.h"

#include <stdlib.h>

/* Pool tokens carry this bit so they never meet a runtime correlation. */
#define CLIENT_TOKEN_BIT (1ull << 63)
/* First size of the pending table (grows by doubling). */
#define CLIENT_PENDING_INITIAL 64u

typedef struct pending_slot {
	uint64_t key; /* 0: empty; ~0: deleted */
	actors__step step;
	void *op;
} pending_slot;

#define SLOT_DELETED UINT64_MAX

struct api_client {
	api *a;
	rt_inbox *inbox;
	pending_slot *slots;
	uint32_t capacity; /* power of two */
	uint32_t used;     /* live + deleted */
	uint32_t live;
	uint32_t calls;    /* api calls in flight */
	uint64_t next_token;
	actors__plain_hook plain_hook;
	void *streams; /* stream_client.c's table; NULL until a stream */
	/* Answers' bodies are unpacked into this zone, cleared after each
	 * callback (a zone made and freed per completion was a malloc and
	 * free of CLIENT_ZONE_CHUNK_BYTES each); NULL: a zone per call.
	 * `completing` > 0 while a callback runs, when a nested completion
	 * (a callback that polls) must not clear it. */
	msgpack_zone *zone;
	uint32_t completing;
	bool packed_bodies; /* api_client_set_packed_bodies */
	/* Messages taken from the inbox in one go and not dispatched yet,
	 * oldest first: a callback that polls (nested) continues here, so
	 * completions keep their arrival order. */
	rt_message *taken;
	/* Usernames resolved by this client (calls.c): a name maps to one
	 * user id for ever, so a repeat lookup needs no ask. NULL until
	 * the first name is kept. */
	struct name_slot *names;
};

/* Names a client keeps, direct-mapped by a hash of the name: the
 * users a node's readers look at by name (Reed98's 962 in
 * DeathStarBench's mix, whose user timelines name a random user each);
 * 40 bytes each. A collision replaces. */
#define CLIENT_NAMES_SLOTS 4096u

typedef struct name_slot {
	uint64_t user_id; /* 0: empty */
	char name[API_USERNAME_BYTES_MAX + 2];
} name_slot;

/* Chunk of the answers' zone: a feed page of 50 items unpacks into
 * about this much. */
#define CLIENT_ZONE_CHUNK_BYTES (64u * 1024u)

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	return x;
}

static int
table_resize(api_client *c, uint32_t capacity)
{
	pending_slot *slots = calloc(capacity, sizeof *slots);
	if (slots == NULL)
		return -1;
	for (uint32_t i = 0; i < c->capacity; i++) {
		pending_slot *s = &c->slots[i];
		if (s->key == 0 || s->key == SLOT_DELETED)
			continue;
		uint32_t j = (uint32_t)mix(s->key) & (capacity - 1);
		while (slots[j].key != 0)
			j = (j + 1) & (capacity - 1);
		slots[j] = *s;
	}
	free(c->slots);
	c->slots = slots;
	c->capacity = capacity;
	c->used = c->live;
	return 0;
}

static int
table_put(api_client *c, uint64_t key, actors__step step, void *op)
{
	ACTORS_ASSERT(key != 0 && key != SLOT_DELETED);
	if ((c->used + 1) * 2 > c->capacity &&
		table_resize(c, c->live * 4 > c->capacity ? c->capacity * 2
							 : c->capacity) != 0)
		return -1;
	uint32_t i = (uint32_t)mix(key) & (c->capacity - 1);
	while (c->slots[i].key != 0 && c->slots[i].key != SLOT_DELETED)
		i = (i + 1) & (c->capacity - 1);
	if (c->slots[i].key == 0)
		c->used++;
	c->slots[i] = (pending_slot){key, step, op};
	c->live++;
	return 0;
}

static bool
table_take(api_client *c, uint64_t key, pending_slot *out)
{
	uint32_t i = (uint32_t)mix(key) & (c->capacity - 1);
	for (uint32_t n = 0; n < c->capacity; n++) {
		pending_slot *s = &c->slots[i];
		if (s->key == 0)
			return false;
		if (s->key == key) {
			*out = *s;
			s->key = SLOT_DELETED;
			s->step = NULL;
			s->op = NULL;
			c->live--;
			return true;
		}
		i = (i + 1) & (c->capacity - 1);
	}
	return false;
}

int
api_client_create(api *a, rt_inbox_notify_callback notify, void *arg,
	api_client **out)
{
	if (a == NULL || out == NULL)
		return API_EINVALID;
	api_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return API_EUNAVAILABLE;
	c->a = a;
	c->slots = calloc(CLIENT_PENDING_INITIAL, sizeof *c->slots);
	if (c->slots == NULL)
		goto fail_slots;
	c->capacity = CLIENT_PENDING_INITIAL;
	if (rt_inbox_create(a->rt, notify, arg, &c->inbox) != 0)
		goto fail_inbox;
	c->zone = msgpack_zone_new(CLIENT_ZONE_CHUNK_BYTES); /* NULL: fine */
	*out = c;
	return API_OK;
fail_inbox:
	free(c->slots);
fail_slots:
	free(c);
	return API_EUNAVAILABLE;
}

void
api_client_destroy(api_client *c)
{
	if (c == NULL)
		return;
	while (c->taken != NULL) {
		rt_message *m = c->taken;
		c->taken = m->next;
		rt_message_free(c->a->rt, m);
	}
	rt_inbox_destroy(c->inbox);
	actors__streams_free(c->streams);
	if (c->zone != NULL)
		msgpack_zone_free(c->zone);
	free(c->names);
	free(c->slots);
	free(c);
}

static name_slot *
name_slot_of(name_slot *names, const char *name, size_t length)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < length; i++)
		h = (h ^ (unsigned char)name[i]) * 0x100000001b3ull;
	return &names[mix(h) & (CLIENT_NAMES_SLOTS - 1)];
}

uint64_t
actors__client_name_get(const api_client *c, const char *name)
{
	size_t length = strlen(name);
	if (c->names == NULL || length > API_USERNAME_BYTES_MAX)
		return 0;
	const name_slot *s = name_slot_of(c->names, name, length);
	return s->user_id != 0 && memcmp(s->name, name, length + 1) == 0
		? s->user_id
		: 0;
}

void
actors__client_name_put(api_client *c, const char *name, uint64_t user_id)
{
	size_t length = strlen(name);
	if (user_id == 0 || length > API_USERNAME_BYTES_MAX)
		return;
	if (c->names == NULL) {
		c->names = calloc(CLIENT_NAMES_SLOTS, sizeof *c->names);
		if (c->names == NULL)
			return; /* no cache: every lookup asks */
	}
	name_slot *s = name_slot_of(c->names, name, length);
	s->user_id = user_id;
	memcpy(s->name, name, length + 1);
}

uint32_t
api_client_pending(const api_client *c)
{
	return c->calls;
}

api *
actors__client_api(const api_client *c)
{
	return c->a;
}

rt_addr
actors__client_addr(const api_client *c)
{
	return rt_inbox_addr(c->inbox);
}

void
actors__set_plain_hook(api_client *c, actors__plain_hook hook)
{
	c->plain_hook = hook;
}

void **
actors__client_streams(api_client *c)
{
	return &c->streams;
}

void
actors__call_begin(api_client *c)
{
	c->calls++;
}

int
actors__ask(api_client *c, rt_addr to, uint32_t type, const void *payload,
	size_t length, actors__step step, void *op)
{
	if (length > RT_MESSAGE_BYTES_MAX)
		return API_EINVALID;
	rt_message *m = rt_message_alloc(c->a->rt, type, (uint32_t)length);
	if (m == NULL)
		return API_EUNAVAILABLE;
	if (length > 0)
		memcpy(m->payload, payload, length);
	uint64_t correlation = 0;
	int rc = rt_inbox_ask(c->inbox, to, m, c->a->cfg.ask_timeout_ms,
		&correlation);
	if (rc != 0)
		return API_EUNAVAILABLE;
	ACTORS_ASSERT(correlation != 0);
	ACTORS_ASSERT((correlation & CLIENT_TOKEN_BIT) == 0);
	if (table_put(c, correlation, step, op) != 0) {
		/* The reply will find no slot and be dropped. */
		return API_EUNAVAILABLE;
	}
	return API_OK;
}

uint64_t
actors__token(api_client *c, actors__step step, void *op)
{
	uint64_t token = CLIENT_TOKEN_BIT | ++c->next_token;
	if (table_put(c, token, step, op) != 0)
		return 0;
	return token;
}

void
actors__token_cancel(api_client *c, uint64_t token)
{
	pending_slot s;
	(void)table_take(c, token, &s);
}

static void
dispatch(api_client *c, rt_message *m)
{
	uint64_t key = m->correlation;
	if (m->type == ACTORS_T_POOL_DONE && !(m->flags & RT_MESSAGE_F_REPLY) &&
		m->size == sizeof(actors__pool_done)) {
		actors__pool_done done;
		memcpy(&done, m->payload, sizeof done);
		key = done.token;
	} else if (!(m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT)) &&
		m->type != RT_TYPE_UNDELIVERABLE) {
		if (c->plain_hook != NULL)
			c->plain_hook(c, m);
		rt_message_free(c->a->rt, m);
		return;
	}
	pending_slot s;
	if (key != 0 && table_take(c, key, &s))
		s.step(c, s.op, m);
	rt_message_free(c->a->rt, m);
}

/* The next message to dispatch: the rest of the last burst taken, else
 * a new burst (every message queued, under one lock). */
static rt_message *
client_next(api_client *c)
{
	if (c->taken == NULL)
		c->taken = rt_inbox_take_all(c->inbox);
	rt_message *m = c->taken;
	if (m != NULL) {
		c->taken = m->next;
		m->next = NULL;
	}
	return m;
}

int
api_client_poll(api_client *c)
{
	int ran = 0;
	rt_message *m;
	while ((m = client_next(c)) != NULL) {
		dispatch(c, m);
		ran++;
	}
	return ran;
}

int
api_client_wait(api_client *c, uint64_t timeout_ms)
{
	if (c->taken != NULL)
		return api_client_poll(c);
	rt_message *m = rt_inbox_wait(c->inbox, timeout_ms);
	if (m == NULL)
		return 0;
	dispatch(c, m);
	return 1 + api_client_poll(c);
}

/* ---- replies and completions -------------------------------------------- */

void
actors__reply_parse(const rt_message *m, int *code, const char **detail,
	size_t *detail_length, const void **body, size_t *body_length)
{
	*detail = NULL;
	*detail_length = 0;
	*body = NULL;
	*body_length = 0;
	if (m->flags & RT_MESSAGE_F_TIMEOUT) {
		*code = API_EUNAVAILABLE;
		*detail = "timed out";
		*detail_length = strlen(*detail);
		return;
	}
	if (m->type == RT_TYPE_UNDELIVERABLE) {
		int32_t rc = RT_EUNAVAILABLE;
		if (m->size >= sizeof rc)
			memcpy(&rc, m->payload, sizeof rc);
		*code = rc == RT_ENOTFOUND ? API_ENOTFOUND : API_EUNAVAILABLE;
		*detail = rt_strerror(rc);
		*detail_length = strlen(*detail);
		return;
	}
	actors__reply_header h;
	if (m->size < sizeof h) {
		*code = API_EINTERNAL;
		return;
	}
	memcpy(&h, m->payload, sizeof h);
	if (h.detail_length > m->size - sizeof h) {
		*code = API_EINTERNAL;
		return;
	}
	*code = h.code;
	*detail = (const char *)m->payload + sizeof h;
	*detail_length = h.detail_length;
	*body = m->payload + sizeof h + h.detail_length;
	*body_length = m->size - sizeof h - h.detail_length;
}

void
actors__complete(api_client *c, api_callback cb, void *arg, int code,
	const char *detail, size_t detail_length, const void *body,
	size_t body_length)
{
	ACTORS_ASSERT(c->calls > 0);
	c->calls--;
	api_result r;
	memset(&r, 0, sizeof r);
	r.code = code;
	char text[ACTORS_DETAIL_BYTES_MAX + 1];
	if (detail != NULL && detail_length > 0) {
		if (detail_length > ACTORS_DETAIL_BYTES_MAX)
			detail_length = ACTORS_DETAIL_BYTES_MAX;
		memcpy(text, detail, detail_length);
		text[detail_length] = '\0';
		r.detail = text;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	msgpack_object object;
	bool shared = c->zone != NULL && c->completing == 0;
	if (body != NULL && body_length > 0 && code == API_OK &&
		c->packed_bodies) {
		r.body_bytes = body;
		r.body_length = body_length;
	} else if (body != NULL && body_length > 0) {
		size_t offset = 0;
		if (shared) {
			if (actors__unpack(body, body_length, c->zone,
				    &object) == API_OK)
				r.body = &object;
		} else if (msgpack_unpack_next(&u, body, body_length,
				   &offset) == MSGPACK_UNPACK_SUCCESS) {
			r.body = &u.data;
		}
		if (r.body != NULL) {
			r.body_bytes = body;
			r.body_length = body_length;
		}
	}
	if (code == API_ERATELIMITED && r.body != NULL) {
		/* The refusing actor's bucket state rides in the body. */
		r.retry_after_ms = (uint64_t)api_body_int(r.body,
			"retry_after_ms", 0);
		r.rate_limit = (uint32_t)api_body_int(r.body, "rate_limit", 0);
		r.rate_remaining = (uint32_t)api_body_int(r.body,
			"rate_remaining", 0);
		r.rate_reset_ms = (uint64_t)api_body_int(r.body,
			"rate_reset_ms", 0);
	}
	c->completing++;
	if (cb != NULL)
		cb(arg, &r);
	c->completing--;
	if (shared)
		msgpack_zone_clear(c->zone);
	msgpack_unpacked_destroy(&u);
}

void
api_client_set_packed_bodies(api_client *c, bool packed)
{
	c->packed_bodies = packed;
}

/* The page packed into one buffer, for a client that keeps bodies
 * packed (the gateway renders them from the bytes). */
static void
page_packed(api_client *c, api_callback cb, void *arg, const void *bytes,
	const actors__span *items, uint32_t count, const char *next_cursor)
{
	size_t total = 32 + (next_cursor != NULL ? strlen(next_cursor) : 0);
	for (uint32_t i = 0; i < count; i++)
		total += items[i].length;
	actors__body b;
	actors__body_init(&b);
	/* one growth at most: the page's size is known */
	if (b.buffer.alloc < total) {
		char *grown = realloc(b.buffer.data, total);
		if (grown != NULL) {
			b.buffer.data = grown;
			b.buffer.alloc = total;
		}
	}
	msgpack_pack_map(&b.packer, 2);
	actors__pack_key(&b.packer, "items");
	msgpack_pack_array(&b.packer, count);
	for (uint32_t i = 0; i < count; i++)
		msgpack_sbuffer_write(&b.buffer,
			(const char *)bytes + items[i].offset,
			items[i].length);
	actors__pack_key(&b.packer, "next_cursor");
	if (next_cursor != NULL)
		actors__pack_str(&b.packer, next_cursor);
	else
		msgpack_pack_nil(&b.packer);
	actors__complete(c, cb, arg, API_OK, NULL, 0, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
}

void
actors__complete_page(api_client *c, api_callback cb, void *arg,
	const void *bytes, const actors__span *items, uint32_t count,
	const char *next_cursor)
{
	ACTORS_ASSERT(c->calls > 0);
	ACTORS_ASSERT(bytes != NULL || count == 0);
	if (c->packed_bodies) {
		page_packed(c, cb, arg, bytes, items, count, next_cursor);
		return;
	}
	bool shared = c->zone != NULL && c->completing == 0;
	msgpack_zone *zone = shared ? c->zone
				    : msgpack_zone_new(CLIENT_ZONE_CHUNK_BYTES);
	msgpack_object *array = NULL;
	msgpack_object_kv *pairs = NULL;
	int code = zone == NULL ? API_EUNAVAILABLE : API_OK;
	if (code == API_OK) {
		array = msgpack_zone_malloc(zone,
			(count ? count : 1) * sizeof *array);
		pairs = msgpack_zone_malloc(zone, 2 * sizeof *pairs);
		if (array == NULL || pairs == NULL)
			code = API_EUNAVAILABLE;
	}
	for (uint32_t i = 0; i < count && code == API_OK; i++)
		code = actors__unpack((const unsigned char *)bytes +
				items[i].offset, items[i].length, zone,
			&array[i]);
	if (code != API_OK) {
		if (zone != NULL && !shared)
			msgpack_zone_free(zone);
		else if (zone != NULL)
			msgpack_zone_clear(zone);
		actors__complete(c, cb, arg, code == API_EINVALID
				? API_EINTERNAL : code,
			"bad page item", 13, NULL, 0);
		return;
	}
	c->calls--;
	pairs[0].key = (msgpack_object){.type = MSGPACK_OBJECT_STR,
		.via.str = {5, "items"}};
	pairs[0].val = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY,
		.via.array = {count, array}};
	pairs[1].key = (msgpack_object){.type = MSGPACK_OBJECT_STR,
		.via.str = {11, "next_cursor"}};
	pairs[1].val = next_cursor != NULL
		? (msgpack_object){.type = MSGPACK_OBJECT_STR,
			  .via.str = {(uint32_t)strlen(next_cursor),
				  next_cursor}}
		: (msgpack_object){.type = MSGPACK_OBJECT_NIL};
	msgpack_object body = {.type = MSGPACK_OBJECT_MAP,
		.via.map = {2, pairs}};
	api_result r;
	memset(&r, 0, sizeof r);
	r.code = API_OK;
	r.body = &body;
	c->completing++;
	if (cb != NULL)
		cb(arg, &r);
	c->completing--;
	if (shared)
		msgpack_zone_clear(zone);
	else
		msgpack_zone_free(zone);
}

void
actors__complete_reply(api_client *c, api_callback cb, void *arg,
	const rt_message *m)
{
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	actors__complete(c, cb, arg, code, detail, detail_length, body,
		body_length);
}

/* ---- body readers (api.h) ---------------------------------------------- */

const msgpack_object *
api_body_get(const msgpack_object *obj, const char *key)
{
	if (obj == NULL || obj->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t n = strlen(key);
	for (uint32_t i = 0; i < obj->via.map.size; i++) {
		const msgpack_object_kv *kv = &obj->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR &&
			kv->key.via.str.size == n &&
			memcmp(kv->key.via.str.ptr, key, n) == 0)
			return &kv->val;
	}
	return NULL;
}

uint64_t
api_body_id(const msgpack_object *obj, const char *key)
{
	const msgpack_object *v = api_body_get(obj, key);
	if (v == NULL || v->type != MSGPACK_OBJECT_STR ||
		v->via.str.size == 0 || v->via.str.size > 20)
		return 0;
	uint64_t id = 0;
	for (uint32_t i = 0; i < v->via.str.size; i++) {
		char ch = v->via.str.ptr[i];
		if (ch < '0' || ch > '9')
			return 0;
		uint64_t d = (uint64_t)(ch - '0');
		if (id > (UINT64_MAX - d) / 10)
			return 0;
		id = id * 10 + d;
	}
	return id;
}

int64_t
api_body_int(const msgpack_object *obj, const char *key, int64_t def)
{
	const msgpack_object *v = api_body_get(obj, key);
	if (v == NULL)
		return def;
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return v->via.u64 > INT64_MAX ? def : (int64_t)v->via.u64;
	if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return v->via.i64;
	return def;
}

bool
api_body_bool(const msgpack_object *obj, const char *key, bool def)
{
	const msgpack_object *v = api_body_get(obj, key);
	if (v == NULL || v->type != MSGPACK_OBJECT_BOOLEAN)
		return def;
	return v->via.boolean;
}

bool
api_body_str(const msgpack_object *obj, const char *key, char *buf,
	size_t size)
{
	const msgpack_object *v = api_body_get(obj, key);
	if (v == NULL || v->type != MSGPACK_OBJECT_STR || size == 0)
		return false;
	size_t n = v->via.str.size < size - 1 ? v->via.str.size : size - 1;
	memcpy(buf, v->via.str.ptr, n);
	buf[n] = '\0';
	return true;
}
