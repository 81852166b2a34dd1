// SPDX-License-Identifier: GPL-2.0-or-later
#include "api_glue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "api.h"
#include "auth.h"
#include "ctrl.h"
#include "handover.h"
#include "image.h"
#include "imgname.h"
#include "lazydump.h"
#include "prereg.h"
#include "log.h"
#include "promtext.h"
#include "records.h"
#include "runcrun.h"
#include "safepath.h"
#include "session.h"
#include "svcmgr.h"
#include "tls.h"
#include "waitq.h"
#include "util.h"

/* The transport this source serves, as the API names it. */
static enum api_transport glue_transport(const struct src_agent *a)
{
	if (a->kind == XPORT_RDMA)
		return API_TRANSPORT_RDMA;
	return a->data_tls ? API_TRANSPORT_TLS : API_TRANSPORT_TCP;
}

static enum api_state glue_state(const struct src_migration *m)
{
	switch (m->state) {
	case SRC_MIG_DUMPING:
		return API_STATE_DUMPING;
	case SRC_MIG_MAPPING:
		/* Dumped by the agent: dumping until it serves, as before the offload. */
		return m->pid > 0 ? API_STATE_DUMPING : API_STATE_PENDING;
	case SRC_MIG_READY:
	case SRC_MIG_SERVING:
		return API_STATE_SERVING;
	case SRC_MIG_PAUSED:
		return API_STATE_PAUSED;
	case SRC_MIG_QUEUED:
		return API_STATE_QUEUED;
	case SRC_MIG_RESTORING:
		return API_STATE_RESTORING;
	case SRC_MIG_ROLLED_BACK:
		return API_STATE_ROLLED_BACK;
	case SRC_MIG_DONE:
		return API_STATE_DONE;
	case SRC_MIG_FAILED:
		return API_STATE_FAILED;
	case SRC_MIG_ABORTED:
		return API_STATE_ABORTED;
	}
	return API_STATE_FAILED;
}

static bool glue_final(const struct src_migration *m)
{
	return api_state_is_final(glue_state(m));
}

static uint64_t glue_max(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* A destination agent's counter (-1: not reported) against the source's own. */
static uint64_t glue_max_dest(uint64_t own, int64_t dest)
{
	return dest > 0 ? glue_max(own, (uint64_t)dest) : own;
}

/*
 * Over TCP the source counts the pages it answered; over RDMA the
 * destination reads them one-sided, so only its Progress messages tell,
 * or its agent's API after a handover.  Latencies and the restore and
 * resume times only the destination agent knows.
 */
static void glue_view(const struct src_agent *a, const struct src_migration *m,
		      struct api_migration_view *v)
{
	int64_t end = m->finished_unix_ms ? m->finished_unix_ms : src_unix_ms();
	const struct src_dest_report *r = &m->dr;

	v->id = m->id;
	v->role = API_ROLE_SOURCE;
	v->state = glue_state(m);
	v->error = m->error[0] ? m->error : NULL;
	if (m->state == SRC_MIG_PAUSED) {
		v->pause_reason = m->pause_reason;
		v->pause_since_unix_ms = m->pause_since_unix_ms;
	}
	v->pauses = m->pauses;
	v->paused_ms = (int64_t)(m->paused_ns / 1000000);
	v->queue_position = src_queue_position(&a->migrations, m);
	if (v->queue_position) {
		v->queue_since_unix_ms = m->queue_since_unix_ms;
		v->queue_reason = src_queue_reason_str(m->queue_reason);
	}
	v->source = a->endpoint[0] ? a->endpoint : NULL;
	/* With a destination agent, its API; else the data peer the source saw. */
	v->dest = m->dest ? m->dest : m->peer[0] ? m->peer : NULL;
	v->dest_state = r->state[0] ? r->state : NULL;
	v->transport = glue_transport(a);
	v->pid = m->pid;
	if (m->ctr.id[0]) {
		v->container.runtime = API_CONTAINER_RUNTIME;
		v->container.id = m->ctr.id;
		v->container.root = m->ctr.root[0] ? m->ctr.root : NULL;
		v->container.bundle = m->ctr.bundle;
	}
	v->images_dir = m->dir;
	v->freeze_ms = m->freeze_ms;
	v->verify = m->verify;
	v->lazy_dump = m->lazy_dump;
	v->precopy = m->precopy;
	v->precopy_rounds = m->rounds;
	v->nr_precopy_rounds = m->nr_rounds;
	v->precopy_final_pages = m->final_pages;
	v->pages_total = m->lazy_bytes / IMG_PAGE_SIZE;
	v->pages_fetched = glue_max(m->prog_pages, m->bytes_served / IMG_PAGE_SIZE);
	v->pages_fetched = glue_max_dest(v->pages_fetched, r->pages_fetched);
	/*
	 * Done is the destination's word that it has every page, and its count
	 * of the pages it installed (fewer than the total when the workload
	 * freed some); an agent restarted after it has only the total.
	 */
	if (m->state == SRC_MIG_DONE && m->done_ns)
		v->pages_fetched = m->prog_pages;
	else if (m->state == SRC_MIG_DONE)
		v->pages_fetched = v->pages_total;
	if (v->pages_fetched > v->pages_total)
		v->pages_fetched = v->pages_total;
	v->pages_remaining = m->state == SRC_MIG_DONE ? 0 : v->pages_total - v->pages_fetched;
	v->faults = glue_max_dest(m->prog_faults, r->faults);
	v->bytes = glue_max_dest(glue_max(m->prog_bytes, m->bytes_served), r->bytes);
	v->fault_p50_us = r->fault_p50_us;
	v->fault_p99_us = r->fault_p99_us;
	v->restore_ms = r->restore_ms;
	v->resumed_ms = r->resumed_ms;
	v->received_ms = r->received_ms;
	v->handover_ms = m->handover_ms;
	v->early_dest_ms = m->early_dest_ms;
	v->register_ms = m->register_ms;
	/* Each host measured its own part: no clock needs to agree. */
	if (m->handover_ms >= 0 && r->resumed_ms >= 0)
		v->downtime_ms = m->handover_ms + r->resumed_ms;
	v->created_unix_ms = m->created_unix_ms;
	v->finished_unix_ms = m->finished_unix_ms;
	v->total_ms = end >= m->created_unix_ms ? end - m->created_unix_ms : 0;
}

/* Bytes of a secret the source makes for a migration given none. */
#define GLUE_SECRET_GEN_LEN 32

/* The bytes of a start request's secret, kept for a handover only. */
struct glue_secret_bytes {
	uint8_t buf[AUTH_SECRET_MAX];
	size_t len;
};

/*
 * A fresh secret for a migration handed over without one: only the
 * destination agent learns it, inside the handover's mutual TLS (or on
 * loopback), so no operator file has to exist on both hosts.
 */
static int glue_secret_generate(struct auth_secret **out, struct glue_secret_bytes *bytes,
				struct api_error *err)
{
	int ret;

	if (RAND_bytes(bytes->buf, GLUE_SECRET_GEN_LEN) != 1)
		return api_error_set(err, -EIO, "cannot generate a secret: no randomness");
	bytes->len = GLUE_SECRET_GEN_LEN;
	ret = auth_secret_from_buf(bytes->buf, bytes->len, out);
	if (ret < 0)
		return api_error_set(err, ret, "cannot keep a generated secret: %s",
				     strerror(-ret));
	return 0;
}

/*
 * The secret of a start request: inline or from secret_file (the API
 * module read the file off the loop: its bytes are in req->secret), or,
 * with "dest" and neither, a generated one.  With a destination agent to
 * hand over to, its bytes go to *bytes too.
 */
static int glue_secret(const struct api_start_req *req, struct auth_secret **out,
		       struct glue_secret_bytes *bytes, struct api_error *err)
{
	int ret;

	if (req->secret) {
		ret = auth_secret_from_buf(req->secret, req->secret_len, out);
		if (ret < 0)
			return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL,
					     "field \"secret\" is not usable: %s", strerror(-ret));
		if (req->peer) {
			memcpy(bytes->buf, req->secret, req->secret_len);
			bytes->len = req->secret_len;
		}
		return 0;
	}
	if (req->peer)
		return glue_secret_generate(out, bytes, err);
	return api_error_set(err, -EINVAL,
			     "give \"secret\" or \"secret_file\", or \"dest\" for the "
			     "source to make one: this source has no default secret");
}

static void glue_copy_opts(const struct api_criu_opts *in, struct src_criu_opts *out)
{
	out->shell_job = in->shell_job;
	out->tcp_established = in->tcp_established;
	out->ext_unix_sk = in->ext_unix_sk;
	out->file_locks = in->file_locks;
	out->link_remap = in->link_remap;
	out->leave_running = in->leave_running;
	snprintf(out->manage_cgroups, sizeof(out->manage_cgroups), "%s",
		 in->manage_cgroups ? in->manage_cgroups : "");
	out->log_level = in->log_level;
}

/* The bytes of dir's pages-*.img files: what a dump or a pre-dump round wrote. */
static uint64_t glue_pages_bytes(const char *dir)
{
	uint64_t sum = 0;
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);

	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "pages-", 6) == 0 &&
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	return sum;
}

/* why = "WHAT failed (STATUS); see DIR/LOG: LAST ERROR LINE" (at most 319 bytes of it) */
static void glue_criu_failure(const struct src_migration *m, const char *what,
			      const struct criuproc_exit *e, const char *log, char *why, size_t len)
{
	char st[48];

	src_criu_status_str(e, st, sizeof(st));
	snprintf(why, len, "%s failed (%s); see %s/%s: %.319s", what, st, m->dir, log,
		 e->log_tail[0] ? e->log_tail : "(no log written)");
}

/*
 * m fails before it served: its destination agent is no longer talked to,
 * and a destination started at its reservation (FEAT_EARLY), still proving
 * the secret or held for the checkpoint, is turned away rather than served
 * a migration that ended.
 */
static void glue_fail_unserved(struct src_migration *m, const char *why)
{
	src_handover_stop(m->handover);
	/* The words a held destination hears at its tick too (session.c). */
	src_session_cancel(m->agent, m,
			   "the migration ended on the source before its checkpoint served");
	src_mig_finish(m, SRC_MIG_FAILED, why);
}

/* The offload thread, started with the first migration that needs it. */
static struct offload *glue_offload(struct src_agent *a)
{
	if (!a->offload && offload_new(a->base, &a->offload) < 0)
		return NULL;
	return a->offload;
}

/* m's checkpoint registration ahead of its destination ended (prereg.h). */
static void glue_preregistered(struct src_migration *m, int ret)
{
	(void)ret; /* a failure was logged; the session registers when it serves */
	src_session_prereg_done(m->agent, m);
}

/* A chunk of m's staging area is registered: its staged units may go (session.c). */
static void glue_area_chunk(struct src_migration *m, unsigned int idx)
{
	src_session_area_chunk(m->agent, m, idx);
}

/*
 * Over RDMA, registers m's checkpoint now, while the destination is asked
 * and connects, rather than inside the freeze after it authenticated; for
 * a lazy dump, the staging area its pages will be pulled into.
 */
static void glue_prereg(struct src_agent *a, struct src_migration *m)
{
	struct offload *o;
	size_t len;
	void *base;

	if (a->kind != XPORT_RDMA || !a->data_verbs || !(o = glue_offload(a)))
		return;
	if (!m->lazy_dump) {
		src_prereg_start(m, o, a->data_verbs, glue_preregistered);
		return;
	}
	/* A failure is logged; the session then registers the area when it serves. */
	if (m->lazy && m->map && src_lazydump_area(m->lazy, m->map->set, &base, &len) == 0 && len) {
		struct src_prereg_area_spec spec = {
		    .base = base,
		    .len = len,
		    .overlap = LAZYSTAGE_UNIT,
		    .delay_ms = a->prereg_delay_ms,
		    .evbase = a->base,
		    .done = glue_preregistered,
		    .chunk = glue_area_chunk,
		};

		src_prereg_start_area(m, o, a->data_verbs, &spec);
	}
}

/* m's images are mapped (ret 0: it serves now) or cannot be. */
static void glue_mapped(struct src_migration *m, int ret)
{
	struct src_agent *a = m->agent;
	char why[SRC_MIG_ERROR_MAX], bind[SRC_MIG_ERROR_MAX / 2];

	if (ret < 0) {
		if (m->pid > 0)
			snprintf(why, sizeof(why),
				 "criu dump succeeded but its images in %s cannot be "
				 "served: %s",
				 m->dir, strerror(-ret));
		else
			snprintf(why, sizeof(why), "images_dir %s: cannot serve these images: %s",
				 m->dir, strerror(-ret));
		if (ret == -ESTALE)
			snprintf(why, sizeof(why),
				 "the images in %s changed while the agent was stopped (not the "
				 "digest its record has): not served",
				 m->dir);
		glue_fail_unserved(m, why);
		return;
	}
	if (m->lazy && src_lazydump_bind(m->lazy, m->map->set, bind, sizeof(bind)) < 0) {
		snprintf(why, sizeof(why),
			 "after a restart of the source agent, the lazy dump's stopped tree cannot "
			 "be served: %s",
			 bind);
		glue_fail_unserved(m, why);
		return;
	}
	if (m->pause_when_mapped) {
		/* Its destination may run the workload: only it may take the pages now. */
		m->pause_when_mapped = false;
		src_mig_pause_since(
		    m,
		    m->pause_resume_unix_ms
			? "the source agent restarted while the migration was paused"
			: "the source agent restarted while the migration was served",
		    m->pause_resume_unix_ms);
		m->pause_resume_unix_ms = 0;
		return;
	}
	/* Whatever the rounds registered is served only if it is still what they wrote. */
	ret = glue_offload(a) ? src_prereg_rounds_settle(m, a->offload, why, sizeof(why)) : 0;
	if (ret < 0) {
		log_err("migration %s: %s: not served", m->id, why);
		glue_fail_unserved(m, why);
		return;
	}
	log_info("migration %s: serving %s to a destination that connects to %s (%s)", m->id,
		 m->dir, a->endpoint, api_transport_str(glue_transport(a)));
	glue_prereg(a, m);
	/* A destination that connected during the dump (FEAT_EARLY) is served now. */
	src_session_served(a, m);
	src_handover_begin(m->handover);
}

/* Hands m's images to the offload thread: m is mapping until glue_mapped(). */
static int glue_map(struct src_agent *a, struct src_migration *m)
{
	struct offload *o = glue_offload(a);
	int ret = o ? src_mig_map_start(m, o, a->map_delay_ms, glue_mapped) : -ENOMEM;

	if (ret == 0)
		log_info("migration %s: mapping and checksumming %s in the background", m->id,
			 m->dir);
	return ret;
}

/*
 * A lazy dump's criu ended after its page server was up: its session with
 * the stage ended, on purpose (done, rollback) or not.  The tree stays
 * stopped (lazydump.h) until Done kills it or a rollback continues it.
 */
static void glue_lazy_dump_exit(struct src_migration *m, const struct criuproc_exit *e)
{
	char why[SRC_MIG_ERROR_MAX], st[48];
	int ret;

	src_criu_status_str(e, st, sizeof(st));
	log_info("migration %s: criu dump --lazy-pages ended (%s)", m->id, st);
	if (m->state == SRC_MIG_RESTORING) {
		ret = src_lazydump_resume(m->lazy);
		if (ret < 0) {
			snprintf(why, sizeof(why),
				 "rollback: cannot continue the stopped process %d: %s",
				 (int)m->pid, strerror(-ret));
			src_mig_finish(m, SRC_MIG_FAILED, why);
			return;
		}
		src_mig_finish(m, SRC_MIG_ROLLED_BACK, NULL);
		return;
	}
	if (src_mig_final(m))
		return;
	if (src_lazydump_from_tree(m->lazy)) {
		log_info("migration %s: its stopped tree serves the pages criu did not mark lazy",
			 m->id);
		return;
	}
	snprintf(why, sizeof(why),
		 "the lazy dump's page server ended (criu dump %s) before the destination had "
		 "every page; the source's process %d stays stopped: roll back to continue it",
		 st, (int)m->pid);
	src_handover_stop(m->handover);
	src_session_cancel_code(m->agent, m, CTRL_ABORT_READ, why);
	src_mig_finish(m, SRC_MIG_FAILED, why);
}

static void glue_dump_exit(void *arg, const struct criuproc_exit *e);

/* The status byte of a lazy dump: the freeze is over, its images are in. */
static void glue_lazy_ready(struct src_lazydump *ld, void *arg)
{
	struct src_migration *m = arg;
	char why[SRC_MIG_ERROR_MAX], sz[32];
	int ret;

	(void)ld;
	m->freeze_ms = (int64_t)((now_ns() - m->freeze_start_ns) / 1000000);
	/* A few pages, or all of them when criu marked none lazy (design.md §10.3). */
	log_info("migration %s: process %d dumped lazily to %s in %" PRId64
		 " ms (%s of pages written)",
		 m->id, (int)m->pid, m->dir, m->freeze_ms,
		 fmt_bytes(glue_pages_bytes(m->dir), sz, sizeof(sz)));
	ret = glue_map(m->agent, m);
	if (ret < 0) {
		snprintf(
		    why, sizeof(why),
		    "criu dump --lazy-pages wrote images in %s that cannot be "
		    "served: %s; the source's process %d stays stopped: roll back to continue it",
		    m->dir, strerror(-ret), (int)m->pid);
		glue_fail_unserved(m, why);
	}
}

static void glue_lazy_staged(struct src_lazydump *ld, const struct lazystage_unit *u, void *arg)
{
	struct src_migration *m = arg;

	(void)ld;
	src_session_staged(m->agent, m, u);
}

static void glue_lazy_failed(struct src_lazydump *ld, int err, void *arg)
{
	struct src_migration *m = arg;
	char why[SRC_MIG_ERROR_MAX];

	(void)ld;
	if (src_mig_final(m) || m->state == SRC_MIG_RESTORING)
		return;
	snprintf(why, sizeof(why),
		 "the lazy dump's page server failed: %s; the source's process %d stays stopped: "
		 "roll back to continue it",
		 strerror(-err), (int)m->pid);
	src_handover_stop(m->handover);
	src_session_cancel_code(m->agent, m, CTRL_ABORT_READ, why);
	src_mig_finish(m, SRC_MIG_FAILED, why);
}

static const struct src_lazydump_ops glue_lazy_ops = {
    .ready = glue_lazy_ready,
    .staged = glue_lazy_staged,
    .failed = glue_lazy_failed,
};

static int glue_dump_start(struct src_agent *a, struct src_migration *m);

/*
 * When /proc is not of a task's own pid namespace, criu's parasite mounts
 * one on "proc.crtools" in the task's working directory.  Two dumps at
 * once of such tasks sharing that directory (a daemon's "/") collide on
 * it, and the one that loses fails ("Can't get proc fd") before it dumped
 * anything, its tasks resumed.  A plain dump that failed so is run again,
 * at most GLUE_DUMP_RETRIES times; the failed run's log is kept beside.
 * Not a pre-copy's final dump (its memory tracking may be spent), a lazy
 * dump or a runtime's checkpoint: those fail as they did.  0 when it runs
 * again.
 */
#define GLUE_DUMP_RETRIES 2
static int glue_dump_retry(struct src_agent *a, struct src_migration *m,
			   const struct criuproc_exit *e)
{
	char from[API_ID_MAX + 16], to[API_ID_MAX + 32];
	int ret;

	if (m->state != SRC_MIG_DUMPING || !strstr(e->log_tail, "Can't get proc fd") ||
	    m->lazy_dump || m->ctr.id[0] || m->precopy != API_PRECOPY_OFF ||
	    m->dump_retries >= GLUE_DUMP_RETRIES || a->stopping)
		return -EAGAIN;
	m->dump_retries++;
	snprintf(from, sizeof(from), "%s/dump.log", m->id);
	snprintf(to, sizeof(to), "%s/dump-failed-%u.log", m->id, m->dump_retries);
	if (renameat(a->images_root_fd, from, a->images_root_fd, to) < 0)
		log_warn("migration %s: cannot keep %s/dump.log as %s: %s", m->id, m->dir, to,
			 strerror(errno));
	log_warn("migration %s: criu dump failed before it dumped anything (%s): another dump's "
		 "parasite held its proc directory in the same working directory; process %d "
		 "runs on, dumping it again (%u of %u)",
		 m->id, e->log_tail, (int)m->pid, m->dump_retries, GLUE_DUMP_RETRIES);
	ret = glue_dump_start(a, m);
	if (ret < 0)
		log_err("migration %s: cannot run criu dump again: %s", m->id, strerror(-ret));
	return ret;
}

static void glue_dump_exit(void *arg, const struct criuproc_exit *e)
{
	struct src_migration *m = arg;
	char why[SRC_MIG_ERROR_MAX];
	int ret;

	criuproc_free(m->job);
	m->job = NULL;
	if (m->lazy && src_lazydump_is_ready(m->lazy)) {
		glue_lazy_dump_exit(m, e);
		return;
	}
	/* CRIU freezes the tree when it starts and leaves it dumped (dead) when it exits. */
	m->freeze_ms = (int64_t)(e->elapsed_ns / 1000000);
	if (!e->ok && glue_dump_retry(m->agent, m, e) == 0)
		return;
	if (!e->ok) {
		glue_criu_failure(m, m->ctr.id[0] ? "runc checkpoint" : "criu dump", e, "dump.log",
				  why, sizeof(why));
		log_err("migration %s: %s", m->id, why);
		glue_fail_unserved(m, why);
		return;
	}
	if (m->ctr.id[0])
		log_info("migration %s: container %s (init process %d) checkpointed to %s in "
			 "%" PRId64 " ms",
			 m->id, m->ctr.id, (int)m->pid, m->dir, m->freeze_ms);
	else
		log_info("migration %s: process %d dumped to %s in %" PRId64 " ms", m->id,
			 (int)m->pid, m->dir, m->freeze_ms);
	if (m->precopy != API_PRECOPY_OFF)
		m->final_pages = (int64_t)(glue_pages_bytes(m->dir) / IMG_PAGE_SIZE);
	/* The checkpoint is complete: a rollback can restore it whatever the mapping does. */
	m->images_complete = true;
	ret = glue_map(m->agent, m);
	if (ret < 0) {
		snprintf(why, sizeof(why),
			 "criu dump succeeded but its images in %s cannot be "
			 "served: %s",
			 m->dir, strerror(-ret));
		glue_fail_unserved(m, why);
	}
}

/* -EEXIST from making the images dir, as the API says it. */
static int glue_dir_error(const char *id, const char *dir, int ret, struct api_error *err)
{
	log_err("migration %s: cannot create %s: %s", id, dir, strerror(-ret));
	return api_error_set(err,
			     ret == -EEXIST  ? -EEXIST
			     : ret == -EXDEV ? -EINVAL
					     : -EIO,
			     "cannot create the images dir %s: %s%s", dir, safepath_strerror(ret),
			     ret == -EEXIST ? " (an earlier checkpoint; the agent never "
					      "overwrites one)"
					    : "");
}

/*
 * Whether a dump of req->pid is lazy.  Asked for, or absent and nothing
 * refuses it: only a destination agent named by the request (--to) is
 * asked before the freeze whether it takes one (glue_reserved() dumps
 * plainly when it does not); a destination that connects by itself would
 * be refused after the dump.  A container's or a pre-copy chain's dump
 * cannot be lazy, and leave_running keeps no stopped tree to stage from.
 */
static bool glue_lazy_wanted(const struct src_agent *a, const struct api_start_req *req)
{
	if (req->lazy_dump != API_LAZY_AUTO)
		return req->lazy_dump == API_LAZY_YES;
	return !a->no_lazy_dump && req->pid > 0 && !req->container.runtime &&
	       req->precopy == API_PRECOPY_OFF && !req->criu.leave_running && req->peer;
}

/*
 * A migration of req->pid, to dump into <images-root>/<id> (which must
 * not exist) once glue_dump_run() runs: nothing is made or frozen yet.
 * Takes secret.
 */
static int glue_dump_new(struct src_agent *a, const struct api_start_req *req,
			 struct auth_secret *secret, struct src_migration **out,
			 struct api_error *err)
{
	struct src_migration *m = NULL;
	char dir[API_PATH_MAX + 1];
	struct stat st;
	int ret;

	*out = NULL;
	if (req->lazy_dump == API_LAZY_YES && req->criu.leave_running) {
		ret =
		    api_error_set(err, -EINVAL,
				  "\"lazy_dump\" cannot go with \"leave_running\" (the tree stays "
				  "stopped until the destination has every page)");
		goto out;
	}
	if (snprintf(dir, sizeof(dir), "%s/%s", a->images_root_real, req->id) >= (int)sizeof(dir)) {
		ret = api_error_set(err, -EINVAL, "images root %s: path too long", a->images_root);
		goto out;
	}
	/* Asked now too, so that a reservation is not made for nothing. */
	if (fstatat(a->images_root_fd, req->id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		ret = glue_dir_error(req->id, dir, -EEXIST, err);
		goto out;
	}
	ret = src_mig_new(req->id, dir, secret, req->verify || a->verify, &m);
	secret = NULL; /* src_mig_new took it */
	if (ret < 0) {
		ret = api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL, "cannot start: %s",
				    strerror(-ret));
		goto out;
	}
	m->pid = req->pid;
	m->lazy_dump = glue_lazy_wanted(a, req);
	m->lazy_auto = req->lazy_dump == API_LAZY_AUTO;
	m->precopy = req->precopy;
	glue_copy_opts(&req->criu, &m->criu);
	*out = m;
	m = NULL;
	ret = 0;
out:
	src_mig_destroy(m);
	auth_secret_free(secret);
	return ret;
}

/* What a container's lookup found off the loop (glue_container_prepare()). */
struct glue_ctr_found {
	pid_t pid;	       /* its init */
	char root[PATH_MAX];   /* runc's --root for it; "": runc's default */
	char bundle[PATH_MAX]; /* its bundle here, from runc's state */
};

/*
 * api_ops.start_prepare, on the API's offload thread: the container of
 * req in runc's <root>/<id>/state.json.  The root must be one of
 * --runtime-root (ctx) or below one (403 naming the option otherwise); a
 * container runc does not know there is 404.  Nothing is frozen either
 * way.  Off the loop because the root may sit on a mount that hangs.
 */
static int glue_container_prepare(const void *ctx, const struct api_start_req *req, void **out,
				  struct api_error *err)
{
	const struct src_runc_roots *roots = ctx;
	const char *root = req->container.root, *rel, *why, *shown;
	struct glue_ctr_found *f;
	unsigned int i;
	int ret;

	if (src_runc_root_pick(roots, root, &i, &rel) < 0)
		return api_error_set(err, -EACCES,
				     "container.root %s: not one of this agent's runc roots "
				     "(--runtime-root) nor below one",
				     root);
	/* No root given: the first allowed one, passed to runc unless it is runc's own default. */
	if (!root && strcmp(roots->dirs[i], SRC_RUNC_ROOT_DEFAULT) != 0)
		root = roots->dirs[i];
	shown = root ? root : SRC_RUNC_ROOT_DEFAULT;
	f = calloc(1, sizeof(*f));
	if (!f)
		return api_error_set(err, -ENOMEM, "out of memory");
	snprintf(f->root, sizeof(f->root), "%s", root ? root : "");
	ret = src_runc_state_read(roots->dirs[i], rel, req->container.id, &f->pid, f->bundle,
				  sizeof(f->bundle), &why);
	if (ret == -ENOENT)
		ret = api_error_set(err, -ENOENT, "container %s: not a runc container here (%s)",
				    req->container.id, shown);
	else if (ret == -EINVAL)
		ret = api_error_set(err, -EIO,
				    "container %s: its state.json in %s has no init pid or bundle "
				    "runc would write",
				    req->container.id, shown);
	else if (ret < 0)
		ret = api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EACCES,
				    "container %s: its runc state in %s is refused: %s",
				    req->container.id, shown, why ? why : strerror(-ret));
	if (ret < 0) {
		log_err("migration %s: %s", req->id, err->message);
		free(f);
		return ret;
	}
	*out = f;
	return 0;
}

static void glue_container_found_free(void *f)
{
	free(f);
}

/*
 * The container of req into m: what glue_container_prepare() found, and
 * the criu options runc can pass on.
 */
static int glue_container(const struct api_start_req *req, struct src_migration *m,
			  struct api_error *err)
{
	const struct glue_ctr_found *f = req->prepared;
	struct src_criu_argv av;
	const char *why;
	int ret;

	snprintf(m->ctr.id, sizeof(m->ctr.id), "%s", req->container.id);
	ret = src_runc_argv_build(&av, "runc", SRC_RUNC_CHECKPOINT, NULL, m->ctr.id, m->dir, NULL,
				  &m->criu, &why);
	if (ret == -EINVAL)
		return api_error_set(err, -EINVAL, "container %s: runc cannot take %s", m->ctr.id,
				     why);
	if (!f)
		return api_error_set(err, -EIO, "container %s: not looked up", m->ctr.id);
	m->pid = f->pid;
	snprintf(m->ctr.root, sizeof(m->ctr.root), "%s", f->root);
	snprintf(m->ctr.bundle, sizeof(m->ctr.bundle), "%s", f->bundle);
	return 0;
}

/* runc's root for m: NULL for runc's default. */
static const char *glue_runc_root(const struct src_migration *m)
{
	return m->ctr.root[0] ? m->ctr.root : NULL;
}

/*
 * m's dump: criu dump of its pid, or runc checkpoint of its container
 * (whose options glue_container() checked already).
 */
static int glue_dump_argv(const struct src_agent *a, const struct src_migration *m,
			  struct src_criu_argv *av)
{
	const char *why;

	if (!m->ctr.id[0])
		return src_criu_argv_build(av, a->criu, SRC_CRIU_DUMP, m->pid, m->dir, "dump.log",
					   &m->criu);
	return src_runc_argv_build(av, a->runc, SRC_RUNC_CHECKPOINT, glue_runc_root(m), m->ctr.id,
				   m->dir, NULL, &m->criu, &why);
}

/*
 * Starts the final criu dump of m into m->dir; with pre-dump rounds, of
 * the pages dirtied since the last one (--prev-images-dir round-N).
 */
static int glue_dump_start(struct src_agent *a, struct src_migration *m)
{
	struct src_criu_argv av;
	char prev[32];
	int ret;

	ret = glue_dump_argv(a, m, &av);
	if (ret == 0 && m->nr_rounds) {
		snprintf(prev, sizeof(prev), "round-%zu", m->nr_rounds);
		ret = src_criu_argv_track(&av, prev);
	}
	if (ret == 0 && m->lazy_dump) {
		ret = src_lazydump_new(a->base, m->pid, &glue_lazy_ops, m, &m->lazy);
		if (ret == 0) {
			m->lazy_tree_start = src_lazydump_tree_start(m->lazy);
			m->lazy_port = src_lazydump_port(m->lazy);
			ret = src_criu_argv_lazy(&av, m->lazy_port);
		}
	}
	/* The workload's downtime starts here: criu freezes it first. */
	m->freeze_start_ns = now_ns();
	if (ret == 0)
		ret = src_criu_start_status(a->base, m->id, &av, m->dir, "dump.log",
					    m->lazy ? src_lazydump_status_fd(m->lazy) : -1,
					    glue_dump_exit, m, &m->job);
	if (ret == 0 && m->lazy)
		ret = src_lazydump_watch(m->lazy);
	return ret;
}

static void glue_round_exit(void *arg, const struct criuproc_exit *e);

/*
 * Starts pre-dump round nr_rounds + 1 into <dir>/round-K, the workload
 * running on (design.md §13); its own memory tracking (--track-mem) makes
 * the next round, or the final dump, write only what was dirtied since.
 */
static int glue_round_start(struct src_agent *a, struct src_migration *m)
{
	size_t k = m->nr_rounds + 1;
	char rel[API_ID_MAX + 16], dir[PATH_MAX], prev[32];
	struct src_criu_argv av;
	int fd, ret;

	snprintf(rel, sizeof(rel), "%s/round-%zu", m->id, k);
	snprintf(dir, sizeof(dir), "%s/round-%zu", m->dir, k);
	fd = safepath_mkdir(a->images_root_fd, rel, 0700);
	if (fd < 0) {
		log_err("migration %s: cannot create %s: %s", m->id, dir, safepath_strerror(fd));
		return fd;
	}
	close(fd);
	snprintf(prev, sizeof(prev), "../round-%zu", k - 1);
	ret = src_criu_argv_build(&av, a->criu, SRC_CRIU_PREDUMP, m->pid, dir, "pre-dump.log",
				  &m->criu);
	if (ret == 0)
		ret = src_criu_argv_track(&av, k > 1 ? prev : NULL);
	m->round_start_ns[k - 1] = now_ns();
	if (ret == 0)
		ret = src_criu_start(a->base, m->id, &av, dir, "pre-dump.log", glue_round_exit, m,
				     &m->job);
	if (ret < 0)
		rmdir(dir);
	return ret;
}

/* Whether another round is worth it after round k (1-based) of m. */
static bool glue_round_more(const struct src_migration *m, size_t k)
{
	const struct api_precopy_round *r = &m->rounds[k - 1];

	if (m->precopy != API_PRECOPY_AUTO)
		return k < (size_t)m->precopy;
	if (k >= API_PRECOPY_MAX || r->pages == 0)
		return false;
	/* auto: on while each round writes at least a fifth less than the one before. */
	return k == 1 || r->pages * 5 <= m->rounds[k - 2].pages * 4;
}

/* m fails with the workload running: nothing was frozen. */
static void glue_round_fail(struct src_migration *m, const char *why)
{
	log_err("migration %s: %s; nothing was frozen", m->id, why);
	glue_fail_unserved(m, why);
}

static void glue_final_dump(struct src_migration *m);

/*
 * A final dump waits, the workload running, for a destination copying the
 * rounds ahead (FEAT_ROUNDS): at most GLUE_ROUNDS_WAIT_MS, looking every
 * GLUE_ROUNDS_LOOK_MS.  Pages it has not copied by then are read in
 * post-copy as without it.
 */
#define GLUE_ROUNDS_WAIT_MS 30000
#define GLUE_ROUNDS_LOOK_MS 50
/* After RoundsStop, how long its RoundsCopied may take (READs in flight land). */
#define GLUE_ROUNDS_STOP_MS 5000
/*
 * By default (--rounds-wait auto) only while the workload dirties this
 * fraction of its memory more (1/N), at its last round's rate: what it
 * dirties meanwhile the final dump writes in the freeze, so a copy slower
 * than the workload's writes would lengthen the freeze for little.  One
 * round has no rate: then GLUE_ROUNDS_WAIT_ONE_MS.
 */
#define GLUE_ROUNDS_WAIT_DIRTY_DIV 10
#define GLUE_ROUNDS_WAIT_ONE_MS	   1000

static uint64_t glue_rounds_wait_max(const struct src_migration *m)
{
	const struct api_precopy_round *last = m->nr_rounds ? &m->rounds[m->nr_rounds - 1] : NULL;
	uint64_t ms;

	if (m->agent->rounds_wait_ms >= 0)
		return (uint64_t)m->agent->rounds_wait_ms;
	/* The first round's rate is not measured (0); a later round's 0: nothing dirtied. */
	if (m->nr_rounds < 2)
		return GLUE_ROUNDS_WAIT_ONE_MS;
	if (!last->dirty_rate)
		return GLUE_ROUNDS_WAIT_MS;
	/* The first round wrote the workload's memory; the last one's rate in pages/s. */
	ms = m->rounds[0].pages * 1000 / (GLUE_ROUNDS_WAIT_DIRTY_DIV * last->dirty_rate);
	return ms < GLUE_ROUNDS_WAIT_MS ? ms : GLUE_ROUNDS_WAIT_MS;
}

/*
 * The wait's tick: the copies whole, or the budget spent and the
 * destination asked to stop (RoundsStop), or its answer overdue.  Only
 * once the destination said RoundsCopied may the final mapping release a
 * superseded round's registration: a READ of it still in flight would
 * break the destination's queue pair.
 */
static void glue_rounds_look(evutil_socket_t fd, short what, void *arg)
{
	struct src_migration *m = arg;
	uint64_t now = now_ns(), waited_ms = (now - m->rounds_wait_ns) / 1000000;
	bool copying = src_session_rounds_copying(m->agent, m);
	bool going = copying && m->state == SRC_MIG_DUMPING && !m->agent->stopping;

	if (going && !m->rounds_stop_ns) {
		if (waited_ms < m->rounds_wait_max_ms)
			return;
		src_session_rounds_stop(m->agent, m);
		m->rounds_stop_ns = now;
		return;
	}
	if (going && (now - m->rounds_stop_ns) / 1000000 < GLUE_ROUNDS_STOP_MS)
		return;
	event_free(m->rounds_wait);
	m->rounds_wait = NULL;
	m->rounds_waited = true;
	if (copying)
		log_warn("migration %s: its destination did not answer RoundsStop within %u ms: "
			 "the final dump goes on",
			 m->id, GLUE_ROUNDS_STOP_MS);
	else if (m->rounds_stop_ns)
		log_info("migration %s: its destination stopped copying the pre-copy rounds after "
			 "%" PRIu64 " ms (at most %" PRIu64 " ms): the rest is read in post-copy",
			 m->id, waited_ms, m->rounds_wait_max_ms);
	else
		log_info("migration %s: the final dump waited %" PRIu64 " ms for its destination "
			 "to copy the pre-copy rounds",
			 m->id, waited_ms);
	glue_final_dump(m);
}

/* A tick of m's every ms milliseconds into *ev, and when it began into *t0: 0 or -ENOMEM. */
static int glue_tick(struct src_migration *m, event_callback_fn cb, unsigned int ms,
		     struct event **ev, uint64_t *t0)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	*ev = event_new(m->agent->base, -1, EV_PERSIST, cb, m);
	if (!*ev || event_add(*ev, &tv) < 0) {
		if (*ev)
			event_free(*ev);
		*ev = NULL;
		return -ENOMEM;
	}
	*t0 = now_ns();
	return 0;
}

/* Whether the final dump waits for the destination's copies of the rounds (and starts to). */
static bool glue_rounds_wait(struct src_migration *m)
{
	if (m->rounds_wait)
		return true;
	if (m->rounds_waited || !m->agent || !src_session_rounds_copying(m->agent, m))
		return false;
	/* No budget (--rounds-wait 0): the tick's first look asks it to stop. */
	m->rounds_wait_max_ms = glue_rounds_wait_max(m);
	if (glue_tick(m, glue_rounds_look, GLUE_ROUNDS_LOOK_MS, &m->rounds_wait,
		      &m->rounds_wait_ns) < 0) {
		m->rounds_waited = true;
		return false;
	}
	log_info("migration %s: the final dump waits for its destination to copy the pre-copy "
		 "rounds (the workload runs; at most %" PRIu64 " ms%s)",
		 m->id, m->rounds_wait_max_ms,
		 m->agent->rounds_wait_ms >= 0 ? ""
		 : m->nr_rounds >= 2	       ? ", while it dirties a tenth of its memory"
					       : ", the default after one round");
	return true;
}

/* The destination agent's word before the final dump: on with it, or fail unfrozen. */
static void glue_final_checked(struct src_migration *m, int ret, const char *why)
{
	char text[SRC_MIG_ERROR_MAX];

	m->final_asked = false;
	if (m->state != SRC_MIG_DUMPING)
		return;
	if (ret == -EOPNOTSUPP) {
		log_warn("migration %s: destination agent %s has no reservations now (an older "
			 "agent): the final dump goes on without one",
			 m->id, m->dest);
		ret = 0;
	}
	if (ret < 0) {
		snprintf(text, sizeof(text), "before the final dump: %s",
			 why && why[0] ? why : strerror(-ret));
		glue_round_fail(m, text);
		return;
	}
	m->final_checked = true;
	glue_final_dump(m);
}

/*
 * The final dump of a pre-copy migration, once every round's pages are
 * mapped (and registered) and still what the rounds wrote: the freeze
 * then registers the final dump's own pages alone.  A round's file that
 * vanished or changed fails the migration here, before the freeze.
 */
static void glue_final_dump(struct src_migration *m)
{
	char why[SRC_MIG_ERROR_MAX];
	int ret;

	/* Aborted while a round's registration or the recheck was awaited. */
	if (m->state != SRC_MIG_DUMPING || m->job)
		return;
	m->dump_waits = src_prereg_rounds_pending(m);
	if (m->dump_waits) {
		log_info("migration %s: the final dump waits for the last round's registration "
			 "(the workload runs)",
			 m->id);
		return;
	}
	/* What the destination copies before the freeze is not read after it. */
	if (glue_rounds_wait(m))
		return;
	/*
	 * The rounds may have outlived the reservation, or the destination
	 * agent: asked again now, so that no freeze starts for a handover
	 * that cannot happen.
	 */
	if (m->handover && !m->final_checked) {
		if (m->final_asked)
			return;
		ret = src_handover_recheck(m->handover, glue_final_checked);
		if (ret == 0) {
			m->final_asked = true;
			return;
		}
		snprintf(why, sizeof(why),
			 "cannot ask destination agent %s before the final dump: %s", m->dest,
			 strerror(-ret));
		glue_round_fail(m, why);
		return;
	}
	ret = src_prereg_rounds_check(m, why, sizeof(why));
	if (ret == 0) {
		ret = glue_dump_start(m->agent, m);
		if (ret < 0)
			snprintf(why, sizeof(why),
				 "cannot run criu dump after pre-dump round %zu: %s", m->nr_rounds,
				 strerror(-ret));
	}
	if (ret < 0)
		glue_round_fail(m, why);
}

/* A round's pages are mapped (and registered), or cannot be (prereg.h). */
static void glue_round_mapped(struct src_migration *m, int ret)
{
	/* A failure is kept by the prereg: the next round's end or the final dump fails on it. */
	if (ret == 0 && m->agent)
		src_session_rounds(m->agent, m);
	if (m->dump_waits && !src_prereg_rounds_pending(m))
		glue_final_dump(m);
}

/* Maps round dir's pages files, and over RDMA registers them, while the workload runs. */
static bool glue_early(const struct src_agent *a, const struct src_migration *m);

static void glue_round_prereg(struct src_agent *a, struct src_migration *m, const char *dir,
			      size_t round)
{
	struct offload *o = glue_offload(a);
	struct ibv_context *verbs = a->kind == XPORT_RDMA ? a->data_verbs : NULL;

	/*
	 * Not mapped now, mapped with the final dump: only the freeze is
	 * longer.  Hashed for a destination held early, which copies it ahead.
	 */
	if (o)
		src_prereg_round(m, o, verbs, dir, (uint32_t)round, verbs && glue_early(a, m),
				 glue_round_mapped);
}

static void glue_round_exit(void *arg, const struct criuproc_exit *e)
{
	struct src_migration *m = arg;
	size_t k = m->nr_rounds + 1;
	struct api_precopy_round *r = &m->rounds[k - 1];
	char why[SRC_MIG_ERROR_MAX], dir[PATH_MAX], log[40];
	uint64_t since;
	int ret;

	criuproc_free(m->job);
	m->job = NULL;
	snprintf(dir, sizeof(dir), "%s/round-%zu", m->dir, k);
	if (!e->ok) {
		/* pre-dump leaves the workload running: nothing is frozen, nothing to undo. */
		snprintf(log, sizeof(log), "round-%zu/pre-dump.log", k);
		glue_criu_failure(m, "criu pre-dump", e, log, why, sizeof(why));
		log_err("migration %s: %s", m->id, why);
		glue_fail_unserved(m, why);
		return;
	}
	m->nr_rounds = k;
	r->ms = (int64_t)(e->elapsed_ns / 1000000);
	r->bytes = glue_pages_bytes(dir);
	r->pages = r->bytes / IMG_PAGE_SIZE;
	since = k > 1 ? m->round_start_ns[k - 1] - m->round_start_ns[k - 2] : 0;
	r->dirty_rate = since ? (uint64_t)((double)r->pages * 1e9 / (double)since) : 0;
	log_info("migration %s: pre-dump round %zu wrote %" PRIu64 " pages in %" PRId64
		 " ms (%" PRIu64 " pages/s dirtied)",
		 m->id, k, r->pages, r->ms, r->dirty_rate);
	glue_round_prereg(m->agent, m, dir, k);
	if (!glue_round_more(m, k)) {
		glue_final_dump(m);
		return;
	}
	ret = src_prereg_rounds_check(m, why, sizeof(why));
	if (ret == 0) {
		ret = glue_round_start(m->agent, m);
		if (ret < 0)
			snprintf(why, sizeof(why), "cannot run criu pre-dump after round %zu: %s",
				 k, strerror(-ret));
	}
	if (ret < 0)
		glue_round_fail(m, why);
}

/*
 * Whether m's destination agent is asked for a worker at the reservation:
 * by default for a lazy dump (design.md §10.3), whose handover then costs
 * the freeze least.
 */
static bool glue_early(const struct src_agent *a, const struct src_migration *m)
{
	/*
	 * By default where the worker gains most: a lazy dump's handover, and
	 * a pre-copy's rounds, which it copies before the freeze (FEAT_ROUNDS).
	 */
	return a->early == SRC_EARLY_ALL ||
	       (a->early == SRC_EARLY_LAZY && (m->lazy_dump || m->precopy != API_PRECOPY_OFF));
}

/*
 * A destination connecting during the dump (FEAT_EARLY) lands in the PD its
 * checkpoint will be registered in (prereg.h): opened before the
 * reservation is asked for, whose worker may connect at once, or at the
 * dump's start without one.  Pre-copy rounds register in it too: a worker
 * that connected during the first round, before any round had a PD, would
 * otherwise get a PD of its own and register the whole chain again after
 * its proof, inside the freeze.
 */
static void glue_early_pd(struct src_agent *a, struct src_migration *m)
{
	if (a->kind == XPORT_RDMA && a->data_verbs && glue_early(a, m) && !src_prereg_pd(m)) {
		src_prereg_open(m, a->data_verbs);
		/*
		 * A lazy dump's early session registers its first units'
		 * region on the offload thread before the freeze: started now.
		 */
		if (m->lazy_dump)
			glue_offload(a);
	}
}

/*
 * Creates m's images dir and starts criu dump into it, or the first
 * pre-dump round; the migration is dumping until glue_dump_exit().
 */
static int glue_dump_run(struct src_agent *a, struct src_migration *m, struct api_error *err)
{
	int fd, ret;

	/* Made here, beneath the root's fd: nobody else can have planted anything in it. */
	fd = safepath_mkdir(a->images_root_fd, m->id, 0700);
	if (fd < 0)
		return glue_dir_error(m->id, m->dir, fd, err);
	close(fd);
	glue_early_pd(a, m);
	ret = m->precopy != API_PRECOPY_OFF ? glue_round_start(a, m) : glue_dump_start(a, m);
	if (ret < 0) {
		rmdir(m->dir);
		return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EIO, "cannot run %s %s: %s",
				     m->ctr.id[0] ? a->runc : a->criu,
				     m->ctr.id[0]		     ? "checkpoint"
				     : m->precopy != API_PRECOPY_OFF ? "pre-dump"
								     : "dump",
				     strerror(-ret));
	}
	return 0;
}

/* Reads the kB figure of "VmRSS:" in /proc/PID/status; 0 when gone. */
static uint64_t glue_rss_one(pid_t pid)
{
	char path[48], line[128];
	unsigned long long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

#define GLUE_TREE_MAX 4096

/*
 * The resident memory of pid and its descendants (every thread's
 * children), at most GLUE_TREE_MAX processes: what criu dump will write,
 * roughly.  procfs answers from memory: no blocking read.
 */
static uint64_t glue_tree_rss(pid_t pid, unsigned int *seen)
{
	char path[64], line[4096], *p, *end;
	uint64_t sum;
	struct dirent *de;
	DIR *d;
	FILE *f;

	if (++*seen > GLUE_TREE_MAX)
		return 0;
	sum = glue_rss_one(pid);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return sum;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/children", (int)pid, de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f))
			for (p = line; *p && *p != '\n'; p = end) {
				long child = strtol(p, &end, 10);

				if (end == p)
					break;
				if (child > 0)
					sum += glue_tree_rss((pid_t)child, seen);
			}
		fclose(f);
	}
	closedir(d);
	return sum;
}

/*
 * The image files of the directory dirfd, as listed (no reading): those
 * the agent would serve must be regular files of root's.  *bad names the
 * first that is not.
 */
static int glue_check_image_files(int dirfd, char *bad, size_t len)
{
	struct dirent *de;
	struct stat st;
	int ret;
	DIR *d;

	ret = opendir_at(dirfd, &d);
	if (ret < 0)
		return ret;
	while ((de = readdir(d)) != NULL) {
		if (!imgname_allowed(de->d_name))
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = -errno;
		} else if (S_ISLNK(st.st_mode)) {
			ret = -ELOOP;
		} else if (!S_ISREG(st.st_mode)) {
			ret = -EBADF;
		} else if (st.st_uid != 0 && st.st_uid != geteuid()) {
			ret = -EPERM;
		}
		if (ret < 0) {
			snprintf(bad, len, "%s", de->d_name);
			break;
		}
	}
	closedir(d);
	return ret;
}

/*
 * path, as written, names something below the images root (as configured
 * or resolved), without "." or ".." components.
 */
static bool glue_below_root(const struct src_agent *a, const char *path)
{
	const char *rel;

	return (safepath_below(a->images_root_real, path, &rel) ||
		safepath_below(a->images_root, path, &rel)) &&
	       safepath_check_rel(rel) == 0;
}

/*
 * images_dir must resolve below --images-root, every directory from the
 * root down to it root's and not group/other-writable, its image files
 * root's regular files: then nobody but root can change what the agent
 * serves, or point it elsewhere.  A quick look, no reading; real receives
 * the resolved path.
 */
static int glue_check_images_dir(const struct src_agent *a, const char *dir, char *real,
				 struct api_error *err)
{
	const char *rel;
	char bad[256];
	int fd, ret;

	/* As written first, so a path elsewhere is refused without a look at it. */
	ret = !glue_below_root(a, dir) ? -EACCES : realpath(dir, real) ? 0 : -errno;
	if (ret == -ENOENT || ret == -ENOTDIR)
		return api_error_set(err, -EINVAL, "images_dir %s: cannot serve these images: %s",
				     dir, strerror(-ret));
	if (ret < 0 || !safepath_below(a->images_root_real, real, &rel) || !*rel)
		return api_error_set(err, -EACCES,
				     "images_dir %s: not below the images root %s (--images-root): "
				     "the agent serves only images below it",
				     dir, a->images_root_real);
	fd = safepath_open_trusted_dir(a->images_root_fd, rel);
	if (fd < 0)
		return api_error_set(err, fd == -ENOENT || fd == -ENOTDIR ? -EINVAL : -EACCES,
				     "images_dir %s: refused: %s", dir, safepath_strerror(fd));
	ret = glue_check_image_files(fd, bad, sizeof(bad));
	close(fd);
	if (ret < 0)
		return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EACCES,
				     "images_dir %s: refused: %s is %s", dir, bad,
				     ret == -ELOOP   ? "a symbolic link"
				     : ret == -EBADF ? "not a regular file"
				     : ret == -EPERM ? "not owned by root"
						     : strerror(-ret));
	return 0;
}

/*
 * Keeps at most --max-migrations: the final migration that finished first
 * is forgotten (its record only: mapping and secret went when it ended,
 * the checkpoint stays on disk); with none final, -EAGAIN (503).
 */
static int glue_make_room(struct src_agent *a, struct api_error *err)
{
	struct src_migration *m;
	unsigned int n = 0;

	/* The queued ones wait outside that count (glue_queue_*()). */
	TAILQ_FOREACH(m, &a->migrations, link)
	n += m->state != SRC_MIG_QUEUED;
	if (n < a->max_migrations)
		return 0;
	m = src_mig_oldest_final(&a->migrations);
	if (!m)
		return api_error_set(err, -EAGAIN,
				     "%u migrations are not final, the most this agent keeps "
				     "(--max-migrations)",
				     n);
	log_info("migration %s (%s) forgotten: the agent keeps at most %u migrations "
		 "(--max-migrations)",
		 m->id, src_mig_state_str(m->state), a->max_migrations);
	if (m->later) {
		struct api_error gone = {0};

		/* Its rollback waited for the destination agent: answered, not lost. */
		api_later_answer(m->later,
				 api_error_set(&gone, -EBUSY,
					       "migration \"%s\" was forgotten while its rollback "
					       "waited (--max-migrations)",
					       m->id),
				 &gone);
		m->later = NULL;
	}
	src_session_cancel(a, m, "migration forgotten");
	src_records_forget(a->records, m->id);
	TAILQ_REMOVE(&a->migrations, m, link);
	src_mig_destroy(m);
	return 0;
}

/* A dumping migration joins the list (and the records) and is checked on during the dump. */
static void glue_add_dumping(struct src_agent *a, struct src_migration *m)
{
	if (m->state == SRC_MIG_QUEUED) {
		log_info("migration %s: its turn after %.1f s queued", m->id,
			 (double)(src_unix_ms() - m->queue_since_unix_ms) / 1e3);
		src_mig_set_state(m, SRC_MIG_DUMPING);
	} else {
		TAILQ_INSERT_TAIL(&a->migrations, m, link);
	}
	m->records = a->records;
	src_records_save(a->records, m);
	log_info("migration %s: dumping process %d to %s", m->id, (int)m->pid, m->dir);
	/* A dump runs: the destination agent's round trip fits in it. */
	src_handover_prepare(m->handover);
}

/*
 * A migration that never started (reserving) goes: a destination worker
 * started at its reservation may hold a session for it (FEAT_EARLY).
 */
static void glue_destroy_unstarted(struct src_migration *m)
{
	src_session_cancel(m->agent, m, "migration not started on the source: nothing was frozen");
	src_mig_destroy(m);
}

/* m's reservation, given back after a failed start, is answered: m goes. */
static void glue_released(struct src_migration *m, int ret, const char *why)
{
	TAILQ_REMOVE(&m->agent->reserving, m, link);
	glue_destroy_unstarted(m);
}

/* The longest wait between two reservations asked for a queued migration. */
#define GLUE_QUEUE_BACKOFF_MAX_MS 10000
/* How often the queue looks, besides at once when a migration ends or a dump does. */
#define GLUE_QUEUE_TICK_MS 500

/* criu dumps or pre-dump rounds running: each freezes or walks a tree. */
static unsigned int glue_dumps_running(const struct src_agent *a)
{
	const struct src_migration *m;
	unsigned int n = 0;

	TAILQ_FOREACH(m, &a->migrations, link)
	n += m->state == SRC_MIG_DUMPING && m->job;
	return n;
}

/*
 * The --max-migrations slots taken: migrations not final that are not
 * waiting unasked in the queue, and starts asking for their reservation.
 */
static unsigned int glue_slots_taken(const struct src_agent *a)
{
	const struct src_migration *m;
	unsigned int n = 0;

	TAILQ_FOREACH(m, &a->migrations, link)
	n += !src_mig_final(m) &&
	     (m->state != SRC_MIG_QUEUED || m->queue_asking || m->queue_reason == SRC_QUEUE_DUMP);
	TAILQ_FOREACH(m, &a->reserving, link)
	n++;
	return n;
}

/* This agent's migrations to m's destination that hold a slot there (started, not final). */
static unsigned int glue_dest_busy(const struct src_agent *a, const struct src_migration *m)
{
	const struct src_migration *o;
	unsigned int n = 0;

	TAILQ_FOREACH(o, &a->migrations, link)
	n += o != m && o->state != SRC_MIG_QUEUED && !src_mig_final(o) && src_queue_same_dest(o, m);
	return n;
}

/*
 * m waits, listed in state queued, for why; nothing was frozen or made for
 * it, and it keeps no record (a restart drops it: design.md §7.1).
 */
static void glue_queue_add(struct src_agent *a, struct src_migration *m, enum src_queue_reason why)
{
	m->queue_reason = why;
	if (m->state != SRC_MIG_QUEUED) {
		m->queue_since_unix_ms = src_unix_ms();
		TAILQ_INSERT_TAIL(&a->migrations, m, link);
		src_mig_set_state(m, SRC_MIG_QUEUED);
	}
	log_info("migration %s queued for %s (position %u): process %d runs on untouched", m->id,
		 why == SRC_QUEUE_DUMP	 ? "a dump slot (--max-dumps)"
		 : why == SRC_QUEUE_SLOT ? "a slot on its destination agent"
					 : "a slot on this agent (--max-migrations)",
		 src_queue_position(&a->migrations, m), (int)m->pid);
}

/* A queued m refused a slot again: asked again after a longer wait, or once one frees. */
static void glue_queue_backoff(struct src_agent *a, struct src_migration *m)
{
	m->queue_reason = SRC_QUEUE_SLOT;
	m->queue_backoff_ms =
	    src_queue_backoff_next(m->queue_backoff_ms, GLUE_QUEUE_BACKOFF_MAX_MS);
	m->queue_retry_ns = now_ns() + (uint64_t)m->queue_backoff_ms * 1000000u;
	m->queue_dest_busy = glue_dest_busy(a, m);
}

/*
 * m has its reservation (or needs none): its dump starts, or, with
 * --max-dumps dumps running or others waiting for one, it waits queued.
 */
static int glue_begin_dump(struct src_agent *a, struct src_migration *m, struct api_error *err)
{
	int ret;

	if (glue_dumps_running(a) >= a->max_dumps ||
	    src_queue_ahead(&a->migrations, m->state == SRC_MIG_QUEUED ? m : NULL, true) > 0) {
		if (m->state != SRC_MIG_QUEUED || m->queue_reason != SRC_QUEUE_DUMP)
			glue_queue_add(a, m, SRC_QUEUE_DUMP);
		return 0;
	}
	ret = glue_make_room(a, err);
	if (ret == 0)
		ret = glue_dump_run(a, m, err);
	if (ret == 0)
		glue_add_dumping(a, m);
	return ret;
}

/* A queued m ends with why, nothing frozen; a reservation it holds is released. */
static void glue_queue_fail(struct src_migration *m, enum src_mig_state st, const char *why)
{
	log_err("migration %s: %s; nothing was frozen (process %d)", m->id, why, (int)m->pid);
	src_handover_stop(m->handover);
	src_session_cancel(m->agent, m, "migration not started on the source: nothing was frozen");
	src_mig_finish(m, st, why);
}

static void glue_queue_pump(struct src_agent *a);
static bool glue_early_wait(struct src_agent *a, struct src_migration *m);

/* The destination agent answered a queued m's reservation. */
static void glue_queue_answer(struct src_migration *m, int ret, const char *why)
{
	struct src_agent *a = m->agent;
	struct api_error err = {0};
	char text[SRC_MIG_ERROR_MAX];

	m->queue_asking = false;
	if (m->state != SRC_MIG_QUEUED)
		return;
	if (ret == -EUSERS) {
		glue_queue_backoff(a, m);
		log_info("migration %s: still queued: %s; asking again in %u ms or once a "
			 "migration there ends",
			 m->id, why, m->queue_backoff_ms);
		return;
	}
	if (ret == -EOPNOTSUPP)
		ret = 0;
	if (ret < 0) {
		snprintf(text, sizeof(text), "nothing was frozen: %s", why);
		glue_queue_fail(m, SRC_MIG_FAILED, text);
	} else if (glue_early_wait(a, m)) {
		/*
		 * Reserved, it holds its slots, queued for its dump, which the
		 * queue's step starts once glue_early_look() ended the wait.
		 */
		m->queue_reason = SRC_QUEUE_DUMP;
	} else if (glue_begin_dump(a, m, &err) < 0) {
		glue_queue_fail(m, SRC_MIG_FAILED, err.message);
	}
	glue_queue_pump(a);
}

/* Asks m's destination agent for its reservation again. */
static void glue_queue_ask(struct src_agent *a, struct src_migration *m)
{
	unsigned int seen = 0;
	int ret;

	m->queue_asking = true;
	m->queue_reason = SRC_QUEUE_SLOT;
	glue_early_pd(a, m);
	ret = src_handover_reserve(m->handover, glue_tree_rss(m->pid, &seen), glue_queue_answer);
	if (ret < 0) {
		m->queue_asking = false;
		glue_queue_backoff(a, m);
		log_warn("migration %s: cannot ask destination agent %s for a reservation: %s; "
			 "again in %u ms",
			 m->id, m->dest, strerror(-ret), m->queue_backoff_ms);
	}
}

/*
 * One step of the queue, in the order the migrations were started: a
 * dump that may start now, or the first of a destination's line whose
 * wait is over (or one of whose migrations there ended since it was
 * refused).  True when it did something: the list may have changed.
 */
static bool glue_queue_step(struct src_agent *a)
{
	char why[SRC_MIG_ERROR_MAX];
	struct api_error err = {0};
	struct src_migration *m;
	uint64_t now = now_ns();

	TAILQ_FOREACH(m, &a->migrations, link)
	{
		if (m->state != SRC_MIG_QUEUED || m->queue_asking || m->early_wait)
			continue;
		if (a->stopping) {
			glue_queue_fail(m, SRC_MIG_ABORTED,
					"the agent is stopping (it was signalled) while the "
					"migration was queued");
			return true;
		}
		/* Nothing to freeze any more: no reservation is asked for it. */
		if (kill(m->pid, 0) < 0 && errno == ESRCH) {
			snprintf(why, sizeof(why),
				 "process %d exited while the migration was queued", (int)m->pid);
			glue_queue_fail(m, SRC_MIG_FAILED, why);
			return true;
		}
		if (m->queue_reason == SRC_QUEUE_DUMP) {
			if (glue_dumps_running(a) >= a->max_dumps ||
			    src_queue_ahead(&a->migrations, m, true))
				continue;
			if (glue_begin_dump(a, m, &err) < 0)
				glue_queue_fail(m, SRC_MIG_FAILED, err.message);
			return true;
		}
		if (src_queue_ahead(&a->migrations, m, false) ||
		    (now < m->queue_retry_ns && glue_dest_busy(a, m) >= m->queue_dest_busy))
			continue;
		if (glue_slots_taken(a) >= a->max_migrations) {
			m->queue_reason = SRC_QUEUE_SOURCE;
			continue;
		}
		if (!m->handover) {
			/* No destination agent to ask: straight to a dump slot. */
			m->queue_reason = SRC_QUEUE_DUMP;
			return true;
		}
		glue_queue_ask(a, m);
		return true;
	}
	return false;
}

static void glue_queue_pump(struct src_agent *a)
{
	while (glue_queue_step(a))
		;
}

static void glue_queue_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	glue_queue_pump(arg);
}

/*
 * Whether a start of m, which may wait (its "queue"), is queued at once:
 * this agent's slots are taken, or others wait for m's destination
 * before it (FIFO).  Else it asks for its reservation now.
 */
static bool glue_queue_first(struct src_agent *a, struct src_migration *m,
			     enum src_queue_reason *why)
{
	if (glue_slots_taken(a) >= a->max_migrations) {
		*why = SRC_QUEUE_SOURCE;
		return true;
	}
	*why = SRC_QUEUE_SLOT;
	return m->handover && src_queue_ahead(&a->migrations, m, false) > 0;
}

/* A reserved start that cannot go on: answered, its reservation given back, m gone. */
static void glue_reserved_fail(struct src_agent *a, struct src_migration *m,
			       struct api_later *later, int ret, const struct api_error *err)
{
	api_later_answer(later, ret, err);
	/* A reservation granted is given back first: m waits for that answer, unlisted. */
	if (src_handover_release(m->handover, glue_released) == 0) {
		TAILQ_INSERT_TAIL(&a->reserving, m, link);
		return;
	}
	glue_destroy_unstarted(m);
}

/* m is reserved (and unlisted): its dump begins, and its start is answered. */
static void glue_dump_reserved(struct src_agent *a, struct src_migration *m,
			       struct api_later *later)
{
	struct api_error err = {0};
	int ret;

	if (a->stopping) {
		ret = api_error_set(&err, -EAGAIN,
				    "the agent is stopping (it was signalled): nothing was frozen");
		goto fail;
	}
	ret = glue_begin_dump(a, m, &err);
	if (ret < 0)
		goto fail;
	api_later_answer(later, 0, NULL);
	return;
fail:
	glue_reserved_fail(a, m, later, ret, &err);
}

/*
 * How long a migration whose destination agent started its worker at the
 * reservation waits, unfrozen, for that worker to connect and prove the
 * secret before the dump begins all the same, and how often it looks.
 * Its start, connection and proof then leave the freeze for certain: in
 * the soft-RoCE guests they took 0.9-1.4 s, longer than a 64 MiB lazy
 * dump, so the worker arrived after the dump and the handover waited for
 * it.  The workload runs meanwhile.
 */
#define GLUE_EARLY_WAIT_MS 5000
#define GLUE_EARLY_LOOK_MS 20

static void glue_early_look(evutil_socket_t fd, short what, void *arg)
{
	struct src_migration *m = arg;
	struct src_agent *a = m->agent;
	uint64_t waited_ms = (now_ns() - m->early_wait_ns) / 1000000;
	bool pending = src_session_early_pending(a, m);
	/* Reserved from the queue (listed) or at its start (reserving). */
	bool queued = m->state == SRC_MIG_QUEUED;
	struct api_later *later;

	if ((!m->busy || pending) && !a->stopping && waited_ms < GLUE_EARLY_WAIT_MS)
		return;
	event_free(m->early_wait);
	m->early_wait = NULL;
	if (!queued)
		TAILQ_REMOVE(&a->reserving, m, link);
	if (m->busy)
		log_info("migration %s: its destination's worker authenticated %" PRIu64
			 " ms after the reservation, before the freeze%s",
			 m->id, waited_ms,
			 pending ? " (its first units' region still being registered)" : "");
	else if (!a->stopping)
		log_warn("migration %s: its destination's worker did not authenticate within "
			 "%u ms of the reservation: dumping all the same (it may connect during "
			 "the dump)",
			 m->id, GLUE_EARLY_WAIT_MS);
	if (queued) {
		/* The step dumps it, or fails it if the agent stops or its process exited. */
		glue_queue_pump(a);
		return;
	}
	later = m->later;
	m->later = NULL;
	glue_dump_reserved(a, m, later);
}

/*
 * Whether m waits before its dump for the worker its reservation started
 * (src_handover_early_sent()), which has not authenticated yet; the tick
 * then looks for its session (m->busy) every GLUE_EARLY_LOOK_MS.
 */
static bool glue_early_wait(struct src_agent *a, struct src_migration *m)
{
	if ((m->busy && !src_session_early_pending(a, m)) || !src_handover_early_sent(m->handover))
		return false;
	if (glue_tick(m, glue_early_look, GLUE_EARLY_LOOK_MS, &m->early_wait, &m->early_wait_ns) <
	    0)
		return false;
	log_info("migration %s: waiting, before the freeze, for its destination's worker to "
		 "authenticate (at most %u ms)",
		 m->id, GLUE_EARLY_WAIT_MS);
	return true;
}

/*
 * The destination agent answered m's reservation: the dump starts now (an
 * agent without reservations: as before, with a warning), or the start
 * is refused with its reason and m goes, nothing frozen, nothing made.
 */
static void glue_reserved(struct src_migration *m, int ret, const char *why)
{
	struct src_agent *a = m->agent;
	struct api_later *later = m->later;
	struct api_error err = {0};

	m->later = NULL;
	TAILQ_REMOVE(&a->reserving, m, link);
	if (ret == -EUSERS && m->queue_ok && !a->stopping) {
		/* Accepted: it waits for a slot there, listed, nothing frozen. */
		glue_queue_add(a, m, SRC_QUEUE_SLOT);
		glue_queue_backoff(a, m);
		api_later_answer(later, 0, NULL);
		return;
	}
	if (ret == -EOPNOTSUPP) {
		log_warn("migration %s: destination agent %s has no reservations (an older "
			 "agent): freezing without one, so it may still refuse after the dump",
			 m->id, m->dest);
		ret = 0;
	} else if (ret < 0) {
		log_err("migration %s: %s; nothing was frozen: process %d runs on untouched", m->id,
			why, (int)m->pid);
		/*
		 * Busy or unreachable: 503, the caller may retry; the agent's
		 * own words last, so that a long one is what a cut shortens.
		 */
		ret = api_error_set(&err, ret == -EHOSTUNREACH ? -EAGAIN : ret,
				    "nothing was frozen: %s", why);
		goto fail;
	}
	if (a->stopping) {
		ret = api_error_set(&err, -EAGAIN,
				    "the agent is stopping (it was signalled): nothing was frozen");
		goto fail;
	}
	if (m->lazy_dump && !src_handover_takes_lazy(m->handover)) {
		/* It would refuse the staged ranges after the freeze: a plain dump it takes. */
		/* A warning only for a lazy dump that was asked for. */
		log_msg(m->lazy_auto ? LOG_LVL_INFO : LOG_LVL_WARN,
			"migration %s: destination agent %s does not take a lazy dump (an older "
			"agent): a plain dump%s",
			m->id, m->dest, m->lazy_auto ? "" : " instead");
		m->lazy_dump = false;
	}
	if (glue_early_wait(a, m)) {
		/* Listed as reserving again, where the worker's session finds it. */
		m->later = later;
		TAILQ_INSERT_TAIL(&a->reserving, m, link);
		return;
	}
	glue_dump_reserved(a, m, later);
	return;
fail:
	glue_reserved_fail(a, m, later, ret, &err);
}

static int glue_start(void *agent, const struct api_start_req *req, struct api_error *err)
{
	struct src_agent *a = agent;
	struct auth_secret *secret = NULL;
	struct src_migration *m = NULL, *old;
	struct glue_secret_bytes bytes = {.len = 0};
	char real[PATH_MAX];
	pid_t pid = 0; /* the process to dump: the request's, or the container's init */
	enum src_queue_reason why;
	int ret;

	if (a->stopping) {
		ret = api_error_set(err, -EAGAIN,
				    "the agent is stopping (it was signalled): it finishes the "
				    "migrations in progress and starts no new one");
		goto out;
	}
	old = src_mig_find(&a->migrations, req->id);
	if (!old && src_mig_find(&a->reserving, req->id)) {
		ret = api_error_set(err, -EEXIST,
				    "migration \"%s\" already exists (reserving on its "
				    "destination agent)",
				    req->id);
		goto out;
	}
	if (old) {
		ret = api_error_set(err, -EEXIST, "migration \"%s\" already exists (%s)", req->id,
				    api_state_str(glue_state(old)));
		goto out;
	}
	if ((req->pid > 0 || req->container.runtime) && req->queue &&
	    src_queue_ahead(&a->migrations, NULL, false) >= a->max_migrations) {
		ret = api_error_set(err, -EAGAIN,
				    "%u migrations are queued, the most this agent keeps waiting "
				    "(--max-migrations)",
				    src_queue_ahead(&a->migrations, NULL, false));
		goto out;
	}
	if (req->container.runtime && req->lazy_dump == API_LAZY_YES) {
		ret = api_error_set(err, -EINVAL,
				    "\"lazy_dump\" cannot go with \"container\" (runc's lazy "
				    "checkpoint is not wired in)");
		goto out;
	}
	/* A dump that may wait is queued instead (glue_queue_first()). */
	ret = req->queue && (req->pid > 0 || req->container.runtime) ? 0 : glue_make_room(a, err);
	if (ret < 0)
		goto out;
	if (req->transport_set && req->transport != glue_transport(a)) {
		ret = api_error_set(err, -EBUSY,
				    "transport: this source serves over %s (its --transport), "
				    "not %s; omit \"transport\" or use a source started with "
				    "--transport %s",
				    api_transport_str(glue_transport(a)),
				    api_transport_str(req->transport),
				    api_transport_str(req->transport));
		goto out;
	}
	/* The secret goes inline in the handover: only inside mutual TLS, or on loopback. */
	if (req->peer && !a->tls_client && !tls_host_is_loopback(req->peer_host)) {
		ret = api_error_set(err, -EINVAL,
				    "dest %s: a handover carries the migration's secret, and this "
				    "source has no TLS (--tls-cert, --tls-key, --tls-ca): it hands "
				    "over to a loopback destination agent only",
				    req->peer);
		goto out;
	}
	ret = glue_secret(req, &secret, &bytes, err);
	if (ret < 0)
		goto out;
	if (req->pid > 0 || req->container.runtime) {
		ret = glue_dump_new(a, req, secret, &m, err);
		secret = NULL; /* glue_dump_new took it */
		if (ret == 0 && req->container.runtime)
			ret = glue_container(req, m, err);
		if (ret < 0)
			goto out;
		pid = m->pid;
		goto add;
	}
	/*
	 * Only what answers at once is checked here: parsing, mapping and
	 * checksumming read the whole checkpoint and run on the offload thread.
	 */
	ret = glue_check_images_dir(a, req->images_dir, real, err);
	if (ret < 0)
		goto out;
	/* The agent's --verify offers checksums for every migration. */
	ret = src_mig_new(req->id, real, secret, req->verify || a->verify, &m);
	secret = NULL; /* src_mig_new took it */
	if (ret < 0) {
		ret = api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL, "cannot start: %s",
				    strerror(-ret));
		goto out;
	}
	glue_copy_opts(&req->criu, &m->criu);
add:
	m->agent = a;
	if (req->peer) {
		struct src_handover_params hp = {
		    .host = req->peer_host,
		    .port = req->peer_port,
		    .advertise = req->advertise,
		    .dest_images_dir = req->dest_images_dir,
		    /* The bundle contract: the same path there unless the request maps it. */
		    .dest_bundle = !m->ctr.id[0]	   ? NULL
				   : req->container.bundle ? req->container.bundle
							   : m->ctr.bundle,
		    .secret = bytes.buf,
		    .secret_len = bytes.len,
		    .no_early = !glue_early(a, m),
		};

		ret = src_handover_new(a, m, &hp, &m->handover);
		if (ret < 0) {
			ret = api_error_set(err, ret, "dest %s: cannot prepare the handover: %s",
					    req->peer, strerror(-ret));
			goto out;
		}
	}
	m->queue_ok = req->queue;
	if (pid > 0 && req->queue && glue_queue_first(a, m, &why)) {
		/* Asked once those before it are gone: no backoff yet. */
		glue_queue_add(a, m, why);
		m = NULL;
		goto out;
	}
	/* Nothing is frozen before the destination agent reserved the migration. */
	if (pid > 0 && m->handover) {
		unsigned int seen = 0;

		glue_early_pd(a, m);
		ret = src_handover_reserve(m->handover, glue_tree_rss(pid, &seen), glue_reserved);
		if (ret < 0) {
			ret = api_error_set(err, ret, "dest %s: cannot ask for a reservation: %s",
					    req->peer, strerror(-ret));
			goto out;
		}
		m->later = req->later;
		TAILQ_INSERT_TAIL(&a->reserving, m, link);
		m = NULL;
		ret = -EINPROGRESS;
		goto out;
	}
	if (pid > 0) {
		ret = glue_begin_dump(a, m, err);
		if (ret < 0)
			goto out;
		m = NULL;
		goto out;
	}
	/* Images given: the destination agent is asked once they are mapped (glue_mapped). */
	if (pid == 0) {
		ret = glue_map(a, m);
		if (ret < 0) {
			ret = api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EIO,
					    "images_dir %s: cannot have them mapped: %s",
					    req->images_dir, strerror(-ret));
			goto out;
		}
	}
	TAILQ_INSERT_TAIL(&a->migrations, m, link);
	m->records = a->records;
	src_records_save(a->records, m);
	m = NULL;
	ret = 0;
out:
	explicit_bzero(&bytes, sizeof(bytes));
	src_mig_destroy(m);
	auth_secret_free(secret);
	return ret;
}

static int glue_get(void *agent, const char *id, struct api_migration_view *out)
{
	struct src_agent *a = agent;
	struct src_migration *m = src_mig_find(&a->migrations, id);

	if (!m)
		return -ENOENT;
	glue_view(a, m, out);
	return 0;
}

static int glue_list(void *agent, api_emit_fn emit, void *ctx)
{
	struct src_agent *a = agent;
	struct api_migration_view v;
	struct src_migration *m;
	int ret;

	TAILQ_FOREACH(m, &a->migrations, link)
	{
		api_migration_view_init(&v);
		glue_view(a, m, &v);
		ret = emit(ctx, &v);
		if (ret)
			return ret;
	}
	return 0;
}

static int glue_abort(void *agent, const char *id, struct api_error *err)
{
	struct src_agent *a = agent;
	struct src_migration *m = src_mig_find(&a->migrations, id);

	if (!m)
		return api_error_set(err, -ENOENT, "no migration \"%s\"", id);
	if (glue_final(m))
		return -EALREADY;
	if (m->later)
		return api_error_set(err, -EBUSY,
				     "a rollback of migration \"%s\" waits for its destination "
				     "agent's answer; retry once it has one",
				     id);
	if (m->job)
		return api_error_set(err, -EBUSY,
				     "criu %s is running (pid %d): stopping it could leave the "
				     "process frozen; retry once it ended",
				     m->state == SRC_MIG_DUMPING ? "dump" : "restore",
				     (int)criuproc_pid(m->job));
	/* The destination agent's side stops too, once it may have been told of the migration. */
	src_handover_abort(m->handover);
	src_session_cancel(a, m, "migration aborted on the source");
	src_mig_set_aborted(m, "aborted through the API");
	return 0;
}

/* criu's log of a rollback: runc has criu write restore.log in its work path. */
static const char *glue_rollback_log(const struct src_migration *m)
{
	return m->ctr.id[0] ? "restore.log" : "restore-rollback.log";
}

static void glue_restore_exit(void *arg, const struct criuproc_exit *e)
{
	struct src_migration *m = arg;
	char why[SRC_MIG_ERROR_MAX];

	criuproc_free(m->job);
	m->job = NULL;
	if (!e->ok) {
		glue_criu_failure(
		    m, m->ctr.id[0] ? "rollback: runc restore" : "rollback: criu restore", e,
		    glue_rollback_log(m), why, sizeof(why));
		log_err("migration %s: %s", m->id, why);
		src_mig_finish(m, SRC_MIG_FAILED, why);
		return;
	}
	log_info("migration %s rolled back: restored from %s in %.2f s; the process runs on the "
		 "source again",
		 m->id, m->dir, (double)e->elapsed_ns / 1e9);
	src_mig_finish(m, SRC_MIG_ROLLED_BACK, NULL);
}

/* 0 when m may be rolled back, else the 409 (or -EALREADY) with why. */
static int glue_rollback_allowed(const struct src_migration *m, struct api_error *err)
{
	switch (m->state) {
	case SRC_MIG_DONE:
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" is done: the destination has every page "
				     "and runs the process; rolling back would fork it",
				     m->id);
	case SRC_MIG_ROLLED_BACK:
		return api_error_set(err, -EALREADY, "migration \"%s\" is already rolled back",
				     m->id);
	case SRC_MIG_DUMPING:
	case SRC_MIG_RESTORING:
		return api_error_set(err, -EBUSY,
				     "criu %s is running for migration \"%s\"; retry once it "
				     "ended",
				     m->state == SRC_MIG_DUMPING ? "dump" : "restore", m->id);
	case SRC_MIG_SERVING:
		return api_error_set(err, -EBUSY,
				     "destination %s is fetching migration \"%s\" and may run "
				     "the process already: abort the migration first",
				     m->peer, m->id);
	case SRC_MIG_PAUSED:
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" is paused: destination %s runs the process "
				     "and may resume; abort the migration first",
				     m->id, m->peer);
	case SRC_MIG_QUEUED:
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" is queued: nothing was frozen, nothing to "
				     "roll back; abort it to leave the queue",
				     m->id);
	case SRC_MIG_MAPPING:
		/* A dump the agent made is complete already: its mapping is let go. */
		if (m->pid == 0)
			return api_error_set(err, -EBUSY,
					     "the images of migration \"%s\" are still being "
					     "checked; retry once it serves",
					     m->id);
		break;
	case SRC_MIG_READY:
	case SRC_MIG_FAILED:
	case SRC_MIG_ABORTED:
		break;
	}
	/* A lazy dump is rolled back by continuing its stopped tree, not by a restore. */
	if (m->lazy_dump)
		return m->lazy && src_lazydump_is_ready(m->lazy)
			   ? 0
			   : api_error_set(err, -EBUSY,
					   "migration \"%s\": this agent holds no stopped tree of "
					   "its lazy dump (its page server never came up, so criu "
					   "left the process running; or, after a restart, the "
					   "tree was gone or running: see the agent's log)",
					   m->id);
	if (m->restore_interrupted)
		return api_error_set(err, -EBUSY,
				     "migration \"%s\": the source agent restarted while its "
				     "rollback's criu restore ran, so the process may run again "
				     "already; see %s/restore-rollback.log, and restore by hand "
				     "only if it does not run",
				     m->id, m->dir);
	if (!m->images_complete)
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" has no complete checkpoint (the dump "
				     "failed, and criu leaves the process running then)",
				     m->id);
	if (m->criu.leave_running)
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" was dumped with leave_running: the process "
				     "still runs on the source",
				     m->id);
	/* criu restore runs as root: only in a directory the agent made and dumped into. */
	if (m->pid <= 0)
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" serves images it was given (images_dir): "
				     "only checkpoints this agent dumped itself (pid) are rolled "
				     "back",
				     m->id);
	return 0;
}

/*
 * A lazy dump's rollback: its tree is stopped on this host with all its
 * memory.  While criu still holds it (its page server serves), that session
 * is ended first and glue_lazy_dump_exit() continues the tree.
 */
static int glue_rollback_lazy(struct src_migration *m, struct api_error *err)
{
	char why[SRC_MIG_ERROR_MAX];
	int ret;

	if (criuproc_running(m->job)) {
		log_info("migration %s: rolling back: ending the lazy dump's page server first",
			 m->id);
		src_lazydump_end(m->lazy);
		return 0;
	}
	ret = src_lazydump_resume(m->lazy);
	if (ret < 0) {
		snprintf(why, sizeof(why), "rollback: cannot continue the stopped process %d: %s",
			 (int)m->pid, strerror(-ret));
		src_mig_finish(m, SRC_MIG_FAILED, why);
		return api_error_set(err, -EIO, "%s", why);
	}
	src_mig_finish(m, SRC_MIG_ROLLED_BACK, NULL);
	return 0;
}

/* Restores m's checkpoint on the source: its state allowed it, and the destination's. */
static int glue_rollback_run(struct src_agent *a, struct src_migration *m, struct api_error *err)
{
	const char *what = NULL;
	struct src_criu_argv av;
	char why[SRC_MIG_ERROR_MAX];
	int ret;

	/* Peers still authenticating for it are turned away; so is the destination agent. */
	src_handover_stop(m->handover);
	src_session_cancel(a, m, "migration rolled back on the source");
	src_mig_map_cancel(m);
	imgmap_close(m->map);
	m->map = NULL;
	m->error[0] = '\0';
	m->finished_unix_ms = 0;
	src_mig_set_state(m, SRC_MIG_RESTORING);
	if (m->lazy_dump)
		return glue_rollback_lazy(m, err);
	/* A container comes back under its id with runc, never with a bare criu restore. */
	if (m->ctr.id[0])
		ret = src_runc_argv_build(&av, a->runc, SRC_RUNC_RESTORE, glue_runc_root(m),
					  m->ctr.id, m->dir, m->ctr.bundle, &m->criu, &what);
	else
		ret = src_criu_argv_build(&av, a->criu, SRC_CRIU_RESTORE, 0, m->dir,
					  glue_rollback_log(m), &m->criu);
	if (ret == 0)
		ret = src_criu_start(a->base, m->id, &av, m->dir, glue_rollback_log(m),
				     glue_restore_exit, m, &m->job);
	if (ret < 0) {
		snprintf(why, sizeof(why), "rollback: cannot run %s restore: %s",
			 av.v[0] ? av.v[0] : "", strerror(-ret));
		src_mig_finish(m, SRC_MIG_FAILED, why);
		return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EIO, "%s", why);
	}
	log_info("migration %s: rolling back: restoring %s%s%s on the source", m->id, m->dir,
		 m->ctr.id[0] ? " as container " : "", m->ctr.id);
	return 0;
}

/* The destination agent's word on the workload there: the rollback runs, or 409. */
static void glue_rollback_answer(struct src_migration *m, int ret, const char *why)
{
	struct api_later *later = m->later;
	struct api_error err = {0};

	/* Gone with the API (the agent stops): nothing is rolled back. */
	if (!later)
		return;
	m->later = NULL;
	if (ret < 0) {
		log_warn("migration %s: rollback refused: %s", m->id, why);
		ret = api_error_set(&err, -EBUSY,
				    "rollback refused: %s; once it is stopped there, roll back "
				    "with force",
				    why);
	} else {
		log_info("migration %s: rollback allowed: %s", m->id, why);
		/* The state may have moved while the answer came. */
		ret = glue_rollback_allowed(m, &err);
		if (ret == 0)
			ret = glue_rollback_run(m->agent, m, &err);
	}
	api_later_answer(later, ret, &err);
}

/* A handover to ask m's destination agent with, made again after a restart. */
static int glue_asker(struct src_agent *a, struct src_migration *m)
{
	struct src_handover_params hp = {.host = NULL};
	char host[API_HOSTPORT_MAX + 1], port[8];
	uint64_t p;
	int ret;

	if (m->handover)
		return 0;
	ret = parse_hostport(m->dest, NULL, host, sizeof(host), port, sizeof(port));
	if (ret == 0)
		ret = parse_uint(port, 1, 65535, &p);
	if (ret < 0)
		return ret;
	hp.host = host;
	hp.port = (uint16_t)p;
	return src_handover_new(a, m, &hp, &m->handover);
}

/*
 * A migration reloaded in post-copy whose destination agent took it
 * before the restart: that agent is polled again, as after its 202, so
 * the migration knows its destination's state (a rollback, an abort
 * passed on, a destination that gave up).
 */
static void glue_follow(struct src_agent *a, struct src_migration *m)
{
	int ret = glue_asker(a, m);

	if (ret < 0) {
		log_warn("migration %s: cannot follow destination agent %s again: %s", m->id,
			 m->dest, strerror(-ret));
		return;
	}
	src_handover_follow(m->handover);
}

/*
 * Never twice: beyond what its state allows, a rollback runs only when no
 * destination ever authenticated for the migration (it was never restored
 * elsewhere), or its destination agent says the migration failed or was
 * aborted there, or the caller forces it.
 */
static int glue_rollback(void *agent, const struct api_rollback_req *rr, struct api_error *err)
{
	struct src_agent *a = agent;
	struct src_migration *m = src_mig_find(&a->migrations, rr->id);
	int ret;

	if (!m)
		return api_error_set(err, -ENOENT, "no migration \"%s\"", rr->id);
	if (m->later)
		return api_error_set(err, -EBUSY,
				     "a rollback of migration \"%s\" waits for its destination "
				     "agent's answer already",
				     m->id);
	ret = glue_rollback_allowed(m, err);
	if (ret < 0)
		return ret;
	if (rr->force) {
		log_warn("migration %s: rollback FORCED through the API: the destination%s%s is "
			 "not asked whether the workload still runs there",
			 m->id, m->peer[0] ? " " : "", m->peer);
		return glue_rollback_run(a, m, err);
	}
	if (!m->peer[0]) {
		log_info("migration %s: rollback: no destination ever authenticated for it, so "
			 "the workload was never restored elsewhere",
			 m->id);
		return glue_rollback_run(a, m, err);
	}
	if (!m->dest)
		return api_error_set(err, -EBUSY,
				     "destination %s fetched migration \"%s\" and no destination "
				     "agent can tell whether the workload is stopped there: make "
				     "sure it is, then roll back with force",
				     m->peer, m->id);
	ret = glue_asker(a, m);
	if (ret == 0)
		ret = src_handover_ask_stopped(m->handover, glue_rollback_answer);
	if (ret < 0)
		return api_error_set(
		    err, -EBUSY,
		    "cannot ask destination agent %s whether the workload is "
		    "stopped there (%s): make sure it is, then roll back with force",
		    m->dest, strerror(-ret));
	m->later = rr->later;
	return -EINPROGRESS;
}

/* GET /metrics: the data listener's refused peers, and whether SIGTERM's drain runs. */
static int glue_metrics(void *agent, struct evbuffer *out)
{
	struct src_agent *a = agent;

	if (prom_family(out, "rdmig_source_peers_refused_total", PROM_COUNTER,
			"connections refused at --max-preauth or --max-preauth-per-addr") < 0 ||
	    prom_u64(out, "rdmig_source_peers_refused_total", NULL, a->peers_refused_total) < 0 ||
	    prom_family(out, "rdmig_source_peers_unauthenticated_total", PROM_COUNTER,
			"peers refused because their proof of the migration's secret was wrong") <
		0 ||
	    prom_u64(out, "rdmig_source_peers_unauthenticated_total", NULL,
		     a->peers_unauthenticated_total) < 0 ||
	    prom_family(out, "rdmig_source_stopping", PROM_GAUGE,
			"1 while a SIGTERM waits for the migrations in progress") < 0 ||
	    prom_u64(out, "rdmig_source_stopping", NULL, a->stopping) < 0)
		return -ENOMEM;
	return 0;
}

static const struct api_ops glue_ops = {
    .start = glue_start,
    .start_prepare = glue_container_prepare,
    .prepared_free = glue_container_found_free,
    .get = glue_get,
    .list = glue_list,
    .abort = glue_abort,
    .rollback = glue_rollback,
    .metrics = glue_metrics,
};

/*
 * The images root: made (0700) when missing, then it must be root's and
 * not group/other-writable; kept open, so every path below it is resolved
 * beneath this fd.
 */
static int glue_open_root(struct src_agent *a)
{
	int ret = mkdir_private(a->images_root);

	if (ret == 0 && !realpath(a->images_root, a->images_root_real))
		ret = -errno;
	if (ret == 0) {
		a->images_root_fd = safepath_open_dir(a->images_root_real);
		ret = a->images_root_fd < 0 ? a->images_root_fd : 0;
	}
	if (ret == 0)
		ret = safepath_check_trusted(a->images_root_fd);
	if (ret < 0) {
		log_err("images root %s: %s", a->images_root, safepath_strerror(ret));
		return ret;
	}
	return 0;
}

/* Whether dir has a dump.log (anything but "no such file" counts as yes). */
static bool glue_dump_log_exists(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/dump.log", dir) >= (int)sizeof(path))
		return true;
	return lstat(path, &st) == 0 || errno != ENOENT;
}

/* criu's dump.log in dir ends with its success line: the checkpoint is complete. */
static bool glue_dump_log_ok(const char *dir)
{
	char path[PATH_MAX], line[512], last[512] = "";
	FILE *f;

	if (snprintf(path, sizeof(path), "%s/dump.log", dir) >= (int)sizeof(path))
		return false;
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (line[0] != '\n')
			memcpy(last, line, sizeof(last));
	fclose(f);
	return strstr(last, "Dumping finished successfully") != NULL;
}

/*
 * A migration from its record, as the agent left it: final ones are shown
 * as they ended; one cut short in criu dump or restore fails (whatever
 * criu did meanwhile, the agent cannot tell for sure); one mapped or
 * served is mapped again and serves, so a destination can reconnect and
 * a rollback works.
 */
/*
 * After a restart: m's lazy dump left its tree stopped and criu is gone;
 * the tree is taken again (its memory is staged from it, or a rollback
 * continues it) only if it is the same and still stopped.  live: m is
 * still served (its page server may still wait for a first client).
 */
static int glue_adopt_lazy(struct src_agent *a, struct src_migration *m, bool live, char *why,
			   size_t why_len)
{
	char what[SRC_MIG_ERROR_MAX / 2];
	int ret;

	ret = src_lazydump_adopt(a->base, m->pid, m->lazy_tree_start, live ? m->lazy_port : 0,
				 &glue_lazy_ops, m, &m->lazy, what, sizeof(what));
	if (ret < 0)
		snprintf(why, why_len,
			 "the source agent restarted and cannot take this lazy dump's stopped "
			 "tree again: %s",
			 what);
	return ret;
}

/*
 * The agent died while criu dump --lazy-pages ran.  Nothing reached a
 * destination (the images were never served), so the migration fails.
 * Once past its status byte criu's page server waits for a client with
 * the tree frozen, for ever: its session is ended (src_lazydump_adopt()),
 * so criu exits leaving the tree stopped with its memory (--leave-stopped),
 * and the tree is taken again, so that a rollback continues it.  A dump
 * still running when the agent died ends by itself: criu's status byte
 * finds no reader and, as a failed dump, continues the tree (untested
 * with the real criu).
 */
static void glue_reload_lazy_dumping(struct src_agent *a, struct src_migration *m)
{
	char why[SRC_MIG_ERROR_MAX];

	log_warn("migration %s: the agent stopped while criu dump --lazy-pages ran: nothing "
		 "reached a destination; the migration fails",
		 m->id);
	if (glue_adopt_lazy(a, m, true, why, sizeof(why)) == 0)
		snprintf(why, sizeof(why),
			 "the source agent restarted while criu dump --lazy-pages ran; nothing "
			 "reached a destination, and the dumped tree is held stopped: roll back "
			 "to continue it here");
	src_mig_finish(m, SRC_MIG_FAILED, why);
}

static void glue_reload_one(void *arg, struct src_record *rec)
{
	struct src_agent *a = arg;
	struct src_migration *m = NULL;
	char why[SRC_MIG_ERROR_MAX];
	const char *rel;
	int ret;

	if (src_mig_find(&a->migrations, rec->id))
		return;
	if (!safepath_below(a->images_root_real, rec->dir, &rel) || !*rel ||
	    safepath_check_rel(rel) < 0) {
		log_err("records: migration %s skipped: its images dir %s is not below the "
			"images root %s",
			rec->id, rec->dir, a->images_root_real);
		return;
	}
	ret = src_mig_new(rec->id, rec->dir, rec->secret, rec->verify, &m);
	rec->secret = NULL; /* src_mig_new took it */
	if (ret < 0) {
		log_err("records: migration %s skipped: %s", rec->id, strerror(-ret));
		return;
	}
	m->agent = a;
	m->pid = rec->pid;
	m->ctr = rec->ctr;
	m->criu = rec->criu;
	m->images_complete = rec->images_complete;
	m->restore_interrupted = rec->restore_interrupted;
	m->created_unix_ms = rec->created_unix_ms;
	m->finished_unix_ms = rec->finished_unix_ms;
	m->freeze_ms = rec->freeze_ms;
	m->handover_ms = rec->handover_ms;
	m->lazy_bytes = rec->lazy_bytes;
	m->lazy_dump = rec->lazy_dump;
	m->lazy_tree_start = rec->lazy_tree_start;
	m->lazy_port = rec->lazy_port;
	m->digest = rec->digest;
	m->precopy = rec->precopy;
	memcpy(m->rounds, rec->rounds, sizeof(m->rounds));
	m->nr_rounds = rec->nr_rounds;
	m->final_pages = rec->final_pages;
	m->pauses = rec->pauses;
	m->paused_ns = (uint64_t)rec->paused_ms * 1000000;
	snprintf(m->peer, sizeof(m->peer), "%s", rec->peer);
	snprintf(m->error, sizeof(m->error), "%s", rec->error);
	if (rec->dest)
		m->dest = strdup(rec->dest);
	TAILQ_INSERT_TAIL(&a->migrations, m, link);
	m->records = a->records;
	log_info("records: migration %s was %s when the agent stopped (images %s)", m->id,
		 src_mig_state_str(rec->state), m->dir);
	switch (rec->state) {
	case SRC_MIG_FAILED:
	case SRC_MIG_ABORTED:
		/* A lazy dump's stopped tree, taken again, can still be rolled back. */
		if (m->lazy_dump && glue_adopt_lazy(a, m, false, why, sizeof(why)) < 0)
			log_info("migration %s: no rollback by continuing its tree: %s", m->id,
				 why);
		/* fall through */
	case SRC_MIG_DONE:
	case SRC_MIG_ROLLED_BACK:
		src_mig_reloaded(m, rec->state);
		return;
	case SRC_MIG_DUMPING:
		if (m->lazy_dump) {
			glue_reload_lazy_dumping(a, m);
			return;
		}
		/*
		 * Cut short in its pre-copy rounds: a round's criu pre-dump may
		 * have finished on its own, but only the agent starts the final
		 * dump, whose log criu opens first.
		 */
		if (m->precopy != API_PRECOPY_OFF && !glue_dump_log_exists(m->dir)) {
			snprintf(
			    why, sizeof(why),
			    "the source agent restarted during the pre-copy rounds, before the "
			    "final dump (no dump.log in %s): criu pre-dump leaves the process "
			    "running, nothing was frozen; start the migration again",
			    m->dir);
			src_mig_finish(m, SRC_MIG_FAILED, why);
			return;
		}
		/* criu is not the agent's child any more: its log tells how it ended. */
		m->images_complete = m->pid > 0 && glue_dump_log_ok(m->dir);
		snprintf(why, sizeof(why),
			 "the source agent restarted while criu dump ran; the checkpoint in %s "
			 "is %s",
			 m->dir,
			 m->images_complete ? "complete (see dump.log): roll back to run the "
					      "process here again"
					    : "incomplete (see dump.log)");
		src_mig_finish(m, SRC_MIG_FAILED, why);
		return;
	case SRC_MIG_RESTORING:
		m->restore_interrupted = true;
		src_mig_reloaded(m, SRC_MIG_RESTORING);
		src_mig_finish(m, SRC_MIG_FAILED,
			       "the source agent restarted while the rollback's criu restore ran: "
			       "see restore-rollback.log");
		return;
	case SRC_MIG_QUEUED:
		/* Never written (a queued migration keeps no record): dropped as documented. */
		src_mig_reloaded(m, SRC_MIG_QUEUED);
		src_mig_finish(m, SRC_MIG_ABORTED,
			       "the source agent restarted while the migration was queued: nothing "
			       "was frozen; start it again");
		return;
	case SRC_MIG_MAPPING:
	case SRC_MIG_READY:
		break;
	case SRC_MIG_SERVING:
	case SRC_MIG_PAUSED:
		/* FEAT_RESUME: a destination in post-copy may come back for the pages. */
		m->pause_when_mapped = true;
		/* A record of an older agent has no count: its pause is a new one. */
		if (rec->state == SRC_MIG_PAUSED && rec->pauses)
			m->pause_resume_unix_ms = rec->pause_since_unix_ms;
		break;
	}
	if (!m->secret) {
		src_mig_finish(m, SRC_MIG_FAILED,
			       "the source agent restarted and this migration's secret is gone "
			       "from its records: no destination can prove it");
		return;
	}
	if (m->lazy_dump && glue_adopt_lazy(a, m, true, why, sizeof(why)) < 0) {
		src_mig_finish(m, SRC_MIG_FAILED, why);
		return;
	}
	/* "dumping" (nothing runs) -> mapping -> ready, as a migration of given images. */
	m->error[0] = '\0';
	ret = glue_map(a, m);
	if (ret < 0) {
		snprintf(why, sizeof(why), "after a restart: cannot have %s mapped again: %s",
			 m->dir, strerror(-ret));
		src_mig_finish(m, SRC_MIG_FAILED, why);
		return;
	}
	if (m->pause_when_mapped && m->dest)
		glue_follow(a, m);
}

/* The records below the root: opened, and every migration they keep known again. */
static int glue_reload(struct src_agent *a)
{
	int ret = src_records_open(a->images_root_fd, a->images_root_real, &a->records);

	if (ret < 0)
		return ret;
	ret = src_records_load(a->records, glue_reload_one, a);
	if (ret < 0) {
		log_err("records: cannot read %s: %s", src_records_path(a->records),
			strerror(-ret));
		return ret;
	}
	if (ret > 0)
		log_warn("records: %d record(s) in %s skipped (see above)", ret,
			 src_records_path(a->records));
	return 0;
}

int src_api_start(struct src_agent *a, const struct src_api_opts *o)
{
	struct api_config cfg = {
	    .role = API_ROLE_SOURCE,
	    /* "": no UNIX socket (NULL would mean the default path). */
	    .socket_path = o->socket_path ? o->socket_path : "",
	    .tcp = o->tcp,
	    .group = o->group,
	    .tls = o->tls,
	    .allow = o->allow,
	    .nallow = o->nallow,
	    .insecure_tcp = o->insecure_tcp,
	    .test_secret_delay_ms = o->test_secret_delay_ms,
	    .prepare_ctx = &a->runc_roots,
	    /* Socket activation (systemd/rdmig-source.socket): the same path, bound by systemd. */
	    .listen_fd = o->socket_path ? svcmgr_listen_fd() : -1,
	};
	const struct timeval tick = {.tv_sec = 0, .tv_usec = GLUE_QUEUE_TICK_MS * 1000};
	int ret;

	ret = glue_open_root(a);
	if (ret == 0)
		ret = glue_reload(a);
	if (ret < 0)
		return ret;
	a->queue_tick = event_new(a->base, -1, EV_PERSIST, glue_queue_tick, a);
	if (!a->queue_tick || event_add(a->queue_tick, &tick) < 0)
		return -ENOMEM;
	ret = api_server_create(a->base, &cfg, &glue_ops, a, &a->api);
	if (ret < 0) {
		log_err("api: cannot serve on %s%s%s: %s", o->socket_path ? o->socket_path : "",
			o->socket_path && o->tcp ? " and " : "", o->tcp ? o->tcp : "",
			strerror(-ret));
		return ret;
	}
	if (api_server_socket_path(a->api))
		log_info("api: serving on %s", api_server_socket_path(a->api));
	if (o->tcp)
		log_info("api: serving on TCP port %d (%s)", api_server_tcp_port(a->api),
			 o->tls ? "mutual TLS" : "plain HTTP, loopback only");
	return 0;
}

void src_api_stop(struct src_agent *a)
{
	struct src_migration *m;

	api_server_destroy(a->api);
	a->api = NULL;
	if (a->queue_tick)
		event_free(a->queue_tick);
	a->queue_tick = NULL;
	/* Their start requests were answered 503: nothing was frozen for them. */
	while ((m = TAILQ_FIRST(&a->reserving)) != NULL) {
		TAILQ_REMOVE(&a->reserving, m, link);
		api_later_answer(m->later, -ECANCELED, NULL);
		m->later = NULL;
		glue_destroy_unstarted(m);
	}
	/* A rollback's question still out: dropped, nothing is rolled back. */
	TAILQ_FOREACH(m, &a->migrations, link)
	if (m->later) {
		api_later_answer(m->later, -ECANCELED, NULL);
		m->later = NULL;
		src_handover_stop(m->handover);
	}
	/* What the shutdown does to them (sessions closed) changes nothing a restart needs. */
	TAILQ_FOREACH(m, &a->migrations, link)
	m->records = NULL;
	src_records_close(a->records);
	a->records = NULL;
	if (a->images_root_fd >= 0)
		close(a->images_root_fd);
	a->images_root_fd = -1;
}
