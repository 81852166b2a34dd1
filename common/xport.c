// SPDX-License-Identifier: GPL-2.0-or-later
#include "xport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "rdma.h"
#include "tcpconn.h"

struct xport {
	enum xport_kind kind;
	struct rdma_ep *ep;
	struct tcpconn *tc;
	const struct xport_ops *ops;
	void *arg;
};

struct xport_listener {
	enum xport_kind kind;
	struct rdma_listener *rl;
	struct tcpconn_listener *tl;
	struct xport_params params;
	xport_accept_cb cb;
	void *arg;
};

int xport_kind_parse(const char *s, enum xport_kind *kind)
{
	if (strcmp(s, "rdma") == 0)
		*kind = XPORT_RDMA;
	else if (strcmp(s, "tcp") == 0)
		*kind = XPORT_TCP;
	else
		return -EINVAL;
	return 0;
}

const char *xport_kind_str(enum xport_kind kind)
{
	return kind == XPORT_RDMA ? "rdma" : "tcp";
}

int xport_transport_parse(const char *s, enum xport_kind *kind, bool *tls)
{
	*tls = strcmp(s, "tls") == 0;
	return xport_kind_parse(*tls ? "tcp" : s, kind);
}

const char *xport_transport_str(enum xport_kind kind, bool tls)
{
	return kind == XPORT_TCP && tls ? "tls" : xport_kind_str(kind);
}

void xport_params_init(struct xport_params *p)
{
	p->max_msg = 64 * 1024;
	p->max_reads = 64;
	p->timeout_ms = 5000;
	p->untrusted = true;
	p->tls = NULL;
	p->tls_allow = NULL;
	p->tls_nallow = 0;
}

/* ---- trampolines: the transports' callbacks to ours ---- */

static void rdma_established(struct rdma_ep *ep, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->established)
		x->ops->established(x, x->arg);
}

static void rdma_recv(struct rdma_ep *ep, const void *buf, size_t len, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->recv)
		x->ops->recv(x, buf, len, x->arg);
}

static void rdma_read_done(struct rdma_ep *ep, uint64_t cookie, int status, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->read_done)
		x->ops->read_done(x, cookie, status, x->arg);
}

static void rdma_closed(struct rdma_ep *ep, int reason, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->closed)
		x->ops->closed(x, reason, x->arg);
}

static const struct rdma_ep_ops xport_rdma_ops = {
    .established = rdma_established,
    .recv = rdma_recv,
    .read_done = rdma_read_done,
    .closed = rdma_closed,
};

static void tcp_established(struct tcpconn *c, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->established)
		x->ops->established(x, x->arg);
}

static void tcp_recv(struct tcpconn *c, const void *buf, size_t len, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->recv)
		x->ops->recv(x, buf, len, x->arg);
}

static void tcp_closed(struct tcpconn *c, int reason, void *arg)
{
	struct xport *x = arg;

	if (x->ops && x->ops->closed)
		x->ops->closed(x, reason, x->arg);
}

static const struct tcpconn_ops xport_tcp_ops = {
    .established = tcp_established,
    .recv = tcp_recv,
    .closed = tcp_closed,
};

static void rdma_params(const struct xport_params *p, struct rdma_ep_params *rp)
{
	rdma_ep_params_init(rp);
	if (p) {
		rp->max_msg = p->max_msg;
		rp->max_reads = p->max_reads;
		rp->timeout_ms = p->timeout_ms;
		rp->preauth_depth = p->untrusted ? XPORT_PREAUTH_DEPTH : 0;
		memcpy(rp->conn_data, p->conn_data, sizeof(rp->conn_data));
		rp->conn_data_len = p->conn_data_len;
	}
}

static void tcp_params(const struct xport_params *p, struct tcpconn_params *tp)
{
	tcpconn_params_init(tp);
	if (p) {
		tp->max_frame = p->max_msg;
		tp->connect_timeout_ms = p->timeout_ms;
		tp->tls = p->tls;
		tp->tls_allow = p->tls_allow;
		tp->tls_nallow = p->tls_nallow;
		if (p->untrusted)
			tp->preauth_max_frame =
			    p->max_msg < XPORT_PREAUTH_MAX_MSG ? p->max_msg : XPORT_PREAUTH_MAX_MSG;
	}
}

/* ---- listening ---- */

static int accept_common(struct xport_listener *l, struct xport *x)
{
	int ret = l->cb(l, x, l->arg);

	if (ret < 0)
		free(x);
	return ret;
}

static int rdma_accept(struct rdma_listener *rl, struct rdma_ep *ep, void *arg)
{
	struct xport_listener *l = arg;
	struct xport *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->kind = XPORT_RDMA;
	x->ep = ep;
	rdma_ep_set_ops(ep, &xport_rdma_ops, x);
	return accept_common(l, x);
}

static int tcp_accept(struct tcpconn_listener *tl, struct tcpconn *c, void *arg)
{
	struct xport_listener *l = arg;
	struct xport *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->kind = XPORT_TCP;
	x->tc = c;
	tcpconn_set_ops(c, &xport_tcp_ops, x);
	return accept_common(l, x);
}

int xport_listen(struct event_base *base, enum xport_kind kind, const char *host, const char *port,
		 const struct xport_params *p, xport_accept_cb cb, void *arg,
		 struct xport_listener **out)
{
	struct xport_listener *l = calloc(1, sizeof(*l));
	struct rdma_ep_params rp;
	struct tcpconn_params tp;
	int ret;

	if (!l)
		return -ENOMEM;
	l->kind = kind;
	l->cb = cb;
	l->arg = arg;
	if (kind == XPORT_RDMA) {
		rdma_params(p, &rp);
		ret = rdma_listener_create(base, host, port, &rp, rdma_accept, l, &l->rl);
	} else {
		tcp_params(p, &tp);
		ret = tcpconn_listen(base, host, port, &tp, tcp_accept, l, &l->tl);
	}
	if (ret < 0) {
		free(l);
		return ret;
	}
	*out = l;
	return 0;
}

int xport_listener_port(const struct xport_listener *l)
{
	return l->kind == XPORT_RDMA ? rdma_listener_port(l->rl) : tcpconn_listener_port(l->tl);
}

struct ibv_context *xport_listener_verbs(const struct xport_listener *l)
{
	return l->kind == XPORT_RDMA ? rdma_listener_verbs(l->rl) : NULL;
}

void xport_listener_set_pd_cb(struct xport_listener *l, rdma_pd_cb cb, void *arg)
{
	if (l->kind == XPORT_RDMA)
		rdma_listener_set_pd_cb(l->rl, cb, arg);
}

void xport_listener_destroy(struct xport_listener *l)
{
	if (!l)
		return;
	if (l->rl)
		rdma_listener_destroy(l->rl);
	if (l->tl)
		tcpconn_listener_destroy(l->tl);
	free(l);
}

/* ---- connections ---- */

int xport_connect(struct event_base *base, enum xport_kind kind, const char *host, const char *port,
		  const struct xport_params *p, const struct xport_ops *ops, void *arg,
		  struct xport **out)
{
	struct xport *x = calloc(1, sizeof(*x));
	struct rdma_ep_params rp;
	struct tcpconn_params tp;
	int ret;

	if (!x)
		return -ENOMEM;
	x->kind = kind;
	x->ops = ops;
	x->arg = arg;
	if (kind == XPORT_RDMA) {
		rdma_params(p, &rp);
		ret = rdma_ep_connect(base, host, port, &rp, &xport_rdma_ops, x, &x->ep);
	} else {
		tcp_params(p, &tp);
		ret = tcpconn_connect(base, host, port, &tp, &xport_tcp_ops, x, &x->tc);
	}
	if (ret < 0) {
		free(x);
		return ret;
	}
	*out = x;
	return 0;
}

void xport_set_ops(struct xport *x, const struct xport_ops *ops, void *arg)
{
	x->ops = ops;
	x->arg = arg;
}

int xport_set_trusted(struct xport *x)
{
	if (x->kind == XPORT_RDMA)
		return rdma_ep_set_trusted(x->ep);
	tcpconn_set_trusted(x->tc);
	return 0;
}

enum xport_kind xport_kind(const struct xport *x)
{
	return x->kind;
}

int xport_send(struct xport *x, const void *buf, size_t len)
{
	return x->kind == XPORT_RDMA ? rdma_ep_send(x->ep, buf, len)
				     : tcpconn_send(x->tc, buf, len);
}

size_t xport_pending(const struct xport *x)
{
	return x->kind == XPORT_TCP ? tcpconn_pending_bytes(x->tc) : rdma_ep_pending(x->ep);
}

const char *xport_name(const struct xport *x)
{
	return x->kind == XPORT_RDMA ? rdma_ep_name(x->ep) : tcpconn_name(x->tc);
}

int xport_reg(struct xport *x, void *addr, size_t len, int access, struct ibv_mr **out)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_reg(x->ep, addr, len, access, out);
}

struct rdma_pd *xport_shared_pd(const struct xport *x)
{
	return x->kind == XPORT_RDMA ? rdma_ep_shared_pd(x->ep) : NULL;
}

struct ibv_pd *xport_pd(struct xport *x)
{
	return x->kind == XPORT_RDMA ? rdma_ep_pd(x->ep) : NULL;
}

int xport_read(struct xport *x, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
	       uint32_t len, uint64_t cookie)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_read(x->ep, local, lkey, raddr, rkey, len, cookie);
}

int xport_lane_create(struct xport *x, uint32_t depth, uint32_t *qpn, uint32_t *psn)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_lane_create(x->ep, depth, qpn, psn);
}

int xport_lane_connect(struct xport *x, uint32_t peer_qpn, uint32_t peer_psn)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_lane_connect(x->ep, peer_qpn, peer_psn);
}

bool xport_lane_up(const struct xport *x)
{
	return x->kind == XPORT_RDMA && rdma_ep_lane_up(x->ep);
}

int xport_drain_create(struct xport *x, unsigned int index, uint32_t *qpn, uint32_t *psn)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_drain_create(x->ep, index, qpn, psn);
}

int xport_drain_connect(struct xport *x, unsigned int index, uint32_t peer_qpn, uint32_t peer_psn)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_drain_connect(x->ep, index, peer_qpn, peer_psn);
}

unsigned int xport_drain_qps(const struct xport *x)
{
	return x->kind == XPORT_RDMA ? rdma_ep_drain_qps(x->ep) : 1;
}

int xport_read_fault(struct xport *x, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		     uint32_t len, uint64_t cookie)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_read_fault(x->ep, local, lkey, raddr, rkey, len, cookie);
}

int xport_poll(struct xport *x)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_poll(x->ep);
}

uint32_t xport_read_slots(const struct xport *x)
{
	return x->kind == XPORT_RDMA ? rdma_ep_read_slots(x->ep) : 0;
}

void xport_close(struct xport *x)
{
	if (!x)
		return;
	/* The transports defer their own release; nothing calls back into x after this. */
	if (x->kind == XPORT_RDMA)
		rdma_ep_close(x->ep);
	else
		tcpconn_close(x->tc);
	free(x);
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
}

void xport_drain_closing(struct event_base *base, unsigned int max_ms)
{
	struct timeval tv = {0, 20000};
	uint64_t end = now_ns() + (uint64_t)max_ms * 1000000;
	struct event *tick = event_new(base, -1, EV_PERSIST, drain_tick, NULL);

	/* The tick keeps the loop turning; anything beyond it is a closing connection. */
	if (!tick || event_add(tick, &tv) < 0) {
		log_warn("cannot wait for closed connections to flush");
		if (tick)
			event_free(tick);
		return;
	}
	while (now_ns() < end && event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED |
								     EVENT_BASE_COUNT_ACTIVE) > 1)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
}

/* ---- RDMA endpoints made by hand, set up over a TCP side channel ---- */

int xport_rc_make(struct event_base *base, const struct xport *side, const struct xport_params *p,
		  struct xport **out, struct rcqp_addr *mine)
{
	struct sockaddr_storage local;
	struct rdma_ep_params rp;
	struct xport *x;
	int ret;

	if (side->kind != XPORT_TCP)
		return -EINVAL;
	ret = tcpconn_local_addr(side->tc, &local);
	if (ret < 0)
		return ret;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->kind = XPORT_RDMA;
	rdma_params(p, &rp);
	ret = rdma_ep_manual(base, (const struct sockaddr *)&local, tcpconn_name(side->tc), &rp,
			     &x->ep, mine);
	if (ret < 0) {
		free(x);
		return ret;
	}
	rdma_ep_set_ops(x->ep, &xport_rdma_ops, x);
	*out = x;
	return 0;
}

int xport_rc_connect(struct xport *x, const struct rcqp_addr *peer)
{
	if (x->kind != XPORT_RDMA)
		return -EOPNOTSUPP;
	return rdma_ep_manual_connect(x->ep, peer);
}
