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
 * takes over, with what only the worker knows of each: the image pid its
 * pages come from, the task it was forked from, and every change of its
 * layout (remap, remove, unmap) the worker applied.  The guard only waits
 * on its sockets.  While it holds the duplicates, a userfaultfd outlives
 * rdmig-dest and its threads stay blocked.  When the socket closes without
 * a release (rdmig-dest is gone):
 *  - one-shot (no takeover channel): the guard SIGKILLs every process it
 *    still guards, and only then lets the userfaultfds go;
 *  - under `rdmig-dest --serve` (a takeover channel from the supervisor):
 *    the processes stay as they are, their faulting threads waiting in the
 *    kernel, and the guard waits for a new worker (guard_take()) for up to
 *    the pause limit; a new worker gets every userfaultfd and pidfd with
 *    what the guard knows of it, and the guard serves it as it served the
 *    first.  When no worker comes in time, or the supervisor closes the
 *    channel, the guard stops the processes (SIGSTOP) and keeps their
 *    userfaultfds until they are gone: never killed with pages missing.
 * A process whose pages are all in, or which exited, is forgotten at once.
 * A process handed over without a pidfd cannot be stopped or killed: it
 * stays blocked while the guard lives.
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uffd.h"

struct guard;

/* One guarded task as a new worker receives it from guard_take(). */
struct guard_task {
	uint32_t id;	     /* the old worker's task id: keep it (guard_add replaces by id) */
	uint32_t parent_id;  /* forked from this task, 0: a restored process */
	int32_t pid;	     /* image pid its pages come from */
	pid_t real_pid;	     /* the process (or the parent's, for a fork child), 0 unknown */
	int uffd;	     /* the caller's now */
	int pidfd;	     /* the caller's now, or -1 */
	bool pidfd_own;	     /* the pidfd is this very process, not an ancestor */
	bool layout_unknown; /* a layout change was lost: it cannot be rebuilt, only stopped */
	struct uffd_layout *events; /* in the order they happened, parent's first */
	size_t nr_events;
};

/* How a task is guarded: what a new worker needs to rebuild it. */
struct guard_add_info {
	uint32_t id;
	uint32_t parent_id; /* its layout changes so far are copied from the parent */
	int32_t pid;
	pid_t real_pid;
	bool pidfd_own;
};

/*
 * Forks the guard.  Call before opening RDMA devices or starting threads:
 * the child inherits the address space.  The guard keeps stderr for its
 * log lines and closes every other inherited descriptor.
 * takeover_fd: the supervisor's takeover channel (a unix socket; the guard
 * keeps its own copy, the caller closes its), or -1 (one-shot: the guard
 * kills at the worker's death).  wait_s: how long the guard waits for a
 * new worker (0: as long as the channel is open).  Caller owns *out.
 */
int guard_start(int takeover_fd, unsigned int wait_s, struct guard **out);

/*
 * Guards a task: the guard receives duplicates of uffd and pidfd (pidfd <
 * 0: none; the process is then blocked, not killed, if rdmig-dest dies).
 * An id the guard holds already is replaced (a new worker re-adding a
 * task it took over).  The caller keeps its own descriptors.
 */
int guard_add(struct guard *g, const struct guard_add_info *a, int uffd, int pidfd);

/* Records a layout change of task id, for a worker that may take over. */
int guard_event(struct guard *g, uint32_t id, const struct uffd_layout *ev);

/* The task has all its pages, or its process is gone: nothing left to guard. */
int guard_forget(struct guard *g, uint32_t id);

/*
 * rdmig-dest is exiting in order (every task settled, or stopped by
 * rdmig-dest itself): the guard closes its duplicates and exits.
 */
int guard_release(struct guard *g);

/*
 * A new worker takes over from a guard whose worker died: over
 * takeover_fd (the supervisor's channel, borrowed) it hands the guard a
 * new socket and receives every task it holds.  Blocks for at most
 * timeout_ms.  On success *out is a guard handle like guard_start()'s and
 * *tasks (caller owns: guard_tasks_free()) the tasks, possibly none.
 * -EBUSY: the guard's worker still lives; -ECONNREFUSED: no guard.
 */
int guard_take(int takeover_fd, int timeout_ms, struct guard **out, struct guard_task **tasks,
	       size_t *nr);

/* Frees what guard_take() returned, closing descriptors still >= 0. */
void guard_tasks_free(struct guard_task *tasks, size_t nr);

/* Closes the socket (without release: the guard kills or waits, see above) and reaps it. */
void guard_free(struct guard *g);

#endif
