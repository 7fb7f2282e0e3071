/*
 * api_media.c — the media entry points of api.h (api_media_*).
 *
 * Role: hands an upload to the ingest worker (media_ingest.c: size,
 * content sniff, header and pixel limit, content hash, durable store of
 * the original, all off the caller's thread), then asks the media actor
 * to create or attach the item; answers reads from the media actor and
 * the media ledger; maps a (hash, variant) to the file to serve.
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
 * this thread), sign upload URLs (the gateway), hash or write an upload
 * on the caller's thread (a 30 MB upload's SHA-256 pass and write +
 * fsync, see the media benchmark's figures, would stall the gateway's
 * event loop for their duration).
 */
#include "actors/media.h"

#include <assert.h>
#include <stdlib.h>
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

/* The service of c's api, or NULL (then the call fails with 503). */
static media_service *
media_client_service(api_client *c)
{
	return media_service_of(actors__client_api(c));
}

/* An upload between the caller and the media actor: checked and stored
 * by the ingest worker, then created (or attached to its reservation). */
typedef struct upload_op {
	media_ingest_job job;     /* first: the token's op is the job */
	api_callback cb;
	void *arg;
	uint64_t user_id;
	uint64_t media_id;        /* the reservation; 0 for a new item */
} upload_op;

typedef struct upload_answer {
	api_callback cb;
	void *arg;
} upload_answer;

static void
upload_answered(api_client *c, void *opaque, const rt_message *m)
{
	upload_answer *op = opaque;
	actors__complete_reply(c, op->cb, op->arg, m);
	free(op);
}

/* The worker is done with op->job (on this client's thread): ask the
 * media actor, or answer the check's error. */
static void
upload_ingested(api_client *c, void *opaque, const rt_message *m)
{
	upload_op *op = opaque;
	(void)m;
	ACTORS_ASSERT(op->job.bytes == NULL);
	if (op->job.code != 0) {
		const char *detail = op->job.detail ? op->job.detail : "";
		actors__complete(c, op->cb, op->arg, op->job.code, detail,
			strlen(detail), NULL, 0);
		free(op);
		return;
	}
	ACTORS_ASSERT(media_hash_valid(op->job.hash));
	uint32_t type = MEDIA_MSG_ATTACH;
	uint64_t media_id = op->media_id;
	if (media_id == 0) {
		api *a = actors__client_api(c);
		type = MEDIA_MSG_CREATE;
		media_id = actors__idgen_next(&a->ids,
			actors__id_partition(op->user_id), rt_wall_ms(a->rt));
	}
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, op->user_id);
	wire_str(&w, op->job.hash);
	upload_answer *answer = malloc(sizeof *answer);
	int rc = API_EUNAVAILABLE;
	if (answer != NULL && !w.failed) {
		answer->cb = op->cb;
		answer->arg = op->arg;
		rc = actors__ask(c, rt_addr_make(MEDIA_KIND, media_id), type,
			w.bytes, w.length, upload_answered, answer);
	}
	wire_free(&w);
	if (rc != 0) {
		free(answer);
		actors__complete(c, op->cb, op->arg, API_EUNAVAILABLE,
			"unavailable", 11, NULL, 0);
	}
	free(op);
}

/* Hands bytes (taken) to the ingest worker for ctx's user; media_id 0
 * creates an item, else fills that reservation. */
static int
upload_submit(api_client *c, const api_ctx *ctx, uint64_t media_id,
	void *bytes, size_t length, api_callback cb, void *arg)
{
	if (ctx == NULL || ctx->user_id == 0) {
		free(bytes);
		return calls__fail(c, cb, arg, API_EUNAUTHORIZED, "sign in");
	}
	media_service *svc = media_client_service(c);
	if (svc == NULL) {
		free(bytes);
		return calls__fail(c, cb, arg, API_EUNAVAILABLE,
			"media service not running");
	}
	if (bytes == NULL && length > 0)
		return calls__fail(c, cb, arg, API_EINVALID, "no bytes");
	upload_op *op = calloc(1, sizeof *op);
	if (op == NULL) {
		free(bytes);
		return API_EUNAVAILABLE;
	}
	op->cb = cb;
	op->arg = arg;
	op->user_id = ctx->user_id;
	op->media_id = media_id;
	op->job.bytes = bytes;
	op->job.length = length;
	op->job.inbox = actors__client_addr(c);
	op->job.token = actors__token(c, upload_ingested, op);
	if (op->job.token == 0) {
		free(bytes);
		free(op);
		return API_EUNAVAILABLE;
	}
	uint64_t token = op->job.token;
	/* From here the worker may finish the job at any time: op is only
	 * touched again by upload_ingested. */
	if (media_ingest_submit(media_service_ingest(svc), &op->job) != 0) {
		actors__token_cancel(c, token);
		free(bytes);
		free(op);
		return calls__fail(c, cb, arg, API_EUNAVAILABLE,
			"too many uploads waiting to be stored");
	}
	actors__call_begin(c);
	return API_OK;
}

int
api_media_upload(api_client *c, const api_ctx *ctx, void *bytes,
	size_t length, api_callback cb, void *arg)
{
	return upload_submit(c, ctx, 0, bytes, length, cb, arg);
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
	api *a = actors__client_api(c);
	uint64_t media_id = actors__idgen_next(&a->ids,
		actors__id_partition(ctx->user_id), rt_wall_ms(a->rt));
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ctx->user_id);
	wire_str(&w, "");
	int rc = calls__forward(c, rt_addr_make(MEDIA_KIND, media_id),
		MEDIA_MSG_CREATE, &w, cb, arg);
	wire_free(&w);
	return rc;
}

int
api_media_upload_reserved(api_client *c, const api_ctx *ctx,
	uint64_t media_id, void *bytes, size_t length, api_callback cb,
	void *arg)
{
	if (media_id == 0) {
		free(bytes);
		return calls__fail(c, cb, arg, API_ENOTFOUND, "no such media");
	}
	return upload_submit(c, ctx, media_id, bytes, length, cb, arg);
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
