// SPDX-License-Identifier: GPL-2.0-or-later
#include "drainctl.h"

void drainctl_init(struct drainctl *dc, uint32_t max_depth, uint64_t max_chunk, uint64_t min_chunk,
		   uint32_t quiet_ms, bool shared_queue)
{
	*dc = (struct drainctl){
	    .max_depth = max_depth ? max_depth : 1,
	    .max_chunk = max_chunk,
	    .min_chunk = min_chunk < max_chunk ? min_chunk : max_chunk,
	    .quiet_ms = quiet_ms,
	    .shared_queue = shared_queue,
	};
	dc->depth = dc->max_depth;
	dc->chunk = dc->max_chunk;
}

uint64_t drainctl_quiet_ns(const struct drainctl *dc)
{
	uint64_t q;

	if (dc->quiet_ms)
		return (uint64_t)dc->quiet_ms * 1000000ull;
	if (!dc->gap_ns)
		return DRAINCTL_QUIET_FIRST_NS;
	q = 2 * dc->gap_ns;
	if (q < DRAINCTL_QUIET_MIN_NS)
		q = DRAINCTL_QUIET_MIN_NS;
	if (q > DRAINCTL_QUIET_MAX_NS)
		q = DRAINCTL_QUIET_MAX_NS;
	return q;
}

static void set_size(struct drainctl *dc, uint32_t depth, uint64_t chunk, uint64_t now)
{
	if (depth == dc->depth && chunk == dc->chunk)
		return;
	if (depth < dc->depth || chunk < dc->chunk)
		dc->shrinks++;
	else
		dc->grows++;
	dc->depth = depth;
	dc->chunk = chunk;
	dc->last_change_ns = now;
}

void drainctl_set_floor(struct drainctl *dc, uint32_t depth)
{
	dc->floor_depth = depth < dc->max_depth ? depth : dc->max_depth;
}

void drainctl_fault(struct drainctl *dc, uint64_t now)
{
	uint64_t chunk = dc->chunk / 2;
	uint32_t depth = dc->depth / 2;

	if (dc->last_fault_ns && now > dc->last_fault_ns) {
		uint64_t gap = now - dc->last_fault_ns;

		/* A long pause is the end of a burst, not its rhythm: cap what it adds. */
		if (gap > DRAINCTL_QUIET_MAX_NS)
			gap = DRAINCTL_QUIET_MAX_NS;
		dc->gap_ns = dc->gap_ns ? (3 * dc->gap_ns + gap) / 4 : gap;
	}
	dc->last_fault_ns = now;
	if (dc->floor_depth && !dc->shared_queue) {
		set_size(dc, depth > dc->floor_depth ? depth : dc->floor_depth, dc->max_chunk, now);
		return;
	}
	set_size(dc, depth ? depth : 1, chunk > dc->min_chunk ? chunk : dc->min_chunk, now);
}

void drainctl_update(struct drainctl *dc, uint64_t now, bool faults_inflight)
{
	uint64_t quiet = drainctl_quiet_ns(dc);
	uint64_t chunk;
	uint32_t depth;

	if (faults_inflight && dc->shared_queue) {
		set_size(dc, 1, dc->min_chunk, now);
		return;
	}
	if (faults_inflight || !dc->last_fault_ns)
		return;
	if (now - dc->last_fault_ns < quiet || now - dc->last_change_ns < quiet / 4)
		return;
	depth = dc->depth * 2 < dc->max_depth ? dc->depth * 2 : dc->max_depth;
	chunk = dc->chunk * 2 < dc->max_chunk ? dc->chunk * 2 : dc->max_chunk;
	set_size(dc, depth, chunk, now);
}
