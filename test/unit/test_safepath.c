// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * safepath: a symlink planted at each component is refused, by openat2 and
 * by the per-component fallback alike; escapes and untrusted directories
 * are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "safepath.h"

struct fx {
	char top[64];  /* mkdtemp: outside holds the link targets */
	char root[96]; /* top/root: the trusted root */
	int rootfd;
};

typedef int (*open_fn)(int dirfd, const char *rel, int flags, mode_t mode);

static void at(const struct fx *f, char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", f->root, rel);
}

static void mk(const struct fx *f, const char *rel, bool dir)
{
	char p[256];
	int fd;

	at(f, p, sizeof(p), rel);
	if (dir) {
		assert_int_equal(mkdir(p, 0755), 0);
		return;
	}
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
}

static void ln(const struct fx *f, const char *target, const char *rel)
{
	char p[256];

	at(f, p, sizeof(p), rel);
	assert_int_equal(symlink(target, p), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char p[256];

	snprintf(f->top, sizeof(f->top), "/tmp/rdmig-safepath-XXXXXX");
	assert_non_null(mkdtemp(f->top));
	snprintf(f->root, sizeof(f->root), "%s/root", f->top);
	assert_int_equal(mkdir(f->root, 0700), 0);
	snprintf(p, sizeof(p), "%s/outside", f->top);
	assert_int_equal(mkdir(p, 0700), 0);
	mk(f, "a", true);
	mk(f, "a/b", true);
	mk(f, "a/b/f", false);
	/* A link at each component: first, middle, last, and one leading out. */
	ln(f, "a", "la");
	ln(f, "b", "a/lb");
	ln(f, "f", "a/b/lf");
	ln(f, p, "esc");
	snprintf(p, sizeof(p), "%s/outside/planted", f->top);
	ln(f, p, "a/b/dangling");
	f->rootfd = safepath_open_dir(f->root);
	assert_true(f->rootfd >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	close(f->rootfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->top);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void refuses_links(const struct fx *f, open_fn open_at)
{
	char p[256];
	int fd;

	fd = open_at(f->rootfd, "a/b/f", O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(open_at(f->rootfd, "la/b/f", O_RDONLY, 0), -ELOOP);
	assert_int_equal(open_at(f->rootfd, "a/lb/f", O_RDONLY, 0), -ELOOP);
	assert_int_equal(open_at(f->rootfd, "a/b/lf", O_RDONLY, 0), -ELOOP);
	assert_int_equal(open_at(f->rootfd, "esc/x", O_RDONLY, 0), -ELOOP);
	assert_int_equal(open_at(f->rootfd, "la", O_RDONLY | O_DIRECTORY, 0), -ELOOP);
	/* Creating through a dangling link fails and writes nothing outside. */
	fd = open_at(f->rootfd, "a/b/dangling", O_WRONLY | O_CREAT, 0600);
	assert_true(fd == -ELOOP || fd == -EEXIST);
	snprintf(p, sizeof(p), "%s/outside/planted", f->top);
	assert_int_equal(access(p, F_OK), -1);
	/* Escapes by name. */
	assert_int_equal(open_at(f->rootfd, "../root/a/b/f", O_RDONLY, 0), -EXDEV);
	assert_int_equal(open_at(f->rootfd, "a/../a/b/f", O_RDONLY, 0), -EXDEV);
	assert_int_equal(open_at(f->rootfd, "/etc/passwd", O_RDONLY, 0), -EXDEV);
	assert_int_equal(open_at(f->rootfd, "a//b/f", O_RDONLY, 0), -EXDEV);
	assert_int_equal(open_at(f->rootfd, "", O_RDONLY, 0), -EXDEV);
	/* O_EXCL creation beneath, once. */
	fd = open_at(f->rootfd, "a/b/new", O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(open_at(f->rootfd, "a/b/new", O_WRONLY | O_CREAT | O_EXCL, 0600), -EEXIST);
	at(f, p, sizeof(p), "a/b/new");
	assert_int_equal(unlink(p), 0);
}

static void test_openat2(void **state)
{
	refuses_links(*state, safepath_openat);
}

static void test_walk(void **state)
{
	refuses_links(*state, safepath_openat_walk);
}

static void test_mkdir(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char p[256];
	int fd;

	fd = safepath_mkdir(f->rootfd, "a/m1", 0700);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	close(fd);
	assert_int_equal(safepath_mkdir(f->rootfd, "a/m1", 0700), -EEXIST);
	/* An existing link, even to a directory, is not a directory the agent made. */
	assert_int_equal(safepath_mkdir(f->rootfd, "la", 0700), -EEXIST);
	assert_int_equal(safepath_mkdir(f->rootfd, "la/m2", 0700), -ELOOP);
	assert_int_equal(safepath_mkdir(f->rootfd, "esc/m3", 0700), -ELOOP);
	snprintf(p, sizeof(p), "%s/outside/m3", f->top);
	assert_int_equal(access(p, F_OK), -1);
	assert_int_equal(safepath_mkdir(f->rootfd, "..", 0700), -EXDEV);
	assert_int_equal(safepath_mkdir(f->rootfd, "nope/m4", 0700), -ENOENT);
	at(f, p, sizeof(p), "a/m1");
	assert_int_equal(rmdir(p), 0);
}

static void test_trusted(void **state)
{
	struct fx *f = *state;
	char p[256];
	int fd;

	fd = safepath_open_trusted_dir(f->rootfd, "a/b");
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(safepath_open_trusted_dir(f->rootfd, "la/b"), -ELOOP);
	assert_int_equal(safepath_open_trusted_dir(f->rootfd, "a/lb"), -ELOOP);
	assert_int_equal(safepath_open_trusted_dir(f->rootfd, "a/b/f"), -ENOTDIR);
	at(f, p, sizeof(p), "a");
	assert_int_equal(chmod(p, 0775), 0);
	assert_int_equal(safepath_open_trusted_dir(f->rootfd, "a/b"), -EACCES);
	assert_int_equal(chmod(p, 0755), 0);
	at(f, p, sizeof(p), "a/b");
	assert_int_equal(chmod(p, 0757), 0);
	assert_int_equal(safepath_open_trusted_dir(f->rootfd, "a/b"), -EACCES);
	assert_int_equal(chmod(p, 0755), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(p, 65534, 65534), 0);
		assert_int_equal(safepath_open_trusted_dir(f->rootfd, "a/b"), -EPERM);
		assert_int_equal(chown(p, 0, 0), 0);
	}
}

static void test_below(void **state)
{
	const char *rel = NULL;

	assert_true(safepath_below("/r/s", "/r/s/x/y", &rel));
	assert_string_equal(rel, "x/y");
	assert_true(safepath_below("/r/s", "/r/s", &rel));
	assert_string_equal(rel, "");
	assert_false(safepath_below("/r/s", "/r/sx", &rel));
	assert_false(safepath_below("/r/s", "/r", &rel));
	assert_false(safepath_below("/r/s", "r/s/x", &rel));
	assert_true(safepath_below("/", "/etc", &rel));
	assert_string_equal(rel, "etc");
	assert_int_equal(safepath_check_rel("x/y"), 0);
	assert_int_equal(safepath_check_rel("x/./y"), -EXDEV);
	assert_int_equal(safepath_check_rel("x/"), -EXDEV);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_openat2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mkdir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trusted, setup, teardown),
	    cmocka_unit_test(test_below),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
