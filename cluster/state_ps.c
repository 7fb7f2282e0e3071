/*
 * state_ps.c — cl_state_ops over persistence: what a node ships and
 * takes in a partition handoff is what its ps_node stores.
 *
 * export: every actor of the partition with its latest state (snapshot
 * plus journal records recovered after it); import: a snapshot the next
 * activation loads, above every LSN of this node; drop: the partition's
 * snapshots, records and bookkeeping, with a journaled marker so a
 * restart replays none of its old records; sync: a store flush marker
 * behind the imports.
 *
 * It only translates callbacks and error codes; persistence does the
 * work (persistence.h "Partition hand-off").
 */
#include "cluster/internal.h"
#include "persistence/persistence.h"

_Static_assert(PS_PARTITIONS == CL_PARTITIONS, "one partition layout");
_Static_assert(PS_PARTITION_SHIFT == CL_PARTITION_SHIFT,
	"one partition layout");

static int
from_ps(int code)
{
	switch (code) {
	case PS_OK: return CL_OK;
	case PS_ENOMEM: return CL_ENOMEM;
	case PS_EINVAL: return CL_EINVAL;
	case PS_ECORRUPT: return CL_ECORRUPT;
	case PS_EVERSION: return CL_EVERSION;
	case PS_ETOOBIG: return CL_ETOOBIG;
	case PS_EFULL:
	case PS_EBUSY: return CL_EBUSY;
	case PS_ESTOPPED: return CL_EUNAVAILABLE;
	default: return CL_EIO;
	}
}

typedef struct export_context {
	cl_state_item_callback item;
	void *item_arg;
	int status; /* the item callback's CL code, passed back as is */
} export_context;

static int
export_item(void *arg, rt_addr addr, const void *state, size_t state_bytes)
{
	export_context *c = arg;
	c->status = c->item(c->item_arg, addr, state, state_bytes);
	return c->status == 0 ? 0 : PS_EBUSY;
}

static int
ps_export(void *arg, uint32_t partition, cl_state_item_callback item,
	void *item_arg)
{
	export_context c = {item, item_arg, 0};
	int rc = ps_node_export_partition(arg, partition, export_item, &c);
	if (c.status != 0)
		return c.status;
	return from_ps(rc);
}

static int
ps_import(void *arg, rt_addr addr, const void *bytes, size_t length)
{
	return from_ps(ps_node_import_snapshot(arg, addr, bytes, length));
}

static int
ps_drop(void *arg, uint32_t partition)
{
	return from_ps(ps_node_drop_partition(arg, partition));
}

/* A flush marker behind every put queued so far (the imports): the
 * store calls done once they are committed. */
static int
ps_sync(void *arg, cl_state_synced_callback done, void *done_arg)
{
	return from_ps(ps_store_checkpoint(ps_node_store(arg), 0, done,
		done_arg));
}

static void
ps_serving(void *arg)
{
	(void)ps_node_wake(arg); /* out of memory: the next lease gain */
}

static const cl_state_ops state_ops = {
	.export_partition = ps_export,
	.import_actor = ps_import,
	.drop_partition = ps_drop,
	.sync = ps_sync,
	.serving = ps_serving,
};

const cl_state_ops *
cl_state_ops_persistence(void)
{
	return &state_ops;
}
