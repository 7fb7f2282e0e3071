/*
 * log.c — structured log lines.
 *
 * Role: one line per event on stderr:
 *   2025-01-02T03:04:05.678Z INFO node-1 runtime: activation failed kind=user
 * The timestamp is the runtime's wall clock (virtual in deterministic
 * mode, so simulator logs replay identically). Each line is formatted
 * into one buffer and written with one call, so lines from different
 * threads do not interleave.
 *
 * Does not: rotate, buffer, or keep a process-wide level (rt == NULL logs
 * at INFO and above, fixed).
 */
#include "runtime/internal.h"

#include <time.h>

/* One log line at most; longer messages are cut. */
#define LOG_LINE_BYTES_MAX 1024

static const char *
level_name(rt_log_level level)
{
	switch (level) {
	case RT_LOG_DEBUG: return "DEBUG";
	case RT_LOG_INFO: return "INFO";
	case RT_LOG_WARN: return "WARN";
	case RT_LOG_ERROR: return "ERROR";
	}
	return "?";
}

void
rt__log_init(rt_runtime *rt)
{
	atomic_store(&rt->log_level, (int)rt->cfg.log_level);
}

void
rt_log_set_level(rt_runtime *rt, rt_log_level level)
{
	if (rt != NULL)
		atomic_store(&rt->log_level, (int)level);
}

void
rt_log(rt_runtime *rt, rt_log_level level, const char *component,
	const char *format, ...)
{
	int threshold = rt != NULL ? atomic_load(&rt->log_level) : RT_LOG_INFO;
	if ((int)level < threshold)
		return;
	uint64_t wall_ms = rt != NULL ? rt_wall_ms(rt) : rt__clock_wall_ms();
	time_t seconds = (time_t)(wall_ms / 1000u);
	struct tm tm;
	gmtime_r(&seconds, &tm);
	char line[LOG_LINE_BYTES_MAX];
	int n = snprintf(line, sizeof line,
		"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ %s %s %s: ", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		(unsigned)(wall_ms % 1000u), level_name(level),
		rt != NULL && rt->node_name[0] != '\0' ? rt->node_name : "-",
		component != NULL ? component : "-");
	if (n < 0)
		return;
	size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	va_list ap;
	va_start(ap, format);
	int m = vsnprintf(line + used, sizeof line - used, format, ap);
	va_end(ap);
	if (m > 0)
		used += (size_t)m < sizeof line - used ? (size_t)m : sizeof line - used - 1;
	if (used > sizeof line - 2)
		used = sizeof line - 2;
	line[used++] = '\n';
	fwrite(line, 1, used, stderr);
}
