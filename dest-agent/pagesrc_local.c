// SPDX-License-Identifier: GPL-2.0-or-later
#include "pagesrc_local.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct local_src;

/* One accepted request; lives from submit to completion. */
struct local_req {
	struct local_src *ls;
	struct pagesrc_req *req;
	uint64_t nth;
	struct event *timer; /* with an injected delay only */
	TAILQ_ENTRY(local_req) link;
};

TAILQ_HEAD(local_req_list, local_req);

struct local_src {
	struct event_base *base;
	const struct img_set *imgs;
	struct pagesrc_local_inject inj;
	struct pagesrc *src;
	int *fds; /* per task of imgs, -1 until opened */
	uint64_t nr_submitted;
	bool gone;
	/*
	 * One read per loop iteration, fault requests first: a fault never
	 * waits behind more than one background read, and uffd events are
	 * polled between reads.
	 */
	struct event *work_ev;
	struct local_req_list waiting; /* delayed, or hung by injection */
	struct local_req_list ready_fault;
	struct local_req_list ready_drain;
};

static int local_parse_count(const char *val, uint64_t *out)
{
	return parse_uint(val, 1, UINT64_MAX, out);
}

int pagesrc_local_parse_inject(const char *spec, struct pagesrc_local_inject *inj)
{
	char *copy, *tok, *save = NULL;
	uint64_t v;
	int ret = 0;

	memset(inj, 0, sizeof(*inj));
	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && ret == 0; tok = strtok_r(NULL, ",", &save)) {
		char *val = strchr(tok, '=');

		if (val)
			*val++ = '\0';
		if (strcmp(tok, "verify") == 0 && !val) {
			inj->verify = 1;
		} else if (!val) {
			ret = -EINVAL;
		} else if (strcmp(tok, "delay") == 0) {
			ret = parse_uint(val, 0, 60000000, &v);
			inj->delay_us = (uint32_t)v;
		} else if (strcmp(tok, "fail-after") == 0) {
			ret = local_parse_count(val, &inj->fail_after);
		} else if (strcmp(tok, "gone-after") == 0) {
			ret = local_parse_count(val, &inj->gone_after);
		} else if (strcmp(tok, "hang-after") == 0) {
			ret = local_parse_count(val, &inj->hang_after);
		} else if (strcmp(tok, "corrupt-after") == 0) {
			ret = local_parse_count(val, &inj->corrupt_after);
		} else {
			ret = -EINVAL;
		}
		if (ret < 0)
			log_err("local source: bad fault injection '%s%s%s' in '%s'", tok,
				val ? "=" : "", val ? val : "", spec);
	}
	free(copy);
	return ret < 0 ? -EINVAL : 0;
}

static int local_fd(struct local_src *ls, int32_t pid, int *fd)
{
	char path[PATH_MAX];
	const struct img_task *t = image_set_task(ls->imgs, pid);
	size_t idx;
	int ret;

	if (!t || !t->has_memory) {
		log_err("local source: no memory image for pid %" PRId32, pid);
		return -ESRCH;
	}
	idx = (size_t)(t - ls->imgs->tasks);
	if (ls->fds[idx] >= 0) {
		*fd = ls->fds[idx];
		return 0;
	}
	ret = image_pages_path(ls->imgs, t, path, sizeof(path));
	if (ret < 0)
		return ret;
	ls->fds[idx] = open(path, O_RDONLY | O_CLOEXEC);
	if (ls->fds[idx] < 0) {
		ret = -errno;
		log_err("local source: open %s: %s", path, strerror(-ret));
		return ret;
	}
	*fd = ls->fds[idx];
	return 0;
}

static int local_read(struct local_src *ls, const struct pagesrc_req *req, void *buf)
{
	uint64_t done = 0;
	int fd, ret;

	if (req->pages_off == IMG_NO_OFFSET) {
		log_err("local source: pid %" PRId32 " %#" PRIx64 ": no data in the local pages "
			"file (images dumped with --lazy-pages?)",
			req->pid, req->img_vaddr);
		return -ENODATA;
	}
	ret = local_fd(ls, req->pid, &fd);
	if (ret < 0)
		return ret;
	while (done < req->len) {
		ssize_t n =
		    pread(fd, (char *)buf + done, req->len - done, (off_t)(req->pages_off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			log_err("local source: pid %" PRId32 " read %" PRIu64 " bytes at offset "
				"%" PRIu64 ": %s",
				req->pid, req->len, req->pages_off + done,
				n < 0 ? strerror(-ret) : "short file");
			return ret;
		}
		done += (uint64_t)n;
	}
	return 0;
}

static struct local_req_list *local_ready_list(struct local_src *ls, const struct local_req *lr)
{
	return lr->req->prio == PAGESRC_PRIO_FAULT ? &ls->ready_fault : &ls->ready_drain;
}

static void local_req_free(struct local_req *lr)
{
	if (lr->timer)
		event_free(lr->timer);
	free(lr);
}

/* Finds and unlinks the wrapper of req, or NULL. */
static struct local_req *local_unlink(struct local_src *ls, const struct pagesrc_req *req)
{
	struct local_req_list *lists[] = {&ls->waiting, &ls->ready_fault, &ls->ready_drain};
	struct local_req *lr;

	for (size_t i = 0; i < 3; i++) {
		TAILQ_FOREACH(lr, lists[i], link)
		{
			if (lr->req == req) {
				TAILQ_REMOVE(lists[i], lr, link);
				return lr;
			}
		}
	}
	return NULL;
}

static void local_gone_all(struct local_src *ls)
{
	struct local_req_list *lists[] = {&ls->waiting, &ls->ready_fault, &ls->ready_drain};
	struct local_req *lr;

	ls->gone = true;
	pagesrc_report_gone(ls->src, -ECONNRESET, "injected: source gone");
	for (size_t i = 0; i < 3; i++) {
		while ((lr = TAILQ_FIRST(lists[i]))) {
			struct pagesrc_req *req = lr->req;

			TAILQ_REMOVE(lists[i], lr, link);
			local_req_free(lr);
			pagesrc_complete(req, -ECONNRESET);
		}
	}
}

static void local_work_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local_src *ls = arg;
	struct local_req_list *list =
	    TAILQ_EMPTY(&ls->ready_fault) ? &ls->ready_drain : &ls->ready_fault;
	struct local_req *lr = TAILQ_FIRST(list);
	struct pagesrc_req *req;
	int status;

	if (!lr)
		return;
	TAILQ_REMOVE(list, lr, link);
	req = lr->req;
	if (ls->inj.gone_after && lr->nth > ls->inj.gone_after) {
		/* Back in line: going away completes every request, this one too. */
		TAILQ_INSERT_HEAD(list, lr, link);
		local_gone_all(ls);
		return;
	}
	if (ls->inj.fail_after && lr->nth > ls->inj.fail_after) {
		log_debug("local source: injected failure of request %" PRIu64, lr->nth);
		status = -EIO;
	} else {
		status = local_read(ls, req, req->dst);
		if (status == 0 && ls->inj.corrupt_after && lr->nth > ls->inj.corrupt_after)
			((volatile uint8_t *)req->dst)[req->len / 2] ^= 0x5a;
	}
	local_req_free(lr);
	if (!TAILQ_EMPTY(&ls->ready_fault) || !TAILQ_EMPTY(&ls->ready_drain))
		event_active(ls->work_ev, EV_TIMEOUT, 0);
	pagesrc_complete(req, status);
}

static void local_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local_req *lr = arg;
	struct local_src *ls = lr->ls;

	TAILQ_REMOVE(&ls->waiting, lr, link);
	TAILQ_INSERT_TAIL(local_ready_list(ls, lr), lr, link);
	event_active(ls->work_ev, EV_TIMEOUT, 0);
}

static int local_submit(void *ctx, struct pagesrc_req *req)
{
	struct local_src *ls = ctx;
	struct local_req *lr;

	if (ls->gone)
		return -ECONNRESET;
	lr = calloc(1, sizeof(*lr));
	if (!lr)
		return -EAGAIN;
	lr->ls = ls;
	lr->req = req;
	lr->nth = ++ls->nr_submitted;
	if (ls->inj.hang_after && lr->nth > ls->inj.hang_after) {
		log_debug("local source: request %" PRIu64 " will never complete (injected)",
			  lr->nth);
		TAILQ_INSERT_TAIL(&ls->waiting, lr, link);
		return 0;
	}
	if (ls->inj.delay_us) {
		struct timeval tv = {
		    .tv_sec = ls->inj.delay_us / 1000000,
		    .tv_usec = ls->inj.delay_us % 1000000,
		};

		lr->timer = evtimer_new(ls->base, local_delay_cb, lr);
		if (!lr->timer || evtimer_add(lr->timer, &tv) < 0) {
			local_req_free(lr);
			return -EAGAIN;
		}
		TAILQ_INSERT_TAIL(&ls->waiting, lr, link);
		return 0;
	}
	TAILQ_INSERT_TAIL(local_ready_list(ls, lr), lr, link);
	/* Deferred: a completion never runs inside submit. */
	event_active(ls->work_ev, EV_TIMEOUT, 0);
	return 0;
}

static int local_cancel(void *ctx, struct pagesrc_req *req)
{
	struct local_req *lr = local_unlink(ctx, req);

	if (!lr)
		return -ENOENT;
	local_req_free(lr);
	return 0;
}

static int local_verify(void *ctx, int32_t pid, uint64_t img_vaddr, const void *buf, uint64_t len)
{
	struct local_src *ls = ctx;
	const struct img_task *t = image_set_task(ls->imgs, pid);
	struct pagesrc_req probe = {.pid = pid, .img_vaddr = img_vaddr, .len = len};
	void *copy;
	int ret;

	if (!ls->inj.verify)
		return 0;
	if (!t)
		return -ESRCH;
	/* Find the pages file offset again from the image: verify gets no request. */
	probe.pages_off = IMG_NO_OFFSET;
	for (size_t i = 0; i < t->nr_lazy; i++) {
		const struct img_lazy_range *r = &t->lazy[i];

		if (img_vaddr >= r->vaddr && img_vaddr + len <= r->vaddr + r->len &&
		    r->pages_off != IMG_NO_OFFSET)
			probe.pages_off = r->pages_off + (img_vaddr - r->vaddr);
	}
	copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	ret = local_read(ls, &probe, copy);
	if (ret == 0 && memcmp(copy, buf, len) != 0)
		ret = -EBADMSG;
	free(copy);
	return ret;
}

static void local_destroy(void *ctx)
{
	struct local_src *ls = ctx;
	struct local_req_list *lists[] = {&ls->waiting, &ls->ready_fault, &ls->ready_drain};
	struct local_req *lr;

	for (size_t i = 0; i < 3; i++) {
		while ((lr = TAILQ_FIRST(lists[i]))) {
			TAILQ_REMOVE(lists[i], lr, link);
			local_req_free(lr);
		}
	}
	if (ls->work_ev)
		event_free(ls->work_ev);
	for (size_t i = 0; i < ls->imgs->nr_tasks; i++)
		if (ls->fds[i] >= 0)
			close(ls->fds[i]);
	free(ls->fds);
	free(ls);
}

static const struct pagesrc_ops local_ops = {
    .name = "local pages",
    .submit = local_submit,
    .cancel = local_cancel,
    .verify = local_verify,
    .destroy = local_destroy,
};

int pagesrc_local_create(struct event_base *base, const struct img_set *imgs,
			 const struct pagesrc_local_inject *inj, struct pagesrc **out)
{
	struct local_src *ls;

	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ls->fds = malloc((imgs->nr_tasks ? imgs->nr_tasks : 1) * sizeof(*ls->fds));
	if (!ls->fds) {
		free(ls);
		return -ENOMEM;
	}
	for (size_t i = 0; i < imgs->nr_tasks; i++)
		ls->fds[i] = -1;
	ls->base = base;
	ls->imgs = imgs;
	if (inj)
		ls->inj = *inj;
	TAILQ_INIT(&ls->waiting);
	TAILQ_INIT(&ls->ready_fault);
	TAILQ_INIT(&ls->ready_drain);
	ls->work_ev = event_new(base, -1, 0, local_work_cb, ls);
	ls->src = ls->work_ev ? pagesrc_new(&local_ops, ls) : NULL;
	if (!ls->src) {
		local_destroy(ls);
		return -ENOMEM;
	}
	*out = ls->src;
	return 0;
}
