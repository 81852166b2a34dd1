// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "readahead.h"

#define PG 4096ull
/* An arbitrary mapping: nothing may depend on page 0. */
#define BASE 0x7f0000000000ull

/*
 * Feeds a scan as the engine sees it: each fault fetches its window, so
 * the next fault comes right after it.  Returns the last window.
 */
static uint32_t scan(struct readahead *ra, uint64_t start, int faults)
{
	uint64_t addr = start;
	uint32_t w = 0;

	for (int i = 0; i < faults; i++) {
		w = readahead_fault(ra, addr);
		addr += w * PG;
	}
	return w;
}

static void test_first_fault(void **state)
{
	struct readahead ra;

	readahead_init(&ra, PG, 64);
	assert_int_equal(readahead_pattern(&ra), RA_NONE);
	assert_int_equal(readahead_fault(&ra, BASE + 5 * PG + 17), READAHEAD_FIRST);
	assert_string_equal(readahead_pattern_str(readahead_pattern(&ra)), "none");
}

static void test_scan_grows_to_max(void **state)
{
	struct readahead ra;

	readahead_init(&ra, PG, 64);
	/* 4, 8, 16, 32, 64, 64, ... */
	assert_int_equal(scan(&ra, BASE, 3), 16);
	assert_int_equal(scan(&ra, BASE + 28 * PG, 5), 64);
	assert_int_equal(readahead_pattern(&ra), RA_SEQUENTIAL);
	assert_string_equal(readahead_pattern_str(RA_SEQUENTIAL), "sequential");
}

static void test_scan_with_holes_filled_by_the_drain(void **state)
{
	struct readahead ra;
	uint32_t w;

	readahead_init(&ra, PG, 256);
	w = readahead_fault(&ra, BASE);
	/* The drain installed a few pages past the window: still the same scan. */
	w = readahead_fault(&ra, BASE + (w + 3) * PG);
	assert_int_equal(w, 2 * READAHEAD_FIRST);
	assert_int_equal(ra.last, RA_SEQUENTIAL);
}

static void test_random_fetches_one_page(void **state)
{
	static const uint64_t pages[] = {913, 17, 5531, 402, 77001, 3, 60210, 1234, 999, 40000};
	struct readahead ra;
	size_t i;

	readahead_init(&ra, PG, 64);
	readahead_fault(&ra, BASE + 500000 * PG);
	for (i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		assert_int_equal(readahead_fault(&ra, BASE + pages[i] * PG), 1);
	assert_int_equal(readahead_pattern(&ra), RA_RANDOM);
	assert_int_equal(ra.n[RA_RANDOM], 10);
}

static void test_long_stride_page_by_page(void **state)
{
	struct readahead ra;
	int i;

	readahead_init(&ra, PG, 64);
	/* One page in every 100: read-ahead would fetch 99 unwanted pages. */
	readahead_fault(&ra, BASE);
	readahead_fault(&ra, BASE + 100 * PG);
	for (i = 2; i < 20; i++)
		assert_int_equal(readahead_fault(&ra, BASE + (uint64_t)i * 100 * PG), 1);
	assert_int_equal(ra.last, RA_STRIDED);
	assert_int_equal(readahead_pattern(&ra), RA_STRIDED);
	assert_string_equal(readahead_pattern_str(RA_STRIDED), "strided");
}

static void test_short_stride_fetched_as_a_window(void **state)
{
	struct readahead ra;

	readahead_init(&ra, PG, 64);
	/* Every 8th page: a window of four strides covers the next three. */
	readahead_fault(&ra, BASE);
	assert_int_equal(readahead_fault(&ra, BASE + 40 * PG), 1);
	assert_int_equal(readahead_fault(&ra, BASE + 48 * PG), 1);
	assert_int_equal(readahead_fault(&ra, BASE + 56 * PG), 32);
	assert_int_equal(ra.last, RA_STRIDED);
}

static void test_backward_scan_is_random(void **state)
{
	struct readahead ra;
	int i;

	readahead_init(&ra, PG, 64);
	readahead_fault(&ra, BASE + 1000 * PG);
	for (i = 1; i < 10; i++)
		readahead_fault(&ra, BASE + (uint64_t)(1000 - 3 * i) * PG);
	/* A constant negative stride: strided, one page at a time. */
	assert_int_equal(ra.window, 1);
	assert_int_not_equal(readahead_pattern(&ra), RA_SEQUENTIAL);
}

static void test_interleaved_scans_keep_their_streams(void **state)
{
	uint64_t next[3] = {BASE, BASE + (1ull << 30), BASE + (2ull << 30)};
	struct readahead ra;
	uint32_t w = 0;
	int i, t;

	readahead_init(&ra, PG, 64);
	/* Three threads scanning their own areas, their faults interleaved. */
	for (i = 0; i < 8; i++) {
		for (t = 0; t < 3; t++) {
			w = readahead_fault(&ra, next[t]);
			next[t] += w * PG;
		}
	}
	assert_int_equal(w, 64);
	assert_int_equal(readahead_pattern(&ra), RA_SEQUENTIAL);
}

static void test_interleaved_strides_keep_their_streams(void **state)
{
	struct readahead ra;
	int i, t;

	readahead_init(&ra, PG, 64);
	/*
	 * Four threads each read every 32nd page of their own 1024 pages,
	 * their faults interleaved: the task is strided by 32, not by the
	 * 1024 between one thread's fault and the next's.
	 */
	for (i = 0; i < 32; i++)
		for (t = 0; t < 4; t++)
			readahead_fault(&ra, BASE + (uint64_t)(t * 1024 + i * 32) * PG);
	assert_int_equal(readahead_pattern(&ra), RA_STRIDED);
	assert_int_equal(ra.stride, 32);
	assert_true(ra.n[RA_STRIDED] >= 4 * 30);
}

static void test_stride_with_faults_served_otherwise(void **state)
{
	static const int pages[] = {0, 40, 80, 200, 240, 280, 320, 440, 480};
	struct readahead ra;
	size_t i;

	readahead_init(&ra, PG, 64);
	/* Every 40th page, but the drain brought 120, 160, 360 and 400 first. */
	for (i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		readahead_fault(&ra, BASE + (uint64_t)pages[i] * PG);
	assert_int_equal(ra.n[RA_STRIDED], 7);
	assert_int_equal(ra.stride, 40);
	/* Started at twice the stride: the finer one replaces it. */
	readahead_init(&ra, PG, 64);
	readahead_fault(&ra, BASE);
	readahead_fault(&ra, BASE + 80 * PG);
	readahead_fault(&ra, BASE + 120 * PG);
	assert_int_equal(ra.last, RA_STRIDED);
	assert_int_equal(ra.stride, 40);
}

static void test_pattern_change(void **state)
{
	struct readahead ra;

	readahead_init(&ra, PG, 64);
	scan(&ra, BASE, 6);
	assert_int_equal(ra.window, 64);
	/* Now at random: one page at once, not the scan's window. */
	assert_int_equal(readahead_fault(&ra, BASE + 777777 * PG), 1);
	assert_int_equal(ra.last, RA_RANDOM);
}

static void test_max_one_and_page_size(void **state)
{
	struct readahead ra;

	/* --readahead 1: never more than the faulting page. */
	readahead_init(&ra, PG, 1);
	assert_int_equal(scan(&ra, BASE, 10), 1);
	readahead_init(&ra, PG, 0);
	assert_int_equal(readahead_fault(&ra, BASE), 1);
	/* 64 KiB pages: addresses inside one page are one page. */
	readahead_init(&ra, 65536, 16);
	readahead_fault(&ra, BASE);
	assert_int_equal(readahead_fault(&ra, BASE + 4 * 65536 + 100), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_fault),
	    cmocka_unit_test(test_scan_grows_to_max),
	    cmocka_unit_test(test_scan_with_holes_filled_by_the_drain),
	    cmocka_unit_test(test_random_fetches_one_page),
	    cmocka_unit_test(test_long_stride_page_by_page),
	    cmocka_unit_test(test_short_stride_fetched_as_a_window),
	    cmocka_unit_test(test_backward_scan_is_random),
	    cmocka_unit_test(test_interleaved_scans_keep_their_streams),
	    cmocka_unit_test(test_interleaved_strides_keep_their_streams),
	    cmocka_unit_test(test_stride_with_faults_served_otherwise),
	    cmocka_unit_test(test_pattern_change),
	    cmocka_unit_test(test_max_one_and_page_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
