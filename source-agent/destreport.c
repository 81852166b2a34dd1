// SPDX-License-Identifier: GPL-2.0-or-later
#include "destreport.h"

#include <string.h>

void dest_report_text(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; src && src[i] && i + 1 < len; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/* group.key as an integer in 0..max, else -1 (null, missing, wrong type, out of range). */
static int64_t dest_report_int(const json_t *m, const char *group, const char *key, int64_t max)
{
	const json_t *v = json_object_get(json_object_get(m, group), key);
	json_int_t i;

	if (!json_is_integer(v))
		return -1;
	i = json_integer_value(v);
	return i >= 0 && i <= max ? (int64_t)i : -1;
}

void dest_report_parse(const json_t *j, struct src_dest_report *r)
{
	dest_report_text(r->state, sizeof(r->state),
			 json_string_value(json_object_get(j, "state")));
	dest_report_text(r->error, sizeof(r->error),
			 json_string_value(json_object_get(j, "error")));
	r->seen = true;
	r->pages_total = dest_report_int(j, "progress", "pages_total", INT64_MAX);
	r->pages_fetched = dest_report_int(j, "progress", "pages_fetched", INT64_MAX);
	r->bytes = dest_report_int(j, "progress", "bytes", INT64_MAX);
	r->faults = dest_report_int(j, "progress", "faults", INT64_MAX);
	r->fault_p50_us = dest_report_int(j, "latency_us", "fault_p50", INT64_MAX);
	r->fault_p99_us = dest_report_int(j, "latency_us", "fault_p99", INT64_MAX);
	r->restore_ms = dest_report_int(j, "times", "restore_ms", DEST_REPORT_MS_MAX);
	r->resumed_ms = dest_report_int(j, "times", "resumed_ms", DEST_REPORT_MS_MAX);
	r->received_ms = dest_report_int(j, "times", "received_ms", DEST_REPORT_MS_MAX);
}

bool dest_report_error_message(const json_t *j, char *buf, size_t len)
{
	const char *msg = NULL;

	if (!j || json_unpack((json_t *)j, "{s:{s:s}}", "error", "message", &msg) < 0 || !msg[0])
		return false;
	dest_report_text(buf, len, msg);
	return true;
}
