/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * progress: what a migration worker (rdmig-dest in one-shot mode with
 * --progress-fd) tells its supervisor (rdmig-dest --serve), one JSON object
 * per line on a pipe:
 *
 *   {"state":"connecting"}
 *   {"state":"postcopy","restore_ms":812}
 *   {"pages_total":4096,"pages_fetched":1200,"pages_remaining":2896,
 *    "faults":37,"bytes":4915200,"fault_p50_us":95,"fault_p99_us":410}
 *   {"state":"failed","error":"criu restore exited with status 1 ..."}
 *   {"state":"paused","error":"connection to the source lost: ..."}
 *
 * A line carries a state change, counters, or both.  The states a worker
 * may report are connecting, receiving, restoring, postcopy, draining,
 * paused, done and failed; "aborted" is the supervisor's own verdict.
 * Only paused goes back: a later postcopy or draining line ends the pause,
 * and its "error" is the pause's reason.  The counters
 * are all five counts together (fault_p50_us / fault_p99_us may be absent
 * or null before the first fault; drain_depth, drain_chunk and
 * fault_lane_reads are absent or null where they do not apply;
 * "fault_hist":{"sum_us":S,"buckets":[...]} is absent before the first
 * fault and lists the buckets up to the last non-empty one).
 *
 * The decoder treats the line as hostile: the worker runs the fault path
 * and talks to the network, the supervisor must not be confused by it.
 * Lines longer than PROGRESS_LINE_MAX, bad JSON, duplicate keys, a state
 * outside the list, wrong types, negative or out-of-range numbers and an
 * error text over PROGRESS_ERROR_MAX are refused whole; unknown keys are
 * ignored (a newer worker may say more).  Control characters in the error
 * text are replaced, so it can go to logs and the API as it is.
 *
 * The writer (worker side) never blocks the worker's loop: the fd is made
 * non-blocking and lines wait in a bounded buffer, flushed when the pipe
 * is writable.  A counters line is dropped while earlier lines still wait
 * (the next one supersedes it); a state line is never dropped, except when
 * the supervisor is gone (EPIPE), which only disables reporting.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_PROGRESS_H
#define RDMIG_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "readahead.h"

struct event_base;

/* Longest line accepted, newline included. */
#define PROGRESS_LINE_MAX 4096
/* Tasks whose read-ahead pattern a line names: the line stays short. */
#define PROGRESS_RA_TASKS 8
/* Longest error text, NUL included. */
#define PROGRESS_ERROR_MAX 256
/* restore_ms above this (a year) is nonsense, refused. */
#define PROGRESS_MS_MAX (366ll * 24 * 3600 * 1000)

struct progress_counters {
	uint64_t pages_total;
	uint64_t pages_fetched;
	uint64_t pages_remaining;
	uint64_t faults;
	uint64_t bytes;
	int64_t fault_p50_us; /* -1: no sample yet */
	int64_t fault_p99_us;
	/*
	 * Every fault's latency in latstat's log2-microsecond buckets (0: under
	 * 2 us, i: [2^i, 2^(i+1)) us) and the latencies' sum; all 0 before the
	 * first fault.  The line's "fault_hist" object; /metrics' histogram.
	 */
	uint64_t fault_hist[API_HIST_BUCKETS];
	uint64_t fault_sum_us;
	/* The drain's width now and the fault READs on the fault lane; -1: n/a. */
	int64_t drain_depth;
	int64_t drain_chunk; /* bytes */
	int64_t fault_lane_reads;
	/* Pages read from the pre-copy rounds' copies made before the freeze (roundcopy.h); -1:
	 * n/a. */
	int64_t pages_local;
	/*
	 * Read-ahead (readahead.h): faults per pattern over every task, and
	 * the pattern and window of the first PROGRESS_RA_TASKS tasks; the
	 * line's "readahead" object.  nr_ra_tasks 0: none to report.  The
	 * supervisor sums it up in the API's "readahead" object.
	 */
	uint64_t ra_faults[4]; /* by enum ra_pattern */
	uint32_t nr_ra_tasks;
	struct {
		int32_t pid;
		enum ra_pattern pattern;
		uint32_t window;
		int64_t stride; /* pages, when pattern is RA_STRIDED; else 0 */
	} ra_tasks[PROGRESS_RA_TASKS];
};

struct progress_msg {
	bool has_state;
	enum api_state state;		/* with has_state */
	char error[PROGRESS_ERROR_MAX]; /* "" when none */
	int64_t restore_ms;		/* -1: not in the line */
	bool has_counters;
	struct progress_counters c;
};

/* An empty message: no state, no counters, restore_ms -1, latencies -1. */
void progress_msg_init(struct progress_msg *m);

/* True for the states a worker may report. */
bool progress_state_reportable(enum api_state s);

/*
 * The order a migration goes through its states: pending 0, connecting,
 * receiving, restoring, postcopy, draining, then the final ones (6).  A
 * state report that does not move forward is stale and ignored.
 */
int progress_state_rank(enum api_state s);

/*
 * Encodes m as one line, '\n' included, into buf (NUL-terminated).
 * Returns the line's length, -EINVAL if m is not encodable (an unreportable
 * state, nothing to say), -ENOSPC if buf is too small.
 */
int progress_encode(const struct progress_msg *m, char *buf, size_t len);

/*
 * Decodes one line (len bytes, a trailing '\n' optional, no NUL needed)
 * into *out.  Returns 0, -E2BIG for a line over PROGRESS_LINE_MAX, or
 * -EINVAL for anything malformed (see above); *out is then unspecified.
 */
int progress_decode(const char *line, size_t len, struct progress_msg *out);

struct progress_writer;

/*
 * A writer on fd (taken over: made non-blocking and close-on-exec, closed
 * by progress_writer_free()) whose pending lines are flushed from base.
 * Caller owns *out.
 */
int progress_writer_create(struct event_base *base, int fd, struct progress_writer **out);

/*
 * Queues m.  With m->has_state the line is kept until written; a
 * counters-only line is dropped when earlier lines still wait.  Returns 0
 * when queued (or deliberately dropped), -EPIPE once the reader is gone,
 * -ENOMEM, or -ENOSPC when the bounded queue is full.
 */
int progress_writer_send(struct progress_writer *w, const struct progress_msg *m);

/*
 * Writes what is still queued, waiting up to timeout_ms for the pipe.
 * Blocks: for after the event loop only.  Returns 0 or -ETIMEDOUT /
 * -EPIPE.
 */
int progress_writer_flush(struct progress_writer *w, int timeout_ms);

/* Lines dropped so far (counters superseded, queue full). */
uint64_t progress_writer_dropped(const struct progress_writer *w);

/* Closes the fd; NULL is fine. */
void progress_writer_free(struct progress_writer *w);

#endif
