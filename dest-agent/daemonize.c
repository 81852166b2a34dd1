// SPDX-License-Identifier: GPL-2.0-or-later
/* daemonize: rdmig-dest's startup as a daemon (see daemonize.h). */
#include "daemonize.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int dest_redirect_log(const char *path)
{
	/* Never through a link: under --serve the path is in a directory the agent made. */
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (dup2(fd, STDERR_FILENO) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int dest_write_pidfile(const char *path)
{
	char buf[32];
	int fd, n, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		ret = -errno;
		log_err("pidfile %s: %s", path, strerror(-ret));
		return ret;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		ret = errno ? -errno : -EIO;
		log_err("pidfile %s: write: %s", path, strerror(-ret));
	}
	close(fd);
	return ret;
}

/*
 * Forks; the parent waits until the child says it is ready (socket
 * listening, pidfile written) and exits with its verdict, so a caller
 * that sees `rdmig-dest -d` return 0 can start the restore at once.
 * Returns in the child with *ready_fd to report on, or < 0.
 */
int dest_daemonize(int *ready_fd)
{
	int pfd[2], devnull;
	pid_t pid;
	char ok;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &ok, 1) == 1 && ok == 0)
			_exit(0);
		_exit(1);
	}
	close(pfd[0]);
	setsid();
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		close(devnull);
	}
	*ready_fd = pfd[1];
	return 0;
}

void dest_report_ready(int fd, bool ok)
{
	char b = ok ? 0 : 1;

	if (fd < 0)
		return;
	if (write(fd, &b, 1) != 1)
		log_warn("status fd %d: %s", fd, strerror(errno));
	close(fd);
}
