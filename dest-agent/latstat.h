/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * latstat: latency statistics: count, min, max, mean, a log2-microsecond
 * histogram of every sample, and exact percentiles over a bounded sample
 * array (all samples while they fit, then a uniform reservoir sample).
 *
 * The struct is embedded by its owner; latstat_init() allocates the sample
 * array and latstat_destroy() frees it.
 */
#ifndef RDMIG_LATSTAT_H
#define RDMIG_LATSTAT_H

#include <stddef.h>
#include <stdint.h>

/* Bucket 0: < 2 us; bucket i > 0: [2^i, 2^(i+1)) us; the last one is open-ended. */
#define LATSTAT_BUCKETS 32

struct latstat {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t hist[LATSTAT_BUCKETS];
	uint64_t *samples;
	size_t cap;
	size_t nr_samples;
	uint64_t rng;
};

/* cap: how many samples percentiles are computed from.  Returns 0 or -ENOMEM. */
int latstat_init(struct latstat *ls, size_t cap);
void latstat_destroy(struct latstat *ls);
void latstat_add(struct latstat *ls, uint64_t ns);
/* p in [0, 100], nearest rank; 0 without samples.  Reorders the sample array. */
uint64_t latstat_percentile(struct latstat *ls, double p);
uint64_t latstat_mean(const struct latstat *ls);
/*
 * The non-empty histogram buckets on one line, "LO:COUNT ..." with LO the
 * bucket's lower bound in microseconds.  Returns buf (truncated to len).
 */
const char *latstat_format_hist(const struct latstat *ls, char *buf, size_t len);

#endif
