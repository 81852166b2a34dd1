// SPDX-License-Identifier: GPL-2.0-or-later
#include "imgflat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgwrite.h"
#include "log.h"

/* The pages files of one task down the chain, opened as the copy needs them. */
struct flat_src {
	const struct img_set *set;
	const struct img_task *task;
	int fds[IMG_CHAIN_MAX];
};

/* imgwrite_fill_fn: one non-lazy page, from the round that holds it. */
static int flat_fill(void *opaque, int32_t pid, uint64_t vaddr, void *page)
{
	struct flat_src *fs = opaque;
	const struct img_task *t = fs->task;
	const struct img_pagemap_entry *e = NULL, *fe;
	struct img_lazy_range lr;
	char path[PATH_MAX];
	size_t lo = 0, hi, nr;
	ssize_t n;

	fe = image_task_resolved(t, &nr);
	hi = nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (fe[mid].vaddr + fe[mid].nr_pages * IMG_PAGE_SIZE <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < nr && fe[lo].vaddr <= vaddr)
		e = &fe[lo];
	if (!e || !(e->flags & IMG_PE_PRESENT) || e->src >= IMG_CHAIN_MAX)
		return -EINVAL;
	if (fs->fds[e->src] < 0) {
		lr = (struct img_lazy_range){.src = e->src};
		if (image_range_pages_path(fs->set, t, &lr, path, sizeof(path)) < 0)
			return -EINVAL;
		fs->fds[e->src] = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fs->fds[e->src] < 0) {
			log_err("%s: open: %s", path, strerror(errno));
			return -errno;
		}
	}
	n = pread(fs->fds[e->src], page, IMG_PAGE_SIZE, (off_t)(e->pages_off + (vaddr - e->vaddr)));
	if (n < 0)
		return -errno;
	return n == IMG_PAGE_SIZE ? 0 : -EBADMSG;
}

static int flat_task(const struct img_set *set, const struct img_task *t, const char *dir,
		     const struct imgwrite_opts *o)
{
	struct flat_src fs = {.set = set, .task = t};
	const struct img_pagemap_entry *fe;
	struct img_pagemap_entry *e = NULL;
	struct imgwrite_buf b = {0};
	struct imgwrite_task wt;
	char name[64];
	size_t nr;
	int ret;

	for (size_t i = 0; i < IMG_CHAIN_MAX; i++)
		fs.fds[i] = -1;
	fe = image_task_resolved(t, &nr);
	e = calloc(nr ? nr : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < nr; i++) {
		e[i] = fe[i];
		e[i].flags = fe[i].flags & IMG_PE_LAZY ? IMG_PE_LAZY : IMG_PE_PRESENT;
	}
	wt = (struct imgwrite_task){
	    .pid = t->pid,
	    .pages_id = t->pages_id,
	    .entries = e,
	    .nr_entries = nr,
	    .fill = flat_fill,
	    .opaque = &fs,
	};
	ret = imgwrite_pagemap_buf(&b, o, &wt);
	snprintf(name, sizeof(name), "pagemap-%" PRId32 ".img", t->pid);
	if (ret == 0)
		ret = imgwrite_file(dir, name, &b);
	/* Holds only what the flat pagemap marks PE_PRESENT: the non-lazy pages. */
	if (ret == 0)
		ret = imgwrite_pages_file(dir, &wt);
	for (size_t i = 0; i < IMG_CHAIN_MAX; i++)
		if (fs.fds[i] >= 0)
			close(fs.fds[i]);
	imgwrite_buf_free(&b);
	free(e);
	return ret;
}

/*
 * A set that needs no flat images: ones left in dir (say by a dump into the
 * same directory that did) would be shipped in place of its own.
 */
static int flat_remove(const struct img_set *set, const char *dir)
{
	char name[PATH_MAX + 32];
	int ret = 0;

	for (size_t i = 0; i < set->nr_tasks && ret == 0; i++) {
		const struct img_task *t = &set->tasks[i];

		snprintf(name, sizeof(name), "%s/pagemap-%" PRId32 ".img", dir, t->pid);
		if (unlink(name) < 0 && errno != ENOENT)
			ret = -errno;
		snprintf(name, sizeof(name), "%s/pages-%" PRIu32 ".img", dir, t->pages_id);
		if (ret == 0 && t->has_memory && unlink(name) < 0 && errno != ENOENT)
			ret = -errno;
	}
	if (ret == 0 && rmdir(dir) < 0 && errno != ENOENT)
		ret = -errno;
	if (ret < 0)
		log_err("%s: cannot remove the flat images an earlier mapping left: %s", dir,
			strerror(-ret));
	return ret;
}

int imgflat_write(const struct img_set *set)
{
	struct imgwrite_opts o = {
	    .img_version = set->img_version,
	    .encoding = set->pagemap_v42 ? IMGWRITE_ENC_42 : IMGWRITE_ENC_317,
	};
	char dir[PATH_MAX];
	int ret = 0;

	if (snprintf(dir, sizeof(dir), "%s/%s", set->dir, IMGFLAT_DIR) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	if (!set->parent && !set->relazied)
		return flat_remove(set, dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		log_err("%s: mkdir: %s", dir, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < set->nr_tasks && ret == 0; i++)
		if (set->tasks[i].has_memory)
			ret = flat_task(set, &set->tasks[i], dir, &o);
	if (ret == 0)
		log_info("%s: flat images for the destination written in %s", set->dir, dir);
	return ret;
}

int imgflat_ship_path(const char *dir, const char *name, char *buf, size_t len)
{
	struct stat st;
	int n;

	n = snprintf(buf, len, "%s/%s/%s", dir, IMGFLAT_DIR, name);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (lstat(buf, &st) == 0 && S_ISREG(st.st_mode))
		return 0;
	n = snprintf(buf, len, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
