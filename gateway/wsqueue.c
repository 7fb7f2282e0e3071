/*
 * wsqueue.c — WebSocket frame queue, UTF-8 validation, stream messages.
 *
 * Role: each live stream socket owns a queue of rendered event frames
 * waiting for the socket to become writable. The queue is a singly
 * linked list of exactly-sized frames, so an idle socket holds no queue
 * memory at all (the 100,000-idle-sockets budget is 4 KiB each). The
 * queue is bounded in frames (configurable, default
 * GW_WS_QUEUE_FRAMES_DEFAULT) and bytes (GW_WS_QUEUE_BYTES_MAX); past
 * either the caller closes the socket with 4008 and the client resumes
 * with ?since=.
 *
 * Client text frames must be UTF-8 (RFC 6455 §8.1: close 1007 if not);
 * the only client message is {"type":"ack","seq":N}.
 *
 * What it deliberately does not do: write to sockets (lws_server.c does).
 */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

int
gw__frame_push(gw__frame_queue *q, const char *text, size_t length,
	uint64_t seq, uint32_t frames_max)
{
	gw__assert(text != NULL);
	if (q->frames >= frames_max ||
		length > GW_WS_QUEUE_BYTES_MAX - q->bytes)
		return GW_EFULL;
	gw__frame *f = malloc(sizeof *f + GW_WS_PRE + length);
	if (f == NULL)
		return GW_ENOMEM;
	f->next = NULL;
	f->seq = seq;
	f->length = (uint32_t)length;
	f->reserved = 0;
	memcpy(f->bytes + GW_WS_PRE, text, length);
	if (q->tail == NULL)
		q->head = f;
	else
		q->tail->next = f;
	q->tail = f;
	q->frames++;
	q->bytes += (uint32_t)length;
	return 0;
}

gw__frame *
gw__frame_peek(gw__frame_queue *q)
{
	return q->head;
}

void
gw__frame_pop(gw__frame_queue *q)
{
	gw__frame *f = q->head;
	gw__assert(f != NULL);
	gw__assert(q->frames > 0);
	q->head = f->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->frames--;
	q->bytes -= f->length;
	free(f);
}

void
gw__frame_clear(gw__frame_queue *q)
{
	while (q->head != NULL)
		gw__frame_pop(q);
	gw__assert(q->frames == 0);
	gw__assert(q->bytes == 0);
}

bool
gw__utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t extra;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			extra = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			extra = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			extra = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= extra)
			return false;
		for (size_t k = 1; k <= extra; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
			return false;
		if (extra == 3 && (cp < 0x10000 || cp > 0x10ffff))
			return false;
		i += extra + 1;
	}
	return true;
}

int
gw__ws_parse_client(const char *text, size_t length, uint64_t *seq)
{
	json_t *v = json_loadb(text, length, JSON_REJECT_DUPLICATES, NULL);
	if (v == NULL)
		return GW_EINVAL;
	int rc = GW_EINVAL;
	const char *type = json_string_value(json_object_get(v, "type"));
	json_t *s = json_object_get(v, "seq");
	if (json_is_object(v) && type != NULL && strcmp(type, "ack") == 0 &&
		json_is_integer(s) && json_integer_value(s) >= 0) {
		*seq = (uint64_t)json_integer_value(s);
		rc = 0;
	}
	json_decref(v);
	return rc;
}

char *
gw__ws_render_event(const char *type, uint64_t seq,
	const msgpack_object *data, size_t *length)
{
	gw__assert(type != NULL);
	json_t *ev = json_object();
	if (ev == NULL)
		return NULL;
	json_object_set_new(ev, "type", json_string(type));
	if (seq > 0)
		json_object_set_new(ev, "seq", json_integer((json_int_t)seq));
	if (data != NULL) {
		json_t *d;
		if (gw__msgpack_to_json(data, &d) < 0) {
			json_decref(ev);
			return NULL;
		}
		json_object_set_new(ev, "data", d);
	}
	char *s = gw__json_render(ev, length);
	json_decref(ev);
	return s;
}
