// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * criuproc: spawning and watching a criu child (see criuproc.h).
 */
#include "criuproc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

extern char **environ;

/* How much of the end of a log is searched for its last error. */
#define CRIUPROC_LOG_TAIL (64 * 1024)

struct criuproc {
	struct event *ev; /* the pidfd, in the loop */
	int pidfd;
	pid_t pid;
	bool reaped;
	uint64_t started_ns;
	unsigned int flags;
	char *log_path; /* or NULL */
	criuproc_exit_fn cb;
	void *arg;
	char what[64];
};

/* Copies the line [s, e) to buf, without criu's "(00.123456) " time stamp if asked. */
static void tail_copy(const char *s, const char *e, unsigned int flags, char *buf, size_t len)
{
	const char *p;

	if ((flags & CRIUPROC_TAIL_BARE) && *s == '(' &&
	    (p = memchr(s, ')', (size_t)(e - s))) != NULL && p + 1 < e && p[1] == ' ')
		s = p + 2;
	snprintf(buf, len, "%.*s", (int)(e - s), s);
}

/* Whether [s, e) is criu's closing line: "... FAILED." (dump, restore, pre-dump). */
static bool tail_is_summary(const char *s, const char *e)
{
	static const char tail[] = "FAILED.";
	size_t n = sizeof(tail) - 1;

	while (e > s && (e[-1] == ' ' || e[-1] == '\r'))
		e--;
	return (size_t)(e - s) >= n && memcmp(e - n, tail, n) == 0;
}

int criuproc_log_tail(const char *path, unsigned int flags, char *buf, size_t len)
{
	char *data = NULL, *s, *e, *last = NULL, *last_e = NULL;
	bool found = false;
	struct stat st;
	off_t off;
	ssize_t n;
	int fd, ret;

	buf[0] = '\0';
	/* criu wrote it in a directory the agent made: a link there is not its log. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	/* A failing criu at -v4 writes megabytes; its errors come at the end. */
	off = st.st_size > CRIUPROC_LOG_TAIL ? st.st_size - CRIUPROC_LOG_TAIL : 0;
	data = malloc(CRIUPROC_LOG_TAIL + 1);
	if (!data) {
		ret = -ENOMEM;
		goto out;
	}
	n = pread(fd, data, CRIUPROC_LOG_TAIL, off);
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	data[n] = '\0';
	for (s = data; *s; s = *e ? e + 1 : e) {
		e = strchrnul(s, '\n');
		if (e == s)
			continue;
		if (memmem(s, (size_t)(e - s), "Error", 5)) {
			/*
			 * criu closes with "Error (cr-dump.c:N): Dumping FAILED.",
			 * which says nothing of why: an error before it wins.
			 */
			if (!found || !tail_is_summary(s, e))
				tail_copy(s, e, flags, buf, len);
			found = true;
		} else {
			last = s;
			last_e = e;
		}
	}
	if (!found && (flags & CRIUPROC_TAIL_ANY) && last)
		tail_copy(last, last_e, flags, buf, len);
	ret = 0;
out:
	free(data);
	close(fd);
	return ret;
}

/* The child is reaped (err: waitpid failed): the verdict goes to the owner. */
static void criuproc_report(struct criuproc *p, int wstatus, int err)
{
	struct criuproc_exit e = {.pid = p->pid, .err = err, .status = -1};

	p->reaped = true;
	e.elapsed_ns = now_ns() - p->started_ns;
	if (!err) {
		e.wstatus = wstatus;
		if (WIFEXITED(wstatus)) {
			e.status = WEXITSTATUS(wstatus);
			e.ok = e.status == 0;
		} else if (WIFSIGNALED(wstatus)) {
			e.signal = WTERMSIG(wstatus);
		}
	}
	if (!e.ok && p->log_path)
		e.log_err =
		    criuproc_log_tail(p->log_path, p->flags, e.log_tail, sizeof(e.log_tail));
	/* Last: the callback may free p. */
	p->cb(p->arg, &e);
}

/* Reaps the child: 1 if it had exited (and was reported), 0 if not yet. */
static int criuproc_reap(struct criuproc *p, int flags)
{
	int wstatus = 0;
	pid_t w;

	do
		w = waitpid(p->pid, &wstatus, flags);
	while (w < 0 && errno == EINTR);
	if (w == 0)
		return 0;
	if (w < 0) {
		/* Not our child any more: nothing left to wait for. */
		log_err("%s (pid %d): waitpid: %s", p->what, (int)p->pid, strerror(errno));
		criuproc_report(p, 0, -errno);
		return 1;
	}
	criuproc_report(p, wstatus, 0);
	return 1;
}

static void criuproc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct criuproc *p = arg;

	if (criuproc_reap(p, WNOHANG) == 0 && event_add(p->ev, NULL) < 0)
		/* Readable without an exit: keep watching, if libevent lets us. */
		log_err("%s (pid %d): cannot watch it any more", p->what, (int)p->pid);
}

int criuproc_spawn(struct event_base *base, const struct criuproc_spec *s, criuproc_exit_fn cb,
		   void *arg, struct criuproc **out)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	struct criuproc *p;
	sigset_t none, def;
	pid_t pid;
	int ret;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pidfd = -1;
	p->flags = s->flags;
	p->cb = cb;
	p->arg = arg;
	snprintf(p->what, sizeof(p->what), "%s", s->what);
	if (s->log_path && !(p->log_path = strdup(s->log_path))) {
		ret = -ENOMEM;
		goto out;
	}
	ret = -posix_spawn_file_actions_init(&fa);
	if (ret < 0)
		goto setup;
	fa_init = true;
	ret = -posix_spawnattr_init(&attr);
	if (ret < 0)
		goto setup;
	attr_init = true;
	ret = -posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (ret == 0 && (s->flags & CRIUPROC_STDOUT_NULL))
		ret =
		    -posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	/* dup2 onto itself would keep O_CLOEXEC: the caller's fd is never 3 here. */
	if (ret == 0 && (s->flags & CRIUPROC_PASS_FD) && s->pass_fd == CRIUPROC_PASS_FD_NUM)
		ret = -EBADF;
	if (ret == 0 && (s->flags & CRIUPROC_PASS_FD))
		ret = -posix_spawn_file_actions_adddup2(&fa, s->pass_fd, CRIUPROC_PASS_FD_NUM);
	if (ret == 0 && (s->flags & CRIUPROC_CLOSE_FDS))
		ret = -posix_spawn_file_actions_addclosefrom_np(&fa, (s->flags & CRIUPROC_PASS_FD)
									 ? CRIUPROC_PASS_FD_NUM + 1
									 : STDERR_FILENO + 1);
	if (ret == 0 && s->cwd)
		ret = -posix_spawn_file_actions_addchdir_np(&fa, s->cwd);
	/* The agents ignore SIGPIPE; criu and what it restores must not inherit that. */
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGCHLD);
	if (ret == 0)
		ret = -posix_spawnattr_setsigmask(&attr, &none);
	if (ret == 0)
		ret = -posix_spawnattr_setsigdefault(&attr, &def);
	if (ret == 0)
		ret = -posix_spawnattr_setflags(&attr,
						POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
setup:
	if (ret < 0) {
		log_err("%s: cannot set up the spawn: %s", p->what, strerror(-ret));
		goto out;
	}
	p->started_ns = now_ns();
	ret = -posix_spawnp(&pid, s->argv[0], &fa, &attr, s->argv, environ);
	if (ret < 0) {
		log_err("%s: cannot run %s: %s", p->what, s->argv[0], strerror(-ret));
		goto out;
	}
	p->pid = pid;
	/* Works on a child that already exited: it is not reaped yet. */
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0) {
		ret = -errno;
		log_err("%s (pid %d): pidfd_open: %s", p->what, (int)pid, strerror(-ret));
		goto out;
	}
	p->ev = event_new(base, p->pidfd, EV_READ, criuproc_cb, p);
	if (!p->ev || event_add(p->ev, NULL) < 0) {
		ret = -ENOMEM;
		log_err("%s (pid %d): cannot watch it: %s", p->what, (int)pid, strerror(-ret));
		goto out;
	}
	*out = p;
	p = NULL;
	ret = 0;
out:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	if (p && p->pid > 0) {
		/* Started but not watched: never left unreaped. */
		if (s->flags & CRIUPROC_KILL_UNWATCHED) {
			criuproc_kill(p);
		} else {
			log_warn("%s (pid %d): waiting for it to exit", p->what, (int)p->pid);
			while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
				;
			p->reaped = true;
		}
	}
	criuproc_free(p);
	return ret;
}

pid_t criuproc_pid(const struct criuproc *p)
{
	return p ? p->pid : 0;
}

bool criuproc_running(const struct criuproc *p)
{
	return p && p->pid > 0 && !p->reaped;
}

int criuproc_signal(struct criuproc *p, int sig)
{
	/* Until it is reaped, its pid cannot name another process. */
	if (!criuproc_running(p))
		return -ESRCH;
	return kill(p->pid, sig) < 0 ? -errno : 0;
}

int criuproc_wait(struct criuproc *p, int timeout_ms)
{
	struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
	int ret;

	if (!criuproc_running(p))
		return 0;
	do
		ret = poll(&pfd, 1, timeout_ms);
	while (ret < 0 && errno == EINTR);
	if (ret == 0)
		return -ETIMEDOUT;
	if (ret < 0)
		log_warn("%s (pid %d): poll of its pidfd: %s; waiting for it", p->what, (int)p->pid,
			 strerror(errno));
	/* Reaped here, not in the loop: its event must not fire afterwards. */
	event_del(p->ev);
	criuproc_reap(p, 0);
	return 0;
}

void criuproc_kill(struct criuproc *p)
{
	if (!criuproc_running(p))
		return;
	log_err("%s (pid %d) still running at exit: killing it", p->what, (int)p->pid);
	/* Only SIGKILL cannot be caught or ignored: the owner is going away now. */
	kill(p->pid, SIGKILL);
	while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
		;
	p->reaped = true;
}

void criuproc_free(struct criuproc *p)
{
	if (!p)
		return;
	if (criuproc_running(p))
		log_warn("%s (pid %d) still running: left alone, not waited for", p->what,
			 (int)p->pid);
	if (p->ev)
		event_free(p->ev);
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p->log_path);
	free(p);
}
