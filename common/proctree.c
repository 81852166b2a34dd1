// SPDX-License-Identifier: GPL-2.0-or-later
#include "proctree.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

#define PROCTREE_MAX 4096
/* New children can appear while scanning; rescan until none does. */
#define PROCTREE_PASSES 4

int proctree_pidfd_open(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return -errno;
	return (int)fd;
}

/* Parent pid from /proc/<pid>/stat, or -1. */
static pid_t proctree_ppid(const char *pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;
	int ppid;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: the state follows the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return (pid_t)ppid;
}

static int proctree_known(const pid_t *set, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == pid)
			return 1;
	return 0;
}

/*
 * Sends sig to every descendant of tree[0] found by scanning /proc, each as
 * it is found (SIGSTOP: so it cannot fork past the scan); appends them to
 * tree (room for PROCTREE_MAX).  Returns the new count.
 */
static size_t proctree_signal_descendants(pid_t *tree, size_t n, int sig)
{
	for (int pass = 0; pass < PROCTREE_PASSES; pass++) {
		size_t before = n;
		DIR *d = opendir("/proc");
		struct dirent *de;

		if (!d)
			break;
		while ((de = readdir(d)) && n < PROCTREE_MAX) {
			pid_t child, ppid;

			if (!isdigit((unsigned char)de->d_name[0]))
				continue;
			child = (pid_t)atoi(de->d_name);
			ppid = proctree_ppid(de->d_name);
			if (ppid > 0 && proctree_known(tree, n, ppid) &&
			    !proctree_known(tree, n, child)) {
				kill(child, sig);
				tree[n++] = child;
			}
		}
		closedir(d);
		if (n == before)
			break;
	}
	return n;
}

int proctree_kill(int pidfd, pid_t pid)
{
	pid_t *tree;
	size_t n = 1;
	int ret;

	if (syscall(SYS_pidfd_send_signal, pidfd, SIGSTOP, NULL, 0) < 0) {
		ret = -errno;
		if (ret != -ESRCH)
			log_err("pid %d: cannot stop it: %s", (int)pid, strerror(-ret));
		return ret;
	}
	tree = calloc(PROCTREE_MAX, sizeof(*tree));
	if (tree) {
		tree[0] = pid;
		n = proctree_signal_descendants(tree, n, SIGSTOP);
	} else {
		log_warn("pid %d: out of memory: killing it without its descendants", (int)pid);
	}
	if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0) {
		ret = -errno;
		log_err("pid %d: cannot kill it: %s", (int)pid, strerror(-ret));
		free(tree);
		return ret;
	}
	for (size_t i = 1; tree && i < n; i++) {
		log_warn("pid %d: killing descendant %d of %d", (int)tree[i], (int)tree[i],
			 (int)pid);
		kill(tree[i], SIGKILL);
	}
	free(tree);
	return (int)n;
}

int proctree_stop(int pidfd, pid_t pid)
{
	pid_t *tree;
	size_t n;
	int ret;

	if (syscall(SYS_pidfd_send_signal, pidfd, SIGSTOP, NULL, 0) < 0) {
		ret = -errno;
		log_err("pid %d: cannot stop it: %s", (int)pid, strerror(-ret));
		return ret;
	}
	tree = calloc(PROCTREE_MAX, sizeof(*tree));
	if (!tree) {
		log_err("pid %d: out of memory: its descendants are not stopped", (int)pid);
		return -ENOMEM;
	}
	tree[0] = pid;
	n = proctree_signal_descendants(tree, 1, SIGSTOP);
	free(tree);
	return (int)n;
}

int proctree_cont(int pidfd, pid_t pid)
{
	pid_t *tree;
	size_t n;
	int ret;

	tree = calloc(PROCTREE_MAX, sizeof(*tree));
	if (!tree)
		return -ENOMEM;
	/* Descendants first: a stopped tree cannot fork while it is scanned. */
	tree[0] = pid;
	n = proctree_signal_descendants(tree, 1, SIGCONT);
	free(tree);
	if (syscall(SYS_pidfd_send_signal, pidfd, SIGCONT, NULL, 0) < 0) {
		ret = -errno;
		log_err("pid %d: cannot continue it: %s", (int)pid, strerror(-ret));
		return ret;
	}
	return (int)n;
}
