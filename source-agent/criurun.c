// SPDX-License-Identifier: GPL-2.0-or-later
#include "criurun.h"

#include <errno.h>
#include <fcntl.h>
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

struct src_criu_run {
	struct event *ev;
	int pidfd;
	pid_t pid; /* 0 once reaped */
	uint64_t started_ns;
	const char *what;
	src_criu_exit_fn cb;
	void *arg;
};

static int argv_add(struct src_criu_argv *a, const char *s)
{
	if (a->n >= SRC_CRIU_ARGV_MAX - 1)
		return -E2BIG;
	a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
	return 0;
}

int src_criu_argv_build(struct src_criu_argv *a, const char *criu, enum src_criu_verb verb,
			pid_t pid, const char *dir, const char *log, const struct src_criu_opts *o)
{
	int ret = 0;

	memset(a, 0, sizeof(*a));
	snprintf(a->pid, sizeof(a->pid), "%d", (int)pid);
	snprintf(a->level, sizeof(a->level), "-v%d", o->log_level >= 0 ? o->log_level : 4);
	ret |= argv_add(a, criu);
	if (verb == SRC_CRIU_DUMP) {
		ret |= argv_add(a, "dump");
		ret |= argv_add(a, "-t");
		ret |= argv_add(a, a->pid);
	} else {
		ret |= argv_add(a, "restore");
	}
	ret |= argv_add(a, "-D");
	ret |= argv_add(a, dir);
	if (verb == SRC_CRIU_RESTORE)
		ret |= argv_add(a, "-d");
	ret |= argv_add(a, a->level);
	ret |= argv_add(a, "-o");
	ret |= argv_add(a, log);
	if (o->shell_job)
		ret |= argv_add(a, "--shell-job");
	if (o->tcp_established)
		ret |= argv_add(a, "--tcp-established");
	if (o->ext_unix_sk)
		ret |= argv_add(a, "--ext-unix-sk");
	if (o->file_locks)
		ret |= argv_add(a, "--file-locks");
	if (o->link_remap)
		ret |= argv_add(a, "--link-remap");
	if (o->manage_cgroups[0]) {
		snprintf(a->cgroups, sizeof(a->cgroups), "--manage-cgroups=%s", o->manage_cgroups);
		ret |= argv_add(a, a->cgroups);
	}
	if (verb == SRC_CRIU_DUMP && o->leave_running)
		ret |= argv_add(a, "--leave-running");
	return ret ? -E2BIG : 0;
}

static void run_cb(evutil_socket_t fd, short what, void *arg)
{
	struct src_criu_run *r = arg;
	int wstatus = 0;
	pid_t p;

	(void)fd;
	(void)what;
	p = waitpid(r->pid, &wstatus, WNOHANG);
	if (p == 0) {
		/* Not an exit after all: keep watching. */
		if (event_add(r->ev, NULL) < 0)
			log_err("%s (pid %d): cannot watch it any more", r->what, (int)r->pid);
		return;
	}
	if (p < 0) {
		log_err("%s (pid %d): waitpid: %s", r->what, (int)r->pid, strerror(errno));
		wstatus = W_EXITCODE(127, 0);
	}
	r->pid = 0;
	/* Last: the callback may free r. */
	r->cb(r->arg, wstatus, now_ns() - r->started_ns);
}

int src_criu_spawn(struct event_base *base, const char *what, char *const argv[], const char *cwd,
		   src_criu_exit_fn cb, void *arg, struct src_criu_run **out)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct src_criu_run *r = NULL;
	bool fa_init = false, attr_init = false;
	sigset_t none, def;
	pid_t pid = 0;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r) {
		ret = -ENOMEM;
		goto out;
	}
	r->pidfd = -1;
	r->what = what;
	r->cb = cb;
	r->arg = arg;
	ret = -posix_spawn_file_actions_init(&fa);
	if (ret < 0)
		goto out;
	fa_init = true;
	ret = -posix_spawnattr_init(&attr);
	if (ret < 0)
		goto out;
	attr_init = true;
	ret = -posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (ret == 0)
		ret = -posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (ret == 0)
		ret = -posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (ret == 0 && cwd)
		ret = -posix_spawn_file_actions_addchdir_np(&fa, cwd);
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
	if (ret < 0) {
		log_err("%s: cannot set up the spawn: %s", what, strerror(-ret));
		goto out;
	}
	r->started_ns = now_ns();
	ret = -posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	if (ret < 0) {
		log_err("%s: cannot run %s: %s", what, argv[0], strerror(-ret));
		pid = 0;
		goto out;
	}
	r->pid = pid;
	/* Works on a child that already exited: it is not reaped yet. */
	r->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (r->pidfd < 0) {
		ret = -errno;
		log_err("%s (pid %d): pidfd_open: %s", what, (int)pid, strerror(-ret));
		goto out;
	}
	r->ev = event_new(base, r->pidfd, EV_READ, run_cb, r);
	if (!r->ev || event_add(r->ev, NULL) < 0) {
		ret = -ENOMEM;
		log_err("%s (pid %d): cannot watch it", what, (int)pid);
		goto out;
	}
	log_info("%s: started %s (pid %d)", what, argv[0], (int)pid);
	*out = r;
	r = NULL;
	ret = 0;
out:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	if (r && r->pid > 0) {
		/* Cannot watch it: wait for it rather than leave it unreaped. */
		log_warn("%s (pid %d): waiting for it to exit", what, (int)r->pid);
		waitpid(r->pid, NULL, 0);
		r->pid = 0;
	}
	src_criu_run_free(r);
	return ret;
}

pid_t src_criu_run_pid(const struct src_criu_run *r)
{
	return r ? r->pid : 0;
}

void src_criu_run_free(struct src_criu_run *r)
{
	if (!r)
		return;
	if (r->pid > 0)
		log_warn("%s (pid %d) still running: left alone, not waited for", r->what,
			 (int)r->pid);
	if (r->ev)
		event_free(r->ev);
	if (r->pidfd >= 0)
		close(r->pidfd);
	free(r);
}

void src_criu_status_str(int wstatus, char *buf, size_t len)
{
	if (WIFEXITED(wstatus))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(wstatus));
	else
		snprintf(buf, len, "wait status 0x%x", (unsigned int)wstatus);
}

/* Copies the line [s, e) to buf without its "(00.123456) " time stamp. */
static void tail_copy(const char *s, const char *e, char *buf, size_t len)
{
	const char *p;

	if (*s == '(' && (p = memchr(s, ')', (size_t)(e - s))) != NULL && p + 1 < e && p[1] == ' ')
		s = p + 2;
	snprintf(buf, len, "%.*s", (int)(e - s), s);
}

void src_criu_log_tail(const char *dir, const char *log, char *buf, size_t len)
{
	char path[4096], *data = NULL, *s, *e, *last = NULL, *last_e = NULL;
	const size_t max = 64 * 1024;
	struct stat st;
	off_t off;
	ssize_t n;
	int fd = -1;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", dir, log);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		goto out;
	off = st.st_size > (off_t)max ? st.st_size - (off_t)max : 0;
	data = malloc(max + 1);
	if (!data)
		goto out;
	n = pread(fd, data, max, off);
	if (n <= 0)
		goto out;
	data[n] = '\0';
	for (s = data; *s; s = *e ? e + 1 : e) {
		e = strchrnul(s, '\n');
		if (e == s)
			continue;
		if (memmem(s, (size_t)(e - s), "Error", 5)) {
			tail_copy(s, e, buf, len);
			last = NULL;
			continue;
		}
		last = s;
		last_e = e;
	}
	if (!buf[0] && last)
		tail_copy(last, last_e, buf, len);
out:
	free(data);
	if (fd >= 0)
		close(fd);
}
