// SPDX-License-Identifier: GPL-2.0-or-later
#include "rdma.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <rdma/rdma_cma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "log.h"
#include "qpick.h"
#include "rcqp.h"
#include "util.h"

/* wr_id layout: the kind in the top byte, a slot index below it. */
#define WR_KIND_SHIFT 56
#define WR_KIND_RECV  1ull
#define WR_KIND_SEND  2ull
#define WR_KIND_READ  3ull
#define WR_KIND_LANE  4ull /* a READ on the fault lane */
#define WR_SLOT_MASK  ((1ull << WR_KIND_SHIFT) - 1)

/* Completions handled per wakeup, so one busy endpoint cannot starve the loop. */
#define CQ_POLL_BUDGET 64
#define CQ_ACK_BATCH   32
/*
 * And the time one wakeup may take: a drain READ's completion installs
 * 256 KiB (UFFDIO_COPY), 10-20 ms under TCG, so 64 of them held the loop
 * for 1.3 s while the workload's new faults waited unread in its uffd.
 */
#define CQ_POLL_SLICE_NS (2ull * 1000 * 1000)

struct pending_send {
	STAILQ_ENTRY(pending_send) link;
	size_t len;
	uint8_t data[];
};

/*
 * The message buffers of one direction: slots [0, n0) in part 0, made with
 * the endpoint; [n0, n) in part 1, made once the peer is trusted.
 */
struct ep_bufs {
	uint8_t *buf[2];
	struct ibv_mr *mr[2];
	uint32_t n0;
	uint32_t n; /* slots usable now */
};

struct rdma_ep {
	struct event_base *base;
	struct rdma_listener *listener;	  /* set for accepted endpoints */
	struct rdma_event_channel *cm_ch; /* own channel, connecting side only */
	struct event *cm_ev;
	struct rdma_cm_id *id;
	struct ibv_qp *qp; /* id->qp, or the one made by hand (manual) */
	/*
	 * Made by hand (rdma_ep_manual()): id is only bound to the local
	 * address, for its device and port; the QP's path came from the peer.
	 */
	bool manual;
	struct rcqp_local local;
	struct rcqp_path path;
	struct event *est_ev; /* reports established once the QP is in RTS */
	struct ibv_pd *pd;
	struct rdma_pd *shared_pd; /* a reference, when pd is shared (rdma_pd_cb) */
	struct ibv_comp_channel *comp_ch;
	struct event *comp_ev;
	struct event *resume_ev; /* continues a poll that used up its budget */
	struct ibv_cq *cq;
	unsigned int cq_unacked;
	struct rdma_ep_params params;
	const struct rdma_ep_ops *ops;
	void *arg;

	struct ep_bufs recv;
	struct ep_bufs send;
	bool trusted;	     /* rdma_ep_set_trusted() called */
	uint32_t *send_free; /* stack of free send slots */
	uint32_t nr_send_free;
	STAILQ_HEAD(, pending_send) send_queue;
	size_t queued_bytes; /* in send_queue, not yet posted */

	uint64_t *read_cookie; /* per read slot */
	uint32_t *read_free;   /* stack of free read slots */
	uint32_t nr_read_free;
	/*
	 * The drain's extra QPs (rdma_ep_drain_create()): rdma_ep_read()'s
	 * READs spread over the first QP (index 0) and these, in the same PD
	 * and on the first QP's CQ, so the read slots above stay one pool.
	 */
	struct ibv_qp *dqp[RDMA_DRAIN_QPS_MAX]; /* [0]: unused, the first QP is qp */
	uint32_t dpsn[RDMA_DRAIN_QPS_MAX];
	bool dup[RDMA_DRAIN_QPS_MAX];	   /* connected; [0] unused: qpick_least() counts it up */
	uint32_t dout[RDMA_DRAIN_QPS_MAX]; /* READs outstanding on each */
	unsigned int dnext;		   /* qpick_least()'s round-robin */
	unsigned int nr_dup;		   /* extra QPs connected */
	uint8_t *read_qp;		   /* per read slot: the QP it went on */

	/*
	 * The fault lane: a second RC QP in the same PD with its own CQ (on
	 * the same completion channel), connected by hand to the peer's lane
	 * QP along the rdma_cm connection's path.  READs posted there never
	 * wait behind the bulk READs of the first QP.
	 */
	struct ibv_cq *lane_cq;
	struct ibv_qp *lane_qp;
	unsigned int lane_unacked;
	uint32_t lane_psn;
	uint32_t lane_depth;
	bool lane_up;
	uint64_t *lane_cookie;
	uint32_t *lane_free;
	uint32_t nr_lane_free;
	/*
	 * The lane CQ notifies the channel only when armed, and it is armed
	 * lazily: a READ posted on an unarmed lane activates lane_arm_ev,
	 * which runs after the caller's callback and arms only if the READ is
	 * still in flight.  A caller that polls for its fault's completion
	 * (rdmig-dest --fault-poll) thus never wakes the loop again for it:
	 * no channel read, no re-arm, no loop pass per fault.
	 */
	bool lane_armed;
	struct event *lane_arm_ev;

	bool connected;
	bool closing;
	bool lingering; /* closed by the owner; queued messages still leaving */
	struct event *linger_ev;
	bool closed_reported;
	char name[160];
};

struct rdma_listener {
	struct event_base *base;
	struct rdma_event_channel *cm_ch;
	struct event *cm_ev;
	struct rdma_cm_id *id;
	struct rdma_ep_params params;
	rdma_accept_cb accept_cb;
	void *arg;
	rdma_pd_cb pd_cb;
	void *pd_arg;
	char name[96];
};

struct rdma_pd {
	struct ibv_pd *pd;
	unsigned int refs;
};

int rdma_pd_open(struct ibv_context *verbs, struct rdma_pd **out)
{
	struct rdma_pd *pd;
	int ret;

	if (!verbs)
		return -ENODEV;
	pd = calloc(1, sizeof(*pd));
	if (!pd)
		return -ENOMEM;
	pd->pd = ibv_alloc_pd(verbs);
	if (!pd->pd) {
		ret = -(errno ? errno : ENOMEM);
		log_err("ibv_alloc_pd on %s: %s", ibv_get_device_name(verbs->device),
			strerror(-ret));
		free(pd);
		return ret;
	}
	pd->refs = 1;
	*out = pd;
	return 0;
}

struct rdma_pd *rdma_pd_ref(struct rdma_pd *pd)
{
	pd->refs++;
	return pd;
}

void rdma_pd_unref(struct rdma_pd *pd)
{
	if (!pd || --pd->refs)
		return;
	if (ibv_dealloc_pd(pd->pd))
		log_warn("ibv_dealloc_pd (shared) on %s failed: memory regions still registered?",
			 ibv_get_device_name(pd->pd->context->device));
	free(pd);
}

struct ibv_pd *rdma_pd_ibv(const struct rdma_pd *pd)
{
	return pd->pd;
}

struct ibv_context *rdma_listener_verbs(const struct rdma_listener *l)
{
	struct ibv_context **devs, *one = NULL;
	int n = 0;

	if (l->id->verbs)
		return l->id->verbs;
	/* rdma_cm's own contexts: a PD allocated on one serves its ids' QPs. */
	devs = rdma_get_devices(&n);
	if (devs && n == 1)
		one = devs[0];
	if (devs)
		rdma_free_devices(devs);
	return one;
}

void rdma_listener_set_pd_cb(struct rdma_listener *l, rdma_pd_cb cb, void *arg)
{
	l->pd_cb = cb;
	l->pd_arg = arg;
}

/*
 * In a shared PD the QP's remote access follows trust: none until the peer
 * has authenticated, then READ (all the peer ever needs of this side).
 */
static int ep_set_remote_access(struct rdma_ep *ep, int access)
{
	struct ibv_qp_attr a;
	int ret;

	if (!ep->shared_pd || !ep->id || !ep->id->qp)
		return 0;
	memset(&a, 0, sizeof(a));
	a.qp_access_flags = (unsigned int)access;
	ret = ibv_modify_qp(ep->id->qp, &a, IBV_QP_ACCESS_FLAGS);
	if (ret) {
		log_err("ibv_modify_qp (remote access %#x) on %s: %s", access, ep->name,
			strerror(ret));
		return -ret;
	}
	return 0;
}

void rdma_ep_params_init(struct rdma_ep_params *p)
{
	p->max_msg = 64 * 1024;
	p->recv_depth = 32;
	p->send_depth = 32;
	p->preauth_depth = 0;
	p->max_reads = 64;
	p->timeout_ms = 5000;
}

static void sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (!sa) {
		snprintf(buf, len, "?");
		return;
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "family %d", sa->sa_family);
	}
}

static void ep_update_name(struct rdma_ep *ep)
{
	char peer[80];

	sockaddr_str(rdma_get_peer_addr(ep->id), peer, sizeof(peer));
	snprintf(ep->name, sizeof(ep->name), "%s (%s)", peer,
		 ep->id->verbs ? ibv_get_device_name(ep->id->verbs->device) : "no device");
}

const char *rdma_ep_name(const struct rdma_ep *ep)
{
	return ep->name;
}

struct rdma_pd *rdma_ep_shared_pd(const struct rdma_ep *ep)
{
	return ep->shared_pd;
}

struct ibv_pd *rdma_ep_pd(struct rdma_ep *ep)
{
	return ep->pd;
}

void rdma_ep_set_ops(struct rdma_ep *ep, const struct rdma_ep_ops *ops, void *arg)
{
	ep->ops = ops;
	ep->arg = arg;
}

size_t rdma_ep_pending(const struct rdma_ep *ep)
{
	return ep->queued_bytes;
}

uint32_t rdma_ep_read_slots(const struct rdma_ep *ep)
{
	return ep->connected && !ep->closing ? ep->nr_read_free : 0;
}

/* Reports the end of the connection once; the owner still has to close. */
static void ep_report_closed(struct rdma_ep *ep, int reason)
{
	if (ep->closed_reported || ep->closing)
		return;
	ep->closed_reported = true;
	ep->connected = false;
	if (ep->ops && ep->ops->closed)
		ep->ops->closed(ep, reason, ep->arg);
}

static bool ep_sends_idle(const struct rdma_ep *ep);
static void ep_finish_close(struct rdma_ep *ep);

static uint8_t *bufs_slot(const struct rdma_ep *ep, const struct ep_bufs *b, uint32_t slot,
			  uint32_t *lkey)
{
	int part = slot >= b->n0;

	if (lkey)
		*lkey = b->mr[part]->lkey;
	return b->buf[part] + (size_t)(slot - (part ? b->n0 : 0)) * ep->params.max_msg;
}

/* Makes and registers part `part` of b: count more slots, not usable yet. */
static int bufs_add(struct rdma_ep *ep, struct ep_bufs *b, int part, uint32_t count, int access)
{
	size_t bytes = (size_t)count * ep->params.max_msg;

	b->buf[part] = aligned_alloc(4096, bytes);
	if (!b->buf[part]) {
		log_err("out of memory for %s buffers", ep->name);
		return -ENOMEM;
	}
	return rdma_ep_reg(ep, b->buf[part], bytes, access, &b->mr[part]);
}

static void bufs_free(struct ep_bufs *b)
{
	int i;

	for (i = 0; i < 2; i++) {
		if (b->mr[i])
			ibv_dereg_mr(b->mr[i]);
		free(b->buf[i]);
	}
}

static int ep_post_recv(struct rdma_ep *ep, uint32_t slot)
{
	struct ibv_sge sge = {
	    .length = ep->params.max_msg,
	};
	struct ibv_recv_wr wr = {
	    .wr_id = (WR_KIND_RECV << WR_KIND_SHIFT) | slot,
	    .sg_list = &sge,
	    .num_sge = 1,
	};
	struct ibv_recv_wr *bad;
	int ret;

	sge.addr = (uintptr_t)bufs_slot(ep, &ep->recv, slot, &sge.lkey);
	ret = ibv_post_recv(ep->qp, &wr, &bad);
	if (ret) {
		log_err("ibv_post_recv on %s: %s", ep->name, strerror(ret));
		return -ret;
	}
	return 0;
}

static int ep_post_send_slot(struct rdma_ep *ep, uint32_t slot, size_t len)
{
	struct ibv_sge sge = {
	    .length = (uint32_t)len,
	};
	struct ibv_send_wr wr = {
	    .wr_id = (WR_KIND_SEND << WR_KIND_SHIFT) | slot,
	    .sg_list = &sge,
	    .num_sge = 1,
	    .opcode = IBV_WR_SEND,
	    .send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *bad;
	int ret;

	sge.addr = (uintptr_t)bufs_slot(ep, &ep->send, slot, &sge.lkey);
	ret = ibv_post_send(ep->qp, &wr, &bad);
	if (ret) {
		log_err("ibv_post_send (SEND %zu bytes) on %s: %s", len, ep->name, strerror(ret));
		ep->send_free[ep->nr_send_free++] = slot;
		return -ret;
	}
	return 0;
}

int rdma_ep_send(struct rdma_ep *ep, const void *buf, size_t len)
{
	struct pending_send *ps;
	uint32_t slot;

	if (!ep->connected || ep->closing)
		return -ENOTCONN;
	if (len == 0 || len > ep->params.max_msg)
		return -EMSGSIZE;
	if (ep->nr_send_free == 0 || !STAILQ_EMPTY(&ep->send_queue)) {
		/* Keep message order: once anything waits, everything waits. */
		ps = malloc(sizeof(*ps) + len);
		if (!ps)
			return -ENOMEM;
		ps->len = len;
		memcpy(ps->data, buf, len);
		STAILQ_INSERT_TAIL(&ep->send_queue, ps, link);
		ep->queued_bytes += len;
		return 0;
	}
	slot = ep->send_free[--ep->nr_send_free];
	memcpy(bufs_slot(ep, &ep->send, slot, NULL), buf, len);
	return ep_post_send_slot(ep, slot, len);
}

static void ep_flush_send_queue(struct rdma_ep *ep)
{
	struct pending_send *ps;
	uint32_t slot;

	while (ep->nr_send_free > 0 && (ps = STAILQ_FIRST(&ep->send_queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&ep->send_queue, link);
		ep->queued_bytes -= ps->len;
		slot = ep->send_free[--ep->nr_send_free];
		memcpy(bufs_slot(ep, &ep->send, slot, NULL), ps->data, ps->len);
		if (ep_post_send_slot(ep, slot, ps->len) < 0) {
			free(ps);
			ep_report_closed(ep, -EIO);
			return;
		}
		free(ps);
	}
}

/* One signalled READ on qp, its cookie kept in a slot taken from the given pool. */
static int ep_post_read(struct rdma_ep *ep, struct ibv_qp *qp, uint64_t kind, uint32_t *pool,
			uint32_t *nr_free, uint64_t *cookies, void *local, uint32_t lkey,
			uint64_t raddr, uint32_t rkey, uint32_t len, uint64_t cookie,
			uint32_t *slot_out)
{
	struct ibv_sge sge = {.addr = (uintptr_t)local, .length = len, .lkey = lkey};
	struct ibv_send_wr wr = {
	    .sg_list = &sge,
	    .num_sge = 1,
	    .opcode = IBV_WR_RDMA_READ,
	    .send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *bad;
	uint32_t slot;
	int ret;

	if (!ep->connected || ep->closing)
		return -ENOTCONN;
	if (len == 0)
		return -EINVAL;
	if (*nr_free == 0)
		return -EAGAIN;
	slot = pool[--*nr_free];
	cookies[slot] = cookie;
	wr.wr_id = (kind << WR_KIND_SHIFT) | slot;
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	ret = ibv_post_send(qp, &wr, &bad);
	if (ret) {
		log_err("ibv_post_send (%sREAD %u bytes at 0x%" PRIx64 ") on %s: %s",
			kind == WR_KIND_LANE ? "fault-lane " : "", len, raddr, ep->name,
			strerror(ret));
		pool[(*nr_free)++] = slot;
		return -ret;
	}
	*slot_out = slot;
	return 0;
}

int rdma_ep_read(struct rdma_ep *ep, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		 uint32_t len, uint64_t cookie)
{
	unsigned int q = 0;
	uint32_t slot;
	int ret;

	if (ep->nr_dup)
		q = qpick_least(ep->dout, ep->dup, RDMA_DRAIN_QPS_MAX, &ep->dnext);
	ret = ep_post_read(ep, q ? ep->dqp[q] : ep->qp, WR_KIND_READ, ep->read_free,
			   &ep->nr_read_free, ep->read_cookie, local, lkey, raddr, rkey, len,
			   cookie, &slot);
	if (ret == 0) {
		ep->read_qp[slot] = (uint8_t)q;
		ep->dout[q]++;
	}
	return ret;
}

int rdma_ep_reg(struct rdma_ep *ep, void *addr, size_t len, int access, struct ibv_mr **out)
{
	struct ibv_mr *mr;

	if (!ep->pd)
		return -ENOTCONN;
	mr = ibv_reg_mr(ep->pd, addr, len, access);
	if (!mr) {
		int err = errno ? errno : ENOMEM;

		log_err("ibv_reg_mr(%p, %zu bytes, access 0x%x) on %s: %s%s", addr, len, access,
			ep->name, strerror(err),
			err == ENOMEM || err == EPERM ? " (check RLIMIT_MEMLOCK: ulimit -l)" : "");
		return -err;
	}
	*out = mr;
	return 0;
}

/* A CQ of cqe entries on the endpoint's completion channel, armed. */
static int ep_make_cq(struct rdma_ep *ep, int cqe, const char *what, struct ibv_cq **out)
{
	int ret;

	*out = ibv_create_cq(ep->id->verbs, cqe, ep, ep->comp_ch, 0);
	if (!*out) {
		ret = -(errno ? errno : ENOMEM);
		log_err("ibv_create_cq%s on %s: %s", what, ep->name, strerror(-ret));
		return ret;
	}
	if (ibv_req_notify_cq(*out, 0)) {
		log_err("ibv_req_notify_cq%s on %s failed", what, ep->name);
		return -EIO;
	}
	return 0;
}

/*
 * Moves an extra QP (the fault lane's, a drain QP) to state, with the
 * attributes rdma_cm computed for the first QP; psn: its first send PSN.
 */
static int xqp_modify(struct rdma_ep *ep, struct ibv_qp *qp, uint32_t psn, const char *what,
		      enum ibv_qp_state state, uint32_t peer_qpn, uint32_t peer_psn)
{
	struct ibv_qp_attr a;
	int mask = 0, ret;

	if (ep->manual) {
		/* No rdma_cm path: the one the peer's RcConnect gave the first QP. */
		if (state == IBV_QPS_INIT)
			return rcqp_init(qp, ep->local.port, IBV_ACCESS_REMOTE_READ);
		if (state == IBV_QPS_RTR)
			return rcqp_rtr(qp, &ep->path, peer_qpn, peer_psn);
		return rcqp_rts(qp, &ep->path, psn);
	}
	memset(&a, 0, sizeof(a));
	a.qp_state = state;
	if (rdma_init_qp_attr(ep->id, &a, &mask)) {
		ret = -errno;
		log_err("rdma_init_qp_attr (%s, state %d) on %s: %s", what, state, ep->name,
			strerror(errno));
		return ret;
	}
	switch (state) {
	case IBV_QPS_INIT:
		/* Only READs cross the lane: nothing may write or send into it. */
		a.qp_access_flags = IBV_ACCESS_REMOTE_READ;
		break;
	case IBV_QPS_RTR:
		a.dest_qp_num = peer_qpn;
		a.rq_psn = peer_psn;
		break;
	case IBV_QPS_RTS:
		a.sq_psn = psn;
		break;
	default:
		break;
	}
	ret = ibv_modify_qp(qp, &a, mask);
	if (ret) {
		log_err("ibv_modify_qp (%s to state %d) on %s: %s", what, state, ep->name,
			strerror(ret));
		return -ret;
	}
	return 0;
}

static int lane_modify(struct rdma_ep *ep, enum ibv_qp_state state, uint32_t peer_qpn,
		       uint32_t peer_psn)
{
	return xqp_modify(ep, ep->lane_qp, ep->lane_psn, "fault lane", state, peer_qpn, peer_psn);
}

/* An RC QP for READs only on cq, in INIT; *psn its first send PSN. */
static int xqp_create(struct rdma_ep *ep, struct ibv_cq *cq, uint32_t depth, const char *what,
		      struct ibv_qp **out, uint32_t *psn)
{
	struct ibv_qp_init_attr qpa = {0};
	int ret;

	qpa.send_cq = cq;
	qpa.recv_cq = cq;
	qpa.qp_type = IBV_QPT_RC;
	qpa.cap.max_send_wr = depth;
	qpa.cap.max_recv_wr = 1;
	qpa.cap.max_send_sge = 1;
	qpa.cap.max_recv_sge = 1;
	*out = ibv_create_qp(ep->pd, &qpa);
	if (!*out) {
		ret = -(errno ? errno : ENOMEM);
		log_err("ibv_create_qp (%s) on %s: %s", what, ep->name, strerror(-ret));
		return ret;
	}
	*psn = (uint32_t)(now_ns() ^ (uintptr_t)*out) & 0xffffff;
	return xqp_modify(ep, *out, *psn, what, IBV_QPS_INIT, 0, 0);
}

int rdma_ep_drain_create(struct rdma_ep *ep, unsigned int index, uint32_t *qpn, uint32_t *psn)
{
	int ret;

	if (!ep->connected || ep->closing || !ep->pd)
		return -ENOTCONN;
	if (index == 0 || index >= RDMA_DRAIN_QPS_MAX || ep->dqp[index])
		return -EINVAL;
	/* The read slots are one pool: any QP may hold all of them (a QP takes one at least). */
	ret = xqp_create(ep, ep->cq, ep->params.max_reads ? ep->params.max_reads : 1, "drain QP",
			 &ep->dqp[index], &ep->dpsn[index]);
	if (ret == 0) {
		*qpn = ep->dqp[index]->qp_num;
		*psn = ep->dpsn[index];
	}
	/* A half-made QP is released with the endpoint; it is never used. */
	return ret;
}

int rdma_ep_drain_connect(struct rdma_ep *ep, unsigned int index, uint32_t peer_qpn,
			  uint32_t peer_psn)
{
	int ret;

	if (!ep->connected || ep->closing)
		return -ENOTCONN;
	if (index == 0 || index >= RDMA_DRAIN_QPS_MAX || !ep->dqp[index] || ep->dup[index])
		return -EINVAL;
	ret = xqp_modify(ep, ep->dqp[index], ep->dpsn[index], "drain QP", IBV_QPS_RTR,
			 peer_qpn & 0xffffff, peer_psn & 0xffffff);
	if (ret == 0)
		ret =
		    xqp_modify(ep, ep->dqp[index], ep->dpsn[index], "drain QP", IBV_QPS_RTS, 0, 0);
	if (ret == 0) {
		ep->dup[index] = true;
		ep->nr_dup++;
		log_debug("%s: drain QP %u up (QP %u to peer QP %u)", ep->name, index,
			  ep->dqp[index]->qp_num, peer_qpn);
	}
	return ret;
}

unsigned int rdma_ep_drain_qps(const struct rdma_ep *ep)
{
	return ep->connected && !ep->closing ? 1 + ep->nr_dup : 0;
}

static void ep_lane_arm_cb(evutil_socket_t fd, short what, void *arg);

int rdma_ep_lane_create(struct rdma_ep *ep, uint32_t depth, uint32_t *qpn, uint32_t *psn)
{
	uint32_t i;
	int ret;

	if (!ep->connected || ep->closing || !ep->pd)
		return -ENOTCONN;
	if (ep->lane_qp || depth == 0)
		return -EINVAL;
	ep->lane_cookie = calloc(depth, sizeof(*ep->lane_cookie));
	ep->lane_free = calloc(depth, sizeof(*ep->lane_free));
	if (!ep->lane_cookie || !ep->lane_free) {
		ret = -ENOMEM;
		goto out;
	}
	ep->lane_arm_ev = event_new(ep->base, -1, 0, ep_lane_arm_cb, ep);
	if (!ep->lane_arm_ev) {
		ret = -ENOMEM;
		goto out;
	}
	ret = ep_make_cq(ep, (int)depth + 1, " (fault lane)", &ep->lane_cq);
	if (ret < 0)
		goto out;
	ep->lane_armed = true; /* ep_make_cq arms it */
	ret = xqp_create(ep, ep->lane_cq, depth, "fault lane", &ep->lane_qp, &ep->lane_psn);
	if (ret < 0)
		goto out;
	for (i = 0; i < depth; i++)
		ep->lane_free[i] = depth - 1 - i;
	ep->nr_lane_free = depth;
	ep->lane_depth = depth;
	*qpn = ep->lane_qp->qp_num;
	*psn = ep->lane_psn;
	ret = 0;
out:
	/* A half-made lane is released with the endpoint; it is never used. */
	return ret;
}

int rdma_ep_lane_connect(struct rdma_ep *ep, uint32_t peer_qpn, uint32_t peer_psn)
{
	int ret;

	if (!ep->connected || ep->closing)
		return -ENOTCONN;
	if (!ep->lane_qp || ep->lane_up || ep->nr_lane_free != ep->lane_depth)
		return -EINVAL;
	ret = lane_modify(ep, IBV_QPS_RTR, peer_qpn & 0xffffff, peer_psn & 0xffffff);
	if (ret == 0)
		ret = lane_modify(ep, IBV_QPS_RTS, 0, 0);
	if (ret == 0) {
		ep->lane_up = true;
		log_debug("%s: fault lane up (QP %u to peer QP %u)", ep->name, ep->lane_qp->qp_num,
			  peer_qpn);
	}
	return ret;
}

bool rdma_ep_lane_up(const struct rdma_ep *ep)
{
	return ep->lane_up && ep->connected && !ep->closing;
}

int rdma_ep_read_fault(struct rdma_ep *ep, void *local, uint32_t lkey, uint64_t raddr,
		       uint32_t rkey, uint32_t len, uint64_t cookie)
{
	int ret;

	if (!ep->lane_up)
		return rdma_ep_read(ep, local, lkey, raddr, rkey, len, cookie);
	uint32_t slot;

	ret = ep_post_read(ep, ep->lane_qp, WR_KIND_LANE, ep->lane_free, &ep->nr_lane_free,
			   ep->lane_cookie, local, lkey, raddr, rkey, len, cookie, &slot);
	if (ret == 0 && !ep->lane_armed)
		event_active(ep->lane_arm_ev, EV_TIMEOUT, 1);
	return ret;
}

static int ep_poll_cq(struct rdma_ep *ep, struct ibv_cq *cq, int budget, uint64_t until, int batch);

/* Arms the lane CQ while READs are in flight on it; see lane_armed. */
static void ep_lane_arm(struct rdma_ep *ep)
{
	if (ep->lane_armed || ep->nr_lane_free == ep->lane_depth || (ep->closing && !ep->lingering))
		return;
	if (ibv_req_notify_cq(ep->lane_cq, 0)) {
		log_err("ibv_req_notify_cq (fault lane) on %s failed", ep->name);
		ep_report_closed(ep, -EIO);
		return;
	}
	ep->lane_armed = true;
	/* A completion that landed before the arm notifies no one: poll for it. */
	ep_poll_cq(ep, ep->lane_cq, CQ_POLL_BUDGET, 0, 16);
}

static void ep_lane_arm_cb(evutil_socket_t fd, short what, void *arg)
{
	ep_lane_arm(arg);
}

static void ep_handle_wc(struct rdma_ep *ep, const struct ibv_wc *wc)
{
	uint64_t kind = wc->wr_id >> WR_KIND_SHIFT;
	uint32_t slot = (uint32_t)(wc->wr_id & WR_SLOT_MASK);
	int status = 0;

	if (wc->status != IBV_WC_SUCCESS) {
		status = wc->status == IBV_WC_WR_FLUSH_ERR ? -ECANCELED : -EIO;
		if (status != -ECANCELED)
			log_err("completion error on %s: %s (vendor 0x%x, %s)", ep->name,
				ibv_wc_status_str(wc->status), wc->vendor_err,
				kind == WR_KIND_READ   ? "READ"
				: kind == WR_KIND_LANE ? "fault-lane READ"
				: kind == WR_KIND_SEND ? "SEND"
						       : "RECV");
	}
	switch (kind) {
	case WR_KIND_RECV:
		if (status == 0 && ep->ops && ep->ops->recv)
			ep->ops->recv(ep, bufs_slot(ep, &ep->recv, slot, NULL), wc->byte_len,
				      ep->arg);
		if (status == 0 && !ep->closing && ep_post_recv(ep, slot) < 0)
			ep_report_closed(ep, -EIO);
		break;
	case WR_KIND_SEND:
		ep->send_free[ep->nr_send_free++] = slot;
		if (status == 0 && (!ep->closing || ep->lingering))
			ep_flush_send_queue(ep);
		if (ep->lingering && ep_sends_idle(ep))
			ep_finish_close(ep);
		break;
	case WR_KIND_READ:
		ep->dout[ep->read_qp[slot]]--;
		ep->read_free[ep->nr_read_free++] = slot;
		if (ep->ops && ep->ops->read_done)
			ep->ops->read_done(ep, ep->read_cookie[slot], status, ep->arg);
		break;
	case WR_KIND_LANE:
		ep->lane_free[ep->nr_lane_free++] = slot;
		if (ep->ops && ep->ops->read_done)
			ep->ops->read_done(ep, ep->lane_cookie[slot], status, ep->arg);
		break;
	default:
		log_err("completion with unknown wr_id 0x%" PRIx64 " on %s", wc->wr_id, ep->name);
		status = -EIO;
		break;
	}
	if (status == -EIO)
		ep_report_closed(ep, -EIO);
}

/*
 * Polls cq for at most budget completions, batch (1..16) at a time, and
 * once one batch ran only until the monotonic time until (0: no limit);
 * returns how many ran, or -EIO.  Each completion may cost a UFFDIO_COPY:
 * the time is looked at between batches.
 */
static int ep_poll_cq(struct rdma_ep *ep, struct ibv_cq *cq, int budget, uint64_t until, int batch)
{
	struct ibv_wc wc[16];
	int done = 0, n, i;

	while (done < budget && (!ep->closing || ep->lingering)) {
		if (done && until && now_ns() >= until)
			break;
		n = ibv_poll_cq(cq, batch, wc);
		if (n < 0) {
			log_err("ibv_poll_cq on %s failed: %d", ep->name, n);
			ep_report_closed(ep, -EIO);
			return -EIO;
		}
		if (n == 0)
			break;
		for (i = 0; i < n && (!ep->closing || ep->lingering); i++)
			ep_handle_wc(ep, &wc[i]);
		done += n;
	}
	return done;
}

static void ep_comp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_ep *ep = arg;
	struct ibv_cq *cq;
	void *ctx;
	int budget = CQ_POLL_BUDGET;
	uint64_t until = now_ns() + CQ_POLL_SLICE_NS;
	bool rearm = false;
	int n;

	/* The channel fd is non-blocking: drain every pending notification. */
	while (ibv_get_cq_event(ep->comp_ch, &cq, &ctx) == 0) {
		if (cq == ep->lane_cq) {
			ep->lane_unacked++;
			ep->lane_armed = false;
		} else {
			ep->cq_unacked++;
			rearm = true;
		}
	}
	if (ep->cq_unacked >= CQ_ACK_BATCH) {
		ibv_ack_cq_events(ep->cq, ep->cq_unacked);
		ep->cq_unacked = 0;
	}
	if (ep->lane_unacked >= CQ_ACK_BATCH) {
		ibv_ack_cq_events(ep->lane_cq, ep->lane_unacked);
		ep->lane_unacked = 0;
	}
	/*
	 * Re-arm before polling so a completion landing in between still
	 * wakes us; only a CQ that notified: the other is still armed.  The
	 * lane is re-armed below, if READs are still in flight on it.
	 */
	if (rearm && ibv_req_notify_cq(ep->cq, 0)) {
		log_err("ibv_req_notify_cq on %s failed", ep->name);
		ep_report_closed(ep, -EIO);
		return;
	}
	/* The fault lane first: its completions are what a stopped thread waits for. */
	if (ep->lane_cq) {
		n = ep_poll_cq(ep, ep->lane_cq, budget, until, 4);
		if (n < 0)
			return;
		budget -= n;
	}
	if (now_ns() >= until) {
		budget = 0;
	} else {
		n = ep_poll_cq(ep, ep->cq, budget, until, 4);
		if (n < 0)
			return;
		budget -= n;
		if (now_ns() >= until)
			budget = 0;
	}
	if (ep->lane_cq)
		ep_lane_arm(ep);
	/*
	 * More may be waiting.  A zero timeout, not event_active(): an event
	 * re-activated while libevent runs its queue runs again in the same
	 * pass, and over rxe each completion can trigger the next, so other fds
	 * (a userfaultfd with faults) would wait until the CQ ran dry.
	 */
	if (budget <= 0 && (!ep->closing || ep->lingering)) {
		static const struct timeval now = {0, 0};

		event_add(ep->resume_ev, &now);
	}
}

int rdma_ep_poll(struct rdma_ep *ep)
{
	int n;

	if (ep->closing && !ep->lingering)
		return -ENOTCONN;
	if (!ep->cq)
		return -ENOTCONN;
	if (ep->lane_cq) {
		n = ep_poll_cq(ep, ep->lane_cq, 16, 0, 16);
		if (n != 0)
			return n;
	}
	/*
	 * A fault may wait for a drain READ in flight; the spin must stay
	 * short all the same: one at a time, for at most the slice.
	 */
	return ep_poll_cq(ep, ep->cq, 16, now_ns() + CQ_POLL_SLICE_NS, 1);
}

static void ep_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_ep *ep = arg;

	ep_comp_cb(ep->comp_ch->fd, EV_READ, ep);
}

/* Slots [send.n, n) become free send slots. */
static void ep_add_send_slots(struct rdma_ep *ep, uint32_t n)
{
	uint32_t i;

	for (i = ep->send.n; i < n; i++)
		ep->send_free[ep->nr_send_free++] = i;
	ep->send.n = n;
}

/* Slots [recv.n, n) are posted for receiving. */
static int ep_add_recv_slots(struct rdma_ep *ep, uint32_t n)
{
	int ret;

	for (; ep->recv.n < n; ep->recv.n++) {
		ret = ep_post_recv(ep, ep->recv.n);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int rdma_ep_set_trusted(struct rdma_ep *ep)
{
	const struct rdma_ep_params *p = &ep->params;
	int ret = 0;

	if (ep->trusted || ep->closing || !ep->qp)
		return ep->trusted ? 0 : -ENOTCONN;
	ret = ep_set_remote_access(ep, IBV_ACCESS_REMOTE_READ);
	if (ret < 0)
		return ret;
	ep->trusted = true;
	if (ep->recv.n0 < p->recv_depth)
		ret =
		    bufs_add(ep, &ep->recv, 1, p->recv_depth - ep->recv.n0, IBV_ACCESS_LOCAL_WRITE);
	if (ret == 0)
		ret = ep_add_recv_slots(ep, p->recv_depth);
	if (ret == 0 && ep->send.n0 < p->send_depth)
		ret = bufs_add(ep, &ep->send, 1, p->send_depth - ep->send.n0, 0);
	if (ret < 0)
		return ret;
	ep_add_send_slots(ep, p->send_depth);
	ep_flush_send_queue(ep);
	return 0;
}

/* The first QP: rdma_cm's, or by hand in INIT, READs of our memory allowed. */
static int ep_create_qp(struct rdma_ep *ep, struct ibv_qp_init_attr *qpa)
{
	int ret;

	if (!ep->manual) {
		if (rdma_create_qp(ep->id, ep->pd, qpa)) {
			ret = -errno;
			log_err("rdma_create_qp on %s: %s", ep->name, strerror(errno));
			return ret;
		}
		ep->qp = ep->id->qp;
		return 0;
	}
	ep->qp = ibv_create_qp(ep->pd, qpa);
	if (!ep->qp) {
		ret = -(errno ? errno : ENOMEM);
		log_err("ibv_create_qp on %s: %s", ep->name, strerror(-ret));
		return ret;
	}
	return rcqp_init(ep->qp, ep->local.port, IBV_ACCESS_REMOTE_READ);
}

static int ep_setup_verbs(struct rdma_ep *ep)
{
	struct ibv_qp_init_attr qpa = {0};
	struct ibv_context *verbs = ep->id->verbs;
	const struct rdma_ep_params *p = &ep->params;
	uint32_t i;
	int ret;

	if (!ep->manual)
		ep_update_name(ep);
	ep->pd = ep->shared_pd ? ep->shared_pd->pd : ibv_alloc_pd(verbs);
	if (!ep->pd) {
		ret = -(errno ? errno : ENOMEM);
		log_err("ibv_alloc_pd on %s: %s", ep->name, strerror(-ret));
		goto out;
	}
	ep->comp_ch = ibv_create_comp_channel(verbs);
	if (!ep->comp_ch) {
		ret = -(errno ? errno : ENOMEM);
		log_err("ibv_create_comp_channel on %s: %s", ep->name, strerror(-ret));
		goto out;
	}
	ret = fd_set_nonblock(ep->comp_ch->fd);
	if (ret < 0)
		goto out;
	ret = ep_make_cq(ep, (int)(p->recv_depth + p->send_depth + p->max_reads + 1), "", &ep->cq);
	if (ret < 0)
		goto out;
	qpa.send_cq = ep->cq;
	qpa.recv_cq = ep->cq;
	qpa.qp_type = IBV_QPT_RC;
	qpa.cap.max_send_wr = p->send_depth + p->max_reads;
	qpa.cap.max_recv_wr = p->recv_depth;
	qpa.cap.max_send_sge = 1;
	qpa.cap.max_recv_sge = 1;
	ret = ep_create_qp(ep, &qpa);
	if (ret < 0)
		goto out;

	ep->send_free = calloc(p->send_depth, sizeof(*ep->send_free));
	ep->read_cookie = calloc(p->max_reads, sizeof(*ep->read_cookie));
	ep->read_free = calloc(p->max_reads, sizeof(*ep->read_free));
	ep->read_qp = calloc(p->max_reads, sizeof(*ep->read_qp));
	if (!ep->send_free || !ep->read_cookie || !ep->read_free || !ep->read_qp) {
		ret = -ENOMEM;
		log_err("out of memory for %s buffers", ep->name);
		goto out;
	}
	/* An untrusted peer gets a few buffers; the rest once it has proven itself. */
	ep->recv.n0 =
	    p->preauth_depth && p->preauth_depth < p->recv_depth ? p->preauth_depth : p->recv_depth;
	ep->send.n0 =
	    p->preauth_depth && p->preauth_depth < p->send_depth ? p->preauth_depth : p->send_depth;
	ret = bufs_add(ep, &ep->recv, 0, ep->recv.n0, IBV_ACCESS_LOCAL_WRITE);
	if (ret == 0)
		ret = bufs_add(ep, &ep->send, 0, ep->send.n0, 0);
	if (ret < 0)
		goto out;
	ep_add_send_slots(ep, ep->send.n0);
	for (i = 0; i < p->max_reads; i++)
		ep->read_free[i] = p->max_reads - 1 - i;
	ep->nr_read_free = p->max_reads;
	ret = ep_add_recv_slots(ep, ep->recv.n0);
	if (ret < 0)
		goto out;
	ep->comp_ev = event_new(ep->base, ep->comp_ch->fd, EV_READ | EV_PERSIST, ep_comp_cb, ep);
	ep->resume_ev = evtimer_new(ep->base, ep_resume_cb, ep);
	if (!ep->comp_ev || !ep->resume_ev || event_add(ep->comp_ev, NULL) < 0) {
		ret = -ENOMEM;
		log_err("cannot watch the completion channel of %s", ep->name);
		goto out;
	}
	ret = 0;
out:
	return ret;
}

/* Both directions get as many READs in flight as both devices allow. */
static void ep_conn_param(struct rdma_ep *ep, struct rdma_conn_param *cp,
			  const struct rdma_conn_param *req)
{
	struct ibv_device_attr da;
	int resp = 16, init = 16;

	if (ibv_query_device(ep->id->verbs, &da) == 0) {
		resp = da.max_qp_rd_atom;
		init = da.max_qp_init_rd_atom;
	}
	memset(cp, 0, sizeof(*cp));
	cp->responder_resources = (uint8_t)(resp > 255 ? 255 : resp);
	cp->initiator_depth = (uint8_t)(init > 255 ? 255 : init);
	if (req) {
		if (cp->responder_resources > req->initiator_depth)
			cp->responder_resources = req->initiator_depth;
		if (cp->initiator_depth > req->responder_resources)
			cp->initiator_depth = req->responder_resources;
	}
	cp->retry_count = 7;
	/* 7 = retry forever on receiver-not-ready: the peer reposts buffers from its loop. */
	cp->rnr_retry_count = 7;
}

static void ep_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_ep *ep = arg;
	struct pending_send *ps;
	unsigned int i;

	if (ep->cq_unacked)
		ibv_ack_cq_events(ep->cq, ep->cq_unacked);
	if (ep->lane_unacked)
		ibv_ack_cq_events(ep->lane_cq, ep->lane_unacked);
	if (ep->lane_qp && ibv_destroy_qp(ep->lane_qp))
		log_warn("ibv_destroy_qp (fault lane) on %s failed", ep->name);
	if (ep->lane_cq)
		ibv_destroy_cq(ep->lane_cq);
	for (i = 1; i < RDMA_DRAIN_QPS_MAX; i++)
		if (ep->dqp[i] && ibv_destroy_qp(ep->dqp[i]))
			log_warn("ibv_destroy_qp (drain QP %u) on %s failed", i, ep->name);
	if (ep->id && ep->id->qp)
		rdma_destroy_qp(ep->id);
	else if (ep->qp && ibv_destroy_qp(ep->qp))
		log_warn("ibv_destroy_qp on %s failed", ep->name);
	if (ep->est_ev)
		event_free(ep->est_ev);
	if (ep->comp_ev)
		event_free(ep->comp_ev);
	if (ep->resume_ev)
		event_free(ep->resume_ev);
	if (ep->lane_arm_ev)
		event_free(ep->lane_arm_ev);
	if (ep->linger_ev)
		event_free(ep->linger_ev);
	if (ep->cq)
		ibv_destroy_cq(ep->cq);
	if (ep->comp_ch)
		ibv_destroy_comp_channel(ep->comp_ch);
	bufs_free(&ep->recv);
	bufs_free(&ep->send);
	if (ep->shared_pd)
		rdma_pd_unref(ep->shared_pd);
	else if (ep->pd && ibv_dealloc_pd(ep->pd))
		log_warn("ibv_dealloc_pd on %s failed: memory regions still registered?", ep->name);
	if (ep->id)
		rdma_destroy_id(ep->id);
	if (ep->cm_ev)
		event_free(ep->cm_ev);
	if (ep->cm_ch)
		rdma_destroy_event_channel(ep->cm_ch);
	while ((ps = STAILQ_FIRST(&ep->send_queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&ep->send_queue, link);
		free(ps);
	}
	free(ep->send_free);
	free(ep->read_cookie);
	free(ep->read_free);
	free(ep->read_qp);
	free(ep->lane_cookie);
	free(ep->lane_free);
	free(ep);
}

static bool ep_sends_idle(const struct rdma_ep *ep)
{
	return ep->nr_send_free == ep->send.n && STAILQ_EMPTY(&ep->send_queue);
}

static void ep_finish_close(struct rdma_ep *ep)
{
	static const struct timeval zero = {0, 0};

	ep->lingering = false;
	if (ep->linger_ev)
		event_del(ep->linger_ev);
	if (ep->connected && !ep->manual)
		rdma_disconnect(ep->id);
	/* Like a disconnect: a QP made by hand has none (the peer notices silence). */
	if (ep->manual && ep->qp) {
		struct ibv_qp_attr err = {.qp_state = IBV_QPS_ERR};

		ibv_modify_qp(ep->qp, &err, IBV_QP_STATE);
	}
	ep->connected = false;
	if (ep->est_ev)
		event_del(ep->est_ev);
	/* Like the disconnect for the first QP: no READ lands in local memory from now on. */
	if (ep->lane_qp) {
		struct ibv_qp_attr err = {.qp_state = IBV_QPS_ERR};

		ibv_modify_qp(ep->lane_qp, &err, IBV_QP_STATE);
		ep->lane_up = false;
	}
	for (unsigned int i = 1; i < RDMA_DRAIN_QPS_MAX; i++) {
		struct ibv_qp_attr err = {.qp_state = IBV_QPS_ERR};

		if (ep->dqp[i])
			ibv_modify_qp(ep->dqp[i], &err, IBV_QP_STATE);
		ep->dup[i] = false;
	}
	ep->nr_dup = 0;
	if (ep->comp_ev)
		event_del(ep->comp_ev);
	if (ep->resume_ev)
		event_del(ep->resume_ev);
	if (ep->lane_arm_ev)
		event_del(ep->lane_arm_ev);
	if (ep->cm_ev)
		event_del(ep->cm_ev);
	/* Stray rdma_cm events for this id must not find the endpoint any more. */
	if (ep->id)
		ep->id->context = NULL;
	if (event_base_once(ep->base, -1, EV_TIMEOUT, ep_free_cb, ep, &zero) < 0) {
		log_err("cannot schedule the release of %s; releasing now", ep->name);
		ep_free_cb(-1, 0, ep);
	}
}

static void ep_linger_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_ep *ep = arg;

	log_warn("%s: messages still queued at close after 2 s; dropping them", ep->name);
	ep_finish_close(ep);
}

void rdma_ep_close(struct rdma_ep *ep)
{
	struct timeval tv = {2, 0};

	if (!ep || ep->closing)
		return;
	ep->closing = true;
	/* No callback after close, whatever still completes. */
	ep->ops = NULL;
	/*
	 * A disconnect flushes SENDs not yet on the wire: a last DoneAck or
	 * Abort would be lost.  Let them leave first, for a bounded time.
	 */
	if (ep->connected && !ep_sends_idle(ep)) {
		ep->linger_ev = evtimer_new(ep->base, ep_linger_timeout, ep);
		if (ep->linger_ev && evtimer_add(ep->linger_ev, &tv) == 0) {
			ep->lingering = true;
			return;
		}
	}
	ep_finish_close(ep);
}

static struct rdma_ep *ep_alloc(struct event_base *base, const struct rdma_ep_params *params)
{
	struct rdma_ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->base = base;
	if (params)
		ep->params = *params;
	else
		rdma_ep_params_init(&ep->params);
	STAILQ_INIT(&ep->send_queue);
	snprintf(ep->name, sizeof(ep->name), "(connecting)");
	return ep;
}

static int cm_event_errno(const struct rdma_cm_event *ev)
{
	switch (ev->event) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_UNREACHABLE:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return ev->status < 0 ? ev->status : -EHOSTUNREACH;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	case RDMA_CM_EVENT_DISCONNECTED:
		return -ECONNRESET;
	default:
		return ev->status < 0 ? ev->status : -EIO;
	}
}

/* Events of one endpoint, whichever channel they came from; ev is already acked. */
static void ep_handle_cm(struct rdma_ep *ep, const struct rdma_cm_event *ev)
{
	struct rdma_conn_param cp;
	int ret;

	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		ret = ep_setup_verbs(ep);
		if (ret == 0 && rdma_resolve_route(ep->id, (int)ep->params.timeout_ms)) {
			ret = -errno;
			log_err("rdma_resolve_route to %s: %s", ep->name, strerror(errno));
		}
		if (ret < 0)
			ep_report_closed(ep, ret);
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		ep_conn_param(ep, &cp, NULL);
		if (ep->params.conn_data_len) {
			cp.private_data = ep->params.conn_data;
			cp.private_data_len = ep->params.conn_data_len;
		}
		if (rdma_connect(ep->id, &cp)) {
			ret = -errno;
			log_err("rdma_connect to %s: %s", ep->name, strerror(errno));
			ep_report_closed(ep, ret);
		}
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		ep->connected = true;
		ep_update_name(ep);
		log_debug("connected to %s", ep->name);
		if (ep->ops && ep->ops->established)
			ep->ops->established(ep, ep->arg);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		if (ep->lingering) {
			/* The peer left: nothing queued can leave any more. */
			ep->connected = false;
			ep_finish_close(ep);
			break;
		}
		log_info("peer %s disconnected", ep->name);
		/*
		 * What the peer sent before it left is in the CQ, whose channel
		 * may be read after this one: its last word (a refusal, an
		 * Abort) goes to the owner before the loss does.
		 */
		if (ep->cq && !ep->closing && !ep->closed_reported)
			ep_poll_cq(ep, ep->cq, CQ_POLL_BUDGET, 0, 16);
		ep_report_closed(ep, -ECONNRESET);
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		break;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	default:
		ret = cm_event_errno(ev);
		/* Before the connection exists the owner may retry: it logs the final word. */
		if (ep->connected || ep->listener)
			log_err("%s on %s: %s", rdma_event_str(ev->event), ep->name,
				strerror(-ret));
		else
			log_debug("%s on %s: %s", rdma_event_str(ev->event), ep->name,
				  strerror(-ret));
		ep_report_closed(ep, ret);
		break;
	}
}

static void ep_cm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_ep *ep = arg;
	struct rdma_cm_event *ev, copy;

	while ((!ep->closing || ep->lingering) && rdma_get_cm_event(ep->cm_ch, &ev) == 0) {
		copy = *ev;
		rdma_ack_cm_event(ev);
		ep_handle_cm(ep, &copy);
	}
}

/*
 * A non-blocking rdma_cm event channel and one id on it, context ctx.  On
 * failure whatever was created is left in *ch / *id for the caller's cleanup.
 */
static int cm_open(void *ctx, struct rdma_event_channel **ch, struct rdma_cm_id **id)
{
	int ret;

	*ch = rdma_create_event_channel();
	if (!*ch) {
		ret = -errno;
		log_err("rdma_create_event_channel: %s%s", strerror(errno),
			errno == ENODEV || errno == ENOENT
			    ? " (no RDMA device: is rdma_ucm loaded?)"
			    : "");
		return ret;
	}
	ret = fd_set_nonblock((*ch)->fd);
	if (ret < 0)
		return ret;
	if (rdma_create_id(*ch, id, ctx, RDMA_PS_TCP)) {
		ret = -errno;
		log_err("rdma_create_id: %s", strerror(errno));
		return ret;
	}
	return 0;
}

int rdma_ep_connect(struct event_base *base, const char *addr, const char *port,
		    const struct rdma_ep_params *params, const struct rdma_ep_ops *ops, void *arg,
		    struct rdma_ep **out)
{
	struct rdma_addrinfo hints = {0}, *res = NULL;
	struct rdma_ep *ep;
	int ret;

	ep = ep_alloc(base, params);
	if (!ep)
		return -ENOMEM;
	ep->ops = ops;
	ep->arg = arg;
	snprintf(ep->name, sizeof(ep->name), "%s:%s", addr, port);
	hints.ai_port_space = RDMA_PS_TCP;
	ret = rdma_getaddrinfo(addr, port, &hints, &res);
	if (ret) {
		ret = errno ? -errno : -EINVAL;
		log_err("rdma_getaddrinfo(%s:%s): %s", addr, port, strerror(-ret));
		goto out;
	}
	ret = cm_open(ep, &ep->cm_ch, &ep->id);
	if (ret < 0)
		goto out;
	ep->cm_ev = event_new(base, ep->cm_ch->fd, EV_READ | EV_PERSIST, ep_cm_cb, ep);
	if (!ep->cm_ev || event_add(ep->cm_ev, NULL) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	if (rdma_resolve_addr(ep->id, NULL, res->ai_dst_addr, (int)ep->params.timeout_ms)) {
		ret = -errno;
		log_err("rdma_resolve_addr(%s:%s): %s", addr, port, strerror(errno));
		goto out;
	}
	*out = ep;
	ret = 0;
out:
	if (res)
		rdma_freeaddrinfo(res);
	if (ret < 0) {
		ep->closing = true;
		ep_free_cb(-1, 0, ep);
	}
	return ret;
}

static void listener_handle_request(struct rdma_listener *l, struct rdma_cm_id *id,
				    const struct rdma_conn_param *req, const void *data, size_t len)
{
	struct rdma_conn_param cp;
	struct rdma_pd *pd;
	struct rdma_ep *ep;
	int ret;

	ep = ep_alloc(l->base, &l->params);
	if (!ep) {
		rdma_reject(id, NULL, 0);
		rdma_destroy_id(id);
		return;
	}
	ep->listener = l;
	ep->id = id;
	id->context = ep;
	pd = l->pd_cb ? l->pd_cb(id->verbs, data, len, l->pd_arg) : NULL;
	if (pd && pd->pd->context == id->verbs)
		ep->shared_pd = rdma_pd_ref(pd);
	ret = ep_setup_verbs(ep);
	if (ret == 0)
		ret = l->accept_cb(l, ep, l->arg);
	if (ret == 0) {
		ep_conn_param(ep, &cp, req);
		if (rdma_accept(id, &cp)) {
			ret = -errno;
			log_err("rdma_accept from %s: %s", ep->name, strerror(errno));
		} else if ((ret = ep_set_remote_access(ep, 0)) < 0) {
			/* Accepted and owned: it ends through its owner. */
			ep_report_closed(ep, ret);
			return;
		}
	}
	if (ret < 0) {
		/* Each cause was logged where it arose, the accept callback's rate-limited. */
		log_debug("refused connection from %s: %s", ep->name, strerror(-ret));
		rdma_reject(id, NULL, 0);
		ep->closing = true;
		ep_free_cb(-1, 0, ep);
	}
}

static void listener_cm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_listener *l = arg;
	struct rdma_cm_event *ev, copy;
	struct rdma_conn_param req;
	uint8_t data[RDMA_CONN_DATA_MAX];
	size_t len;

	while (rdma_get_cm_event(l->cm_ch, &ev) == 0) {
		copy = *ev;
		req = ev->param.conn;
		/* The private data lives in the event: copied before the ack. */
		len = req.private_data && req.private_data_len ? req.private_data_len : 0;
		if (len > sizeof(data))
			len = sizeof(data);
		if (len)
			memcpy(data, req.private_data, len);
		req.private_data = NULL;
		req.private_data_len = 0;
		rdma_ack_cm_event(ev);
		if (copy.event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			listener_handle_request(l, copy.id, &req, data, len);
		} else if (copy.id == l->id) {
			log_warn("%s on listener %s", rdma_event_str(copy.event), l->name);
		} else if (copy.id->context) {
			ep_handle_cm(copy.id->context, &copy);
		}
	}
}

int rdma_listener_create(struct event_base *base, const char *addr, const char *port,
			 const struct rdma_ep_params *params, rdma_accept_cb accept_cb, void *arg,
			 struct rdma_listener **out)
{
	struct rdma_addrinfo hints = {0}, *res = NULL;
	struct rdma_listener *l;
	int ret;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->base = base;
	l->accept_cb = accept_cb;
	l->arg = arg;
	if (params)
		l->params = *params;
	else
		rdma_ep_params_init(&l->params);
	snprintf(l->name, sizeof(l->name), "%s:%s", addr ? addr : "*", port);
	hints.ai_flags = RAI_PASSIVE;
	hints.ai_port_space = RDMA_PS_TCP;
	if (rdma_getaddrinfo(addr, port, &hints, &res)) {
		ret = errno ? -errno : -EINVAL;
		log_err("rdma_getaddrinfo(%s): %s", l->name, strerror(-ret));
		goto out;
	}
	ret = cm_open(l, &l->cm_ch, &l->id);
	if (ret < 0)
		goto out;
	if (rdma_bind_addr(l->id, res->ai_src_addr)) {
		ret = -errno;
		log_err("rdma_bind_addr(%s): %s%s", l->name, strerror(errno),
			errno == EADDRNOTAVAIL || errno == ENODEV
			    ? " (no RDMA device on that address?)"
			    : "");
		goto out;
	}
	if (rdma_listen(l->id, 16)) {
		ret = -errno;
		log_err("rdma_listen(%s): %s", l->name, strerror(errno));
		goto out;
	}
	l->cm_ev = event_new(base, l->cm_ch->fd, EV_READ | EV_PERSIST, listener_cm_cb, l);
	if (!l->cm_ev || event_add(l->cm_ev, NULL) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	log_debug("listening for RDMA connections on %s", l->name);
	*out = l;
	ret = 0;
out:
	if (res)
		rdma_freeaddrinfo(res);
	if (ret < 0)
		rdma_listener_destroy(l);
	return ret;
}

int rdma_listener_port(const struct rdma_listener *l)
{
	return ntohs(rdma_get_src_port(l->id));
}

void rdma_listener_destroy(struct rdma_listener *l)
{
	if (!l)
		return;
	if (l->cm_ev)
		event_free(l->cm_ev);
	if (l->id)
		rdma_destroy_id(l->id);
	if (l->cm_ch)
		rdma_destroy_event_channel(l->cm_ch);
	free(l);
}

/* ---- endpoints made by hand (no rdma_cm connection) ---- */

static void ep_est_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rdma_ep *ep = arg;

	if (!ep->closing && ep->connected && ep->ops && ep->ops->established)
		ep->ops->established(ep, ep->arg);
}

int rdma_ep_manual(struct event_base *base, const struct sockaddr *local, const char *peer_name,
		   const struct rdma_ep_params *params, struct rdma_ep **out,
		   struct rcqp_addr *mine)
{
	struct sockaddr_storage bind_to;
	struct rdma_ep *ep;
	int ret;

	ep = ep_alloc(base, params);
	if (!ep)
		return -ENOMEM;
	ep->manual = true;
	snprintf(ep->name, sizeof(ep->name), "%s (queue pair by hand)", peer_name);
	ret = cm_open(ep, &ep->cm_ch, &ep->id);
	if (ret < 0)
		goto out;
	/* Bound, never connected: it names the device and port of the address, no MAD is sent. */
	memset(&bind_to, 0, sizeof(bind_to));
	memcpy(&bind_to, local,
	       local->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					    : sizeof(struct sockaddr_in));
	if (bind_to.ss_family == AF_INET)
		((struct sockaddr_in *)&bind_to)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&bind_to)->sin6_port = 0;
	if (rdma_bind_addr(ep->id, (struct sockaddr *)&bind_to) || !ep->id->verbs) {
		ret = errno ? -errno : -ENODEV;
		log_err("rdma_bind_addr for %s: %s (no RDMA device on the side connection's "
			"address?)",
			ep->name, strerror(-ret));
		goto out;
	}
	snprintf(ep->name, sizeof(ep->name), "%s (%s, queue pair by hand)", peer_name,
		 ibv_get_device_name(ep->id->verbs->device));
	ret = rcqp_local(ep->id->verbs, ep->id->port_num, local, &ep->local);
	if (ret < 0)
		goto out;
	ret = ep_setup_verbs(ep);
	if (ret < 0)
		goto out;
	ep->est_ev = evtimer_new(base, ep_est_cb, ep);
	if (!ep->est_ev) {
		ret = -ENOMEM;
		goto out;
	}
	ep->local.addr.qpn = ep->qp->qp_num;
	ep->local.addr.psn = (uint32_t)(now_ns() ^ ((uintptr_t)ep >> 4)) & 0xffffff;
	*mine = ep->local.addr;
	*out = ep;
	ret = 0;
out:
	if (ret < 0) {
		ep->closing = true;
		ep_free_cb(-1, 0, ep);
	}
	return ret;
}

int rdma_ep_manual_connect(struct rdma_ep *ep, const struct rcqp_addr *peer)
{
	static const struct timeval now = {0, 0};
	int ret;

	if (!ep->manual || ep->connected || ep->closing)
		return -EINVAL;
	rcqp_path(&ep->local, peer, &ep->path);
	ret = rcqp_rtr(ep->qp, &ep->path, peer->qpn, peer->psn);
	if (ret == 0)
		ret = rcqp_rts(ep->qp, &ep->path, ep->local.addr.psn);
	if (ret < 0)
		return ret;
	ep->connected = true;
	log_debug("%s: QP %u in RTS towards peer QP %u (path MTU %d)", ep->name, ep->qp->qp_num,
		  peer->qpn, 128 << ep->path.mtu);
	/* From the loop, as rdma_cm's ESTABLISHED: the caller may still be setting up. */
	event_add(ep->est_ev, &now);
	return 0;
}
