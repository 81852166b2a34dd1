// SPDX-License-Identifier: GPL-2.0-or-later
#include "prereg.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "log.h"
#include "migration.h"
#include "util.h"

struct prereg_job;
struct round_job;

struct src_prereg {
	struct rdma_pd *pd;	/* a reference; NULL: rounds mapped, nothing registered */
	struct prereg_job *job; /* in flight, or NULL */
	struct ibv_mr **mrs;	/* per map file once registered; NULL once taken */
	size_t nr_mrs;
	/*
	 * The pre-copy rounds' pages files, mapped (rfiles) and registered
	 * (rmrs[i], or NULL) when each round ended; an entry's region moves to
	 * mrs when the final map uses its file.  The mappings stay until the
	 * migration drops its prereg.
	 */
	struct imgmap_file *rfiles;
	struct ibv_mr **rmrs;
	size_t nr_r;
	TAILQ_HEAD(, round_job) rjobs; /* rounds in flight */
	int round_err;		       /* the first round that could not be mapped */
	/* Regions adopted from the rounds for the job in flight, per map file. */
	struct ibv_mr **adopted;
	size_t nr_adopted;
	/* A lazy dump's staging area, registered a chunk at a time; or NULL. */
	struct prereg_area *area;
	/*
	 * Each round's registered pages files, as announced to a held early
	 * destination (RoundPages) and named again in the final MemRegions:
	 * in round order, never reordered (a session counts what it sent);
	 * gone once the file was released as superseded.
	 */
	struct src_round_region *rsum;
	size_t nr_rsum;
};

/* src_prereg_start_area()'s chunks; the job in flight registers one of them. */
struct prereg_area {
	struct offload *o;
	uint8_t *base;
	size_t len;
	size_t chunk;	     /* bytes from one chunk's start to the next's */
	size_t overlap;	     /* each chunk's region runs this far into the next */
	unsigned int nr;     /* chunks */
	uint64_t registered; /* bit i: mrs[i] is chunk i's region */
	uint64_t wanted;     /* bit i: a destination waits for a unit of chunk i */
	int failed;	     /* the failure that ended it, or 0 */
	struct event *hold;  /* --test-prereg-delay: the first chunk's wait, or NULL */
	uint64_t t0;
	src_prereg_done_fn done;
	src_prereg_chunk_fn chunk_done;
	struct ibv_mr *mrs[SRC_PREREG_AREA_CHUNKS_MAX];
};

/* A registration on the offload thread: copies only, the migration may go. */
/* The staging area faulted in this much at a time (prereg_touch()). */
#define PREREG_TOUCH_CHUNK (4u << 20)

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
	bool touch;    /* fault in files[0] writable first: a fresh staging area */
	int chunk;     /* the staging area's chunk it registers, or -1 */
	int touch_err; /* its errno, or 0 */
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
			log_err("ibv_reg_mr of %s (%zu bytes, REMOTE_READ): %s%s", files[i].path,
				files[i].len, strerror(-ret),
				ret == -ENOMEM || ret == -EPERM
				    ? " (check RLIMIT_MEMLOCK: ulimit -l)"
				    : "");
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

/* Deregisters the regions adopted from the rounds that no registration took. */
static void prereg_adopted_free(struct src_prereg *p)
{
	if (p->adopted)
		src_prereg_deregister(p->adopted, p->nr_adopted, "rounds");
	free(p->adopted);
	p->adopted = NULL;
	p->nr_adopted = 0;
}

static struct prereg_job *job_of(struct offload_job *oj)
{
	return (struct prereg_job *)((char *)oj - offsetof(struct prereg_job, job));
}

/*
 * Faults files[0] in writable, PREREG_TOUCH_CHUNK at a time: one madvise
 * holds the process's mmap lock for reading until it returns, and any
 * mmap() or munmap() of the agent's loop (a large malloc) waits behind it;
 * over a whole lazy set in the guests that stalled the loop, images and
 * all, for 1.6 s at 256 MiB.  Between chunks the loop gets its turn.
 */
static void prereg_touch(struct offload_job *oj, struct prereg_job *j)
{
	uint8_t *base = j->files[0].base;
	size_t off, n;

	for (off = 0; off < j->files[0].len && !offload_job_cancelled(oj); off += n) {
		n = j->files[0].len - off;
		if (n > PREREG_TOUCH_CHUNK)
			n = PREREG_TOUCH_CHUNK;
		if (madvise(base + off, n, MADV_POPULATE_WRITE) < 0) {
			j->touch_err =
			    errno; /* before Linux 5.14: registered as the session would */
			return;
		}
	}
}

static void job_run(struct offload_job *oj)
{
	struct prereg_job *j = job_of(oj);
	uint64_t t0 = now_ns();

	/*
	 * A REMOTE_READ region is pinned read-only, and a page of a fresh
	 * anonymous area not written yet may be the shared zero page: whether
	 * a read-only pin gets a page of its own then depends on the kernel.
	 * Faulted in writable first, every page is the area's own on any
	 * kernel; the registration would fault them in anyway.  madvise, not
	 * stores: the area is the migration's, which may unmap it meanwhile
	 * (offload.h), and madvise then fails where a store would fault.  In
	 * 2 MiB pages (MADV_HUGEPAGE) it was no faster in the guests
	 * (performance.md), so the area keeps the kernel's default.
	 */
	if (j->touch)
		prereg_touch(oj, j);
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

static void area_chunk_done(struct prereg_job *j, int ret);

static void job_done(struct offload_job *oj, bool ran)
{
	struct prereg_job *j = job_of(oj);
	struct src_migration *m = j->m;
	int ret = ran ? j->ret : -ECANCELED;

	if (m && j->chunk >= 0) {
		area_chunk_done(j, ret);
		return;
	}
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
		for (size_t i = 0; m->prereg->adopted && i < j->nr_files; i++) {
			if (!j->mrs[i])
				j->mrs[i] = m->prereg->adopted[i];
			m->prereg->adopted[i] = NULL;
		}
		m->prereg->mrs = j->mrs;
		m->prereg->nr_mrs = j->nr_files;
		j->mrs = NULL;
		log_info("migration %s: checkpoint registered for RDMA READ in %.2f s, before the "
			 "destination connected",
			 m->id, (double)j->ns / 1e9);
	}
	prereg_adopted_free(m->prereg);
	j->done(m, ret);
out:
	job_free(j);
}

/* m's prereg, made empty on first use (the first round, or the final map). */
static struct src_prereg *prereg_get(struct src_migration *m)
{
	if (!m->prereg) {
		m->prereg = calloc(1, sizeof(*m->prereg));
		if (m->prereg)
			TAILQ_INIT(&m->prereg->rjobs);
	}
	return m->prereg;
}

/* A round's pages files: mapped, and registered with a PD, on the offload thread. */
struct round_job {
	struct offload_job job;
	TAILQ_ENTRY(round_job) link;
	/* Loop side. */
	struct src_migration *m; /* NULL once the migration let the job go */
	src_prereg_round_fn done;
	char id[AUTH_MIGRATION_ID_MAX + 1];
	/* Worker inputs: dir NULL for a release of files and mrs. */
	char *dir;
	struct rdma_pd *pd; /* the job's own reference, or NULL */
	/* Worker outputs (a release's inputs). */
	struct imgmap_file *files;
	struct ibv_mr **mrs;
	size_t nr_files;
	size_t bytes;
	uint32_t round; /* 1, 2, ...; 0 for a release */
	bool hash;	/* XXH3 of each registered file, for a destination copying ahead */
	uint64_t *xxh3;
	int ret;     /* mapping */
	int reg_ret; /* registration: its files are then registered with the final dump's */
	uint64_t ns;
};

static struct round_job *round_of(struct offload_job *oj)
{
	return (struct round_job *)((char *)oj - offsetof(struct round_job, job));
}

static void round_run(struct offload_job *oj)
{
	struct round_job *j = round_of(oj);
	uint64_t t0 = now_ns();
	size_t i;

	if (!j->dir) {
		/* A release: regions first, then the mappings under them. */
		src_prereg_deregister(j->mrs, j->nr_files, j->id);
		imgmap_files_free(j->files, j->nr_files);
		j->files = NULL;
		return;
	}
	j->ret = offload_job_cancelled(oj) ? -ECANCELED
					   : imgmap_round_open(j->dir, &j->files, &j->nr_files);
	/*
	 * criu writes a pages file for every task it dumps, even an empty
	 * one: none means they went before the round could be mapped, and
	 * the final dump must not run on a chain without them.
	 */
	if (j->ret == 0 && !j->nr_files)
		j->ret = -ENOENT;
	if (j->ret < 0 || !j->pd || !j->nr_files)
		goto out;
	j->mrs = calloc(j->nr_files, sizeof(*j->mrs));
	j->reg_ret = j->mrs ? src_prereg_register(j->files, j->nr_files, rdma_pd_ibv(j->pd), j->mrs)
			    : -ENOMEM;
	/*
	 * Here, off the loop and before the freeze: the destination verifies
	 * its copy by it.  A file that cannot be read whole leaves the round
	 * unannounced; the final dump's check then refuses the changed file.
	 */
	if (j->reg_ret == 0 && j->hash && (j->xxh3 = calloc(j->nr_files, sizeof(*j->xxh3))))
		for (i = 0; i < j->nr_files; i++)
			if (imgmap_file_xxh3(&j->files[i], &j->xxh3[i]) < 0) {
				free(j->xxh3);
				j->xxh3 = NULL;
				break;
			}
out:
	for (i = 0; j->ret == 0 && i < j->nr_files; i++)
		j->bytes += j->files[i].len;
	j->ns = now_ns() - t0;
}

static void round_free(struct round_job *j)
{
	if (j->mrs)
		src_prereg_deregister(j->mrs, j->nr_files, j->id);
	free(j->mrs);
	imgmap_files_free(j->files, j->nr_files);
	rdma_pd_unref(j->pd);
	free(j->xxh3);
	free(j->dir);
	free(j);
}

/* j's hashed regions, for the destination (src_prereg_round_region()). */
static int round_sums_keep(struct src_prereg *p, const struct round_job *j)
{
	size_t i, n = p->nr_rsum + j->nr_files;
	struct src_round_region *r;

	if (!j->xxh3 || !j->mrs)
		return 0;
	r = realloc(p->rsum, n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	p->rsum = r;
	for (i = 0; i < j->nr_files; i++) {
		r = &p->rsum[p->nr_rsum++];
		r->round = j->round;
		r->g.addr = (uintptr_t)j->mrs[i]->addr;
		r->g.len = j->files[i].len;
		r->g.rkey = j->mrs[i]->rkey;
		r->g.has_xxh3 = true;
		r->g.xxh3 = j->xxh3[i];
		r->gone = false;
	}
	return 0;
}

/* Appends j's files (and regions) to p's rounds; j keeps nothing. */
static int round_keep(struct src_prereg *p, struct round_job *j)
{
	size_t n = p->nr_r + j->nr_files, i;
	struct imgmap_file *f = realloc(p->rfiles, (n ? n : 1) * sizeof(*f));
	struct ibv_mr **mrs;

	if (f)
		p->rfiles = f;
	mrs = f ? realloc(p->rmrs, (n ? n : 1) * sizeof(*mrs)) : NULL;
	if (!mrs || round_sums_keep(p, j) < 0)
		return -ENOMEM;
	p->rmrs = mrs;
	for (i = 0; i < j->nr_files; i++) {
		p->rfiles[p->nr_r + i] = j->files[i];
		p->rmrs[p->nr_r + i] = j->mrs ? j->mrs[i] : NULL;
	}
	p->nr_r = n;
	free(j->files);
	free(j->mrs);
	j->files = NULL;
	j->mrs = NULL;
	j->nr_files = 0;
	return 0;
}

static void round_done(struct offload_job *oj, bool ran)
{
	struct round_job *j = round_of(oj);
	struct src_migration *m = j->m;
	int ret = ran ? j->ret : -ECANCELED;
	char sz[32];

	if (!j->dir || !m)
		goto out;
	TAILQ_REMOVE(&m->prereg->rjobs, j, link);
	if (ret == 0)
		ret = round_keep(m->prereg, j);
	if (ret < 0) {
		log_err("migration %s: the pre-dump round in %s cannot be mapped: %s", m->id,
			j->dir, strerror(-ret));
		if (!m->prereg->round_err)
			m->prereg->round_err = ret;
	} else if (j->pd && j->reg_ret == 0) {
		log_info("migration %s: pre-dump round %s (%s) mapped and registered for RDMA READ "
			 "in %.2f s, while the workload runs",
			 m->id, j->dir, fmt_bytes(j->bytes, sz, sizeof(sz)), (double)j->ns / 1e9);
	} else if (!j->pd) {
		log_info("migration %s: pre-dump round %s (%s) mapped in %.2f s, while the "
			 "workload runs",
			 m->id, j->dir, fmt_bytes(j->bytes, sz, sizeof(sz)), (double)j->ns / 1e9);
	} else {
		log_warn("migration %s: pre-dump round %s cannot be registered ahead (%s): it is "
			 "registered with the final dump's pages",
			 m->id, j->dir, strerror(-j->reg_ret));
	}
	j->done(m, ret);
out:
	round_free(j);
}

int src_prereg_round(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
		     const char *dir, uint32_t round, bool hash, src_prereg_round_fn done)
{
	struct round_job *j = calloc(1, sizeof(*j));
	struct src_prereg *p = prereg_get(m);
	int ret;

	if (!j || !p || !(j->dir = strdup(dir))) {
		ret = -ENOMEM;
		goto out;
	}
	/* The PD the destination's connection will be put in (connhint.h), made once. */
	if (verbs && !p->pd && rdma_pd_open(verbs, &p->pd) < 0)
		log_warn("migration %s: no protection domain for its rounds: they are registered "
			 "with the final dump's pages",
			 m->id);
	j->pd = p->pd ? rdma_pd_ref(p->pd) : NULL;
	j->m = m;
	j->done = done;
	j->round = round;
	j->hash = hash;
	snprintf(j->id, sizeof(j->id), "%s", m->id);
	j->job.run = round_run;
	j->job.done = round_done;
	ret = offload_submit(o, &j->job);
	if (ret < 0)
		goto out;
	TAILQ_INSERT_TAIL(&p->rjobs, j, link);
	j = NULL;
out:
	if (j)
		round_free(j);
	if (ret < 0)
		log_err("migration %s: cannot map pre-dump round %s: %s", m->id, dir,
			strerror(-ret));
	return ret;
}

size_t src_prereg_round_regions(const struct src_migration *m)
{
	return m->prereg ? m->prereg->nr_rsum : 0;
}

const struct src_round_region *src_prereg_round_region(const struct src_migration *m, size_t i)
{
	return m->prereg && i < m->prereg->nr_rsum ? &m->prereg->rsum[i] : NULL;
}

void *src_prereg_round_base(const struct src_migration *m, const struct imgmap_file *f)
{
	const struct src_prereg *p = m->prereg;

	for (size_t i = 0; p && i < p->nr_r; i++)
		if (p->rfiles[i].base && imgmap_file_same(&p->rfiles[i], f))
			return p->rfiles[i].base;
	return NULL;
}

bool src_prereg_region_xxh3(const struct src_migration *m, const struct ibv_mr *mr, size_t len,
			    uint64_t *xxh3)
{
	const struct src_prereg *p = m->prereg;

	for (size_t i = 0; p && mr && i < p->nr_rsum; i++) {
		const struct src_round_region *r = &p->rsum[i];

		/*
		 * The mapping, not the registration: a resumed session registers
		 * the same mapping again in its own PD, with another rkey.  Only
		 * a released (gone) round's address can map other bytes.
		 */
		if (!r->gone && r->g.addr == (uintptr_t)mr->addr && r->g.len == len) {
			*xxh3 = r->g.xxh3;
			return true;
		}
	}
	return false;
}

bool src_prereg_rounds_pending(const struct src_migration *m)
{
	return m->prereg && !TAILQ_EMPTY(&m->prereg->rjobs);
}

int src_prereg_rounds_check(const struct src_migration *m, char *why, size_t len)
{
	const struct src_prereg *p = m->prereg;
	const char *what = NULL;
	size_t i;

	if (p && p->round_err) {
		snprintf(why, len, "a pre-dump round's pages cannot be mapped: %s",
			 strerror(-p->round_err));
		return p->round_err;
	}
	for (i = 0; p && i < p->nr_r && !what; i++)
		what = imgmap_file_changed(&p->rfiles[i]);
	if (!what)
		return 0;
	snprintf(why, len, "pages file %s changed after its pre-dump round (%s)",
		 p->rfiles[i - 1].path, what);
	return -ESTALE;
}

int src_prereg_rounds_settle(struct src_migration *m, struct offload *o, char *why, size_t len)
{
	struct src_prereg *p = m->prereg;
	const struct imgmap *map = m->map;
	struct round_job *rel = NULL;
	size_t j, used = 0, n = 0;
	ssize_t *idx = NULL;
	int ret;

	ret = src_prereg_rounds_check(m, why, len);
	if (ret < 0 || !p || !p->nr_r || !map || p->adopted)
		return ret;
	idx = calloc(p->nr_r, sizeof(*idx));
	p->adopted = calloc(map->nr_files ? map->nr_files : 1, sizeof(*p->adopted));
	p->nr_adopted = p->adopted ? map->nr_files : 0;
	rel = calloc(1, sizeof(*rel));
	if (rel) {
		rel->files = calloc(p->nr_r, sizeof(*rel->files));
		rel->mrs = calloc(p->nr_r, sizeof(*rel->mrs));
	}
	ret = -ENOMEM;
	if (!idx || !p->adopted || !rel || !rel->files || !rel->mrs)
		goto out;
	ret = imgmap_match(map, p->rfiles, p->nr_r, idx);
	if (ret < 0)
		goto out;
	for (j = 0; j < p->nr_r; j++) {
		if (idx[j] >= 0) {
			p->adopted[idx[j]] = p->rmrs[j];
			used += p->rmrs[j] != NULL;
			p->rfiles[n] = p->rfiles[j];
			p->rmrs[n++] = NULL;
			continue;
		}
		/* Superseded: every page of it was written again by a later round. */
		for (size_t k = 0; k < p->nr_rsum; k++)
			if (p->rsum[k].g.addr == (uintptr_t)p->rfiles[j].base)
				p->rsum[k].gone = true;
		log_info("migration %s: %s is not needed any more (later rounds wrote its pages "
			 "again): released",
			 m->id, p->rfiles[j].path);
		rel->files[rel->nr_files] = p->rfiles[j];
		rel->mrs[rel->nr_files++] = p->rmrs[j];
	}
	p->nr_r = n;
	if (p->pd)
		log_info("migration %s: %zu of its %zu pages files were registered when their "
			 "rounds ended",
			 m->id, used, map->nr_files);
	snprintf(rel->id, sizeof(rel->id), "%s", m->id);
	/* Its regions' PD lives until they are deregistered, whenever the migration ends. */
	rel->pd = p->pd ? rdma_pd_ref(p->pd) : NULL;
	rel->job.run = round_run;
	rel->job.done = round_done;
	if (!rel->nr_files || offload_submit(o, &rel->job) < 0)
		round_free(rel); /* nothing to release, or released here */
	rel = NULL;
	ret = 0;
out:
	if (rel) {
		free(rel->files);
		free(rel->mrs);
		free(rel);
	}
	free(idx);
	if (ret == -ESTALE)
		snprintf(why, len, "a pre-dump round's pages file changed since its round ended");
	else if (ret < 0)
		snprintf(why, len, "cannot match the rounds' pages files: %s", strerror(-ret));
	if (ret < 0)
		prereg_adopted_free(p);
	return ret;
}

/*
 * A job for n regions of m (files and mrs allocated, files to fill), in
 * m's PD, opened now if no round or early connection opened it.
 */
static int prereg_job_new(struct src_migration *m, struct ibv_context *verbs, size_t n,
			  src_prereg_done_fn done, struct prereg_job **out)
{
	struct src_prereg *p = prereg_get(m);
	struct prereg_job *j = calloc(1, sizeof(*j));
	int ret = -ENOMEM;

	*out = NULL;
	if (!p || !j)
		goto out;
	ret = p->pd ? 0 : rdma_pd_open(verbs, &p->pd);
	if (ret < 0)
		goto out;
	j->files = calloc(n, sizeof(*j->files));
	j->mrs = calloc(n, sizeof(*j->mrs));
	if (!j->files || !j->mrs) {
		ret = -ENOMEM;
		goto out;
	}
	j->nr_files = n;
	j->chunk = -1;
	j->pd = rdma_pd_ref(p->pd);
	j->m = m;
	j->done = done;
	snprintf(j->id, sizeof(j->id), "%s", m->id);
	j->job.run = job_run;
	j->job.done = job_done;
	*out = j;
	j = NULL;
out:
	if (j)
		job_free(j);
	return ret;
}

int src_prereg_start(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
		     src_prereg_done_fn done)
{
	const struct imgmap *map = m->map;
	struct prereg_job *j = NULL;
	size_t i, used = 0;
	int ret;

	/* Its PD opened ahead (src_prereg_open()) is the one to register in. */
	if (m->prereg && (m->prereg->job || m->prereg->mrs))
		return -EALREADY;
	for (i = 0; map && !map->lazy_dump && i < map->nr_files; i++)
		used += map->files[i].base != NULL;
	if (!used)
		return -EINVAL;
	ret = prereg_job_new(m, verbs, map->nr_files, done, &j);
	if (ret < 0)
		goto out;
	/*
	 * The mapping, not its path or fd: the worker reads nothing else of
	 * the map, and skips the files whose round registered them already.
	 */
	for (i = 0; i < map->nr_files; i++) {
		j->files[i].base =
		    m->prereg->adopted && m->prereg->adopted[i] ? NULL : map->files[i].base;
		j->files[i].len = map->files[i].len;
		j->files[i].path = j->id;
	}
	ret = offload_submit(o, &j->job);
	if (ret < 0)
		goto out;
	m->prereg->job = j;
	j = NULL;
out:
	if (j)
		job_free(j);
	if (ret < 0 && m->prereg)
		prereg_adopted_free(m->prereg);
	if (ret < 0)
		log_warn(
		    "migration %s: cannot register its checkpoint ahead of the destination: %s",
		    m->id, strerror(-ret));
	return ret;
}

/*
 * The chunk to register next: one a destination waits for, else the first
 * left; -1 when every chunk is.
 */
static int area_next(const struct prereg_area *a)
{
	uint64_t all = a->nr == 64 ? ~0ull : (1ull << a->nr) - 1;
	uint64_t left = all & ~a->registered;

	if (!left)
		return -1;
	if (left & a->wanted)
		left &= a->wanted;
	return __builtin_ctzll(left);
}

/* Submits the job for chunk idx of m's area. */
static int area_submit(struct src_migration *m, unsigned int idx)
{
	struct prereg_area *a = m->prereg->area;
	struct prereg_job *j = NULL;
	size_t off = (size_t)idx * a->chunk;
	int ret;

	ret = prereg_job_new(m, NULL, 1, a->done, &j);
	if (ret < 0)
		return ret;
	j->files[0].base = a->base + off;
	j->files[0].len = a->len - off;
	if (j->files[0].len > a->chunk + a->overlap)
		j->files[0].len = a->chunk + a->overlap;
	j->files[0].path = j->id;
	/* Overlap included: a read-only pin of a page never written may be the zero page. */
	j->touch = true;
	j->chunk = (int)idx;
	ret = offload_submit(a->o, &j->job);
	if (ret < 0) {
		job_free(j);
		return ret;
	}
	m->prereg->job = j;
	return 0;
}

/*
 * A chunk's job ended: its region is kept, the next chunk submitted, and
 * the session told, last: chunk() or done() may end m.
 */
static void area_chunk_done(struct prereg_job *j, int ret)
{
	struct src_migration *m = j->m;
	struct src_prereg *p = m->prereg;
	struct prereg_area *a = p->area;
	unsigned int idx = (unsigned int)j->chunk;
	int next = -1;

	p->job = NULL;
	if (ret == 0) {
		a->mrs[idx] = j->mrs[0];
		j->mrs[0] = NULL;
		a->registered |= 1ull << idx;
		if (j->touch_err)
			log_info("migration %s: its staging area's chunk %u was registered "
				 "without being faulted in first (madvise MADV_POPULATE_WRITE: %s)",
				 m->id, idx, strerror(j->touch_err));
		next = area_next(a);
		ret = next < 0 ? 0 : area_submit(m, (unsigned int)next);
		if (ret < 0)
			idx = (unsigned int)next;
	}
	job_free(j);
	if (ret < 0) {
		a->failed = ret;
		log_warn("migration %s: cannot register chunk %u of the staging area ahead of "
			 "the destination (%s): the area is registered whole once the destination "
			 "authenticated; the %d chunk(s) registered before stay readable",
			 m->id, idx, strerror(-ret), __builtin_popcountll(a->registered));
		a->done(m, ret);
		return;
	}
	if (next >= 0) {
		log_debug("migration %s: staging area chunk %u of %u registered", m->id, idx,
			  a->nr);
		a->chunk_done(m, idx);
		return;
	}
	/* Every chunk: the regions are the migration's to give, in chunk order. */
	p->mrs = calloc(a->nr, sizeof(*p->mrs));
	if (!p->mrs) {
		a->failed = -ENOMEM;
		a->done(m, -ENOMEM);
		return;
	}
	memcpy(p->mrs, a->mrs, a->nr * sizeof(*p->mrs));
	memset(a->mrs, 0, sizeof(a->mrs));
	p->nr_mrs = a->nr;
	log_info("migration %s: staging area registered for RDMA READ in %u chunk(s) of %zu "
		 "KiB in %.2f s, before the destination read it",
		 m->id, a->nr, a->chunk >> 10, (double)(now_ns() - a->t0) / 1e9);
	a->done(m, 0);
}

/* The test's hold on the first chunk ended (--test-prereg-delay). */
static void area_hold_done(evutil_socket_t fd, short what, void *arg)
{
	struct src_migration *m = arg;
	struct prereg_area *a = m->prereg->area;
	int ret;

	(void)fd;
	(void)what;
	event_free(a->hold);
	a->hold = NULL;
	ret = area_submit(m, 0);
	if (ret < 0) {
		a->failed = ret;
		log_warn("migration %s: cannot register its staging area ahead of the "
			 "destination: %s",
			 m->id, strerror(-ret));
		a->done(m, ret);
	}
}

int src_prereg_start_area(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
			  const struct src_prereg_area_spec *spec)
{
	struct src_prereg *p;
	struct prereg_area *a = NULL;
	struct timeval tv;
	size_t per;
	int ret;

	if (m->prereg && (m->prereg->job || m->prereg->mrs || m->prereg->area))
		return -EALREADY;
	if (!spec->base || !spec->len || (spec->delay_ms && !spec->evbase))
		return -EINVAL;
	p = prereg_get(m);
	a = calloc(1, sizeof(*a));
	ret = -ENOMEM;
	if (!p || !a)
		goto out;
	ret = p->pd ? 0 : rdma_pd_open(verbs, &p->pd);
	if (ret < 0)
		goto out;
	/* Chunks of 2 MiB multiples, at most SRC_PREREG_AREA_CHUNKS_MAX of them. */
	per = (spec->len + SRC_PREREG_AREA_CHUNKS_MAX - 1) / SRC_PREREG_AREA_CHUNKS_MAX;
	per = (per + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	a->chunk = per < SRC_PREREG_AREA_CHUNK_MIN ? SRC_PREREG_AREA_CHUNK_MIN : per;
	a->nr = (unsigned int)((spec->len + a->chunk - 1) / a->chunk);
	a->o = o;
	a->base = spec->base;
	a->len = spec->len;
	a->overlap = spec->overlap;
	a->done = spec->done;
	a->chunk_done = spec->chunk;
	a->t0 = now_ns();
	if (spec->delay_ms) {
		a->hold = evtimer_new(spec->evbase, area_hold_done, m);
		tv.tv_sec = spec->delay_ms / 1000;
		tv.tv_usec = (spec->delay_ms % 1000) * 1000;
		ret = a->hold ? evtimer_add(a->hold, &tv) : -ENOMEM;
		if (ret != 0) {
			ret = -ENOMEM;
			goto out;
		}
		p->area = a;
		a = NULL;
		goto out;
	}
	p->area = a;
	ret = area_submit(m, 0);
	if (ret < 0)
		p->area = NULL;
	else
		a = NULL;
out:
	if (a && a->hold)
		event_free(a->hold);
	free(a);
	if (ret < 0)
		log_warn("migration %s: cannot register its staging area ahead of the "
			 "destination: %s",
			 m->id, strerror(-ret));
	return ret;
}

int src_prereg_area_find(struct src_migration *m, const struct ibv_pd *pd, const void *addr,
			 size_t len, bool want, unsigned int *idx, struct ibv_mr **mr)
{
	struct src_prereg *p = m->prereg;
	struct prereg_area *a = p ? p->area : NULL;
	size_t off;
	unsigned int i;

	if (!a || a->failed || !p->pd || rdma_pd_ibv(p->pd) != pd ||
	    (const uint8_t *)addr < a->base || (size_t)((const uint8_t *)addr - a->base) >= a->len)
		return -ENOENT;
	off = (size_t)((const uint8_t *)addr - a->base);
	i = (unsigned int)(off / a->chunk);
	if (len > a->len - off || off + len > (size_t)i * a->chunk + a->chunk + a->overlap)
		return -ENOENT;
	if (!(a->registered & (1ull << i))) {
		if (want)
			a->wanted |= 1ull << i;
		return -EAGAIN;
	}
	*idx = i;
	*mr = a->mrs[i];
	return 0;
}

int src_prereg_open(struct src_migration *m, struct ibv_context *verbs)
{
	struct src_prereg *p;
	int ret;

	if (m->prereg)
		return -EALREADY;
	p = prereg_get(m);
	if (!p)
		return -ENOMEM;
	/* On failure p stays without a PD: src_prereg_start() opens one. */
	ret = rdma_pd_open(verbs, &p->pd);
	if (ret < 0)
		log_warn("migration %s: no protection domain for a destination connecting during "
			 "the dump: %s",
			 m->id, strerror(-ret));
	return ret;
}

bool src_prereg_pending(const struct src_migration *m)
{
	return m->prereg && (m->prereg->job || (m->prereg->area && m->prereg->area->hold));
}

struct rdma_pd *src_prereg_pd(const struct src_migration *m)
{
	return m->prereg ? m->prereg->pd : NULL;
}

int src_prereg_take(struct src_migration *m, const struct ibv_pd *pd, struct ibv_mr ***mrs,
		    size_t *n)
{
	struct src_prereg *p = m->prereg;

	if (!p || !p->mrs || !pd || !p->pd || rdma_pd_ibv(p->pd) != pd || !m->map ||
	    p->nr_mrs != (m->lazy_dump ? (p->area ? p->area->nr : 0) : m->map->nr_files))
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
	struct round_job *r;

	if (!p)
		return;
	if (p->job) {
		p->job->m = NULL;
		offload_cancel(&p->job->job);
	}
	while ((r = TAILQ_FIRST(&p->rjobs))) {
		TAILQ_REMOVE(&p->rjobs, r, link);
		r->m = NULL;
		offload_cancel(&r->job);
	}
	if (p->mrs)
		src_prereg_deregister(p->mrs, p->nr_mrs, m->id);
	free(p->mrs);
	if (p->area) {
		if (p->area->hold)
			event_free(p->area->hold);
		src_prereg_deregister(p->area->mrs, p->area->nr, m->id);
	}
	free(p->area);
	prereg_adopted_free(p);
	/* Regions before the mappings under them. */
	src_prereg_deregister(p->rmrs, p->nr_r, m->id);
	free(p->rmrs);
	imgmap_files_free(p->rfiles, p->nr_r);
	rdma_pd_unref(p->pd);
	free(p->rsum);
	free(p);
	m->prereg = NULL;
}
