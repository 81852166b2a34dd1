// SPDX-License-Identifier: GPL-2.0-or-later
/* The local page source (and its fault injection), the staging region, latency statistics. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "latstat.h"
#include "log.h"
#include "pagesrc.h"
#include "pagesrc_local.h"
#include "pattern.h"
#include "staging.h"
#include "util.h"

#define PG   4096u
#define BASE 0x7e0000000000ull

/* ---- staging ---- */

static void test_staging(void **state)
{
	struct staging *st = NULL;
	int a, b, c;

	assert_int_equal(staging_create(0, 4, &st), -EINVAL);
	assert_int_equal(staging_create(5000, 0, &st), -EINVAL);
	assert_int_equal(staging_create(5000, 3, &st), 0);
	/* Rounded to pages, one contiguous page-aligned region. */
	assert_int_equal(staging_slot_size(st), 8192);
	assert_int_equal(staging_len(st), 3 * 8192);
	assert_int_equal((uintptr_t)staging_base(st) % PG, 0);
	a = staging_get(st);
	b = staging_get(st);
	c = staging_get(st);
	assert_true(a >= 0 && b >= 0 && c >= 0 && a != b && b != c && a != c);
	assert_int_equal(staging_get(st), -EBUSY);
	assert_int_equal(staging_nr_free(st), 0);
	for (int s = 0; s < 3; s++) {
		uint8_t *p = staging_slot(st, s);

		assert_true(p >= (uint8_t *)staging_base(st));
		assert_true(p + staging_slot_size(st) <=
			    (uint8_t *)staging_base(st) + staging_len(st));
		memset(p, s, staging_slot_size(st)); /* writable, no overlap checked below */
	}
	assert_int_equal(((uint8_t *)staging_slot(st, 1))[8191], 1);
	staging_put(st, b);
	assert_int_equal(staging_nr_free(st), 1);
	/* Returning a free slot again is refused, not corrupting the free list. */
	staging_put(st, b);
	assert_int_equal(staging_nr_free(st), 1);
	assert_int_equal(staging_get(st), b);
	assert_int_equal(staging_get(st), -EBUSY);
	staging_put(st, a);
	staging_put(st, b);
	staging_put(st, c);
	staging_put(st, c);
	staging_put(st, 7);
	assert_int_equal(staging_nr_free(st), 3);
	staging_free(st);
}

/* ---- latstat ---- */

static void test_latstat(void **state)
{
	struct latstat ls;
	char buf[256];

	assert_int_equal(latstat_init(&ls, 1000), 0);
	assert_int_equal(latstat_percentile(&ls, 50), 0);
	for (uint64_t i = 1; i <= 100; i++)
		latstat_add(&ls, i * 1000); /* 1..100 us */
	assert_int_equal(ls.count, 100);
	assert_int_equal(ls.min_ns, 1000);
	assert_int_equal(ls.max_ns, 100000);
	assert_int_equal(latstat_mean(&ls), 50500);
	assert_int_equal(latstat_percentile(&ls, 50), 50000);
	assert_int_equal(latstat_percentile(&ls, 99), 99000);
	assert_int_equal(latstat_percentile(&ls, 100), 100000);
	assert_int_equal(latstat_percentile(&ls, 0), 1000);
	/* log2 buckets: 1 us -> [0,2), 2..3 -> [2,4), 64..100 -> [64,128) */
	assert_int_equal(ls.hist[0], 1);
	assert_int_equal(ls.hist[1], 2);
	assert_int_equal(ls.hist[6], 37);
	latstat_format_hist(&ls, buf, sizeof(buf));
	assert_non_null(strstr(buf, "0:1 2:2 4:4"));
	assert_non_null(strstr(buf, "64:37"));
	latstat_destroy(&ls);

	/* Bounded: a million samples in 100 slots, percentiles still about right. */
	assert_int_equal(latstat_init(&ls, 100), 0);
	for (uint64_t i = 0; i < 1000000; i++)
		latstat_add(&ls, (i % 1000) * 1000);
	assert_int_equal(ls.nr_samples, 100);
	assert_int_equal(ls.count, 1000000);
	assert_in_range(latstat_percentile(&ls, 50), 300000, 700000);
	latstat_destroy(&ls);
}

/* ---- local page source ---- */

static void test_parse_inject(void **state)
{
	struct pagesrc_local_inject inj;

	assert_int_equal(pagesrc_local_parse_inject("delay=250,fail-after=3,verify", &inj), 0);
	assert_int_equal(inj.delay_us, 250);
	assert_int_equal(inj.fail_after, 3);
	assert_int_equal(inj.verify, 1);
	assert_int_equal(inj.gone_after, 0);
	assert_int_equal(
	    pagesrc_local_parse_inject("hang-after=1,corrupt-after=2,gone-after=9", &inj), 0);
	assert_int_equal(inj.hang_after, 1);
	assert_int_equal(inj.corrupt_after, 2);
	assert_int_equal(inj.gone_after, 9);
	assert_int_equal(pagesrc_local_parse_inject("delay", &inj), -EINVAL);
	assert_int_equal(pagesrc_local_parse_inject("fail-after=0", &inj), -EINVAL);
	assert_int_equal(pagesrc_local_parse_inject("nonsense=1", &inj), -EINVAL);
	assert_int_equal(pagesrc_local_parse_inject("delay=x", &inj), -EINVAL);
}

struct lfx {
	char dir[64];
	struct img_task task;
	struct img_lazy_range lazy;
	struct img_set set;
	struct event_base *base;
	struct staging *st;
	struct pagesrc *src;
	int done[16];
	int status[16];
	int order[16];
	int nr_done;
	int gone_calls;
};

static struct lfx *lfx_new(const char *inject)
{
	struct lfx *f = calloc(1, sizeof(*f));
	struct pagesrc_local_inject inj;
	uint8_t page[PG];
	char path[128];
	int fd;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/rdmig-pagesrc-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/pages-1.img", f->dir);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	assert_true(fd >= 0);
	for (unsigned i = 0; i < 16; i++) {
		pattern_fill(page, BASE + i * PG, 7);
		assert_int_equal(write(fd, page, PG), PG);
	}
	close(fd);
	f->lazy = (struct img_lazy_range){.vaddr = BASE, .len = 16 * PG, .pages_off = 0};
	f->task = (struct img_task){.pid = 5,
				    .has_memory = true,
				    .pages_id = 1,
				    .lazy = &f->lazy,
				    .nr_lazy = 1,
				    .lazy_bytes = 16 * PG};
	f->set = (struct img_set){.dir = f->dir, .tasks = &f->task, .nr_tasks = 1};
	f->base = event_base_new();
	assert_int_equal(staging_create(4 * PG, 8, &f->st), 0);
	if (inject)
		assert_int_equal(pagesrc_local_parse_inject(inject, &inj), 0);
	assert_int_equal(pagesrc_local_create(f->base, &f->set, inject ? &inj : NULL, &f->src), 0);
	return f;
}

static void lfx_free(struct lfx *f)
{
	char path[128];

	pagesrc_destroy(f->src);
	staging_free(f->st);
	event_base_free(f->base);
	snprintf(path, sizeof(path), "%s/pages-1.img", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
}

static struct lfx *cur;

static void lfx_done(struct pagesrc_req *req, int status)
{
	int i = (int)req->cookie;

	cur->done[i]++;
	cur->status[i] = status;
	cur->order[cur->nr_done++] = i;
}

static void lfx_gone(struct pagesrc *src, int err, const char *reason, void *arg)
{
	cur->gone_calls++;
}

static void lfx_req(struct lfx *f, struct pagesrc_req *r, int i, unsigned page, unsigned n,
		    enum pagesrc_prio prio)
{
	*r = (struct pagesrc_req){
	    .pid = 5,
	    .img_vaddr = BASE + page * PG,
	    .len = n * PG,
	    .pages_off = page * PG,
	    .dst = staging_slot(f->st, i),
	    .prio = prio,
	    .cookie = (uint64_t)i,
	    .done = lfx_done,
	};
}

static void lfx_spin(struct lfx *f, int n)
{
	for (int i = 0; i < n; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static void test_local_reads_in_priority_order(void **state)
{
	struct lfx *f = lfx_new(NULL);
	struct pagesrc_req r[4];

	cur = f;
	lfx_req(f, &r[0], 0, 0, 4, PAGESRC_PRIO_DRAIN);
	lfx_req(f, &r[1], 1, 4, 4, PAGESRC_PRIO_DRAIN);
	lfx_req(f, &r[2], 2, 9, 1, PAGESRC_PRIO_FAULT);
	lfx_req(f, &r[3], 3, 12, 2, PAGESRC_PRIO_DRAIN);
	r[3].pages_off = IMG_NO_OFFSET;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pagesrc_submit(f->src, &r[i]), 0);
	/* Never completed inside submit. */
	assert_int_equal(f->nr_done, 0);
	lfx_spin(f, 10);
	assert_int_equal(f->nr_done, 4);
	/* The fault overtakes the background reads queued before it. */
	assert_int_equal(f->order[0], 2);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(f->done[i], 1);
		assert_int_equal(f->status[i], 0);
		for (uint64_t off = 0; off < r[i].len; off += PG)
			assert_int_equal(
			    pattern_check((uint8_t *)r[i].dst + off, r[i].img_vaddr + off, 7, NULL),
			    0);
	}
	/* No data in the local file: permanent. */
	assert_int_equal(f->status[3], -ENODATA);
	lfx_free(f);
}

static void test_local_inject_fail_and_gone(void **state)
{
	struct lfx *f = lfx_new("fail-after=1,gone-after=3");
	struct pagesrc_req r[5];

	cur = f;
	pagesrc_set_gone_handler(f->src, lfx_gone, NULL);
	for (int i = 0; i < 3; i++) {
		lfx_req(f, &r[i], i, (unsigned)i, 1, PAGESRC_PRIO_DRAIN);
		assert_int_equal(pagesrc_submit(f->src, &r[i]), 0);
	}
	lfx_spin(f, 10);
	assert_int_equal(f->status[0], 0);
	assert_int_equal(f->status[1], -EIO);
	assert_int_equal(f->status[2], -EIO);
	assert_int_equal(f->gone_calls, 0);
	lfx_req(f, &r[3], 3, 3, 1, PAGESRC_PRIO_FAULT);
	assert_int_equal(pagesrc_submit(f->src, &r[3]), 0);
	lfx_spin(f, 10);
	/* The 4th request finds the source gone: it completes with the error, once. */
	assert_int_equal(f->gone_calls, 1);
	assert_int_equal(f->done[3], 1);
	assert_int_equal(f->status[3], -ECONNRESET);
	assert_true(pagesrc_is_gone(f->src));
	lfx_req(f, &r[4], 4, 4, 1, PAGESRC_PRIO_FAULT);
	assert_int_equal(pagesrc_submit(f->src, &r[4]), -ECONNRESET);
	lfx_free(f);
}

static void test_local_delay_cancel_hang(void **state)
{
	struct lfx *f = lfx_new("delay=30000,hang-after=2");
	struct pagesrc_req r[3];
	uint64_t t0 = now_ns();

	cur = f;
	for (int i = 0; i < 3; i++) {
		lfx_req(f, &r[i], i, (unsigned)i, 1, PAGESRC_PRIO_DRAIN);
		assert_int_equal(pagesrc_submit(f->src, &r[i]), 0);
	}
	assert_int_equal(pagesrc_cancel(&r[1]), 0);
	while (!f->done[0] && now_ns() - t0 < 2000000000ull)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_true(now_ns() - t0 >= 30000000ull);
	lfx_spin(f, 10);
	assert_int_equal(f->done[0], 1);
	assert_int_equal(f->done[1], 0); /* cancelled */
	assert_int_equal(f->done[2], 0); /* hangs; destroy forgets it */
	assert_int_equal(pagesrc_cancel(&r[1]), -ENOENT);
	lfx_free(f);
}

static void test_local_verify_catches_corruption(void **state)
{
	struct lfx *f = lfx_new("corrupt-after=1,verify");
	struct pagesrc_req r[2];

	cur = f;
	for (int i = 0; i < 2; i++) {
		lfx_req(f, &r[i], i, (unsigned)(2 * i), 2, PAGESRC_PRIO_DRAIN);
		assert_int_equal(pagesrc_submit(f->src, &r[i]), 0);
	}
	lfx_spin(f, 10);
	assert_int_equal(f->status[0], 0);
	assert_int_equal(f->status[1], 0);
	assert_int_equal(pagesrc_verify(&r[0], r[0].dst, r[0].len), 0);
	assert_int_equal(pagesrc_verify(&r[1], r[1].dst, r[1].len), -EBADMSG);
	lfx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_staging),
	    cmocka_unit_test(test_latstat),
	    cmocka_unit_test(test_parse_inject),
	    cmocka_unit_test(test_local_reads_in_priority_order),
	    cmocka_unit_test(test_local_inject_fail_and_gone),
	    cmocka_unit_test(test_local_delay_cancel_hang),
	    cmocka_unit_test(test_local_verify_catches_corruption),
	};

	log_init("test_pagesrc", LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
