/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * roundcopy: the destination's copies of a pre-copy's rounds (FEAT_ROUNDS,
 * design.md §13).  While the workload still runs on the source, the held
 * early session announces each round's registered pages files
 * (RoundPages); each is read by one-sided READ through a small bounce
 * buffer into an unnamed file beneath the images directory (O_TMPFILE: a
 * large workload is not held twice in memory, and nothing is left behind
 * whatever way the worker ends), hashed as it arrives, and kept only when
 * its XXH3 is the one the source announced.  A copy that would leave the
 * filesystem with little room (ROUNDCOPY_FREE_MIN) is not made: copies are
 * an optimisation, never a reason for the checkpoint's images to find the
 * disk full.
 *
 * At serve, a final MemRegion with the same address, length and XXH3 as a
 * kept copy makes that copy the region's local stand-in: requests inside
 * it (with the region's rkey) are read from the file, not the network.
 * A round's pages files never change once the round ended (the source
 * checks that before its final dump), so equal hashes mean equal bytes.
 *
 * Reading goes through roundcopy_ops, so the copy logic is tested without
 * a network.  Everything runs on the owner's event loop; the owner routes
 * the completions of the READs it posted for us (cookies that
 * roundcopy_cookie() recognises) to roundcopy_read_done().
 */
#ifndef RDMIG_ROUNDCOPY_H
#define RDMIG_ROUNDCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctrl.h"

/* The bounce buffer: this many READs of at most this many bytes in flight. */
#define ROUNDCOPY_SLOTS	      4
#define ROUNDCOPY_CHUNK_BYTES (1u << 20)
/* Free space a copy must leave on the images' filesystem (or 1/20 of it). */
#define ROUNDCOPY_FREE_MIN (256ull << 20)

struct ibv_mr;

struct roundcopy_ops {
	/* Registers buf (len bytes) for local write in the connection's PD. */
	int (*reg)(void *arg, void *buf, size_t len, struct ibv_mr **out);
	/* Posts one READ; its completion comes to roundcopy_read_done() with cookie. */
	int (*read)(void *arg, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		    uint32_t len, uint64_t cookie);
	/* Deregisters what reg made (after the connection stopped all READs). */
	void (*dereg)(void *arg, struct ibv_mr *mr);
};

struct roundcopy_stats {
	uint64_t regions_announced;
	uint64_t regions_kept; /* copied whole, XXH3 equal */
	uint64_t regions_bad;  /* copied whole, XXH3 different: removed */
	uint64_t regions_left; /* not copied: stopped by the checkpoint or a lost connection */
	uint64_t bytes_copied; /* of kept regions */
	uint64_t copy_ns;      /* from the first READ to the last region kept */
	uint64_t regions_used; /* kept copies a final MemRegion named */
	uint64_t bytes_local;  /* served from the copies (roundcopy_pread()) */
};

struct roundcopy;

/*
 * dir_fd (borrowed, kept open by the owner): where the unnamed files are
 * made; name: for logs (copied).
 */
int roundcopy_new(int dir_fd, const char *name, const struct roundcopy_ops *ops, void *arg,
		  struct roundcopy **out);
/* Closes every copy; the owner has stopped the READs first (roundcopy_stop()). */
void roundcopy_free(struct roundcopy *rc);

/*
 * Queues the n regions of a RoundPages (validated: each with has_xxh3) and
 * posts READs if none run.  -EBUSY once stopped (the checkpoint began).
 */
int roundcopy_add(struct roundcopy *rc, uint32_t round, const struct ctrl_region *r, size_t n);

/*
 * The last round announced, once copying every region announced so far
 * has ended (kept, bad, or given up after an error) and no READ of ours is
 * in flight; 0 while copying goes on or before any round.  The source may
 * wait for it before its final dump (RoundsCopied).
 */
uint32_t roundcopy_idle_round(const struct roundcopy *rc);

/* A cookie of ours, and our completion for it. */
bool roundcopy_cookie(uint64_t cookie);
void roundcopy_read_done(struct roundcopy *rc, uint64_t cookie, int status);

/*
 * No more copying: the checkpoint's images began, or the connection whose
 * READs these were is gone.  Unfinished copies are dropped (their pages
 * are read from the source as usual), the bounce buffer deregistered; the
 * kept copies stay.  READs in flight must not land afterwards: call it
 * once the connection is closed, or (images began) let it drop their
 * completions (roundcopy_read_done() ignores them).
 */
void roundcopy_stop(struct roundcopy *rc, bool connection_closed);
/* READs of ours still in flight (a stopped copier waits for them before dereg). */
unsigned int roundcopy_inflight(const struct roundcopy *rc);

/*
 * A final MemRegion: a kept copy of the same address, length and XXH3
 * serves it from now on, with its rkey.  Returns true when one does.
 */
bool roundcopy_adopt(struct roundcopy *rc, const struct ctrl_region *g);
/* A new connection: its MemRegions adopt again (rkeys change). */
void roundcopy_unadopt_all(struct roundcopy *rc);

/*
 * [raddr, raddr + len) under rkey lies in an adopted copy: its bytes are
 * read into dst.  0, -ENOENT (no copy holds it: read it from the source),
 * or a negative errno from the file.
 */
int roundcopy_pread(struct roundcopy *rc, uint64_t raddr, uint32_t rkey, void *dst, size_t len);

void roundcopy_get_stats(const struct roundcopy *rc, struct roundcopy_stats *out);

#endif
