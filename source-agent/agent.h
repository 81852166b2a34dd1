/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * agent: the source agent's one context, passed to every module that acts
 * for the whole agent (session.c, api_glue.c, handover.c, main.c).
 *
 * It is the parsed configuration plus what the agent serves.  main.c owns
 * the struct itself (on its stack, for the loop's whole run) and sets the
 * configuration before the loop runs; the rest is created by the modules
 * named below and released by main.c at exit, in reverse order.  Everything
 * here is touched on the event loop's thread only.
 *
 * Kept apart from session.h so that the modules that only need the agent
 * (handover, api_glue) do not include the session's interface, and no
 * header includes another in a cycle.
 */
#ifndef RDMIG_SRC_AGENT_H
#define RDMIG_SRC_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "migration.h"
#include "runcrun.h"
#include "xport.h"

struct api_server;
struct criucheck;
struct evdns_base;
struct event;
struct event_base;
struct ibv_context;
struct offload;
struct src_records;
struct src_session;
struct ssl_ctx_st;

/* The source agent: parsed configuration plus what it serves. */
struct src_agent {
	struct event_base *base; /* main.c's, owned by main.c */
	/* Configuration, set by main.c before the loop runs, then read only. */
	enum xport_kind kind;
	bool verify;	/* offer per-page checksums */
	bool one_lane;	/* RDMA: offer no fault lane (as an older source) */
	bool no_resume; /* offer no FEAT_RESUME (as an older source) */
	/*
	 * Whom destination agents are asked to start a worker for at the
	 * reservation (FEAT_EARLY, design.md §10.3): a lazy dump's migrations
	 * (the default), every migration (--early), or none, FEAT_EARLY not
	 * offered either (--no-early, as an older source).
	 */
	enum src_early { SRC_EARLY_LAZY, SRC_EARLY_ALL, SRC_EARLY_NONE } early;
	/* A dump whose request says no "lazy_dump" is plain (design.md §11, "The default"). */
	bool no_lazy_dump;
	/*
	 * RDMA: the parameters of the resumed connections made by hand when
	 * the TCP side listener is up (FEAT_RC_SIDE offered); NULL: not.
	 */
	const struct xport_params *rc_side;
	bool exit_when_done; /* stop once every migration is done */
	unsigned int handshake_timeout_s;
	unsigned int dead_after_s;
	/* Connections that have not proven a secret yet: in all, and per address. */
	unsigned int max_preauth;
	unsigned int max_preauth_per_addr;
	/*
	 * session.c: the last refusal logged and the refusals since, for the
	 * global cap [0] and the per-address one [1]: at most a line a second
	 * each, so a flood from one address never hides that the cap of all
	 * was reached.
	 */
	uint64_t preauth_log_ns[2];
	unsigned int preauth_refused[2];
	/* GET /metrics: connections refused at those limits, and wrong proofs (session.c). */
	uint64_t peers_refused_total;
	uint64_t peers_unauthenticated_total;
	/*
	 * Migrations kept: past it the final one that finished first is
	 * forgotten, and a start with this many not final is refused.
	 */
	unsigned int max_migrations;
	/*
	 * criu dumps and pre-dumps run at once at most; more wait queued
	 * before their freeze (api_glue.c): concurrent freezes share the CPU
	 * and criu gives up freezing a tree after its own --timeout.
	 */
	unsigned int max_dumps;
	/*
	 * Pre-copy: how long a final dump waits, unfrozen, for the held
	 * destination to finish copying the rounds (FEAT_ROUNDS), in ms; -1:
	 * as long as the workload takes to dirty a tenth of its memory more
	 * (api_glue.c, glue_rounds_wait_max()).
	 */
	int rounds_wait_ms;
	/*
	 * The queue's tick (api_glue.c): asks for the queued migrations'
	 * reservations again and starts their dumps; owned, NULL before the
	 * first queued migration.
	 */
	struct event *queue_tick;
	/* The agent's migrations: the list owns them (migration.h); main.c destroys them. */
	struct src_mig_list migrations;
	/*
	 * Migrations of a pid whose destination agent is asked for a
	 * reservation before the freeze: not listed, nothing dumped yet,
	 * their start request still unanswered (api_glue.c, which owns them).
	 */
	struct src_mig_list reserving;
	/* The connections from destinations, owned by session.c (src_session_close_all()). */
	LIST_HEAD(, src_session) sessions;
	struct api_server *api;	 /* api_glue.c's, owned (src_api_stop()); NULL: no API */
	const char *images_root; /* where the agent's dumps go: <root>/<id>; borrowed (argv) */
	/* With the API: images_root opened and resolved at start (trusted), owned. */
	int images_root_fd;
	char images_root_real[4096];
	/* With the API: the migrations' records below the images root (records.h), owned. */
	struct src_records *records;
	/* With the API: the `criu check` made at start (criucheck.h), owned; or NULL. */
	struct criucheck *criu_check;
	const char *criu;      /* the criu binary (PATH searched without a '/'); borrowed */
	const char *runc;      /* the runc binary, for containers (likewise) */
	char endpoint[300];    /* "host:port" destinations connect to */
	int port;	       /* the data listener's port */
	char listen_host[256]; /* its address as given ("0.0.0.0": any) */
	/* --runtime-root: the runc roots a request's container.root may be in. */
	struct src_runc_roots runc_roots;
	/* Name lookups of the handovers without blocking; made on first use, owned. */
	struct evdns_base *dns;
	/* Maps API migrations' images off the loop; made on first use, owned. */
	struct offload *offload;
	unsigned int map_delay_ms; /* testing: each map job waits this long first */
	/* Testing: a lazy dump's staging area registration ahead waits this long first. */
	unsigned int prereg_delay_ms;
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
#define SRC_MAX_DUMPS_DEFAULT		 2

#endif
