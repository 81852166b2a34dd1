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

/*
 * From /proc/<pid>/stat: the state letter, the parent and the start time
 * (clock ticks after boot); any of them may be NULL.
 */
static int proctree_stat(const char *pid, char *state, pid_t *ppid, uint64_t *start)
{
	char path[64], buf[1024], *p, st;
	unsigned long long ticks;
	ssize_t n;
	int fd, pp;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: the state follows the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1,
			 " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
			 "%*d %llu",
			 &st, &pp, &ticks) != 3)
		return -EIO;
	if (state)
		*state = st;
	if (ppid)
		*ppid = (pid_t)pp;
	if (start)
		*start = ticks;
	return 0;
}

/* Parent pid from /proc/<pid>/stat, or -1. */
static pid_t proctree_ppid(const char *pid)
{
	pid_t ppid;

	return proctree_stat(pid, NULL, &ppid, NULL) < 0 ? -1 : ppid;
}

static int proctree_known(const pid_t *set, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == pid)
			return 1;
	return 0;
}

/*
 * Sends sig (0: none) to every descendant of tree[0] found by scanning
 * /proc, each as it is found (SIGSTOP: so it cannot fork past the scan);
 * appends them to tree (room for PROCTREE_MAX).  Returns the new count.
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
				if (sig)
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

int proctree_start_time(pid_t pid, uint64_t *ticks)
{
	char name[16];

	snprintf(name, sizeof(name), "%d", (int)pid);
	return proctree_stat(name, NULL, NULL, ticks);
}

/* The last pid of /proc/<pid>/status's NSpid: pid in its innermost namespace. */
static int proctree_nspid(pid_t pid, pid_t *vpid)
{
	char path[64], line[256], *p, *end;
	int ret = -ENOENT;
	long v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "NSpid:", 6))
			continue;
		for (p = line + 6;; p = end) {
			v = strtol(p, &end, 10);
			if (end == p)
				break;
			*vpid = (pid_t)v;
			ret = 0;
		}
		break;
	}
	fclose(f);
	return ret;
}

int proctree_members(pid_t pid, struct proctree_member **out)
{
	struct proctree_member *m = NULL;
	char name[16];
	pid_t *tree;
	size_t n, i;
	int ret;

	*out = NULL;
	tree = calloc(PROCTREE_MAX, sizeof(*tree));
	if (!tree)
		return -ENOMEM;
	tree[0] = pid;
	n = proctree_signal_descendants(tree, 1, 0);
	m = calloc(n, sizeof(*m));
	if (!m) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		m[i].pid = tree[i];
		snprintf(name, sizeof(name), "%d", (int)tree[i]);
		ret = proctree_stat(name, &m[i].state, NULL, NULL);
		if (ret == 0)
			ret = proctree_nspid(tree[i], &m[i].vpid);
		if (ret < 0) {
			/* The root gone is an error; a descendant that exited meanwhile is not one.
			 */
			if (i == 0)
				goto out;
			m[i].state = 'X';
			m[i].vpid = 0;
		}
	}
	*out = m;
	m = NULL;
	ret = (int)n;
out:
	free(m);
	free(tree);
	return ret;
}
