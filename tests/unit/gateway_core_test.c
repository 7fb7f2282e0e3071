/*
 * gateway_core_test.c — the gateway's core without sockets or domain.
 *
 * Goal: the router (every API.md route, 404 vs 405, parameters that could
 * walk paths), query parsing, header values, body caps at the exact edge,
 * problem+json, the msgpack->JSON transcoder, per-IP buckets and
 * connection counts, the WebSocket frame queue and UTF-8 check, metrics,
 * the media cache (prebuilt responses, LRU eviction under its byte cap).
 * Method: call the pure functions directly with hand-made inputs.
 */
#include "gateway/internal.h"
#include "tests/test.h"

#include <jansson.h>
#include <msgpack.h>

TEST(gateway_router_routes)
{
	gw__route_match m;
	CHECK_EQ(gw__route(GW_METHOD_POST, "/v1/signup", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_SIGNUP);
	CHECK_EQ(gw__route(GW_METHOD_PATCH, "/v1/users/me", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_USER_ME);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/users/me", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_USER_GET);
	CHECK_STR_EQ(m.params[0], "me");
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/users/alice/followers", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_FOLLOWERS);
	CHECK_STR_EQ(m.params[0], "alice");
	CHECK_EQ(gw__route(GW_METHOD_DELETE, "/v1/posts/12/comments/34", &m),
		0);
	CHECK_EQ(m.info->id, GW_ROUTE_COMMENT_DELETE);
	CHECK_EQ(m.params_count, 2);
	CHECK_STR_EQ(m.params[0], "12");
	CHECK_STR_EQ(m.params[1], "34");
	CHECK_EQ(gw__route(GW_METHOD_POST, "/v1/media/uploads", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_MEDIA_RESERVE);
	CHECK_EQ(gw__route(GW_METHOD_PUT, "/v1/media/uploads/99", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_MEDIA_PUT);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/media/99", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_MEDIA_GET);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/media/abc/thumb", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_MEDIA_FILE);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/static/js/app.js", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_STATIC);
	CHECK_STR_EQ(m.params[0], "js/app.js");
	CHECK_EQ(gw__route(GW_METHOD_HEAD, "/healthz", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_HEALTHZ);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/", &m), 0);
	CHECK_EQ(m.info->id, GW_ROUTE_INDEX);
}

TEST(gateway_router_not_found_and_method)
{
	gw__route_match m;
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/nope", &m), GW_ENOTFOUND);
	CHECK_EQ(m.info->id, GW_ROUTE_UNMATCHED);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/signup/", &m), GW_ENOTFOUND);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/users//followers", &m),
		GW_ENOTFOUND);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/media/../thumb", &m),
		GW_ENOTFOUND);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/media/./thumb", &m), GW_ENOTFOUND);
	CHECK_EQ(gw__route(GW_METHOD_GET, "relative", &m), GW_ENOTFOUND);
	CHECK_EQ(gw__route(GW_METHOD_GET, "/v1/signup", &m), GW_EMETHOD);
	char allow[64];
	gw__allow_header(m.allowed_methods, allow, sizeof allow);
	CHECK_STR_EQ(allow, "POST");
	CHECK_EQ(gw__route(GW_METHOD_PUT, "/v1/posts/5", &m), GW_EMETHOD);
	gw__allow_header(m.allowed_methods, allow, sizeof allow);
	CHECK_STR_EQ(allow, "GET, HEAD, DELETE");
	/* A parameter of exactly the cap does not fit its NUL. */
	char path[400];
	char param[GW_PATH_PARAM_BYTES_MAX + 1];
	memset(param, 'a', GW_PATH_PARAM_BYTES_MAX);
	param[GW_PATH_PARAM_BYTES_MAX] = '\0';
	snprintf(path, sizeof path, "/v1/users/%s", param);
	CHECK_EQ(gw__route(GW_METHOD_GET, path, &m), GW_ENOTFOUND);
	param[GW_PATH_PARAM_BYTES_MAX - 1] = '\0';
	snprintf(path, sizeof path, "/v1/users/%s", param);
	CHECK_EQ(gw__route(GW_METHOD_GET, path, &m), 0);
	CHECK_EQ(strlen(m.params[0]), GW_PATH_PARAM_BYTES_MAX - 1);
}

TEST(gateway_query_parse)
{
	gw__query q;
	const char *raw = "limit=5&after_cursor=a%2Bb&q=hello+world&flag";
	CHECK_EQ(gw__query_parse(&q, raw, strlen(raw)), 0);
	CHECK_EQ(q.count, 4);
	CHECK_STR_EQ(gw__query_get(&q, "limit"), "5");
	CHECK_STR_EQ(gw__query_get(&q, "after_cursor"), "a+b");
	CHECK_STR_EQ(gw__query_get(&q, "q"), "hello world");
	CHECK_STR_EQ(gw__query_get(&q, "flag"), "");
	CHECK(gw__query_get(&q, "missing") == NULL);
	CHECK_EQ(gw__query_parse(&q, "a=%zz", 5), GW_EINVAL);
	CHECK_EQ(gw__query_parse(&q, "a=%2", 4), GW_EINVAL);
	CHECK_EQ(gw__query_parse(&q, "a=%00", 5), GW_EINVAL);
	uint32_t limit;
	const char *cursor;
	gw__query_init(&q);
	CHECK_EQ(gw__parse_page(&q, &limit, &cursor), 0);
	CHECK_EQ(limit, API_PAGE_LIMIT_DEFAULT);
	CHECK(cursor == NULL);
	CHECK_EQ(gw__query_add(&q, "limit=500", 9), 0);
	CHECK_EQ(gw__query_add(&q, "after_cursor=xyz", 16), 0);
	CHECK_EQ(gw__parse_page(&q, &limit, &cursor), 0);
	CHECK_EQ(limit, API_PAGE_LIMIT_MAX);
	CHECK_STR_EQ(cursor, "xyz");
	gw__query_init(&q);
	CHECK_EQ(gw__query_add(&q, "limit=0", 7), 0);
	CHECK_EQ(gw__parse_page(&q, &limit, &cursor), GW_EINVAL);
	gw__query_init(&q);
	CHECK_EQ(gw__query_add(&q, "limit=-1", 8), 0);
	CHECK_EQ(gw__parse_page(&q, &limit, &cursor), GW_EINVAL);
	/* Bounded: more than GW_QUERY_PARAMS_MAX parameters. */
	gw__query_init(&q);
	for (int i = 0; i < GW_QUERY_PARAMS_MAX; i++)
		CHECK_EQ(gw__query_add(&q, "a=b", 3), 0);
	CHECK_EQ(gw__query_add(&q, "a=b", 3), GW_ETOOLARGE);
	char enc[32];
	CHECK(gw__percent_encode("a b/c", enc, sizeof enc) > 0);
	CHECK_STR_EQ(enc, "a%20b%2Fc");
	CHECK_EQ(gw__percent_encode("abcdef", enc, 6), GW_ETOOLARGE);
}

TEST(gateway_parse_u64)
{
	uint64_t v;
	CHECK_EQ(gw__parse_u64("0", &v), 0);
	CHECK_EQ_U64(v, 0);
	CHECK_EQ(gw__parse_u64("18446744073709551615", &v), 0);
	CHECK_EQ_U64(v, UINT64_MAX);
	CHECK_EQ(gw__parse_u64("18446744073709551616", &v), GW_EINVAL);
	CHECK_EQ(gw__parse_u64("", &v), GW_EINVAL);
	CHECK_EQ(gw__parse_u64("+1", &v), GW_EINVAL);
	CHECK_EQ(gw__parse_u64("1 ", &v), GW_EINVAL);
	CHECK_EQ(gw__parse_u64(NULL, &v), GW_EINVAL);
}

TEST(gateway_headers)
{
	const char *t;
	size_t n;
	CHECK_EQ(gw__bearer("Bearer abc.def.ghi", &t, &n), 0);
	CHECK_EQ(n, 11);
	CHECK(strncmp(t, "abc.def.ghi", n) == 0);
	CHECK_EQ(gw__bearer("bearer   x  ", &t, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(gw__bearer("Basic abc", &t, &n), GW_EINVAL);
	CHECK_EQ(gw__bearer("Bearer", &t, &n), GW_EINVAL);
	CHECK_EQ(gw__bearer("Bearerabc", &t, &n), GW_EINVAL);
	CHECK_EQ(gw__bearer("Bearer a b", &t, &n), GW_EINVAL);
	char type[64], boundary[80];
	CHECK_EQ(gw__content_type("Application/JSON; charset=utf-8", type,
			 sizeof type, boundary, sizeof boundary),
		0);
	CHECK_STR_EQ(type, "application/json");
	CHECK_EQ(gw__content_type(
			 "multipart/form-data; boundary=\"----x y\"", type,
			 sizeof type, boundary, sizeof boundary),
		0);
	CHECK_STR_EQ(type, "multipart/form-data");
	CHECK_STR_EQ(boundary, "----x y");
	CHECK_EQ(gw__content_type("image/png", type, sizeof type, boundary,
			 sizeof boundary),
		0);
	CHECK_STR_EQ(type, "image/png");
	CHECK_EQ(gw__content_type("nonsense", type, sizeof type, boundary,
			 sizeof boundary),
		GW_EINVAL);
	CHECK_EQ(gw__content_type("a/b; x", type, sizeof type, boundary,
			 sizeof boundary),
		GW_EINVAL);
	CHECK(gw__etag_matches("\"abc\"", "\"abc\""));
	CHECK(gw__etag_matches("W/\"abc\"", "\"abc\""));
	CHECK(gw__etag_matches("\"x\", \"abc\"", "\"abc\""));
	CHECK(gw__etag_matches("*", "\"abc\""));
	CHECK(!gw__etag_matches("\"abcd\"", "\"abc\""));
	CHECK(!gw__etag_matches("", "\"abc\""));
	CHECK(gw__idempotency_key_valid("k-1", 3));
	CHECK(!gw__idempotency_key_valid("a b", 3));
	CHECK(!gw__idempotency_key_valid("", 0));
	CHECK(gw__static_path_valid("app.js"));
	CHECK(gw__static_path_valid("img/logo.svg"));
	CHECK(!gw__static_path_valid("../etc/passwd"));
	CHECK(!gw__static_path_valid("a/../b"));
	CHECK(!gw__static_path_valid("a/.hidden"));
	CHECK(!gw__static_path_valid("/abs"));
	CHECK(!gw__static_path_valid("a//b"));
	CHECK(!gw__static_path_valid("a\\b"));
	CHECK_STR_EQ(gw__content_type_for("x/app.JS"),
		"text/javascript; charset=utf-8");
	CHECK_STR_EQ(gw__content_type_for("index.html"),
		"text/html; charset=utf-8");
	CHECK_STR_EQ(gw__content_type_for("dir.v1/noext"),
		"application/octet-stream");
}

TEST(gateway_body_cap_exact_edge)
{
	gw__body b;
	gw__body_init(&b, 100);
	char chunk[60];
	memset(chunk, 'x', sizeof chunk);
	CHECK_EQ(gw__body_append(&b, chunk, 60), 0);
	CHECK_EQ(gw__body_append(&b, chunk, 40), 0); /* exactly the cap */
	CHECK_EQ(b.length, 100);
	CHECK_EQ(b.bytes[100], '\0');
	CHECK_EQ(gw__body_append(&b, chunk, 1), GW_ETOOLARGE);
	CHECK_EQ(b.length, 100);
	CHECK_EQ(gw__body_append(&b, chunk, 0), 0);
	gw__body_free(&b);
	/* One over in a single chunk. */
	gw__body_init(&b, 100);
	char big[101];
	memset(big, 'y', sizeof big);
	CHECK_EQ(gw__body_append(&b, big, 101), GW_ETOOLARGE);
	CHECK_EQ(b.length, 0);
	gw__body_free(&b);
	/* The JSON default cap: 64 KiB accepted, one more refused. */
	gw__body_init(&b, GW_JSON_BODY_BYTES_DEFAULT);
	char *kib = malloc(1024);
	memset(kib, 'z', 1024);
	for (int i = 0; i < 64; i++)
		CHECK_EQ(gw__body_append(&b, kib, 1024), 0);
	CHECK_EQ(gw__body_append(&b, kib, 1), GW_ETOOLARGE);
	CHECK(b.capacity <= GW_JSON_BODY_BYTES_DEFAULT + 1);
	free(kib);
	gw__body_free(&b);
}

TEST(gateway_form_sink)
{
	gw__form f;
	gw__form_init(&f, 10);
	CHECK_EQ(gw__form_file(&f, "media", NULL, 0, GW_FORM_OPEN), 0);
	CHECK_EQ(gw__form_file(&f, "media", "12345", 5, GW_FORM_CONTENT), 0);
	CHECK_EQ(gw__form_file(&f, "media", "67890", 5, GW_FORM_FINAL_CONTENT),
		0);
	CHECK(f.media_done);
	CHECK_EQ(f.media.length, 10);
	CHECK_EQ(gw__form_file(&f, "media", NULL, 0, GW_FORM_CLOSE), 0);
	gw__form_free(&f);
	gw__form_init(&f, 10);
	CHECK_EQ(gw__form_file(&f, "media", NULL, 0, GW_FORM_OPEN), 0);
	CHECK_EQ(gw__form_file(&f, "media", "12345678901", 11,
			 GW_FORM_CONTENT),
		-1);
	CHECK_EQ(f.error, GW_ETOOLARGE);
	gw__form_free(&f);
	gw__form_init(&f, 10);
	CHECK_EQ(gw__form_file(&f, "other", NULL, 0, GW_FORM_OPEN), -1);
	CHECK_EQ(f.error, GW_EINVAL);
	gw__form_free(&f);
}

TEST(gateway_problem_json)
{
	size_t n;
	char *s = gw__problem_render(404, "no route GET /x", &n);
	CHECK(s != NULL);
	CHECK_EQ(strlen(s), n);
	json_t *v = json_loads(s, 0, NULL);
	CHECK(v != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(v, "type")),
		"/problems/not-found");
	CHECK_STR_EQ(json_string_value(json_object_get(v, "title")),
		"Not Found");
	CHECK_EQ(json_integer_value(json_object_get(v, "status")), 404);
	CHECK_STR_EQ(json_string_value(json_object_get(v, "detail")),
		"no route GET /x");
	json_decref(v);
	free(s);
	/* An invalid UTF-8 detail is dropped, the problem still renders. */
	s = gw__problem_render(400, "bad \xff byte", &n);
	CHECK(s != NULL);
	v = json_loads(s, 0, NULL);
	CHECK(v != NULL);
	CHECK(json_object_get(v, "detail") == NULL);
	json_decref(v);
	free(s);
	CHECK_EQ(gw__status_for_api(API_EIDEMPOTENCY), 422);
	CHECK_EQ(gw__status_for_api(API_ERATELIMITED), 429);
	CHECK_EQ(gw__status_for_api(API_EFORBIDDEN), 403);
	CHECK_EQ(gw__status_for_api(-9999), 500);
}

/* Packs a sample answer shaped like a post. */
static void
pack_sample(msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 8);
	msgpack_pack_str_with_body(&pk, "post_id", 7);
	msgpack_pack_str_with_body(&pk, "7093457788123136", 16);
	msgpack_pack_str_with_body(&pk, "likes_count", 11);
	msgpack_pack_uint64(&pk, 42);
	msgpack_pack_str_with_body(&pk, "liked_by_me", 11);
	msgpack_pack_true(&pk);
	msgpack_pack_str_with_body(&pk, "tags", 4);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_str_with_body(&pk, "b", 1);
	msgpack_pack_str_with_body(&pk, "next_cursor", 11);
	msgpack_pack_nil(&pk);
	msgpack_pack_str_with_body(&pk, "big", 3);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	msgpack_pack_str_with_body(&pk, "neg", 3);
	msgpack_pack_int64(&pk, -5);
	msgpack_pack_str_with_body(&pk, "ratio", 5);
	msgpack_pack_double(&pk, 0.5);
}

TEST(gateway_transcoder)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	pack_sample(&sb);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
		MSGPACK_UNPACK_SUCCESS);
	json_t *j;
	CHECK_EQ(gw__msgpack_to_json(&u.data, &j), 0);
	size_t n;
	char *s = gw__json_render(j, &n);
	CHECK_STR_EQ(s,
		"{\"post_id\":\"7093457788123136\",\"likes_count\":42,"
		"\"liked_by_me\":true,\"tags\":[\"a\",\"b\"],"
		"\"next_cursor\":null,\"big\":\"18446744073709551615\","
		"\"neg\":-5,\"ratio\":0.5}");
	free(s);
	json_decref(j);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);

	/* Invalid UTF-8 in a string is refused, not passed through. */
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_str_with_body(&pk, "\xc3\x28", 2);
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
		MSGPACK_UNPACK_SUCCESS);
	CHECK_EQ(gw__msgpack_to_json(&u.data, &j), GW_EINVAL);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);

	/* Depth is bounded (built by hand: msgpack-c's own unpacker stops
	 * at 32 levels). */
	msgpack_object nest[GW_JSON_DEPTH_MAX + 2];
	for (int i = 0; i < GW_JSON_DEPTH_MAX + 2; i++) {
		nest[i].type = MSGPACK_OBJECT_ARRAY;
		nest[i].via.array.size = i + 1 < GW_JSON_DEPTH_MAX + 2 ? 1 : 0;
		nest[i].via.array.ptr = i + 1 < GW_JSON_DEPTH_MAX + 2
			? &nest[i + 1]
			: NULL;
	}
	CHECK_EQ(gw__msgpack_to_json(&nest[0], &j), GW_EINVAL);
	CHECK_EQ(gw__msgpack_to_json(&nest[3], &j), 0);
	json_decref(j);
}

/* The tree's text for o, or NULL when the tree refuses it. */
static char *
tree_text(const msgpack_object *o)
{
	json_t *j;
	if (gw__msgpack_to_json(o, &j) != 0)
		return NULL;
	char *s = gw__json_render(j, NULL);
	json_decref(j);
	return s;
}

static void
feed_like_page(msgpack_sbuffer *sb, uint32_t likes, bool liked)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "items", 5);
	msgpack_pack_array(&pk, 3);
	for (int i = 0; i < 3; i++) {
		msgpack_pack_map(&pk, 5);
		msgpack_pack_str_with_body(&pk, "post_id", 7);
		char id[24];
		int n = snprintf(id, sizeof id, "%d", 1000 + i);
		msgpack_pack_str_with_body(&pk, id, (size_t)n);
		msgpack_pack_str_with_body(&pk, "caption", 7);
		msgpack_pack_str_with_body(&pk, "caf\xc3\xa9 \"q\" \\ \n\x01", 14);
		msgpack_pack_str_with_body(&pk, "user", 4);
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str_with_body(&pk, "username", 8);
		msgpack_pack_str_with_body(&pk, "ann", 3);
		msgpack_pack_str_with_body(&pk, "likes_count", 11);
		msgpack_pack_uint32(&pk, likes);
		msgpack_pack_str_with_body(&pk, "liked_by_me", 11);
		if (liked)
			msgpack_pack_true(&pk);
		else
			msgpack_pack_false(&pk);
	}
	msgpack_pack_str_with_body(&pk, "next_cursor", 11);
	msgpack_pack_str_with_body(&pk, "abc", 3);
}

/* gw__msgpack_render writes the tree's text byte for byte, with and
 * without its cache of items; a changed item is rendered afresh. */
TEST(gateway_render_matches_tree)
{
	gw__json_cache *cache;
	CHECK_EQ(gw__json_cache_create(&cache), 0);
	for (int round = 0; round < 6; round++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		if (round == 0)
			pack_sample(&sb);
		else
			feed_like_page(&sb, (uint32_t)(round / 2),
				(round & 1) != 0);
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
			MSGPACK_UNPACK_SUCCESS);
		char *want = tree_text(&u.data);
		CHECK(want != NULL);
		for (int pass = 0; pass < 5; pass++) {
			gw__body b;
			gw__body_init(&b, SIZE_MAX / 2);
			CHECK_EQ(pass < 3
					 ? gw__msgpack_render(pass == 0 ? NULL
									: cache,
						   &u.data, &b)
					 : gw__msgpack_render_raw(cache,
						   &u.data, sb.data, sb.size,
						   &b),
				0);
			CHECK_STR_EQ((const char *)b.bytes, want);
			gw__body_free(&b);
		}
		free(want);
		msgpack_unpacked_destroy(&u);
		msgpack_sbuffer_destroy(&sb);
	}
	uint64_t hits, misses;
	gw__json_cache_counts(cache, &hits, &misses);
	CHECK(hits > 0);
	/* 5 distinct pages of 3 items, keyed by content and by bytes. */
	CHECK_EQ_U64(misses, 2 * 5 * 3);

	/* Refused as the tree refuses: invalid UTF-8, in a value and in a
	 * key, and depth; and a repeated key. The body is left as it was. */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_str_with_body(&pk, "\xc3\x28", 2);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str_with_body(&pk, "\xc3\x28", 2);
	msgpack_pack_nil(&pk);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_nil(&pk);
	msgpack_pack_str_with_body(&pk, "k", 1);
	msgpack_pack_nil(&pk);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
		MSGPACK_UNPACK_SUCCESS);
	for (uint32_t i = 0; i < 3; i++) {
		gw__body b;
		gw__body_init(&b, SIZE_MAX / 2);
		CHECK_EQ(gw__body_append(&b, "x", 1), 0);
		CHECK_EQ(gw__msgpack_render(cache, &u.data.via.array.ptr[i], &b),
			GW_EINVAL);
		CHECK_EQ((int)b.length, 1);
		CHECK_EQ(gw__msgpack_render(cache, &u.data, &b), GW_EINVAL);
		CHECK_EQ((int)b.length, 1);
		gw__body_free(&b);
	}
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	msgpack_object nest[GW_JSON_DEPTH_MAX + 2];
	for (int i = 0; i < GW_JSON_DEPTH_MAX + 2; i++) {
		nest[i].type = i % 2 ? MSGPACK_OBJECT_ARRAY : MSGPACK_OBJECT_ARRAY;
		nest[i].via.array.size = i + 1 < GW_JSON_DEPTH_MAX + 2 ? 1 : 0;
		nest[i].via.array.ptr = i + 1 < GW_JSON_DEPTH_MAX + 2
			? &nest[i + 1]
			: NULL;
	}
	gw__body b;
	gw__body_init(&b, SIZE_MAX / 2);
	CHECK_EQ(gw__msgpack_render(cache, &nest[0], &b), GW_EINVAL);
	CHECK_EQ(gw__msgpack_render(cache, &nest[3], &b), 0);
	gw__body_free(&b);
	gw__json_cache_destroy(cache);
}

/* ---- the item cache against the tree, over random pages ---- */

static uint64_t
xorshift(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/* Random strings: empty, escapes, multibyte, invalid UTF-8, a NUL. */
static const char *const random_strings[] = {"", "a", "caf\xc3\xa9",
	"\"q\" \\ \n\x01", "\xc3\x28", "7", "x\0y", "post_id"};
static const size_t random_string_lengths[] = {0, 1, 5, 9, 2, 1, 3, 7};

/* A string. The empty one is written as fixstr (0xa0, which msgpack-c
 * unpacks with a NULL pointer) or as str8 (0xd9 0x00, a pointer into the
 * buffer) as *encoding says: the same content either way. */
static void
pack_string_at(msgpack_packer *pk, size_t i, uint64_t *encoding)
{
	if (i == 0 && xorshift(encoding) % 2 == 0) {
		msgpack_sbuffer_write(pk->data, "\xd9\x00", 2);
		return;
	}
	msgpack_pack_str_with_body(pk, random_strings[i],
		random_string_lengths[i]);
}

static void
pack_random_string(msgpack_packer *pk, uint64_t *content, uint64_t *encoding)
{
	size_t i = xorshift(content) % 8;
	/* Invalid UTF-8 rarely: most pages render. */
	if (i == 4 && xorshift(content) % 4 != 0)
		i = 0;
	pack_string_at(pk, i, encoding);
}

/* A random value: the content comes from *content only, the choice of
 * encoding for the same content from *encoding. */
static void
pack_random_value(msgpack_packer *pk, uint64_t *content, uint64_t *encoding,
	int depth)
{
	uint64_t kind = xorshift(content) % (depth < 4 ? 13 : 10);
	switch (kind) {
	case 0: msgpack_pack_nil(pk); break;
	case 1:
		if (xorshift(content) % 2)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		break;
	case 2: {
		uint64_t v = xorshift(content);
		msgpack_pack_uint64(pk, v % 3 == 0 ? v : v % 300);
		break;
	}
	case 3: msgpack_pack_int64(pk, -(int64_t)(xorshift(content) % 70000) - 1);
		break;
	case 4: msgpack_pack_float(pk, (float)(xorshift(content) % 9) / 4.0f);
		break;
	case 5: {
		static const double reals[] = {0.5, -0.0, 1e300, 1.0 / 3.0,
			123456789.125};
		msgpack_pack_double(pk, reals[xorshift(content) % 5]);
		break;
	}
	case 6:
	case 7: pack_random_string(pk, content, encoding); break;
	case 8: {
		size_t n = xorshift(content) % 4;
		msgpack_pack_bin_with_body(pk, "\x01\xff\x02", n);
		break;
	}
	case 9: {
		size_t n = xorshift(content) % 3;
		msgpack_pack_ext_with_body(pk, "\x01\x02", n,
			(int8_t)(xorshift(content) % 3));
		break;
	}
	case 10:
	case 11: {
		/* A list inside an item: its maps are items too. */
		uint32_t n = (uint32_t)(xorshift(content) % 4);
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++)
			pack_random_value(pk, content, encoding, depth + 1);
		break;
	}
	default: {
		uint32_t n = (uint32_t)(xorshift(content) % 5);
		msgpack_pack_map(pk, n);
		/* Keys: strings (the empty one in both encodings), an
		 * integer now and then; rarely a repeat ("7" and 7 are the
		 * same key) or a key that is not UTF-8 or holds a NUL. */
		size_t base = xorshift(content) % 8;
		for (uint32_t i = 0; i < n; i++) {
			size_t k = (base + i) % 8;
			uint64_t odd = xorshift(content) % 32;
			if (odd == 0)
				msgpack_pack_uint64(pk, 7);
			else if (odd < 4)
				msgpack_pack_uint64(pk, 100 + i);
			else if ((k == 4 || k == 6) && odd > 5)
				pack_string_at(pk, 1, encoding);
			else
				pack_string_at(pk, k, encoding);
			pack_random_value(pk, content, encoding, depth + 1);
		}
		break;
	}
	}
}

/* Pages of items drawn from a small pool (so items repeat, in either
 * encoding of their empty strings, next to other items in other pages),
 * rendered with and without the cache: the cached text is the tree's
 * and the fresh render's every time, and refusals agree. */
TEST(gateway_render_cache_random_pages)
{
	gw__json_cache *cache;
	CHECK_EQ(gw__json_cache_create(&cache), 0);
	uint64_t page_rng = 0x243f6a8885a308d3ull;
	uint64_t encoding = 0x13198a2e03707344ull;
	int rendered = 0;
	for (int page = 0; page < 4000; page++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		uint32_t items = (uint32_t)(xorshift(&page_rng) % 6);
		msgpack_pack_array(&pk, items);
		for (uint32_t i = 0; i < items; i++) {
			/* Item seeds from a pool of 48; a big item now and
			 * then (past the cache's key and text bounds). */
			uint64_t content = 0x9e3779b97f4a7c15ull *
				(1 + xorshift(&page_rng) % 48);
			if (xorshift(&page_rng) % 64 == 0) {
				msgpack_pack_map(&pk, 1);
				msgpack_pack_str_with_body(&pk, "big", 3);
				msgpack_pack_array(&pk, 300);
				for (int j = 0; j < 300; j++)
					msgpack_pack_str_with_body(&pk,
						"0123456789abcdef", 16);
				continue;
			}
			/* The empty key first: as fixstr at the start of
			 * the buffer msgpack-c gives it a NULL pointer (later
			 * ones point at whatever it read last). */
			msgpack_pack_map(&pk, 3);
			pack_string_at(&pk, 0, &encoding);
			pack_random_value(&pk, &content, &encoding, 2);
			msgpack_pack_str_with_body(&pk, "id", 2);
			msgpack_pack_uint64(&pk, content % 1000);
			msgpack_pack_str_with_body(&pk, "user", 4);
			pack_random_value(&pk, &content, &encoding, 2);
		}
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
			MSGPACK_UNPACK_SUCCESS);
		char *want = tree_text(&u.data);
		gw__body fresh;
		gw__body_init(&fresh, SIZE_MAX / 2);
		int fresh_rc = gw__msgpack_render(NULL, &u.data, &fresh);
		CHECK(fresh_rc == 0 || fresh_rc == GW_EINVAL);
		/* The fresh render refuses what the tree refuses (and also
		 * repeated keys, which the tree would merge). */
		if (want == NULL)
			CHECK_EQ(fresh_rc, GW_EINVAL);
		if (fresh_rc == 0)
			CHECK_STR_EQ((const char *)fresh.bytes, want);
		/* Passes 2 and 3 key items by their packed bytes; 4 and 5
		 * render the packed page itself. */
		for (int pass = 0; pass < 6; pass++) {
			gw__body b;
			gw__body_init(&b, SIZE_MAX / 2);
			int rc = pass < 2
				? gw__msgpack_render(cache, &u.data, &b)
				: pass < 4
				? gw__msgpack_render_raw(cache, &u.data,
					  sb.data, sb.size, &b)
				: gw__msgpack_render_packed(cache, sb.data,
					  sb.size, &b, NULL, 0);
			CHECK_MSG(rc == fresh_rc,
				"page %d pass %d: cached rc %d, fresh %d, tree %s",
				page, pass, rc, fresh_rc,
				want != NULL ? want : "(refused)");
			if (rc == 0 && fresh_rc == 0)
				CHECK_STR_EQ((const char *)b.bytes,
					(const char *)fresh.bytes);
			gw__body_free(&b);
		}
		rendered += fresh_rc == 0;
		gw__body_free(&fresh);
		free(want);
		msgpack_unpacked_destroy(&u);
		msgpack_sbuffer_destroy(&sb);
	}
	uint64_t hits, misses;
	gw__json_cache_counts(cache, &hits, &misses);
	/* Most pages render, and most items are hits (the pool is small). */
	CHECK(rendered > 3000);
	CHECK(hits > 4 * misses);
	gw__json_cache_destroy(cache);
}

/* Items keyed by their packed bytes: maps that differ only before the
 * first string, after the last one, or in a nested list's tail render
 * as themselves, never as a cached neighbour. */
TEST(gateway_render_raw_keys_tell_items_apart)
{
	gw__json_cache *cache;
	CHECK_EQ(gw__json_cache_create(&cache), 0);
	for (int round = 0; round < 2; round++) {
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		static const int a[] = {1, 1, 9, 1, 1};
		static const int b[] = {2, 3, 2, 2, 2};
		static const int n[] = {7, 7, 7, 8, 7};
		msgpack_pack_array(&pk, 5);
		for (int i = 0; i < 5; i++) {
			msgpack_pack_map(&pk, 4);
			msgpack_pack_str_with_body(&pk, "", 0);
			msgpack_pack_int(&pk, a[i]);
			msgpack_pack_str_with_body(&pk, "s", 1);
			msgpack_pack_str_with_body(&pk, "text", 4);
			msgpack_pack_str_with_body(&pk, "l", 1);
			msgpack_pack_array(&pk, 2);
			msgpack_pack_str_with_body(&pk, "v", 1);
			msgpack_pack_int(&pk, n[i]);
			msgpack_pack_int(&pk, b[i]);
			msgpack_pack_nil(&pk);
		}
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
			MSGPACK_UNPACK_SUCCESS);
		char *want = tree_text(&u.data);
		CHECK(want != NULL);
		gw__body out;
		gw__body_init(&out, SIZE_MAX / 2);
		CHECK_EQ(gw__msgpack_render_raw(cache, &u.data, sb.data, sb.size,
				 &out), 0);
		CHECK_STR_EQ((const char *)out.bytes, want);
		gw__body_free(&out);
		free(want);
		msgpack_unpacked_destroy(&u);
		msgpack_sbuffer_destroy(&sb);
	}
	uint64_t hits, misses;
	gw__json_cache_counts(cache, &hits, &misses);
	CHECK_EQ_U64(misses, 4); /* items 0 and 4 are the same */
	CHECK_EQ_U64(hits, 6);
	gw__json_cache_destroy(cache);
}

/* A packed answer renders as its tree does, items from the cache or
 * not; a truncated or non-msgpack answer is refused and leaves the body
 * as it was; the page's next_cursor is read from the bytes. */
TEST(gateway_render_packed)
{
	gw__json_cache *cache;
	CHECK_EQ(gw__json_cache_create(&cache), 0);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	feed_like_page(&sb, 1, true);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
		MSGPACK_UNPACK_SUCCESS);
	char *want = tree_text(&u.data);
	CHECK(want != NULL);
	char next[64];
	for (int pass = 0; pass < 2; pass++) {
		gw__body b;
		gw__body_init(&b, SIZE_MAX / 2);
		CHECK_EQ(gw__msgpack_render_packed(cache, sb.data, sb.size, &b,
				 next, sizeof next),
			0);
		CHECK_STR_EQ((const char *)b.bytes, want);
		CHECK_STR_EQ(next, "abc");
		gw__body_free(&b);
	}
	uint64_t hits, misses;
	gw__json_cache_counts(cache, &hits, &misses);
	CHECK_EQ_U64(misses, 3);
	CHECK_EQ_U64(hits, 3);
	for (size_t cut = 0; cut < sb.size; cut++) {
		gw__body b;
		gw__body_init(&b, SIZE_MAX / 2);
		CHECK_EQ(gw__body_append(&b, "x", 1), 0);
		CHECK_EQ(gw__msgpack_render_packed(cache, sb.data, cut, &b,
				 next, sizeof next),
			GW_EINVAL);
		CHECK_EQ((int)b.length, 1);
		CHECK_STR_EQ(next, "");
		gw__body_free(&b);
	}
	static const unsigned char never_used[] = {0xc1};
	gw__body b;
	gw__body_init(&b, SIZE_MAX / 2);
	CHECK_EQ(gw__msgpack_render_packed(cache, never_used, 1, &b, NULL,
			 0),
		GW_EINVAL);
	gw__body_free(&b);
	free(want);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	gw__json_cache_destroy(cache);
}

/* The item cache holds the hot set of DeathStarBench's mix over Reed98
 * (the ten newest posts of each of 962 users): 10,000 distinct items,
 * rendered in pages of ten and then again, are found the second time
 * but for a few in sets that took more than their ways (4,096 slots
 * direct-mapped found 3 in 10). */
TEST(gateway_render_cache_holds_ten_thousand_items)
{
	gw__json_cache *cache;
	CHECK_EQ(gw__json_cache_create(&cache), 0);
	enum { ITEMS = 10000, PAGE = 10 };
	for (int pass = 0; pass < 2; pass++) {
		for (int page = 0; page < ITEMS / PAGE; page++) {
			msgpack_sbuffer sb;
			msgpack_sbuffer_init(&sb);
			msgpack_packer pk;
			msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
			msgpack_pack_map(&pk, 1);
			msgpack_pack_str_with_body(&pk, "items", 5);
			msgpack_pack_array(&pk, PAGE);
			for (int i = 0; i < PAGE; i++) {
				char caption[64];
				int n = snprintf(caption, sizeof caption,
					"post %d of the bench #tag",
					page * PAGE + i);
				msgpack_pack_map(&pk, 3);
				msgpack_pack_str_with_body(&pk, "post_id", 7);
				msgpack_pack_uint64(&pk,
					770401216358205441ull +
						(uint64_t)(page * PAGE + i));
				msgpack_pack_str_with_body(&pk, "caption", 7);
				msgpack_pack_str_with_body(&pk, caption,
					(size_t)n);
				msgpack_pack_str_with_body(&pk, "likes", 5);
				msgpack_pack_uint32(&pk, 0);
			}
			gw__body b;
			gw__body_init(&b, SIZE_MAX / 2);
			CHECK_EQ(gw__msgpack_render_packed(cache, sb.data,
					 sb.size, &b, NULL, 0),
				0);
			char want[64];
			snprintf(want, sizeof want, "\"caption\":\"post %d of",
				page * PAGE + PAGE - 1);
			CHECK(strstr((const char *)b.bytes, want) != NULL);
			gw__body_free(&b);
			msgpack_sbuffer_destroy(&sb);
		}
		uint64_t hits, misses;
		gw__json_cache_counts(cache, &hits, &misses);
		if (pass == 0) {
			CHECK_EQ_U64(misses, ITEMS);
			CHECK_EQ_U64(hits, 0);
		} else {
			CHECK_EQ_U64(hits + misses, 2 * ITEMS);
			CHECK(hits >= ITEMS * 97 / 100);
		}
	}
	gw__json_cache_destroy(cache);
}

/* An empty string renders as "" whether msgpack-c hands it over with a
 * NULL pointer (fixstr) or not (str8), as a value and as a key; so an
 * item cached in one encoding is the same text as the other. */
TEST(gateway_render_empty_string_encodings)
{
	static const char *const pages[] = {
		"\x91\x82\xd9\x00\xc0\xa1k\xd9\x00", /* str8 first */
		"\x91\x82\xa0\xc0\xa1k\xa0",         /* then fixstr */
	};
	static const size_t lengths[] = {9, 7};
	gw__json_cache *cache;
	CHECK_EQ(gw__json_cache_create(&cache), 0);
	for (int i = 0; i < 2; i++) {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		CHECK(msgpack_unpack_next(&u, pages[i], lengths[i], NULL) ==
			MSGPACK_UNPACK_SUCCESS);
		char *want = tree_text(&u.data);
		CHECK(want != NULL);
		CHECK_STR_EQ(want, "[{\"\":null,\"k\":\"\"}]");
		for (int pass = 0; pass < 2; pass++) {
			gw__body b;
			gw__body_init(&b, SIZE_MAX / 2);
			CHECK_EQ(gw__msgpack_render(pass == 0 ? NULL : cache,
					 &u.data, &b), 0);
			CHECK_STR_EQ((const char *)b.bytes, want);
			gw__body_free(&b);
		}
		free(want);
		msgpack_unpacked_destroy(&u);
	}
	uint64_t hits, misses;
	gw__json_cache_counts(cache, &hits, &misses);
	CHECK_EQ_U64(misses, 1);
	CHECK_EQ_U64(hits, 1);
	gw__json_cache_destroy(cache);
}

TEST(gateway_request_json)
{
	char detail[200];
	json_t *o;
	CHECK_EQ(gw__json_parse_object("{\"a\":", 5, &o, detail, sizeof detail),
		GW_EINVAL);
	CHECK(strstr(detail, "malformed JSON") != NULL);
	CHECK_EQ(gw__json_parse_object("[1]", 3, &o, detail, sizeof detail),
		GW_EINVAL);
	CHECK_EQ(gw__json_parse_object("{\"a\":1,\"a\":2}", 13, &o, detail,
			 sizeof detail),
		GW_EINVAL);
	const char *body = "{\"bio\":\"hi\",\"profile_pic_media_id\":\"12\"}";
	CHECK_EQ(gw__json_parse_object(body, strlen(body), &o, detail,
			 sizeof detail),
		0);
	static const char *const allowed[] = {"bio", "profile_pic_media_id"};
	CHECK_EQ(gw__json_only_keys(o, allowed, 2, detail, sizeof detail), 0);
	const char *bio;
	CHECK_EQ(gw__json_string(o, "bio", false, &bio, detail, sizeof detail),
		0);
	CHECK_STR_EQ(bio, "hi");
	uint64_t id;
	CHECK_EQ(gw__json_id(o, "profile_pic_media_id", false, &id, detail,
			 sizeof detail),
		0);
	CHECK_EQ_U64(id, 12);
	CHECK_EQ(gw__json_only_keys(o, allowed, 1, detail, sizeof detail),
		GW_EINVAL);
	CHECK(strstr(detail, "profile_pic_media_id") != NULL);
	json_decref(o);
	body = "{\"text\":\"a\\u0000b\"}";
	CHECK_EQ(gw__json_parse_object(body, strlen(body), &o, detail,
			 sizeof detail),
		GW_EINVAL);
	body = "{\"action\":1,\"text\":2,\"n\":-1}";
	CHECK_EQ(gw__json_parse_object(body, strlen(body), &o, detail,
			 sizeof detail),
		0);
	bool yes;
	CHECK_EQ(gw__json_action(o, "action", "like", "unlike", &yes, detail,
			 sizeof detail),
		GW_EINVAL);
	const char *text;
	CHECK_EQ(gw__json_string(o, "text", true, &text, detail, sizeof detail),
		GW_EINVAL);
	CHECK_EQ(gw__json_string(o, "missing", true, &text, detail,
			 sizeof detail),
		GW_EINVAL);
	uint64_t n;
	CHECK_EQ(gw__json_uint(o, "n", true, 10, &n, detail, sizeof detail),
		GW_EINVAL);
	json_decref(o);
}

TEST(gateway_rate_buckets)
{
	gw__rate_table *t;
	gw_rate r = {5, 1800}; /* API.md: 5 signups per 30 min */
	CHECK_EQ(gw__rate_table_create(r, 1024, &t), 0);
	gw__bucket_state st;
	uint64_t now = 1000000;
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(gw__rate_take(t, "10.0.0.1", now, &st), 0);
		CHECK_EQ(st.remaining, 4 - i);
		CHECK_EQ(st.limit, 5);
	}
	CHECK_EQ(gw__rate_take(t, "10.0.0.1", now, &st), GW_ELIMITED);
	CHECK_EQ(st.remaining, 0);
	CHECK_EQ_U64(st.retry_after_s, 360); /* one token per 6 min */
	CHECK_EQ_U64(st.reset_s, 1800);
	/* Another address has its own bucket. */
	CHECK_EQ(gw__rate_take(t, "10.0.0.2", now, &st), 0);
	/* One ms short of a token: still refused; at the token: allowed. */
	CHECK_EQ(gw__rate_take(t, "10.0.0.1", now + 359999, &st), GW_ELIMITED);
	CHECK_EQ_U64(st.retry_after_s, 1);
	CHECK_EQ(gw__rate_take(t, "10.0.0.1", now + 360000, &st), 0);
	CHECK_EQ(gw__rate_take(t, "10.0.0.1", now + 360000, &st), GW_ELIMITED);
	/* Long idle refills to capacity, never past. */
	CHECK_EQ(gw__rate_take(t, "10.0.0.1", now + 100000000, &st), 0);
	CHECK_EQ(st.remaining, 4);
	gw__rate_table_destroy(t);
	/* Many addresses stay within the table (replacement, no growth). */
	CHECK_EQ(gw__rate_table_create(r, 64, &t), 0);
	char ip[32];
	for (int i = 0; i < 10000; i++) {
		snprintf(ip, sizeof ip, "10.1.%d.%d", i / 256, i % 256);
		CHECK_EQ(gw__rate_take(t, ip, now + (uint64_t)i, &st), 0);
	}
	gw__rate_table_destroy(t);
}

TEST(gateway_connection_caps)
{
	gw__conn_table *t;
	uint32_t slot, other;
	CHECK_EQ(gw__conn_table_create(3, 1024, &t), 0);
	CHECK(!gw__conn_full(t, "127.0.0.1"));
	CHECK_EQ(gw__conn_open(t, "127.0.0.1", &slot), 0);
	CHECK_EQ(gw__conn_open(t, "127.0.0.1", &slot), 0);
	CHECK_EQ(gw__conn_open(t, "127.0.0.1", &slot), 0);
	CHECK(gw__conn_full(t, "127.0.0.1"));
	CHECK_EQ(gw__conn_open(t, "127.0.0.1", &slot), GW_ELIMITED);
	CHECK_EQ(gw__conn_open(t, "127.0.0.2", &other), 0);
	CHECK(slot != other);
	CHECK_EQ(gw__conn_count(t, "127.0.0.1"), 3);
	gw__conn_release(t, slot);
	CHECK(!gw__conn_full(t, "127.0.0.1"));
	CHECK_EQ(gw__conn_open(t, "127.0.0.1", &slot), 0);
	CHECK_EQ(gw__conn_count(t, "127.0.0.1"), 3);
	for (int i = 0; i < 3; i++)
		gw__conn_close(t, "127.0.0.1");
	CHECK_EQ(gw__conn_count(t, "127.0.0.1"), 0);
	gw__conn_table_destroy(t);
}

TEST(gateway_frame_queue)
{
	gw__frame_queue q = {0};
	CHECK_EQ(gw__frame_push(&q, "a", 1, 7, 3), 0);
	CHECK_EQ(gw__frame_push(&q, "bb", 2, 7, 3), 0);
	CHECK_EQ(gw__frame_push(&q, "ccc", 3, 7, 3), 0);
	CHECK_EQ(gw__frame_push(&q, "d", 1, 7, 3), GW_EFULL);
	CHECK_EQ(q.frames, 3);
	CHECK_EQ(q.bytes, 6);
	gw__frame *f = gw__frame_peek(&q);
	CHECK_EQ(f->length, 1);
	CHECK_EQ_U64(f->seq, 7);
	CHECK_EQ(f->bytes[GW_WS_PRE], 'a');
	gw__frame_pop(&q);
	CHECK_EQ(gw__frame_peek(&q)->length, 2);
	gw__frame_clear(&q);
	CHECK(q.head == NULL && q.tail == NULL);
	/* The byte bound holds whatever the frame count. */
	char *big = malloc(GW_WS_QUEUE_BYTES_MAX);
	memset(big, 'x', GW_WS_QUEUE_BYTES_MAX);
	CHECK_EQ(gw__frame_push(&q, big, GW_WS_QUEUE_BYTES_MAX, 7, 100), 0);
	CHECK_EQ(gw__frame_push(&q, "y", 1, 7, 100), GW_EFULL);
	gw__frame_clear(&q);
	free(big);
}

TEST(gateway_utf8)
{
	CHECK(gw__utf8_valid((const unsigned char *)"plain", 5));
	CHECK(gw__utf8_valid((const unsigned char *)"\xc3\xa9", 2));
	CHECK(gw__utf8_valid((const unsigned char *)"\xf0\x9f\x98\x80", 4));
	CHECK(!gw__utf8_valid((const unsigned char *)"\xc3", 1));
	CHECK(!gw__utf8_valid((const unsigned char *)"\xc0\xaf", 2));
	CHECK(!gw__utf8_valid((const unsigned char *)"\xed\xa0\x80", 3));
	CHECK(!gw__utf8_valid((const unsigned char *)"\xf4\x90\x80\x80", 4));
	CHECK(!gw__utf8_valid((const unsigned char *)"\xff", 1));
	CHECK(!gw__utf8_valid((const unsigned char *)"\xe0\x80\x80", 3));
}

TEST(gateway_ws_messages)
{
	uint64_t seq = 0;
	const char *ack = "{\"type\":\"ack\",\"seq\":17}";
	CHECK_EQ(gw__ws_parse_client(ack, strlen(ack), &seq), 0);
	CHECK_EQ_U64(seq, 17);
	const char *bad = "{\"type\":\"ack\",\"seq\":\"17\"}";
	CHECK_EQ(gw__ws_parse_client(bad, strlen(bad), &seq), GW_EINVAL);
	CHECK_EQ(gw__ws_parse_client("nope", 4, &seq), GW_EINVAL);
	size_t n;
	char *s = gw__ws_render_event("resync", 0, NULL, &n);
	CHECK_STR_EQ(s, "{\"type\":\"resync\"}");
	free(s);
}

/* An event frame is written without a jansson tree: the text must be
 * the tree's, dumped compactly, byte for byte (escapes, UTF-8, nested
 * maps, lists, every scalar kind). */
TEST(gateway_ws_event_text_is_the_trees)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7);
	msgpack_pack_str_with_body(&pk, "type", 4);
	msgpack_pack_str_with_body(&pk, "like", 4);
	msgpack_pack_str_with_body(&pk, "post_id", 7);
	msgpack_pack_str_with_body(&pk, "770327474711507968", 18);
	msgpack_pack_str_with_body(&pk, "by_user", 7);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "user_id", 7);
	msgpack_pack_str_with_body(&pk, "5", 1);
	msgpack_pack_str_with_body(&pk, "username", 8);
	static const char name[] = "b\u00e9b \"q\" \\ \n";
	msgpack_pack_str_with_body(&pk, name, sizeof name - 1);
	msgpack_pack_str_with_body(&pk, "profile_pic_url", 15);
	msgpack_pack_nil(&pk);
	msgpack_pack_str_with_body(&pk, "count", 5);
	msgpack_pack_uint64(&pk, 18446744073709551615ull);
	msgpack_pack_str_with_body(&pk, "delta", 5);
	msgpack_pack_int64(&pk, -42);
	msgpack_pack_str_with_body(&pk, "read", 4);
	msgpack_pack_false(&pk);
	msgpack_pack_str_with_body(&pk, "tags", 4);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_str_with_body(&pk, "/media/ab/thumb", 15);
	msgpack_pack_str_with_body(&pk, "del\x7f", 4);
	msgpack_pack_str_with_body(&pk, "", 0);
	msgpack_pack_double(&pk, 0.5);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
		MSGPACK_UNPACK_SUCCESS);

	json_t *tree = json_object();
	json_object_set_new(tree, "type", json_string("notification"));
	json_object_set_new(tree, "seq", json_integer(4294967297));
	json_t *data = NULL;
	CHECK_EQ(gw__msgpack_to_json(&u.data, &data), 0);
	json_object_set_new(tree, "data", data);
	size_t want_n = 0;
	char *want = gw__json_render(tree, &want_n);
	json_decref(tree);

	size_t n = 0;
	char *got = gw__ws_render_event("notification", 4294967297ull, &u.data,
		&n);
	CHECK(got != NULL);
	CHECK_STR_EQ(got, want);
	CHECK_EQ_U64(n, want_n);
	free(got);
	free(want);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

TEST(gateway_metrics_render)
{
	gw__metrics *m = calloc(1, sizeof *m);
	gw__metrics_observe(m, GW_ROUTE_FEED, 200, 800);
	gw__metrics_observe(m, GW_ROUTE_FEED, 200, 3000);
	gw__metrics_observe(m, GW_ROUTE_UNMATCHED, 404, 10);
	gw__metrics_observe(m, GW_ROUTE_FEED, 299, 10);
	m->ws_open = 3;
	gw__process_stats ps = {0};
	ps.rss_bytes = gw__process_rss_bytes();
	CHECK(ps.rss_bytes > 0);
	gw__body out;
	gw__body_init(&out, GW_METRICS_BYTES_MAX);
	CHECK_EQ(gw__metrics_render(m, &ps, "flock_extra 1\n", &out), 0);
	const char *t = (const char *)out.bytes;
	CHECK(strstr(t, "flock_http_requests_total{route=\"/v1/feed\","
			"status=\"200\"} 2\n") != NULL);
	CHECK(strstr(t, "flock_http_requests_total{route=\"/v1/feed\","
			"status=\"other\"} 1\n") != NULL);
	CHECK(strstr(t, "flock_http_request_duration_seconds_bucket{route="
			"\"/v1/feed\",status=\"200\",le=\"0.001\"} 1\n") !=
		NULL);
	CHECK(strstr(t, "flock_http_request_duration_seconds_bucket{route="
			"\"/v1/feed\",status=\"200\",le=\"0.005\"} 2\n") !=
		NULL);
	CHECK(strstr(t, "route=\"unmatched\",status=\"404\"") != NULL);
	CHECK(strstr(t, "flock_ws_streams_open 3\n") != NULL);
	CHECK(strstr(t, "flock_process_resident_memory_bytes ") != NULL);
	CHECK(strstr(t, "flock_extra 1\n") != NULL);
	gw__body_free(&out);
	free(m);
}

static const char cache_hash_a[] =
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char cache_hash_b[] =
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

TEST(gateway_media_cache_response)
{
	gw__media_cache *c;
	CHECK_EQ(gw__media_cache_create(1u << 20, &c), 0);
	static const char body[] = "\xff\xd8 jpeg bytes";
	const gw__media_entry *e;
	CHECK_EQ(gw__media_cache_insert(c, cache_hash_a, "small", "image/jpeg",
			 body, sizeof body - 1, &e),
		0);
	char key[GW_MEDIA_KEY_BYTES_MAX];
	snprintf(key, sizeof key, "%s/small", cache_hash_a);
	CHECK(gw__media_cache_find(c, key, strlen(key)) == e);
	CHECK(gw__media_cache_find(c, key, strlen(key) - 1) == NULL);
	CHECK(gw__media_cache_find(NULL, key, strlen(key)) == NULL);
	/* The whole 200: what build_headers writes, then the bytes. */
	char expect[2048];
	int n = snprintf(expect, sizeof expect,
		"HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\n"
		"content-length: %zu\r\n", sizeof body - 1);
	for (size_t i = 0; i < gw__security_headers_count; i++)
		n += snprintf(expect + n, sizeof expect - (size_t)n, "%s %s\r\n",
			gw__security_headers[i][0], gw__security_headers[i][1]);
	n += snprintf(expect + n, sizeof expect - (size_t)n,
		"cache-control: public, max-age=31536000, immutable\r\n"
		"ETag: \"%s-small\"\r\n\r\n", cache_hash_a);
	CHECK_EQ(e->header_length, (size_t)n);
	CHECK_EQ(e->response_length, (size_t)n + sizeof body - 1);
	CHECK(memcmp(e->response, expect, (size_t)n) == 0);
	CHECK(memcmp(e->response + n, body, sizeof body - 1) == 0);
	CHECK_STR_EQ(e->content_type, "image/jpeg");
	/* Inserting it again keeps the entry. */
	const gw__media_entry *again;
	CHECK_EQ(gw__media_cache_insert(c, cache_hash_a, "small", "image/jpeg",
			 body, sizeof body - 1, &again),
		0);
	CHECK(again == e);
	gw__media_cache_stat st;
	gw__media_cache_stats(c, &st);
	CHECK_EQ(st.entries, 1u);
	CHECK_EQ(st.hits, 1u);
	CHECK_EQ(st.misses, 1u);
	gw__media_cache_destroy(c);
}

TEST(gateway_media_cache_lru_cap)
{
	/* Room for about three 40 KB entries. */
	size_t cap = 3 * (40u * 1024u + 2048u);
	gw__media_cache *c;
	CHECK_EQ(gw__media_cache_create(cap, &c), 0);
	unsigned char *bytes = calloc(1, GW_MEDIA_CACHE_FILE_BYTES_MAX + 1);
	CHECK(bytes != NULL);
	static const char *const variants[] = {"thumb", "small", "medium",
		"large"};
	const gw__media_entry *e;
	for (int i = 0; i < 3; i++)
		CHECK_EQ(gw__media_cache_insert(c, cache_hash_a, variants[i],
				 "image/jpeg", bytes, 40u * 1024u, &e),
			0);
	char key[GW_MEDIA_KEY_BYTES_MAX];
	/* Touch thumb: small is now the least recently used. */
	snprintf(key, sizeof key, "%s/thumb", cache_hash_a);
	CHECK(gw__media_cache_find(c, key, strlen(key)) != NULL);
	CHECK_EQ(gw__media_cache_insert(c, cache_hash_a, "large", "image/jpeg",
			 bytes, 40u * 1024u, &e),
		0);
	gw__media_cache_stat st;
	gw__media_cache_stats(c, &st);
	CHECK_EQ(st.entries, 3u);
	CHECK_EQ(st.evictions, 1u);
	CHECK(st.bytes <= cap);
	snprintf(key, sizeof key, "%s/small", cache_hash_a);
	CHECK(gw__media_cache_find(c, key, strlen(key)) == NULL);
	snprintf(key, sizeof key, "%s/thumb", cache_hash_a);
	CHECK(gw__media_cache_find(c, key, strlen(key)) != NULL);
	snprintf(key, sizeof key, "%s/large", cache_hash_a);
	CHECK(gw__media_cache_find(c, key, strlen(key)) != NULL);
	/* Past the per-file cap or the whole cap: refused, nothing evicted. */
	CHECK_EQ(gw__media_cache_insert(c, cache_hash_b, "large", "image/jpeg",
			 bytes, GW_MEDIA_CACHE_FILE_BYTES_MAX + 1, &e),
		GW_ETOOLARGE);
	CHECK(e == NULL);
	CHECK_EQ(gw__media_cache_insert(c, cache_hash_b, "medium",
			 "image/jpeg", bytes, cap, &e),
		GW_ETOOLARGE);
	gw__media_cache_stats(c, &st);
	CHECK_EQ(st.entries, 3u);
	/* Many entries through a small cache stay under its cap. */
	for (int i = 0; i < 200; i++) {
		char hash[65];
		snprintf(hash, sizeof hash, "%064d", i);
		CHECK_EQ(gw__media_cache_insert(c, hash, variants[i % 4],
				 "image/jpeg", bytes, (size_t)(i * 97) % 30000,
				 &e),
			0);
		gw__media_cache_stats(c, &st);
		CHECK(st.bytes <= cap);
	}
	free(bytes);
	gw__media_cache_destroy(c);
}
