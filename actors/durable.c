/*
 * actors/durable.c — the glue between the social core's actors and the
 * journal: append a record and get an ACTORS_T_DURABLE notice back, or
 * (no store) get the notice at once from a local sequence.
 *
 * Invariants: every journal call and every barrier yields exactly one
 * notice to the actor (unless the append itself failed, which is
 * returned); notices carry the caller's cookie unchanged.
 *
 * Effects: actors__outbox_run sends what an outbox owes and keeps a
 * redrive timer while anything stays unconfirmed; each firing re-sends
 * every unconfirmed effect, in order, until its target confirms (targets
 * apply duplicates idempotently, so a slow confirmation costs a
 * duplicate, never a double application).
 *
 * What it deliberately does not do: decide what a record means (the
 * kinds do), retry a failed journal (persistence does).
 */
#include "actors/internal.h"

#include "persistence/persistence.h"

static int
notice_now(api *a, rt_actor *self, const actors__cookie *cookie,
	uint64_t lsn)
{
	ps_durable_notice n;
	memset(&n, 0, sizeof n);
	n.lsn = lsn;
	n.status = 0;
	n.cookie_bytes = sizeof *cookie;
	memcpy(n.cookie, cookie, sizeof *cookie);
	(void)a;
	int rc = rt_send_copy(self, rt_self(self), ACTORS_T_DURABLE, &n,
		sizeof n);
	return rc == 0 ? API_OK : API_EUNAVAILABLE;
}

int
actors__journal(api *a, rt_actor *self, uint32_t record_type,
	const void *payload, size_t length, const actors__cookie *cookie,
	uint64_t *lsn_out)
{
	ACTORS_ASSERT(a != NULL);
	ACTORS_ASSERT(cookie != NULL);
	if (a->store == NULL) {
		uint64_t lsn = atomic_fetch_add(&a->local_sequence, 1) + 1;
		*lsn_out = lsn;
		return notice_now(a, self, cookie, lsn);
	}
	int rc = ps_node_append_notify(a->store, rt_self(self), record_type,
		payload, length, rt_self(self), ACTORS_T_DURABLE, cookie,
		sizeof *cookie, lsn_out);
	if (rc != 0) {
		rt_log(a->rt, RT_LOG_WARN, "actors",
			"journal append failed: %s", ps_strerror(rc));
		return API_EUNAVAILABLE;
	}
	return API_OK;
}

int
actors__barrier(api *a, rt_actor *self, const actors__cookie *cookie)
{
	if (a->store == NULL)
		return notice_now(a, self, cookie, 0);
	int rc = ps_node_barrier_notify(a->store, rt_self(self),
		ACTORS_T_DURABLE, cookie, sizeof *cookie);
	return rc == 0 ? API_OK : API_EUNAVAILABLE;
}

int
actors__notice_code(int status)
{
	if (status == 0)
		return API_OK;
	if (status == PS_EFULL || status == PS_ESTOPPED)
		return API_EUNAVAILABLE;
	return API_EINTERNAL;
}

void
actors__redrive_arm(api *a, rt_actor *self, bool *armed)
{
	if (*armed)
		return;
	if (rt_timer_start(a->rt, rt_self(self), ACTORS_T_REDRIVE, NULL, 0,
		    ACTORS_REDRIVE_MS, 0, NULL) == 0)
		*armed = true;
}

void
actors__outbox_run(api *a, rt_actor *self, ps_outbox *o, uint64_t lsn,
	bool *armed)
{
	(void)ps_outbox_send(self, o, lsn, ACTORS_T_EFFECT_CONFIRM);
	const ps_effect *effects;
	if (ps_outbox_pending(o, &effects) > 0)
		actors__redrive_arm(a, self, armed);
}

void
actors__outbox_redrive(api *a, rt_actor *self, ps_outbox *o, uint64_t lsn,
	bool *armed)
{
	*armed = false;
	const ps_effect *effects;
	if (ps_outbox_pending(o, &effects) == 0)
		return;
	ps_outbox_reset_sent(o);
	actors__outbox_run(a, self, o, lsn, armed);
}
