/*
 * actors_media_pool_test.c — the content-addressed store and the
 * processing pool.
 *
 * Goal: identical uploads are stored and processed once; a corrupt image
 * fails with a reason after exactly attempts_max tries spaced by the
 * backoff measured on the pool's clock (never left processing); a full
 * queue answers 503; originals a crash left are re-queued and processed
 * at the next start; the variant set appears whole (no temporary file
 * survives); api_media_file maps only well-formed names to files.
 *
 * Method: pools over a fresh data directory. Most tests use a threadless
 * pool driven by media_pool_run_one and a fake clock the test advances,
 * so retries and backoff are exact; one test runs two real threads and
 * waits for the outcomes. Originals are generated JPEGs, a truncated
 * JPEG and garbage behind a PNG signature.
 */
#include "tests/test.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "actors/media.h"
#include "tests/media/images.h"

/* Outcomes the pool reported, for the test to check. */
#define OUTCOMES_MAX 64

typedef struct fixture {
	uint64_t now_ms;                  /* the fake clock */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	media_outcome outcomes[OUTCOMES_MAX];
	uint32_t outcomes_count;
} fixture;

static uint64_t
fake_clock(void *arg)
{
	fixture *f = arg;
	return __atomic_load_n(&f->now_ms, __ATOMIC_SEQ_CST);
}

static void
record_outcome(void *arg, const media_outcome *o)
{
	fixture *f = arg;
	pthread_mutex_lock(&f->lock);
	CHECK(f->outcomes_count < OUTCOMES_MAX);
	f->outcomes[f->outcomes_count++] = *o;
	pthread_cond_broadcast(&f->changed);
	pthread_mutex_unlock(&f->lock);
}

static void
fixture_init(fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->now_ms = 1000;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->changed, NULL);
}

static media_pool *
pool_make(fixture *f, uint32_t threads, uint32_t queue_max)
{
	media_pool_config cfg = {
		.data_dir = test_tmpdir(),
		.threads = threads,
		.queue_max = queue_max,
		.attempts_max = 3,
		.backoff_base_ms = 100,
		.now_ms = fake_clock,
		.clock_arg = f,
		.done = record_outcome,
		.done_arg = f,
	};
	media_pool *pool = NULL;
	CHECK_EQ(media_pool_create(&cfg, &pool), 0);
	return pool;
}

static img_bytes
jpeg(uint32_t width, uint32_t height, int seed)
{
	media_generate_spec spec = {.format = MEDIA_GENERATE_JPEG,
		.width = width, .height = height, .seed = seed};
	img_bytes b = {0};
	CHECK_EQ(media_vips_generate(&spec, &b.bytes, &b.length), 0);
	return b;
}

/* Stores bytes as an original; hash out. */
static void
store(const img_bytes *b, char *hash)
{
	media_hash_hex(b->bytes, b->length, hash);
	CHECK_EQ(media_store_original(test_tmpdir(), hash, b->bytes,
		b->length), 0);
}

static bool
exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Counts directory entries whose name contains needle, recursively. */
static int
count_named(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[MEDIA_PATH_BYTES_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (strstr(e->d_name, needle) != NULL)
			n++;
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			n += count_named(path, needle);
	}
	closedir(d);
	return n;
}

TEST(actors_media_identical_uploads_processed_once)
{
	fixture f;
	fixture_init(&f);
	media_pool *pool = pool_make(&f, 0, 16);
	img_bytes a = jpeg(1600, 1200, 1);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	store(&a, hash);
	/* The same bytes uploaded twice more (their originals rewritten
	 * with the same content) before processing. */
	store(&a, hash);
	CHECK_EQ(media_pool_submit(pool, hash, 101), 0);
	CHECK_EQ(media_pool_submit(pool, hash, 102), 0);
	CHECK_EQ(media_pool_submit(pool, hash, 102), 0); /* same waiter */
	media_pool_stats s;
	media_pool_get_stats(pool, &s);
	CHECK_EQ(s.queued, 1);
	CHECK_EQ(s.waiters, 2);
	CHECK(media_pool_run_one(pool));
	CHECK(!media_pool_run_one(pool)); /* processed once */
	CHECK_EQ(f.outcomes_count, 2);
	for (uint32_t i = 0; i < 2; i++) {
		CHECK_EQ(f.outcomes[i].status, MEDIA_STATUS_READY);
		CHECK_EQ(f.outcomes[i].attempts, 1);
		CHECK_STR_EQ(f.outcomes[i].hash, hash);
	}
	CHECK(f.outcomes[0].media_id + f.outcomes[1].media_id == 203);
	CHECK(media_store_has_variants(test_tmpdir(), hash));
	char path[MEDIA_PATH_BYTES_MAX];
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
		CHECK_EQ(media_path_variant(test_tmpdir(), hash, i, path,
			sizeof(path)), 0);
		CHECK(exists(path));
	}
	/* The original is gone once processed; no temporary survives. */
	CHECK_EQ(media_path_original(test_tmpdir(), hash, path, sizeof(path)),
		0);
	CHECK(!exists(path));
	CHECK_EQ(count_named(test_tmpdir(), ".tmp"), 0);
	/* A later upload of the same bytes is ready at once. */
	CHECK_EQ(media_pool_submit(pool, hash, 103), MEDIA_SUBMIT_READY);
	media_pool_get_stats(pool, &s);
	CHECK_EQ(s.processed_total, 1);
	CHECK(s.deduplicated_total >= 2);
	CHECK_EQ(s.waiters, 0);
	media_pool_destroy(pool);
	free(a.bytes);
}

/* Drives a failing hash to its end on the fake clock; checks the backoff
 * holds each retry back until its time. */
static void
check_fails_after_retries(const img_bytes *bad, const char *reason_part)
{
	fixture f;
	fixture_init(&f);
	media_pool *pool = pool_make(&f, 0, 16);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	store(bad, hash);
	CHECK_EQ(media_pool_submit(pool, hash, 7), 0);
	CHECK(media_pool_run_one(pool)); /* attempt 1 */
	CHECK_EQ(f.outcomes_count, 0);
	/* Backoff 100 ms, then 200 ms, measured on the pool's clock. */
	CHECK_EQ(media_pool_next_due_ms(pool), 1000 + 100);
	CHECK(!media_pool_run_one(pool));
	f.now_ms += 99;
	CHECK(!media_pool_run_one(pool));
	f.now_ms += 1;
	CHECK(media_pool_run_one(pool)); /* attempt 2 */
	CHECK_EQ(f.outcomes_count, 0);
	CHECK_EQ(media_pool_next_due_ms(pool), 1100 + 200);
	f.now_ms += 199;
	CHECK(!media_pool_run_one(pool));
	f.now_ms += 1;
	CHECK(media_pool_run_one(pool)); /* attempt 3: the last */
	CHECK_EQ(f.outcomes_count, 1);
	const media_outcome *o = &f.outcomes[0];
	CHECK_EQ(o->media_id, 7);
	CHECK_EQ(o->status, MEDIA_STATUS_FAILED);
	CHECK_EQ(o->attempts, 3);
	CHECK_MSG(strstr(o->reason, reason_part) != NULL, "reason: %s",
		o->reason);
	CHECK(!media_pool_run_one(pool));
	CHECK_EQ(media_pool_next_due_ms(pool), UINT64_MAX);
	media_pool_stats s;
	media_pool_get_stats(pool, &s);
	CHECK_EQ(s.failed_total, 1);
	CHECK_EQ(s.retries_total, 2);
	CHECK_EQ(s.queued, 0);
	CHECK_EQ(s.waiters, 0);
	CHECK(!media_store_has_variants(test_tmpdir(), hash));
	char path[MEDIA_PATH_BYTES_MAX];
	CHECK_EQ(media_path_original(test_tmpdir(), hash, path, sizeof(path)),
		0);
	CHECK(!exists(path)); /* no pile of undecodable originals */
	CHECK_EQ(count_named(test_tmpdir(), ".tmp"), 0);
	media_pool_destroy(pool);
}

TEST(actors_media_truncated_jpeg_fails_after_retries)
{
	img_bytes in = jpeg(1200, 900, 2);
	in.length /= 2;
	check_fails_after_retries(&in, "decode failed");
	free(in.bytes);
}

TEST(actors_media_garbage_png_fails_after_retries)
{
	img_bytes garbage = {0};
	img_put(&garbage, "\x89PNG\r\n\x1a\n", 8);
	for (int i = 0; i < 300; i++)
		img_put_u8(&garbage, (uint8_t)(i * 91 + 5));
	check_fails_after_retries(&garbage, "header");
	free(garbage.bytes);
}

TEST(actors_media_missing_original_fails_without_retries)
{
	fixture f;
	fixture_init(&f);
	media_pool *pool = pool_make(&f, 0, 16);
	const char *hash =
		"00000000000000000000000000000000000000000000000000000000000000aa";
	CHECK_EQ(media_pool_submit(pool, hash, 9), 0);
	CHECK(media_pool_run_one(pool));
	CHECK_EQ(f.outcomes_count, 1);
	CHECK_EQ(f.outcomes[0].status, MEDIA_STATUS_FAILED);
	CHECK_EQ(f.outcomes[0].attempts, 1);
	CHECK_STR_EQ(f.outcomes[0].reason, "original missing");
	media_pool_destroy(pool);
}

TEST(actors_media_queue_full_is_unavailable)
{
	fixture f;
	fixture_init(&f);
	media_pool *pool = pool_make(&f, 0, 2);
	char h1[MEDIA_HASH_HEX_BYTES + 1], h2[MEDIA_HASH_HEX_BYTES + 1];
	char h3[MEDIA_HASH_HEX_BYTES + 1];
	media_hash_hex("one", 3, h1);
	media_hash_hex("two", 3, h2);
	media_hash_hex("three", 5, h3);
	CHECK_EQ(media_pool_submit(pool, h1, 1), 0);
	CHECK_EQ(media_pool_submit(pool, h2, 2), 0);
	CHECK_EQ(media_pool_submit(pool, h3, 3), API_EUNAVAILABLE);
	/* Joining a queued hash is a waiter too, and the queue is full. */
	CHECK_EQ(media_pool_submit(pool, h1, 4), API_EUNAVAILABLE);
	/* The same waiter again costs nothing. */
	CHECK_EQ(media_pool_submit(pool, h1, 1), 0);
	/* Once one settles (missing original), room comes back. */
	CHECK(media_pool_run_one(pool));
	CHECK_EQ(media_pool_submit(pool, h3, 3), 0);
	media_pool_destroy(pool);
}

TEST(actors_media_restart_requeues_interrupted_originals)
{
	fixture f;
	fixture_init(&f);
	img_bytes a = jpeg(800, 600, 3), b = jpeg(640, 640, 4);
	char ha[MEDIA_HASH_HEX_BYTES + 1], hb[MEDIA_HASH_HEX_BYTES + 1];
	media_pool *pool = pool_make(&f, 0, 16);
	store(&a, ha);
	store(&b, hb);
	CHECK_EQ(media_pool_submit(pool, ha, 1), 0);
	CHECK_EQ(media_pool_submit(pool, hb, 2), 0);
	/* A crash: the pool goes away with both items queued, plus a
	 * half-written original and a half-written variant set. */
	media_pool_destroy(pool);
	char path[MEDIA_PATH_BYTES_MAX];
	snprintf(path, sizeof(path), "%s/media/originals/%s.tmp-1-1",
		test_tmpdir(), ha);
	FILE *tmp = fopen(path, "w");
	CHECK(tmp != NULL);
	fputs("partial", tmp);
	fclose(tmp);
	snprintf(path, sizeof(path), "%s/media/%.2s", test_tmpdir(), hb);
	CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/media/%.2s/%s.tmp", test_tmpdir(), hb,
		hb);
	CHECK_EQ(mkdir(path, 0755), 0);
	CHECK_EQ(f.outcomes_count, 0);

	pool = pool_make(&f, 0, 16);
	CHECK_EQ(media_pool_recover(pool), 2);
	CHECK_EQ(media_pool_recover(pool), 0); /* queued already */
	/* The media actors resume (the ledger wakes them): they join. */
	CHECK_EQ(media_pool_submit(pool, ha, 1), 0);
	while (media_pool_run_one(pool))
		;
	CHECK(media_store_has_variants(test_tmpdir(), ha));
	CHECK(media_store_has_variants(test_tmpdir(), hb));
	CHECK_EQ(f.outcomes_count, 1); /* only the waiter that came back */
	CHECK_EQ(f.outcomes[0].media_id, 1);
	CHECK_EQ(f.outcomes[0].status, MEDIA_STATUS_READY);
	/* The other item, when it resumes, finds its variants stored. */
	CHECK_EQ(media_pool_submit(pool, hb, 2), MEDIA_SUBMIT_READY);
	CHECK_EQ(count_named(test_tmpdir(), ".tmp"), 0);
	media_pool_destroy(pool);
	free(a.bytes);
	free(b.bytes);
}

TEST(actors_media_threads_process_off_the_caller)
{
	fixture f;
	fixture_init(&f);
	media_pool *pool = pool_make(&f, 2, 16);
	enum { ITEMS = 6 };
	char hashes[ITEMS][MEDIA_HASH_HEX_BYTES + 1];
	for (int i = 0; i < ITEMS; i++) {
		img_bytes x = jpeg(900 + 10 * (uint32_t)i, 700, 10 + i);
		store(&x, hashes[i]);
		free(x.bytes);
	}
	for (int i = 0; i < ITEMS; i++)
		CHECK_EQ(media_pool_submit(pool, hashes[i], 100 + (uint64_t)i),
			0);
	pthread_mutex_lock(&f.lock);
	while (f.outcomes_count < ITEMS) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 30;
		CHECK(pthread_cond_timedwait(&f.changed, &f.lock, &ts) == 0);
	}
	pthread_mutex_unlock(&f.lock);
	for (int i = 0; i < ITEMS; i++) {
		CHECK_EQ(f.outcomes[i].status, MEDIA_STATUS_READY);
		CHECK(media_store_has_variants(test_tmpdir(), hashes[i]));
	}
	media_pool_stats s;
	media_pool_get_stats(pool, &s);
	CHECK_EQ(s.processed_total, ITEMS);
	CHECK_EQ(s.waiters, 0);
	media_pool_destroy(pool);
}

TEST(actors_media_file_names_are_validated)
{
	char path[MEDIA_PATH_BYTES_MAX];
	const char *type = "unset";
	const char *good =
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	static const char *const bad_hashes[] = {
		"",
		"../../etc/passwd",
		"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd/f",
		NULL,
	};
	for (size_t i = 0; i < sizeof(bad_hashes) / sizeof(bad_hashes[0]);
		i++) {
		CHECK_EQ(api_media_file(NULL, bad_hashes[i], "thumb", path,
			sizeof(path), &type), API_EINVALID);
		CHECK(type == NULL);
	}
	static const char *const bad_variants[] = {"", "Thumb", "../thumb",
		"thumb.jpg", "original", "large/", NULL};
	for (size_t i = 0;
		i < sizeof(bad_variants) / sizeof(bad_variants[0]); i++)
		CHECK_EQ(api_media_file(NULL, good, bad_variants[i], path,
			sizeof(path), &type), API_EINVALID);
	/* Well-formed names without a service or a file: not found. */
	CHECK_EQ(api_media_file(NULL, good, "thumb", path, sizeof(path),
		&type), API_ENOTFOUND);
	CHECK_EQ(media_variant_index("large"), 3);
	CHECK_EQ(media_variant_index("thumb"), 0);
	char url[256];
	CHECK_EQ(media_variant_url("/media", good, 1, url, sizeof(url)), 0);
	CHECK_STR_EQ(url, "/media/0123456789abcdef0123456789abcdef0123456789"
		"abcdef0123456789abcdef/small");
	CHECK_EQ(media_variant_url("/media", "x", 1, url, sizeof(url)),
		API_EINVALID);
	CHECK_EQ(media_path_variant("/d", good, 2, path, sizeof(path)), 0);
	CHECK_STR_EQ(path, "/d/media/01/0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef/medium.jpg");
	CHECK_EQ(media_path_variant("/d", good, 2, path, 20), API_EINVALID);
}

TEST(actors_media_idle_pool_stops_cleanly)
{
	/* A pool whose threads never processed anything (every api of a
	 * test that uploads nothing) must stop without touching libvips,
	 * which this process never started. */
	fixture f;
	fixture_init(&f);
	media_pool *pool = pool_make(&f, 2, 4);
	media_pool_destroy(pool);
}
