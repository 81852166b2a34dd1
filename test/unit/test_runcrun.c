// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * runcrun: the runc command lines of a container migration (checkpoint,
 * the rollback's restore) as runc 1.1.5 takes them, the criu options runc
 * cannot pass refused by name, and runc's state.json read for the init's
 * pid and the bundle.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "source-agent/runcrun.h"

static struct src_criu_opts no_opts(void)
{
	struct src_criu_opts o = {.log_level = -1};

	return o;
}

/* av's words joined by single spaces into buf. */
static const char *joined(const struct src_criu_argv *av, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < av->n; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "", av->v[i]);
	assert_null(av->v[av->n]);
	return buf;
}

static void test_checkpoint(void **state)
{
	struct src_criu_opts o = no_opts();
	struct src_criu_argv av;
	const char *why = "x";
	char buf[512];

	(void)state;
	assert_int_equal(src_runc_argv_build(&av, "runc", SRC_RUNC_CHECKPOINT, NULL, "web.1",
					     "/var/lib/rdmig/images/m1", NULL, &o, &why),
			 0);
	assert_null(why);
	assert_string_equal(joined(&av, buf, sizeof(buf)),
			    "runc checkpoint --image-path /var/lib/rdmig/images/m1 --work-path "
			    "/var/lib/rdmig/images/m1 web.1");

	o.tcp_established = o.shell_job = o.ext_unix_sk = o.file_locks = o.leave_running = true;
	strcpy(o.manage_cgroups, "soft");
	assert_int_equal(src_runc_argv_build(&av, "/usr/sbin/runc", SRC_RUNC_CHECKPOINT,
					     "/run/runc-x", "c", "/i", "/ignored", &o, &why),
			 0);
	assert_string_equal(joined(&av, buf, sizeof(buf)),
			    "/usr/sbin/runc --root /run/runc-x checkpoint --image-path /i "
			    "--work-path /i --shell-job --tcp-established --ext-unix-sk "
			    "--file-locks --manage-cgroups-mode soft --leave-running c");
}

static void test_restore(void **state)
{
	struct src_criu_opts o = no_opts();
	struct src_criu_argv av;
	const char *why;
	char buf[512];

	(void)state;
	o.tcp_established = o.leave_running = true;
	strcpy(o.manage_cgroups, "strict");
	assert_int_equal(src_runc_argv_build(&av, "runc", SRC_RUNC_RESTORE, NULL, "c", "/i",
					     "/srv/bundles/c", &o, &why),
			 0);
	/* leave_running is the checkpoint's alone. */
	assert_string_equal(
	    joined(&av, buf, sizeof(buf)),
	    "runc restore --image-path /i --work-path /i --bundle /srv/bundles/c -d "
	    "--tcp-established --manage-cgroups-mode strict c");
	assert_int_equal(
	    src_runc_argv_build(&av, "runc", SRC_RUNC_RESTORE, NULL, "c", "/i", NULL, &o, &why),
	    -EINVAL);
	assert_non_null(strstr(why, "bundle"));
}

static void test_refused_opts(void **state)
{
	struct src_criu_opts o;
	struct src_criu_argv av;
	const char *why;

	(void)state;
	o = no_opts();
	o.link_remap = true;
	assert_int_equal(
	    src_runc_argv_build(&av, "runc", SRC_RUNC_CHECKPOINT, NULL, "c", "/i", NULL, &o, &why),
	    -EINVAL);
	assert_non_null(strstr(why, "criu_opts.link_remap"));
	o = no_opts();
	strcpy(o.manage_cgroups, "ignore");
	assert_int_equal(
	    src_runc_argv_build(&av, "runc", SRC_RUNC_CHECKPOINT, NULL, "c", "/i", NULL, &o, &why),
	    -EINVAL);
	assert_non_null(strstr(why, "criu_opts.manage_cgroups \"ignore\""));
	o = no_opts();
	o.log_level = 4;
	assert_int_equal(
	    src_runc_argv_build(&av, "runc", SRC_RUNC_RESTORE, NULL, "c", "/i", "/b", &o, &why),
	    -EINVAL);
	assert_non_null(strstr(why, "criu_opts.log_level"));
	assert_int_equal(av.n, 0);
}

#define STATE_OK                                                                                   \
	"{\"id\":\"c\",\"init_process_pid\":4242,\"config\":{\"rootfs\":\"/b/rootfs\","            \
	"\"labels\":[\"other=1\",\"bundle=/srv/bundles/c\"]}}"

static void test_state(void **state)
{
	static const char *const bad[] = {
	    "",
	    "[]",
	    "{\"init_process_pid\":0,\"config\":{\"labels\":[\"bundle=/b\"]}}",
	    "{\"init_process_pid\":99999999,\"config\":{\"labels\":[\"bundle=/b\"]}}",
	    "{\"init_process_pid\":\"7\",\"config\":{\"labels\":[\"bundle=/b\"]}}",
	    "{\"init_process_pid\":7,\"config\":{\"labels\":[\"other=/b\"]}}",
	    "{\"init_process_pid\":7,\"config\":{\"labels\":[\"bundle=rel\"]}}",
	    "{\"init_process_pid\":7}",
	};
	char bundle[64];
	pid_t pid;

	(void)state;
	assert_int_equal(
	    src_runc_state_parse(STATE_OK, strlen(STATE_OK), &pid, bundle, sizeof(bundle)), 0);
	assert_int_equal(pid, 4242);
	assert_string_equal(bundle, "/srv/bundles/c");
	/* Not NUL-terminated: only len bytes are read. */
	assert_int_equal(src_runc_state_parse(STATE_OK "garbage", strlen(STATE_OK), &pid, bundle,
					      sizeof(bundle)),
			 0);
	assert_int_equal(src_runc_state_parse(STATE_OK, strlen(STATE_OK), &pid, bundle, 8),
			 -ENAMETOOLONG);
	assert_int_equal(pid, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (src_runc_state_parse(bad[i], strlen(bad[i]), &pid, bundle, sizeof(bundle)) !=
		    -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(pid, 0);
	}
}

static void test_roots(void **state)
{
	struct src_runc_roots r = {.dirs = {"/run/runc", "/srv/runc"}, .n = 2};
	const char *rel = "x";
	unsigned int i = 9;

	(void)state;
	assert_int_equal(src_runc_root_valid("/run/runc"), 0);
	assert_int_equal(src_runc_root_valid("/"), 0);
	assert_int_equal(src_runc_root_valid("run/runc"), -EINVAL);
	assert_int_equal(src_runc_root_valid("/run/runc/"), -EINVAL);
	assert_int_equal(src_runc_root_valid("/run//runc"), -EINVAL);
	assert_int_equal(src_runc_root_valid("/run/../etc"), -EINVAL);

	assert_int_equal(src_runc_root_pick(&r, NULL, &i, &rel), 0);
	assert_int_equal(i, 0);
	assert_string_equal(rel, "");
	assert_int_equal(src_runc_root_pick(&r, "/srv/runc", &i, &rel), 0);
	assert_int_equal(i, 1);
	assert_string_equal(rel, "");
	assert_int_equal(src_runc_root_pick(&r, "/srv/runc/k8s.io", &i, &rel), 0);
	assert_string_equal(rel, "k8s.io");
	/* Elsewhere, a prefix that is not a directory of it, or a way out: refused. */
	assert_int_equal(src_runc_root_pick(&r, "/etc", &i, &rel), -EACCES);
	assert_int_equal(src_runc_root_pick(&r, "/run/runc-x", &i, &rel), -EACCES);
	assert_int_equal(src_runc_root_pick(&r, "/run/runc/../../etc", &i, &rel), -EACCES);
	assert_int_equal(src_runc_root_pick(&r, "/run/runc/./a", &i, &rel), -EACCES);
	assert_int_equal(src_runc_root_pick(&r, "/run/runc//a", &i, &rel), -EACCES);
}

/* dir/name holding text, mode 0644. */
static void put(const char *dir, const char *name, const char *text)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(p, 0644);
}

static void test_state_read(void **state)
{
	char top[] = "/tmp/rdmig-runcroot-XXXXXX", p[512], q[512], bundle[256];
	const char *st = "{\"init_process_pid\":42,\"config\":{\"labels\":[\"bundle=/b\"]}}";
	const char *why;
	pid_t pid = 0;

	(void)state;
	assert_non_null(mkdtemp(top));
	chmod(top, 0755);
	snprintf(p, sizeof(p), "%s/root", top);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(q, sizeof(q), "%s/root/c1", top);
	assert_int_equal(mkdir(q, 0711), 0);
	put(q, "state.json", st);
	assert_int_equal(src_runc_state_read(p, "", "c1", &pid, bundle, sizeof(bundle), &why), 0);
	assert_int_equal(pid, 42);
	assert_string_equal(bundle, "/b");
	assert_int_equal(src_runc_state_read(p, "", "c2", &pid, bundle, sizeof(bundle), &why),
			 -ENOENT);
	assert_int_equal(src_runc_state_read(p, "nosub", "c1", &pid, bundle, sizeof(bundle), &why),
			 -ENOENT);

	/* A sub-root below the allowed one; a symbolic link out of it. */
	snprintf(q, sizeof(q), "%s/root/k8s", top);
	assert_int_equal(mkdir(q, 0755), 0);
	snprintf(q, sizeof(q), "%s/root/k8s/c3", top);
	assert_int_equal(mkdir(q, 0755), 0);
	put(q, "state.json", st);
	assert_int_equal(src_runc_state_read(p, "k8s", "c3", &pid, bundle, sizeof(bundle), &why),
			 0);
	snprintf(q, sizeof(q), "%s/root/out", top);
	assert_int_equal(symlink(top, q), 0);
	assert_int_equal(
	    src_runc_state_read(p, "out/root", "c1", &pid, bundle, sizeof(bundle), &why), -ELOOP);
	assert_non_null(why);

	/* Not runc's own file: a FIFO (refused at once, never waited on), group-writable. */
	snprintf(q, sizeof(q), "%s/root/f", top);
	assert_int_equal(mkdir(q, 0755), 0);
	snprintf(q, sizeof(q), "%s/root/f/state.json", top);
	assert_int_equal(mkfifo(q, 0600), 0);
	assert_int_equal(src_runc_state_read(p, "", "f", &pid, bundle, sizeof(bundle), &why),
			 -EBADF);
	assert_string_equal(why, "state.json is not a regular file");
	snprintf(q, sizeof(q), "%s/root/c1/state.json", top);
	chmod(q, 0664);
	assert_int_equal(src_runc_state_read(p, "", "c1", &pid, bundle, sizeof(bundle), &why),
			 -EACCES);
	/* A container directory others may write to: refused too. */
	chmod(q, 0644);
	snprintf(q, sizeof(q), "%s/root/c1", top);
	chmod(q, 0777);
	assert_int_equal(src_runc_state_read(p, "", "c1", &pid, bundle, sizeof(bundle), &why),
			 -EACCES);

	snprintf(q, sizeof(q), "rm -rf '%s'", top);
	assert_int_equal(system(q), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_checkpoint),	 cmocka_unit_test(test_restore),
	    cmocka_unit_test(test_refused_opts), cmocka_unit_test(test_state),
	    cmocka_unit_test(test_roots),	 cmocka_unit_test(test_state_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
