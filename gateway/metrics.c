/*
 * metrics.c — request counters, latency histograms and the Prometheus
 * text exposition.
 *
 * Role: the loop thread records every finished request under (route,
 * status); /metrics renders those plus gauges (connections, live
 * streams, queued frames), the runtime's statistics (actors active and
 * passivated, mailbox pressure) and the process RSS. Routes are labelled
 * by their pattern ("/v1/posts/{}"), never by the raw path, so the label
 * set is bounded by the route table.
 *
 * What it deliberately does not do: lock (one thread writes and reads),
 * keep per-user series (unbounded cardinality).
 */
#include "gateway/internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Upper bounds in microseconds: 100 us to 10 s, roughly x2.5 steps. */
static const uint64_t latency_bounds_us[GW_LATENCY_BUCKETS] = {100, 250,
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 10000000};

static const int status_slots[GW_STATUS_SLOTS - 1] = {101, 200, 201, 204,
	304, 400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 429, 500, 503,
	411};

static int
status_slot(int status)
{
	for (int i = 0; i < GW_STATUS_SLOTS - 1; i++)
		if (status_slots[i] == status)
			return i;
	return GW_STATUS_SLOTS - 1;
}

void
gw__metrics_observe(gw__metrics *m, gw__route_id route, int status,
	uint64_t latency_us)
{
	gw__assert((unsigned)route < GW_ROUTE_COUNT);
	int s = status_slot(status);
	gw__count(&m->requests[route][s], 1);
	gw__count(&m->latency_sum_us[route][s], (int64_t)latency_us);
	for (int b = 0; b < GW_LATENCY_BUCKETS; b++) {
		if (latency_us <= latency_bounds_us[b]) {
			gw__count(&m->latency_buckets[route][s][b], 1);
			break;
		}
	}
}

static void
add_all(uint64_t *sum, const uint64_t *from, size_t count)
{
	for (size_t i = 0; i < count; i++)
		sum[i] += __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

void
gw__metrics_add(gw__metrics *sum, const gw__metrics *m)
{
	static_assert(sizeof(gw__metrics) % sizeof(uint64_t) == 0,
		"gw__metrics is an array of counters");
	add_all((uint64_t *)sum, (const uint64_t *)m,
		sizeof(gw__metrics) / sizeof(uint64_t));
}

static int
out_printf(gw__body *out, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	gw__assert(n >= 0);
	if ((size_t)n >= sizeof line)
		n = (int)sizeof line - 1;
	return gw__body_append(out, line, (size_t)n);
}

static int
render_requests(const gw__metrics *m, gw__body *out)
{
	int rc = out_printf(out,
		"# HELP flock_http_requests_total HTTP requests by route and "
		"status.\n# TYPE flock_http_requests_total counter\n");
	for (int r = 0; r < GW_ROUTE_COUNT && rc == 0; r++)
		for (int s = 0; s < GW_STATUS_SLOTS && rc == 0; s++) {
			if (m->requests[r][s] == 0)
				continue;
			char status[8];
			if (s == GW_STATUS_SLOTS - 1)
				snprintf(status, sizeof status, "other");
			else
				snprintf(status, sizeof status, "%d",
					status_slots[s]);
			rc = out_printf(out,
				"flock_http_requests_total{route=\"%s\","
				"status=\"%s\"} %" PRIu64 "\n",
				gw__route_label((gw__route_id)r), status,
				m->requests[r][s]);
		}
	if (rc == 0)
		rc = out_printf(out,
			"# HELP flock_http_request_duration_seconds Time from "
			"the request's headers to its response.\n"
			"# TYPE flock_http_request_duration_seconds "
			"histogram\n");
	for (int r = 0; r < GW_ROUTE_COUNT && rc == 0; r++)
		for (int s = 0; s < GW_STATUS_SLOTS && rc == 0; s++) {
			if (m->requests[r][s] == 0)
				continue;
			const char *label = gw__route_label((gw__route_id)r);
			char status[8];
			if (s == GW_STATUS_SLOTS - 1)
				snprintf(status, sizeof status, "other");
			else
				snprintf(status, sizeof status, "%d",
					status_slots[s]);
			uint64_t cumulative = 0;
			for (int b = 0; b < GW_LATENCY_BUCKETS && rc == 0; b++) {
				cumulative += m->latency_buckets[r][s][b];
				rc = out_printf(out,
					"flock_http_request_duration_seconds_"
					"bucket{route=\"%s\",status=\"%s\","
					"le=\"%g\"} %" PRIu64 "\n",
					label, status,
					(double)latency_bounds_us[b] / 1e6,
					cumulative);
			}
			if (rc == 0)
				rc = out_printf(out,
					"flock_http_request_duration_seconds_"
					"bucket{route=\"%s\",status=\"%s\","
					"le=\"+Inf\"} %" PRIu64 "\n"
					"flock_http_request_duration_seconds_"
					"sum{route=\"%s\",status=\"%s\"} %.6f\n"
					"flock_http_request_duration_seconds_"
					"count{route=\"%s\",status=\"%s\"} "
					"%" PRIu64 "\n",
					label, status, m->requests[r][s], label,
					status,
					(double)m->latency_sum_us[r][s] / 1e6,
					label, status, m->requests[r][s]);
		}
	return rc;
}

static int
gauge(gw__body *out, const char *name, const char *type, const char *help,
	uint64_t value)
{
	return out_printf(out,
		"# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help,
		name, type, name, value);
}

int
gw__metrics_render(const gw__metrics *m, const gw__process_stats *ps,
	const char *extra, gw__body *out)
{
	int rc = render_requests(m, out);
	if (rc == 0)
		rc = gauge(out, "flock_connections_open", "gauge",
			"Open client sockets (HTTP and WebSocket).",
			m->connections_open);
	if (rc == 0)
		rc = gauge(out, "flock_connections_refused_total", "counter",
			"Connections refused by the per-IP cap.",
			m->connections_refused_total);
	if (rc == 0)
		rc = gauge(out, "flock_ws_streams_open", "gauge",
			"Live WebSocket streams.", m->ws_open);
	if (rc == 0)
		rc = gauge(out, "flock_ws_frames_sent_total", "counter",
			"Event frames written to WebSockets.",
			m->ws_frames_sent_total);
	if (rc == 0)
		rc = gauge(out, "flock_ws_closed_slow_total", "counter",
			"WebSockets closed with 4008 (slow reader).",
			m->ws_closed_slow_total);
	if (rc == 0)
		rc = gauge(out, "flock_ws_queued_frames", "gauge",
			"Frames queued for WebSockets, all sockets.",
			m->ws_queue_frames);
	if (rc == 0)
		rc = gauge(out, "flock_rate_limited_total", "counter",
			"Requests answered 429 by the gateway's per-IP limits.",
			m->rate_limited_total);
	if (rc == 0)
		rc = gauge(out, "flock_requests_in_flight", "gauge",
			"Requests waiting for the domain.",
			m->requests_in_flight);
	if (rc == 0)
		rc = gauge(out, "flock_process_resident_memory_bytes", "gauge",
			"Resident set size.", ps->rss_bytes);
	if (rc == 0)
		rc = gauge(out, "flock_api_calls_pending", "gauge",
			"Domain calls in flight on the gateway's client.",
			ps->api_pending);
	if (rc == 0 && ps->have_runtime) {
		const rt_stats *s = &ps->runtime;
		rc = gauge(out, "flock_actors_active", "gauge",
			"Actors in memory.", s->actors_active);
		if (rc == 0)
			rc = gauge(out, "flock_actors_passivated_total",
				"counter", "Actors passivated.",
				s->actors_passivated_total);
		if (rc == 0)
			rc = gauge(out, "flock_actors_activated_total",
				"counter", "Actors activated.",
				s->actors_activated_total);
		if (rc == 0)
			rc = gauge(out, "flock_messages_delivered_total",
				"counter", "Actor messages delivered.",
				s->messages_delivered_total);
		if (rc == 0)
			rc = gauge(out, "flock_mailbox_full_total", "counter",
				"Sends refused by a full mailbox.",
				s->mailbox_full_total);
		if (rc == 0)
			rc = gauge(out, "flock_asks_timed_out_total",
				"counter", "Asks that timed out.",
				s->asks_timed_out_total);
		if (rc == 0)
			rc = gauge(out, "flock_actor_memory_bytes", "gauge",
				"Memory held by active actors.",
				s->bytes_actors);
	}
	if (rc == 0 && extra != NULL && extra[0] != '\0')
		rc = gw__body_append(out, extra, strlen(extra));
	return rc;
}

uint64_t
gw__process_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	unsigned long long size = 0, resident = 0;
	int n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	if (n != 2)
		return 0;
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}
