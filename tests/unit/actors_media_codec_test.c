/*
 * actors_media_codec_test.c — the media actor's stored state.
 *
 * Goal: a media item's state survives encode/decode exactly, and the
 * decoder refuses every malformed input (truncation at each length, a
 * flipped byte anywhere that changes meaning, unknown or missing keys,
 * out-of-range values, an inconsistent status/hash pair, a container
 * declaring more elements than there are bytes) without crashing or
 * allocating the declared size.
 *
 * Method: a full state (processing, with watchers) and a settled one are
 * round-tripped; then every prefix, and hand-written msgpack inputs,
 * are fed to media_state_decode.
 */
#include "tests/test.h"

#include <msgpack.h>

#include "actors/media.h"

static media_state
sample(void)
{
	media_state st;
	memset(&st, 0, sizeof(st));
	st.media_id = 7093457788123136ull;
	st.owner_id = 42;
	st.status = MEDIA_STATUS_PROCESSING;
	media_hash_hex("bytes", 5, st.hash);
	st.attempts = 2;
	st.created_ms = 1750000000123ull;
	st.watchers_count = 2;
	st.watchers[0] = (media_watcher){rt_addr_make(2, 99), 208, 5};
	st.watchers[1] = (media_watcher){rt_addr_make(1, 42), 0, 6};
	return st;
}

static void
check_same(const media_state *a, const media_state *b)
{
	CHECK_EQ_U64(a->media_id, b->media_id);
	CHECK_EQ_U64(a->owner_id, b->owner_id);
	CHECK_EQ(a->status, b->status);
	CHECK_STR_EQ(a->hash, b->hash);
	CHECK_STR_EQ(a->reason, b->reason);
	CHECK_EQ(a->attempts, b->attempts);
	CHECK_EQ_U64(a->created_ms, b->created_ms);
	CHECK_EQ_U64(a->settled_ms, b->settled_ms);
	CHECK_EQ(a->watchers_count, b->watchers_count);
	for (uint32_t i = 0; i < a->watchers_count; i++) {
		CHECK(rt_addr_equal(a->watchers[i].addr, b->watchers[i].addr));
		CHECK_EQ(a->watchers[i].type, b->watchers[i].type);
		CHECK_EQ_U64(a->watchers[i].cookie, b->watchers[i].cookie);
	}
}

TEST(actors_media_state_round_trips)
{
	media_state st = sample();
	rt_buffer out = {0};
	CHECK_EQ(media_state_encode(&st, &out), 0);
	media_state back;
	CHECK_EQ(media_state_decode(&back, out.bytes, out.length), 0);
	check_same(&st, &back);
	/* Every strict prefix is refused. */
	for (size_t n = 0; n < out.length; n++)
		CHECK_EQ(media_state_decode(&back, out.bytes, n), RT_ECORRUPT);
	/* Trailing bytes are refused. */
	CHECK_EQ(rt_buffer_append(&out, "\xc0", 1), 0);
	CHECK_EQ(media_state_decode(&back, out.bytes, out.length), RT_ECORRUPT);
	rt_buffer_free(&out);

	st.status = MEDIA_STATUS_FAILED;
	snprintf(st.reason, sizeof(st.reason), "decode failed: truncated");
	st.settled_ms = st.created_ms + 1500;
	st.watchers_count = 0;
	memset(&out, 0, sizeof(out));
	CHECK_EQ(media_state_encode(&st, &out), 0);
	CHECK_EQ(media_state_decode(&back, out.bytes, out.length), 0);
	check_same(&st, &back);
	rt_buffer_free(&out);
}

/* Packs a state map with one field replaced by a packer callback. */
typedef void (*field_fn)(msgpack_packer *p);

static void
pack_str(msgpack_packer *p, const char *s)
{
	msgpack_pack_str(p, strlen(s));
	msgpack_pack_str_body(p, s, strlen(s));
}

static int
decode_with(const char *key, field_fn fn, const char *extra_key)
{
	static const char *const keys[] = {"v", "id", "owner", "status",
		"hash", "reason", "attempts", "created_ms", "settled_ms",
		"watchers"};
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	media_hash_hex("x", 1, hash);
	msgpack_sbuffer sb;
	msgpack_packer p;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&p, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&p, 10 + (extra_key != NULL));
	for (int i = 0; i < 10; i++) {
		pack_str(&p, keys[i]);
		if (key != NULL && strcmp(key, keys[i]) == 0) {
			fn(&p);
			continue;
		}
		switch (i) {
		case 0: msgpack_pack_uint32(&p, 1); break;
		case 3: msgpack_pack_uint8(&p, MEDIA_STATUS_READY); break;
		case 4: pack_str(&p, hash); break;
		case 5: pack_str(&p, ""); break;
		case 9: msgpack_pack_array(&p, 0); break;
		default: msgpack_pack_uint64(&p, 5); break;
		}
	}
	if (extra_key != NULL) {
		pack_str(&p, extra_key);
		msgpack_pack_uint8(&p, 1);
	}
	media_state st;
	int rc = media_state_decode(&st, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static void version_2(msgpack_packer *p) { msgpack_pack_uint32(p, 2); }
static void status_9(msgpack_packer *p) { msgpack_pack_uint8(p, 9); }
static void negative(msgpack_packer *p) { msgpack_pack_int64(p, -1); }
static void upper_hash(msgpack_packer *p)
{
	pack_str(p, "ABCDEF0123456789ABCDEF0123456789"
		"ABCDEF0123456789ABCDEF0123456789");
}
static void empty_hash(msgpack_packer *p) { pack_str(p, ""); }
static void long_reason(msgpack_packer *p)
{
	char r[MEDIA_REASON_BYTES_MAX + 1];
	memset(r, 'r', sizeof(r) - 1);
	r[sizeof(r) - 1] = '\0';
	pack_str(p, r);
}
static void nul_reason(msgpack_packer *p)
{
	msgpack_pack_str(p, 3);
	msgpack_pack_str_body(p, "a\0b", 3);
}
static void too_many_watchers(msgpack_packer *p)
{
	msgpack_pack_array(p, MEDIA_WATCHERS_MAX + 1);
	for (uint32_t i = 0; i <= MEDIA_WATCHERS_MAX; i++) {
		msgpack_pack_array(p, 4);
		for (int k = 0; k < 4; k++)
			msgpack_pack_uint8(p, 1);
	}
}
static void bad_kind_watcher(msgpack_packer *p)
{
	msgpack_pack_array(p, 1);
	msgpack_pack_array(p, 4);
	msgpack_pack_uint32(p, RT_KINDS_MAX);
	msgpack_pack_uint8(p, 1);
	msgpack_pack_uint8(p, 1);
	msgpack_pack_uint8(p, 1);
}
static void short_watcher(msgpack_packer *p)
{
	msgpack_pack_array(p, 1);
	msgpack_pack_array(p, 3);
	for (int k = 0; k < 3; k++)
		msgpack_pack_uint8(p, 1);
}

TEST(actors_media_state_decoder_refuses_malformed)
{
	CHECK_EQ(decode_with(NULL, NULL, NULL), 0);
	CHECK_EQ(decode_with("v", version_2, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("status", status_9, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("id", negative, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("hash", upper_hash, NULL), RT_ECORRUPT);
	/* ready without a hash is inconsistent */
	CHECK_EQ(decode_with("hash", empty_hash, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("reason", long_reason, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("reason", nul_reason, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("watchers", too_many_watchers, NULL),
		RT_ECORRUPT);
	CHECK_EQ(decode_with("watchers", bad_kind_watcher, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with("watchers", short_watcher, NULL), RT_ECORRUPT);
	CHECK_EQ(decode_with(NULL, NULL, "extra"), RT_ECORRUPT);

	media_state st;
	/* Containers that declare more than the input holds: refused
	 * before msgpack-c would allocate for them. */
	static const unsigned char huge_array[] = {0xdd, 0xff, 0xff, 0xff,
		0xff};
	static const unsigned char huge_map[] = {0xdf, 0x7f, 0xff, 0xff,
		0xff, 0xa1, 'v'};
	static const unsigned char huge_str[] = {0xdb, 0xff, 0xff, 0xff,
		0xf0, 'a'};
	static const unsigned char deep[] = {0x91, 0x91, 0x91, 0x91, 0x91,
		0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x90};
	static const unsigned char never_used[] = {0xc1};
	CHECK_EQ(media_state_decode(&st, huge_array, sizeof(huge_array)),
		RT_ECORRUPT);
	CHECK_EQ(media_state_decode(&st, huge_map, sizeof(huge_map)),
		RT_ECORRUPT);
	CHECK_EQ(media_state_decode(&st, huge_str, sizeof(huge_str)),
		RT_ECORRUPT);
	CHECK_EQ(media_state_decode(&st, deep, sizeof(deep)), RT_ECORRUPT);
	CHECK_EQ(media_state_decode(&st, never_used, sizeof(never_used)),
		RT_ECORRUPT);
	CHECK_EQ(media_state_decode(&st, NULL, 0), RT_ECORRUPT);
	CHECK_EQ(st.status, MEDIA_STATUS_NONE); /* left zeroed */
}

TEST(actors_media_settled_payload_decodes)
{
	/* What a watcher gets: u64 id, status, hash, reason, u64 cookie,
	 * little-endian with u32 string lengths (actors' wire format). */
	unsigned char buf[256];
	size_t n = 0;
	uint64_t id = 77;
	memcpy(buf + n, &id, 8);
	n += 8;
	const char *fields[3] = {"failed", "", "no such media"};
	for (int i = 0; i < 3; i++) {
		uint32_t len = (uint32_t)strlen(fields[i]);
		memcpy(buf + n, &len, 4);
		n += 4;
		memcpy(buf + n, fields[i], len);
		n += len;
	}
	uint64_t cookie = 9;
	memcpy(buf + n, &cookie, 8);
	n += 8;
	media_settled s;
	CHECK_EQ(media_settled_decode(buf, n, &s), 0);
	CHECK_EQ(s.media_id, 77);
	CHECK_EQ(s.status, MEDIA_STATUS_FAILED);
	CHECK_STR_EQ(s.reason, "no such media");
	CHECK_EQ(s.cookie, 9);
	CHECK_EQ(media_settled_decode(buf, n - 1, &s), API_EINVALID);
	/* "ready" needs a valid hash. */
	memcpy(buf + 12, "ready\0", 6);
	CHECK(media_settled_decode(buf, n, &s) != 0);
}
