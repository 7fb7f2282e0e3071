/*
 * persistence_node_test.c — the node: journal + store + runtime.
 *
 * Goal: an actor's state comes back after a crash from its snapshot plus
 * the journal records after it; replaying a record twice changes nothing;
 * a checkpoint commits snapshots, records its LSN and deletes the journal
 * segments before it; effects reach their target exactly once.
 * Method: the toy counter and tally kinds (persistence_toy.h) on a real
 * runtime; a "crash" is a forked child that does the work and _exit()s
 * without stopping anything; the parent reopens the same directory and
 * reads the snapshots back through the store.
 */
#include "tests/unit/persistence_toy.h"

#include <dirent.h>
#include <sys/wait.h>

#define NODE_COUNTERS 16u

static const char *
data_dir(void)
{
	static char path[512];
	snprintf(path, sizeof path, "%s/node", test_tmpdir());
	return path;
}

static uint64_t
segments_in(const char *dir)
{
	char path[600];
	snprintf(path, sizeof path, "%s/journal", dir);
	DIR *d = opendir(path);
	CHECK(d != NULL);
	uint64_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "journal-", 8) == 0;
	closedir(d);
	return n;
}

static void
send_all(rt_runtime *rt, uint64_t from, uint64_t to)
{
	for (uint64_t id = from; id < to; id++)
		while (toy_send_increment(rt, id, NODE_COUNTERS) != 0)
			toy_sleep_ms(1);
}

static void
wait_acks(long n)
{
	for (int i = 0; i < 3000 && atomic_load(&toy_acks) < n; i++)
		toy_sleep_ms(5);
	CHECK_EQ(atomic_load(&toy_acks), n);
}

/* Runs f in a child that "crashes" (_exit without closing anything). */
static void
in_crashing_child(void (*f)(void))
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		f();
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"child failed: status %d", status);
}

/* Reads every counter and tally back from the store and checks them
 * against ids [0, total): each applied exactly once. */
static void
verify_store(uint64_t total)
{
	char path[600];
	snprintf(path, sizeof path, "%s/snapshots", data_dir());
	ps_store_options o;
	ps_store_options_default(&o, path);
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	uint64_t sum = 0;
	uint64_t tallied[TOY_TALLIES] = {0};
	for (uint32_t c = 0; c < NODE_COUNTERS; c++) {
		toy_snapshot snap;
		memset(&snap, 0, sizeof snap);
		snap.counter_kind = true;
		CHECK_EQ(ps_store_get(s, rt_addr_make(TOY_KIND_COUNTER, c),
				 toy_take, &snap),
			0);
		CHECK_EQ_U64(snap.counter.count, snap.counter.ids_count);
		CHECK_EQ(snap.counter.outbox.count, 0);
		for (uint32_t i = 0; i < snap.counter.ids_count; i++) {
			CHECK(snap.counter.ids[i] < total);
			CHECK_EQ(toy_counter_index(snap.counter.ids[i],
					 NODE_COUNTERS),
				c);
		}
		sum += snap.counter.count;
		tallied[c % TOY_TALLIES] += snap.counter.count;
		toy_counter_free(&snap.counter);
	}
	CHECK_EQ_U64(sum, total);
	for (uint32_t t = 0; t < TOY_TALLIES; t++) {
		toy_snapshot snap;
		memset(&snap, 0, sizeof snap);
		if (tallied[t] == 0)
			continue;
		CHECK_EQ(ps_store_get(s, rt_addr_make(TOY_KIND_TALLY, t),
				 toy_take, &snap),
			0);
		CHECK_EQ_U64(snap.tally.count, tallied[t]);
		toy_tally_free(&snap.tally);
	}
	ps_store_close(s);
}

static void
write_then_checkpoint_then_more(void)
{
	rt_runtime *rt = toy_start(data_dir(), 0, 8192, NULL);
	send_all(rt, 0, 300);
	wait_acks(300);
	toy_wait_confirmed(20);
	uint64_t lsn = 0;
	CHECK_EQ(ps_node_checkpoint_wait(toy_node, &lsn), 0);
	CHECK(lsn > 0);
	CHECK_EQ_U64(ps_store_checkpoint_lsn(ps_node_store(toy_node)), lsn);
	/* The tail: journaled, never snapshotted before the crash. */
	send_all(rt, 300, 500);
	wait_acks(500);
}

TEST(persistence_node_snapshot_and_tail_recovery)
{
	in_crashing_child(write_then_checkpoint_then_more);
	ps_node_report rep;
	rt_runtime *rt = toy_start(data_dir(), 0, 8192, &rep);
	CHECK(rep.checkpoint_lsn > 0);
	CHECK(rep.records_recovered >= 200); /* increments 300..499 + effects */
	CHECK(rep.actors_recovered > 0);
	toy_wait_recovered(rt, &rep);
	toy_wait_confirmed(20);
	toy_stop(rt);
	verify_store(500);
}

static void
journal_twice(void)
{
	toy_start(data_dir(), 0, 0, NULL);
	ps_journal *j = ps_node_journal(toy_node);
	uint32_t c = toy_counter_index(7, NODE_COUNTERS);
	uint64_t r7[2] = {7, c};
	rt_addr addr = rt_addr_make(TOY_KIND_COUNTER, c);
	CHECK_EQ(ps_journal_append(j, addr, TOY_EVENT_INCREMENT, r7, sizeof r7,
			 NULL, NULL, NULL),
		0);
	CHECK_EQ(ps_journal_append(j, addr, TOY_EVENT_INCREMENT, r7, sizeof r7,
			 NULL, NULL, NULL),
		0);
	CHECK_EQ(ps_journal_wait(j, ps_journal_last_lsn(j)), 0);
}

TEST(persistence_node_idempotent_replay)
{
	/* Applying the same record twice leaves the same state. */
	toy_counter a, b;
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	uint64_t rec[2] = {42, 3};
	CHECK_EQ(toy_counter_apply_record(&a, TOY_EVENT_INCREMENT, rec,
			 sizeof rec),
		0);
	CHECK_EQ(toy_counter_apply_record(&b, TOY_EVENT_INCREMENT, rec,
			 sizeof rec),
		0);
	CHECK_EQ(toy_counter_apply_record(&b, TOY_EVENT_INCREMENT, rec,
			 sizeof rec),
		0);
	rt_buffer ea = {0}, eb = {0};
	CHECK_EQ(toy_counter_encode(&a, &ea), 0);
	CHECK_EQ(toy_counter_encode(&b, &eb), 0);
	CHECK_EQ(ea.length, eb.length);
	CHECK(memcmp(ea.bytes, eb.bytes, ea.length) == 0);
	rt_buffer_free(&ea);
	rt_buffer_free(&eb);
	toy_counter_free(&a);
	toy_counter_free(&b);

	/* Through the node: the same record journaled twice after the
	 * checkpoint (a client retry that raced a crash) counts once. */
	in_crashing_child(journal_twice);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		ps_node_report rep;
		rt_runtime *rt2 = toy_start(data_dir(), 0, 0, &rep);
		CHECK_EQ_U64(rep.records_recovered, 2);
		toy_wait_recovered(rt2, &rep);
		toy_wait_confirmed(20);
		toy_stop(rt2);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	uint32_t c = toy_counter_index(7, NODE_COUNTERS);
	rt_addr addr = rt_addr_make(TOY_KIND_COUNTER, c);
	char path[600];
	snprintf(path, sizeof path, "%s/snapshots", data_dir());
	ps_store_options o;
	ps_store_options_default(&o, path);
	ps_store *s;
	CHECK_EQ(ps_store_open(&o, &s), 0);
	toy_snapshot snap;
	memset(&snap, 0, sizeof snap);
	snap.counter_kind = true;
	CHECK_EQ(ps_store_get(s, addr, toy_take, &snap), 0);
	CHECK_EQ_U64(snap.counter.count, 1);
	CHECK_EQ(snap.counter.ids_count, 1);
	CHECK_EQ_U64(snap.counter.ids[0], 7);
	CHECK_EQ(snap.counter.outbox.count, 0);
	toy_counter_free(&snap.counter);
	memset(&snap, 0, sizeof snap);
	CHECK_EQ(ps_store_get(s, rt_addr_make(TOY_KIND_TALLY, c % TOY_TALLIES),
			 toy_take, &snap),
		0);
	CHECK_EQ_U64(snap.tally.count, 1);
	toy_tally_free(&snap.tally);
	ps_store_close(s);
}

TEST(persistence_node_checkpoint_deletes_segments)
{
	rt_runtime *rt = toy_start(data_dir(), 0, 4096, NULL);
	/* Small waves: a segment rolls only between group commits. */
	for (uint64_t i = 0; i < 400; i += 10) {
		send_all(rt, i, i + 10);
		wait_acks((long)i + 10);
	}
	toy_wait_confirmed(20);
	uint64_t before = segments_in(data_dir());
	CHECK(before > 3);
	uint64_t lsn;
	CHECK_EQ(ps_node_checkpoint_wait(toy_node, &lsn), 0);
	CHECK(lsn > 0);
	uint64_t after = segments_in(data_dir());
	CHECK(after < before);
	CHECK(after >= 1);
	/* A second checkpoint right away: nothing dirty, still fine. */
	CHECK_EQ(ps_node_checkpoint_wait(toy_node, &lsn), 0);
	send_all(rt, 400, 450);
	wait_acks(450);
	toy_wait_confirmed(20);
	toy_stop(rt);
	verify_store(450);
	/* And the directory reopens from the checkpoint. */
	ps_node_report rep;
	rt = toy_start(data_dir(), 0, 4096, &rep);
	CHECK(rep.checkpoint_lsn > 0);
	toy_wait_recovered(rt, &rep);
	toy_wait_confirmed(20);
	toy_stop(rt);
	verify_store(450);
}

/* ---- notices past the receiver's mailbox bound ----------------------------- */

#define BURST_KIND 3u
#define BURST_MSG_GO 1u     /* u32 n: append n records, each with a notice */
#define BURST_MSG_NOTICE 2u /* ps_durable_notice */
#define BURST_MAILBOX_MAX 4u
#define BURST_RECORDS 1000u

static atomic_long burst_notices;
static atomic_long burst_failed;

static void
burst_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)state;
	rt_addr me = rt_self(self);
	if (m->type == BURST_MSG_NOTICE) {
		const ps_durable_notice *n = (const void *)m->payload;
		atomic_fetch_add(n->status == 0 ? &burst_notices : &burst_failed,
			1);
		return;
	}
	if (m->type != BURST_MSG_GO)
		return;
	uint32_t n;
	CHECK(m->size == sizeof n);
	memcpy(&n, m->payload, sizeof n);
	uint64_t lsn = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = i;
		CHECK_EQ(ps_node_append_notify(toy_node, me, 1, &id, sizeof id,
				 me, BURST_MSG_NOTICE, &id, sizeof id, &lsn),
			0);
	}
	/* Busy until every record is durable: each notice is sent while
	 * this turn runs, so they all wait in the mailbox at once. */
	ps_journal *j = ps_node_journal(toy_node);
	for (int i = 0; i < 6000 && ps_journal_durable_lsn(j) < lsn; i++)
		toy_sleep_ms(5);
	CHECK(ps_journal_durable_lsn(j) >= lsn);
	toy_sleep_ms(20);
}

static int
burst_apply_record(void *state, uint32_t type, const void *payload,
	size_t length)
{
	(void)state;
	(void)type;
	(void)payload;
	(void)length;
	return 0;
}

static const rt_actor_ops burst_ops = {
	.name = "burst",
	.state_size = 8,
	.mailbox_messages_max = BURST_MAILBOX_MAX,
	.on_message = burst_message,
	.apply_record = burst_apply_record,
};

/* An actor's own appends owe it a notice each; its mailbox bound (which
 * limits what others may queue for it) must not drop them: a burst of
 * appends far past the bound gets every notice. */
TEST(persistence_node_notices_past_mailbox_bound)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.workers = 2;
	cfg.passivate_idle_ms = 0;
	cfg.log_level = RT_LOG_WARN;
	rt_runtime *rt;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	CHECK_EQ(rt_register_kind(rt, BURST_KIND, &burst_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	int rc = ps_node_open(data_dir(), rt, NULL, NULL, &toy_node);
	CHECK_MSG(rc == 0, "ps_node_open: %s", ps_strerror(rc));
	rt_message *m = rt_message_alloc(rt, BURST_MSG_GO, sizeof(uint32_t));
	CHECK(m != NULL);
	uint32_t n = BURST_RECORDS;
	memcpy(m->payload, &n, sizeof n);
	CHECK_EQ(rt_send_external(rt, rt_addr_make(BURST_KIND, 1), m), 0);
	for (int i = 0; i < 6000 && atomic_load(&burst_notices) < (long)n; i++)
		toy_sleep_ms(5);
	CHECK_EQ(atomic_load(&burst_notices), (long)n);
	CHECK_EQ(atomic_load(&burst_failed), 0);
	ps_node_stats st;
	ps_node_get_stats(toy_node, &st);
	CHECK_EQ_U64(st.notices_dropped, 0);
	CHECK_EQ(rt_stop(rt), 0);
	ps_node_close(toy_node);
	toy_node = NULL;
	rt_destroy(rt);
}
