/*
 * api_media.c — the media entry points of api.h (api_media_*).
 *
 * Role: validates an upload on the caller's thread (size, content sniff,
 * header and pixel limit: cheap, no pixel decoded), stores the original
 * under its content hash, and asks the media actor to create or attach
 * the item; answers reads from the media actor and the media ledger; maps
 * a (hash, variant) to the file to serve.
 *
 * Invariants:
 *   - nothing reaches the disk or an actor before the size, format and
 *     pixel checks passed;
 *   - an original is durable (fsync of file and directory) before the
 *     media actor that will process it is told about it, so a crash
 *     after the reply can always re-process from it;
 *   - api_media_file builds paths only from a 64-hex-character hash and
 *     a variant name from a fixed list: no client text reaches a path.
 *
 * What it deliberately does not do: decode pixels (the pool does, off
 * this thread), sign upload URLs (the gateway).
 *
 * Cost on the caller's thread for a 30 MB upload: one SHA-256 pass and
 * one write + fsync of the bytes (see the media benchmark's figures);
 * a header read by libvips for the pixel check.
 */
#include "actors/media.h"

#include <assert.h>
#include <string.h>
#include <sys/stat.h>

#include "actors/internal.h"


const char *const api_media_variants[API_MEDIA_VARIANTS_COUNT] = {
	"thumb", "small", "medium", "large",
};

int
api_media_file(const api *a, const char *hash, const char *variant,
	char *path, size_t path_size, const char **content_type)
{
	assert(path != NULL);
	assert(content_type != NULL);
	*content_type = NULL;
	if (path_size > 0)
		path[0] = '\0';
	/* Checked before anything else, so a malformed name never turns
	 * into a path, whatever state the service is in. */
	if (!media_hash_valid(hash))
		return API_EINVALID;
	int index = media_variant_index(variant);
	if (index < 0)
		return API_EINVALID;
	media_service *svc = media_service_of(a);
	if (svc == NULL)
		return API_ENOTFOUND;
	if (media_path_variant(media_service_data_dir(svc), hash, index, path,
		path_size) != 0)
		return API_EINVALID;
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		path[0] = '\0';
		return API_ENOTFOUND;
	}
	/* Every variant is a JPEG (media.h, "Choices"). */
	*content_type = "image/jpeg";
	return API_OK;
}

/* Checks an upload and stores its original durably under its hash (not
 * when the variants are stored already: dedupe). hash out. 0 or an
 * API_E code with *detail set. */
static int
media_ingest(const media_service *svc, const void *bytes, size_t length,
	char *hash, const char **detail)
{
	*detail = NULL;
	if (bytes == NULL && length > 0) {
		*detail = "no bytes";
		return API_EINVALID;
	}
	media_probe_result probe;
	int rc = media_probe(bytes, length, &probe, detail);
	if (rc != 0)
		return rc;
	media_hash_hex(bytes, length, hash);
	if (media_store_has_variants(media_service_data_dir(svc), hash))
		return 0;
	rc = media_store_original(media_service_data_dir(svc), hash, bytes,
		length);
	if (rc != 0)
		*detail = "could not store the upload";
	return rc;
}

/* The service of c's api, or NULL (then the call fails with 503). */
static media_service *
media_client_service(api_client *c)
{
	return media_service_of(actors__client_api(c));
}

/* Asks a new media item of ctx->user_id into being: with the hash of
 * stored bytes, or "" for a reservation. */
static int
media_create(api_client *c, const api_ctx *ctx, const char *hash,
	api_callback cb, void *arg)
{
	api *a = actors__client_api(c);
	uint64_t media_id = actors__idgen_next(&a->ids,
		actors__id_partition(ctx->user_id), rt_wall_ms(a->rt));
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx->user_id);
	wire_str(&w, hash);
	int rc = calls__forward(c, rt_addr_make(MEDIA_KIND, media_id),
		MEDIA_MSG_CREATE, &w, cb, arg);
	wire_free(&w);
	return rc;
}

int
api_media_upload(api_client *c, const api_ctx *ctx, const void *bytes,
	size_t length, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	media_service *svc = media_client_service(c);
	if (svc == NULL)
		return calls__fail(c, cb, arg, API_EUNAVAILABLE,
			"media service not running");
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	const char *detail = NULL;
	int rc = media_ingest(svc, bytes, length, hash, &detail);
	if (rc != 0)
		return calls__fail(c, cb, arg, rc, detail);
	return media_create(c, ctx, hash, cb, arg);
}

int
api_media_reserve(api_client *c, const api_ctx *ctx, api_callback cb,
	void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (media_client_service(c) == NULL)
		return calls__fail(c, cb, arg, API_EUNAVAILABLE,
			"media service not running");
	return media_create(c, ctx, "", cb, arg);
}

int
api_media_upload_reserved(api_client *c, const api_ctx *ctx,
	uint64_t media_id, const void *bytes, size_t length, api_callback cb,
	void *arg)
{
	if (ctx == NULL || ctx->user_id == 0)
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	if (media_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such media");
	media_service *svc = media_client_service(c);
	if (svc == NULL)
		return calls__fail(c, cb, arg, API_EUNAVAILABLE,
			"media service not running");
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	const char *detail = NULL;
	int rc = media_ingest(svc, bytes, length, hash, &detail);
	if (rc != 0)
		return calls__fail(c, cb, arg, rc, detail);
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx->user_id);
	wire_str(&w, hash);
	rc = calls__forward(c, rt_addr_make(MEDIA_KIND, media_id),
		MEDIA_MSG_ATTACH, &w, cb, arg);
	wire_free(&w);
	return rc;
}

int
api_media_get(api_client *c, const api_ctx *ctx, uint64_t media_id,
	api_callback cb, void *arg)
{
	if (media_id == 0)
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such media");
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx != NULL ? ctx->user_id : 0);
	int rc = calls__forward(c, rt_addr_make(MEDIA_KIND, media_id),
		MEDIA_MSG_GET, &w, cb, arg);
	wire_free(&w);
	return rc;
}

/* A decimal media id cursor (what the ledger's next_cursor holds). */
static bool
media_cursor_parse(const char *text, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = strlen(text);
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		uint64_t digit = (uint64_t)(text[i] - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	*out = v;
	return v != 0;
}

int
api_media_failed_list(api_client *c, const api_ctx *ctx,
	const api_page *page, api_callback cb, void *arg)
{
	/* Operators only: the gateway decides who that is (the domain has
	 * no operator role); the body carries no user's private data. */
	(void)ctx;
	uint32_t limit = API_PAGE_LIMIT_DEFAULT;
	uint64_t before = 0;
	if (page != NULL && page->limit != 0)
		limit = page->limit < API_PAGE_LIMIT_MAX ? page->limit :
			API_PAGE_LIMIT_MAX;
	if (page != NULL && page->cursor != NULL &&
		!media_cursor_parse(page->cursor, &before))
		return calls__fail(c, cb, arg, API_EINVALID, "bad cursor");
	wire_writer w;
	wire_init(&w);
	wire_u32(&w, limit);
	wire_u64(&w, before);
	int rc = calls__forward(c,
		rt_addr_make(MEDIA_LEDGER_KIND, MEDIA_LEDGER_ID),
		MEDIA_MSG_LEDGER_FAILED_LIST, &w, cb, arg);
	wire_free(&w);
	return rc;
}
