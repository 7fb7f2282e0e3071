/*
 * persistence_outbox_test.c — the outbox and dedupe helpers of the effect
 * protocol, without a runtime.
 *
 * Goal: sequences are deterministic, unconfirmed effects survive an
 * encode/decode (what a snapshot does) and are listed again for re-send,
 * confirmations remove exactly one effect, a target applies each (source,
 * sequence) once however often it is re-sent, damaged encodings are
 * refused, and an outbox gives back the room a burst made it grow.
 * Method: plain structs, a simulated crash = encode, free, decode.
 */
#include "persistence/persistence.h"
#include "tests/test.h"

static void
roundtrip_outbox(ps_outbox *o)
{
	size_t n = ps_outbox_encoded_bytes(o);
	unsigned char *buf = malloc(n);
	CHECK(buf != NULL);
	CHECK_EQ(ps_outbox_encode(o, buf), n);
	ps_outbox_free(o);
	size_t used = 0;
	CHECK_EQ(ps_outbox_decode(o, buf, n, &used), 0);
	CHECK_EQ(used, n);
	free(buf);
}

TEST(persistence_outbox_resend_after_crash)
{
	ps_outbox o = {0};
	for (uint64_t i = 0; i < 10; i++) {
		uint64_t seq;
		char payload[16];
		int len = snprintf(payload, sizeof payload, "e%llu",
			(unsigned long long)i);
		CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, i % 3), 77, payload,
				 (size_t)len, 100 + i, &seq),
			0);
		CHECK_EQ_U64(seq, i + 1);
	}
	CHECK_EQ(ps_outbox_confirm(&o, 2), 0);
	CHECK_EQ(ps_outbox_confirm(&o, 5), 0);
	CHECK_EQ(ps_outbox_confirm(&o, 5), PS_ENOTFOUND); /* duplicate */
	o.effects[0].sent = true;
	roundtrip_outbox(&o);
	const ps_effect *e;
	uint32_t n = ps_outbox_pending(&o, &e);
	CHECK_EQ(n, 8);
	uint64_t want[] = {1, 3, 4, 6, 7, 8, 9, 10};
	for (uint32_t i = 0; i < n; i++) {
		CHECK_EQ_U64(e[i].sequence, want[i]);
		CHECK(!e[i].sent); /* everything is re-sent after a restart */
		CHECK_EQ(e[i].target.kind, 5);
		CHECK_EQ_U64(e[i].target.id, (want[i] - 1) % 3);
		CHECK_EQ_U64(e[i].lsn, 100 + want[i] - 1);
		char payload[16];
		int len = snprintf(payload, sizeof payload, "e%llu",
			(unsigned long long)(want[i] - 1));
		CHECK_EQ(e[i].payload_bytes, len);
		CHECK(memcmp(e[i].payload, payload, (size_t)len) == 0);
	}
	/* Sequences continue after the restart; none is reused. */
	uint64_t seq;
	CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, 1), 77, "x", 1, 200, &seq), 0);
	CHECK_EQ_U64(seq, 11);
	ps_outbox_free(&o);
}

TEST(persistence_outbox_bound_and_damage)
{
	ps_outbox o = {0};
	for (uint32_t i = 0; i < PS_OUTBOX_EFFECTS_MAX; i++)
		CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, 1), 1, NULL, 0, i, NULL),
			0);
	CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, 1), 1, NULL, 0, 0, NULL),
		PS_EFULL);
	ps_outbox_free(&o);
	CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, 1), 1, "abc", 3, 1, NULL), 0);
	size_t n = ps_outbox_encoded_bytes(&o);
	unsigned char buf[128];
	ps_outbox_encode(&o, buf);
	ps_outbox copy = {0};
	for (size_t cut = 0; cut < n; cut++)
		CHECK(ps_outbox_decode(&copy, buf, cut, NULL) != 0);
	buf[0] = 9; /* unknown version */
	CHECK_EQ(ps_outbox_decode(&copy, buf, n, NULL), PS_EVERSION);
	ps_outbox_free(&copy);
	ps_outbox_free(&o);
}

TEST(persistence_outbox_gives_back_room_after_a_burst)
{
	ps_outbox o = {0};
	for (uint32_t i = 0; i < 1000; i++)
		CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, i), 1, "p", 1, i, NULL),
			0);
	CHECK(o.capacity >= 1000);
	/* Confirmed out of order, oldest kept last: the rest stays
	 * listed in sequence order while the array shrinks under it. */
	for (uint64_t seq = 1000; seq >= 2; seq--)
		CHECK_EQ(ps_outbox_confirm(&o, seq), 0);
	CHECK_EQ(o.count, 1);
	CHECK(o.capacity <= 8);
	const ps_effect *e;
	CHECK_EQ(ps_outbox_pending(&o, &e), 1);
	CHECK_EQ_U64(e[0].sequence, 1);
	CHECK_EQ(e[0].payload_bytes, 1);
	CHECK_EQ(ps_outbox_confirm(&o, 1), 0);
	CHECK_EQ(o.count, 0);
	CHECK_EQ(o.capacity, 0);
	CHECK(o.effects == NULL);
	/* Empty and freed, it takes effects again; sequences go on. */
	uint64_t seq;
	CHECK_EQ(ps_outbox_add(&o, rt_addr_make(5, 1), 1, "q", 1, 5, &seq), 0);
	CHECK_EQ_U64(seq, 1001);
	ps_outbox_free(&o);
}

TEST(persistence_dedupe_applies_once)
{
	ps_dedupe d = {0};
	int applied[4] = {0};
	rt_addr sources[4] = {rt_addr_make(1, 9), rt_addr_make(1, 3),
		rt_addr_make(2, 1), rt_addr_make(1, 5)};
	/* Each source sends 1..20 in order; after a "crash" at 12 the source
	 * re-sends from 8: 8..12 are duplicates. */
	for (int s = 0; s < 4; s++) {
		uint64_t seqs[40];
		int k = 0;
		for (uint64_t q = 1; q <= 12; q++)
			seqs[k++] = q;
		for (uint64_t q = 8; q <= 20; q++)
			seqs[k++] = q;
		for (int i = 0; i < k; i++) {
			if (ps_dedupe_seen(&d, sources[s], seqs[i]))
				continue;
			CHECK_EQ(ps_dedupe_record(&d, sources[s], seqs[i]), 0);
			applied[s]++;
		}
	}
	for (int s = 0; s < 4; s++)
		CHECK_EQ(applied[s], 20);
	/* It survives encode/decode. */
	size_t n = ps_dedupe_encoded_bytes(&d);
	unsigned char *buf = malloc(n);
	CHECK_EQ(ps_dedupe_encode(&d, buf), n);
	ps_dedupe_free(&d);
	size_t used;
	CHECK_EQ(ps_dedupe_decode(&d, buf, n, &used), 0);
	CHECK_EQ(used, n);
	for (int s = 0; s < 4; s++) {
		CHECK(ps_dedupe_seen(&d, sources[s], 20));
		CHECK(!ps_dedupe_seen(&d, sources[s], 21));
	}
	CHECK(!ps_dedupe_seen(&d, rt_addr_make(3, 3), 1));
	/* Recording again is idempotent, and never moves backwards. */
	CHECK_EQ(ps_dedupe_record(&d, sources[0], 5), 0);
	CHECK(ps_dedupe_seen(&d, sources[0], 20));
	for (size_t cut = 0; cut < n; cut++)
		CHECK_EQ(ps_dedupe_decode(&d, buf, cut, NULL), PS_ECORRUPT);
	CHECK(ps_dedupe_seen(&d, sources[0], 20)); /* failures leave it be */
	free(buf);
	ps_dedupe_free(&d);
}

TEST(persistence_effect_parse)
{
	unsigned char m[64];
	ps_effect_header h = {3, 99, 12345, 7, 0};
	memcpy(m, &h, sizeof h);
	memcpy(m + sizeof h, "pay", 3);
	ps_effect_header out;
	const void *p;
	size_t n;
	CHECK_EQ(ps_effect_parse(m, sizeof h + 3, &out, &p, &n), 0);
	CHECK_EQ(out.source_kind, 3);
	CHECK_EQ(out.confirm_type, 99);
	CHECK_EQ_U64(out.source_id, 12345);
	CHECK_EQ_U64(out.sequence, 7);
	CHECK_EQ(n, 3);
	CHECK(memcmp(p, "pay", 3) == 0);
	CHECK_EQ(ps_effect_parse(m, sizeof h - 1, &out, &p, &n), PS_ECORRUPT);
}
