// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * lazystage against the fake page server (fake_psrv.h): the lazy ranges of
 * an image set are cut into units that never cross a range, laid out in
 * one area, pulled and reported staged with the XXH3 of their bytes; a
 * unit a fault wants goes out before the background pull; a failing page
 * server stops staging and is reported once.  From a stopped tree
 * (lazystage_open_proc(), a restarted agent's) the same units are read out
 * of a child holding the pages at their addresses; one unmapped there
 * fails the stage.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <xxhash.h>

#include "fake_psrv.h"
#include "image.h"
#include "msgauth.h"
#include "pattern.h"
#include "source-agent/lazystage.h"
#include "util.h"

#define PAGE 4096u

static const struct fake_range franges[] = {
    {100, 0x10000000ull, 300},
    {100, 0x20000000ull, 10},
    {101, 0x7f0000000000ull, 2100},
};

/* 300 pages: 4 units of 64 and one of 44; 10: one; 2100: 32 of 64 and one of 52. */
#define NR_UNITS 39

struct tctx {
	struct event_base *base;
	struct lazystage *ls;
	struct img_set set;
	struct img_task tasks[2];
	struct img_lazy_range lazy[3];
	size_t staged_calls;
	uint64_t order[NR_UNITS]; /* img_vaddr of each staged() call */
	bool bad_csum, bad_pages;
	bool close_when_done;
	struct fake_end end;
};

static void t_staged(struct lazystage *ls, const struct lazystage_unit *u, void *arg)
{
	struct tctx *x = arg;
	uint8_t *base;
	size_t len;
	uint64_t off;

	lazystage_area(ls, (void **)&base, &len);
	if (x->staged_calls < NR_UNITS)
		x->order[x->staged_calls] = u->img_vaddr;
	x->staged_calls++;
	assert_int_equal(u->state, LAZYSTAGE_STAGED);
	if (u->csum != XXH3_64bits(base + u->area_off, u->len))
		x->bad_csum = true;
	for (off = 0; off < u->len; off += PAGE)
		if (pattern_check(base + u->area_off + off, u->img_vaddr + off,
				  pattern_seed_for_pid(u->pid), NULL))
			x->bad_pages = true;
	if (x->close_when_done && lazystage_staged(ls) == NR_UNITS)
		assert_int_equal(lazystage_close(ls), 0);
}

static void t_failed(struct lazystage *ls, int err, void *arg)
{
	(void)ls;
	fake_end_failed(&((struct tctx *)arg)->end, err);
}

static void t_closed(struct lazystage *ls, int status, void *arg)
{
	(void)ls;
	fake_end_closed(&((struct tctx *)arg)->end, status);
}

static const struct lazystage_ops t_ops = {
    .staged = t_staged, .failed = t_failed, .closed = t_closed};

/*
 * An image set whose lazy ranges are franges, and the fake serving them;
 * area: the caller's, or NULL; page_key: page tags with every unit, or NULL.
 */
/* x's image set: its lazy ranges are franges. */
static void set_up(struct tctx *x)
{
	size_t i;

	memset(x, 0, sizeof(*x));
	for (i = 0; i < ARRAY_SIZE(franges); i++) {
		x->lazy[i].vaddr = franges[i].vaddr;
		x->lazy[i].len = franges[i].nr * PAGE;
		x->lazy[i].pages_off = IMG_NO_OFFSET;
	}
	x->tasks[0] = (struct img_task){.pid = 100,
					.has_memory = true,
					.lazy = &x->lazy[0],
					.nr_lazy = 2,
					.lazy_bytes = 310 * PAGE};
	x->tasks[1] = (struct img_task){.pid = 101,
					.has_memory = true,
					.lazy = &x->lazy[2],
					.nr_lazy = 1,
					.lazy_bytes = 2100 * PAGE};
	x->set.tasks = x->tasks;
	x->set.nr_tasks = 2;
}

static void start_in(struct tctx *x, struct fake_psrv *f, enum fake_mode mode, void *area,
		     const uint8_t *page_key)
{
	int fd;

	set_up(x);
	memset(f, 0, sizeof(*f));
	/* A multiple of the unit: no short reply reorders the pull (criupsrv tests those). */
	f->chunk = 1024;
	f->mode = mode;
	f->ranges = franges;
	f->nr_ranges = ARRAY_SIZE(franges);
	fake_psrv_start_pair(f, &fd);
	x->base = event_base_new();
	x->end.base = x->base;
	assert_non_null(x->base);
	assert_int_equal(lazystage_open_fd(x->base, &x->set, area, page_key, fd, &t_ops, x, &x->ls),
			 0);
}

static void start(struct tctx *x, struct fake_psrv *f, enum fake_mode mode)
{
	start_in(x, f, mode, NULL, NULL);
}

static void finish(struct tctx *x, struct fake_psrv *f)
{
	lazystage_free(x->ls);
	fake_psrv_join(f);
	event_base_free(x->base);
}

/* The loop ran to the end: every unit staged once, right, then the stage closed cleanly. */
static void assert_all_staged(const struct tctx *x)
{
	assert_int_equal(x->end.failed_calls, 0);
	assert_int_equal(x->end.closed_calls, 1);
	assert_int_equal(x->end.closed_status, 0);
	assert_int_equal(x->staged_calls, NR_UNITS);
	assert_int_equal(lazystage_staged(x->ls), NR_UNITS);
	assert_false(x->bad_csum);
	assert_false(x->bad_pages);
}

static void test_units_and_pull(void **state)
{
	const struct lazystage_unit *u;
	struct tctx x;
	struct fake_psrv f;
	uint64_t area_off = 0;
	size_t n, i;
	void *base;
	size_t len;

	(void)state;
	start(&x, &f, FAKE_GOOD);
	u = lazystage_units(x.ls, &n);
	assert_int_equal(n, NR_UNITS);
	lazystage_area(x.ls, &base, &len);
	assert_non_null(base);
	assert_int_equal(len, 2410 * PAGE);
	for (i = 0; i < n; i++) {
		assert_true(u[i].len > 0 && u[i].len <= LAZYSTAGE_UNIT && u[i].len % PAGE == 0);
		assert_int_equal(u[i].area_off, area_off);
		area_off += u[i].len;
		assert_ptr_equal(lazystage_find(x.ls, u[i].pid, u[i].img_vaddr), &u[i]);
	}
	/* No unit crosses a lazy range: the one after 300 pages starts the next range. */
	assert_int_equal(u[4].len, 44 * PAGE);
	assert_int_equal(u[5].img_vaddr, 0x20000000ull);
	assert_int_equal(u[5].len, 10 * PAGE);
	assert_null(lazystage_find(x.ls, 100, 0x10000000ull + PAGE));
	assert_null(lazystage_find(x.ls, 102, 0x10000000ull));

	x.close_when_done = true;
	event_base_dispatch(x.base);
	assert_all_staged(&x);
	/* The background pull goes in table order. */
	for (i = 0; i < n; i++)
		assert_int_equal(x.order[i], u[i].img_vaddr);
	assert_int_equal(lazystage_want(x.ls, 100, 0x10000000ull), -ESHUTDOWN);
	finish(&x, &f);
	assert_true(f.saw_close);
	assert_true(f.saw_eof_after_close);
	assert_false(f.protocol_error);
}

/*
 * An area the caller mapped ahead (to register it before the stage
 * exists): the stage fills it and leaves it mapped.
 */
static void test_lent_area(void **state)
{
	struct fake_psrv f;
	struct tctx x;
	uint64_t off;
	uint8_t *area;
	size_t len;
	void *base;

	(void)state;
	area = mmap(NULL, 2410 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(area != MAP_FAILED);
	start_in(&x, &f, FAKE_GOOD, area, NULL);
	assert_int_equal(lazystage_area_len(&x.set), 2410 * PAGE);
	lazystage_area(x.ls, &base, &len);
	assert_ptr_equal(base, area);
	assert_int_equal(len, 2410 * PAGE);
	x.close_when_done = true;
	event_base_dispatch(x.base);
	assert_all_staged(&x);
	finish(&x, &f);
	/* Freed, the stage left the caller's area mapped, with the first range's pages at 0. */
	for (off = 0; off < franges[0].nr * PAGE; off += PAGE)
		assert_int_equal(pattern_check(area + off, franges[0].vaddr + off,
					       pattern_seed_for_pid(franges[0].pid), NULL),
				 0);
	assert_int_equal(munmap(area, 2410 * PAGE), 0);
}

/*
 * With the migration's page key every staged unit carries the page tags
 * of its bytes, one per page (what StageRegion sends under
 * FEAT_VERIFY_PAGES); without one it carries none.
 */
static void test_page_tags(void **state)
{
	const struct lazystage_unit *u;
	struct msgauth_pages mp = {0};
	uint8_t key[MSGAUTH_PAGE_KEY_LEN];
	struct fake_psrv f;
	struct tctx x;
	uint64_t tag;
	size_t n, i, p, len;
	void *base;

	(void)state;
	memset(key, 0x5a, sizeof(key));
	assert_int_equal(msgauth_pages_init(&mp, key), 0);
	start_in(&x, &f, FAKE_GOOD, NULL, key);
	x.close_when_done = true;
	event_base_dispatch(x.base);
	assert_int_equal(x.staged_calls, NR_UNITS);
	u = lazystage_units(x.ls, &n);
	lazystage_area(x.ls, &base, &len);
	for (i = 0; i < n; i++) {
		assert_non_null(u[i].tags);
		for (p = 0; p < u[i].len / PAGE; p++) {
			assert_int_equal(
			    msgauth_page_tag(&mp, (uint8_t *)base + u[i].area_off + p * PAGE, PAGE,
					     &tag),
			    0);
			assert_int_equal(tag, u[i].tags[p]);
		}
	}
	/* Different pages, different tags: the tags are of the bytes. */
	assert_true(u[0].tags[0] != u[0].tags[1]);
	finish(&x, &f);
	msgauth_pages_free(&mp);

	start(&x, &f, FAKE_GOOD);
	x.close_when_done = true;
	event_base_dispatch(x.base);
	u = lazystage_units(x.ls, &n);
	for (i = 0; i < n; i++)
		assert_null(u[i].tags);
	finish(&x, &f);
}

/* A fault's unit is the first the dump is asked for, and staged first. */
static void test_want_first(void **state)
{
	uint64_t last = 0x7f0000000000ull + 2048ull * PAGE;
	struct fake_psrv f;
	struct tctx x;

	(void)state;
	start(&x, &f, FAKE_GOOD);
	assert_int_equal(lazystage_want(x.ls, 101, last), 0);
	assert_int_equal(lazystage_want(x.ls, 101, last + PAGE), -ENOENT);
	assert_int_equal(lazystage_want(x.ls, 7, last), -ENOENT);
	x.close_when_done = true;
	event_base_dispatch(x.base);
	assert_all_staged(&x);
	assert_int_equal(x.order[0], last);
	/* Staged already: nothing to do. */
	finish(&x, &f);
	assert_int_equal(f.get_vaddr[0], last);
	assert_int_equal(f.gets, NR_UNITS);
}

static void test_page_server_dies(void **state)
{
	struct fake_psrv f;
	struct tctx x;

	(void)state;
	start(&x, &f, FAKE_HANGUP_MID_DATA);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.failed_calls, 1);
	assert_int_equal(x.end.failed_err, -ECONNRESET);
	assert_int_equal(x.end.closed_calls, 0);
	assert_int_equal(x.staged_calls, 0);
	assert_int_equal(lazystage_want(x.ls, 100, 0x10000000ull), -ESHUTDOWN);
	assert_int_equal(lazystage_close(x.ls), -ESHUTDOWN);
	finish(&x, &f);
}

/*
 * A child holding franges' pages at their addresses (what a dumped task
 * has), less its last hole_pages pages; it waits to be killed.
 */
static pid_t holder(size_t hole_pages)
{
	uint64_t off, len;
	int p[2], ok = 1;
	pid_t child;
	size_t i;
	char c;
	void *a;

	assert_int_equal(pipe(p), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(p[0]);
		for (i = 0; i < ARRAY_SIZE(franges) && ok; i++) {
			len = franges[i].nr * PAGE;
			a = mmap((void *)(uintptr_t)franges[i].vaddr, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			ok = a == (void *)(uintptr_t)franges[i].vaddr;
			for (off = 0; ok && off < len; off += PAGE)
				pattern_fill((uint8_t *)a + off, franges[i].vaddr + off,
					     pattern_seed_for_pid(franges[i].pid));
		}
		if (ok && hole_pages)
			ok = munmap((void *)(uintptr_t)(franges[2].vaddr +
							(franges[2].nr - hole_pages) * PAGE),
				    hole_pages * PAGE) == 0;
		c = ok ? 'y' : 'n';
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	assert_int_equal(c, 'y');
	return child;
}

static void holder_end(pid_t child)
{
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
}

/* A stage of franges read from a holder() child (returned) less hole_pages. */
static pid_t start_proc(struct tctx *x, size_t hole_pages)
{
	pid_t hosts[2], child = holder(hole_pages);

	set_up(x);
	x->base = event_base_new();
	assert_non_null(x->base);
	x->end.base = x->base;
	hosts[0] = hosts[1] = child;
	assert_int_equal(
	    lazystage_open_proc(x->base, &x->set, NULL, NULL, hosts, &t_ops, x, &x->ls), 0);
	return child;
}

/* From a stopped tree: every unit read out of it, a wanted one first, then closed. */
static void test_proc(void **state)
{
	uint64_t last = 0x7f0000000000ull + 2048ull * PAGE;
	const struct lazystage_unit *u;
	struct tctx x;
	size_t n, i;
	pid_t child;

	(void)state;
	child = start_proc(&x, 0);
	assert_int_equal(lazystage_want(x.ls, 101, last), 0);
	assert_int_equal(lazystage_want(x.ls, 101, last + PAGE), -ENOENT);
	/* Nothing runs inside a call: no unit is staged before the loop. */
	assert_int_equal(x.staged_calls, 0);
	x.close_when_done = true;
	event_base_dispatch(x.base);
	assert_all_staged(&x);
	assert_int_equal(x.order[0], last);
	/* Then table order, the wanted one skipped. */
	u = lazystage_units(x.ls, &n);
	for (i = 1; i < n && u[i - 1].img_vaddr != last; i++)
		assert_int_equal(x.order[i], u[i - 1].img_vaddr);
	assert_int_equal(lazystage_want(x.ls, 100, 0x10000000ull), -ESHUTDOWN);
	lazystage_free(x.ls);
	event_base_free(x.base);
	holder_end(child);
}

/* A unit no longer mapped in the tree fails the stage, once, naming no unit staged past it. */
static void test_proc_unmapped(void **state)
{
	struct tctx x;
	pid_t child;

	(void)state;
	child = start_proc(&x, 16);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.failed_calls, 1);
	assert_int_equal(x.end.failed_err, -EFAULT);
	assert_int_equal(x.end.closed_calls, 0);
	/* Every unit before the last one (52 pages, 16 of them unmapped). */
	assert_int_equal(x.staged_calls, NR_UNITS - 1);
	assert_false(x.bad_pages);
	assert_int_equal(lazystage_close(x.ls), -ESHUTDOWN);
	lazystage_free(x.ls);
	event_base_free(x.base);
	holder_end(child);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_units_and_pull),   cmocka_unit_test(test_lent_area),
	    cmocka_unit_test(test_page_tags),	     cmocka_unit_test(test_want_first),
	    cmocka_unit_test(test_page_server_dies), cmocka_unit_test(test_proc),
	    cmocka_unit_test(test_proc_unmapped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
