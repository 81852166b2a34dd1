// SPDX-License-Identifier: GPL-2.0-or-later
#include "waitq.h"

#include <string.h>

const char *src_queue_reason_str(enum src_queue_reason r)
{
	switch (r) {
	case SRC_QUEUE_SLOT:
		return "slot";
	case SRC_QUEUE_SOURCE:
		return "source";
	case SRC_QUEUE_DUMP:
		return "dump";
	}
	return "?";
}

bool src_queue_same_dest(const struct src_migration *a, const struct src_migration *b)
{
	return strcmp(a->dest ? a->dest : "", b->dest ? b->dest : "") == 0;
}

unsigned int src_queue_ahead(const struct src_mig_list *list, const struct src_migration *m,
			     bool dump)
{
	const struct src_migration *o;
	unsigned int n = 0;

	TAILQ_FOREACH(o, list, link)
	{
		if (o == m)
			break;
		if (o->state != SRC_MIG_QUEUED)
			continue;
		if (!m && !dump)
			n++;
		else if (dump)
			n += o->queue_reason == SRC_QUEUE_DUMP;
		else
			n += o->queue_reason != SRC_QUEUE_DUMP && src_queue_same_dest(o, m);
	}
	return n;
}

unsigned int src_queue_position(const struct src_mig_list *list, const struct src_migration *m)
{
	if (m->state != SRC_MIG_QUEUED)
		return 0;
	return src_queue_ahead(list, m, m->queue_reason == SRC_QUEUE_DUMP) + 1;
}

unsigned int src_queue_backoff_next(unsigned int cur_ms, unsigned int max_ms)
{
	if (!cur_ms)
		return max_ms < 1000 ? max_ms : 1000;
	return cur_ms > max_ms / 2 ? max_ms : cur_ms * 2;
}
