/*
 * control.c — the control protocol between flockctl and a node.
 *
 * Request: msgpack [version, op, node, force, address].
 * Reply:   msgpack [version, code, message, status, map or nil], where
 *   status = [self, coordinator, epoch, lease_held, moves_pending,
 *             moves_in_flight, [member...]] and
 *   member = [id, state, liveness, address, partitions, actors_active,
 *             messages_in, incarnation].
 * Admin requests sent to a node that is not the coordinator come back
 * with CL_ENOTLEADER and the status, whose coordinator and members say
 * where to go (its control port is its cluster port + 1).
 */
#include "cluster/internal.h"

#define CONTROL_VERSION 1u
#define MEMBER_FIELDS 8u
#define STATUS_FIELDS 7u

int
cl__control_request_encode(const cl__control_request *r, rt_buffer *out)
{
	cl__packer p;
	cl__packer_init(&p, out);
	size_t len = strlen(r->address);
	msgpack_pack_array(&p.pk, 5);
	msgpack_pack_uint32(&p.pk, CONTROL_VERSION);
	msgpack_pack_uint32(&p.pk, r->op);
	msgpack_pack_uint16(&p.pk, r->node);
	if (r->force)
		msgpack_pack_true(&p.pk);
	else
		msgpack_pack_false(&p.pk);
	msgpack_pack_str(&p.pk, len);
	msgpack_pack_str_body(&p.pk, r->address, len);
	return p.status;
}

int
cl__control_request_decode(const void *bytes, size_t length,
	cl__control_request *r)
{
	memset(r, 0, sizeof *r);
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 512))
		return CL_ENOMEM;
	msgpack_object o;
	const msgpack_object *f;
	uint32_t n, version, node;
	int rc = cl__unpack(bytes, length, &zone, &o);
	if (rc == 0 && (cl__obj_array(&o, 5, &f, &n) != 0 ||
			       cl__obj_u32(&f[0], &version) != 0 ||
			       cl__obj_u32(&f[1], &r->op) != 0 ||
			       cl__obj_u32(&f[2], &node) != 0 ||
			       node > CL_NODE_ID_MAX ||
			       f[3].type != MSGPACK_OBJECT_BOOLEAN ||
			       cl__obj_str(&f[4], r->address,
				       sizeof r->address) != 0))
		rc = CL_ECORRUPT;
	if (rc == 0 && version != CONTROL_VERSION)
		rc = CL_EVERSION;
	if (rc == 0 && (r->op < CL__CONTROL_STATUS ||
			       r->op > CL__CONTROL_BLOCK))
		rc = CL_EINVAL;
	if (rc == 0) {
		r->node = (uint16_t)node;
		r->force = f[3].via.boolean;
	}
	msgpack_zone_destroy(&zone);
	return rc;
}

static void
pack_status(cl__packer *p, const cl_status *s)
{
	msgpack_pack_array(&p->pk, STATUS_FIELDS);
	msgpack_pack_uint16(&p->pk, s->self);
	msgpack_pack_uint16(&p->pk, s->coordinator);
	msgpack_pack_uint64(&p->pk, s->epoch);
	if (s->lease_held)
		msgpack_pack_true(&p->pk);
	else
		msgpack_pack_false(&p->pk);
	msgpack_pack_uint32(&p->pk, s->moves_pending);
	msgpack_pack_uint32(&p->pk, s->moves_in_flight);
	msgpack_pack_array(&p->pk, s->members_count);
	for (uint32_t i = 0; i < s->members_count; i++) {
		const cl_member_status *m = &s->members[i];
		size_t len = strlen(m->address);
		msgpack_pack_array(&p->pk, MEMBER_FIELDS);
		msgpack_pack_uint16(&p->pk, m->id);
		msgpack_pack_uint8(&p->pk, m->state);
		msgpack_pack_uint8(&p->pk, m->liveness);
		msgpack_pack_str(&p->pk, len);
		msgpack_pack_str_body(&p->pk, m->address, len);
		msgpack_pack_uint32(&p->pk, m->partitions);
		msgpack_pack_uint64(&p->pk, m->actors_active);
		msgpack_pack_uint64(&p->pk, m->messages_in);
		msgpack_pack_uint64(&p->pk, m->incarnation);
	}
}

int
cl__control_reply_encode(int code, const char *message,
	const cl_status *status, const cl_map *map, rt_buffer *out)
{
	cl__packer p;
	cl__packer_init(&p, out);
	size_t len = strlen(message);
	msgpack_pack_array(&p.pk, 5);
	msgpack_pack_uint32(&p.pk, CONTROL_VERSION);
	msgpack_pack_int32(&p.pk, code);
	msgpack_pack_str(&p.pk, len);
	msgpack_pack_str_body(&p.pk, message, len);
	pack_status(&p, status);
	if (map != NULL)
		cl__map_pack(&p, map);
	else
		msgpack_pack_nil(&p.pk);
	return p.status;
}

static int
status_from_object(const msgpack_object *o, cl_status *s)
{
	const msgpack_object *f;
	const msgpack_object *members;
	uint32_t n, count, v;
	memset(s, 0, sizeof *s);
	if (cl__obj_array(o, STATUS_FIELDS, &f, &n) != 0 ||
		cl__obj_u32(&f[0], &v) != 0)
		return CL_ECORRUPT;
	s->self = (uint16_t)v;
	if (cl__obj_u32(&f[1], &v) != 0)
		return CL_ECORRUPT;
	s->coordinator = (uint16_t)v;
	if (cl__obj_u64(&f[2], &s->epoch) != 0 ||
		f[3].type != MSGPACK_OBJECT_BOOLEAN ||
		cl__obj_u32(&f[4], &s->moves_pending) != 0 ||
		cl__obj_u32(&f[5], &s->moves_in_flight) != 0 ||
		cl__obj_array(&f[6], 0, &members, &count) != 0 ||
		count > CL_NODES_MAX)
		return CL_ECORRUPT;
	s->lease_held = f[3].via.boolean;
	for (uint32_t i = 0; i < count; i++) {
		const msgpack_object *g;
		uint32_t id, state, liveness;
		cl_member_status *m = &s->members[i];
		if (cl__obj_array(&members[i], MEMBER_FIELDS, &g, &n) != 0 ||
			cl__obj_u32(&g[0], &id) != 0 ||
			cl__obj_u32(&g[1], &state) != 0 ||
			cl__obj_u32(&g[2], &liveness) != 0 ||
			cl__obj_str(&g[3], m->address, sizeof m->address) != 0 ||
			cl__obj_u32(&g[4], &m->partitions) != 0 ||
			cl__obj_u64(&g[5], &m->actors_active) != 0 ||
			cl__obj_u64(&g[6], &m->messages_in) != 0 ||
			cl__obj_u64(&g[7], &m->incarnation) != 0)
			return CL_ECORRUPT;
		m->id = (uint16_t)id;
		m->state = (uint8_t)state;
		m->liveness = (uint8_t)liveness;
	}
	s->members_count = count;
	return CL_OK;
}

int
cl__control_reply_decode(const void *bytes, size_t length, int *code,
	char *message, size_t message_size, cl_status *status, cl_map *map,
	bool *has_map)
{
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 4096))
		return CL_ENOMEM;
	msgpack_object o;
	const msgpack_object *f;
	uint32_t n, version;
	int rc = cl__unpack(bytes, length, &zone, &o);
	if (rc == 0 && (cl__obj_array(&o, 5, &f, &n) != 0 ||
			       cl__obj_u32(&f[0], &version) != 0))
		rc = CL_ECORRUPT;
	if (rc == 0 && version != CONTROL_VERSION)
		rc = CL_EVERSION;
	if (rc == 0 && f[1].type != MSGPACK_OBJECT_NEGATIVE_INTEGER &&
		f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		rc = CL_ECORRUPT;
	if (rc == 0) {
		*code = (int)f[1].via.i64;
		rc = cl__obj_str(&f[2], message, message_size);
	}
	if (rc == 0)
		rc = status_from_object(&f[3], status);
	*has_map = false;
	if (rc == 0 && f[4].type != MSGPACK_OBJECT_NIL) {
		rc = cl__map_from_object(&f[4], map);
		*has_map = rc == 0;
	}
	msgpack_zone_destroy(&zone);
	return rc;
}
