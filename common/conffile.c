// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * conffile: see conffile.h.  The file is turned into arguments rather than
 * into settings so that the binaries keep one list of options (their
 * getopt_long table) and one place where each value is checked.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conffile.h"

/* getopt_long's answer for --config in the scan of the command line. */
#define CONF_OPT_CONFIG (INT_MAX - 7)

/* One argument made from the file, and the line it came from. */
struct conf_arg {
	char *arg;
	unsigned int line;
};

/*
 * The merged arguments: parsed configuration, kept for the whole run since
 * optarg pointers point into it; on_exit() reads it to name the line of a
 * value the binary rejected.
 */
static struct {
	const char *prog;
	char *path;
	char **argv;
	struct conf_arg *args;
	size_t nargs;
	const char *last_arg; /* the file's argument getopt_long returned last */
	unsigned int last_line;
	bool done;
	bool hooked;
} conf;

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* The quoted value at s (after the quote), unescaped in place. */
static int parse_quoted(char *s, char **value, const char **why)
{
	char *r = s, *w = s;

	for (;; r++) {
		if (!*r) {
			*why = "unterminated quoted value";
			return -EINVAL;
		}
		if (*r == '"')
			break;
		if (*r == '\\') {
			r++;
			if (*r != '"' && *r != '\\') {
				*why = "only \\\" and \\\\ may be escaped in a quoted value";
				return -EINVAL;
			}
		}
		*w++ = *r;
	}
	r++;
	while (is_blank(*r))
		r++;
	if (*r && *r != '#') {
		*why = "text after the quoted value";
		return -EINVAL;
	}
	*w = '\0';
	*value = s;
	return 1;
}

int conffile_parse_line(char *line, char **key, char **value, const char **why)
{
	char *p = line, *end;

	while (is_blank(*p))
		p++;
	if (!*p || *p == '#' || *p == '\r')
		return 0;
	*key = p;
	while (is_key_char(*p))
		p++;
	if (p == *key) {
		*why = "a line is 'key = value': a key is lower-case letters, digits and '-'";
		return -EINVAL;
	}
	end = p;
	while (is_blank(*p))
		p++;
	if (*p != '=') {
		*why = "a line is 'key = value': no '=' after the key";
		return -EINVAL;
	}
	*end = '\0';
	p++;
	while (is_blank(*p))
		p++;
	if (*p == '"')
		return parse_quoted(p + 1, value, why);
	*value = p;
	/* An unquoted value ends at a comment: a '#' after a blank. */
	for (end = p; *end; end++)
		if (*end == '#' && end > p && is_blank(end[-1]))
			break;
	while (end > p && (is_blank(end[-1]) || end[-1] == '\r'))
		end--;
	*end = '\0';
	return 1;
}

void conffile_entries_free(struct conf_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].key);
		free(e[i].value);
	}
	free(e);
}

int conffile_read(FILE *f, const char *name, struct conf_entry **out, size_t *n, char *err,
		  size_t errlen)
{
	char buf[CONFFILE_LINE_MAX], *key, *value;
	struct conf_entry *e = NULL, *ne;
	size_t len, cnt = 0;
	unsigned int line = 0;
	const char *why;
	int ret;

	while (fgets(buf, sizeof(buf), f)) {
		line++;
		len = strlen(buf);
		if (len && buf[len - 1] == '\n')
			buf[--len] = '\0';
		else if (!feof(f)) {
			snprintf(err, errlen, "%s:%u: line longer than %d bytes", name, line,
				 CONFFILE_LINE_MAX - 1);
			ret = -EINVAL;
			goto out;
		}
		ret = conffile_parse_line(buf, &key, &value, &why);
		if (ret < 0) {
			snprintf(err, errlen, "%s:%u: %s", name, line, why);
			goto out;
		}
		if (ret == 0)
			continue;
		ne = realloc(e, (cnt + 1) * sizeof(*e));
		if (!ne) {
			ret = -ENOMEM;
			goto out;
		}
		e = ne;
		e[cnt].key = strdup(key);
		e[cnt].value = strdup(value);
		e[cnt].line = line;
		cnt++;
		if (!e[cnt - 1].key || !e[cnt - 1].value) {
			ret = -ENOMEM;
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", name);
		ret = -EIO;
		goto out;
	}
	*out = e;
	*n = cnt;
	e = NULL;
	cnt = 0;
	ret = 0;
out:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
	conffile_entries_free(e, cnt);
	return ret;
}

/* Names the file's line whose value the binary rejected (exit status 2). */
static void conf_on_exit(int status, void *arg)
{
	if (status == 2 && !conf.done && conf.last_arg)
		fprintf(stderr, "%s: (the option above is %s line %u)\n", conf.prog, conf.path,
			conf.last_line);
}

int conffile_getopt_long(int argc, char *const argv[], const char *shortopts,
			 const struct option *longopts, int *longindex)
{
	int li = -1, c;

	c = getopt_long(argc, argv, shortopts, longopts, &li);
	if (longindex)
		*longindex = li;
	conf.last_arg = NULL;
	if (c == -1) {
		conf.done = true;
		return c;
	}
	/* The file's arguments are all "--key[=value]": one element each. */
	if (li >= 0 && optind >= 1 && optind <= argc)
		for (size_t i = 0; i < conf.nargs; i++)
			if (argv[optind - 1] == conf.args[i].arg) {
				conf.last_arg = conf.args[i].arg;
				conf.last_line = conf.args[i].line;
				break;
			}
	return c;
}

static void conf_reset(void)
{
	for (size_t i = 0; i < conf.nargs; i++)
		free(conf.args[i].arg);
	free(conf.args);
	free(conf.argv);
	free(conf.path);
	conf.args = NULL;
	conf.argv = NULL;
	conf.path = NULL;
	conf.nargs = 0;
	conf.last_arg = NULL;
	conf.done = false;
}

static int find_longopt(const struct option *lo, const char *name)
{
	for (int i = 0; lo[i].name; i++)
		if (!strcmp(lo[i].name, name))
			return i;
	return -1;
}

/*
 * Which long options the command line gives (short ones mapped to theirs),
 * and where its --config is; those elements are marked in drop.
 */
static int scan_cmdline(int argc, char **av, const char *shortopts, const struct option *lo,
			int nlo, bool *given, bool *drop, const char **config)
{
	struct option *all;
	char *so;
	int c, li, start, i;

	all = calloc((size_t)nlo + 2, sizeof(*all));
	so = malloc(strlen(shortopts) + 3);
	if (!all || !so) {
		free(all);
		free(so);
		return -ENOMEM;
	}
	memcpy(all, lo, (size_t)nlo * sizeof(*all));
	all[nlo] = (struct option){"config", required_argument, NULL, CONF_OPT_CONFIG};
	/* In order, no permutation: the elements consumed are [start, optind). */
	while (*shortopts == ':' || *shortopts == '+' || *shortopts == '-')
		shortopts++;
	snprintf(so, strlen(shortopts) + 3, "-:%s", shortopts);
	opterr = 0;
	optind = 0;
	for (;;) {
		start = optind ? optind : 1;
		li = -1;
		c = getopt_long(argc, av, so, all, &li);
		if (c == -1)
			break;
		if (c == 1 || c == '?' || c == ':')
			continue;
		if (c == CONF_OPT_CONFIG) {
			*config = optarg;
			for (i = start; i < optind; i++)
				drop[i] = true;
			continue;
		}
		if (li < 0)
			for (i = 0; i < nlo; i++)
				if (!lo[i].flag && lo[i].val == c) {
					li = i;
					break;
				}
		if (li >= 0 && li < nlo)
			given[li] = true;
	}
	/* The binary's own getopt_long starts afresh. */
	optind = 0;
	opterr = 1;
	free(all);
	free(so);
	return 0;
}

/* The file's entries as arguments, checked against the options. */
static int entries_to_args(const char *path, const struct conf_entry *e, size_t n,
			   const struct option *lo, const bool *given, const char *prog)
{
	int li, len;

	conf.args = calloc(n ? n : 1, sizeof(*conf.args));
	if (!conf.args)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		li = find_longopt(lo, e[i].key);
		if (li < 0) {
			fprintf(stderr, "%s: %s:%u: unknown key '%s'\n", prog, path, e[i].line,
				e[i].key);
			return -EINVAL;
		}
		if (lo[li].has_arg == no_argument) {
			if (strcmp(e[i].value, "true") && strcmp(e[i].value, "false")) {
				fprintf(stderr,
					"%s: %s:%u: '%s' is a flag: true or false, not '%s'\n",
					prog, path, e[i].line, e[i].key, e[i].value);
				return -EINVAL;
			}
		} else if (!e[i].value[0]) {
			fprintf(stderr, "%s: %s:%u: '%s' wants a value\n", prog, path, e[i].line,
				e[i].key);
			return -EINVAL;
		}
		if (given[li] || !strcmp(e[i].value, "false"))
			continue;
		if (lo[li].has_arg == no_argument)
			len = asprintf(&conf.args[conf.nargs].arg, "--%s", e[i].key);
		else
			len = asprintf(&conf.args[conf.nargs].arg, "--%s=%s", e[i].key, e[i].value);
		if (len < 0)
			return -ENOMEM;
		conf.args[conf.nargs++].line = e[i].line;
	}
	return 0;
}

int conffile_apply(const char *prog, int *argc, char ***argv, const char *shortopts,
		   const struct option *longopts, const char *default_path, const char *only_with)
{
	char **av = NULL, err[512];
	const char *config = NULL;
	bool *given = NULL, *drop = NULL;
	struct conf_entry *e = NULL;
	size_t n = 0;
	int nlo = 0, ret, i, k, only;
	FILE *f = NULL;

	conf_reset();
	conf.prog = prog;
	while (longopts[nlo].name)
		nlo++;
	av = calloc((size_t)*argc + 1, sizeof(*av));
	given = calloc((size_t)nlo + 1, sizeof(*given));
	drop = calloc((size_t)*argc + 1, sizeof(*drop));
	if (!av || !given || !drop) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(av, *argv, (size_t)*argc * sizeof(*av));
	ret = scan_cmdline(*argc, av, shortopts, longopts, nlo, given, drop, &config);
	if (ret < 0)
		goto out;
	only = only_with ? find_longopt(longopts, only_with) : -1;
	if (!config && default_path && (!only_with || (only >= 0 && given[only]))) {
		f = fopen(default_path, "re");
		if (!f && errno != ENOENT) {
			ret = -errno;
			fprintf(stderr, "%s: cannot read %s: %s\n", prog, default_path,
				strerror(errno));
			goto out;
		}
		config = f ? default_path : NULL;
	} else if (config) {
		f = fopen(config, "re");
		if (!f) {
			ret = -errno;
			fprintf(stderr, "%s: cannot read --config %s: %s\n", prog, config,
				strerror(errno));
			goto out;
		}
	}
	if (f) {
		conf.path = strdup(config);
		if (!conf.path) {
			ret = -ENOMEM;
			goto out;
		}
		ret = conffile_read(f, config, &e, &n, err, sizeof(err));
		if (ret < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			goto out;
		}
		ret = entries_to_args(conf.path, e, n, longopts, given, prog);
		if (ret < 0)
			goto out;
	}
	conf.argv = calloc((size_t)*argc + conf.nargs + 1, sizeof(*conf.argv));
	if (!conf.argv) {
		ret = -ENOMEM;
		goto out;
	}
	k = 0;
	conf.argv[k++] = (*argv)[0];
	for (size_t j = 0; j < conf.nargs; j++)
		conf.argv[k++] = conf.args[j].arg;
	for (i = 1; i < *argc; i++)
		if (!drop[i])
			conf.argv[k++] = (*argv)[i];
	conf.argv[k] = NULL;
	if (!conf.hooked && on_exit(conf_on_exit, NULL) == 0)
		conf.hooked = true;
	*argc = k;
	*argv = conf.argv;
	ret = 0;
out:
	if (ret == -ENOMEM)
		fprintf(stderr, "%s: out of memory reading the configuration\n", prog);
	if (f)
		fclose(f);
	conffile_entries_free(e, n);
	free(av);
	free(given);
	free(drop);
	if (ret < 0)
		conf_reset();
	return ret;
}
