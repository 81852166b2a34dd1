/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * promtext: Prometheus text exposition format 0.0.4, written into an
 * evbuffer (the body of GET /metrics, common/api.c).
 *
 * A family is announced once (HELP and TYPE lines) before its samples.
 * Label values are escaped as the format wants (\\, \", \n).  Every
 * function returns 0 or -ENOMEM; a caller may write several and check
 * once, since a failed write leaves the buffer usable.
 */
#ifndef RDMIG_PROMTEXT_H
#define RDMIG_PROMTEXT_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum prom_type {
	PROM_COUNTER,
	PROM_GAUGE,
	PROM_HISTOGRAM, /* samples: name_bucket{le=...}, name_sum, name_count */
};

/* "# HELP name help" and "# TYPE name counter|gauge". */
int prom_family(struct evbuffer *b, const char *name, enum prom_type type, const char *help);

/*
 * One sample: name{k1="v1",k2="v2"} value.  labels is a NULL-terminated
 * list of name/value pairs (NULL: no labels).
 */
int prom_u64(struct evbuffer *b, const char *name, const char *const *labels, uint64_t v);
int prom_double(struct evbuffer *b, const char *name, const char *const *labels, double v);

/* Labels a histogram's samples carry besides le. */
#define PROM_HIST_LABELS 4

/*
 * One histogram's samples: name_bucket{labels,le="B"} with the cumulative
 * count at each upper bound le[0..n-1] (ascending) and at "+Inf", then
 * name_sum (sum) and name_count.  counts has n + 1 entries: counts[i] the
 * samples in (le[i-1], le[i]], counts[n] those above le[n-1].  Returns 0,
 * -EINVAL for a name too long, -ENOMEM.
 */
int prom_histogram(struct evbuffer *b, const char *name, const char *const *labels,
		   const double *le, const uint64_t *counts, size_t n, double sum);

#endif
