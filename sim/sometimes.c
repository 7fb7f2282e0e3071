/*
 * sim/sometimes.c — the registry of sim_sometimes sites.
 *
 * Every site's counter sits in its own static variable, and a pointer to
 * it in the linker section SIM_SOMETIMES_SECTION; the linker provides
 * the section's bounds, so the sites are enumerated whether or not they
 * ever ran (a site compiled into a file that is not linked is not seen:
 * the sweep reports only what this program can reach).
 */
#include "sim/internal.h"

/* The linker defines these for a section whose name is an identifier;
 * weak, so a program without any site still links. */
extern sim_sometimes_site *__start_flock_sometimes[] __attribute__((weak));
extern sim_sometimes_site *__stop_flock_sometimes[] __attribute__((weak));

void
sim_sometimes_each(sim_sometimes_visit cb, void *arg)
{
	if (__start_flock_sometimes == NULL || __stop_flock_sometimes == NULL)
		return;
	for (sim_sometimes_site **p = __start_flock_sometimes;
		p < __stop_flock_sometimes; p++)
		if (*p != NULL)
			cb(arg, *p);
}

static void
reset_one(void *arg, const sim_sometimes_site *s)
{
	(void)arg;
	__atomic_store_n(&((sim_sometimes_site *)s)->hits, 0, __ATOMIC_RELAXED);
}

void
sim_sometimes_reset(void)
{
	sim_sometimes_each(reset_one, NULL);
}
