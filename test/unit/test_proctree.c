// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * proctree: a process and the child it forked are both stopped by
 * proctree_stop() (what a lazy dump's source does to the dumped tree),
 * then both killed by proctree_kill().
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proctree.h"

/* The state letter of pid from /proc/<pid>/stat, or 0 when it is gone. */
static char state_of(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Waits (bounded) until pid's state is want; returns the last state seen. */
static char wait_state(pid_t pid, char want)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	char st = 0;

	for (int i = 0; i < 1000; i++) {
		st = state_of(pid);
		if (st == want)
			break;
		nanosleep(&ts, NULL);
	}
	return st;
}

static void test_stop_then_kill_tree(void **state)
{
	int fds[2], pidfd, status;
	pid_t child, grandchild = 0;
	struct proctree_member *mem;
	uint64_t t1, t2;
	int n;

	(void)state;
	/* The grandchild is reparented to us when its parent dies: we reap it. */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	assert_int_equal(pipe(fds), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		pid_t g = fork();

		if (g == 0) {
			for (;;)
				pause();
		}
		if (write(fds[1], &g, sizeof(g)) != sizeof(g))
			_exit(1);
		for (;;)
			pause();
	}
	assert_int_equal(read(fds[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
	close(fds[0]);
	close(fds[1]);
	pidfd = proctree_pidfd_open(child);
	assert_true(pidfd >= 0);

	assert_int_equal(proctree_stop(pidfd, child), 2);
	assert_int_equal(wait_state(child, 'T'), 'T');
	assert_int_equal(wait_state(grandchild, 'T'), 'T');

	/* What a restarted agent checks before taking a stopped tree again. */
	n = proctree_members(child, &mem);
	assert_int_equal(n, 2);
	assert_int_equal(mem[0].pid, child);
	assert_int_equal(mem[1].pid, grandchild);
	for (int i = 0; i < n; i++) {
		/* No pid namespace of their own: the images' pid is the same. */
		assert_int_equal(mem[i].vpid, mem[i].pid);
		assert_int_equal(mem[i].state, 'T');
	}
	free(mem);
	assert_int_equal(proctree_start_time(child, &t1), 0);
	assert_int_equal(proctree_start_time(child, &t2), 0);
	assert_true(t1 > 0 && t1 == t2);
	assert_int_equal(proctree_start_time(getpid(), &t2), 0);
	assert_true(t2 <= t1);

	assert_int_equal(proctree_kill(pidfd, child), 2);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(waitpid(grandchild, &status, 0), grandchild);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Gone: nothing to stop any more, nor to take again. */
	assert_int_equal(proctree_stop(pidfd, child), -ESRCH);
	assert_true(proctree_members(child, &mem) < 0);
	assert_true(proctree_start_time(child, &t1) < 0);
	close(pidfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stop_then_kill_tree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
