/*
 * actors_mix_bench.c — the seed's daily mix over socfb-Reed98, in
 * process, with durability on (journal + snapshots in a temp dir).
 *
 * Prints figure lines: ops/s, p50/p99 per operation type, and RSS per
 * user actor after the mix. Goal: >= 200,000 ops/s on 2 cores, feed
 * read p99 <= 1 ms. Skips (exit 0, message on stderr) when the dataset
 * is absent. Usage: actors_mix_bench [ops] [concurrency]
 *
 * Concurrency defaults to one call in flight per Reed98 user (962): each
 * user of the graph has one request outstanding at a time, as a client
 * app that waits for its answer does. Also prints the process CPU time
 * per operation of each mix (`*_cpu_us_per_op`), steadier than ops/s on
 * a loaded machine, and, after both mixes, the daily mix's latency with
 * 64 calls in flight (`mix_reed98_c64_*`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "actors/api.h"
#include "actors/workload.h"
#include "persistence/persistence.h"

/* One in-flight call per user of socfb-Reed98 (962 accounts). */
#define MIX_CONCURRENCY_DEFAULT 962u
/* The lower concurrency of the latency figures (mix_reed98_c64_*). */
#define MIX_CONCURRENCY_LOW 64u

static double
cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return 0;
	char line[256];
	long kib = 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

int
main(int argc, char **argv)
{
	uint64_t ops = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
	uint32_t concurrency = argc > 2 ? (uint32_t)atoi(argv[2])
					: MIX_CONCURRENCY_DEFAULT;
	const char *path = wl_reed98_path();
	if (path == NULL) {
		fprintf(stderr, "actors_mix_bench: skipped: ../shared/datasets/"
				"socfb-Reed98 not found\n");
		return 0;
	}
	char dir[] = "/tmp/flock-mix-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	rt_config rc;
	rt_config_default(&rc);
	rc.workers = 2;
	rc.log_level = RT_LOG_WARN;
	rt_runtime *rt;
	api *a;
	ps_node *node;
	api_config cfg;
	api_config_default(&cfg);
	/* Throughput of the mix, not of 429s: a thousand users replaying a
	 * day's mix in seconds are far past any per-user bucket. */
	cfg.rate_likes = (api_rate){0, 0};
	cfg.rate_posts = (api_rate){0, 0};
	cfg.rate_comments = (api_rate){0, 0};
	cfg.rate_follows = (api_rate){0, 0};
	if (rt_create(&rc, &rt) != 0 || api_create(rt, NULL, &cfg, &a) != 0)
		return 1;
	if (ps_node_open(dir, rt, NULL, NULL, &node) != 0)
		return 1;
	api_bind_store(a, node);
	rt_start(rt);
	api_client *c;
	api_client_create(a, NULL, NULL, &c);
	wl_graph g;
	if (wl_graph_load(path, &g) != 0)
		return 1;
	long rss0 = rss_kib();
	wl_world w;
	int lrc = wl_load(c, &g, 256, &w);
	if (lrc != 0) {
		fprintf(stderr, "load failed: %s\n", api_strerror(lrc));
		return 1;
	}
	wl_stats st;
	rt_stats rs0;
	ps_node_stats ps0;
	rt_get_stats(rt, &rs0);
	ps_node_get_stats(node, &ps0);
	double cpu0 = cpu_seconds();
	wl_play(c, &w, WL_MIX_DAILY, ops, 0, concurrency, 42, &st);
	double cpu1 = cpu_seconds();
	rt_stats rs1;
	ps_node_stats ps1;
	rt_get_stats(rt, &rs1);
	ps_node_get_stats(node, &ps1);
	printf("figure mix_reed98_concurrency %u calls\n", concurrency);
	printf("figure mix_reed98_ops_per_second %.0f ops/s\n",
		st.ops_per_second);
	printf("figure mix_reed98_cpu_us_per_op %.1f us\n",
		(cpu1 - cpu0) * 1e6 / (double)(ops ? ops : 1));
	/* Where the CPU goes, in counts that do not depend on the load:
	 * actor messages per operation, snapshots and checkpoints taken
	 * while the mix ran. */
	printf("figure mix_reed98_messages_per_op %.2f msgs\n",
		(double)(rs1.messages_delivered_total -
			rs0.messages_delivered_total) / (double)(ops ? ops : 1));
	printf("figure mix_reed98_snapshots_saved %llu snapshots\n",
		(unsigned long long)(ps1.snapshots_saved - ps0.snapshots_saved));
	printf("figure mix_reed98_checkpoints %llu checkpoints\n",
		(unsigned long long)(ps1.checkpoints - ps0.checkpoints));
	for (int i = 0; i < WL_OPS; i++) {
		if (st.count[i] == 0)
			continue;
		printf("figure mix_reed98_%s_p50 %.1f us\n",
			wl_op_name((wl_op)i), st.p50_us[i]);
		printf("figure mix_reed98_%s_p99 %.1f us\n",
			wl_op_name((wl_op)i), st.p99_us[i]);
		if (st.errors[i] > 0)
			fprintf(stderr, "%s: %llu errors\n",
				wl_op_name((wl_op)i),
				(unsigned long long)st.errors[i]);
	}
	rt_stats rs;
	rt_get_stats(rt, &rs);
	long rss1 = rss_kib();
	printf("figure mix_reed98_rss_per_user %.1f KiB\n",
		(double)(rss1 - rss0) / (double)w.users);
	printf("figure mix_reed98_active_actors %llu actors\n",
		(unsigned long long)rs.actors_active);
	wl_stats ds;
	double cpu2 = cpu_seconds();
	wl_play(c, &w, WL_MIX_DEATHSTAR, ops / 2, 0, concurrency, 43, &ds);
	double cpu3 = cpu_seconds();
	printf("figure mix_deathstar_reed98_ops_per_second %.0f ops/s\n",
		ds.ops_per_second);
	printf("figure mix_deathstar_cpu_us_per_op %.1f us\n",
		(cpu3 - cpu2) * 1e6 / (double)(ops / 2 ? ops / 2 : 1));
	printf("figure mix_deathstar_feed_p99 %.1f us\n", ds.p99_us[WL_OP_FEED]);
	/* The same daily mix with fewer calls in flight: at 962 a feed read
	 * waits behind hundreds of queued calls (by Little's law the mean
	 * latency is the calls in flight over the rate), so this says what
	 * a read costs when the node is not queueing. Runs after the
	 * headline figures, which it does not change. */
	wl_stats ls;
	wl_play(c, &w, WL_MIX_DAILY, ops / 4, 0, MIX_CONCURRENCY_LOW, 44, &ls);
	printf("figure mix_reed98_c%u_ops_per_second %.0f ops/s\n",
		MIX_CONCURRENCY_LOW, ls.ops_per_second);
	printf("figure mix_reed98_c%u_feed_p50 %.1f us\n", MIX_CONCURRENCY_LOW,
		ls.p50_us[WL_OP_FEED]);
	printf("figure mix_reed98_c%u_feed_p99 %.1f us\n", MIX_CONCURRENCY_LOW,
		ls.p99_us[WL_OP_FEED]);
	printf("figure mix_reed98_c%u_like_p99 %.1f us\n", MIX_CONCURRENCY_LOW,
		ls.p99_us[WL_OP_LIKE]);
	api_client_destroy(c);
	rt_stop(rt);
	ps_node_close(node);
	api_destroy(a);
	rt_destroy(rt);
	wl_world_free(&w);
	wl_graph_free(&g);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : 0;
}
