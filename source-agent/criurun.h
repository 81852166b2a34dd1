/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * criurun: the criu commands of the source agent (dump, and the restore of
 * a rollback): their command lines, how they are started, and the wording
 * of their results.
 *
 * A command runs through common/criuproc.h, from the event loop without
 * blocking it: posix_spawnp (no shell; stdin and stdout on /dev/null,
 * stderr the agent's, no other fd inherited) in the images directory,
 * watched through a pidfd; when criu exits the owner's callback gets its
 * status, how long it ran and, on failure, its log's last error line
 * without criu's time stamp (its last line when none has "Error").
 *
 * Threading: the event loop's thread only.
 */
#ifndef RDMIG_SRC_CRIURUN_H
#define RDMIG_SRC_CRIURUN_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "criuproc.h"

/* The criu options a migration was started with (docs/api.md, criu_opts). */
struct src_criu_opts {
	bool shell_job;
	bool tcp_established;
	bool ext_unix_sk;
	bool file_locks;
	bool link_remap;
	bool leave_running;	/* dump only */
	char manage_cgroups[8]; /* "" or soft/full/strict/ignore */
	int log_level;		/* -1: CRIU_LOG_LEVEL_DEFAULT */
};

enum src_criu_verb {
	SRC_CRIU_DUMP,	  /* criu dump -t PID -D DIR -o LOG */
	SRC_CRIU_RESTORE, /* criu restore -D DIR -d -o LOG */
	SRC_CRIU_PREDUMP, /* criu pre-dump -t PID -D DIR -o LOG (design.md §13) */
};

#define SRC_CRIU_ARGV_MAX 32

/* An argv for posix_spawnp; the strings point into it or at the caller's. */
struct src_criu_argv {
	char *v[SRC_CRIU_ARGV_MAX];
	int n;
	char pid[24];
	char level[16];
	char cgroups[40];
	char port[8];
	char status_fd[8];
};

/*
 * Builds "CRIU dump|restore ..." with the options that apply to the verb.
 * criu, dir and log must outlive *a.
 */
int src_criu_argv_build(struct src_criu_argv *a, const char *criu, enum src_criu_verb verb,
			pid_t pid, const char *dir, const char *log, const struct src_criu_opts *o);

/* Appends s (borrowed) to a; -E2BIG when full. */
int src_criu_argv_add(struct src_criu_argv *a, const char *s);

/*
 * Appends the flags criu and runc spell alike: --shell-job,
 * --tcp-established, --ext-unix-sk, --file-locks, as o asks.
 */
int src_criu_argv_flags(struct src_criu_argv *a, const struct src_criu_opts *o);

/*
 * Makes a pre-dump or dump one of a pre-copy chain (design.md §13):
 * --track-mem, and --prev-images-dir prev (borrowed; relative to the
 * dump's -D, criu's `parent` link) unless prev is NULL (the first round).
 */
int src_criu_argv_track(struct src_criu_argv *a, const char *prev);

/*
 * Makes the dump of a a lazy one (design.md §11): --lazy-pages with its page
 * server on 127.0.0.1:port (never a routable address: it serves the frozen
 * memory to whoever connects first, unauthenticated), --leave-stopped so
 * a success keeps the tasks for a rollback, and --status-fd on the fd
 * src_criu_start() passes as CRIUPROC_PASS_FD_NUM: its byte means the
 * images are written and the server listens.
 */
int src_criu_argv_lazy(struct src_criu_argv *a, int port);

/*
 * Starts av with dir as its working directory; log is criu's -o file in
 * dir, read for the failure's last error line.  what names the run in
 * logs (the migration id).  cb runs once, from the loop, after criu is
 * reaped, and may free the run.  Caller owns *out (criuproc_free(): a
 * criu still running is left alone, never killed midway).
 */
int src_criu_start(struct event_base *base, const char *what, const struct src_criu_argv *av,
		   const char *dir, const char *log, criuproc_exit_fn cb, void *arg,
		   struct criuproc **out);
/* The same, with status_fd (the caller's) as the child's --status-fd. */
int src_criu_start_status(struct event_base *base, const char *what, const struct src_criu_argv *av,
			  const char *dir, const char *log, int status_fd, criuproc_exit_fn cb,
			  void *arg, struct criuproc **out);

/* "exit status N", "killed by signal N" */
void src_criu_status_str(const struct criuproc_exit *e, char *buf, size_t len);

#endif
