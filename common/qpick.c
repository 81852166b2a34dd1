// SPDX-License-Identifier: GPL-2.0-or-later
#include "qpick.h"

unsigned int qpick_least(const uint32_t *outstanding, const bool *up, unsigned int n,
			 unsigned int *next)
{
	unsigned int best = 0, i, k;
	bool found = false;

	for (k = 0; k < n; k++) {
		i = (*next + k) % n;
		if (i != 0 && !up[i])
			continue;
		if (!found || outstanding[i] < outstanding[best]) {
			best = i;
			found = true;
		}
	}
	*next = n ? (best + 1) % n : 0;
	return best;
}
