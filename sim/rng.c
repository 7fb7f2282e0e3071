/*
 * sim/rng.c — the run's randomness and hashing.
 *
 * Every random choice of a run comes from one of its streams: xoshiro256**
 * seeded by splitmix64 from (seed, stream), so adding draws to one stream
 * (say, a new kind of workload op) leaves the others' sequences, and thus
 * the network's and the disk's behaviour, unchanged for a given seed.
 *
 * Does not: read any clock or entropy source.
 */
#include "sim/internal.h"

__extension__ typedef unsigned __int128 u128;

void
sim__assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	abort();
}

uint64_t
sim__mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t
sim__hash_bytes(uint64_t h, const void *bytes, size_t length)
{
	/* CRC32C runs at memory speed (SSE4.2); two halves with different
	 * seeds give 64 bits. */
	uint32_t a = ps_crc32c(0, bytes, length);
	uint32_t b = ps_crc32c(0x9e3779b9u, bytes, length);
	return sim__hash_step(h, ((uint64_t)a << 32 | b) ^ length);
}

void
sim__rng_seed(sim_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed * 0x2545f4914f6cdd1dull + stream * 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < 4; i++) {
		x += 0x9e3779b97f4a7c15ull;
		r->s[i] = sim__mix(x);
	}
	if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
		r->s[0] = 1; /* the one state xoshiro cannot leave */
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t
sim__rng_next(sim_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t
sim__rng_below(sim_rng *r, uint64_t n)
{
	SIM_ASSERT(n > 0);
	/* Lemire's multiply-shift with rejection: unbiased, no division in
	 * the common case. */
	uint64_t x = sim__rng_next(r);
	u128 m = (u128)x * n;
	uint64_t low = (uint64_t)m;
	if (low < n) {
		uint64_t threshold = -n % n;
		while (low < threshold) {
			x = sim__rng_next(r);
			m = (u128)x * n;
			low = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

uint64_t
sim__rng_range(sim_rng *r, uint64_t lo, uint64_t hi)
{
	SIM_ASSERT(lo <= hi);
	if (hi - lo == UINT64_MAX)
		return sim__rng_next(r);
	return lo + sim__rng_below(r, hi - lo + 1);
}

bool
sim__rng_ppm(sim_rng *r, uint32_t ppm)
{
	if (ppm == 0)
		return false;
	return sim__rng_below(r, 1000000u) < ppm;
}
