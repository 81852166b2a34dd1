// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conffile.h"

static int parse(const char *in, char **key, char **value, char *buf, size_t len)
{
	const char *why = NULL;
	int ret;

	snprintf(buf, len, "%s", in);
	ret = conffile_parse_line(buf, key, value, &why);
	if (ret < 0)
		assert_non_null(why);
	return ret;
}

static void test_parse_line(void **state)
{
	char buf[256], *k, *v;

	assert_int_equal(parse("", &k, &v, buf, sizeof(buf)), 0);
	assert_int_equal(parse("   \t", &k, &v, buf, sizeof(buf)), 0);
	assert_int_equal(parse("  # listen = x", &k, &v, buf, sizeof(buf)), 0);
	assert_int_equal(parse("listen = 10.0.0.1:7471", &k, &v, buf, sizeof(buf)), 1);
	assert_string_equal(k, "listen");
	assert_string_equal(v, "10.0.0.1:7471");
	assert_int_equal(parse("\tmax-migrations=4   # four\r", &k, &v, buf, sizeof(buf)), 1);
	assert_string_equal(k, "max-migrations");
	assert_string_equal(v, "4");
	/* A '#' inside a word is the value's. */
	assert_int_equal(parse("criu = /opt/c#1/criu", &k, &v, buf, sizeof(buf)), 1);
	assert_string_equal(v, "/opt/c#1/criu");
	assert_int_equal(
	    parse("criu-opt = \"  a # \\\"b\\\" \\\\ \"  # c", &k, &v, buf, sizeof(buf)), 1);
	assert_string_equal(v, "  a # \"b\" \\ ");
	assert_int_equal(parse("api-group =", &k, &v, buf, sizeof(buf)), 1);
	assert_string_equal(v, "");
	assert_int_equal(parse("listen 10.0.0.1", &k, &v, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(parse("= 1", &k, &v, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(parse("Listen = 1", &k, &v, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(parse("--listen = 1", &k, &v, buf, sizeof(buf)), 1);
	assert_int_equal(parse("a = \"open", &k, &v, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(parse("a = \"x\" y", &k, &v, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(parse("a = \"\\n\"", &k, &v, buf, sizeof(buf)), -EINVAL);
}

static int read_str(const char *text, struct conf_entry **e, size_t *n, char *err, size_t len)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int ret;

	assert_non_null(f);
	err[0] = '\0';
	ret = conffile_read(f, "t.conf", e, n, err, len);
	fclose(f);
	return ret;
}

static void test_read(void **state)
{
	struct conf_entry *e = NULL;
	char err[512], big[CONFFILE_LINE_MAX + 16];
	size_t n = 0;

	assert_int_equal(read_str("# c\n\nlisten = a\nverify = true\nmigration = x\nmigration = y",
				  &e, &n, err, sizeof(err)),
			 0);
	assert_int_equal(n, 4);
	assert_string_equal(e[0].key, "listen");
	assert_int_equal(e[0].line, 3);
	assert_string_equal(e[3].value, "y");
	assert_int_equal(e[3].line, 6);
	conffile_entries_free(e, n);

	assert_int_equal(read_str("a = 1\n\nb c\n", &e, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:3: "));

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "a = ", 4);
	assert_int_equal(read_str(big, &e, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:1: line longer"));
}

enum { O_FLAG = 256, O_NUM };
static const struct option opts[] = {
    {"listen", required_argument, NULL, 'l'}, {"item", required_argument, NULL, 'i'},
    {"flag", no_argument, NULL, O_FLAG},      {"num", required_argument, NULL, O_NUM},
    {"serve", no_argument, NULL, 's'},	      {NULL, 0, NULL, 0},
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Runs the merge and the getopt loop; "l=...,i=...,i=...,f,n=..." in out. */
static int run(int argc, char **argv, const char *def, const char *only, char *out, size_t len)
{
	int c, ret;

	ret = conffile_apply("test", &argc, &argv, "l:i:s", opts, def, only);
	if (ret < 0)
		return ret;
	out[0] = '\0';
	while ((c = conffile_getopt_long(argc, argv, "l:i:s", opts, NULL)) != -1) {
		size_t l = strlen(out);

		if (c == O_FLAG || c == 's')
			snprintf(out + l, len - l, "%s,", c == 's' ? "s" : "f");
		else if (c == 'l' || c == 'i' || c == O_NUM)
			snprintf(out + l, len - l, "%c=%s,", c == O_NUM ? 'n' : c, optarg);
		else
			snprintf(out + l, len - l, "?,");
	}
	return optind == argc ? 0 : -E2BIG;
}

/* Splits a copy of line at blanks into argv (at most 15 elements). */
static int mkargv(const char *line, char *buf, size_t len, char **av)
{
	int n = 0;

	snprintf(buf, len, "%s", line);
	for (char *t = strtok(buf, " "); t && n < 15; t = strtok(NULL, " "))
		av[n++] = t;
	av[n] = NULL;
	return n;
}

static int run_line(const char *line, const char *def, const char *only, char *out, size_t len)
{
	char buf[512], *av[16];
	int ac = mkargv(line, buf, sizeof(buf), av);

	return run(ac, av, def, only, out, len);
}

static void test_apply(void **state)
{
	char dir[] = "/tmp/test-conffile-XXXXXX", path[128], other[128], out[256], line[256];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.conf", dir);
	snprintf(other, sizeof(other), "%s/b.conf", dir);
	write_file(path, "listen = f:1\nitem = one\nitem = two\nflag = true\nnum = 7\n");
	write_file(other, "num = 9\nflag = false\n");

	/* The default file alone. */
	assert_int_equal(run_line("p", path, NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "l=f:1,i=one,i=two,f,n=7,");

	/* The command line wins, also over every line of a repeated key. */
	assert_int_equal(run_line("p -l c:2 --item=three --num 8", path, NULL, out, sizeof(out)),
			 0);
	assert_string_equal(out, "f,l=c:2,i=three,n=8,");

	/* --config names another file and leaves the arguments. */
	snprintf(line, sizeof(line), "p --config %s -s", other);
	assert_int_equal(run_line(line, path, NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "n=9,s,");

	/* A missing default file is fine, a missing named one is not. */
	assert_int_equal(run_line("p -s", "/nonexistent/x.conf", NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "s,");
	assert_int_equal(run_line("p --config=/nonexistent/x.conf", path, NULL, out, sizeof(out)),
			 -ENOENT);

	/* The default file only with the option named. */
	assert_int_equal(run_line("p", path, "serve", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(run_line("p -s", path, "serve", out, sizeof(out)), 0);
	assert_string_equal(out, "l=f:1,i=one,i=two,f,n=7,s,");

	/* Unknown keys, bad flags, empty values. */
	write_file(other, "num = 9\nnumber = 3\n");
	assert_int_equal(run_line("p", other, NULL, out, sizeof(out)), -EINVAL);
	write_file(other, "flag = 1\n");
	assert_int_equal(run_line("p", other, NULL, out, sizeof(out)), -EINVAL);
	write_file(other, "listen =\n");
	assert_int_equal(run_line("p", other, NULL, out, sizeof(out)), -EINVAL);
	write_file(other, "config = x\n");
	assert_int_equal(run_line("p", other, NULL, out, sizeof(out)), -EINVAL);

	unlink(path);
	unlink(other);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_line),
	    cmocka_unit_test(test_read),
	    cmocka_unit_test(test_apply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
