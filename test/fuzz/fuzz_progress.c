// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the worker -> supervisor progress lines
 * (dest-agent/progress.c, progress_decode()).
 *
 * Input: what a worker writes on its progress pipe.  It is cut at each
 * '\n' as the supervisor cuts it, and every line is decoded; the whole
 * input is also decoded as one line (the length limit, NULs, a missing
 * newline).
 *
 * Besides crashes, it aborts when a decoded line breaks what progress.h
 * promises the supervisor (a reportable state, an error only with
 * "failed", no control character in the error, consistent counters), or
 * when re-encoding a decoded line and decoding it again does not give the
 * same message.
 *
 * Run: `make fuzz FUZZ_TARGETS=progress` (docs/testing.md, "Fuzzing").
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "progress.h"

static void fuzz_check_msg(const struct progress_msg *m)
{
	size_t len = strnlen(m->error, sizeof(m->error));

	fuzz_check(len < sizeof(m->error));
	for (size_t i = 0; i < len; i++)
		fuzz_check((unsigned char)m->error[i] >= 0x20 && m->error[i] != 0x7f);
	fuzz_check(!m->has_state || progress_state_reportable(m->state));
	fuzz_check(len == 0 || (m->has_state && m->state == API_STATE_FAILED));
	fuzz_check(m->restore_ms >= -1 && m->restore_ms <= PROGRESS_MS_MAX);
	if (m->has_counters) {
		fuzz_check(m->c.pages_fetched <= m->c.pages_total);
		fuzz_check(m->c.pages_remaining <= m->c.pages_total);
		fuzz_check(m->c.fault_p50_us >= -1 && m->c.fault_p99_us >= -1);
	}
}

/* What the worker would write for m decodes to m again. */
static void fuzz_round_trip(const struct progress_msg *m)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg again;
	int n;

	n = progress_encode(m, line, sizeof(line));
	if (n == -EINVAL) {
		/* Only a line with nothing to say (e.g. restore_ms alone) is not encodable. */
		fuzz_check(!m->has_state && !m->has_counters);
		return;
	}
	fuzz_check(n > 0 && line[n - 1] == '\n');
	fuzz_check(progress_decode(line, (size_t)n, &again) == 0);
	fuzz_check(again.has_state == m->has_state && again.has_counters == m->has_counters);
	fuzz_check(!m->has_state || again.state == m->state);
	fuzz_check(strcmp(again.error, m->error) == 0 && again.restore_ms == m->restore_ms);
	fuzz_check(!m->has_counters || memcmp(&again.c, &m->c, sizeof(m->c)) == 0);
}

static void fuzz_line(const char *line, size_t len)
{
	struct progress_msg m;
	int ret = progress_decode(line, len, &m);

	fuzz_check(ret == 0 || ret == -EINVAL || ret == -E2BIG);
	fuzz_check(ret != -E2BIG || len > PROGRESS_LINE_MAX);
	if (ret < 0)
		return;
	fuzz_check_msg(&m);
	fuzz_round_trip(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);

		fuzz_line(p, len);
		p += len + 1;
	}
	fuzz_line((const char *)data, size);
	return 0;
}
