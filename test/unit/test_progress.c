// SPDX-License-Identifier: GPL-2.0-or-later
/* The worker -> supervisor progress lines: codec and non-blocking writer. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "progress.h"

static const enum api_state reportable[] = {
    API_STATE_CONNECTING, API_STATE_RECEIVING, API_STATE_RESTORING, API_STATE_POSTCOPY,
    API_STATE_DRAINING,	  API_STATE_DONE,      API_STATE_FAILED,
};

static int decode_str(const char *line, struct progress_msg *out)
{
	return progress_decode(line, strlen(line), out);
}

static struct progress_msg counters_msg(void)
{
	struct progress_msg m;

	progress_msg_init(&m);
	m.has_counters = true;
	m.c = (struct progress_counters){
	    .pages_total = 262144,
	    .pages_fetched = 104857,
	    .pages_remaining = 157287,
	    .faults = 3120,
	    .bytes = 429494272,
	    .fault_p50_us = 14,
	    .fault_p99_us = 180,
	    .drain_depth = 4,
	    .drain_chunk = 131072,
	    .fault_lane_reads = 77,
	};
	return m;
}

static void test_states_round_trip(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m, d;

	for (size_t i = 0; i < sizeof(reportable) / sizeof(reportable[0]); i++) {
		int n;

		progress_msg_init(&m);
		m.has_state = true;
		m.state = reportable[i];
		n = progress_encode(&m, line, sizeof(line));
		assert_true(n > 0);
		assert_int_equal((size_t)n, strlen(line));
		/* One line: exactly one newline, at the end. */
		assert_int_equal(line[n - 1], '\n');
		assert_null(memchr(line, '\n', (size_t)n - 1));
		assert_int_equal(progress_decode(line, (size_t)n, &d), 0);
		assert_true(d.has_state);
		assert_int_equal(d.state, reportable[i]);
		assert_false(d.has_counters);
		assert_int_equal(d.restore_ms, -1);
		assert_string_equal(d.error, "");
		/* Without the newline too. */
		assert_int_equal(progress_decode(line, (size_t)n - 1, &d), 0);
		assert_int_equal(d.state, reportable[i]);
	}
}

static void test_failed_and_postcopy_round_trip(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m, d;

	progress_msg_init(&m);
	m.has_state = true;
	m.state = API_STATE_FAILED;
	snprintf(m.error, sizeof(m.error), "criu restore exited with status 1; see \"x\": é");
	assert_true(progress_encode(&m, line, sizeof(line)) > 0);
	assert_int_equal(decode_str(line, &d), 0);
	assert_int_equal(d.state, API_STATE_FAILED);
	assert_string_equal(d.error, m.error);

	/* A pause carries its reason the same way (and is the one state that goes back). */
	assert_true(progress_state_reportable(API_STATE_PAUSED));
	progress_msg_init(&m);
	m.has_state = true;
	m.state = API_STATE_PAUSED;
	snprintf(m.error, sizeof(m.error), "the source has been silent for 10 s");
	assert_true(progress_encode(&m, line, sizeof(line)) > 0);
	assert_string_equal(
	    line, "{\"state\":\"paused\",\"error\":\"the source has been silent for 10 s\"}\n");
	assert_int_equal(decode_str(line, &d), 0);
	assert_int_equal(d.state, API_STATE_PAUSED);
	assert_string_equal(d.error, m.error);

	progress_msg_init(&m);
	m.has_state = true;
	m.state = API_STATE_POSTCOPY;
	m.restore_ms = 812;
	assert_true(progress_encode(&m, line, sizeof(line)) > 0);
	assert_string_equal(line, "{\"state\":\"postcopy\",\"restore_ms\":812}\n");
	assert_int_equal(decode_str(line, &d), 0);
	assert_int_equal(d.state, API_STATE_POSTCOPY);
	assert_int_equal(d.restore_ms, 812);
}

static void test_readahead_round_trip(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m = counters_msg(), d;
	int n;

	m.c.ra_faults[RA_SEQUENTIAL] = 40;
	m.c.ra_faults[RA_STRIDED] = 2;
	m.c.ra_faults[RA_RANDOM] = 7;
	m.c.nr_ra_tasks = 2;
	m.c.ra_tasks[0].pid = 42;
	m.c.ra_tasks[0].pattern = RA_SEQUENTIAL;
	m.c.ra_tasks[0].window = 64;
	m.c.ra_tasks[1].pid = 43;
	m.c.ra_tasks[1].pattern = RA_RANDOM;
	m.c.ra_tasks[1].window = 1;
	m.c.nr_ra_tasks = 3;
	m.c.ra_tasks[2].pid = 44;
	m.c.ra_tasks[2].pattern = RA_STRIDED;
	m.c.ra_tasks[2].window = 1;
	m.c.ra_tasks[2].stride = -8;
	n = progress_encode(&m, line, sizeof(line));
	assert_true(n > 0);
	assert_non_null(strstr(line, "\"readahead\":{\"pattern\":\"sequential\""));
	assert_int_equal(progress_decode(line, (size_t)n, &d), 0);
	assert_int_equal(d.c.nr_ra_tasks, 3);
	assert_int_equal(d.c.ra_tasks[2].pattern, RA_STRIDED);
	assert_int_equal(d.c.ra_tasks[2].stride, -8);
	assert_int_equal(d.c.ra_tasks[0].stride, 0);
	assert_int_equal(d.c.ra_faults[RA_SEQUENTIAL], 40);
	assert_int_equal(d.c.ra_faults[RA_STRIDED], 2);
	assert_int_equal(d.c.ra_faults[RA_RANDOM], 7);
	assert_int_equal(d.c.ra_tasks[1].pid, 43);
	assert_int_equal(d.c.ra_tasks[1].pattern, RA_RANDOM);
	assert_int_equal(d.c.ra_tasks[0].window, 64);
	/* Without it: none.  A broken one: the line is refused. */
	m.c.nr_ra_tasks = 0;
	n = progress_encode(&m, line, sizeof(line));
	assert_null(strstr(line, "readahead"));
	assert_int_equal(progress_decode(line, (size_t)n, &d), 0);
	assert_int_equal(d.c.nr_ra_tasks, 0);
	snprintf(line, sizeof(line),
		 "{\"pages_total\":1,\"pages_fetched\":0,\"pages_remaining\":1,\"faults\":0,"
		 "\"bytes\":0,\"readahead\":{\"sequential\":1,\"strided\":0,\"random\":0,"
		 "\"tasks\":[{\"pid\":1,\"pattern\":\"zigzag\",\"window\":1}]}}");
	assert_int_equal(progress_decode(line, strlen(line), &d), -EINVAL);
}

static void test_fault_hist_round_trip(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m = counters_msg(), d;
	int n;

	m.c.fault_hist[0] = 1;
	m.c.fault_hist[7] = 300;
	m.c.fault_hist[API_HIST_BUCKETS - 1] = 2;
	m.c.fault_sum_us = 123456789;
	n = progress_encode(&m, line, sizeof(line));
	assert_true(n > 0);
	assert_non_null(strstr(line, "\"fault_hist\":{\"sum_us\":123456789,\"buckets\":[1,0,"));
	assert_int_equal(progress_decode(line, (size_t)n, &d), 0);
	assert_memory_equal(d.c.fault_hist, m.c.fault_hist, sizeof(m.c.fault_hist));
	assert_int_equal(d.c.fault_sum_us, 123456789);
	/* Cut after its last non-empty bucket; none at all: no key. */
	m.c.fault_hist[API_HIST_BUCKETS - 1] = 0;
	n = progress_encode(&m, line, sizeof(line));
	assert_non_null(strstr(line, ",300]}"));
	memset(m.c.fault_hist, 0, sizeof(m.c.fault_hist));
	n = progress_encode(&m, line, sizeof(line));
	assert_null(strstr(line, "fault_hist"));
	assert_int_equal(progress_decode(line, (size_t)n, &d), 0);
	assert_int_equal(d.c.fault_hist[7], 0);
}

static void test_counters_round_trip(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m = counters_msg(), d;

	assert_true(progress_encode(&m, line, sizeof(line)) > 0);
	assert_int_equal(decode_str(line, &d), 0);
	assert_false(d.has_state);
	assert_true(d.has_counters);
	assert_memory_equal(&d.c, &m.c, sizeof(m.c));

	/* No fault yet: the latencies travel as null and come back as -1. */
	m.c.fault_p50_us = -1;
	m.c.fault_p99_us = -1;
	assert_true(progress_encode(&m, line, sizeof(line)) > 0);
	assert_non_null(strstr(line, "\"fault_p50_us\":null"));
	assert_int_equal(decode_str(line, &d), 0);
	assert_int_equal(d.c.fault_p50_us, -1);
	assert_int_equal(d.c.fault_p99_us, -1);
	/* Absent is the same as null. */
	assert_int_equal(decode_str("{\"pages_total\":2,\"pages_fetched\":1,\"pages_remaining\":1,"
				    "\"faults\":0,\"bytes\":4096}",
				    &d),
			 0);
	assert_int_equal(d.c.fault_p99_us, -1);
	/* So are the drain's width and the fault lane's count (TCP, an older worker). */
	assert_int_equal(d.c.drain_depth, -1);
	assert_int_equal(d.c.drain_chunk, -1);
	assert_int_equal(d.c.fault_lane_reads, -1);

	/* State and counters in one line: the worker's verdict. */
	m = counters_msg();
	m.has_state = true;
	m.state = API_STATE_DONE;
	assert_true(progress_encode(&m, line, sizeof(line)) > 0);
	assert_int_equal(decode_str(line, &d), 0);
	assert_true(d.has_state && d.has_counters);
	assert_int_equal(d.state, API_STATE_DONE);
	assert_int_equal(d.c.pages_fetched, 104857);
}

static void test_encode_refuses(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m;

	progress_msg_init(&m);
	assert_int_equal(progress_encode(&m, line, sizeof(line)), -EINVAL);
	m.has_state = true;
	/* The supervisor's verdicts are not the worker's to report. */
	m.state = API_STATE_ABORTED;
	assert_int_equal(progress_encode(&m, line, sizeof(line)), -EINVAL);
	m.state = API_STATE_PENDING;
	assert_int_equal(progress_encode(&m, line, sizeof(line)), -EINVAL);
	m.state = API_STATE_SERVING;
	assert_int_equal(progress_encode(&m, line, sizeof(line)), -EINVAL);
	m.state = API_STATE_CONNECTING;
	assert_int_equal(progress_encode(&m, line, 10), -ENOSPC);
	/* Exactly big enough: the line, its newline and the NUL. */
	assert_int_equal(progress_encode(&m, line, sizeof("{\"state\":\"connecting\"}\n")),
			 (int)strlen("{\"state\":\"connecting\"}\n"));
	assert_int_equal(progress_encode(&m, line, sizeof("{\"state\":\"connecting\"}\n") - 1),
			 -ENOSPC);
}

static void test_decode_truncated(void **state)
{
	char line[PROGRESS_LINE_MAX + 1];
	struct progress_msg m = counters_msg(), d;
	int n;

	m.has_state = true;
	m.state = API_STATE_FAILED;
	snprintf(m.error, sizeof(m.error), "source lost");
	n = progress_encode(&m, line, sizeof(line));
	assert_true(n > 0);
	/* A worker killed mid-line leaves a prefix: never half a message. */
	for (int len = 0; len < n - 1; len++)
		assert_int_equal(progress_decode(line, (size_t)len, &d), -EINVAL);
}

static void test_decode_oversized(void **state)
{
	static const char head1[] = "{\"state\":\"receiving\",\"pad\":\"";
	static const char head2[] = "{\"state\":\"failed\",\"error\":\"";
	static char line[PROGRESS_LINE_MAX + 101];
	const size_t big = PROGRESS_LINE_MAX + 100, n1 = sizeof(head1) - 1, n2 = sizeof(head2) - 1;
	struct progress_msg d;

	/* An unknown key padding a valid object past the limit: refused for its size. */
	memcpy(line, head1, n1);
	memset(line + n1, 'a', big - n1 - 2);
	memcpy(line + big - 2, "\"}", 3);
	assert_int_equal(strlen(line), big);
	assert_int_equal(progress_decode(line, big, &d), -E2BIG);
	assert_int_equal(progress_decode(line, PROGRESS_LINE_MAX + 1, &d), -E2BIG);

	/* An error text longer than the view keeps. */
	memcpy(line, head2, n2);
	memset(line + n2, 'e', PROGRESS_ERROR_MAX);
	memcpy(line + n2 + PROGRESS_ERROR_MAX, "\"}", 3);
	assert_int_equal(decode_str(line, &d), -EINVAL);
	/* One byte shorter fits. */
	memcpy(line + n2 + PROGRESS_ERROR_MAX - 1, "\"}", 3);
	assert_int_equal(decode_str(line, &d), 0);
	assert_int_equal(strlen(d.error), PROGRESS_ERROR_MAX - 1);
}

static void test_decode_hostile(void **state)
{
	static const char *const bad[] = {
	    "",
	    "\n",
	    "not json",
	    "[]",
	    "\"state\"",
	    "42",
	    "null",
	    "{\"state\":\"connecting\"} {\"state\":\"done\"}",
	    "{\"state\":\"connecting\",\"state\":\"done\"}",
	    "{\"state\":\"aborted\"}",
	    "{\"state\":\"rolled_back\"}",
	    "{\"state\":\"pending\"}",
	    "{\"state\":\"hacked\"}",
	    "{\"state\":7}",
	    "{\"state\":null}",
	    "{\"state\":\"done\",\"error\":\"not a failure\"}",
	    "{\"state\":\"failed\",\"error\":5}",
	    "{\"error\":\"no state\"}",
	    "{\"state\":\"failed\",\"error\":\"a\\u0000b\"}",
	    "{\"restore_ms\":-1}",
	    "{\"restore_ms\":1.5}",
	    "{\"restore_ms\":\"12\"}",
	    "{\"restore_ms\":99999999999999}",
	    "{\"pages_total\":1}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0}",
	    "{\"pages_total\":4,\"pages_fetched\":-1,\"pages_remaining\":3,\"faults\":0,\"bytes\":"
	    "0}",
	    "{\"pages_total\":4,\"pages_fetched\":1.0,\"pages_remaining\":3,\"faults\":0,\"bytes\":"
	    "0}",
	    "{\"pages_total\":4,\"pages_fetched\":true,\"pages_remaining\":3,\"faults\":0,"
	    "\"bytes\":0}",
	    "{\"pages_total\":4,\"pages_fetched\":5,\"pages_remaining\":0,\"faults\":0,\"bytes\":"
	    "0}",
	    "{\"pages_total\":4,\"pages_fetched\":0,\"pages_remaining\":5,\"faults\":0,\"bytes\":"
	    "0}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_p50_us\":-3}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_p99_us\":\"fast\"}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_hist\":{\"sum_us\":1,\"buckets\":[]}}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_hist\":{\"sum_us\":1,\"buckets\":[1,0]}}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_hist\":{\"buckets\":[1]}}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_hist\":{\"sum_us\":1,\"buckets\":[-1,2]}}",
	    "{\"pages_total\":4,\"pages_fetched\":1,\"pages_remaining\":3,\"faults\":0,\"bytes\":0,"
	    "\"fault_hist\":{\"sum_us\":1,\"buckets\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
	    "1,1,1,1,1,1,1,1,1,1,1]}}",
	    "{\"pages_total\":18446744073709551615,\"pages_fetched\":1,\"pages_remaining\":3,"
	    "\"faults\":0,\"bytes\":0}",
	};
	struct progress_msg d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = decode_str(bad[i], &d);

		if (ret != -EINVAL)
			fail_msg("accepted (%d): %s", ret, bad[i]);
	}
	/* A NUL inside the line ends nothing: the whole length is parsed. */
	assert_int_equal(progress_decode("{\"state\":\"done\"}\0{", 18, &d), -EINVAL);
}

static void test_decode_unknown_keys_and_text(void **state)
{
	struct progress_msg d;

	/* A newer worker may say more: unknown keys, however shaped, are ignored. */
	assert_int_equal(
	    decode_str("{\"future\":{\"a\":[1,2,{\"b\":null}]},\"state\":\"receiving\","
		       "\"x\":1.5}",
		       &d),
	    0);
	assert_true(d.has_state);
	assert_int_equal(d.state, API_STATE_RECEIVING);
	assert_false(d.has_counters);
	/* Nothing known at all: valid, says nothing. */
	assert_int_equal(decode_str("{\"hello\":\"world\"}", &d), 0);
	assert_false(d.has_state);
	assert_false(d.has_counters);
	assert_int_equal(d.restore_ms, -1);
	/* Control characters never reach logs or the API. */
	assert_int_equal(
	    decode_str("{\"state\":\"failed\",\"error\":\"a\\nb\\u001b[31mc\\td\"}", &d), 0);
	assert_string_equal(d.error, "a b [31mc d");
	/* A failure without a text is still a failure. */
	assert_int_equal(decode_str("{\"state\":\"failed\"}", &d), 0);
	assert_int_equal(d.state, API_STATE_FAILED);
	assert_string_equal(d.error, "");
}

static void test_state_rank(void **state)
{
	for (size_t i = 1; i < sizeof(reportable) / sizeof(reportable[0]) - 1; i++)
		assert_true(progress_state_rank(reportable[i - 1]) <
			    progress_state_rank(reportable[i]));
	assert_true(progress_state_rank(API_STATE_PENDING) <
		    progress_state_rank(API_STATE_CONNECTING));
	assert_int_equal(progress_state_rank(API_STATE_DONE),
			 progress_state_rank(API_STATE_FAILED));
	assert_true(progress_state_reportable(API_STATE_DRAINING));
	assert_false(progress_state_reportable(API_STATE_ABORTED));
}

/* Reads whatever is in the (non-blocking) pipe into buf; returns the length. */
static size_t slurp(int fd, char *buf, size_t cap, size_t have)
{
	ssize_t n;

	while (have < cap && (n = read(fd, buf + have, cap - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	return have;
}

static void test_writer_never_blocks_keeps_states(void **state)
{
	struct event_base *base = event_base_new();
	struct progress_writer *w = NULL;
	struct progress_msg st, cn = counters_msg(), d;
	size_t cap = 1 << 20, have = 0;
	char *buf = malloc(cap + 1), *line, *save = NULL;
	int p[2], states = 0, counters = 0, ret;
	enum api_state last = API_STATE_PENDING;

	assert_non_null(base);
	assert_non_null(buf);
	assert_int_equal(pipe(p), 0);
	/* The smallest pipe: it fills after a page of progress. */
	fcntl(p[1], F_SETPIPE_SZ, 4096);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(progress_writer_create(base, p[1], &w), 0);
	assert_true(fcntl(p[1], F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(p[1], F_GETFD) & FD_CLOEXEC);

	/* Nobody reads: counters pile up until the pipe is full, then are dropped. */
	for (int i = 0; i < 200; i++) {
		cn.c.faults = (uint64_t)i;
		assert_int_equal(progress_writer_send(w, &cn), 0);
	}
	assert_true(progress_writer_dropped(w) > 0);
	/* States are queued even now, in order. */
	for (size_t i = 0; i < sizeof(reportable) / sizeof(reportable[0]) - 1; i++) {
		progress_msg_init(&st);
		st.has_state = true;
		st.state = reportable[i];
		assert_int_equal(progress_writer_send(w, &st), 0);
	}
	/* The reader wakes: the loop writes the rest as the pipe drains. */
	for (int i = 0; i < 100; i++) {
		have = slurp(p[0], buf, cap, have);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	assert_int_equal(progress_writer_flush(w, 1000), 0);
	have = slurp(p[0], buf, cap, have);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		assert_int_equal(decode_str(line, &d), 0);
		if (d.has_state) {
			assert_true(progress_state_rank(d.state) > progress_state_rank(last));
			last = d.state;
			states++;
		}
		counters += d.has_counters;
	}
	assert_int_equal(states, (int)(sizeof(reportable) / sizeof(reportable[0]) - 1));
	assert_true(counters > 0);
	assert_true(counters < 200);

	/* The supervisor is gone: EPIPE turns reporting off, no SIGPIPE, no block. */
	close(p[0]);
	progress_msg_init(&st);
	st.has_state = true;
	st.state = API_STATE_DONE;
	ret = progress_writer_send(w, &st);
	assert_int_equal(ret, -EPIPE);
	assert_int_equal(progress_writer_send(w, &cn), -EPIPE);
	assert_int_equal(progress_writer_flush(w, 100), -EPIPE);
	progress_writer_free(w);
	event_base_free(base);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_states_round_trip),
	    cmocka_unit_test(test_failed_and_postcopy_round_trip),
	    cmocka_unit_test(test_counters_round_trip),
	    cmocka_unit_test(test_readahead_round_trip),
	    cmocka_unit_test(test_fault_hist_round_trip),
	    cmocka_unit_test(test_encode_refuses),
	    cmocka_unit_test(test_decode_truncated),
	    cmocka_unit_test(test_decode_oversized),
	    cmocka_unit_test(test_decode_hostile),
	    cmocka_unit_test(test_decode_unknown_keys_and_text),
	    cmocka_unit_test(test_state_rank),
	    cmocka_unit_test(test_writer_never_blocks_keeps_states),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
