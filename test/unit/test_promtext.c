// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promtext.h"

/* The buffer's text, NUL-terminated (caller frees). */
static char *text_of(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	assert_non_null(s);
	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	return s;
}

static void test_format(void **state)
{
	struct evbuffer *b = evbuffer_new();
	const char *l1[] = {"id", "m1", NULL};
	const char *l2[] = {"a", "x\"y\\z\nw", "b", "", NULL};
	char *s;

	assert_non_null(b);
	assert_int_equal(prom_family(b, "rdmig_x_total", PROM_COUNTER, "things"), 0);
	assert_int_equal(prom_u64(b, "rdmig_x_total", NULL, 18446744073709551615ull), 0);
	assert_int_equal(prom_u64(b, "rdmig_x_total", l1, 7), 0);
	assert_int_equal(prom_family(b, "rdmig_y_seconds", PROM_GAUGE, "time"), 0);
	assert_int_equal(prom_double(b, "rdmig_y_seconds", l2, 0.000125), 0);
	s = text_of(b);
	assert_string_equal(s, "# HELP rdmig_x_total things\n"
			       "# TYPE rdmig_x_total counter\n"
			       "rdmig_x_total 18446744073709551615\n"
			       "rdmig_x_total{id=\"m1\"} 7\n"
			       "# HELP rdmig_y_seconds time\n"
			       "# TYPE rdmig_y_seconds gauge\n"
			       "rdmig_y_seconds{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 0.000125\n");
	free(s);
	evbuffer_free(b);
}

static void test_histogram(void **state)
{
	struct evbuffer *b = evbuffer_new();
	const char *l1[] = {"id", "m1", NULL};
	const double le[] = {0.5, 2};
	const uint64_t counts[] = {3, 0, 4};
	char *s;

	assert_non_null(b);
	assert_int_equal(prom_family(b, "rdmig_h_seconds", PROM_HISTOGRAM, "lat"), 0);
	assert_int_equal(prom_histogram(b, "rdmig_h_seconds", l1, le, counts, 2, 9.25), 0);
	assert_int_equal(prom_histogram(b, "rdmig_h_seconds", NULL, le, counts, 0, 0), 0);
	s = text_of(b);
	assert_string_equal(s, "# HELP rdmig_h_seconds lat\n"
			       "# TYPE rdmig_h_seconds histogram\n"
			       "rdmig_h_seconds_bucket{id=\"m1\",le=\"0.5\"} 3\n"
			       "rdmig_h_seconds_bucket{id=\"m1\",le=\"2\"} 3\n"
			       "rdmig_h_seconds_bucket{id=\"m1\",le=\"+Inf\"} 7\n"
			       "rdmig_h_seconds_sum{id=\"m1\"} 9.25\n"
			       "rdmig_h_seconds_count{id=\"m1\"} 7\n"
			       "rdmig_h_seconds_bucket{le=\"+Inf\"} 3\n"
			       "rdmig_h_seconds_sum 0\n"
			       "rdmig_h_seconds_count 3\n");
	free(s);
	evbuffer_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_histogram),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
