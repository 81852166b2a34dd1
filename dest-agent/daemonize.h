/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * daemonize: how rdmig-dest starts as a daemon, as criu lazy-pages does:
 * the log redirected, the fork whose parent waits for the child's readiness
 * byte, the pid file, and the readiness byte itself (--status-fd, -d).
 * The worker (worker.c) calls them in its order: the socket listens before
 * the fork, readiness is reported once the images are in and the socket is
 * served.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_DEST_DAEMONIZE_H
#define RDMIG_DEST_DAEMONIZE_H

#include <stdbool.h>

/* stderr (the log) to path, appended; never through a symbolic link. */
int dest_redirect_log(const char *path);
/* Writes this process's pid to path (errors logged). */
int dest_write_pidfile(const char *path);
/*
 * Forks; the parent waits until the child says it is ready (socket
 * listening, pidfile written) and exits with its verdict, so a caller
 * that sees `rdmig-dest -d` return 0 can start the restore at once.
 * Returns in the child with *ready_fd (owned) to report on, or < 0.
 */
int dest_daemonize(int *ready_fd);
/* Writes the readiness byte (ok: '\0') to fd and closes it; nothing for fd < 0. */
void dest_report_ready(int fd, bool ok);

#endif
