/*
 * crc32c.c — CRC32C (Castagnoli polynomial, reflected 0x82F63B78).
 *
 * Two paths with identical results: the SSE4.2 crc32 instruction (eight
 * bytes per step) when the CPU has it, chosen once at first use, and a
 * slicing-by-8 table path everywhere else. The tables are built once on
 * first use under pthread_once. The result is the standard CRC32C (crc 0
 * for "123456789" gives 0xE3069283); `crc` continues a running value.
 *
 * It does not combine CRCs of separate buffers: callers checksum bytes in
 * the order the format defines.
 */
#include "persistence/internal.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void
crc_table_build(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = crc_table[0][n];
		for (int k = 1; k < 8; k++) {
			c = crc_table[0][c & 0xffu] ^ (c >> 8);
			crc_table[k][n] = c;
		}
	}
}

uint32_t
ps_crc32c_portable(uint32_t crc, const void *bytes, size_t length)
{
	ps__assert(bytes != NULL || length == 0);
	pthread_once(&crc_table_once, crc_table_build);
	const unsigned char *p = bytes;
	uint32_t c = ~crc;
	while (length > 0 && ((uintptr_t)p & 7u) != 0) {
		c = crc_table[0][(c ^ *p++) & 0xffu] ^ (c >> 8);
		length--;
	}
	while (length >= 8) {
		uint64_t word = (uint64_t)ps__load_u32(p) |
			(uint64_t)ps__load_u32(p + 4) << 32;
		uint32_t lo = (uint32_t)word ^ c;
		uint32_t hi = (uint32_t)(word >> 32);
		c = crc_table[7][lo & 0xffu] ^ crc_table[6][(lo >> 8) & 0xffu] ^
			crc_table[5][(lo >> 16) & 0xffu] ^ crc_table[4][lo >> 24] ^
			crc_table[3][hi & 0xffu] ^ crc_table[2][(hi >> 8) & 0xffu] ^
			crc_table[1][(hi >> 16) & 0xffu] ^ crc_table[0][hi >> 24];
		p += 8;
		length -= 8;
	}
	while (length > 0) {
		c = crc_table[0][(c ^ *p++) & 0xffu] ^ (c >> 8);
		length--;
	}
	return ~c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const void *bytes, size_t length)
{
	const unsigned char *p = bytes;
	uint64_t c = ~crc;
	while (length > 0 && ((uintptr_t)p & 7u) != 0) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		length--;
	}
	while (length >= 8) {
		uint64_t word;
		memcpy(&word, p, 8);
		c = _mm_crc32_u64(c, word);
		p += 8;
		length -= 8;
	}
	while (length > 0) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		length--;
	}
	return ~(uint32_t)c;
}

static int crc_have_sse42 = -1; /* -1 unknown, racing writers agree */

uint32_t
ps_crc32c(uint32_t crc, const void *bytes, size_t length)
{
	ps__assert(bytes != NULL || length == 0);
	int have = __atomic_load_n(&crc_have_sse42, __ATOMIC_RELAXED);
	if (have < 0) {
		__builtin_cpu_init();
		have = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		__atomic_store_n(&crc_have_sse42, have, __ATOMIC_RELAXED);
	}
	if (have)
		return crc32c_sse42(crc, bytes, length);
	return ps_crc32c_portable(crc, bytes, length);
}
#else
uint32_t
ps_crc32c(uint32_t crc, const void *bytes, size_t length)
{
	return ps_crc32c_portable(crc, bytes, length);
}
#endif
