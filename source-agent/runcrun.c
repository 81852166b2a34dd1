// SPDX-License-Identifier: GPL-2.0-or-later
#include "runcrun.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "safepath.h"
#include "util.h"

/* Linux's PID_MAX_LIMIT. */
#define RUNC_PID_MAX 4194304

/* What runc cannot pass on to criu; NULL when everything can go. */
static const char *runc_unsupported(const struct src_criu_opts *o)
{
	if (o->link_remap)
		return "criu_opts.link_remap (runc has no such option)";
	if (strcmp(o->manage_cgroups, "ignore") == 0)
		return "criu_opts.manage_cgroups \"ignore\" (runc takes soft, full or strict)";
	if (o->log_level >= 0)
		return "criu_opts.log_level (runc sets criu's log level itself)";
	return NULL;
}

int src_runc_argv_build(struct src_criu_argv *av, const char *runc, enum src_runc_verb verb,
			const char *root, const char *id, const char *dir, const char *bundle,
			const struct src_criu_opts *o, const char **why)
{
	int ret = 0;

	memset(av, 0, sizeof(*av));
	*why = runc_unsupported(o);
	if (*why)
		return -EINVAL;
	if (verb == SRC_RUNC_RESTORE && !bundle) {
		*why = "the container's bundle (the restore needs it)";
		return -EINVAL;
	}
	ret |= src_criu_argv_add(av, runc);
	if (root) {
		ret |= src_criu_argv_add(av, "--root");
		ret |= src_criu_argv_add(av, root);
	}
	ret |= src_criu_argv_add(av, verb == SRC_RUNC_CHECKPOINT ? "checkpoint" : "restore");
	ret |= src_criu_argv_add(av, "--image-path");
	ret |= src_criu_argv_add(av, dir);
	ret |= src_criu_argv_add(av, "--work-path");
	ret |= src_criu_argv_add(av, dir);
	if (verb == SRC_RUNC_RESTORE) {
		ret |= src_criu_argv_add(av, "--bundle");
		ret |= src_criu_argv_add(av, bundle);
		ret |= src_criu_argv_add(av, "-d");
	}
	ret |= src_criu_argv_flags(av, o);
	if (o->manage_cgroups[0]) {
		ret |= src_criu_argv_add(av, "--manage-cgroups-mode");
		ret |= src_criu_argv_add(av, o->manage_cgroups);
	}
	if (verb == SRC_RUNC_CHECKPOINT && o->leave_running)
		ret |= src_criu_argv_add(av, "--leave-running");
	ret |= src_criu_argv_add(av, id);
	return ret ? -E2BIG : 0;
}

int src_runc_state_parse(const char *json, size_t len, pid_t *pid, char *bundle, size_t blen)
{
	json_t *root = json_loadb(json, len, 0, NULL), *labels, *v;
	const char *b = NULL;
	json_int_t p;
	size_t i;
	int ret = -EINVAL;

	*pid = 0;
	if (blen)
		bundle[0] = '\0';
	if (!json_is_object(root))
		goto out;
	v = json_object_get(root, "init_process_pid");
	p = json_is_integer(v) ? json_integer_value(v) : 0;
	if (p < 1 || p > RUNC_PID_MAX)
		goto out;
	labels = json_object_get(json_object_get(root, "config"), "labels");
	json_array_foreach(labels, i, v)
	{
		const char *s = json_string_value(v);

		if (s && strncmp(s, "bundle=", 7) == 0)
			b = s + 7;
	}
	if (!b || b[0] != '/')
		goto out;
	if ((size_t)snprintf(bundle, blen, "%s", b) >= blen) {
		ret = -ENAMETOOLONG;
		goto out;
	}
	*pid = (pid_t)p;
	ret = 0;
out:
	json_decref(root);
	return ret;
}

int src_runc_root_valid(const char *dir)
{
	if (dir[0] != '/' || strlen(dir) >= PATH_MAX / 2)
		return -EINVAL;
	/* "/" itself has nothing below its slash to check. */
	return dir[1] == '\0' || safepath_check_rel(dir + 1) == 0 ? 0 : -EINVAL;
}

int src_runc_root_pick(const struct src_runc_roots *r, const char *root, unsigned int *i,
		       const char **rel)
{
	*rel = "";
	if (!root) {
		*i = 0;
		return r->n ? 0 : -EACCES;
	}
	for (*i = 0; *i < r->n; (*i)++) {
		if (safepath_below(r->dirs[*i], root, rel) &&
		    (!**rel || safepath_check_rel(*rel) == 0))
			return 0;
	}
	return -EACCES;
}

/* state.json, open: runc's own file, not one anybody could have put there. */
static int runc_state_check(int fd, struct stat *st, const char **why)
{
	if (fstat(fd, st) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode)) {
		*why = "state.json is not a regular file";
		return -EBADF;
	}
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		*why = "state.json is not root's";
		return -EPERM;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		*why = "state.json is writable by group or others";
		return -EACCES;
	}
	if ((uint64_t)st->st_size > SRC_RUNC_STATE_MAX) {
		*why = "state.json is too big";
		return -EFBIG;
	}
	return 0;
}

int src_runc_state_read(const char *allowed, const char *rel, const char *id, pid_t *pid,
			char *bundle, size_t blen, const char **why)
{
	int rootfd = -1, dirfd = -1, fd = -1, ret;
	char sub[PATH_MAX], *text = NULL;
	struct stat st;
	size_t len = 0;

	*why = NULL;
	if (snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", id) >= (int)sizeof(sub))
		return -ENAMETOOLONG;
	rootfd = safepath_open_dir(allowed);
	if (rootfd < 0) {
		ret = rootfd == -ENOTDIR ? -ENOENT : rootfd;
		goto out;
	}
	dirfd = safepath_open_trusted_dir(rootfd, sub);
	if (dirfd < 0) {
		ret = dirfd == -ENOTDIR ? -ENOENT : dirfd;
		goto out;
	}
	/* O_NONBLOCK: a FIFO or a device opens at once, and is refused as not a file. */
	fd = safepath_openat(dirfd, "state.json", O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = runc_state_check(fd, &st, why);
	if (ret == 0)
		ret = read_fd_whole(fd, &st, &text, &len);
	if (ret == 0)
		ret = src_runc_state_parse(text, len, pid, bundle, blen);
out:
	if (ret < 0 && !*why && ret != -ENOENT)
		*why = safepath_strerror(ret);
	free(text);
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	if (rootfd >= 0)
		close(rootfd);
	return ret;
}
