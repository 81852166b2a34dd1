// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-dest: serves the lazy pages of processes restored by
 * `criu restore --lazy-pages`; a drop-in for `criu lazy-pages`.
 *
 * This is the entry: the options (command line and configuration file)
 * and the choice between the two programs rdmig-dest is.  Without --serve
 * it runs one migration (worker.c): startup mirrors criu lazy-pages (the
 * socket is listening before the daemon forks, readiness is the '\0' byte
 * on --status-fd), then one libevent loop runs the lazy-pages socket, the
 * fault engine, the page source and the signals until every page is
 * installed.
 *
 * --serve runs the API daemon instead (supervisor.c), which starts the
 * one-shot mode once per migration as its worker, with --secret-fd and
 * --progress-fd (progress.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "conffile.h"
#include "criuproc.h"
#include "daemonize.h"
#include "destopts.h"
#include "log.h"
#include "rdmig-config.h"
#include "supervisor.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

enum {
	OPT_STATUS_FD = 256,
	OPT_PIDFILE,
	OPT_READAHEAD,
	OPT_READAHEAD_FIXED,
	OPT_DRAIN_DEPTH,
	OPT_DRAIN_CHUNK,
	OPT_FETCH_TIMEOUT,
	OPT_LOCAL,
	OPT_INJECT,
	OPT_SOURCE,
	OPT_ADDRESS,
	OPT_PORT,
	OPT_PAGE_SERVER,
	OPT_TRANSPORT,
	OPT_MIGRATION,
	OPT_SECRET_FILE,
	OPT_VERIFY,
	OPT_ONE_LANE,
	OPT_CONNECT_TIMEOUT,
	OPT_DEAD_AFTER,
	OPT_PAUSE_LIMIT,
	OPT_MAX_READS,
	OPT_DRAIN_QPS,
	OPT_LATENCY_OUT,
	OPT_FAULT_POLL,
	OPT_DRAIN_QUIET,
	OPT_DRAIN_FLOOR,
	OPT_RESTORE,
	OPT_CRIU,
	OPT_CRIU_OPT,
	OPT_CRIU_LOG_LEVEL,
	OPT_SECRET_FD,
	OPT_PROGRESS_FD,
	OPT_GUARD_FD,
	OPT_TAKEOVER_FD,
	OPT_EARLY,
	OPT_SERVE,
	OPT_API_SOCKET,
	OPT_API_TCP,
	OPT_API_GROUP,
	OPT_WORK_ROOT,
	OPT_MAX_MIGRATIONS,
	OPT_MAX_PENDING,
	OPT_BUNDLE_ROOT,
	OPT_RUNC,
	OPT_CONTAINER,
	OPT_BUNDLE,
	OPT_RUNC_ROOT,
};

static void dest_usage(FILE *f)
{
	fprintf(f,
		"Usage: rdmig-dest -D DIR [OPTIONS]\n"
		"       rdmig-dest --serve [SERVE OPTIONS]\n"
		"Serve the lazy pages of processes restored by `criu restore --lazy-pages`\n"
		"(a drop-in for `criu lazy-pages`); with --serve, run migrations started\n"
		"through the HTTP/JSON API.\n\n"
		"  -D, --images-dir DIR   CRIU images directory\n"
		"  -W, --work-dir DIR     where lazy-pages.socket is created (default: DIR)\n"
		"      --status-fd FD     write one '\\0' byte to FD when ready, then close it\n"
		"  -d, --daemon           run in the background once the socket listens\n"
		"      --pidfile FILE     write the daemon's pid to FILE\n"
		"  -o, --log-file FILE    log to FILE instead of stderr\n"
		"  -v, --verbose          debug logging (every fault and copy)\n"
		"      --source HOST[:PORT]  fetch pages from rdmig-source (port 7471)\n"
		"      --address HOST, --port PORT, --page-server\n"
		"                         the same, spelled as for `criu lazy-pages`\n"
		"  -t, --transport rdma|tcp|tls  page transport (default rdma); tls: TCP\n"
		"                         inside mutual TLS (--tls-*): the source's\n"
		"                         certificate must name the --source host\n"
		"  -m, --migration-id ID  the migration to take over from the source\n"
		"      --secret-file FILE the migration's secret (16..1024 bytes)\n"
		"      --secret-fd FD     read the secret from FD to its end, every byte of it\n"
		"      --progress-fd FD   report progress to FD as JSON lines (for --serve)\n"
		"      --guard-fd FD      the guard waits on FD for a new worker if this one\n"
		"                         dies (for --serve)\n"
		"      --takeover-fd FD   take the userfaultfds of a worker that died from\n"
		"                         its guard over FD and finish its migration (for\n"
		"                         --serve)\n"
		"      --early            started before the source's dump ends (for --serve):\n"
		"                         wait for the checkpoint; a source that cannot hold\n"
		"                         the connection is connected to again at SIGUSR1\n"
		"      --verify           check every page against the source's checksum\n"
		"      --connect-timeout SEC  give up reaching the source after SEC (default 60)\n"
		"      --dead-after SEC   the source is lost after SEC of silence (default 10)\n"
		"      --pause-limit SEC  in post-copy a lost source pauses the migration and\n"
		"                         rdmig-dest reconnects; after SEC paused the processes\n"
		"                         are stopped (SIGSTOP), not killed (default 600, 0:\n"
		"                         no limit)\n"
		"      --max-reads N      reads in flight to the source (default 64)\n"
		"      --local            serve pages from the images' own pages files\n"
		"      --restore          once ready, run `criu restore --lazy-pages -d` on the\n"
		"                         images (log: WORK/restore.log) and wait for it\n"
		"      --criu PATH        the criu binary for --restore (default: criu in PATH)\n"
		"      --criu-opt OPT     one more argument for criu restore (repeatable)\n"
		"      --criu-log-level N criu restore's -vN, 0..4 (default 2; 4 slows the\n"
		"                         restore, and so the downtime, several times)\n"
		"      --container ID     --restore runs `runc restore --lazy-pages -d` of\n"
		"                         container ID instead (--criu-opt: runc's options)\n"
		"      --bundle DIR       that container's bundle (required with --container)\n"
		"      --runc PATH        the runc binary (default: runc in PATH)\n"
		"      --runc-root DIR    runc's --root (default: runc's own)\n"
		"      --readahead PAGES  the largest read-ahead window, the faulting page\n"
		"                         included; it follows each task's faults (default 64)\n"
		"      --readahead-fixed  every fault fetches --readahead pages\n"
		"      --drain-depth N    background requests in flight (default 8)\n"
		"      --drain-chunk SIZE bytes per background request (default 256K)\n"
		"      --fetch-timeout SEC  stop a process whose pages take longer (default 30;\n"
		"                           in post-copy with resume: pause and reconnect)\n"
		"      --drain-quiet MS   over RDMA the drain narrows on faults and widens\n"
		"                         again after a quiet time that follows the faults'\n"
		"                         rhythm; MS fixes that time instead (default 0:\n"
		"                         adaptive)\n"
		"      --drain-floor N    with a fault lane, faults narrow the drain to no\n"
		"                         fewer than N requests of --drain-chunk (default 0:\n"
		"                         down to one 64 KiB request over RDMA; over TCP\n"
		"                         the drain narrows only with a floor)\n"
		"      --one-lane         ask for no fault lane: faults share the drain's\n"
		"                         queue pair (RDMA) or connection (TCP), as an\n"
		"                         older destination\n"
		"      --drain-qps N      RDMA: spread the drain's reads over N queue pairs\n"
		"                         (1-4, default 2) if the source can\n"
		"      --fault-poll US    after posting a fault's RDMA READ, poll for its\n"
		"                         completion for up to US microseconds before\n"
		"                         sleeping (default 1000; 0: never)\n"
		"      --latency-out FILE at exit, write the fault latency samples to FILE\n"
		"                         (nanoseconds, one per line; for benchmarks)\n"
		"      --inject SPEC      testing: faults of the local source, e.g.\n"
		"                         delay=US,fail-after=N,gone-after=N,hang-after=N,\n"
		"                         corrupt-after=N,verify\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\nSERVE OPTIONS\n"
		"      --serve            serve the API and run one worker per migration\n"
		"      --config FILE      read options from FILE (default, with --serve\n"
		"                         only: " RDMIG_CONFDIR "/rdmig-dest.conf)\n"
		"      --api-socket PATH  the API's UNIX socket (default " API_SOCKET_DEST ")\n"
		"      --api-tcp [HOST:]PORT  also serve it over TCP (host default 127.0.0.1),\n"
		"                         with mutual TLS: needs the --tls-* options and\n"
		"                         --allow-peer, or --insecure-api\n"
		"      --tls-cert FILE    this agent's certificate (PEM), for the TLS API\n"
		"                         and the workers' --transport tls (also one-shot)\n"
		"      --tls-key FILE     its private key (PEM)\n"
		"      --tls-ca FILE      the CA that signs every peer's certificate\n"
		"      --allow-peer NAME  a certificate name (SAN DNS, else CN) allowed to use\n"
		"                         the TLS API: source agents, operators (repeatable)\n"
		"      --insecure-api     plain HTTP on --api-tcp, on loopback only\n"
		"      --api-group GROUP  members of GROUP may use the API socket too (mode\n"
		"                         0660, group GROUP); default: root only (0600)\n"
		"      --work-root DIR    every directory a migration writes is made\n"
		"                         below it, DIR/ID by default (default\n"
		"                         " SUP_WORK_ROOT_DEFAULT ", root-owned, 0700)\n"
		"      --bundle-root DIR  a container bundle a reservation names must be\n"
		"                         below DIR (repeatable; none: every bundle is\n"
		"                         refused)\n"
		"      --max-migrations N migrations running at once (default 4)\n"
		"      --max-pending N    migrations waiting for their source to connect and\n"
		"                         authenticate (default 4); each waits at most\n"
		"                         --connect-timeout (given to the workers)\n"
		"      --connect-timeout SEC, --dead-after SEC, --pause-limit SEC,\n"
		"      --drain-depth N, --drain-chunk SIZE, --criu PATH, --runc PATH,\n"
		"      -o FILE, -v        as above, for the workers too; --runc restores\n"
		"                         the containers\n");
}

/* "PORT" means 127.0.0.1:PORT: the API is unauthenticated. */
static int dest_parse_api_tcp(struct dest_opts *o, const char *arg)
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
	o->sup.api_tcp = o->api_tcp_buf;
	return 0;
}

static bool dest_opt_serve_only(int c)
{
	return c == OPT_SERVE || c == OPT_API_SOCKET || c == OPT_API_TCP || c == OPT_API_GROUP ||
	       c == OPT_WORK_ROOT || c == OPT_MAX_MIGRATIONS || c == OPT_MAX_PENDING ||
	       c == OPT_BUNDLE_ROOT || c == TLS_OPT_ALLOW_PEER || c == TLS_OPT_INSECURE_API;
}

/* Options of both modes, and those of --serve; every other one is the one-shot mode's. */
static bool dest_opt_serve_ok(int c)
{
	if (dest_opt_serve_only(c))
		return true;
	switch (c) {
	case OPT_CRIU:
	case OPT_RUNC:
	case OPT_CRIU_LOG_LEVEL:
	case OPT_CONNECT_TIMEOUT: /* handed to the workers */
	case OPT_PAUSE_LIMIT:
	case OPT_DEAD_AFTER:
	case OPT_DRAIN_DEPTH:
	case OPT_DRAIN_CHUNK:
	case TLS_OPT_CERT: /* the API's, and handed to the workers */
	case TLS_OPT_KEY:
	case TLS_OPT_CA:
	case 'o':
	case 'v':
	case 'h':
	case 'V':
		return true;
	default:
		return false;
	}
}

static const char *dest_opt_name(const struct option *longopts, int c)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == c)
			return o->name;
	return "?";
}

/* The --serve checks, after every option was read. */
static int dest_check_serve(const struct option *longopts, struct dest_opts *o)
{
	if (o->oneshot_opt) {
		fprintf(stderr,
			"rdmig-dest: --%s is not an option of --serve (the agent gives its "
			"workers their options)\n",
			dest_opt_name(longopts, o->oneshot_opt));
		return -EINVAL;
	}
	if (o->sup.api_socket && o->sup.api_socket[0] != '/') {
		fprintf(stderr, "rdmig-dest: --api-socket wants an absolute path\n");
		return -EINVAL;
	}
	if (o->sup.work_root[0] != '/') {
		fprintf(stderr, "rdmig-dest: --work-root wants an absolute path\n");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < o->sup.nbundle_roots; i++) {
		/* Canonical, so that a bundle's path is compared with what it resolves to. */
		if (o->bundle_root_args[i][0] != '/' ||
		    !realpath(o->bundle_root_args[i], o->bundle_root_real[i])) {
			fprintf(stderr,
				"rdmig-dest: --bundle-root %s: wants an existing directory, an "
				"absolute path (%s)\n",
				o->bundle_root_args[i],
				o->bundle_root_args[i][0] == '/' ? strerror(errno) : "relative");
			return -EINVAL;
		}
		o->sup.bundle_roots[i] = o->bundle_root_real[i];
	}
	if (tls_opts_check(&o->tls, o->sup.api_tcp != NULL, "rdmig-dest") < 0)
		return -EINVAL;
	o->sup.tls = &o->tls;
	o->sup.verbose = o->verbose > 0;
	return 0;
}

/* Returns 0, 1 (help/version printed: exit 0) or -EINVAL (exit 2). */
static int dest_parse_opts(int argc, char **argv, struct dest_opts *o)
{
	static const struct option longopts[] = {
	    {"images-dir", required_argument, NULL, 'D'},
	    {"work-dir", required_argument, NULL, 'W'},
	    {"status-fd", required_argument, NULL, OPT_STATUS_FD},
	    {"daemon", no_argument, NULL, 'd'},
	    {"pidfile", required_argument, NULL, OPT_PIDFILE},
	    {"log-file", required_argument, NULL, 'o'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"local", no_argument, NULL, OPT_LOCAL},
	    {"source", required_argument, NULL, OPT_SOURCE},
	    {"address", required_argument, NULL, OPT_ADDRESS},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"page-server", no_argument, NULL, OPT_PAGE_SERVER},
	    {"transport", required_argument, NULL, 't'},
	    {"migration-id", required_argument, NULL, 'm'},
	    {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
	    {"verify", no_argument, NULL, OPT_VERIFY},
	    {"one-lane", no_argument, NULL, OPT_ONE_LANE},
	    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
	    {"dead-after", required_argument, NULL, OPT_DEAD_AFTER},
	    {"pause-limit", required_argument, NULL, OPT_PAUSE_LIMIT},
	    {"max-reads", required_argument, NULL, OPT_MAX_READS},
	    {"drain-qps", required_argument, NULL, OPT_DRAIN_QPS},
	    {"readahead", required_argument, NULL, OPT_READAHEAD},
	    {"readahead-fixed", no_argument, NULL, OPT_READAHEAD_FIXED},
	    {"drain-depth", required_argument, NULL, OPT_DRAIN_DEPTH},
	    {"drain-chunk", required_argument, NULL, OPT_DRAIN_CHUNK},
	    {"fetch-timeout", required_argument, NULL, OPT_FETCH_TIMEOUT},
	    {"inject", required_argument, NULL, OPT_INJECT},
	    {"latency-out", required_argument, NULL, OPT_LATENCY_OUT},
	    {"fault-poll", required_argument, NULL, OPT_FAULT_POLL},
	    {"drain-quiet", required_argument, NULL, OPT_DRAIN_QUIET},
	    {"drain-floor", required_argument, NULL, OPT_DRAIN_FLOOR},
	    {"restore", no_argument, NULL, OPT_RESTORE},
	    {"criu", required_argument, NULL, OPT_CRIU},
	    {"criu-opt", required_argument, NULL, OPT_CRIU_OPT},
	    {"criu-log-level", required_argument, NULL, OPT_CRIU_LOG_LEVEL},
	    {"runc", required_argument, NULL, OPT_RUNC},
	    {"container", required_argument, NULL, OPT_CONTAINER},
	    {"bundle", required_argument, NULL, OPT_BUNDLE},
	    {"runc-root", required_argument, NULL, OPT_RUNC_ROOT},
	    {"secret-fd", required_argument, NULL, OPT_SECRET_FD},
	    {"progress-fd", required_argument, NULL, OPT_PROGRESS_FD},
	    {"guard-fd", required_argument, NULL, OPT_GUARD_FD},
	    {"takeover-fd", required_argument, NULL, OPT_TAKEOVER_FD},
	    {"early", no_argument, NULL, OPT_EARLY},
	    {"serve", no_argument, NULL, OPT_SERVE},
	    {"api-socket", required_argument, NULL, OPT_API_SOCKET},
	    {"api-tcp", required_argument, NULL, OPT_API_TCP},
	    {"api-group", required_argument, NULL, OPT_API_GROUP},
	    {"work-root", required_argument, NULL, OPT_WORK_ROOT},
	    {"bundle-root", required_argument, NULL, OPT_BUNDLE_ROOT},
	    {"max-migrations", required_argument, NULL, OPT_MAX_MIGRATIONS},
	    {"max-pending", required_argument, NULL, OPT_MAX_PENDING},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    TLS_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c, ret;

	ret = conffile_apply("rdmig-dest", &argc, &argv, ":D:W:do:vhVt:m:", longopts,
			     RDMIG_CONFDIR "/rdmig-dest.conf", "serve");
	if (ret < 0)
		return -EINVAL;
	opterr = 0;
	while ((c = conffile_getopt_long(argc, argv, ":D:W:do:vhVt:m:", longopts, NULL)) != -1) {
		ret = 0;
		if (!o->oneshot_opt && c != ':' && c != '?' && !dest_opt_serve_ok(c))
			o->oneshot_opt = c;
		if (!o->serve_opt && dest_opt_serve_only(c))
			o->serve_opt = c;
		switch (c) {
		case 'D':
			o->images_dir = optarg;
			break;
		case 'W':
			o->work_dir = optarg;
			break;
		case OPT_STATUS_FD:
			ret = parse_uint(optarg, 0, INT32_MAX, &v);
			o->status_fd = (int)v;
			break;
		case 'd':
			o->daemon = true;
			break;
		case OPT_PIDFILE:
			o->pidfile = optarg;
			break;
		case 'o':
			o->log_file = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case OPT_LOCAL:
			o->local = true;
			break;
		case OPT_READAHEAD:
			ret = parse_uint(optarg, 1, 1024, &v);
			o->ecfg.readahead_pages = (uint32_t)v;
			break;
		case OPT_READAHEAD_FIXED:
			o->ecfg.readahead_fixed = true;
			break;
		case OPT_DRAIN_DEPTH:
			ret = parse_uint(optarg, 1, 1024, &v);
			o->ecfg.drain_depth = (uint32_t)v;
			break;
		case OPT_DRAIN_CHUNK:
			ret = parse_size(optarg, &v);
			if (ret == 0 && (v < 4096 || v > (64u << 20) || v % 4096))
				ret = -ERANGE;
			o->ecfg.drain_chunk = v;
			break;
		case OPT_FETCH_TIMEOUT:
			ret = parse_uint(optarg, 1, 86400, &v);
			o->ecfg.fetch_timeout_ms = (uint32_t)v * 1000;
			break;
		case OPT_INJECT:
			o->inject = optarg;
			break;
		case OPT_DRAIN_QUIET:
			ret = parse_uint(optarg, 0, 60000, &v);
			o->ecfg.drain_quiet_ms = (uint32_t)v;
			break;
		case OPT_DRAIN_FLOOR:
			ret = parse_uint(optarg, 0, 1024, &v);
			o->ecfg.drain_floor = (uint32_t)v;
			break;
		case OPT_FAULT_POLL:
			ret = parse_uint(optarg, 0, 100000, &v);
			o->ecfg.fault_poll_us = (uint32_t)v;
			break;
		case OPT_LATENCY_OUT:
			o->latency_out = optarg;
			break;
		case OPT_RESTORE:
			o->restore = true;
			break;
		case OPT_CRIU:
			o->criu = optarg;
			break;
		case OPT_RUNC:
			o->runc = optarg;
			break;
		case OPT_CONTAINER:
			if (!container_id_valid(optarg)) {
				fprintf(stderr,
					"rdmig-dest: --container wants " CONTAINER_ID_RULE "\n");
				return -EINVAL;
			}
			o->container = optarg;
			break;
		case OPT_BUNDLE:
			o->bundle = optarg;
			break;
		case OPT_RUNC_ROOT:
			o->runc_root = optarg;
			break;
		case OPT_CRIU_OPT:
			if (o->nr_criu_opts == DEST_MAX_CRIU_OPTS) {
				fprintf(stderr, "rdmig-dest: more than %d --criu-opt\n",
					DEST_MAX_CRIU_OPTS);
				return -EINVAL;
			}
			o->criu_opts[o->nr_criu_opts++] = optarg;
			break;
		case OPT_CRIU_LOG_LEVEL:
			ret = parse_uint(optarg, 0, CRIU_LOG_LEVEL_MAX, &v);
			o->criu_log_level = (int)v;
			break;
		case OPT_SOURCE:
			ret = parse_hostport(optarg, "7471", o->src_host, sizeof(o->src_host),
					     o->src_port, sizeof(o->src_port));
			break;
		case OPT_ADDRESS:
			o->src_addr = optarg;
			break;
		case OPT_PORT:
			ret = parse_uint(optarg, 1, 65535, &v);
			o->src_port_opt = optarg;
			break;
		case OPT_PAGE_SERVER:
			break;
		case 't':
			ret = xport_transport_parse(optarg, &o->kind, &o->data_tls);
			break;
		case 'm':
			o->migration_id = optarg;
			break;
		case OPT_SECRET_FILE:
			o->secret_file = optarg;
			break;
		case OPT_SECRET_FD:
		case OPT_PROGRESS_FD:
		case OPT_GUARD_FD:
		case OPT_TAKEOVER_FD:
			/* 0..2 are stdio: a secret, progress or channel there is a mistake. */
			ret = parse_uint(optarg, 3, INT32_MAX, &v);
			if (c == OPT_SECRET_FD)
				o->secret_fd = (int)v;
			else if (c == OPT_PROGRESS_FD)
				o->progress_fd = (int)v;
			else if (c == OPT_GUARD_FD)
				o->guard_fd = (int)v;
			else
				o->takeover_fd = (int)v;
			break;
		case OPT_EARLY:
			o->early = true;
			break;
		case OPT_SERVE:
			o->serve = true;
			break;
		case OPT_API_SOCKET:
			o->sup.api_socket = optarg;
			break;
		case OPT_API_TCP:
			ret = dest_parse_api_tcp(o, optarg);
			break;
		case OPT_API_GROUP:
			o->sup.api_group = optarg;
			break;
		case OPT_WORK_ROOT:
			o->sup.work_root = optarg;
			break;
		case OPT_BUNDLE_ROOT:
			if (o->sup.nbundle_roots == SUP_BUNDLE_ROOTS_MAX) {
				fprintf(stderr, "rdmig-dest: at most %d --bundle-root\n",
					SUP_BUNDLE_ROOTS_MAX);
				ret = -EINVAL;
				break;
			}
			o->bundle_root_args[o->sup.nbundle_roots++] = optarg;
			break;
		case OPT_MAX_MIGRATIONS:
		case OPT_MAX_PENDING:
			ret = parse_uint(optarg, 1, 1024, &v);
			if (c == OPT_MAX_MIGRATIONS)
				o->sup.max_running = (unsigned int)v;
			else
				o->sup.max_pending = (unsigned int)v;
			break;
		case OPT_VERIFY:
			o->verify = true;
			break;
		case OPT_ONE_LANE:
			o->one_lane = true;
			break;
		case OPT_CONNECT_TIMEOUT:
		case OPT_DEAD_AFTER:
			ret = parse_uint(optarg, 1, 86400, &v);
			if (c == OPT_CONNECT_TIMEOUT)
				o->connect_timeout_s = (unsigned int)v;
			else
				o->dead_after_s = (unsigned int)v;
			break;
		case OPT_PAUSE_LIMIT:
			ret = parse_uint(optarg, 0, 86400 * 365, &v);
			o->pause_limit_s = (unsigned int)v;
			o->pause_limit_set = true;
			break;
		case OPT_MAX_READS:
			ret = parse_uint(optarg, 1, 1024, &v);
			o->max_reads = (uint32_t)v;
			break;
		case OPT_DRAIN_QPS:
			ret = parse_uint(optarg, 1, RDMA_DRAIN_QPS_MAX, &v);
			o->drain_qps = (unsigned int)v;
			break;
		case 'h':
			dest_usage(stdout);
			return 1;
		case 'V':
			printf("rdmig-dest %s\n", RDMIG_VERSION);
			return 1;
		case ':':
			fprintf(stderr, "rdmig-dest: option '%s' needs an argument\n",
				argv[optind - 1]);
			return -EINVAL;
		default:
			ret = tls_opts_handle(&o->tls, c, optarg, "rdmig-dest");
			if (ret == 1) {
				ret = 0;
				break;
			}
			if (ret == 0)
				fprintf(stderr, "rdmig-dest: unknown option '%s'; try --help\n",
					argv[optind - 1]);
			return -EINVAL;
		}
		if (ret < 0) {
			const char *why = ret == -ERANGE ? "out of range" : "not a valid value";

			/* "--opt=value" (as from a configuration file) is one element. */
			if (optarg != argv[optind - 1])
				fprintf(stderr, "rdmig-dest: %s: %s\n", argv[optind - 1], why);
			else
				fprintf(stderr, "rdmig-dest: %s %s: %s\n", argv[optind - 2], optarg,
					why);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rdmig-dest: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (o->serve)
		return dest_check_serve(longopts, o);
	if (o->serve_opt) {
		fprintf(stderr, "rdmig-dest: --%s needs --serve\n",
			dest_opt_name(longopts, o->serve_opt));
		return -EINVAL;
	}
	if (!o->images_dir) {
		fprintf(stderr, "rdmig-dest: -D/--images-dir is required\n");
		return -EINVAL;
	}
	if (o->src_addr) {
		if (strlen(o->src_addr) >= sizeof(o->src_host)) {
			fprintf(stderr, "rdmig-dest: --address too long\n");
			return -EINVAL;
		}
		snprintf(o->src_host, sizeof(o->src_host), "%s", o->src_addr);
		snprintf(o->src_port, sizeof(o->src_port), "%s",
			 o->src_port_opt ? o->src_port_opt : "7471");
	}
	if (o->local == !!o->src_host[0]) {
		fprintf(stderr, "rdmig-dest: give exactly one page source: --source HOST[:PORT] "
				"(or --address/--port) or --local\n");
		return -EINVAL;
	}
	if (o->src_host[0] && (!o->migration_id || (!o->secret_file) == (o->secret_fd < 0))) {
		fprintf(stderr,
			"rdmig-dest: --source needs --migration-id and one of --secret-file "
			"and --secret-fd\n");
		return -EINVAL;
	}
	if (o->takeover_fd >= 0 && (o->local || o->restore || o->daemon || o->guard_fd >= 0)) {
		fprintf(stderr, "rdmig-dest: --takeover-fd takes over a migration in post-copy "
				"from its source: not with --local, --restore, --daemon or "
				"--guard-fd\n");
		return -EINVAL;
	}
	if (o->early && (o->takeover_fd >= 0 || o->local || !o->src_host[0])) {
		fprintf(stderr, "rdmig-dest: --early is for a worker that fetches from --source, "
				"not with --local or --takeover-fd\n");
		return -EINVAL;
	}
	if (o->progress_fd >= 0 && o->daemon) {
		fprintf(stderr, "rdmig-dest: --progress-fd reports on the process its reader "
				"started: not with --daemon\n");
		return -EINVAL;
	}
	if ((o->criu || o->nr_criu_opts || o->criu_log_level >= 0) && !o->restore) {
		fprintf(stderr,
			"rdmig-dest: --criu, --criu-opt and --criu-log-level need --restore\n");
		return -EINVAL;
	}
	if ((o->container || o->bundle || o->runc_root || o->runc) &&
	    (!o->restore || !o->container || !o->bundle || o->bundle[0] != '/' ||
	     (o->runc_root && o->runc_root[0] != '/'))) {
		fprintf(stderr, "rdmig-dest: --container needs --restore and an absolute "
				"--bundle; --runc and --runc-root need --container\n");
		return -EINVAL;
	}
	if (tls_opts_check(&o->tls, false, "rdmig-dest") < 0)
		return -EINVAL;
	if (o->data_tls != tls_opts_any(&o->tls)) {
		fprintf(stderr, "rdmig-dest: %s\n",
			o->data_tls ? "--transport tls wants --tls-cert, --tls-key and --tls-ca"
				    : "without --serve, --tls-* are for --transport tls");
		return -EINVAL;
	}
	if (!o->work_dir)
		o->work_dir = o->images_dir;
	return 0;
}

int main(int argc, char **argv)
{
	struct dest_opts o = {
	    .status_fd = -1, .secret_fd = -1, .progress_fd = -1, .guard_fd = -1, .takeover_fd = -1};
	int ret;

	log_init(argv[0], LOG_LVL_INFO);
	/* Every mode: the supervisor, its workers (exec'd again) and single runs. */
	ret = proc_harden(true);
	if (ret < 0) {
		log_err("cannot ignore SIGPIPE or turn core dumps off: %s", strerror(-ret));
		return 1;
	}
	engine_config_default(&o.ecfg);
	o.kind = XPORT_RDMA;
	o.connect_timeout_s = 60;
	o.criu_log_level = -1;
	o.dead_after_s = 10;
	o.pause_limit_s = 600;
	o.max_reads = 64;
	/* docs/performance.md: 2 drained 64 MiB under faults 1.9x as fast as 1, 4 no faster. */
	o.drain_qps = 2;
	o.sup.work_root = SUP_WORK_ROOT_DEFAULT;
	o.sup.max_running = SUP_MAX_MIGRATIONS_DEFAULT;
	o.sup.max_pending = SUP_MAX_PENDING_DEFAULT;
	ret = dest_parse_opts(argc, argv, &o);
	if (ret != 0)
		return ret > 0 ? 0 : 2;
	log_set_level(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	if (o.log_file && (ret = dest_redirect_log(o.log_file)) < 0) {
		fprintf(stderr, "rdmig-dest: log file %s: %s\n", o.log_file, strerror(-ret));
		return 1;
	}
	log_hook_libevent();
	if (o.serve) {
		o.sup.criu = o.criu;
		o.sup.runc = o.runc;
		o.sup.criu_log_level = o.criu_log_level;
		o.sup.connect_timeout_s = o.connect_timeout_s;
		o.sup.pause_limit_s = o.pause_limit_set ? (int)o.pause_limit_s : -1;
		o.sup.dead_after_s = o.dead_after_s;
		o.sup.drain_depth = o.ecfg.drain_depth;
		o.sup.drain_chunk = o.ecfg.drain_chunk;
		return sup_run(&o.sup);
	}
	return worker_run(&o);
}
