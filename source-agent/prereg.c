// SPDX-License-Identifier: GPL-2.0-or-later
#include "prereg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration.h"
#include "util.h"

struct prereg_job;

struct src_prereg {
	struct rdma_pd *pd;	/* a reference */
	struct prereg_job *job; /* in flight, or NULL */
	struct ibv_mr **mrs;	/* per map file once registered; NULL once taken */
	size_t nr_mrs;
};

/* A registration on the offload thread: copies only, the migration may go. */
struct prereg_job {
	struct offload_job job;
	/* Loop side. */
	struct src_migration *m; /* NULL once the migration let the job go */
	src_prereg_done_fn done;
	char id[AUTH_MIGRATION_ID_MAX + 1];
	/* Worker inputs. */
	struct rdma_pd *pd; /* the job's own reference */
	struct imgmap_file *files;
	size_t nr_files;
	/* Worker outputs. */
	struct ibv_mr **mrs;
	int ret;
	uint64_t ns;
};

int src_prereg_register(const struct imgmap_file *files, size_t n, struct ibv_pd *pd,
			struct ibv_mr **mrs)
{
	size_t i;
	int ret;

	for (i = 0; i < n; i++) {
		mrs[i] = NULL;
		if (!files[i].base)
			continue;
		/* Remote read only: the peer can read the checkpoint, nothing else. */
		mrs[i] = ibv_reg_mr(pd, files[i].base, files[i].len, IBV_ACCESS_REMOTE_READ);
		if (!mrs[i]) {
			ret = -(errno ? errno : ENOMEM);
			log_err("ibv_reg_mr of %s (%zu bytes, REMOTE_READ): %s", files[i].path,
				files[i].len, strerror(-ret));
			src_prereg_deregister(mrs, i, files[i].path);
			return ret;
		}
	}
	return 0;
}

void src_prereg_deregister(struct ibv_mr **mrs, size_t n, const char *who)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (mrs[i] && ibv_dereg_mr(mrs[i]))
			log_warn("%s: ibv_dereg_mr failed", who);
		mrs[i] = NULL;
	}
}

static struct prereg_job *job_of(struct offload_job *oj)
{
	return (struct prereg_job *)((char *)oj - offsetof(struct prereg_job, job));
}

static void job_run(struct offload_job *oj)
{
	struct prereg_job *j = job_of(oj);
	uint64_t t0 = now_ns();

	j->ret = offload_job_cancelled(oj)
		     ? -ECANCELED
		     : src_prereg_register(j->files, j->nr_files, rdma_pd_ibv(j->pd), j->mrs);
	j->ns = now_ns() - t0;
}

static void job_free(struct prereg_job *j)
{
	if (j->mrs)
		src_prereg_deregister(j->mrs, j->nr_files, j->id);
	free(j->mrs);
	free(j->files);
	rdma_pd_unref(j->pd);
	free(j);
}

static void job_done(struct offload_job *oj, bool ran)
{
	struct prereg_job *j = job_of(oj);
	struct src_migration *m = j->m;
	int ret = ran ? j->ret : -ECANCELED;

	if (!m) {
		log_info("migration %s: it ended while its checkpoint was being registered: "
			 "registration released",
			 j->id);
		goto out;
	}
	m->prereg->job = NULL;
	if (ret < 0) {
		log_warn("migration %s: cannot register the checkpoint ahead of the destination "
			 "(%s): it is registered once the destination authenticated",
			 m->id, strerror(-ret));
	} else {
		m->prereg->mrs = j->mrs;
		m->prereg->nr_mrs = j->nr_files;
		j->mrs = NULL;
		log_info("migration %s: checkpoint registered for RDMA READ in %.2f s, before the "
			 "destination connected",
			 m->id, (double)j->ns / 1e9);
	}
	j->done(m, ret);
out:
	job_free(j);
}

int src_prereg_start(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
		     src_prereg_done_fn done)
{
	const struct imgmap *map = m->map;
	struct prereg_job *j = NULL;
	struct src_prereg *p;
	size_t i, used = 0;
	int ret;

	/* Its PD opened ahead (src_prereg_open()) is the one to register in. */
	if (m->prereg && (m->prereg->job || m->prereg->mrs))
		return -EALREADY;
	for (i = 0; map && !map->lazy_dump && i < map->nr_files; i++)
		used += map->files[i].base != NULL;
	if (!used)
		return -EINVAL;
	p = m->prereg ? m->prereg : calloc(1, sizeof(*p));
	j = calloc(1, sizeof(*j));
	if (!p || !j) {
		ret = -ENOMEM;
		goto out;
	}
	ret = p->pd ? 0 : rdma_pd_open(verbs, &p->pd);
	if (ret < 0)
		goto out;
	j->files = calloc(map->nr_files, sizeof(*j->files));
	j->mrs = calloc(map->nr_files, sizeof(*j->mrs));
	if (!j->files || !j->mrs) {
		ret = -ENOMEM;
		goto out;
	}
	/* The mapping, not its path or fd: the worker reads nothing else of the map. */
	for (i = 0; i < map->nr_files; i++) {
		j->files[i].base = map->files[i].base;
		j->files[i].len = map->files[i].len;
		j->files[i].path = j->id;
	}
	j->nr_files = map->nr_files;
	j->pd = rdma_pd_ref(p->pd);
	j->m = m;
	j->done = done;
	snprintf(j->id, sizeof(j->id), "%s", m->id);
	j->job.run = job_run;
	j->job.done = job_done;
	ret = offload_submit(o, &j->job);
	if (ret < 0)
		goto out;
	p->job = j;
	m->prereg = p;
	p = NULL;
	j = NULL;
out:
	if (j)
		job_free(j);
	if (p && p != m->prereg) {
		rdma_pd_unref(p->pd);
		free(p);
	}
	if (ret < 0)
		log_warn(
		    "migration %s: cannot register its checkpoint ahead of the destination: %s",
		    m->id, strerror(-ret));
	return ret;
}

int src_prereg_open(struct src_migration *m, struct ibv_context *verbs)
{
	struct src_prereg *p;
	int ret;

	if (m->prereg)
		return -EALREADY;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	ret = rdma_pd_open(verbs, &p->pd);
	if (ret < 0) {
		log_warn("migration %s: no protection domain for a destination connecting during "
			 "the dump: %s",
			 m->id, strerror(-ret));
		free(p);
		return ret;
	}
	m->prereg = p;
	return 0;
}

bool src_prereg_pending(const struct src_migration *m)
{
	return m->prereg && m->prereg->job;
}

struct rdma_pd *src_prereg_pd(const struct src_migration *m)
{
	return m->prereg ? m->prereg->pd : NULL;
}

int src_prereg_take(struct src_migration *m, const struct ibv_pd *pd, struct ibv_mr ***mrs,
		    size_t *n)
{
	struct src_prereg *p = m->prereg;

	if (!p || !p->mrs || !pd || rdma_pd_ibv(p->pd) != pd || !m->map ||
	    p->nr_mrs != m->map->nr_files)
		return -ENOENT;
	*mrs = p->mrs;
	*n = p->nr_mrs;
	p->mrs = NULL;
	p->nr_mrs = 0;
	return 0;
}

void src_prereg_drop(struct src_migration *m)
{
	struct src_prereg *p = m->prereg;

	if (!p)
		return;
	if (p->job) {
		p->job->m = NULL;
		offload_cancel(&p->job->job);
	}
	if (p->mrs)
		src_prereg_deregister(p->mrs, p->nr_mrs, m->id);
	free(p->mrs);
	rdma_pd_unref(p->pd);
	free(p);
	m->prereg = NULL;
}
