/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tickclock: a periodic timer's check that it ran on time.
 *
 * A tick that judges a peer or a request by elapsed time (a fetch
 * timeout, a dead-peer check) must not count time this process did not
 * run: SIGSTOP, a starved CPU, a suspended guest.  Each such tick keeps a
 * struct tickclock and asks it, first thing, how late it ran; a gap it
 * reports is time nobody else is to blame for, and the tick's owner moves
 * its deadlines (last receive, request start) forward by it.  Monotonic
 * clock (now_ns()); loop thread only.
 */
#ifndef RDMIG_TICKCLOCK_H
#define RDMIG_TICKCLOCK_H

#include <stdint.h>

/* A tick later than its period by more than this (or one period, if longer) ran late. */
#define TICKCLOCK_LATE_MIN_NS (1000ull * 1000 * 1000)

struct tickclock {
	uint64_t period_ns;
	uint64_t last_ns; /* the previous tick; 0 before the first */
};

/* A clock for a tick every period_ns, counting from now. */
void tickclock_init(struct tickclock *c, uint64_t period_ns, uint64_t now);

/*
 * The tick runs at now: the time it lost beyond its period when that is
 * more than max(TICKCLOCK_LATE_MIN_NS, period), else 0.  A gap is logged
 * once, as a warning naming name (the owner) and its length.
 */
uint64_t tickclock_gap(struct tickclock *c, uint64_t now, const char *name);

/*
 * A deadline's reference time t (a request's start, the last receive)
 * moved forward by gap, but never past now: a time taken during the late
 * stretch stays in the past, and times keep their order.
 */
uint64_t tickclock_shift(uint64_t t, uint64_t gap, uint64_t now);

#endif
