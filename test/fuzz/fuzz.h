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

/*
 * The migration secret both peers of fuzz_ctrl know; fuzz-gen-corpus
 * derives its sessions' keys from it too.
 */
#define FUZZ_CTRL_SECRET "fuzz-ctrl-test-secret-0123456789"

/* The bits of fuzz_ctrl's frame selector; fuzz_ctrl.c says what each does. */
#define SEL_FROM_DEST 1u
#define SEL_FIX_SEQ   2u
#define SEL_ALONE     4u
#define SEL_BAD_PROOF 8u
#define SEL_NO_MIRROR 16u
#define SEL_RAW	      32u
#define SEL_TAMPER    64u

/* A broken invariant is a finding: abort, so libFuzzer saves the input. */
static inline void fuzz_check(bool cond)
{
	if (!cond)
		abort();
}

#endif
