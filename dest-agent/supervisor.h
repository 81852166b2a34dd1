/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * supervisor: `rdmig-dest --serve`, the destination agent's API daemon.
 *
 * One libevent loop serves the agents' HTTP API (common/api.h, role dest)
 * and runs one WORKER process per migration: this same binary in one-shot
 * mode (-D IMAGES -W WORK --source ... -m ID [--restore ...]), started with
 * posix_spawn.  A worker owns everything of its migration: the connection
 * and RDMA resources, the userfaultfds, criu restore and the restored
 * processes' fate.  A worker that crashes or is killed takes only its own
 * migration down, and a migration's memory registrations and uffds are
 * released by the kernel when its worker exits.
 *
 * The supervisor hands the secret to the worker through a pipe
 * (--secret-fd: never on a command line, in the environment or in a file),
 * reads its progress lines (--progress-fd, progress.h) and watches its exit
 * through a pidfd.  The API view of a migration comes from those reports;
 * its final state from the worker's exit: done only when the worker
 * reported done and exited 0.  DELETE sends the worker SIGTERM (it stops
 * the restored processes that still need pages and tells the source, which
 * keeps its checkpoint); the migration is aborted once the worker exited.
 *
 * A worker that dies in post-copy without a verdict (a crash, SIGKILL, an
 * upgrade) is replaced: the supervisor keeps the request's source,
 * transport, directories and secret, and one end of a takeover channel
 * whose other end the first worker handed to its guard; the new worker
 * (--takeover-fd) takes the userfaultfds from the guard and finishes.
 * Once the migration is final the channel closes, and a guard still
 * holding processes stops them (design.md §10.2).
 *
 * Reservations (POST /v1/reservations, docs/api.md §3.7): before it
 * freezes a workload, a source reserves a slot and disk space (statvfs of
 * the work root against its estimate) for a TTL; the migration's POST
 * names the reservation and takes its slot.  They live in memory only.
 *
 * SIGTERM/SIGINT: new migrations are refused (503), every worker gets
 * SIGTERM, and the supervisor exits once they are gone (bounded); a worker
 * still running then is left to finish its own bounded shutdown, never
 * killed: SIGKILL would leave its restored processes reading zeros.
 */
#ifndef RDMIG_SUPERVISOR_H
#define RDMIG_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#define SUP_WORK_ROOT_DEFAULT	   "/run/rdmig/dest"
#define SUP_MAX_MIGRATIONS_DEFAULT 4
#define SUP_MAX_PENDING_DEFAULT	   4
#define SUP_BUNDLE_ROOTS_MAX	   16

/* Borrowed for the lifetime of sup_run(). */
struct sup_config {
	const char *api_socket; /* NULL: API_SOCKET_DEST; "": none */
	const char *api_tcp;	/* "host:port" or NULL: no TCP listener */
	const char *api_group;	/* --api-group: NULL, the UNIX socket is root's only */
	const char *work_root;	/* parent of the default images directories */
	/*
	 * --bundle-root: the directories a reservation's container bundle
	 * must be below (canonical, as realpath() gives them); none: every
	 * bundle is refused.
	 */
	const char *bundle_roots[SUP_BUNDLE_ROOTS_MAX];
	unsigned int nbundle_roots;
	/*
	 * Slots: at most max_running workers whose source has authenticated
	 * (receiving and on), and at most max_pending still connecting to
	 * theirs; a POST that finds either full is refused (503).  A pending
	 * worker whose source does not authenticate within connect_timeout_s
	 * fails and frees its place, so requests naming a source that never
	 * answers hold places for that long at most, and never the running
	 * ones.  At most max_running + max_pending workers exist.
	 */
	unsigned int max_running;
	unsigned int max_pending;
	unsigned int connect_timeout_s; /* handed to the workers; 0: their default */
	int pause_limit_s; /* --pause-limit, handed to the workers; -1: their default */
	/*
	 * --dead-after, --drain-depth, --drain-chunk: handed to the workers
	 * as given (tests slow the drain to keep a migration in post-copy);
	 * 0: the workers' defaults.
	 */
	unsigned int dead_after_s;
	unsigned int drain_depth;
	uint64_t drain_chunk;
	const char *criu;   /* handed to workers as --criu; NULL: criu from PATH */
	const char *runc;   /* handed to containers' workers as --runc; NULL: runc from PATH */
	int criu_log_level; /* handed to workers unless criu_opts has one; < 0: none */
	bool verbose;	    /* workers log with -v too */
	/* The TCP API's TLS options (common/tls.h), or NULL: none. */
	const struct tls_opts *tls;
};

/*
 * Serves until SIGTERM/SIGINT.  Returns the process exit code: 0 after a
 * signal, 78 (EX_CONFIG) when the API cannot listen, 1 on other failures.
 */
int sup_run(const struct sup_config *cfg);

#endif
