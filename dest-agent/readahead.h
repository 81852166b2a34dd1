/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * readahead: how many pages a fault should fetch, from the pattern of the
 * task's faults so far, as a pure function of the fault addresses.
 *
 * A task keeps a few streams (READAHEAD_STREAMS), so threads that scan
 * different areas at once each keep their own.  A fault continues a
 * stream when it lands at most two windows after the stream's last fault
 * (the pages between came with that fault's read-ahead, or from the
 * drain): sequential, and the stream's window doubles, up to max_pages.  A
 * fault at the stream's stride from its last, or at up to
 * READAHEAD_STRIDE_SKIP strides (the faults between found their pages
 * in), or at a fraction of it (down to 1/READAHEAD_STRIDE_SKIP: the
 * stride is that finer one), is strided: a stride of at most a quarter of max_pages is fetched
 * as a sequential window of four strides, a longer one page by page (the
 * pages between are not wanted).  Anything else is random and fetches one
 * page.  It retries the nearest stream that is no scan, if one lies within
 * READAHEAD_STRIDE_NEAR pages, with the distance as its stride (so threads
 * that each walk their own area by a stride keep their own streams); else
 * it takes the least recently used stream, starting it anew.  Of several
 * streams a fault continues, the nearest takes it.  The first fault of a
 * stream fetches READAHEAD_FIRST pages (at most max_pages).
 *
 * Backward scans count as random: a fault only claims pages after its own.
 * Nothing is allocated; no clock is read.
 */
#ifndef RDMIG_READAHEAD_H
#define RDMIG_READAHEAD_H

#include <stdbool.h>
#include <stdint.h>

#define READAHEAD_STREAMS 4
#define READAHEAD_FIRST	  4
/* A fault up to this many strides on still continues a strided stream. */
#define READAHEAD_STRIDE_SKIP 4
/* A fault this many pages or fewer from a stream that is no scan retries it with that stride. */
#define READAHEAD_STRIDE_NEAR 256

enum ra_pattern {
	RA_NONE, /* no fault yet */
	RA_SEQUENTIAL,
	RA_STRIDED,
	RA_RANDOM,
};

struct ra_stream {
	uint64_t last;	 /* page number of the last fault; 0: unused */
	int64_t stride;	 /* pages from the fault before to the last */
	uint32_t window; /* pages the last fault fetched */
	uint64_t used;	 /* the fault count when last used, for LRU */
	bool scan;	 /* its last fault was sequential */
};

struct readahead {
	uint32_t max_pages; /* configuration: the largest window, >= 1 */
	uint32_t page_shift;
	struct ra_stream s[READAHEAD_STREAMS];
	enum ra_pattern last; /* of the latest fault */
	uint32_t window;      /* of the latest fault */
	int64_t stride;	      /* pages, of the latest strided fault; 0 before one */
	uint64_t faults;
	uint64_t n[4]; /* faults per pattern, by enum ra_pattern */
};

/* page_size: a power of two; max_pages: the largest window (0 counts as 1). */
void readahead_init(struct readahead *ra, uint32_t page_size, uint32_t max_pages);
/* A fault on a lazy page at addr: returns the pages to fetch, >= 1. */
uint32_t readahead_fault(struct readahead *ra, uint64_t addr);
/*
 * The task's prevailing pattern: the one most of its faults had
 * (RA_NONE before any), ties going to the smaller window.
 */
enum ra_pattern readahead_pattern(const struct readahead *ra);
/* "none", "sequential", "strided", "random". */
const char *readahead_pattern_str(enum ra_pattern p);
/* The reverse: 0, or -EINVAL for any other string. */
int readahead_pattern_parse(const char *s, enum ra_pattern *out);

#endif
