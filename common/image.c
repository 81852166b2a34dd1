// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * image: CRIU images reader.  Files are read whole into memory and parsed
 * from the buffer, so the file and buffer entry points share every check.
 * Offsets in messages are byte offsets in the file: of the magic word, or of
 * the size word of the record at fault.
 */
#include "image.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu-inventory.pb-c.h"
#include "criu-mm.pb-c.h"
#include "criu-pagemap.pb-c.h"
#include "criu-pstree.pb-c.h"
#include "log.h"
#include "safepath.h"

#define IMG_PE_ALL (IMG_PE_PARENT | IMG_PE_LAZY | IMG_PE_PRESENT)

/* A read position in one image file's bytes. */
struct img_cursor {
	const uint8_t *buf;
	size_t len;
	size_t off;
	const char *name;
};

static void img_cursor_init(struct img_cursor *c, const void *buf, size_t len, const char *name)
{
	c->buf = buf;
	c->len = len;
	c->off = 0;
	c->name = name;
}

static int img_cursor_u32(struct img_cursor *c, uint32_t *v)
{
	uint32_t raw;

	if (c->len - c->off < sizeof(raw))
		return -EBADMSG;
	memcpy(&raw, c->buf + c->off, sizeof(raw));
	*v = le32toh(raw);
	c->off += sizeof(raw);
	return 0;
}

static int img_check_version(const char *name, uint32_t img_version)
{
	if (img_version == 1 || img_version == 2)
		return 0;
	log_err("%s: offset 0: images version %" PRIu32 " out of range (CRIU uses 1 or 2)", name,
		img_version);
	return -ERANGE;
}

static int img_cursor_magic(struct img_cursor *c, bool common, uint32_t magic)
{
	uint32_t v;

	if (common) {
		if (img_cursor_u32(c, &v) < 0) {
			log_err("%s: offset %zu: file too short for the common magic (%zu bytes)",
				c->name, c->off, c->len);
			return -EBADMSG;
		}
		if (v != IMG_MAGIC_COMMON) {
			log_err("%s: offset %zu: common magic is 0x%08" PRIx32 ", expected 0x%08x",
				c->name, c->off - sizeof(v), v, IMG_MAGIC_COMMON);
			return -EBADMSG;
		}
	}
	if (img_cursor_u32(c, &v) < 0) {
		log_err("%s: offset %zu: file too short for the magic (%zu bytes)", c->name, c->off,
			c->len);
		return -EBADMSG;
	}
	if (v != magic) {
		log_err("%s: offset %zu: magic is 0x%08" PRIx32 ", expected 0x%08" PRIx32, c->name,
			c->off - sizeof(v), v, magic);
		return -EBADMSG;
	}
	return 0;
}

/*
 * Steps over the next [u32 size][size bytes] record.  Returns 1 with the
 * record, 0 at a clean end of file, or a negative errno.
 */
static int img_cursor_record(struct img_cursor *c, const uint8_t **rec, size_t *rec_len,
			     size_t *rec_off)
{
	size_t start = c->off;
	uint32_t size;

	if (c->off == c->len)
		return 0;
	if (img_cursor_u32(c, &size) < 0) {
		log_err("%s: offset %zu: truncated record size (%zu of 4 bytes)", c->name, start,
			c->len - start);
		return -EBADMSG;
	}
	if (size > IMG_MAX_RECORD) {
		log_err("%s: offset %zu: record size %" PRIu32 " exceeds the %u byte limit",
			c->name, start, size, IMG_MAX_RECORD);
		return -ERANGE;
	}
	if (size > c->len - c->off) {
		log_err("%s: offset %zu: truncated record: %" PRIu32 " bytes announced, %zu left",
			c->name, start, size, c->len - c->off);
		return -EBADMSG;
	}
	*rec = c->buf + c->off;
	*rec_len = size;
	*rec_off = start;
	c->off += size;
	return 1;
}

/* Like img_cursor_record(), but a clean end of file is an error too. */
static int img_cursor_record_required(struct img_cursor *c, const char *what, const uint8_t **rec,
				      size_t *rec_len, size_t *rec_off)
{
	int ret = img_cursor_record(c, rec, rec_len, rec_off);

	if (ret == 0) {
		log_err("%s: offset %zu: file ends before the %s record", c->name, c->off, what);
		return -EBADMSG;
	}
	return ret < 0 ? ret : 0;
}

static int img_cursor_expect_end(struct img_cursor *c, const char *after)
{
	if (c->off == c->len)
		return 0;
	log_err("%s: offset %zu: unexpected data after the %s record (%zu bytes)", c->name, c->off,
		after, c->len - c->off);
	return -EBADMSG;
}

/* Appends one zeroed element to a growing array; doubles the capacity. */
static void *img_array_push(void **arr, size_t *nr, size_t *cap, size_t elem)
{
	if (*nr == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		void *n;

		if (ncap > SIZE_MAX / elem)
			return NULL;
		n = realloc(*arr, ncap * elem);
		if (!n)
			return NULL;
		*arr = n;
		*cap = ncap;
	}
	return memset((char *)*arr + (*nr)++ * elem, 0, elem);
}

/* allow_zero: a pre-dump round's inventory, which criu writes without img_version. */
static int img_parse_inventory(const void *buf, size_t len, const char *name, bool allow_zero,
			       uint32_t *img_version)
{
	Criuimg__InventoryEntry *inv = NULL;
	struct img_cursor c;
	const uint8_t *rec;
	size_t rec_len, rec_off;
	int ret;

	img_cursor_init(&c, buf, len, name);
	ret = img_cursor_magic(&c, false, IMG_MAGIC_INVENTORY);
	if (ret < 0)
		goto out;
	ret = img_cursor_record_required(&c, "InventoryEntry", &rec, &rec_len, &rec_off);
	if (ret < 0)
		goto out;
	inv = criuimg__inventory_entry__unpack(NULL, rec_len, rec);
	if (!inv) {
		log_err("%s: offset %zu: cannot decode InventoryEntry (%zu bytes)", name, rec_off,
			rec_len);
		ret = -EBADMSG;
		goto out;
	}
	if (inv->img_version != 1 && inv->img_version != 2 && !(allow_zero && !inv->img_version)) {
		log_err("%s: offset %zu: images version %" PRIu32
			" out of range (CRIU uses 1 or 2)",
			name, rec_off, inv->img_version);
		ret = -ERANGE;
		goto out;
	}
	ret = img_cursor_expect_end(&c, "InventoryEntry");
	if (ret < 0)
		goto out;
	*img_version = inv->img_version;
out:
	if (inv)
		criuimg__inventory_entry__free_unpacked(inv, NULL);
	return ret;
}

int image_parse_inventory_buf(const void *buf, size_t len, const char *name, uint32_t *img_version)
{
	return img_parse_inventory(buf, len, name, false, img_version);
}

struct img_pid_at {
	int32_t pid;
	size_t off;
};

static int img_pid_at_cmp(const void *a, const void *b)
{
	const struct img_pid_at *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Sorting a copy finds duplicates in n log n: a hostile file may hold millions. */
static int img_check_pid_dups(const char *name, const struct img_pid_at *at, size_t nr)
{
	struct img_pid_at *sorted;
	int ret = 0;

	if (nr < 2)
		return 0;
	sorted = malloc(nr * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, at, nr * sizeof(*sorted));
	qsort(sorted, nr, sizeof(*sorted), img_pid_at_cmp);
	for (size_t i = 1; i < nr; i++) {
		if (sorted[i].pid == sorted[i - 1].pid) {
			log_err("%s: offset %zu: pid %" PRId32
				" already listed by the record at offset %zu",
				name, sorted[i].off, sorted[i].pid, sorted[i - 1].off);
			ret = -EBADMSG;
			break;
		}
	}
	free(sorted);
	return ret;
}

int image_parse_pstree_buf(const void *buf, size_t len, const char *name, uint32_t img_version,
			   int32_t **pids, size_t *nr_pids)
{
	struct img_pid_at *at = NULL;
	int32_t *out = NULL;
	size_t nr = 0, cap = 0;
	struct img_cursor c;
	const uint8_t *rec;
	size_t rec_len, rec_off;
	int ret;

	ret = img_check_version(name, img_version);
	if (ret < 0)
		goto out;
	img_cursor_init(&c, buf, len, name);
	ret = img_cursor_magic(&c, img_version == 2, IMG_MAGIC_PSTREE);
	if (ret < 0)
		goto out;
	while ((ret = img_cursor_record(&c, &rec, &rec_len, &rec_off)) > 0) {
		Criuimg__PstreeEntry *pe = criuimg__pstree_entry__unpack(NULL, rec_len, rec);
		struct img_pid_at *slot;
		uint32_t pid;

		if (!pe) {
			log_err("%s: offset %zu: cannot decode PstreeEntry (%zu bytes)", name,
				rec_off, rec_len);
			ret = -EBADMSG;
			goto out;
		}
		pid = pe->pid;
		criuimg__pstree_entry__free_unpacked(pe, NULL);
		if (pid == 0 || pid > IMG_PID_MAX) {
			log_err("%s: offset %zu: pid %" PRIu32 " out of range [1, %d]", name,
				rec_off, pid, IMG_PID_MAX);
			ret = -ERANGE;
			goto out;
		}
		slot = img_array_push((void **)&at, &nr, &cap, sizeof(*at));
		if (!slot) {
			ret = -ENOMEM;
			goto out;
		}
		slot->pid = (int32_t)pid;
		slot->off = rec_off;
	}
	if (ret < 0)
		goto out;
	if (nr == 0) {
		log_err("%s: offset %zu: no PstreeEntry records", name, c.off);
		ret = -EBADMSG;
		goto out;
	}
	ret = img_check_pid_dups(name, at, nr);
	if (ret < 0)
		goto out;
	out = malloc(nr * sizeof(*out));
	if (!out) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nr; i++)
		out[i] = at[i].pid;
	*pids = out;
	*nr_pids = nr;
	ret = 0;
out:
	free(at);
	return ret;
}

static int img_vma_cmp(const void *a, const void *b)
{
	const struct img_vma *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return 0;
}

bool image_vma_can_be_lazy(const struct img_vma *vma)
{
	const uint32_t no_status =
	    IMG_VMA_AREA_VDSO | IMG_VMA_AREA_VSYSCALL | IMG_VMA_AREA_VVAR | IMG_VMA_AREA_GUARD;

	if ((vma->flags & (MAP_ANONYMOUS | MAP_PRIVATE)) != (MAP_ANONYMOUS | MAP_PRIVATE))
		return false;
	if (vma->flags & (MAP_LOCKED | MAP_HUGETLB))
		return false;
	return !(vma->status & no_status);
}

int image_parse_mm_buf(const void *buf, size_t len, const char *name, uint32_t img_version,
		       struct img_task *task)
{
	Criuimg__MmEntry *mm = NULL;
	struct img_vma *vmas = NULL;
	size_t nr = 0;
	struct img_cursor c;
	const uint8_t *rec;
	size_t rec_len, rec_off;
	int ret;

	ret = img_check_version(name, img_version);
	if (ret < 0)
		goto out;
	img_cursor_init(&c, buf, len, name);
	ret = img_cursor_magic(&c, img_version == 2, IMG_MAGIC_MM);
	if (ret < 0)
		goto out;
	ret = img_cursor_record_required(&c, "MmEntry", &rec, &rec_len, &rec_off);
	if (ret < 0)
		goto out;
	mm = criuimg__mm_entry__unpack(NULL, rec_len, rec);
	if (!mm) {
		log_err("%s: offset %zu: cannot decode MmEntry (%zu bytes)", name, rec_off,
			rec_len);
		ret = -EBADMSG;
		goto out;
	}
	ret = img_cursor_expect_end(&c, "MmEntry");
	if (ret < 0)
		goto out;
	if (mm->n_vmas) {
		vmas = calloc(mm->n_vmas, sizeof(*vmas));
		if (!vmas) {
			ret = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < mm->n_vmas; i++) {
		const Criuimg__VmaEntry *ve = mm->vmas[i];

		/* CRIU 4.2 appends MADV_GUARD_INSTALL ranges as fake VMAs over real ones. */
		if (ve->status & IMG_VMA_AREA_GUARD)
			continue;
		if (ve->start % IMG_PAGE_SIZE || ve->end % IMG_PAGE_SIZE) {
			log_err("%s: offset %zu: VMA %zu 0x%" PRIx64 "-0x%" PRIx64
				" is not page aligned",
				name, rec_off, i, ve->start, ve->end);
			ret = -EBADMSG;
			goto out;
		}
		if (ve->end <= ve->start) {
			log_err("%s: offset %zu: VMA %zu 0x%" PRIx64 "-0x%" PRIx64
				" ends before it starts",
				name, rec_off, i, ve->start, ve->end);
			ret = -EBADMSG;
			goto out;
		}
		vmas[nr] = (struct img_vma){
		    .start = ve->start,
		    .end = ve->end,
		    .pgoff = ve->pgoff,
		    .prot = ve->prot,
		    .flags = ve->flags,
		    .status = ve->status,
		};
		nr++;
	}
	/* CRIU writes VMAs in address order; sorting costs little and spares the check. */
	if (nr > 1)
		qsort(vmas, nr, sizeof(*vmas), img_vma_cmp);
	for (size_t i = 1; i < nr; i++) {
		if (vmas[i].start < vmas[i - 1].end) {
			log_err("%s: offset %zu: VMA 0x%" PRIx64 "-0x%" PRIx64
				" overlaps VMA 0x%" PRIx64 "-0x%" PRIx64,
				name, rec_off, vmas[i].start, vmas[i].end, vmas[i - 1].start,
				vmas[i - 1].end);
			ret = -EBADMSG;
			goto out;
		}
	}
	task->vmas = vmas;
	task->nr_vmas = nr;
	vmas = NULL;
	ret = 0;
out:
	free(vmas);
	if (mm)
		criuimg__mm_entry__free_unpacked(mm, NULL);
	return ret;
}

/* Growing arrays of a pagemap parse; moved into the task on success. */
struct img_pagemap_state {
	struct img_pagemap_entry *entries;
	size_t nr_entries, cap_entries;
	struct img_lazy_range *lazy;
	size_t nr_lazy, cap_lazy;
	uint64_t lazy_bytes;
	uint64_t pages_off;
	bool v42;
	bool no_lazy; /* a parent round's: its lazy set is never served, only resolved into */
};

/* Index of the first VMA that ends after addr, or nr_vmas. */
static size_t img_vma_first_ending_after(const struct img_task *task, uint64_t addr)
{
	size_t lo = 0, hi = task->nr_vmas;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (task->vmas[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Cuts one PE_LAZY entry along VMA boundaries: one UFFDIO_COPY cannot span
 * two VMAs.  Every page must lie in some VMA; the restorer registers only
 * VMAs, so a page outside them could never be requested.
 */
static int img_pagemap_add_lazy(struct img_pagemap_state *st, const struct img_task *task,
				const struct img_pagemap_entry *pe, uint64_t end, const char *name,
				size_t rec_off)
{
	size_t i = img_vma_first_ending_after(task, pe->vaddr);
	uint64_t cur = pe->vaddr;

	while (cur < end) {
		const struct img_vma *vma = i < task->nr_vmas ? &task->vmas[i] : NULL;
		struct img_lazy_range *lr;
		uint64_t seg_end;

		if (!vma || vma->start > cur) {
			log_err("%s: offset %zu: lazy page 0x%" PRIx64 " of entry 0x%" PRIx64
				"+%" PRIu64 " pages is outside every VMA",
				name, rec_off, cur, pe->vaddr, pe->nr_pages);
			return -EBADMSG;
		}
		seg_end = vma->end < end ? vma->end : end;
		lr = img_array_push((void **)&st->lazy, &st->nr_lazy, &st->cap_lazy, sizeof(*lr));
		if (!lr)
			return -ENOMEM;
		lr->vaddr = cur;
		lr->len = seg_end - cur;
		lr->pages_off =
		    pe->flags & IMG_PE_PRESENT ? pe->pages_off + (cur - pe->vaddr) : IMG_NO_OFFSET;
		lr->src = pe->src;
		st->lazy_bytes += lr->len;
		cur = seg_end;
		i++;
	}
	return 0;
}

/* Decodes, normalizes and checks one PagemapEntry record; appends it. */
static int img_pagemap_add_entry(struct img_pagemap_state *st, const struct img_task *task,
				 const uint8_t *rec, size_t rec_len, size_t rec_off,
				 const char *name)
{
	Criuimg__PagemapEntry *pme = criuimg__pagemap_entry__unpack(NULL, rec_len, rec);
	struct img_pagemap_entry e = {0}, *slot;
	uint64_t prev_end = 0, end;
	int ret;

	if (!pme) {
		log_err("%s: offset %zu: cannot decode PagemapEntry (%zu bytes)", name, rec_off,
			rec_len);
		return -EBADMSG;
	}
	e.vaddr = pme->vaddr;
	if (pme->has_nr_pages) {
		/* 4.2 leaves the old field at 0; anything else must agree. */
		if (pme->has_compat_nr_pages && pme->compat_nr_pages &&
		    pme->compat_nr_pages != pme->nr_pages) {
			log_err("%s: offset %zu: entry 0x%" PRIx64
				": page counts disagree (%" PRIu32 " in field 2, %" PRIu64
				" in field 5)",
				name, rec_off, e.vaddr, pme->compat_nr_pages, pme->nr_pages);
			ret = -EBADMSG;
			goto out;
		}
		e.nr_pages = pme->nr_pages;
		st->v42 = true;
	} else if (pme->has_compat_nr_pages) {
		e.nr_pages = pme->compat_nr_pages;
	} else {
		log_err("%s: offset %zu: entry 0x%" PRIx64 " has no page count", name, rec_off,
			e.vaddr);
		ret = -EBADMSG;
		goto out;
	}
	/* Images older than the flags field mark holes with in_parent only. */
	e.flags = pme->has_flags ? pme->flags : 0;
	if (pme->has_in_parent && pme->in_parent)
		e.flags |= IMG_PE_PARENT;
	else if (!pme->has_flags)
		e.flags = IMG_PE_PRESENT;
	if (e.flags == 0 || (e.flags & ~IMG_PE_ALL) ||
	    (e.flags & (IMG_PE_PARENT | IMG_PE_PRESENT)) == (IMG_PE_PARENT | IMG_PE_PRESENT)) {
		log_err("%s: offset %zu: entry 0x%" PRIx64 ": invalid flags 0x%" PRIx32, name,
			rec_off, e.vaddr, e.flags);
		ret = -EBADMSG;
		goto out;
	}
	if (e.vaddr % IMG_PAGE_SIZE) {
		log_err("%s: offset %zu: entry address 0x%" PRIx64 " is not page aligned", name,
			rec_off, e.vaddr);
		ret = -EBADMSG;
		goto out;
	}
	if (e.nr_pages == 0) {
		log_err("%s: offset %zu: entry 0x%" PRIx64 " has 0 pages", name, rec_off, e.vaddr);
		ret = -EBADMSG;
		goto out;
	}
	if (e.nr_pages > (UINT64_MAX - e.vaddr) / IMG_PAGE_SIZE) {
		log_err("%s: offset %zu: entry 0x%" PRIx64 "+%" PRIu64
			" pages runs past the end of the address space",
			name, rec_off, e.vaddr, e.nr_pages);
		ret = -ERANGE;
		goto out;
	}
	end = e.vaddr + e.nr_pages * IMG_PAGE_SIZE;
	if (st->nr_entries) {
		const struct img_pagemap_entry *prev = &st->entries[st->nr_entries - 1];

		prev_end = prev->vaddr + prev->nr_pages * IMG_PAGE_SIZE;
	}
	/* Offsets in the pages file are only defined for entries in address order. */
	if (st->nr_entries && e.vaddr < prev_end) {
		log_err("%s: offset %zu: entry 0x%" PRIx64
			" is out of order: the previous one ends at 0x%" PRIx64,
			name, rec_off, e.vaddr, prev_end);
		ret = -EBADMSG;
		goto out;
	}
	/*
	 * Entries are disjoint and inside [0, 2^64), so the running offset
	 * cannot wrap.
	 */
	if (e.flags & IMG_PE_PRESENT) {
		e.pages_off = st->pages_off;
		st->pages_off += e.nr_pages * IMG_PAGE_SIZE;
	} else {
		e.pages_off = IMG_NO_OFFSET;
	}
	if ((e.flags & IMG_PE_LAZY) && !st->no_lazy) {
		ret = img_pagemap_add_lazy(st, task, &e, end, name, rec_off);
		if (ret < 0)
			goto out;
	}
	slot =
	    img_array_push((void **)&st->entries, &st->nr_entries, &st->cap_entries, sizeof(*slot));
	if (!slot) {
		ret = -ENOMEM;
		goto out;
	}
	*slot = e;
	ret = 0;
out:
	criuimg__pagemap_entry__free_unpacked(pme, NULL);
	return ret;
}

static int img_parse_pagemap(const void *buf, size_t len, const char *name, uint32_t img_version,
			     bool lazy, struct img_task *task, bool *v42)
{
	struct img_pagemap_state st = {.no_lazy = !lazy};
	Criuimg__PagemapHead *head = NULL;
	uint32_t pages_id = 0;
	struct img_cursor c;
	const uint8_t *rec;
	size_t rec_len, rec_off;
	int ret;

	ret = img_check_version(name, img_version);
	if (ret < 0)
		goto out;
	img_cursor_init(&c, buf, len, name);
	ret = img_cursor_magic(&c, img_version == 2, IMG_MAGIC_PAGEMAP);
	if (ret < 0)
		goto out;
	ret = img_cursor_record_required(&c, "PagemapHead", &rec, &rec_len, &rec_off);
	if (ret < 0)
		goto out;
	head = criuimg__pagemap_head__unpack(NULL, rec_len, rec);
	if (!head) {
		log_err("%s: offset %zu: cannot decode PagemapHead (%zu bytes)", name, rec_off,
			rec_len);
		ret = -EBADMSG;
		goto out;
	}
	pages_id = head->pages_id;
	while ((ret = img_cursor_record(&c, &rec, &rec_len, &rec_off)) > 0) {
		ret = img_pagemap_add_entry(&st, task, rec, rec_len, rec_off, name);
		if (ret < 0)
			goto out;
	}
	if (ret < 0)
		goto out;
	task->pages_id = pages_id;
	task->entries = st.entries;
	task->nr_entries = st.nr_entries;
	task->lazy = st.lazy;
	task->nr_lazy = st.nr_lazy;
	task->lazy_bytes = st.lazy_bytes;
	task->pages_file_size = st.pages_off;
	st.entries = NULL;
	st.lazy = NULL;
	if (v42)
		*v42 = st.v42;
out:
	free(st.entries);
	free(st.lazy);
	if (head)
		criuimg__pagemap_head__free_unpacked(head, NULL);
	return ret;
}

int image_parse_pagemap_buf(const void *buf, size_t len, const char *name, uint32_t img_version,
			    struct img_task *task, bool *v42)
{
	return img_parse_pagemap(buf, len, name, img_version, true, task, v42);
}

void image_task_clear(struct img_task *task)
{
	int32_t pid = task->pid;

	free(task->vmas);
	free(task->entries);
	free(task->flat);
	free(task->lazy);
	*task = (struct img_task){.pid = pid};
}

/*
 * Reads a whole image file.  Returns 0 with a malloc()ed *buf, -ENOENT
 * without logging when the file does not exist (the caller knows whether
 * that is an error), or another negative errno.
 */
static int img_read_file(const char *path, void **buf, size_t *len)
{
	uint8_t *data = NULL;
	struct stat st;
	size_t got = 0;
	int fd, ret;

	/* A link is not followed: images are plain files in their directory. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		if (ret != -ENOENT)
			log_err("%s: open: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		log_err("%s: fstat: %s", path, strerror(-ret));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("%s: offset 0: not a regular file", path);
		ret = -EBADMSG;
		goto out;
	}
	if ((uint64_t)st.st_size > IMG_MAX_FILE) {
		log_err("%s: offset 0: file size %lld exceeds the %llu byte limit", path,
			(long long)st.st_size, (unsigned long long)IMG_MAX_FILE);
		ret = -ERANGE;
		goto out;
	}
	/* +1: malloc(0) may return NULL. */
	data = malloc((size_t)st.st_size + 1);
	if (!data) {
		ret = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			log_err("%s: offset %zu: read: %s", path, got, strerror(-ret));
			goto out;
		}
		/* A file that shrank under us is parsed as far as it goes. */
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*buf = data;
	*len = got;
	data = NULL;
	ret = 0;
out:
	free(data);
	close(fd);
	return ret;
}

/* Builds "<dir>/<name>" into buf. */
static int img_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len) {
		log_err("%s/%s: path too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int img_load_inventory(struct img_set *set)
{
	char path[PATH_MAX];
	void *buf = NULL;
	size_t len;
	int ret;

	ret = img_path(path, sizeof(path), set->dir, "inventory.img");
	if (ret < 0)
		return ret;
	ret = img_read_file(path, &buf, &len);
	if (ret == -ENOENT)
		log_err("%s: open: %s", path, strerror(ENOENT));
	if (ret < 0)
		return ret;
	ret = image_parse_inventory_buf(buf, len, path, &set->img_version);
	free(buf);
	return ret;
}

static int img_load_pstree(struct img_set *set)
{
	char path[PATH_MAX];
	int32_t *pids = NULL;
	size_t nr = 0;
	void *buf = NULL;
	size_t len;
	int ret;

	ret = img_path(path, sizeof(path), set->dir, "pstree.img");
	if (ret < 0)
		goto out;
	ret = img_read_file(path, &buf, &len);
	if (ret == -ENOENT)
		log_err("%s: open: %s", path, strerror(ENOENT));
	if (ret < 0)
		goto out;
	ret = image_parse_pstree_buf(buf, len, path, set->img_version, &pids, &nr);
	if (ret < 0)
		goto out;
	set->tasks = calloc(nr, sizeof(*set->tasks));
	if (!set->tasks) {
		ret = -ENOMEM;
		goto out;
	}
	set->nr_tasks = nr;
	for (size_t i = 0; i < nr; i++)
		set->tasks[i].pid = pids[i];
out:
	free(pids);
	free(buf);
	return ret;
}

static int img_check_pages_file(const struct img_set *set, const struct img_task *task)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	ret = image_pages_path(set, task, path, sizeof(path));
	if (ret < 0)
		return ret;
	if (lstat(path, &st) < 0) {
		ret = -errno;
		if (ret == -ENOENT && task->pages_file_size == 0)
			return 0;
		log_err("%s: lstat: %s (pagemap needs %" PRIu64 " bytes)", path, strerror(-ret),
			task->pages_file_size);
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("%s: offset 0: not a regular file", path);
		return -EBADMSG;
	}
	if ((uint64_t)st.st_size < task->pages_file_size) {
		log_err("%s: offset %lld: file ends there, but pagemap-%" PRId32
			".img needs %" PRIu64 " bytes",
			path, (long long)st.st_size, task->pid, task->pages_file_size);
		return -EBADMSG;
	}
	return 0;
}

static int img_load_task(struct img_set *set, struct img_task *task)
{
	char mm_path[PATH_MAX], pm_path[PATH_MAX], name[64];
	void *mm_buf = NULL, *pm_buf = NULL;
	size_t mm_len = 0, pm_len = 0;
	bool v42 = false;
	int mm_ret, pm_ret, ret;

	snprintf(name, sizeof(name), "mm-%" PRId32 ".img", task->pid);
	ret = img_path(mm_path, sizeof(mm_path), set->dir, name);
	if (ret < 0)
		goto out;
	snprintf(name, sizeof(name), "pagemap-%" PRId32 ".img", task->pid);
	ret = img_path(pm_path, sizeof(pm_path), set->dir, name);
	if (ret < 0)
		goto out;
	mm_ret = img_read_file(mm_path, &mm_buf, &mm_len);
	pm_ret = img_read_file(pm_path, &pm_buf, &pm_len);
	if (mm_ret == -ENOENT && pm_ret == -ENOENT) {
		/*
		 * Zombies have no memory; restore announces them with -pid.  Said
		 * at info: a live task read so has no lazy page either.
		 */
		log_info("%s: task %" PRId32 " has no mm or pagemap image: no memory", set->dir,
			 task->pid);
		ret = 0;
		goto out;
	}
	if (mm_ret == -ENOENT || pm_ret == -ENOENT) {
		log_err("%s: open: %s, but %s exists", mm_ret == -ENOENT ? mm_path : pm_path,
			strerror(ENOENT), mm_ret == -ENOENT ? pm_path : mm_path);
		ret = -ENOENT;
		goto out;
	}
	ret = mm_ret < 0 ? mm_ret : pm_ret;
	if (ret < 0)
		goto out;
	ret = image_parse_mm_buf(mm_buf, mm_len, mm_path, set->img_version, task);
	if (ret < 0)
		goto out;
	ret = img_parse_pagemap(pm_buf, pm_len, pm_path, set->img_version, true, task, &v42);
	if (ret < 0)
		goto out;
	task->has_memory = true;
	ret = img_check_pages_file(set, task);
	if (ret < 0)
		goto out;
	set->pagemap_v42 |= v42;
out:
	free(mm_buf);
	free(pm_buf);
	return ret;
}

/* ---- parent chains (criu dump --prev-images-dir) ---- */

/*
 * One task of a pre-dump round: criu pre-dump writes only pagemap-<pid>.img
 * and the pages file (no mm, no pstree), and its runs are only resolved
 * into, so no lazy set is cut (it has no VMAs to cut along).  A task the
 * round does not have has no memory there.
 */
static int img_load_round_task(struct img_set *set, struct img_task *task)
{
	char path[PATH_MAX], name[64];
	void *buf = NULL;
	size_t len = 0;
	int ret;

	snprintf(name, sizeof(name), "pagemap-%" PRId32 ".img", task->pid);
	ret = img_path(path, sizeof(path), set->dir, name);
	if (ret == 0)
		ret = img_read_file(path, &buf, &len);
	if (ret == -ENOENT)
		return 0;
	if (ret == 0)
		ret = img_parse_pagemap(buf, len, path, set->img_version, false, task, NULL);
	free(buf);
	if (ret < 0)
		return ret;
	task->has_memory = true;
	return img_check_pages_file(set, task);
}

/*
 * A pre-dump round below child: its inventory, when there, says its
 * format unless criu left img_version out (pre-dump does); its tasks are
 * child's.
 */
static int img_load_round(struct img_set *set, const struct img_set *child)
{
	char path[PATH_MAX];
	void *buf = NULL;
	size_t len = 0;
	uint32_t ver = 0;
	int ret;

	ret = img_path(path, sizeof(path), set->dir, "inventory.img");
	if (ret == 0)
		ret = img_read_file(path, &buf, &len);
	if (ret == 0)
		ret = img_parse_inventory(buf, len, path, true, &ver);
	free(buf);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	set->img_version = ver ? ver : child->img_version;
	set->tasks = calloc(child->nr_tasks ? child->nr_tasks : 1, sizeof(*set->tasks));
	if (!set->tasks)
		return -ENOMEM;
	set->nr_tasks = child->nr_tasks;
	for (size_t i = 0; i < set->nr_tasks; i++) {
		set->tasks[i].pid = child->tasks[i].pid;
		ret = img_load_round_task(set, &set->tasks[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/*
 * Joins the link text target to rel (the linking set's directory relative
 * to the chain's root, "" for the root) and normalizes the result
 * lexically into out: "." dropped, ".." taking back one component.
 * Leaving the root, an absolute target or an empty result is -EXDEV.
 */
static int img_chain_join(const char *rel, const char *target, char *out, size_t len)
{
	char buf[PATH_MAX], *save = NULL, *comp;
	size_t n = 0;
	int w;

	if (target[0] == '/' || target[0] == '\0')
		return -EXDEV;
	w = snprintf(buf, sizeof(buf), "%s/%s", rel, target);
	if (w < 0 || (size_t)w >= sizeof(buf))
		return -ENAMETOOLONG;
	out[0] = '\0';
	for (comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		if (strcmp(comp, ".") == 0)
			continue;
		if (strcmp(comp, "..") == 0) {
			char *slash;

			if (n == 0)
				return -EXDEV;
			slash = strrchr(out, '/');
			n = slash ? (size_t)(slash - out) : 0;
			out[n] = '\0';
			continue;
		}
		w = snprintf(out + n, len - n, "%s%s", n ? "/" : "", comp);
		if (w < 0 || (size_t)w >= len - n)
			return -ENAMETOOLONG;
		n += (size_t)w;
	}
	return n ? 0 : -EXDEV;
}

/*
 * The parent of the set in dir (rel below root), as a path below root in
 * prel; 0 when there is one, 1 when dir has no `parent` link.
 */
static int img_chain_parent(const char *root, const char *dir, const char *rel, char *prel,
			    size_t len)
{
	char link[PATH_MAX], target[PATH_MAX];
	struct stat st;
	ssize_t n;
	int ret, rootfd = -1, fd;

	ret = img_path(link, sizeof(link), dir, "parent");
	if (ret < 0)
		return ret;
	if (lstat(link, &st) < 0) {
		if (errno == ENOENT)
			return 1;
		ret = -errno;
		log_err("%s: lstat: %s", link, strerror(-ret));
		return ret;
	}
	if (!S_ISLNK(st.st_mode)) {
		log_err("%s: not the symbolic link criu --prev-images-dir writes", link);
		return -EBADMSG;
	}
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		ret = -errno;
		log_err("%s: readlink: %s", link, strerror(-ret));
		return ret;
	}
	target[n] = '\0';
	ret = img_chain_join(rel, target, prel, len);
	if (ret < 0) {
		log_err("%s -> %s: the parent images must be a relative path beneath %s: %s", link,
			target, root, strerror(-ret));
		return ret;
	}
	/* No link on the way either: the chain never leaves the root. */
	rootfd = safepath_open_dir(root);
	if (rootfd < 0) {
		log_err("%s: open: %s", root, safepath_strerror(rootfd));
		return rootfd;
	}
	fd = safepath_openat(rootfd, prel, O_RDONLY | O_DIRECTORY, 0);
	close(rootfd);
	if (fd < 0) {
		log_err("%s -> %s: cannot open %s/%s as the parent images: %s", link, target, root,
			prel, safepath_strerror(fd));
		return fd;
	}
	close(fd);
	return 0;
}

const struct img_pagemap_entry *image_task_resolved(const struct img_task *t, size_t *nr)
{
	*nr = t->flat ? t->nr_flat : t->nr_entries;
	return t->flat ? t->flat : t->entries;
}

/* Index of the first entry of e[0..n) that ends after addr, or n. */
static size_t img_entry_first_ending_after(const struct img_pagemap_entry *e, size_t n,
					   uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (e[mid].vaddr + e[mid].nr_pages * IMG_PAGE_SIZE <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct img_flat_state {
	struct img_pagemap_entry *e;
	size_t nr, cap;
};

/*
 * Appends [vaddr, end) with flags and data at (src, off), PE_LAZY kept
 * only inside the VMAs the restorer registers with userfaultfd: a page the
 * restorer fills itself must reach the destination with the images.
 */
static int img_flat_push(struct img_flat_state *fs, const struct img_task *t, bool vma_check,
			 uint64_t vaddr, uint64_t end, uint32_t flags, uint32_t src, uint64_t off)
{
	size_t i = img_vma_first_ending_after(t, vaddr);
	uint64_t cur = vaddr;

	while (cur < end) {
		const struct img_vma *vma = i < t->nr_vmas ? &t->vmas[i] : NULL;
		uint64_t seg_end = end;
		uint32_t f = flags;
		struct img_pagemap_entry *slot;

		if (!vma_check) {
			/* A round has no VMAs: its flags stand until the dump resolves it. */
			vma = NULL;
		} else if (vma && vma->start > cur) {
			seg_end = vma->start < end ? vma->start : end;
			vma = NULL;
		} else if (vma) {
			seg_end = vma->end < end ? vma->end : end;
			i++;
		}
		if (vma_check && (!vma || !image_vma_can_be_lazy(vma)))
			f &= ~IMG_PE_LAZY;
		slot = img_array_push((void **)&fs->e, &fs->nr, &fs->cap, sizeof(*slot));
		if (!slot)
			return -ENOMEM;
		*slot = (struct img_pagemap_entry){
		    .vaddr = cur,
		    .nr_pages = (seg_end - cur) / IMG_PAGE_SIZE,
		    .flags = f,
		    .pages_off = off == IMG_NO_OFFSET ? IMG_NO_OFFSET : off + (cur - vaddr),
		    .src = src,
		};
		cur = seg_end;
	}
	return 0;
}

/* Resolves one PE_PARENT run of task t (of set) against its parent's task pt. */
static int img_flat_parent_run(struct img_flat_state *fs, const struct img_set *set,
			       const struct img_task *t, const struct img_task *pt,
			       const struct img_pagemap_entry *e)
{
	uint64_t end = e->vaddr + e->nr_pages * IMG_PAGE_SIZE, cur = e->vaddr;
	const struct img_pagemap_entry *pe;
	size_t n, i;
	int ret;

	pe = pt ? image_task_resolved(pt, &n) : NULL;
	i = pe ? img_entry_first_ending_after(pe, n, cur) : 0;
	while (cur < end) {
		const struct img_pagemap_entry *q = pe && i < n ? &pe[i] : NULL;
		uint64_t q_end, seg_end;

		if (!q || q->vaddr > cur) {
			log_err("%s: task %" PRId32 ": page 0x%" PRIx64
				" is in the parent images, which do not have it",
				set->dir, t->pid, cur);
			return -EBADMSG;
		}
		if (!(q->flags & IMG_PE_PRESENT)) {
			log_err("%s: task %" PRId32 ": page 0x%" PRIx64
				" is in the parent images %s, which hold no data for it (flags "
				"0x%" PRIx32 ")",
				set->dir, t->pid, cur, set->parent->dir, q->flags);
			return -EBADMSG;
		}
		q_end = q->vaddr + q->nr_pages * IMG_PAGE_SIZE;
		seg_end = q_end < end ? q_end : end;
		ret = img_flat_push(fs, t, set->depth == 0, cur, seg_end,
				    (q->flags | e->flags) & (IMG_PE_LAZY | IMG_PE_PRESENT),
				    q->src + 1, q->pages_off + (cur - q->vaddr));
		if (ret < 0)
			return ret;
		cur = seg_end;
		i++;
	}
	return 0;
}

/*
 * Makes fs's entries t's flat ones (fs keeps nothing) and, with lazy, t's
 * lazy set the PE_LAZY runs among them; without, t has none.
 */
static int img_task_take_flat(const struct img_set *set, struct img_task *t,
			      struct img_flat_state *fs, bool lazy)
{
	struct img_pagemap_state st = {0};
	int ret = 0;

	for (size_t i = 0; lazy && i < fs->nr && ret == 0; i++)
		if (fs->e[i].flags & IMG_PE_LAZY)
			ret = img_pagemap_add_lazy(
			    &st, t, &fs->e[i], fs->e[i].vaddr + fs->e[i].nr_pages * IMG_PAGE_SIZE,
			    set->dir, 0);
	if (ret < 0) {
		free(st.lazy);
		return ret;
	}
	free(t->flat);
	free(t->lazy);
	t->flat = fs->e;
	t->nr_flat = fs->nr;
	t->lazy = st.lazy;
	t->nr_lazy = st.nr_lazy;
	t->lazy_bytes = st.lazy_bytes;
	fs->e = NULL;
	fs->nr = fs->cap = 0;
	return 0;
}

/* Fills t->flat and derives t's lazy set from it. */
static int img_flat_task(const struct img_set *set, struct img_task *t)
{
	struct img_flat_state fs = {0};
	const struct img_task *pt = image_set_task(set->parent, t->pid);
	int ret = 0;

	if (pt && !pt->has_memory)
		pt = NULL;
	for (size_t i = 0; i < t->nr_entries && ret == 0; i++) {
		const struct img_pagemap_entry *e = &t->entries[i];
		struct img_pagemap_entry *slot;

		if (e->flags & IMG_PE_PARENT) {
			ret = img_flat_parent_run(&fs, set, t, pt, e);
			continue;
		}
		slot = img_array_push((void **)&fs.e, &fs.nr, &fs.cap, sizeof(*slot));
		if (!slot)
			ret = -ENOMEM;
		else
			*slot = *e;
	}
	/* Only the dump's lazy set is served: a round's is resolved into. */
	if (ret == 0)
		ret = img_task_take_flat(set, t, &fs, set->depth == 0);
	free(fs.e);
	return ret;
}

/* Opens the set in root/rel (rel "" for root itself) and, below it, its chain. */
static int img_set_open_chain(const char *root, const char *rel, const struct img_set *child,
			      struct img_set **out)
{
	char dir[PATH_MAX], prel[PATH_MAX];
	struct img_set *set;
	int ret;

	if (rel[0])
		ret = snprintf(dir, sizeof(dir), "%s/%s", root, rel) < (int)sizeof(dir)
			  ? 0
			  : -ENAMETOOLONG;
	else
		ret = snprintf(dir, sizeof(dir), "%s", root) < (int)sizeof(dir) ? 0 : -ENAMETOOLONG;
	if (ret < 0)
		return ret;
	set = calloc(1, sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->depth = child ? child->depth + 1 : 0;
	set->dir = strdup(dir);
	if (!set->dir) {
		ret = -ENOMEM;
		goto out;
	}
	if (child) {
		ret = img_load_round(set, child);
		if (ret < 0)
			goto out;
	} else {
		ret = img_load_inventory(set);
		if (ret < 0)
			goto out;
		ret = img_load_pstree(set);
		if (ret < 0)
			goto out;
		for (size_t i = 0; i < set->nr_tasks; i++) {
			ret = img_load_task(set, &set->tasks[i]);
			if (ret < 0)
				goto out;
		}
	}
	ret = img_chain_parent(root, dir, rel, prel, sizeof(prel));
	if (ret < 0)
		goto out;
	if (ret == 0) {
		if (set->depth + 1 >= IMG_CHAIN_MAX) {
			log_err("%s: more than %d images in the parent chain", root, IMG_CHAIN_MAX);
			ret = -ELOOP;
			goto out;
		}
		ret = img_set_open_chain(root, prel, set, &set->parent);
		if (ret < 0)
			goto out;
		for (size_t i = 0; i < set->nr_tasks; i++) {
			if (!set->tasks[i].has_memory)
				continue;
			ret = img_flat_task(set, &set->tasks[i]);
			if (ret < 0)
				goto out;
		}
	}
	ret = 0;
	for (size_t i = 0; i < set->nr_tasks; i++) {
		const struct img_task *t = &set->tasks[i];

		log_debug("%s: task %" PRId32 ": %zu VMAs, %zu pagemap entries, %zu lazy ranges, "
			  "%" PRIu64 " lazy bytes",
			  dir, t->pid, t->nr_vmas, t->nr_entries, t->nr_lazy, t->lazy_bytes);
	}
	*out = set;
	set = NULL;
out:
	image_set_free(set);
	return ret;
}

int image_set_open(const char *dir, struct img_set **out)
{
	return img_set_open_chain(dir, "", NULL, out);
}

const struct img_set *image_set_at(const struct img_set *set, uint32_t depth)
{
	while (set && depth--)
		set = set->parent;
	return set;
}

int image_range_pages_path(const struct img_set *set, const struct img_task *task,
			   const struct img_lazy_range *lr, char *buf, size_t len)
{
	const struct img_set *s = image_set_at(set, lr->src);
	const struct img_task *t = s ? image_set_task(s, task->pid) : NULL;

	if (!t)
		return -EINVAL;
	return image_pages_path(s, t, buf, len);
}

/* Pages of [vaddr, end) that lie in VMAs of t the restorer registers with userfaultfd. */
static uint64_t img_lazyable_pages(const struct img_task *t, uint64_t vaddr, uint64_t end)
{
	uint64_t n = 0;

	for (size_t i = img_vma_first_ending_after(t, vaddr);
	     i < t->nr_vmas && t->vmas[i].start < end; i++) {
		uint64_t s = t->vmas[i].start > vaddr ? t->vmas[i].start : vaddr;
		uint64_t e = t->vmas[i].end < end ? t->vmas[i].end : end;

		if (image_vma_can_be_lazy(&t->vmas[i]))
			n += (e - s) / IMG_PAGE_SIZE;
	}
	return n;
}

/*
 * For each images set src down the chain, whether criu marked none of
 * the pages t resolves into it lazy while some lie in memory it serves
 * lazily (misfired[src]); returns how many such pages there are in all.
 */
static uint64_t img_task_misfired(const struct img_task *t, bool misfired[IMG_CHAIN_MAX])
{
	uint64_t unlazy[IMG_CHAIN_MAX] = {0}, n = 0;
	bool lazy[IMG_CHAIN_MAX] = {0};
	const struct img_pagemap_entry *e;
	size_t nr;

	e = image_task_resolved(t, &nr);
	for (size_t i = 0; i < nr; i++) {
		if (e[i].src >= IMG_CHAIN_MAX)
			continue;
		if (e[i].flags & IMG_PE_LAZY)
			lazy[e[i].src] = true;
		else if (e[i].flags & IMG_PE_PRESENT)
			unlazy[e[i].src] += img_lazyable_pages(
			    t, e[i].vaddr, e[i].vaddr + e[i].nr_pages * IMG_PAGE_SIZE);
	}
	for (size_t d = 0; d < IMG_CHAIN_MAX; d++) {
		misfired[d] = unlazy[d] && !lazy[d];
		if (misfired[d])
			n += unlazy[d];
	}
	return n;
}

uint64_t image_task_unlazy_pages(const struct img_task *t)
{
	bool misfired[IMG_CHAIN_MAX];

	return img_task_misfired(t, misfired);
}

/* image_set_relazy() for one task of the top set. */
static int img_relazy_task(const struct img_set *set, struct img_task *t, uint64_t *pages)
{
	struct img_flat_state fs = {0};
	const struct img_pagemap_entry *e;
	bool misfired[IMG_CHAIN_MAX];
	uint64_t n = img_task_misfired(t, misfired);
	size_t nr;
	int ret = 0;

	if (n == 0)
		return 0;
	e = image_task_resolved(t, &nr);
	/* img_flat_push() drops PE_LAZY again outside the VMAs that can be lazy. */
	for (size_t i = 0; i < nr && ret == 0; i++) {
		uint32_t f = e[i].flags;

		if ((f & IMG_PE_PRESENT) && e[i].src < IMG_CHAIN_MAX && misfired[e[i].src])
			f |= IMG_PE_LAZY;
		ret = img_flat_push(&fs, t, true, e[i].vaddr,
				    e[i].vaddr + e[i].nr_pages * IMG_PAGE_SIZE, f, e[i].src,
				    e[i].pages_off);
	}
	if (ret == 0)
		ret = img_task_take_flat(set, t, &fs, true);
	if (ret < 0)
		goto out;
	*pages += n;
	log_warn("%s: task %" PRId32 ": criu marked none of the %" PRIu64
		 " pages it could serve lazily as lazy (as it does when it stops a thread with its "
		 "stack pointer on a page boundary); they are served lazily, as criu marks them in "
		 "any other dump",
		 set->dir, t->pid, n);
out:
	free(fs.e);
	return ret;
}

int image_set_relazy(struct img_set *set, uint64_t *pages)
{
	int ret;

	*pages = 0;
	for (size_t i = 0; i < set->nr_tasks; i++) {
		if (!set->tasks[i].has_memory)
			continue;
		ret = img_relazy_task(set, &set->tasks[i], pages);
		if (ret < 0)
			return ret;
	}
	if (*pages)
		set->relazied = true;
	return 0;
}

int image_set_cut_lazy(struct img_set *set, uint64_t unit)
{
	struct img_lazy_range *cut;
	size_t i, j, n, k;
	uint64_t off, len;

	if (unit == 0 || unit % IMG_PAGE_SIZE)
		return -EINVAL;
	for (i = 0; i < set->nr_tasks; i++) {
		struct img_task *t = &set->tasks[i];

		for (j = 0, n = 0; j < t->nr_lazy; j++)
			n += (t->lazy[j].len + unit - 1) / unit;
		if (n == t->nr_lazy)
			continue;
		cut = calloc(n, sizeof(*cut));
		if (!cut)
			return -ENOMEM;
		for (j = 0, k = 0; j < t->nr_lazy; j++) {
			for (off = 0; off < t->lazy[j].len; off += len) {
				len = t->lazy[j].len - off < unit ? t->lazy[j].len - off : unit;
				cut[k].vaddr = t->lazy[j].vaddr + off;
				cut[k].len = len;
				cut[k].pages_off = t->lazy[j].pages_off == IMG_NO_OFFSET
						       ? IMG_NO_OFFSET
						       : t->lazy[j].pages_off + off;
				k++;
			}
		}
		free(t->lazy);
		t->lazy = cut;
		t->nr_lazy = n;
	}
	return 0;
}

void image_set_free(struct img_set *set)
{
	if (!set)
		return;
	image_set_free(set->parent);
	for (size_t i = 0; i < set->nr_tasks; i++)
		image_task_clear(&set->tasks[i]);
	free(set->tasks);
	free(set->dir);
	free(set);
}

struct img_task *image_set_task(const struct img_set *set, int32_t pid)
{
	for (size_t i = 0; i < set->nr_tasks; i++) {
		if (set->tasks[i].pid == pid)
			return &set->tasks[i];
	}
	return NULL;
}

int image_pages_path(const struct img_set *set, const struct img_task *task, char *buf, size_t len)
{
	int n;

	if (!task->has_memory)
		return -EINVAL;
	n = snprintf(buf, len, "%s/pages-%" PRIu32 ".img", set->dir, task->pages_id);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}
