/*
 * images.h — byte-level image fixtures for the media tests, the fuzzer's
 * seeds and the benchmark (header-only, static inline).
 *
 * Goal: every test image is made here or by media_vips_generate, never
 * copied in as a binary. This file writes the ones a normal encoder will
 * not produce: a PNG whose header declares 100,000 x 100,000 pixels (a
 * decompression bomb), a JPEG header declaring 65,000 x 65,000, an EXIF
 * APP1 segment carrying GPS tags, SVG and PDF texts; and it reads back
 * what the tests check in a JPEG: its markers and its frame size.
 */
#ifndef FLOCK_TESTS_MEDIA_IMAGES_H
#define FLOCK_TESTS_MEDIA_IMAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable byte string ------------------------------------------- */

typedef struct img_bytes {
	unsigned char *bytes;
	size_t length;
} img_bytes;

static inline void
img_put(img_bytes *b, const void *data, size_t length)
{
	unsigned char *grown = realloc(b->bytes, b->length + length);
	if (grown == NULL)
		abort();
	b->bytes = grown;
	memcpy(b->bytes + b->length, data, length);
	b->length += length;
}

static inline void
img_put_u8(img_bytes *b, uint8_t v)
{
	img_put(b, &v, 1);
}

static inline void
img_put_be16(img_bytes *b, uint16_t v)
{
	unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
	img_put(b, x, 2);
}

static inline void
img_put_be32(img_bytes *b, uint32_t v)
{
	unsigned char x[4] = {(unsigned char)(v >> 24),
		(unsigned char)(v >> 16), (unsigned char)(v >> 8),
		(unsigned char)v};
	img_put(b, x, 4);
}

static inline void
img_put_le16(img_bytes *b, uint16_t v)
{
	unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
	img_put(b, x, 2);
}

static inline void
img_put_le32(img_bytes *b, uint32_t v)
{
	unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8),
		(unsigned char)(v >> 16), (unsigned char)(v >> 24)};
	img_put(b, x, 4);
}

/* ---- PNG ---------------------------------------------------------------- */

/* CRC-32 (ISO 3309, as PNG uses), bitwise: fixtures are tiny. */
static inline uint32_t
img_crc32(const unsigned char *p, size_t length)
{
	uint32_t crc = 0xffffffffu;
	for (size_t i = 0; i < length; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
	}
	return crc ^ 0xffffffffu;
}

static inline void
img_png_chunk(img_bytes *b, const char type[4], const void *data,
	size_t length)
{
	img_bytes body = {0};
	img_put(&body, type, 4);
	if (length > 0)
		img_put(&body, data, length);
	img_put_be32(b, (uint32_t)length);
	img_put(b, body.bytes, body.length);
	img_put_be32(b, img_crc32(body.bytes, body.length));
	free(body.bytes);
}

/* A PNG declaring width x height (8-bit RGB) with valid CRCs and a tiny
 * IDAT: a zlib stream of one stored empty block. Owned bytes. */
static inline img_bytes
img_png_declaring(uint32_t width, uint32_t height)
{
	static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r',
		'\n', 0x1a, '\n'};
	img_bytes b = {0};
	img_put(&b, signature, sizeof(signature));
	img_bytes ihdr = {0};
	img_put_be32(&ihdr, width);
	img_put_be32(&ihdr, height);
	img_put_u8(&ihdr, 8); /* bit depth */
	img_put_u8(&ihdr, 2); /* colour type: RGB */
	img_put_u8(&ihdr, 0); /* deflate */
	img_put_u8(&ihdr, 0); /* adaptive filtering */
	img_put_u8(&ihdr, 0); /* no interlace */
	img_png_chunk(&b, "IHDR", ihdr.bytes, ihdr.length);
	free(ihdr.bytes);
	/* zlib header 78 01, final stored block of length 0, adler32 of
	 * nothing (1). */
	static const unsigned char idat[] = {0x78, 0x01, 0x01, 0x00, 0x00,
		0xff, 0xff, 0x00, 0x00, 0x00, 0x01};
	img_png_chunk(&b, "IDAT", idat, sizeof(idat));
	img_png_chunk(&b, "IEND", NULL, 0);
	return b;
}

/* ---- JPEG ----------------------------------------------------------------- */

/* The frame size of a JPEG from its SOFn marker; false if none. */
static inline bool
img_jpeg_size(const unsigned char *p, size_t length, uint32_t *width,
	uint32_t *height, uint32_t *components)
{
	size_t i = 2;
	if (length < 4 || p[0] != 0xff || p[1] != 0xd8)
		return false;
	while (i + 4 <= length) {
		if (p[i] != 0xff)
			return false;
		uint8_t marker = p[i + 1];
		if (marker == 0xff) {
			i++;
			continue;
		}
		size_t seg = ((size_t)p[i + 2] << 8) | p[i + 3];
		bool sof = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 &&
			marker != 0xc8 && marker != 0xcc;
		if (sof && i + 2 + seg <= length && seg >= 8) {
			*height = ((uint32_t)p[i + 5] << 8) | p[i + 6];
			*width = ((uint32_t)p[i + 7] << 8) | p[i + 8];
			*components = p[i + 9];
			return true;
		}
		if (marker == 0xda)
			return false;
		i += 2 + seg;
	}
	return false;
}

/* True when the JPEG has an APPn segment n (0xE0 + n) before its scan. */
static inline bool
img_jpeg_has_app(const unsigned char *p, size_t length, unsigned n)
{
	size_t i = 2;
	while (i + 4 <= length && p[i] == 0xff) {
		uint8_t marker = p[i + 1];
		if (marker == 0xda)
			return false;
		if (marker == 0xe0 + n)
			return true;
		i += 2 + (((size_t)p[i + 2] << 8) | p[i + 3]);
	}
	return false;
}

/* True when needle occurs anywhere in the bytes. */
static inline bool
img_contains(const unsigned char *p, size_t length, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; n <= length && i <= length - n; i++)
		if (memcmp(p + i, needle, n) == 0)
			return true;
	return false;
}

/*
 * An APP1 "Exif" segment (little-endian TIFF) with IFD0 {Orientation,
 * Make "FlockCam", GPS IFD pointer} and a GPS IFD {GPSLatitudeRef "N",
 * GPSLatitude 48/1 51/1 30/1}.
 */
static inline img_bytes
img_exif_app1(uint16_t orientation)
{
	img_bytes t = {0};
	/* TIFF header */
	img_put(&t, "II", 2);
	img_put_le16(&t, 42);
	img_put_le32(&t, 8);
	/* IFD0 at 8: 3 entries -> 2 + 36 + 4 = 42 bytes, ends at 50. */
	const uint32_t make_at = 50, gps_at = 60;
	img_put_le16(&t, 3);
	img_put_le16(&t, 0x010f); /* Make, ASCII, 9 bytes at make_at */
	img_put_le16(&t, 2);
	img_put_le32(&t, 9);
	img_put_le32(&t, make_at);
	img_put_le16(&t, 0x0112); /* Orientation, SHORT, inline */
	img_put_le16(&t, 3);
	img_put_le32(&t, 1);
	img_put_le16(&t, orientation);
	img_put_le16(&t, 0);
	img_put_le16(&t, 0x8825); /* GPSInfo IFD pointer, LONG */
	img_put_le16(&t, 4);
	img_put_le32(&t, 1);
	img_put_le32(&t, gps_at);
	img_put_le32(&t, 0); /* no IFD1 */
	img_put(&t, "FlockCam\0", 10); /* 9 bytes and a pad to even */
	/* GPS IFD at 60: 2 entries -> 30 bytes, ends at 90; rationals. */
	const uint32_t rationals_at = 90;
	img_put_le16(&t, 2);
	img_put_le16(&t, 0x0001); /* GPSLatitudeRef, ASCII "N\0" inline */
	img_put_le16(&t, 2);
	img_put_le32(&t, 2);
	img_put(&t, "N\0\0\0", 4);
	img_put_le16(&t, 0x0002); /* GPSLatitude, 3 RATIONAL */
	img_put_le16(&t, 5);
	img_put_le32(&t, 3);
	img_put_le32(&t, rationals_at);
	img_put_le32(&t, 0);
	const uint32_t r[6] = {48, 1, 51, 1, 30, 1};
	for (int i = 0; i < 6; i++)
		img_put_le32(&t, r[i]);

	img_bytes seg = {0};
	img_put_u8(&seg, 0xff);
	img_put_u8(&seg, 0xe1);
	img_put_be16(&seg, (uint16_t)(2 + 6 + t.length));
	img_put(&seg, "Exif\0\0", 6);
	img_put(&seg, t.bytes, t.length);
	free(t.bytes);
	return seg;
}

/* jpeg with `segment` inserted right after SOI. Owned. */
static inline img_bytes
img_jpeg_insert(const unsigned char *jpeg, size_t length,
	const img_bytes *segment)
{
	img_bytes b = {0};
	img_put(&b, jpeg, 2);
	img_put(&b, segment->bytes, segment->length);
	img_put(&b, jpeg + 2, length - 2);
	return b;
}

/* A baseline JPEG header (SOI, SOF0, SOS) declaring width x height, then EOI:
 * enough for a header reader, nothing to decode. */
static inline img_bytes
img_jpeg_declaring(uint16_t width, uint16_t height)
{
	img_bytes b = {0};
	img_put_u8(&b, 0xff);
	img_put_u8(&b, 0xd8);
	img_put_u8(&b, 0xff);
	img_put_u8(&b, 0xc0);
	img_put_be16(&b, 17);
	img_put_u8(&b, 8);
	img_put_be16(&b, height);
	img_put_be16(&b, width);
	img_put_u8(&b, 3);
	for (uint8_t c = 1; c <= 3; c++) {
		img_put_u8(&b, c);
		img_put_u8(&b, 0x11);
		img_put_u8(&b, 0);
	}
	/* SOS: a header reader stops here, before any table is needed. */
	img_put_u8(&b, 0xff);
	img_put_u8(&b, 0xda);
	img_put_be16(&b, 12);
	img_put_u8(&b, 3);
	for (uint8_t c = 1; c <= 3; c++) {
		img_put_u8(&b, c);
		img_put_u8(&b, 0x00);
	}
	img_put_u8(&b, 0);
	img_put_u8(&b, 63);
	img_put_u8(&b, 0);
	img_put_u8(&b, 0xff);
	img_put_u8(&b, 0xd9);
	return b;
}

/* ---- formats refused by content ------------------------------------------ */

static const char img_svg[] =
	"<?xml version=\"1.0\"?>\n"
	"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\">"
	"<rect width=\"64\" height=\"64\" fill=\"red\"/></svg>\n";

static const char img_pdf[] =
	"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
	"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
	"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 64 64] >> "
	"endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

#endif /* FLOCK_TESTS_MEDIA_IMAGES_H */
