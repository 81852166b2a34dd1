// SPDX-License-Identifier: GPL-2.0-or-later
#include "ctrlconn.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tickclock.h"
#include "util.h"

struct ctrlconn_tick {
	struct event *ev;
	struct tickclock clk;
	const char *name;
	const struct ctrlconn_tick_ops *ops;
	void *arg;
};

int ctrlconn_send(struct xport *x, struct ctrl_state *st, const char *name, struct ctrl_out *o)
{
	uint8_t *buf = NULL;
	size_t len;
	int ret;

	ret = ctrl_state_encode(st, &o->msg, &buf, &len);
	if (ret == 0)
		ret = xport_send(x, buf, len);
	if (ret < 0)
		log_err("%s: cannot send %s: %s", name, ctrl_msg_type_str(o->msg.body_case),
			strerror(-ret));
	free(buf);
	ctrl_out_release(o);
	return ret;
}

void ctrlconn_send_abort(struct xport *x, struct ctrl_state *st, const char *name, uint32_t code,
			 const char *reason)
{
	struct ctrl_out o;

	if (x && ctrl_state_may_send(st, RDMIG_MSG__BODY_ABORT) == 0 &&
	    ctrl_msg_abort(&o, code, reason) == 0)
		ctrlconn_send(x, st, name, &o);
}

void ctrlconn_keepalive(struct xport *x, struct ctrl_state *st, const char *name, uint64_t *seq,
			uint64_t now)
{
	struct ctrl_out o;

	if (ctrl_state_authenticated(st) &&
	    ctrl_state_may_send(st, RDMIG_MSG__BODY_KEEPALIVE) == 0 &&
	    ctrl_msg_keepalive(&o, ++*seq, now) == 0)
		ctrlconn_send(x, st, name, &o);
}

bool ctrlconn_silent(uint64_t last_rx_ns, uint64_t now, unsigned int dead_after_s)
{
	return now - last_rx_ns > (uint64_t)dead_after_s * 1000000000ull;
}

void ctrlconn_tick_run(struct ctrlconn_tick *t, uint64_t now)
{
	/* Copied first: any callback may free t with its owner. */
	const struct ctrlconn_tick_ops *ops = t->ops;
	void *arg = t->arg;
	struct ctrlconn_peer p;

	if (!ops->check(arg, now, &p))
		return;
	if (ctrlconn_silent(p.last_rx_ns, now, p.dead_after_s)) {
		ops->silent(arg);
		return;
	}
	if (ops->alive && !ops->alive(arg, now))
		return;
	ctrlconn_keepalive(p.x, p.st, p.name, p.ka_seq, now);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctrlconn_tick *t = arg;
	uint64_t now = now_ns(), gap = tickclock_gap(&t->clk, now, t->name);

	/* Before the deadlines are judged: the time we did not run is not the peer's silence. */
	if (gap && t->ops->late)
		t->ops->late(t->arg, now, gap);
	ctrlconn_tick_run(t, now);
}

int ctrlconn_tick_new(struct event_base *base, const char *name,
		      const struct ctrlconn_tick_ops *ops, void *arg, struct ctrlconn_tick **out)
{
	struct timeval tv = {CTRLCONN_TICK_S, 0};
	struct ctrlconn_tick *t;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ops = ops;
	t->arg = arg;
	t->name = name;
	tickclock_init(&t->clk, CTRLCONN_TICK_S * 1000000000ull, now_ns());
	t->ev = event_new(base, -1, EV_PERSIST, tick_cb, t);
	if (!t->ev || event_add(t->ev, &tv) < 0) {
		ctrlconn_tick_free(t);
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

void ctrlconn_tick_free(struct ctrlconn_tick *t)
{
	if (!t)
		return;
	if (t->ev)
		event_free(t->ev);
	free(t);
}

void ctrlconn_ignore(void *arg, const RdmigMsg *m)
{
}

int ctrlconn_recv(struct ctrl_state *st, const void *buf, size_t len,
		  const struct ctrlconn_handlers *h, void *arg)
{
	RdmigMsg *m = NULL;
	ctrlconn_msg_fn fn = NULL;
	uint32_t code;
	const char *why;

	if (ctrl_state_recv(st, buf, len, &m) < 0) {
		why = ctrl_state_error(st, &code);
		h->refused(arg, code, why);
		return -EPROTO;
	}
	if ((unsigned int)m->body_case < CTRLCONN_MSG_TYPES)
		fn = h->on[m->body_case];
	if (fn)
		fn(arg, m);
	else
		h->refused(arg, CTRL_ABORT_PROTOCOL, "unexpected message");
	ctrl_free(m);
	return fn ? 0 : -EPROTO;
}
