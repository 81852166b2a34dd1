// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tickclock.h"
#include "util.h"

static void test_parse_size(void **state)
{
	uint64_t v;

	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("4K", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("64M", &v), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("-1", &v), -EINVAL);
	assert_int_equal(parse_size("12Q", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_size("17179869184G", &v), -ERANGE);
}

static void test_parse_uint(void **state)
{
	uint64_t v;

	assert_int_equal(parse_uint("10", 1, 20, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(parse_uint("0", 1, 20, &v), -ERANGE);
	assert_int_equal(parse_uint("21", 1, 20, &v), -ERANGE);
	assert_int_equal(parse_uint("1x", 1, 20, &v), -EINVAL);
	assert_int_equal(parse_uint("+1", 1, 20, &v), -EINVAL);
}

static void test_parse_hostport(void **state)
{
	char host[64], port[16];

	assert_int_equal(
	    parse_hostport("192.0.2.1:7471", "1", host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(host, "192.0.2.1");
	assert_string_equal(port, "7471");
	assert_int_equal(
	    parse_hostport("192.0.2.1", "7471", host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(port, "7471");
	assert_int_equal(
	    parse_hostport("[2001:db8::1]:9", NULL, host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(host, "2001:db8::1");
	assert_string_equal(port, "9");
	assert_int_equal(
	    parse_hostport("[2001:db8::1", NULL, host, sizeof(host), port, sizeof(port)), -EINVAL);
	assert_int_equal(parse_hostport(":80", NULL, host, sizeof(host), port, sizeof(port)),
			 -EINVAL);
	assert_int_equal(parse_hostport("h:", NULL, host, sizeof(host), port, sizeof(port)),
			 -EINVAL);
}

static void test_fmt_bytes(void **state)
{
	char buf[32];

	assert_string_equal(fmt_bytes(512, buf, sizeof(buf)), "512 B");
	assert_string_equal(fmt_bytes(64ull << 20, buf, sizeof(buf)), "64.0 MiB");
}

/* In a child: the test runner itself stays as it was. */
static void test_proc_harden(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fds[2];

		if (proc_harden(true) < 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 ||
		    pipe(fds) < 0)
			_exit(1);
		close(fds[0]);
		/* Writing to a pipe without reader: EPIPE, and the process lives. */
		_exit(write(fds[1], "x", 1) < 0 ? 0 : 2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,63}, and nothing else. */
static void test_migration_id_valid(void **state)
{
	static const char *const good[] = {"a", "Z", "7", "m-0123abcd", "job_7.a-b", "a..b", "x."};
	static const char *const bad[] = {"",	 ".",	"..",  ".hidden", "-x",	 "_x",
					  "a/b", "a b", "a+b", "é",	  "a\n", NULL};
	char id[MIGRATION_ID_MAX + 2];

	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		assert_true(migration_id_valid(good[i]));
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_false(migration_id_valid(bad[i]));
	memset(id, 'i', sizeof(id));
	id[MIGRATION_ID_MAX] = '\0';
	assert_true(migration_id_valid(id));
	id[MIGRATION_ID_MAX] = 'i';
	id[MIGRATION_ID_MAX + 1] = '\0';
	assert_false(migration_id_valid(id));
}

static void test_tickclock(void **state)
{
	const uint64_t ms = 1000000, s = 1000 * ms;
	struct tickclock c;

	/* A 100 ms tick: on time, a little late, then 1 s beyond its period is still no gap. */
	tickclock_init(&c, 100 * ms, 10 * s);
	assert_int_equal(tickclock_gap(&c, 10 * s + 100 * ms, "t"), 0);
	assert_int_equal(tickclock_gap(&c, 10 * s + 450 * ms, "t"), 0);
	assert_int_equal(tickclock_gap(&c, 11 * s + 550 * ms, "t"), 0);
	/* Stopped 30 s: the gap is what lay beyond the period. */
	assert_int_equal(tickclock_gap(&c, 41 * s + 550 * ms, "t"), 30 * s - 100 * ms);
	assert_int_equal(tickclock_gap(&c, 41 * s + 650 * ms, "t"), 0);
	/* A clock that went back is no gap, and the next tick counts from it. */
	assert_int_equal(tickclock_gap(&c, 40 * s, "t"), 0);
	assert_int_equal(tickclock_gap(&c, 40 * s + 100 * ms, "t"), 0);

	/* A 1 s tick forgives up to one more period, not 2 s. */
	tickclock_init(&c, s, 0);
	assert_int_equal(tickclock_gap(&c, 2 * s, "t"), 0);
	assert_int_equal(tickclock_gap(&c, 4 * s + 1, "t"), s + 1);

	/* Shifted reference times never pass now and keep their order. */
	assert_int_equal(tickclock_shift(5 * s, 30 * s, 40 * s), 35 * s);
	assert_int_equal(tickclock_shift(12 * s, 30 * s, 40 * s), 40 * s);
	assert_int_equal(tickclock_shift(40 * s, 30 * s, 40 * s), 40 * s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_size),	   cmocka_unit_test(test_parse_uint),
	    cmocka_unit_test(test_parse_hostport), cmocka_unit_test(test_fmt_bytes),
	    cmocka_unit_test(test_proc_harden),	   cmocka_unit_test(test_migration_id_valid),
	    cmocka_unit_test(test_tickclock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
