// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * bounce: the first asked-for units of a lazy dump, readable before the
 * staging area is registered (see bounce.h).
 */
#include "bounce.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

struct bounce_job;

struct bounce {
	uint8_t *base;
	size_t len;
	size_t slot_len;
	unsigned int nr_slots;
	unsigned int used;
	struct ibv_mr *mr;
	struct bounce_job *job; /* its registration in flight (bounce_open_async()), or NULL */
};

/* A registration on the offload thread: it owns base and mr once the bounce let it go. */
struct bounce_job {
	struct offload_job job;
	struct bounce *b; /* NULL once closed */
	bounce_ready_fn ready;
	void *arg;
	struct rdma_pd *pd; /* the job's reference */
	uint8_t *base;
	size_t len;
	struct ibv_mr *mr;
	int ret;
};

/* A bounce whose region is mapped, not registered yet. */
static int bounce_map(unsigned int nr_slots, size_t slot_len, struct bounce **out)
{
	struct bounce *b;
	int ret;

	if (!nr_slots || !slot_len)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->slot_len = slot_len;
	b->nr_slots = nr_slots;
	b->len = (size_t)nr_slots * slot_len;
	b->base = mmap(NULL, b->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->base == MAP_FAILED) {
		ret = -errno;
		free(b);
		return ret;
	}
	*out = b;
	return 0;
}

/* Any thread: base's pages written, then pinned REMOTE_READ in pd. */
static int bounce_pin(struct ibv_pd *pd, uint8_t *base, size_t len, struct ibv_mr **mr)
{
	/*
	 * Written before it is pinned: a read-only pin of a page never
	 * written may be the shared zero page, which the copies would then
	 * leave behind (as for the staging area, prereg.c).
	 */
	memset(base, 0, len);
	*mr = ibv_reg_mr(pd, base, len, IBV_ACCESS_REMOTE_READ);
	return *mr ? 0 : -(errno ? errno : ENOMEM);
}

int bounce_open(struct ibv_pd *pd, unsigned int nr_slots, size_t slot_len, struct bounce **out)
{
	struct bounce *b = NULL;
	int ret;

	ret = pd ? bounce_map(nr_slots, slot_len, &b) : -EINVAL;
	if (ret == 0)
		ret = bounce_pin(pd, b->base, b->len, &b->mr);
	if (ret < 0) {
		log_warn("cannot register a %zu-byte region for the first units asked for: %s",
			 (size_t)nr_slots * slot_len, strerror(-ret));
		bounce_close(b);
		return ret;
	}
	*out = b;
	return 0;
}

static struct bounce_job *bounce_job_of(struct offload_job *oj)
{
	return (struct bounce_job *)((char *)oj - offsetof(struct bounce_job, job));
}

static void bounce_job_run(struct offload_job *oj)
{
	struct bounce_job *j = bounce_job_of(oj);

	j->ret = offload_job_cancelled(oj)
		     ? -ECANCELED
		     : bounce_pin(rdma_pd_ibv(j->pd), j->base, j->len, &j->mr);
}

static void bounce_job_done(struct offload_job *oj, bool ran)
{
	struct bounce_job *j = bounce_job_of(oj);
	struct bounce *b = j->b;
	int ret = ran ? j->ret : -ECANCELED;

	if (b) {
		b->job = NULL;
		b->mr = j->mr;
		if (ret < 0)
			log_warn("cannot register a %zu-byte region for the first units asked "
				 "for: %s",
				 j->len, strerror(-ret));
		j->ready(b, ret, j->arg);
	} else {
		/* Closed meanwhile: the region is the job's to release. */
		if (j->mr && ibv_dereg_mr(j->mr))
			log_warn("ibv_dereg_mr of the first units' region failed");
		munmap(j->base, j->len);
	}
	rdma_pd_unref(j->pd);
	free(j);
}

int bounce_open_async(struct offload *o, struct rdma_pd *pd, unsigned int nr_slots, size_t slot_len,
		      bounce_ready_fn ready, void *arg, struct bounce **out)
{
	struct bounce *b = NULL;
	struct bounce_job *j;
	int ret;

	if (!o || !pd || !ready)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	ret = bounce_map(nr_slots, slot_len, &b);
	if (ret < 0)
		goto out;
	j->b = b;
	j->ready = ready;
	j->arg = arg;
	j->pd = rdma_pd_ref(pd);
	j->base = b->base;
	j->len = b->len;
	j->job.run = bounce_job_run;
	j->job.done = bounce_job_done;
	ret = offload_submit(o, &j->job);
	if (ret < 0) {
		rdma_pd_unref(j->pd);
		goto out;
	}
	b->job = j;
	*out = b;
	return 0;
out:
	free(j);
	bounce_close(b);
	return ret;
}

int bounce_put(struct bounce *b, const void *src, size_t len, uint64_t *addr, uint32_t *rkey)
{
	uint8_t *slot;

	if (len > b->slot_len)
		return -EINVAL;
	if (!b->mr)
		return -EAGAIN;
	if (b->used == b->nr_slots)
		return -ENOSPC;
	slot = b->base + (size_t)b->used * b->slot_len;
	memcpy(slot, src, len);
	b->used++;
	*addr = (uintptr_t)slot;
	*rkey = b->mr->rkey;
	return 0;
}

void bounce_region(const struct bounce *b, uint64_t *addr, uint64_t *len, uint32_t *rkey)
{
	*addr = (uintptr_t)b->base;
	*len = b->len;
	*rkey = b->mr->rkey;
}

bool bounce_ready(const struct bounce *b)
{
	return b && b->mr;
}

unsigned int bounce_used(const struct bounce *b)
{
	return b ? b->used : 0;
}

void bounce_close(struct bounce *b)
{
	if (!b)
		return;
	if (b->job) {
		/* The job unmaps the region when it ends. */
		b->job->b = NULL;
		offload_cancel(&b->job->job);
		free(b);
		return;
	}
	if (b->mr && ibv_dereg_mr(b->mr))
		log_warn("ibv_dereg_mr of the first units' region failed");
	if (b->base)
		munmap(b->base, b->len);
	free(b);
}
