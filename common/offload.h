/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * offload: one background thread that runs an agent's blocking jobs
 * (mapping and checksumming a checkpoint, which reads every byte of its
 * pages files; reading an API request's secret file, which may sit on a
 * hung network or FUSE mount) so the event loop keeps serving the API, the
 * keepalives and the other migrations meanwhile.
 *
 * The handoff is memcached's: the loop appends a job to a locked queue and
 * wakes the worker with a condition variable; the worker runs it, appends
 * it to a locked "done" queue and writes an eventfd the loop watches; the
 * loop's callback takes the finished jobs and calls each one's done().
 * Jobs run one at a time, in the order they were submitted.
 *
 * Threading: offload_new(), offload_submit(), offload_cancel(),
 * offload_free() and every done() run on the loop's thread.  run() runs on
 * the worker thread and may touch only its own job: no libevent call, no
 * agent or migration state (the migration may be gone by the time it
 * ends).  The worker thread blocks every signal, so the loop gets them.
 *
 * Ownership: a job belongs to its submitter until offload_submit()
 * succeeds, then to the offload until done() is called with it, exactly
 * once: after run(), or without run() for a job cancelled before it
 * started, or from offload_free() for jobs that never ran.  done() gets the
 * job back and usually frees it.  The submitter must not free a job in
 * between; to walk away from one it cancels it and lets done() free it.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_OFFLOAD_H
#define RDMIG_OFFLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>

struct event_base;
struct offload;

/* Embedded in the submitter's own job structure. */
struct offload_job {
	/* Worker thread: does the work, leaves its outputs in the job. */
	void (*run)(struct offload_job *j);
	/* Loop thread: takes the outputs; ran is false when run() was skipped. */
	void (*done)(struct offload_job *j, bool ran);
	/* The offload's; run() may poll cancelled (offload_job_cancelled()). */
	TAILQ_ENTRY(offload_job) link;
	atomic_bool cancelled;
	bool ran; /* written by the worker before the job is queued back */
};

/*
 * Starts the worker thread and watches its eventfd on base.  Caller owns
 * *out (offload_free() before base is freed).
 */
int offload_new(struct event_base *base, struct offload **out);

/* Queues j (run and done set by the caller); see Ownership above. */
int offload_submit(struct offload *o, struct offload_job *j);

/*
 * Asks that j's work stop: a job not started yet is not run, a running
 * run() sees offload_job_cancelled() and may return early.  done() is
 * still called.  From the loop's thread, while j belongs to the offload.
 */
void offload_cancel(struct offload_job *j);

/* For run(): true once the job is cancelled (also from offload_free()). */
bool offload_job_cancelled(const struct offload_job *j);

/*
 * From run(): waits ms milliseconds (a test's delay), or less once the job
 * is cancelled: then -ECANCELED, else 0.
 */
int offload_job_sleep(const struct offload_job *j, unsigned int ms);

/*
 * Cancels every job, waits for the worker to finish the one it runs (a
 * run() that polls offload_job_cancelled() returns at once), joins it, and
 * calls done() for every job not delivered yet.  NULL is fine.
 */
void offload_free(struct offload *o);

#endif
