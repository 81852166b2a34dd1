// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * bounce: the first asked-for units of a lazy dump, readable before the
 * staging area is registered (see bounce.h).
 */
#include "bounce.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

struct bounce {
	uint8_t *base;
	size_t len;
	size_t slot_len;
	unsigned int nr_slots;
	unsigned int used;
	struct ibv_mr *mr;
};

int bounce_open(struct ibv_pd *pd, unsigned int nr_slots, size_t slot_len, struct bounce **out)
{
	struct bounce *b;
	int ret;

	if (!pd || !nr_slots || !slot_len)
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
		b->base = NULL;
		goto out;
	}
	/*
	 * Written before it is pinned: a read-only pin of a page never
	 * written may be the shared zero page, which the copies would then
	 * leave behind (as for the staging area, prereg.c).
	 */
	memset(b->base, 0, b->len);
	b->mr = ibv_reg_mr(pd, b->base, b->len, IBV_ACCESS_REMOTE_READ);
	if (!b->mr) {
		ret = -(errno ? errno : ENOMEM);
		goto out;
	}
	*out = b;
	return 0;
out:
	log_warn("cannot register a %zu-byte region for the first units asked for: %s", b->len,
		 strerror(-ret));
	bounce_close(b);
	return ret;
}

int bounce_put(struct bounce *b, const void *src, size_t len, uint64_t *addr, uint32_t *rkey)
{
	uint8_t *slot;

	if (len > b->slot_len)
		return -EINVAL;
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

unsigned int bounce_used(const struct bounce *b)
{
	return b ? b->used : 0;
}

void bounce_close(struct bounce *b)
{
	if (!b)
		return;
	if (b->mr && ibv_dereg_mr(b->mr))
		log_warn("ibv_dereg_mr of the first units' region failed");
	if (b->base)
		munmap(b->base, b->len);
	free(b);
}
