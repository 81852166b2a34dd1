// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-source: serves CRIU checkpoints for post-copy migration.
 *
 * Each migration is an images directory plus a per-migration secret.  The
 * agent maps the pages files, checksums them, and waits for rdmig-dest to
 * connect; see session.h for what happens on a connection.
 */
#include <errno.h>
#include <event2/dns.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_glue.h"
#include "conffile.h"
#include "criucheck.h"
#include "log.h"
#include "offload.h"
#include "rdmig-config.h"
#include "session.h"
#include "svcmgr.h"
#include "tls.h"
#include "util.h"
#include "xport.h"

#define DEFAULT_PORT	    "7471"
#define DEFAULT_IMAGES_ROOT "/var/lib/rdmig/images"
#define EXIT_CONFIG	    78 /* sysexits' EX_CONFIG */

struct src_opts {
	const char *listen;
	const char *log_file;
	bool once;
	const char *api_socket;
	const char *api_tcp;
	const char *api_group;
	char api_tcp_buf[300];
	unsigned int secret_delay_ms; /* --test-secret-delay */
	struct tls_opts tls;
	/* --allow-dest: the certificate names admitted on a TLS data listener. */
	const char *allow_dest[TLS_ALLOW_MAX];
	size_t nallow_dest;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: rdmig-source [OPTIONS] --migration ID:IMAGES_DIR:SECRET_FILE...\n"
		"       rdmig-source [OPTIONS] --api-socket PATH [--migration ...]\n"
		"Serve dumped processes' memory (CRIU images) to rdmig-dest.\n\n"
		"  -l, --listen ADDR[:PORT]   address to listen on (default 0.0.0.0:%s)\n"
		"  -t, --transport rdma|tcp|tls\n"
		"                             page transport (default rdma); tls: TCP inside\n"
		"                             mutual TLS with the --tls-* identity, for\n"
		"                             destinations named by --allow-dest\n"
		"  -m, --migration ID:DIR:SECRET_FILE\n"
		"                             serve the images in DIR as migration ID; the\n"
		"                             destination must prove it knows the secret\n"
		"                             (repeat for several migrations)\n"
		"      --config FILE          read options from FILE (default\n"
		"                             " RDMIG_CONFDIR "/rdmig-source.conf)\n"
		"      --verify               offer per-page checksums (rdmig-dest --verify)\n"
		"      --one-lane             offer no fault lane; faults share the drain's\n"
		"                             queue pair or TCP connection (as an older source)\n"
		"      --no-resume            offer no resume (FEAT_RESUME): a destination that\n"
		"                             loses this source in post-copy fails instead of\n"
		"                             pausing (as an older source)\n"
		"      --early                ask destination agents to start their worker at the\n"
		"                             reservation and hold a destination that connects\n"
		"                             during the dump (FEAT_EARLY) for every migration,\n"
		"                             not only for a lazy dump's or a pre-copy's (the\n"
		"                             default)\n"
		"      --no-early             the worker at the POST, not at the reservation,\n"
		"                             for every migration (as an older source)\n"
		"      --no-lazy-dump         dump plainly unless a migration asks for a lazy\n"
		"                             dump (by default a --pid migration to a\n"
		"                             destination agent that takes one is lazy)\n"
		"      --api-socket PATH      serve the HTTP/JSON API (rdmigctl) on this UNIX\n"
		"                             socket, mode 0600 (conventionally %s)\n"
		"      --api-tcp [HOST:]PORT  also serve it over TCP (host default 127.0.0.1),\n"
		"                             with mutual TLS: needs the --tls-* options\n"
		"                             and --allow-peer, or --insecure-api\n"
		"      --tls-cert FILE        this agent's certificate (PEM), for the TLS\n"
		"                             API and the handover to destination agents\n"
		"      --tls-key FILE         its private key (PEM)\n"
		"      --tls-ca FILE          the CA that signs every peer's certificate\n"
		"      --allow-peer NAME      a certificate name (SAN DNS, else CN) allowed\n"
		"                             to use the TLS API (repeat for several)\n"
		"      --allow-dest NAME      a certificate name (SAN DNS, else CN) allowed\n"
		"                             to fetch pages over --transport tls (repeat)\n"
		"      --insecure-api         plain HTTP on --api-tcp, on loopback only\n"
		"      --api-group GROUP      members of GROUP may use the API socket too\n"
		"                             (mode 0660, group GROUP); default: root only\n"
		"      --images-root DIR      where API migrations of a pid are dumped, one\n"
		"                             directory per id, and the only place an API\n"
		"                             images_dir may be (default %s, made\n"
		"                             0700; root-owned, not group/other-writable)\n"
		"      --criu PATH            the criu binary for dumps and rollbacks (criu)\n"
		"      --runc PATH            the runc binary for containers' checkpoints\n"
		"                             and rollbacks (runc)\n"
		"      --runtime-root DIR     a runc root (runc --root) an API container\n"
		"                             may be in: its container.root must be DIR or\n"
		"                             below it (repeat for several; default\n"
		"                             " SRC_RUNC_ROOT_DEFAULT
		"; the first is used when a request\n"
		"                             names none)\n"
		"  -1, --once                 exit once every migration is done\n"
		"      --handshake-timeout S  drop peers that do not authenticate in S s (10)\n"
		"      --dead-after S         drop a silent destination after S s (10)\n"
		"      --shutdown-timeout S   on SIGTERM/SIGINT, wait at most S s for the\n"
		"                             migrations in progress (0: until they end; 0)\n"
		"      --max-preauth N        at most N connections authenticating at once;\n"
		"                             more are closed at once (%d)\n"
		"      --max-preauth-per-addr N\n"
		"                             at most N of them from one address (%d)\n"
		"      --max-migrations N     keep at most N migrations: the oldest final one\n"
		"                             is forgotten, a start with N not final is\n"
		"                             queued (%d)\n"
		"      --max-dumps N          at most N criu dumps (or pre-dumps) at once;\n"
		"                             the others wait in the queue before any\n"
		"                             freeze (%d)\n"
		"      --rounds-wait MS|auto  pre-copy: the final dump waits at most MS ms,\n"
		"                             the workload running, for a destination\n"
		"                             copying the rounds ahead (auto: while the\n"
		"                             workload dirties a tenth of its memory more,\n"
		"                             at its last round's rate; 0: no wait)\n"
		"      --test-map-delay MS    testing: the background mapping of each API\n"
		"                             migration waits MS ms before it starts\n"
		"      --test-prereg-delay MS testing: a lazy dump's staging area, registered\n"
		"                             ahead of the destination, waits MS ms first\n"
		"      --test-secret-delay MS testing: each API secret_file read waits MS ms\n"
		"                             first (as on a slow mount), off the loop\n"
		"  -o, --log-file FILE        log to FILE instead of stderr\n"
		"  -v, --verbose              more logging (repeat for debug)\n"
		"  -h, --help                 show this help and exit\n"
		"  -V, --version              show the version and exit\n"
		"With an API, --migration is optional: migrations can be started later.\n",
		DEFAULT_PORT, API_SOCKET_SOURCE, DEFAULT_IMAGES_ROOT, SRC_MAX_PREAUTH_DEFAULT,
		SRC_MAX_PREAUTH_PER_ADDR_DEFAULT, SRC_MAX_MIGRATIONS_DEFAULT,
		SRC_MAX_DUMPS_DEFAULT);
}

#define STOP_TICK_MS 500

/* The migrations a stop waits for; with leaving, each is logged with what stopping does to it. */
static unsigned int migrations_in_progress(struct src_agent *a, bool leaving)
{
	struct src_migration *m;
	unsigned int n = 0;

	TAILQ_FOREACH(m, &a->migrations, link)
	{
		if (!src_mig_in_progress(m))
			continue;
		n++;
		if (!leaving)
			continue;
		if (m->state == SRC_MIG_SERVING || m->state == SRC_MIG_PAUSED)
			log_warn(
			    "leaving migration %s served: destination %s loses its source and "
			    "pauses until a restarted agent serves it again (an older one stops "
			    "its processes that still need pages); the checkpoint stays in %s",
			    m->id, m->peer[0] ? m->peer : "?", m->dir);
		else
			log_warn("leaving migration %s %s: criu goes on without the agent; a "
				 "restarted agent finds its result in %s",
				 m->id, src_mig_state_str(m->state), m->dir);
	}
	return n;
}

static void stop_now(struct src_agent *a, const char *why)
{
	log_warn("stopping now (%s)", why);
	migrations_in_progress(a, true);
	event_base_loopexit(a->base, NULL);
}

static void stop_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = {0, STOP_TICK_MS * 1000};
	struct src_agent *a = arg;

	if (migrations_in_progress(a, false) == 0) {
		log_info("every migration in progress has ended: stopping");
		event_base_loopexit(a->base, NULL);
		return;
	}
	if (a->shutdown_timeout_s &&
	    now_ns() - a->stop_ns >= (uint64_t)a->shutdown_timeout_s * 1000000000u) {
		stop_now(a, "--shutdown-timeout");
		return;
	}
	evtimer_add(a->stop_tick, &tv);
}

/*
 * In post-copy the workload's only copy runs on the destination on this
 * agent's pages: a first signal stops new work and waits for what is in
 * progress; a second one (or --shutdown-timeout) stops at once.
 */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = {0, STOP_TICK_MS * 1000};
	struct src_agent *a = arg;
	unsigned int n;

	if (a->stopping) {
		stop_now(a, "signalled again");
		return;
	}
	n = migrations_in_progress(a, false);
	if (n == 0 || !a->stop_tick) {
		log_warn("caught signal %d: stopping; the checkpoints stay on disk", (int)sig);
		if (n)
			migrations_in_progress(a, true);
		event_base_loopexit(a->base, NULL);
		return;
	}
	a->stopping = true;
	a->stop_ns = now_ns();
	if (a->shutdown_timeout_s)
		log_warn("caught signal %d: stopping once the %u migration(s) in progress end, "
			 "within %u s (--shutdown-timeout); no new ones; a second signal stops "
			 "at once",
			 (int)sig, n, a->shutdown_timeout_s);
	else
		log_warn("caught signal %d: stopping once the %u migration(s) in progress end; "
			 "no new ones; a second signal stops at once",
			 (int)sig, n);
	evtimer_add(a->stop_tick, &tv);
}

static int accept_cb(struct xport_listener *l, struct xport *x, void *arg)
{
	return src_session_start(arg, x);
}

/*
 * Over RDMA, a TCP listener on the same port number for the RC side
 * channels of resuming destinations (FEAT_RC_SIDE, protocol.md §7.4),
 * which need no rdma_cm.  Without it the bit is not offered and they
 * reconnect over rdma_cm.
 */
static void rc_side_listen(struct src_agent *a, const char *host, const struct xport_params *rdma,
			   struct xport_listener **out)
{
	struct xport_params side;
	char port[16];

	xport_params_init(&side);
	snprintf(port, sizeof(port), "%d", a->port);
	if (xport_listen(a->base, XPORT_TCP, host, port, &side, accept_cb, a, out) < 0) {
		log_warn("no TCP side listener on %s:%s: a paused destination reconnects over "
			 "rdma_cm only",
			 host, port);
		*out = NULL;
		return;
	}
	a->rc_side = rdma;
	log_info("listening on %s:%s (tcp) for resuming destinations' queue pairs", host, port);
}

static int add_migration(struct src_agent *a, char *spec, bool verify)
{
	char *id = spec, *dir, *secret;
	struct auth_secret *sec;
	struct src_migration *m;
	int ret;

	dir = strchr(id, ':');
	secret = dir ? strchr(dir + 1, ':') : NULL;
	if (!dir || !secret) {
		fprintf(stderr, "rdmig-source: --migration wants ID:DIR:SECRET_FILE, got '%s'\n",
			spec);
		return -EINVAL;
	}
	*dir++ = '\0';
	*secret++ = '\0';
	if (src_mig_find(&a->migrations, id)) {
		fprintf(stderr, "rdmig-source: migration '%s' given twice\n", id);
		return -EEXIST;
	}
	ret = src_mig_load_secret(id, secret, &sec);
	if (ret < 0)
		return ret;
	ret = src_mig_create(id, dir, sec, verify, &m);
	if (ret < 0)
		return ret;
	TAILQ_INSERT_TAIL(&a->migrations, m, link);
	return 0;
}

/* "PORT" means 127.0.0.1:PORT: the API is unauthenticated. */
static int parse_api_tcp(struct src_opts *o, const char *arg)
{
	char host[256], port[16];
	uint64_t v;

	if (strspn(arg, "0123456789") == strlen(arg))
		snprintf(o->api_tcp_buf, sizeof(o->api_tcp_buf), "127.0.0.1:%s", arg);
	else
		snprintf(o->api_tcp_buf, sizeof(o->api_tcp_buf), "%s", arg);
	if (parse_hostport(o->api_tcp_buf, NULL, host, sizeof(host), port, sizeof(port)) < 0 ||
	    parse_uint(port, 0, 65535, &v) < 0)
		return -EINVAL;
	o->api_tcp = o->api_tcp_buf;
	return 0;
}

/* --transport tls wants the --tls-* identity and says which destinations may connect. */
static int check_data_tls(const struct src_agent *a, const struct src_opts *o)
{
	if (a->data_tls && !tls_opts_any(&o->tls)) {
		fprintf(stderr, "rdmig-source: --transport tls wants --tls-cert, --tls-key and "
				"--tls-ca\n");
		return -EINVAL;
	}
	if (a->data_tls && !o->nallow_dest) {
		fprintf(stderr, "rdmig-source: --transport tls wants at least one --allow-dest "
				"NAME (the certificate names of the destinations it serves)\n");
		return -EINVAL;
	}
	if (!a->data_tls && o->nallow_dest) {
		fprintf(stderr, "rdmig-source: --allow-dest is for --transport tls\n");
		return -EINVAL;
	}
	return 0;
}

/* An agent with the API dumps: criu's kernel probe now, not in the first freeze. */
static void criu_check_start(struct src_agent *a)
{
	char log_path[4200];

	snprintf(log_path, sizeof(log_path), "%s/.criu-check.log", a->images_root_real);
	criucheck_start(a->base, a->criu, log_path, CRIUCHECK_KDAT_PATH, &a->criu_check);
}

int main(int argc, char **argv)
{
	enum {
		OPT_VERIFY = 256,
		OPT_HS_TIMEOUT,
		OPT_DEAD_AFTER,
		OPT_API_SOCKET,
		OPT_API_TCP,
		OPT_API_GROUP,
		OPT_IMAGES_ROOT,
		OPT_CRIU,
		OPT_RUNC,
		OPT_ROUNDS_WAIT,
		OPT_TEST_MAP_DELAY,
		OPT_TEST_PREREG_DELAY,
		OPT_MAX_PREAUTH,
		OPT_MAX_PREAUTH_PER_ADDR,
		OPT_MAX_MIGRATIONS,
		OPT_MAX_DUMPS,
		OPT_SHUTDOWN_TIMEOUT,
		OPT_ALLOW_DEST,
		OPT_TEST_SECRET_DELAY,
		OPT_ONE_LANE,
		OPT_NO_RESUME,
		OPT_NO_EARLY,
		OPT_EARLY,
		OPT_NO_LAZY_DUMP,
		OPT_RUNTIME_ROOT,
	};
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"transport", required_argument, NULL, 't'},
	    {"migration", required_argument, NULL, 'm'},
	    {"verify", no_argument, NULL, OPT_VERIFY},
	    {"one-lane", no_argument, NULL, OPT_ONE_LANE},
	    {"no-resume", no_argument, NULL, OPT_NO_RESUME},
	    {"no-early", no_argument, NULL, OPT_NO_EARLY},
	    {"early", no_argument, NULL, OPT_EARLY},
	    {"no-lazy-dump", no_argument, NULL, OPT_NO_LAZY_DUMP},
	    {"api-socket", required_argument, NULL, OPT_API_SOCKET},
	    {"api-tcp", required_argument, NULL, OPT_API_TCP},
	    {"api-group", required_argument, NULL, OPT_API_GROUP},
	    {"images-root", required_argument, NULL, OPT_IMAGES_ROOT},
	    {"criu", required_argument, NULL, OPT_CRIU},
	    {"runc", required_argument, NULL, OPT_RUNC},
	    {"runtime-root", required_argument, NULL, OPT_RUNTIME_ROOT},
	    {"once", no_argument, NULL, '1'},
	    {"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
	    {"dead-after", required_argument, NULL, OPT_DEAD_AFTER},
	    {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
	    {"test-map-delay", required_argument, NULL, OPT_TEST_MAP_DELAY},
	    {"test-prereg-delay", required_argument, NULL, OPT_TEST_PREREG_DELAY},
	    {"test-secret-delay", required_argument, NULL, OPT_TEST_SECRET_DELAY},
	    {"max-preauth", required_argument, NULL, OPT_MAX_PREAUTH},
	    {"max-preauth-per-addr", required_argument, NULL, OPT_MAX_PREAUTH_PER_ADDR},
	    {"max-migrations", required_argument, NULL, OPT_MAX_MIGRATIONS},
	    {"max-dumps", required_argument, NULL, OPT_MAX_DUMPS},
	    {"rounds-wait", required_argument, NULL, OPT_ROUNDS_WAIT},
	    {"allow-dest", required_argument, NULL, OPT_ALLOW_DEST},
	    {"log-file", required_argument, NULL, 'o'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    TLS_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct src_agent a = {
	    .kind = XPORT_RDMA,
	    .handshake_timeout_s = 10,
	    .dead_after_s = 10,
	    .max_preauth = SRC_MAX_PREAUTH_DEFAULT,
	    .max_preauth_per_addr = SRC_MAX_PREAUTH_PER_ADDR_DEFAULT,
	    .max_migrations = SRC_MAX_MIGRATIONS_DEFAULT,
	    /* The worker at the reservation for a lazy dump (design.md §10.3). */
	    .early = SRC_EARLY_LAZY,
	    .max_dumps = SRC_MAX_DUMPS_DEFAULT,
	    .rounds_wait_ms = -1,
	    .images_root = DEFAULT_IMAGES_ROOT,
	    .images_root_fd = -1,
	    .criu = "criu",
	    .runc = "runc",
	};
	struct src_opts o = {.listen = "0.0.0.0"};
	enum log_level level = LOG_LVL_INFO;
	struct xport_listener *listener = NULL, *rc_listener = NULL;
	struct event *sigint = NULL, *sigterm = NULL;
	struct src_migration *m;
	struct xport_params xp;
	SSL_CTX *tls_server = NULL;
	char *specs[64];
	int nspecs = 0, c, i, ret = 1;
	char host[256], port[16];
	uint64_t v;

	log_init(argv[0], level);
	ret = proc_harden(true);
	if (ret < 0) {
		log_err("cannot ignore SIGPIPE or turn core dumps off: %s", strerror(-ret));
		return 1;
	}
	ret = 1;
	TAILQ_INIT(&a.migrations);
	TAILQ_INIT(&a.reserving);
	LIST_INIT(&a.sessions);
	if (conffile_apply("rdmig-source", &argc, &argv, "l:t:m:1o:vhV", opts,
			   RDMIG_CONFDIR "/rdmig-source.conf", NULL) < 0)
		return 2;
	while ((c = conffile_getopt_long(argc, argv, "l:t:m:1o:vhV", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o.listen = optarg;
			break;
		case 't':
			if (xport_transport_parse(optarg, &a.kind, &a.data_tls) < 0) {
				fprintf(stderr, "rdmig-source: --transport is rdma, tcp or tls\n");
				return 2;
			}
			break;
		case OPT_ALLOW_DEST:
			if (!optarg[0] || strlen(optarg) >= TLS_NAME_MAX ||
			    o.nallow_dest == TLS_ALLOW_MAX) {
				fprintf(stderr,
					"rdmig-source: --allow-dest wants a certificate "
					"name (at most %d of them)\n",
					TLS_ALLOW_MAX);
				return 2;
			}
			o.allow_dest[o.nallow_dest++] = optarg;
			break;
		case 'm':
			if (nspecs == (int)ARRAY_SIZE(specs)) {
				fprintf(stderr, "rdmig-source: too many --migration\n");
				return 2;
			}
			specs[nspecs++] = optarg;
			break;
		case OPT_VERIFY:
			a.verify = true;
			break;
		case OPT_ONE_LANE:
			a.one_lane = true;
			break;
		case OPT_NO_RESUME:
			a.no_resume = true;
			break;
		case OPT_NO_EARLY:
			a.early = SRC_EARLY_NONE;
			break;
		case OPT_EARLY:
			a.early = SRC_EARLY_ALL;
			break;
		case OPT_NO_LAZY_DUMP:
			a.no_lazy_dump = true;
			break;
		case OPT_API_SOCKET:
			if (!optarg[0] || optarg[0] != '/') {
				fprintf(stderr,
					"rdmig-source: --api-socket wants an absolute path\n");
				return 2;
			}
			o.api_socket = optarg;
			break;
		case OPT_API_TCP:
			if (parse_api_tcp(&o, optarg) < 0) {
				fprintf(stderr,
					"rdmig-source: --api-tcp wants [HOST:]PORT, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case OPT_API_GROUP:
			o.api_group = optarg;
			break;
		case OPT_IMAGES_ROOT:
			if (optarg[0] != '/' || strlen(optarg) > 3000) {
				fprintf(stderr,
					"rdmig-source: --images-root wants an absolute path\n");
				return 2;
			}
			a.images_root = optarg;
			break;
		case OPT_CRIU:
			if (!optarg[0]) {
				fprintf(stderr, "rdmig-source: --criu wants a program\n");
				return 2;
			}
			a.criu = optarg;
			break;
		case OPT_RUNC:
			if (!optarg[0]) {
				fprintf(stderr, "rdmig-source: --runc wants a program\n");
				return 2;
			}
			a.runc = optarg;
			break;
		case OPT_RUNTIME_ROOT:
			if (src_runc_root_valid(optarg) < 0 ||
			    a.runc_roots.n == SRC_RUNC_ROOTS_MAX) {
				fprintf(stderr,
					"rdmig-source: --runtime-root wants an absolute path "
					"without \".\", \"..\" or \"//\" (at most %d of them)\n",
					SRC_RUNC_ROOTS_MAX);
				return 2;
			}
			a.runc_roots.dirs[a.runc_roots.n++] = optarg;
			break;
		case '1':
			a.exit_when_done = true;
			break;
		case OPT_HS_TIMEOUT:
		case OPT_DEAD_AFTER:
			if (parse_uint(optarg, 1, 3600, &v) < 0) {
				fprintf(stderr, "rdmig-source: bad number of seconds '%s'\n",
					optarg);
				return 2;
			}
			if (c == OPT_HS_TIMEOUT)
				a.handshake_timeout_s = (unsigned int)v;
			else
				a.dead_after_s = (unsigned int)v;
			break;
		case OPT_SHUTDOWN_TIMEOUT:
			if (parse_uint(optarg, 0, 86400, &v) < 0) {
				fprintf(stderr, "rdmig-source: bad --shutdown-timeout '%s'\n",
					optarg);
				return 2;
			}
			a.shutdown_timeout_s = (unsigned int)v;
			break;
		case OPT_MAX_PREAUTH:
		case OPT_MAX_PREAUTH_PER_ADDR:
		case OPT_MAX_MIGRATIONS:
		case OPT_MAX_DUMPS:
			if (parse_uint(optarg, 1, 100000, &v) < 0) {
				fprintf(stderr, "rdmig-source: bad number '%s'\n", optarg);
				return 2;
			}
			if (c == OPT_MAX_PREAUTH)
				a.max_preauth = (unsigned int)v;
			else if (c == OPT_MAX_PREAUTH_PER_ADDR)
				a.max_preauth_per_addr = (unsigned int)v;
			else if (c == OPT_MAX_DUMPS)
				a.max_dumps = (unsigned int)v;
			else
				a.max_migrations = (unsigned int)v;
			break;
		case OPT_ROUNDS_WAIT:
			if (strcmp(optarg, "auto") == 0) {
				a.rounds_wait_ms = -1;
				break;
			}
			if (parse_uint(optarg, 0, 600000, &v) < 0) {
				fprintf(stderr,
					"rdmig-source: bad --rounds-wait '%s' (ms or auto)\n",
					optarg);
				return 2;
			}
			a.rounds_wait_ms = (int)v;
			break;
		case OPT_TEST_MAP_DELAY:
		case OPT_TEST_PREREG_DELAY:
		case OPT_TEST_SECRET_DELAY:
			if (parse_uint(optarg, 0, 600000, &v) < 0) {
				fprintf(stderr, "rdmig-source: bad number of ms '%s'\n", optarg);
				return 2;
			}
			if (c == OPT_TEST_MAP_DELAY)
				a.map_delay_ms = (unsigned int)v;
			else if (c == OPT_TEST_PREREG_DELAY)
				a.prereg_delay_ms = (unsigned int)v;
			else
				o.secret_delay_ms = (unsigned int)v;
			break;
		case 'o':
			o.log_file = optarg;
			break;
		case 'v':
			if (level < LOG_LVL_DEBUG)
				level++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("rdmig-source %s\n", RDMIG_VERSION);
			return 0;
		default:
			ret = tls_opts_handle(&o.tls, c, optarg, "rdmig-source");
			if (ret == 1)
				break;
			if (ret == 0)
				fprintf(stderr, "rdmig-source: try --help\n");
			return 2;
		}
	}
	if (a.runc_roots.n == 0)
		a.runc_roots.dirs[a.runc_roots.n++] = SRC_RUNC_ROOT_DEFAULT;
	if (optind != argc) {
		fprintf(stderr, "rdmig-source: unexpected argument '%s' (try --help)\n",
			argv[optind]);
		return 2;
	}
	if (nspecs == 0 && !o.api_socket && !o.api_tcp) {
		fprintf(stderr, "rdmig-source: nothing to serve: give --migration, or --api-socket "
				"to take migrations through the API (try --help)\n");
		return 2;
	}
	if (tls_opts_check(&o.tls, o.api_tcp != NULL, "rdmig-source") < 0 ||
	    check_data_tls(&a, &o) < 0)
		return 2;
	if (parse_hostport(o.listen, DEFAULT_PORT, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "rdmig-source: bad --listen '%s'\n", o.listen);
		return 2;
	}
	if (o.log_file && !freopen(o.log_file, "a", stderr)) {
		fprintf(stdout, "rdmig-source: cannot open log file %s: %s\n", o.log_file,
			strerror(errno));
		return 1;
	}
	/* freopen() leaves stderr fully buffered: the log must be readable as it grows. */
	if (o.log_file)
		setvbuf(stderr, NULL, _IONBF, 0);
	log_set_level(level);
	log_hook_libevent();
	a.base = event_base_new();
	if (!a.base) {
		log_err("event_base_new failed");
		return 1;
	}
	/* OpenSSL writes with write(2): a peer that goes must not kill the agent. */
	if (tls_opts_any(&o.tls))
		signal(SIGPIPE, SIG_IGN);
	/*
	 * The client side talks to destination agents; the server side is the
	 * TCP API's and the TLS data listener's: one identity for both.
	 */
	if (tls_opts_any(&o.tls) &&
	    (tls_ctx_new(TLS_CLIENT, &o.tls, &a.tls_client) < 0 ||
	     ((o.api_tcp || a.data_tls) && tls_ctx_new(TLS_SERVER, &o.tls, &tls_server) < 0))) {
		ret = EXIT_CONFIG;
		goto out;
	}
	for (i = 0; i < nspecs; i++)
		if (add_migration(&a, specs[i], a.verify) < 0)
			goto out;
	a.stop_tick = evtimer_new(a.base, stop_tick_cb, &a);
	sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
	sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
	if (!sigint || !sigterm || event_add(sigint, NULL) < 0 || event_add(sigterm, NULL) < 0) {
		log_err("cannot install signal events");
		goto out;
	}
	xport_params_init(&xp);
	/* A TCP connection also carries page data: 1 MiB ReadResps. */
	if (a.kind == XPORT_TCP)
		xp.max_msg = 2u << 20;
	if (a.data_tls) {
		xp.tls = tls_server;
		xp.tls_allow = o.allow_dest;
		xp.tls_nallow = o.nallow_dest;
	} else if (a.kind == XPORT_TCP && tls_opts_any(&o.tls) && !tls_host_is_loopback(host)) {
		log_warn("--transport tcp: page contents cross the network in clear; "
			 "--transport tls encrypts them");
	}
	if (xport_listen(a.base, a.kind, host, port, &xp, accept_cb, &a, &listener) < 0)
		goto out;
	log_info("listening on %s:%d (%s)", host, xport_listener_port(listener),
		 xport_transport_str(a.kind, a.data_tls));
	a.port = xport_listener_port(listener);
	if (a.kind == XPORT_RDMA && !a.no_resume)
		rc_side_listen(&a, host, &xp, &rc_listener);
	/* Checkpoints are registered on this device before their destination connects. */
	a.data_verbs = xport_listener_verbs(listener);
	if (a.data_verbs)
		xport_listener_set_pd_cb(listener, src_session_conn_pd, &a);
	snprintf(a.listen_host, sizeof(a.listen_host), "%s", host);
	snprintf(a.endpoint, sizeof(a.endpoint), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
		 a.port);
	if (o.api_socket || o.api_tcp) {
		struct src_api_opts ao = {
		    .socket_path = o.api_socket,
		    .tcp = o.api_tcp,
		    .group = o.api_group,
		    .tls = o.api_tcp ? tls_server : NULL,
		    .allow = o.tls.allow,
		    .nallow = o.tls.nallow,
		    .insecure_tcp = o.tls.insecure_api,
		    .test_secret_delay_ms = o.secret_delay_ms,
		};

		ret = src_api_start(&a, &ao);
		if (ret < 0) {
			ret =
			    ret == -EADDRINUSE || ret == -EEXIST || ret == -EPERM ? EXIT_CONFIG : 1;
			goto out;
		}
		ret = 1;
		criu_check_start(&a);
	}
	/* Type=notify: the listener and the API answer from here on. */
	svcmgr_notify("READY=1");
	event_base_dispatch(a.base);
	ret = src_mig_all_done(&a.migrations) ? 0 : (a.exit_when_done ? 1 : 0);
out:
	src_api_stop(&a);
	src_session_close_all(&a);
	/* A mapping that ends in the loop pass below must not start a handover. */
	TAILQ_FOREACH(m, &a.migrations, link)
	src_mig_map_cancel(m);
	/*
	 * Release the closed connections first: accepted rdma_cm ids hang off
	 * the listener's event channel, which must outlive them.
	 */
	event_base_loop(a.base, EVLOOP_NONBLOCK);
	xport_listener_destroy(listener);
	if (rc_listener)
		xport_listener_destroy(rc_listener);
	while ((m = TAILQ_FIRST(&a.migrations)) != NULL) {
		TAILQ_REMOVE(&a.migrations, m, link);
		if (m->state != SRC_MIG_DONE && m->state != SRC_MIG_ABORTED &&
		    m->state != SRC_MIG_ROLLED_BACK)
			log_warn("migration %s not completed; its checkpoint stays in %s", m->id,
				 m->dir);
		src_mig_destroy(m);
	}
	criucheck_free(a.criu_check);
	/* After the migrations let their map jobs go: those are released here. */
	offload_free(a.offload);
	/* After the migrations: their handovers' connections may use it. */
	if (a.dns)
		evdns_base_free(a.dns, 0);
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	if (a.stop_tick)
		event_free(a.stop_tick);
	/* Let the closed connections flush and be released. */
	xport_drain_closing(a.base, 3000);
	event_base_free(a.base);
	SSL_CTX_free(tls_server);
	SSL_CTX_free(a.tls_client);
	return ret;
}
