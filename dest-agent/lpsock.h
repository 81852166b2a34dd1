/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lpsock: CRIU's lazy-pages socket, the daemon side.
 *
 * `criu restore --lazy-pages` connects once to <work-dir>/lazy-pages.socket
 * and writes, never reading anything back:
 *  - per restored process: its virtual pid (a native int), then a 1-byte
 *    message carrying the process's userfaultfd (SCM_RIGHTS);
 *  - per zombie: minus its pid, no fd;
 *  - at the end: the u32 0x52535446 (FIN, "restore finished").
 * The number of records is not known in advance; they are parsed as they
 * arrive (split anywhere), in the event loop, without blocking, while
 * faults of earlier processes are already being served.  A hang-up before
 * FIN means the restore failed; after FIN it is the normal end.
 *
 * Records are checked: the pid must be in the images (when given) with
 * memory, at most once, and the fd must be a userfaultfd.  The sending
 * process's real pid comes from SCM_CREDENTIALS (SO_PASSCRED): CRIU sends
 * each record from the restored process itself.
 *
 * Lifetime: lpsock_free() closes everything.  It may be called from the
 * error callback (the lpsock is not touched after it returns), not from
 * the other callbacks.
 */
#ifndef RDMIG_LPSOCK_H
#define RDMIG_LPSOCK_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

#define LPSOCK_NAME "lazy-pages.socket"
#define LPSOCK_FIN  0x52535446u

struct lpsock;

struct lpsock_ops {
	/*
	 * A process's userfaultfd; the callee owns uffd from now on.  sender:
	 * the real pid of the process that sent it, 0 if unknown.  Return 0,
	 * or a negative errno to reject it (then treated as garbage).
	 */
	int (*task)(void *arg, int32_t pid, int uffd, pid_t sender);
	void (*zombie)(void *arg, int32_t pid);
	void (*finished)(void *arg);
	/*
	 * The stream is broken or garbage; the connection is closed after this
	 * returns.  err is a negative errno, reason a message for the log.
	 */
	void (*error)(void *arg, int err, const char *reason);
};

/*
 * Creates <work_dir>/lazy-pages.socket (a stale socket of this agent's
 * user is unlinked first; any other file by that name is -EEXIST, never
 * removed) and listens on it.  Only a client of root or the agent's euid
 * (SO_PEERCRED) is accepted; others are closed and the socket waits on.  Needs no event loop, so it
 * can run before the process daemonizes.  Returns 0 and *out, or a negative errno.
 */
int lpsock_listen(const char *work_dir, struct lpsock **out);
/*
 * Accepts exactly one client on base and parses it, calling ops with arg.
 * imgs (may be NULL: no pid check) is borrowed and must outlive the lpsock.
 */
int lpsock_start(struct lpsock *ls, struct event_base *base, const struct img_set *imgs,
		 const struct lpsock_ops *ops, void *arg);
/* For tests: parses the already connected stream fd (taken over) right away. */
int lpsock_attach(struct event_base *base, int fd, const struct img_set *imgs,
		  const struct lpsock_ops *ops, void *arg, struct lpsock **out);
void lpsock_free(struct lpsock *ls);
/*
 * 0 when the peer of the connected socket fd is root or this process's
 * euid, -EPERM otherwise (getsockopt's error if it fails); *uid: its uid.
 */
int lpsock_peer_check(int fd, uid_t *uid);

/* The socket's path, for messages. */
const char *lpsock_path(const struct lpsock *ls);
bool lpsock_finished(const struct lpsock *ls);
/* Processes (with a userfaultfd) and zombies received so far. */
uint32_t lpsock_nr_tasks(const struct lpsock *ls);
uint32_t lpsock_nr_zombies(const struct lpsock *ls);

#endif
