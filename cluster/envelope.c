/*
 * envelope.c — the wire form of cross-node messages, in msgpack.
 *
 * An envelope is an array of 10:
 *   [version, epoch, from_kind, from_id, to_kind, to_id, correlation,
 *    type, flags, payload(bin)]
 * A frame (one transport send) is an array of 6:
 *   [version, source, incarnation, sequence, ack, [envelope...]]
 * where the inner array always has a 32-bit length header so the writer
 * can patch the count when it seals the batch.
 *
 * Invariants: decoding checks every field's type and range before a
 * caller sees any envelope of the frame (kinds < RT_KINDS_MAX, payloads
 * <= RT_MESSAGE_BYTES_MAX, version == CL_WIRE_VERSION); payloads are
 * referenced in place, never copied.
 *
 * What it does not do: interpret payloads or system message bodies.
 */
#include "cluster/internal.h"

/* Fields of an envelope and of a frame header on the wire. */
#define ENVELOPE_FIELDS 10u
#define FRAME_FIELDS 6u
/* Envelopes one frame may hold: a frame is at most a few hundred KiB
 * and an envelope at least 12 bytes; 1M bounds a hostile count. */
#define FRAME_ENVELOPES_MAX (1u << 20)
/* First zone chunk when decoding a frame: fits ~100 small envelopes. */
#define ZONE_CHUNK_BYTES 8192u

static int
packer_write(void *data, const char *buf, size_t len)
{
	cl__packer *p = data;
	if (p->status != 0)
		return -1;
	if (rt_buffer_append(p->out, buf, len) != 0) {
		p->status = CL_ENOMEM;
		return -1;
	}
	return 0;
}

void
cl__packer_init(cl__packer *p, rt_buffer *out)
{
	CL_ASSERT(p != NULL);
	CL_ASSERT(out != NULL);
	p->out = out;
	p->status = 0;
	msgpack_packer_init(&p->pk, p, packer_write);
}

int
cl__obj_u64(const msgpack_object *o, uint64_t *out)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return CL_ECORRUPT;
	*out = o->via.u64;
	return CL_OK;
}

int
cl__obj_u32(const msgpack_object *o, uint32_t *out)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		o->via.u64 > UINT32_MAX)
		return CL_ECORRUPT;
	*out = (uint32_t)o->via.u64;
	return CL_OK;
}

int
cl__obj_bin(const msgpack_object *o, const unsigned char **bytes,
	uint32_t *length)
{
	if (o->type != MSGPACK_OBJECT_BIN)
		return CL_ECORRUPT;
	*bytes = (const unsigned char *)o->via.bin.ptr;
	*length = o->via.bin.size;
	return CL_OK;
}

int
cl__obj_str(const msgpack_object *o, char *out, size_t size)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
		return CL_ECORRUPT;
	if (o->via.str.size > 0) /* an empty string may have no pointer */
		memcpy(out, o->via.str.ptr, o->via.str.size);
	out[o->via.str.size] = '\0';
	if (strlen(out) != o->via.str.size)
		return CL_ECORRUPT; /* embedded NUL */
	return CL_OK;
}

int
cl__obj_array(const msgpack_object *o, uint32_t count_min,
	const msgpack_object **items, uint32_t *count)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < count_min)
		return CL_ECORRUPT;
	*items = o->via.array.ptr;
	*count = o->via.array.size;
	return CL_OK;
}

static uint64_t
be(const unsigned char *p, uint32_t n)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * Walks one msgpack object's headers without allocating and checks that
 * no container declares more items than bytes remain (msgpack-c would
 * allocate the declared count before reading: a 5-byte array32 header
 * could ask for 64 GiB; the fuzzer found it). *used_out gets the
 * object's length. CL_ECORRUPT on anything malformed or truncated.
 */
static int
msgpack_check(const unsigned char *b, size_t length, size_t *used_out)
{
	size_t pos = 0;
	uint64_t pending = 1;
	while (pending > 0) {
		if (pos >= length)
			return CL_ECORRUPT;
		unsigned char t = b[pos++];
		uint64_t items = 0, skip = 0;
		uint32_t n = 0; /* size-field bytes */
		pending--;
		if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
			continue;
		if (t >= 0x80 && t <= 0x8f)
			items = 2u * (t & 0x0fu);
		else if (t >= 0x90 && t <= 0x9f)
			items = t & 0x0fu;
		else if (t >= 0xa0 && t <= 0xbf)
			skip = t & 0x1fu;
		else if (t == 0xc4 || t == 0xd9)
			n = 1;
		else if (t == 0xc5 || t == 0xda)
			n = 2;
		else if (t == 0xc6 || t == 0xdb)
			n = 4;
		else if (t >= 0xc7 && t <= 0xc9)
			n = t == 0xc7 ? 1u : t == 0xc8 ? 2u : 4u;
		else if (t == 0xca || t == 0xcb)
			skip = t == 0xca ? 4u : 8u;
		else if (t >= 0xcc && t <= 0xd3)
			skip = 1u << ((t - 0xcc) & 3u);
		else if (t >= 0xd4 && t <= 0xd8)
			skip = 1u + (1u << (t - 0xd4));
		else if (t == 0xdc || t == 0xde)
			n = 2;
		else if (t == 0xdd || t == 0xdf)
			n = 4;
		else
			return CL_ECORRUPT; /* 0xc1 */
		if (n > 0) {
			if (length - pos < n)
				return CL_ECORRUPT;
			uint64_t v = be(b + pos, n);
			pos += n;
			if (t >= 0xdc)
				items = (t == 0xde || t == 0xdf) ? 2 * v : v;
			else
				skip = v + ((t >= 0xc7 && t <= 0xc9) ? 1u : 0u);
		}
		if (skip > length - pos || items > length - pos)
			return CL_ECORRUPT;
		pos += skip;
		pending += items;
	}
	*used_out = pos;
	return CL_OK;
}

int
cl__unpack(const void *bytes, size_t length, msgpack_zone *zone,
	msgpack_object *out)
{
	size_t offset = 0;
	size_t used;
	if (msgpack_check(bytes, length, &used) != 0 || used != length)
		return CL_ECORRUPT;
	msgpack_unpack_return r =
		msgpack_unpack(bytes, length, &offset, zone, out);
	if (r == MSGPACK_UNPACK_NOMEM_ERROR)
		return CL_ENOMEM;
	if (r != MSGPACK_UNPACK_SUCCESS || offset != length)
		return CL_ECORRUPT;
	return CL_OK;
}

int
cl_envelope_encode(const cl_envelope *e, rt_buffer *out)
{
	CL_ASSERT(e != NULL);
	CL_ASSERT(out != NULL);
	CL_ASSERT(e->size <= RT_MESSAGE_BYTES_MAX);
	CL_ASSERT(e->size == 0 || e->payload != NULL);
	CL_ASSERT(e->from.kind < RT_KINDS_MAX);
	CL_ASSERT(e->to.kind < RT_KINDS_MAX);
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, ENVELOPE_FIELDS);
	msgpack_pack_uint32(&p.pk, CL_WIRE_VERSION);
	msgpack_pack_uint64(&p.pk, e->epoch);
	msgpack_pack_uint32(&p.pk, e->from.kind);
	msgpack_pack_uint64(&p.pk, e->from.id);
	msgpack_pack_uint32(&p.pk, e->to.kind);
	msgpack_pack_uint64(&p.pk, e->to.id);
	msgpack_pack_uint64(&p.pk, e->correlation);
	msgpack_pack_uint32(&p.pk, e->type);
	msgpack_pack_uint32(&p.pk, e->flags);
	msgpack_pack_bin(&p.pk, e->size);
	msgpack_pack_bin_body(&p.pk, e->payload, e->size);
	return p.status;
}

static int
envelope_from_object(const msgpack_object *o, cl_envelope *e)
{
	const msgpack_object *f;
	uint32_t n;
	uint32_t version;
	int rc = cl__obj_array(o, ENVELOPE_FIELDS, &f, &n);
	if (rc != 0)
		return rc;
	if (n != ENVELOPE_FIELDS)
		return CL_ECORRUPT;
	if ((rc = cl__obj_u32(&f[0], &version)) != 0)
		return rc;
	if (version != CL_WIRE_VERSION)
		return CL_EVERSION;
	memset(e, 0, sizeof *e);
	if (cl__obj_u64(&f[1], &e->epoch) != 0 ||
		cl__obj_u32(&f[2], &e->from.kind) != 0 ||
		cl__obj_u64(&f[3], &e->from.id) != 0 ||
		cl__obj_u32(&f[4], &e->to.kind) != 0 ||
		cl__obj_u64(&f[5], &e->to.id) != 0 ||
		cl__obj_u64(&f[6], &e->correlation) != 0 ||
		cl__obj_u32(&f[7], &e->type) != 0 ||
		cl__obj_u32(&f[8], &e->flags) != 0 ||
		cl__obj_bin(&f[9], &e->payload, &e->size) != 0)
		return CL_ECORRUPT;
	if (e->from.kind >= RT_KINDS_MAX || e->to.kind >= RT_KINDS_MAX)
		return CL_ECORRUPT;
	if (e->size > RT_MESSAGE_BYTES_MAX)
		return CL_ECORRUPT;
	return CL_OK;
}

int
cl_envelope_decode(const void *bytes, size_t length, cl_envelope *e,
	size_t *used_out)
{
	CL_ASSERT(bytes != NULL || length == 0);
	CL_ASSERT(e != NULL);
	size_t checked;
	if (msgpack_check(bytes, length, &checked) != 0)
		return CL_ECORRUPT;
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, 1024))
		return CL_ENOMEM;
	msgpack_object o;
	size_t offset = 0;
	int rc;
	msgpack_unpack_return r =
		msgpack_unpack(bytes, checked, &offset, &zone, &o);
	if (r == MSGPACK_UNPACK_NOMEM_ERROR)
		rc = CL_ENOMEM;
	else if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES)
		rc = CL_ECORRUPT;
	else
		rc = envelope_from_object(&o, e);
	msgpack_zone_destroy(&zone);
	if (rc == 0 && used_out != NULL)
		*used_out = offset;
	/* payload points into bytes (the C unpacker references bins) */
	CL_ASSERT(rc != 0 || e->size == 0 ||
		  (e->payload >= (const unsigned char *)bytes &&
			  e->payload + e->size <=
				  (const unsigned char *)bytes + length));
	return rc;
}

int
cl_frame_begin(cl_frame_writer *w, rt_buffer *out, const cl_frame_header *h)
{
	CL_ASSERT(w != NULL);
	CL_ASSERT(out != NULL);
	CL_ASSERT(h != NULL);
	cl__packer p;
	cl__packer_init(&p, out);
	msgpack_pack_array(&p.pk, FRAME_FIELDS);
	msgpack_pack_uint32(&p.pk, CL_WIRE_VERSION);
	msgpack_pack_uint16(&p.pk, h->source);
	msgpack_pack_uint64(&p.pk, h->incarnation);
	msgpack_pack_uint64(&p.pk, h->sequence);
	msgpack_pack_uint64(&p.pk, h->ack);
	if (p.status != 0)
		return p.status;
	/* array32 header with the count patched by cl_frame_end */
	unsigned char header[5] = {0xdd, 0, 0, 0, 0};
	w->count_offset = out->length;
	w->out = out;
	w->count = 0;
	if (rt_buffer_append(out, header, sizeof header) != 0)
		return CL_ENOMEM;
	return CL_OK;
}

int
cl_frame_add(cl_frame_writer *w, const cl_envelope *e)
{
	CL_ASSERT(w != NULL);
	CL_ASSERT(w->out != NULL);
	CL_ASSERT(w->count < FRAME_ENVELOPES_MAX);
	int rc = cl_envelope_encode(e, w->out);
	if (rc == 0)
		w->count++;
	return rc;
}

void
cl_frame_end(cl_frame_writer *w)
{
	CL_ASSERT(w != NULL);
	CL_ASSERT(w->out->length >= w->count_offset + 5u);
	unsigned char *c = w->out->bytes + w->count_offset;
	CL_ASSERT(c[0] == 0xdd);
	c[1] = (unsigned char)(w->count >> 24);
	c[2] = (unsigned char)(w->count >> 16);
	c[3] = (unsigned char)(w->count >> 8);
	c[4] = (unsigned char)w->count;
}

static int
frame_header_from_object(const msgpack_object *o, cl_frame_header *h,
	const msgpack_object **envelopes)
{
	const msgpack_object *f;
	uint32_t n;
	uint32_t version;
	uint32_t source;
	int rc = cl__obj_array(o, FRAME_FIELDS, &f, &n);
	if (rc != 0)
		return rc;
	if (n != FRAME_FIELDS)
		return CL_ECORRUPT;
	if ((rc = cl__obj_u32(&f[0], &version)) != 0)
		return rc;
	if (version != CL_WIRE_VERSION)
		return CL_EVERSION;
	if (cl__obj_u32(&f[1], &source) != 0 || source > CL_NODE_ID_MAX ||
		cl__obj_u64(&f[2], &h->incarnation) != 0 ||
		cl__obj_u64(&f[3], &h->sequence) != 0 ||
		cl__obj_u64(&f[4], &h->ack) != 0)
		return CL_ECORRUPT;
	h->source = (uint16_t)source;
	const msgpack_object *items;
	uint32_t count;
	if (cl__obj_array(&f[5], 0, &items, &count) != 0 ||
		count > FRAME_ENVELOPES_MAX)
		return CL_ECORRUPT;
	h->count = count;
	*envelopes = &f[5];
	return CL_OK;
}

int
cl_frame_decode(const void *bytes, size_t length, cl_frame_header *h,
	cl_frame_envelope_callback cb, void *arg)
{
	CL_ASSERT(bytes != NULL || length == 0);
	CL_ASSERT(h != NULL);
	msgpack_zone zone;
	if (!msgpack_zone_init(&zone, ZONE_CHUNK_BYTES))
		return CL_ENOMEM;
	msgpack_object o;
	const msgpack_object *list = NULL;
	int rc = cl__unpack(bytes, length, &zone, &o);
	if (rc == 0)
		rc = frame_header_from_object(&o, h, &list);
	/* check all before delivering any: a corrupt frame delivers nothing */
	for (uint32_t i = 0; rc == 0 && i < h->count; i++) {
		cl_envelope e;
		rc = envelope_from_object(&list->via.array.ptr[i], &e);
	}
	for (uint32_t i = 0; rc == 0 && cb != NULL && i < h->count; i++) {
		cl_envelope e;
		rc = envelope_from_object(&list->via.array.ptr[i], &e);
		CL_ASSERT(rc == 0);
		rc = cb(arg, &e);
	}
	msgpack_zone_destroy(&zone);
	return rc;
}
