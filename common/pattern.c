// SPDX-License-Identifier: GPL-2.0-or-later
#include "pattern.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "image.h"

#define PATTERN_GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t pattern_mix(uint64_t x)
{
	x += PATTERN_GOLDEN;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t pattern_seed_for_pid(int32_t pid)
{
	return pattern_mix(PATTERN_SEED_BASE ^ (uint64_t)(uint32_t)pid);
}

uint64_t pattern_word(uint64_t addr, uint64_t seed)
{
	return pattern_mix(addr ^ (seed * PATTERN_GOLDEN));
}

void pattern_fill(void *page, uint64_t vaddr, uint64_t seed)
{
	unsigned char *p = page;

	for (size_t i = 0; i < IMG_PAGE_SIZE; i += 8) {
		uint64_t w = htole64(pattern_word(vaddr + i, seed));

		/* memcpy: callers may pass unaligned staging buffers. */
		memcpy(p + i, &w, sizeof(w));
	}
}

int pattern_check(const void *page, uint64_t vaddr, uint64_t seed, uint64_t *bad_addr)
{
	const unsigned char *p = page;

	for (size_t i = 0; i < IMG_PAGE_SIZE; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		if (le64toh(w) != pattern_word(vaddr + i, seed)) {
			if (bad_addr)
				*bad_addr = vaddr + i;
			return -EBADMSG;
		}
	}
	return 0;
}
