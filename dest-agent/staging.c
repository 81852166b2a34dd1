// SPDX-License-Identifier: GPL-2.0-or-later
#include "staging.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "util.h"

#define STAGING_PAGE 4096u

struct staging {
	uint8_t *base;
	uint64_t len;
	uint64_t slot_size;
	uint32_t nr_slots;
	uint32_t nr_free;
	int *free_stack; /* LIFO: the most recently used slot is the warmest in cache */
	bool *in_use;
};

int staging_create(uint64_t slot_size, uint32_t nr_slots, struct staging **out)
{
	struct staging *st = NULL;
	char b[32];
	int ret = 0;

	slot_size = (slot_size + STAGING_PAGE - 1) / STAGING_PAGE * STAGING_PAGE;
	if (slot_size == 0 || nr_slots == 0 || nr_slots > INT32_MAX ||
	    slot_size > UINT64_MAX / nr_slots)
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->free_stack = calloc(nr_slots, sizeof(*st->free_stack));
	st->in_use = calloc(nr_slots, sizeof(*st->in_use));
	if (!st->free_stack || !st->in_use) {
		ret = -ENOMEM;
		goto out;
	}
	st->slot_size = slot_size;
	st->nr_slots = nr_slots;
	st->len = slot_size * nr_slots;
	/* Pre-faulted: no page fault of ours on the fetch path, and RDMA pins it anyway. */
	st->base = mmap(NULL, st->len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (st->base == MAP_FAILED) {
		ret = -errno;
		st->base = NULL;
		log_err("staging: mmap %s: %s", fmt_bytes(st->len, b, sizeof(b)), strerror(-ret));
		goto out;
	}
	for (uint32_t i = 0; i < nr_slots; i++)
		st->free_stack[i] = (int)(nr_slots - 1 - i);
	st->nr_free = nr_slots;
	log_debug("staging: %" PRIu32 " slots of %" PRIu64 " bytes at %p", nr_slots, slot_size,
		  (void *)st->base);
	*out = st;
	st = NULL;
out:
	staging_free(st);
	return ret;
}

void staging_free(struct staging *st)
{
	if (!st)
		return;
	if (st->base)
		munmap(st->base, st->len);
	free(st->free_stack);
	free(st->in_use);
	free(st);
}

int staging_get(struct staging *st)
{
	int slot;

	if (st->nr_free == 0)
		return -EBUSY;
	slot = st->free_stack[--st->nr_free];
	st->in_use[slot] = true;
	return slot;
}

void staging_put(struct staging *st, int slot)
{
	if (slot < 0 || (uint32_t)slot >= st->nr_slots || !st->in_use[slot]) {
		log_err("staging: slot %d returned but not in use (%" PRIu32 " free of %" PRIu32
			")",
			slot, st->nr_free, st->nr_slots);
		return;
	}
	st->in_use[slot] = false;
	st->free_stack[st->nr_free++] = slot;
}

void *staging_slot(const struct staging *st, int slot)
{
	return st->base + (uint64_t)slot * st->slot_size;
}

void *staging_base(const struct staging *st)
{
	return st->base;
}

uint64_t staging_len(const struct staging *st)
{
	return st->len;
}

uint64_t staging_slot_size(const struct staging *st)
{
	return st->slot_size;
}

uint32_t staging_nr_slots(const struct staging *st)
{
	return st->nr_slots;
}

uint32_t staging_nr_free(const struct staging *st)
{
	return st->nr_free;
}
