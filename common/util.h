/* SPDX-License-Identifier: GPL-2.0-or-later */
/* util: small parsing and time helpers shared by every binary. */
#ifndef RDMIG_UTIL_H
#define RDMIG_UTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Longest migration id; the rule is MIGRATION_ID_RULE. */
#define MIGRATION_ID_MAX  64
#define MIGRATION_ID_RULE "1..64 characters of [A-Za-z0-9._-], the first a letter or a digit"

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/*
 * Parses a byte size with an optional binary suffix: "4096", "4K", "64M",
 * "1G" (K = 1024).  Returns 0 or -EINVAL / -ERANGE.
 */
int parse_size(const char *s, uint64_t *out);

/* Parses an unsigned decimal integer in [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * Splits "host:port" (or "[v6]:port") into its parts.  host and port are
 * written into caller buffers.  A missing port takes def_port.
 */
int parse_hostport(const char *s, const char *def_port, char *host, size_t hostlen, char *port,
		   size_t portlen);

/* Formats a byte count as "64.0 MiB" into buf. */
const char *fmt_bytes(uint64_t bytes, char *buf, size_t len);

/* Sets O_NONBLOCK on fd.  Returns 0 or -errno. */
int fd_set_nonblock(int fd);

/*
 * mkdir -p path: missing parents 0755, path itself 0700 (an existing path
 * is fine if it is a directory).  Returns 0 or a negative errno
 * (-ENOTDIR, -ENAMETOOLONG, mkdir's); logging is the caller's.
 */
int mkdir_private(const char *path);

/*
 * The whole of the regular file path (not a symbolic link), owned by root
 * or by us, at most max bytes, into a NUL-terminated *out the caller
 * frees; its length in *len.  -EINVAL: not a regular file, or too big;
 * -EACCES: someone else's.  Returns 0 or a negative errno.
 */
int read_file_max(const char *path, size_t max, char **out, size_t *len);

/*
 * The st_size bytes of fd (read from where it is; st from its fstat()),
 * into a NUL-terminated *out the caller frees; *len may be less when the
 * file shrank.  Returns 0 or a negative errno.
 */
struct stat;
int read_fd_whole(int fd, const struct stat *st, char **out, size_t *len);

/*
 * A directory stream over a duplicate of dirfd, from its start (the caller
 * keeps dirfd; closedir() the result).  Returns 0 or a negative errno.
 */
int opendir_at(int dirfd, DIR **out);

/*
 * The first thing every binary's main() does.  Ignores SIGPIPE: a write to
 * a peer that has gone (an API client that timed out, a destination that
 * closed) must be an EPIPE for that one connection, never the death of the
 * process and of every migration it serves.  The children the agents start
 * get the default back (criuproc.c, the supervisor's spawn).
 *
 * secrets: the process will hold migration secrets; it is made
 * non-dumpable (PR_SET_DUMPABLE 0): no core file, no ptrace or
 * /proc/PID/mem from other processes of the same user.  The process
 * itself still reads its own /proc/self, and exec() makes a child (criu)
 * dumpable again.  Returns 0 or a negative errno (the caller logs it).
 */
int proc_harden(bool secrets);

/*
 * A migration id names directories and appears in logs and URLs, so the
 * rule is [A-Za-z0-9][A-Za-z0-9._-]{0,63}: never ".", "..", a hidden name
 * or something an option parser would take for an option ("-x").
 */
bool migration_id_valid(const char *id);

/*
 * A container id as runc names containers, bounded so that it fits a path
 * component and a log line: same characters as a migration id.
 */
#define CONTAINER_ID_MAX  128
#define CONTAINER_ID_RULE "1..128 characters of [A-Za-z0-9._-], the first a letter or a digit"
bool container_id_valid(const char *id);

#endif
