/*
 * actors_engage_codec_test.c — engage_unpack, the gate every engage
 * decoder's bytes pass before msgpack-c sees them.
 *
 * Goal: exactly one well-formed object is accepted; truncated input,
 * trailing bytes, the never-used 0xc1, and arrays or maps announcing more
 * elements than bytes remain are refused before any allocation, so a
 * five-byte input cannot make the unpacker reserve gigabytes.
 *
 * Method: hand-written msgpack bytes, each accepted or refused.
 */
#include "actors/engage.h"
#include "tests/test.h"

static int
unpack(const unsigned char *bytes, size_t length)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	CHECK((rc == 0) == engage_msgpack_check(bytes, length) || rc != 0);
	msgpack_unpacked_destroy(&u);
	return rc;
}

TEST(actors_engage_codec_unpack_accepts_one_object)
{
	const unsigned char nil[] = {0xc0};
	CHECK_EQ(unpack(nil, 1), 0);
	const unsigned char nested[] = {0x92, 0x81, 0xa1, 'k', 0xcd, 0x01, 0x02,
		0x93, 0xc4, 0x02, 0xaa, 0xbb, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xd4,
		0x01, 0x02};
	CHECK_EQ(unpack(nested, sizeof nested), 0);
	const unsigned char ext8[] = {0xc7, 0x02, 0x05, 0xaa, 0xbb};
	CHECK_EQ(unpack(ext8, sizeof ext8), 0);
	const unsigned char array16[] = {0xdc, 0x00, 0x02, 0x01, 0x02};
	CHECK_EQ(unpack(array16, sizeof array16), 0);
	const unsigned char str8[] = {0xd9, 0x03, 'a', 'b', 'c'};
	CHECK_EQ(unpack(str8, sizeof str8), 0);
}

TEST(actors_engage_codec_unpack_refuses_malformed)
{
	CHECK_EQ(unpack(NULL, 0), API_EINVALID);
	const unsigned char trailing[] = {0x01, 0x02};
	CHECK_EQ(unpack(trailing, sizeof trailing), API_EINVALID);
	const unsigned char c1[] = {0xc1};
	CHECK_EQ(unpack(c1, 1), API_EINVALID);
	const unsigned char short_str[] = {0xa5, 'a', 'b'};
	CHECK_EQ(unpack(short_str, sizeof short_str), API_EINVALID);
	const unsigned char short_u64[] = {0xcf, 0x00, 0x01};
	CHECK_EQ(unpack(short_u64, sizeof short_u64), API_EINVALID);
	const unsigned char short_array[] = {0x93, 0x01, 0x02};
	CHECK_EQ(unpack(short_array, sizeof short_array), API_EINVALID);
	const unsigned char map_half[] = {0x81, 0x01};
	CHECK_EQ(unpack(map_half, sizeof map_half), API_EINVALID);
	const unsigned char short_bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
	CHECK_EQ(unpack(short_bin32, sizeof short_bin32), API_EINVALID);
}

TEST(actors_engage_codec_unpack_refuses_huge_announcements)
{
	/* 4 billion elements announced in five bytes. */
	const unsigned char array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
	CHECK_EQ(unpack(array32, sizeof array32), API_EINVALID);
	const unsigned char map32[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01};
	CHECK_EQ(unpack(map32, sizeof map32), API_EINVALID);
	/* Nested: each level announces more than the rest can hold. */
	const unsigned char nested[] = {0x92, 0xdd, 0x00, 0x01, 0x00, 0x00,
		0x01};
	CHECK_EQ(unpack(nested, sizeof nested), API_EINVALID);
	/* Deep nesting is bounded by msgpack-c's own stack: refused or
	 * accepted, never a crash. */
	unsigned char deep[200];
	memset(deep, 0x91, sizeof deep);
	deep[sizeof deep - 1] = 0x01;
	int rc = unpack(deep, sizeof deep);
	CHECK(rc == 0 || rc == API_EINVALID);
}
