/*
 * actors/engage.h — the engagement modules of the social domain, internal
 * to actors/: stories, the notification inbox, the live stream hub, the
 * search index, rate limits and idempotency keys.
 *
 * Role: plain data structures that the user, post and search actors own
 * as part of their state. Each module has one prefix (stories_, inbox_,
 * inbox_stream_, search_, rate_, idem_), takes the current time as a
 * parameter (now_ms, wall ms since the Unix epoch from rt_wall_ms) and
 * never reads a clock, draws randomness, sends or blocks; the owning
 * actor does those through the runtime. Only search_actor.c (the search
 * actor kind) talks to the runtime and to persistence.
 *
 * Invariants shared by every module:
 *   - every capacity is a named constant below; a full structure drops
 *     its oldest entries or answers an error, it never grows past it;
 *   - every state encodes to msgpack (an array whose first element is a
 *     format version) and decodes back; a decoder rejects malformed
 *     input with API_EINVALID and leaves its output freed/empty, so the
 *     owning actor's decode_state can answer RT_ECORRUPT;
 *   - answers meant for clients are msgpack maps shaped like the JSON of
 *     shared/API.md: ids as decimal strings, times as RFC 3339 strings.
 *
 * Errors: 0 or a negative API_E* code (actors/api.h). Out of memory is
 * API_EUNAVAILABLE (503, backpressure), never a crash.
 *
 * Threading: none of these structures is thread-safe; each belongs to one
 * actor and is used only in that actor's turns.
 *
 * What it deliberately does not do: routing, or deciding when to journal
 * or snapshot; the actors that embed these structures do (user_engage.c,
 * search_actor.c).
 */
#ifndef FLOCK_ACTORS_ENGAGE_H
#define FLOCK_ACTORS_ENGAGE_H

#include <inttypes.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "actors/api.h"
#include "actors/internal.h"
#include "runtime/runtime.h"

/* ==== shared ============================================================ */

#define ENGAGE_SECOND_MS 1000ull
#define ENGAGE_HOUR_MS (3600ull * ENGAGE_SECOND_MS)
#define ENGAGE_DAY_MS (24ull * ENGAGE_HOUR_MS)

/* Bytes a msgpack header takes after its first byte for sizes/lengths:
 * 0, 1, 2 or 4 (8 for 64-bit scalars), from its first byte. Returns
 * false for 0xc1 (never used). Sets *children to the elements an
 * array/map announces (maps: 2 per entry) and *payload to the bytes of a
 * str/bin/ext body when known from the first byte. */
static inline bool
engage__msgpack_head(unsigned char b, size_t *extra, size_t *count_bytes,
	size_t *fixed_payload, uint64_t *fixed_children, int *kind)
{
	/* kind: 0 scalar, 1 bytes (str/bin), 2 ext, 3 array, 4 map */
	*extra = 0;
	*count_bytes = 0;
	*fixed_payload = 0;
	*fixed_children = 0;
	*kind = 0;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b >= 0x80 && b <= 0x8f) {
		*kind = 4;
		*fixed_children = 2u * (b & 0x0fu);
		return true;
	}
	if (b >= 0x90 && b <= 0x9f) {
		*kind = 3;
		*fixed_children = b & 0x0fu;
		return true;
	}
	if (b >= 0xa0 && b <= 0xbf) {
		*kind = 1;
		*fixed_payload = b & 0x1fu;
		return true;
	}
	switch (b) {
	case 0xc4: case 0xd9: *kind = 1; *count_bytes = 1; return true;
	case 0xc5: case 0xda: *kind = 1; *count_bytes = 2; return true;
	case 0xc6: case 0xdb: *kind = 1; *count_bytes = 4; return true;
	case 0xc7: *kind = 2; *count_bytes = 1; *extra = 1; return true;
	case 0xc8: *kind = 2; *count_bytes = 2; *extra = 1; return true;
	case 0xc9: *kind = 2; *count_bytes = 4; *extra = 1; return true;
	case 0xca: *extra = 4; return true;
	case 0xcb: *extra = 8; return true;
	case 0xcc: case 0xd0: *extra = 1; return true;
	case 0xcd: case 0xd1: *extra = 2; return true;
	case 0xce: case 0xd2: *extra = 4; return true;
	case 0xcf: case 0xd3: *extra = 8; return true;
	case 0xd4: *kind = 2; *fixed_payload = 2; return true;
	case 0xd5: *kind = 2; *fixed_payload = 3; return true;
	case 0xd6: *kind = 2; *fixed_payload = 5; return true;
	case 0xd7: *kind = 2; *fixed_payload = 9; return true;
	case 0xd8: *kind = 2; *fixed_payload = 17; return true;
	case 0xdc: *kind = 3; *count_bytes = 2; return true;
	case 0xdd: *kind = 3; *count_bytes = 4; return true;
	case 0xde: *kind = 4; *count_bytes = 2; return true;
	case 0xdf: *kind = 4; *count_bytes = 4; return true;
	default: return false; /* 0xc1 */
	}
}

/*
 * True when bytes hold exactly one well-formed msgpack object whose
 * arrays and maps announce no more elements than bytes remain (each
 * element takes at least one byte). One pass, one counter of elements
 * still owed instead of a stack, no allocation.
 */
static inline bool
engage_msgpack_check(const void *bytes, size_t length)
{
	const unsigned char *p = bytes;
	size_t at = 0;
	uint64_t owed = 1; /* elements still to read */
	while (owed > 0) {
		size_t extra, count_bytes, payload;
		uint64_t children;
		int kind;
		if (at >= length)
			return false;
		if (!engage__msgpack_head(p[at], &extra, &count_bytes,
			    &payload, &children, &kind))
			return false;
		at++;
		if (length - at < count_bytes)
			return false;
		uint64_t n = 0;
		for (size_t i = 0; i < count_bytes; i++)
			n = (n << 8) | p[at + i];
		at += count_bytes;
		if (kind == 1 || kind == 2)
			payload += (size_t)n;
		else if (kind == 3)
			children += n;
		else if (kind == 4)
			children += 2u * n;
		if (length - at < extra || length - at - extra < payload)
			return false;
		at += extra + payload;
		owed = owed - 1 + children;
		if (owed > length - at)
			return false;
	}
	return at == length;
}

/* First chunk of the zone engage_unpack unpacks into: a message's
 * object (a notification event is 8 objects, 192 bytes) fits, and the
 * chunk comes from malloc's per-thread cache; msgpack_unpack_next's
 * 8 KiB chunk did not (its malloc was most of a notification's decode,
 * perf). Bigger objects (snapshots) grow the zone. */
#define ENGAGE_UNPACK_ZONE_CHUNK_BYTES 512u

/*
 * Unpacks bytes that came from outside this process (a snapshot, another
 * node) into u (initialised by the caller with msgpack_unpacked_init and
 * destroyed by it; an object it held is destroyed first, as
 * msgpack_unpack_next does). engage_msgpack_check runs first, so a few
 * hostile bytes cannot make msgpack-c reserve gigabytes for an announced
 * array. The bytes must hold exactly one object, unpacked by
 * actors__unpack (the object msgpack-c gives for them, strings pointing
 * into bytes). 0 or API_EINVALID (out of memory included, as before).
 */
static inline int
engage_unpack(const void *bytes, size_t length, msgpack_unpacked *u)
{
	msgpack_unpacked_destroy(u);
	if (!engage_msgpack_check(bytes, length))
		return API_EINVALID;
	msgpack_zone *zone = msgpack_zone_new(ENGAGE_UNPACK_ZONE_CHUNK_BYTES);
	if (zone == NULL)
		return API_EINVALID;
	if (actors__unpack(bytes, length, zone, &u->data) != API_OK) {
		msgpack_zone_free(zone);
		memset(&u->data, 0, sizeof u->data);
		return API_EINVALID;
	}
	u->zone = zone;
	return 0;
}

/* Decoding helpers for snapshot readers: each answers false when obj is
 * not of the asked shape, so a decoder is a chain of checks. */
static inline bool
engage_get_u64(const msgpack_object *obj, uint64_t *out)
{
	if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*out = obj->via.u64;
	return true;
}

static inline bool
engage_get_i64(const msgpack_object *obj, int64_t *out)
{
	if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (obj->via.u64 > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)obj->via.u64;
		return true;
	}
	if (obj->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return false;
	*out = obj->via.i64;
	return true;
}

static inline bool
engage_get_bool(const msgpack_object *obj, bool *out)
{
	if (obj->type != MSGPACK_OBJECT_BOOLEAN)
		return false;
	*out = obj->via.boolean;
	return true;
}

/* An array of at most max_count elements; *items and *count get them. */
static inline bool
engage_get_array(const msgpack_object *obj, uint32_t max_count,
	const msgpack_object **items, uint32_t *count)
{
	if (obj->type != MSGPACK_OBJECT_ARRAY)
		return false;
	if (obj->via.array.size > max_count)
		return false;
	*items = obj->via.array.ptr;
	*count = obj->via.array.size;
	return true;
}

/* Parses exactly `digits` lowercase hex digits at text (cursor fields). */
static inline bool
engage_parse_hex(const char *text, uint32_t digits, uint64_t *out)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < digits; i++) {
		char c = text[i];
		uint64_t d;
		if (c >= '0' && c <= '9')
			d = (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (uint64_t)(c - 'a' + 10);
		else
			return false;
		v = (v << 4) | d;
	}
	*out = v;
	return true;
}

/* An array of exactly n elements. */
static inline const msgpack_object *
engage_get_tuple(const msgpack_object *obj, uint32_t n)
{
	if (obj->type != MSGPACK_OBJECT_ARRAY || obj->via.array.size != n)
		return NULL;
	return obj->via.array.ptr;
}

/* A bin or str of at most max_length bytes. */
static inline bool
engage_get_bytes(const msgpack_object *obj, size_t max_length,
	const void **bytes, size_t *length)
{
	if (obj->type == MSGPACK_OBJECT_BIN) {
		*bytes = obj->via.bin.ptr;
		*length = obj->via.bin.size;
	} else if (obj->type == MSGPACK_OBJECT_STR) {
		*bytes = obj->via.str.ptr;
		*length = obj->via.str.size;
	} else {
		return false;
	}
	return *length <= max_length;
}

/* ==== stories (stories.c) ================================================
 * A user's active stories, and a viewer's seen marks. A story is visible
 * while now < expires_at and never after. */

/* Instagram caps a user at 100 stories in 24 hours; one more is refused
 * (API_ERATELIMITED) until the oldest expires. */
#define STORIES_ACTIVE_MAX 100u
/* A story lives at most 24 h (API.md: expires_in at most 86400). */
#define STORIES_LIFETIME_MS_MAX (API_STORY_SECONDS_MAX * ENGAGE_SECOND_MS)
/* Seen marks one viewer keeps: a mark matters for at most 24 h (its
 * story is gone by then); 4,096 stories watched in one day is far past
 * what a person taps through. Past it the oldest mark is dropped. */
#define STORIES_SEEN_MAX 4096u
/* Trays in one GET /v1/stories answer: more than a client's tray row
 * shows in a day of scrolling; the rest are the least recent authors. */
#define STORIES_TRAYS_MAX 200u
/* Authors one tray build considers: Instagram's following cap is 7,500. */
#define STORIES_TRAY_AUTHORS_MAX 7500u
#define STORIES_SNAPSHOT_VERSION 1u

typedef struct stories_item {
	uint64_t story_id;      /* time-ordered id: larger is newer */
	uint64_t media_id;
	uint64_t created_at_ms; /* wall ms since the Unix epoch */
	uint64_t expires_at_ms; /* created_at_ms < this <= created + 24 h */
} stories_item;

/* A user's stories, ascending story_id; a plain value (no heap). */
typedef struct stories {
	uint32_t count;
	stories_item items[STORIES_ACTIVE_MAX];
} stories;

void stories_init(stories *s);
/*
 * Adds a story posted at now_ms. expires_in_s 0 means the default and
 * maximum, 24 h; more than API_STORY_SECONDS_MAX is API_EINVALID, as are
 * story_id or media_id 0. Expired stories are collected first; with
 * STORIES_ACTIVE_MAX still active, API_ERATELIMITED. Adding a story_id
 * already held is a no-op answering the held item (a redelivered
 * message). out (may be NULL) gets the item.
 */
int stories_add(stories *s, uint64_t story_id, uint64_t media_id,
	uint32_t expires_in_s, uint64_t now_ms, stories_item *out);
/* Deletes a story. 0 or API_ENOTFOUND. */
int stories_remove(stories *s, uint64_t story_id);
/* The story with story_id: 0, API_ENOTFOUND, or API_EGONE if it has
 * expired (and is not yet collected). out (may be NULL) gets the held
 * item on 0 and on API_EGONE. */
int stories_get(const stories *s, uint64_t story_id, uint64_t now_ms,
	stories_item *out);
/* True while the story is visible: now_ms < expires_at_ms. */
bool stories_visible(const stories_item *item, uint64_t now_ms);
/* Removes every story with expires_at_ms <= now_ms; returns how many. */
uint32_t stories_collect_expired(stories *s, uint64_t now_ms);
/* The earliest expires_at_ms held, or UINT64_MAX when none: the owning
 * actor arms a runtime timer for it and collects when it fires. */
uint64_t stories_next_expiry_ms(const stories *s);
/* Visible stories held at now_ms. */
uint32_t stories_active_count(const stories *s, uint64_t now_ms);

/* Snapshot: [version, [[story_id, media_id, created_at, expires_at]...]].
 * stories_encode_active writes only the stories visible at now_ms, in
 * the same format: what an author answers a follower building trays
 * (who decodes it with stories_decode). */
int stories_encode(const stories *s, msgpack_packer *pk);
int stories_encode_active(const stories *s, uint64_t now_ms,
	msgpack_packer *pk);
/* API_EINVALID for anything stories_encode could not have written
 * (wrong shape, more than the cap, ids unordered or repeated, an expiry
 * not in (created, created + 24 h]). s is empty on error. */
int stories_decode(stories *s, const msgpack_object *obj);

/* A viewer's seen marks, kept on the viewer's side. Marks are sorted by
 * story id; each is kept 24 h after it was made, which outlives its
 * story, so a story marked seen stays seen while it is visible. */
typedef struct stories_seen_mark {
	uint64_t story_id;
	uint64_t seen_at_ms;
} stories_seen_mark;

typedef struct stories_seen {
	uint32_t count;
	uint32_t capacity;         /* allocated marks; grows to the cap */
	stories_seen_mark *marks;  /* owned; ascending story_id */
} stories_seen;

void stories_seen_init(stories_seen *v);
void stories_seen_free(stories_seen *v);
/* Marks story_id seen at now_ms (again: keeps the first time). Drops
 * marks older than 24 h first and the oldest mark when still full.
 * 0, API_EINVALID (id 0), API_EUNAVAILABLE (no memory). */
int stories_seen_mark_story(stories_seen *v, uint64_t story_id,
	uint64_t now_ms);
bool stories_seen_has(const stories_seen *v, uint64_t story_id);
/* Drops marks made at or before now_ms - 24 h; returns how many. */
uint32_t stories_seen_collect(stories_seen *v, uint64_t now_ms);
/* Snapshot: [version, [[story_id, seen_at]...]]. */
int stories_seen_encode(const stories_seen *v, msgpack_packer *pk);
/* v must be initialised (and is emptied first). */
int stories_seen_decode(stories_seen *v, const msgpack_object *obj);

/* One followed author's stories, as the viewer's actor gathered them. */
typedef struct stories_author {
	uint64_t user_id;
	const char *username;         /* borrowed; NULL packs nil */
	const char *profile_pic_url;  /* borrowed; NULL packs nil */
	const stories *active;        /* borrowed; expired ones are skipped */
} stories_author;

/* Packs the "media" value of a story item (e.g. the post media shape
 * {media_id, status, variants}). NULL packs {media_id}. */
typedef int (*stories_media_pack_callback)(void *arg, msgpack_packer *pk,
	uint64_t media_id);

/*
 * Packs the GET /v1/stories body {trays: [{user: {user_id, username,
 * profile_pic_url}, items: [{story_id, media, created_at, expires_at,
 * seen}]}]} from the authors' stories visible at now_ms and the viewer's
 * seen marks. Trays with an unseen story come first; within each group
 * the tray whose newest story is newest comes first (ties: smaller
 * user_id); items are newest first. Authors without visible stories get
 * no tray; at most STORIES_TRAYS_MAX trays. authors_count past
 * STORIES_TRAY_AUTHORS_MAX is API_EINVALID. 0 or API_EUNAVAILABLE.
 */
int stories_trays_pack(const stories_author *authors, uint32_t authors_count,
	const stories_seen *seen, uint64_t now_ms,
	stories_media_pack_callback media_pack, void *arg, msgpack_packer *pk);

/* ==== notification inbox (inbox.c) =======================================
 * A bounded ring of a user's notifications. Each new notification gets
 * the next per-user sequence number (+1); when the ring is full the
 * oldest is dropped and numbering goes on. Repeated events (a like taken
 * back and given again, a message redelivered after a crash) are
 * recognised by their event id within a window and yield one
 * notification. */

/* Notifications a user keeps: Instagram's activity tab goes back about
 * this far; older ones are dropped. */
#define INBOX_ENTRIES_MAX 1000u
/* An event id seen within this window is a repeat. A day covers both a
 * like toggled back on the same day and an outbox re-driving effects
 * after a node was down for hours. */
#define INBOX_DEDUPE_WINDOW_MS ENGAGE_DAY_MS
/* Event ids remembered for dedupe: twice the ring, so an event that fell
 * off the ring is still recognised; past it the oldest id is forgotten
 * even inside the window. */
#define INBOX_DEDUPE_ENTRIES_MAX 2048u
/* The ring and the dedupe memory start this small and double up to their
 * caps, so a user with few notifications holds little memory. */
#define INBOX_GROWTH_START 16u
#define INBOX_SNAPSHOT_VERSION 1u

typedef enum inbox_type {
	INBOX_TYPE_LIKE = 1,
	INBOX_TYPE_COMMENT = 2,
	INBOX_TYPE_FOLLOW = 3,
	INBOX_TYPE_MENTION = 4,
} inbox_type;

/* "like", "comment", "follow", "mention", or NULL. */
const char *inbox_type_name(inbox_type type);

/* What a post or user actor sends to the target user's actor. */
typedef struct inbox_event {
	uint64_t event_id;       /* repeat key; see inbox_event_id */
	uint64_t actor_user_id;  /* who did it */
	uint64_t target_user_id; /* whose inbox it lands in */
	uint64_t post_id;        /* 0: none */
	uint64_t comment_id;     /* 0: none */
	uint64_t created_at_ms;  /* wall ms */
	inbox_type type;
} inbox_event;

/* The event id of (type, actor, post, comment): a like, unlike and like
 * again of one post by one user is one event; every comment is its own.
 * Never 0. Pure and stable across nodes. */
uint64_t inbox_event_id(inbox_type type, uint64_t actor_user_id,
	uint64_t post_id, uint64_t comment_id);

typedef struct inbox_entry {
	uint64_t seq;            /* per-user, +1 per notification */
	uint64_t event_id;
	uint64_t by_user_id;
	uint64_t post_id;        /* 0: none */
	uint64_t comment_id;     /* 0: none */
	uint64_t created_at_ms;
	uint8_t type;            /* inbox_type */
} inbox_entry;

typedef struct inbox_dedupe_entry {
	uint64_t event_id;
	uint64_t seen_at_ms;
} inbox_dedupe_entry;

typedef struct inbox {
	uint64_t last_seq;        /* newest seq ever given; 0: none yet */
	uint64_t read_up_to_seq;  /* every seq <= this is read */
	uint32_t count;           /* entries held */
	uint32_t head;            /* ring index of the oldest entry */
	uint32_t capacity;        /* entries allocated */
	inbox_entry *entries;     /* owned ring */
	/* dedupe: ids in arrival order (a ring) and an open-addressing
	 * index over it (slot = ring index + 1; 0 empty) */
	uint32_t dedupe_count;
	uint32_t dedupe_head;
	uint32_t dedupe_capacity;
	inbox_dedupe_entry *dedupe;   /* owned ring */
	uint32_t *dedupe_slots;       /* owned; 2 * dedupe_capacity slots */
} inbox;

void inbox_init(inbox *ib);
void inbox_free(inbox *ib);
/*
 * Adds ev at now_ms. *added is true when a notification was stored
 * (out, may be NULL, gets it) and false for a repeat within the window.
 * API_EINVALID when the actor is the target (nobody is notified of their
 * own doing), for ids 0, or an unknown type. API_EUNAVAILABLE when out
 * of memory (nothing changed).
 */
int inbox_add(inbox *ib, const inbox_event *ev, uint64_t now_ms,
	inbox_entry *out, bool *added);
/* Entries with since_seq < seq < before_seq (before_seq 0: no upper
 * bound), newest first, at most max. Returns how many were written. */
uint32_t inbox_list(const inbox *ib, uint64_t since_seq, uint64_t before_seq,
	uint32_t max, inbox_entry *out);
/* Held notifications not yet read. */
uint32_t inbox_unread_count(const inbox *ib);
bool inbox_entry_read(const inbox *ib, const inbox_entry *e);
/* Everything up to up_to_seq (clamped to last_seq) is read; read never
 * turns back to unread. */
void inbox_mark_read(inbox *ib, uint64_t up_to_seq);
/*
 * Packs the GET /v1/notifications body {items: [{seq, type, by_user,
 * post_id?, comment_id?, created_at, read}], unread_count, next_cursor}
 * for since_seq, limit (0: API_PAGE_LIMIT_DEFAULT; clamped to
 * API_PAGE_LIMIT_MAX) and cursor (NULL: first page). API_EINVALID for a
 * cursor inbox_list_pack did not write.
 */
int inbox_list_pack(const inbox *ib, uint64_t since_seq, uint32_t limit,
	const char *cursor, msgpack_packer *pk);
/* Packs one entry as it appears in the list (the live stream's
 * "notification" event data). */
int inbox_entry_pack(const inbox *ib, const inbox_entry *e,
	msgpack_packer *pk);

/* Snapshot: [version, last_seq, read_up_to, [[seq, event_id, type, by,
 * post, comment, created_at]...], [[event_id, seen_at]...]]. */
int inbox_encode(const inbox *ib, msgpack_packer *pk);
/* ib must be initialised; it is emptied first and left empty on error. */
int inbox_decode(inbox *ib, const msgpack_object *obj);

/* Payload codec of an inbox_event travelling to the target's actor:
 * [event_id, type, actor, target, post, comment, created_at]. */
int inbox_event_encode(const inbox_event *ev, msgpack_packer *pk);
int inbox_event_decode(const msgpack_object *obj, inbox_event *out);

/* ==== live stream hub (inbox_stream.c) ===================================
 * A user's live stream: every event gets the user's next stream seq
 * (+1); a bounded ring of recent events serves resumes; subscribers are
 * sessions (an rt_addr, usually a gateway inbox, and a subscription id).
 * Delivery goes through a callback the owning actor implements with
 * rt_send, so the hub never blocks: a subscriber more than
 * INBOX_STREAM_UNACKED_MAX events behind is cut off and removed. */

/* Events held for resume: a phone back from a few minutes in a tunnel
 * finds what it missed; longer absences refetch over REST (resync). */
#define INBOX_STREAM_EVENTS_MAX 256u
/* Bytes of event data held for resume, all events together. */
#define INBOX_STREAM_BYTES_MAX (256u * 1024u)
/* One event's data: a feed.post carries a 2,200-character caption
 * (up to 8,800 bytes of UTF-8) and the post's other fields. */
#define INBOX_STREAM_EVENT_BYTES_MAX (16u * 1024u)
/* Un-acked events a subscriber may have outstanding. Equal to the ring:
 * a resume that replays the whole ring must not cut the client off by
 * itself, and a client that never acks is cut off after one ring. */
#define INBOX_STREAM_UNACKED_MAX INBOX_STREAM_EVENTS_MAX
/* Live sessions per user (phone, tablet, a few browser tabs); one more
 * cuts off the oldest, so sessions a dead gateway never closed cannot
 * lock a user out. */
#define INBOX_STREAM_SUBSCRIBERS_MAX 8u
/* Arena growth starts here and doubles up to INBOX_STREAM_BYTES_MAX. */
#define INBOX_STREAM_BYTES_START 4096u
#define INBOX_STREAM_SNAPSHOT_VERSION 1u

/* publish flag: store and deliver only if some subscriber is online
 * (a celebrity's post reaches online followers this way; offline ones
 * pull it when they read their feed). */
#define INBOX_STREAM_F_ONLINE_ONLY 1u

/* Why a subscriber was cut off (the CUT_OFF event's data.reason). */
typedef enum inbox_stream_cut_reason {
	INBOX_STREAM_CUT_SLOW = 1,     /* "slow": too many un-acked events */
	INBOX_STREAM_CUT_REPLACED = 2, /* "replaced": too many sessions */
} inbox_stream_cut_reason;

typedef struct inbox_stream_subscriber {
	rt_addr addr;              /* where its events are sent */
	uint64_t subscription_id;  /* the session's id, unique per addr */
	uint64_t sent_seq;         /* newest seq delivered to it */
	uint64_t acked_seq;        /* newest seq it acknowledged */
} inbox_stream_subscriber;

/* One delivery. data is msgpack, borrowed until the callback returns. */
typedef struct inbox_stream_event {
	api_event_type type;
	uint64_t seq;
	const void *data;
	uint32_t length;
} inbox_stream_event;

/* Sends ev to `to` (e.g. inbox_stream_message_encode + rt_send). Runs
 * inside the hub's calls; must not call back into the hub. A failed send
 * is the callback's to ignore: the client resumes with since. */
typedef void (*inbox_stream_deliver_callback)(void *arg,
	const inbox_stream_subscriber *to, const inbox_stream_event *ev);

typedef struct inbox_stream_slot {
	uint32_t offset;   /* into bytes */
	uint32_t length;
	uint8_t type;      /* api_event_type */
} inbox_stream_slot;

typedef struct inbox_stream {
	uint64_t last_seq;       /* newest seq given; 0: none */
	uint32_t count;          /* events held: seqs last_seq-count+1.. */
	uint32_t head;           /* slot of the oldest held event */
	inbox_stream_slot slots[INBOX_STREAM_EVENTS_MAX];
	unsigned char *bytes;    /* owned arena, events in seq order */
	uint32_t bytes_capacity;
	uint32_t subscribers_count;
	inbox_stream_subscriber subscribers[INBOX_STREAM_SUBSCRIBERS_MAX];
} inbox_stream;

void inbox_stream_init(inbox_stream *s);
void inbox_stream_free(inbox_stream *s);
/*
 * Appends an event (type FEED_POST..POST_UPDATED; data one msgpack
 * object of at most INBOX_STREAM_EVENT_BYTES_MAX bytes, copied) and
 * delivers it to every subscriber; a subscriber already
 * INBOX_STREAM_UNACKED_MAX behind gets CUT_OFF instead and is removed.
 * *seq_out (may be NULL) gets the event's seq, or 0 when
 * INBOX_STREAM_F_ONLINE_ONLY found nobody online (nothing stored).
 * 0, API_EINVALID, API_ETOOLARGE, API_EUNAVAILABLE (nothing changed).
 */
int inbox_stream_publish(inbox_stream *s, api_event_type type,
	const void *data, uint32_t length, uint32_t flags,
	inbox_stream_deliver_callback deliver, void *arg, uint64_t *seq_out);
/*
 * Subscribes (addr, subscription_id), replacing one with the same pair.
 * Without has_since it receives new events only. With has_since it is
 * first given every held event after since_seq, or one RESYNC (seq =
 * last_seq) when some of them are gone or since_seq is ahead of the
 * stream. With INBOX_STREAM_SUBSCRIBERS_MAX already, the oldest
 * subscriber is cut off (reason "replaced"). 0 or API_EINVALID.
 */
int inbox_stream_subscribe(inbox_stream *s, rt_addr addr,
	uint64_t subscription_id, bool has_since, uint64_t since_seq,
	inbox_stream_deliver_callback deliver, void *arg);
/* The subscriber has seen everything up to seq: refills its credit.
 * An older ack is ignored. API_ENOTFOUND, or API_EINVALID for a seq it
 * was never sent. */
int inbox_stream_ack(inbox_stream *s, rt_addr addr, uint64_t subscription_id,
	uint64_t seq);
/* 0 or API_ENOTFOUND. */
int inbox_stream_unsubscribe(inbox_stream *s, rt_addr addr,
	uint64_t subscription_id);
bool inbox_stream_online(const inbox_stream *s);
/* An event nobody can resume (no session, none expected back soon): the
 * seq advances and every held event is dropped, so a resume from before
 * it gets RESYNC instead of silently missing it. Nothing is stored. */
void inbox_stream_skip(inbox_stream *s);
/* After a load: forgets every subscriber without telling it (their
 * sessions belong to a process that is gone). With seq_gap > 0 the held
 * events are dropped too and the seq moves on by seq_gap, for a load
 * that may have lost events some client saw: their seqs are never
 * given again, and every resume from before gets RESYNC. */
void inbox_stream_reset(inbox_stream *s, uint64_t seq_gap);

/* Snapshot: [version, last_seq, [[type, data(bin)]...oldest first],
 * [[kind, id, subscription_id, sent, acked]...]]. Subscribers are kept
 * so a session on another node keeps its stream across passivation. */
int inbox_stream_encode(const inbox_stream *s, msgpack_packer *pk);
/* s must be initialised; emptied first and left empty on error. */
int inbox_stream_decode(inbox_stream *s, const msgpack_object *obj);

/* Requests a session sends to the stream's owner (the message's `from`
 * is the subscriber's addr). Payload [op, subscription_id, seq,
 * has_since]. */
typedef enum inbox_stream_op {
	INBOX_STREAM_OP_SUBSCRIBE = 1,   /* seq = since when has_since */
	INBOX_STREAM_OP_ACK = 2,         /* seq = acked */
	INBOX_STREAM_OP_UNSUBSCRIBE = 3,
	/* A session checking in from seq, the last it received (when
	 * has_since): nothing if it is subscribed and has everything; else
	 * a subscribe with since = seq. So a session the actor forgot (it
	 * moved, restarted) resumes where it was instead of staying silent,
	 * and one that missed events (a message lost on the way) gets them
	 * again; events still in flight come twice and the session drops
	 * the second copy by seq. */
	INBOX_STREAM_OP_RENEW = 4,
} inbox_stream_op;

typedef struct inbox_stream_request {
	inbox_stream_op op;
	uint64_t subscription_id;
	uint64_t seq;
	bool has_since;
} inbox_stream_request;

int inbox_stream_request_encode(const inbox_stream_request *r,
	msgpack_packer *pk);
int inbox_stream_request_decode(const msgpack_object *obj,
	inbox_stream_request *out);
/* Whether `from`'s session subscription_id is subscribed. */
bool inbox_stream_subscribed(const inbox_stream *s, rt_addr from,
	uint64_t subscription_id);
/* Whether renewal r from `from` asks for nothing: the session is
 * subscribed and has received every event (or names no position). */
bool inbox_stream_renewal_idle(const inbox_stream *s, rt_addr from,
	const inbox_stream_request *r);
/* Applies a decoded request from `from` (the message's sender). */
int inbox_stream_apply(inbox_stream *s, rt_addr from,
	const inbox_stream_request *r, inbox_stream_deliver_callback deliver,
	void *arg);

/* An event travelling to a session: [subscription_id, type, seq, data].
 * decode borrows data from obj (valid while its unpacked lives). */
int inbox_stream_message_encode(uint64_t subscription_id,
	const inbox_stream_event *ev, msgpack_packer *pk);
int inbox_stream_message_decode(const msgpack_object *obj,
	uint64_t *subscription_id, api_event_type *type, uint64_t *seq,
	const msgpack_object **data);

/* Online followers of a celebrity: each follower's actor reports when its
 * first session subscribes and its last one leaves; the celebrity's
 * actor pushes a new post's live event only to the users listed here. */

/* Online followers one celebrity pushes to directly; past it, further
 * followers get the post when they read their feed (the pull path). */
#define INBOX_PRESENCE_MAX 65536u
#define INBOX_PRESENCE_SNAPSHOT_VERSION 1u

typedef struct inbox_presence {
	uint32_t count;
	uint32_t slots_count;    /* power of two, > 2 * count; 0 none */
	uint64_t *slots;         /* owned open-addressing set; 0 empty */
} inbox_presence;

void inbox_presence_init(inbox_presence *p);
void inbox_presence_free(inbox_presence *p);
/* Marks user_id online or offline. 0, API_EINVALID (id 0),
 * API_EUNAVAILABLE (full or no memory: the follower pulls instead). */
int inbox_presence_set(inbox_presence *p, uint64_t user_id, bool online);
bool inbox_presence_has(const inbox_presence *p, uint64_t user_id);
/* Copies up to max online user ids, ascending, into out; returns how
 * many. The celebrity's actor sends each one the event. */
uint32_t inbox_presence_list(const inbox_presence *p, uint64_t *out,
	uint32_t max);
/* Snapshot: [version, [user_id...]]. */
int inbox_presence_encode(const inbox_presence *p, msgpack_packer *pk);
int inbox_presence_decode(inbox_presence *p, const msgpack_object *obj);

/* ==== search (search.c, search_terms.c, search_actor.c) ==================
 * An index actor kind sharded by term. A term key is a type byte and
 * text: 'u' + a 1..3 byte username prefix, 't' + a hashtag, 'w' + a
 * caption word (all lowercase). shard = hash(key) % SEARCH_SHARDS, and
 * the shard's actor is (SEARCH_KIND, id) with the shard's partition in
 * the id's partition bits, so routing places it like any other actor.
 *
 * Users are indexed under their first 1, 2 and 3 characters: the shard
 * of a 1..3 character prefix keeps its users ranked by followers, and the
 * shard of a 3 character prefix also keeps every username that starts
 * with it, sorted, so any prefix query is answered by one shard. */

/* Kinds 1..3 are the social core's; 4..15 are kept for the other modules
 * of actors/. */
#define SEARCH_KIND 6u
/* Shards: enough to spread search over a cluster of dozens of nodes and
 * keep each shard's snapshot small, few enough that a caption's terms
 * group into few messages. */
#define SEARCH_SHARDS 256u
/* The id layout of DESIGN.md: ms(41) | partition(13) | sequence(10). */
#define SEARCH_PARTITION_BITS 13u
#define SEARCH_SEQUENCE_BITS 10u
#define SEARCH_PARTITIONS (1u << SEARCH_PARTITION_BITS)
/* The longest hashtag or word indexed; longer ones are not what people
 * type into a search box. */
#define SEARCH_TERM_BYTES_MAX 64u
/* A term key: type byte, text and NUL. */
#define SEARCH_KEY_BYTES (SEARCH_TERM_BYTES_MAX + 2u)
/* Words shorter than this are not indexed: one letter matches everything
 * and says nothing. */
#define SEARCH_WORD_BYTES_MIN 2u
/* Distinct caption words indexed per post (the first ones). */
#define SEARCH_CAPTION_WORDS_MAX 64u
/* Terms one post carries: its hashtags and words. */
#define SEARCH_POST_TERMS_MAX (API_CAPTION_HASHTAGS_MAX + \
	SEARCH_CAPTION_WORDS_MAX)
/* Post ids kept per hashtag or word, newest; 20 pages of 50 is deeper
 * than anyone pages a search. Older ids are dropped. */
#define SEARCH_POSTINGS_MAX 1000u
/* Users kept per 1..3 character prefix, ranked by followers: autocomplete
 * on one to three characters shows the best known accounts. */
#define SEARCH_PREFIX_TOP_MAX 1000u
/* Usernames kept per 3 character prefix: 6 MiB of bucket at the cap,
 * past the most common prefix ("mar") of 20 million names. Past it the
 * one with the fewest followers is dropped from the bucket (it still
 * ranks in the top lists if it belongs there). */
#define SEARCH_BUCKET_USERS_MAX (1u << 18)
/* The username prefix length that picks the shard of a longer query. */
#define SEARCH_USER_PREFIX_BYTES 3u
/* Terms and users one shard holds: a memory bound of roughly a gigabyte
 * per shard; past it new terms or users are refused (API_EUNAVAILABLE). */
#define SEARCH_SHARD_TERMS_MAX (1u << 22)
#define SEARCH_SHARD_USERS_MAX (1u << 22)
/* An opaque cursor and its NUL. */
#define SEARCH_CURSOR_BYTES 40u
#define SEARCH_SNAPSHOT_VERSION 1u

/* Message types of the search kind: 6xx, apart from the types the
 * social core shares across kinds (1..50). Updates are plain sends; a
 * query is an ask answered with the core's reply header (actors__reply)
 * and the body {items, next_cursor}, so api.c can forward it as is. */
typedef enum search_message_type {
	SEARCH_T_POST_INDEX = 600,   /* [post_id, [key...]] */
	SEARCH_T_POST_UNINDEX = 601, /* [post_id, [key...]] */
	SEARCH_T_USER_UPSERT = 602,  /* [user_id, username, followers] */
	SEARCH_T_USER_REMOVE = 603,  /* [user_id, username, 0] */
	SEARCH_T_QUERY = 604,        /* [type, query, limit, cursor|nil] */
	/* An update as a persistence effect (from an outbox): a
	 * ps_effect_header, u32 shard, u32 update type (600..603), then
	 * that update's msgpack payload. Journaled by the shard, then
	 * confirmed, so an index survives a crash. */
	SEARCH_T_EFFECT = 605,
} search_message_type;

/* The shard of a term key (type byte + text). */
uint32_t search_shard_of(const char *key, size_t length);
/* The address of shard's actor. */
rt_addr search_shard_addr(uint32_t shard);
/* The shard an address names; API_EINVALID if it names none. */
int search_addr_shard(rt_addr addr, uint32_t *shard);

/* Lowercases a username search: strips one leading '@'; API_EINVALID
 * when empty or past API_SEARCH_QUERY_BYTES_MAX. out gets the prefix
 * (size > API_SEARCH_QUERY_BYTES_MAX). */
int search_normalize_query(api_search_type type, const char *query,
	char *out, size_t size);
/*
 * The one shard that answers query (the api-side helper): for users the
 * shard of 'u' + its first min(3, length) characters; for tags and posts
 * the shard of 't' or 'w' + the normalised term. 0 or API_EINVALID.
 */
int search_query_shard(api_search_type type, const char *query,
	uint32_t *shard);
/* The distinct shards a user upsert/remove for username goes to (its 1,
 * 2 and 3 character prefixes): 1..3, written to shards[]. */
uint32_t search_user_shards(const char *username, uint32_t shards[3]);

/* A post's terms: its hashtags and caption words, as keys. */
typedef struct search_terms {
	uint32_t count;
	char keys[SEARCH_POST_TERMS_MAX][SEARCH_KEY_BYTES];
} search_terms;

void search_terms_init(search_terms *t);
/* Adds 't' + tag or 'w' + word, lowercased; skips repeats, empty or too
 * long text, and terms past the caps. Returns true when added. */
bool search_terms_add(search_terms *t, char type, const char *text,
	size_t length);
/* Splits caption into hashtags (#word) and words (runs of letters,
 * digits, '_' and non-ASCII bytes; '@mentions' are skipped) and adds
 * them. */
void search_terms_from_caption(search_terms *t, const char *caption);
/* The distinct shards t's keys fall in, ascending; returns how many
 * (at most SEARCH_POST_TERMS_MAX). */
uint32_t search_terms_shards(const search_terms *t,
	uint32_t shards[SEARCH_POST_TERMS_MAX]);

/* Message payloads (msgpack). The post actor sends one
 * SEARCH_T_POST_INDEX per shard of search_terms_shards, carrying the
 * terms of that shard only; the user actor one SEARCH_T_USER_UPSERT
 * per shard of search_user_shards. */
int search_post_message_encode(uint64_t post_id, const search_terms *t,
	uint32_t shard, msgpack_packer *pk);
int search_user_message_encode(uint64_t user_id, const char *username,
	uint64_t followers_count, uint64_t pic_media_id, msgpack_packer *pk);
int search_query_message_encode(api_search_type type, const char *query,
	uint32_t limit, const char *cursor, msgpack_packer *pk);

/* A decoded message; strings borrowed from the unpacked object. */
typedef struct search_message {
	search_message_type type;
	uint64_t id;                  /* post_id or user_id */
	uint64_t followers_count;     /* USER_UPSERT */
	uint64_t pic_media_id;        /* USER_UPSERT: profile picture, 0 none;
					 SEARCH_PIC_UNKNOWN from an older
					 sender that did not tell it */
	const msgpack_object *keys;   /* POST_*: key strings */
	uint32_t keys_count;
	const char *text;             /* username or query; not NUL-ended */
	uint32_t text_length;
	api_search_type query_type;
	uint32_t limit;
	const char *cursor;           /* NULL: first page */
	uint32_t cursor_length;
} search_message;

/* API_EINVALID for a type this kind does not take or a malformed
 * payload. */
int search_message_decode(uint32_t type, const msgpack_object *obj,
	search_message *out);

/* Should a follower count change re-index the user? When it moved by at
 * least 1/64 of the last indexed count or crossed a small count, so a
 * celebrity gaining followers does not send a message per follow. */
bool search_user_update_due(uint64_t indexed_count, uint64_t new_count);

/* One shard's index (or all of them: shards_count 1). */
typedef struct search_index search_index;

int search_index_create(uint32_t shard, uint32_t shards_count,
	search_index **out);
void search_index_destroy(search_index *ix);
uint32_t search_index_shard(const search_index *ix);
/* Indexes post_id under the keys of this shard (others are skipped).
 * Idempotent. 0, API_EINVALID (id 0), API_EUNAVAILABLE. */
int search_index_post(search_index *ix, uint64_t post_id,
	const char *const *keys, uint32_t count);
int search_index_post_remove(search_index *ix, uint64_t post_id,
	const char *const *keys, uint32_t count);
/* Inserts or updates a user (username ^[a-z0-9._]{1,30}$ lowercase;
 * usernames do not change). 0, API_EINVALID, API_EUNAVAILABLE. */
int search_index_user(search_index *ix, uint64_t user_id,
	const char *username, uint64_t followers_count);
int search_index_user_remove(search_index *ix, uint64_t user_id);
/* A user's profile picture as the index answers it (0: none), so a
 * username search needs no ask to each user; unknown (a user indexed by
 * an older version, or a picture id of SEARCH_PIC_UNKNOWN) until told.
 * Not indexed: 0, nothing done. */
#define SEARCH_PIC_UNKNOWN UINT64_MAX
int search_index_user_pic(search_index *ix, uint64_t user_id,
	uint64_t pic_media_id);

typedef struct search_hit {
	uint64_t id;                  /* user or post id */
	uint64_t followers_count;     /* users */
	uint64_t pic_media_id;        /* users; SEARCH_PIC_UNKNOWN */
	char username[API_USERNAME_BYTES_MAX + 1]; /* users */
} search_hit;

/*
 * One page of results for a normalised query this shard answers. Users:
 * an exact username match first, then by followers (most first), ties by
 * smaller user_id. Tags and posts: newest post first. limit 0 means
 * API_PAGE_LIMIT_DEFAULT, clamped to API_PAGE_LIMIT_MAX; hits must hold
 * API_PAGE_LIMIT_MAX. next_cursor gets "" on the last page. API_EINVALID
 * for a cursor of another query type or malformed.
 */
int search_index_query(const search_index *ix, api_search_type type,
	const char *query, uint32_t limit, const char *cursor,
	search_hit *hits, uint32_t *count, char next_cursor[SEARCH_CURSOR_BYTES]);
/* Same, packed {items: [{user_id, username, followers_count}] or
 * [{post_id}], next_cursor}. */
int search_index_query_pack(const search_index *ix, api_search_type type,
	const char *query, uint32_t limit, const char *cursor,
	msgpack_packer *pk);
/* Applies a decoded message (not QUERY). */
int search_index_apply(search_index *ix, const search_message *m);

/* Snapshot: [version, shard, shards_count, [[user_id, username,
 * followers]...], [[key, [post_id...]]...]]. Rankings are rebuilt from
 * the users on decode. */
int search_index_encode(const search_index *ix, msgpack_packer *pk);
/* *out gets a new index; API_EINVALID for malformed input. */
int search_index_decode(const msgpack_object *obj, search_index **out);

/* The search actor kind's ops (search_actor.c): register with
 * rt_register_kind(rt, SEARCH_KIND, &search_actor_ops). */
extern const rt_actor_ops search_actor_ops;

/* ==== rate limits (ratelimit.c) ==========================================
 * Token buckets per user and action, refilled lazily from now_ms. A
 * bucket is kept as the one time at which it will be full again
 * (full_at_ms); tokens at now = capacity - ceil((full_at - now) /
 * refill_ms). Taking a token moves full_at one refill_ms later. */

typedef enum rate_action {
	RATE_ACTION_LIKE = 0,
	RATE_ACTION_POST = 1,
	RATE_ACTION_COMMENT = 2,
	RATE_ACTION_FOLLOW = 3,
	RATE_ACTIONS_COUNT = 4,
} rate_action;

/* API.md defaults: likes 10/s, posts 30/h, comments 1/s, follows
 * 400/day (capacity = the count, one token back every period/count). */
#define RATE_LIKES_CAPACITY 10u
#define RATE_LIKES_REFILL_MS 100u
#define RATE_POSTS_CAPACITY 30u
#define RATE_POSTS_REFILL_MS (ENGAGE_HOUR_MS / 30u)
#define RATE_COMMENTS_CAPACITY 1u
#define RATE_COMMENTS_REFILL_MS ENGAGE_SECOND_MS
#define RATE_FOLLOWS_CAPACITY 400u
#define RATE_FOLLOWS_REFILL_MS (ENGAGE_DAY_MS / 400u)
/* capacity * refill_ms above this is refused as a configuration: a week,
 * the longest window a client would be asked to wait out. */
#define RATE_WINDOW_MS_MAX (7ull * ENGAGE_DAY_MS)
#define RATE_SNAPSHOT_VERSION 1u

/* Fills cfg[RATE_ACTIONS_COUNT] with the defaults above. */
void rate_defaults(api_rate cfg[RATE_ACTIONS_COUNT]);

typedef struct rate_state {
	uint64_t full_at_ms[RATE_ACTIONS_COUNT]; /* 0: full */
} rate_state;

typedef struct rate_result {
	uint64_t retry_after_ms;   /* 0 when allowed */
	uint32_t limit;            /* RateLimit: the bucket's capacity */
	uint32_t remaining;        /* tokens left after this action */
	uint64_t reset_ms;         /* ms until the bucket is full again */
} rate_result;

void rate_init(rate_state *s);
/* Takes one token for action at now_ms. 0 (allowed), API_ERATELIMITED
 * (refused: retry_after_ms says when it would be allowed; nothing
 * taken), API_EINVALID (bad action or cfg). out filled unless
 * API_EINVALID. */
int rate_take(rate_state *s, rate_action action, const api_rate *cfg,
	uint64_t now_ms, rate_result *out);
/* The bucket's state without taking (remaining = tokens now). */
int rate_peek(const rate_state *s, rate_action action, const api_rate *cfg,
	uint64_t now_ms, rate_result *out);
/* Snapshot: [version, [full_at...RATE_ACTIONS_COUNT]]. */
int rate_encode(const rate_state *s, msgpack_packer *pk);
int rate_decode(rate_state *s, const msgpack_object *obj);

/* ==== idempotency keys (idempotency.c) ===================================
 * Per user: Idempotency-Key -> the request's body digest, whether it is
 * still running, and its first response. */

/* Keys one user holds: far more writes than a person retries in a day;
 * past it the oldest key is forgotten. */
#define IDEM_KEYS_MAX 128u
/* A stored response: a post body with a 2,200-character caption is under
 * 12 KiB; larger ones are refused, not truncated. */
#define IDEM_RESPONSE_BYTES_MAX (64u * 1024u)
#define IDEM_TTL_MS_DEFAULT ENGAGE_DAY_MS
/* A request still running after this lost its continuation (the actor
 * restarted mid-request): a retry may run it again. Far above any ask
 * deadline. */
#define IDEM_RUNNING_TIMEOUT_MS (2ull * 60ull * ENGAGE_SECOND_MS)
#define IDEM_DIGEST_BYTES 32u
#define IDEM_SNAPSHOT_VERSION 1u

typedef enum idem_status {
	IDEM_RUNNING = 1,
	IDEM_DONE = 2,
} idem_status;

typedef struct idem_entry {
	char key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
	uint8_t digest[IDEM_DIGEST_BYTES];
	uint8_t status;          /* idem_status */
	int32_t code;            /* API_OK or API_E*, when done */
	uint64_t started_at_ms;
	uint64_t expires_at_ms;  /* started + ttl */
	uint32_t response_length;
	unsigned char *response; /* owned msgpack body; NULL when none */
} idem_entry;

typedef struct idem_table {
	uint32_t count;
	uint32_t capacity;
	idem_entry *entries;     /* owned; oldest first */
} idem_table;

/* What idem_begin found. */
typedef struct idem_outcome {
	bool replay;             /* true: answer code + response, do not run */
	int code;
	const void *response;    /* borrowed until the table next changes */
	uint32_t response_length;
} idem_outcome;

void idem_init(idem_table *t);
void idem_free(idem_table *t);
/*
 * Starts a keyed request. New key (or expired, or running past
 * IDEM_RUNNING_TIMEOUT_MS with the same digest): recorded as running,
 * out->replay false, the caller runs it and calls idem_finish. Same key
 * and digest, done: out->replay true with the first result. Same key,
 * another digest: API_EIDEMPOTENCY. Same key and digest, running:
 * API_ECONFLICT. Key of 0 or more than API_IDEMPOTENCY_KEY_BYTES_MAX
 * bytes: API_EINVALID. ttl_ms 0: IDEM_TTL_MS_DEFAULT.
 */
int idem_begin(idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES], uint64_t now_ms,
	uint64_t ttl_ms, idem_outcome *out);
/* Records the result of the running request (response copied).
 * API_ENOTFOUND if it is no longer held, API_ETOOLARGE past
 * IDEM_RESPONSE_BYTES_MAX (the key is then forgotten). */
int idem_finish(idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES], int code,
	const void *response, uint32_t length);
/* Forgets a running request that had no effect (so a retry runs it). */
int idem_abort(idem_table *t, const char *key,
	const uint8_t digest[IDEM_DIGEST_BYTES]);
/* Drops expired keys; returns how many. */
uint32_t idem_collect(idem_table *t, uint64_t now_ms);
/* Snapshot: [version, [[key, digest, status, code, started, expires,
 * response|nil]...]]. */
int idem_encode(const idem_table *t, msgpack_packer *pk);
/* t must be initialised; emptied first and left empty on error. */
int idem_decode(idem_table *t, const msgpack_object *obj);

#endif /* FLOCK_ACTORS_ENGAGE_H */
