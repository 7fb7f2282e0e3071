/*
 * body.c — request bodies collected under a cap, and the multipart sink.
 *
 * Role: a request body arrives in chunks; it is kept in one growing
 * buffer that never grows past its cap. The cap is exact: cap bytes are
 * accepted, cap + 1 is GW_ETOOLARGE (413). The multipart sink receives
 * the file parts lws_spa decodes and keeps only `media`, under the same
 * kind of cap.
 *
 * Invariants: length <= cap; when bytes != NULL, bytes[length] == '\0'
 * (so JSON and text parsers may read it as a string).
 *
 * What it deliberately does not do: parse multipart framing (lws_spa
 * does) or look at the bytes (the domain sniffs image types).
 */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

/* First allocation; most JSON bodies fit. */
#define BODY_INITIAL_BYTES 1024u

void
gw__body_init(gw__body *b, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->cap = cap;
}

/* Room for n more bytes and the NUL (n within the cap). */
static int
body_room(gw__body *b, size_t n)
{
	size_t need = b->length + n + 1; /* + NUL */
	if (need > b->capacity) {
		size_t capacity = b->capacity ? b->capacity : BODY_INITIAL_BYTES;
		while (capacity < need)
			capacity *= 2;
		if (capacity > b->cap + 1)
			capacity = b->cap + 1;
		if (capacity < need)
			capacity = need;
		unsigned char *grown = realloc(b->bytes, capacity);
		if (grown == NULL)
			return GW_ENOMEM;
		b->bytes = grown;
		b->capacity = capacity;
	}
	return 0;
}

int
gw__body_reserve(gw__body *b, size_t n)
{
	gw__assert(b->length <= b->cap);
	if (n > b->cap - b->length)
		n = b->cap - b->length;
	int rc = body_room(b, n);
	if (rc == 0)
		b->bytes[b->length] = '\0';
	return rc;
}

int
gw__body_append(gw__body *b, const void *bytes, size_t n)
{
	gw__assert(b->length <= b->cap);
	if (n > b->cap - b->length)
		return GW_ETOOLARGE;
	if (n == 0 && b->bytes != NULL)
		return 0;
	int rc = body_room(b, n);
	if (rc < 0)
		return rc;
	if (n > 0)
		memcpy(b->bytes + b->length, bytes, n);
	b->length += n;
	b->bytes[b->length] = '\0';
	gw__assert(b->length <= b->cap);
	return 0;
}

void *
gw__body_take(gw__body *b, size_t *length)
{
	void *bytes = b->bytes;
	*length = b->length;
	b->bytes = NULL;
	b->length = 0;
	b->capacity = 0;
	return bytes;
}

void
gw__body_free(gw__body *b)
{
	free(b->bytes);
	b->bytes = NULL;
	b->length = 0;
	b->capacity = 0;
}

/* ---- multipart sink ----------------------------------------------------- */

void
gw__form_init(gw__form *f, size_t media_cap)
{
	memset(f, 0, sizeof *f);
	gw__body_init(&f->media, media_cap);
}

int
gw__form_file(gw__form *f, const char *name, const char *buf, int len,
	gw__form_state state)
{
	if (f->error != 0)
		return -1;
	if (state == GW_FORM_CLOSE)
		return 0;
	if (name == NULL || strcmp(name, "media") != 0) {
		/* Only one file field exists in API.md. */
		f->error = GW_EINVAL;
		return -1;
	}
	if (state == GW_FORM_OPEN) {
		if (f->media_seen) {
			f->error = GW_EINVAL; /* two `media` parts */
			return -1;
		}
		f->media_seen = true;
		return 0;
	}
	if (!f->media_seen || f->media_done || len < 0) {
		f->error = GW_EINVAL;
		return -1;
	}
	int rc = gw__body_append(&f->media, buf, (size_t)len);
	if (rc < 0) {
		f->error = rc;
		return -1;
	}
	if (state == GW_FORM_FINAL_CONTENT)
		f->media_done = true;
	return 0;
}

void
gw__form_free(gw__form *f)
{
	gw__body_free(&f->media);
}
