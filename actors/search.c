/*
 * actors/search.c — one shard of the search index: users by username
 * prefix, posts by hashtag and by caption word.
 *
 * Structures (per shard):
 *   - user records (id, username, followers) in a slab with a free list,
 *     found by id through an open-addressing table; a record lives while
 *     some list of this shard holds it (refs);
 *   - terms (key -> lists) in an open-addressing table of pointers:
 *       'u' + 1..3 chars: `top`, its users ranked by followers (most
 *          first, ties by smaller id), at most SEARCH_PREFIX_TOP_MAX; and
 *          `bucket`, every user whose first min(3, length) characters are
 *          exactly the key's, sorted by username, at most
 *          SEARCH_BUCKET_USERS_MAX, in chunks of BUCKET_CHUNK_ENTRIES
 *          entries that carry each user's followers and id;
 *       't' + tag, 'w' + word: `ids`, post ids ascending (newest last),
 *          at most SEARCH_POSTINGS_MAX, older ones dropped.
 *
 * A username query of up to 3 characters reads one `top` list (plus the
 * bucket for the exact match); a longer one scans the range of its
 * 3-character bucket that starts with it. Either way one shard answers.
 *
 * Invariants: lists are sorted and within their caps; every user in a
 * list has a record with refs = number of lists holding it; a term with
 * no entries is deleted; only keys of this shard are held.
 *
 * What it deliberately does not do: talk to the runtime (search_actor.c
 * does), rank by anything but followers and recency, or guarantee that a
 * user dropped from a full top list comes back when others lose
 * followers (it comes back on its own next update or after a restart,
 * which rebuilds rankings from the user records).
 */
#include "actors/engage.h"

#include <stdlib.h>

/* Table sizes start here and double; tables stay at most half full so
 * every probe ends at an empty slot. */
#define TABLE_SLOTS_START 16u
/* A bucket is a sorted sequence of chunks of this many entries (the
 * leaves of a B+-tree without inner nodes): an insert moves at most one
 * chunk (6 KiB) and splits it when full, however large the bucket. */
#define BUCKET_CHUNK_ENTRIES 256u
/* Cursor texts: 'p' + 16 hex (posts); 'u' + 1 + 16 + 16 hex (users). */
#define CURSOR_POSTS_LENGTH 17u
#define CURSOR_USERS_LENGTH 34u

static_assert(CURSOR_USERS_LENGTH < SEARCH_CURSOR_BYTES, "cursor fits");

typedef struct search_user {
	uint64_t user_id;         /* 0: a free record */
	uint64_t followers_count;
	uint64_t pic_media_id;    /* 0: none; SEARCH_PIC_UNKNOWN */
	uint32_t refs;            /* lists of this shard holding it */
	uint8_t name_length;
	char name[API_USERNAME_BYTES_MAX + 1];
} search_user;

/* A bucket entry carries what ranking needs, so a range scan reads
 * contiguous memory instead of chasing one record per entry. */
typedef struct bucket_entry {
	uint64_t followers_count;
	uint64_t user_id;
	uint32_t record;          /* index of the user record (its name) */
	uint32_t reserved;
} bucket_entry;

typedef struct bucket_chunk {
	uint32_t count;
	bucket_entry entries[BUCKET_CHUNK_ENTRIES];
} bucket_chunk;

typedef struct search_term {
	uint64_t hash;            /* actors__hash64 of key */
	uint32_t key_length;
	char key[SEARCH_KEY_BYTES];
	uint32_t count;           /* ids or top entries */
	uint32_t capacity;
	uint64_t *ids;            /* 't', 'w': ascending */
	uint32_t *top;            /* 'u': user records by rank */
	uint32_t bucket_count;    /* 'u': users in all chunks */
	uint32_t chunks_count;
	uint32_t chunks_capacity;
	bucket_chunk **chunks;    /* 'u': users by username, in chunks */
} search_term;

struct search_index {
	uint32_t shard;
	uint32_t shards_count;    /* 1: every term belongs here */
	search_user *users;       /* slab */
	uint32_t users_used;      /* records ever handed out (high water) */
	uint32_t users_capacity;
	uint32_t users_live;
	uint32_t *users_free;     /* stack of free record indexes */
	uint32_t users_free_count;
	uint32_t users_free_capacity;
	uint32_t *user_slots;     /* record index + 1; 0 empty */
	uint32_t user_slots_count;
	search_term **term_slots; /* NULL empty */
	uint32_t term_slots_count;
	uint32_t terms_count;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Grows *array (element size `size`) to hold need elements, doubling, up
 * to max. Returns 0 or API_EUNAVAILABLE. */
static int
array_reserve(void **array, uint32_t *capacity, uint32_t need, uint32_t max,
	size_t size)
{
	ACTORS_ASSERT(need <= max);
	if (need <= *capacity)
		return 0;
	uint32_t c = *capacity == 0 ? 4u : *capacity;
	while (c < need)
		c *= 2u;
	if (c > max)
		c = max;
	void *grown = realloc(*array, (size_t)c * size);
	if (grown == NULL)
		return API_EUNAVAILABLE;
	*array = grown;
	*capacity = c;
	return 0;
}

static bool
username_valid(const char *name, size_t length)
{
	if (length == 0 || length > API_USERNAME_BYTES_MAX)
		return false;
	for (size_t i = 0; i < length; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			    c == '.' || c == '_'))
			return false;
	}
	return true;
}

static bool
in_shard(const search_index *ix, const char *key, size_t length)
{
	return ix->shards_count == 1 ||
		search_shard_of(key, length) == ix->shard;
}

/* ---- users -------------------------------------------------------------- */

static uint32_t
user_slot(const search_index *ix, uint64_t user_id)
{
	uint32_t mask = ix->user_slots_count - 1u;
	uint32_t i = (uint32_t)mix64(user_id) & mask;
	while (ix->user_slots[i] != 0 &&
		ix->users[ix->user_slots[i] - 1u].user_id != user_id)
		i = (i + 1u) & mask;
	return i;
}

static uint32_t
user_find(const search_index *ix, uint64_t user_id)
{
	if (ix->user_slots_count == 0)
		return UINT32_MAX;
	uint32_t v = ix->user_slots[user_slot(ix, user_id)];
	return v == 0 ? UINT32_MAX : v - 1u;
}

static int
user_table_grow(search_index *ix)
{
	uint32_t count = ix->user_slots_count == 0 ? TABLE_SLOTS_START
						   : ix->user_slots_count * 2u;
	uint32_t *slots = calloc(count, sizeof *slots);
	if (slots == NULL)
		return API_EUNAVAILABLE;
	uint32_t *old = ix->user_slots;
	uint32_t old_count = ix->user_slots_count;
	ix->user_slots = slots;
	ix->user_slots_count = count;
	for (uint32_t i = 0; i < old_count; i++) {
		if (old[i] != 0)
			slots[user_slot(ix, ix->users[old[i] - 1u].user_id)] =
				old[i];
	}
	free(old);
	return 0;
}

static void
user_table_delete(search_index *ix, uint32_t hole)
{
	uint32_t mask = ix->user_slots_count - 1u;
	uint32_t j = hole;
	ix->user_slots[hole] = 0;
	for (;;) {
		j = (j + 1u) & mask;
		uint32_t v = ix->user_slots[j];
		if (v == 0)
			return;
		uint32_t k = (uint32_t)mix64(ix->users[v - 1u].user_id) & mask;
		bool stays = hole <= j ? (hole < k && k <= j)
				       : (hole < k || k <= j);
		if (!stays) {
			ix->user_slots[hole] = v;
			ix->user_slots[j] = 0;
			hole = j;
		}
	}
}

/* A new record holding one reference (the caller's). */
static int
user_alloc(search_index *ix, uint64_t user_id, const char *name,
	size_t length, uint64_t followers, uint32_t *out)
{
	if (ix->users_live == SEARCH_SHARD_USERS_MAX)
		return API_EUNAVAILABLE;
	if (2u * (ix->users_live + 1u) > ix->user_slots_count &&
		user_table_grow(ix) != 0)
		return API_EUNAVAILABLE;
	uint32_t idx;
	if (ix->users_free_count > 0) {
		idx = ix->users_free[--ix->users_free_count];
	} else {
		if (array_reserve((void **)&ix->users, &ix->users_capacity,
			    ix->users_used + 1u, SEARCH_SHARD_USERS_MAX,
			    sizeof *ix->users) != 0)
			return API_EUNAVAILABLE;
		idx = ix->users_used++;
	}
	search_user *u = &ix->users[idx];
	memset(u, 0, sizeof *u);
	u->user_id = user_id;
	u->followers_count = followers;
	u->pic_media_id = SEARCH_PIC_UNKNOWN;
	u->refs = 1;
	u->name_length = (uint8_t)length;
	memcpy(u->name, name, length);
	ix->user_slots[user_slot(ix, user_id)] = idx + 1u;
	ix->users_live++;
	*out = idx;
	return 0;
}

/* Drops one reference; the record is freed with its last. */
static void
user_release(search_index *ix, uint32_t idx)
{
	search_user *u = &ix->users[idx];
	ACTORS_ASSERT(u->user_id != 0);
	ACTORS_ASSERT(u->refs > 0);
	if (--u->refs > 0)
		return;
	user_table_delete(ix, user_slot(ix, u->user_id));
	u->user_id = 0;
	ix->users_live--;
	/* A failed grow of the free stack only leaves the record unused
	 * below the high water mark; nothing else depends on it. */
	if (array_reserve((void **)&ix->users_free, &ix->users_free_capacity,
		    ix->users_free_count + 1u, SEARCH_SHARD_USERS_MAX,
		    sizeof *ix->users_free) == 0)
		ix->users_free[ix->users_free_count++] = idx;
}

/* ---- terms -------------------------------------------------------------- */

static uint32_t
term_slot(const search_index *ix, const char *key, size_t length,
	uint64_t hash)
{
	uint32_t mask = ix->term_slots_count - 1u;
	uint32_t i = (uint32_t)mix64(hash) & mask;
	for (;;) {
		const search_term *t = ix->term_slots[i];
		if (t == NULL || (t->hash == hash && t->key_length == length &&
					 memcmp(t->key, key, length) == 0))
			return i;
		i = (i + 1u) & mask;
	}
}

static search_term *
term_find(const search_index *ix, const char *key, size_t length)
{
	if (ix->term_slots_count == 0)
		return NULL;
	uint64_t hash = actors__hash64(key, length);
	return ix->term_slots[term_slot(ix, key, length, hash)];
}

static int
term_table_grow(search_index *ix)
{
	uint32_t count = ix->term_slots_count == 0 ? TABLE_SLOTS_START
						   : ix->term_slots_count * 2u;
	search_term **slots = calloc(count, sizeof *slots);
	if (slots == NULL)
		return API_EUNAVAILABLE;
	search_term **old = ix->term_slots;
	uint32_t old_count = ix->term_slots_count;
	ix->term_slots = slots;
	ix->term_slots_count = count;
	for (uint32_t i = 0; i < old_count; i++) {
		search_term *t = old[i];
		if (t != NULL)
			slots[term_slot(ix, t->key, t->key_length, t->hash)] = t;
	}
	free(old);
	return 0;
}

static int
term_get(search_index *ix, const char *key, size_t length,
	search_term **out)
{
	ACTORS_ASSERT(length > 0 && length < SEARCH_KEY_BYTES);
	search_term *t = term_find(ix, key, length);
	if (t != NULL) {
		*out = t;
		return 0;
	}
	if (ix->terms_count == SEARCH_SHARD_TERMS_MAX)
		return API_EUNAVAILABLE;
	if (2u * (ix->terms_count + 1u) > ix->term_slots_count &&
		term_table_grow(ix) != 0)
		return API_EUNAVAILABLE;
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return API_EUNAVAILABLE;
	t->hash = actors__hash64(key, length);
	t->key_length = (uint32_t)length;
	memcpy(t->key, key, length);
	ix->term_slots[term_slot(ix, key, length, t->hash)] = t;
	ix->terms_count++;
	*out = t;
	return 0;
}

static void
term_destroy(search_term *t)
{
	free(t->ids);
	free(t->top);
	for (uint32_t i = 0; i < t->chunks_count; i++)
		free(t->chunks[i]);
	free(t->chunks);
	free(t);
}

static void
term_delete_if_empty(search_index *ix, search_term *t)
{
	if (t->count > 0 || t->bucket_count > 0)
		return;
	uint32_t mask = ix->term_slots_count - 1u;
	uint32_t hole = term_slot(ix, t->key, t->key_length, t->hash);
	ACTORS_ASSERT(ix->term_slots[hole] == t);
	uint32_t j = hole;
	ix->term_slots[hole] = NULL;
	for (;;) {
		j = (j + 1u) & mask;
		search_term *v = ix->term_slots[j];
		if (v == NULL)
			break;
		uint32_t k = (uint32_t)mix64(v->hash) & mask;
		bool stays = hole <= j ? (hole < k && k <= j)
				       : (hole < k || k <= j);
		if (!stays) {
			ix->term_slots[hole] = v;
			ix->term_slots[j] = NULL;
			hole = j;
		}
	}
	ix->terms_count--;
	term_destroy(t);
}

/* ---- ranked lists ------------------------------------------------------- */

/* True when user a ranks before b: more followers, then smaller id. */
static bool
ranks_before(const search_user *a, const search_user *b)
{
	if (a->followers_count != b->followers_count)
		return a->followers_count > b->followers_count;
	return a->user_id < b->user_id;
}

/* First position in t->top whose user does not rank before u. */
static uint32_t
top_position(const search_index *ix, const search_term *t,
	const search_user *u)
{
	uint32_t lo = 0, hi = t->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ranks_before(&ix->users[t->top[mid]], u))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
top_insert(search_index *ix, search_term *t, uint32_t idx)
{
	uint32_t at = top_position(ix, t, &ix->users[idx]);
	if (at == SEARCH_PREFIX_TOP_MAX)
		return 0;
	if (t->count == SEARCH_PREFIX_TOP_MAX) {
		user_release(ix, t->top[--t->count]);
	} else if (array_reserve((void **)&t->top, &t->capacity, t->count + 1u,
			   SEARCH_PREFIX_TOP_MAX, sizeof *t->top) != 0) {
		return API_EUNAVAILABLE;
	}
	memmove(&t->top[at + 1], &t->top[at], (t->count - at) * sizeof *t->top);
	t->top[at] = idx;
	t->count++;
	ix->users[idx].refs++;
	return 0;
}

static void
top_remove(search_index *ix, search_term *t, uint32_t idx)
{
	uint32_t at = top_position(ix, t, &ix->users[idx]);
	if (at == t->count || t->top[at] != idx)
		return;
	memmove(&t->top[at], &t->top[at + 1],
		(t->count - at - 1u) * sizeof *t->top);
	t->count--;
	user_release(ix, idx);
}

/* A place in a bucket: chunk and entry within it. */
typedef struct bucket_at {
	uint32_t chunk;
	uint32_t entry;
} bucket_at;

/* Orders entry e against (name, user_id): by name, then id. */
static int
entry_compare(const search_index *ix, const bucket_entry *e,
	const char *name, uint64_t user_id)
{
	int c = strcmp(ix->users[e->record].name, name);
	if (c != 0)
		return c;
	return (e->user_id > user_id) - (e->user_id < user_id);
}

/* The first place not ordered before (name, user_id). It is one past the
 * last entry of the last chunk when everything is before it. */
static bucket_at
bucket_lower_bound(const search_index *ix, const search_term *t,
	const char *name, uint64_t user_id)
{
	bucket_at at = {0, 0};
	if (t->bucket_count == 0)
		return at; /* no chunk, or the first one being filled */
	/* The last chunk whose first entry is before the probe. */
	uint32_t lo = 0, hi = t->chunks_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (entry_compare(ix, &t->chunks[mid]->entries[0], name,
			    user_id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return at;
	at.chunk = lo - 1u;
	const bucket_chunk *c = t->chunks[at.chunk];
	lo = 0;
	hi = c->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (entry_compare(ix, &c->entries[mid], name, user_id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	at.entry = lo;
	if (at.entry == c->count && at.chunk + 1u < t->chunks_count) {
		at.chunk++;
		at.entry = 0;
	}
	return at;
}

static bool
bucket_valid(const search_term *t, bucket_at at)
{
	return at.chunk < t->chunks_count &&
		at.entry < t->chunks[at.chunk]->count;
}

static bucket_entry *
bucket_get(const search_term *t, bucket_at at)
{
	ACTORS_ASSERT(bucket_valid(t, at));
	return &t->chunks[at.chunk]->entries[at.entry];
}

static void
bucket_remove_at(search_index *ix, search_term *t, bucket_at at)
{
	bucket_chunk *c = t->chunks[at.chunk];
	uint32_t idx = c->entries[at.entry].record;
	memmove(&c->entries[at.entry], &c->entries[at.entry + 1u],
		(c->count - at.entry - 1u) * sizeof c->entries[0]);
	c->count--;
	t->bucket_count--;
	if (c->count == 0) {
		free(c);
		memmove(&t->chunks[at.chunk], &t->chunks[at.chunk + 1u],
			(t->chunks_count - at.chunk - 1u) * sizeof *t->chunks);
		t->chunks_count--;
	}
	user_release(ix, idx);
}

/* Finds record idx in the bucket. */
static bool
bucket_find(const search_index *ix, const search_term *t, uint32_t idx,
	bucket_at *out)
{
	const search_user *u = &ix->users[idx];
	*out = bucket_lower_bound(ix, t, u->name, u->user_id);
	return bucket_valid(t, *out) && bucket_get(t, *out)->record == idx;
}

/* When the bucket is full, the user with the fewest followers (ties: the
 * larger id) leaves it, unless that would be the newcomer. */
static bool
bucket_make_room(search_index *ix, search_term *t, uint32_t idx)
{
	bucket_at worst = {0, 0};
	const bucket_entry *w = bucket_get(t, worst);
	for (uint32_t c = 0; c < t->chunks_count; c++) {
		for (uint32_t i = 0; i < t->chunks[c]->count; i++) {
			const bucket_entry *e = &t->chunks[c]->entries[i];
			if (e->followers_count < w->followers_count ||
				(e->followers_count == w->followers_count &&
					e->user_id > w->user_id)) {
				worst = (bucket_at){c, i};
				w = e;
			}
		}
	}
	const search_user *u = &ix->users[idx];
	if (u->followers_count < w->followers_count ||
		(u->followers_count == w->followers_count &&
			u->user_id > w->user_id))
		return false;
	bucket_remove_at(ix, t, worst);
	return true;
}

/* Splits a full chunk in two halves; the new one follows it. */
static int
bucket_split(search_term *t, uint32_t chunk)
{
	if (array_reserve((void **)&t->chunks, &t->chunks_capacity,
		    t->chunks_count + 1u, SEARCH_BUCKET_USERS_MAX,
		    sizeof *t->chunks) != 0)
		return API_EUNAVAILABLE;
	bucket_chunk *next = malloc(sizeof *next);
	if (next == NULL)
		return API_EUNAVAILABLE;
	bucket_chunk *c = t->chunks[chunk];
	uint32_t half = c->count / 2u;
	next->count = c->count - half;
	memcpy(next->entries, &c->entries[half],
		next->count * sizeof c->entries[0]);
	c->count = half;
	memmove(&t->chunks[chunk + 2u], &t->chunks[chunk + 1u],
		(t->chunks_count - chunk - 1u) * sizeof *t->chunks);
	t->chunks[chunk + 1u] = next;
	t->chunks_count++;
	return 0;
}

static int
bucket_insert(search_index *ix, search_term *t, uint32_t idx)
{
	if (t->bucket_count == SEARCH_BUCKET_USERS_MAX &&
		!bucket_make_room(ix, t, idx))
		return 0;
	const search_user *u = &ix->users[idx];
	if (t->chunks_count == 0) {
		if (array_reserve((void **)&t->chunks, &t->chunks_capacity, 1,
			    SEARCH_BUCKET_USERS_MAX, sizeof *t->chunks) != 0)
			return API_EUNAVAILABLE;
		t->chunks[0] = malloc(sizeof *t->chunks[0]);
		if (t->chunks[0] == NULL)
			return API_EUNAVAILABLE;
		t->chunks[0]->count = 0;
		t->chunks_count = 1;
	}
	bucket_at at = bucket_lower_bound(ix, t, u->name, u->user_id);
	if (t->chunks[at.chunk]->count == BUCKET_CHUNK_ENTRIES) {
		int rc = bucket_split(t, at.chunk);
		if (rc != 0)
			return rc;
		uint32_t half = t->chunks[at.chunk]->count;
		if (at.entry > half) {
			at.chunk++;
			at.entry -= half;
		}
	}
	bucket_chunk *c = t->chunks[at.chunk];
	ACTORS_ASSERT(c->count < BUCKET_CHUNK_ENTRIES);
	memmove(&c->entries[at.entry + 1u], &c->entries[at.entry],
		(c->count - at.entry) * sizeof c->entries[0]);
	c->entries[at.entry] = (bucket_entry){u->followers_count, u->user_id,
		idx, 0};
	c->count++;
	t->bucket_count++;
	ix->users[idx].refs++;
	return 0;
}

static void
bucket_remove(search_index *ix, search_term *t, uint32_t idx)
{
	bucket_at at;
	if (bucket_find(ix, t, idx, &at))
		bucket_remove_at(ix, t, at);
}

/* ---- users: the public operations --------------------------------------- */

/* The prefix keys of a username: 'u' + its first 1..min(3, length)
 * characters. Returns how many; the last one is its bucket key. */
static uint32_t
user_keys(const char *name, size_t length, char keys[3][5])
{
	uint32_t n = 0;
	for (size_t k = 1; k <= SEARCH_USER_PREFIX_BYTES && k <= length; k++) {
		keys[n][0] = 'u';
		memcpy(keys[n] + 1, name, k);
		keys[n][k + 1] = '\0';
		n++;
	}
	return n;
}

/* Removes record idx from every list of this shard. */
static void
user_unlist(search_index *ix, uint32_t idx)
{
	char keys[3][5];
	search_user *u = &ix->users[idx];
	uint32_t n = user_keys(u->name, u->name_length, keys);
	for (uint32_t i = 0; i < n; i++) {
		search_term *t = term_find(ix, keys[i], strlen(keys[i]));
		if (t == NULL)
			continue;
		top_remove(ix, t, idx);
		if (i == n - 1u)
			bucket_remove(ix, t, idx);
		term_delete_if_empty(ix, t);
	}
}

/* Lists record idx in every list of this shard it belongs to. */
static int
user_list(search_index *ix, uint32_t idx, bool with_bucket)
{
	char keys[3][5];
	search_user *u = &ix->users[idx];
	uint32_t n = user_keys(u->name, u->name_length, keys);
	for (uint32_t i = 0; i < n; i++) {
		size_t length = strlen(keys[i]);
		if (!in_shard(ix, keys[i], length))
			continue;
		search_term *t;
		int rc = term_get(ix, keys[i], length, &t);
		if (rc == 0)
			rc = top_insert(ix, t, idx);
		if (rc == 0 && with_bucket && i == n - 1u)
			rc = bucket_insert(ix, t, idx);
		term_delete_if_empty(ix, t);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int
search_index_user_remove(search_index *ix, uint64_t user_id)
{
	ACTORS_ASSERT(ix != NULL);
	uint32_t idx = user_find(ix, user_id);
	if (idx == UINT32_MAX)
		return 0;
	ix->users[idx].refs++;
	user_unlist(ix, idx);
	ACTORS_ASSERT(ix->users[idx].refs == 1);
	user_release(ix, idx);
	return 0;
}

int
search_index_user(search_index *ix, uint64_t user_id, const char *username,
	uint64_t followers_count)
{
	ACTORS_ASSERT(ix != NULL);
	size_t length = username != NULL
		? strnlen(username, API_USERNAME_BYTES_MAX + 1u)
		: 0;
	if (user_id == 0 || !username_valid(username, length))
		return API_EINVALID;
	uint32_t idx = user_find(ix, user_id);
	if (idx != UINT32_MAX && strcmp(ix->users[idx].name, username) != 0) {
		search_index_user_remove(ix, user_id);
		idx = UINT32_MAX;
	}
	int rc;
	if (idx == UINT32_MAX) {
		rc = user_alloc(ix, user_id, username, length, followers_count,
			&idx);
		if (rc != 0)
			return rc;
		rc = user_list(ix, idx, true);
	} else {
		/* Re-rank: out of the top lists with the old count, back in
		 * with the new one. */
		ix->users[idx].refs++;
		char keys[3][5];
		uint32_t n = user_keys(username, length, keys);
		for (uint32_t i = 0; i < n; i++) {
			search_term *t = term_find(ix, keys[i], strlen(keys[i]));
			if (t != NULL)
				top_remove(ix, t, idx);
		}
		ix->users[idx].followers_count = followers_count;
		/* The bucket is ordered by name, so the entry stays where it
		 * is; only the copy of the count it carries changes. */
		search_term *b = term_find(ix, keys[n - 1u],
			strlen(keys[n - 1u]));
		bucket_at at;
		if (b != NULL && bucket_find(ix, b, idx, &at))
			bucket_get(b, at)->followers_count = followers_count;
		rc = user_list(ix, idx, false);
	}
	user_release(ix, idx);
	return rc;
}

int
search_index_user_pic(search_index *ix, uint64_t user_id,
	uint64_t pic_media_id)
{
	ACTORS_ASSERT(ix != NULL);
	uint32_t idx = user_find(ix, user_id);
	if (idx != UINT32_MAX)
		ix->users[idx].pic_media_id = pic_media_id;
	return 0;
}

/* ---- posts -------------------------------------------------------------- */

static bool
post_key_valid(const char *key, size_t length)
{
	if (length < 2 || length > SEARCH_TERM_BYTES_MAX + 1u)
		return false;
	if (key[0] != 't' && key[0] != 'w')
		return false;
	return memchr(key, '\0', length) == NULL;
}

/* First position in t->ids holding an id >= post_id. */
static uint32_t
ids_position(const search_term *t, uint64_t post_id)
{
	return actors__u64_lower_bound(t->ids, t->count, post_id);
}

static int
ids_insert(search_term *t, uint64_t post_id)
{
	uint32_t at = ids_position(t, post_id);
	if (at < t->count && t->ids[at] == post_id)
		return 0;
	if (t->count == SEARCH_POSTINGS_MAX) {
		/* Full: the oldest id goes, unless the new one is older. */
		if (at == 0)
			return 0;
		memmove(&t->ids[0], &t->ids[1], (at - 1u) * sizeof *t->ids);
		t->ids[at - 1u] = post_id;
		return 0;
	}
	if (array_reserve((void **)&t->ids, &t->capacity, t->count + 1u,
		    SEARCH_POSTINGS_MAX, sizeof *t->ids) != 0)
		return API_EUNAVAILABLE;
	memmove(&t->ids[at + 1], &t->ids[at], (t->count - at) * sizeof *t->ids);
	t->ids[at] = post_id;
	t->count++;
	return 0;
}

static int
post_update(search_index *ix, uint64_t post_id, const char *const *keys,
	uint32_t count, bool remove)
{
	ACTORS_ASSERT(ix != NULL);
	ACTORS_ASSERT(keys != NULL || count == 0);
	if (post_id == 0 || count > SEARCH_POST_TERMS_MAX)
		return API_EINVALID;
	for (uint32_t i = 0; i < count; i++) {
		if (keys[i] == NULL ||
			!post_key_valid(keys[i], strnlen(keys[i],
				SEARCH_KEY_BYTES)))
			return API_EINVALID;
	}
	for (uint32_t i = 0; i < count; i++) {
		size_t length = strlen(keys[i]);
		if (!in_shard(ix, keys[i], length))
			continue;
		if (remove) {
			search_term *t = term_find(ix, keys[i], length);
			if (t == NULL)
				continue;
			uint32_t at = ids_position(t, post_id);
			if (at < t->count && t->ids[at] == post_id) {
				memmove(&t->ids[at], &t->ids[at + 1],
					(t->count - at - 1u) * sizeof *t->ids);
				t->count--;
			}
			term_delete_if_empty(ix, t);
			continue;
		}
		search_term *t;
		int rc = term_get(ix, keys[i], length, &t);
		if (rc == 0)
			rc = ids_insert(t, post_id);
		term_delete_if_empty(ix, t);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int
search_index_post(search_index *ix, uint64_t post_id,
	const char *const *keys, uint32_t count)
{
	return post_update(ix, post_id, keys, count, false);
}

int
search_index_post_remove(search_index *ix, uint64_t post_id,
	const char *const *keys, uint32_t count)
{
	return post_update(ix, post_id, keys, count, true);
}

/* ---- lifetime ----------------------------------------------------------- */

int
search_index_create(uint32_t shard, uint32_t shards_count,
	search_index **out)
{
	ACTORS_ASSERT(out != NULL);
	*out = NULL;
	if (shards_count != 1 && shards_count != SEARCH_SHARDS)
		return API_EINVALID;
	if (shard >= shards_count)
		return API_EINVALID;
	search_index *ix = calloc(1, sizeof *ix);
	if (ix == NULL)
		return API_EUNAVAILABLE;
	ix->shard = shard;
	ix->shards_count = shards_count;
	*out = ix;
	return 0;
}

void
search_index_destroy(search_index *ix)
{
	if (ix == NULL)
		return;
	for (uint32_t i = 0; i < ix->term_slots_count; i++) {
		if (ix->term_slots[i] != NULL)
			term_destroy(ix->term_slots[i]);
	}
	free(ix->term_slots);
	free(ix->user_slots);
	free(ix->users_free);
	free(ix->users);
	free(ix);
}

uint32_t
search_index_shard(const search_index *ix)
{
	ACTORS_ASSERT(ix != NULL);
	return ix->shard;
}

/* ---- queries ------------------------------------------------------------ */

/* Where a user stands in a username result: exact match first, then
 * followers (most first), then smaller id. */
typedef struct rank_key {
	uint32_t inexact;         /* 0: the username equals the query */
	uint64_t followers_count;
	uint64_t user_id;
} rank_key;

static int
rank_compare(const rank_key *a, const rank_key *b)
{
	if (a->inexact != b->inexact)
		return a->inexact < b->inexact ? -1 : 1;
	if (a->followers_count != b->followers_count)
		return a->followers_count > b->followers_count ? -1 : 1;
	if (a->user_id != b->user_id)
		return a->user_id < b->user_id ? -1 : 1;
	return 0;
}

static int
users_cursor_decode(const char *cursor, rank_key *out)
{
	uint64_t inexact;
	if (strlen(cursor) != CURSOR_USERS_LENGTH || cursor[0] != 'u' ||
		!engage_parse_hex(cursor + 1, 1, &inexact) || inexact > 1 ||
		!engage_parse_hex(cursor + 2, 16, &out->followers_count) ||
		!engage_parse_hex(cursor + 18, 16, &out->user_id))
		return API_EINVALID;
	out->inexact = (uint32_t)inexact;
	return 0;
}

/* A page under construction: the best `cap` hits after the cursor, kept
 * sorted by rank. */
typedef struct user_page {
	uint32_t count;
	uint32_t cap;
	rank_key keys[API_PAGE_LIMIT_MAX + 1];
	uint32_t records[API_PAGE_LIMIT_MAX + 1];
} user_page;

static void
page_offer(user_page *p, const rank_key *key, uint32_t record)
{
	uint32_t at = p->count;
	while (at > 0 && rank_compare(key, &p->keys[at - 1u]) < 0)
		at--;
	if (at == p->cap)
		return;
	uint32_t keep = p->count < p->cap ? p->count : p->cap - 1u;
	memmove(&p->keys[at + 1], &p->keys[at], (keep - at) * sizeof *p->keys);
	memmove(&p->records[at + 1], &p->records[at],
		(keep - at) * sizeof *p->records);
	p->keys[at] = *key;
	p->records[at] = record;
	p->count = keep + 1u;
}

static rank_key
user_rank(const search_user *u, bool exact)
{
	rank_key k = {exact ? 0u : 1u, u->followers_count, u->user_id};
	return k;
}

/* The record of the user named exactly q in bucket t, or UINT32_MAX. */
static uint32_t
bucket_exact(const search_index *ix, const search_term *t, const char *q,
	bucket_at *at)
{
	*at = bucket_lower_bound(ix, t, q, 0);
	if (!bucket_valid(t, *at))
		return UINT32_MAX;
	uint32_t idx = bucket_get(t, *at)->record;
	return strcmp(ix->users[idx].name, q) == 0 ? idx : UINT32_MAX;
}

/* Queries of 1..3 characters: the exact match, then the top list. */
static void
users_short(const search_index *ix, const char *q, size_t length,
	const rank_key *after, user_page *page)
{
	char key[1 + SEARCH_USER_PREFIX_BYTES + 1] = {'u'};
	memcpy(key + 1, q, length);
	const search_term *t = term_find(ix, key, length + 1u);
	if (t == NULL)
		return;
	bucket_at at;
	uint32_t exact = bucket_exact(ix, t, q, &at);
	if (exact != UINT32_MAX) {
		rank_key k = user_rank(&ix->users[exact], true);
		if (after == NULL || rank_compare(&k, after) > 0)
			page_offer(page, &k, exact);
	}
	for (uint32_t i = 0; i < t->count && page->count < page->cap; i++) {
		uint32_t idx = t->top[i];
		if (idx == exact)
			continue;
		rank_key k = user_rank(&ix->users[idx], false);
		if (after == NULL || rank_compare(&k, after) > 0)
			page_offer(page, &k, idx);
	}
}

/* Longer queries: the bucket range of names starting with q, from the
 * first name >= q to the first name >= q with its last byte raised
 * (usernames' bytes stop at 'z', so that byte never wraps). Only the
 * names at the start of the range are read (for the exact match); the
 * rest of the scan reads the entries' own followers and ids. */
static void
users_long(const search_index *ix, const char *q, size_t length,
	const rank_key *after, user_page *page)
{
	char key[1 + SEARCH_USER_PREFIX_BYTES + 1] = {'u'};
	memcpy(key + 1, q, SEARCH_USER_PREFIX_BYTES);
	const search_term *t = term_find(ix, key, sizeof key - 1u);
	if (t == NULL)
		return;
	char upper[API_USERNAME_BYTES_MAX + 1];
	memcpy(upper, q, length + 1u);
	ACTORS_ASSERT((unsigned char)upper[length - 1u] < 0xff);
	upper[length - 1u]++;
	bucket_at end = bucket_lower_bound(ix, t, upper, 0);
	bucket_at at;
	bool exact = bucket_exact(ix, t, q, &at) != UINT32_MAX;
	while (bucket_valid(t, at) &&
		(at.chunk != end.chunk || at.entry != end.entry)) {
		const bucket_entry *e = bucket_get(t, at);
		/* Equal names sort first; past them nothing is exact. */
		exact = exact &&
			strcmp(ix->users[e->record].name, q) == 0;
		rank_key k = {exact ? 0u : 1u, e->followers_count, e->user_id};
		if (after == NULL || rank_compare(&k, after) > 0)
			page_offer(page, &k, e->record);
		if (++at.entry == t->chunks[at.chunk]->count) {
			at.chunk++;
			at.entry = 0;
		}
	}
}

static int
query_users(const search_index *ix, const char *q, uint32_t limit,
	const char *cursor, search_hit *hits, uint32_t *count,
	char next_cursor[SEARCH_CURSOR_BYTES])
{
	rank_key after;
	if (cursor != NULL && users_cursor_decode(cursor, &after) != 0)
		return API_EINVALID;
	size_t length = strlen(q);
	char key[1 + SEARCH_USER_PREFIX_BYTES + 1] = {'u'};
	size_t key_length = length < SEARCH_USER_PREFIX_BYTES
		? length
		: SEARCH_USER_PREFIX_BYTES;
	memcpy(key + 1, q, key_length);
	if (!in_shard(ix, key, key_length + 1u))
		return 0;
	user_page page = {.count = 0, .cap = limit + 1u};
	if (length <= SEARCH_USER_PREFIX_BYTES)
		users_short(ix, q, length, cursor ? &after : NULL, &page);
	else
		users_long(ix, q, length, cursor ? &after : NULL, &page);
	uint32_t n = page.count < limit ? page.count : limit;
	for (uint32_t i = 0; i < n; i++) {
		const search_user *u = &ix->users[page.records[i]];
		hits[i].id = u->user_id;
		hits[i].followers_count = u->followers_count;
		hits[i].pic_media_id = u->pic_media_id;
		memcpy(hits[i].username, u->name, u->name_length + 1u);
	}
	*count = n;
	if (page.count > limit) {
		const rank_key *k = &page.keys[n - 1u];
		snprintf(next_cursor, SEARCH_CURSOR_BYTES,
			"u%01x%016" PRIx64 "%016" PRIx64, k->inexact,
			k->followers_count, k->user_id);
	}
	return 0;
}

static int
query_posts(const search_index *ix, char type, const char *q, uint32_t limit,
	const char *cursor, search_hit *hits, uint32_t *count,
	char next_cursor[SEARCH_CURSOR_BYTES])
{
	uint64_t before = 0;
	if (cursor != NULL &&
		(strlen(cursor) != CURSOR_POSTS_LENGTH || cursor[0] != 'p' ||
			!engage_parse_hex(cursor + 1, 16, &before) || before == 0))
		return API_EINVALID;
	char key[SEARCH_KEY_BYTES];
	size_t length = strlen(q);
	key[0] = type;
	memcpy(key + 1, q, length + 1u);
	const search_term *t = term_find(ix, key, length + 1u);
	if (t == NULL)
		return 0;
	uint32_t at = cursor != NULL ? ids_position(t, before) : t->count;
	uint32_t n = 0;
	while (at > 0 && n < limit) {
		hits[n].id = t->ids[--at];
		hits[n].followers_count = 0;
		hits[n].pic_media_id = SEARCH_PIC_UNKNOWN;
		hits[n].username[0] = '\0';
		n++;
	}
	*count = n;
	if (at > 0)
		snprintf(next_cursor, SEARCH_CURSOR_BYTES, "p%016" PRIx64,
			hits[n - 1u].id);
	return 0;
}

int
search_index_query(const search_index *ix, api_search_type type,
	const char *query, uint32_t limit, const char *cursor,
	search_hit *hits, uint32_t *count, char next_cursor[SEARCH_CURSOR_BYTES])
{
	ACTORS_ASSERT(ix != NULL);
	ACTORS_ASSERT(hits != NULL);
	ACTORS_ASSERT(count != NULL);
	ACTORS_ASSERT(next_cursor != NULL);
	*count = 0;
	next_cursor[0] = '\0';
	char q[API_SEARCH_QUERY_BYTES_MAX + 1];
	int rc = search_normalize_query(type, query, q, sizeof q);
	if (rc != 0)
		return rc;
	if (limit == 0)
		limit = API_PAGE_LIMIT_DEFAULT;
	if (limit > API_PAGE_LIMIT_MAX)
		limit = API_PAGE_LIMIT_MAX;
	if (type == API_SEARCH_USERS)
		return query_users(ix, q, limit, cursor, hits, count,
			next_cursor);
	return query_posts(ix, type == API_SEARCH_TAGS ? 't' : 'w', q, limit,
		cursor, hits, count, next_cursor);
}

int
search_index_query_pack(const search_index *ix, api_search_type type,
	const char *query, uint32_t limit, const char *cursor,
	msgpack_packer *pk)
{
	ACTORS_ASSERT(pk != NULL);
	search_hit hits[API_PAGE_LIMIT_MAX];
	uint32_t n;
	char next[SEARCH_CURSOR_BYTES];
	int rc = search_index_query(ix, type, query, limit, cursor, hits, &n,
		next);
	if (rc != 0)
		return rc;
	rc = msgpack_pack_map(pk, 2);
	actors__pack_key(pk, "items");
	rc |= msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		if (type == API_SEARCH_USERS) {
			/* "pic" (0: none) only when known: a hit without it
			 * is hydrated from the user's actor. */
			bool pic = hits[i].pic_media_id != SEARCH_PIC_UNKNOWN;
			rc |= msgpack_pack_map(pk, pic ? 4 : 3);
			actors__pack_key(pk, "user_id");
			actors__pack_id(pk, hits[i].id);
			actors__pack_key(pk, "username");
			actors__pack_str(pk, hits[i].username);
			actors__pack_key(pk, "followers_count");
			rc |= msgpack_pack_uint64(pk, hits[i].followers_count);
			if (pic) {
				actors__pack_key(pk, "pic");
				rc |= msgpack_pack_uint64(pk,
					hits[i].pic_media_id);
			}
		} else {
			rc |= msgpack_pack_map(pk, 1);
			actors__pack_key(pk, "post_id");
			actors__pack_id(pk, hits[i].id);
		}
	}
	actors__pack_key(pk, "next_cursor");
	actors__pack_str(pk, next[0] != '\0' ? next : NULL);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

/* Applies POST_INDEX, POST_UNINDEX, USER_UPSERT, USER_REMOVE. */
int
search_index_apply(search_index *ix, const search_message *m)
{
	ACTORS_ASSERT(ix != NULL);
	ACTORS_ASSERT(m != NULL);
	if (m->type == SEARCH_T_USER_UPSERT) {
		char name[API_USERNAME_BYTES_MAX + 1];
		if (m->text_length == 0 ||
			m->text_length > API_USERNAME_BYTES_MAX ||
			memchr(m->text, '\0', m->text_length) != NULL)
			return API_EINVALID;
		memcpy(name, m->text, m->text_length);
		name[m->text_length] = '\0';
		int rc = search_index_user(ix, m->id, name, m->followers_count);
		if (rc == 0 && m->pic_media_id != SEARCH_PIC_UNKNOWN)
			rc = search_index_user_pic(ix, m->id, m->pic_media_id);
		return rc;
	}
	if (m->type == SEARCH_T_USER_REMOVE)
		return search_index_user_remove(ix, m->id);
	if (m->type != SEARCH_T_POST_INDEX &&
		m->type != SEARCH_T_POST_UNINDEX)
		return API_EINVALID;
	if (m->keys_count > SEARCH_POST_TERMS_MAX)
		return API_EINVALID;
	char keys[SEARCH_POST_TERMS_MAX][SEARCH_KEY_BYTES];
	const char *pointers[SEARCH_POST_TERMS_MAX];
	for (uint32_t i = 0; i < m->keys_count; i++) {
		const msgpack_object *k = &m->keys[i];
		if (k->type != MSGPACK_OBJECT_STR ||
			k->via.str.size >= SEARCH_KEY_BYTES ||
			memchr(k->via.str.ptr, '\0', k->via.str.size) != NULL)
			return API_EINVALID;
		memcpy(keys[i], k->via.str.ptr, k->via.str.size);
		keys[i][k->via.str.size] = '\0';
		pointers[i] = keys[i];
	}
	return post_update(ix, m->id, pointers, m->keys_count,
		m->type == SEARCH_T_POST_UNINDEX);
}

/* ---- snapshot ----------------------------------------------------------- */

static int
user_id_compare(const void *a, const void *b)
{
	const search_user *x = *(search_user *const *)a;
	const search_user *y = *(search_user *const *)b;
	return (x->user_id > y->user_id) - (x->user_id < y->user_id);
}

static int
term_key_compare(const void *a, const void *b)
{
	const search_term *x = *(search_term *const *)a;
	const search_term *y = *(search_term *const *)b;
	size_t n = x->key_length < y->key_length ? x->key_length
						 : y->key_length;
	int c = memcmp(x->key, y->key, n);
	if (c != 0)
		return c;
	return (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

static int
encode_users(const search_index *ix, msgpack_packer *pk)
{
	const search_user **order = malloc(
		(ix->users_live + 1u) * sizeof *order);
	if (order == NULL)
		return API_EUNAVAILABLE;
	uint32_t n = 0;
	for (uint32_t i = 0; i < ix->users_used; i++) {
		if (ix->users[i].user_id != 0)
			order[n++] = &ix->users[i];
	}
	ACTORS_ASSERT(n == ix->users_live);
	/* Sorted so equal indexes encode to equal bytes. */
	qsort(order, n, sizeof *order, user_id_compare);
	int rc = msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		bool pic = order[i]->pic_media_id != SEARCH_PIC_UNKNOWN;
		rc |= msgpack_pack_array(pk, pic ? 4 : 3);
		rc |= msgpack_pack_uint64(pk, order[i]->user_id);
		actors__pack_strn(pk, order[i]->name,
			order[i]->name_length);
		rc |= msgpack_pack_uint64(pk, order[i]->followers_count);
		if (pic)
			rc |= msgpack_pack_uint64(pk, order[i]->pic_media_id);
	}
	free(order);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

static int
encode_terms(const search_index *ix, msgpack_packer *pk)
{
	const search_term **order = malloc(
		(ix->terms_count + 1u) * sizeof *order);
	if (order == NULL)
		return API_EUNAVAILABLE;
	uint32_t n = 0;
	for (uint32_t i = 0; i < ix->term_slots_count; i++) {
		const search_term *t = ix->term_slots[i];
		if (t != NULL && t->key[0] != 'u')
			order[n++] = t;
	}
	qsort(order, n, sizeof *order, term_key_compare);
	int rc = msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		rc |= msgpack_pack_array(pk, 2);
		actors__pack_strn(pk, order[i]->key, order[i]->key_length);
		rc |= msgpack_pack_array(pk, order[i]->count);
		for (uint32_t j = 0; j < order[i]->count; j++)
			rc |= msgpack_pack_uint64(pk, order[i]->ids[j]);
	}
	free(order);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
search_index_encode(const search_index *ix, msgpack_packer *pk)
{
	ACTORS_ASSERT(ix != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 5);
	rc |= msgpack_pack_uint32(pk, SEARCH_SNAPSHOT_VERSION);
	rc |= msgpack_pack_uint32(pk, ix->shard);
	rc |= msgpack_pack_uint32(pk, ix->shards_count);
	if (rc != 0)
		return API_EUNAVAILABLE;
	rc = encode_users(ix, pk);
	if (rc == 0)
		rc = encode_terms(ix, pk);
	return rc;
}

/* True when some prefix key of the name belongs to this shard. */
static bool
user_in_shard(const search_index *ix, const char *name, size_t length)
{
	char keys[3][5];
	uint32_t n = user_keys(name, length, keys);
	for (uint32_t i = 0; i < n; i++) {
		if (in_shard(ix, keys[i], strlen(keys[i])))
			return true;
	}
	return false;
}

static int
decode_users(search_index *ix, const msgpack_object *obj)
{
	const msgpack_object *items;
	uint32_t n;
	if (!engage_get_array(obj, SEARCH_SHARD_USERS_MAX, &items, &n))
		return API_EINVALID;
	for (uint32_t i = 0; i < n; i++) {
		/* [id, name, followers] or, picture known, [..., pic]. */
		const msgpack_object *f = engage_get_tuple(&items[i], 4);
		bool has_pic = f != NULL;
		if (f == NULL)
			f = engage_get_tuple(&items[i], 3);
		uint64_t id, followers, pic = SEARCH_PIC_UNKNOWN;
		const void *name;
		size_t length;
		if (f == NULL || !engage_get_u64(&f[0], &id) ||
			f[1].type != MSGPACK_OBJECT_STR ||
			!engage_get_bytes(&f[1], API_USERNAME_BYTES_MAX, &name,
				&length) ||
			!engage_get_u64(&f[2], &followers) ||
			(has_pic && (!engage_get_u64(&f[3], &pic) ||
					    pic == SEARCH_PIC_UNKNOWN)))
			return API_EINVALID;
		char text[API_USERNAME_BYTES_MAX + 1];
		memcpy(text, name, length);
		text[length] = '\0';
		if (id == 0 || !username_valid(text, length) ||
			user_find(ix, id) != UINT32_MAX ||
			!user_in_shard(ix, text, length))
			return API_EINVALID;
		int rc = search_index_user(ix, id, text, followers);
		if (rc == 0)
			rc = search_index_user_pic(ix, id, pic);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
decode_term(search_index *ix, const msgpack_object *obj)
{
	const msgpack_object *f = engage_get_tuple(obj, 2);
	const void *key;
	size_t length;
	const msgpack_object *ids;
	uint32_t n;
	if (f == NULL || f[0].type != MSGPACK_OBJECT_STR ||
		!engage_get_bytes(&f[0], SEARCH_KEY_BYTES - 1u, &key, &length) ||
		!post_key_valid(key, length) || !in_shard(ix, key, length) ||
		!engage_get_array(&f[1], SEARCH_POSTINGS_MAX, &ids, &n) ||
		n == 0 || term_find(ix, key, length) != NULL)
		return API_EINVALID;
	search_term *t;
	int rc = term_get(ix, key, length, &t);
	if (rc != 0)
		return rc;
	rc = array_reserve((void **)&t->ids, &t->capacity, n,
		SEARCH_POSTINGS_MAX, sizeof *t->ids);
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		uint64_t id;
		if (!engage_get_u64(&ids[i], &id) || id == 0 ||
			(i > 0 && id <= t->ids[i - 1u]))
			rc = API_EINVALID;
		else
			t->ids[t->count++] = id;
	}
	if (rc != 0) {
		t->count = 0;
		term_delete_if_empty(ix, t);
	}
	return rc;
}

int
search_index_decode(const msgpack_object *obj, search_index **out)
{
	ACTORS_ASSERT(obj != NULL);
	ACTORS_ASSERT(out != NULL);
	*out = NULL;
	const msgpack_object *f = engage_get_tuple(obj, 5);
	uint64_t version, shard, shards_count;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != SEARCH_SNAPSHOT_VERSION ||
		!engage_get_u64(&f[1], &shard) ||
		!engage_get_u64(&f[2], &shards_count) ||
		shards_count > SEARCH_SHARDS || shard >= shards_count)
		return API_EINVALID;
	search_index *ix;
	int rc = search_index_create((uint32_t)shard, (uint32_t)shards_count,
		&ix);
	if (rc != 0)
		return rc;
	rc = decode_users(ix, &f[3]);
	const msgpack_object *terms;
	uint32_t n = 0;
	if (rc == 0 && !engage_get_array(&f[4], SEARCH_SHARD_TERMS_MAX, &terms,
			       &n))
		rc = API_EINVALID;
	for (uint32_t i = 0; i < n && rc == 0; i++)
		rc = decode_term(ix, &terms[i]);
	if (rc != 0) {
		search_index_destroy(ix);
		return rc;
	}
	*out = ix;
	return 0;
}
