// SPDX-License-Identifier: GPL-2.0-or-later
#include "imgwrite.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu-inventory.pb-c.h"
#include "criu-mm.pb-c.h"
#include "criu-pagemap.pb-c.h"
#include "criu-pstree.pb-c.h"
#include "log.h"

/* Pages are written in chunks of this many bytes. */
#define IMGWRITE_CHUNK (1u << 20)

void imgwrite_buf_free(struct imgwrite_buf *b)
{
	free(b->data);
	*b = (struct imgwrite_buf){0};
}

static int imgwrite_reserve(struct imgwrite_buf *b, size_t more)
{
	size_t ncap;
	uint8_t *n;

	if (more <= b->cap - b->len)
		return 0;
	if (more > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	ncap = b->cap ? b->cap : 256;
	while (ncap - b->len < more)
		ncap *= 2;
	n = realloc(b->data, ncap);
	if (!n)
		return -ENOMEM;
	b->data = n;
	b->cap = ncap;
	return 0;
}

static int imgwrite_u32(struct imgwrite_buf *b, uint32_t v)
{
	uint32_t le = htole32(v);
	int ret = imgwrite_reserve(b, sizeof(le));

	if (ret < 0)
		return ret;
	memcpy(b->data + b->len, &le, sizeof(le));
	b->len += sizeof(le);
	return 0;
}

static int imgwrite_magic(struct imgwrite_buf *b, uint32_t img_version, uint32_t magic)
{
	int ret = 0;

	if (img_version == 2)
		ret = imgwrite_u32(b, IMG_MAGIC_COMMON);
	if (ret == 0)
		ret = imgwrite_u32(b, magic);
	return ret;
}

/* Appends one [u32 size][packed message] record. */
static int imgwrite_record(struct imgwrite_buf *b, const ProtobufCMessage *msg)
{
	size_t size = protobuf_c_message_get_packed_size(msg);
	int ret;

	if (size > IMG_MAX_RECORD)
		return -ERANGE;
	ret = imgwrite_u32(b, (uint32_t)size);
	if (ret == 0)
		ret = imgwrite_reserve(b, size);
	if (ret < 0)
		return ret;
	b->len += protobuf_c_message_pack(msg, b->data + b->len);
	return 0;
}

int imgwrite_inventory_buf(struct imgwrite_buf *b, uint32_t img_version)
{
	Criuimg__InventoryEntry inv = CRIUIMG__INVENTORY_ENTRY__INIT;
	int ret;

	inv.img_version = img_version;
	inv.has_fdinfo_per_id = true;
	inv.fdinfo_per_id = true;
	ret = imgwrite_u32(b, IMG_MAGIC_INVENTORY);
	if (ret == 0)
		ret = imgwrite_record(b, &inv.base);
	return ret;
}

int imgwrite_pstree_buf(struct imgwrite_buf *b, uint32_t img_version,
			const struct imgwrite_task *tasks, size_t nr_tasks)
{
	int ret = imgwrite_magic(b, img_version, IMG_MAGIC_PSTREE);

	for (size_t i = 0; ret == 0 && i < nr_tasks; i++) {
		Criuimg__PstreeEntry pe = CRIUIMG__PSTREE_ENTRY__INIT;
		uint32_t thread = (uint32_t)tasks[i].pid;

		pe.pid = (uint32_t)tasks[i].pid;
		pe.has_ppid = pe.has_pgid = pe.has_sid = true;
		pe.ppid = (uint32_t)tasks[i].ppid;
		/* One session and group led by the first task, as for a shell job. */
		pe.pgid = pe.sid = (uint32_t)tasks[0].pid;
		pe.n_threads = 1;
		pe.threads = &thread;
		ret = imgwrite_record(b, &pe.base);
	}
	return ret;
}

static void imgwrite_vma_entry(Criuimg__VmaEntry *ve, const struct img_vma *v, uint32_t status)
{
	criuimg__vma_entry__init(ve);
	ve->start = v->start;
	ve->end = v->end;
	ve->pgoff = v->pgoff;
	ve->has_shmid = true;
	ve->shmid = 0;
	ve->prot = v->prot;
	ve->flags = v->flags;
	ve->status = status;
	ve->has_fd = true;
	ve->fd = -1;
}

int imgwrite_mm_buf(struct imgwrite_buf *b, uint32_t img_version, const struct imgwrite_task *task)
{
	Criuimg__MmEntry mm = CRIUIMG__MM_ENTRY__INIT;
	Criuimg__VmaEntry *ves = NULL, **vps = NULL;
	size_t n = task->nr_vmas + task->nr_guards;
	int ret;

	ret = imgwrite_magic(b, img_version, IMG_MAGIC_MM);
	if (ret < 0)
		goto out;
	if (n) {
		ves = calloc(n, sizeof(*ves));
		vps = calloc(n, sizeof(*vps));
		if (!ves || !vps) {
			ret = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < task->nr_vmas; i++)
		imgwrite_vma_entry(&ves[i], &task->vmas[i], task->vmas[i].status);
	for (size_t i = 0; i < task->nr_guards; i++)
		imgwrite_vma_entry(&ves[task->nr_vmas + i], &task->guards[i],
				   task->guards[i].status | IMG_VMA_AREA_GUARD);
	for (size_t i = 0; i < n; i++)
		vps[i] = &ves[i];
	/* CRIU requires these; a synthetic process has no code, data or stack areas. */
	mm.has_mm_start_code = mm.has_mm_end_code = mm.has_mm_start_data = true;
	mm.has_mm_end_data = mm.has_mm_start_stack = mm.has_mm_start_brk = true;
	mm.has_mm_brk = mm.has_mm_arg_start = mm.has_mm_arg_end = true;
	mm.has_mm_env_start = mm.has_mm_env_end = mm.has_exe_file_id = true;
	mm.n_vmas = n;
	mm.vmas = vps;
	ret = imgwrite_record(b, &mm.base);
out:
	free(ves);
	free(vps);
	return ret;
}

int imgwrite_pagemap_buf(struct imgwrite_buf *b, const struct imgwrite_opts *opts,
			 const struct imgwrite_task *task)
{
	Criuimg__PagemapHead head = CRIUIMG__PAGEMAP_HEAD__INIT;
	uint32_t img_version = opts->img_version ? opts->img_version : 2;
	int ret;

	ret = imgwrite_magic(b, img_version, IMG_MAGIC_PAGEMAP);
	if (ret < 0)
		return ret;
	head.pages_id = task->pages_id;
	ret = imgwrite_record(b, &head.base);
	for (size_t i = 0; ret == 0 && i < task->nr_entries; i++) {
		const struct img_pagemap_entry *e = &task->entries[i];
		Criuimg__PagemapEntry pe = CRIUIMG__PAGEMAP_ENTRY__INIT;

		pe.vaddr = e->vaddr;
		pe.has_compat_nr_pages = true;
		if (opts->encoding == IMGWRITE_ENC_42) {
			pe.has_nr_pages = true;
			pe.nr_pages = e->nr_pages;
		} else if (e->nr_pages > UINT32_MAX) {
			log_err("pagemap-%" PRId32 ".img: entry 0x%" PRIx64 ": %" PRIu64
				" pages do not fit the 3.17 encoding",
				task->pid, e->vaddr, e->nr_pages);
			return -ERANGE;
		} else {
			pe.compat_nr_pages = (uint32_t)e->nr_pages;
		}
		if (opts->legacy_flags && e->flags == IMG_PE_PRESENT) {
			/* No flags field at all means PE_PRESENT. */
		} else if (opts->legacy_flags && e->flags == IMG_PE_PARENT) {
			pe.has_in_parent = true;
			pe.in_parent = true;
		} else {
			pe.has_flags = true;
			pe.flags = e->flags;
		}
		ret = imgwrite_record(b, &pe.base);
	}
	return ret;
}

static int imgwrite_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= len) {
		log_err("%s/%s: path too long", dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int imgwrite_all(int fd, const char *path, const void *data, size_t len, uint64_t off)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int ret = -errno;

			log_err("%s: offset %" PRIu64 ": write: %s", path, off, strerror(-ret));
			return ret;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int imgwrite_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0) {
		int ret = -errno;

		log_err("%s: open: %s", path, strerror(-ret));
		return ret;
	}
	return fd;
}

static int imgwrite_close(int fd, const char *path, int ret)
{
	/* close() reports delayed write errors on some filesystems. */
	if (close(fd) < 0 && ret == 0) {
		ret = -errno;
		log_err("%s: close: %s", path, strerror(-ret));
	}
	return ret;
}

int imgwrite_file(const char *dir, const char *name, const struct imgwrite_buf *b)
{
	char path[PATH_MAX];
	int fd, ret;

	ret = imgwrite_path(path, sizeof(path), dir, name);
	if (ret < 0)
		return ret;
	fd = imgwrite_open(path);
	if (fd < 0)
		return fd;
	ret = imgwrite_all(fd, path, b->data, b->len, 0);
	return imgwrite_close(fd, path, ret);
}

int imgwrite_pages_file(const char *dir, const struct imgwrite_task *task)
{
	char path[PATH_MAX], name[64];
	uint8_t *chunk = NULL;
	uint64_t off = 0;
	size_t used = 0;
	int fd, ret;

	snprintf(name, sizeof(name), "pages-%" PRIu32 ".img", task->pages_id);
	ret = imgwrite_path(path, sizeof(path), dir, name);
	if (ret < 0)
		return ret;
	chunk = malloc(IMGWRITE_CHUNK);
	if (!chunk)
		return -ENOMEM;
	fd = imgwrite_open(path);
	if (fd < 0) {
		ret = fd;
		goto out_free;
	}
	for (size_t i = 0; ret == 0 && i < task->nr_entries; i++) {
		const struct img_pagemap_entry *e = &task->entries[i];

		if (!(e->flags & IMG_PE_PRESENT))
			continue;
		for (uint64_t p = 0; ret == 0 && p < e->nr_pages; p++) {
			uint64_t vaddr = e->vaddr + p * IMG_PAGE_SIZE;

			if (task->fill) {
				ret = task->fill(task->opaque, task->pid, vaddr, chunk + used);
				if (ret < 0) {
					log_err("%s: offset %" PRIu64 ": filling page 0x%" PRIx64
						": %s",
						path, off + used, vaddr, strerror(-ret));
					break;
				}
			} else {
				memset(chunk + used, 0, IMG_PAGE_SIZE);
			}
			used += IMG_PAGE_SIZE;
			if (used == IMGWRITE_CHUNK) {
				ret = imgwrite_all(fd, path, chunk, used, off);
				off += used;
				used = 0;
			}
		}
	}
	if (ret == 0 && used)
		ret = imgwrite_all(fd, path, chunk, used, off);
	ret = imgwrite_close(fd, path, ret);
out_free:
	free(chunk);
	return ret;
}

static int imgwrite_buf_to_file(const char *dir, const char *name, struct imgwrite_buf *b, int ret)
{
	if (ret == 0)
		ret = imgwrite_file(dir, name, b);
	imgwrite_buf_free(b);
	return ret;
}

int imgwrite_dir(const char *dir, const struct imgwrite_opts *opts,
		 const struct imgwrite_task *tasks, size_t nr_tasks)
{
	const struct imgwrite_opts defaults = {.img_version = 2, .encoding = IMGWRITE_ENC_42};
	struct imgwrite_opts o = opts ? *opts : defaults;
	struct imgwrite_buf b = {0};
	char name[64];
	int ret;

	if (!o.img_version)
		o.img_version = 2;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		ret = -errno;
		log_err("%s: mkdir: %s", dir, strerror(-ret));
		return ret;
	}
	ret = imgwrite_buf_to_file(dir, "inventory.img", &b,
				   imgwrite_inventory_buf(&b, o.img_version));
	if (ret == 0)
		ret = imgwrite_buf_to_file(dir, "pstree.img", &b,
					   imgwrite_pstree_buf(&b, o.img_version, tasks, nr_tasks));
	for (size_t i = 0; ret == 0 && i < nr_tasks; i++) {
		const struct imgwrite_task *t = &tasks[i];

		if (t->zombie)
			continue;
		snprintf(name, sizeof(name), "mm-%" PRId32 ".img", t->pid);
		ret = imgwrite_buf_to_file(dir, name, &b, imgwrite_mm_buf(&b, o.img_version, t));
		if (ret < 0)
			break;
		snprintf(name, sizeof(name), "pagemap-%" PRId32 ".img", t->pid);
		ret = imgwrite_buf_to_file(dir, name, &b, imgwrite_pagemap_buf(&b, &o, t));
		if (ret < 0)
			break;
		ret = imgwrite_pages_file(dir, t);
	}
	if (ret < 0)
		log_err("%s: writing images failed: %s", dir, strerror(-ret));
	return ret;
}
