/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * destreport: reading what the destination agent's API answers a source
 * that handed a migration over (source-agent/handover.c): its migration
 * resource and its error answers.
 *
 * That agent is another host: its JSON is read as hostile.  Texts are cut
 * to size and kept to printable ASCII (they go to logs, the source's API
 * and rdmigctl); numbers outside their range count as not reported (-1),
 * so nothing the destination says can overflow the source's own sums (the
 * downtime adds the destination's resumed_ms to the source's part).
 * Separate from handover.c, which does the I/O, so the fuzz target
 * test/fuzz/fuzz_api_json.c can reach it.
 */
#ifndef RDMIG_SRC_DESTREPORT_H
#define RDMIG_SRC_DESTREPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "migration.h"

/* restore_ms and resumed_ms above a year are nonsense: not reported. */
#define DEST_REPORT_MS_MAX (366ll * 24 * 3600 * 1000)

/* Copies src (may be NULL: "") into dst, printable ASCII only ('?' for the rest). */
void dest_report_text(char *dst, size_t len, const char *src);

/*
 * Fills r from a migration resource (any JSON value; what is missing or of
 * the wrong type is "" or -1) and sets r->seen.
 */
void dest_report_parse(const json_t *j, struct src_dest_report *r);

/* The "error"."message" of an error answer, cleaned as above; false without one. */
bool dest_report_error_message(const json_t *j, char *buf, size_t len);

#endif
