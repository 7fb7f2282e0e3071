/*
 * actors/stories.c — a user's active stories, a viewer's seen marks and
 * the story trays of GET /v1/stories.
 *
 * Invariants:
 *   - stories are held in ascending story_id, at most STORIES_ACTIVE_MAX,
 *     each with created_at < expires_at <= created_at + 24 h;
 *   - a story is visible while now < expires_at and never after, whether
 *     or not it has been collected yet;
 *   - seen marks are sorted by story id, at most STORIES_SEEN_MAX, each
 *     kept 24 h after it was made: longer than the story it marks lives,
 *     so a story marked seen stays seen while it is visible.
 *
 * What it deliberately does not do: arm timers (the owning actor arms
 * one for stories_next_expiry_ms), fetch followees' stories (the viewer's
 * actor asks each author for stories_encode_active and decodes it), or
 * know media status (a callback packs the media value).
 */
#include "actors/engage.h"

#include <stdlib.h>

/* ---- a user's stories --------------------------------------------------- */

void
stories_init(stories *s)
{
	ACTORS_ASSERT(s != NULL);
	s->count = 0;
}

bool
stories_visible(const stories_item *item, uint64_t now_ms)
{
	ACTORS_ASSERT(item != NULL);
#ifdef FLOCK_BUG_STORY_TTL_IGNORES_CLOCK
	/* PLANTED BUG (make sim-zoo): a story never expires. */
	(void)now_ms;
	return true;
#endif
	return now_ms < item->expires_at_ms;
}

/* Index of story_id, or of where it would go (*found false). */
static uint32_t
stories_find(const stories *s, uint64_t story_id, bool *found)
{
	uint32_t lo = 0, hi = s->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->items[mid].story_id < story_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < s->count && s->items[lo].story_id == story_id;
	return lo;
}

uint32_t
stories_collect_expired(stories *s, uint64_t now_ms)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(s->count <= STORIES_ACTIVE_MAX);
	uint32_t kept = 0;
	for (uint32_t i = 0; i < s->count; i++) {
		if (stories_visible(&s->items[i], now_ms))
			s->items[kept++] = s->items[i];
	}
	uint32_t removed = s->count - kept;
	s->count = kept;
	return removed;
}

int
stories_add(stories *s, uint64_t story_id, uint64_t media_id,
	uint32_t expires_in_s, uint64_t now_ms, stories_item *out)
{
	ACTORS_ASSERT(s != NULL);
	if (story_id == 0 || media_id == 0)
		return API_EINVALID;
	if (expires_in_s > API_STORY_SECONDS_MAX)
		return API_EINVALID;
	if (expires_in_s == 0)
		expires_in_s = API_STORY_SECONDS_MAX;
	bool found;
	uint32_t at = stories_find(s, story_id, &found);
	if (found) {
		if (out != NULL)
			*out = s->items[at];
		return 0;
	}
	if (s->count == STORIES_ACTIVE_MAX) {
		stories_collect_expired(s, now_ms);
		if (s->count == STORIES_ACTIVE_MAX)
			return API_ERATELIMITED;
		at = stories_find(s, story_id, &found);
	}
	stories_item item = {
		.story_id = story_id,
		.media_id = media_id,
		.created_at_ms = now_ms,
		.expires_at_ms = now_ms + (uint64_t)expires_in_s *
			ENGAGE_SECOND_MS,
	};
	memmove(&s->items[at + 1], &s->items[at],
		(s->count - at) * sizeof s->items[0]);
	s->items[at] = item;
	s->count++;
	ACTORS_ASSERT(s->count <= STORIES_ACTIVE_MAX);
	ACTORS_ASSERT(item.expires_at_ms - item.created_at_ms <=
		STORIES_LIFETIME_MS_MAX);
	if (out != NULL)
		*out = item;
	return 0;
}

int
stories_remove(stories *s, uint64_t story_id)
{
	ACTORS_ASSERT(s != NULL);
	bool found;
	uint32_t at = stories_find(s, story_id, &found);
	if (!found)
		return API_ENOTFOUND;
	memmove(&s->items[at], &s->items[at + 1],
		(s->count - at - 1) * sizeof s->items[0]);
	s->count--;
	return 0;
}

int
stories_get(const stories *s, uint64_t story_id, uint64_t now_ms,
	stories_item *out)
{
	ACTORS_ASSERT(s != NULL);
	bool found;
	uint32_t at = stories_find(s, story_id, &found);
	if (!found)
		return API_ENOTFOUND;
	if (out != NULL)
		*out = s->items[at];
	return stories_visible(&s->items[at], now_ms) ? 0 : API_EGONE;
}

uint64_t
stories_next_expiry_ms(const stories *s)
{
	ACTORS_ASSERT(s != NULL);
	uint64_t next = UINT64_MAX;
	for (uint32_t i = 0; i < s->count; i++) {
		if (s->items[i].expires_at_ms < next)
			next = s->items[i].expires_at_ms;
	}
	return next;
}

uint32_t
stories_active_count(const stories *s, uint64_t now_ms)
{
	ACTORS_ASSERT(s != NULL);
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->count; i++)
		n += stories_visible(&s->items[i], now_ms);
	return n;
}

/* ---- snapshot ----------------------------------------------------------- */

/* Writes every item, or only those visible at now_ms. */
static int
stories_encode_at(const stories *s, bool only_visible, uint64_t now_ms,
	msgpack_packer *pk)
{
	uint32_t n = only_visible ? stories_active_count(s, now_ms) : s->count;
	int rc = msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint32(pk, STORIES_SNAPSHOT_VERSION);
	rc |= msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < s->count; i++) {
		const stories_item *it = &s->items[i];
		if (only_visible && !stories_visible(it, now_ms))
			continue;
		rc |= msgpack_pack_array(pk, 4);
		rc |= msgpack_pack_uint64(pk, it->story_id);
		rc |= msgpack_pack_uint64(pk, it->media_id);
		rc |= msgpack_pack_uint64(pk, it->created_at_ms);
		rc |= msgpack_pack_uint64(pk, it->expires_at_ms);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
stories_encode(const stories *s, msgpack_packer *pk)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(pk != NULL);
	return stories_encode_at(s, false, 0, pk);
}

int
stories_encode_active(const stories *s, uint64_t now_ms, msgpack_packer *pk)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(pk != NULL);
	return stories_encode_at(s, true, now_ms, pk);
}

static bool
stories_item_decode(const msgpack_object *obj, stories_item *it)
{
	const msgpack_object *f = engage_get_tuple(obj, 4);
	if (f == NULL)
		return false;
	if (!engage_get_u64(&f[0], &it->story_id) ||
		!engage_get_u64(&f[1], &it->media_id) ||
		!engage_get_u64(&f[2], &it->created_at_ms) ||
		!engage_get_u64(&f[3], &it->expires_at_ms))
		return false;
	if (it->story_id == 0 || it->media_id == 0)
		return false;
	if (it->expires_at_ms <= it->created_at_ms)
		return false;
	return it->expires_at_ms - it->created_at_ms <= STORIES_LIFETIME_MS_MAX;
}

int
stories_decode(stories *s, const msgpack_object *obj)
{
	ACTORS_ASSERT(s != NULL);
	ACTORS_ASSERT(obj != NULL);
	s->count = 0;
	const msgpack_object *f = engage_get_tuple(obj, 2);
	uint64_t version;
	const msgpack_object *items;
	uint32_t n;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != STORIES_SNAPSHOT_VERSION ||
		!engage_get_array(&f[1], STORIES_ACTIVE_MAX, &items, &n))
		return API_EINVALID;
	for (uint32_t i = 0; i < n; i++) {
		stories_item it;
		if (!stories_item_decode(&items[i], &it))
			goto fail;
		if (i > 0 && it.story_id <= s->items[i - 1].story_id)
			goto fail;
		s->items[i] = it;
	}
	s->count = n;
	return 0;
fail:
	s->count = 0;
	return API_EINVALID;
}

/* ---- seen marks --------------------------------------------------------- */

void
stories_seen_init(stories_seen *v)
{
	ACTORS_ASSERT(v != NULL);
	v->count = 0;
	v->capacity = 0;
	v->marks = NULL;
}

void
stories_seen_free(stories_seen *v)
{
	ACTORS_ASSERT(v != NULL);
	free(v->marks);
	stories_seen_init(v);
}

static uint32_t
seen_find(const stories_seen *v, uint64_t story_id, bool *found)
{
	uint32_t lo = 0, hi = v->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (v->marks[mid].story_id < story_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < v->count && v->marks[lo].story_id == story_id;
	return lo;
}

bool
stories_seen_has(const stories_seen *v, uint64_t story_id)
{
	ACTORS_ASSERT(v != NULL);
	bool found;
	seen_find(v, story_id, &found);
	return found;
}

uint32_t
stories_seen_collect(stories_seen *v, uint64_t now_ms)
{
	ACTORS_ASSERT(v != NULL);
	uint32_t kept = 0;
	for (uint32_t i = 0; i < v->count; i++) {
		/* A mark made at t outlives its story (created <= t, so it
		 * expires <= t + 24 h): keep it until then. */
		if (v->marks[i].seen_at_ms + STORIES_LIFETIME_MS_MAX > now_ms)
			v->marks[kept++] = v->marks[i];
	}
	uint32_t removed = v->count - kept;
	v->count = kept;
	return removed;
}

/* Makes room for one more mark: collect, then drop the oldest. */
static int
seen_make_room(stories_seen *v, uint64_t now_ms)
{
	if (v->count < v->capacity)
		return 0;
	if (v->capacity < STORIES_SEEN_MAX) {
		uint32_t capacity = v->capacity == 0 ? 16u : v->capacity * 2u;
		if (capacity > STORIES_SEEN_MAX)
			capacity = STORIES_SEEN_MAX;
		stories_seen_mark *marks =
			realloc(v->marks, capacity * sizeof *marks);
		if (marks == NULL)
			return API_EUNAVAILABLE;
		v->marks = marks;
		v->capacity = capacity;
		return 0;
	}
	if (stories_seen_collect(v, now_ms) > 0)
		return 0;
	uint32_t oldest = 0;
	for (uint32_t i = 1; i < v->count; i++) {
		if (v->marks[i].seen_at_ms < v->marks[oldest].seen_at_ms)
			oldest = i;
	}
	memmove(&v->marks[oldest], &v->marks[oldest + 1],
		(v->count - oldest - 1) * sizeof v->marks[0]);
	v->count--;
	return 0;
}

int
stories_seen_mark_story(stories_seen *v, uint64_t story_id, uint64_t now_ms)
{
	ACTORS_ASSERT(v != NULL);
	if (story_id == 0)
		return API_EINVALID;
	bool found;
	seen_find(v, story_id, &found);
	if (found)
		return 0;
	int rc = seen_make_room(v, now_ms);
	if (rc != 0)
		return rc;
	uint32_t at = seen_find(v, story_id, &found);
	ACTORS_ASSERT(!found);
	memmove(&v->marks[at + 1], &v->marks[at],
		(v->count - at) * sizeof v->marks[0]);
	v->marks[at].story_id = story_id;
	v->marks[at].seen_at_ms = now_ms;
	v->count++;
	ACTORS_ASSERT(v->count <= v->capacity);
	ACTORS_ASSERT(v->capacity <= STORIES_SEEN_MAX);
	return 0;
}

int
stories_seen_encode(const stories_seen *v, msgpack_packer *pk)
{
	ACTORS_ASSERT(v != NULL);
	ACTORS_ASSERT(pk != NULL);
	int rc = msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint32(pk, STORIES_SNAPSHOT_VERSION);
	rc |= msgpack_pack_array(pk, v->count);
	for (uint32_t i = 0; i < v->count; i++) {
		rc |= msgpack_pack_array(pk, 2);
		rc |= msgpack_pack_uint64(pk, v->marks[i].story_id);
		rc |= msgpack_pack_uint64(pk, v->marks[i].seen_at_ms);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
stories_seen_decode(stories_seen *v, const msgpack_object *obj)
{
	ACTORS_ASSERT(v != NULL);
	ACTORS_ASSERT(obj != NULL);
	v->count = 0;
	const msgpack_object *f = engage_get_tuple(obj, 2);
	uint64_t version;
	const msgpack_object *marks;
	uint32_t n;
	if (f == NULL || !engage_get_u64(&f[0], &version) ||
		version != STORIES_SNAPSHOT_VERSION ||
		!engage_get_array(&f[1], STORIES_SEEN_MAX, &marks, &n))
		return API_EINVALID;
	if (n > v->capacity) {
		stories_seen_mark *grown =
			realloc(v->marks, n * sizeof *grown);
		if (grown == NULL)
			return API_EUNAVAILABLE;
		v->marks = grown;
		v->capacity = n;
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *m = engage_get_tuple(&marks[i], 2);
		stories_seen_mark mark;
		if (m == NULL || !engage_get_u64(&m[0], &mark.story_id) ||
			!engage_get_u64(&m[1], &mark.seen_at_ms) ||
			mark.story_id == 0)
			goto fail;
		if (i > 0 && mark.story_id <= v->marks[i - 1].story_id)
			goto fail;
		v->marks[i] = mark;
	}
	v->count = n;
	return 0;
fail:
	v->count = 0;
	return API_EINVALID;
}

/* ---- trays -------------------------------------------------------------- */

/* What ordering needs to know of one author's tray. */
typedef struct tray_order {
	uint32_t author;        /* index into authors */
	bool unseen;            /* some visible story not seen */
	uint64_t newest_id;     /* newest visible story id */
	uint64_t user_id;
} tray_order;

static int
tray_compare(const void *a, const void *b)
{
	const tray_order *x = a, *y = b;
	if (x->unseen != y->unseen)
		return x->unseen ? -1 : 1;
	if (x->newest_id != y->newest_id)
		return x->newest_id > y->newest_id ? -1 : 1;
	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	return 0;
}

static int
pack_media_default(msgpack_packer *pk, uint64_t media_id)
{
	int rc = msgpack_pack_map(pk, 1);
	actors__pack_key(pk, "media_id");
	actors__pack_id(pk, media_id);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

static int
pack_tray_user(msgpack_packer *pk, const stories_author *a)
{
	int rc = msgpack_pack_map(pk, 3);
	actors__pack_key(pk, "user_id");
	actors__pack_id(pk, a->user_id);
	actors__pack_key(pk, "username");
	actors__pack_str(pk, a->username);
	actors__pack_key(pk, "profile_pic_url");
	actors__pack_str(pk, a->profile_pic_url);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

/* One tray: {user, items} with the visible items newest first. */
static int
pack_tray(msgpack_packer *pk, const stories_author *a,
	const stories_seen *seen, uint64_t now_ms,
	stories_media_pack_callback media_pack, void *arg)
{
	int rc = msgpack_pack_map(pk, 2);
	actors__pack_key(pk, "user");
	rc |= pack_tray_user(pk, a);
	actors__pack_key(pk, "items");
	rc |= msgpack_pack_array(pk, stories_active_count(a->active, now_ms));
	for (uint32_t i = a->active->count; i-- > 0;) {
		const stories_item *it = &a->active->items[i];
		if (!stories_visible(it, now_ms))
			continue;
		rc |= msgpack_pack_map(pk, 5);
		actors__pack_key(pk, "story_id");
		actors__pack_id(pk, it->story_id);
		actors__pack_key(pk, "media");
		rc |= media_pack != NULL ? media_pack(arg, pk, it->media_id)
					 : pack_media_default(pk, it->media_id);
		actors__pack_key(pk, "created_at");
		actors__pack_time(pk, it->created_at_ms);
		actors__pack_key(pk, "expires_at");
		actors__pack_time(pk, it->expires_at_ms);
		actors__pack_key(pk, "seen");
		rc |= stories_seen_has(seen, it->story_id)
			? msgpack_pack_true(pk)
			: msgpack_pack_false(pk);
	}
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
stories_trays_pack(const stories_author *authors, uint32_t authors_count,
	const stories_seen *seen, uint64_t now_ms,
	stories_media_pack_callback media_pack, void *arg, msgpack_packer *pk)
{
	ACTORS_ASSERT(authors != NULL || authors_count == 0);
	ACTORS_ASSERT(seen != NULL);
	ACTORS_ASSERT(pk != NULL);
	if (authors_count > STORIES_TRAY_AUTHORS_MAX)
		return API_EINVALID;
	tray_order *order = malloc((authors_count + 1u) * sizeof *order);
	if (order == NULL)
		return API_EUNAVAILABLE;
	uint32_t trays = 0;
	for (uint32_t a = 0; a < authors_count; a++) {
		const stories *s = authors[a].active;
		ACTORS_ASSERT(s != NULL);
		tray_order t = {a, false, 0, authors[a].user_id};
		for (uint32_t i = 0; i < s->count; i++) {
			const stories_item *it = &s->items[i];
			if (!stories_visible(it, now_ms))
				continue;
			if (it->story_id > t.newest_id)
				t.newest_id = it->story_id;
			if (!stories_seen_has(seen, it->story_id))
				t.unseen = true;
		}
		if (t.newest_id != 0)
			order[trays++] = t;
	}
	qsort(order, trays, sizeof *order, tray_compare);
	if (trays > STORIES_TRAYS_MAX)
		trays = STORIES_TRAYS_MAX;
	int rc = msgpack_pack_map(pk, 1);
	actors__pack_key(pk, "trays");
	rc |= msgpack_pack_array(pk, trays);
	for (uint32_t i = 0; i < trays && rc == 0; i++)
		rc = pack_tray(pk, &authors[order[i].author], seen, now_ms,
			media_pack, arg);
	free(order);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}
