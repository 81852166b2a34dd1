// SPDX-License-Identifier: GPL-2.0-or-later
#include "session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounce.h"
#include "connhint.h"
#include "ctrl.h"
#include "ctrlconn.h"
#include "imgflat.h"
#include "lazydump.h"
#include "log.h"
#include "msgauth.h"
#include "rcqp.h"
#include "prereg.h"
#include "rdmig-config.h"
#include "tickclock.h"
#include "util.h"

/* Bytes the transport may hold before the image stream waits. */
#define STREAM_HIGH_WATER (4u << 20)

struct hole {
	uint64_t off;
	uint64_t len;
};

struct src_stream {
	struct dirent **ents;
	int n;
	int idx;
	bool in_file;
	int fd;		     /* a file read with pread, or -1 */
	const uint8_t *data; /* a mapped pages file, or NULL */
	uint64_t size;
	uint64_t cur;
	struct hole *holes;
	size_t nh;
	size_t hi;
	uint32_t files;
	int err;
	char name[256];
	uint8_t buf[CTRL_FILE_CHUNK_MAX];
	struct event *pump;
};

struct src_session {
	LIST_ENTRY(src_session) link;
	struct src_agent *agent;
	struct xport *x;
	struct ctrl_state st;
	/*
	 * Borrowed once the Hello named it, if it exists; NULL otherwise, and
	 * again when it is cancelled before the proof (src_session_cancel()).
	 */
	struct src_migration *mig;
	/* Owned: a random secret, checked when mig has none; no proof matches it. */
	struct auth_secret *decoy;
	bool owner; /* authenticated: holds mig (mig->busy) */
	/*
	 * FEAT_FAULT_CONN: the owner's authenticated fault connection, and on
	 * that one its owner; each clears the other's pointer when freed.
	 */
	struct src_session *fault;
	struct src_session *ctl;
	uint8_t nonce[AUTH_NONCE_LEN];
	/* Per imgmap file, or per chunk of a lazy dump's staging area; RDMA only. */
	struct ibv_mr **mrs;
	size_t nr_mrs;
	/*
	 * A lazy dump's: bit i, the MemRegions of the staging area's region i
	 * (its chunk i while prereg registers it, prereg.h; mrs[i] after) went
	 * on this connection.
	 */
	uint64_t regions_told;
	struct ctrlconn_tick *tick;
	uint64_t started_ns;
	uint64_t last_rx_ns;
	uint64_t ka_seq;
	char name[160];
	char addr[64]; /* the peer's address without its port */
	uint8_t *rbuf; /* a ReadResp's data, copied out of the mapping; CTRL_READ_MAX */
	struct src_stream stream;
	/*
	 * A lazy dump's (FEAT_LAZY_DUMP common): per unit, whether the peer
	 * asked for it with StageReq and whether its StageRegion went
	 * (STAGE_ASKED, STAGE_SENT), and whether the StageRegions of the units
	 * staged before the tables went out were sent (from then on each unit
	 * goes as it is staged, sess_announce()).
	 */
	uint8_t *stage_flags;
	bool stage_live;
	/*
	 * FEAT_LATE_REGIONS: the staging area's registration was still under
	 * way when the images went out; each chunk's MemRegions goes when a
	 * unit of it is first announced, once that chunk is registered
	 * (src_session_area_chunk()), until the whole area is
	 * (src_session_prereg_done()).  images_done: the ImagesDone was sent.
	 */
	bool regions_late;
	bool images_done;
	/*
	 * While regions_late: the units the destination asks for are announced
	 * from a small region of their own (bounce.h), whose MemRegions goes
	 * first (bounce_told); bounce_failed: it could not be made, they wait.
	 */
	struct bounce *bounce;
	bool bounce_told;
	bool bounce_failed;
	bool attached;	    /* FEAT_RESUME: the destination's Attach came */
	bool resend_hashes; /* its Attach{resume} asked for the PageHashes again */
	bool running;	    /* Running came (or a resume): the destination runs the workload */
	/*
	 * FEAT_RC_SIDE: an authenticated RC side channel (it holds nothing; it
	 * only sets up a resumed connection's queue pair), and whether it did.
	 */
	bool rc_side;
	bool rc_made;
	bool await_prereg; /* authenticated, waiting for the checkpoint's registration */
	/*
	 * FEAT_EARLY: authenticated and attached while the checkpoint is still
	 * being made; held (keepalives only) until the migration serves
	 * (src_session_served()) or ends (sess_tick()).
	 */
	bool await_served;
	/*
	 * FEAT_ROUNDS: the round regions announced so far (an index into
	 * src_prereg_round_region()), the last round announced, and the last
	 * round the destination said its copying of ended (RoundsCopied).
	 */
	size_t rounds_sent;
	uint32_t rounds_last;
	uint32_t rounds_copied;
	bool rounds_stop_sent; /* RoundsStop went: RoundsCopied comes once no READ is in flight */
	/* Why the peer is gone (connection lost, silent); NULL: ended on purpose. */
	const char *lost;
};

static void sess_release_memory(struct src_session *s)
{
	bounce_close(s->bounce);
	s->bounce = NULL;
	src_prereg_deregister(s->mrs, s->nr_mrs, s->name);
	free(s->mrs);
	s->mrs = NULL;
	s->nr_mrs = 0;
}

static void stream_free(struct src_stream *st);

/*
 * A lost peer that runs the workload (it said Running, or resumed) and can
 * reconnect (FEAT_RESUME): the migration waits for it, paused.
 */
static bool sess_resumable(const struct src_session *s)
{
	return s->lost && s->running &&
	       (ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_RESUME);
}

static void sess_free(struct src_session *s)
{
	/* A fault connection lives only as long as the session it serves. */
	if (s->fault)
		sess_free(s->fault);
	if (s->ctl)
		s->ctl->fault = NULL;
	if (s->owner) {
		s->mig->busy = false;
		/* A destination that reported Done makes it done next, not ready. */
		if (s->mig->state == SRC_MIG_SERVING && !s->mig->done_ns) {
			if (sess_resumable(s))
				src_mig_pause(s->mig, s->lost);
			else
				src_mig_set_state(s->mig, SRC_MIG_READY);
		}
	}
	stream_free(&s->stream);
	sess_release_memory(s);
	free(s->stage_flags);
	auth_secret_free(s->decoy);
	free(s->rbuf);
	ctrl_state_clear(&s->st);
	ctrlconn_tick_free(s->tick);
	xport_close(s->x);
	LIST_REMOVE(s, link);
	free(s);
}

static int sess_send(struct src_session *s, struct ctrl_out *o)
{
	return ctrlconn_send(s->x, &s->st, s->name, o);
}

/* Sends Abort (best effort) and ends the session. */
static void sess_abort(struct src_session *s, uint32_t code, const char *reason)
{
	log_err("%s: aborting: %s (%s)", s->name, reason, ctrl_abort_str(code));
	ctrlconn_send_abort(s->x, &s->st, s->name, code, reason);
	sess_free(s);
}

/*
 * A pages file of the migration changed under the session (imgmap.c): the
 * migration fails, naming the file; the agent and its other migrations go
 * on.  err: the copy's -EFAULT, or imgmap_check()'s -ESTALE with why.
 */
static void sess_fail_changed(struct src_session *s, const char *why)
{
	struct src_migration *m = s->mig;
	char buf[SRC_MIG_ERROR_MAX];

	/* Seen on the fault connection: the migration's control connection ends too. */
	if (s->ctl)
		s = s->ctl;
	if (!why) {
		if (imgmap_check(m->map, buf, sizeof(buf)) == 0)
			snprintf(buf, sizeof(buf), "a pages file in %s shrank while served",
				 m->dir);
		why = buf;
	}
	log_err("migration %s: %s: the migration fails", m->id, why);
	sess_abort(s, CTRL_ABORT_IMAGES, why);
	src_mig_finish(m, SRC_MIG_FAILED, why);
}

/* The owner's migration's pages files are still those mapped, or it failed. */
static bool sess_images_intact(struct src_session *s)
{
	char why[SRC_MIG_ERROR_MAX];

	if (!s->owner || !s->mig->map || imgmap_check(s->mig->map, why, sizeof(why)) == 0)
		return true;
	sess_fail_changed(s, why);
	return false;
}

/* The stage of the session's lazy-dump migration, or NULL. */
static struct lazystage *sess_stage(const struct src_session *s)
{
	return s->mig ? src_lazydump_stage_of(s->mig->lazy) : NULL;
}

static bool sess_range_known(void *arg, int32_t pid, uint64_t img_vaddr, uint64_t len)
{
	struct src_session *s = arg;
	const void *data;

	if (s->mig && s->mig->lazy_dump)
		return sess_stage(s) &&
		       lazystage_locate(sess_stage(s), pid, img_vaddr, len, NULL) == 0;
	return s->mig && imgmap_locate(s->mig->map, pid, img_vaddr, len, &data) == 0;
}

/*
 * The same for every migration id: page checksums are offered whatever the
 * migration has, and a destination that asks for them for a migration
 * without them is told so after the proof (sess_refusal()).
 */
static uint64_t sess_features(const struct src_session *s)
{
	uint64_t f = CTRL_FEAT_TCP_READ | (s->agent->one_lane ? 0 : CTRL_FEAT_FAULT_CONN);

	if (s->agent->kind == XPORT_RDMA)
		f = CTRL_FEAT_RDMA_READ | CTRL_FEAT_DRAIN_QPS |
		    (s->agent->one_lane ? 0 : CTRL_FEAT_FAULT_LANE);
	/* Which migrations' destinations connect early is the handover's choice. */
	if (s->agent->early != SRC_EARLY_NONE)
		f |= CTRL_FEAT_EARLY;
	/*
	 * A lazy dump is only served staged (protocol.md §11.2); offered for
	 * that migration alone, as an older destination would not set it.
	 * Its page tags go with each unit's StageRegion.  A resumed
	 * connection gets every staged unit announced again, with its own
	 * rkey (send_staged_so_far()).
	 */
	if (s->mig && s->mig->lazy_dump)
		f |= CTRL_FEAT_LAZY_DUMP;
	/* Its staging area's MemRegions may follow ImagesDone (sess_regions_late()). */
	if (s->mig && s->mig->lazy_dump && s->agent->kind == XPORT_RDMA)
		f |= CTRL_FEAT_LATE_REGIONS;
	if (s->agent->kind == XPORT_RDMA && s->agent->rc_side && !s->agent->no_resume)
		f |= CTRL_FEAT_RC_SIDE;
	/* Its rounds may be copied by a destination held before the freeze (sess_send_rounds()). */
	if (s->agent->kind == XPORT_RDMA && s->agent->early != SRC_EARLY_NONE && s->mig &&
	    s->mig->precopy != API_PRECOPY_OFF)
		f |= CTRL_FEAT_ROUNDS;
	return f | CTRL_FEAT_VERIFY_PAGES | (s->agent->no_resume ? 0 : CTRL_FEAT_RESUME);
}

/* The control connection of a destination that may wait for the checkpoint (FEAT_EARLY). */
static bool sess_early(const struct src_session *s)
{
	const struct ctrl_negotiated *neg = ctrl_state_negotiated(&s->st);

	return (neg->features & CTRL_FEAT_EARLY) && neg->channel == CTRL_CHANNEL_CONTROL;
}

static void sess_bounce_prepare(struct src_session *s);

/* The checkpoint is not made (or not mapped) yet: nothing of it may go out. */
static bool sess_not_served_yet(const struct src_session *s)
{
	return s->mig->state == SRC_MIG_DUMPING || s->mig->state == SRC_MIG_MAPPING ||
	       s->mig->state == SRC_MIG_QUEUED;
}

/*
 * Why an authenticated peer cannot have its migration now, or NULL.  Only
 * said after the proof: before it every id gets the same answers.
 */
static const char *sess_refusal(const struct src_session *s, int *err)
{
	const struct src_migration *m = s->mig;

	*err = -ECANCELED;
	switch (m->state) {
	case SRC_MIG_DUMPING:
	case SRC_MIG_QUEUED: /* reserved, waiting for a dump slot (--max-dumps) */
	case SRC_MIG_MAPPING:
		/* A destination started at its reservation waits here for the checkpoint. */
		if (sess_early(s))
			break;
		*err = -EAGAIN;
		return m->state != SRC_MIG_MAPPING
			   ? "migration is still being dumped on the source"
			   : "migration is still being mapped on the source";
	case SRC_MIG_READY:
	case SRC_MIG_SERVING:
	case SRC_MIG_PAUSED: /* a fresh destination is refused at its Attach */
		break;
	case SRC_MIG_DONE:
		/* Only its Attach is answered (sess_answer_done()): nothing is mapped. */
		if (ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_RESUME)
			return NULL;
		return "migration is already done";
	default:
		/* Any other final migration has dropped its secret: no proof gets here. */
		return "migration is no longer served";
	}
	if (m->busy) {
		*err = -EBUSY;
		return "migration is being served to another peer";
	}
	/*
	 * What the peer takes is the control connection's to say: an RC side
	 * channel only makes a queue pair for it, and offers none of this.
	 */
	if (ctrl_state_negotiated(&s->st)->channel != CTRL_CHANNEL_CONTROL)
		return NULL;
	if (m->lazy_dump && !(ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_LAZY_DUMP)) {
		*err = -EPROTONOSUPPORT;
		return "this migration was dumped with criu dump --lazy-pages and the destination "
		       "does not take staged ranges (FEAT_LAZY_DUMP): upgrade it";
	}
	if ((ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_VERIFY_PAGES) && !m->verify) {
		*err = -EINVAL;
		return "no page checksums for this migration (rdmig-source --verify, or "
		       "\"verify\": "
		       "true when it is started)";
	}
	return NULL;
}

/*
 * Before the peer's proof the source answers every id alike (finding 11 of
 * the security review): unknown, dumping, mapping, serving, done or
 * aborted, the peer gets the same Hello and, for a wrong proof, the same
 * "authentication failed" after the same HMAC work.  A migration without a
 * secret (unknown, or final: its secret is dropped) is checked against a
 * random decoy that no proof matches.
 */
static int on_hello(struct src_session *s, const Hello *h)
{
	struct ctrl_hello mine = {
	    .role = CTRL_ROLE_SOURCE,
	    .channel = CTRL_CHANNEL_CONTROL,
	    .page_size = IMG_PAGE_SIZE,
	    .agent_version = "rdmig-source " RDMIG_VERSION,
	};
	struct ctrl_out o;
	uint8_t junk[32];
	int ret;

	/* The migration is claimed only once the peer has proven the secret. */
	s->mig = src_mig_find(&s->agent->migrations, h->migration_id);
	/*
	 * A destination worker started at the reservation can come before its
	 * answer: the migration, not listed yet, is held like a dumping one.
	 */
	if (!s->mig)
		s->mig = src_mig_find(&s->agent->reserving, h->migration_id);
	snprintf(s->name, sizeof(s->name), "migration %s, peer %s", h->migration_id,
		 xport_name(s->x));
	/* Made for every id alike, so that no answer comes sooner for some. */
	ret = auth_nonce(junk);
	if (ret == 0)
		ret = auth_secret_from_buf(junk, sizeof(junk), &s->decoy);
	explicit_bzero(junk, sizeof(junk));
	if (ret == 0)
		ret = auth_nonce(s->nonce);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "no randomness for a nonce");
		return ret;
	}
	mine.features = sess_features(s);
	/* A data or side channel is admitted or refused after the proof, like everything else. */
	mine.channel = h->channel == CHANNEL__CHANNEL_DATA	? CTRL_CHANNEL_DATA
		       : h->channel == CHANNEL__CHANNEL_RC_SIDE ? CTRL_CHANNEL_RC_SIDE
								: CTRL_CHANNEL_CONTROL;
	mine.migration_id = h->migration_id;
	mine.nonce = s->nonce;
	ret = ctrl_msg_hello(&o, &mine);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0)
		sess_abort(s, CTRL_ABORT_INTERNAL, "cannot answer Hello");
	return ret;
}

/*
 * The session a data channel would carry faults for (FEAT_FAULT_CONN), or
 * NULL with why: the one holding the migration, if it negotiated the bit,
 * has no fault connection yet, and is at the same address, so that another
 * holder of the secret cannot take the faults over.
 */
static struct src_session *sess_fault_owner(struct src_session *s, const char **why)
{
	struct src_session *o;

	LIST_FOREACH(o, &s->agent->sessions, link)
	if (o->owner && o->mig == s->mig)
		break;
	*why = NULL;
	if (!o)
		*why = "a data connection needs the migration's control connection first";
	else if (!(ctrl_state_negotiated(&o->st)->features & CTRL_FEAT_FAULT_CONN))
		*why = "the control connection negotiated no fault connection";
	else if (o->fault)
		*why = "the migration has a fault connection already";
	else if (strcmp(o->addr, s->addr) != 0)
		*why = "a fault connection must come from the control connection's address";
	return *why ? NULL : o;
}

/*
 * Why an authenticated RC side channel cannot set up a queue pair for its
 * migration, or NULL: the refusals of a control connection (protocol.md
 * §7.4); what the connection it makes may do is decided there, at Attach.
 */
static const char *sess_rc_side_refusal(const struct src_session *s, int *err)
{
	*err = -EPROTO;
	if (xport_kind(s->x) != XPORT_TCP || !s->agent->rc_side)
		return "an RC side channel comes over TCP to a source serving over RDMA";
	if (!(ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_RC_SIDE))
		return "an RC side channel needs FEAT_RC_SIDE";
	return sess_refusal(s, err);
}

static int on_auth_proof(struct src_session *s, const AuthProof *p)
{
	bool data = ctrl_state_negotiated(&s->st)->channel == CTRL_CHANNEL_DATA;
	struct src_session *ctl = NULL;
	uint8_t proof[AUTH_PROOF_LEN];
	struct auth_transcript t;
	struct ctrl_out o;
	const char *why;
	int ret;

	ret = ctrl_state_transcript(&s->st, &t);
	if (ret == 0)
		ret = auth_proof_verify(s->mig && s->mig->secret ? s->mig->secret : s->decoy,
					AUTH_ROLE_DEST, &t, p->hmac.data, p->hmac.len);
	if (ret == 0 && (!s->mig || !s->mig->secret))
		ret = -EACCES;
	if (ret < 0) {
		/* Nothing about the checkpoint has left this host. */
		log_warn("%s: the peer's proof is wrong: refusing it", s->name);
		s->agent->peers_unauthenticated_total++;
		if (ctrl_msg_auth_result(&o, false, "authentication failed") == 0)
			sess_send(s, &o);
		sess_free(s);
		return -EACCES;
	}
	/* The state may also have changed during the handshake. */
	if (data) {
		ctl = sess_fault_owner(s, &why);
		ret = -EBUSY;
	} else if (ctrl_state_negotiated(&s->st)->channel == CTRL_CHANNEL_RC_SIDE) {
		why = sess_rc_side_refusal(s, &ret);
		s->rc_side = !why;
	} else if (xport_kind(s->x) != s->agent->kind) {
		/* The RDMA source's TCP listener is there for RC side channels alone. */
		why = "this listener takes RC side channels only";
		ret = -EPROTO;
	} else {
		why = sess_refusal(s, &ret);
	}
	/*
	 * A connection accepted into a migration's PD (its connect data named
	 * it) may only ever serve that one: READ is about to be turned on, and
	 * that PD holds the checkpoint registered before anyone connected.
	 */
	if (!why && xport_shared_pd(s->x) && xport_shared_pd(s->x) != src_prereg_pd(s->mig)) {
		why = "the connection named another migration in its connect request";
		ret = -EACCES;
	}
	if (why) {
		sess_abort(s, CTRL_ABORT_MIGRATION, why);
		return ret;
	}
	ret = xport_set_trusted(s->x);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "no buffers for an authenticated peer");
		return ret;
	}
	if (ctl) {
		ctl->fault = s;
		s->ctl = ctl;
	} else if (!s->rc_side) {
		s->mig->busy = true;
		s->owner = true;
		snprintf(s->mig->peer, sizeof(s->mig->peer), "%s", xport_name(s->x));
		/* 0: before the freeze (the reservation's answer still on its way). */
		if (sess_not_served_yet(s)) {
			s->mig->early_dest_ms =
			    s->mig->freeze_start_ns
				? (int64_t)((now_ns() - s->mig->freeze_start_ns) / 1000000)
				: 0;
			/*
			 * Before the freeze, a lazy dump's first units' region
			 * is registered now, while the workload still runs, and
			 * the dump waits for it (src_session_early_pending()):
			 * registered after the dump it came behind the staging
			 * area's first chunk, on the source's CPU with the
			 * restore's first faults waiting.
			 */
			if (s->mig->lazy_dump && !s->mig->freeze_start_ns)
				sess_bounce_prepare(s);
		}
	}
	ctrl_state_set_peer_verified(&s->st);
	ret = ctrl_state_derive_keys(&s->st, s->mig->secret);
	if (ret == 0)
		ret = ctrl_msg_auth_result(&o, true, NULL);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret == 0)
		ret = auth_proof_compute(s->mig->secret, AUTH_ROLE_SOURCE, &t, proof);
	if (ret == 0)
		ret = ctrl_msg_auth_proof(&o, proof);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "cannot prove the source's identity");
		return ret;
	}
	return 0;
}

/*
 * Registers n files into s->mrs in pd; a round's file where its round
 * mapped it (src_prereg_round_base()): the destination's copy of it is
 * named by that address.
 */
static int sess_register_files(struct src_session *s, const struct imgmap_file *files, size_t n,
			       struct ibv_pd *pd)
{
	const struct imgmap *map = s->mig->map;
	struct imgmap_file *at;
	int ret;

	if (!map || files != map->files)
		return src_prereg_register(files, n, pd, s->mrs);
	at = malloc((n ? n : 1) * sizeof(*at));
	if (!at)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		void *base = src_prereg_round_base(s->mig, &files[i]);

		at[i] = files[i];
		if (base)
			at[i].base = base;
	}
	ret = src_prereg_register(at, n, pd, s->mrs);
	free(at);
	return ret;
}

/*
 * This session's regions over n files (the checkpoint's pages files, or a
 * lazy dump's staging area as one), what naming them in the log: the ones
 * registered before the destination connected when this connection is in
 * their PD and no session took them yet, else registered now in the
 * connection's PD.
 */
static int sess_register(struct src_session *s, const struct imgmap_file *files, size_t n,
			 const char *what)
{
	struct ibv_pd *pd = xport_pd(s->x);
	uint64_t t0 = now_ns();
	int ret;

	if (src_prereg_take(s->mig, pd, &s->mrs, &s->nr_mrs) == 0) {
		/* FEAT_LATE_REGIONS: it ended after the images went out, the restore under way. */
		log_info("%s: the %s was registered %s", s->name, what,
			 s->images_done ? "off the loop while the images went out and the "
					  "destination restored: its MemRegions follow ImagesDone"
					: "before the destination connected");
		s->mig->register_ms = 0;
		return 0;
	}
	if (!pd)
		return -ENOTCONN;
	/* Regions of its own, told afresh (chunks told before stay readable: prereg's). */
	s->regions_told = 0;
	s->mrs = calloc(n ? n : 1, sizeof(*s->mrs));
	if (!s->mrs)
		return -ENOMEM;
	s->nr_mrs = n;
	ret = sess_register_files(s, files, n, pd);
	if (ret == 0) {
		s->mig->register_ms = (int64_t)((now_ns() - t0) / 1000000);
		log_info("%s: %s registered for RDMA READ in %.2f s", s->name, what,
			 (double)(now_ns() - t0) / 1e9);
	}
	return ret;
}

/*
 * A lazy dump's regions: its staging area, whole or in the chunks prereg
 * registered, each readable only where a unit is announced; those not
 * told yet go now.
 */
static int send_stage_region(struct src_session *s)
{
	struct imgmap_file area = {.path = s->name, .fd = -1};
	struct ctrl_region reg[SRC_PREREG_AREA_CHUNKS_MAX] = {0};
	struct ctrl_out o;
	size_t i, n = 0;
	int ret;

	lazystage_area(sess_stage(s), &area.base, &area.len);
	/* No lazy page (every VMA locked, say): no region, as for a plain dump. */
	if (!area.len)
		return -ENODATA;
	if (s->regions_late)
		return 0;
	ret = sess_register(s, &area, 1, "staging area");
	if (ret < 0)
		return ret;
	if (s->nr_mrs > SRC_PREREG_AREA_CHUNKS_MAX)
		return -E2BIG;
	for (i = 0; i < s->nr_mrs; i++) {
		if (s->regions_told & (1ull << i))
			continue;
		reg[n].addr = (uintptr_t)s->mrs[i]->addr;
		reg[n].len = s->mrs[i]->length;
		reg[n].rkey = s->mrs[i]->rkey;
		n++;
	}
	if (!n)
		return 0;
	ret = ctrl_msg_mem_regions(&o, reg, n);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret == 0)
		s->regions_told |= s->nr_mrs == 64 ? ~0ull : (1ull << s->nr_mrs) - 1;
	return ret;
}

static int send_regions(struct src_session *s)
{
	const struct imgmap *map = s->mig->map;
	struct ctrl_region regs[CTRL_REGIONS_MAX];
	struct ctrl_out o;
	size_t i, n = 0;
	int ret;

	if (map->lazy_dump)
		return send_stage_region(s);
	if (map->nr_files > CTRL_REGIONS_MAX)
		return -E2BIG;
	/* MemRegions lists one region at least: a checkpoint without lazy pages has none. */
	if (!map->lazy_bytes)
		return -ENODATA;
	ret = sess_register(s, map->files, map->nr_files, "checkpoint");
	if (ret < 0)
		return ret;
	for (i = 0; i < map->nr_files; i++) {
		if (!s->mrs[i])
			continue;
		/* A round's region maps its file at its own address (prereg.h). */
		regs[n].addr = (uintptr_t)s->mrs[i]->addr;
		regs[n].len = map->files[i].len;
		regs[n].rkey = s->mrs[i]->rkey;
		/* The round's own region, which a destination may have copied ahead. */
		regs[n].has_xxh3 =
		    src_prereg_region_xxh3(s->mig, s->mrs[i], map->files[i].len, &regs[n].xxh3);
		n++;
	}
	ret = ctrl_msg_mem_regions(&o, regs, n);
	return ret < 0 ? ret : sess_send(s, &o);
}

static int hole_cmp(const void *a, const void *b)
{
	const struct hole *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The lazy ranges of pages file `file`, as merged holes sorted by offset. */
static int file_holes(const struct imgmap *map, size_t file, struct hole **out, size_t *nr)
{
	struct hole *h = NULL;
	size_t i, j, n = 0, cap = 0, m;

	for (i = 0; i < map->nr_tasks; i++) {
		for (j = 0; j < map->tasks[i].nr_ranges; j++) {
			const struct imgmap_range *r = &map->tasks[i].ranges[j];

			if (r->file != file)
				continue;
			if (n == cap) {
				struct hole *nh;

				cap = cap ? cap * 2 : 64;
				nh = realloc(h, cap * sizeof(*h));
				if (!nh) {
					free(h);
					return -ENOMEM;
				}
				h = nh;
			}
			h[n].off = r->offset;
			h[n].len = r->len;
			n++;
		}
	}
	if (n)
		qsort(h, n, sizeof(*h), hole_cmp);
	for (i = 0, m = 0; i < n; i++) {
		if (m && h[m - 1].off + h[m - 1].len >= h[i].off) {
			uint64_t end = h[i].off + h[i].len;

			if (end > h[m - 1].off + h[m - 1].len)
				h[m - 1].len = end - h[m - 1].off;
		} else {
			h[m++] = h[i];
		}
	}
	*out = h;
	*nr = m;
	return 0;
}

/*
 * The image files go out a chunk at a time, paced by what the transport
 * still holds, so a large image neither fills memory nor trips the TCP
 * send limit; the loop stays free for other peers meanwhile.
 */
static bool stream_open_next(struct src_session *s)
{
	struct src_stream *st = &s->stream;
	const struct imgmap *map = s->mig->map;
	char path[4096];
	struct ctrl_err e;
	struct stat sb;
	size_t i;

	while (st->idx < st->n) {
		const char *name = st->ents[st->idx++]->d_name;

		if (name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", s->mig->dir, name);
		/* Only regular files: a `parent` link or sockets are not images to ship. */
		if (lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (ctrl_validate_file_name(name, &e) < 0) {
			log_warn("%s: not sending %s: %s", s->name, name, e.text);
			continue;
		}
		/* A pre-copy chain's pagemaps and pages go flat: imgflat.h says why. */
		if (imgflat_ship_path(s->mig->dir, name, path, sizeof(path)) < 0)
			continue;
		snprintf(st->name, sizeof(st->name), "%s", name);
		st->cur = 0;
		st->hi = 0;
		st->nh = 0;
		free(st->holes);
		st->holes = NULL;
		st->data = NULL;
		for (i = 0; i < map->nr_files; i++) {
			if (strcmp(map->files[i].path, path) == 0) {
				if (file_holes(map, i, &st->holes, &st->nh) < 0)
					return false;
				st->data = map->files[i].base;
				st->size = map->files[i].len;
				break;
			}
		}
		if (i == map->nr_files) {
			/* A FIFO swapped in since the lstat() must not block the loop. */
			st->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
			if (st->fd < 0 || fstat(st->fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
				log_err("%s: cannot read image %s: %s", s->name, path,
					st->fd < 0 || errno ? strerror(errno)
							    : "not a regular file any more");
				st->err = -EIO;
				return false;
			}
			st->size = (uint64_t)sb.st_size;
		}
		st->in_file = true;
		return true;
	}
	return false;
}

static void stream_close_file(struct src_stream *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
	st->in_file = false;
}

/* Sends the next chunk of the current file. */
static int stream_chunk(struct src_session *s)
{
	struct src_stream *st = &s->stream;
	struct ctrl_hole ch[CTRL_HOLES_MAX];
	struct ctrl_file_chunk c;
	struct ctrl_out o;
	uint64_t end = st->size, dlen;
	const uint8_t *data = NULL;
	size_t k = 0;
	int ret;

	if (st->hi < st->nh && st->holes[st->hi].off < end)
		end = st->holes[st->hi].off;
	dlen = end > st->cur ? end - st->cur : 0;
	if (dlen > CTRL_FILE_CHUNK_MAX)
		dlen = CTRL_FILE_CHUNK_MAX;
	if (dlen && st->data) {
		ret = imgmap_copy(st->buf, st->data + st->cur, dlen);
		if (ret < 0)
			return ret;
		data = st->buf;
	} else if (dlen) {
		ssize_t n = pread(st->fd, st->buf, dlen, (off_t)st->cur);

		if (n < 0 || (uint64_t)n != dlen) {
			log_err("%s: short read of image %s at offset %" PRIu64 ": %s", s->name,
				st->name, st->cur, n < 0 ? strerror(errno) : "file shrank");
			return -EIO;
		}
		data = st->buf;
	}
	memset(&c, 0, sizeof(c));
	c.name = st->name;
	c.total_size = st->size;
	c.offset = st->cur;
	c.data = data;
	c.data_len = dlen;
	st->cur += dlen;
	while (st->hi < st->nh && st->holes[st->hi].off == st->cur && k < CTRL_HOLES_MAX) {
		uint64_t hlen = st->holes[st->hi].len;

		if (st->holes[st->hi].off + hlen > st->size)
			hlen = st->size - st->holes[st->hi].off;
		ch[k].offset = st->holes[st->hi].off;
		ch[k].len = hlen;
		st->cur += hlen;
		k++;
		st->hi++;
	}
	c.holes = k ? ch : NULL;
	c.nr_holes = k;
	c.last = st->cur >= st->size;
	ret = ctrl_msg_image_file(&o, &c);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret == 0 && c.last) {
		stream_close_file(st);
		st->files++;
	}
	return ret;
}

static void stream_free(struct src_stream *st)
{
	int i;

	stream_close_file(st);
	for (i = 0; i < st->n; i++)
		free(st->ents[i]);
	free(st->ents);
	st->ents = NULL;
	st->n = 0;
	free(st->holes);
	st->holes = NULL;
	if (st->pump)
		event_free(st->pump);
	st->pump = NULL;
}

static int send_table(struct src_session *s, int32_t pid, const struct ctrl_range *r, size_t n,
		      bool last)
{
	struct ctrl_out o;
	int ret = ctrl_msg_task_table(&o, pid, r, n, last);

	return ret < 0 ? ret : sess_send(s, &o);
}

/*
 * A lazy dump's tables: its staging units, without an address or a
 * checksum yet (StageRegion brings both).  Units come in table order.
 */
static int send_stage_tables(struct src_session *s, uint32_t *tasks)
{
	const struct lazystage_unit *u;
	struct ctrl_range *r;
	size_t i, j, k, n;
	int ret = 0;

	u = lazystage_units(sess_stage(s), &n);
	s->stage_flags = calloc(n ? n : 1, 1);
	r = calloc(CTRL_RANGES_MAX, sizeof(*r));
	if (!r || !s->stage_flags) {
		free(r);
		return -ENOMEM;
	}
	*tasks = 0;
	for (i = 0; i < n && ret == 0; i = j) {
		for (j = i; j < n && u[j].pid == u[i].pid; j++)
			;
		for (k = i; k < j && ret == 0;) {
			size_t m = 0;

			for (; k < j && m < CTRL_RANGES_MAX; k++, m++) {
				memset(&r[m], 0, sizeof(r[m]));
				r[m].img_vaddr = u[k].img_vaddr;
				r[m].len = u[k].len;
			}
			ret = send_table(s, u[i].pid, r, m, k == j);
		}
		if (ret == 0)
			(*tasks)++;
	}
	free(r);
	return ret;
}

/* A unit's stage_flags. */
#define STAGE_ASKED 1u /* the destination asked for it (StageReq) */
#define STAGE_SENT  2u /* its StageRegion went on this connection */
/*
 * Units the first units' region holds (bounce.h): 8 MiB.  A restore asks
 * for a handful (each thread's rseq area, its stack's top); the workload's
 * first faults take the rest.
 */
#define SESS_BOUNCE_SLOTS 32u

/* u's stage_flags on this connection. */
static uint8_t *sess_unit_flags(const struct src_session *s, const struct lazystage_unit *u)
{
	size_t n;

	return &s->stage_flags[u - lazystage_units(sess_stage(s), &n)];
}

/* u's bytes in the staging area. */
static uint8_t *sess_unit_bytes(const struct src_session *s, const struct lazystage_unit *u)
{
	void *base;
	size_t len;

	lazystage_area(sess_stage(s), &base, &len);
	return (uint8_t *)base + u->area_off;
}

/* u's StageRegion; over RDMA readable at addr (0: its place in the staging area) with rkey. */
static int send_stage_unit(struct src_session *s, const struct lazystage_unit *u, uint64_t addr,
			   uint32_t rkey)
{
	struct ctrl_range r = {
	    .img_vaddr = u->img_vaddr,
	    .len = u->len,
	    .xxh3 = u->csum,
	};
	const uint64_t *tags;
	struct ctrl_out o;
	int ret;

	if (xport_kind(s->x) == XPORT_RDMA) {
		r.has_remote = true;
		r.remote_addr = addr ? addr : (uintptr_t)sess_unit_bytes(s, u);
		r.rkey = rkey;
	}
	/* Page tags go to a destination that verifies (sess_refusal(): the migration has them). */
	tags = (ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_VERIFY_PAGES) ? u->tags : NULL;
	ret = ctrl_msg_stage_region(&o, u->pid, &r, tags, tags ? u->len / IMG_PAGE_SIZE : 0);
	return ret < 0 ? ret : sess_send(s, &o);
}

/*
 * A fresh destination restores before its workload runs, on a host whose
 * CPU the restore needs: while it does (until its Running, FEAT_RESUME),
 * only the units it asked for are announced, the rest once it runs.  In
 * the guests the stream of StageRegions slowed criu restore's own steps
 * (performance.md "No StageRegions while the destination restores").
 */
static bool sess_stage_quiet(const struct src_session *s)
{
	return !s->running && (ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_RESUME);
}

/*
 * Over RDMA, the rkey of the staging area's region that holds u, that
 * region told first (MemRegions) if it was not on this connection.
 * -EAGAIN while u's chunk is still being registered (regions_late; with
 * want, that chunk goes next: a fault waits for u).
 */
static int sess_unit_rkey(struct src_session *s, const struct lazystage_unit *u, bool want,
			  uint32_t *rkey)
{
	struct ibv_mr *mr = NULL;
	struct ctrl_region reg = {0};
	struct ctrl_out o;
	unsigned int idx = 0;
	uint8_t *p;
	size_t i;
	int ret;

	*rkey = 0;
	if (xport_kind(s->x) != XPORT_RDMA)
		return 0;
	p = sess_unit_bytes(s, u);
	if (s->regions_late) {
		if (src_prereg_area_find(s->mig, xport_pd(s->x), p, u->len, want, &idx, &mr) < 0)
			return -EAGAIN;
	} else {
		for (i = 0; i < s->nr_mrs && !mr; i++)
			if (p >= (uint8_t *)s->mrs[i]->addr &&
			    (size_t)(p - (uint8_t *)s->mrs[i]->addr) < s->mrs[i]->length &&
			    u->len <=
				s->mrs[i]->length - (size_t)(p - (uint8_t *)s->mrs[i]->addr)) {
				mr = s->mrs[i];
				idx = (unsigned int)i;
			}
		if (!mr)
			return -ENOENT;
	}
	if (!(s->regions_told & (1ull << idx))) {
		reg.addr = (uintptr_t)mr->addr;
		reg.len = mr->length;
		reg.rkey = mr->rkey;
		ret = ctrl_msg_mem_regions(&o, &reg, 1);
		if (ret == 0)
			ret = sess_send(s, &o);
		if (ret < 0)
			return ret;
		s->regions_told |= 1ull << idx;
	}
	*rkey = mr->rkey;
	return 0;
}

static int sess_announce_bounce(struct src_session *s, const struct lazystage_unit *u);

/*
 * u's StageRegion, once, unless the destination restores and did not ask
 * for it, or its chunk of the staging area is not registered yet (it goes
 * then, src_session_area_chunk(), or from the first units' region if it
 * was asked for).
 */
static int sess_announce(struct src_session *s, const struct lazystage_unit *u)
{
	uint8_t *f = sess_unit_flags(s, u);
	uint32_t rkey;
	int ret;

	if ((*f & STAGE_SENT) || (sess_stage_quiet(s) && !(*f & STAGE_ASKED)))
		return 0;
	ret = sess_unit_rkey(s, u, *f & STAGE_ASKED, &rkey);
	if (ret == -EAGAIN)
		return (*f & STAGE_ASKED) ? sess_announce_bounce(s, u) : 0;
	if (ret == 0)
		ret = send_stage_unit(s, u, 0, rkey);
	if (ret == 0) {
		*f |= STAGE_SENT;
		if (*f & STAGE_ASKED)
			log_debug("%s: pid %d at 0x%" PRIx64 ", asked for, announced", s->name,
				  u->pid, u->img_vaddr);
	}
	return ret;
}

/*
 * A unit the destination asked for while its chunk of the staging area is
 * still being registered (regions_late): announced from a slot of the
 * session's first units' region (registered when the stream started,
 * sess_bounce_prepare(), or else now), whose MemRegions goes before it.
 * When the region cannot be made, is still being registered or is full,
 * the unit waits for its chunk, which is registered next, or for the
 * region (sess_bounce_ready()).
 */
static int sess_announce_bounce(struct src_session *s, const struct lazystage_unit *u)
{
	uint8_t *f = sess_unit_flags(s, u);
	struct ctrl_region reg = {0};
	struct ctrl_out o;
	uint64_t addr;
	uint32_t rkey;
	int ret;

	if (s->bounce_failed)
		return 0;
	if (!s->bounce) {
		ret = bounce_open(xport_pd(s->x), SESS_BOUNCE_SLOTS, LAZYSTAGE_UNIT, &s->bounce);
		if (ret < 0) {
			log_warn("%s: units asked for wait for the staging area's registration",
				 s->name);
			s->bounce_failed = true;
			return 0;
		}
		log_info("%s: the staging area is still being registered: the units the "
			 "destination asks for are announced from a region of %u of their own",
			 s->name, SESS_BOUNCE_SLOTS);
	}
	if (!bounce_ready(s->bounce))
		return 0;
	if (!s->bounce_told) {
		bounce_region(s->bounce, &reg.addr, &reg.len, &reg.rkey);
		ret = ctrl_msg_mem_regions(&o, &reg, 1);
		if (ret == 0)
			ret = sess_send(s, &o);
		if (ret < 0)
			return ret;
		s->bounce_told = true;
	}
	if (bounce_put(s->bounce, sess_unit_bytes(s, u), u->len, &addr, &rkey) < 0)
		return 0;
	ret = send_stage_unit(s, u, addr, rkey);
	if (ret == 0) {
		*f |= STAGE_SENT;
		log_debug("%s: pid %d at 0x%" PRIx64 ", asked for, announced from the first units' "
			  "region",
			  s->name, u->pid, u->img_vaddr);
	}
	return ret;
}

static int send_staged_so_far(struct src_session *s);

/* The first units' region registered off the loop is in: the asked units waiting for it go. */
static void sess_bounce_ready(struct bounce *b, int ret, void *arg)
{
	struct src_session *s = arg;

	if (ret < 0) {
		log_warn("%s: units asked for wait for the staging area's registration", s->name);
		bounce_close(b);
		s->bounce = NULL;
		s->bounce_failed = true;
		return;
	}
	if (sess_not_served_yet(s))
		log_info("%s: a region for the first %u units the destination asks for is "
			 "registered before the dump",
			 s->name, SESS_BOUNCE_SLOTS);
	else
		log_info("%s: the staging area is still being registered: the units the "
			 "destination asks for are announced from a region of %u of their own, "
			 "registered meanwhile",
			 s->name, SESS_BOUNCE_SLOTS);
	if (s->stage_live && s->regions_late && send_staged_so_far(s) < 0)
		sess_abort(s, CTRL_ABORT_INTERNAL, "cannot announce the staged units");
}

/*
 * The staging area is registered while the destination restores: the
 * first units' region is registered now on the offload thread, in the
 * migration's PD, so that the restore's first request does not wait for
 * it on the loop (0.1-0.25 s in the guests).  On failure it is made at
 * that request, as before.
 */
static void sess_bounce_prepare(struct src_session *s)
{
	struct rdma_pd *pd = src_prereg_pd(s->mig);

	if (s->bounce || !s->agent->offload || !pd || rdma_pd_ibv(pd) != xport_pd(s->x))
		return;
	if (bounce_open_async(s->agent->offload, pd, SESS_BOUNCE_SLOTS, LAZYSTAGE_UNIT,
			      sess_bounce_ready, s, &s->bounce) < 0)
		s->bounce = NULL;
}

/* After ImagesDone: every unit staged so far; the rest as they come (src_session_staged()). */
static int send_staged_so_far(struct src_session *s)
{
	const struct lazystage_unit *u;
	size_t i, n;
	int ret = 0;

	u = lazystage_units(sess_stage(s), &n);
	for (i = 0; i < n && ret == 0; i++)
		if (u[i].state == LAZYSTAGE_STAGED)
			ret = sess_announce(s, &u[i]);
	s->stage_live = ret == 0;
	return ret;
}

static int send_tables(struct src_session *s, uint32_t *tasks)
{
	const struct imgmap *map = s->mig->map;
	struct ctrl_range *r;
	size_t i, j, k, n;
	bool rdma = xport_kind(s->x) == XPORT_RDMA;
	int ret = 0;

	if (map->lazy_dump)
		return send_stage_tables(s, tasks);
	r = calloc(CTRL_RANGES_MAX, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*tasks = 0;
	for (i = 0; i < map->nr_tasks && ret == 0; i++) {
		const struct imgmap_task *t = &map->tasks[i];

		if (t->nr_ranges == 0)
			continue;
		for (j = 0; j < t->nr_ranges && ret == 0; j += n) {
			n = t->nr_ranges - j;
			if (n > CTRL_RANGES_MAX)
				n = CTRL_RANGES_MAX;
			for (k = 0; k < n; k++) {
				const struct imgmap_range *ir = &t->ranges[j + k];

				r[k].img_vaddr = ir->img_vaddr;
				r[k].len = ir->len;
				r[k].xxh3 = ir->csum;
				r[k].has_remote = rdma;
				if (rdma) {
					r[k].remote_addr =
					    (uintptr_t)s->mrs[ir->file]->addr + ir->offset;
					r[k].rkey = s->mrs[ir->file]->rkey;
				}
			}
			ret = send_table(s, t->pid, r, n, j + n == t->nr_ranges);
		}
		if (ret == 0)
			(*tasks)++;
	}
	free(r);
	return ret;
}

static int send_page_hashes(struct src_session *s)
{
	const struct imgmap *map = s->mig->map;
	struct ctrl_out o;
	size_t i, j;
	uint64_t p, n, pages;
	int ret = 0;

	for (i = 0; i < map->nr_tasks && ret == 0; i++) {
		const struct imgmap_task *t = &map->tasks[i];

		for (j = 0; j < t->nr_ranges && ret == 0; j++) {
			const struct imgmap_range *r = &t->ranges[j];

			pages = r->len / IMG_PAGE_SIZE;
			for (p = 0; p < pages && ret == 0; p += n) {
				n = pages - p;
				if (n > CTRL_PAGE_HASHES_MAX)
					n = CTRL_PAGE_HASHES_MAX;
				ret = ctrl_msg_page_hashes(&o, t->pid,
							   r->img_vaddr + p * IMG_PAGE_SIZE,
							   r->page_hashes + p, (size_t)n);
				if (ret == 0)
					ret = sess_send(s, &o);
			}
		}
	}
	return ret;
}

/*
 * The tables (with this connection's rkeys over RDMA), the page checksums
 * unless resuming (a destination back from a pause has them; a worker that
 * took over asks for them again), and ImagesDone; a lazy dump's staged
 * units then, each with its tags.
 */
static void stream_finish(struct src_session *s, bool resume)
{
	const struct ctrl_negotiated *neg = ctrl_state_negotiated(&s->st);
	struct ctrl_out o;
	uint32_t tasks = 0;
	char sz[32];
	int ret;

	ret = send_tables(s, &tasks);
	/* A lazy dump's tags go with its StageRegions. */
	if (ret == 0 && (!resume || s->resend_hashes) && (neg->features & CTRL_FEAT_VERIFY_PAGES) &&
	    !s->mig->map->lazy_dump)
		ret = send_page_hashes(s);
	if (ret == 0)
		ret = ctrl_msg_images_done(&o, s->stream.files, tasks, s->mig->map->lazy_bytes);
	if (ret == 0)
		ret = sess_send(s, &o);
	s->images_done = ret == 0;
	/* While regions_late, the units of chunks not registered yet go as they are. */
	if (ret == 0 && s->mig->map->lazy_dump)
		ret = send_staged_so_far(s);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_IMAGES, "cannot send the range tables");
		return;
	}
	log_info("%s: sent %u image files and %u range tables; %s of lazy pages to serve", s->name,
		 s->stream.files, tasks, fmt_bytes(s->mig->map->lazy_bytes, sz, sizeof(sz)));
	stream_free(&s->stream);
}

static void stream_pump(evutil_socket_t fd, short what, void *arg)
{
	struct src_session *s = arg;
	struct src_stream *st = &s->stream;
	struct timeval tv = {0, 2000};
	int ret = 0;

	while (xport_pending(s->x) < STREAM_HIGH_WATER) {
		if (!st->in_file && !stream_open_next(s)) {
			if (st->err < 0) {
				sess_abort(s, CTRL_ABORT_IMAGES, "cannot read the images");
				return;
			}
			stream_finish(s, false);
			return;
		}
		ret = stream_chunk(s);
		if (ret == -EFAULT) {
			sess_fail_changed(s, NULL);
			return;
		}
		if (ret < 0) {
			sess_abort(s, CTRL_ABORT_IMAGES, "cannot send the images");
			return;
		}
	}
	/* The transport is full: come back once some of it has gone out. */
	event_add(st->pump, &tv);
}

/* Over RDMA, registers the pages files in this connection's PD and sends MemRegions. */
static int sess_expose(struct src_session *s)
{
	char why[SRC_MIG_ERROR_MAX];
	int ret;

	if (xport_kind(s->x) != XPORT_RDMA)
		return 0;
	ret = send_regions(s);
	if (ret == -ENODATA) {
		/*
		 * criu marked no page lazy (every VMA locked, say): nothing to
		 * READ, so no region; the pages files go whole with the images
		 * and the restore installs every page before the workload runs.
		 */
		log_warn("%s: %s has no lazy pages (%zu task(s)): every page goes with the "
			 "images, none by RDMA READ",
			 s->name, s->mig->dir, s->mig->map->nr_tasks);
		return 0;
	}
	if (ret < 0) {
		snprintf(why, sizeof(why), "cannot register the checkpoint for RDMA: %s",
			 strerror(-ret));
		sess_abort(s, CTRL_ABORT_READ, why);
	}
	return ret;
}

/*
 * A lazy dump's stage, made at its first serving session; with the
 * migration's page tags (verify), computed as each unit is staged.
 */
static int sess_open_stage(struct src_session *s)
{
	struct src_migration *m = s->mig;
	uint8_t key[MSGAUTH_PAGE_KEY_LEN];
	int ret;

	if (src_lazydump_stage_of(m->lazy))
		return 0;
	if (m->verify) {
		ret = msgauth_page_key(m->secret, m->id, key);
		if (ret < 0)
			return ret;
	}
	ret = src_lazydump_stage(m->lazy, m->map->set, m->verify ? key : NULL);
	explicit_bzero(key, sizeof(key));
	return ret;
}

/*
 * The peer is authenticated for this migration: now, and only now, expose
 * memory.  0, or -1 when the session ended.
 */
static int sess_serve(struct src_session *s, const char *what)
{
	if (!sess_images_intact(s))
		return -1;
	log_info("%s: %s over %s", s->name, what,
		 xport_transport_str(xport_kind(s->x), s->agent->data_tls));
	src_mig_set_state(s->mig, SRC_MIG_SERVING);
	if (!s->mig->started_ns)
		s->mig->started_ns = now_ns();
	/* The page server serves one client: the stage outlives sessions, made once. */
	if (s->mig->lazy_dump && sess_open_stage(s) < 0) {
		sess_abort(s, CTRL_ABORT_READ, "cannot reach the lazy dump's page server");
		return -1;
	}
	return sess_expose(s) < 0 ? -1 : 0;
}

/*
 * The destination runs the workload and comes back after a pause: the
 * same tables (new rkeys over RDMA) without the files, then reads again.
 */
static void sess_resume(struct src_session *s)
{
	if (sess_serve(s, "the destination resumes post-copy") == 0)
		stream_finish(s, true);
}

/*
 * A lazy dump's staging area still being registered (prereg.h), for a
 * destination that takes its MemRegions after ImagesDone: its restore
 * need not wait for the registration, which grows with the lazy set.
 */
static bool sess_regions_late(const struct src_session *s)
{
	return xport_kind(s->x) == XPORT_RDMA && s->mig->lazy_dump &&
	       (ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_LATE_REGIONS) &&
	       src_prereg_pending(s->mig);
}

/*
 * The late registration ended: the staging area's regions not told yet
 * now (taken from prereg, or registered here whole if it failed), then,
 * once ImagesDone went, every unit staged so far.
 */
static void sess_send_late_regions(struct src_session *s)
{
	int ret;

	s->regions_late = false;
	if (s->regions_told)
		log_info("%s: the units of %d chunk(s) of the staging area were announced before "
			 "the whole area was registered",
			 s->name, __builtin_popcountll(s->regions_told));
	if (bounce_used(s->bounce))
		log_info("%s: %u unit(s) asked for while the staging area was registered were "
			 "announced from their own region",
			 s->name, bounce_used(s->bounce));
	ret = send_stage_region(s);
	if (ret == -ENODATA) /* nothing lazy: nothing to read (sess_expose()) */
		ret = 0;
	if (ret == 0 && s->images_done)
		ret = send_staged_so_far(s);
	if (ret < 0) {
		char why[SRC_MIG_ERROR_MAX];

		snprintf(why, sizeof(why), "cannot register the staging area for RDMA: %s",
			 strerror(-ret));
		sess_abort(s, CTRL_ABORT_READ, why);
	}
}

/*
 * FEAT_ROUNDS: the round regions registered since the last call, one
 * RoundPages per round, to the held destination.  Only in the PD the
 * rounds are registered in: an rkey of another PD would break its QP.
 */
static void sess_send_rounds(struct src_session *s)
{
	size_t n = src_prereg_round_regions(s->mig), i = s->rounds_sent;
	struct ctrl_region regs[CTRL_REGIONS_MAX];
	uint64_t bytes = 0;
	struct ctrl_out o;
	char sz[32];

	if (!s->owner || !s->await_served || xport_kind(s->x) != XPORT_RDMA ||
	    !(ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_ROUNDS))
		return;
	if (!src_prereg_pd(s->mig) || xport_shared_pd(s->x) != src_prereg_pd(s->mig)) {
		if (i < n)
			log_warn(
			    "%s: the destination's connection is not in the rounds' protection "
			    "domain: their pages are read in post-copy",
			    s->name);
		s->rounds_sent = n;
		return;
	}
	while (i < n) {
		const struct src_round_region *r = src_prereg_round_region(s->mig, i);
		uint32_t round = r->round;
		size_t k = 0;

		for (; i < n && k < CTRL_REGIONS_MAX; i++) {
			r = src_prereg_round_region(s->mig, i);
			if (r->round != round)
				break;
			if (r->gone)
				continue;
			regs[k++] = r->g;
			bytes += r->g.len;
		}
		if (k && (ctrl_msg_round_pages(&o, round, regs, k) < 0 || sess_send(s, &o) < 0)) {
			/* Only the copies are lost: every page is still read in post-copy. */
			log_warn("%s: cannot announce pre-copy round %" PRIu32, s->name, round);
			break;
		}
		if (k) {
			s->rounds_last = round;
			log_info("%s: pre-copy round %" PRIu32 " announced to the destination: %zu "
				 "region(s), %s",
				 s->name, round, k, fmt_bytes(bytes, sz, sizeof(sz)));
		}
		bytes = 0;
	}
	s->rounds_sent = n;
}

bool src_session_rounds_copying(const struct src_agent *a, const struct src_migration *m)
{
	const struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig == m && s->owner && s->await_served && s->rounds_last > s->rounds_copied)
			return true;
	}
	return false;
}

void src_session_rounds_stop(struct src_agent *a, const struct src_migration *m)
{
	struct src_session *s;
	struct ctrl_out o;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig != m || !s->owner || !s->await_served || s->rounds_stop_sent ||
		    s->rounds_last <= s->rounds_copied)
			continue;
		s->rounds_stop_sent = true;
		log_info("%s: asking the destination to stop copying the pre-copy rounds before "
			 "the freeze",
			 s->name);
		/* A send that fails has lost the connection: its close ends the wait. */
		if (ctrl_msg_rounds_stop(&o) == 0 && sess_send(s, &o) < 0)
			log_warn("%s: cannot send RoundsStop", s->name);
	}
}

void src_session_rounds(struct src_agent *a, const struct src_migration *m)
{
	struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig == m && s->owner && s->await_served)
			sess_send_rounds(s);
	}
}

static void sess_start_stream(struct src_session *s)
{
	struct src_stream *st = &s->stream;

	/* FEAT_EARLY: no rkey, address or image before the checkpoint exists. */
	s->await_served = sess_not_served_yet(s);
	if (s->await_served) {
		log_info("%s: destination authenticated before the checkpoint exists: held until "
			 "the migration serves",
			 s->name);
		sess_send_rounds(s);
		return;
	}
	/*
	 * Its registration is under way (prereg.h): the stream starts when it
	 * ends, or, for a lazy dump's staging area, goes on without it.
	 */
	s->regions_late = sess_regions_late(s);
	s->await_prereg =
	    !s->regions_late && xport_kind(s->x) == XPORT_RDMA && src_prereg_pending(s->mig);
	if (s->regions_late) {
		log_info("%s: destination authenticated; the staging area's registration goes on "
			 "while the images go out",
			 s->name);
		sess_bounce_prepare(s);
	}
	if (s->await_prereg) {
		log_info("%s: destination authenticated; waiting for the checkpoint's registration",
			 s->name);
		return;
	}
	if (sess_serve(s, "destination authenticated; sending images") < 0)
		return;
	st->n = scandir(s->mig->dir, &st->ents, NULL, alphasort);
	if (st->n < 0) {
		log_err("%s: cannot list %s: %s", s->name, s->mig->dir, strerror(errno));
		st->n = 0;
		sess_abort(s, CTRL_ABORT_IMAGES, "cannot list the images");
		return;
	}
	st->pump = evtimer_new(s->agent->base, stream_pump, s);
	if (!st->pump) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "out of memory");
		return;
	}
	stream_pump(-1, 0, s);
}

static int on_read_req(struct src_session *s, const ReadReq *r)
{
	const void *data = NULL;
	struct ctrl_out o;
	int status, ret;

	if (s->mig->lazy_dump)
		status = sess_stage(s)
			     ? lazystage_locate(sess_stage(s), r->pid, r->img_vaddr, r->len, &data)
			     : -EAGAIN;
	else
		status = imgmap_locate(s->mig->map, r->pid, r->img_vaddr, r->len, &data);
	if (status == 0 && !s->rbuf && !(s->rbuf = malloc(CTRL_READ_MAX))) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	/* Copied out of the mapping under the SIGBUS guard: the file may have shrunk. */
	if (status == 0 && imgmap_copy(s->rbuf, data, r->len) < 0) {
		sess_fail_changed(s, NULL);
		return -EFAULT;
	}
	ret = ctrl_msg_read_resp(&o, r->cookie, status, status == 0 ? s->rbuf : NULL,
				 status == 0 ? r->len : 0);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_READ, "cannot answer a read");
		return ret;
	}
	if (status == 0) {
		s->mig->reads_served++;
		s->mig->bytes_served += r->len;
	}
	return 0;
}

static void on_done(struct src_session *s, const Done *d)
{
	struct src_agent *a = s->agent;
	struct src_migration *m = s->mig;
	struct ctrl_out o;
	char sz[32];

	uint64_t digest = m->map->digest;

	if (m->lazy_dump && lazystage_digest(sess_stage(s), &digest) < 0) {
		sess_abort(s, CTRL_ABORT_VERIFY, "Done before every unit was staged");
		return;
	}
	if (d->digest != digest) {
		sess_abort(s, CTRL_ABORT_VERIFY,
			   "Done digest does not match the ranges this source sent");
		return;
	}
	m->done_ns = now_ns();
	m->has_progress = true;
	m->prog_pages = d->pages;
	m->prog_bytes = d->bytes;
	if (ctrl_msg_done_ack(&o, true, NULL) == 0)
		sess_send(s, &o);
	log_info("migration %s done: the destination installed %" PRIu64 " pages (%s), %" PRIu64
		 " ranges verified, in %.2f s; checkpoint released",
		 m->id, d->pages, fmt_bytes(d->bytes, sz, sizeof(sz)), d->ranges_verified,
		 (double)(m->done_ns - m->started_ns) / 1e9);
	/* Its regions go with the session; the mapping and the secret at once after. */
	sess_free(s);
	/* The destination has every page: the source's stopped copy must never run again. */
	if (m->lazy)
		src_lazydump_release(m->lazy);
	src_mig_finish(m, SRC_MIG_DONE, NULL);
	if (a->exit_when_done && src_mig_all_done(&a->migrations))
		event_base_loopexit(a->base, NULL);
}

/*
 * The destination's fault lane: a second QP in this connection's PD, so the
 * rkeys already sent work on it.  It exists only from here, after the
 * proof (the message is illegal before it, and sealed), and it is connected
 * only to the authenticated peer's QP along this connection's path.  A lane
 * that cannot be made is not fatal: without the answer the destination
 * keeps its faults on the first QP.
 */
static void on_fault_lane(struct src_session *s, const FaultLane *fl)
{
	struct ctrl_out o;
	uint32_t qpn, psn;
	int ret;

	/* The source only answers READs on it: one send slot is the minimum a QP takes. */
	ret = xport_lane_create(s->x, 1, &qpn, &psn);
	if (ret == 0)
		ret = xport_lane_connect(s->x, fl->qpn, fl->psn);
	if (ret < 0) {
		log_warn("%s: no fault lane (%s); faults share the first queue pair", s->name,
			 strerror(-ret));
		return;
	}
	if (ctrl_msg_fault_lane(&o, qpn, psn) == 0 && sess_send(s, &o) == 0)
		log_info("%s: fault lane up (QP %" PRIu32 ")", s->name, qpn);
}

/*
 * One of the destination's extra drain QPs (FEAT_DRAIN_QPS): made and
 * answered like the fault lane; one that cannot be made leaves the
 * destination's drain on the QPs it has.
 */
static void on_drain_lane(struct src_session *s, const DrainLane *dl)
{
	struct ctrl_out o;
	uint32_t qpn, psn;
	int ret;

	ret = xport_drain_create(s->x, dl->index, &qpn, &psn);
	if (ret == 0)
		ret = xport_drain_connect(s->x, dl->index, dl->qpn, dl->psn);
	if (ret < 0) {
		log_warn("%s: no drain QP %" PRIu32 " (%s)", s->name, dl->index, strerror(-ret));
		return;
	}
	if (ctrl_msg_drain_lane(&o, dl->index, qpn, psn) == 0 && sess_send(s, &o) == 0)
		log_info("%s: drain QP %" PRIu32 " up (QP %" PRIu32 ")", s->name, dl->index, qpn);
}

/* A staged unit the destination asked for: announced once StageRegions flow (stage_live). */
static int sess_announce_asked(struct src_session *s, const struct lazystage_unit *u)
{
	return s->stage_live ? sess_announce(s, u) : 0;
}

/* A fault on the destination waits for this unit: it goes ahead of the pull. */
static void on_stage_req(struct src_session *s, const StageReq *r)
{
	const struct lazystage_unit *u;
	int ret;

	u = sess_stage(s) ? lazystage_find(sess_stage(s), r->pid, r->img_vaddr) : NULL;
	if (!u || !s->stage_flags) {
		sess_abort(s, CTRL_ABORT_PROTOCOL, "StageReq for no unit start of the tables");
		return;
	}
	if (*sess_unit_flags(s, u) & STAGE_ASKED) {
		sess_abort(s, CTRL_ABORT_PROTOCOL, "StageReq repeated for one unit");
		return;
	}
	*sess_unit_flags(s, u) |= STAGE_ASKED;
	log_debug("%s: StageReq for pid %d at 0x%" PRIx64 ": %s", s->name, r->pid, r->img_vaddr,
		  u->state == LAZYSTAGE_STAGED	? "staged already"
		  : u->state == LAZYSTAGE_ASKED ? "asked of the page server already"
						: "asked of the page server now");
	/* Staged already but held back while the destination restores (sess_stage_quiet()). */
	if (u->state == LAZYSTAGE_STAGED) {
		if (sess_announce_asked(s, u) < 0)
			sess_abort(s, CTRL_ABORT_INTERNAL, "cannot announce a staged unit");
		return;
	}
	ret = lazystage_want(sess_stage(s), r->pid, r->img_vaddr);
	if (ret < 0)
		log_warn("%s: cannot stage pid %d at 0x%" PRIx64 " first: %s", s->name, r->pid,
			 r->img_vaddr, strerror(-ret));
	/* Its chunk of the staging area is registered next, while the unit is pulled. */
	if (s->regions_late && xport_kind(s->x) == XPORT_RDMA) {
		struct ibv_mr *mr;
		unsigned int idx;

		(void)src_prereg_area_find(s->mig, xport_pd(s->x), sess_unit_bytes(s, u), u->len,
					   true, &idx, &mr);
	}
}

/*
 * FEAT_RESUME: a fresh destination takes the images, one that runs the
 * workload resumes.  A paused migration is only ever resumed: a second
 * destination starting it would run the workload twice.
 */
/*
 * The destination of a migration already done comes back: its DoneAck was
 * lost, so it paused and reconnected.  It proved the secret, and only the
 * destination that ran the migration has it, so it is told it is done with
 * the DoneAck it missed (legal in the image phase for this answer alone,
 * protocol.md §7.3): it sent Done only once every page was in, and this
 * source released the checkpoint then.  Safer than the destination taking a
 * refusal as success: a refusal before the proof is not authenticated, and
 * a destination that only believes it is done must not end while the
 * source may still roll back.  A fresh destination is refused: the workload
 * runs elsewhere.
 */
static void sess_answer_done(struct src_session *s, bool resume)
{
	struct ctrl_out o;

	if (!resume) {
		sess_abort(s, CTRL_ABORT_MIGRATION, "migration is already done");
		return;
	}
	log_info("%s: the destination reconnected after Done: answering DoneAck again (its "
		 "first was lost)",
		 s->name);
	if (ctrl_msg_done_ack(&o, true, "migration already done") == 0)
		sess_send(s, &o);
	sess_free(s);
}

static void on_attach(struct src_session *s, const Attach *at)
{
	if (s->attached || !s->owner) {
		sess_abort(s, CTRL_ABORT_PROTOCOL, "Attach out of order");
		return;
	}
	s->attached = true;
	if (s->mig->state == SRC_MIG_DONE) {
		sess_answer_done(s, at->resume);
		return;
	}
	if (at->resume) {
		/* Its workload runs: losing it again pauses, whatever was resent. */
		s->running = true;
		s->resend_hashes = at->has_page_hashes && at->page_hashes;
		sess_resume(s);
		return;
	}
	if (s->mig->state == SRC_MIG_PAUSED) {
		sess_abort(s, CTRL_ABORT_MIGRATION,
			   "migration is paused: only the destination that runs it may resume it");
		return;
	}
	sess_start_stream(s);
}

/*
 * The resuming destination's queue pair (protocol.md §7.4): ours is made
 * on the device of this side channel's address, connected to the peer's,
 * and taken as a new incoming control connection, which then runs the
 * whole handshake again; the side channel only answers where ours is.
 */
static void on_rc_connect(struct src_session *s, const RcConnect *rc)
{
	struct rcqp_addr peer = {
	    .qpn = rc->qpn, .psn = rc->psn, .mtu = rc->mtu, .rd_atomic = rc->rd_atomic};
	struct rcqp_addr mine;
	struct xport *x = NULL;
	struct ctrl_out o;
	const char *why;
	int ret;

	if (!s->rc_side || s->rc_made) {
		sess_abort(s, CTRL_ABORT_PROTOCOL, "RcConnect out of order");
		return;
	}
	s->rc_made = true;
	memcpy(peer.gid, rc->gid.data, RCQP_GID_LEN);
	/* The migration may have been cancelled, taken or ended since the proof. */
	why = s->mig ? sess_rc_side_refusal(s, &ret) : "migration is no longer served";
	if (why) {
		sess_abort(s, CTRL_ABORT_MIGRATION, why);
		return;
	}
	ret = xport_rc_make(s->agent->base, s->x, s->agent->rc_side, &x, &mine);
	if (ret == 0)
		ret = xport_rc_connect(x, &peer);
	if (ret == 0)
		ret = src_session_start(s->agent, x);
	if (ret < 0) {
		if (x)
			xport_close(x);
		sess_abort(s, CTRL_ABORT_INTERNAL,
			   "cannot make a queue pair for the resumed connection");
		return;
	}
	log_info("%s: queue pair %" PRIu32 " made by hand for the resuming destination's %" PRIu32,
		 s->name, mine.qpn, peer.qpn);
	if (ctrl_msg_rc_connect(&o, mine.qpn, mine.psn, mine.gid, mine.mtu, mine.rd_atomic) < 0 ||
	    sess_send(s, &o) < 0)
		sess_free(s);
}

/* ---- receive: one handler per message type (ctrlconn.h) ---- */

static void sess_msg_hello(void *arg, const RdmigMsg *m)
{
	on_hello(arg, m->hello);
}

static void sess_msg_auth_proof(void *arg, const RdmigMsg *m)
{
	on_auth_proof(arg, m->auth_proof);
}

static void sess_msg_auth_result(void *arg, const RdmigMsg *m)
{
	struct src_session *s = arg;

	if (!m->auth_result->ok) {
		log_err("%s: the destination refused this source's proof: %s", s->name,
			m->auth_result->reason ? m->auth_result->reason : "no reason");
		sess_free(s);
		return;
	}
	if (s->ctl)
		log_info("%s: fault connection up", s->name);
	else if (s->rc_side)
		log_info("%s: RC side channel up", s->name);
	/* With FEAT_RESUME nothing is streamed before the destination's Attach. */
	else if (!(ctrl_state_negotiated(&s->st)->features & CTRL_FEAT_RESUME))
		sess_start_stream(s);
}

static void sess_msg_attach(void *arg, const RdmigMsg *m)
{
	on_attach(arg, m->attach);
}

/* The destination runs the workload: the units held back while it restored go now. */
static void sess_announce_held(struct src_session *s)
{
	const struct lazystage_unit *u;
	size_t i, n, held = 0;

	u = lazystage_units(sess_stage(s), &n);
	for (i = 0; i < n; i++)
		held += u[i].state == LAZYSTAGE_STAGED && !(s->stage_flags[i] & STAGE_SENT);
	if (held)
		log_info("%s: %zu staged unit(s) held back while the destination restored: "
			 "announced now",
			 s->name, held);
	if (send_staged_so_far(s) < 0)
		sess_abort(s, CTRL_ABORT_INTERNAL, "cannot announce the staged units");
}

static void sess_msg_running(void *arg, const RdmigMsg *m)
{
	struct src_session *s = arg;

	s->running = true;
	log_info("%s: the workload runs on the destination: a loss pauses the migration", s->name);
	/* The units held back while it restored (sess_stage_quiet()). */
	if (s->stage_live)
		sess_announce_held(s);
}

static void sess_msg_read_req(void *arg, const RdmigMsg *m)
{
	on_read_req(arg, m->read_req);
}

static void sess_msg_progress(void *arg, const RdmigMsg *m)
{
	struct src_session *s = arg;

	log_debug("%s: progress %" PRIu64 " pages, %" PRIu64 " faults", s->name, m->progress->pages,
		  m->progress->faults);
	if (s->owner) {
		s->mig->has_progress = true;
		s->mig->prog_pages = m->progress->pages;
		s->mig->prog_bytes = m->progress->bytes;
		s->mig->prog_faults = m->progress->faults;
	}
}

static void sess_msg_done(void *arg, const RdmigMsg *m)
{
	on_done(arg, m->done);
}

static void sess_msg_fault_lane(void *arg, const RdmigMsg *m)
{
	on_fault_lane(arg, m->fault_lane);
}

static void sess_msg_drain_lane(void *arg, const RdmigMsg *m)
{
	on_drain_lane(arg, m->drain_lane);
}

static void sess_msg_stage_req(void *arg, const RdmigMsg *m)
{
	on_stage_req(arg, m->stage_req);
}

/* FEAT_ROUNDS: the destination's copying of the rounds announced up to one ended. */
static void sess_msg_rounds_copied(void *arg, const RdmigMsg *m)
{
	struct src_session *s = arg;
	const RoundsCopied *rc = m->rounds_copied;
	char sz[32];

	if (rc->round > s->rounds_last || rc->round <= s->rounds_copied) {
		sess_abort(s, CTRL_ABORT_PROTOCOL, "RoundsCopied for no round announced since");
		return;
	}
	s->rounds_copied = rc->round;
	log_info("%s: the destination copied the pre-copy rounds up to %" PRIu32 " (%s kept)",
		 s->name, rc->round, fmt_bytes(rc->bytes, sz, sizeof(sz)));
}

static void sess_msg_rc_connect(void *arg, const RdmigMsg *m)
{
	on_rc_connect(arg, m->rc_connect);
}

static void sess_msg_abort(void *arg, const RdmigMsg *m)
{
	struct src_session *s = arg;

	log_err("%s: the destination aborted: %s (%s); keeping the checkpoint", s->name,
		m->abort->reason ? m->abort->reason : "no reason", ctrl_abort_str(m->abort->code));
	sess_free(s);
}

static void sess_refused(void *arg, uint32_t code, const char *why)
{
	sess_abort(arg, code, why);
}

static const struct ctrlconn_handlers sess_handlers = {
    .on =
	{
	    [RDMIG_MSG__BODY_HELLO] = sess_msg_hello,
	    [RDMIG_MSG__BODY_AUTH_PROOF] = sess_msg_auth_proof,
	    [RDMIG_MSG__BODY_AUTH_RESULT] = sess_msg_auth_result,
	    [RDMIG_MSG__BODY_ATTACH] = sess_msg_attach,
	    [RDMIG_MSG__BODY_RUNNING] = sess_msg_running,
	    [RDMIG_MSG__BODY_READ_REQ] = sess_msg_read_req,
	    [RDMIG_MSG__BODY_PROGRESS] = sess_msg_progress,
	    [RDMIG_MSG__BODY_KEEPALIVE] = ctrlconn_ignore,
	    [RDMIG_MSG__BODY_DONE] = sess_msg_done,
	    [RDMIG_MSG__BODY_FAULT_LANE] = sess_msg_fault_lane,
	    [RDMIG_MSG__BODY_DRAIN_LANE] = sess_msg_drain_lane,
	    [RDMIG_MSG__BODY_STAGE_REQ] = sess_msg_stage_req,
	    [RDMIG_MSG__BODY_ROUNDS_COPIED] = sess_msg_rounds_copied,
	    [RDMIG_MSG__BODY_RC_CONNECT] = sess_msg_rc_connect,
	    [RDMIG_MSG__BODY_ABORT] = sess_msg_abort,
	},
    .refused = sess_refused,
};

static void sess_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct src_session *s = arg;

	s->last_rx_ns = now_ns();
	ctrlconn_recv(&s->st, buf, len, &sess_handlers, s);
}

static void sess_closed(struct xport *x, int reason, void *arg)
{
	struct src_session *s = arg;

	if (s->ctl)
		log_warn("%s: fault connection closed (%s); the destination's faults share "
			 "its control connection",
			 s->name, strerror(-reason));
	else if (s->rc_side)
		log_info("%s: RC side channel closed (%s)", s->name, strerror(-reason));
	else if (s->mig && s->mig->state == SRC_MIG_SERVING)
		log_err("%s: destination lost (%s); keeping the checkpoint for a retry or a "
			"rollback",
			s->name, strerror(-reason));
	else
		log_info("%s: connection closed (%s)", s->name, strerror(-reason));
	s->lost = "the destination's connection was lost";
	sess_free(s);
}

/* The tick (common/ctrlconn.c): the handshake's deadline, then the peer's silence. */
static bool sess_tick_check(void *arg, uint64_t now, struct ctrlconn_peer *p)
{
	struct src_session *s = arg;

	if (!ctrl_state_authenticated(&s->st) &&
	    now - s->started_ns > (uint64_t)s->agent->handshake_timeout_s * 1000000000ull) {
		sess_abort(s, CTRL_ABORT_TIMEOUT, "no authentication in time");
		return false;
	}
	*p = (struct ctrlconn_peer){.x = s->x,
				    .st = &s->st,
				    .name = s->name,
				    .ka_seq = &s->ka_seq,
				    .last_rx_ns = s->last_rx_ns,
				    .dead_after_s = s->agent->dead_after_s};
	return true;
}

static void sess_tick_silent(void *arg)
{
	struct src_session *s = arg;

	s->lost = "the destination fell silent";
	/* No Abort to a peer that may resume: a stalled one reconnects when it wakes. */
	if (sess_resumable(s)) {
		log_err("%s: %s for %u s: closing its connection", s->name, s->lost,
			s->agent->dead_after_s);
		sess_free(s);
		return;
	}
	sess_abort(s, CTRL_ABORT_TIMEOUT, "the destination fell silent");
}

static bool sess_tick_alive(void *arg, uint64_t now)
{
	struct src_session *s = arg;

	(void)now;
	/* A dump that failed or was aborted: the held destination is told and exits. */
	if (s->await_served && src_mig_final(s->mig)) {
		sess_abort(s, CTRL_ABORT_CANCELLED,
			   "the migration ended on the source before its checkpoint served");
		return false;
	}
	return sess_images_intact(s);
}

/* We were stopped: the destination's silence and the handshake are judged from now. */
static void sess_tick_late(void *arg, uint64_t now, uint64_t gap)
{
	struct src_session *s = arg;

	s->last_rx_ns = tickclock_shift(s->last_rx_ns, gap, now);
	s->started_ns = tickclock_shift(s->started_ns, gap, now);
}

static const struct ctrlconn_tick_ops sess_tick_ops = {
    .check = sess_tick_check,
    .silent = sess_tick_silent,
    .alive = sess_tick_alive,
    .late = sess_tick_late,
};

static const struct xport_ops sess_ops = {
    .recv = sess_recv,
    .closed = sess_closed,
};

/* "192.0.2.1" of "192.0.2.1:7471", "::1" of "[::1]:7471 (rxe0)". */
static void peer_addr(const char *name, char *out, size_t len)
{
	size_t n = strcspn(name, " ");
	const char *colon;

	if (name[0] == '[') {
		name++;
		n = strcspn(name, "]");
	} else {
		colon = memrchr(name, ':', n);
		if (colon)
			n = (size_t)(colon - name);
	}
	snprintf(out, len, "%.*s", (int)n, name);
}

/*
 * Whether one more unauthenticated connection from addr fits: those hold
 * buffers and a session for up to the handshake timeout on nothing but
 * the peer's word, so their number is bounded, and per address so that
 * one host cannot take every place.
 */
static bool preauth_room(struct src_agent *a, const char *addr)
{
	const struct src_session *s;
	unsigned int all = 0, same = 0, cap;
	uint64_t now = now_ns();

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->owner || s->ctl || s->rc_side)
			continue;
		all++;
		if (strcmp(s->addr, addr) == 0)
			same++;
	}
	if (all < a->max_preauth && same < a->max_preauth_per_addr)
		return true;
	/* A flood must not flood the log too: one line a second per cap. */
	cap = all >= a->max_preauth ? 0 : 1;
	a->preauth_refused[cap]++;
	a->peers_refused_total++;
	if (a->preauth_log_ns[cap] && now - a->preauth_log_ns[cap] < 1000000000ull)
		return false;
	if (cap == 0)
		log_warn("connection from %s refused: %u connections are authenticating "
			 "(--max-preauth); %u refused since the last such line",
			 addr, all, a->preauth_refused[cap]);
	else
		log_warn("connection from %s refused: %u connections from that address are "
			 "authenticating (--max-preauth-per-addr); %u refused since the last "
			 "such line",
			 addr, same, a->preauth_refused[cap]);
	a->preauth_log_ns[cap] = now;
	a->preauth_refused[cap] = 0;
	return false;
}

int src_session_start(struct src_agent *a, struct xport *x)
{
	struct src_session *s;
	char addr[64];

	peer_addr(xport_name(x), addr, sizeof(addr));
	if (!preauth_room(a, addr))
		return -EBUSY;
	s = calloc(1, sizeof(*s));
	if (s)
		s->stream.fd = -1;
	if (!s)
		return -ENOMEM;
	s->agent = a;
	s->x = x;
	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	s->started_ns = s->last_rx_ns = now_ns();
	snprintf(s->name, sizeof(s->name), "peer %s", xport_name(x));
	ctrl_state_init(&s->st, CTRL_ROLE_SOURCE, s->name);
	ctrl_state_set_range_check(&s->st, sess_range_known, s);
	if (ctrlconn_tick_new(a->base, s->name, &sess_tick_ops, s, &s->tick) < 0) {
		free(s);
		return -ENOMEM;
	}
	LIST_INSERT_HEAD(&a->sessions, s, link);
	xport_set_ops(x, &sess_ops, s);
	log_info("connection from %s", xport_name(x));
	return 0;
}

struct rdma_pd *src_session_conn_pd(struct ibv_context *verbs, const void *data, size_t len,
				    void *arg)
{
	struct src_agent *a = arg;
	char id[CONNHINT_ID_MAX + 1];
	struct src_migration *m;

	(void)verbs;
	if (connhint_parse(data, len, id, sizeof(id)) < 0)
		return NULL;
	m = src_mig_find(&a->migrations, id);
	/* A worker started at the reservation may come before its answer (on_hello()). */
	if (!m)
		m = src_mig_find(&a->reserving, id);
	return m ? src_prereg_pd(m) : NULL;
}

void src_session_prereg_done(struct src_agent *a, const struct src_migration *m)
{
	struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig == m && s->owner && s->regions_late) {
			sess_send_late_regions(s);
			return;
		}
		if (s->mig == m && s->owner && s->await_prereg) {
			sess_start_stream(s);
			return;
		}
	}
}

void src_session_area_chunk(struct src_agent *a, struct src_migration *m, unsigned int idx)
{
	struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig != m || !s->owner || !s->regions_late || !s->stage_live)
			continue;
		log_debug("%s: staging area chunk %u registered: its staged units go", s->name,
			  idx);
		if (send_staged_so_far(s) < 0)
			sess_abort(s, CTRL_ABORT_INTERNAL, "cannot announce the staged units");
		return;
	}
}

bool src_session_early_pending(struct src_agent *a, const struct src_migration *m)
{
	struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	if (s->mig == m && s->owner)
		return s->bounce && !s->bounce_failed && !bounce_ready(s->bounce);
	return false;
}

void src_session_served(struct src_agent *a, const struct src_migration *m)
{
	struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig == m && s->owner && s->await_served) {
			s->await_served = false;
			sess_start_stream(s);
			return;
		}
	}
}

void src_session_close_all(struct src_agent *a)
{
	struct src_session *s;

	while ((s = LIST_FIRST(&a->sessions)) != NULL) {
		/* A destination that can resume pauses and waits for a restarted agent. */
		s->lost = "the source agent stopped";
		if (sess_resumable(s)) {
			log_warn("%s: closing: the destination pauses until a restarted agent "
				 "serves the migration again",
				 s->name);
			sess_free(s);
			continue;
		}
		s->lost = NULL;
		sess_abort(s, CTRL_ABORT_CANCELLED, "source agent shutting down");
	}
}

void src_session_staged(struct src_agent *a, const struct src_migration *m,
			const struct lazystage_unit *u)
{
	struct src_session *s;

	LIST_FOREACH(s, &a->sessions, link)
	{
		if (s->mig != m || !s->owner || !s->stage_flags)
			continue;
		/* Before its StageRegions flow a session announces only a unit asked for. */
		if (!s->stage_live && !(*sess_unit_flags(s, u) & STAGE_ASKED))
			continue;
		if (sess_announce_asked(s, u) < 0) {
			/* Frees s: the loop ends here. */
			sess_abort(s, CTRL_ABORT_INTERNAL, "cannot announce a staged unit");
			return;
		}
		if (s->stage_live)
			return;
	}
}

void src_session_cancel(struct src_agent *a, const struct src_migration *m, const char *reason)
{
	src_session_cancel_code(a, m, CTRL_ABORT_CANCELLED, reason);
}

void src_session_cancel_code(struct src_agent *a, const struct src_migration *m, uint32_t code,
			     const char *reason)
{
	struct src_session *s;

	/* Not authenticated yet: told nothing now, refused at the proof like any peer. */
	LIST_FOREACH(s, &a->sessions, link)
	if (s->mig == m && !s->owner && !s->ctl)
		s->mig = NULL;
	for (;;) {
		LIST_FOREACH(s, &a->sessions, link)
		if (s->mig == m)
			break;
		if (!s)
			return;
		sess_abort(s, code, reason);
	}
}
