/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * destopts: rdmig-dest's parsed command line, shared by the entry (main.c:
 * parsing, the choice between --serve and a worker) and the worker
 * (worker.c), which takes its own copy.  The strings point into argv or a
 * configuration file's lines (conffile.h), which live as long as the
 * process.
 */
#ifndef RDMIG_DEST_DESTOPTS_H
#define RDMIG_DEST_DESTOPTS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "supervisor.h"
#include "tls.h"
#include "xport.h"

/* --criu-opt may be given this many times. */
#define DEST_MAX_CRIU_OPTS 64

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
	unsigned int drain_qps; /* --drain-qps: RDMA queue pairs for the drain */
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
	/*
	 * --early: started at the reservation (design.md §10.3); SIGUSR1 says
	 * the handover's POST adopted it (netsrc_release()).
	 */
	bool early;
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

#endif
