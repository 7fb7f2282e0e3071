/*
 * actors/search_actor.c — the search actor kind (SEARCH_KIND): one actor
 * per shard, addressed by search_shard_addr, holding that shard's
 * search_index.
 *
 * Messages (payloads are msgpack, see engage.h): SEARCH_T_POST_INDEX,
 * SEARCH_T_POST_UNINDEX, SEARCH_T_USER_UPSERT, SEARCH_T_USER_REMOVE as
 * plain sends from post and user actors; SEARCH_T_QUERY as an ask from
 * the client layer, answered with actors__reply (code, detail, body
 * {items, next_cursor}). A malformed update is dropped (an ask gets
 * API_EINVALID).
 *
 * Invariants: the index only ever holds keys of this actor's shard (its
 * id names the shard); every applied update marks the actor dirty so the
 * next checkpoint snapshots it.
 *
 * What it deliberately does not do: journal. The index is derived data:
 * after a crash it is what the last snapshot held, plus whatever the
 * post and user actors send again (their updates are idempotent).
 */
#include "actors/engage.h"

#include <stdlib.h>

typedef struct search_actor {
	search_index *index; /* owned; NULL until activated or decoded */
} search_actor;

static int
search_on_activate(rt_actor *self, void *state, bool fresh)
{
	search_actor *sa = state;
	(void)fresh;
	uint32_t shard;
	if (search_addr_shard(rt_self(self), &shard) != 0)
		return RT_EINVAL;
	if (sa->index != NULL)
		return search_index_shard(sa->index) == shard ? 0 : RT_ECORRUPT;
	return search_index_create(shard, SEARCH_SHARDS, &sa->index) == 0
		? 0
		: RT_ENOMEM;
}

static void
search_answer_query(rt_actor *self, const search_index *ix,
	const rt_message *m, const search_message *q)
{
	char query[API_SEARCH_QUERY_BYTES_MAX + 1];
	char cursor[SEARCH_CURSOR_BYTES];
	ACTORS_ASSERT(q->text_length <= API_SEARCH_QUERY_BYTES_MAX);
	ACTORS_ASSERT(q->cursor_length < SEARCH_CURSOR_BYTES);
	if (q->text_length > 0)
		memcpy(query, q->text, q->text_length);
	query[q->text_length] = '\0';
	if (q->cursor != NULL)
		memcpy(cursor, q->cursor, q->cursor_length);
	cursor[q->cursor_length] = '\0';
	actors__body body;
	actors__body_init(&body);
	int rc = search_index_query_pack(ix, q->query_type, query, q->limit,
		q->cursor != NULL ? cursor : NULL, &body.packer);
	if (rc == 0)
		actors__reply(self, m, API_OK, NULL, body.buffer.data,
			body.buffer.size);
	else
		actors__reply(self, m, rc, "bad search query or cursor", NULL,
			0);
	actors__body_free(&body);
}

static void
search_on_message(rt_actor *self, void *state, const rt_message *m)
{
	search_actor *sa = state;
	ACTORS_ASSERT(sa->index != NULL);
	if (m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))
		return; /* it asks nobody */
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	search_message msg;
	int rc = engage_unpack(m->payload, m->size, &u);
	if (rc == 0)
		rc = search_message_decode(m->type, &u.data, &msg);
	if (rc == 0 && m->type == SEARCH_T_QUERY) {
		search_answer_query(self, sa->index, m, &msg);
	} else {
		if (rc == 0)
			rc = search_index_apply(sa->index, &msg);
		if (rc == 0)
			rt_mark_dirty(self);
		actors__reply(self, m, rc, NULL, NULL, 0);
	}
	msgpack_unpacked_destroy(&u);
}

static int
search_encode_state(const void *state, rt_buffer *out)
{
	const search_actor *sa = state;
	ACTORS_ASSERT(sa->index != NULL);
	actors__body body;
	actors__body_init(&body);
	int rc = search_index_encode(sa->index, &body.packer);
	if (rc == 0)
		rc = rt_buffer_append(out, body.buffer.data, body.buffer.size);
	else
		rc = RT_ENOMEM;
	actors__body_free(&body);
	return rc;
}

static int
search_decode_state(void *state, const void *bytes, size_t length)
{
	search_actor *sa = state;
	ACTORS_ASSERT(sa->index == NULL);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0)
		rc = search_index_decode(&u.data, &sa->index);
	msgpack_unpacked_destroy(&u);
	if (rc == API_EUNAVAILABLE)
		return RT_ENOMEM;
	return rc == 0 ? 0 : RT_ECORRUPT;
}

static void
search_free_state(void *state)
{
	search_actor *sa = state;
	search_index_destroy(sa->index);
	sa->index = NULL;
}

const rt_actor_ops search_actor_ops = {
	.name = "search",
	.state_size = sizeof(search_actor),
	.on_activate = search_on_activate,
	.on_message = search_on_message,
	.encode_state = search_encode_state,
	.decode_state = search_decode_state,
	.free_state = search_free_state,
};
