/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * imgwrite: writes CRIU-format images directories for synthetic processes.
 *
 * For tests and rdmig-mkimage: it writes what it is given, without
 * judging it, so tests can also build corrupt images (unsorted pagemaps,
 * lazy entries outside VMAs, ...).  Output follows CRIU's framing (magic
 * words, [u32 size][protobuf] records) and fills every field CRIU requires,
 * so CRIU's own tools (crit) can decode it; it is not a restorable dump
 * (no core, fs, ids, ... images).
 *
 * Every function returns 0 or a negative errno and logs the file involved.
 */
#ifndef RDMIG_IMGWRITE_H
#define RDMIG_IMGWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

enum imgwrite_encoding {
	IMGWRITE_ENC_317, /* PagemapEntry page count in field 2 (CRIU up to 4.1) */
	IMGWRITE_ENC_42,  /* page count in field 5, field 2 written as 0 (CRIU 4.2) */
};

struct imgwrite_opts {
	uint32_t img_version; /* inventory's; 0 means 2 (common magic present) */
	enum imgwrite_encoding encoding;
	/*
	 * Pre-flags pagemap encoding: PE_PRESENT entries carry no flags field
	 * and PE_PARENT entries only in_parent.  Other flags are still written.
	 */
	bool legacy_flags;
};

/*
 * Fills one PE_PRESENT page (IMG_PAGE_SIZE bytes) of task pid at dump-time
 * address vaddr.  Returns 0 or a negative errno, which aborts the write.
 */
typedef int (*imgwrite_fill_fn)(void *opaque, int32_t pid, uint64_t vaddr, void *page);

/* One process.  All arrays are borrowed for the duration of the call. */
struct imgwrite_task {
	int32_t pid;
	int32_t ppid; /* 0 for the root */
	bool zombie;  /* pstree entry only: no mm, pagemap or pages file */
	uint32_t pages_id;
	const struct img_vma *vmas; /* written in this order */
	size_t nr_vmas;
	/* Written after vmas with IMG_VMA_AREA_GUARD added to status, like CRIU 4.2. */
	const struct img_vma *guards;
	size_t nr_guards;
	/* vaddr, nr_pages and flags are written in this order; pages_off is ignored. */
	const struct img_pagemap_entry *entries;
	size_t nr_entries;
	imgwrite_fill_fn fill; /* NULL: PE_PRESENT pages are written as zeros */
	void *opaque;
};

/* A growing byte buffer holding one image file.  Zero-initialize; free with imgwrite_buf_free(). */
struct imgwrite_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void imgwrite_buf_free(struct imgwrite_buf *b);

/* Append one whole image file's bytes to b. */
int imgwrite_inventory_buf(struct imgwrite_buf *b, uint32_t img_version);
int imgwrite_pstree_buf(struct imgwrite_buf *b, uint32_t img_version,
			const struct imgwrite_task *tasks, size_t nr_tasks);
int imgwrite_mm_buf(struct imgwrite_buf *b, uint32_t img_version, const struct imgwrite_task *task);
/* -ERANGE if an entry's page count does not fit the 3.17 encoding's u32. */
int imgwrite_pagemap_buf(struct imgwrite_buf *b, const struct imgwrite_opts *opts,
			 const struct imgwrite_task *task);

/* Writes b to "<dir>/<name>", replacing any existing file. */
int imgwrite_file(const char *dir, const char *name, const struct imgwrite_buf *b);

/*
 * Writes "<dir>/pages-<pages_id>.img": the data of every PE_PRESENT entry,
 * in entry order, obtained from task->fill.
 */
int imgwrite_pages_file(const char *dir, const struct imgwrite_task *task);

/*
 * Writes a whole images directory: inventory.img, pstree.img and, for each
 * task that is not a zombie, mm-<pid>.img, pagemap-<pid>.img and
 * pages-<pages_id>.img.  Creates dir if needed; replaces existing files.
 * opts may be NULL (version 2, 4.2 encoding).
 */
int imgwrite_dir(const char *dir, const struct imgwrite_opts *opts,
		 const struct imgwrite_task *tasks, size_t nr_tasks);

#endif
