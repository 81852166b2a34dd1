// SPDX-License-Identifier: GPL-2.0-or-later
#include "migration.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctrl.h"
#include "handover.h"
#include "log.h"
#include "util.h"

const char *src_mig_state_str(enum src_mig_state st)
{
	switch (st) {
	case SRC_MIG_DUMPING:
		return "dumping";
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
	}
	return "?";
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
	if (auth_secret_perms_loose(*out))
		log_warn("migration %s: secret file %s is readable by others", id, secret_file);
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
	m->handover_ms = -1;
	m->dr.pages_total = m->dr.pages_fetched = m->dr.bytes = m->dr.faults = -1;
	m->dr.fault_p50_us = m->dr.fault_p99_us = m->dr.restore_ms = m->dr.resumed_ms = -1;
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

int src_mig_map(struct src_migration *m)
{
	uint64_t t0 = now_ns();
	char sz[32];
	int ret;

	ret = imgmap_open(m->dir, m->verify, &m->map);
	if (ret < 0) {
		log_err("migration %s: cannot serve images in %s: %s", m->id, m->dir,
			strerror(-ret));
		return ret;
	}
	m->lazy_bytes = m->map->lazy_bytes;
	m->images_complete = true;
	m->state = SRC_MIG_READY;
	log_info("migration %s: %zu task(s), %s of lazy pages in %s, mapped and checksummed in "
		 "%.2f s",
		 m->id, m->map->nr_tasks, fmt_bytes(m->map->lazy_bytes, sz, sizeof(sz)), m->dir,
		 (double)(now_ns() - t0) / 1e9);
	return 0;
}

int src_mig_create(const char *id, const char *dir, struct auth_secret *secret, bool page_hashes,
		   struct src_migration **out)
{
	struct src_migration *m = NULL;
	int ret;

	ret = src_mig_new(id, dir, secret, page_hashes, &m);
	if (ret < 0)
		goto out;
	ret = src_mig_map(m);
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
	src_handover_free(m->handover);
	src_criu_run_free(m->job);
	imgmap_close(m->map);
	auth_secret_free(m->secret);
	free(m->dir);
	free(m->dest);
	free(m);
}

void src_mig_set_aborted(struct src_migration *m, const char *why)
{
	m->state = SRC_MIG_ABORTED;
	m->finished_unix_ms = src_unix_ms();
	snprintf(m->error, sizeof(m->error), "%s", why);
	imgmap_close(m->map);
	m->map = NULL;
	auth_secret_free(m->secret);
	m->secret = NULL;
	log_info("migration %s aborted (%s); its checkpoint stays in %s", m->id, why, m->dir);
}

void src_mig_finish(struct src_migration *m, enum src_mig_state st, const char *why)
{
	m->state = st;
	m->finished_unix_ms = src_unix_ms();
	snprintf(m->error, sizeof(m->error), "%s", why ? why : "");
	imgmap_close(m->map);
	m->map = NULL;
	auth_secret_free(m->secret);
	m->secret = NULL;
}

struct src_migration *src_mig_find(struct src_mig_list *list, const char *id)
{
	struct src_migration *m;

	TAILQ_FOREACH(m, list, link)
	if (strcmp(m->id, id) == 0)
		return m;
	return NULL;
}

bool src_mig_all_done(const struct src_mig_list *list)
{
	const struct src_migration *m;

	TAILQ_FOREACH(m, list, link)
	if (m->state != SRC_MIG_DONE)
		return false;
	return true;
}
