// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * imgmap_copy(): a mapping whose file shrank is an -EFAULT, not a SIGBUS.
 * A pre-copy chain: every lazy page served from the round holding it, and
 * the flat images for the destination.
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
#include <unistd.h>

#include <cmocka.h>

#include "imgchain.h"
#include "imgflat.h"
#include "pattern.h"
#include "source-agent/imgmap.h"

#define LEN (4 * 4096)

static void test_copy_truncated(void **state)
{
	char path[] = "/tmp/test_imgmap.XXXXXX";
	uint8_t buf[LEN], data[LEN];
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

static void test_chain(void **state)
{
	char root[] = "/tmp/test_imgmap_chain.XXXXXX", path[PATH_MAX];
	const struct imgmap_task *mt;
	const struct img_task *t;
	struct img_task ft = {.pid = IMGCHAIN_PID};
	struct imgmap *map = NULL;
	uint8_t page[4096];
	const void *data;
	size_t len, np = 0;
	void *buf;
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
	snprintf(path, sizeof(path), "%s/%s/pagemap-%d.img", root, IMGFLAT_DIR, IMGCHAIN_PID);
	buf = slurp(path, &len);
	ft.vmas = t->vmas;
	ft.nr_vmas = t->nr_vmas;
	assert_int_equal(image_parse_pagemap_buf(buf, len, path, 2, &ft, NULL), 0);
	free(buf);
	ft.vmas = NULL;
	assert_int_equal(ft.nr_lazy, t->nr_lazy);
	for (size_t i = 0; i < ft.nr_lazy; i++) {
		assert_int_equal(ft.lazy[i].vaddr, t->lazy[i].vaddr);
		assert_int_equal(ft.lazy[i].len, t->lazy[i].len);
		assert_int_equal(ft.lazy[i].pages_off, IMG_NO_OFFSET);
	}
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy_truncated),
	    cmocka_unit_test(test_chain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
