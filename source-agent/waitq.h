/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * waitq: the rules of the source agent's queue (design.md §7.1), apart
 * from the agent so they can be tested alone: which line a queued
 * migration waits in, its place there, and the wait before its
 * destination agent is asked again.  api_glue.c acts on them.
 *
 * A migration waits for a slot on its destination agent (or in this
 * agent), in that destination's line, or, reserved there, for a dump slot,
 * in the one line of dumps.  The agent's list keeps the order the
 * migrations were started in: the lines are FIFO.  Pure functions of the
 * list; nothing here allocates or logs.
 */
#ifndef RDMIG_SRC_WAITQ_H
#define RDMIG_SRC_WAITQ_H

#include <stdbool.h>

#include "migration.h"

/* "slot", "source", "dump": the API's queue.reason. */
const char *src_queue_reason_str(enum src_queue_reason r);

/* Whether a and b go to the same destination agent (both none counts). */
bool src_queue_same_dest(const struct src_migration *a, const struct src_migration *b);

/*
 * The queued migrations before m in the line it would wait in: a dump
 * slot's (dump) or its destination's (!dump); with m NULL, the whole
 * list's: every migration waiting for a dump slot (dump), or every queued
 * one (!dump).
 */
unsigned int src_queue_ahead(const struct src_mig_list *list, const struct src_migration *m,
			     bool dump);

/* m's place (1-based) in its line; 0 when m is not queued. */
unsigned int src_queue_position(const struct src_mig_list *list, const struct src_migration *m);

/* The wait after one more refusal: 1 s, then doubled, never past max_ms. */
unsigned int src_queue_backoff_next(unsigned int cur_ms, unsigned int max_ms);

#endif
