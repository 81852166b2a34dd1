// SPDX-License-Identifier: GPL-2.0-or-later
#include "migration.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <openssl/crypto.h>
#include <time.h>

#include <event2/event.h>

#include "ctrl.h"
#include "agent.h"
#include "handover.h"
#include "lazydump.h"
#include "prereg.h"
#include "log.h"
#include "records.h"
#include "util.h"

const char *src_mig_state_str(enum src_mig_state st)
{
	switch (st) {
	case SRC_MIG_DUMPING:
		return "dumping";
	case SRC_MIG_MAPPING:
		return "mapping";
	case SRC_MIG_READY:
		return "ready";
	case SRC_MIG_SERVING:
		return "serving";
	case SRC_MIG_DONE:
		return "done";
	case SRC_MIG_FAILED:
		return "failed";
	case SRC_MIG_ABORTED:
		return "aborted";
	case SRC_MIG_RESTORING:
		return "restoring";
	case SRC_MIG_ROLLED_BACK:
		return "rolled back";
	case SRC_MIG_PAUSED:
		return "paused";
	case SRC_MIG_QUEUED:
		return "queued";
	}
	return "?";
}

int src_mig_state_parse(const char *s, enum src_mig_state *out)
{
	enum src_mig_state st;

	for (st = SRC_MIG_DUMPING; st <= SRC_MIG_QUEUED; st++)
		if (strcmp(s, src_mig_state_str(st)) == 0) {
			*out = st;
			return 0;
		}
	return -EINVAL;
}

#define ST(x)	(1u << (x))
#define ST_ENDS (ST(SRC_MIG_FAILED) | ST(SRC_MIG_ABORTED))

/*
 * The legal transitions, by state left.  A migration given its images
 * starts "dumping" too (nothing runs) and goes straight to mapping or,
 * mapped at startup (--migration), ready.  Done and rolled back are ends;
 * failed and aborted ones may still be rolled back (restoring).  A
 * serving migration pauses when its post-copy destination is lost, and a
 * ready one reloaded after a restart when it served before; a paused one
 * serves again once that destination resumes, or ends (aborted, failed).
 * A dump that must wait for a slot is queued before anything runs, and
 * dumps once its turn comes; a queued one aborted or refused for good
 * ends with nothing to roll back.
 */
static const unsigned int mig_next[] = {
    [SRC_MIG_DUMPING] = ST(SRC_MIG_MAPPING) | ST(SRC_MIG_READY) | ST(SRC_MIG_QUEUED) | ST_ENDS,
    [SRC_MIG_MAPPING] = ST(SRC_MIG_READY) | ST(SRC_MIG_RESTORING) | ST_ENDS,
    [SRC_MIG_READY] = ST(SRC_MIG_SERVING) | ST(SRC_MIG_RESTORING) | ST(SRC_MIG_PAUSED) | ST_ENDS,
    [SRC_MIG_SERVING] = ST(SRC_MIG_READY) | ST(SRC_MIG_DONE) | ST(SRC_MIG_PAUSED) | ST_ENDS,
    [SRC_MIG_DONE] = 0,
    [SRC_MIG_FAILED] = ST(SRC_MIG_RESTORING),
    [SRC_MIG_ABORTED] = ST(SRC_MIG_RESTORING),
    [SRC_MIG_RESTORING] = ST(SRC_MIG_ROLLED_BACK) | ST(SRC_MIG_FAILED),
    [SRC_MIG_ROLLED_BACK] = 0,
    [SRC_MIG_PAUSED] = ST(SRC_MIG_SERVING) | ST_ENDS,
    [SRC_MIG_QUEUED] = ST(SRC_MIG_DUMPING) | ST_ENDS,
};

int src_mig_set_state(struct src_migration *m, enum src_mig_state st)
{
	if (!(mig_next[m->state] & ST(st))) {
		log_err("migration %s: no transition from %s to %s: ignored", m->id,
			src_mig_state_str(m->state), src_mig_state_str(st));
		return -EINVAL;
	}
	log_debug("migration %s: %s -> %s", m->id, src_mig_state_str(m->state),
		  src_mig_state_str(st));
	if (m->state == SRC_MIG_PAUSED) {
		m->paused_ns += now_ns() - m->pause_since_ns;
		m->pause_since_unix_ms = 0;
		if (st == SRC_MIG_SERVING)
			log_info("migration %s resumed after %.1f s paused (%" PRIu32 " pause(s))",
				 m->id, (double)(now_ns() - m->pause_since_ns) / 1e9, m->pauses);
	}
	/* A dump slot or a destination's slot may have freed: the queue looks now. */
	if (m->agent && m->agent->queue_tick &&
	    (m->state == SRC_MIG_DUMPING || src_mig_final_state(st)))
		event_active(m->agent->queue_tick, EV_TIMEOUT, 1);
	m->state = st;
	/* A record that cannot be written is logged there: the migration goes on. */
	if (m->records)
		src_records_save(m->records, m);
	return 0;
}

void src_mig_pause(struct src_migration *m, const char *why)
{
	src_mig_pause_since(m, why, 0);
}

void src_mig_pause_since(struct src_migration *m, const char *why, int64_t since_unix_ms)
{
	int64_t now_ms = src_unix_ms();
	uint64_t now = now_ns(), ago;

	snprintf(m->pause_reason, sizeof(m->pause_reason), "%s", why);
	if (since_unix_ms > 0 && since_unix_ms <= now_ms) {
		/* The monotonic clock restarted with the host perhaps: the wall clock's age. */
		ago = (uint64_t)(now_ms - since_unix_ms) * 1000000;
		m->pause_since_unix_ms = since_unix_ms;
		m->pause_since_ns = ago < now ? now - ago : 0;
	} else {
		m->pause_since_unix_ms = now_ms;
		m->pause_since_ns = now;
		m->pauses++;
	}
	if (src_mig_set_state(m, SRC_MIG_PAUSED) == 0)
		log_warn("migration %s paused: %s; the checkpoint stays mapped for its "
			 "destination to resume",
			 m->id, why);
}

int64_t src_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int src_mig_load_secret(const char *id, const char *secret_file, struct auth_secret **out)
{
	int ret;

	ret = auth_secret_load_file(secret_file, out);
	if (ret < 0) {
		log_err("migration %s: cannot load the secret from %s: %s", id, secret_file,
			strerror(-ret));
		return ret;
	}
	return 0;
}

int src_mig_new(const char *id, const char *dir, struct auth_secret *secret, bool page_hashes,
		struct src_migration **out)
{
	struct src_migration *m = NULL;
	struct ctrl_err e;
	int ret;

	ret = ctrl_validate_migration_id(id, &e);
	if (ret < 0) {
		log_err("migration id '%s': %s", id, e.text);
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->secret = secret;
	secret = NULL;
	m->verify = page_hashes;
	m->state = SRC_MIG_DUMPING;
	m->freeze_ms = -1;
	m->final_pages = -1;
	m->handover_ms = -1;
	m->early_dest_ms = -1;
	m->register_ms = -1;
	m->dr.pages_total = m->dr.pages_fetched = m->dr.bytes = m->dr.faults = -1;
	m->dr.fault_p50_us = m->dr.fault_p99_us = m->dr.restore_ms = m->dr.resumed_ms =
	    m->dr.received_ms = -1;
	m->criu.log_level = -1;
	m->created_unix_ms = src_unix_ms();
	m->dir = strdup(dir);
	if (!m->dir) {
		ret = -ENOMEM;
		goto out;
	}
	ret = 0;
out:
	auth_secret_free(secret);
	if (ret < 0) {
		src_mig_destroy(m);
		m = NULL;
	}
	*out = m;
	return ret;
}

/* A map job: what the offload thread needs, and what it found. */
struct src_map_job {
	struct offload_job job;
	/* Loop side. */
	struct src_migration *m; /* NULL once the migration let the job go */
	src_mig_mapped_fn cb;
	/* Worker inputs: copies, the job may outlive its migration. */
	char id[AUTH_MIGRATION_ID_MAX + 1];
	char *dir;
	bool page_hashes;
	bool lazy_dump;
	uint8_t page_key[MSGAUTH_PAGE_KEY_LEN];
	unsigned int delay_ms;
	/* Worker outputs, read by the loop once the job is back. */
	struct imgmap *map;
	int ret;
	uint64_t ns;
};

static struct src_map_job *map_job_of(struct offload_job *oj)
{
	return (struct src_map_job *)((char *)oj - offsetof(struct src_map_job, job));
}

/*
 * m's images are in (ret 0): m owns map now, ready, logged.  Otherwise the
 * failure, logged (-ESTALE: not the images its record was made with), and
 * map stays the caller's.
 */
static int mig_mapped(struct src_migration *m, int ret, struct imgmap *map, uint64_t ns)
{
	char sz[32];

	if (ret == 0 && m->digest && m->digest != map->digest) {
		log_err("migration %s: the images in %s changed since its record was written "
			"(digest %016" PRIx64 ", now %016" PRIx64 ")",
			m->id, m->dir, m->digest, map->digest);
		return -ESTALE;
	}
	if (ret < 0) {
		log_err("migration %s: cannot serve images in %s: %s", m->id, m->dir,
			strerror(-ret));
		return ret;
	}
	m->map = map;
	m->lazy_bytes = map->lazy_bytes;
	m->digest = map->digest;
	/* A lazy dump's images lack its memory: never restored from, only continued. */
	m->images_complete = !map->lazy_dump;
	src_mig_set_state(m, SRC_MIG_READY);
	log_info("migration %s: %zu task(s), %s of lazy pages in %s, mapped and checksummed in "
		 "%.2f s",
		 m->id, map->nr_tasks, fmt_bytes(map->lazy_bytes, sz, sizeof(sz)), m->dir,
		 (double)ns / 1e9);
	return 0;
}

/* Offload thread: touches nothing but the job. */
static void map_job_run(struct offload_job *oj)
{
	struct src_map_job *j = map_job_of(oj);
	uint64_t t0 = now_ns();

	j->ret = offload_job_sleep(oj, j->delay_ms);
	if (j->ret == 0 && j->lazy_dump)
		j->ret = imgmap_open_lazy(j->dir, &oj->cancelled, &j->map);
	else if (j->ret == 0)
		j->ret = imgmap_open(j->dir, j->page_hashes ? j->page_key : NULL, &oj->cancelled,
				     &j->map);
	j->ns = now_ns() - t0;
}

static void map_job_done(struct offload_job *oj, bool ran)
{
	struct src_map_job *j = map_job_of(oj);
	struct src_migration *m = j->m;
	int ret = ran ? j->ret : -ECANCELED;

	if (!m) {
		if (j->map)
			log_info("migration %s: it ended while its images in %s were being mapped: "
				 "mapping released",
				 j->id, j->dir);
		goto out;
	}
	m->map_job = NULL;
	ret = mig_mapped(m, ret, j->map, j->ns);
	if (ret == 0)
		j->map = NULL; /* m's now */
	j->cb(m, ret);
out:
	imgmap_close(j->map);
	OPENSSL_cleanse(j->page_key, sizeof(j->page_key));
	free(j->dir);
	free(j);
}

int src_mig_map_start(struct src_migration *m, struct offload *o, unsigned int delay_ms,
		      src_mig_mapped_fn cb)
{
	struct src_map_job *j;
	int ret;

	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->dir = strdup(m->dir);
	if (!j->dir) {
		ret = -ENOMEM;
		goto out;
	}
	j->job.run = map_job_run;
	j->job.done = map_job_done;
	j->m = m;
	j->cb = cb;
	snprintf(j->id, sizeof(j->id), "%s", m->id);
	j->page_hashes = m->verify;
	j->lazy_dump = m->lazy_dump;
	if (m->verify && (ret = msgauth_page_key(m->secret, m->id, j->page_key)) < 0)
		goto out;
	j->delay_ms = delay_ms;
	ret = offload_submit(o, &j->job);
	if (ret < 0)
		goto out;
	m->map_job = j;
	src_mig_set_state(m, SRC_MIG_MAPPING);
	j = NULL;
out:
	if (j) {
		log_err("migration %s: cannot have its images in %s mapped: %s", m->id, m->dir,
			strerror(-ret));
		OPENSSL_cleanse(j->page_key, sizeof(j->page_key));
		free(j->dir);
		free(j);
	}
	return ret;
}

void src_mig_map_cancel(struct src_migration *m)
{
	if (!m->map_job)
		return;
	m->map_job->m = NULL;
	offload_cancel(&m->map_job->job);
	m->map_job = NULL;
}

int src_mig_create(const char *id, const char *dir, struct auth_secret *secret, bool page_hashes,
		   struct src_migration **out)
{
	uint8_t page_key[MSGAUTH_PAGE_KEY_LEN];
	struct src_migration *m = NULL;
	struct imgmap *map = NULL;
	uint64_t t0 = now_ns();
	int ret;

	ret = src_mig_new(id, dir, secret, page_hashes, &m);
	if (ret == 0 && m->verify)
		ret = msgauth_page_key(m->secret, m->id, page_key);
	if (ret < 0)
		goto out;
	ret = imgmap_open(m->dir, m->verify ? page_key : NULL, NULL, &map);
	OPENSSL_cleanse(page_key, sizeof(page_key));
	ret = mig_mapped(m, ret, map, now_ns() - t0);
	if (ret < 0)
		imgmap_close(map);
out:
	if (ret < 0) {
		src_mig_destroy(m);
		m = NULL;
	}
	*out = m;
	return ret;
}

void src_mig_destroy(struct src_migration *m)
{
	if (!m)
		return;
	src_mig_map_cancel(m);
	src_prereg_drop(m);
	if (m->early_wait)
		event_free(m->early_wait);
	if (m->rounds_wait)
		event_free(m->rounds_wait);
	src_handover_free(m->handover);
	criuproc_free(m->job);
	src_lazydump_free(m->lazy);
	imgmap_close(m->map);
	auth_secret_free(m->secret);
	free(m->dir);
	free(m->dest);
	free(m);
}

void src_mig_set_aborted(struct src_migration *m, const char *why)
{
	src_mig_finish(m, SRC_MIG_ABORTED, why);
	log_info("migration %s aborted (%s); its checkpoint stays in %s", m->id, why, m->dir);
}

void src_mig_finish(struct src_migration *m, enum src_mig_state st, const char *why)
{
	if (!(mig_next[m->state] & ST(st))) {
		log_err("migration %s: %s cannot become %s (%s): ignored", m->id,
			src_mig_state_str(m->state), src_mig_state_str(st), why ? why : "no error");
		return;
	}
	m->finished_unix_ms = src_unix_ms();
	snprintf(m->error, sizeof(m->error), "%s", why ? why : "");
	/* Ended while it waited, queued, for its early worker: nothing to start. */
	if (m->early_wait && m->state == SRC_MIG_QUEUED) {
		event_free(m->early_wait);
		m->early_wait = NULL;
	}
	if (m->rounds_wait) {
		event_free(m->rounds_wait);
		m->rounds_wait = NULL;
	}
	src_mig_map_cancel(m);
	src_prereg_drop(m);
	imgmap_close(m->map);
	m->map = NULL;
	/*
	 * A done migration keeps its secret: a destination whose DoneAck was
	 * lost proves it again and is told the migration is done (session.c).
	 * With the mapping gone, that answer is all the secret still unlocks.
	 */
	if (st != SRC_MIG_DONE) {
		auth_secret_free(m->secret);
		m->secret = NULL;
	}
	src_mig_set_state(m, st);
}

struct src_migration *src_mig_find(struct src_mig_list *list, const char *id)
{
	struct src_migration *m;

	TAILQ_FOREACH(m, list, link)
	if (strcmp(m->id, id) == 0)
		return m;
	return NULL;
}

bool src_mig_final_state(enum src_mig_state st)
{
	return st == SRC_MIG_DONE || st == SRC_MIG_FAILED || st == SRC_MIG_ABORTED ||
	       st == SRC_MIG_ROLLED_BACK;
}

bool src_mig_final(const struct src_migration *m)
{
	return src_mig_final_state(m->state);
}

bool src_mig_in_progress(const struct src_migration *m)
{
	return m->state == SRC_MIG_SERVING || m->state == SRC_MIG_PAUSED ||
	       ((m->state == SRC_MIG_DUMPING || m->state == SRC_MIG_RESTORING) && m->job);
}

void src_mig_reloaded(struct src_migration *m, enum src_mig_state st)
{
	m->state = st;
}

struct src_migration *src_mig_oldest_final(struct src_mig_list *list)
{
	struct src_migration *m, *best = NULL;

	TAILQ_FOREACH(m, list, link)
	if (src_mig_final(m) && (!best || m->finished_unix_ms < best->finished_unix_ms))
		best = m;
	return best;
}

bool src_mig_all_done(const struct src_mig_list *list)
{
	const struct src_migration *m;

	TAILQ_FOREACH(m, list, link)
	if (m->state != SRC_MIG_DONE)
		return false;
	return true;
}
