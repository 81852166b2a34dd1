// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * waitq: the source agent's queue rules on a hand-made list: each
 * destination's line is FIFO and apart from the others', the dump slots'
 * line is one for all, positions count only their own line, only queued
 * migrations count, and the backoff starts at 1 s, doubles, and stops at
 * its bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "source-agent/waitq.h"

#define N 6

/* A list of n migrations: state, reason and destination each. */
struct fixture {
	struct src_mig_list list;
	struct src_migration m[N];
};

static void add(struct fixture *f, int i, enum src_mig_state st, enum src_queue_reason r,
		char *dest)
{
	struct src_migration *m = &f->m[i];

	memset(m, 0, sizeof(*m));
	m->state = st;
	m->queue_reason = r;
	m->dest = dest;
	TAILQ_INSERT_TAIL(&f->list, m, link);
}

static void test_lines(void **state)
{
	static char a[] = "a:7472", b[] = "b:7472", a2[] = "a:7472";
	struct fixture f;

	(void)state;
	TAILQ_INIT(&f.list);
	add(&f, 0, SRC_MIG_DUMPING, SRC_QUEUE_SLOT, a);	  /* started: in no line */
	add(&f, 1, SRC_MIG_QUEUED, SRC_QUEUE_SLOT, a);	  /* a's first */
	add(&f, 2, SRC_MIG_QUEUED, SRC_QUEUE_DUMP, a);	  /* the dumps' first */
	add(&f, 3, SRC_MIG_QUEUED, SRC_QUEUE_SLOT, b);	  /* b's first */
	add(&f, 4, SRC_MIG_QUEUED, SRC_QUEUE_SOURCE, a2); /* a's second: same host:port */
	add(&f, 5, SRC_MIG_QUEUED, SRC_QUEUE_DUMP, b);	  /* the dumps' second */

	assert_int_equal(src_queue_position(&f.list, &f.m[0]), 0);
	assert_int_equal(src_queue_position(&f.list, &f.m[1]), 1);
	assert_int_equal(src_queue_position(&f.list, &f.m[2]), 1);
	assert_int_equal(src_queue_position(&f.list, &f.m[3]), 1);
	assert_int_equal(src_queue_position(&f.list, &f.m[4]), 2);
	assert_int_equal(src_queue_position(&f.list, &f.m[5]), 2);
	/* Ahead of a start not listed yet: the dumps' line, or every queued one. */
	assert_int_equal(src_queue_ahead(&f.list, NULL, true), 2);
	assert_int_equal(src_queue_ahead(&f.list, NULL, false), 5);
	assert_true(src_queue_same_dest(&f.m[1], &f.m[4]));
	assert_false(src_queue_same_dest(&f.m[1], &f.m[3]));

	/* The first of a's line leaves it: the second moves up, the others stay. */
	f.m[1].state = SRC_MIG_DUMPING;
	assert_int_equal(src_queue_position(&f.list, &f.m[4]), 1);
	assert_int_equal(src_queue_position(&f.list, &f.m[3]), 1);
	assert_int_equal(src_queue_position(&f.list, &f.m[5]), 2);
	/* Ended (aborted) ones count no more. */
	f.m[2].state = SRC_MIG_ABORTED;
	assert_int_equal(src_queue_position(&f.list, &f.m[5]), 1);
	assert_int_equal(src_queue_position(&f.list, &f.m[2]), 0);
}

static void test_no_dest(void **state)
{
	struct fixture f;

	(void)state;
	TAILQ_INIT(&f.list);
	add(&f, 0, SRC_MIG_QUEUED, SRC_QUEUE_SOURCE, NULL);
	add(&f, 1, SRC_MIG_QUEUED, SRC_QUEUE_SOURCE, NULL);
	assert_int_equal(src_queue_position(&f.list, &f.m[1]), 2);
	assert_true(src_queue_same_dest(&f.m[0], &f.m[1]));
}

static void test_backoff(void **state)
{
	unsigned int ms = 0, seen[8];

	(void)state;
	for (int i = 0; i < 8; i++)
		seen[i] = ms = src_queue_backoff_next(ms, 10000);
	assert_int_equal(seen[0], 1000);
	assert_int_equal(seen[1], 2000);
	assert_int_equal(seen[2], 4000);
	assert_int_equal(seen[3], 8000);
	assert_int_equal(seen[4], 10000);
	assert_int_equal(seen[7], 10000);
	/* A bound below a second is the first wait too. */
	assert_int_equal(src_queue_backoff_next(0, 500), 500);
	assert_int_equal(src_queue_backoff_next(500, 500), 500);
	/* No overflow near the top. */
	assert_int_equal(src_queue_backoff_next(UINT32_MAX - 1, UINT32_MAX), UINT32_MAX);
}

static void test_reasons(void **state)
{
	(void)state;
	assert_string_equal(src_queue_reason_str(SRC_QUEUE_SLOT), "slot");
	assert_string_equal(src_queue_reason_str(SRC_QUEUE_SOURCE), "source");
	assert_string_equal(src_queue_reason_str(SRC_QUEUE_DUMP), "dump");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines),
	    cmocka_unit_test(test_no_dest),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
