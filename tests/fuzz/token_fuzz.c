/*
 * token_fuzz.c — access token verification under libFuzzer.
 *
 * Goal: gw__token_verify never crashes and never accepts a token that the
 * key did not sign: any input it accepts must be byte-for-byte a token
 * this key issued (checked by re-issuing with the claimed user and times
 * and comparing), and a token with any alg but EdDSA is never accepted.
 * Method: a fixed key from a fixed seed; the input is the token text. A
 * valid token is seeded into the corpus by the fuzzer itself mutating
 * one issued at start (the first call adds it as a comparison target).
 */
#include "gateway/internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static gw_key key;
static bool ready;

static void
setup(void)
{
	if (ready)
		return;
	if (sodium_init() < 0)
		abort();
	uint8_t seed[32];
	memset(seed, 7, sizeof seed);
	crypto_sign_seed_keypair(key.public_key, key.secret_key, seed);
	memcpy(key.key_id, "fuzzkey", 8);
	ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size > GW_TOKEN_BYTES_MAX + 16)
		return 0;
	/* Half the time, start from a genuine token and splice the input
	 * in, so the fuzzer reaches the signature and claims checks. */
	char token[GW_TOKEN_BYTES_MAX * 2];
	size_t n;
	if (size > 2 && data[0] == 'T') {
		uint64_t user = 1 + (data[1] % 200);
		if (gw__token_issue(&key, user, 1000, 60, token, sizeof token) <
			0)
			abort();
		size_t base = strlen(token);
		size_t at = data[2] % (base + 1);
		size_t extra = size - 3;
		if (at + extra >= sizeof token)
			extra = sizeof token - at - 1;
		memcpy(token + at, data + 3, extra);
		n = at + extra > base ? at + extra : base;
		token[n] = '\0';
	} else {
		memcpy(token, data, size);
		n = size;
		token[n] = '\0';
	}
	uint64_t user = 0;
	int rc = gw__token_verify(&key, token, n, 1000, &user);
	if (rc == 0) {
		/* Accepted: it must be exactly what the key issues for user. */
		if (user == 0)
			abort();
		char again[GW_TOKEN_BYTES_MAX];
		if (gw__token_issue(&key, user, 1000, 60, again, sizeof again) <
			0)
			abort();
		if (strlen(again) != n || memcmp(again, token, n) != 0) {
			/* Different bytes can still carry the same signed
			 * header.claims only if the signature part decodes to
			 * the same 64 bytes: libsodium's strict base64 refuses
			 * other spellings, so this is a forgery. */
			abort();
		}
	} else if (rc != GW_EBADTOKEN && rc != GW_EEXPIRED) {
		abort();
	}
	size_t written;
	uint8_t out[GW_TOKEN_BYTES_MAX];
	(void)gw__b64url_decode(token, n, out, sizeof out, &written);
	return 0;
}
