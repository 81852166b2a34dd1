/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the fuzz targets share: libFuzzer's entry point, which every target
 * defines and corpus_driver.c calls, and the invariant check.
 */
#ifndef RDMIG_FUZZ_H
#define RDMIG_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a finding: abort, so libFuzzer saves the input. */
static inline void fuzz_check(bool cond)
{
	if (!cond)
		abort();
}

#endif
