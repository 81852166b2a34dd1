/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * proctree: stopping restored processes whose memory cannot be completed.
 *
 * A restored process whose lazy pages cannot be fetched must not go on (it
 * would read zeros once its userfaultfd is closed), so the engine kills it
 * and everything it forked.  Processes are held by pidfd, taken when the
 * process handed over its userfaultfd, so a recycled pid is never hit.
 */
#ifndef RDMIG_PROCTREE_H
#define RDMIG_PROCTREE_H

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

#endif
