// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * criupsrv: client of CRIU's lazy page server (see criupsrv.h).
 */
#include "criupsrv.h"

#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* CRIU's command numbers and page flags (criu/page-xfer.c, pagemap.h). */
#define PS_IOV_ADD_F 6u
#define PS_IOV_GET   7u
#define PS_IOV_CLOSE 0x1023u
#define PS_CMD_BITS  16
#define PE_PRESENT   4u
#define PS_REPLY_CMD ((PE_PRESENT << PS_CMD_BITS) | PS_IOV_ADD_F)
#define PS_HDR_MAX   32u
#define PS_HDR_317   24u
#define PS_HDR_42    32u

/* One PS_IOV_GET: part of a request, queued, then in flight. */
struct ps_get {
	struct criupsrv_req *req;
	uint64_t vaddr;
	uint64_t nr;
	TAILQ_ENTRY(ps_get) link;
};

TAILQ_HEAD(ps_get_list, ps_get);
TAILQ_HEAD(ps_req_list, criupsrv_req);

struct criupsrv {
	struct event *rev, *wev;
	int fd;
	enum criupsrv_wire wire;
	size_t hdr_len;
	char name[64];
	const struct criupsrv_ops *ops;
	void *arg;

	struct ps_req_list reqs;     /* outstanding requests */
	struct ps_get_list tosend;   /* GETs not written yet, in order */
	struct ps_get_list inflight; /* GETs written, replies due in this order */
	size_t ninflight;

	uint8_t out[(CRIUPSRV_MAX_INFLIGHT + 1) * PS_HDR_MAX];
	size_t out_len, out_off;

	/* Reply being read: its header, then its pages into the request's buffer. */
	uint8_t hdr[PS_HDR_MAX];
	size_t hdr_got;
	uint8_t *data;
	size_t data_left;
	uint64_t data_pages;

	int32_t status; /* PS_IOV_CLOSE's answer */
	size_t status_got;

	bool connecting;
	bool closing;	 /* criupsrv_close() called */
	bool close_sent; /* PS_IOV_CLOSE in the output */
	bool dead;	 /* failed or closed: no more I/O */
};

static void ps_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void ps_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint32_t ps_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t ps_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* CRIU's struct page_server_iov, host byte order, in the session's layout. */
static void ps_encode(const struct criupsrv *ps, uint8_t *p, uint32_t cmd, uint64_t nr,
		      uint64_t vaddr, uint64_t dst_id)
{
	memset(p, 0, ps->hdr_len);
	ps_put32(p, cmd);
	if (ps->wire == CRIUPSRV_WIRE_42) {
		ps_put64(p + 8, nr);
		ps_put64(p + 16, vaddr);
		ps_put64(p + 24, dst_id);
	} else {
		ps_put32(p + 4, (uint32_t)nr);
		ps_put64(p + 8, vaddr);
		ps_put64(p + 16, dst_id);
	}
}

static void ps_decode(const struct criupsrv *ps, const uint8_t *p, uint32_t *cmd, uint64_t *nr,
		      uint64_t *vaddr, uint64_t *dst_id)
{
	*cmd = ps_get32(p);
	if (ps->wire == CRIUPSRV_WIRE_42) {
		*nr = ps_get64(p + 8);
		*vaddr = ps_get64(p + 16);
		*dst_id = ps_get64(p + 24);
	} else {
		*nr = ps_get32(p + 4);
		*vaddr = ps_get64(p + 8);
		*dst_id = ps_get64(p + 16);
	}
}

static void ps_free_gets(struct ps_get_list *l)
{
	struct ps_get *g;

	while ((g = TAILQ_FIRST(l)) != NULL) {
		TAILQ_REMOVE(l, g, link);
		free(g);
	}
}

static void ps_stop_io(struct criupsrv *ps)
{
	ps->dead = true;
	if (ps->rev)
		event_del(ps->rev);
	if (ps->wev)
		event_del(ps->wev);
}

/*
 * Ends the session with err: every outstanding request's done(err), then
 * the owner's failed() (closed() when it was closing), which may free ps.
 */
static void ps_fail(struct criupsrv *ps, int err)
{
	struct criupsrv_req *r;

	if (ps->dead)
		return;
	ps_stop_io(ps);
	ps_free_gets(&ps->tosend);
	ps_free_gets(&ps->inflight);
	ps->ninflight = 0;
	while ((r = TAILQ_FIRST(&ps->reqs)) != NULL) {
		TAILQ_REMOVE(&ps->reqs, r, link);
		r->done(r, err, r->arg);
	}
	if (ps->closing)
		ps->ops->closed(ps, err, ps->arg);
	else
		ps->ops->failed(ps, err, ps->arg);
}

/* Moves queued GETs and the final CLOSE into the output buffer, then writes it. */
static void ps_pump(struct criupsrv *ps)
{
	struct ps_get *g;
	ssize_t n;

	if (ps->dead || ps->connecting)
		return;
	if (ps->out_off == ps->out_len)
		ps->out_off = ps->out_len = 0;
	while (ps->ninflight < CRIUPSRV_MAX_INFLIGHT && (g = TAILQ_FIRST(&ps->tosend)) != NULL &&
	       ps->out_len + ps->hdr_len <= sizeof(ps->out)) {
		ps_encode(ps, ps->out + ps->out_len, PS_IOV_GET, g->nr, g->vaddr, g->req->vpid);
		ps->out_len += ps->hdr_len;
		TAILQ_REMOVE(&ps->tosend, g, link);
		TAILQ_INSERT_TAIL(&ps->inflight, g, link);
		ps->ninflight++;
	}
	if (ps->closing && !ps->close_sent && TAILQ_EMPTY(&ps->reqs) &&
	    ps->out_len + ps->hdr_len <= sizeof(ps->out)) {
		ps_encode(ps, ps->out + ps->out_len, PS_IOV_CLOSE, 0, 0, 0);
		ps->out_len += ps->hdr_len;
		ps->close_sent = true;
	}
	while (ps->out_off < ps->out_len) {
		n = send(ps->fd, ps->out + ps->out_off, ps->out_len - ps->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			log_err("criu page server %s: send: %s", ps->name, strerror(errno));
			ps_fail(ps, -errno);
			return;
		}
		ps->out_off += (size_t)n;
	}
	if (ps->out_off < ps->out_len)
		event_add(ps->wev, NULL);
	else
		event_del(ps->wev);
}

/* Checks the header of the reply to the oldest GET and points the reader at its pages. */
static int ps_take_header(struct criupsrv *ps)
{
	struct ps_get *g = TAILQ_FIRST(&ps->inflight);
	uint64_t nr, vaddr, dst_id;
	uint32_t cmd;

	ps_decode(ps, ps->hdr, &cmd, &nr, &vaddr, &dst_id);
	if (!g) {
		log_err("criu page server %s: a reply (cmd %#x) to no request", ps->name, cmd);
		return -EPROTO;
	}
	if (cmd != PS_REPLY_CMD || vaddr != g->vaddr || dst_id != g->req->vpid || nr == 0 ||
	    nr > g->nr) {
		log_err("criu page server %s: reply {cmd %#x, %" PRIu64 " pages at %#" PRIx64
			", pid %" PRIu64 "} to GET {%" PRIu64 " pages at %#" PRIx64 ", pid %u}",
			ps->name, cmd, nr, vaddr, dst_id, g->nr, g->vaddr, g->req->vpid);
		return -EPROTO;
	}
	ps->data = (uint8_t *)g->req->buf + (g->vaddr - g->req->vaddr);
	ps->data_left = nr * CRIUPSRV_PAGE_SIZE;
	ps->data_pages = nr;
	return 0;
}

/*
 * The oldest GET's pages are in: a short reply leaves the rest to be asked
 * for again, ahead of everything queued (the dump serves in order, and a
 * fault may wait on it); a complete request is handed back.
 */
static void ps_finish_get(struct criupsrv *ps)
{
	struct ps_get *g = TAILQ_FIRST(&ps->inflight);
	struct criupsrv_req *r = g->req;

	TAILQ_REMOVE(&ps->inflight, g, link);
	ps->ninflight--;
	r->received += ps->data_pages;
	if (ps->data_pages < g->nr) {
		g->vaddr += ps->data_pages * CRIUPSRV_PAGE_SIZE;
		g->nr -= ps->data_pages;
		TAILQ_INSERT_HEAD(&ps->tosend, g, link);
	} else {
		free(g);
	}
	ps->hdr_got = 0;
	ps->data = NULL;
	if (r->received == r->nr_pages) {
		TAILQ_REMOVE(&ps->reqs, r, link);
		r->done(r, 0, r->arg);
	}
}

static void ps_read_status(struct criupsrv *ps)
{
	ssize_t n;

	n = recv(ps->fd, (uint8_t *)&ps->status + ps->status_got,
		 sizeof(ps->status) - ps->status_got, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		log_err("criu page server %s: no answer to PS_IOV_CLOSE: %s", ps->name,
			n == 0 ? "end of file" : strerror(errno));
		ps_fail(ps, n == 0 ? -ECONNRESET : -errno);
		return;
	}
	ps->status_got += (size_t)n;
	if (ps->status_got < sizeof(ps->status))
		return;
	/* Our end of file is what the dump waits for before it finishes. */
	ps_stop_io(ps);
	shutdown(ps->fd, SHUT_RDWR);
	log_info("criu page server %s: session closed, status %d", ps->name, (int)ps->status);
	ps->ops->closed(ps, ps->status, ps->arg);
}

static void ps_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct criupsrv *ps = arg;
	size_t budget = CRIUPSRV_READ_BUDGET, want;
	ssize_t n;
	int ret;

	(void)fd;
	(void)what;
	while (!ps->dead && budget > 0) {
		if (ps->close_sent && TAILQ_EMPTY(&ps->inflight)) {
			ps_read_status(ps);
			return;
		}
		if (ps->data) {
			want = ps->data_left < budget ? ps->data_left : budget;
			n = recv(ps->fd, ps->data, want, 0);
		} else {
			n = recv(ps->fd, ps->hdr + ps->hdr_got, ps->hdr_len - ps->hdr_got, 0);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			if (n == 0)
				log_err("criu page server %s closed the connection with %zu "
					"requests outstanding",
					ps->name, ps->ninflight);
			else
				log_err("criu page server %s: recv: %s", ps->name, strerror(errno));
			ps_fail(ps, n == 0 ? -ECONNRESET : -errno);
			return;
		}
		budget -= (size_t)n < budget ? (size_t)n : budget;
		if (ps->data) {
			ps->data += n;
			ps->data_left -= (size_t)n;
			if (ps->data_left == 0)
				ps_finish_get(ps);
			continue;
		}
		ps->hdr_got += (size_t)n;
		if (ps->hdr_got < ps->hdr_len)
			continue;
		ret = ps_take_header(ps);
		if (ret < 0) {
			ps_fail(ps, ret);
			return;
		}
	}
	/* Completed GETs made room in the pipeline (and may have ended a close). */
	ps_pump(ps);
}

static void ps_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct criupsrv *ps = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	(void)fd;
	(void)what;
	if (ps->connecting) {
		if (getsockopt(ps->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			log_err("cannot connect to criu page server %s: %s", ps->name,
				strerror(err));
			ps_fail(ps, -err);
			return;
		}
		ps->connecting = false;
		log_debug("connected to criu page server %s", ps->name);
	}
	ps_pump(ps);
}

int criupsrv_open_fd(struct event_base *base, int fd, enum criupsrv_wire wire, const char *name,
		     const struct criupsrv_ops *ops, void *arg, struct criupsrv **out)
{
	struct criupsrv *ps;
	int one = 1, ret;

	*out = NULL;
	ps = calloc(1, sizeof(*ps));
	if (!ps) {
		close(fd);
		return -ENOMEM;
	}
	ps->fd = fd;
	ps->wire = wire;
	ps->hdr_len = wire == CRIUPSRV_WIRE_42 ? PS_HDR_42 : PS_HDR_317;
	snprintf(ps->name, sizeof(ps->name), "%s", name);
	ps->ops = ops;
	ps->arg = arg;
	TAILQ_INIT(&ps->reqs);
	TAILQ_INIT(&ps->tosend);
	TAILQ_INIT(&ps->inflight);
	ret = fd_set_nonblock(fd);
	if (ret < 0) {
		log_err("criu page server %s: O_NONBLOCK: %s", ps->name, strerror(-ret));
		goto out;
	}
	/* Requests are small and the dump answers one at a time: never hold one back. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_debug("criu page server %s: no TCP_NODELAY: %s", ps->name, strerror(errno));
	ps->rev = event_new(base, fd, EV_READ | EV_PERSIST, ps_read_cb, ps);
	ps->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, ps_write_cb, ps);
	if (!ps->rev || !ps->wev || event_add(ps->rev, NULL) < 0) {
		log_err("criu page server %s: cannot watch its socket", ps->name);
		ret = -ENOMEM;
		goto out;
	}
	*out = ps;
	ps = NULL;
	ret = 0;
out:
	criupsrv_free(ps);
	return ret;
}

int criupsrv_connect(struct event_base *base, const char *host, const char *port,
		     enum criupsrv_wire wire, const struct criupsrv_ops *ops, void *arg,
		     struct criupsrv **out)
{
	struct addrinfo hints = {
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	struct addrinfo *ai = NULL;
	char name[64];
	int fd = -1, ret, gai;

	*out = NULL;
	snprintf(name, sizeof(name), "%s:%s", host, port);
	gai = getaddrinfo(host, port, &hints, &ai);
	if (gai) {
		log_err("criu page server %s: not a numeric address: %s", name, gai_strerror(gai));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		log_err("criu page server %s: socket: %s", name, strerror(errno));
		goto out;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		ret = -errno;
		log_err("cannot connect to criu page server %s: %s", name, strerror(errno));
		close(fd);
		goto out;
	}
	ret = criupsrv_open_fd(base, fd, wire, name, ops, arg, out);
	if (ret < 0)
		goto out;
	/* The first writable event tells whether the connect worked. */
	(*out)->connecting = true;
	event_add((*out)->wev, NULL);
out:
	freeaddrinfo(ai);
	return ret;
}

/*
 * Has the write callback pump on the loop's next turn: the API functions
 * never run the owner's callbacks from inside themselves.
 */
static void ps_kick(struct criupsrv *ps)
{
	if (!ps->dead)
		event_add(ps->wev, NULL);
}

/* Splits r into GETs of at most CRIUPSRV_MAX_GET_PAGES pages at the tail of l. */
static int ps_split(struct criupsrv_req *r, struct ps_get_list *l)
{
	uint64_t off = 0, nr;
	struct ps_get *g;

	while (off < r->nr_pages) {
		nr = r->nr_pages - off;
		if (nr > CRIUPSRV_MAX_GET_PAGES)
			nr = CRIUPSRV_MAX_GET_PAGES;
		g = calloc(1, sizeof(*g));
		if (!g) {
			ps_free_gets(l);
			return -ENOMEM;
		}
		g->req = r;
		g->vaddr = r->vaddr + off * CRIUPSRV_PAGE_SIZE;
		g->nr = nr;
		TAILQ_INSERT_TAIL(l, g, link);
		off += nr;
	}
	return 0;
}

int criupsrv_get(struct criupsrv *ps, struct criupsrv_req *r)
{
	struct ps_get_list l = TAILQ_HEAD_INITIALIZER(l);
	int ret;

	if (ps->dead || ps->closing)
		return -ESHUTDOWN;
	if (r->nr_pages == 0 || r->vaddr % CRIUPSRV_PAGE_SIZE ||
	    r->vaddr + r->nr_pages * CRIUPSRV_PAGE_SIZE < r->vaddr || !r->buf || !r->done)
		return -EINVAL;
	ret = ps_split(r, &l);
	if (ret < 0)
		return ret;
	r->received = 0;
	TAILQ_INSERT_TAIL(&ps->reqs, r, link);
	TAILQ_CONCAT(&ps->tosend, &l, link);
	ps_kick(ps);
	return 0;
}

int criupsrv_prioritize(struct criupsrv *ps, struct criupsrv_req *r)
{
	struct ps_get_list mine = TAILQ_HEAD_INITIALIZER(mine);
	struct ps_get *g, *next;

	TAILQ_FOREACH(g, &ps->inflight, link)
	if (g->req == r)
		return -EALREADY;
	for (g = TAILQ_FIRST(&ps->tosend); g; g = next) {
		next = TAILQ_NEXT(g, link);
		if (g->req != r)
			continue;
		TAILQ_REMOVE(&ps->tosend, g, link);
		TAILQ_INSERT_TAIL(&mine, g, link);
	}
	TAILQ_CONCAT(&mine, &ps->tosend, link);
	TAILQ_CONCAT(&ps->tosend, &mine, link);
	ps_kick(ps);
	return 0;
}

size_t criupsrv_pending(const struct criupsrv *ps)
{
	const struct criupsrv_req *r;
	size_t n = 0;

	TAILQ_FOREACH(r, &ps->reqs, link)
	n++;
	return n;
}

int criupsrv_close(struct criupsrv *ps)
{
	if (ps->dead || ps->closing)
		return -ESHUTDOWN;
	ps->closing = true;
	ps_kick(ps);
	return 0;
}

void criupsrv_free(struct criupsrv *ps)
{
	if (!ps)
		return;
	ps_free_gets(&ps->tosend);
	ps_free_gets(&ps->inflight);
	if (ps->rev)
		event_free(ps->rev);
	if (ps->wev)
		event_free(ps->wev);
	if (ps->fd >= 0)
		close(ps->fd);
	free(ps);
}
