/*
 * actors/user.c — the user actor: profile, credentials, follow graph,
 * home timeline, own posts, counters, interaction scores, fan-out.
 *
 * Role: owns everything about one account. Writes are journaled events
 * applied by one function (user_apply) both live and at recovery, so
 * activation = snapshot + journal tail; a write is answered from its
 * durable notice. Effects:
 *   - single effects (post creation to the post actor, follower set to
 *     the followee) go through the persistence outbox, confirmed by the
 *     target once it journaled them;
 *   - pushes to all followers (a post into their timelines, or "pull me"
 *     when this user's posts stop being pushed) are one entry per event,
 *     sent to every follower in id order and acknowledged by each; the
 *     entry is journaled done once every ack is in. After a crash every
 *     unfinished push is sent again; timelines dedupe by post id and the
 *     pull set is a set, so nothing is applied twice.
 *
 * Hybrid fan-out: a post is pushed when the author has at most
 * celebrity_followers_min followers at post time, else kept in the own
 * posts list as unpushed. The first unpushed post makes every follower
 * (and from then on every new follower) add this author to its pull set;
 * feed reads ask every followee in the pull set for its unpushed posts.
 * The pull set is never shrunk while following, so a followee that was a
 * celebrity at any post time stays covered whichever way it crosses.
 *
 * Invariants: followers/following/pulls are sorted id sets; the timeline
 * holds distinct post ids sorted ascending in a ring of at most
 * timeline_entries_max; counters are the sizes of those sets, so they are
 * exact by construction.
 *
 * What it deliberately does not do: password hashing (the client's pool),
 * post content (the post actor), backfill of a new followee's old posts.
 */
#include "actors/user_internal.h"

#include <math.h>
#include <stdlib.h>

/* Only for sim_sometimes, the simulator's dependency-free counter. */
#include "sim/sim.h"

/* ---- id sets ------------------------------------------------------------ */

static uint32_t
set_lower_bound(const id_set *s, uint64_t id)
{
	return actors__u64_lower_bound(s->ids, s->count, id);
}

static bool
set_has(const id_set *s, uint64_t id)
{
	uint32_t i = set_lower_bound(s, id);
	return i < s->count && s->ids[i] == id;
}

static int
set_add(id_set *s, uint64_t id)
{
	uint32_t i = set_lower_bound(s, id);
	if (i < s->count && s->ids[i] == id)
		return 0;
	if (s->count == s->capacity) {
		uint32_t capacity = s->capacity ? s->capacity * 2 : 4;
		uint64_t *ids = realloc(s->ids, capacity * sizeof *ids);
		if (ids == NULL)
			return API_EUNAVAILABLE;
		s->ids = ids;
		s->capacity = capacity;
	}
	memmove(s->ids + i + 1, s->ids + i, (s->count - i) * sizeof *s->ids);
	s->ids[i] = id;
	s->count++;
	return 1;
}

static bool
set_remove(id_set *s, uint64_t id)
{
	uint32_t i = set_lower_bound(s, id);
	if (i == s->count || s->ids[i] != id)
		return false;
	memmove(s->ids + i, s->ids + i + 1, (s->count - i - 1) * sizeof *s->ids);
	s->count--;
	return true;
}

static void
set_free(id_set *s)
{
	free(s->ids);
	memset(s, 0, sizeof *s);
}

/* ---- timeline ring ------------------------------------------------------ */

static actors__ref *
ring_at(const user_state *st, uint32_t i)
{
	/* head and i are below the capacity: one subtraction, not a
	 * division (the capacity, 800 at most, is no power of two). */
	ACTORS_ASSERT(i < st->ring_capacity);
	uint32_t at = st->ring_head + i;
	if (at >= st->ring_capacity)
		at -= st->ring_capacity;
	return &st->ring[at];
}

static int
ring_grow(user_state *st, uint32_t max)
{
	uint32_t capacity = st->ring_capacity ? st->ring_capacity * 2 : 16;
	if (capacity > max)
		capacity = max;
	actors__ref *ring = malloc(capacity * sizeof *ring);
	if (ring == NULL)
		return API_EUNAVAILABLE;
	for (uint32_t i = 0; i < st->ring_count; i++)
		ring[i] = *ring_at(st, i);
	free(st->ring);
	st->ring = ring;
	st->ring_head = 0;
	st->ring_capacity = capacity;
	return 0;
}

/* Newest ring entries ring_lower_bound compares one by one before it
 * bisects (8 refs: two cache lines). */
#define RING_TAIL_LOOKS 8u

/* Index of the first entry with post id >= id. */
static uint32_t
ring_lower_bound(const user_state *st, uint64_t id)
{
	/* Pushes arrive newest first: most land past the newest entry, and
	 * the rest (two workers' posts interleaved) just before it. A look
	 * at the newest few (one or two cache lines) spares a binary search
	 * whose every step is a cold line of a 12 KiB ring. */
	uint32_t hi = st->ring_count;
	for (uint32_t k = 0; k < RING_TAIL_LOOKS && hi > 0; k++) {
		if (ring_at(st, hi - 1)->post_id < id)
			return hi;
		hi--;
	}
	/* Every entry from hi on is >= id. */
	uint32_t lo = 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ring_at(st, mid)->post_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool
ring_has(const user_state *st, uint64_t post_id)
{
	uint32_t i = ring_lower_bound(st, post_id);
	return i < st->ring_count && ring_at(st, i)->post_id == post_id;
}

/* Would inserting post_id change the ring? (new, and not older than
 * everything in a full ring) */
static bool
ring_wants(const user_state *st, uint64_t post_id, uint32_t max)
{
#ifndef FLOCK_BUG_NO_DEDUPE
	/* (make sim-zoo plants the bug by compiling this check out: a push
	 * re-sent after a crash then lands twice.) */
	if (ring_has(st, post_id))
		return false;
#endif
	return !(st->ring_count == max && max > 0 &&
		post_id < ring_at(st, 0)->post_id);
}

/* Inserts ref in order: 1 when it went in, 0 when the ring already had
 * it or it is older than everything in a full ring (as ring_wants),
 * API_EUNAVAILABLE when out of memory. One search: a push inserts once
 * per follower, nearly always past the newest entry. */
static int
ring_insert(user_state *st, actors__ref ref, uint32_t max)
{
	ACTORS_ASSERT(max > 0);
	uint32_t pos = ring_lower_bound(st, ref.post_id);
#ifndef FLOCK_BUG_NO_DEDUPE
	/* (make sim-zoo plants the bug by compiling this check out: a push
	 * re-sent after a crash then lands twice.) */
	if (pos < st->ring_count && ring_at(st, pos)->post_id == ref.post_id)
		return 0;
#endif
	if (st->ring_count == max) {
		if (pos == 0 && ref.post_id < ring_at(st, 0)->post_id)
			return 0; /* older than everything kept */
		/* Full: the oldest falls off. */
		if (++st->ring_head == st->ring_capacity)
			st->ring_head = 0;
		st->ring_count--;
		if (pos > 0)
			pos--;
	}
	if (st->ring_count == st->ring_capacity) {
		int rc = ring_grow(st, max);
		if (rc != 0)
			return rc;
	}
	/* Shift the newer entries up by one (rare: pushes arrive in order). */
	for (uint32_t i = st->ring_count; i > pos; i--)
		*ring_at(st, i) = *ring_at(st, i - 1);
	*ring_at(st, pos) = ref;
	st->ring_count++;
	return 1;
}

/* The bound while replaying (no api at hand): generous, trimmed to the
 * configured size by on_activate. */
#define USER_RING_RECOVERY_MAX (1u << 16)

static uint32_t
ring_max(const api *a)
{
	return a != NULL ? a->cfg.timeline_entries_max : USER_RING_RECOVERY_MAX;
}

static void
ring_trim(user_state *st, uint32_t max)
{
	while (st->ring_count > max) {
		st->ring_head = (st->ring_head + 1) % st->ring_capacity;
		st->ring_count--;
	}
}

static void
ring_remove(user_state *st, uint64_t post_id)
{
	uint32_t pos = ring_lower_bound(st, post_id);
	if (pos == st->ring_count || ring_at(st, pos)->post_id != post_id)
		return;
	for (uint32_t i = pos; i + 1 < st->ring_count; i++)
		*ring_at(st, i) = *ring_at(st, i + 1);
	st->ring_count--;
}

/* Takes every entry of author out, keeping the order: an unfollowed
 * author's posts would only be filtered at read, yet still take room
 * the followees' newer posts need (a full ring drops its oldest). */
static void
ring_remove_author(user_state *st, uint64_t author_id)
{
	uint32_t kept = 0;
	for (uint32_t i = 0; i < st->ring_count; i++) {
		actors__ref ref = *ring_at(st, i);
		if (ref.author_id != author_id)
			*ring_at(st, kept++) = ref;
	}
	st->ring_count = kept;
}

bool
user__ring_has(const user_state *st, uint64_t post_id)
{
	return ring_has(st, post_id);
}

/* ---- own posts ---------------------------------------------------------- */

static uint32_t
posts_lower_bound(const user_state *st, uint64_t post_id)
{
	uint32_t lo = 0, hi = st->posts_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (st->posts[mid].post_id < post_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
posts_add(user_state *st, uint64_t post_id, bool pushed)
{
	uint32_t i = posts_lower_bound(st, post_id);
	if (i < st->posts_count && st->posts[i].post_id == post_id)
		return 0;
	if (st->posts_count == st->posts_capacity) {
		uint32_t capacity = st->posts_capacity ? st->posts_capacity * 2
						       : 8;
		own_post *p = realloc(st->posts, capacity * sizeof *p);
		if (p == NULL)
			return API_EUNAVAILABLE;
		st->posts = p;
		st->posts_capacity = capacity;
	}
	memmove(st->posts + i + 1, st->posts + i,
		(st->posts_count - i) * sizeof *st->posts);
	st->posts[i] = (own_post){post_id, pushed ? 1u : 0u, 0};
	st->posts_count++;
	return 1;
}

bool
user__own_post(const user_state *st, uint64_t post_id, bool *pushed)
{
	uint32_t i = posts_lower_bound(st, post_id);
	if (i == st->posts_count || st->posts[i].post_id != post_id)
		return false;
	*pushed = st->posts[i].pushed != 0;
	return true;
}

static void
posts_remove(user_state *st, uint64_t post_id)
{
	uint32_t i = posts_lower_bound(st, post_id);
	if (i == st->posts_count || st->posts[i].post_id != post_id)
		return;
	memmove(st->posts + i, st->posts + i + 1,
		(st->posts_count - i - 1) * sizeof *st->posts);
	st->posts_count--;
}

/* ---- pushes ------------------------------------------------------------- */

/* The durable push with key (acks name durable pushes only). */
static push *
push_find(user_state *st, uint64_t key)
{
	for (uint32_t i = 0; i < st->pushes_count; i++)
		if (st->pushes[i].key == key &&
			st->pushes[i].kind != USER_PUSH_LIVE)
			return &st->pushes[i];
	return NULL;
}

/* A zeroed slot at the end of the pushes, or NULL. */
static push *
push_slot(user_state *st)
{
	if (st->pushes_count == st->pushes_capacity) {
		uint32_t capacity = st->pushes_capacity ? st->pushes_capacity * 2
							: 4;
		push *pushes = realloc(st->pushes, capacity * sizeof *pushes);
		if (pushes == NULL)
			return NULL;
		st->pushes = pushes;
		st->pushes_capacity = capacity;
	}
	push *p = &st->pushes[st->pushes_count++];
	memset(p, 0, sizeof *p);
	return p;
}

static int
push_add(user_state *st, uint64_t key, uint64_t target, uint64_t lsn,
	user_push_kind kind)
{
	push *p = push_find(st, key);
	if (p != NULL && p->target == target)
		return 0;
	p = push_slot(st);
	if (p == NULL)
		return API_EUNAVAILABLE;
	p->key = key;
	p->author_id = st->id;
	p->target = target;
	p->lsn = lsn;
	p->kind = (uint8_t)kind;
	return 1;
}

int
user__push_add(user_state *st, uint64_t key, uint64_t lsn,
	user_push_kind kind)
{
	return push_add(st, key, 0, lsn, kind) < 0 ? API_EUNAVAILABLE : 0;
}

int
user__push_live(user_state *st, uint64_t key, api_event_type type,
	uint8_t flags, const uint64_t *targets, uint32_t targets_count,
	const void *body, size_t body_length, uint64_t lsn)
{
	ACTORS_ASSERT(body != NULL || body_length == 0);
	ACTORS_ASSERT(targets != NULL || targets_count == 0);
	if ((flags & USER_LIVE_F_PRESENCE) && targets_count == 0)
		return 0; /* nobody online: nothing to send */
	uint64_t *copy = NULL;
	unsigned char *data = NULL;
	if (targets_count > 0) {
		copy = malloc(targets_count * sizeof *copy);
		if (copy == NULL)
			return API_EUNAVAILABLE;
		memcpy(copy, targets, targets_count * sizeof *copy);
	}
	if (body_length > 0) {
		data = malloc(body_length);
		if (data == NULL) {
			free(copy);
			return API_EUNAVAILABLE;
		}
		memcpy(data, body, body_length);
	}
	push *p = push_slot(st);
	if (p == NULL) {
		free(copy);
		free(data);
		return API_EUNAVAILABLE;
	}
	p->key = key;
	p->author_id = st->id;
	p->lsn = lsn;
	p->kind = USER_PUSH_LIVE;
	p->live_type = (uint8_t)type;
	p->live_flags = flags;
	p->targets = copy;
	p->targets_count = targets_count;
	p->target = 0; /* the list, or every follower without one */
	p->body = data;
	p->body_length = (uint32_t)body_length;
	return 0;
}

/* Removes p (a pointer into st->pushes); the last entry moves into its
 * slot. */
/* Keeps body (taken) as the stream event data of the timeline push of
 * key, in place of the oldest kept; frees it when out of memory. */
static void
live_body_keep(user_state *st, uint64_t key, unsigned char *body,
	uint32_t body_length)
{
	ACTORS_ASSERT(key != 0);
	ACTORS_ASSERT(body != NULL);
	if (st->live_bodies == NULL) {
		st->live_bodies = calloc(1, sizeof *st->live_bodies);
		if (st->live_bodies == NULL) {
			free(body);
			return;
		}
	}
	live_bodies *k = st->live_bodies;
	ACTORS_ASSERT(k->next < USER_LIVE_BODIES_MAX);
	live_body *e = &k->entries[k->next];
	free(e->body);
	*e = (live_body){key, body, body_length};
	k->next = (k->next + 1u) % USER_LIVE_BODIES_MAX;
}

static void
live_bodies_free(user_state *st)
{
	if (st->live_bodies == NULL)
		return;
	for (uint32_t i = 0; i < USER_LIVE_BODIES_MAX; i++)
		free(st->live_bodies->entries[i].body);
	free(st->live_bodies);
	st->live_bodies = NULL;
}

static void
push_remove(user_state *st, push *p)
{
	ACTORS_ASSERT(p >= st->pushes && p < st->pushes + st->pushes_count);
	free(p->targets);
	if (p->kind == USER_PUSH_TIMELINE && p->body != NULL)
		live_body_keep(st, p->key, p->body, p->body_length);
	else
		free(p->body);
	free(p->owed);
	free(p->owed_paid);
	*p = st->pushes[--st->pushes_count];
}

/* ---- apply: the one place events change state ---------------------------- */

static int
apply_created(user_state *st, wire_reader *r, uint64_t lsn)
{
	uint64_t id = wire_get_u64(r);
	char username[API_USERNAME_BYTES_MAX + 2];
	wire_get_strbuf(r, username, sizeof username);
	char *email = wire_get_strdup(r, API_EMAIL_BYTES_MAX);
	char *hash = wire_get_strdup(r, 256);
	if (r->failed) {
		free(email);
		free(hash);
		return RT_ECORRUPT;
	}
	if (st->exists) {
		/* Re-sent creation: the first one stands. */
		free(email);
		free(hash);
		return 0;
	}
	st->id = id;
	st->exists = true;
	memcpy(st->username, username, sizeof username);
	st->email = email;
	st->password_hash = hash;
	/* Searchable from its signup on: derived from this durable event. */
	return user__search_effects(st, lsn, false) == 0 ? 0 : RT_ENOMEM;
}

static int
apply_profile(user_state *st, wire_reader *r, uint64_t lsn)
{
	uint8_t has_bio = wire_get_u8(r);
	char *bio = wire_get_strdup(r, API_BIO_CHARACTERS_MAX * 4);
	uint64_t pic = wire_get_u64(r);
	if (r->failed) {
		free(bio);
		return RT_ECORRUPT;
	}
	if (has_bio) {
		free(st->bio);
		st->bio = bio;
	} else {
		free(bio);
	}
	if (pic == 0 || pic == st->profile_pic_media_id)
		return 0;
	st->profile_pic_media_id = pic;
	/* Search answers usernames with their picture from the index. */
	return user__search_effects(st, lsn, true) == 0 ? 0 : RT_ENOMEM;
}

static int
apply_following(user_state *st, wire_reader *r, uint64_t lsn)
{
	uint64_t target = wire_get_u64(r);
	uint8_t on = wire_get_u8(r);
	/* The time of the follow (for the followee's notification); records
	 * written before it was kept have none. */
	uint64_t created_at = r->offset < r->length ? wire_get_u64(r) : 0;
	if (r->failed)
		return RT_ECORRUPT;
	if (on) {
		if (set_add(&st->following, target) < 0)
			return RT_ENOMEM;
		/* Its stories of the last day (pushed before this follow)
		 * show in the trays too. */
		if (created_at != 0)
			user__story_followed(st, target, created_at);
	} else {
		set_remove(&st->following, target);
		set_remove(&st->pulls, target);
		ring_remove_author(st, target);
	}
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, st->id);
	wire_u8(&w, on);
	wire_u64(&w, created_at);
	int rc = w.failed ? RT_ENOMEM
			  : ps_outbox_add(&st->outbox,
				rt_addr_make(ACTORS_KIND_USER, target),
				USER_T_FOLLOWER_SET, w.bytes, w.length, lsn,
				NULL);
	wire_free(&w);
	return rc == 0 ? 0 : RT_ENOMEM;
}

static int
apply_follower(user_state *st, wire_reader *r, uint64_t lsn)
{
	uint64_t follower = wire_get_u64(r);
	uint8_t on = wire_get_u8(r);
	uint64_t created_at = r->offset < r->length ? wire_get_u64(r) : 0;
	/* The follower's effect sequence (follower_set_apply); records
	 * written before it was kept have none, and 0 is none. */
	uint64_t sequence = r->offset < r->length ? wire_get_u64(r) : 0;
	if (r->failed)
		return RT_ECORRUPT;
	if (sequence != 0 &&
		user__follower_seq_note(st, follower, sequence) != 0)
		return RT_ENOMEM;
	if (!on) {
		set_remove(&st->followers, follower);
		(void)inbox_presence_set(&st->online_followers, follower, false);
		return user__search_effects(st, lsn, false) == 0 ? 0 : RT_ENOMEM;
	}
	int added = set_add(&st->followers, follower);
	if (added < 0)
		return RT_ENOMEM;
	/* A new follower of someone whose posts are pulled must pull too. */
	if (added > 0 && st->has_unpushed &&
		push_add(st, USER_PUSH_PULL_BIT | follower, follower, lsn,
			USER_PUSH_PULL) < 0)
		return RT_ENOMEM;
	if (added > 0 && created_at != 0)
		user__notify_follow(st, follower, created_at);
	return user__search_effects(st, lsn, false) == 0 ? 0 : RT_ENOMEM;
}

static int
apply_posted(api *a, user_state *st, wire_reader *r, uint64_t lsn)
{
	size_t start = r->offset;
	uint64_t post_id = wire_get_u64(r);
	uint8_t pushed = wire_get_u8(r);
	size_t caption_length;
	(void)wire_get_str(r, API_CAPTION_CHARACTERS_MAX * 4, &caption_length);
	(void)wire_get_u64(r); /* media id */
	size_t end = r->offset;
	/* Then the accounts the caption mentions (resolved by the client
	 * layer), when there are any. */
	uint64_t mentions[ACTORS_MENTIONS_MAX];
	uint32_t mentions_count = r->offset < r->length ? wire_get_u32(r) : 0;
	if (mentions_count > ACTORS_MENTIONS_MAX)
		return RT_ECORRUPT;
	for (uint32_t i = 0; i < mentions_count; i++)
		mentions[i] = wire_get_u64(r);
	if (r->failed)
		return RT_ECORRUPT;
	int added = posts_add(st, post_id, pushed != 0);
	if (added < 0)
		return RT_ENOMEM;
	if (added == 0)
		return 0;
	actors__ref self_ref = {post_id, st->id};
	if (ring_insert(st, self_ref, ring_max(a)) < 0)
		return RT_ENOMEM;
	/* POST_T_INIT payload: author, username, then this record's body. */
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, st->id);
	wire_str(&w, st->username);
	wire_bytes(&w, r->bytes + start, end - start);
	int rc = w.failed ? PS_ENOMEM
			  : ps_outbox_add(&st->outbox,
				rt_addr_make(ACTORS_KIND_POST, post_id),
				POST_T_INIT, w.bytes, w.length, lsn, NULL);
	wire_free(&w);
	if (rc != 0)
		return RT_ENOMEM;
	for (uint32_t i = 0; i < mentions_count; i++)
		(void)actors__notify_effect(&st->outbox, INBOX_TYPE_MENTION,
			st->id, mentions[i], post_id, 0,
			actors__id_ms(post_id), lsn);
	if (pushed)
		return push_add(st, post_id, 0, lsn, USER_PUSH_TIMELINE) < 0
			? RT_ENOMEM
			: 0;
	if (!st->has_unpushed) {
		st->has_unpushed = true;
		if (push_add(st, USER_PUSH_PULL_BIT | post_id, 0, lsn,
			    USER_PUSH_PULL) < 0)
			return RT_ENOMEM;
	}
	return 0;
}

static int
user_apply(api *a, user_state *st, uint32_t type, const void *payload,
	size_t length, uint64_t lsn)
{
	wire_reader r;
	wire_reader_init(&r, payload, length);
	int rc = 0;
	switch (type) {
	case USER_R_CREATED:
		rc = apply_created(st, &r, lsn);
		break;
	case USER_R_PROFILE:
		rc = apply_profile(st, &r, lsn);
		break;
	case USER_R_FOLLOWING:
		rc = apply_following(st, &r, lsn);
		break;
	case USER_R_FOLLOWER:
		rc = apply_follower(st, &r, lsn);
		break;
	case USER_R_POSTED:
		rc = apply_posted(a, st, &r, lsn);
		break;
	case USER_R_POST_REMOVED: {
		uint64_t post_id = wire_get_u64(&r);
		posts_remove(st, post_id);
		ring_remove(st, post_id);
		break;
	}
	case USER_R_TIMELINE: {
		actors__ref ref;
		ref.post_id = wire_get_u64(&r);
		ref.author_id = wire_get_u64(&r);
		if (!r.failed && ring_insert(st, ref, ring_max(a)) < 0)
			rc = RT_ENOMEM;
		break;
	}
	case USER_R_PULL: {
		uint64_t author = wire_get_u64(&r);
		if (!r.failed && set_has(&st->following, author) &&
			set_add(&st->pulls, author) < 0)
			rc = RT_ENOMEM;
		break;
	}
	case USER_R_PUSH_DONE: {
		push *p = push_find(st, wire_get_u64(&r));
		if (!r.failed && p != NULL)
			push_remove(st, p);
		break;
	}
	default:
		rc = user__engage_apply(a, st, type, &r, lsn);
		break;
	}
	if (rc == 0 && r.failed)
		rc = RT_ECORRUPT;
	return rc;
}

static int
user_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	/* Recovery: everything replayed is durable; the api is looked up
	 * lazily (apply needs only its config). */
	((user_state *)state)->replayed = true;
	return user_apply(NULL, state, type, payload, length, 0);
}

/* ---- helpers for handlers ------------------------------------------------ */

static int
user_write(api *a, rt_actor *self, user_state *st, uint32_t record,
	const wire_writer *w, const actors__cookie *cookie)
{
	if (w->failed)
		return API_EUNAVAILABLE;
	uint64_t lsn = 0;
	int rc = actors__journal(a, self, record, w->bytes, w->length, cookie,
		&lsn);
	if (rc != 0)
		return rc;
	uint64_t notified = st->inbox.last_seq;
	st->last_lsn = lsn;
	st->stream_marked = true; /* this record marks the activation */
	rc = user_apply(a, st, record, w->bytes, w->length, lsn);
	ACTORS_ASSERT(rc != RT_ECORRUPT);
	rt_mark_dirty(self);
	if (st->inbox.last_seq != notified)
		user__publish_notifications(a, self, st, notified);
	return rc == 0 ? API_OK : API_EUNAVAILABLE;
}

int
user__write(api *a, rt_actor *self, user_state *st, uint32_t record,
	const wire_writer *w, const actors__cookie *cookie)
{
	return user_write(a, self, st, record, w, cookie);
}

bool
user__set_has(const id_set *s, uint64_t id)
{
	return set_has(s, id);
}

static void
reply_code(rt_actor *self, const rt_message *m, int code, const char *detail)
{
	actors__reply(self, m, code, detail, NULL, 0);
}

static void
reply_body(rt_actor *self, const rt_message *m, actors__body *b)
{
	actors__reply(self, m, API_OK, NULL, b->buffer.data, b->buffer.size);
}

static void
pack_profile_pic(api *a, msgpack_packer *p, uint64_t media_id)
{
	if (media_id == 0) {
		msgpack_pack_nil(p);
		return;
	}
	char url[200];
	snprintf(url, sizeof url, "/v1/media/%llu",
		(unsigned long long)media_id);
	(void)a;
	actors__pack_str(p, url);
}

static void
pack_profile(api *a, msgpack_packer *p, const user_state *st,
	uint64_t viewer)
{
	msgpack_pack_map(p, 9);
	actors__pack_key(p, "user_id");
	actors__pack_id(p, st->id);
	actors__pack_key(p, "username");
	actors__pack_str(p, st->username);
	actors__pack_key(p, "bio");
	actors__pack_str(p, st->bio != NULL ? st->bio : "");
	actors__pack_key(p, "profile_pic_url");
	pack_profile_pic(a, p, st->profile_pic_media_id);
	actors__pack_key(p, "followers_count");
	msgpack_pack_uint32(p, st->followers.count);
	actors__pack_key(p, "following_count");
	msgpack_pack_uint32(p, st->following.count);
	actors__pack_key(p, "posts_count");
	msgpack_pack_uint32(p, st->posts_count);
	actors__pack_key(p, "followed_by_me");
	msgpack_pack_bool(p, viewer != 0 && set_has(&st->followers, viewer));
	actors__pack_key(p, "follows_me");
	msgpack_pack_bool(p, viewer != 0 && set_has(&st->following, viewer));
}

static void
pack_summary(api *a, msgpack_packer *p, const user_state *st)
{
	msgpack_pack_map(p, 3);
	actors__pack_key(p, "user_id");
	actors__pack_id(p, st->id);
	actors__pack_key(p, "username");
	actors__pack_str(p, st->username);
	actors__pack_key(p, "profile_pic_url");
	pack_profile_pic(a, p, st->profile_pic_media_id);
}

void
user__pack_summary(api *a, msgpack_packer *p, const user_state *st)
{
	pack_summary(a, p, st);
}

void
user__pack_profile_pic(msgpack_packer *p, uint64_t media_id)
{
	pack_profile_pic(NULL, p, media_id);
}

/* ---- pushes: sending and acks --------------------------------------------- */

static void
arm_resend(api *a, rt_actor *self, user_state *st)
{
	if (st->resend_armed)
		return;
	if (rt_timer_start(a->rt, rt_self(self), ACTORS_T_RESEND, NULL, 0,
		    USER_RESEND_DELAY_MS, 0, NULL) == 0)
		st->resend_armed = true;
}

/* The message of p for one target; NULL when out of memory. A story
 * push carries the story as this actor holds it (*gone when it is no
 * longer visible: nothing to send). */
static rt_message *
push_message(api *a, user_state *st, const push *p, bool *gone)
{
	*gone = false;
	uint32_t type;
	stories_item story;
	switch (p->kind) {
	case USER_PUSH_LIVE:
		type = USER_T_LIVE;
		break;
	case USER_PUSH_STORY:
		type = USER_T_STORY_ADD;
		if (st->stories == NULL ||
			stories_get(st->stories, p->key, rt_wall_ms(a->rt),
				&story) != 0) {
			*gone = true;
			return NULL;
		}
		break;
	case USER_PUSH_PULL:
		type = USER_T_PULL_ON;
		break;
	default:
		type = (p->key & USER_PUSH_PULL_BIT) ? USER_T_PULL_ON
						     : USER_T_TIMELINE_ADD;
		break;
	}
	/* Header: 3 u64 (live: author, type, flags, key); then the story's
	 * 3 u64, or a live event's data. A timeline push is the header
	 * alone: its event data goes only to the followers with a stream,
	 * who ask for it (on_live_want); it was four of the five cache
	 * lines each follower's message took, and most have none. */
	uint32_t size = p->kind == USER_PUSH_LIVE ? 18u : 24u;
	if (p->kind == USER_PUSH_STORY)
		size += 24u;
	else if (p->kind == USER_PUSH_LIVE)
		size += p->body_length;
	rt_message *m = rt_message_alloc(a->rt, type, size);
	if (m == NULL)
		return NULL;
	if (p->kind == USER_PUSH_TIMELINE || p->kind == USER_PUSH_PULL) {
		/* One per follower of a fan-out: plain stores. */
		wire_put_le64(m->payload, p->key);
		wire_put_le64(m->payload + 8, p->author_id);
		wire_put_le64(m->payload + 16, st->id);
		return m;
	}
	wire_writer w = {m->payload, 0, size, false};
	if (p->kind == USER_PUSH_LIVE) {
		wire_u64(&w, p->author_id);
		wire_u8(&w, p->live_type);
		wire_u8(&w, p->live_flags);
		wire_u64(&w, p->key);
	} else {
		wire_u64(&w, p->key);
		wire_u64(&w, p->author_id);
		wire_u64(&w, st->id);
	}
	if (p->kind == USER_PUSH_STORY) {
		wire_u64(&w, story.expires_at_ms);
		wire_u64(&w, story.media_id);
		wire_u64(&w, story.created_at_ms);
	} else if (p->kind == USER_PUSH_LIVE && p->body_length > 0) {
		wire_bytes(&w, p->body, p->body_length);
	}
	ACTORS_ASSERT(!w.failed && w.bytes == m->payload);
	ACTORS_ASSERT(w.length == size);
	return m;
}

/* The owed set: the targets a durable push went to, ascending, and a
 * bitmap of those that acknowledged. A fan-out appends 100,000 ids in
 * order and then finds each ack next to the previous one (acks come
 * sorted); a hash set wrote a 2 MiB table at random, a cache miss per
 * follower. */
static bool
owed_is_paid(const push *p, uint32_t i)
{
	return (p->owed_paid[i / 64u] >> (i % 64u)) & 1u;
}

/* Makes room for `capacity` entries (rounded up to a multiple of 64). */
static int
owed_resize(push *p, uint64_t capacity)
{
	capacity = (capacity + 63u) & ~(uint64_t)63u;
	if (capacity > UINT32_MAX - 63u)
		return API_EUNAVAILABLE;
	ACTORS_ASSERT(capacity >= p->owed_length);
	uint64_t *ids = realloc(p->owed, (size_t)capacity * sizeof *ids);
	if (ids == NULL)
		return API_EUNAVAILABLE;
	p->owed = ids;
	uint64_t *paid = realloc(p->owed_paid, (size_t)capacity / 8u);
	if (paid == NULL)
		return API_EUNAVAILABLE;
	uint32_t words = p->owed_capacity / 64u;
	memset(paid + words, 0, ((size_t)capacity / 64u - words) * 8u);
	p->owed_paid = paid;
	p->owed_capacity = (uint32_t)capacity;
	return 0;
}

/* Sizes the owed set once for `more` targets still to be sent to. */
static int
owed_reserve(push *p, uint32_t more)
{
	if (p->kind == USER_PUSH_LIVE)
		return 0;
	uint64_t need = (uint64_t)p->owed_length + more;
	return need <= p->owed_capacity ? 0 : owed_resize(p, need);
}

/* Forgets every owed target (re-activation re-sends to all). */
static void
push_owed_clear(push *p)
{
	free(p->owed);
	free(p->owed_paid);
	p->owed = NULL;
	p->owed_paid = NULL;
	p->owed_length = 0;
	p->owed_count = 0;
	p->owed_capacity = 0;
	p->owed_hint = 0;
}

/* Index of the first entry >= target. */
static uint32_t
owed_lower_bound(const push *p, uint64_t target)
{
	uint32_t h = p->owed_hint;
	if (h < p->owed_length && p->owed[h] == target)
		return h;
	return actors__u64_lower_bound(p->owed, p->owed_length, target);
}

/* Drops the paid entries (before an insertion out of order). */
static void
owed_compact(push *p)
{
	uint32_t kept = 0;
	for (uint32_t i = 0; i < p->owed_length; i++)
		if (!owed_is_paid(p, i))
			p->owed[kept++] = p->owed[i];
	ACTORS_ASSERT(kept == p->owed_count);
	memset(p->owed_paid, 0, (size_t)p->owed_capacity / 8u);
	p->owed_length = kept;
	p->owed_hint = 0;
}

/* target was sent durable push p and owes its ack. API_EUNAVAILABLE when
 * out of memory (the caller retries the send). */
static int
push_owe(push *p, uint64_t target)
{
	if (p->kind == USER_PUSH_LIVE)
		return 0; /* volatile: never acknowledged */
	ACTORS_ASSERT(target != 0);
	uint32_t at = p->owed_length;
	if ((at == 0 || p->owed[at - 1] < target) &&
		at < p->owed_capacity) {
		/* A fan-out walks its followers in order (owed_reserve sized
		 * the set): an append, no memmove call per follower. */
		p->owed[at] = target;
		p->owed_length = at + 1u;
		p->owed_count++;
		return 0;
	}
	if (at > 0 && p->owed[at - 1] >= target) {
		/* Out of order (a re-sent push): rare, so O(length). */
		at = owed_lower_bound(p, target);
		if (at < p->owed_length && p->owed[at] == target) {
			if (owed_is_paid(p, at)) {
				p->owed_paid[at / 64u] &= ~(1ull << (at % 64u));
				p->owed_count++;
			}
			return 0;
		}
		owed_compact(p);
		at = owed_lower_bound(p, target);
	}
	if (p->owed_length == p->owed_capacity &&
		owed_resize(p, p->owed_capacity ? 2ull * p->owed_capacity
						: 64u) != 0)
		return API_EUNAVAILABLE;
	memmove(p->owed + at + 1, p->owed + at,
		(p->owed_length - at) * sizeof *p->owed);
	p->owed[at] = target;
	p->owed_length++;
	p->owed_count++;
	return 0;
}

/* target acknowledged p: true if it owed (a duplicate ack finds nothing
 * to forget). */
static bool
push_paid(push *p, uint64_t target)
{
	if (p->owed_count == 0 || target == 0)
		return false;
	uint32_t i = owed_lower_bound(p, target);
	if (i == p->owed_length || p->owed[i] != target || owed_is_paid(p, i))
		return false;
	p->owed_paid[i / 64u] |= 1ull << (i % 64u);
	p->owed_count--;
	p->owed_hint = i + 1u;
	if (p->owed_count == 0)
		push_owed_clear(p);
	return true;
}

static int
push_send_one(api *a, rt_actor *self, user_state *st, const push *p,
	uint64_t target, bool *gone)
{
	rt_message *m = push_message(a, st, p, gone);
	if (m == NULL)
		return *gone ? 0 : RT_ENOMEM;
	return rt_send(self, rt_addr_make(ACTORS_KIND_USER, target), m);
}

static void push_maybe_done(api *a, rt_actor *self, user_state *st, push *p);

/* Sends one slice of p; returns false when it must wait (backpressure or
 * slice used up). */
static bool
push_send(api *a, rt_actor *self, user_state *st, push *p, uint32_t *budget)
{
	bool gone = false;
	if (p->target != 0) {
		if (push_send_one(a, self, st, p, p->target, &gone) != 0 ||
			(!gone && push_owe(p, p->target) != 0))
			return false;
		p->sent = gone ? 0 : 1;
		p->done_sending = true;
		return true;
	}
	if (p->targets != NULL) {
		for (; p->targets_next < p->targets_count; p->targets_next++) {
			if (*budget == 0)
				return false;
			uint64_t target = p->targets[p->targets_next];
			if (push_send_one(a, self, st, p, target, &gone) != 0 ||
				(!gone && push_owe(p, target) != 0))
				return false;
			(*budget)--;
			p->sent++;
		}
		p->done_sending = true;
		return true;
	}
	uint32_t i = set_lower_bound(&st->followers, p->next_id);
	if (owed_reserve(p, st->followers.count - i) != 0)
		return false;
	for (; i < st->followers.count; i++) {
		if (*budget == 0)
			return false;
		if (i + USER_PUSH_PREFETCH_DISTANCE < st->followers.count)
			rt_prefetch(self, rt_addr_make(ACTORS_KIND_USER,
				st->followers.ids[i + USER_PUSH_PREFETCH_DISTANCE]));
		uint64_t follower = st->followers.ids[i];
		if (push_send_one(a, self, st, p, follower, &gone) != 0)
			return false;
		if (gone)
			break; /* the story expired: nobody needs it now */
		if (push_owe(p, follower) != 0)
			return false;
		(*budget)--;
		p->sent++;
		p->next_id = follower + 1;
	}
	p->done_sending = true;
	return true;
}

static void
pushes_run(api *a, rt_actor *self, user_state *st)
{
	uint32_t budget = USER_PUSH_SLICE_SENDS;
	bool waiting = false;
	for (uint32_t i = 0; i < st->pushes_count; i++) {
		push *p = &st->pushes[i];
		if (p->lsn > st->durable_lsn || p->done_sending)
			continue;
		if (!push_send(a, self, st, p, &budget)) {
			waiting = true;
			break;
		}
		uint32_t before = st->pushes_count;
		push_maybe_done(a, self, st, p);
		if (st->pushes_count != before)
			i--; /* the last entry moved into slot i */
	}
	for (uint32_t i = 0; i < st->pushes_count; i++)
		if (st->pushes[i].owed_count > 0 && a->store != NULL) {
			actors__redrive_arm(a, self, &st->redrive_armed);
			break;
		}
	if (!waiting)
		return;
	if (budget == 0 && !st->resend_armed) {
		/* Slice used up: continue right after the queued messages. */
		if (rt_send_copy(self, rt_self(self), ACTORS_T_RESEND, NULL,
			    0) == 0) {
			st->resend_armed = true;
			return;
		}
	}
	arm_resend(a, self, st);
}

void
user__pushes_run(api *a, rt_actor *self, user_state *st)
{
	pushes_run(a, self, st);
}

static void
push_maybe_done(api *a, rt_actor *self, user_state *st, push *p)
{
	if (!p->done_sending)
		return;
	if (p->kind == USER_PUSH_LIVE) {
		push_remove(st, p); /* volatile: sent is done */
		return;
	}
	if (a->store != NULL && p->owed_count > 0)
		return;
	uint64_t key = p->key;
	if (a->store == NULL) {
		push_remove(st, p);
		return;
	}
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, key);
	actors__cookie cookie = {0, USER_R_PUSH_DONE, 0, 0, key};
	(void)user_write(a, self, st, USER_R_PUSH_DONE, &w, &cookie);
	wire_free(&w);
}

static void
on_push_ack(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t key = wire_get_u64(&r);
	push *p = push_find(st, key);
	if (r.failed || p == NULL)
		return;
	p->acked++;
	(void)push_paid(p, m->from.id);
	push_maybe_done(a, self, st, p);
}

/* ACTORS_T_PUSH_ACKS: followers whose copies of push `key` are in
 * committed snapshots (actors__ack_after_checkpoint). */
static void
on_push_acks(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t key = wire_get_u64(&r);
	uint32_t n = wire_get_u32(&r);
	push *p = push_find(st, key);
	if (r.failed || p == NULL || n > ACTORS_ACK_IDS_PER_MESSAGE)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t follower = wire_get_u64(&r);
		if (r.failed)
			break;
		if (push_paid(p, follower))
			p->acked++;
	}
	push_maybe_done(a, self, st, p);
}

static void
outbox_run(api *a, rt_actor *self, user_state *st, uint64_t lsn)
{
	if (ps_outbox_send(self, &st->outbox, lsn, ACTORS_T_EFFECT_CONFIRM) >
		0)
		arm_resend(a, self, st);
	const ps_effect *effects;
	if (ps_outbox_pending(&st->outbox, &effects) > 0)
		actors__redrive_arm(a, self, &st->redrive_armed);
}

/* The redrive timer: unconfirmed effects and unacknowledged pushes go
 * again to whoever has not confirmed them. */
static void
redrive(api *a, rt_actor *self, user_state *st)
{
	st->redrive_armed = false;
	ps_outbox_reset_sent(&st->outbox);
	outbox_run(a, self, st, st->durable_lsn);
	for (uint32_t i = 0; i < st->pushes_count; i++) {
		push *p = &st->pushes[i];
		if (!p->done_sending || p->owed_count == 0)
			continue;
		if (p->kind == USER_PUSH_TIMELINE && a->store != NULL &&
			++p->redrive_skipped < ACTORS_DEFERRED_REDRIVE_FIRINGS) {
			/* Its acknowledgements wait for a checkpoint
			 * (timeline_copy): sending again now would only
			 * duplicate what was applied. */
			actors__redrive_arm(a, self, &st->redrive_armed);
			continue;
		}
		p->redrive_skipped = 0;
		bool gone = false;
		for (uint32_t k = 0; k < p->owed_length && !gone; k++)
			if (!owed_is_paid(p, k) &&
				push_send_one(a, self, st, p, p->owed[k], &gone) != 0)
				break; /* backpressure: the next firing retries */
		if (gone) {
			/* the story expired: nobody needs it any more */
			push_owed_clear(p);
			uint32_t before = st->pushes_count;
			push_maybe_done(a, self, st, p);
			if (st->pushes_count != before)
				i--; /* the last entry moved into slot i */
			continue;
		}
		actors__redrive_arm(a, self, &st->redrive_armed);
	}
}

/* ---- requests ------------------------------------------------------------ */

static void
on_profile(api *a, rt_actor *self, user_state *st, const rt_message *m,
	bool summary)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t viewer = wire_get_u64(&r);
	actors__body b;
	actors__body_init(&b);
	if (summary)
		pack_summary(a, &b.packer, st);
	else
		pack_profile(a, &b.packer, st, viewer);
	reply_body(self, m, &b);
	actors__body_free(&b);
}

static void
on_update(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_UPDATE, 0);
	wire_writer w;
	wire_init(&w);
	wire_bytes(&w, m->payload, m->size);
	int rc = user_write(a, self, st, USER_R_PROFILE, &w, &cookie);
	wire_free(&w);
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

static void
on_credentials(rt_actor *self, user_state *st, const rt_message *m)
{
	const char *hash = st->password_hash != NULL ? st->password_hash : "";
	actors__reply(self, m, API_OK, NULL, hash, strlen(hash));
}

static void
on_follow(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t target = wire_get_u64(&r);
	uint8_t on = wire_get_u8(&r);
	/* The caller's deadline (senders before it was kept send none). */
	uint64_t deadline = r.offset < r.length ? wire_get_u64(&r) : 0;
	if (!wire_done(&r) || target == 0) {
		reply_code(self, m, API_EINVALID, "malformed follow");
		return;
	}
	if (actors__ask_expired(a, deadline)) {
		reply_code(self, m, API_EUNAVAILABLE, "deadline passed");
		return;
	}
	if (target == st->id) {
		reply_code(self, m, API_EINVALID, "cannot follow yourself");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_FOLLOW, on);
	int rc;
	if ((set_has(&st->following, target) ? 1 : 0) == on) {
		rc = actors__barrier(a, self, &cookie); /* idempotent */
	} else {
		/* Only a change spends a token: following again is free. */
		if (on && !user__rate_allow(a, self, st, m, RATE_ACTION_FOLLOW))
			return;
		bool pulled = set_has(&st->pulls, target);
		wire_writer w;
		wire_init(&w);
		wire_u64(&w, target);
		wire_u8(&w, on);
		wire_u64(&w, rt_wall_ms(a->rt));
		rc = user_write(a, self, st, USER_R_FOLLOWING, &w, &cookie);
		wire_free(&w);
		/* An online user stops getting a celebrity's live posts. */
		if (rc == 0 && !on && pulled && user__online(st))
			user__presence_send(self, st, target, false);
	}
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

/* Answers a page of ids below boundary, newest (largest) first:
 * u32 count, ids, u8 more. */
static void
reply_id_page(rt_actor *self, const rt_message *m, const uint64_t *ids,
	size_t stride, uint32_t count, uint64_t boundary, uint32_t limit)
{
	wire_writer w;
	wire_init(&w);
	wire_u32(&w, 0);
	uint32_t n = 0;
	bool more = false;
	/* Index of the first id >= boundary, scanning down from there. */
	uint32_t lo = 0, hi = count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (*(const uint64_t *)((const char *)ids + mid * stride) <
			boundary)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo; i > 0; i--) {
		if (n == limit) {
			more = true;
			break;
		}
		wire_u64(&w, *(const uint64_t *)((const char *)ids +
			(i - 1) * stride));
		n++;
	}
	wire_u8(&w, more);
	if (!w.failed) {
		for (int k = 0; k < 4; k++)
			w.bytes[k] = (unsigned char)(n >> (8 * k));
		actors__reply(self, m, API_OK, NULL, w.bytes, w.length);
	} else {
		reply_code(self, m, API_EUNAVAILABLE, "out of memory");
	}
	wire_free(&w);
}

static void
on_follow_list(rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint8_t following = wire_get_u8(&r);
	uint64_t boundary = wire_get_u64(&r);
	uint32_t limit = wire_get_u32(&r);
	if (!wire_done(&r) || limit == 0 || limit > API_PAGE_LIMIT_MAX) {
		reply_code(self, m, API_EINVALID, "malformed page");
		return;
	}
	const id_set *s = following ? &st->following : &st->followers;
	reply_id_page(self, m, s->ids, sizeof *s->ids, s->count, boundary,
		limit);
}

static void
on_own_posts(rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t boundary = wire_get_u64(&r);
	uint32_t limit = wire_get_u32(&r);
	if (!wire_done(&r) || limit == 0 || limit > 4 * API_PAGE_LIMIT_MAX) {
		reply_code(self, m, API_EINVALID, "malformed page");
		return;
	}
	/* No posts yet: no array to point into (NULL is a valid empty list). */
	const uint64_t *ids = st->posts != NULL ? &st->posts[0].post_id : NULL;
	reply_id_page(self, m, ids, sizeof *st->posts, st->posts_count,
		boundary, limit);
}

static void
on_recent(rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t boundary = wire_get_u64(&r);
	uint32_t limit = wire_get_u32(&r);
	if (!wire_done(&r) || limit == 0 || limit > 4 * API_PAGE_LIMIT_MAX) {
		reply_code(self, m, API_EINVALID, "malformed page");
		return;
	}
	/* Unpushed posts only: pushed ones are in the readers' timelines. */
	wire_writer w;
	wire_init(&w);
	wire_u32(&w, 0);
	uint32_t n = 0;
	uint32_t i = posts_lower_bound(st, boundary);
	for (; i > 0 && n < limit; i--) {
		if (st->posts[i - 1].pushed)
			continue;
		wire_u64(&w, st->posts[i - 1].post_id);
		n++;
	}
	if (!w.failed) {
		for (int k = 0; k < 4; k++)
			w.bytes[k] = (unsigned char)(n >> (8 * k));
		actors__reply(self, m, API_OK, NULL, w.bytes, w.length);
	}
	wire_free(&w);
}

/* Slots of a feed read's index of the reader's affinities (a power of
 * two, twice USER_AFFINITY_ENTRIES_MAX: probes stay short). */
#define AFFINITY_INDEX_SLOTS (2u * USER_AFFINITY_ENTRIES_MAX)
static_assert((AFFINITY_INDEX_SLOTS & (AFFINITY_INDEX_SLOTS - 1)) == 0,
	"a power of two");

/* The reader's affinities by author, built once per feed read: a page
 * looked each of its 20 refs up in all 64 entries (the scan was 40% of
 * user_on_message's samples in the daily mix). Slot 0 of index is
 * empty; slot k holds affinities[k - 1]. */
typedef struct affinity_index {
	uint64_t authors[AFFINITY_INDEX_SLOTS];
	uint8_t entries[AFFINITY_INDEX_SLOTS];
} affinity_index;

static uint32_t
affinity_slot(uint64_t author)
{
	/* Fibonacci hashing: ids differ mostly in their low and middle
	 * bits, the product's high half mixes them all */
	return (uint32_t)((author * 0x9e3779b97f4a7c15ull) >> 32) &
		(AFFINITY_INDEX_SLOTS - 1);
}

static void
affinity_index_build(const user_state *st, affinity_index *x)
{
	ACTORS_ASSERT(st->affinities_count <= USER_AFFINITY_ENTRIES_MAX);
	memset(x->entries, 0, sizeof x->entries);
	for (uint32_t i = 0; i < st->affinities_count; i++) {
		uint32_t k = affinity_slot(st->affinities[i].author_id);
		while (x->entries[k] != 0)
			k = (k + 1) & (AFFINITY_INDEX_SLOTS - 1);
		x->authors[k] = st->affinities[i].author_id;
		x->entries[k] = (uint8_t)(i + 1);
	}
}

static double
affinity_of(const user_state *st, const affinity_index *x, uint64_t author,
	uint64_t now_ms)
{
	for (uint32_t k = affinity_slot(author); x->entries[k] != 0;
		k = (k + 1) & (AFFINITY_INDEX_SLOTS - 1)) {
		if (x->authors[k] != author)
			continue;
		const affinity *f = &st->affinities[x->entries[k] - 1];
		ACTORS_ASSERT(f->author_id == author);
		return actors__affinity_decay(f->score,
			now_ms > f->at_ms ? now_ms - f->at_ms : 0);
	}
	return 0.0;
}

/* Answer: u32 refs, refs (post, author, affinity), u32 pulls, pulls
 * (author, affinity). Refs are the timeline entries below boundary whose
 * author is still followed (or self), newest first. */
static void
on_feed_candidates(api *a, rt_actor *self, user_state *st,
	const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t boundary = wire_get_u64(&r);
	uint32_t limit = wire_get_u32(&r);
	if (!wire_done(&r) || limit == 0 || limit > 4 * API_PAGE_LIMIT_MAX) {
		reply_code(self, m, API_EINVALID, "malformed page");
		return;
	}
	uint64_t now = rt_wall_ms(a->rt);
	affinity_index index;
	affinity_index_build(st, &index);
	wire_writer w;
	wire_init(&w);
	wire_u32(&w, 0);
	uint32_t n = 0;
	for (uint32_t i = ring_lower_bound(st, boundary); i > 0 && n < limit;
		i--) {
		const actors__ref *ref = ring_at(st, i - 1);
		if (ref->author_id != st->id &&
			!set_has(&st->following, ref->author_id))
			continue;
		wire_u64(&w, ref->post_id);
		wire_u64(&w, ref->author_id);
		wire_f64(&w, affinity_of(st, &index, ref->author_id, now));
		n++;
	}
	wire_u32(&w, st->pulls.count);
	for (uint32_t i = 0; i < st->pulls.count; i++) {
		wire_u64(&w, st->pulls.ids[i]);
		wire_f64(&w, affinity_of(st, &index, st->pulls.ids[i], now));
	}
	if (!w.failed) {
		for (int k = 0; k < 4; k++)
			w.bytes[k] = (unsigned char)(n >> (8 * k));
		actors__reply(self, m, API_OK, NULL, w.bytes, w.length);
	} else {
		reply_code(self, m, API_EUNAVAILABLE, "out of memory");
	}
	wire_free(&w);
}

static void post_created_live(api *a, user_state *st, uint64_t post_id,
	bool pushed);

static void
on_post_create(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	size_t caption_length;
	const char *caption = wire_get_str(&r, API_CAPTION_CHARACTERS_MAX * 4,
		&caption_length);
	uint64_t media_id = wire_get_u64(&r);
	/* Then the mentioned accounts, when the caption has any. */
	size_t mentions_at = r.offset;
	uint32_t mentions = r.offset < r.length ? wire_get_u32(&r) : 0;
	for (uint32_t i = 0; i < mentions && !r.failed; i++)
		(void)wire_get_u64(&r);
	if (!wire_done(&r) || caption == NULL ||
		mentions > ACTORS_MENTIONS_MAX) {
		reply_code(self, m, API_EINVALID, "malformed post");
		return;
	}
	if (!user__rate_allow(a, self, st, m, RATE_ACTION_POST))
		return;
	uint64_t post_id = actors__idgen_next(&a->ids,
		actors__id_partition(st->id), rt_wall_ms(a->rt));
	bool pushed = st->followers.count <= a->cfg.celebrity_followers_min;
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, post_id);
	wire_u8(&w, pushed);
	wire_strn(&w, caption, caption_length);
	wire_u64(&w, media_id);
	if (mentions > 0)
		wire_bytes(&w, m->payload + mentions_at, m->size - mentions_at);
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_POST_CREATE,
		post_id);
	int rc = user_write(a, self, st, USER_R_POSTED, &w, &cookie);
	wire_free(&w);
	if (rc != 0) {
		reply_code(self, m, rc, "journal unavailable");
		return;
	}
	post_created_live(a, st, post_id, pushed);
}

/* The POST_T_INIT effect of post_id, to build the create answer from. */
static const ps_effect *
init_effect(const user_state *st, uint64_t post_id)
{
	const ps_effect *effects;
	uint32_t n = ps_outbox_pending(&st->outbox, &effects);
	for (uint32_t i = n; i > 0; i--) {
		const ps_effect *e = &effects[i - 1];
		if (e->type == POST_T_INIT &&
			e->target.kind == ACTORS_KIND_POST &&
			e->target.id == post_id)
			return e;
	}
	return NULL;
}

void actors__pack_post_init(api *a, msgpack_packer *p, const void *init,
	size_t length, uint64_t author_pic);

static void
answer_post_created(api *a, rt_actor *self, user_state *st,
	const actors__cookie *cookie)
{
	actors__reply_to to = actors__cookie_reply_to(cookie);
	const ps_effect *e = init_effect(st, cookie->extra);
	if (e == NULL) {
		actors__reply_later(self, &to, API_EINTERNAL,
			"post effect missing", NULL, 0);
		return;
	}
	actors__body b;
	actors__body_init(&b);
	actors__pack_post_init(a, &b.packer, e->payload, e->payload_bytes,
		st->profile_pic_media_id);
	actors__reply_later(self, &to, API_OK, NULL, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
}

/* The live side of a new post: its body is kept with the timeline push
 * (followers with a stream ask for it: on_live_want), or, for a post
 * that is not pushed, goes to the followers that are online. */
static void
post_created_live(api *a, user_state *st, uint64_t post_id, bool pushed)
{
	const ps_effect *e = init_effect(st, post_id);
	if (e == NULL)
		return;
	actors__body b;
	actors__body_init(&b);
	actors__pack_post_init(a, &b.packer, e->payload, e->payload_bytes,
		st->profile_pic_media_id);
	if (b.buffer.size > INBOX_STREAM_EVENT_BYTES_MAX) {
		actors__body_free(&b);
		return; /* too large for a stream event: the feed shows it */
	}
	if (pushed) {
		push *p = push_find(st, post_id);
		/* A copy of its own size: the packing buffer has 8 KiB
		 * (msgpack's initial sbuffer) for a body of a few hundred
		 * bytes, and the push, then the author's last
		 * USER_LIVE_BODIES_MAX posts, keep it long after. */
		unsigned char *body = NULL;
		if (p != NULL && p->kind == USER_PUSH_TIMELINE &&
			p->body == NULL && b.buffer.size > 0)
			body = malloc(b.buffer.size);
		if (body != NULL) {
			memcpy(body, b.buffer.data, b.buffer.size);
			p->body = body;
			p->body_length = (uint32_t)b.buffer.size;
		}
	} else if (st->online_followers.count > 0) {
		uint32_t n = st->online_followers.count;
		uint64_t *ids = malloc(n * sizeof *ids);
		if (ids != NULL) {
			n = inbox_presence_list(&st->online_followers, ids, n);
			(void)user__push_live(st, post_id, API_EVENT_FEED_POST,
				USER_LIVE_F_ONLINE_ONLY | USER_LIVE_F_PRESENCE,
				ids, n, b.buffer.data, b.buffer.size,
				st->last_lsn);
			free(ids);
		}
	}
	actors__body_free(&b);
}

static void
answer_durable(api *a, rt_actor *self, user_state *st,
	const actors__cookie *cookie, int code)
{
	if (user__engage_answer(a, self, st, cookie, code))
		return;
	actors__reply_to to = actors__cookie_reply_to(cookie);
	if (code != API_OK) {
		actors__reply_later(self, &to, code, "journal failed", NULL,
			0);
		return;
	}
	actors__body b;
	actors__body_init(&b);
	switch (cookie->event) {
	case USER_T_UPDATE:
		pack_profile(a, &b.packer, st, 0);
		break;
	case USER_T_FOLLOW:
		msgpack_pack_map(&b.packer, 1);
		actors__pack_key(&b.packer, "following");
		msgpack_pack_bool(&b.packer, cookie->extra != 0);
		break;
	case USER_T_POST_CREATE:
		actors__body_free(&b);
		answer_post_created(a, self, st, cookie);
		return;
	default:
		break;
	}
	actors__reply_later(self, &to, API_OK, NULL, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
}

static void
on_durable(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	ps_durable_notice n;
	ACTORS_ASSERT(m->size == sizeof n);
	memcpy(&n, m->payload, sizeof n);
	actors__cookie cookie;
	ACTORS_ASSERT(n.cookie_bytes == sizeof cookie);
	memcpy(&cookie, n.cookie, sizeof cookie);
	int code = actors__notice_code(n.status);
	if (code == API_OK) {
		if (a->store == NULL)
			st->durable_lsn = UINT64_MAX;
		else if (n.lsn > st->durable_lsn)
			st->durable_lsn = n.lsn;
		outbox_run(a, self, st, st->durable_lsn);
		pushes_run(a, self, st);
	}
	switch (cookie.event) {
	case ACTORS_T_EFFECT_CONFIRM: {
		ps_effect_header h = {cookie.from_kind, ACTORS_T_EFFECT_CONFIRM,
			cookie.from_id, cookie.extra, 0};
		if (code == API_OK)
			(void)ps_effect_confirm_send(self, &h);
		return;
	}
	case ACTORS_T_PUSH_ACK: {
		uint64_t key = cookie.extra;
		if (code == API_OK && a->store != NULL)
			(void)rt_send_copy(self,
				rt_addr_make(ACTORS_KIND_USER, cookie.from_id),
				ACTORS_T_PUSH_ACK, &key, sizeof key);
		return;
	}
	case USER_R_PUSH_DONE:
	case USER_R_STREAM_MARK:
		return;
	default:
		answer_durable(a, self, st, &cookie, code);
	}
}

/* ---- effects and pushes received ----------------------------------------- */

/* Applies an effect by journaling record (or, when it changes nothing,
 * a barrier) and confirms from the notice. */
static void
effect_apply(api *a, rt_actor *self, user_state *st,
	const ps_effect_header *h, uint32_t record, const void *payload,
	size_t length, bool changes)
{
	actors__cookie cookie = {h->source_kind, ACTORS_T_EFFECT_CONFIRM,
		h->source_id, 0, h->sequence};
	int rc;
	if (changes) {
		wire_writer w;
		wire_init(&w);
		wire_bytes(&w, payload, length);
		rc = user_write(a, self, st, record, &w, &cookie);
		wire_free(&w);
	} else {
		rc = actors__barrier(a, self, &cookie);
	}
	if (rc != 0)
		rt_log(a->rt, RT_LOG_WARN, "user",
			"effect not applied (will be re-sent): %d", rc);
}

/*
 * A follower-set effect from follower (on: follows, at: when). Effects of
 * one follower carry its outbox's sequence, which only grows, and each
 * says the whole state, so only one newer than the last taken from that
 * follower is applied; it is journaled with its sequence even when it
 * changes nothing here. An older one that comes again (the follower
 * re-sent it after a crash, the later one having been taken first) is
 * confirmed without being applied: applying it would put back a
 * follower who left, or drop one who came back.
 */
static void
follower_set_apply(api *a, rt_actor *self, user_state *st,
	const ps_effect_header *h, uint64_t follower, uint8_t on, uint64_t at)
{
	bool sequenced = h->source_kind == ACTORS_KIND_USER &&
		h->source_id == follower && h->sequence != 0;
	if (sequenced && h->sequence <= user__follower_seq(st, follower)) {
		effect_apply(a, self, st, h, USER_R_FOLLOWER, NULL, 0, false);
		return;
	}
	bool has = set_has(&st->followers, follower);
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, follower);
	wire_u8(&w, on);
	wire_u64(&w, at);
	wire_u64(&w, sequenced ? h->sequence : 0);
	if (w.failed) {
		wire_free(&w);
		return; /* re-sent later */
	}
	effect_apply(a, self, st, h, USER_R_FOLLOWER, w.bytes, w.length,
		sequenced || has != (on != 0));
	wire_free(&w);
}

static void
on_effect(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	ps_effect_header h;
	const void *payload;
	size_t length;
	if (ps_effect_parse(m->payload, m->size, &h, &payload, &length) != 0)
		return;
	wire_reader r;
	wire_reader_init(&r, payload, length);
	switch (m->type) {
	case USER_T_CREATE: {
		/* Payload is the USER_R_CREATED record itself. */
		effect_apply(a, self, st, &h, USER_R_CREATED, payload, length,
			!st->exists);
		return;
	}
	case USER_T_FOLLOWER_SET: {
		uint64_t follower = wire_get_u64(&r);
		uint8_t on = wire_get_u8(&r);
		/* When it happened; senders before it was kept send none. */
		uint64_t at = r.offset < r.length ? wire_get_u64(&r) : 0;
		if (!wire_done(&r) || follower == 0)
			return;
		follower_set_apply(a, self, st, &h, follower, on, at);
		return;
	}
	case USER_T_OWN_POST_REMOVE: {
		uint64_t post_id = wire_get_u64(&r);
		if (!wire_done(&r))
			return;
		uint32_t i = posts_lower_bound(st, post_id);
		bool has = i < st->posts_count &&
			st->posts[i].post_id == post_id;
		bool pushed = has && st->posts[i].pushed != 0;
		effect_apply(a, self, st, &h, USER_R_POST_REMOVED, payload,
			length, has);
		if (has) {
			actors__body b;
			actors__body_init(&b);
			msgpack_pack_map(&b.packer, 1);
			actors__pack_key(&b.packer, "post_id");
			actors__pack_id(&b.packer, post_id);
			user__post_event(a, self, st, post_id, pushed,
				API_EVENT_POST_DELETED, b.buffer.data,
				b.buffer.size);
			actors__body_free(&b);
		}
		return;
	}
	default:
		return;
	}
}

/*
 * A post into this home timeline, with durability on. The copy is
 * derived state: the author's post record is journaled before anyone
 * sees the post and its push is re-driven until every follower has
 * acknowledged, so the copy need not be journaled here (a record, a
 * durable notice and an acknowledgement per follower made a fan-out to
 * 100,000 cost as much as 100,000 writes). It is applied in memory, the
 * actor is marked dirty, and the acknowledgement goes once a checkpoint
 * holding a snapshot with it has committed (actors__ack_after_checkpoint);
 * a crash before that loses copy and acknowledgement together, so the
 * author sends it again and the ring's dedupe by post id keeps it once.
 */
static void
timeline_copy(api *a, rt_actor *self, user_state *st, uint64_t key,
	uint64_t author, uint64_t source, const void *rest, size_t rest_length)
{
	actors__ref ref = {key, author};
	int inserted = ring_insert(st, ref, a->cfg.timeline_entries_max);
	if (inserted < 0) {
		rt_log(a->rt, RT_LOG_WARN, "user",
			"push not applied (will be re-sent): out of memory");
		return;
	}
	bool changes = inserted > 0;
	if (changes)
		rt_mark_dirty(self);
	else if (ring_has(st, key))
		sim_sometimes("actors: re-sent timeline push deduplicated");
	if (actors__ack_after_checkpoint(a, self, source, key) != 0)
		rt_log(a->rt, RT_LOG_WARN, "user",
			"push acknowledgement dropped (will be re-sent)");
	if (!changes)
		return;
	if (st->stream != NULL) /* most followers of a fan-out have none */
		user__pushed_live(a, self, st, USER_T_TIMELINE_ADD, key,
			author, source, rest, rest_length);
	if (a->cfg.timeline_observer != NULL)
		a->cfg.timeline_observer(a->cfg.timeline_observer_arg, st->id,
			key);
}

static void
on_push(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	if (m->size < 24u)
		return;
	uint64_t key = wire_load_le64(m->payload);
	uint64_t author = wire_load_le64(m->payload + 8);
	uint64_t source = wire_load_le64(m->payload + 16);
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	r.offset = 24u;
	/* The rest: a timeline push's event data, or a story's fields. */
	const unsigned char *rest = m->payload + r.offset;
	size_t rest_length = m->size - r.offset;
	if (m->type == USER_T_TIMELINE_ADD && a->store != NULL) {
		timeline_copy(a, self, st, key, author, source, rest,
			rest_length);
		return;
	}
	actors__cookie cookie = {ACTORS_KIND_USER, ACTORS_T_PUSH_ACK, source,
		0, key};
	wire_writer w;
	wire_init(&w);
	bool changes;
	uint32_t record;
	if (m->type == USER_T_STORY_ADD) {
		uint64_t expires_at = wire_get_u64(&r);
		(void)wire_get_u64(&r); /* media */
		(void)wire_get_u64(&r); /* created */
		if (!wire_done(&r)) {
			wire_free(&w);
			return;
		}
		record = USER_R_STORY_REF;
		wire_u64(&w, author);
		wire_u64(&w, key);
		wire_u64(&w, expires_at);
		changes = user__story_ref_wants(st, author, key, expires_at);
	} else if (m->type == USER_T_TIMELINE_ADD) {
		changes = ring_wants(st, key, a->cfg.timeline_entries_max);
		if (!changes && ring_has(st, key))
			sim_sometimes("actors: re-sent timeline push deduplicated");
		record = USER_R_TIMELINE;
		wire_u64(&w, key);
		wire_u64(&w, author);
	} else {
		record = USER_R_PULL;
		wire_u64(&w, author);
		changes = rest_length == 0 && set_has(&st->following, author) &&
			!set_has(&st->pulls, author);
	}
	if (!changes && a->store == NULL) {
		wire_free(&w);
		return; /* nothing to apply and nobody waits for an ack */
	}
	int rc = changes ? user_write(a, self, st, record, &w, &cookie)
			 : actors__barrier(a, self, &cookie);
	wire_free(&w);
	if (rc != 0) {
		rt_log(a->rt, RT_LOG_WARN, "user",
			"push not applied (will be re-sent): %d", rc);
		return;
	}
	if (changes)
		user__pushed_live(a, self, st, m->type, key, author, source,
			rest, rest_length);
	if (changes && m->type == USER_T_TIMELINE_ADD &&
		a->cfg.timeline_observer != NULL)
		a->cfg.timeline_observer(a->cfg.timeline_observer_arg, st->id,
			key);
}

/* The stream event data this author holds for its timeline push of key
 * (the push's, or kept after it ended), or NULL. */
static const unsigned char *
live_body_find(const user_state *st, uint64_t key, uint32_t *length)
{
	for (uint32_t i = 0; i < st->pushes_count; i++) {
		const push *p = &st->pushes[i];
		if (p->key == key && p->kind == USER_PUSH_TIMELINE) {
			*length = p->body_length;
			return p->body;
		}
	}
	if (st->live_bodies == NULL)
		return NULL;
	for (uint32_t i = 0; i < USER_LIVE_BODIES_MAX; i++) {
		const live_body *e = &st->live_bodies->entries[i];
		if (e->key == key && e->body != NULL) {
			*length = e->body_length;
			return e->body;
		}
	}
	return NULL;
}

/* USER_T_LIVE_WANT: u64 post id, from a follower with a stream that put
 * this author's pushed post into its timeline. The event's data goes to
 * that follower alone, as a USER_T_LIVE taken only while the post is in
 * its timeline; when this author no longer holds the data (past
 * USER_LIVE_BODIES_MAX newer posts, passivated, or a push re-sent after
 * a crash) the post's reference goes instead, as such a push's did. */
static void
on_live_want(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	if (m->size != 8u || m->from.kind != ACTORS_KIND_USER ||
		m->from.id == 0 || !st->exists)
		return;
	uint64_t key = wire_load_le64(m->payload);
	uint32_t length = 0;
	const unsigned char *data = live_body_find(st, key, &length);
	actors__body b;
	actors__body_init(&b);
	if (data == NULL || length == 0) {
		user__pack_post_ref(&b.packer, key, st->id);
		data = (const unsigned char *)b.buffer.data;
		length = (uint32_t)b.buffer.size;
	}
	rt_message *out = rt_message_alloc(a->rt, USER_T_LIVE, 18u + length);
	if (out != NULL) {
		wire_writer w = {out->payload, 0, out->size, false};
		wire_u64(&w, st->id);
		wire_u8(&w, API_EVENT_FEED_POST);
		wire_u8(&w, USER_LIVE_F_MUST_HAVE);
		wire_u64(&w, key);
		wire_bytes(&w, data, length);
		ACTORS_ASSERT(!w.failed && w.length == out->size);
		if (rt_send(self, m->from, out) != 0)
			rt_log(a->rt, RT_LOG_WARN, "user",
				"stream event for a follower dropped");
	}
	actors__body_free(&b);
}

static void
on_interaction(api *a, user_state *st, rt_actor *self, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t author = wire_get_u64(&r);
	double weight = wire_get_f64(&r);
	if (!wire_done(&r) || author == st->id || !(weight > 0.0))
		return;
	uint64_t now = rt_wall_ms(a->rt);
	affinity *slot = NULL;
	/* The author's entry first, by id alone: the decayed scores (an
	 * exp2 each) are needed only to pick an entry to replace. */
	for (uint32_t i = 0; i < st->affinities_count && slot == NULL; i++)
		if (st->affinities[i].author_id == author)
			slot = &st->affinities[i];
	double lowest = INFINITY;
	for (uint32_t i = 0; slot == NULL &&
		st->affinities_count == USER_AFFINITY_ENTRIES_MAX &&
		i < st->affinities_count; i++) {
		affinity *f = &st->affinities[i];
		double v = actors__affinity_decay(f->score,
			now > f->at_ms ? now - f->at_ms : 0);
		if (v < lowest) {
			lowest = v;
			slot = f;
		}
	}
	if (slot == NULL || (slot->author_id != author &&
		st->affinities_count < USER_AFFINITY_ENTRIES_MAX)) {
		slot = &st->affinities[st->affinities_count++];
		memset(slot, 0, sizeof *slot);
	}
	if (slot->author_id != author) {
		slot->author_id = author;
		slot->score = 0.0;
		slot->at_ms = now;
	}
	slot->score = actors__affinity_decay(slot->score,
			      now > slot->at_ms ? now - slot->at_ms : 0) +
		weight;
	slot->at_ms = now;
	/* Soft state: kept by the next snapshot, not journaled. */
	rt_mark_dirty(self);
}

/* ---- dispatch ------------------------------------------------------------- */

static bool
needs_account(uint32_t type)
{
	switch (type) {
	case USER_T_PROFILE:
	case USER_T_SUMMARY:
	case USER_T_UPDATE:
	case USER_T_CREDENTIALS:
	case USER_T_FOLLOW:
	case USER_T_FOLLOW_LIST:
	case USER_T_POST_CREATE:
	case USER_T_OWN_POSTS:
	case USER_T_FEED_CANDIDATES:
	case USER_T_RECENT:
	case USER_T_LIKE:
	case USER_T_COMMENT:
	case USER_T_NOTIFICATIONS:
	case USER_T_NOTIFY_READ:
	case USER_T_STORY_POST:
	case USER_T_STORY_FEED:
	case USER_T_STORIES_ACTIVE:
	case USER_T_STORY_SEEN:
	case USER_T_STREAM:
	case USER_T_IDEM_BEGIN:
	case USER_T_IDEM_FINISH:
		return true;
	default:
		return false;
	}
}

static void
user_on_message(rt_actor *self, void *state, const rt_message *m)
{
	user_state *st = state;
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
	if (st->id == 0)
		st->id = rt_self(self).id;
	if (needs_account(m->type) && !st->exists) {
		reply_code(self, m, API_ENOTFOUND, "no such user");
		/* An address nobody created need not stay in memory. */
		if (st->followers.count == 0 && st->pushes_count == 0)
			rt_request_passivate(self);
		return;
	}
	switch (m->type) {
	case ACTORS_T_DURABLE:
		on_durable(a, self, st, m);
		break;
	case ACTORS_T_EFFECT_CONFIRM: {
		ps_effect_confirm c;
		if (m->size == sizeof c) {
			memcpy(&c, m->payload, sizeof c);
			(void)ps_outbox_confirm(&st->outbox, c.sequence);
			rt_mark_dirty(self);
		}
		break;
	}
	case ACTORS_T_PUSH_ACK:
		on_push_ack(a, self, st, m);
		break;
	case ACTORS_T_PUSH_ACKS:
		on_push_acks(a, self, st, m);
		break;
	case ACTORS_T_ACK_KICK:
		actors__acks_kick(a, self);
		break;
	case ACTORS_T_REDRIVE:
		redrive(a, self, st);
		break;
	case ACTORS_T_RESEND:
		st->resend_armed = false;
		outbox_run(a, self, st, st->durable_lsn);
		pushes_run(a, self, st);
		break;
	case USER_T_CREATE:
	case USER_T_FOLLOWER_SET:
	case USER_T_OWN_POST_REMOVE:
		on_effect(a, self, st, m);
		break;
	case USER_T_TIMELINE_ADD:
	case USER_T_PULL_ON:
	case USER_T_STORY_ADD:
		on_push(a, self, st, m);
		break;
	case USER_T_INTERACTION:
		on_interaction(a, st, self, m);
		break;
	case USER_T_LIVE_WANT:
		on_live_want(a, self, st, m);
		break;
	case USER_T_PROFILE:
		on_profile(a, self, st, m, false);
		break;
	case USER_T_SUMMARY:
		on_profile(a, self, st, m, true);
		break;
	case USER_T_UPDATE:
		on_update(a, self, st, m);
		break;
	case USER_T_CREDENTIALS:
		on_credentials(self, st, m);
		break;
	case USER_T_FOLLOW:
		on_follow(a, self, st, m);
		break;
	case USER_T_FOLLOW_LIST:
		on_follow_list(self, st, m);
		break;
	case USER_T_POST_CREATE:
		on_post_create(a, self, st, m);
		break;
	case USER_T_OWN_POSTS:
		on_own_posts(self, st, m);
		break;
	case USER_T_FEED_CANDIDATES:
		on_feed_candidates(a, self, st, m);
		break;
	case USER_T_RECENT:
		on_recent(self, st, m);
		break;
	default:
		if (user__engage_on_message(a, self, st, m))
			break;
		if (m->correlation != 0 && !(m->flags & RT_MESSAGE_F_REPLY))
			reply_code(self, m, API_EINVALID, "unknown request");
		break;
	}
}

static int
user_on_activate(rt_actor *self, void *state, bool fresh)
{
	user_state *st = state;
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
	st->id = rt_self(self).id;
	user__engage_on_activate(a, self, st, fresh);
	if (fresh)
		return 0;
	ring_trim(st, a->cfg.timeline_entries_max);
	/* Everything loaded is durable: re-drive what was owed. */
	st->durable_lsn = a->store == NULL ? UINT64_MAX
		: ps_journal_durable_lsn(ps_node_journal(a->store));
	for (uint32_t i = 0; i < st->pushes_count; i++) {
		push *p = &st->pushes[i];
		p->lsn = 0;
		p->sent = 0;
		p->acked = 0;
		p->next_id = 0;
		p->done_sending = false;
		push_owed_clear(p);
	}
	ps_outbox_reset_sent(&st->outbox);
	outbox_run(a, self, st, UINT64_MAX);
	pushes_run(a, self, st);
	return 0;
}

bool
actors__user_owes(const void *state)
{
	const user_state *st = state;
	return st->outbox.count > 0 || st->pushes_count > 0;
}

static void
user_on_passivate(rt_actor *self, void *state)
{
	user_state *st = state;
	/* The snapshot about to be written is this activation's last: the
	 * stream it holds is exact. */
	st->passivating = true;
	actors__passivate_owing(actors__api_of(rt_actor_runtime(self)), self,
		actors__user_owes(st));
}

static void
user_free_state(void *state)
{
	user_state *st = state;
	free(st->email);
	free(st->bio);
	free(st->password_hash);
	set_free(&st->followers);
	set_free(&st->following);
	set_free(&st->pulls);
	free(st->posts);
	free(st->ring);
	for (uint32_t i = 0; i < st->pushes_count; i++) {
		free(st->pushes[i].targets);
		free(st->pushes[i].body);
		free(st->pushes[i].owed);
		free(st->pushes[i].owed_paid);
	}
	free(st->pushes);
	live_bodies_free(st);
	user__engage_free(st);
	ps_outbox_free(&st->outbox);
	memset(st, 0, sizeof *st);
}

/* ---- snapshots (msgpack) ---------------------------------------------------
 * An array: [version, id, exists, has_unpushed, username, email, bio,
 * hash, pic, followers(bin), following(bin), pulls(bin), posts(bin),
 * timeline(bin), affinities(bin), pushes(bin), outbox(bin)]; the bins are
 * little-endian arrays of fixed records. */

#define USER_SNAPSHOT_VERSION 2u
#define USER_SNAPSHOT_FIELDS 18u
/* Version 1 had no engagement field and 3 u64 per push. */
#define USER_SNAPSHOT_V1_FIELDS 17u

static int
buffer_write(void *data, const char *bytes, size_t length)
{
	return rt_buffer_append(data, bytes, length) == 0 ? 0 : -1;
}

static void
pack_bin(msgpack_packer *p, const void *bytes, size_t length)
{
	msgpack_pack_bin(p, length);
	msgpack_pack_bin_body(p, bytes, length);
}

static void
pack_u64s(msgpack_packer *p, const uint64_t *v, size_t count)
{
	/* Host order is little-endian on every target we build for. */
	static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
		"snapshot bins are little-endian");
	pack_bin(p, v, count * sizeof *v);
}

static int
user_encode_state(const void *state, rt_buffer *out)
{
	const user_state *st = state;
	msgpack_packer p;
	msgpack_packer_init(&p, out, buffer_write);
	msgpack_pack_array(&p, USER_SNAPSHOT_FIELDS);
	msgpack_pack_uint32(&p, USER_SNAPSHOT_VERSION);
	msgpack_pack_uint64(&p, st->id);
	msgpack_pack_bool(&p, st->exists);
	msgpack_pack_bool(&p, st->has_unpushed);
	actors__pack_str(&p, st->username);
	actors__pack_str(&p, st->email);
	actors__pack_str(&p, st->bio);
	actors__pack_str(&p, st->password_hash);
	msgpack_pack_uint64(&p, st->profile_pic_media_id);
	pack_u64s(&p, st->followers.ids, st->followers.count);
	pack_u64s(&p, st->following.ids, st->following.count);
	pack_u64s(&p, st->pulls.ids, st->pulls.count);
	pack_bin(&p, st->posts, st->posts_count * sizeof *st->posts);
	msgpack_pack_bin(&p, st->ring_count * sizeof(actors__ref));
	for (uint32_t i = 0; i < st->ring_count; i++)
		msgpack_pack_bin_body(&p, ring_at(st, i), sizeof(actors__ref));
	pack_bin(&p, st->affinities,
		st->affinities_count * sizeof *st->affinities);
	/* Live pushes are volatile: not stored. */
	uint32_t durable = 0;
	for (uint32_t i = 0; i < st->pushes_count; i++)
		durable += st->pushes[i].kind != USER_PUSH_LIVE;
	msgpack_pack_bin(&p, durable * 4 * sizeof(uint64_t));
	for (uint32_t i = 0; i < st->pushes_count; i++) {
		if (st->pushes[i].kind == USER_PUSH_LIVE)
			continue;
		uint64_t v[4] = {st->pushes[i].key, st->pushes[i].author_id,
			st->pushes[i].target, st->pushes[i].kind};
		msgpack_pack_bin_body(&p, v, sizeof v);
	}
	size_t n = ps_outbox_encoded_bytes(&st->outbox);
	unsigned char *bytes = malloc(n ? n : 1);
	if (bytes == NULL)
		return RT_ENOMEM;
	ps_outbox_encode(&st->outbox, bytes);
	pack_bin(&p, bytes, n);
	free(bytes);
	return user__engage_encode(st, &p) == 0 ? 0 : RT_ENOMEM;
}

/* Copies a bin of fixed records into a fresh array. */
static int
bin_records(const msgpack_object *o, size_t record, void **out,
	uint32_t *count)
{
	*out = NULL;
	*count = 0;
	if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size % record != 0)
		return RT_ECORRUPT;
	if (o->via.bin.size == 0)
		return 0;
	*out = malloc(o->via.bin.size);
	if (*out == NULL)
		return RT_ENOMEM;
	memcpy(*out, o->via.bin.ptr, o->via.bin.size);
	*count = (uint32_t)(o->via.bin.size / record);
	return 0;
}

static char *
obj_strdup(const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return NULL;
	char *s = malloc(o->via.str.size + 1);
	if (s != NULL) {
		memcpy(s, o->via.str.ptr, o->via.str.size);
		s[o->via.str.size] = '\0';
	}
	return s;
}

static int
decode_sets(user_state *st, const msgpack_object *f)
{
	id_set *sets[3] = {&st->followers, &st->following, &st->pulls};
	for (int i = 0; i < 3; i++) {
		void *ids;
		int rc = bin_records(&f[i], sizeof(uint64_t), &ids,
			&sets[i]->count);
		if (rc != 0)
			return rc;
		sets[i]->ids = ids;
		sets[i]->capacity = sets[i]->count;
	}
	void *v;
	int rc = bin_records(&f[3], sizeof(own_post), &v, &st->posts_count);
	if (rc != 0)
		return rc;
	st->posts = v;
	st->posts_capacity = st->posts_count;
	rc = bin_records(&f[4], sizeof(actors__ref), &v, &st->ring_count);
	if (rc != 0)
		return rc;
	st->ring = v;
	st->ring_capacity = st->ring_count;
	st->ring_head = 0;
	return 0;
}

static int
decode_rest(user_state *st, const msgpack_object *f, uint32_t version)
{
	void *v;
	uint32_t n;
	int rc = bin_records(&f[0], sizeof(affinity), &v, &n);
	if (rc != 0 || n > USER_AFFINITY_ENTRIES_MAX) {
		free(v);
		return rc != 0 ? rc : RT_ECORRUPT;
	}
	if (n > 0)
		memcpy(st->affinities, v, n * sizeof(affinity));
	st->affinities_count = n;
	free(v);
	/* Pushes: key, author, target (and, from version 2, the kind). */
	uint32_t fields = version == 1 ? 3u : 4u;
	rc = bin_records(&f[1], fields * sizeof(uint64_t), &v, &n);
	if (rc != 0)
		return rc;
	const uint64_t *keys = v;
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		const uint64_t *k = &keys[fields * i];
		user_push_kind kind = fields == 4 ? (user_push_kind)k[3]
			: (k[0] & USER_PUSH_PULL_BIT) ? USER_PUSH_PULL
						    : USER_PUSH_TIMELINE;
		if (kind > USER_PUSH_STORY) {
			rc = RT_ECORRUPT;
			break;
		}
		rc = push_add(st, k[0], k[2], 0, kind) < 0 ? RT_ENOMEM : 0;
		if (rc == 0)
			st->pushes[st->pushes_count - 1].author_id = k[1];
	}
	free(v);
	if (rc != 0)
		return rc;
	if (f[2].type != MSGPACK_OBJECT_BIN)
		return RT_ECORRUPT;
	size_t consumed;
	if (ps_outbox_decode(&st->outbox, f[2].via.bin.ptr, f[2].via.bin.size,
		    &consumed) != 0 ||
		consumed != f[2].via.bin.size)
		return RT_ECORRUPT;
	return 0;
}

static int
decode_fields(user_state *st, const msgpack_object *f, uint32_t fields)
{
	if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		!((f[0].via.u64 == USER_SNAPSHOT_VERSION &&
			  fields == USER_SNAPSHOT_FIELDS) ||
			(f[0].via.u64 == 1 && fields == USER_SNAPSHOT_V1_FIELDS)))
		return RT_ECORRUPT;
	uint32_t version = (uint32_t)f[0].via.u64;
	if (f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		f[2].type != MSGPACK_OBJECT_BOOLEAN ||
		f[3].type != MSGPACK_OBJECT_BOOLEAN ||
		f[8].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return RT_ECORRUPT;
	st->id = f[1].via.u64;
	st->exists = f[2].via.boolean;
	st->has_unpushed = f[3].via.boolean;
	if (f[4].type == MSGPACK_OBJECT_STR &&
		f[4].via.str.size <= API_USERNAME_BYTES_MAX) {
		memcpy(st->username, f[4].via.str.ptr, f[4].via.str.size);
		st->username[f[4].via.str.size] = '\0';
	}
	st->email = obj_strdup(&f[5]);
	st->bio = obj_strdup(&f[6]);
	st->password_hash = obj_strdup(&f[7]);
	st->profile_pic_media_id = f[8].via.u64;
	int rc = decode_sets(st, &f[9]);
	if (rc != 0)
		return rc;
	rc = decode_rest(st, &f[14], version);
	if (rc != 0 || version == 1)
		return rc;
	return user__engage_decode(st, &f[17]);
}

static int
user_decode_state(void *state, const void *bytes, size_t length)
{
	user_state *st = state;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = RT_ECORRUPT;
	/* engage_unpack checks the announced sizes first: a few bytes
	 * announcing a huge map made msgpack-c reserve gigabytes. */
	if (engage_unpack(bytes, length, &u) == 0 &&
		u.data.type == MSGPACK_OBJECT_ARRAY &&
		(u.data.via.array.size == USER_SNAPSHOT_FIELDS ||
			u.data.via.array.size == USER_SNAPSHOT_V1_FIELDS))
		rc = decode_fields(st, u.data.via.array.ptr,
			u.data.via.array.size);
	msgpack_unpacked_destroy(&u);
	if (rc != 0)
		user_free_state(st);
	return rc;
}

void
actors__user_ops(rt_actor_ops *ops)
{
	memset(ops, 0, sizeof *ops);
	ops->name = "user";
	ops->state_size = sizeof(user_state);
	ops->mailbox_messages_max = USER_MAILBOX_MESSAGES_MAX;
	ops->on_activate = user_on_activate;
	ops->on_message = user_on_message;
	ops->on_passivate = user_on_passivate;
	ops->encode_state = user_encode_state;
	ops->decode_state = user_decode_state;
	ops->apply_record = user_apply_record;
	ops->free_state = user_free_state;
}
