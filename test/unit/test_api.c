// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * api + apiclient: a real api_server on a UNIX socket (and TCP) in a temp
 * dir, its event loop in a second thread, a fake agent behind the ops
 * table, and every route exercised over real HTTP with apiclient.  The fake
 * agent is only touched by the loop thread while a request is in flight;
 * the test thread reads it after the response arrived.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "api.h"
#include "apiclient.h"
#include "log.h"

/* The inline secret of the tests, and its two encodings. */
#define SECRET_RAW "correct horse battery staple!"
#define SECRET_HEX "636f727265637420686f727365206261747465727920737461706c6521"
#define SECRET_B64 "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZSE="

#define FAKE_MAX 32

/* Container ids at and just over CONTAINER_ID_MAX (128). */
#define LONG_ID64  "c123456789012345678901234567890123456789012345678901234567890123"
#define LONG_ID128 LONG_ID64 LONG_ID64
#define LONG_ID129 LONG_ID128 "x"

struct fake_mig {
	char id[API_ID_MAX + 1];
	enum api_state state;
	char peer[API_HOSTPORT_MAX + 1];
	enum api_transport transport;
	pid_t pid;
	char container[CONTAINER_ID_MAX + 1]; /* "": none */
	char container_root[256];
	char container_bundle[256];
};

struct fake_agent {
	enum api_role role;
	struct fake_mig migs[FAKE_MAX];
	size_t n;
	bool busy;
	int starts; /* start() calls that reached the agent */
	/* The last request start() saw. */
	char last_host[300];
	uint16_t last_port;
	pid_t last_pid;
	char last_container[CONTAINER_ID_MAX + 1];
	char last_container_root[256];
	char last_images[256];
	char last_work[256];
	char last_secret_file[256];
	uint8_t last_secret[API_SECRET_MAX];
	size_t last_secret_len;
	bool last_verify, last_restore, last_id_generated, last_queue;
	enum api_lazy_dump last_lazy;
	enum api_transport last_transport;
	struct api_criu_opts last_criu;
	char last_cgroups[16];
	char last_reservation[API_ID_MAX + 1];
	/* The one reservation the fake keeps ("r-1"), as reserve() was asked. */
	bool reserved;
	char resv_mig[API_ID_MAX + 1];
	char resv_images[256];
	uint64_t resv_bytes;
	unsigned int resv_ttl;
	/* The reservation's "start" as reserve() saw it: "" without one, else "ID SOURCE VERIFY".
	 */
	char resv_start[256];
};

static struct fake_mig *fake_find(struct fake_agent *a, const char *id)
{
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->migs[i].id, id) == 0)
			return &a->migs[i];
	}
	return NULL;
}

static void fake_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static int fake_start(void *agent, const struct api_start_req *req, struct api_error *err)
{
	struct fake_agent *a = agent;
	struct fake_mig *m;

	a->starts++;
	fake_copy(a->last_host, sizeof(a->last_host), req->peer_host);
	a->last_port = req->peer_port;
	a->last_pid = req->pid;
	fake_copy(a->last_container, sizeof(a->last_container), req->container.id);
	fake_copy(a->last_container_root, sizeof(a->last_container_root), req->container.root);
	fake_copy(a->last_images, sizeof(a->last_images), req->images_dir);
	fake_copy(a->last_work, sizeof(a->last_work), req->work_dir);
	fake_copy(a->last_secret_file, sizeof(a->last_secret_file), req->secret_file);
	a->last_secret_len = req->secret ? req->secret_len : 0;
	if (req->secret)
		memcpy(a->last_secret, req->secret, req->secret_len);
	a->last_verify = req->verify;
	a->last_restore = req->restore;
	a->last_queue = req->queue;
	a->last_lazy = req->lazy_dump;
	a->last_id_generated = req->id_generated;
	a->last_transport = req->transport;
	a->last_criu = req->criu;
	fake_copy(a->last_cgroups, sizeof(a->last_cgroups), req->criu.manage_cgroups);
	fake_copy(a->last_reservation, sizeof(a->last_reservation), req->reservation);
	if (a->busy)
		return api_error_set(err, -EAGAIN, "the agent is busy");
	if (fake_find(a, req->id))
		return -EEXIST;
	if (a->n == FAKE_MAX)
		return -ENOSPC;
	m = &a->migs[a->n++];
	memset(m, 0, sizeof(*m));
	fake_copy(m->id, sizeof(m->id), req->id);
	fake_copy(m->peer, sizeof(m->peer), req->peer);
	m->transport = req->transport;
	m->pid = req->pid;
	fake_copy(m->container, sizeof(m->container), req->container.id);
	fake_copy(m->container_root, sizeof(m->container_root), req->container.root);
	fake_copy(m->container_bundle, sizeof(m->container_bundle), req->container.bundle);
	m->state = API_STATE_PENDING;
	return 0;
}

static void fake_view(struct fake_agent *a, const struct fake_mig *m, struct api_migration_view *v)
{
	v->id = m->id;
	v->role = a->role;
	v->state = m->state;
	v->error = m->state == API_STATE_FAILED ? "the peer went away" : NULL;
	if (a->role == API_ROLE_SOURCE)
		v->dest = m->peer;
	else
		v->source = m->peer;
	v->transport = m->transport;
	v->pid = m->pid;
	if (m->container[0]) {
		v->container.runtime = API_CONTAINER_RUNTIME;
		v->container.id = m->container;
		v->container.root = m->container_root[0] ? m->container_root : NULL;
		v->container.bundle = m->container_bundle[0] ? m->container_bundle : NULL;
	}
	v->pages_total = 100;
	v->pages_fetched = 40;
	v->pages_remaining = 60;
	v->faults = 7;
	v->bytes = 40 * 4096;
	v->fault_p50_us = 12;
	v->created_unix_ms = 1700000000123;
}

static int fake_get(void *agent, const char *id, struct api_migration_view *out)
{
	struct fake_agent *a = agent;
	struct fake_mig *m = fake_find(a, id);

	if (!m)
		return -ENOENT;
	fake_view(a, m, out);
	return 0;
}

static int fake_list(void *agent, api_emit_fn emit, void *ctx)
{
	struct fake_agent *a = agent;

	for (size_t i = 0; i < a->n; i++) {
		struct api_migration_view v;
		int ret;

		api_migration_view_init(&v);
		fake_view(a, &a->migs[i], &v);
		ret = emit(ctx, &v);
		if (ret)
			return ret;
	}
	return 0;
}

static int fake_abort(void *agent, const char *id, struct api_error *err)
{
	struct fake_mig *m = fake_find(agent, id);

	if (!m)
		return -ENOENT;
	if (api_state_is_final(m->state))
		return -EALREADY;
	m->state = API_STATE_ABORTED;
	return 0;
}

static int fake_rollback(void *agent, const struct api_rollback_req *req, struct api_error *err)
{
	const char *id = req->id;
	struct fake_mig *m = fake_find(agent, id);

	if (!m)
		return -ENOENT;
	if (api_state_is_final(m->state))
		return api_error_set(err, -EBUSY, "migration %s is %s: nothing to roll back", id,
				     api_state_str(m->state));
	m->state = API_STATE_ROLLED_BACK;
	return 0;
}

static const struct api_ops fake_ops = {
    .start = fake_start,
    .get = fake_get,
    .list = fake_list,
    .abort = fake_abort,
    .rollback = fake_rollback,
};

static void fake_resv_view(struct fake_agent *a, struct api_reservation_view *v)
{
	v->id = "r-1";
	v->migration = a->resv_mig;
	v->bytes = a->resv_bytes;
	v->images_dir = a->resv_images[0] ? a->resv_images : NULL;
	v->ttl_s = a->resv_ttl;
	v->created_unix_ms = 1000;
	v->expires_unix_ms = 1000 + 1000 * (int64_t)a->resv_ttl;
}

static int fake_reserve(void *agent, const struct api_reserve_req *req,
			struct api_reservation_view *out, struct api_error *err)
{
	struct fake_agent *a = agent;

	if (a->busy || a->reserved)
		return api_error_set(err, -EAGAIN, "no free slot");
	a->reserved = true;
	fake_copy(a->resv_mig, sizeof(a->resv_mig), req->migration);
	fake_copy(a->resv_images, sizeof(a->resv_images), req->images_dir);
	a->resv_bytes = req->bytes;
	a->resv_ttl = req->ttl_s;
	a->resv_start[0] = '\0';
	if (req->start)
		snprintf(a->resv_start, sizeof(a->resv_start), "%s %s %d %zu", req->start->id,
			 req->start->peer, req->start->verify, req->start->secret_len);
	fake_resv_view(a, out);
	out->worker_started = req->start != NULL;
	return 0;
}

static int fake_release(void *agent, const char *id, struct api_error *err)
{
	struct fake_agent *a = agent;

	if (!a->reserved || strcmp(id, "r-1") != 0)
		return -ENOENT;
	a->reserved = false;
	return 0;
}

static int fake_list_resv(void *agent, api_emit_resv_fn emit, void *ctx)
{
	struct fake_agent *a = agent;
	struct api_reservation_view v = {0};

	if (!a->reserved)
		return 0;
	fake_resv_view(a, &v);
	return emit(ctx, &v) < 0 ? -ENOMEM : 0;
}

static const struct api_ops fake_ops_dest = {
    .start = fake_start,
    .get = fake_get,
    .list = fake_list,
    .abort = fake_abort,
    .reserve = fake_reserve,
    .release = fake_release,
    .list_reservations = fake_list_resv,
};

/* --- A server with its loop in a thread --------------------------------- */

struct env {
	char dir[64];
	char secret_file[96]; /* dir/secret: SECRET_RAW, 0600, for "secret_file" */
	char sock[128];
	struct event_base *base;
	struct api_server *srv;
	pthread_t thread;
	bool running;
	struct fake_agent agent;
	struct apiclient_target t;
	struct apiclient_target tcp;
	char tcp_port[8];
};

static char log_path[128];
static char tmp_root[32];
/* api_config.group of the next env_start(); NULL: root only. */
static const char *env_group;

static void set_sun_path(struct sockaddr_un *sa, const char *path)
{
	assert_true(strlen(path) < sizeof(sa->sun_path));
	memcpy(sa->sun_path, path, strlen(path) + 1);
}

static void *env_loop(void *arg)
{
	struct env *e = arg;

	event_base_loop(e->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* With inherit, the socket is created here and passed as listen_fd (as systemd does). */
static struct env *env_start(enum api_role role, const char *tcp, bool inherit)
{
	struct env *e = calloc(1, sizeof(*e));
	struct api_config cfg = {
	    .role = role, .tcp = tcp, .group = env_group, .insecure_tcp = true};
	int fd;

	assert_non_null(e);
	snprintf(e->dir, sizeof(e->dir), "%s/XXXXXX", tmp_root);
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->sock, sizeof(e->sock), "%s/run/api.sock", e->dir);
	snprintf(e->secret_file, sizeof(e->secret_file), "%s/secret", e->dir);
	fd = open(e->secret_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, SECRET_RAW, strlen(SECRET_RAW)), (ssize_t)strlen(SECRET_RAW));
	close(fd);
	e->agent.role = role;
	e->base = event_base_new();
	assert_non_null(e->base);
	cfg.socket_path = e->sock;
	if (inherit) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		char run[96];

		snprintf(run, sizeof(run), "%s/run", e->dir);
		assert_int_equal(mkdir(run, 0700), 0);
		set_sun_path(&sa, e->sock);
		cfg.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_true(cfg.listen_fd > 0);
		assert_int_equal(bind(cfg.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(listen(cfg.listen_fd, 8), 0);
	}
	assert_int_equal(api_server_create(e->base, &cfg,
					   role == API_ROLE_SOURCE ? &fake_ops : &fake_ops_dest,
					   &e->agent, &e->srv),
			 0);
	e->t.unix_path = e->sock;
	e->t.timeout_ms = 5000;
	if (tcp) {
		snprintf(e->tcp_port, sizeof(e->tcp_port), "%d", api_server_tcp_port(e->srv));
		e->tcp.host = "127.0.0.1";
		e->tcp.port = e->tcp_port;
		e->tcp.timeout_ms = 5000;
	}
	assert_int_equal(pthread_create(&e->thread, NULL, env_loop, e), 0);
	e->running = true;
	return e;
}

static void env_stop(struct env *e)
{
	if (!e)
		return;
	if (e->running) {
		event_base_loopbreak(e->base);
		pthread_join(e->thread, NULL);
	}
	api_server_destroy(e->srv);
	event_base_free(e->base);
	unlink(e->secret_file);
	rmdir(strcat(e->dir, "/run"));
	e->dir[strlen(e->dir) - 4] = '\0';
	rmdir(e->dir);
	free(e);
}

/* No response may ever carry the secret, in any encoding. */
static void assert_no_secret(const struct apiclient_resp *r)
{
	assert_null(strstr(r->body, SECRET_RAW));
	assert_null(strstr(r->body, SECRET_HEX));
	assert_null(strstr(r->body, SECRET_B64));
	assert_null(strstr(r->body, "636f727265637420")); /* a prefix of the hex form */
	assert_null(strstr(r->location, "636f7272"));
}

/* Sends a request, expects status, returns the parsed JSON body (caller decrefs). */
static json_t *req_json(struct env *e, const char *method, const char *path, const char *body,
			int status, struct apiclient_resp *keep)
{
	struct apiclient_resp r;
	json_error_t jerr;
	json_t *j;

	assert_int_equal(apiclient_request(&e->t, method, path, body, body ? strlen(body) : 0, &r),
			 0);
	if (r.status != status)
		fprintf(stderr, "# %s %s: %d %s\n", method, path, r.status, r.body);
	assert_int_equal(r.status, status);
	assert_no_secret(&r);
	assert_string_equal(r.content_type, "application/json");
	j = json_loads(r.body, 0, &jerr);
	assert_non_null(j);
	if (keep)
		*keep = r;
	else
		apiclient_resp_release(&r);
	return j;
}

/* Expects a JSON error with status and code whose message contains `has`. */
static void expect_error(struct env *e, const char *method, const char *path, const char *body,
			 int status, const char *code, const char *has)
{
	json_t *j = req_json(e, method, path, body, status, NULL);
	const char *c = NULL, *msg = NULL;

	assert_int_equal(json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &c, "message", &msg), 0);
	assert_string_equal(c, code);
	if (has && !strstr(msg, has))
		fail_msg("message \"%s\" lacks \"%s\"", msg, has);
	json_decref(j);
}

static int group_setup(void **state)
{
	*state = env_start(API_ROLE_SOURCE, "127.0.0.1:0", false);
	return 0;
}

static int group_teardown(void **state)
{
	env_stop(*state);
	return 0;
}

/* --- Routes ---------------------------------------------------------------- */

static void test_health(void **state)
{
	struct env *e = *state;
	json_t *j = req_json(e, "GET", "/v1/health", NULL, 200, NULL);
	const char *status, *role, *version;
	json_int_t n = -1;

	assert_int_equal(json_unpack(j, "{s:s,s:s,s:s,s:I}", "status", &status, "role", &role,
				     "version", &version, "migrations", &n),
			 0);
	assert_string_equal(status, "ok");
	assert_string_equal(role, "source");
	assert_true(strlen(version) > 0);
	assert_int_equal(n, (json_int_t)e->agent.n);
	json_decref(j);
	/* A query string does not change the route. */
	json_decref(req_json(e, "GET", "/v1/health?verbose=1", NULL, 200, NULL));
}

static void check_resource_shape(json_t *m)
{
	static const char *const keys[] = {
	    "id",	 "role",       "state",	     "final",	  "error",	"source",
	    "dest",	 "dest_state", "transport",  "pid",	  "images_dir", "verify",
	    "lazy_dump", "progress",   "latency_us", "times",	  "drain",	"readahead",
	    "pause",	 "container",  "precopy",    "takeovers", "queue"};
	json_int_t total = -1, fetched = -1, remaining = -1, faults = -1, bytes = -1;

	assert_true(json_is_object(m));
	assert_int_equal(json_object_size(m), sizeof(keys) / sizeof(keys[0]));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_non_null(json_object_get(m, keys[i]));
	assert_int_equal(json_unpack(m, "{s:{s:I,s:I,s:I,s:I,s:I}}", "progress", "pages_total",
				     &total, "pages_fetched", &fetched, "pages_remaining",
				     &remaining, "faults", &faults, "bytes", &bytes),
			 0);
	assert_int_equal(total, 100);
	assert_int_equal(fetched, 40);
	assert_int_equal(remaining, 60);
	assert_int_equal(faults, 7);
	assert_int_equal(bytes, 40 * 4096);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(m, "latency_us"), "fault_p50")), 12);
	/* Unknown values are null, not 0 or -1. */
	assert_true(json_is_null(json_object_get(json_object_get(m, "latency_us"), "fault_p99")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "times"), "freeze_ms")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "times"), "downtime_ms")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "times"), "resumed_ms")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "times"), "received_ms")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "times"), "handover_ms")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "times"), "register_ms")));
	assert_true(json_is_null(json_object_get(m, "dest_state")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(m, "times"), "created")),
	    "2023-11-14T22:13:20.123Z");
}

static void test_start_202(void **state)
{
	struct env *e = *state;
	struct apiclient_resp r;
	int before = e->agent.starts;
	json_t *m;

	m = req_json(
	    e, "POST", "/v1/migrations",
	    "{\"id\":\"m1\",\"pid\":4242,\"dest\":\"192.0.2.7:7471\",\"transport\":\"tcp\","
	    "\"secret\":\"hex:" SECRET_HEX "\",\"verify\":true,"
	    "\"criu_opts\":{\"shell_job\":true,\"manage_cgroups\":\"soft\","
	    "\"log_level\":4,\"leave_running\":true}}",
	    202, &r);
	assert_string_equal(r.location, "/v1/migrations/m1");
	apiclient_resp_release(&r);
	check_resource_shape(m);
	assert_string_equal(json_string_value(json_object_get(m, "id")), "m1");
	assert_string_equal(json_string_value(json_object_get(m, "state")), "pending");
	assert_string_equal(json_string_value(json_object_get(m, "dest")), "192.0.2.7:7471");
	assert_string_equal(json_string_value(json_object_get(m, "transport")), "tcp");
	assert_int_equal(json_integer_value(json_object_get(m, "pid")), 4242);
	assert_false(json_is_true(json_object_get(m, "final")));
	json_decref(m);

	/* What the agent got: typed, decoded, defaults applied. */
	assert_int_equal(e->agent.starts, before + 1);
	assert_string_equal(e->agent.last_host, "192.0.2.7");
	assert_int_equal(e->agent.last_port, 7471);
	assert_int_equal(e->agent.last_pid, 4242);
	assert_int_equal(e->agent.last_transport, API_TRANSPORT_TCP);
	assert_int_equal(e->agent.last_secret_len, strlen(SECRET_RAW));
	assert_memory_equal(e->agent.last_secret, SECRET_RAW, strlen(SECRET_RAW));
	assert_true(e->agent.last_verify);
	assert_false(e->agent.last_id_generated);
	assert_true(e->agent.last_criu.shell_job);
	assert_true(e->agent.last_criu.leave_running);
	assert_false(e->agent.last_criu.tcp_established);
	assert_string_equal(e->agent.last_cgroups, "soft");
	assert_int_equal(e->agent.last_criu.log_level, 4);
}

static void test_start_variants(void **state)
{
	struct env *e = *state;
	struct apiclient_resp r;
	char body[512];
	const char *id;
	size_t n;
	json_t *m;

	/* No id: one is generated and used in Location; base64 secret; IPv6 peer, no port. */
	m = req_json(e, "POST", "/v1/migrations",
		     "{\"images_dir\":\"/var/lib/rdmig/img\",\"dest\":\"[2001:db8::1]\","
		     "\"secret\":\"base64:" SECRET_B64 "\"}",
		     202, &r);
	id = json_string_value(json_object_get(m, "id"));
	assert_non_null(id);
	assert_int_equal(strlen(id), 14);
	assert_memory_equal(id, "m-", 2);
	assert_string_equal(r.location + strlen("/v1/migrations/"), id);
	apiclient_resp_release(&r);
	assert_true(e->agent.last_id_generated);
	assert_string_equal(e->agent.last_host, "2001:db8::1");
	assert_int_equal(e->agent.last_port, 0);
	assert_int_equal(e->agent.last_pid, 0);
	assert_string_equal(e->agent.last_images, "/var/lib/rdmig/img");
	assert_int_equal(e->agent.last_transport, API_TRANSPORT_RDMA);
	assert_memory_equal(e->agent.last_secret, SECRET_RAW, strlen(SECRET_RAW));
	assert_false(e->agent.last_verify);
	assert_int_equal(e->agent.last_criu.log_level, -1);
	json_decref(m);

	/* secret_file: the module reads it off the loop; the agent gets its bytes. */
	snprintf(body, sizeof(body),
		 "{\"id\":\"m.file_1\",\"pid\":1,\"dest\":\"node-b.example:1\","
		 "\"secret_file\":\"%s\"}",
		 e->secret_file);
	json_decref(req_json(e, "POST", "/v1/migrations", body, 202, NULL));
	assert_string_equal(e->agent.last_secret_file, e->secret_file);
	assert_int_equal(e->agent.last_secret_len, strlen(SECRET_RAW));
	assert_memory_equal(e->agent.last_secret, SECRET_RAW, strlen(SECRET_RAW));
	assert_string_equal(e->agent.last_host, "node-b.example");
	/* Without "queue" a start may wait in the source's queue; "queue": false refuses. */
	assert_true(e->agent.last_queue);
	snprintf(body, sizeof(body),
		 "{\"id\":\"m.noq\",\"pid\":1,\"dest\":\"h:1\",\"queue\":false,"
		 "\"secret_file\":\"%s\"}",
		 e->secret_file);
	json_decref(req_json(e, "POST", "/v1/migrations", body, 202, NULL));
	assert_false(e->agent.last_queue);
	expect_error(e, "POST", "/v1/migrations",
		     "{\"id\":\"m.noq2\",\"pid\":1,\"dest\":\"h:1\",\"queue\":0}", 400,
		     "invalid_request", "\"queue\"");

	/* "lazy_dump": absent leaves the choice to the agent; false and true are kept. */
	assert_int_equal(e->agent.last_lazy, API_LAZY_AUTO);
	for (int i = 0; i < 2; i++) {
		snprintf(body, sizeof(body),
			 "{\"id\":\"m.lazy%d\",\"pid\":1,\"dest\":\"h:1\",\"lazy_dump\":%s,"
			 "\"secret_file\":\"%s\"}",
			 i, i ? "true" : "false", e->secret_file);
		json_decref(req_json(e, "POST", "/v1/migrations", body, 202, NULL));
		assert_int_equal(e->agent.last_lazy, i ? API_LAZY_YES : API_LAZY_NO);
	}

	/* One that cannot be read: 400, one message, and the agent never called. */
	n = e->agent.n;
	expect_error(e, "POST", "/v1/migrations",
		     "{\"id\":\"m.file_2\",\"pid\":1,\"dest\":\"h:1\","
		     "\"secret_file\":\"/nonexistent/rdmig-secret\"}",
		     400, "invalid_request", "secret_file /nonexistent/rdmig-secret is not usable");
	assert_int_equal(e->agent.n, n);

	/* Existing images need no "dest": the destination connects to the source. */
	snprintf(body, sizeof(body),
		 "{\"id\":\"m.nodest\",\"images_dir\":\"/img\",\"secret_file\":\"%s\"}",
		 e->secret_file);
	json_decref(req_json(e, "POST", "/v1/migrations", body, 202, NULL));
	assert_string_equal(e->agent.last_host, "");
	assert_string_equal(e->agent.last_images, "/img");

	/* "tls": TCP inside mutual TLS, a transport of its own, shown as given. */
	m = req_json(e, "POST", "/v1/migrations",
		     "{\"id\":\"m.tls\",\"images_dir\":\"/img\",\"transport\":\"tls\","
		     "\"secret\":\"base64:" SECRET_B64 "\"}",
		     202, NULL);
	assert_int_equal(e->agent.last_transport, API_TRANSPORT_TLS);
	assert_string_equal(json_string_value(json_object_get(m, "transport")), "tls");
	json_decref(m);
}

static void test_start_validation(void **state)
{
	static const struct {
		const char *body;
		const char *code;
		const char *has;
	} bad[] = {
	    {"{\"pid\":1,\"dest\":\"h:1\"", "invalid_json", "line 1"},
	    {"not json", "invalid_json", "invalid JSON"},
	    {"[1,2]", "invalid_json", "JSON object"},
	    {"", "invalid_json", "empty"},
	    {"{\"pid\":1,\"dest\":\"h:1\"} trailing", "invalid_json", "invalid JSON"},
	    {"{\"pid\":1,\"pid\":2,\"dest\":\"h:1\"}", "invalid_json", "duplicate"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"bogus\":1}", "invalid_request",
	     "unknown field \"bogus\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"criu_opts\":{\"x\":true}}", "invalid_request",
	     "criu_opts.x"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"work_dir\":\"/w\"}", "invalid_request",
	     "not accepted by the source agent"},
	    {"{\"id\":\"../etc\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "\"id\""},
	    {"{\"id\":\"\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "\"id\""},
	    {"{\"id\":\"a b\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "\"id\""},
	    {"{\"id\":\".\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "first a letter"},
	    {"{\"id\":\"..\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "first a letter"},
	    {"{\"id\":\".hidden\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "\"id\""},
	    {"{\"id\":\"-x\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "\"id\""},
	    {"{\"id\":\"_x\",\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "\"id\""},
	    {"{\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\","
	     "\"pid\":1,\"dest\":\"h:1\"}",
	     "invalid_request", "1..64"},
	    {"{\"id\":7,\"pid\":1,\"dest\":\"h:1\"}", "invalid_request", "must be a string"},
	    {"{\"images_dir\":\"relative/dir\",\"dest\":\"h:1\"}", "invalid_request",
	     "absolute path"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"secret_file\":\"secret\"}", "invalid_request",
	     "absolute path"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"secret\":\"hex:00112233\"}", "invalid_request",
	     "16..1024 bytes"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"secret\":\"hex:zz112233445566778899aabbccddeeff\"}",
	     "invalid_request", "not valid hex"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"secret\":\"" SECRET_HEX "\"}", "invalid_request",
	     "\"hex:\" or \"base64:\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"secret\":\"base64:" SECRET_B64 "x\"}",
	     "invalid_request", "not valid base64"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"secret\":\"hex:" SECRET_HEX "\","
	     "\"secret_file\":\"/s\"}",
	     "invalid_request", "not both"},
	    {"{\"pid\":1,\"images_dir\":\"/i\",\"dest\":\"h:1\"}", "invalid_request",
	     "exactly one"},
	    {"{\"dest\":\"h:1\"}", "invalid_request", "exactly one"},
	    {"{\"pid\":\"12\",\"dest\":\"h:1\"}", "invalid_request", "must be an integer"},
	    {"{\"pid\":1.5,\"dest\":\"h:1\"}", "invalid_request", "must be an integer"},
	    {"{\"pid\":0,\"dest\":\"h:1\"}", "invalid_request", "\"pid\" must be 1.."},
	    {"{\"pid\":99999999999,\"dest\":\"h:1\"}", "invalid_request", "\"pid\" must be 1.."},
	    {"{\"pid\":1,\"dest\":\"h:port\"}", "invalid_request", "numeric port"},
	    {"{\"pid\":1,\"dest\":\"h:70000\"}", "invalid_request", "numeric port"},
	    {"{\"pid\":1,\"dest\":\"h:\"}", "invalid_request", "numeric port"},
	    {"{\"pid\":1,\"dest\":\"a b:1\"}", "invalid_request", "numeric port"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"transport\":\"udp\"}", "invalid_request",
	     "\"tcp\" or \"tls\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"verify\":\"yes\"}", "invalid_request",
	     "must be a boolean"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"criu_opts\":{\"log_level\":9}}", "invalid_request",
	     "0..4"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"criu_opts\":{\"manage_cgroups\":\"all\"}}",
	     "invalid_request", "soft, full"},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"criu_opts\":[]}", "invalid_request",
	     "must be an object"},
	    {"{\"images_dir\":\"/i\",\"dest\":\"h:1\",\"lazy_dump\":true}", "invalid_request",
	     "\"lazy_dump\" needs \"pid\""},
	    {"{\"images_dir\":\"/i\",\"dest\":\"h:1\",\"precopy\":2}", "invalid_request",
	     "\"precopy\" needs \"pid\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"precopy\":9}", "invalid_request",
	     "an integer from 0 to 8 or \"auto\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"precopy\":\"always\"}", "invalid_request",
	     "an integer from 0 to 8 or \"auto\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"precopy\":true}", "invalid_request",
	     "an integer from 0 to 8 or \"auto\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"precopy\":\"auto\",\"lazy_dump\":true}",
	     "invalid_request", "\"precopy\" cannot go with \"lazy_dump\""},
	    {"{\"pid\":1,\"dest\":\"h:1\",\"lazy_dump\":1}", "invalid_request",
	     "must be a boolean"},
	    {"{\"pid\":1,\"container\":{\"runtime\":\"runc\",\"id\":\"c\"}}", "invalid_request",
	     "exactly one of \"pid\""},
	    {"{\"images_dir\":\"/i\",\"container\":{\"runtime\":\"runc\",\"id\":\"c\"}}",
	     "invalid_request", "exactly one of \"pid\""},
	    {"{\"container\":\"c\"}", "invalid_request", "\"container\" must be an object"},
	    {"{\"container\":{\"id\":\"c\"}}", "invalid_request",
	     "\"container.runtime\" is required"},
	    {"{\"container\":{\"runtime\":\"crun\",\"id\":\"c\"}}", "invalid_request",
	     "must be \"runc\": the only runtime supported"},
	    {"{\"container\":{\"runtime\":7,\"id\":\"c\"}}", "invalid_request",
	     "\"container.runtime\" must be a string"},
	    {"{\"container\":{\"runtime\":\"runc\"}}", "invalid_request",
	     "\"container.id\" is required"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"\"}}", "invalid_request",
	     "\"container.id\" must be 1..128"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"../etc\"}}", "invalid_request",
	     "\"container.id\" must be 1..128"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"a/b\"}}", "invalid_request",
	     "\"container.id\" must be 1..128"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"" LONG_ID129 "\"}}", "invalid_request",
	     "\"container.id\" must be 1..128"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"c\",\"root\":\"run/runc\"}}",
	     "invalid_request", "\"container.root\" must be an absolute path"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"c\",\"bundle\":\"b\"}}",
	     "invalid_request", "\"container.bundle\" must be an absolute path"},
	    {"{\"container\":{\"runtime\":\"runc\",\"id\":\"c\"},\"lazy_dump\":true}",
	     "invalid_request", "\"lazy_dump\" needs \"pid\""},
	};
	struct env *e = *state;
	int before = e->agent.starts;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(e, "POST", "/v1/migrations", bad[i].body[0] ? bad[i].body : NULL, 400,
			     bad[i].code, bad[i].has);
	/* None of them reached the agent. */
	assert_int_equal(e->agent.starts, before);
	/* A malformed body around a secret does not quote it back. */
	expect_error(e, "POST", "/v1/migrations",
		     "{\"pid\":1,\"dest\":\"h:1\",\"secret\":hex:" SECRET_HEX "}", 400,
		     "invalid_json", "line 1");
}

/* A container instead of a pid: typed for the agent, shown in the resource. */
static void test_start_container(void **state)
{
	struct env *e = *state;
	json_t *m, *want;

	m = req_json(e, "POST", "/v1/migrations",
		     "{\"id\":\"ct1\",\"dest\":\"h:1\",\"container\":{\"runtime\":\"runc\","
		     "\"id\":\"web.1\",\"root\":\"/run/runc-x\",\"bundle\":\"/srv/b\"}}",
		     202, NULL);
	check_resource_shape(m);
	assert_true(json_is_null(json_object_get(m, "pid")));
	want = json_pack("{s:s,s:s,s:s,s:s}", "runtime", "runc", "id", "web.1", "root",
			 "/run/runc-x", "bundle", "/srv/b");
	assert_int_equal(json_equal(json_object_get(m, "container"), want), 1);
	json_decref(want);
	json_decref(m);
	assert_int_equal(e->agent.last_pid, 0);
	assert_string_equal(e->agent.last_container, "web.1");
	assert_string_equal(e->agent.last_container_root, "/run/runc-x");

	/* Without a root: null in the resource, NULL for the agent. */
	m = req_json(e, "POST", "/v1/migrations",
		     "{\"id\":\"ct2\",\"container\":{\"runtime\":\"runc\",\"id\":\"" LONG_ID128
		     "\"}}",
		     202, NULL);
	assert_true(json_is_null(json_object_get(json_object_get(m, "container"), "root")));
	assert_true(json_is_null(json_object_get(json_object_get(m, "container"), "bundle")));
	assert_string_equal(e->agent.last_container, LONG_ID128);
	assert_string_equal(e->agent.last_container_root, "");
	json_decref(m);
}

static void test_start_conflicts(void **state)
{
	struct env *e = *state;

	json_decref(req_json(e, "POST", "/v1/migrations",
			     "{\"id\":\"dup\",\"pid\":2,\"dest\":\"h:1\"}", 202, NULL));
	expect_error(e, "POST", "/v1/migrations", "{\"id\":\"dup\",\"pid\":3,\"dest\":\"h:1\"}",
		     409, "conflict", "migration \"dup\" already exists");
	e->agent.busy = true;
	expect_error(e, "POST", "/v1/migrations", "{\"id\":\"busy\",\"pid\":3,\"dest\":\"h:1\"}",
		     503, "unavailable", "the agent is busy");
	e->agent.busy = false;
	expect_error(e, "GET", "/v1/migrations/busy", NULL, 404, "not_found", "busy");
}

static void test_get_and_list(void **state)
{
	struct env *e = *state;
	json_t *j, *arr;
	size_t i;

	json_decref(req_json(e, "POST", "/v1/migrations",
			     "{\"id\":\"g1\",\"pid\":5,\"dest\":\"h:1\"}", 202, NULL));
	j = req_json(e, "GET", "/v1/migrations/g1", NULL, 200, NULL);
	check_resource_shape(j);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "g1");
	json_decref(j);

	j = req_json(e, "GET", "/v1/migrations", NULL, 200, NULL);
	arr = json_object_get(j, "migrations");
	assert_true(json_is_array(arr));
	assert_int_equal(json_array_size(arr), e->agent.n);
	for (i = 0; i < json_array_size(arr); i++)
		check_resource_shape(json_array_get(arr, i));
	json_decref(j);

	expect_error(e, "GET", "/v1/migrations/nope", NULL, 404, "not_found", "\"nope\"");
	expect_error(e, "DELETE", "/v1/migrations/nope", NULL, 404, "not_found", "nope");
	expect_error(e, "POST", "/v1/migrations/nope/rollback", NULL, 404, "not_found", "nope");
}

static void test_abort(void **state)
{
	struct env *e = *state;
	json_t *j;

	json_decref(req_json(e, "POST", "/v1/migrations",
			     "{\"id\":\"ab\",\"pid\":5,\"dest\":\"h:1\"}", 202, NULL));
	j = req_json(e, "DELETE", "/v1/migrations/ab", NULL, 202, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "aborted");
	assert_true(json_is_true(json_object_get(j, "final")));
	json_decref(j);
	/* Already final: 200, nothing changes. */
	j = req_json(e, "DELETE", "/v1/migrations/ab", NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "aborted");
	json_decref(j);
}

static void test_rollback(void **state)
{
	struct env *e = *state;
	json_t *j;

	json_decref(req_json(e, "POST", "/v1/migrations",
			     "{\"id\":\"rb\",\"pid\":5,\"dest\":\"h:1\"}", 202, NULL));
	expect_error(e, "POST", "/v1/migrations/rb/rollback", "{\"force\":1}", 400,
		     "invalid_request", "one field only");
	expect_error(e, "POST", "/v1/migrations/rb/rollback", "{\"force\":true,\"x\":1}", 400,
		     "invalid_request", "one field only");
	j = req_json(e, "POST", "/v1/migrations/rb/rollback", "{\"force\":true}", 202, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "rolled_back");
	json_decref(j);
	expect_error(e, "POST", "/v1/migrations/rb/rollback", NULL, 409, "conflict",
		     "nothing to roll back");
}

static void test_method_not_allowed(void **state)
{
	static const struct {
		const char *method, *path, *allow;
	} cases[] = {
	    {"PUT", "/v1/migrations", "GET, HEAD, POST"},
	    {"DELETE", "/v1/migrations", "GET, HEAD, POST"},
	    {"POST", "/v1/health", "GET, HEAD"},
	    {"PATCH", "/v1/migrations/m1", "GET, HEAD, DELETE"},
	    {"POST", "/v1/migrations/m1", "GET, HEAD, DELETE"},
	    {"GET", "/v1/migrations/m1/rollback", "POST"},
	    {"OPTIONS", "/v1/health", "GET, HEAD"},
	};
	struct env *e = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct apiclient_resp r;
		json_t *j = req_json(e, cases[i].method, cases[i].path, NULL, 405, &r);

		assert_string_equal(r.allow, cases[i].allow);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(j, "error"), "code")),
		    "method_not_allowed");
		apiclient_resp_release(&r);
		json_decref(j);
	}
}

static void test_not_found_paths(void **state)
{
	static const char *const paths[] = {
	    "/",
	    "/v1",
	    "/v2/health",
	    "/v1/healthz",
	    "/v1/migrations/",
	    "/v1/migrationsx",
	    "/v1/migrations/a/b",
	    "/v1/migrations/a/rollback/x",
	    "/v1/migrations/%2e%2e",
	    "/v1/migrations/"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	};
	struct env *e = *state;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		expect_error(e, "GET", paths[i], NULL, 404, "not_found", NULL);
}

static void test_body_limits(void **state)
{
	struct env *e = *state;
	size_t len = API_BODY_MAX_DEFAULT + 1000;
	char *big = malloc(len + 1);
	struct apiclient_resp r;

	assert_non_null(big);
	/* Valid JSON, just too large: the module's JSON 413. */
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	big[len] = '\0';
	expect_error(e, "POST", "/v1/migrations", big, 413, "payload_too_large", "limit");
	free(big);

	/* Above the hard cap evhttp refuses on the Content-Length alone. */
	len = (size_t)API_BODY_MAX_DEFAULT * API_BODY_HARD_FACTOR + 1;
	big = calloc(1, len + 1);
	assert_non_null(big);
	memset(big, ' ', len);
	assert_int_equal(apiclient_request(&e->t, "POST", "/v1/migrations", big, len, &r), 0);
	assert_int_equal(r.status, 413);
	apiclient_resp_release(&r);
	free(big);
	/* The server lives on. */
	json_decref(req_json(e, "GET", "/v1/health", NULL, 200, NULL));
}

static void test_malformed_http(void **state)
{
	static const char *const raw[] = {
	    "garbage\r\n\r\n",
	    "GET /v1/health HTTP/9.9\r\n\r\n",
	    "GET /v1/health HTTP/1.1\r\nContent-Length: x\r\n\r\n",
	};
	struct env *e = *state;
	struct apiclient_resp r;

	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		int ret = apiclient_request_raw(&e->t, raw[i], strlen(raw[i]), &r);

		/* evhttp answers 400 or just drops the connection; never a 2xx. */
		if (ret == 0) {
			assert_true(r.status >= 400 && r.status < 500);
			apiclient_resp_release(&r);
		} else {
			assert_int_equal(ret, -EPROTO);
		}
	}
	json_decref(req_json(e, "GET", "/v1/health", NULL, 200, NULL));
}

static void test_head_and_tcp(void **state)
{
	struct env *e = *state;
	struct apiclient_resp r;
	json_t *j;

	assert_int_equal(apiclient_request(&e->t, "HEAD", "/v1/health", NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	apiclient_resp_release(&r);

	assert_true(api_server_tcp_port(e->srv) > 0);
	assert_int_equal(apiclient_request(&e->tcp, "GET", "/v1/health", NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	j = json_loads(r.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "role")), "source");
	json_decref(j);
	apiclient_resp_release(&r);
}

/* Sends raw on t; returns the status (0: no HTTP answer) and keeps the body's error code. */
static int raw_status(const struct apiclient_target *t, const char *raw, char *code, size_t len)
{
	struct apiclient_resp r;
	json_t *j;
	int status;

	if (apiclient_request_raw(t, raw, strlen(raw), &r) < 0)
		return 0;
	status = r.status;
	j = json_loads(r.body, 0, NULL);
	snprintf(code, len, "%s",
		 j ? json_string_value(json_object_get(json_object_get(j, "error"), "code")) ?: ""
		   : "");
	json_decref(j);
	apiclient_resp_release(&r);
	return status;
}

/* Every POST must say application/json (charset utf-8 at most): 415 otherwise.  Own server:
 * its connections close with it (test_socket_lifecycle counts fds). */
static void test_content_type(void **state)
{
	static const struct {
		const char *ct; /* NULL: no Content-Type header */
		int status;
	} cases[] = {
	    {"application/json", 202},
	    {"application/json; charset=utf-8", 202},
	    {"APPLICATION/JSON;charset=\"UTF-8\"", 202},
	    {"application/json ; charset=utf-8 ", 202},
	    {NULL, 415},
	    {"application/x-www-form-urlencoded", 415},
	    {"text/plain", 415},
	    {"multipart/form-data; boundary=x", 415},
	    {"application/jsonx", 415},
	    {"application/json; charset=latin1", 415},
	    {"application/json; boundary=x", 415},
	};
	static const char body[] = "{\"pid\":3,\"dest\":\"h:1\"}";
	struct env *e = env_start(API_ROLE_SOURCE, "127.0.0.1:0", false);
	char raw[512], ctl[128], code[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(ctl, sizeof(ctl), "Content-Type: %s\r\n", cases[i].ct ? cases[i].ct : "");
		snprintf(raw, sizeof(raw),
			 "POST /v1/migrations HTTP/1.1\r\nHost: localhost\r\n%s"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 cases[i].ct ? ctl : "", strlen(body), body);
		if (raw_status(&e->t, raw, code, sizeof(code)) != cases[i].status)
			fail_msg("Content-Type \"%s\": not %d",
				 cases[i].ct ? cases[i].ct : "(none)", cases[i].status);
		if (cases[i].status == 415)
			assert_string_equal(code, "unsupported_media_type");
	}
	/* A rollback with no body still needs it. */
	snprintf(raw, sizeof(raw),
		 "POST /v1/migrations/x/rollback HTTP/1.1\r\nHost: localhost\r\n"
		 "Content-Length: 0\r\nConnection: close\r\n\r\n");
	assert_int_equal(raw_status(&e->t, raw, code, sizeof(code)), 415);
	env_stop(e);
}

/* On loopback TCP, Host must name loopback (DNS rebinding); the UNIX socket does not care. */
static void test_host_header(void **state)
{
	static const struct {
		const char *host; /* NULL: no Host header */
		int status;
	} cases[] = {
	    {"localhost", 200},
	    {"LocalHost:7472", 200},
	    {"127.0.0.1", 200},
	    {"127.0.0.1:80", 200},
	    {"127.9.8.7:1", 200},
	    {"[::1]", 200},
	    {"[::1]:7472", 200},
	    {NULL, 421},
	    {"", 421},
	    {"evil.example", 421},
	    {"localhost.evil.example", 421},
	    {"127.0.0.1.nip.io", 421},
	    {"10.0.0.1", 421},
	    {"localhost:", 421},
	    {"localhost:123456", 421},
	    {"localhost:80x", 421},
	    {"[::2]", 421},
	    {"::1", 421},
	};
	struct env *e = env_start(API_ROLE_SOURCE, "127.0.0.1:0", false);
	char raw[256], hl[128], code[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(hl, sizeof(hl), "Host: %s\r\n", cases[i].host ? cases[i].host : "");
		snprintf(raw, sizeof(raw),
			 "GET /v1/health HTTP/1.%d\r\n%sConnection: close\r\n\r\n",
			 cases[i].host ? 1 : 0, cases[i].host ? hl : "");
		if (raw_status(&e->tcp, raw, code, sizeof(code)) != cases[i].status)
			fail_msg("Host \"%s\": not %d", cases[i].host ? cases[i].host : "(none)",
				 cases[i].status);
		if (cases[i].status == 421)
			assert_string_equal(code, "misdirected_request");
	}
	assert_int_equal(raw_status(&e->t,
				    "GET /v1/health HTTP/1.1\r\nHost: evil.example\r\n"
				    "Connection: close\r\n\r\n",
				    code, sizeof(code)),
			 200);
	env_stop(e);
}

/*
 * In a child that becomes nobody with the given groups: GET /v1/health on
 * path.  Only system calls after fork (the parent has threads).  Exit
 * code: the status / 100, 9 when no HTTP answer came.
 */
static int as_nobody(const char *path, gid_t gid, const gid_t *groups, int ngroups)
{
	static const char req[] = "GET /v1/health HTTP/1.0\r\n\r\n";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int status;
	pid_t pid;

	set_sun_path(&sa, path);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char buf[64] = "";
		int fd;

		if (setgroups((size_t)ngroups, groups) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(8);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1 ||
		    read(fd, buf, sizeof(buf) - 1) < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
			_exit(9);
		_exit(buf[9] - '0');
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/*
 * SO_PEERCRED on the UNIX socket: root and members of --api-group (as the
 * primary or a supplementary group) are served, anyone else gets 403 even
 * when the socket file's mode would let them connect.
 */
static void test_peer_credentials(void **state)
{
	static const gid_t member[] = {54329}, other[] = {65534};
	struct env *e;
	struct stat st;
	char run[96];

	if (geteuid() != 0) {
		skip(); /* needs root to become nobody */
		return;
	}
	/* nobody must reach the sockets: the file modes decide the rest. */
	assert_int_equal(chmod(tmp_root, 0711), 0);
	env_group = "54329"; /* a gid, so no group needs to exist */
	e = env_start(API_ROLE_SOURCE, NULL, false);
	env_group = NULL;
	assert_int_equal(stat(e->sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, 54329);
	assert_int_equal(chmod(e->dir, 0711), 0);

	assert_int_equal(as_nobody(e->sock, 65534, other, 1), 9);  /* mode 0660: no connect */
	assert_int_equal(as_nobody(e->sock, 54329, NULL, 0), 2);   /* primary group */
	assert_int_equal(as_nobody(e->sock, 65534, member, 1), 2); /* supplementary */
	assert_int_equal(chmod(e->sock, 0666), 0);
	assert_int_equal(as_nobody(e->sock, 65534, other, 1), 4); /* connects, 403 */
	assert_int_equal(as_nobody(e->sock, 65534, NULL, 0), 4);
	json_decref(req_json(e, "GET", "/v1/health", NULL, 200, NULL)); /* root */
	env_stop(e);

	/* No group: root only, whatever the mode. */
	e = env_start(API_ROLE_DEST, NULL, false);
	assert_int_equal(stat(e->sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(chmod(e->dir, 0711), 0);
	assert_int_equal(chmod(e->sock, 0666), 0);
	assert_int_equal(as_nobody(e->sock, 54329, member, 1), 4);
	env_stop(e);

	/* An inherited (systemd) socket: the same check, whatever mode its unit gave it. */
	e = env_start(API_ROLE_SOURCE, NULL, true);
	snprintf(run, sizeof(run), "%s/run", e->dir);
	assert_int_equal(chmod(e->dir, 0711), 0);
	assert_int_equal(chmod(run, 0755), 0);
	assert_int_equal(chmod(e->sock, 0666), 0);
	assert_int_equal(as_nobody(e->sock, 65534, NULL, 0), 4);
	json_decref(req_json(e, "GET", "/v1/health", NULL, 200, NULL));
	unlink(e->sock); /* systemd's file: the server leaves it */
	env_stop(e);
	assert_int_equal(chmod(tmp_root, 0700), 0);
}

/* An unknown --api-group fails the start. */
static void test_unknown_group(void **state)
{
	struct api_config cfg = {.role = API_ROLE_SOURCE,
				 .socket_path = "",
				 .tcp = "127.0.0.1:0",
				 .group = "no-such-group-rdmig"};
	struct event_base *base = event_base_new();
	struct api_server *srv = NULL;

	assert_non_null(base);
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, NULL, &srv), -ENOENT);
	assert_null(srv);
	event_base_free(base);
}

/* --- Without a shared server ---------------------------------------------- */

static void test_view_json(void **state)
{
	struct api_migration_view v;
	enum api_state st;
	json_t *j;

	api_migration_view_init(&v);
	v.id = "x";
	v.role = API_ROLE_DEST;
	v.state = API_STATE_ROLLED_BACK;
	v.source = "10.0.0.1:7471";
	v.pages_total = UINT64_MAX; /* clamped, not negative */
	v.freeze_ms = 0;
	j = api_migration_to_json(&v);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "role")), "dest");
	assert_string_equal(json_string_value(json_object_get(j, "state")), "rolled_back");
	assert_true(json_is_true(json_object_get(j, "final")));
	assert_true(json_is_null(json_object_get(j, "dest")));
	assert_true(json_is_null(json_object_get(j, "pid")));
	assert_true(json_is_null(json_object_get(j, "error")));
	assert_true(json_is_null(json_object_get(json_object_get(j, "times"), "created")));
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(j, "times"), "freeze_ms")), 0);
	assert_true(
	    json_integer_value(json_object_get(json_object_get(j, "progress"), "pages_total")) > 0);
	/* Never paused: no reason, no start, no pause counted. */
	assert_true(json_is_null(json_object_get(json_object_get(j, "pause"), "reason")));
	assert_true(json_is_null(json_object_get(json_object_get(j, "pause"), "since")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "pause"), "count")),
			 0);
	json_decref(j);

	/* Not queued: null; queued: its place, since when and why. */
	j = api_migration_to_json(&v);
	assert_true(json_is_null(json_object_get(j, "queue")));
	json_decref(j);
	v.state = API_STATE_QUEUED;
	v.queue_position = 2;
	v.queue_since_unix_ms = 1000;
	v.queue_reason = "slot";
	j = api_migration_to_json(&v);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "queued");
	assert_true(json_is_false(json_object_get(j, "final")));
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(j, "queue"), "position")), 2);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "queue"), "reason")), "slot");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "queue"), "since")),
	    "1970-01-01T00:00:01.000Z");
	assert_int_equal(api_state_parse("queued", &st), 0);
	assert_int_equal(st, API_STATE_QUEUED);
	json_decref(j);
	v.state = API_STATE_ROLLED_BACK;
	v.queue_position = 0;

	/* Pre-copy off: null; on: what was asked, each round, the final dump's pages. */
	j = api_migration_to_json(&v);
	assert_true(json_is_null(json_object_get(j, "precopy")));
	json_decref(j);
	{
		const struct api_precopy_round rounds[2] = {
		    {.pages = 1000, .bytes = 4096000, .ms = 120, .dirty_rate = 0},
		    {.pages = 300, .bytes = 1228800, .ms = 40, .dirty_rate = 2500},
		};
		json_int_t p0, d1, fin;
		const char *req;

		v.precopy = API_PRECOPY_AUTO;
		v.precopy_rounds = rounds;
		v.nr_precopy_rounds = 2;
		v.precopy_final_pages = 50;
		j = api_migration_to_json(&v);
		assert_int_equal(json_unpack(json_object_get(j, "precopy"),
					     "{s:s,s:[{s:I},{s:I}],s:I}", "requested", &req,
					     "rounds", "pages", &p0, "dirty_pages_per_s", &d1,
					     "final_pages", &fin),
				 0);
		assert_string_equal(req, "auto");
		assert_int_equal(p0, 1000);
		assert_int_equal(d1, 2500);
		assert_int_equal(fin, 50);
		v.precopy = API_PRECOPY_OFF;
	}
	json_decref(j);

	/* Read-ahead per task: none before a fault; then pid, pattern, window, stride. */
	j = api_migration_to_json(&v);
	assert_int_equal(json_array_size(json_object_get(json_object_get(j, "readahead"), "tasks")),
			 0);
	json_decref(j);
	{
		json_int_t pid, window, stride;
		const char *pat;

		v.nr_ra_tasks = 1;
		v.ra_tasks[0] = (struct api_ra_task){
		    .pid = 42, .pattern = "strided", .window = 1, .stride = 32};
		j = api_migration_to_json(&v);
		assert_int_equal(json_unpack(json_object_get(j, "readahead"),
					     "{s:[{s:I,s:s,s:I,s:I}]}", "tasks", "pid", &pid,
					     "pattern", &pat, "window", &window, "stride", &stride),
				 0);
		assert_int_equal(pid, 42);
		assert_string_equal(pat, "strided");
		assert_int_equal(window, 1);
		assert_int_equal(stride, 32);
		json_decref(j);
		v.nr_ra_tasks = 0;
	}

	v.state = API_STATE_PAUSED;
	v.pause_reason = "connection to the source lost";
	v.pause_since_unix_ms = 1700000000000;
	v.pauses = 2;
	v.paused_ms = 1500;
	j = api_migration_to_json(&v);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "paused");
	assert_true(json_is_false(json_object_get(j, "final")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "pause"), "reason")),
	    "connection to the source lost");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "pause"), "since")),
	    "2023-11-14T22:13:20.000Z");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "pause"), "count")),
			 2);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(j, "pause"), "total_ms")), 1500);
	json_decref(j);

	for (int s = 0; s < API_STATE__COUNT; s++) {
		assert_int_equal(api_state_parse(api_state_str(s), &st), 0);
		assert_int_equal(st, s);
		assert_int_equal(api_state_is_final(s), s >= API_STATE_DONE &&
							    s != API_STATE_PAUSED &&
							    s != API_STATE_QUEUED);
	}
	assert_int_equal(api_state_parse("running", &st), -EINVAL);
	assert_string_equal(api_state_str(API_STATE__COUNT), "unknown");
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_socket_lifecycle(void **state)
{
	struct event_base *base = event_base_new();
	struct api_server *a = NULL, *b = NULL;
	struct api_config cfg = {.role = API_ROLE_SOURCE};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[96], path[160];
	struct fake_agent ag = {0};
	struct stat st;
	int fds = count_fds(), fd;

	assert_non_null(base);
	snprintf(dir, sizeof(dir), "%s/lifeXXXXXX", tmp_root);
	assert_non_null(mkdtemp(dir));
	/* Missing parents are created; the socket is 0600. */
	snprintf(path, sizeof(path), "%s/a/b/api.sock", dir);
	cfg.socket_path = path;
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), 0);
	assert_string_equal(api_server_socket_path(a), path);
	assert_int_equal(api_server_tcp_port(a), -ENOENT);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A live agent on the path: refused, and its socket left alone. */
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &b), -EADDRINUSE);
	assert_int_equal(lstat(path, &st), 0);
	api_server_destroy(a);
	/* Destroy removes the socket and closes every fd. */
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(count_fds(), fds);

	/* A stale socket (nobody accepts) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	set_sun_path(&sa, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	cfg.socket_mode = 0660;
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	api_server_destroy(a);

	/* A regular file is never replaced. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), -EEXIST);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);

	/* No listener at all, and bad TCP addresses, are configuration errors. */
	cfg.socket_path = "";
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), -EINVAL);
	cfg.tcp = "localhost";
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), -EINVAL);
	/* Plain HTTP over TCP: never without insecure_tcp, and then on loopback only. */
	cfg.tcp = "127.0.0.1:0";
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), -EPERM);
	cfg.insecure_tcp = true;
	cfg.tcp = "0.0.0.0:0";
	assert_int_equal(api_server_create(base, &cfg, &fake_ops, &ag, &a), -EPERM);
	assert_int_equal(count_fds(), fds);

	snprintf(path, sizeof(path), "%s/a/b", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a", dir);
	rmdir(path);
	rmdir(dir);
	event_base_free(base);
}

static void test_dest_role(void **state)
{
	struct env *e = env_start(API_ROLE_DEST, NULL, false);
	json_t *j;

	j = req_json(e, "GET", "/v1/health", NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "role")), "dest");
	json_decref(j);
	j = req_json(e, "POST", "/v1/migrations",
		     "{\"id\":\"d1\",\"source\":\"192.0.2.1:7471\",\"images_dir\":\"/img\","
		     "\"work_dir\":\"/work\",\"restore\":false,\"transport\":\"rdma\","
		     "\"secret\":\"base64:" SECRET_B64 "\"}",
		     202, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "source")), "192.0.2.1:7471");
	assert_true(json_is_null(json_object_get(j, "dest")));
	json_decref(j);
	assert_false(e->agent.last_restore);
	assert_string_equal(e->agent.last_work, "/work");
	assert_string_equal(e->agent.last_images, "/img");
	assert_string_equal(e->agent.last_host, "192.0.2.1");

	expect_error(e, "POST", "/v1/migrations",
		     "{\"source\":\"h:1\",\"images_dir\":\"/img\",\"pid\":3}", 400,
		     "invalid_request", "not accepted by the dest agent");
	expect_error(e, "POST", "/v1/migrations", "{\"source\":\"h:1\",\"advertise\":\"h:2\"}", 400,
		     "invalid_request", "not accepted by the dest agent");
	/* A destination restores a container from its bundle: it must be told where. */
	expect_error(e, "POST", "/v1/migrations",
		     "{\"source\":\"h:1\",\"container\":{\"runtime\":\"runc\",\"id\":\"c\"}}", 400,
		     "invalid_request", "\"container.bundle\" is required");
	expect_error(e, "POST", "/v1/migrations",
		     "{\"source\":\"h:1\",\"restore\":false,\"container\":{\"runtime\":\"runc\","
		     "\"id\":\"c\",\"bundle\":\"/b\"}}",
		     400, "invalid_request", "\"container\" needs \"restore\"");
	expect_error(e, "POST", "/v1/migrations", "{\"images_dir\":\"/i\"}", 400, "invalid_request",
		     "\"source\" is required");
	expect_error(e, "POST", "/v1/migrations",
		     "{\"source\":\"h:1\",\"images_dir\":\"/i\",\"work_dir\":\"w\"}", 400,
		     "invalid_request", "absolute");
	expect_error(e, "POST", "/v1/migrations",
		     "{\"source\":\"h:1\",\"images_dir\":\"/i\","
		     "\"criu_opts\":{\"leave_running\":true}}",
		     400, "invalid_request", "criu_opts.leave_running");
	expect_error(e, "POST", "/v1/migrations/d1/rollback", NULL, 405, "method_not_allowed",
		     "source agent");
	env_stop(e);
}

/* POST/GET/DELETE /v1/reservations: the dest agent's; 404 on the source. */
static void test_reservations(void **state)
{
	struct env *e = env_start(API_ROLE_DEST, NULL, false);
	struct fake_agent *a = &e->agent;
	struct apiclient_resp r;
	json_t *j;

	expect_error(e, "POST", "/v1/reservations", "{\"bytes\":1}", 400, "invalid_request",
		     "\"migration\" is required");
	expect_error(e, "POST", "/v1/reservations", "{\"migration\":\"m1\",\"bytes\":-1}", 400,
		     "invalid_request", "\"bytes\" is required");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"ttl_s\":0}", 400, "invalid_request",
		     "1..3600");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"images_dir\":\"rel\"}", 400,
		     "invalid_request", "absolute");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"bundle\":\"srv/b\"}", 400,
		     "invalid_request", "\"bundle\" must be an absolute path");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"bundle\":[]}", 400, "invalid_request",
		     "\"bundle\" must be a string");
	expect_error(e, "POST", "/v1/reservations", "{\"migration\":\"m1\",\"bytes\":1,\"x\":1}",
		     400, "invalid_request", "unknown field");
	assert_false(a->reserved);
	j = req_json(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":4096,\"images_dir\":\"/w/m1\"}", 201, &r);
	assert_string_equal(r.location, "/v1/reservations/r-1");
	apiclient_resp_release(&r);
	assert_string_equal(json_string_value(json_object_get(j, "migration")), "m1");
	assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 4096);
	assert_int_equal(json_integer_value(json_object_get(j, "ttl_s")),
			 API_RESERVE_TTL_DEFAULT_S);
	assert_string_equal(json_string_value(json_object_get(j, "images_dir")), "/w/m1");
	json_decref(j);
	expect_error(e, "POST", "/v1/reservations", "{\"migration\":\"m2\",\"bytes\":0}", 503,
		     "unavailable", "no free slot");
	j = req_json(e, "GET", "/v1/reservations", NULL, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "reservations")), 1);
	json_decref(j);
	json_decref(req_json(e, "GET", "/v1/reservations/r-1", NULL, 200, NULL));
	expect_error(e, "GET", "/v1/reservations/r-2", NULL, 404, "not_found", "no reservation");
	expect_error(e, "PUT", "/v1/reservations/r-1", NULL, 405, "method_not_allowed", "DELETE");
	/* A migration names its reservation. */
	json_decref(req_json(e, "POST", "/v1/migrations",
			     "{\"id\":\"m1\",\"source\":\"h:1\",\"reservation\":\"r-1\","
			     "\"secret\":\"base64:" SECRET_B64 "\"}",
			     202, NULL));
	assert_string_equal(a->last_reservation, "r-1");
	expect_error(e, "POST", "/v1/migrations",
		     "{\"id\":\"m9\",\"source\":\"h:1\",\"reservation\":\"../x\"}", 400,
		     "invalid_request", "\"reservation\" must be");
	json_decref(req_json(e, "DELETE", "/v1/reservations/r-1", NULL, 200, NULL));
	expect_error(e, "DELETE", "/v1/reservations/r-1", NULL, 404, "not_found", "r-1");
	env_stop(e);

	e = env_start(API_ROLE_SOURCE, NULL, false);
	expect_error(e, "POST", "/v1/reservations", "{\"migration\":\"m1\",\"bytes\":1}", 404,
		     "not_found", "no such resource");
	expect_error(e, "POST", "/v1/migrations",
		     "{\"id\":\"m1\",\"pid\":5,\"reservation\":\"r-1\"}", 400, "invalid_request",
		     "not accepted by the source agent");
	env_stop(e);
}

/* A reservation's "start" (design.md §10.3): the POST's fields, checked by its parser. */
static void test_reservation_start(void **state)
{
	struct env *e = env_start(API_ROLE_DEST, NULL, false);
	struct fake_agent *a = &e->agent;
	json_t *j;

	j = req_json(e, "GET", "/v1/health", NULL, 200, NULL);
	assert_true(json_is_true(json_object_get(j, "reservation_start")));
	json_decref(j);
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":{\"source\":\"h:1\"}}", 400,
		     "invalid_request", "\"start.secret\" is required");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":{\"source\":\"h:1\","
		     "\"secret_file\":\"/s\"}}",
		     400, "invalid_request", "start.secret_file");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":{\"source\":\"h:1\","
		     "\"id\":\"m1\",\"secret\":\"base64:" SECRET_B64 "\"}}",
		     400, "invalid_request", "start.id");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":{\"secret\":\"base64:" SECRET_B64
		     "\"}}",
		     400, "invalid_request", "\"source\" is required");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":{\"source\":\"h:1\","
		     "\"transport\":\"x\",\"secret\":\"base64:" SECRET_B64 "\"}}",
		     400, "invalid_request", "\"transport\" must be");
	expect_error(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":[]}", 400, "invalid_request",
		     "\"start\" must be an object");
	assert_false(a->reserved);
	j = req_json(e, "POST", "/v1/reservations",
		     "{\"migration\":\"m1\",\"bytes\":1,\"start\":{\"source\":\"h:1\","
		     "\"verify\":true,\"secret\":\"base64:" SECRET_B64 "\"}}",
		     201, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "worker")), "started");
	json_decref(j);
	assert_string_equal(a->resv_start, "m1 h:1 1 29");
	env_stop(e);

	e = env_start(API_ROLE_SOURCE, NULL, false);
	j = req_json(e, "GET", "/v1/health", NULL, 200, NULL);
	assert_true(json_is_false(json_object_get(j, "reservation_start")));
	json_decref(j);
	env_stop(e);
}

static void test_inherited_fd(void **state)
{
	struct env *e = env_start(API_ROLE_SOURCE, NULL, true);
	struct stat st;
	json_t *j;

	assert_null(api_server_socket_path(e->srv));
	j = req_json(e, "GET", "/v1/health", NULL, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	json_decref(j);
	event_base_loopbreak(e->base);
	pthread_join(e->thread, NULL);
	e->running = false;
	api_server_destroy(e->srv);
	e->srv = NULL;
	/* The socket file belongs to whoever made it (systemd): left in place. */
	assert_int_equal(lstat(e->sock, &st), 0);
	unlink(e->sock);
	env_stop(e);
}

static void test_client_errors(void **state)
{
	struct apiclient_target t = {.timeout_ms = 1000};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct apiclient_resp r;
	char path[128], buf[160];
	int fd;

	snprintf(path, sizeof(path), "%s/none.sock", tmp_root);
	t.unix_path = path;
	assert_int_equal(apiclient_request(&t, "GET", "/v1/health", NULL, 0, &r), -ENOENT);
	assert_string_equal(apiclient_target_str(&t, buf, sizeof(buf)), path);
	/* A socket file nobody listens on. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	set_sun_path(&sa, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(apiclient_request(&t, "GET", "/v1/health", NULL, 0, &r), -ECONNREFUSED);
	close(fd);
	unlink(path);
	/* Requests that cannot be written safely. */
	assert_int_equal(apiclient_request(&t, "GET", "/v1/he alth", NULL, 0, &r), -EINVAL);
	assert_int_equal(apiclient_request(&t, "GET", "v1/health", NULL, 0, &r), -EINVAL);
	t.host = "::1";
	t.port = "7";
	assert_string_equal(apiclient_target_str(&t, buf, sizeof(buf)), "[::1]:7");
}

/* A stub server that answers a fixed response, to test the client's reader. */
struct stub {
	int lfd;
	const char *reply;
	pthread_t th;
};

static void *stub_serve(void *arg)
{
	struct stub *s = arg;
	char buf[4096];
	int c = accept(s->lfd, NULL, NULL);

	if (c < 0)
		return NULL;
	(void)!read(c, buf, sizeof(buf));
	(void)!write(c, s->reply, strlen(s->reply));
	close(c);
	return NULL;
}

static int stub_request(const char *reply, struct apiclient_resp *r)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct apiclient_target t = {.timeout_ms = 2000};
	struct stub s = {.reply = reply};
	int ret;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stub.sock", tmp_root);
	unlink(sa.sun_path);
	s.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s.lfd, 1), 0);
	assert_int_equal(pthread_create(&s.th, NULL, stub_serve, &s), 0);
	t.unix_path = sa.sun_path;
	ret = apiclient_request(&t, "GET", "/x", NULL, 0, r);
	pthread_join(s.th, NULL);
	close(s.lfd);
	unlink(sa.sun_path);
	return ret;
}

static void test_client_reader(void **state)
{
	struct apiclient_resp r;

	assert_int_equal(stub_request("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
				      &r),
			 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "abcde");
	apiclient_resp_release(&r);
	assert_int_equal(
	    stub_request("HTTP/1.0 404 Not Found\r\nlocation: /a\r\n\r\nuntil close", &r), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.reason, "Not Found");
	assert_string_equal(r.location, "/a");
	assert_string_equal(r.body, "until close");
	apiclient_resp_release(&r);
	assert_int_equal(stub_request("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\n"
				      "Content-Length: 2\r\n\r\n{}",
				      &r),
			 0);
	assert_int_equal(r.status, 202);
	assert_string_equal(r.body, "{}");
	apiclient_resp_release(&r);
	/* Truncated and malformed responses. */
	assert_int_equal(stub_request("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &r),
			 -EPROTO);
	assert_int_equal(stub_request("SSH-2.0-OpenSSH\r\n\r\n", &r), -EPROTO);
	assert_int_equal(stub_request("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", &r),
			 -EMSGSIZE);
	assert_int_equal(stub_request("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "zz\r\n",
				      &r),
			 -EPROTO);
	assert_int_equal(stub_request("HTTP/1.1 200 OK\r\n", &r), -EPROTO);
}

/* Runs last: nothing logged during the whole run carried the secret. */
static void test_secret_never_logged(void **state)
{
	FILE *f = fopen(log_path, "r");
	char *buf = calloc(1, 1 << 22);
	size_t n;

	assert_non_null(f);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 22) - 1, f);
	fclose(f);
	assert_true(n > 0); /* the API did log (debug level) */
	assert_non_null(strstr(buf, "api: migration m1 started"));
	assert_null(strstr(buf, SECRET_RAW));
	assert_null(strstr(buf, SECRET_HEX));
	assert_null(strstr(buf, SECRET_B64));
	assert_null(strstr(buf, "636f727265637420"));
	free(buf);
}

int main(void)
{
	/* One group (one TAP plan); the tests after test_head_and_tcp ignore the shared server. */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health),
	    cmocka_unit_test(test_start_202),
	    cmocka_unit_test(test_start_variants),
	    cmocka_unit_test(test_start_validation),
	    cmocka_unit_test(test_start_container),
	    cmocka_unit_test(test_start_conflicts),
	    cmocka_unit_test(test_get_and_list),
	    cmocka_unit_test(test_abort),
	    cmocka_unit_test(test_rollback),
	    cmocka_unit_test(test_method_not_allowed),
	    cmocka_unit_test(test_not_found_paths),
	    cmocka_unit_test(test_body_limits),
	    cmocka_unit_test(test_malformed_http),
	    cmocka_unit_test(test_head_and_tcp),
	    cmocka_unit_test(test_content_type),
	    cmocka_unit_test(test_host_header),
	    cmocka_unit_test(test_view_json),
	    cmocka_unit_test(test_socket_lifecycle),
	    cmocka_unit_test(test_dest_role),
	    cmocka_unit_test(test_reservations),
	    cmocka_unit_test(test_reservation_start),
	    cmocka_unit_test(test_inherited_fd),
	    cmocka_unit_test(test_peer_credentials),
	    cmocka_unit_test(test_unknown_group),
	    cmocka_unit_test(test_client_errors),
	    cmocka_unit_test(test_client_reader),
	    cmocka_unit_test(test_secret_never_logged),
	};
	int fails, logfd;

	snprintf(tmp_root, sizeof(tmp_root), "/tmp/rdmig-api-XXXXXX");
	if (!mkdtemp(tmp_root) || evthread_use_pthreads() < 0)
		return 99;
	/* Everything the API logs goes to a file that the last test searches. */
	snprintf(log_path, sizeof(log_path), "%s/log", tmp_root);
	logfd = open(log_path, O_CREAT | O_WRONLY | O_TRUNC | O_APPEND, 0600);
	if (logfd < 0 || dup2(logfd, STDERR_FILENO) < 0)
		return 99;
	close(logfd);
	setvbuf(stderr, NULL, _IONBF, 0);
	log_init("test_api", LOG_LVL_DEBUG);

	fails = cmocka_run_group_tests(tests, group_setup, group_teardown);
	if (fails == 0) {
		unlink(log_path);
		rmdir(tmp_root);
	} else {
		/* cmocka wrote the failure details to stderr, i.e. into the log. */
		printf("# failure details and the API log: %s\n", log_path);
	}
	return fails;
}
