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
