/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef RDMIG_QPICK_H
#define RDMIG_QPICK_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Which of n queue pairs takes the next bulk READ: the usable one with the
 * fewest READs outstanding, ties going round-robin from *next, so equal
 * chunks spread evenly and a QP whose READs are slow gets fewer.  up[0]
 * (the connection's first QP) is taken as usable whatever it says.  Returns
 * the index and moves *next past it.  The caller owns both arrays.
 */
unsigned int qpick_least(const uint32_t *outstanding, const bool *up, unsigned int n,
			 unsigned int *next);

#endif
