/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * engine: the destination's fault engine.
 *
 * One engine serves every restored process of one restore on one libevent
 * loop.  Per process (a "task") it holds the userfaultfd, non-blocking and
 * watched for reading, and the lazy set of pages still to install:
 *  - PAGEFAULT on a pending lazy page: the page plus read-ahead is fetched
 *    from the page source at fault priority and installed with UFFDIO_COPY;
 *    on a page already in flight: nothing (that COPY wakes the thread); on
 *    anything else (never dumped, or installed and then dropped): a zero
 *    page (UFFDIO_ZEROPAGE).
 *  - FORK: a new task for the child with the parent's remaining and
 *    in-flight pages, fetched from the parent's image; REMAP: the pages
 *    move; REMOVE: the range is unregistered and dropped; UNMAP: dropped.
 *  - COPY failing with EAGAIN (an mm change is queued): events are read
 *    first, then the copy is retried at the pages' current place; EEXIST /
 *    ENOENT: nothing left to install there; ESRCH / ENOSPC: the process is
 *    gone: its uffd is closed and its pages dropped.
 * After the restorer's FIN a background drain fetches the remaining pages,
 * a bounded number of requests at a time; queued fault requests always go
 * first.
 *
 * A userfaultfd is never closed while its process may still need pages:
 * only when the process is done (nothing pending or in flight, after FIN)
 * or gone.  When pages cannot be had (the source fails for good, a fetch
 * does not complete within the timeout, fetched data fails verification
 * repeatedly) the process is stopped: the engine logs the pid and address,
 * keeps the uffd open (its threads stay blocked, never see zeros), and
 * SIGKILLs the process and its descendants through a pidfd taken from the
 * SCM_CREDENTIALS of its lazy-pages socket record.  A child forked during
 * post-copy has no pid of its own here (the kernel reports none); it is
 * killed through its parent's tree.  A failed process that cannot be
 * killed stays blocked as long as the engine runs.
 *
 * Everything runs on the loop thread; callbacks never block.
 */
#ifndef RDMIG_ENGINE_H
#define RDMIG_ENGINE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"
#include "latstat.h"
#include "pagesrc.h"
#include "readahead.h"
#include "staging.h"
#include "uffd.h"

struct engine;

struct engine_config {
	/*
	 * The largest read-ahead window, pages, the faulting one included; the
	 * window follows each task's fault pattern (readahead.h) unless
	 * readahead_fixed, when every fault fetches this many.
	 */
	uint32_t readahead_pages;
	bool readahead_fixed;
	uint32_t drain_depth; /* background requests in flight at most */
	uint64_t drain_chunk; /* bytes per background request */
	uint32_t fetch_timeout_ms;
	uint32_t max_retries;	  /* per request, for -EAGAIN and failed verification */
	uint32_t events_budget;	  /* uffd messages per task per wakeup */
	uint32_t latency_samples; /* kept for exact percentiles, engine-wide */
	/*
	 * Adapt the drain to the faults (drainctl.h): drain_depth and
	 * drain_chunk become maxima, halved per fault and grown back when
	 * faults stop.  Worth it when a fetch is cheap for the source (RDMA
	 * READ); over TCP, narrowed to one small request, it starves the
	 * drain: there it needs drain_floor and a fault lane (lane_only).
	 */
	bool drain_yields;
	/* With drain_yields: only while faults have a lane of their own. */
	bool yield_lane_only;
	/*
	 * With drain_yields: how long after the last fault the drain starts
	 * growing back; 0: adaptive (twice the recent gap between faults).
	 */
	uint32_t drain_quiet_ms;
	/*
	 * With drain_yields and a fault lane: faults narrow the drain to this
	 * many requests of drain_chunk at least (drainctl_set_floor); 0: down
	 * to one small request.
	 */
	uint32_t drain_floor;
	/*
	 * With drain_yields: faults travel on their own queue pair, so a fault
	 * in flight need not hold the drain at its minimum.
	 */
	bool fault_lane;
	/*
	 * After posting fault fetches, spin on the page source for up to
	 * this long until a waiting fault is resolved, instead of sleeping
	 * until the loop wakes (0: never).  Only sources with a poll
	 * operation (RDMA) spin.
	 */
	uint32_t fault_poll_us;
};

/*
 * Fills the defaults: 16 pages, 8 x 256 KiB, 30 s, 3 retries, 64 events,
 * 65536 samples, 1000 us fault spin, no drain quiet time.
 */
void engine_config_default(struct engine_config *cfg);

/* A task as the guard keeps it (guard.h): what a later worker needs to rebuild it. */
struct engine_task_ref {
	uint32_t id;
	uint32_t parent_id; /* forked from, 0: a restored process */
	int32_t pid;	    /* image pid its pages come from */
	pid_t real_pid;	    /* the process (a fork child: its parent's), 0 unknown */
	int uffd;
	int pidfd; /* -1: none */
	bool pidfd_own;
};

struct engine_ops {
	/*
	 * A process could not get its pages and was stopped (killed when its
	 * pid is known).  pid is the image pid, real_pid 0 if unknown.
	 */
	void (*task_failed)(void *arg, int32_t pid, pid_t real_pid, int err);
	/*
	 * After FIN (or engine_abort()), every task is done or gone and nothing
	 * is in flight.  status: 0, or -EIO if some process failed, or
	 * -ECANCELED after engine_abort().  Called once, from the loop.
	 */
	void (*done)(void *arg, int status);
	/*
	 * Optional.  A task was taken over (also a forked child, or a task
	 * adopted from an earlier worker): its uffd and pidfd (-1: none) are
	 * the engine's, valid during the call, for the owner to duplicate
	 * (the guard holds copies, guard.h).
	 */
	void (*task_added)(void *arg, const struct engine_task_ref *t);
	/*
	 * Optional.  Task id's layout changed (kind UFFD_EVENT_REMAP: from ->
	 * to, len; UFFD_EVENT_REMOVE or UFFD_EVENT_UNMAP: from..to) and its
	 * lazy set with it: a worker taking over replays these
	 * (engine_adopt_task()).
	 */
	void (*layout_changed)(void *arg, uint32_t id, const struct uffd_layout *l);
	/* Optional.  Task id has all its pages, or its process is gone. */
	void (*task_settled)(void *arg, uint32_t id);
};

struct engine_counters {
	uint64_t faults;	/* PAGEFAULT messages */
	uint64_t faults_lazy;	/* of them on lazy pages (pending or in flight) */
	uint64_t zero_pages;	/* UFFDIO_ZEROPAGE installed */
	uint64_t pages_fault;	/* installed by fault requests (read-ahead included) */
	uint64_t pages_drain;	/* installed by the background drain */
	uint64_t pages_dropped; /* unmapped, removed, or their process gone first */
	uint64_t bytes;		/* installed by UFFDIO_COPY */
	uint64_t requests;	/* submitted to the page source, retries included */
	uint64_t retries;
	uint64_t eagain; /* COPY / ZEROPAGE deferred by a queued mm change */
	uint64_t forks;
	uint64_t remaps;
	uint64_t removes;
	uint64_t unmaps;
	uint64_t adopted;     /* tasks taken over from an earlier worker */
	uint64_t replayed;    /* their layout changes replayed on the rebuilt lazy sets */
	uint64_t pages_exist; /* COPY answered EEXIST: installed already (by an earlier worker) */
};

enum engine_task_state {
	ENGINE_TASK_ACTIVE,
	ENGINE_TASK_FAILED, /* stopped; waiting for the process to disappear */
	ENGINE_TASK_DONE,   /* every page installed; uffd closed */
	ENGINE_TASK_GONE,   /* the process exited; uffd closed */
};

struct engine_task_info {
	uint32_t id;	    /* engine-local, 1.. in arrival order */
	uint32_t parent_id; /* task it was forked from, 0 for a restored one */
	int32_t pid;	    /* image pid its pages come from */
	pid_t real_pid;	    /* process to stop on failure (the parent's for a fork), 0 unknown */
	enum engine_task_state state;
	uint64_t lazy_pages; /* at start (a fork child: what the parent had left) */
	uint64_t remaining;
	struct engine_counters c;
	uint64_t fault_p50_ns;
	uint64_t fault_p99_ns;
	/* Read-ahead: the prevailing pattern, the latest window, faults per pattern. */
	enum ra_pattern ra_pattern;
	uint32_t ra_window;
	int64_t ra_stride;     /* pages, when ra_pattern is RA_STRIDED; else 0 */
	uint64_t ra_faults[4]; /* by enum ra_pattern */
};

struct engine_stats {
	struct engine_counters c;
	uint32_t tasks;
	uint32_t zombies;
	uint32_t tasks_done;
	uint32_t tasks_gone;
	uint32_t tasks_failed;
	uint64_t lazy_pages; /* sum over tasks, fork children included */
	uint64_t remaining;
	uint64_t drain_ns; /* first drain submit to last drain completion */
	uint64_t fault_p50_ns;
	uint64_t fault_p90_ns;
	uint64_t fault_p99_ns;
	uint64_t fault_max_ns;
	uint64_t fault_count; /* latency samples: faults resolved by a COPY */
	/* The drain's width now (drainctl.h) and how often it changed. */
	uint32_t drain_depth;
	uint64_t drain_chunk;
	uint64_t drain_shrinks;
	uint64_t drain_grows;
};

/*
 * Everything is borrowed and must outlive the engine: imgs, src (destroy
 * it before engine_free() so no completion comes late), st, cfg is copied.
 */
int engine_create(struct event_base *base, const struct img_set *imgs, struct pagesrc *src,
		  struct staging *st, const struct engine_config *cfg, const struct engine_ops *ops,
		  void *arg, struct engine **out);
void engine_free(struct engine *e);

/*
 * A restored process's userfaultfd (taken over: closed by the engine).
 * sender: the real pid that sent it, 0 if unknown.  Returns 0 or a
 * negative errno (-ESRCH: pid not in the images; the uffd is then closed).
 */
int engine_add_task(struct engine *e, int32_t pid, int uffd, pid_t sender);
void engine_add_zombie(struct engine *e, int32_t pid);
/*
 * A task an earlier worker served, handed over by the guard (guard_take()):
 * its uffd and pidfd become the engine's (closed by it, also on failure).
 * The lazy set is rebuilt from the image of ref->pid and the layout
 * changes replayed in order; pages the earlier worker installed are found
 * by their COPY answering EEXIST (counted as installed, never zero-filled).
 * Then every thread waiting on the uffd is woken (UFFDIO_WAKE): a fault the
 * earlier worker read and never answered comes again as a new message.
 * The task keeps ref->id (later ids are higher).  layout_unknown: a change
 * was lost, so the lazy set cannot be trusted: the task fails (stopped as
 * after a fetch failure) instead of being served.  Returns 0 or a negative
 * errno.
 */
int engine_adopt_task(struct engine *e, const struct engine_task_ref *ref,
		      const struct uffd_layout *changes, size_t nr_changes, bool layout_unknown);
/* The restorer's FIN: the background drain may start. */
void engine_restore_finished(struct engine *e);
/*
 * Stops serving: processes with pages left are stopped as after a fetch
 * failure (killed when known); done follows with -ECANCELED once they are
 * gone.  reason goes to the log.
 */
void engine_abort(struct engine *e, const char *reason);

/* The engine-wide counters alone: cheap, unlike engine_get_stats() (percentiles). */
void engine_get_counters(const struct engine *e, struct engine_counters *out);
void engine_get_stats(struct engine *e, struct engine_stats *out);
/* The page source got (or lost) a separate queue for faults: cfg.fault_lane from now on. */
void engine_set_fault_lane(struct engine *e, bool on);
/*
 * The page source paused (true): its requests stay outstanding and none
 * times out; resumed (false): it issued them again, their timeout restarts.
 */
void engine_set_paused(struct engine *e, bool paused);
/*
 * SIGSTOPs the process tree of every task that still needs pages, keeping
 * its userfaultfd: it neither runs nor reads a page it lacks.  Returns
 * how many were stopped.
 */
int engine_stop_processes(struct engine *e);
/* Calls fn for each task, in arrival order. */
void engine_for_each_task(struct engine *e, void (*fn)(void *arg, const struct engine_task_info *),
			  void *arg);
/* Fault-to-install latency of every task so far; valid until engine_free(). */
const struct latstat *engine_fault_latency(const struct engine *e);
/* Pages not installed yet in processes that may still need them. */
uint64_t engine_remaining(const struct engine *e);
const char *engine_task_state_name(enum engine_task_state s);

#endif
