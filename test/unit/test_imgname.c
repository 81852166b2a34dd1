// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * imgname: every file of the image sets given as arguments (the CRIU 3.17
 * and 4.2 fixtures) is on the allow-list; names a peer could use to
 * plant files are not.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctrl.h"
#include "imgname.h"

static char **dirs;
static int nr_dirs;

static void test_fixtures(void **state)
{
	struct dirent *de;
	int files = 0;

	assert_true(nr_dirs > 0);
	for (int i = 0; i < nr_dirs; i++) {
		DIR *d = opendir(dirs[i]);

		assert_non_null(d);
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			if (!imgname_allowed(de->d_name))
				fail_msg("%s/%s is refused", dirs[i], de->d_name);
			files++;
		}
		closedir(d);
	}
	/* Each set has inventory, pstree, mm, pagemap and pages at least. */
	assert_true(files >= 5 * nr_dirs);
}

static void test_criu_names(void **state)
{
	/* What a dump of a shell job with a socket, a timer and a tmpfs writes. */
	static const char *const good[] = {
	    "inventory.img",	 "pstree.img",	       "core-1.img",
	    "core-4194304.img",	 "mm-100.img",	       "pagemap-100.img",
	    "pages-1.img",	 "pages-0.img",	       "pagemap-shmem-7.img",
	    "pages-shmem-7.img", "fdinfo-2.img",       "ids-100.img",
	    "fs-100.img",	 "files.img",	       "seccomp.img",
	    "timens-0.img",	 "tty-info.img",       "tcp-stream-3f.img",
	    "ghost-file-1a.img", "stats-dump",	       "tmpfs-dev-63.tar.gz.img",
	    "irmap-cache",	 "posix-timers-9.img", "pidfd.img",
	    "binfmt-misc.img",	 "binfmt-misc-3.img",  "signal-p-12.img",
	    "sk-queues.img",	 "descriptors.json"};
	static const char *const bad[] = {"../x",
					  "x/y",
					  ".bashrc",
					  "root",
					  "authorized_keys",
					  "pages-1.img.evil",
					  "pages-.img",
					  "pages-01.img",
					  "pages--1.img",
					  "pages-1",
					  "pages-1.IMG",
					  "core-1a.img",
					  "ghost-file-1A.img",
					  "tcp-stream-.img",
					  "inventory",
					  "stats-dumpx",
					  "dump.log",
					  "restore.log",
					  "lazy-pages.socket",
					  "x.img",
					  "pages-123456789012345678901.img",
					  "tmpfs-1.img",
					  "a",
					  ""};
	struct ctrl_err e;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!imgname_allowed(good[i]))
			fail_msg("%s is refused", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (imgname_allowed(bad[i]))
			fail_msg("%s is allowed", bad[i]);
	/* The wire validator applies it, and says why. */
	assert_int_equal(ctrl_validate_file_name("authorized_keys", &e), -EINVAL);
	assert_non_null(strstr(e.text, "not one CRIU writes"));
	assert_int_equal(ctrl_validate_file_name("pages-1.img", &e), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixtures),
	    cmocka_unit_test(test_criu_names),
	};

	dirs = argv + 1;
	nr_dirs = argc - 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
