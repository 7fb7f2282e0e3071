/*
 * actors/names.c — the username index: unique, case-insensitive.
 *
 * Role: one actor per logical partition (id = partition << 10, so the
 * cluster routes it like any id of that partition); a lowercased name
 * lives in the shard of actors__name_partition(name), which is also the
 * partition its user is created in. Signup claims a name here: the claim
 * is journaled, and its effect (through the outbox) creates the user
 * actor, re-sent after a crash until the user actor confirms. Lookups
 * answer the user id.
 *
 * Invariants: a name maps to one user id forever (usernames never
 * change and accounts are not deleted); a second claim of a taken name is
 * API_ECONFLICT whatever its letter case, unless it is the same user id
 * (a retried claim), which succeeds again.
 *
 * What it deliberately does not do: prefix search (the search module's).
 */
#include "actors/internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "persistence/persistence.h"

/* A shard's mailbox: signups and lookups of one partition. */
#define NAMES_MAILBOX_MESSAGES_MAX (1u << 16)

typedef struct name_entry {
	char name[API_USERNAME_BYTES_MAX + 2];
	uint64_t user_id;
} name_entry;

typedef struct names_state {
	name_entry *entries; /* sorted by name */
	uint32_t count;
	uint32_t capacity;
	uint64_t durable_lsn;
	ps_outbox outbox;
	bool redrive_armed; /* volatile: an ACTORS_T_REDRIVE timer is set */
} names_state;

static uint32_t
names_lower_bound(const names_state *st, const char *name)
{
	uint32_t lo = 0, hi = st->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (strcmp(st->entries[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const name_entry *
names_find(const names_state *st, const char *name)
{
	uint32_t i = names_lower_bound(st, name);
	if (i < st->count && strcmp(st->entries[i].name, name) == 0)
		return &st->entries[i];
	return NULL;
}

static int
names_insert(names_state *st, const char *name, uint64_t user_id)
{
	uint32_t i = names_lower_bound(st, name);
	if (i < st->count && strcmp(st->entries[i].name, name) == 0)
		return 0;
	if (st->count == st->capacity) {
		uint32_t capacity = st->capacity ? st->capacity * 2 : 8;
		name_entry *v = realloc(st->entries, capacity * sizeof *v);
		if (v == NULL)
			return -1;
		st->entries = v;
		st->capacity = capacity;
	}
	memmove(st->entries + i + 1, st->entries + i,
		(st->count - i) * sizeof *st->entries);
	memset(&st->entries[i], 0, sizeof st->entries[i]);
	snprintf(st->entries[i].name, sizeof st->entries[i].name, "%s", name);
	st->entries[i].user_id = user_id;
	st->count++;
	return 1;
}

/* NAMES_R_CLAIM: name, then the USER_R_CREATED record (user id, name,
 * email, hash) that becomes the user-creation effect. */
static int
names_apply(names_state *st, uint32_t type, const void *payload,
	size_t length, uint64_t lsn)
{
	if (type != NAMES_R_CLAIM)
		return RT_ECORRUPT;
	wire_reader r;
	wire_reader_init(&r, payload, length);
	char name[API_USERNAME_BYTES_MAX + 2];
	wire_get_strbuf(&r, name, sizeof name);
	size_t start = r.offset;
	uint64_t user_id = wire_get_u64(&r);
	char again[API_USERNAME_BYTES_MAX + 2];
	wire_get_strbuf(&r, again, sizeof again);
	size_t n;
	(void)wire_get_str(&r, API_EMAIL_BYTES_MAX, &n);
	(void)wire_get_str(&r, 256, &n);
	if (!wire_done(&r) || user_id == 0)
		return RT_ECORRUPT;
	int added = names_insert(st, name, user_id);
	if (added < 0)
		return RT_ENOMEM;
	if (added == 0)
		return 0;
	int rc = ps_outbox_add(&st->outbox,
		rt_addr_make(ACTORS_KIND_USER, user_id), USER_T_CREATE,
		(const unsigned char *)payload + start, length - start, lsn,
		NULL);
	return rc == 0 ? 0 : RT_ENOMEM;
}

static int
names_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	return names_apply(state, type, payload, length, 0);
}

static void
reply_code(rt_actor *self, const rt_message *m, int code, const char *detail)
{
	actors__reply(self, m, code, detail, NULL, 0);
}

static void
on_claim(api *a, rt_actor *self, names_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	char name[API_USERNAME_BYTES_MAX + 2];
	wire_get_strbuf(&r, name, sizeof name);
	uint64_t user_id = wire_get_u64(&r);
	if (r.failed || user_id == 0) {
		reply_code(self, m, API_EINVALID, "malformed claim");
		return;
	}
	actors__reply_to to;
	actors__reply_to_from(&to, m);
	const name_entry *e = names_find(st, name);
	if (e != NULL && e->user_id != user_id) {
		reply_code(self, m, API_ECONFLICT, "username taken");
		return;
	}
	actors__cookie cookie = actors__cookie_make(&to, NAMES_T_CLAIM,
		user_id);
	int rc;
	if (e != NULL) {
		rc = actors__barrier(a, self, &cookie);
	} else {
		uint64_t lsn = 0;
		rc = actors__journal(a, self, NAMES_R_CLAIM, m->payload,
			m->size, &cookie, &lsn);
		if (rc == 0) {
			int arc = names_apply(st, NAMES_R_CLAIM, m->payload,
				m->size, lsn);
			if (arc == RT_ECORRUPT) {
				reply_code(self, m, API_EINVALID,
					"malformed claim");
				return;
			}
			rt_mark_dirty(self);
		}
	}
	if (rc != 0)
		reply_code(self, m, rc, "journal unavailable");
}

static void
on_lookup(rt_actor *self, names_state *st, const rt_message *m)
{
	wire_reader r;
	wire_reader_init(&r, m->payload, m->size);
	char name[API_USERNAME_BYTES_MAX + 2];
	wire_get_strbuf(&r, name, sizeof name);
	const name_entry *e = r.failed ? NULL : names_find(st, name);
	if (e == NULL) {
		reply_code(self, m, API_ENOTFOUND, "no such user");
		return;
	}
	actors__reply(self, m, API_OK, NULL, &e->user_id, sizeof e->user_id);
}

static void
on_durable(api *a, rt_actor *self, names_state *st, const rt_message *m)
{
	ps_durable_notice n;
	ACTORS_ASSERT(m->size == sizeof n);
	memcpy(&n, m->payload, sizeof n);
	actors__cookie cookie;
	memcpy(&cookie, n.cookie, sizeof cookie);
	int code = actors__notice_code(n.status);
	actors__reply_to to = actors__cookie_reply_to(&cookie);
	if (code != API_OK) {
		actors__reply_later(self, &to, code, "journal failed", NULL, 0);
		return;
	}
	if (a->store == NULL)
		st->durable_lsn = UINT64_MAX;
	else if (n.lsn > st->durable_lsn)
		st->durable_lsn = n.lsn;
	/* The user actor gets its creation before the client its answer. */
	actors__outbox_run(a, self, &st->outbox, st->durable_lsn,
		&st->redrive_armed);
	actors__body b;
	actors__body_init(&b);
	msgpack_pack_map(&b.packer, 1);
	actors__pack_key(&b.packer, "user_id");
	actors__pack_id(&b.packer, cookie.extra);
	actors__reply_later(self, &to, API_OK, NULL, b.buffer.data,
		b.buffer.size);
	actors__body_free(&b);
}

static void
names_on_message(rt_actor *self, void *state, const rt_message *m)
{
	names_state *st = state;
	api *a = actors__api_of(rt_actor_runtime(self));
	ACTORS_ASSERT(a != NULL);
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
	case ACTORS_T_RESEND:
		actors__outbox_run(a, self, &st->outbox, st->durable_lsn,
			&st->redrive_armed);
		break;
	case ACTORS_T_REDRIVE:
		actors__outbox_redrive(a, self, &st->outbox, st->durable_lsn,
			&st->redrive_armed);
		break;
	case NAMES_T_CLAIM:
		on_claim(a, self, st, m);
		break;
	case NAMES_T_LOOKUP:
		on_lookup(self, st, m);
		break;
	default:
		if (m->correlation != 0 && !(m->flags & RT_MESSAGE_F_REPLY))
			reply_code(self, m, API_EINVALID, "unknown request");
		break;
	}
}

static int
names_on_activate(rt_actor *self, void *state, bool fresh)
{
	names_state *st = state;
	if (fresh)
		return 0;
	/* Everything loaded is durable; records written from now on wait
	 * for their notices (UINT64_MAX here sent their effects early). */
	api *a = actors__api_of(rt_actor_runtime(self));
	st->durable_lsn = a->store == NULL ? UINT64_MAX
		: ps_journal_durable_lsn(ps_node_journal(a->store));
	ps_outbox_reset_sent(&st->outbox);
	actors__outbox_run(actors__api_of(rt_actor_runtime(self)), self,
		&st->outbox, UINT64_MAX, &st->redrive_armed);
	return 0;
}

static void
names_free_state(void *state)
{
	names_state *st = state;
	free(st->entries);
	ps_outbox_free(&st->outbox);
	memset(st, 0, sizeof *st);
}

/* Snapshot: [version, [[name, user id]...], outbox(bin)]. */
#define NAMES_SNAPSHOT_VERSION 1u

static int
buffer_write(void *data, const char *bytes, size_t length)
{
	return rt_buffer_append(data, bytes, length) == 0 ? 0 : -1;
}

static int
names_encode_state(const void *state, rt_buffer *out)
{
	const names_state *st = state;
	msgpack_packer p;
	msgpack_packer_init(&p, out, buffer_write);
	msgpack_pack_array(&p, 3);
	msgpack_pack_uint32(&p, NAMES_SNAPSHOT_VERSION);
	msgpack_pack_array(&p, st->count);
	for (uint32_t i = 0; i < st->count; i++) {
		msgpack_pack_array(&p, 2);
		actors__pack_str(&p, st->entries[i].name);
		msgpack_pack_uint64(&p, st->entries[i].user_id);
	}
	size_t n = ps_outbox_encoded_bytes(&st->outbox);
	unsigned char *bytes = malloc(n ? n : 1);
	if (bytes == NULL)
		return RT_ENOMEM;
	ps_outbox_encode(&st->outbox, bytes);
	msgpack_pack_bin(&p, n);
	msgpack_pack_bin_body(&p, bytes, n);
	free(bytes);
	return 0;
}

static int
decode_fields(names_state *st, const msgpack_object *f)
{
	if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		f[0].via.u64 != NAMES_SNAPSHOT_VERSION ||
		f[1].type != MSGPACK_OBJECT_ARRAY ||
		f[2].type != MSGPACK_OBJECT_BIN)
		return RT_ECORRUPT;
	for (uint32_t i = 0; i < f[1].via.array.size; i++) {
		const msgpack_object *e = &f[1].via.array.ptr[i];
		if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
			return RT_ECORRUPT;
		const msgpack_object *k = &e->via.array.ptr[0];
		const msgpack_object *v = &e->via.array.ptr[1];
		if (k->type != MSGPACK_OBJECT_STR ||
			k->via.str.size > API_USERNAME_BYTES_MAX ||
			v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return RT_ECORRUPT;
		char name[API_USERNAME_BYTES_MAX + 2];
		memcpy(name, k->via.str.ptr, k->via.str.size);
		name[k->via.str.size] = '\0';
		if (names_insert(st, name, v->via.u64) < 0)
			return RT_ENOMEM;
	}
	size_t consumed;
	if (ps_outbox_decode(&st->outbox, f[2].via.bin.ptr, f[2].via.bin.size,
		    &consumed) != 0 ||
		consumed != f[2].via.bin.size)
		return RT_ECORRUPT;
	return 0;
}

static int
names_decode_state(void *state, const void *bytes, size_t length)
{
	names_state *st = state;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t offset = 0;
	int rc = RT_ECORRUPT;
	if (msgpack_unpack_next(&u, bytes, length, &offset) ==
			MSGPACK_UNPACK_SUCCESS &&
		offset == length && u.data.type == MSGPACK_OBJECT_ARRAY &&
		u.data.via.array.size == 3)
		rc = decode_fields(st, u.data.via.array.ptr);
	msgpack_unpacked_destroy(&u);
	if (rc != 0)
		names_free_state(st);
	return rc;
}

bool
actors__names_owes(const void *state)
{
	const names_state *st = state;
	return st->outbox.count > 0;
}

static void
names_on_passivate(rt_actor *self, void *state)
{
	names_state *st = state;
	actors__passivate_owing(actors__api_of(rt_actor_runtime(self)), self,
		actors__names_owes(st));
}

void
actors__names_ops(rt_actor_ops *ops)
{
	memset(ops, 0, sizeof *ops);
	ops->name = "names";
	ops->state_size = sizeof(names_state);
	ops->mailbox_messages_max = NAMES_MAILBOX_MESSAGES_MAX;
	ops->on_activate = names_on_activate;
	ops->on_passivate = names_on_passivate;
	ops->on_message = names_on_message;
	ops->encode_state = names_encode_state;
	ops->decode_state = names_decode_state;
	ops->apply_record = names_apply_record;
	ops->free_state = names_free_state;
}
