/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bitmap: fixed-size bit arrays in 64-bit words, scanned a word at a time.
 *
 * The caller owns the storage (BITMAP_WORDS(nbits) words); bits past nbits
 * in the last word must stay zero, which every function here preserves.
 * Ranges are [start, end) in bits; end is clipped to nbits by the callers.
 */
#ifndef RDMIG_BITMAP_H
#define RDMIG_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#define BITMAP_WORDS(nbits) (((nbits) + 63) / 64)

static inline bool bitmap_test(const uint64_t *map, uint64_t bit)
{
	return (map[bit / 64] >> (bit % 64)) & 1;
}

void bitmap_set_range(uint64_t *map, uint64_t start, uint64_t end);
void bitmap_clear_range(uint64_t *map, uint64_t start, uint64_t end);
/* dst |= src over [start, end). */
void bitmap_or_range(uint64_t *dst, const uint64_t *src, uint64_t start, uint64_t end);
/* Number of set bits in [start, end). */
uint64_t bitmap_count_range(const uint64_t *map, uint64_t start, uint64_t end);
/* First set bit in [start, end), or end if none. */
uint64_t bitmap_next_set(const uint64_t *map, uint64_t start, uint64_t end);
/* First clear bit in [start, end), or end if none. */
uint64_t bitmap_next_clear(const uint64_t *map, uint64_t start, uint64_t end);

#endif
