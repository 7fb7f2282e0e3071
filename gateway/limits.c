/*
 * limits.c — per-IP token buckets and connection counts.
 *
 * Role: the gateway's own limits, which the domain cannot apply because
 * it does not see addresses: signups and logins per client address
 * (token buckets, API.md's defaults 5 per 30 min and 25 per 5 min) and
 * open connections per address (libwebsockets 4.1 as Debian builds it
 * has no per-IP limits of its own).
 *
 * Method: a fixed open-addressed table of GW_LIMIT_ENTRIES_MAX slots;
 * each address probes PROBE_SLOTS slots from its hash. A rate bucket
 * that is not found replaces the least recently used slot of its probe
 * window (memory stays bounded; the price is that an attacker with more
 * addresses than the table gets fresh buckets). A connection count is
 * never evicted while non-zero: a full window refuses the connection.
 *
 * Bucket arithmetic is exact in integers: the level is kept in units of
 * token x window_ms, refilled by capacity per elapsed ms, and one
 * request costs window_ms.
 *
 * Thread safety: every gateway loop of the node shares the same two
 * rate tables and the connection table (a client's connections land on
 * any loop), so each table has a mutex held for one lookup; the loops
 * contend only when they touch a table at the same moment.
 *
 * What it deliberately does not do: trust X-Forwarded-For (the gateway
 * faces clients directly), share state across nodes.
 */
#include "gateway/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

/* Slots probed per address: long enough that a table a quarter full
 * almost never has a full window, short enough to stay in a few cache
 * lines' worth of comparisons. */
#define PROBE_SLOTS 32u

typedef struct slot {
	char ip[GW_IP_BYTES_MAX];
	uint64_t last_ms;  /* rate: last refill; conn: unused */
	uint64_t level;    /* rate: token x window_ms; conn: open count */
	bool used;
} slot;

typedef struct table {
	slot *slots;
	uint32_t count; /* a power of two */
	uv_mutex_t lock; /* held for one call: the loops share a table */
} table;

static uint64_t
hash_ip(const char *ip)
{
	/* FNV-1a: addresses are short; the table is not exposed to
	 * attacker-chosen collisions beyond the probe window's bound. */
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *s = (const unsigned char *)ip; *s; s++) {
		h ^= *s;
		h *= 1099511628211ull;
	}
	return h;
}

static int
table_init(table *t, uint32_t entries_max)
{
	uint32_t count = 64;
	while (count < entries_max && count < (1u << 24))
		count *= 2;
	t->slots = calloc(count, sizeof *t->slots);
	if (t->slots == NULL)
		return GW_ENOMEM;
	if (uv_mutex_init(&t->lock) != 0) {
		free(t->slots);
		t->slots = NULL;
		return GW_ENOMEM;
	}
	t->count = count;
	return 0;
}

static void
table_fini(table *t)
{
	uv_mutex_destroy(&t->lock);
	free(t->slots);
	t->slots = NULL;
}

static slot *
table_find(const table *t, const char *ip)
{
	uint64_t h = hash_ip(ip);
	for (uint32_t i = 0; i < PROBE_SLOTS; i++) {
		slot *s = &t->slots[(h + i) & (t->count - 1)];
		if (s->used && strcmp(s->ip, ip) == 0)
			return s;
	}
	return NULL;
}

/* ---- rate buckets -------------------------------------------------------- */

struct gw__rate_table {
	table t;
	gw_rate rate;
	uint64_t window_ms;
};

int
gw__rate_table_create(gw_rate rate, uint32_t entries_max,
	gw__rate_table **out)
{
	gw__assert(rate.capacity > 0);
	gw__assert(rate.window_s > 0);
	gw__rate_table *rt = calloc(1, sizeof *rt);
	if (rt == NULL)
		return GW_ENOMEM;
	if (table_init(&rt->t, entries_max) < 0) {
		free(rt);
		return GW_ENOMEM;
	}
	rt->rate = rate;
	rt->window_ms = (uint64_t)rate.window_s * 1000u;
	*out = rt;
	return 0;
}

void
gw__rate_table_destroy(gw__rate_table *t)
{
	if (t == NULL)
		return;
	table_fini(&t->t);
	free(t);
}

gw_rate
gw__rate_table_rate(const gw__rate_table *t)
{
	return t->rate;
}

static slot *
rate_slot(gw__rate_table *rt, const char *ip, uint64_t now_ms)
{
	slot *s = table_find(&rt->t, ip);
	if (s != NULL)
		return s;
	uint64_t h = hash_ip(ip);
	slot *victim = NULL;
	for (uint32_t i = 0; i < PROBE_SLOTS; i++) {
		slot *c = &rt->t.slots[(h + i) & (rt->t.count - 1)];
		if (!c->used) {
			victim = c;
			break;
		}
		if (victim == NULL || c->last_ms < victim->last_ms)
			victim = c;
	}
	gw__assert(victim != NULL);
	snprintf(victim->ip, sizeof victim->ip, "%s", ip);
	victim->used = true;
	victim->last_ms = now_ms;
	victim->level = (uint64_t)rt->rate.capacity * rt->window_ms;
	return victim;
}

static uint64_t
ceil_div(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static int
rate_take_locked(gw__rate_table *rt, const char *ip, uint64_t now_ms,
	gw__bucket_state *state)
{
	slot *s = rate_slot(rt, ip, now_ms);
	uint64_t capacity = rt->rate.capacity;
	uint64_t full = capacity * rt->window_ms;
	if (now_ms > s->last_ms) {
		uint64_t elapsed = now_ms - s->last_ms;
		uint64_t room = full - s->level;
		/* elapsed * capacity, saturating at full. */
		if (elapsed >= ceil_div(room, capacity))
			s->level = full;
		else
			s->level += elapsed * capacity;
		s->last_ms = now_ms;
	}
	gw__assert(s->level <= full);
	int rc = 0;
	if (s->level >= rt->window_ms) {
		s->level -= rt->window_ms;
		state->retry_after_s = 0;
	} else {
		rc = GW_ELIMITED;
		uint64_t wait_ms = ceil_div(rt->window_ms - s->level, capacity);
		state->retry_after_s = ceil_div(wait_ms, 1000);
	}
	state->limit = rt->rate.capacity;
	state->remaining = (uint32_t)(s->level / rt->window_ms);
	state->reset_s = ceil_div(ceil_div(full - s->level, capacity), 1000);
	return rc;
}

int
gw__rate_take(gw__rate_table *rt, const char *ip, uint64_t now_ms,
	gw__bucket_state *state)
{
	gw__assert(ip != NULL);
	uv_mutex_lock(&rt->t.lock);
	int rc = rate_take_locked(rt, ip, now_ms, state);
	uv_mutex_unlock(&rt->t.lock);
	return rc;
}

/* ---- connection counts --------------------------------------------------- */

struct gw__conn_table {
	table t;
	uint32_t per_ip_max;
};

int
gw__conn_table_create(uint32_t per_ip_max, uint32_t entries_max,
	gw__conn_table **out)
{
	gw__assert(per_ip_max > 0);
	gw__conn_table *ct = calloc(1, sizeof *ct);
	if (ct == NULL)
		return GW_ENOMEM;
	if (table_init(&ct->t, entries_max) < 0) {
		free(ct);
		return GW_ENOMEM;
	}
	ct->per_ip_max = per_ip_max;
	*out = ct;
	return 0;
}

void
gw__conn_table_destroy(gw__conn_table *t)
{
	if (t == NULL)
		return;
	table_fini(&t->t);
	free(t);
}

static int
conn_open_locked(gw__conn_table *ct, const char *ip, uint32_t *slot_out)
{
	slot *s = table_find(&ct->t, ip);
	if (s == NULL) {
		uint64_t h = hash_ip(ip);
		for (uint32_t i = 0; i < PROBE_SLOTS && s == NULL; i++) {
			slot *c = &ct->t.slots[(h + i) & (ct->t.count - 1)];
			if (!c->used || c->level == 0)
				s = c;
		}
		if (s == NULL)
			return GW_ENOMEM;
		snprintf(s->ip, sizeof s->ip, "%s", ip);
		s->used = true;
		s->level = 0;
	}
	if (s->level >= ct->per_ip_max)
		return GW_ELIMITED;
	s->level++;
	*slot_out = (uint32_t)(s - ct->t.slots);
	return 0;
}

int
gw__conn_open(gw__conn_table *ct, const char *ip, uint32_t *slot_out)
{
	uv_mutex_lock(&ct->t.lock);
	int rc = conn_open_locked(ct, ip, slot_out);
	uv_mutex_unlock(&ct->t.lock);
	return rc;
}

bool
gw__conn_full(gw__conn_table *ct, const char *ip)
{
	uv_mutex_lock(&ct->t.lock);
	slot *s = table_find(&ct->t, ip);
	bool full = s != NULL && s->level >= ct->per_ip_max;
	uv_mutex_unlock(&ct->t.lock);
	return full;
}

void
gw__conn_release(gw__conn_table *ct, uint32_t index)
{
	gw__assert(index < ct->t.count);
	uv_mutex_lock(&ct->t.lock);
	slot *s = &ct->t.slots[index];
	gw__assert(s->used);
	gw__assert(s->level > 0);
	s->level--;
	uv_mutex_unlock(&ct->t.lock);
}

void
gw__conn_close(gw__conn_table *ct, const char *ip)
{
	uv_mutex_lock(&ct->t.lock);
	slot *s = table_find(&ct->t, ip);
	gw__assert(s != NULL);
	gw__assert(s->level > 0);
	s->level--;
	uv_mutex_unlock(&ct->t.lock);
}

void
gw__conn_address(gw__conn_table *ct, uint32_t index, char *out, size_t size)
{
	gw__assert(index < ct->t.count);
	uv_mutex_lock(&ct->t.lock);
	const slot *s = &ct->t.slots[index];
	gw__assert(s->used);
	gw__assert(s->level > 0);
	snprintf(out, size, "%s", s->ip);
	uv_mutex_unlock(&ct->t.lock);
}

uint32_t
gw__conn_count(gw__conn_table *ct, const char *ip)
{
	uv_mutex_lock(&ct->t.lock);
	slot *s = table_find(&ct->t, ip);
	uint32_t n = s == NULL ? 0 : (uint32_t)s->level;
	uv_mutex_unlock(&ct->t.lock);
	return n;
}
