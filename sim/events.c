/*
 * sim/events.c — the event queue: a binary min-heap ordered by (virtual
 * ms, sequence). The sequence is assigned at push, so two events due at
 * the same millisecond run in the order they were queued: the run never
 * depends on how the heap happens to break a tie.
 *
 * Invariant: the heap property on (at_ms, sequence); capacity bounded by
 * SIM_EVENTS_MAX (a full queue is a simulator bug: asserted).
 */
#include "sim/internal.h"

/* First heap size; doubles up to SIM_EVENTS_MAX. */
#define EVENTS_INITIAL 1024u

static bool
before(const sim_event *a, const sim_event *b)
{
	if (a->at_ms != b->at_ms)
		return a->at_ms < b->at_ms;
	return a->sequence < b->sequence;
}

void
sim__events_init(sim_events *q)
{
	memset(q, 0, sizeof *q);
	q->next_sequence = 1;
}

void
sim__events_free(sim_events *q)
{
	for (uint32_t i = 0; i < q->count; i++)
		free(q->heap[i].data);
	free(q->heap);
	memset(q, 0, sizeof *q);
}

int
sim__events_push(sim_events *q, sim_event e)
{
	if (q->count == q->capacity) {
		uint32_t capacity = q->capacity ? q->capacity * 2 : EVENTS_INITIAL;
		if (capacity > SIM_EVENTS_MAX)
			return -1;
		sim_event *heap = realloc(q->heap, capacity * sizeof *heap);
		if (heap == NULL)
			return -1;
		q->heap = heap;
		q->capacity = capacity;
	}
	e.sequence = q->next_sequence++;
	uint32_t i = q->count++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!before(&e, &q->heap[parent]))
			break;
		q->heap[i] = q->heap[parent];
		i = parent;
	}
	q->heap[i] = e;
	return 0;
}

uint64_t
sim__events_next_ms(const sim_events *q)
{
	return q->count > 0 ? q->heap[0].at_ms : UINT64_MAX;
}

bool
sim__events_pop(sim_events *q, sim_event *out)
{
	if (q->count == 0)
		return false;
	*out = q->heap[0];
	sim_event last = q->heap[--q->count];
	uint32_t i = 0;
	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= q->count)
			break;
		if (child + 1 < q->count &&
			before(&q->heap[child + 1], &q->heap[child]))
			child++;
		if (!before(&q->heap[child], &last))
			break;
		q->heap[i] = q->heap[child];
		i = child;
	}
	if (q->count > 0)
		q->heap[i] = last;
	return true;
}
