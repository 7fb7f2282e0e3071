/*
 * sim_persistence_test.c — the threadless ("manual") persistence the
 * simulator drives: a journal whose group commits are pumped one disk
 * step at a time, a crash between the write and the fdatasync, a torn
 * crash, a failed write recovered by an inline probe, and a manual store
 * that commits only puts whose records are resolved.
 *
 * Method: a journal and a store on the fault disk in the test's temporary
 * directory, pumped by hand; everything runs on the test's thread, so
 * every callback is observed at the step that must run it.
 */
#include "persistence/persistence.h"
#include "tests/test.h"

#include <stdio.h>

typedef struct fates {
	uint32_t count;
	uint64_t lsn[64];
	int status[64];
} fates;

static void
fate_callback(void *arg, uint64_t lsn, int status)
{
	fates *f = arg;
	CHECK(f->count < 64);
	f->lsn[f->count] = lsn;
	f->status[f->count] = status;
	f->count++;
}

typedef struct replayed {
	uint64_t records;
	uint64_t last_lsn;
} replayed;

static int
count_record(void *arg, const ps_record *r)
{
	replayed *x = arg;
	x->records++;
	x->last_lsn = r->lsn;
	return 0;
}

static ps_journal *
open_manual(const char *dir, const ps_disk *disk, replayed *seen,
	ps_journal_report *report)
{
	ps_journal_options o;
	ps_journal_options_default(&o, dir);
	o.disk = disk;
	o.manual = true;
	o.on_record = count_record;
	o.record_arg = seen;
	ps_journal *j = NULL;
	int rc = ps_journal_open(&o, report, &j);
	CHECK_MSG(rc == 0, "open: %s", ps_strerror(rc));
	return j;
}

static void
append_n(ps_journal *j, uint32_t n, fates *f)
{
	char payload[100];
	memset(payload, 'x', sizeof payload);
	for (uint32_t i = 0; i < n; i++)
		CHECK_EQ(ps_journal_append(j, rt_addr_make(1, i + 1), 7,
				 payload, sizeof payload, fate_callback, f, NULL),
			0);
}

TEST(sim_persistence_manual_journal_two_steps)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/j", test_tmpdir());
	replayed seen = {0};
	ps_journal *j = open_manual(dir, NULL, &seen, NULL);
	fates f = {0};
	CHECK_EQ(ps_journal_next_step(j), PS_PUMP_IDLE);
	append_n(j, 3, &f);
	CHECK_EQ(ps_journal_next_step(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(f.count, 0); /* written is not durable */
	CHECK_EQ_U64(ps_journal_durable_lsn(j), 0);
	CHECK_EQ(ps_journal_wait(j, 1), PS_EBUSY); /* never blocks */
	/* appends during the sync form the next batch */
	append_n(j, 2, &f);
	CHECK_EQ(ps_journal_next_step(j), PS_PUMP_SYNC);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	CHECK_EQ(f.count, 3);
	for (uint32_t i = 0; i < 3; i++) {
		CHECK_EQ_U64(f.lsn[i], i + 1);
		CHECK_EQ(f.status[i], 0);
	}
	CHECK_EQ(ps_journal_wait(j, 3), 0);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	CHECK_EQ(f.count, 5);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_IDLE);
	/* a barrier alone still takes its two steps and reports lsn 5 */
	CHECK_EQ(ps_journal_barrier(j, fate_callback, &f), 0);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	CHECK_EQ(f.count, 6);
	CHECK_EQ_U64(f.lsn[5], 5);
	ps_journal_close(j);
	replayed again = {0};
	j = open_manual(dir, NULL, &again, NULL);
	CHECK_EQ_U64(again.records, 5);
	ps_journal_close(j);
}

TEST(sim_persistence_crash_between_write_and_sync)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/j", test_tmpdir());
	ps_fault_disk *fd;
	CHECK_EQ(ps_fault_disk_create(ps_disk_real(), &fd), 0);
	replayed seen = {0};
	ps_journal *j = open_manual(dir, ps_fault_disk_disk(fd), &seen, NULL);
	fates f = {0};
	append_n(j, 2, &f);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	append_n(j, 4, &f);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	ps_fault_disk_crash(fd); /* the 4 written records were not synced */
	ps_journal_abandon(j);
	CHECK_EQ(f.count, 6);
	for (uint32_t i = 2; i < 6; i++)
		CHECK_EQ(f.status[i], PS_ESTOPPED);
	ps_fault_disk_destroy(fd);
	replayed again = {0};
	ps_journal_report report;
	j = open_manual(dir, NULL, &again, &report);
	CHECK_EQ_U64(again.records, 2);
	CHECK(!report.torn_tail);
	ps_journal_close(j);
}

TEST(sim_persistence_torn_crash_leaves_a_tail_recovery_cuts)
{
	/* Some seed keeps a prefix that ends inside a record; every seed
	 * keeps at most the written bytes and recovery takes only whole
	 * records of the synced prefix or beyond it. */
	bool torn_seen = false;
	for (uint64_t seed = 1; seed <= 20; seed++) {
		char dir[600];
		snprintf(dir, sizeof dir, "%s/j%" PRIu64, test_tmpdir(), seed);
		ps_fault_disk *fd;
		CHECK_EQ(ps_fault_disk_create(ps_disk_real(), &fd), 0);
		replayed seen = {0};
		ps_journal *j = open_manual(dir, ps_fault_disk_disk(fd), &seen,
			NULL);
		fates f = {0};
		append_n(j, 3, &f);
		CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
		CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
		append_n(j, 10, &f);
		CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
		ps_fault_disk_crash_torn(fd, seed);
		ps_journal_abandon(j);
		ps_fault_disk_destroy(fd);
		replayed again = {0};
		ps_journal_report report;
		j = open_manual(dir, NULL, &again, &report);
		CHECK(again.records >= 3);
		CHECK(again.records <= 13);
		torn_seen |= report.torn_tail;
		ps_journal_close(j);
	}
	CHECK(torn_seen);
}

TEST(sim_persistence_failed_write_then_inline_probe)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/j", test_tmpdir());
	ps_fault_disk *fd;
	CHECK_EQ(ps_fault_disk_create(ps_disk_real(), &fd), 0);
	replayed seen = {0};
	ps_journal *j = open_manual(dir, ps_fault_disk_disk(fd), &seen, NULL);
	fates f = {0};
	append_n(j, 2, &f);
	ps_fault_disk_fail_syncs(fd, 0, 1, PS_EIO);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	CHECK_EQ(f.count, 2);
	CHECK_EQ(f.status[0], PS_EIO);
	CHECK_EQ(ps_journal_status(j), PS_EIO);
	CHECK_EQ(ps_journal_wait(j, 2), PS_EIO);
	char payload[8] = {0};
	CHECK_EQ(ps_journal_append(j, rt_addr_make(1, 1), 7, payload, 8, NULL,
			 NULL, NULL),
		PS_EREADONLY);
	CHECK_EQ(ps_journal_next_step(j), PS_PUMP_IDLE);
	CHECK_EQ(ps_journal_retry(j), 0); /* inline: no writer thread */
	append_n(j, 1, &f);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	CHECK_EQ(f.count, 3);
	CHECK_EQ(f.status[2], 0);
	CHECK_EQ_U64(f.lsn[2], 3); /* failed LSNs are skipped */
	ps_journal_close(j);
	ps_fault_disk_destroy(fd);
}

static int
manual_wait(void *arg, uint64_t lsn)
{
	return ps_journal_wait(arg, lsn);
}

static int
take_lsn(void *arg, uint64_t lsn, const void *state, size_t bytes)
{
	(void)state;
	(void)bytes;
	*(uint64_t *)arg = lsn;
	return 0;
}

static void
marker_done(void *arg, int status)
{
	*(int *)arg = status == 0 ? 1 : -1;
}

TEST(sim_persistence_manual_store_waits_for_resolved_records)
{
	char jdir[600], sdir[600];
	snprintf(jdir, sizeof jdir, "%s/j", test_tmpdir());
	snprintf(sdir, sizeof sdir, "%s/s", test_tmpdir());
	replayed seen = {0};
	ps_journal *j = open_manual(jdir, NULL, &seen, NULL);
	ps_store_options so;
	ps_store_options_default(&so, sdir);
	so.manual = true;
	so.wait_durable = manual_wait;
	so.wait_arg = j;
	ps_store *s;
	CHECK_EQ(ps_store_open(&so, &s), 0);
	fates f = {0};
	append_n(j, 2, &f);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 1), 1, "a", 1), 0);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 2), 2, "b", 1), 0);
	int marked = 0;
	CHECK_EQ(ps_store_checkpoint(s, 2, marker_done, &marked), 0);
	CHECK_EQ(ps_store_queued(s), 3);
	CHECK_EQ(ps_store_pump(s), 0); /* records unresolved: nothing moves */
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_WRITE);
	CHECK_EQ(ps_store_pump(s), 0);
	CHECK_EQ(ps_journal_pump(j), PS_PUMP_SYNC);
	CHECK_EQ(ps_store_pump(s), 3);
	CHECK_EQ(marked, 1);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(s), 2);
	/* a crash drops what is queued, committed puts stay */
	append_n(j, 1, &f);
	CHECK_EQ(ps_store_put(s, rt_addr_make(1, 1), 3, "c", 1), 0);
	ps_store_abandon(s);
	CHECK_EQ(ps_store_open(&so, &s), 0);
	uint64_t lsn = 0;
	CHECK_EQ(ps_store_get(s, rt_addr_make(1, 1), take_lsn, &lsn), 0);
	CHECK_EQ_U64(lsn, 1);
	ps_store_close(s);
	ps_journal_close(j);
}
