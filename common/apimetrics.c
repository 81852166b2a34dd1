// SPDX-License-Identifier: GPL-2.0-or-later
/* apimetrics: see apimetrics.h. */
#include <errno.h>
#include <stdbool.h>

#include "apimetrics.h"
#include "promtext.h"
#include "rdmig-config.h"
#include "util.h"

enum am_value {
	AM_INFO,
	AM_PAGES,
	AM_PAGES_REMAINING,
	AM_PAGES_MOVED,
	AM_BYTES_MOVED,
	AM_FAULTS,
	AM_FAULT_P50,
	AM_FAULT_P99,
	AM_FAULT_HIST,
	AM_FREEZE,
	AM_DOWNTIME,
	AM_RESTORE,
	AM_DURATION,
	AM_PAUSES,
};

/* One per-migration family; every sample has the label id. */
struct am_family {
	const char *name;
	enum prom_type type;
	enum am_value value;
	const char *help;
};

static const struct am_family am_families[] = {
    {"rdmig_migration_info", PROM_GAUGE, AM_INFO,
     "1 for every migration the agent knows, with its state and transport"},
    {"rdmig_migration_pages", PROM_GAUGE, AM_PAGES, "lazy pages of the migration"},
    {"rdmig_migration_pages_remaining", PROM_GAUGE, AM_PAGES_REMAINING,
     "lazy pages not yet installed on the destination"},
    {"rdmig_migration_pages_moved_total", PROM_COUNTER, AM_PAGES_MOVED,
     "pages installed on the destination (dest) or read from this source"},
    {"rdmig_migration_bytes_moved_total", PROM_COUNTER, AM_BYTES_MOVED,
     "page bytes moved between the agents"},
    {"rdmig_migration_faults_total", PROM_COUNTER, AM_FAULTS,
     "userfaultfd faults of the restored workload resolved over the network"},
    {"rdmig_migration_fault_latency_p50_seconds", PROM_GAUGE, AM_FAULT_P50,
     "fault resolution latency, median"},
    {"rdmig_migration_fault_latency_p99_seconds", PROM_GAUGE, AM_FAULT_P99,
     "fault resolution latency, 99th percentile"},
    {"rdmig_migration_fault_latency_seconds", PROM_HISTOGRAM, AM_FAULT_HIST,
     "dest: every fault's resolution latency (bucket bounds are exclusive powers of two "
     "microseconds)"},
    {"rdmig_migration_freeze_seconds", PROM_GAUGE, AM_FREEZE,
     "source: the workload frozen by criu dump until its images were on disk"},
    {"rdmig_migration_downtime_seconds", PROM_GAUGE, AM_DOWNTIME,
     "the workload's downtime, from the freeze to running on the destination"},
    {"rdmig_migration_restore_seconds", PROM_GAUGE, AM_RESTORE, "dest: how long criu restore ran"},
    {"rdmig_migration_duration_seconds", PROM_GAUGE, AM_DURATION,
     "from the request to the final state (or to now)"},
    {"rdmig_migration_pauses_total", PROM_COUNTER, AM_PAUSES,
     "post-copy pauses: the peer lost, waiting for the destination to resume"},
};

struct am_ctx {
	struct evbuffer *b;
	const struct am_family *f;
	uint64_t by_state[API_STATE__COUNT];
	int err;
};

static int am_ms(struct am_ctx *c, const char *const *labels, int64_t ms)
{
	return ms < 0 ? 0 : prom_double(c->b, c->f->name, labels, (double)ms / 1000.0);
}

static int am_us(struct am_ctx *c, const char *const *labels, int64_t us)
{
	return us < 0 ? 0 : prom_double(c->b, c->f->name, labels, (double)us / 1e6);
}

/* le of the fault buckets: bucket i holds [2^i, 2^(i+1)) us, bucket 0 all under 2 us. */
static int am_fault_hist(struct am_ctx *c, const char *const *labels,
			 const struct api_migration_view *v)
{
	double le[API_HIST_BUCKETS - 1];
	uint64_t any = 0;

	for (size_t i = 0; i < API_HIST_BUCKETS; i++)
		any |= v->fault_hist[i];
	if (!any)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(le); i++)
		le[i] = (double)(2ull << i) / 1e6;
	return prom_histogram(c->b, c->f->name, labels, le, v->fault_hist, ARRAY_SIZE(le),
			      (double)v->fault_sum_us / 1e6);
}

/* Downtime bounds (s): from a blink to the minutes a large dump can take. */
static const double am_downtime_le[] = {0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300};

struct am_downtime {
	uint64_t counts[ARRAY_SIZE(am_downtime_le) + 1];
	double sum;
};

static int am_downtime_cb(void *ctx, const struct api_migration_view *v)
{
	struct am_downtime *d = ctx;
	double s = (double)v->downtime_ms / 1000.0;
	size_t i = 0;

	if (v->downtime_ms < 0)
		return 0;
	while (i < ARRAY_SIZE(am_downtime_le) && s > am_downtime_le[i])
		i++;
	d->counts[i]++;
	d->sum += s;
	return 0;
}

static int am_sample_cb(void *ctx, const struct api_migration_view *v)
{
	struct am_ctx *c = ctx;
	const char *id[] = {"id", v->id, NULL};
	const char *info[] = {"id",	   v->id,
			      "state",	   api_state_str(v->state),
			      "transport", api_transport_str(v->transport),
			      NULL};

	switch (c->f->value) {
	case AM_INFO:
		return prom_u64(c->b, c->f->name, info, 1);
	case AM_PAGES:
		return prom_u64(c->b, c->f->name, id, v->pages_total);
	case AM_PAGES_REMAINING:
		return prom_u64(c->b, c->f->name, id, v->pages_remaining);
	case AM_PAGES_MOVED:
		return prom_u64(c->b, c->f->name, id, v->pages_fetched);
	case AM_BYTES_MOVED:
		return prom_u64(c->b, c->f->name, id, v->bytes);
	case AM_FAULTS:
		return prom_u64(c->b, c->f->name, id, v->faults);
	case AM_FAULT_P50:
		return am_us(c, id, v->fault_p50_us);
	case AM_FAULT_P99:
		return am_us(c, id, v->fault_p99_us);
	case AM_FAULT_HIST:
		return am_fault_hist(c, id, v);
	case AM_FREEZE:
		return am_ms(c, id, v->freeze_ms);
	case AM_DOWNTIME:
		return am_ms(c, id, v->downtime_ms);
	case AM_RESTORE:
		return am_ms(c, id, v->restore_ms);
	case AM_DURATION:
		return am_ms(c, id, v->total_ms);
	case AM_PAUSES:
		return prom_u64(c->b, c->f->name, id, v->pauses);
	}
	return 0;
}

static int am_count_cb(void *ctx, const struct api_migration_view *v)
{
	struct am_ctx *c = ctx;

	if (v->state < API_STATE__COUNT)
		c->by_state[v->state]++;
	return 0;
}

int apimetrics_write(struct evbuffer *b, enum api_role role, const struct api_ops *ops, void *agent)
{
	const char *info[] = {"role", api_role_str(role), "version", RDMIG_VERSION, NULL};
	struct am_ctx c = {.b = b};
	struct am_downtime dt = {0};
	int ret;

	ret = ops->list(agent, am_count_cb, &c);
	if (ret < 0)
		return ret;
	if (prom_family(b, "rdmig_info", PROM_GAUGE, "the agent's role and version") < 0 ||
	    prom_u64(b, "rdmig_info", info, 1) < 0 ||
	    prom_family(b, "rdmig_migrations", PROM_GAUGE, "migrations the agent knows, by state") <
		0)
		return -ENOMEM;
	for (int s = 0; s < API_STATE__COUNT; s++) {
		const char *st[] = {"state", api_state_str((enum api_state)s), NULL};

		if (prom_u64(b, "rdmig_migrations", st, c.by_state[s]) < 0)
			return -ENOMEM;
	}
	for (size_t i = 0; i < ARRAY_SIZE(am_families); i++) {
		c.f = &am_families[i];
		if (prom_family(b, c.f->name, c.f->type, c.f->help) < 0)
			return -ENOMEM;
		ret = ops->list(agent, am_sample_cb, &c);
		if (ret < 0)
			return ret;
	}
	ret = ops->list(agent, am_downtime_cb, &dt);
	if (ret < 0)
		return ret;
	if (prom_family(b, "rdmig_downtime_seconds", PROM_HISTOGRAM,
			"downtime of the migrations the agent lists (a forgotten one leaves it)") <
		0 ||
	    prom_histogram(b, "rdmig_downtime_seconds", NULL, am_downtime_le, dt.counts,
			   ARRAY_SIZE(am_downtime_le), dt.sum) < 0)
		return -ENOMEM;
	return 0;
}
