// SPDX-License-Identifier: GPL-2.0-or-later
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "drainctl.h"
#include "lazyset.h"
#include "log.h"
#include "proctree.h"
#include "tickclock.h"
#include "uffd.h"
#include "util.h"

#define PG LAZY_PAGE_SIZE
/* Timeouts, liveness probes and the fallback retry run this often. */
#define ENGINE_TICK_MS 100
/* A COPY deferred by EAGAIN waits for the mm-changing thread to run this long. */
#define ENGINE_RETRY_US 200
/*
 * A COPY that finds no VMA waits this long for the remap or unmap event
 * that explains it before the page counts as dropped.
 */
#define ENGINE_ENOENT_WAIT_NS (1000ull * 1000 * 1000)
/* Per-task latency samples (the engine-wide array is cfg.latency_samples). */
#define ENGINE_TASK_SAMPLES 4096
/* A resolved fault that waited this long is logged (debug). */
#define ENGINE_SLOW_FAULT_NS (100ull * 1000 * 1000)
/* Faults remembered for latency; more are counted but not timed. */
#define ENGINE_MAX_WAITERS 4096

/* glibc's sys/queue.h lacks it. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1);             \
	     (var) = (tvar))
#endif

enum ereq_state {
	ER_QUEUED,    /* fault request waiting for a staging slot */
	ER_SUBMITTED, /* with the page source */
	ER_PARKED,    /* data in the slot, COPY deferred by EAGAIN */
	ER_ORPHANED,  /* timed out; the source still owns the slot */
};

struct etask;

struct ereq {
	struct pagesrc_req pr;
	struct etask *task;
	enum ereq_state state;
	bool fault;
	int slot;
	uint32_t retries;
	uint64_t start_ns;	 /* of this attempt, for the fetch timeout */
	uint64_t enoent_ns;	 /* when its COPY first found no VMA; 0: never */
	TAILQ_ENTRY(ereq) qlink; /* engine fault queue, task parked list, or orphans */
	TAILQ_ENTRY(ereq) alink; /* engine active list (queued or submitted), oldest first */
};

TAILQ_HEAD(ereq_list, ereq);

/* A fault on a page that is being fetched: timed until its COPY. */
struct waiter {
	uint64_t addr;
	uint64_t t0;
};

struct etask {
	struct engine *eng;
	struct readahead ra; /* its faults' pattern and read-ahead window */
	uint32_t id;
	uint32_t parent_id;
	int32_t pid;
	pid_t real_pid;
	int pidfd;
	bool pidfd_own; /* the pidfd is this very process, not an ancestor */
	int uffd;
	/*
	 * Events are only deleted while the task lives (one may be the
	 * callback running) and freed with the task in engine_free().
	 */
	struct event *uffd_ev;
	struct event *pidfd_ev;
	struct lazyset *ls; /* NULL once done or gone, or if it could not be built */
	enum engine_task_state state;
	uint64_t lazy_pages;
	uint32_t nr_reqs; /* queued, submitted or parked */
	struct ereq_list parked;
	struct waiter *waiters;
	size_t nr_waiters;
	uint64_t *zero_retry;
	size_t nr_zero_retry;
	size_t cap_zero_retry;
	struct engine_counters c;
	struct latstat lat;
	TAILQ_ENTRY(etask) link;
};

struct engine {
	struct event_base *base;
	const struct img_set *imgs;
	struct pagesrc *src;
	struct staging *st;
	struct engine_config cfg;
	struct engine_ops ops;
	void *arg;
	TAILQ_HEAD(, etask) tasks;
	struct etask *drain_pos; /* round-robin over tasks */
	struct ereq_list fault_q;
	struct ereq_list active;
	struct ereq_list orphans;
	uint32_t nr_drain_inflight;
	uint32_t nr_fault_inflight;
	uint32_t next_id;
	uint32_t nr_zombies;
	uint32_t nr_failed;
	bool finished;
	bool aborting;
	bool paused; /* the page source is paused: no fetch times out */
	bool done_reported;
	bool in_pump;
	struct event *tick_ev;
	struct tickclock tick_clk; /* the tick's lateness: our own stall times out nothing */
	struct event *retry_ev;
	struct event *check_ev;
	struct engine_counters c;
	uint64_t lazy_pages;
	uint64_t drain_first_ns;
	struct drainctl dc; /* the drain's width, from the faults (drain_yields) */
	uint64_t drain_last_ns;
	struct latstat lat;
};

static void engine_pump(struct engine *e);

/* The drain's smallest read while faults come: 64 KiB. */
#define DRAIN_FAULTING_PAGES 16
static void task_install(struct etask *t, struct ereq *r);
static void task_read_events(struct etask *t);

void engine_config_default(struct engine_config *cfg)
{
	*cfg = (struct engine_config){
	    .readahead_pages = 64,
	    .drain_depth = 8,
	    .drain_chunk = 256 << 10,
	    .fetch_timeout_ms = 30000,
	    .max_retries = 3,
	    .events_budget = 64,
	    .latency_samples = 65536,
	    .fault_poll_us = 1000,
	    .drain_quiet_ms = 0,
	};
}

const char *engine_task_state_name(enum engine_task_state s)
{
	switch (s) {
	case ENGINE_TASK_ACTIVE:
		return "active";
	case ENGINE_TASK_FAILED:
		return "failed";
	case ENGINE_TASK_DONE:
		return "done";
	case ENGINE_TASK_GONE:
		return "gone";
	}
	return "?";
}

static void engine_schedule_check(struct engine *e)
{
	event_active(e->check_ev, EV_TIMEOUT, 0);
}

static void engine_schedule_retry(struct engine *e)
{
	struct timeval tv = {.tv_usec = ENGINE_RETRY_US};

	if (!evtimer_pending(e->retry_ev, NULL))
		evtimer_add(e->retry_ev, &tv);
}

/* ---- waiters and deferred zero pages ---- */

static void task_add_waiter(struct etask *t, uint64_t addr, uint64_t now)
{
	if (t->nr_waiters == ENGINE_MAX_WAITERS)
		return;
	if (!t->waiters) {
		t->waiters = calloc(ENGINE_MAX_WAITERS, sizeof(*t->waiters));
		if (!t->waiters)
			return;
	}
	t->waiters[t->nr_waiters++] = (struct waiter){.addr = addr, .t0 = now};
}

/* Faults inside [addr, addr + len) are resolved: record how long they waited. */
static void task_resolve_waiters(struct etask *t, uint64_t addr, uint64_t len, uint64_t now)
{
	for (size_t i = 0; i < t->nr_waiters;) {
		struct waiter *w = &t->waiters[i];

		if (w->addr >= addr && w->addr < addr + len) {
			latstat_add(&t->lat, now - w->t0);
			latstat_add(&t->eng->lat, now - w->t0);
			/* The tail of the latency figures, each one placed in the log's timeline.
			 */
			if (now - w->t0 >= ENGINE_SLOW_FAULT_NS)
				log_debug("pid %" PRId32 ": fault %#" PRIx64 " waited %.1f ms",
					  t->pid, w->addr, (double)(now - w->t0) / 1e6);
			*w = t->waiters[--t->nr_waiters];
		} else {
			i++;
		}
	}
}

static void task_move_addrs(struct etask *t, uint64_t from, uint64_t to, uint64_t len)
{
	for (size_t i = 0; i < t->nr_waiters; i++)
		if (t->waiters[i].addr >= from && t->waiters[i].addr < from + len)
			t->waiters[i].addr = t->waiters[i].addr - from + to;
	for (size_t i = 0; i < t->nr_zero_retry; i++)
		if (t->zero_retry[i] >= from && t->zero_retry[i] < from + len)
			t->zero_retry[i] = t->zero_retry[i] - from + to;
}

static void task_forget_addrs(struct etask *t, uint64_t start, uint64_t len)
{
	for (size_t i = 0; i < t->nr_waiters;) {
		if (t->waiters[i].addr >= start && t->waiters[i].addr < start + len)
			t->waiters[i] = t->waiters[--t->nr_waiters];
		else
			i++;
	}
	for (size_t i = 0; i < t->nr_zero_retry;) {
		if (t->zero_retry[i] >= start && t->zero_retry[i] < start + len)
			t->zero_retry[i] = t->zero_retry[--t->nr_zero_retry];
		else
			i++;
	}
}

static int task_defer_zero(struct etask *t, uint64_t addr)
{
	if (t->nr_zero_retry == t->cap_zero_retry) {
		size_t cap = t->cap_zero_retry ? t->cap_zero_retry * 2 : 16;
		uint64_t *n = realloc(t->zero_retry, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->zero_retry = n;
		t->cap_zero_retry = cap;
	}
	t->zero_retry[t->nr_zero_retry++] = addr;
	t->c.eagain++;
	t->eng->c.eagain++;
	engine_schedule_retry(t->eng);
	return 0;
}

/* ---- task end states ---- */

static void task_close_uffd(struct etask *t)
{
	if (t->uffd_ev)
		event_del(t->uffd_ev);
	if (t->uffd >= 0) {
		close(t->uffd);
		t->uffd = -1;
	}
}

static void task_release_pidfd(struct etask *t)
{
	if (t->pidfd_ev)
		event_del(t->pidfd_ev);
	if (t->pidfd >= 0) {
		close(t->pidfd);
		t->pidfd = -1;
	}
}

static void req_free(struct ereq *r)
{
	struct engine *e = r->task->eng;

	if (r->slot >= 0)
		staging_put(e->st, r->slot);
	free(r);
}

/* The request is over for its task (installed, dropped or failed). */
static void req_finish(struct ereq *r)
{
	struct etask *t = r->task;

	t->nr_reqs--;
	req_free(r);
	engine_schedule_check(t->eng);
}

/*
 * The task stops needing its requests (it failed or is gone): drop those
 * not submitted yet and parked ones, and stop waiting for those with the
 * source, so a source that never answers cannot hold the engine up.  The
 * source keeps their slots until it completes or cancels them.
 */
static void task_flush_reqs(struct etask *t)
{
	struct engine *e = t->eng;
	struct ereq *r, *tmp;

	TAILQ_FOREACH_SAFE(r, &e->fault_q, qlink, tmp)
	{
		if (r->task != t)
			continue;
		TAILQ_REMOVE(&e->fault_q, r, qlink);
		TAILQ_REMOVE(&e->active, r, alink);
		if (t->ls)
			lazyset_unclaim(t->ls, r->pr.img_vaddr, r->pr.len);
		req_finish(r);
	}
	TAILQ_FOREACH_SAFE(r, &e->active, alink, tmp)
	{
		if (r->task != t || r->state != ER_SUBMITTED)
			continue;
		TAILQ_REMOVE(&e->active, r, alink);
		if (!r->fault)
			e->nr_drain_inflight--;
		else
			e->nr_fault_inflight--;
		if (t->ls)
			lazyset_unclaim(t->ls, r->pr.img_vaddr, r->pr.len);
		if (pagesrc_cancel(&r->pr) == 0) {
			req_finish(r);
		} else {
			r->state = ER_ORPHANED;
			t->nr_reqs--;
			TAILQ_INSERT_TAIL(&e->orphans, r, qlink);
		}
	}
	while ((r = TAILQ_FIRST(&t->parked))) {
		TAILQ_REMOVE(&t->parked, r, qlink);
		if (t->ls)
			lazyset_unclaim(t->ls, r->pr.img_vaddr, r->pr.len);
		req_finish(r);
	}
}

/* The process is gone: nothing can be installed any more, so closing the uffd is safe. */
static void task_gone(struct etask *t, const char *why)
{
	uint64_t left;

	if (t->state == ENGINE_TASK_GONE || t->state == ENGINE_TASK_DONE)
		return;
	left = t->ls ? lazyset_remaining(t->ls) : 0;
	if (t->state == ENGINE_TASK_FAILED)
		log_info("pid %" PRId32 " (task %" PRIu32 "): process gone (%s)", t->pid, t->id,
			 why);
	else if (left)
		log_info("pid %" PRId32 " (task %" PRIu32 "): process exited (%s) with %" PRIu64
			 " lazy pages never needed",
			 t->pid, t->id, why, left);
	else
		log_info("pid %" PRId32 " (task %" PRIu32 "): process exited (%s)", t->pid, t->id,
			 why);
	task_flush_reqs(t);
	t->state = ENGINE_TASK_GONE;
	if (t->eng->ops.task_settled)
		t->eng->ops.task_settled(t->eng->arg, t->id);
	t->c.pages_dropped += left;
	t->eng->c.pages_dropped += left;
	task_close_uffd(t);
	task_release_pidfd(t);
	lazyset_free(t->ls);
	t->ls = NULL;
	t->nr_waiters = 0;
	t->nr_zero_retry = 0;
	engine_schedule_check(t->eng);
}

/*
 * Pages cannot be had: stop the process.  Its uffd stays open, so threads
 * blocked on missing pages stay blocked instead of reading zeros.
 */
static void task_fail(struct etask *t, int err, uint64_t addr, const char *what)
{
	struct engine *e = t->eng;
	char where[32] = "";
	int ret;

	if (t->state != ENGINE_TASK_ACTIVE)
		return;
	t->state = ENGINE_TASK_FAILED;
	e->nr_failed++;
	task_flush_reqs(t);
	t->nr_waiters = 0;
	if (addr)
		snprintf(where, sizeof(where), " at %#" PRIx64, addr);
	log_err("pid %" PRId32 " (task %" PRIu32 ", process %d): %s%s: %s; %" PRIu64
		" lazy pages not installed: stopping the process",
		t->pid, t->id, (int)t->real_pid, what, where, strerror(-err),
		t->ls ? lazyset_remaining(t->ls) : 0);
	ret = t->pidfd >= 0 ? proctree_kill(t->pidfd, t->real_pid) : -ENOENT;
	if (ret > 0)
		log_err("pid %" PRId32 ": killed process %d%s and %d descendant(s)", t->pid,
			(int)t->real_pid, t->pidfd_own ? "" : " (its parent)", ret - 1);
	else if (ret == -ESRCH)
		log_info("pid %" PRId32 ": process %d already exited", t->pid, (int)t->real_pid);
	else
		log_err("pid %" PRId32 " (task %" PRIu32 "): its process cannot be killed (%s); "
			"it stays blocked on its missing pages while rdmig-dest runs",
			t->pid, t->id, ret == -ENOENT ? "real pid unknown" : strerror(-ret));
	if (e->ops.task_failed)
		e->ops.task_failed(e->arg, t->pid, t->real_pid, err);
	engine_schedule_check(e);
}

/* Every page is installed and nothing is in flight: the uffd is no longer needed. */
static void task_maybe_done(struct etask *t)
{
	if (t->state != ENGINE_TASK_ACTIVE || !t->eng->finished || t->nr_reqs || t->nr_zero_retry ||
	    lazyset_remaining(t->ls))
		return;
	/* A fork queued right now would lose its event; read what is there first. */
	task_read_events(t);
	if (t->state != ENGINE_TASK_ACTIVE || t->nr_reqs || t->nr_zero_retry ||
	    lazyset_remaining(t->ls))
		return;
	log_info("pid %" PRId32 " (task %" PRIu32 "): all %" PRIu64 " lazy pages settled "
		 "(fault %" PRIu64 ", drain %" PRIu64 ", dropped %" PRIu64 ", zero pages %" PRIu64
		 ")",
		 t->pid, t->id, t->lazy_pages, t->c.pages_fault, t->c.pages_drain,
		 t->c.pages_dropped, t->c.zero_pages);
	t->state = ENGINE_TASK_DONE;
	if (t->eng->ops.task_settled)
		t->eng->ops.task_settled(t->eng->arg, t->id);
	task_close_uffd(t);
	task_release_pidfd(t);
	lazyset_free(t->ls);
	t->ls = NULL;
	engine_schedule_check(t->eng);
}

/* ---- requests ---- */

static struct ereq *req_new(struct etask *t, const struct lazy_run *run, bool fault, uint64_t now)
{
	struct ereq *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->task = t;
	r->fault = fault;
	r->slot = -1;
	r->start_ns = now;
	r->pr.pid = t->pid;
	r->pr.img_vaddr = run->img_vaddr;
	r->pr.len = run->len;
	r->pr.pages_off = run->pages_off;
	r->pr.prio = fault ? PAGESRC_PRIO_FAULT : PAGESRC_PRIO_DRAIN;
	t->nr_reqs++;
	return r;
}

static void req_done_cb(struct pagesrc_req *pr, int status);

/* Hands r (holding a slot) to the source.  Returns 0 or the source's error. */
static int req_submit(struct ereq *r)
{
	struct engine *e = r->task->eng;
	int ret;

	r->pr.dst = staging_slot(e->st, r->slot);
	r->pr.dst_off = (uint64_t)((uint8_t *)r->pr.dst - (uint8_t *)staging_base(e->st));
	r->pr.cookie = (uint64_t)(uintptr_t)r;
	r->pr.done = req_done_cb;
	r->state = ER_SUBMITTED;
	ret = pagesrc_submit(e->src, &r->pr);
	if (ret == 0) {
		r->task->c.requests++;
		e->c.requests++;
		if (!r->fault) {
			e->nr_drain_inflight++;
			if (!e->drain_first_ns)
				e->drain_first_ns = now_ns();
		} else {
			e->nr_fault_inflight++;
		}
	}
	return ret;
}

static void req_fetch_failed(struct ereq *r, int err)
{
	struct etask *t = r->task;

	if (t->ls)
		lazyset_unclaim(t->ls, r->pr.img_vaddr, r->pr.len);
	task_fail(t, err, r->pr.img_vaddr, r->fault ? "fetch for a fault" : "background fetch");
	req_finish(r);
}

static void req_done_cb(struct pagesrc_req *pr, int status)
{
	struct ereq *r = (struct ereq *)(uintptr_t)pr->cookie;
	struct etask *t = r->task;
	struct engine *e = t->eng;

	if (r->state == ER_ORPHANED) {
		TAILQ_REMOVE(&e->orphans, r, qlink);
		req_free(r);
		goto out;
	}
	TAILQ_REMOVE(&e->active, r, alink);
	if (!r->fault) {
		e->nr_drain_inflight--;
		e->drain_last_ns = now_ns();
	} else {
		e->nr_fault_inflight--;
	}
	if (t->state != ENGINE_TASK_ACTIVE) {
		if (t->ls)
			lazyset_unclaim(t->ls, pr->img_vaddr, pr->len);
		req_finish(r);
		goto out;
	}
	if (status == 0 && pagesrc_verify(pr, pr->dst, pr->len) != 0) {
		log_err("pid %" PRId32 ": %#" PRIx64 "+%" PRIu64 ": fetched data failed "
			"verification; not installed",
			t->pid, pr->img_vaddr, pr->len);
		status = -EBADMSG;
	}
	if (status == 0) {
		task_install(t, r);
		goto out;
	}
	if ((status == -EAGAIN || status == -EBADMSG) && r->retries < e->cfg.max_retries &&
	    !pagesrc_is_gone(e->src)) {
		int ret;

		r->retries++;
		t->c.retries++;
		e->c.retries++;
		r->start_ns = now_ns();
		TAILQ_INSERT_TAIL(&e->active, r, alink);
		ret = req_submit(r);
		if (ret == 0)
			goto out;
		TAILQ_REMOVE(&e->active, r, alink);
		status = ret;
	}
	log_debug("pid %" PRId32 ": fetch %#" PRIx64 "+%" PRIu64 " failed: %s", t->pid,
		  pr->img_vaddr, pr->len, strerror(-status));
	req_fetch_failed(r, status);
out:
	engine_pump(e);
}

static void req_count_installed(struct etask *t, struct ereq *r, uint64_t pages, uint64_t bytes)
{
	struct engine *e = t->eng;

	if (r->fault) {
		t->c.pages_fault += pages;
		e->c.pages_fault += pages;
	} else {
		t->c.pages_drain += pages;
		e->c.pages_drain += pages;
	}
	t->c.bytes += bytes;
	e->c.bytes += bytes;
}

/*
 * The pages of r a fault waits for (a page met in a drain READ), each
 * installed alone first: UFFDIO_COPY wakes a thread once its range is
 * in, and a 256 KiB COPY took 10-20 ms under TCG.  Anything but a clean
 * copy is left to task_install()'s loop, which knows every other case.
 */
static void task_install_waited(struct etask *t, struct ereq *r, uint8_t *slot)
{
	uint64_t pos = r->pr.img_vaddr, end = r->pr.img_vaddr + r->pr.len;
	struct lazy_run run;

	while (t->nr_waiters && pos < end &&
	       lazyset_first_inflight(t->ls, pos, end - pos, &run) == 0) {
		uint64_t a = 0, copied = 0, n;
		size_t i;

		for (i = 0; i < t->nr_waiters; i++) {
			a = t->waiters[i].addr & ~(uint64_t)(PG - 1);
			if (a >= run.rt_addr && a < run.rt_addr + run.len)
				break;
		}
		if (i == t->nr_waiters) {
			pos = run.img_vaddr + run.len;
			continue;
		}
		if (uffd_copy(t->uffd, a,
			      slot + (run.img_vaddr - r->pr.img_vaddr) + (a - run.rt_addr), PG,
			      &copied) < 0 ||
		    copied != PG)
			return;
		n = lazyset_complete(t->ls, run.img_vaddr + (a - run.rt_addr), PG);
		req_count_installed(t, r, n, PG);
		task_resolve_waiters(t, a, PG, now_ns());
		log_debug("pid %" PRId32 ": COPY %#" PRIx64 " +4096 first: a fault waits for it",
			  t->pid, a);
		/* The run is split now: look again from the same place. */
		pos = run.img_vaddr;
	}
}

/*
 * Installs what of r is still in flight, wherever it lives now.  On EAGAIN
 * r is parked on the task and retried after the queued events are read.
 */
static void task_install(struct etask *t, struct ereq *r)
{
	uint8_t *slot = staging_slot(t->eng->st, r->slot);
	uint64_t max_len = UINT64_MAX;
	struct lazy_run run;

	if (r->pr.len > PG)
		task_install_waited(t, r, slot);
	for (;;) {
		uint64_t copied = 0, n, len;
		int ret;

		ret = lazyset_first_inflight(t->ls, r->pr.img_vaddr, r->pr.len, &run);
		if (ret == -ENOENT)
			break;
		if (ret < 0) {
			log_err("pid %" PRId32 ": lazy set inconsistent at %#" PRIx64, t->pid,
				r->pr.img_vaddr);
			task_fail(t, ret, r->pr.img_vaddr, "internal error");
			break;
		}
		len = run.len < max_len ? run.len : max_len;
		ret = uffd_copy(t->uffd, run.rt_addr, slot + (run.img_vaddr - r->pr.img_vaddr), len,
				&copied);
		if (copied) {
			uint64_t now = now_ns();

			n = lazyset_complete(t->ls, run.img_vaddr, copied);
			req_count_installed(t, r, n, copied);
			task_resolve_waiters(t, run.rt_addr, copied, now);
		}
		log_debug("pid %" PRId32 ": COPY %#" PRIx64 " (image %#" PRIx64 ") +%" PRIu64
			  ": %" PRIu64 " copied, %s",
			  t->pid, run.rt_addr, run.img_vaddr, len, copied,
			  ret ? strerror(-ret) : "ok");
		if (ret == 0 || (ret == -EAGAIN && copied))
			continue;
		if (ret == -EAGAIN) {
			t->c.eagain++;
			t->eng->c.eagain++;
			r->state = ER_PARKED;
			TAILQ_INSERT_TAIL(&t->parked, r, qlink);
			engine_schedule_retry(t->eng);
			return;
		}
		if (ret == -EEXIST) {
			/*
			 * Mapped meanwhile (e.g. a child got it at fork, or an earlier
			 * worker installed it): nothing to install.
			 */
			lazyset_complete(t->ls, run.img_vaddr + copied, PG);
			t->c.pages_exist++;
			t->eng->c.pages_exist++;
			task_resolve_waiters(t, run.rt_addr + copied, PG, now_ns());
			continue;
		}
		if (ret == -ENOENT) {
			/*
			 * No registered VMA for the whole run.  Page by page finds what is
			 * still there; a single page without a VMA is dropped.
			 */
			if (len > PG) {
				max_len = PG;
				continue;
			}
			/*
			 * The kernel moves or unmaps the VMA before its event can be
			 * read, and a COPY in between finds nothing here.  Park until
			 * the events are read: a remap moves the page (installed at
			 * its new address), an unmap removes it.  Only a page still
			 * without a VMA after ENGINE_ENOENT_WAIT_NS is dropped.
			 */
			if (!r->enoent_ns)
				r->enoent_ns = now_ns();
			if (now_ns() - r->enoent_ns < ENGINE_ENOENT_WAIT_NS) {
				log_debug("pid %" PRId32 ": %#" PRIx64
					  " has no VMA now: waiting for "
					  "the event that moved or removed it",
					  t->pid, run.rt_addr);
				r->state = ER_PARKED;
				TAILQ_INSERT_TAIL(&t->parked, r, qlink);
				engine_schedule_retry(t->eng);
				return;
			}
			log_warn("pid %" PRId32 ": %#" PRIx64 " (image %#" PRIx64 ") has had no "
				 "VMA for 1 s and no event explained it: dropped",
				 t->pid, run.rt_addr, run.img_vaddr);
			lazyset_complete(t->ls, run.img_vaddr, PG);
			t->c.pages_dropped++;
			t->eng->c.pages_dropped++;
			continue;
		}
		if (uffd_err_gone(ret)) {
			req_finish(r);
			task_gone(t, "UFFDIO_COPY: no such process");
			return;
		}
		log_err("pid %" PRId32 ": UFFDIO_COPY to %#" PRIx64 " +%" PRIu64 ": %s", t->pid,
			run.rt_addr, len, strerror(-ret));
		lazyset_unclaim(t->ls, r->pr.img_vaddr, r->pr.len);
		task_fail(t, ret, run.rt_addr, "UFFDIO_COPY");
		break;
	}
	req_finish(r);
	task_maybe_done(t);
}

/* ---- scheduling ---- */

static struct etask *engine_next_drain_task(struct engine *e)
{
	struct etask *t = e->drain_pos, *start;

	if (!t)
		t = TAILQ_FIRST(&e->tasks);
	start = t;
	while (t) {
		struct etask *next =
		    TAILQ_NEXT(t, link) ? TAILQ_NEXT(t, link) : TAILQ_FIRST(&e->tasks);

		if (t->state == ENGINE_TASK_ACTIVE && lazyset_pending(t->ls)) {
			e->drain_pos = next;
			return t;
		}
		t = next;
		if (t == start)
			break;
	}
	return NULL;
}

/* Submits queued fault requests, then (after FIN) tops the drain up. */
static void engine_pump(struct engine *e)
{
	struct ereq *r;
	uint64_t chunk_pages;
	uint32_t depth;
	int slot, ret;

	/* Completions inside submit would recurse; the outer call finishes the job. */
	if (e->in_pump)
		return;
	e->in_pump = true;
	while ((r = TAILQ_FIRST(&e->fault_q))) {
		slot = staging_get(e->st);
		if (slot < 0)
			break;
		TAILQ_REMOVE(&e->fault_q, r, qlink);
		r->slot = slot;
		ret = req_submit(r);
		if (ret == -EAGAIN) {
			staging_put(e->st, slot);
			r->slot = -1;
			r->state = ER_QUEUED;
			TAILQ_INSERT_HEAD(&e->fault_q, r, qlink);
			break;
		}
		if (ret < 0) {
			TAILQ_REMOVE(&e->active, r, alink);
			req_fetch_failed(r, ret);
		}
	}
	chunk_pages = e->cfg.drain_chunk / PG;
	if (chunk_pages > staging_slot_size(e->st) / PG)
		chunk_pages = staging_slot_size(e->st) / PG;
	/*
	 * A fault's READ shares the wire (and, without a fault lane, the queue)
	 * with every drain READ already posted: the drain narrows while faults
	 * come and widens when they stop (drainctl.h).
	 */
	depth = e->cfg.drain_depth;
	if (e->cfg.drain_yields && (e->cfg.fault_lane || !e->cfg.yield_lane_only)) {
		drainctl_update(&e->dc, now_ns(), e->nr_fault_inflight > 0);
		depth = e->dc.depth;
		if (chunk_pages > e->dc.chunk / PG)
			chunk_pages = e->dc.chunk / PG ? e->dc.chunk / PG : 1;
	}
	while (e->finished && !e->aborting && TAILQ_EMPTY(&e->fault_q) &&
	       e->nr_drain_inflight < depth && !pagesrc_is_gone(e->src)) {
		struct etask *t = engine_next_drain_task(e);
		struct lazy_run run;

		if (!t)
			break;
		slot = staging_get(e->st);
		if (slot < 0)
			break;
		if (lazyset_claim_next(t->ls, chunk_pages, &run) < 0) {
			staging_put(e->st, slot);
			break;
		}
		r = req_new(t, &run, false, now_ns());
		if (!r) {
			lazyset_unclaim(t->ls, run.img_vaddr, run.len);
			staging_put(e->st, slot);
			break;
		}
		r->slot = slot;
		TAILQ_INSERT_TAIL(&e->active, r, alink);
		ret = req_submit(r);
		if (ret < 0) {
			TAILQ_REMOVE(&e->active, r, alink);
			lazyset_unclaim(t->ls, run.img_vaddr, run.len);
			t->nr_reqs--;
			req_free(r);
			if (ret != -EAGAIN)
				log_warn("%s: drain submit: %s", pagesrc_name(e->src),
					 strerror(-ret));
			break;
		}
	}
	e->in_pump = false;
}

/* ---- uffd events ---- */

static void task_zero(struct etask *t, uint64_t addr)
{
	int ret = uffd_zeropage(t->uffd, addr);

	if (ret == 0) {
		t->c.zero_pages++;
		t->eng->c.zero_pages++;
		return;
	}
	if (ret == -EEXIST)
		return;
	if (ret == -ENOENT) {
		log_debug("pid %" PRId32 ": zero page %#" PRIx64 ": not registered any more",
			  t->pid, addr);
		return;
	}
	if (ret == -EAGAIN) {
		if (task_defer_zero(t, addr) < 0)
			task_fail(t, -ENOMEM, addr, "deferring a zero page");
		return;
	}
	if (uffd_err_gone(ret)) {
		task_gone(t, "UFFDIO_ZEROPAGE: no such process");
		return;
	}
	log_err("pid %" PRId32 ": UFFDIO_ZEROPAGE %#" PRIx64 ": %s", t->pid, addr, strerror(-ret));
	task_fail(t, ret, addr, "UFFDIO_ZEROPAGE");
}

/* Queues the fetch of a claimed run ahead of the drain; unclaims it on failure. */
static int task_queue_fault(struct etask *t, const struct lazy_run *run, uint64_t addr,
			    uint64_t now)
{
	struct engine *e = t->eng;
	struct ereq *r = req_new(t, run, true, now);

	if (!r) {
		lazyset_unclaim(t->ls, run->img_vaddr, run->len);
		task_fail(t, -ENOMEM, addr, "fault request");
		return -ENOMEM;
	}
	log_debug("pid %" PRId32 ": fault %#" PRIx64 ": fetch %#" PRIx64 "+%" PRIu64, t->pid, addr,
		  run->img_vaddr, run->len);
	r->state = ER_QUEUED;
	TAILQ_INSERT_TAIL(&e->fault_q, r, qlink);
	TAILQ_INSERT_TAIL(&e->active, r, alink);
	return 0;
}

static void task_on_fault(struct etask *t, uint64_t addr, uint64_t now)
{
	struct engine *e = t->eng;
	struct lazy_run run;

	addr &= ~(uint64_t)(PG - 1);
	t->c.faults++;
	e->c.faults++;
	if (!t->ls)
		return; /* stopped before its lazy set existed: stay blocked */
	switch (lazyset_lookup(t->ls, addr)) {
	case LAZY_PENDING:
		t->c.faults_lazy++;
		e->c.faults_lazy++;
		drainctl_fault(&e->dc, now);
		if (t->state != ENGINE_TASK_ACTIVE)
			return; /* stopped: the thread stays blocked, never sees a zero page */
		/*
		 * The faulting page travels alone, ahead of its read-ahead: the
		 * thread waits for one page's round trip, not for the whole
		 * window's transfer and COPY.
		 */
		lazyset_claim_fault(t->ls, addr,
				    e->cfg.readahead_fixed ? e->cfg.readahead_pages
							   : readahead_fault(&t->ra, addr),
				    &run);
		if (run.len > PG) {
			struct lazy_run ahead = {
			    .rt_addr = run.rt_addr + PG,
			    .img_vaddr = run.img_vaddr + PG,
			    .len = run.len - PG,
			    .pages_off =
				run.pages_off == IMG_NO_OFFSET ? IMG_NO_OFFSET : run.pages_off + PG,
			};

			run.len = PG;
			if (task_queue_fault(t, &run, addr, now) < 0) {
				lazyset_unclaim(t->ls, ahead.img_vaddr, ahead.len);
				return;
			}
			task_queue_fault(t, &ahead, addr, now);
		} else if (task_queue_fault(t, &run, addr, now) < 0) {
			return;
		}
		task_add_waiter(t, addr, now);
		engine_pump(e);
		break;
	case LAZY_INFLIGHT:
		t->c.faults_lazy++;
		e->c.faults_lazy++;
		/*
		 * No drainctl_fault(): the READ this page is in is on the wire
		 * already, and a narrower drain only slows the next pages of a
		 * thread that follows it (a scan); task_install() puts the page
		 * in first when it arrives.
		 */
		log_debug("pid %" PRId32 ": fault %#" PRIx64 ": already in flight", t->pid, addr);
		task_add_waiter(t, addr, now);
		break;
	case LAZY_NONE:
		log_debug("pid %" PRId32 ": fault %#" PRIx64 ": zero page", t->pid, addr);
		task_zero(t, addr);
		break;
	}
}

static int task_new(struct engine *e, int32_t pid, int uffd, struct etask **out);

/* The owner hears of every task the engine holds a uffd for (the guard copies it). */
static void task_report_added(struct etask *t)
{
	struct engine_task_ref ref = {
	    .id = t->id,
	    .parent_id = t->parent_id,
	    .pid = t->pid,
	    .real_pid = t->real_pid,
	    .uffd = t->uffd,
	    .pidfd = t->pidfd,
	    .pidfd_own = t->pidfd_own,
	};

	if (t->eng->ops.task_added)
		t->eng->ops.task_added(t->eng->arg, &ref);
}

static void task_report_layout(struct etask *t, uint32_t kind, uint64_t from, uint64_t to,
			       uint64_t len)
{
	struct uffd_layout l = {.kind = kind, .from = from, .to = to, .len = len};

	if (t->eng->ops.layout_changed)
		t->eng->ops.layout_changed(t->eng->arg, t->id, &l);
}

static void task_on_fork(struct etask *t, int child_uffd)
{
	struct engine *e = t->eng;
	struct etask *c = NULL;
	int ret;

	t->c.forks++;
	e->c.forks++;
	ret = task_new(e, t->pid, child_uffd, &c);
	if (ret < 0) {
		/* Untracked, the child would read zeros: stop the tree (it is in it). */
		log_err("pid %" PRId32 ": fork: cannot track the child: %s", t->pid,
			strerror(-ret));
		task_fail(t, ret, 0, "fork");
		close(child_uffd);
		return;
	}
	c->parent_id = t->id;
	c->real_pid = t->real_pid;
	c->pidfd_own = false;
	if (t->pidfd >= 0)
		c->pidfd = fcntl(t->pidfd, F_DUPFD_CLOEXEC, 0);
	ret = t->ls ? lazyset_clone(t->ls, &c->ls) : -ENOENT;
	if (ret < 0) {
		task_fail(c, ret, 0, "fork: copying the parent's lazy set");
		task_fail(t, ret, 0, "fork");
		return;
	}
	c->lazy_pages = lazyset_remaining(c->ls);
	e->lazy_pages += c->lazy_pages;
	task_report_added(c);
	log_info("pid %" PRId32 " (task %" PRIu32 "): fork: child is task %" PRIu32
		 " (uffd %d), %" PRIu64 " lazy pages to fetch for it",
		 t->pid, t->id, c->id, child_uffd, c->lazy_pages);
	if (t->state == ENGINE_TASK_FAILED)
		task_fail(c, -ECANCELED, 0, "forked from a stopped process");
}

static void task_on_remap(struct etask *t, uint64_t from, uint64_t to, uint64_t len)
{
	int ret;

	t->c.remaps++;
	t->eng->c.remaps++;
	log_debug("pid %" PRId32 ": remap %#" PRIx64 " -> %#" PRIx64 " +%" PRIu64, t->pid, from, to,
		  len);
	ret = lazyset_remap(t->ls, from, to, len);
	if (ret < 0) {
		task_fail(t, ret, from, "remap");
		return;
	}
	task_report_layout(t, UFFD_EVENT_REMAP, from, to, len);
	task_move_addrs(t, from, to, len);
}

static void task_on_remove(struct etask *t, uint64_t start, uint64_t end, bool unmap)
{
	uint64_t dropped = 0;
	int ret;

	if (unmap) {
		t->c.unmaps++;
		t->eng->c.unmaps++;
	} else {
		t->c.removes++;
		t->eng->c.removes++;
		/* From now on the kernel zero-fills the range, as after madvise() without uffd. */
		ret = uffd_unregister(t->uffd, start, end - start);
		if (uffd_err_gone(ret)) {
			task_gone(t, "UFFDIO_UNREGISTER: no such process");
			return;
		}
		if (ret < 0 && ret != -ENOENT && ret != -EINVAL)
			log_warn("pid %" PRId32 ": UFFDIO_UNREGISTER %#" PRIx64 "-%#" PRIx64 ": %s",
				 t->pid, start, end, strerror(-ret));
	}
	ret = lazyset_remove(t->ls, start, end - start, &dropped);
	if (ret < 0) {
		task_fail(t, ret, start, unmap ? "unmap" : "remove");
		return;
	}
	task_report_layout(t, unmap ? UFFD_EVENT_UNMAP : UFFD_EVENT_REMOVE, start, end, 0);
	t->c.pages_dropped += dropped;
	t->eng->c.pages_dropped += dropped;
	task_forget_addrs(t, start, end - start);
	log_debug("pid %" PRId32 ": %s %#" PRIx64 "-%#" PRIx64 ": %" PRIu64 " lazy pages dropped",
		  t->pid, unmap ? "unmap" : "remove", start, end, dropped);
}

static void task_on_msg(struct etask *t, const struct uffd_msg *m, uint64_t now)
{
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		task_on_fault(t, m->arg.pagefault.address, now);
		break;
	case UFFD_EVENT_FORK:
		task_on_fork(t, (int)m->arg.fork.ufd);
		break;
	case UFFD_EVENT_REMAP:
		task_on_remap(t, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
		break;
	case UFFD_EVENT_REMOVE:
		task_on_remove(t, m->arg.remove.start, m->arg.remove.end, false);
		break;
	case UFFD_EVENT_UNMAP:
		task_on_remove(t, m->arg.remove.start, m->arg.remove.end, true);
		break;
	default:
		log_warn("pid %" PRId32 ": unknown userfaultfd event %#x ignored", t->pid,
			 (unsigned)m->event);
		break;
	}
}

/* Reads and handles up to the budget of messages. */
static void task_read_events(struct etask *t)
{
	struct uffd_msg msgs[16];
	uint32_t handled = 0;

	while (t->uffd >= 0 && handled < t->eng->cfg.events_budget) {
		ssize_t n = read(t->uffd, msgs, sizeof(msgs));
		uint64_t now = now_ns();

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("pid %" PRId32 ": reading userfaultfd %d: %s", t->pid,
					 t->uffd, strerror(errno));
			return;
		}
		if (n == 0 || n % (ssize_t)sizeof(msgs[0])) {
			log_warn("pid %" PRId32 ": short userfaultfd read (%zd bytes)", t->pid, n);
			return;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			/* A message can end the task (gone); later ones are then moot. */
			if (t->state == ENGINE_TASK_GONE || t->state == ENGINE_TASK_DONE)
				return;
			task_on_msg(t, &msgs[i], now);
			handled++;
		}
		/*
		 * A short read took every message there was: reading again would
		 * only return EAGAIN, one syscall per fault; a later message wakes
		 * the (level-triggered) event again.
		 */
		if (n < (ssize_t)sizeof(msgs))
			return;
	}
}

/* Retries COPYs and zero pages deferred by EAGAIN, after reading the events that caused it. */
static void task_retry_parked(struct etask *t)
{
	struct ereq_list list;
	struct ereq *r;
	size_t nz;

	if (t->state != ENGINE_TASK_ACTIVE)
		return;
	task_read_events(t);
	if (t->state != ENGINE_TASK_ACTIVE)
		return;
	TAILQ_INIT(&list);
	TAILQ_CONCAT(&list, &t->parked, qlink);
	while ((r = TAILQ_FIRST(&list))) {
		TAILQ_REMOVE(&list, r, qlink);
		if (t->state != ENGINE_TASK_ACTIVE) {
			if (t->ls)
				lazyset_unclaim(t->ls, r->pr.img_vaddr, r->pr.len);
			req_finish(r);
			continue;
		}
		r->state = ER_SUBMITTED;
		task_install(t, r);
	}
	nz = t->nr_zero_retry;
	for (size_t i = 0; i < nz && t->state == ENGINE_TASK_ACTIVE; i++) {
		uint64_t addr = t->zero_retry[0];

		memmove(t->zero_retry, t->zero_retry + 1, (--t->nr_zero_retry) * sizeof(uint64_t));
		task_zero(t, addr);
	}
	task_maybe_done(t);
}

/*
 * A fault's READ completes after one network round trip.  Waking the loop
 * through the completion channel adds an interrupt, a wakeup and a trip
 * through epoll, which under soft-RoCE costs as much as the round trip
 * itself.  So spin on the source, bounded, until a waiting fault resolves;
 * on a real NIC the spin lasts microseconds.
 */
static void engine_spin_faults(struct engine *e)
{
	uint64_t resolved = e->lat.count, end;

	if (!e->cfg.fault_poll_us || !e->nr_fault_inflight)
		return;
	end = now_ns() + (uint64_t)e->cfg.fault_poll_us * 1000;
	while (e->nr_fault_inflight && e->lat.count == resolved && !e->aborting) {
		if (pagesrc_poll(e->src) < 0 || now_ns() >= end)
			return;
	}
}

static void task_uffd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct etask *t = arg;
	struct engine *e = t->eng;

	task_read_events(t);
	if (!TAILQ_EMPTY(&t->parked) || t->nr_zero_retry)
		engine_schedule_retry(e);
	/* t may be gone once completions run. */
	engine_spin_faults(e);
}

static void task_pidfd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct etask *t = arg;
	int alive;

	/* The process exited, but its mm might live on in a CLONE_VM sibling: ask the uffd. */
	alive = t->uffd >= 0 ? uffd_probe_alive(t->uffd) : 0;
	if (alive == 0) {
		task_gone(t, "exited");
		return;
	}
	log_debug("pid %" PRId32 ": process %d exited but its memory lives on", t->pid,
		  (int)t->real_pid);
	task_release_pidfd(t);
}

static int task_new(struct engine *e, int32_t pid, int uffd, struct etask **out)
{
	struct etask *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	t->eng = e;
	t->id = ++e->next_id;
	t->pid = pid;
	t->uffd = uffd;
	t->pidfd = -1;
	t->state = ENGINE_TASK_ACTIVE;
	readahead_init(&t->ra, PG, e->cfg.readahead_pages);
	TAILQ_INIT(&t->parked);
	ret = latstat_init(&t->lat, ENGINE_TASK_SAMPLES);
	if (ret < 0) {
		free(t);
		return ret;
	}
	fd_set_nonblock(uffd);
	t->uffd_ev = event_new(e->base, uffd, EV_READ | EV_PERSIST, task_uffd_cb, t);
	if (!t->uffd_ev || event_add(t->uffd_ev, NULL) < 0) {
		if (t->uffd_ev)
			event_free(t->uffd_ev);
		latstat_destroy(&t->lat);
		free(t);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&e->tasks, t, link);
	*out = t;
	return 0;
}

int engine_add_task(struct engine *e, int32_t pid, int uffd, pid_t sender)
{
	const struct img_task *img = image_set_task(e->imgs, pid);
	struct etask *t = NULL;
	char b[32];
	int ret;

	if (!img || !img->has_memory) {
		log_err("pid %" PRId32 ": no memory images for it in %s", pid, e->imgs->dir);
		close(uffd);
		return -ESRCH;
	}
	ret = task_new(e, pid, uffd, &t);
	if (ret < 0) {
		log_err("pid %" PRId32 ": %s", pid, strerror(-ret));
		close(uffd);
		return ret;
	}
	t->real_pid = sender;
	if (sender > 0) {
		t->pidfd = proctree_pidfd_open(sender);
		if (t->pidfd < 0) {
			log_warn("pid %" PRId32 ": pidfd for process %d: %s", pid, (int)sender,
				 strerror(-t->pidfd));
		} else {
			t->pidfd_own = true;
			t->pidfd_ev = event_new(e->base, t->pidfd, EV_READ, task_pidfd_cb, t);
			if (t->pidfd_ev)
				event_add(t->pidfd_ev, NULL);
		}
	}
	ret = lazyset_create(img, &t->ls);
	if (ret < 0) {
		/* Never let it run without its pages: keep the uffd, stop the process. */
		task_fail(t, ret, 0, "building its lazy set");
		return ret;
	}
	t->lazy_pages = lazyset_total(t->ls);
	e->lazy_pages += t->lazy_pages;
	task_report_added(t);
	log_info("pid %" PRId32 " (task %" PRIu32 "): %" PRIu64 " lazy pages (%s) in %zu ranges, "
		 "process %d",
		 pid, t->id, t->lazy_pages, fmt_bytes(t->lazy_pages * PG, b, sizeof(b)),
		 img->nr_lazy, (int)sender);
	if (pagesrc_is_gone(e->src) && t->lazy_pages)
		task_fail(t, -ENOTCONN, 0, "page source gone");
	else if (e->aborting)
		task_fail(t, -ECANCELED, 0, "aborting");
	return 0;
}

/* An earlier worker's layout changes, in order, on the lazy set built from the image. */
static int task_replay_layout(struct etask *t, const struct uffd_layout *l, size_t nr)
{
	uint64_t dropped = 0;
	int ret = 0;

	for (size_t i = 0; i < nr && ret == 0; i++) {
		if (l[i].kind == UFFD_EVENT_REMAP)
			ret = lazyset_remap(t->ls, l[i].from, l[i].to, l[i].len);
		else if (l[i].kind == UFFD_EVENT_REMOVE || l[i].kind == UFFD_EVENT_UNMAP)
			ret = lazyset_remove(t->ls, l[i].from, l[i].to - l[i].from, &dropped);
		else
			ret = -EINVAL;
	}
	return ret;
}

int engine_adopt_task(struct engine *e, const struct engine_task_ref *ref,
		      const struct uffd_layout *changes, size_t nr_changes, bool layout_unknown)
{
	const struct img_task *img = image_set_task(e->imgs, ref->pid);
	struct etask *t = NULL;
	int ret;

	if (!img || !img->has_memory) {
		log_err("pid %" PRId32 " (task %" PRIu32 "): taken over, but no memory images for "
			"it in %s",
			ref->pid, ref->id, e->imgs->dir);
		ret = -ESRCH;
		goto out_close;
	}
	ret = task_new(e, ref->pid, ref->uffd, &t);
	if (ret < 0)
		goto out_close;
	/* It keeps the id the guard knows it by; tasks forked from now on get higher ones. */
	e->next_id--;
	if (ref->id > e->next_id)
		e->next_id = ref->id;
	t->id = ref->id;
	t->parent_id = ref->parent_id;
	t->real_pid = ref->real_pid;
	t->pidfd = ref->pidfd;
	t->pidfd_own = ref->pidfd_own;
	if (t->pidfd >= 0 && t->pidfd_own) {
		t->pidfd_ev = event_new(e->base, t->pidfd, EV_READ, task_pidfd_cb, t);
		if (t->pidfd_ev)
			event_add(t->pidfd_ev, NULL);
	}
	e->c.adopted++;
	ret = layout_unknown ? -ENODATA : lazyset_create(img, &t->ls);
	if (ret == 0)
		ret = task_replay_layout(t, changes, nr_changes);
	if (ret == 0)
		e->c.replayed += nr_changes;
	if (ret < 0) {
		/* Never serve it from a lazy set that may be wrong: stop it, keep its uffd. */
		task_fail(t, ret, 0, "rebuilding its lazy set after a takeover");
		return ret;
	}
	t->lazy_pages = lazyset_total(t->ls);
	e->lazy_pages += t->lazy_pages;
	task_report_added(t);
	ret = uffd_wake_all(t->uffd);
	if (ret < 0)
		log_warn("pid %" PRId32 " (task %" PRIu32 "): UFFDIO_WAKE: %s; a fault the earlier "
			 "worker read stays blocked until its page is installed by the drain",
			 t->pid, t->id, strerror(-ret));
	log_info("pid %" PRId32 " (task %" PRIu32 "): taken over (process %d, %zu layout "
		 "change(s) replayed): %" PRIu64 " lazy pages to settle, installed ones answer "
		 "EEXIST",
		 t->pid, t->id, (int)t->real_pid, nr_changes, t->lazy_pages);
	if (pagesrc_is_gone(e->src) && t->lazy_pages)
		task_fail(t, -ENOTCONN, 0, "page source gone");
	return 0;
out_close:
	log_err("pid %" PRId32 " (task %" PRIu32 "): cannot take it over: %s", ref->pid, ref->id,
		strerror(-ret));
	close(ref->uffd);
	if (ref->pidfd >= 0)
		close(ref->pidfd);
	return ret;
}

void engine_add_zombie(struct engine *e, int32_t pid)
{
	e->nr_zombies++;
}

void engine_restore_finished(struct engine *e)
{
	struct etask *t, *tmp;

	e->finished = true;
	log_info("restore finished: draining %" PRIu64 " remaining pages (%" PRIu32 " x %" PRIu64
		 " KiB in flight)",
		 engine_remaining(e), e->cfg.drain_depth, e->cfg.drain_chunk >> 10);
	TAILQ_FOREACH_SAFE(t, &e->tasks, link, tmp)
	task_maybe_done(t);
	engine_pump(e);
	engine_schedule_check(e);
}

void engine_abort(struct engine *e, const char *reason)
{
	struct etask *t, *tmp;

	if (e->aborting)
		return;
	e->aborting = true;
	e->finished = true;
	log_warn("aborting: %s", reason);
	TAILQ_FOREACH_SAFE(t, &e->tasks, link, tmp)
	{
		if (t->state != ENGINE_TASK_ACTIVE)
			continue;
		task_maybe_done(t);
		if (t->state == ENGINE_TASK_ACTIVE)
			task_fail(t, -ECANCELED, 0, reason);
	}
	engine_schedule_check(e);
}

/* ---- timers ---- */

static void engine_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct etask *t, *tmp;

	TAILQ_FOREACH_SAFE(t, &e->tasks, link, tmp)
	task_retry_parked(t);
	TAILQ_FOREACH(t, &e->tasks, link)
	{
		if (t->state == ENGINE_TASK_ACTIVE &&
		    (!TAILQ_EMPTY(&t->parked) || t->nr_zero_retry)) {
			engine_schedule_retry(e);
			break;
		}
	}
	engine_pump(e);
}

static void engine_timeout(struct engine *e, struct ereq *r, uint64_t now)
{
	struct etask *t = r->task;
	char what[96];

	snprintf(what, sizeof(what), "fetch of %" PRIu64 " bytes not done after %" PRIu64 " ms",
		 r->pr.len, (now - r->start_ns) / 1000000);
	/*
	 * A source that can resume rebuilds its connection and issues every
	 * request again: their timeouts restart (engine_set_paused() moves
	 * them again on the resume), and --pause-limit alone ends the wait.
	 */
	if (t->state == ENGINE_TASK_ACTIVE && pagesrc_stalled(e->src, what) == 0) {
		TAILQ_FOREACH(r, &e->active, alink)
		r->start_ns = now;
		return;
	}
	if (t->state == ENGINE_TASK_ACTIVE) {
		/* Failing the task takes r off the active list with its other requests. */
		task_fail(t, -ETIMEDOUT, r->pr.img_vaddr, what);
		return;
	}
	/* Requests of a stopped task were flushed when it stopped; never leave one here. */
	log_warn("pid %" PRId32 ": %s (task already %s)", t->pid, what,
		 engine_task_state_name(t->state));
	TAILQ_REMOVE(&e->active, r, alink);
	if (r->state == ER_QUEUED) {
		TAILQ_REMOVE(&e->fault_q, r, qlink);
		req_finish(r);
		return;
	}
	if (!r->fault)
		e->nr_drain_inflight--;
	else
		e->nr_fault_inflight--;
	r->state = ER_ORPHANED;
	t->nr_reqs--;
	TAILQ_INSERT_TAIL(&e->orphans, r, qlink);
}

static void engine_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	uint64_t now = now_ns(), limit = (uint64_t)e->cfg.fetch_timeout_ms * 1000000;
	uint64_t gap = tickclock_gap(&e->tick_clk, now, "fault engine");
	struct etask *t, *tmp;
	struct ereq *r;

	/* Stopped or starved ourselves: the source had no chance to answer meanwhile. */
	if (gap)
		TAILQ_FOREACH(r, &e->active, alink)
	r->start_ns = tickclock_shift(r->start_ns, gap, now);
	while (!e->paused && (r = TAILQ_FIRST(&e->active)) && now - r->start_ns > limit)
		engine_timeout(e, r, now);
	/* Stopped processes we could not watch through a pidfd of their own. */
	TAILQ_FOREACH_SAFE(t, &e->tasks, link, tmp)
	{
		if (t->state == ENGINE_TASK_FAILED && !(t->pidfd_own && t->pidfd_ev) &&
		    uffd_probe_alive(t->uffd) == 0)
			task_gone(t, "stopped");
	}
	engine_pump(e);
}

static bool engine_settled(const struct engine *e)
{
	const struct etask *t;

	if (!e->finished || !TAILQ_EMPTY(&e->fault_q) || !TAILQ_EMPTY(&e->active))
		return false;
	TAILQ_FOREACH(t, &e->tasks, link)
	{
		if (t->state == ENGINE_TASK_ACTIVE || t->state == ENGINE_TASK_FAILED)
			return false;
		if (t->nr_reqs)
			return false;
	}
	return true;
}

static void engine_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	int status;

	if (e->done_reported || !engine_settled(e))
		return;
	e->done_reported = true;
	status = e->aborting ? -ECANCELED : e->nr_failed ? -EIO : 0;
	if (e->ops.done)
		e->ops.done(e->arg, status);
}

static void engine_src_gone(struct pagesrc *src, int err, const char *reason, void *arg)
{
	struct engine *e = arg;
	struct etask *t, *tmp;

	TAILQ_FOREACH_SAFE(t, &e->tasks, link, tmp)
	{
		if (t->state == ENGINE_TASK_ACTIVE && t->ls && lazyset_remaining(t->ls))
			task_fail(t, err, 0, "page source gone");
	}
}

/* ---- setup, teardown, stats ---- */

int engine_create(struct event_base *base, const struct img_set *imgs, struct pagesrc *src,
		  struct staging *st, const struct engine_config *cfg, const struct engine_ops *ops,
		  void *arg, struct engine **out)
{
	struct timeval tick = {.tv_usec = ENGINE_TICK_MS * 1000};
	struct engine *e;
	int ret;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->base = base;
	e->imgs = imgs;
	e->src = src;
	e->st = st;
	e->cfg = *cfg;
	drainctl_init(&e->dc, cfg->drain_depth, cfg->drain_chunk, DRAIN_FAULTING_PAGES * PG,
		      cfg->drain_quiet_ms, !cfg->fault_lane);
	drainctl_set_floor(&e->dc, cfg->drain_floor);
	if (e->cfg.readahead_pages == 0)
		e->cfg.readahead_pages = 1;
	if ((uint64_t)e->cfg.readahead_pages * PG > staging_slot_size(st))
		e->cfg.readahead_pages = (uint32_t)(staging_slot_size(st) / PG);
	if (ops)
		e->ops = *ops;
	e->arg = arg;
	TAILQ_INIT(&e->tasks);
	TAILQ_INIT(&e->fault_q);
	TAILQ_INIT(&e->active);
	TAILQ_INIT(&e->orphans);
	ret = latstat_init(&e->lat, cfg->latency_samples);
	if (ret < 0)
		goto out;
	tickclock_init(&e->tick_clk, (uint64_t)ENGINE_TICK_MS * 1000000, now_ns());
	e->tick_ev = event_new(base, -1, EV_PERSIST, engine_tick_cb, e);
	e->retry_ev = evtimer_new(base, engine_retry_cb, e);
	e->check_ev = event_new(base, -1, 0, engine_check_cb, e);
	if (!e->tick_ev || !e->retry_ev || !e->check_ev || event_add(e->tick_ev, &tick) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	pagesrc_set_gone_handler(src, engine_src_gone, e);
	*out = e;
	e = NULL;
out:
	engine_free(e);
	return ret;
}

void engine_free(struct engine *e)
{
	struct etask *t;
	struct ereq *r;

	if (!e)
		return;
	/* The source is destroyed by now: whatever it held is ours to free. */
	while ((r = TAILQ_FIRST(&e->fault_q)))
		TAILQ_REMOVE(&e->fault_q, r, qlink);
	while ((r = TAILQ_FIRST(&e->active))) {
		TAILQ_REMOVE(&e->active, r, alink);
		req_free(r);
	}
	while ((r = TAILQ_FIRST(&e->orphans))) {
		TAILQ_REMOVE(&e->orphans, r, qlink);
		req_free(r);
	}
	while ((t = TAILQ_FIRST(&e->tasks))) {
		TAILQ_REMOVE(&e->tasks, t, link);
		while ((r = TAILQ_FIRST(&t->parked))) {
			TAILQ_REMOVE(&t->parked, r, qlink);
			req_free(r);
		}
		if (t->ls && lazyset_remaining(t->ls) && t->uffd >= 0)
			log_warn("pid %" PRId32 " (task %" PRIu32 "): closing its userfaultfd with "
				 "%" PRIu64 " pages not installed",
				 t->pid, t->id, lazyset_remaining(t->ls));
		task_close_uffd(t);
		task_release_pidfd(t);
		if (t->uffd_ev)
			event_free(t->uffd_ev);
		if (t->pidfd_ev)
			event_free(t->pidfd_ev);
		lazyset_free(t->ls);
		latstat_destroy(&t->lat);
		free(t->waiters);
		free(t->zero_retry);
		free(t);
	}
	if (e->tick_ev)
		event_free(e->tick_ev);
	if (e->retry_ev)
		event_free(e->retry_ev);
	if (e->check_ev)
		event_free(e->check_ev);
	latstat_destroy(&e->lat);
	free(e);
}

const struct latstat *engine_fault_latency(const struct engine *e)
{
	return &e->lat;
}

uint64_t engine_remaining(const struct engine *e)
{
	const struct etask *t;
	uint64_t n = 0;

	TAILQ_FOREACH(t, &e->tasks, link)
	if (t->ls && (t->state == ENGINE_TASK_ACTIVE || t->state == ENGINE_TASK_FAILED))
		n += lazyset_remaining(t->ls);
	return n;
}

void engine_get_counters(const struct engine *e, struct engine_counters *out)
{
	*out = e->c;
}

void engine_set_fault_lane(struct engine *e, bool on)
{
	e->cfg.fault_lane = on;
	e->dc.shared_queue = !on;
}

void engine_set_paused(struct engine *e, bool paused)
{
	struct ereq *r;
	uint64_t now = now_ns();

	e->paused = paused;
	/* Issued again now: the fetch timeout counts from here. */
	if (!paused)
		TAILQ_FOREACH(r, &e->active, alink)
	r->start_ns = now;
}

int engine_stop_processes(struct engine *e)
{
	struct etask *t;
	int ret, n = 0;

	TAILQ_FOREACH(t, &e->tasks, link)
	{
		if (t->state != ENGINE_TASK_ACTIVE)
			continue;
		ret = t->pidfd >= 0 ? proctree_stop(t->pidfd, t->real_pid) : -ENOENT;
		if (ret > 0) {
			log_warn("pid %" PRId32
				 ": stopped process %d and %d descendant(s) (SIGSTOP); "
				 "%" PRIu64 " lazy pages not installed",
				 t->pid, (int)t->real_pid, ret - 1,
				 t->ls ? lazyset_remaining(t->ls) : 0);
			n++;
		} else if (ret != -ESRCH) {
			log_err("pid %" PRId32 " (task %" PRIu32 "): its process cannot be stopped "
				"(%s); its threads that need pages stay blocked",
				t->pid, t->id,
				ret == -ENOENT ? "real pid unknown" : strerror(-ret));
		}
	}
	return n;
}

void engine_get_stats(struct engine *e, struct engine_stats *out)
{
	struct etask *t;

	memset(out, 0, sizeof(*out));
	out->c = e->c;
	out->zombies = e->nr_zombies;
	out->lazy_pages = e->lazy_pages;
	out->remaining = engine_remaining(e);
	TAILQ_FOREACH(t, &e->tasks, link)
	{
		out->tasks++;
		out->tasks_done += t->state == ENGINE_TASK_DONE;
		out->tasks_gone += t->state == ENGINE_TASK_GONE;
	}
	out->tasks_failed = e->nr_failed;
	if (e->drain_first_ns && e->drain_last_ns > e->drain_first_ns)
		out->drain_ns = e->drain_last_ns - e->drain_first_ns;
	out->fault_count = e->lat.count;
	out->fault_p50_ns = latstat_percentile(&e->lat, 50);
	out->fault_p90_ns = latstat_percentile(&e->lat, 90);
	out->fault_p99_ns = latstat_percentile(&e->lat, 99);
	out->fault_max_ns = e->lat.max_ns;
	out->drain_depth = e->cfg.drain_yields ? e->dc.depth : e->cfg.drain_depth;
	out->drain_chunk = e->cfg.drain_yields ? e->dc.chunk : e->cfg.drain_chunk;
	out->drain_shrinks = e->cfg.drain_yields ? e->dc.shrinks : 0;
	out->drain_grows = e->cfg.drain_yields ? e->dc.grows : 0;
}

void engine_for_each_task(struct engine *e, void (*fn)(void *arg, const struct engine_task_info *),
			  void *arg)
{
	struct etask *t;

	TAILQ_FOREACH(t, &e->tasks, link)
	{
		struct engine_task_info info = {
		    .id = t->id,
		    .parent_id = t->parent_id,
		    .pid = t->pid,
		    .real_pid = t->real_pid,
		    .state = t->state,
		    .lazy_pages = t->lazy_pages,
		    .remaining = t->ls ? lazyset_remaining(t->ls) : 0,
		    .c = t->c,
		    .fault_p50_ns = latstat_percentile(&t->lat, 50),
		    .fault_p99_ns = latstat_percentile(&t->lat, 99),
		    .ra_pattern = readahead_pattern(&t->ra),
		    .ra_window = t->ra.window,
		    .ra_stride = readahead_pattern(&t->ra) == RA_STRIDED ? t->ra.stride : 0,
		};

		memcpy(info.ra_faults, t->ra.n, sizeof(info.ra_faults));
		fn(arg, &info);
	}
}
