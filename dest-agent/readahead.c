// SPDX-License-Identifier: GPL-2.0-or-later
#include "readahead.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

void readahead_init(struct readahead *ra, uint32_t page_size, uint32_t max_pages)
{
	memset(ra, 0, sizeof(*ra));
	ra->max_pages = max_pages ? max_pages : 1;
	while ((1u << ra->page_shift) < page_size)
		ra->page_shift++;
}

static uint32_t ra_min(uint64_t a, uint32_t b)
{
	return a < b ? (uint32_t)a : b;
}

static uint64_t ra_abs(int64_t d)
{
	return d < 0 ? (uint64_t)-d : (uint64_t)d;
}

/* Whether a fault d pages from a stream of that stride continues it. */
static bool ra_strided(int64_t stride, int64_t d)
{
	if (stride == 0 || d == 0)
		return false;
	/* A few strides on: the faults between found their pages already in. */
	if (d % stride == 0 && d / stride > 0 && d / stride <= READAHEAD_STRIDE_SKIP)
		return true;
	/* A fraction of it: the faults that set it skipped one. */
	return stride % d == 0 && stride / d > 0 && stride / d <= READAHEAD_STRIDE_SKIP;
}

/*
 * The stream this fault continues, sequentially or by its stride, or
 * NULL; of several, the nearest, so threads interleaving their faults do
 * not take each other's streams.
 */
static struct ra_stream *ra_match(struct readahead *ra, uint64_t page, enum ra_pattern *kind)
{
	struct ra_stream *best = NULL;
	uint64_t best_d = UINT64_MAX;
	size_t i;

	for (i = 0; i < READAHEAD_STREAMS; i++) {
		struct ra_stream *s = &ra->s[i];
		int64_t d = (int64_t)(page - s->last);

		if (!s->used)
			continue;
		if (d > 0 && (uint64_t)d <= 2ull * s->window) {
			*kind = RA_SEQUENTIAL;
			return s;
		}
		if (ra_strided(s->stride, d) && ra_abs(d) < best_d) {
			best = s;
			best_d = ra_abs(d);
		}
	}
	if (best) {
		int64_t d = (int64_t)(page - best->last);

		if (ra_abs(d) < ra_abs(best->stride))
			best->stride = d;
		*kind = RA_STRIDED;
	}
	return best;
}

/* The nearest stream that is no scan, within READAHEAD_STRIDE_NEAR pages, or NULL. */
static struct ra_stream *ra_near(struct readahead *ra, uint64_t page)
{
	struct ra_stream *best = NULL;
	uint64_t best_d = READAHEAD_STRIDE_NEAR + 1;
	size_t i;

	for (i = 0; i < READAHEAD_STREAMS; i++) {
		struct ra_stream *s = &ra->s[i];
		uint64_t d = ra_abs((int64_t)(page - s->last));

		if (s->used && !s->scan && d && d < best_d) {
			best = s;
			best_d = d;
		}
	}
	return best;
}

/* The least recently used stream, to start anew. */
static struct ra_stream *ra_victim(struct readahead *ra)
{
	struct ra_stream *v = &ra->s[0];
	size_t i;

	for (i = 1; i < READAHEAD_STREAMS; i++)
		if (ra->s[i].used < v->used)
			v = &ra->s[i];
	return v;
}

/* The stream of the latest fault, or NULL before the first. */
static struct ra_stream *ra_latest(struct readahead *ra)
{
	size_t i;

	for (i = 0; i < READAHEAD_STREAMS; i++)
		if (ra->faults && ra->s[i].used == ra->faults)
			return &ra->s[i];
	return NULL;
}

uint32_t readahead_fault(struct readahead *ra, uint64_t addr)
{
	uint64_t page = addr >> ra->page_shift;
	enum ra_pattern kind = RA_RANDOM;
	struct ra_stream *s = ra_match(ra, page, &kind);
	struct ra_stream *prev;
	uint32_t w;

	if (s && kind == RA_SEQUENTIAL) {
		w = ra_min(2ull * s->window, ra->max_pages);
		s->stride = 0;
	} else if (s) {
		w = s->stride > 0 && (uint64_t)s->stride * 4 <= ra->max_pages
			? (uint32_t)s->stride * 4
			: 1;
	} else if ((s = ra_near(ra, page))) {
		/* Perhaps a stride from there: a next fault at that distance says so. */
		s->stride = (int64_t)(page - s->last);
		w = 1;
	} else {
		/*
		 * A new stream; a later fault near it gives it a stride.  Not
		 * the distance from the latest fault: that may be another
		 * thread's.
		 */
		prev = ra_latest(ra);
		s = ra_victim(ra);
		s->stride = 0;
		kind = prev ? RA_RANDOM : RA_NONE;
		w = prev ? 1 : ra_min(READAHEAD_FIRST, ra->max_pages);
	}
	s->scan = kind == RA_SEQUENTIAL;
	ra->faults++;
	s->last = page;
	s->window = w;
	s->used = ra->faults;
	ra->last = kind;
	ra->window = w;
	if (kind == RA_STRIDED)
		ra->stride = s->stride;
	ra->n[kind]++;
	return w;
}

enum ra_pattern readahead_pattern(const struct readahead *ra)
{
	enum ra_pattern best = RA_NONE;
	int p;

	/* From the smallest window up: a tie keeps the cheaper guess. */
	for (p = RA_RANDOM; p >= RA_SEQUENTIAL; p--)
		if (ra->n[p] > ra->n[best])
			best = (enum ra_pattern)p;
	return best;
}

static const char *const ra_names[] = {"none", "sequential", "strided", "random"};

const char *readahead_pattern_str(enum ra_pattern p)
{
	return (unsigned int)p < 4 ? ra_names[p] : "?";
}

int readahead_pattern_parse(const char *s, enum ra_pattern *out)
{
	int p;

	for (p = RA_NONE; p <= RA_RANDOM; p++) {
		if (strcmp(s, ra_names[p]) == 0) {
			*out = (enum ra_pattern)p;
			return 0;
		}
	}
	return -EINVAL;
}
