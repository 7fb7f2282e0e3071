/*
 * actors/idempotency.c — a user's Idempotency-Key table: a retried write
 * with the same key and body gets the first response; the same key with
 * another body is refused (422); a retry while the first still runs is a
 * conflict (409).
 *
 * Invariants:
 *   - at most IDEM_KEYS_MAX entries, oldest first, keys distinct;
 *   - a running entry holds no response; a done one holds its code and
 *     its response (NULL for a body-less answer);
 *   - an entry at or past expires_at_ms is never answered from.
 *
 * What it deliberately does not do: compute digests (the gateway hashes
 * the body into api_ctx.body_digest) or decide which results are worth
 * keeping: the caller finishes with the response it sent, or aborts a
 * request that failed before any effect (503, a lost ask) so a retry
 * runs it again.
 */
#include "actors/engage.h"

#include <stdlib.h>

void
idem_init(idem_table *t)
{
	ACTORS_ASSERT(t != NULL);
	memset(t, 0, sizeof *t);
}

void
idem_free(idem_table *t)
{
	ACTORS_ASSERT(t != NULL);
	for (uint32_t i = 0; i < t->count; i++)
		free(t->entries[i].response);
	free(t->entries);
	idem_init(t);
}

static void
entry_remove(idem_table *t, uint32_t i)
{
	ACTORS_ASSERT(i < t->count);
	free(t->entries[i].response);
	memmove(&t->entries[i], &t->entries[i + 1],
		(t->count - i - 1u) * sizeof t->entries[0]);
	t->count--;
}

static uint32_t
entry_find(const idem_table *t, const char *key)
{
	for (uint32_t i = 0; i < t->count; i++) {
		if (strcmp(t->entries[i].key, key) == 0)
			return i;
	}
	return UINT32_MAX;
}

/* The entry running for key with digest, or UINT32_MAX. */
static uint32_t
running_find(const idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES])
{
	uint32_t i = entry_find(t, key);
	if (i == UINT32_MAX || t->entries[i].status != IDEM_RUNNING)
		return UINT32_MAX;
	if (memcmp(t->entries[i].digest, digest, IDEM_DIGEST_BYTES) != 0)
		return UINT32_MAX;
	return i;
}

static bool
key_valid(const char *key)
{
	if (key == NULL)
		return false;
	size_t n = strnlen(key, API_IDEMPOTENCY_KEY_BYTES_MAX + 1u);
	return n > 0 && n <= API_IDEMPOTENCY_KEY_BYTES_MAX;
}

uint32_t
idem_collect(idem_table *t, uint64_t now_ms)
{
	ACTORS_ASSERT(t != NULL);
	uint32_t removed = 0;
	for (uint32_t i = 0; i < t->count;) {
		if (t->entries[i].expires_at_ms <= now_ms) {
			entry_remove(t, i);
			removed++;
		} else {
			i++;
		}
	}
	return removed;
}

/* Room for one more entry: grow up to the cap, then forget the oldest. */
static int
make_room(idem_table *t)
{
	if (t->count < t->capacity)
		return 0;
	if (t->capacity < IDEM_KEYS_MAX) {
		uint32_t capacity = t->capacity == 0 ? 8u : t->capacity * 2u;
		if (capacity > IDEM_KEYS_MAX)
			capacity = IDEM_KEYS_MAX;
		idem_entry *entries =
			realloc(t->entries, capacity * sizeof *entries);
		if (entries == NULL)
			return API_EUNAVAILABLE;
		t->entries = entries;
		t->capacity = capacity;
		return 0;
	}
	entry_remove(t, 0);
	return 0;
}

int
idem_begin(idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES], uint64_t now_ms,
	uint64_t ttl_ms, idem_outcome *out)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(out != NULL);
	memset(out, 0, sizeof *out);
	if (!key_valid(key) || digest == NULL)
		return API_EINVALID;
	if (ttl_ms == 0)
		ttl_ms = IDEM_TTL_MS_DEFAULT;
	idem_collect(t, now_ms);
	uint32_t i = entry_find(t, key);
	if (i != UINT32_MAX) {
		idem_entry *e = &t->entries[i];
		if (memcmp(e->digest, digest, IDEM_DIGEST_BYTES) != 0)
			return API_EIDEMPOTENCY;
		if (e->status == IDEM_DONE) {
			out->replay = true;
			out->code = e->code;
			out->response = e->response;
			out->response_length = e->response_length;
			return 0;
		}
		if (now_ms - e->started_at_ms < IDEM_RUNNING_TIMEOUT_MS)
			return API_ECONFLICT;
		/* The first run lost its continuation: this retry takes over. */
		e->started_at_ms = now_ms;
		e->expires_at_ms = now_ms + ttl_ms;
		return 0;
	}
	int rc = make_room(t);
	if (rc != 0)
		return rc;
	idem_entry *e = &t->entries[t->count++];
	memset(e, 0, sizeof *e);
	strcpy(e->key, key);
	memcpy(e->digest, digest, IDEM_DIGEST_BYTES);
	e->status = IDEM_RUNNING;
	e->started_at_ms = now_ms;
	e->expires_at_ms = now_ms + ttl_ms;
	ACTORS_ASSERT(t->count <= IDEM_KEYS_MAX);
	return 0;
}

int
idem_finish(idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES], int code,
	const void *response, uint32_t length)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(response != NULL || length == 0);
	if (!key_valid(key) || digest == NULL)
		return API_EINVALID;
	uint32_t i = running_find(t, key, digest);
	if (i == UINT32_MAX)
		return API_ENOTFOUND;
	if (length > IDEM_RESPONSE_BYTES_MAX) {
		entry_remove(t, i);
		return API_ETOOLARGE;
	}
	if (length > 0 && !engage_msgpack_check(response, length))
		return API_EINVALID;
	unsigned char *copy = NULL;
	if (length > 0) {
		copy = malloc(length);
		if (copy == NULL)
			return API_EUNAVAILABLE;
		memcpy(copy, response, length);
	}
	idem_entry *e = &t->entries[i];
	ACTORS_ASSERT(e->response == NULL);
	e->status = IDEM_DONE;
	e->code = code;
	e->response = copy;
	e->response_length = length;
	return 0;
}

int
idem_abort(idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES])
{
	ACTORS_ASSERT(t != NULL);
	if (!key_valid(key) || digest == NULL)
		return API_EINVALID;
	uint32_t i = running_find(t, key, digest);
	if (i == UINT32_MAX)
		return API_ENOTFOUND;
	entry_remove(t, i);
	return 0;
}

/* ---- snapshot ----------------------------------------------------------- */

int
idem_encode(const idem_table *t, msgpack_packer *pk)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint32(pk, IDEM_SNAPSHOT_VERSION);
	rc |= msgpack_pack_array(pk, t->count);
	for (uint32_t i = 0; i < t->count; i++) {
		const idem_entry *e = &t->entries[i];
		rc |= msgpack_pack_array(pk, 7);
		actors__pack_str(pk, e->key);
		rc |= msgpack_pack_bin(pk, IDEM_DIGEST_BYTES);
		rc |= msgpack_pack_bin_body(pk, e->digest, IDEM_DIGEST_BYTES);
		rc |= msgpack_pack_uint8(pk, e->status);
		rc |= msgpack_pack_int32(pk, e->code);
		rc |= msgpack_pack_uint64(pk, e->started_at_ms);
		rc |= msgpack_pack_uint64(pk, e->expires_at_ms);
		if (e->response != NULL) {
			rc |= msgpack_pack_bin(pk, e->response_length);
			rc |= msgpack_pack_bin_body(pk, e->response,
				e->response_length);
		} else {
			rc |= msgpack_pack_nil(pk);
		}
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

/* Fills e (response not yet copied) from one encoded entry. */
static bool
entry_decode(const msgpack_object *obj, idem_entry *e)
{
	const msgpack_object *f = engage_get_tuple(obj, 7);
	const void *key, *digest;
	size_t key_length, digest_length;
	uint64_t status;
	int64_t code;
	if (f == NULL || f[0].type != MSGPACK_OBJECT_STR ||
		!engage_get_bytes(&f[0], API_IDEMPOTENCY_KEY_BYTES_MAX, &key,
			&key_length) ||
		f[1].type != MSGPACK_OBJECT_BIN ||
		!engage_get_bytes(&f[1], IDEM_DIGEST_BYTES, &digest,
			&digest_length) ||
		!engage_get_u64(&f[2], &status) ||
		!engage_get_i64(&f[3], &code) ||
		!engage_get_u64(&f[4], &e->started_at_ms) ||
		!engage_get_u64(&f[5], &e->expires_at_ms))
		return false;
	if (key_length == 0 || memchr(key, '\0', key_length) != NULL)
		return false;
	if (digest_length != IDEM_DIGEST_BYTES)
		return false;
	if (status != IDEM_RUNNING && status != IDEM_DONE)
		return false;
	if (code < INT32_MIN || code > INT32_MAX)
		return false;
	if (e->expires_at_ms <= e->started_at_ms)
		return false;
	memcpy(e->key, key, key_length);
	e->key[key_length] = '\0';
	memcpy(e->digest, digest, IDEM_DIGEST_BYTES);
	e->status = (uint8_t)status;
	e->code = (int32_t)code;
	return true;
}

static int
response_decode(const msgpack_object *obj, idem_entry *e)
{
	if (obj->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (e->status != IDEM_DONE || obj->type != MSGPACK_OBJECT_BIN)
		return API_EINVALID;
	uint32_t length = obj->via.bin.size;
	if (length == 0 || length > IDEM_RESPONSE_BYTES_MAX ||
		!engage_msgpack_check(obj->via.bin.ptr, length))
		return API_EINVALID;
	e->response = malloc(length);
	if (e->response == NULL)
		return API_EUNAVAILABLE;
	memcpy(e->response, obj->via.bin.ptr, length);
	e->response_length = length;
	return 0;
}

int
idem_decode(idem_table *t, const msgpack_object *obj)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(obj != NULL);
	idem_free(t);
	const msgpack_object *f = engage_get_tuple(obj, 2);
	uint64_t version;
	const msgpack_object *items;
	uint32_t n;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != IDEM_SNAPSHOT_VERSION ||
		!engage_get_array(&f[1], IDEM_KEYS_MAX, &items, &n))
		return API_EINVALID;
	int rc = API_EUNAVAILABLE;
	if (n > 0) {
		t->entries = calloc(n, sizeof *t->entries);
		if (t->entries == NULL)
			goto fail;
		t->capacity = n;
	}
	for (uint32_t i = 0; i < n; i++) {
		idem_entry *e = &t->entries[i];
		rc = API_EINVALID;
		if (!entry_decode(&items[i], e) ||
			entry_find(t, e->key) != UINT32_MAX)
			goto fail;
		rc = response_decode(&items[i].via.array.ptr[6], e);
		if (rc != 0)
			goto fail;
		t->count++;
	}
	return 0;
fail:
	idem_free(t);
	return rc;
}
