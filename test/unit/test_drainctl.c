// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "drainctl.h"

#define MS  1000000ull
#define KIB 1024ull
/* An arbitrary start of the clock: nothing may depend on it being 0. */
#define T0 (1000 * MS)

static void make(struct drainctl *dc, uint32_t quiet_ms, bool shared)
{
	drainctl_init(dc, 8, 256 * KIB, 64 * KIB, quiet_ms, shared);
}

static void test_starts_wide(void **state)
{
	struct drainctl dc;

	make(&dc, 0, false);
	drainctl_update(&dc, T0, false);
	assert_int_equal(dc.depth, 8);
	assert_int_equal(dc.chunk, 256 * KIB);
	assert_int_equal(dc.shrinks, 0);
	assert_int_equal(dc.grows, 0);
}

static void test_faults_halve_to_the_floor(void **state)
{
	struct drainctl dc;

	make(&dc, 0, false);
	drainctl_fault(&dc, T0);
	assert_int_equal(dc.depth, 4);
	assert_int_equal(dc.chunk, 128 * KIB);
	drainctl_fault(&dc, T0 + 100000);
	assert_int_equal(dc.depth, 2);
	assert_int_equal(dc.chunk, 64 * KIB);
	drainctl_fault(&dc, T0 + 200000);
	drainctl_fault(&dc, T0 + 300000);
	assert_int_equal(dc.depth, 1);
	assert_int_equal(dc.chunk, 64 * KIB);
	assert_int_equal(dc.shrinks, 3); /* the last fault found it at the floor */
}

static void test_grows_back_after_quiet(void **state)
{
	struct drainctl dc;
	uint64_t t, quiet;
	int steps = 0;

	make(&dc, 0, false);
	/* A burst with a 200 us rhythm: the quiet time is the 1 ms floor. */
	for (t = T0; t < T0 + 2 * MS; t += 200000)
		drainctl_fault(&dc, t);
	t -= 200000;
	quiet = drainctl_quiet_ns(&dc);
	assert_int_equal(quiet, 1 * MS);
	assert_int_equal(dc.depth, 1);
	/* Not before the quiet time... */
	drainctl_update(&dc, t + quiet - 1, false);
	assert_int_equal(dc.depth, 1);
	/* ...and not while a fault is still in flight. */
	drainctl_update(&dc, t + quiet, true);
	assert_int_equal(dc.depth, 1);
	/* Then one doubling per quarter of it, up to the maximum. */
	for (t += quiet; dc.depth < 8 || dc.chunk < 256 * KIB; t += quiet / 4) {
		drainctl_update(&dc, t, false);
		drainctl_update(&dc, t + 1, false); /* too soon for a second step */
		steps++;
		assert_true(steps <= 3);
	}
	assert_int_equal(steps, 3);
	assert_int_equal(dc.grows, 3);
	drainctl_update(&dc, t + 10 * quiet, false);
	assert_int_equal(dc.depth, 8);
	assert_int_equal(dc.chunk, 256 * KIB);
}

static void test_quiet_follows_the_gaps(void **state)
{
	struct drainctl dc;
	uint64_t t;

	make(&dc, 0, false);
	assert_int_equal(drainctl_quiet_ns(&dc), DRAINCTL_QUIET_FIRST_NS);
	/* Faults every 20 ms: the drain waits ~40 ms, not the 1 ms floor. */
	for (t = T0; t < T0 + 400 * MS; t += 20 * MS)
		drainctl_fault(&dc, t);
	t -= 20 * MS;
	assert_int_equal(drainctl_quiet_ns(&dc), 40 * MS);
	drainctl_update(&dc, t + 30 * MS, false);
	assert_int_equal(dc.depth, 1);
	drainctl_update(&dc, t + 40 * MS, false);
	assert_int_equal(dc.depth, 2);
	/* Seconds between faults: capped, the drain is never held for long. */
	make(&dc, 0, false);
	for (t = T0; t < T0 + 20000 * MS; t += 2000 * MS)
		drainctl_fault(&dc, t);
	assert_int_equal(drainctl_quiet_ns(&dc), DRAINCTL_QUIET_MAX_NS);
}

static void test_operator_quiet_overrides(void **state)
{
	struct drainctl dc;

	make(&dc, 50, false);
	drainctl_fault(&dc, T0);
	drainctl_fault(&dc, T0 + 100000);
	assert_int_equal(drainctl_quiet_ns(&dc), 50 * MS);
	drainctl_update(&dc, T0 + 100000 + 49 * MS, false);
	assert_int_equal(dc.depth, 2);
	drainctl_update(&dc, T0 + 100000 + 50 * MS, false);
	assert_int_equal(dc.depth, 4);
}

static void test_shared_queue_floor_while_faulting(void **state)
{
	struct drainctl dc;

	make(&dc, 0, true);
	drainctl_fault(&dc, T0);
	assert_int_equal(dc.depth, 4);
	drainctl_update(&dc, T0 + 1000, true);
	assert_int_equal(dc.depth, 1);
	assert_int_equal(dc.chunk, 64 * KIB);
	/* Without the shared queue a fault in flight only holds the size. */
	make(&dc, 0, false);
	drainctl_fault(&dc, T0);
	drainctl_update(&dc, T0 + 1000, true);
	assert_int_equal(dc.depth, 4);
	assert_int_equal(dc.chunk, 128 * KIB);
}

static void test_small_maximum(void **state)
{
	struct drainctl dc;

	/* --drain-chunk below the floor and --drain-depth 1 stay as given. */
	drainctl_init(&dc, 1, 16 * KIB, 64 * KIB, 0, false);
	drainctl_fault(&dc, T0);
	assert_int_equal(dc.depth, 1);
	assert_int_equal(dc.chunk, 16 * KIB);
	drainctl_update(&dc, T0 + 200 * MS, false);
	assert_int_equal(dc.depth, 1);
	assert_int_equal(dc.chunk, 16 * KIB);
}

static void test_floor_with_a_fault_lane(void **state)
{
	struct drainctl dc;

	/* Faults halve the depth to the floor and leave the chunk whole. */
	make(&dc, 0, false);
	drainctl_set_floor(&dc, 2);
	drainctl_fault(&dc, T0);
	assert_int_equal(dc.depth, 4);
	assert_int_equal(dc.chunk, 256 * KIB);
	drainctl_fault(&dc, T0 + 100000);
	drainctl_fault(&dc, T0 + 200000);
	drainctl_fault(&dc, T0 + 300000);
	assert_int_equal(dc.depth, 2);
	assert_int_equal(dc.chunk, 256 * KIB);
	/* It grows back as without a floor. */
	drainctl_update(&dc, T0 + 300 * MS, false);
	assert_int_equal(dc.depth, 4);
	/* A floor above --drain-depth is --drain-depth: faults change nothing. */
	make(&dc, 0, false);
	drainctl_set_floor(&dc, 16);
	drainctl_fault(&dc, T0);
	assert_int_equal(dc.depth, 8);
	assert_int_equal(dc.chunk, 256 * KIB);
	assert_int_equal(dc.shrinks, 0);
	/* Faults on the drain's own queue pair: the floor does not apply. */
	make(&dc, 0, true);
	drainctl_set_floor(&dc, 2);
	drainctl_fault(&dc, T0);
	drainctl_fault(&dc, T0 + 100000);
	drainctl_fault(&dc, T0 + 200000);
	assert_int_equal(dc.depth, 1);
	assert_int_equal(dc.chunk, 64 * KIB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starts_wide),
	    cmocka_unit_test(test_faults_halve_to_the_floor),
	    cmocka_unit_test(test_grows_back_after_quiet),
	    cmocka_unit_test(test_quiet_follows_the_gaps),
	    cmocka_unit_test(test_operator_quiet_overrides),
	    cmocka_unit_test(test_shared_queue_floor_while_faulting),
	    cmocka_unit_test(test_small_maximum),
	    cmocka_unit_test(test_floor_with_a_fault_lane),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
