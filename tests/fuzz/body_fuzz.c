/*
 * body_fuzz.c — the decoders of bytes the social core reads from outside
 * its own process never crash: the wire reader of internal messages and
 * journal records, the username/email/UTF-8/caption validators and the
 * tag parser, and api_body_* over maps holding arbitrary strings.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "actors/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
tag(void *arg, const char *t, size_t n)
{
	(void)arg;
	if (n == 0 || t[n] != '\0')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wire_reader r;
	wire_reader_init(&r, data, size);
	while (!r.failed) {
		size_t n;
		(void)wire_get_u64(&r);
		(void)wire_get_str(&r, 4096, &n);
		char buf[32];
		wire_get_strbuf(&r, buf, sizeof buf);
		(void)wire_get_u8(&r);
	}
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	char lower[API_USERNAME_BYTES_MAX + 2];
	(void)actors__username_normalize(text, lower, sizeof lower);
	(void)actors__email_valid(text);
	(void)actors__utf8_count(text, strlen(text));
	const char *detail;
	(void)actors__caption_check(text, &detail);
	(void)actors__parse_tags(text, strlen(text), '#', tag, NULL);
	/* api_body_* over a map whose keys and values come from the input
	 * (msgpack_unpack itself is left out: msgpack-c allocates what a
	 * container header declares, so it is only fed our own bytes). */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	actors__pack_key(&pk, "post_id");
	actors__pack_strn(&pk, text, strlen(text));
	actors__pack_strn(&pk, text, strlen(text));
	msgpack_pack_bool(&pk, size % 2 == 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	if (msgpack_unpack_next(&u, sb.data, sb.size, &off) ==
		MSGPACK_UNPACK_SUCCESS) {
		char s[64];
		(void)api_body_id(&u.data, "post_id");
		(void)api_body_int(&u.data, text, 0);
		(void)api_body_bool(&u.data, text, false);
		(void)api_body_str(&u.data, "post_id", s, sizeof s);
	}
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	free(text);
	return 0;
}
