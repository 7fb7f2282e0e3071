/*
 * http_fuzz.c — the gateway's own request parsing under libFuzzer.
 *
 * Goal: no crash, no read past a buffer, bounded outputs, for everything
 * the gateway parses from a request that libwebsockets hands over
 * verbatim: the path against the route table, query strings, the
 * Authorization, Content-Type and If-None-Match values, static file
 * names, decimal ids, JSON request bodies through the typed accessors,
 * and (the answer side) msgpack bodies through the JSON transcoder.
 * Method: the first byte picks the parser; the rest is its input. Results
 * are checked against the parsers' documented invariants.
 */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

/* A NUL-terminated copy of the input (parsers take C strings). */
static char *
dup_input(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

static void
fuzz_route(const char *s, uint8_t method_byte)
{
	gw__route_match m;
	int rc = gw__route((gw__method)(method_byte % GW_METHOD_COUNT), s, &m);
	if (rc == 0) {
		if (m.info == NULL || m.params_count > GW_PATH_PARAMS_MAX)
			abort();
		for (uint32_t i = 0; i < m.params_count; i++) {
			size_t n = strnlen(m.params[i], GW_PATH_PARAM_BYTES_MAX);
			if (n == 0 || n >= GW_PATH_PARAM_BYTES_MAX)
				abort();
			if (strcmp(m.params[i], "..") == 0)
				abort();
		}
	}
	char allow[128];
	gw__allow_header(m.allowed_methods, allow, sizeof allow);
	(void)gw__route_label(m.info->id);
}

static void
fuzz_query(const char *s, size_t n)
{
	gw__query q;
	if (gw__query_parse(&q, s, n) == 0) {
		if (q.count > GW_QUERY_PARAMS_MAX || q.used > GW_QUERY_BYTES_MAX)
			abort();
		uint32_t limit;
		const char *cursor;
		if (gw__parse_page(&q, &limit, &cursor) == 0 &&
			(limit == 0 || limit > API_PAGE_LIMIT_MAX))
			abort();
		for (uint32_t i = 0; i < q.count; i++) {
			char enc[GW_QUERY_BYTES_MAX * 3 + 1];
			(void)gw__percent_encode(q.values[i], enc, sizeof enc);
		}
	}
	gw__query_init(&q);
	(void)gw__query_add(&q, s, strlen(s));
}

static void
fuzz_headers(const char *s)
{
	const char *token;
	size_t length;
	if (gw__bearer(s, &token, &length) == 0 &&
		(length == 0 || length > GW_TOKEN_BYTES_MAX ||
			token + length > s + strlen(s)))
		abort();
	char type[64], boundary[80];
	if (gw__content_type(s, type, sizeof type, boundary, sizeof boundary) ==
		0) {
		if (strlen(type) >= sizeof type || strlen(boundary) > 70)
			abort();
	}
	(void)gw__etag_matches(s, "\"abc-thumb\"");
	(void)gw__idempotency_key_valid(s, strlen(s));
	if (gw__static_path_valid(s) && strstr(s, "..") != NULL)
		abort();
	(void)gw__content_type_for(s);
	uint64_t v;
	(void)gw__parse_u64(s, &v);
}

static void
fuzz_json_body(const uint8_t *data, size_t size)
{
	char detail[256];
	json_t *o;
	if (gw__json_parse_object(data, size, &o, detail, sizeof detail) < 0)
		return;
	static const char *const allowed[] = {"bio", "profile_pic_media_id",
		"caption", "media_id", "action", "text", "up_to_seq"};
	(void)gw__json_only_keys(o, allowed, 7, detail, sizeof detail);
	const char *str;
	uint64_t id, n;
	bool yes;
	(void)gw__json_string(o, "bio", false, &str, detail, sizeof detail);
	(void)gw__json_string(o, "text", true, &str, detail, sizeof detail);
	(void)gw__json_id(o, "media_id", false, &id, detail, sizeof detail);
	(void)gw__json_action(o, "action", "like", "unlike", &yes, detail,
		sizeof detail);
	(void)gw__json_uint(o, "up_to_seq", true, INT64_MAX, &n, detail,
		sizeof detail);
	json_decref(o);
}

static void
fuzz_transcode(const uint8_t *data, size_t size)
{
	/* msgpack-c allocates a 32-bit array or map's declared size before
	 * reading it; the domain never sends those, so the harness skips
	 * them rather than test msgpack-c's allocator. */
	if (memchr(data, 0xdd, size) != NULL || memchr(data, 0xdf, size) != NULL)
		return;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	if (msgpack_unpack_next(&u, (const char *)data, size, &off) ==
		MSGPACK_UNPACK_SUCCESS) {
		json_t *j;
		char *s = NULL;
		if (gw__msgpack_to_json(&u.data, &j) == 0) {
			size_t n;
			s = gw__json_render(j, &n);
			/* What we send must parse back. */
			json_t *back = s ? json_loads(s,
					    JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)
					 : NULL;
			if (s != NULL && back == NULL)
				abort();
			json_decref(back);
			json_decref(j);
		}
		/* The tree-less renderer writes the tree's text and refuses
		 * what the tree refuses, without its item cache and with it
		 * (twice: the second time list items are hits, and earlier
		 * inputs' items may be hits already); cached and fresh agree
		 * on the text and on refusals. */
		static gw__json_cache *cache;
		if (cache == NULL && gw__json_cache_create(&cache) != 0)
			abort();
		gw__body fresh;
		gw__body_init(&fresh, SIZE_MAX / 2);
		int fresh_rc = gw__msgpack_render(NULL, &u.data, &fresh);
		if (fresh_rc == 0 && (s == NULL ||
				strcmp((const char *)fresh.bytes, s) != 0))
			abort();
		for (int pass = 0; pass < 2; pass++) {
			gw__body b;
			gw__body_init(&b, SIZE_MAX / 2);
			int rc = gw__msgpack_render(cache, &u.data, &b);
			if (rc != fresh_rc)
				abort();
			if (rc == 0 && strcmp((const char *)b.bytes,
					       (const char *)fresh.bytes) != 0)
				abort();
			gw__body_free(&b);
		}
		gw__body_free(&fresh);
		free(s);
	}
	msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 64 * 1024)
		return 0;
	uint8_t which = data[0];
	data++;
	size--;
	char *s = dup_input(data, size);
	switch (which % 6) {
	case 0: fuzz_route(s, size > 0 ? data[0] : 0); break;
	case 1: fuzz_query(s, strlen(s)); break;
	case 2: fuzz_headers(s); break;
	case 3: fuzz_json_body(data, size); break;
	case 4: fuzz_transcode(data, size); break;
	default: {
		uint64_t seq;
		(void)gw__ws_parse_client(s, size, &seq);
		(void)gw__utf8_valid(data, size);
		break;
	}
	}
	free(s);
	return 0;
}
