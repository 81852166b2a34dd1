// SPDX-License-Identifier: GPL-2.0-or-later
/* svcmgr: see svcmgr.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "svcmgr.h"
#include "util.h"

int svcmgr_listen_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int type = 0, listening = 0, fd = SVCMGR_LISTEN_FD, ret;
	socklen_t len = sizeof(int);
	uint64_t p, n;

	if (!pid || !fds)
		return -ENOENT;
	ret =
	    parse_uint(pid, 1, INT32_MAX, &p) < 0 || parse_uint(fds, 0, 1024, &n) < 0 ? -EINVAL : 0;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (ret < 0)
		return ret;
	if ((pid_t)p != getpid() || n == 0)
		return -ENOENT;
	if (n > 1 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
		log_warn("socket activation: ignored: LISTEN_FDS=%s, or fd %d is not one listening "
			 "stream socket",
			 fds, fd);
		return -EINVAL;
	}
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return fd;
}

int svcmgr_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t plen = path ? strlen(path) : 0;
	socklen_t salen;
	int fd, ret = 0;

	if (!path || !path[0])
		return 0;
	/* A path, or an abstract name written with a leading '@'. */
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
		ret = -errno;
	close(fd);
	return ret;
}
