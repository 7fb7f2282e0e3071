/*
 * actors_engage_search_test.c — the search index, its routing and codecs.
 *
 * Goal: username search puts the exact match first, then users by
 * follower count (ties by smaller id), for 1-3 character prefixes (top
 * lists) and longer ones (bucket ranges) alike; tags and caption words
 * list posts newest first; paging through a cursor never repeats or
 * skips; a prefix query is answered by exactly the one shard that
 * search_query_shard names, with users spread over all shards by
 * messages; per-term lists stay within their caps, dropping the oldest
 * posts or least followed users; follower updates re-rank; captions
 * tokenise into tags and words; snapshots round-trip and malformed ones
 * are refused.
 *
 * Method: build indexes in process (one holding every shard, or one per
 * shard fed through the message codec), query them and compare with
 * expectations computed in the test.
 */
#include "actors/engage.h"
#include "tests/test.h"

static search_index *
index_all(void)
{
	search_index *ix;
	CHECK_EQ(search_index_create(0, 1, &ix), 0);
	return ix;
}

/* Runs a query and returns the hits; cursor in/out. */
static uint32_t
query(const search_index *ix, api_search_type type, const char *q,
	uint32_t limit, char cursor[SEARCH_CURSOR_BYTES], search_hit *hits)
{
	uint32_t n;
	char next[SEARCH_CURSOR_BYTES];
	CHECK_EQ(search_index_query(ix, type, q, limit,
			 cursor[0] != '\0' ? cursor : NULL, hits, &n, next),
		0);
	memcpy(cursor, next, sizeof next);
	return n;
}

TEST(actors_engage_search_users_exact_first_then_followers)
{
	search_index *ix = index_all();
	CHECK_EQ(search_index_user(ix, 1, "ann", 10), 0);
	CHECK_EQ(search_index_user(ix, 2, "anna", 500), 0);
	CHECK_EQ(search_index_user(ix, 3, "annabel", 50), 0);
	CHECK_EQ(search_index_user(ix, 4, "anne", 5000), 0);
	CHECK_EQ(search_index_user(ix, 5, "bob", 9999), 0);
	CHECK_EQ(search_index_user(ix, 6, "annie", 500), 0);
	search_hit h[API_PAGE_LIMIT_MAX];
	char cursor[SEARCH_CURSOR_BYTES] = "";
	/* short query: exact, then 5000, 500 (id 2), 500 (id 6), 50 */
	CHECK_EQ(query(ix, API_SEARCH_USERS, "ann", 10, cursor, h), 5);
	const uint64_t want[] = {1, 4, 2, 6, 3};
	for (int i = 0; i < 5; i++)
		CHECK_EQ_U64(h[i].id, want[i]);
	CHECK_STR_EQ(h[0].username, "ann");
	CHECK_EQ_U64(h[1].followers_count, 5000);
	CHECK_EQ(cursor[0], '\0');
	/* long query: the bucket range path */
	CHECK_EQ(query(ix, API_SEARCH_USERS, "anna", 10, cursor, h), 2);
	CHECK_EQ_U64(h[0].id, 2);
	CHECK_EQ_U64(h[1].id, 3);
	/* 1 and 2 character prefixes, case and '@' ignored */
	CHECK_EQ(query(ix, API_SEARCH_USERS, "@A", 10, cursor, h), 5);
	CHECK_EQ_U64(h[0].id, 4);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "an", 2, cursor, h), 2);
	CHECK(cursor[0] != '\0');
	cursor[0] = '\0';
	CHECK_EQ(query(ix, API_SEARCH_USERS, "annabelle", 10, cursor, h), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "zed", 10, cursor, h), 0);
	/* autocomplete reads up to the first byte no username has */
	CHECK_EQ(query(ix, API_SEARCH_USERS, "bob smith", 10, cursor, h), 1);
	search_index_destroy(ix);
}

/* Pages through a username query and checks every user comes exactly
 * once, in rank order. */
static void
page_users(const search_index *ix, const char *q, uint32_t expect,
	uint32_t limit)
{
	char cursor[SEARCH_CURSOR_BYTES] = "";
	search_hit h[API_PAGE_LIMIT_MAX];
	static uint8_t seen[4096];
	memset(seen, 0, sizeof seen);
	uint32_t total = 0;
	uint64_t last_followers = UINT64_MAX, last_id = 0;
	bool exact_seen = false;
	for (int pages = 0; pages < 1000; pages++) {
		uint32_t n = query(ix, API_SEARCH_USERS, q, limit, cursor, h);
		for (uint32_t i = 0; i < n; i++) {
			CHECK(h[i].id < 4096);
			CHECK_EQ(seen[h[i].id], 0);
			seen[h[i].id] = 1;
			if (strcmp(h[i].username, q) == 0) {
				CHECK_EQ(total, 0);
				exact_seen = true;
			} else if (!(exact_seen && total == 1)) {
				CHECK(h[i].followers_count < last_followers ||
					(h[i].followers_count == last_followers &&
						h[i].id > last_id));
			}
			last_followers = h[i].followers_count;
			last_id = h[i].id;
			if (exact_seen && total == 0)
				last_followers = UINT64_MAX;
			total++;
		}
		if (cursor[0] == '\0') {
			CHECK_EQ(total, expect);
			return;
		}
		CHECK_EQ(n, limit);
	}
	CHECK_MSG(false, "paging did not end");
}

TEST(actors_engage_search_users_paging_no_dup_no_gap)
{
	search_index *ix = index_all();
	/* 130 users under "bob", followers with many ties, and "bob"
	 * itself with few followers (exact still first). */
	CHECK_EQ(search_index_user(ix, 1, "bob", 1), 0);
	char name[32];
	for (uint64_t i = 2; i <= 130; i++) {
		snprintf(name, sizeof name, "bob%c%" PRIu64, 'a' + (int)(i % 3),
			i);
		CHECK_EQ(search_index_user(ix, i, name, (i * 7) % 13), 0);
	}
	page_users(ix, "bob", 130, 20);
	page_users(ix, "bob", 130, 7);
	page_users(ix, "bob", 130, 50);
	page_users(ix, "b", 130, 20);
	page_users(ix, "boba", 43, 10);
	page_users(ix, "bobb", 43, 1);
	search_hit h[API_PAGE_LIMIT_MAX];
	uint32_t n;
	char next[SEARCH_CURSOR_BYTES];
	CHECK_EQ(search_index_query(ix, API_SEARCH_USERS, "bob", 10, "p1", h,
			 &n, next),
		API_EINVALID);
	CHECK_EQ(search_index_query(ix, API_SEARCH_USERS, "bob", 10,
			 "u2000000000000000000000000000000000", h, &n, next),
		API_EINVALID);
	CHECK_EQ(search_index_query(ix, API_SEARCH_USERS, "", 10, NULL, h, &n,
			 next),
		API_EINVALID);
	search_index_destroy(ix);
}

TEST(actors_engage_search_tags_and_words_newest_first_paged)
{
	search_index *ix = index_all();
	search_terms t;
	search_terms_init(&t);
	search_terms_from_caption(&t, "Golden #Sunset at the beach");
	const char *keys[SEARCH_POST_TERMS_MAX];
	for (uint32_t i = 0; i < t.count; i++)
		keys[i] = t.keys[i];
	/* ids out of order, one repeated (a redelivery) */
	for (uint64_t i = 1; i <= 120; i++) {
		uint64_t id = 1000 + ((i * 37) % 120) + 1;
		CHECK_EQ(search_index_post(ix, id, keys, t.count), 0);
	}
	CHECK_EQ(search_index_post(ix, 1005, keys, t.count), 0);
	search_hit h[API_PAGE_LIMIT_MAX];
	char cursor[SEARCH_CURSOR_BYTES] = "";
	uint64_t expect = 1120;
	for (int page = 0; page < 3; page++) {
		uint32_t n = query(ix, API_SEARCH_TAGS, "#SUNSET", 50, cursor, h);
		CHECK_EQ(n, page < 2 ? 50 : 20);
		for (uint32_t i = 0; i < n; i++)
			CHECK_EQ_U64(h[i].id, expect--);
		CHECK((cursor[0] == '\0') == (page == 2));
	}
	CHECK_EQ_U64(expect, 1000);
	CHECK_EQ(query(ix, API_SEARCH_POSTS, "beach", 5, cursor, h), 5);
	CHECK_EQ_U64(h[0].id, 1120);
	cursor[0] = '\0';
	CHECK_EQ(query(ix, API_SEARCH_POSTS, "Golden", 5, cursor, h), 5);
	cursor[0] = '\0';
	/* a tag is not a word and a word is not a tag */
	CHECK_EQ(query(ix, API_SEARCH_POSTS, "sunset", 5, cursor, h), 0);
	CHECK_EQ(query(ix, API_SEARCH_TAGS, "beach", 5, cursor, h), 0);
	/* unindexing removes from every term; empty terms disappear */
	for (uint64_t id = 1001; id <= 1120; id++)
		CHECK_EQ(search_index_post_remove(ix, id, keys, t.count), 0);
	CHECK_EQ(query(ix, API_SEARCH_TAGS, "sunset", 5, cursor, h), 0);
	uint32_t n;
	char next[SEARCH_CURSOR_BYTES];
	CHECK_EQ(search_index_query(ix, API_SEARCH_TAGS, "sunset", 5,
			 "pzzzzzzzzzzzzzzzz", h, &n, next),
		API_EINVALID);
	search_index_destroy(ix);
}

TEST(actors_engage_search_postings_cap_drops_oldest)
{
	search_index *ix = index_all();
	const char *keys[] = {"tcats"};
	for (uint64_t id = 1; id <= SEARCH_POSTINGS_MAX + 5; id++)
		CHECK_EQ(search_index_post(ix, 100 + id, keys, 1), 0);
	/* older than anything held: not taken */
	CHECK_EQ(search_index_post(ix, 50, keys, 1), 0);
	search_hit h[API_PAGE_LIMIT_MAX];
	char cursor[SEARCH_CURSOR_BYTES] = "";
	uint32_t total = 0;
	uint64_t last = 0;
	do {
		uint32_t n = query(ix, API_SEARCH_TAGS, "cats", 50, cursor, h);
		total += n;
		last = h[n - 1].id;
	} while (cursor[0] != '\0');
	CHECK_EQ(total, SEARCH_POSTINGS_MAX);
	CHECK_EQ_U64(last, 100 + 6);
	/* bad keys are refused as a whole */
	const char *bad[] = {"tok", "xnope"};
	CHECK_EQ(search_index_post(ix, 5, bad, 2), API_EINVALID);
	const char *empty[] = {"t"};
	CHECK_EQ(search_index_post(ix, 5, empty, 1), API_EINVALID);
	CHECK_EQ(search_index_post(ix, 0, keys, 1), API_EINVALID);
	search_index_destroy(ix);
}

TEST(actors_engage_search_prefix_top_list_cap)
{
	search_index *ix = index_all();
	char name[32];
	/* 1,005 users under "z"; the 5 least followed fall off "z"'s top
	 * list but stay findable by their longer prefixes. */
	for (uint64_t i = 1; i <= SEARCH_PREFIX_TOP_MAX + 5; i++) {
		snprintf(name, sizeof name, "z%05" PRIu64, i);
		CHECK_EQ(search_index_user(ix, i, name, 100000 - i), 0);
	}
	page_users(ix, "z", SEARCH_PREFIX_TOP_MAX, 50);
	search_hit h[API_PAGE_LIMIT_MAX];
	char cursor[SEARCH_CURSOR_BYTES] = "";
	CHECK_EQ(query(ix, API_SEARCH_USERS, "z01005", 5, cursor, h), 1);
	CHECK_EQ_U64(h[0].id, SEARCH_PREFIX_TOP_MAX + 5);
	/* a follower update brings one back to the top */
	CHECK_EQ(search_index_user(ix, SEARCH_PREFIX_TOP_MAX + 5, "z01005",
			 1000000),
		0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "z", 1, cursor, h), 1);
	CHECK_EQ_U64(h[0].id, SEARCH_PREFIX_TOP_MAX + 5);
	search_index_destroy(ix);
}

TEST(actors_engage_search_bucket_cap_keeps_most_followed)
{
	search_index *ix = index_all();
	char name[32];
	for (uint64_t i = 0; i < SEARCH_BUCKET_USERS_MAX; i++) {
		snprintf(name, sizeof name, "abc%06" PRIu64, i);
		CHECK_EQ(search_index_user(ix, i + 1, name,
				 SEARCH_BUCKET_USERS_MAX + 10u - i),
			0);
	}
	search_hit h[API_PAGE_LIMIT_MAX];
	char cursor[SEARCH_CURSOR_BYTES] = "";
	/* a newcomer with fewer followers than anyone is not kept */
	CHECK_EQ(search_index_user(ix, 900001, "abczzz", 1), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "abczzz", 5, cursor, h), 0);
	/* one with more pushes out the least followed */
	CHECK_EQ(search_index_user(ix, 900002, "abcyyy", 1000000), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "abcyyy", 5, cursor, h), 1);
	snprintf(name, sizeof name, "abc%06u", SEARCH_BUCKET_USERS_MAX - 1u);
	CHECK_EQ(query(ix, API_SEARCH_USERS, name, 5, cursor, h), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "abc000000", 5, cursor, h), 1);
	/* A prefix range spanning many chunks pages in rank order. */
	cursor[0] = '\0';
	CHECK_EQ(query(ix, API_SEARCH_USERS, "abc0001", 50, cursor, h), 50);
	CHECK_EQ_U64(h[0].id, 101);
	CHECK_EQ_U64(h[49].id, 150);
	search_index_destroy(ix);
}

/* A model user for the brute-force comparison below. */
typedef struct model_user {
	bool live;
	char name[API_USERNAME_BYTES_MAX + 1];
	uint64_t followers;
} model_user;

static uint64_t model_rng = 88172645463325252ull;

static uint64_t
next_random(void)
{
	model_rng ^= model_rng << 13;
	model_rng ^= model_rng >> 7;
	model_rng ^= model_rng << 17;
	return model_rng;
}

#define MODEL_USERS 6000u

/* Pages through users matching q and compares with the model. */
static void
check_against_model(const search_index *ix, const model_user *users,
	const char *q)
{
	static uint32_t want[MODEL_USERS];
	uint32_t n = 0;
	size_t length = strlen(q);
	for (uint32_t i = 1; i < MODEL_USERS; i++) {
		if (users[i].live && strncmp(users[i].name, q, length) == 0)
			want[n++] = i;
	}
	/* rank: exact, then followers desc, then id asc (insertion sort:
	 * a few hundred at most) */
	for (uint32_t i = 1; i < n; i++) {
		uint32_t v = want[i], j = i;
		while (j > 0) {
			const model_user *a = &users[v], *b = &users[want[j - 1]];
			bool ea = strcmp(a->name, q) == 0;
			bool eb = strcmp(b->name, q) == 0;
			bool before = ea != eb ? ea
				: a->followers != b->followers
				? a->followers > b->followers
				: v < want[j - 1];
			if (!before)
				break;
			want[j] = want[j - 1];
			j--;
		}
		want[j] = v;
	}
	char cursor[SEARCH_CURSOR_BYTES] = "";
	search_hit h[API_PAGE_LIMIT_MAX];
	uint32_t got = 0;
	do {
		uint32_t k = query(ix, API_SEARCH_USERS, q, 17, cursor, h);
		for (uint32_t i = 0; i < k; i++) {
			CHECK(got < n);
			CHECK_EQ_U64(h[i].id, want[got]);
			CHECK_EQ_U64(h[i].followers_count,
				users[want[got]].followers);
			got++;
		}
	} while (cursor[0] != '\0');
	CHECK_EQ(got, n);
}

TEST(actors_engage_search_long_prefixes_match_a_model)
{
	/* Random inserts, follower changes and removals under one 3-char
	 * prefix (many bucket chunks, splits and emptied chunks); every
	 * longer prefix query must equal a brute-force ranking. ("xyz"
	 * itself reads its top list, capped, tested elsewhere.) */
	static model_user users[MODEL_USERS];
	memset(users, 0, sizeof users);
	search_index *ix = index_all();
	for (uint32_t round = 0; round < 30000; round++) {
		uint32_t id = 1 + (uint32_t)(next_random() % (MODEL_USERS - 1));
		model_user *u = &users[id];
		uint64_t r = next_random() % 10;
		if (!u->live || r < 6) {
			if (!u->live) {
				size_t n = 3 + next_random() % 4;
				memcpy(u->name, "xyz", 3);
				for (size_t i = 3; i < n; i++)
					u->name[i] = "ab1."[next_random() % 4];
				snprintf(u->name + n, sizeof u->name - n, "%u", id);
				/* a few bare names: exact matches (the id
				 * suffix keeps the others unique) */
				if (next_random() % 20 == 0) {
					u->name[n] = '\0';
					bool taken = false;
					for (uint32_t k = 1; k < MODEL_USERS; k++)
						taken |= k != id && users[k].live &&
							strcmp(users[k].name,
								u->name) == 0;
					if (taken)
						continue;
				}
			}
			u->followers = next_random() % 50;
			u->live = true;
			CHECK_EQ(search_index_user(ix, id, u->name, u->followers),
				0);
		} else {
			u->live = false;
			CHECK_EQ(search_index_user_remove(ix, id), 0);
		}
	}
	const char *queries[] = {"xyza", "xyzb", "xyz1", "xyz.", "xyzab",
		"xyzaa", "xyzb1", "xyz.a", "xyzaba", "xyzbbb", "xyz1.", "xyzzz"};
	for (uint32_t i = 0; i < sizeof queries / sizeof queries[0]; i++)
		check_against_model(ix, users, queries[i]);
	search_index_destroy(ix);
}

TEST(actors_engage_search_follower_update_and_remove)
{
	search_index *ix = index_all();
	CHECK_EQ(search_index_user(ix, 1, "mia", 10), 0);
	CHECK_EQ(search_index_user(ix, 2, "mia.x", 20), 0);
	CHECK_EQ(search_index_user(ix, 3, "mia_y", 30), 0);
	search_hit h[API_PAGE_LIMIT_MAX];
	char cursor[SEARCH_CURSOR_BYTES] = "";
	CHECK_EQ(query(ix, API_SEARCH_USERS, "mi", 5, cursor, h), 3);
	CHECK_EQ_U64(h[0].id, 3);
	CHECK_EQ(search_index_user(ix, 2, "mia.x", 40), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "mi", 5, cursor, h), 3);
	CHECK_EQ_U64(h[0].id, 2);
	CHECK_EQ_U64(h[0].followers_count, 40);
	CHECK_EQ(search_index_user_remove(ix, 2), 0);
	CHECK_EQ(search_index_user_remove(ix, 2), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "mia", 5, cursor, h), 2);
	CHECK_EQ_U64(h[0].id, 1);
	CHECK_EQ_U64(h[1].id, 3);
	/* a new username for an id replaces the old one */
	CHECK_EQ(search_index_user(ix, 3, "zoe", 30), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "mia_", 5, cursor, h), 0);
	CHECK_EQ(query(ix, API_SEARCH_USERS, "zo", 5, cursor, h), 1);
	CHECK_EQ(search_index_user(ix, 9, "Bad Name", 1), API_EINVALID);
	CHECK_EQ(search_index_user(ix, 0, "ok", 1), API_EINVALID);
	CHECK_EQ(search_index_user(ix, 9,
			 "a234567890123456789012345678901", 1),
		API_EINVALID);
	search_index_destroy(ix);
}

/* Sends a message through its codec to a shard's index. */
static void
deliver(search_index *ix, uint32_t type, const msgpack_sbuffer *sb)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb->data, sb->size, &u), 0);
	search_message m;
	CHECK_EQ(search_message_decode(type, &u.data, &m), 0);
	CHECK_EQ(search_index_apply(ix, &m), 0);
	msgpack_unpacked_destroy(&u);
}

TEST(actors_engage_search_prefix_across_shards)
{
	static search_index *shards[SEARCH_SHARDS];
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++)
		CHECK_EQ(search_index_create(s, SEARCH_SHARDS, &shards[s]), 0);
	search_index *all = index_all();
	/* 2,000 users with varied 1-4 character prefixes. */
	static const char *const starts[] = {"a", "al", "ali", "alic", "b",
		"bo", "bob", "x9", "x_", "q.", "mar", "mark", "zz"};
	char name[32];
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* users 1..2000 under varied prefixes, and one user named exactly
	 * each prefix (ids 3000..3012) */
	for (uint64_t i = 1; i <= 2013; i++) {
		uint64_t id = i <= 2000 ? i : 3000 + (i - 2001);
		if (i <= 2000)
			snprintf(name, sizeof name, "%s%" PRIu64, starts[i % 13],
				i);
		else
			snprintf(name, sizeof name, "%s", starts[i - 2001]);
		uint64_t followers = (i * 7919) % 1000;
		CHECK_EQ(search_index_user(all, id, name, followers), 0);
		uint32_t targets[3];
		uint32_t n = search_user_shards(name, targets);
		CHECK(n >= 1 && n <= 3);
		msgpack_sbuffer_clear(&sb);
		CHECK_EQ(search_user_message_encode(id, name, followers, 0, &pk),
			0);
		for (uint32_t k = 0; k < n; k++)
			deliver(shards[targets[k]], SEARCH_T_USER_UPSERT, &sb);
	}
	static const char *const queries[] = {"a", "al", "ali", "alic",
		"alic1", "b", "bob", "bob12", "x", "x9", "x_", "q", "q.", "ma",
		"mar", "mark", "mark3", "zz", "zz1", "nobody"};
	for (uint32_t qi = 0; qi < sizeof queries / sizeof queries[0]; qi++) {
		uint32_t shard;
		CHECK_EQ(search_query_shard(API_SEARCH_USERS, queries[qi],
				 &shard),
			0);
		/* The named shard answers exactly like a single index. */
		char c1[SEARCH_CURSOR_BYTES] = "", c2[SEARCH_CURSOR_BYTES] = "";
		for (int page = 0; page < 40; page++) {
			search_hit h1[API_PAGE_LIMIT_MAX], h2[API_PAGE_LIMIT_MAX];
			uint32_t n1 = query(shards[shard], API_SEARCH_USERS,
				queries[qi], 30, c1, h1);
			uint32_t n2 = query(all, API_SEARCH_USERS, queries[qi], 30,
				c2, h2);
			CHECK_EQ(n1, n2);
			for (uint32_t i = 0; i < n1; i++)
				CHECK_EQ_U64(h1[i].id, h2[i].id);
			CHECK_STR_EQ(c1, c2);
			if (c1[0] == '\0')
				break;
		}
		/* Any other shard knows nothing of it. */
		char c3[SEARCH_CURSOR_BYTES] = "";
		search_hit h3[API_PAGE_LIMIT_MAX];
		CHECK_EQ(query(shards[(shard + 1) % SEARCH_SHARDS],
				 API_SEARCH_USERS, queries[qi], 30, c3, h3),
			0);
	}
	/* Removal through messages too: "ali" (id 3002) was the exact
	 * match of "ali"; afterwards it is nowhere. */
	uint32_t shard;
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "ali", &shard), 0);
	char c[SEARCH_CURSOR_BYTES] = "";
	search_hit h[API_PAGE_LIMIT_MAX];
	CHECK(query(shards[shard], API_SEARCH_USERS, "ali", 10, c, h) > 1);
	CHECK_EQ_U64(h[0].id, 3002);
	msgpack_sbuffer_clear(&sb);
	CHECK_EQ(search_user_message_encode(3002, "ali", 0, 0, &pk), 0);
	uint32_t targets[3];
	uint32_t n = search_user_shards("ali", targets);
	for (uint32_t k = 0; k < n; k++)
		deliver(shards[targets[k]], SEARCH_T_USER_REMOVE, &sb);
	const char *prefixes[] = {"a", "al", "ali"};
	for (int p = 0; p < 3; p++) {
		CHECK_EQ(search_query_shard(API_SEARCH_USERS, prefixes[p],
				 &shard),
			0);
		c[0] = '\0';
		do {
			uint32_t got = query(shards[shard], API_SEARCH_USERS,
				prefixes[p], 50, c, h);
			for (uint32_t i = 0; i < got; i++)
				CHECK(h[i].id != 3002);
		} while (c[0] != '\0');
	}
	msgpack_sbuffer_destroy(&sb);
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++)
		search_index_destroy(shards[s]);
	search_index_destroy(all);
}

TEST(actors_engage_search_posts_across_shards)
{
	static search_index *shards[SEARCH_SHARDS];
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++)
		CHECK_EQ(search_index_create(s, SEARCH_SHARDS, &shards[s]), 0);
	search_terms t;
	search_terms_init(&t);
	search_terms_from_caption(&t,
		"#travel #food #sunset hiking with friends near the lake");
	uint32_t targets[SEARCH_POST_TERMS_MAX];
	uint32_t n = search_terms_shards(&t, targets);
	CHECK(n >= 1 && n <= t.count);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (uint64_t post = 1; post <= 3; post++) {
		for (uint32_t k = 0; k < n; k++) {
			msgpack_sbuffer_clear(&sb);
			CHECK_EQ(search_post_message_encode(post, &t, targets[k],
					 &pk),
				0);
			deliver(shards[targets[k]], SEARCH_T_POST_INDEX, &sb);
		}
	}
	const struct {
		api_search_type type;
		const char *q;
	} asks[] = {{API_SEARCH_TAGS, "travel"}, {API_SEARCH_TAGS, "#food"},
		{API_SEARCH_POSTS, "hiking"}, {API_SEARCH_POSTS, "LAKE"}};
	for (uint32_t i = 0; i < 4; i++) {
		uint32_t shard;
		CHECK_EQ(search_query_shard(asks[i].type, asks[i].q, &shard), 0);
		char c[SEARCH_CURSOR_BYTES] = "";
		search_hit h[API_PAGE_LIMIT_MAX];
		CHECK_EQ(query(shards[shard], asks[i].type, asks[i].q, 10, c, h),
			3);
		CHECK_EQ_U64(h[0].id, 3);
	}
	msgpack_sbuffer_destroy(&sb);
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++)
		search_index_destroy(shards[s]);
}

TEST(actors_engage_search_caption_terms)
{
	search_terms t;
	search_terms_init(&t);
	search_terms_from_caption(&t, "Sunset at the #Beach with @john.doe! "
				      "#beach #SUMMER2024 a café x-ray");
	const char *want[] = {"wsunset", "wat", "wthe", "tbeach", "wwith",
		"tsummer2024", "wcafé", "wray"};
	CHECK_EQ(t.count, 8);
	for (uint32_t i = 0; i < 8; i++)
		CHECK_STR_EQ(t.keys[i], want[i]);
	/* caps: 30 tags, 64 words, 64-byte terms */
	search_terms_init(&t);
	char caption[4096] = "";
	for (int i = 0; i < 40; i++) {
		char one[32];
		snprintf(one, sizeof one, "#t%d w%d ", i, i);
		strcat(caption, one);
	}
	strcat(caption, "#");
	for (uint32_t i = 0; i < SEARCH_TERM_BYTES_MAX + 1; i++)
		strcat(caption, "x");
	search_terms_from_caption(&t, caption);
	uint32_t tags = 0, words = 0;
	for (uint32_t i = 0; i < t.count; i++) {
		tags += t.keys[i][0] == 't';
		words += t.keys[i][0] == 'w';
		CHECK(strlen(t.keys[i]) <= SEARCH_TERM_BYTES_MAX + 1);
	}
	CHECK_EQ(tags, API_CAPTION_HASHTAGS_MAX);
	CHECK_EQ(words, 40);
	CHECK(!search_terms_add(&t, 'w', "w1", 2));
	CHECK(search_terms_add(&t, 'w', "New", 3));
	CHECK(!search_terms_add(&t, 'w', "", 0));
}

TEST(actors_engage_search_routing_helpers)
{
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++) {
		rt_addr a = search_shard_addr(s);
		CHECK_EQ(a.kind, SEARCH_KIND);
		/* the shard's partition sits in the id's partition bits */
		uint64_t partition = (a.id >> SEARCH_SEQUENCE_BITS) &
			(SEARCH_PARTITIONS - 1u);
		CHECK_EQ_U64(partition,
			(uint64_t)s * (SEARCH_PARTITIONS / SEARCH_SHARDS));
		CHECK_EQ_U64(actors__id_partition(a.id), partition);
		uint32_t back;
		CHECK_EQ(search_addr_shard(a, &back), 0);
		CHECK_EQ(back, s);
	}
	uint32_t shard;
	CHECK_EQ(search_addr_shard(rt_addr_make(ACTORS_KIND_USER, 1 << 10),
			 &shard),
		API_EINVALID);
	CHECK_EQ(search_addr_shard(rt_addr_make(SEARCH_KIND, 3 << 10 | 1),
			 &shard),
		API_EINVALID);
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "", &shard),
		API_EINVALID);
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "!!", &shard),
		API_EINVALID);
	CHECK_EQ(search_query_shard(API_SEARCH_TAGS, "#", &shard),
		API_EINVALID);
	CHECK_EQ(search_query_shard((api_search_type)7, "a", &shard),
		API_EINVALID);
	char long_query[API_SEARCH_QUERY_BYTES_MAX + 2];
	memset(long_query, 'a', sizeof long_query - 1);
	long_query[sizeof long_query - 1] = '\0';
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, long_query, &shard),
		API_EINVALID);
	/* "Alice", "@alice" and "alice" ask the same shard as "ali..." */
	uint32_t s1, s2, s3;
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "Alice", &s1), 0);
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "@alice", &s2), 0);
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "alix", &s3), 0);
	CHECK(s1 == s2 && s2 == s3);
	uint32_t targets[3];
	CHECK_EQ(search_user_shards("al", targets), 2 - (search_shard_of("ua",
		2) == search_shard_of("ual", 3)));
	CHECK(search_user_update_due(10, 11));
	CHECK(!search_user_update_due(10, 10));
	CHECK(!search_user_update_due(64000, 64999));
	CHECK(search_user_update_due(64000, 65000));
	CHECK(search_user_update_due(64000, 63000));
}

static search_index *
round_trip(const search_index *ix)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(search_index_encode(ix, &pk), 0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	search_index *back;
	CHECK_EQ(search_index_decode(&u.data, &back), 0);
	/* Encoding is canonical: the copy encodes to the same bytes. */
	msgpack_sbuffer sb2;
	msgpack_sbuffer_init(&sb2);
	msgpack_packer pk2;
	msgpack_packer_init(&pk2, &sb2, msgpack_sbuffer_write);
	CHECK_EQ(search_index_encode(back, &pk2), 0);
	CHECK(sb.size == sb2.size && memcmp(sb.data, sb2.data, sb.size) == 0);
	msgpack_sbuffer_destroy(&sb2);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	return back;
}

TEST(actors_engage_search_snapshot_round_trip)
{
	uint32_t shard;
	CHECK_EQ(search_query_shard(API_SEARCH_USERS, "kai", &shard), 0);
	search_index *ix;
	CHECK_EQ(search_index_create(shard, SEARCH_SHARDS, &ix), 0);
	char name[32];
	for (uint64_t i = 1; i <= 300; i++) {
		snprintf(name, sizeof name, "kai%" PRIu64, i);
		CHECK_EQ(search_index_user(ix, i, name, i % 17), 0);
	}
	const char *keys[] = {"tkai", "wkai"};
	for (uint64_t id = 1; id <= 40; id++)
		CHECK_EQ(search_index_post(ix, id * 3, keys, 2), 0);
	search_index *back = round_trip(ix);
	CHECK_EQ(search_index_shard(back), shard);
	const char *qs[] = {"kai", "kai1", "kai29"};
	for (int i = 0; i < 3; i++) {
		char c1[SEARCH_CURSOR_BYTES] = "", c2[SEARCH_CURSOR_BYTES] = "";
		search_hit h1[API_PAGE_LIMIT_MAX], h2[API_PAGE_LIMIT_MAX];
		uint32_t n1 = query(ix, API_SEARCH_USERS, qs[i], 50, c1, h1);
		uint32_t n2 = query(back, API_SEARCH_USERS, qs[i], 50, c2, h2);
		CHECK_EQ(n1, n2);
		for (uint32_t k = 0; k < n1; k++)
			CHECK_EQ_U64(h1[k].id, h2[k].id);
	}
	search_index_destroy(back);
	search_index_destroy(ix);
	search_index *all = index_all();
	CHECK_EQ(search_index_user(all, 5, "e", 1), 0);
	CHECK_EQ(search_index_post(all, 9, keys, 2), 0);
	back = round_trip(all);
	search_index_destroy(back);
	search_index_destroy(all);
}

static int
decode_bytes(const unsigned char *bytes, size_t length)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = engage_unpack(bytes, length, &u);
	if (rc == 0) {
		search_index *ix = NULL;
		rc = search_index_decode(&u.data, &ix);
		CHECK((rc == 0) == (ix != NULL));
		search_index_destroy(ix);
	}
	msgpack_unpacked_destroy(&u);
	return rc;
}

TEST(actors_engage_search_decoder_rejects_malformed)
{
	/* [1, shard, shards, [[id, name, followers]], [[key, [ids]]]] */
	const unsigned char good[] = {0x95, 0x01, 0x00, 0x01, 0x91, 0x93, 0x05,
		0xa2, 'b', 'o', 0x03, 0x91, 0x92, 0xa2, 't', 'x', 0x92, 0x01,
		0x02};
	CHECK_EQ(decode_bytes(good, sizeof good), 0);
	const unsigned char bad_name[] = {0x95, 0x01, 0x00, 0x01, 0x91, 0x93,
		0x05, 0xa2, 'B', 'o', 0x03, 0x90};
	CHECK_EQ(decode_bytes(bad_name, sizeof bad_name), API_EINVALID);
	const unsigned char dup_user[] = {0x95, 0x01, 0x00, 0x01, 0x92, 0x93,
		0x05, 0xa2, 'b', 'o', 0x03, 0x93, 0x05, 0xa2, 'b', 'o', 0x03,
		0x90};
	CHECK_EQ(decode_bytes(dup_user, sizeof dup_user), API_EINVALID);
	const unsigned char unsorted[] = {0x95, 0x01, 0x00, 0x01, 0x90, 0x91,
		0x92, 0xa2, 't', 'x', 0x92, 0x02, 0x01};
	CHECK_EQ(decode_bytes(unsorted, sizeof unsorted), API_EINVALID);
	const unsigned char user_key[] = {0x95, 0x01, 0x00, 0x01, 0x90, 0x91,
		0x92, 0xa2, 'u', 'x', 0x91, 0x01};
	CHECK_EQ(decode_bytes(user_key, sizeof user_key), API_EINVALID);
	const unsigned char empty_list[] = {0x95, 0x01, 0x00, 0x01, 0x90, 0x91,
		0x92, 0xa2, 't', 'x', 0x90};
	CHECK_EQ(decode_bytes(empty_list, sizeof empty_list), API_EINVALID);
	const unsigned char shard_big[] = {0x95, 0x01, 0x05, 0x01, 0x90, 0x90};
	CHECK_EQ(decode_bytes(shard_big, sizeof shard_big), API_EINVALID);
	const unsigned char shards_odd[] = {0x95, 0x01, 0x00, 0x07, 0x90, 0x90};
	CHECK_EQ(decode_bytes(shards_odd, sizeof shards_odd), API_EINVALID);
	const unsigned char dup_term[] = {0x95, 0x01, 0x00, 0x01, 0x90, 0x92,
		0x92, 0xa2, 't', 'x', 0x91, 0x01, 0x92, 0xa2, 't', 'x', 0x91,
		0x02};
	CHECK_EQ(decode_bytes(dup_term, sizeof dup_term), API_EINVALID);
	/* A term of another shard in a sharded snapshot. */
	uint32_t shard = search_shard_of("tx", 2);
	unsigned char other[] = {0x95, 0x01, 0xcd, 0x00, 0x00, 0xcd, 0x01, 0x00,
		0x90, 0x91, 0x92, 0xa2, 't', 'x', 0x91, 0x01};
	other[4] = (unsigned char)((shard + 1) % SEARCH_SHARDS);
	CHECK_EQ(decode_bytes(other, sizeof other), API_EINVALID);
	other[4] = (unsigned char)shard;
	CHECK_EQ(decode_bytes(other, sizeof other), 0);
}

TEST(actors_engage_search_message_codec_rejects_malformed)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	search_message m;
	const unsigned char post_zero[] = {0x92, 0x00, 0x91, 0xa2, 't', 'x'};
	CHECK_EQ(engage_unpack(post_zero, sizeof post_zero, &u), 0);
	CHECK_EQ(search_message_decode(SEARCH_T_POST_INDEX, &u.data, &m),
		API_EINVALID);
	const unsigned char user_ok[] = {0x93, 0x01, 0xa2, 'b', 'o', 0x05};
	CHECK_EQ(engage_unpack(user_ok, sizeof user_ok, &u), 0);
	CHECK_EQ(search_message_decode(SEARCH_T_USER_UPSERT, &u.data, &m), 0);
	CHECK_EQ(search_message_decode(999, &u.data, &m), API_EINVALID);
	const unsigned char query_big_limit[] = {0x94, 0x00, 0xa1, 'a', 0x33,
		0xc0};
	CHECK_EQ(engage_unpack(query_big_limit, sizeof query_big_limit, &u),
		0);
	CHECK_EQ(search_message_decode(SEARCH_T_QUERY, &u.data, &m),
		API_EINVALID);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(search_query_message_encode(API_SEARCH_TAGS, "#x", 10,
			 "p0000000000000001", &pk),
		0);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	CHECK_EQ(search_message_decode(SEARCH_T_QUERY, &u.data, &m), 0);
	CHECK(m.query_type == API_SEARCH_TAGS && m.limit == 10 &&
		m.text_length == 2 && m.cursor_length == 17);
	/* A NUL inside a key or a name is refused by the index. */
	const unsigned char nul_key[] = {0x92, 0x01, 0x91, 0xa3, 't', 0x00,
		'x'};
	CHECK_EQ(engage_unpack(nul_key, sizeof nul_key, &u), 0);
	CHECK_EQ(search_message_decode(SEARCH_T_POST_INDEX, &u.data, &m), 0);
	search_index *ix = index_all();
	CHECK_EQ(search_index_apply(ix, &m), API_EINVALID);
	const unsigned char nul_name[] = {0x93, 0x01, 0xa3, 'b', 0x00, 'o',
		0x05};
	CHECK_EQ(engage_unpack(nul_name, sizeof nul_name, &u), 0);
	CHECK_EQ(search_message_decode(SEARCH_T_USER_UPSERT, &u.data, &m), 0);
	CHECK_EQ(search_index_apply(ix, &m), API_EINVALID);
	search_index_destroy(ix);
	msgpack_sbuffer_destroy(&sb);
	msgpack_unpacked_destroy(&u);
}

/* The index answers a user's picture once told it (0: none), through
 * USER_UPSERT's fourth field and its snapshots; a user indexed from an
 * older three-field message has none known (the caller hydrates it). */
TEST(actors_engage_search_users_carry_their_picture)
{
	search_index *ix = index_all();
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	CHECK_EQ(search_user_message_encode(1, "pia", 3, 42, &pk), 0);
	deliver(ix, SEARCH_T_USER_UPSERT, &sb);
	msgpack_sbuffer_clear(&sb);
	CHECK_EQ(search_user_message_encode(2, "pim", 2, 0, &pk), 0);
	deliver(ix, SEARCH_T_USER_UPSERT, &sb);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_array(&pk, 3); /* an older sender's upsert */
	msgpack_pack_uint64(&pk, 3);
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "pio", 3);
	msgpack_pack_uint64(&pk, 1);
	deliver(ix, SEARCH_T_USER_UPSERT, &sb);
	for (int round = 0; round < 2; round++) {
		char c[SEARCH_CURSOR_BYTES] = "";
		search_hit h[API_PAGE_LIMIT_MAX];
		CHECK_EQ(query(ix, API_SEARCH_USERS, "pi", 10, c, h), 3);
		CHECK_EQ_U64(h[0].id, 1);
		CHECK_EQ_U64(h[0].pic_media_id, 42);
		CHECK_EQ_U64(h[1].id, 2);
		CHECK_EQ_U64(h[1].pic_media_id, 0);
		CHECK_EQ_U64(h[2].id, 3);
		CHECK_EQ_U64(h[2].pic_media_id, SEARCH_PIC_UNKNOWN);
		/* The same after a snapshot and its decode. */
		msgpack_sbuffer_clear(&sb);
		CHECK_EQ(search_index_encode(ix, &pk), 0);
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
		search_index *copy;
		CHECK_EQ(search_index_decode(&u.data, &copy), 0);
		msgpack_unpacked_destroy(&u);
		search_index_destroy(ix);
		ix = copy;
	}
	/* An id the index cannot hold as a picture is left unknown. */
	msgpack_sbuffer_clear(&sb);
	CHECK_EQ(search_user_message_encode(4, "piz", 0, SEARCH_PIC_UNKNOWN,
			 &pk),
		0);
	deliver(ix, SEARCH_T_USER_UPSERT, &sb);
	char cz[SEARCH_CURSOR_BYTES] = "";
	search_hit hz[API_PAGE_LIMIT_MAX];
	CHECK_EQ(query(ix, API_SEARCH_USERS, "piz", 10, cz, hz), 1);
	CHECK_EQ_U64(hz[0].pic_media_id, SEARCH_PIC_UNKNOWN);
	/* A new picture replaces the old; the answer page names it. */
	msgpack_sbuffer_clear(&sb);
	CHECK_EQ(search_user_message_encode(1, "pia", 3, 43, &pk), 0);
	deliver(ix, SEARCH_T_USER_UPSERT, &sb);
	msgpack_sbuffer_clear(&sb);
	CHECK_EQ(search_index_query_pack(ix, API_SEARCH_USERS, "pia", 10, NULL,
			 &pk),
		0);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	CHECK_EQ(engage_unpack(sb.data, sb.size, &u), 0);
	const msgpack_object *items = api_body_get(&u.data, "items");
	CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
	CHECK_EQ(items->via.array.size, 1);
	CHECK_EQ(api_body_int(&items->via.array.ptr[0], "pic", -1), 43);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	search_index_destroy(ix);
}
