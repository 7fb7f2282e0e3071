/*
 * runtime_thread_test.c — the runtime's threads ask the OS for short time
 * slices.
 *
 * Goal: a worker runs its turns with the short slice rt_thread_short_slice
 * asks for, and the thread that created the runtime keeps the default.
 * Method: a real runtime with one worker; an actor reads its own thread's
 * sched_getattr in a turn and the test thread compares it with its own.
 * A kernel that reports no slice for SCHED_OTHER threads (before Linux
 * 6.12) reports 0 for both and the test only checks that the runtime ran.
 */
#include "tests/unit/runtime_testkit.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { KIND_PROBE = 1 };

typedef struct probe_attr {
	uint32_t size;
	uint32_t sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime;
	uint64_t sched_deadline;
	uint64_t sched_period;
} probe_attr;

/* The calling thread's slice as the kernel reports it (ns; 0: none). */
static uint64_t
own_slice_ns(uint32_t *policy)
{
	probe_attr attr;
	memset(&attr, 0, sizeof attr);
	CHECK_EQ(syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0u), 0);
	*policy = attr.sched_policy;
	return attr.sched_runtime;
}

static _Atomic uint64_t worker_slice_ns;
static _Atomic uint32_t worker_policy;
static atomic_bool probed;

static void
probe_on_message(rt_actor *self, void *state, const rt_message *m)
{
	(void)self;
	(void)state;
	(void)m;
	uint32_t policy;
	atomic_store(&worker_slice_ns, own_slice_ns(&policy));
	atomic_store(&worker_policy, policy);
	atomic_store(&probed, true);
}

static const rt_actor_ops probe_ops = {
	.name = "probe",
	.state_size = 8,
	.on_message = probe_on_message,
};

TEST(runtime_workers_ask_for_short_slices)
{
	uint32_t main_policy;
	uint64_t main_slice = own_slice_ns(&main_policy);
	rt_runtime *rt = tk_runtime(false, 1, 1);
	CHECK_EQ(rt_register_kind(rt, KIND_PROBE, &probe_ops), 0);
	CHECK_EQ(rt_start(rt), 0);
	CHECK_EQ(tk_send(rt, rt_addr_make(KIND_PROBE, 1), 1, NULL, 0), 0);
	while (!atomic_load(&probed))
		usleep(1000);
	CHECK_EQ(atomic_load(&worker_policy), SCHED_OTHER);
	if (main_policy == SCHED_OTHER && main_slice != 0) {
		/* The kernel reports fair slices: the worker's is the short
		 * one, and asking did not touch the creating thread's. */
		CHECK_EQ_U64(atomic_load(&worker_slice_ns), 100000);
		uint32_t policy;
		CHECK_EQ_U64(own_slice_ns(&policy), main_slice);
		CHECK(main_slice > 100000);
	}
	CHECK_EQ(rt_stop(rt), 0);
	rt_destroy(rt);
}
