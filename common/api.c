// SPDX-License-Identifier: GPL-2.0-or-later
#include "api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <grp.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "apimetrics.h"
#include "auth.h"
#include "log.h"
#include "offload.h"
#include "promtext.h"
#include "rdmig-config.h"
#include "tls.h"
#include "util.h"

/* Linux's PID_MAX_LIMIT: no pid can be larger. */
#define API_PID_MAX 4194304
/* Room for a dest host name or IPv6 literal. */
#define API_HOST_MAX	253
#define API_HEADERS_MAX (16 * 1024)

/* Why a request was refused before routing (rdmig_api_requests_refused_total). */
enum api_refusal {
	API_REFUSED_UNKNOWN_CALLER,
	API_REFUSED_UID,
	API_REFUSED_HOST,
	API_REFUSED_TLS_PEER,
	API_REFUSED__COUNT,
};

static const char *const api_refusal_names[API_REFUSED__COUNT] = {
    [API_REFUSED_UNKNOWN_CALLER] = "unknown_caller",
    [API_REFUSED_UID] = "uid",
    [API_REFUSED_HOST] = "host",
    [API_REFUSED_TLS_PEER] = "tls_peer",
};

enum api_later_kind {
	API_LATER_START,
	API_LATER_ROLLBACK,
};

struct api_later {
	TAILQ_ENTRY(api_later) link;
	struct api_server *s; /* NULL once the server is gone */
	struct evhttp_request *req;
	enum api_later_kind kind;
	char id[API_ID_MAX + 1];
};

TAILQ_HEAD(api_later_list, api_later);

struct api_server {
	struct event_base *base;
	struct evhttp *http;
	const struct api_ops *ops;
	void *agent;
	enum api_role role;
	bool lazy_dump; /* api_config's, said by the health answer */
	size_t max_body;
	char *sock_path; /* set only for a socket this server bound */
	dev_t sock_dev;
	ino_t sock_ino;
	struct evhttp_bound_socket *tcp_bound;
	int tcp_port;
	bool group_set; /* --api-group: its members may use the UNIX socket too */
	gid_t gid;
	char group[64];
	/* The TCP listener's own evhttp when it speaks TLS (evhttp's bevcb is per evhttp). */
	struct evhttp *https;
	SSL_CTX *tls;
	const char *const *allow;
	size_t nallow;
	/* Reads the start requests' secret files off the loop; made on first use. */
	struct offload *offload;
	unsigned int secret_delay_ms; /* testing: api_config.test_secret_delay_ms */
	const void *prepare_ctx;      /* api_config.prepare_ctx */
	bool stopping;		      /* api_server_destroy() under way */
	uint64_t refused[API_REFUSED__COUNT];
	uint64_t starts[3]; /* POST /v1/migrations: accepted, busy (503), refused otherwise */
	struct api_later_list laters; /* requests the agent answers later */
};

static const char *const state_names[API_STATE__COUNT] = {
    [API_STATE_PENDING] = "pending",	 [API_STATE_DUMPING] = "dumping",
    [API_STATE_SERVING] = "serving",	 [API_STATE_CONNECTING] = "connecting",
    [API_STATE_RECEIVING] = "receiving", [API_STATE_RESTORING] = "restoring",
    [API_STATE_POSTCOPY] = "postcopy",	 [API_STATE_DRAINING] = "draining",
    [API_STATE_DONE] = "done",		 [API_STATE_FAILED] = "failed",
    [API_STATE_ABORTED] = "aborted",	 [API_STATE_ROLLED_BACK] = "rolled_back",
    [API_STATE_PAUSED] = "paused",	 [API_STATE_QUEUED] = "queued",
};

const char *api_state_str(enum api_state s)
{
	if ((unsigned)s >= API_STATE__COUNT)
		return "unknown";
	return state_names[s];
}

int api_state_parse(const char *s, enum api_state *out)
{
	for (size_t i = 0; i < API_STATE__COUNT; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum api_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool api_state_is_final(enum api_state s)
{
	return s == API_STATE_DONE || s == API_STATE_FAILED || s == API_STATE_ABORTED ||
	       s == API_STATE_ROLLED_BACK;
}

const char *api_role_str(enum api_role r)
{
	return r == API_ROLE_DEST ? "dest" : "source";
}

const char *api_transport_str(enum api_transport t)
{
	return t == API_TRANSPORT_TLS ? "tls" : t == API_TRANSPORT_TCP ? "tcp" : "rdma";
}

int api_error_set(struct api_error *e, int neg_errno, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return neg_errno;
}

int api_error_secret_file(struct api_error *e, int ret, const char *path)
{
	if (ret == -ENOMEM)
		return api_error_set(e, -ENOMEM, "out of memory reading secret_file %s", path);
	return api_error_set(e, -EINVAL, "secret_file %s is not usable: it must be %s", path,
			     AUTH_SECRET_FILE_RULE);
}

void api_migration_view_init(struct api_migration_view *v)
{
	memset(v, 0, sizeof(*v));
	v->fault_p50_us = -1;
	v->fault_p99_us = -1;
	v->drain_depth = -1;
	v->drain_chunk = -1;
	v->fault_lane_reads = -1;
	v->pages_local = -1;
	v->ra_sequential = -1;
	v->ra_strided = -1;
	v->ra_random = -1;
	v->freeze_ms = -1;
	v->precopy_final_pages = -1;
	v->total_ms = -1;
	v->restore_ms = -1;
	v->resumed_ms = -1;
	v->received_ms = -1;
	v->handover_ms = -1;
	v->early_dest_ms = -1;
	v->register_ms = -1;
	v->downtime_ms = -1;
	v->takeovers = -1;
}

/* --- JSON builders ------------------------------------------------------- */

/* Steals value; records a failure in *ok so builders check once at the end. */
static void api_set(json_t *obj, const char *key, json_t *value, bool *ok)
{
	if (!value || json_object_set_new(obj, key, value) < 0)
		*ok = false;
}

static json_t *api_json_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *api_json_u64(uint64_t v)
{
	/* json_int_t is signed 64-bit: clamp instead of wrapping negative. */
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *api_json_opt_i64(int64_t v)
{
	return v < 0 ? json_null() : json_integer(v);
}

static json_t *api_json_time(int64_t unix_ms)
{
	char buf[80];
	struct tm tm;
	time_t t;

	if (unix_ms <= 0)
		return json_null();
	t = (time_t)(unix_ms / 1000);
	if (!gmtime_r(&t, &tm))
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(unix_ms % 1000));
	return json_string(buf);
}

/* {"runtime", "id", "root"} or JSON null without a container; NULL on ENOMEM. */
/* The "precopy" object of a view: null when off. */
static json_t *api_precopy_to_json(const struct api_migration_view *v)
{
	json_t *o, *rounds;
	bool ok = true;

	if (v->precopy == API_PRECOPY_OFF)
		return json_null();
	o = json_object();
	rounds = json_array();
	if (!o || !rounds) {
		json_decref(o);
		json_decref(rounds);
		return NULL;
	}
	for (size_t i = 0; i < v->nr_precopy_rounds; i++) {
		const struct api_precopy_round *r = &v->precopy_rounds[i];
		json_t *jr = json_pack("{s:I,s:I,s:I,s:I}", "pages", (json_int_t)r->pages, "bytes",
				       (json_int_t)r->bytes, "ms", (json_int_t)r->ms,
				       "dirty_pages_per_s", (json_int_t)r->dirty_rate);

		if (!jr || json_array_append_new(rounds, jr) < 0)
			ok = false;
	}
	api_set(o, "requested",
		v->precopy == API_PRECOPY_AUTO ? json_string("auto") : json_integer(v->precopy),
		&ok);
	api_set(o, "rounds", rounds, &ok);
	api_set(o, "final_pages", api_json_opt_i64(v->precopy_final_pages), &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *api_container_to_json(const struct api_container *c)
{
	if (!c->runtime)
		return json_null();
	return json_pack("{s:s, s:s?, s:s?, s:s?}", "runtime", c->runtime, "id", c->id, "root",
			 c->root, "bundle", c->bundle);
}

/* [{"pid", "pattern", "window", "stride"}]: [] on the source and before a fault. */
static json_t *api_ra_tasks_to_json(const struct api_migration_view *v)
{
	json_t *a = json_array();
	bool ok = a != NULL;
	size_t i;

	for (i = 0; ok && i < v->nr_ra_tasks && i < API_RA_TASKS; i++) {
		const struct api_ra_task *r = &v->ra_tasks[i];
		json_t *t = json_object();

		ok = t && json_array_append_new(a, t) == 0;
		if (!ok)
			break;
		api_set(t, "pid", json_integer(r->pid), &ok);
		api_set(t, "pattern", api_json_str(r->pattern), &ok);
		api_set(t, "window", json_integer(r->window), &ok);
		api_set(t, "stride", json_integer(r->stride), &ok);
	}
	if (!ok) {
		json_decref(a);
		return NULL;
	}
	return a;
}

json_t *api_migration_to_json(const struct api_migration_view *v)
{
	json_t *m = json_object(), *progress = json_object(), *lat = json_object(),
	       *times = json_object(), *drain = json_object(), *ra = json_object(),
	       *pause = json_object(), *queue = NULL;
	bool ok = m && progress && lat && times && drain && ra && pause;

	if (!ok)
		goto out;
	api_set(m, "id", api_json_str(v->id), &ok);
	api_set(m, "role", json_string(api_role_str(v->role)), &ok);
	api_set(m, "state", json_string(api_state_str(v->state)), &ok);
	api_set(m, "final", json_boolean(api_state_is_final(v->state)), &ok);
	api_set(m, "error", api_json_str(v->error), &ok);
	api_set(m, "source", api_json_str(v->source), &ok);
	api_set(m, "dest", api_json_str(v->dest), &ok);
	api_set(m, "dest_state", api_json_str(v->dest_state), &ok);
	api_set(m, "transport", json_string(api_transport_str(v->transport)), &ok);
	api_set(m, "pid", v->pid > 0 ? json_integer(v->pid) : json_null(), &ok);
	api_set(m, "container", api_container_to_json(&v->container), &ok);
	api_set(m, "images_dir", api_json_str(v->images_dir), &ok);
	api_set(m, "verify", json_boolean(v->verify), &ok);
	api_set(m, "lazy_dump", json_boolean(v->lazy_dump), &ok);
	api_set(m, "precopy", api_precopy_to_json(v), &ok);

	api_set(progress, "pages_total", api_json_u64(v->pages_total), &ok);
	api_set(progress, "pages_fetched", api_json_u64(v->pages_fetched), &ok);
	api_set(progress, "pages_remaining", api_json_u64(v->pages_remaining), &ok);
	api_set(progress, "faults", api_json_u64(v->faults), &ok);
	api_set(progress, "bytes", api_json_u64(v->bytes), &ok);
	api_set(progress, "pages_local", api_json_opt_i64(v->pages_local), &ok);
	api_set(m, "progress", progress, &ok);
	progress = NULL;

	api_set(lat, "fault_p50", api_json_opt_i64(v->fault_p50_us), &ok);
	api_set(lat, "fault_p99", api_json_opt_i64(v->fault_p99_us), &ok);
	api_set(m, "latency_us", lat, &ok);
	lat = NULL;

	api_set(drain, "depth", api_json_opt_i64(v->drain_depth), &ok);
	api_set(drain, "chunk", api_json_opt_i64(v->drain_chunk), &ok);
	api_set(drain, "fault_lane_reads", api_json_opt_i64(v->fault_lane_reads), &ok);
	api_set(m, "drain", drain, &ok);
	drain = NULL;

	api_set(ra, "pattern", api_json_str(v->ra_pattern), &ok);
	api_set(ra, "sequential", api_json_opt_i64(v->ra_sequential), &ok);
	api_set(ra, "strided", api_json_opt_i64(v->ra_strided), &ok);
	api_set(ra, "random", api_json_opt_i64(v->ra_random), &ok);
	api_set(ra, "tasks", api_ra_tasks_to_json(v), &ok);
	api_set(m, "readahead", ra, &ok);
	ra = NULL;

	api_set(times, "created", api_json_time(v->created_unix_ms), &ok);
	api_set(times, "finished", api_json_time(v->finished_unix_ms), &ok);
	api_set(times, "freeze_ms", api_json_opt_i64(v->freeze_ms), &ok);
	api_set(times, "total_ms", api_json_opt_i64(v->total_ms), &ok);
	api_set(times, "restore_ms", api_json_opt_i64(v->restore_ms), &ok);
	api_set(times, "resumed_ms", api_json_opt_i64(v->resumed_ms), &ok);
	api_set(times, "downtime_ms", api_json_opt_i64(v->downtime_ms), &ok);
	api_set(times, "handover_ms", api_json_opt_i64(v->handover_ms), &ok);
	api_set(times, "early_dest_ms", api_json_opt_i64(v->early_dest_ms), &ok);
	api_set(times, "register_ms", api_json_opt_i64(v->register_ms), &ok);
	api_set(times, "received_ms", api_json_opt_i64(v->received_ms), &ok);
	api_set(m, "times", times, &ok);
	times = NULL;

	api_set(pause, "reason", api_json_str(v->pause_reason), &ok);
	api_set(pause, "since", api_json_time(v->pause_since_unix_ms), &ok);
	api_set(pause, "count", api_json_u64(v->pauses), &ok);
	api_set(pause, "total_ms", json_integer(v->paused_ms > 0 ? v->paused_ms : 0), &ok);
	api_set(m, "pause", pause, &ok);
	pause = NULL;
	api_set(m, "takeovers", api_json_opt_i64(v->takeovers), &ok);
	if (v->queue_position) {
		queue = json_object();
		ok = ok && queue;
		if (!ok)
			goto out;
		api_set(queue, "position", api_json_u64(v->queue_position), &ok);
		api_set(queue, "since", api_json_time(v->queue_since_unix_ms), &ok);
		api_set(queue, "reason", api_json_str(v->queue_reason), &ok);
	}
	api_set(m, "queue", queue ? queue : json_null(), &ok);
	queue = NULL;
out:
	json_decref(queue);
	json_decref(pause);
	json_decref(progress);
	json_decref(lat);
	json_decref(times);
	json_decref(drain);
	json_decref(ra);
	if (!ok) {
		json_decref(m);
		return NULL;
	}
	return m;
}

/* --- Request validation ---------------------------------------------------- */

/* Storage that the borrowed pointers of a parsed api_start_req point into. */
struct api_start_buf {
	char id[API_ID_MAX + 1];
	char host[API_HOST_MAX + 1];
	uint8_t secret[API_SECRET_MAX];
};

#define ROLE_SRC (1u << API_ROLE_SOURCE)
#define ROLE_DST (1u << API_ROLE_DEST)
#define ROLE_ANY (ROLE_SRC | ROLE_DST)

struct api_field {
	const char *name;
	json_type type; /* JSON_TRUE stands for "boolean" */
	unsigned roles;
};

static const struct api_field start_fields[] = {
    {"id", JSON_STRING, ROLE_ANY},	    {"pid", JSON_INTEGER, ROLE_SRC},
    {"images_dir", JSON_STRING, ROLE_ANY},  {"dest", JSON_STRING, ROLE_SRC},
    {"source", JSON_STRING, ROLE_DST},	    {"transport", JSON_STRING, ROLE_ANY},
    {"secret", JSON_STRING, ROLE_ANY},	    {"secret_file", JSON_STRING, ROLE_ANY},
    {"verify", JSON_TRUE, ROLE_ANY},	    {"work_dir", JSON_STRING, ROLE_DST},
    {"restore", JSON_TRUE, ROLE_DST},	    {"criu_opts", JSON_OBJECT, ROLE_ANY},
    {"advertise", JSON_STRING, ROLE_SRC},   {"dest_images_dir", JSON_STRING, ROLE_SRC},
    {"reservation", JSON_STRING, ROLE_DST}, {"lazy_dump", JSON_TRUE, ROLE_SRC},
    {"container", JSON_OBJECT, ROLE_ANY},   {"precopy", JSON_NULL, ROLE_SRC},
    {"queue", JSON_TRUE, ROLE_SRC},
};

static const struct api_field container_fields[] = {
    {"runtime", JSON_STRING, ROLE_ANY},
    {"id", JSON_STRING, ROLE_ANY},
    {"root", JSON_STRING, ROLE_ANY},
    {"bundle", JSON_STRING, ROLE_ANY},
};

static const struct api_field criu_fields[] = {
    {"shell_job", JSON_TRUE, ROLE_ANY},	       {"tcp_established", JSON_TRUE, ROLE_ANY},
    {"ext_unix_sk", JSON_TRUE, ROLE_ANY},      {"file_locks", JSON_TRUE, ROLE_ANY},
    {"link_remap", JSON_TRUE, ROLE_ANY},       {"leave_running", JSON_TRUE, ROLE_SRC},
    {"manage_cgroups", JSON_STRING, ROLE_ANY}, {"log_level", JSON_INTEGER, ROLE_ANY},
};

static const char *api_type_name(json_type t)
{
	switch (t) {
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_TRUE:
		return "a boolean";
	case JSON_OBJECT:
		return "an object";
	default:
		return "something else";
	}
}

/*
 * Copies a client-chosen name into buf for a message: printable ASCII only
 * and bounded, so an odd key cannot garble the error or the log.
 */
static const char *api_safe_name(const char *s, char *buf, size_t len)
{
	size_t i;

	if (!s)
		s = "";
	for (i = 0; s[i] && i + 4 < len; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] && i + 4 < len) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* Rejects unknown keys, keys of the other role and wrong types. */
static int api_check_fields(const json_t *obj, const struct api_field *fields, size_t n,
			    enum api_role role, const char *prefix, struct api_error *err)
{
	char name[44];

	for (void *it = json_object_iter((json_t *)obj); it;
	     it = json_object_iter_next((json_t *)obj, it)) {
		const char *key = json_object_iter_key(it);
		const json_t *value = json_object_iter_value(it);
		const struct api_field *f = NULL;

		for (size_t i = 0; i < n; i++) {
			if (strcmp(fields[i].name, key) == 0) {
				f = &fields[i];
				break;
			}
		}
		if (!f)
			return api_error_set(err, -EINVAL, "unknown field \"%s%s\"", prefix,
					     api_safe_name(key, name, sizeof(name)));
		if (!(f->roles & (1u << role)))
			return api_error_set(err, -EINVAL,
					     "field \"%s%s\" is not accepted by the %s agent",
					     prefix, key, api_role_str(role));
		/* JSON_NULL: more than one type, checked where the field is parsed. */
		if (f->type == JSON_NULL)
			continue;
		if (f->type == JSON_TRUE ? !json_is_boolean(value) : json_typeof(value) != f->type)
			return api_error_set(err, -EINVAL, "field \"%s%s\" must be %s", prefix, key,
					     api_type_name(f->type));
	}
	return 0;
}

static int api_check_path(const char *field, const char *p, struct api_error *err)
{
	size_t len = strnlen(p, API_PATH_MAX + 1);

	if (p[0] != '/')
		return api_error_set(err, -EINVAL, "field \"%s\" must be an absolute path", field);
	if (len > API_PATH_MAX)
		return api_error_set(err, -EINVAL, "field \"%s\" is longer than %d bytes", field,
				     API_PATH_MAX);
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return api_error_set(err, -EINVAL,
					     "field \"%s\" contains a control character", field);
	}
	return 0;
}

/* The optional path field of obj into *out (NULL when absent), checked. */
static int api_opt_path(const json_t *obj, const char *field, const char **out,
			struct api_error *err)
{
	const json_t *v = json_object_get(obj, field);
	int ret;

	*out = NULL;
	if (!v)
		return 0;
	ret = api_check_path(field, json_string_value(v), err);
	if (ret == 0)
		*out = json_string_value(v);
	return ret;
}

/* "host", "host:port", "[v6]" or "[v6]:port"; host into buf, port 0 when absent. */
static int api_check_hostport(const char *field, const char *s, char *host, size_t hostlen,
			      uint16_t *port, struct api_error *err)
{
	char portbuf[8];
	bool v6 = s[0] == '[';
	uint64_t v;

	if (strnlen(s, API_HOSTPORT_MAX + 1) > API_HOSTPORT_MAX ||
	    parse_hostport(s, "", host, hostlen, portbuf, sizeof(portbuf)) < 0)
		goto bad;
	for (const char *c = host; *c; c++) {
		bool ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
			  (*c >= 'A' && *c <= 'F') || *c == '.';

		if (v6)
			ok = ok || *c == ':';
		else
			ok = ok || (*c >= 'g' && *c <= 'z') || (*c >= 'G' && *c <= 'Z') ||
			     *c == '-' || *c == '_';
		if (!ok)
			goto bad;
	}
	*port = 0;
	if (portbuf[0]) {
		if (parse_uint(portbuf, 1, 65535, &v) < 0)
			goto bad;
		*port = (uint16_t)v;
	}
	return 0;
bad:
	return api_error_set(err, -EINVAL,
			     "field \"%s\" must be \"host\" or \"host:port\" with a numeric port "
			     "1..65535 (IPv6 in brackets)",
			     field);
}

static int api_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int api_b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict hex into out (at most cap bytes); returns the length or -EINVAL / -ERANGE. */
static long api_hex_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
	if (len % 2)
		return -EINVAL;
	if (len / 2 > cap)
		return -ERANGE;
	for (size_t i = 0; i < len; i += 2) {
		int hi = api_hexval(s[i]), lo = api_hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return (long)(len / 2);
}

/* Strict RFC 4648 base64 with padding, no whitespace. */
static long api_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
	size_t n = 0, pad = 0;

	if (len == 0 || len % 4)
		return -EINVAL;
	if (s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	if (len / 4 * 3 - pad > cap)
		return -ERANGE;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		uint32_t w = 0;

		for (int k = 0; k < 4; k++) {
			bool padpos = i + 4 == len && (size_t)k >= 4 - pad;

			v[k] = padpos ? 0 : api_b64val(s[i + (size_t)k]);
			if (v[k] < 0)
				return -EINVAL;
			w = w << 6 | (uint32_t)v[k];
		}
		out[n++] = (uint8_t)(w >> 16);
		if (i + 4 < len || pad < 2)
			out[n++] = (uint8_t)(w >> 8);
		if (i + 4 < len || pad < 1)
			out[n++] = (uint8_t)w;
	}
	return (long)n;
}

/* Never quotes the value: it is a secret even when malformed. */
static int api_decode_secret(const char *s, size_t len, struct api_start_buf *b, size_t *out_len,
			     struct api_error *err)
{
	long n;

	if (len > 4 && strncmp(s, "hex:", 4) == 0)
		n = api_hex_decode(s + 4, len - 4, b->secret, sizeof(b->secret));
	else if (len > 7 && strncmp(s, "base64:", 7) == 0)
		n = api_b64_decode(s + 7, len - 7, b->secret, sizeof(b->secret));
	else
		return api_error_set(err, -EINVAL,
				     "field \"secret\" must start with \"hex:\" or \"base64:\"");
	if (n == -EINVAL)
		return api_error_set(err, -EINVAL, "field \"secret\" is not valid %s",
				     s[0] == 'h' ? "hex" : "base64");
	if (n < API_SECRET_MIN || n > API_SECRET_MAX)
		return api_error_set(err, -EINVAL, "field \"secret\" must decode to %d..%d bytes",
				     API_SECRET_MIN, API_SECRET_MAX);
	*out_len = (size_t)n;
	return 0;
}

static void api_generate_id(char *buf, size_t len)
{
	uint8_t r[6];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		/* No entropy yet (early boot): ids need to be unique, not secret. */
		uint64_t x = now_ns() ^ ((uint64_t)getpid() << 32);

		memcpy(r, &x, sizeof(r));
	}
	snprintf(buf, len, "m-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
}

/* "precopy": 0..API_PRECOPY_MAX or "auto", with "pid" only, not with "lazy_dump". */
static int api_parse_precopy(const json_t *v, struct api_start_req *r, struct api_error *err)
{
	r->precopy = API_PRECOPY_OFF;
	if (!v)
		return 0;
	if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)
		r->precopy = API_PRECOPY_AUTO;
	else if (json_is_integer(v) && json_integer_value(v) >= 0 &&
		 json_integer_value(v) <= API_PRECOPY_MAX)
		r->precopy = (int)json_integer_value(v);
	else
		return api_error_set(
		    err, -EINVAL, "field \"precopy\" must be an integer from 0 to %d or \"auto\"",
		    API_PRECOPY_MAX);
	if (r->precopy != API_PRECOPY_OFF && r->pid <= 0)
		return api_error_set(err, -EINVAL,
				     "\"precopy\" needs \"pid\": only a dump the agent runs "
				     "can have pre-dump rounds");
	if (r->precopy != API_PRECOPY_OFF && r->lazy_dump == API_LAZY_YES)
		return api_error_set(err, -EINVAL,
				     "\"precopy\" cannot go with \"lazy_dump\": the final dump of "
				     "a pre-copy chain writes its dirty pages, and a lazy dump's "
				     "page server does not serve in-parent ones");
	return 0;
}

static int api_parse_criu(const json_t *obj, enum api_role role, struct api_criu_opts *c,
			  struct api_error *err)
{
	static const char *const cgroup_modes[] = {"soft", "full", "strict", "ignore"};
	const json_t *v;
	int ret;

	c->log_level = -1;
	if (!obj)
		return 0;
	ret = api_check_fields(obj, criu_fields, ARRAY_SIZE(criu_fields), role, "criu_opts.", err);
	if (ret)
		return ret;
	c->shell_job = json_is_true(json_object_get(obj, "shell_job"));
	c->tcp_established = json_is_true(json_object_get(obj, "tcp_established"));
	c->ext_unix_sk = json_is_true(json_object_get(obj, "ext_unix_sk"));
	c->file_locks = json_is_true(json_object_get(obj, "file_locks"));
	c->link_remap = json_is_true(json_object_get(obj, "link_remap"));
	c->leave_running = json_is_true(json_object_get(obj, "leave_running"));
	v = json_object_get(obj, "manage_cgroups");
	if (v) {
		for (size_t i = 0; i < ARRAY_SIZE(cgroup_modes); i++) {
			if (strcmp(json_string_value(v), cgroup_modes[i]) == 0)
				c->manage_cgroups = cgroup_modes[i];
		}
		if (!c->manage_cgroups)
			return api_error_set(err, -EINVAL,
					     "field \"criu_opts.manage_cgroups\" must be one of "
					     "soft, full, strict, ignore");
	}
	v = json_object_get(obj, "log_level");
	if (v) {
		if (json_integer_value(v) < 0 || json_integer_value(v) > 4)
			return api_error_set(err, -EINVAL,
					     "field \"criu_opts.log_level\" must be 0..4");
		c->log_level = (int)json_integer_value(v);
	}
	return 0;
}

/* Validates "container" into c (zeroed: none); c points into obj. */
static int api_parse_container(const json_t *obj, enum api_role role, struct api_container *c,
			       struct api_error *err)
{
	const json_t *v;
	int ret;

	if (!obj)
		return 0;
	ret = api_check_fields(obj, container_fields, ARRAY_SIZE(container_fields), role,
			       "container.", err);
	if (ret)
		return ret;
	v = json_object_get(obj, "runtime");
	if (!v)
		return api_error_set(err, -EINVAL, "field \"container.runtime\" is required");
	if (strcmp(json_string_value(v), API_CONTAINER_RUNTIME) != 0)
		return api_error_set(err, -EINVAL,
				     "field \"container.runtime\" must be \"" API_CONTAINER_RUNTIME
				     "\": the only runtime supported");
	v = json_object_get(obj, "id");
	if (!v)
		return api_error_set(err, -EINVAL, "field \"container.id\" is required");
	if (!container_id_valid(json_string_value(v)))
		return api_error_set(err, -EINVAL,
				     "field \"container.id\" must be " CONTAINER_ID_RULE);
	c->id = json_string_value(v);
	v = json_object_get(obj, "root");
	if (v) {
		ret = api_check_path("container.root", json_string_value(v), err);
		if (ret)
			return ret;
		c->root = json_string_value(v);
	}
	/* The source maps its bundle to this path there; a destination must be told it. */
	v = json_object_get(obj, "bundle");
	if (v) {
		ret = api_check_path("container.bundle", json_string_value(v), err);
		if (ret)
			return ret;
		c->bundle = json_string_value(v);
	} else if (role == API_ROLE_DEST) {
		return api_error_set(err, -EINVAL, "field \"container.bundle\" is required");
	}
	c->runtime = API_CONTAINER_RUNTIME;
	return 0;
}

/* Validates a POST /v1/migrations body into r; r points into root and b. */
static int api_parse_start(enum api_role role, const json_t *root, struct api_start_req *r,
			   struct api_start_buf *b, struct api_error *err)
{
	const char *peer_field = role == API_ROLE_SOURCE ? "dest" : "source";
	const json_t *v;
	int ret;

	memset(r, 0, sizeof(*r));
	r->role = role;
	r->restore = true;
	r->queue = true;
	ret = api_check_fields(root, start_fields, ARRAY_SIZE(start_fields), role, "", err);
	if (ret)
		return ret;

	v = json_object_get(root, "id");
	if (v) {
		if (!migration_id_valid(json_string_value(v)))
			return api_error_set(err, -EINVAL,
					     "field \"id\" must be " MIGRATION_ID_RULE);
		snprintf(b->id, sizeof(b->id), "%s", json_string_value(v));
	} else {
		api_generate_id(b->id, sizeof(b->id));
		r->id_generated = true;
	}
	r->id = b->id;

	v = json_object_get(root, "transport");
	if (v) {
		if (strcmp(json_string_value(v), "rdma") == 0)
			r->transport = API_TRANSPORT_RDMA;
		else if (strcmp(json_string_value(v), "tcp") == 0)
			r->transport = API_TRANSPORT_TCP;
		else if (strcmp(json_string_value(v), "tls") == 0)
			r->transport = API_TRANSPORT_TLS;
		else
			return api_error_set(
			    err, -EINVAL,
			    "field \"transport\" must be \"rdma\", \"tcp\" or \"tls\"");
		r->transport_set = true;
	}

	v = json_object_get(root, peer_field);
	if (v) {
		r->peer = json_string_value(v);
		ret = api_check_hostport(peer_field, r->peer, b->host, sizeof(b->host),
					 &r->peer_port, err);
		if (ret)
			return ret;
		r->peer_host = b->host;
	}

	ret = api_opt_path(root, "images_dir", &r->images_dir, err);
	if (ret)
		return ret;
	v = json_object_get(root, "pid");
	if (v) {
		json_int_t pid = json_integer_value(v);

		if (pid < 1 || pid > API_PID_MAX)
			return api_error_set(err, -EINVAL, "field \"pid\" must be 1..%d",
					     API_PID_MAX);
		r->pid = (pid_t)pid;
	}
	ret = api_parse_container(json_object_get(root, "container"), role, &r->container, err);
	if (ret)
		return ret;
	if (role == API_ROLE_SOURCE &&
	    (r->pid > 0) + (r->images_dir != NULL) + (r->container.runtime != NULL) != 1)
		return api_error_set(err, -EINVAL,
				     "give exactly one of \"pid\" (dump a running process), "
				     "\"container\" (checkpoint a container) or "
				     "\"images_dir\" (serve existing images)");
	/* The source needs no "dest": an orchestrator may start the destination itself. */
	if (!r->peer && role == API_ROLE_DEST)
		return api_error_set(err, -EINVAL, "field \"%s\" is required", peer_field);

	v = json_object_get(root, "advertise");
	if (v) {
		char host[API_HOST_MAX + 1];
		uint16_t port;

		if (!r->peer)
			return api_error_set(err, -EINVAL, "field \"advertise\" needs \"dest\"");
		ret = api_check_hostport("advertise", json_string_value(v), host, sizeof(host),
					 &port, err);
		if (ret)
			return ret;
		r->advertise = json_string_value(v);
	}
	v = json_object_get(root, "dest_images_dir");
	if (v) {
		if (!r->peer)
			return api_error_set(err, -EINVAL,
					     "field \"dest_images_dir\" needs \"dest\"");
		ret = api_check_path("dest_images_dir", json_string_value(v), err);
		if (ret)
			return ret;
		r->dest_images_dir = json_string_value(v);
	}

	ret = api_opt_path(root, "work_dir", &r->work_dir, err);
	if (!ret)
		ret = api_opt_path(root, "secret_file", &r->secret_file, err);
	if (ret)
		return ret;
	v = json_object_get(root, "secret");
	if (v) {
		if (r->secret_file)
			return api_error_set(err, -EINVAL,
					     "give \"secret\" or \"secret_file\", not both");
		ret = api_decode_secret(json_string_value(v), json_string_length(v), b,
					&r->secret_len, err);
		if (ret)
			return ret;
		r->secret = b->secret;
	}

	v = json_object_get(root, "reservation");
	if (v) {
		if (!migration_id_valid(json_string_value(v)))
			return api_error_set(err, -EINVAL,
					     "field \"reservation\" must be " MIGRATION_ID_RULE);
		r->reservation = json_string_value(v);
	}

	r->verify = json_is_true(json_object_get(root, "verify"));
	v = json_object_get(root, "lazy_dump");
	r->lazy_dump = !v ? API_LAZY_AUTO : json_is_true(v) ? API_LAZY_YES : API_LAZY_NO;
	if (r->lazy_dump == API_LAZY_YES && r->pid <= 0)
		return api_error_set(err, -EINVAL,
				     "\"lazy_dump\" needs \"pid\": only a dump the agent runs "
				     "can be lazy");
	ret = api_parse_precopy(json_object_get(root, "precopy"), r, err);
	if (ret)
		return ret;
	v = json_object_get(root, "restore");
	if (v)
		r->restore = json_is_true(v);
	v = json_object_get(root, "queue");
	if (v)
		r->queue = json_is_true(v);
	/* Only the agent's own runc restore brings a container back under its id. */
	if (r->container.runtime && !r->restore)
		return api_error_set(err, -EINVAL, "field \"container\" needs \"restore\"");
	return api_parse_criu(json_object_get(root, "criu_opts"), role, &r->criu, err);
}

int api_start_parse(enum api_role role, const json_t *root, struct api_start_req *r,
		    struct api_start_buf **buf, struct api_error *err)
{
	*buf = calloc(1, sizeof(**buf));
	if (!*buf)
		return -ENOMEM;
	return api_parse_start(role, root, r, *buf, err);
}

void api_start_buf_free(struct api_start_buf *b)
{
	if (b)
		explicit_bzero(b, sizeof(*b));
	free(b);
}

/* --- HTTP plumbing ------------------------------------------------------- */

static const char *api_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 421:
		return "Misdirected Request";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

static const char *api_code_for(int status)
{
	switch (status) {
	case 400:
		return "invalid_request";
	case 403:
		return "forbidden";
	case 404:
		return "not_found";
	case 405:
		return "method_not_allowed";
	case 409:
		return "conflict";
	case 413:
		return "payload_too_large";
	case 415:
		return "unsupported_media_type";
	case 421:
		return "misdirected_request";
	case 501:
		return "not_implemented";
	case 503:
		return "unavailable";
	default:
		return "internal";
	}
}

static int api_status_from_errno(int neg_errno)
{
	switch (neg_errno) {
	case -EINVAL:
		return 400;
	case -EPERM:
	case -EACCES:
		return 403;
	case -ENOENT:
		return 404;
	case -EEXIST:
	case -EBUSY:
	case -EALREADY:
		return 409;
	case -EOPNOTSUPP:
		return 501;
	case -EAGAIN:
	case -EUSERS:
	case -ENOSPC:
	case -ENOMEM:
	case -EMFILE:
	case -ENFILE:
		return 503;
	default:
		return 500;
	}
}

static const char *api_method_str(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "?";
	}
}

/* Sends body (stolen) with status; falls back to a fixed 500 if it cannot be encoded. */
static void api_reply(struct evhttp_request *req, int status, json_t *body)
{
	static const char oom[] =
	    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	evhttp_add_header(hdr, "Content-Type", "application/json");
	evhttp_add_header(hdr, "Cache-Control", "no-store");
	/* evhttp would send a HEAD response's body too. */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		status = text ? status : 500;
	} else if (!text || evbuffer_add(out, text, strlen(text)) < 0 ||
		   evbuffer_add(out, "\n", 1) < 0) {
		evbuffer_drain(out, evbuffer_get_length(out));
		evbuffer_add(out, oom, sizeof(oom) - 1);
		status = 500;
	}
	evhttp_send_reply(req, status, api_reason(status), NULL);
	free(text);
	json_decref(body);
}

static void api_reply_error(struct evhttp_request *req, int status, const char *code,
			    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void api_reply_error(struct evhttp_request *req, int status, const char *code,
			    const char *fmt, ...)
{
	char msg[API_ERROR_MSG_MAX], uri[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_debug("api: %s %s: %d %s", api_method_str(evhttp_request_get_command(req)),
		  api_safe_name(evhttp_request_get_uri(req), uri, sizeof(uri)), status, msg);
	api_reply(req, status,
		  json_pack("{s:{s:s,s:s}}", "error", "code", code ? code : api_code_for(status),
			    "message", msg));
}

/* Answers a failed callback: its message, or one built from the errno. */
static void api_reply_failure(struct evhttp_request *req, int ret, const struct api_error *err,
			      const char *what, const char *id)
{
	int status = err->status ? err->status : api_status_from_errno(ret);
	/* No free slot, unlike other 503s: waiting for a migration to end cures it. */
	const char *code = ret == -EUSERS ? API_CODE_NO_SLOT : NULL;

	if (status < 400 || status > 599)
		status = 500;
	if (err->message[0])
		api_reply_error(req, status, code, "%s", err->message);
	else if (ret == -ENOENT)
		api_reply_error(req, status, NULL, "no migration \"%s\"", id);
	else if (ret == -EEXIST)
		api_reply_error(req, status, NULL, "migration \"%s\" already exists", id);
	else if (ret == -EBUSY || ret == -EALREADY)
		api_reply_error(req, status, NULL, "%s %s is not possible in its current state",
				what, id);
	else if (status == 503)
		api_reply_error(req, status, NULL, "%s %s: the agent cannot take it now (%s)", what,
				id, strerror(-ret));
	else
		api_reply_error(req, status, NULL, "%s %s failed: %s", what, id, strerror(-ret));
}

/* Writes the migration as JSON (or a minimal stand-in if the agent lost it). */
static json_t *api_resource(struct api_server *s, const char *id)
{
	struct api_migration_view v;

	api_migration_view_init(&v);
	v.id = id;
	v.role = s->role;
	if (s->ops->get(s->agent, id, &v) < 0)
		return json_pack("{s:s}", "id", id);
	return api_migration_to_json(&v);
}

static void api_method_not_allowed(struct evhttp_request *req, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	api_reply_error(req, 405, NULL, "%s is not allowed here (allowed: %s)",
			api_method_str(evhttp_request_get_command(req)), allow[0] ? allow : "none");
}

struct api_count {
	json_int_t total;
	json_int_t active;
};

static int api_count_cb(void *ctx, const struct api_migration_view *v)
{
	struct api_count *c = ctx;

	c->total++;
	if (!api_state_is_final(v->state))
		c->active++;
	return 0;
}

static void api_handle_health(struct api_server *s, struct evhttp_request *req)
{
	struct api_count c = {0};
	int ret = s->ops->list(s->agent, api_count_cb, &c);

	if (ret < 0) {
		api_reply_error(req, 500, NULL, "cannot list migrations: %s", strerror(-ret));
		return;
	}
	/* A destination with reservations takes their "start" (design.md §10.3). */
	api_reply(req, 200,
		  json_pack("{s:s,s:s,s:s,s:I,s:I,s:b,s:b}", "status", "ok", "role",
			    api_role_str(s->role), "version", RDMIG_VERSION, "migrations", c.total,
			    "active", c.active, "reservation_start",
			    s->role == API_ROLE_DEST && s->ops->reserve != NULL, "lazy_dump",
			    s->role == API_ROLE_DEST && s->lazy_dump));
}

/* The refusals this module counted, then the series of every agent and the agent's own. */
static int api_metrics_fill(struct api_server *s, struct evbuffer *b)
{
	int ret = apimetrics_write(b, s->role, s->ops, s->agent);

	if (!ret && s->ops->metrics)
		ret = s->ops->metrics(s->agent, b);
	if (ret)
		return ret;
	if (prom_family(b, "rdmig_api_requests_refused_total", PROM_COUNTER,
			"API requests refused before routing: caller not identified, uid not "
			"allowed on the UNIX socket, non-loopback Host on loopback TCP, TLS "
			"certificate not in --allow-peer") < 0)
		return -ENOMEM;
	for (int i = 0; i < API_REFUSED__COUNT; i++) {
		const char *l[] = {"reason", api_refusal_names[i], NULL};

		if (prom_u64(b, "rdmig_api_requests_refused_total", l, s->refused[i]) < 0)
			return -ENOMEM;
	}
	if (prom_family(b, "rdmig_api_migration_starts_total", PROM_COUNTER,
			"POST /v1/migrations with a valid body: accepted, refused because the "
			"agent is busy or stopping (503), refused otherwise") < 0)
		return -ENOMEM;
	for (int i = 0; i < 3; i++) {
		static const char *const results[] = {"accepted", "busy", "refused"};
		const char *l[] = {"result", results[i], NULL};

		if (prom_u64(b, "rdmig_api_migration_starts_total", l, s->starts[i]) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void api_handle_metrics(struct api_server *s, struct evhttp_request *req)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();
	int ret = b ? api_metrics_fill(s, b) : -ENOMEM;

	if (ret < 0) {
		if (b)
			evbuffer_free(b);
		api_reply_error(req, 500, NULL, "cannot write the metrics: %s", strerror(-ret));
		return;
	}
	evhttp_add_header(hdr, "Content-Type", PROMTEXT_CONTENT_TYPE);
	evhttp_add_header(hdr, "Cache-Control", "no-store");
	/* evhttp would send a HEAD response's body too. */
	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
		evbuffer_add_buffer(out, b);
	evhttp_send_reply(req, 200, "OK", NULL);
	evbuffer_free(b);
}

static int api_list_cb(void *ctx, const struct api_migration_view *v)
{
	json_t *m = api_migration_to_json(v);

	if (!m || json_array_append_new(ctx, m) < 0)
		return -ENOMEM;
	return 0;
}

static void api_handle_list(struct api_server *s, struct evhttp_request *req)
{
	json_t *arr = json_array();
	int ret = arr ? s->ops->list(s->agent, api_list_cb, arr) : -ENOMEM;

	if (ret < 0) {
		json_decref(arr);
		api_reply_error(req, 500, NULL, "cannot list migrations: %s", strerror(-ret));
		return;
	}
	api_reply(req, 200, json_pack("{s:o}", "migrations", arr));
}

static void api_handle_get(struct api_server *s, struct evhttp_request *req, const char *id)
{
	struct api_migration_view v;
	int ret;

	api_migration_view_init(&v);
	v.id = id;
	v.role = s->role;
	ret = s->ops->get(s->agent, id, &v);
	if (ret == -ENOENT) {
		api_reply_error(req, 404, NULL, "no migration \"%s\"", id);
		return;
	}
	if (ret < 0) {
		api_reply_error(req, 500, NULL, "cannot read migration \"%s\": %s", id,
				strerror(-ret));
		return;
	}
	api_reply(req, 200, api_migration_to_json(&v));
}

/*
 * Wipes what held the secret: the raw body (linearised in place) and the
 * parsed string.  Best effort: evbuffer chains freed by the pullup are not
 * cleansed.
 */
static void api_wipe_secret(json_t *root)
{
	json_t *v = root ? json_object_get(root, "secret") : NULL;

	/* Writing through the const pointer is fine: jansson owns a plain heap copy. */
	if (json_is_string(v))
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

/* Parses a JSON body; on failure the reply has been sent and NULL returned. */
static json_t *api_read_json(struct api_server *s, struct evhttp_request *req, bool wipe)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	unsigned char *raw;
	json_error_t jerr;
	json_t *root;
	char *near;

	if (len > s->max_body) {
		api_reply_error(req, 413, NULL, "the body is %zu bytes, the limit is %zu", len,
				s->max_body);
		return NULL;
	}
	if (len == 0) {
		api_reply_error(req, 400, "invalid_json",
				"the body is empty; expected a JSON object");
		return NULL;
	}
	raw = evbuffer_pullup(in, -1);
	if (!raw) {
		api_reply_error(req, 503, NULL, "out of memory");
		return NULL;
	}
	root = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, &jerr);
	if (wipe)
		explicit_bzero(raw, len);
	if (!root) {
		/* jansson quotes the offending token ("near '...'"): it may be a secret. */
		near = strstr(jerr.text, " near ");
		if (near)
			*near = '\0';
		api_reply_error(req, 400, "invalid_json", "invalid JSON at line %d column %d: %s",
				jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		api_reply_error(req, 400, "invalid_json", "the body must be a JSON object");
		return NULL;
	}
	return root;
}

/* --- Callers ------------------------------------------------------------ */

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux >= 4.13 */
#endif

static bool api_addr_is_loopback(const struct sockaddr_storage *ss);

/* Before SO_PEERGROUPS: the supplementary groups of the peer's pid now. */
static bool api_proc_in_group(pid_t pid, gid_t gid)
{
	char path[64], line[4096];
	bool in = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!in && fgets(line, sizeof(line), f)) {
		char *p = line + 7, *end;

		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (;;) {
			unsigned long g = strtoul(p, &end, 10);

			if (end == p)
				break;
			if ((gid_t)g == gid)
				in = true;
			p = end;
		}
		break;
	}
	fclose(f);
	return in;
}

/* Whether the peer of UNIX socket fd had gid among its groups when it connected. */
static bool api_peer_in_group(int fd, const struct ucred *cred, gid_t gid)
{
	gid_t small[64], *g = small;
	socklen_t len = sizeof(small);
	bool in = false;

	if (cred->gid == gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		if (errno == ENOPROTOOPT)
			return api_proc_in_group(cred->pid, gid);
		if (errno != ERANGE || len <= sizeof(small))
			return false;
		g = malloc(len);
		if (!g || getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0)
			goto out;
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		in = in || g[i] == gid;
out:
	if (g != small)
		free(g);
	return in;
}

/* "localhost", "[::1]" or an IPv4 literal in 127/8, each with an optional ":port". */
static bool api_host_is_loopback(const char *host)
{
	char name[64];
	const char *port;
	size_t len;

	if (!host)
		return false;
	port = host[0] == '[' ? strchr(host, ']') : strchr(host, ':');
	if (port && host[0] == '[')
		port++;
	len = port ? (size_t)(port - host) : strlen(host);
	if (len == 0 || len >= sizeof(name))
		return false;
	if (port && *port &&
	    (port[0] != ':' || !port[1] || strlen(port + 1) > 5 ||
	     strspn(port + 1, "0123456789") != strlen(port + 1)))
		return false;
	memcpy(name, host, len);
	name[len] = '\0';
	/* Of the bracketed (IPv6) forms, only "[::1]" itself. */
	if (name[0] == '[')
		return strcmp(name, "[::1]") == 0;
	return tls_host_is_loopback(name);
}

/*
 * Who may use the API (docs/api.md, "Callers").  On a UNIX socket: root,
 * or a member of --api-group, from the peer's credentials at connect time
 * (SO_PEERCRED, SO_PEERGROUPS); the socket file's mode is only the first
 * fence, and an inherited (systemd) socket has whatever mode its unit
 * gave it.  On a TCP connection to a loopback address: a Host that names
 * loopback, so that a web page whose name an attacker rebinds to
 * 127.0.0.1 cannot drive the API from a browser.  Checked per request:
 * evhttp has no per-connection hook that the TLS wrapping of the TCP
 * listener leaves free.  Answers and returns false when refused.
 */
static bool api_authorize_local(struct api_server *s, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	const char *host;
	char buf[80], hbuf[80];

	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		s->refused[API_REFUSED_UNKNOWN_CALLER]++;
		log_warn("api: request refused: cannot tell who sent it");
		api_reply_error(req, 403, NULL, "cannot identify the caller");
		return false;
	}
	if (ss.ss_family == AF_UNIX) {
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
			s->refused[API_REFUSED_UNKNOWN_CALLER]++;
			log_warn("api: request refused: SO_PEERCRED: %s", strerror(errno));
			api_reply_error(req, 403, NULL, "cannot identify the caller");
			return false;
		}
		if (cred.uid == 0 || (s->group_set && api_peer_in_group(fd, &cred, s->gid)))
			return true;
		s->refused[API_REFUSED_UID]++;
		log_warn("api: refused %s %s from uid %u (pid %d): only root%s%s may use this API",
			 api_method_str(evhttp_request_get_command(req)),
			 api_safe_name(evhttp_request_get_uri(req), buf, sizeof(buf)),
			 (unsigned)cred.uid, (int)cred.pid, s->group_set ? " and group " : "",
			 s->group_set ? s->group : "");
		api_reply_error(req, 403, NULL, "uid %u may not use this API: only root%s%s may",
				(unsigned)cred.uid, s->group_set ? " and members of group " : "",
				s->group_set ? s->group : "");
		return false;
	}
	if (!api_addr_is_loopback(&ss))
		return true;
	host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
	if (api_host_is_loopback(host))
		return true;
	s->refused[API_REFUSED_HOST]++;
	log_warn("api: refused %s %s on loopback TCP: Host \"%s\" is not a loopback name",
		 api_method_str(evhttp_request_get_command(req)),
		 api_safe_name(evhttp_request_get_uri(req), buf, sizeof(buf)),
		 api_safe_name(host, hbuf, sizeof(hbuf)));
	api_reply_error(req, 421, NULL,
			"on a loopback address the Host header must be localhost, 127.0.0.1 or "
			"[::1] (with an optional port)");
	return false;
}

/*
 * application/json, optionally "; charset=utf-8": no HTML form can send
 * that across origins without a CORS preflight, which the API never
 * grants.
 */
static bool api_content_type_json(const char *ct)
{
	const char *p = ct;

	if (!p || strncasecmp(p, "application/json", 16) != 0)
		return false;
	p += 16;
	p += strspn(p, " \t");
	if (*p == '\0')
		return true;
	if (*p++ != ';')
		return false;
	p += strspn(p, " \t");
	if (strncasecmp(p, "charset=", 8) != 0)
		return false;
	p += 8;
	if (strncasecmp(p, "utf-8", 5) == 0)
		p += 5;
	else if (strncasecmp(p, "\"utf-8\"", 7) == 0)
		p += 7;
	else
		return false;
	p += strspn(p, " \t");
	return *p == '\0';
}

/* Every POST, with or without a body, must say it is JSON; answers 415 when not. */
static bool api_require_json(struct evhttp_request *req)
{
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	char buf[80];

	if (api_content_type_json(ct))
		return true;
	api_reply_error(req, 415, NULL,
			"Content-Type must be application/json (optionally ; charset=utf-8), not "
			"\"%s\"",
			ct ? api_safe_name(ct, buf, sizeof(buf)) : "");
	return false;
}

/* Hands a parsed request, its secret in hand, to the agent and answers it. */
/* The answer to a start: 202 with the resource and its Location, or the failure. */
static void api_start_reply(struct api_server *s, struct evhttp_request *req, const char *id,
			    int ret, const struct api_error *err)
{
	char location[sizeof("/v1/migrations/") + API_ID_MAX];

	s->starts[ret == 0 ? 0 : ret == -EAGAIN || ret == -EUSERS ? 1 : 2]++;
	if (ret < 0) {
		log_info("api: migration %s not started: %s", id,
			 err->message[0] ? err->message : strerror(-ret));
		api_reply_failure(req, ret, err, "start of migration", id);
		return;
	}
	snprintf(location, sizeof(location), "/v1/migrations/%s", id);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", location);
	api_reply(req, 202, api_resource(s, id));
}

static struct api_later *api_later_new(struct api_server *s, struct evhttp_request *req,
				       enum api_later_kind kind, const char *id)
{
	struct api_later *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->s = s;
	l->req = req;
	l->kind = kind;
	snprintf(l->id, sizeof(l->id), "%s", id);
	TAILQ_INSERT_TAIL(&s->laters, l, link);
	return l;
}

/* Forgets l without an answer (the caller gives it). */
static void api_later_free(struct api_later *l)
{
	if (!l)
		return;
	if (l->s)
		TAILQ_REMOVE(&l->s->laters, l, link);
	free(l);
}

void api_later_answer(struct api_later *l, int ret, const struct api_error *err)
{
	struct api_error none = {0};
	struct api_server *s = l ? l->s : NULL;

	if (!s) {
		free(l);
		return;
	}
	if (!err)
		err = &none;
	if (l->kind == API_LATER_START) {
		if (ret == 0)
			log_info("api: migration %s started (%s)", l->id, api_role_str(s->role));
		api_start_reply(s, l->req, l->id, ret, err);
	} else if (ret < 0) {
		api_reply_failure(l->req, ret, err, "rollback of migration", l->id);
	} else {
		log_info("api: rollback of migration %s requested", l->id);
		api_reply(l->req, 202, api_resource(s, l->id));
	}
	api_later_free(l);
}

static void api_start_finish(struct api_server *s, struct evhttp_request *req,
			     struct api_start_req *sr, int ret, struct api_error *err)
{
	if (ret == 0) {
		sr->later = api_later_new(s, req, API_LATER_START, sr->id);
		ret = sr->later ? s->ops->start(s->agent, sr, err)
				: api_error_set(err, -ENOMEM, "out of memory");
		if (ret == -EINPROGRESS) {
			log_info("api: migration %s: the agent answers its start once it can",
				 sr->id);
			return;
		}
		api_later_free(sr->later);
		sr->later = NULL;
	}
	if (ret == 0)
		log_info("api: migration %s started (%s, transport %s, peer %s)", sr->id,
			 api_role_str(s->role), api_transport_str(sr->transport),
			 sr->peer ? sr->peer : "-");
	api_start_reply(s, req, sr->id, ret, err);
}

static void api_start_release(json_t *root, struct api_start_buf *b)
{
	if (b)
		explicit_bzero(b, sizeof(*b));
	free(b);
	api_wipe_secret(root);
	json_decref(root);
}

/*
 * A start request waiting for its secret_file, or for the agent's
 * start_prepare() of its container, run on the offload thread.  The
 * request, its body and the parse of it live here until done() answers:
 * if the client goes meanwhile, libevent detaches the request from its
 * connection and the late answer only frees it.
 */
struct api_pending {
	struct offload_job job; /* first: the job is the pending request */
	struct api_server *s;
	struct evhttp_request *req;
	json_t *root;
	struct api_start_buf *b;
	struct api_start_req sr;
	/* The worker's: its own copy of the path (NULL: no file), and what it read. */
	char *path;
	unsigned int delay_ms;
	struct auth_secret *secret;
	int ret;
	/* The worker's too: the agent's preparation, when it has one. */
	bool prepare;
	void *prepared;
	struct api_error prepare_err;
	int prepare_ret;
};

/* Offload thread: the reads that may block (a hung network or FUSE mount). */
static void api_pending_run(struct offload_job *j)
{
	struct api_pending *p = (struct api_pending *)j;
	struct timespec ts = {p->delay_ms / 1000, (long)(p->delay_ms % 1000) * 1000000};

	if (p->path && p->delay_ms)
		nanosleep(&ts, NULL);
	if (p->path)
		p->ret = auth_secret_load_file(p->path, &p->secret);
	if (p->ret == 0 && p->prepare)
		p->prepare_ret = p->s->ops->start_prepare(p->s->prepare_ctx, &p->sr, &p->prepared,
							  &p->prepare_err);
}

static void api_pending_done(struct offload_job *j, bool ran)
{
	struct api_pending *p = (struct api_pending *)j;
	struct api_error err = {0};
	int ret = 0;

	if (!ran || p->s->stopping) {
		api_reply_error(p->req, 503, NULL, "the agent is shutting down");
		goto out;
	}
	if (p->ret < 0)
		ret = api_error_secret_file(&err, p->ret, p->path);
	else if (p->path)
		ret = auth_secret_copy(p->secret, p->b->secret, sizeof(p->b->secret),
				       &p->sr.secret_len);
	if (ret == 0 && p->path)
		p->sr.secret = p->b->secret;
	if (ret == 0 && p->prepare_ret < 0) {
		ret = p->prepare_ret;
		err = p->prepare_err;
	}
	p->sr.prepared = p->prepared;
	api_start_finish(p->s, p->req, &p->sr, ret, &err);
out:
	if (p->prepared)
		p->s->ops->prepared_free(p->prepared);
	auth_secret_free(p->secret);
	free(p->path);
	api_start_release(p->root, p->b);
	free(p);
}

/* Whether the agent prepares sr's start off the loop (a container's lookup). */
static bool api_start_prepared(const struct api_server *s, const struct api_start_req *sr)
{
	return sr->container.runtime && s->ops->start_prepare;
}

/*
 * Queues the read of sr's secret_file and the agent's preparation; on
 * success root and b belong to it.
 */
static int api_start_async(struct api_server *s, struct evhttp_request *req, json_t *root,
			   struct api_start_buf *b, const struct api_start_req *sr)
{
	struct api_pending *p;
	int ret;

	if (!s->offload) {
		ret = offload_new(s->base, &s->offload);
		if (ret < 0) {
			log_err("api: cannot start the thread that reads secret files: %s",
				strerror(-ret));
			return ret;
		}
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->path = sr->secret_file ? strdup(sr->secret_file) : NULL;
	if (sr->secret_file && !p->path) {
		free(p);
		return -ENOMEM;
	}
	p->prepare = api_start_prepared(s, sr);
	p->job.run = api_pending_run;
	p->job.done = api_pending_done;
	p->s = s;
	p->req = req;
	p->root = root;
	p->b = b;
	p->sr = *sr;
	p->delay_ms = s->secret_delay_ms;
	ret = offload_submit(s->offload, &p->job);
	if (ret < 0) {
		free(p->path);
		free(p);
		return ret;
	}
	if (p->path)
		log_info("api: migration %s: reading its secret_file %s off the loop", sr->id,
			 p->path);
	if (p->prepare)
		log_info("api: migration %s: looking up container %s off the loop", sr->id,
			 sr->container.id);
	return 0;
}

static void api_handle_start(struct api_server *s, struct evhttp_request *req)
{
	struct api_error err = {0};
	struct api_start_req sr;
	struct api_start_buf *b = NULL;
	json_t *root;
	int ret;

	if (!api_require_json(req))
		return;
	root = api_read_json(s, req, true);
	if (!root)
		goto out;
	b = calloc(1, sizeof(*b));
	if (!b) {
		api_reply_error(req, 503, NULL, "out of memory");
		goto out;
	}
	ret = api_parse_start(s->role, root, &sr, b, &err);
	if (ret < 0) {
		log_info("api: migration request rejected: %s", err.message);
		api_reply_error(req, 400, NULL, "%s", err.message);
		goto out;
	}
	if (sr.secret_file || api_start_prepared(s, &sr)) {
		ret = api_start_async(s, req, root, b, &sr);
		if (ret == 0)
			return;
		api_reply_error(req, 503, NULL, "cannot start reading off the loop now: %s",
				strerror(-ret));
		goto out;
	}
	api_start_finish(s, req, &sr, 0, &err);
out:
	api_start_release(root, b);
}

static void api_handle_abort(struct api_server *s, struct evhttp_request *req, const char *id)
{
	struct api_error err = {0};
	int ret = s->ops->abort(s->agent, id, &err);

	if (ret == 0) {
		log_info("api: abort of migration %s requested", id);
		api_reply(req, 202, api_resource(s, id));
	} else if (ret == -EALREADY) {
		api_reply(req, 200, api_resource(s, id));
	} else {
		api_reply_failure(req, ret, &err, "abort of migration", id);
	}
}

static void api_handle_rollback(struct api_server *s, struct evhttp_request *req, const char *id)
{
	struct api_rollback_req rr = {.id = id};
	struct api_error err = {0};
	json_t *root = NULL;
	int ret;

	if (!s->ops->rollback) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "");
		api_reply_error(req, 405, NULL, "rollback is only possible on the source agent");
		return;
	}
	if (!api_require_json(req))
		return;
	/* The body is optional; if present it may only say "force". */
	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0) {
		root = api_read_json(s, req, false);
		if (!root)
			return;
		ret = api_rollback_parse(root, &rr.force, &err);
		json_decref(root);
		if (ret < 0) {
			api_reply_error(req, 400, NULL, "%s", err.message);
			return;
		}
	}
	rr.later = api_later_new(s, req, API_LATER_ROLLBACK, id);
	if (!rr.later) {
		api_reply_error(req, 503, NULL, "out of memory");
		return;
	}
	ret = s->ops->rollback(s->agent, &rr, &err);
	if (ret == -EINPROGRESS) {
		log_info("api: rollback of migration %s: the agent answers once it can", id);
		return;
	}
	api_later_answer(rr.later, ret, &err);
}

int api_rollback_parse(const json_t *root, bool *force, struct api_error *err)
{
	const json_t *f = json_object_get(root, "force");

	if (!json_is_object(root) || json_object_size(root) > (f ? 1u : 0u) ||
	    (f && !json_is_boolean(f)))
		return api_error_set(err, -EINVAL,
				     "rollback takes one field only: \"force\", a boolean");
	*force = json_is_true(f);
	return 0;
}

/* --- Reservations (destination agent) ---------------------------------- */

static const struct api_field reserve_fields[] = {
    {"migration", JSON_STRING, ROLE_DST},  {"bytes", JSON_INTEGER, ROLE_DST},
    {"images_dir", JSON_STRING, ROLE_DST}, {"work_dir", JSON_STRING, ROLE_DST},
    {"ttl_s", JSON_INTEGER, ROLE_DST},	   {"bundle", JSON_STRING, ROLE_DST},
    {"start", JSON_OBJECT, ROLE_DST},
};

/*
 * What a reservation's "start" may hold: the POST's fields but those the
 * reservation itself gives (id, directories) and a secret_file, which
 * would be read off the loop.
 */
static const struct api_field reserve_start_fields[] = {
    {"source", JSON_STRING, ROLE_DST},	  {"transport", JSON_STRING, ROLE_DST},
    {"secret", JSON_STRING, ROLE_DST},	  {"verify", JSON_TRUE, ROLE_DST},
    {"restore", JSON_TRUE, ROLE_DST},	  {"criu_opts", JSON_OBJECT, ROLE_DST},
    {"container", JSON_OBJECT, ROLE_DST},
};

/* "start" into r->start_req, as a POST naming the reservation would be parsed. */
static int api_reserve_start_parse(const json_t *obj, struct api_reserve_req *r,
				   struct api_error *err)
{
	struct api_start_req *sr = &r->start_req;
	int ret;

	ret = api_check_fields(obj, reserve_start_fields, ARRAY_SIZE(reserve_start_fields),
			       API_ROLE_DEST, "start.", err);
	if (ret)
		return ret;
	if (!json_object_get(obj, "secret"))
		return api_error_set(err, -EINVAL,
				     "field \"start.secret\" is required: the worker started now "
				     "proves it to the source");
	r->start_buf = calloc(1, sizeof(*r->start_buf));
	if (!r->start_buf)
		return api_error_set(err, -ENOMEM, "out of memory");
	ret = api_parse_start(API_ROLE_DEST, obj, sr, r->start_buf, err);
	if (ret)
		return ret;
	/* The reservation names the migration: the worker's id is that one. */
	snprintf(r->start_buf->id, sizeof(r->start_buf->id), "%s", r->migration);
	sr->id_generated = false;
	sr->images_dir = r->images_dir;
	sr->work_dir = r->work_dir;
	r->start = sr;
	return 0;
}

void api_reserve_req_clear(struct api_reserve_req *r)
{
	api_start_buf_free(r->start_buf);
	r->start_buf = NULL;
	r->start = NULL;
}

int api_reserve_parse(const json_t *root, struct api_reserve_req *r, struct api_error *err)
{
	const json_t *v;
	int ret;

	memset(r, 0, sizeof(*r));
	r->ttl_s = API_RESERVE_TTL_DEFAULT_S;
	ret = api_check_fields(root, reserve_fields, ARRAY_SIZE(reserve_fields), API_ROLE_DEST, "",
			       err);
	if (ret)
		return ret;
	r->migration = json_string_value(json_object_get(root, "migration"));
	if (!migration_id_valid(r->migration))
		return api_error_set(err, -EINVAL,
				     "field \"migration\" is required, " MIGRATION_ID_RULE);
	v = json_object_get(root, "bytes");
	if (!v || json_integer_value(v) < 0)
		return api_error_set(err, -EINVAL,
				     "field \"bytes\" is required: the images' expected size, "
				     ">= 0");
	r->bytes = (uint64_t)json_integer_value(v);
	v = json_object_get(root, "ttl_s");
	if (v) {
		if (json_integer_value(v) < 1 || json_integer_value(v) > API_RESERVE_TTL_MAX_S)
			return api_error_set(err, -EINVAL, "field \"ttl_s\" must be 1..%d",
					     API_RESERVE_TTL_MAX_S);
		r->ttl_s = (unsigned int)json_integer_value(v);
	}
	ret = api_opt_path(root, "images_dir", &r->images_dir, err);
	if (!ret)
		ret = api_opt_path(root, "work_dir", &r->work_dir, err);
	if (!ret)
		ret = api_opt_path(root, "bundle", &r->bundle, err);
	v = json_object_get(root, "start");
	if (!ret && v)
		ret = api_reserve_start_parse(v, r, err);
	return ret;
}

static json_t *api_reservation_to_json(const struct api_reservation_view *v)
{
	json_t *o = json_object();
	bool ok = o != NULL;

	if (!o)
		return NULL;
	api_set(o, "id", api_json_str(v->id), &ok);
	api_set(o, "migration", api_json_str(v->migration), &ok);
	api_set(o, "bytes", api_json_u64(v->bytes), &ok);
	api_set(o, "images_dir", api_json_str(v->images_dir), &ok);
	api_set(o, "bundle", api_json_str(v->bundle), &ok);
	api_set(o, "ttl_s", json_integer(v->ttl_s), &ok);
	api_set(o, "created", api_json_time(v->created_unix_ms), &ok);
	api_set(o, "expires", api_json_time(v->expires_unix_ms), &ok);
	api_set(o, "expires_unix_ms", json_integer(v->expires_unix_ms), &ok);
	if (v->worker_started)
		api_set(o, "worker", json_string("started"), &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Collects the reservations into an array, or (find set) the one named find. */
struct api_resv_walk {
	json_t *arr;
	const char *find;
	json_t *found;
};

static int api_resv_cb(void *ctx, const struct api_reservation_view *v)
{
	struct api_resv_walk *w = ctx;
	json_t *o;

	if (w->find && strcmp(w->find, v->id) != 0)
		return 0;
	o = api_reservation_to_json(v);
	if (!o)
		return -ENOMEM;
	if (w->find) {
		w->found = o;
		return 1;
	}
	return json_array_append_new(w->arr, o) < 0 ? -ENOMEM : 0;
}

static void api_handle_reserve(struct api_server *s, struct evhttp_request *req)
{
	struct api_reservation_view v = {0};
	struct api_reserve_req rr;
	struct api_error err = {0};
	char location[sizeof("/v1/reservations/") + API_ID_MAX];
	json_t *root;
	int ret;

	if (!api_require_json(req))
		return;
	/* A "start" holds the secret: the body is wiped as a POST's is. */
	root = api_read_json(s, req, true);
	if (!root)
		return;
	ret = api_reserve_parse(root, &rr, &err);
	if (ret == 0)
		ret = s->ops->reserve(s->agent, &rr, &v, &err);
	if (ret < 0) {
		log_info("api: reservation for migration %s refused: %s",
			 rr.migration ? rr.migration : "?",
			 err.message[0] ? err.message : strerror(-ret));
		api_reply_failure(req, ret, &err, "reservation for migration",
				  rr.migration ? rr.migration : "?");
	} else {
		snprintf(location, sizeof(location), "/v1/reservations/%s", v.id);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location", location);
		api_reply(req, 201, api_reservation_to_json(&v));
	}
	api_reserve_req_clear(&rr);
	api_wipe_secret(json_object_get(root, "start"));
	json_decref(root);
}

static void api_handle_reservations(struct api_server *s, struct evhttp_request *req,
				    const char *id)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct api_resv_walk w = {.find = id};
	struct api_error err = {0};
	int ret;

	if (!s->ops->reserve || !s->ops->release || !s->ops->list_reservations) {
		api_reply_error(req, 404, NULL, "no such resource");
		return;
	}
	if (!id && cmd == EVHTTP_REQ_POST) {
		api_handle_reserve(s, req);
		return;
	}
	if (id && cmd == EVHTTP_REQ_DELETE) {
		ret = s->ops->release(s->agent, id, &err);
		if (ret < 0)
			api_reply_failure(req, ret, &err, "release of reservation", id);
		else
			api_reply(req, 200, json_pack("{s:s,s:b}", "id", id, "released", 1));
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		api_method_not_allowed(req, id ? "GET, HEAD, DELETE" : "GET, HEAD, POST");
		return;
	}
	w.arr = json_array();
	ret = w.arr ? s->ops->list_reservations(s->agent, api_resv_cb, &w) : -ENOMEM;
	if (ret < 0) {
		api_reply_error(req, 500, NULL, "cannot list reservations: %s", strerror(-ret));
	} else if (!id) {
		api_reply(req, 200, json_pack("{s:O}", "reservations", w.arr));
	} else if (w.found) {
		api_reply(req, 200, w.found);
		w.found = NULL;
	} else {
		api_reply_error(req, 404, NULL, "no reservation \"%s\" (released, used or expired)",
				id);
	}
	json_decref(w.found);
	json_decref(w.arr);
}

enum api_route_kind {
	API_ROUTE_NONE,
	API_ROUTE_HEALTH,
	API_ROUTE_METRICS,
	API_ROUTE_MIGRATIONS,
	API_ROUTE_MIGRATION,
	API_ROUTE_ROLLBACK,
	API_ROUTE_RESERVATIONS,
	API_ROUTE_RESERVATION,
};

/* Matches path; for item routes copies the id (already validated) into id. */
static enum api_route_kind api_route(const char *path, char id[API_ID_MAX + 1])
{
	static const char coll[] = "/v1/migrations", resv[] = "/v1/reservations";
	const char *rest, *slash;
	bool reservations;
	size_t idlen;

	if (!path)
		return API_ROUTE_NONE;
	if (strcmp(path, "/v1/health") == 0)
		return API_ROUTE_HEALTH;
	if (strcmp(path, "/metrics") == 0)
		return API_ROUTE_METRICS;
	reservations = strncmp(path, resv, sizeof(resv) - 1) == 0;
	if (!reservations && strncmp(path, coll, sizeof(coll) - 1) != 0)
		return API_ROUTE_NONE;
	rest = path + (reservations ? sizeof(resv) : sizeof(coll)) - 1;
	if (*rest == '\0')
		return reservations ? API_ROUTE_RESERVATIONS : API_ROUTE_MIGRATIONS;
	if (*rest != '/')
		return API_ROUTE_NONE;
	rest++;
	slash = strchr(rest, '/');
	idlen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (idlen == 0 || idlen > API_ID_MAX)
		return API_ROUTE_NONE;
	memcpy(id, rest, idlen);
	id[idlen] = '\0';
	/* An id that could never be valid names nothing. */
	if (!migration_id_valid(id))
		return API_ROUTE_NONE;
	if (reservations)
		return slash ? API_ROUTE_NONE : API_ROUTE_RESERVATION;
	if (!slash)
		return API_ROUTE_MIGRATION;
	if (strcmp(slash, "/rollback") == 0)
		return API_ROUTE_ROLLBACK;
	return API_ROUTE_NONE;
}

/* The one evhttp callback: routes and dispatches; every handler answers before returning. */
static void api_request_cb(struct evhttp_request *req, void *arg)
{
	struct api_server *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
	char id[API_ID_MAX + 1], buf[128];

	log_debug("api: %s %s", api_method_str(cmd),
		  api_safe_name(evhttp_request_get_uri(req), buf, sizeof(buf)));
	if (!api_authorize_local(s, req))
		return;
	switch (api_route(uri ? evhttp_uri_get_path(uri) : NULL, id)) {
	case API_ROUTE_HEALTH:
		if (get)
			api_handle_health(s, req);
		else
			api_method_not_allowed(req, "GET, HEAD");
		break;
	case API_ROUTE_METRICS:
		if (get)
			api_handle_metrics(s, req);
		else
			api_method_not_allowed(req, "GET, HEAD");
		break;
	case API_ROUTE_MIGRATIONS:
		if (get)
			api_handle_list(s, req);
		else if (cmd == EVHTTP_REQ_POST)
			api_handle_start(s, req);
		else
			api_method_not_allowed(req, "GET, HEAD, POST");
		break;
	case API_ROUTE_MIGRATION:
		if (get)
			api_handle_get(s, req, id);
		else if (cmd == EVHTTP_REQ_DELETE)
			api_handle_abort(s, req, id);
		else
			api_method_not_allowed(req, "GET, HEAD, DELETE");
		break;
	case API_ROUTE_ROLLBACK:
		if (cmd == EVHTTP_REQ_POST)
			api_handle_rollback(s, req, id);
		else
			api_method_not_allowed(req, "POST");
		break;
	case API_ROUTE_RESERVATIONS:
		api_handle_reservations(s, req, NULL);
		break;
	case API_ROUTE_RESERVATION:
		api_handle_reservations(s, req, id);
		break;
	case API_ROUTE_NONE:
	default:
		api_reply_error(req, 404, NULL, "no such resource");
		break;
	}
}

/*
 * The TLS listener's callback: the handshake authenticated the client (a
 * certificate of the CA); this authorizes it, on every request, against
 * the allow-list.  A connection without TLS here (evhttp falls back to a
 * plain one when the bevcb fails) is refused as well.
 */
static void api_tls_request_cb(struct evhttp_request *req, void *arg)
{
	struct api_server *s = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	char name[TLS_NAME_MAX], *addr = NULL;
	ev_uint16_t port = 0;

	if (ssl && tls_peer_allowed(ssl, s->allow, s->nallow)) {
		api_request_cb(req, arg);
		return;
	}
	if (evcon)
		evhttp_connection_get_peer(evcon, &addr, &port);
	tls_peer_name(ssl, name, sizeof(name));
	s->refused[API_REFUSED_TLS_PEER]++;
	log_warn("api: refused %s from %s port %u: certificate \"%s\" is not in --allow-peer",
		 api_method_str(evhttp_request_get_command(req)), addr ? addr : "?", (unsigned)port,
		 name);
	api_reply_error(req, 403, NULL, "certificate \"%s\" is not allowed to use this agent",
			name);
}

/* --- Listeners ----------------------------------------------------------- */

/* Creates the missing parent directories of path (0755). */
static int api_mkdir_parents(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1;; p++) {
		bool end = *p == '\0';

		if (!end && *p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			log_err("api: cannot create directory %s: %s", dir, strerror(errno));
			return -errno;
		}
		if (end)
			break;
		*p = '/';
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_err("api: %s is not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

/*
 * The socket path is taken: decides whether it is stale.  0: stale and
 * removed (retry bind); -EADDRINUSE: an agent accepts on it; -EEXIST: not
 * a socket, left alone.
 */
static int api_unix_probe(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd = -1, ret;

	if (lstat(sa->sun_path, &st) < 0) {
		ret = errno == ENOENT ? 0 : -errno;
		if (ret)
			log_err("api: cannot stat %s: %s", sa->sun_path, strerror(errno));
		goto out;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_err("api: %s exists and is not a socket; not replacing it", sa->sun_path);
		ret = -EEXIST;
		goto out;
	}
	/* Non-blocking: a live agent with a full backlog answers EAGAIN, not a hang. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		log_err("api: socket: %s", strerror(errno));
		goto out;
	}
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN) {
		log_err("api: another agent is already listening on %s", sa->sun_path);
		ret = -EADDRINUSE;
		goto out;
	}
	if (errno != ECONNREFUSED) {
		ret = -errno;
		log_err("api: cannot probe %s: %s", sa->sun_path, strerror(errno));
		goto out;
	}
	log_info("api: replacing stale socket %s", sa->sun_path);
	ret = 0;
	if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
		ret = -errno;
		log_err("api: cannot remove stale socket %s: %s", sa->sun_path, strerror(errno));
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static int api_unix_listen(struct api_server *s, const char *path, mode_t mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	bool bound = false;
	struct stat st;
	int fd = -1, ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("api: socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ret = api_mkdir_parents(path);
	if (ret)
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		log_err("api: socket: %s", strerror(errno));
		goto out;
	}
	/*
	 * Linux creates the socket file with the socket inode's mode less the
	 * umask: setting it first means the file is never more open than
	 * mode, with no umask juggling (which would race with other threads).
	 */
	if (fchmod(fd, mode) < 0) {
		ret = -errno;
		log_err("api: fchmod socket: %s", strerror(errno));
		goto out;
	}
	for (int attempt = 0;; attempt++) {
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		ret = -errno;
		if (ret != -EADDRINUSE || attempt > 0) {
			log_err("api: cannot bind %s: %s", path, strerror(-ret));
			goto out;
		}
		ret = api_unix_probe(&sa);
		if (ret)
			goto out;
	}
	bound = true;
	/* Members of --api-group connect through the group bits (0660). */
	if (s->group_set && lchown(path, (uid_t)-1, s->gid) < 0) {
		ret = -errno;
		log_err("api: cannot give %s to group %s: %s", path, s->group, strerror(errno));
		goto out;
	}
	/* The umask may have dropped bits the caller asked for. */
	if (chmod(path, mode) < 0 || lstat(path, &st) < 0) {
		ret = -errno;
		log_err("api: cannot set the mode of %s: %s", path, strerror(errno));
		goto out;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		ret = -errno;
		log_err("api: listen on %s: %s", path, strerror(errno));
		goto out;
	}
	if (!evhttp_accept_socket_with_handle(s->http, fd)) {
		ret = -ENOMEM;
		log_err("api: cannot serve %s", path);
		goto out;
	}
	fd = -1; /* evhttp closes it now */
	s->sock_path = strdup(path);
	if (!s->sock_path) {
		ret = -ENOMEM;
		goto out;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	log_info("api: listening on %s (mode %04o, group %s)", path, (unsigned)mode,
		 s->group_set ? s->group : "root");
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (ret && bound)
		unlink(path);
	return ret;
}

static bool api_addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* A TLS connection for evhttp: the handshake runs before any HTTP. */
static struct bufferevent *api_tls_bev(struct event_base *base, void *arg)
{
	struct api_server *s = arg;
	struct bufferevent *bev;
	SSL *ssl = SSL_new(s->tls);

	if (!ssl) {
		log_err("api: cannot set up TLS for a connection: out of memory");
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		log_err("api: cannot set up TLS for a connection: out of memory");
	}
	return bev;
}

static struct evhttp *api_http_new(struct api_server *s, unsigned timeout_s,
				   void (*cb)(struct evhttp_request *, void *))
{
	struct evhttp *http = evhttp_new(s->base);

	if (!http) {
		log_err("api: evhttp_new failed");
		return NULL;
	}
	evhttp_set_gencb(http, cb, s);
	/* Let every method reach the router, which answers 405 in JSON. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
					     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
					     EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
					     EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(http, API_HEADERS_MAX);
	evhttp_set_max_body_size(http, (ev_ssize_t)(s->max_body * API_BODY_HARD_FACTOR));
	evhttp_set_timeout(http, timeout_s ? (int)timeout_s : API_TIMEOUT_DEFAULT_S);
	return http;
}

static int api_tcp_listen(struct api_server *s, const struct api_config *cfg)
{
	const char *hostport = cfg->tcp;
	char host[API_HOST_MAX + 1], port[8];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct evhttp *http = s->http;
	uint64_t p;
	int fd;

	if (parse_hostport(hostport, NULL, host, sizeof(host), port, sizeof(port)) < 0 ||
	    parse_uint(port, 0, 65535, &p) < 0) {
		log_err("api: bad TCP listen address \"%s\": expected host:port", hostport);
		return -EINVAL;
	}
	if (!cfg->tls && !cfg->insecure_tcp) {
		log_err("api: the TCP API %s would be plain HTTP, open to anyone who reaches it: "
			"give --tls-cert, --tls-key, --tls-ca and --allow-peer (or, on loopback "
			"only, --insecure-api)",
			hostport);
		return -EPERM;
	}
	if (cfg->tls) {
		if (cfg->nallow == 0) {
			log_err("api: the TLS API %s has no --allow-peer: nobody could use it",
				hostport);
			return -EINVAL;
		}
		s->https = api_http_new(s, cfg->timeout_s, api_tls_request_cb);
		if (!s->https)
			return -ENOMEM;
		s->tls = cfg->tls;
		s->allow = cfg->allow;
		s->nallow = cfg->nallow;
		evhttp_set_bevcb(s->https, api_tls_bev, s);
		http = s->https;
	}
	s->tcp_bound = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)p);
	if (!s->tcp_bound) {
		int e = errno ? errno : EADDRNOTAVAIL;

		log_err("api: cannot listen on TCP %s: %s", hostport, strerror(e));
		return -e;
	}
	fd = evhttp_bound_socket_get_fd(s->tcp_bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		log_err("api: getsockname on TCP %s: %s", hostport, strerror(errno));
		return -errno;
	}
	s->tcp_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						     : ((struct sockaddr_in *)&ss)->sin_port);
	if (!cfg->tls && !api_addr_is_loopback(&ss)) {
		log_err("api: --insecure-api serves plain HTTP on loopback only, and %s is not: "
			"give --tls-cert, --tls-key, --tls-ca and --allow-peer",
			hostport);
		return -EPERM;
	}
	log_info("api: listening on TCP %s, port %d (%s)", host, s->tcp_port,
		 cfg->tls ? "mutual TLS" : "plain HTTP, loopback only");
	return 0;
}

/* --api-group: a group name, or a numeric gid; resolved once, at start. */
static int api_resolve_group(struct api_server *s, const char *name)
{
	struct group *gr;
	uint64_t v;

	if (strlen(name) >= sizeof(s->group)) {
		log_err("api: group name \"%s\" is too long", name);
		return -EINVAL;
	}
	errno = 0;
	gr = getgrnam(name);
	if (gr) {
		s->gid = gr->gr_gid;
	} else if (parse_uint(name, 0, UINT32_MAX - 1, &v) == 0) {
		s->gid = (gid_t)v;
	} else {
		log_err("api: no group \"%s\"%s%s", name, errno ? ": " : "",
			errno ? strerror(errno) : "");
		return -ENOENT;
	}
	s->group_set = true;
	snprintf(s->group, sizeof(s->group), "%s", name);
	return 0;
}

int api_server_create(struct event_base *base, const struct api_config *cfg,
		      const struct api_ops *ops, void *agent, struct api_server **out)
{
	const char *path = cfg->socket_path;
	bool fd_taken = false; /* listen_fd handed to evhttp, which closes it */
	struct api_server *s = NULL;
	int ret;

	if (!ops->start || !ops->get || !ops->list || !ops->abort ||
	    cfg->max_body > API_BODY_MAX_LIMIT) {
		log_err("api: bad configuration (missing callbacks or body limit over %u)",
			API_BODY_MAX_LIMIT);
		ret = -EINVAL;
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		ret = -ENOMEM;
		goto out;
	}
	TAILQ_INIT(&s->laters);
	s->base = base;
	s->ops = ops;
	s->agent = agent;
	s->role = cfg->role;
	s->lazy_dump = cfg->lazy_dump;
	s->tcp_port = -ENOENT;
	s->max_body = cfg->max_body ? cfg->max_body : API_BODY_MAX_DEFAULT;
	s->secret_delay_ms = cfg->test_secret_delay_ms;
	s->prepare_ctx = cfg->prepare_ctx;
	if (cfg->group) {
		ret = api_resolve_group(s, cfg->group);
		if (ret)
			goto out;
	}
	s->http = api_http_new(s, cfg->timeout_s, api_request_cb);
	if (!s->http) {
		ret = -ENOMEM;
		goto out;
	}

	if (cfg->listen_fd > 0) {
		ret = fd_set_nonblock(cfg->listen_fd);
		if (!ret && !evhttp_accept_socket_with_handle(s->http, cfg->listen_fd))
			ret = -ENOMEM;
		if (ret) {
			log_err("api: cannot serve inherited fd %d: %s", cfg->listen_fd,
				strerror(-ret));
			goto out;
		}
		fd_taken = true;
		log_info("api: serving inherited socket fd %d", cfg->listen_fd);
	} else {
		if (!path)
			path = cfg->role == API_ROLE_DEST ? API_SOCKET_DEST : API_SOCKET_SOURCE;
		if (path[0]) {
			ret = api_unix_listen(s, path,
					      cfg->socket_mode ? cfg->socket_mode
					      : s->group_set   ? 0660
							       : 0600);
			if (ret)
				goto out;
		}
	}
	if (cfg->tcp) {
		ret = api_tcp_listen(s, cfg);
		if (ret)
			goto out;
	}
	if (!s->sock_path && !s->tcp_bound && cfg->listen_fd <= 0) {
		log_err("api: no listener configured");
		ret = -EINVAL;
		goto out;
	}
	*out = s;
	s = NULL;
	ret = 0;
out:
	if (ret && cfg->listen_fd > 0 && !fd_taken)
		close(cfg->listen_fd);
	api_server_destroy(s);
	return ret;
}

void api_server_destroy(struct api_server *s)
{
	struct api_later *l;
	struct stat st;

	if (!s)
		return;
	/* Pending starts are answered (503) while their connections still exist. */
	s->stopping = true;
	offload_free(s->offload);
	/* The agent still holds its laters: they only free themselves from now on. */
	while ((l = TAILQ_FIRST(&s->laters)) != NULL) {
		TAILQ_REMOVE(&s->laters, l, link);
		l->s = NULL;
		api_reply_error(l->req, 503, NULL, "the agent is shutting down");
	}
	if (s->http)
		evhttp_free(s->http);
	if (s->https)
		evhttp_free(s->https);
	/* Only our own socket: a successor agent may have replaced it meanwhile. */
	if (s->sock_path && lstat(s->sock_path, &st) == 0 && st.st_dev == s->sock_dev &&
	    st.st_ino == s->sock_ino && unlink(s->sock_path) < 0)
		log_warn("api: cannot remove %s: %s", s->sock_path, strerror(errno));
	free(s->sock_path);
	free(s);
}

int api_server_tcp_port(const struct api_server *s)
{
	return s->tcp_port;
}

const char *api_server_socket_path(const struct api_server *s)
{
	return s->sock_path;
}
