/*
 * multipart_fuzz.c — the multipart sink and pre-signed upload URLs under
 * libFuzzer.
 *
 * Goal: the sink that receives lws_spa's decoded file parts keeps its cap
 * and state machine whatever order and sizes of events arrive; the
 * multipart Content-Type (boundary) parser stays in bounds; an upload URL
 * query is accepted only if this key signed exactly its media id, user
 * and expiry.
 * Method: the input is a little program: each step's first byte picks an
 * event (open/content/final/close, field name) or a query to verify; the
 * following bytes are its payload. lws_spa itself needs a live
 * connection, so its framing is exercised by the integration tests
 * (media.py) and this target covers the code fed by it.
 */
#include "gateway/internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Small cap so the fuzzer reaches the edge. */
#define MEDIA_CAP 512

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
	memset(seed, 9, sizeof seed);
	crypto_sign_seed_keypair(key.public_key, key.secret_key, seed);
	ready = true;
}

static void
fuzz_form(const uint8_t *data, size_t size)
{
	gw__form f;
	gw__form_init(&f, MEDIA_CAP);
	size_t i = 0;
	while (i + 2 <= size) {
		uint8_t op = data[i];
		size_t len = data[i + 1];
		i += 2;
		if (len > size - i)
			len = size - i;
		const char *name = (op & 0x10) ? "media" : (op & 0x20) ? "caption"
								     : "x";
		int rc = gw__form_file(&f, name, (const char *)data + i,
			(int)len, (gw__form_state)(op & 3));
		if (f.media.length > MEDIA_CAP)
			abort();
		if (rc < 0 && f.error == 0)
			abort();
		i += len;
	}
	gw__form_free(&f);
}

static void
fuzz_upload_url(const uint8_t *data, size_t size)
{
	if (size < 8)
		return;
	uint64_t media_id = 0;
	memcpy(&media_id, data, 8);
	char *q = malloc(size - 8 + 1);
	if (q == NULL)
		abort();
	memcpy(q, data + 8, size - 8);
	q[size - 8] = '\0';
	gw__query query;
	if (gw__query_parse(&query, q, size - 8) == 0) {
		uint64_t user;
		int rc = gw__upload_url_verify(&key, media_id, &query, 1000,
			&user);
		if (rc == 0) {
			/* Accepted: re-signing the same triple must give the
			 * same signature (no other spelling verifies). */
			uint64_t expires;
			if (gw__parse_u64(gw__query_get(&query, "expires"),
				    &expires) < 0 || user == 0)
				abort();
			char url[512];
			if (gw__upload_url_sign(&key, media_id, user, expires,
				    url, sizeof url) < 0)
				abort();
			const char *sig = strstr(url, "sig=") + 4;
			if (strcmp(sig, gw__query_get(&query, "sig")) != 0)
				abort();
		}
	}
	char type[64], boundary[80];
	(void)gw__content_type(q, type, sizeof type, boundary, sizeof boundary);
	free(q);
	/* A genuine URL with the input spliced into its query. */
	char url[512];
	if (gw__upload_url_sign(&key, media_id | 1, 42, 5000, url,
		    sizeof url) < 0)
		abort();
	const char *qs = strchr(url, '?') + 1;
	char spliced[1024];
	size_t base = strlen(qs);
	size_t at = data[0] % (base + 1);
	size_t extra = size - 8 > 200 ? 200 : size - 8;
	memcpy(spliced, qs, at);
	memcpy(spliced + at, data + 8, extra);
	spliced[at + extra] = '\0';
	if (gw__query_parse(&query, spliced, at + extra) == 0) {
		uint64_t user;
		if (gw__upload_url_verify(&key, media_id | 1, &query, 1000,
			    &user) == 0 &&
			user != 42)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size < 1 || size > 16 * 1024)
		return 0;
	if (data[0] & 1)
		fuzz_form(data + 1, size - 1);
	else
		fuzz_upload_url(data + 1, size - 1);
	return 0;
}
