// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * imgmap_copy() and imgmap_file_xxh3(): a mapping whose file shrank is an
 * -EFAULT, not a SIGBUS.
 * A pre-copy chain: every lazy page served from the round holding it, and
 * the flat images for the destination.  A round's pages files mapped when
 * the round ended: matched to the final map's files, or superseded, and a
 * file changed or removed since its round is noticed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "imgchain.h"
#include "imgflat.h"
#include "imgwrite.h"
#include "pattern.h"
#include "source-agent/imgmap.h"

#define LEN (4 * 4096)

static void test_copy_truncated(void **state)
{
	char path[] = "/tmp/test_imgmap.XXXXXX", path2[] = "/tmp/test_imgmap.XXXXXX";
	uint8_t buf[LEN], data[LEN];
	struct imgmap_file f;
	uint64_t h = 0;
	uint8_t *map;
	int fd;

	memset(data, 0x5a, sizeof(data));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, sizeof(data)), LEN);
	map = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(map != MAP_FAILED);

	assert_int_equal(imgmap_copy(buf, map, LEN), 0);
	assert_memory_equal(buf, data, LEN);
	/* The file shrinks to one page: the rest of the mapping now faults. */
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(imgmap_copy(buf, map, 4096), 0);
	assert_int_equal(imgmap_copy(buf, map, LEN), -EFAULT);
	assert_int_equal(imgmap_copy(buf, map + 2 * 4096, 4096), -EFAULT);
	/* The guard is re-armed after a fault: the next copies work again. */
	assert_int_equal(imgmap_copy(buf, data, LEN), 0);
	assert_int_equal(imgmap_copy(buf, map + 100, 200), 0);
	munmap(map, LEN);
	close(fd);
	/*
	 * A round's file checksummed whole (what the destination verifies
	 * its copy by), under the same guard: here, since cmocka puts its own
	 * SIGBUS handler back after each test and the guard installs once.
	 */
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	fd = mkstemp(path2);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0600), 0);
	assert_int_equal(write(fd, data, sizeof(data)), LEN);
	assert_int_equal(imgmap_file_open(path2, &f), 0);
	assert_int_equal(imgmap_file_xxh3(&f, &h), 0);
	assert_true(h == XXH3_64bits(data, sizeof(data)));
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(imgmap_file_xxh3(&f, &h), -EFAULT);
	imgmap_file_close(&f);
	close(fd);
	unlink(path2);
}

/* Reads a whole file into a malloc()ed buffer. */
static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = malloc(1 << 20);

	assert_non_null(f);
	assert_non_null(buf);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

/*
 * Parses root's flat pagemap of t's task into ft (free its entries and
 * lazy set): it must give the destination t's lazy set, range for range,
 * each without data.
 */
static void parse_flat(const char *root, const struct img_task *t, struct img_task *ft)
{
	char path[PATH_MAX];
	size_t len;
	void *buf;

	snprintf(path, sizeof(path), "%s/%s/pagemap-%d.img", root, IMGFLAT_DIR, t->pid);
	buf = slurp(path, &len);
	ft->vmas = t->vmas;
	ft->nr_vmas = t->nr_vmas;
	assert_int_equal(image_parse_pagemap_buf(buf, len, path, 2, ft, NULL), 0);
	free(buf);
	ft->vmas = NULL;
	assert_int_equal(ft->nr_lazy, t->nr_lazy);
	assert_int_equal(ft->lazy_bytes, t->lazy_bytes);
	for (size_t i = 0; i < ft->nr_lazy; i++) {
		assert_int_equal(ft->lazy[i].vaddr, t->lazy[i].vaddr);
		assert_int_equal(ft->lazy[i].len, t->lazy[i].len);
		assert_int_equal(ft->lazy[i].pages_off, IMG_NO_OFFSET);
	}
}

static void test_chain(void **state)
{
	char root[] = "/tmp/test_imgmap_chain.XXXXXX", path[PATH_MAX];
	const struct imgmap_task *mt;
	const struct img_task *t;
	struct img_task ft = {.pid = IMGCHAIN_PID};
	struct imgmap *map = NULL;
	uint8_t page[4096];
	const void *data;
	size_t np = 0;
	int fd;

	assert_non_null(mkdtemp(root));
	imgchain_build(root);
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	/* The final dump's pages file and both rounds': mapped (and registered) each. */
	assert_int_equal(map->nr_files, 3);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	mt = imgmap_task(map, IMGCHAIN_PID);
	t = image_set_task(map->set, IMGCHAIN_PID);
	assert_non_null(mt);
	assert_int_equal(mt->nr_ranges, 4);
	for (size_t i = 0; i < mt->nr_ranges; i++) {
		const struct imgmap_range *r = &mt->ranges[i];

		for (uint64_t o = 0; o < r->len; o += 4096) {
			assert_int_equal(
			    imgmap_locate(map, IMGCHAIN_PID, r->img_vaddr + o, 4096, &data), 0);
			assert_int_equal(imgmap_copy(page, data, 4096), 0);
			assert_int_equal(pattern_check(page, r->img_vaddr + o,
						       imgchain_seeds[t->lazy[i].src], NULL),
					 0);
		}
	}
	/* The flat pagemap gives the destination the same lazy set, no parent run. */
	parse_flat(root, t, &ft);
	/* Its pages file holds the non-lazy pages, each from the round that wrote it last. */
	snprintf(path, sizeof(path), "%s/%s/pages-1.img", root, IMGFLAT_DIR);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (size_t i = 0; i < ft.nr_entries; i++) {
		assert_false(ft.entries[i].flags & IMG_PE_PARENT);
		if (!(ft.entries[i].flags & IMG_PE_PRESENT))
			continue;
		assert_int_equal(ft.entries[i].flags, IMG_PE_PRESENT);
		assert_int_equal(pread(fd, page, 4096, (off_t)ft.entries[i].pages_off), 4096);
		assert_int_equal(pattern_check(page, ft.entries[i].vaddr,
					       imgchain_seeds[imgchain_flat[i].src], NULL),
				 0);
		np++;
	}
	assert_int_equal(np, 2);
	close(fd);
	free(ft.entries);
	free(ft.lazy);
	/* What the source ships: the flat pagemap, the other files as they are. */
	assert_int_equal(imgflat_ship_path(root, "pagemap-20.img", path, sizeof(path)), 0);
	assert_non_null(strstr(path, IMGFLAT_DIR));
	assert_int_equal(imgflat_ship_path(root, "mm-20.img", path, sizeof(path)), 0);
	assert_null(strstr(path, IMGFLAT_DIR));
	imgmap_close(map);
	imgchain_rm(root);
}

#define PE_LP (IMG_PE_LAZY | IMG_PE_PRESENT)

/* Every page present, none lazy: criu's dump of a task with a page-aligned SP. */
static const struct img_pagemap_entry no_lazy[] = {
    {.vaddr = 0x10000, .nr_pages = 32, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};
/* As criu marked them otherwise (the shared VMA's pages cannot be lazy). */
static const struct img_pagemap_entry as_criu[] = {
    {.vaddr = 0x10000, .nr_pages = 32, .flags = PE_LP},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};
/* A lazy dump as criu marks it: the lazy pages in its page server, not in the files. */
static const struct img_pagemap_entry lazy_dump_as_criu[] = {
    {.vaddr = 0x10000, .nr_pages = 32, .flags = IMG_PE_LAZY},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};
/* Two pages not lazy, the rest lazy (criu before 3.13 kept a stack page so): left. */
static const struct img_pagemap_entry some_lazy[] = {
    {.vaddr = 0x10000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x12000, .nr_pages = 30, .flags = PE_LP},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};
/* The chain's final dump with its own pages not lazy. */
static const struct img_pagemap_entry final_no_lazy[] = {
    {.vaddr = 0x10000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x12000, .nr_pages = 30, .flags = IMG_PE_PARENT},
    {.vaddr = 0x40000, .nr_pages = 1, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x41000, .nr_pages = 1, .flags = IMG_PE_PARENT},
};

/* Round 1 of the chain as a pre-dump that misfired, and the final dump as it is. */
static const struct img_pagemap_entry r1_no_lazy[] = {
    {.vaddr = 0x10000, .nr_pages = 32, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};
static const struct img_pagemap_entry chain_final_lazy[] = {
    {.vaddr = 0x10000, .nr_pages = 2, .flags = PE_LP},
    {.vaddr = 0x12000, .nr_pages = 30, .flags = IMG_PE_PARENT},
    {.vaddr = 0x40000, .nr_pages = 1, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x41000, .nr_pages = 1, .flags = IMG_PE_PARENT},
};

/*
 * Opens root (a plain dump) and checks what a destination would get: the
 * lazy set is 0x10000-0x30000 with the pages of seed, the flat pagemap
 * (when relazied) gives the same lazy set and carries the two shared pages.
 */
static void check_relazied(const char *root, bool relazied, uint32_t seed)
{
	struct img_task ft = {.pid = IMGCHAIN_PID};
	const struct imgmap_task *mt;
	const struct img_task *t;
	struct imgmap *map = NULL;
	char path[PATH_MAX], ship[PATH_MAX];
	uint8_t page[4096];
	const void *data;
	struct stat sb;
	int fd;

	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_int_equal(map->set->relazied, relazied);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	mt = imgmap_task(map, IMGCHAIN_PID);
	t = image_set_task(map->set, IMGCHAIN_PID);
	assert_non_null(mt);
	for (uint64_t a = 0x10000; a < 0x30000; a += 4096) {
		assert_int_equal(imgmap_locate(map, IMGCHAIN_PID, a, 4096, &data), 0);
		assert_int_equal(imgmap_copy(page, data, 4096), 0);
		assert_int_equal(pattern_check(page, a, seed, NULL), 0);
	}
	assert_int_equal(imgmap_locate(map, IMGCHAIN_PID, 0x40000, 4096, &data), -ERANGE);
	snprintf(path, sizeof(path), "%s/%s/pagemap-%d.img", root, IMGFLAT_DIR, IMGCHAIN_PID);
	if (!relazied) {
		assert_int_equal(stat(path, &sb), -1);
		imgmap_close(map);
		return;
	}
	assert_int_equal(imgflat_ship_path(root, "pagemap-20.img", ship, sizeof(ship)), 0);
	assert_string_equal(ship, path);
	parse_flat(root, t, &ft);
	/* The flat pages file: the shared VMA's two pages, no more. */
	assert_int_equal(ft.pages_file_size, 2 * 4096);
	snprintf(path, sizeof(path), "%s/%s/pages-1.img", root, IMGFLAT_DIR);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 2 * 4096);
	for (uint64_t a = 0x40000; a < 0x42000; a += 4096) {
		assert_int_equal(pread(fd, page, 4096, (off_t)(a - 0x40000)), 4096);
		assert_int_equal(pattern_check(page, a, seed, NULL), 0);
	}
	close(fd);
	free(ft.entries);
	free(ft.lazy);
	imgmap_close(map);
}

/*
 * criu dump marks no page lazy when it stopped a thread with its stack
 * pointer on a page boundary: the source serves them lazily all the same,
 * as criu marks them in any other dump.  A lazy dump's map is left alone.
 */
static void test_relazy(void **state)
{
	char root[] = "/tmp/test_imgmap_relazy.XXXXXX", path[PATH_MAX];
	struct imgmap *map = NULL;
	uint32_t seed = 7;

	assert_non_null(mkdtemp(root));
	imgchain_write(root, as_criu, 2, &seed, NULL);
	check_relazied(root, false, seed);
	imgchain_write(root, no_lazy, 2, &seed, NULL);
	check_relazied(root, true, seed);
	/* Not the misfire's mark: left as criu wrote it, the flat images above removed. */
	imgchain_write(root, some_lazy, 3, &seed, NULL);
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_false(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 30 * 4096);
	snprintf(path, sizeof(path), "%s/%s", root, IMGFLAT_DIR);
	assert_int_equal(access(path, F_OK), -1);
	imgmap_close(map);
	map = NULL;
	/* Where the flat images cannot be written: criu's flags kept, the pages with the images. */
	imgchain_rm(root);
	assert_int_equal(mkdir(root, 0700), 0);
	imgchain_write(root, no_lazy, 2, &seed, NULL);
	snprintf(path, sizeof(path), "%s/%s", root, IMGFLAT_DIR);
	fclose(fopen(path, "w"));
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_false(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 0);
	imgmap_close(map);
	map = NULL;
	/*
	 * A lazy dump's: made lazy too (its stopped tree serves them, not its
	 * page server), with the same flat images; a lazy dump as criu marks it
	 * (lazy runs without data) is left alone.
	 */
	imgchain_rm(root);
	assert_int_equal(mkdir(root, 0700), 0);
	imgchain_write(root, no_lazy, 2, &seed, NULL);
	assert_int_equal(imgmap_open_lazy(root, NULL, &map), 0);
	assert_true(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	snprintf(path, sizeof(path), "%s/%s/pagemap-%d.img", root, IMGFLAT_DIR, IMGCHAIN_PID);
	assert_int_equal(access(path, F_OK), 0);
	imgmap_close(map);
	map = NULL;
	imgchain_write(root, lazy_dump_as_criu, 2, &seed, NULL);
	assert_int_equal(imgmap_open_lazy(root, NULL, &map), 0);
	assert_false(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	assert_int_equal(access(path, F_OK), -1);
	imgmap_close(map);
	imgchain_rm(root);
}

static int fill_seed(void *opaque, int32_t pid, uint64_t vaddr, void *page)
{
	pattern_fill(page, vaddr, *(const uint32_t *)opaque);
	return 0;
}

/*
 * Two tasks, one misfired: both reach the destination's flat pagemaps with
 * their whole lazy sets, the one criu marked right as it marked it.
 */
static void test_relazy_two_tasks(void **state)
{
	static const struct img_vma vmas[] = {
	    {.start = 0x10000, .end = 0x30000, .flags = MAP_PRIVATE | MAP_ANONYMOUS},
	    {.start = 0x40000, .end = 0x42000, .flags = MAP_SHARED | MAP_ANONYMOUS},
	};
	char root[] = "/tmp/test_imgmap_relazy2.XXXXXX";
	uint32_t seed = 9;
	struct imgwrite_task wt[2] = {
	    {.pid = 20,
	     .pages_id = 1,
	     .vmas = vmas,
	     .nr_vmas = 2,
	     .entries = no_lazy,
	     .nr_entries = 2,
	     .fill = fill_seed,
	     .opaque = &seed},
	    {.pid = 21,
	     .ppid = 20,
	     .pages_id = 2,
	     .vmas = vmas,
	     .nr_vmas = 2,
	     .entries = as_criu,
	     .nr_entries = 2,
	     .fill = fill_seed,
	     .opaque = &seed},
	};
	struct imgmap *map = NULL;

	assert_non_null(mkdtemp(root));
	assert_int_equal(imgwrite_dir(root, NULL, wt, 2), 0);
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_true(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 64 * 4096);
	for (size_t i = 0; i < 2; i++) {
		const struct img_task *t = image_set_task(map->set, wt[i].pid);
		struct img_task ft = {.pid = wt[i].pid};

		assert_non_null(t);
		assert_int_equal(t->lazy_bytes, 32 * 4096);
		parse_flat(root, t, &ft);
		assert_int_equal(ft.pages_file_size, 2 * 4096);
		free(ft.entries);
		free(ft.lazy);
	}
	imgmap_close(map);
	imgchain_rm(root);
}

/* A pre-copy chain whose final dump marked its own pages not lazy: they are made lazy. */
static void test_relazy_chain(void **state)
{
	char root[] = "/tmp/test_imgmap_relazy_chain.XXXXXX", dir[PATH_MAX];
	const struct imgmap_task *mt;
	struct imgmap *map = NULL;

	assert_non_null(mkdtemp(root));
	imgchain_build(root);
	imgchain_write(root, final_no_lazy, 4, &imgchain_seeds[0], "round-2");
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_true(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	mt = imgmap_task(map, IMGCHAIN_PID);
	assert_non_null(mt);
	assert_int_equal(mt->ranges[0].img_vaddr, 0x10000);
	assert_int_equal(mt->ranges[0].len, 2 * 4096);
	imgmap_close(map);
	map = NULL;
	/* Round 1 misfired too (a pre-dump marks pages the same way): its pages as well. */
	snprintf(dir, sizeof(dir), "%s/round-1", root);
	imgchain_write(dir, r1_no_lazy, 2, &imgchain_seeds[2], NULL);
	imgchain_as_round(dir);
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_true(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	mt = imgmap_task(map, IMGCHAIN_PID);
	assert_int_equal(mt->nr_ranges, 4);
	imgmap_close(map);
	map = NULL;
	/* Only round 1 misfired: the final dump's own pages are lazy, round 1's made so. */
	imgchain_write(root, chain_final_lazy, 4, &imgchain_seeds[0], "round-2");
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_true(map->set->relazied);
	assert_int_equal(map->lazy_bytes, 32 * 4096);
	imgmap_close(map);
	imgchain_rm(root);
}

/* Round 2 rewrites every page of round 1: the chain reads nothing of round 1. */
static const struct img_pagemap_entry r2_full[] = {
    {.vaddr = 0x10000, .nr_pages = 32, .flags = IMG_PE_LAZY | IMG_PE_PRESENT},
    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
};

static void test_rounds(void **state)
{
	char root[] = "/tmp/test_imgmap_rounds.XXXXXX", dir[1024], path[1100];
	struct imgmap_file *r1 = NULL, *r2 = NULL, f;
	struct imgmap *map = NULL;
	size_t n1 = 0, n2 = 0;
	ssize_t idx[2];
	int fd;

	assert_non_null(mkdtemp(root));
	imgchain_build(root);
	/* Each round mapped as it ended: its one pages file. */
	snprintf(dir, sizeof(dir), "%s/round-1", root);
	assert_int_equal(imgmap_round_open(dir, &r1, &n1), 0);
	assert_int_equal(n1, 1);
	snprintf(dir, sizeof(dir), "%s/round-2", root);
	assert_int_equal(imgmap_round_open(dir, &r2, &n2), 0);
	assert_int_equal(n2, 1);
	assert_null(imgmap_file_changed(&r1[0]));
	/* The final map reads both rounds: each round's file is one of the map's, the same file. */
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_int_equal(imgmap_match(map, r1, 1, &idx[0]), 0);
	assert_int_equal(imgmap_match(map, r2, 1, &idx[1]), 0);
	assert_true(idx[0] >= 0 && idx[1] >= 0 && idx[0] != idx[1]);
	assert_true(imgmap_file_same(&map->files[idx[0]], &r1[0]));
	assert_string_equal(map->files[idx[1]].path, r2[0].path);
	imgmap_close(map);
	map = NULL;

	/* Round 2 superseded round 1 entirely: round 1's file is not needed any more. */
	imgmap_files_free(r2, n2);
	imgchain_write(dir, r2_full, 2, &imgchain_seeds[1], "../round-1");
	imgchain_as_round(dir);
	assert_int_equal(imgmap_round_open(dir, &r2, &n2), 0);
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_int_equal(imgmap_match(map, r1, 1, &idx[0]), 0);
	assert_int_equal(imgmap_match(map, r2, 1, &idx[1]), 0);
	assert_int_equal(idx[0], -1);
	assert_true(idx[1] >= 0);
	imgmap_close(map);
	map = NULL;

	/* A round's file rewritten since its round: noticed, and the final map refuses it. */
	snprintf(path, sizeof(path), "%s/pages-1.img", dir);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "x", 1, 4096), 1);
	close(fd);
	assert_int_equal(utimensat(AT_FDCWD, path, (const struct timespec[2]){{0, 0}, {1, 0}}, 0),
			 0);
	assert_string_equal(imgmap_file_changed(&r2[0]), "rewritten");
	assert_int_equal(imgmap_open(root, NULL, NULL, &map), 0);
	assert_int_equal(imgmap_match(map, r2, 1, &idx[1]), -ESTALE);
	imgmap_close(map);
	map = NULL;
	/* Replaced by another file, then removed: each noticed, by what it is. */
	assert_int_equal(imgmap_file_open(path, &f), 0);
	snprintf(dir, sizeof(dir), "%.1000s.new", path);
	fd = open(dir, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)f.len), 0);
	close(fd);
	assert_int_equal(rename(dir, path), 0);
	assert_string_equal(imgmap_file_changed(&f), "replaced by another file");
	assert_int_equal(unlink(path), 0);
	assert_string_equal(imgmap_file_changed(&f), "removed");
	imgmap_file_close(&f);
	imgmap_files_free(r2, n2);
	/* A round whose pages file anyone may write is not mapped: -EPERM, nothing left open. */
	snprintf(dir, sizeof(dir), "%s/round-1/pages-1.img", root);
	assert_int_equal(chmod(dir, 0602), 0);
	snprintf(dir, sizeof(dir), "%s/round-1", root);
	r2 = NULL;
	assert_int_equal(imgmap_round_open(dir, &r2, &n2), -EPERM);
	assert_null(r2);
	imgmap_files_free(r1, n1);
	imgchain_rm(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy_truncated), cmocka_unit_test(test_chain),
	    cmocka_unit_test(test_rounds),	   cmocka_unit_test(test_relazy),
	    cmocka_unit_test(test_relazy_chain),   cmocka_unit_test(test_relazy_two_tasks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
