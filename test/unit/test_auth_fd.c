// SPDX-License-Identifier: GPL-2.0-or-later
/* The secret handed from a supervisor to its worker through a pipe. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

/* A proof under s, so two secrets can be compared without seeing their bytes. */
static void proof_of(const struct auth_secret *s, uint8_t out[AUTH_PROOF_LEN])
{
	struct auth_transcript t = {.migration_id = "m1"};

	assert_int_equal(auth_proof_compute(s, AUTH_ROLE_DEST, &t, out), 0);
}

/* Writes len bytes into a fresh pipe, closes the write end, reads them back. */
static int through_pipe(const void *buf, size_t len, struct auth_secret **out)
{
	int p[2], ret;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], buf, len), (ssize_t)len);
	close(p[1]);
	ret = auth_secret_read_fd(p[0], out);
	close(p[0]);
	return ret;
}

static void test_round_trip_exact_bytes(void **state)
{
	/* Binary, with a NUL inside and a newline at the end: all of it is the secret. */
	static const uint8_t raw[20] = {0x00, 0xff, 0x10, 'a', 'b', 0,	1,  2,	3,    4,
					5,    6,    7,	  8,   9,   10, 11, 12, '\r', '\n'};
	struct auth_secret *a = NULL, *b = NULL, *c = NULL;
	uint8_t pa[AUTH_PROOF_LEN], pb[AUTH_PROOF_LEN], pc[AUTH_PROOF_LEN];
	int p[2];

	assert_int_equal(auth_secret_from_buf(raw, sizeof(raw), &a), 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(auth_secret_write_fd(a, p[1]), 0);
	close(p[1]);
	assert_int_equal(auth_secret_read_fd(p[0], &b), 0);
	close(p[0]);
	proof_of(a, pa);
	proof_of(b, pb);
	assert_memory_equal(pa, pb, AUTH_PROOF_LEN);
	/* Unlike a secret file, the trailing "\r\n" is kept: dropping it changes the secret. */
	assert_int_equal(auth_secret_from_buf(raw, sizeof(raw) - 2, &c), 0);
	proof_of(c, pc);
	assert_memory_not_equal(pa, pc, AUTH_PROOF_LEN);
	auth_secret_free(a);
	auth_secret_free(b);
	auth_secret_free(c);
}

static void test_lengths(void **state)
{
	uint8_t buf[AUTH_SECRET_MAX + 1];
	struct auth_secret *s = NULL;

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(through_pipe(buf, AUTH_SECRET_MIN - 1, &s), -EINVAL);
	assert_int_equal(through_pipe(buf, 0, &s), -EINVAL);
	assert_int_equal(through_pipe(buf, AUTH_SECRET_MAX + 1, &s), -EINVAL);
	assert_int_equal(through_pipe(buf, AUTH_SECRET_MIN, &s), 0);
	auth_secret_free(s);
	s = NULL;
	assert_int_equal(through_pipe(buf, AUTH_SECRET_MAX, &s), 0);
	auth_secret_free(s);
}

static void test_bad_fds(void **state)
{
	struct auth_secret *s = NULL;
	int p[2];

	assert_int_equal(auth_secret_read_fd(-1, &s), -EBADF);
	assert_int_equal(auth_secret_from_buf("0123456789abcdef", 16, &s), 0);
	assert_int_equal(auth_secret_write_fd(s, -1), -EBADF);
	/* The reader is gone: EPIPE (SIGPIPE is ignored by the agents). */
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	assert_int_equal(auth_secret_write_fd(s, p[1]), -EPIPE);
	close(p[1]);
	auth_secret_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_exact_bytes),
	    cmocka_unit_test(test_lengths),
	    cmocka_unit_test(test_bad_fds),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
