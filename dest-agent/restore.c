// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * restore: the `criu restore --lazy-pages` of rdmig-dest --restore (see
 * restore.h): its command line, its pidfile and its verdict.  Spawning and
 * watching criu is common/criuproc.c.
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criuproc.h"
#include "log.h"
#include "util.h"

/*
 * Fixed arguments: "criu restore -D X -W X --lazy-pages -d -vN -o X --pidfile X",
 * or "runc --root X restore --lazy-pages --image-path X --work-path X --bundle X -d
 * --pid-file X ID", + NULL.
 */
#define RESTORE_FIXED_ARGS 17

struct restore {
	struct criuproc *proc;
	struct restore_ops ops;
	void *arg;
	char work[PATH_MAX];
	char pidfile[PATH_MAX];
	char log_path[PATH_MAX];
	char level[16]; /* "-vN" */
};

/* criu's --pidfile: the restored root task. */
static pid_t restore_read_pidfile(const char *path)
{
	char buf[32];
	uint64_t v;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
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

/* criu has exited: build the verdict and report it. */
static void restore_exited(void *arg, const struct criuproc_exit *e)
{
	struct restore *r = arg;
	struct restore_result res = {.ok = e->ok};

	/* A criu that could not be reaped has no status: reported as 255. */
	res.wstatus = e->err ? W_EXITCODE(255, 0) : e->wstatus;
	res.ms = e->elapsed_ns / 1000000;
	if (WIFEXITED(res.wstatus))
		snprintf(res.how, sizeof(res.how), "exited with status %d",
			 WEXITSTATUS(res.wstatus));
	else if (WIFSIGNALED(res.wstatus))
		snprintf(res.how, sizeof(res.how), "killed by signal %d", WTERMSIG(res.wstatus));
	else
		snprintf(res.how, sizeof(res.how), "ended with wait status %#x", res.wstatus);
	snprintf(res.log_path, sizeof(res.log_path), "%s", r->log_path);
	if (res.ok) {
		res.root_pid = restore_read_pidfile(r->pidfile);
	} else {
		snprintf(res.last_error, sizeof(res.last_error), "%s", e->log_tail);
		res.log_err = e->log_err;
	}
	if (r->ops.exited)
		r->ops.exited(r->arg, &res);
}

/* runc's restore of cfg->container into argv; returns the count (no NULL yet). */
static size_t restore_runc_argv(const char **argv, const struct restore_config *cfg,
				const char *images, struct restore *r)
{
	size_t i = 0;

	argv[i++] = cfg->runc && cfg->runc[0] ? cfg->runc : "runc";
	if (cfg->runc_root) {
		argv[i++] = "--root";
		argv[i++] = cfg->runc_root;
	}
	argv[i++] = "restore";
	argv[i++] = "--lazy-pages";
	argv[i++] = "--image-path";
	argv[i++] = images;
	argv[i++] = "--work-path";
	argv[i++] = r->work;
	argv[i++] = "--bundle";
	argv[i++] = cfg->bundle;
	argv[i++] = "-d";
	argv[i++] = "--pid-file";
	argv[i++] = r->pidfile;
	for (size_t k = 0; k < cfg->nr_extra; k++)
		argv[i++] = cfg->extra[k];
	argv[i++] = cfg->container;
	log_info("runc restore of container %s: %s%s%s restore --lazy-pages --image-path %s "
		 "--work-path %s --bundle %s -d --pid-file %s%s %s",
		 cfg->container, argv[0], cfg->runc_root ? " --root " : "",
		 cfg->runc_root ? cfg->runc_root : "", images, r->work, cfg->bundle, r->pidfile,
		 cfg->nr_extra ? " ..." : "", cfg->container);
	return i;
}

static int restore_spawn(struct restore *r, struct event_base *base,
			 const struct restore_config *cfg, const char *criu, const char *images)
{
	size_t argc = RESTORE_FIXED_ARGS + cfg->nr_extra, i = 0;
	struct criuproc_spec spec = {
	    .what = "criu restore",
	    .cwd = r->work,
	    .log_path = r->log_path,
	    /* It waits for our lazy-pages socket: never waited for unwatched. */
	    .flags = CRIUPROC_KILL_UNWATCHED,
	};
	const char **argv;
	int ret;

	argv = calloc(argc, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	if (cfg->container) {
		spec.what = "runc restore";
		i = restore_runc_argv(argv, cfg, images, r);
		goto spawn;
	}
	argv[i++] = criu;
	argv[i++] = "restore";
	argv[i++] = "-D";
	argv[i++] = images;
	argv[i++] = "-W";
	argv[i++] = r->work;
	argv[i++] = "--lazy-pages";
	argv[i++] = "-d";
	snprintf(r->level, sizeof(r->level), "-v%d",
		 cfg->log_level >= 0 ? cfg->log_level : CRIU_LOG_LEVEL_DEFAULT);
	argv[i++] = r->level;
	argv[i++] = "-o";
	argv[i++] = r->log_path;
	argv[i++] = "--pidfile";
	argv[i++] = r->pidfile;
	for (size_t k = 0; k < cfg->nr_extra; k++)
		argv[i++] = cfg->extra[k];
spawn:
	argv[i] = NULL;
	spec.argv = (char *const *)argv;
	ret = criuproc_spawn(base, &spec, restore_exited, r, &r->proc);
	if (ret < 0 || cfg->container)
		goto out;
	log_info("criu restore started (pid %d): %s restore -D %s -W %s --lazy-pages -d %s -o %s "
		 "--pidfile %s%s",
		 (int)criuproc_pid(r->proc), criu, images, r->work, r->level, r->log_path,
		 r->pidfile, cfg->nr_extra ? " ..." : "");
	for (size_t k = 0; k < cfg->nr_extra; k++)
		log_info("criu restore option: %s", cfg->extra[k]);
out:
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
	r->ops = *ops;
	r->arg = arg;
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
	ret = restore_spawn(r, base, cfg, cfg->criu && cfg->criu[0] ? cfg->criu : "criu", images);
	if (ret < 0)
		goto out;
	*out = r;
	return 0;
out:
	restore_free(r);
	return ret;
}

bool restore_running(const struct restore *r)
{
	return r && criuproc_running(r->proc);
}

int restore_wait(struct restore *r, int timeout_ms)
{
	int ret;

	if (!restore_running(r))
		return 0;
	ret = criuproc_wait(r->proc, timeout_ms);
	if (ret == -ETIMEDOUT) {
		log_err("criu restore (pid %d) still running %d ms after the migration ended: "
			"killing it",
			(int)criuproc_pid(r->proc), timeout_ms);
		criuproc_signal(r->proc, SIGKILL);
		criuproc_wait(r->proc, -1);
	}
	return ret;
}

void restore_free(struct restore *r)
{
	if (!r)
		return;
	criuproc_kill(r->proc);
	criuproc_free(r->proc);
	free(r);
}
