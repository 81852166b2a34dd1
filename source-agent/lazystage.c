// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * lazystage: a lazy dump's pages staged from CRIU's page server (see
 * lazystage.h).
 */
#include "lazystage.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "ctrl.h"
#include "log.h"
#include "msgauth.h"

/* Units read from a stopped tree in one pass of the loop (1 MiB). */
#define LAZYSTAGE_PROC_BATCH 4u

struct lazystage_task {
	int32_t pid;
	pid_t host;   /* from a stopped tree: its pid here */
	size_t first; /* its units: [first, first + n) */
	size_t n;
};

struct lazystage {
	struct criupsrv *ps;
	/*
	 * From a stopped tree instead (lazystage_open_proc()): units read on
	 * proc_ev's passes, the wanted ones (wantq) first.
	 */
	struct event *proc_ev;
	size_t *wantq;
	size_t want_head, want_tail;
	const struct lazystage_ops *ops;
	void *arg;
	struct lazystage_unit *units;
	size_t nr_units;
	struct lazystage_task *tasks;
	size_t nr_tasks;
	uint8_t *area;
	size_t area_len;
	bool area_lent; /* the caller's (lazystage_open()): not unmapped here */
	/* With a page key: every unit's page tags, LAZYSTAGE_UNIT_PAGES a unit. */
	struct msgauth_pages pages;
	uint64_t *tags;
	size_t next;	 /* the background pull's next unit */
	size_t bg_asked; /* background units asked for, not staged yet */
	size_t staged;
	bool closing, dead;
};

static void ls_unit_done(struct criupsrv_req *r, int status, void *arg);

uint64_t lazystage_area_len(const struct img_set *set)
{
	uint64_t len = 0;
	size_t i, j;

	for (i = 0; i < set->nr_tasks; i++)
		for (j = 0; j < set->tasks[i].nr_lazy; j++)
			len += set->tasks[i].lazy[j].len;
	return len;
}

/*
 * Cuts every lazy range of set into units; lays them out in the area,
 * area if not NULL (lazystage_area_len() bytes), else one mapped here.
 */
static int ls_build(struct lazystage *ls, const struct img_set *set, void *area_in)
{
	const struct img_task *t;
	struct lazystage_unit *u;
	uint64_t off, len, area = 0;
	size_t i, j, n = 0;

	for (i = 0; i < set->nr_tasks; i++)
		for (j = 0; j < set->tasks[i].nr_lazy; j++)
			n += (set->tasks[i].lazy[j].len + LAZYSTAGE_UNIT - 1) / LAZYSTAGE_UNIT;
	ls->units = calloc(n ? n : 1, sizeof(*ls->units));
	ls->tasks = calloc(set->nr_tasks ? set->nr_tasks : 1, sizeof(*ls->tasks));
	if (!ls->units || !ls->tasks)
		return -ENOMEM;
	for (i = 0; i < set->nr_tasks; i++) {
		t = &set->tasks[i];
		ls->tasks[i].pid = t->pid;
		ls->tasks[i].first = ls->nr_units;
		for (j = 0; j < t->nr_lazy; j++) {
			for (off = 0; off < t->lazy[j].len; off += len) {
				len = t->lazy[j].len - off;
				if (len > LAZYSTAGE_UNIT)
					len = LAZYSTAGE_UNIT;
				u = &ls->units[ls->nr_units++];
				u->pid = t->pid;
				u->img_vaddr = t->lazy[j].vaddr + off;
				u->len = len;
				u->area_off = area;
				u->req.vpid = (uint32_t)t->pid;
				u->req.vaddr = u->img_vaddr;
				u->req.nr_pages = len / IMG_PAGE_SIZE;
				u->req.done = ls_unit_done;
				u->req.arg = ls;
				area += len;
			}
		}
		ls->tasks[i].n = ls->nr_units - ls->tasks[i].first;
	}
	ls->nr_tasks = set->nr_tasks;
	if (!area)
		return 0;
	if (area_in) {
		ls->area = area_in;
		ls->area_lent = true;
	} else {
		/* Touched only as replies land: a lazy set's worth of RSS at most. */
		ls->area =
		    mmap(NULL, area, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	if (ls->area == MAP_FAILED) {
		ls->area = NULL;
		log_err("lazy dump: cannot map a %" PRIu64 "-byte staging area: %s", area,
			strerror(errno));
		return -ENOMEM;
	}
	ls->area_len = area;
	for (i = 0; i < ls->nr_units; i++)
		ls->units[i].req.buf = ls->area + ls->units[i].area_off;
	return 0;
}

static int ls_ask(struct lazystage *ls, struct lazystage_unit *u)
{
	int ret = criupsrv_get(ls->ps, &u->req);

	if (ret < 0) {
		log_err("lazy dump: cannot ask for %" PRIu64 " bytes at %#" PRIx64 " of pid %d: %s",
			u->len, u->img_vaddr, u->pid, strerror(-ret));
		return ret;
	}
	u->state = LAZYSTAGE_ASKED;
	return 0;
}

/* Keeps LAZYSTAGE_WINDOW background units asked for. */
static void ls_pump(struct lazystage *ls)
{
	struct lazystage_unit *u;

	if (ls->proc_ev)
		return;
	while (!ls->dead && !ls->closing && ls->bg_asked < LAZYSTAGE_WINDOW &&
	       ls->next < ls->nr_units) {
		u = &ls->units[ls->next++];
		if (u->state != LAZYSTAGE_NOT_ASKED)
			continue;
		if (ls_ask(ls, u) < 0)
			return;
		ls->bg_asked++;
	}
}

/* The page tags of u's pages (FEAT_VERIFY_PAGES), now that they are in. */
static int ls_tag_unit(struct lazystage *ls, struct lazystage_unit *u)
{
	uint64_t p;
	int ret;

	for (p = 0; p < u->len / IMG_PAGE_SIZE; p++) {
		ret = msgauth_page_tag(&ls->pages, ls->area + u->area_off + p * IMG_PAGE_SIZE,
				       IMG_PAGE_SIZE, &u->tags[p]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/*
 * u's bytes are in the area: its tags and XXH3, staged, reported.  False
 * when the stage failed on it (reported too).
 */
static bool ls_unit_in(struct lazystage *ls, struct lazystage_unit *u)
{
	if (u->tags && ls_tag_unit(ls, u) < 0) {
		ls->dead = true;
		log_err("lazy dump: cannot compute the page tags of pid %d at %#" PRIx64, u->pid,
			u->img_vaddr);
		ls->ops->failed(ls, -EIO, ls->arg);
		return false;
	}
	u->csum = XXH3_64bits(ls->area + u->area_off, u->len);
	u->state = LAZYSTAGE_STAGED;
	ls->staged++;
	ls->ops->staged(ls, u, ls->arg);
	return true;
}

static void ls_unit_done(struct criupsrv_req *r, int status, void *arg)
{
	struct lazystage_unit *u =
	    (struct lazystage_unit *)((char *)r - offsetof(struct lazystage_unit, req));
	struct lazystage *ls = arg;

	/* A failure is reported once, by the session's failed(). */
	if (status < 0)
		return;
	if (!u->wanted)
		ls->bg_asked--;
	if (ls_unit_in(ls, u))
		ls_pump(ls);
}

static void ls_failed(struct criupsrv *ps, int err, void *arg)
{
	struct lazystage *ls = arg;

	(void)ps;
	ls->dead = true;
	log_err("lazy dump: the page server failed after %zu of %zu units: %s", ls->staged,
		ls->nr_units, strerror(-err));
	ls->ops->failed(ls, err, ls->arg);
}

static void ls_closed(struct criupsrv *ps, int status, void *arg)
{
	struct lazystage *ls = arg;

	(void)ps;
	ls->dead = true;
	ls->ops->closed(ls, status, ls->arg);
}

static const struct criupsrv_ops ls_psrv_ops = {.failed = ls_failed, .closed = ls_closed};

/* Page tags for every unit, keyed with page_key. */
static int ls_init_tags(struct lazystage *ls, const uint8_t *page_key)
{
	size_t i;
	int ret;

	ret = msgauth_pages_init(&ls->pages, page_key);
	if (ret < 0)
		return ret;
	ls->tags =
	    calloc(ls->nr_units ? ls->nr_units * LAZYSTAGE_UNIT_PAGES : 1, sizeof(*ls->tags));
	if (!ls->tags)
		return -ENOMEM;
	for (i = 0; i < ls->nr_units; i++)
		ls->units[i].tags = ls->tags + i * LAZYSTAGE_UNIT_PAGES;
	return 0;
}

static int ls_new(const struct img_set *set, void *area, const uint8_t *page_key,
		  const struct lazystage_ops *ops, void *arg, struct lazystage **out)
{
	struct lazystage *ls;
	int ret;

	*out = NULL;
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ls->ops = ops;
	ls->arg = arg;
	ret = ls_build(ls, set, area);
	if (ret == 0 && page_key)
		ret = ls_init_tags(ls, page_key);
	if (ret < 0) {
		lazystage_free(ls);
		return ret;
	}
	*out = ls;
	return 0;
}

static enum criupsrv_wire ls_wire(const struct img_set *set)
{
	return set->pagemap_v42 ? CRIUPSRV_WIRE_42 : CRIUPSRV_WIRE_317;
}

int lazystage_open(struct event_base *base, const struct img_set *set, void *area,
		   const uint8_t *page_key, const char *host, const char *port,
		   const struct lazystage_ops *ops, void *arg, struct lazystage **out)
{
	struct lazystage *ls;
	int ret;

	ret = ls_new(set, area, page_key, ops, arg, &ls);
	if (ret < 0)
		return ret;
	ret = criupsrv_connect(base, host, port, ls_wire(set), &ls_psrv_ops, ls, &ls->ps);
	if (ret < 0) {
		lazystage_free(ls);
		return ret;
	}
	ls_pump(ls);
	*out = ls;
	return 0;
}

int lazystage_open_fd(struct event_base *base, const struct img_set *set, void *area,
		      const uint8_t *page_key, int fd, const struct lazystage_ops *ops, void *arg,
		      struct lazystage **out)
{
	struct lazystage *ls;
	int ret;

	*out = NULL;
	ret = ls_new(set, area, page_key, ops, arg, &ls);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	ret = criupsrv_open_fd(base, fd, ls_wire(set), "lazy dump", &ls_psrv_ops, ls, &ls->ps);
	if (ret < 0) {
		lazystage_free(ls);
		return ret;
	}
	ls_pump(ls);
	*out = ls;
	return 0;
}

/* The task unit i belongs to. */
static const struct lazystage_task *ls_task_of(const struct lazystage *ls, size_t i)
{
	size_t k;

	for (k = 0; k < ls->nr_tasks; k++)
		if (i >= ls->tasks[k].first && i - ls->tasks[k].first < ls->tasks[k].n)
			return &ls->tasks[k];
	return NULL;
}

/* Copies unit i's pages out of its stopped task into the area. */
static int ls_proc_read(struct lazystage *ls, size_t i)
{
	const struct lazystage_task *t = ls_task_of(ls, i);
	struct lazystage_unit *u = &ls->units[i];
	struct iovec local = {.iov_base = ls->area + u->area_off, .iov_len = u->len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)u->img_vaddr, .iov_len = u->len};
	ssize_t n;
	int ret;

	if (!t || t->host <= 0)
		return -ESRCH;
	n = process_vm_readv(t->host, &local, 1, &remote, 1, 0);
	if (n == (ssize_t)u->len)
		return 0;
	/* Short: a page of the range is not mapped there any more. */
	ret = n < 0 ? -errno : -EFAULT;
	log_err("lazy dump: cannot read %" PRIu64 " bytes at %#" PRIx64
		" of the stopped process %d (pid %d in its images): %s",
		u->len, u->img_vaddr, (int)t->host, u->pid, strerror(-ret));
	return ret;
}

/* The next unit to read: one a destination waits for, else the next in order. */
static bool ls_proc_next(struct lazystage *ls, size_t *i)
{
	if (ls->want_head < ls->want_tail) {
		*i = ls->wantq[ls->want_head++];
		return true;
	}
	while (ls->next < ls->nr_units && ls->units[ls->next].state != LAZYSTAGE_NOT_ASKED)
		ls->next++;
	if (ls->next == ls->nr_units)
		return false;
	*i = ls->next++;
	return true;
}

/*
 * One pass: a few units read and reported; another pass is queued while
 * any is left, so the loop serves other events between them.
 */
static void ls_proc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lazystage *ls = arg;
	unsigned int k;
	size_t i;
	int ret;

	(void)fd;
	(void)what;
	for (k = 0; k < LAZYSTAGE_PROC_BATCH && !ls->dead && !ls->closing; k++) {
		if (!ls_proc_next(ls, &i))
			break;
		ret = ls_proc_read(ls, i);
		if (ret < 0) {
			ls->dead = true;
			ls->ops->failed(ls, ret, ls->arg);
			return;
		}
		if (!ls_unit_in(ls, &ls->units[i]))
			return;
	}
	if (ls->dead)
		return;
	if (ls->closing) {
		ls->dead = true;
		ls->ops->closed(ls, 0, ls->arg);
		return;
	}
	if (ls->staged < ls->nr_units)
		event_active(ls->proc_ev, EV_TIMEOUT, 0);
}

int lazystage_open_proc(struct event_base *base, const struct img_set *set, void *area,
			const uint8_t *page_key, const pid_t *host_pids,
			const struct lazystage_ops *ops, void *arg, struct lazystage **out)
{
	struct lazystage *ls;
	size_t i;
	int ret;

	ret = ls_new(set, area, page_key, ops, arg, &ls);
	if (ret < 0)
		return ret;
	for (i = 0; i < ls->nr_tasks; i++)
		ls->tasks[i].host = host_pids[i];
	ls->wantq = calloc(ls->nr_units ? ls->nr_units : 1, sizeof(*ls->wantq));
	ls->proc_ev = event_new(base, -1, 0, ls_proc_cb, ls);
	if (!ls->wantq || !ls->proc_ev) {
		lazystage_free(ls);
		return -ENOMEM;
	}
	event_active(ls->proc_ev, EV_TIMEOUT, 0);
	*out = ls;
	return 0;
}

void lazystage_area(const struct lazystage *ls, void **base, size_t *len)
{
	*base = ls->area;
	*len = ls->area_len;
}

const struct lazystage_unit *lazystage_units(const struct lazystage *ls, size_t *n)
{
	*n = ls->nr_units;
	return ls->units;
}

/* The unit of pid holding img_vaddr, or NULL. */
static struct lazystage_unit *ls_find_in(const struct lazystage *ls, int32_t pid,
					 uint64_t img_vaddr)
{
	const struct lazystage_task *t = NULL;
	size_t i, lo, hi, mid;
	struct lazystage_unit *u;

	for (i = 0; i < ls->nr_tasks && !t; i++)
		if (ls->tasks[i].pid == pid)
			t = &ls->tasks[i];
	if (!t)
		return NULL;
	lo = t->first;
	hi = t->first + t->n;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		u = &ls->units[mid];
		if (img_vaddr >= u->img_vaddr && img_vaddr - u->img_vaddr < u->len)
			return u;
		if (u->img_vaddr < img_vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct lazystage_unit *ls_find(const struct lazystage *ls, int32_t pid, uint64_t img_vaddr)
{
	struct lazystage_unit *u = ls_find_in(ls, pid, img_vaddr);

	return u && u->img_vaddr == img_vaddr ? u : NULL;
}

int lazystage_locate(const struct lazystage *ls, int32_t pid, uint64_t img_vaddr, uint64_t len,
		     const void **data)
{
	const struct lazystage_unit *u = ls_find_in(ls, pid, img_vaddr);

	if (!u || len == 0 || len > u->len - (img_vaddr - u->img_vaddr))
		return -ERANGE;
	if (!data)
		return 0;
	if (u->state != LAZYSTAGE_STAGED)
		return -EAGAIN;
	*data = ls->area + u->area_off + (img_vaddr - u->img_vaddr);
	return 0;
}

int lazystage_digest(const struct lazystage *ls, uint64_t *digest)
{
	uint64_t d = 0;
	size_t i;

	for (i = 0; i < ls->nr_units; i++) {
		if (ls->units[i].state != LAZYSTAGE_STAGED)
			return -EAGAIN;
		d = ctrl_digest_add(d, ls->units[i].csum);
	}
	*digest = d;
	return 0;
}

const struct lazystage_unit *lazystage_find(const struct lazystage *ls, int32_t pid,
					    uint64_t img_vaddr)
{
	return ls_find(ls, pid, img_vaddr);
}

int lazystage_want(struct lazystage *ls, int32_t pid, uint64_t img_vaddr)
{
	struct lazystage_unit *u = ls_find(ls, pid, img_vaddr);
	int ret;

	if (!u)
		return -ENOENT;
	if (ls->dead || ls->closing)
		return -ESHUTDOWN;
	if (u->state == LAZYSTAGE_STAGED)
		return 0;
	if (ls->proc_ev) {
		if (u->state == LAZYSTAGE_NOT_ASKED) {
			u->state = LAZYSTAGE_ASKED;
			u->wanted = true;
			ls->wantq[ls->want_tail++] = (size_t)(u - ls->units);
			event_active(ls->proc_ev, EV_TIMEOUT, 0);
		}
		return 0;
	}
	if (u->state == LAZYSTAGE_NOT_ASKED) {
		ret = ls_ask(ls, u);
		if (ret < 0)
			return ret;
		u->wanted = true;
	}
	ret = criupsrv_prioritize(ls->ps, &u->req);
	/* Already on the wire: it comes first anyway. */
	return ret == -EALREADY ? 0 : ret;
}

size_t lazystage_staged(const struct lazystage *ls)
{
	return ls->staged;
}

int lazystage_close(struct lazystage *ls)
{
	if (ls->dead || ls->closing)
		return -ESHUTDOWN;
	ls->closing = true;
	if (ls->proc_ev) {
		event_active(ls->proc_ev, EV_TIMEOUT, 0);
		return 0;
	}
	return criupsrv_close(ls->ps);
}

void lazystage_free(struct lazystage *ls)
{
	if (!ls)
		return;
	criupsrv_free(ls->ps);
	if (ls->proc_ev)
		event_free(ls->proc_ev);
	free(ls->wantq);
	if (ls->area && !ls->area_lent)
		munmap(ls->area, ls->area_len);
	free(ls->units);
	free(ls->tasks);
	free(ls->tags);
	msgauth_pages_free(&ls->pages);
	free(ls);
}
