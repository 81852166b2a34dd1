/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pagesrc: the asynchronous page source the fault engine fetches from.
 *
 * A transport (local pages files, TCP, RDMA READ) implements struct
 * pagesrc_ops; the engine only calls the pagesrc_*() wrappers.  Contract:
 *
 *  - Everything runs on the loop thread of the event_base the source was
 *    created on.  A transport with its own threads hands completions back
 *    to that loop before calling pagesrc_complete().
 *  - submit() either accepts the request (returns 0) and later calls
 *    pagesrc_complete() exactly once for it, or refuses it: -EAGAIN means
 *    "busy, submit again after any completion"; any other negative errno
 *    means the source cannot serve anything any more.  submit() never
 *    completes a request from inside itself (defer, e.g. event_active()).
 *  - Requests may complete in any order.  A completion status is 0 (the
 *    pages are in req->dst), -EAGAIN (transient: the engine may submit the
 *    request again), or another negative errno: these pages cannot be had
 *    and the process that needs them is stopped.
 *  - A source that loses its peer for good calls pagesrc_report_gone()
 *    once, then still completes every accepted request (with an error) and
 *    refuses new ones.
 *  - req->dst lies inside the staging region (staging.h), which outlives
 *    the source: register staging_base()/staging_len() once and use
 *    req->dst_off.  After pagesrc_destroy() returns the source touches no
 *    request and no staging memory and calls no callback.
 *  - verify(), if set, is called with the fetched bytes before they are
 *    installed; non-zero means the data is wrong: it is never installed
 *    and the request counts as failed with -EBADMSG (retried, then fatal).
 *
 * A request never crosses one lazy range of the images (hence one VMA).
 */
#ifndef RDMIG_PAGESRC_H
#define RDMIG_PAGESRC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct pagesrc;
struct pagesrc_req;

enum pagesrc_prio {
	PAGESRC_PRIO_FAULT, /* a thread is blocked on it: serve first */
	PAGESRC_PRIO_DRAIN, /* background prefetch */
};

typedef void (*pagesrc_done_fn)(struct pagesrc_req *req, int status);
typedef void (*pagesrc_gone_fn)(struct pagesrc *src, int err, const char *reason, void *arg);

struct pagesrc_req {
	/* Filled by the submitter; read-only for the source. */
	int32_t pid;	    /* virtual pid of the image the pages belong to */
	uint64_t img_vaddr; /* dump-time address of the first page */
	uint64_t len;	    /* bytes, a multiple of 4096 */
	uint64_t pages_off; /* offset in the images' pages-<id>.img, or IMG_NO_OFFSET */
	void *dst;	    /* where the pages go, inside the staging region */
	uint64_t dst_off;   /* dst - staging_base() */
	enum pagesrc_prio prio;
	uint64_t cookie; /* the submitter's */
	pagesrc_done_fn done;
	/* Set by pagesrc_submit(). */
	struct pagesrc *src;
	/* The source's, while it owns the request (from accept to completion). */
	void *src_priv;
	TAILQ_ENTRY(pagesrc_req) src_link;
};

struct pagesrc_ops {
	const char *name;
	int (*submit)(void *ctx, struct pagesrc_req *req);
	/*
	 * Optional.  0: the source has forgotten req (no completion, no more
	 * writes to req->dst).  -EBUSY: too late, the completion will come.
	 */
	int (*cancel)(void *ctx, struct pagesrc_req *req);
	/*
	 * Optional.  A request outlived the engine's fetch timeout (why says
	 * which): 0 when the source treats it as a lost connection, keeping
	 * every request it holds unanswered and issuing them all again once
	 * it has a new one (it may be paused already); a negative errno when
	 * it cannot, and the engine fails the task.
	 */
	int (*stalled)(void *ctx, const char *why);
	/* Optional.  0 if buf holds the right data for (pid, img_vaddr, len). */
	int (*verify)(void *ctx, int32_t pid, uint64_t img_vaddr, const void *buf, uint64_t len);
	/*
	 * Optional.  Completes what the transport already has, without
	 * waiting; returns how many requests completed or a negative errno.
	 */
	int (*poll)(void *ctx);
	/* Stops all I/O and frees ctx; no callback afterwards. */
	void (*destroy)(void *ctx);
};

/* For implementations: wraps ops and ctx.  Returns NULL on ENOMEM. */
struct pagesrc *pagesrc_new(const struct pagesrc_ops *ops, void *ctx);
/* Destroys the transport (ops->destroy) and the wrapper.  NULL is a no-op. */
void pagesrc_destroy(struct pagesrc *src);

const char *pagesrc_name(const struct pagesrc *src);
/* The engine's handler for pagesrc_report_gone(). */
void pagesrc_set_gone_handler(struct pagesrc *src, pagesrc_gone_fn fn, void *arg);

/* Engine side. */
int pagesrc_submit(struct pagesrc *src, struct pagesrc_req *req);
/* Returns -ENOTSUP when the source cannot cancel. */
int pagesrc_cancel(struct pagesrc_req *req);
int pagesrc_verify(const struct pagesrc_req *req, const void *buf, uint64_t len);
/* ops->stalled, or -EOPNOTSUPP when the source has none or is gone. */
int pagesrc_stalled(struct pagesrc *src, const char *why);
bool pagesrc_is_gone(const struct pagesrc *src);
/* ops->poll, or -EOPNOTSUPP when the source has none. */
int pagesrc_poll(struct pagesrc *src);

/* Transport side. */
void pagesrc_complete(struct pagesrc_req *req, int status);
/* err is a negative errno; reason is copied. */
void pagesrc_report_gone(struct pagesrc *src, int err, const char *reason);

#endif
