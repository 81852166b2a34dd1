/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rdma: reliable-connected RDMA endpoints driven by one libevent loop.
 *
 * An endpoint is one rdma_cm id with its own protection domain, completion
 * channel, completion queue and RC queue pair.  Both its rdma_cm events and
 * its completions are fd events on the caller's event_base, so nothing here
 * blocks and no thread is created.  An endpoint carries:
 *  - messages: each rdma_ep_send() is one SEND, received whole by the peer's
 *    recv callback (length = the SEND length, at most params.max_msg);
 *  - one-sided RDMA READs posted with rdma_ep_read(), up to params.max_reads
 *    outstanding; completions come back through read_done in any order.
 *
 * Errors are logged with the failing call, the errno text and the device and
 * address involved, and returned as negative errno values.
 *
 * Lifetime: the owner of an endpoint calls rdma_ep_close() exactly once, from
 * anywhere including its own callbacks; the memory is released later from
 * the loop, so a callback never runs on freed memory.  After close no
 * callback is invoked.  closed() tells the owner the connection is gone
 * (peer disconnect, transport error); the owner must still call
 * rdma_ep_close().  Memory regions registered in the endpoint's PD must be
 * deregistered by their owner before rdma_ep_close().
 */
#ifndef RDMIG_RDMA_H
#define RDMIG_RDMA_H

#include <event2/event.h>
#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct rdma_ep;
struct rdma_listener;
struct rdma_pd;

/*
 * Bytes of connection data a connecting side can give the accepting side
 * in its connect request (rdma_cm private data of an RC connection over
 * RoCE/IB leaves 56; the rest is reserved).
 */
#define RDMA_CONN_DATA_MAX 52

struct rdma_ep_ops {
	void (*established)(struct rdma_ep *ep, void *arg);
	/* buf is valid only during the call. */
	void (*recv)(struct rdma_ep *ep, const void *buf, size_t len, void *arg);
	/* status is 0, or a negative errno for a failed or flushed READ. */
	void (*read_done)(struct rdma_ep *ep, uint64_t cookie, int status, void *arg);
	/* reason is a negative errno: -ECONNRESET for a peer disconnect. */
	void (*closed)(struct rdma_ep *ep, int reason, void *arg);
};

struct rdma_ep_params {
	uint32_t max_msg;    /* largest message, bytes (default 64 KiB) */
	uint32_t recv_depth; /* receive buffers posted (default 32) */
	uint32_t send_depth; /* send buffers; more sends are queued in software (default 32) */
	/*
	 * Buffers each way until rdma_ep_set_trusted() (0: all from the
	 * start, the default): a peer that has proven nothing gets a few
	 * registered buffers, not the full depth.
	 */
	uint32_t preauth_depth;
	uint32_t max_reads;  /* READs outstanding per endpoint (default 64) */
	uint32_t timeout_ms; /* address/route resolution timeout (default 5000) */
	/*
	 * Connecting side: sent in the connect request, for the listener's
	 * rdma_pd_cb (0 bytes: none, the default).  Not authenticated.
	 */
	uint8_t conn_data[RDMA_CONN_DATA_MAX];
	uint8_t conn_data_len;
};

/* Fills p with defaults. */
void rdma_ep_params_init(struct rdma_ep_params *p);

/*
 * Accepting side.  For each incoming connection a new endpoint is created
 * and accept_cb decides: return 0 after setting the endpoint's ops with
 * rdma_ep_set_ops(), or a negative errno to reject it.  The listener owns
 * nothing of an accepted endpoint; the accept_cb's caller does.
 */
typedef int (*rdma_accept_cb)(struct rdma_listener *l, struct rdma_ep *ep, void *arg);

int rdma_listener_create(struct event_base *base, const char *addr, const char *port,
			 const struct rdma_ep_params *params, rdma_accept_cb accept_cb, void *arg,
			 struct rdma_listener **out);
/*
 * A protection domain shared by an owner and the endpoints accepted into
 * it, so memory can be registered before the peer connects.  Reference
 * counted, on the loop thread only: rdma_pd_open() returns one reference,
 * each endpoint accepted into it holds one until it is freed, and the last
 * rdma_pd_unref() deallocates it (every memory region registered in it must
 * be deregistered by then).  The ibv_pd may be used from any thread while a
 * reference is held.
 */
int rdma_pd_open(struct ibv_context *verbs, struct rdma_pd **out);
struct rdma_pd *rdma_pd_ref(struct rdma_pd *pd);
void rdma_pd_unref(struct rdma_pd *pd);
struct ibv_pd *rdma_pd_ibv(const struct rdma_pd *pd);

/*
 * The RDMA device the listener is bound to (rdma_cm's context, usable for
 * rdma_pd_open()), or, bound to a wildcard address, the only RDMA device
 * there is; NULL when that is not known.
 */
struct ibv_context *rdma_listener_verbs(const struct rdma_listener *l);

/*
 * Chooses the protection domain of a connection being accepted, from the
 * connect request's data (untrusted: at most len bytes, zero-padded by the
 * transport) and the device it came in on.  Returns a PD to share
 * (borrowed: the endpoint takes its own reference) or NULL for a PD of the
 * endpoint's own.  An endpoint in a shared PD has remote access turned off
 * on its queue pairs until rdma_ep_set_trusted(), so a peer that has
 * proven nothing cannot read what the PD's owner registered, even with a
 * guessed rkey.
 */
typedef struct rdma_pd *(*rdma_pd_cb)(struct ibv_context *verbs, const void *data, size_t len,
				      void *arg);
void rdma_listener_set_pd_cb(struct rdma_listener *l, rdma_pd_cb cb, void *arg);

/* The bound port, useful with port "0". */
int rdma_listener_port(const struct rdma_listener *l);
void rdma_listener_destroy(struct rdma_listener *l);

/* Connecting side: established() or closed() follows. */
int rdma_ep_connect(struct event_base *base, const char *addr, const char *port,
		    const struct rdma_ep_params *params, const struct rdma_ep_ops *ops, void *arg,
		    struct rdma_ep **out);

void rdma_ep_set_ops(struct rdma_ep *ep, const struct rdma_ep_ops *ops, void *arg);

/*
 * The peer has authenticated: registers and posts the rest of the
 * buffers (params.preauth_depth), and in a shared PD allows the peer's
 * RDMA READs.  Returns 0 or a negative errno.
 */
int rdma_ep_set_trusted(struct rdma_ep *ep);

/* The shared PD an accepted endpoint is in (rdma_pd_cb), or NULL: its own. */
struct rdma_pd *rdma_ep_shared_pd(const struct rdma_ep *ep);

/* The endpoint's protection domain, valid once the endpoint exists. */
struct ibv_pd *rdma_ep_pd(struct rdma_ep *ep);

/* Registers [addr, addr+len) in the endpoint's PD.  Caller owns *out. */
int rdma_ep_reg(struct rdma_ep *ep, void *addr, size_t len, int access, struct ibv_mr **out);

/* Copies buf into a send buffer and posts it. */
int rdma_ep_send(struct rdma_ep *ep, const void *buf, size_t len);

/*
 * Posts one RDMA READ of len bytes from (raddr, rkey) into local (lkey).
 * Returns -EAGAIN when max_reads are already outstanding.
 */
int rdma_ep_read(struct rdma_ep *ep, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		 uint32_t len, uint64_t cookie);
/*
 * The fault lane: a second RC queue pair in the endpoint's PD, with its own
 * completion queue, so latency-critical READs never queue behind bulk ones
 * on the first QP.  It is connected without rdma_cm: each side creates its
 * lane (rdma_ep_lane_create() returns the QP number and first PSN to give
 * the peer over the authenticated control channel), then connects it to the
 * peer's numbers along the endpoint's own path (rdma_ep_lane_connect()).
 * Only READs cross it (remote access: READ only).  The endpoint owns the
 * lane; it goes to the error state at close, like the first QP.
 *
 * Returns 0 or a negative errno; -ENOTCONN before the endpoint is
 * established.  depth: READs outstanding on the lane.
 */
int rdma_ep_lane_create(struct rdma_ep *ep, uint32_t depth, uint32_t *qpn, uint32_t *psn);
int rdma_ep_lane_connect(struct rdma_ep *ep, uint32_t peer_qpn, uint32_t peer_psn);
bool rdma_ep_lane_up(const struct rdma_ep *ep);
/*
 * rdma_ep_read() on the fault lane once it is up (-EAGAIN when its depth is
 * used up); on the first QP before that.  Completions reach read_done.
 */
/*
 * The drain's extra queue pairs (protocol.md, DrainLane): up to
 * RDMA_DRAIN_QPS_MAX - 1 more RC QPs in the endpoint's PD, on the first
 * QP's completion queue, made and connected like the fault lane (index
 * 1..RDMA_DRAIN_QPS_MAX-1).  Once one is up, rdma_ep_read() puts each READ
 * on the QP with the fewest outstanding (qpick_least()), the first QP
 * included; max_reads still bounds them all.  The endpoint owns them; they
 * go to the error state at close.  0 or a negative errno.
 */
#define RDMA_DRAIN_QPS_MAX 4
int rdma_ep_drain_create(struct rdma_ep *ep, unsigned int index, uint32_t *qpn, uint32_t *psn);
int rdma_ep_drain_connect(struct rdma_ep *ep, unsigned int index, uint32_t peer_qpn,
			  uint32_t peer_psn);
/* The QPs rdma_ep_read() spreads over now: 1 + the extra ones up (0 when closed). */
unsigned int rdma_ep_drain_qps(const struct rdma_ep *ep);
int rdma_ep_read_fault(struct rdma_ep *ep, void *local, uint32_t lkey, uint64_t raddr,
		       uint32_t rkey, uint32_t len, uint64_t cookie);

/* Bytes of messages waiting in software for a free send buffer. */
size_t rdma_ep_pending(const struct rdma_ep *ep);

/*
 * Polls the completion queues once (the fault lane's first, the first QP's
 * only if the lane had nothing), without waiting, and runs the callbacks
 * of what completed.  Returns how many completions ran, or a negative errno
 * (-ENOTCONN once closing).  For callers that spin briefly on a latency-
 * critical READ instead of waiting for the completion channel's wakeup.
 */
int rdma_ep_poll(struct rdma_ep *ep);

/* READs that can still be posted now. */
uint32_t rdma_ep_read_slots(const struct rdma_ep *ep);

/* "192.0.2.1:7471 (rxe0)" for log messages. */
const char *rdma_ep_name(const struct rdma_ep *ep);

/*
 * An endpoint whose queue pair is made and connected by hand, with no
 * rdma_cm connection (rcqp.h, protocol.md §7.4): where rdma_cm's QP1 does
 * not work, an authenticated side channel carries each side's struct
 * rcqp_addr instead.  rdma_ep_manual() makes the endpoint on the RDMA
 * device of the local address local (its PD, CQ, buffers, a QP in INIT
 * with receives posted) and fills *mine for the peer; its ops are set with
 * rdma_ep_set_ops().  rdma_ep_manual_connect() moves the QP to RTR and RTS
 * towards the peer's; established() follows from the loop.  From then on it
 * is an endpoint like any other, the fault lane included, except that a
 * peer's close is not reported: it is noticed by its silence, or a failed
 * SEND or READ.  The caller owns *out (rdma_ep_close()).
 */
struct rcqp_addr;
int rdma_ep_manual(struct event_base *base, const struct sockaddr *local, const char *peer_name,
		   const struct rdma_ep_params *params, struct rdma_ep **out,
		   struct rcqp_addr *mine);
int rdma_ep_manual_connect(struct rdma_ep *ep, const struct rcqp_addr *peer);

void rdma_ep_close(struct rdma_ep *ep);

#endif
