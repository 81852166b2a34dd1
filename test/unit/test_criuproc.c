// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * criuproc with /bin/sh standing in for criu: the verdict of an exit and
 * of a signal, the log's last error line (as both agents want it), the
 * working directory and stdout, a program that cannot be run, the
 * bounded wait after the loop, and killing at teardown.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "criuproc.h"

/* argv strings must be writable (char *const []): no literals. */
static char arg_sh[] = "sh", arg_c[] = "-c", arg_sleep[] = "exec sleep 30", arg_exit5[] = "exit 5";
static char arg_nx[] = "/nonexistent/criu", arg_dump[] = "dump";

struct ctx {
	struct event_base *base;
	struct criuproc *p;
	int calls;
	struct criuproc_exit e;
	bool free_in_cb;
	char dir[64];
};

static void exit_cb(void *arg, const struct criuproc_exit *e)
{
	struct ctx *x = arg;

	x->calls++;
	x->e = *e;
	if (x->free_in_cb) {
		criuproc_free(x->p);
		x->p = NULL;
	}
	if (x->base)
		event_base_loopbreak(x->base);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("the child was not reported within 10 s");
}

static void ctx_init(struct ctx *x)
{
	memset(x, 0, sizeof(*x));
	x->base = event_base_new();
	assert_non_null(x->base);
	snprintf(x->dir, sizeof(x->dir), "/tmp/rdmig-criuproc.XXXXXX");
	assert_non_null(mkdtemp(x->dir));
}

static void ctx_free(struct ctx *x)
{
	char cmd[128];

	criuproc_free(x->p);
	event_base_free(x->base);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", x->dir);
	assert_int_equal(system(cmd), 0);
}

/* Runs `sh -c script` in x->dir (log: x->dir/log) and the loop until it is reported. */
static void run_sh(struct ctx *x, const char *script, unsigned int flags)
{
	char cmd[512], log[128];
	char *argv[] = {arg_sh, arg_c, cmd, NULL};
	struct criuproc_spec s = {
	    .what = "test", .argv = argv, .cwd = x->dir, .log_path = log, .flags = flags};
	struct timeval ten_s = {10, 0};
	struct event *dog = evtimer_new(x->base, watchdog_cb, NULL);

	snprintf(cmd, sizeof(cmd), "%s", script);
	snprintf(log, sizeof(log), "%s/log", x->dir);
	assert_int_equal(criuproc_spawn(x->base, &s, exit_cb, x, &x->p), 0);
	assert_true(criuproc_running(x->p));
	assert_true(criuproc_pid(x->p) > 0);
	event_add(dog, &ten_s);
	event_base_dispatch(x->base);
	event_free(dog);
	assert_int_equal(x->calls, 1);
	assert_false(criuproc_running(x->p));
}

static void test_exit_ok(void **state)
{
	struct ctx x;
	char path[128];
	struct stat st;

	ctx_init(&x);
	/* In its working directory, stdout on /dev/null with the flag. */
	run_sh(&x, "echo out; touch here", CRIUPROC_STDOUT_NULL | CRIUPROC_CLOSE_FDS);
	assert_true(x.e.ok);
	assert_int_equal(x.e.err, 0);
	assert_int_equal(x.e.status, 0);
	assert_int_equal(x.e.signal, 0);
	assert_string_equal(x.e.log_tail, ""); /* only read on failure */
	snprintf(path, sizeof(path), "%s/here", x.dir);
	assert_int_equal(stat(path, &st), 0);
	ctx_free(&x);
}

static void test_exit_status_and_log(void **state)
{
	struct ctx x;

	ctx_init(&x);
	x.free_in_cb = true;
	run_sh(&x,
	       "printf '(00.001) Error (a.c:1): first\\n(00.002) Error (b.c:2): last one\\n"
	       "(00.003) Unlock network\\n' >log; exit 3",
	       0);
	assert_false(x.e.ok);
	assert_int_equal(x.e.status, 3);
	assert_int_equal(x.e.signal, 0);
	assert_true(WIFEXITED(x.e.wstatus));
	assert_int_equal(x.e.log_err, 0);
	/* rdmig-dest's form: the whole line. */
	assert_string_equal(x.e.log_tail, "(00.002) Error (b.c:2): last one");
	assert_null(x.p); /* freed from inside the callback */
	ctx_free(&x);

	ctx_init(&x);
	run_sh(&x, "printf '(00.001) Error (a.c:1): only\\n(00.003) Unlock\\n' >log; exit 1",
	       CRIUPROC_TAIL_BARE | CRIUPROC_TAIL_ANY);
	/* rdmig-source's form: no time stamp. */
	assert_string_equal(x.e.log_tail, "Error (a.c:1): only");
	ctx_free(&x);

	/* criu's closing line says nothing of why: the error before it does. */
	ctx_init(&x);
	run_sh(&x,
	       "printf '(00.001) Error (mem.c:9): cannot dump vma\\n"
	       "(00.002) Error (cr-dump.c:2053): Dumping FAILED.\\n' >log; exit 1",
	       CRIUPROC_TAIL_BARE | CRIUPROC_TAIL_ANY);
	assert_string_equal(x.e.log_tail, "Error (mem.c:9): cannot dump vma");
	ctx_free(&x);

	ctx_init(&x);
	run_sh(&x, "printf '(00.002) Error (cr-dump.c:2053): Dumping FAILED.\\n' >log; exit 1",
	       CRIUPROC_TAIL_BARE | CRIUPROC_TAIL_ANY);
	assert_string_equal(x.e.log_tail, "Error (cr-dump.c:2053): Dumping FAILED.");
	ctx_free(&x);

	ctx_init(&x);
	run_sh(&x, "printf '(00.001) Dumping\\n(00.002) Dumping FAILED\\n\\n' >log; exit 1",
	       CRIUPROC_TAIL_BARE | CRIUPROC_TAIL_ANY);
	assert_string_equal(x.e.log_tail, "Dumping FAILED");
	ctx_free(&x);

	ctx_init(&x);
	run_sh(&x, "exit 1", 0);
	assert_int_equal(x.e.log_err, -ENOENT);
	assert_string_equal(x.e.log_tail, "");
	ctx_free(&x);
}

static void test_killed(void **state)
{
	struct ctx x;

	ctx_init(&x);
	run_sh(&x, "kill -TERM $$", 0);
	assert_false(x.e.ok);
	assert_int_equal(x.e.status, -1);
	assert_int_equal(x.e.signal, SIGTERM);
	ctx_free(&x);
}

static void test_cannot_run(void **state)
{
	char *argv[] = {arg_nx, arg_dump, NULL};
	struct criuproc_spec s = {.what = "test", .argv = argv};
	struct criuproc *p = NULL;
	struct ctx x;

	ctx_init(&x);
	assert_int_equal(criuproc_spawn(x.base, &s, exit_cb, &x, &p), -ENOENT);
	assert_null(p);
	assert_int_equal(x.calls, 0);
	ctx_free(&x);
}

static void test_wait_after_loop(void **state)
{
	char *argv[] = {arg_sh, arg_c, arg_sleep, NULL};
	char *quick[] = {arg_sh, arg_c, arg_exit5, NULL};
	struct criuproc_spec s = {.what = "test", .argv = argv};
	struct ctx x;

	ctx_init(&x);
	assert_int_equal(criuproc_spawn(x.base, &s, exit_cb, &x, &x.p), 0);
	/* No loop: the bounded wait times out and the child still runs. */
	assert_int_equal(criuproc_wait(x.p, 50), -ETIMEDOUT);
	assert_true(criuproc_running(x.p));
	assert_int_equal(x.calls, 0);
	assert_int_equal(criuproc_signal(x.p, SIGKILL), 0);
	assert_int_equal(criuproc_wait(x.p, -1), 0);
	assert_int_equal(x.calls, 1);
	assert_int_equal(x.e.signal, SIGKILL);
	assert_int_equal(criuproc_signal(x.p, SIGKILL), -ESRCH);
	assert_int_equal(criuproc_wait(x.p, 0), 0); /* reaped already */
	criuproc_free(x.p);

	x.p = NULL;
	x.calls = 0;
	s.argv = quick;
	assert_int_equal(criuproc_spawn(x.base, &s, exit_cb, &x, &x.p), 0);
	assert_int_equal(criuproc_wait(x.p, 10000), 0);
	assert_int_equal(x.calls, 1);
	assert_int_equal(x.e.status, 5);
	ctx_free(&x);
}

static void test_kill_at_teardown(void **state)
{
	char *argv[] = {arg_sh, arg_c, arg_sleep, NULL};
	struct criuproc_spec s = {.what = "test", .argv = argv};
	struct ctx x;
	pid_t pid;

	ctx_init(&x);
	assert_int_equal(criuproc_spawn(x.base, &s, exit_cb, &x, &x.p), 0);
	pid = criuproc_pid(x.p);
	criuproc_kill(x.p);
	assert_false(criuproc_running(x.p));
	assert_int_equal(x.calls, 0); /* no callback at teardown */
	/* Reaped: it is no child of ours any more. */
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	ctx_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exit_ok),	    cmocka_unit_test(test_exit_status_and_log),
	    cmocka_unit_test(test_killed),	    cmocka_unit_test(test_cannot_run),
	    cmocka_unit_test(test_wait_after_loop), cmocka_unit_test(test_kill_at_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
