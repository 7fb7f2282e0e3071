/*
 * actors_engage_search_actor_test.c — the search actor kind on a runtime.
 *
 * Goal: users and posts indexed by plain sends to the shards the routing
 * helpers name can be found by an ask to the one shard search_query_shard
 * names, with the core's reply format; malformed messages are dropped
 * (or answered API_EINVALID when asked) without harming the shard; and
 * after every shard is passivated (its snapshot saved) a fresh runtime
 * over the same store answers the same queries (rebuilt from state).
 *
 * Method: a deterministic runtime with the runtime tests' in-memory
 * store; an inbox asks queries and waits for replies, which run the
 * scheduler in deterministic mode.
 */
#include "actors/engage.h"
#include "tests/test.h"
#include "tests/unit/runtime_testkit.h"

static rt_runtime *
search_runtime(tk_store *store)
{
	rt_runtime *rt = tk_runtime(true, 7, 1);
	rt_set_store(rt, &tk_store_ops, store);
	CHECK_EQ(rt_register_kind(rt, SEARCH_KIND, &search_actor_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	return rt;
}

static void
send_payload(rt_runtime *rt, uint32_t shard, uint32_t type,
	const msgpack_sbuffer *sb)
{
	CHECK_EQ(tk_send(rt, search_shard_addr(shard), type, sb->data,
			 (uint32_t)sb->size),
		0);
}

static void
index_user(rt_runtime *rt, uint64_t id, const char *name, uint64_t followers)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(search_user_message_encode(id, name, followers, 0, &pk), 0);
	uint32_t shards[3];
	uint32_t n = search_user_shards(name, shards);
	for (uint32_t i = 0; i < n; i++)
		send_payload(rt, shards[i], SEARCH_T_USER_UPSERT, &sb);
	msgpack_sbuffer_destroy(&sb);
}

static void
index_post(rt_runtime *rt, uint64_t post_id, const char *caption)
{
	search_terms t;
	search_terms_init(&t);
	search_terms_from_caption(&t, caption);
	uint32_t shards[SEARCH_POST_TERMS_MAX];
	uint32_t n = search_terms_shards(&t, shards);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_sbuffer_clear(&sb);
		CHECK_EQ(search_post_message_encode(post_id, &t, shards[i], &pk),
			0);
		send_payload(rt, shards[i], SEARCH_T_POST_INDEX, &sb);
	}
	msgpack_sbuffer_destroy(&sb);
}

typedef struct answer {
	int code;
	uint32_t count;
	uint64_t ids[API_PAGE_LIMIT_MAX];
	bool has_next;
} answer;

/* Reads an id string at key of an item map. */
static uint64_t
item_id(const msgpack_object *item, const char *key)
{
	CHECK(item->type == MSGPACK_OBJECT_MAP);
	for (uint32_t i = 0; i < item->via.map.size; i++) {
		const msgpack_object_kv *kv = &item->via.map.ptr[i];
		if (kv->key.via.str.size == strlen(key) &&
			memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0) {
			char text[32];
			CHECK(kv->val.type == MSGPACK_OBJECT_STR &&
				kv->val.via.str.size < sizeof text);
			memcpy(text, kv->val.via.str.ptr, kv->val.via.str.size);
			text[kv->val.via.str.size] = '\0';
			return strtoull(text, NULL, 10);
		}
	}
	CHECK_MSG(false, "no %s in item", key);
	return 0;
}

static answer
ask_payload(rt_runtime *rt, uint32_t shard, const void *payload,
	size_t length, api_search_type type)
{
	rt_inbox *in;
	CHECK_EQ(rt_inbox_create(rt, NULL, NULL, &in), 0);
	rt_message *m = rt_message_alloc(rt, SEARCH_T_QUERY, (uint32_t)length);
	CHECK(m != NULL);
	memcpy(m->payload, payload, length);
	uint64_t correlation;
	CHECK_EQ(rt_inbox_ask(in, search_shard_addr(shard), m, 10000,
			 &correlation),
		0);
	rt_message *reply = rt_inbox_wait(in, 10000);
	CHECK(reply != NULL);
	CHECK(reply->flags & RT_MESSAGE_F_REPLY);
	CHECK_EQ_U64(reply->correlation, correlation);
	actors__reply_header h;
	CHECK(reply->size >= sizeof h);
	memcpy(&h, reply->payload, sizeof h);
	answer a = {.code = h.code};
	size_t body_at = sizeof h + h.detail_length;
	CHECK(body_at <= reply->size);
	if (h.code == 0) {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		CHECK_EQ(engage_unpack(reply->payload + body_at,
				 reply->size - body_at, &u),
			0);
		const msgpack_object *body = &u.data;
		CHECK(body->type == MSGPACK_OBJECT_MAP &&
			body->via.map.size == 2);
		const msgpack_object *items = &body->via.map.ptr[0].val;
		a.count = items->via.array.size;
		for (uint32_t i = 0; i < a.count; i++)
			a.ids[i] = item_id(&items->via.array.ptr[i],
				type == API_SEARCH_USERS ? "user_id" : "post_id");
		a.has_next = body->via.map.ptr[1].val.type ==
			MSGPACK_OBJECT_STR;
		msgpack_unpacked_destroy(&u);
	}
	rt_message_free(rt, reply);
	rt_inbox_destroy(in);
	return a;
}

static answer
ask(rt_runtime *rt, api_search_type type, const char *q, uint32_t limit)
{
	uint32_t shard;
	CHECK_EQ(search_query_shard(type, q, &shard), 0);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(search_query_message_encode(type, q, limit, NULL, &pk), 0);
	answer a = ask_payload(rt, shard, sb.data, sb.size, type);
	msgpack_sbuffer_destroy(&sb);
	return a;
}

static void
check_answers(rt_runtime *rt)
{
	answer a = ask(rt, API_SEARCH_USERS, "li", 10);
	CHECK_EQ(a.code, 0);
	CHECK_EQ(a.count, 3);
	CHECK_EQ_U64(a.ids[0], 1); /* "li" exactly, 50 followers */
	CHECK_EQ_U64(a.ids[1], 3); /* lina, 900 */
	CHECK_EQ_U64(a.ids[2], 2); /* lily, 10 */
	a = ask(rt, API_SEARCH_USERS, "lin", 1);
	CHECK_EQ(a.count, 1);
	CHECK_EQ_U64(a.ids[0], 3);
	CHECK(!a.has_next);
	a = ask(rt, API_SEARCH_USERS, "l", 1);
	CHECK_EQ_U64(a.ids[0], 3);
	CHECK(a.has_next);
	a = ask(rt, API_SEARCH_USERS, "lily", 10);
	CHECK_EQ(a.count, 1);
	a = ask(rt, API_SEARCH_TAGS, "#Rain", 10);
	CHECK_EQ(a.count, 2);
	CHECK_EQ_U64(a.ids[0], 202);
	CHECK_EQ_U64(a.ids[1], 101);
	a = ask(rt, API_SEARCH_POSTS, "umbrella", 10);
	CHECK_EQ(a.count, 1);
	CHECK_EQ_U64(a.ids[0], 202);
}

TEST(actors_engage_search_actor_index_query_restart)
{
	static tk_store store;
	tk_store_init(&store);
	rt_runtime *rt = search_runtime(&store);
	index_user(rt, 1, "li", 50);
	index_user(rt, 2, "lily", 10);
	index_user(rt, 3, "lina", 900);
	index_post(rt, 101, "#rain again");
	index_post(rt, 202, "new umbrella #RAIN");
	rt_det_run_until_idle(rt, 0);
	check_answers(rt);
	/* Garbage is dropped; the shard keeps answering. */
	uint32_t shard;
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "li", &shard), 0);
	const unsigned char junk[] = {0x93, 0xc1, 0x00};
	CHECK_EQ(tk_send(rt, search_shard_addr(shard), SEARCH_T_USER_UPSERT,
			 junk, sizeof junk),
		0);
	CHECK_EQ(tk_send(rt, search_shard_addr(shard), 12345, junk, 1), 0);
	rt_det_run_until_idle(rt, 0);
	answer bad = ask_payload(rt, shard, junk, sizeof junk,
		API_SEARCH_USERS);
	CHECK_EQ(bad.code, API_EINVALID);
	check_answers(rt);
	/* Every shard is saved at stop; a new node reloads them. */
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
	CHECK(store.saves > 0);
	rt = search_runtime(&store);
	check_answers(rt);
	CHECK(store.loads_found > 0);
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
	tk_store_free(&store);
}
