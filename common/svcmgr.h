/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * svcmgr: the two parts of systemd's protocol the agents use, without
 * libsystemd: an inherited listening socket (socket activation: LISTEN_PID
 * and LISTEN_FDS, the socket at fd 3) and readiness (a datagram to
 * $NOTIFY_SOCKET).  See systemd/ and docs/operations.md.
 */
#ifndef RDMIG_SVCMGR_H
#define RDMIG_SVCMGR_H

/* The first descriptor systemd passes (SD_LISTEN_FDS_START). */
#define SVCMGR_LISTEN_FD 3

/*
 * The listening stream socket passed to this process, made close-on-exec
 * so criu and the workers do not inherit it; the variables are removed so
 * that children do not see them either.  Returns the fd, -ENOENT when none
 * was passed (or it was for another pid), -EINVAL when fd 3 is not a
 * listening stream socket or more than one was passed.
 */
int svcmgr_listen_fd(void);

/*
 * Sends state (e.g. "READY=1", "STOPPING=1") to the service manager.
 * Returns 0, also when there is no $NOTIFY_SOCKET, or a negative errno.
 */
int svcmgr_notify(const char *state);

#endif
