/*
 * actors/search_terms.c — what the callers of the search index need:
 * term keys and their shards and addresses, query normalisation, caption
 * tokenising, and the payload codec of the search actor's messages.
 *
 * A term key is a type byte and lowercase text: 'u' + a 1..3 byte
 * username prefix, 't' + a hashtag, 'w' + a caption word. Its shard is
 * actors__hash64(key) % SEARCH_SHARDS, and a shard's actor id carries the
 * shard's partition in the partition bits of the id layout, so the
 * runtime routes it like any other actor.
 *
 * Invariants: every function here is pure (same input, same answer on
 * every node); keys never exceed SEARCH_KEY_BYTES with their NUL.
 *
 * What it deliberately does not do: hold any index (search.c) or
 * understand Unicode case (ASCII letters are lowercased; other bytes are
 * kept as they are, which keeps non-Latin words searchable verbatim).
 */
#include "actors/engage.h"

#include <stdlib.h>

static_assert(SEARCH_PARTITIONS % SEARCH_SHARDS == 0,
	"shards spread evenly over the partitions");

/* Spacing of shard partitions: shard s lives in partition s * stride. */
#define SHARD_PARTITION_STRIDE (SEARCH_PARTITIONS / SEARCH_SHARDS)
/* The sequence part of a shard actor's id (never 0, so no shard's id is
 * the "no id" 0). */
#define SHARD_ID_SEQUENCE 1u

uint32_t
search_shard_of(const char *key, size_t length)
{
	ACTORS_ASSERT(key != NULL);
	ACTORS_ASSERT(length > 0);
	return (uint32_t)(actors__hash64(key, length) % SEARCH_SHARDS);
}

rt_addr
search_shard_addr(uint32_t shard)
{
	ACTORS_ASSERT(shard < SEARCH_SHARDS);
	uint64_t partition = (uint64_t)shard * SHARD_PARTITION_STRIDE;
	return rt_addr_make(SEARCH_KIND,
		(partition << SEARCH_SEQUENCE_BITS) | SHARD_ID_SEQUENCE);
}

int
search_addr_shard(rt_addr addr, uint32_t *shard)
{
	ACTORS_ASSERT(shard != NULL);
	uint64_t partition = addr.id >> SEARCH_SEQUENCE_BITS;
	if (addr.kind != SEARCH_KIND ||
		(addr.id & ((1u << SEARCH_SEQUENCE_BITS) - 1u)) !=
			SHARD_ID_SEQUENCE ||
		partition >= SEARCH_PARTITIONS ||
		partition % SHARD_PARTITION_STRIDE != 0)
		return API_EINVALID;
	*shard = (uint32_t)(partition / SHARD_PARTITION_STRIDE);
	return 0;
}

/* ---- characters --------------------------------------------------------- */

static bool
word_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

static bool
username_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
		c == '_';
}

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ---- queries ------------------------------------------------------------ */

int
search_normalize_query(api_search_type type, const char *query, char *out,
	size_t size)
{
	ACTORS_ASSERT(out != NULL);
	ACTORS_ASSERT(size > API_SEARCH_QUERY_BYTES_MAX);
	if (query == NULL)
		return API_EINVALID;
	size_t n = strlen(query);
	if (n == 0 || n > API_SEARCH_QUERY_BYTES_MAX)
		return API_EINVALID;
	const char *p = query;
	while (*p == ' ')
		p++;
	char sign = type == API_SEARCH_USERS ? '@'
		: type == API_SEARCH_TAGS    ? '#'
					     : '\0';
	if (sign != '\0' && *p == sign)
		p++;
	size_t length = 0;
	if (type == API_SEARCH_USERS) {
		/* Autocomplete: the prefix up to the first byte no username
		 * has ("john smith" looks up "john"). */
		while (length < API_USERNAME_BYTES_MAX &&
			username_byte((unsigned char)lower(p[length])))
			length++;
	} else if (type == API_SEARCH_TAGS || type == API_SEARCH_POSTS) {
		while (word_byte((unsigned char)p[length]))
			length++;
		if (length > SEARCH_TERM_BYTES_MAX)
			return API_EINVALID;
	} else {
		return API_EINVALID;
	}
	if (length == 0)
		return API_EINVALID;
	for (size_t i = 0; i < length; i++)
		out[i] = lower(p[i]);
	out[length] = '\0';
	return 0;
}

/* Writes the key of a normalised query into key; returns its length. */
static size_t
query_key(api_search_type type, const char *normalized,
	char key[SEARCH_KEY_BYTES])
{
	size_t n = strlen(normalized);
	if (type == API_SEARCH_USERS) {
		key[0] = 'u';
		if (n > SEARCH_USER_PREFIX_BYTES)
			n = SEARCH_USER_PREFIX_BYTES;
	} else {
		key[0] = type == API_SEARCH_TAGS ? 't' : 'w';
	}
	ACTORS_ASSERT(n <= SEARCH_TERM_BYTES_MAX);
	memcpy(key + 1, normalized, n);
	key[n + 1] = '\0';
	return n + 1;
}

int
search_query_shard(api_search_type type, const char *query, uint32_t *shard)
{
	ACTORS_ASSERT(shard != NULL);
	char normalized[API_SEARCH_QUERY_BYTES_MAX + 1];
	int rc = search_normalize_query(type, query, normalized,
		sizeof normalized);
	if (rc != 0)
		return rc;
	char key[SEARCH_KEY_BYTES];
	size_t length = query_key(type, normalized, key);
	*shard = search_shard_of(key, length);
	return 0;
}

uint32_t
search_user_shards(const char *username, uint32_t shards[3])
{
	ACTORS_ASSERT(username != NULL);
	ACTORS_ASSERT(shards != NULL);
	size_t n = strlen(username);
	ACTORS_ASSERT(n > 0);
	char key[1 + SEARCH_USER_PREFIX_BYTES] = {'u'};
	uint32_t count = 0;
	for (size_t length = 1; length <= SEARCH_USER_PREFIX_BYTES &&
		length <= n; length++) {
		key[length] = username[length - 1];
		uint32_t shard = search_shard_of(key, length + 1);
		bool seen = false;
		for (uint32_t i = 0; i < count; i++)
			seen |= shards[i] == shard;
		if (!seen)
			shards[count++] = shard;
	}
	return count;
}

/* ---- a post's terms ----------------------------------------------------- */

void
search_terms_init(search_terms *t)
{
	ACTORS_ASSERT(t != NULL);
	t->count = 0;
}

/* Tags and words counted separately against their caps. */
static uint32_t
terms_of_type(const search_terms *t, char type)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < t->count; i++)
		n += t->keys[i][0] == type;
	return n;
}

bool
search_terms_add(search_terms *t, char type, const char *text, size_t length)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(type == 't' || type == 'w');
	if (length == 0 || length > SEARCH_TERM_BYTES_MAX)
		return false;
	uint32_t cap = type == 't' ? API_CAPTION_HASHTAGS_MAX
				   : SEARCH_CAPTION_WORDS_MAX;
	if (terms_of_type(t, type) >= cap)
		return false;
	char key[SEARCH_KEY_BYTES];
	key[0] = type;
	for (size_t i = 0; i < length; i++) {
		if (text[i] == '\0')
			return false;
		key[i + 1] = lower(text[i]);
	}
	key[length + 1] = '\0';
	for (uint32_t i = 0; i < t->count; i++) {
		if (strcmp(t->keys[i], key) == 0)
			return false;
	}
	ACTORS_ASSERT(t->count < SEARCH_POST_TERMS_MAX);
	memcpy(t->keys[t->count++], key, length + 2u);
	return true;
}

void
search_terms_from_caption(search_terms *t, const char *caption)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(caption != NULL);
	const unsigned char *p = (const unsigned char *)caption;
	while (*p != '\0') {
		if (*p == '#' || *p == '@') {
			unsigned char sign = *p++;
			size_t n = 0;
			while (word_byte(p[n]) || (sign == '@' && p[n] == '.'))
				n++;
			if (sign == '#')
				search_terms_add(t, 't', (const char *)p, n);
			p += n;
			continue;
		}
		if (!word_byte(*p)) {
			p++;
			continue;
		}
		size_t n = 0;
		while (word_byte(p[n]))
			n++;
		if (n >= SEARCH_WORD_BYTES_MIN)
			search_terms_add(t, 'w', (const char *)p, n);
		p += n;
	}
}

static int
u32_compare(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

uint32_t
search_terms_shards(const search_terms *t,
	uint32_t shards[SEARCH_POST_TERMS_MAX])
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(shards != NULL);
	for (uint32_t i = 0; i < t->count; i++)
		shards[i] = search_shard_of(t->keys[i], strlen(t->keys[i]));
	qsort(shards, t->count, sizeof *shards, u32_compare);
	uint32_t n = 0;
	for (uint32_t i = 0; i < t->count; i++) {
		if (n == 0 || shards[n - 1] != shards[i])
			shards[n++] = shards[i];
	}
	return n;
}

/* ---- message payloads --------------------------------------------------- */

int
search_post_message_encode(uint64_t post_id, const search_terms *t,
	uint32_t shard, msgpack_packer *pk)
{
	ACTORS_ASSERT(t != NULL);
	ACTORS_ASSERT(pk != NULL);
	uint32_t n = 0;
	for (uint32_t i = 0; i < t->count; i++)
		n += search_shard_of(t->keys[i], strlen(t->keys[i])) == shard;
	int rc = msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint64(pk, post_id);
	rc |= msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < t->count; i++) {
		if (search_shard_of(t->keys[i], strlen(t->keys[i])) == shard)
			actors__pack_str(pk, t->keys[i]);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
search_user_message_encode(uint64_t user_id, const char *username,
	uint64_t followers_count, uint64_t pic_media_id, msgpack_packer *pk)
{
	ACTORS_ASSERT(username != NULL);
	ACTORS_ASSERT(pk != NULL);
	/* A picture id the index cannot hold is left unknown (hydrated). */
	bool pic = pic_media_id != SEARCH_PIC_UNKNOWN;
	int rc = msgpack_pack_array(pk, pic ? 4 : 3);
	rc |= msgpack_pack_uint64(pk, user_id);
	actors__pack_str(pk, username);
	rc |= msgpack_pack_uint64(pk, followers_count);
	if (pic)
		rc |= msgpack_pack_uint64(pk, pic_media_id);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
search_query_message_encode(api_search_type type, const char *query,
	uint32_t limit, const char *cursor, msgpack_packer *pk)
{
	ACTORS_ASSERT(query != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 4);
	rc |= msgpack_pack_uint8(pk, (uint8_t)type);
	actors__pack_str(pk, query);
	rc |= msgpack_pack_uint32(pk, limit);
	actors__pack_str(pk, cursor);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

static int
post_message_decode(const msgpack_object *obj, search_message *out)
{
	const msgpack_object *f = engage_get_tuple(obj, 2);
	if (f == NULL || !engage_get_u64(&f[0], &out->id) ||
		!engage_get_array(&f[1], SEARCH_POST_TERMS_MAX, &out->keys,
			&out->keys_count))
		return API_EINVALID;
	for (uint32_t i = 0; i < out->keys_count; i++) {
		if (out->keys[i].type != MSGPACK_OBJECT_STR ||
			out->keys[i].via.str.size < 2 ||
			out->keys[i].via.str.size > SEARCH_KEY_BYTES - 1u)
			return API_EINVALID;
	}
	return out->id != 0 ? 0 : API_EINVALID;
}

static int
user_message_decode(const msgpack_object *obj, search_message *out)
{
	/* Three fields from a sender older than the picture's. */
	const msgpack_object *f = engage_get_tuple(obj, 4);
	bool pic = f != NULL;
	if (f == NULL)
		f = engage_get_tuple(obj, 3);
	const void *name;
	size_t length;
	out->pic_media_id = SEARCH_PIC_UNKNOWN;
	if (f == NULL || !engage_get_u64(&f[0], &out->id) ||
		f[1].type != MSGPACK_OBJECT_STR ||
		!engage_get_bytes(&f[1], API_USERNAME_BYTES_MAX, &name,
			&length) ||
		!engage_get_u64(&f[2], &out->followers_count) ||
		(pic && (!engage_get_u64(&f[3], &out->pic_media_id) ||
				out->pic_media_id == SEARCH_PIC_UNKNOWN)))
		return API_EINVALID;
	out->text = name;
	out->text_length = (uint32_t)length;
	return out->id != 0 && length > 0 ? 0 : API_EINVALID;
}

static int
query_message_decode(const msgpack_object *obj, search_message *out)
{
	const msgpack_object *f = engage_get_tuple(obj, 4);
	uint64_t type, limit;
	const void *text;
	size_t length;
	if (f == NULL || !engage_get_u64(&f[0], &type) ||
		type > API_SEARCH_POSTS || f[1].type != MSGPACK_OBJECT_STR ||
		!engage_get_bytes(&f[1], API_SEARCH_QUERY_BYTES_MAX, &text,
			&length) ||
		!engage_get_u64(&f[2], &limit) || limit > API_PAGE_LIMIT_MAX)
		return API_EINVALID;
	out->query_type = (api_search_type)type;
	out->text = text;
	out->text_length = (uint32_t)length;
	out->limit = (uint32_t)limit;
	if (f[3].type == MSGPACK_OBJECT_NIL)
		return 0;
	const void *cursor;
	size_t cursor_length;
	if (f[3].type != MSGPACK_OBJECT_STR ||
		!engage_get_bytes(&f[3], SEARCH_CURSOR_BYTES - 1u, &cursor,
			&cursor_length))
		return API_EINVALID;
	out->cursor = cursor;
	out->cursor_length = (uint32_t)cursor_length;
	return 0;
}

int
search_message_decode(uint32_t type, const msgpack_object *obj,
	search_message *out)
{
	ACTORS_ASSERT(obj != NULL);
	ACTORS_ASSERT(out != NULL);
	memset(out, 0, sizeof *out);
	out->type = (search_message_type)type;
	switch (type) {
	case SEARCH_T_POST_INDEX:
	case SEARCH_T_POST_UNINDEX:
		return post_message_decode(obj, out);
	case SEARCH_T_USER_UPSERT:
	case SEARCH_T_USER_REMOVE:
		return user_message_decode(obj, out);
	case SEARCH_T_QUERY:
		return query_message_decode(obj, out);
	default:
		return API_EINVALID;
	}
}

bool
search_user_update_due(uint64_t indexed_count, uint64_t new_count)
{
	/* Below this many followers every change counts: small accounts
	 * are cheap and their rank among peers moves with each follow. */
	const uint64_t small = 64;
	if (indexed_count == new_count)
		return false;
	if (indexed_count < small || new_count < small)
		return true;
	uint64_t delta = indexed_count > new_count ? indexed_count - new_count
						   : new_count - indexed_count;
	return delta >= indexed_count / 64u;
}
