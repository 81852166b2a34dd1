/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xport: one message connection between the agents, over RDMA or TCP.
 *
 * The agents speak the same control protocol over both transports; this
 * module hides which one carries it.  Over RDMA a message is one SEND and
 * page data moves by one-sided READ (xport_read); over TCP messages are
 * length-framed on a stream and page data comes in ReadResp messages, so
 * xport_read is not available there.
 *
 * Lifetime follows rdma.h and tcpconn.h: the owner calls xport_close()
 * exactly once, from anywhere, including its own callbacks; no callback
 * runs afterwards.  closed() reports the end of the connection; the owner
 * must still close.  A listener hands each accepted connection to
 * accept_cb, which sets its ops with xport_set_ops() and owns it from then.
 */
#ifndef RDMIG_XPORT_H
#define RDMIG_XPORT_H

#include <event2/event.h>
#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rdma.h"

struct ssl_ctx_st;

enum xport_kind {
	XPORT_RDMA,
	XPORT_TCP,
};

struct xport;
struct xport_listener;

struct xport_ops {
	void (*established)(struct xport *x, void *arg);
	/* buf is valid only during the call. */
	void (*recv)(struct xport *x, const void *buf, size_t len, void *arg);
	/* RDMA only: a READ posted with xport_read() finished (0 or -errno). */
	void (*read_done)(struct xport *x, uint64_t cookie, int status, void *arg);
	/* reason is a negative errno. */
	void (*closed)(struct xport *x, int reason, void *arg);
};

/*
 * Until the owner calls xport_set_trusted() (the peer proved the secret), a
 * connection made with params.untrusted receives messages of at most
 * XPORT_PREAUTH_MAX_MSG bytes over TCP, and has XPORT_PREAUTH_DEPTH
 * registered buffers each way over RDMA (~256 KiB instead of ~4 MiB).
 */
#define XPORT_PREAUTH_MAX_MSG (64u << 10)
#define XPORT_PREAUTH_DEPTH   2

struct xport_params {
	uint32_t max_msg;   /* largest message either way */
	uint32_t max_reads; /* RDMA: READs outstanding */
	uint32_t timeout_ms;
	bool untrusted; /* small limits until xport_set_trusted() (default true) */
	/* TCP inside mutual TLS (tcpconn.h, "TLS"): the context and, listening,
	 * the certificate names admitted; borrowed.  NULL: plain TCP. */
	struct ssl_ctx_st *tls;
	const char *const *tls_allow;
	size_t tls_nallow;
	/* RDMA, connecting: rdma_ep_params.conn_data (at most RDMA_CONN_DATA_MAX bytes). */
	uint8_t conn_data[RDMA_CONN_DATA_MAX];
	uint8_t conn_data_len;
};

typedef int (*xport_accept_cb)(struct xport_listener *l, struct xport *x, void *arg);

/* "rdma" or "tcp" into *kind; -EINVAL otherwise. */
int xport_kind_parse(const char *s, enum xport_kind *kind);
const char *xport_kind_str(enum xport_kind kind);

/*
 * The agents' --transport names: "rdma", "tcp", or "tls" (TCP inside mutual
 * TLS: XPORT_TCP with *tls true); -EINVAL otherwise.
 */
int xport_transport_parse(const char *s, enum xport_kind *kind, bool *tls);
const char *xport_transport_str(enum xport_kind kind, bool tls);

void xport_params_init(struct xport_params *p);

int xport_listen(struct event_base *base, enum xport_kind kind, const char *host, const char *port,
		 const struct xport_params *p, xport_accept_cb cb, void *arg,
		 struct xport_listener **out);
int xport_listener_port(const struct xport_listener *l);
/* RDMA only (NULL otherwise): rdma_listener_verbs() / rdma_listener_set_pd_cb(). */
struct ibv_context *xport_listener_verbs(const struct xport_listener *l);
void xport_listener_set_pd_cb(struct xport_listener *l, rdma_pd_cb cb, void *arg);
void xport_listener_destroy(struct xport_listener *l);

int xport_connect(struct event_base *base, enum xport_kind kind, const char *host, const char *port,
		  const struct xport_params *p, const struct xport_ops *ops, void *arg,
		  struct xport **out);
void xport_set_ops(struct xport *x, const struct xport_ops *ops, void *arg);

/*
 * The peer has authenticated: lifts the pre-authentication limits (see
 * XPORT_PREAUTH_MAX_MSG).  Safe from the recv() callback; the next
 * message may use the full size.  Returns 0 or a negative errno.
 */
int xport_set_trusted(struct xport *x);

enum xport_kind xport_kind(const struct xport *x);
int xport_send(struct xport *x, const void *buf, size_t len);
/* Bytes queued in software, not yet handed to the network. */
size_t xport_pending(const struct xport *x);
const char *xport_name(const struct xport *x);

/* RDMA only (-EOPNOTSUPP otherwise): see rdma_ep_reg() / rdma_ep_read(). */
int xport_reg(struct xport *x, void *addr, size_t len, int access, struct ibv_mr **out);
/* RDMA only (NULL otherwise): the connection's protection domain (rdma_ep_pd()). */
struct ibv_pd *xport_pd(struct xport *x);
/* RDMA only (NULL otherwise): rdma_ep_shared_pd(). */
struct rdma_pd *xport_shared_pd(const struct xport *x);
int xport_read(struct xport *x, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
	       uint32_t len, uint64_t cookie);
uint32_t xport_read_slots(const struct xport *x);
/* RDMA only: the fault lane (rdma_ep_lane_create() and what follows it in rdma.h). */
int xport_lane_create(struct xport *x, uint32_t depth, uint32_t *qpn, uint32_t *psn);
int xport_lane_connect(struct xport *x, uint32_t peer_qpn, uint32_t peer_psn);
bool xport_lane_up(const struct xport *x);
/* RDMA only: the drain's extra QPs (rdma_ep_drain_create() and what follows it). */
int xport_drain_create(struct xport *x, unsigned int index, uint32_t *qpn, uint32_t *psn);
int xport_drain_connect(struct xport *x, unsigned int index, uint32_t peer_qpn, uint32_t peer_psn);
/* The QPs the drain's READs spread over now: 1 over TCP. */
unsigned int xport_drain_qps(const struct xport *x);
int xport_read_fault(struct xport *x, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		     uint32_t len, uint64_t cookie);

/*
 * RDMA only: runs the callbacks of completions already there, without
 * waiting (rdma_ep_poll()).  Returns how many ran, or a negative errno.
 */
int xport_poll(struct xport *x);
void xport_close(struct xport *x);

/*
 * An RDMA connection without rdma_cm (rdma_ep_manual(), protocol.md §7.4):
 * xport_rc_make() makes its endpoint on the device of side's local address
 * (side: the authenticated TCP side channel) and fills *mine for the peer;
 * xport_rc_connect() connects it to the peer's, and established() follows.
 * The caller sets the ops (xport_set_ops()) and owns *out.
 */
struct rcqp_addr;
int xport_rc_make(struct event_base *base, const struct xport *side, const struct xport_params *p,
		  struct xport **out, struct rcqp_addr *mine);
int xport_rc_connect(struct xport *x, const struct rcqp_addr *peer);

/*
 * At exit: runs the loop (at most max_ms) until the connections already
 * closed are released, their queued output (a DoneAck, an Abort) written
 * and the peer's FIN seen; exiting sooner would lose it or send a RST.
 * Every other event of the base must already be freed.
 */
void xport_drain_closing(struct event_base *base, unsigned int max_ms);

#endif
