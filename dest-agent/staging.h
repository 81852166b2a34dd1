/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * staging: the buffers fetched pages land in before UFFDIO_COPY.
 *
 * One contiguous, page-aligned, pre-faulted anonymous region cut into
 * equal slots, so a transport registers it once (ibv_reg_mr over
 * staging_base()/staging_len()) and addresses a slot by its offset.  Each
 * request holds one slot from submit until its pages are installed or
 * dropped.
 *
 * Ownership: staging_create() returns a region the caller frees with
 * staging_free() after every page source using it has been destroyed
 * (a transport may still write into a slot until then).
 */
#ifndef RDMIG_STAGING_H
#define RDMIG_STAGING_H

#include <stddef.h>
#include <stdint.h>

struct staging;

/* slot_size is rounded up to whole pages.  Returns 0 or -EINVAL / -ENOMEM. */
int staging_create(uint64_t slot_size, uint32_t nr_slots, struct staging **out);
void staging_free(struct staging *st);

/* Takes a free slot: returns its index, or -EBUSY when all are in use. */
int staging_get(struct staging *st);
void staging_put(struct staging *st, int slot);
void *staging_slot(const struct staging *st, int slot);

void *staging_base(const struct staging *st);
uint64_t staging_len(const struct staging *st);
uint64_t staging_slot_size(const struct staging *st);
uint32_t staging_nr_slots(const struct staging *st);
uint32_t staging_nr_free(const struct staging *st);

#endif
