/*
 * consensus.c — the messages of the map consensus and its rules.
 *
 * Each epoch's map is committed by a majority of the voting members
 * before any node acts on it (node.c runs the protocol; see its header).
 * This file holds what is pure: the msgpack forms of the four messages
 * and the rules a vote and a quorum follow, so that the decoders are
 * fuzzed (tests/fuzz/envelope_fuzz.c) and the rules unit-tested.
 *
 *   VOTE_REQ  [term, pre, committed, last_epoch, last_term]
 *   VOTE      [term, asked, granted, pre, leader]
 *   PROPOSE   [term, map]
 *   ACCEPTED  [term, epoch, ok]
 */
#include "cluster/internal.h"

int
cl__vote_request_encode(const cl__vote_request *r, rt_buffer *out)
{
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, 5);
	msgpack_pack_uint64(&p.pk, r->term);
	msgpack_pack_uint8(&p.pk, r->pre ? 1 : 0);
	msgpack_pack_uint64(&p.pk, r->committed);
	msgpack_pack_uint64(&p.pk, r->last_epoch);
	msgpack_pack_uint64(&p.pk, r->last_term);
	return p.status;
}

/* Unpacks bytes into an array of at least fields items. */
static int
unpack_fields(const void *bytes, size_t length, msgpack_zone *zone,
	uint32_t fields, const msgpack_object **f)
{
	msgpack_object o;
	uint32_t count;
	int rc = cl__unpack(bytes, length, zone, &o);
	if (rc == 0 && cl__obj_array(&o, fields, f, &count) != 0)
		rc = CL_ECORRUPT;
	return rc;
}

static int
obj_flag(const msgpack_object *o, bool *out)
{
	uint32_t v;
	if (cl__obj_u32(o, &v) != 0 || v > 1)
		return CL_ECORRUPT;
	*out = v != 0;
	return CL_OK;
}

int
cl__vote_request_decode(const void *bytes, size_t length,
	cl__vote_request *r)
{
	memset(r, 0, sizeof *r);
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 256))
		return CL_ENOMEM;
	const msgpack_object *f;
	int rc = unpack_fields(bytes, length, &zone, 5, &f);
	if (rc == 0 && (cl__obj_u64(&f[0], &r->term) != 0 ||
		obj_flag(&f[1], &r->pre) != 0 ||
		cl__obj_u64(&f[2], &r->committed) != 0 ||
		cl__obj_u64(&f[3], &r->last_epoch) != 0 ||
		cl__obj_u64(&f[4], &r->last_term) != 0 ||
		r->last_epoch < r->committed))
		rc = CL_ECORRUPT;
	msgpack_zone_destroy(&zone);
	return rc;
}

int
cl__vote_reply_encode(const cl__vote_reply *r, rt_buffer *out)
{
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, 5);
	msgpack_pack_uint64(&p.pk, r->term);
	msgpack_pack_uint64(&p.pk, r->asked);
	msgpack_pack_uint8(&p.pk, r->granted ? 1 : 0);
	msgpack_pack_uint8(&p.pk, r->pre ? 1 : 0);
	msgpack_pack_uint16(&p.pk, r->leader);
	return p.status;
}

int
cl__vote_reply_decode(const void *bytes, size_t length, cl__vote_reply *r)
{
	memset(r, 0, sizeof *r);
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 256))
		return CL_ENOMEM;
	const msgpack_object *f;
	uint32_t leader;
	int rc = unpack_fields(bytes, length, &zone, 5, &f);
	if (rc == 0 && (cl__obj_u64(&f[0], &r->term) != 0 ||
		cl__obj_u64(&f[1], &r->asked) != 0 ||
		obj_flag(&f[2], &r->granted) != 0 ||
		obj_flag(&f[3], &r->pre) != 0 ||
		cl__obj_u32(&f[4], &leader) != 0 || leader > CL_NODE_ID_MAX))
		rc = CL_ECORRUPT;
	if (rc == 0)
		r->leader = (uint16_t)leader;
	msgpack_zone_destroy(&zone);
	return rc;
}

int
cl__accepted_encode(const cl__accepted *a, rt_buffer *out)
{
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, 3);
	msgpack_pack_uint64(&p.pk, a->term);
	msgpack_pack_uint64(&p.pk, a->epoch);
	msgpack_pack_uint8(&p.pk, a->ok ? 1 : 0);
	return p.status;
}

int
cl__accepted_decode(const void *bytes, size_t length, cl__accepted *a)
{
	memset(a, 0, sizeof *a);
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 256))
		return CL_ENOMEM;
	const msgpack_object *f;
	int rc = unpack_fields(bytes, length, &zone, 3, &f);
	if (rc == 0 && (cl__obj_u64(&f[0], &a->term) != 0 ||
		cl__obj_u64(&f[1], &a->epoch) != 0 ||
		obj_flag(&f[2], &a->ok) != 0))
		rc = CL_ECORRUPT;
	msgpack_zone_destroy(&zone);
	return rc;
}

int
cl__propose_encode(uint64_t term, const cl_map *map, rt_buffer *out)
{
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, 2);
	msgpack_pack_uint64(&p.pk, term);
	return cl__map_pack(&p, map);
}

int
cl__propose_decode(const void *bytes, size_t length, uint64_t *term,
	cl_map *map)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 2048))
		return CL_ENOMEM;
	const msgpack_object *f;
	int rc = unpack_fields(bytes, length, &zone, 2, &f);
	if (rc == 0 && cl__obj_u64(&f[0], term) != 0)
		rc = CL_ECORRUPT;
	if (rc == 0)
		rc = cl__map_from_object(&f[1], map);
	msgpack_zone_destroy(&zone);
	return rc;
}

static bool
state_votes(uint8_t state)
{
	return state == CL_NODE_ACTIVE || state == CL_NODE_DRAINING;
}

static uint32_t
voters_count(const cl_map *map)
{
	uint32_t voters = 0;
	for (uint32_t i = 0; i < map->nodes_count; i++)
		voters += state_votes(map->nodes[i].state);
	return voters;
}

bool
cl__map_voter(const cl_map *map, uint16_t id)
{
	const cl_map_node *m = cl_map_find(map, id);
	if (m == NULL)
		return false;
	return voters_count(map) == 0 || state_votes(m->state);
}

bool
cl__map_majority(const cl_map *map, const uint16_t *ids, uint32_t count)
{
	uint32_t voters = voters_count(map);
	bool all = voters == 0;
	if (all)
		voters = map->nodes_count;
	if (voters == 0)
		return false;
	uint32_t have = 0;
	for (uint32_t i = 0; i < map->nodes_count; i++) {
		const cl_map_node *m = &map->nodes[i];
		if (!all && !state_votes(m->state))
			continue;
		for (uint32_t k = 0; k < count; k++)
			if (ids[k] == m->id) {
				have++;
				break;
			}
	}
	return have * 2 > voters;
}

bool
cl__vote_up_to_date(uint64_t candidate_committed,
	uint64_t candidate_last_epoch, uint64_t candidate_last_term,
	uint64_t committed, uint64_t last_epoch, uint64_t last_term)
{
	uint64_t c_last = candidate_last_epoch > candidate_committed
		? candidate_last_epoch : candidate_committed;
	uint64_t v_last = last_epoch > committed ? last_epoch : committed;
	if (c_last != v_last)
		return c_last > v_last;
	bool c_committed = candidate_committed >= c_last;
	bool v_committed = committed >= v_last;
	if (v_committed)
		return c_committed;
	if (c_committed)
		return true;
	return candidate_last_term >= last_term;
}
