// SPDX-License-Identifier: GPL-2.0-or-later
#include "imgmap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ctrl.h"
#include "log.h"
#include "msgauth.h"

/*
 * A range is hashed in steps of this much, and page hashes in batches of
 * this many bytes' worth, so a cancelled open stops within one step.
 */
#define IMGMAP_STEP (16u << 20)

static bool imgmap_stopped(const atomic_bool *stop)
{
	return stop && atomic_load(stop);
}

/* XXH3-64 of [data, data + len): the same value as one XXH3_64bits() call. */
static int range_csum(const uint8_t *data, uint64_t len, const atomic_bool *stop, uint64_t *out)
{
	XXH3_state_t *st;
	uint64_t off, n;
	int ret = 0;

	if (len <= IMGMAP_STEP) {
		*out = XXH3_64bits(data, len);
		return 0;
	}
	st = XXH3_createState();
	if (!st || XXH3_64bits_reset(st) != XXH_OK) {
		ret = -ENOMEM;
		goto out;
	}
	for (off = 0; off < len; off += n) {
		if (imgmap_stopped(stop)) {
			ret = -ECANCELED;
			goto out;
		}
		n = len - off < IMGMAP_STEP ? len - off : IMGMAP_STEP;
		if (XXH3_64bits_update(st, data + off, n) != XXH_OK) {
			ret = -EINVAL;
			goto out;
		}
	}
	*out = XXH3_64bits_digest(st);
out:
	XXH3_freeState(st);
	return ret;
}

static int map_file(struct imgmap_file *f)
{
	struct stat st;
	int fd, ret;

	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err("cannot open %s: %s", f->path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		log_err("cannot stat %s: %s", f->path, strerror(errno));
		goto out;
	}
	f->len = (size_t)st.st_size;
	ret = 0;
	if (f->len == 0)
		goto out;
	f->base = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f->base == MAP_FAILED) {
		ret = -errno;
		f->base = NULL;
		log_err("cannot map %s (%zu bytes): %s", f->path, f->len, strerror(errno));
	}
out:
	close(fd);
	return ret;
}

static int file_index(struct imgmap *map, const struct img_task *t, uint32_t *idx)
{
	char path[4096];
	struct imgmap_file *files;
	size_t i;
	int ret;

	for (i = 0; i < map->nr_files; i++) {
		if (map->files[i].pages_id == t->pages_id) {
			*idx = (uint32_t)i;
			return 0;
		}
	}
	ret = image_pages_path(map->set, t, path, sizeof(path));
	if (ret < 0)
		return ret;
	files = realloc(map->files, (map->nr_files + 1) * sizeof(*files));
	if (!files)
		return -ENOMEM;
	map->files = files;
	memset(&files[map->nr_files], 0, sizeof(*files));
	files[map->nr_files].pages_id = t->pages_id;
	files[map->nr_files].path = strdup(path);
	if (!files[map->nr_files].path)
		return -ENOMEM;
	map->nr_files++;
	ret = map_file(&files[map->nr_files - 1]);
	if (ret < 0)
		return ret;
	*idx = (uint32_t)(map->nr_files - 1);
	return 0;
}

static int task_build(struct imgmap *map, const struct img_task *t, struct imgmap_task *mt,
		      struct msgauth_pages *pages, const atomic_bool *stop)
{
	const struct imgmap_file *f;
	uint32_t idx;
	size_t i, p;
	int ret;

	mt->pid = t->pid;
	if (!t->has_memory || t->nr_lazy == 0)
		return 0;
	ret = file_index(map, t, &idx);
	if (ret < 0)
		return ret;
	f = &map->files[idx];
	mt->ranges = calloc(t->nr_lazy, sizeof(*mt->ranges));
	if (!mt->ranges)
		return -ENOMEM;
	for (i = 0; i < t->nr_lazy; i++) {
		const struct img_lazy_range *lr = &t->lazy[i];
		struct imgmap_range *r = &mt->ranges[i];
		const uint8_t *data;

		if (imgmap_stopped(stop))
			return -ECANCELED;
		if (lr->pages_off == IMG_NO_OFFSET) {
			/* A dump --lazy-pages image: the pages never reached the disk. */
			log_err("%s: task %d range 0x%" PRIx64 "+%" PRIu64
				" has no data in the images (dumped with --lazy-pages?)",
				f->path, t->pid, lr->vaddr, lr->len);
			return -ENODATA;
		}
		if (lr->pages_off > f->len || lr->len > f->len - lr->pages_off) {
			log_err("%s: task %d range 0x%" PRIx64 " needs bytes %" PRIu64 "..%" PRIu64
				" but the file has %zu",
				f->path, t->pid, lr->vaddr, lr->pages_off, lr->pages_off + lr->len,
				f->len);
			return -EBADMSG;
		}
		data = (const uint8_t *)f->base + lr->pages_off;
		r->img_vaddr = lr->vaddr;
		r->len = lr->len;
		r->file = idx;
		r->offset = lr->pages_off;
		ret = range_csum(data, lr->len, stop, &r->csum);
		if (ret < 0)
			return ret;
		if (pages) {
			r->page_hashes = calloc(lr->len / IMG_PAGE_SIZE, sizeof(uint64_t));
			if (!r->page_hashes)
				return -ENOMEM;
			for (p = 0; p < lr->len / IMG_PAGE_SIZE; p++) {
				if (p % (IMGMAP_STEP / IMG_PAGE_SIZE) == 0 && imgmap_stopped(stop))
					return -ECANCELED;
				ret = msgauth_page_tag(pages, data + p * IMG_PAGE_SIZE,
						       IMG_PAGE_SIZE, &r->page_hashes[p]);
				if (ret < 0)
					return ret;
			}
		}
		mt->nr_ranges++;
		map->lazy_bytes += lr->len;
	}
	return 0;
}

int imgmap_open(const char *dir, const uint8_t *page_key, const atomic_bool *stop,
		struct imgmap **out)
{
	struct msgauth_pages pages = {0};
	struct imgmap *map;
	size_t i, j;
	int ret;

	map = calloc(1, sizeof(*map));
	if (!map)
		return -ENOMEM;
	ret = page_key ? msgauth_pages_init(&pages, page_key) : 0;
	if (ret == 0)
		ret = image_set_open(dir, &map->set);
	if (ret < 0)
		goto out;
	map->tasks = calloc(map->set->nr_tasks ? map->set->nr_tasks : 1, sizeof(*map->tasks));
	if (!map->tasks) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < map->set->nr_tasks; i++) {
		ret = task_build(map, &map->set->tasks[i], &map->tasks[i], page_key ? &pages : NULL,
				 stop);
		map->nr_tasks = i + 1;
		if (ret < 0)
			goto out;
	}
	/* The same fold the destination computes over the tables it receives. */
	map->digest = 0;
	for (i = 0; i < map->nr_tasks; i++)
		for (j = 0; j < map->tasks[i].nr_ranges; j++)
			map->digest = ctrl_digest_add(map->digest, map->tasks[i].ranges[j].csum);
	ret = 0;
out:
	msgauth_pages_free(&pages);
	if (ret < 0) {
		imgmap_close(map);
		map = NULL;
	}
	*out = map;
	return ret;
}

void imgmap_close(struct imgmap *map)
{
	size_t i, j;

	if (!map)
		return;
	for (i = 0; i < map->nr_tasks; i++) {
		for (j = 0; j < map->tasks[i].nr_ranges; j++)
			free(map->tasks[i].ranges[j].page_hashes);
		free(map->tasks[i].ranges);
	}
	free(map->tasks);
	for (i = 0; i < map->nr_files; i++) {
		if (map->files[i].base)
			munmap(map->files[i].base, map->files[i].len);
		free(map->files[i].path);
	}
	free(map->files);
	image_set_free(map->set);
	free(map);
}

const struct imgmap_task *imgmap_task(const struct imgmap *map, int32_t pid)
{
	size_t i;

	for (i = 0; i < map->nr_tasks; i++)
		if (map->tasks[i].pid == pid)
			return &map->tasks[i];
	return NULL;
}

int imgmap_locate(const struct imgmap *map, int32_t pid, uint64_t img_vaddr, uint64_t len,
		  const void **data)
{
	const struct imgmap_task *t = imgmap_task(map, pid);
	size_t lo = 0, hi;

	if (!t)
		return -ESRCH;
	if (len == 0 || img_vaddr + len < img_vaddr)
		return -ERANGE;
	hi = t->nr_ranges;
	/* Last range starting at or below img_vaddr. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->ranges[mid].img_vaddr <= img_vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -ERANGE;
	{
		const struct imgmap_range *r = &t->ranges[lo - 1];
		const struct imgmap_file *f = &map->files[r->file];

		if (img_vaddr + len > r->img_vaddr + r->len)
			return -ERANGE;
		*data = (const uint8_t *)f->base + r->offset + (img_vaddr - r->img_vaddr);
	}
	return 0;
}
