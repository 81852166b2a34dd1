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
 * image_set_free(); every pointer inside it belongs to the set.  A set is
 * never modified after image_set_open() returns, so threads may share it.
 */
#ifndef RDMIG_IMAGE_H
#define RDMIG_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMG_PAGE_SIZE 4096u

/*
 * Magic words, CRIU's values, little-endian u32 at the start of each file.
 * inventory.img has only its own; the others have IMG_MAGIC_COMMON first
 * when inventory's img_version is 2.  pages-<id>.img has none.
 */
#define IMG_MAGIC_COMMON    0x54564319u
#define IMG_MAGIC_INVENTORY 0x58313116u
#define IMG_MAGIC_PSTREE    0x50273030u
#define IMG_MAGIC_MM	    0x57492820u
#define IMG_MAGIC_PAGEMAP   0x56084025u

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
	uint64_t end;	/* exclusive */
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
	uint32_t src;	    /* resolved entries: chain depth of that pages file (0: this set) */
};

/* One PE_LAZY run inside one VMA: one UFFDIO_COPY never crosses it. */
struct img_lazy_range {
	uint64_t vaddr;	    /* dump-time start address */
	uint64_t len;	    /* bytes, a multiple of IMG_PAGE_SIZE */
	uint64_t pages_off; /* offset in pages-<pages_id>.img, or IMG_NO_OFFSET */
	uint32_t src;	    /* chain depth of the images holding the data: 0 this set */
};

struct img_task {
	int32_t pid;	      /* virtual pid from pstree.img */
	bool has_memory;      /* false when the task has no mm/pagemap (zombie) */
	uint32_t pages_id;    /* from the PagemapHead */
	struct img_vma *vmas; /* sorted by start, guard VMAs dropped */
	size_t nr_vmas;
	struct img_pagemap_entry *entries; /* sorted by vaddr */
	size_t nr_entries;
	struct img_lazy_range *lazy; /* sorted by vaddr */
	size_t nr_lazy;
	uint64_t lazy_bytes;
	uint64_t pages_file_size; /* bytes the PE_PRESENT entries need */
	/*
	 * Only in a set with a parent, or one image_set_relazy() changed:
	 * entries with every PE_PARENT run
	 * resolved down the chain, so none has IMG_PE_PARENT; each names the
	 * set holding its data (src) and its offset there.  A resolved run is
	 * PE_LAZY only inside a VMA image_vma_can_be_lazy() accepts.  The lazy
	 * set is derived from these instead of from entries.
	 */
	struct img_pagemap_entry *flat;
	size_t nr_flat;
};

struct img_set {
	char *dir;
	/*
	 * The images of the previous pre-dump round, from the `parent` link
	 * (criu --prev-images-dir), with their own parent; NULL without one.
	 */
	struct img_set *parent;
	uint32_t depth; /* 0 for the set image_set_open() returns */
	uint32_t img_version;
	bool pagemap_v42; /* any pagemap used field 5 (CRIU >= 4.2 encoding) */
	/* image_set_relazy() rebuilt some task's flat entries and lazy set. */
	bool relazied;
	struct img_task *tasks;
	size_t nr_tasks;
};

/* Largest protobuf record accepted; a bigger size word is -ERANGE. */
#define IMG_MAX_RECORD (16u << 20)
/* Largest image file read into memory (pages files are never read). */
#define IMG_MAX_FILE (1ull << 30)
/* Longest parent chain followed (8 pre-dump rounds and the dump, with room). */
#define IMG_CHAIN_MAX 16
/* Largest valid pid: the kernel's PID_MAX_LIMIT on 64-bit. */
#define IMG_PID_MAX 4194304

/*
 * Reads the images directory dir.  Every task of pstree.img gets an
 * img_task; one with neither mm-<pid>.img nor pagemap-<pid>.img (a zombie)
 * has has_memory == false, one with only one of the two is -ENOENT.
 * pages-<id>.img is not read, only stat()ed: it must exist and hold at least
 * pages_file_size bytes when some entry is PE_PRESENT; when none is (e.g.
 * `criu dump --lazy-pages` of a process with no non-lazy pages) it may be
 * absent.
 *
 * A `parent` link (written by criu dump --prev-images-dir) is followed, up
 * to IMG_CHAIN_MAX sets: the link must be relative and resolve, lexically,
 * to a directory beneath dir itself (the top set's directory is the root of
 * the whole chain), with no symbolic link on the way; anything else is
 * -EXDEV or -ELOOP.  Each PE_PARENT run is then resolved page by page down
 * the chain (img_task.flat); a page missing from the parent, or one the
 * parent holds no data for, is -EBADMSG: never a zero page.  Without a
 * `parent` link PE_PARENT runs stay unresolved: their lazy ranges get
 * pages_off == IMG_NO_OFFSET.
 *
 * Returns 0 and *out (free with image_set_free()), or a negative errno:
 * -ENOENT (missing file), -EBADMSG (corrupt or inconsistent content),
 * -ERANGE (record size, img_version, pid or page count out of range),
 * -ENOMEM, or the errno of a failed open/read/stat.
 */
int image_set_open(const char *dir, struct img_set **out);
/* Frees set and everything it points to; NULL is a no-op. */
void image_set_free(struct img_set *set);
/* The set depth links down the chain from set (0: set itself), or NULL. */
const struct img_set *image_set_at(const struct img_set *set, uint32_t depth);
/*
 * Writes the path of the pages file holding lazy range lr of task (a task
 * of set) into buf: "<dir>/pages-<id>.img" of the set lr->src links down.
 * Returns 0, -EINVAL (no such set or task), or -ENAMETOOLONG.
 */
int image_range_pages_path(const struct img_set *set, const struct img_task *task,
			   const struct img_lazy_range *lr, char *buf, size_t len);
/* The task with virtual pid pid, or NULL.  The set owns it. */
struct img_task *image_set_task(const struct img_set *set, int32_t pid);
/*
 * Writes "<dir>/pages-<id>.img" into buf.  Returns 0, -EINVAL for a task
 * without memory, or -ENAMETOOLONG when len is too small.
 */
int image_pages_path(const struct img_set *set, const struct img_task *task, char *buf, size_t len);

/*
 * True if CRIU's restorer registers this VMA with userfaultfd, i.e. its
 * faults reach the lazy-pages daemon: private anonymous, not locked, not
 * hugetlb, not vDSO/vvar/vsyscall.  Guard VMAs never get here.
 */
bool image_vma_can_be_lazy(const struct img_vma *vma);

/*
 * Lower-level parsers over one image file's bytes, buf[0..len), exactly as
 * stored on disk.  image_set_open() is built on them; they also let the
 * fuzzer and tests drive the parsing without files.  name appears in log
 * messages only.  img_version is inventory's (1: no common magic, 2: common
 * magic before the per-type magic); other values are -ERANGE.  Same errno
 * convention as image_set_open().  On error, no output is set and nothing
 * needs freeing.
 */
int image_parse_inventory_buf(const void *buf, size_t len, const char *name, uint32_t *img_version);
/* *pids is malloc()ed, in pstree order, each in [1, IMG_PID_MAX], no duplicates. */
int image_parse_pstree_buf(const void *buf, size_t len, const char *name, uint32_t img_version,
			   int32_t **pids, size_t *nr_pids);
/*
 * Fills task->vmas / nr_vmas (which must be empty): guard VMAs dropped,
 * sorted, checked for alignment and overlap.
 */
int image_parse_mm_buf(const void *buf, size_t len, const char *name, uint32_t img_version,
		       struct img_task *task);
/*
 * Fills task->pages_id, entries, pages_file_size and the lazy set
 * (lazy, nr_lazy, lazy_bytes), which must be empty.  The lazy set is cut
 * along task->vmas, so parse the mm image first: a PE_LAZY page outside
 * every VMA is -EBADMSG.  *v42 (may be NULL) is set when some entry carries
 * the CRIU 4.2 page count (field 5).
 */
int image_parse_pagemap_buf(const void *buf, size_t len, const char *name, uint32_t img_version,
			    struct img_task *task, bool *v42);
/* Frees the arrays the parsers filled in and zeroes them; pid is kept. */
void image_task_clear(struct img_task *task);

/*
 * Undoes criu dump's misfire on laziness: since 3.13 its is_stack()
 * (criu/mem.c) compares the offset of each thread's stack pointer in its
 * page where it means the page, so one thread stopped with it on a page
 * boundary makes criu write every page of the task PE_PRESENT and none
 * PE_LAZY; otherwise it marks every page of the VMAs
 * image_vma_can_be_lazy() accepts lazy.  For each task of the top set,
 * and each set down the chain its resolved entries take pages from, that
 * has such pages and not one PE_LAZY (the misfire's mark), those pages
 * are marked PE_LAZY: the task gets flat entries and a lazy set rebuilt
 * from them, its data where criu wrote it (pages_off), set->relazied is
 * set, and a warning says so; imgflat_write() then writes what its
 * destination gets.  In a `criu dump --lazy-pages` set those ranges keep
 * their pages_off (criu wrote them into the pages files) while the others
 * have none: criu's page server holds none of them.  *pages counts the
 * pages made lazy.  Returns 0 or -ENOMEM (some tasks may then
 * be changed: free the set).
 */
int image_set_relazy(struct img_set *set, uint64_t *pages);
/*
 * t's entries with every PE_PARENT run resolved: its flat ones when it has
 * them (a chain, or image_set_relazy() changed it), else those criu wrote
 * (all from src 0).  What a child resolves against and imgflat writes.
 */
const struct img_pagemap_entry *image_task_resolved(const struct img_task *t, size_t *nr);
/* The pages of t image_set_relazy() would mark lazy: 0 in any dump but those. */
uint64_t image_task_unlazy_pages(const struct img_task *t);

/*
 * Cuts every lazy range of set into pieces of at most unit bytes (a
 * multiple of IMG_PAGE_SIZE), each range from its start, the last piece
 * shorter: the staging units of a lazy dump (protocol.md §11.2), so that
 * no page request crosses one.  lazy_bytes is unchanged.
 */
int image_set_cut_lazy(struct img_set *set, uint64_t unit);

#endif
