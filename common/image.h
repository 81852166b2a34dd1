/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * image: read-only view of a CRIU images directory.
 *
 * Parses inventory.img, pstree.img, and per task mm-<pid>.img and
 * pagemap-<pid>.img, and derives each task's lazy set: the PE_LAZY pagemap
 * runs clipped to VMA boundaries, each with its byte offset in
 * pages-<pages_id>.img.  Both pagemap encodings are understood (page count
 * in field 2 up to CRIU 4.1, field 5 from 4.2), and CRIU 4.2's fake guard
 * VMAs are dropped.
 *
 * Every error is logged with the file name and byte offset involved and
 * returned as a negative errno (-EBADMSG for corrupt content, -ENOENT for a
 * missing required file, -ERANGE for out-of-range values).  Nothing is
 * trusted: lengths, counts and addresses are checked before use.
 *
 * Ownership: image_set_open() returns a set the caller frees with
 * image_set_free(); every pointer inside it belongs to the set.
 */
#ifndef RDMIG_IMAGE_H
#define RDMIG_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_PAGE_SIZE 4096u

/* Pagemap entry flags, CRIU's values. */
#define IMG_PE_PARENT  (1u << 0)
#define IMG_PE_LAZY    (1u << 1)
#define IMG_PE_PRESENT (1u << 2)

/* VmaEntry.status bits used here, CRIU's values. */
#define IMG_VMA_AREA_VSYSCALL (1u << 2)
#define IMG_VMA_AREA_VDSO     (1u << 3)
#define IMG_VMA_AREA_VVAR     (1u << 12)
#define IMG_VMA_AREA_GUARD    (1u << 16)

/* Sentinel for a lazy range whose data is not in this dump's pages file. */
#define IMG_NO_OFFSET UINT64_MAX

struct img_vma {
	uint64_t start; /* dump-time address, page aligned */
	uint64_t end;   /* exclusive */
	uint64_t pgoff;
	uint32_t prot;
	uint32_t flags; /* mmap flags */
	uint32_t status;
};

struct img_pagemap_entry {
	uint64_t vaddr;
	uint64_t nr_pages;
	uint32_t flags;
	uint64_t pages_off; /* byte offset in the pages file; valid iff IMG_PE_PRESENT */
};

/* One PE_LAZY run inside one VMA: one UFFDIO_COPY never crosses it. */
struct img_lazy_range {
	uint64_t vaddr;     /* dump-time start address */
	uint64_t len;       /* bytes, a multiple of IMG_PAGE_SIZE */
	uint64_t pages_off; /* offset in pages-<pages_id>.img, or IMG_NO_OFFSET */
};

struct img_task {
	int32_t pid;       /* virtual pid from pstree.img */
	bool has_memory;   /* false when the task has no mm/pagemap (zombie) */
	uint32_t pages_id; /* from the PagemapHead */
	struct img_vma *vmas; /* sorted by start, guard VMAs dropped */
	size_t nr_vmas;
	struct img_pagemap_entry *entries; /* sorted by vaddr */
	size_t nr_entries;
	struct img_lazy_range *lazy; /* sorted by vaddr */
	size_t nr_lazy;
	uint64_t lazy_bytes;
	uint64_t pages_file_size; /* bytes the PE_PRESENT entries need */
};

struct img_set {
	char *dir;
	uint32_t img_version;
	bool pagemap_v42; /* any pagemap used field 5 (CRIU >= 4.2 encoding) */
	struct img_task *tasks;
	size_t nr_tasks;
};

int image_set_open(const char *dir, struct img_set **out);
void image_set_free(struct img_set *set);
struct img_task *image_set_task(const struct img_set *set, int32_t pid);
/* Writes "<dir>/pages-<id>.img" into buf. */
int image_pages_path(const struct img_set *set, const struct img_task *task, char *buf, size_t len);

#endif
