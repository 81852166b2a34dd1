// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lazyset.h"

#define PG   LAZY_PAGE_SIZE
#define BASE 0x7e0000000000ull

/* Three ranges: 16 pages, a 4-page gap, 8 pages, then (new VMA, touching) 32 pages. */
static struct img_lazy_range three_ranges[] = {
    {.vaddr = BASE, .len = 16 * PG, .pages_off = 0},
    {.vaddr = BASE + 20 * PG, .len = 8 * PG, .pages_off = 16 * PG},
    {.vaddr = BASE + 28 * PG, .len = 32 * PG, .pages_off = IMG_NO_OFFSET},
};

static struct lazyset *make_set(struct img_lazy_range *r, size_t n)
{
	struct img_task t = {.pid = 1, .has_memory = true, .lazy = r, .nr_lazy = n};
	struct lazyset *ls = NULL;

	assert_int_equal(lazyset_create(&t, &ls), 0);
	assert_non_null(ls);
	assert_int_equal(lazyset_check(ls), 0);
	return ls;
}

static void test_create_lookup(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3);

	assert_int_equal(lazyset_total(ls), 56);
	assert_int_equal(lazyset_pending(ls), 56);
	assert_int_equal(lazyset_inflight(ls), 0);
	assert_int_equal(lazyset_lookup(ls, BASE), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 15 * PG + 123), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 16 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 19 * PG + 4095), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 20 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 59 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 60 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE - PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, 0), LAZY_NONE);
	lazyset_free(ls);
}

static void test_create_rejects_bad_ranges(void **state)
{
	struct img_lazy_range overlap[] = {
	    {.vaddr = BASE, .len = 4 * PG},
	    {.vaddr = BASE + 2 * PG, .len = 4 * PG},
	};
	struct img_lazy_range unaligned[] = {{.vaddr = BASE + 1, .len = PG}};
	struct img_task t = {.pid = 1, .lazy = overlap, .nr_lazy = 2};
	struct lazyset *ls = NULL;

	assert_int_equal(lazyset_create(&t, &ls), -EINVAL);
	assert_null(ls);
	t.lazy = unaligned;
	t.nr_lazy = 1;
	assert_int_equal(lazyset_create(&t, &ls), -EINVAL);
	t.nr_lazy = 0;
	assert_int_equal(lazyset_create(&t, &ls), 0);
	assert_int_equal(lazyset_remaining(ls), 0);
	assert_int_equal(lazyset_claim_next(ls, 8, &(struct lazy_run){0}), -ENOENT);
	lazyset_free(ls);
}

static void test_claim_fault_readahead(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3);
	struct lazy_run run;

	/* Clipped at the end of the first range, never into the gap or the next range. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 10 * PG + 77, 16, &run), 0);
	assert_int_equal(run.rt_addr, BASE + 10 * PG);
	assert_int_equal(run.img_vaddr, BASE + 10 * PG);
	assert_int_equal(run.len, 6 * PG);
	assert_int_equal(run.pages_off, 10 * PG);
	assert_int_equal(lazyset_lookup(ls, BASE + 12 * PG), LAZY_INFLIGHT);
	assert_int_equal(lazyset_inflight(ls), 6);
	assert_int_equal(lazyset_pending(ls), 50);
	/* An in-flight page cannot be claimed again. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 12 * PG, 16, &run), -ENOENT);
	/* Read-ahead stops at the first page already in flight. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 7 * PG, 16, &run), 0);
	assert_int_equal(run.len, 3 * PG);
	/* Touching ranges (two VMAs) stay separate. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 26 * PG, 16, &run), 0);
	assert_int_equal(run.len, 2 * PG);
	assert_int_equal(run.pages_off, 22 * PG);
	/* max_pages bounds the run; a range without data keeps IMG_NO_OFFSET. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 28 * PG, 4, &run), 0);
	assert_int_equal(run.len, 4 * PG);
	assert_true(run.pages_off == IMG_NO_OFFSET);
	/* Not lazy at all. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 17 * PG, 16, &run), -ENOENT);
	assert_int_equal(lazyset_check(ls), 0);
	lazyset_free(ls);
}

static void test_complete_unclaim(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3);
	struct lazy_run run, f;

	assert_int_equal(lazyset_claim_fault(ls, BASE, 8, &run), 0);
	assert_int_equal(lazyset_first_inflight(ls, run.img_vaddr, run.len, &f), 0);
	assert_memory_equal(&f, &run, sizeof(f));
	/* A partial COPY: the first three pages landed. */
	assert_int_equal(lazyset_complete(ls, BASE, 3 * PG), 3);
	assert_int_equal(lazyset_lookup(ls, BASE + 2 * PG), LAZY_NONE);
	assert_int_equal(lazyset_first_inflight(ls, run.img_vaddr, run.len, &f), 0);
	assert_int_equal(f.img_vaddr, BASE + 3 * PG);
	assert_int_equal(f.rt_addr, BASE + 3 * PG);
	assert_int_equal(f.len, 5 * PG);
	assert_int_equal(f.pages_off, 3 * PG);
	/* The rest failed: pending again, claimable again. */
	assert_int_equal(lazyset_unclaim(ls, run.img_vaddr, run.len), 5);
	assert_int_equal(lazyset_first_inflight(ls, run.img_vaddr, run.len, &f), -ENOENT);
	assert_int_equal(lazyset_lookup(ls, BASE + 3 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_remaining(ls), 53);
	/* Completing what is not in flight changes nothing. */
	assert_int_equal(lazyset_complete(ls, BASE, 16 * PG), 0);
	assert_int_equal(lazyset_remaining(ls), 53);
	assert_int_equal(lazyset_check(ls), 0);
	lazyset_free(ls);
}

static void test_claim_next_order_and_wrap(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3);
	struct lazy_run run;
	uint64_t pages = 0;

	/* A fault moves the drain after it: locality for sequential readers. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 24 * PG, 1, &run), 0);
	assert_int_equal(lazyset_claim_next(ls, 64, &run), 0);
	assert_int_equal(run.rt_addr, BASE + 25 * PG);
	assert_int_equal(run.len, 3 * PG);
	assert_int_equal(lazyset_claim_next(ls, 10, &run), 0);
	assert_int_equal(run.rt_addr, BASE + 28 * PG);
	assert_int_equal(run.len, 10 * PG);
	assert_int_equal(lazyset_claim_next(ls, 64, &run), 0);
	assert_int_equal(run.rt_addr, BASE + 38 * PG);
	assert_int_equal(run.len, 22 * PG);
	/* Wraps to the lowest address, then skips the in-flight page. */
	assert_int_equal(lazyset_claim_next(ls, 64, &run), 0);
	assert_int_equal(run.rt_addr, BASE);
	assert_int_equal(run.len, 16 * PG);
	assert_int_equal(lazyset_claim_next(ls, 64, &run), 0);
	assert_int_equal(run.rt_addr, BASE + 20 * PG);
	assert_int_equal(run.len, 4 * PG);
	assert_int_equal(lazyset_claim_next(ls, 64, &run), -ENOENT);
	assert_int_equal(lazyset_pending(ls), 0);
	assert_int_equal(lazyset_inflight(ls), 56);
	pages = lazyset_complete(ls, BASE, 60 * PG);
	assert_int_equal(pages, 56);
	assert_int_equal(lazyset_remaining(ls), 0);
	assert_int_equal(lazyset_check(ls), 0);
	lazyset_free(ls);
}

static void test_remove_edges(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3);
	struct lazy_run run, f;
	uint64_t dropped;

	/* Middle of a range: splits it. */
	assert_int_equal(lazyset_remove(ls, BASE + 4 * PG, 2 * PG, &dropped), 0);
	assert_int_equal(dropped, 2);
	assert_int_equal(lazyset_lookup(ls, BASE + 3 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 4 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 5 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 6 * PG), LAZY_PENDING);
	/* Read-ahead stops at the hole. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 2 * PG, 16, &run), 0);
	assert_int_equal(run.len, 2 * PG);
	/* Removing in-flight pages: the request then installs only what is left. */
	assert_int_equal(lazyset_remove(ls, BASE + 3 * PG, PG, &dropped), 0);
	assert_int_equal(dropped, 1);
	assert_int_equal(lazyset_first_inflight(ls, run.img_vaddr, run.len, &f), 0);
	assert_int_equal(f.img_vaddr, BASE + 2 * PG);
	assert_int_equal(f.len, PG);
	assert_int_equal(lazyset_complete(ls, run.img_vaddr, run.len), 1);
	/* Across the gap and two ranges, unaligned ends widened to pages. */
	assert_int_equal(lazyset_remove(ls, BASE + 14 * PG + 100, 8 * PG, &dropped), 0);
	assert_int_equal(dropped, 2 + 3);
	assert_int_equal(lazyset_lookup(ls, BASE + 13 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 22 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 23 * PG), LAZY_PENDING);
	/* Nothing there: no change; a zero length: no change. */
	assert_int_equal(lazyset_remove(ls, BASE + 100 * PG, 4 * PG, &dropped), 0);
	assert_int_equal(dropped, 0);
	assert_int_equal(lazyset_remove(ls, BASE, 0, &dropped), 0);
	assert_int_equal(dropped, 0);
	/* Exactly one whole range. */
	assert_int_equal(lazyset_remove(ls, BASE + 28 * PG, 32 * PG, &dropped), 0);
	assert_int_equal(dropped, 32);
	assert_int_equal(lazyset_remaining(ls), 56 - 2 - 1 - 1 - 5 - 32);
	assert_int_equal(lazyset_check(ls), 0);
	/* Everything. */
	assert_int_equal(lazyset_remove(ls, 0, UINT64_MAX - 2 * PG, &dropped), 0);
	assert_int_equal(lazyset_remaining(ls), 0);
	assert_int_equal(lazyset_claim_next(ls, 8, &run), -ENOENT);
	assert_int_equal(lazyset_check(ls), 0);
	lazyset_free(ls);
}

static void test_remap_edges(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3);
	const uint64_t NEW = 0x7f0000000000ull;
	struct lazy_run run, f;
	uint64_t dropped;

	assert_int_equal(lazyset_remap(ls, BASE + 1, NEW, PG), -EINVAL);
	/* Pages 4..11 of the first range in flight, then part of them moves. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 4 * PG, 8, &run), 0);
	assert_int_equal(lazyset_remap(ls, BASE + 8 * PG, NEW, 8 * PG), 0);
	assert_int_equal(lazyset_check(ls), 0);
	assert_int_equal(lazyset_lookup(ls, BASE + 8 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, NEW), LAZY_INFLIGHT);
	assert_int_equal(lazyset_lookup(ls, NEW + 4 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, NEW + 8 * PG), LAZY_NONE);
	/* The request's pages now live in two places. */
	assert_int_equal(lazyset_first_inflight(ls, run.img_vaddr, run.len, &f), 0);
	assert_int_equal(f.rt_addr, BASE + 4 * PG);
	assert_int_equal(f.len, 4 * PG);
	assert_int_equal(lazyset_complete(ls, f.img_vaddr, f.len), 4);
	assert_int_equal(lazyset_first_inflight(ls, run.img_vaddr, run.len, &f), 0);
	assert_int_equal(f.rt_addr, NEW);
	assert_int_equal(f.img_vaddr, BASE + 8 * PG);
	assert_int_equal(f.len, 4 * PG);
	assert_int_equal(f.pages_off, 8 * PG);
	/* A fault at the new address reads the old image address. */
	assert_int_equal(lazyset_claim_fault(ls, NEW + 5 * PG, 16, &f), 0);
	assert_int_equal(f.img_vaddr, BASE + 13 * PG);
	assert_int_equal(f.len, 3 * PG);
	/* Moving onto lazy pages drops them (the kernel unmapped them first). */
	assert_int_equal(lazyset_remap(ls, NEW, BASE + 28 * PG, 8 * PG), 0);
	assert_int_equal(lazyset_check(ls), 0);
	assert_int_equal(lazyset_lookup(ls, NEW), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 28 * PG), LAZY_INFLIGHT);
	assert_int_equal(lazyset_lookup(ls, BASE + 32 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(ls, BASE + 36 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_total(ls), 56);
	/* 8 pages of the third range were overwritten: 4 done, 7 in flight, rest pending. */
	assert_int_equal(lazyset_remaining(ls), 56 - 4 - 8);
	/* Read-ahead never runs from a moved piece into its new neighbour. */
	assert_int_equal(lazyset_claim_fault(ls, BASE + 32 * PG, 16, &f), 0);
	assert_int_equal(f.img_vaddr, BASE + 12 * PG);
	assert_int_equal(f.len, PG);
	/* Moving something that is not lazy is a no-op that still clears the destination. */
	assert_int_equal(lazyset_remap(ls, BASE + 16 * PG, BASE + 40 * PG, 2 * PG), 0);
	assert_int_equal(lazyset_lookup(ls, BASE + 40 * PG), LAZY_NONE);
	assert_int_equal(lazyset_lookup(ls, BASE + 42 * PG), LAZY_PENDING);
	/* Moving back and forth keeps the pages. */
	assert_int_equal(lazyset_remap(ls, BASE + 20 * PG, NEW, 8 * PG), 0);
	assert_int_equal(lazyset_remap(ls, NEW, BASE + 20 * PG, 8 * PG), 0);
	assert_int_equal(lazyset_lookup(ls, BASE + 20 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_remove(ls, BASE + 20 * PG, 8 * PG, &dropped), 0);
	assert_int_equal(dropped, 8);
	assert_int_equal(lazyset_check(ls), 0);
	lazyset_free(ls);
}

static void test_clone_for_fork(void **state)
{
	struct lazyset *ls = make_set(three_ranges, 3), *child = NULL;
	struct lazy_run run, a, b;

	assert_int_equal(lazyset_claim_fault(ls, BASE, 4, &a), 0);
	assert_int_equal(lazyset_complete(ls, a.img_vaddr, a.len), 4);
	assert_int_equal(lazyset_claim_fault(ls, BASE + 4 * PG, 4, &b), 0);
	assert_int_equal(lazyset_remap(ls, BASE + 28 * PG, 0x7f0000000000ull, 32 * PG), 0);
	assert_int_equal(lazyset_clone(ls, &child), 0);
	assert_int_equal(lazyset_check(child), 0);
	/* Installed stays installed; in flight becomes pending; the layout is kept. */
	assert_int_equal(lazyset_remaining(child), 52);
	assert_int_equal(lazyset_inflight(child), 0);
	assert_int_equal(lazyset_lookup(child, BASE), LAZY_NONE);
	assert_int_equal(lazyset_lookup(child, BASE + 4 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(child, 0x7f0000000000ull), LAZY_PENDING);
	assert_int_equal(lazyset_lookup(child, BASE + 28 * PG), LAZY_NONE);
	/* Independent afterwards. */
	assert_int_equal(lazyset_claim_fault(child, BASE + 4 * PG, 16, &run), 0);
	assert_int_equal(run.len, 12 * PG);
	assert_int_equal(lazyset_lookup(ls, BASE + 8 * PG), LAZY_PENDING);
	assert_int_equal(lazyset_complete(ls, b.img_vaddr, b.len), 4);
	assert_int_equal(lazyset_lookup(child, BASE + 4 * PG), LAZY_INFLIGHT);
	lazyset_free(ls);
	assert_int_equal(lazyset_check(child), 0);
	lazyset_free(child);
}

/* 256 MiB in one range: the whole drain at 64 pages per claim, and lookups on the way. */
static void test_large_drain(void **state)
{
	struct img_lazy_range big = {.vaddr = BASE, .len = 256ull << 20, .pages_off = 0};
	struct lazyset *ls = make_set(&big, 1);
	struct lazy_run run;
	uint64_t claims = 0, pages = 0;

	while (lazyset_claim_next(ls, 64, &run) == 0) {
		assert_int_equal(run.rt_addr, BASE + pages * PG);
		assert_int_equal(run.pages_off, pages * PG);
		pages += run.len / PG;
		claims++;
		assert_int_equal(lazyset_complete(ls, run.img_vaddr, run.len), run.len / PG);
	}
	assert_int_equal(pages, 65536);
	assert_int_equal(claims, 1024);
	assert_int_equal(lazyset_remaining(ls), 0);
	assert_int_equal(lazyset_lookup(ls, BASE + 1000 * PG), LAZY_NONE);
	lazyset_free(ls);
}

/*
 * Random operations against a page-by-page model.  Model: for every image
 * page, its state and run-time address (0 = dropped).
 */
enum { M_NONE, M_PENDING, M_INFLIGHT };

struct model {
	size_t n;
	uint64_t img[96];
	uint64_t rt[96];
	int st[96];
	int range[96];
};

static uint64_t rnd_state = 0x1234567;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static int model_find_rt(const struct model *m, uint64_t rt)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->st[i] != M_NONE && m->rt[i] == rt)
			return (int)i;
	return -1;
}

/* want < 0: any state but M_NONE (a clone, where both became pending). */
static void model_check_run(const struct model *m, const struct lazy_run *r, int want)
{
	int i = model_find_rt(m, r->rt_addr);

	assert_true(i >= 0);
	assert_true(r->len >= PG);
	for (uint64_t k = 0; k < r->len / PG; k++) {
		assert_true((size_t)i + k < m->n);
		if (want < 0)
			assert_int_not_equal(m->st[i + k], M_NONE);
		else
			assert_int_equal(m->st[i + k], want);
		assert_int_equal(m->rt[i + k], r->rt_addr + k * PG);
		assert_int_equal(m->img[i + k], r->img_vaddr + k * PG);
		assert_int_equal(m->range[i + k], m->range[i]);
	}
}

static void model_set(struct model *m, const struct lazy_run *r, int st)
{
	int i = model_find_rt(m, r->rt_addr);

	for (uint64_t k = 0; k < r->len / PG; k++)
		m->st[i + k] = st;
}

static void test_random_against_model(void **state)
{
	struct img_lazy_range ranges[] = {
	    {.vaddr = BASE, .len = 40 * PG, .pages_off = 0},
	    {.vaddr = BASE + 48 * PG, .len = 24 * PG, .pages_off = 40 * PG},
	    {.vaddr = BASE + 72 * PG, .len = 32 * PG, .pages_off = 64 * PG},
	};
	const uint64_t span = 160; /* run-time addresses used: BASE .. BASE + span pages */

	for (int round = 0; round < 200; round++) {
		struct lazyset *ls = make_set(ranges, 3);
		struct model m = {0};

		for (int r = 0; r < 3; r++)
			for (uint64_t k = 0; k < ranges[r].len / PG; k++) {
				m.img[m.n] = ranges[r].vaddr + k * PG;
				m.rt[m.n] = m.img[m.n];
				m.st[m.n] = M_PENDING;
				m.range[m.n] = r;
				m.n++;
			}
		for (int op = 0; op < 60; op++) {
			uint64_t a = BASE + (rnd() % span) * PG, len = (1 + rnd() % 24) * PG;
			struct lazy_run run;
			uint64_t dropped, want = 0;
			int i, ret;

			switch (rnd() % 6) {
			case 0: /* fault */
				i = model_find_rt(&m, a);
				ret = lazyset_claim_fault(ls, a, 1 + rnd() % 16, &run);
				if (i < 0 || m.st[i] != M_PENDING) {
					assert_int_equal(ret, -ENOENT);
					break;
				}
				assert_int_equal(ret, 0);
				assert_int_equal(run.rt_addr, a);
				model_check_run(&m, &run, M_PENDING);
				model_set(&m, &run, M_INFLIGHT);
				break;
			case 1: /* drain */
				ret = lazyset_claim_next(ls, 1 + rnd() % 32, &run);
				for (size_t k = 0; k < m.n; k++)
					want += m.st[k] == M_PENDING;
				assert_int_equal(ret, want ? 0 : -ENOENT);
				if (ret == 0) {
					model_check_run(&m, &run, M_PENDING);
					model_set(&m, &run, M_INFLIGHT);
				}
				break;
			case 2: /* complete or unclaim the first in-flight run of some range */
				i = (int)(rnd() % m.n);
				if (lazyset_first_inflight(ls, m.img[i], len, &run) != 0)
					break;
				model_check_run(&m, &run, M_INFLIGHT);
				if (rnd() & 1) {
					assert_int_equal(
					    lazyset_complete(ls, run.img_vaddr, run.len),
					    run.len / PG);
					model_set(&m, &run, M_NONE);
				} else {
					assert_int_equal(
					    lazyset_unclaim(ls, run.img_vaddr, run.len),
					    run.len / PG);
					model_set(&m, &run, M_PENDING);
				}
				break;
			case 3: /* remove */
				for (size_t k = 0; k < m.n; k++)
					if (m.st[k] != M_NONE && m.rt[k] >= a &&
					    m.rt[k] < a + len) {
						m.st[k] = M_NONE;
						want++;
					}
				assert_int_equal(lazyset_remove(ls, a, len, &dropped), 0);
				assert_int_equal(dropped, want);
				break;
			default: { /* remap, never overlapping, as mremap guarantees */
				uint64_t to = BASE + (rnd() % span) * PG;

				if ((to < a + len && a < to + len))
					break;
				for (size_t k = 0; k < m.n; k++)
					if (m.st[k] != M_NONE && m.rt[k] >= to &&
					    m.rt[k] < to + len)
						m.st[k] = M_NONE;
				for (size_t k = 0; k < m.n; k++)
					if (m.st[k] != M_NONE && m.rt[k] >= a && m.rt[k] < a + len)
						m.rt[k] = m.rt[k] - a + to;
				assert_int_equal(lazyset_remap(ls, a, to, len), 0);
				break;
			}
			}
			assert_int_equal(lazyset_check(ls), 0);
			/* Every run-time page agrees with the model. */
			for (uint64_t p = 0; p < span + 8; p++) {
				uint64_t addr = BASE + p * PG;
				int k = model_find_rt(&m, addr);
				enum lazy_state s = lazyset_lookup(ls, addr);

				if (k < 0)
					assert_int_equal(s, LAZY_NONE);
				else
					assert_int_equal(s, m.st[k] == M_PENDING ? LAZY_PENDING
										 : LAZY_INFLIGHT);
			}
		}
		/* A clone sees in-flight pages as pending; the drain then empties it. */
		{
			struct lazyset *child = NULL;
			struct lazy_run run;
			uint64_t want = 0, got = 0;

			for (size_t k = 0; k < m.n; k++)
				want += m.st[k] != M_NONE;
			assert_int_equal(lazyset_clone(ls, &child), 0);
			assert_int_equal(lazyset_pending(child), want);
			while (lazyset_claim_next(child, 7, &run) == 0) {
				model_check_run(&m, &run, -1);
				got += lazyset_complete(child, run.img_vaddr, run.len);
			}
			assert_int_equal(got, want);
			assert_int_equal(lazyset_remaining(child), 0);
			lazyset_free(child);
		}
		lazyset_free(ls);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_lookup),
	    cmocka_unit_test(test_create_rejects_bad_ranges),
	    cmocka_unit_test(test_claim_fault_readahead),
	    cmocka_unit_test(test_complete_unclaim),
	    cmocka_unit_test(test_claim_next_order_and_wrap),
	    cmocka_unit_test(test_remove_edges),
	    cmocka_unit_test(test_remap_edges),
	    cmocka_unit_test(test_clone_for_fork),
	    cmocka_unit_test(test_large_drain),
	    cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
