// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-dest: serves the lazy pages of processes restored by
 * `criu restore --lazy-pages`; a drop-in for `criu lazy-pages`.
 *
 * Startup mirrors criu lazy-pages: the socket is listening before the
 * daemon forks, and readiness is the '\0' byte on --status-fd.  Then one
 * libevent loop runs the lazy-pages socket, the fault engine, the page
 * source and the signals until every page is installed.
 *
 * --serve runs the API daemon instead (supervisor.c), which starts this
 * one-shot mode once per migration as its worker, with --secret-fd and
 * --progress-fd (progress.h).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "guard.h"
#include "criuproc.h"
#include "image.h"
#include "log.h"
#include "lpsock.h"
#include "pagesrc.h"
#include "conffile.h"
#include "ctrl.h"
#include "netsrc.h"
#include "pagesrc_local.h"
#include "progress.h"
#include "rdmig-config.h"
#include "restore.h"
#include "staging.h"
#include "supervisor.h"
#include "tls.h"
#include "util.h"

/* Staging slots kept for faults beyond the drain's; faults may also take any free slot. */
#define DEST_FAULT_SLOTS 32
/* After a stop request, how long killed processes get to disappear. */
#define DEST_ABORT_GRACE_S 10
/* --takeover-fd: how long the guard may take to hand its tasks over. */
#define DEST_TAKE_TIMEOUT_MS 10000
/* --criu-opt may be given this many times. */
#define DEST_MAX_CRIU_OPTS 64
/* After the migration ended, how long a still running criu restore may take. */
#define DEST_RESTORE_WAIT_MS 30000
/* --progress-fd: counters every tick; the final lines get this long to leave. */
#define DEST_PROGRESS_TICK_MS  250
#define DEST_PROGRESS_FLUSH_MS 2000
/*
 * engine_get_stats() sorts the latency samples: with more than this many,
 * counters go out at most once a second so the fault path is not held up.
 */
#define DEST_PROGRESS_CHEAP_SAMPLES 16384

/* Parsed configuration: set once in main(), then read-only. */
struct dest_opts {
	const char *images_dir;
	const char *work_dir;
	const char *pidfile;
	const char *log_file;
	const char *inject;
	const char *latency_out;
	int status_fd;
	bool daemon;
	bool local;
	int verbose;
	/* network source: rdmig-source at host:port */
	char src_host[256];
	char src_port[16];
	const char *src_addr; /* --address (criu lazy-pages spelling) */
	const char *src_port_opt;
	const char *migration_id;
	const char *secret_file;
	enum xport_kind kind;
	bool data_tls; /* --transport tls: TCP inside mutual TLS (--tls-*) */
	bool verify;
	bool one_lane;
	unsigned int connect_timeout_s;
	unsigned int dead_after_s;
	unsigned int pause_limit_s; /* 0: a pause lasts until the source is back */
	bool pause_limit_set;
	uint32_t max_reads;
	struct engine_config ecfg;
	/* --restore: run criu restore ourselves */
	bool restore;
	const char *criu;
	const char *criu_opts[DEST_MAX_CRIU_OPTS];
	size_t nr_criu_opts;
	int criu_log_level; /* -1: CRIU_LOG_LEVEL_DEFAULT */
	/* --container: runc restore of that container instead (restore.h) */
	const char *runc;
	const char *container;
	const char *bundle;
	const char *runc_root;
	/* the worker of a supervisor */
	int secret_fd;
	int progress_fd;
	/*
	 * --guard-fd: the supervisor's takeover channel, handed to the guard;
	 * --takeover-fd: the same channel, for a worker that takes over from
	 * the guard of one that died (design.md §10.2).  -1: none.
	 */
	int guard_fd;
	int takeover_fd;
	/* --serve */
	bool serve;
	struct sup_config sup;
	/* --bundle-root as given, made canonical into sup.bundle_roots by dest_check_serve() */
	const char *bundle_root_args[SUP_BUNDLE_ROOTS_MAX];
	char bundle_root_real[SUP_BUNDLE_ROOTS_MAX][PATH_MAX];
	char api_tcp_buf[300];
	struct tls_opts tls;
	int oneshot_opt; /* the first option that --serve does not take, 0: none */
	int serve_opt;	 /* the first option only --serve takes, 0: none */
};

struct dest {
	struct guard *guard; /* holds uffd duplicates: see guard.h */
	/* --takeover-fd: the tasks the guard handed over, until the engine adopts them */
	struct guard_task *taken;
	size_t nr_taken;
	bool takeover;
	struct event *src_progress_ev; /* Progress to the source, every second */
	struct dest_opts o;
	struct img_set *imgs;
	struct event_base *base;
	struct staging *st;
	struct pagesrc *src;
	struct engine *eng;
	struct lpsock *lp;
	struct event *sig_ev[2];
	struct event *abort_ev;
	uint64_t t_first; /* first userfaultfd received */
	uint64_t t_done;
	int done_status; /* engine's, 1 until it reports */
	bool restore_failed;
	bool stopping;
	/* network source */
	struct netsrc *ns;
	SSL_CTX *tls; /* --transport tls: the data connection's client context */
	struct auth_secret *secret;
	struct event *ack_ev;
	bool net_failed;
	bool images_ready;
	bool done_acked;
	/* --restore */
	struct restore *rs;
	uint64_t restore_ms;
	bool criu_failed;
	bool loop_over;
	int stop_sig; /* the signal that stopped us, 0: none */
	/* --progress-fd */
	struct progress_writer *pw;
	struct event *prog_tick;
	enum api_state reported;
	bool fin_seen;
	uint64_t lazy_total; /* lazy pages of the images */
	uint64_t stats_ns;   /* last engine_get_stats() for counters */
	uint64_t last_lat_count;
	uint64_t last_remaining;
	char error[PROGRESS_ERROR_MAX]; /* why the migration failed: the first cause */
};

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
	OPT_LATENCY_OUT,
	OPT_FAULT_POLL,
	OPT_DRAIN_QUIET,
	OPT_RESTORE,
	OPT_CRIU,
	OPT_CRIU_OPT,
	OPT_CRIU_LOG_LEVEL,
	OPT_SECRET_FD,
	OPT_PROGRESS_FD,
	OPT_GUARD_FD,
	OPT_TAKEOVER_FD,
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
		"      --fetch-timeout SEC  stop a process whose pages take longer (default 30)\n"
		"      --drain-quiet MS   over RDMA the drain narrows on faults and widens\n"
		"                         again after a quiet time that follows the faults'\n"
		"                         rhythm; MS fixes that time instead (default 0:\n"
		"                         adaptive)\n"
		"      --one-lane         ask for no fault lane: faults share the drain's\n"
		"                         queue pair (RDMA) or connection (TCP), as an\n"
		"                         older destination\n"
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
		"      --connect-timeout SEC, --criu PATH, --runc PATH, -o FILE, -v  as\n"
		"                         above, for the workers too; --runc restores the\n"
		"                         containers\n"
		"                         workers too\n");
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
	    {"readahead", required_argument, NULL, OPT_READAHEAD},
	    {"readahead-fixed", no_argument, NULL, OPT_READAHEAD_FIXED},
	    {"drain-depth", required_argument, NULL, OPT_DRAIN_DEPTH},
	    {"drain-chunk", required_argument, NULL, OPT_DRAIN_CHUNK},
	    {"fetch-timeout", required_argument, NULL, OPT_FETCH_TIMEOUT},
	    {"inject", required_argument, NULL, OPT_INJECT},
	    {"latency-out", required_argument, NULL, OPT_LATENCY_OUT},
	    {"fault-poll", required_argument, NULL, OPT_FAULT_POLL},
	    {"drain-quiet", required_argument, NULL, OPT_DRAIN_QUIET},
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

/* The page source: one branch per transport. */
static int dest_open_source(struct dest *d)
{
	struct pagesrc_local_inject inj;
	int ret;

	if (d->o.local) {
		if (d->o.inject) {
			ret = pagesrc_local_parse_inject(d->o.inject, &inj);
			if (ret < 0)
				return ret;
			log_warn("local source: fault injection on: %s", d->o.inject);
		}
		return pagesrc_local_create(d->base, d->imgs, d->o.inject ? &inj : NULL, &d->src);
	}
	return netsrc_pagesrc(d->ns, d->st, &d->src);
}

/* ---- --progress-fd: what the supervisor hears ---- */

/* One task's read-ahead into the progress line's counters. */
static void dest_ra_task(void *arg, const struct engine_task_info *i)
{
	struct progress_counters *c = arg;
	size_t p;

	for (p = 0; p < ARRAY_SIZE(c->ra_faults); p++)
		c->ra_faults[p] += i->ra_faults[p];
	if (c->nr_ra_tasks >= PROGRESS_RA_TASKS)
		return;
	c->ra_tasks[c->nr_ra_tasks].pid = i->pid;
	c->ra_tasks[c->nr_ra_tasks].pattern = i->ra_pattern;
	c->ra_tasks[c->nr_ra_tasks].window = i->ra_window;
	c->ra_tasks[c->nr_ra_tasks].stride = i->ra_stride;
	c->nr_ra_tasks++;
}

/* The first cause is what the supervisor reports: later errors are its consequences. */
__attribute__((format(printf, 2, 3))) static void dest_fail(struct dest *d, const char *fmt, ...)
{
	va_list ap;

	if (d->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
}

/* States only move forward: an event arriving late cannot take one back. */
static void dest_report(struct dest *d, enum api_state st, int64_t restore_ms)
{
	struct progress_msg m;

	if (progress_state_rank(st) <= progress_state_rank(d->reported))
		return;
	d->reported = st;
	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = st;
	m.restore_ms = restore_ms;
	progress_writer_send(d->pw, &m);
}

/*
 * The workload runs here: the restorer's FIN.  The drain starts at FIN, but
 * is reported after this, so the states stay in their documented order.
 */
static void dest_report_resumed(struct dest *d, int64_t restore_ms)
{
	dest_report(d, API_STATE_POSTCOPY, restore_ms);
	if (d->fin_seen && d->reported == API_STATE_POSTCOPY && engine_remaining(d->eng) > 0)
		dest_report(d, API_STATE_DRAINING, -1);
}

static uint64_t dest_images_lazy_pages(const struct img_set *imgs)
{
	uint64_t bytes = 0;

	for (size_t i = 0; imgs && i < imgs->nr_tasks; i++)
		bytes += imgs->tasks[i].lazy_bytes;
	return bytes / IMG_PAGE_SIZE;
}

/*
 * Fills c from the engine.  Unless forced, false when nothing moved since
 * the last time, or when the latency samples are many and the last look
 * is less than a second old (engine_get_stats() sorts them).
 */
static bool dest_counters(struct dest *d, bool force, struct progress_counters *c)
{
	const struct latstat *lat = engine_fault_latency(d->eng);
	uint64_t now = now_ns(), remaining = engine_remaining(d->eng), settled;
	struct engine_stats s;

	if (!force && d->stats_ns && lat->count == d->last_lat_count &&
	    remaining == d->last_remaining)
		return false;
	if (!force && lat->nr_samples > DEST_PROGRESS_CHEAP_SAMPLES &&
	    now - d->stats_ns < 1000000000ull)
		return false;
	engine_get_stats(d->eng, &s);
	d->stats_ns = now;
	d->last_lat_count = lat->count;
	d->last_remaining = remaining;
	if (!d->lazy_total)
		d->lazy_total = dest_images_lazy_pages(d->imgs);
	/* Fork children add their copy of the parent's pages to the total. */
	c->pages_total = s.lazy_pages > d->lazy_total ? s.lazy_pages : d->lazy_total;
	/* Pages an earlier worker installed (EEXIST after a takeover) are in as well. */
	c->pages_fetched = s.c.pages_fault + s.c.pages_drain + s.c.pages_exist;
	if (c->pages_fetched > c->pages_total)
		c->pages_fetched = c->pages_total;
	/* Before FIN the engine knows only the processes handed over so far. */
	settled = c->pages_fetched + s.c.pages_dropped;
	if (d->fin_seen)
		c->pages_remaining = s.remaining < c->pages_total ? s.remaining : c->pages_total;
	else
		c->pages_remaining = c->pages_total > settled ? c->pages_total - settled : 0;
	c->faults = s.c.faults;
	c->bytes = s.c.bytes;
	c->fault_p50_us = s.fault_count ? (int64_t)(s.fault_p50_ns / 1000) : -1;
	c->fault_p99_us = s.fault_count ? (int64_t)(s.fault_p99_ns / 1000) : -1;
	_Static_assert(LATSTAT_BUCKETS == API_HIST_BUCKETS, "one bucket layout");
	memcpy(c->fault_hist, lat->hist, sizeof(c->fault_hist));
	c->fault_sum_us = lat->sum_ns / 1000;
	c->drain_depth = s.drain_depth;
	c->drain_chunk = (int64_t)s.drain_chunk;
	c->fault_lane_reads = -1;
	c->nr_ra_tasks = 0;
	memset(c->ra_faults, 0, sizeof(c->ra_faults));
	engine_for_each_task(d->eng, dest_ra_task, c);
	if (d->ns) {
		struct netsrc_stats ns;

		netsrc_get_stats(d->ns, &ns);
		if (ns.fault_lane)
			c->fault_lane_reads = (int64_t)ns.lane_reads;
	}
	return true;
}

/* criu restore's own run time, known when it exits (after the FIN). */
static void dest_report_restore_ms(struct dest *d, int64_t restore_ms)
{
	struct progress_msg m;

	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.restore_ms = restore_ms;
	/* A line needs a state or counters; the ticks repeat restore_ms if this one is dropped. */
	if (!d->eng || !dest_counters(d, true, &m.c))
		return;
	m.has_counters = true;
	progress_writer_send(d->pw, &m);
}

static void dest_progress_tick(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;
	struct netsrc_stats ns;
	struct progress_msg m;

	/* netsrc has no "authenticated" callback: the first image data tells. */
	if (d->ns && !d->images_ready) {
		netsrc_get_stats(d->ns, &ns);
		if (ns.files || ns.file_bytes || ns.regions || ns.tables)
			dest_report(d, API_STATE_RECEIVING, -1);
		return;
	}
	if (!d->eng)
		return;
	progress_msg_init(&m);
	if (!dest_counters(d, false, &m.c))
		return;
	m.has_counters = true;
	if (d->restore_ms && !d->criu_failed)
		m.restore_ms = (int64_t)d->restore_ms;
	progress_writer_send(d->pw, &m);
}

static int dest_progress_start(struct dest *d)
{
	struct timeval tv = {.tv_usec = DEST_PROGRESS_TICK_MS * 1000};
	int ret;

	ret = progress_writer_create(d->base, d->o.progress_fd, &d->pw);
	if (ret < 0)
		goto out;
	d->prog_tick = event_new(d->base, -1, EV_PERSIST, dest_progress_tick, d);
	if (!d->prog_tick || event_add(d->prog_tick, &tv) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	if (!d->o.local)
		dest_report(d, API_STATE_CONNECTING, -1);
out:
	if (ret < 0)
		log_err("--progress-fd %d: %s", d->o.progress_fd, strerror(-ret));
	return ret;
}

/* The verdict with the last counters, in one line that is never dropped. */
static void dest_progress_end(struct dest *d, int code)
{
	struct progress_msg m;

	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = code == 0 ? API_STATE_DONE : API_STATE_FAILED;
	if (code != 0)
		snprintf(m.error, sizeof(m.error), "%s",
			 d->error[0] ? d->error : "the migration failed; see the worker's log");
	if (d->eng)
		m.has_counters = dest_counters(d, true, &m.c);
	progress_writer_send(d->pw, &m);
	progress_writer_flush(d->pw, DEST_PROGRESS_FLUSH_MS);
}

/* ---- lazy-pages socket -> engine ---- */

static int dest_on_task(void *arg, int32_t pid, int uffd, pid_t sender)
{
	struct dest *d = arg;

	if (!d->t_first)
		d->t_first = now_ns();
	return engine_add_task(d->eng, pid, uffd, sender);
}

static void dest_on_zombie(void *arg, int32_t pid)
{
	struct dest *d = arg;

	engine_add_zombie(d->eng, pid);
}

static void dest_on_finished(void *arg)
{
	struct dest *d = arg;

	if (!d->t_first)
		d->t_first = now_ns();
	d->fin_seen = true;
	engine_restore_finished(d->eng);
	/* The workload runs here now: losing the source pauses it, no longer fails it. */
	if (d->ns)
		netsrc_set_postcopy(d->ns);
	/*
	 * CRIU sends FIN once every task is restored, right before it lets them
	 * run: the downtime ends here, not when criu exits (with -d it still
	 * cleans up, competing for the CPU with the resumed workload).
	 */
	dest_report_resumed(d, -1);
}

static void dest_abort_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;

	log_err("stopped processes did not disappear within %d s; exiting anyway",
		DEST_ABORT_GRACE_S);
	event_base_loopexit(d->base, NULL);
}

/* Stop everything: kill what cannot complete, then leave once it is gone. */
static void dest_stop(struct dest *d, const char *reason)
{
	struct timeval tv = {.tv_sec = DEST_ABORT_GRACE_S};

	if (d->stopping)
		return;
	d->stopping = true;
	engine_abort(d->eng, reason);
	d->abort_ev = evtimer_new(d->base, dest_abort_timeout_cb, d);
	if (d->abort_ev)
		evtimer_add(d->abort_ev, &tv);
}

static void dest_on_lp_error(void *arg, int err, const char *reason)
{
	struct dest *d = arg;

	if (lpsock_finished(d->lp)) {
		log_warn("lazy-pages socket after restore finished: %s (ignored)", reason);
		return;
	}
	/* criu restore fails now (EPIPE on its next send) and kills its tasks; so do we. */
	d->restore_failed = true;
	log_err("restore failed: %s", reason);
	dest_fail(d, "restore failed: %s", reason);
	dest_stop(d, "restore failed");
}

static const struct lpsock_ops dest_lp_ops = {
    .task = dest_on_task,
    .zombie = dest_on_zombie,
    .finished = dest_on_finished,
    .error = dest_on_lp_error,
};

/* ---- engine -> owner ---- */

static void dest_on_task_failed(void *arg, int32_t pid, pid_t real_pid, int err)
{
	log_err("pid %" PRId32 ": migration failed for this process (%s)", pid, strerror(-err));
	dest_fail(arg, "restored process %" PRId32 " could not get its pages and was stopped (%s)",
		  pid, strerror(-err));
}

static void dest_ack_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;
	struct timeval tv = {.tv_sec = 10};

	/* Done goes out (again) once the source is back. */
	if (d->ns && netsrc_pause_reason(d->ns) && evtimer_add(d->ack_ev, &tv) == 0)
		return;
	log_err("the source did not acknowledge Done; it keeps its checkpoint");
	dest_fail(d, "the source did not acknowledge Done; it keeps its checkpoint");
	event_base_loopexit(d->base, NULL);
}

static void dest_on_done(void *arg, int status)
{
	struct dest *d = arg;
	struct engine_stats s;
	struct timeval tv = {.tv_sec = 10};

	d->done_status = status;
	d->t_done = now_ns();
	if (!d->ns || d->net_failed) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	if (status != 0) {
		dest_fail(d, "the restored processes could not get all their pages");
		/* Told apart on the source: stopped on purpose, not a broken restore. */
		if (d->stop_sig)
			netsrc_abort(d->ns, CTRL_ABORT_CANCELLED,
				     "migration aborted on the destination");
		else
			netsrc_abort(d->ns, CTRL_ABORT_RESTORE,
				     "the restored processes could not get all their pages");
		event_base_loopexit(d->base, NULL);
		return;
	}
	/* Every page is in: let the source release its checkpoint, then leave. */
	engine_get_stats(d->eng, &s);
	if (netsrc_send_done(d->ns, s.c.pages_fault + s.c.pages_drain, s.c.bytes) < 0) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->ack_ev = evtimer_new(d->base, dest_ack_timeout_cb, d);
	if (!d->ack_ev || evtimer_add(d->ack_ev, &tv) < 0)
		event_base_loopexit(d->base, NULL);
}

/* ---- rdmig-source -> owner ---- */

static void dest_net_images_ready(void *arg)
{
	struct dest *d = arg;

	d->images_ready = true;
	dest_report(d, API_STATE_RECEIVING, -1);
	event_base_loopbreak(d->base);
}

static void dest_net_failed(void *arg, int err, const char *reason)
{
	struct dest *d = arg;

	d->net_failed = true;
	if (!d->images_ready)
		dest_fail(d, "cannot get the images from the source: %s", reason);
	else
		dest_fail(d, "%s", reason);
	if (!d->images_ready) {
		event_base_loopbreak(d->base);
		return;
	}
	/* The page source reported itself gone: the engine stops what still needs pages. */
	if (d->eng && engine_remaining(d->eng) == 0 && d->done_status == 0)
		event_base_loopexit(d->base, NULL);
}

static void dest_net_done_acked(void *arg, bool ok, const char *reason)
{
	struct dest *d = arg;

	d->done_acked = ok;
	if (ok)
		log_info("the source confirmed every page arrived and released its checkpoint");
	else
		log_err("the source refused Done: %s", reason ? reason : "no reason");
	if (!ok)
		dest_fail(d, "the source refused Done: %s", reason ? reason : "no reason");
	event_base_loopexit(d->base, NULL);
}

static void dest_net_lane_up(void *arg)
{
	struct dest *d = arg;

	if (d->eng)
		engine_set_fault_lane(d->eng, true);
}

/* A paused line carries the reason where a failed one carries the error. */
static void dest_report_pause(struct dest *d, const char *reason)
{
	struct progress_msg m;

	if (!d->pw || d->error[0])
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = reason ? API_STATE_PAUSED : d->reported;
	if (reason)
		snprintf(m.error, sizeof(m.error), "%s", reason);
	if (d->eng)
		m.has_counters = dest_counters(d, true, &m.c);
	progress_writer_send(d->pw, &m);
}

static void dest_net_paused(void *arg, const char *reason)
{
	struct dest *d = arg;

	if (d->eng) {
		engine_set_paused(d->eng, true);
		engine_set_fault_lane(d->eng, false);
	}
	dest_report_pause(d, reason);
}

static void dest_net_resumed(void *arg)
{
	struct dest *d = arg;

	if (d->eng)
		engine_set_paused(d->eng, false);
	dest_report_pause(d, NULL);
}

/*
 * Paused too long: the processes are stopped, never killed, and keep their
 * userfaultfds (so no page reads as zero); the checkpoint stays on the
 * source.  rdmig-dest stays until it is stopped (SIGTERM, an abort), which
 * ends them as any failed migration does.
 */
static void dest_net_pause_expired(void *arg, const char *reason)
{
	struct dest *d = arg;
	struct progress_msg m;
	int n = d->eng ? engine_stop_processes(d->eng) : 0;

	if (d->takeover && !d->eng)
		dest_fail(d,
			  "%s; the guard stops the process tree(s) (SIGSTOP), the checkpoint "
			  "stays on the source",
			  reason);
	else
		dest_fail(d,
			  "%s; %d process tree(s) stopped (SIGSTOP), the checkpoint stays on the "
			  "source",
			  reason, n);
	log_err("%s", d->error);
	/* Taking over, the tables never came: leave; the guard stops the processes. */
	if (!d->images_ready)
		event_base_loopbreak(d->base);
	if (!d->pw)
		return;
	progress_msg_init(&m);
	m.has_state = true;
	m.state = API_STATE_FAILED;
	snprintf(m.error, sizeof(m.error), "%s", d->error);
	if (d->eng)
		m.has_counters = dest_counters(d, true, &m.c);
	progress_writer_send(d->pw, &m);
}

static const struct netsrc_ops dest_net_ops = {
    .images_ready = dest_net_images_ready,
    .failed = dest_net_failed,
    .done_acked = dest_net_done_acked,
    .lane_up = dest_net_lane_up,
    .paused = dest_net_paused,
    .resumed = dest_net_resumed,
    .pause_expired = dest_net_pause_expired,
};

/* Connects to rdmig-source and waits until the images are here. */
static int dest_fetch_images(struct dest *d)
{
	struct netsrc_config nc = {
	    .kind = d->o.kind,
	    .host = d->o.src_host,
	    .port = d->o.src_port,
	    .migration_id = d->o.migration_id,
	    .images_dir = d->o.images_dir,
	    .verify = d->o.verify,
	    .connect_timeout_s = d->o.connect_timeout_s,
	    .dead_after_s = d->o.dead_after_s,
	    .pause_limit_s = d->o.pause_limit_s,
	    .max_reads = d->o.max_reads,
	    .one_lane = d->o.one_lane,
	    .takeover = d->takeover,
	};
	int ret;

	if (d->o.data_tls) {
		ret = tls_ctx_new(TLS_CLIENT, &d->o.tls, &d->tls);
		if (ret < 0) {
			dest_fail(d, "TLS: cannot load --tls-cert, --tls-key or --tls-ca");
			return ret;
		}
		nc.tls = d->tls;
	}
	/* --secret-fd was read at startup. */
	if (!d->secret) {
		ret = auth_secret_load_file(d->o.secret_file, &d->secret);
		if (ret < 0) {
			log_err("secret file %s: %s", d->o.secret_file, strerror(-ret));
			dest_fail(d, "secret file %s: %s", d->o.secret_file, strerror(-ret));
			return ret;
		}
	}
	nc.secret = d->secret;
	ret = netsrc_connect(d->base, &nc, &dest_net_ops, d, &d->ns);
	if (ret < 0)
		return ret;
	event_base_dispatch(d->base);
	if (!d->images_ready)
		return d->net_failed ? -ECONNABORTED : -EINTR;
	return 0;
}

static void dest_on_task_added(void *arg, const struct engine_task_ref *t)
{
	struct dest *d = arg;
	struct guard_add_info a = {.id = t->id,
				   .parent_id = t->parent_id,
				   .pid = t->pid,
				   .real_pid = t->real_pid,
				   .pidfd_own = t->pidfd_own};

	if (d->guard)
		guard_add(d->guard, &a, t->uffd, t->pidfd);
}

static void dest_on_layout_changed(void *arg, uint32_t id, const struct uffd_layout *l)
{
	struct dest *d = arg;

	if (d->guard)
		guard_event(d->guard, id, l);
}

static void dest_on_task_settled(void *arg, uint32_t id)
{
	struct dest *d = arg;

	if (d->guard)
		guard_forget(d->guard, id);
}

static const struct engine_ops dest_engine_ops = {
    .task_failed = dest_on_task_failed,
    .done = dest_on_done,
    .task_added = dest_on_task_added,
    .layout_changed = dest_on_layout_changed,
    .task_settled = dest_on_task_settled,
};

static void dest_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct dest *d = arg;
	uint64_t left = engine_remaining(d->eng);

	if (d->stopping) {
		log_err("signal %d again: exiting now", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->stop_sig = (int)sig;
	dest_fail(d, "stopped by signal %d", (int)sig);
	if (left)
		log_err("signal %d with %" PRIu64 " lazy pages not installed: killing the restored "
			"processes that still need them (a process whose pid is unknown stays "
			"blocked until rdmig-dest exits)",
			(int)sig, left);
	else
		log_warn("signal %d: stopping", (int)sig);
	dest_stop(d, "signal");
}

/* ---- --restore: criu restore -> owner ---- */

static void dest_on_restore_exit(void *arg, const struct restore_result *res)
{
	struct dest *d = arg;

	d->restore_ms = res->ms;
	if (res->ok) {
		if (res->root_pid)
			log_info("criu restore done in %" PRIu64 " ms: restored root pid %d",
				 res->ms, (int)res->root_pid);
		else
			log_info("criu restore done in %" PRIu64 " ms: restored root pid unknown",
				 res->ms);
		if (!d->stopping)
			dest_report_restore_ms(d, (int64_t)res->ms);
		return;
	}
	d->criu_failed = true;
	d->restore_failed = true;
	if (res->log_err < 0)
		log_err("restore failed: criu restore %s after %" PRIu64 " ms; its log %s: %s",
			res->how, res->ms, res->log_path, strerror(-res->log_err));
	else
		log_err("restore failed: criu restore %s after %" PRIu64 " ms; see %s: %s",
			res->how, res->ms, res->log_path,
			res->last_error[0] ? res->last_error : "(no Error line)");
	dest_fail(d, "criu restore %s after %" PRIu64 " ms; see %s: %s", res->how, res->ms,
		  res->log_path,
		  res->log_err < 0 ? strerror(-res->log_err)
				   : (res->last_error[0] ? res->last_error : "(no Error line)"));
	/* The source keeps its checkpoint: the workload can be restored there again. */
	if (d->ns && !d->net_failed && !d->done_acked)
		netsrc_abort(d->ns, CTRL_ABORT_RESTORE, "criu restore failed on the destination");
	if (!d->loop_over)
		dest_stop(d, "criu restore failed");
}

static const struct restore_ops dest_restore_ops = {
    .exited = dest_on_restore_exit,
};

/* Runs criu restore once the socket listens and the readiness byte is out. */
static int dest_start_restore(struct dest *d)
{
	struct restore_config rc = {
	    .criu = d->o.criu,
	    .images_dir = d->o.images_dir,
	    .work_dir = d->o.work_dir,
	    .log_level = d->o.criu_log_level,
	    .extra = d->o.criu_opts,
	    .nr_extra = d->o.nr_criu_opts,
	    .runc = d->o.runc,
	    .container = d->o.container,
	    .bundle = d->o.bundle,
	    .runc_root = d->o.runc_root,
	};

	return restore_start(d->base, &rc, &dest_restore_ops, d, &d->rs);
}

/* ---- the guard, and taking over from it ---- */

/*
 * One-shot or a supervisor's first worker: fork the guard (with the
 * supervisor's takeover channel, if any).  A worker taking over: receive
 * the tasks from the guard of the worker that died, which serves us now.
 */
static int dest_start_guard(struct dest *d)
{
	int ret;

	if (d->takeover) {
		ret = guard_take(d->o.takeover_fd, DEST_TAKE_TIMEOUT_MS, &d->guard, &d->taken,
				 &d->nr_taken);
		close(d->o.takeover_fd);
		if (ret < 0) {
			log_err("cannot take over from the guard: %s%s", strerror(-ret),
				ret == -EBUSY ? " (a worker still serves the migration)" : "");
			dest_fail(d, "cannot take over from the guard: %s", strerror(-ret));
			return ret;
		}
		log_info("taking over: the guard handed over %zu task(s) of the worker that died",
			 d->nr_taken);
		return 0;
	}
	ret = guard_start(d->o.guard_fd, d->o.pause_limit_s, &d->guard);
	if (d->o.guard_fd >= 0)
		close(d->o.guard_fd);
	if (ret < 0)
		log_warn("no guard process (%s): if rdmig-dest dies mid-migration, restored "
			 "processes read zeros where pages are missing",
			 strerror(-ret));
	return 0;
}

/*
 * The engine adopts every task handed over (each then wakes its waiting
 * threads), and the drain starts at once: the workload ran all along.
 */
static void dest_adopt(struct dest *d)
{
	d->t_first = now_ns();
	for (size_t i = 0; i < d->nr_taken; i++) {
		struct guard_task *g = &d->taken[i];
		struct engine_task_ref ref = {.id = g->id,
					      .parent_id = g->parent_id,
					      .pid = g->pid,
					      .real_pid = g->real_pid,
					      .uffd = g->uffd,
					      .pidfd = g->pidfd,
					      .pidfd_own = g->pidfd_own};

		/* The engine's now, also if it cannot adopt the task. */
		g->uffd = -1;
		g->pidfd = -1;
		engine_adopt_task(d->eng, &ref, g->events, g->nr_events, g->layout_unknown);
	}
	guard_tasks_free(d->taken, d->nr_taken);
	d->taken = NULL;
	d->nr_taken = 0;
	d->fin_seen = true;
	engine_restore_finished(d->eng);
	dest_report_resumed(d, -1);
}

/* ---- startup ---- */

static int dest_redirect_log(const char *path)
{
	/* Never through a link: under --serve the path is in a directory the agent made. */
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (dup2(fd, STDERR_FILENO) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static int dest_write_pidfile(const char *path)
{
	char buf[32];
	int fd, n, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		ret = -errno;
		log_err("pidfile %s: %s", path, strerror(-ret));
		return ret;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		ret = errno ? -errno : -EIO;
		log_err("pidfile %s: write: %s", path, strerror(-ret));
	}
	close(fd);
	return ret;
}

/*
 * Forks; the parent waits until the child says it is ready (socket
 * listening, pidfile written) and exits with its verdict, so a caller
 * that sees `rdmig-dest -d` return 0 can start the restore at once.
 * Returns in the child with *ready_fd to report on, or < 0.
 */
static int dest_daemonize(int *ready_fd)
{
	int pfd[2], devnull;
	pid_t pid;
	char ok;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &ok, 1) == 1 && ok == 0)
			_exit(0);
		_exit(1);
	}
	close(pfd[0]);
	setsid();
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		close(devnull);
	}
	*ready_fd = pfd[1];
	return 0;
}

static void dest_report_ready(int fd, bool ok)
{
	char b = ok ? 0 : 1;

	if (fd < 0)
		return;
	if (write(fd, &b, 1) != 1)
		log_warn("status fd %d: %s", fd, strerror(errno));
	close(fd);
}

/* Tells the source how far the migration is, for its API (pages fetched, faults). */
static void dest_src_progress_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dest *d = arg;
	struct engine_counters c;

	if (!d->ns || d->net_failed || !d->eng)
		return;
	engine_get_counters(d->eng, &c);
	netsrc_send_progress(d->ns, c.pages_fault + c.pages_drain, c.bytes, c.faults_lazy);
}

static int dest_setup_loop(struct dest *d)
{
	static const int sigs[2] = {SIGINT, SIGTERM};
	uint64_t slot = d->o.ecfg.drain_chunk;
	int ret;

	if (!d->base)
		d->base = event_base_new();
	if (!d->base)
		return -ENOMEM;
	if ((uint64_t)d->o.ecfg.readahead_pages * IMG_PAGE_SIZE > slot)
		slot = (uint64_t)d->o.ecfg.readahead_pages * IMG_PAGE_SIZE;
	ret = staging_create(slot, d->o.ecfg.drain_depth + DEST_FAULT_SLOTS, &d->st);
	if (ret < 0)
		return ret;
	ret = dest_open_source(d);
	if (ret < 0)
		return ret;
	/* One-sided READs cost the source nothing: let faults overtake the drain there. */
	d->o.ecfg.drain_yields = !d->o.local && d->o.kind == XPORT_RDMA;
	if (d->ns) {
		struct netsrc_stats ns;

		netsrc_get_stats(d->ns, &ns);
		d->o.ecfg.fault_lane = ns.fault_lane;
	}
	ret = engine_create(d->base, d->imgs, d->src, d->st, &d->o.ecfg, &dest_engine_ops, d,
			    &d->eng);
	if (ret < 0)
		return ret;
	/* Taking over, the processes are restored already: no lazy-pages socket. */
	ret = d->lp ? lpsock_start(d->lp, d->base, d->imgs, &dest_lp_ops, d) : 0;
	if (ret < 0)
		return ret;
	for (int i = 0; i < 2; i++) {
		d->sig_ev[i] = evsignal_new(d->base, sigs[i], dest_signal_cb, d);
		if (!d->sig_ev[i] || event_add(d->sig_ev[i], NULL) < 0)
			return -ENOMEM;
	}
	if (d->ns) {
		struct timeval tv = {.tv_sec = 1};

		d->src_progress_ev = event_new(d->base, -1, EV_PERSIST, dest_src_progress_cb, d);
		if (!d->src_progress_ev || event_add(d->src_progress_ev, &tv) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- the end ---- */

static void dest_print_task(void *arg, const struct engine_task_info *i)
{
	char forked[48] = "";

	if (i->parent_id)
		snprintf(forked, sizeof(forked), " (forked from task %" PRIu32 ")", i->parent_id);
	log_info("task %" PRIu32 ": pid %" PRId32 "%s process %d: %s, lazy %" PRIu64
		 ", fault %" PRIu64 ", drain %" PRIu64 ", zero %" PRIu64 ", dropped %" PRIu64
		 ", left %" PRIu64 ", faults %" PRIu64 " (lazy %" PRIu64 "), fault p50 %" PRIu64
		 " us p99 %" PRIu64 " us, readahead %s (window %" PRIu32 "; sequential %" PRIu64
		 ", strided %" PRIu64 ", random %" PRIu64 ")",
		 i->id, i->pid, forked, (int)i->real_pid, engine_task_state_name(i->state),
		 i->lazy_pages, i->c.pages_fault, i->c.pages_drain, i->c.zero_pages,
		 i->c.pages_dropped, i->remaining, i->c.faults, i->c.faults_lazy,
		 i->fault_p50_ns / 1000, i->fault_p99_ns / 1000,
		 readahead_pattern_str(i->ra_pattern), i->ra_window, i->ra_faults[RA_SEQUENTIAL],
		 i->ra_faults[RA_STRIDED], i->ra_faults[RA_RANDOM]);
}

static void dest_summary(struct dest *d, int code)
{
	struct engine_stats s;
	char hist[512];
	uint64_t ms = d->t_first && d->t_done > d->t_first ? (d->t_done - d->t_first) / 1000000 : 0;
	double mbps = 0;
	char restore[40] = "", verify[80] = "";
	struct netsrc_stats ns;

	if (!d->eng)
		return;
	if (d->o.restore)
		snprintf(restore, sizeof(restore), " restore_ms=%" PRIu64, d->restore_ms);
	/* This worker's pages checked by their page tag, and parts it could not check. */
	if (d->ns && d->o.verify) {
		netsrc_get_stats(d->ns, &ns);
		snprintf(verify, sizeof(verify),
			 " verified=%" PRIu64 " unverified=%" PRIu64 " verify_failures=%" PRIu64,
			 ns.pages_verified, ns.unit_parts_unverified, ns.verify_failures);
	}
	engine_for_each_task(d->eng, dest_print_task, d);
	engine_get_stats(d->eng, &s);
	if (s.fault_count)
		log_info("fault latency histogram (lower bound in us:count): %s",
			 latstat_format_hist(engine_fault_latency(d->eng), hist, sizeof(hist)));
	if (s.drain_ns)
		mbps = (double)s.c.pages_drain * IMG_PAGE_SIZE / 1e6 / ((double)s.drain_ns / 1e9);
	log_info("summary: status=%s tasks=%" PRIu32 " forks=%" PRIu64 " zombies=%" PRIu32
		 " failed=%" PRIu32 " lazy=%" PRIu64 " fault=%" PRIu64 " drain=%" PRIu64
		 " zero=%" PRIu64 " dropped=%" PRIu64 " left=%" PRIu64 " remaps=%" PRIu64
		 " removes=%" PRIu64 " unmaps=%" PRIu64 " adopted=%" PRIu64 " replayed=%" PRIu64
		 " exist=%" PRIu64 " bytes=%" PRIu64 " time_ms=%" PRIu64 " faults=%" PRIu64
		 " lazy_faults=%" PRIu64 " timed=%" PRIu64 " fault_p50_us=%" PRIu64
		 " fault_p99_us=%" PRIu64 " drain_MBps=%.1f%s%s",
		 code == 0 ? "ok" : "failed", s.tasks, s.c.forks, s.zombies, s.tasks_failed,
		 s.lazy_pages, s.c.pages_fault, s.c.pages_drain, s.c.zero_pages, s.c.pages_dropped,
		 s.remaining, s.c.remaps, s.c.removes, s.c.unmaps, s.c.adopted, s.c.replayed,
		 s.c.pages_exist, s.c.bytes, ms, s.c.faults, s.c.faults_lazy, s.fault_count,
		 s.fault_p50_ns / 1000, s.fault_p99_ns / 1000, mbps, restore, verify);
	if (d->ns) {
		netsrc_get_stats(d->ns, &ns);
		log_info("lanes: fault_lane=%s lane_reads=%" PRIu64 " reads=%" PRIu64
			 " drain_depth=%" PRIu32 " drain_chunk=%" PRIu64 " drain_shrinks=%" PRIu64
			 " drain_grows=%" PRIu64,
			 ns.fault_lane ? "yes" : "no", ns.lane_reads, ns.reads, s.drain_depth,
			 s.drain_chunk, s.drain_shrinks, s.drain_grows);
		log_info("pauses: count=%" PRIu32 " paused_ms=%" PRIu64, ns.pauses,
			 ns.paused_ns / 1000000);
	}
}

/* --latency-out: the engine's fault latency samples, one per line (ns). */
static void dest_write_latencies(struct dest *d)
{
	const struct latstat *ls;
	FILE *f;

	if (!d->o.latency_out || !d->eng)
		return;
	ls = engine_fault_latency(d->eng);
	f = fopen(d->o.latency_out, "we");
	if (!f) {
		log_warn("--latency-out %s: %s", d->o.latency_out, strerror(errno));
		return;
	}
	for (size_t i = 0; i < ls->nr_samples; i++)
		fprintf(f, "%" PRIu64 "\n", ls->samples[i]);
	if (fclose(f) != 0)
		log_warn("--latency-out %s: %s", d->o.latency_out, strerror(errno));
}

static void dest_cleanup(struct dest *d)
{
	bool net = d->ns != NULL;

	/* The source first: after it nothing writes into staging or completes a request. */
	restore_free(d->rs);
	if (d->src_progress_ev)
		event_free(d->src_progress_ev);
	/* Without a release, the guard now kills the processes still missing pages. */
	guard_free(d->guard);
	pagesrc_destroy(d->src);
	engine_free(d->eng);
	netsrc_free(d->ns);
	auth_secret_free(d->secret);
	if (d->ack_ev)
		event_free(d->ack_ev);
	staging_free(d->st);
	lpsock_free(d->lp);
	if (d->prog_tick)
		event_free(d->prog_tick);
	progress_writer_free(d->pw);
	for (int i = 0; i < 2; i++)
		if (d->sig_ev[i])
			event_free(d->sig_ev[i]);
	if (d->abort_ev)
		event_free(d->abort_ev);
	if (net && d->base)
		xport_drain_closing(d->base, 3000);
	if (d->base)
		event_base_free(d->base);
	SSL_CTX_free(d->tls);
	image_set_free(d->imgs);
	guard_tasks_free(d->taken, d->nr_taken);
}

int main(int argc, char **argv)
{
	struct dest d = {
	    .o = {.status_fd = -1,
		  .secret_fd = -1,
		  .progress_fd = -1,
		  .guard_fd = -1,
		  .takeover_fd = -1},
	    .done_status = 1,
	    .reported = API_STATE_PENDING,
	};
	int ready_fd = -1, ret, code = 1;

	log_init(argv[0], LOG_LVL_INFO);
	/* Every mode: the supervisor, its workers (exec'd again) and single runs. */
	ret = proc_harden(true);
	if (ret < 0) {
		log_err("cannot ignore SIGPIPE or turn core dumps off: %s", strerror(-ret));
		return 1;
	}
	engine_config_default(&d.o.ecfg);
	d.o.kind = XPORT_RDMA;
	d.o.connect_timeout_s = 60;
	d.o.criu_log_level = -1;
	d.o.dead_after_s = 10;
	d.o.pause_limit_s = 600;
	d.o.max_reads = 64;
	d.o.sup.work_root = SUP_WORK_ROOT_DEFAULT;
	d.o.sup.max_running = SUP_MAX_MIGRATIONS_DEFAULT;
	d.o.sup.max_pending = SUP_MAX_PENDING_DEFAULT;
	ret = dest_parse_opts(argc, argv, &d.o);
	if (ret != 0)
		return ret > 0 ? 0 : 2;
	log_set_level(d.o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	d.takeover = d.o.takeover_fd >= 0;
	if (d.o.log_file && (ret = dest_redirect_log(d.o.log_file)) < 0) {
		fprintf(stderr, "rdmig-dest: log file %s: %s\n", d.o.log_file, strerror(-ret));
		return 1;
	}
	log_hook_libevent();
	if (d.o.serve) {
		d.o.sup.criu = d.o.criu;
		d.o.sup.runc = d.o.runc;
		d.o.sup.criu_log_level = d.o.criu_log_level;
		d.o.sup.connect_timeout_s = d.o.connect_timeout_s;
		d.o.sup.pause_limit_s = d.o.pause_limit_set ? (int)d.o.pause_limit_s : -1;
		return sup_run(&d.o.sup);
	}
	if (d.o.progress_fd >= 0) {
		/* Before anything can fail, so the supervisor hears why; never with -d. */
		d.base = event_base_new();
		if (!d.base || dest_progress_start(&d) < 0)
			goto out;
	}
	if (d.o.secret_fd >= 0) {
		ret = auth_secret_read_fd(d.o.secret_fd, &d.secret);
		close(d.o.secret_fd);
		if (ret < 0) {
			dest_fail(&d, "no usable secret on --secret-fd: %s", strerror(-ret));
			goto out;
		}
	}
	if (d.o.local) {
		ret = image_set_open(d.o.images_dir, &d.imgs);
		if (ret < 0) {
			log_err("images %s: %s", d.o.images_dir, strerror(-ret));
			goto out;
		}
	}
	ret = d.takeover ? 0 : lpsock_listen(d.o.work_dir, &d.lp);
	if (ret < 0)
		goto out;
	if (d.o.daemon) {
		if (!d.o.log_file)
			log_info("daemonizing; the log goes to /dev/null (use -o FILE)");
		ret = dest_daemonize(&ready_fd);
		if (ret < 0) {
			log_err("daemonize: %s", strerror(-ret));
			goto out;
		}
		if (!d.o.log_file)
			dest_redirect_log("/dev/null");
	}
	/* After daemonizing (the guard watches this very process), before any RDMA resource. */
	if (dest_start_guard(&d) < 0)
		goto out;
	if (!d.o.local) {
		/* After daemonizing: a forked child must not inherit RDMA resources. */
		if (!d.base)
			d.base = event_base_new();
		if (!d.base || dest_fetch_images(&d) < 0) {
			log_err("cannot get the images from the source; nothing was restored");
			dest_fail(&d,
				  "cannot get the images from the source; nothing was restored");
			goto out;
		}
		ret = image_set_open(d.o.images_dir, &d.imgs);
		if (ret < 0) {
			log_err("received images in %s: %s", d.o.images_dir, strerror(-ret));
			dest_fail(&d, "the received images in %s do not parse: %s", d.o.images_dir,
				  strerror(-ret));
			netsrc_abort(d.ns, CTRL_ABORT_IMAGES, "the received images do not parse");
			goto out;
		}
		/* A lazy dump's tables are its staging units: cut the lazy ranges alike. */
		if (netsrc_lazy_dump(d.ns))
			ret = image_set_cut_lazy(d.imgs, CTRL_STAGE_UNIT);
		if (ret == 0)
			ret = netsrc_check_images(d.ns, d.imgs);
		if (ret < 0) {
			dest_fail(&d, "the received images and the source's range tables disagree");
			netsrc_abort(d.ns, CTRL_ABORT_IMAGES,
				     "the images and the range tables disagree");
			goto out;
		}
	}
	ret = dest_setup_loop(&d);
	if (ret < 0) {
		log_err("setup: %s", strerror(-ret));
		dest_fail(&d, "setup: %s", strerror(-ret));
		goto out;
	}
	if (d.o.pidfile && (ret = dest_write_pidfile(d.o.pidfile)) < 0)
		goto out;
	dest_report_ready(d.o.status_fd, true);
	dest_report_ready(ready_fd, true);
	ready_fd = -1;
	if (d.takeover) {
		dest_adopt(&d);
		goto run;
	}
	/* Images in, socket listening: the restore runs (ours) or may start (external). */
	dest_report(&d, API_STATE_RESTORING, -1);
	if (d.o.restore && (ret = dest_start_restore(&d)) < 0) {
		log_err("restore failed: criu restore could not be started: %s", strerror(-ret));
		dest_fail(&d, "criu restore could not be started: %s", strerror(-ret));
		if (d.ns)
			netsrc_abort(d.ns, CTRL_ABORT_RESTORE,
				     "criu restore could not be started on the destination");
		goto out;
	}
run:
	event_base_dispatch(d.base);
	d.loop_over = true;
	if (!d.t_done)
		d.t_done = now_ns();
	/* The pages may all be in before criu itself has exited. */
	if (restore_running(d.rs))
		restore_wait(d.rs, DEST_RESTORE_WAIT_MS);
	code = d.done_status == 0 && !d.restore_failed && !d.stopping && !d.criu_failed ? 0 : 1;
	if (d.ns && code == 0 && !d.done_acked)
		code = 1;
	dest_summary(&d, code);
	dest_write_latencies(&d);
	if (code == 0 && d.guard)
		guard_release(d.guard);
out:
	dest_report_ready(ready_fd, false);
	dest_progress_end(&d, code);
	dest_cleanup(&d);
	return code;
}
