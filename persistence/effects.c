/*
 * effects.c — sending an outbox's effects and confirming them: the part
 * of the effect protocol (persistence.h) that needs the runtime.
 *
 * Called from actor context only. Sends are never retried here: an effect
 * that could not be sent stays unsent and the actor calls again later.
 */
#include "persistence/internal.h"

/* Targets one pass remembers as blocked; past it the pass stops sending
 * (the rest go next time), so per-target order still holds. */
#define SEND_BLOCKED_TARGETS_MAX 64u

static bool
blocked(const rt_addr *list, uint32_t n, rt_addr target)
{
	for (uint32_t i = 0; i < n; i++)
		if (rt_addr_equal(list[i], target))
			return true;
	return false;
}

uint32_t
ps_outbox_send(rt_actor *self, ps_outbox *outbox, uint64_t durable_lsn,
	uint32_t confirm_type)
{
	ps__assert(self != NULL);
	ps__assert(outbox != NULL);
	rt_runtime *rt = rt_actor_runtime(self);
	rt_addr me = rt_self(self);
	rt_addr stuck[SEND_BLOCKED_TARGETS_MAX];
	uint32_t stuck_count = 0;
	bool stop = false;
	uint32_t unsent = 0;
	for (uint32_t i = 0; i < outbox->count; i++) {
		ps_effect *e = &outbox->effects[i];
		if (e->sent)
			continue;
		if (stop || e->lsn > durable_lsn ||
			blocked(stuck, stuck_count, e->target)) {
			unsent++;
			continue;
		}
		uint32_t size = (uint32_t)sizeof(ps_effect_header) + e->payload_bytes;
		rt_message *m = rt_message_alloc(rt, e->type, size);
		int rc = RT_ENOMEM;
		if (m != NULL) {
			ps_effect_header h = {me.kind, confirm_type, me.id,
				e->sequence, 0};
			memcpy(m->payload, &h, sizeof h);
			if (e->payload_bytes > 0)
				memcpy(m->payload + sizeof h, e->payload,
					e->payload_bytes);
			rc = rt_send(self, e->target, m);
		}
		if (rc == 0) {
			e->sent = true;
			continue;
		}
		unsent++;
		if (stuck_count < SEND_BLOCKED_TARGETS_MAX)
			stuck[stuck_count++] = e->target;
		else
			stop = true;
	}
	return unsent;
}

int
ps_effect_confirm_send(rt_actor *self, const ps_effect_header *header)
{
	ps__assert(self != NULL);
	ps__assert(header != NULL);
	ps_effect_confirm c = {header->sequence};
	rt_addr source = rt_addr_make(header->source_kind, header->source_id);
	int rc = rt_send_copy(self, source, header->confirm_type, &c, sizeof c);
	return rc == 0 ? PS_OK : PS_EFULL;
}
