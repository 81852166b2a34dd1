/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * proctree: stopping and killing process trees.
 *
 * On the destination, a restored process whose lazy pages cannot be
 * fetched must not go on (it would read zeros once its userfaultfd is
 * closed), so the engine kills it and everything it forked.  On the source
 * of a lazy dump (design.md §11), the dumped tree is SIGSTOPped while
 * `criu dump --lazy-pages` still holds it, so that CRIU resuming it after a
 * failed transfer cannot make the workload run in two places.  Processes
 * are held by pidfd, so a recycled pid is never hit at the root (the
 * descendants found by scanning /proc are signalled by pid).
 */
#ifndef RDMIG_PROCTREE_H
#define RDMIG_PROCTREE_H

#include <stdint.h>
#include <sys/types.h>

/* A pidfd for pid (O_CLOEXEC), or a negative errno. */
int proctree_pidfd_open(pid_t pid);

/*
 * SIGKILLs the process behind pidfd (pid is its number, for the
 * descendant search and logs) and all its descendants, found by scanning
 * /proc; each is SIGSTOPped as it is found so it cannot fork past the scan.
 * Returns how many processes were signalled, or a negative errno if even
 * the root could not be.
 */
int proctree_kill(int pidfd, pid_t pid);

/*
 * SIGSTOPs the process behind pidfd and all its descendants, as
 * proctree_kill() finds them.  A process held in a ptrace stop (by a
 * running `criu dump`) keeps the SIGSTOP pending and stops once let go.
 * Returns how many processes were signalled, or a negative errno if the
 * root could not be (or -ENOMEM: the root only).
 */
int proctree_stop(int pidfd, pid_t pid);

/*
 * SIGCONTs the process behind pidfd and its descendants (the rollback of a
 * lazy dump's stopped tree).  Returns how many were signalled, or a
 * negative errno if the root could not be.
 */
int proctree_cont(int pidfd, pid_t pid);

/* One process of a tree, as proctree_members() found it. */
struct proctree_member {
	pid_t pid;  /* in the agent's pid namespace */
	pid_t vpid; /* in its innermost one (NSpid's last): the pid CRIU's images name */
	char state; /* /proc/PID/stat's letter (T stopped, t traced); X: gone meanwhile */
};

/*
 * pid's start time, in clock ticks after boot (/proc/PID/stat): with the
 * pid it names one process for good, across a restart of the agent.
 */
int proctree_start_time(pid_t pid, uint64_t *ticks);

/*
 * pid and its descendants, found by scanning /proc as proctree_kill()
 * does, none signalled; pid is the first.  *out is the caller's to free.
 * Returns how many, or a negative errno (-ENOENT: no pid).
 */
int proctree_members(pid_t pid, struct proctree_member **out);

#endif
