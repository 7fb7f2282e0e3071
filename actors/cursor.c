/*
 * actors/cursor.c — opaque paging cursors.
 *
 * A cursor is base64url (no padding) of a 32-byte record:
 *   [0]      format version (ACTORS_CURSOR_VERSION)
 *   [1]      listing kind (actors__cursor_kind)
 *   [2..7]   zero
 *   [8..15]  owner id, little-endian (whose listing: user or post)
 *   [16..23] boundary id, little-endian (exclusive; the next page lies
 *            strictly beyond it in the listing's order)
 *   [24..31] checksum: actors__hash64 of bytes 0..23 with a salt
 * so 43 characters. The checksum makes a cursor from a hand-edited or
 * truncated string fail instead of paging from a surprising place; it is
 * not a secret (a cursor grants nothing the caller could not page to).
 *
 * Invariants: decode accepts exactly what encode produces for the same
 * kind and owner; everything else is API_EINVALID.
 */
#include "actors/internal.h"

#define ACTORS_CURSOR_VERSION 1u
#define CURSOR_RECORD_BYTES 32u
#define CURSOR_TEXT_LENGTH 43u /* ceil(32 * 4 / 3) without padding */
/* Salt so that a cursor checksum differs from other uses of hash64. */
#define CURSOR_SALT 0x666c6f636b637572ull /* "flockcur" */

static_assert(CURSOR_TEXT_LENGTH < ACTORS_CURSOR_TEXT_BYTES,
	"cursor text fits its buffer");

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint64_t
cursor_checksum(const unsigned char *record)
{
	unsigned char salted[8 + 24];
	put64(salted, CURSOR_SALT);
	memcpy(salted + 8, record, 24);
	return actors__hash64(salted, sizeof salted);
}

void
actors__cursor_encode(const actors__cursor *c, char *out, size_t size)
{
	ACTORS_ASSERT(size > CURSOR_TEXT_LENGTH);
	ACTORS_ASSERT(c->kind != 0);
	unsigned char r[CURSOR_RECORD_BYTES];
	memset(r, 0, sizeof r);
	r[0] = ACTORS_CURSOR_VERSION;
	r[1] = c->kind;
	put64(r + 8, c->owner);
	put64(r + 16, c->boundary);
	put64(r + 24, cursor_checksum(r));
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < sizeof r; i++) {
		acc = (acc << 8) | r[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = b64[(acc >> bits) & 63u];
		}
	}
	if (bits > 0)
		out[o++] = b64[(acc << (6 - bits)) & 63u];
	ACTORS_ASSERT(o == CURSOR_TEXT_LENGTH);
	out[o] = '\0';
}

static int
b64_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;
}

int
actors__cursor_decode(const char *text, uint8_t kind, uint64_t owner,
	actors__cursor *out)
{
	if (text == NULL)
		return API_EINVALID;
	size_t n = strnlen(text, CURSOR_TEXT_LENGTH + 1);
	if (n != CURSOR_TEXT_LENGTH)
		return API_EINVALID;
	unsigned char r[CURSOR_RECORD_BYTES];
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(text[i]);
		if (v < 0)
			return API_EINVALID;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == sizeof r)
				return API_EINVALID;
			r[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* The 4 leftover bits must be zero, or two texts would decode alike. */
	if (o != sizeof r || (acc & ((1u << bits) - 1u)) != 0)
		return API_EINVALID;
	if (r[0] != ACTORS_CURSOR_VERSION)
		return API_EINVALID;
	for (int i = 2; i < 8; i++)
		if (r[i] != 0)
			return API_EINVALID;
	if (get64(r + 24) != cursor_checksum(r))
		return API_EINVALID;
	if (r[1] != kind || get64(r + 8) != owner)
		return API_EINVALID;
	out->kind = r[1];
	out->owner = get64(r + 8);
	out->boundary = get64(r + 16);
	return API_OK;
}
