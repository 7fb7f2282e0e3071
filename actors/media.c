/*
 * media.c — the media pipeline below libvips: format sniffing, the
 * content-addressed store, the bounded processing pool, the media actor
 * kind and the media ledger.
 *
 * Role and layers: see media.h. This file holds everything of the
 * pipeline that is not libvips (media_vips.c) nor an api entry point
 * (api_media.c).
 *
 * Invariants:
 *   - a variant set appears whole: written into <hash>.tmp, each file
 *     fsynced, the directory renamed to <hash> and its parent fsynced;
 *     "directory exists" is "processed", checked before any work;
 *   - at any instant a hash is either in the pool's table (queued or
 *     running) or, if it was processed, stored: the worker commits the
 *     files before it removes the job under the lock, so a submit never
 *     falls between the two;
 *   - the pool's load (waiters, plus jobs nobody waits for) never
 *     exceeds queue_max through media_pool_submit; recovery may add up
 *     to MEDIA_QUEUE_LIMIT jobs found on disk;
 *   - each waiter of a hash hears exactly one outcome per submit;
 *   - a media actor's status only moves forward: none -> awaiting_upload
 *     -> processing -> ready | failed (none -> processing for a direct
 *     upload); a settled item never changes again;
 *   - a processing actor always has either a pending outcome or its
 *     watchdog armed, and the ledger lists it, so neither a lost message
 *     nor a crash leaves it processing.
 *
 * The pool's threads are the one place here that uses threads, files and
 * the OS clock (for timed waits; backoff itself is measured on the
 * runtime's clock through media_pool_config.now_ms). Actor code (the
 * on_message handlers below) touches none of them: it calls
 * media_pool_submit, which only queues.
 *
 * What it deliberately does not do: decode images (media_vips.c), talk
 * to clients (api_media.c), delete variant sets (content-addressed files
 * are shared by every item with the same bytes).
 */
#include "actors/media.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "actors/internal.h"
#include "persistence/persistence.h"


/* Asserts that stay on in release builds (STYLE.md rule 6). */
#define MEDIA_ASSERT(cond)                                                   \
	do {                                                                 \
		if (__builtin_expect(!(cond), 0))                            \
			media_assert_fail(__FILE__, __LINE__, #cond);        \
	} while (0)

static _Noreturn void
media_assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	abort();
}

/* Bytes the sniffer looks at: the longest signature (ISO BMFF ftyp and
 * brand) ends at byte 12. */
#define MEDIA_SNIFF_BYTES 16u
/* Job table growth: starts small, doubles up to MEDIA_QUEUE_LIMIT. */
#define MEDIA_POOL_JOBS_INITIAL 16u

/* ---- formats, statuses, names ------------------------------------------ */

media_format
media_sniff(const void *bytes, size_t length)
{
	static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n',
		0x1a, '\n'};
	/* HEIF/AVIF brands libheif decodes (ISO/IEC 23008-12, AV1 ISOBMFF). */
	static const char brands[][5] = {"heic", "heix", "hevc", "hevx",
		"heim", "heis", "mif1", "msf1", "avif", "avis"};
	const unsigned char *b = bytes;
	if (b == NULL)
		return MEDIA_FORMAT_NONE;
	if (length >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return MEDIA_FORMAT_JPEG;
	if (length >= sizeof(png) && memcmp(b, png, sizeof(png)) == 0)
		return MEDIA_FORMAT_PNG;
	if (length >= 12 && memcmp(b, "RIFF", 4) == 0 &&
		memcmp(b + 8, "WEBP", 4) == 0)
		return MEDIA_FORMAT_WEBP;
	if (length >= 12 && memcmp(b + 4, "ftyp", 4) == 0) {
		for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++)
			if (memcmp(b + 8, brands[i], 4) == 0)
				return MEDIA_FORMAT_HEIF;
	}
	return MEDIA_FORMAT_NONE;
}

const char *
media_format_name(media_format format)
{
	switch (format) {
	case MEDIA_FORMAT_JPEG:
		return "jpeg";
	case MEDIA_FORMAT_PNG:
		return "png";
	case MEDIA_FORMAT_WEBP:
		return "webp";
	case MEDIA_FORMAT_HEIF:
		return "heif";
	case MEDIA_FORMAT_NONE:
		break;
	}
	return "none";
}

const char *
media_status_name(media_status status)
{
	switch (status) {
	case MEDIA_STATUS_AWAITING_UPLOAD:
		return "awaiting_upload";
	case MEDIA_STATUS_PROCESSING:
		return "processing";
	case MEDIA_STATUS_READY:
		return "ready";
	case MEDIA_STATUS_FAILED:
		return "failed";
	case MEDIA_STATUS_NONE:
		break;
	}
	return "none";
}

/* ---- hashes, names, paths ---------------------------------------------- */

void
media_hash_hex(const void *bytes, size_t length, char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[crypto_hash_sha256_BYTES];
	MEDIA_ASSERT(bytes != NULL || length == 0);
	MEDIA_ASSERT(out != NULL);
	crypto_hash_sha256(digest, bytes, length);
	for (size_t i = 0; i < sizeof(digest); i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0xf];
	}
	out[MEDIA_HASH_HEX_BYTES] = '\0';
	MEDIA_ASSERT(media_hash_valid(out));
}

bool
media_hash_valid(const char *hash)
{
	if (hash == NULL)
		return false;
	for (size_t i = 0; i < MEDIA_HASH_HEX_BYTES; i++) {
		char c = hash[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return hash[MEDIA_HASH_HEX_BYTES] == '\0';
}

int
media_variant_index(const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++)
		if (strcmp(name, api_media_variants[i]) == 0)
			return i;
	return -1;
}

/* snprintf into path; API_EINVALID when cut. */
static int
media_path_format(char *path, size_t path_size, const char *format, ...)
	__attribute__((format(printf, 3, 4)));
static int
media_path_format(char *path, size_t path_size, const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	int n = vsnprintf(path, path_size, format, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= path_size) {
		if (path_size > 0)
			path[0] = '\0';
		return API_EINVALID;
	}
	return 0;
}

int
media_path_original(const char *data_dir, const char *hash, char *path,
	size_t path_size)
{
	MEDIA_ASSERT(data_dir != NULL);
	MEDIA_ASSERT(media_hash_valid(hash));
	return media_path_format(path, path_size, "%s/media/originals/%s",
		data_dir, hash);
}

int
media_path_variant(const char *data_dir, const char *hash, int variant,
	char *path, size_t path_size)
{
	MEDIA_ASSERT(data_dir != NULL);
	MEDIA_ASSERT(media_hash_valid(hash));
	MEDIA_ASSERT(variant >= 0 && variant < API_MEDIA_VARIANTS_COUNT);
	return media_path_format(path, path_size, "%s/media/%.2s/%s/%s.jpg",
		data_dir, hash, hash, api_media_variants[variant]);
}

/* <data_dir>/media/<hh>/<hash><suffix> */
static int
media_path_set(const char *data_dir, const char *hash, const char *suffix,
	char *path, size_t path_size)
{
	return media_path_format(path, path_size, "%s/media/%.2s/%s%s",
		data_dir, hash, hash, suffix);
}

int
media_variant_url(const char *base_url, const char *hash, int variant,
	char *buf, size_t size)
{
	if (base_url == NULL || !media_hash_valid(hash) || variant < 0 ||
		variant >= API_MEDIA_VARIANTS_COUNT)
		return API_EINVALID;
	return media_path_format(buf, size, "%s/%s/%s", base_url, hash,
		api_media_variants[variant]);
}

/* ---- files ------------------------------------------------------------- */

/* mkdir that accepts an existing directory. 0 or -errno. */
static int
media_mkdir(const char *path)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* fsync of the directory holding a renamed entry. 0 or -errno. */
static int
media_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* Writes bytes to a new file at path and fsyncs it. 0 or -errno. */
static int
media_write_file(const char *path, const void *bytes, size_t length)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	const unsigned char *p = bytes;
	size_t left = length;
	while (left > 0) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		p += n;
		left -= (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0)
		return -errno;
	return 0;
fail:;
	int rc = errno != 0 ? -errno : -EIO;
	close(fd);
	unlink(path);
	return rc;
}

/* Reads a whole file of at most max bytes into *out (owned). 0, -ENOENT,
 * -EFBIG, or another -errno. */
static int
media_read_file(const char *path, size_t max, unsigned char **out,
	size_t *length)
{
	*out = NULL;
	*length = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail_fd;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto fail_fd;
	}
	size_t size = (size_t)st.st_size;
	unsigned char *bytes = malloc(size > 0 ? size : 1);
	if (bytes == NULL) {
		rc = -ENOMEM;
		goto fail_fd;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, bytes + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto fail_bytes;
		}
		got += (size_t)n;
	}
	close(fd);
	*out = bytes;
	*length = size;
	return 0;
fail_bytes:
	free(bytes);
fail_fd:
	close(fd);
	return rc;
}

/* Creates <data_dir>/media and media/originals. 0 or -errno. */
static int
media_store_dirs(const char *data_dir)
{
	char path[MEDIA_PATH_BYTES_MAX];
	int rc = media_mkdir(data_dir);
	if (rc != 0)
		return rc;
	if (media_path_format(path, sizeof(path), "%s/media", data_dir) != 0)
		return -ENAMETOOLONG;
	if ((rc = media_mkdir(path)) != 0)
		return rc;
	if (media_path_format(path, sizeof(path), "%s/media/originals",
		data_dir) != 0)
		return -ENAMETOOLONG;
	return media_mkdir(path);
}

int
media_store_original(const char *data_dir, const char *hash,
	const void *bytes, size_t length)
{
	/* Uploads of the same bytes may race: each writes its own
	 * temporary file and the renames land the same content. */
	static atomic_uint_fast64_t tmp_counter;
	char path[MEDIA_PATH_BYTES_MAX], tmp[MEDIA_PATH_BYTES_MAX];
	char dir[MEDIA_PATH_BYTES_MAX];
	MEDIA_ASSERT(media_hash_valid(hash));
	MEDIA_ASSERT(length <= API_UPLOAD_BYTES_MAX);
	if (media_store_dirs(data_dir) != 0)
		return API_EINTERNAL;
	uint64_t n = atomic_fetch_add(&tmp_counter, 1);
	if (media_path_original(data_dir, hash, path, sizeof(path)) != 0 ||
		media_path_format(tmp, sizeof(tmp), "%s.tmp-%ld-%llu", path,
			(long)getpid(), (unsigned long long)n) != 0 ||
		media_path_format(dir, sizeof(dir), "%s/media/originals",
			data_dir) != 0)
		return API_EINVALID;
	if (media_write_file(tmp, bytes, length) != 0)
		return API_EINTERNAL;
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return API_EINTERNAL;
	}
	if (media_fsync_dir(dir) != 0)
		return API_EINTERNAL;
	return 0;
}

bool
media_store_has_variants(const char *data_dir, const char *hash)
{
	char path[MEDIA_PATH_BYTES_MAX];
	struct stat st;
	if (media_path_set(data_dir, hash, "", path, sizeof(path)) != 0)
		return false;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Removes a directory of plain files (a temporary variant set). */
static void
media_remove_flat_dir(const char *path)
{
	DIR *d = opendir(path);
	if (d != NULL) {
		struct dirent *e;
		char file[MEDIA_PATH_BYTES_MAX];
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			if (media_path_format(file, sizeof(file), "%s/%s",
				path, e->d_name) == 0)
				unlink(file);
		}
		closedir(d);
	}
	rmdir(path);
}

/* Stores a rendered set whole (see the invariants). 0 or -errno. */
static int
media_store_variants(const char *data_dir, const char *hash,
	const media_rendered *r)
{
	char parent[MEDIA_PATH_BYTES_MAX], tmp[MEDIA_PATH_BYTES_MAX];
	char final[MEDIA_PATH_BYTES_MAX], file[MEDIA_PATH_BYTES_MAX];
	if (media_path_format(parent, sizeof(parent), "%s/media/%.2s",
		data_dir, hash) != 0 ||
		media_path_set(data_dir, hash, ".tmp", tmp, sizeof(tmp)) != 0 ||
		media_path_set(data_dir, hash, "", final, sizeof(final)) != 0)
		return -ENAMETOOLONG;
	int rc = media_store_dirs(data_dir);
	if (rc == 0)
		rc = media_mkdir(parent);
	if (rc != 0)
		return rc;
	/* A crash may have left a partial set: start it over. */
	media_remove_flat_dir(tmp);
	if (mkdir(tmp, 0755) != 0)
		return -errno;
	for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
		if (media_path_format(file, sizeof(file), "%s/%s.jpg", tmp,
			api_media_variants[i]) != 0) {
			rc = -ENAMETOOLONG;
			goto fail;
		}
		rc = media_write_file(file, r->variants[i].bytes,
			r->variants[i].length);
		if (rc != 0)
			goto fail;
	}
	if ((rc = media_fsync_dir(tmp)) != 0)
		goto fail;
	if (rename(tmp, final) != 0) {
		/* Stored already by someone else: theirs is as good. */
		rc = (errno == EEXIST || errno == ENOTEMPTY) ? 0 : -errno;
		goto fail;
	}
	return media_fsync_dir(parent);
fail:
	media_remove_flat_dir(tmp);
	return rc;
}

/* ---- the pool ---------------------------------------------------------- */

typedef struct media_job {
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	uint32_t attempts;           /* tries made */
	uint64_t due_ms;             /* pool clock; not before this */
	uint64_t sequence;           /* ties on due_ms break on it */
	bool running;
	uint32_t waiters_count;
	uint32_t waiters_capacity;
	uint64_t *waiters;           /* media ids */
} media_job;

struct media_pool {
	media_pool_config cfg;       /* data_dir points at our copy */
	char *data_dir;
	pthread_mutex_t lock;
	pthread_cond_t wake;         /* CLOCK_MONOTONIC */
	media_job **jobs;            /* unordered; at most MEDIA_QUEUE_LIMIT */
	uint32_t jobs_count;
	uint32_t jobs_capacity;
	uint32_t load;               /* waiters + jobs without waiters */
	uint32_t running;
	uint64_t sequence;
	bool stopping;
	pthread_t threads[MEDIA_THREADS_MAX];
	uint32_t threads_started;
	media_pool_stats stats;
};

/* A job's weight against queue_max. */
static uint32_t
media_job_load(const media_job *job)
{
	return job->waiters_count > 0 ? job->waiters_count : 1u;
}

static uint64_t
media_pool_now(media_pool *pool)
{
	return pool->cfg.now_ms(pool->cfg.clock_arg);
}

static uint64_t
media_pool_backoff_ms(const media_pool *pool, uint32_t attempts)
{
	MEDIA_ASSERT(attempts >= 1);
	uint64_t delay = pool->cfg.backoff_base_ms;
	for (uint32_t i = 1; i < attempts && delay < MEDIA_BACKOFF_MAX_MS; i++)
		delay *= 2;
	return delay < MEDIA_BACKOFF_MAX_MS ? delay : MEDIA_BACKOFF_MAX_MS;
}

/* Under the lock. */
static media_job *
media_pool_find(media_pool *pool, const char *hash)
{
	for (uint32_t i = 0; i < pool->jobs_count; i++)
		if (strcmp(pool->jobs[i]->hash, hash) == 0)
			return pool->jobs[i];
	return NULL;
}

/* Under the lock. */
static bool
media_job_has_waiter(const media_job *job, uint64_t media_id)
{
	for (uint32_t i = 0; i < job->waiters_count; i++)
		if (job->waiters[i] == media_id)
			return true;
	return false;
}

/* Under the lock. 0 or API_EUNAVAILABLE (allocation). */
static int
media_job_add_waiter(media_job *job, uint64_t media_id)
{
	if (media_id == 0 || media_job_has_waiter(job, media_id))
		return 0;
	if (job->waiters_count == job->waiters_capacity) {
		uint32_t capacity = job->waiters_capacity ?
			job->waiters_capacity * 2 : 2;
		uint64_t *w = realloc(job->waiters, capacity * sizeof(*w));
		if (w == NULL)
			return API_EUNAVAILABLE;
		job->waiters = w;
		job->waiters_capacity = capacity;
	}
	job->waiters[job->waiters_count++] = media_id;
	return 0;
}

/* Under the lock: a new queued job for hash, due now. */
static media_job *
media_pool_add_job(media_pool *pool, const char *hash)
{
	if (pool->jobs_count == MEDIA_QUEUE_LIMIT)
		return NULL;
	if (pool->jobs_count == pool->jobs_capacity) {
		uint32_t capacity = pool->jobs_capacity * 2;
		media_job **jobs = realloc(pool->jobs,
			capacity * sizeof(*jobs));
		if (jobs == NULL)
			return NULL;
		pool->jobs = jobs;
		pool->jobs_capacity = capacity;
	}
	media_job *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	memcpy(job->hash, hash, MEDIA_HASH_HEX_BYTES + 1);
	job->due_ms = media_pool_now(pool);
	job->sequence = ++pool->sequence;
	pool->jobs[pool->jobs_count++] = job;
	return job;
}

/* Under the lock: unlinks job from the table (the caller frees it). */
static void
media_pool_remove_job(media_pool *pool, media_job *job)
{
	for (uint32_t i = 0; i < pool->jobs_count; i++) {
		if (pool->jobs[i] == job) {
			pool->jobs[i] = pool->jobs[--pool->jobs_count];
			return;
		}
	}
	MEDIA_ASSERT(!"job not in the table");
}

int
media_pool_submit(media_pool *pool, const char *hash, uint64_t media_id)
{
	MEDIA_ASSERT(pool != NULL);
	MEDIA_ASSERT(media_hash_valid(hash));
	int rc = 0;
	pthread_mutex_lock(&pool->lock);
	media_job *job = media_pool_find(pool, hash);
	if (job != NULL) {
		uint32_t before = media_job_load(job);
		/* A waiterless (recovered) job already weighs 1: its first
		 * waiter takes that slot, later ones add one each. */
		if (media_id != 0 && job->waiters_count > 0 &&
			!media_job_has_waiter(job, media_id) &&
			pool->load >= pool->cfg.queue_max) {
			rc = API_EUNAVAILABLE;
			goto done;
		}
		if ((rc = media_job_add_waiter(job, media_id)) != 0)
			goto done;
		pool->load += media_job_load(job) - before;
		pool->stats.deduplicated_total++;
		goto done;
	}
	if (media_store_has_variants(pool->data_dir, hash)) {
		pool->stats.deduplicated_total++;
		rc = MEDIA_SUBMIT_READY;
		goto done;
	}
	if (pool->load >= pool->cfg.queue_max) {
		rc = API_EUNAVAILABLE;
		goto done;
	}
	job = media_pool_add_job(pool, hash);
	if (job == NULL) {
		rc = API_EUNAVAILABLE;
		goto done;
	}
	if (media_job_add_waiter(job, media_id) != 0) {
		media_pool_remove_job(pool, job);
		free(job);
		rc = API_EUNAVAILABLE;
		goto done;
	}
	pool->load += 1;
	pthread_cond_signal(&pool->wake);
done:
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

/* Under the lock: the due, idle job with the smallest (due, sequence);
 * *next_due gets the earliest due time of any idle job. */
static media_job *
media_pool_pick(media_pool *pool, uint64_t now, uint64_t *next_due)
{
	media_job *best = NULL;
	*next_due = UINT64_MAX;
	for (uint32_t i = 0; i < pool->jobs_count; i++) {
		media_job *job = pool->jobs[i];
		if (job->running)
			continue;
		if (job->due_ms < *next_due)
			*next_due = job->due_ms;
		if (job->due_ms > now)
			continue;
		if (best == NULL || job->due_ms < best->due_ms ||
			(job->due_ms == best->due_ms &&
				job->sequence < best->sequence))
			best = job;
	}
	return best;
}

/* How processing one hash ended. */
typedef enum media_try {
	MEDIA_TRY_READY = 0,
	MEDIA_TRY_RETRY = 1,         /* may work next time */
	MEDIA_TRY_FAIL = 2,          /* never will: fail now */
} media_try;

/* One attempt at hash, without the lock. Fills reason on failure. */
static media_try
media_pool_try(media_pool *pool, const char *hash, char *reason)
{
	char path[MEDIA_PATH_BYTES_MAX];
	reason[0] = '\0';
	if (media_store_has_variants(pool->data_dir, hash))
		return MEDIA_TRY_READY;
	if (media_path_original(pool->data_dir, hash, path, sizeof(path)) != 0) {
		snprintf(reason, MEDIA_REASON_BYTES_MAX, "path too long");
		return MEDIA_TRY_FAIL;
	}
	unsigned char *bytes = NULL;
	size_t length = 0;
	int rc = media_read_file(path, API_UPLOAD_BYTES_MAX, &bytes, &length);
	if (rc == -ENOENT || rc == -EFBIG) {
		snprintf(reason, MEDIA_REASON_BYTES_MAX, "original %s",
			rc == -ENOENT ? "missing" : "too large");
		return MEDIA_TRY_FAIL;
	}
	if (rc != 0) {
		snprintf(reason, MEDIA_REASON_BYTES_MAX, "read original: %s",
			strerror(-rc));
		return MEDIA_TRY_RETRY;
	}
	char actual[MEDIA_HASH_HEX_BYTES + 1];
	media_hash_hex(bytes, length, actual);
	if (strcmp(actual, hash) != 0) {
		free(bytes);
		snprintf(reason, MEDIA_REASON_BYTES_MAX,
			"original does not match its hash");
		return MEDIA_TRY_FAIL;
	}
	media_rendered rendered;
	rc = media_render(bytes, length, &rendered, reason);
	free(bytes);
	if (rc != 0)
		return MEDIA_TRY_RETRY;
	rc = media_store_variants(pool->data_dir, hash, &rendered);
	media_rendered_free(&rendered);
	if (rc != 0) {
		snprintf(reason, MEDIA_REASON_BYTES_MAX, "store variants: %s",
			strerror(-rc));
		return MEDIA_TRY_RETRY;
	}
	return MEDIA_TRY_READY;
}

/* Processes job (marked running by the caller, lock not held), then
 * settles it or schedules its retry. Takes the lock itself. */
static void
media_pool_process(media_pool *pool, media_job *job)
{
	char reason[MEDIA_REASON_BYTES_MAX];
	media_try result = media_pool_try(pool, job->hash, reason);
	if (result != MEDIA_TRY_READY) {
		char path[MEDIA_PATH_BYTES_MAX];
		/* The last failure drops the original (no unbounded pile of
		 * undecodable uploads); the dead letter keeps the reason. */
		bool last = result == MEDIA_TRY_FAIL ||
			job->attempts + 1 >= pool->cfg.attempts_max;
		if (last && media_path_original(pool->data_dir, job->hash, path,
			sizeof(path)) == 0)
			unlink(path);
	} else {
		char path[MEDIA_PATH_BYTES_MAX];
		if (media_path_original(pool->data_dir, job->hash, path,
			sizeof(path)) == 0)
			unlink(path);
	}
	pthread_mutex_lock(&pool->lock);
	job->attempts++;
	job->running = false;
	pool->running--;
	if (result == MEDIA_TRY_RETRY && job->attempts < pool->cfg.attempts_max) {
		job->due_ms = media_pool_now(pool) +
			media_pool_backoff_ms(pool, job->attempts);
		pool->stats.retries_total++;
		pthread_cond_broadcast(&pool->wake);
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	media_pool_remove_job(pool, job);
	pool->load -= media_job_load(job);
	if (result == MEDIA_TRY_READY)
		pool->stats.processed_total++;
	else
		pool->stats.failed_total++;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);

	/* Waiters joined under the lock; none can join a removed job. */
	media_outcome o;
	memset(&o, 0, sizeof(o));
	memcpy(o.hash, job->hash, sizeof(o.hash));
	o.status = result == MEDIA_TRY_READY ? MEDIA_STATUS_READY :
		MEDIA_STATUS_FAILED;
	o.attempts = job->attempts;
	if (result != MEDIA_TRY_READY)
		memcpy(o.reason, reason, sizeof(o.reason));
	for (uint32_t i = 0; i < job->waiters_count; i++) {
		o.media_id = job->waiters[i];
		pool->cfg.done(pool->cfg.done_arg, &o);
	}
	free(job->waiters);
	free(job);
}

/* Absolute CLOCK_MONOTONIC time delay_ms from now, for timed waits. */
static struct timespec
media_deadline(uint64_t delay_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(delay_ms / 1000);
	ts.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static void *
media_pool_thread(void *arg)
{
	media_pool *pool = arg;
	pthread_mutex_lock(&pool->lock);
	while (!pool->stopping) {
		uint64_t now = media_pool_now(pool), next_due;
		media_job *job = media_pool_pick(pool, now, &next_due);
		if (job == NULL) {
			if (next_due == UINT64_MAX) {
				pthread_cond_wait(&pool->wake, &pool->lock);
			} else {
				struct timespec ts = media_deadline(
					next_due - now);
				pthread_cond_timedwait(&pool->wake, &pool->lock,
					&ts);
			}
			continue;
		}
		job->running = true;
		pool->running++;
		pthread_mutex_unlock(&pool->lock);
		media_pool_process(pool, job);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	media_vips_thread_done();
	return NULL;
}

bool
media_pool_run_one(media_pool *pool)
{
	uint64_t next_due;
	pthread_mutex_lock(&pool->lock);
	media_job *job = media_pool_pick(pool, media_pool_now(pool), &next_due);
	if (job != NULL) {
		job->running = true;
		pool->running++;
	}
	pthread_mutex_unlock(&pool->lock);
	if (job == NULL)
		return false;
	media_pool_process(pool, job);
	return true;
}

uint64_t
media_pool_next_due_ms(media_pool *pool)
{
	uint64_t next_due;
	pthread_mutex_lock(&pool->lock);
	(void)media_pool_pick(pool, 0, &next_due);
	pthread_mutex_unlock(&pool->lock);
	return next_due;
}

void
media_pool_get_stats(media_pool *pool, media_pool_stats *out)
{
	pthread_mutex_lock(&pool->lock);
	*out = pool->stats;
	out->queued = pool->jobs_count - pool->running;
	out->running = pool->running;
	out->waiters = pool->load;
	pthread_mutex_unlock(&pool->lock);
}

int
media_pool_recover(media_pool *pool)
{
	char dir[MEDIA_PATH_BYTES_MAX], path[MEDIA_PATH_BYTES_MAX];
	if (media_path_format(dir, sizeof(dir), "%s/media/originals",
		pool->data_dir) != 0)
		return API_EINTERNAL;
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : API_EINTERNAL;
	int queued = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (!media_hash_valid(e->d_name)) {
			/* A temporary file of an upload a crash cut short. */
			if (strstr(e->d_name, ".tmp") != NULL &&
				media_path_format(path, sizeof(path), "%s/%s",
					dir, e->d_name) == 0)
				unlink(path);
			continue;
		}
		pthread_mutex_lock(&pool->lock);
		media_job *job = media_pool_find(pool, e->d_name);
		if (job == NULL) {
			job = media_pool_add_job(pool, e->d_name);
			if (job != NULL) {
				pool->load += 1;
				queued++;
			}
		}
		pthread_cond_signal(&pool->wake);
		pthread_mutex_unlock(&pool->lock);
	}
	closedir(d);
	return queued;
}

int
media_pool_create(const media_pool_config *cfg, media_pool **out)
{
	MEDIA_ASSERT(cfg != NULL);
	MEDIA_ASSERT(out != NULL);
	*out = NULL;
	if (cfg->data_dir == NULL || cfg->now_ms == NULL || cfg->done == NULL ||
		cfg->threads > MEDIA_THREADS_MAX || cfg->queue_max == 0 ||
		cfg->queue_max > MEDIA_QUEUE_LIMIT || cfg->attempts_max == 0 ||
		cfg->attempts_max > MEDIA_ATTEMPTS_LIMIT)
		return API_EINVALID;
	/* libvips and the directories come with the first upload, so an
	 * api that never sees one (most tests) pays for neither. */
	if (sodium_init() < 0)
		return API_EINTERNAL;
	media_pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return API_EINTERNAL;
	pool->cfg = *cfg;
	if (pool->cfg.backoff_base_ms == 0)
		pool->cfg.backoff_base_ms = MEDIA_BACKOFF_BASE_MS;
	pool->data_dir = strdup(cfg->data_dir);
	pool->jobs_capacity = MEDIA_POOL_JOBS_INITIAL;
	pool->jobs = calloc(pool->jobs_capacity, sizeof(*pool->jobs));
	if (pool->data_dir == NULL || pool->jobs == NULL)
		goto fail_memory;
	pool->cfg.data_dir = pool->data_dir;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&pool->lock, NULL);
	for (uint32_t i = 0; i < cfg->threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, media_pool_thread,
			pool) != 0) {
			media_pool_destroy(pool);
			return API_EINTERNAL;
		}
		pool->threads_started++;
	}
	*out = pool;
	return 0;
fail_memory:
	free(pool->jobs);
	free(pool->data_dir);
	free(pool);
	return API_EINTERNAL;
}

void
media_pool_destroy(media_pool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (uint32_t i = 0; i < pool->threads_started; i++)
		pthread_join(pool->threads[i], NULL);
	/* Queued items stay as originals on disk: recovery finds them. */
	for (uint32_t i = 0; i < pool->jobs_count; i++) {
		free(pool->jobs[i]->waiters);
		free(pool->jobs[i]);
	}
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->jobs);
	free(pool->data_dir);
	free(pool);
}

/* ---- msgpack sanity ------------------------------------------------------ */

/* Nesting the stored forms use is 3; anything deeper is not ours. */
#define MEDIA_MSGPACK_DEPTH_MAX 8u
/* Stored state is a few hundred bytes; a ledger holds up to 64 Ki
 * processing ids and 1 Ki dead letters, well under this. */
#define MEDIA_STORED_BYTES_MAX (4u << 20)

/*
 * Walks one msgpack object at *offset without allocating, checking that
 * every container declares no more elements than bytes remain (each
 * takes at least one) and that nesting stays shallow. msgpack-c's
 * unpacker allocates a container's declared size up front, so a 5-byte
 * input declaring 2^32 elements must never reach it.
 */
static bool
media_msgpack_walk(const unsigned char *p, size_t length, size_t *offset,
	unsigned depth)
{
	if (depth > MEDIA_MSGPACK_DEPTH_MAX || *offset >= length)
		return false;
	size_t i = *offset;
	uint8_t b = p[i++];
	uint64_t items = 0, skip = 0;
	size_t width = 0;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
		skip = 0;
	} else if (b >= 0x80 && b <= 0x8f) {
		items = 2u * (b & 0x0f);
	} else if (b >= 0x90 && b <= 0x9f) {
		items = b & 0x0f;
	} else if (b >= 0xa0 && b <= 0xbf) {
		skip = b & 0x1f;
	} else {
		switch (b) {
		case 0xcc: case 0xd0: skip = 1; break;
		case 0xcd: case 0xd1: skip = 2; break;
		case 0xca: case 0xce: case 0xd2: skip = 4; break;
		case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
		case 0xd4: skip = 2; break;
		case 0xd5: skip = 3; break;
		case 0xd6: skip = 5; break;
		case 0xd7: skip = 9; break;
		case 0xd8: skip = 17; break;
		case 0xc4: case 0xd9: width = 1; break;
		case 0xc5: case 0xda: width = 2; break;
		case 0xc6: case 0xdb: width = 4; break;
		case 0xc7: width = 1; skip = 1; break;
		case 0xc8: width = 2; skip = 1; break;
		case 0xc9: width = 4; skip = 1; break;
		case 0xdc: case 0xde: width = 2; break;
		case 0xdd: case 0xdf: width = 4; break;
		default: return false; /* 0xc1 is never used */
		}
		if (width > 0) {
			if (length - i < width)
				return false;
			uint64_t n = 0;
			for (size_t k = 0; k < width; k++)
				n = (n << 8) | p[i + k];
			i += width;
			if (b == 0xdc || b == 0xdd)
				items = n;
			else if (b == 0xde || b == 0xdf)
				items = 2 * n;
			else
				skip += n; /* str, bin, ext: n bytes (+ type) */
		}
	}
	if (skip > length - i)
		return false;
	i += (size_t)skip;
	if (items > length - i)
		return false;
	for (uint64_t k = 0; k < items; k++) {
		if (!media_msgpack_walk(p, length, &i, depth + 1))
			return false;
	}
	*offset = i;
	return true;
}

/* Unpacks exactly one sane object spanning all of bytes into u. */
static bool
media_msgpack_unpack(msgpack_unpacked *u, const void *bytes, size_t length)
{
	size_t offset = 0;
	if (bytes == NULL || length == 0 || length > MEDIA_STORED_BYTES_MAX ||
		!media_msgpack_walk(bytes, length, &offset, 0) ||
		offset != length)
		return false;
	offset = 0;
	return msgpack_unpack_next(u, bytes, length, &offset) ==
		MSGPACK_UNPACK_SUCCESS && offset == length;
}

static bool
media_obj_u64(const msgpack_object *o, uint64_t max, uint64_t *out)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
		return false;
	*out = o->via.u64;
	return true;
}

/* A string of fewer than size bytes without NULs, copied with a NUL. */
static bool
media_obj_str(const msgpack_object *o, char *out, size_t size)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size ||
		memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
		return false;
	memcpy(out, o->via.str.ptr, o->via.str.size);
	out[o->via.str.size] = '\0';
	return true;
}

static bool
media_key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
		memcmp(k->via.str.ptr, name, n) == 0;
}

static void
media_pack_str(msgpack_packer *p, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(p, n);
	msgpack_pack_str_body(p, s, n);
}

/* ---- the media actor's stored state ---------------------------------------- */

/* Stored format version of media_state. */
#define MEDIA_STATE_VERSION 1u
/* Keys of the stored map, in the order they are written. */
static const char *const media_state_keys[] = {"v", "id", "owner",
	"status", "hash", "reason", "attempts", "created_ms", "settled_ms",
	"watchers"};
#define MEDIA_STATE_KEYS_COUNT 10u

/* Status and hash agree: no hash before the upload, a valid one after. */
static bool
media_state_consistent(const media_state *st)
{
	if (st->status > MEDIA_STATUS_FAILED)
		return false;
	if (st->status == MEDIA_STATUS_NONE ||
		st->status == MEDIA_STATUS_AWAITING_UPLOAD)
		return st->hash[0] == '\0';
	if (st->status == MEDIA_STATUS_FAILED && st->hash[0] == '\0')
		return true; /* a reservation that never got its bytes */
	return media_hash_valid(st->hash);
}

int
media_state_encode(const media_state *st, rt_buffer *out)
{
	MEDIA_ASSERT(st != NULL);
	MEDIA_ASSERT(media_state_consistent(st));
	MEDIA_ASSERT(st->watchers_count <= MEDIA_WATCHERS_MAX);
	msgpack_sbuffer sb;
	msgpack_packer p;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&p, &sb, msgpack_sbuffer_write);
	const char *const *k = media_state_keys;
	msgpack_pack_map(&p, MEDIA_STATE_KEYS_COUNT);
	media_pack_str(&p, *k++);
	msgpack_pack_uint32(&p, MEDIA_STATE_VERSION);
	media_pack_str(&p, *k++);
	msgpack_pack_uint64(&p, st->media_id);
	media_pack_str(&p, *k++);
	msgpack_pack_uint64(&p, st->owner_id);
	media_pack_str(&p, *k++);
	msgpack_pack_uint8(&p, st->status);
	media_pack_str(&p, *k++);
	media_pack_str(&p, st->hash);
	media_pack_str(&p, *k++);
	media_pack_str(&p, st->reason);
	media_pack_str(&p, *k++);
	msgpack_pack_uint32(&p, st->attempts);
	media_pack_str(&p, *k++);
	msgpack_pack_uint64(&p, st->created_ms);
	media_pack_str(&p, *k++);
	msgpack_pack_uint64(&p, st->settled_ms);
	media_pack_str(&p, *k++);
	msgpack_pack_array(&p, st->watchers_count);
	for (uint32_t i = 0; i < st->watchers_count; i++) {
		const media_watcher *w = &st->watchers[i];
		msgpack_pack_array(&p, 4);
		msgpack_pack_uint32(&p, w->addr.kind);
		msgpack_pack_uint64(&p, w->addr.id);
		msgpack_pack_uint32(&p, w->type);
		msgpack_pack_uint64(&p, w->cookie);
	}
	int rc = rt_buffer_append(out, sb.data, sb.size) == 0 ? 0 : RT_ENOMEM;
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static bool
media_state_decode_watchers(media_state *st, const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_ARRAY ||
		o->via.array.size > MEDIA_WATCHERS_MAX)
		return false;
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *w = &o->via.array.ptr[i];
		uint64_t kind, id, type, cookie;
		if (w->type != MSGPACK_OBJECT_ARRAY || w->via.array.size != 4 ||
			!media_obj_u64(&w->via.array.ptr[0], RT_KINDS_MAX - 1,
				&kind) ||
			!media_obj_u64(&w->via.array.ptr[1], UINT64_MAX, &id) ||
			!media_obj_u64(&w->via.array.ptr[2], UINT32_MAX, &type) ||
			!media_obj_u64(&w->via.array.ptr[3], UINT64_MAX, &cookie))
			return false;
		st->watchers[i].addr = rt_addr_make((uint32_t)kind, id);
		st->watchers[i].type = (uint32_t)type;
		st->watchers[i].cookie = cookie;
	}
	st->watchers_count = o->via.array.size;
	return true;
}

/* One key/value of the stored map into st; false if malformed. */
static bool
media_state_decode_field(media_state *st, unsigned index,
	const msgpack_object *v)
{
	uint64_t x;
	switch (index) {
	case 0:
		return media_obj_u64(v, UINT32_MAX, &x) &&
			x == MEDIA_STATE_VERSION;
	case 1:
		return media_obj_u64(v, UINT64_MAX, &st->media_id);
	case 2:
		return media_obj_u64(v, UINT64_MAX, &st->owner_id);
	case 3:
		if (!media_obj_u64(v, MEDIA_STATUS_FAILED, &x))
			return false;
		st->status = (uint8_t)x;
		return true;
	case 4:
		return media_obj_str(v, st->hash, sizeof(st->hash));
	case 5:
		return media_obj_str(v, st->reason, sizeof(st->reason));
	case 6:
		if (!media_obj_u64(v, UINT32_MAX, &x))
			return false;
		st->attempts = (uint32_t)x;
		return true;
	case 7:
		return media_obj_u64(v, UINT64_MAX, &st->created_ms);
	case 8:
		return media_obj_u64(v, UINT64_MAX, &st->settled_ms);
	case 9:
		return media_state_decode_watchers(st, v);
	default:
		return false;
	}
}

int
media_state_decode(media_state *st, const void *bytes, size_t length)
{
	MEDIA_ASSERT(st != NULL);
	memset(st, 0, sizeof(*st));
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = RT_ECORRUPT;
	if (!media_msgpack_unpack(&u, bytes, length))
		goto done;
	const msgpack_object *root = &u.data;
	if (root->type != MSGPACK_OBJECT_MAP ||
		root->via.map.size != MEDIA_STATE_KEYS_COUNT)
		goto done;
	uint32_t seen = 0;
	for (uint32_t i = 0; i < root->via.map.size; i++) {
		const msgpack_object_kv *kv = &root->via.map.ptr[i];
		unsigned index = MEDIA_STATE_KEYS_COUNT;
		for (unsigned k = 0; k < MEDIA_STATE_KEYS_COUNT; k++)
			if (media_key_is(&kv->key, media_state_keys[k]))
				index = k;
		if (index == MEDIA_STATE_KEYS_COUNT || (seen & (1u << index)) ||
			!media_state_decode_field(st, index, &kv->val))
			goto done;
		seen |= 1u << index;
	}
	if (seen != (1u << MEDIA_STATE_KEYS_COUNT) - 1u ||
		!media_state_consistent(st))
		goto done;
	rc = 0;
done:
	msgpack_unpacked_destroy(&u);
	if (rc != 0)
		memset(st, 0, sizeof(*st));
	return rc;
}

/* ---- the service ------------------------------------------------------------- */

/* Services per process: one per runtime; the simulator's clusters stay
 * far below it. */
#define MEDIA_SERVICES_MAX 64u

struct media_service {
	rt_runtime *rt;
	const api *owner;
	char *data_dir;
	char *base_url;
	uint64_t ask_timeout_ms;
	media_pool *pool;
	media_ingest *ingest;
};

static struct {
	_Atomic(rt_runtime *) rt;
	_Atomic(const api *) owner;
	_Atomic(media_service *) svc;
} media_services[MEDIA_SERVICES_MAX];
static pthread_mutex_t media_services_lock = PTHREAD_MUTEX_INITIALIZER;

media_service *
media_service_of(const api *a)
{
	if (a == NULL)
		return NULL;
	for (uint32_t i = 0; i < MEDIA_SERVICES_MAX; i++)
		if (atomic_load_explicit(&media_services[i].owner,
			memory_order_acquire) == a)
			return atomic_load_explicit(&media_services[i].svc,
				memory_order_acquire);
	return NULL;
}

media_service *
media_service_of_runtime(rt_runtime *rt)
{
	if (rt == NULL)
		return NULL;
	for (uint32_t i = 0; i < MEDIA_SERVICES_MAX; i++)
		if (atomic_load_explicit(&media_services[i].rt,
			memory_order_acquire) == rt)
			return atomic_load_explicit(&media_services[i].svc,
				memory_order_acquire);
	return NULL;
}

static int
media_services_add(media_service *svc)
{
	int rc = API_EUNAVAILABLE;
	pthread_mutex_lock(&media_services_lock);
	for (uint32_t i = 0; i < MEDIA_SERVICES_MAX; i++) {
		if (atomic_load(&media_services[i].svc) != NULL)
			continue;
		atomic_store(&media_services[i].rt, svc->rt);
		atomic_store(&media_services[i].owner, svc->owner);
		atomic_store_explicit(&media_services[i].svc, svc,
			memory_order_release);
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&media_services_lock);
	return rc;
}

static void
media_services_remove(media_service *svc)
{
	pthread_mutex_lock(&media_services_lock);
	for (uint32_t i = 0; i < MEDIA_SERVICES_MAX; i++) {
		if (atomic_load(&media_services[i].svc) != svc)
			continue;
		atomic_store(&media_services[i].svc, NULL);
		atomic_store(&media_services[i].rt, NULL);
		atomic_store(&media_services[i].owner, NULL);
	}
	pthread_mutex_unlock(&media_services_lock);
}

const char *
media_service_data_dir(const media_service *svc)
{
	return svc->data_dir;
}

const char *
media_service_base_url(const media_service *svc)
{
	return svc->base_url;
}

media_pool *
media_service_pool(media_service *svc)
{
	return svc->pool;
}

media_ingest *
media_service_ingest(media_service *svc)
{
	return svc->ingest;
}

uint64_t
media_service_ask_timeout_ms(const media_service *svc)
{
	return svc->ask_timeout_ms;
}

/* ---- the media actor ------------------------------------------------------------ */

/* Journal records of MEDIA_KIND (the kind disambiguates the numbers). */
enum {
	MEDIA_R_CREATED = 1,   /* u64 id, u64 owner, u8 status, str hash, u64 ms */
	MEDIA_R_ATTACHED = 2,  /* str hash */
	MEDIA_R_SETTLED = 3,   /* u8 status, u32 attempts, str reason, u64 ms */
	MEDIA_R_WATCH = 4,     /* u32 kind, u64 id, u32 type, u64 cookie */
};

/* Journal records of MEDIA_LEDGER_KIND. */
enum {
	MEDIA_LEDGER_R_PROCESSING = 1, /* u64 media id */
	MEDIA_LEDGER_R_SETTLED = 2,    /* media_dead_letter fields */
};

static media_service *
media_svc(rt_actor *self)
{
	media_service *svc = media_service_of_runtime(rt_actor_runtime(self));
	MEDIA_ASSERT(svc != NULL);
	return svc;
}

/* Applies one record to st; RT_ECORRUPT for a malformed one. */
static int
media_apply(media_state *st, uint32_t type, const void *payload,
	size_t length)
{
	wire_reader r;
	wire_reader_init(&r, payload, length);
	switch (type) {
	case MEDIA_R_CREATED: {
		st->media_id = wire_get_u64(&r);
		st->owner_id = wire_get_u64(&r);
		st->status = wire_get_u8(&r);
		wire_get_strbuf(&r, st->hash, sizeof(st->hash));
		st->created_ms = wire_get_u64(&r);
		if (st->status == MEDIA_STATUS_READY)
			st->settled_ms = st->created_ms;
		break;
	}
	case MEDIA_R_ATTACHED:
		wire_get_strbuf(&r, st->hash, sizeof(st->hash));
		if (!r.failed && st->status == MEDIA_STATUS_AWAITING_UPLOAD)
			st->status = MEDIA_STATUS_PROCESSING;
		break;
	case MEDIA_R_SETTLED:
		st->status = wire_get_u8(&r);
		st->attempts = wire_get_u32(&r);
		wire_get_strbuf(&r, st->reason, sizeof(st->reason));
		st->settled_ms = wire_get_u64(&r);
		st->watchers_count = 0; /* told; nobody waits any more */
		break;
	case MEDIA_R_WATCH: {
		media_watcher w;
		w.addr.kind = wire_get_u32(&r);
		w.addr.reserved = 0;
		w.addr.id = wire_get_u64(&r);
		w.type = wire_get_u32(&r);
		w.cookie = wire_get_u64(&r);
		if (r.failed || st->watchers_count == MEDIA_WATCHERS_MAX)
			return RT_ECORRUPT;
		st->watchers[st->watchers_count++] = w;
		break;
	}
	default:
		return RT_ECORRUPT;
	}
	if (!wire_done(&r) || !media_state_consistent(st))
		return RT_ECORRUPT;
	return 0;
}

static int
media_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	return media_apply(state, type, payload, length);
}

/* Journals a record of self, applies it to st and marks the actor
 * dirty; the durable notice carries cookie. 0 or API_EUNAVAILABLE. */
static int
media_write(rt_actor *self, media_state *st, uint32_t record,
	const wire_writer *w, const actors__cookie *cookie)
{
	api *a = actors__api_of(rt_actor_runtime(self));
	MEDIA_ASSERT(a != NULL);
	if (w->failed)
		return API_EUNAVAILABLE;
	uint64_t lsn = 0;
	int rc = actors__journal(a, self, record, w->bytes, w->length, cookie,
		&lsn);
	if (rc != 0)
		return rc;
	rc = media_apply(st, record, w->bytes, w->length);
	MEDIA_ASSERT(rc == 0);
	rt_mark_dirty(self);
	return 0;
}

/* The api_media_get body: {media_id, status, variants, reason?,
 * created_at}. */
static void
media_pack_body(const media_service *svc, const media_state *st,
	msgpack_packer *p)
{
	bool failed = st->status == MEDIA_STATUS_FAILED;
	msgpack_pack_map(p, failed ? 5 : 4);
	actors__pack_key(p, "media_id");
	actors__pack_id(p, st->media_id);
	actors__pack_key(p, "status");
	actors__pack_str(p, media_status_name(st->status));
	actors__pack_key(p, "variants");
	if (st->status != MEDIA_STATUS_READY) {
		msgpack_pack_map(p, 0);
	} else {
		msgpack_pack_map(p, API_MEDIA_VARIANTS_COUNT);
		for (int i = 0; i < API_MEDIA_VARIANTS_COUNT; i++) {
			char url[MEDIA_PATH_BYTES_MAX];
			actors__pack_key(p, api_media_variants[i]);
			if (media_variant_url(svc->base_url, st->hash, i, url,
				sizeof(url)) == 0)
				actors__pack_str(p, url);
			else
				msgpack_pack_nil(p);
		}
	}
	if (failed) {
		actors__pack_key(p, "reason");
		actors__pack_str(p, st->reason);
	}
	actors__pack_key(p, "created_at");
	actors__pack_time(p, st->created_ms);
}

static void
media_reply_body(rt_actor *self, const actors__reply_to *to,
	const media_state *st, int code)
{
	actors__body b;
	actors__body_init(&b);
	media_pack_body(media_svc(self), st, &b.packer);
	actors__reply_later(self, to, code, NULL, b.buffer.data, b.buffer.size);
	actors__body_free(&b);
}

/* Sends the settled payload of st (or a refusal) to one watcher. */
static void
media_notify(rt_actor *self, const media_watcher *w, uint64_t media_id,
	uint8_t status, const char *hash, const char *reason)
{
	wire_writer x;
	wire_init(&x);
	wire_u64(&x, media_id);
	wire_str(&x, media_status_name(status));
	wire_str(&x, hash);
	wire_str(&x, reason);
	wire_u64(&x, w->cookie);
	uint32_t type = w->type;
	if (type == 0)
		type = status == MEDIA_STATUS_READY ? MEDIA_MSG_READY :
			MEDIA_MSG_FAILED;
	if (!x.failed)
		(void)rt_send_copy(self, w->addr, type, x.bytes,
			(uint32_t)x.length);
	wire_free(&x);
}

static void
media_ledger_send(rt_actor *self, uint32_t type, const wire_writer *w)
{
	if (!w->failed)
		(void)rt_send_copy(self,
			rt_addr_make(MEDIA_LEDGER_KIND, MEDIA_LEDGER_ID), type,
			w->bytes, (uint32_t)w->length);
}

static void
media_watchdog_arm(rt_actor *self, media_state *st)
{
	if (st->watchdog != 0)
		return;
	(void)rt_timer_start(rt_actor_runtime(self), rt_self(self),
		MEDIA_MSG_RESUME, NULL, 0, MEDIA_WATCHDOG_MS, 0, &st->watchdog);
}

static void
media_watchdog_cancel(rt_actor *self, media_state *st)
{
	if (st->watchdog != 0)
		(void)rt_timer_cancel(rt_actor_runtime(self), st->watchdog);
	st->watchdog = 0;
}

/* Processing is over: journal it, tell the watchers and the ledger. */
static void
media_settle(rt_actor *self, media_state *st, uint8_t status,
	uint32_t attempts, const char *reason)
{
	MEDIA_ASSERT(st->status == MEDIA_STATUS_PROCESSING ||
		st->status == MEDIA_STATUS_AWAITING_UPLOAD);
	MEDIA_ASSERT(status == MEDIA_STATUS_READY ||
		status == MEDIA_STATUS_FAILED);
	media_watcher watchers[MEDIA_WATCHERS_MAX];
	uint32_t count = st->watchers_count;
	memcpy(watchers, st->watchers, count * sizeof(watchers[0]));
	uint64_t now = rt_wall_ms(rt_actor_runtime(self));
	wire_writer w;
	wire_init(&w);
	wire_u8(&w, status);
	wire_u32(&w, attempts);
	wire_str(&w, reason);
	wire_u64(&w, now);
	actors__cookie cookie = {0, MEDIA_MSG_PROCESSED, 0, 0, 0};
	if (media_write(self, st, MEDIA_R_SETTLED, &w, &cookie) != 0) {
		/* The journal refused: stay processing; the watchdog brings
		 * the outcome back (the variants are stored already). */
		wire_free(&w);
		media_watchdog_arm(self, st);
		return;
	}
	wire_free(&w);
	media_watchdog_cancel(self, st);
	for (uint32_t i = 0; i < count; i++)
		media_notify(self, &watchers[i], st->media_id, status, st->hash,
			st->reason);
	wire_writer l;
	wire_init(&l);
	wire_u64(&l, st->media_id);
	wire_u8(&l, status);
	wire_u64(&l, st->owner_id);
	wire_str(&l, st->hash);
	wire_str(&l, st->reason);
	wire_u32(&l, attempts);
	wire_u64(&l, now);
	media_ledger_send(self, MEDIA_MSG_LEDGER_SETTLED, &l);
	wire_free(&l);
}

/* Hands st's hash to the pool (again). Settles at once when the
 * variants are stored already. 0 or API_EUNAVAILABLE (queue full). */
static int
media_submit(rt_actor *self, media_state *st)
{
	MEDIA_ASSERT(st->status == MEDIA_STATUS_PROCESSING);
	int rc = media_pool_submit(media_svc(self)->pool, st->hash,
		st->media_id);
	if (rc == MEDIA_SUBMIT_READY) {
		media_settle(self, st, MEDIA_STATUS_READY, st->attempts, "");
		return 0;
	}
	media_watchdog_arm(self, st);
	return rc;
}

static void
media_on_create(rt_actor *self, media_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t owner = wire_get_u64(&r);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	wire_get_strbuf(&r, hash, sizeof(hash));
	if (!wire_done(&r) || owner == 0 ||
		(hash[0] != '\0' && !media_hash_valid(hash))) {
		actors__reply(self, m, API_EINVALID, "malformed create", NULL,
			0);
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	if (st->status != MEDIA_STATUS_NONE) {
		/* A retried create of the same item answers as the first. */
		bool same = st->owner_id == owner && strcmp(st->hash, hash) == 0;
		media_reply_body(self, &to, st, same ? API_OK : API_ECONFLICT);
		return;
	}
	uint8_t status = MEDIA_STATUS_AWAITING_UPLOAD;
	if (hash[0] != '\0') {
		int rc = media_pool_submit(media_svc(self)->pool, hash,
			rt_self(self).id);
		if (rc == API_EUNAVAILABLE) {
			actors__reply(self, m, API_EUNAVAILABLE,
				"media queue full", NULL, 0);
			rt_request_passivate(self);
			return;
		}
		status = rc == MEDIA_SUBMIT_READY ? MEDIA_STATUS_READY :
			MEDIA_STATUS_PROCESSING;
	}
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, rt_self(self).id);
	wire_u64(&w, owner);
	wire_u8(&w, status);
	wire_str(&w, hash);
	wire_u64(&w, rt_wall_ms(rt_actor_runtime(self)));
	actors__cookie cookie = actors__cookie_make(&to, MEDIA_MSG_CREATE, 0);
	int rc = media_write(self, st, MEDIA_R_CREATED, &w, &cookie);
	wire_free(&w);
	if (rc != 0) {
		actors__reply(self, m, rc, "journal unavailable", NULL, 0);
		return;
	}
	if (status == MEDIA_STATUS_PROCESSING) {
		media_watchdog_arm(self, st);
		wire_writer l;
		wire_init(&l);
		wire_u64(&l, st->media_id);
		media_ledger_send(self, MEDIA_MSG_LEDGER_PROCESSING, &l);
		wire_free(&l);
	}
}

static void
media_on_attach(rt_actor *self, media_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t user = wire_get_u64(&r);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	wire_get_strbuf(&r, hash, sizeof(hash));
	if (!wire_done(&r) || !media_hash_valid(hash)) {
		actors__reply(self, m, API_EINVALID, "malformed attach", NULL,
			0);
		return;
	}
	if (st->owner_id != user) {
		actors__reply(self, m, API_EFORBIDDEN, "not your upload", NULL,
			0);
		return;
	}
	if (st->status != MEDIA_STATUS_AWAITING_UPLOAD) {
		actors__reply(self, m, API_ECONFLICT, "bytes already uploaded",
			NULL, 0);
		return;
	}
	int rc = media_pool_submit(media_svc(self)->pool, hash, st->media_id);
	if (rc == API_EUNAVAILABLE) {
		actors__reply(self, m, API_EUNAVAILABLE, "media queue full",
			NULL, 0);
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	wire_writer w;
	wire_init(&w);
	wire_str(&w, hash);
	actors__cookie cookie = actors__cookie_make(&to, MEDIA_MSG_ATTACH, 0);
	rc = media_write(self, st, MEDIA_R_ATTACHED, &w, &cookie);
	wire_free(&w);
	if (rc != 0) {
		actors__reply(self, m, rc, "journal unavailable", NULL, 0);
		return;
	}
	wire_writer l;
	wire_init(&l);
	wire_u64(&l, st->media_id);
	media_ledger_send(self, MEDIA_MSG_LEDGER_PROCESSING, &l);
	wire_free(&l);
	(void)media_submit(self, st);
}

static void
media_on_watch(rt_actor *self, media_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	media_watcher w;
	w.addr.kind = wire_get_u32(&r);
	w.addr.reserved = 0;
	w.addr.id = wire_get_u64(&r);
	w.type = wire_get_u32(&r);
	uint64_t owner = wire_get_u64(&r);
	w.cookie = wire_get_u64(&r);
	if (!wire_done(&r) || w.addr.kind == RT_KIND_NONE ||
		w.addr.kind >= RT_KINDS_MAX) {
		actors__reply(self, m, API_EINVALID, "malformed watch", NULL, 0);
		return;
	}
	uint64_t media_id = rt_self(self).id;
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	if (st->status == MEDIA_STATUS_NONE || st->owner_id != owner) {
		bool none = st->status == MEDIA_STATUS_NONE;
		media_notify(self, &w, media_id, MEDIA_STATUS_FAILED, "",
			none ? "no such media" : "media of another user");
		actors__reply(self, m, none ? API_ENOTFOUND : API_EFORBIDDEN,
			none ? "no such media" : "not your media", NULL, 0);
		if (none)
			rt_request_passivate(self);
		return;
	}
	if (st->status == MEDIA_STATUS_READY ||
		st->status == MEDIA_STATUS_FAILED) {
		media_notify(self, &w, media_id, st->status, st->hash,
			st->reason);
		media_reply_body(self, &to, st, API_OK);
		return;
	}
	for (uint32_t i = 0; i < st->watchers_count; i++) {
		const media_watcher *x = &st->watchers[i];
		if (rt_addr_equal(x->addr, w.addr) && x->type == w.type &&
			x->cookie == w.cookie) {
			media_reply_body(self, &to, st, API_OK);
			return;
		}
	}
	if (st->watchers_count == MEDIA_WATCHERS_MAX) {
		actors__reply(self, m, API_EUNAVAILABLE, "too many watchers",
			NULL, 0);
		return;
	}
	wire_writer x;
	wire_init(&x);
	wire_u32(&x, w.addr.kind);
	wire_u64(&x, w.addr.id);
	wire_u32(&x, w.type);
	wire_u64(&x, w.cookie);
	actors__cookie cookie = actors__cookie_make(&to, MEDIA_MSG_WATCH, 0);
	int rc = media_write(self, st, MEDIA_R_WATCH, &x, &cookie);
	wire_free(&x);
	if (rc != 0)
		actors__reply(self, m, rc, "journal unavailable", NULL, 0);
}

static void
media_on_processed(rt_actor *self, media_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	(void)wire_get_u64(&r);
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	wire_get_strbuf(&r, hash, sizeof(hash));
	uint8_t status = wire_get_u8(&r);
	uint32_t attempts = wire_get_u32(&r);
	char reason[MEDIA_REASON_BYTES_MAX];
	wire_get_strbuf(&r, reason, sizeof(reason));
	if (!wire_done(&r) || st->status != MEDIA_STATUS_PROCESSING ||
		strcmp(hash, st->hash) != 0 ||
		(status != MEDIA_STATUS_READY && status != MEDIA_STATUS_FAILED))
		return; /* stale (a resubmit's twin) or not ours */
	media_settle(self, st, status, attempts, reason);
}

static void
media_on_resume(rt_actor *self, media_state *st)
{
	st->watchdog = 0; /* a firing, or the ledger: either way, re-arm */
	if (st->status != MEDIA_STATUS_PROCESSING) {
		if (st->status == MEDIA_STATUS_NONE)
			rt_request_passivate(self);
		return;
	}
	(void)media_submit(self, st);
}

static void
media_on_durable(rt_actor *self, media_state *st, const rt_message *m)
{
	ps_durable_notice n;
	MEDIA_ASSERT(m->size == sizeof(n));
	memcpy(&n, m->payload, sizeof(n));
	actors__cookie cookie;
	MEDIA_ASSERT(n.cookie_bytes == sizeof(cookie));
	memcpy(&cookie, n.cookie, sizeof(cookie));
	if (cookie.correlation == 0)
		return;
	actors__reply_to to = actors__cookie_reply_to(&cookie);
	int code = actors__notice_code(n.status);
	if (code != API_OK) {
		actors__reply_later(self, &to, code, "journal failed", NULL, 0);
		return;
	}
	media_reply_body(self, &to, st, API_OK);
}

static void
media_on_message(rt_actor *self, void *state, const rt_message *m)
{
	media_state *st = state;
	if (m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))
		return;
	switch (m->type) {
	case ACTORS_T_DURABLE:
		media_on_durable(self, st, m);
		return;
	case MEDIA_MSG_CREATE:
		media_on_create(self, st, m);
		return;
	case MEDIA_MSG_WATCH:
		media_on_watch(self, st, m);
		return;
	case MEDIA_MSG_PROCESSED:
		media_on_processed(self, st, m);
		return;
	case MEDIA_MSG_RESUME:
		media_on_resume(self, st);
		return;
	default:
		break;
	}
	if (st->status == MEDIA_STATUS_NONE) {
		actors__reply(self, m, API_ENOTFOUND, "no such media", NULL, 0);
		rt_request_passivate(self);
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	switch (m->type) {
	case MEDIA_MSG_ATTACH:
		media_on_attach(self, st, m);
		break;
	case MEDIA_MSG_GET:
		media_reply_body(self, &to, st, API_OK);
		break;
	default:
		actors__reply(self, m, API_EINVALID, "unknown request", NULL, 0);
		break;
	}
}

static int
media_on_activate(rt_actor *self, void *state, bool fresh)
{
	media_state *st = state;
	if (fresh || st->status != MEDIA_STATUS_PROCESSING)
		return 0;
	/* Loaded while processing (a restart, or passivated meanwhile):
	 * ask the pool again; it answers from the stored variants, joins a
	 * queued job, or re-queues from the original. */
	st->watchdog = 0;
	(void)rt_send_copy(self, rt_self(self), MEDIA_MSG_RESUME, NULL, 0);
	return 0;
}

static void
media_on_passivate(rt_actor *self, void *state)
{
	media_watchdog_cancel(self, state);
}

static int
media_encode_state(const void *state, rt_buffer *out)
{
	return media_state_encode(state, out);
}

static int
media_decode_state(void *state, const void *bytes, size_t length)
{
	return media_state_decode(state, bytes, length);
}

static const rt_actor_ops media_ops = {
	.name = "media",
	.state_size = sizeof(media_state),
	.on_activate = media_on_activate,
	.on_message = media_on_message,
	.on_passivate = media_on_passivate,
	.encode_state = media_encode_state,
	.decode_state = media_decode_state,
	.apply_record = media_apply_record,
};

/* ---- messages for other kinds ---------------------------------------------------- */

static void
media_watch_wire(wire_writer *w, rt_addr watcher, uint64_t owner_id,
	uint32_t type, uint64_t cookie)
{
	wire_u32(w, watcher.kind);
	wire_u64(w, watcher.id);
	wire_u32(w, type);
	wire_u64(w, owner_id);
	wire_u64(w, cookie);
}

int
media_watch_send(rt_actor *self, uint64_t media_id, uint64_t owner_id,
	uint32_t type, uint64_t cookie)
{
	wire_writer w;
	wire_init(&w);
	media_watch_wire(&w, rt_self(self), owner_id, type, cookie);
	int rc = w.failed ? RT_ENOMEM :
		rt_send_copy(self, rt_addr_make(MEDIA_KIND, media_id),
			MEDIA_MSG_WATCH, w.bytes, (uint32_t)w.length);
	wire_free(&w);
	return rc;
}

rt_message *
media_watch_message(rt_runtime *rt, rt_addr watcher, uint64_t owner_id,
	uint32_t type, uint64_t cookie)
{
	wire_writer w;
	wire_init(&w);
	media_watch_wire(&w, watcher, owner_id, type, cookie);
	rt_message *m = NULL;
	if (!w.failed)
		m = rt_message_alloc(rt, MEDIA_MSG_WATCH, (uint32_t)w.length);
	if (m != NULL)
		memcpy(m->payload, w.bytes, w.length);
	wire_free(&w);
	return m;
}

int
media_settled_decode(const void *payload, size_t length, media_settled *out)
{
	memset(out, 0, sizeof(*out));
	wire_reader r;
	wire_reader_init(&r, payload, length);
	char status[24];
	out->media_id = wire_get_u64(&r);
	wire_get_strbuf(&r, status, sizeof(status));
	wire_get_strbuf(&r, out->hash, sizeof(out->hash));
	wire_get_strbuf(&r, out->reason, sizeof(out->reason));
	out->cookie = wire_get_u64(&r);
	if (!wire_done(&r))
		return API_EINVALID;
	if (strcmp(status, "ready") == 0 && media_hash_valid(out->hash))
		out->status = MEDIA_STATUS_READY;
	else if (strcmp(status, "failed") == 0)
		out->status = MEDIA_STATUS_FAILED;
	else
		return API_EINVALID;
	return 0;
}

/* ---- the ledger ------------------------------------------------------------------ */

/* Stored format version of the ledger. */
#define MEDIA_LEDGER_VERSION 1u

typedef struct media_dead_letter {
	uint64_t media_id;
	uint64_t owner_id;
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	char reason[MEDIA_REASON_BYTES_MAX];
	uint32_t attempts;
	uint64_t failed_ms;                     /* wall clock, Unix ms */
} media_dead_letter;

typedef struct media_ledger_state {
	uint64_t *processing;                   /* media ids, unordered */
	uint32_t processing_count;
	uint32_t processing_capacity;
	media_dead_letter *dead;                /* ring, oldest at dead_head */
	uint32_t dead_count;
	uint32_t dead_head;
} media_ledger_state;

static void
media_ledger_free(void *state)
{
	media_ledger_state *st = state;
	free(st->processing);
	free(st->dead);
	memset(st, 0, sizeof(*st));
}

static int
media_ledger_add_processing(media_ledger_state *st, uint64_t id)
{
	for (uint32_t i = 0; i < st->processing_count; i++)
		if (st->processing[i] == id)
			return 0;
	if (st->processing_count == MEDIA_LEDGER_PROCESSING_MAX)
		return RT_ENOMEM; /* the item's own watchdog still covers it */
	if (st->processing_count == st->processing_capacity) {
		uint32_t capacity = st->processing_capacity ?
			st->processing_capacity * 2 : 64;
		uint64_t *p = realloc(st->processing,
			capacity * sizeof(*p));
		if (p == NULL)
			return RT_ENOMEM;
		st->processing = p;
		st->processing_capacity = capacity;
	}
	st->processing[st->processing_count++] = id;
	return 0;
}

static void
media_ledger_remove_processing(media_ledger_state *st, uint64_t id)
{
	for (uint32_t i = 0; i < st->processing_count; i++) {
		if (st->processing[i] == id) {
			st->processing[i] =
				st->processing[--st->processing_count];
			return;
		}
	}
}

static int
media_ledger_add_dead(media_ledger_state *st, const media_dead_letter *d)
{
	if (st->dead == NULL) {
		st->dead = calloc(MEDIA_DEAD_LETTERS_MAX, sizeof(*st->dead));
		if (st->dead == NULL)
			return RT_ENOMEM;
	}
	for (uint32_t i = 0; i < st->dead_count; i++)
		if (st->dead[(st->dead_head + i) % MEDIA_DEAD_LETTERS_MAX]
			.media_id == d->media_id)
			return 0;
	if (st->dead_count == MEDIA_DEAD_LETTERS_MAX) {
		st->dead[st->dead_head] = *d; /* the oldest goes */
		st->dead_head = (st->dead_head + 1) % MEDIA_DEAD_LETTERS_MAX;
		return 0;
	}
	st->dead[(st->dead_head + st->dead_count) % MEDIA_DEAD_LETTERS_MAX] =
		*d;
	st->dead_count++;
	return 0;
}

static int
media_ledger_apply(void *state, uint32_t type, const void *payload,
	size_t length)
{
	media_ledger_state *st = state;
	wire_reader r;
	wire_reader_init(&r, payload, length);
	if (type == MEDIA_LEDGER_R_PROCESSING) {
		uint64_t id = wire_get_u64(&r);
		if (!wire_done(&r))
			return RT_ECORRUPT;
		return media_ledger_add_processing(st, id);
	}
	if (type != MEDIA_LEDGER_R_SETTLED)
		return RT_ECORRUPT;
	media_dead_letter d;
	memset(&d, 0, sizeof(d));
	d.media_id = wire_get_u64(&r);
	uint8_t status = wire_get_u8(&r);
	d.owner_id = wire_get_u64(&r);
	wire_get_strbuf(&r, d.hash, sizeof(d.hash));
	wire_get_strbuf(&r, d.reason, sizeof(d.reason));
	d.attempts = wire_get_u32(&r);
	d.failed_ms = wire_get_u64(&r);
	if (!wire_done(&r))
		return RT_ECORRUPT;
	media_ledger_remove_processing(st, d.media_id);
	if (status == MEDIA_STATUS_FAILED)
		return media_ledger_add_dead(st, &d);
	return 0;
}

static void
media_ledger_resume_all(rt_actor *self, const media_ledger_state *st)
{
	for (uint32_t i = 0; i < st->processing_count; i++)
		(void)rt_send_copy(self,
			rt_addr_make(MEDIA_KIND, st->processing[i]),
			MEDIA_MSG_RESUME, NULL, 0);
}

/* Journals and applies a ledger record; no one waits for it. */
static void
media_ledger_write(rt_actor *self, media_ledger_state *st, uint32_t record,
	const rt_message *m)
{
	api *a = actors__api_of(rt_actor_runtime(self));
	MEDIA_ASSERT(a != NULL);
	if (media_ledger_apply(st, record, m->payload, m->size) != 0) {
		rt_log(rt_actor_runtime(self), RT_LOG_WARN, "media",
			"ledger record refused (type %u)", (unsigned)record);
		return;
	}
	actors__cookie cookie = {0, record, 0, 0, 0};
	uint64_t lsn;
	(void)actors__journal(a, self, record, m->payload, m->size, &cookie,
		&lsn);
	rt_mark_dirty(self);
}

static void
media_ledger_failed_list(rt_actor *self, const media_ledger_state *st,
	const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint32_t limit = wire_get_u32(&r);
	uint64_t before = wire_get_u64(&r);
	if (!wire_done(&r) || limit == 0 || limit > API_PAGE_LIMIT_MAX) {
		actors__reply(self, m, API_EINVALID, "bad page", NULL, 0);
		return;
	}
	/* Newest first by media id (ids are time-ordered), strictly below
	 * the cursor: at most MEDIA_DEAD_LETTERS_MAX entries to scan. */
	const media_dead_letter *page[API_PAGE_LIMIT_MAX];
	uint32_t n = 0;
	uint64_t bound = before == 0 ? UINT64_MAX : before;
	bool more = false;
	while (true) {
		const media_dead_letter *best = NULL;
		for (uint32_t i = 0; i < st->dead_count; i++) {
			const media_dead_letter *d = &st->dead[(st->dead_head +
				i) % MEDIA_DEAD_LETTERS_MAX];
			if (d->media_id < bound &&
				(best == NULL || d->media_id > best->media_id))
				best = d;
		}
		if (best == NULL)
			break;
		if (n == limit) {
			more = true;
			break;
		}
		page[n++] = best;
		bound = best->media_id;
	}
	actors__body b;
	actors__body_init(&b);
	msgpack_packer *p = &b.packer;
	msgpack_pack_map(p, 2);
	actors__pack_key(p, "items");
	msgpack_pack_array(p, n);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_pack_map(p, 6);
		actors__pack_key(p, "media_id");
		actors__pack_id(p, page[i]->media_id);
		actors__pack_key(p, "owner_id");
		actors__pack_id(p, page[i]->owner_id);
		actors__pack_key(p, "hash");
		actors__pack_str(p, page[i]->hash);
		actors__pack_key(p, "reason");
		actors__pack_str(p, page[i]->reason);
		actors__pack_key(p, "attempts");
		msgpack_pack_uint32(p, page[i]->attempts);
		actors__pack_key(p, "failed_at");
		actors__pack_time(p, page[i]->failed_ms);
	}
	actors__pack_key(p, "next_cursor");
	if (more && n > 0)
		actors__pack_id(p, page[n - 1]->media_id);
	else
		msgpack_pack_nil(p);
	actors__reply(self, m, API_OK, NULL, b.buffer.data, b.buffer.size);
	actors__body_free(&b);
}

static void
media_ledger_on_message(rt_actor *self, void *state, const rt_message *m)
{
	media_ledger_state *st = state;
	if (m->flags & (RT_MESSAGE_F_REPLY | RT_MESSAGE_F_TIMEOUT))
		return;
	switch (m->type) {
	case ACTORS_T_DURABLE:
		break; /* nobody waits for ledger records */
	case MEDIA_MSG_LEDGER_PROCESSING:
		media_ledger_write(self, st, MEDIA_LEDGER_R_PROCESSING, m);
		break;
	case MEDIA_MSG_LEDGER_SETTLED:
		media_ledger_write(self, st, MEDIA_LEDGER_R_SETTLED, m);
		break;
	case MEDIA_MSG_LEDGER_FAILED_LIST:
		media_ledger_failed_list(self, st, m);
		break;
	case MEDIA_MSG_RESUME:
		media_ledger_resume_all(self, st);
		break;
	default:
		actors__reply(self, m, API_EINVALID, "unknown request", NULL, 0);
		break;
	}
}

static int
media_ledger_on_activate(rt_actor *self, void *state, bool fresh)
{
	if (!fresh)
		media_ledger_resume_all(self, state);
	return 0;
}

static int
media_ledger_encode(const void *state, rt_buffer *out)
{
	const media_ledger_state *st = state;
	msgpack_sbuffer sb;
	msgpack_packer p;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&p, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&p, 3);
	msgpack_pack_uint32(&p, MEDIA_LEDGER_VERSION);
	msgpack_pack_array(&p, st->processing_count);
	for (uint32_t i = 0; i < st->processing_count; i++)
		msgpack_pack_uint64(&p, st->processing[i]);
	msgpack_pack_array(&p, st->dead_count);
	for (uint32_t i = 0; i < st->dead_count; i++) {
		const media_dead_letter *d =
			&st->dead[(st->dead_head + i) % MEDIA_DEAD_LETTERS_MAX];
		msgpack_pack_array(&p, 6);
		msgpack_pack_uint64(&p, d->media_id);
		msgpack_pack_uint64(&p, d->owner_id);
		media_pack_str(&p, d->hash);
		media_pack_str(&p, d->reason);
		msgpack_pack_uint32(&p, d->attempts);
		msgpack_pack_uint64(&p, d->failed_ms);
	}
	int rc = rt_buffer_append(out, sb.data, sb.size) == 0 ? 0 : RT_ENOMEM;
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static bool
media_ledger_decode_dead(media_ledger_state *st, const msgpack_object *o)
{
	media_dead_letter d;
	uint64_t attempts;
	memset(&d, 0, sizeof(d));
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 6)
		return false;
	const msgpack_object *f = o->via.array.ptr;
	if (!media_obj_u64(&f[0], UINT64_MAX, &d.media_id) ||
		!media_obj_u64(&f[1], UINT64_MAX, &d.owner_id) ||
		!media_obj_str(&f[2], d.hash, sizeof(d.hash)) ||
		!media_obj_str(&f[3], d.reason, sizeof(d.reason)) ||
		!media_obj_u64(&f[4], UINT32_MAX, &attempts) ||
		!media_obj_u64(&f[5], UINT64_MAX, &d.failed_ms))
		return false;
	d.attempts = (uint32_t)attempts;
	return media_ledger_add_dead(st, &d) == 0;
}

static int
media_ledger_decode(void *state, const void *bytes, size_t length)
{
	media_ledger_state *st = state;
	memset(st, 0, sizeof(*st));
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = RT_ECORRUPT;
	uint64_t version;
	if (!media_msgpack_unpack(&u, bytes, length))
		goto done;
	const msgpack_object *root = &u.data;
	if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 3 ||
		!media_obj_u64(&root->via.array.ptr[0], UINT32_MAX, &version) ||
		version != MEDIA_LEDGER_VERSION)
		goto done;
	const msgpack_object *ids = &root->via.array.ptr[1];
	const msgpack_object *dead = &root->via.array.ptr[2];
	if (ids->type != MSGPACK_OBJECT_ARRAY ||
		ids->via.array.size > MEDIA_LEDGER_PROCESSING_MAX ||
		dead->type != MSGPACK_OBJECT_ARRAY ||
		dead->via.array.size > MEDIA_DEAD_LETTERS_MAX)
		goto done;
	for (uint32_t i = 0; i < ids->via.array.size; i++) {
		uint64_t id;
		if (!media_obj_u64(&ids->via.array.ptr[i], UINT64_MAX, &id) ||
			media_ledger_add_processing(st, id) != 0)
			goto done;
	}
	for (uint32_t i = 0; i < dead->via.array.size; i++)
		if (!media_ledger_decode_dead(st, &dead->via.array.ptr[i]))
			goto done;
	rc = 0;
done:
	msgpack_unpacked_destroy(&u);
	if (rc != 0)
		media_ledger_free(st);
	return rc;
}

static const rt_actor_ops media_ledger_ops = {
	.name = "media_ledger",
	.state_size = sizeof(media_ledger_state),
	.on_activate = media_ledger_on_activate,
	.on_message = media_ledger_on_message,
	.encode_state = media_ledger_encode,
	.decode_state = media_ledger_decode,
	.apply_record = media_ledger_apply,
	.free_state = media_ledger_free,
};

/* ---- the service's lifetime ------------------------------------------------------- */

static uint64_t
media_service_clock(void *arg)
{
	media_service *svc = arg;
	return rt_now_ms(svc->rt);
}

/* A pool thread: the outcome goes to the waiting media actor. */
static void
media_service_done(void *arg, const media_outcome *o)
{
	media_service *svc = arg;
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, o->media_id);
	wire_str(&w, o->hash);
	wire_u8(&w, o->status);
	wire_u32(&w, o->attempts);
	wire_str(&w, o->reason);
	rt_message *m = NULL;
	if (!w.failed)
		m = rt_message_alloc(svc->rt, MEDIA_MSG_PROCESSED,
			(uint32_t)w.length);
	if (m != NULL) {
		memcpy(m->payload, w.bytes, w.length);
		/* Lost (stopping, full mailbox): the actor's watchdog asks
		 * the pool again and gets the stored outcome. */
		(void)rt_send_external(svc->rt,
			rt_addr_make(MEDIA_KIND, o->media_id), m);
	}
	wire_free(&w);
}

int
media_service_create(rt_runtime *rt, const api *owner,
	const media_service_config *cfg, media_service **out)
{
	MEDIA_ASSERT(out != NULL);
	*out = NULL;
	if (rt == NULL || cfg == NULL || cfg->data_dir == NULL)
		return API_EINVALID;
	media_service *svc = calloc(1, sizeof(*svc));
	if (svc == NULL)
		return API_EINTERNAL;
	svc->rt = rt;
	svc->owner = owner;
	svc->ask_timeout_ms = cfg->ask_timeout_ms;
	svc->data_dir = strdup(cfg->data_dir);
	svc->base_url = strdup(cfg->media_base_url != NULL ?
		cfg->media_base_url : "/media");
	int rc = API_EINTERNAL;
	if (svc->data_dir == NULL || svc->base_url == NULL)
		goto fail_strings;
	media_pool_config pc = {
		.data_dir = svc->data_dir,
		.threads = cfg->threads,
		.queue_max = cfg->queue_max,
		.attempts_max = cfg->attempts_max,
		.backoff_base_ms = cfg->backoff_base_ms,
		.now_ms = media_service_clock,
		.clock_arg = svc,
		.done = media_service_done,
		.done_arg = svc,
	};
	if ((rc = media_pool_create(&pc, &svc->pool)) != 0)
		goto fail_strings;
	/* Deterministic runs (no pool threads) ingest inline as well. */
	if ((rc = media_ingest_create(rt, svc->data_dir,
		     cfg->threads > 0 ? MEDIA_INGEST_THREADS : 0,
		     &svc->ingest)) != 0)
		goto fail_pool;
	if ((rc = media_services_add(svc)) != 0)
		goto fail_pool;
	if (rt_register_kind(rt, MEDIA_KIND, &media_ops) != 0 ||
		rt_register_kind(rt, MEDIA_LEDGER_KIND, &media_ledger_ops) != 0) {
		rc = API_EINVALID;
		goto fail_registry;
	}
	*out = svc;
	return 0;
fail_registry:
	media_services_remove(svc);
fail_pool:
	media_ingest_destroy(svc->ingest);
	media_pool_destroy(svc->pool);
fail_strings:
	free(svc->base_url);
	free(svc->data_dir);
	free(svc);
	return rc;
}

int
media_service_start(media_service *svc)
{
	MEDIA_ASSERT(svc != NULL);
	int queued = media_pool_recover(svc->pool);
	if (queued < 0)
		return queued;
	if (queued > 0)
		rt_log(svc->rt, RT_LOG_INFO, "media",
			"re-queued %d originals left by a restart", queued);
	/* Wakes the ledger, which resumes every item it holds as
	 * processing. A timer, so it also works before rt_start. */
	int rc = rt_timer_start(svc->rt,
		rt_addr_make(MEDIA_LEDGER_KIND, MEDIA_LEDGER_ID),
		MEDIA_MSG_RESUME, NULL, 0, 0, 0, NULL);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

void
media_service_destroy(media_service *svc)
{
	if (svc == NULL)
		return;
	media_ingest_destroy(svc->ingest);
	media_pool_destroy(svc->pool);
	media_services_remove(svc);
	free(svc->base_url);
	free(svc->data_dir);
	free(svc);
}

/* ---- the hook api.c calls for the modules of actors/ ------------------------------- */

/* api.c declares these weak and calls them from api_create (after the
 * core's kinds are registered, before rt_start) and api_destroy. */
int actors__modules_create(api *a);
void actors__modules_destroy(api *a);

int
actors__modules_create(api *a)
{
	media_service_config cfg = {
		.data_dir = a->cfg.data_dir != NULL ? a->cfg.data_dir : ".",
		.media_base_url = a->cfg.media_base_url,
		.threads = a->cfg.media_threads,
		.queue_max = a->cfg.media_queue_max,
		.attempts_max = a->cfg.media_attempts_max,
		.ask_timeout_ms = a->cfg.ask_timeout_ms,
	};
	media_service *svc;
	int rc = media_service_create(a->rt, a, &cfg, &svc);
	if (rc != 0)
		return rc;
	return media_service_start(svc);
}

void
actors__modules_destroy(api *a)
{
	media_service_destroy(media_service_of(a));
}
