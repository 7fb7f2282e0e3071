/*
 * actors_engage_inbox_test.c — the notification inbox.
 *
 * Goal: sequence numbers rise by one per notification and keep rising
 * when the ring drops its oldest; repeated events (like, unlike, like; a
 * redelivery after a crash, simulated by an encode/decode round trip)
 * give one notification inside the window; nobody is notified of their
 * own doing; listing pages newest first without duplicates or gaps;
 * read marks and unread counts; malformed snapshots are refused.
 *
 * Method: drive the inbox directly with explicit times; "crash" by
 * encoding the state, destroying it, and decoding it into a fresh one.
 */
#include "actors/engage.h"
#include "tests/test.h"

#define T0 1717200000000ull

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
		if (kv->key.via.str.size == strlen(key) &&
			memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
			return &kv->val;
	}
	return NULL;
}

static inbox_event
like(uint64_t actor, uint64_t target, uint64_t post, uint64_t at)
{
	inbox_event ev = {
		.event_id = inbox_event_id(INBOX_TYPE_LIKE, actor, post, 0),
		.actor_user_id = actor,
		.target_user_id = target,
		.post_id = post,
		.created_at_ms = at,
		.type = INBOX_TYPE_LIKE,
	};
	return ev;
}

static void
add_ok(inbox *ib, const inbox_event *ev, uint64_t now, bool want_added)
{
	bool added;
	CHECK_EQ(inbox_add(ib, ev, now, NULL, &added), 0);
	CHECK(added == want_added);
}

/* Encodes ib, frees it and decodes the bytes back into it. */
static void
crash_and_restore(inbox *ib)
{
	packed p;
	packed_init(&p);
	CHECK_EQ(inbox_encode(ib, &p.pk), 0);
	inbox_free(ib);
	inbox_init(ib);
	CHECK_EQ(inbox_decode(ib, packed_read(&p)), 0);
	packed_free(&p);
}

TEST(actors_engage_inbox_sequence_and_list)
{
	inbox ib;
	inbox_init(&ib);
	for (uint64_t i = 1; i <= 5; i++) {
		inbox_event ev = like(100 + i, 1, 500, T0 + i);
		inbox_entry e;
		bool added;
		CHECK_EQ(inbox_add(&ib, &ev, T0 + i, &e, &added), 0);
		CHECK(added);
		CHECK_EQ_U64(e.seq, i);
		CHECK_EQ_U64(e.by_user_id, 100 + i);
	}
	inbox_entry out[10];
	CHECK_EQ(inbox_list(&ib, 0, 0, 10, out), 5);
	for (int i = 0; i < 5; i++)
		CHECK_EQ_U64(out[i].seq, 5 - i);
	CHECK_EQ(inbox_list(&ib, 3, 0, 10, out), 2);
	CHECK_EQ_U64(out[1].seq, 4);
	CHECK_EQ(inbox_list(&ib, 0, 3, 10, out), 2);
	CHECK_EQ_U64(out[0].seq, 2);
	CHECK_EQ(inbox_list(&ib, 5, 0, 10, out), 0);
	CHECK_EQ(inbox_list(&ib, UINT64_MAX, 0, 10, out), 0);
	CHECK_EQ(inbox_unread_count(&ib), 5);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_never_self)
{
	inbox ib;
	inbox_init(&ib);
	inbox_event ev = like(7, 7, 500, T0);
	bool added = true;
	CHECK_EQ(inbox_add(&ib, &ev, T0, NULL, &added), API_EINVALID);
	CHECK(!added);
	CHECK_EQ_U64(ib.last_seq, 0);
	CHECK_EQ(ib.count, 0);
	/* The refusal left no dedupe trace: another user's like counts. */
	ev.actor_user_id = 8;
	add_ok(&ib, &ev, T0, true);
	/* Malformed events are refused too. */
	inbox_event bad = ev;
	bad.type = (inbox_type)9;
	CHECK_EQ(inbox_add(&ib, &bad, T0, NULL, &added), API_EINVALID);
	bad = ev;
	bad.event_id = 0;
	CHECK_EQ(inbox_add(&ib, &bad, T0, NULL, &added), API_EINVALID);
	CHECK_EQ_U64(ib.last_seq, 1);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_dedupe_like_unlike_like)
{
	inbox ib;
	inbox_init(&ib);
	inbox_event ev = like(2, 1, 500, T0);
	add_ok(&ib, &ev, T0, true);
	/* unlike sends nothing; like again an hour later is a repeat */
	add_ok(&ib, &ev, T0 + ENGAGE_HOUR_MS, false);
	CHECK_EQ_U64(ib.last_seq, 1);
	/* another post or another kind is another event */
	inbox_event other = like(2, 1, 501, T0);
	add_ok(&ib, &other, T0 + 1, true);
	CHECK(inbox_event_id(INBOX_TYPE_COMMENT, 2, 500, 9) !=
		inbox_event_id(INBOX_TYPE_COMMENT, 2, 500, 10));
	/* at the edge of the window it is remembered; past it, news again */
	add_ok(&ib, &ev, T0 + INBOX_DEDUPE_WINDOW_MS - 1, false);
	add_ok(&ib, &ev, T0 + INBOX_DEDUPE_WINDOW_MS, true);
	CHECK_EQ_U64(ib.last_seq, 3);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_dedupe_survives_crash)
{
	inbox ib;
	inbox_init(&ib);
	for (uint64_t i = 0; i < 50; i++) {
		inbox_event ev = like(10 + i, 1, 500, T0);
		add_ok(&ib, &ev, T0 + i, true);
	}
	inbox_mark_read(&ib, 20);
	crash_and_restore(&ib);
	CHECK_EQ_U64(ib.last_seq, 50);
	CHECK_EQ(inbox_unread_count(&ib), 30);
	/* Every redelivered event is recognised after the restart. */
	for (uint64_t i = 0; i < 50; i++) {
		inbox_event ev = like(10 + i, 1, 500, T0);
		add_ok(&ib, &ev, T0 + 1000, false);
	}
	inbox_event fresh = like(99, 1, 500, T0);
	inbox_entry e;
	bool added;
	CHECK_EQ(inbox_add(&ib, &fresh, T0 + 1000, &e, &added), 0);
	CHECK(added);
	CHECK_EQ_U64(e.seq, 51);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_ring_overflow_keeps_numbering)
{
	inbox ib;
	inbox_init(&ib);
	for (uint64_t i = 1; i <= INBOX_ENTRIES_MAX; i++) {
		inbox_event ev = like(1000 + i, 1, 500, T0);
		add_ok(&ib, &ev, T0 + i, true);
	}
	CHECK_EQ(ib.count, INBOX_ENTRIES_MAX);
	static inbox_entry out[INBOX_ENTRIES_MAX + 10];
	CHECK_EQ(inbox_list(&ib, 0, 0, INBOX_ENTRIES_MAX + 10, out),
		INBOX_ENTRIES_MAX);
	CHECK_EQ_U64(out[INBOX_ENTRIES_MAX - 1].seq, 1);
	/* One more: the oldest goes, numbering goes on. */
	inbox_event ev = like(5000, 1, 500, T0);
	inbox_entry e;
	bool added;
	CHECK_EQ(inbox_add(&ib, &ev, T0 + 5000, &e, &added), 0);
	CHECK_EQ_U64(e.seq, INBOX_ENTRIES_MAX + 1);
	CHECK_EQ(ib.count, INBOX_ENTRIES_MAX);
	uint32_t n = inbox_list(&ib, 0, 0, INBOX_ENTRIES_MAX + 10, out);
	CHECK_EQ(n, INBOX_ENTRIES_MAX);
	CHECK_EQ_U64(out[0].seq, INBOX_ENTRIES_MAX + 1);
	CHECK_EQ_U64(out[n - 1].seq, 2);
	for (uint32_t i = 1; i < n; i++)
		CHECK_EQ_U64(out[i].seq + 1, out[i - 1].seq);
	/* since older than anything held: everything held, correctly */
	CHECK_EQ(inbox_list(&ib, 1, 0, INBOX_ENTRIES_MAX + 10, out),
		INBOX_ENTRIES_MAX);
	CHECK_EQ(inbox_list(&ib, 0, 3, 10, out), 1);
	CHECK_EQ_U64(out[0].seq, 2);
	CHECK_EQ(inbox_unread_count(&ib), INBOX_ENTRIES_MAX);
	inbox_mark_read(&ib, 1);
	CHECK_EQ(inbox_unread_count(&ib), INBOX_ENTRIES_MAX);
	/* The overflowed ring survives a snapshot too. */
	crash_and_restore(&ib);
	CHECK_EQ(inbox_list(&ib, 0, 0, 2, out), 2);
	CHECK_EQ_U64(out[0].seq, INBOX_ENTRIES_MAX + 1);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_dedupe_memory_is_bounded)
{
	inbox ib;
	inbox_init(&ib);
	for (uint64_t i = 1; i <= INBOX_DEDUPE_ENTRIES_MAX + 1; i++) {
		inbox_event ev = like(i, 999999, 500, T0);
		add_ok(&ib, &ev, T0 + i, true);
	}
	CHECK_EQ(ib.dedupe_count, INBOX_DEDUPE_ENTRIES_MAX);
	/* The very first id was forgotten (a cap, inside the window); the
	 * second is still remembered. */
	inbox_event second = like(2, 999999, 500, T0);
	add_ok(&ib, &second, T0 + 10000, false);
	inbox_event first = like(1, 999999, 500, T0);
	add_ok(&ib, &first, T0 + 10000, true);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_read_marks)
{
	inbox ib;
	inbox_init(&ib);
	for (uint64_t i = 1; i <= 6; i++) {
		inbox_event ev = like(10 + i, 1, 500, T0);
		add_ok(&ib, &ev, T0 + i, true);
	}
	inbox_mark_read(&ib, 4);
	CHECK_EQ(inbox_unread_count(&ib), 2);
	inbox_mark_read(&ib, 2); /* never back to unread */
	CHECK_EQ(inbox_unread_count(&ib), 2);
	inbox_entry out[6];
	CHECK_EQ(inbox_list(&ib, 0, 0, 6, out), 6);
	CHECK(!inbox_entry_read(&ib, &out[0]));
	CHECK(inbox_entry_read(&ib, &out[2]));
	inbox_mark_read(&ib, 1000); /* clamped to what exists */
	CHECK_EQ_U64(ib.read_up_to_seq, 6);
	CHECK_EQ(inbox_unread_count(&ib), 0);
	inbox_event ev = like(77, 1, 500, T0);
	add_ok(&ib, &ev, T0 + 10, true);
	CHECK_EQ(inbox_unread_count(&ib), 1);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_pages_without_gaps)
{
	inbox ib;
	inbox_init(&ib);
	for (uint64_t i = 1; i <= 45; i++) {
		inbox_event ev = {
			.event_id = inbox_event_id(INBOX_TYPE_COMMENT, 3, 700,
				i),
			.actor_user_id = 3,
			.target_user_id = 1,
			.post_id = 700,
			.comment_id = i,
			.created_at_ms = T0 + i,
			.type = INBOX_TYPE_COMMENT,
		};
		add_ok(&ib, &ev, T0 + i, true);
	}
	inbox_mark_read(&ib, 40);
	char cursor[64] = "";
	uint64_t expect = 45;
	int pages = 0;
	for (;;) {
		packed p;
		packed_init(&p);
		CHECK_EQ(inbox_list_pack(&ib, 0, 20,
				 cursor[0] != '\0' ? cursor : NULL, &p.pk),
			0);
		const msgpack_object *body = packed_read(&p);
		const msgpack_object *items = map_get(body, "items");
		CHECK_EQ(map_get(body, "unread_count")->via.u64, 5);
		for (uint32_t i = 0; i < items->via.array.size; i++) {
			const msgpack_object *it = &items->via.array.ptr[i];
			CHECK_EQ_U64(map_get(it, "seq")->via.u64, expect);
			CHECK(map_get(it, "read")->via.boolean == (expect <= 40));
			CHECK(map_get(it, "comment_id") != NULL);
			CHECK(map_get(map_get(it, "by_user"), "user_id") != NULL);
			const msgpack_object *type = map_get(it, "type");
			CHECK(type->via.str.size == 7 &&
				memcmp(type->via.str.ptr, "comment", 7) == 0);
			expect--;
		}
		pages++;
		const msgpack_object *next = map_get(body, "next_cursor");
		if (next->type == MSGPACK_OBJECT_NIL) {
			packed_free(&p);
			break;
		}
		CHECK(next->via.str.size < sizeof cursor);
		memcpy(cursor, next->via.str.ptr, next->via.str.size);
		cursor[next->via.str.size] = '\0';
		packed_free(&p);
	}
	CHECK_EQ_U64(expect, 0);
	CHECK_EQ(pages, 3);
	packed p;
	packed_init(&p);
	CHECK_EQ(inbox_list_pack(&ib, 0, 20, "n00000000000000zz", &p.pk),
		API_EINVALID);
	CHECK_EQ(inbox_list_pack(&ib, 0, 20, "bogus", &p.pk), API_EINVALID);
	CHECK_EQ(inbox_list_pack(&ib, 0, 20, "n0000000000000000", &p.pk),
		API_EINVALID);
	packed_free(&p);
	/* since: only newer ones, and limit past the maximum is clamped */
	packed_init(&p);
	CHECK_EQ(inbox_list_pack(&ib, 43, 500, NULL, &p.pk), 0);
	CHECK_EQ(map_get(packed_read(&p), "items")->via.array.size, 2);
	packed_free(&p);
	inbox_free(&ib);
}

TEST(actors_engage_inbox_event_codec)
{
	inbox_event ev = like(2, 1, 500, T0);
	packed p;
	packed_init(&p);
	CHECK_EQ(inbox_event_encode(&ev, &p.pk), 0);
	inbox_event back;
	CHECK_EQ(inbox_event_decode(packed_read(&p), &back), 0);
	CHECK_EQ_U64(back.event_id, ev.event_id);
	CHECK_EQ_U64(back.actor_user_id, ev.actor_user_id);
	CHECK_EQ_U64(back.target_user_id, ev.target_user_id);
	CHECK_EQ_U64(back.post_id, ev.post_id);
	CHECK_EQ_U64(back.comment_id, ev.comment_id);
	CHECK_EQ_U64(back.created_at_ms, ev.created_at_ms);
	CHECK_EQ(back.type, ev.type);
	packed_free(&p);
	const unsigned char bad_type[] = {0x97, 0x01, 0x09, 0x02, 0x01, 0x00,
		0x00, 0x00};
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(bad_type, sizeof bad_type, &u), 0);
	CHECK_EQ(inbox_event_decode(&u.data, &back), API_EINVALID);
	msgpack_unpacked_destroy(&u);
	CHECK_STR_EQ(inbox_type_name(INBOX_TYPE_MENTION), "mention");
	CHECK(inbox_type_name((inbox_type)0) == NULL);
}

static int
decode_bytes(const unsigned char *bytes, size_t length)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0) {
		inbox ib;
		inbox_init(&ib);
		rc = inbox_decode(&ib, &u.data);
		if (rc != 0)
			CHECK(ib.entries == NULL && ib.count == 0);
		inbox_free(&ib);
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

TEST(actors_engage_inbox_decoder_rejects_malformed)
{
	/* [1, last, read, [[seq, event, type, by, post, comment, at]], [[id,
	 * at]]] */
	const unsigned char good[] = {0x95, 0x01, 0x02, 0x01, 0x91, 0x97, 0x02,
		0x05, 0x01, 0x07, 0x00, 0x00, 0x00, 0x91, 0x92, 0x05, 0x00};
	CHECK_EQ(decode_bytes(good, sizeof good), 0);
	const unsigned char read_ahead[] = {0x95, 0x01, 0x02, 0x03, 0x90, 0x90};
	CHECK_EQ(decode_bytes(read_ahead, sizeof read_ahead), API_EINVALID);
	const unsigned char seq_gap[] = {0x95, 0x01, 0x03, 0x01, 0x91, 0x97,
		0x02, 0x05, 0x01, 0x07, 0x00, 0x00, 0x00, 0x90};
	CHECK_EQ(decode_bytes(seq_gap, sizeof seq_gap), API_EINVALID);
	const unsigned char more_than_seq[] = {0x95, 0x01, 0x00, 0x00, 0x91,
		0x97, 0x00, 0x05, 0x01, 0x07, 0x00, 0x00, 0x00, 0x90};
	CHECK_EQ(decode_bytes(more_than_seq, sizeof more_than_seq),
		API_EINVALID);
	const unsigned char bad_type[] = {0x95, 0x01, 0x02, 0x01, 0x91, 0x97,
		0x02, 0x05, 0x05, 0x07, 0x00, 0x00, 0x00, 0x90};
	CHECK_EQ(decode_bytes(bad_type, sizeof bad_type), API_EINVALID);
	const unsigned char dup_dedupe[] = {0x95, 0x01, 0x00, 0x00, 0x90, 0x92,
		0x92, 0x05, 0x00, 0x92, 0x05, 0x01};
	CHECK_EQ(decode_bytes(dup_dedupe, sizeof dup_dedupe), API_EINVALID);
	const unsigned char short_tuple[] = {0x94, 0x01, 0x00, 0x00, 0x90};
	CHECK_EQ(decode_bytes(short_tuple, sizeof short_tuple), API_EINVALID);
	const unsigned char no_actor[] = {0x95, 0x01, 0x02, 0x01, 0x91, 0x97,
		0x02, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x90};
	CHECK_EQ(decode_bytes(no_actor, sizeof no_actor), API_EINVALID);
}
