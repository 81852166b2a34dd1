/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lazydump: the source's side of a lazy-dump migration (design.md §11)
 * around `criu dump --lazy-pages`: the loopback port of its page server,
 * its --status-fd pipe, the dumped tree held by pidfd and stopped at the
 * status byte, the staging area (lazystage.h) pulled from the page server
 * once a destination is authenticated, and the tree's end: SIGKILL once the
 * destination has every page, SIGCONT for a rollback.
 *
 * Why SIGSTOP at the status byte: a dump whose lazy transfer fails resumes
 * the tasks whatever --leave-stopped says; the signal stays pending while
 * criu holds them ptrace-stopped and stops them as soon as it lets go, so
 * the source's copy never runs again unless a rollback continues it.
 *
 * Event loop: everything on the agent's loop; callbacks never run from
 * inside a src_lazydump_*() call.
 *
 * Ownership: the migration owns its lazydump (src_migration.lazy); the
 * stage and its area (mapped by src_lazydump_area() and lent to the stage,
 * or the stage's own) are the lazydump's until src_lazydump_free()
 * (sessions and the migration's prereg deregister the area before).
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_LAZYDUMP_H
#define RDMIG_SRC_LAZYDUMP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"
#include "lazystage.h"

struct event_base;
struct src_lazydump;

struct src_lazydump_ops {
	/* The status byte: images written, page server listening, tree stopped. */
	void (*ready)(struct src_lazydump *ld, void *arg);
	/* A unit is staged (lazystage.h). */
	void (*staged)(struct src_lazydump *ld, const struct lazystage_unit *u, void *arg);
	/* The page server failed before every unit was staged. */
	void (*failed)(struct src_lazydump *ld, int err, void *arg);
};

/*
 * Takes a pidfd of pid (the tree criu is about to dump), a free loopback
 * port and the status pipe.  Nothing runs until src_lazydump_watch().
 */
int src_lazydump_new(struct event_base *base, pid_t pid, const struct src_lazydump_ops *ops,
		     void *arg, struct src_lazydump **out);

/*
 * Whether src_lazydump_stage() ended criu's page server session on
 * purpose, a dump criu marked no page lazy of (image_set_relazy()): its
 * stopped tree serves them, and criu's exit then ends nothing.
 */
bool src_lazydump_from_tree(const struct src_lazydump *ld);

/* The page server's port (for src_criu_argv_lazy()). */
int src_lazydump_port(const struct src_lazydump *ld);

/* The dumped tree's root start time (proctree_start_time()), for the record. */
uint64_t src_lazydump_tree_start(const struct src_lazydump *ld);

/*
 * After a restart of the agent: takes again the tree a lazy dump left
 * stopped (design.md §11), criu gone.  pid must still be the process that
 * started at tree_start, and no process of its tree may run (a continued
 * tree's memory may have changed).  A page server still waiting on port
 * (> 0: the dump's, from the record) has its session ended first.  On
 * failure why says which check failed.  The result is ready: a rollback
 * continues the tree, Done kills it; src_lazydump_bind() before the stage.
 */
int src_lazydump_adopt(struct event_base *base, pid_t pid, uint64_t tree_start, int port,
		       const struct src_lazydump_ops *ops, void *arg, struct src_lazydump **out,
		       char *why, size_t why_len);

/*
 * An adopted tree's images are mapped: finds, for every task of set with
 * lazy pages, its process in the stopped tree (its pid in its own
 * namespace, NSpid, is the images' pid).  0 for a dump not adopted.
 */
int src_lazydump_bind(struct src_lazydump *ld, const struct img_set *set, char *why,
		      size_t why_len);

/* The write end of the status pipe, for criu's --status-fd. */
int src_lazydump_status_fd(const struct src_lazydump *ld);

/*
 * criu runs (or could not be started): closes the agent's write end and
 * waits for the status byte.
 */
int src_lazydump_watch(struct src_lazydump *ld);

/* The status byte came: the freeze ended. */
bool src_lazydump_is_ready(const struct src_lazydump *ld);

/*
 * Builds the staging area of set's lazy ranges and connects to the page
 * server; set must outlive the stage.  page_key: NULL, or the migration's
 * page key (copied) for page tags with every unit.  Once only: later
 * calls return 0.
 */
int src_lazydump_stage(struct src_lazydump *ld, const struct img_set *set, const uint8_t *page_key);

/*
 * The staging area for set, mapped now (once) so that it can be registered
 * for RDMA READ before a destination connects (prereg.h); the stage then
 * fills it.  *len 0: nothing is lazy.  -EALREADY once the stage exists.
 */
int src_lazydump_area(struct src_lazydump *ld, const struct img_set *set, void **base, size_t *len);

/* The stage, or NULL before src_lazydump_stage(). */
struct lazystage *src_lazydump_stage_of(const struct src_lazydump *ld);

/*
 * Done: ends the page server's session (PS_IOV_CLOSE) and SIGKILLs the
 * stopped tree; nothing else releases the source's copy.
 */
void src_lazydump_release(struct src_lazydump *ld);

/*
 * Rollback: SIGCONTs the stopped tree.  -EBUSY while criu still holds it
 * (its page server still serves): end that first (src_lazydump_end()).
 */
int src_lazydump_resume(struct src_lazydump *ld);

/*
 * Ends the page server's session without releasing the tree (a rollback):
 * closes the stage, if any.  The dump then exits and leaves the tree
 * stopped.
 */
void src_lazydump_end(struct src_lazydump *ld);

void src_lazydump_free(struct src_lazydump *ld);

#endif
