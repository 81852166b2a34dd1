// SPDX-License-Identifier: GPL-2.0-or-later
#include "handover.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "api.h"
#include "destreport.h"
#include "log.h"
#include "session.h"
#include "tickclock.h"
#include "tls.h"
#include "util.h"

#define HO_POLL_MS	  500
#define HO_POST_TIMEOUT_S 10
#define HO_POLL_TIMEOUT_S 5
/*
 * The requests' timeouts are judged by the handover's own tick, every
 * HO_WATCH_MS, which forgives the time this process did not run
 * (common/tickclock.h); libevent's own timeout on the connection is only
 * a backstop, for a stop longer than this.
 */
#define HO_WATCH_MS	      500
#define HO_BACKSTOP_TIMEOUT_S 3600
/* An abort is best effort: the source's own state is final already. */
#define HO_ABORT_TIMEOUT_S 5
/*
 * Once the source is final, the destination's last figures (its resume
 * time, the final latencies) are still awaited this long.
 */
#define HO_LINGER_MS	30000
#define HO_BODY_MAX	(1 << 20)
#define HO_HEADERS_MAX	(16 * 1024)
#define HO_WHY_MAX	320
#define HO_ENDPOINT_MAX (API_HOSTPORT_MAX + 8)

enum ho_phase {
	HO_IDLE,	/* the migration does not serve yet (0: a new handover's) */
	HO_RESERVE_ASK, /* GET /v1/health before the reservation: does it take "start"? */
	HO_RESERVE,	/* POST /v1/reservations: before the freeze */
	HO_HEALTH,	/* GET /v1/health: is it a destination agent? */
	HO_READY, /* it is (asked during the dump); the POST waits for the migration to serve */
	HO_POST,  /* POST /v1/migrations */
	HO_POLL,  /* accepted: GET /v1/migrations/{id} every HO_POLL_MS */
	HO_ENDED,
};

struct src_handover {
	struct src_agent *a;
	struct src_migration *m;
	struct evhttp_connection *conn;
	/*
	 * Over TLS, a connection the destination agent closed is replaced
	 * rather than reconnected (its SSL object cannot start over); the
	 * old one may be the one whose callback runs, so the timer frees it.
	 */
	struct evhttp_connection *stale;
	bool conn_used;
	bool serving;		    /* src_handover_begin() was called */
	struct evhttp_request *req; /* in flight, or NULL */
	struct event *timer;	    /* the next poll, or the deferred close */
	/*
	 * The requests' deadlines, checked while one is in flight or the
	 * migration is followed (HO_POLL); its clock tells a tick that ran
	 * late, whose delay is nobody's but ours.
	 */
	struct event *watch;
	struct tickclock watch_clk;
	char watch_name[API_ID_MAX + HO_ENDPOINT_MAX + 48];
	/* When the last answer (or failure) on the connection came: the next request's turn. */
	uint64_t answered_ns;
	int req_timeout_s;
	enum ho_phase phase;
	/*
	 * What the request's error callback said; it is not called when the
	 * connection is refused (libevent then clobbers errno too).
	 */
	bool req_error;
	enum evhttp_request_error req_err;
	uint64_t req_sent_ns;
	bool unreachable; /* the last poll failed */
	/*
	 * The POST was sent: the destination agent may have the migration, so
	 * an abort on the source is passed on to it.
	 */
	bool posted;
	struct evhttp_request *del_req; /* the abort's DELETE in flight, or NULL */
	bool del_error;			/* as req_error, for the DELETE */
	enum evhttp_request_error del_err;
	uint64_t del_sent_ns;
	uint64_t source_final_ns;
	char host[API_HOSTPORT_MAX + 1];
	uint16_t port;
	char name[HO_ENDPOINT_MAX]; /* "host:port", "[v6]:port" */
	char *advertise;
	char *dest_images_dir;
	char *dest_bundle; /* a container's bundle there, or NULL */
	uint8_t secret[AUTH_SECRET_MAX];
	size_t secret_len;
	/* The reservation the destination agent granted, "" before or without one. */
	char reservation[API_ID_MAX + 1];
	bool released;			   /* its DELETE was sent (or could not be) */
	src_handover_result_fn release_cb; /* told when that DELETE is answered, or NULL */
	uint64_t reserve_bytes;
	src_handover_result_fn reserve_cb;
	/*
	 * The reservation's "start" (design.md §10.3): wanted unless turned
	 * off, sent when the agent's health says it takes one; the endpoint
	 * it named, which the POST then names alike.
	 */
	bool early;
	bool early_sent;
	/* The agent's health said it takes a lazy dump (asked for one that is). */
	bool dest_lazy;
	char early_source[HO_ENDPOINT_MAX];
	/* The rollback's question (GET of the migration there) in flight, or NULL. */
	struct evhttp_request *ask_req;
	bool ask_error;
	enum evhttp_request_error ask_err;
	uint64_t ask_sent_ns;
	src_handover_result_fn ask_cb;
	/* That question's answer: the rollback's, or the recheck's before a final dump. */
	void (*ask_done)(struct evhttp_request *, void *);
	bool recheck_wait; /* the recheck waits for the health check in flight */
	/*
	 * An answer for the migration, given from the timer (never from inside
	 * a request's callback, the connection still in use): which callback,
	 * its ret and why.
	 */
	src_handover_result_fn result_cb;
	int result_ret;
	char result_why[HO_WHY_MAX];
};

static void ho_wipe_secret(struct src_handover *h)
{
	explicit_bzero(h->secret, sizeof(h->secret));
	h->secret_len = 0;
}

static void ho_why(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A message into buf, cut if it must be (the agents' texts are bounded, not trusted). */
static void ho_why(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static void ho_schedule(struct src_handover *h, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (evtimer_add(h->timer, &tv) < 0)
		log_err("migration %s: cannot schedule the next look at destination agent %s",
			h->m->id, h->name);
}

/*
 * The connection cannot be freed from inside its own request callback
 * (libevent still uses it on return): the timer does it.
 */
static void ho_end(struct src_handover *h)
{
	h->phase = HO_ENDED;
	ho_wipe_secret(h);
	ho_schedule(h, 0);
}

static json_t *ho_body_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = in ? evbuffer_get_length(in) : 0;
	const char *p;

	if (len == 0)
		return NULL;
	p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
	return p ? json_loadb(p, len, 0, NULL) : NULL;
}

/* The agent's error message, else "HTTP <status> <reason>". */
static void ho_http_error(struct evhttp_request *req, int status, char *buf, size_t len)
{
	json_t *j = ho_body_json(req);
	const char *line = evhttp_request_get_response_code_line(req);
	char text[API_ERROR_MSG_MAX];

	if (dest_report_error_message(j, text, sizeof(text))) {
		snprintf(buf, len, "%s (HTTP %d)", text, status);
	} else {
		snprintf(buf, len, "HTTP %d %s", status, line && line[0] ? line : "error");
	}
	json_decref(j);
}

/* The first OpenSSL error the connection queued (libevent adds errnos: skipped); 0: none. */
static unsigned long ho_tls_error(struct bufferevent *bev)
{
	unsigned long e, first = 0;

	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (!first && ERR_GET_LIB(e) != 0)
			first = e;
	return first;
}

/*
 * Why a request got no answer, from what libevent left behind: seen and e
 * are what its error callback recorded, timeout_s the limit it had,
 * sent_ns when it was sent (over TLS, a handshake that times out is not
 * reported to the callback: the time, near the limit, tells it from a
 * refusal, which is immediate).
 */
static void ho_transport_error(struct src_handover *h, bool seen, enum evhttp_request_error e,
			       int timeout_s, uint64_t sent_ns, char *buf, size_t len)
{
	struct bufferevent *bev = h->conn ? evhttp_connection_get_bufferevent(h->conn) : NULL;
	int dns = bev ? bufferevent_socket_get_dns_error(bev) : 0;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	unsigned long tls_err = ssl ? ho_tls_error(bev) : 0;
	long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char why[200];

	/* libevent's timer starts from its cached time, a little before sent_ns. */
	if (!seen && now_ns() - sent_ns >= (uint64_t)timeout_s * 900000000ull) {
		seen = true;
		e = EVREQ_HTTP_TIMEOUT;
	}
	if (dns)
		snprintf(buf, len, "cannot resolve %s: %s", h->host, evutil_gai_strerror(dns));
	else if (verify != X509_V_OK)
		snprintf(buf, len, "TLS: its certificate is refused: %s",
			 X509_verify_cert_error_string(verify));
	else if (tls_err)
		snprintf(buf, len, "TLS handshake failed: %s",
			 (ERR_error_string_n(tls_err, why, sizeof(why)), why));
	else if (!seen)
		snprintf(buf, len, "connection refused");
	else if (e == EVREQ_HTTP_TIMEOUT)
		snprintf(buf, len, "no answer within %d s", timeout_s);
	else if (e == EVREQ_HTTP_EOF)
		snprintf(buf, len, "cannot connect, or the connection closed before an answer");
	else
		snprintf(buf, len, "no valid HTTP answer");
}

/* The same for the request of the current phase. */
static void ho_phase_error(struct src_handover *h, char *buf, size_t len)
{
	ho_transport_error(h, h->req_error, h->req_err, h->req_timeout_s, h->req_sent_ns, buf, len);
}

static void ho_mirror(struct src_handover *h, const json_t *j)
{
	struct src_dest_report *r = &h->m->dr;
	char old[sizeof(r->state)];

	snprintf(old, sizeof(old), "%s", r->state);
	dest_report_parse(j, r);
	if (strcmp(old, r->state) != 0)
		log_info("migration %s: destination agent %s reports %s%s%s", h->m->id, h->name,
			 r->state[0] ? r->state : "no state", r->error[0] ? ": " : "", r->error);
}

static void ho_done(struct evhttp_request *req, void *arg);

static void ho_error_cb(enum evhttp_request_error e, void *arg)
{
	struct src_handover *h = arg;

	h->req_error = true;
	h->req_err = e;
}

/* Wipes the request body (it holds the secret) once libevent is done with it. */
static void ho_body_cleanup(const void *data, size_t len, void *arg)
{
	explicit_bzero((void *)data, len);
	free((void *)data);
}

static int ho_connect(struct src_handover *h);

/*
 * Over TLS, a connection whose socket is gone (the agent closed it) with
 * nothing in flight is set aside and a new one made for the next request.
 */
static int ho_conn_fresh(struct src_handover *h)
{
	struct bufferevent *bev;

	if (!h->conn)
		return ho_connect(h);
	bev = evhttp_connection_get_bufferevent(h->conn);
	if (!h->a->tls_client || !h->conn_used || h->req || h->del_req || h->ask_req ||
	    bufferevent_getfd(bev) >= 0)
		return 0;
	if (h->stale)
		evhttp_connection_free(h->stale);
	h->stale = h->conn;
	h->conn = NULL;
	ho_schedule(h, 0);
	return ho_connect(h);
}

static void ho_watch_arm(struct src_handover *h);

/*
 * Sends a request on h->conn, queued behind any request in flight there;
 * body (owned, wiped and freed whatever happens) may be NULL.  cb and
 * errcb get h; *sent is the request until its cb runs.  Its timeout is
 * judged by the watch (ho_watch_cb()), from the time the caller records.
 */
static int ho_send(struct src_handover *h, enum evhttp_cmd_type type, const char *path, char *body,
		   void (*cb)(struct evhttp_request *, void *),
		   void (*errcb)(enum evhttp_request_error, void *), struct evhttp_request **sent)
{
	struct evhttp_request *req;
	struct evkeyvalq *hdr;
	int ret;

	req = evhttp_request_new(cb, h);
	if (!req) {
		ret = -ENOMEM;
		goto out;
	}
	evhttp_request_set_error_cb(req, errcb);
	hdr = evhttp_request_get_output_headers(req);
	if (evhttp_add_header(hdr, "Host", h->name) < 0 ||
	    evhttp_add_header(hdr, "Accept", "application/json") < 0 ||
	    evhttp_add_header(hdr, "User-Agent", "rdmig-source") < 0) {
		ret = -ENOMEM;
		goto out;
	}
	if (body) {
		if (evhttp_add_header(hdr, "Content-Type", "application/json") < 0 ||
		    evbuffer_add_reference(evhttp_request_get_output_buffer(req), body,
					   strlen(body), ho_body_cleanup, NULL) < 0) {
			ret = -ENOMEM;
			goto out;
		}
		body = NULL; /* the buffer's now */
	}
	ret = ho_conn_fresh(h);
	if (ret < 0)
		goto out;
	h->conn_used = true;
	if (evhttp_make_request(h->conn, req, type, path) < 0) {
		/* libevent released the request. */
		req = NULL;
		ret = -EIO;
		goto out;
	}
	*sent = req;
	req = NULL;
	ho_watch_arm(h);
	ret = 0;
out:
	if (req)
		evhttp_request_free(req);
	if (body)
		ho_body_cleanup(body, strlen(body), NULL);
	if (ret < 0)
		log_err("migration %s: cannot send a request to destination agent %s: %s", h->m->id,
			h->name, strerror(-ret));
	return ret;
}

/* A request of the handover's phases: its answer goes to ho_done(). */
static int ho_request(struct src_handover *h, enum evhttp_cmd_type type, const char *path,
		      char *body, int timeout_s)
{
	h->req_error = false;
	h->req_sent_ns = now_ns();
	h->req_timeout_s = timeout_s;
	return ho_send(h, type, path, body, ho_done, ho_error_cb, &h->req);
}

static void ho_fail(struct src_handover *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The destination agent did not take the migration.  Unless a destination
 * already fetches it (then the data connection decides), the migration
 * fails and keeps its checkpoint, so it can be rolled back.
 */
static void ho_fail(struct src_handover *h, const char *fmt, ...)
{
	struct src_migration *m = h->m;
	char why[SRC_MIG_ERROR_MAX], what[HO_WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	/* Long texts from the remote agent are cut, never overflow. */
	if (snprintf(why, sizeof(why), "destination agent %s %s", h->name, what) >=
	    (int)sizeof(why))
		log_debug("migration %s: the handover's failure text was cut", m->id);
	ho_end(h);
	if (src_mig_final(m))
		return;
	if (m->state == SRC_MIG_SERVING || m->state == SRC_MIG_PAUSED || m->busy) {
		log_warn("migration %s: %s; destination %s fetches it already: serving on", m->id,
			 why, m->peer);
		return;
	}
	log_err("migration %s: %s; the checkpoint stays in %s for a rollback", m->id, why, m->dir);
	src_session_cancel(h->a, m, "the handover to the destination agent failed");
	src_mig_finish(m, SRC_MIG_FAILED, why);
}

/*
 * "host:port" the destination agent is to connect to: advertise; else the
 * listener's own address when it is bound to one (the data network may not
 * be the one the API is reached on); else our side of the API connection.
 */
static int ho_source_endpoint(struct src_handover *h, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[API_HOSTPORT_MAX + 1], port[8], listener[8];
	evutil_socket_t fd = -1;
	int ret;

	snprintf(listener, sizeof(listener), "%d", h->a->port);
	snprintf(port, sizeof(port), "%s", listener);
	if (h->advertise) {
		/* Validated by the API: "host", "host:port" or "[v6]:port". */
		if (parse_hostport(h->advertise, listener, host, sizeof(host), port, sizeof(port)) <
		    0)
			return -EINVAL;
		goto fmt;
	}
	if (h->a->listen_host[0] && strcmp(h->a->listen_host, "0.0.0.0") != 0 &&
	    strcmp(h->a->listen_host, "::") != 0) {
		snprintf(host, sizeof(host), "%s", h->a->listen_host);
		goto fmt;
	}
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(h->conn));
	if (fd >= 0) {
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
			return -errno;
	} else {
		/* The agent closed the connection after its answer: ask the routing table. */
		const struct sockaddr *peer = evhttp_connection_get_addr(h->conn);

		if (!peer)
			return -ENOTCONN;
		fd = socket(peer->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		ret = connect(fd, peer,
			      peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							  : sizeof(struct sockaddr_in));
		if (ret == 0)
			ret = getsockname(fd, (struct sockaddr *)&ss, &sl);
		ret = ret < 0 ? -errno : 0;
		close(fd);
		if (ret < 0)
			return ret;
	}
	ret = getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
	if (ret != 0)
		return -EINVAL;
fmt:
	if ((size_t)snprintf(buf, len, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* The restore's criu options: all but leave_running, and only those set. */
static int ho_criu_opts(const struct src_criu_opts *o, json_t *body)
{
	json_t *c = json_object();
	int ret = -ENOMEM;

	if (!c)
		goto out;
	if ((o->shell_job && json_object_set_new(c, "shell_job", json_true()) < 0) ||
	    (o->tcp_established && json_object_set_new(c, "tcp_established", json_true()) < 0) ||
	    (o->ext_unix_sk && json_object_set_new(c, "ext_unix_sk", json_true()) < 0) ||
	    (o->file_locks && json_object_set_new(c, "file_locks", json_true()) < 0) ||
	    (o->link_remap && json_object_set_new(c, "link_remap", json_true()) < 0) ||
	    (o->manage_cgroups[0] &&
	     json_object_set_new(c, "manage_cgroups", json_string(o->manage_cgroups)) < 0) ||
	    (o->log_level >= 0 &&
	     json_object_set_new(c, "log_level", json_integer(o->log_level)) < 0))
		goto out;
	ret = 0;
	if (json_object_size(c) > 0) {
		ret = json_object_set_new(body, "criu_opts", c) < 0 ? -ENOMEM : 0;
		c = NULL;
	}
out:
	json_decref(c);
	return ret;
}

/* A container's "container": its id, runc root and bundle there. */
static int ho_container(const struct src_handover *h, json_t *body)
{
	const struct src_container *c = &h->m->ctr;
	json_t *o;

	if (!c->id[0] || !h->dest_bundle)
		return 0;
	o = json_pack("{s:s, s:s, s:s}", "runtime", API_CONTAINER_RUNTIME, "id", c->id, "bundle",
		      h->dest_bundle);
	if (!o || (c->root[0] && json_object_set_new(o, "root", json_string(c->root)) < 0)) {
		json_decref(o);
		return -ENOMEM;
	}
	return json_object_set_new(body, "container", o) < 0 ? -ENOMEM : 0;
}

/*
 * The POST body.  The secret is spliced in as text so that its only copy
 * is this buffer, which the request wipes once sent (jansson would leave
 * freed copies behind).
 */
static int ho_post_body(struct src_handover *h, const char *source, bool start, char **out)
{
	struct src_migration *m = h->m;
	json_t *j = json_object();
	char *rest = NULL, *body = NULL, b64[((AUTH_SECRET_MAX + 2) / 3) * 4 + 1];
	size_t len;
	int ret = -ENOMEM;

	*out = NULL;
	/* A reservation's "start" has the POST's fields but those the reservation gives. */
	if (!j || (!start && json_object_set_new(j, "id", json_string(m->id)) < 0) ||
	    json_object_set_new(j, "source", json_string(source)) < 0 ||
	    json_object_set_new(j, "transport",
				json_string(xport_transport_str(h->a->kind, h->a->data_tls))) < 0 ||
	    json_object_set_new(j, "verify", json_boolean(m->verify)) < 0 ||
	    (!start && h->dest_images_dir &&
	     json_object_set_new(j, "images_dir", json_string(h->dest_images_dir)) < 0) ||
	    (!start && h->reservation[0] &&
	     json_object_set_new(j, "reservation", json_string(h->reservation)) < 0))
		goto out;
	ret = ho_criu_opts(&m->criu, j);
	if (ret == 0)
		ret = ho_container(h, j);
	if (ret < 0)
		goto out;
	ret = -ENOMEM;
	rest = json_dumps(j, JSON_COMPACT);
	if (!rest || rest[0] != '{')
		goto out;
	EVP_EncodeBlock((unsigned char *)b64, h->secret, (int)h->secret_len);
	len = strlen("{\"secret\":\"base64:\",") + strlen(b64) + strlen(rest);
	body = malloc(len + 1);
	if (!body)
		goto out;
	snprintf(body, len + 1, "{\"secret\":\"base64:%s\",%s", b64, rest + 1);
	*out = body;
	ret = 0;
out:
	explicit_bzero(b64, sizeof(b64));
	free(rest);
	json_decref(j);
	return ret;
}

static void ho_post(struct src_handover *h);

/*
 * The answer to a health check sent during the dump: ready for the POST,
 * or (whatever went wrong) back to idle, for src_handover_begin() to ask
 * again and fail the migration if it must.
 */
static int ho_recheck_send(struct src_handover *h);
static void ho_result(struct src_handover *h, src_handover_result_fn cb, int ret, const char *why);

/* A recheck that waited for the health check goes now. */
static void ho_recheck_after(struct src_handover *h)
{
	if (h->recheck_wait && ho_recheck_send(h) < 0)
		ho_result(h, h->ask_cb, -EIO, "the question could not be sent");
}

static void ho_on_early_health(struct src_handover *h, struct evhttp_request *req, int status)
{
	json_t *j = status == HTTP_OK ? ho_body_json(req) : NULL;
	const char *role = json_string_value(json_object_get(j, "role"));
	bool ok = role && strcmp(role, "dest") == 0;

	json_decref(j);
	if (ok) {
		h->phase = HO_READY;
		log_debug("migration %s: destination agent %s answers; the POST waits for the dump",
			  h->m->id, h->name);
		ho_recheck_after(h);
		return;
	}
	log_info("migration %s: destination agent %s did not answer its health check during the "
		 "dump (HTTP %d); asking again once the migration serves",
		 h->m->id, h->name, status);
	/* Not freed from inside its own callback: the timer does it (an older one goes now). */
	if (h->stale)
		evhttp_connection_free(h->stale);
	h->stale = h->conn;
	h->conn = NULL;
	h->phase = HO_IDLE;
	ho_schedule(h, 0);
	ho_recheck_after(h);
}

static void ho_on_health(struct src_handover *h, struct evhttp_request *req, int status)
{
	const char *role;
	char why[HO_WHY_MAX];
	json_t *j;

	if (!h->serving) {
		ho_on_early_health(h, req, status);
		return;
	}
	if (status == 0) {
		ho_phase_error(h, why, sizeof(why));
		snprintf(h->m->dr.state, sizeof(h->m->dr.state), "unreachable");
		ho_fail(h, "unreachable: %s", why);
		return;
	}
	if (status != HTTP_OK) {
		ho_http_error(req, status, why, sizeof(why));
		ho_fail(h, "refused: %s", why);
		return;
	}
	j = ho_body_json(req);
	role = json_string_value(json_object_get(j, "role"));
	if (!role || strcmp(role, "dest") != 0) {
		dest_report_text(why, sizeof(why), role ? role : "none");
		json_decref(j);
		ho_fail(h, "refused: it is not a destination agent (its /v1/health says role %s)",
			why);
		return;
	}
	json_decref(j);
	ho_post(h);
}

/* POST /v1/migrations: the destination agent is asked to take the migration. */
static void ho_post(struct src_handover *h)
{
	struct src_migration *m = h->m;
	char source[HO_ENDPOINT_MAX], *body = NULL;
	int ret = 0;

	/* The worker started at the reservation was told an endpoint: the same one. */
	if (h->early_sent)
		snprintf(source, sizeof(source), "%s", h->early_source);
	else
		ret = ho_source_endpoint(h, source, sizeof(source));
	if (!h->early_sent && ret < 0) {
		ho_fail(h,
			"cannot be told where to connect: no local address (%s); give "
			"\"advertise\"",
			strerror(-ret));
		return;
	}
	ret = ho_post_body(h, source, false, &body);
	ho_wipe_secret(h);
	if (ret < 0) {
		ho_fail(h, "cannot be asked: %s", strerror(-ret));
		return;
	}
	/* The downtime runs from the freeze; the destination measures the rest. */
	if (m->freeze_start_ns)
		m->handover_ms = (int64_t)((now_ns() - m->freeze_start_ns) / 1000000);
	log_info("migration %s: handing over to destination agent %s, to connect to %s (%s)", m->id,
		 h->name, source, xport_transport_str(h->a->kind, h->a->data_tls));
	h->phase = HO_POST;
	if (ho_request(h, EVHTTP_REQ_POST, "/v1/migrations", body, HO_POST_TIMEOUT_S) < 0) {
		ho_fail(h, "cannot be asked: the request could not be sent");
		return;
	}
	h->posted = true;
}

static void ho_on_post(struct src_handover *h, struct evhttp_request *req, int status)
{
	char why[HO_WHY_MAX];
	json_t *j;

	if (status == 0) {
		ho_phase_error(h, why, sizeof(why));
		ho_fail(h, "did not take the migration: %s", why);
		return;
	}
	if (status != 202 && status != HTTP_OK && status != 201) {
		ho_http_error(req, status, why, sizeof(why));
		ho_fail(h, "refused: %s", why);
		return;
	}
	j = ho_body_json(req);
	if (j)
		ho_mirror(h, j);
	json_decref(j);
	log_info("migration %s: destination agent %s took it (HTTP %d)", h->m->id, h->name, status);
	h->phase = HO_POLL;
	ho_schedule(h, HO_POLL_MS);
}

static bool ho_dest_final(const char *st)
{
	enum api_state s;

	return api_state_parse(st, &s) == 0 && api_state_is_final(s);
}

/*
 * The watch's lateness, asked by its tick and by whatever judges a
 * deadline first (an answer read in the same wakeup as the late tick):
 * the time lost moves every request's start, the last answer's time and
 * the polling's end forward.  Nothing while the watch is off (its clock
 * is stale then, and no deadline runs).
 */
static void ho_catch_up(struct src_handover *h, uint64_t now)
{
	uint64_t gap;

	if (!evtimer_pending(h->watch, NULL))
		return;
	gap = tickclock_gap(&h->watch_clk, now, h->watch_name);
	if (!gap)
		return;
	h->req_sent_ns = tickclock_shift(h->req_sent_ns, gap, now);
	h->del_sent_ns = tickclock_shift(h->del_sent_ns, gap, now);
	h->ask_sent_ns = tickclock_shift(h->ask_sent_ns, gap, now);
	h->answered_ns = tickclock_shift(h->answered_ns, gap, now);
	if (h->source_final_ns)
		h->source_final_ns = tickclock_shift(h->source_final_ns, gap, now);
}

/* After a poll: go on, end, or fail the source when the destination gave up before fetching. */
static void ho_after_poll(struct src_handover *h)
{
	struct src_migration *m = h->m;
	const struct src_dest_report *r = &m->dr;
	uint64_t now = now_ns();
	char why[SRC_MIG_ERROR_MAX];

	/* Before the linger is judged: a late tick may not have run yet. */
	ho_catch_up(h, now);
	if (src_mig_final(m) && !h->source_final_ns)
		h->source_final_ns = now;
	if (!h->unreachable && ho_dest_final(r->state)) {
		bool gave_up = strcmp(r->state, "done") != 0;

		if (!gave_up && src_mig_final(m)) {
			ho_end(h);
			return;
		}
		/*
		 * The destination ended without the pages: nobody will fetch
		 * them, so the source fails too and keeps the checkpoint.  A
		 * session still open decides first.
		 */
		if (gave_up && !src_mig_final(m) && m->state != SRC_MIG_SERVING && !m->busy) {
			if (snprintf(why, sizeof(why),
				     "destination agent %s: the migration %s there%s%s", h->name,
				     r->state, r->error[0] ? ": " : "",
				     r->error) >= (int)sizeof(why))
				log_debug("migration %s: the destination's error was cut", m->id);
			log_err("migration %s: %s; the checkpoint stays in %s for a rollback",
				m->id, why, m->dir);
			src_session_cancel(h->a, m, "the destination agent gave the migration up");
			src_mig_finish(m, SRC_MIG_FAILED, why);
			ho_end(h);
			return;
		}
		if (gave_up && src_mig_final(m)) {
			ho_end(h);
			return;
		}
	}
	if (h->source_final_ns && now - h->source_final_ns > HO_LINGER_MS * 1000000ull) {
		ho_end(h);
		return;
	}
	ho_schedule(h, HO_POLL_MS);
}

static void ho_on_poll(struct src_handover *h, struct evhttp_request *req, int status)
{
	char why[HO_WHY_MAX];
	json_t *j = status == HTTP_OK ? ho_body_json(req) : NULL;

	if (j && json_is_object(j)) {
		if (h->unreachable)
			log_info("migration %s: destination agent %s answers again", h->m->id,
				 h->name);
		h->unreachable = false;
		ho_mirror(h, j);
	} else {
		if (status == 0)
			ho_phase_error(h, why, sizeof(why));
		else
			ho_http_error(req, status, why, sizeof(why));
		if (!h->unreachable)
			log_warn("migration %s: destination agent %s unreachable (%s); the data "
				 "connection decides the migration's fate",
				 h->m->id, h->name, why);
		h->unreachable = true;
		snprintf(h->m->dr.state, sizeof(h->m->dr.state), "unreachable");
	}
	json_decref(j);
	ho_after_poll(h);
}

/* Hands ret and why to cb from the timer: the request's callback is still on the stack. */
static void ho_result(struct src_handover *h, src_handover_result_fn cb, int ret, const char *why)
{
	h->result_cb = cb;
	h->result_ret = ret;
	snprintf(h->result_why, sizeof(h->result_why), "%s", why ? why : "");
	ho_schedule(h, 0);
}

/* The HTTP status of a refusal as the errno the source's API answers with. */
static int ho_status_errno(int status)
{
	switch (status) {
	case 400:
		return -EINVAL;
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return -EBUSY;
	default:
		return -EAGAIN;
	}
}

static void ho_on_reserve(struct src_handover *h, struct evhttp_request *req, int status)
{
	char why[HO_WHY_MAX], text[HO_WHY_MAX];
	bool early = h->early_sent;
	const char *rid;
	json_t *j;
	int ret;

	h->phase = HO_IDLE;
	h->early_sent = false; /* until the agent granted it */
	if (status == 0) {
		ho_phase_error(h, text, sizeof(text));
		ho_why(why, sizeof(why), "destination agent %s unreachable: %s", h->name, text);
		ho_result(h, h->reserve_cb, -EHOSTUNREACH, why);
		return;
	}
	/*
	 * A container's bundle is checked at the reservation: a 404 then is
	 * the bundle missing there (or an agent that cannot check it), a refusal.
	 */
	if (status == 404 && !h->dest_bundle) {
		/* An agent older than reservations: the route is unknown there. */
		ho_result(h, h->reserve_cb, -EOPNOTSUPP, "");
		return;
	}
	j = ho_body_json(req);
	rid = status == 201 ? json_string_value(json_object_get(j, "id")) : NULL;
	if (status != 201 || !rid || !migration_id_valid(rid)) {
		if (status == 201)
			ho_why(text, sizeof(text), "an answer without a reservation id (HTTP 201)");
		else
			ho_http_error(req, status, text, sizeof(text));
		ho_why(why, sizeof(why), "destination agent %s refused the reservation: %s",
		       h->name, text);
		ret = status == 201 ? -EPROTO : ho_status_errno(status);
		/* Its slots are full: one frees when a migration there ends (the source's queue).
		 */
		if (status == 503 &&
		    json_is_string(json_object_get(json_object_get(j, "error"), "code")) &&
		    strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
			   API_CODE_NO_SLOT) == 0)
			ret = -EUSERS;
		json_decref(j);
		ho_result(h, h->reserve_cb, ret, why);
		return;
	}
	snprintf(h->reservation, sizeof(h->reservation), "%s", rid);
	h->early_sent = early;
	log_info("migration %s: destination agent %s reserved a slot and %" PRIu64
		 " bytes for it (reservation %s, until %s)",
		 h->m->id, h->name, h->reserve_bytes, rid,
		 json_string_value(json_object_get(j, "expires")) ?: "?");
	json_decref(j);
	ho_result(h, h->reserve_cb, 0, "");
}

static int ho_reserve_send(struct src_handover *h);

/*
 * The health answer before a reservation: an agent that takes a "start"
 * says so (reservation_start); any other answer, even none, leaves the
 * reservation as it was before, which judges the agent itself.
 */
static void ho_on_reserve_ask(struct src_handover *h, struct evhttp_request *req, int status)
{
	json_t *j = status == HTTP_OK ? ho_body_json(req) : NULL;

	h->early = h->early && json_is_true(json_object_get(j, "reservation_start"));
	h->dest_lazy = json_is_true(json_object_get(j, "lazy_dump"));
	json_decref(j);
	if (!h->early)
		log_info("migration %s: destination agent %s starts no worker at the reservation: "
			 "it starts one at the POST",
			 h->m->id, h->name);
	if (ho_reserve_send(h) < 0) {
		h->phase = HO_IDLE;
		ho_result(h, h->reserve_cb, -EHOSTUNREACH, "the reservation could not be sent");
	}
}

static void ho_done(struct evhttp_request *req, void *arg)
{
	struct src_handover *h = arg;
	int status = req ? evhttp_request_get_response_code(req) : 0;

	h->req = NULL;
	h->answered_ns = now_ns();
	switch (h->phase) {
	case HO_HEALTH:
		ho_on_health(h, req, status);
		break;
	case HO_POST:
		ho_on_post(h, req, status);
		break;
	case HO_POLL:
		ho_on_poll(h, req, status);
		break;
	case HO_RESERVE_ASK:
		ho_on_reserve_ask(h, req, status);
		break;
	case HO_RESERVE:
		ho_on_reserve(h, req, status);
		break;
	case HO_IDLE:
	case HO_READY:
	case HO_ENDED:
		break;
	}
}

static void ho_poll(struct src_handover *h)
{
	char path[32 + API_ID_MAX];

	if (h->req) {
		ho_schedule(h, HO_POLL_MS);
		return;
	}
	snprintf(path, sizeof(path), "/v1/migrations/%s", h->m->id);
	if (ho_request(h, EVHTTP_REQ_GET, path, NULL, HO_POLL_TIMEOUT_S) < 0)
		ho_schedule(h, HO_POLL_MS);
}

static void ho_tick(evutil_socket_t fd, short what, void *arg)
{
	struct src_handover *h = arg;
	src_handover_result_fn cb = h->result_cb;
	char why[HO_WHY_MAX];

	if (h->stale) {
		evhttp_connection_free(h->stale);
		h->stale = NULL;
	}
	if (cb) {
		/* The callback may free h: nothing of it is touched afterwards. */
		h->result_cb = NULL;
		snprintf(why, sizeof(why), "%s", h->result_why);
		if (h->phase == HO_POLL)
			ho_schedule(h, HO_POLL_MS);
		cb(h->m, h->result_ret, why);
		return;
	}
	if (h->phase == HO_POLL) {
		ho_poll(h);
	} else if (h->phase == HO_ENDED && h->conn && !h->del_req && !h->ask_req) {
		evhttp_connection_free(h->conn);
		h->conn = NULL;
		h->req = NULL;
	}
}

/* A request in flight on the connection, as the watch judges it. */
struct ho_call {
	struct evhttp_request **req;
	bool *error;
	enum evhttp_request_error *err;
	uint64_t *sent_ns;
	int timeout_s;
	void (*done)(struct evhttp_request *, void *);
};

static void ho_watch_arm(struct src_handover *h)
{
	struct timeval tv = {HO_WATCH_MS / 1000, (HO_WATCH_MS % 1000) * 1000};

	if (evtimer_pending(h->watch, NULL))
		return;
	tickclock_init(&h->watch_clk, HO_WATCH_MS * 1000000ull, now_ns());
	if (evtimer_add(h->watch, &tv) < 0)
		log_err("%s: cannot watch the requests' timeouts", h->watch_name);
}

static void ho_watch_cb(evutil_socket_t fd, short what, void *arg);

int src_handover_new(struct src_agent *a, struct src_migration *m,
		     const struct src_handover_params *p, struct src_handover **out)
{
	struct src_handover *h;
	int ret = -ENOMEM;

	*out = NULL;
	if (p->secret_len > sizeof(h->secret) || strlen(p->host) > API_HOSTPORT_MAX)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		goto out;
	h->a = a;
	h->m = m;
	h->port = p->port ? p->port : API_DEST_PORT_DEFAULT;
	h->early = !p->no_early;
	snprintf(h->host, sizeof(h->host), "%s", p->host);
	snprintf(h->name, sizeof(h->name), strchr(h->host, ':') ? "[%s]:%u" : "%s:%u", h->host,
		 (unsigned)h->port);
	/* A handover made again only to ask (after a restart) has no secret. */
	if (p->secret_len)
		memcpy(h->secret, p->secret, p->secret_len);
	h->secret_len = p->secret_len;
	snprintf(h->watch_name, sizeof(h->watch_name), "migration %s: destination agent %s", m->id,
		 h->name);
	h->timer = evtimer_new(a->base, ho_tick, h);
	h->watch = event_new(a->base, -1, EV_PERSIST, ho_watch_cb, h);
	if (!h->timer || !h->watch)
		goto out;
	if (p->advertise && !(h->advertise = strdup(p->advertise)))
		goto out;
	if (p->dest_images_dir && !(h->dest_images_dir = strdup(p->dest_images_dir)))
		goto out;
	if (p->dest_bundle && !(h->dest_bundle = strdup(p->dest_bundle)))
		goto out;
	free(m->dest);
	m->dest = strdup(h->name);
	if (!m->dest)
		goto out;
	*out = h;
	h = NULL;
	ret = 0;
out:
	src_handover_free(h);
	return ret;
}

/*
 * A mutual TLS connection to the destination agent: our certificate, its
 * certificate checked against the CA and the host the operator named.
 */
static int ho_connect_tls(struct src_handover *h)
{
	struct bufferevent *bev = NULL;
	SSL *ssl = SSL_new(h->a->tls_client);

	if (!ssl)
		return -ENOMEM;
	if (tls_client_expect_host(ssl, h->host) < 0) {
		SSL_free(ssl);
		return -EINVAL;
	}
	bev = bufferevent_openssl_socket_new(h->a->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
					     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return -ENOMEM;
	}
	/* evhttp frames every answer; a close without close_notify is its end. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	h->conn =
	    evhttp_connection_base_bufferevent_new(h->a->base, h->a->dns, bev, h->host, h->port);
	if (!h->conn) {
		bufferevent_free(bev);
		return -ENOMEM;
	}
	return 0;
}

/* A connection to the destination agent (no I/O until a request is made). */
static int ho_connect(struct src_handover *h)
{
	int ret = 0;

	h->conn_used = false;
	if (h->a->tls_client)
		ret = ho_connect_tls(h);
	else if (!(h->conn = evhttp_connection_base_new(h->a->base, h->a->dns, h->host, h->port)))
		ret = -ENOMEM;
	if (ret < 0)
		return ret;
	evhttp_connection_set_timeout(h->conn, HO_BACKSTOP_TIMEOUT_S);
	evhttp_connection_set_max_body_size(h->conn, HO_BODY_MAX);
	evhttp_connection_set_max_headers_size(h->conn, HO_HEADERS_MAX);
	evhttp_connection_set_retries(h->conn, 0);
	return 0;
}

/* The agent's asynchronous resolver, made on first use. */
static void ho_dns(struct src_agent *a)
{
	if (!a->dns) {
		/* Reads resolv.conf and hosts once; lookups then never block the loop. */
		a->dns = evdns_base_new(a->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (!a->dns)
			log_warn("no asynchronous DNS: destination agents must be given as "
				 "addresses");
	}
}

/* GET /v1/health, on the reservation's connection or a new one: 0, or a negative errno. */
static int ho_health(struct src_handover *h)
{
	int ret = 0;

	h->phase = HO_HEALTH;
	ho_dns(h->a);
	if (!h->conn)
		ret = ho_connect(h);
	if (ret == 0)
		ret = ho_request(h, EVHTTP_REQ_GET, "/v1/health", NULL, HO_POST_TIMEOUT_S);
	return ret;
}

/* Long enough for the dump and the mapping: 2 min, plus 1 s per 64 MiB to write. */
static unsigned int ho_reserve_ttl(uint64_t bytes)
{
	uint64_t ttl = API_RESERVE_TTL_DEFAULT_S + bytes / (64ull << 20);

	return ttl > API_RESERVE_TTL_MAX_S ? API_RESERVE_TTL_MAX_S : (unsigned int)ttl;
}

/*
 * The reservation's body with its "start", the POST's fields as text
 * spliced in (ho_post_body() says why); NULL start: none.
 */
static int ho_reserve_body(json_t *j, const char *start, char **out)
{
	char *rest = json_dumps(j, JSON_COMPACT), *body;
	size_t len;

	*out = NULL;
	if (!rest || rest[0] != '{') {
		free(rest);
		return -ENOMEM;
	}
	if (!start) {
		*out = rest;
		return 0;
	}
	len = strlen(rest) + strlen(",\"start\":") + strlen(start);
	body = malloc(len + 1);
	if (body) {
		rest[strlen(rest) - 1] = '\0'; /* its closing brace */
		snprintf(body, len + 1, "%s,\"start\":%s}", rest, start);
	}
	free(rest);
	*out = body;
	return body ? 0 : -ENOMEM;
}

/* The reservation's "start" body, or NULL without one (nothing to say then). */
static char *ho_start_body(struct src_handover *h)
{
	char *start = NULL;
	int ret;

	if (!h->early || !h->secret_len)
		return NULL;
	ret = ho_source_endpoint(h, h->early_source, sizeof(h->early_source));
	if (ret == 0)
		ret = ho_post_body(h, h->early_source, true, &start);
	if (ret < 0) {
		log_warn("migration %s: no worker started at the reservation (%s): destination "
			 "agent %s starts one at the POST",
			 h->m->id, strerror(-ret), h->name);
		return NULL;
	}
	return start;
}

int src_handover_reserve(struct src_handover *h, uint64_t bytes, src_handover_result_fn cb)
{
	int ret;

	h->reserve_cb = cb;
	h->reserve_bytes = bytes;
	ho_dns(h->a);
	ret = h->conn ? 0 : ho_connect(h);
	if (ret < 0)
		return ret;
	/* Its health tells whether it takes a start, and a lazy dump. */
	if (!h->early && !h->m->lazy_dump)
		return ho_reserve_send(h);
	h->phase = HO_RESERVE_ASK;
	ret = ho_request(h, EVHTTP_REQ_GET, "/v1/health", NULL, HO_POST_TIMEOUT_S);
	if (ret < 0)
		h->phase = HO_IDLE;
	return ret;
}

bool src_handover_takes_lazy(const struct src_handover *h)
{
	return h->dest_lazy;
}

bool src_handover_early_sent(const struct src_handover *h)
{
	return h && h->early_sent;
}

static int ho_reserve_send(struct src_handover *h)
{
	uint64_t bytes = h->reserve_bytes;
	json_t *j = json_object();
	char *body = NULL, *start = NULL;
	int ret = -ENOMEM;

	if (!j || json_object_set_new(j, "migration", json_string(h->m->id)) < 0 ||
	    json_object_set_new(j, "bytes", json_integer((json_int_t)bytes)) < 0 ||
	    json_object_set_new(j, "ttl_s", json_integer(ho_reserve_ttl(bytes))) < 0 ||
	    (h->dest_images_dir &&
	     json_object_set_new(j, "images_dir", json_string(h->dest_images_dir)) < 0) ||
	    (h->dest_bundle && json_object_set_new(j, "bundle", json_string(h->dest_bundle)) < 0))
		goto out;
	start = ho_start_body(h);
	ret = ho_reserve_body(j, start, &body);
	if (ret < 0)
		goto out;
	h->early_sent = start != NULL;
	h->phase = HO_RESERVE;
	ret = ho_request(h, EVHTTP_REQ_POST, "/v1/reservations", body, HO_POST_TIMEOUT_S);
	body = NULL; /* the request's, whatever happened */
	if (ret == 0)
		log_info("migration %s: reserving a slot and %" PRIu64
			 " bytes on destination agent %s before the freeze%s",
			 h->m->id, bytes, h->name,
			 h->early_sent ? ", its worker started at once" : "");
	else
		h->phase = HO_IDLE;
out:
	if (start)
		ho_body_cleanup(start, strlen(start), NULL);
	if (body)
		ho_body_cleanup(body, strlen(body), NULL);
	json_decref(j);
	return ret;
}

const char *src_handover_reservation(const struct src_handover *h)
{
	return h && h->reservation[0] ? h->reservation : NULL;
}

void src_handover_prepare(struct src_handover *h)
{
	if (!h || h->phase != HO_IDLE)
		return;
	log_info("migration %s: checking destination agent %s during the dump", h->m->id, h->name);
	if (ho_health(h) < 0) {
		/* No answer will come: begin() starts over on a new connection. */
		if (h->conn)
			evhttp_connection_free(h->conn);
		h->conn = NULL;
		h->phase = HO_IDLE;
	}
}

void src_handover_begin(struct src_handover *h)
{
	if (!h || h->serving)
		return;
	h->serving = true;
	if (h->phase == HO_READY) {
		log_info("migration %s serves: asking destination agent %s to take it (its health "
			 "checked during the dump)",
			 h->m->id, h->name);
		ho_post(h);
		return;
	}
	/* A health check still in flight goes on to the POST when answered. */
	if (h->phase != HO_IDLE)
		return;
	log_info("migration %s serves: asking destination agent %s to take it", h->m->id, h->name);
	if (ho_health(h) < 0)
		ho_fail(h, "unreachable: the request could not be sent");
}

void src_handover_follow(struct src_handover *h)
{
	if (!h || h->phase != HO_IDLE)
		return;
	h->serving = true;
	h->posted = true;
	h->phase = HO_POLL;
	ho_dns(h->a);
	log_info("migration %s: following destination agent %s again after the restart", h->m->id,
		 h->name);
	ho_schedule(h, 0);
}

static void ho_release_done(struct evhttp_request *req, void *arg)
{
	struct src_handover *h = arg;
	int status = req ? evhttp_request_get_response_code(req) : 0;
	char why[HO_WHY_MAX];

	h->del_req = NULL;
	h->answered_ns = now_ns();
	if (status == HTTP_OK || status == 404) {
		log_info("migration %s: its reservation %s on destination agent %s is released "
			 "(HTTP %d)",
			 h->m->id, h->reservation, h->name, status);
	} else {
		if (status == 0)
			ho_transport_error(h, h->del_error, h->del_err, HO_ABORT_TIMEOUT_S,
					   h->del_sent_ns, why, sizeof(why));
		else
			ho_http_error(req, status, why, sizeof(why));
		log_warn("migration %s: its reservation %s on destination agent %s is not "
			 "released (%s): it expires there on its own",
			 h->m->id, h->reservation, h->name, why);
	}
	if (h->release_cb)
		ho_result(h, h->release_cb, 0, "");
	else
		ho_schedule(h, 0);
}

static void ho_delete_error_cb(enum evhttp_request_error e, void *arg);

/*
 * A reservation that no POST used is given back at once (best effort,
 * like the abort's DELETE): the slot need not wait for its TTL.
 */
static void ho_release(struct src_handover *h)
{
	char path[32 + API_ID_MAX];

	if (!h->reservation[0] || h->posted || h->released || h->del_req)
		return;
	snprintf(path, sizeof(path), "/v1/reservations/%s", h->reservation);
	h->del_error = false;
	h->del_sent_ns = now_ns();
	if (ho_send(h, EVHTTP_REQ_DELETE, path, NULL, ho_release_done, ho_delete_error_cb,
		    &h->del_req) == 0)
		log_info("migration %s: releasing its reservation %s on destination agent %s",
			 h->m->id, h->reservation, h->name);
	/* Once: a failure is left to the TTL. */
	h->released = true;
}

static void ho_ask_error_cb(enum evhttp_request_error e, void *arg)
{
	struct src_handover *h = arg;

	h->ask_error = true;
	h->ask_err = e;
}

/*
 * Whether the destination agent's view j (HTTP 200) says the workload
 * cannot run there: 0 with why, or -EBUSY with why.
 */
static int ho_judge_stopped(struct src_handover *h, const json_t *j, char *why, size_t len)
{
	const char *st = json_string_value(json_object_get(j, "state"));
	const char *err = json_string_value(json_object_get(j, "error"));
	enum api_state s;

	if (!st || api_state_parse(st, &s) < 0) {
		ho_why(why, len, "destination agent %s reports no state for it", h->name);
		return -EBUSY;
	}
	if (s == API_STATE_FAILED || s == API_STATE_ABORTED) {
		/* Its worker ended: it stops every process that still needs pages. */
		ho_why(why, len, "destination agent %s: the migration is %s there%s%.120s", h->name,
		       st, err ? ": " : "", err ? err : "");
		return 0;
	}
	if (s == API_STATE_DONE) {
		ho_why(why, len,
		       "destination agent %s: the migration is done there, the workload runs "
		       "there",
		       h->name);
		return -EBUSY;
	}
	ho_why(why, len,
	       "destination agent %s: the migration is %s there and the workload may run "
	       "there; abort it there (or wait for it to end)",
	       h->name, st);
	return -EBUSY;
}

static void ho_ask_done(struct evhttp_request *req, void *arg)
{
	struct src_handover *h = arg;
	int status = req ? evhttp_request_get_response_code(req) : 0;
	char why[HO_WHY_MAX], text[HO_WHY_MAX];
	json_t *j = status == HTTP_OK ? ho_body_json(req) : NULL;
	int ret;

	h->ask_req = NULL;
	h->answered_ns = now_ns();
	if (j && json_is_object(j)) {
		ret = ho_judge_stopped(h, j, why, sizeof(why));
	} else if (status == 404) {
		/* Not "stopped": an agent that restarted forgets, and its workers may still run. */
		ho_why(why, sizeof(why),
		       "destination agent %s does not know the migration (restarted, or it "
		       "forgot it): it cannot confirm that the workload is stopped",
		       h->name);
		ret = -EBUSY;
	} else {
		if (status == 0)
			ho_transport_error(h, h->ask_error, h->ask_err, HO_POLL_TIMEOUT_S,
					   h->ask_sent_ns, text, sizeof(text));
		else
			ho_http_error(req, status, text, sizeof(text));
		ho_why(why, sizeof(why),
		       "destination agent %s is unreachable (%s): it cannot confirm that the "
		       "workload is stopped",
		       h->name, text);
		ret = -EHOSTUNREACH;
	}
	json_decref(j);
	ho_result(h, h->ask_cb, ret, why);
}

/* One question (GET path) outside the phases: its answer goes to done, within HO_POLL_TIMEOUT_S. */
static int ho_ask(struct src_handover *h, const char *path,
		  void (*done)(struct evhttp_request *, void *))
{
	ho_dns(h->a);
	h->ask_done = done;
	h->ask_error = false;
	h->ask_sent_ns = now_ns();
	return ho_send(h, EVHTTP_REQ_GET, path, NULL, done, ho_ask_error_cb, &h->ask_req);
}

int src_handover_ask_stopped(struct src_handover *h, src_handover_result_fn cb)
{
	char path[32 + API_ID_MAX];
	int ret;

	if (h->ask_req || h->result_cb)
		return -EBUSY;
	snprintf(path, sizeof(path), "/v1/migrations/%s", h->m->id);
	h->ask_cb = cb;
	ret = ho_ask(h, path, ho_ask_done);
	if (ret == 0)
		log_info("migration %s: rollback: asking destination agent %s whether the "
			 "workload is stopped there",
			 h->m->id, h->name);
	return ret;
}

/*
 * The answer to the recheck before a final dump: the reservation held (200),
 * gone (404: reserved again), or the agent unreachable or refusing.
 */
static void ho_recheck_done(struct evhttp_request *req, void *arg)
{
	struct src_handover *h = arg;
	int status = req ? evhttp_request_get_response_code(req) : 0;
	char why[HO_WHY_MAX], text[HO_WHY_MAX];

	h->ask_req = NULL;
	h->answered_ns = now_ns();
	/* Stopped meanwhile (an abort): its release's DELETE kept the connection. */
	if (h->phase == HO_ENDED)
		return;
	if (status == HTTP_OK) {
		log_info("migration %s: destination agent %s still holds %s%s before the final "
			 "dump",
			 h->m->id, h->name, h->reservation[0] ? "reservation " : "its place",
			 h->reservation);
		ho_result(h, h->ask_cb, 0, "");
		return;
	}
	if (status == 404 && h->reservation[0]) {
		log_warn("migration %s: destination agent %s no longer holds reservation %s "
			 "(expired, released, or the agent restarted): reserving again before "
			 "the final dump",
			 h->m->id, h->name, h->reservation);
		h->reservation[0] = '\0';
		h->reserve_cb = h->ask_cb;
		/* The connection serves one request at a time: the health check's has ended. */
		if (h->req)
			ho_result(h, h->ask_cb, -EBUSY, "another request to it is in flight");
		else if (ho_reserve_send(h) < 0)
			ho_result(h, h->ask_cb, -EHOSTUNREACH,
				  "the new reservation could not be sent");
		return;
	}
	if (status == 0) {
		ho_transport_error(h, h->ask_error, h->ask_err, HO_POLL_TIMEOUT_S, h->ask_sent_ns,
				   text, sizeof(text));
		ho_why(why, sizeof(why), "destination agent %s is unreachable (%s)", h->name, text);
	} else {
		ho_http_error(req, status, text, sizeof(text));
		ho_why(why, sizeof(why), "destination agent %s answered: %s", h->name, text);
	}
	ho_result(h, h->ask_cb, status == 0 ? -EHOSTUNREACH : ho_status_errno(status), why);
}

static int ho_recheck_send(struct src_handover *h)
{
	char path[32 + API_ID_MAX];
	int ret;

	h->recheck_wait = false;
	/* An agent without reservations: its health says whether it is there. */
	if (h->reservation[0])
		snprintf(path, sizeof(path), "/v1/reservations/%s", h->reservation);
	else
		snprintf(path, sizeof(path), "/v1/health");
	ret = ho_ask(h, path, ho_recheck_done);
	if (ret == 0)
		log_info("migration %s: asking destination agent %s whether it still holds %s%s "
			 "before the final dump (the workload runs)",
			 h->m->id, h->name, h->reservation[0] ? "reservation " : "its place",
			 h->reservation);
	return ret;
}

int src_handover_recheck(struct src_handover *h, src_handover_result_fn cb)
{
	if (!h || h->ask_req || h->recheck_wait || h->result_cb || h->serving ||
	    h->phase == HO_RESERVE_ASK || h->phase == HO_RESERVE)
		return -EBUSY;
	h->ask_cb = cb;
	/*
	 * The health check made during the rounds (prepare()) may be in
	 * flight, and may replace the connection when it fails: asked after it.
	 */
	if (h->req) {
		h->recheck_wait = true;
		return 0;
	}
	return ho_recheck_send(h);
}

int src_handover_release(struct src_handover *h, src_handover_result_fn cb)
{
	if (!h || !h->reservation[0] || h->posted || h->released)
		return -ENOENT;
	src_handover_stop(h);
	if (!h->del_req)
		return -EIO;
	h->release_cb = cb;
	return 0;
}

void src_handover_stop(struct src_handover *h)
{
	if (!h)
		return;
	ho_wipe_secret(h);
	h->phase = HO_ENDED;
	evtimer_del(h->timer);
	h->result_cb = NULL;
	ho_release(h);
	/* An abort's DELETE keeps the connection until it is answered (ho_delete_done). */
	if (h->del_req)
		return;
	/* Pending requests go with the connection, without their callbacks. */
	if (h->conn)
		evhttp_connection_free(h->conn);
	h->conn = NULL;
	h->req = NULL;
	h->ask_req = NULL;
	if (h->stale)
		evhttp_connection_free(h->stale);
	h->stale = NULL;
}

static void ho_delete_error_cb(enum evhttp_request_error e, void *arg)
{
	struct src_handover *h = arg;

	h->del_error = true;
	h->del_err = e;
}

static void ho_delete_done(struct evhttp_request *req, void *arg)
{
	struct src_handover *h = arg;
	int status = req ? evhttp_request_get_response_code(req) : 0;
	const char *id = h->m->id;
	char why[HO_WHY_MAX];

	h->del_req = NULL;
	h->answered_ns = now_ns();
	if (status == 0) {
		ho_transport_error(h, h->del_error, h->del_err, HO_ABORT_TIMEOUT_S, h->del_sent_ns,
				   why, sizeof(why));
		log_warn("migration %s: destination agent %s could not be told to abort it: %s", id,
			 h->name, why);
	} else if (status == 202) {
		log_info("migration %s: destination agent %s aborts it too (HTTP 202)", id,
			 h->name);
	} else if (status == HTTP_OK) {
		log_info("migration %s: destination agent %s had ended it already (HTTP 200)", id,
			 h->name);
	} else {
		ho_http_error(req, status, why, sizeof(why));
		log_warn("migration %s: destination agent %s did not abort it: %s", id, h->name,
			 why);
	}
	/* Not from inside the connection's own callback: the timer frees it (HO_ENDED). */
	ho_schedule(h, 0);
}

void src_handover_abort(struct src_handover *h)
{
	char path[32 + API_ID_MAX];

	if (!h)
		return;
	/*
	 * The DELETE goes on the same connection as a POST or poll still in
	 * flight, behind it, so it never overtakes the POST that creates
	 * the migration there.  Their answers are ignored from now on.
	 */
	ho_wipe_secret(h);
	h->phase = HO_ENDED;
	evtimer_del(h->timer);
	if (!h->posted || h->del_req) {
		src_handover_stop(h);
		return;
	}
	if (!h->conn && ho_connect(h) < 0) {
		log_warn("migration %s: destination agent %s could not be told to abort it: %s",
			 h->m->id, h->name, strerror(ENOMEM));
		return;
	}
	snprintf(path, sizeof(path), "/v1/migrations/%s", h->m->id);
	h->del_error = false;
	h->del_sent_ns = now_ns();
	if (ho_send(h, EVHTTP_REQ_DELETE, path, NULL, ho_delete_done, ho_delete_error_cb,
		    &h->del_req) < 0) {
		src_handover_stop(h);
		return;
	}
	log_info("migration %s: telling destination agent %s to abort it too", h->m->id, h->name);
}

/*
 * Every HO_WATCH_MS while a request is in flight or the migration is
 * followed.  A tick that ran late (we were stopped or starved) first
 * moves every deadline forward by the time lost: the destination agent's
 * answer may be waiting in our socket.  Then the request the connection
 * waits for (answered in order: the one sent first, its turn from the
 * previous answer on) gets its answer within its timeout, or it is
 * cancelled and fails as a timeout.
 */
static void ho_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct src_handover *h = arg;
	uint64_t now = now_ns(), start;
	struct ho_call calls[] = {
	    {&h->req, &h->req_error, &h->req_err, &h->req_sent_ns, h->req_timeout_s, ho_done},
	    {&h->del_req, &h->del_error, &h->del_err, &h->del_sent_ns, HO_ABORT_TIMEOUT_S,
	     h->posted ? ho_delete_done : ho_release_done},
	    {&h->ask_req, &h->ask_error, &h->ask_err, &h->ask_sent_ns, HO_POLL_TIMEOUT_S,
	     h->ask_done},
	};
	struct ho_call *c = NULL;
	struct evhttp_request *req;
	size_t i;

	ho_catch_up(h, now);
	for (i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		if (*calls[i].req && (!c || *calls[i].sent_ns < *c->sent_ns))
			c = &calls[i];
	if (!c) {
		if (h->phase != HO_POLL)
			evtimer_del(h->watch);
		return;
	}
	start = *c->sent_ns > h->answered_ns ? *c->sent_ns : h->answered_ns;
	if (now - start <= (uint64_t)c->timeout_s * 1000000000ull)
		return;
	/* libevent calls the error callback (cancelled), never the answer's: that is ours. */
	req = *c->req;
	evhttp_cancel_request(req);
	*c->error = true;
	*c->err = EVREQ_HTTP_TIMEOUT;
	c->done(NULL, h);
}

void src_handover_free(struct src_handover *h)
{
	if (!h)
		return;
	if (h->del_req) {
		log_warn("migration %s: destination agent %s did not answer the abort before the "
			 "agent stopped",
			 h->m->id, h->name);
		h->del_req = NULL;
	}
	src_handover_stop(h);
	if (h->timer)
		event_free(h->timer);
	if (h->watch)
		event_free(h->watch);
	free(h->advertise);
	free(h->dest_images_dir);
	free(h->dest_bundle);
	free(h);
}
