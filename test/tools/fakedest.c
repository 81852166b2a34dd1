// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-fakedest: a stand-in for the destination agent's API in the host
 * tests of the source's handover (test/host/net-handover.sh).
 *
 * It serves the dest role of the API with the project's own server
 * (common/api.c), so a handover request is validated by the real contract.
 * Each accepted migration is recorded in --record DIR: <id>.req (the
 * request's fields, one "key=value" a line, never the secret) and
 * <id>.secret (the decoded secret's bytes, 0600) so the test can compare
 * them with what the source was given.  Then:
 *   --run CMD   runs `sh -c CMD` with FAKEDEST_ID, FAKEDEST_SOURCE (host),
 *               FAKEDEST_PORT, FAKEDEST_TRANSPORT, FAKEDEST_SECRET_FILE and
 *               FAKEDEST_DIR (DIR/<id>, made); the migration is receiving
 *               while it runs, postcopy once it created FAKEDEST_DIR/resumed
 *               (resumed_ms and restore_ms: that file's age at the request),
 *               done when it exits 0, failed otherwise;
 *   (none)      the migration stays connecting.
 *   --refuse MSG   answers every POST with 503 and MSG.
 *   --silent       listens on 127.0.0.1 but never answers (nor accepts).
 *   --post-delay MS  answers a POST only after MS ms (blocking: it is a
 *                  stand-in), so the source can act while its POST waits.
 * A DELETE of a migration that is not final records <id>.abort (the state
 * it was in, one line) before aborting it, so the test sees the source
 * pass an abort on.
 * A done migration reports --faults N and --latency P50,P99 (µs).
 * The bound TCP port goes to --port-file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define FAKE_MAX 16

struct fake_mig {
	char id[API_ID_MAX + 1];
	char source[API_HOSTPORT_MAX + 1];
	char error[128];
	enum api_state state;
	enum api_transport transport;
	pid_t child;
	int64_t accepted_ms;
	int64_t resumed_ms;
	char dir[4096];
};

static struct {
	const char *record;
	const char *run;
	const char *refuse;
	long post_delay_ms;
	long faults;
	long p50, p99;
	struct fake_mig migs[FAKE_MAX];
	int n;
} fk = {.faults = -1, .p50 = -1, .p99 = -1};

static int64_t fake_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct fake_mig *fake_find(const char *id)
{
	for (int i = 0; i < fk.n; i++)
		if (strcmp(fk.migs[i].id, id) == 0)
			return &fk.migs[i];
	return NULL;
}

static int fake_write(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len)
		ret = -EIO;
	close(fd);
	return ret;
}

static int fake_record(const struct api_start_req *req, struct fake_mig *m)
{
	char path[4200], text[8192];
	const struct api_criu_opts *c = &req->criu;
	int n, ret;

	n = snprintf(text, sizeof(text),
		     "id=%s\nsource=%s\ntransport=%s\nverify=%d\nrestore=%d\nimages_dir=%s\n"
		     "secret_file=%s\nsecret_len=%zu\nshell_job=%d\ntcp_established=%d\n"
		     "ext_unix_sk=%d\nfile_locks=%d\nlink_remap=%d\nmanage_cgroups=%s\n"
		     "log_level=%d\n",
		     req->id, req->peer,
		     req->transport_set ? api_transport_str(req->transport) : "", req->verify,
		     req->restore, req->images_dir ? req->images_dir : "",
		     req->secret_file ? req->secret_file : "", req->secret_len, c->shell_job,
		     c->tcp_established, c->ext_unix_sk, c->file_locks, c->link_remap,
		     c->manage_cgroups ? c->manage_cgroups : "", c->log_level);
	snprintf(path, sizeof(path), "%s/%s.req", fk.record, req->id);
	ret = fake_write(path, text, (size_t)n);
	if (ret == 0 && req->secret) {
		snprintf(path, sizeof(path), "%s/%s.secret", fk.record, req->id);
		ret = fake_write(path, req->secret, req->secret_len);
	}
	snprintf(m->dir, sizeof(m->dir), "%s/%s", fk.record, req->id);
	if (ret == 0 && mkdir(m->dir, 0700) < 0 && errno != EEXIST)
		ret = -errno;
	return ret;
}

static int fake_spawn(const struct api_start_req *req, struct fake_mig *m)
{
	char port[8], secret[4200];
	pid_t pid;

	snprintf(port, sizeof(port), "%u", (unsigned)req->peer_port);
	snprintf(secret, sizeof(secret), "%s/%s.secret", fk.record, req->id);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setenv("FAKEDEST_ID", req->id, 1);
		setenv("FAKEDEST_SOURCE", req->peer_host, 1);
		setenv("FAKEDEST_PORT", port, 1);
		setenv("FAKEDEST_TRANSPORT", api_transport_str(req->transport), 1);
		setenv("FAKEDEST_SECRET_FILE", secret, 1);
		setenv("FAKEDEST_DIR", m->dir, 1);
		execl("/bin/sh", "sh", "-c", fk.run, (char *)NULL);
		_exit(127);
	}
	m->child = pid;
	return 0;
}

static int fake_start(void *agent, const struct api_start_req *req, struct api_error *err)
{
	struct fake_mig *m;
	int ret;

	if (fk.post_delay_ms > 0)
		usleep((useconds_t)fk.post_delay_ms * 1000);
	if (fk.refuse)
		return api_error_set(err, -EAGAIN, "%s", fk.refuse);
	if (fake_find(req->id))
		return api_error_set(err, -EEXIST, "migration \"%s\" already exists", req->id);
	if (fk.n == FAKE_MAX)
		return api_error_set(err, -ENOSPC, "too many migrations");
	m = &fk.migs[fk.n];
	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", req->id);
	snprintf(m->source, sizeof(m->source), "%s", req->peer);
	m->transport = req->transport;
	m->accepted_ms = fake_ms();
	m->resumed_ms = -1;
	m->state = API_STATE_CONNECTING;
	ret = fake_record(req, m);
	if (ret == 0 && fk.run) {
		ret = fake_spawn(req, m);
		m->state = API_STATE_RECEIVING;
	}
	if (ret < 0)
		return api_error_set(err, ret, "cannot record the request: %s", strerror(-ret));
	fk.n++;
	return 0;
}

static void fake_view(struct fake_mig *m, struct api_migration_view *v)
{
	char path[4200];
	struct stat st;

	if (m->state == API_STATE_RECEIVING) {
		snprintf(path, sizeof(path), "%s/resumed", m->dir);
		if (stat(path, &st) == 0) {
			int64_t at =
			    (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;

			m->resumed_ms = at > m->accepted_ms ? at - m->accepted_ms : 0;
			m->state = API_STATE_POSTCOPY;
		}
	}
	v->id = m->id;
	v->role = API_ROLE_DEST;
	v->state = m->state;
	v->error = m->error[0] ? m->error : NULL;
	v->source = m->source;
	v->transport = m->transport;
	v->images_dir = m->dir;
	v->created_unix_ms = m->accepted_ms;
	v->resumed_ms = m->resumed_ms;
	v->restore_ms = m->resumed_ms;
	if (m->state == API_STATE_DONE) {
		v->faults = fk.faults > 0 ? (uint64_t)fk.faults : 0;
		v->fault_p50_us = fk.p50;
		v->fault_p99_us = fk.p99;
	}
}

static int fake_get(void *agent, const char *id, struct api_migration_view *out)
{
	struct fake_mig *m = fake_find(id);

	if (!m)
		return -ENOENT;
	fake_view(m, out);
	return 0;
}

static int fake_list(void *agent, api_emit_fn emit, void *ctx)
{
	struct api_migration_view v;
	int ret;

	for (int i = 0; i < fk.n; i++) {
		api_migration_view_init(&v);
		fake_view(&fk.migs[i], &v);
		ret = emit(ctx, &v);
		if (ret)
			return ret;
	}
	return 0;
}

static int fake_abort(void *agent, const char *id, struct api_error *err)
{
	struct fake_mig *m = fake_find(id);
	char path[4200], line[32];

	if (!m)
		return api_error_set(err, -ENOENT, "no migration \"%s\"", id);
	if (api_state_is_final(m->state))
		return -EALREADY;
	snprintf(path, sizeof(path), "%s/%s.abort", fk.record, id);
	snprintf(line, sizeof(line), "%s\n", api_state_str(m->state));
	if (fake_write(path, line, strlen(line)) < 0)
		log_warn("cannot record the abort of %s in %s", id, path);
	if (m->child > 0)
		kill(m->child, SIGTERM);
	m->state = API_STATE_ABORTED;
	snprintf(m->error, sizeof(m->error), "aborted through the API");
	return 0;
}

static void on_child(evutil_socket_t sig, short what, void *arg)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < fk.n; i++) {
			struct fake_mig *m = &fk.migs[i];

			if (m->child != pid)
				continue;
			m->child = 0;
			fake_view(m, &(struct api_migration_view){0});
			if (api_state_is_final(m->state))
				continue;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				m->state = API_STATE_DONE;
			} else {
				m->state = API_STATE_FAILED;
				snprintf(m->error, sizeof(m->error), "command exited %d",
					 WIFEXITED(status) ? WEXITSTATUS(status) : 128);
			}
		}
	}
}

/* A peer that takes connections (the kernel's backlog does) and never answers. */
static int fake_silent(const char *port_file)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	char line[32];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		return 1;
	snprintf(line, sizeof(line), "%u\n", (unsigned)ntohs(sa.sin_port));
	if (port_file && fake_write(port_file, line, strlen(line)) < 0)
		return 1;
	for (;;)
		pause();
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static const struct api_ops fake_ops = {
    .start = fake_start,
    .get = fake_get,
    .list = fake_list,
    .abort = fake_abort,
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"api-tcp", required_argument, NULL, 't'},
	    {"port-file", required_argument, NULL, 'p'},
	    {"record", required_argument, NULL, 'r'},
	    {"run", required_argument, NULL, 'c'},
	    {"refuse", required_argument, NULL, 'x'},
	    {"faults", required_argument, NULL, 'f'},
	    {"latency", required_argument, NULL, 'l'},
	    {"silent", no_argument, NULL, 's'},
	    {"post-delay", required_argument, NULL, 'd'},
	    TLS_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	/* Without the TLS options, plain HTTP on loopback (a source without TLS may go there). */
	struct api_config cfg = {.role = API_ROLE_DEST, .socket_path = "", .tcp = "127.0.0.1:0"};
	struct tls_opts tls = {0};
	SSL_CTX *ctx = NULL;
	const char *port_file = NULL;
	bool silent = false;
	struct event_base *base;
	struct event *chld, *term;
	struct api_server *srv = NULL;
	char line[32];
	int c, ret = 1;

	log_init(argv[0], LOG_LVL_INFO);
	/* A peer that goes away is an EPIPE to report, not a signal. */
	proc_harden(false);
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			cfg.tcp = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'r':
			fk.record = optarg;
			break;
		case 'c':
			fk.run = optarg;
			break;
		case 'x':
			fk.refuse = optarg;
			break;
		case 'f':
			fk.faults = atol(optarg);
			break;
		case 's':
			silent = true;
			break;
		case 'd':
			fk.post_delay_ms = atol(optarg);
			break;
		case 'l':
			if (sscanf(optarg, "%ld,%ld", &fk.p50, &fk.p99) != 2)
				return 2;
			break;
		default:
			if (tls_opts_handle(&tls, c, optarg, "rdmig-fakedest") == 1)
				break;
			fprintf(stderr,
				"usage: rdmig-fakedest --record DIR [--api-tcp H:P] "
				"[--port-file F] [--run CMD] [--refuse MSG] [--faults N] "
				"[--latency P50,P99] [--silent] [--post-delay MS] "
				"[--tls-cert F --tls-key F --tls-ca F --allow-peer NAME]\n");
			return 2;
		}
	}
	if (tls_opts_check(&tls, true, "rdmig-fakedest") < 0)
		return 2;
	if (tls_opts_any(&tls) && tls_ctx_new(TLS_SERVER, &tls, &ctx) < 0)
		return 1;
	cfg.tls = ctx;
	cfg.allow = tls.allow;
	cfg.nallow = tls.nallow;
	cfg.insecure_tcp = !ctx;
	if (silent)
		return fake_silent(port_file);
	if (!fk.record)
		return 2;
	base = event_base_new();
	chld = evsignal_new(base, SIGCHLD, on_child, NULL);
	term = evsignal_new(base, SIGTERM, on_term, base);
	if (!base || !chld || !term || event_add(chld, NULL) < 0 || event_add(term, NULL) < 0)
		return 1;
	if (api_server_create(base, &cfg, &fake_ops, NULL, &srv) < 0)
		goto out;
	snprintf(line, sizeof(line), "%d\n", api_server_tcp_port(srv));
	if (port_file && fake_write(port_file, line, strlen(line)) < 0)
		goto out;
	event_base_dispatch(base);
	ret = 0;
out:
	api_server_destroy(srv);
	event_free(chld);
	event_free(term);
	event_base_free(base);
	SSL_CTX_free(ctx);
	return ret;
}
