/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * session: one destination connection on the source.
 *
 * A session authenticates the destination for one migration (HMAC proof of
 * the per-migration secret, docs/protocol.md), and only then takes the
 * checkpoint's pages files registered before it connected (prereg.h) or
 * registers them in the connection's protection domain (REMOTE_READ only),
 * sends their rkeys, streams the image files (lazy ranges as holes), the
 * range tables with remote addresses and rkeys, and the page checksums.
 * Over TCP it answers ReadReqs from the mapped files.  On Done with the
 * right digest it marks the migration done and deregisters everything.
 *
 * A session that fails or loses its peer deregisters its memory and ends;
 * the migration and its checkpoint stay, ready for another destination.
 */
#ifndef RDMIG_SRC_SESSION_H
#define RDMIG_SRC_SESSION_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "api.h"
#include "migration.h"
#include "offload.h"
#include "xport.h"

struct src_session;

/* The source agent: parsed configuration plus what it serves. */
struct src_agent {
	struct event_base *base;
	enum xport_kind kind;
	bool verify;	     /* offer per-page checksums */
	bool one_lane;	     /* RDMA: offer no fault lane (as an older source) */
	bool no_resume;	     /* offer no FEAT_RESUME (as an older source) */
	bool exit_when_done; /* stop once every migration is done */
	unsigned int handshake_timeout_s;
	unsigned int dead_after_s;
	/* Connections that have not proven a secret yet: in all, and per address. */
	unsigned int max_preauth;
	unsigned int max_preauth_per_addr;
	uint64_t preauth_log_ns;      /* last refusal logged: at most one a second */
	unsigned int preauth_refused; /* refused since */
	/* GET /metrics: connections refused at those limits, and wrong proofs. */
	uint64_t peers_refused_total;
	uint64_t peers_unauthenticated_total;
	/*
	 * Migrations kept: past it the final one that finished first is
	 * forgotten, and a start with this many not final is refused.
	 */
	unsigned int max_migrations;
	struct src_mig_list migrations;
	/*
	 * Migrations of a pid whose destination agent is asked for a
	 * reservation before the freeze: not listed, nothing dumped yet,
	 * their start request still unanswered (api_glue.c).
	 */
	struct src_mig_list reserving;
	LIST_HEAD(, src_session) sessions;
	struct api_server *api;	 /* NULL: no API */
	const char *images_root; /* where the agent's dumps go: <root>/<id> */
	/* With the API: images_root opened and resolved at start (trusted), owned. */
	int images_root_fd;
	char images_root_real[4096];
	/* With the API: the migrations' records below the images root (records.h), owned. */
	struct src_records *records;
	const char *criu;      /* the criu binary (PATH searched without a '/') */
	const char *runc;      /* the runc binary, for containers (likewise) */
	char endpoint[300];    /* "host:port" destinations connect to */
	int port;	       /* the data listener's port */
	char listen_host[256]; /* its address as given ("0.0.0.0": any) */
	/* Name lookups of the handovers without blocking; made on first use, owned. */
	struct evdns_base *dns;
	/* Maps API migrations' images off the loop; made on first use, owned. */
	struct offload *offload;
	unsigned int map_delay_ms; /* testing: each map job waits this long first */
	/*
	 * The handovers' TLS client context (--tls-*), owned; NULL: plain
	 * HTTP, to loopback destination agents only.
	 */
	struct ssl_ctx_st *tls_client;
	/*
	 * Stopping (a first SIGTERM/SIGINT): no new migrations; the loop ends
	 * once none is in progress (src_mig_in_progress()), at a second
	 * signal, or after shutdown_timeout_s (0: no limit).
	 */
	bool stopping;
	unsigned int shutdown_timeout_s;
	uint64_t stop_ns;	 /* monotonic, when stopping began */
	struct event *stop_tick; /* owned; checks the migrations while stopping */
	/* --transport tls: the data listener is TCP inside mutual TLS. */
	bool data_tls;
	/* RDMA: the data listener's device, where checkpoints are registered early; or NULL. */
	struct ibv_context *data_verbs;
};

#define SRC_MAX_PREAUTH_DEFAULT		 64
#define SRC_MAX_PREAUTH_PER_ADDR_DEFAULT 8
#define SRC_MAX_MIGRATIONS_DEFAULT	 256

/*
 * Takes ownership of x (an accepted connection), or refuses it with -EBUSY
 * when it would pass max_preauth or max_preauth_per_addr (the caller
 * closes it at once).
 */
int src_session_start(struct src_agent *a, struct xport *x);
/*
 * Ends the session that serves m, sending Abort(CANCELLED) with reason;
 * sessions still authenticating for m forget it (their proof will fail
 * like any other, nothing is said before).  Before m is destroyed.
 */
void src_session_cancel(struct src_agent *a, const struct src_migration *m, const char *reason);
/* The same with another Abort code (a lazy dump's page server failing: ABORT_READ). */
void src_session_cancel_code(struct src_agent *a, const struct src_migration *m, uint32_t code,
			     const char *reason);
/*
 * A lazy dump's unit u of m is staged: announced (StageRegion) to the
 * session serving m, once its tables are out.
 */
struct lazystage_unit;
void src_session_staged(struct src_agent *a, const struct src_migration *m,
			const struct lazystage_unit *u);
/*
 * m's checkpoint registration ahead of the destination ended (prereg.h):
 * the session that authenticated meanwhile, if any, starts serving.
 */
void src_session_prereg_done(struct src_agent *a, const struct src_migration *m);
/*
 * The data listener's rdma_pd_cb: the PD where the migration named in a
 * connect request (connhint.h) is registered, or NULL.  arg: the agent.
 */
struct rdma_pd *src_session_conn_pd(struct ibv_context *verbs, const void *data, size_t len,
				    void *arg);
/* Ends every session (agent shutdown). */
void src_session_close_all(struct src_agent *a);

#endif
