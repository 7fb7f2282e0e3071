/*
 * actors/api.c — the api object: configuration, registration of the
 * social core's actor kinds, the node-wide registry that lets actor code
 * find its api, the bounded password-hashing pool, error names.
 *
 * Invariants: at most ACTORS_APIS_MAX apis live in one process (the
 * simulator runs one per simulated node); the password pool never runs
 * more than password_threads hashes at once nor queues more than
 * password_queue_max (API_EUNAVAILABLE past it: 503).
 *
 * What it deliberately does not do: argon2 on a scheduler thread. With
 * password_threads 0 (deterministic simulations) the hash runs inline on
 * the calling client's thread, never on a worker.
 */
#include "actors/internal.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

/* Apis per process: the simulator's clusters stay far below it. */
#define ACTORS_APIS_MAX 64u
/* OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane. */
#define ACTORS_PASSWORD_MEMLIMIT_DEFAULT (19ull << 20)
#define ACTORS_PASSWORD_OPSLIMIT_DEFAULT 2ull
#define ACTORS_PASSWORD_THREADS_DEFAULT 2u
/* Hashes waiting: two seconds of work at ~50 ms each on two threads. */
#define ACTORS_PASSWORD_QUEUE_DEFAULT 64u
/* Internal asks: generous for a loaded node, short enough for a client. */
#define ACTORS_ASK_TIMEOUT_MS_DEFAULT 5000u
/* Wall clocks of two nodes may be this far apart before a like or
 * follow that is in time is refused: NTP keeps servers within tens of
 * ms, and a second is well past what a synchronised fleet sees. */
#define ACTORS_CLOCK_SKEW_MS_MAX_DEFAULT 1000u

static struct {
	_Atomic(rt_runtime *) rt;
	_Atomic(api *) a;
} registry[ACTORS_APIS_MAX];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

api *
actors__api_of(rt_runtime *rt)
{
	for (uint32_t i = 0; i < ACTORS_APIS_MAX; i++)
		if (atomic_load_explicit(&registry[i].rt,
			    memory_order_acquire) == rt)
			return atomic_load_explicit(&registry[i].a,
				memory_order_acquire);
	return NULL;
}

static int
registry_add(rt_runtime *rt, api *a)
{
	int rc = API_EUNAVAILABLE;
	pthread_mutex_lock(&registry_lock);
	for (uint32_t i = 0; i < ACTORS_APIS_MAX; i++) {
		if (atomic_load(&registry[i].rt) != NULL)
			continue;
		atomic_store(&registry[i].a, a);
		atomic_store_explicit(&registry[i].rt, rt,
			memory_order_release);
		rc = API_OK;
		break;
	}
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

static void
registry_remove(rt_runtime *rt)
{
	pthread_mutex_lock(&registry_lock);
	for (uint32_t i = 0; i < ACTORS_APIS_MAX; i++) {
		if (atomic_load(&registry[i].rt) != rt)
			continue;
		atomic_store(&registry[i].rt, NULL);
		atomic_store(&registry[i].a, NULL);
	}
	pthread_mutex_unlock(&registry_lock);
}

/* ---- errors ------------------------------------------------------------- */

const char *
api_strerror(int code)
{
	switch (code) {
	case API_OK: return "ok";
	case API_EINVALID: return "invalid input";
	case API_EUNAUTHORIZED: return "unauthorized";
	case API_EFORBIDDEN: return "forbidden";
	case API_ENOTFOUND: return "not found";
	case API_ECONFLICT: return "conflict";
	case API_ETOOLARGE: return "too large";
	case API_EMEDIATYPE: return "media type not accepted";
	case API_EIDEMPOTENCY: return "idempotency key reused";
	case API_ERATELIMITED: return "rate limited";
	case API_EUNAVAILABLE: return "unavailable";
	case API_EINTERNAL: return "internal error";
	case API_EGONE: return "gone";
	default: return "unknown error";
	}
}

int
api_http_status(int code)
{
	switch (code) {
	case API_OK: return 200;
	case API_EINVALID: return 400;
	case API_EUNAUTHORIZED: return 401;
	case API_EFORBIDDEN: return 403;
	case API_ENOTFOUND: return 404;
	case API_ECONFLICT: return 409;
	case API_EGONE: return 410;
	case API_ETOOLARGE: return 413;
	case API_EMEDIATYPE: return 415;
	case API_EIDEMPOTENCY: return 422;
	case API_ERATELIMITED: return 429;
	case API_EUNAVAILABLE: return 503;
	default: return 500;
	}
}

/* ---- configuration ------------------------------------------------------ */

void
api_config_default(api_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->timeline_entries_max = API_TIMELINE_ENTRIES_DEFAULT;
	cfg->celebrity_followers_min = API_CELEBRITY_FOLLOWERS_DEFAULT;
	cfg->ask_timeout_ms = ACTORS_ASK_TIMEOUT_MS_DEFAULT;
	cfg->clock_skew_ms_max = ACTORS_CLOCK_SKEW_MS_MAX_DEFAULT;
	cfg->password_memlimit_bytes = ACTORS_PASSWORD_MEMLIMIT_DEFAULT;
	cfg->password_opslimit = ACTORS_PASSWORD_OPSLIMIT_DEFAULT;
	cfg->password_threads = ACTORS_PASSWORD_THREADS_DEFAULT;
	cfg->password_queue_max = ACTORS_PASSWORD_QUEUE_DEFAULT;
	cfg->rate_likes = (api_rate){10, 100};
	cfg->rate_posts = (api_rate){30, 120000};
	cfg->rate_comments = (api_rate){1, 1000};
	cfg->rate_follows = (api_rate){400, 216000};
	cfg->idempotency_ttl_ms = 24ull * 3600 * 1000;
	cfg->media_base_url = "/media";
	cfg->data_dir = "./data";
	cfg->media_threads = 2;
	cfg->media_queue_max = 64;
	cfg->media_attempts_max = 3;
}

/* ---- password pool ------------------------------------------------------ */

typedef struct pool_job {
	struct pool_job *next;
	bool verify;
	rt_addr inbox;
	uint64_t token;
	char password[API_PASSWORD_BYTES_MAX + 1];
	char hash[crypto_pwhash_STRBYTES];
} pool_job;

struct actors__pool {
	api *a;
	pthread_mutex_t lock;
	pthread_cond_t ready;
	pool_job *head;
	pool_job *tail;
	uint32_t queued;
	bool stopping;
	uint32_t threads_count;
	pthread_t threads[];
};

static void
pool_run(api *a, pool_job *job)
{
	actors__pool_done done;
	memset(&done, 0, sizeof done);
	done.token = job->token;
	size_t n = strlen(job->password);
	if (job->verify) {
		done.code = crypto_pwhash_str_verify(job->hash, job->password,
				    n) == 0
			? API_OK
			: API_EUNAUTHORIZED;
	} else {
		done.code = crypto_pwhash_str(done.hash, job->password, n,
				    a->cfg.password_opslimit,
				    (size_t)a->cfg.password_memlimit_bytes) == 0
			? API_OK
			: API_EUNAVAILABLE;
	}
	sodium_memzero(job->password, sizeof job->password);
	rt_message *m = rt_message_alloc(a->rt, ACTORS_T_POOL_DONE,
		sizeof done);
	if (m == NULL)
		return; /* the client's call times out */
	memcpy(m->payload, &done, sizeof done);
	(void)rt_send_external(a->rt, job->inbox, m);
}

static void *
pool_main(void *arg)
{
	actors__pool *pool = arg;
	for (;;) {
		pthread_mutex_lock(&pool->lock);
		while (pool->head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->ready, &pool->lock);
		pool_job *job = pool->head;
		if (job == NULL) {
			pthread_mutex_unlock(&pool->lock);
			return NULL;
		}
		pool->head = job->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pool->queued--;
		pthread_mutex_unlock(&pool->lock);
		pool_run(pool->a, job);
		free(job);
	}
}

static int
pool_create(api *a)
{
	uint32_t n = a->cfg.password_threads;
	if (n == 0)
		return API_OK;
	actors__pool *pool = calloc(1, sizeof *pool + n * sizeof(pthread_t));
	if (pool == NULL)
		return API_EUNAVAILABLE;
	pool->a = a;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->ready, NULL);
	for (uint32_t i = 0; i < n; i++) {
		if (pthread_create(&pool->threads[i], NULL, pool_main, pool) !=
			0)
			break;
		pool->threads_count++;
	}
	a->pool = pool;
	return pool->threads_count > 0 ? API_OK : API_EUNAVAILABLE;
}

static void
pool_destroy(actors__pool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->ready);
	pthread_mutex_unlock(&pool->lock);
	for (uint32_t i = 0; i < pool->threads_count; i++)
		pthread_join(pool->threads[i], NULL);
	while (pool->head != NULL) {
		pool_job *job = pool->head;
		pool->head = job->next;
		free(job);
	}
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->ready);
	free(pool);
}

static int
pool_submit(api *a, pool_job *job)
{
	if (a->pool == NULL) {
		pool_run(a, job); /* inline: deterministic mode */
		free(job);
		return API_OK;
	}
	actors__pool *pool = a->pool;
	pthread_mutex_lock(&pool->lock);
	if (pool->queued >= a->cfg.password_queue_max || pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		free(job);
		return API_EUNAVAILABLE;
	}
	if (pool->tail != NULL)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	pthread_cond_signal(&pool->ready);
	pthread_mutex_unlock(&pool->lock);
	return API_OK;
}

static pool_job *
job_make(rt_addr inbox, uint64_t token, const char *password)
{
	pool_job *job = calloc(1, sizeof *job);
	if (job == NULL)
		return NULL;
	job->inbox = inbox;
	job->token = token;
	snprintf(job->password, sizeof job->password, "%s", password);
	return job;
}

int
actors__pool_hash(api *a, rt_addr inbox, uint64_t token, const char *password)
{
	pool_job *job = job_make(inbox, token, password);
	if (job == NULL)
		return API_EUNAVAILABLE;
	return pool_submit(a, job);
}

int
actors__pool_verify(api *a, rt_addr inbox, uint64_t token, const char *hash,
	const char *password)
{
	pool_job *job = job_make(inbox, token, password);
	if (job == NULL)
		return API_EUNAVAILABLE;
	job->verify = true;
	snprintf(job->hash, sizeof job->hash, "%s", hash);
	return pool_submit(a, job);
}

int
api_password_hash(const api *a, const char *password, char *out, size_t size)
{
	if (!actors__password_valid(password))
		return API_EINVALID;
	if (size < crypto_pwhash_STRBYTES)
		return API_EINVALID;
	if (crypto_pwhash_str(out, password, strlen(password),
		    a->cfg.password_opslimit,
		    (size_t)a->cfg.password_memlimit_bytes) != 0)
		return API_EUNAVAILABLE;
	return API_OK;
}

/* ---- lifetime ----------------------------------------------------------- */

/* Other modules of actors/ register their kinds here when they are linked
 * in (weak: absent modules are skipped). */
__attribute__((weak)) int actors__modules_create(api *a);
__attribute__((weak)) void actors__modules_destroy(api *a);

int
api_create(rt_runtime *rt, ps_node *store, const api_config *cfg, api **out)
{
	if (rt == NULL || out == NULL)
		return API_EINVALID;
	if (sodium_init() < 0)
		return API_EINTERNAL;
	api *a = calloc(1, sizeof *a);
	if (a == NULL)
		return API_EUNAVAILABLE;
	a->rt = rt;
	a->store = store;
	if (cfg != NULL)
		a->cfg = *cfg;
	else
		api_config_default(&a->cfg);
	if (a->cfg.timeline_entries_max == 0)
		a->cfg.timeline_entries_max = API_TIMELINE_ENTRIES_DEFAULT;
	if (a->cfg.ask_timeout_ms == 0)
		a->cfg.ask_timeout_ms = ACTORS_ASK_TIMEOUT_MS_DEFAULT;
	if (a->cfg.password_opslimit < crypto_pwhash_OPSLIMIT_MIN)
		a->cfg.password_opslimit = crypto_pwhash_OPSLIMIT_MIN;
	if (a->cfg.password_memlimit_bytes < crypto_pwhash_MEMLIMIT_MIN)
		a->cfg.password_memlimit_bytes = crypto_pwhash_MEMLIMIT_MIN;
	snprintf(a->media_base_url, sizeof a->media_base_url, "%s",
		a->cfg.media_base_url != NULL ? a->cfg.media_base_url
					      : "/media");
	a->cfg.media_base_url = a->media_base_url;
	actors__idgen_init(&a->ids);
	/* Distinct for every api: the runtime's stream (runtimes of one
	 * process have their own seeds) and its wall clock (a restarted
	 * process starts later; flockd's runtimes all start from seed 1). No
	 * process-wide counter: the simulator runs a seed twice in one
	 * process and both runs must be the same. */
	uint64_t mix[2] = {rt_random_u64(rt), rt_wall_ms(rt)};
	a->incarnation = actors__hash64(mix, sizeof mix) | 1u;
	actors__user_ops(&a->user_ops);
	actors__post_ops(&a->post_ops);
	actors__names_ops(&a->names_ops);
	int rc = registry_add(rt, a);
	if (rc != 0)
		goto fail_registry;
	if (rt_register_kind(rt, ACTORS_KIND_USER, &a->user_ops) != 0 ||
		rt_register_kind(rt, ACTORS_KIND_POST, &a->post_ops) != 0 ||
		rt_register_kind(rt, ACTORS_KIND_NAMES, &a->names_ops) != 0 ||
		actors__engage_register(rt) != 0) {
		rc = API_EINVALID;
		goto fail_kinds;
	}
	rc = pool_create(a);
	if (rc != 0)
		goto fail_kinds;
	rc = actors__post_views_create(&a->post_views);
	if (rc != 0)
		goto fail_views;
	if (actors__modules_create != NULL) {
		rc = actors__modules_create(a);
		if (rc != 0)
			goto fail_modules;
	}
	*out = a;
	return API_OK;
fail_modules:
	actors__post_views_destroy(a->post_views);
fail_views:
	pool_destroy(a->pool);
fail_kinds:
	registry_remove(rt);
fail_registry:
	free(a);
	return rc;
}

bool
api_state_owes(void *arg, rt_addr addr, const void *state)
{
	(void)arg;
	switch (addr.kind) {
	case ACTORS_KIND_USER:
		return actors__user_owes(state);
	case ACTORS_KIND_POST:
		return actors__post_owes(state);
	case ACTORS_KIND_NAMES:
		return actors__names_owes(state);
	default:
		return false;
	}
}

void
api_bind_store(api *a, ps_node *store)
{
	ACTORS_ASSERT(a != NULL);
	a->store = store;
}

void
api_destroy(api *a)
{
	if (a == NULL)
		return;
	if (actors__modules_destroy != NULL)
		actors__modules_destroy(a);
	pool_destroy(a->pool);
	actors__acks_destroy(a);
	actors__post_views_destroy(a->post_views);
	registry_remove(a->rt);
	free(a);
}
