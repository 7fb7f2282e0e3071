/*
 * actors/user_internal.h — the user actor's state and the helpers its two
 * files share: user.c (profile, follow graph, timeline, posts, fan-out)
 * and user_engage.c (stories, notifications, the live stream, presence,
 * rate limits, idempotency keys). Nothing outside those two files
 * includes it.
 *
 * Invariants: see user.c (sets sorted, counters exact, pushes re-driven
 * until acknowledged) and user_engage.c (stream seqs never reused, a
 * notification inserted once per event id).
 */
#ifndef FLOCK_ACTORS_USER_INTERNAL_H
#define FLOCK_ACTORS_USER_INTERNAL_H

#include "actors/engage.h"
#include "actors/internal.h"
#include "persistence/persistence.h"

/* Interaction scores kept per user: the authors a reader interacts with
 * most; 64 covers a reader's close circle and keeps lookups linear. */
#define USER_AFFINITY_ENTRIES_MAX 64u
/* Sends of one push per turn: yields to other actors between slices so
 * one celebrity's post does not hold a worker for 100,000 sends. */
#define USER_PUSH_SLICE_SENDS 4096u
/* A push to follower i asks the runtime to start loading the registry
 * entry of follower i + this (and so, RT_PREFETCH_LAG hints later, the
 * follower's actor header): a send's lookup and its mailbox push each
 * missed the cache once per follower; this many sends ahead (~0.3 us
 * each) covers both misses. */
#define USER_PUSH_PREFETCH_DISTANCE (2u * RT_PREFETCH_LAG)
/* Delay before re-sending after a full mailbox or pool (backpressure). */
#define USER_RESEND_DELAY_MS 5u
/* Mailbox bound: a push of 100,000 posts comes back as as many acks. */
#define USER_MAILBOX_MESSAGES_MAX (1u << 20)
/* Push keys: post id, or post id with this bit for a "pull me" notice. */
#define USER_PUSH_PULL_BIT (1ull << 63)

typedef struct id_set {
	uint64_t *ids; /* sorted ascending, distinct */
	uint32_t count;
	uint32_t capacity;
} id_set;

typedef struct own_post {
	uint64_t post_id;
	uint32_t pushed; /* 1: fanned out; 0: pulled by followers */
	uint32_t reserved;
} own_post;

typedef struct affinity {
	uint64_t author_id;
	double score;       /* decayed interaction weight at at_ms */
	uint64_t at_ms;
} affinity;

/* What a push carries to each target. The first three are durable: the
 * push is stored with the state and journaled done once every target
 * acknowledged. A live push is volatile: sent once, never acknowledged,
 * dropped by a crash (the streams it feeds resync after one anyway). */
typedef enum user_push_kind {
	USER_PUSH_TIMELINE = 0, /* a post into followers' timelines */
	USER_PUSH_PULL = 1,     /* "pull my posts": key has USER_PUSH_PULL_BIT */
	USER_PUSH_STORY = 2,    /* a story into followers' tray index */
	USER_PUSH_LIVE = 3,     /* a live-only stream event (USER_T_LIVE) */
} user_push_kind;

/* USER_T_LIVE flags. */
#define USER_LIVE_F_ONLINE_ONLY 1u /* store only if a session is open */
#define USER_LIVE_F_MUST_HAVE 2u   /* only if the key is in the timeline */
#define USER_LIVE_F_PRESENCE 4u    /* sent because the target said it was
				      online: answer "offline" if not */

/* The stream event data of an author's latest timeline pushes, kept
 * after each push ends (volatile): a follower with a stream asks for it
 * (USER_T_LIVE_WANT) after the push, which carries the post's reference
 * only. Without a store a push ends as soon as it is sent, before those
 * asks arrive; an author answers what is past these with the post's
 * reference, as for a push re-sent after a crash. */
#define USER_LIVE_BODIES_MAX 4u

typedef struct live_body {
	uint64_t key;        /* post id; 0: empty */
	unsigned char *body; /* owned msgpack event data */
	uint32_t body_length;
} live_body;

typedef struct live_bodies {
	live_body entries[USER_LIVE_BODIES_MAX];
	uint32_t next; /* the entry the next kept body replaces */
} live_bodies;

typedef struct push {
	uint64_t key;       /* post or story id, | USER_PUSH_PULL_BIT */
	uint64_t author_id; /* timeline pushes: the post's author (self) */
	uint64_t target;    /* 0: every follower (or targets); else one */
	uint64_t next_id;   /* followers with id >= this are still to send */
	uint64_t lsn;       /* the event that made it; send once durable */
	uint32_t sent;
	uint32_t acked;
	bool done_sending;
	uint8_t kind;       /* user_push_kind */
	uint8_t live_type;  /* LIVE: api_event_type */
	uint8_t live_flags; /* LIVE: USER_LIVE_F_* */
	uint32_t targets_count; /* LIVE to a fixed list (online followers) */
	uint32_t targets_next;  /* index of the next target to send to */
	uint64_t *targets;      /* owned, ascending; NULL: the followers */
	/* Durable pushes: targets sent to and not acknowledged yet, owned
	 * (volatile: rebuilt when the push restarts). The
	 * push is done when it went to everyone and this is empty; the
	 * redrive timer sends it again to whoever is still here. */
	uint64_t *owed;     /* targets sent to, ascending (a push walks its
			       followers in id order, so adding is an append);
			       owed_paid marks those that acknowledged */
	uint64_t *owed_paid;    /* bitmap over owed, owed_capacity bits */
	uint32_t owed_length;   /* entries in owed, paid or not */
	uint32_t owed_count;    /* entries not paid: the targets that owe */
	uint32_t owed_capacity; /* entries allocated (a multiple of 64) */
	uint32_t owed_hint;     /* where the last ack was found: acks come in
				   ascending runs, so the next is just after */
	uint32_t redrive_skipped; /* redrive firings since the last re-send
				     of a timeline push (volatile) */
	unsigned char *body;    /* owned msgpack event data; NULL: none */
	uint32_t body_length;
} push;

/* A followee whose story was pushed here, and when its newest one
 * expires: the trays of GET /v1/stories ask exactly these authors (and
 * the celebrities pulled). */
typedef struct story_author {
	uint64_t author_id;
	uint64_t expires_at_ms;
} story_author;

/* The effect sequence of the last follower-set effect taken from one
 * follower (user.c's follower_seqs). */
typedef struct follower_seq {
	uint64_t follower_id;
	uint64_t sequence; /* the follower's outbox sequence */
} follower_seq;

/* Follower changes whose effect sequence a user keeps: an older effect
 * comes again only while its follower still holds it unconfirmed, which
 * the later one's arrival ends at the next re-drive (2 s), or after a
 * partition or crash heals (minutes): a thousand changes of one user's
 * followers is past that for anyone but a celebrity being followed
 * thousands of times a minute. 16 KiB at the cap. */
#define USER_FOLLOWER_SEQS_MAX 1024u

typedef struct user_state {
	uint64_t id;
	bool exists;
	bool has_unpushed;
	char username[API_USERNAME_BYTES_MAX + 2];
	char *email;
	char *bio;
	char *password_hash;
	uint64_t profile_pic_media_id;
	id_set followers;
	id_set following;
	id_set pulls;
	own_post *posts; /* sorted by post id ascending */
	uint32_t posts_count;
	uint32_t posts_capacity;
	actors__ref *ring; /* timeline, ring_count entries from ring_head */
	uint32_t ring_head;
	uint32_t ring_count;
	uint32_t ring_capacity;
	uint32_t affinities_count; /* here: fills the hole before stream */
	/* Next to the ring: a timeline push reads both, and the state is
	 * 2 KiB (a field per cache line is a miss per follower of a
	 * fan-out). */
	inbox_stream *stream;       /* NULL until the first session */
	affinity affinities[USER_AFFINITY_ENTRIES_MAX];
	live_bodies *live_bodies; /* NULL until a push with a body ends */
	push *pushes;
	uint32_t pushes_count;
	uint32_t pushes_capacity;
	bool resend_armed;
	bool redrive_armed;   /* an ACTORS_T_REDRIVE timer is set (not stored) */
	uint64_t durable_lsn; /* highest notice seen (not stored) */
	ps_outbox outbox;
	/* ---- engagement (user_engage.c) ---- */
	uint64_t last_lsn;          /* the last record written (not stored) */
	bool replayed;              /* records were replayed at load (not
				       stored) */
	bool passivating;           /* the next snapshot is the last of this
				       activation (not stored) */
	bool stream_marked;         /* a mark is journaled for this
				       activation (not stored) */
	bool stream_exact;          /* decoded: the stream was saved by a
				       passivation, nothing followed */
	bool search_indexed;        /* the index has this user */
	uint64_t search_followers;  /* followers count the index last got */
	rate_state rates;
	idem_table idem;
	inbox inbox;
	stories *stories;           /* own; NULL until the first story */
	stories_seen seen;
	story_author *story_authors; /* ascending author id */
	uint32_t story_authors_count;
	uint32_t story_authors_capacity;
	uint64_t story_timer_at_ms; /* the armed expiry timer's wall time; 0:
				       none (not stored) */
	uint64_t stream_seq_floor;  /* a stream created from now on starts
				       its seqs here (see user_engage.c) */
	uint64_t stream_incarnation; /* api incarnation of its subscribers */
	uint64_t offline_at_ms;     /* wall ms the last session left */
	inbox_presence online_followers; /* celebrities: who to push live */
	/* The followers who changed lately (followed or left) with the
	 * sequence of the last follower-set effect taken from each, oldest
	 * first, at most USER_FOLLOWER_SEQS_MAX: an effect not newer than
	 * that is an old one come again (re-sent after a crash), and
	 * applying it would undo the newer one. NULL until the first. */
	follower_seq *follower_seqs;
	uint32_t follower_seqs_count;
	uint32_t follower_seqs_capacity;
} user_state;

/* ---- user.c, for user_engage.c ---------------------------------------- */

bool user__set_has(const id_set *s, uint64_t id);
bool user__ring_has(const user_state *st, uint64_t post_id);
/* Journals record (w's bytes) with cookie and applies it; sets
 * st->last_lsn. API_OK or API_EUNAVAILABLE. */
int user__write(api *a, rt_actor *self, user_state *st, uint32_t record,
	const wire_writer *w, const actors__cookie *cookie);
void user__pack_summary(api *a, msgpack_packer *p, const user_state *st);
/* profile_pic_url of media_id (nil for 0). */
void user__pack_profile_pic(msgpack_packer *p, uint64_t media_id);
/* True when post_id is an own post (*pushed: fanned out). */
bool user__own_post(const user_state *st, uint64_t post_id, bool *pushed);
/* Adds a durable push of key to every follower (from an apply). */
int user__push_add(user_state *st, uint64_t key, uint64_t lsn,
	user_push_kind kind);
/* Adds a live push of an event of type to every follower (targets NULL)
 * or to the ascending ids of targets (copied), sent once the record at
 * lsn is durable. body (copied) is the event data. 0 or
 * API_EUNAVAILABLE. */
int user__push_live(user_state *st, uint64_t key, api_event_type type,
	uint8_t flags, const uint64_t *targets, uint32_t targets_count,
	const void *body, size_t body_length, uint64_t lsn);
/* Sends what pushes and the outbox owe (after a durable notice). */
void user__pushes_run(api *a, rt_actor *self, user_state *st);

/* ---- user_engage.c, for user.c ---------------------------------------- */

/* Applies an engagement record (live or at replay; a is NULL at replay).
 * RT_ECORRUPT for a malformed one. */
int user__engage_apply(api *a, user_state *st, uint32_t type,
	wire_reader *r, uint64_t lsn);
/* Handles an engagement message; false when m is not one. */
bool user__engage_on_message(api *a, rt_actor *self, user_state *st,
	const rt_message *m);
/* Answers a write of the engagement whose record is durable; false when
 * cookie->event is not one of them. */
bool user__engage_answer(api *a, rt_actor *self, user_state *st,
	const actors__cookie *cookie, int code);
/* Publishes a stream event (the hold policy is user_engage.c's). */
void user__publish(api *a, rt_actor *self, user_state *st,
	api_event_type type, const void *data, size_t length,
	bool online_only);
/* Publishes the notifications added since seq (after a write). */
void user__publish_notifications(api *a, rt_actor *self, user_state *st,
	uint64_t since_seq);
/* A follower's notification of a follow (from USER_R_FOLLOWER). */
void user__notify_follow(user_state *st, uint64_t follower,
	uint64_t created_at_ms);
/* The search index effects of a signup or a follower count change. */
/* The index's entry for st (its username, follower count and profile
 * picture) as effects at lsn: when force, or when the count moved enough
 * (search_user_update_due). */
int user__search_effects(user_state *st, uint64_t lsn, bool force);
/* True when the user has an open session. */
bool user__online(const user_state *st);
/* Tells celebrity followee it (un)follows an online user, or every
 * pulled followee when author is 0. */
void user__presence_send(rt_actor *self, user_state *st, uint64_t author,
	bool on);
/* Would a pushed story (story_id of author, expiring at expires_at)
 * change the tray index? */
bool user__story_ref_wants(const user_state *st, uint64_t author,
	uint64_t story_id, uint64_t expires_at_ms);
/* A followee followed at at_ms: its stories of the last 24 h (never
 * pushed here) are asked for by tray reads until at_ms + 24 h. */
void user__story_followed(user_state *st, uint64_t author, uint64_t at_ms);
/* The live side of a push applied here (a timeline post, a story, a
 * pull): its stream event, or presence with a celebrity. rest is what
 * the push carried after its header; source is the actor that sent it
 * (a timeline post's data is asked of it when rest has none). */
void user__pushed_live(api *a, rt_actor *self, user_state *st,
	uint32_t type, uint64_t key, uint64_t author, uint64_t source,
	const void *rest, size_t rest_length);
/* Packs a feed.post event's data that names the post and its author
 * only (the client fetches the post). */
void user__pack_post_ref(msgpack_packer *p, uint64_t post_id,
	uint64_t author);
/* A rate-limit check for action by this user; false when refused (the
 * refusal is answered to m). */
bool user__rate_allow(api *a, rt_actor *self, user_state *st,
	const rt_message *m, rate_action action);
/* The live side of an own post deleted or changed. */
void user__post_event(api *a, rt_actor *self, user_state *st,
	uint64_t post_id, bool pushed, api_event_type type, const void *body,
	size_t body_length);
/* The sequence of the last follower-set effect taken from follower (0:
 * none kept). */
uint64_t user__follower_seq(const user_state *st, uint64_t follower);
/* Keeps sequence as follower's last (a larger one kept stays); forgets
 * the oldest change past USER_FOLLOWER_SEQS_MAX. 0 or RT_ENOMEM. */
int user__follower_seq_note(user_state *st, uint64_t follower,
	uint64_t sequence);
/* fresh: the store had nothing for this user. */
void user__engage_on_activate(api *a, rt_actor *self, user_state *st,
	bool fresh);
void user__engage_free(user_state *st);
int user__engage_encode(const user_state *st, msgpack_packer *pk);
int user__engage_decode(user_state *st, const msgpack_object *obj);

#endif /* FLOCK_ACTORS_USER_INTERNAL_H */
