// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The guard's takeover (design.md §10.2), against a real guard process:
 * pipes stand in for the userfaultfds (the guard never looks inside) and a
 * sleeping child for the restored process.  A take while the worker lives
 * is refused; after the worker's death a new worker gets every task still
 * guarded, with its image pid, parent, pidfd and layout changes (a fork
 * child's starting with its parent's), and the same open files; when the
 * new worker dies too and the supervisor has closed the channel, the guard
 * stops the process (SIGSTOP), never kills it, and exits once it is gone.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"
#include "log.h"
#include "proctree.h"

static void assert_layout(const struct uffd_layout *a, const struct uffd_layout *b)
{
	assert_int_equal(a->kind, b->kind);
	assert_int_equal(a->from, b->from);
	assert_int_equal(a->to, b->to);
	assert_int_equal(a->len, b->len);
}

static const struct guard_task *find_task(const struct guard_task *v, size_t nr, uint32_t id)
{
	for (size_t i = 0; i < nr; i++)
		if (v[i].id == id)
			return &v[i];
	return NULL;
}

/* Waits (bounded) until pid's state is T (stopped); true if it is. */
static bool wait_stopped(pid_t pid)
{
	char path[64], buf[256], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(path, "re");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'T')
			return true;
		usleep(10000);
	}
	return false;
}

static void test_takeover(void **state)
{
	struct uffd_layout remap = {
	    .kind = UFFD_EVENT_REMAP, .from = 0x10000, .to = 0x90000, .len = 0x2000};
	struct uffd_layout unmap = {.kind = UFFD_EVENT_UNMAP, .from = 0x90000, .to = 0x91000};
	struct guard *g = NULL, *g2 = NULL;
	struct guard_task *tasks = NULL;
	const struct guard_task *t1, *t2;
	int chan[2], pa[2], pb[2], pc[2], pidfd, status;
	size_t nr = 0;
	pid_t child, guard_pid;
	char c = 0;

	assert_int_equal(pipe(pa), 0);
	assert_int_equal(pipe(pb), 0);
	assert_int_equal(pipe(pc), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* A failed test leaves nothing behind: the guard then exits too. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	pidfd = proctree_pidfd_open(child);
	assert_true(pidfd >= 0);
	/* After the fork: the channel must end when the supervisor (this test) closes it. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan), 0);

	assert_int_equal(guard_start(chan[1], 0, &g), 0);
	close(chan[1]);
	assert_int_equal(guard_add(g,
				   &(struct guard_add_info){
				       .id = 1, .pid = 100, .real_pid = child, .pidfd_own = true},
				   pa[0], pidfd),
			 0);
	assert_int_equal(guard_event(g, 1, &remap), 0);
	/* A fork child: the parent's changes first, then its own. */
	assert_int_equal(
	    guard_add(
		g, &(struct guard_add_info){.id = 2, .parent_id = 1, .pid = 100, .real_pid = child},
		pb[0], -1),
	    0);
	assert_int_equal(guard_event(g, 2, &unmap), 0);
	assert_int_equal(guard_add(g, &(struct guard_add_info){.id = 3, .pid = 101}, pc[0], -1), 0);
	assert_int_equal(guard_forget(g, 3), 0);

	/* Two workers would serve the same processes. */
	assert_int_equal(guard_take(chan[0], 5000, &g2, &tasks, &nr), -EBUSY);

	/* The worker dies without a release: its socket closes. */
	guard_free(g);
	assert_int_equal(guard_take(chan[0], 5000, &g2, &tasks, &nr), 0);
	assert_int_equal(nr, 2);
	t1 = find_task(tasks, nr, 1);
	t2 = find_task(tasks, nr, 2);
	assert_non_null(t1);
	assert_non_null(t2);
	assert_int_equal(t1->pid, 100);
	assert_int_equal(t1->real_pid, child);
	assert_true(t1->pidfd >= 0 && t1->pidfd_own && !t1->layout_unknown);
	assert_int_equal(t1->nr_events, 1);
	assert_layout(&t1->events[0], &remap);
	assert_int_equal(t2->parent_id, 1);
	assert_int_equal(t2->pidfd, -1);
	assert_int_equal(t2->nr_events, 2);
	assert_layout(&t2->events[0], &remap);
	assert_layout(&t2->events[1], &unmap);
	/* The same open file as the first worker's. */
	assert_int_equal(write(pa[1], "x", 1), 1);
	assert_int_equal(read(t1->uffd, &c, 1), 1);
	assert_int_equal(c, 'x');

	/* The new worker re-adds what it adopted (same ids), settles task 2, then dies too. */
	assert_int_equal(guard_add(g2,
				   &(struct guard_add_info){
				       .id = 1, .pid = 100, .real_pid = child, .pidfd_own = true},
				   t1->uffd, t1->pidfd),
			 0);
	assert_int_equal(guard_forget(g2, 2), 0);
	guard_tasks_free(tasks, nr);
	close(chan[0]); /* the supervisor: no worker will come */
	guard_free(g2);
	assert_true(wait_stopped(child));
	/* Stopped, not killed: it goes on once continued. */
	kill(child, SIGCONT);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* The guard exits once its process is gone. */
	guard_pid = waitpid(-1, &status, 0);
	assert_true(guard_pid > 0);
	assert_true(WIFEXITED(status));
	for (int i = 0; i < 2; i++) {
		close(pa[i]);
		close(pb[i]);
		close(pc[i]);
	}
	close(pidfd);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_takeover),
	};

	log_init("test_guard", LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
