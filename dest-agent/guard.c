// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * guard: the process that holds duplicates of the userfaultfds so that a
 * dead rdmig-dest means killed processes, never zero-filled ones.  See
 * guard.h.
 */
#include "guard.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proctree.h"

enum guard_op {
	GUARD_ADD = 1,
	GUARD_FORGET,
	GUARD_RELEASE,
};

/* One datagram; GUARD_ADD carries the uffd and, optionally, the pidfd. */
struct guard_msg {
	uint32_t op;
	uint32_t id;
	int32_t real_pid;
	uint32_t has_pidfd;
};

struct guard {
	pid_t pid;
	int sock;
};

/* ---- the guard process ---- */

struct guarded {
	uint32_t id;
	int uffd;
	int pidfd;
	pid_t real_pid;
};

struct guard_state {
	struct guarded *v;
	size_t nr, cap;
};

static void guarded_close(struct guarded *t)
{
	close(t->uffd);
	if (t->pidfd >= 0)
		close(t->pidfd);
}

static void guard_child_add(struct guard_state *s, const struct guard_msg *m, int uffd, int pidfd)
{
	if (s->nr == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct guarded *v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			/* Holding nothing would be worse than holding without a record. */
			log_err("guard: out of memory: task %" PRIu32 " (process %d) not guarded",
				m->id, (int)m->real_pid);
			close(uffd);
			if (pidfd >= 0)
				close(pidfd);
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->nr++] =
	    (struct guarded){.id = m->id, .uffd = uffd, .pidfd = pidfd, .real_pid = m->real_pid};
}

static void guard_child_forget(struct guard_state *s, uint32_t id)
{
	for (size_t i = 0; i < s->nr; i++) {
		if (s->v[i].id != id)
			continue;
		guarded_close(&s->v[i]);
		s->v[i] = s->v[--s->nr];
		return;
	}
}

/* Receives one message and up to two descriptors; returns bytes, 0 at EOF, or -errno. */
static ssize_t guard_child_recv(int sock, struct guard_msg *m, int fds[2], size_t *nr_fds)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c;
	ssize_t n;

	*nr_fds = 0;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (*nr_fds < 2)
				fds[(*nr_fds)++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

static void guard_child_kill_all(struct guard_state *s)
{
	for (size_t i = 0; i < s->nr; i++) {
		struct guarded *t = &s->v[i];
		int ret;

		if (t->pidfd < 0) {
			log_err(
			    "guard: rdmig-dest is gone; task %" PRIu32 " (process %d) has no "
			    "pidfd: it stays blocked on its missing pages until the guard exits",
			    t->id, (int)t->real_pid);
			continue;
		}
		ret = proctree_kill(t->pidfd, t->real_pid);
		if (ret > 0)
			log_err("guard: rdmig-dest is gone with pages missing: killed process %d "
				"and %d descendant(s) (task %" PRIu32 ")",
				(int)t->real_pid, ret - 1, t->id);
		else if (ret != -ESRCH)
			log_err("guard: cannot kill process %d (task %" PRIu32 "): %s",
				(int)t->real_pid, t->id, strerror(-ret));
	}
}

static void guard_child_wait_pidfds(const struct guard_state *s)
{
	struct pollfd *p = calloc(s->nr, sizeof(*p));
	size_t n = 0;

	/*
	 * A SIGKILLed process is not gone the moment the signal is sent; its
	 * threads must not get a chance to run on zero pages, so hold the
	 * uffds until each has exited (a pidfd polls readable then), at most
	 * 5 s.
	 */
	if (!p)
		return;
	for (size_t i = 0; i < s->nr; i++)
		if (s->v[i].pidfd >= 0)
			p[n++] = (struct pollfd){.fd = s->v[i].pidfd, .events = POLLIN};
	for (int tries = 0; tries < 50; tries++) {
		size_t left = 0;

		if (poll(p, n, 100) < 0 && errno != EINTR)
			break;
		for (size_t i = 0; i < n; i++) {
			if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
				p[i].fd = -1; /* poll ignores negative fds */
			else if (p[i].fd >= 0)
				left++;
		}
		if (!left)
			break;
	}
	free(p);
}

static void __attribute__((noreturn)) guard_child_main(int sock)
{
	struct guard_state s = {0};
	bool released = false, unguarded = false;

	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct guard_msg m;
		int fds[2];
		size_t nr_fds;
		ssize_t n = guard_child_recv(sock, &m, fds, &nr_fds);

		if (n <= 0)
			break;
		if ((size_t)n != sizeof(m)) {
			for (size_t i = 0; i < nr_fds; i++)
				close(fds[i]);
			continue;
		}
		if (m.op == GUARD_ADD && nr_fds == 1u + !!m.has_pidfd) {
			guard_child_add(&s, &m, fds[0], m.has_pidfd ? fds[1] : -1);
			continue;
		}
		for (size_t i = 0; i < nr_fds; i++)
			close(fds[i]);
		if (m.op == GUARD_FORGET) {
			guard_child_forget(&s, m.id);
		} else if (m.op == GUARD_RELEASE) {
			released = true;
			break;
		} else if (m.op == GUARD_ADD) {
			unguarded = true;
		}
	}
	if (!released && s.nr) {
		guard_child_kill_all(&s);
		guard_child_wait_pidfds(&s);
		for (size_t i = 0; i < s.nr; i++)
			if (s.v[i].pidfd < 0)
				pause(); /* never returns: keeps the uffds, and their threads
					    blocked */
	}
	if (unguarded)
		log_err("guard: a task was handed over without its userfaultfd");
	for (size_t i = 0; i < s.nr; i++)
		guarded_close(&s.v[i]);
	free(s.v);
	_exit(released ? 0 : 1);
}

/* ---- rdmig-dest's side ---- */

int guard_start(struct guard **out)
{
	struct guard *g = calloc(1, sizeof(*g));
	int sv[2], ret;

	if (!g)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		log_err("guard: socketpair: %s", strerror(-ret));
		goto out;
	}
	g->pid = fork();
	if (g->pid < 0) {
		ret = -errno;
		log_err("guard: fork: %s", strerror(-ret));
		close(sv[0]);
		close(sv[1]);
		goto out;
	}
	if (g->pid == 0) {
		/* Only the socket and stderr: the guard must not pin listeners or files. */
		if (dup2(sv[1], 3) < 0)
			_exit(1);
		close_range(4, ~0U, 0);
		close(STDIN_FILENO);
		close(STDOUT_FILENO);
		guard_child_main(3);
	}
	close(sv[1]);
	g->sock = sv[0];
	*out = g;
	log_debug("guard: process %d holds the userfaultfds' duplicates", (int)g->pid);
	return 0;
out:
	free(g);
	return ret;
}

static int guard_send(struct guard *g, const struct guard_msg *m, const int *fds, size_t nr_fds)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (!g)
		return -EBADF;
	if (nr_fds) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nr_fds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nr_fds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nr_fds * sizeof(int));
	}
	do
		n = sendmsg(g->sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*m) ? 0 : -EIO;
}

int guard_add(struct guard *g, uint32_t id, int uffd, int pidfd, pid_t real_pid)
{
	struct guard_msg m = {
	    .op = GUARD_ADD, .id = id, .real_pid = real_pid, .has_pidfd = pidfd >= 0};
	int fds[2] = {uffd, pidfd};
	int ret = guard_send(g, &m, fds, pidfd >= 0 ? 2 : 1);

	if (ret < 0)
		log_err("guard: task %" PRIu32 " (process %d) is not guarded: %s; if rdmig-dest "
			"dies it reads zeros",
			id, (int)real_pid, strerror(-ret));
	return ret;
}

int guard_forget(struct guard *g, uint32_t id)
{
	struct guard_msg m = {.op = GUARD_FORGET, .id = id};

	return guard_send(g, &m, NULL, 0);
}

int guard_release(struct guard *g)
{
	struct guard_msg m = {.op = GUARD_RELEASE};

	return guard_send(g, &m, NULL, 0);
}

void guard_free(struct guard *g)
{
	struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};

	if (!g)
		return;
	close(g->sock);
	/* It exits at once after a release; bounded, it is reparented otherwise. */
	for (int i = 0; i < 200; i++) {
		pid_t r = waitpid(g->pid, NULL, WNOHANG);

		if (r == g->pid || (r < 0 && errno != EINTR))
			break;
		nanosleep(&ts, NULL);
	}
	free(g);
}
