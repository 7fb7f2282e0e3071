/*
 * map_file.c — the partition map's msgpack form and its file.
 *
 * Wire form: [version, epoch, next_node_id, [[id, state, address]...],
 * owners(bin: CL_PARTITIONS little-endian u16), moved_at(bin:
 * CL_PARTITIONS little-endian u32; since version 2)].
 *
 * File <dir>/cluster.map: a 24-byte header (magic "FLCM", u32 format
 * version, u32 payload length, u32 reserved, u64 FNV-1a of the payload,
 * all little-endian) and the payload: u16 self id (LE) then, in format
 * 2, [map's wire form, [[partition, mode, peer, epoch]...]]: the map and
 * the handoffs this node had in flight under it, so that a restart
 * resumes them (format 1, still read: the map's wire form alone, no
 * handoffs). Written to cluster.map.tmp, fsynced, renamed over the old
 * file, and the directory fsynced: a crash leaves one whole file.
 *
 * What it does not do: keep history; the map is small and the epoch in
 * it says which one it is.
 */
#include "cluster/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define MAP_FORMAT_VERSION 2u
#define MAP_FILE_FORMAT_VERSION 2u
/* Format 1 (a map without handoffs) is still read. */
#define MAP_FILE_FORMAT_VERSION_1 1u
#define MAP_RECORD_FIELDS 4u
#define MAP_FILE_NAME "cluster.map"
#define MAP_FILE_TMP_NAME "cluster.map.tmp"
#define MAP_FILE_HEADER_BYTES 24u
/* A map is ~21 KiB; a file past 1 MiB is not one of ours. */
#define MAP_FILE_BYTES_MAX (1u << 20)
/* Paths inside the data directory. */
#define MAP_PATH_BYTES_MAX 1024u
#define MAP_NODE_FIELDS 3u
#define MAP_FIELDS 6u
/* Format 1 (no moved_at) is still read: map files written before it. */
#define MAP_FORMAT_VERSION_1 1u
#define MAP_FIELDS_1 5u

int
cl__map_pack(cl__packer *p, const cl_map *map)
{
	CL_ASSERT(cl__map_valid(map));
	msgpack_pack_array(&p->pk, MAP_FIELDS);
	msgpack_pack_uint32(&p->pk, MAP_FORMAT_VERSION);
	msgpack_pack_uint64(&p->pk, map->epoch);
	msgpack_pack_uint16(&p->pk, map->next_node_id);
	msgpack_pack_array(&p->pk, map->nodes_count);
	for (uint32_t i = 0; i < map->nodes_count; i++) {
		const cl_map_node *n = &map->nodes[i];
		size_t len = strlen(n->address);
		msgpack_pack_array(&p->pk, MAP_NODE_FIELDS);
		msgpack_pack_uint16(&p->pk, n->id);
		msgpack_pack_uint8(&p->pk, n->state);
		msgpack_pack_str(&p->pk, len);
		msgpack_pack_str_body(&p->pk, n->address, len);
	}
	unsigned char owners[CL_PARTITIONS * 2];
	for (uint32_t q = 0; q < CL_PARTITIONS; q++) {
		owners[2 * q] = (unsigned char)map->owner[q];
		owners[2 * q + 1] = (unsigned char)(map->owner[q] >> 8);
	}
	msgpack_pack_bin(&p->pk, sizeof owners);
	msgpack_pack_bin_body(&p->pk, owners, sizeof owners);
	unsigned char *moved = malloc(CL_PARTITIONS * 4u);
	CL_ASSERT(moved != NULL);
	for (uint32_t q = 0; q < CL_PARTITIONS; q++)
		for (uint32_t b = 0; b < 4; b++)
			moved[4 * q + b] = (unsigned char)(map->moved_at[q] >>
				(8 * b));
	msgpack_pack_bin(&p->pk, CL_PARTITIONS * 4u);
	msgpack_pack_bin_body(&p->pk, moved, CL_PARTITIONS * 4u);
	free(moved);
	return p->status;
}

int
cl__map_from_object(const msgpack_object *o, cl_map *map)
{
	const msgpack_object *f;
	const msgpack_object *nodes;
	uint32_t n;
	uint32_t count;
	uint32_t version;
	uint32_t next_id;
	cl_map_init(map);
	if (cl__obj_array(o, MAP_FIELDS_1, &f, &n) != 0)
		return CL_ECORRUPT;
	if (cl__obj_u32(&f[0], &version) != 0)
		return CL_ECORRUPT;
	if (version != MAP_FORMAT_VERSION && version != MAP_FORMAT_VERSION_1)
		return CL_EVERSION;
	if (n != (version == MAP_FORMAT_VERSION_1 ? MAP_FIELDS_1 : MAP_FIELDS))
		return CL_ECORRUPT;
	if (cl__obj_u64(&f[1], &map->epoch) != 0 ||
		cl__obj_u32(&f[2], &next_id) != 0 || next_id == 0 ||
		next_id > CL_NODE_ID_MAX + 1u ||
		cl__obj_array(&f[3], 0, &nodes, &count) != 0 ||
		count > CL_NODES_MAX)
		return CL_ECORRUPT;
	map->next_node_id = (uint16_t)next_id; /* 65536 wraps to 0: full */
	for (uint32_t i = 0; i < count; i++) {
		const msgpack_object *nf;
		uint32_t nn;
		uint32_t id;
		uint32_t state;
		cl_map_node *node = &map->nodes[i];
		if (cl__obj_array(&nodes[i], MAP_NODE_FIELDS, &nf, &nn) != 0 ||
			nn != MAP_NODE_FIELDS ||
			cl__obj_u32(&nf[0], &id) != 0 || id == 0 ||
			id > CL_NODE_ID_MAX ||
			cl__obj_u32(&nf[1], &state) != 0 ||
			state > CL_NODE_DRAINING ||
			cl__obj_str(&nf[2], node->address,
				sizeof node->address) != 0)
			return CL_ECORRUPT;
		node->id = (uint16_t)id;
		node->state = (uint8_t)state;
	}
	map->nodes_count = (uint16_t)count;
	const unsigned char *owners;
	uint32_t owners_bytes;
	if (cl__obj_bin(&f[4], &owners, &owners_bytes) != 0 ||
		owners_bytes != CL_PARTITIONS * 2u)
		return CL_ECORRUPT;
	for (uint32_t q = 0; q < CL_PARTITIONS; q++)
		map->owner[q] = (uint16_t)(owners[2 * q] |
					   (uint16_t)owners[2 * q + 1] << 8);
	const unsigned char *moved;
	uint32_t moved_bytes;
	if (version == MAP_FORMAT_VERSION_1)
		goto check; /* every moved_at 0: no handoff names one */
	if (cl__obj_bin(&f[5], &moved, &moved_bytes) != 0 ||
		moved_bytes != CL_PARTITIONS * 4u)
		return CL_ECORRUPT;
	for (uint32_t q = 0; q < CL_PARTITIONS; q++) {
		uint32_t v = 0;
		for (uint32_t b = 0; b < 4; b++)
			v |= (uint32_t)moved[4 * q + b] << (8 * b);
		if (v > map->epoch)
			return CL_ECORRUPT;
		map->moved_at[q] = v;
	}
check:
	/* ids sorted, below next id, owners members */
	for (uint32_t i = 0; i < count; i++)
		if (map->next_node_id != 0 &&
			map->nodes[i].id >= map->next_node_id)
			return CL_ECORRUPT;
	bool sorted = true;
	for (uint32_t i = 1; i < count; i++)
		sorted = sorted && map->nodes[i - 1].id < map->nodes[i].id;
	if (!sorted)
		return CL_ECORRUPT;
	for (uint32_t q = 0; q < CL_PARTITIONS; q++)
		if (map->owner[q] != 0 && cl__map_index(map, map->owner[q]) < 0)
			return CL_ECORRUPT;
	return CL_OK;
}

int
cl_map_encode(const cl_map *map, rt_buffer *out)
{
	CL_ASSERT(map != NULL);
	CL_ASSERT(out != NULL);
	cl__packer p;
	cl__packer_init(&p, out);
	return cl__map_pack(&p, map);
}

int
cl_map_decode(const void *bytes, size_t length, cl_map *map)
{
	CL_ASSERT(map != NULL);
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 2048))
		return CL_ENOMEM;
	msgpack_object o;
	int rc = cl__unpack(bytes, length, &zone, &o);
	if (rc == 0)
		rc = cl__map_from_object(&o, map);
	msgpack_zone_destroy(&zone);
	return rc;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
get_u32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static int
write_all(int fd, const void *bytes, size_t length)
{
	const unsigned char *p = bytes;
	while (length > 0) {
		ssize_t w = write(fd, p, length);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CL_EIO;
		p += w;
		length -= (size_t)w;
	}
	return CL_OK;
}

static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return CL_EIO;
	int rc = fsync(fd) == 0 ? CL_OK : CL_EIO;
	close(fd);
	return rc;
}

static int
records_pack(rt_buffer *out, const cl_map *map,
	const cl__handoff_record *records, uint32_t count)
{
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, 2);
	int rc = cl__map_pack(&p, map);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&p.pk, count);
	for (uint32_t i = 0; i < count; i++) {
		const cl__handoff_record *r = &records[i];
		CL_ASSERT(r->partition < CL_PARTITIONS);
		CL_ASSERT(r->mode == CL__HANDOFF_LEAVING ||
			r->mode == CL__HANDOFF_ARRIVING);
		msgpack_pack_array(&p.pk, MAP_RECORD_FIELDS);
		msgpack_pack_uint32(&p.pk, r->partition);
		msgpack_pack_uint8(&p.pk, r->mode);
		msgpack_pack_uint16(&p.pk, r->peer);
		msgpack_pack_uint64(&p.pk, r->epoch);
	}
	return p.status;
}

static int
records_unpack(const void *bytes, size_t length, cl_map *map,
	cl__handoff_record *records, uint32_t *count)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 4096))
		return CL_ENOMEM;
	msgpack_object o;
	const msgpack_object *f;
	const msgpack_object *items;
	uint32_t k;
	uint32_t n = 0;
	int rc = cl__unpack(bytes, length, &zone, &o);
	if (rc == 0 && (cl__obj_array(&o, 2, &f, &k) != 0 ||
		cl__obj_array(&f[1], 0, &items, &n) != 0 ||
		n > CL_PARTITIONS))
		rc = CL_ECORRUPT;
	if (rc == 0)
		rc = cl__map_from_object(&f[0], map);
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		const msgpack_object *g;
		uint32_t partition, mode, peer;
		uint64_t epoch;
		if (cl__obj_array(&items[i], MAP_RECORD_FIELDS, &g, &k) != 0 ||
			cl__obj_u32(&g[0], &partition) != 0 ||
			cl__obj_u32(&g[1], &mode) != 0 ||
			cl__obj_u32(&g[2], &peer) != 0 ||
			cl__obj_u64(&g[3], &epoch) != 0 ||
			partition >= CL_PARTITIONS || peer == 0 ||
			peer > CL_NODE_ID_MAX ||
			(mode != CL__HANDOFF_LEAVING &&
				mode != CL__HANDOFF_ARRIVING)) {
			rc = CL_ECORRUPT;
			break;
		}
		records[i] = (cl__handoff_record){partition, (uint8_t)mode,
			(uint16_t)peer, epoch};
	}
	if (rc == 0 && count != NULL)
		*count = n;
	msgpack_zone_destroy(&zone);
	return rc;
}

int
cl_map_save(const char *dir, uint16_t self_id, const cl_map *map)
{
	return cl__map_file_save(dir, self_id, map, NULL, 0);
}

int
cl_map_load(const char *dir, uint16_t *self_id_out, cl_map *map)
{
	return cl__map_file_load(dir, self_id_out, map, NULL, NULL);
}

int
cl__map_file_save(const char *dir, uint16_t self_id, const cl_map *map,
	const cl__handoff_record *records, uint32_t count)
{
	CL_ASSERT(dir != NULL);
	CL_ASSERT(map != NULL);
	CL_ASSERT(records != NULL || count == 0);
	CL_ASSERT(count <= CL_PARTITIONS);
	char path[MAP_PATH_BYTES_MAX];
	char tmp[MAP_PATH_BYTES_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, MAP_FILE_NAME) >=
			sizeof path ||
		(size_t)snprintf(tmp, sizeof tmp, "%s/%s", dir,
			MAP_FILE_TMP_NAME) >= sizeof tmp)
		return CL_EINVAL;
	rt_buffer b = {0};
	unsigned char header[MAP_FILE_HEADER_BYTES] = {0};
	int rc = rt_buffer_append(&b, header, sizeof header) == 0 ? 0 : CL_ENOMEM;
	unsigned char self[2] = {(unsigned char)self_id,
		(unsigned char)(self_id >> 8)};
	if (rc == 0 && rt_buffer_append(&b, self, sizeof self) != 0)
		rc = CL_ENOMEM;
	if (rc == 0)
		rc = records_pack(&b, map, records, count);
	if (rc != 0)
		goto fail_buffer;
	size_t payload = b.length - MAP_FILE_HEADER_BYTES;
	memcpy(b.bytes, "FLCM", 4);
	put_u32(b.bytes + 4, MAP_FILE_FORMAT_VERSION);
	put_u32(b.bytes + 8, (uint32_t)payload);
	uint64_t sum = cl__fnv64(b.bytes + MAP_FILE_HEADER_BYTES, payload);
	put_u32(b.bytes + 16, (uint32_t)sum);
	put_u32(b.bytes + 20, (uint32_t)(sum >> 32));

	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = CL_EIO;
		goto fail_buffer;
	}
	rc = write_all(fd, b.bytes, b.length);
	if (rc == 0 && fsync(fd) != 0)
		rc = CL_EIO;
	if (close(fd) != 0 && rc == 0)
		rc = CL_EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = CL_EIO;
	if (rc == 0)
		rc = sync_dir(dir);
fail_buffer:
	rt_buffer_free(&b);
	return rc;
}

int
cl__map_file_load(const char *dir, uint16_t *self_id_out, cl_map *map,
	cl__handoff_record *records, uint32_t *count)
{
	CL_ASSERT(dir != NULL);
	CL_ASSERT(map != NULL);
	if (count != NULL)
		*count = 0;
	char path[MAP_PATH_BYTES_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, MAP_FILE_NAME) >=
		sizeof path)
		return CL_EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? CL_ENOTFOUND : CL_EIO;
	unsigned char *bytes = malloc(MAP_FILE_BYTES_MAX);
	int rc = bytes == NULL ? CL_ENOMEM : CL_OK;
	size_t length = 0;
	while (rc == 0 && length < MAP_FILE_BYTES_MAX) {
		ssize_t r = read(fd, bytes + length, MAP_FILE_BYTES_MAX - length);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = CL_EIO;
		if (r <= 0)
			break;
		length += (size_t)r;
	}
	close(fd);
	if (rc != 0)
		goto done;
	if (length < MAP_FILE_HEADER_BYTES + 2u ||
		memcmp(bytes, "FLCM", 4) != 0 ||
		get_u32(bytes + 8) != length - MAP_FILE_HEADER_BYTES) {
		rc = CL_ECORRUPT;
		goto done;
	}
	uint32_t version = get_u32(bytes + 4);
	if (version != MAP_FILE_FORMAT_VERSION &&
		version != MAP_FILE_FORMAT_VERSION_1) {
		rc = CL_EVERSION;
		goto done;
	}
	uint64_t sum = (uint64_t)get_u32(bytes + 16) |
		       (uint64_t)get_u32(bytes + 20) << 32;
	const unsigned char *payload = bytes + MAP_FILE_HEADER_BYTES;
	size_t payload_bytes = length - MAP_FILE_HEADER_BYTES;
	if (cl__fnv64(payload, payload_bytes) != sum) {
		rc = CL_ECORRUPT;
		goto done;
	}
	if (self_id_out != NULL)
		*self_id_out = (uint16_t)(payload[0] | payload[1] << 8);
	if (version == MAP_FILE_FORMAT_VERSION_1) {
		rc = cl_map_decode(payload + 2, payload_bytes - 2, map);
		goto done;
	}
	cl__handoff_record *scratch = records;
	if (scratch == NULL)
		scratch = malloc(CL_PARTITIONS * sizeof *scratch);
	if (scratch == NULL) {
		rc = CL_ENOMEM;
		goto done;
	}
	rc = records_unpack(payload + 2, payload_bytes - 2, map, scratch,
		count);
	if (scratch != records)
		free(scratch);
done:
	free(bytes);
	return rc;
}
