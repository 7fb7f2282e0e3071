/*
 * actors_media_actor_test.c — the media items end to end through api.h.
 *
 * Goal: an upload answers processing and turns ready with four variant
 * URLs that api_media_file serves; the same bytes uploaded again get a
 * new media id that is ready at once; a corrupt upload turns failed with
 * a reason after media_attempts_max tries and is listed as a dead letter;
 * refusals (pixel bomb, SVG, GIF, over-size) answer their codes before
 * anything is stored; reservations accept their bytes once and only from
 * their owner; a watcher (what a post does) hears media.ready; and after
 * a restart an item left processing resumes from its stored original; an
 * upload is checked and stored off the caller's thread (the caller's
 * other calls complete while the ingest worker holds it).
 *
 * Method: one runtime in deterministic mode with the real api (store or
 * not), media_threads 0 so the test drives the pool with
 * media_pool_run_one on the runtime's virtual clock, and advances virtual
 * time past each retry's backoff. A tiny "watcher" kind stands in for
 * the post actor. The off-thread test runs real threads instead, with a
 * gate on the ingest worker that the test opens.
 */
#include "tests/test.h"

#include <dirent.h>
#include <semaphore.h>
#include <unistd.h>

#include "actors/media.h"
#include "tests/media/images.h"
#include "tests/unit/actors_helpers.h"

/* The stand-in watcher's kind and its one request. */
#define WATCHER_KIND 40u
#define WATCHER_T_START 1u

/* What the watcher heard (the test process is single-threaded in
 * deterministic mode). */
static media_settled heard[8];
static uint32_t heard_types[8];
static uint32_t heard_count;

static void
watcher_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	if (m->type == WATCHER_T_START) {
		uint64_t args[2];
		CHECK_EQ(m->size, sizeof(args));
		memcpy(args, m->payload, sizeof(args));
		CHECK_EQ(media_watch_send(self, args[0], args[1], 0, 77), 0);
		return;
	}
	CHECK(heard_count < 8);
	CHECK_EQ(media_settled_decode(m->payload, m->size,
		&heard[heard_count]), 0);
	heard_types[heard_count++] = m->type;
}

static const rt_actor_ops watcher_ops = {
	.name = "watcher",
	.state_size = 8,
	.on_message = watcher_on_message,
};

/* Deterministic unless durable: the journal's writer thread answers in
 * real time, so a durable runtime runs its real workers. */
static void
media_open(t_env *e, const char *files, bool durable)
{
	memset(e, 0, sizeof(*e));
	rt_config rc;
	rt_config_default(&rc);
	rc.deterministic = !durable;
	rc.workers = 2;
	rc.seed = 11;
	rc.start_time_ms = 1750000000000ull;
	rc.passivate_idle_ms = 0;
	rc.log_level = RT_LOG_ERROR;
	e->deterministic = !durable;
	CHECK_EQ(rt_create(&rc, &e->rt), 0);
	api_config cfg;
	t_config(&cfg);
	cfg.data_dir = files;
	cfg.media_threads = 0;
	cfg.media_queue_max = 8;
	cfg.media_attempts_max = 3;
	CHECK_EQ(api_create(e->rt, NULL, &cfg, &e->a), 0);
	CHECK_EQ(rt_register_kind(e->rt, WATCHER_KIND, &watcher_ops), 0);
	if (durable) {
		snprintf(e->dir, sizeof(e->dir), "%s/journal", test_tmpdir());
		ps_node_report report;
		CHECK_EQ(ps_node_open(e->dir, e->rt, NULL, &report, &e->node),
			0);
		api_bind_store(e->a, e->node);
	}
	CHECK_EQ(rt_start(e->rt), 0);
	CHECK_EQ(api_client_create(e->a, NULL, NULL, &e->c), 0);
}

static media_pool *
pool_of(t_env *e)
{
	media_service *svc = media_service_of(e->a);
	CHECK(svc != NULL);
	return media_service_pool(svc);
}

/* Runs the pool until idle, delivering outcomes and firing retries. */
static void
process_all(t_env *e)
{
	for (int round = 0; round < 50; round++) {
		while (media_pool_run_one(pool_of(e)))
			rt_det_run_until_idle(e->rt, 0);
		uint64_t due = media_pool_next_due_ms(pool_of(e));
		if (due == UINT64_MAX)
			break;
		uint64_t now = rt_now_ms(e->rt);
		rt_det_advance(e->rt, due > now ? due - now : 1);
	}
	rt_det_run_until_idle(e->rt, 0);
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

/* A malloc'd copy: the upload calls take their bytes. */
static void *
taken(const void *bytes, size_t length)
{
	void *copy = malloc(length > 0 ? length : 1);
	CHECK(copy != NULL);
	if (length > 0)
		memcpy(copy, bytes, length);
	return copy;
}

static void
body_str(const t_result *r, const char *key, char *buf, size_t size)
{
	CHECK_MSG(api_body_str(r->body, key, buf, size), "no %s", key);
}

static uint64_t
upload(t_env *e, uint64_t user, const img_bytes *b, char *status)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = user};
	T_CALL(e, &r, api_media_upload(e->c, &ctx, taken(b->bytes, b->length),
		b->length, t_callback, &r));
	CHECK_MSG(r.code == 0, "upload: %d %s", r.code, r.detail);
	uint64_t id = api_body_id(r.body, "media_id");
	CHECK(id != 0);
	body_str(&r, "status", status, 32);
	t_result_reset(&r);
	return id;
}

static void
get(t_env *e, uint64_t user, uint64_t media_id, t_result *r)
{
	api_ctx ctx = {.user_id = user};
	T_CALL(e, r, api_media_get(e->c, &ctx, media_id, t_callback, r));
}

/* The hash from a ready item's thumb URL "/media/<hash>/thumb". */
static void
hash_of(const t_result *r, char *hash)
{
	const msgpack_object *v = api_body_get(r->body, "variants");
	char url[256];
	CHECK(api_body_str(v, "thumb", url, sizeof(url)));
	CHECK(strncmp(url, "/media/", 7) == 0);
	memcpy(hash, url + 7, MEDIA_HASH_HEX_BYTES);
	hash[MEDIA_HASH_HEX_BYTES] = '\0';
	CHECK(media_hash_valid(hash));
	CHECK_STR_EQ(url + 7 + MEDIA_HASH_HEX_BYTES, "/thumb");
}

static uint64_t owner_id = (3ull << 10) | (5ull << 23);

TEST(actors_media_upload_turns_ready_and_is_served)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	img_bytes b = jpeg(2000, 1500, 1);
	char status[32];
	uint64_t id = upload(&e, owner_id, &b, status);
	CHECK_STR_EQ(status, "processing");
	/* Same partition as its owner (DESIGN.md "Addressing"). */
	CHECK_EQ((id >> 10) & 8191u, (owner_id >> 10) & 8191u);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	get(&e, owner_id, id, &r);
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "processing");
	process_all(&e);
	get(&e, owner_id, id, &r);
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "ready");
	char hash[MEDIA_HASH_HEX_BYTES + 1], expect[MEDIA_HASH_HEX_BYTES + 1];
	hash_of(&r, hash);
	media_hash_hex(b.bytes, b.length, expect);
	CHECK_STR_EQ(hash, expect);
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
		char path[MEDIA_PATH_BYTES_MAX];
		const char *type = NULL;
		CHECK_EQ(api_media_file(e.a, hash, api_media_variants[i], path,
			sizeof(path), &type), 0);
		CHECK_STR_EQ(type, "image/jpeg");
		FILE *f = fopen(path, "rb");
		CHECK(f != NULL);
		unsigned char head[3];
		CHECK_EQ(fread(head, 1, 3, f), 3);
		CHECK(head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff);
		fclose(f);
	}
	/* Another user may see it (it is public once posted). */
	get(&e, owner_id + 1, id, &r);
	CHECK_EQ(r.code, 0);
	get(&e, owner_id, id + 1, &r);
	CHECK_EQ(r.code, API_ENOTFOUND);
	t_result_reset(&r);
	free(b.bytes);
	t_close(&e);
}

TEST(actors_media_same_bytes_new_id_ready_at_once)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	img_bytes b = jpeg(900, 600, 2);
	char status[32];
	uint64_t first = upload(&e, owner_id, &b, status);
	uint64_t twin = upload(&e, owner_id, &b, status);
	CHECK(twin != first);
	CHECK_STR_EQ(status, "processing"); /* joined the queued job */
	process_all(&e);
	media_pool_stats s;
	media_pool_get_stats(pool_of(&e), &s);
	CHECK_EQ(s.processed_total, 1);
	uint64_t third = upload(&e, owner_id + 1, &b, status);
	CHECK(third != first && third != twin);
	CHECK_STR_EQ(status, "ready");
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	char h1[MEDIA_HASH_HEX_BYTES + 1], h2[MEDIA_HASH_HEX_BYTES + 1];
	get(&e, owner_id, twin, &r);
	hash_of(&r, h1);
	get(&e, owner_id + 1, third, &r);
	hash_of(&r, h2);
	CHECK_STR_EQ(h1, h2);
	media_pool_get_stats(pool_of(&e), &s);
	CHECK_EQ(s.processed_total, 1);
	t_result_reset(&r);
	free(b.bytes);
	t_close(&e);
}

TEST(actors_media_corrupt_upload_fails_and_is_dead_lettered)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	img_bytes b = jpeg(1200, 900, 3);
	b.length = b.length * 2 / 3; /* truncated: header fine, scan cut */
	char status[32];
	uint64_t id = upload(&e, owner_id, &b, status);
	CHECK_STR_EQ(status, "processing");
	uint64_t start = rt_now_ms(e.rt);
	process_all(&e);
	/* Two backoffs: 500 ms then 1000 ms of virtual time. */
	CHECK(rt_now_ms(e.rt) - start >= 1500);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	get(&e, owner_id, id, &r);
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "failed");
	char reason[MEDIA_REASON_BYTES_MAX];
	body_str(&r, "reason", reason, sizeof(reason));
	CHECK_MSG(strstr(reason, "decode failed") != NULL, "%s", reason);
	api_ctx ctx = {.user_id = 1};
	api_page page = {.limit = 10};
	T_CALL(&e, &r, api_media_failed_list(e.c, &ctx, &page, t_callback,
		&r));
	CHECK_EQ(r.code, 0);
	const msgpack_object *items = api_body_get(r.body, "items");
	CHECK(items != NULL && items->type == MSGPACK_OBJECT_ARRAY);
	CHECK_EQ(items->via.array.size, 1);
	const msgpack_object *item = &items->via.array.ptr[0];
	CHECK_EQ(api_body_id(item, "media_id"), id);
	CHECK_EQ(api_body_int(item, "attempts", 0), 3);
	CHECK(api_body_str(item, "reason", reason, sizeof(reason)));
	CHECK(strstr(reason, "decode failed") != NULL);
	page.cursor = "x1";
	T_CALL(&e, &r, api_media_failed_list(e.c, &ctx, &page, t_callback,
		&r));
	CHECK_EQ(r.code, API_EINVALID);
	t_result_reset(&r);
	free(b.bytes);
	t_close(&e);
}

static void
check_upload_refused(t_env *e, const void *bytes, size_t length, int code,
	const char *detail_part)
{
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = owner_id};
	T_CALL(e, &r, api_media_upload(e->c, &ctx, taken(bytes, length), length,
		t_callback, &r));
	CHECK_MSG(r.code == code, "%d, expected %d (%s)", r.code, code,
		r.detail);
	if (detail_part != NULL)
		CHECK_MSG(strstr(r.detail, detail_part) != NULL, "%s",
			r.detail);
	t_result_reset(&r);
}

TEST(actors_media_refusals_store_nothing)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	img_bytes bomb = img_png_declaring(100000, 100000);
	check_upload_refused(&e, bomb.bytes, bomb.length, API_EINVALID,
		"pixels");
	check_upload_refused(&e, img_svg, sizeof(img_svg) - 1, API_EMEDIATYPE,
		NULL);
	check_upload_refused(&e, img_pdf, sizeof(img_pdf) - 1, API_EMEDIATYPE,
		NULL);
	media_generate_spec spec = {.format = MEDIA_GENERATE_GIF, .width = 32,
		.height = 32};
	img_bytes gif = {0};
	CHECK_EQ(media_vips_generate(&spec, &gif.bytes, &gif.length), 0);
	check_upload_refused(&e, gif.bytes, gif.length, API_EMEDIATYPE, NULL);
	unsigned char *big = calloc(1, API_UPLOAD_BYTES_MAX + 1u);
	CHECK(big != NULL);
	memcpy(big, "\xff\xd8\xff", 3);
	check_upload_refused(&e, big, API_UPLOAD_BYTES_MAX + 1u, API_ETOOLARGE,
		NULL);
	free(big);
	/* Nobody signed in. */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx anonymous = {0};
	T_CALL(&e, &r, api_media_upload(e.c, &anonymous,
		taken(gif.bytes, gif.length), gif.length, t_callback, &r));
	CHECK_EQ(r.code, API_EUNAUTHORIZED);
	t_result_reset(&r);
	char path[MEDIA_PATH_BYTES_MAX];
	snprintf(path, sizeof(path), "%s/media/originals", test_tmpdir());
	DIR *d = opendir(path);
	if (d != NULL) {
		struct dirent *x;
		while ((x = readdir(d)) != NULL)
			CHECK_MSG(x->d_name[0] == '.', "stored %s", x->d_name);
		closedir(d);
	}
	free(gif.bytes);
	free(bomb.bytes);
	t_close(&e);
}

TEST(actors_media_reservation_takes_bytes_once)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = owner_id};
	T_CALL(&e, &r, api_media_reserve(e.c, &ctx, t_callback, &r));
	CHECK_EQ(r.code, 0);
	uint64_t id = api_body_id(r.body, "media_id");
	char status[32];
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "awaiting_upload");
	img_bytes b = jpeg(400, 300, 4);
	api_ctx other = {.user_id = owner_id + 1};
	T_CALL(&e, &r, api_media_upload_reserved(e.c, &other, id,
		taken(b.bytes, b.length), b.length, t_callback, &r));
	CHECK_EQ(r.code, API_EFORBIDDEN);
	T_CALL(&e, &r, api_media_upload_reserved(e.c, &ctx, id,
		taken(b.bytes, b.length), b.length, t_callback, &r));
	CHECK_EQ(r.code, 0);
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "processing");
	T_CALL(&e, &r, api_media_upload_reserved(e.c, &ctx, id,
		taken(b.bytes, b.length), b.length, t_callback, &r));
	CHECK_EQ(r.code, API_ECONFLICT);
	process_all(&e);
	get(&e, owner_id, id, &r);
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "ready");
	T_CALL(&e, &r, api_media_upload_reserved(e.c, &ctx, id + 9,
		taken(b.bytes, b.length), b.length, t_callback, &r));
	CHECK_EQ(r.code, API_ENOTFOUND);
	t_result_reset(&r);
	free(b.bytes);
	t_close(&e);
}

static void
start_watching(t_env *e, uint64_t watcher, uint64_t media_id,
	uint64_t owner)
{
	uint64_t args[2] = {media_id, owner};
	rt_message *m = rt_message_alloc(e->rt, WATCHER_T_START, sizeof(args));
	CHECK(m != NULL);
	memcpy(m->payload, args, sizeof(args));
	CHECK_EQ(rt_send_external(e->rt, rt_addr_make(WATCHER_KIND, watcher),
		m), 0);
	t_settle(e);
}

TEST(actors_media_watchers_hear_ready)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	heard_count = 0;
	img_bytes b = jpeg(700, 500, 5);
	char status[32];
	uint64_t id = upload(&e, owner_id, &b, status);
	start_watching(&e, 1, id, owner_id);
	start_watching(&e, 1, id, owner_id); /* idempotent */
	start_watching(&e, 2, id, owner_id + 1); /* not the owner */
	CHECK_EQ(heard_count, 1);
	CHECK_EQ(heard_types[0], MEDIA_MSG_FAILED);
	CHECK_STR_EQ(heard[0].reason, "media of another user");
	process_all(&e);
	CHECK_EQ(heard_count, 2);
	CHECK_EQ(heard_types[1], MEDIA_MSG_READY);
	CHECK_EQ(heard[1].media_id, id);
	CHECK_EQ(heard[1].status, MEDIA_STATUS_READY);
	CHECK_EQ(heard[1].cookie, 77);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	media_hash_hex(b.bytes, b.length, hash);
	CHECK_STR_EQ(heard[1].hash, hash);
	/* Watching a settled item answers at once; a missing one fails. */
	start_watching(&e, 3, id, owner_id);
	CHECK_EQ(heard_count, 3);
	CHECK_EQ(heard_types[2], MEDIA_MSG_READY);
	start_watching(&e, 4, id + 1, owner_id);
	CHECK_EQ(heard_count, 4);
	CHECK_STR_EQ(heard[3].reason, "no such media");
	free(b.bytes);
	t_close(&e);
}

TEST(actors_media_restart_resumes_processing_items)
{
	char files[600];
	snprintf(files, sizeof(files), "%s/files", test_tmpdir());
	t_env e;
	media_open(&e, files, true);
	img_bytes b = jpeg(1000, 800, 6);
	char status[32];
	uint64_t id = upload(&e, owner_id, &b, status);
	CHECK_STR_EQ(status, "processing");
	heard_count = 0;
	start_watching(&e, 1, id, owner_id);
	t_settle(&e);
	/* Stop with the item still queued: nothing processed it. */
	t_close(&e);
	CHECK_EQ(heard_count, 0);

	media_open(&e, files, true);
	/* Recovery re-queued the original; the ledger's wake-up resumes
	 * the item, which joins that job. The test thread is the pool;
	 * nobody asks for the item: the watcher hearing "ready" shows it
	 * was resumed by the restart itself. */
	for (int i = 0; i < 500 &&
		__atomic_load_n(&heard_count, __ATOMIC_SEQ_CST) == 0; i++) {
		while (media_pool_run_one(pool_of(&e)))
			;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_EQ(__atomic_load_n(&heard_count, __ATOMIC_SEQ_CST), 1);
	CHECK_EQ(heard_types[0], MEDIA_MSG_READY);
	CHECK_EQ(heard[0].media_id, id);
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	get(&e, owner_id, id, &r);
	CHECK_EQ(r.code, 0);
	body_str(&r, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "ready");
	media_pool_stats s;
	media_pool_get_stats(pool_of(&e), &s);
	CHECK_EQ(s.processed_total, 1);
	t_result_reset(&r);
	free(b.bytes);
	t_close(&e);
}

/* The post side of "processing → ready": a post made on media that is
 * still processing shows "processing", and once the media settles the
 * post itself says "ready" with its variant URLs, without anybody
 * touching the post again. */
TEST(actors_media_post_turns_ready_with_its_media)
{
	t_env e;
	media_open(&e, test_tmpdir(), false);
	uint64_t author = t_signup(&e, "painter");
	img_bytes b = jpeg(800, 600, 5);
	char status[32];
	uint64_t media_id = upload(&e, author, &b, status);
	CHECK_STR_EQ(status, "processing");

	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	api_ctx ctx = {.user_id = author};
	T_CALL(&e, &r, api_post_create(e.c, &ctx, "first light", media_id,
		t_callback, &r));
	CHECK_MSG(r.code == 0, "post: %d %s", r.code, r.detail);
	uint64_t post_id = api_body_id(r.body, "post_id");
	CHECK(post_id != 0);
	rt_det_run_until_idle(e.rt, 0);
	T_CALL(&e, &r, api_post_get(e.c, &ctx, post_id, t_callback, &r));
	CHECK_EQ(r.code, 0);
	const msgpack_object *media = api_body_get(r.body, "media");
	CHECK(media != NULL);
	CHECK(api_body_str(media, "status", status, sizeof(status)));
	CHECK_STR_EQ(status, "processing");

	process_all(&e);
	T_CALL(&e, &r, api_post_get(e.c, &ctx, post_id, t_callback, &r));
	CHECK_EQ(r.code, 0);
	media = api_body_get(r.body, "media");
	CHECK(media != NULL);
	CHECK(api_body_str(media, "status", status, sizeof(status)));
	CHECK_STR_EQ(status, "ready");
	const msgpack_object *variants = api_body_get(media, "variants");
	CHECK(variants != NULL);
	char url[256];
	CHECK(api_body_str(variants, "large", url, sizeof(url)));
	CHECK(strncmp(url, "/media/", 7) == 0);
	t_result_reset(&r);
	free(b.bytes);
	t_close(&e);
}

/* The ingest worker's gate: the test holds an upload there. */
static sem_t gate_entered, gate_open;

static void
ingest_gate(void *arg)
{
	(void)arg;
	sem_post(&gate_entered);
	sem_wait(&gate_open);
}

/*
 * An upload is checked, hashed and stored on the ingest worker, not on
 * the caller's thread: while the worker holds it (at a test gate), the
 * caller's other calls complete and nothing of the upload is stored nor
 * answered; once released, the answer is the usual one and the item
 * turns ready.
 */
TEST(actors_media_upload_stored_off_the_caller_thread)
{
	t_env e;
	memset(&e, 0, sizeof(e));
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 2;
	rc.log_level = RT_LOG_ERROR;
	CHECK_EQ(rt_create(&rc, &e.rt), 0);
	api_config cfg;
	t_config(&cfg);
	cfg.data_dir = test_tmpdir();
	cfg.media_threads = 1;
	CHECK_EQ(api_create(e.rt, NULL, &cfg, &e.a), 0);
	CHECK_EQ(rt_start(e.rt), 0);
	CHECK_EQ(api_client_create(e.a, NULL, NULL, &e.c), 0);
	media_service *svc = media_service_of(e.a);
	CHECK(svc != NULL);
	CHECK_EQ(sem_init(&gate_entered, 0, 0), 0);
	CHECK_EQ(sem_init(&gate_open, 0, 0), 0);
	media_ingest_set_gate(media_service_ingest(svc), ingest_gate, NULL);

	img_bytes b = jpeg(800, 600, 21);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	media_hash_hex(b.bytes, b.length, hash);
	api_ctx ctx = {.user_id = owner_id};
	t_result up = {0};
	msgpack_unpacked_init(&up.unpacked);
	CHECK_EQ(api_media_upload(e.c, &ctx, taken(b.bytes, b.length),
		b.length, t_callback, &up), 0);
	sem_wait(&gate_entered);
	/* The worker holds the upload; the caller's thread goes on. */
	t_result other = {0};
	msgpack_unpacked_init(&other.unpacked);
	for (int i = 0; i < 3; i++) {
		T_CALL(&e, &other, api_media_reserve(e.c, &ctx, t_callback,
			&other));
		CHECK_EQ(other.code, 0);
	}
	api_client_poll(e.c);
	CHECK(!up.done);
	char path[MEDIA_PATH_BYTES_MAX];
	CHECK_EQ(media_path_original(test_tmpdir(), hash, path, sizeof(path)),
		0);
	CHECK(access(path, F_OK) != 0);
	CHECK(!media_store_has_variants(test_tmpdir(), hash));

	sem_post(&gate_open);
	t_wait(&e, &up);
	CHECK_MSG(up.code == 0, "upload: %d %s", up.code, up.detail);
	uint64_t id = api_body_id(up.body, "media_id");
	CHECK(id != 0);
	char status[32];
	body_str(&up, "status", status, sizeof(status));
	CHECK_STR_EQ(status, "processing");
	/* The pool's thread processes it from the stored original. */
	t_result r = {0};
	msgpack_unpacked_init(&r.unpacked);
	for (int i = 0; i < 600; i++) {
		get(&e, owner_id, id, &r);
		body_str(&r, "status", status, sizeof(status));
		if (strcmp(status, "processing") != 0)
			break;
		usleep(20000);
	}
	CHECK_STR_EQ(status, "ready");
	char served[MEDIA_HASH_HEX_BYTES + 1];
	hash_of(&r, served);
	CHECK_STR_EQ(served, hash);
	CHECK(media_store_has_variants(test_tmpdir(), hash));
	media_ingest_set_gate(media_service_ingest(svc), NULL, NULL);
	t_result_reset(&r);
	t_result_reset(&up);
	t_result_reset(&other);
	free(b.bytes);
	t_close(&e);
	sem_destroy(&gate_entered);
	sem_destroy(&gate_open);
}
