/*
 * actors/user_engage.c — the user actor's engagement: the notification
 * inbox, stories (own, the viewer's seen marks, the index of followees'
 * pushed stories), the live stream with its sessions and presence with
 * celebrity followees, rate limits and idempotency keys. The data
 * structures are engage.h's; this file is the actor glue around them.
 *
 * Durability: notifications, stories, seen marks, story refs, read marks
 * and idempotent answers are journaled records applied by
 * user__engage_apply both live and at recovery. Rate buckets, the
 * stream ring, sessions and presence are soft state kept by snapshots.
 *
 * The stream's seq is never given twice. A snapshot written at
 * passivation holds the exact stream; any other load (a checkpoint
 * snapshot, or records replayed after one) may have lost events that a
 * client saw, so the stream drops what it holds and jumps its seq by
 * USER_STREAM_SEQ_GAP: every resume from before then gets a resync. So
 * that "records replayed" covers events that journal nothing (live pushes
 * from celebrities), the first publish of an activation journals a mark.
 *
 * Invariants: a notification is inserted once per event id within the
 * inbox's dedupe window, and never for one's own doing; an idempotency
 * key's answer is journaled before the caller hears it.
 *
 * What it deliberately does not do: hold stream events for a user who
 * has been offline longer than USER_STREAM_HOLD_MS (they refetch), know
 * media status for story items (the client asks the media item), or
 * journal rate buckets (a crash hands back at most the tokens taken since
 * the last checkpoint).
 */
#include "actors/user_internal.h"

#include <stdlib.h>

/* Events held after the last session left: a phone in a tunnel or a tab
 * reloading finds what it missed; a longer absence refetches (resync). */
#define USER_STREAM_HOLD_MS (15ull * 60ull * 1000ull)
/* Seq jump after a load that may have lost events a client saw: more
 * events than one activation ever publishes. */
#define USER_STREAM_SEQ_GAP (1ull << 32)
/* Followees whose pushed stories one user indexes: the following cap;
 * past it the entry that expires first makes room. */
#define USER_STORY_AUTHORS_MAX STORIES_TRAY_AUTHORS_MAX
/* Notifications published from one write (one, in practice). */
#define USER_PUBLISH_NOTIFICATIONS_MAX 8u
#define USER_ENGAGE_SNAPSHOT_VERSION 2u
#define USER_ENGAGE_SNAPSHOT_FIELDS 16u
/* Version 1 had no follower effect sequences. */
#define USER_ENGAGE_SNAPSHOT_V1_FIELDS 15u

int
actors__engage_register(rt_runtime *rt)
{
	return rt_register_kind(rt, SEARCH_KIND, &search_actor_ops);
}

/* ---- effects other actors derive (notifications, search) ---------------- */

int
actors__notify_effect(struct ps_outbox *outbox, uint32_t type,
	uint64_t actor, uint64_t target, uint64_t post_id, uint64_t comment_id,
	uint64_t created_at_ms, uint64_t lsn)
{
	ACTORS_ASSERT(outbox != NULL);
	if (actor == 0 || target == 0 || actor == target)
		return 0;
	inbox_event ev = {
		.event_id = inbox_event_id((inbox_type)type, actor, post_id,
			comment_id),
		.actor_user_id = actor,
		.target_user_id = target,
		.post_id = post_id,
		.comment_id = comment_id,
		.created_at_ms = created_at_ms,
		.type = (inbox_type)type,
	};
	actors__body b;
	actors__body_init(&b);
	int rc = inbox_event_encode(&ev, &b.packer);
	if (rc == 0 && ps_outbox_add(outbox,
			       rt_addr_make(ACTORS_KIND_USER, target),
			       USER_T_NOTIFY, b.buffer.data, b.buffer.size, lsn,
			       NULL) != 0)
		rc = API_EUNAVAILABLE;
	actors__body_free(&b);
	return rc;
}

/* One SEARCH_T_EFFECT: shard, update type, the update's msgpack. */
static int
search_effect(struct ps_outbox *outbox, uint32_t shard, uint32_t type,
	const void *update, size_t length, uint64_t lsn)
{
	wire_writer w;
	wire_init(&w);
	wire_u32(&w, shard);
	wire_u32(&w, type);
	wire_bytes(&w, update, length);
	int rc = w.failed ? API_EUNAVAILABLE
			  : ps_outbox_add(outbox, search_shard_addr(shard),
				SEARCH_T_EFFECT, w.bytes, w.length, lsn, NULL);
	wire_free(&w);
	return rc == 0 ? 0 : API_EUNAVAILABLE;
}

int
actors__search_post_effects(struct ps_outbox *outbox, uint64_t post_id,
	const char *caption, bool remove, uint64_t lsn)
{
	ACTORS_ASSERT(outbox != NULL);
	ACTORS_ASSERT(caption != NULL);
	search_terms *t = malloc(sizeof *t);
	if (t == NULL)
		return API_EUNAVAILABLE;
	search_terms_init(t);
	search_terms_from_caption(t, caption);
	uint32_t shards[SEARCH_POST_TERMS_MAX];
	uint32_t n = search_terms_shards(t, shards);
	int rc = 0;
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		actors__body b;
		actors__body_init(&b);
		rc = search_post_message_encode(post_id, t, shards[i],
			&b.packer);
		if (rc == 0)
			rc = search_effect(outbox, shards[i],
				remove ? SEARCH_T_POST_UNINDEX
				       : SEARCH_T_POST_INDEX,
				b.buffer.data, b.buffer.size, lsn);
		actors__body_free(&b);
	}
	free(t);
	return rc;
}

int
user__search_effects(user_state *st, uint64_t lsn, bool force)
{
	if (!st->exists || st->username[0] == '\0')
		return 0;
	uint64_t count = st->followers.count;
	/* A follower count is indexed in steps (search_user_update_due), so a
	 * celebrity's follows do not each cost a message. */
	if (!force && st->search_indexed &&
		!search_user_update_due(st->search_followers, count))
		return 0;
	uint32_t shards[3];
	uint32_t n = search_user_shards(st->username, shards);
	actors__body b;
	actors__body_init(&b);
	int rc = search_user_message_encode(st->id, st->username, count,
		st->profile_pic_media_id, &b.packer);
	for (uint32_t i = 0; i < n && rc == 0; i++)
		rc = search_effect(&st->outbox, shards[i],
			SEARCH_T_USER_UPSERT, b.buffer.data, b.buffer.size,
			lsn);
	actors__body_free(&b);
	if (rc == 0) {
		st->search_indexed = true;
		st->search_followers = count;
	}
	return rc;
}

/* ---- small helpers -------------------------------------------------------- */

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

static uint64_t
wall_ms(api *a)
{
	return rt_wall_ms(a->rt);
}

bool
user__online(const user_state *st)
{
	return st->stream != NULL && st->stream->subscribers_count > 0;
}

/* ---- the live stream -------------------------------------------------------- */

/* Sessions a send found gone (their inbox no longer exists). */
typedef struct deliver_ctx {
	rt_actor *self;
	uint32_t lost_count;
	inbox_stream_subscriber lost[INBOX_STREAM_SUBSCRIBERS_MAX];
} deliver_ctx;

static void
deliver(void *arg, const inbox_stream_subscriber *to,
	const inbox_stream_event *ev)
{
	deliver_ctx *d = arg;
	actors__body b;
	actors__body_init(&b);
	if (inbox_stream_message_encode(to->subscription_id, ev, &b.packer) ==
		0) {
		int rc = rt_send_copy(d->self, to->addr, ACTORS_T_STREAM_EVENT,
			b.buffer.data, (uint32_t)b.buffer.size);
		/* A full inbox loses this event: its session resumes with
		 * since. A missing one is a session gone for good. */
		if (rc == RT_ENOTFOUND && ev->type != API_EVENT_CUT_OFF &&
			d->lost_count < INBOX_STREAM_SUBSCRIBERS_MAX)
			d->lost[d->lost_count++] = *to;
	}
	actors__body_free(&b);
}

void
user__presence_send(rt_actor *self, user_state *st, uint64_t author, bool on)
{
	unsigned char payload[9];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_u64(&w, st->id);
	wire_u8(&w, on ? 1 : 0);
	ACTORS_ASSERT(!w.failed && w.length == sizeof payload);
	if (author != 0) {
		(void)rt_send_copy(self, rt_addr_make(ACTORS_KIND_USER, author),
			USER_T_PRESENCE, payload, sizeof payload);
		return;
	}
	for (uint32_t i = 0; i < st->pulls.count; i++)
		(void)rt_send_copy(self,
			rt_addr_make(ACTORS_KIND_USER, st->pulls.ids[i]),
			USER_T_PRESENCE, payload, sizeof payload);
}

/* After the hub delivered: drops sessions found gone, and tells the
 * celebrities followed when the user came online or left. */
static void
stream_settle(api *a, rt_actor *self, user_state *st, bool was_online,
	const deliver_ctx *d)
{
	for (uint32_t i = 0; i < d->lost_count; i++)
		(void)inbox_stream_unsubscribe(st->stream, d->lost[i].addr,
			d->lost[i].subscription_id);
	bool online = user__online(st);
	if (was_online && !online) {
		st->offline_at_ms = wall_ms(a);
		user__presence_send(self, st, 0, false);
	} else if (!was_online && online) {
		user__presence_send(self, st, 0, true);
	}
	rt_mark_dirty(self);
}

/* Journals that this activation's stream published (once). */
static void
stream_mark(api *a, rt_actor *self, user_state *st)
{
	if (st->stream_marked || a->store == NULL)
		return;
	actors__cookie cookie = {0, USER_R_STREAM_MARK, 0, 0, 0};
	wire_writer w;
	wire_init(&w);
	wire_u8(&w, 0);
	(void)user__write(a, self, st, USER_R_STREAM_MARK, &w, &cookie);
	wire_free(&w);
}

static inbox_stream *
stream_get(user_state *st)
{
	if (st->stream == NULL) {
		st->stream = malloc(sizeof *st->stream);
		if (st->stream != NULL) {
			inbox_stream_init(st->stream);
			st->stream->last_seq = st->stream_seq_floor;
		}
	}
	return st->stream;
}

void
user__publish(api *a, rt_actor *self, user_state *st, api_event_type type,
	const void *data, size_t length, bool online_only)
{
	if (length == 0 || length > INBOX_STREAM_EVENT_BYTES_MAX)
		return;
	bool online = user__online(st);
	if (!online) {
		if (online_only || st->stream == NULL)
			return; /* nobody to hold it for */
		uint64_t now = wall_ms(a);
		if (st->offline_at_ms == 0 ||
			now > st->offline_at_ms + USER_STREAM_HOLD_MS) {
			stream_mark(a, self, st);
			inbox_stream_skip(st->stream);
			rt_mark_dirty(self);
			return;
		}
	}
	stream_mark(a, self, st);
	deliver_ctx d = {self, 0, {{{0, 0, 0}, 0, 0, 0}}};
	(void)inbox_stream_publish(st->stream, type, data, (uint32_t)length,
		online_only ? INBOX_STREAM_F_ONLINE_ONLY : 0, deliver, &d,
		NULL);
	stream_settle(a, self, st, online, &d);
}

void
user__publish_notifications(api *a, rt_actor *self, user_state *st,
	uint64_t since_seq)
{
	/* No stream: user__publish would drop every event, so they are not
	 * packed (a like's notification packed its entry for nobody: 1.8%
	 * of the daily mix's CPU samples). */
	if (st->stream == NULL)
		return;
	inbox_entry added[USER_PUBLISH_NOTIFICATIONS_MAX];
	uint32_t n = inbox_list(&st->inbox, since_seq, 0,
		USER_PUBLISH_NOTIFICATIONS_MAX, added);
	for (uint32_t i = n; i > 0; i--) { /* oldest first */
		actors__body b;
		actors__body_init(&b);
		if (inbox_entry_pack(&st->inbox, &added[i - 1], &b.packer) ==
			0)
			user__publish(a, self, st, API_EVENT_NOTIFICATION,
				b.buffer.data, b.buffer.size, false);
		actors__body_free(&b);
	}
}

/* USER_T_STREAM: u32 kind, u64 id (the session's address), u8 op, u64
 * subscription id, u64 seq, u8 has_since. An ask for a subscribe (its
 * answer follows the replayed events and carries the stream's seq, where
 * the session now stands), plain for acks, renewals and leaving. */
static void
on_stream(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	rt_addr addr = {0, 0, 0};
	addr.kind = wire_get_u32(&r);
	addr.id = wire_get_u64(&r);
	inbox_stream_request req;
	req.op = (inbox_stream_op)wire_get_u8(&r);
	req.subscription_id = wire_get_u64(&r);
	req.seq = wire_get_u64(&r);
	req.has_since = wire_get_u8(&r) != 0;
	if (!wire_done(&r) || addr.kind == RT_KIND_NONE ||
		addr.kind >= RT_KINDS_MAX) {
		reply_code(self, m, API_EINVALID, "malformed stream request");
		return;
	}
	if (req.op == INBOX_STREAM_OP_RENEW && st->stream != NULL &&
		inbox_stream_renewal_idle(st->stream, addr, &req))
		return; /* subscribed and up to date: the common case */
	bool subscribe = req.op == INBOX_STREAM_OP_SUBSCRIBE ||
		req.op == INBOX_STREAM_OP_RENEW;
	if (!subscribe && st->stream == NULL) {
		reply_code(self, m, API_ENOTFOUND, "no such session");
		return;
	}
	if (stream_get(st) == NULL) {
		reply_code(self, m, API_EUNAVAILABLE, "out of memory");
		return;
	}
	bool was_online = user__online(st);
	if (subscribe) {
		stream_mark(a, self, st);
		st->stream_incarnation = a->incarnation;
	}
	deliver_ctx d = {self, 0, {{{0, 0, 0}, 0, 0, 0}}};
	int rc = inbox_stream_apply(st->stream, addr, &req, deliver, &d);
	stream_settle(a, self, st, was_online, &d);
	if (rc != 0 || req.op != INBOX_STREAM_OP_SUBSCRIBE) {
		reply_code(self, m, rc, rc == 0 ? NULL
					       : "stream request refused");
		return;
	}
	/* The session now stands at the stream's seq: what it renews
	 * from, even before its first event. */
	actors__body b;
	actors__body_init(&b);
	if (msgpack_pack_uint64(&b.packer, st->stream->last_seq) == 0)
		reply_body(self, m, &b);
	else
		reply_code(self, m, API_OK, NULL);
	actors__body_free(&b);
}

/* USER_T_PRESENCE (at a celebrity): u64 follower, u8 online. */
static void
on_presence(rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t follower = wire_get_u64(&r);
	bool on = wire_get_u8(&r) != 0;
	if (!wire_done(&r) || follower == 0)
		return;
	/* Only followers count; past the bound they pull instead. */
	bool online = on && user__set_has(&st->followers, follower);
	(void)inbox_presence_set(&st->online_followers, follower, online);
	rt_mark_dirty(self);
}

/* USER_T_LIVE: u64 author, u8 type, u8 flags, u64 key, then the data. */
static void
on_live(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t author = wire_get_u64(&r);
	uint8_t type = wire_get_u8(&r);
	uint8_t flags = wire_get_u8(&r);
	uint64_t key = wire_get_u64(&r);
	if (r.failed || type < API_EVENT_FEED_POST ||
		type > API_EVENT_POST_UPDATED)
		return;
	const unsigned char *data = m->payload + r.offset;
	size_t length = m->size - r.offset;
	bool presence = (flags & USER_LIVE_F_PRESENCE) != 0;
	if (!user__set_has(&st->following, author)) {
		if (presence)
			user__presence_send(self, st, author, false);
		return;
	}
	if ((flags & USER_LIVE_F_MUST_HAVE) && !user__ring_has(st, key))
		return;
	bool online_only = (flags & USER_LIVE_F_ONLINE_ONLY) != 0;
	if (online_only && !user__online(st)) {
		if (presence) /* stale presence: heal it */
			user__presence_send(self, st, author, false);
		return;
	}
	if (length == 0 || !engage_msgpack_check(data, length))
		return;
	user__publish(a, self, st, (api_event_type)type, data, length,
		online_only);
}

void
user__post_event(api *a, rt_actor *self, user_state *st, uint64_t post_id,
	bool pushed, api_event_type type, const void *body, size_t body_length)
{
	user__publish(a, self, st, type, body, body_length, false);
	int rc = 0;
	if (pushed) {
		/* Followers that had it in their timelines. */
		rc = user__push_live(st, post_id, type, USER_LIVE_F_MUST_HAVE,
			NULL, 0, body, body_length, 0);
	} else if (st->online_followers.count > 0) {
		uint32_t n = st->online_followers.count;
		uint64_t *ids = malloc(n * sizeof *ids);
		if (ids == NULL)
			return;
		n = inbox_presence_list(&st->online_followers, ids, n);
		rc = user__push_live(st, post_id, type,
			USER_LIVE_F_ONLINE_ONLY | USER_LIVE_F_PRESENCE, ids, n,
			body, body_length, 0);
		free(ids);
	}
	if (rc == 0)
		user__pushes_run(a, self, st);
}

/* USER_T_POST_EVENT (from an own post): u64 post id, u8 type, then the
 * event data (the post as it is now). */
static void
on_post_event(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t post_id = wire_get_u64(&r);
	uint8_t type = wire_get_u8(&r);
	bool pushed;
	if (r.failed || type != API_EVENT_POST_UPDATED ||
		!user__own_post(st, post_id, &pushed))
		return;
	const unsigned char *data = m->payload + r.offset;
	size_t length = m->size - r.offset;
	if (length == 0 || !engage_msgpack_check(data, length))
		return;
	user__post_event(a, self, st, post_id, pushed, API_EVENT_POST_UPDATED,
		data, length);
}

/* ---- pushes applied here: their live side ---------------------------------- */

static void
pack_story(msgpack_packer *p, uint64_t story_id, uint64_t author,
	const char *username, uint64_t media_id, uint64_t created_at_ms,
	uint64_t expires_at_ms)
{
	msgpack_pack_map(p, 5);
	actors__pack_key(p, "story_id");
	actors__pack_id(p, story_id);
	actors__pack_key(p, "user");
	msgpack_pack_map(p, username != NULL ? 2 : 1);
	actors__pack_key(p, "user_id");
	actors__pack_id(p, author);
	if (username != NULL) {
		actors__pack_key(p, "username");
		actors__pack_str(p, username);
	}
	actors__pack_key(p, "media");
	msgpack_pack_map(p, 1);
	actors__pack_key(p, "media_id");
	actors__pack_id(p, media_id);
	actors__pack_key(p, "created_at");
	actors__pack_time(p, created_at_ms);
	actors__pack_key(p, "expires_at");
	actors__pack_time(p, expires_at_ms);
}

void
user__pack_post_ref(msgpack_packer *p, uint64_t post_id, uint64_t author)
{
	msgpack_pack_map(p, 2);
	actors__pack_key(p, "post_id");
	actors__pack_id(p, post_id);
	actors__pack_key(p, "user");
	msgpack_pack_map(p, 1);
	actors__pack_key(p, "user_id");
	actors__pack_id(p, author);
}

/* Would user__publish put an event on the stream now (a session is open,
 * or it left less than USER_STREAM_HOLD_MS ago)? */
static bool
stream_takes(api *a, const user_state *st)
{
	if (st->stream == NULL)
		return false;
	if (user__online(st))
		return true;
	return st->offline_at_ms != 0 &&
		wall_ms(a) <= st->offline_at_ms + USER_STREAM_HOLD_MS;
}

void
user__pushed_live(api *a, rt_actor *self, user_state *st, uint32_t type,
	uint64_t key, uint64_t author, uint64_t source, const void *rest,
	size_t rest_length)
{
	if (type == USER_T_PULL_ON) {
		/* A followee turned celebrity: register while online. */
		if (user__online(st))
			user__presence_send(self, st, author, true);
		return;
	}
	if (st->stream == NULL)
		return; /* user__publish would drop it: skip checking and
			   packing the event (most followers of a fan-out
			   never opened a stream; the check walked the body) */
	actors__body b;
	actors__body_init(&b);
	if (type == USER_T_TIMELINE_ADD) {
		if (rest_length > 0 && engage_msgpack_check(rest, rest_length)) {
			user__publish(a, self, st, API_EVENT_FEED_POST, rest,
				rest_length, false);
		} else if (rest_length == 0 && source != 0 &&
			stream_takes(a, st)) {
			/* The push names the post only: its author sends
			 * the event's data (a USER_T_LIVE), published then. */
			unsigned char want[8];
			wire_put_le64(want, key);
			if (rt_send_copy(self,
				    rt_addr_make(ACTORS_KIND_USER, source),
				    USER_T_LIVE_WANT, want, sizeof want) != 0) {
				user__pack_post_ref(&b.packer, key, author);
				user__publish(a, self, st, API_EVENT_FEED_POST,
					b.buffer.data, b.buffer.size, false);
			}
		} else { /* no data: the client fetches the post */
			user__pack_post_ref(&b.packer, key, author);
			user__publish(a, self, st, API_EVENT_FEED_POST,
				b.buffer.data, b.buffer.size, false);
		}
	} else if (type == USER_T_STORY_ADD && rest_length == 24) {
		wire_reader r;
		wire_reader_init(&r, rest, rest_length);
		uint64_t expires_at = wire_get_u64(&r);
		uint64_t media_id = wire_get_u64(&r);
		uint64_t created_at = wire_get_u64(&r);
		pack_story(&b.packer, key, author, NULL, media_id, created_at,
			expires_at);
		user__publish(a, self, st, API_EVENT_STORY, b.buffer.data,
			b.buffer.size, false);
	}
	actors__body_free(&b);
}

/* ---- notifications ---------------------------------------------------------- */

void
user__notify_follow(user_state *st, uint64_t follower, uint64_t created_at_ms)
{
	inbox_event ev = {
		.event_id = inbox_event_id(INBOX_TYPE_FOLLOW, follower, 0, 0),
		.actor_user_id = follower,
		.target_user_id = st->id,
		.created_at_ms = created_at_ms,
		.type = INBOX_TYPE_FOLLOW,
	};
	bool added;
	/* Out of memory drops this one notification, never the follow. */
	(void)inbox_add(&st->inbox, &ev, created_at_ms, NULL, &added);
}

/* USER_T_NOTIFY effect: an inbox_event (msgpack). Journaled with the
 * time it arrived; the inbox drops repeats of its event id. */
static void
on_notify(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	ps_effect_header h;
	const void *payload;
	size_t length;
	if (ps_effect_parse(m->payload, m->size, &h, &payload, &length) != 0)
		return;
	actors__cookie cookie = {h.source_kind, ACTORS_T_EFFECT_CONFIRM,
		h.source_id, 0, h.sequence};
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	inbox_event ev;
	int rc = engage_unpack(payload, length, &u);
	if (rc == 0)
		rc = inbox_event_decode(&u.data, &ev);
	msgpack_unpacked_destroy(&u);
	if (rc != 0 || ev.target_user_id != st->id ||
		ev.actor_user_id == st->id) {
		/* Not for this inbox: confirmed and dropped. */
		(void)actors__barrier(a, self, &cookie);
		return;
	}
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, ev.event_id);
	wire_u8(&w, (uint8_t)ev.type);
	wire_u64(&w, ev.actor_user_id);
	wire_u64(&w, ev.target_user_id);
	wire_u64(&w, ev.post_id);
	wire_u64(&w, ev.comment_id);
	wire_u64(&w, ev.created_at_ms);
	wire_u64(&w, wall_ms(a));
	rc = user__write(a, self, st, USER_R_NOTIFY, &w, &cookie);
	wire_free(&w);
	if (rc != 0)
		rt_log(a->rt, RT_LOG_WARN, "user",
			"notification not applied (will be re-sent): %d", rc);
}

static int
apply_notify(user_state *st, wire_reader *r)
{
	inbox_event ev;
	ev.event_id = wire_get_u64(r);
	ev.type = (inbox_type)wire_get_u8(r);
	ev.actor_user_id = wire_get_u64(r);
	ev.target_user_id = wire_get_u64(r);
	ev.post_id = wire_get_u64(r);
	ev.comment_id = wire_get_u64(r);
	ev.created_at_ms = wire_get_u64(r);
	uint64_t now = wire_get_u64(r);
	if (r->failed)
		return RT_ECORRUPT;
	bool added;
	int rc = inbox_add(&st->inbox, &ev, now, NULL, &added);
	return rc == API_EUNAVAILABLE ? RT_ENOMEM : 0;
}

/* USER_T_NOTIFICATIONS: u64 since, u32 limit, str cursor (empty: first
 * page). */
static void
on_notifications(rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t since = wire_get_u64(&r);
	uint32_t limit = wire_get_u32(&r);
	char cursor[64];
	wire_get_strbuf(&r, cursor, sizeof cursor);
	if (!wire_done(&r) || limit > API_PAGE_LIMIT_MAX) {
		reply_code(self, m, API_EINVALID, "malformed page");
		return;
	}
	actors__body b;
	actors__body_init(&b);
	int rc = inbox_list_pack(&st->inbox, since, limit,
		cursor[0] != '\0' ? cursor : NULL, &b.packer);
	if (rc == 0)
		reply_body(self, m, &b);
	else
		reply_code(self, m, rc, "bad cursor");
	actors__body_free(&b);
}

/* USER_T_NOTIFY_READ: u64 up_to_seq. */
static void
on_notify_read(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t up_to = wire_get_u64(&r);
	if (!wire_done(&r)) {
		reply_code(self, m, API_EINVALID, "malformed request");
		return;
	}
	if (up_to > st->inbox.last_seq)
		up_to = st->inbox.last_seq;
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_NOTIFY_READ, 0);
	int rc;
	if (up_to <= st->inbox.read_up_to_seq) {
		rc = actors__barrier(a, self, &cookie); /* nothing new */
	} else {
		wire_writer w;
		wire_init(&w);
		wire_u64(&w, up_to);
		rc = user__write(a, self, st, USER_R_NOTIFY_READ, &w, &cookie);
		wire_free(&w);
	}
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

/* ---- stories ------------------------------------------------------------------ */

static stories *
stories_get_own(user_state *st)
{
	if (st->stories == NULL) {
		st->stories = malloc(sizeof *st->stories);
		if (st->stories != NULL)
			stories_init(st->stories);
	}
	return st->stories;
}

/* Arms the expiry timer for the earliest story, unless one that fires
 * no later is armed. */
static void
stories_arm(api *a, rt_actor *self, user_state *st)
{
	uint64_t next = st->stories != NULL
		? stories_next_expiry_ms(st->stories)
		: UINT64_MAX;
	if (next == UINT64_MAX)
		return;
	if (st->story_timer_at_ms != 0 && st->story_timer_at_ms <= next)
		return;
	uint64_t now = wall_ms(a);
	if (rt_timer_start(a->rt, rt_self(self), USER_T_STORY_EXPIRE, NULL, 0,
		    next > now ? next - now : 0, 0, NULL) == 0)
		st->story_timer_at_ms = next;
}

static void
story_authors_collect(user_state *st, uint64_t now_ms)
{
	uint32_t kept = 0;
	for (uint32_t i = 0; i < st->story_authors_count; i++)
		if (st->story_authors[i].expires_at_ms > now_ms)
			st->story_authors[kept++] = st->story_authors[i];
	st->story_authors_count = kept;
}

/* Timer: collects what expired (visibility never waits for it: a story
 * is shown while now < expires_at, collected or not). */
static void
on_story_expire(api *a, rt_actor *self, user_state *st)
{
	uint64_t now = wall_ms(a);
	st->story_timer_at_ms = 0;
	if (st->stories != NULL)
		(void)stories_collect_expired(st->stories, now);
	(void)stories_seen_collect(&st->seen, now);
	story_authors_collect(st, now);
	rt_mark_dirty(self);
	stories_arm(a, self, st);
}

static uint32_t
story_author_find(const user_state *st, uint64_t author, bool *found)
{
	uint32_t lo = 0, hi = st->story_authors_count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (st->story_authors[mid].author_id < author)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < st->story_authors_count &&
		st->story_authors[lo].author_id == author;
	return lo;
}

bool
user__story_ref_wants(const user_state *st, uint64_t author,
	uint64_t story_id, uint64_t expires_at_ms)
{
	(void)story_id;
	bool found;
	uint32_t i = story_author_find(st, author, &found);
	return !found || st->story_authors[i].expires_at_ms < expires_at_ms;
}

static int
apply_story_ref(user_state *st, uint64_t author, uint64_t expires_at_ms)
{
	bool found;
	uint32_t i = story_author_find(st, author, &found);
	if (found) {
		if (st->story_authors[i].expires_at_ms < expires_at_ms)
			st->story_authors[i].expires_at_ms = expires_at_ms;
		return 0;
	}
	if (st->story_authors_count == USER_STORY_AUTHORS_MAX) {
		/* Full: the entry that expires first makes room. */
		uint32_t first = 0;
		for (uint32_t k = 1; k < st->story_authors_count; k++)
			if (st->story_authors[k].expires_at_ms <
				st->story_authors[first].expires_at_ms)
				first = k;
		memmove(&st->story_authors[first],
			&st->story_authors[first + 1],
			(st->story_authors_count - first - 1) *
				sizeof *st->story_authors);
		st->story_authors_count--;
		i = story_author_find(st, author, &found);
	}
	if (st->story_authors_count == st->story_authors_capacity) {
		uint32_t capacity = st->story_authors_capacity
			? st->story_authors_capacity * 2
			: 8;
		story_author *v = realloc(st->story_authors,
			capacity * sizeof *v);
		if (v == NULL)
			return RT_ENOMEM;
		st->story_authors = v;
		st->story_authors_capacity = capacity;
	}
	memmove(&st->story_authors[i + 1], &st->story_authors[i],
		(st->story_authors_count - i) * sizeof *st->story_authors);
	st->story_authors[i] = (story_author){author, expires_at_ms};
	st->story_authors_count++;
	return 0;
}

void
user__story_followed(user_state *st, uint64_t author, uint64_t at_ms)
{
	/* Out of memory only costs the older stories of this followee. */
	(void)apply_story_ref(st, author, at_ms + STORIES_LIFETIME_MS_MAX);
}

/* USER_R_STORY: u64 story id, u64 media, u32 expires_in_s, u64 created,
 * u8 pushed. */
static int
apply_story(user_state *st, wire_reader *r, uint64_t lsn)
{
	uint64_t story_id = wire_get_u64(r);
	uint64_t media_id = wire_get_u64(r);
	uint32_t expires_in = wire_get_u32(r);
	uint64_t created = wire_get_u64(r);
	uint8_t pushed = wire_get_u8(r);
	if (r->failed)
		return RT_ECORRUPT;
	if (stories_get_own(st) == NULL)
		return RT_ENOMEM;
	bool held = stories_get(st->stories, story_id, UINT64_MAX, NULL) !=
		API_ENOTFOUND;
	if (held)
		return 0;
	/* Refused (the cap, checked before journaling) changes nothing. */
	if (stories_add(st->stories, story_id, media_id, expires_in, created,
		    NULL) != 0)
		return 0;
	if (pushed)
		return user__push_add(st, story_id, lsn, USER_PUSH_STORY) == 0
			? 0
			: RT_ENOMEM;
	if (!st->has_unpushed) {
		/* Followers pull this user's stories (and posts) from now on. */
		st->has_unpushed = true;
		if (user__push_add(st, USER_PUSH_PULL_BIT | story_id, lsn,
			    USER_PUSH_PULL) != 0)
			return RT_ENOMEM;
	}
	return 0;
}

/* USER_T_STORY_POST: u64 media id, u32 expires_in_s (0: 24 h). */
static void
on_story_post(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t media_id = wire_get_u64(&r);
	uint32_t expires_in = wire_get_u32(&r);
	if (!wire_done(&r) || media_id == 0 ||
		expires_in > API_STORY_SECONDS_MAX) {
		reply_code(self, m, API_EINVALID,
			"expires_in is at most 86400 seconds");
		return;
	}
	uint64_t now = wall_ms(a);
	if (st->stories != NULL &&
		stories_active_count(st->stories, now) >= STORIES_ACTIVE_MAX) {
		reply_code(self, m, API_ERATELIMITED,
			"at most 100 stories in 24 hours");
		return;
	}
	uint64_t story_id = actors__idgen_next(&a->ids,
		actors__id_partition(st->id), now);
	bool pushed = st->followers.count <= a->cfg.celebrity_followers_min;
	wire_writer w;
	wire_init(&w);
	wire_u64(&w, story_id);
	wire_u64(&w, media_id);
	wire_u32(&w, expires_in);
	wire_u64(&w, now);
	wire_u8(&w, pushed);
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_STORY_POST,
		story_id);
	int rc = user__write(a, self, st, USER_R_STORY, &w, &cookie);
	wire_free(&w);
	if (rc != 0) {
		reply_code(self, m, rc, "journal unavailable");
		return;
	}
	stories_arm(a, self, st);
	stories_item item;
	if (pushed || st->online_followers.count == 0 ||
		stories_get(st->stories, story_id, now, &item) != 0)
		return;
	/* Not pushed: the followers online hear of it live. */
	actors__body b;
	actors__body_init(&b);
	pack_story(&b.packer, story_id, st->id, st->username, media_id,
		item.created_at_ms, item.expires_at_ms);
	uint32_t n = st->online_followers.count;
	uint64_t *ids = malloc(n * sizeof *ids);
	if (ids != NULL) {
		n = inbox_presence_list(&st->online_followers, ids, n);
		(void)user__push_live(st, story_id, API_EVENT_STORY,
			USER_LIVE_F_ONLINE_ONLY | USER_LIVE_F_PRESENCE, ids, n,
			b.buffer.data, b.buffer.size, st->last_lsn);
		free(ids);
	}
	actors__body_free(&b);
}

static void
answer_story_post(api *a, rt_actor *self, user_state *st,
	const actors__cookie *cookie)
{
	actors__reply_to to = actors__cookie_reply_to(cookie);
	stories_item item;
	/* Time 0: the story is answered even if it expired meanwhile (any
	 * later time could find it gone and leave item unset). */
	if (st->stories == NULL ||
		stories_get(st->stories, cookie->extra, 0, &item) != 0) {
		actors__reply_later(self, &to, API_EINTERNAL, "story missing",
			NULL, 0);
		return;
	}
	(void)a;
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_map(&b.packer, 4);
	actors__pack_key(&b.packer, "story_id");
	actors__pack_id(&b.packer, item.story_id);
	actors__pack_key(&b.packer, "media");
	msgpack_pack_map(&b.packer, 1);
	actors__pack_key(&b.packer, "media_id");
	actors__pack_id(&b.packer, item.media_id);
	actors__pack_key(&b.packer, "created_at");
	actors__pack_time(&b.packer, item.created_at_ms);
	actors__pack_key(&b.packer, "expires_at");
	actors__pack_time(&b.packer, item.expires_at_ms);
	actors__reply_later(self, &to, API_OK, NULL, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
}

/* USER_T_STORY_FEED: the authors a tray read asks. Answer (msgpack):
 * [[followee ids with a pushed story still visible], [pulled followee
 * ids], seen marks (stories_seen_encode)]. */
static void
on_story_feed(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	uint64_t now = wall_ms(a);
	story_authors_collect(st, now);
	uint32_t authors = 0;
	for (uint32_t i = 0; i < st->story_authors_count; i++)
		authors += user__set_has(&st->following,
			st->story_authors[i].author_id);
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_array(&b.packer, 3);
	msgpack_pack_array(&b.packer, authors);
	for (uint32_t i = 0; i < st->story_authors_count; i++)
		if (user__set_has(&st->following,
			    st->story_authors[i].author_id))
			msgpack_pack_uint64(&b.packer,
				st->story_authors[i].author_id);
	msgpack_pack_array(&b.packer, st->pulls.count);
	for (uint32_t i = 0; i < st->pulls.count; i++)
		msgpack_pack_uint64(&b.packer, st->pulls.ids[i]);
	(void)stories_seen_encode(&st->seen, &b.packer);
	reply_body(self, m, &b);
	actors__body_free(&b);
}

/* USER_T_STORIES_ACTIVE: [user_id, username, profile_pic_url, stories
 * visible now (stories_encode_active)]. */
static void
on_stories_active(api *a, rt_actor *self, user_state *st,
	const rt_message *m)
{
	stories none;
	stories_init(&none);
	const stories *s = st->stories != NULL ? st->stories : &none;
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_array(&b.packer, 4);
	msgpack_pack_uint64(&b.packer, st->id);
	actors__pack_str(&b.packer, st->username);
	user__pack_profile_pic(&b.packer, st->profile_pic_media_id);
	(void)stories_encode_active(s, wall_ms(a), &b.packer);
	reply_body(self, m, &b);
	actors__body_free(&b);
}

/* USER_T_STORY_SEEN: u64 story id. */
static void
on_story_seen(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t story_id = wire_get_u64(&r);
	if (!wire_done(&r) || story_id == 0) {
		reply_code(self, m, API_EINVALID, "malformed request");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_STORY_SEEN,
		story_id);
	int rc;
	if (stories_seen_has(&st->seen, story_id)) {
		rc = actors__barrier(a, self, &cookie); /* stays seen */
	} else {
		wire_writer w;
		wire_init(&w);
		wire_u64(&w, story_id);
		wire_u64(&w, wall_ms(a));
		rc = user__write(a, self, st, USER_R_STORY_SEEN, &w, &cookie);
		wire_free(&w);
	}
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

/* ---- rate limits and the forwarded like and comment ----------------------------- */

static const api_rate *
rate_config(const api *a, rate_action action)
{
	switch (action) {
	case RATE_ACTION_LIKE: return &a->cfg.rate_likes;
	case RATE_ACTION_POST: return &a->cfg.rate_posts;
	case RATE_ACTION_COMMENT: return &a->cfg.rate_comments;
	case RATE_ACTION_FOLLOW: return &a->cfg.rate_follows;
	default: return NULL;
	}
}

bool
user__rate_allow(api *a, rt_actor *self, user_state *st, const rt_message *m,
	rate_action action)
{
	const api_rate *cfg = rate_config(a, action);
	ACTORS_ASSERT(cfg != NULL);
	if (cfg->capacity == 0 || cfg->refill_ms == 0)
		return true; /* no limit configured */
	rate_result res;
	int rc = rate_take(&st->rates, action, cfg, wall_ms(a), &res);
	if (rc == API_EINVALID)
		return true; /* a window past a week: never lock users out */
	rt_mark_dirty(self);
	if (rc == 0)
		return true;
	ACTORS_ASSERT(rc == API_ERATELIMITED);
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_map(&b.packer, 4);
	actors__pack_key(&b.packer, "retry_after_ms");
	msgpack_pack_uint64(&b.packer, res.retry_after_ms);
	actors__pack_key(&b.packer, "rate_limit");
	msgpack_pack_uint32(&b.packer, res.limit);
	actors__pack_key(&b.packer, "rate_remaining");
	msgpack_pack_uint32(&b.packer, res.remaining);
	actors__pack_key(&b.packer, "rate_reset_ms");
	msgpack_pack_uint64(&b.packer, res.reset_ms);
	actors__reply(self, m, API_ERATELIMITED, "rate limited",
		b.buffer.data, b.buffer.size);
	actors__body_free(&b);
	return false;
}

/* Sends w (the reply-to of m, then the post's request) to the post,
 * which answers the client directly: one hop more than asking the post,
 * no round trip more. */
static void
forward_to_post(rt_actor *self, const rt_message *m, uint64_t post_id,
	uint32_t type, const wire_writer *w)
{
	int rc = w->failed ? RT_ENOMEM
			   : rt_send_copy(self,
				rt_addr_make(ACTORS_KIND_POST, post_id), type,
				w->bytes, (uint32_t)w->length);
	if (rc != 0)
		reply_code(self, m, API_EUNAVAILABLE, "post unavailable");
}

/* USER_T_LIKE: u64 post id, u8 like, u64 the caller's deadline (wall
 * ms; senders before it was kept send none). */
static void
on_like(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t post_id = wire_get_u64(&r);
	uint8_t on = wire_get_u8(&r);
	uint64_t deadline = r.offset < r.length ? wire_get_u64(&r) : 0;
	if (!wire_done(&r) || post_id == 0) {
		reply_code(self, m, API_EINVALID, "malformed like");
		return;
	}
	if (actors__ask_expired(a, deadline)) {
		reply_code(self, m, API_EUNAVAILABLE, "deadline passed");
		return;
	}
	/* Likes spend tokens; taking one back does not. */
	if (on && !user__rate_allow(a, self, st, m, RATE_ACTION_LIKE))
		return;
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	unsigned char payload[64];
	wire_writer w = {payload, 0, sizeof payload, false};
	wire_reply_to(&w, &to);
	wire_u64(&w, st->id);
	wire_u8(&w, on);
	wire_u64(&w, wall_ms(a));
	/* The post answers the caller, so the caller's deadline holds
	 * there too. */
	wire_u64(&w, deadline);
	ACTORS_ASSERT(!w.failed && w.bytes == payload);
	forward_to_post(self, m, post_id, POST_T_LIKE_FWD, &w);
}

/* USER_T_COMMENT: u64 post id, str text, u32 mentions, u64 ids. */
static void
on_comment(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	uint64_t post_id = wire_get_u64(&r);
	size_t text_length;
	const char *text = wire_get_str(&r, API_COMMENT_CHARACTERS_MAX * 4,
		&text_length);
	size_t mentions_at = r.offset;
	uint32_t mentions = wire_get_u32(&r);
	for (uint32_t i = 0; i < mentions && !r.failed; i++)
		(void)wire_get_u64(&r);
	if (!wire_done(&r) || post_id == 0 || text == NULL ||
		mentions > ACTORS_MENTIONS_MAX) {
		reply_code(self, m, API_EINVALID, "malformed comment");
		return;
	}
	if (!user__rate_allow(a, self, st, m, RATE_ACTION_COMMENT))
		return;
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	wire_writer w;
	wire_init(&w);
	wire_reply_to(&w, &to);
	wire_u64(&w, st->id);
	wire_str(&w, st->username);
	wire_strn(&w, text, text_length);
	wire_bytes(&w, m->payload + mentions_at, m->size - mentions_at);
	forward_to_post(self, m, post_id, POST_T_COMMENT_FWD, &w);
	wire_free(&w);
}

/* ---- idempotency keys ---------------------------------------------------------- */

/* USER_T_IDEM_BEGIN: str key, 32-byte digest. Answer body: u8 0 (run
 * it), or u8 1, i32 code, then the stored body (replay it). */
static void
on_idem_begin(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	char key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
	wire_get_strbuf(&r, key, sizeof key);
	uint8_t digest[IDEM_DIGEST_BYTES];
	for (uint32_t i = 0; i < IDEM_DIGEST_BYTES; i++)
		digest[i] = wire_get_u8(&r);
	if (!wire_done(&r)) {
		reply_code(self, m, API_EINVALID, "malformed key");
		return;
	}
	idem_outcome out;
	int rc = idem_begin(&st->idem, key, digest, wall_ms(a),
		a->cfg.idempotency_ttl_ms, &out);
	rt_mark_dirty(self);
	if (rc != 0) {
		reply_code(self, m, rc,
			rc == API_EIDEMPOTENCY ? "Idempotency-Key reused with "
						 "another body"
			: rc == API_ECONFLICT  ? "a request with this "
						 "Idempotency-Key is running"
					       : "bad Idempotency-Key");
		return;
	}
	wire_writer w;
	wire_init(&w);
	wire_u8(&w, out.replay ? 1 : 0);
	if (out.replay) {
		wire_u32(&w, (uint32_t)out.code);
		wire_bytes(&w, out.response, out.response_length);
	}
	if (w.failed)
		reply_code(self, m, API_EUNAVAILABLE, "out of memory");
	else
		actors__reply(self, m, API_OK, NULL, w.bytes, w.length);
	wire_free(&w);
}

/* USER_T_IDEM_FINISH: str key, digest, i32 code, then the body. The
 * answer is journaled before the caller hears it. */
static void
on_idem_finish(api *a, rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	size_t key_length;
	const char *key = wire_get_str(&r, API_IDEMPOTENCY_KEY_BYTES_MAX,
		&key_length);
	size_t digest_at = r.offset;
	for (uint32_t i = 0; i < IDEM_DIGEST_BYTES; i++)
		(void)wire_get_u8(&r);
	uint32_t code = wire_get_u32(&r);
	if (r.failed || key == NULL) {
		reply_code(self, m, API_EINVALID, "malformed key");
		return;
	}
	size_t body_at = r.offset;
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	actors__cookie cookie = actors__cookie_make(&to, USER_T_IDEM_FINISH, 0);
	wire_writer w;
	wire_init(&w);
	wire_strn(&w, key, key_length);
	wire_bytes(&w, m->payload + digest_at, IDEM_DIGEST_BYTES);
	wire_u32(&w, code);
	wire_u64(&w, wall_ms(a));
	wire_u64(&w, a->cfg.idempotency_ttl_ms);
	wire_bytes(&w, m->payload + body_at, m->size - body_at);
	int rc = user__write(a, self, st, USER_R_IDEM, &w, &cookie);
	wire_free(&w);
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

/* USER_T_IDEM_ABORT: str key, digest. */
static void
on_idem_abort(rt_actor *self, user_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	char key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
	wire_get_strbuf(&r, key, sizeof key);
	uint8_t digest[IDEM_DIGEST_BYTES];
	for (uint32_t i = 0; i < IDEM_DIGEST_BYTES; i++)
		digest[i] = wire_get_u8(&r);
	if (!wire_done(&r))
		return;
	(void)idem_abort(&st->idem, key, digest);
	rt_mark_dirty(self);
}

/* USER_R_IDEM: str key, digest, i32 code, u64 at, u64 ttl, body. */
static int
apply_idem(user_state *st, wire_reader *r)
{
	char key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
	wire_get_strbuf(r, key, sizeof key);
	uint8_t digest[IDEM_DIGEST_BYTES];
	for (uint32_t i = 0; i < IDEM_DIGEST_BYTES; i++)
		digest[i] = wire_get_u8(r);
	int32_t code = (int32_t)wire_get_u32(r);
	uint64_t at = wire_get_u64(r);
	uint64_t ttl = wire_get_u64(r);
	if (r->failed)
		return RT_ECORRUPT;
	const unsigned char *body = r->bytes + r->offset;
	uint32_t length = (uint32_t)(r->length - r->offset);
	r->offset = r->length;
	int rc = idem_finish(&st->idem, key, digest, code,
		length > 0 ? body : NULL, length);
	if (rc == API_ENOTFOUND) {
		/* Replay (or the run was forgotten): record it afresh. */
		idem_outcome out;
		if (idem_begin(&st->idem, key, digest, at, ttl, &out) == 0 &&
			!out.replay)
			rc = idem_finish(&st->idem, key, digest, code,
				length > 0 ? body : NULL, length);
	}
	return rc == API_EUNAVAILABLE ? RT_ENOMEM : 0;
}

/* ---- the kind's entry points -------------------------------------------------- */

int
user__engage_apply(api *a, user_state *st, uint32_t type, wire_reader *r,
	uint64_t lsn)
{
	(void)a;
	switch (type) {
	case USER_R_STORY:
		return apply_story(st, r, lsn);
	case USER_R_STORY_SEEN: {
		uint64_t story_id = wire_get_u64(r);
		uint64_t at = wire_get_u64(r);
		if (r->failed)
			return RT_ECORRUPT;
		return stories_seen_mark_story(&st->seen, story_id, at) ==
				API_EUNAVAILABLE
			? RT_ENOMEM
			: 0;
	}
	case USER_R_STORY_REF: {
		uint64_t author = wire_get_u64(r);
		(void)wire_get_u64(r); /* story id */
		uint64_t expires_at = wire_get_u64(r);
		if (r->failed)
			return RT_ECORRUPT;
		return apply_story_ref(st, author, expires_at);
	}
	case USER_R_NOTIFY:
		return apply_notify(st, r);
	case USER_R_NOTIFY_READ: {
		uint64_t up_to = wire_get_u64(r);
		if (r->failed)
			return RT_ECORRUPT;
		inbox_mark_read(&st->inbox, up_to);
		return 0;
	}
	case USER_R_IDEM:
		return apply_idem(st, r);
	case USER_R_STREAM_MARK:
		(void)wire_get_u8(r);
		return 0;
	default:
		return RT_ECORRUPT;
	}
}

bool
user__engage_on_message(api *a, rt_actor *self, user_state *st,
	const rt_message *m)
{
	switch (m->type) {
	case USER_T_LIKE: on_like(a, self, st, m); return true;
	case USER_T_COMMENT: on_comment(a, self, st, m); return true;
	case USER_T_NOTIFY: on_notify(a, self, st, m); return true;
	case USER_T_NOTIFICATIONS: on_notifications(self, st, m); return true;
	case USER_T_NOTIFY_READ: on_notify_read(a, self, st, m); return true;
	case USER_T_STORY_POST: on_story_post(a, self, st, m); return true;
	case USER_T_STORY_FEED: on_story_feed(a, self, st, m); return true;
	case USER_T_STORIES_ACTIVE:
		on_stories_active(a, self, st, m);
		return true;
	case USER_T_STORY_SEEN: on_story_seen(a, self, st, m); return true;
	case USER_T_STORY_EXPIRE: on_story_expire(a, self, st); return true;
	case USER_T_STREAM: on_stream(a, self, st, m); return true;
	case USER_T_PRESENCE: on_presence(self, st, m); return true;
	case USER_T_LIVE: on_live(a, self, st, m); return true;
	case USER_T_POST_EVENT: on_post_event(a, self, st, m); return true;
	case USER_T_IDEM_BEGIN: on_idem_begin(a, self, st, m); return true;
	case USER_T_IDEM_FINISH: on_idem_finish(a, self, st, m); return true;
	case USER_T_IDEM_ABORT: on_idem_abort(self, st, m); return true;
	default: return false;
	}
}

bool
user__engage_answer(api *a, rt_actor *self, user_state *st,
	const actors__cookie *cookie, int code)
{
	switch (cookie->event) {
	case USER_T_STORY_POST:
	case USER_T_STORY_SEEN:
	case USER_T_NOTIFY_READ:
	case USER_T_IDEM_FINISH:
		break;
	default:
		return false;
	}
	actors__reply_to to = actors__cookie_reply_to(cookie);
	if (code != API_OK)
		actors__reply_later(self, &to, code, "journal failed", NULL, 0);
	else if (cookie->event == USER_T_STORY_POST)
		answer_story_post(a, self, st, cookie);
	else /* 204: no body */
		actors__reply_later(self, &to, API_OK, NULL, NULL, 0);
	return true;
}

void
user__engage_on_activate(api *a, rt_actor *self, user_state *st, bool fresh)
{
	/* Nothing stored means nothing published before either (the first
	 * publish of an activation journals a mark). */
	bool exact = fresh || (st->stream_exact && !st->replayed);
	st->stream_exact = false;
	st->replayed = false;
	st->passivating = false;
	st->stream_marked = false;
	if (st->stream == NULL && !exact) {
		/* A stream may have existed that no snapshot kept (a crash
		 * before any checkpoint): the next one starts past it. */
		st->stream_seq_floor += USER_STREAM_SEQ_GAP;
	} else if (st->stream != NULL) {
		bool had_sessions = st->stream->subscribers_count > 0;
		if (!exact)
			inbox_stream_reset(st->stream, USER_STREAM_SEQ_GAP);
		else if (st->stream_incarnation != a->incarnation)
			inbox_stream_reset(st->stream, 0);
		if (had_sessions && !user__online(st)) {
			st->offline_at_ms = wall_ms(a);
			user__presence_send(self, st, 0, false);
		}
	}
	st->stream_incarnation = a->incarnation;
	if (st->stories != NULL) {
		(void)stories_collect_expired(st->stories, wall_ms(a));
		stories_arm(a, self, st);
	}
}

/* ---- follower effect sequences ----------------------------------------------- */

static uint32_t
follower_seq_index(const user_state *st, uint64_t follower)
{
	for (uint32_t i = st->follower_seqs_count; i > 0; i--)
		if (st->follower_seqs[i - 1].follower_id == follower)
			return i - 1;
	return UINT32_MAX;
}

uint64_t
user__follower_seq(const user_state *st, uint64_t follower)
{
	uint32_t i = follower_seq_index(st, follower);
	return i == UINT32_MAX ? 0 : st->follower_seqs[i].sequence;
}

int
user__follower_seq_note(user_state *st, uint64_t follower, uint64_t sequence)
{
	ACTORS_ASSERT(st->follower_seqs_count <= USER_FOLLOWER_SEQS_MAX);
	uint32_t i = follower_seq_index(st, follower);
	if (i != UINT32_MAX) {
		if (st->follower_seqs[i].sequence >= sequence)
			return 0; /* a replay of an older record */
	} else if (st->follower_seqs_count == USER_FOLLOWER_SEQS_MAX) {
		i = 0; /* the oldest change is forgotten */
	} else {
		if (st->follower_seqs_count == st->follower_seqs_capacity) {
			uint32_t capacity = st->follower_seqs_capacity
				? st->follower_seqs_capacity * 2
				: 8;
			if (capacity > USER_FOLLOWER_SEQS_MAX)
				capacity = USER_FOLLOWER_SEQS_MAX;
			follower_seq *grown = realloc(st->follower_seqs,
				capacity * sizeof *grown);
			if (grown == NULL)
				return RT_ENOMEM;
			st->follower_seqs = grown;
			st->follower_seqs_capacity = capacity;
		}
		i = st->follower_seqs_count++;
	}
	/* The newest change goes last. */
	memmove(&st->follower_seqs[i], &st->follower_seqs[i + 1],
		(st->follower_seqs_count - i - 1) * sizeof *st->follower_seqs);
	st->follower_seqs[st->follower_seqs_count - 1] =
		(follower_seq){follower, sequence};
	return 0;
}

static int
decode_follower_seqs(user_state *st, const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_BIN ||
		o->via.bin.size % sizeof(follower_seq) != 0 ||
		o->via.bin.size / sizeof(follower_seq) > USER_FOLLOWER_SEQS_MAX)
		return RT_ECORRUPT;
	uint32_t n = o->via.bin.size / sizeof(follower_seq);
	if (n == 0)
		return 0;
	st->follower_seqs = malloc(o->via.bin.size);
	if (st->follower_seqs == NULL)
		return RT_ENOMEM;
	memcpy(st->follower_seqs, o->via.bin.ptr, o->via.bin.size);
	st->follower_seqs_count = n;
	st->follower_seqs_capacity = n;
	/* Each follower once, none 0. */
	for (uint32_t i = 0; i < n; i++) {
		if (st->follower_seqs[i].follower_id == 0)
			return RT_ECORRUPT;
		for (uint32_t j = 0; j < i; j++)
			if (st->follower_seqs[j].follower_id ==
				st->follower_seqs[i].follower_id)
				return RT_ECORRUPT;
	}
	return 0;
}

void
user__engage_free(user_state *st)
{
	free(st->stories);
	st->stories = NULL;
	stories_seen_free(&st->seen);
	inbox_free(&st->inbox);
	idem_free(&st->idem);
	if (st->stream != NULL) {
		inbox_stream_free(st->stream);
		free(st->stream);
		st->stream = NULL;
	}
	inbox_presence_free(&st->online_followers);
	free(st->story_authors);
	st->story_authors = NULL;
	st->story_authors_count = 0;
	st->story_authors_capacity = 0;
	free(st->follower_seqs);
	st->follower_seqs = NULL;
	st->follower_seqs_count = 0;
	st->follower_seqs_capacity = 0;
}

/* ---- snapshot ------------------------------------------------------------------- *
 * [version, search_indexed, search_followers, rates, idem, inbox,
 *  stories|nil, seen, story_authors (bin: author, expires u64 pairs),
 *  stream|nil, stream_exact, stream_incarnation, offline_at, presence,
 *  stream_seq_floor, follower_seqs (bin: follower, sequence u64 pairs,
 *  oldest change first; from version 2)] */

int
user__engage_encode(const user_state *st, msgpack_packer *pk)
{
	int rc = msgpack_pack_array(pk, USER_ENGAGE_SNAPSHOT_FIELDS);
	rc |= msgpack_pack_uint32(pk, USER_ENGAGE_SNAPSHOT_VERSION);
	msgpack_pack_bool(pk, st->search_indexed);
	rc |= msgpack_pack_uint64(pk, st->search_followers);
	rc |= rate_encode(&st->rates, pk);
	rc |= idem_encode(&st->idem, pk);
	rc |= inbox_encode(&st->inbox, pk);
	if (st->stories != NULL)
		rc |= stories_encode(st->stories, pk);
	else
		rc |= msgpack_pack_nil(pk);
	rc |= stories_seen_encode(&st->seen, pk);
	size_t bytes = st->story_authors_count * sizeof *st->story_authors;
	rc |= msgpack_pack_bin(pk, bytes);
	rc |= msgpack_pack_bin_body(pk, st->story_authors, bytes);
	if (st->stream != NULL)
		rc |= inbox_stream_encode(st->stream, pk);
	else
		rc |= msgpack_pack_nil(pk);
	msgpack_pack_bool(pk, st->passivating);
	rc |= msgpack_pack_uint64(pk, st->stream_incarnation);
	rc |= msgpack_pack_uint64(pk, st->offline_at_ms);
	rc |= inbox_presence_encode(&st->online_followers, pk);
	rc |= msgpack_pack_uint64(pk, st->stream_seq_floor);
	/* Host order is little-endian on every target we build for. */
	size_t seqs = st->follower_seqs_count * sizeof *st->follower_seqs;
	rc |= msgpack_pack_bin(pk, seqs);
	rc |= msgpack_pack_bin_body(pk, st->follower_seqs, seqs);
	return rc == 0 ? 0 : RT_ENOMEM;
}

static int
decode_story_authors(user_state *st, const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_BIN ||
		o->via.bin.size % sizeof(story_author) != 0 ||
		o->via.bin.size / sizeof(story_author) > USER_STORY_AUTHORS_MAX)
		return RT_ECORRUPT;
	uint32_t n = o->via.bin.size / sizeof(story_author);
	if (n == 0)
		return 0;
	st->story_authors = malloc(o->via.bin.size);
	if (st->story_authors == NULL)
		return RT_ENOMEM;
	memcpy(st->story_authors, o->via.bin.ptr, o->via.bin.size);
	st->story_authors_count = n;
	st->story_authors_capacity = n;
	for (uint32_t i = 1; i < n; i++)
		if (st->story_authors[i - 1].author_id >=
			st->story_authors[i].author_id)
			return RT_ECORRUPT;
	return 0;
}

static int
decode_optional(user_state *st, const msgpack_object *f)
{
	if (f[0].type != MSGPACK_OBJECT_NIL) {
		if (stories_get_own(st) == NULL)
			return RT_ENOMEM;
		if (stories_decode(st->stories, &f[0]) != 0)
			return RT_ECORRUPT;
	}
	if (f[3].type != MSGPACK_OBJECT_NIL) {
		if (stream_get(st) == NULL)
			return RT_ENOMEM;
		if (inbox_stream_decode(st->stream, &f[3]) != 0)
			return RT_ECORRUPT;
	}
	return 0;
}

int
user__engage_decode(user_state *st, const msgpack_object *obj)
{
	const msgpack_object *f = engage_get_tuple(obj,
		USER_ENGAGE_SNAPSHOT_FIELDS);
	uint64_t version = USER_ENGAGE_SNAPSHOT_VERSION;
	if (f == NULL) {
		f = engage_get_tuple(obj, USER_ENGAGE_SNAPSHOT_V1_FIELDS);
		version = 1;
	}
	uint64_t stored;
	if (f == NULL || !engage_get_u64(&f[0], &stored) ||
		stored != version ||
		!engage_get_bool(&f[1], &st->search_indexed) ||
		!engage_get_u64(&f[2], &st->search_followers) ||
		!engage_get_bool(&f[10], &st->stream_exact) ||
		!engage_get_u64(&f[11], &st->stream_incarnation) ||
		!engage_get_u64(&f[12], &st->offline_at_ms) ||
		!engage_get_u64(&f[14], &st->stream_seq_floor))
		return RT_ECORRUPT;
	if (rate_decode(&st->rates, &f[3]) != 0 ||
		idem_decode(&st->idem, &f[4]) != 0 ||
		inbox_decode(&st->inbox, &f[5]) != 0 ||
		stories_seen_decode(&st->seen, &f[7]) != 0 ||
		inbox_presence_decode(&st->online_followers, &f[13]) != 0)
		return RT_ECORRUPT;
	int rc = decode_story_authors(st, &f[8]);
	if (rc != 0)
		return rc;
	if (version >= 2) {
		rc = decode_follower_seqs(st, &f[15]);
		if (rc != 0)
			return rc;
	}
	return decode_optional(st, &f[6]);
}
