/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * criupsrv: the client side of CRIU's page-server protocol, for pulling
 * the lazy pages out of a frozen `criu dump --lazy-pages` (the role
 * `criu lazy-pages --page-server` plays for CRIU's own restore).
 *
 * Wire facts (docs/protocol.md, "CRIU's page server"): one TCP connection,
 * served strictly in order by the dump; each request is a header
 * {cmd = PS_IOV_GET (7), nr_pages, vaddr (dump-time), dst_id (raw vpid)},
 * each reply the same header with cmd = PS_IOV_ADD_F | PE_PRESENT << 16,
 * the same vaddr and dst_id, 1 <= nr_pages <= asked, then nr_pages * 4096
 * bytes.  The dump may shorten a reply to the end of the pipe buffer that
 * holds vaddr; the rest is asked for again.  The header is 24 bytes up to
 * CRIU 4.1 and 32 bytes from 4.2 (nr_pages became a u64): the caller picks
 * the wire from the images (img_set.pagemap_v42).  The session ends with
 * PS_IOV_CLOSE (0x1023), answered by an int32 status; the dump then waits
 * for our end of file.
 *
 * The dump must only be asked for pages of PE_LAZY ranges of known pids:
 * anything else makes it fail (ending the session, resuming the source
 * tasks) or hang.  criupsrv does not know the pagemaps; its caller clips
 * requests to them.
 *
 * Event loop: everything runs on the caller's libevent loop, non-blocking.
 * Requests are pipelined (up to CRIUPSRV_MAX_INFLIGHT headers sent ahead);
 * reply bytes are read straight into the request's buffer (the registered
 * staging area: no bounce copy), at most CRIUPSRV_READ_BUDGET bytes per
 * callback so one big reply never holds the loop.
 *
 * Callbacks run from the loop only, never from inside a criupsrv_*()
 * call.  done() may queue requests and call criupsrv_close(), but only
 * failed() and closed() may free the session.
 *
 * Ownership: a request (struct criupsrv_req, embedded in the caller's
 * structure) and its buffer belong to criupsrv from criupsrv_get() until
 * its done() runs, exactly once: with 0 once every page is in the buffer,
 * or with a negative errno when the session failed (the buffer then holds
 * an unknown prefix of the pages: never use it).  criupsrv_free() hands
 * the outstanding requests back without calling done().
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_CRIUPSRV_H
#define RDMIG_SRC_CRIUPSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;
struct criupsrv;

#define CRIUPSRV_PAGE_SIZE 4096u
/* Pages asked for in one PS_IOV_GET; longer requests are split. */
#define CRIUPSRV_MAX_GET_PAGES 1024u
/*
 * PS_IOV_GET headers sent ahead of their replies.  The dump answers in
 * order, so a fault's GET waits behind every reply already asked for: 4
 * (1 MiB of units) keep the dump's page server busy, where 32 cost the
 * restore's first faults 0.1-0.3 s each in the soft-RoCE guests.
 */
#define CRIUPSRV_MAX_INFLIGHT 4u
/* Bytes read per read callback before the loop gets control back. */
#define CRIUPSRV_READ_BUDGET (1u << 20)

enum criupsrv_wire {
	CRIUPSRV_WIRE_317 = 0, /* CRIU <= 4.1: 24-byte header, u32 nr_pages */
	CRIUPSRV_WIRE_42,      /* CRIU >= 4.2: 32-byte header, u64 nr_pages */
};

struct criupsrv_req {
	/* The caller's, constant while the request is criupsrv's. */
	uint32_t vpid;	   /* the task's virtual pid in the images */
	uint64_t vaddr;	   /* dump-time address, page aligned */
	uint64_t nr_pages; /* >= 1 */
	void *buf;	   /* nr_pages * 4096 bytes */
	void (*done)(struct criupsrv_req *r, int status, void *arg);
	void *arg;
	/* criupsrv's. */
	TAILQ_ENTRY(criupsrv_req) link;
	uint64_t received; /* pages in buf */
};

struct criupsrv_ops {
	/*
	 * The session failed (err: -ECONNRESET for an end of file, -EPROTO
	 * for a reply that breaks the protocol, -errno of a socket error).
	 * Called once, after every outstanding request's done(err); the
	 * owner still calls criupsrv_free(), from here or later.  A session
	 * failing after criupsrv_close() reports closed(err) instead.
	 */
	void (*failed)(struct criupsrv *ps, int err, void *arg);
	/* criupsrv_close() finished: status is the dump's int32, or -errno. */
	void (*closed)(struct criupsrv *ps, int status, void *arg);
};

/*
 * Starts a session on fd, a connected (or connecting, non-blocking) stream
 * socket; criupsrv owns fd from the call on, even on failure.  name is
 * copied for log lines.  *out belongs to the caller (criupsrv_free()).
 */
int criupsrv_open_fd(struct event_base *base, int fd, enum criupsrv_wire wire, const char *name,
		     const struct criupsrv_ops *ops, void *arg, struct criupsrv **out);

/*
 * Connects to the dump's page server at host:port; host must be numeric
 * (no name lookup on the loop).  Requests may be queued at once; they are
 * sent once the connection is up.
 */
int criupsrv_connect(struct event_base *base, const char *host, const char *port,
		     enum criupsrv_wire wire, const struct criupsrv_ops *ops, void *arg,
		     struct criupsrv **out);

/*
 * Queues r (vpid, vaddr, nr_pages, buf, done set).  -EINVAL for an empty
 * or unaligned request, -ESHUTDOWN once the session failed or is closing.
 */
int criupsrv_get(struct criupsrv *ps, struct criupsrv_req *r);

/*
 * Moves r ahead of every request whose first GET is not sent yet: a page a
 * destination fault waits for overtakes the background pull.  r must be
 * queued on ps and not yet asked for.  Returns 0, or -EALREADY when its
 * GET already left.
 */
int criupsrv_prioritize(struct criupsrv *ps, struct criupsrv_req *r);

/* Requests queued or in flight (for the caller's flow control). */
size_t criupsrv_pending(const struct criupsrv *ps);

/*
 * Ends the session once every queued request is served: sends
 * PS_IOV_CLOSE, waits for the dump's status, then closes the socket (the
 * dump waits for that end of file) and calls ops->closed().  Further
 * criupsrv_get() calls are refused.
 */
int criupsrv_close(struct criupsrv *ps);

/* Releases ps and its socket; outstanding requests are not completed.  NULL is fine. */
void criupsrv_free(struct criupsrv *ps);

#endif
