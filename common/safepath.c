// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * safepath: opening below a trusted directory fd (see safepath.h).
 */
#include "safepath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* openat2 answers EAGAIN when a rename raced the lookup: a few tries, then give up. */
#define SAFEPATH_RETRIES 8

int safepath_open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

const char *safepath_strerror(int err)
{
	switch (err) {
	case -ELOOP:
		return "a symbolic link on the way (links are not followed)";
	case -EPERM:
		return "a directory not owned by root";
	case -EACCES:
		return "a directory writable by group or others";
	case -EXDEV:
		return "a path that leaves its root";
	default:
		return strerror(-err);
	}
}

int safepath_check_trusted(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return -EPERM;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return -EACCES;
	return 0;
}

int safepath_check_rel(const char *rel)
{
	const char *p = rel, *e;
	size_t n;

	if (!rel || !*rel || *rel == '/')
		return -EXDEV;
	for (;;) {
		e = strchrnul(p, '/');
		n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EXDEV;
		if (!*e)
			return 0;
		p = e + 1;
	}
}

bool safepath_below(const char *root, const char *path, const char **rel)
{
	size_t len = strlen(root);

	if (len && root[len - 1] == '/')
		len--; /* "/" itself */
	if (strncmp(path, root, len) != 0 || (path[len] != '\0' && path[len] != '/'))
		return false;
	*rel = path[len] ? path + len + 1 : path + len;
	return true;
}

/* O_DIRECTORY on a link says ENOTDIR: name it for what it is. */
static int safepath_errno(int dirfd, const char *name, int err)
{
	struct stat st;

	if (err == -ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -ELOOP;
	return err;
}

/*
 * One openat(O_NOFOLLOW) per component; with trusted, every directory
 * opened on the way (the last one too) must pass safepath_check_trusted().
 */
static int safepath_walk(int dirfd, const char *rel, int flags, mode_t mode, bool trusted)
{
	char buf[PATH_MAX], *p, *slash;
	int cur = dirfd, fd, ret;

	ret = safepath_check_rel(rel);
	if (ret < 0)
		return ret;
	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf;; p = slash + 1) {
		slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		fd = slash ? openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
			   : openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		ret = fd < 0 ? safepath_errno(cur, p, -errno) : fd;
		if (fd >= 0 && trusted) {
			ret = safepath_check_trusted(fd);
			if (ret < 0)
				close(fd);
		}
		if (cur != dirfd)
			close(cur);
		if (ret < 0 || !slash)
			return ret < 0 ? ret : fd;
		cur = fd;
	}
}

int safepath_openat_walk(int dirfd, const char *rel, int flags, mode_t mode)
{
	return safepath_walk(dirfd, rel, flags, mode, false);
}

int safepath_openat(int dirfd, const char *rel, int flags, mode_t mode)
{
	struct open_how how = {
	    .flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC),
	    .mode = (flags & O_CREAT) ? mode : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd;
	int ret, tries = 0;

	ret = safepath_check_rel(rel);
	if (ret < 0)
		return ret;
	do
		fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < SAFEPATH_RETRIES);
	if (fd < 0 && errno == ENOSYS)
		return safepath_openat_walk(dirfd, rel, flags, mode);
	return fd < 0 ? safepath_errno(dirfd, rel, -errno) : (int)fd;
}

int safepath_open_trusted_dir(int dirfd, const char *rel)
{
	int ret = safepath_check_trusted(dirfd);

	return ret < 0 ? ret : safepath_walk(dirfd, rel, O_RDONLY | O_DIRECTORY, 0, true);
}

int safepath_mkdir(int dirfd, const char *rel, mode_t mode)
{
	char buf[PATH_MAX], *leaf;
	int pfd = dirfd, ret;

	ret = safepath_check_rel(rel);
	if (ret < 0)
		return ret;
	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	leaf = strrchr(buf, '/');
	if (leaf) {
		*leaf++ = '\0';
		pfd = safepath_openat(dirfd, buf, O_RDONLY | O_DIRECTORY, 0);
		if (pfd < 0)
			return pfd;
	} else {
		leaf = buf;
	}
	/* mkdirat never follows a link in its last component: EEXIST for one. */
	if (mkdirat(pfd, leaf, mode) < 0)
		ret = -errno;
	else
		ret = safepath_openat(pfd, leaf, O_RDONLY | O_DIRECTORY, 0);
	if (pfd != dirfd)
		close(pfd);
	return ret;
}
