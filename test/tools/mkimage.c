// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-mkimage: writes a CRIU images directory for a synthetic process, so
 * the agents can be tested without CRIU dumping anything.
 *
 * Each task gets --vmas private anonymous RW VMAs from IMG_BASE up; by
 * default they touch, so pagemap runs cross VMA boundaries as CRIU's merged
 * runs do, and --holes leaves unmapped gaps between them.  Pages are pattern
 * pages (see pattern.h), or zero pages that, as in CRIU, are never dumped
 * and have no pagemap entry.  Pattern pages are PE_LAZY|PE_PRESENT, except
 * one PE_PRESENT-only page per VMA, the way CRIU keeps the page under each
 * thread's stack pointer out of the lazy set.  --lazy-only writes lazy pages
 * as PE_LAZY without data, as `criu dump --lazy-pages` does; --none-lazy
 * writes every page PE_PRESENT alone, as criu does (lazy dump or not) for a
 * task it stopped with a thread's stack pointer on a page boundary
 * (design.md §10.3).  --in-parent F
 * turns a fraction F of the runs (lazy or not) into PE_PARENT runs without
 * data, as a dump with --prev-images-dir writes pages not dirtied since the
 * previous round; --round N picks which runs, so rounds differ.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"
#include "imgwrite.h"
#include "log.h"
#include "pattern.h"
#include "util.h"

#define IMG_BASE 0x7e0000000000ull
/* Longest run of same-kind pages; the kinds alternate at random below it. */
#define RUN_MAX_PAGES 64

struct mk_opts {
	const char *dir;
	uint64_t size;
	int32_t pid;
	uint32_t nr_vmas;
	double zero_frac;
	double parent_frac;
	uint64_t round;
	bool holes;
	bool lazy_only;
	bool none_lazy;
	bool guard;
	bool verify;
	bool hold;
	uint32_t nr_tasks;
	uint32_t nr_zombies;
	bool fixed_seed;
	uint64_t seed;
	enum imgwrite_encoding encoding;
};

/* Everything one task's images are written from. */
struct mk_task {
	struct img_vma *vmas;
	size_t nr_vmas;
	struct img_vma guard;
	struct img_pagemap_entry *entries;
	size_t nr_entries, cap_entries;
	uint64_t seed;
};

enum mk_page_kind {
	MK_ZERO,
	MK_LAZY,
	MK_NONLAZY,
};

static void mk_usage(FILE *f)
{
	fprintf(f,
		"usage: rdmig-mkimage -D DIR [--size 64M] [--pid N] [--vmas K] [--zero-frac F]\n"
		"                     [--holes] [--encoding 3.17|4.2] [--lazy-only] [--none-lazy] "
		"[--guard]\n"
		"                     [--tasks N] [--zombies Z] [--seed S] [--verify]\n"
		"                     [--in-parent F] [--round N]\n"
		"       rdmig-mkimage --hold [--size 64M] [--vmas K] [--zero-frac F] [--holes]\n"
		"Writes a CRIU images directory for a synthetic process.\n"
		"  -D, --images-dir DIR  output directory (created if needed)\n"
		"  --size SIZE           mapped bytes per task, split over the VMAs (default 64M)\n"
		"  --pid N               virtual pid of the first task (default 4242)\n"
		"  --vmas K              VMAs per task (default 4)\n"
		"  --zero-frac F         fraction of pages left zero, never dumped (default 0.1)\n"
		"  --holes               leave unmapped gaps between VMAs (default: adjacent)\n"
		"  --encoding E          pagemap page count encoding, 3.17 or 4.2 (default 4.2)\n"
		"  --lazy-only           lazy pages without data, as `criu dump --lazy-pages`\n"
		"  --none-lazy           no page lazy, every one with data (criu's is_stack()\n"
		"                        misfire; overrides --lazy-only)\n"
		"  --guard               append a CRIU 4.2 guard VMA to each mm image\n"
		"  --tasks N             number of processes, pids pid..pid+N-1, children of the\n"
		"                        first (default 1)\n"
		"  --zombies Z           the last Z tasks are zombies (no memory)\n"
		"  --seed S              pattern seed for all tasks (default: per pid,\n"
		"                        pattern_seed_for_pid())\n"
		"  --verify              read the images back and check every dumped page\n"
		"  --in-parent F         fraction of the runs written PE_PARENT, without data\n"
		"                        (their data is in the parent images; default 0)\n"
		"  --round N             which runs --in-parent picks (default 0)\n"
		"  --hold                write no images: be the process they would describe\n"
		"                        with --pid of this process's own pid (its pages mapped\n"
		"                        at their addresses with their pattern); prints\n"
		"                        \"holding PID\" and waits for a signal\n");
}

static int mk_parse_opts(int argc, char **argv, struct mk_opts *o)
{
	static const struct option longopts[] = {
	    {"images-dir", required_argument, NULL, 'D'},
	    {"size", required_argument, NULL, 's'},
	    {"pid", required_argument, NULL, 'p'},
	    {"vmas", required_argument, NULL, 'v'},
	    {"zero-frac", required_argument, NULL, 'z'},
	    {"holes", no_argument, NULL, 'H'},
	    {"encoding", required_argument, NULL, 'e'},
	    {"lazy-only", no_argument, NULL, 'l'},
	    {"none-lazy", no_argument, NULL, 'N'},
	    {"guard", no_argument, NULL, 'g'},
	    {"tasks", required_argument, NULL, 't'},
	    {"zombies", required_argument, NULL, 'Z'},
	    {"seed", required_argument, NULL, 'S'},
	    {"verify", no_argument, NULL, 'V'},
	    {"in-parent", required_argument, NULL, 'P'},
	    {"round", required_argument, NULL, 'R'},
	    {"hold", no_argument, NULL, 'O'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	uint64_t v;
	char *end;
	int c, ret = 0;

	while (ret == 0 && (c = getopt_long(argc, argv, "D:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'D':
			o->dir = optarg;
			break;
		case 's':
			ret = parse_size(optarg, &o->size);
			break;
		case 'p':
			ret = parse_uint(optarg, 1, IMG_PID_MAX, &v);
			o->pid = (int32_t)v;
			break;
		case 'v':
			ret = parse_uint(optarg, 1, 4096, &v);
			o->nr_vmas = (uint32_t)v;
			break;
		case 'z':
			errno = 0;
			o->zero_frac = strtod(optarg, &end);
			if (errno || *end || end == optarg || !(o->zero_frac >= 0.0) ||
			    o->zero_frac >= 1.0)
				ret = -EINVAL;
			break;
		case 'H':
			o->holes = true;
			break;
		case 'P':
			errno = 0;
			o->parent_frac = strtod(optarg, &end);
			if (errno || *end || end == optarg || !(o->parent_frac >= 0.0) ||
			    o->parent_frac > 1.0)
				ret = -EINVAL;
			break;
		case 'R':
			ret = parse_uint(optarg, 0, UINT64_MAX, &o->round);
			break;
		case 'e':
			if (strcmp(optarg, "3.17") == 0)
				o->encoding = IMGWRITE_ENC_317;
			else if (strcmp(optarg, "4.2") == 0)
				o->encoding = IMGWRITE_ENC_42;
			else
				ret = -EINVAL;
			break;
		case 'l':
			o->lazy_only = true;
			break;
		case 'N':
			o->none_lazy = true;
			break;
		case 'g':
			o->guard = true;
			break;
		case 't':
			ret = parse_uint(optarg, 1, 1024, &v);
			o->nr_tasks = (uint32_t)v;
			break;
		case 'Z':
			ret = parse_uint(optarg, 0, 1024, &v);
			o->nr_zombies = (uint32_t)v;
			break;
		case 'S':
			ret = parse_uint(optarg, 0, UINT64_MAX, &o->seed);
			o->fixed_seed = true;
			break;
		case 'V':
			o->verify = true;
			break;
		case 'O':
			o->hold = true;
			break;
		case 'h':
			mk_usage(stdout);
			exit(0);
		default:
			mk_usage(stderr);
			return -EINVAL;
		}
		if (ret < 0)
			log_err("%s %s: %s", argv[optind - 1], optarg, strerror(-ret));
	}
	if (ret < 0)
		return ret;
	if (optind != argc || (!o->dir && !o->hold)) {
		mk_usage(stderr);
		return -EINVAL;
	}
	if (o->size % IMG_PAGE_SIZE || o->size / IMG_PAGE_SIZE < 4ull * o->nr_vmas) {
		log_err("--size %" PRIu64 ": must be page aligned and give each VMA 4 pages",
			o->size);
		return -EINVAL;
	}
	if (o->nr_zombies >= o->nr_tasks) {
		log_err("--zombies %" PRIu32 ": the first of %" PRIu32 " tasks must be alive",
			o->nr_zombies, o->nr_tasks);
		return -EINVAL;
	}
	if ((uint64_t)o->pid + o->nr_tasks - 1 > IMG_PID_MAX) {
		log_err("--pid %" PRId32 " --tasks %" PRIu32 ": pids past %d", o->pid, o->nr_tasks,
			IMG_PID_MAX);
		return -EINVAL;
	}
	return 0;
}

/* Lays out the VMAs: sizes grow with the index, so they differ. */
static int mk_layout_vmas(const struct mk_opts *o, struct mk_task *t)
{
	uint64_t pages = o->size / IMG_PAGE_SIZE, weight_sum, used = 0, addr = IMG_BASE;

	t->vmas = calloc(o->nr_vmas, sizeof(*t->vmas));
	if (!t->vmas)
		return -ENOMEM;
	t->nr_vmas = o->nr_vmas;
	weight_sum = (uint64_t)o->nr_vmas * (o->nr_vmas + 1) / 2;
	for (uint32_t i = 0; i < o->nr_vmas; i++) {
		uint64_t n = pages * (i + 1) / weight_sum;

		if (n < 4)
			n = 4;
		if (i == o->nr_vmas - 1 || used + n > pages - 4ull * (o->nr_vmas - 1 - i))
			n = pages - used - 4ull * (o->nr_vmas - 1 - i);
		t->vmas[i] = (struct img_vma){
		    .start = addr,
		    .end = addr + n * IMG_PAGE_SIZE,
		    .prot = PROT_READ | PROT_WRITE,
		    .flags = MAP_PRIVATE | MAP_ANONYMOUS,
		    .status = 1u, /* VMA_AREA_REGULAR */
		};
		used += n;
		addr += n * IMG_PAGE_SIZE;
		if (o->holes)
			addr += (1 + i % 3) * (1ull << 20);
	}
	/* A guard range over the middle of the first VMA, as MADV_GUARD_INSTALL leaves. */
	t->guard = (struct img_vma){
	    .start = t->vmas[0].start + IMG_PAGE_SIZE,
	    .end = t->vmas[0].start + 2 * IMG_PAGE_SIZE,
	};
	return 0;
}

static int mk_push_page(struct mk_task *t, uint64_t vaddr, uint32_t flags)
{
	struct img_pagemap_entry *last = t->nr_entries ? &t->entries[t->nr_entries - 1] : NULL;

	if (last && last->flags == flags && last->vaddr + last->nr_pages * IMG_PAGE_SIZE == vaddr) {
		last->nr_pages++;
		return 0;
	}
	if (t->nr_entries == t->cap_entries) {
		size_t ncap = t->cap_entries ? t->cap_entries * 2 : 64;
		struct img_pagemap_entry *n = realloc(t->entries, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->entries = n;
		t->cap_entries = ncap;
	}
	t->entries[t->nr_entries++] = (struct img_pagemap_entry){
	    .vaddr = vaddr,
	    .nr_pages = 1,
	    .flags = flags,
	};
	return 0;
}

/*
 * Classifies every page.  Runs of 1..RUN_MAX_PAGES pages are zero with
 * probability zero_frac; the choice hashes the run's address, so the same
 * options always give the same image.
 */
static int mk_fill_pagemap(const struct mk_opts *o, struct mk_task *t)
{
	uint32_t lazy_flags = o->none_lazy   ? IMG_PE_PRESENT
			      : o->lazy_only ? IMG_PE_LAZY
					     : IMG_PE_LAZY | IMG_PE_PRESENT;
	int ret = 0;

	for (size_t i = 0; ret == 0 && i < t->nr_vmas; i++) {
		const struct img_vma *v = &t->vmas[i];
		uint64_t pages = (v->end - v->start) / IMG_PAGE_SIZE;
		uint64_t stack_page = v->start + pages * 3 / 4 * IMG_PAGE_SIZE;
		uint64_t run_left = 0;
		bool run_zero = false, run_parent = false;

		for (uint64_t a = v->start; ret == 0 && a < v->end; a += IMG_PAGE_SIZE) {
			enum mk_page_kind kind;

			if (run_left == 0) {
				uint64_t h = pattern_word(a, t->seed ^ 0x72756e73ull);

				run_left = 1 + h % RUN_MAX_PAGES;
				run_zero = (double)(h >> 11) * 0x1p-53 < o->zero_frac;
				h = pattern_word(a, t->seed ^ 0x70726e74ull ^ o->round);
				run_parent = (double)(h >> 11) * 0x1p-53 < o->parent_frac;
			}
			run_left--;
			if (a == stack_page)
				kind = MK_NONLAZY;
			else
				kind = run_zero ? MK_ZERO : MK_LAZY;
			if (kind != MK_ZERO && run_parent)
				ret = mk_push_page(t, a, IMG_PE_PARENT);
			else if (kind == MK_LAZY)
				ret = mk_push_page(t, a, lazy_flags);
			else if (kind == MK_NONLAZY)
				ret = mk_push_page(t, a, IMG_PE_PRESENT);
		}
	}
	return ret;
}

static int mk_fill_page(void *opaque, int32_t pid, uint64_t vaddr, void *page)
{
	const struct mk_opts *o = opaque;

	pattern_fill(page, vaddr, o->fixed_seed ? o->seed : pattern_seed_for_pid(pid));
	return 0;
}

/* Checks every PE_PRESENT page of task t against the pattern. */
static int mk_verify_task(const struct mk_opts *o, const struct img_set *set,
			  const struct img_task *t)
{
	uint64_t seed = o->fixed_seed ? o->seed : pattern_seed_for_pid(t->pid);
	uint8_t page[IMG_PAGE_SIZE];
	char path[PATH_MAX];
	int fd, ret;

	ret = image_pages_path(set, t, path, sizeof(path));
	if (ret < 0)
		return ret;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		/* No PE_PRESENT entry: the parser allows a missing pages file. */
		if (ret == -ENOENT && t->pages_file_size == 0)
			return 0;
		log_err("%s: open: %s", path, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; ret == 0 && i < t->nr_entries; i++) {
		const struct img_pagemap_entry *e = &t->entries[i];

		if (!(e->flags & IMG_PE_PRESENT))
			continue;
		for (uint64_t p = 0; ret == 0 && p < e->nr_pages; p++) {
			uint64_t off = e->pages_off + p * IMG_PAGE_SIZE, bad = 0;
			ssize_t n = pread(fd, page, sizeof(page), (off_t)off);

			if (n != (ssize_t)sizeof(page)) {
				ret = n < 0 ? -errno : -EBADMSG;
				log_err("%s: offset %" PRIu64 ": read: %s", path, off,
					n < 0 ? strerror(-ret) : "short read");
			} else if (pattern_check(page, e->vaddr + p * IMG_PAGE_SIZE, seed, &bad) <
				   0) {
				ret = -EBADMSG;
				log_err("%s: offset %" PRIu64 ": word for 0x%" PRIx64
					" does not match the pattern: %s",
					path, off + (bad & (IMG_PAGE_SIZE - 1)), bad,
					strerror(-ret));
			}
		}
	}
	close(fd);
	return ret;
}

static int mk_summary(const struct mk_opts *o)
{
	struct img_set *set = NULL;
	uint64_t lazy = 0, pages = 0;
	size_t vmas = 0;
	char b1[32], b2[32];
	int ret;

	/* Reading the result back checks the writer against the parser. */
	ret = image_set_open(o->dir, &set);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < set->nr_tasks; i++) {
		if (o->verify && set->tasks[i].has_memory) {
			ret = mk_verify_task(o, set, &set->tasks[i]);
			if (ret < 0)
				goto out;
		}
		lazy += set->tasks[i].lazy_bytes;
		pages += set->tasks[i].pages_file_size;
		vmas += set->tasks[i].nr_vmas;
	}
	printf("%s: %zu tasks (%" PRIu32 " zombies), %zu VMAs, lazy %s, pages files %s, "
	       "encoding %s%s, seed %s%s\n",
	       o->dir, set->nr_tasks, o->nr_zombies, vmas, fmt_bytes(lazy, b1, sizeof(b1)),
	       fmt_bytes(pages, b2, sizeof(b2)), o->encoding == IMGWRITE_ENC_42 ? "4.2" : "3.17",
	       o->lazy_only ? " lazy-only" : "", o->fixed_seed ? "fixed" : "per pid",
	       o->verify ? ", verified" : "");
out:
	image_set_free(set);
	return ret;
}

/*
 * --hold: the pages t's images would hold, mapped at their addresses with
 * their pattern, in this process (a lazy dump's stopped task, for the
 * tests of a source agent that stages from it); never returns but on error.
 */
static int mk_hold(const struct mk_task *t)
{
	const struct img_pagemap_entry *e;
	uint64_t p;
	size_t i;
	void *a;

	for (i = 0; i < t->nr_vmas; i++) {
		a = mmap((void *)(uintptr_t)t->vmas[i].start, t->vmas[i].end - t->vmas[i].start,
			 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			 -1, 0);
		if (a != (void *)(uintptr_t)t->vmas[i].start) {
			log_err("--hold: cannot map %#" PRIx64 "-%#" PRIx64 ": %s",
				t->vmas[i].start, t->vmas[i].end,
				a == MAP_FAILED ? strerror(errno) : "elsewhere");
			return -EEXIST;
		}
	}
	for (i = 0; i < t->nr_entries; i++) {
		e = &t->entries[i];
		for (p = 0; p < e->nr_pages; p++)
			pattern_fill((void *)(uintptr_t)(e->vaddr + p * IMG_PAGE_SIZE),
				     e->vaddr + p * IMG_PAGE_SIZE, t->seed);
	}
	printf("holding %d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	struct mk_opts o = {
	    .size = 64ull << 20,
	    .pid = 4242,
	    .nr_vmas = 4,
	    .zero_frac = 0.1,
	    .nr_tasks = 1,
	    .encoding = IMGWRITE_ENC_42,
	};
	struct imgwrite_opts wo = {.img_version = 2};
	struct imgwrite_task *wt = NULL;
	struct mk_task *mt = NULL;
	int ret;

	log_init(argv[0], LOG_LVL_INFO);
	ret = mk_parse_opts(argc, argv, &o);
	if (ret < 0)
		return 2;
	wo.encoding = o.encoding;
	if (o.hold) {
		o.pid = (int32_t)getpid();
		o.nr_tasks = 1;
		o.nr_zombies = 0;
	}
	wt = calloc(o.nr_tasks, sizeof(*wt));
	mt = calloc(o.nr_tasks, sizeof(*mt));
	if (!wt || !mt) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < o.nr_tasks; i++) {
		int32_t pid = o.pid + (int32_t)i;

		wt[i] = (struct imgwrite_task){
		    .pid = pid,
		    .ppid = i ? o.pid : 0,
		    .zombie = i >= o.nr_tasks - o.nr_zombies,
		    .pages_id = i + 1,
		    .fill = mk_fill_page,
		    .opaque = &o,
		};
		if (wt[i].zombie)
			continue;
		mt[i].seed = o.fixed_seed ? o.seed : pattern_seed_for_pid(pid);
		ret = mk_layout_vmas(&o, &mt[i]);
		if (ret == 0)
			ret = mk_fill_pagemap(&o, &mt[i]);
		if (ret < 0)
			goto out;
		if (o.hold) {
			ret = mk_hold(&mt[i]);
			goto out;
		}
		wt[i].vmas = mt[i].vmas;
		wt[i].nr_vmas = mt[i].nr_vmas;
		wt[i].guards = o.guard ? &mt[i].guard : NULL;
		wt[i].nr_guards = o.guard ? 1 : 0;
		wt[i].entries = mt[i].entries;
		wt[i].nr_entries = mt[i].nr_entries;
	}
	ret = imgwrite_dir(o.dir, &wo, wt, o.nr_tasks);
	if (ret == 0)
		ret = mk_summary(&o);
out:
	for (uint32_t i = 0; mt && i < o.nr_tasks; i++) {
		free(mt[i].vmas);
		free(mt[i].entries);
	}
	free(mt);
	free(wt);
	if (ret < 0)
		log_err("%s: %s", o.dir ? o.dir : "--hold", strerror(-ret));
	return ret < 0 ? 1 : 0;
}
