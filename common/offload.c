// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * offload: the agent's background thread (see offload.h).
 */
#include "offload.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

TAILQ_HEAD(offload_list, offload_job);

struct offload {
	struct event *ev; /* the eventfd, in the loop */
	int efd;
	pthread_t thread;
	bool thread_started;
	/* Everything below is shared with the worker: under lock. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct offload_list queue; /* submitted, not started */
	struct offload_list done;  /* run (or skipped), waiting for the loop */
	struct offload_job *running;
	bool stop;
};

static void offload_notify(struct offload *o)
{
	uint64_t one = 1;

	/* Only an overflowing counter (2^64 - 2 wakeups) could fail; nothing to do then. */
	while (write(o->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void *offload_main(void *arg)
{
	struct offload *o = arg;
	struct offload_job *j;
	bool was_empty;

	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (!o->stop && TAILQ_EMPTY(&o->queue))
			pthread_cond_wait(&o->wake, &o->lock);
		if (o->stop)
			break;
		j = TAILQ_FIRST(&o->queue);
		TAILQ_REMOVE(&o->queue, j, link);
		o->running = j;
		pthread_mutex_unlock(&o->lock);

		j->ran = !offload_job_cancelled(j);
		if (j->ran)
			j->run(j);

		pthread_mutex_lock(&o->lock);
		o->running = NULL;
		was_empty = TAILQ_EMPTY(&o->done);
		TAILQ_INSERT_TAIL(&o->done, j, link);
		/* The loop takes the whole list per wakeup: one write per batch is enough. */
		if (was_empty)
			offload_notify(o);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* Hands l's jobs back to their owners, who may submit again from done(). */
static void offload_deliver(struct offload_list *l)
{
	struct offload_job *j;

	while ((j = TAILQ_FIRST(l)) != NULL) {
		TAILQ_REMOVE(l, j, link);
		j->done(j, j->ran);
	}
}

static void offload_cb(evutil_socket_t fd, short what, void *arg)
{
	struct offload *o = arg;
	struct offload_list l = TAILQ_HEAD_INITIALIZER(l);
	uint64_t n;

	if (read(o->efd, &n, sizeof(n)) < 0 && errno != EAGAIN && errno != EINTR)
		log_warn("offload: reading its eventfd: %s", strerror(errno));
	pthread_mutex_lock(&o->lock);
	TAILQ_CONCAT(&l, &o->done, link);
	pthread_mutex_unlock(&o->lock);
	offload_deliver(&l);
}

int offload_new(struct event_base *base, struct offload **out)
{
	sigset_t all, old;
	struct offload *o;
	int ret;

	*out = NULL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->efd = -1;
	TAILQ_INIT(&o->queue);
	TAILQ_INIT(&o->done);
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->wake, NULL);
	o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (o->efd < 0) {
		ret = -errno;
		log_err("offload: eventfd: %s", strerror(errno));
		goto out;
	}
	o->ev = event_new(base, o->efd, EV_READ | EV_PERSIST, offload_cb, o);
	if (!o->ev || event_add(o->ev, NULL) < 0) {
		ret = -ENOMEM;
		log_err("offload: cannot watch its eventfd");
		goto out;
	}
	/* The thread inherits this mask: signals stay with the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&o->thread, NULL, offload_main, o);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0) {
		log_err("offload: cannot start its thread: %s", strerror(-ret));
		goto out;
	}
	o->thread_started = true;
	*out = o;
	o = NULL;
	ret = 0;
out:
	offload_free(o);
	return ret;
}

int offload_submit(struct offload *o, struct offload_job *j)
{
	atomic_init(&j->cancelled, false);
	j->ran = false;
	pthread_mutex_lock(&o->lock);
	if (o->stop) {
		pthread_mutex_unlock(&o->lock);
		return -ESHUTDOWN;
	}
	TAILQ_INSERT_TAIL(&o->queue, j, link);
	pthread_cond_signal(&o->wake);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

void offload_cancel(struct offload_job *j)
{
	atomic_store(&j->cancelled, true);
}

bool offload_job_cancelled(const struct offload_job *j)
{
	return atomic_load(&j->cancelled);
}

int offload_job_sleep(const struct offload_job *j, unsigned int ms)
{
	struct timespec step = {0, 10 * 1000 * 1000};
	uint64_t t0 = now_ns();

	while (now_ns() - t0 < (uint64_t)ms * 1000000u) {
		if (offload_job_cancelled(j))
			return -ECANCELED;
		nanosleep(&step, NULL);
	}
	return 0;
}

void offload_free(struct offload *o)
{
	struct offload_list left = TAILQ_HEAD_INITIALIZER(left);
	struct offload_job *j;

	if (!o)
		return;
	if (o->thread_started) {
		pthread_mutex_lock(&o->lock);
		o->stop = true;
		TAILQ_FOREACH(j, &o->queue, link)
		offload_cancel(j);
		if (o->running)
			offload_cancel(o->running);
		pthread_cond_signal(&o->wake);
		pthread_mutex_unlock(&o->lock);
		pthread_join(o->thread, NULL);
	}
	/* The worker is gone: no lock needed any more. */
	TAILQ_CONCAT(&left, &o->done, link);
	offload_deliver(&left);
	offload_deliver(&o->queue);
	if (o->ev)
		event_free(o->ev);
	if (o->efd >= 0)
		close(o->efd);
	pthread_cond_destroy(&o->wake);
	pthread_mutex_destroy(&o->lock);
	free(o);
}
