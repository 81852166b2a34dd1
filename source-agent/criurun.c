// SPDX-License-Identifier: GPL-2.0-or-later
#include "criurun.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "log.h"

int src_criu_argv_add(struct src_criu_argv *a, const char *s)
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
	snprintf(a->level, sizeof(a->level), "-v%d",
		 o->log_level >= 0 ? o->log_level : CRIU_LOG_LEVEL_DEFAULT);
	ret |= src_criu_argv_add(a, criu);
	if (verb == SRC_CRIU_DUMP || verb == SRC_CRIU_PREDUMP) {
		ret |= src_criu_argv_add(a, verb == SRC_CRIU_DUMP ? "dump" : "pre-dump");
		ret |= src_criu_argv_add(a, "-t");
		ret |= src_criu_argv_add(a, a->pid);
	} else {
		ret |= src_criu_argv_add(a, "restore");
	}
	ret |= src_criu_argv_add(a, "-D");
	ret |= src_criu_argv_add(a, dir);
	if (verb == SRC_CRIU_RESTORE)
		ret |= src_criu_argv_add(a, "-d");
	ret |= src_criu_argv_add(a, a->level);
	ret |= src_criu_argv_add(a, "-o");
	ret |= src_criu_argv_add(a, log);
	ret |= src_criu_argv_flags(a, o);
	if (o->link_remap)
		ret |= src_criu_argv_add(a, "--link-remap");
	if (o->manage_cgroups[0]) {
		snprintf(a->cgroups, sizeof(a->cgroups), "--manage-cgroups=%s", o->manage_cgroups);
		ret |= src_criu_argv_add(a, a->cgroups);
	}
	if (verb == SRC_CRIU_DUMP && o->leave_running)
		ret |= src_criu_argv_add(a, "--leave-running");
	return ret ? -E2BIG : 0;
}

int src_criu_argv_track(struct src_criu_argv *a, const char *prev)
{
	int ret = src_criu_argv_add(a, "--track-mem");

	if (prev) {
		ret |= src_criu_argv_add(a, "--prev-images-dir");
		ret |= src_criu_argv_add(a, prev);
	}
	return ret ? -E2BIG : 0;
}

int src_criu_argv_flags(struct src_criu_argv *a, const struct src_criu_opts *o)
{
	int ret = 0;

	if (o->shell_job)
		ret |= src_criu_argv_add(a, "--shell-job");
	if (o->tcp_established)
		ret |= src_criu_argv_add(a, "--tcp-established");
	if (o->ext_unix_sk)
		ret |= src_criu_argv_add(a, "--ext-unix-sk");
	if (o->file_locks)
		ret |= src_criu_argv_add(a, "--file-locks");
	return ret ? -E2BIG : 0;
}

int src_criu_argv_lazy(struct src_criu_argv *a, int port)
{
	int ret = 0;

	if (port <= 0 || port > 65535)
		return -EINVAL;
	snprintf(a->port, sizeof(a->port), "%d", port);
	snprintf(a->status_fd, sizeof(a->status_fd), "%d", CRIUPROC_PASS_FD_NUM);
	ret |= src_criu_argv_add(a, "--lazy-pages");
	ret |= src_criu_argv_add(a, "--leave-stopped");
	ret |= src_criu_argv_add(a, "--address");
	ret |= src_criu_argv_add(a, "127.0.0.1");
	ret |= src_criu_argv_add(a, "--port");
	ret |= src_criu_argv_add(a, a->port);
	ret |= src_criu_argv_add(a, "--status-fd");
	ret |= src_criu_argv_add(a, a->status_fd);
	return ret ? -E2BIG : 0;
}

int src_criu_start(struct event_base *base, const char *what, const struct src_criu_argv *av,
		   const char *dir, const char *log, criuproc_exit_fn cb, void *arg,
		   struct criuproc **out)
{
	return src_criu_start_status(base, what, av, dir, log, -1, cb, arg, out);
}

int src_criu_start_status(struct event_base *base, const char *what, const struct src_criu_argv *av,
			  const char *dir, const char *log, int status_fd, criuproc_exit_fn cb,
			  void *arg, struct criuproc **out)
{
	char path[4096];
	struct criuproc_spec spec = {
	    .what = what,
	    .argv = av->v,
	    .cwd = dir,
	    .log_path = path,
	    .flags =
		CRIUPROC_STDOUT_NULL | CRIUPROC_CLOSE_FDS | CRIUPROC_TAIL_BARE | CRIUPROC_TAIL_ANY,
	    .pass_fd = status_fd,
	};
	int ret;

	if (status_fd >= 0)
		spec.flags |= CRIUPROC_PASS_FD;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, log) >= sizeof(path))
		return -ENAMETOOLONG;
	ret = criuproc_spawn(base, &spec, cb, arg, out);
	if (ret == 0)
		log_info("%s: started %s (pid %d)", what, av->v[0], (int)criuproc_pid(*out));
	return ret;
}

void src_criu_status_str(const struct criuproc_exit *e, char *buf, size_t len)
{
	/* A criu that could not be reaped has no status: reported as 127, as by a shell. */
	int wstatus = e->err ? W_EXITCODE(127, 0) : e->wstatus;

	if (WIFEXITED(wstatus))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(wstatus));
	else
		snprintf(buf, len, "wait status 0x%x", (unsigned int)wstatus);
}
