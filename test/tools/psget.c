// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-psget: pulls every lazy page out of a running `criu dump
 * --lazy-pages` through source-agent/criupsrv.c, the way rdmig-source's
 * lazy dump will, and optionally compares each page byte for byte with a
 * plain dump of the same (stopped) tasks.  For the soft-RoCE guest test
 * (test/rxe/lib/criu-migrate.sh psget).
 *
 *   rdmig-psget -D LAZYDIR --address A --port P [--compare PLAINDIR]
 *   rdmig-psget -D LAZYDIR --address A --port P --break
 *
 * LAZYDIR is the lazy dump's images directory (its pagemaps name the
 * PE_LAZY ranges; their data is only in the dump's page server).  Every
 * range is asked for at once (criupsrv pipelines and splits them), then
 * the session is closed with PS_IOV_CLOSE.  Prints one JSON line:
 * {"tasks", "ranges", "pages", "bytes", "compared", "mismatched",
 *  "close_status", "error"} and exits 0 when every page came and matched.
 *
 * --break asks for one page at address 0 of the first task, which no dump
 * has lazy: CRIU's page server fails its transfer (the path on which it
 * resumes the dumped tasks), and rdmig-psget exits 0 when the session
 * failed as it should.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "source-agent/criupsrv.h"

struct pull {
	struct event_base *base;
	struct criupsrv *ps;
	size_t outstanding;
	int error;	  /* first failure, negative errno */
	int close_status; /* the dump's answer to PS_IOV_CLOSE */
	bool closed;
};

struct range_req {
	struct criupsrv_req r;
};

static void range_done(struct criupsrv_req *r, int status, void *arg)
{
	struct pull *p = arg;

	(void)r;
	if (status < 0 && !p->error)
		p->error = status;
	if (--p->outstanding == 0 && !p->error && criupsrv_close(p->ps) < 0)
		p->error = -EPROTO;
}

static void pull_failed(struct criupsrv *ps, int err, void *arg)
{
	struct pull *p = arg;

	(void)ps;
	if (!p->error)
		p->error = err;
	event_base_loopexit(p->base, NULL);
}

static void pull_closed(struct criupsrv *ps, int status, void *arg)
{
	struct pull *p = arg;

	(void)ps;
	p->closed = true;
	p->close_status = status;
	event_base_loopexit(p->base, NULL);
}

static const struct criupsrv_ops pull_ops = {.failed = pull_failed, .closed = pull_closed};

/* The plain dump's copy of one page at dump-time address vaddr, into page. */
static int plain_page(const struct img_task *t, int fd, uint64_t vaddr, void *page)
{
	const struct img_pagemap_entry *e;
	size_t i;

	for (i = 0; i < t->nr_entries; i++) {
		e = &t->entries[i];
		if (vaddr < e->vaddr || vaddr >= e->vaddr + e->nr_pages * IMG_PAGE_SIZE)
			continue;
		if (!(e->flags & IMG_PE_PRESENT))
			return -ENOENT;
		if (pread(fd, page, IMG_PAGE_SIZE, (off_t)(e->pages_off + (vaddr - e->vaddr))) !=
		    IMG_PAGE_SIZE)
			return -EIO;
		return 0;
	}
	return -ENOENT;
}

/* Pages of task t (in buf, in lazy-range order) that differ from the plain dump. */
static int compare_task(const struct img_set *plain, const struct img_task *lt, const uint8_t *buf,
			uint64_t *compared, uint64_t *mismatched)
{
	const struct img_task *pt = image_set_task(plain, lt->pid);
	uint8_t page[IMG_PAGE_SIZE];
	char path[4096];
	uint64_t off;
	size_t i;
	int fd, ret = 0;

	if (!pt || image_pages_path(plain, pt, path, sizeof(path)) < 0)
		return -ENOENT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (i = 0; i < lt->nr_lazy; i++) {
		for (off = 0; off < lt->lazy[i].len; off += IMG_PAGE_SIZE) {
			ret = plain_page(pt, fd, lt->lazy[i].vaddr + off, page);
			if (ret < 0) {
				log_err("pid %d: no page at %#" PRIx64 " in the plain dump",
					lt->pid, lt->lazy[i].vaddr + off);
				goto out;
			}
			(*compared)++;
			if (memcmp(page, buf, IMG_PAGE_SIZE)) {
				if (!*mismatched)
					log_err("pid %d: page %#" PRIx64 " differs", lt->pid,
						lt->lazy[i].vaddr + off);
				(*mismatched)++;
			}
			buf += IMG_PAGE_SIZE;
		}
	}
out:
	close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"images-dir", required_argument, NULL, 'D'},
	    {"address", required_argument, NULL, 'a'},
	    {"port", required_argument, NULL, 'p'},
	    {"compare", required_argument, NULL, 'c'},
	    {"break", no_argument, NULL, 'b'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *addr = "127.0.0.1", *port = NULL, *cmp = NULL;
	struct img_set *set = NULL, *plain = NULL;
	struct range_req *reqs = NULL;
	uint8_t **bufs = NULL;
	struct pull p = {0};
	uint64_t pages = 0, compared = 0, mismatched = 0, off;
	size_t i, j, n = 0, k = 0;
	bool brk = false;
	int c, ret;

	log_init("rdmig-psget", LOG_LVL_INFO);
	while ((c = getopt_long(argc, argv, "D:a:p:c:b", lo, NULL)) != -1) {
		switch (c) {
		case 'D':
			dir = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		case 'p':
			port = optarg;
			break;
		case 'c':
			cmp = optarg;
			break;
		case 'b':
			brk = true;
			break;
		default:
			return 2;
		}
	}
	if (!dir || !port) {
		fprintf(stderr, "usage: rdmig-psget -D LAZYDIR --address A --port P "
				"[--compare PLAINDIR]\n");
		return 2;
	}
	ret = image_set_open(dir, &set);
	if (ret < 0)
		goto out;
	if (cmp) {
		ret = image_set_open(cmp, &plain);
		if (ret < 0)
			goto out;
	}
	for (i = 0; i < set->nr_tasks; i++)
		n += set->tasks[i].nr_lazy;
	reqs = calloc(n ? n : 1, sizeof(*reqs));
	bufs = calloc(set->nr_tasks ? set->nr_tasks : 1, sizeof(*bufs));
	p.base = event_base_new();
	if (!reqs || !bufs || !p.base) {
		ret = -ENOMEM;
		goto out;
	}
	ret = criupsrv_connect(p.base, addr, port,
			       set->pagemap_v42 ? CRIUPSRV_WIRE_42 : CRIUPSRV_WIRE_317, &pull_ops,
			       &p, &p.ps);
	if (ret < 0)
		goto out;
	for (i = 0; i < set->nr_tasks; i++) {
		const struct img_task *t = &set->tasks[i];

		if (brk && i == 0) {
			bufs[0] = malloc(IMG_PAGE_SIZE);
			if (!bufs[0]) {
				ret = -ENOMEM;
				goto out;
			}
			reqs[0] = (struct range_req){.r = {.vpid = (uint32_t)t->pid,
							   .nr_pages = 1,
							   .buf = bufs[0],
							   .done = range_done,
							   .arg = &p}};
			ret = criupsrv_get(p.ps, &reqs[0].r);
			if (ret < 0)
				goto out;
			p.outstanding++;
			break;
		}
		if (!t->nr_lazy)
			continue;
		bufs[i] = malloc(t->lazy_bytes);
		if (!bufs[i]) {
			ret = -ENOMEM;
			goto out;
		}
		for (j = 0, off = 0; j < t->nr_lazy; j++, k++) {
			reqs[k].r.vpid = (uint32_t)t->pid;
			reqs[k].r.vaddr = t->lazy[j].vaddr;
			reqs[k].r.nr_pages = t->lazy[j].len / IMG_PAGE_SIZE;
			reqs[k].r.buf = bufs[i] + off;
			reqs[k].r.done = range_done;
			reqs[k].r.arg = &p;
			off += t->lazy[j].len;
			pages += reqs[k].r.nr_pages;
			ret = criupsrv_get(p.ps, &reqs[k].r);
			if (ret < 0)
				goto out;
			p.outstanding++;
		}
	}
	if (!p.outstanding && criupsrv_close(p.ps) < 0) {
		ret = -EPROTO;
		goto out;
	}
	event_base_dispatch(p.base);
	ret = p.error ? p.error : p.closed ? 0 : -ECONNRESET;
	if (ret == 0 && p.close_status != 0)
		ret = -EPROTO;
	for (i = 0; ret == 0 && plain && i < set->nr_tasks; i++)
		if (set->tasks[i].nr_lazy)
			ret = compare_task(plain, &set->tasks[i], bufs[i], &compared, &mismatched);
out:
	printf("{\"tasks\": %zu, \"ranges\": %zu, \"pages\": %" PRIu64 ", \"bytes\": %" PRIu64
	       ", \"compared\": %" PRIu64 ", \"mismatched\": %" PRIu64
	       ", \"close_status\": %d, \"error\": \"%s\"}\n",
	       set ? set->nr_tasks : 0, n, pages, pages * IMG_PAGE_SIZE, compared, mismatched,
	       p.close_status, ret < 0 ? strerror(-ret) : "");
	criupsrv_free(p.ps);
	if (p.base)
		event_base_free(p.base);
	for (i = 0; bufs && set && i < set->nr_tasks; i++)
		free(bufs[i]);
	free(bufs);
	free(reqs);
	image_set_free(plain);
	image_set_free(set);
	if (brk)
		return ret == -ECONNRESET ? 0 : 1;
	return ret < 0 || mismatched ? 1 : 0;
}
