/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * worker: one migration on the destination, start to end: the images
 * (received from rdmig-source, or --local), the lazy-pages socket, criu
 * restore (--restore) or the guard's tasks (a takeover), the fault engine
 * with its page source, the progress lines to the supervisor
 * (--progress-fd), the summary.  rdmig-dest without --serve is one worker;
 * under --serve the supervisor runs one per migration (design.md §10).
 *
 * Everything runs on one libevent loop, run once, signals included.
 */
#ifndef RDMIG_DEST_WORKER_H
#define RDMIG_DEST_WORKER_H

#include "destopts.h"

/* Where a worker is; only forward, except a pause and its resume. */
enum worker_phase {
	WORKER_IMAGES,	  /* the images arrive from the source (or are opened) */
	WORKER_RESTORING, /* the images are in: the restore runs, before its FIN */
	WORKER_SERVING,	  /* the workload runs here: faults and the drain */
	WORKER_PAUSED,	  /* the source is lost: waiting for it, nothing given up */
	WORKER_FINISHING, /* the loop ended: a criu restore may still exit */
	WORKER_DONE,	  /* every page in, Done acknowledged */
	WORKER_FAILED,
};

const char *worker_phase_str(enum worker_phase p);

/*
 * Runs one migration with o (copied) to its end; may fork (-d) and
 * return in the child.  Returns the process's exit status: 0 when every
 * page is in (and, from a source, the source acknowledged Done), else 1.
 */
int worker_run(const struct dest_opts *o);

#endif
