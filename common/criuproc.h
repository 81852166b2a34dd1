/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * criuproc: one criu child run from an agent's event loop without blocking
 * it (rdmig-source's dump and rollback, rdmig-dest --restore).
 *
 * criuproc_spawn() starts argv with posix_spawnp (no shell; stdin on
 * /dev/null; signal mask empty and SIGPIPE, SIGINT, SIGTERM and SIGCHLD at
 * their defaults whatever the agent ignores) and watches it through a
 * pidfd read event: when criu exits, the child is reaped in the loop and
 * the exit callback gets its status, the signal that killed it and how
 * long it ran, plus, when it failed, the last error line of its log.  No
 * SIGCHLD handler, and the pid cannot be reused while the pidfd is held.
 * After the loop, criuproc_wait() reaps a child still running (blocking,
 * bounded).
 *
 * Threading: everything runs on the loop's thread.
 *
 * Ownership: the caller owns the struct criuproc from criuproc_spawn()
 * and frees it with criuproc_free(), also from inside the exit callback;
 * free it before the event base.  Freeing leaves a child still running
 * alone (criu stopped midway can leave the workload frozen or half
 * restored); criuproc_kill() is for callers that must not leave one.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_CRIUPROC_H
#define RDMIG_CRIUPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct criuproc;

/*
 * The -v level the agents give criu unless told otherwise: criu's own
 * default (errors and warnings).  -v4 logs every VMA and pagemap entry
 * while the workload is frozen, which made the agents' dump about 3x and
 * their restore about 5x slower than criu run by hand (docs/performance.md,
 * "Downtime"); failures are still explained, by the log's Error lines.
 */
#define CRIU_LOG_LEVEL_DEFAULT 2
#define CRIU_LOG_LEVEL_MAX     4

/* criuproc_spec.flags */
#define CRIUPROC_STDOUT_NULL (1u << 0) /* stdout on /dev/null too (else inherited) */
#define CRIUPROC_CLOSE_FDS   (1u << 1) /* no fd above stderr inherited (else all not CLOEXEC) */
/*
 * A child that started but cannot be watched (no pidfd) is SIGKILLed and
 * reaped; else it is waited for, blocking.  For a child that needs the
 * agent's loop to finish, such as criu restore --lazy-pages.
 */
#define CRIUPROC_KILL_UNWATCHED (1u << 2)
/*
 * criuproc_spec.pass_fd becomes the child's fd 3 (CRIUPROC_PASS_FD_NUM),
 * also with CRIUPROC_CLOSE_FDS: criu's --status-fd of a lazy dump.
 */
#define CRIUPROC_PASS_FD     (1u << 3)
#define CRIUPROC_PASS_FD_NUM 3
/* criuproc_spec.flags and criuproc_log_tail() */
#define CRIUPROC_TAIL_BARE (1u << 8) /* drop criu's "(00.123456) " time stamp */
#define CRIUPROC_TAIL_ANY  (1u << 9) /* no line with "Error": the last non-empty one */

struct criuproc_spec {
	const char *what;     /* names the child in logs ("criu restore", a migration id) */
	char *const *argv;    /* argv[0] is looked up in PATH when it has no '/' */
	const char *cwd;      /* its working directory, or NULL: the agent's */
	const char *log_path; /* criu's -o log as the agent reaches it, or NULL */
	unsigned int flags;   /* CRIUPROC_* */
	int pass_fd;	      /* with CRIUPROC_PASS_FD: stays the caller's */
};

#define CRIUPROC_TAIL_MAX 512

struct criuproc_exit {
	pid_t pid;
	/*
	 * 0, or the negative errno of a waitpid() that failed: the child is
	 * gone but its status is unknown (wstatus, status, signal are 0).
	 */
	int err;
	int wstatus;	     /* as from waitpid() */
	bool ok;	     /* exited with status 0 */
	int status;	     /* its exit status; -1 when it did not exit */
	int signal;	     /* the signal that killed it; 0 when it was not */
	uint64_t elapsed_ns; /* from just before the spawn to the reaping */
	/*
	 * Only when !ok and the spec named a log: its last line with "Error"
	 * (see CRIUPROC_TAIL_*), "" when none; log_err < 0 when the log could
	 * not be read.
	 */
	char log_tail[CRIUPROC_TAIL_MAX];
	int log_err;
};

/*
 * Called once, after the child is reaped: from the loop, or from inside
 * criuproc_wait().  e is valid during the call only, also after the
 * callback freed p (it is not part of p).
 */
typedef void (*criuproc_exit_fn)(void *arg, const struct criuproc_exit *e);

/*
 * Starts s->argv and watches it on base.  Everything in s is copied or
 * used before the return.  Failures are logged with s->what.
 */
int criuproc_spawn(struct event_base *base, const struct criuproc_spec *s, criuproc_exit_fn cb,
		   void *arg, struct criuproc **out);

/* The child's pid (still valid after it was reaped), or 0 for NULL. */
pid_t criuproc_pid(const struct criuproc *p);

/* True until the child has been reaped.  False for NULL. */
bool criuproc_running(const struct criuproc *p);

/* kill(2) of the child while it runs; -ESRCH once it was reaped. */
int criuproc_signal(struct criuproc *p, int sig);

/*
 * Blocks up to timeout_ms (< 0: no limit) for the child to exit, then
 * reaps it and runs the exit callback.  For after the event loop only.
 * 0 (also when it was reaped already), -ETIMEDOUT while it still runs.
 */
int criuproc_wait(struct criuproc *p, int timeout_ms);

/*
 * SIGKILLs a child still running and reaps it, without the exit callback
 * (teardown: its owner is going away).  Logged.  NULL is fine.
 */
void criuproc_kill(struct criuproc *p);

/*
 * Stops watching and frees.  A child still running is left alone, not
 * waited for (logged).  NULL is fine.
 */
void criuproc_free(struct criuproc *p);

/*
 * The last line of the file at path that contains "Error", from its last
 * 64 KiB, into buf ("" when there is none), passing over criu's closing
 * "... FAILED." line when an error came before it; flags CRIUPROC_TAIL_*.
 * Returns 0, or a negative errno when the file cannot be read.
 */
int criuproc_log_tail(const char *path, unsigned int flags, char *buf, size_t len);

#endif
