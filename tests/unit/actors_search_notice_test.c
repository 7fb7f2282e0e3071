/*
 * actors_search_notice_test.c — a search shard under a burst of effects
 * holds one durable notice at a time, and confirms nothing before it is
 * durable.
 *
 * Goal: the bound on what a shard's journal writes pin while they wait
 * for the disk. A shard once asked a notice per record: a burst of
 * follows left one shard with tens of thousands of records waiting,
 * each holding a notice message and a context of the node's pool. Now
 * its records ask none, and one barrier covers what it journaled: the
 * node has at most one notice pending for the shard however many of its
 * records wait, no effect is confirmed before the disk has it, and every
 * one is confirmed once it has. A copy of an effect still waiting (its
 * source's redrive) is not journaled again.
 * Method: a deterministic runtime with a manual node (the journal
 * written only when pumped here); SEARCH_NOTICE_BURST effects, from as
 * many sources (a counting kind of the test), sent to one shard, then
 * sent again; the
 * node's notices_pending and the confirmations counted before and after
 * the pumps.
 */
#include "actors/engage.h"
#include "actors/internal.h"
#include "persistence/persistence.h"
#include "tests/test.h"
#include "tests/unit/runtime_testkit.h"

/* Effects in the burst: past a mailbox's worth of notices before. */
#define SEARCH_NOTICE_BURST 3000u
#define SOURCE_KIND 41u
#define SOURCE_T_CONFIRM 4100u

static atomic_uint confirms;

static void
source_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	if (m->type == SOURCE_T_CONFIRM)
		atomic_fetch_add(&confirms, 1);
}

static const rt_actor_ops source_ops = {
	.name = "source",
	.state_size = 8,
	.on_message = source_on_message,
};

static void
pump(rt_runtime *rt, ps_node *node)
{
	for (int round = 0; round < 20; round++) {
		rt_det_run_until_idle(rt, 0);
		while (ps_journal_pump(ps_node_journal(node)) != PS_PUMP_IDLE)
			continue;
	}
	rt_det_run_until_idle(rt, 0);
}

static uint64_t
notices_pending(ps_node *node)
{
	ps_node_stats st;
	ps_node_get_stats(node, &st);
	return st.notices_pending;
}

/* Effects 1..count of the burst's sources in turn (sequence 1 each):
 * past SEARCH_NOTICE_BURST, copies of the first ones. */
static void
send_burst(rt_runtime *rt, uint32_t shard, uint32_t count)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	unsigned char message[512];
	/* The burst, then every effect again (as its source re-sends what
	 * is unconfirmed each ACTORS_REDRIVE_MS). */
	for (uint32_t k = 0; k < count; k++) {
		uint32_t i = k % SEARCH_NOTICE_BURST;
		msgpack_sbuffer_clear(&sb);
		CHECK_EQ(search_user_message_encode(77, "burst", i, 0, &pk), 0);
		ps_effect_header h = {SOURCE_KIND, SOURCE_T_CONFIRM, i + 1, 1, 0};
		uint32_t type = SEARCH_T_USER_UPSERT;
		size_t n = sizeof h + 8 + sb.size;
		CHECK(n <= sizeof message);
		memcpy(message, &h, sizeof h);
		memcpy(message + sizeof h, &shard, 4);
		memcpy(message + sizeof h + 4, &type, 4);
		memcpy(message + sizeof h + 8, sb.data, sb.size);
		CHECK_EQ(tk_send(rt, search_shard_addr(shard), SEARCH_T_EFFECT,
				 message, (uint32_t)n),
			0);
	}
	msgpack_sbuffer_destroy(&sb);
}

TEST(actors_search_shard_holds_one_notice_in_a_burst)
{
	rt_runtime *rt = tk_runtime(true, 5, 1);
	api_config cfg;
	api_config_default(&cfg);
	api *a;
	CHECK_EQ(api_create(rt, NULL, &cfg, &a), 0);
	CHECK_EQ(rt_register_kind(rt, SOURCE_KIND, &source_ops), 0);
	char dir[512];
	snprintf(dir, sizeof dir, "%s/node", test_tmpdir());
	ps_node_options o = {0};
	o.manual = true;
	ps_node *node;
	CHECK_EQ(ps_node_open(dir, rt, &o, NULL, &node), 0);
	api_bind_store(a, node);
	CHECK_EQ(rt_start(rt), 0);

	uint32_t shards[3];
	CHECK(search_user_shards("burst", shards) >= 1);
	uint32_t shard = shards[0];
	ps_journal_stats before;
	ps_journal_get_stats(ps_node_journal(node), &before);
	send_burst(rt, shard, 2 * SEARCH_NOTICE_BURST);
	rt_det_run_until_idle(rt, 0);

	/* Every effect applied and journaled once (a copy of one still
	 * waiting is dropped), none durable yet: one notice waits (it was
	 * one per record), nothing is confirmed. */
	ps_journal_stats queued;
	ps_journal_get_stats(ps_node_journal(node), &queued);
	CHECK_EQ_U64(queued.appends - before.appends, SEARCH_NOTICE_BURST);
	CHECK_EQ_U64(notices_pending(node), 1);
	CHECK_EQ(atomic_load(&confirms), 0);

	/* Durable: all confirmed, once each, and no notice left waiting. */
	pump(rt, node);
	CHECK_EQ(atomic_load(&confirms), SEARCH_NOTICE_BURST);
	CHECK_EQ_U64(notices_pending(node), 0);

	/* Confirmed, they are forgotten: sent again (a confirmation lost
	 * on its way), each is journaled again. The first one's notice
	 * comes while the rest wait (removed from among them), and copies
	 * of all come then: only the first is journaled a third time. */
	send_burst(rt, shard, SEARCH_NOTICE_BURST);
	rt_det_run_until_idle(rt, 0);
	while (ps_journal_pump(ps_node_journal(node)) != PS_PUMP_IDLE)
		continue;
	rt_det_run_until_idle(rt, 0);
	CHECK_EQ(atomic_load(&confirms), SEARCH_NOTICE_BURST + 1);
	send_burst(rt, shard, SEARCH_NOTICE_BURST);
	pump(rt, node);
	ps_journal_stats after;
	ps_journal_get_stats(ps_node_journal(node), &after);
	CHECK_EQ_U64(after.appends - before.appends,
		2 * SEARCH_NOTICE_BURST + 1);
	CHECK_EQ(atomic_load(&confirms), 2 * SEARCH_NOTICE_BURST + 1);
	CHECK_EQ_U64(notices_pending(node), 0);

	CHECK_EQ(rt_stop(rt), 0);
	ps_node_close(node);
	api_destroy(a);
	rt_destroy(rt);
}
