/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * safepath: directories and files the agents open below a root they trust.
 *
 * Whatever an API caller or a peer names is resolved beneath a directory
 * fd, never from "/": openat2() with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
 * | RESOLVE_NO_MAGICLINKS, or, on kernels without openat2 (ENOSYS), one
 * openat(O_NOFOLLOW) per component.  A symlink anywhere on the way is
 * -ELOOP, ".." or an absolute name is -EXDEV: both refused, never
 * followed.  A trusted directory is owned by root (or the agent's euid)
 * and not writable by group or others, so nobody else can plant a link
 * in it after the check.
 *
 * Ownership: every fd returned is the caller's (O_CLOEXEC).  Functions
 * return 0 (or an fd) or a negative errno and do not log: the caller
 * names the object.
 */
#ifndef RDMIG_SAFEPATH_H
#define RDMIG_SAFEPATH_H

#include <stdbool.h>
#include <sys/types.h>

/* Opens the directory path itself (O_RDONLY | O_DIRECTORY, not following a final link). */
int safepath_open_dir(const char *path);

/*
 * The reason for one of this module's errors, for messages: -ELOOP "a
 * symbolic link on the way", -EPERM / -EACCES (untrusted), -EXDEV; else
 * strerror().
 */
const char *safepath_strerror(int err);

/*
 * 0 when the directory fd is owned by root or the agent's euid and not
 * writable by group or others; -EPERM for a foreign owner, -EACCES for a
 * loose mode, -ENOTDIR, or fstat's error.
 */
int safepath_check_trusted(int fd);

/*
 * rel relative to dirfd, strictly beneath it: an fd, or a negative errno.
 * flags are open(2)'s (O_CLOEXEC and O_NOFOLLOW are added); mode only
 * with O_CREAT.  rel must be relative, without "." or ".." components
 * (else -EXDEV) nor empty ones.
 */
int safepath_openat(int dirfd, const char *rel, int flags, mode_t mode);

/* The per-component fallback of safepath_openat(), exposed for its tests. */
int safepath_openat_walk(int dirfd, const char *rel, int flags, mode_t mode);

/*
 * Opens rel (a directory beneath dirfd) and checks every directory from
 * dirfd down to it with safepath_check_trusted().  Returns its fd.
 */
int safepath_open_trusted_dir(int dirfd, const char *rel);

/*
 * Creates the directory rel beneath dirfd (mode, umask aside) and opens
 * it; its parents must exist.  An existing one is -EEXIST: the agent only
 * writes into directories it made.  Returns the new directory's fd.
 */
int safepath_mkdir(int dirfd, const char *rel, mode_t mode);

/*
 * rel as a path that safepath_openat() takes: 0 when it is relative, not
 * empty, and has no ".", ".." or empty components; else -EXDEV.
 */
int safepath_check_rel(const char *rel);

/*
 * When path is root itself or below it (root must be canonical, as from
 * realpath(), path is taken lexically), *rel points into path at the part
 * below root ("" for root itself) and the result is true.
 */
bool safepath_below(const char *root, const char *path, const char **rel);

#endif
