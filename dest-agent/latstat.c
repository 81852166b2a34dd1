// SPDX-License-Identifier: GPL-2.0-or-later
#include "latstat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int latstat_init(struct latstat *ls, size_t cap)
{
	memset(ls, 0, sizeof(*ls));
	ls->cap = cap ? cap : 1;
	ls->samples = malloc(ls->cap * sizeof(*ls->samples));
	if (!ls->samples)
		return -ENOMEM;
	ls->rng = 0x9e3779b97f4a7c15ull;
	return 0;
}

void latstat_destroy(struct latstat *ls)
{
	free(ls->samples);
	ls->samples = NULL;
}

static uint64_t latstat_rand(struct latstat *ls)
{
	ls->rng ^= ls->rng << 13;
	ls->rng ^= ls->rng >> 7;
	ls->rng ^= ls->rng << 17;
	return ls->rng;
}

static unsigned latstat_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned b = us < 2 ? 0 : 63u - (unsigned)__builtin_clzll(us);

	return b < LATSTAT_BUCKETS ? b : LATSTAT_BUCKETS - 1;
}

void latstat_add(struct latstat *ls, uint64_t ns)
{
	if (ls->count == 0 || ns < ls->min_ns)
		ls->min_ns = ns;
	if (ns > ls->max_ns)
		ls->max_ns = ns;
	ls->count++;
	ls->sum_ns += ns;
	ls->hist[latstat_bucket(ns)]++;
	if (!ls->samples)
		return;
	if (ls->nr_samples < ls->cap) {
		ls->samples[ls->nr_samples++] = ns;
	} else {
		/* Reservoir sampling keeps every sample equally likely to stay. */
		uint64_t j = latstat_rand(ls) % ls->count;

		if (j < ls->cap)
			ls->samples[j] = ns;
	}
}

static int latstat_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t latstat_percentile(struct latstat *ls, double p)
{
	size_t rank;

	if (ls->nr_samples == 0)
		return 0;
	qsort(ls->samples, ls->nr_samples, sizeof(*ls->samples), latstat_cmp);
	if (p <= 0)
		return ls->samples[0];
	{
		double r = p / 100.0 * (double)ls->nr_samples;

		rank = (size_t)r;
		if ((double)rank < r)
			rank++;
	}
	if (rank > ls->nr_samples)
		rank = ls->nr_samples;
	return ls->samples[rank ? rank - 1 : 0];
}

uint64_t latstat_mean(const struct latstat *ls)
{
	return ls->count ? ls->sum_ns / ls->count : 0;
}

const char *latstat_format_hist(const struct latstat *ls, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned b = 0; b < LATSTAT_BUCKETS && off < len; b++) {
		uint64_t lo = b ? 1ull << b : 0;
		int n;

		if (!ls->hist[b])
			continue;
		n = snprintf(buf + off, len - off, "%s%" PRIu64 "%s:%" PRIu64, off ? " " : "", lo,
			     b == LATSTAT_BUCKETS - 1 ? "+" : "", ls->hist[b]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}
