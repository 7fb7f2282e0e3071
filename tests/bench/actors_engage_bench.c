/*
 * actors_engage_bench.c — throughput of the engagement modules.
 *
 * Figures (printed as `figure <name> <value> <unit>`):
 *   search_users_indexed_per_second   building an index of 1,000,000
 *                                     usernames in process (one index
 *                                     holding every shard)
 *   search_prefix_queries_per_second  prefix queries (1-8 characters,
 *                                     first page of 20) against it; also
 *                                     split into 1-3 and 4-8 characters
 *   search_actor_queries_per_second   the same queries asked of the 256
 *                                     search actors on a real runtime (2
 *                                     workers, 64 asks in flight), after
 *                                     the 1,000,000 users were indexed by
 *                                     messages
 *   inbox_insert_per_second           notifications added to a full inbox
 *                                     (ring and dedupe at their caps)
 *   inbox_list_per_second             first page (20) of GET
 *                                     /v1/notifications packed to msgpack
 *   inbox_insert_list_per_second      one insert then one list, repeated
 * Each figure also has a `_cpu_seconds` companion: the machine is shared,
 * so CPU time is the steadier measure.
 *
 * Method: usernames are 2-3 syllables and a base-36 serial (unique, and
 * skewed over prefixes the way real names are); followers follow a
 * power law. A fixed-seed xorshift drives every choice, so runs compare.
 * FLOCK_BENCH_USERS overrides the user count (e.g. for a quick run).
 */
#include "actors/engage.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define USERS_DEFAULT 1000000u
#define QUERIES 200000u
#define ACTOR_QUERIES 50000u
#define ASKS_IN_FLIGHT 64u
#define INBOX_OPS 2000000u
#define INBOX_LIST_OPS 500000u

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static double
now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
figure(const char *name, double count, double wall, double cpu)
{
	printf("figure %s %.0f ops/s\n", name, count / wall);
	printf("figure %s_cpu_seconds %.3f s\n", name, cpu);
	fflush(stdout);
}

static const char *const syllables[] = {"ma", "ri", "an", "jo", "el", "sa",
	"to", "ka", "li", "ne", "da", "vi", "ro", "be", "mi", "lu", "ca", "te",
	"zo", "ha", "ni", "po", "gi", "fe", "ya", "ko", "se", "al", "ex", "ol",
	"ar", "in", "us", "em", "ty", "qu", "wa", "de", "st", "ph"};
#define SYLLABLES (sizeof syllables / sizeof syllables[0])

/* Power law: most users have a handful of followers, a few millions. */
static uint64_t
followers_of(void)
{
	double u = ((double)(rng() >> 11) + 1.0) / 9007199254740993.0;
	double f = 3.0 / (u * u);
	return f > 5e7 ? 50000000u : (uint64_t)f;
}

static void
make_name(uint32_t i, char out[API_USERNAME_BYTES_MAX + 1])
{
	size_t n = 0;
	uint32_t parts = 2 + (uint32_t)(rng() % 2);
	/* Skew: low syllables far more common (Zipf-like by squaring). */
	for (uint32_t p = 0; p < parts; p++) {
		uint64_t r = rng() % (SYLLABLES * SYLLABLES);
		const char *s = syllables[(uint32_t)(r * r /
			((uint64_t)SYLLABLES * SYLLABLES * SYLLABLES))];
		memcpy(out + n, s, 2);
		n += 2;
	}
	if (rng() % 3 == 0)
		out[n++] = rng() % 2 ? '_' : '.';
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	do {
		out[n++] = digits[i % 36];
		i /= 36;
	} while (i > 0);
	out[n] = '\0';
}

typedef struct user_list {
	uint32_t count;
	char (*names)[API_USERNAME_BYTES_MAX + 1];
	uint64_t *followers;
} user_list;

static user_list
make_users(uint32_t count)
{
	user_list u = {count, malloc((size_t)count * sizeof *u.names),
		malloc((size_t)count * sizeof *u.followers)};
	if (u.names == NULL || u.followers == NULL)
		abort();
	for (uint32_t i = 0; i < count; i++) {
		make_name(i, u.names[i]);
		u.followers[i] = followers_of();
	}
	return u;
}

/* A query: a 1-8 character prefix of a random user's name. */
static void
make_query(const user_list *u, char out[16], uint32_t *length)
{
	const char *name = u->names[rng() % u->count];
	size_t n = strlen(name);
	uint32_t k = 1 + (uint32_t)(rng() % 8);
	if (k > n)
		k = (uint32_t)n;
	memcpy(out, name, k);
	out[k] = '\0';
	*length = k;
}

static void
bench_search_in_process(const user_list *u)
{
	search_index *ix;
	if (search_index_create(0, 1, &ix) != 0)
		abort();
	double c0 = cpu_seconds(), t0 = now_seconds();
	for (uint32_t i = 0; i < u->count; i++) {
		if (search_index_user(ix, i + 1, u->names[i], u->followers[i]) !=
			0)
			abort();
	}
	figure("search_users_indexed_per_second", u->count,
		now_seconds() - t0, cpu_seconds() - c0);

	static char queries[QUERIES][16];
	static uint32_t lengths[QUERIES];
	for (uint32_t q = 0; q < QUERIES; q++)
		make_query(u, queries[q], &lengths[q]);
	search_hit hits[API_PAGE_LIMIT_MAX];
	char next[SEARCH_CURSOR_BYTES];
	uint64_t found = 0;
	for (int pass = 0; pass < 3; pass++) {
		/* pass 0: all; 1: 1-3 characters; 2: 4-8 characters */
		uint32_t done = 0;
		c0 = cpu_seconds();
		t0 = now_seconds();
		for (uint32_t q = 0; q < QUERIES; q++) {
			if ((pass == 1 && lengths[q] > 3) ||
				(pass == 2 && lengths[q] <= 3))
				continue;
			uint32_t n;
			if (search_index_query(ix, API_SEARCH_USERS, queries[q],
				    20, NULL, hits, &n, next) != 0)
				abort();
			found += n;
			done++;
		}
		static const char *const names[] = {
			"search_prefix_queries_per_second",
			"search_prefix_queries_1_3_chars_per_second",
			"search_prefix_queries_4_8_chars_per_second"};
		figure(names[pass], done, now_seconds() - t0,
			cpu_seconds() - c0);
	}
	if (found == 0)
		abort();
	search_index_destroy(ix);
}

/* ---- through the search actors on a real runtime ------------------------ */

static void
send_retry(rt_runtime *rt, rt_addr to, uint32_t type, const void *bytes,
	size_t length)
{
	for (;;) {
		rt_message *m = rt_message_alloc(rt, type, (uint32_t)length);
		if (m == NULL) {
			sched_yield();
			continue;
		}
		memcpy(m->payload, bytes, length);
		int rc = rt_send_external(rt, to, m);
		if (rc == 0)
			return;
		if (rc != RT_EMAILBOX_FULL && rc != RT_ENOMEM)
			abort();
		sched_yield();
	}
}

static void
bench_search_actors(const user_list *u)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.workers = 2;
	cfg.passivate_idle_ms = 0;
	cfg.log_level = RT_LOG_WARN;
	rt_runtime *rt;
	if (rt_create(&cfg, &rt) != 0 ||
		rt_register_kind(rt, SEARCH_KIND, &search_actor_ops) != 0 ||
		rt_start(rt) != 0)
		abort();
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	double c0 = cpu_seconds(), t0 = now_seconds();
	for (uint32_t i = 0; i < u->count; i++) {
		msgpack_sbuffer_clear(&sb);
		search_user_message_encode(i + 1, u->names[i], u->followers[i],
			0, &pk);
		uint32_t shards[3];
		uint32_t n = search_user_shards(u->names[i], shards);
		for (uint32_t k = 0; k < n; k++)
			send_retry(rt, search_shard_addr(shards[k]),
				SEARCH_T_USER_UPSERT, sb.data, sb.size);
	}
	rt_inbox *in;
	if (rt_inbox_create(rt, NULL, NULL, &in) != 0)
		abort();
	/* A query to every shard after the sends drains the mailboxes. */
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++) {
		msgpack_sbuffer_clear(&sb);
		search_query_message_encode(API_SEARCH_USERS, "zzzz", 1, NULL,
			&pk);
		rt_message *m = rt_message_alloc(rt, SEARCH_T_QUERY,
			(uint32_t)sb.size);
		memcpy(m->payload, sb.data, sb.size);
		uint64_t correlation;
		if (rt_inbox_ask(in, search_shard_addr(s), m, 600000,
			    &correlation) != 0)
			abort();
	}
	for (uint32_t s = 0; s < SEARCH_SHARDS; s++) {
		rt_message *r = rt_inbox_wait(in, 600000);
		if (r == NULL)
			abort();
		rt_message_free(rt, r);
	}
	figure("search_actor_users_indexed_per_second", u->count,
		now_seconds() - t0, cpu_seconds() - c0);

	uint32_t sent = 0, answered = 0;
	c0 = cpu_seconds();
	t0 = now_seconds();
	while (answered < ACTOR_QUERIES) {
		while (sent < ACTOR_QUERIES && sent - answered < ASKS_IN_FLIGHT) {
			char q[16];
			uint32_t length;
			make_query(u, q, &length);
			uint32_t shard;
			if (search_query_shard(API_SEARCH_USERS, q, &shard) != 0)
				abort();
			msgpack_sbuffer_clear(&sb);
			search_query_message_encode(API_SEARCH_USERS, q, 20, NULL,
				&pk);
			rt_message *m = rt_message_alloc(rt, SEARCH_T_QUERY,
				(uint32_t)sb.size);
			memcpy(m->payload, sb.data, sb.size);
			uint64_t correlation;
			int rc = rt_inbox_ask(in, search_shard_addr(shard), m,
				60000, &correlation);
			if (rc != 0) {
				fprintf(stderr, "bench: ask: %s\n",
					rt_strerror(rc));
				abort();
			}
			sent++;
		}
		rt_message *r = rt_inbox_wait(in, 60000);
		if (r == NULL || (r->flags & RT_MESSAGE_F_TIMEOUT)) {
			fprintf(stderr, "bench: query %u of %u: %s after %.3f s\n",
				answered, sent,
				r == NULL ? "no reply" : "timed out",
				now_seconds() - t0);
			abort();
		}
		rt_message_free(rt, r);
		answered++;
	}
	figure("search_actor_queries_per_second", ACTOR_QUERIES,
		now_seconds() - t0, cpu_seconds() - c0);
	rt_inbox_destroy(in);
	msgpack_sbuffer_destroy(&sb);
	rt_stop(rt);
	rt_destroy(rt);
}

/* ---- notifications ------------------------------------------------------ */

static void
bench_inbox(void)
{
	inbox ib;
	inbox_init(&ib);
	uint64_t t = 1717200000000ull;
	inbox_event ev = {0, 0, 1, 777, 0, t, INBOX_TYPE_LIKE};
	bool added;
	/* Fill ring and dedupe to their caps first: the steady state. */
	for (uint32_t i = 0; i < INBOX_DEDUPE_ENTRIES_MAX; i++) {
		ev.actor_user_id = 2 + i;
		ev.event_id = inbox_event_id(ev.type, ev.actor_user_id, 777, 0);
		inbox_add(&ib, &ev, t, NULL, &added);
	}
	double c0 = cpu_seconds(), t0 = now_seconds();
	for (uint32_t i = 0; i < INBOX_OPS; i++) {
		ev.actor_user_id = 100000 + i;
		ev.event_id = inbox_event_id(ev.type, ev.actor_user_id, 777, 0);
		if (inbox_add(&ib, &ev, t + i / 1000u, NULL, &added) != 0 ||
			!added)
			abort();
	}
	figure("inbox_insert_per_second", INBOX_OPS, now_seconds() - t0,
		cpu_seconds() - c0);

	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	c0 = cpu_seconds();
	t0 = now_seconds();
	for (uint32_t i = 0; i < INBOX_LIST_OPS; i++) {
		msgpack_sbuffer_clear(&sb);
		if (inbox_list_pack(&ib, 0, 20, NULL, &pk) != 0)
			abort();
	}
	figure("inbox_list_per_second", INBOX_LIST_OPS, now_seconds() - t0,
		cpu_seconds() - c0);

	c0 = cpu_seconds();
	t0 = now_seconds();
	for (uint32_t i = 0; i < INBOX_LIST_OPS; i++) {
		ev.actor_user_id = 10000000 + i;
		ev.event_id = inbox_event_id(ev.type, ev.actor_user_id, 777, 0);
		if (inbox_add(&ib, &ev, t + 10000, NULL, &added) != 0)
			abort();
		msgpack_sbuffer_clear(&sb);
		if (inbox_list_pack(&ib, 0, 20, NULL, &pk) != 0)
			abort();
	}
	figure("inbox_insert_list_per_second", INBOX_LIST_OPS,
		now_seconds() - t0, cpu_seconds() - c0);
	printf("figure inbox_list_page_bytes %zu bytes\n", sb.size);
	msgpack_sbuffer_destroy(&sb);
	inbox_free(&ib);
}

int
main(void)
{
	uint32_t users = USERS_DEFAULT;
	const char *env = getenv("FLOCK_BENCH_USERS");
	if (env != NULL && atoi(env) > 0)
		users = (uint32_t)atoi(env);
	user_list u = make_users(users);
	printf("figure search_users %u users\n", users);
	bench_search_in_process(&u);
	bench_inbox();
	bench_search_actors(&u);
	free(u.names);
	free(u.followers);
	return 0;
}
