/*
 * flockctl.c — the operator CLI: talks to a node's control endpoint
 * (nng req/rep on the node's cluster port + 1).
 *
 *   flockctl [--node host:port] [--json] status
 *   flockctl ... ring
 *   flockctl ... add <host:port>       make a joined standby node active
 *   flockctl ... drain <node-id>
 *   flockctl ... remove <node-id> [--force]
 *   flockctl ... rebalance             shows progress until done
 *   flockctl ... block|unblock <host:port>   tests only (FLOCK_TEST=1 on
 *                                      the node): cut it off from that
 *                                      member, both directions
 *
 * --node is the node's cluster address (default 127.0.0.1:7400).
 * Admin commands sent to a node that is not the coordinator are sent
 * again to the coordinator. Exit codes: 0 ok, 1 refused (message says
 * why), 2 usage, 3 node unreachable.
 */
#include "cluster/internal.h"

#include <inttypes.h>

#define CTL_TIMEOUT_MS 3000u
#define CTL_PROGRESS_INTERVAL_MS 250u
/* A rebalance that shows no progress for this long is reported stuck. */
#define CTL_STALL_MS 60000u
/* Partitions per line of the ring view: 8,192 in 64 lines. */
#define CTL_RING_ROW 128u

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

typedef struct answer {
	int code;
	char message[256];
	cl_status status;
	cl_map map;
	bool has_map;
} answer;

static const char *
state_name(uint8_t s)
{
	return s == CL_NODE_ACTIVE ? "active" :
	       s == CL_NODE_DRAINING ? "draining" : "standby";
}

static const char *
liveness_name(uint8_t l)
{
	return l == CL_LIVE_ALIVE ? "alive" :
	       l == CL_LIVE_SUSPECT ? "suspect" : "down";
}

static int
call(const char *node, const cl__control_request *r, answer *a)
{
	char control[CL_ADDRESS_BYTES_MAX];
	if (cl__control_address(node, control, sizeof control) != 0) {
		fprintf(stderr, "flockctl: bad address %s (want host:port)\n",
			node);
		return EXIT_USAGE;
	}
	rt_buffer req = {0};
	rt_buffer rep = {0};
	cl__control_request_encode(r, &req);
	int rc = cl__control_call(control, req.bytes, req.length,
		CTL_TIMEOUT_MS, &rep);
	rt_buffer_free(&req);
	if (rc == 0)
		rc = cl__control_reply_decode(rep.bytes, rep.length, &a->code,
			a->message, sizeof a->message, &a->status, &a->map,
			&a->has_map);
	rt_buffer_free(&rep);
	if (rc != 0) {
		fprintf(stderr, "flockctl: node %s (control %s) unreachable: "
			"%s\n", node, control, cl_strerror(rc));
		return EXIT_UNREACHABLE;
	}
	return EXIT_OK;
}

/* Sends r to the coordinator if the first node is not it. */
static int
call_admin(const char *node, const cl__control_request *r, answer *a)
{
	int x = call(node, r, a);
	if (x != EXIT_OK || a->code != CL_ENOTLEADER)
		return x;
	for (uint32_t i = 0; i < a->status.members_count; i++)
		if (a->status.members[i].id == a->status.coordinator) {
			char address[CL_ADDRESS_BYTES_MAX];
			snprintf(address, sizeof address, "%s",
				a->status.members[i].address);
			return call(address, r, a);
		}
	return x;
}

static void
print_status(const cl_status *s, bool json)
{
	if (json) {
		printf("{\"self\":%u,\"coordinator\":%u,\"epoch\":%" PRIu64
		       ",\"lease\":%s,\"moves_pending\":%u,\"moves_in_flight\":%u,"
		       "\"nodes\":[",
			s->self, s->coordinator, s->epoch,
			s->lease_held ? "true" : "false", s->moves_pending,
			s->moves_in_flight);
		for (uint32_t i = 0; i < s->members_count; i++) {
			const cl_member_status *m = &s->members[i];
			printf("%s{\"id\":%u,\"address\":\"%s\",\"state\":\"%s\","
			       "\"liveness\":\"%s\",\"partitions\":%u,"
			       "\"actors\":%" PRIu64 ",\"messages_in\":%" PRIu64
			       "}", i ? "," : "", m->id, m->address,
				state_name(m->state), liveness_name(m->liveness),
				m->partitions, m->actors_active, m->messages_in);
		}
		printf("]}\n");
		return;
	}
	printf("epoch %" PRIu64 "  coordinator %u  seen from node %u  lease %s"
	       "  moves pending %u\n", s->epoch, s->coordinator, s->self,
		s->lease_held ? "held" : "LOST", s->moves_pending);
	printf("%-5s %-22s %-9s %-8s %10s %6s %10s %12s\n", "NODE", "ADDRESS",
		"STATE", "LIVE", "PARTITIONS", "LOAD", "ACTORS", "MSGS-IN");
	for (uint32_t i = 0; i < s->members_count; i++) {
		const cl_member_status *m = &s->members[i];
		printf("%-5u %-22s %-9s %-8s %10u %5.1f%% %10" PRIu64 " %12"
		       PRIu64 "\n", m->id, m->address, state_name(m->state),
			liveness_name(m->liveness), m->partitions,
			100.0 * m->partitions / CL_PARTITIONS, m->actors_active,
			m->messages_in);
	}
}

/* A member's one-character tag in the ring view. */
static char
ring_tag(const cl_map *map, uint16_t id)
{
	static const char tags[] = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "abcdefghijklmnopqrstuvwxyz@#";
	int i = cl__map_index(map, id);
	if (i < 0)
		return '.';
	return tags[(size_t)i % (sizeof tags - 1)];
}

static void
print_ring(const cl_map *map, bool json)
{
	if (json) {
		/* runs of consecutive partitions with one owner */
		printf("{\"epoch\":%" PRIu64 ",\"ranges\":[", map->epoch);
		uint32_t start = 0;
		bool first = true;
		for (uint32_t p = 1; p <= CL_PARTITIONS; p++) {
			if (p < CL_PARTITIONS && map->owner[p] == map->owner[start])
				continue;
			printf("%s[%u,%u,%u]", first ? "" : ",", start, p - 1,
				map->owner[start]);
			first = false;
			start = p;
		}
		printf("]}\n");
		return;
	}
	/* Rendezvous placement scatters partitions, so ranges would run to
	 * thousands of lines: a legend and one character per partition. */
	uint32_t counts[CL_NODES_MAX];
	cl_map_counts(map, counts);
	printf("epoch %" PRIu64 ", %u partitions, %u per row\n", map->epoch,
		CL_PARTITIONS, CTL_RING_ROW);
	for (uint32_t i = 0; i < map->nodes_count; i++)
		printf("  %c = node %u %s (%s, %u partitions)\n",
			ring_tag(map, map->nodes[i].id), map->nodes[i].id,
			map->nodes[i].address, state_name(map->nodes[i].state),
			counts[i]);
	for (uint32_t row = 0; row < CL_PARTITIONS; row += CTL_RING_ROW) {
		char line[CTL_RING_ROW + 1];
		for (uint32_t k = 0; k < CTL_RING_ROW; k++)
			line[k] = ring_tag(map, map->owner[row + k]);
		line[CTL_RING_ROW] = '\0';
		printf("%5u %s\n", row, line);
	}
}

static int
rebalance(const char *node, bool json, answer *a)
{
	cl__control_request r = {.op = CL__CONTROL_REBALANCE};
	int x = call_admin(node, &r, a);
	if (x != EXIT_OK)
		return x;
	if (a->code != 0) {
		fprintf(stderr, "flockctl: rebalance refused: %s (%s)\n",
			a->message, cl_strerror(a->code));
		return EXIT_REFUSED;
	}
	uint32_t last = UINT32_MAX;
	uint64_t last_change = cl__monotonic_ms();
	cl__control_request s = {.op = CL__CONTROL_STATUS};
	for (;;) {
		x = call_admin(node, &s, a);
		if (x != EXIT_OK)
			return x;
		uint32_t left = a->status.moves_pending;
		if (left != last) {
			last_change = cl__monotonic_ms();
			if (json)
				printf("{\"epoch\":%" PRIu64 ",\"moves_pending\":"
				       "%u}\n", a->status.epoch, left);
			else
				printf("epoch %" PRIu64 ": %u partitions left to "
				       "move\n", a->status.epoch, left);
			fflush(stdout);
			last = left;
		}
		if (left == 0)
			return EXIT_OK;
		if (cl__monotonic_ms() - last_change > CTL_STALL_MS) {
			fprintf(stderr, "flockctl: no progress for %u s\n",
				CTL_STALL_MS / 1000);
			return EXIT_REFUSED;
		}
		cl__sleep_ms(CTL_PROGRESS_INTERVAL_MS);
	}
}

static int
usage(void)
{
	fprintf(stderr,
		"usage: flockctl [--node host:port] [--json] COMMAND\n"
		"  status | ring | add <host:port> | drain <node-id> |\n"
		"  remove <node-id> [--force] | rebalance\n");
	return EXIT_USAGE;
}

static int
parse_id(const char *s, uint16_t *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v <= 0 || v > CL_NODE_ID_MAX)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *node = "127.0.0.1:7400";
	bool json = false;
	bool force = false;
	const char *args[3] = {NULL, NULL, NULL};
	int nargs = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--node") == 0 && i + 1 < argc)
			node = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--force") == 0)
			force = true;
		else if (nargs < 3)
			args[nargs++] = argv[i];
		else
			return usage();
	}
	if (nargs == 0)
		return usage();
	answer *a = calloc(1, sizeof *a);
	if (a == NULL)
		return EXIT_REFUSED;
	cl__control_request r = {0};
	int x;
	if (strcmp(args[0], "status") == 0 || strcmp(args[0], "ring") == 0) {
		r.op = args[0][0] == 's' ? CL__CONTROL_STATUS : CL__CONTROL_RING;
		x = call(node, &r, a);
		if (x == EXIT_OK && r.op == CL__CONTROL_STATUS)
			print_status(&a->status, json);
		else if (x == EXIT_OK && a->has_map)
			print_ring(&a->map, json);
		goto done;
	}
	if (strcmp(args[0], "rebalance") == 0) {
		x = rebalance(node, json, a);
		goto done;
	}
	if ((strcmp(args[0], "block") == 0 || strcmp(args[0], "unblock") == 0) &&
		nargs == 2) {
		/* to this node only: a partition is local to each side */
		r.op = CL__CONTROL_BLOCK;
		r.force = args[0][0] == 'b';
		snprintf(r.address, sizeof r.address, "%s", args[1]);
		x = call(node, &r, a);
		if (x == EXIT_OK && a->code != 0) {
			fprintf(stderr, "flockctl: %s refused: %s (%s)\n",
				args[0], a->message, cl_strerror(a->code));
			x = EXIT_REFUSED;
		} else if (x == EXIT_OK) {
			printf("%s: ok, %s\n", args[0], a->message);
		}
		goto done;
	}
	if (strcmp(args[0], "add") == 0 && nargs == 2) {
		r.op = CL__CONTROL_ADD;
		snprintf(r.address, sizeof r.address, "%s", args[1]);
	} else if (strcmp(args[0], "drain") == 0 && nargs == 2 &&
		   parse_id(args[1], &r.node) == 0) {
		r.op = CL__CONTROL_DRAIN;
	} else if (strcmp(args[0], "remove") == 0 && nargs == 2 &&
		   parse_id(args[1], &r.node) == 0) {
		r.op = CL__CONTROL_REMOVE;
		r.force = force;
	} else {
		free(a);
		return usage();
	}
	x = call_admin(node, &r, a);
	if (x == EXIT_OK && a->code != 0) {
		fprintf(stderr, "flockctl: %s refused: %s (%s)\n", args[0],
			a->message, cl_strerror(a->code));
		x = EXIT_REFUSED;
	} else if (x == EXIT_OK) {
		if (json)
			printf("{\"ok\":true,\"message\":\"%s\"}\n", a->message);
		else
			printf("%s: ok, %s\n", args[0], a->message);
	}
done:
	free(a);
	return x;
}
