/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * log: the one logging API of rdmig.
 *
 * Every message carries a timestamp, the program name and pid, and its level.
 * Messages below the configured level cost one integer compare: callers on
 * hot paths (per fault, per completion) may log at debug level freely.
 * log_*() preserve errno, so they can be called between a failing call and
 * the code that reads errno.
 */
#ifndef RDMIG_LOG_H
#define RDMIG_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LOG_LVL_ERR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* Part of the parsed configuration: set once at start, read everywhere. */
extern enum log_level log_level_current;

/* prog is kept by pointer: pass a string literal or argv[0]. */
void log_init(const char *prog, enum log_level level);
void log_set_level(enum log_level level);
/* Route libevent's own warnings through this module. */
void log_hook_libevent(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static inline bool log_enabled(enum log_level level)
{
	return level <= log_level_current;
}

#define log_err(...)  log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)                                                                              \
	do {                                                                                       \
		if (log_enabled(LOG_LVL_INFO))                                                     \
			log_msg(LOG_LVL_INFO, __VA_ARGS__);                                        \
	} while (0)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LVL_DEBUG))                                                    \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                       \
	} while (0)

#endif
