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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_size),	   cmocka_unit_test(test_parse_uint),
	    cmocka_unit_test(test_parse_hostport), cmocka_unit_test(test_fmt_bytes),
	    cmocka_unit_test(test_proc_harden),	   cmocka_unit_test(test_migration_id_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
