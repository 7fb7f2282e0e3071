/*
 * actors_media_image_test.c — the image layer of the media pipeline.
 *
 * Goal: uploads are judged by their content and their header before any
 * pixel is decoded, and the four variants come out with the sizes,
 * orientation, encoding and (lack of) metadata API.md promises.
 *
 * Method: images are generated with media_vips_generate (gradient plus
 * seeded noise) or written byte by byte (tests/media/images.h): a PNG
 * and a JPEG whose headers declare far more than 50 million pixels, an
 * EXIF segment with GPS tags, SVG and PDF text. media_probe and
 * media_render run on them; outputs are read back at the byte level
 * (JPEG frame size and APP markers), not through the library under test.
 */
#include "tests/test.h"

#include <sys/resource.h>

#include <time.h>

#include "actors/media.h"
#include "tests/media/images.h"


/* The process's peak resident memory so far, in KiB. */
static long
peak_rss_kib(void)
{
	struct rusage usage;
	getrusage(RUSAGE_SELF, &usage);
	return usage.ru_maxrss;
}

static img_bytes
generate(media_generate_format format, uint32_t width, uint32_t height,
	bool alpha, uint32_t orientation)
{
	media_generate_spec spec = {
		.format = format,
		.width = width,
		.height = height,
		.alpha = alpha,
		.orientation = orientation,
		.seed = 7,
	};
	img_bytes b = {0};
	int rc = media_vips_generate(&spec, &b.bytes, &b.length);
	CHECK_MSG(rc == 0, "generate format %d: %d", (int)format, rc);
	return b;
}

/* Renders bytes and checks every variant is a JPEG of the expected size
 * with no EXIF (APP1), ICC (APP2) or IPTC (APP13) segment. */
static void
check_variants(const img_bytes *in, const uint32_t expect[4][2])
{
	media_rendered r;
	char reason[MEDIA_REASON_BYTES_MAX];
	int rc = media_render(in->bytes, in->length, &r, reason);
	CHECK_MSG(rc == 0, "render: %d %s", rc, reason);
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
		const media_variant_bytes *v = &r.variants[i];
		uint32_t w = 0, h = 0, components = 0;
		CHECK(img_jpeg_size(v->bytes, v->length, &w, &h, &components));
		CHECK_MSG(w == expect[i][0] && h == expect[i][1],
			"%s: %ux%u, expected %ux%u", api_media_variants[i], w,
			h, expect[i][0], expect[i][1]);
		CHECK_EQ(v->width, w);
		CHECK_EQ(v->height, h);
		CHECK_EQ(components, 3);
		CHECK(!img_jpeg_has_app(v->bytes, v->length, 1));
		CHECK(!img_jpeg_has_app(v->bytes, v->length, 2));
		CHECK(!img_jpeg_has_app(v->bytes, v->length, 13));
		CHECK(!img_contains(v->bytes, v->length, "Exif"));
	}
	media_rendered_free(&r);
}

TEST(actors_media_variants_of_a_12_megapixel_jpeg)
{
	img_bytes in = generate(MEDIA_GENERATE_JPEG, 4000, 3000, false, 0);
	media_probe_result probe;
	CHECK_EQ(media_probe(in.bytes, in.length, &probe, NULL), 0);
	CHECK_EQ(probe.format, MEDIA_FORMAT_JPEG);
	CHECK_EQ(probe.width, 4000);
	CHECK_EQ(probe.height, 3000);
	const uint32_t expect[4][2] = {
		{150, 150}, {320, 240}, {640, 480}, {1080, 810}};
	check_variants(&in, expect);
	free(in.bytes);
}

TEST(actors_media_variants_never_upscale)
{
	img_bytes in = generate(MEDIA_GENERATE_JPEG, 500, 400, false, 0);
	/* thumb is a crop to exactly 150 x 150; the widths stop at 500. */
	const uint32_t expect[4][2] = {
		{150, 150}, {320, 256}, {500, 400}, {500, 400}};
	check_variants(&in, expect);
	free(in.bytes);

	/* Smaller than the thumb: the thumb is still 150 x 150. */
	in = generate(MEDIA_GENERATE_PNG, 100, 60, false, 0);
	const uint32_t tiny[4][2] = {
		{150, 150}, {100, 60}, {100, 60}, {100, 60}};
	check_variants(&in, tiny);
	free(in.bytes);

	/* A panorama: the large is only 72 high, so the thumb is cut from
	 * the original, still 150 x 150. */
	in = generate(MEDIA_GENERATE_JPEG, 3000, 200, false, 0);
	const uint32_t wide[4][2] = {
		{150, 150}, {320, 21}, {640, 43}, {1080, 72}};
	check_variants(&in, wide);
	free(in.bytes);
}

TEST(actors_media_variants_follow_exif_orientation)
{
	/* Stored 400 x 200, orientation 6 (rotate 90 clockwise to view):
	 * it is shown, and so rendered, 200 wide and 400 high. */
	img_bytes in = generate(MEDIA_GENERATE_JPEG, 400, 200, false, 6);
	uint32_t w, h, c;
	CHECK(img_jpeg_size(in.bytes, in.length, &w, &h, &c));
	CHECK_EQ(w, 400);
	CHECK(img_jpeg_has_app(in.bytes, in.length, 1));
	const uint32_t expect[4][2] = {
		{150, 150}, {200, 400}, {200, 400}, {200, 400}};
	check_variants(&in, expect);
	free(in.bytes);
}

TEST(actors_media_variants_strip_exif_and_gps)
{
	img_bytes plain = generate(MEDIA_GENERATE_JPEG, 640, 480, false, 0);
	img_bytes app1 = img_exif_app1(1);
	img_bytes in = img_jpeg_insert(plain.bytes, plain.length, &app1);
	/* The fixture really carries EXIF with GPS. */
	CHECK(img_jpeg_has_app(in.bytes, in.length, 1));
	CHECK(img_contains(in.bytes, in.length, "Exif"));
	CHECK(img_contains(in.bytes, in.length, "FlockCam"));
	uint32_t w, h;
	CHECK_EQ(media_vips_dimensions(in.bytes, in.length, &w, &h), 0);
	CHECK_EQ(w, 640);
	const uint32_t expect[4][2] = {
		{150, 150}, {320, 240}, {640, 480}, {640, 480}};
	check_variants(&in, expect);
	media_rendered r;
	char reason[MEDIA_REASON_BYTES_MAX];
	CHECK_EQ(media_render(in.bytes, in.length, &r, reason), 0);
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++)
		CHECK(!img_contains(r.variants[i].bytes, r.variants[i].length,
			"FlockCam"));
	media_rendered_free(&r);
	free(in.bytes);
	free(app1.bytes);
	free(plain.bytes);
}

TEST(actors_media_alpha_is_flattened_to_jpeg)
{
	img_bytes in = generate(MEDIA_GENERATE_PNG, 800, 600, true, 0);
	const uint32_t expect[4][2] = {
		{150, 150}, {320, 240}, {640, 480}, {800, 600}};
	check_variants(&in, expect);
	free(in.bytes);
}

TEST(actors_media_accepts_png_webp_heif)
{
	static const struct {
		media_generate_format generate;
		media_format format;
	} cases[] = {
		{MEDIA_GENERATE_PNG, MEDIA_FORMAT_PNG},
		{MEDIA_GENERATE_WEBP, MEDIA_FORMAT_WEBP},
		{MEDIA_GENERATE_HEIF, MEDIA_FORMAT_HEIF},
		{MEDIA_GENERATE_AVIF, MEDIA_FORMAT_HEIF},
	};
	/* Small: HEVC and AV1 encoding (to make the inputs) is slow. */
	const uint32_t expect[4][2] = {
		{150, 150}, {320, 240}, {400, 300}, {400, 300}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		media_generate_spec spec = {.format = cases[i].generate,
			.width = 400, .height = 300, .seed = 3};
		img_bytes in = {0};
		if (media_vips_generate(&spec, &in.bytes, &in.length) != 0) {
			/* HEVC/AV1 encoders are optional in libheif builds;
			 * decoding is what must work, and it needs a file. */
			CHECK(cases[i].format == MEDIA_FORMAT_HEIF);
			fprintf(stderr, "no encoder for case %zu\n", i);
			continue;
		}
		media_probe_result probe;
		const char *detail = NULL;
		int rc = media_probe(in.bytes, in.length, &probe, &detail);
		CHECK_MSG(rc == 0, "case %zu: %d %s", i, rc, detail);
		CHECK_EQ(probe.format, cases[i].format);
		CHECK_EQ(probe.width, 400);
		CHECK_EQ(probe.height, 300);
		check_variants(&in, expect);
		free(in.bytes);
	}
}

static void
check_refused(const void *bytes, size_t length, int expected,
	const char *what)
{
	media_probe_result probe;
	const char *detail = NULL;
	int rc = media_probe(bytes, length, &probe, &detail);
	CHECK_MSG(rc == expected, "%s: %d, expected %d", what, rc, expected);
	CHECK(detail != NULL);
	media_rendered r;
	char reason[MEDIA_REASON_BYTES_MAX];
	CHECK(media_render(bytes, length, &r, reason) != 0);
	CHECK(reason[0] != '\0');
}

TEST(actors_media_refuses_other_formats_by_content)
{
	/* The bytes decide: nothing here has a name, and a ".jpg" name
	 * would change nothing. */
	check_refused(img_svg, sizeof(img_svg) - 1, API_EMEDIATYPE, "svg");
	check_refused(img_pdf, sizeof(img_pdf) - 1, API_EMEDIATYPE, "pdf");
	img_bytes gif = generate(MEDIA_GENERATE_GIF, 64, 48, false, 0);
	CHECK(memcmp(gif.bytes, "GIF8", 4) == 0);
	check_refused(gif.bytes, gif.length, API_EMEDIATYPE, "gif");
	img_bytes tiff = generate(MEDIA_GENERATE_TIFF, 64, 48, false, 0);
	check_refused(tiff.bytes, tiff.length, API_EMEDIATYPE, "tiff");
	check_refused("", 0, API_EMEDIATYPE, "empty");
	check_refused("\xff\xd8", 2, API_EMEDIATYPE, "two bytes");
	/* An SVG behind a JPEG signature is no JPEG either. */
	img_bytes fake = {0};
	img_put(&fake, "\xff\xd8\xff", 3);
	img_put(&fake, img_svg, sizeof(img_svg) - 1);
	check_refused(fake.bytes, fake.length, API_EINVALID, "svg as jpeg");
	free(fake.bytes);
	free(tiff.bytes);
	free(gif.bytes);
	CHECK_EQ(media_sniff(img_svg, sizeof(img_svg) - 1), MEDIA_FORMAT_NONE);
}

TEST(actors_media_pixel_bomb_refused_before_decoding)
{
	/* 100,000 x 100,000 RGB would be 30 GB decoded; the file is tiny. */
	img_bytes bomb = img_png_declaring(100000, 100000);
	CHECK(bomb.length < 100);
	/* Decoding it would need gigabytes; refusing from the header needs
	 * none, so the process's peak memory tells which happened. */
	long peak_before_kib = peak_rss_kib();
	media_probe_result probe;
	const char *detail = NULL;
	int rc = media_probe(bomb.bytes, bomb.length, &probe, &detail);
	long peak_growth_kib = peak_rss_kib() - peak_before_kib;
	CHECK_EQ(rc, API_EINVALID);
	CHECK(strstr(detail, "pixels") != NULL);
	CHECK_EQ(probe.width, 100000);
	CHECK_EQ(probe.height, 100000);
	CHECK_MSG(peak_growth_kib < 64 * 1024, "peak memory grew %ld KiB",
		peak_growth_kib);
	char reason[MEDIA_REASON_BYTES_MAX];
	media_rendered r;
	CHECK_EQ(media_render(bomb.bytes, bomb.length, &r, reason),
		API_EINVALID);
	CHECK(strstr(reason, "pixels") != NULL);
	free(bomb.bytes);

	img_bytes jpeg_bomb = img_jpeg_declaring(65000, 65000);
	CHECK_EQ(media_probe(jpeg_bomb.bytes, jpeg_bomb.length, &probe,
		&detail), API_EINVALID);
	CHECK(strstr(detail, "pixels") != NULL);
	free(jpeg_bomb.bytes);

	/* Right at the limit is not refused for its size: 10000 x 5000. */
	img_bytes edge = img_png_declaring(10000, 5000);
	rc = media_probe(edge.bytes, edge.length, &probe, &detail);
	CHECK_EQ(rc, 0);
	free(edge.bytes);
	img_bytes over = img_png_declaring(10000, 5001);
	CHECK_EQ(media_probe(over.bytes, over.length, &probe, &detail),
		API_EINVALID);
	free(over.bytes);
}

TEST(actors_media_upload_size_limit)
{
	/* Exactly the limit passes the size rule (and fails later, for not
	 * being an image); one byte more is 413. */
	unsigned char *big = calloc(1, API_UPLOAD_BYTES_MAX + 1u);
	CHECK(big != NULL);
	memcpy(big, "\xff\xd8\xff", 3);
	media_probe_result probe;
	const char *detail = NULL;
	CHECK_EQ(media_probe(big, API_UPLOAD_BYTES_MAX + 1u, &probe, &detail),
		API_ETOOLARGE);
	int rc = media_probe(big, API_UPLOAD_BYTES_MAX, &probe, &detail);
	CHECK(rc != API_ETOOLARGE);
	CHECK(rc != 0);
	free(big);
}

TEST(actors_media_corrupt_images_fail_to_render)
{
	img_bytes in = generate(MEDIA_GENERATE_JPEG, 1200, 900, false, 0);
	/* Truncated: the header is intact, the scan is cut in half. */
	size_t half = in.length / 2;
	media_probe_result probe;
	CHECK_EQ(media_probe(in.bytes, half, &probe, NULL), 0);
	media_rendered r;
	char reason[MEDIA_REASON_BYTES_MAX];
	CHECK_EQ(media_render(in.bytes, half, &r, reason), API_EINVALID);
	CHECK_MSG(strstr(reason, "decode failed") != NULL, "%s", reason);
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++)
		CHECK(r.variants[i].bytes == NULL);
	/* Garbage behind a PNG signature. */
	img_bytes garbage = {0};
	img_put(&garbage, "\x89PNG\r\n\x1a\n", 8);
	for (int i = 0; i < 200; i++)
		img_put_u8(&garbage, (uint8_t)(i * 37 + 11));
	const char *detail = NULL;
	CHECK_EQ(media_probe(garbage.bytes, garbage.length, &probe, &detail),
		API_EINVALID);
	CHECK(media_render(garbage.bytes, garbage.length, &r, reason) != 0);
	CHECK(reason[0] != '\0');
	free(garbage.bytes);
	free(in.bytes);
}

TEST(actors_media_sniff_signatures)
{
	CHECK_EQ(media_sniff("\xff\xd8\xff\xe0", 4), MEDIA_FORMAT_JPEG);
	CHECK_EQ(media_sniff("\x89PNG\r\n\x1a\n", 8), MEDIA_FORMAT_PNG);
	CHECK_EQ(media_sniff("\x89PNG\r\n\x1a", 7), MEDIA_FORMAT_NONE);
	CHECK_EQ(media_sniff("RIFF\0\0\0\0WEBPVP8 ", 16), MEDIA_FORMAT_WEBP);
	CHECK_EQ(media_sniff("RIFF\0\0\0\0WAVEfmt ", 16), MEDIA_FORMAT_NONE);
	CHECK_EQ(media_sniff("\0\0\0\x18" "ftypheic", 12), MEDIA_FORMAT_HEIF);
	CHECK_EQ(media_sniff("\0\0\0\x18" "ftypavif", 12), MEDIA_FORMAT_HEIF);
	CHECK_EQ(media_sniff("\0\0\0\x18" "ftypisom", 12), MEDIA_FORMAT_NONE);
	CHECK_EQ(media_sniff("GIF89a", 6), MEDIA_FORMAT_NONE);
	CHECK_EQ(media_sniff("II*\0", 4), MEDIA_FORMAT_NONE);
	CHECK_EQ(media_sniff("%PDF-1.7", 8), MEDIA_FORMAT_NONE);
	CHECK_EQ(media_sniff(NULL, 0), MEDIA_FORMAT_NONE);
	CHECK_STR_EQ(media_format_name(MEDIA_FORMAT_WEBP), "webp");
}
