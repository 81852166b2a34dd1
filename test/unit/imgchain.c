// SPDX-License-Identifier: GPL-2.0-or-later
#include "imgchain.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "imgwrite.h"
#include "pattern.h"

#define ANON_PRIV (MAP_PRIVATE | MAP_ANONYMOUS)
#define RW	  (PROT_READ | PROT_WRITE)
#define P	  IMG_PAGE_SIZE
#define PE_LP	  (IMG_PE_LAZY | IMG_PE_PRESENT)

/*
 * A hand-built pre-copy chain below root: round-1 (a full pre-dump, seed
 * 1), round-2 (parent ../round-1, seed 2) and the final dump in root
 * itself (parent round-2, seed 3).  VMA 0x10000-0x30000 can be lazy;
 * 0x40000-0x42000 (shared) cannot.
 */
static const struct img_vma chain_vmas[] = {
    {.start = 0x10000, .end = 0x30000, .prot = RW, .flags = ANON_PRIV},
    {.start = 0x40000, .end = 0x42000, .prot = RW, .flags = MAP_SHARED | MAP_ANONYMOUS},
};
static const struct img_pagemap_entry chain_r1[] = {
    {.vaddr = 0x10000, .nr_pages = 32, .flags = PE_LP},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};
static const struct img_pagemap_entry chain_r2[] = {
    {.vaddr = 0x10000, .nr_pages = 8, .flags = IMG_PE_PARENT},
    {.vaddr = 0x18000, .nr_pages = 4, .flags = PE_LP},
    {.vaddr = 0x1c000, .nr_pages = 20, .flags = IMG_PE_PARENT},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PARENT},
};
static const struct img_pagemap_entry chain_final[] = {
    {.vaddr = 0x10000, .nr_pages = 2, .flags = PE_LP},
    {.vaddr = 0x12000, .nr_pages = 30, .flags = IMG_PE_PARENT},
    {.vaddr = 0x40000, .nr_pages = 1, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x41000, .nr_pages = 1, .flags = IMG_PE_PARENT},
};
/* What the final set resolves to: src 0 is the final dump, 2 is round-1. */
const struct img_pagemap_entry imgchain_flat[IMGCHAIN_NR_FLAT] = {
    {.vaddr = 0x10000, .nr_pages = 2, .flags = PE_LP, .pages_off = 0, .src = 0},
    {.vaddr = 0x12000, .nr_pages = 6, .flags = PE_LP, .pages_off = 2 * P, .src = 2},
    {.vaddr = 0x18000, .nr_pages = 4, .flags = PE_LP, .pages_off = 0, .src = 1},
    {.vaddr = 0x1c000, .nr_pages = 20, .flags = PE_LP, .pages_off = 12 * P, .src = 2},
    {.vaddr = 0x40000, .nr_pages = 1, .flags = IMG_PE_PRESENT, .pages_off = 2 * P, .src = 0},
    {.vaddr = 0x41000, .nr_pages = 1, .flags = IMG_PE_PRESENT, .pages_off = 33 * P, .src = 2},
};

static int fill_seed(void *opaque, int32_t pid, uint64_t vaddr, void *page)
{
	pattern_fill(page, vaddr, *(const uint32_t *)opaque);
	return 0;
}

void imgchain_write(const char *dir, const struct img_pagemap_entry *e, size_t n, uint32_t *seed,
		    const char *parent)
{
	struct imgwrite_task t = {
	    .pid = IMGCHAIN_PID,
	    .pages_id = 1,
	    .vmas = chain_vmas,
	    .nr_vmas = 2,
	    .entries = e,
	    .nr_entries = n,
	    .fill = fill_seed,
	    .opaque = seed,
	};
	char link[PATH_MAX + 16];

	assert_int_equal(imgwrite_dir(dir, NULL, &t, 1), 0);
	if (parent) {
		snprintf(link, sizeof(link), "%s/parent", dir);
		unlink(link);
		assert_int_equal(symlink(parent, link), 0);
	}
}

uint32_t imgchain_seeds[3] = {3, 2, 1};

void imgchain_as_round(const char *dir)
{
	struct imgwrite_buf b = {0};
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/pstree.img", dir);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/mm-%d.img", dir, IMGCHAIN_PID);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(imgwrite_inventory_buf(&b, 0), 0);
	assert_int_equal(imgwrite_file(dir, "inventory.img", &b), 0);
	imgwrite_buf_free(&b);
}

void imgchain_build(const char *root)
{
	char d[PATH_MAX];

	snprintf(d, sizeof(d), "%s/round-1", root);
	imgchain_write(d, chain_r1, 2, &imgchain_seeds[2], NULL);
	imgchain_as_round(d);
	snprintf(d, sizeof(d), "%s/round-2", root);
	imgchain_write(d, chain_r2, 4, &imgchain_seeds[1], "../round-1");
	imgchain_as_round(d);
	imgchain_write(root, chain_final, 4, &imgchain_seeds[0], "round-2");
}

void imgchain_rm(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}
