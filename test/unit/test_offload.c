// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The source agent's offload thread: jobs run off the loop's thread, in
 * order, and come back through the loop exactly once, whether they ran,
 * were cancelled before or while running, or were still queued when the
 * offload was freed.  A timer keeps ticking while a job works: the loop is
 * never blocked by it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "offload.h"

#define NJOBS 8

struct ctx;

struct tjob {
	struct offload_job job; /* first: the callbacks cast back */
	struct ctx *x;
	int idx;
	int sleep_ms;	     /* run() sleeps this long */
	bool until_cancel;   /* run() waits for its cancellation instead */
	atomic_bool started; /* polled by the test while the job runs */
	/* Written by run() on the worker. */
	pthread_t ran_on;
	bool saw_cancel;
	int order;
	/* Written by done() on the loop. */
	int done_calls;
	bool done_ran;
	bool done_on_loop;
};

struct ctx {
	struct event_base *base;
	struct offload *o;
	pthread_t loop;
	atomic_int next_order; /* the worker's counter */
	int done_count;
	int want_done;
	int ticks;
	struct tjob *resubmit; /* done() of job 0 submits this one */
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void tjob_run(struct offload_job *oj)
{
	struct tjob *t = (struct tjob *)oj;
	int i;

	atomic_store(&t->started, true);
	t->ran_on = pthread_self();
	t->order = atomic_fetch_add(&t->x->next_order, 1);
	for (i = 0; t->until_cancel && i < 10000 && !offload_job_cancelled(oj); i++)
		sleep_ms(1);
	if (t->sleep_ms)
		sleep_ms(t->sleep_ms);
	t->saw_cancel = offload_job_cancelled(oj);
}

static void tjob_done(struct offload_job *oj, bool ran)
{
	struct tjob *t = (struct tjob *)oj;
	struct ctx *x = t->x;

	t->done_calls++;
	t->done_ran = ran;
	t->done_on_loop = pthread_equal(pthread_self(), x->loop);
	if (t->idx == 0 && x->resubmit) {
		assert_int_equal(offload_submit(x->o, &x->resubmit->job), 0);
		x->resubmit = NULL;
	}
	if (++x->done_count == x->want_done && x->base)
		event_base_loopbreak(x->base);
}

static void tjob_init(struct tjob *t, struct ctx *x, int idx)
{
	memset(t, 0, sizeof(*t));
	t->job.run = tjob_run;
	t->job.done = tjob_done;
	t->x = x;
	t->idx = idx;
	t->order = -1;
	atomic_init(&t->started, false);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctx *x = arg;

	x->ticks++;
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	fail_msg("the jobs did not come back within 10 s");
}

/* Runs the loop until want_done jobs came back, with a 10 ms ticker. */
static void run_loop(struct ctx *x)
{
	struct timeval ten_ms = {0, 10000}, ten_s = {10, 0};
	struct event *tick = event_new(x->base, -1, EV_PERSIST, tick_cb, x);
	struct event *dog = evtimer_new(x->base, watchdog_cb, x);

	assert_non_null(tick);
	assert_non_null(dog);
	event_add(tick, &ten_ms);
	event_add(dog, &ten_s);
	event_base_dispatch(x->base);
	event_free(tick);
	event_free(dog);
}

/* Waits (at most 5 s) until the worker has taken t. */
static void wait_started(struct tjob *t)
{
	int i;

	for (i = 0; i < 5000 && !atomic_load(&t->started); i++)
		sleep_ms(1);
	assert_true(atomic_load(&t->started));
}

static void ctx_init(struct ctx *x)
{
	memset(x, 0, sizeof(*x));
	x->loop = pthread_self();
	x->base = event_base_new();
	assert_non_null(x->base);
	assert_int_equal(offload_new(x->base, &x->o), 0);
}

static void ctx_free(struct ctx *x)
{
	offload_free(x->o);
	event_base_free(x->base);
}

static void test_jobs_run_off_the_loop_in_order(void **state)
{
	struct tjob jobs[NJOBS];
	struct ctx x;
	int i;

	ctx_init(&x);
	for (i = 0; i < NJOBS; i++) {
		tjob_init(&jobs[i], &x, i);
		jobs[i].sleep_ms = 25;
		assert_int_equal(offload_submit(x.o, &jobs[i].job), 0);
	}
	x.want_done = NJOBS;
	run_loop(&x);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(jobs[i].order, i);
		assert_false(pthread_equal(jobs[i].ran_on, x.loop));
		assert_int_equal(jobs[i].done_calls, 1);
		assert_true(jobs[i].done_ran);
		assert_true(jobs[i].done_on_loop);
		assert_false(jobs[i].saw_cancel);
	}
	/* 200 ms of work on the worker; a blocked loop would not have ticked. */
	assert_true(x.ticks >= 5);
	ctx_free(&x);
}

static void test_cancel_before_and_while_running(void **state)
{
	struct tjob busy, queued, after;
	struct ctx x;

	ctx_init(&x);
	tjob_init(&busy, &x, 1);
	busy.until_cancel = true;
	tjob_init(&queued, &x, 2);
	tjob_init(&after, &x, 3);
	assert_int_equal(offload_submit(x.o, &busy.job), 0);
	assert_int_equal(offload_submit(x.o, &queued.job), 0);
	assert_int_equal(offload_submit(x.o, &after.job), 0);
	/* Once the worker has taken busy, walk away from both. */
	wait_started(&busy);
	offload_cancel(&queued.job);
	offload_cancel(&busy.job);
	x.want_done = 3;
	run_loop(&x);
	assert_int_equal(busy.done_calls, 1);
	assert_true(busy.done_ran);
	assert_true(busy.saw_cancel);
	assert_int_equal(queued.done_calls, 1);
	assert_false(queued.done_ran);
	assert_int_equal(queued.order, -1); /* never ran */
	assert_int_equal(after.done_calls, 1);
	assert_true(after.done_ran);
	assert_false(after.saw_cancel);
	ctx_free(&x);
}

static void test_submit_from_done(void **state)
{
	struct tjob first, second;
	struct ctx x;

	ctx_init(&x);
	tjob_init(&first, &x, 0);
	tjob_init(&second, &x, 1);
	x.resubmit = &second;
	assert_int_equal(offload_submit(x.o, &first.job), 0);
	x.want_done = 2;
	run_loop(&x);
	assert_int_equal(first.done_calls, 1);
	assert_int_equal(second.done_calls, 1);
	assert_true(second.done_ran);
	assert_int_equal(second.order, 1);
	ctx_free(&x);
}

static void test_free_delivers_everything(void **state)
{
	struct tjob busy, queued[3];
	struct ctx x;
	int i;

	ctx_init(&x);
	tjob_init(&busy, &x, 1);
	busy.until_cancel = true;
	assert_int_equal(offload_submit(x.o, &busy.job), 0);
	for (i = 0; i < 3; i++) {
		tjob_init(&queued[i], &x, 2 + i);
		assert_int_equal(offload_submit(x.o, &queued[i].job), 0);
	}
	wait_started(&busy);
	/* No loop run: offload_free() itself hands every job back, once. */
	offload_free(x.o);
	x.o = NULL;
	assert_int_equal(busy.done_calls, 1);
	assert_true(busy.saw_cancel);
	assert_true(busy.done_on_loop);
	for (i = 0; i < 3; i++) {
		assert_int_equal(queued[i].done_calls, 1);
		assert_false(queued[i].done_ran);
	}
	event_base_free(x.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jobs_run_off_the_loop_in_order),
	    cmocka_unit_test(test_cancel_before_and_while_running),
	    cmocka_unit_test(test_submit_from_done),
	    cmocka_unit_test(test_free_delivers_everything),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
