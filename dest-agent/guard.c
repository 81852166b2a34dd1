// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * guard: the process that holds duplicates of the userfaultfds so that a
 * dead rdmig-dest means waiting (for a new worker), stopped or killed
 * processes, never zero-filled ones.  See guard.h.
 */
#include "guard.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
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
#include "util.h"

enum guard_op {
	GUARD_ADD = 1, /* worker -> guard: uffd [+ pidfd] */
	GUARD_FORGET,
	GUARD_RELEASE,
	GUARD_EVENT, /* worker -> guard: a layout change */
	GUARD_TAKE,  /* new worker -> guard, on the takeover channel: its socket */
	GUARD_TASK,  /* guard -> new worker: uffd [+ pidfd], then its events */
	GUARD_END,   /* guard -> new worker: count tasks sent (or refused) */
};

#define GUARD_HAS_PIDFD	     0x1u
#define GUARD_PIDFD_OWN	     0x2u
#define GUARD_REFUSED	     0x4u /* GUARD_END: a worker still lives */
#define GUARD_LAYOUT_UNKNOWN 0x8u /* GUARD_TASK: an event was lost (no memory) */

/* One datagram; GUARD_ADD and GUARD_TASK carry the uffd and, optionally, the pidfd. */
struct guard_msg {
	uint32_t op;
	uint32_t id;
	uint32_t parent_id;
	int32_t pid;
	int32_t real_pid;
	uint32_t flags;
	uint32_t kind;	/* GUARD_EVENT, GUARD_TASK's events */
	uint32_t count; /* GUARD_TASK: events that follow; GUARD_END: tasks sent */
	uint64_t from, to, len;
};

struct guard {
	pid_t pid; /* 0: not our child (taken over) */
	int sock;
};

/* Sends m with up to two descriptors; flags as sendmsg's.  0 or -errno. */
static int guard_sendmsg(int sock, const struct guard_msg *m, const int *fds, size_t nr_fds,
			 int flags)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

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
		n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*m) ? 0 : -EIO;
}

/* Receives one message and up to two descriptors; returns bytes, 0 at EOF, or -errno. */
static ssize_t guard_recvmsg(int sock, struct guard_msg *m, int fds[2], size_t *nr_fds)
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
	if (n > 0 && (size_t)n != sizeof(*m)) {
		for (size_t i = 0; i < *nr_fds; i++)
			close(fds[i]);
		*nr_fds = 0;
		return -EPROTO;
	}
	return n;
}

static void guard_close_fds(const int *fds, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		close(fds[i]);
}

/* ---- the guard process ---- */

struct guarded {
	uint32_t id;
	uint32_t parent_id;
	int32_t pid;
	pid_t real_pid;
	int uffd;
	int pidfd;
	bool pidfd_own;
	bool layout_unknown;
	struct uffd_layout *ev;
	size_t nr_ev, cap_ev;
};

struct guard_state {
	struct guarded *v;
	size_t nr, cap;
	int sock;	     /* the worker's; -1 while orphaned */
	int tk;		     /* the takeover channel; -1: none (one-shot) or closed */
	bool serve;	     /* started with a takeover channel */
	unsigned int wait_s; /* for a new worker; 0: as long as the channel is open */
	uint64_t orphan_ns;  /* the worker died; 0: it lives */
};

static void guarded_close(struct guarded *t)
{
	close(t->uffd);
	if (t->pidfd >= 0)
		close(t->pidfd);
	free(t->ev);
}

static struct guarded *guard_child_find(struct guard_state *s, uint32_t id)
{
	for (size_t i = 0; i < s->nr; i++)
		if (s->v[i].id == id)
			return &s->v[i];
	return NULL;
}

static int guard_child_push_event(struct guarded *t, const struct uffd_layout *ev)
{
	if (t->nr_ev == t->cap_ev) {
		size_t cap = t->cap_ev ? t->cap_ev * 2 : 8;
		struct uffd_layout *v = realloc(t->ev, cap * sizeof(*v));

		if (!v) {
			t->layout_unknown = true;
			return -ENOMEM;
		}
		t->ev = v;
		t->cap_ev = cap;
	}
	t->ev[t->nr_ev++] = *ev;
	return 0;
}

/* A forked child starts with its parent's layout changes. */
static void guard_child_inherit(struct guard_state *s, struct guarded *t)
{
	const struct guarded *p = t->parent_id ? guard_child_find(s, t->parent_id) : NULL;

	if (!p)
		return;
	t->layout_unknown = p->layout_unknown;
	for (size_t i = 0; i < p->nr_ev; i++)
		if (guard_child_push_event(t, &p->ev[i]) < 0)
			break;
}

static void guard_child_add(struct guard_state *s, const struct guard_msg *m, int uffd, int pidfd)
{
	struct guarded *t = guard_child_find(s, m->id);

	if (t) {
		/* A new worker re-adds a task it took over: the same files, its own ids. */
		close(t->uffd);
		if (t->pidfd >= 0)
			close(t->pidfd);
		t->uffd = uffd;
		t->pidfd = pidfd;
		return;
	}
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
	t = &s->v[s->nr++];
	*t = (struct guarded){.id = m->id,
			      .parent_id = m->parent_id,
			      .pid = m->pid,
			      .real_pid = m->real_pid,
			      .uffd = uffd,
			      .pidfd = pidfd,
			      .pidfd_own = m->flags & GUARD_PIDFD_OWN};
	guard_child_inherit(s, t);
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

static void guard_child_event(struct guard_state *s, const struct guard_msg *m)
{
	struct guarded *t = guard_child_find(s, m->id);
	struct uffd_layout ev = {.kind = m->kind, .from = m->from, .to = m->to, .len = m->len};

	if (t && guard_child_push_event(t, &ev) < 0)
		log_err("guard: out of memory: task %" PRIu32 " (process %d): a layout change "
			"is lost; a worker taking over stops it instead of serving it",
			t->id, (int)t->real_pid);
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

static void guard_child_stop_all(struct guard_state *s, const char *why)
{
	for (size_t i = 0; i < s->nr; i++) {
		struct guarded *t = &s->v[i];
		int ret = t->pidfd >= 0 ? proctree_stop(t->pidfd, t->real_pid) : -ENOENT;

		if (ret > 0)
			log_err("guard: %s: stopped process %d and %d descendant(s) (SIGSTOP, task "
				"%" PRIu32
				"); their userfaultfds are kept, the checkpoint stays on "
				"the source",
				why, (int)t->real_pid, ret - 1, t->id);
		else if (ret != -ESRCH)
			log_err("guard: %s: cannot stop process %d (task %" PRIu32 "): %s; its "
				"threads that need pages stay blocked",
				why, (int)t->real_pid, t->id,
				ret == -ENOENT ? "no pidfd" : strerror(-ret));
	}
}

/*
 * Holds the uffds until every process with a pidfd has exited (its pidfd
 * polls readable then), at most max_polls x 100 ms (< 0: for ever).
 */
static void guard_child_wait_pidfds(const struct guard_state *s, int max_polls)
{
	struct pollfd *p = calloc(s->nr, sizeof(*p));
	size_t n = 0;

	if (!p)
		return;
	for (size_t i = 0; i < s->nr; i++)
		if (s->v[i].pidfd >= 0)
			p[n++] = (struct pollfd){.fd = s->v[i].pidfd, .events = POLLIN};
	for (int tries = 0; max_polls < 0 || tries < max_polls; tries++) {
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

/* Processes without a pidfd can only be held: the guard then never exits. */
static void guard_child_hold_unstoppable(const struct guard_state *s)
{
	for (size_t i = 0; i < s->nr; i++)
		if (s->v[i].pidfd < 0)
			for (;;)
				pause();
}

/* Every task and its events to a new worker; 0 or -errno (it is then not served). */
static int guard_child_hand_over(struct guard_state *s, int sock)
{
	struct guard_msg m;
	int ret;

	for (size_t i = 0; i < s->nr; i++) {
		const struct guarded *t = &s->v[i];
		int fds[2] = {t->uffd, t->pidfd};

		m = (struct guard_msg){.op = GUARD_TASK,
				       .id = t->id,
				       .parent_id = t->parent_id,
				       .pid = t->pid,
				       .real_pid = t->real_pid,
				       .count = (uint32_t)t->nr_ev};
		m.flags = (t->pidfd >= 0 ? GUARD_HAS_PIDFD : 0) |
			  (t->pidfd_own ? GUARD_PIDFD_OWN : 0) |
			  (t->layout_unknown ? GUARD_LAYOUT_UNKNOWN : 0);
		ret = guard_sendmsg(sock, &m, fds, t->pidfd >= 0 ? 2 : 1, 0);
		for (size_t k = 0; ret == 0 && k < t->nr_ev; k++) {
			m = (struct guard_msg){.op = GUARD_EVENT,
					       .id = t->id,
					       .kind = t->ev[k].kind,
					       .from = t->ev[k].from,
					       .to = t->ev[k].to,
					       .len = t->ev[k].len};
			ret = guard_sendmsg(sock, &m, NULL, 0, 0);
		}
		if (ret < 0)
			return ret;
	}
	m = (struct guard_msg){.op = GUARD_END, .count = (uint32_t)s->nr};
	return guard_sendmsg(sock, &m, NULL, 0, 0);
}

/* A message from the worker: 1 after a release, -1 at its end, 0 otherwise. */
static int guard_child_from_worker(struct guard_state *s)
{
	struct guard_msg m;
	int fds[2];
	size_t nr_fds;
	ssize_t n = guard_recvmsg(s->sock, &m, fds, &nr_fds);

	if (n == -EPROTO || n == -EAGAIN)
		return 0;
	if (n <= 0)
		return -1;
	if (m.op == GUARD_ADD && nr_fds == 1u + !!(m.flags & GUARD_HAS_PIDFD)) {
		guard_child_add(s, &m, fds[0], (m.flags & GUARD_HAS_PIDFD) ? fds[1] : -1);
		return 0;
	}
	guard_close_fds(fds, nr_fds);
	switch (m.op) {
	case GUARD_FORGET:
		guard_child_forget(s, m.id);
		break;
	case GUARD_EVENT:
		guard_child_event(s, &m);
		break;
	case GUARD_RELEASE:
		return 1;
	case GUARD_ADD:
		log_err("guard: task %" PRIu32 " was handed over without its userfaultfd", m.id);
		break;
	}
	return 0;
}

/* A message on the takeover channel: -1 once it is closed, 0 otherwise. */
static int guard_child_from_channel(struct guard_state *s)
{
	struct guard_msg m;
	int fds[2];
	size_t nr_fds;
	ssize_t n = guard_recvmsg(s->tk, &m, fds, &nr_fds);

	if (n == -EPROTO || n == -EAGAIN)
		return 0;
	if (n <= 0)
		return -1;
	if (m.op != GUARD_TAKE || nr_fds != 1) {
		guard_close_fds(fds, nr_fds);
		return 0;
	}
	if (s->sock >= 0) {
		/* Two workers would serve the same processes. */
		m = (struct guard_msg){.op = GUARD_END, .flags = GUARD_REFUSED};
		guard_sendmsg(fds[0], &m, NULL, 0, MSG_DONTWAIT);
		log_warn("guard: a new worker asked to take over while the worker lives: refused");
		close(fds[0]);
		return 0;
	}
	if (guard_child_hand_over(s, fds[0]) < 0) {
		log_err("guard: the new worker did not take the %zu task(s); still waiting", s->nr);
		close(fds[0]);
		return 0;
	}
	log_warn("guard: a new worker took over %zu task(s) after %.1f s", s->nr,
		 (double)(now_ns() - s->orphan_ns) / 1e9);
	s->sock = fds[0];
	s->orphan_ns = 0;
	return 0;
}

/* How long poll() may sleep: until the wait for a new worker ends, or for ever. */
static int guard_child_timeout(const struct guard_state *s)
{
	uint64_t end, now = now_ns();

	if (!s->orphan_ns || !s->wait_s)
		return -1;
	end = s->orphan_ns + (uint64_t)s->wait_s * 1000000000ull;
	return now >= end ? 0 : (int)((end - now) / 1000000) + 1;
}

static void __attribute__((noreturn)) guard_child_main(int sock, int tk, unsigned int wait_s)
{
	struct guard_state s = {.sock = sock, .tk = tk, .serve = tk >= 0, .wait_s = wait_s};
	bool released = false;
	const char *stop_why = NULL;

	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct pollfd p[2] = {{.fd = s.sock, .events = POLLIN},
				      {.fd = s.tk, .events = POLLIN}};
		int n = poll(p, 2, guard_child_timeout(&s));

		if (n < 0 && errno != EINTR)
			break;
		if (n == 0) {
			stop_why = "no worker took over within the pause limit";
			break;
		}
		/* The worker's end first: its exit precedes the new worker's request. */
		if (s.sock >= 0 && p[0].revents) {
			int r = guard_child_from_worker(&s);

			if (r > 0) {
				released = true;
				break;
			}
			if (r < 0) {
				close(s.sock);
				s.sock = -1;
				if (!s.nr)
					break;
				if (!s.serve)
					break; /* one-shot: killed below */
				if (s.tk < 0) {
					stop_why = "the worker is gone and the supervisor too";
					break;
				}
				s.orphan_ns = now_ns();
				log_warn(
				    "guard: the worker is gone with pages missing; %zu task(s) "
				    "wait in the kernel for a new worker (%s)",
				    s.nr, wait_s ? "up to the pause limit" : "no limit");
				continue;
			}
		}
		if (s.tk >= 0 && p[1].revents && guard_child_from_channel(&s) < 0) {
			close(s.tk);
			s.tk = -1;
			if (s.sock < 0) {
				stop_why = "the supervisor closed the takeover channel";
				break;
			}
		}
	}
	if (!released && s.nr) {
		if (!s.serve) {
			guard_child_kill_all(&s);
			guard_child_wait_pidfds(&s, 50);
		} else {
			guard_child_stop_all(&s, stop_why ? stop_why : "the guard fails");
			guard_child_wait_pidfds(&s, -1);
		}
		guard_child_hold_unstoppable(&s);
	}
	for (size_t i = 0; i < s.nr; i++)
		guarded_close(&s.v[i]);
	free(s.v);
	_exit(released ? 0 : 1);
}

/* ---- rdmig-dest's side ---- */

int guard_start(int takeover_fd, unsigned int wait_s, struct guard **out)
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
		/* Only the sockets and stderr: the guard must not pin listeners or files. */
		int tk = takeover_fd >= 0 ? fcntl(takeover_fd, F_DUPFD, 10) : -1;

		if (dup2(sv[1], 3) < 0 || (takeover_fd >= 0 && (tk < 0 || dup2(tk, 4) < 0)))
			_exit(1);
		close_range(takeover_fd >= 0 ? 5 : 4, ~0U, 0);
		close(STDIN_FILENO);
		close(STDOUT_FILENO);
		guard_child_main(3, takeover_fd >= 0 ? 4 : -1, wait_s);
	}
	close(sv[1]);
	g->sock = sv[0];
	*out = g;
	log_debug("guard: process %d holds the userfaultfds' duplicates%s", (int)g->pid,
		  takeover_fd >= 0 ? ", for a new worker if this one dies" : "");
	return 0;
out:
	free(g);
	return ret;
}

static int guard_send(struct guard *g, const struct guard_msg *m, const int *fds, size_t nr_fds)
{
	if (!g)
		return -EBADF;
	return guard_sendmsg(g->sock, m, fds, nr_fds, MSG_DONTWAIT);
}

int guard_add(struct guard *g, const struct guard_add_info *a, int uffd, int pidfd)
{
	struct guard_msg m = {.op = GUARD_ADD,
			      .id = a->id,
			      .parent_id = a->parent_id,
			      .pid = a->pid,
			      .real_pid = a->real_pid,
			      .flags = (pidfd >= 0 ? GUARD_HAS_PIDFD : 0) |
				       (a->pidfd_own ? GUARD_PIDFD_OWN : 0)};
	int fds[2] = {uffd, pidfd};
	int ret = guard_send(g, &m, fds, pidfd >= 0 ? 2 : 1);

	if (ret < 0)
		log_err("guard: task %" PRIu32 " (process %d) is not guarded: %s; if rdmig-dest "
			"dies it reads zeros",
			a->id, (int)a->real_pid, strerror(-ret));
	return ret;
}

int guard_event(struct guard *g, uint32_t id, const struct uffd_layout *ev)
{
	struct guard_msg m = {.op = GUARD_EVENT,
			      .id = id,
			      .kind = ev->kind,
			      .from = ev->from,
			      .to = ev->to,
			      .len = ev->len};
	int ret = guard_send(g, &m, NULL, 0);

	if (ret < 0)
		log_err("guard: task %" PRIu32 ": a layout change is not recorded: %s; a worker "
			"taking over could not rebuild it",
			id, strerror(-ret));
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

void guard_tasks_free(struct guard_task *tasks, size_t nr)
{
	for (size_t i = 0; tasks && i < nr; i++) {
		if (tasks[i].uffd >= 0)
			close(tasks[i].uffd);
		if (tasks[i].pidfd >= 0)
			close(tasks[i].pidfd);
		free(tasks[i].events);
	}
	free(tasks);
}

/* One GUARD_TASK or GUARD_EVENT into the list being built. */
static int guard_take_one(const struct guard_msg *m, const int *fds, size_t nr_fds,
			  struct guard_task **v, size_t *nr)
{
	struct guard_task *t;

	if (m->op == GUARD_EVENT) {
		struct uffd_layout *ev;

		t = *nr ? &(*v)[*nr - 1] : NULL;
		if (!t || t->id != m->id)
			return -EPROTO;
		ev = realloc(t->events, (t->nr_events + 1) * sizeof(*ev));
		if (!ev)
			return -ENOMEM;
		t->events = ev;
		ev[t->nr_events++] = (struct uffd_layout){
		    .kind = m->kind, .from = m->from, .to = m->to, .len = m->len};
		return 0;
	}
	if (m->op != GUARD_TASK || nr_fds != 1u + !!(m->flags & GUARD_HAS_PIDFD))
		return -EPROTO;
	t = realloc(*v, (*nr + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	*v = t;
	t = &t[(*nr)++];
	*t = (struct guard_task){.id = m->id,
				 .parent_id = m->parent_id,
				 .pid = m->pid,
				 .real_pid = m->real_pid,
				 .uffd = fds[0],
				 .pidfd = nr_fds > 1 ? fds[1] : -1,
				 .pidfd_own = m->flags & GUARD_PIDFD_OWN,
				 .layout_unknown = m->flags & GUARD_LAYOUT_UNKNOWN};
	return 0;
}

int guard_take(int takeover_fd, int timeout_ms, struct guard **out, struct guard_task **tasks,
	       size_t *nr)
{
	struct guard_msg m = {.op = GUARD_TAKE};
	struct guard_task *v = NULL;
	struct guard *g = NULL;
	size_t n = 0;
	int sv[2] = {-1, -1}, ret;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		goto out;
	}
	ret = guard_sendmsg(takeover_fd, &m, &sv[1], 1, MSG_DONTWAIT);
	close(sv[1]);
	if (ret < 0) {
		ret = ret == -EPIPE || ret == -ECONNRESET ? -ECONNREFUSED : ret;
		goto out;
	}
	for (;;) {
		struct pollfd p = {.fd = sv[0], .events = POLLIN};
		int fds[2];
		size_t nr_fds;
		ssize_t r;

		ret = poll(&p, 1, timeout_ms);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			ret = ret < 0 ? -errno : -ETIMEDOUT;
			goto out;
		}
		r = guard_recvmsg(sv[0], &m, fds, &nr_fds);
		if (r <= 0) {
			ret = r == 0 ? -ECONNREFUSED : (int)r;
			goto out;
		}
		if (m.op == GUARD_END) {
			ret = (m.flags & GUARD_REFUSED) ? -EBUSY : m.count == n ? 0 : -EPROTO;
			break;
		}
		ret = guard_take_one(&m, fds, nr_fds, &v, &n);
		if (ret < 0) {
			guard_close_fds(fds, nr_fds);
			goto out;
		}
	}
	if (ret < 0)
		goto out;
	g = calloc(1, sizeof(*g));
	if (!g) {
		ret = -ENOMEM;
		goto out;
	}
	g->sock = sv[0];
	sv[0] = -1;
	*out = g;
	*tasks = v;
	*nr = n;
	v = NULL;
	n = 0;
out:
	if (sv[0] >= 0)
		close(sv[0]);
	guard_tasks_free(v, n);
	return ret;
}

void guard_free(struct guard *g)
{
	struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};

	if (!g)
		return;
	close(g->sock);
	/* It exits at once after a release; bounded, it is reparented otherwise. */
	for (int i = 0; g->pid > 0 && i < 200; i++) {
		pid_t r = waitpid(g->pid, NULL, WNOHANG);

		if (r == g->pid || (r < 0 && errno != EINTR))
			break;
		nanosleep(&ts, NULL);
	}
	free(g);
}
