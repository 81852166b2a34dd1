/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * imgflat: the images a destination gets from a pre-copy chain, or from a
 * dump whose lazy flags image_set_relazy() mended.
 *
 * A dump taken with --prev-images-dir leaves PE_PARENT runs whose data is
 * in earlier rounds' pages files (image.h resolves them).  criu restore
 * --lazy-pages on the destination would read those runs from a parent it
 * does not have.  So the source ships, in place of each task's pagemap and
 * pages file, a flat pair written here: every resolved run that is lazy
 * becomes PE_LAZY without data (the source serves it by RDMA from the
 * round that holds it, as the lazy set and range tables say), every other
 * run PE_PRESENT with its bytes copied from whichever round holds them.
 * Only non-lazy pages are copied (stacks near SP, vDSO, shared or locked
 * memory): a few pages per task, not the workload's memory.  The
 * destination's lazy set, parsed from the flat pagemap, is the source's,
 * range for range.  The chain itself is never modified: a rollback
 * restores from it.  A dump image_set_relazy() changed goes flat the same
 * way, its lazy runs without data, so the destination's criu restore
 * leaves them to the faults as the source's lazy set says.
 *
 * Threading: blocking file I/O; the source agent runs it on its offload
 * thread.  Errors are logged with the file involved.
 */
#ifndef RDMIG_IMGFLAT_H
#define RDMIG_IMGFLAT_H

#include "image.h"

/* Where, inside the images directory, the flat files are written. */
#define IMGFLAT_DIR "rdmig-flat"

/*
 * Writes "<set->dir>/IMGFLAT_DIR/pagemap-<pid>.img" and "pages-<id>.img"
 * for every task of set with memory; a set without a parent that
 * image_set_relazy() left as criu wrote it needs none: flat images an
 * earlier call left for it are removed (an error: -errno), else nothing.  Replaces files left by
 * an earlier call.  Returns 0 or a negative errno.
 */
int imgflat_write(const struct img_set *set);

/*
 * The file to ship for the image file name of the images in dir: the flat
 * one when it exists, else dir/name itself.  Returns 0 or -ENAMETOOLONG.
 */
int imgflat_ship_path(const char *dir, const char *name, char *buf, size_t len);

#endif
