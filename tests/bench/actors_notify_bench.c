/*
 * actors_notify_bench.c — a like's notification on a live stream, and
 * username search, end to end through api.h, in one process.
 *
 * Figures (printed as `figure <name> <value> <unit>`):
 *   like_notify_10k_p50 / _p99           µs from api_like to the
 *                                        notification event reaching the
 *                                        author's subscribed session, at
 *                                        10,000 likes/s (open loop), with
 *                                        the journal on
 *   like_notify_10k_answer_p50 / _p99    µs from api_like to its own answer
 *                                        (the like's record durable): the
 *                                        part of the above spent before the
 *                                        notification leaves the post
 *   like_notify_10k_cpu_per_like         µs of CPU (every thread of the
 *                                        process, user + system) per like
 *                                        in that step: steadier than wall
 *                                        time on a shared machine
 *   like_notify_max_rate                 the highest rate stepped to whose
 *                                        likes were all answered and
 *                                        notified in time
 *   like_notify_max_p50 / _p99           µs at that rate
 *   like_notify_memory_*                 the same with no journal (the
 *                                        actors' and client's own cost)
 *   like_notify_fdatasync_4k_p50 / _p99  µs per fdatasync of a 4 KiB
 *                                        append in the journal's directory,
 *                                        just before the 10,000/s step: the
 *                                        floor a journaled like waits on
 *   ratio like_notify_10k_p99 fdatasync_4k_p99   the like's p99 over it
 *   search_users_loaded                  usernames signed up and indexed
 *   search_prefix_queries_per_second     api_search (users) with hydration,
 *                                        64 in flight, 1-4 character prefixes
 *   search_prefix_p50 / _p99             µs per query at that load
 *
 * Method: a real-mode runtime with two workers. Likes: journal on (a
 * real ps_node in a temp directory, so each like is fdatasynced before
 * its effect goes out; the fdatasync peer is timed once the idle
 * journal stopped zeroing ahead); 16 authors with a session each on the
 * bench's client; every like is a new (liker, post) pair, so each one is a new
 * notification; the bench thread paces likes by the clock and, between
 * them, runs what its client holds and sleeps until the next like is due
 * or the client's inbox wakes it (as a gateway's loop sleeps until its
 * uv_async fires; a spinning bench thread took a core from the two
 * workers and the journal writer it measures). A notification is timed
 * when the client hands it over. FLOCK_BENCH_STAGES=1 adds, on stderr,
 * where each step's time went: the journal's timeline of each group
 * commit (ps_journal_set_trace) and the bench's own timestamps of each
 * like (sent, answered, notified), joined by taking a like's batch to be
 * the last one synced before its answer came. Search: journal off (a million signups would be a benchmark of
 * the journal); users signed up through api_signup_prehashed with a
 * window of calls in flight, then queries of random prefixes of the
 * names loaded. FLOCK_BENCH_USERS overrides the million.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "actors/api.h"
#include "persistence/persistence.h"
#include "runtime/runtime.h"

#define AUTHORS 16u
#define POSTS_PER_AUTHOR 64u
#define LIKERS 512u
/* Seconds each rate runs. */
#define STEP_SECONDS 2.0
/* A step fails when its likes are not all answered and notified this
 * long after the last was sent. */
#define DRAIN_SECONDS 2.0
#define SEARCH_USERS_DEFAULT 1000000u
#define SEARCH_WINDOW 64u
#define SEARCH_QUERIES 200000u
#define SIGNUP_WINDOW 1024u
/* The journal is settled when it took no zeroing step for this long
 * (longer than its 50 ms idle wait), waiting at most SETTLE_SECONDS. */
#define SETTLE_QUIET_SECONDS 0.2
#define SETTLE_SECONDS 10.0
/* fdatasyncs timed for the peer figure (a second or two on a disk). */
#define SYNC_SAMPLES 2000u

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of every thread of the process, µs. */
static double
process_cpu_us(void)
{
	struct rusage u;
	if (getrusage(RUSAGE_SELF, &u) != 0)
		return 0.0;
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
		(double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double
percentile_us(uint64_t *ns, size_t n, double p)
{
	if (n == 0)
		return 0.0;
	qsort(ns, n, sizeof *ns, cmp_u64);
	size_t i = (size_t)ceil(p * (double)n) - 1;
	if (i >= n)
		i = n - 1;
	return (double)ns[i] / 1000.0;
}

/* ---- the bench thread's wake-up ------------------------------------------ */

/* Posted when a client's inbox goes from empty to non-empty. */
static sem_t inbox_ready;

static void
inbox_notify(void *arg)
{
	(void)arg;
	(void)sem_post(&inbox_ready);
}

/* Runs what c holds; if it held nothing, sleeps until until_s (monotonic
 * seconds) or until something arrives, and runs that. */
static void
client_wait_until(api_client *c, double until_s)
{
	while (sem_trywait(&inbox_ready) == 0)
		;
	if (api_client_poll(c) > 0)
		return;
	struct timespec ts;
	double whole = floor(until_s);
	ts.tv_sec = (time_t)whole;
	ts.tv_nsec = (long)((until_s - whole) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	(void)sem_clockwait(&inbox_ready, CLOCK_MONOTONIC, &ts);
	(void)api_client_poll(c);
}

/* ---- a synchronous call ------------------------------------------------- */

typedef struct sync_call {
	bool done;
	int code;
	uint64_t id;
	const char *id_key;
} sync_call;

static void
sync_done(void *arg, const api_result *r)
{
	sync_call *s = arg;
	s->done = true;
	s->code = r->code;
	if (s->id_key != NULL && r->body != NULL)
		s->id = api_body_id(r->body, s->id_key);
}

static int
sync_wait(api_client *c, sync_call *s)
{
	while (!s->done)
		api_client_wait(c, 100);
	return s->code;
}

/* ---- likes to notifications ------------------------------------------------ */

typedef struct like_world {
	api_client *c;
	uint64_t authors[AUTHORS];
	uint64_t posts[AUTHORS * POSTS_PER_AUTHOR]; /* ascending */
	uint32_t post_author[AUTHORS * POSTS_PER_AUTHOR];
	uint64_t likers[LIKERS];                    /* ascending */
	uint64_t *sent_ns; /* by pair: post index * LIKERS + liker index */
	uint64_t *latency_ns;
	size_t latencies;
	uint64_t *answer_sent_ns; /* by pair, like sent_ns, until answered */
	uint64_t *answer_ns;      /* the step's answers' latencies */
	size_t answers;
	uint64_t answered;
	uint64_t failed;
	uint64_t next_pair;
	/* FLOCK_BENCH_STAGES only (else NULL), by pair: monotonic ns. */
	struct like_times {
		uint64_t sent;
		uint64_t answered;
		uint64_t notified;
	} *times;
	api_stream *streams[AUTHORS];
	struct session {
		struct like_world *w;
		uint32_t author;
	} sessions[AUTHORS];
} like_world;

static int
index_of(const uint64_t *sorted, uint32_t n, uint64_t id)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (sorted[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && sorted[lo] == id ? (int)lo : -1;
}

static void
on_notification(void *arg, const api_event *ev)
{
	struct session *session = arg;
	like_world *w = session->w;
	if (ev->type != API_EVENT_NOTIFICATION)
		return;
	uint64_t now = now_ns();
	/* Seen: as a client acks (batched by the client layer). */
	api_stream_ack(w->streams[session->author], ev->seq);
	int p = index_of(w->posts, AUTHORS * POSTS_PER_AUTHOR,
		api_body_id(ev->data, "post_id"));
	int l = index_of(w->likers, LIKERS,
		api_body_id(api_body_get(ev->data, "by_user"), "user_id"));
	if (p < 0 || l < 0)
		return;
	uint64_t *sent = &w->sent_ns[(size_t)p * LIKERS + (size_t)l];
	if (*sent == 0)
		return;
	if (w->times != NULL)
		w->times[(size_t)p * LIKERS + (size_t)l].notified = now;
	w->latency_ns[w->latencies++] = now - *sent;
	*sent = 0;
}

/* The world of the running like step (callbacks get their pair's slot). */
static like_world *likes_running;
/* The journal the likes are written to (NULL with the journal off). */
static ps_journal *likes_journal;

static void
like_answered(void *arg, const api_result *r)
{
	like_world *w = likes_running;
	uint64_t *sent = arg;
	if (*sent != 0) {
		uint64_t now = now_ns();
		if (w->times != NULL)
			w->times[sent - w->answer_sent_ns].answered = now;
		w->answer_ns[w->answers++] = now - *sent;
		*sent = 0;
	}
	w->answered++;
	if (r->code != API_OK)
		w->failed++;
}

static int
signup(api_client *c, const char *hash, const char *name, uint64_t *id)
{
	char email[64];
	snprintf(email, sizeof email, "%s@bench.example", name);
	api_ctx none = {0};
	sync_call s = {false, 0, 0, "user_id"};
	int rc = api_signup_prehashed(c, &none, name, email, hash, sync_done,
		&s);
	if (rc == 0)
		rc = sync_wait(c, &s);
	*id = s.id;
	return rc;
}

static int
like_world_build(like_world *w, const char *hash)
{
	for (uint32_t i = 0; i < AUTHORS; i++) {
		char name[32];
		snprintf(name, sizeof name, "author%u", i);
		if (signup(w->c, hash, name, &w->authors[i]) != 0)
			return -1;
		for (uint32_t k = 0; k < POSTS_PER_AUTHOR; k++) {
			api_ctx ctx = {.user_id = w->authors[i]};
			sync_call s = {false, 0, 0, "post_id"};
			if (api_post_create(w->c, &ctx, "like me", 0, sync_done,
				    &s) != 0 ||
				sync_wait(w->c, &s) != 0)
				return -1;
			w->posts[i * POSTS_PER_AUTHOR + k] = s.id;
		}
	}
	for (uint32_t i = 0; i < LIKERS; i++) {
		char name[32];
		snprintf(name, sizeof name, "liker%u", i);
		if (signup(w->c, hash, name, &w->likers[i]) != 0)
			return -1;
	}
	/* Sorted for lookups; remember each post's author. */
	uint64_t tagged[AUTHORS * POSTS_PER_AUTHOR][2];
	for (uint32_t i = 0; i < AUTHORS * POSTS_PER_AUTHOR; i++) {
		tagged[i][0] = w->posts[i];
		tagged[i][1] = i / POSTS_PER_AUTHOR;
	}
	qsort(tagged, AUTHORS * POSTS_PER_AUTHOR, sizeof tagged[0], cmp_u64);
	for (uint32_t i = 0; i < AUTHORS * POSTS_PER_AUTHOR; i++) {
		w->posts[i] = tagged[i][0];
		w->post_author[i] = (uint32_t)tagged[i][1];
	}
	qsort(w->likers, LIKERS, sizeof w->likers[0], cmp_u64);
	for (uint32_t i = 0; i < AUTHORS; i++) {
		api_ctx ctx = {.user_id = w->authors[i]};
		w->sessions[i].w = w;
		w->sessions[i].author = i;
		if (api_stream_open(w->c, &ctx, w->authors[i], false, 0,
			    on_notification, &w->sessions[i],
			    &w->streams[i]) != 0)
			return -1;
	}
	for (int i = 0; i < 50; i++) /* subscriptions settle */
		api_client_wait(w->c, 2);
	return 0;
}

/* Sends the next like (a pair never liked before). */
static int
like_next(like_world *w)
{
	const uint64_t pairs = (uint64_t)AUTHORS * POSTS_PER_AUTHOR * LIKERS;
	if (w->next_pair >= pairs)
		return -1;
	uint64_t pair = w->next_pair++;
	/* Spread consecutive likes over posts (hence authors). */
	uint32_t post = (uint32_t)(pair % (AUTHORS * POSTS_PER_AUTHOR));
	uint32_t liker = (uint32_t)(pair / (AUTHORS * POSTS_PER_AUTHOR));
	api_ctx ctx = {.user_id = w->likers[liker]};
	size_t at = (size_t)post * LIKERS + liker;
	w->sent_ns[at] = now_ns();
	w->answer_sent_ns[at] = w->sent_ns[at];
	if (w->times != NULL)
		w->times[at] = (struct like_times){w->sent_ns[at], 0, 0};
	return api_like(w->c, &ctx, w->posts[post], true, like_answered,
		&w->answer_sent_ns[at]);
}

/* ---- where the time went (FLOCK_BENCH_STAGES=1) -------------------------- */

/* Group commits traced per step: 2 s at one per 50 µs. */
#define TRACE_BATCHES_MAX 40000u

static ps_journal_batch_trace traces[TRACE_BATCHES_MAX];
static atomic_uint traces_count;

/* Writer thread: keeps the batches that held records. */
static void
trace_batch(void *arg, const ps_journal_batch_trace *t)
{
	(void)arg;
	unsigned n = atomic_load_explicit(&traces_count, memory_order_relaxed);
	if (t->first_lsn == 0 || n >= TRACE_BATCHES_MAX)
		return;
	traces[n] = *t;
	atomic_store_explicit(&traces_count, n + 1, memory_order_release);
}

enum {
	STAGE_TO_TAKEN,    /* sent -> its batch taken by the writer */
	STAGE_WRITE,       /* taken -> written */
	STAGE_SYNC,        /* written -> fdatasync returned */
	STAGE_TO_ANSWER,   /* synced -> the like's answer at the client */
	STAGE_TO_NOTIFIED, /* answer -> the notification at the session */
	STAGE_INFLIGHT,    /* sent -> end of the sync in flight then (0) */
	STAGES
};
static const char *const stage_names[STAGES] = {"sent->taken",
	"taken->written", "written->synced", "synced->answered",
	"answered->notified", "(of sent->taken: sync in flight)"};

static double
mean_us(const uint64_t *ns, size_t n)
{
	double sum = 0.0;
	for (size_t i = 0; i < n; i++)
		sum += (double)ns[i];
	return n > 0 ? sum / (double)n / 1000.0 : 0.0;
}

/* Index of the last traced batch synced at or before t (-1: none). */
static long
batch_synced_before(const ps_journal_batch_trace *b, size_t n, uint64_t t)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b[mid].synced_ns <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (long)lo - 1;
}

/* Prints the stages of the likes of pairs [first, last). */
static void
stages_print(like_world *w, uint64_t first, uint64_t last)
{
	size_t nb = atomic_load_explicit(&traces_count, memory_order_acquire);
	size_t n = (size_t)(last - first), kept = 0, unmatched = 0, missed = 0;
	uint64_t *stage[STAGES], *e2e = calloc(n + 1, sizeof *e2e);
	size_t *order = calloc(n + 1, sizeof *order);
	for (int s = 0; s < STAGES; s++)
		stage[s] = calloc(n + 1, sizeof *stage[s]);
	for (uint64_t pair = first; pair < last; pair++) {
		uint32_t post = (uint32_t)(pair % (AUTHORS * POSTS_PER_AUTHOR));
		uint32_t liker = (uint32_t)(pair / (AUTHORS * POSTS_PER_AUTHOR));
		const struct like_times *t =
			&w->times[(size_t)post * LIKERS + liker];
		if (t->answered == 0 || t->notified == 0)
			continue;
		uint64_t v[STAGES] = {0};
		if (likes_journal != NULL) {
			long k = batch_synced_before(traces, nb, t->answered);
			if (k < 0 || traces[k].taken_ns < t->sent) {
				unmatched++;
				continue;
			}
			const ps_journal_batch_trace *b = &traces[k];
			v[STAGE_TO_TAKEN] = b->taken_ns - t->sent;
			v[STAGE_WRITE] = b->written_ns - b->taken_ns;
			v[STAGE_SYNC] = b->synced_ns - b->written_ns;
			v[STAGE_TO_ANSWER] = t->answered - b->synced_ns;
			long j = batch_synced_before(traces, nb, t->sent);
			long next = j + 1; /* the first taken after sent */
			if (next < k && traces[next].taken_ns <= t->sent) {
				v[STAGE_INFLIGHT] = traces[next].synced_ns -
					t->sent;
				next++;
			}
			/* Taken before the like's record was queued. */
			if (next < k)
				missed++;
		} else {
			v[STAGE_TO_ANSWER] = t->answered - t->sent;
		}
		v[STAGE_TO_NOTIFIED] = t->notified > t->answered
			? t->notified - t->answered
			: 0;
		for (int s = 0; s < STAGES; s++)
			stage[s][kept] = v[s];
		e2e[kept] = t->notified - t->sent;
		order[kept] = kept;
		kept++;
	}
	/* The slowest 1% by sent -> notified, and their mean stages. */
	size_t tail = kept / 100 > 0 ? kept / 100 : kept;
	for (size_t i = 0; i < tail; i++) { /* partial selection */
		size_t best = i;
		for (size_t k = i + 1; k < kept; k++)
			if (e2e[order[k]] > e2e[order[best]])
				best = k;
		size_t x = order[i];
		order[i] = order[best];
		order[best] = x;
	}
	fprintf(stderr, "  stages of %zu likes (%zu not matched to a batch, "
			"%zu whose record missed the first batch taken after "
			"they were sent), us: p50 / p99 / mean / mean of the "
			"slowest 1%%\n",
		kept, unmatched, missed);
	for (int s = 0; s < STAGES; s++) {
		if (likes_journal == NULL && s != STAGE_TO_ANSWER &&
			s != STAGE_TO_NOTIFIED)
			continue;
		double tail_sum = 0.0;
		for (size_t i = 0; i < tail; i++)
			tail_sum += (double)stage[s][order[i]];
		double mean = mean_us(stage[s], kept);
		fprintf(stderr, "    %-34s %8.1f %8.1f %8.1f %8.1f\n",
			likes_journal == NULL && s == STAGE_TO_ANSWER
				? "sent->answered"
				: stage_names[s],
			percentile_us(stage[s], kept, 0.50),
			percentile_us(stage[s], kept, 0.99), mean,
			tail > 0 ? tail_sum / (double)tail / 1000.0 : 0.0);
	}
	if (likes_journal != NULL && nb > 1) {
		/* The writer's own timeline: batch sizes, syncs, callbacks,
		 * and the gap before the next batch when one was waiting. */
		uint64_t *items = calloc(nb, sizeof *items);
		uint64_t *sync = calloc(nb, sizeof *sync);
		uint64_t *done = calloc(nb, sizeof *done);
		uint64_t *gap = calloc(nb, sizeof *gap);
		size_t gaps = 0;
		for (size_t i = 0; i < nb; i++) {
			items[i] = traces[i].items * 1000u; /* printed /1000 */
			sync[i] = traces[i].synced_ns - traces[i].written_ns;
			done[i] = traces[i].completed_ns - traces[i].synced_ns;
			if (i + 1 < nb && traces[i + 1].first_queued_ns <=
					traces[i].synced_ns)
				gap[gaps++] = traces[i + 1].taken_ns -
					traces[i].synced_ns;
		}
		fprintf(stderr, "  %zu batches, p50 / p99 / mean: items %.0f / "
				"%.0f / %.1f, fdatasync %.1f / %.1f / %.1f us, "
				"callbacks %.1f / %.1f / %.1f us, synced -> next "
				"taken (%zu with one queued) %.1f / %.1f / %.1f "
				"us\n",
			nb, percentile_us(items, nb, 0.5),
			percentile_us(items, nb, 0.99), mean_us(items, nb),
			percentile_us(sync, nb, 0.5),
			percentile_us(sync, nb, 0.99), mean_us(sync, nb),
			percentile_us(done, nb, 0.5),
			percentile_us(done, nb, 0.99), mean_us(done, nb), gaps,
			percentile_us(gap, gaps, 0.5),
			percentile_us(gap, gaps, 0.99), mean_us(gap, gaps));
		free(items);
		free(sync);
		free(done);
		free(gap);
	}
	for (int s = 0; s < STAGES; s++)
		free(stage[s]);
	free(e2e);
	free(order);
}

/* One open-loop step at rate likes/s. Returns true when every like was
 * answered and notified within the drain time; p50 and p99 in µs. */
static bool
like_step(like_world *w, double rate, double *p50, double *p99,
	double *cpu_per_like_us, double *answer_p50, double *answer_p99)
{
	uint64_t sent = 0, answered0 = w->answered;
	ps_journal_stats j0 = {0}, j1 = {0};
	if (likes_journal != NULL)
		ps_journal_get_stats(likes_journal, &j0);
	uint64_t first_pair = w->next_pair;
	if (w->times != NULL && likes_journal != NULL) {
		atomic_store(&traces_count, 0);
		ps_journal_set_trace(likes_journal, trace_batch, NULL);
	}
	double cpu0 = process_cpu_us();
	w->latencies = 0;
	w->answers = 0;
	double t0 = now_s();
	for (;;) {
		double t = now_s() - t0;
		if (t >= STEP_SECONDS)
			break;
		uint64_t due = (uint64_t)(t * rate);
		while (sent < due) {
			if (like_next(w) != 0)
				return false;
			sent++;
		}
		client_wait_until(w->c, t0 + (double)(sent + 1) / rate);
	}
	double end = now_s() + DRAIN_SECONDS;
	while ((w->answered - answered0 < sent || w->latencies < sent) &&
		now_s() < end)
		client_wait_until(w->c, end);
	*cpu_per_like_us = sent > 0
		? (process_cpu_us() - cpu0) / (double)sent
		: 0.0;
	if (likes_journal != NULL)
		ps_journal_get_stats(likes_journal, &j1);
	*p50 = percentile_us(w->latency_ns, w->latencies, 0.50);
	*p99 = percentile_us(w->latency_ns, w->latencies, 0.99);
	*answer_p50 = percentile_us(w->answer_ns, w->answers, 0.50);
	*answer_p99 = percentile_us(w->answer_ns, w->answers, 0.99);
	fprintf(stderr, "likes at %.0f/s: sent %llu, notified %zu, p50 %.1f "
			"us, p99 %.1f us (answered: p50 %.1f us, p99 %.1f "
			"us), CPU %.1f us/like; journal: %llu fdatasyncs, %llu "
			"zero writes on their path\n",
		rate, (unsigned long long)sent, w->latencies, *p50, *p99,
		*answer_p50, *answer_p99, *cpu_per_like_us,
		(unsigned long long)(j1.syncs - j0.syncs),
		(unsigned long long)(j1.zero_fills - j0.zero_fills));
	if (w->times != NULL) {
		if (likes_journal != NULL)
			ps_journal_set_trace(likes_journal, NULL, NULL);
		stages_print(w, first_pair, w->next_pair);
	}
	return w->answered - answered0 == sent && w->latencies == sent &&
		w->failed == 0;
}

/* fdatasync of a 4 KiB append in dir, SYNC_SAMPLES times: p50 and p99
 * in µs (0 when the file cannot be written). */
static void
fdatasync_peer(const char *dir, double *p50, double *p99)
{
	*p50 = *p99 = 0.0;
	char path[128];
	snprintf(path, sizeof path, "%s/sync.dat", dir);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0)
		return;
	static unsigned char block[4096];
	memset(block, 0xab, sizeof block);
	uint64_t *samples = calloc(SYNC_SAMPLES, sizeof *samples);
	size_t n = 0;
	for (uint32_t i = 0; samples != NULL && i < SYNC_SAMPLES; i++) {
		if (pwrite(fd, block, sizeof block,
			    (off_t)i * (off_t)sizeof block) != sizeof block)
			break;
		uint64_t t = now_ns();
		if (fdatasync(fd) != 0)
			break;
		samples[n++] = now_ns() - t;
	}
	close(fd);
	unlink(path);
	if (n == SYNC_SAMPLES) {
		*p50 = percentile_us(samples, n, 0.50);
		*p99 = percentile_us(samples, n, 0.99);
	}
	free(samples);
}

/* Waits until the idle journal has stopped zeroing ahead (its steps
 * would share the disk with the fdatasync peer measured next); at most
 * SETTLE_SECONDS. */
static void
journal_settle(ps_journal *j)
{
	ps_journal_stats st;
	ps_journal_get_stats(j, &st);
	uint64_t steps = st.zero_idle_steps;
	double quiet_since = now_s(), end = now_s() + SETTLE_SECONDS;
	while (now_s() < end && now_s() - quiet_since < SETTLE_QUIET_SECONDS) {
		struct timespec pause = {0, 10 * 1000 * 1000};
		nanosleep(&pause, NULL);
		ps_journal_get_stats(j, &st);
		if (st.zero_idle_steps != steps) {
			steps = st.zero_idle_steps;
			quiet_since = now_s();
		}
	}
}

static int
bench_likes(const char *hash, bool journal)
{
	const char *tag = journal ? "like_notify" : "like_notify_memory";
	char dir[] = "/tmp/flock-notify-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 2;
	rc.passivate_idle_ms = 0;
	rc.log_level = RT_LOG_WARN;
	api_config cfg;
	api_config_default(&cfg);
	/* The bench posts and likes far faster than a person may. */
	cfg.rate_likes = (api_rate){0, 0};
	cfg.rate_posts = (api_rate){0, 0};
	rt_runtime *rt;
	api *a;
	ps_node *node;
	if (rt_create(&rc, &rt) != 0 || api_create(rt, NULL, &cfg, &a) != 0 ||
		ps_node_open(dir, rt, NULL, NULL, &node) != 0)
		return 1;
	likes_journal = NULL;
	if (journal) {
		api_bind_store(a, node);
		likes_journal = ps_node_journal(node);
	}
	rt_start(rt);
	like_world *w = calloc(1, sizeof *w);
	const size_t pairs = (size_t)AUTHORS * POSTS_PER_AUTHOR * LIKERS;
	w->sent_ns = calloc(pairs, sizeof *w->sent_ns);
	w->latency_ns = calloc(pairs, sizeof *w->latency_ns);
	w->answer_sent_ns = calloc(pairs, sizeof *w->answer_sent_ns);
	w->answer_ns = calloc(pairs, sizeof *w->answer_ns);
	const char *stages_env = getenv("FLOCK_BENCH_STAGES");
	if (stages_env != NULL && strcmp(stages_env, "1") == 0)
		w->times = calloc(pairs, sizeof *w->times);
	likes_running = w;
	if (w->sent_ns == NULL || w->latency_ns == NULL ||
		w->answer_sent_ns == NULL || w->answer_ns == NULL ||
		api_client_create(a, inbox_notify, NULL, &w->c) != 0 ||
		like_world_build(w, hash) != 0) {
		fprintf(stderr, "actors_notify_bench: setup failed\n");
		return 1;
	}
	double p50, p99, cpu, sync50 = 0.0, sync99 = 0.0, a50, a99;
	if (journal) {
		journal_settle(likes_journal);
		fdatasync_peer(dir, &sync50, &sync99);
	}
	bool ok = like_step(w, 10000.0, &p50, &p99, &cpu, &a50, &a99);
	printf("figure %s_10k_p50 %.1f us\n", tag, p50);
	printf("figure %s_10k_p99 %.1f us\n", tag, p99);
	printf("figure %s_10k_answer_p50 %.1f us\n", tag, a50);
	printf("figure %s_10k_answer_p99 %.1f us\n", tag, a99);
	printf("figure %s_10k_cpu_per_like %.1f us\n", tag, cpu);
	if (journal && sync99 > 0.0) {
		printf("figure %s_fdatasync_4k_p50 %.1f us\n", tag, sync50);
		printf("figure %s_fdatasync_4k_p99 %.1f us\n", tag, sync99);
		printf("ratio %s_10k_p99 fdatasync_4k_p99 %.2f\n", tag,
			p99 / sync99);
	}
	if (!ok)
		fprintf(stderr, "%s: 10,000 likes/s was not sustained\n", tag);
	double best = ok ? 10000.0 : 0.0, best50 = p50, best99 = p99;
	/* Up by doubling from 10,000/s while sustained, else down by
	 * halving until one is. */
	for (double rate = ok ? 20000.0 : 5000.0;
		rate <= 320000.0 && rate >= 600.0;
		rate = best > 0.0 ? rate * 2.0 : rate / 2.0) {
		bool step = like_step(w, rate, &p50, &p99, &cpu, &a50, &a99);
		if (step && rate > best) {
			best = rate;
			best50 = p50;
			best99 = p99;
		}
		if (best > 0.0 && (!step || rate < 10000.0))
			break;
	}
	printf("figure %s_max_rate %.0f likes/s\n", tag, best);
	printf("figure %s_max_p50 %.1f us\n", tag, best50);
	printf("figure %s_max_p99 %.1f us\n", tag, best99);
	for (uint32_t i = 0; i < AUTHORS; i++)
		api_stream_close(w->streams[i]);
	api_client_destroy(w->c);
	rt_stop(rt);
	ps_node_close(node);
	api_destroy(a);
	rt_destroy(rt);
	free(w->sent_ns);
	free(w->latency_ns);
	free(w->answer_sent_ns);
	free(w->answer_ns);
	free(w->times);
	free(w);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : 0;
}

/* ---- username search --------------------------------------------------------- */

/* A pronounceable name from n: syllables, then digits now and then. */
static void
username_of(uint64_t n, char *out, size_t size)
{
	static const char *const syllables[] = {"ka", "lo", "mi", "ra", "ne",
		"to", "sa", "vi", "de", "ju", "po", "li", "ma", "ro", "be",
		"zu", "an", "el", "or", "ti", "ya", "qu", "ix", "fe"};
	uint64_t x = n * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
	size_t at = 0;
	uint32_t parts = 2 + (uint32_t)(x % 3);
	for (uint32_t i = 0; i < parts; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		const char *s = syllables[(x >> 33) % 24];
		at += (size_t)snprintf(out + at, size - at, "%s", s);
	}
	/* The number keeps names unique. */
	snprintf(out + at, size - at, "%s%llu", (x >> 40) % 3 ? "" : ".",
		(unsigned long long)n);
}

typedef struct signup_window {
	uint64_t done;
	uint64_t failed;
	uint32_t in_flight;
} signup_window;

static void
signup_done(void *arg, const api_result *r)
{
	signup_window *s = arg;
	s->done++;
	s->in_flight--;
	if (r->code != API_OK)
		s->failed++;
}

typedef struct query_window {
	uint64_t done;
	uint64_t hits;
	uint64_t failed;
	uint32_t in_flight;
	uint64_t *latency_ns;
} query_window;

typedef struct query_slot {
	query_window *q;
	uint64_t sent_ns;
} query_slot;

static void
query_done(void *arg, const api_result *r)
{
	query_slot *slot = arg;
	query_window *q = slot->q;
	q->latency_ns[q->done++] = now_ns() - slot->sent_ns;
	q->in_flight--;
	if (r->code != API_OK) {
		q->failed++;
	} else {
		const msgpack_object *items = api_body_get(r->body, "items");
		if (items != NULL && items->type == MSGPACK_OBJECT_ARRAY)
			q->hits += items->via.array.size;
	}
	free(slot);
}

/* Signs users up; returns how many were (or -1 past 1% failures). */
static int
search_load(api_client *c, const char *hash, uint64_t users)
{
	signup_window s = {0, 0, 0};
	double t0 = now_s();
	for (uint64_t i = 0; i < users; i++) {
		while (s.in_flight >= SIGNUP_WINDOW)
			api_client_wait(c, 10);
		char name[40], email[64];
		username_of(i, name, sizeof name);
		snprintf(email, sizeof email, "u%llu@bench.example",
			(unsigned long long)i);
		api_ctx none = {0};
		if (api_signup_prehashed(c, &none, name, email, hash,
			    signup_done, &s) != 0)
			return -1;
		s.in_flight++;
	}
	while (s.in_flight > 0)
		api_client_wait(c, 10);
	fprintf(stderr, "signed up %llu users in %.1f s (%llu failed)\n",
		(unsigned long long)users, now_s() - t0,
		(unsigned long long)s.failed);
	/* A loaded machine may time a few out: their names are just not
	 * there to be found. */
	return s.failed * 100 <= users ? (int)(users - s.failed) : -1;
}

static int
bench_search(const char *hash)
{
	uint64_t users = SEARCH_USERS_DEFAULT;
	const char *env = getenv("FLOCK_BENCH_USERS");
	if (env != NULL && strtoull(env, NULL, 10) > 0)
		users = strtoull(env, NULL, 10);
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 2;
	rc.passivate_idle_ms = 0;
	rc.log_level = RT_LOG_WARN;
	api_config cfg;
	api_config_default(&cfg);
	cfg.ask_timeout_ms = 60000; /* a million signups queue up */
	rt_runtime *rt;
	api *a;
	api_client *c;
	if (rt_create(&rc, &rt) != 0 || api_create(rt, NULL, &cfg, &a) != 0 ||
		rt_start(rt) != 0 ||
		api_client_create(a, inbox_notify, NULL, &c) != 0)
		return 1;
	int loaded = search_load(c, hash, users);
	if (loaded < 0) {
		fprintf(stderr, "actors_notify_bench: search load failed\n");
		return 1;
	}
	/* Indexing runs behind the signups' answers: let it finish. */
	struct timespec pause = {1, 0};
	nanosleep(&pause, NULL);
	printf("figure search_users_loaded %d users\n", loaded);
	query_window q = {0, 0, 0, 0, NULL};
	q.latency_ns = calloc(SEARCH_QUERIES, sizeof *q.latency_ns);
	uint64_t x = 42;
	double t0 = now_s();
	for (uint32_t i = 0; i < SEARCH_QUERIES; i++) {
		while (q.in_flight >= SEARCH_WINDOW)
			client_wait_until(c, now_s() + 1.0);
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		char name[40];
		username_of((x >> 20) % users, name, sizeof name);
		name[1 + (x >> 60) % 4] = '\0'; /* a 1-4 character prefix */
		query_slot *slot = malloc(sizeof *slot);
		*slot = (query_slot){&q, now_ns()};
		api_ctx ctx = {.user_id = 1};
		api_page page = {0, NULL};
		if (api_search(c, &ctx, name, API_SEARCH_USERS, &page,
			    query_done, slot) != 0) {
			free(slot);
			return 1;
		}
		q.in_flight++;
	}
	while (q.in_flight > 0)
		client_wait_until(c, now_s() + 1.0);
	double wall = now_s() - t0;
	printf("figure search_prefix_queries_per_second %.0f queries/s\n",
		(double)q.done / wall);
	printf("figure search_prefix_p50 %.1f us\n",
		percentile_us(q.latency_ns, q.done, 0.50));
	printf("figure search_prefix_p99 %.1f us\n",
		percentile_us(q.latency_ns, q.done, 0.99));
	fprintf(stderr, "%llu queries, %.1f hits each, %llu failed\n",
		(unsigned long long)q.done, (double)q.hits / (double)q.done,
		(unsigned long long)q.failed);
	free(q.latency_ns);
	api_client_destroy(c);
	rt_stop(rt);
	api_destroy(a);
	rt_destroy(rt);
	return q.failed == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	bool likes = true, search = true;
	if (argc > 1) {
		likes = strcmp(argv[1], "likes") == 0;
		search = strcmp(argv[1], "search") == 0;
	}
	if (sem_init(&inbox_ready, 0, 0) != 0)
		return 1;
	/* One cheap hash for every account: argon2 is not what runs here. */
	api_config cfg;
	api_config_default(&cfg);
	cfg.password_memlimit_bytes = 8192;
	cfg.password_opslimit = 1;
	rt_config rc;
	rt_config_default(&rc);
	rc.deterministic = true;
	rt_runtime *rt;
	api *a;
	char hash[128];
	if (rt_create(&rc, &rt) != 0 || api_create(rt, NULL, &cfg, &a) != 0 ||
		api_password_hash(a, "bench password", hash, sizeof hash) != 0)
		return 1;
	api_destroy(a);
	rt_destroy(rt);
	int status = 0;
	if (likes) {
		status |= bench_likes(hash, true);
		status |= bench_likes(hash, false);
	}
	if (search)
		status |= bench_search(hash);
	return status;
}
