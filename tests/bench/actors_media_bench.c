/*
 * actors_media_bench.c — what processing photos costs.
 *
 * Goal: images processed per second per core for a 12-megapixel JPEG
 * (4000 x 3000) into all four variants; the same through the pool's two
 * threads; the pool's memory peak; and the work an upload costs the
 * ingest worker (header probe, SHA-256 and durable write of 30 MB), off
 * the caller's thread since the gateway's loop must not wait for it.
 *
 * Method: inputs are generated (gradient + noise, quality 90, so they
 * compress like photos: ~2-4 MB each). media_render runs single-threaded
 * (libvips concurrency is 1 per image by design), so its rate is per
 * core. The pool runs on a fresh data directory with distinct images
 * (dedupe would otherwise skip them); its memory peak is VmHWM after
 * resetting it through /proc/self/clear_refs, minus the RSS before.
 * Prints `figure <name> <value> <unit>` lines.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actors/media.h"

/* Renders timed for the per-core rate; a 12 Mpixel render takes a few
 * hundred ms, so this stays within seconds. */
#define BENCH_RENDERS 6
/* Distinct images through the pool: three per thread. */
#define BENCH_POOL_IMAGES 6

static double
seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A /proc/self/status field in kB, or -1. */
static long
status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	char line[256];
	long value = -1;
	size_t n = strlen(field);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			value = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return value;
}

static void
reset_peak(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd >= 0) {
		(void)!write(fd, "5", 1);
		close(fd);
	}
}

static unsigned char *
generate(int seed, size_t *length)
{
	media_generate_spec spec = {.format = MEDIA_GENERATE_JPEG,
		.width = 4000, .height = 3000, .quality = 90, .seed = seed};
	unsigned char *bytes = NULL;
	if (media_vips_generate(&spec, &bytes, length) != 0) {
		fprintf(stderr, "generate failed\n");
		exit(1);
	}
	return bytes;
}

typedef struct pool_wait {
	pthread_mutex_t lock;
	pthread_cond_t done;
	int settled;
	int failed;
} pool_wait;

static uint64_t
bench_clock(void *arg)
{
	(void)arg;
	return (uint64_t)(seconds_now() * 1000.0);
}

static void
bench_done(void *arg, const media_outcome *o)
{
	pool_wait *w = arg;
	pthread_mutex_lock(&w->lock);
	w->settled++;
	if (o->status != MEDIA_STATUS_READY)
		w->failed++;
	pthread_cond_signal(&w->done);
	pthread_mutex_unlock(&w->lock);
}

static void
bench_render(const unsigned char *bytes, size_t length)
{
	media_rendered r;
	char reason[MEDIA_REASON_BYTES_MAX];
	/* warm-up: libvips' first call loads its modules */
	if (media_render(bytes, length, &r, reason) != 0) {
		fprintf(stderr, "render: %s\n", reason);
		exit(1);
	}
	media_rendered_free(&r);
	double start = seconds_now();
	for (int i = 0; i < BENCH_RENDERS; i++) {
		if (media_render(bytes, length, &r, reason) != 0)
			exit(1);
		media_rendered_free(&r);
	}
	double elapsed = seconds_now() - start;
	printf("figure media_render_12mp_per_second_per_core %.2f images/s\n",
		BENCH_RENDERS / elapsed);
	printf("figure media_render_12mp_ms %.0f ms\n",
		elapsed * 1000.0 / BENCH_RENDERS);

	media_probe_result probe;
	start = seconds_now();
	for (int i = 0; i < 100; i++)
		(void)media_probe(bytes, length, &probe, NULL);
	printf("figure media_probe_12mp_us %.0f us\n",
		(seconds_now() - start) * 1e6 / 100);
}

static void
bench_pool(const char *dir)
{
	unsigned char *images[BENCH_POOL_IMAGES];
	size_t lengths[BENCH_POOL_IMAGES];
	char hashes[BENCH_POOL_IMAGES][MEDIA_HASH_HEX_BYTES + 1];
	for (int i = 0; i < BENCH_POOL_IMAGES; i++) {
		images[i] = generate(100 + i, &lengths[i]);
		media_hash_hex(images[i], lengths[i], hashes[i]);
		if (media_store_original(dir, hashes[i], images[i],
			lengths[i]) != 0)
			exit(1);
		free(images[i]);
	}
	pool_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
		0, 0};
	media_pool_config cfg = {
		.data_dir = dir,
		.threads = 2,
		.queue_max = 64,
		.attempts_max = 1,
		.now_ms = bench_clock,
		.done = bench_done,
		.done_arg = &w,
	};
	media_pool *pool = NULL;
	if (media_pool_create(&cfg, &pool) != 0)
		exit(1);
	long rss_before = status_kb("VmRSS");
	reset_peak();
	double start = seconds_now();
	for (int i = 0; i < BENCH_POOL_IMAGES; i++)
		if (media_pool_submit(pool, hashes[i], 1 + (uint64_t)i) != 0)
			exit(1);
	pthread_mutex_lock(&w.lock);
	while (w.settled < BENCH_POOL_IMAGES)
		pthread_cond_wait(&w.done, &w.lock);
	pthread_mutex_unlock(&w.lock);
	double elapsed = seconds_now() - start;
	long peak = status_kb("VmHWM");
	if (w.failed != 0) {
		fprintf(stderr, "%d failed\n", w.failed);
		exit(1);
	}
	printf("figure media_pool_12mp_per_second_2_threads %.2f images/s\n",
		BENCH_POOL_IMAGES / elapsed);
	printf("figure media_pool_12mp_per_second_per_core %.2f images/s\n",
		BENCH_POOL_IMAGES / elapsed / 2.0);
	if (peak > 0 && rss_before > 0)
		printf("figure media_pool_memory_peak_delta %.1f MiB\n",
			(double)(peak - rss_before) / 1024.0);
	media_pool_destroy(pool);
}

static void
bench_ingest(const char *dir)
{
	size_t length = API_UPLOAD_BYTES_MAX;
	unsigned char *bytes = malloc(length);
	if (bytes == NULL)
		exit(1);
	for (size_t i = 0; i < length; i++)
		bytes[i] = (unsigned char)(i * 2654435761u >> 24);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	double start = seconds_now();
	media_hash_hex(bytes, length, hash);
	double hashed = seconds_now();
	if (media_store_original(dir, hash, bytes, length) != 0)
		exit(1);
	double stored = seconds_now();
	printf("figure media_ingest_30mb_sha256_ms %.1f ms\n",
		(hashed - start) * 1000.0);
	printf("figure media_ingest_30mb_store_fsync_ms %.1f ms\n",
		(stored - hashed) * 1000.0);
	free(bytes);
}

int
main(void)
{
	char dir[] = "/tmp/flock-media-bench-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	size_t length;
	unsigned char *bytes = generate(1, &length);
	printf("figure media_input_12mp_jpeg_bytes %zu bytes\n", length);
	bench_render(bytes, length);
	free(bytes);
	bench_pool(dir);
	bench_ingest(dir);
	char command[128];
	snprintf(command, sizeof(command), "rm -rf %s", dir);
	return system(command) == 0 ? 0 : 1;
}
