// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-standin: stands in for processes restored by
 * `criu restore --lazy-pages`, so the destination can be tested without
 * CRIU.
 *
 * The main process plays `criu restore`: it connects to
 * <work-dir>/lazy-pages.socket once and forks one child per restored
 * process.  Each child plays a restored task: it maps its VMAs at their
 * dump-time addresses, fills the non-lazy pages from the pages file, opens
 * a userfaultfd with the features criu asks for, sends its pid and the
 * uffd over the shared connection (as CRIU does, from the task itself),
 * registers its lazy-able VMAs, and closes its own uffd.  The main process
 * then sends the zombies and FIN.  Each child then reads every page from
 * --threads threads and checks every byte: dumped pages against the
 * pattern (pattern.h), never-dumped pages against zero.
 *
 * Variants (run while the worker threads fault): --fork (a child verifies
 * everything too), --mremap (a lazy range part moves), --madvise
 * (MADV_DONTNEED: reads as zero after), --munmap.
 *
 * Exit: 0 every byte right; 1 a mismatch (the first is printed with its
 * address); 2 usage; 3 setup failed; 4 a task was killed; 5 timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "pattern.h"
#include "util.h"

#define PG  IMG_PAGE_SIZE
#define FIN 0x52535446u
#define NEED_FEATURES                                                                              \
	(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP |           \
	 UFFD_FEATURE_EVENT_REMOVE)
#define MAX_ZOMBIES 64
/* Pages per block in --access mixed. */
#define MIXED_RUN 16

enum access {
	ACC_SEQ,
	ACC_RANDOM,
	ACC_MIXED,
	ACC_STRIDE, /* every stride-th page, then again one page further, ... */
};

enum {
	EXIT_MISMATCH = 1,
	EXIT_USAGE = 2,
	EXIT_SETUP = 3,
	EXIT_KILLED = 4,
	EXIT_TIMEOUT = 5,
};

/* Parsed configuration: set once in main(), then read-only. */
struct opts {
	const char *images_dir;
	const char *work_dir;
	uint32_t threads;
	enum access access;
	uint32_t stride; /* pages, with ACC_STRIDE */
	bool fork;
	bool mremap;
	bool madvise;
	bool munmap;
	bool split;
	int32_t only_pid;
	int32_t send_pid; /* testing: sent instead of the task's pid */
	int32_t zombies[MAX_ZOMBIES];
	size_t nr_zombies;
	bool fixed_seed;
	uint64_t seed;
	uint32_t fin_delay_ms;
	bool after_drain;
	bool fault_before_fin;
	uint32_t timeout_s;
};

/* One page to check: where it is now and what it must hold. */
struct page_ref {
	uint64_t addr;	/* run-time address */
	uint64_t vaddr; /* dump-time address: the pattern's input */
};

/* A part of the largest lazy range a variant works on. */
struct target {
	uint64_t start;
	uint64_t len;
};

struct verify_ctx {
	const struct opts *o;
	const struct img_task *task;
	uint64_t seed;
	const char *who;
	atomic_uint_fast64_t checked;
	atomic_uint_fast64_t mismatches;
	pthread_mutex_t first_lock;
	bool have_first;
	char first[256];
};

struct worker {
	struct verify_ctx *vc;
	struct page_ref *pages;
	size_t nr_pages;
	uint64_t *lat; /* first-touch latency of each page that was not resident */
	size_t nr_lat;
	uint64_t rng;
	pthread_t thread;
};

/* Kept for the signal handler of the main process only. */
static pid_t *g_children;
static size_t g_nr_children;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rdmig-standin -D IMAGES_DIR [-W WORK_DIR] [--threads N]\n"
		"                     [--access seq|random|mixed|stride:N] [--fork] [--mremap] "
		"[--madvise]\n"
		"                     [--munmap] [--zombie PID]... [--pid PID] [--seed S]\n"
		"                     [--fin-delay MS] [--touch-after-drain] [--fault-before-fin]\n"
		"                     [--split]\n"
		"                     [--send-pid N] [--timeout SEC]\n"
		"Stands in for processes restored by `criu restore --lazy-pages`.\n"
		"  -D, --images-dir DIR  images written by rdmig-mkimage\n"
		"  -W, --work-dir DIR    where lazy-pages.socket is (default: DIR)\n"
		"  --threads N           reader threads per process (default 4)\n"
		"  --access A            seq, random, mixed or stride:N (every Nth page,\n"
		"                        then the pass again one page on; default seq)\n"
		"  --fork                fork during post-copy; the child checks every page too\n"
		"  --mremap              move part of a lazy range, check it at its new place\n"
		"  --madvise             MADV_DONTNEED part of a lazy range: it must read zero\n"
		"  --munmap              unmap part of a lazy range\n"
		"  --zombie PID          also announce PID as a zombie (repeatable)\n"
		"  --pid PID             stand in for this process of the images only\n"
		"                        (default: all of them; image zombies are announced)\n"
		"  --seed S              pattern seed given to rdmig-mkimage --seed\n"
		"  --fin-delay MS        let the processes fault MS before FIN is sent (FIN goes\n"
		"                        sooner once every process has exited)\n"
		"  --touch-after-drain   touch nothing until every lazy page is in (drain only)\n"
		"  --fault-before-fin    each process reads its first lazy page before FIN goes:\n"
		"                        a fault the destination serves before any drain\n"
		"  --split               send each pid a byte at a time\n"
		"  --send-pid N          testing: announce pid N instead of the real one\n"
		"  --timeout SEC         give up after SEC (default 120)\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum {
		O_THREADS = 256,
		O_ACCESS,
		O_FORK,
		O_MREMAP,
		O_MADVISE,
		O_MUNMAP,
		O_ZOMBIE,
		O_PID,
		O_SEED,
		O_FIN_DELAY,
		O_AFTER_DRAIN,
		O_FAULT_FIRST,
		O_SPLIT,
		O_SEND_PID,
		O_TIMEOUT,
	};
	static const struct option longopts[] = {
	    {"images-dir", required_argument, NULL, 'D'},
	    {"work-dir", required_argument, NULL, 'W'},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"access", required_argument, NULL, O_ACCESS},
	    {"fork", no_argument, NULL, O_FORK},
	    {"mremap", no_argument, NULL, O_MREMAP},
	    {"madvise", no_argument, NULL, O_MADVISE},
	    {"munmap", no_argument, NULL, O_MUNMAP},
	    {"zombie", required_argument, NULL, O_ZOMBIE},
	    {"pid", required_argument, NULL, O_PID},
	    {"seed", required_argument, NULL, O_SEED},
	    {"fin-delay", required_argument, NULL, O_FIN_DELAY},
	    {"touch-after-drain", no_argument, NULL, O_AFTER_DRAIN},
	    {"fault-before-fin", no_argument, NULL, O_FAULT_FIRST},
	    {"split", no_argument, NULL, O_SPLIT},
	    {"send-pid", required_argument, NULL, O_SEND_PID},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c, ret;

	while ((c = getopt_long(argc, argv, "D:W:h", longopts, NULL)) != -1) {
		ret = 0;
		switch (c) {
		case 'D':
			o->images_dir = optarg;
			break;
		case 'W':
			o->work_dir = optarg;
			break;
		case O_THREADS:
			ret = parse_uint(optarg, 1, 256, &v);
			o->threads = (uint32_t)v;
			break;
		case O_ACCESS:
			if (strcmp(optarg, "seq") == 0)
				o->access = ACC_SEQ;
			else if (strcmp(optarg, "random") == 0)
				o->access = ACC_RANDOM;
			else if (strcmp(optarg, "mixed") == 0)
				o->access = ACC_MIXED;
			else if (strncmp(optarg, "stride:", 7) == 0 &&
				 parse_uint(optarg + 7, 1, 1u << 20, &v) == 0) {
				o->access = ACC_STRIDE;
				o->stride = (uint32_t)v;
			} else
				ret = -EINVAL;
			break;
		case O_FORK:
			o->fork = true;
			break;
		case O_MREMAP:
			o->mremap = true;
			break;
		case O_MADVISE:
			o->madvise = true;
			break;
		case O_MUNMAP:
			o->munmap = true;
			break;
		case O_ZOMBIE:
			if (o->nr_zombies == MAX_ZOMBIES) {
				ret = -ERANGE;
				break;
			}
			ret = parse_uint(optarg, 1, IMG_PID_MAX, &v);
			o->zombies[o->nr_zombies++] = (int32_t)v;
			break;
		case O_PID:
			ret = parse_uint(optarg, 1, IMG_PID_MAX, &v);
			o->only_pid = (int32_t)v;
			break;
		case O_SEED:
			ret = parse_uint(optarg, 0, UINT64_MAX, &o->seed);
			o->fixed_seed = true;
			break;
		case O_FIN_DELAY:
			ret = parse_uint(optarg, 0, 600000, &v);
			o->fin_delay_ms = (uint32_t)v;
			break;
		case O_AFTER_DRAIN:
			o->after_drain = true;
			break;
		case O_FAULT_FIRST:
			o->fault_before_fin = true;
			break;
		case O_SPLIT:
			o->split = true;
			break;
		case O_SEND_PID:
			ret = parse_uint(optarg, 1, INT32_MAX, &v);
			o->send_pid = (int32_t)v;
			break;
		case O_TIMEOUT:
			ret = parse_uint(optarg, 1, 86400, &v);
			o->timeout_s = (uint32_t)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
		if (ret < 0) {
			fprintf(stderr, "rdmig-standin: bad value '%s'\n", optarg);
			return -EINVAL;
		}
	}
	if (optind != argc || !o->images_dir) {
		usage(stderr);
		return -EINVAL;
	}
	if (!o->work_dir)
		o->work_dir = o->images_dir;
	return 0;
}

/* ---- the restored task's side ---- */

/* What a page must hold: 1 pattern, 0 zero (never dumped). */
static int page_dumped(const struct img_task *t, uint64_t vaddr)
{
	size_t lo = 0, hi = t->nr_entries;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct img_pagemap_entry *e = &t->entries[mid];

		if (e->vaddr + e->nr_pages * PG <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < t->nr_entries && t->entries[lo].vaddr <= vaddr &&
	       (t->entries[lo].flags & (IMG_PE_LAZY | IMG_PE_PRESENT));
}

static int map_vmas(const struct img_task *t)
{
	for (size_t i = 0; i < t->nr_vmas; i++) {
		const struct img_vma *v = &t->vmas[i];
		void *p =
		    mmap((void *)(uintptr_t)v->start, v->end - v->start, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

		if (p == MAP_FAILED || p != (void *)(uintptr_t)v->start) {
			fprintf(stderr,
				"rdmig-standin: pid %d: map %#" PRIx64 "-%#" PRIx64 ": %s\n",
				t->pid, v->start, v->end,
				p == MAP_FAILED ? strerror(errno) : "moved by the kernel");
			return -1;
		}
		/*
		 * With THP "always", writing one non-lazy page before registration
		 * would fault in a whole zeroed 2 MiB page, and the lazy pages
		 * around it would never fault: criu restore fills small pages.
		 */
		if (madvise(p, v->end - v->start, MADV_NOHUGEPAGE) < 0 && errno != EINVAL) {
			fprintf(stderr, "rdmig-standin: pid %d: madvise %#" PRIx64 ": %s\n", t->pid,
				v->start, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* criu restore fills the non-lazy pages itself, before registration. */
static int fill_nonlazy(const struct img_set *set, const struct img_task *t)
{
	char path[4096];
	int fd, ret = 0;

	if (image_pages_path(set, t, path, sizeof(path)) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	for (size_t i = 0; i < t->nr_entries; i++) {
		const struct img_pagemap_entry *e = &t->entries[i];
		uint64_t len = e->nr_pages * PG;

		if (!(e->flags & IMG_PE_PRESENT) || (e->flags & IMG_PE_LAZY))
			continue;
		if (fd < 0 || pread(fd, (void *)(uintptr_t)e->vaddr, len, (off_t)e->pages_off) !=
				  (ssize_t)len) {
			fprintf(stderr, "rdmig-standin: pid %d: reading %s: %s\n", t->pid, path,
				fd < 0 ? strerror(errno) : "short read");
			ret = -1;
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

static int open_uffd(int *out)
{
	struct uffdio_api api = {.api = UFFD_API};
	uint64_t supported;
	int fd;

	/* Ask for the supported subset of what criu needs, as criu does. */
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0) {
		fprintf(stderr, "rdmig-standin: userfaultfd: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	supported = api.features;
	close(fd);
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	api = (struct uffdio_api){.api = UFFD_API, .features = supported & NEED_FEATURES};
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0) {
		fprintf(stderr, "rdmig-standin: UFFDIO_API: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*out = fd;
	return 0;
}

static int send_all(int sock, const void *buf, size_t len, bool split)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(sock, p, split ? 1 : len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		if (split && len)
			usleep(2000);
	}
	return 0;
}

/* The record criu's restored task sends: its pid, then the uffd with a 1-byte payload. */
static int send_uffd(int sock, int32_t pid, int uffd, bool split)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctrl;
	char byte = 0;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr mh = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = ctrl.buf,
	    .msg_controllen = sizeof(ctrl.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	if (send_all(sock, &pid, sizeof(pid), split) < 0)
		return -1;
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int register_vmas(const struct img_task *t, int uffd, uint64_t *registered)
{
	const uint64_t need =
	    (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);

	*registered = 0;
	for (size_t i = 0; i < t->nr_vmas; i++) {
		const struct img_vma *v = &t->vmas[i];
		struct uffdio_register r = {
		    .range = {.start = v->start, .len = v->end - v->start},
		    .mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (!image_vma_can_be_lazy(v))
			continue;
		if (ioctl(uffd, UFFDIO_REGISTER, &r) < 0) {
			fprintf(stderr, "rdmig-standin: pid %d: UFFDIO_REGISTER %#" PRIx64 ": %s\n",
				t->pid, v->start, strerror(errno));
			return -1;
		}
		if ((r.ioctls & need) != need)
			fprintf(stderr,
				"rdmig-standin: pid %d: %#" PRIx64 ": copy/zeropage/wake "
				"not all offered\n",
				t->pid, v->start);
		*registered += v->end - v->start;
	}
	return 0;
}

/* ---- verification ---- */

static uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void note_mismatch(struct verify_ctx *vc, const struct page_ref *p, uint64_t bad_addr,
			  uint64_t want, uint64_t got)
{
	atomic_fetch_add(&vc->mismatches, 1);
	pthread_mutex_lock(&vc->first_lock);
	if (!vc->have_first) {
		vc->have_first = true;
		snprintf(vc->first, sizeof(vc->first),
			 "MISMATCH %s at %#" PRIx64 " (page %#" PRIx64 ", dump address %#" PRIx64
			 "): expected %#018" PRIx64 ", got %#018" PRIx64,
			 vc->who, bad_addr, p->addr, p->vaddr + (bad_addr - p->addr), want, got);
	}
	pthread_mutex_unlock(&vc->first_lock);
}

/* Checks one page; lat gets its first-touch time if it was not resident. */
static void verify_page(struct verify_ctx *vc, const struct page_ref *p, bool expect_zero,
			uint64_t *lat, bool *faulted)
{
	const volatile uint64_t *w = (const uint64_t *)(uintptr_t)p->addr;
	unsigned char res = 1;
	uint64_t t0, first, bad = 0;
	bool dumped = !expect_zero && page_dumped(vc->task, p->vaddr);

	mincore((void *)(uintptr_t)p->addr, PG, &res);
	t0 = mono_ns();
	first = w[0];
	*lat = mono_ns() - t0;
	*faulted = !(res & 1);
	(void)first;
	if (dumped) {
		if (pattern_check((const void *)(uintptr_t)p->addr, p->vaddr, vc->seed, &bad) < 0) {
			uint64_t off = bad - p->vaddr;

			note_mismatch(vc, p, p->addr + off, pattern_word(bad, vc->seed),
				      w[off / 8]);
		}
	} else {
		for (size_t i = 0; i < PG / 8; i++) {
			if (w[i]) {
				note_mismatch(vc, p, p->addr + i * 8, 0, w[i]);
				break;
			}
		}
	}
	atomic_fetch_add(&vc->checked, 1);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	size_t n = wk->nr_pages;
	size_t *order = NULL;

	if (wk->vc->o->access == ACC_STRIDE) {
		size_t k = 0, s = wk->vc->o->stride;

		order = malloc((n ? n : 1) * sizeof(*order));
		for (size_t off = 0; order && off < s; off++)
			for (size_t i = off; i < n; i += s)
				order[k++] = i;
	} else if (wk->vc->o->access != ACC_SEQ) {
		size_t run = wk->vc->o->access == ACC_MIXED ? MIXED_RUN : 1;
		size_t blocks = (n + run - 1) / run, k = 0;
		size_t *perm = malloc((blocks ? blocks : 1) * sizeof(*perm));

		order = malloc((n ? n : 1) * sizeof(*order));
		if (!perm || !order) {
			free(perm);
			free(order);
			order = NULL;
		} else {
			for (size_t i = 0; i < blocks; i++)
				perm[i] = i;
			for (size_t i = blocks; i > 1; i--) {
				size_t j = rnd_next(&wk->rng) % i, tmp = perm[i - 1];

				perm[i - 1] = perm[j];
				perm[j] = tmp;
			}
			for (size_t b = 0; b < blocks; b++)
				for (size_t i = perm[b] * run; i < n && i < (perm[b] + 1) * run;
				     i++)
					order[k++] = i;
			free(perm);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct page_ref *p = &wk->pages[order ? order[i] : i];
		uint64_t lat;
		bool faulted;

		verify_page(wk->vc, p, false, &lat, &faulted);
		if (faulted)
			wk->lat[wk->nr_lat++] = lat;
	}
	free(order);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank;

	if (!n)
		return 0;
	rank = (n * p + 99) / 100;
	return v[rank ? rank - 1 : 0];
}

/*
 * --touch-after-drain: waits, touching nothing, until mincore() shows every
 * lazy page resident (the background drain installed them all).
 */
static void wait_drained(const struct img_task *t, const char *who)
{
	size_t cap = 0;
	unsigned char *vec;
	uint64_t t0 = mono_ns();

	for (size_t i = 0; i < t->nr_lazy; i++)
		if (t->lazy[i].len / PG > cap)
			cap = t->lazy[i].len / PG;
	vec = malloc(cap ? cap : 1);
	if (!vec)
		_exit(EXIT_SETUP);
	for (;;) {
		size_t i;

		for (i = 0; i < t->nr_lazy; i++) {
			size_t n = t->lazy[i].len / PG, k = 0;

			if (mincore((void *)(uintptr_t)t->lazy[i].vaddr, t->lazy[i].len, vec) < 0)
				break;
			while (k < n && (vec[k] & 1))
				k++;
			if (k < n)
				break;
		}
		if (i == t->nr_lazy)
			break;
		usleep(20000);
	}
	free(vec);
	printf("rdmig-standin: %s: every lazy page in after %.3f s; touching now\n", who,
	       (double)(mono_ns() - t0) / 1e9);
	fflush(stdout);
}

/* Every page of every VMA, except those inside the variants' targets. */
static struct page_ref *collect_pages(const struct img_task *t, const struct target *skip,
				      size_t nr_skip, size_t *nr)
{
	struct page_ref *pages;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < t->nr_vmas; i++)
		cap += (t->vmas[i].end - t->vmas[i].start) / PG;
	pages = malloc((cap ? cap : 1) * sizeof(*pages));
	if (!pages)
		return NULL;
	for (size_t i = 0; i < t->nr_vmas; i++) {
		for (uint64_t a = t->vmas[i].start; a < t->vmas[i].end; a += PG) {
			bool skipped = false;

			for (size_t k = 0; k < nr_skip; k++)
				if (a >= skip[k].start && a < skip[k].start + skip[k].len)
					skipped = true;
			if (!skipped)
				pages[n++] = (struct page_ref){.addr = a, .vaddr = a};
		}
	}
	*nr = n;
	return pages;
}

/* Runs the worker threads over pages; returns them so the caller can join. */
static struct worker *start_workers(struct verify_ctx *vc, struct page_ref *pages, size_t n)
{
	uint32_t nt = vc->o->threads;
	struct worker *wk = calloc(nt, sizeof(*wk));

	if (!wk)
		return NULL;
	for (uint32_t i = 0; i < nt; i++) {
		size_t a = n * i / nt, b = n * (i + 1) / nt;

		wk[i].vc = vc;
		wk[i].pages = pages + a;
		wk[i].nr_pages = b - a;
		wk[i].lat = malloc((b - a + 1) * sizeof(uint64_t));
		wk[i].rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 20) ^ i;
		if (!wk[i].lat || pthread_create(&wk[i].thread, NULL, worker_main, &wk[i])) {
			fprintf(stderr, "rdmig-standin: cannot start thread %u\n", i);
			exit(EXIT_SETUP);
		}
	}
	return wk;
}

static void report(struct verify_ctx *vc, struct worker *wk, uint64_t t0)
{
	uint32_t nt = vc->o->threads;
	size_t total = 0, k = 0;
	uint64_t *all;

	for (uint32_t i = 0; i < nt; i++)
		total += wk[i].nr_lat;
	all = malloc((total ? total : 1) * sizeof(*all));
	for (uint32_t i = 0; all && i < nt; i++)
		for (size_t j = 0; j < wk[i].nr_lat; j++)
			all[k++] = wk[i].lat[j];
	if (all)
		qsort(all, k, sizeof(*all), cmp_u64);
	if (vc->have_first)
		printf("rdmig-standin: %s\n", vc->first);
	printf(
	    "rdmig-standin: %s: pages %" PRIu64 " verified, mismatches %" PRIu64
	    ", faults %zu, time %.3f s, fault latency us min/p50/p90/p99/max %.1f/%.1f/%.1f/%.1f/"
	    "%.1f\n",
	    vc->who, (uint64_t)atomic_load(&vc->checked), (uint64_t)atomic_load(&vc->mismatches), k,
	    (double)(mono_ns() - t0) / 1e9, k ? (double)all[0] / 1e3 : 0,
	    (double)pct(all, k, 50) / 1e3, (double)pct(all, k, 90) / 1e3,
	    (double)pct(all, k, 99) / 1e3, k ? (double)all[k - 1] / 1e3 : 0);
	fflush(stdout);
	free(all);
}

static int join_workers(struct worker *wk, uint32_t nt)
{
	for (uint32_t i = 0; i < nt; i++)
		pthread_join(wk[i].thread, NULL);
	return 0;
}

static void free_workers(struct worker *wk, uint32_t nt)
{
	for (uint32_t i = 0; wk && i < nt; i++)
		free(wk[i].lat);
	free(wk);
}

/* The largest lazy range, cut into quarters for the variants. */
static int pick_targets(const struct opts *o, const struct img_task *t, struct target *mrem,
			struct target *madv, struct target *munm)
{
	const struct img_lazy_range *best = NULL;
	uint64_t q;

	for (size_t i = 0; i < t->nr_lazy; i++)
		if (!best || t->lazy[i].len > best->len)
			best = &t->lazy[i];
	if (!best || best->len < 16 * PG)
		return -1;
	q = best->len / 4 / PG * PG;
	*mrem = (struct target){.start = best->vaddr + q, .len = o->mremap ? q : 0};
	*madv = (struct target){.start = best->vaddr + 2 * q, .len = o->madvise ? q : 0};
	*munm = (struct target){.start = best->vaddr + 3 * q, .len = o->munmap ? q / 2 : 0};
	return 0;
}

/*
 * Touches a page every 64 first: with the daemon's read-ahead, part of the
 * target arrives before the change and part after (or never).
 */
static void touch_some(struct verify_ctx *vc, const struct target *tg)
{
	for (uint64_t a = tg->start; a < tg->start + tg->len; a += 64 * PG) {
		struct page_ref p = {.addr = a, .vaddr = a};
		uint64_t lat;
		bool faulted;

		verify_page(vc, &p, false, &lat, &faulted);
	}
}

static void run_variants(struct verify_ctx *vc, const struct target *mrem,
			 const struct target *madv, const struct target *munm)
{
	if (mrem->len) {
		void *dst = mmap(NULL, mrem->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *moved;

		touch_some(vc, mrem);
		moved = dst == MAP_FAILED ? MAP_FAILED
					  : mremap((void *)(uintptr_t)mrem->start, mrem->len,
						   mrem->len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		if (moved == MAP_FAILED) {
			fprintf(stderr, "rdmig-standin: %s: mremap: %s\n", vc->who,
				strerror(errno));
			exit(EXIT_SETUP);
		}
		printf("rdmig-standin: %s: moved %#" PRIx64 "+%" PRIu64 " to %p\n", vc->who,
		       mrem->start, mrem->len, moved);
		for (uint64_t off = 0; off < mrem->len; off += PG) {
			struct page_ref p = {.addr = (uint64_t)(uintptr_t)moved + off,
					     .vaddr = mrem->start + off};
			uint64_t lat;
			bool faulted;

			verify_page(vc, &p, false, &lat, &faulted);
		}
	}
	if (madv->len) {
		touch_some(vc, madv);
		if (madvise((void *)(uintptr_t)madv->start, madv->len, MADV_DONTNEED) < 0) {
			fprintf(stderr, "rdmig-standin: %s: madvise: %s\n", vc->who,
				strerror(errno));
			exit(EXIT_SETUP);
		}
		printf("rdmig-standin: %s: MADV_DONTNEED %#" PRIx64 "+%" PRIu64 "\n", vc->who,
		       madv->start, madv->len);
		for (uint64_t off = 0; off < madv->len; off += PG) {
			struct page_ref p = {.addr = madv->start + off, .vaddr = madv->start + off};
			uint64_t lat;
			bool faulted;

			verify_page(vc, &p, true, &lat, &faulted);
		}
	}
	if (munm->len) {
		unsigned char v;

		touch_some(vc, munm);
		if (munmap((void *)(uintptr_t)munm->start, munm->len) < 0 ||
		    mincore((void *)(uintptr_t)munm->start, PG, &v) == 0) {
			fprintf(stderr, "rdmig-standin: %s: munmap: %s\n", vc->who,
				strerror(errno));
			exit(EXIT_SETUP);
		}
		printf("rdmig-standin: %s: unmapped %#" PRIx64 "+%" PRIu64 "\n", vc->who,
		       munm->start, munm->len);
	}
}

/* Verifies the pages list (and runs the variants); returns the exit code. */
static int verify_all(const struct opts *o, const struct img_task *t, const char *who,
		      struct page_ref *pages, size_t n, bool variants, const struct target *tg)
{
	struct verify_ctx vc = {.o = o, .task = t, .who = who};
	uint64_t t0 = mono_ns();
	struct worker *wk;
	pid_t child = -1;
	int status = 0, code;

	vc.seed = o->fixed_seed ? o->seed : pattern_seed_for_pid(t->pid);
	pthread_mutex_init(&vc.first_lock, NULL);
	wk = start_workers(&vc, pages, n);
	if (!wk)
		return EXIT_SETUP;
	if (variants && o->fork) {
		/* Fork once the readers are well under way: part fetched, part not. */
		while (atomic_load(&vc.checked) < n / 4)
			usleep(200);
		fflush(stdout);
		child = fork();
		if (child == 0) {
			char cwho[64];

			snprintf(cwho, sizeof(cwho), "pid %d fork child", t->pid);
			/* Only the forking thread survives: check every page again, fresh. */
			_exit(verify_all(o, t, cwho, pages, n, false, NULL));
		}
		if (child < 0)
			fprintf(stderr, "rdmig-standin: %s: fork: %s\n", who, strerror(errno));
		else
			printf("rdmig-standin: %s: forked process %d\n", who, (int)child);
	}
	if (variants)
		run_variants(&vc, &tg[0], &tg[1], &tg[2]);
	join_workers(wk, o->threads);
	report(&vc, wk, t0);
	free_workers(wk, o->threads);
	code = atomic_load(&vc.mismatches) ? EXIT_MISMATCH : 0;
	if (child > 0) {
		if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status)) {
			printf("rdmig-standin: %s: fork child %s\n", who,
			       WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "lost");
			code = code ? code : EXIT_KILLED;
		} else if (WEXITSTATUS(status)) {
			code = code ? code : WEXITSTATUS(status);
		}
	}
	pthread_mutex_destroy(&vc.first_lock);
	return code;
}

/*
 * The restored task: set up, hand the uffd over, then wait for the go and
 * check everything.  Never returns.
 */
/*
 * --fault-before-fin: reads the first lazy page (it blocks until the
 * destination serves that fault: nothing is drained before FIN), then tells
 * the parent, which sends FIN once every process did.
 */
static void fault_first(const struct img_task *t, int faulted_fd)
{
	if (t->nr_lazy)
		(void)*(const volatile uint8_t *)(uintptr_t)t->lazy[0].vaddr;
	if (write(faulted_fd, "f", 1) != 1)
		_exit(EXIT_SETUP);
}

static void task_main(const struct opts *o, const struct img_set *set, const struct img_task *t,
		      int sock, int ready_fd, int go_fd, int faulted_fd)
{
	struct target tg[3] = {0};
	struct page_ref *pages;
	uint64_t registered;
	int32_t send_pid = o->send_pid ? o->send_pid : t->pid;
	char who[48], b[32], b2[32];
	size_t n;
	int uffd, code;

	snprintf(who, sizeof(who), "pid %d", t->pid);
	if ((o->mremap || o->madvise || o->munmap) && pick_targets(o, t, &tg[0], &tg[1], &tg[2])) {
		fprintf(stderr, "rdmig-standin: %s: no lazy range of 16 pages for the variants\n",
			who);
		_exit(EXIT_SETUP);
	}
	if (map_vmas(t) < 0 || fill_nonlazy(set, t) < 0 || open_uffd(&uffd) < 0)
		_exit(EXIT_SETUP);
	/* Like criu: the uffd goes out before any VMA is registered. */
	if (send_uffd(sock, send_pid, uffd, o->split) < 0) {
		fprintf(stderr, "rdmig-standin: %s: sending the userfaultfd: %s\n", who,
			strerror(errno));
		_exit(EXIT_SETUP);
	}
	close(sock);
	if (register_vmas(t, uffd, &registered) < 0)
		_exit(EXIT_SETUP);
	close(uffd);
	printf("rdmig-standin: %s: process %d, %zu VMAs, %s registered, lazy %s (%" PRIu64
	       " pages)\n",
	       who, (int)getpid(), t->nr_vmas, fmt_bytes(registered, b, sizeof(b)),
	       fmt_bytes(t->lazy_bytes, b2, sizeof(b2)), t->lazy_bytes / PG);
	fflush(stdout);
	if (write(ready_fd, "r", 1) != 1)
		_exit(EXIT_SETUP);
	close(ready_fd);
	/* EOF on go_fd: every task is set up, as when criu lets them run. */
	if (read(go_fd, b, 1) < 0)
		_exit(EXIT_SETUP);
	close(go_fd);
	if (o->fault_before_fin)
		fault_first(t, faulted_fd);
	close(faulted_fd);
	if (o->after_drain)
		wait_drained(t, who);
	pages = collect_pages(t, tg, 3, &n);
	if (!pages)
		_exit(EXIT_SETUP);
	code = verify_all(o, t, who, pages, n, true, tg);
	free(pages);
	_exit(code);
}

/* ---- criu restore's side ---- */

static int connect_socket(const char *work_dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int sock, dirfd;

	dirfd = open(work_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fprintf(stderr, "rdmig-standin: work dir %s: %s\n", work_dir, strerror(errno));
		return -1;
	}
	if (strlen(work_dir) + sizeof("/lazy-pages.socket") <= sizeof(sa.sun_path))
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/lazy-pages.socket", work_dir);
	else
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/lazy-pages.socket",
			 dirfd);
	sock = socket(AF_UNIX, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "rdmig-standin: connect to %s/lazy-pages.socket: %s\n", work_dir,
			strerror(errno));
		if (sock >= 0)
			close(sock);
		sock = -1;
	}
	close(dirfd);
	return sock;
}

static void on_alarm(int sig)
{
	static const char msg[] = "rdmig-standin: timeout: killing the tasks\n";

	for (size_t i = 0; i < g_nr_children; i++)
		if (g_children[i] > 0)
			kill(g_children[i], SIGKILL);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(EXIT_TIMEOUT);
	_exit(EXIT_TIMEOUT);
}

static int send_zombie(int sock, int32_t pid, bool split)
{
	int32_t neg = -pid;

	printf("rdmig-standin: announcing zombie %d\n", pid);
	return send_all(sock, &neg, sizeof(neg), split);
}

int main(int argc, char **argv)
{
	struct opts o = {.threads = 4, .timeout_s = 120};
	const struct img_task **tasks = NULL;
	struct img_set *set = NULL;
	int ready[2], go[2], alive[2], faulted[2], sock = -1, code = 0, ret;
	size_t nr = 0;
	uint32_t fin = FIN;

	log_init(argv[0], LOG_LVL_WARN);
	/* A peer that goes away is an EPIPE to report, not a signal. */
	proc_harden(false);
	if (parse_opts(argc, argv, &o) < 0)
		return EXIT_USAGE;
	ret = image_set_open(o.images_dir, &set);
	if (ret < 0) {
		fprintf(stderr, "rdmig-standin: images %s: %s\n", o.images_dir, strerror(-ret));
		return EXIT_SETUP;
	}
	tasks = calloc(set->nr_tasks ? set->nr_tasks : 1, sizeof(*tasks));
	g_children = calloc(set->nr_tasks ? set->nr_tasks : 1, sizeof(*g_children));
	if (!tasks || !g_children)
		return EXIT_SETUP;
	for (size_t i = 0; i < set->nr_tasks; i++) {
		const struct img_task *t = &set->tasks[i];

		if (o.only_pid && t->pid != o.only_pid)
			continue;
		if (t->has_memory) {
			tasks[nr++] = t;
		} else if (!o.only_pid && o.nr_zombies < MAX_ZOMBIES) {
			o.zombies[o.nr_zombies++] = t->pid;
		}
	}
	if (nr == 0) {
		fprintf(stderr, "rdmig-standin: no process with memory to stand in for\n");
		return EXIT_SETUP;
	}
	signal(SIGALRM, on_alarm);
	alarm(o.timeout_s);
	sock = connect_socket(o.work_dir);
	/* alive: the tasks hold its write end until they exit (EOF: all gone). */
	if (sock < 0 || pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 ||
	    pipe2(alive, O_CLOEXEC) < 0 || pipe2(faulted, O_CLOEXEC) < 0)
		return EXIT_SETUP;
	fflush(stdout);
	/* One task at a time hands its uffd over, as criu's lazy_sock_mutex ensures. */
	for (size_t i = 0; i < nr; i++) {
		char c;
		pid_t pid = fork();

		if (pid == 0) {
			signal(SIGALRM, SIG_DFL);
			close(ready[0]);
			close(go[1]);
			close(alive[0]);
			close(faulted[0]);
			task_main(&o, set, tasks[i], sock, ready[1], go[0], faulted[1]);
		}
		if (pid < 0) {
			fprintf(stderr, "rdmig-standin: fork: %s\n", strerror(errno));
			code = EXIT_SETUP;
			break;
		}
		g_children[g_nr_children++] = pid;
		if (read(ready[0], &c, 1) != 1) {
			fprintf(stderr, "rdmig-standin: pid %d: set-up failed\n", tasks[i]->pid);
			code = EXIT_SETUP;
			break;
		}
	}
	close(go[0]);
	close(go[1]); /* go: the tasks run from here on */
	close(alive[1]);
	close(faulted[1]);
	/* One byte from each task with its first fault served (EOF: none will come). */
	for (size_t i = 0; code == 0 && o.fault_before_fin && i < g_nr_children; i++) {
		char c;

		if (read(faulted[0], &c, 1) != 1)
			break;
	}
	close(faulted[0]);
	if (code == 0 && o.fin_delay_ms) {
		/* Until the delay is over or every task has exited (no more faults). */
		struct pollfd pfd = {.fd = alive[0], .events = POLLIN};
		uint64_t end = mono_ns() + (uint64_t)o.fin_delay_ms * 1000000u;
		char c;

		for (;;) {
			uint64_t now = mono_ns();
			int r;

			if (now >= end)
				break;
			r = poll(&pfd, 1, (int)((end - now + 999999) / 1000000));
			if (r > 0 && read(alive[0], &c, 1) <= 0)
				break;
			if (r < 0 && errno != EINTR)
				break;
		}
	}
	close(alive[0]);
	for (size_t i = 0; code == 0 && i < o.nr_zombies; i++)
		if (send_zombie(sock, o.zombies[i], o.split) < 0)
			code = EXIT_SETUP;
	if (code == 0 && send_all(sock, &fin, sizeof(fin), o.split) < 0) {
		fprintf(stderr, "rdmig-standin: sending FIN: %s\n", strerror(errno));
		code = EXIT_SETUP;
	}
	if (code == 0)
		printf("rdmig-standin: restore finished (%zu processes, %zu zombies)\n", nr,
		       o.nr_zombies);
	fflush(stdout);
	close(sock);
	for (size_t i = 0; i < g_nr_children; i++) {
		int status = 0, c = 0;

		if (code && code != EXIT_MISMATCH)
			kill(g_children[i], SIGKILL);
		while (waitpid(g_children[i], &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status)) {
			printf("rdmig-standin: pid %d (process %d) killed by signal %d (%s)\n",
			       tasks[i]->pid, (int)g_children[i], WTERMSIG(status),
			       strsignal(WTERMSIG(status)));
			c = EXIT_KILLED;
		} else if (WEXITSTATUS(status)) {
			printf("rdmig-standin: pid %d (process %d) exit %d\n", tasks[i]->pid,
			       (int)g_children[i], WEXITSTATUS(status));
			c = WEXITSTATUS(status);
		}
		/* A wrong byte outranks everything: it must never go unnoticed. */
		if (c == EXIT_MISMATCH || (c && code == 0))
			code = c;
		g_children[i] = 0;
	}
	free(tasks);
	free(g_children);
	image_set_free(set);
	return code;
}
