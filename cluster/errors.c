/*
 * errors.c — cluster error names, the runtime mapping, the assert hook and
 * the few real-time helpers the cluster thread and flockctl use.
 *
 * Only this file and the transports read clocks in cluster/; the node's
 * logic takes time as an argument so the simulator can drive it.
 */
#include "cluster/internal.h"

#include <time.h>

const char *
cl_strerror(int code)
{
	switch (code) {
	case CL_OK: return "ok";
	case CL_EINVAL: return "invalid argument";
	case CL_ENOMEM: return "out of memory";
	case CL_EIO: return "i/o error";
	case CL_ECORRUPT: return "corrupt data";
	case CL_EVERSION: return "unsupported format version";
	case CL_EUNAVAILABLE: return "unavailable";
	case CL_EBUSY: return "busy (backpressure)";
	case CL_ENOTFOUND: return "not found";
	case CL_ETIMEDOUT: return "timed out";
	case CL_ESTATE: return "refused in current state";
	case CL_EEXIST: return "already exists";
	case CL_ETOOBIG: return "too big";
	case CL_ENOTLEADER: return "not the coordinator";
	default: return "unknown cluster error";
	}
}

int
cl_to_rt_error(int code)
{
	switch (code) {
	case CL_OK: return RT_OK;
	case CL_EBUSY: return RT_EMAILBOX_FULL;
	case CL_ENOMEM: return RT_ENOMEM;
	case CL_ETOOBIG: return RT_ETOOBIG;
	case CL_EINVAL: return RT_EINVAL;
	case CL_ECORRUPT: return RT_ECORRUPT;
	case CL_EIO: return RT_EIO;
	case CL_ENOTFOUND: return RT_ENOTFOUND;
	default: return RT_EUNAVAILABLE;
	}
}

void
cl__assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "cluster: assertion failed: %s (%s:%d)\n", expr, file,
		line);
	fflush(stderr);
	abort();
}

uint64_t
cl__fnv64(const void *bytes, size_t length)
{
	const unsigned char *p = bytes;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < length; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t
cl__monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
cl__wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
cl__sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}
