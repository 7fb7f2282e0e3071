/*
 * actors_engage_stories_test.c — stories: lifetime, seen marks, trays.
 *
 * Goal: a story is visible until exactly its expiry and never after
 * (24 h by default, at most 24 h), a story marked seen stays seen, and
 * GET /v1/stories trays come out grouped and ordered as documented;
 * snapshots round-trip and malformed ones are refused.
 *
 * Method: drive the stories module directly with explicit times (the
 * module takes now_ms; no clock is read), pack trays into msgpack and read
 * them back with the same unpacker the actors use.
 */
#include "actors/engage.h"
#include "tests/test.h"

/* A wall time in 2024, far from 0 so no arithmetic hides at the epoch. */
#define T0 1717200000000ull
#define DAY ENGAGE_DAY_MS

typedef struct packed {
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked u;
} packed;

static void
packed_init(packed *p)
{
	msgpack_sbuffer_init(&p->sb);
	msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&p->u);
}

static const msgpack_object *
packed_read(packed *p)
{
	CHECK_EQ(engage_unpack(p->sb.data, p->sb.size, &p->u), 0);
	return &p->u.data;
}

static void
packed_free(packed *p)
{
	msgpack_unpacked_destroy(&p->u);
	msgpack_sbuffer_destroy(&p->sb);
}

static const msgpack_object *
map_get(const msgpack_object *map, const char *key)
{
	CHECK(map->type == MSGPACK_OBJECT_MAP);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR &&
			kv->key.via.str.size == strlen(key) &&
			memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
			return &kv->val;
	}
	return NULL;
}

static uint64_t
map_id(const msgpack_object *map, const char *key)
{
	const msgpack_object *v = map_get(map, key);
	CHECK(v != NULL && v->type == MSGPACK_OBJECT_STR);
	char text[32];
	CHECK(v->via.str.size < sizeof text);
	memcpy(text, v->via.str.ptr, v->via.str.size);
	text[v->via.str.size] = '\0';
	return strtoull(text, NULL, 10);
}

TEST(actors_engage_stories_visible_until_exactly_24h)
{
	stories s;
	stories_init(&s);
	stories_item it;
	CHECK_EQ(stories_add(&s, 11, 21, 0, T0, &it), 0);
	CHECK_EQ_U64(it.expires_at_ms, T0 + DAY);
	CHECK_EQ_U64(stories_next_expiry_ms(&s), T0 + DAY);
	CHECK(stories_visible(&it, T0 + DAY - 1));
	CHECK_EQ(stories_get(&s, 11, T0 + DAY - 1, NULL), 0);
	CHECK_EQ(stories_active_count(&s, T0 + DAY - 1), 1);
	CHECK(!stories_visible(&it, T0 + DAY));
	stories_item gone = {0};
	CHECK_EQ(stories_get(&s, 11, T0 + DAY, &gone), API_EGONE);
	CHECK_EQ_U64(gone.media_id, 21); /* the held item, though gone */
	CHECK_EQ(stories_active_count(&s, T0 + DAY), 0);
	/* Never after, even long after and before any collection. */
	CHECK_EQ(stories_get(&s, 11, T0 + 7 * DAY, NULL), API_EGONE);
	CHECK_EQ(stories_collect_expired(&s, T0 + DAY - 1), 0);
	CHECK_EQ(stories_collect_expired(&s, T0 + DAY), 1);
	CHECK_EQ(stories_get(&s, 11, T0 + DAY, NULL), API_ENOTFOUND);
	CHECK_EQ_U64(stories_next_expiry_ms(&s), UINT64_MAX);
}

TEST(actors_engage_stories_expiry_at_most_24h)
{
	stories s;
	stories_init(&s);
	stories_item it;
	CHECK_EQ(stories_add(&s, 1, 2, 86400, T0, &it), 0);
	CHECK_EQ_U64(it.expires_at_ms, T0 + 86400000ull);
	CHECK_EQ(stories_add(&s, 3, 2, 86401, T0, NULL), API_EINVALID);
	CHECK_EQ(s.count, 1);
	CHECK_EQ(stories_add(&s, 4, 2, 60, T0, &it), 0);
	CHECK(stories_visible(&it, T0 + 59999));
	CHECK(!stories_visible(&it, T0 + 60000));
	CHECK_EQ(stories_add(&s, 0, 2, 0, T0, NULL), API_EINVALID);
	CHECK_EQ(stories_add(&s, 5, 0, 0, T0, NULL), API_EINVALID);
}

TEST(actors_engage_stories_next_expiry_is_earliest)
{
	stories s;
	stories_init(&s);
	CHECK_EQ(stories_add(&s, 10, 1, 3600, T0, NULL), 0);
	CHECK_EQ(stories_add(&s, 20, 1, 60, T0 + 1000, NULL), 0);
	CHECK_EQ(stories_add(&s, 30, 1, 0, T0 + 2000, NULL), 0);
	CHECK_EQ_U64(stories_next_expiry_ms(&s), T0 + 1000 + 60000);
	CHECK_EQ(stories_collect_expired(&s, T0 + 61000), 1);
	CHECK_EQ_U64(stories_next_expiry_ms(&s), T0 + 3600000);
	CHECK_EQ(stories_remove(&s, 10), 0);
	CHECK_EQ(stories_remove(&s, 10), API_ENOTFOUND);
	CHECK_EQ_U64(stories_next_expiry_ms(&s), T0 + 2000 + DAY);
}

TEST(actors_engage_stories_cap_and_redelivery)
{
	stories s;
	stories_init(&s);
	for (uint64_t i = 1; i <= STORIES_ACTIVE_MAX; i++)
		CHECK_EQ(stories_add(&s, i, 1, i == 1 ? 60 : 0, T0, NULL), 0);
	CHECK_EQ(stories_add(&s, 1000, 1, 0, T0 + 1, NULL), API_ERATELIMITED);
	/* A redelivered add of a held story is a no-op, even when full. */
	stories_item it;
	CHECK_EQ(stories_add(&s, 7, 99, 5, T0 + 5, &it), 0);
	CHECK_EQ_U64(it.media_id, 1);
	CHECK_EQ_U64(it.created_at_ms, T0);
	/* Once the short one expires there is room again. */
	CHECK_EQ(stories_add(&s, 1000, 1, 0, T0 + 60000, NULL), 0);
	CHECK_EQ(s.count, STORIES_ACTIVE_MAX);
	CHECK_EQ(stories_get(&s, 1, T0 + 60000, NULL), API_ENOTFOUND);
}

TEST(actors_engage_stories_seen_stays_seen)
{
	stories_seen v;
	stories_seen_init(&v);
	CHECK(!stories_seen_has(&v, 5));
	CHECK_EQ(stories_seen_mark_story(&v, 5, T0), 0);
	CHECK_EQ(stories_seen_mark_story(&v, 5, T0 + 1000), 0);
	CHECK(stories_seen_has(&v, 5));
	CHECK_EQ(stories_seen_mark_story(&v, 0, T0), API_EINVALID);
	/* The mark outlives any story it could mark (created <= T0). */
	CHECK_EQ(stories_seen_collect(&v, T0 + DAY - 1), 0);
	CHECK(stories_seen_has(&v, 5));
	CHECK_EQ(stories_seen_collect(&v, T0 + DAY), 1);
	CHECK(!stories_seen_has(&v, 5));
	stories_seen_free(&v);
}

TEST(actors_engage_stories_seen_cap_drops_oldest_mark)
{
	stories_seen v;
	stories_seen_init(&v);
	for (uint64_t i = 0; i < STORIES_SEEN_MAX; i++)
		CHECK_EQ(stories_seen_mark_story(&v, 1000 + i, T0 + i), 0);
	CHECK_EQ(v.count, STORIES_SEEN_MAX);
	CHECK_EQ(stories_seen_mark_story(&v, 1, T0 + STORIES_SEEN_MAX), 0);
	CHECK_EQ(v.count, STORIES_SEEN_MAX);
	CHECK(stories_seen_has(&v, 1));
	CHECK(!stories_seen_has(&v, 1000));
	CHECK(stories_seen_has(&v, 1001));
	stories_seen_free(&v);
}

TEST(actors_engage_stories_tray_order_and_shape)
{
	/* A: two unseen stories (newest 40); B: newest story overall (50)
	 * but seen; C: one unseen older story (30); D: only expired. */
	stories a, b, c, d;
	stories_init(&a);
	stories_init(&b);
	stories_init(&c);
	stories_init(&d);
	CHECK_EQ(stories_add(&a, 10, 100, 0, T0, NULL), 0);
	CHECK_EQ(stories_add(&a, 40, 400, 0, T0 + 4000, NULL), 0);
	CHECK_EQ(stories_add(&b, 50, 500, 0, T0 + 5000, NULL), 0);
	CHECK_EQ(stories_add(&c, 30, 300, 0, T0 + 3000, NULL), 0);
	CHECK_EQ(stories_add(&d, 5, 50, 1, T0, NULL), 0);
	stories_seen v;
	stories_seen_init(&v);
	CHECK_EQ(stories_seen_mark_story(&v, 50, T0 + 6000), 0);
	CHECK_EQ(stories_seen_mark_story(&v, 10, T0 + 6000), 0);
	stories_author authors[] = {
		{4, "dora", NULL, &d},
		{2, "bob", "/p/b", &b},
		{3, "cleo", NULL, &c},
		{1, "ann", NULL, &a},
	};
	packed p;
	packed_init(&p);
	CHECK_EQ(stories_trays_pack(authors, 4, &v, T0 + 10000, NULL, NULL,
			 &p.pk),
		0);
	const msgpack_object *body = packed_read(&p);
	const msgpack_object *trays = map_get(body, "trays");
	CHECK(trays != NULL && trays->type == MSGPACK_OBJECT_ARRAY);
	CHECK_EQ(trays->via.array.size, 3);
	const uint64_t users[] = {1, 3, 2};
	for (uint32_t i = 0; i < 3; i++) {
		const msgpack_object *user =
			map_get(&trays->via.array.ptr[i], "user");
		CHECK_EQ_U64(map_id(user, "user_id"), users[i]);
	}
	const msgpack_object *items = map_get(&trays->via.array.ptr[0],
		"items");
	CHECK_EQ(items->via.array.size, 2);
	const msgpack_object *first = &items->via.array.ptr[0];
	CHECK_EQ_U64(map_id(first, "story_id"), 40);
	CHECK_EQ_U64(map_id(map_get(first, "media"), "media_id"), 400);
	CHECK(map_get(first, "seen")->via.boolean == false);
	CHECK(map_get(&items->via.array.ptr[1], "seen")->via.boolean);
	const msgpack_object *created = map_get(first, "created_at");
	CHECK(created->type == MSGPACK_OBJECT_STR);
	CHECK_EQ(created->via.str.size, 24);
	CHECK(memcmp(created->via.str.ptr, "2024-06-01T00:00:04.000Z", 24) ==
		0);
	const msgpack_object *expires = map_get(first, "expires_at");
	CHECK(memcmp(expires->via.str.ptr, "2024-06-02T00:00:04.000Z", 24) ==
		0);
	const msgpack_object *b_items = map_get(&trays->via.array.ptr[2],
		"items");
	CHECK(map_get(&b_items->via.array.ptr[0], "seen")->via.boolean);
	packed_free(&p);
	stories_seen_free(&v);
}

static int
media_full(void *arg, msgpack_packer *pk, uint64_t media_id)
{
	(*(int *)arg)++;
	msgpack_pack_map(pk, 2);
	actors__pack_key(pk, "media_id");
	actors__pack_id(pk, media_id);
	actors__pack_key(pk, "status");
	actors__pack_str(pk, "ready");
	return 0;
}

TEST(actors_engage_stories_tray_media_callback_and_limits)
{
	stories s;
	stories_init(&s);
	CHECK_EQ(stories_add(&s, 1, 9, 0, T0, NULL), 0);
	stories_author author = {7, "x", NULL, &s};
	stories_seen v;
	stories_seen_init(&v);
	packed p;
	packed_init(&p);
	int calls = 0;
	CHECK_EQ(stories_trays_pack(&author, 1, &v, T0, media_full, &calls,
			 &p.pk),
		0);
	CHECK_EQ(calls, 1);
	const msgpack_object *trays = map_get(packed_read(&p), "trays");
	const msgpack_object *item = &map_get(&trays->via.array.ptr[0],
		"items")->via.array.ptr[0];
	CHECK(map_get(map_get(item, "media"), "status") != NULL);
	packed_free(&p);
	packed_init(&p);
	CHECK_EQ(stories_trays_pack(&author, STORIES_TRAY_AUTHORS_MAX + 1, &v,
			 T0, NULL, NULL, &p.pk),
		API_EINVALID);
	CHECK_EQ(stories_trays_pack(NULL, 0, &v, T0, NULL, NULL, &p.pk), 0);
	CHECK_EQ(map_get(packed_read(&p), "trays")->via.array.size, 0);
	packed_free(&p);
}

TEST(actors_engage_stories_snapshot_round_trip)
{
	stories s, back;
	stories_init(&s);
	CHECK_EQ(stories_add(&s, 5, 50, 0, T0, NULL), 0);
	CHECK_EQ(stories_add(&s, 6, 60, 10, T0, NULL), 0);
	packed p;
	packed_init(&p);
	CHECK_EQ(stories_encode(&s, &p.pk), 0);
	CHECK_EQ(stories_decode(&back, packed_read(&p)), 0);
	CHECK_EQ(back.count, 2);
	CHECK(memcmp(back.items, s.items, 2 * sizeof s.items[0]) == 0);
	packed_free(&p);
	/* The active form drops what expired. */
	packed_init(&p);
	CHECK_EQ(stories_encode_active(&s, T0 + 10000, &p.pk), 0);
	CHECK_EQ(stories_decode(&back, packed_read(&p)), 0);
	CHECK_EQ(back.count, 1);
	CHECK_EQ_U64(back.items[0].story_id, 5);
	packed_free(&p);

	stories_seen v, v2;
	stories_seen_init(&v);
	stories_seen_init(&v2);
	CHECK_EQ(stories_seen_mark_story(&v, 9, T0), 0);
	CHECK_EQ(stories_seen_mark_story(&v, 3, T0 + 1), 0);
	packed_init(&p);
	CHECK_EQ(stories_seen_encode(&v, &p.pk), 0);
	CHECK_EQ(stories_seen_decode(&v2, packed_read(&p)), 0);
	CHECK(stories_seen_has(&v2, 3) && stories_seen_has(&v2, 9));
	CHECK_EQ(v2.count, 2);
	packed_free(&p);
	stories_seen_free(&v);
	stories_seen_free(&v2);
}

/* Decodes the msgpack written by fmt-built bytes. */
static int
decode_stories_bytes(const unsigned char *bytes, size_t length)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0) {
		stories s;
		rc = stories_decode(&s, &u.data);
		if (rc != 0)
			CHECK_EQ(s.count, 0);
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

TEST(actors_engage_stories_decoder_rejects_malformed)
{
	/* [1, [[id, media, created, expires]]] with bad variants. */
	const unsigned char good[] = {0x92, 0x01, 0x91, 0x94, 0x05, 0x06, 0x01,
		0x02};
	CHECK_EQ(decode_stories_bytes(good, sizeof good), 0);
	const unsigned char version[] = {0x92, 0x02, 0x90};
	CHECK_EQ(decode_stories_bytes(version, sizeof version), API_EINVALID);
	const unsigned char not_array[] = {0x81, 0x01, 0x90};
	CHECK_EQ(decode_stories_bytes(not_array, sizeof not_array),
		API_EINVALID);
	const unsigned char zero_id[] = {0x92, 0x01, 0x91, 0x94, 0x00, 0x06,
		0x01, 0x02};
	CHECK_EQ(decode_stories_bytes(zero_id, sizeof zero_id), API_EINVALID);
	const unsigned char expiry_before[] = {0x92, 0x01, 0x91, 0x94, 0x05,
		0x06, 0x02, 0x02};
	CHECK_EQ(decode_stories_bytes(expiry_before, sizeof expiry_before),
		API_EINVALID);
	/* expires 24 h + 1 ms after created: 86400001 = 0x05265c01 */
	const unsigned char too_long[] = {0x92, 0x01, 0x91, 0x94, 0x05, 0x06,
		0x00, 0xce, 0x05, 0x26, 0x5c, 0x01};
	CHECK_EQ(decode_stories_bytes(too_long, sizeof too_long), API_EINVALID);
	const unsigned char unordered[] = {0x92, 0x01, 0x92, 0x94, 0x05, 0x06,
		0x01, 0x02, 0x94, 0x05, 0x06, 0x01, 0x02};
	CHECK_EQ(decode_stories_bytes(unordered, sizeof unordered),
		API_EINVALID);
	const unsigned char negative[] = {0x92, 0x01, 0x91, 0x94, 0xff, 0x06,
		0x01, 0x02};
	CHECK_EQ(decode_stories_bytes(negative, sizeof negative), API_EINVALID);
	/* Over the cap: an array of 101 items announced. */
	unsigned char over[3 + 2 + 101 * 5];
	size_t n = 0;
	over[n++] = 0x92;
	over[n++] = 0x01;
	over[n++] = 0xdc;
	over[n++] = 0x00;
	over[n++] = 101;
	for (int i = 0; i < 101; i++) {
		over[n++] = 0x94;
		over[n++] = (unsigned char)(i + 1);
		over[n++] = 0x06;
		over[n++] = 0x01;
		over[n++] = 0x02;
	}
	CHECK_EQ(decode_stories_bytes(over, n), API_EINVALID);
}
