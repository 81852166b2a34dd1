// SPDX-License-Identifier: GPL-2.0-or-later
#include "pagesrc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct pagesrc {
	const struct pagesrc_ops *ops;
	void *ctx;
	pagesrc_gone_fn gone_fn;
	void *gone_arg;
	int gone_err; /* 0 while the source works */
};

struct pagesrc *pagesrc_new(const struct pagesrc_ops *ops, void *ctx)
{
	struct pagesrc *src = calloc(1, sizeof(*src));

	if (!src)
		return NULL;
	src->ops = ops;
	src->ctx = ctx;
	return src;
}

void pagesrc_destroy(struct pagesrc *src)
{
	if (!src)
		return;
	if (src->ops->destroy)
		src->ops->destroy(src->ctx);
	free(src);
}

const char *pagesrc_name(const struct pagesrc *src)
{
	return src->ops->name ? src->ops->name : "page source";
}

void pagesrc_set_gone_handler(struct pagesrc *src, pagesrc_gone_fn fn, void *arg)
{
	src->gone_fn = fn;
	src->gone_arg = arg;
}

int pagesrc_submit(struct pagesrc *src, struct pagesrc_req *req)
{
	req->src = src;
	req->src_priv = NULL;
	if (src->gone_err)
		return src->gone_err;
	return src->ops->submit(src->ctx, req);
}

int pagesrc_poll(struct pagesrc *src)
{
	if (!src->ops->poll)
		return -EOPNOTSUPP;
	if (src->gone_err)
		return src->gone_err;
	return src->ops->poll(src->ctx);
}

int pagesrc_cancel(struct pagesrc_req *req)
{
	if (!req->src->ops->cancel)
		return -ENOTSUP;
	return req->src->ops->cancel(req->src->ctx, req);
}

int pagesrc_verify(const struct pagesrc_req *req, const void *buf, uint64_t len)
{
	if (!req->src->ops->verify)
		return 0;
	return req->src->ops->verify(req->src->ctx, req->pid, req->img_vaddr, buf, len);
}

int pagesrc_stalled(struct pagesrc *src, const char *why)
{
	if (!src->ops->stalled || src->gone_err)
		return -EOPNOTSUPP;
	return src->ops->stalled(src->ctx, why);
}

bool pagesrc_is_gone(const struct pagesrc *src)
{
	return src->gone_err != 0;
}

void pagesrc_complete(struct pagesrc_req *req, int status)
{
	req->done(req, status);
}

void pagesrc_report_gone(struct pagesrc *src, int err, const char *reason)
{
	if (src->gone_err)
		return;
	src->gone_err = err < 0 ? err : -ENOTCONN;
	log_err("%s: gone: %s (%s)", pagesrc_name(src), reason, strerror(-src->gone_err));
	if (src->gone_fn)
		src->gone_fn(src, src->gone_err, reason, src->gone_arg);
}
