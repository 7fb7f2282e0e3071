/*
 * journal_format.c — encoders and verifying decoders for the on-disk
 * formats defined in internal.h: segment headers, records, segment scans,
 * snapshot values.
 *
 * Pure functions on byte buffers: no I/O, no allocation, no locks. Every
 * decoder checks lengths before it reads and treats any input as hostile
 * (the fuzz targets call ps_segment_scan and ps_snapshot_value_decode).
 */
#include "persistence/internal.h"

#include <inttypes.h>

size_t
ps_record_encoded_bytes(size_t payload_bytes)
{
	return PS_RECORD_HEADER_BYTES + payload_bytes;
}

void
ps__record_header_encode(uint64_t lsn, rt_addr addr, uint32_t type,
	uint32_t payload_bytes, uint32_t payload_crc, unsigned char *out)
{
	ps__assert(out != NULL);
	ps__assert(payload_bytes <= PS_RECORD_PAYLOAD_BYTES_MAX);
	ps__store_u32(out + 0, payload_bytes);
	ps__store_u64(out + 8, lsn);
	ps__store_u64(out + 16, addr.id);
	ps__store_u32(out + 24, addr.kind);
	ps__store_u32(out + 28, type);
	uint32_t crc = ps_crc32c(payload_crc, out + 8,
		PS_RECORD_HEADER_BYTES - 8);
	ps__store_u32(out + 4, crc);
}

size_t
ps_record_encode(uint64_t lsn, rt_addr addr, uint32_t type,
	const void *payload, size_t payload_bytes, void *out)
{
	ps__assert(payload != NULL || payload_bytes == 0);
	ps__assert(payload_bytes <= PS_RECORD_PAYLOAD_BYTES_MAX);
	unsigned char *p = out;
	uint32_t crc = ps_crc32c(0, payload, payload_bytes);
	ps__record_header_encode(lsn, addr, type, (uint32_t)payload_bytes, crc,
		p);
	if (payload_bytes > 0)
		memcpy(p + PS_RECORD_HEADER_BYTES, payload, payload_bytes);
	return PS_RECORD_HEADER_BYTES + payload_bytes;
}

size_t
ps_segment_header_encode(uint64_t first_lsn, uint64_t previous_lsn, void *out)
{
	ps__assert(out != NULL);
	ps__assert(previous_lsn < first_lsn);
	unsigned char *p = out;
	memset(p, 0, PS_SEGMENT_HEADER_BYTES);
	memcpy(p, PS_SEGMENT_MAGIC, 8);
	ps__store_u32(p + 8, PS_JOURNAL_FORMAT_VERSION);
	ps__store_u32(p + 12, PS_SEGMENT_HEADER_BYTES);
	ps__store_u64(p + 16, first_lsn);
	ps__store_u64(p + 24, previous_lsn);
	ps__store_u32(p + 36, ps_crc32c(0, p, 36));
	return PS_SEGMENT_HEADER_BYTES;
}

int
ps__segment_header_decode(const void *bytes, size_t length,
	uint64_t *first_lsn_out, uint64_t *previous_lsn_out)
{
	const unsigned char *p = bytes;
	if (length < PS_SEGMENT_HEADER_BYTES)
		return PS_ECORRUPT;
	if (memcmp(p, PS_SEGMENT_MAGIC, 8) != 0)
		return PS_ECORRUPT;
	if (ps__load_u32(p + 36) != ps_crc32c(0, p, 36))
		return PS_ECORRUPT;
	if (ps__load_u32(p + 8) != PS_JOURNAL_FORMAT_VERSION)
		return PS_EVERSION;
	if (ps__load_u32(p + 12) != PS_SEGMENT_HEADER_BYTES)
		return PS_ECORRUPT;
	uint64_t first = ps__load_u64(p + 16);
	uint64_t previous = ps__load_u64(p + 24);
	if (previous >= first)
		return PS_ECORRUPT;
	*first_lsn_out = first;
	*previous_lsn_out = previous;
	return PS_OK;
}

/* Checks one record at p (avail bytes left) expecting lsn `expect` (0:
 * any lsn above `above`). Returns its total size or 0 if it is bad. */
static size_t
record_check(const unsigned char *p, size_t avail, uint64_t expect,
	uint64_t above, ps_record *out)
{
	if (avail < PS_RECORD_HEADER_BYTES)
		return 0;
	uint32_t payload_bytes = ps__load_u32(p);
	if (payload_bytes > PS_RECORD_PAYLOAD_BYTES_MAX)
		return 0;
	if ((size_t)payload_bytes > avail - PS_RECORD_HEADER_BYTES)
		return 0;
	uint64_t lsn = ps__load_u64(p + 8);
	if (expect != 0 ? lsn != expect : lsn <= above)
		return 0;
	uint32_t crc = ps_crc32c(0, p + PS_RECORD_HEADER_BYTES, payload_bytes);
	crc = ps_crc32c(crc, p + 8, PS_RECORD_HEADER_BYTES - 8);
	if (crc != ps__load_u32(p + 4))
		return 0;
	out->lsn = lsn;
	out->addr = rt_addr_make(ps__load_u32(p + 24), ps__load_u64(p + 16));
	out->type = ps__load_u32(p + 28);
	out->payload_bytes = payload_bytes;
	out->payload = p + PS_RECORD_HEADER_BYTES;
	return PS_RECORD_HEADER_BYTES + payload_bytes;
}

/* After damage at `from`: is there any good record further on? Only the
 * error path pays for this byte-by-byte search. */
static bool
good_record_after(const unsigned char *p, size_t length, size_t from,
	uint64_t last_lsn)
{
	for (size_t o = from + 1; o + PS_RECORD_HEADER_BYTES <= length; o++) {
		uint64_t lsn = ps__load_u64(p + o + 8);
		/* Cheap filter first: a later record's LSN lies above the last
		 * good one and cannot outrun the bytes left. */
		if (lsn <= last_lsn || lsn - last_lsn > (length - from) / 32 + 1)
			continue;
		ps_record r;
		if (record_check(p + o, length - o, 0, last_lsn, &r) != 0)
			return true;
	}
	return false;
}

static bool
all_zero(const unsigned char *p, size_t length)
{
	for (size_t i = 0; i < length; i++)
		if (p[i] != 0)
			return false;
	return true;
}

int
ps_segment_scan(const void *bytes, size_t length, ps_record_callback cb,
	void *arg, ps_segment_scan_result *out)
{
	ps__assert(bytes != NULL || length == 0);
	ps__assert(out != NULL);
	const unsigned char *p = bytes;
	memset(out, 0, sizeof *out);
	int rc = ps__segment_header_decode(p, length, &out->first_lsn,
		&out->previous_lsn);
	if (rc != 0) {
		out->header_bad = true;
		return rc;
	}
	out->last_lsn = out->previous_lsn;
	size_t offset = PS_SEGMENT_HEADER_BYTES;
	uint64_t expect = out->first_lsn;
	while (offset < length) {
		ps_record r;
		size_t n = record_check(p + offset, length - offset, expect, 0,
			&r);
		if (n == 0 && all_zero(p + offset, length - offset)) {
			out->zero_tail = true;
			break;
		}
		if (n == 0) {
			out->damaged = true;
			out->valid_bytes = offset;
			out->good_after_damage = good_record_after(p, length,
				offset, out->last_lsn);
			return PS_ECORRUPT;
		}
		ps__assert(r.lsn == expect);
		if (cb != NULL) {
			rc = cb(arg, &r);
			if (rc != 0) {
				out->valid_bytes = offset;
				return rc;
			}
		}
		out->records++;
		out->last_lsn = r.lsn;
		offset += n;
		expect++;
	}
	out->valid_bytes = offset;
	ps__assert(offset == length || out->zero_tail);
	return PS_OK;
}

void
ps__segment_name(uint64_t first_lsn, char *out, size_t out_bytes)
{
	snprintf(out, out_bytes, "journal-%020" PRIu64 ".seg", first_lsn);
}

bool
ps__segment_name_parse(const char *name, uint64_t *first_lsn_out)
{
	if (strlen(name) != 8 + 20 + 4 || strncmp(name, "journal-", 8) != 0 ||
		strcmp(name + 28, ".seg") != 0)
		return false;
	uint64_t v = 0;
	for (int i = 8; i < 28; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*first_lsn_out = v;
	return true;
}

/* ---- snapshot values ------------------------------------------------------ */

void
ps_snapshot_key(rt_addr addr, unsigned char out[16])
{
	uint64_t kind = addr.kind;
	for (int i = 0; i < 8; i++) {
		out[i] = (unsigned char)(kind >> (56 - 8 * i));
		out[8 + i] = (unsigned char)(addr.id >> (56 - 8 * i));
	}
}

void
ps__store_key(rt_addr addr, unsigned char out[PS_STORE_KEY_BYTES])
{
	uint32_t partition = ps_partition_of(addr.id);
	out[0] = (unsigned char)(partition >> 8);
	out[1] = (unsigned char)partition;
	out[2] = 0;
	out[3] = 0;
	for (int i = 0; i < 4; i++)
		out[4 + i] = (unsigned char)(addr.kind >> (24 - 8 * i));
	for (int i = 0; i < 8; i++)
		out[8 + i] = (unsigned char)(addr.id >> (56 - 8 * i));
}

bool
ps__store_key_parse(const void *key, size_t length, rt_addr *out)
{
	const unsigned char *k = key;
	if (length != PS_STORE_KEY_BYTES || k[2] != 0 || k[3] != 0)
		return false;
	uint32_t kind = 0;
	uint64_t id = 0;
	for (int i = 0; i < 4; i++)
		kind = kind << 8 | k[4 + i];
	for (int i = 0; i < 8; i++)
		id = id << 8 | k[8 + i];
	if (((uint32_t)k[0] << 8 | k[1]) != ps_partition_of(id))
		return false;
	*out = rt_addr_make(kind, id);
	return true;
}

size_t
ps_snapshot_value_bytes(size_t state_bytes)
{
	return PS_SNAPSHOT_HEADER_BYTES + state_bytes;
}

static uint32_t
snapshot_checksum(rt_addr addr, const unsigned char *header,
	const void *state, size_t state_bytes)
{
	unsigned char key[16];
	ps_snapshot_key(addr, key);
	uint32_t crc = ps_crc32c(0, key, sizeof key);
	crc = ps_crc32c(crc, header, 20);
	return ps_crc32c(crc, state, state_bytes);
}

size_t
ps_snapshot_value_encode(rt_addr addr, uint64_t lsn, const void *state,
	size_t state_bytes, void *out)
{
	ps__assert(state != NULL || state_bytes == 0);
	ps__assert(state_bytes <= PS_STATE_BYTES_MAX);
	unsigned char *p = out;
	ps__store_u32(p + 0, PS_SNAPSHOT_FORMAT_VERSION);
	ps__store_u32(p + 4, (uint32_t)state_bytes);
	ps__store_u64(p + 8, lsn);
	ps__store_u32(p + 16, 0);
	if (state_bytes > 0)
		memcpy(p + PS_SNAPSHOT_HEADER_BYTES, state, state_bytes);
	ps__store_u32(p + 20, snapshot_checksum(addr, p,
				      p + PS_SNAPSHOT_HEADER_BYTES,
				      state_bytes));
	return PS_SNAPSHOT_HEADER_BYTES + state_bytes;
}

int
ps_snapshot_value_decode(rt_addr addr, const void *bytes, size_t length,
	uint64_t *lsn_out, const void **state_out, size_t *state_bytes_out)
{
	ps__assert(bytes != NULL || length == 0);
	const unsigned char *p = bytes;
	if (length < PS_SNAPSHOT_HEADER_BYTES)
		return PS_ECORRUPT;
	uint32_t version = ps__load_u32(p);
	uint32_t state_bytes = ps__load_u32(p + 4);
	if (state_bytes != length - PS_SNAPSHOT_HEADER_BYTES)
		return PS_ECORRUPT;
	if (ps__load_u32(p + 20) != snapshot_checksum(addr, p,
					     p + PS_SNAPSHOT_HEADER_BYTES,
					     state_bytes))
		return PS_ECORRUPT;
	if (version != PS_SNAPSHOT_FORMAT_VERSION)
		return PS_EVERSION;
	if (ps__load_u32(p + 16) != 0)
		return PS_ECORRUPT;
	*lsn_out = ps__load_u64(p + 8);
	*state_out = p + PS_SNAPSHOT_HEADER_BYTES;
	*state_bytes_out = state_bytes;
	ps__assert(*state_bytes_out + PS_SNAPSHOT_HEADER_BYTES == length);
	return PS_OK;
}
