// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * criupsrv against a fake `criu dump --lazy-pages` page server
 * (fake_psrv.h), on a socketpair or a loopback TCP connection.  Every page is
 * checked against the pattern of its dump-time address, in both header
 * layouts, and the failures (a hang-up mid-reply, a reply that breaks the
 * protocol, a refused connection) complete every request with an error,
 * never with 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "fake_psrv.h"
#include "pattern.h"
#include "source-agent/criupsrv.h"
#include "util.h"

#define PAGE 4096u

/* The fake dump's lazy memory: two tasks. */
static const struct fake_range franges[] = {
    {100, 0x10000000ull, 300},
    {101, 0x7f0000000000ull, 2100},
};

/* The client side: requests, the loop, what the callbacks saw. */
struct treq {
	struct criupsrv_req r; /* first: the callback casts back */
	int done_calls;
	int status;
};

struct tctx {
	struct event_base *base;
	struct criupsrv *ps;
	struct treq *reqs;
	size_t nreqs;
	size_t ndone;
	bool close_when_done;
	struct fake_end end;
};

static void t_done(struct criupsrv_req *r, int status, void *arg)
{
	struct treq *t = (struct treq *)r;
	struct tctx *x = arg;

	t->done_calls++;
	t->status = status;
	x->ndone++;
	if (x->ndone == x->nreqs && x->close_when_done && status == 0)
		assert_int_equal(criupsrv_close(x->ps), 0);
}

static void t_failed(struct criupsrv *ps, int err, void *arg)
{
	(void)ps;
	fake_end_failed(&((struct tctx *)arg)->end, err);
}

static void t_closed(struct criupsrv *ps, int status, void *arg)
{
	(void)ps;
	fake_end_closed(&((struct tctx *)arg)->end, status);
}

static const struct criupsrv_ops t_ops = {.failed = t_failed, .closed = t_closed};

static void treq_init(struct treq *t, struct tctx *x, uint32_t pid, uint64_t vaddr, uint64_t nr)
{
	memset(t, 0, sizeof(*t));
	t->r.vpid = pid;
	t->r.vaddr = vaddr;
	t->r.nr_pages = nr;
	t->r.buf = calloc(nr, PAGE);
	assert_non_null(t->r.buf);
	t->r.done = t_done;
	t->r.arg = x;
	t->status = 1;
}

static void check_pages(const struct treq *t)
{
	uint64_t i, bad;

	for (i = 0; i < t->r.nr_pages; i++)
		assert_int_equal(pattern_check((uint8_t *)t->r.buf + i * PAGE,
					       t->r.vaddr + i * PAGE,
					       pattern_seed_for_pid((int32_t)t->r.vpid), &bad),
				 0);
}

static void start_pair(struct tctx *x, struct fake_psrv *f, bool v42, uint64_t chunk,
		       enum fake_mode mode)
{
	int fd;

	memset(f, 0, sizeof(*f));
	f->v42 = v42;
	f->chunk = chunk;
	f->mode = mode;
	f->ranges = franges;
	f->nr_ranges = ARRAY_SIZE(franges);
	fake_psrv_start_pair(f, &fd);
	x->base = event_base_new();
	x->end.base = x->base;
	assert_non_null(x->base);
	assert_int_equal(criupsrv_open_fd(x->base, fd, v42 ? CRIUPSRV_WIRE_42 : CRIUPSRV_WIRE_317,
					  "fake", &t_ops, x, &x->ps),
			 0);
}

static void finish(struct tctx *x, struct fake_psrv *f)
{
	size_t i;

	criupsrv_free(x->ps);
	fake_psrv_join(f);
	event_base_free(x->base);
	for (i = 0; i < x->nreqs; i++)
		free(x->reqs[i].r.buf);
	free(x->reqs);
}

/*
 * The background pull: every lazy page of both tasks, in requests that
 * span several GETs and the dump's short replies; then a clean close.
 */
static void pull_everything(bool v42, uint64_t chunk)
{
	struct tctx x = {0};
	struct fake_psrv f;
	size_t i;

	start_pair(&x, &f, v42, chunk, FAKE_GOOD);
	x.nreqs = 4;
	x.reqs = calloc(x.nreqs, sizeof(*x.reqs));
	treq_init(&x.reqs[0], &x, 100, franges[0].vaddr, 300);
	treq_init(&x.reqs[1], &x, 101, franges[1].vaddr, 1500);
	treq_init(&x.reqs[2], &x, 101, franges[1].vaddr + 1500 * PAGE, 599);
	treq_init(&x.reqs[3], &x, 101, franges[1].vaddr + 2099 * PAGE, 1);
	x.close_when_done = true;
	for (i = 0; i < x.nreqs; i++)
		assert_int_equal(criupsrv_get(x.ps, &x.reqs[i].r), 0);
	assert_int_equal(criupsrv_pending(x.ps), 4);
	/* Nothing runs inside the calls themselves. */
	for (i = 0; i < x.nreqs; i++)
		assert_int_equal(x.reqs[i].done_calls, 0);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.failed_calls, 0);
	assert_int_equal(x.end.closed_calls, 1);
	assert_int_equal(x.end.closed_status, 0);
	for (i = 0; i < x.nreqs; i++) {
		assert_int_equal(x.reqs[i].done_calls, 1);
		assert_int_equal(x.reqs[i].status, 0);
		check_pages(&x.reqs[i]);
	}
	assert_int_equal(criupsrv_pending(x.ps), 0);
	assert_int_equal(criupsrv_get(x.ps, &x.reqs[0].r), -ESHUTDOWN);
	finish(&x, &f);
	assert_true(f.saw_close);
	assert_true(f.saw_eof_after_close);
	assert_false(f.protocol_error);
	/* Short replies were asked for again: more GETs than requests. */
	if (chunk < 300)
		assert_true(f.gets > 4);
}

static void test_pull_317(void **state)
{
	(void)state;
	pull_everything(false, 819);
}

static void test_pull_42(void **state)
{
	(void)state;
	pull_everything(true, 819);
}

static void test_pull_short_replies(void **state)
{
	(void)state;
	pull_everything(false, 7);
	pull_everything(true, 1);
}

/* A fault's page overtakes background GETs that have not left yet. */
static void test_prioritize(void **state)
{
	struct tctx x = {0};
	struct fake_psrv f;
	size_t i, nbg = CRIUPSRV_MAX_INFLIGHT + 8;
	uint64_t fault_vaddr = franges[1].vaddr + 2000 * PAGE;

	(void)state;
	start_pair(&x, &f, false, 819, FAKE_GOOD);
	x.nreqs = nbg + 1;
	x.reqs = calloc(x.nreqs, sizeof(*x.reqs));
	for (i = 0; i < nbg; i++)
		treq_init(&x.reqs[i], &x, 101, franges[1].vaddr + i * 10 * PAGE, 10);
	treq_init(&x.reqs[nbg], &x, 101, fault_vaddr, 1);
	x.close_when_done = true;
	for (i = 0; i < x.nreqs; i++)
		assert_int_equal(criupsrv_get(x.ps, &x.reqs[i].r), 0);
	assert_int_equal(criupsrv_prioritize(x.ps, &x.reqs[nbg].r), 0);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.closed_status, 0);
	for (i = 0; i < x.nreqs; i++) {
		assert_int_equal(x.reqs[i].status, 0);
		check_pages(&x.reqs[i]);
	}
	/* Once sent, a GET cannot be overtaken any more. */
	finish(&x, &f);
	assert_int_equal(f.get_vaddr[0], fault_vaddr);
	assert_int_equal(f.gets, (int)x.nreqs);
}

/* Failures: every outstanding request ends with the error, once. */
static void fail_with(enum fake_mode mode, int want)
{
	struct tctx x = {0};
	struct fake_psrv f;
	size_t i;

	start_pair(&x, &f, true, 819, mode);
	x.nreqs = 3;
	x.reqs = calloc(x.nreqs, sizeof(*x.reqs));
	treq_init(&x.reqs[0], &x, 100, franges[0].vaddr, 100);
	treq_init(&x.reqs[1], &x, 100, franges[0].vaddr + 100 * PAGE, 100);
	treq_init(&x.reqs[2], &x, 101, franges[1].vaddr, 2000);
	for (i = 0; i < x.nreqs; i++)
		assert_int_equal(criupsrv_get(x.ps, &x.reqs[i].r), 0);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.failed_calls, 1);
	assert_int_equal(x.end.failed_err, want);
	assert_int_equal(x.end.closed_calls, 0);
	for (i = 0; i < x.nreqs; i++) {
		assert_int_equal(x.reqs[i].done_calls, 1);
		assert_int_equal(x.reqs[i].status, want);
	}
	assert_int_equal(criupsrv_get(x.ps, &x.reqs[0].r), -ESHUTDOWN);
	finish(&x, &f);
}

static void test_hangup_mid_reply(void **state)
{
	(void)state;
	fail_with(FAKE_HANGUP_MID_DATA, -ECONNRESET);
}

static void test_bad_replies(void **state)
{
	(void)state;
	fail_with(FAKE_BAD_PID, -EPROTO);
	fail_with(FAKE_ZERO_PAGES, -EPROTO);
}

static void test_bad_requests(void **state)
{
	struct tctx x = {0};
	struct fake_psrv f;
	struct treq t;

	(void)state;
	start_pair(&x, &f, false, 819, FAKE_GOOD);
	treq_init(&t, &x, 100, franges[0].vaddr + 1, 1);
	assert_int_equal(criupsrv_get(x.ps, &t.r), -EINVAL);
	t.r.vaddr = franges[0].vaddr;
	t.r.nr_pages = 0;
	assert_int_equal(criupsrv_get(x.ps, &t.r), -EINVAL);
	free(t.r.buf);
	/* A session closed with nothing asked: CLOSE, status, end of file. */
	assert_int_equal(criupsrv_close(x.ps), 0);
	assert_int_equal(criupsrv_close(x.ps), -ESHUTDOWN);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.closed_calls, 1);
	assert_int_equal(x.end.closed_status, 0);
	finish(&x, &f);
	assert_true(f.saw_close);
	assert_true(f.saw_eof_after_close);
	assert_int_equal(f.gets, 0);
}

/* Over loopback TCP, as with the real dump; then a refused connection. */
static void test_tcp_connect(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	struct tctx x = {0};
	struct fake_psrv f;
	char port[16];
	int lfd;

	(void)state;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	snprintf(port, sizeof(port), "%u", ntohs(sin.sin_port));

	memset(&f, 0, sizeof(f));
	f.chunk = 64;
	f.ranges = franges;
	f.nr_ranges = ARRAY_SIZE(franges);
	fake_psrv_start_listen(&f, lfd);
	x.base = event_base_new();
	x.end.base = x.base;
	assert_int_equal(
	    criupsrv_connect(x.base, "127.0.0.1", port, CRIUPSRV_WIRE_317, &t_ops, &x, &x.ps), 0);
	x.nreqs = 1;
	x.reqs = calloc(1, sizeof(*x.reqs));
	treq_init(&x.reqs[0], &x, 100, franges[0].vaddr, 300);
	x.close_when_done = true;
	assert_int_equal(criupsrv_get(x.ps, &x.reqs[0].r), 0);
	event_base_dispatch(x.base);
	assert_int_equal(x.reqs[0].status, 0);
	check_pages(&x.reqs[0]);
	assert_int_equal(x.end.closed_status, 0);
	finish(&x, &f);
	assert_true(f.saw_eof_after_close);

	/* The listener is gone: the connect fails, and says so. */
	close(lfd);
	memset(&x, 0, sizeof(x));
	x.base = event_base_new();
	x.end.base = x.base;
	assert_int_equal(
	    criupsrv_connect(x.base, "127.0.0.1", port, CRIUPSRV_WIRE_317, &t_ops, &x, &x.ps), 0);
	event_base_dispatch(x.base);
	assert_int_equal(x.end.failed_calls, 1);
	assert_int_equal(x.end.failed_err, -ECONNREFUSED);
	criupsrv_free(x.ps);
	event_base_free(x.base);
	/* Names are not looked up on the loop. */
	assert_int_equal(
	    criupsrv_connect(NULL, "localhost", port, CRIUPSRV_WIRE_317, &t_ops, &x, &x.ps),
	    -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pull_317),	       cmocka_unit_test(test_pull_42),
	    cmocka_unit_test(test_pull_short_replies), cmocka_unit_test(test_prioritize),
	    cmocka_unit_test(test_hangup_mid_reply),   cmocka_unit_test(test_bad_replies),
	    cmocka_unit_test(test_bad_requests),       cmocka_unit_test(test_tcp_connect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
