/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * drainctl: how wide the background drain may run, as a pure function of
 * the faults seen so far and the clock.
 *
 * Every fault on a lazy page that needs a READ of its own halves the
 * drain's depth and chunk (down to one request of min_chunk): a thread is
 * waiting, and each drain READ on the wire delays its page.  A fault on a
 * page already in flight does not: its READ is on the wire, and the
 * engine installs that page first when it arrives.  When the faults stop for a quiet time the
 * drain doubles them back, one step per quarter of that time, up to the
 * configured maximum.  The quiet time follows the workload: twice the
 * smoothed gap between faults, kept within 1..100 ms, so a burst does not
 * see the drain go wide between two of its faults and a workload that
 * stopped faulting gets the full drain back in a few milliseconds.  An
 * operator's quiet_ms replaces it (rdmig-dest --drain-quiet).
 *
 * With shared_queue (faults and drain on one queue pair, no fault lane),
 * the drain also stays at its minimum while faults are in flight: every
 * READ posted then is one more the fault's READ may have to wait behind.
 *
 * With a floor (rdmig-dest --drain-floor N) and a fault lane, faults halve
 * the depth down to N requests of the full chunk, never below: the faults'
 * READs have their own queue pair, and a drain narrowed to one 64 KiB
 * request moves a few MB/s while threads fault (performance.md).  Without
 * a fault lane the floor does not apply.
 *
 * No clock is read here: callers pass now (ns); nothing is allocated.
 */
#ifndef RDMIG_DRAINCTL_H
#define RDMIG_DRAINCTL_H

#include <stdbool.h>
#include <stdint.h>

#define DRAINCTL_QUIET_MIN_NS (1000000ull)   /* 1 ms */
#define DRAINCTL_QUIET_MAX_NS (100000000ull) /* 100 ms */
/* Before two faults have given a gap. */
#define DRAINCTL_QUIET_FIRST_NS (5000000ull) /* 5 ms */

struct drainctl {
	/* Configuration. */
	uint32_t max_depth;
	uint64_t max_chunk; /* bytes */
	uint64_t min_chunk; /* bytes, <= max_chunk */
	uint32_t quiet_ms;  /* 0: adaptive */
	bool shared_queue;
	uint32_t floor_depth; /* 0: none (drainctl_set_floor) */
	/* State: what the drain may use now. */
	uint32_t depth;
	uint64_t chunk;
	uint64_t last_fault_ns; /* 0: none yet */
	uint64_t gap_ns;	/* smoothed gap between faults, 0: none yet */
	uint64_t last_change_ns;
	uint64_t shrinks;
	uint64_t grows;
};

/* Starts wide open: no fault has been seen. */
void drainctl_init(struct drainctl *dc, uint32_t max_depth, uint64_t max_chunk, uint64_t min_chunk,
		   uint32_t quiet_ms, bool shared_queue);
/* Faults leave at least depth requests of max_chunk (with a fault lane); 0: none. */
void drainctl_set_floor(struct drainctl *dc, uint32_t depth);
/* A fault on a lazy page arrived at now. */
void drainctl_fault(struct drainctl *dc, uint64_t now);
/*
 * Before the drain submits: grows back after a quiet time.  faults_inflight:
 * fault requests at the page source now.  Then read dc->depth and dc->chunk.
 */
void drainctl_update(struct drainctl *dc, uint64_t now, bool faults_inflight);
/* The quiet time in force, ns. */
uint64_t drainctl_quiet_ns(const struct drainctl *dc);

#endif
