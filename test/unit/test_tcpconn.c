// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Real loopback connections in one event loop.  Each test drives a small
 * scenario through callbacks, stops the loop when it is done (or when a
 * watchdog fires), then lets the loop run dry so that every deferred
 * release happens before the base is freed: ASan checks the rest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#include "tcpconn.h"

#define MAX_FRAMES 64

struct ctx {
	struct event_base *base;
	struct event *watchdog;
	struct tcpconn_listener *l;
	struct tcpconn *srv, *cli;
	struct tcpconn_params params;
	bool done, timed_out;
	char port[16];

	/* Frames the client sends on established, checked by the server. */
	size_t sizes[MAX_FRAMES];
	size_t nr_sizes;
	size_t srv_got;
	bool srv_bad_frame;

	int srv_established, cli_established;
	int srv_closed, cli_closed; /* reason, 1 while not called */
	int writable;
	bool blocked_after_send;
	size_t pending_after_send;
	int send_ret[MAX_FRAMES];

	/* Scenario switches. */
	bool srv_close_in_recv;
	bool cli_close_in_established;
	bool srv_reply_when_all;
	bool srv_trust_after_first; /* tcpconn_set_trusted() in the first recv() */
};

static void finish(struct ctx *x)
{
	x->done = true;
	event_base_loopbreak(x->base);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctx *x = arg;

	x->timed_out = true;
	event_base_loopbreak(x->base);
}

static void ctx_init(struct ctx *x)
{
	struct timeval tv = {10, 0};

	memset(x, 0, sizeof(*x));
	x->base = event_base_new();
	assert_non_null(x->base);
	x->watchdog = evtimer_new(x->base, watchdog_cb, x);
	assert_non_null(x->watchdog);
	assert_int_equal(evtimer_add(x->watchdog, &tv), 0);
	tcpconn_params_init(&x->params);
	x->params.linger_ms = 200;
	x->srv_closed = x->cli_closed = 1;
}

/* Runs the scenario, then drains every deferred release and frees the base. */
static void ctx_run(struct ctx *x)
{
	while (!x->done && !x->timed_out)
		event_base_loop(x->base, EVLOOP_ONCE);
	assert_false(x->timed_out);
	event_free(x->watchdog);
	tcpconn_listener_destroy(x->l);
	x->l = NULL;
	event_base_dispatch(x->base);
	event_base_free(x->base);
}

static void fill(uint8_t *p, size_t len, size_t idx)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + idx);
}

static bool check(const uint8_t *p, size_t len, size_t idx)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 7 + idx))
			return false;
	return true;
}

/* ---- server side ------------------------------------------------------ */

static void srv_established(struct tcpconn *c, void *arg)
{
	struct ctx *x = arg;

	x->srv_established++;
}

static void srv_recv(struct tcpconn *c, const void *buf, size_t len, void *arg)
{
	struct ctx *x = arg;

	if (x->srv_got >= x->nr_sizes || len != x->sizes[x->srv_got] ||
	    !check(buf, len, x->srv_got))
		x->srv_bad_frame = true;
	x->srv_got++;
	if (x->srv_trust_after_first && x->srv_got == 1)
		tcpconn_set_trusted(c);
	if (x->srv_close_in_recv) {
		tcpconn_close(c);
		x->srv = NULL;
		return;
	}
	if (x->srv_reply_when_all && x->srv_got == x->nr_sizes)
		assert_int_equal(tcpconn_send(c, "bye", 3), 0);
}

static void srv_closed(struct tcpconn *c, int reason, void *arg)
{
	struct ctx *x = arg;

	x->srv_closed = reason;
	tcpconn_close(c);
	x->srv = NULL;
	if (!x->cli)
		finish(x);
}

static const struct tcpconn_ops srv_ops = {
    .established = srv_established,
    .recv = srv_recv,
    .closed = srv_closed,
};

static int srv_accept(struct tcpconn_listener *l, struct tcpconn *c, void *arg)
{
	struct ctx *x = arg;

	x->srv = c;
	tcpconn_set_ops(c, &srv_ops, x);
	return 0;
}

static void listen_any(struct ctx *x)
{
	assert_int_equal(
	    tcpconn_listen(x->base, "127.0.0.1", "0", &x->params, srv_accept, x, &x->l), 0);
	snprintf(x->port, sizeof(x->port), "%d", tcpconn_listener_port(x->l));
	assert_true(atoi(x->port) > 0);
}

/* ---- client side ------------------------------------------------------ */

static void cli_established(struct tcpconn *c, void *arg)
{
	struct ctx *x = arg;
	uint8_t *buf;

	x->cli_established++;
	if (x->cli_close_in_established) {
		tcpconn_close(c);
		x->cli = NULL;
		return;
	}
	for (size_t i = 0; i < x->nr_sizes; i++) {
		buf = malloc(x->sizes[i] ? x->sizes[i] : 1);
		assert_non_null(buf);
		fill(buf, x->sizes[i], i);
		x->send_ret[i] = tcpconn_send(c, buf, x->sizes[i]);
		free(buf);
	}
	x->blocked_after_send = tcpconn_send_blocked(c);
	x->pending_after_send = tcpconn_pending_bytes(c);
}

static void cli_recv(struct tcpconn *c, const void *buf, size_t len, void *arg)
{
	struct ctx *x = arg;

	/* The server's "bye": closing here, inside recv, is the point. */
	if (len == 3 && memcmp(buf, "bye", 3) == 0) {
		tcpconn_close(c);
		x->cli = NULL;
	}
}

static void cli_closed(struct tcpconn *c, int reason, void *arg)
{
	struct ctx *x = arg;

	x->cli_closed = reason;
	tcpconn_close(c);
	x->cli = NULL;
	if (!x->srv)
		finish(x);
}

static void cli_writable(struct tcpconn *c, void *arg)
{
	struct ctx *x = arg;

	x->writable++;
	assert_false(tcpconn_send_blocked(c));
}

static const struct tcpconn_ops cli_ops = {
    .established = cli_established,
    .recv = cli_recv,
    .closed = cli_closed,
    .writable = cli_writable,
};

static void connect_cli(struct ctx *x)
{
	assert_int_equal(
	    tcpconn_connect(x->base, "127.0.0.1", x->port, &x->params, &cli_ops, x, &x->cli), 0);
	/* Not yet established: nothing may be sent. */
	assert_int_equal(tcpconn_send(x->cli, "x", 1), -ENOTCONN);
}

/* ---- tests ------------------------------------------------------------ */

static void test_frames_whole_and_in_order(void **state)
{
	static const size_t sizes[] = {
	    1, 2, 3, 100, 4096, 65535, 65536, 65537, 1u << 20, (2u << 20) - 1, 2u << 20, 5, 1};
	struct ctx x;

	ctx_init(&x);
	x.params.max_frame = 2u << 20;
	x.params.send_high_water = 1u << 20;
	memcpy(x.sizes, sizes, sizeof(sizes));
	x.nr_sizes = sizeof(sizes) / sizeof(sizes[0]);
	x.srv_reply_when_all = true;
	listen_any(&x);
	connect_cli(&x);
	ctx_run(&x);

	assert_int_equal(x.cli_established, 1);
	assert_int_equal(x.srv_established, 1);
	for (size_t i = 0; i < x.nr_sizes; i++)
		assert_int_equal(x.send_ret[i], 0);
	assert_int_equal(x.srv_got, x.nr_sizes);
	assert_false(x.srv_bad_frame);
	/* Everything was queued before the loop ran: backpressure was visible... */
	assert_true(x.pending_after_send > (4u << 20));
	assert_true(x.blocked_after_send);
	/* ...and cleared by writable() once the kernel took the data. */
	assert_int_equal(x.writable, 1);
	/* The client closed from inside recv(); the server saw the close. */
	assert_int_equal(x.srv_closed, -ECONNRESET);
	assert_int_equal(x.cli_closed, 1);
}

static void test_many_small_frames_with_budget(void **state)
{
	struct ctx x;

	ctx_init(&x);
	x.params.frames_per_wakeup = 2;
	x.nr_sizes = MAX_FRAMES;
	for (size_t i = 0; i < MAX_FRAMES; i++)
		x.sizes[i] = 1 + i;
	x.srv_reply_when_all = true;
	listen_any(&x);
	connect_cli(&x);
	ctx_run(&x);
	assert_int_equal(x.srv_got, MAX_FRAMES);
	assert_false(x.srv_bad_frame);
	assert_int_equal(x.srv_closed, -ECONNRESET);
}

static void test_send_limits(void **state)
{
	struct ctx x;

	ctx_init(&x);
	x.params.send_high_water = 64u << 10;
	x.params.send_max = 256u << 10;
	x.nr_sizes = 5;
	for (size_t i = 0; i < x.nr_sizes; i++)
		x.sizes[i] = 64u << 10;
	x.srv_reply_when_all = false;
	listen_any(&x);
	connect_cli(&x);
	/* The server closes once it has the three frames that fit. */
	while (!x.timed_out && x.srv_got < 3)
		event_base_loop(x.base, EVLOOP_ONCE);
	assert_int_equal(tcpconn_send(x.cli, "", 0), -EMSGSIZE);
	assert_int_equal(tcpconn_send(x.cli, x.sizes, x.params.max_frame + 1), -EMSGSIZE);
	tcpconn_close(x.srv);
	x.srv = NULL;
	ctx_run(&x);
	assert_int_equal(x.send_ret[0], 0);
	assert_int_equal(x.send_ret[1], 0);
	assert_int_equal(x.send_ret[2], 0);
	assert_int_equal(x.send_ret[3], -ENOBUFS);
	assert_int_equal(x.send_ret[4], -ENOBUFS);
	assert_true(x.blocked_after_send);
	assert_int_equal(x.srv_got, 3);
	assert_false(x.srv_bad_frame);
	assert_int_equal(x.cli_closed, -ECONNRESET);
}

/* A raw socket connected to the listener, for sending hostile bytes. */
static int raw_connect(const char *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void hostile_header(const uint8_t hdr[4], uint32_t max_frame, int expect)
{
	struct ctx x;
	int fd;

	ctx_init(&x);
	x.params.max_frame = max_frame;
	listen_any(&x);
	fd = raw_connect(x.port);
	/* Only the header: the refusal cannot depend on the payload arriving. */
	assert_int_equal(write(fd, hdr, 4), 4);
	ctx_run(&x);
	assert_int_equal(x.srv_established, 1);
	assert_int_equal(x.srv_closed, expect);
	assert_int_equal(x.srv_got, 0);
	close(fd);
}

/* Before tcpconn_set_trusted() frames are limited to preauth_max_frame. */
static void test_preauth_frame_limit(void **state)
{
	struct ctx x;

	ctx_init(&x);
	x.params.max_frame = 1u << 20;
	x.params.preauth_max_frame = 1024;
	x.sizes[0] = 100;
	x.sizes[1] = 2000;
	x.nr_sizes = 2;
	listen_any(&x);
	connect_cli(&x);
	ctx_run(&x);
	assert_int_equal(x.srv_got, 1);
	assert_false(x.srv_bad_frame);
	assert_int_equal(x.srv_closed, -EMSGSIZE);
}

/* Trusted from inside recv(): the very next frame may be max_frame. */
static void test_trusted_lifts_limit(void **state)
{
	struct ctx x;

	ctx_init(&x);
	x.params.max_frame = 1u << 20;
	x.params.preauth_max_frame = 1024;
	x.sizes[0] = 100;
	x.sizes[1] = 2000;
	x.sizes[2] = 1u << 20;
	x.nr_sizes = 3;
	x.srv_trust_after_first = true;
	x.srv_reply_when_all = true;
	listen_any(&x);
	connect_cli(&x);
	ctx_run(&x);
	assert_int_equal(x.srv_got, 3);
	assert_false(x.srv_bad_frame);
	assert_int_equal(x.srv_closed, -ECONNRESET);
}

static void test_hostile_frame_length(void **state)
{
	static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
	static const uint8_t one_over[4] = {0x00, 0x01, 0x00, 0x01}; /* 64 KiB + 1 */
	static const uint8_t zero[4] = {0, 0, 0, 0};

	hostile_header(huge, 64u << 10, -EMSGSIZE);
	hostile_header(one_over, 64u << 10, -EMSGSIZE);
	hostile_header(zero, 64u << 10, -EBADMSG);
}

static void test_peer_close_mid_frame(void **state)
{
	static const uint8_t partial[6] = {0, 0, 0, 10, 'a', 'b'};
	struct ctx x;
	int fd;

	ctx_init(&x);
	listen_any(&x);
	fd = raw_connect(x.port);
	assert_int_equal(write(fd, partial, sizeof(partial)), (ssize_t)sizeof(partial));
	close(fd);
	ctx_run(&x);
	assert_int_equal(x.srv_closed, -ECONNRESET);
	assert_int_equal(x.srv_got, 0);
}

static void test_close_inside_callbacks(void **state)
{
	struct ctx x;

	/* The server closes inside recv() with more frames already queued behind. */
	ctx_init(&x);
	x.nr_sizes = 8;
	for (size_t i = 0; i < x.nr_sizes; i++)
		x.sizes[i] = 1000;
	x.srv_close_in_recv = true;
	listen_any(&x);
	connect_cli(&x);
	ctx_run(&x);
	assert_int_equal(x.srv_got, 1);
	assert_int_equal(x.srv_closed, 1); /* never reported after close */
	assert_int_equal(x.cli_closed, -ECONNRESET);

	/* The client closes inside established(). */
	ctx_init(&x);
	x.cli_close_in_established = true;
	listen_any(&x);
	connect_cli(&x);
	ctx_run(&x);
	assert_int_equal(x.cli_established, 1);
	assert_int_equal(x.cli_closed, 1);
	assert_int_equal(x.srv_closed, -ECONNRESET);
}

static void test_connect_refused(void **state)
{
	struct ctx x;

	ctx_init(&x);
	listen_any(&x);
	tcpconn_listener_destroy(x.l);
	x.l = NULL;
	x.srv = NULL;
	connect_cli(&x);
	ctx_run(&x);
	assert_int_equal(x.cli_established, 0);
	assert_int_equal(x.cli_closed, -ECONNREFUSED);
}

static void test_connect_timeout(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	int lfd, fillers[4];
	struct ctx x;

	/* A listener that never accepts, its queue filled: further SYNs are dropped. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	ctx_init(&x);
	snprintf(x.port, sizeof(x.port), "%u", ntohs(sin.sin_port));
	for (int i = 0; i < 4; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		assert_true(fillers[i] >= 0);
		connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	x.params.connect_timeout_ms = 300;
	x.srv = NULL;
	connect_cli(&x);
	ctx_run(&x);
	for (int i = 0; i < 4; i++)
		close(fillers[i]);
	close(lfd);
	assert_int_equal(x.cli_established, 0);
	assert_int_equal(x.cli_closed, -ETIMEDOUT);
}

static void test_bad_params(void **state)
{
	struct event_base *base = event_base_new();
	struct tcpconn_listener *l = NULL;
	struct tcpconn_params p;

	tcpconn_params_init(&p);
	p.max_frame = TCPCONN_FRAME_LIMIT + 1;
	assert_int_equal(tcpconn_listen(base, "127.0.0.1", "0", &p, srv_accept, NULL, &l), -EINVAL);
	tcpconn_params_init(&p);
	p.send_max = p.send_high_water - 1;
	assert_int_equal(tcpconn_listen(base, "127.0.0.1", "0", &p, srv_accept, NULL, &l), -EINVAL);
	assert_null(l);
	assert_true(tcpconn_listen(base, "256.1.1.1", "0", NULL, srv_accept, NULL, &l) < 0);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frames_whole_and_in_order),
	    cmocka_unit_test(test_many_small_frames_with_budget),
	    cmocka_unit_test(test_send_limits),
	    cmocka_unit_test(test_preauth_frame_limit),
	    cmocka_unit_test(test_trusted_lifts_limit),
	    cmocka_unit_test(test_hostile_frame_length),
	    cmocka_unit_test(test_peer_close_mid_frame),
	    cmocka_unit_test(test_close_inside_callbacks),
	    cmocka_unit_test(test_connect_refused),
	    cmocka_unit_test(test_connect_timeout),
	    cmocka_unit_test(test_bad_params),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
