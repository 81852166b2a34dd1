// SPDX-License-Identifier: GPL-2.0-or-later
#include "lazyset.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"

#define P LAZY_PAGE_SIZE
/* A remap splits at most four extents (two at the source, two at the destination). */
#define LS_SPARE 4

/* One PE_LAZY range of the image; owns the page state. */
struct lz_range {
	uint64_t img_start;
	uint64_t npages;
	uint64_t pages_off;
	uint64_t nr_pending;
	uint64_t nr_inflight;
	uint64_t *pending;  /* BITMAP_WORDS(npages) words */
	uint64_t *inflight; /* the next BITMAP_WORDS(npages) words of the same block */
};

/* Pages [first, first + npages) of range r, installed from run-time rt_start on. */
struct lz_ext {
	uint64_t rt_start;
	uint64_t npages;
	uint64_t first;
	struct lz_range *r;
};

struct lazyset {
	struct lz_range *ranges; /* sorted by img_start, never reallocated */
	size_t nr_ranges;
	/* The same extents twice: by run-time address and by image address. */
	struct lz_ext **by_rt;
	struct lz_ext **by_img;
	struct lz_ext **scratch;
	size_t nr_ext;
	size_t cap_ext;
	/* Extents for splits, allocated ahead so a split cannot fail half-way. */
	struct lz_ext *spare[LS_SPARE];
	size_t nr_spare;
	uint64_t nr_pending;
	uint64_t nr_inflight;
	uint64_t total;
	uint64_t cursor; /* run-time address where the drain goes on */
};

static uint64_t ext_img_start(const struct lz_ext *e)
{
	return e->r->img_start + e->first * P;
}

static uint64_t ext_rt_end(const struct lz_ext *e)
{
	return e->rt_start + e->npages * P;
}

static uint64_t range_pages_off(const struct lz_range *r, uint64_t idx)
{
	return r->pages_off == IMG_NO_OFFSET ? IMG_NO_OFFSET : r->pages_off + idx * P;
}

static int ls_cmp_rt(const void *a, const void *b)
{
	const struct lz_ext *x = *(struct lz_ext *const *)a, *y = *(struct lz_ext *const *)b;

	return x->rt_start < y->rt_start ? -1 : x->rt_start > y->rt_start;
}

static int ls_cmp_img(const void *a, const void *b)
{
	uint64_t x = ext_img_start(*(struct lz_ext *const *)a);
	uint64_t y = ext_img_start(*(struct lz_ext *const *)b);

	return x < y ? -1 : x > y;
}

/*
 * Structural changes add at most LS_SPARE extents; reserving array room and
 * spare extents first means they cannot fail half-way.
 */
static int ls_reserve(struct lazyset *ls, size_t need)
{
	struct lz_ext **rt, **img, **scratch;
	size_t cap;

	while (ls->nr_spare < LS_SPARE) {
		struct lz_ext *e = malloc(sizeof(*e));

		if (!e)
			return -ENOMEM;
		ls->spare[ls->nr_spare++] = e;
	}
	if (need <= ls->cap_ext)
		return 0;
	cap = ls->cap_ext ? ls->cap_ext : 16;
	while (cap < need)
		cap *= 2;
	rt = realloc(ls->by_rt, cap * sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	ls->by_rt = rt;
	img = realloc(ls->by_img, cap * sizeof(*img));
	if (!img)
		return -ENOMEM;
	ls->by_img = img;
	scratch = realloc(ls->scratch, cap * sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	ls->scratch = scratch;
	ls->cap_ext = cap;
	return 0;
}

static void ls_reindex_img(struct lazyset *ls)
{
	memcpy(ls->by_img, ls->by_rt, ls->nr_ext * sizeof(*ls->by_img));
	qsort(ls->by_img, ls->nr_ext, sizeof(*ls->by_img), ls_cmp_img);
}

/* Index of the first extent that ends after addr (nr_ext if none). */
static size_t ls_lower_bound_rt(const struct lazyset *ls, uint64_t addr)
{
	size_t lo = 0, hi = ls->nr_ext;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ext_rt_end(ls->by_rt[mid]) <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of the extent holding run-time addr, or -1. */
static ptrdiff_t ls_find_rt(const struct lazyset *ls, uint64_t addr)
{
	size_t i = ls_lower_bound_rt(ls, addr);

	if (i < ls->nr_ext && ls->by_rt[i]->rt_start <= addr)
		return (ptrdiff_t)i;
	return -1;
}

static const struct lz_ext *ls_find_img(const struct lazyset *ls, uint64_t img_addr)
{
	size_t lo = 0, hi = ls->nr_ext;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct lz_ext *e = ls->by_img[mid];

		if (ext_img_start(e) + e->npages * P <= img_addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ls->nr_ext && ext_img_start(ls->by_img[lo]) <= img_addr)
		return ls->by_img[lo];
	return NULL;
}

/* Index of the first range that ends after img_addr (nr_ranges if none). */
static size_t ls_lower_bound_range(const struct lazyset *ls, uint64_t img_addr)
{
	size_t lo = 0, hi = ls->nr_ranges;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct lz_range *r = &ls->ranges[mid];

		if (r->img_start + r->npages * P <= img_addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int ls_alloc_ranges(struct lazyset *ls, size_t n)
{
	ls->ranges = calloc(n ? n : 1, sizeof(*ls->ranges));
	if (!ls->ranges)
		return -ENOMEM;
	ls->nr_ranges = n;
	return ls_reserve(ls, n + 4);
}

static int ls_alloc_bitmaps(struct lz_range *r)
{
	size_t words = BITMAP_WORDS(r->npages);

	r->pending = calloc(2 * words, sizeof(uint64_t));
	if (!r->pending)
		return -ENOMEM;
	r->inflight = r->pending + words;
	return 0;
}

int lazyset_create(const struct img_task *task, struct lazyset **out)
{
	struct lazyset *ls;
	int ret;

	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ret = ls_alloc_ranges(ls, task->nr_lazy);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < task->nr_lazy; i++) {
		const struct img_lazy_range *lr = &task->lazy[i];
		struct lz_range *r = &ls->ranges[i];
		struct lz_ext *e;

		if (lr->vaddr % P || lr->len % P || lr->len == 0 ||
		    (i && lr->vaddr < task->lazy[i - 1].vaddr + task->lazy[i - 1].len)) {
			ret = -EINVAL;
			goto out;
		}
		r->img_start = lr->vaddr;
		r->npages = lr->len / P;
		r->pages_off = lr->pages_off;
		ret = ls_alloc_bitmaps(r);
		if (ret < 0)
			goto out;
		bitmap_set_range(r->pending, 0, r->npages);
		r->nr_pending = r->npages;
		ls->nr_pending += r->npages;
		e = calloc(1, sizeof(*e));
		if (!e) {
			ret = -ENOMEM;
			goto out;
		}
		*e = (struct lz_ext){.rt_start = r->img_start, .npages = r->npages, .r = r};
		ls->by_rt[ls->nr_ext++] = e;
	}
	ls->total = ls->nr_pending;
	ls_reindex_img(ls);
	*out = ls;
	ls = NULL;
out:
	lazyset_free(ls);
	return ret;
}

int lazyset_clone(const struct lazyset *parent, struct lazyset **out)
{
	struct lazyset *ls;
	int ret;

	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ret = ls_alloc_ranges(ls, parent->nr_ranges);
	if (ret < 0)
		goto out;
	ret = ls_reserve(ls, parent->nr_ext + LS_SPARE);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < parent->nr_ranges; i++) {
		const struct lz_range *pr = &parent->ranges[i];
		struct lz_range *r = &ls->ranges[i];
		size_t words = BITMAP_WORDS(pr->npages);

		r->img_start = pr->img_start;
		r->npages = pr->npages;
		r->pages_off = pr->pages_off;
		ret = ls_alloc_bitmaps(r);
		if (ret < 0)
			goto out;
		for (size_t w = 0; w < words; w++)
			r->pending[w] = pr->pending[w] | pr->inflight[w];
		r->nr_pending = pr->nr_pending + pr->nr_inflight;
		ls->nr_pending += r->nr_pending;
	}
	for (size_t i = 0; i < parent->nr_ext; i++) {
		const struct lz_ext *pe = parent->by_rt[i];
		struct lz_ext *e = malloc(sizeof(*e));

		if (!e) {
			ret = -ENOMEM;
			goto out;
		}
		*e = *pe;
		e->r = &ls->ranges[pe->r - parent->ranges];
		ls->by_rt[ls->nr_ext++] = e;
	}
	ls->total = parent->total;
	ls->cursor = parent->cursor;
	ls_reindex_img(ls);
	*out = ls;
	ls = NULL;
out:
	lazyset_free(ls);
	return ret;
}

void lazyset_free(struct lazyset *ls)
{
	if (!ls)
		return;
	for (size_t i = 0; i < ls->nr_ext; i++)
		free(ls->by_rt[i]);
	for (size_t i = 0; i < ls->nr_spare; i++)
		free(ls->spare[i]);
	for (size_t i = 0; i < ls->nr_ranges; i++)
		free(ls->ranges[i].pending);
	free(ls->ranges);
	free(ls->by_rt);
	free(ls->by_img);
	free(ls->scratch);
	free(ls);
}

enum lazy_state lazyset_lookup(const struct lazyset *ls, uint64_t rt_addr)
{
	ptrdiff_t i = ls_find_rt(ls, rt_addr & ~(uint64_t)(P - 1));
	const struct lz_ext *e;
	uint64_t idx;

	if (i < 0)
		return LAZY_NONE;
	e = ls->by_rt[i];
	idx = e->first + (rt_addr - e->rt_start) / P;
	if (bitmap_test(e->r->pending, idx))
		return LAZY_PENDING;
	if (bitmap_test(e->r->inflight, idx))
		return LAZY_INFLIGHT;
	return LAZY_NONE;
}

/* Claims pending pages [idx, ...) of extent e, at most max_pages, stopping at the first
 * non-pending. */
static void ls_claim(struct lazyset *ls, const struct lz_ext *e, uint64_t idx, uint64_t max_pages,
		     struct lazy_run *run)
{
	struct lz_range *r = e->r;
	uint64_t end = e->first + e->npages, n;

	if (max_pages && end - idx > max_pages)
		end = idx + max_pages;
	end = bitmap_next_clear(r->pending, idx, end);
	n = end - idx;
	bitmap_clear_range(r->pending, idx, end);
	bitmap_set_range(r->inflight, idx, end);
	r->nr_pending -= n;
	r->nr_inflight += n;
	ls->nr_pending -= n;
	ls->nr_inflight += n;
	*run = (struct lazy_run){
	    .rt_addr = e->rt_start + (idx - e->first) * P,
	    .img_vaddr = r->img_start + idx * P,
	    .len = n * P,
	    .pages_off = range_pages_off(r, idx),
	};
	ls->cursor = run->rt_addr + run->len;
}

int lazyset_claim_fault(struct lazyset *ls, uint64_t rt_addr, uint64_t max_pages,
			struct lazy_run *run)
{
	ptrdiff_t i = ls_find_rt(ls, rt_addr & ~(uint64_t)(P - 1));
	const struct lz_ext *e;
	uint64_t idx;

	if (i < 0)
		return -ENOENT;
	e = ls->by_rt[i];
	idx = e->first + (rt_addr - e->rt_start) / P;
	if (!bitmap_test(e->r->pending, idx))
		return -ENOENT;
	ls_claim(ls, e, idx, max_pages ? max_pages : 1, run);
	return 0;
}

int lazyset_claim_next(struct lazyset *ls, uint64_t max_pages, struct lazy_run *run)
{
	size_t start, n = ls->nr_ext;
	bool mid = true;

	if (ls->nr_pending == 0 || n == 0)
		return -ENOENT;
	start = ls_lower_bound_rt(ls, ls->cursor);
	if (start == n) {
		start = 0;
		mid = false;
	}
	/* k == n revisits the first extent from its beginning: the wrap-around. */
	for (size_t k = 0; k <= n; k++) {
		const struct lz_ext *e = ls->by_rt[(start + k) % n];
		uint64_t from = e->first, end = e->first + e->npages, idx;

		if (e->r->nr_pending == 0)
			continue;
		if (k == 0 && mid && ls->cursor > e->rt_start)
			from += (ls->cursor - e->rt_start) / P;
		idx = bitmap_next_set(e->r->pending, from, end);
		if (idx < end) {
			ls_claim(ls, e, idx, max_pages, run);
			return 0;
		}
	}
	return -ENOENT;
}

int lazyset_first_inflight(const struct lazyset *ls, uint64_t img_vaddr, uint64_t len,
			   struct lazy_run *run)
{
	uint64_t end_addr = img_vaddr + len;

	for (size_t i = ls_lower_bound_range(ls, img_vaddr); i < ls->nr_ranges; i++) {
		const struct lz_range *r = &ls->ranges[i];
		uint64_t i0, i1, idx, stop;
		const struct lz_ext *e;

		if (r->img_start >= end_addr)
			break;
		if (r->nr_inflight == 0)
			continue;
		i0 = img_vaddr > r->img_start ? (img_vaddr - r->img_start) / P : 0;
		i1 = (end_addr - r->img_start + P - 1) / P;
		if (i1 > r->npages)
			i1 = r->npages;
		idx = bitmap_next_set(r->inflight, i0, i1);
		if (idx == i1)
			continue;
		e = ls_find_img(ls, r->img_start + idx * P);
		if (!e)
			return -EUCLEAN; /* an in-flight page without a run-time home */
		stop = e->first + e->npages < i1 ? e->first + e->npages : i1;
		stop = bitmap_next_clear(r->inflight, idx, stop);
		*run = (struct lazy_run){
		    .rt_addr = e->rt_start + (idx - e->first) * P,
		    .img_vaddr = r->img_start + idx * P,
		    .len = (stop - idx) * P,
		    .pages_off = range_pages_off(r, idx),
		};
		return 0;
	}
	return -ENOENT;
}

/* In-flight pages inside [img_vaddr, +len) leave flight: installed, or pending again. */
static uint64_t ls_settle(struct lazyset *ls, uint64_t img_vaddr, uint64_t len,
			  bool back_to_pending)
{
	uint64_t end_addr = img_vaddr + len, total = 0;

	for (size_t i = ls_lower_bound_range(ls, img_vaddr); i < ls->nr_ranges; i++) {
		struct lz_range *r = &ls->ranges[i];
		uint64_t i0, i1, n;

		if (r->img_start >= end_addr)
			break;
		if (r->nr_inflight == 0)
			continue;
		i0 = img_vaddr > r->img_start ? (img_vaddr - r->img_start) / P : 0;
		i1 = (end_addr - r->img_start + P - 1) / P;
		if (i1 > r->npages)
			i1 = r->npages;
		n = bitmap_count_range(r->inflight, i0, i1);
		if (n == 0)
			continue;
		if (back_to_pending) {
			bitmap_or_range(r->pending, r->inflight, i0, i1);
			r->nr_pending += n;
			ls->nr_pending += n;
		}
		bitmap_clear_range(r->inflight, i0, i1);
		r->nr_inflight -= n;
		ls->nr_inflight -= n;
		total += n;
	}
	return total;
}

uint64_t lazyset_complete(struct lazyset *ls, uint64_t img_vaddr, uint64_t len)
{
	return ls_settle(ls, img_vaddr, len, false);
}

uint64_t lazyset_unclaim(struct lazyset *ls, uint64_t img_vaddr, uint64_t len)
{
	return ls_settle(ls, img_vaddr, len, true);
}

/* Splits the extent holding addr so that one starts exactly at addr.  Needs ls_reserve() first. */
static void ls_split_at(struct lazyset *ls, uint64_t addr)
{
	ptrdiff_t i = ls_find_rt(ls, addr);
	struct lz_ext *e, *tail;
	uint64_t head;

	if (i < 0 || ls->by_rt[i]->rt_start == addr)
		return;
	e = ls->by_rt[i];
	tail = ls->spare[--ls->nr_spare];
	head = (addr - e->rt_start) / P;
	*tail = (struct lz_ext){
	    .rt_start = addr,
	    .npages = e->npages - head,
	    .first = e->first + head,
	    .r = e->r,
	};
	e->npages = head;
	memmove(&ls->by_rt[i + 2], &ls->by_rt[i + 1],
		(ls->nr_ext - (size_t)i - 1) * sizeof(*ls->by_rt));
	ls->by_rt[i + 1] = tail;
	ls->nr_ext++;
}

/* Drops the pages of an extent from its range's state and frees it; returns pages dropped. */
static uint64_t ls_drop_ext(struct lazyset *ls, struct lz_ext *e)
{
	struct lz_range *r = e->r;
	uint64_t i0 = e->first, i1 = e->first + e->npages;
	uint64_t np = bitmap_count_range(r->pending, i0, i1);
	uint64_t ni = bitmap_count_range(r->inflight, i0, i1);

	bitmap_clear_range(r->pending, i0, i1);
	bitmap_clear_range(r->inflight, i0, i1);
	r->nr_pending -= np;
	r->nr_inflight -= ni;
	ls->nr_pending -= np;
	ls->nr_inflight -= ni;
	free(e);
	return np + ni;
}

/* Index range [*a, *b) of by_rt covering exactly [addr, addr + len) after splitting. */
static void ls_isolate(struct lazyset *ls, uint64_t addr, uint64_t len, size_t *a, size_t *b)
{
	ls_split_at(ls, addr);
	ls_split_at(ls, addr + len);
	*a = ls_lower_bound_rt(ls, addr);
	*b = ls_lower_bound_rt(ls, addr + len);
}

static uint64_t ls_remove_locked(struct lazyset *ls, uint64_t addr, uint64_t len)
{
	uint64_t dropped = 0;
	size_t a, b;

	ls_isolate(ls, addr, len, &a, &b);
	for (size_t i = a; i < b; i++)
		dropped += ls_drop_ext(ls, ls->by_rt[i]);
	memmove(&ls->by_rt[a], &ls->by_rt[b], (ls->nr_ext - b) * sizeof(*ls->by_rt));
	ls->nr_ext -= b - a;
	return dropped;
}

int lazyset_remove(struct lazyset *ls, uint64_t rt_addr, uint64_t len, uint64_t *dropped)
{
	uint64_t end = rt_addr + len, n = 0;
	int ret = 0;

	/* The kernel reports whole pages; widen anything else rather than keep a partial page. */
	rt_addr &= ~(uint64_t)(P - 1);
	end = (end + P - 1) & ~(uint64_t)(P - 1);
	if (end <= rt_addr)
		goto out;
	ret = ls_reserve(ls, ls->nr_ext + LS_SPARE);
	if (ret < 0)
		goto out;
	n = ls_remove_locked(ls, rt_addr, end - rt_addr);
	ls_reindex_img(ls);
out:
	if (dropped)
		*dropped = n;
	return ret;
}

int lazyset_remap(struct lazyset *ls, uint64_t from, uint64_t to, uint64_t len)
{
	size_t a, b, moved;
	int ret;

	if (from % P || to % P || len % P)
		return -EINVAL;
	if (len == 0 || from == to)
		return 0;
	ret = ls_reserve(ls, ls->nr_ext + LS_SPARE);
	if (ret < 0)
		return ret;
	ls_isolate(ls, from, len, &a, &b);
	/* Detach the moving extents so dropping the destination cannot touch them. */
	moved = b - a;
	memcpy(ls->scratch, &ls->by_rt[a], moved * sizeof(*ls->scratch));
	memmove(&ls->by_rt[a], &ls->by_rt[b], (ls->nr_ext - b) * sizeof(*ls->by_rt));
	ls->nr_ext -= moved;
	ls_remove_locked(ls, to, len);
	for (size_t i = 0; i < moved; i++) {
		ls->scratch[i]->rt_start = ls->scratch[i]->rt_start - from + to;
		ls->by_rt[ls->nr_ext++] = ls->scratch[i];
	}
	qsort(ls->by_rt, ls->nr_ext, sizeof(*ls->by_rt), ls_cmp_rt);
	ls_reindex_img(ls);
	if (ls->cursor >= from && ls->cursor < from + len)
		ls->cursor = ls->cursor - from + to;
	return 0;
}

uint64_t lazyset_pending(const struct lazyset *ls)
{
	return ls->nr_pending;
}

uint64_t lazyset_inflight(const struct lazyset *ls)
{
	return ls->nr_inflight;
}

uint64_t lazyset_remaining(const struct lazyset *ls)
{
	return ls->nr_pending + ls->nr_inflight;
}

uint64_t lazyset_total(const struct lazyset *ls)
{
	return ls->total;
}

int lazyset_check(const struct lazyset *ls)
{
	uint64_t pend = 0, infl = 0;
	int ret = -EUCLEAN;

	for (size_t i = 0; i < ls->nr_ext; i++) {
		const struct lz_ext *e = ls->by_rt[i];

		if (e->npages == 0 || e->first + e->npages > e->r->npages)
			return ret;
		if (i && ext_rt_end(ls->by_rt[i - 1]) > e->rt_start)
			return ret;
		if (i && ext_img_start(ls->by_img[i - 1]) + ls->by_img[i - 1]->npages * P >
			     ext_img_start(ls->by_img[i]))
			return ret;
	}
	for (size_t i = 0; i < ls->nr_ranges; i++) {
		const struct lz_range *r = &ls->ranges[i];
		size_t words = BITMAP_WORDS(r->npages);
		uint64_t *cover = calloc(words ? words : 1, sizeof(uint64_t));
		bool ok = true;

		if (!cover)
			return -ENOMEM;
		for (size_t k = 0; k < ls->nr_ext && ok; k++) {
			const struct lz_ext *e = ls->by_rt[k];

			if (e->r != r)
				continue;
			if (bitmap_count_range(cover, e->first, e->first + e->npages))
				ok = false; /* two run-time homes for one page */
			bitmap_set_range(cover, e->first, e->first + e->npages);
		}
		for (size_t w = 0; w < words && ok; w++) {
			if (r->pending[w] & r->inflight[w])
				ok = false;
			if ((r->pending[w] | r->inflight[w]) & ~cover[w])
				ok = false;
		}
		if (bitmap_count_range(r->pending, 0, r->npages) != r->nr_pending ||
		    bitmap_count_range(r->inflight, 0, r->npages) != r->nr_inflight)
			ok = false;
		free(cover);
		if (!ok)
			return ret;
		pend += r->nr_pending;
		infl += r->nr_inflight;
	}
	if (pend != ls->nr_pending || infl != ls->nr_inflight)
		return ret;
	return 0;
}
