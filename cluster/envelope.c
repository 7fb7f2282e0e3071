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
 * Envelopes and frames are on the hot path of every cross-node message,
 * so they are written straight into one reservation per envelope (the
 * smallest encoding of each integer, as msgpack-c's packer chooses:
 * the bytes are the same) and read by a cursor over the bytes, with no
 * allocation (msgpack-c's unpacker builds a zone of objects per frame).
 * System message bodies still go through msgpack-c.
 *
 * What it does not do: interpret payloads or system message bodies.
 */
#include "cluster/internal.h"

/* Fields of an envelope and of a frame header on the wire. */
#define ENVELOPE_FIELDS 10u
#define FRAME_FIELDS 7u
/* Where a frame's peer incarnation sits: after the fixarray header and
 * the version (a positive fixint), as 0xcf + 8 big-endian bytes. */
#define FRAME_PEER_OFFSET 2u
/* Envelopes one frame may hold: a frame is at most a few hundred KiB
 * and an envelope at least 12 bytes; 1M bounds a hostile count. */
#define FRAME_ENVELOPES_MAX (1u << 20)

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
	size_t used = 0;
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

/* ---- the direct writer ---------------------------------------------- */

/* Bytes an envelope takes at most besides its payload: the array
 * header, 9 integers of at most 9 bytes, a bin32 header. */
#define ENVELOPE_OVERHEAD_BYTES_MAX (1u + 9u * 9u + 5u)

static unsigned char *
put_be(unsigned char *p, uint64_t v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8u * (n - 1u - i)));
	return p + n;
}

/* An unsigned integer in its smallest msgpack form. */
static unsigned char *
put_uint(unsigned char *p, uint64_t v)
{
	if (v <= 0x7f) {
		*p = (unsigned char)v;
		return p + 1;
	}
	if (v <= 0xff) {
		*p = 0xcc;
		return put_be(p + 1, v, 1);
	}
	if (v <= 0xffff) {
		*p = 0xcd;
		return put_be(p + 1, v, 2);
	}
	if (v <= 0xffffffffu) {
		*p = 0xce;
		return put_be(p + 1, v, 4);
	}
	*p = 0xcf;
	return put_be(p + 1, v, 8);
}

static unsigned char *
put_bin_header(unsigned char *p, uint32_t size)
{
	if (size <= 0xff) {
		*p = 0xc4;
		return put_be(p + 1, size, 1);
	}
	if (size <= 0xffff) {
		*p = 0xc5;
		return put_be(p + 1, size, 2);
	}
	*p = 0xc6;
	return put_be(p + 1, size, 4);
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
	if (rt_buffer_reserve(out, ENVELOPE_OVERHEAD_BYTES_MAX + e->size) != 0)
		return CL_ENOMEM;
	unsigned char *start = out->bytes + out->length;
	unsigned char *p = start;
	*p++ = 0x90 | ENVELOPE_FIELDS;
	p = put_uint(p, CL_WIRE_VERSION);
	p = put_uint(p, e->epoch);
	p = put_uint(p, e->from.kind);
	p = put_uint(p, e->from.id);
	p = put_uint(p, e->to.kind);
	p = put_uint(p, e->to.id);
	p = put_uint(p, e->correlation);
	p = put_uint(p, e->type);
	p = put_uint(p, e->flags);
	p = put_bin_header(p, e->size);
	if (e->size > 0)
		memcpy(p, e->payload, e->size);
	p += e->size;
	CL_ASSERT((size_t)(p - start) <= ENVELOPE_OVERHEAD_BYTES_MAX + e->size);
	out->length += (size_t)(p - start);
	return CL_OK;
}

/* ---- the cursor reader ---------------------------------------------- */

typedef struct reader {
	const unsigned char *p;
	size_t length;
	size_t pos;
} reader;

/* A big-endian integer of n = 1, 2, 4 or 8 bytes. */
static inline uint64_t
be_load(const unsigned char *p, uint32_t n)
{
	switch (n) {
	case 1:
		return p[0];
	case 2: {
		uint16_t v;
		memcpy(&v, p, 2);
		return __builtin_bswap16(v);
	}
	case 4: {
		uint32_t v;
		memcpy(&v, p, 4);
		return __builtin_bswap32(v);
	}
	default: {
		CL_ASSERT(n == 8);
		uint64_t v;
		memcpy(&v, p, 8);
		return __builtin_bswap64(v);
	}
	}
}

/* A non-negative integer (msgpack-c reads the signed forms of
 * non-negative values as positive integers too), at most max. */
static inline int
get_uint(reader *r, uint64_t max, uint64_t *out)
{
	if (r->pos >= r->length)
		return CL_ECORRUPT;
	unsigned char t = r->p[r->pos++];
	uint32_t n;
	bool is_signed = false;
	if (t <= 0x7f) {
		*out = t;
		return t <= max ? CL_OK : CL_ECORRUPT;
	}
	if (t >= 0xcc && t <= 0xcf) {
		n = 1u << (t - 0xcc);
	} else if (t >= 0xd0 && t <= 0xd3) {
		n = 1u << (t - 0xd0);
		is_signed = true;
	} else {
		return CL_ECORRUPT;
	}
	if (r->length - r->pos < n)
		return CL_ECORRUPT;
	uint64_t v = be_load(r->p + r->pos, n);
	r->pos += n;
	if (is_signed && (v >> (8u * n - 1u)) != 0)
		return CL_ECORRUPT; /* negative */
	if (v > max)
		return CL_ECORRUPT;
	*out = v;
	return CL_OK;
}

static inline int
get_u32(reader *r, uint32_t *out)
{
	uint64_t v;
	int rc = get_uint(r, UINT32_MAX, &v);
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static int
get_array(reader *r, uint32_t *count)
{
	if (r->pos >= r->length)
		return CL_ECORRUPT;
	unsigned char t = r->p[r->pos++];
	if (t >= 0x90 && t <= 0x9f) {
		*count = t & 0x0fu;
		return CL_OK;
	}
	uint32_t n = t == 0xdc ? 2u : t == 0xdd ? 4u : 0u;
	if (n == 0 || r->length - r->pos < n)
		return CL_ECORRUPT;
	*count = (uint32_t)be(r->p + r->pos, n);
	r->pos += n;
	return CL_OK;
}

static int
get_bin(reader *r, const unsigned char **bytes, uint32_t *size)
{
	if (r->pos >= r->length)
		return CL_ECORRUPT;
	unsigned char t = r->p[r->pos++];
	if (t < 0xc4 || t > 0xc6)
		return CL_ECORRUPT;
	uint32_t n = 1u << (t - 0xc4);
	if (r->length - r->pos < n)
		return CL_ECORRUPT;
	uint64_t v = be(r->p + r->pos, n);
	r->pos += n;
	if (v > r->length - r->pos)
		return CL_ECORRUPT;
	*bytes = r->p + r->pos;
	*size = (uint32_t)v;
	r->pos += v;
	return CL_OK;
}

/* One envelope at the cursor. CL_EVERSION for another wire version. */
static int
get_envelope(reader *r, cl_envelope *e)
{
	uint32_t n, version;
	int rc = get_array(r, &n);
	if (rc != 0)
		return rc;
	if (n != ENVELOPE_FIELDS)
		return CL_ECORRUPT;
	if ((rc = get_u32(r, &version)) != 0)
		return rc;
	if (version != CL_WIRE_VERSION)
		return CL_EVERSION;
	memset(e, 0, sizeof *e);
	if (get_uint(r, UINT64_MAX, &e->epoch) != 0 ||
		get_u32(r, &e->from.kind) != 0 ||
		get_uint(r, UINT64_MAX, &e->from.id) != 0 ||
		get_u32(r, &e->to.kind) != 0 ||
		get_uint(r, UINT64_MAX, &e->to.id) != 0 ||
		get_uint(r, UINT64_MAX, &e->correlation) != 0 ||
		get_u32(r, &e->type) != 0 ||
		get_u32(r, &e->flags) != 0 ||
		get_bin(r, &e->payload, &e->size) != 0)
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
	reader r = {bytes, length, 0};
	int rc = get_envelope(&r, e);
	if (rc == 0 && used_out != NULL)
		*used_out = r.pos;
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
	size_t start = out->length;
	msgpack_pack_array(&p.pk, FRAME_FIELDS);
	msgpack_pack_uint32(&p.pk, CL_WIRE_VERSION);
	if (p.status != 0)
		return p.status;
	/* The peer's incarnation right after the version, always as a 9-byte
	 * uint64, so a frame sealed before the sender knew it can be
	 * readdressed in place (cl__frame_readdress). */
	CL_ASSERT(out->length == start + FRAME_PEER_OFFSET);
	unsigned char peer[9] = {0xcf};
	for (int i = 0; i < 8; i++)
		peer[1 + i] = (unsigned char)(h->peer_incarnation >> (56 - 8 * i));
	if (rt_buffer_append(out, peer, sizeof peer) != 0)
		return CL_ENOMEM;
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

void
cl__frame_readdress(unsigned char *frame, size_t length,
	uint64_t peer_incarnation)
{
	CL_ASSERT(length >= FRAME_PEER_OFFSET + 9u);
	CL_ASSERT(frame[FRAME_PEER_OFFSET] == 0xcf);
	for (int i = 0; i < 8; i++)
		frame[FRAME_PEER_OFFSET + 1 + i] =
			(unsigned char)(peer_incarnation >> (56 - 8 * i));
}

/* The frame header at the cursor; leaves it at the first envelope. */
static int
get_frame_header(reader *r, cl_frame_header *h)
{
	uint32_t n, version, source, count;
	int rc = get_array(r, &n);
	if (rc != 0)
		return rc;
	if (n != FRAME_FIELDS)
		return CL_ECORRUPT;
	if ((rc = get_u32(r, &version)) != 0)
		return rc;
	if (version != CL_WIRE_VERSION)
		return CL_EVERSION;
	if (get_uint(r, UINT64_MAX, &h->peer_incarnation) != 0 ||
		get_u32(r, &source) != 0 || source > CL_NODE_ID_MAX ||
		get_uint(r, UINT64_MAX, &h->incarnation) != 0 ||
		get_uint(r, UINT64_MAX, &h->sequence) != 0 ||
		get_uint(r, UINT64_MAX, &h->ack) != 0 ||
		get_array(r, &count) != 0 || count > FRAME_ENVELOPES_MAX)
		return CL_ECORRUPT;
	h->source = (uint16_t)source;
	h->count = count;
	return CL_OK;
}

int
cl_frame_decode(const void *bytes, size_t length, cl_frame_header *h,
	cl_frame_envelope_callback cb, void *arg)
{
	CL_ASSERT(bytes != NULL || length == 0);
	CL_ASSERT(h != NULL);
	reader r = {bytes, length, 0};
	int rc = get_frame_header(&r, h);
	if (rc != 0)
		return rc;
	/* check all before delivering any: a corrupt frame delivers nothing */
	size_t first = r.pos;
	for (uint32_t i = 0; rc == 0 && i < h->count; i++) {
		cl_envelope e;
		rc = get_envelope(&r, &e);
	}
	if (rc == 0 && r.pos != length)
		rc = CL_ECORRUPT; /* bytes after the last envelope */
	r.pos = first;
	for (uint32_t i = 0; rc == 0 && cb != NULL && i < h->count; i++) {
		cl_envelope e;
		rc = get_envelope(&r, &e);
		CL_ASSERT(rc == 0);
		rc = cb(arg, &e);
	}
	return rc;
}
