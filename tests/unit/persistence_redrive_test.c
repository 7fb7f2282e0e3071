/*
 * persistence_redrive_test.c — an effect owed by a source whose records
 * were all checkpointed is sent again after a crash.
 *
 * Goal: the durability contract's "owed effects are re-driven after a
 * crash" for a source that journals nothing after the checkpoint.
 * Method: a deterministic runtime and a manual node (journal and store
 * pumped here), one counter and one tally. The counter's increment is
 * durable and its effect sent; a checkpoint saves the counter (effect
 * still unconfirmed in its outbox) and commits past the increment while
 * the tally's record of the effect is queued, never written; the node
 * crashes. After the restart nothing is journaled after the checkpoint,
 * so only the store's mark of the counter's snapshot as owing effects
 * (ps_node_options.owes) wakes it: the tally must end up with the effect
 * and the counter's last snapshot must owe nothing (its mark cleared).
 * Without the mark the effect stayed unsent until something activated
 * the counter (flocksim had seen it as a deleted post still listed).
 */
#include "tests/unit/persistence_toy.h"

static void
checkpoint_done(void *arg, int status, uint64_t lsn)
{
	int64_t *out = arg;
	*out = status == 0 ? (int64_t)lsn : -1;
}

static rt_runtime *
start_manual(const char *dir, ps_node_report *rep)
{
	rt_config cfg;
	rt_config_default(&cfg);
	cfg.deterministic = true;
	cfg.passivate_idle_ms = 0;
	cfg.log_level = RT_LOG_WARN;
	rt_runtime *rt;
	CHECK_EQ(rt_create(&cfg, &rt), 0);
	CHECK_EQ(rt_register_kind(rt, TOY_KIND_COUNTER, &toy_counter_ops), 0);
	CHECK_EQ(rt_register_kind(rt, TOY_KIND_TALLY, &toy_tally_ops), 0);
	ps_node_options o = {0};
	o.manual = true;
	o.owes = toy_owes;
	CHECK_EQ(ps_node_open(dir, rt, &o, rep, &toy_node), 0);
	CHECK_EQ(rt_start(rt), 0);
	return rt;
}

static void
pump_journal(void)
{
	while (ps_journal_pump(ps_node_journal(toy_node)) != PS_PUMP_IDLE)
		continue;
}

TEST(persistence_redrive_owed_effect_after_checkpoint_and_crash)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/node", test_tmpdir());
	ps_node_report rep;
	rt_runtime *rt = start_manual(dir, &rep);
	CHECK_EQ(toy_send_increment(rt, 7, 1), 0);
	rt_det_run_until_idle(rt, 0);
	pump_journal(); /* the increment is durable; its notice is queued */
	int64_t checkpoint = 0;
	CHECK_EQ(ps_node_checkpoint(toy_node, checkpoint_done, &checkpoint), 0);
	/* The counter sends the effect, then saves with it unconfirmed; the
	 * tally journals it (queued, not written). */
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(ps_journal_next_step(ps_node_journal(toy_node)), PS_PUMP_WRITE);
	while (ps_store_pump(ps_node_store(toy_node)) > 0)
		continue;
	CHECK_MSG(checkpoint > 0, "checkpoint not committed: %lld",
		(long long)checkpoint);
	CHECK_EQ(atomic_load(&toy_unconfirmed), 1);
	CHECK_EQ(rt_stop(rt), 0);
	ps_node_crash(toy_node);
	toy_node = NULL;
	rt_destroy(rt);
	atomic_store(&toy_unconfirmed, 0);

	rt = start_manual(dir, &rep);
	CHECK_EQ_U64(rep.checkpoint_lsn, (uint64_t)checkpoint);
	CHECK_EQ_U64(rep.records_recovered, 0);
	CHECK_EQ_U64(rep.actors_owing, 1);
	for (int i = 0; i < 100; i++) {
		rt_det_run_until_idle(rt, 0);
		pump_journal();
		while (ps_store_pump(ps_node_store(toy_node)) > 0)
			continue;
		rt_det_advance(rt, 20); /* retry timers, if any */
	}
	toy_stop(rt);

	char path[600];
	snprintf(path, sizeof path, "%s/snapshots", dir);
	ps_store_options so;
	ps_store_options_default(&so, path);
	ps_store *s;
	CHECK_EQ(ps_store_open(&so, &s), 0);
	toy_snapshot snap;
	memset(&snap, 0, sizeof snap);
	snap.counter_kind = true;
	CHECK_EQ(ps_store_get(s, rt_addr_make(TOY_KIND_COUNTER, 0), toy_take,
			 &snap), 0);
	uint32_t owed = snap.counter.outbox.count;
	toy_counter_free(&snap.counter);
	memset(&snap, 0, sizeof snap);
	int rc = ps_store_get(s, rt_addr_make(TOY_KIND_TALLY, 0), toy_take,
		&snap);
	uint64_t tallied = rc == 0 ? snap.tally.count : 0;
	toy_tally_free(&snap.tally);
	rt_addr *marked;
	size_t marked_count;
	CHECK_EQ(ps_store_scan_owing(s, &marked, &marked_count), 0);
	free(marked);
	ps_store_close(s);
	CHECK_EQ(marked_count, 0);
	CHECK_MSG(tallied == 1 && owed == 0,
		"effect dormant after the crash: tally %llu, counter still owes %u",
		(unsigned long long)tallied, owed);
}
