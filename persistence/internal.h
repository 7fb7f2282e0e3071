/*
 * internal.h — names shared only inside persistence/ (prefix ps__), and
 * the on-disk formats.
 *
 * ON-DISK FORMATS. Everything is little-endian and fixed-width; offsets
 * are bytes from the start of the structure.
 *
 * Journal segment file "journal-<first LSN, 20 decimal digits>.seg":
 *
 *   segment header, PS_SEGMENT_HEADER_BYTES (40):
 *     0  u8[8] magic "FLKJRNL1"
 *     8  u32   format version (PS_JOURNAL_FORMAT_VERSION)
 *    12  u32   header bytes (40)
 *    16  u64   first LSN: the LSN the first record of this segment has
 *    24  u64   previous LSN: the last LSN written before this segment (0:
 *              none); chains segments so a missing one is detected
 *    32  u32   reserved, zero
 *    36  u32   CRC32C of bytes 0..36
 *
 *   then records back to back, each PS_RECORD_HEADER_BYTES (32) + payload:
 *     0  u32   payload bytes (<= PS_RECORD_PAYLOAD_BYTES_MAX)
 *     4  u32   checksum: CRC32C(payload bytes, then header bytes 8..32)
 *              (payload first, so an appender can checksum its payload
 *              before it takes the lock that assigns the LSN)
 *     8  u64   LSN: the segment's first LSN for the first record, then +1
 *    16  u64   actor id
 *    24  u32   actor kind
 *    28  u32   event type
 *    32  payload (msgpack to the domain; opaque here)
 *
 *   A segment ends exactly after its last good record. Bytes after it in
 *   the last segment are a torn tail (cut at open, logged) unless a good
 *   record follows them, which is corruption (PS_ECORRUPT). In a segment
 *   that is not the last, any bad byte is corruption.
 *
 *   Limitation, stated: if power fails during a group commit and the disk
 *   kept a later page of that (never acknowledged) batch but not an earlier
 *   one, that tail looks like mid-segment corruption and recovery stops
 *   for an operator rather than guess. A process crash cannot cause it.
 *
 * Store key (LMDB "partitioned" DB, store format 2; ps__store_key), 16
 * bytes, big-endian so LMDB's byte order is partition, kind, id order and
 * one partition is one key range:
 *     0  u16   partition (ps_partition_of(id))
 *     2  u16   zero
 *     4  u32   kind
 *     8  u64   id
 * Store format 1 kept the values under ps_snapshot_key in a DB named
 * "snapshots"; open moves them over in bounded transactions (the old DB
 * is emptied as the new one fills, so a crash mid-way resumes) and then
 * records format 2.
 *
 * Snapshot value (under the store key):
 *     0  u32   format version (PS_SNAPSHOT_FORMAT_VERSION)
 *     4  u32   state bytes
 *     8  u64   snapshot LSN: every record of this actor with LSN <= it is
 *              reflected in the state
 *    16  u32   reserved, zero
 *    20  u32   CRC32C(key 16 bytes, bytes 0..20, state)
 *    24  state (the kind's encode_state output)
 *
 * Meta (LMDB "meta" DB): "format_version" -> u32 (PS_STORE_FORMAT_VERSION),
 * "checkpoint_lsn" -> u64.
 */
#ifndef FLOCK_PERSISTENCE_INTERNAL_H
#define FLOCK_PERSISTENCE_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persistence/persistence.h"
/* Only for sim_sometimes, the simulator's dependency-free counter. */
#include "sim/sim.h"

#define PS_JOURNAL_FORMAT_VERSION 1u
#define PS_SNAPSHOT_FORMAT_VERSION 1u
#define PS_STORE_FORMAT_VERSION 2u
#define PS_SEGMENT_HEADER_BYTES 40u
#define PS_RECORD_HEADER_BYTES 32u
#define PS_SNAPSHOT_HEADER_BYTES 24u
#define PS_SEGMENT_MAGIC "FLKJRNL1"

typedef struct ps__segment_header {
	unsigned char magic[8];
	uint32_t version;
	uint32_t header_bytes;
	uint64_t first_lsn;
	uint64_t previous_lsn;
	uint32_t reserved;
	uint32_t checksum;
} ps__segment_header;
static_assert(sizeof(ps__segment_header) == PS_SEGMENT_HEADER_BYTES,
	"segment header is 40 bytes");

typedef struct ps__record_header {
	uint32_t payload_bytes;
	uint32_t checksum;
	uint64_t lsn;
	uint64_t id;
	uint32_t kind;
	uint32_t type;
} ps__record_header;
static_assert(sizeof(ps__record_header) == PS_RECORD_HEADER_BYTES,
	"record header is 32 bytes");

typedef struct ps__snapshot_header {
	uint32_t version;
	uint32_t state_bytes;
	uint64_t lsn;
	uint32_t reserved;
	uint32_t checksum;
} ps__snapshot_header;
static_assert(sizeof(ps__snapshot_header) == PS_SNAPSHOT_HEADER_BYTES,
	"snapshot header is 24 bytes");

/* Asserts stay on in release builds (STYLE rule 6). */
#define ps__assert(cond)                                                     \
	do {                                                                 \
		if (!(cond))                                                 \
			ps__assert_fail(__FILE__, __LINE__, #cond);          \
	} while (0)
_Noreturn void ps__assert_fail(const char *file, int line, const char *expr);

/* ---- little-endian loads and stores ------------------------------------- */

static inline void
ps__store_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static inline void
ps__store_u64(unsigned char *p, uint64_t v)
{
	ps__store_u32(p, (uint32_t)v);
	ps__store_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
ps__load_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		(uint32_t)p[3] << 24;
}

static inline uint64_t
ps__load_u64(const unsigned char *p)
{
	return (uint64_t)ps__load_u32(p) | (uint64_t)ps__load_u32(p + 4) << 32;
}

/* ---- logging ------------------------------------------------------------ */

void ps__log(ps_log_callback log, void *arg, rt_log_level level,
	const char *format, ...) __attribute__((format(printf, 4, 5)));

/* ---- errno translation (disk_real.c) -------------------------------------- */

int ps__from_errno(int error);

/* ---- record codec (journal_format.c) ------------------------------------- */

/* Fills the 32-byte header at out for a payload whose CRC32C (from 0) is
 * payload_crc. */
void ps__record_header_encode(uint64_t lsn, rt_addr addr, uint32_t type,
	uint32_t payload_bytes, uint32_t payload_crc, unsigned char *out);
int ps__segment_header_decode(const void *bytes, size_t length,
	uint64_t *first_lsn_out, uint64_t *previous_lsn_out);
/* The name of the segment starting at first_lsn. */
void ps__segment_name(uint64_t first_lsn, char *out, size_t out_bytes);
/* Parses a segment name; false if name is not one. */
bool ps__segment_name_parse(const char *name, uint64_t *first_lsn_out);

/* ---- the store key (journal_format.c) ------------------------------------ */

#define PS_STORE_KEY_BYTES 16u
void ps__store_key(rt_addr addr, unsigned char out[PS_STORE_KEY_BYTES]);
/* The address a store key names; false if key is not one. */
bool ps__store_key_parse(const void *key, size_t length, rt_addr *out);

/* A journal record the node writes for itself (kind RT_KIND_NONE, id the
 * partition): every record of the partition before it is obsolete (the
 * partition moved away and its state went with it). */
#define PS__RECORD_DROP_PARTITION 0xfffff001u

/* ---- journal internals used by the node (journal.c) ----------------------- */

/* True when some LSN in [low, high] belongs to a failed (never durable)
 * record, as far as the journal remembers. */
bool ps__journal_failed_between(ps_journal *journal, uint64_t low,
	uint64_t high);

/* ---- a map from actor address to a pointer -------------------------------- */

typedef struct ps__addr_slot {
	rt_addr key;
	void *value; /* NULL: empty slot */
} ps__addr_slot;

/* Open addressing with linear probing and backward-shift deletion; grows
 * at 1/2 load. Not thread-safe: callers hold their own lock. */
typedef struct ps__addr_map {
	ps__addr_slot *slots;
	size_t capacity; /* power of two, or 0 */
	size_t count;
} ps__addr_map;

void *ps__addr_map_get(const ps__addr_map *map, rt_addr key);
/* Inserts or replaces; value must not be NULL. PS_ENOMEM. */
int ps__addr_map_put(ps__addr_map *map, rt_addr key, void *value);
/* Removes and returns the value, or NULL. */
void *ps__addr_map_remove(ps__addr_map *map, rt_addr key);
void ps__addr_map_free(ps__addr_map *map);

#endif /* FLOCK_PERSISTENCE_INTERNAL_H */
