/*
 * token.c — access tokens and pre-signed upload URLs, signed with
 * Ed25519 (libsodium).
 *
 * Role: a token is a compact JWS (JWT) with the algorithm pinned to
 * EdDSA: the header the server writes is fixed, and on verification the
 * header is only read to refuse any token whose "alg" is not exactly
 * "EdDSA" (so "none", "HS256" and friends are refused); the signature is
 * always checked with crypto_sign_verify_detached and the node's key.
 * Claims: sub (user id as a decimal string), iat, exp, iss "flock",
 * typ "access". A token is valid while now < exp. Any node holding the
 * same key file verifies the same tokens.
 *
 * Upload URLs are signed the same way over "upload|<media>|<user>|<exp>"
 * so the PUT needs no bearer token; expiry and alteration are refused
 * here, reuse by the domain (a reserved item takes its bytes once).
 *
 * Invariants: every decoded length is checked before use; no output
 * buffer is written past its size.
 *
 * What it deliberately does not do: revoke tokens (they expire), refresh
 * them (the client logs in again).
 */
#include "gateway/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* Largest decoded JWT header or claims we read; ours are under 120. */
#define TOKEN_PART_BYTES_MAX 512
#define SEED_BYTES 32

int
gw__b64url_encode(const void *bytes, size_t n, char *out, size_t size)
{
	size_t need = sodium_base64_encoded_len(n,
		sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (need > size)
		return GW_ETOOLARGE;
	sodium_bin2base64(out, size, bytes, n,
		sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return (int)strlen(out);
}

int
gw__b64url_decode(const char *s, size_t n, void *out, size_t size,
	size_t *written)
{
	/* Only the alphabet itself: libsodium 1.0.18's constant-time decoder
	 * maps some bytes >= 0x80 onto '_' and '-' (found by token_fuzz), so
	 * without this check a token had more than one spelling. */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_';
		if (!ok)
			return GW_EINVAL;
	}
	size_t length = 0;
	const char *end = NULL;
	if (sodium_base642bin(out, size, s, n, NULL, &length, &end,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return GW_EINVAL;
	if (end != s + n)
		return GW_EINVAL;
	*written = length;
	return 0;
}

static void
key_from_seed(const uint8_t seed[SEED_BYTES], gw_key *out)
{
	crypto_sign_seed_keypair(out->public_key, out->secret_key, seed);
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 5; i++) {
		out->key_id[2 * i] = hex[out->public_key[i] >> 4];
		out->key_id[2 * i + 1] = hex[out->public_key[i] & 15];
	}
	out->key_id[10] = '\0';
}

int
gw_key_load_or_create(const char *path, gw_key *out)
{
	gw__assert(path != NULL);
	if (sodium_init() < 0)
		return GW_EIO;
	uint8_t seed[SEED_BYTES];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return GW_EIO;
		randombytes_buf(seed, sizeof seed);
		ssize_t n = write(fd, seed, sizeof seed);
		int synced = fsync(fd);
		close(fd);
		if (n != (ssize_t)sizeof seed || synced != 0) {
			unlink(path);
			sodium_memzero(seed, sizeof seed);
			return GW_EIO;
		}
		key_from_seed(seed, out);
		sodium_memzero(seed, sizeof seed);
		return 0;
	}
	if (fd < 0)
		return GW_EIO;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return GW_EIO;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 ||
		st.st_size != SEED_BYTES) {
		close(fd);
		return GW_EINVAL;
	}
	ssize_t n = read(fd, seed, sizeof seed);
	close(fd);
	if (n != (ssize_t)sizeof seed)
		return GW_EIO;
	key_from_seed(seed, out);
	sodium_memzero(seed, sizeof seed);
	return 0;
}

/* ---- JWT ----------------------------------------------------------------- */

static int
sign_b64(const gw_key *key, const char *message, size_t length, char *out,
	size_t size)
{
	uint8_t sig[crypto_sign_BYTES];
	crypto_sign_detached(sig, NULL, (const unsigned char *)message, length,
		key->secret_key);
	return gw__b64url_encode(sig, sizeof sig, out, size);
}

int
gw__token_issue(const gw_key *key, uint64_t user_id, uint64_t now_s,
	uint64_t ttl_s, char *out, size_t size)
{
	gw__assert(user_id != 0);
	gw__assert(ttl_s > 0);
	char header[96];
	char claims[192];
	int hn = snprintf(header, sizeof header,
		"{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
		key->key_id);
	int cn = snprintf(claims, sizeof claims,
		"{\"iss\":\"flock\",\"sub\":\"%" PRIu64 "\",\"iat\":%" PRIu64
		",\"exp\":%" PRIu64 ",\"typ\":\"access\"}",
		user_id, now_s, now_s + ttl_s);
	gw__assert(hn > 0 && (size_t)hn < sizeof header);
	gw__assert(cn > 0 && (size_t)cn < sizeof claims);
	size_t used = 0;
	int n = gw__b64url_encode(header, (size_t)hn, out, size);
	if (n < 0)
		return n;
	used = (size_t)n;
	if (used + 1 >= size)
		return GW_ETOOLARGE;
	out[used++] = '.';
	n = gw__b64url_encode(claims, (size_t)cn, out + used, size - used);
	if (n < 0)
		return n;
	used += (size_t)n;
	size_t signed_length = used;
	if (used + 1 >= size)
		return GW_ETOOLARGE;
	out[used++] = '.';
	n = sign_b64(key, out, signed_length, out + used, size - used);
	if (n < 0)
		return n;
	return 0;
}

/* Decodes one base64url part as a JSON object. */
static json_t *
part_json(const char *s, size_t n)
{
	char bytes[TOKEN_PART_BYTES_MAX];
	size_t length;
	if (n == 0 || gw__b64url_decode(s, n, bytes, sizeof bytes - 1,
			      &length) < 0)
		return NULL;
	json_t *v = json_loadb(bytes, length, JSON_REJECT_DUPLICATES, NULL);
	if (v != NULL && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

static int
check_claims(const json_t *claims, uint64_t now_s, uint64_t *user_id,
	uint64_t *expires_s)
{
	const char *iss = json_string_value(json_object_get(claims, "iss"));
	const char *typ = json_string_value(json_object_get(claims, "typ"));
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	json_t *exp = json_object_get(claims, "exp");
	if (iss == NULL || strcmp(iss, "flock") != 0)
		return GW_EBADTOKEN;
	if (typ == NULL || strcmp(typ, "access") != 0)
		return GW_EBADTOKEN;
	uint64_t id;
	if (sub == NULL || gw__parse_u64(sub, &id) < 0 || id == 0)
		return GW_EBADTOKEN;
	if (!json_is_integer(exp) || json_integer_value(exp) <= 0)
		return GW_EBADTOKEN;
	if (now_s >= (uint64_t)json_integer_value(exp))
		return GW_EEXPIRED;
	*user_id = id;
	*expires_s = (uint64_t)json_integer_value(exp);
	return 0;
}

static int
token_verify(const gw_key *key, const char *token, size_t length,
	uint64_t now_s, uint64_t *user_id, uint64_t *expires_s)
{
	*user_id = 0;
	if (token == NULL || length == 0 || length > GW_TOKEN_BYTES_MAX)
		return GW_EBADTOKEN;
	const char *dot1 = memchr(token, '.', length);
	if (dot1 == NULL)
		return GW_EBADTOKEN;
	const char *rest = dot1 + 1;
	size_t rest_length = length - (size_t)(rest - token);
	const char *dot2 = memchr(rest, '.', rest_length);
	if (dot2 == NULL)
		return GW_EBADTOKEN;
	const char *sig = dot2 + 1;
	size_t sig_length = length - (size_t)(sig - token);
	if (memchr(sig, '.', sig_length) != NULL)
		return GW_EBADTOKEN;

	/* The header may only confirm the pinned algorithm. */
	json_t *header = part_json(token, (size_t)(dot1 - token));
	if (header == NULL)
		return GW_EBADTOKEN;
	const char *alg = json_string_value(json_object_get(header, "alg"));
	bool pinned = alg != NULL && strcmp(alg, "EdDSA") == 0;
	json_decref(header);
	if (!pinned)
		return GW_EBADTOKEN;

	uint8_t signature[crypto_sign_BYTES];
	size_t signature_length;
	if (gw__b64url_decode(sig, sig_length, signature, sizeof signature,
		    &signature_length) < 0 ||
		signature_length != crypto_sign_BYTES)
		return GW_EBADTOKEN;
	if (crypto_sign_verify_detached(signature,
		    (const unsigned char *)token, (size_t)(dot2 - token),
		    key->public_key) != 0)
		return GW_EBADTOKEN;

	json_t *claims = part_json(rest, (size_t)(dot2 - rest));
	if (claims == NULL)
		return GW_EBADTOKEN;
	int rc = check_claims(claims, now_s, user_id, expires_s);
	json_decref(claims);
	return rc;
}

int
gw__token_verify(const gw_key *key, const char *token, size_t length,
	uint64_t now_s, uint64_t *user_id)
{
	uint64_t expires_s;
	return token_verify(key, token, length, now_s, user_id, &expires_s);
}

/* ---- verified tokens ------------------------------------------------------ */

/* The cache of verified tokens: one slot per recently active session, in
 * sets of TOKEN_CACHE_WAYS; a token new to a full set replaces the one
 * used longest ago. An Ed25519 verification costs ~50 us, a lookup well
 * under 1. Direct-mapped 1,024 slots, the ~960 users of the Reed98 mix
 * evicted each other on most requests (libsodium was an eighth of the
 * node's CPU); 4,096 slots of ~1 KiB in sets of 4 keep that many and
 * more. */
#define TOKEN_CACHE_SETS 1024u
#define TOKEN_CACHE_WAYS 4u

typedef struct token_slot {
	uint64_t user_id;
	uint64_t expires_s;
	uint64_t used;   /* c->clock at its last hit or fill */
	uint16_t length; /* 0: empty */
	char token[GW_TOKEN_BYTES_MAX];
} token_slot;

struct gw__token_cache {
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	uint64_t clock;
	uint64_t hits;
	uint64_t misses;
	token_slot slots[TOKEN_CACHE_SETS][TOKEN_CACHE_WAYS];
};

static_assert(GW_TOKEN_BYTES_MAX <= UINT16_MAX, "token length in a u16");

int
gw__token_cache_create(gw__token_cache **out)
{
	gw__token_cache *c = calloc(1, sizeof *c);
	if (c == NULL)
		return GW_ENOMEM;
	/* Keyed so no client can aim tokens at one set. */
	crypto_shorthash_keygen(c->hash_key);
	*out = c;
	return 0;
}

void
gw__token_cache_destroy(gw__token_cache *c)
{
	if (c != NULL)
		sodium_memzero(c, sizeof *c);
	free(c);
}

void
gw__token_cache_counts(const gw__token_cache *c, uint64_t *hits,
	uint64_t *misses)
{
	*hits = c != NULL ? c->hits : 0;
	*misses = c != NULL ? c->misses : 0;
}

int
gw__token_verify_cached(gw__token_cache *c, const gw_key *key,
	const char *token, size_t length, uint64_t now_s, uint64_t *user_id)
{
	if (c == NULL || token == NULL || length == 0 ||
		length > GW_TOKEN_BYTES_MAX)
		return gw__token_verify(key, token, length, now_s, user_id);
	uint64_t hash;
	crypto_shorthash((unsigned char *)&hash, (const unsigned char *)token,
		length, c->hash_key);
	token_slot *set = c->slots[hash & (TOKEN_CACHE_SETS - 1)];
	c->clock++;
	/* Only tokens that passed gw__token_verify are here, byte for byte
	 * (compared in constant time); exp is the one claim that changes
	 * its answer with time. */
	token_slot *oldest = &set[0];
	for (uint32_t w = 0; w < TOKEN_CACHE_WAYS; w++) {
		token_slot *s = &set[w];
		if (s->length == length &&
			sodium_memcmp(s->token, token, length) == 0) {
			c->hits++;
			s->used = c->clock;
			if (now_s >= s->expires_s) {
				*user_id = 0;
				return GW_EEXPIRED;
			}
			*user_id = s->user_id;
			return 0;
		}
		if (s->used < oldest->used)
			oldest = s;
	}
	c->misses++;
	uint64_t expires_s = 0;
	int rc = token_verify(key, token, length, now_s, user_id, &expires_s);
	if (rc == 0) {
		oldest->user_id = *user_id;
		oldest->expires_s = expires_s;
		oldest->used = c->clock;
		oldest->length = (uint16_t)length;
		memcpy(oldest->token, token, length);
	}
	return rc;
}

/* ---- pre-signed upload URLs ---------------------------------------------- */

static int
upload_message(uint64_t media_id, uint64_t user_id, uint64_t expires_s,
	char *out, size_t size)
{
	int n = snprintf(out, size,
		"flock-upload|%" PRIu64 "|%" PRIu64 "|%" PRIu64, media_id,
		user_id, expires_s);
	gw__assert(n > 0 && (size_t)n < size);
	return n;
}

int
gw__upload_url_sign(const gw_key *key, uint64_t media_id, uint64_t user_id,
	uint64_t expires_s, char *out, size_t size)
{
	char message[96];
	int n = upload_message(media_id, user_id, expires_s, message,
		sizeof message);
	char sig[100];
	if (sign_b64(key, message, (size_t)n, sig, sizeof sig) < 0)
		return GW_ETOOLARGE;
	int w = snprintf(out, size,
		"/v1/media/uploads/%" PRIu64 "?user=%" PRIu64
		"&expires=%" PRIu64 "&sig=%s",
		media_id, user_id, expires_s, sig);
	if (w < 0 || (size_t)w >= size)
		return GW_ETOOLARGE;
	return 0;
}

int
gw__upload_url_verify(const gw_key *key, uint64_t media_id,
	const gw__query *q, uint64_t now_s, uint64_t *user_id)
{
	*user_id = 0;
	uint64_t user, expires;
	const char *sig = gw__query_get(q, "sig");
	if (gw__parse_u64(gw__query_get(q, "user"), &user) < 0 || user == 0)
		return GW_EBADTOKEN;
	if (gw__parse_u64(gw__query_get(q, "expires"), &expires) < 0)
		return GW_EBADTOKEN;
	if (sig == NULL)
		return GW_EBADTOKEN;
	uint8_t signature[crypto_sign_BYTES];
	size_t signature_length;
	if (gw__b64url_decode(sig, strlen(sig), signature, sizeof signature,
		    &signature_length) < 0 ||
		signature_length != crypto_sign_BYTES)
		return GW_EBADTOKEN;
	char message[96];
	int n = upload_message(media_id, user, expires, message,
		sizeof message);
	if (crypto_sign_verify_detached(signature,
		    (const unsigned char *)message, (size_t)n,
		    key->public_key) != 0)
		return GW_EBADTOKEN;
	if (now_s >= expires)
		return GW_EEXPIRED;
	*user_id = user;
	return 0;
}
