// SPDX-License-Identifier: GPL-2.0-or-later
#include "tcpconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "tls.h"

#define FRAME_HDR 4u

/* After EMFILE/ENFILE the listener pauses this long instead of spinning. */
#define ACCEPT_BACKOFF_MS 1000
/* listen(2)'s backlog of every TCP listener. */
#define TCPCONN_BACKLOG 512

struct tcpconn {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *timer; /* connect timeout, then linger limit */
	struct addrinfo *ai_list;
	struct addrinfo *ai_next;
	struct tcpconn_params params;
	const struct tcpconn_ops *ops;
	void *arg;
	bool connected;
	bool closing;
	bool closed_reported;
	bool shut_wr;
	bool free_scheduled;
	bool over_high;
	bool trusted;	 /* tcpconn_set_trusted() called */
	bool accepted;	 /* from a listener: the TLS server side */
	char target[96]; /* host:port asked for, for connect errors */
	char host[96];	 /* the host asked for: the name the server's certificate must give */
	char name[96];
};

struct tcpconn_listener {
	struct event_base *base;
	struct evconnlistener *lev;
	struct event *backoff;
	struct tcpconn_params params;
	tcpconn_accept_cb accept_cb;
	void *arg;
	char name[96];
};

void tcpconn_params_init(struct tcpconn_params *p)
{
	p->max_frame = 64 * 1024;
	p->preauth_max_frame = 0;
	p->connect_timeout_ms = 5000;
	p->linger_ms = 2000;
	p->frames_per_wakeup = 64;
	p->send_high_water = 4u << 20;
	p->send_max = 64u << 20;
}

static int params_check(const struct tcpconn_params *in, struct tcpconn_params *out)
{
	if (!in) {
		tcpconn_params_init(out);
		return 0;
	}
	if (in->max_frame == 0 || in->max_frame > TCPCONN_FRAME_LIMIT ||
	    in->preauth_max_frame > in->max_frame || !in->frames_per_wakeup ||
	    in->send_high_water == 0 || in->send_max < in->send_high_water ||
	    (in->tls_nallow && !in->tls_allow)) {
		log_err("invalid tcp connection parameters: max_frame %u (1..%u), send_high_water "
			"%zu, send_max %zu",
			in->max_frame, TCPCONN_FRAME_LIMIT, in->send_high_water, in->send_max);
		return -EINVAL;
	}
	*out = *in;
	return 0;
}

static void sockaddr_fmt(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "address family %d", sa->sa_family);
	}
}

bool tcpconn_is_tls(const struct tcpconn *c)
{
	return c->params.tls != NULL;
}

int tcpconn_local_addr(const struct tcpconn *c, struct sockaddr_storage *out)
{
	socklen_t len = sizeof(*out);
	evutil_socket_t fd = c->bev ? bufferevent_getfd(c->bev) : -1;

	if (fd < 0 || !c->connected)
		return -ENOTCONN;
	if (getsockname(fd, (struct sockaddr *)out, &len) < 0) {
		log_err("getsockname on %s: %s", c->name, strerror(errno));
		return -errno;
	}
	return 0;
}

const char *tcpconn_name(const struct tcpconn *c)
{
	return c->name;
}

size_t tcpconn_pending_bytes(const struct tcpconn *c)
{
	return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

bool tcpconn_send_blocked(const struct tcpconn *c)
{
	return c->over_high;
}

void tcpconn_set_ops(struct tcpconn *c, const struct tcpconn_ops *ops, void *arg)
{
	c->ops = ops;
	c->arg = arg;
}

/* The largest frame accepted from the peer now. */
static uint32_t conn_rx_max(const struct tcpconn *c)
{
	return c->trusted || !c->params.preauth_max_frame ? c->params.max_frame
							  : c->params.preauth_max_frame;
}

void tcpconn_set_trusted(struct tcpconn *c)
{
	c->trusted = true;
	if (c->bev && !c->closing)
		bufferevent_setwatermark(c->bev, EV_READ, 0, FRAME_HDR + (size_t)conn_rx_max(c));
}

static struct tcpconn *conn_alloc(struct event_base *base, const struct tcpconn_params *params)
{
	struct tcpconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base = base;
	c->params = *params;
	return c;
}

static void conn_free_bev(struct tcpconn *c)
{
	if (!c->bev)
		return;
	/* Deferred callbacks still queued for this bufferevent must find nothing to call. */
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	bufferevent_free(c->bev);
	c->bev = NULL;
}

static void conn_free(struct tcpconn *c)
{
	conn_free_bev(c);
	if (c->timer)
		event_free(c->timer);
	if (c->ai_list)
		freeaddrinfo(c->ai_list);
	free(c);
}

static void conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_free(arg);
}

/* Releases c from the loop, so that no caller up the stack touches freed memory. */
static void conn_schedule_free(struct tcpconn *c)
{
	static const struct timeval zero = {0, 0};

	if (c->free_scheduled)
		return;
	c->free_scheduled = true;
	if (c->timer)
		event_del(c->timer);
	if (c->bev)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (event_base_once(c->base, -1, EV_TIMEOUT, conn_free_cb, c, &zero) < 0) {
		log_err("cannot schedule the release of connection %s; releasing now", c->name);
		conn_free(c);
	}
}

/* Reports the end of the connection once; the owner still has to close. */
static void conn_report_closed(struct tcpconn *c, int reason)
{
	if (c->closed_reported || c->closing)
		return;
	c->closed_reported = true;
	c->connected = false;
	if (c->timer)
		event_del(c->timer);
	if (c->bev)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->ops && c->ops->closed)
		c->ops->closed(c, reason, c->arg);
}

static void conn_set_nodelay(struct tcpconn *c)
{
	int one = 1;
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	/* Control messages are small and latency-bound: never wait for Nagle. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("TCP_NODELAY on %s: %s", c->name, strerror(errno));
}

static void conn_update_name(struct tcpconn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(bufferevent_getfd(c->bev), (struct sockaddr *)&ss, &len) == 0)
		sockaddr_fmt((struct sockaddr *)&ss, c->name, sizeof(c->name));
}

/* ---- receiving ---------------------------------------------------------- */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct tcpconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint32_t budget = c->params.frames_per_wakeup;
	uint8_t hdr[FRAME_HDR];
	uint8_t *p;
	uint32_t len, max;

	while (!c->closing && !c->closed_reported && evbuffer_get_length(in) >= FRAME_HDR) {
		evbuffer_copyout(in, hdr, FRAME_HDR);
		len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 |
		      hdr[3];
		max = conn_rx_max(c);
		if (len == 0 || len > max) {
			log_err("frame of %u bytes from %s: %s (maximum %u%s); closing", len,
				c->name, len ? "too large" : "empty", max,
				max < c->params.max_frame ? " before authentication" : "");
			conn_report_closed(c, len ? -EMSGSIZE : -EBADMSG);
			return;
		}
		if (evbuffer_get_length(in) < FRAME_HDR + (size_t)len)
			break;
		if (budget-- == 0) {
			/* Let other events run; come back for the frames already here. */
			bufferevent_trigger(bev, EV_READ,
					    BEV_TRIG_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
			return;
		}
		p = evbuffer_pullup(in, FRAME_HDR + (ssize_t)len);
		if (!p) {
			log_err("no memory for a frame of %u bytes from %s", len, c->name);
			conn_report_closed(c, -ENOMEM);
			return;
		}
		if (c->ops && c->ops->recv)
			c->ops->recv(c, p + FRAME_HDR, len, c->arg);
		/* recv() may have closed c: its memory lives on until the loop frees it. */
		evbuffer_drain(in, FRAME_HDR + (size_t)len);
	}
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct tcpconn *c = arg;

	if (c->closing || c->closed_reported || !c->over_high)
		return;
	if (evbuffer_get_length(bufferevent_get_output(bev)) > c->params.send_high_water / 2)
		return;
	c->over_high = false;
	if (c->ops && c->ops->writable)
		c->ops->writable(c, c->arg);
}

static int sock_errno(void)
{
	int err = EVUTIL_SOCKET_ERROR();

	return err ? err : EIO;
}

static int conn_try_next(struct tcpconn *c);

/*
 * Why TLS failed on c, into buf: the certificate check, else OpenSSL's
 * first reason (libevent also queues errnos: skipped).  0 when TLS gave no
 * reason (a socket error or EOF), else -EACCES (certificate) or -EPROTO.
 */
static int conn_tls_why(struct tcpconn *c, char *buf, size_t len)
{
	SSL *ssl = c->params.tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
	unsigned long e, first = 0;
	long v;

	if (!ssl)
		return 0;
	while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
		if (!first && ERR_GET_LIB(e) != 0)
			first = e;
	v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK && !SSL_is_init_finished(ssl)) {
		snprintf(buf, len, "TLS: %s certificate is refused: %s",
			 c->accepted ? "the client's" : "its", X509_verify_cert_error_string(v));
		return -EACCES;
	}
	if (!first)
		return 0;
	snprintf(buf, len, "TLS: ");
	ERR_error_string_n(first, buf + strlen(buf), len - strlen(buf));
	return -EPROTO;
}

/*
 * The handshake is over (TLS), or the TCP connect is: admits the peer.  An
 * accepted TLS client must name an allowed peer; nothing it sent is read.
 */
static void conn_established(struct tcpconn *c)
{
	char name[TLS_NAME_MAX];
	SSL *ssl;

	if (c->timer)
		event_del(c->timer);
	if (!c->accepted) {
		conn_update_name(c);
		conn_set_nodelay(c);
		freeaddrinfo(c->ai_list);
		c->ai_list = c->ai_next = NULL;
	}
	if (c->accepted && c->params.tls) {
		ssl = bufferevent_openssl_get_ssl(c->bev);
		if (!tls_peer_allowed(ssl, c->params.tls_allow, c->params.tls_nallow)) {
			log_warn("tls: refused a connection from %s: certificate \"%s\" is not "
				 "allowed",
				 c->name, tls_peer_name(ssl, name, sizeof(name)));
			conn_report_closed(c, -EACCES);
			return;
		}
		log_info("tls: connection from %s, certificate \"%s\"", c->name,
			 tls_peer_name(ssl, name, sizeof(name)));
	}
	c->connected = true;
	log_debug("%s connection %s established", c->params.tls ? "tls" : "tcp", c->name);
	bufferevent_enable(c->bev, EV_READ);
	if (c->ops && c->ops->established)
		c->ops->established(c, c->arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct tcpconn *c = arg;
	char why[256];
	int err;

	if (c->closing || c->closed_reported)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		conn_established(c);
		return;
	}
	err = conn_tls_why(c, why, sizeof(why));
	if (err < 0) {
		/* Another address would present the same certificate: no retry. */
		log_err("%s %s: %s", c->connected ? "connection" : "handshake with", c->name, why);
		conn_report_closed(c, err);
		return;
	}
	if (!c->connected && c->accepted) {
		log_info("client %s closed before the TLS handshake was over", c->name);
		conn_report_closed(c, -ECONNRESET);
		return;
	}
	if (!c->connected) {
		err = sock_errno();
		log_warn("connect to %s (%s): %s", c->target, c->name, strerror(err));
		conn_free_bev(c);
		if (c->ai_next)
			err = -conn_try_next(c);
		else
			log_err("cannot connect to %s: %s", c->target, strerror(err));
		if (err)
			conn_report_closed(c, -err);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		size_t left = evbuffer_get_length(bufferevent_get_input(bev));

		if (left)
			log_warn("peer %s closed the connection in the middle of a frame "
				 "(%zu bytes unread)",
				 c->name, left);
		else
			log_info("peer %s closed the connection", c->name);
		conn_report_closed(c, -ECONNRESET);
		return;
	}
	err = sock_errno();
	log_err("tcp connection %s: %s", c->name, strerror(err));
	conn_report_closed(c, -err);
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcpconn *c = arg;

	if (c->closing) {
		log_debug("connection %s: linger time over, releasing", c->name);
		conn_schedule_free(c);
		return;
	}
	if (c->connected || c->closed_reported)
		return;
	log_err("cannot connect to %s: no answer within %u ms", c->target,
		c->params.connect_timeout_ms);
	conn_free_bev(c);
	conn_report_closed(c, -ETIMEDOUT);
}

static int conn_setup_bev(struct tcpconn *c, evutil_socket_t fd)
{
	/* Deferred callbacks: none of ours ever runs inside a tcpconn_*() call. */
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	SSL *ssl;

	if (!c->params.tls) {
		c->bev = bufferevent_socket_new(c->base, fd, opts);
		if (!c->bev)
			return -ENOMEM;
	} else {
		ssl = SSL_new(c->params.tls);
		if (!ssl)
			return -ENOMEM;
		if (!c->accepted && tls_client_expect_host(ssl, c->host) < 0) {
			log_err("tls: cannot expect the name %s of %s", c->host, c->target);
			SSL_free(ssl);
			return -EINVAL;
		}
		c->bev = bufferevent_openssl_socket_new(
		    c->base, fd, ssl,
		    c->accepted ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING, opts);
		if (!c->bev) {
			SSL_free(ssl);
			return -ENOMEM;
		}
		/* The framing and the MAC'd protocol tell a cut stream; TLS need not. */
		bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	}
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	/* One whole frame is the most the input buffer ever needs to hold. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, FRAME_HDR + (size_t)conn_rx_max(c));
	bufferevent_setwatermark(c->bev, EV_WRITE, c->params.send_high_water / 2, 0);
	return 0;
}

/* Starts a connect to the next address: 0 when one is under way. */
static int conn_try_next(struct tcpconn *c)
{
	struct addrinfo *ai;
	int err = EHOSTUNREACH;

	while ((ai = c->ai_next)) {
		c->ai_next = ai->ai_next;
		sockaddr_fmt(ai->ai_addr, c->name, sizeof(c->name));
		err = conn_setup_bev(c, -1);
		if (err < 0) {
			err = -err;
			break;
		}
		if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0)
			return 0;
		err = sock_errno();
		log_warn("connect to %s (%s): %s", c->target, c->name, strerror(err));
		conn_free_bev(c);
	}
	log_err("cannot connect to %s: %s", c->target, strerror(err));
	return -err;
}

int tcpconn_connect(struct event_base *base, const char *host, const char *port,
		    const struct tcpconn_params *params, const struct tcpconn_ops *ops, void *arg,
		    struct tcpconn **out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct tcpconn_params p;
	struct timeval tv;
	struct tcpconn *c;
	int ret;

	ret = params_check(params, &p);
	if (ret < 0)
		return ret;
	c = conn_alloc(base, &p);
	if (!c)
		return -ENOMEM;
	c->ops = ops;
	c->arg = arg;
	snprintf(c->target, sizeof(c->target), "%s:%s", host, port);
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->name, sizeof(c->name), "%s", c->target);
	ret = getaddrinfo(host, port, &hints, &c->ai_list);
	if (ret) {
		log_err("cannot resolve %s: %s", c->target, gai_strerror(ret));
		c->ai_list = NULL;
		ret = ret == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
		goto out;
	}
	c->ai_next = c->ai_list;
	c->timer = evtimer_new(base, conn_timeout_cb, c);
	if (!c->timer) {
		ret = -ENOMEM;
		goto out;
	}
	tv.tv_sec = p.connect_timeout_ms / 1000;
	tv.tv_usec = (p.connect_timeout_ms % 1000) * 1000;
	if (evtimer_add(c->timer, &tv) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	ret = conn_try_next(c);
	if (ret < 0)
		goto out;
	/* Failures from here on come back through closed(). */
	*out = c;
	return 0;
out:
	conn_free(c);
	return ret;
}

/*
 * Nothing queued on a plain socket, and a small frame (up to
 * TCPCONN_DIRECT_MAX: a ReadReq, a page's ReadResp): it goes straight out
 * with one sendmsg.  Queuing it would arm the write event and disarm it once
 * written (two epoll_ctl) and cost a loop pass before it leaves, on every
 * fault's ReadReq.  Returns how many bytes the socket took (0 if none, or
 * on an error, which the bufferevent then meets when it writes the rest).
 */
static size_t send_direct(struct tcpconn *c, const uint8_t *hdr, const void *buf, size_t len)
{
	struct iovec iov[2] = {{(void *)hdr, FRAME_HDR}, {(void *)buf, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t n;

	if (tcpconn_is_tls(c) || FRAME_HDR + len > TCPCONN_DIRECT_MAX)
		return 0;
	do
		n = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n > 0 ? (size_t)n : 0;
}

int tcpconn_send(struct tcpconn *c, const void *buf, size_t len)
{
	struct evbuffer *outbuf;
	struct evbuffer_iovec v;
	uint8_t hdr[FRAME_HDR];
	size_t pending, sent = 0, rest;
	uint8_t *p;

	if (c->closing || c->closed_reported || !c->connected)
		return -ENOTCONN;
	if (len == 0 || len > c->params.max_frame) {
		log_err("refusing to send a frame of %zu bytes to %s (maximum %u)", len, c->name,
			c->params.max_frame);
		return -EMSGSIZE;
	}
	outbuf = bufferevent_get_output(c->bev);
	pending = evbuffer_get_length(outbuf);
	if (pending + FRAME_HDR + len > c->params.send_max) {
		log_warn("send queue to %s is full (%zu bytes pending)", c->name, pending);
		return -ENOBUFS;
	}
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	if (pending == 0)
		sent = send_direct(c, hdr, buf, len);
	rest = FRAME_HDR + len - sent;
	if (rest == 0)
		return 0;
	/* One reservation for what is left: a frame is queued whole or not at all. */
	if (evbuffer_reserve_space(outbuf, (ssize_t)rest, &v, 1) != 1 || v.iov_len < rest) {
		/*
		 * Part of it is on the wire: the stream cannot go on without the
		 * rest.  The loop reports the connection's end, not this call.
		 */
		if (sent)
			shutdown(bufferevent_getfd(c->bev), SHUT_RDWR);
		return -ENOMEM;
	}
	p = v.iov_base;
	if (sent < FRAME_HDR) {
		memcpy(p, hdr + sent, FRAME_HDR - sent);
		memcpy(p + FRAME_HDR - sent, buf, len);
	} else {
		memcpy(p, (const uint8_t *)buf + (sent - FRAME_HDR), rest);
	}
	v.iov_len = rest;
	if (evbuffer_commit_space(outbuf, &v, 1) < 0)
		return -ENOMEM;
	if (pending + rest > c->params.send_high_water)
		c->over_high = true;
	return 0;
}

/* ---- closing ---------------------------------------------------------- */

static void linger_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	/* Unread input at close() would turn our FIN into a RST and lose the output. */
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void linger_shut_wr(struct tcpconn *c)
{
	if (c->shut_wr)
		return;
	c->shut_wr = true;
	if (shutdown(bufferevent_getfd(c->bev), SHUT_WR) < 0 && errno != ENOTCONN)
		log_debug("shutdown of %s: %s", c->name, strerror(errno));
}

static void linger_write_cb(struct bufferevent *bev, void *arg)
{
	struct tcpconn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		linger_shut_wr(c);
}

static void linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
	/* EOF or error: the peer has seen everything it is going to see. */
	conn_schedule_free(arg);
}

void tcpconn_close(struct tcpconn *c)
{
	struct timeval tv;

	if (!c || c->closing)
		return;
	c->closing = true;
	if (!c->bev || !c->connected || c->closed_reported) {
		conn_schedule_free(c);
		return;
	}
	c->connected = false;
	/* Flush what is queued (an Abort, say), then wait for the peer's FIN. */
	bufferevent_setcb(c->bev, linger_read_cb, linger_write_cb, linger_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		linger_shut_wr(c);
	tv.tv_sec = c->params.linger_ms / 1000;
	tv.tv_usec = (c->params.linger_ms % 1000) * 1000;
	if (!c->timer)
		c->timer = evtimer_new(c->base, conn_timeout_cb, c);
	if (!c->timer || evtimer_add(c->timer, &tv) < 0)
		conn_schedule_free(c);
}

/* ---- listening ------------------------------------------------------- */

static void listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
			       int socklen, void *arg)
{
	struct tcpconn_listener *l = arg;
	struct tcpconn *c;
	int ret;

	c = conn_alloc(l->base, &l->params);
	if (!c) {
		log_err("no memory for a connection on %s", l->name);
		evutil_closesocket(fd);
		return;
	}
	sockaddr_fmt(sa, c->name, sizeof(c->name));
	snprintf(c->target, sizeof(c->target), "%s", c->name);
	c->accepted = true;
	ret = conn_setup_bev(c, fd);
	if (ret < 0) {
		log_err("no memory for connection %s on %s", c->name, l->name);
		evutil_closesocket(fd);
		conn_free(c);
		return;
	}
	/* Over TLS the connection is established once the handshake admits the client. */
	c->connected = !c->params.tls;
	conn_set_nodelay(c);
	ret = l->accept_cb(l, c, l->arg);
	if (ret < 0) {
		/* The callback says why (and how often): a flood of these must not flood the log.
		 */
		log_debug("refused connection from %s on %s: %s", c->name, l->name, strerror(-ret));
		conn_free(c);
		return;
	}
	log_debug("accepted tcp connection from %s on %s", c->name, l->name);
	bufferevent_enable(c->bev, EV_READ);
	if (c->params.tls)
		return;
	if (c->ops && c->ops->established)
		c->ops->established(c, c->arg);
}

static void listener_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcpconn_listener *l = arg;

	evconnlistener_enable(l->lev);
}

static void listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct tcpconn_listener *l = arg;
	struct timeval tv = {ACCEPT_BACKOFF_MS / 1000, (ACCEPT_BACKOFF_MS % 1000) * 1000};
	int err = EVUTIL_SOCKET_ERROR();

	log_err("accept on %s: %s; pausing for %d ms", l->name, strerror(err), ACCEPT_BACKOFF_MS);
	evconnlistener_disable(lev);
	evtimer_add(l->backoff, &tv);
}

int tcpconn_listen(struct event_base *base, const char *host, const char *port,
		   const struct tcpconn_params *params, tcpconn_accept_cb accept_cb, void *arg,
		   struct tcpconn_listener **out)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res = NULL;
	struct tcpconn_listener *l;
	int ret;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	ret = params_check(params, &l->params);
	if (ret < 0)
		goto out;
	l->base = base;
	l->accept_cb = accept_cb;
	l->arg = arg;
	snprintf(l->name, sizeof(l->name), "%s:%s", host ? host : "*", port);
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret) {
		log_err("cannot resolve listen address %s: %s", l->name, gai_strerror(ret));
		res = NULL;
		ret = ret == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
		goto out;
	}
	l->backoff = evtimer_new(base, listener_backoff_cb, l);
	if (!l->backoff) {
		ret = -ENOMEM;
		goto out;
	}
	/*
	 * A backlog that outlasts a burst: connections the kernel queues are
	 * the agent's to admit or refuse (and count), where a short queue had
	 * the kernel drop or reset them unseen, a real peer's among them.
	 */
	l->lev = evconnlistener_new_bind(base, listener_accept_cb, l,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
					     LEV_OPT_REUSEABLE,
					 TCPCONN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
	if (!l->lev) {
		ret = -sock_errno();
		log_err("cannot listen on %s: %s", l->name, strerror(-ret));
		goto out;
	}
	evconnlistener_set_error_cb(l->lev, listener_error_cb);
	log_debug("listening for tcp connections on %s", l->name);
	*out = l;
	ret = 0;
out:
	if (res)
		freeaddrinfo(res);
	if (ret < 0)
		tcpconn_listener_destroy(l);
	return ret;
}

int tcpconn_listener_port(const struct tcpconn_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

void tcpconn_listener_destroy(struct tcpconn_listener *l)
{
	if (!l)
		return;
	if (l->lev)
		evconnlistener_free(l->lev);
	if (l->backoff)
		event_free(l->backoff);
	free(l);
}
