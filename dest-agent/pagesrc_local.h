/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pagesrc_local: a page source reading the images' own pages-<id>.img
 * files with pread(), as `criu lazy-pages` does without --page-server.
 *
 * Reads run from the event loop (one deferred event per request), so
 * completions take the same asynchronous path as a network transport.
 * For tests it can inject faults (see pagesrc_local_parse_inject()).
 */
#ifndef RDMIG_PAGESRC_LOCAL_H
#define RDMIG_PAGESRC_LOCAL_H

#include <event2/event.h>
#include <stdint.h>

#include "image.h"
#include "pagesrc.h"

struct pagesrc_local_inject {
	uint32_t delay_us;	/* before each completion */
	uint64_t fail_after;	/* requests after the Nth fail with -EIO (0: never) */
	uint64_t gone_after;	/* after the Nth request the source is gone (0: never) */
	uint64_t hang_after;	/* requests after the Nth never complete (0: never) */
	uint64_t corrupt_after; /* requests after the Nth get one wrong byte (0: never) */
	int verify;		/* compare the data with the file before it is installed */
};

/*
 * Parses "delay=US,fail-after=N,gone-after=N,hang-after=N,corrupt-after=N,
 * verify" (any subset, comma separated) into *inj, which it zeroes first.
 * Returns 0 or -EINVAL.
 */
int pagesrc_local_parse_inject(const char *spec, struct pagesrc_local_inject *inj);

/*
 * imgs is borrowed and must outlive the source; inj may be NULL.  Pages
 * files are opened on first use.  Returns 0 and *out (free with
 * pagesrc_destroy()), or -ENOMEM.
 */
int pagesrc_local_create(struct event_base *base, const struct img_set *imgs,
			 const struct pagesrc_local_inject *inj, struct pagesrc **out);

#endif
