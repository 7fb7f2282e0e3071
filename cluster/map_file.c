/*
 * map_file.c — the partition map's msgpack form and its file.
 *
 * Wire form: [version, epoch, next_node_id, [[id, state, address]...],
 * owners(bin: CL_PARTITIONS little-endian u16), moved_at(bin:
 * CL_PARTITIONS little-endian u32; since version 2)].
 *
 * File <dir>/cluster.map, format 3: two slots of MAP_SLOT_BYTES, each a
 * 32-byte header (magic "FLCM", u32 format version, u32 payload length,
 * u32 reserved, u64 FNV-1a of the sequence and the payload, u64 sequence,
 * all little-endian) and the payload: u16 self id (LE) then [map's wire
 * form, [[partition, mode, peer, epoch]...], [term, voted_for,
 * entry_term, entry map or nil]]: the map and the handoffs this node had
 * in flight under it, so that a restart resumes them, and what it holds
 * of the map consensus (node.c; payloads written before it have two
 * items, and readers of those builds skip the third).
 * The valid slot with the higher sequence is the file's content. A save
 * overwrites the other slot in place and fdatasyncs: the file's size and
 * blocks never change, so that is one data flush, where creating a file,
 * renaming it and syncing the directory cost two journal commits of the
 * file system (~10 ms each on a busy disk, three per rebalance step on
 * its critical path). A crash in the middle of a save tears only the
 * slot being written, and the other one still holds the previous save.
 * The file is created whole (slot 0 written, slot 1 zeros) through
 * cluster.map.tmp, fsynced, renamed and the directory fsynced; so is a
 * file of an older format, or one with no valid slot, replaced. Formats
 * 1 (the map alone, no handoffs) and 2 (one copy after a 24-byte header
 * without the sequence) are still read.
 *
 * What it does not do: keep history; the map is small and the epoch in
 * it says which one it is.
 */
#include "cluster/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_FORMAT_VERSION 2u
#define MAP_FILE_FORMAT_VERSION 3u
/* Formats 1 (a map without handoffs) and 2 (one copy with handoffs,
 * renamed over the old file) are still read; the first save after
 * them writes format 3. */
#define MAP_FILE_FORMAT_VERSION_2 2u
#define MAP_FILE_FORMAT_VERSION_1 1u
#define MAP_RECORD_FIELDS 4u
/* [term, voted_for, entry_term, entry map or nil] */
#define MAP_VOTE_FIELDS 4u
#define MAP_FILE_NAME "cluster.map"
#define MAP_FILE_TMP_NAME "cluster.map.tmp"
/* Formats 1 and 2: the header before the one copy. */
#define MAP_FILE_HEADER_BYTES 24u
/* Format 3: each copy (slot) opens with this header. */
#define MAP_SLOT_HEADER_BYTES 32u
/* A slot holds the largest payload: a map (~53 KiB with 64 members) and
 * a record for every partition (~19 bytes each, ~156 KiB). */
#define MAP_SLOT_BYTES (512u << 10)
#define MAP_SLOTS 2u
/* Format 3 files are exactly this; a file past it is not one of ours. */
#define MAP_FILE_BYTES_MAX (MAP_SLOTS * MAP_SLOT_BYTES)
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
	const cl__handoff_record *records, uint32_t count,
	const cl__vote_state *vote)
{
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, vote != NULL ? 3 : 2);
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
	if (vote != NULL) {
		msgpack_pack_array(&p.pk, MAP_VOTE_FIELDS);
		msgpack_pack_uint64(&p.pk, vote->term);
		msgpack_pack_uint16(&p.pk, vote->voted_for);
		msgpack_pack_uint64(&p.pk, vote->entry_term);
		if (vote->has_entry)
			rc = cl__map_pack(&p, vote->entry);
		else
			msgpack_pack_nil(&p.pk);
		if (rc != 0)
			return rc;
	}
	return p.status;
}

/* The consensus state (format 3 payloads written since the consensus:
 * a third item; older ones have none and load as term 0). */
static int
vote_unpack(const msgpack_object *o, const cl_map *map, cl__vote_state *vote)
{
	const msgpack_object *g;
	uint32_t k, voted_for;
	if (cl__obj_array(o, MAP_VOTE_FIELDS, &g, &k) != 0 ||
		cl__obj_u64(&g[0], &vote->term) != 0 ||
		cl__obj_u32(&g[1], &voted_for) != 0 ||
		voted_for > CL_NODE_ID_MAX ||
		cl__obj_u64(&g[2], &vote->entry_term) != 0)
		return CL_ECORRUPT;
	vote->voted_for = (uint16_t)voted_for;
	vote->has_entry = false;
	if (g[3].type == MSGPACK_OBJECT_NIL)
		return CL_OK;
	if (vote->entry == NULL)
		return CL_OK;
	int rc = cl__map_from_object(&g[3], vote->entry);
	if (rc != 0)
		return rc;
	/* an entry is a map above the committed one, of a term known */
	if (vote->entry->epoch <= map->epoch || vote->entry_term > vote->term)
		return CL_ECORRUPT;
	vote->has_entry = true;
	return CL_OK;
}

static int
records_unpack(const void *bytes, size_t length, cl_map *map,
	cl__handoff_record *records, uint32_t *count, cl__vote_state *vote)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 4096))
		return CL_ENOMEM;
	msgpack_object o;
	const msgpack_object *f;
	const msgpack_object *items;
	uint32_t k;
	uint32_t top = 0;
	uint32_t n = 0;
	if (vote != NULL) {
		vote->term = 0;
		vote->voted_for = 0;
		vote->entry_term = 0;
		vote->has_entry = false;
	}
	int rc = cl__unpack(bytes, length, &zone, &o);
	if (rc == 0 && (cl__obj_array(&o, 2, &f, &top) != 0 ||
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
	if (rc == 0 && vote != NULL && top >= 3)
		rc = vote_unpack(&f[2], map, vote);
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

static int
pwrite_all(int fd, const void *bytes, size_t length, size_t offset)
{
	const unsigned char *p = bytes;
	while (length > 0) {
		ssize_t w = pwrite(fd, p, length, (off_t)offset);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CL_EIO;
		p += w;
		length -= (size_t)w;
		offset += (size_t)w;
	}
	return CL_OK;
}

static int
pread_all(int fd, void *bytes, size_t length, size_t offset)
{
	unsigned char *p = bytes;
	while (length > 0) {
		ssize_t r = pread(fd, p, length, (off_t)offset);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return CL_EIO;
		if (r == 0)
			return CL_ECORRUPT; /* shorter than its header says */
		p += r;
		length -= (size_t)r;
		offset += (size_t)r;
	}
	return CL_OK;
}

static uint64_t
get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void
put_u64(unsigned char *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

/* Reads slot `index` of a format-3 file into bytes (MAP_SLOT_BYTES of
 * room): true with *sequence and *length (payload bytes, after the
 * header) when it is whole; false when torn, zeros or unreadable. */
static bool
slot_read(int fd, uint32_t index, unsigned char *bytes, uint64_t *sequence,
	size_t *length)
{
	CL_ASSERT(index < MAP_SLOTS);
	size_t base = (size_t)index * MAP_SLOT_BYTES;
	if (pread_all(fd, bytes, MAP_SLOT_HEADER_BYTES, base) != 0 ||
		memcmp(bytes, "FLCM", 4) != 0 ||
		get_u32(bytes + 4) != MAP_FILE_FORMAT_VERSION)
		return false;
	uint32_t payload = get_u32(bytes + 8);
	if (payload < 2u || payload > MAP_SLOT_BYTES - MAP_SLOT_HEADER_BYTES ||
		pread_all(fd, bytes + MAP_SLOT_HEADER_BYTES, payload,
			base + MAP_SLOT_HEADER_BYTES) != 0)
		return false;
	/* the sum covers the sequence (bytes 24..32) and the payload */
	if (cl__fnv64(bytes + 24, 8u + payload) != get_u64(bytes + 16))
		return false;
	*sequence = get_u64(bytes + 24);
	*length = payload;
	return true;
}

/* The newest whole slot of a format-3 file (read into bytes), or -1. */
static int
slot_newest(int fd, unsigned char *bytes, uint64_t *sequence,
	size_t *length)
{
	int best = -1;
	for (uint32_t i = 0; i < MAP_SLOTS; i++) {
		uint64_t seq;
		size_t len;
		if (!slot_read(fd, i, bytes, &seq, &len) ||
			(best >= 0 && seq <= *sequence))
			continue;
		best = (int)i;
		*sequence = seq;
		*length = len;
	}
	if (best >= 0 && best != (int)MAP_SLOTS - 1) {
		/* bytes hold the last slot read: read the winner again */
		uint64_t seq;
		size_t len;
		if (!slot_read(fd, (uint32_t)best, bytes, &seq, &len))
			return -1;
	}
	return best;
}

/* Replaces the file with a whole format-3 one: slot (header and payload
 * in bytes, length) first, zeros after, through the tmp name. */
static int
file_create(const char *dir, const char *path, const char *tmp,
	const unsigned char *slot, size_t length)
{
	unsigned char *whole = calloc(1, MAP_FILE_BYTES_MAX);
	if (whole == NULL)
		return CL_ENOMEM;
	memcpy(whole, slot, length);
	int rc = CL_OK;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = CL_EIO;
		goto done;
	}
	/* zeros are written, not left as holes: a later save then changes
	 * no block map, only data */
	rc = pwrite_all(fd, whole, MAP_FILE_BYTES_MAX, 0);
	if (rc == 0 && fsync(fd) != 0)
		rc = CL_EIO;
	if (close(fd) != 0 && rc == 0)
		rc = CL_EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = CL_EIO;
	if (rc == 0)
		rc = sync_dir(dir);
done:
	free(whole);
	return rc;
}

/* Writes slot (header and payload, length; its sequence field filled
 * here) over the older slot of the format-3 file at path. CL_ENOTFOUND:
 * there is no such file to write in place (missing, another format, no
 * whole slot); the caller creates it. */
static int
file_write_in_place(const char *path, unsigned char *slot, size_t length)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? CL_ENOTFOUND : CL_EIO;
	int rc = CL_OK;
	unsigned char *scratch = malloc(MAP_SLOT_BYTES);
	struct stat st;
	if (scratch == NULL) {
		rc = CL_ENOMEM;
		goto done;
	}
	if (fstat(fd, &st) != 0) {
		rc = CL_EIO;
		goto done;
	}
	uint64_t sequence = 0;
	size_t newest_length = 0;
	int newest = (size_t)st.st_size == MAP_FILE_BYTES_MAX
		? slot_newest(fd, scratch, &sequence, &newest_length)
		: -1;
	if (newest < 0) {
		rc = CL_ENOTFOUND;
		goto done;
	}
	uint32_t target = (uint32_t)(newest + 1) % MAP_SLOTS;
	put_u64(slot + 24, sequence + 1);
	put_u64(slot + 16, cl__fnv64(slot + 24, length - 24));
	rc = pwrite_all(fd, slot, length, (size_t)target * MAP_SLOT_BYTES);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = CL_EIO;
done:
	free(scratch);
	if (close(fd) != 0 && rc == 0)
		rc = CL_EIO;
	return rc;
}

int
cl__map_file_save(const char *dir, uint16_t self_id, const cl_map *map,
	const cl__handoff_record *records, uint32_t count)
{
	return cl__map_file_save_vote(dir, self_id, map, records, count, NULL);
}

int
cl__map_file_save_vote(const char *dir, uint16_t self_id, const cl_map *map,
	const cl__handoff_record *records, uint32_t count,
	const cl__vote_state *vote)
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
	unsigned char header[MAP_SLOT_HEADER_BYTES] = {0};
	int rc = rt_buffer_append(&b, header, sizeof header) == 0 ? 0 : CL_ENOMEM;
	unsigned char self[2] = {(unsigned char)self_id,
		(unsigned char)(self_id >> 8)};
	if (rc == 0 && rt_buffer_append(&b, self, sizeof self) != 0)
		rc = CL_ENOMEM;
	if (rc == 0)
		rc = records_pack(&b, map, records, count, vote);
	if (rc == 0 && b.length > MAP_SLOT_BYTES)
		rc = CL_ETOOBIG;
	if (rc != 0)
		goto fail_buffer;
	memcpy(b.bytes, "FLCM", 4);
	put_u32(b.bytes + 4, MAP_FILE_FORMAT_VERSION);
	put_u32(b.bytes + 8, (uint32_t)(b.length - MAP_SLOT_HEADER_BYTES));
	rc = file_write_in_place(path, b.bytes, b.length);
	if (rc == CL_ENOTFOUND) {
		put_u64(b.bytes + 24, 1);
		put_u64(b.bytes + 16, cl__fnv64(b.bytes + 24, b.length - 24));
		rc = file_create(dir, path, tmp, b.bytes, b.length);
	}
fail_buffer:
	rt_buffer_free(&b);
	return rc;
}

/* Decodes a payload (u16 self id, then the map, with the handoffs from
 * format 2 on). */
static int
payload_decode(uint32_t version, const unsigned char *payload,
	size_t payload_bytes, uint16_t *self_id_out, cl_map *map,
	cl__handoff_record *records, uint32_t *count, cl__vote_state *vote)
{
	if (payload_bytes < 2u)
		return CL_ECORRUPT;
	if (self_id_out != NULL)
		*self_id_out = (uint16_t)(payload[0] | payload[1] << 8);
	if (version == MAP_FILE_FORMAT_VERSION_1)
		return cl_map_decode(payload + 2, payload_bytes - 2, map);
	cl__handoff_record *scratch = records;
	if (scratch == NULL)
		scratch = malloc(CL_PARTITIONS * sizeof *scratch);
	if (scratch == NULL)
		return CL_ENOMEM;
	int rc = records_unpack(payload + 2, payload_bytes - 2, map, scratch,
		count, vote);
	if (scratch != records)
		free(scratch);
	return rc;
}

/* Formats 1 and 2: one copy after a 24-byte header; bytes hold the whole
 * file (length). */
static int
load_single(const unsigned char *bytes, size_t length, uint16_t *self_id_out,
	cl_map *map, cl__handoff_record *records, uint32_t *count,
	cl__vote_state *vote)
{
	if (length < MAP_FILE_HEADER_BYTES + 2u ||
		get_u32(bytes + 8) != length - MAP_FILE_HEADER_BYTES)
		return CL_ECORRUPT;
	uint32_t version = get_u32(bytes + 4);
	uint64_t sum = get_u64(bytes + 16);
	const unsigned char *payload = bytes + MAP_FILE_HEADER_BYTES;
	size_t payload_bytes = length - MAP_FILE_HEADER_BYTES;
	if (cl__fnv64(payload, payload_bytes) != sum)
		return CL_ECORRUPT;
	return payload_decode(version, payload, payload_bytes, self_id_out,
		map, records, count, vote);
}

int
cl__map_file_load(const char *dir, uint16_t *self_id_out, cl_map *map,
	cl__handoff_record *records, uint32_t *count)
{
	return cl__map_file_load_vote(dir, self_id_out, map, records, count,
		NULL);
}

int
cl__map_file_load_vote(const char *dir, uint16_t *self_id_out, cl_map *map,
	cl__handoff_record *records, uint32_t *count, cl__vote_state *vote)
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
	struct stat st;
	if (rc == 0 && fstat(fd, &st) != 0)
		rc = CL_EIO;
	if (rc == 0 && (st.st_size < (off_t)MAP_FILE_HEADER_BYTES ||
		st.st_size > (off_t)MAP_FILE_BYTES_MAX))
		rc = CL_ECORRUPT;
	if (rc == 0)
		rc = pread_all(fd, bytes, MAP_FILE_HEADER_BYTES, 0);
	if (rc != 0)
		goto done;
	uint32_t version = get_u32(bytes + 4);
	bool ours = memcmp(bytes, "FLCM", 4) == 0;
	if (ours && (version == MAP_FILE_FORMAT_VERSION_1 ||
		version == MAP_FILE_FORMAT_VERSION_2)) {
		rc = pread_all(fd, bytes, (size_t)st.st_size, 0);
		if (rc == 0)
			rc = load_single(bytes, (size_t)st.st_size,
				self_id_out, map, records, count, vote);
		goto done;
	}
	if (ours && version > MAP_FILE_FORMAT_VERSION) {
		rc = CL_EVERSION;
		goto done;
	}
	/* Format 3 (slot 0 may be the torn one: only the size says so) */
	uint64_t sequence = 0;
	size_t length = 0;
	if ((size_t)st.st_size != MAP_FILE_BYTES_MAX ||
		slot_newest(fd, bytes, &sequence, &length) < 0) {
		rc = CL_ECORRUPT;
		goto done;
	}
	rc = payload_decode(MAP_FILE_FORMAT_VERSION,
		bytes + MAP_SLOT_HEADER_BYTES, length, self_id_out, map,
		records, count, vote);
done:
	close(fd);
	free(bytes);
	return rc;
}
