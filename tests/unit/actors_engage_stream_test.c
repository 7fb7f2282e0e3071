/*
 * actors_engage_stream_test.c — the live stream hub and presence.
 *
 * Goal: every event gets the next stream seq; a subscriber resuming from
 * any point gets exactly the events after it, in order, or one RESYNC
 * when some are gone (or it claims a future seq); a subscriber exactly
 * INBOX_STREAM_UNACKED_MAX behind is still served and the next event
 * cuts it off (CUT_OFF "slow", removed); acks refill credit; the ring
 * stays within its event and byte bounds while keeping data intact;
 * online-only pushes reach online users only (celebrity fan-out);
 * snapshots round-trip and malformed ones are refused.
 *
 * Method: the hub's deliver callback appends to a log in the test;
 * assertions read the log. Event data are small msgpack integers or
 * strings so their content can be checked byte for byte.
 */
#include "actors/engage.h"
#include "tests/test.h"

#define LOG_MAX 4096

typedef struct delivery {
	rt_addr to;
	uint64_t subscription_id;
	api_event_type type;
	uint64_t seq;
	uint32_t length;
	unsigned char data[64];
} delivery;

typedef struct log_t {
	uint32_t count;
	delivery d[LOG_MAX];
} log_t;

static log_t the_log;

static void
record(void *arg, const inbox_stream_subscriber *to,
	const inbox_stream_event *ev)
{
	log_t *l = arg;
	CHECK(l->count < LOG_MAX);
	delivery *d = &l->d[l->count++];
	d->to = to->addr;
	d->subscription_id = to->subscription_id;
	d->type = ev->type;
	d->seq = ev->seq;
	d->length = ev->length;
	memcpy(d->data, ev->data, ev->length < 64 ? ev->length : 64);
}

static rt_addr
session(uint64_t id)
{
	return rt_addr_make(RT_KIND_INBOX, id);
}

/* msgpack uint32 of v: 5 bytes. */
static void
data_of(uint64_t v, unsigned char out[5])
{
	out[0] = 0xce;
	out[1] = (unsigned char)(v >> 24);
	out[2] = (unsigned char)(v >> 16);
	out[3] = (unsigned char)(v >> 8);
	out[4] = (unsigned char)v;
}

static uint64_t
publish_n(inbox_stream *s, uint64_t n)
{
	uint64_t seq = 0;
	for (uint64_t i = 0; i < n; i++) {
		unsigned char data[5];
		data_of(s->last_seq + 1, data);
		CHECK_EQ(inbox_stream_publish(s, API_EVENT_NOTIFICATION, data, 5,
				 0, record, &the_log, &seq),
			0);
	}
	return seq;
}

/* The log holds exactly the events from..to for sub, data intact. */
static void
check_replay(uint64_t from, uint64_t to)
{
	CHECK_EQ_U64(the_log.count, to - from + 1);
	for (uint32_t i = 0; i < the_log.count; i++) {
		const delivery *d = &the_log.d[i];
		unsigned char want[5];
		data_of(from + i, want);
		CHECK_EQ(d->type, API_EVENT_NOTIFICATION);
		CHECK_EQ_U64(d->seq, from + i);
		CHECK(d->length == 5 && memcmp(d->data, want, 5) == 0);
	}
}

TEST(actors_engage_stream_resume_from_every_point)
{
	inbox_stream s;
	inbox_stream_init(&s);
	CHECK_EQ_U64(publish_n(&s, 300), 300);
	CHECK_EQ(s.count, INBOX_STREAM_EVENTS_MAX);
	uint64_t oldest = 300 - INBOX_STREAM_EVENTS_MAX + 1;
	for (uint64_t since = 0; since <= 302; since++) {
		the_log.count = 0;
		CHECK_EQ(inbox_stream_subscribe(&s, session(1), since, true,
				 since, record, &the_log),
			0);
		if (since == 300) {
			CHECK_EQ(the_log.count, 0);
		} else if (since + 1 >= oldest && since < 300) {
			check_replay(since + 1, 300);
			CHECK_EQ_U64(the_log.d[0].subscription_id, since);
		} else {
			/* a gap (events gone) or a seq from the future */
			CHECK_EQ(the_log.count, 1);
			CHECK_EQ(the_log.d[0].type, API_EVENT_RESYNC);
			CHECK_EQ_U64(the_log.d[0].seq, 300);
		}
		CHECK_EQ(inbox_stream_unsubscribe(&s, session(1), since), 0);
	}
	/* Live only: nothing replayed, next events arrive. */
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&s, session(2), 1, false, 0, record,
			 &the_log),
		0);
	CHECK_EQ(the_log.count, 0);
	publish_n(&s, 2);
	CHECK_EQ(the_log.count, 2);
	CHECK_EQ_U64(the_log.d[1].seq, 302);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_empty_stream_resume)
{
	inbox_stream s;
	inbox_stream_init(&s);
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 1, true, 0, record,
			 &the_log),
		0);
	CHECK_EQ(the_log.count, 0);
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 2, true, 5, record,
			 &the_log),
		0);
	CHECK_EQ(the_log.count, 1);
	CHECK_EQ(the_log.d[0].type, API_EVENT_RESYNC);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_slow_subscriber_cut_at_bound)
{
	inbox_stream s;
	inbox_stream_init(&s);
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 7, false, 0, record,
			 &the_log),
		0);
	CHECK_EQ(inbox_stream_subscribe(&s, session(2), 8, false, 0, record,
			 &the_log),
		0);
	for (uint64_t i = 1; i <= INBOX_STREAM_UNACKED_MAX; i++) {
		publish_n(&s, 1);
		CHECK_EQ(inbox_stream_ack(&s, session(2), 8, i), 0);
	}
	/* Exactly at the bound: both still served. */
	CHECK_EQ(s.subscribers_count, 2);
	CHECK_EQ(the_log.count, 2 * INBOX_STREAM_UNACKED_MAX);
	the_log.count = 0;
	publish_n(&s, 1);
	CHECK_EQ(s.subscribers_count, 1);
	CHECK_EQ(the_log.count, 2);
	const delivery *cut = &the_log.d[0];
	CHECK_EQ(cut->type, API_EVENT_CUT_OFF);
	CHECK_EQ_U64(cut->subscription_id, 7);
	CHECK_EQ_U64(cut->seq, INBOX_STREAM_UNACKED_MAX);
	CHECK(cut->length == 13 && memcmp(cut->data + 9, "slow", 4) == 0);
	CHECK_EQ_U64(the_log.d[1].subscription_id, 8);
	CHECK_EQ_U64(the_log.d[1].seq, INBOX_STREAM_UNACKED_MAX + 1);
	/* Gone for good: no more deliveries, its acks are unknown. */
	the_log.count = 0;
	publish_n(&s, 3);
	CHECK_EQ(the_log.count, 3);
	CHECK_EQ(inbox_stream_ack(&s, session(1), 7, 1), API_ENOTFOUND);
	/* It resumes with since = the cut's seq and loses nothing. */
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 9, true,
			 INBOX_STREAM_UNACKED_MAX, record, &the_log),
		0);
	check_replay(INBOX_STREAM_UNACKED_MAX + 1, INBOX_STREAM_UNACKED_MAX + 4);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_acks_refill_credit)
{
	inbox_stream s;
	inbox_stream_init(&s);
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 1, false, 0, record,
			 &the_log),
		0);
	publish_n(&s, INBOX_STREAM_UNACKED_MAX);
	CHECK_EQ(inbox_stream_ack(&s, session(1), 1, 100), 0);
	CHECK_EQ(inbox_stream_ack(&s, session(1), 1, 50), 0); /* stale */
	publish_n(&s, 100);
	CHECK_EQ(s.subscribers_count, 1);
	publish_n(&s, 1);
	CHECK_EQ(s.subscribers_count, 0);
	CHECK_EQ(the_log.d[the_log.count - 1].type, API_EVENT_CUT_OFF);
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 2, false, 0, record,
			 &the_log),
		0);
	CHECK_EQ(inbox_stream_ack(&s, session(1), 2, s.last_seq + 1),
		API_EINVALID);
	CHECK_EQ(inbox_stream_ack(&s, session(3), 2, 1), API_ENOTFOUND);
	CHECK_EQ(inbox_stream_unsubscribe(&s, session(3), 2), API_ENOTFOUND);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_resume_replay_within_credit)
{
	/* A full-ring replay leaves the subscriber exactly at its bound:
	 * served, and one more event without an ack cuts it. */
	inbox_stream s;
	inbox_stream_init(&s);
	publish_n(&s, INBOX_STREAM_EVENTS_MAX);
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&s, session(1), 1, true, 0, record,
			 &the_log),
		0);
	check_replay(1, INBOX_STREAM_EVENTS_MAX);
	CHECK_EQ(s.subscribers_count, 1);
	the_log.count = 0;
	publish_n(&s, 1);
	CHECK_EQ(the_log.count, 1);
	CHECK_EQ(the_log.d[0].type, API_EVENT_CUT_OFF);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_too_many_sessions_replace_oldest)
{
	inbox_stream s;
	inbox_stream_init(&s);
	the_log.count = 0;
	for (uint64_t i = 1; i <= INBOX_STREAM_SUBSCRIBERS_MAX; i++)
		CHECK_EQ(inbox_stream_subscribe(&s, session(i), i, false, 0,
				 record, &the_log),
			0);
	/* The same session subscribing again replaces itself. */
	CHECK_EQ(inbox_stream_subscribe(&s, session(3), 3, false, 0, record,
			 &the_log),
		0);
	CHECK_EQ(the_log.count, 0);
	CHECK_EQ(inbox_stream_subscribe(&s, session(100), 100, false, 0,
			 record, &the_log),
		0);
	CHECK_EQ(s.subscribers_count, INBOX_STREAM_SUBSCRIBERS_MAX);
	CHECK_EQ(the_log.count, 1);
	CHECK_EQ(the_log.d[0].type, API_EVENT_CUT_OFF);
	CHECK(rt_addr_equal(the_log.d[0].to, session(1)));
	CHECK(memcmp(the_log.d[0].data + 9, "replaced", 8) == 0);
	CHECK_EQ(inbox_stream_subscribe(&s, rt_addr_make(RT_KIND_NONE, 1), 1,
			 false, 0, record, &the_log),
		API_EINVALID);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_publish_limits_and_bytes_bound)
{
	inbox_stream s;
	inbox_stream_init(&s);
	static unsigned char big[INBOX_STREAM_EVENT_BYTES_MAX + 1];
	uint64_t seq;
	CHECK_EQ(inbox_stream_publish(&s, API_EVENT_FEED_POST, big,
			 INBOX_STREAM_EVENT_BYTES_MAX + 1, 0, record, &the_log,
			 &seq),
		API_ETOOLARGE);
	CHECK_EQ(inbox_stream_publish(&s, API_EVENT_RESYNC, big, 1, 0, record,
			 &the_log, &seq),
		API_EINVALID);
	CHECK_EQ(inbox_stream_publish(&s, API_EVENT_FEED_POST, big, 0, 0,
			 record, &the_log, &seq),
		API_EINVALID);
	CHECK_EQ_U64(s.last_seq, 0);
	/* Events of varying sizes wrap the arena many times; the bytes of
	 * every held event stay intact. A bin8/bin16 header makes each
	 * event one msgpack object. */
	uint32_t sizes[] = {5000, 16000, 300, 9000, 12345, 7, 4096};
	for (uint32_t i = 0; i < 200; i++) {
		uint32_t n = sizes[i % 7];
		big[0] = 0xc5;
		big[1] = (unsigned char)((n - 3) >> 8);
		big[2] = (unsigned char)(n - 3);
		memset(big + 3, (int)(s.last_seq + 1) & 0xff, n - 3);
		CHECK_EQ(inbox_stream_publish(&s, API_EVENT_FEED_POST, big, n, 0,
				 record, &the_log, &seq),
			0);
		uint32_t total = 0;
		for (uint32_t k = 0; k < s.count; k++) {
			const inbox_stream_slot *slot =
				&s.slots[(s.head + k) % INBOX_STREAM_EVENTS_MAX];
			uint64_t held = s.last_seq - s.count + 1 + k;
			total += slot->length;
			CHECK(slot->offset + slot->length <= s.bytes_capacity);
			CHECK_EQ(s.bytes[slot->offset + 3], (int)(held & 0xff));
			CHECK_EQ(s.bytes[slot->offset + slot->length - 1],
				(int)(held & 0xff));
		}
		CHECK(total <= INBOX_STREAM_BYTES_MAX);
		CHECK(s.bytes_capacity <= INBOX_STREAM_BYTES_MAX);
	}
	CHECK_EQ_U64(s.last_seq, 200);
	CHECK(s.count < INBOX_STREAM_EVENTS_MAX);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_celebrity_push_online_only)
{
	/* The celebrity's actor knows which followers are online. */
	inbox_presence online;
	inbox_presence_init(&online);
	CHECK_EQ(inbox_presence_set(&online, 11, true), 0);
	CHECK_EQ(inbox_presence_set(&online, 12, true), 0);
	CHECK_EQ(inbox_presence_set(&online, 13, true), 0);
	CHECK_EQ(inbox_presence_set(&online, 12, false), 0);
	CHECK_EQ(inbox_presence_set(&online, 12, false), 0);
	CHECK_EQ(inbox_presence_set(&online, 0, true), API_EINVALID);
	uint64_t targets[8];
	CHECK_EQ(inbox_presence_list(&online, targets, 8), 2);
	CHECK_EQ_U64(targets[0], 11);
	CHECK_EQ_U64(targets[1], 13);
	/* Follower 11 has a session; 13's went away before it said so. */
	inbox_stream hubs[2];
	inbox_stream_init(&hubs[0]);
	inbox_stream_init(&hubs[1]);
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&hubs[0], session(11), 1, false, 0,
			 record, &the_log),
		0);
	unsigned char post[5];
	data_of(777, post);
	uint64_t seq[2];
	for (int i = 0; i < 2; i++)
		CHECK_EQ(inbox_stream_publish(&hubs[i], API_EVENT_FEED_POST, post,
				 5, INBOX_STREAM_F_ONLINE_ONLY, record, &the_log,
				 &seq[i]),
			0);
	CHECK_EQ_U64(seq[0], 1);
	CHECK_EQ_U64(seq[1], 0);
	CHECK_EQ_U64(hubs[1].last_seq, 0);
	CHECK_EQ(hubs[1].count, 0);
	CHECK_EQ(the_log.count, 1);
	CHECK(rt_addr_equal(the_log.d[0].to, session(11)));
	inbox_stream_free(&hubs[0]);
	inbox_stream_free(&hubs[1]);
	inbox_presence_free(&online);
}

TEST(actors_engage_stream_presence_set_grows_and_shrinks)
{
	inbox_presence p;
	inbox_presence_init(&p);
	for (uint64_t i = 1; i <= 5000; i++)
		CHECK_EQ(inbox_presence_set(&p, i * 7919, true), 0);
	for (uint64_t i = 1; i <= 5000; i += 2)
		CHECK_EQ(inbox_presence_set(&p, i * 7919, false), 0);
	CHECK_EQ(p.count, 2500);
	for (uint64_t i = 1; i <= 5000; i++)
		CHECK(inbox_presence_has(&p, i * 7919) == (i % 2 == 0));
	static uint64_t ids[5000];
	CHECK_EQ(inbox_presence_list(&p, ids, 5000), 2500);
	for (uint32_t i = 1; i < 2500; i++)
		CHECK(ids[i - 1] < ids[i]);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(inbox_presence_encode(&p, &pk), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	inbox_presence back;
	inbox_presence_init(&back);
	CHECK_EQ(inbox_presence_decode(&back, &u.data), 0);
	CHECK_EQ(back.count, 2500);
	CHECK(inbox_presence_has(&back, 2 * 7919));
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	inbox_presence_free(&back);
	inbox_presence_free(&p);
}

static void
round_trip(const inbox_stream *s, inbox_stream *back)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(inbox_stream_encode(s, &pk), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	inbox_stream_init(back);
	CHECK_EQ(inbox_stream_decode(back, &u.data), 0);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

TEST(actors_engage_stream_snapshot_round_trip)
{
	inbox_stream s, back;
	inbox_stream_init(&s);
	the_log.count = 0;
	publish_n(&s, 270);
	CHECK_EQ(inbox_stream_subscribe(&s, session(5), 55, false, 0, record,
			 &the_log),
		0);
	publish_n(&s, 3);
	CHECK_EQ(inbox_stream_ack(&s, session(5), 55, 271), 0);
	round_trip(&s, &back);
	CHECK_EQ_U64(back.last_seq, 273);
	CHECK_EQ(back.count, INBOX_STREAM_EVENTS_MAX);
	CHECK_EQ(back.subscribers_count, 1);
	CHECK_EQ_U64(back.subscribers[0].acked_seq, 271);
	/* Resume against the restored hub: data intact. */
	the_log.count = 0;
	CHECK_EQ(inbox_stream_subscribe(&back, session(6), 1, true, 200,
			 record, &the_log),
		0);
	check_replay(201, 273);
	/* The restored subscriber keeps its credit accounting. */
	the_log.count = 0;
	publish_n(&back, 1);
	CHECK_EQ(the_log.count, 2);
	inbox_stream_free(&back);
	inbox_stream_free(&s);
}

static int
decode_bytes(const unsigned char *bytes, size_t length)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0) {
		inbox_stream s;
		inbox_stream_init(&s);
		rc = inbox_stream_decode(&s, &u.data);
		if (rc != 0)
			CHECK(s.count == 0 && s.bytes == NULL &&
				s.subscribers_count == 0);
		inbox_stream_free(&s);
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

TEST(actors_engage_stream_decoder_rejects_malformed)
{
	/* [1, last, [[type, bin]], [[kind, id, sub, sent, acked]]] */
	const unsigned char good[] = {0x94, 0x01, 0x03, 0x91, 0x92, 0x02, 0xc4,
		0x01, 0x07, 0x91, 0x95, 0x3f, 0x01, 0x02, 0x03, 0x02};
	CHECK_EQ(decode_bytes(good, sizeof good), 0);
	const unsigned char not_msgpack[] = {0x94, 0x01, 0x03, 0x91, 0x92, 0x02,
		0xc4, 0x01, 0xc1, 0x90};
	CHECK_EQ(decode_bytes(not_msgpack, sizeof not_msgpack), API_EINVALID);
	const unsigned char bad_type[] = {0x94, 0x01, 0x03, 0x91, 0x92, 0x06,
		0xc4, 0x01, 0x07, 0x90};
	CHECK_EQ(decode_bytes(bad_type, sizeof bad_type), API_EINVALID);
	const unsigned char more_than_seq[] = {0x94, 0x01, 0x00, 0x91, 0x92,
		0x02, 0xc4, 0x01, 0x07, 0x90};
	CHECK_EQ(decode_bytes(more_than_seq, sizeof more_than_seq),
		API_EINVALID);
	const unsigned char sent_behind[] = {0x94, 0x01, 0x03, 0x90, 0x91, 0x95,
		0x3f, 0x01, 0x02, 0x02, 0x02};
	CHECK_EQ(decode_bytes(sent_behind, sizeof sent_behind), API_EINVALID);
	const unsigned char acked_ahead[] = {0x94, 0x01, 0x03, 0x90, 0x91, 0x95,
		0x3f, 0x01, 0x02, 0x03, 0x04};
	CHECK_EQ(decode_bytes(acked_ahead, sizeof acked_ahead), API_EINVALID);
	const unsigned char kind_none[] = {0x94, 0x01, 0x03, 0x90, 0x91, 0x95,
		0x00, 0x01, 0x02, 0x03, 0x03};
	CHECK_EQ(decode_bytes(kind_none, sizeof kind_none), API_EINVALID);
	const unsigned char dup_sub[] = {0x94, 0x01, 0x03, 0x90, 0x92, 0x95,
		0x3f, 0x01, 0x02, 0x03, 0x03, 0x95, 0x3f, 0x01, 0x02, 0x03, 0x03};
	CHECK_EQ(decode_bytes(dup_sub, sizeof dup_sub), API_EINVALID);
	const unsigned char empty_data[] = {0x94, 0x01, 0x03, 0x91, 0x92, 0x02,
		0xc4, 0x00, 0x90};
	CHECK_EQ(decode_bytes(empty_data, sizeof empty_data), API_EINVALID);
}

TEST(actors_engage_stream_request_and_message_codecs)
{
	inbox_stream s;
	inbox_stream_init(&s);
	publish_n(&s, 4);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	inbox_stream_request r = {INBOX_STREAM_OP_SUBSCRIBE, 42, 2, true};
	CHECK_EQ(inbox_stream_request_encode(&r, &pk), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	inbox_stream_request back;
	CHECK_EQ(inbox_stream_request_decode(&u.data, &back), 0);
	CHECK(back.op == r.op && back.subscription_id == 42 &&
		back.seq == 2 && back.has_since);
	the_log.count = 0;
	CHECK_EQ(inbox_stream_apply(&s, session(9), &back, record, &the_log),
		0);
	check_replay(3, 4);
	/* The event message a session receives. */
	msgpack_sbuffer_clear(&sb);
	inbox_stream_event ev = {the_log.d[0].type, the_log.d[0].seq,
		the_log.d[0].data, the_log.d[0].length};
	CHECK_EQ(inbox_stream_message_encode(42, &ev, &pk), 0);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	uint64_t sub, seq;
	api_event_type type;
	const msgpack_object *data;
	CHECK_EQ(inbox_stream_message_decode(&u.data, &sub, &type, &seq,
			 &data),
		0);
	CHECK(sub == 42 && type == API_EVENT_NOTIFICATION && seq == 3);
	CHECK(data->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		data->via.u64 == 3);
	back.op = INBOX_STREAM_OP_ACK;
	back.seq = 4;
	CHECK_EQ(inbox_stream_apply(&s, session(9), &back, record, &the_log),
		0);
	back.op = INBOX_STREAM_OP_UNSUBSCRIBE;
	CHECK_EQ(inbox_stream_apply(&s, session(9), &back, record, &the_log),
		0);
	CHECK_EQ(s.subscribers_count, 0);
	const unsigned char bad_op[] = {0x94, 0x09, 0x01, 0x01, 0xc2};
	CHECK_EQ(engage_unpack(bad_op, sizeof bad_op, &u), 0);
	CHECK_EQ(inbox_stream_request_decode(&u.data, &back), API_EINVALID);
	/* The ops' edges: RENEW is the last one taken, the next refused. */
	const unsigned char renew_op[] = {0x94, 0x04, 0x01, 0x01, 0xc3};
	CHECK_EQ(engage_unpack(renew_op, sizeof renew_op, &u), 0);
	CHECK_EQ(inbox_stream_request_decode(&u.data, &back), 0);
	CHECK(back.op == INBOX_STREAM_OP_RENEW && back.has_since);
	const unsigned char past_op[] = {0x94, 0x05, 0x01, 0x01, 0xc2};
	CHECK_EQ(engage_unpack(past_op, sizeof past_op, &u), 0);
	CHECK_EQ(inbox_stream_request_decode(&u.data, &back), API_EINVALID);
	const unsigned char zero_op[] = {0x94, 0x00, 0x01, 0x01, 0xc2};
	CHECK_EQ(engage_unpack(zero_op, sizeof zero_op, &u), 0);
	CHECK_EQ(inbox_stream_request_decode(&u.data, &back), API_EINVALID);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	inbox_stream_free(&s);
}

TEST(actors_engage_stream_renew_serves_forgotten_and_behind_sessions)
{
	inbox_stream s;
	inbox_stream_init(&s);
	publish_n(&s, 6);
	inbox_stream_request renew = {INBOX_STREAM_OP_RENEW, 77, 3, true};
	/* Forgotten (never subscribed here): subscribed from its seq, the
	 * events after it replayed. */
	the_log.count = 0;
	CHECK_EQ(inbox_stream_apply(&s, session(5), &renew, record, &the_log),
		0);
	CHECK(inbox_stream_subscribed(&s, session(5), 77));
	check_replay(4, 6);
	/* Subscribed and up to date: nothing replayed, nothing changed. */
	the_log.count = 0;
	renew.seq = 6;
	CHECK(inbox_stream_renewal_idle(&s, session(5), &renew));
	CHECK_EQ(inbox_stream_apply(&s, session(5), &renew, record, &the_log),
		0);
	CHECK_EQ(the_log.count, 0);
	CHECK_EQ(s.subscribers_count, 1);
	/* Subscribed but behind (events lost on the way): what followed. */
	renew.seq = 4;
	CHECK(!inbox_stream_renewal_idle(&s, session(5), &renew));
	CHECK_EQ(inbox_stream_apply(&s, session(5), &renew, record, &the_log),
		0);
	check_replay(5, 6);
	CHECK_EQ(s.subscribers_count, 1);
	/* Without a position, a subscribed session asks for nothing. */
	inbox_stream_request bare = {INBOX_STREAM_OP_RENEW, 77, 0, false};
	CHECK(inbox_stream_renewal_idle(&s, session(5), &bare));
	/* Another session's renewal is another subscription. */
	CHECK(!inbox_stream_subscribed(&s, session(6), 77));
	/* The stream forgot its sessions (a load in another process): the
	 * renewal brings the session back where it was. */
	inbox_stream_reset(&s, 0);
	CHECK(!inbox_stream_subscribed(&s, session(5), 77));
	renew.seq = 6;
	publish_n(&s, 2); /* published while the session was forgotten */
	the_log.count = 0;
	CHECK_EQ(inbox_stream_apply(&s, session(5), &renew, record, &the_log),
		0);
	check_replay(7, 8);
	/* A load that lost events: the renewal gets one RESYNC. */
	inbox_stream_reset(&s, 1000);
	renew.seq = 8;
	the_log.count = 0;
	CHECK_EQ(inbox_stream_apply(&s, session(5), &renew, record, &the_log),
		0);
	CHECK_EQ(the_log.count, 1);
	CHECK_EQ(the_log.d[0].type, API_EVENT_RESYNC);
	CHECK_EQ_U64(the_log.d[0].seq, 1008);
	/* Without a position it subscribes from now, replaying nothing. */
	inbox_stream_request fresh = {INBOX_STREAM_OP_RENEW, 78, 0, false};
	the_log.count = 0;
	CHECK_EQ(inbox_stream_apply(&s, session(5), &fresh, record, &the_log),
		0);
	CHECK_EQ(the_log.count, 0);
	CHECK(inbox_stream_subscribed(&s, session(5), 78));
	inbox_stream_free(&s);
}
