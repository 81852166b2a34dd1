/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * restore: rdmig-dest running `criu restore --lazy-pages` itself (--restore).
 *
 * restore_start() spawns criu in the work directory once the lazy-pages
 * socket listens:
 *   criu restore -D IMAGES -W WORK --lazy-pages -d -vN -o restore.log
 *        --pidfile WORK/restore.pid [extra options]
 * through common/criuproc.h (posix_spawn, no shell, watched by a pidfd in
 * the event loop; criu inherits the agent's stdout and its fds that are
 * not close-on-exec, so --criu-opt may pass --inherit-fd).  When criu
 * exits, the exited callback gets the verdict: the time from spawn to
 * exit, the restored root pid (from criu's --pidfile) or, on failure, the
 * last "Error" line of restore.log.  After the loop, restore_wait() reaps
 * a criu still running (blocking, bounded; the loop is over by then).
 *
 * Threading: the event loop's thread only.
 *
 * Ownership: restore_free() kills and reaps a criu still running; call
 * it before freeing the event base.
 */
#ifndef RDMIG_RESTORE_H
#define RDMIG_RESTORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct restore;

struct restore_config {
	const char *criu; /* a path, or a name looked up in PATH (default "criu") */
	const char *images_dir;
	const char *work_dir;
	int log_level;		  /* criu's -v: 0..4; < 0: CRIU_LOG_LEVEL_DEFAULT */
	const char *const *extra; /* appended to criu's arguments */
	size_t nr_extra;
	/*
	 * A container (design.md §12): container set, the restore is
	 *   runc [--root R] restore --lazy-pages --image-path IMAGES
	 *        --work-path WORK --bundle B -d --pid-file WORK/restore.pid
	 *        [extra options] ID
	 * runc has criu log to WORK/restore.log and use the lazy-pages socket
	 * in WORK, as criu restore does; log_level does not apply (runc sets
	 * criu's), and extra are runc's options.
	 */
	const char *runc;      /* a path, or a name looked up in PATH (default "runc") */
	const char *container; /* its id, or NULL: criu restore */
	const char *bundle;    /* absolute; required with container */
	const char *runc_root; /* runc's --root, or NULL: runc's default */
};

struct restore_result {
	bool ok;	/* exited with status 0 */
	int wstatus;	/* as from waitpid() */
	uint64_t ms;	/* spawn to exit */
	pid_t root_pid; /* the restored root task; 0 if unknown */
	char how[64];	/* "exited with status N" / "killed by signal N" */
	char log_path[PATH_MAX];
	char last_error[512]; /* the last line of the log with "Error"; "" if none */
	int log_err;	      /* reading the log failed: a negative errno */
};

struct restore_ops {
	/* criu exited; called once, from the loop or from restore_wait(). */
	void (*exited)(void *arg, const struct restore_result *res);
};

/* Returns 0 or a negative errno (criu could not be started). */
int restore_start(struct event_base *base, const struct restore_config *cfg,
		  const struct restore_ops *ops, void *arg, struct restore **out);

/* True until the exited callback ran. */
bool restore_running(const struct restore *r);

/*
 * Blocks up to timeout_ms for criu to exit (then SIGKILLs it) and runs
 * the exited callback.  For after the event loop only.  Returns 0, or
 * -ETIMEDOUT if criu had to be killed.
 */
int restore_wait(struct restore *r, int timeout_ms);

void restore_free(struct restore *r);

#endif
