// SPDX-License-Identifier: GPL-2.0-or-later
#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_current = LOG_LVL_INFO;
static const char *log_prog = "rdmig";

static const char *const level_names[] = {
    [LOG_LVL_ERR] = "error",
    [LOG_LVL_WARN] = "warn",
    [LOG_LVL_INFO] = "info",
    [LOG_LVL_DEBUG] = "debug",
};

void log_init(const char *prog, enum log_level level)
{
	const char *slash = strrchr(prog, '/');

	log_prog = slash ? slash + 1 : prog;
	log_level_current = level;
}

void log_set_level(enum log_level level)
{
	log_level_current = level;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char line[1024];
	struct timeval tv;
	struct tm tm;
	int n;

	if (!log_enabled(level))
		goto out;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%06ld %s[%d] %s: ", tm.tm_hour, tm.tm_min,
		     tm.tm_sec, (long)tv.tv_usec, log_prog, (int)getpid(), level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		goto out;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	/* One write per message keeps lines from several threads whole. */
	fprintf(stderr, "%s\n", line);
out:
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

static void log_libevent_cb(int severity, const char *msg)
{
	enum log_level level = LOG_LVL_DEBUG;

	if (severity == EVENT_LOG_ERR)
		level = LOG_LVL_ERR;
	else if (severity == EVENT_LOG_WARN)
		level = LOG_LVL_WARN;
	log_msg(level, "libevent: %s", msg);
}

void log_hook_libevent(void)
{
	event_set_log_callback(log_libevent_cb);
}
