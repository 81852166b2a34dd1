// SPDX-License-Identifier: GPL-2.0-or-later
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "criu-pagemap.pb-c.h"
#include "image.h"
#include "imgchain.h"
#include "imgwrite.h"
#include "log.h"
#include "pattern.h"

#define ANON_PRIV (MAP_PRIVATE | MAP_ANONYMOUS)
#define RW	  (PROT_READ | PROT_WRITE)
#define SEED	  1234u
#define PID	  10
#define ZOMBIE	  11
#define PAGES_ID  7u
#define P	  IMG_PAGE_SIZE

#define PE_LP (IMG_PE_LAZY | IMG_PE_PRESENT)

/*
 * The standard task: VMA A and B touch, C is after a gap.  The entries mix
 * every kind of run, and the second one crosses the A/B boundary.
 */
static const struct img_vma std_vmas[] = {
    {.start = 0x10000, .end = 0x20000, .prot = RW, .flags = ANON_PRIV, .status = 1},
    {.start = 0x20000, .end = 0x28000, .prot = PROT_READ, .flags = ANON_PRIV, .status = 1},
    {.start = 0x40000, .end = 0x50000, .prot = RW, .flags = ANON_PRIV, .status = 1},
};
static const struct img_vma std_guard = {.start = 0x11000, .end = 0x12000};
static const struct img_pagemap_entry std_entries[] = {
    {.vaddr = 0x10000, .nr_pages = 4, .flags = IMG_PE_PRESENT},
    {.vaddr = 0x14000, .nr_pages = 16, .flags = PE_LP},
    {.vaddr = 0x24000, .nr_pages = 2, .flags = IMG_PE_PARENT},
    {.vaddr = 0x26000, .nr_pages = 2, .flags = IMG_PE_LAZY | IMG_PE_PARENT},
    {.vaddr = 0x40000, .nr_pages = 3, .flags = IMG_PE_LAZY},
    {.vaddr = 0x44000, .nr_pages = 2, .flags = PE_LP},
};

/* What the parser must derive from the standard task. */
static const struct img_lazy_range std_lazy[] = {
    {.vaddr = 0x14000, .len = 12 * P, .pages_off = 4 * P},
    {.vaddr = 0x20000, .len = 4 * P, .pages_off = 16 * P},
    {.vaddr = 0x26000, .len = 2 * P, .pages_off = IMG_NO_OFFSET},
    {.vaddr = 0x40000, .len = 3 * P, .pages_off = IMG_NO_OFFSET},
    {.vaddr = 0x44000, .len = 2 * P, .pages_off = 20 * P},
};
static const uint64_t std_pages_off[] = {0,	4 * P, IMG_NO_OFFSET, IMG_NO_OFFSET, IMG_NO_OFFSET,
					 20 * P};

struct fixture {
	char dir[256];
	struct img_vma vmas[8];
	struct img_pagemap_entry entries[8];
	struct imgwrite_task tasks[2];
	struct imgwrite_opts opts;
};

static int fill_pattern(void *opaque, int32_t pid, uint64_t vaddr, void *page)
{
	pattern_fill(page, vaddr, SEED);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/rdmig-test-image-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	memcpy(f->vmas, std_vmas, sizeof(std_vmas));
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->tasks[0] = (struct imgwrite_task){
	    .pid = PID,
	    .pages_id = PAGES_ID,
	    .vmas = f->vmas,
	    .nr_vmas = 3,
	    .entries = f->entries,
	    .nr_entries = 6,
	    .fill = fill_pattern,
	};
	f->tasks[1] = (struct imgwrite_task){.pid = ZOMBIE, .ppid = PID, .zombie = true};
	f->opts = (struct imgwrite_opts){.img_version = 2, .encoding = IMGWRITE_ENC_42};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = opendir(f->dir);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	}
	if (d)
		closedir(d);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void write_std(struct fixture *f)
{
	assert_int_equal(imgwrite_dir(f->dir, &f->opts, f->tasks, 2), 0);
}

/* image_set_open()'s result, with the set freed. */
static int open_rc(const struct fixture *f)
{
	struct img_set *set = NULL;
	int ret = image_set_open(f->dir, &set);

	if (ret == 0)
		assert_non_null(set);
	image_set_free(set);
	return ret;
}

static void path_of(const struct fixture *f, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", f->dir, name);

	assert_true(n > 0 && (size_t)n < len);
}

static void truncate_to(const struct fixture *f, const char *name, off_t len)
{
	char path[PATH_MAX];

	path_of(f, name, path, sizeof(path));
	assert_int_equal(truncate(path, len), 0);
}

static off_t size_of(const struct fixture *f, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	path_of(f, name, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void pwrite_at(const struct fixture *f, const char *name, off_t off, const void *data,
		      size_t len, bool append)
{
	char path[PATH_MAX];
	int fd;

	path_of(f, name, path, sizeof(path));
	fd = open(path, O_WRONLY | (append ? O_APPEND : 0));
	assert_true(fd >= 0);
	if (append)
		assert_int_equal(write(fd, data, len), (ssize_t)len);
	else
		assert_int_equal(pwrite(fd, data, len, off), (ssize_t)len);
	close(fd);
}

static void patch_u32(const struct fixture *f, const char *name, off_t off, uint32_t v)
{
	pwrite_at(f, name, off, &v, sizeof(v), false);
}

static void remove_file(const struct fixture *f, const char *name)
{
	char path[PATH_MAX];

	path_of(f, name, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
}

/* Reads every lazy range that has data and checks it against the pattern. */
static void check_lazy_data(const struct img_set *set, const struct img_task *t, uint64_t seed)
{
	char path[PATH_MAX];
	uint8_t page[IMG_PAGE_SIZE];
	int fd;

	assert_int_equal(image_pages_path(set, t, path, sizeof(path)), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (size_t i = 0; i < t->nr_lazy; i++) {
		const struct img_lazy_range *lr = &t->lazy[i];

		if (lr->pages_off == IMG_NO_OFFSET)
			continue;
		for (uint64_t o = 0; o < lr->len; o += IMG_PAGE_SIZE) {
			assert_int_equal(pread(fd, page, sizeof(page), (off_t)(lr->pages_off + o)),
					 (ssize_t)sizeof(page));
			assert_int_equal(pattern_check(page, lr->vaddr + o, seed, NULL), 0);
		}
	}
	close(fd);
}

static void check_std_task(const struct img_set *set, const struct img_task *t)
{
	assert_true(t->has_memory);
	assert_int_equal(t->pages_id, PAGES_ID);
	assert_int_equal(t->nr_vmas, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(t->vmas[i].start, std_vmas[i].start);
		assert_int_equal(t->vmas[i].end, std_vmas[i].end);
		assert_int_equal(t->vmas[i].prot, std_vmas[i].prot);
		assert_int_equal(t->vmas[i].flags, std_vmas[i].flags);
		assert_false(t->vmas[i].status & IMG_VMA_AREA_GUARD);
	}
	assert_int_equal(t->nr_entries, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(t->entries[i].vaddr, std_entries[i].vaddr);
		assert_int_equal(t->entries[i].nr_pages, std_entries[i].nr_pages);
		assert_int_equal(t->entries[i].flags, std_entries[i].flags);
		assert_int_equal(t->entries[i].pages_off, std_pages_off[i]);
	}
	assert_int_equal(t->nr_lazy, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(t->lazy[i].vaddr, std_lazy[i].vaddr);
		assert_int_equal(t->lazy[i].len, std_lazy[i].len);
		assert_int_equal(t->lazy[i].pages_off, std_lazy[i].pages_off);
	}
	assert_int_equal(t->lazy_bytes, 23 * P);
	assert_int_equal(t->pages_file_size, 22 * P);
	check_lazy_data(set, t, SEED);
}

static void roundtrip(struct fixture *f, enum imgwrite_encoding enc, uint32_t version, bool legacy)
{
	struct img_set *set = NULL;
	const struct img_task *t;
	char path[PATH_MAX];

	f->opts.encoding = enc;
	f->opts.img_version = version;
	f->opts.legacy_flags = legacy;
	write_std(f);
	assert_int_equal(image_set_open(f->dir, &set), 0);
	assert_int_equal(set->img_version, version);
	assert_int_equal(set->pagemap_v42, enc == IMGWRITE_ENC_42);
	assert_int_equal(set->nr_tasks, 2);
	assert_int_equal(set->tasks[0].pid, PID);
	t = image_set_task(set, PID);
	assert_ptr_equal(t, &set->tasks[0]);
	check_std_task(set, t);
	t = image_set_task(set, ZOMBIE);
	assert_non_null(t);
	assert_false(t->has_memory);
	assert_int_equal(t->nr_lazy, 0);
	assert_int_equal(image_pages_path(set, t, path, sizeof(path)), -EINVAL);
	assert_null(image_set_task(set, 12));
	assert_int_equal(image_pages_path(set, &set->tasks[0], path, 8), -ENAMETOOLONG);
	image_set_free(set);
}

/* A lazy dump's units: each range cut from its start, the last piece shorter. */

static void test_chain(void **state)
{
	struct fixture *f = *state;
	struct img_set *set = NULL;
	const struct img_task *t;
	uint8_t page[IMG_PAGE_SIZE];
	char path[PATH_MAX];

	imgchain_build(f->dir);
	assert_int_equal(image_set_open(f->dir, &set), 0);
	assert_non_null(set->parent);
	assert_non_null(set->parent->parent);
	assert_null(set->parent->parent->parent);
	assert_int_equal(set->parent->parent->depth, 2);
	assert_ptr_equal(image_set_at(set, 2), set->parent->parent);
	assert_null(image_set_at(set, 3));
	t = image_set_task(set, IMGCHAIN_PID);
	assert_non_null(t);
	assert_int_equal(t->nr_flat, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(t->flat[i].vaddr, imgchain_flat[i].vaddr);
		assert_int_equal(t->flat[i].nr_pages, imgchain_flat[i].nr_pages);
		assert_int_equal(t->flat[i].flags, imgchain_flat[i].flags);
		assert_int_equal(t->flat[i].pages_off, imgchain_flat[i].pages_off);
		assert_int_equal(t->flat[i].src, imgchain_flat[i].src);
	}
	/* Every lazy page is read from the round that wrote it last. */
	assert_int_equal(t->nr_lazy, 4);
	assert_int_equal(t->lazy_bytes, 32 * P);
	for (size_t i = 0; i < t->nr_lazy; i++) {
		const struct img_lazy_range *lr = &t->lazy[i];
		int fd;

		assert_int_equal(lr->src, imgchain_flat[i].src);
		assert_int_equal(image_range_pages_path(set, t, lr, path, sizeof(path)), 0);
		fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		for (uint64_t o = 0; o < lr->len; o += P) {
			assert_int_equal(pread(fd, page, P, (off_t)(lr->pages_off + o)),
					 (ssize_t)P);
			assert_int_equal(
			    pattern_check(page, lr->vaddr + o, imgchain_seeds[lr->src], NULL), 0);
		}
		close(fd);
	}
	image_set_free(set);
	snprintf(path, sizeof(path), "%s/round-1", f->dir);
	imgchain_rm(path);
	snprintf(path, sizeof(path), "%s/round-2", f->dir);
	imgchain_rm(path);
}

/* Replaces root's parent link with target. */
static void chain_relink(const char *dir, const char *target)
{
	char link[PATH_MAX + 16];

	snprintf(link, sizeof(link), "%s/parent", dir);
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
}

static void test_chain_reject(void **state)
{
	struct fixture *f = *state;
	char d[PATH_MAX], d2[PATH_MAX];

	imgchain_build(f->dir);
	/* Out of the root, absolute, or the root itself: never followed. */
	chain_relink(f->dir, "../");
	assert_int_equal(open_rc(f), -EXDEV);
	chain_relink(f->dir, "/tmp");
	assert_int_equal(open_rc(f), -EXDEV);
	chain_relink(f->dir, "round-2/..");
	assert_int_equal(open_rc(f), -EXDEV);
	chain_relink(f->dir, "missing");
	assert_int_equal(open_rc(f), -ENOENT);
	/* A symbolic link on the way out is refused too. */
	snprintf(d, sizeof(d), "%s/escape", f->dir);
	assert_int_equal(symlink("/tmp", d), 0);
	chain_relink(f->dir, "escape");
	assert_int_equal(open_rc(f), -ELOOP);
	unlink(d);
	/* A loop ends at the depth limit. */
	snprintf(d, sizeof(d), "%s/round-1", f->dir);
	chain_relink(d, "../round-2");
	chain_relink(f->dir, "round-2");
	assert_int_equal(open_rc(f), -ELOOP);
	chain_relink(d, "../round-3");
	/* A page the parent does not have is no zero page: an error. */
	snprintf(d2, sizeof(d2), "%s/round-1", f->dir);
	imgchain_rm(d2);
	snprintf(d, sizeof(d), "%s/round-1", f->dir);
	{
		static const struct img_pagemap_entry short_r1[] = {
		    {.vaddr = 0x10000, .nr_pages = 31, .flags = PE_LP},
		    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
		};
		static const struct img_pagemap_entry lazy_r1[] = {
		    {.vaddr = 0x10000, .nr_pages = 32, .flags = IMG_PE_LAZY},
		    {.vaddr = 0x40000, .nr_pages = 2, .flags = IMG_PE_PRESENT},
		};

		imgchain_write(d, short_r1, 2, &imgchain_seeds[2], NULL);
		imgchain_as_round(d);
		assert_int_equal(open_rc(f), -EBADMSG);
		/* Nor is a page the parent holds no data for (a lazy dump's). */
		imgchain_write(d, lazy_r1, 2, &imgchain_seeds[2], NULL);
		imgchain_as_round(d);
		assert_int_equal(open_rc(f), -EBADMSG);
	}
	imgchain_rm(d);
	snprintf(d, sizeof(d), "%s/round-2", f->dir);
	imgchain_rm(d);
}

static void test_cut_lazy(void **state)
{
	struct img_lazy_range *lazy = calloc(2, sizeof(*lazy));
	struct img_task task = {.pid = 7, .has_memory = true, .lazy = lazy, .nr_lazy = 2};
	struct img_set set = {.tasks = &task, .nr_tasks = 1};
	const uint64_t unit = 256 << 10;

	(void)state;
	assert_non_null(lazy);
	lazy[0] = (struct img_lazy_range){.vaddr = 0x10000, .len = 600 << 10, .pages_off = 8192};
	lazy[1] =
	    (struct img_lazy_range){.vaddr = 0x400000, .len = unit, .pages_off = IMG_NO_OFFSET};
	assert_int_equal(image_set_cut_lazy(&set, 4095), -EINVAL);
	assert_int_equal(image_set_cut_lazy(&set, unit), 0);
	assert_int_equal(task.nr_lazy, 4);
	assert_int_equal(task.lazy[0].vaddr, 0x10000);
	assert_int_equal(task.lazy[0].len, unit);
	assert_int_equal(task.lazy[1].vaddr, 0x10000 + unit);
	assert_int_equal(task.lazy[1].pages_off, 8192 + unit);
	assert_int_equal(task.lazy[2].len, (600 << 10) - 2 * unit);
	assert_int_equal(task.lazy[3].vaddr, 0x400000);
	assert_int_equal(task.lazy[3].len, unit);
	assert_true(task.lazy[3].pages_off == IMG_NO_OFFSET);
	/* Cut already: nothing changes. */
	assert_int_equal(image_set_cut_lazy(&set, unit), 0);
	assert_int_equal(task.nr_lazy, 4);
	free(task.lazy);
}

static void test_roundtrip_317(void **state)
{
	roundtrip(*state, IMGWRITE_ENC_317, 2, false);
}

static void test_roundtrip_42_guard(void **state)
{
	struct fixture *f = *state;

	f->tasks[0].guards = &std_guard;
	f->tasks[0].nr_guards = 1;
	roundtrip(f, IMGWRITE_ENC_42, 2, false);
}

static void test_roundtrip_v1_legacy_flags(void **state)
{
	roundtrip(*state, IMGWRITE_ENC_317, 1, true);
}

/* The same entries cut at every VMA boundary they cross, and nothing else. */
static void test_lazy_clipping(void **state)
{
	struct fixture *f = *state;
	static const struct img_vma vmas[] = {
	    {.start = 0x1000, .end = 0x2000, .flags = ANON_PRIV},
	    {.start = 0x2000, .end = 0x3000, .flags = ANON_PRIV},
	    {.start = 0x3000, .end = 0x9000, .flags = ANON_PRIV},
	};
	static const struct img_pagemap_entry entries[] = {
	    {.vaddr = 0x1000, .nr_pages = 8, .flags = PE_LP},
	};
	struct img_set *set = NULL;
	const struct img_task *t;

	f->tasks[0].vmas = vmas;
	f->tasks[0].nr_vmas = 3;
	f->tasks[0].entries = entries;
	f->tasks[0].nr_entries = 1;
	write_std(f);
	assert_int_equal(image_set_open(f->dir, &set), 0);
	t = &set->tasks[0];
	assert_int_equal(t->nr_lazy, 3);
	assert_int_equal(t->lazy[0].vaddr, 0x1000);
	assert_int_equal(t->lazy[0].len, P);
	assert_int_equal(t->lazy[0].pages_off, 0);
	assert_int_equal(t->lazy[1].vaddr, 0x2000);
	assert_int_equal(t->lazy[1].pages_off, P);
	assert_int_equal(t->lazy[2].vaddr, 0x3000);
	assert_int_equal(t->lazy[2].len, 6 * P);
	assert_int_equal(t->lazy[2].pages_off, 2 * P);
	assert_int_equal(t->lazy_bytes, 8 * P);
	check_lazy_data(set, t, SEED);
	image_set_free(set);
}

static void fixture_dir(char *buf, size_t len, const char *name)
{
	const char *env = getenv("RDMIG_FIXTURES");
	char src[PATH_MAX];
	char *slash;
	int n;

	if (env) {
		n = snprintf(buf, len, "%s/%s", env, name);
		assert_true(n > 0 && (size_t)n < len);
		return;
	}
	/* meson runs tests from the build root, which __FILE__ is relative to. */
	snprintf(src, sizeof(src), "%s", __FILE__);
	slash = strrchr(src, '/');
	if (slash)
		*slash = '\0';
	n = snprintf(buf, len, "%s/../fixtures/%s", slash ? src : ".", name);
	assert_true(n > 0 && (size_t)n < len);
}

/* See test/fixtures/gen_fixtures.py for the layout these values come from. */
static void check_fixture(const char *name, bool v42)
{
	static const struct img_lazy_range lazy[] = {
	    {.vaddr = 0x7f0000002000, .len = P, .pages_off = P},
	    {.vaddr = 0x7f0000003000, .len = P, .pages_off = 2 * P},
	    {.vaddr = 0x7f0000010000, .len = 2 * P, .pages_off = IMG_NO_OFFSET},
	    {.vaddr = 0x7f0000013000, .len = P, .pages_off = 3 * P},
	};
	struct img_set *set = NULL;
	const struct img_task *t;
	char dir[PATH_MAX];

	fixture_dir(dir, sizeof(dir), name);
	assert_int_equal(image_set_open(dir, &set), 0);
	assert_int_equal(set->img_version, 2);
	assert_int_equal(set->pagemap_v42, v42);
	assert_int_equal(set->nr_tasks, 2);
	assert_false(image_set_task(set, 101)->has_memory);
	t = image_set_task(set, 100);
	assert_non_null(t);
	assert_true(t->has_memory);
	assert_int_equal(t->pages_id, 1);
	assert_int_equal(t->nr_vmas, 4);
	assert_int_equal(t->vmas[1].start, 0x7f0000003000);
	assert_int_equal(t->vmas[1].prot, PROT_READ);
	assert_true(image_vma_can_be_lazy(&t->vmas[2]));
	assert_false(image_vma_can_be_lazy(&t->vmas[3]));
	assert_int_equal(t->nr_entries, 5);
	assert_int_equal(t->entries[2].flags, IMG_PE_PARENT);
	assert_int_equal(t->entries[4].pages_off, 3 * P);
	assert_int_equal(t->nr_lazy, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(t->lazy[i].vaddr, lazy[i].vaddr);
		assert_int_equal(t->lazy[i].len, lazy[i].len);
		assert_int_equal(t->lazy[i].pages_off, lazy[i].pages_off);
	}
	assert_int_equal(t->lazy_bytes, 5 * P);
	assert_int_equal(t->pages_file_size, 4 * P);
	check_lazy_data(set, t, pattern_seed_for_pid(100));
	image_set_free(set);
}

static void test_fixture_317(void **state)
{
	check_fixture("criu-3.17", false);
}

static void test_fixture_42(void **state)
{
	check_fixture("criu-4.2", true);
}

static void test_reject_truncated_record(void **state)
{
	struct fixture *f = *state;
	off_t len;

	write_std(f);
	len = size_of(f, "pagemap-10.img");
	truncate_to(f, "pagemap-10.img", len - 3);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Header and PagemapHead record are 8 + 4 + 2 bytes; cut the next size word. */
	truncate_to(f, "pagemap-10.img", 16);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* The magic words themselves. */
	truncate_to(f, "pagemap-10.img", 6);
	assert_int_equal(open_rc(f), -EBADMSG);
	truncate_to(f, "pagemap-10.img", 0);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* An MmEntry cut short fails the same way. */
	write_std(f);
	truncate_to(f, "mm-10.img", size_of(f, "mm-10.img") - 1);
	assert_int_equal(open_rc(f), -EBADMSG);
}

static void test_reject_wrong_magic(void **state)
{
	struct fixture *f = *state;

	write_std(f);
	patch_u32(f, "pagemap-10.img", 4, IMG_MAGIC_MM);
	assert_int_equal(open_rc(f), -EBADMSG);
	write_std(f);
	patch_u32(f, "mm-10.img", 0, 0x12345678);
	assert_int_equal(open_rc(f), -EBADMSG);
	write_std(f);
	patch_u32(f, "inventory.img", 0, IMG_MAGIC_COMMON);
	assert_int_equal(open_rc(f), -EBADMSG);
	write_std(f);
	patch_u32(f, "pstree.img", 4, IMG_MAGIC_PAGEMAP);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Version 1 images lack the common magic: reading them as version 2 fails. */
	f->opts.img_version = 1;
	write_std(f);
	f->opts.img_version = 2;
	assert_int_equal(open_rc(f), 0);
	{
		struct imgwrite_buf b = {0};

		assert_int_equal(imgwrite_inventory_buf(&b, 2), 0);
		assert_int_equal(imgwrite_file(f->dir, "inventory.img", &b), 0);
		imgwrite_buf_free(&b);
	}
	assert_int_equal(open_rc(f), -EBADMSG);
}

static void test_reject_inventory(void **state)
{
	struct fixture *f = *state;
	struct imgwrite_buf b = {0};
	uint32_t version = 0;

	write_std(f);
	assert_int_equal(imgwrite_inventory_buf(&b, 3), 0);
	assert_int_equal(imgwrite_file(f->dir, "inventory.img", &b), 0);
	assert_int_equal(open_rc(f), -ERANGE);
	assert_int_equal(image_parse_inventory_buf(b.data, b.len, "inv", &version), -ERANGE);
	imgwrite_buf_free(&b);
	assert_int_equal(imgwrite_inventory_buf(&b, 0), 0);
	assert_int_equal(image_parse_inventory_buf(b.data, b.len, "inv", &version), -ERANGE);
	imgwrite_buf_free(&b);
	/* Two records where CRIU writes one. */
	assert_int_equal(imgwrite_inventory_buf(&b, 2), 0);
	assert_int_equal(image_parse_inventory_buf(b.data, b.len, "inv", &version), 0);
	assert_int_equal(version, 2);
	{
		/* Append a copy of the record after the magic. */
		struct imgwrite_buf two = {0};

		assert_int_equal(imgwrite_inventory_buf(&two, 2), 0);
		assert_int_equal(imgwrite_inventory_buf(&two, 2), 0);
		memmove(two.data + b.len, two.data + b.len + 4, two.len - b.len - 4);
		two.len -= 4;
		imgwrite_buf_free(&b);
		b = two;
	}
	assert_int_equal(image_parse_inventory_buf(b.data, b.len, "inv", &version), -EBADMSG);
	/* Magic only: no record. */
	assert_int_equal(image_parse_inventory_buf(b.data, 4, "inv", &version), -EBADMSG);
	imgwrite_buf_free(&b);
	/* The buffer parsers reject versions other than 1 and 2 themselves. */
	assert_int_equal(image_parse_pstree_buf("", 0, "pstree", 3, NULL, NULL), -ERANGE);
	remove_file(f, "inventory.img");
	assert_int_equal(open_rc(f), -ENOENT);
}

static void test_reject_unsorted_pagemap(void **state)
{
	struct fixture *f = *state;
	struct img_pagemap_entry tmp = f->entries[4];

	f->entries[4] = f->entries[5];
	f->entries[5] = tmp;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Overlapping: the second entry starts inside the first. */
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->entries[1].vaddr = 0x13000;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Touching entries are fine. */
	memcpy(f->entries, std_entries, sizeof(std_entries));
	write_std(f);
	assert_int_equal(open_rc(f), 0);
}

static void test_reject_lazy_outside_vmas(void **state)
{
	struct fixture *f = *state;

	/* Entirely in the gap between B and C. */
	f->entries[4] =
	    (struct img_pagemap_entry){.vaddr = 0x30000, .nr_pages = 3, .flags = IMG_PE_LAZY};
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Starting in B and running into the gap. */
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->entries[3].nr_pages = 3;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* After the last VMA. */
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->entries[5].vaddr = 0x50000;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Below the first VMA. */
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->entries[0] = (struct img_pagemap_entry){.vaddr = 0x8000, .nr_pages = 2, .flags = PE_LP};
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* A non-lazy entry outside the VMAs is not the lazy daemon's business. */
	f->entries[0].flags = IMG_PE_PRESENT;
	write_std(f);
	assert_int_equal(open_rc(f), 0);
	/* A task without VMAs cannot have lazy pages. */
	f->tasks[0].nr_vmas = 0;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
}

static void test_reject_oversized_record(void **state)
{
	struct fixture *f = *state;
	uint32_t size = IMG_MAX_RECORD + 1;
	uint8_t junk[16] = {0};

	write_std(f);
	pwrite_at(f, "pagemap-10.img", 0, &size, sizeof(size), true);
	pwrite_at(f, "pagemap-10.img", 0, junk, sizeof(junk), true);
	assert_int_equal(open_rc(f), -ERANGE);
	/* At the limit the size is accepted, and the missing bytes are caught. */
	write_std(f);
	size = IMG_MAX_RECORD;
	pwrite_at(f, "pagemap-10.img", 0, &size, sizeof(size), true);
	assert_int_equal(open_rc(f), -EBADMSG);
	write_std(f);
	size = UINT32_MAX;
	patch_u32(f, "pstree.img", 8, size);
	assert_int_equal(open_rc(f), -ERANGE);
}

static void test_reject_pages_file(void **state)
{
	struct fixture *f = *state;

	write_std(f);
	assert_int_equal(size_of(f, "pages-7.img"), 22 * P);
	truncate_to(f, "pages-7.img", 22 * P - 1);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Longer is harmless. */
	truncate_to(f, "pages-7.img", 23 * P);
	assert_int_equal(open_rc(f), 0);
	remove_file(f, "pages-7.img");
	assert_int_equal(open_rc(f), -ENOENT);
	/* With no PE_PRESENT entry, as after `criu dump --lazy-pages`, it may be absent. */
	f->entries[0].flags = IMG_PE_PARENT;
	f->entries[1].flags = IMG_PE_LAZY;
	f->entries[5].flags = IMG_PE_LAZY;
	write_std(f);
	assert_int_equal(size_of(f, "pages-7.img"), 0);
	remove_file(f, "pages-7.img");
	assert_int_equal(open_rc(f), 0);
}

static void test_reject_missing_files(void **state)
{
	struct fixture *f = *state;

	write_std(f);
	remove_file(f, "mm-10.img");
	assert_int_equal(open_rc(f), -ENOENT);
	write_std(f);
	remove_file(f, "pagemap-10.img");
	assert_int_equal(open_rc(f), -ENOENT);
	/* Neither: the task has no memory, like a zombie. */
	remove_file(f, "mm-10.img");
	remove_file(f, "pages-7.img");
	assert_int_equal(open_rc(f), 0);
	remove_file(f, "pstree.img");
	assert_int_equal(open_rc(f), -ENOENT);
	write_std(f);
	/* A directory where a file should be. */
	remove_file(f, "mm-10.img");
	{
		char path[PATH_MAX];

		path_of(f, "mm-10.img", path, sizeof(path));
		assert_int_equal(mkdir(path, 0700), 0);
		assert_int_equal(open_rc(f), -EBADMSG);
		assert_int_equal(rmdir(path), 0);
	}
}

static void test_reject_bad_entries(void **state)
{
	struct fixture *f = *state;

	f->entries[2].nr_pages = 0;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->entries[2].vaddr += 8;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	memcpy(f->entries, std_entries, sizeof(std_entries));
	f->entries[5] = (struct img_pagemap_entry){
	    .vaddr = 0xffffffffffff0000ull, .nr_pages = 17, .flags = IMG_PE_PARENT};
	write_std(f);
	assert_int_equal(open_rc(f), -ERANGE);
	/* Up to the last page of the address space is fine. */
	f->entries[5].nr_pages = 15;
	write_std(f);
	assert_int_equal(open_rc(f), 0);
	/* A page count too big for the 3.17 encoding is refused by the writer. */
	f->entries[5] = (struct img_pagemap_entry){
	    .vaddr = 0x100000000000ull, .nr_pages = 1ull << 32, .flags = IMG_PE_PARENT};
	f->opts.encoding = IMGWRITE_ENC_317;
	assert_int_equal(imgwrite_dir(f->dir, &f->opts, f->tasks, 2), -ERANGE);
	f->opts.encoding = IMGWRITE_ENC_42;
	write_std(f);
	assert_int_equal(open_rc(f), 0);
	static const uint32_t bad_flags[] = {
	    8,
	    IMG_PE_PARENT | IMG_PE_PRESENT,
	    IMG_PE_LAZY | 0x100,
	};
	for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
		memcpy(f->entries, std_entries, sizeof(std_entries));
		f->entries[2].flags = bad_flags[i];
		write_std(f);
		assert_int_equal(open_rc(f), -EBADMSG);
	}
}

static void test_reject_bad_vmas(void **state)
{
	struct fixture *f = *state;

	f->vmas[2].end = f->vmas[2].start;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	memcpy(f->vmas, std_vmas, sizeof(std_vmas));
	f->vmas[2].start += 0x800;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	memcpy(f->vmas, std_vmas, sizeof(std_vmas));
	f->vmas[1].start = 0x1f000;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	/* Out of order but disjoint VMAs are sorted. */
	memcpy(f->vmas, std_vmas, sizeof(std_vmas));
	f->vmas[0] = std_vmas[2];
	f->vmas[2] = std_vmas[0];
	write_std(f);
	assert_int_equal(open_rc(f), 0);
	/* A guard VMA would overlap; it is dropped before the check. */
	f->tasks[0].guards = &std_guard;
	f->tasks[0].nr_guards = 1;
	write_std(f);
	assert_int_equal(open_rc(f), 0);
}

static void test_reject_bad_pids(void **state)
{
	struct fixture *f = *state;

	f->tasks[1].pid = PID;
	write_std(f);
	assert_int_equal(open_rc(f), -EBADMSG);
	f->tasks[1].pid = 0;
	write_std(f);
	assert_int_equal(open_rc(f), -ERANGE);
	f->tasks[1].pid = IMG_PID_MAX + 1;
	write_std(f);
	assert_int_equal(open_rc(f), -ERANGE);
	f->tasks[1].pid = -5;
	write_std(f);
	assert_int_equal(open_rc(f), -ERANGE);
	f->tasks[1].pid = IMG_PID_MAX;
	write_std(f);
	assert_int_equal(open_rc(f), 0);
	/* An empty process tree. */
	{
		struct imgwrite_buf b = {0};
		int32_t *pids = NULL;
		size_t nr = 0;

		assert_int_equal(imgwrite_pstree_buf(&b, 2, f->tasks, 0), 0);
		assert_int_equal(image_parse_pstree_buf(b.data, b.len, "pstree", 2, &pids, &nr),
				 -EBADMSG);
		assert_null(pids);
		imgwrite_buf_free(&b);
	}
}

/* Packs one PagemapEntry record with both page count fields under test control. */
static void push_entry(struct imgwrite_buf *b, uint64_t vaddr, bool has2, uint32_t n2, bool has5,
		       uint64_t n5)
{
	Criuimg__PagemapEntry pe = CRIUIMG__PAGEMAP_ENTRY__INIT;
	size_t size;
	uint32_t le;

	pe.vaddr = vaddr;
	pe.has_compat_nr_pages = has2;
	pe.compat_nr_pages = n2;
	pe.has_nr_pages = has5;
	pe.nr_pages = n5;
	pe.has_flags = true;
	pe.flags = IMG_PE_PRESENT;
	size = criuimg__pagemap_entry__get_packed_size(&pe);
	b->data = realloc(b->data, b->len + 4 + size);
	assert_non_null(b->data);
	le = (uint32_t)size;
	memcpy(b->data + b->len, &le, 4);
	criuimg__pagemap_entry__pack(&pe, b->data + b->len + 4);
	b->len += 4 + size;
	b->cap = b->len;
}

static int parse_pm(const struct imgwrite_buf *b, struct img_task *t, bool *v42)
{
	image_task_clear(t);
	return image_parse_pagemap_buf(b->data, b->len, "pagemap", 2, t, v42);
}

static void test_pagemap_buf_counts(void **state)
{
	struct fixture *f = *state;
	struct imgwrite_buf b = {0};
	struct img_task t = {.pid = 1};
	size_t head_len;
	bool v42 = true;

	f->tasks[0].nr_entries = 0;
	assert_int_equal(imgwrite_pagemap_buf(&b, &f->opts, &f->tasks[0]), 0);
	head_len = b.len;
	/* Head only: no pages. */
	assert_int_equal(parse_pm(&b, &t, &v42), 0);
	assert_false(v42);
	assert_int_equal(t.pages_id, PAGES_ID);
	assert_int_equal(t.nr_entries, 0);
	/* Magic only: no PagemapHead. */
	assert_int_equal(image_parse_pagemap_buf(b.data, 8, "pagemap", 2, &t, NULL), -EBADMSG);
	/* Field 2 alone (3.17). */
	push_entry(&b, 0x1000, true, 3, false, 0);
	assert_int_equal(parse_pm(&b, &t, &v42), 0);
	assert_false(v42);
	assert_int_equal(t.entries[0].nr_pages, 3);
	assert_int_equal(t.pages_file_size, 3 * P);
	/* Field 5 with field 2 at 0 (4.2). */
	push_entry(&b, 0x4000, true, 0, true, 5);
	assert_int_equal(parse_pm(&b, &t, &v42), 0);
	assert_true(v42);
	assert_int_equal(t.entries[1].nr_pages, 5);
	assert_int_equal(t.entries[1].pages_off, 3 * P);
	/* Field 5 alone, and both agreeing. */
	push_entry(&b, 0x9000, false, 0, true, 1);
	push_entry(&b, 0xa000, true, 2, true, 2);
	assert_int_equal(parse_pm(&b, &t, NULL), 0);
	assert_int_equal(t.nr_entries, 4);
	assert_int_equal(t.pages_file_size, 11 * P);
	/* Disagreeing counts. */
	b.len = head_len;
	push_entry(&b, 0x1000, true, 2, true, 3);
	assert_int_equal(parse_pm(&b, &t, NULL), -EBADMSG);
	assert_null(t.entries);
	/* No count at all. */
	b.len = head_len;
	push_entry(&b, 0x1000, false, 0, false, 0);
	assert_int_equal(parse_pm(&b, &t, NULL), -EBADMSG);
	/* A record that is not a PagemapEntry (vaddr missing). */
	b.len = head_len;
	{
		static const uint8_t rec[] = {2, 0, 0, 0, 0x10, 0x01};

		memcpy(b.data + b.len, rec, sizeof(rec));
		b.len += sizeof(rec);
	}
	assert_int_equal(parse_pm(&b, &t, NULL), -EBADMSG);
	image_task_clear(&t);
	assert_int_equal(t.pid, 1);
	imgwrite_buf_free(&b);
}

/* CRIU's framing, byte for byte, for one lazy entry in both encodings. */
static void test_writer_bytes(void **state)
{
	static const uint8_t v317[] = {
	    0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56, 0x02, 0x00,
	    0x00, 0x00, 0x08, 0x01, 0x0c, 0x00, 0x00, 0x00, 0x08, 0x80,
	    0x80, 0xd8, 0xa2, 0xa3, 0xe2, 0x1f, 0x10, 0x10, 0x20, 0x02,
	};
	static const uint8_t v42_tail[] = {0x0e, 0x00, 0x00, 0x00, 0x08, 0x80, 0x80, 0xd8, 0xa2,
					   0xa3, 0xe2, 0x1f, 0x10, 0x00, 0x20, 0x02, 0x28, 0x10};
	static const struct img_pagemap_entry e = {
	    .vaddr = 0x7f1234560000, .nr_pages = 16, .flags = IMG_PE_LAZY};
	struct imgwrite_task t = {.pid = 1, .pages_id = 1, .entries = &e, .nr_entries = 1};
	struct imgwrite_opts o = {.img_version = 2, .encoding = IMGWRITE_ENC_317};
	struct imgwrite_buf b = {0};

	assert_int_equal(imgwrite_pagemap_buf(&b, &o, &t), 0);
	assert_int_equal(b.len, sizeof(v317));
	assert_memory_equal(b.data, v317, sizeof(v317));
	imgwrite_buf_free(&b);
	o.encoding = IMGWRITE_ENC_42;
	assert_int_equal(imgwrite_pagemap_buf(&b, &o, &t), 0);
	assert_int_equal(b.len, 14 + sizeof(v42_tail));
	assert_memory_equal(b.data, v317, 14);
	assert_memory_equal(b.data + 14, v42_tail, sizeof(v42_tail));
	imgwrite_buf_free(&b);
	/* inventory.img: its own magic only, then InventoryEntry{img_version 2, fdinfo_per_id}. */
	{
		static const uint8_t inv[] = {0x16, 0x31, 0x31, 0x58, 0x04, 0x00,
					      0x00, 0x00, 0x08, 0x02, 0x10, 0x01};

		assert_int_equal(imgwrite_inventory_buf(&b, 2), 0);
		assert_int_equal(b.len, sizeof(inv));
		assert_memory_equal(b.data, inv, sizeof(inv));
		imgwrite_buf_free(&b);
	}
}

static void test_vma_can_be_lazy(void **state)
{
	struct img_vma v = {.flags = ANON_PRIV, .prot = RW, .status = 1};

	assert_true(image_vma_can_be_lazy(&v));
	v.flags = MAP_SHARED | MAP_ANONYMOUS;
	assert_false(image_vma_can_be_lazy(&v));
	v.flags = MAP_PRIVATE;
	assert_false(image_vma_can_be_lazy(&v));
	v.flags = ANON_PRIV | MAP_LOCKED;
	assert_false(image_vma_can_be_lazy(&v));
	v.flags = ANON_PRIV | MAP_HUGETLB;
	assert_false(image_vma_can_be_lazy(&v));
	v.flags = ANON_PRIV;
	v.status |= IMG_VMA_AREA_VVAR;
	assert_false(image_vma_can_be_lazy(&v));
	v.status = IMG_VMA_AREA_VSYSCALL;
	assert_false(image_vma_can_be_lazy(&v));
}

static void test_pattern(void **state)
{
	uint8_t page[IMG_PAGE_SIZE], zero[IMG_PAGE_SIZE] = {0};
	uint64_t bad = 0;

	pattern_fill(page, 0x7e0000001000, 42);
	assert_int_equal(pattern_check(page, 0x7e0000001000, 42, NULL), 0);
	assert_int_equal(pattern_check(page, 0x7e0000002000, 42, &bad), -EBADMSG);
	assert_int_equal(bad, 0x7e0000002000);
	assert_int_equal(pattern_check(page, 0x7e0000001000, 43, NULL), -EBADMSG);
	page[100] ^= 1;
	assert_int_equal(pattern_check(page, 0x7e0000001000, 42, &bad), -EBADMSG);
	assert_int_equal(bad, 0x7e0000001000 + 96);
	assert_int_equal(pattern_check(zero, 0x7e0000001000, 42, NULL), -EBADMSG);
	assert_int_not_equal(pattern_seed_for_pid(1), pattern_seed_for_pid(2));
	/* Pinned: stand-ins elsewhere recompute these words. */
	assert_int_equal(pattern_word(0, 0), 0xe220a8397b1dcdafull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cut_lazy),
	    cmocka_unit_test_setup_teardown(test_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chain_reject, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roundtrip_317, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roundtrip_42_guard, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roundtrip_v1_legacy_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_clipping, setup, teardown),
	    cmocka_unit_test(test_fixture_317),
	    cmocka_unit_test(test_fixture_42),
	    cmocka_unit_test_setup_teardown(test_reject_truncated_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_wrong_magic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_inventory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_unsorted_pagemap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_lazy_outside_vmas, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_oversized_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_pages_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_missing_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_bad_entries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_bad_vmas, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_bad_pids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pagemap_buf_counts, setup, teardown),
	    cmocka_unit_test(test_writer_bytes),
	    cmocka_unit_test(test_vma_can_be_lazy),
	    cmocka_unit_test(test_pattern),
	};

	log_init("test_image", LOG_LVL_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
