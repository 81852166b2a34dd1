// SPDX-License-Identifier: GPL-2.0-or-later
/* promtext: see promtext.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "promtext.h"

int prom_family(struct evbuffer *b, const char *name, enum prom_type type, const char *help)
{
	if (evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
				type == PROM_COUNTER ? "counter"
				: type == PROM_GAUGE ? "gauge"
						     : "histogram") < 0)
		return -ENOMEM;
	return 0;
}

static int prom_label_value(struct evbuffer *b, const char *v)
{
	for (; *v; v++) {
		int ret;

		if (*v == '\\' || *v == '"')
			ret = evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			ret = evbuffer_add(b, "\\n", 2);
		else
			ret = evbuffer_add(b, v, 1);
		if (ret < 0)
			return -ENOMEM;
	}
	return 0;
}

static int prom_name_labels(struct evbuffer *b, const char *name, const char *const *labels)
{
	if (evbuffer_add_printf(b, "%s", name) < 0)
		return -ENOMEM;
	if (!labels || !labels[0])
		return 0;
	for (size_t i = 0; labels[i] && labels[i + 1]; i += 2)
		if (evbuffer_add_printf(b, "%s%s=\"", i ? "," : "{", labels[i]) < 0 ||
		    prom_label_value(b, labels[i + 1]) < 0 || evbuffer_add(b, "\"", 1) < 0)
			return -ENOMEM;
	return evbuffer_add(b, "}", 1) < 0 ? -ENOMEM : 0;
}

int prom_u64(struct evbuffer *b, const char *name, const char *const *labels, uint64_t v)
{
	if (prom_name_labels(b, name, labels) < 0 ||
	    evbuffer_add_printf(b, " %" PRIu64 "\n", v) < 0)
		return -ENOMEM;
	return 0;
}

int prom_double(struct evbuffer *b, const char *name, const char *const *labels, double v)
{
	if (prom_name_labels(b, name, labels) < 0 || evbuffer_add_printf(b, " %.6g\n", v) < 0)
		return -ENOMEM;
	return 0;
}

int prom_histogram(struct evbuffer *b, const char *name, const char *const *labels,
		   const double *le, const uint64_t *counts, size_t n, double sum)
{
	/* The caller's labels plus le: at most PROM_HIST_LABELS pairs of them. */
	const char *with_le[2 * PROM_HIST_LABELS + 3];
	char bucket[128], tail[128], bound[32];
	uint64_t cum = 0;
	size_t k = 0;

	for (; labels && labels[k] && labels[k + 1] && k < 2 * PROM_HIST_LABELS; k += 2) {
		with_le[k] = labels[k];
		with_le[k + 1] = labels[k + 1];
	}
	with_le[k] = "le";
	with_le[k + 1] = bound;
	with_le[k + 2] = NULL;
	if ((size_t)snprintf(bucket, sizeof(bucket), "%s_bucket", name) >= sizeof(bucket))
		return -EINVAL;
	for (size_t i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n)
			snprintf(bound, sizeof(bound), "%.6g", le[i]);
		else
			snprintf(bound, sizeof(bound), "+Inf");
		if (prom_u64(b, bucket, with_le, cum) < 0)
			return -ENOMEM;
	}
	with_le[k] = NULL;
	snprintf(tail, sizeof(tail), "%s_sum", name);
	if (prom_double(b, tail, with_le, sum) < 0)
		return -ENOMEM;
	snprintf(tail, sizeof(tail), "%s_count", name);
	return prom_u64(b, tail, with_le, cum);
}
