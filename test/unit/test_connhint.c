// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * connhint: the migration id a destination names in its RDMA connect
 * request survives the round trip with the transport's zero padding; what
 * is not a hint (another layout, a bad length, an embedded NUL, bytes
 * other than zeros after the id, no migration id, an id too long to name)
 * gives nothing, so the source falls back to a PD of the
 * connection's own.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "connhint.h"
#include "rdma.h"

static void test_round_trip(void **state)
{
	uint8_t buf[RDMA_CONN_DATA_MAX + 4] = {0};
	char id[CONNHINT_ID_MAX + 1];
	char longest[CONNHINT_ID_MAX + 1];
	size_t n;

	(void)state;
	n = connhint_make("mig-1", buf, RDMA_CONN_DATA_MAX);
	assert_int_equal(n, 11);
	/* rdma_cm hands the accepting side the whole private data area. */
	assert_int_equal(connhint_parse(buf, 56, id, sizeof(id)), 0);
	assert_string_equal(id, "mig-1");
	memset(longest, 'a', CONNHINT_ID_MAX);
	longest[CONNHINT_ID_MAX] = '\0';
	n = connhint_make(longest, buf, RDMA_CONN_DATA_MAX);
	assert_true(n > 0 && n <= RDMA_CONN_DATA_MAX);
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), 0);
	assert_string_equal(id, longest);
}

static void test_not_a_hint(void **state)
{
	uint8_t buf[64] = {0};
	char id[CONNHINT_ID_MAX + 1];
	char toolong[CONNHINT_ID_MAX + 2];
	size_t n;

	(void)state;
	memset(toolong, 'b', sizeof(toolong) - 1);
	toolong[sizeof(toolong) - 1] = '\0';
	assert_int_equal(connhint_make(toolong, buf, sizeof(buf)), 0);
	assert_int_equal(connhint_make("", buf, sizeof(buf)), 0);
	assert_int_equal(connhint_make("abc", buf, 8), 0);
	assert_int_equal(connhint_parse(NULL, 0, id, sizeof(id)), -EINVAL);
	assert_int_equal(connhint_parse(buf, sizeof(buf), id, sizeof(id)), -EINVAL);
	n = connhint_make("abc", buf, sizeof(buf));
	assert_int_equal(connhint_parse(buf, n - 1, id, sizeof(id)), -EINVAL);
	buf[4] = 2; /* another version */
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), -EINVAL);
	buf[4] = 1;
	buf[5] = CONNHINT_ID_MAX + 1;
	assert_int_equal(connhint_parse(buf, sizeof(buf), id, sizeof(id)), -EINVAL);
	buf[5] = 3;
	buf[7] = '\0';
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), -EINVAL);
	buf[7] = 'b';
	assert_int_equal(connhint_parse(buf, n, id, 3), -EINVAL);
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), 0);
	memcpy(buf, "RDMX", 4);
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), -EINVAL);
	memcpy(buf, "RDMG", 4);
	/* Zeros may follow the id, nothing else. */
	assert_int_equal(connhint_parse(buf, sizeof(buf), id, sizeof(id)), 0);
	buf[sizeof(buf) - 1] = 1;
	assert_int_equal(connhint_parse(buf, sizeof(buf), id, sizeof(id)), -EINVAL);
	buf[sizeof(buf) - 1] = 0;
	/* Only a migration id is named, both ways. */
	buf[6] = '.';
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), -EINVAL);
	buf[6] = 'a';
	buf[7] = '\n';
	assert_int_equal(connhint_parse(buf, n, id, sizeof(id)), -EINVAL);
	assert_int_equal(connhint_make("../x", buf, sizeof(buf)), 0);
	assert_int_equal(connhint_make("a b", buf, sizeof(buf)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_not_a_hint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
