/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tcpconn: message connections over TCP, driven by one libevent loop; the
 * TCP counterpart of rdma.h with the same callback shape.
 *
 * Framing: each message is a u32 big-endian length followed by that many
 * bytes, 1..params.max_frame.  A frame length of 0 or above the maximum is
 * refused before anything is allocated for it: the connection reports
 * closed(-EMSGSIZE) or closed(-EBADMSG).  Each received frame is delivered whole to
 * recv(), in order.
 *
 * Untrusted peers: with params.preauth_max_frame set, frames received are
 * limited to it (and the input buffer to one such frame) until the owner
 * calls tcpconn_set_trusted(), once the peer has proven who it is; a peer
 * that has proven nothing cannot make the agent hold megabytes.
 *
 * Backpressure: tcpconn_send() queues in user space; only a frame of at
 * most TCPCONN_DIRECT_MAX bytes, framing included, sent when nothing is
 * queued on a plain (not TLS) connection goes to the socket at once, which
 * spares the fault path a loop pass and two epoll_ctl per message.  Above
 * params.send_high_water tcpconn_send_blocked() turns true and the optional
 * writable() callback fires once the queue has drained to half of it;
 * above params.send_max tcpconn_send() refuses with -ENOBUFS.  Senders of
 * bulk data (image chunks, ReadResp) stop when blocked and resume in
 * writable().
 *
 * Lifetime: as with rdma_ep, the owner calls tcpconn_close() exactly once,
 * from anywhere including its own callbacks.  No callback runs after it.
 * Queued output is still flushed, then the socket is shut down and the
 * memory released from the loop, bounded by params.linger_ms.  closed()
 * says the connection is gone (peer close: -ECONNRESET; error: -errno;
 * connect timeout: -ETIMEDOUT; bad frame: -EMSGSIZE/-EBADMSG); the owner
 * must still call tcpconn_close().
 *
 * TLS: with params.tls (an SSL_CTX from tls_ctx_new(), borrowed: it must
 * outlive every connection made with it) the frames travel inside TLS
 * (bufferevent_openssl).  established() then follows the handshake: a
 * connecting side has checked the server's certificate against the host it
 * was asked to reach (tls_client_expect_host()); an accepting side has the
 * client's certificate, verified by the context, and admits it only when it
 * names one of params.tls_allow (tls_peer_allowed()); a refused or failed
 * handshake is closed(-EACCES or -EPROTO) and nothing was received.
 *
 * Host names are resolved with getaddrinfo(), which may block; pass
 * numeric addresses from event callbacks.
 */
#ifndef RDMIG_TCPCONN_H
#define RDMIG_TCPCONN_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ssl_ctx_st;

/* Largest frame, with its 4-byte header, sent without queuing (above). */
#define TCPCONN_DIRECT_MAX (16u << 10)

/* Largest max_frame accepted. */
#define TCPCONN_FRAME_LIMIT (16u << 20)

struct tcpconn;
struct tcpconn_listener;

struct tcpconn_ops {
	void (*established)(struct tcpconn *c, void *arg);
	/* buf is valid only during the call. */
	void (*recv)(struct tcpconn *c, const void *buf, size_t len, void *arg);
	/* reason is a negative errno. */
	void (*closed)(struct tcpconn *c, int reason, void *arg);
	/* Optional: the send queue drained below half the high water mark. */
	void (*writable)(struct tcpconn *c, void *arg);
};

struct tcpconn_params {
	uint32_t max_frame;	     /* largest frame payload, both ways (default 64 KiB) */
	uint32_t preauth_max_frame;  /* largest received before trusted; 0: max_frame (default) */
	uint32_t connect_timeout_ms; /* default 5000 */
	uint32_t linger_ms;	     /* flush and drain after close (default 2000) */
	uint32_t frames_per_wakeup;  /* frames delivered per read event (default 64) */
	size_t send_high_water;	     /* default 4 MiB */
	size_t send_max;	     /* default 64 MiB */
	struct ssl_ctx_st *tls;	     /* borrowed; NULL: plain TCP (default) */
	/* Accepting side with tls: the certificate names admitted; borrowed. */
	const char *const *tls_allow;
	size_t tls_nallow;
};

/* Fills p with the defaults. */
void tcpconn_params_init(struct tcpconn_params *p);

/*
 * Accepting side.  For each connection accept_cb sets the ops with
 * tcpconn_set_ops() and returns 0, or returns a negative errno to drop it.
 * established() follows right after a 0.  The caller owns accepted
 * connections.
 */
typedef int (*tcpconn_accept_cb)(struct tcpconn_listener *l, struct tcpconn *c, void *arg);

/* host NULL listens on every address; port "0" picks a free port. params may be NULL. */
int tcpconn_listen(struct event_base *base, const char *host, const char *port,
		   const struct tcpconn_params *params, tcpconn_accept_cb accept_cb, void *arg,
		   struct tcpconn_listener **out);
int tcpconn_listener_port(const struct tcpconn_listener *l);
/* Stops accepting; accepted connections are not affected. */
void tcpconn_listener_destroy(struct tcpconn_listener *l);

/*
 * Connecting side: tries each resolved address in turn; established() or
 * closed() follows from the loop.  params may be NULL.  Caller owns *out.
 */
int tcpconn_connect(struct event_base *base, const char *host, const char *port,
		    const struct tcpconn_params *params, const struct tcpconn_ops *ops, void *arg,
		    struct tcpconn **out);

void tcpconn_set_ops(struct tcpconn *c, const struct tcpconn_ops *ops, void *arg);

/*
 * The peer has authenticated: frames up to params.max_frame from now on.
 * Safe from the recv() callback: the next frame is checked against the new
 * limit.
 */
void tcpconn_set_trusted(struct tcpconn *c);

/*
 * Queues one frame (buf is copied).  -ENOTCONN before established or after
 * closed, -EMSGSIZE for 0 or more than max_frame bytes, -ENOBUFS when the
 * queue would pass send_max.
 */
int tcpconn_send(struct tcpconn *c, const void *buf, size_t len);

/* Bytes queued and not yet handed to the kernel. */
size_t tcpconn_pending_bytes(const struct tcpconn *c);
/* True from passing send_high_water until writable() fires. */
bool tcpconn_send_blocked(const struct tcpconn *c);

/* Whether c carries TLS (params.tls). */
bool tcpconn_is_tls(const struct tcpconn *c);

/* The connection's own address (getsockname), once established. */
int tcpconn_local_addr(const struct tcpconn *c, struct sockaddr_storage *out);

/* "192.0.2.1:7471" for log messages. */
const char *tcpconn_name(const struct tcpconn *c);

void tcpconn_close(struct tcpconn *c);

#endif
