// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The fault engine against a real userfaultfd in this process, with a
 * scripted page source: an "app" thread touches memory while the test's
 * main thread runs the engine's event loop.  The app thread talks to the
 * loop through a pipe (the engine is single-threaded).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "log.h"
#include "pagesrc.h"
#include "pattern.h"
#include "staging.h"
#include "uffd.h"

#define PG     4096u
#define NPAGES 256
#define SEED   42

/* ---- a scripted page source ---- */

struct tsrc {
	struct event_base *base;
	struct event *ev;
	TAILQ_HEAD(, pagesrc_req) q;
	struct pagesrc *src;
	bool hold;	     /* keep completions until released */
	uint64_t fail_vaddr; /* a request covering it completes with fail_status */
	int fail_status;
	bool never;   /* accept and never complete */
	bool resumes; /* a stalled request is a lost connection: reissued, then answered */
	int stalls;
	int submits;
	int fault_submits;
	int drain_inflight;
	int max_drain_inflight;
	int completions_fault_first; /* a fault request completed while drains were queued */
	int fault_past_full_drain;   /* fault submitted while the drain was at its depth */
};

static void tsrc_fire(evutil_socket_t fd, short what, void *arg)
{
	struct tsrc *ts = arg;
	struct pagesrc_req *req, *pick;

	while (!ts->hold && !TAILQ_EMPTY(&ts->q)) {
		pick = NULL;
		/* Fault requests first, like every real transport should. */
		TAILQ_FOREACH(req, &ts->q, src_link)
		{
			if (req->prio == PAGESRC_PRIO_FAULT) {
				pick = req;
				break;
			}
		}
		if (pick && TAILQ_FIRST(&ts->q) != pick)
			ts->completions_fault_first++;
		if (!pick)
			pick = TAILQ_FIRST(&ts->q);
		TAILQ_REMOVE(&ts->q, pick, src_link);
		if (pick->prio == PAGESRC_PRIO_DRAIN)
			ts->drain_inflight--;
		for (uint64_t off = 0; off < pick->len; off += PG)
			pattern_fill((uint8_t *)pick->dst + off, pick->img_vaddr + off, SEED);
		if (ts->fail_vaddr && ts->fail_vaddr >= pick->img_vaddr &&
		    ts->fail_vaddr < pick->img_vaddr + pick->len)
			pagesrc_complete(pick, ts->fail_status);
		else
			pagesrc_complete(pick, 0);
	}
}

static int tsrc_submit(void *ctx, struct pagesrc_req *req)
{
	struct tsrc *ts = ctx;

	ts->submits++;
	if (req->prio == PAGESRC_PRIO_FAULT) {
		ts->fault_submits++;
		if (ts->drain_inflight == 2)
			ts->fault_past_full_drain++;
	} else {
		ts->drain_inflight++;
		if (ts->drain_inflight > ts->max_drain_inflight)
			ts->max_drain_inflight = ts->drain_inflight;
	}
	if (ts->never)
		return 0;
	TAILQ_INSERT_TAIL(&ts->q, req, src_link);
	if (!ts->hold)
		event_active(ts->ev, EV_TIMEOUT, 0);
	return 0;
}

/* Like netsrc with FEAT_RESUME: a new connection, every held request answered. */
static int tsrc_stalled(void *ctx, const char *why)
{
	struct tsrc *ts = ctx;

	if (!ts->resumes)
		return -EOPNOTSUPP;
	ts->stalls++;
	ts->hold = false;
	event_active(ts->ev, EV_TIMEOUT, 0);
	return 0;
}

static void tsrc_destroy(void *ctx)
{
	struct tsrc *ts = ctx;

	event_free(ts->ev);
}

static const struct pagesrc_ops tsrc_ops = {
    .name = "test source",
    .submit = tsrc_submit,
    .stalled = tsrc_stalled,
    .destroy = tsrc_destroy,
};

/* ---- fixture ---- */

struct fx {
	struct event_base *base;
	struct staging *st;
	struct tsrc ts;
	struct engine *eng;
	struct img_task task;
	struct img_lazy_range lazy[2];
	struct img_vma vma;
	struct img_set set;
	uint8_t *mem;
	int cmd[2]; /* app thread -> loop */
	struct event *cmd_ev;
	struct event *release_ev;
	pthread_t app;
	void (*app_fn)(struct fx *f);
	atomic_int app_progress;
	atomic_int app_done;
	int done_status;
	int done_calls;
	int failed_calls;
	int failed_err;
	uint64_t moved_to;
};

static void fx_cmd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *f = arg;
	char c;

	while (read(fd, &c, 1) == 1) {
		switch (c) {
		case 'f':
			engine_restore_finished(f->eng);
			break;
		case 'h':
			f->ts.hold = true;
			break;
		case 'r':
			f->ts.hold = false;
			event_active(f->ts.ev, EV_TIMEOUT, 0);
			break;
		case 'R': {
			/* Release later: the app thread is about to block on a fault. */
			struct timeval tv = {.tv_usec = 100000};

			evtimer_add(f->release_ev, &tv);
			break;
		}
		case 'q':
			event_base_loopbreak(f->base);
			break;
		}
	}
}

static void fx_release_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *f = arg;

	f->ts.hold = false;
	event_active(f->ts.ev, EV_TIMEOUT, 0);
}

static void fx_send(struct fx *f, char c)
{
	assert_int_equal(write(f->cmd[1], &c, 1), 1);
}

static void fx_on_done(void *arg, int status)
{
	struct fx *f = arg;

	f->done_calls++;
	f->done_status = status;
}

static void fx_on_failed(void *arg, int32_t pid, pid_t real_pid, int err)
{
	struct fx *f = arg;

	f->failed_calls++;
	f->failed_err = err;
}

static const struct engine_ops fx_ops = {
    .task_failed = fx_on_failed,
    .done = fx_on_done,
};

/* Lazy: pages [0, 64) and [64, 192) (two ranges); [192, 256) was never dumped. */
static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct uffdio_api api = {
	    .api = UFFD_API,
	    .features =
		UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP,
	};
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};
	struct engine_config cfg;
	int uffd;

	assert_non_null(f);
	f->base = event_base_new();
	f->mem =
	    mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(f->mem != MAP_FAILED);
	f->lazy[0] = (struct img_lazy_range){.vaddr = (uint64_t)(uintptr_t)f->mem, .len = 64 * PG};
	f->lazy[1] = (struct img_lazy_range){.vaddr = (uint64_t)(uintptr_t)f->mem + 64 * PG,
					     .len = 128 * PG};
	f->vma = (struct img_vma){.start = (uint64_t)(uintptr_t)f->mem,
				  .end = (uint64_t)(uintptr_t)f->mem + NPAGES * PG,
				  .prot = PROT_READ | PROT_WRITE,
				  .flags = MAP_PRIVATE | MAP_ANONYMOUS};
	f->task = (struct img_task){.pid = 1,
				    .has_memory = true,
				    .vmas = &f->vma,
				    .nr_vmas = 1,
				    .lazy = f->lazy,
				    .nr_lazy = 2,
				    .lazy_bytes = 192 * PG};
	f->set = (struct img_set){.dir = (char *)"test", .tasks = &f->task, .nr_tasks = 1};
	assert_int_equal(staging_create(64 * PG, 16, &f->st), 0);
	f->ts.base = f->base;
	TAILQ_INIT(&f->ts.q);
	f->ts.ev = event_new(f->base, -1, 0, tsrc_fire, &f->ts);
	f->ts.src = pagesrc_new(&tsrc_ops, &f->ts);
	assert_non_null(f->ts.src);
	engine_config_default(&cfg);
	cfg.readahead_pages = 4;
	/* The counts below follow a fixed window; readahead.c has its own test. */
	cfg.readahead_fixed = true;
	cfg.drain_depth = 2;
	cfg.drain_chunk = 16 * PG;
	cfg.fetch_timeout_ms = 300;
	assert_int_equal(
	    engine_create(f->base, &f->set, f->ts.src, f->st, &cfg, &fx_ops, f, &f->eng), 0);
	assert_int_equal(pipe2(f->cmd, O_CLOEXEC | O_NONBLOCK), 0);
	f->cmd_ev = event_new(f->base, f->cmd[0], EV_READ | EV_PERSIST, fx_cmd_cb, f);
	event_add(f->cmd_ev, NULL);
	f->release_ev = evtimer_new(f->base, fx_release_cb, f);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	assert_true(uffd >= 0);
	assert_int_equal(ioctl(uffd, UFFDIO_API, &api), 0);
	reg.range.start = (uint64_t)(uintptr_t)f->mem;
	reg.range.len = NPAGES * PG;
	assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
	/* No sender: the engine cannot kill "the process" (this test). */
	assert_int_equal(engine_add_task(f->eng, 1, uffd, 0), 0);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	/* Source, then engine (closing the uffd wakes any thread still blocked), then staging. */
	pagesrc_destroy(f->ts.src);
	engine_free(f->eng);
	if (f->app_fn)
		pthread_join(f->app, NULL);
	staging_free(f->st);
	event_free(f->cmd_ev);
	event_free(f->release_ev);
	close(f->cmd[0]);
	close(f->cmd[1]);
	munmap(f->mem, NPAGES * PG);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void *fx_app_main(void *arg)
{
	struct fx *f = arg;

	f->app_fn(f);
	atomic_store(&f->app_done, 1);
	fx_send(f, 'q');
	return NULL;
}

/* Runs the loop until the app thread finishes (or max_ms passes). */
static void fx_run(struct fx *f, void (*fn)(struct fx *f), int max_ms)
{
	struct timeval tv = {.tv_sec = max_ms / 1000, .tv_usec = (max_ms % 1000) * 1000};

	f->app_fn = fn;
	assert_int_equal(pthread_create(&f->app, NULL, fx_app_main, f), 0);
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

/* Runs the loop for ms more (the engine settling after the app is done). */
static void fx_spin(struct fx *f, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

static uint64_t addr_of(struct fx *f, unsigned page)
{
	return (uint64_t)(uintptr_t)f->mem + (uint64_t)page * PG;
}

/* 0 if page (at run-time address rt, dump-time vaddr) holds the pattern, or zeros if zero. */
static int check_page(uint64_t rt, uint64_t vaddr, bool zero)
{
	const uint64_t *w = (const uint64_t *)(uintptr_t)rt;

	if (!zero)
		return pattern_check(w, vaddr, SEED, NULL);
	for (unsigned i = 0; i < PG / 8; i++)
		if (w[i])
			return -1;
	return 0;
}

static atomic_int app_errors;

static void app_touch_some(struct fx *f)
{
	/* Lazy pages of both ranges and a never-dumped page, before FIN. */
	static const unsigned pages[] = {3, 40, 63, 64, 100, 191, 200, 255};

	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		if (check_page(addr_of(f, pages[i]), addr_of(f, pages[i]), pages[i] >= 192))
			atomic_fetch_add(&app_errors, 1);
}

static void test_faults_then_drain(void **state)
{
	struct fx *f = *state;
	struct engine_stats s;

	atomic_store(&app_errors, 0);
	fx_run(f, app_touch_some, 5000);
	assert_true(atomic_load(&f->app_done));
	assert_int_equal(atomic_load(&app_errors), 0);
	engine_get_stats(f->eng, &s);
	/* Before FIN: only faults, with read-ahead clipped at range ends. */
	assert_int_equal(s.c.pages_drain, 0);
	assert_int_equal(s.c.zero_pages, 2);
	assert_int_equal(s.c.faults_lazy, 6);
	/* The faulting page goes alone, its read-ahead behind it: 3, 40, 64, 100 split. */
	assert_int_equal(f->ts.fault_submits, 10);
	/* 3..6, 40..43, 63, 64..67, 100..103, 191 */
	assert_int_equal(s.c.pages_fault, 4 + 4 + 1 + 4 + 4 + 1);
	assert_int_equal(f->done_calls, 0);
	fx_send(f, 'f');
	fx_spin(f, 500);
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->done_status, 0);
	engine_get_stats(f->eng, &s);
	assert_int_equal(s.c.pages_fault + s.c.pages_drain, 192);
	assert_int_equal(s.remaining, 0);
	assert_int_equal(s.tasks_done, 1);
	assert_true(f->ts.max_drain_inflight <= 2);
	/* Everything readable now, without the engine (its uffd is closed). */
	for (unsigned p = 0; p < NPAGES; p++)
		assert_int_equal(check_page(addr_of(f, p), addr_of(f, p), p >= 192), 0);
}

static void app_fault_during_held_drain(struct fx *f)
{
	fx_send(f, 'f');
	usleep(50000); /* the drain fills its two slots and is held */
	fx_send(f, 'R');
	if (check_page(addr_of(f, 150), addr_of(f, 150), false))
		atomic_fetch_add(&app_errors, 1);
}

static void test_fault_beats_drain(void **state)
{
	struct fx *f = *state;

	atomic_store(&app_errors, 0);
	f->ts.hold = true;
	fx_run(f, app_fault_during_held_drain, 5000);
	fx_spin(f, 500);
	assert_int_equal(atomic_load(&app_errors), 0);
	/* The drain never had more than its depth in flight; the fault went past it. */
	assert_int_equal(f->ts.max_drain_inflight, 2);
	assert_true(f->ts.fault_past_full_drain >= 1);
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->done_status, 0);
}

static void app_remap_while_in_flight(struct fx *f)
{
	uint8_t *dst = mmap(NULL, 32 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *moved;

	/*
	 * A fault at 95 (read-ahead 95..98) moves the drain to 99: after FIN,
	 * held drain requests cover 99..130 when 96..127 move.
	 */
	if (check_page(addr_of(f, 95), addr_of(f, 95), false))
		atomic_fetch_add(&app_errors, 1);
	fx_send(f, 'h');
	fx_send(f, 'f');
	usleep(50000);
	moved = mremap(f->mem + 96 * PG, 32 * PG, 32 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	if (moved == MAP_FAILED) {
		atomic_fetch_add(&app_errors, 100);
		return;
	}
	f->moved_to = (uint64_t)(uintptr_t)moved;
	fx_send(f, 'r');
	for (unsigned p = 0; p < 32; p++)
		if (check_page((uint64_t)(uintptr_t)moved + p * PG, addr_of(f, 96 + p), false))
			atomic_fetch_add(&app_errors, 1);
}

static void test_remap_in_flight(void **state)
{
	struct fx *f = *state;
	struct engine_stats s;

	atomic_store(&app_errors, 0);
	fx_run(f, app_remap_while_in_flight, 5000);
	fx_spin(f, 500);
	assert_int_equal(atomic_load(&app_errors), 0);
	engine_get_stats(f->eng, &s);
	assert_int_equal(s.c.remaps, 1);
	assert_int_equal(s.c.pages_fault + s.c.pages_drain + s.c.pages_dropped, 192);
	assert_int_equal(f->done_status, 0);
	munmap((void *)(uintptr_t)f->moved_to, 32 * PG);
}

static void app_dontneed(struct fx *f)
{
	/* Half of range 2 read, then thrown away: it must read as zeros after. */
	if (check_page(addr_of(f, 70), addr_of(f, 70), false))
		atomic_fetch_add(&app_errors, 1);
	if (madvise(f->mem + 64 * PG, 64 * PG, MADV_DONTNEED) < 0)
		atomic_fetch_add(&app_errors, 100);
	for (unsigned p = 64; p < 128; p++)
		if (check_page(addr_of(f, p), addr_of(f, p), true))
			atomic_fetch_add(&app_errors, 1);
	fx_send(f, 'f');
}

static void test_remove(void **state)
{
	struct fx *f = *state;
	struct engine_stats s;

	atomic_store(&app_errors, 0);
	fx_run(f, app_dontneed, 5000);
	fx_spin(f, 500);
	assert_int_equal(atomic_load(&app_errors), 0);
	engine_get_stats(f->eng, &s);
	assert_int_equal(s.c.removes, 1);
	/*
	 * 70 was installed before; its read-ahead 71..73 may land before the
	 * madvise or be dropped with the other 60 pages of the half.
	 */
	assert_in_range(s.c.pages_dropped, 60, 63);
	assert_int_equal(s.c.pages_fault + s.c.pages_drain + s.c.pages_dropped, 192);
	assert_int_equal(f->done_status, 0);
}

static void app_touch_failing(struct fx *f)
{
	atomic_fetch_add(&f->app_progress, 1);
	/* Blocks until the engine is freed: the page is never installed. */
	(void)*(volatile uint8_t *)(f->mem + 10 * PG);
	atomic_fetch_add(&f->app_progress, 1);
}

static void test_source_failure_keeps_thread_blocked(void **state)
{
	struct fx *f = *state;

	f->ts.fail_vaddr = addr_of(f, 10);
	f->ts.fail_status = -EIO;
	fx_run(f, app_touch_failing, 300);
	assert_int_equal(f->failed_calls, 1);
	assert_int_equal(f->failed_err, -EIO);
	/* The uffd stays open: the faulting thread is still blocked, never fed zeros. */
	assert_int_equal(atomic_load(&f->app_progress), 1);
	assert_int_equal(f->done_calls, 0);
	/* Teardown frees the engine, which releases the thread. */
}

static void test_fetch_timeout(void **state)
{
	struct fx *f = *state;

	f->ts.never = true;
	fx_run(f, app_touch_failing, 800);
	assert_int_equal(f->failed_calls, 1);
	assert_int_equal(f->failed_err, -ETIMEDOUT);
	assert_int_equal(atomic_load(&f->app_progress), 1);
}

/* A source that can resume: the timed-out fetch is reissued, never failed. */
static void test_fetch_timeout_resumes(void **state)
{
	struct fx *f = *state;

	f->ts.hold = true;
	f->ts.resumes = true;
	fx_run(f, app_touch_failing, 2000);
	assert_int_equal(f->ts.stalls, 1);
	assert_int_equal(f->failed_calls, 0);
	assert_int_equal(atomic_load(&f->app_progress), 2);
	assert_int_equal(check_page(addr_of(f, 10), addr_of(f, 10), false), 0);
}

static void app_nothing(struct fx *f)
{
	fx_send(f, 'f');
}

static void test_abort(void **state)
{
	struct fx *f = *state;

	f->ts.never = true;
	fx_run(f, app_nothing, 200);
	assert_true(engine_remaining(f->eng) > 0);
	engine_abort(f->eng, "test");
	fx_spin(f, 300);
	/* The unkillable task stays failed: done is not reported while it may need pages. */
	assert_int_equal(f->failed_calls, 1);
	assert_int_equal(f->failed_err, -ECANCELED);
	assert_int_equal(f->done_calls, 0);
}

static void adopt_info(void *arg, const struct engine_task_info *i)
{
	*(struct engine_task_info *)arg = *i;
}

/*
 * A worker taking over (design.md §10.2): a second engine adopts a uffd
 * whose pages [0, 32) an earlier "worker" installed and whose lazy pages
 * [160, 192) it saw unmapped.  The adopted task keeps its id, the unmap is
 * replayed, the installed pages answer EEXIST (counted, not copied again),
 * the rest is drained, and every page left mapped holds its content.
 */
static void test_adopt(void **state)
{
	struct fx *f = *state;
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
					     UFFD_FEATURE_EVENT_UNMAP};
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};
	struct img_lazy_range lazy[2];
	struct img_vma vma;
	struct img_task task;
	struct img_set set;
	struct engine_config cfg;
	struct engine *e2 = NULL;
	struct engine_stats st;
	struct engine_task_info info = {0};
	uint8_t *mem, page[PG];
	uint64_t base, copied;
	int uffd;

	mem = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	base = (uint64_t)(uintptr_t)mem;
	lazy[0] = (struct img_lazy_range){.vaddr = base, .len = 64 * PG};
	lazy[1] = (struct img_lazy_range){.vaddr = base + 64 * PG, .len = 128 * PG};
	vma = (struct img_vma){.start = base,
			       .end = base + NPAGES * PG,
			       .prot = PROT_READ | PROT_WRITE,
			       .flags = MAP_PRIVATE | MAP_ANONYMOUS};
	task = (struct img_task){.pid = 1,
				 .has_memory = true,
				 .vmas = &vma,
				 .nr_vmas = 1,
				 .lazy = lazy,
				 .nr_lazy = 2,
				 .lazy_bytes = 192 * PG};
	set = (struct img_set){.dir = (char *)"adopt", .tasks = &task, .nr_tasks = 1};
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	assert_true(uffd >= 0);
	assert_int_equal(ioctl(uffd, UFFDIO_API, &api), 0);
	reg.range.start = base;
	reg.range.len = NPAGES * PG;
	assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
	/* The earlier worker's installs. */
	for (unsigned p = 0; p < 32; p++) {
		pattern_fill(page, base + p * PG, SEED);
		assert_int_equal(uffd_copy(uffd, base + p * PG, page, PG, &copied), 0);
	}

	engine_config_default(&cfg);
	cfg.drain_depth = 2;
	cfg.drain_chunk = 16 * PG;
	assert_int_equal(engine_create(f->base, &set, f->ts.src, f->st, &cfg, &fx_ops, f, &e2), 0);
	assert_int_equal(
	    engine_adopt_task(
		e2, &(struct engine_task_ref){.id = 5, .pid = 1, .uffd = uffd, .pidfd = -1},
		&(struct uffd_layout){
		    .kind = UFFD_EVENT_UNMAP, .from = base + 160 * PG, .to = base + 192 * PG},
		1, false),
	    0);
	engine_restore_finished(e2);
	for (int i = 0; i < 50 && !f->done_calls; i++)
		fx_spin(f, 20);
	assert_int_equal(f->done_calls, 1);
	assert_int_equal(f->done_status, 0);
	engine_get_stats(e2, &st);
	assert_int_equal(st.c.adopted, 1);
	assert_int_equal(st.c.replayed, 1);
	assert_int_equal(st.c.pages_exist, 32);
	assert_int_equal(st.c.pages_drain, 128);
	assert_int_equal(st.c.zero_pages, 0);
	engine_for_each_task(e2, adopt_info, &info);
	assert_int_equal(info.id, 5);
	assert_int_equal(info.state, ENGINE_TASK_DONE);
	for (unsigned p = 0; p < 160; p++)
		assert_int_equal(pattern_check(mem + p * PG, base + p * PG, SEED, NULL), 0);
	engine_free(e2);
	munmap(mem, NPAGES * PG);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
	    T(test_faults_then_drain),
	    T(test_fault_beats_drain),
	    T(test_remap_in_flight),
	    T(test_remove),
	    T(test_source_failure_keeps_thread_blocked),
	    T(test_fetch_timeout),
	    T(test_fetch_timeout_resumes),
	    T(test_abort),
	    T(test_adopt),
	};
#undef T

	log_init("test_engine", LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
