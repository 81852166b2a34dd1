// SPDX-License-Identifier: GPL-2.0-or-later
#include "api_glue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "image.h"
#include "log.h"

static enum api_state glue_state(enum src_mig_state st)
{
	switch (st) {
	case SRC_MIG_READY:
	case SRC_MIG_SERVING:
		return API_STATE_SERVING;
	case SRC_MIG_DONE:
		return API_STATE_DONE;
	case SRC_MIG_FAILED:
		return API_STATE_FAILED;
	case SRC_MIG_ABORTED:
		return API_STATE_ABORTED;
	}
	return API_STATE_FAILED;
}

static bool glue_final(const struct src_migration *m)
{
	return api_state_is_final(glue_state(m->state));
}

static uint64_t glue_max(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/*
 * Over TCP the source counts the pages it answered; over RDMA the
 * destination reads them one-sided, so only its Progress messages tell.
 */
static void glue_view(const struct src_agent *a, const struct src_migration *m,
		      struct api_migration_view *v)
{
	int64_t end = m->finished_unix_ms ? m->finished_unix_ms : src_unix_ms();

	v->id = m->id;
	v->role = API_ROLE_SOURCE;
	v->state = glue_state(m->state);
	v->error = m->error[0] ? m->error : NULL;
	v->source = a->endpoint[0] ? a->endpoint : NULL;
	v->dest = m->peer[0] ? m->peer : m->dest;
	v->transport = a->kind == XPORT_TCP ? API_TRANSPORT_TCP : API_TRANSPORT_RDMA;
	v->images_dir = m->dir;
	v->verify = m->verify;
	v->pages_total = m->lazy_bytes / IMG_PAGE_SIZE;
	v->pages_fetched = glue_max(m->prog_pages, m->bytes_served / IMG_PAGE_SIZE);
	if (v->pages_fetched > v->pages_total)
		v->pages_fetched = v->pages_total;
	v->pages_remaining = v->pages_total - v->pages_fetched;
	v->faults = m->prog_faults;
	v->bytes = glue_max(m->prog_bytes, m->bytes_served);
	v->created_unix_ms = m->created_unix_ms;
	v->finished_unix_ms = m->finished_unix_ms;
	v->total_ms = end >= m->created_unix_ms ? end - m->created_unix_ms : 0;
}

/* The secret of a start request: inline, or the agent reads secret_file. */
static int glue_secret(const struct api_start_req *req, struct auth_secret **out,
		       struct api_error *err)
{
	int ret;

	if (req->secret) {
		ret = auth_secret_from_buf(req->secret, req->secret_len, out);
		if (ret < 0)
			return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL,
					     "field \"secret\" is not usable: %s", strerror(-ret));
		return 0;
	}
	if (!req->secret_file)
		return api_error_set(err, -EINVAL,
				     "give \"secret\" or \"secret_file\": this source has no "
				     "default secret");
	ret = src_mig_load_secret(req->id, req->secret_file, out);
	if (ret < 0)
		return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL, "secret_file %s: %s",
				     req->secret_file, strerror(-ret));
	return 0;
}

static int glue_start(void *agent, const struct api_start_req *req, struct api_error *err)
{
	struct src_agent *a = agent;
	struct auth_secret *secret = NULL;
	struct src_migration *m = NULL, *old;
	enum xport_kind want;
	int ret;

	if (req->pid > 0) {
		ret = api_error_set(err, -EOPNOTSUPP,
				    "pid: dumping by the agent is not implemented yet; dump with "
				    "criu and pass images_dir");
		goto out;
	}
	old = src_mig_find(&a->migrations, req->id);
	if (old) {
		ret = api_error_set(err, -EEXIST, "migration \"%s\" already exists (%s)", req->id,
				    api_state_str(glue_state(old->state)));
		goto out;
	}
	want = req->transport == API_TRANSPORT_TCP ? XPORT_TCP : XPORT_RDMA;
	if (req->transport_set && want != a->kind) {
		ret = api_error_set(err, -EBUSY,
				    "transport: this source serves over %s (its --transport), "
				    "not %s; omit \"transport\" or use a source started with "
				    "--transport %s",
				    xport_kind_str(a->kind), xport_kind_str(want),
				    xport_kind_str(want));
		goto out;
	}
	ret = glue_secret(req, &secret, err);
	if (ret < 0)
		goto out;
	/* The agent's --verify offers checksums for every migration. */
	ret = src_mig_create(req->id, req->images_dir, secret, req->verify || a->verify, &m);
	secret = NULL; /* src_mig_create took it */
	if (ret < 0) {
		ret = api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL,
				    "images_dir %s: cannot serve these images: %s", req->images_dir,
				    strerror(-ret));
		goto out;
	}
	if (req->peer) {
		m->dest = strdup(req->peer);
		if (!m->dest) {
			ret = api_error_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	TAILQ_INSERT_TAIL(&a->migrations, m, link);
	log_info("migration %s: serving %s to a destination that connects to %s (%s)", m->id,
		 m->dir, a->endpoint, xport_kind_str(a->kind));
	m = NULL;
	ret = 0;
out:
	src_mig_destroy(m);
	auth_secret_free(secret);
	return ret;
}

static int glue_get(void *agent, const char *id, struct api_migration_view *out)
{
	struct src_agent *a = agent;
	struct src_migration *m = src_mig_find(&a->migrations, id);

	if (!m)
		return -ENOENT;
	glue_view(a, m, out);
	return 0;
}

static int glue_list(void *agent, api_emit_fn emit, void *ctx)
{
	struct src_agent *a = agent;
	struct api_migration_view v;
	struct src_migration *m;
	int ret;

	TAILQ_FOREACH(m, &a->migrations, link)
	{
		api_migration_view_init(&v);
		glue_view(a, m, &v);
		ret = emit(ctx, &v);
		if (ret)
			return ret;
	}
	return 0;
}

static int glue_abort(void *agent, const char *id, struct api_error *err)
{
	struct src_agent *a = agent;
	struct src_migration *m = src_mig_find(&a->migrations, id);

	if (!m)
		return api_error_set(err, -ENOENT, "no migration \"%s\"", id);
	if (glue_final(m))
		return -EALREADY;
	src_session_cancel(a, m, "migration aborted on the source");
	src_mig_set_aborted(m, "aborted through the API");
	return 0;
}

static int glue_rollback(void *agent, const char *id, struct api_error *err)
{
	struct src_agent *a = agent;
	struct src_migration *m = src_mig_find(&a->migrations, id);

	if (!m)
		return api_error_set(err, -ENOENT, "no migration \"%s\"", id);
	return api_error_set(err, -EOPNOTSUPP,
			     "rollback is not implemented on the source yet; the checkpoint "
			     "stays in %s: abort the migration and restore it with criu",
			     m->dir);
}

static const struct api_ops glue_ops = {
    .start = glue_start,
    .get = glue_get,
    .list = glue_list,
    .abort = glue_abort,
    .rollback = glue_rollback,
};

int src_api_start(struct src_agent *a, const struct src_api_opts *o)
{
	struct api_config cfg = {
	    .role = API_ROLE_SOURCE,
	    /* "": no UNIX socket (NULL would mean the default path). */
	    .socket_path = o->socket_path ? o->socket_path : "",
	    .tcp = o->tcp,
	};
	int ret;

	ret = api_server_create(a->base, &cfg, &glue_ops, a, &a->api);
	if (ret < 0) {
		log_err("api: cannot serve on %s%s%s: %s", o->socket_path ? o->socket_path : "",
			o->socket_path && o->tcp ? " and " : "", o->tcp ? o->tcp : "",
			strerror(-ret));
		return ret;
	}
	if (o->socket_path)
		log_info("api: serving on %s", api_server_socket_path(a->api));
	if (o->tcp)
		log_info("api: serving on TCP port %d (unauthenticated)",
			 api_server_tcp_port(a->api));
	return 0;
}

void src_api_stop(struct src_agent *a)
{
	api_server_destroy(a->api);
	a->api = NULL;
}
