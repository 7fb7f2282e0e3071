/*
 * media_ingest.c — checks and stores uploads off the caller's thread.
 *
 * Role: an upload (up to API_UPLOAD_BYTES_MAX, 30 MB) costs a header
 * probe, a SHA-256 pass and a durable write (fsync of file and
 * directory) before its media item can be created: tens to hundreds of
 * milliseconds that must not run on the gateway's event loop. The api
 * client hands the bytes to this worker with a token; the worker fills
 * the job's outcome (code, detail, hash), frees the bytes and posts an
 * ACTORS_T_POOL_DONE with the token to the client's inbox, so the
 * continuation runs on the client's thread from api_client_poll, like
 * every other answer.
 *
 * Invariants:
 *   - a submitted job is finished exactly once: its bytes are freed and
 *     its done message sent (or, when the service is destroyed first,
 *     the job is freed unsent);
 *   - the queue holds at most MEDIA_INGEST_QUEUE_JOBS_MAX jobs and
 *     MEDIA_INGEST_QUEUE_BYTES_MAX bytes: past them a submit is
 *     API_EUNAVAILABLE (503) and nothing is queued;
 *   - the worker writes the job's outcome before sending; the client
 *     reads it after receiving (the inbox orders the two).
 *
 * With threads 0 (deterministic runs) the job runs inline on the
 * submitting thread, its answer still arriving through the inbox.
 *
 * What it deliberately does not do: decode pixels (the pool does), touch
 * actors (the continuation asks the media actor).
 */
#include "actors/media.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "actors/internal.h"

#define INGEST_ASSERT(cond) ACTORS_ASSERT(cond)

struct media_ingest {
	rt_runtime *rt;
	char *data_dir;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	media_ingest_job *head;
	media_ingest_job *tail;
	uint32_t queued;
	size_t queued_bytes;
	bool stopping;
	media_ingest_gate_callback gate;
	void *gate_arg;
	uint32_t threads_started;
	pthread_t threads[MEDIA_INGEST_THREADS_MAX];
};

/* Probe, hash and durable store (not when the variants are stored
 * already: dedupe). Fills job's outcome. */
static void
ingest_check_and_store(const char *data_dir, media_ingest_job *job)
{
	job->detail = NULL;
	job->hash[0] = '\0';
	media_probe_result probe;
	int rc = media_probe(job->bytes, job->length, &probe, &job->detail);
	if (rc == 0) {
		media_hash_hex(job->bytes, job->length, job->hash);
		if (!media_store_has_variants(data_dir, job->hash)) {
			rc = media_store_original(data_dir, job->hash,
				job->bytes, job->length);
			if (rc != 0)
				job->detail = "could not store the upload";
		}
	}
	job->code = rc;
}

/* Runs job and posts its done message; the job belongs to its waiter
 * from then on (or is freed when the message cannot be sent). */
static void
ingest_run(media_ingest *in, media_ingest_job *job)
{
	ingest_check_and_store(in->data_dir, job);
	free(job->bytes);
	job->bytes = NULL;
	actors__pool_done done;
	memset(&done, 0, sizeof done);
	done.token = job->token;
	done.code = job->code;
	rt_message *m = rt_message_alloc(in->rt, ACTORS_T_POOL_DONE,
		sizeof done);
	if (m == NULL)
		return; /* the waiter's call never completes: as a lost reply */
	memcpy(m->payload, &done, sizeof done);
	(void)rt_send_external(in->rt, job->inbox, m);
}

static void *
ingest_main(void *arg)
{
	media_ingest *in = arg;
	for (;;) {
		pthread_mutex_lock(&in->lock);
		while (in->head == NULL && !in->stopping)
			pthread_cond_wait(&in->wake, &in->lock);
		media_ingest_job *job = in->head;
		if (job == NULL) {
			pthread_mutex_unlock(&in->lock);
			break;
		}
		in->head = job->next;
		if (in->head == NULL)
			in->tail = NULL;
		INGEST_ASSERT(in->queued > 0);
		INGEST_ASSERT(in->queued_bytes >= job->length);
		in->queued--;
		in->queued_bytes -= job->length;
		media_ingest_gate_callback gate = in->gate;
		void *gate_arg = in->gate_arg;
		pthread_mutex_unlock(&in->lock);
		if (gate != NULL)
			gate(gate_arg);
		ingest_run(in, job);
	}
	media_vips_thread_done();
	return NULL;
}

int
media_ingest_create(rt_runtime *rt, const char *data_dir, uint32_t threads,
	media_ingest **out)
{
	INGEST_ASSERT(out != NULL);
	*out = NULL;
	if (rt == NULL || data_dir == NULL ||
		threads > MEDIA_INGEST_THREADS_MAX)
		return API_EINVALID;
	media_ingest *in = calloc(1, sizeof *in);
	if (in == NULL)
		return API_EINTERNAL;
	in->rt = rt;
	in->data_dir = strdup(data_dir);
	if (in->data_dir == NULL) {
		free(in);
		return API_EINTERNAL;
	}
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->wake, NULL);
	for (uint32_t i = 0; i < threads; i++) {
		if (pthread_create(&in->threads[i], NULL, ingest_main, in) != 0)
			break;
		in->threads_started++;
	}
	if (in->threads_started < threads) {
		media_ingest_destroy(in);
		return API_EINTERNAL;
	}
	*out = in;
	return 0;
}

void
media_ingest_destroy(media_ingest *in)
{
	if (in == NULL)
		return;
	pthread_mutex_lock(&in->lock);
	in->stopping = true;
	pthread_cond_broadcast(&in->wake);
	pthread_mutex_unlock(&in->lock);
	for (uint32_t i = 0; i < in->threads_started; i++)
		pthread_join(in->threads[i], NULL);
	/* The threads took what they could before stopping; jobs left were
	 * never started: their waiters are gone with the runtime. */
	while (in->head != NULL) {
		media_ingest_job *job = in->head;
		in->head = job->next;
		free(job->bytes);
		free(job);
	}
	pthread_mutex_destroy(&in->lock);
	pthread_cond_destroy(&in->wake);
	free(in->data_dir);
	free(in);
}

int
media_ingest_submit(media_ingest *in, media_ingest_job *job)
{
	INGEST_ASSERT(in != NULL);
	INGEST_ASSERT(job != NULL);
	INGEST_ASSERT(job->token != 0);
	INGEST_ASSERT(job->bytes != NULL || job->length == 0);
	job->next = NULL;
	if (in->threads_started == 0) {
		ingest_run(in, job); /* inline: deterministic mode */
		return 0;
	}
	pthread_mutex_lock(&in->lock);
	if (in->stopping || in->queued >= MEDIA_INGEST_QUEUE_JOBS_MAX ||
		job->length > MEDIA_INGEST_QUEUE_BYTES_MAX - in->queued_bytes) {
		pthread_mutex_unlock(&in->lock);
		return API_EUNAVAILABLE;
	}
	if (in->tail != NULL)
		in->tail->next = job;
	else
		in->head = job;
	in->tail = job;
	in->queued++;
	in->queued_bytes += job->length;
	pthread_cond_signal(&in->wake);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

void
media_ingest_set_gate(media_ingest *in, media_ingest_gate_callback gate,
	void *arg)
{
	pthread_mutex_lock(&in->lock);
	in->gate = gate;
	in->gate_arg = arg;
	pthread_mutex_unlock(&in->lock);
}
