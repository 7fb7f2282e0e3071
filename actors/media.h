/*
 * media.h — the photo pipeline inside actors/ (prefix media_).
 *
 * Role: everything between an uploaded image and the four stored
 * variants a post shows, in four layers, each usable without the ones
 * above it:
 *
 *   1. image checks and rendering (media_vips.c, the ONLY file that
 *      includes libvips): sniff the format from magic bytes, read the
 *      header (width x height) without decoding pixels, render the
 *      variants; plus the pure sniffing in media.c;
 *   2. the content-addressed store (media.c): hashes, paths, atomic
 *      writes of originals and variant sets;
 *   3. the processing pool (media.c): N threads off the scheduler and the
 *      event loop, a bounded queue keyed by content hash (identical
 *      uploads are processed once), retries with backoff on the
 *      runtime's clock, failures reported once per waiter;
 *   4. the media actor kind (one per media_id) and the media ledger (one
 *      per runtime: which items are processing, so a restart resumes
 *      them, and the dead letters operators list);
 *   5. the ingest worker (media_ingest.c): an upload's probe, hash and
 *      durable store off the caller's thread (the gateway's event loop).
 *
 * api_media.c builds the api_media_* entry points of api.h on these.
 *
 * Storage layout under <data_dir>/media/:
 *   originals/<hash>                uploads not yet processed
 *   <hash[0:2]>/<hash>/<variant>.jpg  thumb, small, medium, large
 * where hash is the lowercase hex SHA-256 of the ORIGINAL upload bytes.
 * A variant directory appears whole (written as <hash>.tmp-<n> and
 * renamed), so "the directory exists" means "processed".
 *
 * Choices (documented here once):
 *   - formats: JPEG, PNG, WebP, HEIF/AVIF by magic bytes AND libvips'
 *     loader for the bytes being one of jpegload_buffer, pngload_buffer,
 *     webpload_buffer, heifload_buffer. GIF, TIFF, SVG, PDF and the rest
 *     are API_EMEDIATYPE whatever the file is named;
 *   - a header declaring more than API_UPLOAD_PIXELS_MAX pixels is
 *     API_EINVALID (400, "pixels limit") before any pixel is decoded;
 *     more than API_UPLOAD_BYTES_MAX bytes is API_ETOOLARGE (413);
 *   - every variant is a baseline JPEG, quality MEDIA_JPEG_QUALITY,
 *     auto-rotated by its EXIF orientation, metadata stripped (EXIF, GPS,
 *     XMP, IPTC, ICC), pixels converted to sRGB; an alpha channel is
 *     flattened onto white (one content type, image/jpeg, for every
 *     file served);
 *   - thumb is a 150 x 150 centre crop (upscaled when the image is
 *     smaller); small, medium and large are 320, 640, 1080 wide and never
 *     upscaled: a 500-wide image keeps 500 for medium and large.
 *
 * What it deliberately does not do: HTTP, URL signing (the gateway's);
 * replicate files between nodes: the pool processes on the node that
 * took the upload and data_dir/media is that node's, so a cluster needs
 * it on shared storage (or a replication step) to serve every variant
 * from every node.
 *
 * Threads: media_probe, media_render and the store functions are
 * thread-safe; the pool's threads are the only ones that decode. With
 * media_threads 0 (deterministic runs) nothing decodes until someone
 * calls media_pool_run_one.
 */
#ifndef FLOCK_ACTORS_MEDIA_H
#define FLOCK_ACTORS_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/api.h"
#include "runtime/runtime.h"

/* ---- kinds and messages ------------------------------------------------ */

/* actors/internal.h keeps kinds 4..15 for the modules besides the social
 * core; media takes two near the top of that range. */
#define MEDIA_KIND 12u
#define MEDIA_LEDGER_KIND 13u
/* The one ledger per runtime lives at this id (partition 0). */
#define MEDIA_LEDGER_ID 1u

/*
 * Message types. Their values are unique across the domain ("me" in the
 * high half) because MEDIA_MSG_READY and MEDIA_MSG_FAILED are received
 * by other kinds (post, story, user) next to their own types. Payloads
 * are wire_* bytes (actors/internal.h); use the helpers below.
 */
#define MEDIA_MSG_BASE 0x6d650000u
/* Ask -> media: create {owner_id, hash or ""}. Replies {media_id, status}. */
#define MEDIA_MSG_CREATE (MEDIA_MSG_BASE + 1)
/* Ask -> media: bytes of a reserved item arrived {user_id, hash}. */
#define MEDIA_MSG_ATTACH (MEDIA_MSG_BASE + 2)
/* Ask -> media: {user_id}. Replies the api_media_get body. */
#define MEDIA_MSG_GET (MEDIA_MSG_BASE + 3)
/* Send or ask -> media: media_watch (see media_watch_send). */
#define MEDIA_MSG_WATCH (MEDIA_MSG_BASE + 4)
/* media -> watcher: media_settled, the item turned ready. */
#define MEDIA_MSG_READY (MEDIA_MSG_BASE + 5)
/* media -> watcher: media_settled, the item failed (reason set). */
#define MEDIA_MSG_FAILED (MEDIA_MSG_BASE + 6)
/* pool -> media: media_outcome of the processing. */
#define MEDIA_MSG_PROCESSED (MEDIA_MSG_BASE + 7)
/* ledger -> media after a restart, and media's own watchdog timer:
 * "if still processing, hand your hash to the pool again". */
#define MEDIA_MSG_RESUME (MEDIA_MSG_BASE + 8)
/* media -> ledger: {media_id} is processing. */
#define MEDIA_MSG_LEDGER_PROCESSING (MEDIA_MSG_BASE + 9)
/* media -> ledger: media_settled; failures become dead letters. */
#define MEDIA_MSG_LEDGER_SETTLED (MEDIA_MSG_BASE + 10)
/* Ask -> ledger: {limit, cursor media_id (0: first page)}. Replies the
 * api_media_failed_list body. */
#define MEDIA_MSG_LEDGER_FAILED_LIST (MEDIA_MSG_BASE + 11)

/* ---- limits ------------------------------------------------------------ */

/* Lowercase hex SHA-256. */
#define MEDIA_HASH_HEX_BYTES 64u
/* A failure reason kept in state and dead letters: one line of libvips'
 * error text is rarely longer; longer ones are cut. */
#define MEDIA_REASON_BYTES_MAX 160u
/* Who waits for one item: a post, a story, a profile, with room for
 * retries that re-register; past it MEDIA_MSG_WATCH answers
 * API_EUNAVAILABLE. */
#define MEDIA_WATCHERS_MAX 16u
/* Pool threads at most (api_config.media_threads); each holds one decoded
 * image, so memory, not cores, is the bound. */
#define MEDIA_THREADS_MAX 16u
/* Queue bound at most (api_config.media_queue_max): an originals
 * directory of this many files is still listed in well under a second. */
#define MEDIA_QUEUE_LIMIT 65536u
/* Tries at most (api_config.media_attempts_max). */
#define MEDIA_ATTEMPTS_LIMIT 10u
/* First retry after this; doubled per attempt up to the cap. Half a
 * second covers a passing out-of-memory; the cap keeps a dead letter
 * within minutes of the upload. */
#define MEDIA_BACKOFF_BASE_MS 500u
#define MEDIA_BACKOFF_MAX_MS 30000u
/* A processing media actor re-checks the pool this often, so a lost
 * completion never leaves it processing. Processing a 50-Mpixel image
 * takes a few seconds; a minute is far above it. */
#define MEDIA_WATCHDOG_MS 60000u
/* Dead letters the ledger keeps (oldest dropped first); an operator
 * lists them, a thousand covers days of rare failures. */
#define MEDIA_DEAD_LETTERS_MAX 1024u
/* Items the ledger tracks as processing: at least every queue slot. */
#define MEDIA_LEDGER_PROCESSING_MAX MEDIA_QUEUE_LIMIT
/* Paths under data_dir (PATH_MAX on Linux). */
#define MEDIA_PATH_BYTES_MAX 4096u

/* Variant geometry (API.md). */
#define MEDIA_THUMB_SIDE_PIXELS 150u
#define MEDIA_SMALL_WIDTH_PIXELS 320u
#define MEDIA_MEDIUM_WIDTH_PIXELS 640u
#define MEDIA_LARGE_WIDTH_PIXELS 1080u
/* JPEG quality: 82 is where artefacts stop showing at phone sizes and
 * files are about half the size of quality 95. */
#define MEDIA_JPEG_QUALITY 82

/* ---- formats and image checks (media_vips.c; sniff in media.c) --------- */

typedef enum media_format {
	MEDIA_FORMAT_NONE = 0,
	MEDIA_FORMAT_JPEG = 1,
	MEDIA_FORMAT_PNG = 2,
	MEDIA_FORMAT_WEBP = 3,
	MEDIA_FORMAT_HEIF = 4, /* HEIC and AVIF: ISO BMFF "ftyp" brands */
} media_format;

/* The format the magic bytes say, or MEDIA_FORMAT_NONE. Pure; reads at
 * most the first 16 bytes. Any thread. */
media_format media_sniff(const void *bytes, size_t length);
/* "jpeg", "png", "webp", "heif"; "none". */
const char *media_format_name(media_format format);

/* Initialises libvips once per process (thread-safe, idempotent):
 * untrusted loaders blocked, a small operation cache, one libvips thread
 * per pool worker. 0 or API_EINTERNAL. */
int media_vips_init(void);

typedef struct media_probe_result {
	media_format format;
	uint32_t width, height;   /* pixels, as the header declares them */
} media_probe_result;

/*
 * Checks an upload without decoding pixels: size (API_ETOOLARGE past
 * API_UPLOAD_BYTES_MAX), magic bytes and libvips' loader choice
 * (API_EMEDIATYPE unless both say JPEG, PNG, WebP or HEIF), the header
 * (API_EINVALID if unreadable, or above API_UPLOAD_PIXELS_MAX pixels).
 * bytes borrowed. detail (may be NULL) gets a static string naming the
 * rule. Any thread; calls media_vips_init.
 */
int media_probe(const void *bytes, size_t length, media_probe_result *out,
	const char **detail);

typedef struct media_variant_bytes {
	unsigned char *bytes;     /* owned JPEG bytes */
	size_t length;
	uint32_t width, height;   /* pixels */
} media_variant_bytes;

typedef struct media_rendered {
	media_variant_bytes variants[API_MEDIA_VARIANTS_COUNT]; /* api order */
} media_rendered;

/*
 * Decodes bytes (an original that passed media_probe) and encodes the
 * four variants into out (owned: media_rendered_free). Truncated or
 * corrupt data fails. 0, or API_EINVALID / API_EMEDIATYPE / API_EINTERNAL
 * with reason (size MEDIA_REASON_BYTES_MAX) filled. A pool thread.
 */
int media_render(const void *bytes, size_t length, media_rendered *out,
	char *reason);
void media_rendered_free(media_rendered *r);

/* Releases libvips' per-thread buffers; a pool thread calls it at exit. */
void media_vips_thread_done(void);

/* Test images for the tests, the benchmarks and the simulator's
 * workload (generated, never shipped): a gradient with seeded noise that
 * compresses like a photo. */
typedef enum media_generate_format {
	MEDIA_GENERATE_JPEG = 1,
	MEDIA_GENERATE_PNG = 2,
	MEDIA_GENERATE_WEBP = 3,
	MEDIA_GENERATE_HEIF = 4,  /* HEVC, where libheif has an encoder */
	MEDIA_GENERATE_AVIF = 5,  /* AV1, where libheif has an encoder */
	MEDIA_GENERATE_GIF = 6,   /* refused formats, to test refusals */
	MEDIA_GENERATE_TIFF = 7,
} media_generate_format;

typedef struct media_generate_spec {
	media_generate_format format;
	uint32_t width, height;   /* pixels, > 0 */
	bool alpha;               /* a 4th band at half opacity */
	uint32_t orientation;     /* EXIF orientation 1..8; 0: none */
	int quality;              /* lossy formats; 0: 90 */
	int seed;                 /* noise seed */
} media_generate_spec;

/* Encodes a generated image into *bytes (owned, free()). 0,
 * API_EINVALID, API_EINTERNAL (e.g. no encoder for the format). */
int media_vips_generate(const media_generate_spec *spec,
	unsigned char **bytes, size_t *length);
/* Width and height of an encoded image (header only). 0, API_EINVALID. */
int media_vips_dimensions(const void *bytes, size_t length, uint32_t *width,
	uint32_t *height);

/* ---- hashes and the store (media.c) ------------------------------------ */

/* Lowercase hex SHA-256 of bytes into out (MEDIA_HASH_HEX_BYTES + 1). */
void media_hash_hex(const void *bytes, size_t length, char *out);
/* Exactly 64 lowercase hex characters and a NUL. */
bool media_hash_valid(const char *hash);
/* Index in api_media_variants, or -1 for an unknown name. */
int media_variant_index(const char *name);

/* Paths (NUL-terminated into path of path_size); API_EINVALID if they
 * would not fit. hash must be valid. */
int media_path_original(const char *data_dir, const char *hash, char *path,
	size_t path_size);
int media_path_variant(const char *data_dir, const char *hash, int variant,
	char *path, size_t path_size);

/* Writes bytes to originals/<hash> atomically (temporary file, fsync,
 * rename, fsync of the directory). 0 or API_EINTERNAL. Any thread. */
int media_store_original(const char *data_dir, const char *hash,
	const void *bytes, size_t length);
/* True when the variant set of hash is stored whole. */
bool media_store_has_variants(const char *data_dir, const char *hash);

/* ---- the processing pool (media.c) ------------------------------------- */

typedef enum media_status {
	MEDIA_STATUS_NONE = 0,             /* no such item (fresh actor) */
	MEDIA_STATUS_AWAITING_UPLOAD = 1,
	MEDIA_STATUS_PROCESSING = 2,
	MEDIA_STATUS_READY = 3,
	MEDIA_STATUS_FAILED = 4,
} media_status;

/* "awaiting_upload", "processing", "ready", "failed"; "none". */
const char *media_status_name(media_status status);

/* What processing a hash came to, reported once per waiting media id. */
typedef struct media_outcome {
	uint64_t media_id;                      /* the waiter */
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	uint8_t status;                         /* READY or FAILED */
	uint32_t attempts;                      /* tries it took */
	char reason[MEDIA_REASON_BYTES_MAX];    /* "" when ready */
} media_outcome;

/* Called on a pool thread (or media_pool_run_one's caller), without the
 * pool's lock, for each waiter of a settled hash. o borrowed. */
typedef void (*media_pool_done_callback)(void *arg, const media_outcome *o);
/* The clock the backoff is measured on (the runtime's rt_now_ms). */
typedef uint64_t (*media_pool_clock_callback)(void *arg);

typedef struct media_pool_config {
	const char *data_dir;        /* copied */
	uint32_t threads;            /* 0: no threads, media_pool_run_one */
	uint32_t queue_max;          /* waiters queued or running, at most */
	uint32_t attempts_max;       /* tries per hash before it fails */
	uint64_t backoff_base_ms;    /* 0: MEDIA_BACKOFF_BASE_MS */
	media_pool_clock_callback now_ms;
	void *clock_arg;
	media_pool_done_callback done;
	void *done_arg;
} media_pool_config;

typedef struct media_pool media_pool;

/* Creates the pool and starts its threads. *out owned: destroy with
 * media_pool_destroy. API_EINVALID for a bad config, API_EINTERNAL. */
int media_pool_create(const media_pool_config *cfg, media_pool **out);
/* Stops the threads after their current item (queued items stay in
 * originals/ for the next start) and frees the pool. */
void media_pool_destroy(media_pool *pool);

/* media_pool_submit answers this when hash is already stored whole. */
#define MEDIA_SUBMIT_READY 1
/*
 * Queues hash for processing on behalf of media_id (0: nobody waits, as
 * for recovered originals). A hash already queued or running gains the
 * waiter (the same media_id twice is one waiter). Returns 0 (done will
 * run for media_id later), MEDIA_SUBMIT_READY (stored already; done will
 * not run), API_EUNAVAILABLE when queue_max waiters are pending. Any
 * thread; never blocks on processing.
 */
int media_pool_submit(media_pool *pool, const char *hash, uint64_t media_id);
/* Re-queues every original left in originals/ (an item a crash
 * interrupted) and removes temporary files. Returns how many were
 * queued, or API_EINTERNAL. */
int media_pool_recover(media_pool *pool);
/* Threadless pools (and tests): processes the due item whose time came
 * first, on the caller's thread. True if one was processed. */
bool media_pool_run_one(media_pool *pool);
/* Earliest time (pool clock) a queued item is due, or UINT64_MAX. */
uint64_t media_pool_next_due_ms(media_pool *pool);

typedef struct media_pool_stats {
	uint32_t queued;             /* hashes waiting (incl. backoff) */
	uint32_t running;
	uint32_t waiters;            /* counted against queue_max */
	uint64_t processed_total;    /* hashes turned ready */
	uint64_t failed_total;       /* hashes that failed for good */
	uint64_t retries_total;      /* attempts after a first failure */
	uint64_t deduplicated_total; /* submits answered by stored variants or
	                              * joined to a queued hash */
} media_pool_stats;
void media_pool_get_stats(media_pool *pool, media_pool_stats *out);

/* ---- the media actor's state (media.c) --------------------------------- */

typedef struct media_watcher {
	rt_addr addr;                /* who is told when the item settles */
	uint32_t type;               /* message type they are told with */
	uint64_t cookie;             /* echoed back (e.g. the post id) */
} media_watcher;

typedef struct media_state {
	uint64_t media_id;
	uint64_t owner_id;                      /* the uploading user */
	uint8_t status;                         /* media_status */
	char hash[MEDIA_HASH_HEX_BYTES + 1];    /* "" while awaiting upload */
	char reason[MEDIA_REASON_BYTES_MAX];    /* when failed */
	uint32_t attempts;
	uint64_t created_ms;                    /* wall clock, Unix ms */
	uint64_t settled_ms;                    /* wall clock when ready/failed */
	uint32_t watchers_count;
	media_watcher watchers[MEDIA_WATCHERS_MAX];
	/* not stored: */
	rt_timer_id watchdog;                   /* 0: none armed */
} media_state;

/* Stored form: a msgpack map with a format version. Appends to out.
 * 0 or RT_ENOMEM. */
int media_state_encode(const media_state *st, rt_buffer *out);
/* Rebuilds *st (zeroed first) from stored bytes; RT_ECORRUPT for
 * anything malformed, of another version, or out of bounds. Pure: safe
 * on any bytes (the fuzzer feeds it). */
int media_state_decode(media_state *st, const void *bytes, size_t length);

/* ---- messages other kinds use ------------------------------------------ */

/*
 * What a watcher is told when the item settles (payload of
 * MEDIA_MSG_READY / MEDIA_MSG_FAILED, or of the type the watcher chose),
 * wire-encoded in this order:
 *   u64 media_id, str status ("ready" | "failed"), str hash, str reason,
 *   u64 cookie.
 * The first three fields are what the post kind's POST_T_MEDIA handler
 * reads, so a post can watch with type POST_T_MEDIA directly.
 */
typedef struct media_settled {
	uint64_t media_id;
	uint8_t status;                         /* READY or FAILED */
	char hash[MEDIA_HASH_HEX_BYTES + 1];    /* "" if it never had bytes */
	char reason[MEDIA_REASON_BYTES_MAX];    /* "" when ready */
	uint64_t cookie;                        /* the watcher's, echoed */
} media_settled;

/*
 * From an actor (a post, a story, a user): asks media_id to send a
 * message of `type` (0: MEDIA_MSG_READY / MEDIA_MSG_FAILED) with the
 * payload above to self once it is ready or failed, cookie echoed. An
 * item that has settled answers at once. owner_id is the user the caller
 * acts for: an item of another owner, or no item at all, answers at once
 * with status "failed" and a reason. Idempotent: the same (self, type,
 * cookie) registers once. Returns rt_send's code.
 *
 * To learn the current status synchronously as well, rt_ask the message
 * media_watch_message builds: the reply (actors__reply format) carries
 * the code (API_ENOTFOUND, API_EFORBIDDEN, API_EUNAVAILABLE when the
 * watcher list is full) and the api_media_get body.
 */
int media_watch_send(rt_actor *self, uint64_t media_id, uint64_t owner_id,
	uint32_t type, uint64_t cookie);
/* The MEDIA_MSG_WATCH message (owned) for rt_ask; NULL when out of
 * memory. */
rt_message *media_watch_message(rt_runtime *rt, rt_addr watcher,
	uint64_t owner_id, uint32_t type, uint64_t cookie);
/* Decodes the settled payload (any of the types above). 0 or
 * API_EINVALID. */
int media_settled_decode(const void *payload, size_t length,
	media_settled *out);

/* The URL of a variant: "<base_url>/<hash>/<variant>" into buf. 0 or
 * API_EINVALID when it does not fit or hash/variant is malformed. */
int media_variant_url(const char *base_url, const char *hash, int variant,
	char *buf, size_t size);

/* ---- the ingest worker (media_ingest.c) --------------------------------- */

/* Ingest threads: hashing runs at several hundred MB/s and the write is
 * fsync-bound, so one thread keeps up with the 30 MB uploads a node takes
 * while the loop stays free; a second one for a burst. */
#define MEDIA_INGEST_THREADS 2u
#define MEDIA_INGEST_THREADS_MAX 4u
/* Uploads waiting for the worker, by count and by bytes (already in
 * memory: the bound makes a burst of big uploads a 503 instead of a
 * growing queue). */
#define MEDIA_INGEST_QUEUE_JOBS_MAX 32u
#define MEDIA_INGEST_QUEUE_BYTES_MAX (256u * 1000u * 1000u)

/* One upload to check and store. The submitter fills the input and the
 * delivery; the worker fills the outcome, frees bytes, and sends an
 * ACTORS_T_POOL_DONE carrying token to inbox. Embed it first in the
 * continuation's state: the token's op is then the job. */
typedef struct media_ingest_job {
	struct media_ingest_job *next;          /* the queue's */
	unsigned char *bytes;                   /* owned (malloc) until run */
	size_t length;
	rt_addr inbox;                          /* who is told */
	uint64_t token;                         /* the api client's token */
	int code;                               /* 0 or an API_E code */
	const char *detail;                     /* static, when code != 0 */
	char hash[MEDIA_HASH_HEX_BYTES + 1];    /* when code == 0 */
} media_ingest_job;

typedef struct media_ingest media_ingest;

/* Starts threads (0: jobs run inline on the submitter). *out owned.
 * API_EINVALID, API_EINTERNAL. */
int media_ingest_create(rt_runtime *rt, const char *data_dir,
	uint32_t threads, media_ingest **out);
/* Joins the threads; queued jobs that never started are freed, their
 * messages never sent (after rt_stop nobody waits for them). */
void media_ingest_destroy(media_ingest *in);
/* Takes job (its bytes too) when it returns 0; API_EUNAVAILABLE when the
 * queue is full (nothing taken). Any thread; never blocks on a job. */
int media_ingest_submit(media_ingest *in, media_ingest_job *job);
/* Tests: gate(arg) runs on the worker thread before each job it takes
 * (a test holds a job there to see what happens meanwhile). NULL: none. */
typedef void (*media_ingest_gate_callback)(void *arg);
void media_ingest_set_gate(media_ingest *in, media_ingest_gate_callback gate,
	void *arg);

/* ---- the service: kinds + pool bound to one runtime (media.c) ---------- */

typedef struct media_service media_service;

typedef struct media_service_config {
	const char *data_dir;        /* copied; <data_dir>/media is created */
	const char *media_base_url;  /* copied; "/media" when NULL */
	uint32_t threads;            /* api_config.media_threads */
	uint32_t queue_max;          /* api_config.media_queue_max */
	uint32_t attempts_max;       /* api_config.media_attempts_max */
	uint64_t backoff_base_ms;    /* 0: MEDIA_BACKOFF_BASE_MS */
	uint64_t ask_timeout_ms;     /* api_config.ask_timeout_ms */
} media_service_config;

/*
 * Registers MEDIA_KIND and MEDIA_LEDGER_KIND on rt (before rt_start),
 * creates the directories and the pool (threads start now; completions
 * are rt_send_external'ed to the media actors). `owner` is the api the
 * service belongs to (media_service_of finds it back). *out owned:
 * media_service_destroy after rt_stop. API_EINVALID, API_EINTERNAL.
 */
int media_service_create(rt_runtime *rt, const api *owner,
	const media_service_config *cfg, media_service **out);
/* After rt_start: re-queues the originals a crash left and wakes the
 * ledger, which resumes every item it holds as processing. */
int media_service_start(media_service *svc);
void media_service_destroy(media_service *svc);

/* The service created for this api / this runtime, or NULL.
 * Thread-safe. */
media_service *media_service_of(const api *a);
media_service *media_service_of_runtime(rt_runtime *rt);

/* Accessors for api_media.c. Borrowed for the service's life. */
const char *media_service_data_dir(const media_service *svc);
const char *media_service_base_url(const media_service *svc);
media_pool *media_service_pool(media_service *svc);
media_ingest *media_service_ingest(media_service *svc);
uint64_t media_service_ask_timeout_ms(const media_service *svc);

#endif /* FLOCK_ACTORS_MEDIA_H */
