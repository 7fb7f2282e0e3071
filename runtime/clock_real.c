/*
 * clock_real.c — the runtime's one window on the real clocks.
 *
 * Role: every read of clock_gettime in runtime/ is here, so the
 * deterministic mode (virtual time in timer.c) and the simulator can be
 * sure nothing else sneaks real time in. Also builds absolute deadlines
 * for timed condition-variable waits (CLOCK_MONOTONIC).
 *
 * Does not: keep state. All functions are thread-safe.
 */
#include "runtime/internal.h"

#include <time.h>

uint64_t
rt__clock_monotonic_ms(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
	RT_ASSERT(rc == 0);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* CLOCK_MONOTONIC_COARSE: a few ns through the vDSO, ~4 ms resolution;
 * good enough for "last active" stamps taken once per turn. Same epoch as
 * CLOCK_MONOTONIC, so it can be compared with rt__clock_monotonic_ms. */
uint64_t
rt__clock_coarse_ms(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	RT_ASSERT(rc == 0);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
rt__clock_wall_ms(void)
{
	struct timespec ts;
	int rc = clock_gettime(CLOCK_REALTIME, &ts);
	RT_ASSERT(rc == 0);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
rt__clock_deadline(uint64_t ms, struct timespec *out)
{
	RT_ASSERT(out != NULL);
	struct timespec ts;
	int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
	RT_ASSERT(rc == 0);
	/* Cap far deadlines: a day is "forever" for a wait loop that
	 * re-checks its condition anyway. */
	if (ms > 86400000u)
		ms = 86400000u;
	ts.tv_sec += (time_t)(ms / 1000u);
	ts.tv_nsec += (long)((ms % 1000u) * 1000000u);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec += 1;
		ts.tv_nsec -= 1000000000L;
	}
	*out = ts;
}

int
rt__condvar_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	if (pthread_condattr_init(&attr) != 0)
		return RT_ENOMEM;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return rc == 0 ? 0 : RT_ENOMEM;
}
