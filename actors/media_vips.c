/*
 * media_vips.c — libvips glue: the only file of flock that includes
 * <vips/vips.h> (STYLE.md rule 2).
 *
 * Role: header checks of uploads (format allow-list, pixel limit before
 * any decoding), rendering of the four variants, and a generator of test
 * images for the tests, benchmarks and the simulator's workload.
 *
 * Invariants:
 *   - libvips is initialised once per process, with every loader blocked
 *     except the JPEG, PNG, WebP and HEIF ones (and untrusted operations
 *     blocked on top), so even a bug in our own sniffing cannot reach
 *     the SVG, PDF, TIFF, GIF or ImageMagick loaders;
 *   - one libvips thread per image (vips_concurrency_set(1) is
 *     process-wide): parallelism comes from the pool's threads, so an
 *     image never takes more than one core;
 *   - the operation cache is small: uploads are never the same buffer
 *     twice, so caching would only hold memory;
 *   - every image is loaded with sequential access and shrink-on-load
 *     (vips_thumbnail_buffer), truncated data fails instead of being
 *     filled with grey.
 *
 * What it deliberately does not do: files, hashing, queues or retries
 * (media.c); it does not log (libvips' warnings are dropped; its errors
 * come back as a reason string).
 */
#include "actors/media.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

/* The operation cache: a handful of entries and a few MiB are enough for
 * the few operations a thumbnail chain reuses. */
#define MEDIA_VIPS_CACHE_OPERATIONS_MAX 16
#define MEDIA_VIPS_CACHE_BYTES_MAX (8u * 1024u * 1024u)
#define MEDIA_VIPS_CACHE_FILES_MAX 0
/* Widths given as "height" when only the width matters: larger than any
 * image libvips accepts, so the width always decides. */
#define MEDIA_VIPS_HEIGHT_UNBOUNDED VIPS_MAX_COORD
/* Loader options: fail on truncated data instead of filling with grey.
 * Passed as the loader's option string: vips_thumbnail_buffer's own
 * "fail_on" argument does not reach the loader in libvips 8.14. */
#define MEDIA_VIPS_LOAD_OPTIONS "fail_on=truncated"

/* Widths of the variants, in api_media_variants order (thumb: side). */
static const int media_vips_widths[API_MEDIA_VARIANTS_COUNT] = {
	MEDIA_THUMB_SIDE_PIXELS, MEDIA_SMALL_WIDTH_PIXELS,
	MEDIA_MEDIUM_WIDTH_PIXELS, MEDIA_LARGE_WIDTH_PIXELS,
};

/* Asserts that stay on in release builds (STYLE.md rule 6). */
#define MEDIA_VIPS_ASSERT(cond)                                              \
	do {                                                                 \
		if (__builtin_expect(!(cond), 0)) {                          \
			fprintf(stderr, "%s:%d: assertion failed: %s\n",     \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

static pthread_once_t media_vips_once = PTHREAD_ONCE_INIT;
static int media_vips_init_status = API_EINTERNAL;
/* Set once libvips is up: per-thread cleanup is only valid after it. */
static _Atomic bool media_vips_ready;

/* The loader libvips must pick for each sniffed format. */
static const char *const media_vips_loaders[] = {
	[MEDIA_FORMAT_NONE] = NULL,
	[MEDIA_FORMAT_JPEG] = "jpegload_buffer",
	[MEDIA_FORMAT_PNG] = "pngload_buffer",
	[MEDIA_FORMAT_WEBP] = "webpload_buffer",
	[MEDIA_FORMAT_HEIF] = "heifload_buffer",
};

/* Loader classes left unblocked; their subclasses follow. */
static const char *const media_vips_allowed_classes[] = {
	"VipsForeignLoadJpeg",
	"VipsForeignLoadPng",
	"VipsForeignLoadWebp",
	"VipsForeignLoadHeif",
};

static void
media_vips_log_drop(const gchar *domain, GLogLevelFlags level,
	const gchar *message, gpointer arg)
{
	(void)domain;
	(void)level;
	(void)message;
	(void)arg;
}

static void
media_vips_init_once(void)
{
	if (VIPS_INIT("flock") != 0)
		return;
	/* Allow-list the loaders: block them all, unblock ours. */
	vips_operation_block_set("VipsForeignLoad", TRUE);
	for (size_t i = 0; i < G_N_ELEMENTS(media_vips_allowed_classes); i++)
		vips_operation_block_set(media_vips_allowed_classes[i], FALSE);
	vips_block_untrusted_set(TRUE);
	vips_cache_set_max(MEDIA_VIPS_CACHE_OPERATIONS_MAX);
	vips_cache_set_max_mem(MEDIA_VIPS_CACHE_BYTES_MAX);
	vips_cache_set_max_files(MEDIA_VIPS_CACHE_FILES_MAX);
	vips_concurrency_set(1);
	vips_leak_set(FALSE);
	/* Per-tile warnings of a corrupt upload would flood stderr; the
	 * error that fails the item is kept as its reason instead. */
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE |
		G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG, media_vips_log_drop, NULL);
	media_vips_init_status = 0;
	media_vips_ready = true;
}

int
media_vips_init(void)
{
	pthread_once(&media_vips_once, media_vips_init_once);
	return media_vips_init_status;
}

void
media_vips_thread_done(void)
{
	/* A pool that never processed anything may run in a process that
	 * never started libvips; its thread has nothing to release. */
	if (media_vips_ready)
		vips_thread_shutdown();
}

/* First line of libvips' error text, printable ASCII only, after prefix. */
static void
media_vips_reason(char *reason, const char *prefix)
{
	const char *text = vips_error_buffer();
	size_t used = (size_t)snprintf(reason, MEDIA_REASON_BYTES_MAX, "%s",
		prefix);
	if (used >= MEDIA_REASON_BYTES_MAX)
		used = MEDIA_REASON_BYTES_MAX - 1;
	for (size_t i = 0; text != NULL && text[i] != '\0' &&
		text[i] != '\n' && used + 1 < MEDIA_REASON_BYTES_MAX; i++) {
		char c = text[i];
		reason[used++] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	reason[used] = '\0';
	vips_error_clear();
}

int
media_probe(const void *bytes, size_t length, media_probe_result *out,
	const char **detail)
{
	const char *unused;
	if (detail == NULL)
		detail = &unused;
	MEDIA_VIPS_ASSERT(out != NULL);
	MEDIA_VIPS_ASSERT(bytes != NULL || length == 0);
	memset(out, 0, sizeof(*out));
	*detail = NULL;

	if (length > API_UPLOAD_BYTES_MAX) {
		*detail = "upload larger than 30,000,000 bytes";
		return API_ETOOLARGE;
	}
	media_format format = media_sniff(bytes, length);
	if (format == MEDIA_FORMAT_NONE) {
		*detail = "content is not JPEG, PNG, WebP or HEIF";
		return API_EMEDIATYPE;
	}
	if (media_vips_init() != 0) {
		*detail = "image library unavailable";
		return API_EINTERNAL;
	}
	/* libvips must agree on the loader, by name. */
	const char *type_name = vips_foreign_find_load_buffer(bytes, length);
	const char *loader = NULL;
	if (type_name != NULL)
		loader = vips_nickname_find(g_type_from_name(type_name));
	vips_error_clear();
	if (loader == NULL || strcmp(loader, media_vips_loaders[format]) != 0) {
		*detail = "content is not JPEG, PNG, WebP or HEIF";
		return API_EMEDIATYPE;
	}
	/* Reads the header only: pixels are decoded on demand, never here. */
	VipsImage *image = vips_image_new_from_buffer(bytes, length, "",
		"access", VIPS_ACCESS_SEQUENTIAL, NULL);
	if (image == NULL) {
		vips_error_clear();
		*detail = "unreadable image header";
		return API_EINVALID;
	}
	int width = vips_image_get_width(image);
	int height = vips_image_get_height(image);
	g_object_unref(image);
	if (width <= 0 || height <= 0) {
		*detail = "unreadable image header";
		return API_EINVALID;
	}
	out->format = format;
	out->width = (uint32_t)width;
	out->height = (uint32_t)height;
	if ((uint64_t)out->width * out->height > API_UPLOAD_PIXELS_MAX) {
		*detail = "image above the 50 million pixels limit";
		return API_EINVALID;
	}
	return 0;
}

/* Makes `image` JPEG-ready: alpha flattened onto white. Takes image,
 * returns the image to save (owned) or NULL. */
static VipsImage *
media_vips_flatten(VipsImage *image)
{
	if (!vips_image_hasalpha(image))
		return image;
	VipsImage *flat = NULL;
	VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
	int rc = vips_flatten(image, &flat, "background", white, NULL);
	vips_area_unref(VIPS_AREA(white));
	g_object_unref(image);
	return rc == 0 ? flat : NULL;
}

/* Encodes image (borrowed) as a stripped JPEG into v, alpha flattened.
 * Decoding happens here (the pipeline is lazy), so do decode errors.
 * 0 or -1 (libvips error set). */
static int
media_vips_encode(VipsImage *image, media_variant_bytes *v)
{
	g_object_ref(image);
	image = media_vips_flatten(image);
	if (image == NULL)
		return -1;
	void *encoded = NULL;
	size_t encoded_length = 0;
	/* strip: no EXIF, GPS, XMP, IPTC or ICC in what is served. */
	int rc = vips_jpegsave_buffer(image, &encoded, &encoded_length, "Q",
		MEDIA_JPEG_QUALITY, "strip", TRUE, "optimize_coding", TRUE,
		NULL);
	if (rc == 0) {
		v->bytes = encoded;
		v->length = encoded_length;
		v->width = (uint32_t)vips_image_get_width(image);
		v->height = (uint32_t)vips_image_get_height(image);
	}
	g_object_unref(image);
	return rc == 0 ? 0 : -1;
}

/* variant of the source: the thumb crop, or a width never upscaled. */
static int
media_vips_derive(VipsImage *source, int variant, VipsImage **out)
{
	if (variant == 0)
		return vips_thumbnail_image(source, out,
			MEDIA_THUMB_SIDE_PIXELS, "height",
			MEDIA_THUMB_SIDE_PIXELS, "crop", VIPS_INTERESTING_CENTRE,
			NULL);
	return vips_thumbnail_image(source, out, media_vips_widths[variant],
		"height", MEDIA_VIPS_HEIGHT_UNBOUNDED, "size", VIPS_SIZE_DOWN,
		NULL);
}

/*
 * Decodes the original once, with shrink-on-load, into the large variant
 * held in memory (at most 1080 wide: ~3.5 MB), then derives medium,
 * small and thumb from it: one decode instead of four. The thumb comes
 * from the original instead when the large is too short for a sharp
 * 150 x 150 crop (a wide panorama). 0 or -1 (libvips error set).
 */
static int
media_vips_render_all(const void *bytes, size_t length, media_rendered *out)
{
	/* thumbnail_buffer does not write to the buffer; its prototype
	 * just is not const. */
	void *buffer = (void *)(uintptr_t)bytes;
	VipsImage *large = NULL, *memory = NULL;
	int rc = vips_thumbnail_buffer(buffer, length, &large,
		MEDIA_LARGE_WIDTH_PIXELS, "height", MEDIA_VIPS_HEIGHT_UNBOUNDED,
		"size", VIPS_SIZE_DOWN, "option_string", MEDIA_VIPS_LOAD_OPTIONS,
		NULL);
	if (rc != 0)
		return -1;
	memory = vips_image_copy_memory(large); /* the one decode */
	g_object_unref(large);
	if (memory == NULL)
		return -1;
	rc = media_vips_encode(memory, &out->variants[3]);
	for (int i = 2; rc == 0 && i >= 0; i--) {
		VipsImage *derived = NULL;
		bool short_side = vips_image_get_width(memory) <
			(int)MEDIA_THUMB_SIDE_PIXELS * 2 ||
			vips_image_get_height(memory) <
			(int)MEDIA_THUMB_SIDE_PIXELS * 2;
		if (i == 0 && short_side)
			rc = vips_thumbnail_buffer(buffer, length, &derived,
				MEDIA_THUMB_SIDE_PIXELS, "height",
				MEDIA_THUMB_SIDE_PIXELS, "crop",
				VIPS_INTERESTING_CENTRE, "option_string",
				MEDIA_VIPS_LOAD_OPTIONS, NULL);
		else
			rc = media_vips_derive(memory, i, &derived);
		if (rc == 0) {
			rc = media_vips_encode(derived, &out->variants[i]);
			g_object_unref(derived);
		}
	}
	g_object_unref(memory);
	return rc;
}

int
media_render(const void *bytes, size_t length, media_rendered *out,
	char *reason)
{
	MEDIA_VIPS_ASSERT(bytes != NULL);
	MEDIA_VIPS_ASSERT(out != NULL);
	MEDIA_VIPS_ASSERT(reason != NULL);
	memset(out, 0, sizeof(*out));
	reason[0] = '\0';
	media_probe_result probe;
	const char *detail = NULL;
	int rc = media_probe(bytes, length, &probe, &detail);
	if (rc != 0) {
		snprintf(reason, MEDIA_REASON_BYTES_MAX, "%s", detail);
		return rc;
	}
	if (media_vips_render_all(bytes, length, out) != 0) {
		media_vips_reason(reason, "decode failed: ");
		media_rendered_free(out);
		return API_EINVALID;
	}
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
		MEDIA_VIPS_ASSERT(out->variants[i].bytes != NULL);
		MEDIA_VIPS_ASSERT(out->variants[i].width > 0);
		MEDIA_VIPS_ASSERT(out->variants[i].width <=
			MEDIA_LARGE_WIDTH_PIXELS);
	}
	return 0;
}

void
media_rendered_free(media_rendered *r)
{
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
		g_free(r->variants[i].bytes);
		r->variants[i].bytes = NULL;
		r->variants[i].length = 0;
	}
}

/* ---- test images ------------------------------------------------------- */

/* A smooth gradient with a little noise in 3 (or 4) bands: compresses
 * like a photo (not like a flat colour, not like pure noise). Owned or
 * NULL. */
static VipsImage *
media_vips_pattern(uint32_t width, uint32_t height, bool alpha, int seed)
{
	VipsImage *xyz = NULL, *scaled = NULL, *noise = NULL, *sum = NULL;
	VipsImage *out = NULL;
	if (vips_xyz(&xyz, (int)width, (int)height, NULL) != 0)
		goto done;
	double sx = 255.0 / width, sy = 255.0 / height;
	double scale[2] = {sx, sy}, offset[2] = {0, 0};
	if (vips_linear(xyz, &scaled, scale, offset, 2, NULL) != 0)
		goto done;
	if (vips_gaussnoise(&noise, (int)width, (int)height, "sigma", 12.0,
		"mean", 0.0, "seed", seed, NULL) != 0)
		goto done;
	/* bands: x ramp, y ramp, (x+y)/2 ramp, plus noise everywhere. */
	VipsImage *bands[3] = {NULL, NULL, NULL};
	VipsImage *mean = NULL, *joined = NULL;
	if (vips_extract_band(scaled, &bands[0], 0, NULL) != 0 ||
		vips_extract_band(scaled, &bands[1], 1, NULL) != 0 ||
		vips_bandmean(scaled, &mean, NULL) != 0) {
		VIPS_UNREF(bands[0]);
		VIPS_UNREF(bands[1]);
		goto done;
	}
	bands[2] = mean;
	int rc = vips_bandjoin(bands, &joined, 3, NULL);
	for (int i = 0; i < 3; i++)
		g_object_unref(bands[i]);
	if (rc != 0)
		goto done;
	rc = vips_add(joined, noise, &sum, NULL);
	g_object_unref(joined);
	if (rc != 0)
		goto done;
	VipsImage *cast = NULL;
	if (vips_cast_uchar(sum, &cast, NULL) != 0)
		goto done;
	if (alpha) {
		VipsImage *with_alpha = NULL;
		rc = vips_bandjoin_const1(cast, &with_alpha, 128.0, NULL);
		g_object_unref(cast);
		if (rc != 0)
			goto done;
		cast = with_alpha;
	}
	cast->Type = VIPS_INTERPRETATION_sRGB;
	out = cast;
done:
	VIPS_UNREF(sum);
	VIPS_UNREF(noise);
	VIPS_UNREF(scaled);
	VIPS_UNREF(xyz);
	vips_error_clear();
	return out;
}

int
media_vips_generate(const media_generate_spec *spec, unsigned char **bytes,
	size_t *length)
{
	MEDIA_VIPS_ASSERT(spec != NULL);
	MEDIA_VIPS_ASSERT(bytes != NULL);
	MEDIA_VIPS_ASSERT(length != NULL);
	*bytes = NULL;
	*length = 0;
	if (spec->width == 0 || spec->height == 0)
		return API_EINVALID;
	if (media_vips_init() != 0)
		return API_EINTERNAL;
	VipsImage *image = media_vips_pattern(spec->width, spec->height,
		spec->alpha, spec->seed);
	if (image == NULL)
		return API_EINTERNAL;
	if (spec->orientation != 0)
		vips_image_set_int(image, VIPS_META_ORIENTATION,
			(int)spec->orientation);
	void *out = NULL;
	size_t out_length = 0;
	int quality = spec->quality > 0 ? spec->quality : 90;
	int rc;
	switch (spec->format) {
	case MEDIA_GENERATE_JPEG:
		rc = vips_jpegsave_buffer(image, &out, &out_length, "Q",
			quality, NULL);
		break;
	case MEDIA_GENERATE_PNG:
		rc = vips_pngsave_buffer(image, &out, &out_length,
			"compression", 1, NULL);
		break;
	case MEDIA_GENERATE_WEBP:
		rc = vips_webpsave_buffer(image, &out, &out_length, "Q",
			quality, NULL);
		break;
	case MEDIA_GENERATE_HEIF:
		rc = vips_heifsave_buffer(image, &out, &out_length, "Q",
			quality, NULL);
		break;
	case MEDIA_GENERATE_AVIF:
		rc = vips_heifsave_buffer(image, &out, &out_length, "Q",
			quality, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1,
			NULL);
		break;
	case MEDIA_GENERATE_GIF:
		rc = vips_gifsave_buffer(image, &out, &out_length, NULL);
		break;
	case MEDIA_GENERATE_TIFF:
		rc = vips_tiffsave_buffer(image, &out, &out_length, NULL);
		break;
	default:
		rc = -1;
		break;
	}
	g_object_unref(image);
	vips_error_clear();
	if (rc != 0)
		return API_EINTERNAL;
	/* Hand back malloc memory so callers free() it like any buffer. */
	*bytes = malloc(out_length);
	if (*bytes == NULL) {
		g_free(out);
		return API_EINTERNAL;
	}
	memcpy(*bytes, out, out_length);
	*length = out_length;
	g_free(out);
	return 0;
}

int
media_vips_dimensions(const void *bytes, size_t length, uint32_t *width,
	uint32_t *height)
{
	MEDIA_VIPS_ASSERT(width != NULL);
	MEDIA_VIPS_ASSERT(height != NULL);
	if (media_vips_init() != 0)
		return API_EINTERNAL;
	VipsImage *image = vips_image_new_from_buffer(bytes, length, "", NULL);
	if (image == NULL) {
		vips_error_clear();
		return API_EINVALID;
	}
	*width = (uint32_t)vips_image_get_width(image);
	*height = (uint32_t)vips_image_get_height(image);
	g_object_unref(image);
	return 0;
}
