// SPDX-License-Identifier: GPL-2.0-or-later
#include "apiclient.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "rdmig-config.h"
#include "tls.h"
#include "util.h"

/* A connected socket, with TLS on it when ssl is set. */
struct ac_conn {
	int fd;
	SSL *ssl;
	const char *host; /* for messages */
};

/* A growable byte buffer; always NUL-terminated when p != NULL. */
struct ac_buf {
	char *p;
	size_t len;
	size_t cap;
};

static int ac_buf_reserve(struct ac_buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	while (cap < b->len + extra + 1)
		cap *= 2;
	if (cap == b->cap)
		return 0;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int ac_buf_add(struct ac_buf *b, const void *data, size_t len)
{
	int ret = ac_buf_reserve(b, len);

	if (ret)
		return ret;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

/* Milliseconds left before deadline (monotonic ns), at least 0. */
static int ac_remaining_ms(uint64_t deadline)
{
	uint64_t now = now_ns();

	if (now >= deadline)
		return 0;
	return (int)((deadline - now + 999999) / 1000000);
}

static int ac_wait(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n;

	for (;;) {
		int ms = ac_remaining_ms(deadline);

		if (ms == 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int ac_connect_unix(const char *path, uint64_t deadline, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A UNIX connect either completes or fails at once; EAGAIN is a full backlog. */
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		if (ret != -EAGAIN || ac_remaining_ms(deadline) == 0) {
			close(fd);
			return ret == -EAGAIN ? -ETIMEDOUT : ret;
		}
		usleep(10000);
	}
	*out = fd;
	return 0;
}

static int ac_connect_tcp(const char *host, const char *port, uint64_t deadline, int *out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL, *ai;
	int ret = -EHOSTUNREACH, gai, fd = -1;

	gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0)
		return gai == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			goto out;
		ret = -errno;
		if (ret == -EINPROGRESS) {
			ret = ac_wait(fd, POLLOUT, deadline);
			if (ret == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
				err = errno;
			if (ret == 0 && err == 0)
				goto out;
			if (ret == 0)
				ret = -err;
		}
		close(fd);
		fd = -1;
	}
out:
	freeaddrinfo(res);
	if (fd < 0)
		return ret;
	*out = fd;
	return 0;
}

/* Logs why TLS failed on c: the certificate check, else OpenSSL's reason. */
static void ac_tls_log(const struct ac_conn *c, const char *what)
{
	long v = SSL_get_verify_result(c->ssl);
	char why[256];

	if (v != X509_V_OK)
		log_err("tls: %s with %s: its certificate is refused: %s", what, c->host,
			X509_verify_cert_error_string(v));
	else
		log_err("tls: %s with %s: %s", what, c->host, tls_error_text(why, sizeof(why)));
}

/*
 * One SSL_write or SSL_read in the manner of send/recv on a non-blocking
 * socket: the byte count, 0 at the end of the stream, or -1 with errno
 * (EAGAIN once it waited for what TLS needs; ECONNABORTED when TLS failed).
 */
static ssize_t ac_tls_io(struct ac_conn *c, void *p, size_t len, bool write, uint64_t deadline)
{
	int n, e, ret;

	ERR_clear_error();
	n = write ? SSL_write(c->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len))
		  : SSL_read(c->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
	if (n > 0)
		return n;
	e = SSL_get_error(c->ssl, n);
	switch (e) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ret = ac_wait(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
		errno = ret ? -ret : EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			errno = ECONNRESET;
		return -1;
	default:
		ac_tls_log(c, write ? "sending" : "receiving");
		errno = ECONNABORTED;
		return -1;
	}
}

/* Runs the TLS handshake on c->fd, checking the server's certificate names host. */
static int ac_tls_start(struct ac_conn *c, SSL_CTX *ctx, const char *host, uint64_t deadline)
{
	int n, e, ret;

	c->ssl = SSL_new(ctx);
	if (!c->ssl)
		return -ENOMEM;
	if (SSL_set_fd(c->ssl, c->fd) != 1 || tls_client_expect_host(c->ssl, host) < 0)
		return -ENOMEM;
	for (;;) {
		ERR_clear_error();
		n = SSL_connect(c->ssl);
		if (n == 1)
			return 0;
		e = SSL_get_error(c->ssl, n);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			break;
		ret = ac_wait(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
		if (ret)
			return ret;
	}
	ac_tls_log(c, "handshake");
	return -ECONNABORTED;
}

/*
 * Writes the request.  A peer that answers early and closes (e.g. a 413)
 * shows up as EPIPE/ECONNRESET: stop writing and read what it said.
 */
static int ac_send_all(struct ac_conn *c, const char *p, size_t len, uint64_t deadline)
{
	while (len > 0) {
		ssize_t n = c->ssl ? ac_tls_io(c, (void *)p, len, true, deadline)
				   : send(c->fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			int ret = -errno;

			if (ret == -EPIPE || ret == -ECONNRESET)
				return 0;
			if (ret != -EAGAIN && ret != -EINTR)
				return ret;
			ret = ac_wait(c->fd, POLLOUT, deadline);
			if (ret)
				return ret;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Appends what the socket has; returns the byte count, 0 at EOF, or -errno. */
static ssize_t ac_fill(struct ac_conn *c, struct ac_buf *b, size_t limit, uint64_t deadline)
{
	for (;;) {
		ssize_t n;
		int ret;

		if (b->len >= limit)
			return -EMSGSIZE;
		ret = ac_buf_reserve(b, 16384);
		if (ret)
			return ret;
		n = c->ssl ? ac_tls_io(c, b->p + b->len, b->cap - b->len - 1, false, deadline)
			   : recv(c->fd, b->p + b->len, b->cap - b->len - 1, 0);
		if (n > 0) {
			b->len += (size_t)n;
			b->p[b->len] = '\0';
			return n;
		}
		if (n == 0)
			return 0;
		if (errno == ECONNRESET && b->len > 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		ret = ac_wait(c->fd, POLLIN, deadline);
		if (ret)
			return ret;
	}
}

static void ac_copy_value(char *dst, size_t len, const char *v, size_t vlen)
{
	if (vlen >= len)
		vlen = len - 1;
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
}

struct ac_head {
	size_t end;		  /* offset of the body */
	long long content_length; /* -1: none */
	bool chunked;
};

/* Parses the status line and the headers in head[0..end), which ends with an empty line. */
static int ac_parse_head(const char *head, size_t end, struct apiclient_resp *r, struct ac_head *h)
{
	const char *p = head, *lim = head + end, *eol;
	char code[4];

	h->content_length = -1;
	h->chunked = false;
	if (end < 13 || strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ')
		return -EPROTO;
	memcpy(code, p + 9, 3);
	code[3] = '\0';
	if (code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' ||
	    code[2] > '9' || (p[12] != ' ' && p[12] != '\r'))
		return -EPROTO;
	r->status = atoi(code);
	eol = memchr(p, '\r', (size_t)(lim - p));
	if (!eol || eol[1] != '\n')
		return -EPROTO;
	if (p[12] == ' ')
		ac_copy_value(r->reason, sizeof(r->reason), p + 13, (size_t)(eol - p - 13));
	for (p = eol + 2; p < lim; p = eol + 2) {
		const char *colon, *v;
		size_t nlen, vlen;

		eol = memchr(p, '\r', (size_t)(lim - p));
		if (!eol || eol + 1 >= lim || eol[1] != '\n')
			return -EPROTO;
		if (eol == p)
			break;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return -EPROTO;
		nlen = (size_t)(colon - p);
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		vlen = (size_t)(eol - v);
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			char num[24];
			uint64_t cl;

			if (vlen == 0 || vlen >= sizeof(num))
				return -EPROTO;
			ac_copy_value(num, sizeof(num), v, vlen);
			if (parse_uint(num, 0, APICLIENT_BODY_MAX, &cl) == -ERANGE)
				return -EMSGSIZE;
			if (parse_uint(num, 0, APICLIENT_BODY_MAX, &cl) < 0)
				return -EPROTO;
			h->content_length = (long long)cl;
		} else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			h->chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
		} else if (nlen == 8 && strncasecmp(p, "Location", 8) == 0) {
			ac_copy_value(r->location, sizeof(r->location), v, vlen);
		} else if (nlen == 5 && strncasecmp(p, "Allow", 5) == 0) {
			ac_copy_value(r->allow, sizeof(r->allow), v, vlen);
		} else if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
			ac_copy_value(r->content_type, sizeof(r->content_type), v, vlen);
		}
	}
	return 0;
}

/* Makes sure b holds at least need bytes; EOF before that is a truncated response. */
static int ac_need(struct ac_conn *c, struct ac_buf *b, size_t need, size_t limit,
		   uint64_t deadline)
{
	while (b->len < need) {
		ssize_t n = ac_fill(c, b, limit, deadline);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EPROTO;
	}
	return 0;
}

/* Decodes a chunked body starting at off into body. */
static int ac_read_chunked(struct ac_conn *c, struct ac_buf *b, size_t off, struct ac_buf *body,
			   uint64_t deadline)
{
	const size_t limit = APICLIENT_HEADERS_MAX + APICLIENT_BODY_MAX + 64 * 1024;

	for (;;) {
		char *eol, *end;
		unsigned long long sz;
		int ret;

		while (!(eol = memmem(b->p + off, b->len - off, "\r\n", 2))) {
			if (b->len - off > 64)
				return -EPROTO;
			ret = ac_need(c, b, b->len + 1, limit, deadline);
			if (ret)
				return ret;
		}
		errno = 0;
		sz = strtoull(b->p + off, &end, 16);
		if (end == b->p + off || errno || (*end != '\r' && *end != ';'))
			return -EPROTO;
		if (sz > APICLIENT_BODY_MAX || body->len + sz > APICLIENT_BODY_MAX)
			return -EMSGSIZE;
		off = (size_t)(eol - b->p) + 2;
		if (sz == 0) /* trailers, if any, are ignored with the connection */
			return 0;
		ret = ac_need(c, b, off + sz + 2, limit, deadline);
		if (ret)
			return ret;
		if (b->p[off + sz] != '\r' || b->p[off + sz + 1] != '\n')
			return -EPROTO;
		ret = ac_buf_add(body, b->p + off, sz);
		if (ret)
			return ret;
		off += sz + 2;
	}
}

static int ac_read_response(struct ac_conn *c, bool head, uint64_t deadline,
			    struct apiclient_resp *r)
{
	const size_t limit = APICLIENT_HEADERS_MAX + APICLIENT_BODY_MAX;
	struct ac_buf b = {0}, body = {0};
	struct ac_head h;
	size_t start = 0;
	char *end;
	int ret;

	for (;;) {
		while (!(end = b.p ? memmem(b.p + start, b.len - start, "\r\n\r\n", 4) : NULL)) {
			ssize_t n;

			if (b.len - start > APICLIENT_HEADERS_MAX) {
				ret = -EMSGSIZE;
				goto out;
			}
			n = ac_fill(c, &b, limit, deadline);
			if (n <= 0) {
				ret = n < 0 ? (int)n : -EPROTO;
				goto out;
			}
		}
		h.end = (size_t)(end - b.p) + 4;
		memset(r, 0, sizeof(*r));
		ret = ac_parse_head(b.p + start, h.end - start, r, &h);
		if (ret)
			goto out;
		/* Interim 1xx answers precede the real one. */
		if (r->status >= 200)
			break;
		start = h.end;
	}
	if (head || r->status == 204 || r->status == 304) {
		ret = ac_buf_add(&body, "", 0);
	} else if (h.chunked) {
		ret = ac_read_chunked(c, &b, h.end, &body, deadline);
		if (!ret)
			ret = ac_buf_add(&body, "", 0);
	} else if (h.content_length >= 0) {
		ret = ac_need(c, &b, h.end + (size_t)h.content_length, limit, deadline);
		if (!ret)
			ret = ac_buf_add(&body, b.p + h.end, (size_t)h.content_length);
	} else {
		ssize_t n;

		while ((n = ac_fill(c, &b, limit, deadline)) > 0)
			;
		ret = n < 0 ? (int)n : ac_buf_add(&body, b.p + h.end, b.len - h.end);
	}
	if (ret)
		goto out;
	r->body = body.p;
	r->body_len = body.len;
	body.p = NULL;
out:
	free(b.p);
	free(body.p);
	return ret;
}

static int ac_exchange(const struct apiclient_target *t, const char *req, size_t len, bool head,
		       struct apiclient_resp *out)
{
	int ms = t->timeout_ms > 0 ? t->timeout_ms : APICLIENT_TIMEOUT_DEFAULT_MS;
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000ull;
	struct ac_conn c = {.fd = -1, .host = t->host};
	int ret;

	memset(out, 0, sizeof(*out));
	if (t->host)
		ret = ac_connect_tcp(t->host, t->port ? t->port : (t->tls ? "443" : "80"), deadline,
				     &c.fd);
	else if (t->unix_path)
		ret = ac_connect_unix(t->unix_path, deadline, &c.fd);
	else
		ret = -EINVAL;
	if (!ret && t->host && t->tls)
		ret = ac_tls_start(&c, t->tls, t->host, deadline);
	if (ret)
		goto out;
	ret = ac_send_all(&c, req, len, deadline);
	if (ret)
		goto out;
	ret = ac_read_response(&c, head, deadline, out);
out:
	/* No close_notify: the answer is read, and the agent closes too. */
	SSL_free(c.ssl);
	if (c.fd >= 0)
		close(c.fd);
	return ret;
}

static bool ac_token_ok(const char *s, bool path)
{
	if (!*s || (path && *s != '/'))
		return false;
	for (; *s; s++) {
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

int apiclient_request(const struct apiclient_target *t, const char *method, const char *path,
		      const void *body, size_t body_len, struct apiclient_resp *out)
{
	struct ac_buf req = {0};
	char line[1024], host[300];
	int ret, n;
	bool with_len = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;

	memset(out, 0, sizeof(*out));
	if (!ac_token_ok(method, false) || !ac_token_ok(path, true) || strlen(path) > 400)
		return -EINVAL;
	/* host:port, IPv6 in brackets, no scheme: the agents check Host on loopback. */
	if (t->host)
		snprintf(host, sizeof(host), strchr(t->host, ':') ? "[%s]:%s" : "%s:%s", t->host,
			 t->port ? t->port : (t->tls ? "443" : "80"));
	n = snprintf(line, sizeof(line),
		     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rdmigctl/%s\r\n"
		     "Accept: application/json\r\nConnection: close\r\n",
		     method, path, t->host ? host : "localhost", RDMIG_VERSION);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	ret = ac_buf_add(&req, line, (size_t)n);
	if (!ret && with_len) {
		n = snprintf(line, sizeof(line),
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n",
			     body ? body_len : 0);
		ret = ac_buf_add(&req, line, (size_t)n);
	}
	if (!ret)
		ret = ac_buf_add(&req, "\r\n", 2);
	if (!ret && body)
		ret = ac_buf_add(&req, body, body_len);
	if (!ret)
		ret = ac_exchange(t, req.p, req.len, strcmp(method, "HEAD") == 0, out);
	if (req.p)
		explicit_bzero(req.p, req.len); /* the body may carry a secret */
	free(req.p);
	return ret;
}

int apiclient_request_raw(const struct apiclient_target *t, const void *req, size_t len,
			  struct apiclient_resp *out)
{
	return ac_exchange(t, req, len, false, out);
}

void apiclient_resp_release(struct apiclient_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

const char *apiclient_target_str(const struct apiclient_target *t, char *buf, size_t len)
{
	if (t->host)
		snprintf(buf, len, strchr(t->host, ':') ? "%s[%s]:%s" : "%s%s:%s",
			 t->tls ? "https://" : "", t->host,
			 t->port ? t->port : (t->tls ? "443" : "80"));
	else
		snprintf(buf, len, "%s", t->unix_path ? t->unix_path : "(none)");
	return buf;
}
