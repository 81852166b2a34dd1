/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * imgchain: a hand-built pre-copy chain for the unit tests, below a root
 * directory: round-1 (a full pre-dump, pages of seed 1), round-2 (parent
 * ../round-1, seed 2) and the final dump in root itself (parent round-2,
 * seed 3), one task IMGCHAIN_PID; the rounds hold what criu pre-dump writes.  VMA 0x10000-0x30000
 * can be lazy, 0x40000-0x42000 (shared) cannot.  Page contents are pattern.h's, so any page read
 * back is checked against imgchain_seeds[its round's depth].
 */
#ifndef RDMIG_TEST_IMGCHAIN_H
#define RDMIG_TEST_IMGCHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define IMGCHAIN_PID 20

/* Seed of the pages at chain depth 0 (the final dump), 1, 2 (round-1). */
extern uint32_t imgchain_seeds[3];
/* What the final set's task resolves to (img_task.flat). */
extern const struct img_pagemap_entry imgchain_flat[6];
#define IMGCHAIN_NR_FLAT 6

/* Writes one images directory of the chain, with a `parent` link to parent (or none). */
void imgchain_write(const char *dir, const struct img_pagemap_entry *e, size_t n, uint32_t *seed,
		    const char *parent);
/*
 * Makes dir what criu pre-dump writes: no pstree.img nor mm-<pid>.img, an
 * inventory without img_version (0).
 */
void imgchain_as_round(const char *dir);
/* Writes the whole chain below root, the rounds as criu pre-dump does. */
void imgchain_build(const char *root);
/* Removes dir and everything below it. */
void imgchain_rm(const char *dir);

#endif
