/*
 * actors/stream_client.c — live streams on an api_client: api_stream_open,
 * api_stream_ack, api_stream_close, and the dispatch of stream events
 * that user actors send to the client's inbox.
 *
 * A stream is a session: the client's inbox address and a random 64-bit
 * subscription id, subscribed at the user's actor (USER_T_STREAM). The
 * actor sends every event as a plain ACTORS_T_STREAM_EVENT message to
 * the inbox; api_client_poll hands it here (the client's plain-message
 * hook), and the stream's callback runs on the caller's thread.
 *
 * Invariants: a client's streams are found by subscription id in one
 * open-addressing table, so an event for a stream already closed (or of
 * another process that used this inbox address before) is dropped; after
 * api_stream_close no callback names the stream; acks go out in batches
 * of STREAM_ACK_EVERY, far below the actor's cut-off bound; a stream's
 * callback sees seqs one by one, each once: position + 1 next, or a
 * RESYNC. An event at or below the position is a second copy (after a
 * renewal) and dropped; one past position + 1 means some were lost on
 * the way (events travel as plain messages, and a node's link may lose
 * them), so it is dropped too and the stream renews from its position
 * at once: the actor sends them all again.
 *
 * Renewal: the actor keeps its sessions in memory, so one that moves to
 * another node, restarts, or loses them otherwise would leave the stream
 * open and silent for ever, and an event lost at the tail would never
 * be noticed. api_stream_renew sends the actor the session's position;
 * a session it no longer has is subscribed again from there (replay or
 * RESYNC), one that is behind gets what followed, one that is up to
 * date costs nothing more.
 *
 * What it deliberately does not do: hold events (the user's actor does,
 * for resume), reconnect (the caller reopens with since after a CUT_OFF).
 */
#include "actors/engage.h"

#include <stdlib.h>

/* Acks a stream batches before sending one: 1/16 of the events a
 * subscriber may leave unacked, so batching never gets one cut off. */
#define STREAM_ACK_EVERY (INBOX_STREAM_UNACKED_MAX / 16u)
/* First table size (doubles; kept at most half full). */
#define STREAM_TABLE_START 16u

struct api_stream {
	api_client *c;
	uint64_t user_id;
	uint64_t subscription_id;
	api_stream_callback cb;
	void *arg;
	bool closed;        /* no more events (cut off or refused) */
	bool actor_removed; /* the actor dropped the session itself */
	bool positioned;    /* position is known */
	bool gap_renewed;   /* renewed at gap_position for a gap */
	uint64_t position;  /* newest seq delivered, or where it stands */
	uint64_t gap_position;
	uint64_t acked;     /* newest seq the caller acked */
	uint64_t acked_sent; /* newest ack sent to the actor */
};

typedef struct stream_table {
	uint32_t count;
	uint32_t capacity;     /* power of two */
	api_stream **slots;    /* NULL: empty */
} stream_table;

/* {"reason": "unavailable"}: a subscribe the actor refused or never
 * answered. */
static const unsigned char reason_unavailable[] = {0x81, 0xa6, 'r', 'e',
	'a', 's', 'o', 'n', 0xab, 'u', 'n', 'a', 'v', 'a', 'i', 'l', 'a', 'b',
	'l', 'e'};

const char *
api_event_type_name(api_event_type type)
{
	switch (type) {
	case API_EVENT_FEED_POST: return "feed.post";
	case API_EVENT_NOTIFICATION: return "notification";
	case API_EVENT_STORY: return "story";
	case API_EVENT_POST_DELETED: return "post.deleted";
	case API_EVENT_POST_UPDATED: return "post.updated";
	case API_EVENT_RESYNC: return "resync";
	case API_EVENT_CUT_OFF: return "cut_off";
	}
	return NULL;
}

/* ---- the table -------------------------------------------------------------- */

static uint32_t
table_home(const stream_table *t, uint64_t id)
{
	return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) &
		(t->capacity - 1u);
}

static uint32_t
table_probe(const stream_table *t, uint64_t id)
{
	uint32_t i = table_home(t, id);
	while (t->slots[i] != NULL && t->slots[i]->subscription_id != id)
		i = (i + 1u) & (t->capacity - 1u);
	return i;
}

static api_stream *
table_get(const stream_table *t, uint64_t id)
{
	if (t == NULL || t->count == 0)
		return NULL;
	return t->slots[table_probe(t, id)];
}

static int
table_grow(stream_table *t)
{
	stream_table grown = {0, t->capacity ? t->capacity * 2u
					    : STREAM_TABLE_START, NULL};
	grown.slots = calloc(grown.capacity, sizeof *grown.slots);
	if (grown.slots == NULL)
		return API_EUNAVAILABLE;
	for (uint32_t i = 0; i < t->capacity; i++)
		if (t->slots[i] != NULL)
			grown.slots[table_probe(&grown,
				t->slots[i]->subscription_id)] = t->slots[i];
	grown.count = t->count;
	free(t->slots);
	*t = grown;
	return 0;
}

static int
table_put(stream_table *t, api_stream *s)
{
	if (2u * (t->count + 1u) > t->capacity && table_grow(t) != 0)
		return API_EUNAVAILABLE;
	uint32_t i = table_probe(t, s->subscription_id);
	ACTORS_ASSERT(t->slots[i] == NULL);
	t->slots[i] = s;
	t->count++;
	return 0;
}

/* Backward-shift deletion keeps every probe ending at an empty slot. */
static void
table_remove(stream_table *t, uint64_t id)
{
	if (t == NULL || t->count == 0)
		return;
	uint32_t hole = table_probe(t, id);
	if (t->slots[hole] == NULL)
		return;
	uint32_t mask = t->capacity - 1u;
	t->slots[hole] = NULL;
	t->count--;
	for (uint32_t j = (hole + 1u) & mask; t->slots[j] != NULL;
		j = (j + 1u) & mask) {
		uint32_t k = table_home(t, t->slots[j]->subscription_id);
		bool stays = hole <= j ? (hole < k && k <= j)
				       : (hole < k || k <= j);
		if (!stays) {
			t->slots[hole] = t->slots[j];
			t->slots[j] = NULL;
			hole = j;
		}
	}
}

void
actors__streams_free(void *streams)
{
	stream_table *t = streams;
	if (t == NULL)
		return;
	/* Streams still open belong to their callers (api_stream_close
	 * must come before api_client_destroy); only the table goes. */
	free(t->slots);
	free(t);
}

/* ---- events --------------------------------------------------------------------- */

static void
stream_deliver(api_stream *s, api_event_type type, uint64_t seq,
	const msgpack_object *data)
{
	if (type == API_EVENT_CUT_OFF) {
		s->closed = true; /* before the callback, which may close s */
	} else {
		/* A RESYNC moves the position wherever the actor stands;
		 * anything else at or below it was sent again after a
		 * renewal. */
		if (type != API_EVENT_RESYNC && s->positioned &&
			seq <= s->position)
			return;
		if (type != API_EVENT_RESYNC && s->positioned &&
			seq > s->position + 1u) {
			if (!s->gap_renewed || s->gap_position != s->position) {
				s->gap_renewed = true;
				s->gap_position = s->position;
				api_stream_renew(s);
			}
			return;
		}
		s->positioned = true;
		s->position = seq;
	}
	api_event ev = {type, seq, data};
	s->cb(s->arg, &ev);
}

static void
stream_dispatch(api_client *c, const rt_message *m)
{
	stream_table *t = *actors__client_streams(c);
	if (m->type != ACTORS_T_STREAM_EVENT || t == NULL)
		return;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	uint64_t id, seq;
	api_event_type type;
	const msgpack_object *data;
	if (engage_unpack(m->payload, m->size, &u) == 0 &&
		inbox_stream_message_decode(&u.data, &id, &type, &seq,
			&data) == 0) {
		api_stream *s = table_get(t, id);
		if (s != NULL && !s->closed) {
			if (type == API_EVENT_CUT_OFF)
				s->actor_removed = true;
			stream_deliver(s, type, seq, data);
		}
	}
	msgpack_unpacked_destroy(&u);
}

/* The subscription id rides in the ask's opaque pointer itself, so a
 * subscribe still out when its client is destroyed leaves nothing
 * allocated behind (api_client_destroy runs no continuation). */
static_assert(sizeof(void *) == sizeof(uint64_t), "ids fit a pointer");

/* A subscribe the actor refused, or that timed out: the stream is cut
 * off (the caller reopens, with since, later). */
static void
subscribed(api_client *c, void *opaque, const rt_message *m)
{
	uint64_t id = (uint64_t)(uintptr_t)opaque;
	int code;
	const char *detail;
	size_t detail_length, body_length;
	const void *body;
	actors__reply_parse(m, &code, &detail, &detail_length, &body,
		&body_length);
	api_stream *s = table_get(*actors__client_streams(c), id);
	if (s == NULL || s->closed)
		return;
	if (code == API_OK) {
		/* The answer follows the replayed events and names the seq
		 * the session stands at (none from an older node). */
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		uint64_t seq;
		if (body_length > 0 && engage_unpack(body, body_length, &u) == 0 &&
			engage_get_u64(&u.data, &seq) &&
			(!s->positioned || seq > s->position)) {
			s->positioned = true;
			s->position = seq;
		}
		msgpack_unpacked_destroy(&u);
		return;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	if (engage_unpack(reason_unavailable, sizeof reason_unavailable,
		    &u) == 0)
		stream_deliver(s, API_EVENT_CUT_OFF, 0, &u.data);
	msgpack_unpacked_destroy(&u);
}

/* ---- requests to the user's actor ---------------------------------------------- */

static void
request_encode(wire_writer *w, const api_stream *s, inbox_stream_op op,
	uint64_t seq, bool has_since)
{
	rt_addr session = actors__client_addr(s->c);
	wire_u32(w, session.kind);
	wire_u64(w, session.id);
	wire_u8(w, (uint8_t)op);
	wire_u64(w, s->subscription_id);
	wire_u64(w, seq);
	wire_u8(w, has_since ? 1 : 0);
}

/* A plain request (ack, renewal, unsubscribe); lost ones are harmless (a
 * session that never leaves is cut off once it falls behind; the next
 * renewal follows a lost one). */
static void
request_send(api_stream *s, inbox_stream_op op, uint64_t seq, bool has_since)
{
	api *a = actors__client_api(s->c);
	unsigned char payload[40];
	wire_writer w = {payload, 0, sizeof payload, false};
	request_encode(&w, s, op, seq, has_since);
	ACTORS_ASSERT(!w.failed && w.bytes == payload);
	rt_message *m = rt_message_alloc(a->rt, USER_T_STREAM,
		(uint32_t)w.length);
	if (m == NULL)
		return;
	memcpy(m->payload, payload, w.length);
	(void)rt_send_external(a->rt,
		rt_addr_make(ACTORS_KIND_USER, s->user_id), m);
}

int
api_stream_open(api_client *c, const api_ctx *ctx, uint64_t user_id,
	bool has_since, uint64_t since_seq, api_stream_callback cb, void *arg,
	api_stream **out)
{
	if (c == NULL || cb == NULL || out == NULL || user_id == 0)
		return API_EINVALID;
	if (ctx == NULL || ctx->user_id == 0)
		return API_EUNAUTHORIZED;
	if (ctx->user_id != user_id)
		return API_EFORBIDDEN;
	void **slot = actors__client_streams(c);
	if (*slot == NULL) {
		*slot = calloc(1, sizeof(stream_table));
		if (*slot == NULL)
			return API_EUNAVAILABLE;
		actors__set_plain_hook(c, stream_dispatch);
	}
	stream_table *t = *slot;
	api *a = actors__client_api(c);
	api_stream *s = calloc(1, sizeof *s);
	if (s == NULL)
		return API_EUNAVAILABLE;
	*s = (api_stream){.c = c, .user_id = user_id, .cb = cb, .arg = arg,
		.positioned = has_since, .position = has_since ? since_seq : 0};
	do /* random: never confused with another process's session */
		s->subscription_id = rt_random_u64(a->rt);
	while (s->subscription_id == 0 ||
		table_get(t, s->subscription_id) != NULL);
	if (table_put(t, s) != 0)
		goto fail;
	unsigned char payload[40];
	wire_writer w = {payload, 0, sizeof payload, false};
	request_encode(&w, s, INBOX_STREAM_OP_SUBSCRIBE, since_seq, has_since);
	if (actors__ask(c, rt_addr_make(ACTORS_KIND_USER, user_id),
		    USER_T_STREAM, payload, w.length, subscribed,
		    (void *)(uintptr_t)s->subscription_id) != 0) {
		table_remove(t, s->subscription_id);
		goto fail;
	}
	*out = s;
	return API_OK;
fail:
	free(s);
	return API_EUNAVAILABLE;
}

void
api_stream_ack(api_stream *s, uint64_t seq)
{
	ACTORS_ASSERT(s != NULL);
	if (s->closed || seq <= s->acked)
		return;
	s->acked = seq;
	if (s->acked >= s->acked_sent + STREAM_ACK_EVERY) {
		request_send(s, INBOX_STREAM_OP_ACK, s->acked, false);
		s->acked_sent = s->acked;
	}
}

uint64_t
actors__stream_subscription_id(const api_stream *s)
{
	return s->subscription_id;
}

void
api_stream_renew(api_stream *s)
{
	ACTORS_ASSERT(s != NULL);
	if (s->closed)
		return;
	request_send(s, INBOX_STREAM_OP_RENEW, s->position, s->positioned);
}

void
api_stream_close(api_stream *s)
{
	if (s == NULL)
		return;
	if (!s->actor_removed)
		request_send(s, INBOX_STREAM_OP_UNSUBSCRIBE, 0, false);
	table_remove(*actors__client_streams(s->c), s->subscription_id);
	free(s);
}
