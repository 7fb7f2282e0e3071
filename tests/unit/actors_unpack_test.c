/*
 * actors_unpack_test.c — actors__unpack, the api client's decoder of
 * answer bodies.
 *
 * Goal: it gives the object msgpack-c's msgpack_unpack gives for the same
 * bytes (every type, both integer signs, float widths, strings pointing
 * into the input), refuses what msgpack-c refuses (truncation, 0xc1,
 * trailing bytes, containers nested past msgpack-c's 32), and refuses
 * before allocating a container that announces more elements than bytes
 * remain.
 *
 * Method: hand-written bytes at each edge; then seeded random objects
 * packed with msgpack-c's packer, each decoded by both and compared, and
 * every truncation and a few byte flips of each held to the same answer.
 */
#include "actors/engage.h"
#include "actors/internal.h"
#include "tests/msgpack_same.h"
#include "tests/test.h"

/* Decodes with both; checks they agree; returns actors__unpack's code. */
static int
both(const void *bytes, size_t length)
{
	msgpack_zone *mine = msgpack_zone_new(1024);
	msgpack_zone *theirs = msgpack_zone_new(1024);
	CHECK(mine != NULL);
	CHECK(theirs != NULL);
	msgpack_object a, b;
	int rc = actors__unpack(bytes, length, mine, &a);
	CHECK(rc == API_OK || rc == API_EINVALID);
	if (engage_msgpack_check(bytes, length)) {
		size_t offset = 0;
		bool ok = msgpack_unpack(bytes, length, &offset, theirs, &b) ==
			MSGPACK_UNPACK_SUCCESS;
		CHECK_EQ(ok, rc == API_OK);
		if (ok)
			CHECK(msgpack_same(&a, &b));
	} else {
		CHECK_EQ(rc, API_EINVALID);
	}
	msgpack_zone_free(mine);
	msgpack_zone_free(theirs);
	return rc;
}

TEST(actors_unpack_scalars_as_msgpack_c)
{
	const unsigned char cases[][10] = {
		{0xc0}, {0xc2}, {0xc3}, {0x7f}, {0xe0}, {0xcc, 0xff},
		{0xcd, 0x12, 0x34}, {0xce, 1, 2, 3, 4},
		{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0xd0, 0x05}, {0xd0, 0x80}, {0xd1, 0xff, 0xfe},
		{0xd2, 0, 0, 0, 9}, {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{0xd3, 0, 0, 0, 0, 0, 0, 0, 7}, {0xca, 0x3f, 0xc0, 0, 0},
		{0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1},
	};
	const size_t lengths[] = {1, 1, 1, 1, 1, 2, 3, 5, 9, 2, 2, 3, 5, 9, 9,
		5, 9};
	for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
		CHECK_EQ(both(cases[i], lengths[i]), API_OK);
	/* int8 5 folds to a positive integer, as in msgpack-c */
	msgpack_zone *z = msgpack_zone_new(256);
	msgpack_object o;
	CHECK_EQ(actors__unpack(cases[9], 2, z, &o), API_OK);
	CHECK_EQ(o.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	CHECK_EQ_U64(o.via.u64, 5);
	msgpack_zone_free(z);
}

TEST(actors_unpack_containers_and_bytes_as_msgpack_c)
{
	const unsigned char nested[] = {0x92, 0x81, 0xa1, 'k', 0xcd, 0x01, 0x02,
		0x93, 0xc4, 0x02, 0xaa, 0xbb, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xd4,
		0x01, 0x02};
	CHECK_EQ(both(nested, sizeof nested), API_OK);
	const unsigned char ext8[] = {0xc7, 0x02, 0x05, 0xaa, 0xbb};
	CHECK_EQ(both(ext8, sizeof ext8), API_OK);
	const unsigned char ext0[] = {0xc7, 0x00, 0x05};
	CHECK_EQ(both(ext0, sizeof ext0), API_OK);
	const unsigned char fixext16[] = {0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9,
		10, 11, 12, 13, 14, 15, 16};
	CHECK_EQ(both(fixext16, sizeof fixext16), API_OK);
	const unsigned char array16[] = {0xdc, 0x00, 0x02, 0x01, 0x02};
	CHECK_EQ(both(array16, sizeof array16), API_OK);
	const unsigned char map16[] = {0xde, 0x00, 0x01, 0xa0, 0x90};
	CHECK_EQ(both(map16, sizeof map16), API_OK);
	const unsigned char empties[] = {0x93, 0x90, 0x80, 0xa0};
	CHECK_EQ(both(empties, sizeof empties), API_OK);
	const unsigned char str8[] = {0xd9, 0x03, 'a', 'b', 'c'};
	CHECK_EQ(both(str8, sizeof str8), API_OK);
	const unsigned char bin16[] = {0xc5, 0x00, 0x01, 0x00};
	CHECK_EQ(both(bin16, sizeof bin16), API_OK);
}

TEST(actors_unpack_refuses_what_msgpack_c_refuses)
{
	CHECK_EQ(both(NULL, 0), API_EINVALID);
	const unsigned char trailing[] = {0x01, 0x02};
	CHECK_EQ(both(trailing, sizeof trailing), API_EINVALID);
	const unsigned char c1[] = {0xc1};
	CHECK_EQ(both(c1, 1), API_EINVALID);
	const unsigned char short_str[] = {0xa5, 'a', 'b'};
	CHECK_EQ(both(short_str, sizeof short_str), API_EINVALID);
	const unsigned char short_array[] = {0x93, 0x01, 0x02};
	CHECK_EQ(both(short_array, sizeof short_array), API_EINVALID);
	const unsigned char short_map[] = {0x81, 0x01};
	CHECK_EQ(both(short_map, sizeof short_map), API_EINVALID);
	const unsigned char short_u32[] = {0xce, 0x01};
	CHECK_EQ(both(short_u32, sizeof short_u32), API_EINVALID);
	/* four billion elements announced in six bytes: refused before any
	 * allocation (msgpack-c is not asked: it would reserve them) */
	const unsigned char huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
	msgpack_zone *z = msgpack_zone_new(256);
	msgpack_object o;
	CHECK_EQ(actors__unpack(huge, sizeof huge, z, &o), API_EINVALID);
	const unsigned char huge_map[] = {0xdf, 0x80, 0, 0, 0, 1, 2};
	CHECK_EQ(actors__unpack(huge_map, sizeof huge_map, z, &o),
		API_EINVALID);
	msgpack_zone_free(z);
}

TEST(actors_unpack_depth_as_msgpack_c)
{
	/* 32 open arrays hold; a 33rd, even empty, does not */
	unsigned char deep[40];
	for (int i = 0; i < 32; i++)
		deep[i] = 0x91;
	deep[32] = 0x01;
	CHECK_EQ(both(deep, 33), API_OK);
	deep[32] = 0x90;
	CHECK_EQ(both(deep, 33), API_EINVALID);
	deep[32] = 0x91;
	deep[33] = 0x01;
	CHECK_EQ(both(deep, 34), API_EINVALID);
}

static uint64_t
next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
pack_random(msgpack_packer *p, uint64_t *s, int depth)
{
	static const char text[] = "a day at the beach #sun #sea, and then";
	uint64_t r = next(s);
	switch (r % (depth < 6 ? 12 : 9)) {
	case 0: msgpack_pack_nil(p); break;
	case 1: (r >> 8) & 1 ? msgpack_pack_true(p) : msgpack_pack_false(p);
		break;
	case 2: msgpack_pack_uint64(p, next(s) >> (next(s) % 64)); break;
	case 3: msgpack_pack_int64(p, -(int64_t)(next(s) >> (1 + next(s) % 63)));
		break;
	case 4: msgpack_pack_float(p, (float)(r % 1000) / 7.0f); break;
	case 5: msgpack_pack_double(p, (double)(r % 100000) / 3.0); break;
	case 6: {
		size_t n = (r >> 8) % sizeof text;
		msgpack_pack_str_with_body(p, text, n);
		break;
	}
	case 7: msgpack_pack_bin_with_body(p, text, (r >> 8) % 300 % sizeof text);
		break;
	case 8: msgpack_pack_ext_with_body(p, text, (r >> 8) % 20, (int8_t)r);
		break;
	case 9: case 10: {
		uint32_t n = (uint32_t)((r >> 8) % 7);
		msgpack_pack_array(p, n);
		for (uint32_t i = 0; i < n; i++)
			pack_random(p, s, depth + 1);
		break;
	}
	default: {
		uint32_t n = (uint32_t)((r >> 8) % 6);
		msgpack_pack_map(p, n);
		for (uint32_t i = 0; i < 2 * n; i++)
			pack_random(p, s, depth + 1);
		break;
	}
	}
}

TEST(actors_unpack_random_objects_and_their_damage_as_msgpack_c)
{
	uint64_t s = 42;
	for (int k = 0; k < 2000; k++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer p;
		msgpack_packer_init(&p, &sb, msgpack_sbuffer_write);
		pack_random(&p, &s, 0);
		CHECK_EQ(both(sb.data, sb.size), API_OK);
		for (size_t cut = 0; cut < sb.size; cut += 1 + sb.size / 64)
			CHECK_EQ(both(sb.data, cut), API_EINVALID);
		for (int f = 0; f < 8 && sb.size > 0; f++) {
			size_t at = next(&s) % sb.size;
			char was = sb.data[at];
			sb.data[at] = (char)next(&s);
			(void)both(sb.data, sb.size);
			sb.data[at] = was;
		}
		msgpack_sbuffer_destroy(&sb);
	}
}
