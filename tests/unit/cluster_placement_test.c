/*
 * cluster_placement_test.c — placement balance, minimal movement, map
 * file and map invariants.
 *
 * Method: build maps with cl_map_add_node / cl_map_target; count loads
 * over 1,000,000 actors with uniform random partitions; compare owners
 * before and after joins, drains and removals; write, reload and corrupt
 * the map file.
 */
#include "cluster/internal.h"
#include "tests/test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static void
make_map(cl_map *map, uint32_t nodes)
{
	cl_map_init(map);
	for (uint32_t i = 0; i < nodes; i++) {
		char address[32];
		snprintf(address, sizeof address, "10.0.0.%u:7400", i + 1);
		CHECK_EQ(cl_map_add_node(map, address, CL_NODE_ACTIVE, NULL), 0);
	}
	cl_map *t = malloc(sizeof *t);
	cl_map_target(map, t);
	*map = *t;
	free(t);
}

static double
actor_load_ratio(const cl_map *map, uint32_t actors)
{
	uint64_t load[CL_NODES_MAX] = {0};
	uint64_t rng = 42;
	for (uint32_t a = 0; a < actors; a++) {
		uint32_t p = (uint32_t)(cl__rand_next(&rng) % CL_PARTITIONS);
		load[cl__map_index(map, map->owner[p])]++;
	}
	uint64_t max = 0;
	for (uint32_t i = 0; i < map->nodes_count; i++)
		max = load[i] > max ? load[i] : max;
	return (double)max / ((double)actors / map->nodes_count);
}

TEST(cluster_placement_partition_of_id)
{
	uint64_t id = (123456789ull << 23) | (5000ull << 10) | 17u;
	CHECK_EQ(cl_partition_of(id), 5000);
	CHECK_EQ(cl_inbox_node(cl_inbox_id_make(7, 99)), 7);
	CHECK_EQ(cl_inbox_id_make(7, 99) & 0xffff, 99);
}

TEST(cluster_placement_balance_eight_nodes)
{
	cl_map *map = malloc(sizeof *map);
	make_map(map, 8);
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(map, counts);
	for (uint32_t i = 0; i < 8; i++)
		CHECK_EQ(counts[i], 1024);
	double r = actor_load_ratio(map, 1000000);
	CHECK_MSG(r <= 1.05, "max/mean %.4f", r);
	free(map);
}

TEST(cluster_placement_join_moves_only_to_joiner)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *next = malloc(sizeof *next);
	make_map(map, 8);
	*next = *map;
	uint16_t id;
	CHECK_EQ(cl_map_add_node(next, "10.0.0.9:7400", CL_NODE_ACTIVE, &id), 0);
	cl_map *t = malloc(sizeof *t);
	uint32_t moved = cl_map_target(next, t);
	uint32_t to_joiner = 0;
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (map->owner[p] != t->owner[p]) {
			CHECK_EQ(t->owner[p], id);
			to_joiner++;
		}
	CHECK_EQ(moved, to_joiner);
	double fraction = (double)moved / CL_PARTITIONS;
	double ideal = 1.0 / 9.0;
	CHECK_MSG(fraction <= ideal * 1.02 && fraction >= ideal * 0.98,
		"moved %.4f ideal %.4f", fraction, ideal);
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(t, counts);
	for (uint32_t i = 0; i < 9; i++)
		CHECK(counts[i] == 910 || counts[i] == 911);
	free(t);
	free(next);
	free(map);
}

TEST(cluster_placement_drain_and_remove_move_only_that_node)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *t = malloc(sizeof *t);
	make_map(map, 4);
	cl_map drained = *map;
	CHECK_EQ(cl_map_set_state(&drained, 2, CL_NODE_DRAINING), 0);
	cl_map_target(&drained, t);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++) {
		if (map->owner[p] != 2)
			CHECK_EQ(t->owner[p], map->owner[p]);
		else
			CHECK(t->owner[p] != 2);
	}
	cl_map removed = *map;
	CHECK_EQ(cl_map_remove_node(&removed, 3), 0);
	CHECK_EQ(cl_map_remove_node(&removed, 3), CL_ENOTFOUND);
	cl_map_target(&removed, t);
	for (uint32_t p = 0; p < CL_PARTITIONS; p++)
		if (map->owner[p] != 3)
			CHECK_EQ(t->owner[p], map->owner[p]);
	CHECK(cl__map_valid(t));
	free(t);
	free(map);
}

TEST(cluster_placement_steps_are_throttled)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *target = malloc(sizeof *target);
	cl_map *next = malloc(sizeof *next);
	make_map(map, 3);
	map->epoch = 5;
	CHECK_EQ(cl_map_add_node(map, "x:1", CL_NODE_ACTIVE, NULL), 0);
	uint32_t total = cl_map_target(map, target);
	uint32_t steps = 0;
	while (cl_map_target(map, target) > 0) {
		uint32_t moved = cl_map_step(map, target, 256, next);
		CHECK(moved > 0 && moved <= 256);
		CHECK_EQ_U64(next->epoch, map->epoch + 1);
		*map = *next;
		CHECK(++steps < 100);
	}
	CHECK_EQ(steps, (total + 255) / 256);
	free(next);
	free(target);
	free(map);
}

TEST(cluster_placement_map_file_roundtrip_and_corruption)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *back = malloc(sizeof *back);
	make_map(map, 5);
	map->epoch = 77;
	const char *dir = test_tmpdir();
	uint16_t self = 0;
	CHECK_EQ(cl_map_load(dir, &self, back), CL_ENOTFOUND);
	CHECK_EQ(cl_map_save(dir, 3, map), 0);
	CHECK_EQ(cl_map_load(dir, &self, back), 0);
	CHECK_EQ(self, 3);
	CHECK(memcmp(map, back, sizeof *map) == 0);
	char path[512];
	snprintf(path, sizeof path, "%s/cluster.map", dir);
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	unsigned char byte = 0x5a;
	CHECK(pwrite(fd, &byte, 1, 200) == 1);
	close(fd);
	CHECK_EQ(cl_map_load(dir, &self, back), CL_ECORRUPT);
	free(back);
	free(map);
}

/* The file's second copy starts here (map_file.c, format 3). */
#define MAP_FILE_SLOT_BYTES (512u << 10)

static void
corrupt_at(const char *dir, off_t offset)
{
	char path[512];
	snprintf(path, sizeof path, "%s/cluster.map", dir);
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	unsigned char byte = 0;
	CHECK(pread(fd, &byte, 1, offset) == 1);
	byte ^= 0x5a;
	CHECK(pwrite(fd, &byte, 1, offset) == 1);
	close(fd);
}

/* Saves after the first overwrite the older of two copies in place: a
 * save torn by a crash (here: a flipped byte in the copy written last)
 * leaves the one before it, and the next save goes over the torn copy. */
TEST(cluster_placement_map_file_torn_save_keeps_the_previous)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *back = malloc(sizeof *back);
	make_map(map, 3);
	const char *dir = test_tmpdir();
	uint16_t self = 0;
	cl__handoff_record records[2] = {
		{.partition = 7, .mode = CL__HANDOFF_ARRIVING, .peer = 2,
			.epoch = 5},
		{.partition = 9, .mode = CL__HANDOFF_LEAVING, .peer = 3,
			.epoch = 5},
	};
	map->epoch = 1;
	CHECK_EQ(cl__map_file_save(dir, 1, map, NULL, 0), 0);
	map->epoch = 2;
	CHECK_EQ(cl__map_file_save(dir, 1, map, records, 2), 0);
	cl__handoff_record *got = malloc(CL_PARTITIONS * sizeof *got);
	uint32_t count = 0;
	CHECK_EQ(cl__map_file_load(dir, &self, back, got, &count), 0);
	CHECK_EQ(back->epoch, 2);
	CHECK_EQ(count, 2);
	CHECK_EQ(got[0].partition, 7);
	CHECK_EQ(got[1].mode, CL__HANDOFF_LEAVING);
	/* the second save went to the second copy: tear it */
	corrupt_at(dir, MAP_FILE_SLOT_BYTES + 100);
	CHECK_EQ(cl__map_file_load(dir, &self, back, got, &count), 0);
	CHECK_EQ(back->epoch, 1);
	CHECK_EQ(count, 0);
	CHECK_EQ(self, 1);
	/* the next save replaces the torn copy, not the good one */
	map->epoch = 3;
	CHECK_EQ(cl__map_file_save(dir, 1, map, records, 1), 0);
	CHECK_EQ(cl__map_file_load(dir, &self, back, got, &count), 0);
	CHECK_EQ(back->epoch, 3);
	CHECK_EQ(count, 1);
	CHECK(memcmp(map, back, sizeof *map) == 0);
	/* and the first copy, now the older, is the fallback no longer
	 * needed: tearing it changes nothing */
	corrupt_at(dir, 100);
	CHECK_EQ(cl__map_file_load(dir, &self, back, got, &count), 0);
	CHECK_EQ(back->epoch, 3);
	/* both torn: nothing to trust */
	corrupt_at(dir, MAP_FILE_SLOT_BYTES + 100);
	CHECK_EQ(cl__map_file_load(dir, &self, back, got, &count),
		CL_ECORRUPT);
	free(got);
	free(back);
	free(map);
}

/* A node upgraded in place finds a format-2 file (one copy after a
 * 24-byte header): it is read, and the next save writes format 3. */
TEST(cluster_placement_map_file_reads_format_2)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *back = malloc(sizeof *back);
	make_map(map, 2);
	map->epoch = 12;
	rt_buffer b = {0};
	unsigned char header[24] = {'F', 'L', 'C', 'M', 2};
	CHECK_EQ(rt_buffer_append(&b, header, sizeof header), 0);
	unsigned char self[2] = {2, 0};
	CHECK_EQ(rt_buffer_append(&b, self, sizeof self), 0);
	cl__packer pk;
	cl__packer_init(&pk, &b);
	msgpack_pack_array(&pk.pk, 2);
	CHECK_EQ(cl__map_pack(&pk, map), 0);
	msgpack_pack_array(&pk.pk, 1);
	msgpack_pack_array(&pk.pk, 4);
	msgpack_pack_uint32(&pk.pk, 33);
	msgpack_pack_uint8(&pk.pk, CL__HANDOFF_ARRIVING);
	msgpack_pack_uint16(&pk.pk, 1);
	msgpack_pack_uint64(&pk.pk, 12);
	CHECK_EQ(pk.status, 0);
	uint32_t payload = (uint32_t)(b.length - 24);
	uint64_t sum = cl__fnv64(b.bytes + 24, payload);
	for (int i = 0; i < 4; i++)
		b.bytes[8 + i] = (unsigned char)(payload >> (8 * i));
	for (int i = 0; i < 8; i++)
		b.bytes[16 + i] = (unsigned char)(sum >> (8 * i));
	const char *dir = test_tmpdir();
	char path[512];
	snprintf(path, sizeof path, "%s/cluster.map", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, b.bytes, b.length) == (ssize_t)b.length);
	close(fd);
	rt_buffer_free(&b);
	cl__handoff_record *got = malloc(CL_PARTITIONS * sizeof *got);
	uint32_t count = 0;
	uint16_t id = 0;
	CHECK_EQ(cl__map_file_load(dir, &id, back, got, &count), 0);
	CHECK_EQ(id, 2);
	CHECK_EQ(back->epoch, 12);
	CHECK_EQ(count, 1);
	CHECK_EQ(got[0].partition, 33);
	map->epoch = 13;
	CHECK_EQ(cl__map_file_save(dir, 2, map, got, count), 0);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ((uint64_t)st.st_size, 2u * MAP_FILE_SLOT_BYTES);
	CHECK_EQ(cl__map_file_load(dir, &id, back, got, &count), 0);
	CHECK_EQ(back->epoch, 13);
	CHECK_EQ(count, 1);
	free(got);
	free(back);
	free(map);
}

TEST(cluster_placement_map_decode_rejects_bad_owner)
{
	cl_map *map = malloc(sizeof *map);
	cl_map *back = malloc(sizeof *back);
	make_map(map, 2);
	rt_buffer b = {0};
	CHECK_EQ(cl_map_encode(map, &b), 0);
	CHECK_EQ(cl_map_decode(b.bytes, b.length, back), 0);
	CHECK(memcmp(map, back, sizeof *map) == 0);
	/* owners are the last 16 KiB: make partition 0 owned by node 9 */
	b.bytes[b.length - 2 * CL_PARTITIONS] = 9;
	CHECK_EQ(cl_map_decode(b.bytes, b.length, back), CL_ECORRUPT);
	CHECK(cl_map_decode(b.bytes, b.length - 1, back) != 0);
	rt_buffer_free(&b);
	free(back);
	free(map);
}
