/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * criurun: runs one criu command (dump or restore) from the source agent's
 * event loop without blocking it.
 *
 * The command is started with posix_spawnp (no shell; stdin and stdout on
 * /dev/null, stderr the agent's, no other fd inherited) and watched through
 * a pidfd: when criu exits, the pidfd becomes readable, the child is reaped
 * and the owner's callback gets its wait status and how long it ran.
 */
#ifndef RDMIG_SRC_CRIURUN_H
#define RDMIG_SRC_CRIURUN_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The criu options a migration was started with (docs/api.md, criu_opts). */
struct src_criu_opts {
	bool shell_job;
	bool tcp_established;
	bool ext_unix_sk;
	bool file_locks;
	bool link_remap;
	bool leave_running;	/* dump only */
	char manage_cgroups[8]; /* "" or soft/full/strict/ignore */
	int log_level;		/* -1: -v4 */
};

enum src_criu_verb {
	SRC_CRIU_DUMP,	  /* criu dump -t PID -D DIR -o LOG */
	SRC_CRIU_RESTORE, /* criu restore -D DIR -d -o LOG */
};

#define SRC_CRIU_ARGV_MAX 32

/* An argv for posix_spawnp; the strings point into it or at the caller's. */
struct src_criu_argv {
	char *v[SRC_CRIU_ARGV_MAX];
	int n;
	char pid[24];
	char level[16];
	char cgroups[40];
};

/*
 * Builds "CRIU dump|restore ..." with the options that apply to the verb.
 * criu, dir and log must outlive *a.
 */
int src_criu_argv_build(struct src_criu_argv *a, const char *criu, enum src_criu_verb verb,
			pid_t pid, const char *dir, const char *log, const struct src_criu_opts *o);

struct src_criu_run;

/* wstatus as from waitpid(); elapsed_ns from the spawn to the reaping. */
typedef void (*src_criu_exit_fn)(void *arg, int wstatus, uint64_t elapsed_ns);

/*
 * Starts argv (argv[0] searched in PATH when it has no '/') in directory
 * cwd (NULL: the agent's).  what names
 * the run in logs (borrowed until the run is freed).  cb runs once, from
 * the event loop, after the child is reaped; it may free the run.
 * Caller owns *out.
 */
int src_criu_spawn(struct event_base *base, const char *what, char *const argv[], const char *cwd,
		   src_criu_exit_fn cb, void *arg, struct src_criu_run **out);

pid_t src_criu_run_pid(const struct src_criu_run *r);

/*
 * Stops watching.  A child still running is left alone (killing criu in
 * the middle of a dump or restore could leave the workload frozen or half
 * restored) and logged.  NULL is fine.
 */
void src_criu_run_free(struct src_criu_run *r);

/*
 * The last line of dir/log with "Error" in it (else the last non-empty
 * line), for a failure message; "" when the file cannot be read.  Reads at
 * most the file's last 64 KiB.
 */
void src_criu_log_tail(const char *dir, const char *log, char *buf, size_t len);

/* "exit status N", "killed by signal N" */
void src_criu_status_str(int wstatus, char *buf, size_t len);

#endif
