/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bounce: a small region registered for RDMA READ that carries the first
 * units of a lazy dump a destination asks for while their chunk of the
 * staging area is still being registered (FEAT_LATE_REGIONS, prereg.h).
 *
 * Registering a staging area of hundreds of MiB takes seconds on soft-RoCE,
 * and with the destination's worker started at the reservation (design.md
 * §10.3) its criu restore starts before it ends.  The restore itself
 * faults on a few lazy pages (each thread's rseq area, for one), and
 * waited for the whole registration: 2.2 s of a 2.4 s restore at 256 MiB
 * in the guests.  A unit asked for then is copied from the area into one
 * of this region's slots and announced from there; the destination reads
 * it from the slot for as long as the connection lasts.  Slots are never
 * reused, so a full region only means that later units wait for their chunk.
 *
 * Registering it took 0.1-0.25 s of the loop in the guests, paid by the
 * restore's first fault; bounce_open_async() registers it on the offload
 * thread instead, before the destination asks.
 *
 * Ownership: the caller owns the bounce from bounce_open() (or
 * bounce_open_async()) and closes it after the connection whose peer may
 * read it (the region is deregistered and unmapped; a registration still
 * running is let go, and releases the region when it ends).  Loop thread
 * only.  Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_BOUNCE_H
#define RDMIG_SRC_BOUNCE_H

#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "offload.h"
#include "rdma.h"

struct bounce;

/* nr_slots slots of slot_len bytes, faulted in and registered REMOTE_READ in pd. */
int bounce_open(struct ibv_pd *pd, unsigned int nr_slots, size_t slot_len, struct bounce **out);

/* b is registered (ret 0) or cannot be (ret < 0: close it). */
typedef void (*bounce_ready_fn)(struct bounce *b, int ret, void *arg);

/*
 * The same, mapped now and faulted in and registered in pd (a reference
 * is taken for the job) on o: ready(b, ret, arg) follows on the loop
 * unless b is closed first.  Until then bounce_put() says -EAGAIN.
 */
int bounce_open_async(struct offload *o, struct rdma_pd *pd, unsigned int nr_slots, size_t slot_len,
		      bounce_ready_fn ready, void *arg, struct bounce **out);

/*
 * Copies len (<= slot_len) bytes from src into the next free slot; *addr
 * and *rkey say where the peer reads them.  -ENOSPC when every slot is
 * taken, -EAGAIN while the region is still being registered.
 */
int bounce_put(struct bounce *b, const void *src, size_t len, uint64_t *addr, uint32_t *rkey);

/* The whole region, for its MemRegions entry. */
void bounce_region(const struct bounce *b, uint64_t *addr, uint64_t *len, uint32_t *rkey);

/* Registered: bounce_put() may place units. */
bool bounce_ready(const struct bounce *b);

/* Slots taken so far. */
unsigned int bounce_used(const struct bounce *b);

/* Deregisters, unmaps and frees.  NULL is fine. */
void bounce_close(struct bounce *b);

#endif
