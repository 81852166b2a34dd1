// SPDX-License-Identifier: GPL-2.0-or-later
#include "lpsock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "uffd.h"

/* Records handled per wakeup, so one chatty client cannot starve faults. */
#define LPSOCK_BUDGET 64
/* Room for garbage with several fds (all are closed) plus the credentials. */
#define LPSOCK_MAX_FDS 8

enum lpsock_state {
	LP_LISTENING,
	LP_HEADER,   /* reading the 4-byte pid / FIN word */
	LP_FD,	     /* pid read, waiting for the 1-byte message with the fd */
	LP_FINISHED, /* FIN seen: only the hang-up may follow */
	LP_CLOSED,
};

struct lpsock {
	enum lpsock_state state;
	char path[PATH_MAX];
	int listen_fd;
	int conn_fd;
	struct event *ev;
	struct event_base *base;
	const struct img_set *imgs;
	const struct lpsock_ops *ops;
	void *arg;
	uint8_t hdr[4];
	size_t hdr_len;
	int32_t pid; /* of the record being read, in LP_FD */
	int32_t *seen;
	size_t nr_seen;
	size_t cap_seen;
	uint32_t nr_tasks;
	uint32_t nr_zombies;
	bool fin;
};

static struct lpsock *lpsock_new(void)
{
	struct lpsock *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return NULL;
	ls->listen_fd = -1;
	ls->conn_fd = -1;
	return ls;
}

/*
 * A socket left by an earlier run of this agent's user is removed; anything
 * else by that name (a file, a link, someone else's socket) is -EEXIST.
 */
static int lpsock_remove_stale(int dirfd)
{
	struct stat st;

	if (fstatat(dirfd, LPSOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()))
		return -EEXIST;
	if (unlinkat(dirfd, LPSOCK_NAME, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int lpsock_listen(const char *work_dir, struct lpsock **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct lpsock *ls;
	int dirfd = -1, one = 1, ret = 0;

	ls = lpsock_new();
	if (!ls)
		return -ENOMEM;
	snprintf(ls->path, sizeof(ls->path), "%s/%s", work_dir, LPSOCK_NAME);
	dirfd = open(work_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = -errno;
		log_err("work dir %s: %s", work_dir, strerror(-ret));
		goto out;
	}
	/* A long work dir does not fit sun_path; its fd link always does. */
	if (strlen(ls->path) < sizeof(sa.sun_path))
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ls->path);
	else
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd,
			 LPSOCK_NAME);
	ret = lpsock_remove_stale(dirfd);
	if (ret < 0) {
		log_err("%s: cannot remove the stale socket: %s", ls->path,
			ret == -EEXIST ? "it is not a socket of this agent's user"
				       : strerror(-ret));
		goto out;
	}
	ls->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ls->listen_fd < 0) {
		ret = -errno;
		log_err("socket(AF_UNIX): %s", strerror(-ret));
		goto out;
	}
	/* Set before accept: records may be queued before we accept the client. */
	setsockopt(ls->listen_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	if (bind(ls->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		log_err("bind %s: %s", ls->path, strerror(-ret));
		goto out;
	}
	if (listen(ls->listen_fd, 10) < 0) {
		ret = -errno;
		log_err("listen %s: %s", ls->path, strerror(-ret));
		goto out;
	}
	log_info("listening on %s", ls->path);
	ls->state = LP_LISTENING;
	*out = ls;
	ls = NULL;
out:
	if (dirfd >= 0)
		close(dirfd);
	lpsock_free(ls);
	return ret;
}

void lpsock_free(struct lpsock *ls)
{
	if (!ls)
		return;
	if (ls->ev)
		event_free(ls->ev);
	if (ls->listen_fd >= 0)
		close(ls->listen_fd);
	if (ls->conn_fd >= 0)
		close(ls->conn_fd);
	free(ls->seen);
	free(ls);
}

static void lpsock_close(struct lpsock *ls)
{
	if (ls->ev) {
		event_free(ls->ev);
		ls->ev = NULL;
	}
	if (ls->conn_fd >= 0) {
		close(ls->conn_fd);
		ls->conn_fd = -1;
	}
	ls->state = LP_CLOSED;
}

/* Reports garbage or a broken stream, then drops the client as criu lazy-pages does. */
__attribute__((format(printf, 3, 4))) static void lpsock_fail(struct lpsock *ls, int err,
							      const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	log_err("%s: %s", ls->path, reason);
	lpsock_close(ls);
	if (ls->ops->error)
		ls->ops->error(ls->arg, err, reason);
}

static void lpsock_close_fds(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * One recvmsg of at most len bytes.  Returns bytes read (0 at EOF) or a
 * negative errno; received fds and the sender's pid go to the out params.
 */
static ssize_t lpsock_recv(struct lpsock *ls, void *buf, size_t len, int *fds, size_t *nr_fds,
			   pid_t *sender)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * LPSOCK_MAX_FDS) +
			 CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = ctrl.buf,
	    .msg_controllen = sizeof(ctrl.buf),
	};
	ssize_t n;

	*nr_fds = 0;
	do
		n = recvmsg(ls->conn_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k && *nr_fds < LPSOCK_MAX_FDS; i++)
				memcpy(&fds[(*nr_fds)++], CMSG_DATA(c) + i * sizeof(int),
				       sizeof(int));
		} else if (c->cmsg_type == SCM_CREDENTIALS && sender) {
			struct ucred uc;

			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
			*sender = uc.pid;
		}
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		lpsock_close_fds(fds, *nr_fds);
		*nr_fds = 0;
		return -EMSGSIZE;
	}
	return n;
}

static bool lpsock_seen(struct lpsock *ls, int32_t pid)
{
	for (size_t i = 0; i < ls->nr_seen; i++)
		if (ls->seen[i] == pid)
			return true;
	return false;
}

static int lpsock_remember(struct lpsock *ls, int32_t pid)
{
	if (ls->nr_seen == ls->cap_seen) {
		size_t cap = ls->cap_seen ? ls->cap_seen * 2 : 16;
		int32_t *n = realloc(ls->seen, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		ls->seen = n;
		ls->cap_seen = cap;
	}
	ls->seen[ls->nr_seen++] = pid;
	return 0;
}

/* Checks a record's pid against the images and earlier records. */
static int lpsock_check_pid(struct lpsock *ls, int32_t pid, bool zombie)
{
	const struct img_task *t;

	if (lpsock_seen(ls, pid)) {
		lpsock_fail(ls, -EBADMSG, "pid %" PRId32 " sent twice", pid);
		return -EBADMSG;
	}
	if (ls->imgs) {
		t = image_set_task(ls->imgs, pid);
		if (!t) {
			lpsock_fail(ls, -ESRCH, "%s pid %" PRId32 " is not in the images (%s)",
				    zombie ? "zombie" : "process", pid, ls->imgs->dir);
			return -ESRCH;
		}
		if (!zombie && !t->has_memory) {
			lpsock_fail(ls, -EBADMSG,
				    "pid %" PRId32 " sent a userfaultfd but has no memory images",
				    pid);
			return -EBADMSG;
		}
	}
	if (lpsock_remember(ls, pid) < 0) {
		lpsock_fail(ls, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* A whole header word is in: FIN, a zombie, or a pid whose fd follows. */
static int lpsock_header_done(struct lpsock *ls)
{
	uint32_t word;
	int32_t pid;

	memcpy(&word, ls->hdr, sizeof(word));
	ls->hdr_len = 0;
	if (word == LPSOCK_FIN) {
		log_info("restore finished: %" PRIu32 " processes, %" PRIu32 " zombies",
			 ls->nr_tasks, ls->nr_zombies);
		ls->state = LP_FINISHED;
		ls->fin = true;
		if (ls->ops->finished)
			ls->ops->finished(ls->arg);
		return 0;
	}
	memcpy(&pid, ls->hdr, sizeof(pid));
	if (pid == 0 || pid == INT32_MIN || pid > IMG_PID_MAX || pid < -IMG_PID_MAX) {
		lpsock_fail(ls, -EBADMSG, "garbage instead of a pid: %#" PRIx32, word);
		return -EBADMSG;
	}
	if (pid < 0) {
		if (lpsock_check_pid(ls, -pid, true) < 0)
			return -EBADMSG;
		ls->nr_zombies++;
		log_info("pid %" PRId32 ": zombie", -pid);
		if (ls->ops->zombie)
			ls->ops->zombie(ls->arg, -pid);
		return 0;
	}
	if (lpsock_check_pid(ls, pid, false) < 0)
		return -EBADMSG;
	ls->pid = pid;
	ls->state = LP_FD;
	return 0;
}

static int lpsock_fd_done(struct lpsock *ls, int *fds, size_t nr_fds, pid_t sender)
{
	int32_t pid = ls->pid;
	char what[128];
	int ret;

	if (nr_fds != 1) {
		lpsock_close_fds(fds, nr_fds);
		lpsock_fail(ls, -EBADMSG, "pid %" PRId32 ": expected one userfaultfd, got %zu fds",
			    pid, nr_fds);
		return -EBADMSG;
	}
	ret = uffd_check_fd(fds[0], what, sizeof(what));
	if (ret < 0) {
		close(fds[0]);
		lpsock_fail(ls, -EBADMSG,
			    "pid %" PRId32 ": the fd sent is not a userfaultfd but %s", pid, what);
		return -EBADMSG;
	}
	ls->state = LP_HEADER;
	ls->nr_tasks++;
	log_info("pid %" PRId32 ": userfaultfd received (fd %d, from process %d)", pid, fds[0],
		 (int)sender);
	if (!ls->ops->task) {
		close(fds[0]);
		return 0;
	}
	ret = ls->ops->task(ls->arg, pid, fds[0], sender);
	if (ret < 0) {
		lpsock_fail(ls, ret, "pid %" PRId32 ": rejected: %s", pid, strerror(-ret));
		return ret;
	}
	return 0;
}

/* Reads what is there; returns 1 to go on, 0 when no more data now, -1 when closed. */
static int lpsock_step(struct lpsock *ls)
{
	int fds[LPSOCK_MAX_FDS];
	size_t nr_fds = 0;
	pid_t sender = 0;
	uint8_t byte;
	ssize_t n;

	switch (ls->state) {
	case LP_HEADER:
		n = lpsock_recv(ls, ls->hdr + ls->hdr_len, sizeof(ls->hdr) - ls->hdr_len, fds,
				&nr_fds, NULL);
		break;
	case LP_FD:
		n = lpsock_recv(ls, &byte, 1, fds, &nr_fds, &sender);
		break;
	case LP_FINISHED:
		n = lpsock_recv(ls, &byte, 1, fds, &nr_fds, NULL);
		break;
	default:
		return -1;
	}
	if (n == -EAGAIN || n == -EWOULDBLOCK)
		return 0;
	if (n == -EMSGSIZE) {
		lpsock_fail(ls, -EBADMSG, "too many file descriptors in one message");
		return -1;
	}
	if (n < 0) {
		lpsock_fail(ls, (int)n, "read: %s", strerror((int)-n));
		return -1;
	}
	if (n == 0) {
		if (ls->state == LP_FINISHED) {
			log_debug("%s: restorer hung up after restore finished", ls->path);
			lpsock_close(ls);
			return -1;
		}
		lpsock_fail(ls, -EPIPE,
			    "restorer closed the connection before restore finished "
			    "(%s; %" PRIu32 " processes received)",
			    ls->state == LP_FD ? "a userfaultfd was announced but not sent"
			    : ls->hdr_len      ? "in the middle of a pid"
					       : "between records",
			    ls->nr_tasks);
		return -1;
	}
	if (ls->state != LP_FD && nr_fds) {
		lpsock_close_fds(fds, nr_fds);
		lpsock_fail(ls, -EBADMSG, "file descriptor where none belongs");
		return -1;
	}
	switch (ls->state) {
	case LP_HEADER:
		ls->hdr_len += (size_t)n;
		if (ls->hdr_len == sizeof(ls->hdr) && lpsock_header_done(ls) < 0)
			return -1;
		return 1;
	case LP_FD:
		return lpsock_fd_done(ls, fds, nr_fds, sender) < 0 ? -1 : 1;
	default:
		lpsock_fail(ls, -EBADMSG, "data after restore finished");
		return -1;
	}
}

static void lpsock_conn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lpsock *ls = arg;

	for (int i = 0; i < LPSOCK_BUDGET; i++) {
		/* The error callback may free ls: nothing of it is touched after a -1. */
		if (lpsock_step(ls) <= 0)
			return;
	}
}

static int lpsock_arm_conn(struct lpsock *ls)
{
	ls->ev = event_new(ls->base, ls->conn_fd, EV_READ | EV_PERSIST, lpsock_conn_cb, ls);
	if (!ls->ev || event_add(ls->ev, NULL) < 0)
		return -ENOMEM;
	ls->state = LP_HEADER;
	return 0;
}

int lpsock_peer_check(int fd, uid_t *uid)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	*uid = (uid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	*uid = uc.uid;
	return uc.uid == 0 || uc.uid == geteuid() ? 0 : -EPERM;
}

static void lpsock_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lpsock *ls = arg;
	int one = 1, conn, ret;
	uid_t uid;

	conn = accept4(ls->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (conn < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("%s: accept: %s", ls->path, strerror(errno));
		return;
	}
	/* Userfaultfds restored as root come only from root's criu: others wait outside. */
	ret = lpsock_peer_check(conn, &uid);
	if (ret < 0) {
		log_warn("%s: refusing a connection from uid %d: %s", ls->path, (int)uid,
			 ret == -EPERM ? "only root (or this agent's user) restores"
				       : strerror(-ret));
		close(conn);
		return;
	}
	/* Exactly one restore per daemon, as with criu lazy-pages. */
	event_free(ls->ev);
	ls->ev = NULL;
	close(ls->listen_fd);
	ls->listen_fd = -1;
	ls->conn_fd = conn;
	if (setsockopt(conn, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		log_warn("%s: SO_PASSCRED: %s: senders' pids unknown", ls->path, strerror(errno));
	log_info("%s: restorer connected", ls->path);
	if (lpsock_arm_conn(ls) < 0)
		lpsock_fail(ls, -ENOMEM, "cannot watch the connection");
}

int lpsock_start(struct lpsock *ls, struct event_base *base, const struct img_set *imgs,
		 const struct lpsock_ops *ops, void *arg)
{
	ls->base = base;
	ls->imgs = imgs;
	ls->ops = ops;
	ls->arg = arg;
	ls->ev = event_new(base, ls->listen_fd, EV_READ | EV_PERSIST, lpsock_accept_cb, ls);
	if (!ls->ev || event_add(ls->ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

int lpsock_attach(struct event_base *base, int fd, const struct img_set *imgs,
		  const struct lpsock_ops *ops, void *arg, struct lpsock **out)
{
	struct lpsock *ls = lpsock_new();
	int one = 1;

	if (!ls) {
		close(fd);
		return -ENOMEM;
	}
	snprintf(ls->path, sizeof(ls->path), "fd %d", fd);
	ls->base = base;
	ls->imgs = imgs;
	ls->ops = ops;
	ls->arg = arg;
	ls->conn_fd = fd;
	setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	if (lpsock_arm_conn(ls) < 0) {
		lpsock_free(ls);
		return -ENOMEM;
	}
	*out = ls;
	return 0;
}

const char *lpsock_path(const struct lpsock *ls)
{
	return ls->path;
}

bool lpsock_finished(const struct lpsock *ls)
{
	return ls->fin;
}

uint32_t lpsock_nr_tasks(const struct lpsock *ls)
{
	return ls->nr_tasks;
}

uint32_t lpsock_nr_zombies(const struct lpsock *ls)
{
	return ls->nr_zombies;
}
