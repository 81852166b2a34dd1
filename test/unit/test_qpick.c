// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "qpick.h"

/* Puts count READs through qpick_least(), none completing; fills per-QP counts. */
static void post(uint32_t *out, const bool *up, unsigned int n, unsigned int *next,
		 unsigned int count)
{
	for (unsigned int i = 0; i < count; i++)
		out[qpick_least(out, up, n, next)]++;
}

/* One QP (no extra one up, as with an older source): every READ on the first. */
static void test_one_qp(void **state)
{
	uint32_t out[4] = {0};
	bool up[4] = {true, false, false, false};
	unsigned int next = 0;

	post(out, up, 4, &next, 10);
	assert_int_equal(out[0], 10);
	assert_int_equal(out[1] + out[2] + out[3], 0);
}

/* Two and four QPs up: equal shares when nothing completes. */
static void test_spreads_evenly(void **state)
{
	uint32_t out[4] = {0};
	bool up[4] = {true, true, false, false};
	unsigned int next = 0;

	post(out, up, 4, &next, 8);
	assert_int_equal(out[0], 4);
	assert_int_equal(out[1], 4);
	assert_int_equal(out[2] + out[3], 0);

	uint32_t out4[4] = {0};
	bool up4[4] = {true, true, true, true};
	post(out4, up4, 4, &next, 16);
	for (int i = 0; i < 4; i++)
		assert_int_equal(out4[i], 4);
}

/* A QP whose READs complete late gets the next ones last. */
static void test_least_outstanding(void **state)
{
	uint32_t out[4] = {3, 0, 5, 1};
	bool up[4] = {true, true, true, true};
	unsigned int next = 0;

	assert_int_equal(qpick_least(out, up, 4, &next), 1);
	out[1] = 2;
	assert_int_equal(qpick_least(out, up, 4, &next), 3);
	out[3] = 2;
	/* Ties go round-robin from past the last one picked. */
	assert_int_equal(qpick_least(out, up, 4, &next), 1);
	out[1] = 3;
	assert_int_equal(qpick_least(out, up, 4, &next), 3);
}

/* A QP that went down (its connect failed) is skipped; the first never is. */
static void test_skips_down(void **state)
{
	uint32_t out[4] = {9, 0, 0, 0};
	bool up[4] = {false, false, true, false};
	unsigned int next = 0;

	assert_int_equal(qpick_least(out, up, 4, &next), 2);
	out[2] = 10;
	assert_int_equal(qpick_least(out, up, 4, &next), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_qp),
	    cmocka_unit_test(test_spreads_evenly),
	    cmocka_unit_test(test_least_outstanding),
	    cmocka_unit_test(test_skips_down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
