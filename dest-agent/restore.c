// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * restore: spawning and watching `criu restore --lazy-pages` (see restore.h).
 */
#include "restore.h"

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
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "proctree.h"
#include "util.h"

extern char **environ;

/* Fixed arguments: "criu restore -D X -W X --lazy-pages -d -v4 -o X --pidfile X" + NULL. */
#define RESTORE_FIXED_ARGS 14
/* How much of the end of restore.log is searched for the last error. */
#define RESTORE_LOG_TAIL (64 * 1024)

struct restore {
	struct event_base *base;
	struct restore_ops ops;
	void *arg;
	pid_t pid;
	int pidfd;
	struct event *ev;
	uint64_t t_spawn;
	bool exited;
	char work[PATH_MAX];
	char pidfile[PATH_MAX];
	char log_path[PATH_MAX];
};

int restore_last_error(const char *path, char *buf, size_t len)
{
	struct stat sb;
	char *tail = NULL, *line, *save = NULL;
	off_t off;
	ssize_t n;
	int fd, ret = 0;

	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		ret = -errno;
		goto out;
	}
	off = sb.st_size > RESTORE_LOG_TAIL ? sb.st_size - RESTORE_LOG_TAIL : 0;
	tail = malloc(RESTORE_LOG_TAIL + 1);
	if (!tail) {
		ret = -ENOMEM;
		goto out;
	}
	n = pread(fd, tail, RESTORE_LOG_TAIL, off);
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	tail[n] = '\0';
	for (line = strtok_r(tail, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, "Error"))
			snprintf(buf, len, "%s", line);
out:
	free(tail);
	close(fd);
	return ret;
}

/* criu's --pidfile: the restored root task. */
static pid_t restore_read_pidfile(const char *path)
{
	char buf[32];
	uint64_t v;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_warn("criu pidfile %s: %s", path, strerror(errno));
		return 0;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		log_warn("criu pidfile %s: empty", path);
		return 0;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (parse_uint(buf, 1, INT32_MAX, &v) < 0) {
		log_warn("criu pidfile %s: not a pid: '%s'", path, buf);
		return 0;
	}
	return (pid_t)v;
}

/* criu has exited with wstatus: build the verdict and report it. */
static void restore_report(struct restore *r, int wstatus)
{
	struct restore_result res = {.wstatus = wstatus};

	r->exited = true;
	res.ms = (now_ns() - r->t_spawn) / 1000000;
	res.ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
	if (WIFEXITED(wstatus))
		snprintf(res.how, sizeof(res.how), "exited with status %d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(res.how, sizeof(res.how), "killed by signal %d", WTERMSIG(wstatus));
	else
		snprintf(res.how, sizeof(res.how), "ended with wait status %#x", wstatus);
	snprintf(res.log_path, sizeof(res.log_path), "%s", r->log_path);
	if (res.ok) {
		res.root_pid = restore_read_pidfile(r->pidfile);
	} else {
		res.log_err =
		    restore_last_error(r->log_path, res.last_error, sizeof(res.last_error));
	}
	if (r->ops.exited)
		r->ops.exited(r->arg, &res);
}

/* Reaps criu if it has exited: 1 if it had, 0 if not, or a negative errno. */
static int restore_reap(struct restore *r, int flags)
{
	int wstatus;
	pid_t p;

	do
		p = waitpid(r->pid, &wstatus, flags);
	while (p < 0 && errno == EINTR);
	if (p < 0) {
		log_err("criu restore (pid %d): waitpid: %s", (int)r->pid, strerror(errno));
		return -errno;
	}
	if (p == 0)
		return 0;
	restore_report(r, wstatus);
	return 1;
}

static void restore_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct restore *r = arg;
	int ret;

	ret = restore_reap(r, WNOHANG);
	if (ret == 0 && event_add(r->ev, NULL) < 0)
		log_err("criu restore (pid %d): cannot watch it any more", (int)r->pid);
	if (ret < 0)
		/* Not our child any more: nothing left to wait for. */
		restore_report(r, W_EXITCODE(255, 0));
}

static int restore_spawn(struct restore *r, const struct restore_config *cfg, const char *criu,
			 const char *images)
{
	size_t argc = RESTORE_FIXED_ARGS + cfg->nr_extra, i = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	const char **argv = NULL;
	int ret;

	argv = calloc(argc, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	argv[i++] = criu;
	argv[i++] = "restore";
	argv[i++] = "-D";
	argv[i++] = images;
	argv[i++] = "-W";
	argv[i++] = r->work;
	argv[i++] = "--lazy-pages";
	argv[i++] = "-d";
	argv[i++] = "-v4";
	argv[i++] = "-o";
	argv[i++] = r->log_path;
	argv[i++] = "--pidfile";
	argv[i++] = r->pidfile;
	for (size_t k = 0; k < cfg->nr_extra; k++)
		argv[i++] = cfg->extra[k];
	argv[i] = NULL;

	/* criu gets default signal dispositions (we ignore SIGPIPE), no mask, stdin /dev/null. */
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	ret = posix_spawnattr_setsigmask(&attr, &none);
	if (!ret)
		ret = posix_spawnattr_setsigdefault(&attr, &dfl);
	if (!ret)
		ret =
		    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (!ret)
		ret = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (!ret)
		ret = posix_spawn_file_actions_addchdir_np(&fa, r->work);
	if (ret) {
		ret = -ret;
		log_err("criu restore: spawn setup: %s", strerror(-ret));
		goto out;
	}
	r->t_spawn = now_ns();
	ret = posix_spawnp(&r->pid, criu, &fa, &attr, (char *const *)argv, environ);
	if (ret) {
		ret = -ret;
		r->pid = 0;
		log_err("cannot run %s: %s", criu, strerror(-ret));
		goto out;
	}
	log_info("criu restore started (pid %d): %s restore -D %s -W %s --lazy-pages -d -v4 -o %s "
		 "--pidfile %s%s",
		 (int)r->pid, criu, images, r->work, r->log_path, r->pidfile,
		 cfg->nr_extra ? " ..." : "");
	for (size_t k = 0; k < cfg->nr_extra; k++)
		log_info("criu restore option: %s", cfg->extra[k]);
out:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	free(argv);
	return ret;
}

int restore_start(struct event_base *base, const struct restore_config *cfg,
		  const struct restore_ops *ops, void *arg, struct restore **out)
{
	char images[PATH_MAX];
	struct restore *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->base = base;
	r->ops = *ops;
	r->arg = arg;
	r->pidfd = -1;
	/* criu runs in the work directory: every path it gets is absolute. */
	if (!realpath(cfg->images_dir, images)) {
		ret = -errno;
		log_err("images directory %s: %s", cfg->images_dir, strerror(-ret));
		goto out;
	}
	if (!realpath(cfg->work_dir, r->work)) {
		ret = -errno;
		log_err("work directory %s: %s", cfg->work_dir, strerror(-ret));
		goto out;
	}
	if ((size_t)snprintf(r->pidfile, sizeof(r->pidfile), "%s/restore.pid", r->work) >=
		sizeof(r->pidfile) ||
	    (size_t)snprintf(r->log_path, sizeof(r->log_path), "%s/restore.log", r->work) >=
		sizeof(r->log_path)) {
		ret = -ENAMETOOLONG;
		log_err("work directory %s: %s", r->work, strerror(-ret));
		goto out;
	}
	/* criu creates its pidfile exclusively. */
	if (unlink(r->pidfile) < 0 && errno != ENOENT) {
		ret = -errno;
		log_err("old criu pidfile %s: %s", r->pidfile, strerror(-ret));
		goto out;
	}
	ret = restore_spawn(r, cfg, cfg->criu && cfg->criu[0] ? cfg->criu : "criu", images);
	if (ret < 0)
		goto out;
	ret = proctree_pidfd_open(r->pid);
	if (ret < 0) {
		log_err("criu restore (pid %d): pidfd_open: %s", (int)r->pid, strerror(-ret));
		goto out;
	}
	r->pidfd = ret;
	r->ev = event_new(base, r->pidfd, EV_READ, restore_exit_cb, r);
	if (!r->ev || event_add(r->ev, NULL) < 0) {
		ret = -ENOMEM;
		log_err("criu restore (pid %d): cannot watch it: %s", (int)r->pid, strerror(-ret));
		goto out;
	}
	*out = r;
	return 0;
out:
	restore_free(r);
	return ret;
}

bool restore_running(const struct restore *r)
{
	return r && r->pid > 0 && !r->exited;
}

int restore_wait(struct restore *r, int timeout_ms)
{
	struct pollfd pfd = {.fd = r->pidfd, .events = POLLIN};
	int ret;

	if (!restore_running(r))
		return 0;
	do
		ret = poll(&pfd, 1, timeout_ms);
	while (ret < 0 && errno == EINTR);
	if (ret == 0) {
		log_err("criu restore (pid %d) still running %d ms after the migration ended: "
			"killing it",
			(int)r->pid, timeout_ms);
		kill(r->pid, SIGKILL);
	}
	if (restore_reap(r, 0) < 0)
		restore_report(r, W_EXITCODE(255, 0));
	return ret == 0 ? -ETIMEDOUT : 0;
}

void restore_free(struct restore *r)
{
	if (!r)
		return;
	if (restore_running(r)) {
		log_err("criu restore (pid %d) still running at exit: killing it", (int)r->pid);
		kill(r->pid, SIGKILL);
		while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (r->ev)
		event_free(r->ev);
	if (r->pidfd >= 0)
		close(r->pidfd);
	free(r);
}
