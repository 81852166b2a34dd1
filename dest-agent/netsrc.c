// SPDX-License-Identifier: GPL-2.0-or-later
#include "netsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <xxhash.h>

#include "connhint.h"
#include "ctrl.h"
#include "ctrlconn.h"
#include "log.h"
#include "rcqp.h"
#include "roundcopy.h"
#include "safepath.h"
#include "tickclock.h"
#include "rdmig-config.h"
#include "util.h"

/* Reconnecting after a pause: the first try at once, then doubling up to this. */
#define PAUSE_BACKOFF_FIRST_MS 250
#define PAUSE_BACKOFF_MAX_MS   4000
/*
 * An attempt is given at least this long: after a link comes back the
 * rdma_cm handshake can wait for a retransmission (seen with rxe).
 */
#define PAUSE_ATTEMPT_MIN_S 20

struct ns_range {
	uint64_t img_vaddr;
	uint64_t len;
	uint64_t raddr;
	uint32_t rkey;
	uint64_t xxh3;
	uint64_t *hashes;   /* per page, with VERIFY_PAGES */
	uint8_t *have_hash; /* per page */
	uint64_t nr_hashes;
	uint64_t verified_bytes;
	/*
	 * FEAT_LAZY_DUMP: a unit, readable once its StageRegion came on this
	 * connection (a resumed one announces every unit again, new rkey).
	 */
	bool staged;
	bool stage_asked; /* our StageReq went out on this connection (at most one) */
	bool announced;	  /* a StageRegion came on any connection: xxh3 is its */
};

struct ns_task {
	int32_t pid;
	struct ns_range *ranges;
	size_t nr;
	size_t cap;
	bool complete;
	size_t resume_next; /* resuming: the next range the source's table must repeat */
};

TAILQ_HEAD(ns_reqs, pagesrc_req);

/*
 * TCP: the fault connection (FEAT_FAULT_CONN), a data channel with its own
 * handshake and keys, so a fault's ReadResp never waits behind the drain's
 * megabytes on the control stream.  The cookies of its requests carry
 * NS_FC_COOKIE, so an answer on the wrong connection is refused.
 */
struct ns_fconn {
	struct xport *x;
	struct ctrl_state st;
	uint8_t nonce[AUTH_NONCE_LEN];
	bool up; /* authenticated both ways: faults go here */
	uint64_t last_rx_ns;
	uint64_t ka_seq;
	char name[192];
};

#define NS_FC_COOKIE ((uintptr_t)1 << (sizeof(uintptr_t) * 8 - 1))

struct netsrc {
	struct event_base *base;
	struct netsrc_config cfg;
	char *host, *port, *id, *dir;
	const struct netsrc_ops *ops;
	void *arg;

	struct xport *x;
	struct ctrl_state st;
	uint8_t nonce[AUTH_NONCE_LEN];
	char name[160];
	struct ctrlconn_tick *tick;
	struct event *retry;
	uint64_t start_ns;
	uint64_t last_rx_ns;
	uint64_t ka_seq;
	bool established;
	bool images_ready;
	bool failed;
	bool finished;		    /* the source acknowledged Done */
	bool verify;		    /* negotiated */
	struct msgauth_pages pages; /* keyed with the migration's page key when cfg.verify */

	int file_fd;
	int dir_fd; /* the images directory: received files are created beneath it */
	char file_path[4096];

	struct ns_task *tasks;
	size_t nr_tasks;
	uint64_t digest;

	struct pagesrc *src;
	struct staging *staging;
	struct ibv_mr *staging_mr;
	struct ns_reqs pending;
	/*
	 * FEAT_LAZY_DUMP: requests on units not staged yet, accepted and held
	 * until their StageRegion; drain ones count against max_reads.
	 */
	struct ns_reqs parked;
	uint32_t parked_drain;
	bool lazy_dump;		/* negotiated */
	uint32_t inflight;	/* all requests the source holds */
	uint32_t lane_inflight; /* of them, READs on the fault lane */
	uint64_t next_cookie;
	struct ns_fconn fc;
	/*
	 * RDMA with FEAT_RC_SIDE: a reconnection's TCP side channel, which
	 * sets up the new queue pair by hand (protocol.md §7.4); only while
	 * an attempt runs.
	 */
	struct ns_fconn side;
	bool peer_rc_side; /* the source offered FEAT_RC_SIDE on the first connection */

	struct netsrc_stats stats;

	/* Pause and resume (FEAT_RESUME, post-copy only). */
	bool postcopy;	  /* the owner said the workload runs here */
	bool peer_resume; /* the source offered FEAT_RESUME on the first connection */
	bool paused;	  /* no usable connection: requests wait */
	bool expired;	  /* paused past cfg.pause_limit_s: given up, requests held */
	uint64_t pause_ns;
	uint64_t attempt_ns; /* the current reconnection attempt began */
	unsigned int backoff_ms;
	char pause_reason[192];
	bool done_pending;  /* the engine finished while paused: Done goes out on resume */
	bool done_sent;	    /* Done went out: every page is in, DoneAck awaited */
	bool takeover_wait; /* cfg.takeover: the tables are still to come, fresh */
	bool held;	    /* cfg.early, a source without FEAT_EARLY: waiting for release */
	bool released;	    /* cfg.early: netsrc_release() came, the checkpoint exists */
	struct ctrl_done done;
	/*
	 * FEAT_ROUNDS: the pre-copy rounds copied ahead on the held session
	 * (roundcopy.h), made at the first RoundPages; requests inside an
	 * adopted copy are read from it and completed from local_ev.
	 */
	struct roundcopy *rounds;
	bool rounds_stopped;	  /* the checkpoint's images began: no more copying */
	uint32_t rounds_reported; /* the last round a RoundsCopied told the source of */
	uint32_t rounds_seen;	  /* the last round a RoundPages announced */
	struct ns_reqs local;
	struct event *local_ev;
};

static void ns_connect_now(struct netsrc *ns);
static void ns_fc_close(struct netsrc *ns);
static void ns_side_close(struct netsrc *ns);

/*
 * Closing disconnects the queue pair at once, so no READ lands in staging
 * afterwards; only then may the staging region leave the endpoint's PD.
 */
static void ns_close_xport(struct netsrc *ns)
{
	if (ns->x) {
		xport_close(ns->x);
		ns->x = NULL;
	}
	/* Its READs are gone with the QP; a new connection's MemRegions adopt again. */
	if (ns->rounds) {
		roundcopy_stop(ns->rounds, true);
		roundcopy_unadopt_all(ns->rounds);
	}
	if (ns->staging_mr) {
		ibv_dereg_mr(ns->staging_mr);
		ns->staging_mr = NULL;
	}
}

const char *netsrc_name(const struct netsrc *ns)
{
	return ns->name;
}

void netsrc_get_stats(const struct netsrc *ns, struct netsrc_stats *out)
{
	struct roundcopy_stats rs = {0};

	*out = ns->stats;
	if (ns->paused)
		out->paused_ns += now_ns() - ns->pause_ns;
	if (ns->rounds)
		roundcopy_get_stats(ns->rounds, &rs);
	out->round_bytes = rs.bytes_copied;
	out->round_regions = rs.regions_kept;
	out->round_regions_used = rs.regions_used;
}

bool netsrc_lazy_dump(const struct netsrc *ns)
{
	return ns->lazy_dump;
}

static struct ns_task *ns_task_find(struct netsrc *ns, int32_t pid)
{
	size_t i;

	for (i = 0; i < ns->nr_tasks; i++)
		if (ns->tasks[i].pid == pid)
			return &ns->tasks[i];
	return NULL;
}

/* The range of pid holding [img_vaddr, img_vaddr + len), or NULL. */
static struct ns_range *ns_range_find(struct netsrc *ns, int32_t pid, uint64_t img_vaddr,
				      uint64_t len)
{
	struct ns_task *t = ns_task_find(ns, pid);
	size_t lo = 0, hi;

	if (!t)
		return NULL;
	hi = t->nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->ranges[mid].img_vaddr <= img_vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	if (img_vaddr + len > t->ranges[lo - 1].img_vaddr + t->ranges[lo - 1].len)
		return NULL;
	return &t->ranges[lo - 1];
}

static void ns_file_close(struct netsrc *ns)
{
	if (ns->file_fd >= 0)
		close(ns->file_fd);
	ns->file_fd = -1;
}

static int ns_send_on(struct xport *x, struct ctrl_state *st, const char *name, struct ctrl_out *o)
{
	return ctrlconn_send(x, st, name, o);
}

static int ns_send(struct netsrc *ns, struct ctrl_out *o)
{
	return ns_send_on(ns->x, &ns->st, ns->name, o);
}

static int ns_fc_send(struct netsrc *ns, struct ctrl_out *o)
{
	return ns_send_on(ns->fc.x, &ns->fc.st, ns->fc.name, o);
}

/* The request went on the fault lane (RDMA) or the fault connection (TCP). */
static bool ns_req_lane(const struct netsrc *ns, const struct pagesrc_req *req)
{
	if (ns->cfg.kind == XPORT_RDMA)
		return req->src_priv != NULL;
	return (uintptr_t)req->src_priv & NS_FC_COOKIE;
}

/* Completes every request the source still holds, with err. */
static void ns_flush_requests(struct netsrc *ns, int err)
{
	struct pagesrc_req *req;

	while ((req = TAILQ_FIRST(&ns->pending)) != NULL) {
		TAILQ_REMOVE(&ns->pending, req, src_link);
		ns->inflight--;
		if (ns_req_lane(ns, req))
			ns->lane_inflight--;
		pagesrc_complete(req, err);
	}
	while ((req = TAILQ_FIRST(&ns->parked)) != NULL) {
		TAILQ_REMOVE(&ns->parked, req, src_link);
		if (req->prio != PAGESRC_PRIO_FAULT)
			ns->parked_drain--;
		pagesrc_complete(req, err);
	}
	/* Read from a round's copy already: the bytes are in, the request is good. */
	while ((req = TAILQ_FIRST(&ns->local)) != NULL) {
		TAILQ_REMOVE(&ns->local, req, src_link);
		pagesrc_complete(req, 0);
	}
}

/* The connection is over for good: tell the owner once, fail what is in flight. */
static void ns_fail(struct netsrc *ns, int err, const char *reason)
{
	if (ns->failed)
		return;
	ns->failed = true;
	log_err("%s: %s", ns->name, reason);
	if (!ns->images_ready)
		log_info("%s: received %" PRIu64 " memory regions and %" PRIu64
			 " range tables before the failure",
			 ns->name, ns->stats.regions, ns->stats.tables);
	ns_fc_close(ns);
	ns_close_xport(ns);
	ns_file_close(ns);
	if (ns->src)
		pagesrc_report_gone(ns->src, err, reason);
	ns_flush_requests(ns, err);
	if (ns->ops->failed)
		ns->ops->failed(ns->arg, err, reason);
}

static void ns_abort(struct netsrc *ns, uint32_t code, const char *reason)
{
	ctrlconn_send_abort(ns->x, &ns->st, ns->name, code, reason);
	ns_fail(ns, -ECONNABORTED, reason);
}

void netsrc_abort(struct netsrc *ns, uint32_t code, const char *reason)
{
	ns_abort(ns, code, reason);
}

/* ---- pause and resume ---- */

static bool ns_may_pause(const struct netsrc *ns)
{
	return ns->postcopy && ns->peer_resume && !ns->failed && !ns->finished && !ns->expired;
}

static void ns_retry_later(struct netsrc *ns)
{
	struct timeval tv;

	tv.tv_sec = ns->backoff_ms / 1000;
	tv.tv_usec = (ns->backoff_ms % 1000) * 1000;
	event_add(ns->retry, &tv);
	ns->backoff_ms = ns->backoff_ms ? ns->backoff_ms * 2 : PAUSE_BACKOFF_FIRST_MS;
	if (ns->backoff_ms > PAUSE_BACKOFF_MAX_MS)
		ns->backoff_ms = PAUSE_BACKOFF_MAX_MS;
}

/*
 * The connection is gone but the workload runs here: keep every request
 * (none is completed, so the faulting threads wait in the kernel), drop
 * the connection and try again later.  Also ends a failed reconnection
 * attempt.
 */
static void ns_pause(struct netsrc *ns, const char *reason)
{
	struct pagesrc_req *req;

	/* The fault connection dies with its control connection; remade on resume. */
	ns_fc_close(ns);
	ns_side_close(ns);
	ns_close_xport(ns);
	ns_file_close(ns);
	/*
	 * Issued again on resume, all on the first queue pair or the control
	 * connection of the new connection.
	 */
	TAILQ_FOREACH(req, &ns->pending, src_link)
	req->src_priv = NULL;
	ns->lane_inflight = 0;
	ns->stats.fault_lane = false;
	/*
	 * Done may have been lost with the connection: said again on resume.
	 * A source that had it answers our Attach with the DoneAck we missed.
	 */
	if (ns->done_sent)
		ns->done_pending = true;
	if (ns->paused) {
		log_info("%s: reconnection attempt failed: %s", ns->name, reason);
		ns_retry_later(ns);
		return;
	}
	ns->paused = true;
	ns->pause_ns = now_ns();
	ns->backoff_ms = 0;
	ns->stats.pauses++;
	snprintf(ns->pause_reason, sizeof(ns->pause_reason), "%s", reason);
	log_warn("%s: %s: migration paused with %" PRIu32
		 " request(s) outstanding; faulting threads wait; reconnecting",
		 ns->name, reason, ns->inflight);
	if (ns->ops->paused)
		ns->ops->paused(ns->arg, reason);
	ns_retry_later(ns);
}

/* The connection failed: a pause when the migration can resume, else the end. */
static void ns_lost(struct netsrc *ns, int err, const char *reason)
{
	if (ns->paused || ns_may_pause(ns))
		ns_pause(ns, reason);
	else
		ns_fail(ns, err, reason);
}

/* Paused past the limit: stop trying; the requests stay unanswered. */
static void ns_expire(struct netsrc *ns)
{
	char why[320];

	snprintf(why, sizeof(why), "paused for more than %u s (--pause-limit): %s",
		 ns->cfg.pause_limit_s, ns->pause_reason);
	ns->expired = true;
	event_del(ns->retry);
	ns_side_close(ns);
	ns_close_xport(ns);
	log_err("%s: %s; giving up, the checkpoint stays on the source", ns->name, why);
	if (ns->ops->pause_expired)
		ns->ops->pause_expired(ns->arg, why);
	else
		ns_fail(ns, -ETIMEDOUT, why);
}

void netsrc_set_postcopy(struct netsrc *ns)
{
	struct ctrl_out o;

	ns->postcopy = true;
	/* Lost before it arrives, the source is still resumed by our Attach. */
	if (ns->x && ctrl_state_may_send(&ns->st, RDMIG_MSG__BODY_RUNNING) == 0 &&
	    ctrl_msg_running(&o) == 0)
		ns_send(ns, &o);
	if (!ns->peer_resume)
		log_info("%s: the source does not offer resume: a lost source fails the migration",
			 ns->name);
}

const char *netsrc_pause_reason(const struct netsrc *ns)
{
	return ns->paused && !ns->expired ? ns->pause_reason : NULL;
}

/* ---- handshake ---- */

/* Hello on the control connection, or on the fault connection (a data channel). */
static int ns_send_hello(struct netsrc *ns, struct xport *x, struct ctrl_state *st,
			 const char *name, uint8_t *nonce, enum ctrl_channel channel)
{
	struct ctrl_hello h = {
	    .role = CTRL_ROLE_DEST,
	    .channel = channel,
	    .page_size = IMG_PAGE_SIZE,
	    .migration_id = ns->id,
	    .nonce = nonce,
	    .agent_version = "rdmig-dest " RDMIG_VERSION,
	};
	struct ctrl_out o;
	int ret;

	h.features = ns->cfg.kind == XPORT_RDMA ? CTRL_FEAT_RDMA_READ : CTRL_FEAT_TCP_READ;
	if (channel == CTRL_CHANNEL_CONTROL && !ns->cfg.one_lane)
		h.features |=
		    ns->cfg.kind == XPORT_RDMA ? CTRL_FEAT_FAULT_LANE : CTRL_FEAT_FAULT_CONN;
	if (channel == CTRL_CHANNEL_CONTROL && ns->cfg.verify)
		h.features |= CTRL_FEAT_VERIFY_PAGES;
	/*
	 * A lazy-dump source stages its ranges during post-copy (protocol.md
	 * §11.2); a resuming one survives a lost connection (§7.2).
	 */
	if (channel == CTRL_CHANNEL_CONTROL)
		h.features |= CTRL_FEAT_LAZY_DUMP | CTRL_FEAT_RESUME | CTRL_FEAT_LATE_REGIONS;
	if (channel == CTRL_CHANNEL_CONTROL && ns->cfg.early)
		h.features |= CTRL_FEAT_EARLY;
	/* Held early over RDMA, the pre-copy rounds can be copied before the freeze. */
	if (channel == CTRL_CHANNEL_CONTROL && ns->cfg.early && ns->cfg.kind == XPORT_RDMA)
		h.features |= CTRL_FEAT_ROUNDS;
	/* Over RDMA a resume makes its queue pair by hand, set up on a side channel (§7.4). */
	if (ns->cfg.kind == XPORT_RDMA && channel != CTRL_CHANNEL_DATA)
		h.features |= CTRL_FEAT_RC_SIDE | CTRL_FEAT_RESUME;
	if (ns->cfg.kind == XPORT_RDMA && channel != CTRL_CHANNEL_DATA && ns->cfg.drain_qps > 1)
		h.features |= CTRL_FEAT_DRAIN_QPS;
	ret = auth_nonce(nonce);
	if (ret == 0)
		ret = ctrl_msg_hello(&o, &h);
	return ret < 0 ? ret : ns_send_on(x, st, name, &o);
}

/* The destination proves first (protocol.md §6), on either connection. */
static int ns_send_proof(struct netsrc *ns, struct xport *x, struct ctrl_state *st,
			 const char *name)
{
	uint8_t proof[AUTH_PROOF_LEN];
	struct auth_transcript t;
	struct ctrl_out o;
	int ret;

	ret = ctrl_state_transcript(st, &t);
	if (ret == 0)
		ret = auth_proof_compute(ns->cfg.secret, AUTH_ROLE_DEST, &t, proof);
	if (ret == 0)
		ret = ctrl_msg_auth_proof(&o, proof);
	/* The message borrows proof: it goes out before the stack frame does. */
	return ret < 0 ? ret : ns_send_on(x, st, name, &o);
}

/*
 * Checks the source's proof on either connection; right, the connection is
 * trusted, keyed and confirmed.  -EACCES: wrong (refused to the peer).
 */
static int ns_check_proof(struct netsrc *ns, struct xport *x, struct ctrl_state *st,
			  const char *name, const AuthProof *p)
{
	struct auth_transcript t;
	struct ctrl_out o;
	int ret;

	if (ctrl_state_transcript(st, &t) < 0 ||
	    auth_proof_verify(ns->cfg.secret, AUTH_ROLE_SOURCE, &t, p->hmac.data, p->hmac.len) <
		0) {
		if (ctrl_msg_auth_result(&o, false, "authentication failed") == 0)
			ns_send_on(x, st, name, &o);
		return -EACCES;
	}
	ret = xport_set_trusted(x);
	if (ret < 0)
		return ret;
	ctrl_state_set_peer_verified(st);
	ret = ctrl_state_derive_keys(st, ns->cfg.secret);
	if (ret == 0)
		ret = ctrl_msg_auth_result(&o, true, NULL);
	return ret < 0 ? ret : ns_send_on(x, st, name, &o);
}

static void ns_established(struct xport *x, void *arg)
{
	struct netsrc *ns = arg;

	ns->established = true;
	ns->last_rx_ns = now_ns();
	snprintf(ns->name, sizeof(ns->name), "migration %s, source %s", ns->id, xport_name(x));
	log_info("%s: connected over %s", ns->name, xport_kind_str(ns->cfg.kind));
	if (ns_send_hello(ns, ns->x, &ns->st, ns->name, ns->nonce, CTRL_CHANNEL_CONTROL) < 0)
		ns_lost(ns, -EIO, "cannot send Hello");
}

static void on_hello(struct netsrc *ns)
{
	const struct ctrl_negotiated *neg = ctrl_state_negotiated(&ns->st);
	uint64_t want = ns->cfg.kind == XPORT_RDMA ? CTRL_FEAT_RDMA_READ : CTRL_FEAT_TCP_READ;

	if (!(neg->features & want)) {
		ns_abort(ns, CTRL_ABORT_FEATURES,
			 "the source does not serve pages over this transport");
		return;
	}
	if (!ns->paused) {
		ns->peer_resume = neg->features & CTRL_FEAT_RESUME;
		ns->peer_rc_side = neg->features & CTRL_FEAT_RC_SIDE;
	} else if (!(neg->features & CTRL_FEAT_RESUME)) {
		ns_abort(ns, CTRL_ABORT_FEATURES,
			 "the source came back without resume (FEAT_RESUME): it cannot serve a "
			 "paused migration");
		return;
	}
	/*
	 * Our proof would only be refused while the checkpoint is being made
	 * ("still being dumped"): leave before it and come back when released.
	 */
	if (ns->cfg.early && !ns->released && !(neg->features & CTRL_FEAT_EARLY)) {
		log_info("%s: the source holds no early connection (no FEAT_EARLY): connecting "
			 "again when the handover's POST comes",
			 ns->name);
		ns_close_xport(ns);
		ns->held = true;
		return;
	}
	ns->verify = neg->features & CTRL_FEAT_VERIFY_PAGES;
	ns->lazy_dump = neg->features & CTRL_FEAT_LAZY_DUMP;
	if (ns->cfg.verify && !ns->verify) {
		ns_abort(ns, CTRL_ABORT_FEATURES,
			 "verification asked for but the source offers no page checksums "
			 "(rdmig-source --verify)");
		return;
	}
	if (ns_send_proof(ns, ns->x, &ns->st, ns->name) < 0)
		ns_lost(ns, -EIO, "cannot send the authentication proof");
}

/*
 * Offers our fault lane's QP, now that the channel is sealed.  Failing
 * here is not fatal: the faults then share the first queue pair.
 */
static void ns_offer_lane(struct netsrc *ns)
{
	uint32_t qpn, psn;
	struct ctrl_out o;
	int ret;

	if (!(ctrl_state_negotiated(&ns->st)->features & CTRL_FEAT_FAULT_LANE))
		return;
	ret = xport_lane_create(ns->x, NETSRC_LANE_DEPTH, &qpn, &psn);
	if (ret < 0) {
		log_warn("%s: no fault lane (%s); faults share the first queue pair", ns->name,
			 strerror(-ret));
		return;
	}
	if (ctrl_msg_fault_lane(&o, qpn, psn) == 0)
		ns_send(ns, &o);
}

/*
 * Offers the drain's extra QPs (FEAT_DRAIN_QPS), each like the fault lane.
 * One that cannot be made or connected leaves the drain on the QPs it has.
 */
static void ns_offer_drain(struct netsrc *ns)
{
	_Static_assert(CTRL_DRAIN_QPS_MAX == RDMA_DRAIN_QPS_MAX, "one limit");
	uint32_t qpn, psn;
	struct ctrl_out o;
	int ret;

	if (!(ctrl_state_negotiated(&ns->st)->features & CTRL_FEAT_DRAIN_QPS)) {
		if (ns->cfg.drain_qps > 1 && ns->cfg.kind == XPORT_RDMA)
			log_info("%s: the source offers no extra drain QPs (FEAT_DRAIN_QPS): the "
				 "drain uses one",
				 ns->name);
		return;
	}
	for (unsigned int i = 1; i < ns->cfg.drain_qps && i < CTRL_DRAIN_QPS_MAX; i++) {
		ret = xport_drain_create(ns->x, i, &qpn, &psn);
		if (ret < 0) {
			log_warn("%s: no drain QP %u (%s)", ns->name, i, strerror(-ret));
			return;
		}
		if (ctrl_msg_drain_lane(&o, i, qpn, psn) == 0)
			ns_send(ns, &o);
	}
}

static void on_drain_lane(struct netsrc *ns, const DrainLane *dl)
{
	int ret;

	if (ns->st.phase == CTRL_PH_DONE)
		return;
	ret = xport_drain_connect(ns->x, dl->index, dl->qpn, dl->psn);
	if (ret < 0) {
		log_warn("%s: cannot connect drain QP %" PRIu32 " (%s)", ns->name, dl->index,
			 strerror(-ret));
		return;
	}
	ns->stats.drain_qps = xport_drain_qps(ns->x);
	log_info("%s: the drain over %u queue pairs", ns->name, ns->stats.drain_qps);
}

static void on_fault_lane(struct netsrc *ns, const FaultLane *fl)
{
	int ret;

	/* Every page was in before the source's answer came: no fault is left to carry. */
	if (ns->st.phase == CTRL_PH_DONE) {
		log_debug("%s: fault lane offered after Done; not connected", ns->name);
		return;
	}
	ret = xport_lane_connect(ns->x, fl->qpn, fl->psn);
	if (ret < 0) {
		log_warn("%s: cannot connect the fault lane (%s); faults share the first queue "
			 "pair",
			 ns->name, strerror(-ret));
		return;
	}
	ns->stats.fault_lane = true;
	log_info("%s: fault lane up", ns->name);
	if (ns->ops->lane_up)
		ns->ops->lane_up(ns->arg);
}

static void ns_fc_start(struct netsrc *ns);

/* Forgets every range table received (the page hashes with them). */
static void ns_tables_clear(struct netsrc *ns)
{
	for (size_t i = 0; i < ns->nr_tasks; i++) {
		for (size_t j = 0; j < ns->tasks[i].nr; j++) {
			free(ns->tasks[i].ranges[j].hashes);
			free(ns->tasks[i].ranges[j].have_hash);
		}
		free(ns->tasks[i].ranges);
	}
	free(ns->tasks);
	ns->tasks = NULL;
	ns->nr_tasks = 0;
	ns->digest = 0;
	ns->stats.tables = 0;
	ns->stats.ranges = 0;
	ns->stats.lazy_bytes = 0;
}

static void on_auth_proof(struct netsrc *ns, const AuthProof *p)
{
	int ret = ns_check_proof(ns, ns->x, &ns->st, ns->name, p);
	struct ctrl_out o;

	if (ret == -EACCES) {
		ns_fail(ns, -EACCES, "the source failed to prove it knows the migration's secret");
		return;
	}
	if (ret < 0) {
		ns_lost(ns, ret, "cannot confirm authentication");
		return;
	}
	/*
	 * FEAT_RESUME: the source streams nothing before it knows what we want.
	 * A worker taking over lost the page tags with the one that died.
	 */
	if ((ctrl_state_negotiated(&ns->st)->features & CTRL_FEAT_RESUME) &&
	    (ctrl_msg_attach(&o, ns->paused, ns->takeover_wait && ns->verify) < 0 ||
	     ns_send(ns, &o) < 0)) {
		ns_lost(ns, -EIO, "cannot send Attach");
		return;
	}
	if (ns->takeover_wait)
		ns_tables_clear(ns); /* a retry: the tables come again, whole */
	if (ns->paused) {
		for (size_t i = 0; i < ns->nr_tasks; i++)
			ns->tasks[i].resume_next = 0;
		log_info("%s: mutual authentication done; resuming", ns->name);
	} else {
		log_info("%s: mutual authentication done; receiving images into %s", ns->name,
			 ns->dir);
	}
	ns_offer_lane(ns);
	ns_offer_drain(ns);
	ns_fc_start(ns);
}

/* ---- images ---- */

static int on_image_file(struct netsrc *ns, const ImageFile *f)
{
	size_t off = 0;
	ssize_t n;
	int ret;

	if (ns->file_fd < 0) {
		snprintf(ns->file_path, sizeof(ns->file_path), "%s/%s", ns->dir, f->name);
		/* Never follow a link or replace an existing file: the name is the peer's. */
		ret = safepath_openat(ns->dir_fd, f->name, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (ret < 0) {
			log_err("%s: cannot create %s: %s%s", ns->name, ns->file_path,
				strerror(-ret),
				ret == -EEXIST ? " (the images directory must start empty)" : "");
			return ret;
		}
		ns->file_fd = ret;
		if (ftruncate(ns->file_fd, (off_t)f->total_size) < 0) {
			ret = -errno;
			log_err("%s: cannot size %s to %" PRIu64 " bytes: %s", ns->name,
				ns->file_path, f->total_size, strerror(errno));
			return ret;
		}
	}
	while (f->has_data && off < f->data.len) {
		n = pwrite(ns->file_fd, f->data.data + off, f->data.len - off,
			   (off_t)(f->offset + off));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			log_err("%s: cannot write %s at offset %" PRIu64 ": %s", ns->name,
				ns->file_path, f->offset + off, strerror(errno));
			return ret;
		}
		off += (size_t)n;
	}
	ns->stats.file_bytes += off;
	if (f->has_flags && (f->flags & CTRL_IMAGE_FILE_LAST)) {
		if (fsync(ns->file_fd) < 0) {
			ret = -errno;
			log_err("%s: cannot flush %s: %s", ns->name, ns->file_path,
				strerror(errno));
			return ret;
		}
		ns_file_close(ns);
		ns->stats.files++;
	}
	return 0;
}

static int on_task_table(struct netsrc *ns, const TaskTable *tt)
{
	struct ns_task *t = ns_task_find(ns, tt->pid);
	size_t i;

	if (!t) {
		struct ns_task *nt = realloc(ns->tasks, (ns->nr_tasks + 1) * sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		ns->tasks = nt;
		t = &ns->tasks[ns->nr_tasks++];
		memset(t, 0, sizeof(*t));
		t->pid = tt->pid;
	} else if (t->complete) {
		log_err("%s: a second range table for pid %d", ns->name, tt->pid);
		return -EPROTO;
	}
	if (t->nr + tt->n_ranges > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct ns_range *nr;

		while (cap < t->nr + tt->n_ranges)
			cap *= 2;
		nr = realloc(t->ranges, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		t->ranges = nr;
		t->cap = cap;
	}
	for (i = 0; i < tt->n_ranges; i++) {
		const LazyRange *lr = tt->ranges[i];
		struct ns_range *r = &t->ranges[t->nr++];

		memset(r, 0, sizeof(*r));
		r->img_vaddr = lr->img_vaddr;
		r->len = lr->len;
		r->raddr = lr->has_remote_addr ? lr->remote_addr : 0;
		r->rkey = lr->has_rkey ? lr->rkey : 0;
		r->xxh3 = lr->xxh3;
		r->staged = !ns->lazy_dump;
		ns->digest = ctrl_digest_add(ns->digest, lr->xxh3);
		ns->stats.ranges++;
		ns->stats.lazy_bytes += lr->len;
	}
	if (tt->has_flags && (tt->flags & CTRL_TASK_TABLE_LAST)) {
		t->complete = true;
		ns->stats.tables++;
	}
	return 0;
}

/*
 * Resuming: the source repeats its tables, exactly, with this connection's
 * remote addresses and rkeys over RDMA.
 */
static int on_task_table_resume(struct netsrc *ns, const TaskTable *tt)
{
	struct ns_task *t = ns_task_find(ns, tt->pid);
	size_t i;

	if (ns->takeover_wait)
		return on_task_table(ns, tt);
	if (!t || t->resume_next + tt->n_ranges > t->nr) {
		log_err("%s: resuming, the source sent a table for pid %d that differs", ns->name,
			tt->pid);
		return -EPROTO;
	}
	for (i = 0; i < tt->n_ranges; i++) {
		const LazyRange *lr = tt->ranges[i];
		struct ns_range *r = &t->ranges[t->resume_next++];

		/* A lazy dump's tables carry no checksum: its units' come with StageRegion. */
		if (r->img_vaddr != lr->img_vaddr || r->len != lr->len ||
		    (!ns->lazy_dump && r->xxh3 != lr->xxh3)) {
			log_err("%s: resuming, pid %d range 0x%" PRIx64 " differs from the one "
				"received before",
				ns->name, tt->pid, lr->img_vaddr);
			return -EPROTO;
		}
		r->raddr = lr->has_remote_addr ? lr->remote_addr : 0;
		r->rkey = lr->has_rkey ? lr->rkey : 0;
		/* Readable again once this connection announces it, and asked for again. */
		if (ns->lazy_dump) {
			r->staged = false;
			r->stage_asked = false;
		}
	}
	return 0;
}

static int on_page_hashes(struct netsrc *ns, const PageHashes *ph)
{
	size_t i;

	for (i = 0; i < ph->n_hashes; i++) {
		uint64_t va = ph->first_vaddr + (uint64_t)i * IMG_PAGE_SIZE;
		struct ns_range *r = ns_range_find(ns, ph->pid, va, IMG_PAGE_SIZE);
		uint64_t idx;

		if (!r) {
			log_err("%s: page hash for pid %d at 0x%" PRIx64 " outside its ranges",
				ns->name, ph->pid, va);
			return -ERANGE;
		}
		if (!r->hashes) {
			r->hashes = calloc(r->len / IMG_PAGE_SIZE, sizeof(*r->hashes));
			r->have_hash = calloc(r->len / IMG_PAGE_SIZE, 1);
			if (!r->hashes || !r->have_hash)
				return -ENOMEM;
		}
		idx = (va - r->img_vaddr) / IMG_PAGE_SIZE;
		if (!r->have_hash[idx])
			r->nr_hashes++;
		r->have_hash[idx] = 1;
		r->hashes[idx] = ph->hashes[i];
	}
	return 0;
}

static int ns_send_req(struct netsrc *ns, struct pagesrc_req *req, const struct ns_range *r,
		       bool lane);
static int ns_park_all(struct netsrc *ns);

/* Back after a pause: issues every request again, on the new connection. */
static void ns_resume(struct netsrc *ns)
{
	struct pagesrc_req *req;
	struct ctrl_out o;
	size_t i;
	int ret;

	for (i = 0; i < ns->nr_tasks; i++) {
		if (ns->tasks[i].resume_next != ns->tasks[i].nr) {
			ns_abort(ns, CTRL_ABORT_IMAGES, "resuming, a range table is incomplete");
			return;
		}
	}
	if (ns->cfg.kind == XPORT_RDMA && ns->staging && !ns->staging_mr) {
		ret = xport_reg(ns->x, staging_base(ns->staging), staging_len(ns->staging),
				IBV_ACCESS_LOCAL_WRITE, &ns->staging_mr);
		if (ret < 0) {
			ns_lost(ns, ret,
				"cannot register the staging region on the new connection");
			return;
		}
	}
	ns->paused = false;
	ns->stats.paused_ns += now_ns() - ns->pause_ns;
	log_info("%s: resumed after %.1f s paused; issuing %" PRIu32 " request(s) again", ns->name,
		 (double)(now_ns() - ns->pause_ns) / 1e9, ns->inflight);
	if (ns->lazy_dump) {
		ret = ns_park_all(ns);
		if (ret < 0) {
			ns_lost(ns, ret, "cannot ask for the units the requests wait for");
			return;
		}
	}
	TAILQ_FOREACH(req, &ns->pending, src_link)
	{
		const struct ns_range *r = ns_range_find(ns, req->pid, req->img_vaddr, req->len);

		ret = r ? ns_send_req(ns, req, r, false) : -ERANGE;
		if (ret < 0) {
			ns_lost(ns, ret, "cannot issue the requests again");
			return;
		}
	}
	if (ns->done_pending) {
		ns->done_pending = false;
		if (ctrl_msg_done(&o, &ns->done) < 0 || ns_send(ns, &o) < 0) {
			ns_lost(ns, -EIO, "cannot send Done");
			return;
		}
		ns->done_sent = true;
	}
	if (ns->ops->resumed)
		ns->ops->resumed(ns->arg);
}

static void on_images_done(struct netsrc *ns)
{
	char sz[32], lz[32];
	size_t i, j;

	if (ns->file_fd >= 0) {
		ns_abort(ns, CTRL_ABORT_IMAGES, "ImagesDone with a file still open");
		return;
	}
	if (ns->takeover_wait) {
		/* The tables came whole: they are what a resume compares against from now on. */
		for (i = 0; i < ns->nr_tasks; i++)
			ns->tasks[i].resume_next = ns->tasks[i].nr;
		ns->takeover_wait = false;
		ns->images_ready = true;
		log_info("%s: taking over: %" PRIu64 " range tables, %s lazy", ns->name,
			 ns->stats.tables, fmt_bytes(ns->stats.lazy_bytes, lz, sizeof(lz)));
		ns_resume(ns);
		if (!ns->paused && ns->ops->images_ready)
			ns->ops->images_ready(ns->arg);
		return;
	}
	if (ns->paused) {
		ns_resume(ns);
		return;
	}
	/* A lazy dump's tags come with each unit's StageRegion. */
	if (ns->verify && !ns->lazy_dump) {
		for (i = 0; i < ns->nr_tasks; i++) {
			for (j = 0; j < ns->tasks[i].nr; j++) {
				const struct ns_range *r = &ns->tasks[i].ranges[j];

				if (r->nr_hashes != r->len / IMG_PAGE_SIZE) {
					ns_abort(ns, CTRL_ABORT_IMAGES,
						 "page checksums missing for a range");
					return;
				}
			}
		}
	}
	ns->images_ready = true;
	log_info("%s: received %" PRIu64 " image files (%s), %" PRIu64 " range tables, %s lazy%s",
		 ns->name, ns->stats.files, fmt_bytes(ns->stats.file_bytes, sz, sizeof(sz)),
		 ns->stats.tables, fmt_bytes(ns->stats.lazy_bytes, lz, sizeof(lz)),
		 ns->verify ? ", with page checksums" : "");
	if (ns->ops->images_ready)
		ns->ops->images_ready(ns->arg);
}

/* ---- post-copy ---- */

/* lane: it came on the fault connection, which answers only what was asked there. */
static void on_read_resp(struct netsrc *ns, const ReadResp *rr, bool lane)
{
	struct pagesrc_req *req;

	TAILQ_FOREACH(req, &ns->pending, src_link)
	if ((uint64_t)(uintptr_t)req->src_priv == rr->cookie)
		break;
	if (!req || ns_req_lane(ns, req) != lane) {
		ns_abort(ns, CTRL_ABORT_PROTOCOL, "ReadResp for no outstanding request");
		return;
	}
	if (rr->status == 0 && (!rr->has_data || rr->data.len != req->len)) {
		ns_abort(ns, CTRL_ABORT_PROTOCOL, "ReadResp with the wrong length");
		return;
	}
	TAILQ_REMOVE(&ns->pending, req, src_link);
	ns->inflight--;
	if (lane)
		ns->lane_inflight--;
	if (rr->status == 0) {
		memcpy(req->dst, rr->data.data, req->len);
		ns->stats.reads++;
		ns->stats.read_bytes += req->len;
		if (lane) {
			ns->stats.lane_reads++;
			ns->stats.lane_read_bytes += req->len;
		}
		pagesrc_complete(req, 0);
	} else {
		log_err("%s: the source cannot serve pid %d at 0x%" PRIx64 ": %s", ns->name,
			req->pid, req->img_vaddr, strerror(-rr->status));
		pagesrc_complete(req, rr->status);
	}
}

static int ns_issue(struct netsrc *ns, struct pagesrc_req *req, const struct ns_range *r);

/* A staged unit's page tags (ctrl checked there is one per page); kept across a resume. */
static int ns_stage_tags(struct ns_range *r, const StageRegion *sr)
{
	uint64_t n = r->len / IMG_PAGE_SIZE;

	if (sr->n_page_tags != n)
		return -EPROTO;
	if (!r->hashes) {
		r->hashes = calloc(n, sizeof(*r->hashes));
		r->have_hash = calloc(n, 1);
		if (!r->hashes || !r->have_hash)
			return -ENOMEM;
	}
	memcpy(r->hashes, sr->page_tags, n * sizeof(*r->hashes));
	memset(r->have_hash, 1, n);
	r->nr_hashes = n;
	return 0;
}

/*
 * A unit of a lazy dump is staged on the source: it may be read now, and
 * the requests parked on it go out.  Its XXH3 joins the Done digest in
 * table order (netsrc_send_done()).
 */
static void on_stage_region(struct netsrc *ns, const StageRegion *sr)
{
	struct ns_range *r = ns_range_find(ns, sr->pid, sr->img_vaddr, sr->len);
	struct pagesrc_req *req, *next;
	int ret;

	if (!r || r->img_vaddr != sr->img_vaddr || r->len != sr->len || r->staged) {
		ns_abort(ns, CTRL_ABORT_PROTOCOL,
			 "StageRegion for no unit, or for one staged before");
		return;
	}
	/* Announced again after a resume: the same bytes, or the Done digest would lie. */
	if (r->announced && r->xxh3 != sr->xxh3) {
		ns_abort(ns, CTRL_ABORT_VERIFY,
			 "a unit announced again after a resume has another checksum");
		return;
	}
	if (ns->verify && ns_stage_tags(r, sr) < 0) {
		ns_abort(ns, CTRL_ABORT_INTERNAL, "out of memory");
		return;
	}
	r->raddr = sr->has_remote_addr ? sr->remote_addr : 0;
	r->rkey = sr->has_rkey ? sr->rkey : 0;
	r->xxh3 = sr->xxh3;
	r->staged = true;
	if (!r->announced)
		ns->stats.units_staged++;
	r->announced = true;
	for (req = TAILQ_FIRST(&ns->parked); req; req = next) {
		next = TAILQ_NEXT(req, src_link);
		if (req->pid != sr->pid || req->img_vaddr < r->img_vaddr ||
		    req->img_vaddr - r->img_vaddr >= r->len)
			continue;
		TAILQ_REMOVE(&ns->parked, req, src_link);
		if (req->prio != PAGESRC_PRIO_FAULT)
			ns->parked_drain--;
		ret = ns_issue(ns, req, r);
		/* Not from inside submit(): the engine may take the request back now. */
		if (ret < 0)
			pagesrc_complete(req, ret == -EAGAIN || ret == -ENOBUFS ? -EAGAIN : ret);
	}
}

/* StageReq for unit r of pid, once per connection. */
static int ns_ask_stage(struct netsrc *ns, int32_t pid, struct ns_range *r)
{
	struct ctrl_out o;
	int ret;

	if (r->stage_asked)
		return 0;
	ret = ctrl_msg_stage_req(&o, pid, r->img_vaddr);
	if (ret == 0)
		ret = ns_send(ns, &o);
	if (ret < 0)
		return ret;
	r->stage_asked = true;
	ns->stats.stage_reqs++;
	return 0;
}

/*
 * A request on a unit not staged yet waits for its StageRegion; the unit
 * is asked for once, or on resume when paused (ns_park_all()).
 */
static int ns_park(struct netsrc *ns, struct pagesrc_req *req, struct ns_range *r)
{
	int ret;

	if (!ns->paused) {
		ret = ns_ask_stage(ns, req->pid, r);
		if (ret < 0)
			return ret;
	}
	TAILQ_INSERT_TAIL(&ns->parked, req, src_link);
	if (req->prio != PAGESRC_PRIO_FAULT)
		ns->parked_drain++;
	return 0;
}

/*
 * A lazy dump resumes: the units' remote addresses and rkeys come again
 * with the new connection's StageRegions, so every request waits parked
 * for its unit's, and each unit a request waits for is asked for again
 * (the new session knows none of the old one's StageReqs).  A unit the
 * source has staged is announced anyway; asking for it costs one message.
 */
static int ns_park_all(struct netsrc *ns)
{
	struct pagesrc_req *req;
	struct ns_range *r;
	uint64_t asked = ns->stats.stage_reqs;
	uint32_t n = 0;
	int ret;

	while ((req = TAILQ_FIRST(&ns->pending)) != NULL) {
		TAILQ_REMOVE(&ns->pending, req, src_link);
		ns->inflight--;
		req->src_priv = NULL;
		TAILQ_INSERT_TAIL(&ns->parked, req, src_link);
		if (req->prio != PAGESRC_PRIO_FAULT)
			ns->parked_drain++;
	}
	TAILQ_FOREACH(req, &ns->parked, src_link)
	{
		r = ns_range_find(ns, req->pid, req->img_vaddr, req->len);
		if (!r)
			return -ERANGE;
		if (!r->staged) {
			ret = ns_ask_stage(ns, req->pid, r);
			if (ret < 0)
				return ret;
		}
		n++;
	}
	log_info("%s: resuming a lazy dump: %" PRIu32 " request(s) wait for their units' "
		 "StageRegion again, %" PRIu64 " unit(s) asked for again",
		 ns->name, n, ns->stats.stage_reqs - asked);
	return 0;
}

static void ns_rounds_report(struct netsrc *ns);

static void ns_read_done(struct xport *x, uint64_t cookie, int status, void *arg)
{
	struct netsrc *ns = arg;
	struct pagesrc_req *req = (struct pagesrc_req *)(uintptr_t)cookie;
	char why[96];
	bool lane;

	if (roundcopy_cookie(cookie)) {
		if (ns->rounds)
			roundcopy_read_done(ns->rounds, cookie, status);
		ns_rounds_report(ns);
		return;
	}
	lane = req->src_priv != NULL;

	/* A READ flushed by a broken connection: kept, and issued again on resume. */
	if (status != 0 && ns_may_pause(ns)) {
		snprintf(why, sizeof(why), "an RDMA READ failed (%s)", strerror(-status));
		ns_pause(ns, why);
		return;
	}
	TAILQ_REMOVE(&ns->pending, req, src_link);
	ns->inflight--;
	if (lane)
		ns->lane_inflight--;
	if (status == 0) {
		ns->stats.reads++;
		ns->stats.read_bytes += req->len;
		if (lane) {
			ns->stats.lane_reads++;
			ns->stats.lane_read_bytes += req->len;
		}
	}
	pagesrc_complete(req, status == 0 ? 0 : -EIO);
}

/*
 * Our Attach{resume} answered by DoneAck (ctrl.c allows it there, ok only):
 * the source had our Done and released its checkpoint, its first DoneAck
 * was lost.  Believed only after the source proved the secret (this
 * connection is authenticated both ways by now) and only when our Done
 * went out: every page is here.
 */
static int on_done_ack_resuming(struct netsrc *ns)
{
	if (!ns->done_sent) {
		ns_abort(ns, CTRL_ABORT_PROTOCOL,
			 "DoneAck for a migration this destination has not finished");
		return -EPROTO;
	}
	ns->paused = false;
	ns->done_pending = false;
	ns->stats.paused_ns += now_ns() - ns->pause_ns;
	log_info("%s: the source had our Done (its DoneAck was lost): the migration is done "
		 "after %.1f s paused",
		 ns->name, (double)(now_ns() - ns->pause_ns) / 1e9);
	if (ns->ops->resumed)
		ns->ops->resumed(ns->arg);
	return 0;
}

/* ---- receive on the control connection: one handler per message type (ctrlconn.h) ---- */

static void ns_msg_hello(void *arg, const RdmigMsg *m)
{
	on_hello(arg);
}

static void ns_msg_auth_result(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;

	if (!m->auth_result->ok)
		ns_fail(ns, -EACCES,
			ns->paused ? "the source refused our authentication: it no longer "
				     "serves this migration (aborted or ended there?)"
				   : "the source refused our authentication (wrong secret or "
				     "migration id?)");
}

static void ns_msg_auth_proof(void *arg, const RdmigMsg *m)
{
	on_auth_proof(arg, m->auth_proof);
}

/* The checkpoint's images began: copying the rounds ends, the copies made stay. */
static void ns_rounds_served(struct netsrc *ns)
{
	if (!ns->rounds || ns->rounds_stopped)
		return;
	ns->rounds_stopped = true;
	roundcopy_stop(ns->rounds, false);
}

static void ns_msg_mem_regions(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;
	const MemRegions *mr = m->mem_regions;

	ns->stats.regions += mr->n_regions;
	ns_rounds_served(ns);
	for (size_t i = 0; ns->rounds && i < mr->n_regions; i++) {
		const MemRegion *g = mr->regions[i];
		struct ctrl_region r = {g->addr, g->len, g->rkey, g->has_xxh3, g->xxh3};
		char sz[32];

		if (roundcopy_adopt(ns->rounds, &r))
			log_info("%s: region 0x%" PRIx64 " (%s) is served from its copy made "
				 "before the freeze",
				 ns->name, r.addr, fmt_bytes(r.len, sz, sizeof(sz)));
	}
}

/*
 * Copying every round announced so far ended (or, without a copier, never
 * began: asked by RoundsStop): the source, which may hold its final dump
 * for it, is told (RoundsCopied), once per round.
 */
static void ns_rounds_report(struct netsrc *ns)
{
	uint32_t round = ns->rounds_stopped ? 0
			 : ns->rounds	    ? roundcopy_idle_round(ns->rounds)
					    : ns->rounds_seen;
	struct roundcopy_stats rs = {0};
	struct ctrl_out o;
	char sz[32];

	if (!round || round <= ns->rounds_reported || !ns->x)
		return;
	ns->rounds_reported = round;
	if (ns->rounds)
		roundcopy_get_stats(ns->rounds, &rs);
	log_info("%s: pre-copy rounds up to %" PRIu32 " copied: %" PRIu64 " region(s), %s kept "
		 "in %.2f s",
		 ns->name, round, rs.regions_kept, fmt_bytes(rs.bytes_copied, sz, sizeof(sz)),
		 (double)rs.copy_ns / 1e9);
	if (ctrl_msg_rounds_copied(&o, round, rs.bytes_copied) == 0)
		ns_send(ns, &o);
}

/*
 * FEAT_ROUNDS: the source is about to freeze and may then release a
 * round's registration: no READ of ours may be in flight by then.  The
 * answer (RoundsCopied) goes once the last one is in.
 */
static void ns_msg_rounds_stop(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;

	if (ns->rounds)
		roundcopy_stop(ns->rounds, false);
	ns_rounds_report(ns);
}

static int ns_rounds_reg(void *arg, void *buf, size_t len, struct ibv_mr **out)
{
	struct netsrc *ns = arg;

	return ns->x ? xport_reg(ns->x, buf, len, IBV_ACCESS_LOCAL_WRITE, out) : -ENOTCONN;
}

static int ns_rounds_read(void *arg, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
			  uint32_t len, uint64_t cookie)
{
	struct netsrc *ns = arg;

	return ns->x ? xport_read(ns->x, local, lkey, raddr, rkey, len, cookie) : -ENOTCONN;
}

static void ns_rounds_dereg(void *arg, struct ibv_mr *mr)
{
	ibv_dereg_mr(mr);
}

static const struct roundcopy_ops ns_rounds_ops = {ns_rounds_reg, ns_rounds_read, ns_rounds_dereg};

/* FEAT_ROUNDS: a round registered on the source, copied now, while the workload runs there. */
static void ns_msg_round_pages(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;
	const RoundPages *rp = m->round_pages;
	struct ctrl_region r[CTRL_REGIONS_MAX];
	uint64_t bytes = 0;
	char sz[32];
	int ret;

	if (rp->round > ns->rounds_seen)
		ns->rounds_seen = rp->round;
	for (size_t i = 0; i < rp->n_regions; i++) {
		const MemRegion *g = rp->regions[i];

		r[i] = (struct ctrl_region){g->addr, g->len, g->rkey, true, g->xxh3};
		bytes += g->len;
	}
	if (!ns->rounds &&
	    roundcopy_new(ns->dir_fd, ns->name, &ns_rounds_ops, ns, &ns->rounds) < 0) {
		log_warn("%s: pre-copy round %" PRIu32 " not copied ahead: out of memory", ns->name,
			 rp->round);
		return;
	}
	log_info("%s: pre-copy round %" PRIu32 ": %zu region(s), %s, copied while the workload "
		 "runs on the source",
		 ns->name, rp->round, rp->n_regions, fmt_bytes(bytes, sz, sizeof(sz)));
	ret = roundcopy_add(ns->rounds, rp->round, r, rp->n_regions);
	if (ret < 0)
		log_warn("%s: pre-copy round %" PRIu32 " not copied ahead: %s", ns->name, rp->round,
			 strerror(-ret));
	/* It may have ended at once (no file, no buffer). */
	ns_rounds_report(ns);
}

/* ImageFile and PageHashes. */
static void ns_msg_image_data(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;
	int ret;

	ns_rounds_served(ns);
	/* Only a takeover asked for the page tags again (Attach{page_hashes}). */
	if (ns->paused &&
	    !(ns->takeover_wait && ns->verify && m->body_case == RDMIG_MSG__BODY_PAGE_HASHES)) {
		ns_abort(ns, CTRL_ABORT_PROTOCOL, "the source streams images to a resume");
		return;
	}
	if (m->body_case == RDMIG_MSG__BODY_PAGE_HASHES) {
		if (on_page_hashes(ns, m->page_hashes) < 0)
			ns_abort(ns, CTRL_ABORT_IMAGES, "bad page checksums");
		return;
	}
	ret = on_image_file(ns, m->image_file);
	if (ret < 0)
		ns_abort(ns, CTRL_ABORT_IMAGES,
			 ret == -ENOSPC ? "cannot store the images: no space left"
					: "cannot store the images");
}

static void ns_msg_task_table(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;
	int ret;

	ret =
	    ns->paused ? on_task_table_resume(ns, m->task_table) : on_task_table(ns, m->task_table);
	if (ret < 0)
		ns_abort(ns, CTRL_ABORT_IMAGES, "bad range table");
}

static void ns_msg_images_done(void *arg, const RdmigMsg *m)
{
	on_images_done(arg);
}

static void ns_msg_read_resp(void *arg, const RdmigMsg *m)
{
	on_read_resp(arg, m->read_resp, false);
}

static void ns_msg_fault_lane(void *arg, const RdmigMsg *m)
{
	on_fault_lane(arg, m->fault_lane);
}

static void ns_msg_drain_lane(void *arg, const RdmigMsg *m)
{
	on_drain_lane(arg, m->drain_lane);
}

static void ns_msg_stage_region(void *arg, const RdmigMsg *m)
{
	on_stage_region(arg, m->stage_region);
}

static void ns_msg_done_ack(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;

	if (ns->paused && on_done_ack_resuming(ns) < 0)
		return;
	ns->finished = m->done_ack->ok;
	if (ns->ops->done_acked)
		ns->ops->done_acked(ns->arg, m->done_ack->ok, m->done_ack->reason);
}

static void ns_msg_abort(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;
	char reason[320];

	snprintf(reason, sizeof(reason), "the source aborted: %s (%s)",
		 m->abort->reason ? m->abort->reason : "no reason", ctrl_abort_str(m->abort->code));
	/* Resuming: busy with our old connection, or still mapping: try again. */
	if (ns->paused && (uint32_t)m->abort->code == CTRL_ABORT_MIGRATION)
		ns_pause(ns, reason);
	else
		ns_fail(ns, -ECONNABORTED, reason);
}

static void ns_refused(void *arg, uint32_t code, const char *why)
{
	ns_abort(arg, code, why);
}

static const struct ctrlconn_handlers ns_handlers = {
    .on =
	{
	    [RDMIG_MSG__BODY_HELLO] = ns_msg_hello,
	    [RDMIG_MSG__BODY_AUTH_RESULT] = ns_msg_auth_result,
	    [RDMIG_MSG__BODY_AUTH_PROOF] = ns_msg_auth_proof,
	    [RDMIG_MSG__BODY_MEM_REGIONS] = ns_msg_mem_regions,
	    [RDMIG_MSG__BODY_ROUND_PAGES] = ns_msg_round_pages,
	    [RDMIG_MSG__BODY_ROUNDS_STOP] = ns_msg_rounds_stop,
	    [RDMIG_MSG__BODY_IMAGE_FILE] = ns_msg_image_data,
	    [RDMIG_MSG__BODY_PAGE_HASHES] = ns_msg_image_data,
	    [RDMIG_MSG__BODY_TASK_TABLE] = ns_msg_task_table,
	    [RDMIG_MSG__BODY_IMAGES_DONE] = ns_msg_images_done,
	    [RDMIG_MSG__BODY_READ_RESP] = ns_msg_read_resp,
	    [RDMIG_MSG__BODY_KEEPALIVE] = ctrlconn_ignore,
	    [RDMIG_MSG__BODY_FAULT_LANE] = ns_msg_fault_lane,
	    [RDMIG_MSG__BODY_DRAIN_LANE] = ns_msg_drain_lane,
	    [RDMIG_MSG__BODY_STAGE_REGION] = ns_msg_stage_region,
	    [RDMIG_MSG__BODY_DONE_ACK] = ns_msg_done_ack,
	    [RDMIG_MSG__BODY_ABORT] = ns_msg_abort,
	},
    .refused = ns_refused,
};

static void ns_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct netsrc *ns = arg;

	ns->last_rx_ns = now_ns();
	ctrlconn_recv(&ns->st, buf, len, &ns_handlers, ns);
}

static void ns_closed(struct xport *x, int reason, void *arg)
{
	struct netsrc *ns = arg;
	struct timeval tv = {0, 300000};
	char why[160];

	if (ns->finished) {
		/* The source hangs up after DoneAck: the migration is over. */
		ns_close_xport(ns);
		return;
	}
	if (ns->paused || ns_may_pause(ns)) {
		snprintf(why, sizeof(why), "%s: %s",
			 ns->paused ? "cannot reach the source" : "connection to the source lost",
			 strerror(-reason));
		ns_pause(ns, why);
		return;
	}
	/* A source still starting up refuses: try again until the deadline. */
	if (!ns->established && !ns->failed &&
	    now_ns() - ns->start_ns < (uint64_t)ns->cfg.connect_timeout_s * 1000000000ull) {
		log_debug("%s: not reachable yet (%s), retrying", ns->name, strerror(-reason));
		xport_close(ns->x);
		ns->x = NULL;
		event_add(ns->retry, &tv);
		return;
	}
	snprintf(why, sizeof(why), "%s: %s",
		 ns->established ? "connection to the source lost" : "cannot reach the source",
		 strerror(-reason));
	ns_fail(ns, reason, why);
}

static const struct xport_ops ns_xops = {
    .established = ns_established,
    .recv = ns_recv,
    .read_done = ns_read_done,
    .closed = ns_closed,
};

/* ---- the fault connection (TCP, FEAT_FAULT_CONN) ---- */

static void ns_fc_close(struct netsrc *ns)
{
	if (ns->fc.x)
		xport_close(ns->fc.x);
	ns->fc.x = NULL;
	ns->fc.up = false;
}

/*
 * The fault connection is gone but the control connection is not: its
 * requests go again on the control connection, where faults went before
 * it was up, so no fault is lost and the migration goes on.
 */
static void ns_fc_lost(struct netsrc *ns, const char *why)
{
	struct pagesrc_req *req;
	struct ctrl_out o;
	int ret = 0;

	if (!ns->fc.x)
		return;
	log_warn("%s: %s; faults share the control connection", ns->fc.name, why);
	ns_fc_close(ns);
	/* Paused: every request goes again on resume. */
	if (ns->failed || ns->finished || ns->paused)
		return;
	TAILQ_FOREACH(req, &ns->pending, src_link)
	{
		if (!ns_req_lane(ns, req))
			continue;
		ns->lane_inflight--;
		req->src_priv = (void *)(uintptr_t)++ns->next_cookie;
		ret = ctrl_msg_read_req(&o, ns->next_cookie, req->pid, req->img_vaddr,
					(uint32_t)req->len);
		if (ret == 0)
			ret = ns_send(ns, &o);
		if (ret < 0)
			break;
	}
	if (ret < 0)
		ns_lost(ns, ret, "cannot ask again for the fault connection's pages");
}

static void ns_fc_established(struct xport *x, void *arg)
{
	struct netsrc *ns = arg;

	ns->fc.last_rx_ns = now_ns();
	if (ns_send_hello(ns, x, &ns->fc.st, ns->fc.name, ns->fc.nonce, CTRL_CHANNEL_DATA) < 0)
		ns_fc_lost(ns, "cannot send Hello");
}

/* ---- receive on the fault connection ---- */

static void ns_fc_msg_hello(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;

	if (ns_send_proof(ns, ns->fc.x, &ns->fc.st, ns->fc.name) < 0)
		ns_fc_lost(ns, "cannot send the authentication proof");
}

static void ns_fc_msg_auth_result(void *arg, const RdmigMsg *m)
{
	if (!m->auth_result->ok)
		ns_fc_lost(arg, "the source refused the fault connection's proof");
}

static void ns_fc_msg_auth_proof(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;
	int ret;

	ret = ns_check_proof(ns, ns->fc.x, &ns->fc.st, ns->fc.name, m->auth_proof);
	if (ret == -EACCES) {
		ns_fail(ns, -EACCES,
			"the source failed to prove it knows the migration's secret on the "
			"fault connection");
	} else if (ret < 0) {
		ns_fc_lost(ns, "cannot confirm authentication");
	} else {
		ns->fc.up = true;
		ns->stats.fault_lane = true;
		log_info("%s: fault connection up", ns->fc.name);
		if (ns->ops->lane_up)
			ns->ops->lane_up(ns->arg);
	}
}

static void ns_fc_msg_read_resp(void *arg, const RdmigMsg *m)
{
	on_read_resp(arg, m->read_resp, true);
}

static void ns_fc_msg_abort(void *arg, const RdmigMsg *m)
{
	ns_fc_lost(arg, m->abort->reason ? m->abort->reason : "the source aborted it");
}

/* A bad message (a failed MAC above all) is as grave here as on the control connection. */
static void ns_fc_refused(void *arg, uint32_t code, const char *why)
{
	char reason[320];

	snprintf(reason, sizeof(reason), "fault connection: %s", why);
	ns_abort(arg, code, reason);
}

static const struct ctrlconn_handlers ns_fc_handlers = {
    .on =
	{
	    [RDMIG_MSG__BODY_HELLO] = ns_fc_msg_hello,
	    [RDMIG_MSG__BODY_AUTH_RESULT] = ns_fc_msg_auth_result,
	    [RDMIG_MSG__BODY_AUTH_PROOF] = ns_fc_msg_auth_proof,
	    [RDMIG_MSG__BODY_READ_RESP] = ns_fc_msg_read_resp,
	    [RDMIG_MSG__BODY_KEEPALIVE] = ctrlconn_ignore,
	    [RDMIG_MSG__BODY_ABORT] = ns_fc_msg_abort,
	},
    .refused = ns_fc_refused,
};

static void ns_fc_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct netsrc *ns = arg;

	ns->fc.last_rx_ns = now_ns();
	ctrlconn_recv(&ns->fc.st, buf, len, &ns_fc_handlers, ns);
}

static void ns_fc_closed(struct xport *x, int reason, void *arg)
{
	struct netsrc *ns = arg;
	char why[96];

	snprintf(why, sizeof(why), "fault connection closed (%s)", strerror(-reason));
	ns_fc_lost(ns, why);
}

static const struct xport_ops ns_fc_xops = {
    .established = ns_fc_established,
    .recv = ns_fc_recv,
    .closed = ns_fc_closed,
};

static int ns_xport_connect(struct netsrc *ns, const struct xport_ops *ops, struct xport **out)
{
	struct xport_params xp;

	xport_params_init(&xp);
	xp.max_reads = ns->cfg.max_reads;
	if (ns->cfg.kind == XPORT_TCP)
		xp.max_msg = 2u << 20;
	xp.tls = ns->cfg.tls;
	/* Names the migration so the source can use the PD its checkpoint is registered in. */
	if (ns->cfg.kind == XPORT_RDMA)
		xp.conn_data_len =
		    (uint8_t)connhint_make(ns->id, xp.conn_data, sizeof(xp.conn_data));
	return xport_connect(ns->base, ns->cfg.kind, ns->host, ns->port, &xp, ops, ns, out);
}

/*
 * Opens the fault connection once the control connection is authenticated
 * and both sides set FEAT_FAULT_CONN; until it is up (and if it never is)
 * faults go on the control connection.
 */
static void ns_fc_start(struct netsrc *ns)
{
	int ret;

	if (ns->cfg.kind != XPORT_TCP ||
	    !(ctrl_state_negotiated(&ns->st)->features & CTRL_FEAT_FAULT_CONN))
		return;
	snprintf(ns->fc.name, sizeof(ns->fc.name), "%s, fault connection", ns->name);
	ctrl_state_clear(&ns->fc.st);
	ctrl_state_init(&ns->fc.st, CTRL_ROLE_DEST, ns->fc.name);
	ret = ns_xport_connect(ns, &ns_fc_xops, &ns->fc.x);
	if (ret < 0) {
		ns->fc.x = NULL;
		log_warn("%s: cannot connect (%s); faults share the control connection",
			 ns->fc.name, strerror(-ret));
	}
}

/* Keepalive and silence on the fault connection, as on the control one. */
static void ns_fc_tick(struct netsrc *ns, uint64_t now)
{
	if (!ns->fc.up)
		return;
	if (ctrlconn_silent(ns->fc.last_rx_ns, now, ns->cfg.dead_after_s)) {
		ns_fc_lost(ns, "the source fell silent on it");
		return;
	}
	ctrlconn_keepalive(ns->fc.x, &ns->fc.st, ns->fc.name, &ns->fc.ka_seq, now);
}

/* ---- the RC side channel (RDMA, FEAT_RC_SIDE): a resume without rdma_cm ---- */

static void ns_side_close(struct netsrc *ns)
{
	if (ns->side.x)
		xport_close(ns->side.x);
	ns->side.x = NULL;
}

/* An attempt that failed on the side channel: pause on, try again later. */
static void ns_side_failed(struct netsrc *ns, const char *why)
{
	char reason[320];

	snprintf(reason, sizeof(reason), "RC side channel: %s", why);
	ns_pause(ns, reason);
}

static void ns_side_established(struct xport *x, void *arg)
{
	struct netsrc *ns = arg;

	if (ns_send_hello(ns, x, &ns->side.st, ns->side.name, ns->side.nonce,
			  CTRL_CHANNEL_RC_SIDE) < 0)
		ns_side_failed(ns, "cannot send Hello");
}

/*
 * Both proofs are in: make the new endpoint on the device of this
 * channel's address and tell the source where its queue pair is.
 */
static void ns_side_offer(struct netsrc *ns, const AuthProof *p)
{
	struct rcqp_addr mine;
	struct xport_params xp;
	struct ctrl_out o;
	int ret;

	ret = ns_check_proof(ns, ns->side.x, &ns->side.st, ns->side.name, p);
	if (ret == -EACCES) {
		ns_fail(ns, -EACCES,
			"the source failed to prove it knows the migration's secret on the RC "
			"side channel");
		return;
	}
	if (ret < 0) {
		ns_side_failed(ns, "cannot confirm authentication");
		return;
	}
	xport_params_init(&xp);
	xp.max_reads = ns->cfg.max_reads;
	ret = xport_rc_make(ns->base, ns->side.x, &xp, &ns->x, &mine);
	if (ret < 0) {
		ns->x = NULL;
		ns_side_failed(ns, "cannot make a queue pair");
		return;
	}
	xport_set_ops(ns->x, &ns_xops, ns);
	if (ctrl_msg_rc_connect(&o, mine.qpn, mine.psn, mine.gid, mine.mtu, mine.rd_atomic) < 0 ||
	    ns_send_on(ns->side.x, &ns->side.st, ns->side.name, &o) < 0)
		ns_side_failed(ns, "cannot send RcConnect");
}

/* The source's queue pair: ours goes to RTS; the control protocol starts on it. */
static void ns_side_connect(struct netsrc *ns, const RcConnect *rc)
{
	struct rcqp_addr peer = {
	    .qpn = rc->qpn, .psn = rc->psn, .mtu = rc->mtu, .rd_atomic = rc->rd_atomic};

	if (!ns->x) {
		ns_side_failed(ns, "RcConnect out of order");
		return;
	}
	memcpy(peer.gid, rc->gid.data, RCQP_GID_LEN);
	if (xport_rc_connect(ns->x, &peer) < 0) {
		ns_side_failed(ns, "cannot connect the queue pair");
		return;
	}
	log_info("%s: queue pair to the source's %" PRIu32 " made by hand; resuming on it",
		 ns->side.name, rc->qpn);
	/* Its work is done: the new connection has its own handshake and keepalives. */
	ns_side_close(ns);
}

/* ---- the side channel's messages (ctrlconn.h) ---- */

static void ns_side_msg_hello(void *arg, const RdmigMsg *m)
{
	struct netsrc *ns = arg;

	(void)m;
	if (ns_send_proof(ns, ns->side.x, &ns->side.st, ns->side.name) < 0)
		ns_side_failed(ns, "cannot send the authentication proof");
}

static void ns_side_msg_auth_result(void *arg, const RdmigMsg *m)
{
	/* As on a control connection: the source no longer has the migration. */
	if (!m->auth_result->ok)
		ns_fail(arg, -EACCES,
			"the source refused our authentication: it no longer serves this "
			"migration (aborted or ended there?)");
}

static void ns_side_msg_auth_proof(void *arg, const RdmigMsg *m)
{
	ns_side_offer(arg, m->auth_proof);
}

static void ns_side_msg_rc_connect(void *arg, const RdmigMsg *m)
{
	ns_side_connect(arg, m->rc_connect);
}

static void ns_side_msg_abort(void *arg, const RdmigMsg *m)
{
	/* Busy with our old connection, or still mapping: the next attempt may do. */
	ns_side_failed(arg, m->abort->reason ? m->abort->reason : "the source aborted it");
}

static void ns_side_refused(void *arg, uint32_t code, const char *why)
{
	(void)code;
	ns_side_failed(arg, why);
}

static const struct ctrlconn_handlers ns_side_handlers = {
    .on =
	{
	    [RDMIG_MSG__BODY_HELLO] = ns_side_msg_hello,
	    [RDMIG_MSG__BODY_AUTH_RESULT] = ns_side_msg_auth_result,
	    [RDMIG_MSG__BODY_AUTH_PROOF] = ns_side_msg_auth_proof,
	    [RDMIG_MSG__BODY_RC_CONNECT] = ns_side_msg_rc_connect,
	    [RDMIG_MSG__BODY_KEEPALIVE] = ctrlconn_ignore,
	    [RDMIG_MSG__BODY_ABORT] = ns_side_msg_abort,
	},
    .refused = ns_side_refused,
};

static void ns_side_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct netsrc *ns = arg;

	(void)x;
	ctrlconn_recv(&ns->side.st, buf, len, &ns_side_handlers, ns);
}

static void ns_side_closed(struct xport *x, int reason, void *arg)
{
	struct netsrc *ns = arg;
	char why[96];

	snprintf(why, sizeof(why), "closed (%s)", strerror(-reason));
	ns_side_failed(ns, why);
}

static const struct xport_ops ns_side_xops = {
    .established = ns_side_established,
    .recv = ns_side_recv,
    .closed = ns_side_closed,
};

/*
 * A reconnection over RDMA without rdma_cm: after a link flap the guests'
 * kernel drops every rdma_cm MAD for good (docs/testing.md), while queue
 * pairs connected by hand still work.  Plain TCP to the source's port.
 */
static int ns_side_start(struct netsrc *ns)
{
	struct xport_params xp;

	snprintf(ns->side.name, sizeof(ns->side.name), "%s, RC side channel", ns->name);
	ctrl_state_clear(&ns->side.st);
	ctrl_state_init(&ns->side.st, CTRL_ROLE_DEST, ns->side.name);
	xport_params_init(&xp);
	return xport_connect(ns->base, XPORT_TCP, ns->host, ns->port, &xp, &ns_side_xops, ns,
			     &ns->side.x);
}

static void ns_connect_now(struct netsrc *ns)
{
	int ret;

	ctrl_state_clear(&ns->st);
	ctrl_state_init(&ns->st, CTRL_ROLE_DEST, ns->name);
	ns->attempt_ns = now_ns();
	if (ns->paused && ns->peer_rc_side && ns->cfg.kind == XPORT_RDMA) {
		ret = ns_side_start(ns);
		if (ret < 0) {
			char why[128];

			ns->side.x = NULL;
			snprintf(why, sizeof(why),
				 "cannot connect to the source's side listener: %s",
				 strerror(-ret));
			ns_lost(ns, ret, why);
		}
		return;
	}
	ret = ns_xport_connect(ns, &ns_xops, &ns->x);
	if (ret < 0) {
		ns->x = NULL;
		ns_lost(ns, ret, "cannot connect to the source");
	}
}

static void ns_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	ns_connect_now(arg);
}

static unsigned int ns_attempt_s(const struct netsrc *ns)
{
	return ns->cfg.dead_after_s > PAUSE_ATTEMPT_MIN_S ? ns->cfg.dead_after_s
							  : PAUSE_ATTEMPT_MIN_S;
}

/* The tick (common/ctrlconn.c) first: a pause's deadlines, the connect timeout. */
static bool ns_tick_check(void *arg, uint64_t now, struct ctrlconn_peer *p)
{
	struct netsrc *ns = arg;
	char why[128];

	if (ns->failed || ns->expired)
		return false;
	if (ns->paused) {
		if (ns->cfg.pause_limit_s &&
		    now - ns->pause_ns > (uint64_t)ns->cfg.pause_limit_s * 1000000000ull) {
			ns_expire(ns);
			return false;
		}
		/* An attempt that hangs (no route, a stalled source) is given up and retried. */
		if ((ns->x || ns->side.x) &&
		    now - ns->attempt_ns > (uint64_t)ns_attempt_s(ns) * 1000000000ull)
			ns_pause(ns, "the reconnection attempt timed out");
		return false;
	}
	if (ns->held)
		return false;
	if (!ctrl_state_authenticated(&ns->st)) {
		if (now - ns->start_ns > (uint64_t)ns->cfg.connect_timeout_s * 1000000000ull) {
			snprintf(why, sizeof(why),
				 "no authenticated connection to the source within %u s",
				 ns->cfg.connect_timeout_s);
			ns_fail(ns, -ETIMEDOUT, why);
		}
		return false;
	}
	*p = (struct ctrlconn_peer){.x = ns->x,
				    .st = &ns->st,
				    .name = ns->name,
				    .ka_seq = &ns->ka_seq,
				    .last_rx_ns = ns->last_rx_ns,
				    .dead_after_s = ns->cfg.dead_after_s};
	return true;
}

static void ns_tick_silent(void *arg)
{
	struct netsrc *ns = arg;
	char why[128];

	snprintf(why, sizeof(why), "the source has been silent for %u s", ns->cfg.dead_after_s);
	ns_lost(ns, -ETIMEDOUT, why);
}

/* The fault connection's own silence and keepalive, in the same tick. */
static bool ns_tick_alive(void *arg, uint64_t now)
{
	ns_fc_tick(arg, now);
	return true;
}

/*
 * We were stopped: the source's silence, a connection or an attempt that
 * seems to hang are judged from when we run again.  The pause limit is
 * not moved: the workload waited all along.
 */
static void ns_tick_late(void *arg, uint64_t now, uint64_t gap)
{
	struct netsrc *ns = arg;

	ns->last_rx_ns = tickclock_shift(ns->last_rx_ns, gap, now);
	ns->fc.last_rx_ns = tickclock_shift(ns->fc.last_rx_ns, gap, now);
	ns->attempt_ns = tickclock_shift(ns->attempt_ns, gap, now);
	ns->start_ns = tickclock_shift(ns->start_ns, gap, now);
}

static const struct ctrlconn_tick_ops ns_tick_ops = {
    .check = ns_tick_check,
    .silent = ns_tick_silent,
    .alive = ns_tick_alive,
    .late = ns_tick_late,
};

/* The page tags PageHashes carries are keyed with the migration's page key. */
/* Requests read from the rounds' copies (nsrc_submit()): complete, never from inside submit. */
static void ns_local_cb(evutil_socket_t fd, short what, void *arg)
{
	struct netsrc *ns = arg;
	struct pagesrc_req *req;

	while ((req = TAILQ_FIRST(&ns->local)) != NULL) {
		TAILQ_REMOVE(&ns->local, req, src_link);
		ns->stats.local_reads++;
		ns->stats.local_bytes += req->len;
		pagesrc_complete(req, 0);
	}
}

static int netsrc_pages_init(struct netsrc *ns)
{
	uint8_t key[MSGAUTH_PAGE_KEY_LEN];
	int ret;

	ret = msgauth_page_key(ns->cfg.secret, ns->id, key);
	if (ret == 0)
		ret = msgauth_pages_init(&ns->pages, key);
	OPENSSL_cleanse(key, sizeof(key));
	if (ret < 0)
		log_err("%s: cannot set up the page tag key: %s", ns->name, strerror(-ret));
	return ret;
}

int netsrc_connect(struct event_base *base, const struct netsrc_config *cfg,
		   const struct netsrc_ops *ops, void *arg, struct netsrc **out)
{
	struct netsrc *ns;

	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->base = base;
	ns->cfg = *cfg;
	ns->stats.drain_qps = 1;
	ns->ops = ops;
	ns->arg = arg;
	ns->file_fd = -1;
	ns->dir_fd = safepath_open_dir(cfg->images_dir);
	if (ns->dir_fd < 0) {
		int ret = ns->dir_fd;

		log_err("migration %s: images dir %s: %s", cfg->migration_id, cfg->images_dir,
			strerror(-ret));
		free(ns);
		return ret;
	}
	TAILQ_INIT(&ns->pending);
	TAILQ_INIT(&ns->parked);
	TAILQ_INIT(&ns->local);
	ns->local_ev = event_new(base, -1, 0, ns_local_cb, ns);
	ns->host = strdup(cfg->host);
	ns->port = strdup(cfg->port);
	ns->id = strdup(cfg->migration_id);
	ns->dir = strdup(cfg->images_dir);
	ns->retry = evtimer_new(base, ns_retry_cb, ns);
	if (!ns->host || !ns->port || !ns->id || !ns->dir || !ns->retry || !ns->local_ev ||
	    ctrlconn_tick_new(base, ns->name, &ns_tick_ops, ns, &ns->tick) < 0) {
		netsrc_free(ns);
		return -ENOMEM;
	}
	snprintf(ns->name, sizeof(ns->name), "migration %s, source %s:%s", ns->id, ns->host,
		 ns->port);
	if (cfg->verify && netsrc_pages_init(ns) < 0) {
		netsrc_free(ns);
		return -EIO;
	}
	ns->start_ns = now_ns();
	if (cfg->takeover) {
		/* The workload runs here: a lost source from the start is a pause, not the end. */
		ns->postcopy = true;
		ns->peer_resume = true; /* required: on_hello() refuses a source without it */
		ns->paused = true;
		ns->takeover_wait = true;
		ns->pause_ns = ns->start_ns;
		snprintf(ns->pause_reason, sizeof(ns->pause_reason),
			 "taking over from a worker that died");
	}
	ns_connect_now(ns);
	*out = ns;
	return 0;
}

void netsrc_release(struct netsrc *ns)
{
	ns->released = true;
	if (!ns->held)
		return;
	ns->held = false;
	/* The connect timeout runs from now, as for a worker started by the POST. */
	ns->start_ns = now_ns();
	log_info("%s: the handover's POST came: connecting", ns->name);
	ns_connect_now(ns);
}

bool netsrc_held(const struct netsrc *ns)
{
	return ns->held;
}

void netsrc_free(struct netsrc *ns)
{
	if (!ns)
		return;
	ns_fc_close(ns);
	ctrl_state_clear(&ns->fc.st);
	ns_side_close(ns);
	ctrl_state_clear(&ns->side.st);
	ns_close_xport(ns);
	ns_file_close(ns);
	ctrl_state_clear(&ns->st);
	msgauth_pages_free(&ns->pages);
	ctrlconn_tick_free(ns->tick);
	if (ns->retry)
		event_free(ns->retry);
	if (ns->local_ev)
		event_free(ns->local_ev);
	/* After the connection: no READ of a copy lands any more. */
	roundcopy_free(ns->rounds);
	ns_tables_clear(ns);
	free(ns->host);
	free(ns->port);
	free(ns->id);
	free(ns->dir);
	close(ns->dir_fd);
	free(ns);
}

int netsrc_check_images(struct netsrc *ns, const struct img_set *imgs)
{
	size_t i, j;

	for (i = 0; i < imgs->nr_tasks; i++) {
		const struct img_task *it = &imgs->tasks[i];
		struct ns_task *t = ns_task_find(ns, it->pid);
		size_t n = it->has_memory ? it->nr_lazy : 0;

		if (n == 0 && !t)
			continue;
		if (!t || !t->complete || t->nr != n) {
			log_err("%s: pid %d has %zu lazy ranges in the images but %zu in the "
				"source's table",
				ns->name, it->pid, n, t ? t->nr : 0);
			return -EBADMSG;
		}
		for (j = 0; j < n; j++) {
			if (t->ranges[j].img_vaddr != it->lazy[j].vaddr ||
			    t->ranges[j].len != it->lazy[j].len) {
				log_err("%s: pid %d range %zu differs: images 0x%" PRIx64
					"+%" PRIu64 ", table 0x%" PRIx64 "+%" PRIu64,
					ns->name, it->pid, j, it->lazy[j].vaddr, it->lazy[j].len,
					t->ranges[j].img_vaddr, t->ranges[j].len);
				return -EBADMSG;
			}
		}
	}
	for (i = 0; i < ns->nr_tasks; i++) {
		if (!image_set_task(imgs, ns->tasks[i].pid)) {
			log_err(
			    "%s: the source sent a table for pid %d, which is not in the images",
			    ns->name, ns->tasks[i].pid);
			return -EBADMSG;
		}
	}
	return 0;
}

/* ---- the page source ---- */

/*
 * A fault goes on the lane (the RDMA fault QP, or the TCP fault
 * connection while it has room) so that it never waits behind the drain.
 */
static bool ns_use_lane(const struct netsrc *ns, const struct pagesrc_req *req)
{
	if (ns->paused || req->prio != PAGESRC_PRIO_FAULT)
		return false;
	return ns->cfg.kind == XPORT_RDMA ? xport_lane_up(ns->x)
					  : ns->fc.up && ns->lane_inflight < NETSRC_LANE_DEPTH;
}

static int nsrc_submit(void *ctx, struct pagesrc_req *req)
{
	struct netsrc *ns = ctx;
	struct ns_range *r;
	bool lane;
	int ret = 0;

	if (ns->failed || (!ns->x && !ns->paused))
		return -ENOTCONN;
	/* A fault on the lane does not count against the drain's READs. */
	lane = ns_use_lane(ns, req);
	if (!lane && ns->inflight - ns->lane_inflight + ns->parked_drain >= ns->cfg.max_reads)
		return -EAGAIN;
	r = ns_range_find(ns, req->pid, req->img_vaddr, req->len);
	if (!r) {
		log_err("%s: pid %d 0x%" PRIx64 "+%" PRIu64 " is in no range the source offered",
			ns->name, req->pid, req->img_vaddr, req->len);
		return -ERANGE;
	}
	if (!r->staged) {
		ret = ns_park(ns, req, r);
		return ret == -EAGAIN || ret == -ENOBUFS ? -EAGAIN : ret;
	}
	/* Inside a round copied before the freeze: read here, completed from the loop. */
	if (ns->rounds && ns->cfg.kind == XPORT_RDMA &&
	    roundcopy_pread(ns->rounds, r->raddr + (req->img_vaddr - r->img_vaddr), r->rkey,
			    req->dst, req->len) == 0) {
		TAILQ_INSERT_TAIL(&ns->local, req, src_link);
		event_active(ns->local_ev, EV_TIMEOUT, 0);
		return 0;
	}
	/* Paused: accepted and held; it goes out once the source is back. */
	req->src_priv = NULL;
	if (!ns->paused)
		ret = ns_send_req(ns, req, r, lane);
	if (ret == -EAGAIN || ret == -ENOBUFS)
		return -EAGAIN;
	if (ret < 0 && !ns_may_pause(ns))
		return ret;
	TAILQ_INSERT_TAIL(&ns->pending, req, src_link);
	ns->inflight++;
	if (lane && ret == 0)
		ns->lane_inflight++;
	if (ret < 0)
		ns_pause(ns, "cannot send a request to the source");
	return 0;
}

/* Reads req from r, a staged range (a parked request whose unit came): sent and counted. */
static int ns_issue(struct netsrc *ns, struct pagesrc_req *req, const struct ns_range *r)
{
	bool lane = ns_use_lane(ns, req);
	int ret = ns_send_req(ns, req, r, lane);

	if (ret < 0)
		return ret;
	TAILQ_INSERT_TAIL(&ns->pending, req, src_link);
	ns->inflight++;
	if (lane)
		ns->lane_inflight++;
	return 0;
}

/* Sends req on the wire: an RDMA READ, or a ReadReq with a fresh cookie (no bookkeeping). */
static int ns_send_req(struct netsrc *ns, struct pagesrc_req *req, const struct ns_range *r,
		       bool lane)
{
	struct ctrl_out o;
	int ret;

	if (ns->cfg.kind == XPORT_RDMA) {
		req->src_priv = lane ? ns : NULL;
		ret = (lane ? xport_read_fault
			    : xport_read)(ns->x, req->dst, ns->staging_mr->lkey,
					  r->raddr + (req->img_vaddr - r->img_vaddr), r->rkey,
					  (uint32_t)req->len, (uint64_t)(uintptr_t)req);
	} else {
		uintptr_t cookie = (uintptr_t)++ns->next_cookie | (lane ? NS_FC_COOKIE : 0);

		req->src_priv = (void *)cookie;
		ret = ctrl_msg_read_req(&o, cookie, req->pid, req->img_vaddr, (uint32_t)req->len);
		if (ret == 0)
			ret = lane ? ns_fc_send(ns, &o) : ns_send(ns, &o);
	}
	return ret;
}

/*
 * A lazy dump's unit read whole is checked against the XXH3 its
 * StageRegion gave; a part of one (a fault, its read-ahead) cannot be,
 * and is counted as such.
 */
static int ns_verify_unit(struct netsrc *ns, int32_t pid, uint64_t img_vaddr, const void *buf,
			  uint64_t len)
{
	struct ns_range *r = ns_range_find(ns, pid, img_vaddr, len);

	if (!r)
		return -ERANGE;
	if (img_vaddr != r->img_vaddr || len != r->len) {
		ns->stats.unit_parts_unverified++;
		return 0;
	}
	if (XXH3_64bits(buf, len) != r->xxh3) {
		ns->stats.verify_failures++;
		log_err("%s: pid %d unit 0x%" PRIx64 "+%" PRIu64
			" does not match the source's XXH3",
			ns->name, pid, img_vaddr, len);
		return -EBADMSG;
	}
	r->verified_bytes = len;
	ns->stats.units_verified++;
	return 0;
}

/*
 * A request the source did not answer in time, in post-copy with resume:
 * whatever holds it (a lost READ, a stalled source or link the dead-peer
 * tick has not judged yet) a new connection clears, and the pause limit
 * bounds the wait, so no process dies of it.
 */
static int nsrc_stalled(void *ctx, const char *why)
{
	struct netsrc *ns = ctx;

	if (ns->paused && !ns->expired)
		return 0;
	if (!ns_may_pause(ns))
		return -EOPNOTSUPP;
	ns_pause(ns, why);
	return 0;
}

static int nsrc_verify(void *ctx, int32_t pid, uint64_t img_vaddr, const void *buf, uint64_t len)
{
	struct netsrc *ns = ctx;
	struct ns_range *r;
	uint64_t p, idx, tag;

	/* A lazy dump verified by page tags checks every page as a plain one does. */
	if (ns->lazy_dump && !ns->verify)
		return ns_verify_unit(ns, pid, img_vaddr, buf, len);
	if (!ns->verify)
		return 0;
	r = ns_range_find(ns, pid, img_vaddr, len);
	/* Taken over from an older source, which resends no PageHashes: the ranges' XXH3. */
	if (r && !r->hashes && ns->cfg.takeover)
		return ns_verify_unit(ns, pid, img_vaddr, buf, len);
	if (!r || !r->hashes)
		return -ERANGE;
	for (p = 0; p < len; p += IMG_PAGE_SIZE) {
		idx = (img_vaddr + p - r->img_vaddr) / IMG_PAGE_SIZE;
		if (msgauth_page_tag(&ns->pages, (const uint8_t *)buf + p, IMG_PAGE_SIZE, &tag) < 0)
			return -EIO;
		if (tag != r->hashes[idx]) {
			ns->stats.verify_failures++;
			log_err("%s: pid %d page 0x%" PRIx64
				" does not match the source's checksum",
				ns->name, pid, img_vaddr + p);
			return -EBADMSG;
		}
	}
	ns->stats.pages_verified += len / IMG_PAGE_SIZE;
	r->verified_bytes += len;
	return 0;
}

static void nsrc_destroy(void *ctx)
{
	struct netsrc *ns = ctx;

	/* Forget every request: the engine no longer waits for them. */
	TAILQ_INIT(&ns->pending);
	TAILQ_INIT(&ns->parked);
	TAILQ_INIT(&ns->local);
	ns->parked_drain = 0;
	ns->inflight = 0;
	ns->lane_inflight = 0;
	ns->src = NULL;
	/* READs may still target staging: stop the connection first. */
	if (ns->cfg.kind == XPORT_RDMA)
		ns_close_xport(ns);
}

static int nsrc_poll(void *ctx)
{
	struct netsrc *ns = ctx;

	if (!ns->x)
		return ns->paused ? 0 : -ENOTCONN;
	return xport_poll(ns->x);
}

static const struct pagesrc_ops nsrc_ops = {
    .name = "network",
    .submit = nsrc_submit,
    .poll = nsrc_poll,
    .stalled = nsrc_stalled,
    .verify = nsrc_verify,
    .destroy = nsrc_destroy,
};

int netsrc_pagesrc(struct netsrc *ns, struct staging *st, struct pagesrc **out)
{
	int ret;

	if (ns->cfg.kind == XPORT_RDMA) {
		ret = xport_reg(ns->x, staging_base(st), staging_len(st), IBV_ACCESS_LOCAL_WRITE,
				&ns->staging_mr);
		if (ret < 0)
			return ret;
	}
	ns->staging = st;
	ns->src = pagesrc_new(&nsrc_ops, ns);
	if (!ns->src)
		return -ENOMEM;
	*out = ns->src;
	return 0;
}

void netsrc_send_progress(struct netsrc *ns, uint64_t pages, uint64_t bytes, uint64_t faults)
{
	struct ctrl_out o;

	if (ns->x && ctrl_state_may_send(&ns->st, RDMIG_MSG__BODY_PROGRESS) == 0 &&
	    ctrl_msg_progress(&o, pages, bytes, faults) == 0)
		ns_send(ns, &o);
}

int netsrc_send_done(struct netsrc *ns, uint64_t pages, uint64_t bytes)
{
	struct ctrl_done d = {.pages = pages, .bytes = bytes, .digest = ns->digest};
	struct ctrl_out o;
	size_t i, j;
	int ret;

	if (!ns->x && !ns->paused)
		return -ENOTCONN;
	/* A lazy dump's checksums came with the StageRegions, not with the tables. */
	if (ns->lazy_dump) {
		if (ns->verify)
			log_info("%s: lazy dump: %" PRIu64 " of %" PRIu64 " units staged, %" PRIu64
				 " asked for first (StageReq), every page read checked by its tag",
				 ns->name, ns->stats.units_staged, ns->stats.ranges,
				 ns->stats.stage_reqs);
		else
			log_info("%s: lazy dump: %" PRIu64 " of %" PRIu64 " units staged, %" PRIu64
				 " asked for first (StageReq), %" PRIu64
				 " read whole and checked by XXH3, %" PRIu64
				 " parts read unchecked",
				 ns->name, ns->stats.units_staged, ns->stats.ranges,
				 ns->stats.stage_reqs, ns->stats.units_verified,
				 ns->stats.unit_parts_unverified);
		d.digest = 0;
		for (i = 0; i < ns->nr_tasks; i++)
			for (j = 0; j < ns->tasks[i].nr; j++)
				d.digest = ctrl_digest_add(d.digest, ns->tasks[i].ranges[j].xxh3);
	}
	for (i = 0; i < ns->nr_tasks; i++)
		for (j = 0; j < ns->tasks[i].nr; j++)
			if ((ns->verify || ns->lazy_dump) &&
			    ns->tasks[i].ranges[j].verified_bytes >= ns->tasks[i].ranges[j].len)
				d.ranges_verified++;
	ns->done = d;
	if (ns->paused) {
		ns->done_pending = true;
		return 0;
	}
	ret = ctrl_msg_done(&o, &ns->done);
	if (ret == 0)
		ret = ns_send(ns, &o);
	if (ret == 0)
		ns->done_sent = true;
	return ret;
}
