/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pattern: recomputable page contents for synthetic processes.
 *
 * rdmig-mkimage writes pages whose every 8-byte word is a function of a
 * seed and the word's own dump-time address, so a stand-in process on
 * another host can verify any page it receives from its address alone,
 * with no copy of the images.  The function is fixed; changing it breaks
 * every image written before:
 *
 *   word(addr) = mix(addr ^ (seed * 0x9e3779b97f4a7c15))
 *   mix(x) = SplitMix64's output function:
 *            x += 0x9e3779b97f4a7c15;
 *            x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
 *            x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
 *            return x ^ (x >> 31);
 *
 * stored little-endian, arithmetic modulo 2^64.  mix is a bijection, so for
 * a given seed at most one address holds a zero word: a zero-filled page
 * never passes pattern_check().
 */
#ifndef RDMIG_PATTERN_H
#define RDMIG_PATTERN_H

#include <stdint.h>

/* Base seed of rdmig-mkimage; per task it is mixed with the pid. */
#define PATTERN_SEED_BASE 0x72646d6967000001ull

/*
 * The seed rdmig-mkimage uses by default for the task with virtual pid
 * `pid`: mix(PATTERN_SEED_BASE ^ (uint32_t)pid).
 */
uint64_t pattern_seed_for_pid(int32_t pid);

/* The 8-byte word expected at `addr` (8-byte aligned). */
uint64_t pattern_word(uint64_t addr, uint64_t seed);

/* Fills the page that starts at dump-time address vaddr (page aligned). */
void pattern_fill(void *page, uint64_t vaddr, uint64_t seed);

/*
 * Checks a page filled by pattern_fill().  Returns 0, or -EBADMSG with
 * *bad_addr (if not NULL) set to the address of the first wrong word.
 */
int pattern_check(const void *page, uint64_t vaddr, uint64_t seed, uint64_t *bad_addr);

#endif
