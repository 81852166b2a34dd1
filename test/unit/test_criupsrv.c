// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * criupsrv against a fake `criu dump --lazy-pages` page server: a thread on
 * the other end of a socketpair (or of a loopback TCP connection) that
 * follows the protocol as docs/protocol.md states it: PS_IOV_GET headers
 * in, ADD_F|PE_PRESENT replies out, shortened at the end of its "pipe
 * buffers", served strictly in order, PS_IOV_CLOSE answered with an int32
 * 0 and followed by a wait for the client's end of file.  Every page is
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

#include "pattern.h"
#include "source-agent/criupsrv.h"

#define PAGE 4096u

/* The fake dump's lazy memory: two tasks. */
struct frange {
	uint32_t pid;
	uint64_t vaddr;
	uint64_t nr;
};

static const struct frange franges[] = {
    {100, 0x10000000ull, 300},
    {101, 0x7f0000000000ull, 2100},
};

enum fmode {
	F_GOOD = 0,
	F_HANGUP_MID_DATA, /* closes after half of the first reply's pages */
	F_BAD_PID,	   /* answers with another dst_id */
	F_ZERO_PAGES,	   /* answers with nr_pages 0 */
};

struct fake {
	int fd;
	bool v42;
	uint64_t chunk; /* pages per pipe buffer: replies end at a multiple */
	enum fmode mode;
	/* Results, read after the join. */
	int gets;
	uint64_t first_get_vaddr[64];
	bool saw_close;
	bool saw_eof_after_close;
	bool protocol_error; /* the client sent something the dump would refuse */
	pthread_t thread;
	int listen_fd; /* >= 0: accept on it first */
};

/* Blocking read or write of exactly len bytes; -1 on end of file or error. */
static int xfer_full(int fd, void *buf, size_t len, bool out)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = out ? send(fd, p, len, MSG_NOSIGNAL) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	return xfer_full(fd, buf, len, false);
}

static int write_full(int fd, const void *buf, size_t len)
{
	return xfer_full(fd, (void *)buf, len, true);
}

static void fhdr_put(const struct fake *f, uint8_t *h, uint32_t cmd, uint64_t nr, uint64_t vaddr,
		     uint64_t dst)
{
	uint32_t nr32 = (uint32_t)nr;

	memset(h, 0, 32);
	memcpy(h, &cmd, 4);
	if (f->v42) {
		memcpy(h + 8, &nr, 8);
		memcpy(h + 16, &vaddr, 8);
		memcpy(h + 24, &dst, 8);
	} else {
		memcpy(h + 4, &nr32, 4);
		memcpy(h + 8, &vaddr, 8);
		memcpy(h + 16, &dst, 8);
	}
}

static void fhdr_get(const struct fake *f, const uint8_t *h, uint32_t *cmd, uint64_t *nr,
		     uint64_t *vaddr, uint64_t *dst)
{
	uint32_t nr32;

	memcpy(cmd, h, 4);
	if (f->v42) {
		memcpy(nr, h + 8, 8);
		memcpy(vaddr, h + 16, 8);
		memcpy(dst, h + 24, 8);
	} else {
		memcpy(&nr32, h + 4, 4);
		*nr = nr32;
		memcpy(vaddr, h + 8, 8);
		memcpy(dst, h + 16, 8);
	}
}

static const struct frange *frange_of(uint64_t pid, uint64_t vaddr)
{
	size_t i;

	for (i = 0; i < sizeof(franges) / sizeof(franges[0]); i++)
		if (franges[i].pid == pid && vaddr >= franges[i].vaddr &&
		    vaddr < franges[i].vaddr + franges[i].nr * PAGE)
			return &franges[i];
	return NULL;
}

/* Answers one GET the way the dump does; returns -1 to end the session. */
static int fake_serve_get(struct fake *f, uint64_t nr, uint64_t vaddr, uint64_t dst)
{
	const struct frange *r = frange_of(dst, vaddr);
	uint64_t in_chunk, n, i, end;
	uint8_t hdr[32], *pages;
	size_t hlen = f->v42 ? 32 : 24, len;
	int ret;

	if (f->gets < 64)
		f->first_get_vaddr[f->gets] = vaddr;
	f->gets++;
	/* The dump only knows PE_LAZY ranges of its own pids. */
	if (!r || vaddr % PAGE || nr == 0) {
		f->protocol_error = true;
		return -1;
	}
	/* Shortened to the end of the pipe buffer that holds vaddr. */
	in_chunk = f->chunk - ((vaddr - r->vaddr) / PAGE) % f->chunk;
	end = (r->vaddr + r->nr * PAGE - vaddr) / PAGE;
	n = nr < in_chunk ? nr : in_chunk;
	n = n < end ? n : end;
	fhdr_put(f, hdr, (4u << 16) | 6u, f->mode == F_ZERO_PAGES ? 0 : n, vaddr,
		 f->mode == F_BAD_PID ? dst + 1 : dst);
	if (write_full(f->fd, hdr, hlen) < 0)
		return -1;
	if (f->mode == F_ZERO_PAGES || f->mode == F_BAD_PID)
		return 0;
	len = n * PAGE;
	pages = malloc(len);
	assert_non_null(pages);
	for (i = 0; i < n; i++)
		pattern_fill(pages + i * PAGE, vaddr + i * PAGE, pattern_seed_for_pid((int32_t)dst));
	if (f->mode == F_HANGUP_MID_DATA)
		len /= 2;
	ret = write_full(f->fd, pages, len);
	free(pages);
	return f->mode == F_HANGUP_MID_DATA ? -1 : ret;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	size_t hlen = f->v42 ? 32 : 24;
	uint64_t nr, vaddr, dst;
	uint8_t hdr[32], c;
	int32_t zero = 0;
	uint32_t cmd;

	if (f->listen_fd >= 0) {
		f->fd = accept(f->listen_fd, NULL, NULL);
		if (f->fd < 0)
			return NULL;
	}
	while (read_full(f->fd, hdr, hlen) == 0) {
		fhdr_get(f, hdr, &cmd, &nr, &vaddr, &dst);
		if (cmd == 0x1023) {
			f->saw_close = true;
			if (write_full(f->fd, &zero, sizeof(zero)) < 0)
				break;
			/* The dump waits for the client's end of file. */
			f->saw_eof_after_close = read(f->fd, &c, 1) == 0;
			break;
		}
		if (cmd != 7) {
			f->protocol_error = true;
			break;
		}
		if (fake_serve_get(f, nr, vaddr, dst) < 0)
			break;
	}
	close(f->fd);
	return NULL;
}

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
	int failed_calls, failed_err;
	int closed_calls, closed_status;
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
	struct tctx *x = arg;

	(void)ps;
	x->failed_calls++;
	x->failed_err = err;
	event_base_loopexit(x->base, NULL);
}

static void t_closed(struct criupsrv *ps, int status, void *arg)
{
	struct tctx *x = arg;

	(void)ps;
	x->closed_calls++;
	x->closed_status = status;
	event_base_loopexit(x->base, NULL);
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

static void start_pair(struct tctx *x, struct fake *f, bool v42, uint64_t chunk, enum fmode mode)
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	f->v42 = v42;
	f->chunk = chunk;
	f->mode = mode;
	f->listen_fd = -1;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[1];
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	x->base = event_base_new();
	assert_non_null(x->base);
	assert_int_equal(criupsrv_open_fd(x->base, sv[0],
					  v42 ? CRIUPSRV_WIRE_42 : CRIUPSRV_WIRE_317, "fake",
					  &t_ops, x, &x->ps),
			 0);
}

static void finish(struct tctx *x, struct fake *f)
{
	size_t i;

	criupsrv_free(x->ps);
	pthread_join(f->thread, NULL);
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
	struct fake f;
	size_t i;

	start_pair(&x, &f, v42, chunk, F_GOOD);
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
	assert_int_equal(x.failed_calls, 0);
	assert_int_equal(x.closed_calls, 1);
	assert_int_equal(x.closed_status, 0);
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
	struct fake f;
	size_t i, nbg = CRIUPSRV_MAX_INFLIGHT + 8;
	uint64_t fault_vaddr = franges[1].vaddr + 2000 * PAGE;

	(void)state;
	start_pair(&x, &f, false, 819, F_GOOD);
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
	assert_int_equal(x.closed_status, 0);
	for (i = 0; i < x.nreqs; i++) {
		assert_int_equal(x.reqs[i].status, 0);
		check_pages(&x.reqs[i]);
	}
	/* Once sent, a GET cannot be overtaken any more. */
	finish(&x, &f);
	assert_int_equal(f.first_get_vaddr[0], fault_vaddr);
	assert_int_equal(f.gets, (int)x.nreqs);
}

/* Failures: every outstanding request ends with the error, once. */
static void fail_with(enum fmode mode, int want)
{
	struct tctx x = {0};
	struct fake f;
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
	assert_int_equal(x.failed_calls, 1);
	assert_int_equal(x.failed_err, want);
	assert_int_equal(x.closed_calls, 0);
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
	fail_with(F_HANGUP_MID_DATA, -ECONNRESET);
}

static void test_bad_replies(void **state)
{
	(void)state;
	fail_with(F_BAD_PID, -EPROTO);
	fail_with(F_ZERO_PAGES, -EPROTO);
}

static void test_bad_requests(void **state)
{
	struct tctx x = {0};
	struct fake f;
	struct treq t;

	(void)state;
	start_pair(&x, &f, false, 819, F_GOOD);
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
	assert_int_equal(x.closed_calls, 1);
	assert_int_equal(x.closed_status, 0);
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
	struct fake f;
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
	f.listen_fd = lfd;
	assert_int_equal(pthread_create(&f.thread, NULL, fake_main, &f), 0);
	x.base = event_base_new();
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
	assert_int_equal(x.closed_status, 0);
	finish(&x, &f);
	assert_true(f.saw_eof_after_close);

	/* The listener is gone: the connect fails, and says so. */
	close(lfd);
	memset(&x, 0, sizeof(x));
	x.base = event_base_new();
	assert_int_equal(
	    criupsrv_connect(x.base, "127.0.0.1", port, CRIUPSRV_WIRE_317, &t_ops, &x, &x.ps), 0);
	event_base_dispatch(x.base);
	assert_int_equal(x.failed_calls, 1);
	assert_int_equal(x.failed_err, -ECONNREFUSED);
	criupsrv_free(x.ps);
	event_base_free(x.base);
	/* Names are not looked up on the loop. */
	assert_int_equal(
	    criupsrv_connect(NULL, "localhost", port, CRIUPSRV_WIRE_317, &t_ops, &x, &x.ps), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pull_317),	      cmocka_unit_test(test_pull_42),
	    cmocka_unit_test(test_pull_short_replies), cmocka_unit_test(test_prioritize),
	    cmocka_unit_test(test_hangup_mid_reply),   cmocka_unit_test(test_bad_replies),
	    cmocka_unit_test(test_bad_requests),      cmocka_unit_test(test_tcp_connect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
