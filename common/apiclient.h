/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * apiclient: a small blocking HTTP/1.1 client for the agents' API
 * (docs/api.md), over a UNIX socket or TCP.  For rdmigctl and tests, never
 * for the agents' event loops.
 *
 * One request per connection ("Connection: close").  Responses are read
 * with bounds: headers up to APICLIENT_HEADERS_MAX, bodies up to
 * APICLIENT_BODY_MAX, Content-Length, chunked or read-to-close bodies.
 * The whole exchange is bounded by the target's timeout.
 *
 * Functions return 0 or a negative errno: the connect errno (-ENOENT,
 * -ECONNREFUSED, -EACCES, ...), -ETIMEDOUT, -EPROTO for a malformed
 * response, -EMSGSIZE for one over the limits, -EINVAL for a bad request,
 * -ECONNABORTED when TLS fails (the handshake, a certificate refused
 * either way; the reason is logged).
 */
#ifndef RDMIG_APICLIENT_H
#define RDMIG_APICLIENT_H

#include <stddef.h>

#define APICLIENT_HEADERS_MAX	     (16 * 1024)
#define APICLIENT_BODY_MAX	     (8u << 20)
#define APICLIENT_TIMEOUT_DEFAULT_MS 10000

struct apiclient_target {
	const char *unix_path; /* used when host is NULL */
	const char *host;      /* TCP: name or address (no brackets) */
	const char *port;
	/*
	 * TCP over mutual TLS: a client context (tls_ctx_new(TLS_CLIENT)),
	 * borrowed; the server's certificate must name host.  NULL: plain.
	 */
	struct ssl_ctx_st *tls;
	int timeout_ms; /* whole exchange; 0: APICLIENT_TIMEOUT_DEFAULT_MS */
};

struct apiclient_resp {
	int status;
	char reason[64];
	char location[256]; /* "" when absent */
	char allow[64];
	char content_type[64];
	char *body; /* NUL-terminated (also when empty); owned, see apiclient_resp_release() */
	size_t body_len;
};

/*
 * Sends one request and reads the response into *out.  path must be
 * printable with no spaces; body may be NULL.  With a body (or for POST and
 * PUT) the request carries Content-Type: application/json and a
 * Content-Length.  On success the caller releases *out.
 */
int apiclient_request(const struct apiclient_target *t, const char *method, const char *path,
		      const void *body, size_t body_len, struct apiclient_resp *out);

/* Sends req verbatim (for tests of malformed requests) and reads the response. */
int apiclient_request_raw(const struct apiclient_target *t, const void *req, size_t len,
			  struct apiclient_resp *out);

void apiclient_resp_release(struct apiclient_resp *r);

/* "unix:/run/rdmig/source.sock" style name of t for messages: the path, or host:port. */
const char *apiclient_target_str(const struct apiclient_target *t, char *buf, size_t len);

#endif
