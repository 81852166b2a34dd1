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

/* The stream this fault continues (sequentially or by its stride), or NULL. */
static struct ra_stream *ra_match(struct readahead *ra, uint64_t page, enum ra_pattern *kind)
{
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
		if (d != 0 && d == s->stride) {
			*kind = RA_STRIDED;
			return s;
		}
	}
	return NULL;
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
	} else {
		/*
		 * A new stream, measured from the latest fault: a second fault at
		 * the same distance makes it strided.
		 */
		prev = ra_latest(ra);
		s = ra_victim(ra);
		s->stride = prev ? (int64_t)(page - prev->last) : 0;
		kind = prev ? RA_RANDOM : RA_NONE;
		w = prev ? 1 : ra_min(READAHEAD_FIRST, ra->max_pages);
	}
	ra->faults++;
	s->last = page;
	s->window = w;
	s->used = ra->faults;
	ra->last = kind;
	ra->window = w;
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
