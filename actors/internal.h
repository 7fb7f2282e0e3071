/*
 * actors/internal.h — names shared inside actors/ only (double underscore).
 *
 * Role: the pieces the social-core actor kinds (user, post, username
 * index) and the client layer (api.c, calls.c, feed.c) share: actor
 * kinds and message types, the id layout and generator, the wire codec
 * of internal messages and journal records, validation, the cursor
 * codec, msgpack body building, and the client's ask machinery that
 * other modules of actors/ (media, engagement) may also use.
 *
 * Invariants:
 *   - internal message payloads and journal records are position
 *     independent little-endian bytes written with the wire_* helpers,
 *     so the cluster and the simulator can ship them unchanged;
 *   - every reply an actor of this layer sends to a client starts with a
 *     reply header (code, detail length) followed by the detail text and
 *     a msgpack body.
 *
 * What it deliberately does not do: no I/O, no clock, no threads (the
 * password pool in api.c is the one exception and runs outside actors).
 */
#ifndef FLOCK_ACTORS_INTERNAL_H
#define FLOCK_ACTORS_INTERNAL_H

#include <assert.h>
#include <msgpack.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "actors/api.h"
#include "runtime/runtime.h"

struct ps_outbox; /* persistence/persistence.h */

/* Asserts that stay on in release builds (STYLE.md rule 6). */
#define ACTORS_ASSERT(cond)                                                  \
	do {                                                                 \
		if (!(cond))                                                 \
			actors__assert_fail(__FILE__, __LINE__, #cond);      \
	} while (0)
_Noreturn void actors__assert_fail(const char *file, int line,
	const char *expr);

/* ---- actor kinds --------------------------------------------------------
 * Kinds 1..3 are the social core; 4..15 are kept for the other modules
 * of actors/ (media, search, inbox, stories, ...), which pick theirs in
 * their own headers. */
#define ACTORS_KIND_USER 1u
#define ACTORS_KIND_POST 2u
#define ACTORS_KIND_NAMES 3u

/* ---- ids ----------------------------------------------------------------
 * ms since ACTORS_EPOCH_MS (41 bits) | partition (13) | sequence (10). */
#define ACTORS_EPOCH_MS 1704067200000ull /* 2024-01-01T00:00:00Z */
#define ACTORS_ID_SEQUENCE_BITS 10
#define ACTORS_ID_PARTITION_BITS 13
#define ACTORS_PARTITIONS (1u << ACTORS_ID_PARTITION_BITS)
#define ACTORS_ID_SEQUENCE_MAX ((1u << ACTORS_ID_SEQUENCE_BITS) - 1u)
#define ACTORS_ID_TIME_BITS 41

/* Index of the first of a[0..n) (ascending) that is >= v; n if none. */
static inline uint32_t
actors__u64_lower_bound(const uint64_t *a, uint32_t n, uint64_t v)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (a[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static inline uint32_t
actors__id_partition(uint64_t id)
{
	return (uint32_t)((id >> ACTORS_ID_SEQUENCE_BITS) &
		(ACTORS_PARTITIONS - 1u));
}

static inline uint64_t
actors__id_ms(uint64_t id)
{
	return (id >> (ACTORS_ID_SEQUENCE_BITS + ACTORS_ID_PARTITION_BITS)) +
		ACTORS_EPOCH_MS;
}

/* A node-wide id generator: the last (ms, seq) packed in one atomic word,
 * ms since the epoch << 10 | seq. Monotonic even if the clock steps back:
 * it keeps counting on the last ms, borrowing the next ms when a
 * millisecond's 1,024 sequence numbers are used up. */
typedef struct actors__idgen {
	_Atomic uint64_t last;
} actors__idgen;

void actors__idgen_init(actors__idgen *g);
/* A fresh id in partition (< ACTORS_PARTITIONS) at wall time wall_ms.
 * Thread-safe, lock-free. */
uint64_t actors__idgen_next(actors__idgen *g, uint32_t partition,
	uint64_t wall_ms);

/* FNV-1a 64 of bytes; stable across builds (ids and shards depend on it). */
uint64_t actors__hash64(const void *bytes, size_t length);
/* The partition a username's user and index shard live in. name must be
 * lowercase already. */
uint32_t actors__name_partition(const char *lower_name);

/* ---- validation (validate.c) ------------------------------------------- */

/* Username per ^[a-z0-9._]{1,30}$ after lowercasing; out gets the
 * lowercase form (size > API_USERNAME_BYTES_MAX). */
bool actors__username_normalize(const char *name, char *out, size_t size);
bool actors__email_valid(const char *email);
bool actors__password_valid(const char *password);
/* Number of UTF-8 code points; -1 if bytes are not valid UTF-8. */
long actors__utf8_count(const char *s, size_t length);

/* Hashtags (#word) and mentions (@name) of a caption, lowercase, without
 * the sign, distinct, in order of first appearance. Calls fn for each;
 * returns how many distinct tags there were (may exceed what fn took). */
typedef void (*actors__tag_callback)(void *arg, const char *tag,
	size_t length);
uint32_t actors__parse_tags(const char *text, size_t length, char sign,
	actors__tag_callback fn, void *arg);

/* Full validity of a caption: UTF-8, <= API_CAPTION_CHARACTERS_MAX code
 * points, <= API_CAPTION_HASHTAGS_MAX hashtags. Writes a reason. */
int actors__caption_check(const char *caption, const char **detail);
int actors__comment_check(const char *text, const char **detail);
int actors__bio_check(const char *bio, const char **detail);

/* ---- wire codec (internal messages and journal records) ---------------- */

typedef struct wire_writer {
	unsigned char *bytes;
	size_t length;
	size_t capacity;
	bool failed; /* an allocation failed; the bytes are unusable */
} wire_writer;

void wire_init(wire_writer *w);
void wire_free(wire_writer *w);
void wire_u8(wire_writer *w, uint8_t v);
void wire_u32(wire_writer *w, uint32_t v);
void wire_u64(wire_writer *w, uint64_t v);
void wire_f64(wire_writer *w, double v);
void wire_bytes(wire_writer *w, const void *bytes, size_t length);
/* u32 length + bytes (no NUL); NULL writes length 0. */
void wire_str(wire_writer *w, const char *s);
void wire_strn(wire_writer *w, const char *s, size_t length);

typedef struct wire_reader {
	const unsigned char *bytes;
	size_t length;
	size_t offset;
	bool failed; /* read past the end or a malformed field */
} wire_reader;

void wire_reader_init(wire_reader *r, const void *bytes, size_t length);
uint8_t wire_get_u8(wire_reader *r);
uint32_t wire_get_u32(wire_reader *r);
uint64_t wire_get_u64(wire_reader *r);
double wire_get_f64(wire_reader *r);
/* A string field borrowed from the reader's bytes (not NUL-terminated);
 * *length gets its size. Fails past max_length. */
const char *wire_get_str(wire_reader *r, size_t max_length, size_t *length);
/* Same, copied into a fresh NUL-terminated malloc'd string (owned). */
char *wire_get_strdup(wire_reader *r, size_t max_length);
/* Copies into buf (NUL-terminated); fails when it does not fit. */
void wire_get_strbuf(wire_reader *r, char *buf, size_t size);
/* True when every byte was consumed and nothing failed. */
bool wire_done(const wire_reader *r);

/* A little-endian u64 at p, one store or load: for fixed headers written
 * and read once per message of a fan-out, where the writer's and
 * reader's calls cost more than the copy. */
static inline void
wire_put_le64(unsigned char *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static inline uint64_t
wire_load_le64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

/* ---- client replies ---------------------------------------------------- */

/* Reply payload: header, detail bytes, msgpack body bytes. */
typedef struct actors__reply_header {
	int32_t code;
	uint32_t detail_length;
} actors__reply_header;
static_assert(sizeof(actors__reply_header) == 8, "reply header on the wire");

/* Detail text is bounded so a reply stays small. */
#define ACTORS_DETAIL_BYTES_MAX 200u

/* Builds a reply message (owned) with code, detail (may be NULL) and
 * body bytes (may be NULL/0). NULL on allocation failure. */
rt_message *actors__reply_make(rt_runtime *rt, uint32_t type, int code,
	const char *detail, const void *body, size_t body_length);
/* Replies to the (from, correlation) kept in `to` (a copy of a request's
 * header: only from and correlation are read). */
void actors__reply(rt_actor *self, const rt_message *to, int code,
	const char *detail, const void *body, size_t body_length);
/* Reply context kept while a write waits for durability or another
 * actor: the request's sender and correlation. */
typedef struct actors__reply_to {
	rt_addr from;
	uint64_t correlation;
} actors__reply_to;
static_assert(sizeof(actors__reply_to) == 24, "reply context on the wire");
void actors__reply_to_from(actors__reply_to *to, const rt_message *m);
void actors__reply_later(rt_actor *self, const actors__reply_to *to,
	int code, const char *detail, const void *body, size_t body_length);
void wire_reply_to(wire_writer *w, const actors__reply_to *to);
void wire_get_reply_to(wire_reader *r, actors__reply_to *to);

/* ---- msgpack bodies ---------------------------------------------------- */

/* First chunk of a body's buffer: most bodies (a notification event, a
 * like's answer, an inbox entry, a post) fit, and a chunk this small
 * comes from malloc's per-thread cache; larger ones double from it. */
#define ACTORS_BODY_BYTES_INITIAL 512u

/* An sbuffer-backed packer. */
typedef struct actors__body {
	msgpack_sbuffer buffer;
	msgpack_packer packer;
} actors__body;

void actors__body_init(actors__body *b);
void actors__body_free(actors__body *b);
void actors__pack_str(msgpack_packer *p, const char *s);
void actors__pack_strn(msgpack_packer *p, const char *s, size_t length);
/* An id as a decimal string ("0" never appears: 0 packs nil). */
void actors__pack_id(msgpack_packer *p, uint64_t id);
/* RFC 3339 UTC with milliseconds, from ms since the Unix epoch. */
void actors__pack_time(msgpack_packer *p, uint64_t unix_ms);
void actors__format_time(uint64_t unix_ms, char *buf, size_t size);
/* key then value helpers for maps. */
void actors__pack_key(msgpack_packer *p, const char *key);
static inline void
msgpack_pack_bool(msgpack_packer *p, bool v)
{
	if (v)
		msgpack_pack_true(p);
	else
		msgpack_pack_false(p);
}

/* ---- cursors (cursor.c) ------------------------------------------------ */

/* What a cursor carries: which listing it belongs to and the boundary
 * id (exclusive) the next page starts from. */
typedef enum actors__cursor_kind {
	ACTORS_CURSOR_FEED = 1,
	ACTORS_CURSOR_USER_POSTS = 2,
	ACTORS_CURSOR_FOLLOWERS = 3,
	ACTORS_CURSOR_FOLLOWING = 4,
	ACTORS_CURSOR_COMMENTS = 5,
} actors__cursor_kind;

typedef struct actors__cursor {
	uint8_t kind;        /* actors__cursor_kind */
	uint64_t owner;      /* whose listing (user or post id) */
	uint64_t boundary;   /* exclusive bound: next page is beyond it */
} actors__cursor;

/* base64url without padding of a 32-byte record; fits in this many bytes
 * with the NUL. */
#define ACTORS_CURSOR_TEXT_BYTES 48u
void actors__cursor_encode(const actors__cursor *c, char *out, size_t size);
/* API_EINVALID for anything not produced by actors__cursor_encode (wrong
 * length, alphabet, version, checksum) or of another kind/owner. */
int actors__cursor_decode(const char *text, uint8_t kind, uint64_t owner,
	actors__cursor *out);

/* ---- ranking (feed.c) -------------------------------------------------- */

typedef struct actors__rank_input {
	uint64_t now_ms;       /* reader's wall clock */
	uint64_t created_ms;   /* post's time */
	uint32_t likes;
	uint32_t comments;
	double affinity;       /* reader's decayed interactions with author */
} actors__rank_input;
double actors__rank_score(const actors__rank_input *in);

/* Affinity decays with this half-life: a like a week ago weighs half. */
#define ACTORS_AFFINITY_HALF_LIFE_MS (7ull * 24 * 3600 * 1000)
double actors__affinity_decay(double score, uint64_t age_ms);

/* ---- message types --------------------------------------------------------
 * Shared by every kind of the social core: */
#define ACTORS_T_DURABLE 1u        /* ps_durable_notice for our record */
#define ACTORS_T_EFFECT_CONFIRM 2u /* ps_effect_confirm from a target */
#define ACTORS_T_PUSH_ACK 3u       /* u64 push id: a follower applied it */
#define ACTORS_T_RESEND 4u         /* timer: re-send unsent effects */
#define ACTORS_T_REDRIVE 5u        /* timer: re-send unconfirmed effects */
/* Effects and pushes still unconfirmed this long after they went out are
 * sent again (and again, at this interval): a target that crashed, whose
 * journal failed, or that was cut off before it applied one never
 * confirms, and nothing else would re-send it short of the source's own
 * re-activation. Targets apply duplicates idempotently. 2 s is far above
 * a confirmation's round trip and short next to a client's patience. */
#define ACTORS_REDRIVE_MS 2000u
#define ACTORS_T_PUSH_ACKS 6u      /* u64 push id, u32 n, n follower ids:
				      their copies are in committed snapshots */
#define ACTORS_T_ACK_KICK 7u       /* timer: start the checkpoint that
				      lets deferred acknowledgements go */
/* Deferred acknowledgements are gathered this long before the
 * checkpoint that releases them starts: a checkpoint saves every dirty
 * actor whole, so it must come seldom enough that an active follower is
 * snapshotted once for many posts (a snapshot costs several journal
 * records), and often enough that recovery re-drives little. */
#define ACTORS_ACK_CHECKPOINT_MS 5000u
/* A kick timer that has not fired this long after it was armed is taken
 * as lost (its actor passivated, or its partition moved to another node
 * with the timer), and the next deferred acknowledgement arms another:
 * otherwise the node's acknowledgements would wait for ever. */
#define ACTORS_ACK_KICK_STALE_MS (4u * ACTORS_ACK_CHECKPOINT_MS)
/* Redrive firings a push whose acknowledgements are deferred skips
 * before it is sent again to those that still owe: 8 x 2 s is three
 * gathering spells, past any acknowledgement that was only waiting. */
#define ACTORS_DEFERRED_REDRIVE_FIRINGS 8u
/* Follower ids carried by one ACTORS_T_PUSH_ACKS message (64 KiB). */
#define ACTORS_ACK_IDS_PER_MESSAGE 8192u
/* Client inbox, plain messages: */
#define ACTORS_T_POOL_DONE 50u     /* password pool result */
#define ACTORS_T_STREAM_EVENT 51u  /* a live stream event for a session:
				      inbox_stream_message_encode */

/* user kind */
enum {
	USER_T_CREATE = 100,     /* effect from names: create the account */
	USER_T_PROFILE,          /* ask: viewer -> profile body */
	USER_T_SUMMARY,          /* ask: -> {user_id, username, pic} */
	USER_T_UPDATE,           /* ask: bio / pic */
	USER_T_CREDENTIALS,      /* ask: -> password hash */
	USER_T_FOLLOW,           /* ask: follow/unfollow target */
	USER_T_FOLLOWER_SET,     /* effect: follower added/removed */
	USER_T_FOLLOW_LIST,      /* ask: followers/following page of ids */
	USER_T_POST_CREATE,      /* ask: caption, media */
	USER_T_OWN_POSTS,        /* ask: page of own post ids */
	USER_T_OWN_POST_REMOVE,  /* effect from a post: it was deleted */
	USER_T_TIMELINE_ADD,     /* push: post into the home timeline */
	USER_T_PULL_ON,          /* push: start pulling this followee */
	USER_T_FEED_CANDIDATES,  /* ask: timeline refs + pulls + affinities */
	USER_T_RECENT,           /* ask: own unpushed posts below a bound */
	USER_T_INTERACTION,      /* plain: reader liked/commented an author */
	/* engagement (user_engage.c) */
	USER_T_LIKE,             /* ask: rate-checked like, forwarded to post */
	USER_T_COMMENT,          /* ask: rate-checked comment, forwarded */
	USER_T_NOTIFY,           /* effect: a notification for this user */
	USER_T_NOTIFICATIONS,    /* ask: a page of the inbox */
	USER_T_NOTIFY_READ,      /* ask: everything up to seq is read */
	USER_T_STORY_POST,       /* ask: media id, expiry */
	USER_T_STORY_ADD,        /* push: a followee posted a story */
	USER_T_STORY_FEED,       /* ask: authors to build trays from */
	USER_T_STORIES_ACTIVE,   /* ask: summary + visible stories */
	USER_T_STORY_SEEN,       /* ask: mark a story seen */
	USER_T_STORY_EXPIRE,     /* timer: collect expired stories */
	USER_T_STREAM,           /* ask (subscribe), plain (ack, renew,
				  * unsubscribe) */
	USER_T_PRESENCE,         /* plain: a follower came online or left */
	USER_T_LIVE,             /* plain: a live-only event for the stream */
	USER_T_POST_EVENT,       /* plain from an own post: it changed */
	USER_T_IDEM_BEGIN,       /* ask: key, digest -> go, replay or refusal */
	USER_T_IDEM_FINISH,      /* ask: key, digest, code, body */
	USER_T_IDEM_ABORT,       /* plain: forget a running key */
	USER_T_LIVE_WANT,        /* plain from a follower with a stream: the
				    event data of a pushed post, as a
				    USER_T_LIVE to it */
};

/* post kind */
enum {
	POST_T_INIT = 200,       /* effect from the author: create */
	POST_T_GET,              /* ask: viewer -> post body */
	POST_T_SUMMARY,          /* ask: viewer -> summary header + body */
	POST_T_DELETE,           /* ask: viewer */
	POST_T_LIKE,             /* ask: viewer, like/unlike */
	POST_T_COMMENT_ADD,      /* ask: viewer, username, text */
	POST_T_COMMENT_DELETE,   /* ask: viewer, comment id */
	POST_T_COMMENTS,         /* ask: page */
	POST_T_MEDIA,            /* plain: media status/hash changed */
	POST_T_LIKE_FWD,         /* plain from the liker's actor: reply-to,
				    then the POST_T_LIKE payload */
	POST_T_COMMENT_FWD,      /* plain from the commenter's actor: reply-to,
				    then the POST_T_COMMENT_ADD payload */
};

/* username index kind */
enum {
	NAMES_T_CLAIM = 300,     /* ask: name, user id, email, hash */
	NAMES_T_LOOKUP,          /* ask: name -> user id */
};

/* Journal record types (per kind; the kind disambiguates). */
enum {
	USER_R_CREATED = 1,
	USER_R_PROFILE = 2,
	USER_R_FOLLOWING = 3,    /* target, on/off */
	USER_R_FOLLOWER = 4,     /* follower, on/off */
	USER_R_POSTED = 5,       /* post id, pushed flag, init payload */
	USER_R_POST_REMOVED = 6,
	USER_R_TIMELINE = 7,     /* post id, author id */
	USER_R_PULL = 8,         /* followee */
	USER_R_PUSH_DONE = 9,    /* push id */
	USER_R_STORY = 10,       /* story id, media, expiry, time, pushed */
	USER_R_STORY_SEEN = 11,  /* story id, time */
	USER_R_STORY_REF = 12,   /* a followee's story: author, id, expiry */
	USER_R_NOTIFY = 13,      /* an inbox_event and the time it arrived */
	USER_R_NOTIFY_READ = 14, /* up to seq */
	USER_R_IDEM = 15,        /* a keyed request's first answer */
	USER_R_STREAM_MARK = 16, /* the stream published since activation */
	POST_R_INIT = 20,
	POST_R_DELETED = 21,
	POST_R_LIKE = 22,        /* viewer, on/off */
	POST_R_COMMENT = 23,
	POST_R_COMMENT_DELETED = 24,
	POST_R_MEDIA = 25,
	NAMES_R_CLAIM = 40,
};

/* What a durable notice's cookie carries back: who to answer and what
 * the write was. Exactly PS_NOTICE_COOKIE_BYTES_MAX bytes. */
typedef struct actors__cookie {
	uint32_t from_kind;
	uint32_t event;       /* the *_T_ request type or *_R_ record type */
	uint64_t from_id;
	uint64_t correlation; /* 0: nobody to answer */
	uint64_t extra;       /* an id the answer needs (post, comment) */
} actors__cookie;
static_assert(sizeof(actors__cookie) == 32, "cookie fits a notice");

static inline actors__cookie
actors__cookie_make(const actors__reply_to *to, uint32_t event,
	uint64_t extra)
{
	actors__cookie c = {to->from.kind, event, to->from.id,
		to->correlation, extra};
	return c;
}

static inline actors__reply_to
actors__cookie_reply_to(const actors__cookie *c)
{
	actors__reply_to to = {rt_addr_make(c->from_kind, c->from_id),
		c->correlation};
	return to;
}


/* ---- the api object and the node-wide registry ------------------------- */

typedef struct actors__pool actors__pool;

struct api {
	rt_runtime *rt;
	ps_node *store;               /* NULL: no durability */
	api_config cfg;
	actors__idgen ids;
	rt_actor_ops user_ops;
	rt_actor_ops post_ops;
	rt_actor_ops names_ops;
	actors__pool *pool;           /* password hashing threads */
	_Atomic uint64_t local_sequence; /* no-store "LSNs" */
	char media_base_url[128];
	/* Drawn at api_create: live sessions stored in a snapshot under
	 * another incarnation belong to a process that is gone. */
	uint64_t incarnation;
	/* Deferred push acknowledgements (durable.c); made at first use. */
	_Atomic(struct actors__acks *) acks;
	/* Summaries of the posts active here (post_views.c). */
	struct actors__post_views *post_views;
};

/*
 * True when the caller of an engagement ask (a like, a follow) has given
 * up on it: deadline_ms, the wall ms at which the ask timed out on the
 * caller's clock (0: a sender that stamps none), is past on this node's
 * clock by more than the clocks may be apart (cfg.clock_skew_ms_max, so
 * an ask in time is never refused for a clock that runs ahead). Such an
 * ask is refused, not run: its caller was told the outcome is unknown
 * and may have made a later call that went ahead of it (through another
 * node, or while this one sat in a link to a node that was cut off), and
 * running it now would undo that call. An ask overtaken by less than
 * twice the skew bound can still slip through: asks carry no deadline in
 * the runtime's own header (measured on each node's own clock, which
 * would close that too).
 */
static inline bool
actors__ask_expired(const api *a, uint64_t deadline_ms)
{
	if (deadline_ms == 0 ||
		deadline_ms > UINT64_MAX - a->cfg.clock_skew_ms_max)
		return false;
	return rt_wall_ms(a->rt) > deadline_ms + a->cfg.clock_skew_ms_max;
}

/* The api that registered kinds on rt (actor code finds its api here:
 * the runtime carries no user pointer). A handful of entries, written at
 * api_create and api_destroy, read lock-free. */
api *actors__api_of(rt_runtime *rt);

/* Journals an event of self and arranges an ACTORS_T_DURABLE notice with
 * cookie to self when it is durable. With no store the notice is sent at
 * once. *lsn_out gets the record's LSN (a local sequence without store).
 * Returns 0 or API_EUNAVAILABLE (journal full or failed). */
int actors__journal(api *a, rt_actor *self, uint32_t record_type,
	const void *payload, size_t length, const actors__cookie *cookie,
	uint64_t *lsn_out);
/* Journals an event of self with no notice of its own: an actor that
 * journals many uses one actors__barrier for all of them. *lsn_out as
 * actors__journal. Returns 0 or API_EUNAVAILABLE. */
int actors__journal_quiet(api *a, rt_actor *self, uint32_t record_type,
	const void *payload, size_t length, uint64_t *lsn_out);
/* A notice once everything journaled so far is durable, no record. */
int actors__barrier(api *a, rt_actor *self, const actors__cookie *cookie);
/* Sends the effects of o whose events are durable up to lsn and, while
 * any effect stays unconfirmed, keeps one ACTORS_T_REDRIVE timer armed
 * (*armed tracks it; a field of the kind's volatile state). */
void actors__outbox_run(api *a, rt_actor *self, struct ps_outbox *o,
	uint64_t lsn,
	bool *armed);
/* The ACTORS_T_REDRIVE timer fired: every unconfirmed effect goes again
 * (in sequence order), and the timer is re-armed while any remains. */
void actors__outbox_redrive(api *a, rt_actor *self, struct ps_outbox *o,
	uint64_t lsn, bool *armed);
/* Arms the ACTORS_T_REDRIVE timer once (*armed). */
void actors__redrive_arm(api *a, rt_actor *self, bool *armed);
/* From on_passivate: an actor that still owes effects or pushes (owes)
 * asks the store to wake it when the node serves again
 * (ps_node_wake_later): its redrive timer, firing while the node holds
 * no lease, finds nobody to wake. */
void actors__passivate_owing(api *a, rt_actor *self, bool owes);
/* Whether a state of the kind owes effects (api_state_owes). */
bool actors__user_owes(const void *state);
bool actors__post_owes(const void *state);
bool actors__names_owes(const void *state);

/*
 * Deferred acknowledgements, for state a follower derives from another
 * actor's journaled event and can get again from it (a post in a home
 * timeline: the author's post record is journaled and its push is
 * re-driven until acknowledged). The follower applies it in memory,
 * marks itself dirty and calls this instead of journaling a record per
 * copy: once a checkpoint that started after the call has committed
 * (the follower's snapshot holds the copy, or a later one does), the
 * node sends `source` one ACTORS_T_PUSH_ACKS per key listing the
 * followers. Checkpoints for it start here, at most one per
 * ACTORS_ACK_CHECKPOINT_MS (an ACTORS_T_ACK_KICK timer to self waits
 * out the rest). A crash before the commit loses the copies and their
 * acknowledgements, so the source sends them again. Actor context.
 * 0 or API_EUNAVAILABLE (out of memory: no acknowledgement, the source's
 * redrive sends again).
 */
int actors__ack_after_checkpoint(api *a, rt_actor *self, uint64_t source,
	uint64_t key);
/* The ACTORS_T_ACK_KICK timer fired at self. */
void actors__acks_kick(api *a, rt_actor *self);
/* Frees what is still deferred (after ps_node_close). */
void actors__acks_destroy(api *a);
/* Maps a notice status to an api code. */
int actors__notice_code(int status);

/* ---- password pool (api.c) --------------------------------------------- */

/* Hashes or verifies off the scheduler threads; the result comes back to
 * the client's inbox as an ACTORS_T_POOL_DONE message with token. */
int actors__pool_hash(api *a, rt_addr inbox, uint64_t token,
	const char *password);
int actors__pool_verify(api *a, rt_addr inbox, uint64_t token,
	const char *hash, const char *password);
/* ACTORS_T_POOL_DONE payload: token, code (0 ok, API_EUNAUTHORIZED for a
 * mismatch), hash string. */
typedef struct actors__pool_done {
	uint64_t token;
	int32_t code;
	char hash[128]; /* crypto_pwhash_STRBYTES */
} actors__pool_done;

/* ---- the client's ask machinery (client.c) ----------------------------- */

/* A continuation: m is the reply (or timeout / undeliverable notice),
 * borrowed until return. */
typedef void (*actors__step)(api_client *c, void *op, const rt_message *m);

/* Asks `to` with payload bytes (copied); step(op, reply) runs later from
 * poll/wait. Returns 0 or API_EUNAVAILABLE. */
int actors__ask(api_client *c, rt_addr to, uint32_t type,
	const void *payload, size_t length, actors__step step, void *op);
/* A client-local token for pool jobs: the POOL_DONE message with it
 * runs step. */
uint64_t actors__token(api_client *c, actors__step step, void *op);
void actors__token_cancel(api_client *c, uint64_t token);
api *actors__client_api(const api_client *c);
rt_addr actors__client_addr(const api_client *c);
/* The user id c has seen the lowercased name resolve to, or 0. Names
 * never change owner (names.c), so a kept id stays right. */
uint64_t actors__client_name_get(const api_client *c, const char *name);
/* Keeps name -> user_id (user_id not 0); may replace another name. */
void actors__client_name_put(api_client *c, const char *name,
	uint64_t user_id);

/* Splits a reply: *code (timeouts -> API_EUNAVAILABLE, undeliverable ->
 * API_ENOTFOUND/API_EUNAVAILABLE), detail and body borrowed from m. */
void actors__reply_parse(const rt_message *m, int *code, const char **detail,
	size_t *detail_length, const void **body, size_t *body_length);

/* Runs cb with a result built from code, detail, body bytes (msgpack,
 * may be NULL). Decrements the client's pending count. */
void actors__complete(api_client *c, api_callback cb, void *arg, int code,
	const char *detail, size_t detail_length, const void *body,
	size_t body_length);
/* Unpacks bytes holding exactly one msgpack object into *out, its
 * containers' elements taken from zone (unpack.c): the object msgpack-c's
 * msgpack_unpack gives for them, strings, bins and exts pointing into
 * bytes (borrowed: valid while bytes and the zone are). 0, API_EINVALID
 * (not exactly one well-formed object, or nested deeper than msgpack-c
 * allows) or API_EUNAVAILABLE (out of memory). Any thread. */
int actors__unpack(const void *bytes, size_t length, msgpack_zone *zone,
	msgpack_object *out);
/* One item of a page: where its msgpack bytes start in the page's
 * buffer, and how many. */
typedef struct actors__span {
	size_t offset;
	size_t length;
} actors__span;
/* Runs cb with API_OK and the body {items: [...], next_cursor} built
 * straight from the items' msgpack bytes (each one object, in bytes at
 * its span; borrowed) and next_cursor (NULL: nil; borrowed), without
 * packing the page into one buffer to unpack it again (body_bytes is
 * NULL). A client with packed bodies (api_client_set_packed_bodies)
 * gets the page packed into one buffer as body_bytes instead. An item
 * that is not one msgpack object completes the call with API_EINTERNAL.
 * Decrements the client's pending count. */
void actors__complete_page(api_client *c, api_callback cb, void *arg,
	const void *bytes, const actors__span *items, uint32_t count,
	const char *next_cursor);
/* Forwards a reply message unchanged to cb. */
void actors__complete_reply(api_client *c, api_callback cb, void *arg,
	const rt_message *m);
/* Marks one more call in flight (the matching complete decrements). */
void actors__call_begin(api_client *c);

/* Plain messages that are not replies go here (stream events of other
 * modules); NULL drops them. */
typedef void (*actors__plain_hook)(api_client *c, const rt_message *m);
void actors__set_plain_hook(api_client *c, actors__plain_hook hook);

/* The live stream layer's per-client table (stream_client.c): NULL until
 * the first api_stream_open; api_client_destroy frees it with
 * actors__streams_free. */
void **actors__client_streams(api_client *c);
/* A stream's subscription id, as its session is known at the actor. */
uint64_t actors__stream_subscription_id(const api_stream *s);
void actors__streams_free(void *streams);

/* Accounts one caption or comment notifies by @mention, at most: the
 * first ones named (Instagram caps a caption at 20 mentions). */
#define ACTORS_MENTIONS_MAX 20u

/* ---- notifications and search effects (user_engage.c) ------------------ */

/* Adds to outbox the effect (USER_T_NOTIFY to target's actor) that
 * notifies target of an event of inbox type `type` by actor, created by
 * the source's event at lsn. Nothing when actor is target or either is 0:
 * nobody is notified of their own doing. Call from a source's apply, so
 * replay rebuilds it. 0, or API_EUNAVAILABLE when the outbox is full or
 * memory is short (the notification is dropped: a like never fails for
 * its notification). */
int actors__notify_effect(struct ps_outbox *outbox, uint32_t type,
	uint64_t actor, uint64_t target, uint64_t post_id, uint64_t comment_id,
	uint64_t created_at_ms, uint64_t lsn);
/* Adds the search index effects of a post (index, or unindex when
 * remove) with caption: one SEARCH_T_EFFECT per shard its terms fall in.
 * 0 or API_EUNAVAILABLE. */
int actors__search_post_effects(struct ps_outbox *outbox, uint64_t post_id,
	const char *caption, bool remove, uint64_t lsn);

/* ---- actor kinds ------------------------------------------------------- */

void actors__user_ops(rt_actor_ops *ops);
/* Registers the engagement's own kinds (the search shards). */
int actors__engage_register(rt_runtime *rt);
void actors__post_ops(rt_actor_ops *ops);
void actors__names_ops(rt_actor_ops *ops);

/* Feed candidates answer (USER_T_FEED_CANDIDATES): header, then refs,
 * then pull followees, then affinities, all wire-encoded. */
typedef struct actors__ref {
	uint64_t post_id;
	uint64_t author_id;
} actors__ref;

/* Post summary answer (POST_T_SUMMARY): these, then the body. */
typedef struct actors__summary {
	uint64_t post_id;
	uint64_t author_id;
	uint32_t likes;
	uint32_t comments;
	uint32_t deleted;
	uint32_t reserved;
} actors__summary;
static_assert(sizeof(actors__summary) == 32, "summary on the wire");

/* ---- post views (post_views.c) ------------------------------------------ */

/* Likers a published view copies (a linear scan answers liked_by_me); a
 * post with more has its liked_by_me asked. 64 ids = 512 bytes. */
#define POST_VIEW_LIKERS_MAX 64u

typedef struct actors__post_view actors__post_view;
typedef struct actors__post_views actors__post_views;
int actors__post_views_create(actors__post_views **out);
/* After the runtime stopped: no actor publishes any more. */
void actors__post_views_destroy(actors__post_views *v);
/* Post actor (owner: its state): its summary and the POST_T_SUMMARY body
 * for a viewer who has not liked it, whose liked_by_me false byte is at
 * liked_offset; likers[likers_count] its likers (only the first
 * POST_VIEW_LIKERS_MAX are read: more means not kept). Copies all;
 * replaces owner's earlier view. On allocation failure the view is
 * withdrawn (readers ask). */
void actors__post_views_put(actors__post_views *v, const void *owner,
	const actors__summary *summary, const void *body, size_t body_length,
	size_t liked_offset, const uint64_t *likers, uint32_t likers_count);
/* Withdraws post_id's view if owner published it. */
void actors__post_views_remove(actors__post_views *v, uint64_t post_id,
	const void *owner);
/* Any thread: 1 and the summary (and, unless deleted, the body for
 * viewer appended to *bodies, *body_length bytes of it; 0 for none) when
 * the view answers for viewer; 0 when the post actor must be asked (also
 * when *bodies cannot grow). */
int actors__post_views_get(actors__post_views *v, uint64_t post_id,
	uint64_t viewer, actors__summary *summary, rt_buffer *bodies,
	size_t *body_length);
/* Any thread: starts loading post_id's view into this core's cache (its
 * entry and the start of its body), for a get a few items later; a
 * hint only (nothing when the post has no view here). */
void actors__post_views_prefetch(actors__post_views *v, uint64_t post_id);
/* Any thread: the step before actors__post_views_prefetch, some items
 * earlier: starts loading the lock of post_id's stripe and the slot its
 * probe starts at (the prefetch reads that slot for the entry's
 * address). Neither takes the stripe's lock; a hint only. */
void actors__post_views_prefetch_slot(actors__post_views *v,
	uint64_t post_id);
void actors__post_views_counts(actors__post_views *v, uint64_t *hits,
	uint64_t *misses);

/* ---- call helpers (calls.c), shared with feed.c ------------------------ */

/* Completes (cb, arg) with code and detail from the next poll. Counts the
 * call. Returns 0 (the callback will run) or API_EUNAVAILABLE. */
int calls__fail(api_client *c, api_callback cb, void *arg, int code,
	const char *detail);
/* One ask whose reply is the answer. Counts the call. */
int calls__forward(api_client *c, rt_addr to, uint32_t type,
	const wire_writer *w, api_callback cb, void *arg);
typedef void (*calls__resolved_fn)(api_client *c, void *op,
	uint64_t user_id);
/* Resolves a username, then next(op, user id); an unknown name completes
 * with missing_code. Takes next_op (freed on every failure path). Counts
 * the call. */
int calls__resolve(api_client *c, const char *name, api_callback cb,
	void *arg, calls__resolved_fn next, void *next_op, int missing_code);
/* Limit (default/max checked) and boundary (first when no cursor) of a
 * page; API_EINVALID for a bad limit or cursor. */
int calls__page_args(const api_page *page, uint8_t kind, uint64_t owner,
	uint64_t first, uint32_t *limit, uint64_t *boundary);

/* ---- keyed writes and mentions (engage_calls.c), for calls.c --------- */

/* Runs a write again with ctx (borrowed; its idempotency key is NULL)
 * and args (the call's own copy of its arguments). Returns like the api
 * call it wraps. */
typedef int (*calls__keyed_fn)(api_client *c, const api_ctx *ctx,
	void *args, api_callback cb, void *arg);
/*
 * A write with ctx->idempotency_key: asks the acting user's actor for
 * the key; a first use runs fn and journals its answer (code and body)
 * before cb hears it; a repeat with the same body digest answers the
 * first answer without running fn; another digest is API_EIDEMPOTENCY,
 * a repeat while the first runs API_ECONFLICT. Answers that say "try
 * again" (503, 500, 429) are not kept. args is taken (freed with
 * free_args, may be NULL for free()). Counts the call.
 */
int calls__keyed(api_client *c, const api_ctx *ctx, calls__keyed_fn fn,
	void *args, void (*free_args)(void *), api_callback cb, void *arg);
/* The accounts text @mentions, resolved by name (at most
 * ACTORS_MENTIONS_MAX, unknown names skipped): next(op, ids, count) runs
 * exactly once, from a later poll (or at once when text names nobody). */
typedef void (*calls__mentions_fn)(api_client *c, void *op,
	const uint64_t *ids, uint32_t count);
void calls__mentions(api_client *c, const char *text, calls__mentions_fn next,
	void *op);

#endif /* FLOCK_ACTORS_INTERNAL_H */
