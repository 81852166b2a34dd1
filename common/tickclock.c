// SPDX-License-Identifier: GPL-2.0-or-later
#include "tickclock.h"

#include "log.h"

void tickclock_init(struct tickclock *c, uint64_t period_ns, uint64_t now)
{
	c->period_ns = period_ns;
	c->last_ns = now;
}

uint64_t tickclock_gap(struct tickclock *c, uint64_t now, const char *name)
{
	uint64_t slack =
	    c->period_ns > TICKCLOCK_LATE_MIN_NS ? c->period_ns : TICKCLOCK_LATE_MIN_NS;
	uint64_t late;

	/* A clock read before the previous tick's (never with CLOCK_MONOTONIC) is no gap. */
	if (now <= c->last_ns) {
		c->last_ns = now;
		return 0;
	}
	late = now - c->last_ns > c->period_ns ? now - c->last_ns - c->period_ns : 0;
	c->last_ns = now;
	if (late <= slack)
		return 0;
	log_warn("%s: this process ran %.1f s late (stopped or starved): that time is not "
		 "counted against the peer or any request",
		 name, (double)late / 1e9);
	return late;
}

uint64_t tickclock_shift(uint64_t t, uint64_t gap, uint64_t now)
{
	return t + gap < now ? t + gap : now;
}
