// SPDX-License-Identifier: GPL-2.0-or-later
#include "bitmap.h"

/* Bits [lo, hi) of one word, 0 <= lo < hi <= 64. */
static uint64_t bitmap_word_mask(uint64_t lo, uint64_t hi)
{
	uint64_t upper = hi == 64 ? ~0ull : (1ull << hi) - 1;

	return upper & ~((1ull << lo) - 1);
}

void bitmap_set_range(uint64_t *map, uint64_t start, uint64_t end)
{
	while (start < end) {
		uint64_t w = start / 64, lo = start % 64;
		uint64_t hi = end - start + lo > 64 ? 64 : end - start + lo;

		map[w] |= bitmap_word_mask(lo, hi);
		start += hi - lo;
	}
}

void bitmap_clear_range(uint64_t *map, uint64_t start, uint64_t end)
{
	while (start < end) {
		uint64_t w = start / 64, lo = start % 64;
		uint64_t hi = end - start + lo > 64 ? 64 : end - start + lo;

		map[w] &= ~bitmap_word_mask(lo, hi);
		start += hi - lo;
	}
}

void bitmap_or_range(uint64_t *dst, const uint64_t *src, uint64_t start, uint64_t end)
{
	while (start < end) {
		uint64_t w = start / 64, lo = start % 64;
		uint64_t hi = end - start + lo > 64 ? 64 : end - start + lo;

		dst[w] |= src[w] & bitmap_word_mask(lo, hi);
		start += hi - lo;
	}
}

uint64_t bitmap_count_range(const uint64_t *map, uint64_t start, uint64_t end)
{
	uint64_t n = 0;

	while (start < end) {
		uint64_t w = start / 64, lo = start % 64;
		uint64_t hi = end - start + lo > 64 ? 64 : end - start + lo;

		n += (uint64_t)__builtin_popcountll(map[w] & bitmap_word_mask(lo, hi));
		start += hi - lo;
	}
	return n;
}

/* Shared scan: flip = ~0 turns "next clear" into "next set" of the complement. */
static uint64_t bitmap_scan(const uint64_t *map, uint64_t start, uint64_t end, uint64_t flip)
{
	while (start < end) {
		uint64_t w = start / 64, lo = start % 64;
		uint64_t hi = end - start + lo > 64 ? 64 : end - start + lo;
		uint64_t bits = (map[w] ^ flip) & bitmap_word_mask(lo, hi);

		if (bits)
			return w * 64 + (uint64_t)__builtin_ctzll(bits);
		start += hi - lo;
	}
	return end;
}

uint64_t bitmap_next_set(const uint64_t *map, uint64_t start, uint64_t end)
{
	return bitmap_scan(map, start, end, 0);
}

uint64_t bitmap_next_clear(const uint64_t *map, uint64_t start, uint64_t end)
{
	return bitmap_scan(map, start, end, ~0ull);
}
