/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * conffile: an agent's configuration file (rdmig.conf(5)), turned into
 * command-line options.
 *
 * Each "key = value" line becomes "--key=value" (a flag set to true becomes
 * "--key", to false nothing), placed before the command line's own
 * arguments, so the binary's one getopt_long loop parses both and every
 * option is accepted in the file with no second list.  An option the
 * command line gives replaces every line of the file with that key, which
 * is what "the command line wins" means for the repeatable ones too.
 */
#ifndef RDMIG_CONFFILE_H
#define RDMIG_CONFFILE_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Longest line of a configuration file, newline included. */
#define CONFFILE_LINE_MAX 4096

/* One "key = value" line.  key and value point into memory the parser owns. */
struct conf_entry {
	char *key;
	char *value;
	unsigned int line;
};

/*
 * Splits one line (no newline) into key and value, in place.  Returns 1 for
 * an entry, 0 for a blank or comment line, -EINVAL with a reason in *why.
 * A value may be double-quoted (\" and \\ inside); unquoted, it ends at a
 * '#' that follows a blank, and blanks around it are dropped.
 */
int conffile_parse_line(char *line, char **key, char **value, const char **why);

/*
 * Reads every entry of f.  On success *out (free it with conffile_entries_free)
 * holds *n entries.  On -EINVAL the message, naming name and the line, is in err.
 */
int conffile_read(FILE *f, const char *name, struct conf_entry **out, size_t *n, char *err,
		  size_t errlen);
void conffile_entries_free(struct conf_entry *e, size_t n);

/*
 * Merges the configuration file into *argc / *argv, first thing in main().
 * The file is "--config FILE" from the command line (an error if missing),
 * else default_path if it exists; default_path is only read when the
 * command line gives the long option only_with (NULL: always).  "--config"
 * is taken out of the arguments.  Keys are checked against longopts, and
 * flags take true or false.  On an error it prints to stderr, naming the
 * file and line, and returns -EINVAL (exit 2) or -errno.
 *
 * The new argv is parsed configuration: it stays allocated, and reachable,
 * for the life of the process, as the options' optarg pointers point into it.
 */
int conffile_apply(const char *prog, int *argc, char ***argv, const char *shortopts,
		   const struct option *longopts, const char *default_path, const char *only_with);

/*
 * getopt_long() for the merged arguments: the same, and it remembers which
 * line of the file the option it returns came from, so that a bad value the
 * caller then rejects (exit status 2) is followed by "FILE:LINE: ..." on
 * stderr.
 */
int conffile_getopt_long(int argc, char *const argv[], const char *shortopts,
			 const struct option *longopts, int *longindex);

#endif
