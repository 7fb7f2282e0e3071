/*
 * search_fuzz.c — libFuzzer target for every decoder of actors/engage.h:
 * the search index snapshot and message payloads, and the snapshots of
 * stories, seen marks, the inbox, the stream hub, presence, rate buckets
 * and idempotency tables, plus the inbox event and stream request and
 * message payloads, and search/inbox cursors.
 *
 * Input: byte 0 picks a decoder (low 4 bits) and a mode (bit 4). Mode 0
 * feeds the rest of the input to engage_unpack and the decoder as is.
 * Mode 1 starts from a valid encoding of a small state built here and
 * overwrites bytes of it with (position, value) pairs from the input, so
 * the fuzzer explores near-valid snapshots without a seed corpus.
 *
 * Properties checked (abort on violation): a decoder either refuses or
 * yields a state whose encoding decodes again to a state with the same
 * encoding (canonical round trip); nothing leaks, overflows or trips an
 * assert (ASan/UBSan and ACTORS_ASSERT).
 */
#include "actors/engage.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define T0 1717200000000ull

enum {
	D_STORIES,
	D_SEEN,
	D_INBOX,
	D_STREAM,
	D_PRESENCE,
	D_RATE,
	D_IDEM,
	D_SEARCH,
	D_INBOX_EVENT,
	D_STREAM_REQUEST,
	D_STREAM_MESSAGE,
	D_SEARCH_MESSAGE,
	D_CURSORS,
	D_COUNT,
};

typedef struct buffer {
	msgpack_sbuffer sb;
	msgpack_packer pk;
} buffer;

static void
buffer_init(buffer *b)
{
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void
require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "search_fuzz: %s\n", what);
		abort();
	}
}

static void
noop_deliver(void *arg, const inbox_stream_subscriber *to,
	const inbox_stream_event *ev)
{
	(void)arg;
	(void)to;
	(void)ev;
}

/* ---- one decode, encode, decode, encode cycle per state kind ------------ */

/* Decodes obj as kind; on success encodes it into out. Returns the
 * decoder's code. */
static int
decode_encode(int kind, const msgpack_object *obj, buffer *out)
{
	int rc = API_EINVALID;
	switch (kind) {
	case D_STORIES: {
		stories s;
		rc = stories_decode(&s, obj);
		if (rc == 0)
			require(stories_encode(&s, &out->pk) == 0, "encode");
		break;
	}
	case D_SEEN: {
		stories_seen v;
		stories_seen_init(&v);
		rc = stories_seen_decode(&v, obj);
		if (rc == 0)
			require(stories_seen_encode(&v, &out->pk) == 0, "encode");
		stories_seen_free(&v);
		break;
	}
	case D_INBOX: {
		inbox ib;
		inbox_init(&ib);
		rc = inbox_decode(&ib, obj);
		if (rc == 0) {
			require(inbox_encode(&ib, &out->pk) == 0, "encode");
			msgpack_sbuffer scratch;
			msgpack_sbuffer_init(&scratch);
			msgpack_packer pk;
			msgpack_packer_init(&pk, &scratch, msgpack_sbuffer_write);
			require(inbox_list_pack(&ib, 0, 50, NULL, &pk) == 0,
				"list");
			msgpack_sbuffer_destroy(&scratch);
		}
		inbox_free(&ib);
		break;
	}
	case D_STREAM: {
		inbox_stream s;
		inbox_stream_init(&s);
		rc = inbox_stream_decode(&s, obj);
		if (rc == 0) {
			require(inbox_stream_encode(&s, &out->pk) == 0, "encode");
			/* a restored hub must serve resumes and publishes */
			require(inbox_stream_subscribe(&s,
					rt_addr_make(RT_KIND_INBOX, 1), 1, true,
					s.last_seq > 3 ? s.last_seq - 3 : 0,
					noop_deliver, NULL) == 0,
				"subscribe");
		}
		inbox_stream_free(&s);
		break;
	}
	case D_RATE: {
		rate_state s;
		rc = rate_decode(&s, obj);
		if (rc == 0)
			require(rate_encode(&s, &out->pk) == 0, "encode");
		break;
	}
	case D_IDEM: {
		idem_table t;
		idem_init(&t);
		rc = idem_decode(&t, obj);
		if (rc == 0)
			require(idem_encode(&t, &out->pk) == 0, "encode");
		idem_free(&t);
		break;
	}
	case D_SEARCH: {
		search_index *ix = NULL;
		rc = search_index_decode(obj, &ix);
		if (rc == 0)
			require(search_index_encode(ix, &out->pk) == 0, "encode");
		search_index_destroy(ix);
		break;
	}
	default:
		abort();
	}
	return rc;
}

/* Presence sets encode in slot order, which depends on insertion order:
 * compare them as sets. */
static void
presence_cycle(const msgpack_object *obj)
{
	inbox_presence p;
	inbox_presence_init(&p);
	if (inbox_presence_decode(&p, obj) == 0) {
		buffer b;
		buffer_init(&b);
		require(inbox_presence_encode(&p, &b.pk) == 0, "encode");
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		require(engage_unpack(b.sb.data, b.sb.size, &u) == 0, "unpack");
		inbox_presence q;
		inbox_presence_init(&q);
		require(inbox_presence_decode(&q, &u.data) == 0, "redecode");
		require(q.count == p.count, "presence count");
		inbox_presence_free(&q);
		msgpack_unpacked_destroy(&u);
		msgpack_sbuffer_destroy(&b.sb);
	}
	inbox_presence_free(&p);
}

static void
state_cycle(int kind, const msgpack_object *obj)
{
	if (kind == D_PRESENCE) {
		presence_cycle(obj);
		return;
	}
	buffer first, second;
	buffer_init(&first);
	buffer_init(&second);
	if (decode_encode(kind, obj, &first) == 0) {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		require(engage_unpack(first.sb.data, first.sb.size, &u) == 0,
			"own encoding unpacks");
		require(decode_encode(kind, &u.data, &second) == 0,
			"own encoding decodes");
		require(first.sb.size == second.sb.size &&
				memcmp(first.sb.data, second.sb.data,
					first.sb.size) == 0,
			"canonical round trip");
		msgpack_unpacked_destroy(&u);
	}
	msgpack_sbuffer_destroy(&first.sb);
	msgpack_sbuffer_destroy(&second.sb);
}

/* ---- payloads ----------------------------------------------------------- */

static void
payload_cycle(int kind, const msgpack_object *obj, uint8_t selector)
{
	switch (kind) {
	case D_INBOX_EVENT: {
		inbox_event ev;
		if (inbox_event_decode(obj, &ev) == 0) {
			inbox ib;
			inbox_init(&ib);
			bool added;
			int rc = inbox_add(&ib, &ev, T0, NULL, &added);
			require(rc == 0 || ev.actor_user_id == ev.target_user_id,
				"a decoded event is accepted unless self");
			inbox_free(&ib);
		}
		break;
	}
	case D_STREAM_REQUEST: {
		inbox_stream_request r;
		if (inbox_stream_request_decode(obj, &r) == 0) {
			inbox_stream s;
			inbox_stream_init(&s);
			(void)inbox_stream_apply(&s,
				rt_addr_make(RT_KIND_INBOX, 7), &r, noop_deliver,
				NULL);
			inbox_stream_free(&s);
		}
		break;
	}
	case D_STREAM_MESSAGE: {
		uint64_t sub, seq;
		api_event_type type;
		const msgpack_object *d;
		(void)inbox_stream_message_decode(obj, &sub, &type, &seq, &d);
		break;
	}
	case D_SEARCH_MESSAGE: {
		search_message m;
		uint32_t type = SEARCH_T_POST_INDEX + selector % 6u;
		if (search_message_decode(type, obj, &m) != 0)
			break;
		search_index *ix;
		require(search_index_create(0, 1, &ix) == 0, "create");
		if (type == SEARCH_T_QUERY) {
			char q[API_SEARCH_QUERY_BYTES_MAX + 1];
			char cursor[SEARCH_CURSOR_BYTES];
			if (m.text_length > 0)
				memcpy(q, m.text, m.text_length);
			q[m.text_length] = '\0';
			if (m.cursor != NULL)
				memcpy(cursor, m.cursor, m.cursor_length);
			cursor[m.cursor_length] = '\0';
			buffer b;
			buffer_init(&b);
			(void)search_index_query_pack(ix, m.query_type, q, m.limit,
				m.cursor != NULL ? cursor : NULL, &b.pk);
			msgpack_sbuffer_destroy(&b.sb);
		} else {
			(void)search_index_apply(ix, &m);
		}
		search_index_destroy(ix);
		break;
	}
	default:
		abort();
	}
}

/* Cursors are opaque strings from clients: any text must be refused or
 * page correctly. */
static void
cursor_cycle(const uint8_t *data, size_t size)
{
	char text[64];
	size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	search_index *ix;
	require(search_index_create(0, 1, &ix) == 0, "create");
	require(search_index_user(ix, 1, "ann", 5) == 0, "user");
	require(search_index_user(ix, 2, "anna", 9) == 0, "user");
	const char *keys[] = {"tx"};
	require(search_index_post(ix, 10, keys, 1) == 0, "post");
	search_hit hits[API_PAGE_LIMIT_MAX];
	uint32_t count;
	char next[SEARCH_CURSOR_BYTES];
	(void)search_index_query(ix, API_SEARCH_USERS, "an", 1, text, hits,
		&count, next);
	(void)search_index_query(ix, API_SEARCH_USERS, "anna", 1, text, hits,
		&count, next);
	(void)search_index_query(ix, API_SEARCH_TAGS, "x", 1, text, hits,
		&count, next);
	search_index_destroy(ix);
	inbox ib;
	inbox_init(&ib);
	buffer b;
	buffer_init(&b);
	(void)inbox_list_pack(&ib, 0, 1, text, &b.pk);
	msgpack_sbuffer_destroy(&b.sb);
	inbox_free(&ib);
}

/* ---- mode 1: valid states to mutate ------------------------------------- */

static void
build_valid(int kind, buffer *b)
{
	switch (kind) {
	case D_STORIES: {
		stories s;
		stories_init(&s);
		stories_add(&s, 10, 20, 0, T0, NULL);
		stories_add(&s, 11, 21, 60, T0, NULL);
		stories_encode(&s, &b->pk);
		break;
	}
	case D_SEEN: {
		stories_seen v;
		stories_seen_init(&v);
		stories_seen_mark_story(&v, 10, T0);
		stories_seen_mark_story(&v, 12, T0 + 1);
		stories_seen_encode(&v, &b->pk);
		stories_seen_free(&v);
		break;
	}
	case D_INBOX: {
		inbox ib;
		inbox_init(&ib);
		for (uint64_t i = 1; i <= 3; i++) {
			inbox_event ev = {inbox_event_id(INBOX_TYPE_LIKE, i + 1,
						  9, 0),
				i + 1, 1, 9, 0, T0, INBOX_TYPE_LIKE};
			bool added;
			inbox_add(&ib, &ev, T0 + i, NULL, &added);
		}
		inbox_mark_read(&ib, 1);
		inbox_encode(&ib, &b->pk);
		inbox_free(&ib);
		break;
	}
	case D_STREAM: {
		inbox_stream s;
		inbox_stream_init(&s);
		const unsigned char d[] = {0x92, 0x01, 0xa1, 'x'};
		inbox_stream_subscribe(&s, rt_addr_make(RT_KIND_INBOX, 3), 4,
			false, 0, noop_deliver, NULL);
		for (int i = 0; i < 3; i++)
			inbox_stream_publish(&s, API_EVENT_FEED_POST, d, sizeof d,
				0, noop_deliver, NULL, NULL);
		inbox_stream_encode(&s, &b->pk);
		inbox_stream_free(&s);
		break;
	}
	case D_PRESENCE: {
		inbox_presence p;
		inbox_presence_init(&p);
		inbox_presence_set(&p, 5, true);
		inbox_presence_set(&p, 9, true);
		inbox_presence_encode(&p, &b->pk);
		inbox_presence_free(&p);
		break;
	}
	case D_RATE: {
		rate_state s;
		rate_init(&s);
		api_rate cfg[RATE_ACTIONS_COUNT];
		rate_defaults(cfg);
		rate_result r;
		rate_take(&s, RATE_ACTION_POST, &cfg[RATE_ACTION_POST], T0, &r);
		rate_encode(&s, &b->pk);
		break;
	}
	case D_IDEM: {
		idem_table t;
		idem_init(&t);
		uint8_t d[IDEM_DIGEST_BYTES] = {1, 2, 3};
		idem_outcome o;
		idem_begin(&t, "a", d, T0, 0, &o);
		idem_finish(&t, "a", d, 0, (const unsigned char[]){0x80}, 1);
		idem_begin(&t, "b", d, T0, 0, &o);
		idem_encode(&t, &b->pk);
		idem_free(&t);
		break;
	}
	case D_SEARCH: {
		search_index *ix;
		search_index_create(0, 1, &ix);
		search_index_user(ix, 1, "ann", 3);
		search_index_user(ix, 2, "bo", 4);
		const char *keys[] = {"tsun", "wsun"};
		search_index_post(ix, 7, keys, 2);
		search_index_post(ix, 8, keys, 2);
		search_index_encode(ix, &b->pk);
		search_index_destroy(ix);
		break;
	}
	case D_INBOX_EVENT: {
		inbox_event ev = {5, 2, 1, 9, 0, T0, INBOX_TYPE_FOLLOW};
		inbox_event_encode(&ev, &b->pk);
		break;
	}
	case D_STREAM_REQUEST: {
		inbox_stream_request r = {INBOX_STREAM_OP_SUBSCRIBE, 3, 1, true};
		inbox_stream_request_encode(&r, &b->pk);
		break;
	}
	case D_STREAM_MESSAGE: {
		inbox_stream_event ev = {API_EVENT_STORY, 4,
			(const unsigned char[]){0x80}, 1};
		inbox_stream_message_encode(9, &ev, &b->pk);
		break;
	}
	case D_SEARCH_MESSAGE: {
		search_terms t;
		search_terms_init(&t);
		search_terms_from_caption(&t, "#a bb");
		search_post_message_encode(5, &t, search_shard_of("ta", 2),
			&b->pk);
		break;
	}
	default:
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int kind = (data[0] & 0x0f) % D_COUNT;
	bool mutate = (data[0] & 0x10) != 0;
	uint8_t selector = data[0] >> 5;
	data++;
	size--;
	if (kind == D_CURSORS) {
		cursor_cycle(data, size);
		return 0;
	}
	buffer valid;
	buffer_init(&valid);
	const uint8_t *bytes = data;
	size_t length = size;
	if (mutate) {
		build_valid(kind, &valid);
		/* (position, value) pairs; a trailing odd byte truncates. */
		for (size_t i = 0; i + 1 < size; i += 2)
			valid.sb.data[data[i] % valid.sb.size] = (char)data[i + 1];
		if (size % 2 == 1 && valid.sb.size > 0)
			valid.sb.size -= data[size - 1] % valid.sb.size;
		bytes = (const uint8_t *)valid.sb.data;
		length = valid.sb.size;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	if (engage_unpack(bytes, length, &u) == 0) {
		if (kind <= D_SEARCH)
			state_cycle(kind, &u.data);
		else
			payload_cycle(kind, &u.data, selector);
	}
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&valid.sb);
	return 0;
}
