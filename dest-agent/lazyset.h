/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lazyset: one restored process's lazy pages still to install.
 *
 * Built from the PE_LAZY ranges of an img_task (cut at VMA boundaries by
 * the image parser).  Each page is pending (to fetch), in flight (claimed by
 * a request), or neither (installed, or dropped by an unmap/remove).  Pages
 * are identified by their dump-time ("image") address, which is what the
 * page source reads; the run-time address where they must be installed
 * starts equal to it and moves with UFFD_EVENT_REMAP.  Internally: per
 * image range two bitmaps (pending, in flight) and a list of run-time
 * extents, each mapping a slice of one range to a run-time address, kept
 * sorted by run-time and by image address for O(log n) lookups.
 *
 * A run (struct lazy_run) never crosses an image range, so it never
 * crosses a VMA and one UFFDIO_COPY can install it.
 *
 * Not thread-safe; everything runs on the loop thread.  Functions return 0
 * or a negative errno; counts are returned as uint64_t.
 */
#ifndef RDMIG_LAZYSET_H
#define RDMIG_LAZYSET_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define LAZY_PAGE_SIZE IMG_PAGE_SIZE

struct lazyset;

/* Pages contiguous in both address spaces, inside one image range. */
struct lazy_run {
	uint64_t rt_addr;   /* run-time address of the first page */
	uint64_t img_vaddr; /* dump-time address of the first page */
	uint64_t len;	    /* bytes, a multiple of LAZY_PAGE_SIZE */
	uint64_t pages_off; /* offset of the first page in pages-<id>.img, or IMG_NO_OFFSET */
};

enum lazy_state {
	LAZY_NONE = 0, /* not lazy: never dumped, installed, or dropped */
	LAZY_PENDING,
	LAZY_INFLIGHT,
};

/* All lazy pages of task pending.  *out is freed with lazyset_free(). */
int lazyset_create(const struct img_task *task, struct lazyset **out);
/*
 * For UFFD_EVENT_FORK: the child's set.  Pages pending or in flight in the
 * parent are pending in the child: an in-flight COPY lands in the parent
 * only, so the child must fetch those pages itself.
 */
int lazyset_clone(const struct lazyset *parent, struct lazyset **out);
void lazyset_free(struct lazyset *ls);

enum lazy_state lazyset_lookup(const struct lazyset *ls, uint64_t rt_addr);

/*
 * For a fault at rt_addr (any address inside the page): claims the pending
 * page there and up to max_pages - 1 pending pages after it (read-ahead),
 * stopping at the first page that is not pending or at the end of the
 * range.  The pages become in flight and the drain continues after them.
 * Returns 0, or -ENOENT if that page is not pending.
 */
int lazyset_claim_fault(struct lazyset *ls, uint64_t rt_addr, uint64_t max_pages,
			struct lazy_run *run);
/*
 * For the background drain: claims the next run of up to max_pages pending
 * pages in run-time address order, from where the last claim ended,
 * wrapping around once.  Returns 0, or -ENOENT when nothing is pending.
 */
int lazyset_claim_next(struct lazyset *ls, uint64_t max_pages, struct lazy_run *run);

/*
 * The first (lowest image address) run of in-flight pages inside the image
 * range [img_vaddr, img_vaddr + len), with its current run-time address:
 * what a completed request still has to install after remaps and removes.
 * Returns 0, or -ENOENT if no page there is in flight.
 */
int lazyset_first_inflight(const struct lazyset *ls, uint64_t img_vaddr, uint64_t len,
			   struct lazy_run *run);
/* In-flight pages of [img_vaddr, +len) become installed.  Returns how many. */
uint64_t lazyset_complete(struct lazyset *ls, uint64_t img_vaddr, uint64_t len);
/* In-flight pages of [img_vaddr, +len) become pending again.  Returns how many. */
uint64_t lazyset_unclaim(struct lazyset *ls, uint64_t img_vaddr, uint64_t len);

/*
 * UFFD_EVENT_UNMAP / UFFD_EVENT_REMOVE: forget the run-time range
 * [rt_addr, rt_addr + len).  *dropped (may be NULL) gets how many pending or
 * in-flight pages were dropped.  Returns 0 or -ENOMEM (nothing changed).
 */
int lazyset_remove(struct lazyset *ls, uint64_t rt_addr, uint64_t len, uint64_t *dropped);
/*
 * UFFD_EVENT_REMAP: pages at run-time [from, from + len) now live at
 * [to, to + len).  Whatever was at the destination is dropped first, as the
 * kernel unmaps it.  Returns 0, -EINVAL for unaligned arguments, -ENOMEM.
 */
int lazyset_remap(struct lazyset *ls, uint64_t from, uint64_t to, uint64_t len);

uint64_t lazyset_pending(const struct lazyset *ls);
uint64_t lazyset_inflight(const struct lazyset *ls);
/* Pending plus in flight: pages not installed yet. */
uint64_t lazyset_remaining(const struct lazyset *ls);
/* Lazy pages the set started with (for a clone: the parent's). */
uint64_t lazyset_total(const struct lazyset *ls);

/* Checks every internal invariant; for tests.  Returns 0 or -EUCLEAN. */
int lazyset_check(const struct lazyset *ls);

#endif
