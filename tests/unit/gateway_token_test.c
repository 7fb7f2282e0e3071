/*
 * gateway_token_test.c — access tokens and pre-signed upload URLs.
 *
 * Goal: a token verifies with its key until exactly its expiry second;
 * any change to header, claims or signature is refused; "alg": "none"
 * and "HS256" tokens are refused even when well formed; another key's
 * tokens are refused; the key file is created 0600 and reloaded; upload
 * URLs refuse expiry and alteration.
 * Method: issue and verify with fixed clocks; build hostile tokens by
 * hand with base64url parts.
 */
#include "gateway/internal.h"
#include "tests/test.h"

#include <sodium.h>
#include <sys/stat.h>

static void
make_key(gw_key *key, const char *name)
{
	CHECK(sodium_init() >= 0);
	char path[512];
	snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
	CHECK_EQ(gw_key_load_or_create(path, key), 0);
}

TEST(gateway_token_roundtrip_and_expiry_edge)
{
	gw_key key;
	make_key(&key, "k");
	char token[GW_TOKEN_BYTES_MAX];
	CHECK_EQ(gw__token_issue(&key, 77, 1000, 60, token, sizeof token), 0);
	uint64_t user = 0;
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1000, &user), 0);
	CHECK_EQ_U64(user, 77);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1059, &user), 0);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1060, &user),
		GW_EEXPIRED);
	CHECK_EQ_U64(user, 0);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 999999, &user),
		GW_EEXPIRED);
}

/* The cache of verified tokens answers as gw__token_verify does: a
 * cached token still expires, a token one byte off is verified (and
 * refused) afresh, a refused token is never cached. */
TEST(gateway_token_cache)
{
	gw_key key;
	make_key(&key, "k");
	gw__token_cache *c;
	CHECK_EQ(gw__token_cache_create(&c), 0);
	char token[GW_TOKEN_BYTES_MAX];
	CHECK_EQ(gw__token_issue(&key, 77, 1000, 60, token, sizeof token), 0);
	size_t n = strlen(token);
	uint64_t user = 0;
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(gw__token_verify_cached(c, &key, token, n, 1000 + i,
				 &user), 0);
		CHECK_EQ_U64(user, 77);
	}
	CHECK_EQ(gw__token_verify_cached(c, &key, token, n, 1060, &user),
		GW_EEXPIRED);
	CHECK_EQ_U64(user, 0);
	CHECK_EQ(gw__token_verify_cached(c, &key, token, n, 1059, &user), 0);
	for (size_t i = 0; i < n; i++) {
		char saved = token[i];
		if (saved == '.')
			continue;
		token[i] = saved == 'A' ? 'B' : 'A';
		for (int twice = 0; twice < 2; twice++)
			CHECK_EQ(gw__token_verify_cached(c, &key, token, n,
					 1000, &user),
				GW_EBADTOKEN);
		token[i] = saved;
	}
	/* A prefix of a cached token is another token. */
	CHECK_EQ(gw__token_verify_cached(c, &key, token, n - 1, 1000, &user),
		GW_EBADTOKEN);
	/* Another key's token with the same claims is refused. */
	gw_key other;
	make_key(&other, "other");
	char foreign[GW_TOKEN_BYTES_MAX];
	CHECK_EQ(gw__token_issue(&other, 77, 1000, 60, foreign,
			 sizeof foreign), 0);
	CHECK_EQ(gw__token_verify_cached(c, &key, foreign, strlen(foreign),
			 1000, &user),
		GW_EBADTOKEN);
	/* Many sessions: each still maps to its own user. */
	for (uint64_t u = 1; u <= 3000; u++) {
		char t[GW_TOKEN_BYTES_MAX];
		CHECK_EQ(gw__token_issue(&key, u, 1000, 60, t, sizeof t), 0);
		CHECK_EQ(gw__token_verify_cached(c, &key, t, strlen(t), 1001,
				 &user), 0);
		CHECK_EQ_U64(user, u);
		CHECK_EQ(gw__token_verify_cached(c, &key, t, strlen(t), 1002,
				 &user), 0);
		CHECK_EQ_U64(user, u);
	}
	gw__token_cache_destroy(c);
}

/* A thousand sessions in turn (the Reed98 mix has ~960 users) stay
 * cached: a second round verifies almost none of them again. Direct-
 * mapped 1,024 slots, some 600 of them were verified again each round. */
TEST(gateway_token_cache_holds_many_sessions)
{
	gw_key key;
	make_key(&key, "k");
	gw__token_cache *c;
	CHECK_EQ(gw__token_cache_create(&c), 0);
	enum { SESSIONS = 1000 };
	static char tokens[SESSIONS][GW_TOKEN_BYTES_MAX];
	for (uint64_t u = 0; u < SESSIONS; u++)
		CHECK_EQ(gw__token_issue(&key, u + 1, 1000, 60, tokens[u],
				 sizeof tokens[u]), 0);
	uint64_t user = 0, hits = 0, misses = 0;
	for (int round = 0; round < 2; round++)
		for (uint64_t u = 0; u < SESSIONS; u++) {
			CHECK_EQ(gw__token_verify_cached(c, &key, tokens[u],
					 strlen(tokens[u]), 1001, &user), 0);
			CHECK_EQ_U64(user, u + 1);
		}
	gw__token_cache_counts(c, &hits, &misses);
	CHECK_EQ_U64(hits + misses, 2 * SESSIONS);
	/* Every token is verified once; a set that drew more than its
	 * ways (a few of 1,024 at this load) re-verifies its own few. */
	CHECK_MSG(misses < SESSIONS + 100, "%llu verifications",
		(unsigned long long)misses);
	gw__token_cache_destroy(c);
}

TEST(gateway_token_tamper)
{
	gw_key key;
	make_key(&key, "k");
	char token[GW_TOKEN_BYTES_MAX];
	CHECK_EQ(gw__token_issue(&key, 5, 1000, 60, token, sizeof token), 0);
	size_t n = strlen(token);
	uint64_t user;
	/* Flip every character in turn (to another base64url character). */
	for (size_t i = 0; i < n; i++) {
		char saved = token[i];
		if (saved == '.')
			continue;
		token[i] = saved == 'A' ? 'B' : 'A';
		int rc = gw__token_verify(&key, token, n, 1000, &user);
		CHECK_MSG(rc == GW_EBADTOKEN, "flip at %zu accepted (%d)", i, rc);
		token[i] = saved;
	}
	/* Bytes >= 0x80 in place of '_' or '-' (libsodium's decoder once
	 * took them for those): another spelling is refused. */
	for (size_t i = 0; i < n; i++) {
		if (token[i] != '_' && token[i] != '-')
			continue;
		char saved = token[i];
		for (int b = 0x80; b <= 0xff; b++) {
			token[i] = (char)b;
			CHECK_EQ(gw__token_verify(&key, token, n, 1000, &user),
				GW_EBADTOKEN);
		}
		token[i] = saved;
	}
	CHECK_EQ(gw__token_verify(&key, token, n - 1, 1000, &user),
		GW_EBADTOKEN);
	CHECK_EQ(gw__token_verify(&key, token, 0, 1000, &user), GW_EBADTOKEN);
	CHECK_EQ(gw__token_verify(&key, "a.b", 3, 1000, &user), GW_EBADTOKEN);
	CHECK_EQ(gw__token_verify(&key, "a.b.c.d", 7, 1000, &user),
		GW_EBADTOKEN);
	/* Another key's token. */
	gw_key other;
	make_key(&other, "other");
	char foreign[GW_TOKEN_BYTES_MAX];
	CHECK_EQ(gw__token_issue(&other, 5, 1000, 60, foreign, sizeof foreign),
		0);
	CHECK_EQ(gw__token_verify(&key, foreign, strlen(foreign), 1000, &user),
		GW_EBADTOKEN);
}

/* header.claims.sig from JSON texts and a raw signature part. */
static void
forge(const char *header, const char *claims, const char *sig, char *out,
	size_t size)
{
	char h[256], c[256];
	CHECK(gw__b64url_encode(header, strlen(header), h, sizeof h) > 0);
	CHECK(gw__b64url_encode(claims, strlen(claims), c, sizeof c) > 0);
	snprintf(out, size, "%s.%s.%s", h, c, sig);
}

TEST(gateway_token_alg_none_and_hs256)
{
	gw_key key;
	make_key(&key, "k");
	const char *claims = "{\"iss\":\"flock\",\"sub\":\"5\",\"iat\":1000,"
			     "\"exp\":2000,\"typ\":\"access\"}";
	char token[1024];
	uint64_t user;
	forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, "", token,
		sizeof token);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1000, &user),
		GW_EBADTOKEN);
	/* HS256 keyed with the public key (the classic confusion). */
	char h[256], c[256];
	const char *header = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	CHECK(gw__b64url_encode(header, strlen(header), h, sizeof h) > 0);
	CHECK(gw__b64url_encode(claims, strlen(claims), c, sizeof c) > 0);
	char signing[600];
	snprintf(signing, sizeof signing, "%s.%s", h, c);
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key.public_key, sizeof key.public_key);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)signing,
		strlen(signing));
	crypto_auth_hmacsha256_final(&st, mac);
	char sig[128];
	CHECK(gw__b64url_encode(mac, sizeof mac, sig, sizeof sig) > 0);
	snprintf(token, sizeof token, "%s.%s", signing, sig);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1000, &user),
		GW_EBADTOKEN);
	/* A correct Ed25519 signature under a header naming another alg is
	 * still refused: the header never picks the algorithm. */
	header = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
	CHECK(gw__b64url_encode(header, strlen(header), h, sizeof h) > 0);
	snprintf(signing, sizeof signing, "%s.%s", h, c);
	unsigned char ed[crypto_sign_BYTES];
	crypto_sign_detached(ed, NULL, (const unsigned char *)signing,
		strlen(signing), key.secret_key);
	CHECK(gw__b64url_encode(ed, sizeof ed, sig, sizeof sig) > 0);
	snprintf(token, sizeof token, "%s.%s", signing, sig);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1000, &user),
		GW_EBADTOKEN);
	/* The same, with EdDSA, is accepted: the forge helper is right. */
	header = "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}";
	CHECK(gw__b64url_encode(header, strlen(header), h, sizeof h) > 0);
	snprintf(signing, sizeof signing, "%s.%s", h, c);
	crypto_sign_detached(ed, NULL, (const unsigned char *)signing,
		strlen(signing), key.secret_key);
	CHECK(gw__b64url_encode(ed, sizeof ed, sig, sizeof sig) > 0);
	snprintf(token, sizeof token, "%s.%s", signing, sig);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1000, &user), 0);
	CHECK_EQ_U64(user, 5);
	/* Signed claims with a wrong issuer or a missing subject. */
	forge(header, "{\"iss\":\"x\",\"sub\":\"5\",\"exp\":2000,"
		      "\"typ\":\"access\"}",
		"", token, sizeof token);
	CHECK_EQ(gw__token_verify(&key, token, strlen(token), 1000, &user),
		GW_EBADTOKEN);
}

TEST(gateway_token_key_file)
{
	CHECK(sodium_init() >= 0);
	char path[512];
	snprintf(path, sizeof path, "%s/token.key", test_tmpdir());
	gw_key a, b;
	CHECK_EQ(gw_key_load_or_create(path, &a), 0);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(st.st_size, 32);
	CHECK_EQ(gw_key_load_or_create(path, &b), 0);
	CHECK(memcmp(a.public_key, b.public_key, 32) == 0);
	char token[GW_TOKEN_BYTES_MAX];
	uint64_t user;
	CHECK_EQ(gw__token_issue(&a, 9, 10, 10, token, sizeof token), 0);
	CHECK_EQ(gw__token_verify(&b, token, strlen(token), 10, &user), 0);
	CHECK_EQ(chmod(path, 0644), 0);
	CHECK_EQ(gw_key_load_or_create(path, &b), GW_EINVAL);
}

TEST(gateway_upload_url)
{
	gw_key key;
	make_key(&key, "k");
	char url[512];
	CHECK_EQ(gw__upload_url_sign(&key, 123, 45, 5000, url, sizeof url), 0);
	const char *q = strchr(url, '?');
	CHECK(q != NULL);
	CHECK(strncmp(url, "/v1/media/uploads/123?", 22) == 0);
	gw__query query;
	CHECK_EQ(gw__query_parse(&query, q + 1, strlen(q + 1)), 0);
	uint64_t user;
	CHECK_EQ(gw__upload_url_verify(&key, 123, &query, 4999, &user), 0);
	CHECK_EQ_U64(user, 45);
	CHECK_EQ(gw__upload_url_verify(&key, 123, &query, 5000, &user),
		GW_EEXPIRED);
	CHECK_EQ(gw__upload_url_verify(&key, 124, &query, 4999, &user),
		GW_EBADTOKEN);
	char altered[512];
	snprintf(altered, sizeof altered, "%s", q + 1);
	char *u = strstr(altered, "user=45");
	u[6] = '6';
	CHECK_EQ(gw__query_parse(&query, altered, strlen(altered)), 0);
	CHECK_EQ(gw__upload_url_verify(&key, 123, &query, 4999, &user),
		GW_EBADTOKEN);
	snprintf(altered, sizeof altered, "%s", q + 1);
	char *e = strstr(altered, "expires=5000");
	e[8] = '9';
	CHECK_EQ(gw__query_parse(&query, altered, strlen(altered)), 0);
	CHECK_EQ(gw__upload_url_verify(&key, 123, &query, 4999, &user),
		GW_EBADTOKEN);
	CHECK_EQ(gw__query_parse(&query, "user=45&expires=5000", 20), 0);
	CHECK_EQ(gw__upload_url_verify(&key, 123, &query, 4999, &user),
		GW_EBADTOKEN);
}
