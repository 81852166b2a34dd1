/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * guard: keeps restored processes from reading zeros if rdmig-dest dies.
 *
 * When the last descriptor of a userfaultfd closes, the kernel unregisters
 * its ranges and wakes the blocked threads, which then find plain
 * anonymous memory: every page not installed yet reads as zeros.  If
 * rdmig-dest is killed or crashes in the middle of post-copy, that is what
 * its restored processes would see.
 *
 * So rdmig-dest forks a small guard process before it opens any RDMA
 * resource, and hands it a duplicate of every userfaultfd (and pidfd) it
 * takes over.  The guard only waits on a socket.  While it holds the
 * duplicates, a userfaultfd outlives rdmig-dest and its threads stay
 * blocked; when the socket closes without a release (rdmig-dest is gone),
 * the guard SIGKILLs every process it still guards, and only then lets the
 * userfaultfds go.  A process whose pages are all in, or which exited, is
 * forgotten at once.  A process handed over without a pidfd cannot be
 * killed: it stays blocked while the guard lives (it exits only then).
 *
 * The guard cannot help if both processes are SIGKILLed together (a kill of
 * the whole process group or cgroup).
 *
 * Functions return 0 or a negative errno.  Sends never block: a guard that
 * stopped reading costs the protection of new tasks, logged, not the
 * migration.
 */
#ifndef RDMIG_GUARD_H
#define RDMIG_GUARD_H

#include <stdint.h>
#include <sys/types.h>

struct guard;

/*
 * Forks the guard.  Call before opening RDMA devices or starting threads:
 * the child inherits the address space.  The guard keeps stderr for its
 * log lines and closes every other inherited descriptor.  Caller owns *out.
 */
int guard_start(struct guard **out);

/*
 * Guards task id: the guard receives duplicates of uffd and pidfd
 * (pidfd < 0: none; the process is then blocked, not killed, if
 * rdmig-dest dies).  The caller keeps its own descriptors.
 */
int guard_add(struct guard *g, uint32_t id, int uffd, int pidfd, pid_t real_pid);

/* The task has all its pages, or its process is gone: nothing left to guard. */
int guard_forget(struct guard *g, uint32_t id);

/*
 * rdmig-dest is exiting in order (every task settled, or stopped by
 * rdmig-dest itself): the guard closes its duplicates and exits.
 */
int guard_release(struct guard *g);

/* Closes the socket (without release: the guard kills what it guards) and reaps it. */
void guard_free(struct guard *g);

#endif
