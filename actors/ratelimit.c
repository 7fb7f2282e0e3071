/*
 * actors/ratelimit.c — per-user token buckets for likes, posts, comments
 * and follows, refilled lazily from the time the caller passes.
 *
 * A bucket is one number: full_at_ms, the time at which it holds
 * `capacity` tokens again. At time now its debt is full_at - now (ms of
 * refill still owed, 0 when full), and tokens = capacity - ceil(debt /
 * refill_ms). Taking a token adds refill_ms of debt; an action is allowed
 * while debt <= (capacity - 1) * refill_ms. This is a token bucket with
 * exact integer edges (the generic cell rate algorithm), kept in 8 bytes
 * and with no separate "last refill" time to drift.
 *
 * Invariants: after rate_take, full_at_ms - now <= capacity * refill_ms;
 * a refused action changes nothing (but that clamp, after the clock
 * stepped back).
 *
 * What it deliberately does not do: per-IP limits (the gateway's), or
 * read a clock. Pass wall time (rt_wall_ms): the state is snapshotted and
 * must mean the same after a restart.
 */
#include "actors/engage.h"

void
rate_defaults(api_rate cfg[RATE_ACTIONS_COUNT])
{
	ACTORS_ASSERT(cfg != NULL);
	cfg[RATE_ACTION_LIKE] = (api_rate){RATE_LIKES_CAPACITY,
		RATE_LIKES_REFILL_MS};
	cfg[RATE_ACTION_POST] = (api_rate){RATE_POSTS_CAPACITY,
		RATE_POSTS_REFILL_MS};
	cfg[RATE_ACTION_COMMENT] = (api_rate){RATE_COMMENTS_CAPACITY,
		RATE_COMMENTS_REFILL_MS};
	cfg[RATE_ACTION_FOLLOW] = (api_rate){RATE_FOLLOWS_CAPACITY,
		RATE_FOLLOWS_REFILL_MS};
}

void
rate_init(rate_state *s)
{
	ACTORS_ASSERT(s != NULL);
	memset(s, 0, sizeof *s);
}

static bool
config_valid(rate_action action, const api_rate *cfg)
{
	if ((unsigned)action >= RATE_ACTIONS_COUNT || cfg == NULL)
		return false;
	if (cfg->capacity == 0 || cfg->refill_ms == 0)
		return false;
	if (cfg->refill_ms > RATE_WINDOW_MS_MAX)
		return false;
	return (uint64_t)cfg->capacity * cfg->refill_ms <= RATE_WINDOW_MS_MAX;
}

/* The bucket's debt at now_ms, clamped to one full window (a clock that
 * stepped back, or a capacity lowered since, never locks a user out for
 * longer than the window). */
static uint64_t
debt_at(const rate_state *s, rate_action action, const api_rate *cfg,
	uint64_t now_ms)
{
	uint64_t window = (uint64_t)cfg->capacity * cfg->refill_ms;
	uint64_t full_at = s->full_at_ms[action];
	if (full_at <= now_ms)
		return 0;
	return full_at - now_ms < window ? full_at - now_ms : window;
}

static uint32_t
tokens_for(const api_rate *cfg, uint64_t debt)
{
	uint64_t missing = (debt + cfg->refill_ms - 1u) / cfg->refill_ms;
	ACTORS_ASSERT(missing <= cfg->capacity);
	return cfg->capacity - (uint32_t)missing;
}

static void
fill_result(const api_rate *cfg, uint64_t debt, rate_result *out)
{
	uint64_t allowed_debt = (uint64_t)(cfg->capacity - 1u) * cfg->refill_ms;
	out->limit = cfg->capacity;
	out->remaining = tokens_for(cfg, debt);
	out->reset_ms = debt;
	out->retry_after_ms = out->remaining > 0 ? 0 : debt - allowed_debt;
}

int
rate_peek(const rate_state *s, rate_action action, const api_rate *cfg,
	uint64_t now_ms, rate_result *out)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(out != NULL);
	if (!config_valid(action, cfg))
		return API_EINVALID;
	fill_result(cfg, debt_at(s, action, cfg, now_ms), out);
	return 0;
}

int
rate_take(rate_state *s, rate_action action, const api_rate *cfg,
	uint64_t now_ms, rate_result *out)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(out != NULL);
	if (!config_valid(action, cfg))
		return API_EINVALID;
	uint64_t debt = debt_at(s, action, cfg, now_ms);
	uint64_t allowed_debt = (uint64_t)(cfg->capacity - 1u) * cfg->refill_ms;
	/* Keep the clamp: after a clock step back the wait is one window
	 * from now, not from the old time. */
	if (s->full_at_ms[action] > now_ms + debt)
		s->full_at_ms[action] = now_ms + debt;
	if (debt > allowed_debt) {
		fill_result(cfg, debt, out);
		ACTORS_ASSERT(out->retry_after_ms > 0);
		return API_ERATELIMITED;
	}
	debt += cfg->refill_ms;
	s->full_at_ms[action] = now_ms + debt;
	fill_result(cfg, debt, out);
	out->retry_after_ms = 0;
	ACTORS_ASSERT(debt <= (uint64_t)cfg->capacity * cfg->refill_ms);
	return 0;
}

int
rate_encode(const rate_state *s, msgpack_packer *pk)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint32(pk, RATE_SNAPSHOT_VERSION);
	rc |= msgpack_pack_array(pk, RATE_ACTIONS_COUNT);
	for (uint32_t i = 0; i < RATE_ACTIONS_COUNT; i++)
		rc |= msgpack_pack_uint64(pk, s->full_at_ms[i]);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
rate_decode(rate_state *s, const msgpack_object *obj)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(obj != NULL);
	rate_init(s);
	const msgpack_object *f = engage_get_tuple(obj, 2);
	uint64_t version;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != RATE_SNAPSHOT_VERSION)
		return API_EINVALID;
	const msgpack_object *items = engage_get_tuple(&f[1],
		RATE_ACTIONS_COUNT);
	if (items == NULL)
		return API_EINVALID;
	rate_state decoded;
	for (uint32_t i = 0; i < RATE_ACTIONS_COUNT; i++) {
		if (!engage_get_u64(&items[i], &decoded.full_at_ms[i]))
			return API_EINVALID;
	}
	*s = decoded;
	return 0;
}
