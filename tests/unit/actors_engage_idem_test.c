/*
 * actors_engage_idem_test.c — Idempotency-Key tables.
 *
 * Goal: a retry with the same key and body replays the first response
 * byte for byte; the same key with another body is API_EIDEMPOTENCY
 * (422); a retry while the first still runs is API_ECONFLICT (409), until
 * the first is presumed lost; keys expire exactly at their ttl (24 h by
 * default); the table is bounded and forgets its oldest key; snapshots
 * round-trip (running entries included) and malformed ones are refused.
 *
 * Method: drive idem_begin/finish/abort with explicit times.
 */
#include "actors/engage.h"
#include "tests/test.h"

#define T0 1717200000000ull

static void
digest_of(uint8_t d[IDEM_DIGEST_BYTES], int seed)
{
	for (uint32_t i = 0; i < IDEM_DIGEST_BYTES; i++)
		d[i] = (uint8_t)(seed * 31 + (int)i);
}

/* {"post_id": "7"} as msgpack */
static const unsigned char body[] = {0x81, 0xa7, 'p', 'o', 's', 't', '_',
	'i', 'd', 0xa1, '7'};

static void
begin_new(idem_table *t, const char *key, const uint8_t *d, uint64_t now)
{
	idem_outcome o;
	CHECK_EQ(idem_begin(t, key, d, now, 0, &o), 0);
	CHECK(!o.replay);
}

TEST(actors_engage_idem_same_body_replays_first_result)
{
	idem_table t;
	idem_init(&t);
	uint8_t d[IDEM_DIGEST_BYTES];
	digest_of(d, 1);
	begin_new(&t, "key-1", d, T0);
	CHECK_EQ(idem_finish(&t, "key-1", d, API_OK, body, sizeof body), 0);
	for (int retry = 0; retry < 3; retry++) {
		idem_outcome o;
		CHECK_EQ(idem_begin(&t, "key-1", d, T0 + 1000 + retry, 0, &o), 0);
		CHECK(o.replay);
		CHECK_EQ(o.code, API_OK);
		CHECK_EQ(o.response_length, sizeof body);
		CHECK(memcmp(o.response, body, sizeof body) == 0);
	}
	/* An error answer (e.g. 404) replays the same way, without body. */
	begin_new(&t, "key-2", d, T0);
	CHECK_EQ(idem_finish(&t, "key-2", d, API_ENOTFOUND, NULL, 0), 0);
	idem_outcome o;
	CHECK_EQ(idem_begin(&t, "key-2", d, T0 + 5, 0, &o), 0);
	CHECK(o.replay && o.code == API_ENOTFOUND && o.response == NULL);
	idem_free(&t);
}

TEST(actors_engage_idem_other_body_is_422)
{
	idem_table t;
	idem_init(&t);
	uint8_t d1[IDEM_DIGEST_BYTES], d2[IDEM_DIGEST_BYTES];
	digest_of(d1, 1);
	digest_of(d2, 2);
	begin_new(&t, "k", d1, T0);
	idem_outcome o;
	/* while running, another body is still a misuse of the key */
	CHECK_EQ(idem_begin(&t, "k", d2, T0 + 1, 0, &o), API_EIDEMPOTENCY);
	CHECK_EQ(idem_finish(&t, "k", d2, API_OK, NULL, 0), API_ENOTFOUND);
	CHECK_EQ(idem_finish(&t, "k", d1, API_OK, body, sizeof body), 0);
	CHECK_EQ(idem_begin(&t, "k", d2, T0 + 2, 0, &o), API_EIDEMPOTENCY);
	/* the key is untouched by the refusals */
	CHECK_EQ(idem_begin(&t, "k", d1, T0 + 3, 0, &o), 0);
	CHECK(o.replay);
	idem_free(&t);
}

TEST(actors_engage_idem_running_is_409_until_presumed_lost)
{
	idem_table t;
	idem_init(&t);
	uint8_t d[IDEM_DIGEST_BYTES];
	digest_of(d, 3);
	begin_new(&t, "k", d, T0);
	idem_outcome o;
	CHECK_EQ(idem_begin(&t, "k", d, T0 + 1, 0, &o), API_ECONFLICT);
	CHECK_EQ(idem_begin(&t, "k", d, T0 + IDEM_RUNNING_TIMEOUT_MS - 1, 0,
			 &o),
		API_ECONFLICT);
	/* The first run lost its continuation: this retry takes over. */
	CHECK_EQ(idem_begin(&t, "k", d, T0 + IDEM_RUNNING_TIMEOUT_MS, 0, &o),
		0);
	CHECK(!o.replay);
	CHECK_EQ(idem_begin(&t, "k", d, T0 + IDEM_RUNNING_TIMEOUT_MS + 1, 0,
			 &o),
		API_ECONFLICT);
	CHECK_EQ(idem_finish(&t, "k", d, API_OK, body, sizeof body), 0);
	CHECK_EQ(idem_finish(&t, "k", d, API_OK, body, sizeof body),
		API_ENOTFOUND);
	idem_free(&t);
}

TEST(actors_engage_idem_abort_lets_a_retry_run)
{
	idem_table t;
	idem_init(&t);
	uint8_t d[IDEM_DIGEST_BYTES];
	digest_of(d, 4);
	begin_new(&t, "k", d, T0);
	CHECK_EQ(idem_abort(&t, "k", d), 0);
	CHECK_EQ(idem_abort(&t, "k", d), API_ENOTFOUND);
	begin_new(&t, "k", d, T0 + 1);
	idem_free(&t);
}

TEST(actors_engage_idem_expires_at_24h)
{
	idem_table t;
	idem_init(&t);
	uint8_t d1[IDEM_DIGEST_BYTES], d2[IDEM_DIGEST_BYTES];
	digest_of(d1, 5);
	digest_of(d2, 6);
	begin_new(&t, "k", d1, T0);
	CHECK_EQ(idem_finish(&t, "k", d1, API_OK, body, sizeof body), 0);
	idem_outcome o;
	CHECK_EQ(idem_begin(&t, "k", d1, T0 + ENGAGE_DAY_MS - 1, 0, &o), 0);
	CHECK(o.replay);
	CHECK_EQ(idem_begin(&t, "k", d2, T0 + ENGAGE_DAY_MS - 1, 0, &o),
		API_EIDEMPOTENCY);
	/* Exactly at 24 h the key is free again, even for another body. */
	CHECK_EQ(idem_begin(&t, "k", d2, T0 + ENGAGE_DAY_MS, 0, &o), 0);
	CHECK(!o.replay);
	CHECK_EQ(t.count, 1);
	/* A configured ttl (api_config.idempotency_ttl_ms) is honoured. */
	begin_new(&t, "short", d1, T0);
	CHECK_EQ(idem_finish(&t, "short", d1, API_OK, NULL, 0), 0);
	CHECK_EQ(idem_collect(&t, T0 + 1000), 0);
	idem_table t2;
	idem_init(&t2);
	CHECK_EQ(idem_begin(&t2, "x", d1, T0, 1000, &o), 0);
	CHECK_EQ(idem_collect(&t2, T0 + 999), 0);
	CHECK_EQ(idem_collect(&t2, T0 + 1000), 1);
	idem_free(&t2);
	idem_free(&t);
}

TEST(actors_engage_idem_bounded_oldest_forgotten)
{
	idem_table t;
	idem_init(&t);
	uint8_t d[IDEM_DIGEST_BYTES];
	digest_of(d, 7);
	char key[32];
	for (uint32_t i = 0; i < IDEM_KEYS_MAX; i++) {
		snprintf(key, sizeof key, "k%u", i);
		begin_new(&t, key, d, T0 + i);
		CHECK_EQ(idem_finish(&t, key, d, API_OK, body, sizeof body), 0);
	}
	CHECK_EQ(t.count, IDEM_KEYS_MAX);
	begin_new(&t, "one-more", d, T0 + 1000);
	CHECK_EQ(t.count, IDEM_KEYS_MAX);
	idem_outcome o;
	CHECK_EQ(idem_begin(&t, "k1", d, T0 + 1001, 0, &o), 0);
	CHECK(o.replay);
	/* k0 was the oldest: forgotten, so it runs again. */
	CHECK_EQ(idem_begin(&t, "k0", d, T0 + 1002, 0, &o), 0);
	CHECK(!o.replay);
	idem_free(&t);
}

TEST(actors_engage_idem_bad_input)
{
	idem_table t;
	idem_init(&t);
	uint8_t d[IDEM_DIGEST_BYTES];
	digest_of(d, 8);
	idem_outcome o;
	char key[API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
	memset(key, 'a', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	CHECK_EQ(idem_begin(&t, key, d, T0, 0, &o), API_EINVALID);
	key[API_IDEMPOTENCY_KEY_BYTES_MAX] = '\0';
	CHECK_EQ(idem_begin(&t, key, d, T0, 0, &o), 0);
	CHECK_EQ(idem_begin(&t, "", d, T0, 0, &o), API_EINVALID);
	CHECK_EQ(idem_begin(&t, NULL, d, T0, 0, &o), API_EINVALID);
	CHECK_EQ(idem_begin(&t, "k", NULL, T0, 0, &o), API_EINVALID);
	/* A response past the bound is refused and the key forgotten. */
	begin_new(&t, "big", d, T0);
	static unsigned char huge[IDEM_RESPONSE_BYTES_MAX + 1];
	CHECK_EQ(idem_finish(&t, "big", d, API_OK, huge, sizeof huge),
		API_ETOOLARGE);
	begin_new(&t, "big", d, T0 + 1);
	/* A response that is not one msgpack object is refused. */
	const unsigned char half[] = {0x92, 0x01};
	CHECK_EQ(idem_finish(&t, "big", d, API_OK, half, sizeof half),
		API_EINVALID);
	idem_free(&t);
}

static void
round_trip(const idem_table *t, idem_table *back)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(idem_encode(t, &pk), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	idem_init(back);
	CHECK_EQ(idem_decode(back, &u.data), 0);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

TEST(actors_engage_idem_snapshot_round_trip)
{
	idem_table t, back;
	idem_init(&t);
	uint8_t d1[IDEM_DIGEST_BYTES], d2[IDEM_DIGEST_BYTES];
	digest_of(d1, 9);
	digest_of(d2, 10);
	begin_new(&t, "done", d1, T0);
	CHECK_EQ(idem_finish(&t, "done", d1, API_OK, body, sizeof body), 0);
	begin_new(&t, "running", d2, T0 + 5);
	round_trip(&t, &back);
	CHECK_EQ(back.count, 2);
	idem_outcome o;
	CHECK_EQ(idem_begin(&back, "done", d1, T0 + 10, 0, &o), 0);
	CHECK(o.replay && o.response_length == sizeof body &&
		memcmp(o.response, body, sizeof body) == 0);
	CHECK_EQ(idem_begin(&back, "running", d2, T0 + 10, 0, &o),
		API_ECONFLICT);
	CHECK_EQ(idem_begin(&back, "running", d2,
			 T0 + 5 + IDEM_RUNNING_TIMEOUT_MS, 0, &o),
		0);
	idem_free(&back);
	idem_free(&t);
}

static int
decode_bytes(const unsigned char *bytes, size_t length)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0) {
		idem_table t;
		idem_init(&t);
		rc = idem_decode(&t, &u.data);
		if (rc != 0)
			CHECK(t.count == 0 && t.entries == NULL);
		idem_free(&t);
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* [1, [[key, digest(32), status, code, started, expires, resp]]] */
static size_t
entry_bytes(unsigned char *out, const char *key, uint8_t digest_length,
	uint8_t status, uint8_t started, uint8_t expires, bool with_body)
{
	size_t n = 0;
	out[n++] = 0x92;
	out[n++] = 0x01;
	out[n++] = 0x91;
	out[n++] = 0x97;
	out[n++] = (unsigned char)(0xa0 | strlen(key));
	memcpy(out + n, key, strlen(key));
	n += strlen(key);
	out[n++] = 0xc4;
	out[n++] = digest_length;
	memset(out + n, 0x11, digest_length);
	n += digest_length;
	out[n++] = status;
	out[n++] = 0x00;
	out[n++] = started;
	out[n++] = expires;
	if (with_body) {
		out[n++] = 0xc4;
		out[n++] = 0x01;
		out[n++] = 0x07;
	} else {
		out[n++] = 0xc0;
	}
	return n;
}

TEST(actors_engage_idem_decoder_rejects_malformed)
{
	unsigned char b[128];
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "k", 32, 2, 1, 5, true)), 0);
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "k", 32, 1, 1, 5, false)), 0);
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "k", 31, 2, 1, 5, true)),
		API_EINVALID);
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "k", 32, 3, 1, 5, true)),
		API_EINVALID);
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "k", 32, 2, 5, 5, true)),
		API_EINVALID);
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "", 32, 2, 1, 5, true)),
		API_EINVALID);
	/* a running entry cannot hold a response */
	CHECK_EQ(decode_bytes(b, entry_bytes(b, "k", 32, 1, 1, 5, true)),
		API_EINVALID);
	/* a key with a NUL inside */
	size_t n = entry_bytes(b, "ab", 32, 2, 1, 5, true);
	b[6] = '\0';
	CHECK_EQ(decode_bytes(b, n), API_EINVALID);
	/* two entries with one key */
	unsigned char two[256];
	size_t one = entry_bytes(two, "k", 32, 2, 1, 5, true);
	two[2] = 0x92;
	memcpy(two + one, two + 3, one - 3);
	CHECK_EQ(decode_bytes(two, one + one - 3), API_EINVALID);
}
