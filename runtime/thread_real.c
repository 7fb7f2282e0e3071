/*
 * thread_real.c — the runtime's one request to the OS scheduler about
 * its threads: short time slices for the threads a message waits on.
 *
 * Role: a worker, the timer thread and the journal's writer sleep most
 * of the time and, when woken, run for microseconds; what a message
 * waits for is the time between the wake-up and the run. Linux's fair
 * scheduler (EEVDF, 6.6+) gives a woken thread a deadline one slice
 * ahead and lets it preempt a running thread only when that deadline
 * comes first; the default slice (0.75 ms, times 1 + log2 of the CPUs)
 * lets a woken worker wait behind a busy thread for a millisecond or
 * more. A thread that asks for a short slice (sched_attr.sched_runtime,
 * honoured for SCHED_OTHER since Linux 6.12) gets an earlier deadline,
 * so its wake-ups preempt; it gets no larger share of the CPU, only
 * shorter turns of it.
 *
 * Does not: change the policy (a thread that is not SCHED_OTHER is left
 * alone), the nice value or the CPU share; fail (an older kernel ignores
 * the slice, and a refusal leaves the default).
 */
#include "runtime/internal.h"

#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The slice asked for: the kernel's floor (0.1 ms), about a hundred short
 * turns; a long turn is only preempted more often, at ~2 µs a switch. */
#define RT_THREAD_SLICE_NS 100000u

/* struct sched_attr of sched_setattr(2) (glibc 2.36 has no wrapper). */
typedef struct thread_sched_attr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime;
	uint64_t sched_deadline;
	uint64_t sched_period;
} thread_sched_attr;

void
rt_thread_short_slice(void)
{
#ifdef SYS_sched_setattr
	/* Only a plain fair thread: a real-time or batch one keeps its
	 * policy. */
	if (sched_getscheduler(0) != SCHED_OTHER)
		return;
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0); /* this thread's */
	if (nice == -1 && errno != 0)
		return;
	thread_sched_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.size = sizeof attr;
	attr.sched_policy = SCHED_OTHER;
	attr.sched_nice = nice;
	attr.sched_runtime = RT_THREAD_SLICE_NS;
	(void)syscall(SYS_sched_setattr, 0, &attr, 0u);
#endif
}
