// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the CRIU image parsers (common/image.c).
 *
 * Input: one selector byte, then the bytes of an image file.  Selector bits
 * 0-2 pick the parser (0 inventory, 1 pstree, 2 mm, 3 pagemap against a
 * fixed VMA table, 4-7 mm and pagemap together: a u32 LE mm length, the mm
 * file, then the pagemap file); bit 3 set means img_version 1 (no common
 * magic), clear means 2.
 *
 * Besides crashes, it aborts on any successful parse whose result breaks
 * the guarantees image.h makes to its users.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Adjacent, separate and high VMAs, covering the corpus' addresses. */
static const struct img_vma fuzz_vmas[] = {
	{.start = 0x1000, .end = 0x20000},
	{.start = 0x20000, .end = 0x28000},
	{.start = 0x40000, .end = 0x50000},
	{.start = 0x7e0000000000, .end = 0x7e0000100000},
	{.start = 0x7e0000100000, .end = 0x7e0001000000},
	{.start = 0x7f0000000000, .end = 0x7f0000003000},
	{.start = 0x7f0000003000, .end = 0x7f0000005000},
	{.start = 0x7f0000010000, .end = 0x7f0000014000},
};

static void fuzz_check(bool cond)
{
	if (!cond)
		abort();
}

static void fuzz_check_vmas(const struct img_task *t)
{
	for (size_t i = 0; i < t->nr_vmas; i++) {
		const struct img_vma *v = &t->vmas[i];

		fuzz_check(v->start < v->end);
		fuzz_check(v->start % IMG_PAGE_SIZE == 0 && v->end % IMG_PAGE_SIZE == 0);
		fuzz_check(!(v->status & IMG_VMA_AREA_GUARD));
		fuzz_check(i == 0 || t->vmas[i - 1].end <= v->start);
	}
}

/* Is [start, start + len) inside one VMA? */
static bool fuzz_in_one_vma(const struct img_task *t, uint64_t start, uint64_t len)
{
	for (size_t i = 0; i < t->nr_vmas; i++) {
		if (t->vmas[i].start <= start && len <= t->vmas[i].end - start)
			return true;
	}
	return false;
}

static void fuzz_check_pagemap(const struct img_task *t)
{
	uint64_t off = 0, lazy = 0, prev_end = 0;

	for (size_t i = 0; i < t->nr_entries; i++) {
		const struct img_pagemap_entry *e = &t->entries[i];

		fuzz_check(e->vaddr % IMG_PAGE_SIZE == 0 && e->nr_pages > 0);
		fuzz_check(e->nr_pages <= (UINT64_MAX - e->vaddr) / IMG_PAGE_SIZE);
		fuzz_check(i == 0 || e->vaddr >= prev_end);
		prev_end = e->vaddr + e->nr_pages * IMG_PAGE_SIZE;
		if (e->flags & IMG_PE_PRESENT) {
			fuzz_check(e->pages_off == off);
			off += e->nr_pages * IMG_PAGE_SIZE;
		} else {
			fuzz_check(e->pages_off == IMG_NO_OFFSET);
		}
	}
	fuzz_check(off == t->pages_file_size);
	for (size_t i = 0; i < t->nr_lazy; i++) {
		const struct img_lazy_range *lr = &t->lazy[i];

		fuzz_check(lr->len > 0 && lr->len % IMG_PAGE_SIZE == 0);
		fuzz_check(fuzz_in_one_vma(t, lr->vaddr, lr->len));
		fuzz_check(i == 0 || t->lazy[i - 1].vaddr + t->lazy[i - 1].len <= lr->vaddr);
		fuzz_check(lr->pages_off == IMG_NO_OFFSET ||
			   (lr->pages_off <= t->pages_file_size &&
			    lr->len <= t->pages_file_size - lr->pages_off));
		lazy += lr->len;
	}
	fuzz_check(lazy == t->lazy_bytes);
}

static void fuzz_pagemap(const uint8_t *buf, size_t len, uint32_t version, struct img_task *t)
{
	bool v42 = false;

	if (image_parse_pagemap_buf(buf, len, "pagemap", version, t, &v42) == 0)
		fuzz_check_pagemap(t);
	else
		fuzz_check(!t->entries && !t->lazy && t->nr_entries == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_task t = {.pid = 1};
	uint32_t version, mm_len;
	const uint8_t *body;
	size_t len;

	if (size < 1)
		return 0;
	version = data[0] & 8 ? 1 : 2;
	body = data + 1;
	len = size - 1;
	switch (data[0] & 7) {
	case 0: {
		uint32_t v = 0;

		if (image_parse_inventory_buf(body, len, "inventory", &v) == 0)
			fuzz_check(v == 1 || v == 2);
		break;
	}
	case 1: {
		int32_t *pids = NULL;
		size_t nr = 0;

		if (image_parse_pstree_buf(body, len, "pstree", version, &pids, &nr) == 0) {
			fuzz_check(nr > 0);
			for (size_t i = 0; i < nr; i++)
				fuzz_check(pids[i] > 0 && pids[i] <= IMG_PID_MAX);
		}
		free(pids);
		break;
	}
	case 2:
		if (image_parse_mm_buf(body, len, "mm", version, &t) == 0)
			fuzz_check_vmas(&t);
		break;
	case 3:
		/* The parser only reads the VMAs; the cast does not lead to writes. */
		t.vmas = (struct img_vma *)fuzz_vmas;
		t.nr_vmas = sizeof(fuzz_vmas) / sizeof(fuzz_vmas[0]);
		fuzz_pagemap(body, len, version, &t);
		t.vmas = NULL;
		t.nr_vmas = 0;
		break;
	default:
		if (len < sizeof(mm_len))
			break;
		memcpy(&mm_len, body, sizeof(mm_len));
		body += sizeof(mm_len);
		len -= sizeof(mm_len);
		if (mm_len > len)
			break;
		if (image_parse_mm_buf(body, mm_len, "mm", version, &t) < 0)
			break;
		fuzz_check_vmas(&t);
		fuzz_pagemap(body + mm_len, len - mm_len, version, &t);
		break;
	}
	image_task_clear(&t);
	return 0;
}
