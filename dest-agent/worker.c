// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * worker: one migration on the destination (see worker.h).
 *
 * The order of one run: the progress writer (so the supervisor hears any
 * failure), the secret, the lazy-pages socket listening, daemonizing, the
 * guard, then one loop run: the images arrive from the source (signals
 * already handled), dest_images_in() checks them and sets up the engine,
 * the page source and the socket, the restore runs, faults and the drain
 * install every page, Done is acknowledged.  The phase (enum worker_phase)
 * says where a run is; flags that remain record causes (which part
 * failed), not where it is.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

#include "criuproc.h"
#include "ctrl.h"
#include "daemonize.h"
#include "engine.h"
#include "guard.h"
#include "image.h"
#include "log.h"
#include "lpsock.h"
#include "netsrc.h"
#include "pagesrc.h"
#include "pagesrc_local.h"
#include "progress.h"
#include "restore.h"
#include "staging.h"
#include "tickclock.h"
#include "tls.h"
#include "util.h"

/* Staging slots kept for faults beyond the drain's; faults may also take any free slot. */
#define DEST_FAULT_SLOTS 32
/* After a stop request, how long killed processes get to disappear. */
#define DEST_ABORT_GRACE_S 10
/* How long the source has to acknowledge Done (again after each pause). */
#define DEST_ACK_WAIT_NS (10ull * 1000 * 1000 * 1000)
/* --takeover-fd: how long the guard may take to hand its tasks over. */
#define DEST_TAKE_TIMEOUT_MS 10000
/* After the migration ended, how long a still running criu restore may take. */
#define DEST_RESTORE_WAIT_MS 30000
/* --progress-fd: counters every tick; the final lines get this long to leave. */
#define DEST_PROGRESS_TICK_MS  250
#define DEST_PROGRESS_FLUSH_MS 2000
/*
 * engine_get_stats() sorts the latency samples: with more than this many,
 * counters go out at most once a second so the fault path is not held up.
 */
#define DEST_PROGRESS_CHEAP_SAMPLES 16384

struct dest {
	enum worker_phase phase;	/* changed by worker_set_phase() only */
	enum worker_phase before_pause; /* paused: the phase a resume goes back to */
	struct guard *guard;		/* holds uffd duplicates: see guard.h */
	/* --takeover-fd: the tasks the guard handed over, until the engine adopts them */
	struct guard_task *taken;
	size_t nr_taken;
	bool takeover;
	struct event *src_progress_ev; /* Progress to the source, every second */
	struct dest_opts o;
	struct img_set *imgs;
	struct event_base *base;
	struct staging *st;
	struct pagesrc *src;
	struct engine *eng;
	struct lpsock *lp;
	struct event *sig_ev[2];
	struct event *usr1_ev;	 /* --early: the POST adopted us */
	bool released;		 /* SIGUSR1 came (before the netsrc, possibly) */
	struct event *images_ev; /* the images are in: the rest of the setup, from the loop */
	int ready_fd;		 /* -d: the parent waits for the readiness byte here; -1 */
	struct event *abort_ev;
	uint64_t t_first; /* first userfaultfd received */
	uint64_t t_done;
	int done_status; /* engine's, 1 until it reports */
	bool restore_failed;
	bool stopping;
	/* network source */
	struct netsrc *ns;
	SSL_CTX *tls; /* --transport tls: the data connection's client context */
	struct auth_secret *secret;
	struct event *ack_ev;
	struct tickclock ack_clk; /* the DoneAck wait: time we were stopped is not the source's */
	bool net_failed;
	bool done_acked;
	/* --restore */
	struct restore *rs;
	uint64_t restore_ms;
	bool criu_failed;
	int stop_sig; /* the signal that stopped us, 0: none */
	/* --progress-fd */
	struct progress_writer *pw;
	struct event *prog_tick;
	enum api_state reported;
	bool fin_seen;	     /* the restorer's FIN (or a takeover): the workload runs here */
	uint64_t lazy_total; /* lazy pages of the images */
	uint64_t stats_ns;   /* last engine_get_stats() for counters */
	uint64_t last_lat_count;
	uint64_t last_remaining;
	char error[PROGRESS_ERROR_MAX]; /* why the migration failed: the first cause */
};

static const char *const worker_phase_names[] = {
    [WORKER_IMAGES] = "images", [WORKER_RESTORING] = "restoring", [WORKER_SERVING] = "serving",
    [WORKER_PAUSED] = "paused", [WORKER_FINISHING] = "finishing", [WORKER_DONE] = "done",
    [WORKER_FAILED] = "failed",
};

const char *worker_phase_str(enum worker_phase p)
{
	return (size_t)p < ARRAY_SIZE(worker_phase_names) && worker_phase_names[p]
		   ? worker_phase_names[p]
		   : "?";
}

/* The one place the phase changes: each change logged. */
static void worker_set_phase(struct dest *d, enum worker_phase p)
{
	if (d->phase == p)
		return;
	/* A step forward while paused (the images checked, FIN) is where the resume goes. */
	if (d->phase == WORKER_PAUSED && p < WORKER_PAUSED && p > d->before_pause) {
		log_info("worker: paused, %s once resumed", worker_phase_str(p));
		d->before_pause = p;
		return;
	}
	log_info("worker: %s -> %s", worker_phase_str(d->phase), worker_phase_str(p));
	if (p == WORKER_PAUSED)
		d->before_pause = d->phase;
	d->phase = p;
}

/* The images are not in yet (a pause while they arrive included). */
static bool worker_images_awaited(const struct dest *d)
{
	return (d->phase == WORKER_PAUSED ? d->before_pause : d->phase) == WORKER_IMAGES;
}

static void dest_images_in_cb(evutil_socket_t fd, short what, void *arg);

/* The page source: one branch per transport. */
static int dest_open_source(struct dest *d)
{
	struct pagesrc_local_inject inj;
	int ret;

	if (d->o.local) {
		if (d->o.inject) {
			ret = pagesrc_local_parse_inject(d->o.inject, &inj);
			if (ret < 0)
				return ret;
			log_warn("local source: fault injection on: %s", d->o.inject);
		}
		return pagesrc_local_create(d->base, d->imgs, d->o.inject ? &inj : NULL, &d->src);
	}
	return netsrc_pagesrc(d->ns, d->st, &d->src);
}

/* ---- --progress-fd: what the supervisor hears ---- */

/* One task's read-ahead into the progress line's counters. */
static void dest_ra_task(void *arg, const struct engine_task_info *i)
{
	struct progress_counters *c = arg;
	size_t p;

	for (p = 0; p < ARRAY_SIZE(c->ra_faults); p++)
		c->ra_faults[p] += i->ra_faults[p];
	if (c->nr_ra_tasks >= PROGRESS_RA_TASKS)
		return;
	c->ra_tasks[c->nr_ra_tasks].pid = i->pid;
	c->ra_tasks[c->nr_ra_tasks].pattern = i->ra_pattern;
	c->ra_tasks[c->nr_ra_tasks].window = i->ra_window;
	c->ra_tasks[c->nr_ra_tasks].stride = i->ra_stride;
	c->nr_ra_tasks++;
}

/* The first cause is what the supervisor reports: later errors are its consequences. */
__attribute__((format(printf, 2, 3))) static void dest_fail(struct dest *d, const char *fmt, ...)
{
	va_list ap;

	if (d->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
}

/* States only move forward: an event arriving late cannot take one back. */
static void dest_report(struct dest *d, enum api_state st, int64_t restore_ms)
{
	struct progress_msg m;

	if (progress_state_rank(st) <= progress_state_rank(d->reported))
		return;
	d->reported = st;
	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = st;
	m.restore_ms = restore_ms;
	progress_writer_send(d->pw, &m);
}

/*
 * The workload runs here: the restorer's FIN.  The drain starts at FIN, but
 * is reported after this, so the states stay in their documented order.
 */
static void dest_report_resumed(struct dest *d, int64_t restore_ms)
{
	dest_report(d, API_STATE_POSTCOPY, restore_ms);
	if (d->fin_seen && d->reported == API_STATE_POSTCOPY && engine_remaining(d->eng) > 0)
		dest_report(d, API_STATE_DRAINING, -1);
}

static uint64_t dest_images_lazy_pages(const struct img_set *imgs)
{
	uint64_t bytes = 0;

	for (size_t i = 0; imgs && i < imgs->nr_tasks; i++)
		bytes += imgs->tasks[i].lazy_bytes;
	return bytes / IMG_PAGE_SIZE;
}

/*
 * Fills c from the engine.  Unless forced, false when nothing moved since
 * the last time, or when the latency samples are many and the last look
 * is less than a second old (engine_get_stats() sorts them).
 */
static bool dest_counters(struct dest *d, bool force, struct progress_counters *c)
{
	const struct latstat *lat = engine_fault_latency(d->eng);
	uint64_t now = now_ns(), remaining = engine_remaining(d->eng), settled;
	struct engine_stats s;

	if (!force && d->stats_ns && lat->count == d->last_lat_count &&
	    remaining == d->last_remaining)
		return false;
	if (!force && lat->nr_samples > DEST_PROGRESS_CHEAP_SAMPLES &&
	    now - d->stats_ns < 1000000000ull)
		return false;
	engine_get_stats(d->eng, &s);
	d->stats_ns = now;
	d->last_lat_count = lat->count;
	d->last_remaining = remaining;
	if (!d->lazy_total)
		d->lazy_total = dest_images_lazy_pages(d->imgs);
	/* Fork children add their copy of the parent's pages to the total. */
	c->pages_total = s.lazy_pages > d->lazy_total ? s.lazy_pages : d->lazy_total;
	/* Pages an earlier worker installed (EEXIST after a takeover) are in as well. */
	c->pages_fetched = s.c.pages_fault + s.c.pages_drain + s.c.pages_exist;
	if (c->pages_fetched > c->pages_total)
		c->pages_fetched = c->pages_total;
	/* Before FIN the engine knows only the processes handed over so far. */
	settled = c->pages_fetched + s.c.pages_dropped;
	if (d->fin_seen)
		c->pages_remaining = s.remaining < c->pages_total ? s.remaining : c->pages_total;
	else
		c->pages_remaining = c->pages_total > settled ? c->pages_total - settled : 0;
	c->faults = s.c.faults;
	c->bytes = s.c.bytes;
	c->fault_p50_us = s.fault_count ? (int64_t)(s.fault_p50_ns / 1000) : -1;
	c->fault_p99_us = s.fault_count ? (int64_t)(s.fault_p99_ns / 1000) : -1;
	_Static_assert(LATSTAT_BUCKETS == API_HIST_BUCKETS, "one bucket layout");
	memcpy(c->fault_hist, lat->hist, sizeof(c->fault_hist));
	c->fault_sum_us = lat->sum_ns / 1000;
	c->drain_depth = s.drain_depth;
	c->drain_chunk = (int64_t)s.drain_chunk;
	c->fault_lane_reads = -1;
	c->pages_local = -1;
	c->nr_ra_tasks = 0;
	memset(c->ra_faults, 0, sizeof(c->ra_faults));
	engine_for_each_task(d->eng, dest_ra_task, c);
	if (d->ns) {
		struct netsrc_stats ns;

		netsrc_get_stats(d->ns, &ns);
		if (ns.fault_lane)
			c->fault_lane_reads = (int64_t)ns.lane_reads;
		if (ns.round_regions)
			c->pages_local = (int64_t)(ns.local_bytes / IMG_PAGE_SIZE);
	}
	return true;
}

/* criu restore's own run time, known when it exits (after the FIN). */
static void dest_report_restore_ms(struct dest *d, int64_t restore_ms)
{
	struct progress_msg m;

	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.restore_ms = restore_ms;
	/* A line needs a state or counters; the ticks repeat restore_ms if this one is dropped. */
	if (!d->eng || !dest_counters(d, true, &m.c))
		return;
	m.has_counters = true;
	progress_writer_send(d->pw, &m);
}

static void dest_progress_tick(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;
	struct netsrc_stats ns;
	struct progress_msg m;

	/* netsrc has no "authenticated" callback: the first image data tells. */
	if (d->ns && worker_images_awaited(d)) {
		netsrc_get_stats(d->ns, &ns);
		if (ns.files || ns.file_bytes || ns.regions || ns.tables)
			dest_report(d, API_STATE_RECEIVING, -1);
		return;
	}
	if (!d->eng)
		return;
	progress_msg_init(&m);
	if (!dest_counters(d, false, &m.c))
		return;
	m.has_counters = true;
	if (d->restore_ms && !d->criu_failed)
		m.restore_ms = (int64_t)d->restore_ms;
	progress_writer_send(d->pw, &m);
}

static int dest_progress_start(struct dest *d)
{
	struct timeval tv = {.tv_usec = DEST_PROGRESS_TICK_MS * 1000};
	int ret;

	ret = progress_writer_create(d->base, d->o.progress_fd, &d->pw);
	if (ret < 0)
		goto out;
	d->prog_tick = event_new(d->base, -1, EV_PERSIST, dest_progress_tick, d);
	if (!d->prog_tick || event_add(d->prog_tick, &tv) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	if (!d->o.local)
		dest_report(d, API_STATE_CONNECTING, -1);
out:
	if (ret < 0)
		log_err("--progress-fd %d: %s", d->o.progress_fd, strerror(-ret));
	return ret;
}

/* The verdict with the last counters, in one line that is never dropped. */
static void dest_progress_end(struct dest *d, int code)
{
	struct progress_msg m;

	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = code == 0 ? API_STATE_DONE : API_STATE_FAILED;
	if (code != 0)
		snprintf(m.error, sizeof(m.error), "%s",
			 d->error[0] ? d->error : "the migration failed; see the worker's log");
	if (d->eng)
		m.has_counters = dest_counters(d, true, &m.c);
	progress_writer_send(d->pw, &m);
	progress_writer_flush(d->pw, DEST_PROGRESS_FLUSH_MS);
}

/* ---- lazy-pages socket -> engine ---- */

static int dest_on_task(void *arg, int32_t pid, int uffd, pid_t sender)
{
	struct dest *d = arg;

	if (!d->t_first)
		d->t_first = now_ns();
	return engine_add_task(d->eng, pid, uffd, sender);
}

static void dest_on_zombie(void *arg, int32_t pid)
{
	struct dest *d = arg;

	engine_add_zombie(d->eng, pid);
}

static void dest_on_finished(void *arg)
{
	struct dest *d = arg;

	if (!d->t_first)
		d->t_first = now_ns();
	d->fin_seen = true;
	worker_set_phase(d, WORKER_SERVING);
	engine_restore_finished(d->eng);
	/* The workload runs here now: losing the source pauses it, no longer fails it. */
	if (d->ns)
		netsrc_set_postcopy(d->ns);
	/*
	 * CRIU sends FIN once every task is restored, right before it lets them
	 * run: the downtime ends here, not when criu exits (with -d it still
	 * cleans up, competing for the CPU with the resumed workload).
	 */
	dest_report_resumed(d, -1);
}

static void dest_abort_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;

	log_err("stopped processes did not disappear within %d s; exiting anyway",
		DEST_ABORT_GRACE_S);
	event_base_loopexit(d->base, NULL);
}

/* Stop everything: kill what cannot complete, then leave once it is gone. */
static void dest_stop(struct dest *d, const char *reason)
{
	struct timeval tv = {.tv_sec = DEST_ABORT_GRACE_S};

	if (d->stopping)
		return;
	d->stopping = true;
	engine_abort(d->eng, reason);
	d->abort_ev = evtimer_new(d->base, dest_abort_timeout_cb, d);
	if (d->abort_ev)
		evtimer_add(d->abort_ev, &tv);
}

static void dest_on_lp_error(void *arg, int err, const char *reason)
{
	struct dest *d = arg;

	if (lpsock_finished(d->lp)) {
		log_warn("lazy-pages socket after restore finished: %s (ignored)", reason);
		return;
	}
	/* criu restore fails now (EPIPE on its next send) and kills its tasks; so do we. */
	d->restore_failed = true;
	log_err("restore failed: %s", reason);
	dest_fail(d, "restore failed: %s", reason);
	dest_stop(d, "restore failed");
}

static const struct lpsock_ops dest_lp_ops = {
    .task = dest_on_task,
    .zombie = dest_on_zombie,
    .finished = dest_on_finished,
    .error = dest_on_lp_error,
};

/* ---- engine -> owner ---- */

static void dest_on_task_failed(void *arg, int32_t pid, pid_t real_pid, int err)
{
	log_err("pid %" PRId32 ": migration failed for this process (%s)", pid, strerror(-err));
	dest_fail(arg, "restored process %" PRId32 " could not get its pages and was stopped (%s)",
		  pid, strerror(-err));
}

/* The source has wait_ns more to acknowledge Done. */
static int dest_ack_wait(struct dest *d, uint64_t wait_ns)
{
	struct timeval tv = {.tv_sec = (time_t)(wait_ns / 1000000000ull),
			     .tv_usec = (suseconds_t)(wait_ns % 1000000000ull / 1000)};

	tickclock_init(&d->ack_clk, wait_ns, now_ns());
	return evtimer_add(d->ack_ev, &tv);
}

static void dest_ack_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;
	uint64_t gap = tickclock_gap(&d->ack_clk, now_ns(), "waiting for the source's DoneAck");

	/* Stopped meanwhile: the DoneAck may be waiting unread; the wait goes on as long. */
	if (gap && dest_ack_wait(d, gap) == 0)
		return;
	/* Done goes out (again) once the source is back. */
	if (d->ns && netsrc_pause_reason(d->ns) && dest_ack_wait(d, DEST_ACK_WAIT_NS) == 0)
		return;
	log_err("the source did not acknowledge Done; it keeps its checkpoint");
	dest_fail(d, "the source did not acknowledge Done; it keeps its checkpoint");
	event_base_loopexit(d->base, NULL);
}

static void dest_on_done(void *arg, int status)
{
	struct dest *d = arg;
	struct engine_stats s;

	d->done_status = status;
	d->t_done = now_ns();
	if (!d->ns || d->net_failed) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	if (status != 0) {
		dest_fail(d, "the restored processes could not get all their pages");
		/* Told apart on the source: stopped on purpose, not a broken restore. */
		if (d->stop_sig)
			netsrc_abort(d->ns, CTRL_ABORT_CANCELLED,
				     "migration aborted on the destination");
		else
			netsrc_abort(d->ns, CTRL_ABORT_RESTORE,
				     "the restored processes could not get all their pages");
		event_base_loopexit(d->base, NULL);
		return;
	}
	/* Every page is in: let the source release its checkpoint, then leave. */
	engine_get_stats(d->eng, &s);
	if (netsrc_send_done(d->ns, s.c.pages_fault + s.c.pages_drain, s.c.bytes) < 0) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->ack_ev = evtimer_new(d->base, dest_ack_timeout_cb, d);
	if (!d->ack_ev || dest_ack_wait(d, DEST_ACK_WAIT_NS) < 0)
		event_base_loopexit(d->base, NULL);
}

/* ---- rdmig-source -> owner ---- */

static void dest_net_images_ready(void *arg)
{
	struct dest *d = arg;

	dest_report(d, API_STATE_RECEIVING, -1);
	/* The rest of the setup runs from the loop, once netsrc's callback has returned. */
	event_active(d->images_ev, EV_TIMEOUT, 1);
}

static void dest_net_failed(void *arg, int err, const char *reason)
{
	struct dest *d = arg;

	d->net_failed = true;
	if (worker_images_awaited(d))
		dest_fail(d, "cannot get the images from the source: %s", reason);
	else
		dest_fail(d, "%s", reason);
	if (worker_images_awaited(d)) {
		/*
		 * A connect that fails at once does so before the loop runs, and a
		 * loop starting clears the break flag; the exit is an event, so it
		 * ends a loop that has not started yet.
		 */
		event_base_loopbreak(d->base);
		event_base_loopexit(d->base, NULL);
		return;
	}
	/* The page source reported itself gone: the engine stops what still needs pages. */
	if (d->eng && engine_remaining(d->eng) == 0 && d->done_status == 0)
		event_base_loopexit(d->base, NULL);
}

static void dest_net_done_acked(void *arg, bool ok, const char *reason)
{
	struct dest *d = arg;

	d->done_acked = ok;
	if (ok)
		log_info("the source confirmed every page arrived and released its checkpoint");
	else
		log_err("the source refused Done: %s", reason ? reason : "no reason");
	if (!ok)
		dest_fail(d, "the source refused Done: %s", reason ? reason : "no reason");
	event_base_loopexit(d->base, NULL);
}

static void dest_net_lane_up(void *arg)
{
	struct dest *d = arg;

	if (d->eng)
		engine_set_fault_lane(d->eng, true);
}

/* A paused line carries the reason where a failed one carries the error. */
static void dest_report_pause(struct dest *d, const char *reason)
{
	struct progress_msg m;

	if (!d->pw || d->error[0])
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = reason ? API_STATE_PAUSED : d->reported;
	if (reason)
		snprintf(m.error, sizeof(m.error), "%s", reason);
	if (d->eng)
		m.has_counters = dest_counters(d, true, &m.c);
	progress_writer_send(d->pw, &m);
}

static void dest_net_paused(void *arg, const char *reason)
{
	struct dest *d = arg;

	if (d->phase < WORKER_PAUSED)
		worker_set_phase(d, WORKER_PAUSED);
	if (d->eng) {
		engine_set_paused(d->eng, true);
		engine_set_fault_lane(d->eng, false);
	}
	dest_report_pause(d, reason);
}

static void dest_net_resumed(void *arg)
{
	struct dest *d = arg;

	if (d->phase == WORKER_PAUSED)
		worker_set_phase(d, d->before_pause);
	if (d->eng)
		engine_set_paused(d->eng, false);
	dest_report_pause(d, NULL);
}

/*
 * Paused too long: the processes are stopped, never killed, and keep their
 * userfaultfds (so no page reads as zero); the checkpoint stays on the
 * source.  rdmig-dest stays until it is stopped (SIGTERM, an abort), which
 * ends them as any failed migration does.
 */
static void dest_net_pause_expired(void *arg, const char *reason)
{
	struct dest *d = arg;
	struct progress_msg m;
	int n = d->eng ? engine_stop_processes(d->eng) : 0;

	if (d->takeover && !d->eng)
		dest_fail(d,
			  "%s; the guard stops the process tree(s) (SIGSTOP), the checkpoint "
			  "stays on the source",
			  reason);
	else
		dest_fail(d,
			  "%s; %d process tree(s) stopped (SIGSTOP), the checkpoint stays on the "
			  "source",
			  reason, n);
	log_err("%s", d->error);
	/* Taking over, the tables never came: leave; the guard stops the processes. */
	if (worker_images_awaited(d))
		event_base_loopbreak(d->base);
	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = API_STATE_FAILED;
	snprintf(m.error, sizeof(m.error), "%s", d->error);
	if (d->eng)
		m.has_counters = dest_counters(d, true, &m.c);
	progress_writer_send(d->pw, &m);
}

static const struct netsrc_ops dest_net_ops = {
    .images_ready = dest_net_images_ready,
    .failed = dest_net_failed,
    .done_acked = dest_net_done_acked,
    .lane_up = dest_net_lane_up,
    .paused = dest_net_paused,
    .resumed = dest_net_resumed,
    .pause_expired = dest_net_pause_expired,
};

/*
 * Connects to rdmig-source; the images arrive while the loop runs, and
 * dest_net_images_ready() then goes on with the setup (dest_images_in()).
 */
static int dest_fetch_images(struct dest *d)
{
	struct netsrc_config nc = {
	    .kind = d->o.kind,
	    .host = d->o.src_host,
	    .port = d->o.src_port,
	    .migration_id = d->o.migration_id,
	    .images_dir = d->o.images_dir,
	    .verify = d->o.verify,
	    .connect_timeout_s = d->o.connect_timeout_s,
	    .dead_after_s = d->o.dead_after_s,
	    .pause_limit_s = d->o.pause_limit_s,
	    .max_reads = d->o.max_reads,
	    .one_lane = d->o.one_lane,
	    .drain_qps = d->o.drain_qps,
	    .takeover = d->takeover,
	    .early = d->o.early,
	};
	int ret;

	if (d->o.data_tls) {
		ret = tls_ctx_new(TLS_CLIENT, &d->o.tls, &d->tls);
		if (ret < 0) {
			dest_fail(d, "TLS: cannot load --tls-cert, --tls-key or --tls-ca");
			return ret;
		}
		nc.tls = d->tls;
	}
	/* --secret-fd was read at startup. */
	if (!d->secret) {
		ret = auth_secret_load_file(d->o.secret_file, &d->secret);
		if (ret < 0) {
			log_err("secret file %s: %s", d->o.secret_file, strerror(-ret));
			dest_fail(d, "secret file %s: %s", d->o.secret_file, strerror(-ret));
			return ret;
		}
	}
	nc.secret = d->secret;
	d->images_ev = event_new(d->base, -1, 0, dest_images_in_cb, d);
	if (!d->images_ev)
		return -ENOMEM;
	ret = netsrc_connect(d->base, &nc, &dest_net_ops, d, &d->ns);
	if (ret == 0 && d->released)
		netsrc_release(d->ns);
	return ret;
}

static void dest_on_task_added(void *arg, const struct engine_task_ref *t)
{
	struct dest *d = arg;
	struct guard_add_info a = {.id = t->id,
				   .parent_id = t->parent_id,
				   .pid = t->pid,
				   .real_pid = t->real_pid,
				   .pidfd_own = t->pidfd_own};

	if (d->guard)
		guard_add(d->guard, &a, t->uffd, t->pidfd);
}

static void dest_on_layout_changed(void *arg, uint32_t id, const struct uffd_layout *l)
{
	struct dest *d = arg;

	if (d->guard)
		guard_event(d->guard, id, l);
}

static void dest_on_task_settled(void *arg, uint32_t id)
{
	struct dest *d = arg;

	if (d->guard)
		guard_forget(d->guard, id);
}

static const struct engine_ops dest_engine_ops = {
    .task_failed = dest_on_task_failed,
    .done = dest_on_done,
    .task_added = dest_on_task_added,
    .layout_changed = dest_on_layout_changed,
    .task_settled = dest_on_task_settled,
};

static void dest_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct dest *d = arg;
	uint64_t left;

	if (d->stopping) {
		log_err("signal %d again: exiting now", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->stop_sig = (int)sig;
	dest_fail(d, "stopped by signal %d", (int)sig);
	/* The images still arriving: nothing was restored, the source keeps its checkpoint. */
	if (!d->eng) {
		log_err("signal %d before the images were in: nothing was restored", (int)sig);
		d->stopping = true;
		if (d->ns && !d->net_failed)
			netsrc_abort(d->ns, CTRL_ABORT_CANCELLED,
				     "migration aborted on the destination");
		event_base_loopexit(d->base, NULL);
		return;
	}
	left = engine_remaining(d->eng);
	if (left)
		log_err("signal %d with %" PRIu64 " lazy pages not installed: killing the restored "
			"processes that still need them (a process whose pid is unknown stays "
			"blocked until rdmig-dest exits)",
			(int)sig, left);
	else
		log_warn("signal %d: stopping", (int)sig);
	dest_stop(d, "signal");
}

/* ---- --restore: criu restore -> owner ---- */

static void dest_on_restore_exit(void *arg, const struct restore_result *res)
{
	struct dest *d = arg;

	d->restore_ms = res->ms;
	if (res->ok) {
		if (res->root_pid)
			log_info("criu restore done in %" PRIu64 " ms: restored root pid %d",
				 res->ms, (int)res->root_pid);
		else
			log_info("criu restore done in %" PRIu64 " ms: restored root pid unknown",
				 res->ms);
		if (!d->stopping)
			dest_report_restore_ms(d, (int64_t)res->ms);
		return;
	}
	d->criu_failed = true;
	d->restore_failed = true;
	if (res->log_err < 0)
		log_err("restore failed: criu restore %s after %" PRIu64 " ms; its log %s: %s",
			res->how, res->ms, res->log_path, strerror(-res->log_err));
	else
		log_err("restore failed: criu restore %s after %" PRIu64 " ms; see %s: %s",
			res->how, res->ms, res->log_path,
			res->last_error[0] ? res->last_error : "(no Error line)");
	dest_fail(d, "criu restore %s after %" PRIu64 " ms; see %s: %s", res->how, res->ms,
		  res->log_path,
		  res->log_err < 0 ? strerror(-res->log_err)
				   : (res->last_error[0] ? res->last_error : "(no Error line)"));
	/* The source keeps its checkpoint: the workload can be restored there again. */
	if (d->ns && !d->net_failed && !d->done_acked)
		netsrc_abort(d->ns, CTRL_ABORT_RESTORE, "criu restore failed on the destination");
	if (d->phase < WORKER_FINISHING)
		dest_stop(d, "criu restore failed");
}

static const struct restore_ops dest_restore_ops = {
    .exited = dest_on_restore_exit,
};

/* Runs criu restore once the socket listens and the readiness byte is out. */
static int dest_start_restore(struct dest *d)
{
	struct restore_config rc = {
	    .criu = d->o.criu,
	    .images_dir = d->o.images_dir,
	    .work_dir = d->o.work_dir,
	    .log_level = d->o.criu_log_level,
	    .extra = d->o.criu_opts,
	    .nr_extra = d->o.nr_criu_opts,
	    .runc = d->o.runc,
	    .container = d->o.container,
	    .bundle = d->o.bundle,
	    .runc_root = d->o.runc_root,
	};

	return restore_start(d->base, &rc, &dest_restore_ops, d, &d->rs);
}

/* ---- the guard, and taking over from it ---- */

/*
 * One-shot or a supervisor's first worker: fork the guard (with the
 * supervisor's takeover channel, if any).  A worker taking over: receive
 * the tasks from the guard of the worker that died, which serves us now.
 */
static int dest_start_guard(struct dest *d)
{
	int ret;

	if (d->takeover) {
		ret = guard_take(d->o.takeover_fd, DEST_TAKE_TIMEOUT_MS, &d->guard, &d->taken,
				 &d->nr_taken);
		close(d->o.takeover_fd);
		if (ret < 0) {
			log_err("cannot take over from the guard: %s%s", strerror(-ret),
				ret == -EBUSY ? " (a worker still serves the migration)" : "");
			dest_fail(d, "cannot take over from the guard: %s", strerror(-ret));
			return ret;
		}
		log_info("taking over: the guard handed over %zu task(s) of the worker that died",
			 d->nr_taken);
		return 0;
	}
	ret = guard_start(d->o.guard_fd, d->o.pause_limit_s, &d->guard);
	if (d->o.guard_fd >= 0)
		close(d->o.guard_fd);
	if (ret < 0)
		log_warn("no guard process (%s): if rdmig-dest dies mid-migration, restored "
			 "processes read zeros where pages are missing",
			 strerror(-ret));
	return 0;
}

/*
 * The engine adopts every task handed over (each then wakes its waiting
 * threads), and the drain starts at once: the workload ran all along.
 */
static void dest_adopt(struct dest *d)
{
	d->t_first = now_ns();
	for (size_t i = 0; i < d->nr_taken; i++) {
		struct guard_task *g = &d->taken[i];
		struct engine_task_ref ref = {.id = g->id,
					      .parent_id = g->parent_id,
					      .pid = g->pid,
					      .real_pid = g->real_pid,
					      .uffd = g->uffd,
					      .pidfd = g->pidfd,
					      .pidfd_own = g->pidfd_own};

		/* The engine's now, also if it cannot adopt the task. */
		g->uffd = -1;
		g->pidfd = -1;
		engine_adopt_task(d->eng, &ref, g->events, g->nr_events, g->layout_unknown);
	}
	guard_tasks_free(d->taken, d->nr_taken);
	d->taken = NULL;
	d->nr_taken = 0;
	d->fin_seen = true;
	worker_set_phase(d, WORKER_SERVING);
	engine_restore_finished(d->eng);
	dest_report_resumed(d, -1);
}

/* Tells the source how far the migration is, for its API (pages fetched, faults). */
static void dest_src_progress_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;
	struct engine_counters c;

	if (!d->ns || d->net_failed || !d->eng)
		return;
	engine_get_counters(d->eng, &c);
	netsrc_send_progress(d->ns, c.pages_fault + c.pages_drain, c.bytes, c.faults_lazy);
}

/*
 * The READ buffers (staging.h), made before the images arrive: faulting in
 * 10 MiB took 0.28 s of a TCG guest's restore path, which for a worker
 * started at the reservation now falls before the freeze.
 */
static int dest_staging_make(struct dest *d)
{
	uint64_t slot = d->o.ecfg.drain_chunk;

	if (d->st)
		return 0;
	if ((uint64_t)d->o.ecfg.readahead_pages * IMG_PAGE_SIZE > slot)
		slot = (uint64_t)d->o.ecfg.readahead_pages * IMG_PAGE_SIZE;
	return staging_create(slot, d->o.ecfg.drain_depth + DEST_FAULT_SLOTS, &d->st);
}

static int dest_setup_loop(struct dest *d)
{
	int ret;

	if (!d->base)
		d->base = event_base_new();
	if (!d->base)
		return -ENOMEM;
	ret = dest_staging_make(d);
	if (ret < 0)
		return ret;
	ret = dest_open_source(d);
	if (ret < 0)
		return ret;
	/*
	 * One-sided READs cost the source nothing: let faults overtake the
	 * drain there.  Over TCP every request costs the source's CPU, and a
	 * drain narrowed to one small request starved (performance.md): only
	 * down to --drain-floor full requests, and only with a fault lane.
	 */
	d->o.ecfg.drain_yields =
	    !d->o.local &&
	    (d->o.kind == XPORT_RDMA || (d->o.kind == XPORT_TCP && d->o.ecfg.drain_floor > 0));
	d->o.ecfg.yield_lane_only = d->o.kind == XPORT_TCP;
	if (d->ns) {
		struct netsrc_stats ns;

		netsrc_get_stats(d->ns, &ns);
		d->o.ecfg.fault_lane = ns.fault_lane;
	}
	ret = engine_create(d->base, d->imgs, d->src, d->st, &d->o.ecfg, &dest_engine_ops, d,
			    &d->eng);
	if (ret < 0)
		return ret;
	/* Taking over, the processes are restored already: no lazy-pages socket. */
	ret = d->lp ? lpsock_start(d->lp, d->base, d->imgs, &dest_lp_ops, d) : 0;
	if (ret < 0)
		return ret;
	if (d->ns) {
		struct timeval tv = {.tv_sec = 1};

		d->src_progress_ev = event_new(d->base, -1, EV_PERSIST, dest_src_progress_cb, d);
		if (!d->src_progress_ev || event_add(d->src_progress_ev, &tv) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- the end ---- */

static void dest_print_task(void *arg, const struct engine_task_info *i)
{
	char forked[48] = "";

	if (i->parent_id)
		snprintf(forked, sizeof(forked), " (forked from task %" PRIu32 ")", i->parent_id);
	log_info("task %" PRIu32 ": pid %" PRId32 "%s process %d: %s, lazy %" PRIu64
		 ", fault %" PRIu64 ", drain %" PRIu64 ", zero %" PRIu64 ", dropped %" PRIu64
		 ", left %" PRIu64 ", faults %" PRIu64 " (lazy %" PRIu64 "), fault p50 %" PRIu64
		 " us p99 %" PRIu64 " us, readahead %s (window %" PRIu32 "; sequential %" PRIu64
		 ", strided %" PRIu64 ", random %" PRIu64 ")",
		 i->id, i->pid, forked, (int)i->real_pid, engine_task_state_name(i->state),
		 i->lazy_pages, i->c.pages_fault, i->c.pages_drain, i->c.zero_pages,
		 i->c.pages_dropped, i->remaining, i->c.faults, i->c.faults_lazy,
		 i->fault_p50_ns / 1000, i->fault_p99_ns / 1000,
		 readahead_pattern_str(i->ra_pattern), i->ra_window, i->ra_faults[RA_SEQUENTIAL],
		 i->ra_faults[RA_STRIDED], i->ra_faults[RA_RANDOM]);
}

static void dest_summary(struct dest *d, int code)
{
	struct engine_stats s;
	char hist[512];
	uint64_t ms = d->t_first && d->t_done > d->t_first ? (d->t_done - d->t_first) / 1000000 : 0;
	double mbps = 0;
	char restore[40] = "", verify[80] = "";
	struct netsrc_stats ns;

	if (!d->eng)
		return;
	if (d->o.restore)
		snprintf(restore, sizeof(restore), " restore_ms=%" PRIu64, d->restore_ms);
	/* This worker's pages checked by their page tag, and parts it could not check. */
	if (d->ns && d->o.verify) {
		netsrc_get_stats(d->ns, &ns);
		snprintf(verify, sizeof(verify),
			 " verified=%" PRIu64 " unverified=%" PRIu64 " verify_failures=%" PRIu64,
			 ns.pages_verified, ns.unit_parts_unverified, ns.verify_failures);
	}
	engine_for_each_task(d->eng, dest_print_task, d);
	engine_get_stats(d->eng, &s);
	if (s.fault_count)
		log_info("fault latency histogram (lower bound in us:count): %s",
			 latstat_format_hist(engine_fault_latency(d->eng), hist, sizeof(hist)));
	if (s.drain_ns)
		mbps = (double)s.c.pages_drain * IMG_PAGE_SIZE / 1e6 / ((double)s.drain_ns / 1e9);
	log_info("summary: status=%s tasks=%" PRIu32 " forks=%" PRIu64 " zombies=%" PRIu32
		 " failed=%" PRIu32 " lazy=%" PRIu64 " fault=%" PRIu64 " drain=%" PRIu64
		 " zero=%" PRIu64 " dropped=%" PRIu64 " left=%" PRIu64 " remaps=%" PRIu64
		 " removes=%" PRIu64 " unmaps=%" PRIu64 " adopted=%" PRIu64 " replayed=%" PRIu64
		 " exist=%" PRIu64 " bytes=%" PRIu64 " time_ms=%" PRIu64 " faults=%" PRIu64
		 " lazy_faults=%" PRIu64 " timed=%" PRIu64 " fault_p50_us=%" PRIu64
		 " fault_p99_us=%" PRIu64 " drain_MBps=%.1f%s%s",
		 code == 0 ? "ok" : "failed", s.tasks, s.c.forks, s.zombies, s.tasks_failed,
		 s.lazy_pages, s.c.pages_fault, s.c.pages_drain, s.c.zero_pages, s.c.pages_dropped,
		 s.remaining, s.c.remaps, s.c.removes, s.c.unmaps, s.c.adopted, s.c.replayed,
		 s.c.pages_exist, s.c.bytes, ms, s.c.faults, s.c.faults_lazy, s.fault_count,
		 s.fault_p50_ns / 1000, s.fault_p99_ns / 1000, mbps, restore, verify);
	if (d->ns) {
		netsrc_get_stats(d->ns, &ns);
		log_info("lanes: fault_lane=%s lane_reads=%" PRIu64 " reads=%" PRIu64
			 " drain_depth=%" PRIu32 " drain_chunk=%" PRIu64 " drain_shrinks=%" PRIu64
			 " drain_grows=%" PRIu64 " drain_qps=%u",
			 ns.fault_lane ? "yes" : "no", ns.lane_reads, ns.reads, s.drain_depth,
			 s.drain_chunk, s.drain_shrinks, s.drain_grows, ns.drain_qps);
		log_info("pauses: count=%" PRIu32 " paused_ms=%" PRIu64, ns.pauses,
			 ns.paused_ns / 1000000);
		/* FEAT_ROUNDS: what was copied before the freeze, and what it served. */
		if (ns.round_regions)
			log_info("rounds: copied_regions=%" PRIu64 " copied_bytes=%" PRIu64
				 " used_regions=%" PRIu64 " local_reads=%" PRIu64
				 " local_bytes=%" PRIu64,
				 ns.round_regions, ns.round_bytes, ns.round_regions_used,
				 ns.local_reads, ns.local_bytes);
	}
}

/* --latency-out: the engine's fault latency samples, one per line (ns). */
static void dest_write_latencies(struct dest *d)
{
	const struct latstat *ls;
	FILE *f;

	if (!d->o.latency_out || !d->eng)
		return;
	ls = engine_fault_latency(d->eng);
	f = fopen(d->o.latency_out, "we");
	if (!f) {
		log_warn("--latency-out %s: %s", d->o.latency_out, strerror(errno));
		return;
	}
	for (size_t i = 0; i < ls->nr_samples; i++)
		fprintf(f, "%" PRIu64 "\n", ls->samples[i]);
	if (fclose(f) != 0)
		log_warn("--latency-out %s: %s", d->o.latency_out, strerror(errno));
}

static void dest_cleanup(struct dest *d)
{
	bool net = d->ns != NULL;

	/* The source first: after it nothing writes into staging or completes a request. */
	restore_free(d->rs);
	if (d->src_progress_ev)
		event_free(d->src_progress_ev);
	/* Without a release, the guard now kills the processes still missing pages. */
	guard_free(d->guard);
	pagesrc_destroy(d->src);
	engine_free(d->eng);
	netsrc_free(d->ns);
	auth_secret_free(d->secret);
	if (d->ack_ev)
		event_free(d->ack_ev);
	staging_free(d->st);
	lpsock_free(d->lp);
	if (d->prog_tick)
		event_free(d->prog_tick);
	progress_writer_free(d->pw);
	for (int i = 0; i < 2; i++)
		if (d->sig_ev[i])
			event_free(d->sig_ev[i]);
	if (d->usr1_ev) {
		sigset_t usr1;

		/*
		 * The POST's adoption may come after we are done (a small
		 * migration served before it): freeing the event restores
		 * SIGUSR1's default action, which would kill us at our end.
		 */
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		sigprocmask(SIG_BLOCK, &usr1, NULL);
		event_free(d->usr1_ev);
	}
	if (d->abort_ev)
		event_free(d->abort_ev);
	if (d->images_ev)
		event_free(d->images_ev);
	if (net && d->base)
		xport_drain_closing(d->base, 3000);
	if (d->base)
		event_base_free(d->base);
	SSL_CTX_free(d->tls);
	image_set_free(d->imgs);
	guard_tasks_free(d->taken, d->nr_taken);
}

static void dest_release_cb(evutil_socket_t sig, short what, void *arg)
{
	struct dest *d = arg;

	log_info("the handover's POST adopted this worker: the checkpoint exists");
	d->released = true;
	if (d->ns)
		netsrc_release(d->ns);
}

/*
 * SIGINT and SIGTERM as loop events, for the whole run (the images' arrival
 * included); with --early SIGUSR1 too, which the supervisor spawned us with
 * blocked so that one sent before this point waits, pending, until now.
 */
static int dest_catch_signals(struct dest *d)
{
	static const int sigs[2] = {SIGINT, SIGTERM};
	sigset_t usr1;

	for (int i = 0; i < 2; i++) {
		d->sig_ev[i] = evsignal_new(d->base, sigs[i], dest_signal_cb, d);
		if (!d->sig_ev[i] || event_add(d->sig_ev[i], NULL) < 0)
			return -ENOMEM;
	}
	if (!d->o.early)
		return 0;
	d->usr1_ev = evsignal_new(d->base, SIGUSR1, dest_release_cb, d);
	if (!d->usr1_ev || event_add(d->usr1_ev, NULL) < 0)
		return -ENOMEM;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	return sigprocmask(SIG_UNBLOCK, &usr1, NULL) < 0 ? -errno : 0;
}

/*
 * The images are here (received, or --local given): checks them, sets up
 * the engine, the page source and the socket, reports readiness, then the
 * restore runs (or, taking over, the engine adopts the guard's tasks).  On
 * failure the phase is failed and the caller ends the run.
 */
static int dest_images_in(struct dest *d)
{
	int ret;

	if (!d->o.local) {
		ret = image_set_open(d->o.images_dir, &d->imgs);
		if (ret < 0) {
			log_err("received images in %s: %s", d->o.images_dir, strerror(-ret));
			dest_fail(d, "the received images in %s do not parse: %s", d->o.images_dir,
				  strerror(-ret));
			netsrc_abort(d->ns, CTRL_ABORT_IMAGES, "the received images do not parse");
			goto out;
		}
		/* A lazy dump's tables are its staging units: cut the lazy ranges alike. */
		if (netsrc_lazy_dump(d->ns))
			ret = image_set_cut_lazy(d->imgs, CTRL_STAGE_UNIT);
		if (ret == 0)
			ret = netsrc_check_images(d->ns, d->imgs);
		if (ret < 0) {
			dest_fail(d, "the received images and the source's range tables disagree");
			netsrc_abort(d->ns, CTRL_ABORT_IMAGES,
				     "the images and the range tables disagree");
			goto out;
		}
	}
	ret = dest_setup_loop(d);
	if (ret < 0) {
		log_err("setup: %s", strerror(-ret));
		dest_fail(d, "setup: %s", strerror(-ret));
		goto out;
	}
	if (d->o.pidfile && (ret = dest_write_pidfile(d->o.pidfile)) < 0)
		goto out;
	dest_report_ready(d->o.status_fd, true);
	dest_report_ready(d->ready_fd, true);
	d->ready_fd = -1;
	if (d->takeover) {
		dest_adopt(d);
		goto out;
	}
	/* Images in, socket listening: the restore runs (ours) or may start (external). */
	worker_set_phase(d, WORKER_RESTORING);
	dest_report(d, API_STATE_RESTORING, -1);
	if (d->o.restore && (ret = dest_start_restore(d)) < 0) {
		log_err("restore failed: criu restore could not be started: %s", strerror(-ret));
		dest_fail(d, "criu restore could not be started: %s", strerror(-ret));
		if (d->ns)
			netsrc_abort(d->ns, CTRL_ABORT_RESTORE,
				     "criu restore could not be started on the destination");
		goto out;
	}
out:
	if (ret < 0)
		worker_set_phase(d, WORKER_FAILED);
	return ret;
}

static void dest_images_in_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;

	/* A signal (or the source's failure) in the same loop pass ends the run instead. */
	if (d->stopping || d->net_failed)
		return;
	if (dest_images_in(d) < 0)
		event_base_loopexit(d->base, NULL);
}

int worker_run(const struct dest_opts *o)
{
	struct dest d = {
	    .o = *o,
	    .phase = WORKER_IMAGES,
	    .done_status = 1,
	    .reported = API_STATE_PENDING,
	    .ready_fd = -1,
	};
	int ret, code = 1;

	d.takeover = d.o.takeover_fd >= 0;
	if (d.o.progress_fd >= 0) {
		/* Before anything can fail, so the supervisor hears why; never with -d. */
		d.base = event_base_new();
		if (!d.base || dest_progress_start(&d) < 0)
			goto out;
	}
	if (d.o.secret_fd >= 0) {
		ret = auth_secret_read_fd(d.o.secret_fd, &d.secret);
		close(d.o.secret_fd);
		if (ret < 0) {
			dest_fail(&d, "no usable secret on --secret-fd: %s", strerror(-ret));
			goto out;
		}
	}
	if (d.o.local) {
		ret = image_set_open(d.o.images_dir, &d.imgs);
		if (ret < 0) {
			log_err("images %s: %s", d.o.images_dir, strerror(-ret));
			goto out;
		}
	}
	ret = d.takeover ? 0 : lpsock_listen(d.o.work_dir, &d.lp);
	if (ret < 0)
		goto out;
	if (d.o.daemon) {
		if (!d.o.log_file)
			log_info("daemonizing; the log goes to /dev/null (use -o FILE)");
		ret = dest_daemonize(&d.ready_fd);
		if (ret < 0) {
			log_err("daemonize: %s", strerror(-ret));
			goto out;
		}
		if (!d.o.log_file)
			dest_redirect_log("/dev/null");
	}
	/* After daemonizing (the guard watches this very process), before any RDMA resource. */
	if (dest_start_guard(&d) < 0)
		goto out;
	/* After daemonizing: a forked child must not inherit RDMA resources. */
	if (!d.base)
		d.base = event_base_new();
	if (!d.base || (ret = dest_catch_signals(&d)) < 0) {
		log_err("setup: %s", strerror(ENOMEM));
		dest_fail(&d, "setup: %s", strerror(ENOMEM));
		goto out;
	}
	ret = dest_staging_make(&d);
	if (ret < 0) {
		log_err("staging buffers: %s", strerror(-ret));
		dest_fail(&d, "staging buffers: %s", strerror(-ret));
		goto out;
	}
	if (d.o.local) {
		if (dest_images_in(&d) < 0)
			goto out;
	} else if (dest_fetch_images(&d) < 0) {
		log_err("cannot get the images from the source; nothing was restored");
		dest_fail(&d, "cannot get the images from the source; nothing was restored");
		goto out;
	}
	event_base_dispatch(d.base);
	if (d.phase == WORKER_FAILED)
		goto out;
	if (worker_images_awaited(&d)) {
		/* A signal said so already. */
		if (!d.stopping) {
			log_err("cannot get the images from the source; nothing was restored");
			dest_fail(&d,
				  "cannot get the images from the source; nothing was restored");
		}
		goto out;
	}
	worker_set_phase(&d, WORKER_FINISHING);
	if (!d.t_done)
		d.t_done = now_ns();
	/* The pages may all be in before criu itself has exited. */
	if (restore_running(d.rs))
		restore_wait(d.rs, DEST_RESTORE_WAIT_MS);
	code = d.done_status == 0 && !d.restore_failed && !d.stopping && !d.criu_failed ? 0 : 1;
	if (d.ns && code == 0 && !d.done_acked)
		code = 1;
	dest_summary(&d, code);
	dest_write_latencies(&d);
	if (code == 0 && d.guard)
		guard_release(d.guard);
out:
	worker_set_phase(&d, code == 0 ? WORKER_DONE : WORKER_FAILED);
	dest_report_ready(d.ready_fd, false);
	dest_progress_end(&d, code);
	dest_cleanup(&d);
	return code;
}
