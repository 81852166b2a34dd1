/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * apimetrics: the series both agents export at GET /metrics, from the
 * migration views of their api_ops.list() (docs/api.md, "Metrics").
 */
#ifndef RDMIG_APIMETRICS_H
#define RDMIG_APIMETRICS_H

#include <event2/buffer.h>

#include "api.h"

/*
 * Writes rdmig_info, rdmig_migrations{state} and the per-migration
 * families into b, calling ops->list() once per family (samples of a
 * family must be adjacent).  Returns 0, -ENOMEM or list()'s error.
 */
int apimetrics_write(struct evbuffer *b, enum api_role role, const struct api_ops *ops,
		     void *agent);

#endif
