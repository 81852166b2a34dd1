// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * common/ctrlconn.c between two authenticated control states (ctrlpair.h)
 * over a real TCP connection on 127.0.0.1, in one event loop: a keepalive
 * is sent and counted, silence is told from --dead-after, a message
 * without a handler and a forged one are refused, and the Abort the
 * refusing side sends arrives with its code and reason.  The tick, run
 * at chosen times (no timer waited for): the owner's check first, then
 * silence past --dead-after or the owner's alive and a keepalive.
 */
#include <errno.h>
#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctrlconn.h"
#include "ctrlpair.h"
#include "util.h"
#include "xport.h"

/* One side: its transport and what its handlers saw. */
struct end {
	struct xport *x;
	struct ctrl_state *st;
	const char *name;
	bool up;
	uint64_t last_rx_ns;
	uint64_t ka_seq;
	int keepalives;
	int aborts;
	uint32_t abort_code;
	char abort_reason[CTRL_TEXT_MAX + 1];
	int refusals;
	uint32_t refused_code;
	char refused_why[CTRL_TEXT_MAX + 1];
};

struct ctx {
	struct event_base *base;
	struct xport_listener *l;
	struct pair p;
	struct end src, dst;
};

static void on_keepalive(void *arg, const RdmigMsg *m)
{
	struct end *e = arg;

	e->keepalives++;
}

static void on_abort(void *arg, const RdmigMsg *m)
{
	struct end *e = arg;

	e->aborts++;
	e->abort_code = (uint32_t)m->abort->code;
	snprintf(e->abort_reason, sizeof(e->abort_reason), "%s",
		 m->abort->reason ? m->abort->reason : "");
}

static void on_refused(void *arg, uint32_t code, const char *why)
{
	struct end *e = arg;

	e->refusals++;
	e->refused_code = code;
	snprintf(e->refused_why, sizeof(e->refused_why), "%s", why);
}

/* Neither table has an ImageFile handler: one is unexpected here. */
static const struct ctrlconn_handlers handlers = {
    .on = {[RDMIG_MSG__BODY_KEEPALIVE] = on_keepalive, [RDMIG_MSG__BODY_ABORT] = on_abort},
    .refused = on_refused,
};

static void src_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct ctx *c = arg;

	c->src.last_rx_ns = now_ns();
	ctrlconn_recv(c->src.st, buf, len, &handlers, &c->src);
}

static void dst_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct ctx *c = arg;

	c->dst.last_rx_ns = now_ns();
	ctrlconn_recv(c->dst.st, buf, len, &handlers, &c->dst);
}

static void dst_established(struct xport *x, void *arg)
{
	struct ctx *c = arg;

	c->dst.up = true;
}

static void closed(struct xport *x, int reason, void *arg)
{
}

static const struct xport_ops src_ops = {.recv = src_recv, .closed = closed};
static const struct xport_ops dst_ops = {
    .established = dst_established,
    .recv = dst_recv,
    .closed = closed,
};

static int src_accept(struct xport_listener *l, struct xport *x, void *arg)
{
	struct ctx *c = arg;

	c->src.x = x;
	c->src.up = true;
	xport_set_ops(x, &src_ops, c);
	return 0;
}

/* Runs the loop until *count reaches want; a lost message fails the test, not a timer. */
static void run_until(struct ctx *c, const int *count, int want)
{
	for (int i = 0; i < 100000 && *count < want; i++)
		event_base_loop(c->base, EVLOOP_ONCE);
	assert_int_equal(*count, want);
}

static void run_until_up(struct ctx *c)
{
	for (int i = 0; i < 100000 && !(c->src.up && c->dst.up); i++)
		event_base_loop(c->base, EVLOOP_ONCE);
	assert_true(c->src.up && c->dst.up);
}

/* Two authenticated ends connected over TCP on 127.0.0.1. */
static void ctx_open(struct ctx *c)
{
	struct xport_params xp;
	char port[16];

	pair_init(&c->p, CTRL_FEAT_RDMA_READ, CTRL_FEAT_RDMA_READ);
	handshake(&c->p);
	c->src = (struct end){.st = &c->p.src, .name = "test source"};
	c->dst = (struct end){.st = &c->p.dst, .name = "test destination"};
	c->base = event_base_new();
	assert_non_null(c->base);
	xport_params_init(&xp);
	assert_int_equal(
	    xport_listen(c->base, XPORT_TCP, "127.0.0.1", "0", &xp, src_accept, c, &c->l), 0);
	snprintf(port, sizeof(port), "%d", xport_listener_port(c->l));
	assert_int_equal(
	    xport_connect(c->base, XPORT_TCP, "127.0.0.1", port, &xp, &dst_ops, c, &c->dst.x), 0);
	run_until_up(c);
}

static void ctx_close(struct ctx *c)
{
	xport_close(c->dst.x);
	xport_close(c->src.x);
	xport_listener_destroy(c->l);
	xport_drain_closing(c->base, 1000);
	event_base_free(c->base);
	pair_fini(&c->p);
}

static void test_ctrlconn(void **state)
{
	struct ctx c = {0};
	struct ctrl_out o;
	uint8_t forged[64], data[3] = {1, 2, 3};
	struct ctrl_file_chunk inv = {
	    .name = "inventory.img", .total_size = 3, .data = data, .data_len = 3, .last = true};
	uint64_t t;

	ctx_open(&c);

	/* Keepalives both ways, numbered from 1, received as such. */
	ctrlconn_keepalive(c.dst.x, c.dst.st, c.dst.name, &c.dst.ka_seq, now_ns());
	ctrlconn_keepalive(c.src.x, c.src.st, c.src.name, &c.src.ka_seq, now_ns());
	assert_int_equal(c.dst.ka_seq, 1);
	assert_int_equal(c.src.ka_seq, 1);
	run_until(&c, &c.src.keepalives, 1);
	run_until(&c, &c.dst.keepalives, 1);
	assert_int_equal(c.src.refusals + c.dst.refusals, 0);

	/* Silent past --dead-after, and not a nanosecond before. */
	t = c.src.last_rx_ns;
	assert_false(ctrlconn_silent(t, t + 10 * 1000000000ull, 10));
	assert_true(ctrlconn_silent(t, t + 10 * 1000000000ull + 1, 10));

	/* Legal from the source now (the images phase), but without a handler there. */
	assert_int_equal(ctrl_msg_image_file(&o, &inv), 0);
	assert_int_equal(ctrlconn_send(c.src.x, c.src.st, c.src.name, &o), 0);
	run_until(&c, &c.dst.refusals, 1);
	assert_int_equal(c.dst.refused_code, CTRL_ABORT_PROTOCOL);
	assert_string_equal(c.dst.refused_why, "unexpected message");

	/* Bytes with no valid MAC: refused by the state, with the code to abort with. */
	memset(forged, 0x5a, sizeof(forged));
	assert_int_equal(xport_send(c.src.x, forged, sizeof(forged)), 0);
	run_until(&c, &c.dst.refusals, 2);
	assert_int_not_equal(c.dst.refused_code, 0);
	assert_int_equal(c.src.refusals, 0);

	/* The refusing side aborts as the agents do: the peer gets that code and reason. */
	ctrlconn_send_abort(c.dst.x, c.dst.st, c.dst.name, c.dst.refused_code, c.dst.refused_why);
	run_until(&c, &c.src.aborts, 1);
	assert_int_equal(c.src.abort_code, c.dst.refused_code);
	assert_string_equal(c.src.abort_reason, c.dst.refused_why);
	/* No transport: nothing sent, nothing broken. */
	ctrlconn_send_abort(NULL, c.dst.st, c.dst.name, CTRL_ABORT_CANCELLED, "no connection");
	ctx_close(&c);
}

/* A tick's owner: the destination end (none: never checked), and what the tick asked of it. */
struct owner {
	struct end *e;
	bool check_ok; /* what check() answers */
	bool alive_ok; /* what alive() answers */
	int checks, silents, alives, lates;
	uint64_t late_gap; /* the last late()'s */
};

static bool own_check(void *arg, uint64_t now, struct ctrlconn_peer *p)
{
	struct owner *o = arg;

	o->checks++;
	if (!o->e)
		return false;
	*p = (struct ctrlconn_peer){.x = o->e->x,
				    .st = o->e->st,
				    .name = o->e->name,
				    .ka_seq = &o->e->ka_seq,
				    .last_rx_ns = o->e->last_rx_ns,
				    .dead_after_s = 10};
	return o->check_ok;
}

static void own_silent(void *arg)
{
	struct owner *o = arg;

	o->silents++;
}

static bool own_alive(void *arg, uint64_t now)
{
	struct owner *o = arg;

	o->alives++;
	return o->alive_ok;
}

static void own_late(void *arg, uint64_t now, uint64_t gap)
{
	struct owner *o = arg;

	o->lates++;
	o->late_gap = gap;
}

static const struct ctrlconn_tick_ops own_ops = {
    .check = own_check,
    .silent = own_silent,
    .alive = own_alive,
    .late = own_late,
};

static void test_tick(void **state)
{
	struct ctx c = {0};
	struct owner o = {.e = &c.dst};
	struct ctrlconn_tick *t;
	uint64_t t0, dead = 10 * 1000000000ull;

	ctx_open(&c);
	assert_int_equal(ctrlconn_tick_new(c.base, "owner", &own_ops, &o, &t), 0);
	t0 = c.dst.last_rx_ns = now_ns();

	/* The owner says not now: nothing else is asked, nothing sent. */
	ctrlconn_tick_run(t, t0 + 2 * dead);
	assert_int_equal(o.checks, 1);
	assert_int_equal(o.silents + o.alives, 0);
	assert_int_equal(c.dst.ka_seq, 0);

	/* At --dead-after exactly: not silent; alive, then a keepalive the peer gets. */
	o.check_ok = o.alive_ok = true;
	ctrlconn_tick_run(t, t0 + dead);
	assert_int_equal(o.silents, 0);
	assert_int_equal(o.alives, 1);
	assert_int_equal(c.dst.ka_seq, 1);
	run_until(&c, &c.src.keepalives, 1);

	/* alive says no: no keepalive this time. */
	o.alive_ok = false;
	ctrlconn_tick_run(t, t0 + dead);
	assert_int_equal(o.alives, 2);
	assert_int_equal(c.dst.ka_seq, 1);

	/* A nanosecond later: silent, and neither alive nor a keepalive. */
	o.alive_ok = true;
	ctrlconn_tick_run(t, t0 + dead + 1);
	assert_int_equal(o.silents, 1);
	assert_int_equal(o.alives, 2);
	assert_int_equal(c.dst.ka_seq, 1);
	assert_int_equal(c.src.refusals + c.dst.refusals, 0);

	ctrlconn_tick_free(t);
	ctrlconn_tick_free(NULL);
	ctx_close(&c);
}

/* Blocks the loop thread, as a stopped or starved process would be. */
static void starve_cb(evutil_socket_t fd, short what, void *arg)
{
	usleep(3 * 1000 * 1000);
}

static void stop_loop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/*
 * The timer's tick runs 3 s late (its loop blocked): late() hears of the
 * gap, beyond the 1 s period, before check(); a tick on time does not.
 */
static void test_tick_late(void **state)
{
	struct event_base *base = event_base_new();
	struct owner o = {0};
	struct ctrlconn_tick *t;
	struct timeval starve = {0, 500000}, end = {5, 0};

	assert_non_null(base);
	assert_int_equal(ctrlconn_tick_new(base, "owner", &own_ops, &o, &t), 0);
	event_base_once(base, -1, EV_TIMEOUT, starve_cb, NULL, &starve);
	event_base_once(base, -1, EV_TIMEOUT, stop_loop_cb, base, &end);
	event_base_dispatch(base);
	/* Ticks once late by about 2.5 s (3.5 s after it was due), then on time. */
	assert_int_equal(o.lates, 1);
	assert_in_range(o.late_gap, 1500ull * 1000 * 1000, 3500ull * 1000 * 1000);
	assert_in_range(o.checks, 1, 2);
	ctrlconn_tick_free(t);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ctrlconn),
	    cmocka_unit_test(test_tick),
	    cmocka_unit_test(test_tick_late),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
