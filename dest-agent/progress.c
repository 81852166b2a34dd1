// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * progress: the worker -> supervisor progress lines (see progress.h).
 */
#include "progress.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/*
 * What may wait in a writer: far more than the dozen state lines of a
 * migration, so reaching it means the reader stopped reading.
 */
#define PROGRESS_QUEUE_MAX (64 * 1024)

static const char *const counter_keys[] = {
    "pages_total", "pages_fetched", "pages_remaining", "faults", "bytes",
};

struct progress_writer {
	int fd;
	struct evbuffer *out;
	struct event *ev;
	bool gone; /* the reader closed its end: reporting is off */
	uint64_t dropped;
};

void progress_msg_init(struct progress_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->restore_ms = -1;
	m->c.fault_p50_us = -1;
	m->c.fault_p99_us = -1;
	m->c.drain_depth = -1;
	m->c.drain_chunk = -1;
	m->c.fault_lane_reads = -1;
	m->c.pages_local = -1;
}

bool progress_state_reportable(enum api_state s)
{
	switch (s) {
	case API_STATE_CONNECTING:
	case API_STATE_RECEIVING:
	case API_STATE_RESTORING:
	case API_STATE_POSTCOPY:
	case API_STATE_DRAINING:
	case API_STATE_PAUSED:
	case API_STATE_DONE:
	case API_STATE_FAILED:
		return true;
	default:
		return false;
	}
}

int progress_state_rank(enum api_state s)
{
	switch (s) {
	case API_STATE_PENDING:
		return 0;
	case API_STATE_CONNECTING:
		return 1;
	case API_STATE_RECEIVING:
		return 2;
	case API_STATE_RESTORING:
		return 3;
	case API_STATE_POSTCOPY:
	case API_STATE_PAUSED: /* entered and left again: see sup_apply_pause() */
		return 4;
	case API_STATE_DRAINING:
		return 5;
	default:
		return 6;
	}
}

/* Logs and the API show the text as it is: no control characters in it. */
static void progress_clean_text(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

static void progress_set(json_t *obj, const char *key, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(obj, key, v) < 0)
		*ok = false;
}

static json_t *progress_u64(uint64_t v);

/*
 * {"pattern", "sequential", "strided", "random",
 *  "tasks": [{"pid", "pattern", "window", "stride"}]}
 */
static json_t *progress_readahead(const struct progress_counters *c)
{
	struct readahead all = {0};
	json_t *o = json_object(), *tasks = json_array();
	bool ok = o && tasks;
	uint32_t i;

	memcpy(all.n, c->ra_faults, sizeof(all.n));
	if (ok) {
		progress_set(o, "pattern",
			     json_string(readahead_pattern_str(readahead_pattern(&all))), &ok);
		progress_set(o, "sequential", progress_u64(c->ra_faults[RA_SEQUENTIAL]), &ok);
		progress_set(o, "strided", progress_u64(c->ra_faults[RA_STRIDED]), &ok);
		progress_set(o, "random", progress_u64(c->ra_faults[RA_RANDOM]), &ok);
	}
	for (i = 0; ok && i < c->nr_ra_tasks && i < PROGRESS_RA_TASKS; i++) {
		json_t *t = json_object();

		ok = t && json_array_append_new(tasks, t) == 0;
		if (!ok) {
			json_decref(t);
			break;
		}
		progress_set(t, "pid", json_integer(c->ra_tasks[i].pid), &ok);
		progress_set(t, "pattern",
			     json_string(readahead_pattern_str(c->ra_tasks[i].pattern)), &ok);
		progress_set(t, "window", json_integer(c->ra_tasks[i].window), &ok);
		progress_set(t, "stride", json_integer(c->ra_tasks[i].stride), &ok);
	}
	if (!ok) {
		json_decref(tasks);
		json_decref(o);
		return NULL;
	}
	/* Takes tasks, even when it fails. */
	progress_set(o, "tasks", tasks, &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* {"sum_us":S,"buckets":[...]}, the buckets up to the last non-empty one; NULL: none. */
static json_t *progress_hist(const struct progress_counters *c)
{
	json_t *o, *b;
	size_t n = API_HIST_BUCKETS;
	bool ok;

	while (n && !c->fault_hist[n - 1])
		n--;
	o = json_object();
	b = json_array();
	ok = o && b;
	for (size_t i = 0; ok && i < n; i++)
		ok = json_array_append_new(b, progress_u64(c->fault_hist[i])) == 0;
	if (ok)
		progress_set(o, "sum_us", progress_u64(c->fault_sum_us), &ok);
	if (!ok) {
		json_decref(b);
		json_decref(o);
		return NULL;
	}
	/* Takes b, even when it fails. */
	progress_set(o, "buckets", b, &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *progress_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *progress_opt_i64(int64_t v)
{
	return v < 0 ? json_null() : json_integer(v);
}

/* jansson wants UTF-8; an error quoting a log line may not be, so fall back to ASCII. */
static json_t *progress_error_json(const char *error)
{
	char buf[PROGRESS_ERROR_MAX];
	json_t *s;

	snprintf(buf, sizeof(buf), "%s", error);
	progress_clean_text(buf);
	s = json_string(buf);
	if (s)
		return s;
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	return json_string(buf);
}

int progress_encode(const struct progress_msg *m, char *buf, size_t len)
{
	json_t *o = NULL;
	char *text = NULL;
	bool ok = true;
	size_t n;
	int ret;

	if ((!m->has_state && !m->has_counters) ||
	    (m->has_state && !progress_state_reportable(m->state))) {
		ret = -EINVAL;
		goto out;
	}
	o = json_object();
	if (!o) {
		ret = -ENOMEM;
		goto out;
	}
	if (m->has_state) {
		progress_set(o, "state", json_string(api_state_str(m->state)), &ok);
		if ((m->state == API_STATE_FAILED || m->state == API_STATE_PAUSED) && m->error[0])
			progress_set(o, "error", progress_error_json(m->error), &ok);
	}
	if (m->restore_ms >= 0)
		progress_set(o, "restore_ms", json_integer(m->restore_ms), &ok);
	if (m->has_counters) {
		const uint64_t v[] = {m->c.pages_total, m->c.pages_fetched, m->c.pages_remaining,
				      m->c.faults, m->c.bytes};

		for (size_t i = 0; i < ARRAY_SIZE(counter_keys); i++)
			progress_set(o, counter_keys[i], progress_u64(v[i]), &ok);
		progress_set(o, "fault_p50_us", progress_opt_i64(m->c.fault_p50_us), &ok);
		progress_set(o, "fault_p99_us", progress_opt_i64(m->c.fault_p99_us), &ok);
		progress_set(o, "drain_depth", progress_opt_i64(m->c.drain_depth), &ok);
		progress_set(o, "drain_chunk", progress_opt_i64(m->c.drain_chunk), &ok);
		progress_set(o, "fault_lane_reads", progress_opt_i64(m->c.fault_lane_reads), &ok);
		progress_set(o, "pages_local", progress_opt_i64(m->c.pages_local), &ok);
		if (m->c.nr_ra_tasks)
			progress_set(o, "readahead", progress_readahead(&m->c), &ok);
		for (size_t i = 0; i < API_HIST_BUCKETS; i++)
			if (m->c.fault_hist[i]) {
				progress_set(o, "fault_hist", progress_hist(&m->c), &ok);
				break;
			}
	}
	if (!ok) {
		ret = -ENOMEM;
		goto out;
	}
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text) {
		ret = -ENOMEM;
		goto out;
	}
	n = strlen(text);
	/* The line, its newline and the NUL. */
	if (n + 2 > len || n + 1 > PROGRESS_LINE_MAX) {
		ret = -ENOSPC;
		goto out;
	}
	memcpy(buf, text, n);
	buf[n++] = '\n';
	buf[n] = '\0';
	ret = (int)n;
out:
	free(text);
	json_decref(o);
	return ret;
}

/* A non-negative JSON integer no larger than max. */
static int progress_get_uint(const json_t *v, int64_t max, int64_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -EINVAL;
	i = json_integer_value(v);
	if (i < 0 || i > max)
		return -EINVAL;
	*out = i;
	return 0;
}

/* The "readahead" object, if there is one: whole and in range, or -EINVAL. */
static int progress_get_readahead(const json_t *ra, struct progress_counters *c)
{
	static const char *const counts[] = {"sequential", "strided", "random"};
	const json_t *tasks, *t;
	enum ra_pattern p;
	int64_t v;
	size_t i;

	if (!ra)
		return 0;
	tasks = json_object_get(ra, "tasks");
	if (!json_is_object(ra) || !json_is_array(tasks) || json_array_size(tasks) == 0 ||
	    json_array_size(tasks) > PROGRESS_RA_TASKS)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(counts); i++) {
		if (progress_get_uint(json_object_get(ra, counts[i]), INT64_MAX, &v) < 0)
			return -EINVAL;
		c->ra_faults[RA_SEQUENTIAL + i] = (uint64_t)v;
	}
	json_array_foreach(tasks, i, t)
	{
		const json_t *pat = json_object_get(t, "pattern");
		const json_t *stride = json_object_get(t, "stride");

		if (progress_get_uint(json_object_get(t, "window"), UINT32_MAX, &v) < 0 ||
		    !json_is_string(pat) ||
		    readahead_pattern_parse(json_string_value(pat), &p) < 0 ||
		    !json_is_integer(json_object_get(t, "pid")) ||
		    (stride && !json_is_integer(stride)))
			return -EINVAL;
		/* Absent in a line from a worker before the stride was reported. */
		c->ra_tasks[i].stride = stride ? json_integer_value(stride) : 0;
		c->ra_tasks[i].window = (uint32_t)v;
		c->ra_tasks[i].pattern = p;
		c->ra_tasks[i].pid = (int32_t)json_integer_value(json_object_get(t, "pid"));
	}
	c->nr_ra_tasks = (uint32_t)json_array_size(tasks);
	return 0;
}

/* An optional count or latency: absent or null is -1. */
static int progress_get_hist(const json_t *h, struct progress_counters *c)
{
	const json_t *b, *v;
	int64_t n;
	size_t i;

	if (!h)
		return 0;
	b = json_object_get(h, "buckets");
	if (!json_is_object(h) || !json_is_array(b) || json_array_size(b) == 0 ||
	    json_array_size(b) > API_HIST_BUCKETS ||
	    progress_get_uint(json_object_get(h, "sum_us"), INT64_MAX, &n) < 0)
		return -EINVAL;
	c->fault_sum_us = (uint64_t)n;
	json_array_foreach(b, i, v)
	{
		if (progress_get_uint(v, INT64_MAX, &n) < 0)
			return -EINVAL;
		c->fault_hist[i] = (uint64_t)n;
	}
	/* Encoded up to its last non-empty bucket, and never all empty. */
	if (!c->fault_hist[json_array_size(b) - 1])
		return -EINVAL;
	return 0;
}

static int progress_get_opt(const json_t *root, const char *key, int64_t *out)
{
	const json_t *v = json_object_get(root, key);

	*out = -1;
	if (!v || json_is_null(v))
		return 0;
	return progress_get_uint(v, INT64_MAX, out);
}

static int progress_decode_counters(const json_t *root, struct progress_msg *out)
{
	int64_t v[ARRAY_SIZE(counter_keys)];
	bool any = false, all = true;
	int ret;

	for (size_t i = 0; i < ARRAY_SIZE(counter_keys); i++) {
		const json_t *j = json_object_get(root, counter_keys[i]);

		any |= j != NULL;
		all &= j != NULL;
		if (j && progress_get_uint(j, INT64_MAX, &v[i]) < 0)
			return -EINVAL;
	}
	if (!any)
		return 0;
	/* Half a set of counters would mix two moments. */
	if (!all)
		return -EINVAL;
	out->has_counters = true;
	out->c.pages_total = (uint64_t)v[0];
	out->c.pages_fetched = (uint64_t)v[1];
	out->c.pages_remaining = (uint64_t)v[2];
	out->c.faults = (uint64_t)v[3];
	out->c.bytes = (uint64_t)v[4];
	if (out->c.pages_fetched > out->c.pages_total ||
	    out->c.pages_remaining > out->c.pages_total)
		return -EINVAL;
	ret = progress_get_opt(root, "fault_p50_us", &out->c.fault_p50_us);
	if (ret == 0)
		ret = progress_get_opt(root, "fault_p99_us", &out->c.fault_p99_us);
	if (ret == 0)
		ret = progress_get_opt(root, "drain_depth", &out->c.drain_depth);
	if (ret == 0)
		ret = progress_get_opt(root, "drain_chunk", &out->c.drain_chunk);
	if (ret == 0)
		ret = progress_get_opt(root, "fault_lane_reads", &out->c.fault_lane_reads);
	if (ret == 0)
		ret = progress_get_opt(root, "pages_local", &out->c.pages_local);
	if (ret == 0)
		ret = progress_get_readahead(json_object_get(root, "readahead"), &out->c);
	if (ret == 0)
		ret = progress_get_hist(json_object_get(root, "fault_hist"), &out->c);
	return ret;
}

int progress_decode(const char *line, size_t len, struct progress_msg *out)
{
	json_error_t jerr;
	const json_t *v;
	json_t *root = NULL;
	int64_t ms;
	int ret;

	progress_msg_init(out);
	if (len > PROGRESS_LINE_MAX)
		return -E2BIG;
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		ret = -EINVAL;
		goto out;
	}
	v = json_object_get(root, "state");
	if (v) {
		if (!json_is_string(v) || api_state_parse(json_string_value(v), &out->state) < 0 ||
		    !progress_state_reportable(out->state)) {
			ret = -EINVAL;
			goto out;
		}
		out->has_state = true;
	}
	v = json_object_get(root, "error");
	if (v) {
		/* An error explains a failure or a pause, and nothing else. */
		if (!json_is_string(v) || !out->has_state ||
		    (out->state != API_STATE_FAILED && out->state != API_STATE_PAUSED) ||
		    json_string_length(v) >= sizeof(out->error) ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			ret = -EINVAL;
			goto out;
		}
		snprintf(out->error, sizeof(out->error), "%s", json_string_value(v));
		progress_clean_text(out->error);
	}
	v = json_object_get(root, "restore_ms");
	if (v) {
		ret = progress_get_uint(v, PROGRESS_MS_MAX, &ms);
		if (ret < 0)
			goto out;
		out->restore_ms = ms;
	}
	ret = progress_decode_counters(root, out);
out:
	json_decref(root);
	return ret;
}

/* ---- writer ---- */

static void progress_writer_gone(struct progress_writer *w, int err)
{
	if (!w->gone)
		log_warn("progress fd %d: %s: the supervisor is gone; the migration goes on "
			 "without reporting",
			 w->fd, strerror(-err));
	w->gone = true;
	evbuffer_drain(w->out, evbuffer_get_length(w->out));
	event_del(w->ev);
}

/* Writes what the pipe takes now; arms the write event for the rest. */
static int progress_writer_push(struct progress_writer *w)
{
	int n;

	while (evbuffer_get_length(w->out) > 0) {
		n = evbuffer_write(w->out, w->fd);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		progress_writer_gone(w, n < 0 ? -errno : -EPIPE);
		return -EPIPE;
	}
	if (evbuffer_get_length(w->out) > 0 && event_add(w->ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

static void progress_writer_cb(evutil_socket_t fd, short what, void *arg)
{
	progress_writer_push(arg);
}

int progress_writer_create(struct event_base *base, int fd, struct progress_writer **out)
{
	struct progress_writer *w;
	int ret;

	w = calloc(1, sizeof(*w));
	if (!w) {
		ret = -ENOMEM;
		goto out;
	}
	w->fd = fd;
	/* criu and the restored processes must not hold the supervisor's pipe open. */
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		ret = -errno;
		log_err("progress fd %d: %s", fd, strerror(-ret));
		goto out;
	}
	ret = fd_set_nonblock(fd);
	if (ret < 0) {
		log_err("progress fd %d: cannot make it non-blocking: %s", fd, strerror(-ret));
		goto out;
	}
	w->out = evbuffer_new();
	w->ev = event_new(base, fd, EV_WRITE, progress_writer_cb, w);
	if (!w->out || !w->ev) {
		ret = -ENOMEM;
		goto out;
	}
	*out = w;
	return 0;
out:
	if (w) {
		/* The fd is the caller's again when we fail. */
		w->fd = -1;
		progress_writer_free(w);
	}
	return ret;
}

int progress_writer_send(struct progress_writer *w, const struct progress_msg *m)
{
	char line[PROGRESS_LINE_MAX + 1];
	int n;

	if (w->gone)
		return -EPIPE;
	/* A newer counters line comes within the next tick: this one may go. */
	if (!m->has_state && evbuffer_get_length(w->out) > 0) {
		w->dropped++;
		return 0;
	}
	n = progress_encode(m, line, sizeof(line));
	if (n < 0) {
		log_err("progress fd %d: cannot encode a progress line: %s", w->fd, strerror(-n));
		return n;
	}
	if (evbuffer_get_length(w->out) + (size_t)n > PROGRESS_QUEUE_MAX) {
		w->dropped++;
		log_warn("progress fd %d: the supervisor does not read; a state line is lost",
			 w->fd);
		return -ENOSPC;
	}
	if (evbuffer_add(w->out, line, (size_t)n) < 0)
		return -ENOMEM;
	return progress_writer_push(w);
}

int progress_writer_flush(struct progress_writer *w, int timeout_ms)
{
	struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	uint64_t now;
	int ret;

	while (!w->gone && evbuffer_get_length(w->out) > 0) {
		ret = progress_writer_push(w);
		if (ret < 0)
			return ret;
		if (evbuffer_get_length(w->out) == 0)
			break;
		now = now_ns();
		if (now >= end) {
			log_warn("progress fd %d: %zu bytes of progress not taken within %d ms",
				 w->fd, evbuffer_get_length(w->out), timeout_ms);
			return -ETIMEDOUT;
		}
		ret = poll(&pfd, 1, (int)((end - now + 999999) / 1000000));
		if (ret < 0 && errno != EINTR)
			return -errno;
	}
	return w->gone ? -EPIPE : 0;
}

uint64_t progress_writer_dropped(const struct progress_writer *w)
{
	return w->dropped;
}

void progress_writer_free(struct progress_writer *w)
{
	if (!w)
		return;
	if (w->ev)
		event_free(w->ev);
	if (w->out)
		evbuffer_free(w->out);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}
