/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * netsrc: the destination's side of one migration's connection to
 * rdmig-source, and the page source (pagesrc.h) that fetches over it.
 *
 * It connects, proves knowledge of the per-migration secret and checks the
 * source's proof (docs/protocol.md), then receives the image files into
 * the images directory (lazy parts of the pages files stay holes, so the
 * offsets CRIU computes stay right), the per-task range tables with their
 * checksums, and optionally per-page checksums.  Once the images are
 * complete it reports images_ready; the owner then opens the images,
 * checks them against the tables (netsrc_check_images), and builds the
 * fault engine on netsrc_pagesrc():
 *  - over RDMA, a fetch is one one-sided READ from (remote_addr, rkey) of
 *    the range into the registered staging slot; the source CPU is idle.
 *    With FEAT_FAULT_LANE negotiated, fault requests go on a second queue
 *    pair (the fault lane) with its own completion queue, so they never
 *    wait behind the drain's READs; until the source has answered, and
 *    with an older source, they share the first;
 *  - over TCP, a fetch is a ReadReq answered by a ReadResp.
 * With verification negotiated, every page is checked against the source's
 * XXH3 before it may be installed.
 *
 * Ownership: the owner frees the netsrc with netsrc_free() after
 * destroying the pagesrc it handed out.  Callbacks run on the loop.
 */
#ifndef RDMIG_NETSRC_H
#define RDMIG_NETSRC_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "image.h"
#include "pagesrc.h"
#include "staging.h"
#include "xport.h"

struct netsrc;

struct netsrc_config {
	enum xport_kind kind;
	const char *host;
	const char *port;
	const char *migration_id;
	const struct auth_secret *secret; /* borrowed */
	const char *images_dir;
	bool verify;			/* require per-page checksums */
	unsigned int connect_timeout_s; /* connection + handshake + retries */
	unsigned int dead_after_s;	/* silence before the source counts as lost */
	uint32_t max_reads;		/* RDMA READs / TCP reads in flight */
	/* TCP inside TLS (xport_params.tls): the client context, borrowed. */
	struct ssl_ctx_st *tls;
	bool one_lane; /* RDMA: ask for no fault lane (as an older dest) */
	/*
	 * RDMA: queue pairs for the drain's READs, the first one included
	 * (1..CTRL_DRAIN_QPS_MAX; 0 counts as 1); more than one only with a
	 * source that offers FEAT_DRAIN_QPS.
	 */
	unsigned int drain_qps;
	/*
	 * Post-copy (netsrc_set_postcopy()) with a source that offers
	 * FEAT_RESUME: how long a pause may last before pause_expired
	 * (seconds, 0: forever).
	 */
	unsigned int pause_limit_s;
	/*
	 * A worker taking over from one that died (design.md §10.2): the
	 * workload runs here already.  The netsrc starts paused ("taking
	 * over"), attaches with resume (the source sees a destination back
	 * from a pause), takes the range tables fresh and no image file (the
	 * images are in images_dir already); images_ready then means the
	 * tables are here.  With verify its Attach asks for the page tags
	 * again (page_hashes); a source that sends none leaves a request
	 * covering a whole range checked against its XXH3 and a part of one
	 * counted unverified.
	 */
	bool takeover;
	/*
	 * A worker started at its reservation (design.md §10.3): Hello offers
	 * FEAT_EARLY.  A source that does not offer it (an older one, which
	 * would refuse a migration still being dumped) is left before the
	 * proof, and connected to again at netsrc_release().
	 */
	bool early;
};

/* READs outstanding on the fault lane; beyond cfg.max_reads. */
#define NETSRC_LANE_DEPTH 32

struct netsrc_stats {
	uint64_t files;
	uint64_t file_bytes;
	uint64_t regions;
	uint64_t tables;
	uint64_t ranges;
	uint64_t lazy_bytes;
	uint64_t reads;
	uint64_t read_bytes;
	uint64_t pages_verified;
	uint64_t verify_failures;
	bool fault_lane;	/* the fault lane is up */
	unsigned int drain_qps; /* the most QPs the drain's READs spread over (1 over TCP) */
	uint64_t lane_reads;	/* of reads: fault READs that went on the fault lane */
	uint64_t lane_read_bytes;
	/* FEAT_LAZY_DUMP: units announced, StageReqs sent, units checked by XXH3, parts read */
	uint64_t units_staged;
	uint64_t stage_reqs;
	uint64_t units_verified;
	uint64_t unit_parts_unverified;
	/*
	 * FEAT_ROUNDS: bytes and regions of the pre-copy rounds copied before
	 * the freeze (kept: verified), the final regions served from them, and
	 * the requests and bytes read from them instead of the network.
	 */
	uint64_t round_bytes;
	uint64_t round_regions;
	uint64_t round_regions_used;
	uint64_t local_reads;
	uint64_t local_bytes;
	uint32_t pauses;    /* post-copy pauses (FEAT_RESUME) */
	uint64_t paused_ns; /* in all, the current one included */
};

struct netsrc_ops {
	/* Every image file is written and the tables are complete. */
	void (*images_ready)(void *arg);
	/*
	 * The migration cannot go on: before images_ready this is fatal; after
	 * it, the page source has also been reported gone.
	 */
	void (*failed)(void *arg, int err, const char *reason);
	/* The source answered Done: ok means it released the checkpoint. */
	void (*done_acked)(void *arg, bool ok, const char *reason);
	/*
	 * Optional: the fault lane is up.  It may come before or after
	 * images_ready (the source answers once its image stream is out).
	 */
	void (*lane_up)(void *arg);
	/*
	 * Optional, post-copy with FEAT_RESUME only: the source is lost
	 * (reason) and the netsrc reconnects with backoff.  Requests stay
	 * accepted and unanswered, so faulting threads wait; they are issued
	 * again once resumed() is called.
	 */
	void (*paused)(void *arg, const char *reason);
	void (*resumed)(void *arg);
	/*
	 * Paused for longer than cfg.pause_limit_s: the netsrc stops trying
	 * and never completes the requests it holds (the processes waiting on
	 * them must be stopped, not fed zeros).  Without the callback it
	 * fails instead (failed()).
	 */
	void (*pause_expired)(void *arg, const char *reason);
};

int netsrc_connect(struct event_base *base, const struct netsrc_config *cfg,
		   const struct netsrc_ops *ops, void *arg, struct netsrc **out);
void netsrc_free(struct netsrc *ns);
/*
 * cfg.early: the handover's POST adopted this worker, so the checkpoint
 * exists; a netsrc waiting for it (its source lacks FEAT_EARLY) connects
 * now.  Nothing otherwise.
 */
void netsrc_release(struct netsrc *ns);
/* cfg.early and waiting for netsrc_release(): not connected on purpose. */
bool netsrc_held(const struct netsrc *ns);

/*
 * Refuses images whose lazy ranges differ from the tables the source sent:
 * a page the source never offered must not be fetched, and one it offered
 * must not be zero-filled.
 */
int netsrc_check_images(struct netsrc *ns, const struct img_set *imgs);

/* A page source over this connection; the staging region is registered for RDMA. */
int netsrc_pagesrc(struct netsrc *ns, struct staging *st, struct pagesrc **out);

/* Progress for the source's log; best effort. */
void netsrc_send_progress(struct netsrc *ns, uint64_t pages, uint64_t bytes, uint64_t faults);
/* Every page is installed: tell the source, which then releases the checkpoint. */
int netsrc_send_done(struct netsrc *ns, uint64_t pages, uint64_t bytes);
/* Best-effort Abort with a reason. */
void netsrc_abort(struct netsrc *ns, uint32_t code, const char *reason);

void netsrc_get_stats(const struct netsrc *ns, struct netsrc_stats *out);
/*
 * FEAT_LAZY_DUMP is common: the source's tables are staging units, the
 * images' lazy ranges cut the same way (image_set_cut_lazy()) before
 * netsrc_check_images().  Valid once the handshake is done.
 */
bool netsrc_lazy_dump(const struct netsrc *ns);

/*
 * The workload runs on the destination: from now on a lost or silent
 * source pauses the migration (with a source that offers FEAT_RESUME)
 * instead of failing it.
 */
void netsrc_set_postcopy(struct netsrc *ns);
/* Paused now (waiting to resume): the reason, else NULL. */
const char *netsrc_pause_reason(const struct netsrc *ns);
const char *netsrc_name(const struct netsrc *ns);

#endif
