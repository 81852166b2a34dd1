/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "roundcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <infiniband/verbs.h>
#include <xxhash.h>

#include "log.h"
#include "util.h"

/* Our cookies are odd (a request's are pointers): slot in the bits above. */
#define RC_COOKIE(slot)	  (((uint64_t)(slot) << 1) | 1u)
#define RC_COOKIE_SLOT(c) ((unsigned int)((c) >> 1))

/* All of len bytes at off, written or read: 0 or -1 with errno (a short read: EIO, the file is
 * ours). */
static int rc_io(int fd, bool write, uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

struct rc_copy {
	uint64_t addr, len;
	uint32_t rkey;
	uint64_t xxh3;
	uint32_t round;
	int fd;	      /* -1: not started, dropped or bad */
	bool started; /* its file was made: never copied twice */
	bool kept;    /* copied whole and XXH3 equal */
	bool adopted; /* a final MemRegion named it: serves with serve_rkey */
	bool used;    /* adopted once: counted in regions_used, not again on a resume */
	uint32_t serve_rkey;
};

enum rc_slot_state { SLOT_FREE, SLOT_BUSY, SLOT_DONE };

struct rc_slot {
	enum rc_slot_state state;
	uint64_t off;
	uint32_t len;
	int status;
};

struct roundcopy {
	int dir_fd;
	char *name;
	const struct roundcopy_ops *ops;
	void *arg;
	struct rc_copy *c;
	size_t n, cap;
	size_t cur;	   /* the copy being read (index into c), == n: none */
	uint64_t next_off; /* of cur: the next READ's offset */
	XXH3_state_t *hs;
	uint8_t *buf;
	struct ibv_mr *mr;
	struct rc_slot slot[ROUNDCOPY_SLOTS];
	unsigned int head; /* the oldest slot: written to the file first */
	unsigned int tail; /* the next slot to post into */
	unsigned int inflight;
	uint32_t last_round; /* the highest round announced */
	bool stopped;
	bool failed; /* an error ended copying (not the checkpoint): logged once */
	uint64_t t0;
	struct roundcopy_stats stats;
};

int roundcopy_new(int dir_fd, const char *name, const struct roundcopy_ops *ops, void *arg,
		  struct roundcopy **out)
{
	struct roundcopy *rc = calloc(1, sizeof(*rc));

	if (!rc || !(rc->name = strdup(name)) || !(rc->hs = XXH3_createState())) {
		roundcopy_free(rc);
		return -ENOMEM;
	}
	rc->dir_fd = dir_fd;
	rc->ops = ops;
	rc->arg = arg;
	*out = rc;
	return 0;
}

static void rc_release_buf(struct roundcopy *rc)
{
	if (rc->mr)
		rc->ops->dereg(rc->arg, rc->mr);
	rc->mr = NULL;
	free(rc->buf);
	rc->buf = NULL;
}

static void rc_drop(struct rc_copy *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->kept = c->adopted = false;
}

void roundcopy_free(struct roundcopy *rc)
{
	if (!rc)
		return;
	for (size_t i = 0; i < rc->n; i++)
		rc_drop(&rc->c[i]);
	/* The owner closed the connection first: no READ lands in buf any more. */
	rc_release_buf(rc);
	XXH3_freeState(rc->hs);
	free(rc->c);
	free(rc->name);
	free(rc);
}

/* Stops copying after an error: what is kept stays, the rest is read from the source. */
static void rc_fail(struct roundcopy *rc, int err, const char *what)
{
	if (!rc->failed)
		log_warn("%s: copying the pre-copy rounds stopped: %s: %s (their pages are read "
			 "from the source in post-copy)",
			 rc->name, what, strerror(-err));
	rc->failed = true;
	if (rc->cur < rc->n)
		rc_drop(&rc->c[rc->cur]);
	rc->cur = rc->n;
}

/*
 * An unnamed file beneath the images directory.  Where O_TMPFILE is not
 * supported (ramfs, the guests' rootfs) a dot-name, which no image file can
 * have (ctrl_validate_file_name()), unlinked at once.
 */
static int rc_file(struct roundcopy *rc, size_t i)
{
	char name[48];
	int fd = openat(rc->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	snprintf(name, sizeof(name), ".rdmig-round-copy-%zu", i);
	fd = openat(rc->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (unlinkat(rc->dir_fd, name, 0) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/*
 * Copies are only an optimisation: one that would leave the images'
 * filesystem with less than ROUNDCOPY_FREE_MIN bytes, or a twentieth of
 * it, free is not made (the checkpoint's own images still need room).
 */
static int rc_room(const struct roundcopy *rc, uint64_t len)
{
	struct statvfs v;
	uint64_t avail, keep;

	if (fstatvfs(rc->dir_fd, &v) < 0)
		return -errno;
	/* A filesystem that reports no size (ramfs, the guests' rootfs): nothing to go by. */
	if (!v.f_blocks)
		return 0;
	avail = (uint64_t)v.f_bavail * v.f_frsize;
	keep = (uint64_t)v.f_blocks * v.f_frsize / 20;
	if (keep < ROUNDCOPY_FREE_MIN)
		keep = ROUNDCOPY_FREE_MIN;
	return avail > keep && avail - keep >= len ? 0 : -ENOSPC;
}

static int rc_begin(struct roundcopy *rc, struct rc_copy *c)
{
	int ret;

	c->started = true;
	ret = rc_room(rc, c->len);
	if (ret < 0)
		return ret;
	c->fd = rc_file(rc, (size_t)(c - rc->c));
	if (c->fd < 0)
		return c->fd;
	/* Its size at once: a full disk shows here, not halfway. */
	if (posix_fallocate(c->fd, 0, (off_t)c->len) != 0 || XXH3_64bits_reset(rc->hs) != XXH_OK) {
		rc_drop(c);
		return -ENOSPC;
	}
	rc->next_off = 0;
	return 0;
}

static void rc_finish(struct roundcopy *rc, struct rc_copy *c)
{
	uint64_t got = XXH3_64bits_digest(rc->hs);
	char sz[32];

	if (got != c->xxh3) {
		log_err("%s: round %" PRIu32 "'s region 0x%" PRIx64 "+%" PRIu64
			" copied with XXH3 %016" PRIx64 ", announced %016" PRIx64
			": copy removed, never used",
			rc->name, c->round, c->addr, c->len, got, c->xxh3);
		rc_drop(c);
		rc->stats.regions_bad++;
		return;
	}
	c->kept = true;
	rc->stats.regions_kept++;
	rc->stats.bytes_copied += c->len;
	rc->stats.copy_ns = now_ns() - rc->t0;
	log_info("%s: round %" PRIu32 "'s region 0x%" PRIx64 " (%s) copied ahead and verified",
		 rc->name, c->round, c->addr, fmt_bytes(c->len, sz, sizeof(sz)));
}

/* Posts READs into free slots while the current copy has bytes left, moving on to the next. */
static void rc_pump(struct roundcopy *rc)
{
	int ret;

	if (rc->stopped || rc->failed)
		return;
	if (!rc->buf) {
		rc->buf = aligned_alloc(4096, (size_t)ROUNDCOPY_SLOTS * ROUNDCOPY_CHUNK_BYTES);
		ret = rc->buf
			  ? rc->ops->reg(rc->arg, rc->buf,
					 (size_t)ROUNDCOPY_SLOTS * ROUNDCOPY_CHUNK_BYTES, &rc->mr)
			  : -ENOMEM;
		if (ret < 0) {
			rc_release_buf(rc);
			rc_fail(rc, ret, "no bounce buffer");
			return;
		}
		rc->t0 = now_ns();
	}
	/*
	 * Into the ring's next slot only once it is free: a later chunk done
	 * first (READs spread over queue pairs) keeps its slot until the ones
	 * before it are written, so "fewer in flight" is not "a slot free".
	 */
	while (rc->slot[rc->tail].state == SLOT_FREE) {
		struct rc_copy *c;
		struct rc_slot *s;

		if (rc->cur == rc->n)
			return;
		c = &rc->c[rc->cur];
		if (!c->started && (ret = rc_begin(rc, c)) < 0) {
			rc_fail(rc, ret, "cannot make a file for a copy");
			return;
		}
		if (rc->next_off == c->len) {
			/* Every READ of it is posted: the next copy starts once they are in. */
			if (rc->inflight)
				return;
			rc->cur++;
			continue;
		}
		s = &rc->slot[rc->tail];
		s->off = rc->next_off;
		s->len =
		    (uint32_t)(c->len - s->off < ROUNDCOPY_CHUNK_BYTES ? c->len - s->off
								       : ROUNDCOPY_CHUNK_BYTES);
		s->state = SLOT_BUSY;
		ret = rc->ops->read(rc->arg, rc->buf + (size_t)rc->tail * ROUNDCOPY_CHUNK_BYTES,
				    rc->mr->lkey, c->addr + s->off, c->rkey, s->len,
				    RC_COOKIE(rc->tail));
		if (ret < 0) {
			s->state = SLOT_FREE;
			rc_fail(rc, ret, "cannot post an RDMA READ");
			return;
		}
		rc->inflight++;
		rc->next_off += s->len;
		rc->tail = (rc->tail + 1) % ROUNDCOPY_SLOTS;
	}
}

int roundcopy_add(struct roundcopy *rc, uint32_t round, const struct ctrl_region *r, size_t n)
{
	size_t i;

	if (rc->stopped)
		return -EBUSY;
	if (rc->n + n > rc->cap) {
		size_t cap = rc->cap ? rc->cap * 2 : 16;
		struct rc_copy *nc;

		while (cap < rc->n + n)
			cap *= 2;
		nc = realloc(rc->c, cap * sizeof(*nc));
		if (!nc)
			return -ENOMEM;
		rc->c = nc;
		rc->cap = cap;
	}
	for (i = 0; i < n; i++) {
		struct rc_copy *c = &rc->c[rc->n + i];

		memset(c, 0, sizeof(*c));
		c->addr = r[i].addr;
		c->len = r[i].len;
		c->rkey = r[i].rkey;
		c->xxh3 = r[i].xxh3;
		c->round = round;
		c->fd = -1;
	}
	/* cur == n meant "nothing to copy": it now points at the first new one. */
	rc->n += n;
	if (round > rc->last_round)
		rc->last_round = round;
	rc->stats.regions_announced += n;
	rc_pump(rc);
	return 0;
}

uint32_t roundcopy_idle_round(const struct roundcopy *rc)
{
	return rc->cur == rc->n && !rc->inflight ? rc->last_round : 0;
}

bool roundcopy_cookie(uint64_t cookie)
{
	return cookie & 1u;
}

void roundcopy_read_done(struct roundcopy *rc, uint64_t cookie, int status)
{
	unsigned int i = RC_COOKIE_SLOT(cookie);
	struct rc_copy *c;

	if (i >= ROUNDCOPY_SLOTS || rc->slot[i].state != SLOT_BUSY) {
		log_err("%s: a completion for no READ of ours (slot %u)", rc->name, i);
		return;
	}
	rc->slot[i].state = SLOT_DONE;
	rc->slot[i].status = status;
	rc->inflight--;
	/* Written and hashed in offset order, whatever order the READs came back in. */
	while (rc->slot[rc->head].state == SLOT_DONE) {
		struct rc_slot *s = &rc->slot[rc->head];
		uint8_t *data = rc->buf + (size_t)rc->head * ROUNDCOPY_CHUNK_BYTES;

		s->state = SLOT_FREE;
		rc->head = (rc->head + 1) % ROUNDCOPY_SLOTS;
		if (rc->stopped || rc->failed || rc->cur == rc->n)
			continue;
		c = &rc->c[rc->cur];
		if (s->status != 0) {
			rc_fail(rc, s->status, "an RDMA READ failed");
			continue;
		}
		if (rc_io(c->fd, true, data, s->len, (off_t)s->off) < 0) {
			rc_fail(rc, -errno, "cannot write a copy");
			continue;
		}
		XXH3_64bits_update(rc->hs, data, s->len);
		if (s->off + s->len == c->len)
			rc_finish(rc, c);
	}
	if (rc->stopped && !rc->inflight)
		rc_release_buf(rc);
	else
		rc_pump(rc);
}

void roundcopy_stop(struct roundcopy *rc, bool connection_closed)
{
	if (!rc->stopped && rc->cur < rc->n) {
		for (size_t i = rc->cur; i < rc->n; i++) {
			if (!rc->c[i].kept) {
				rc_drop(&rc->c[i]);
				rc->stats.regions_left++;
			}
		}
		log_info("%s: %" PRIu64 " region(s) of the pre-copy rounds not copied ahead "
			 "(%s): read from the source in post-copy",
			 rc->name, rc->stats.regions_left,
			 connection_closed ? "connection closed"
					   : "stopped before the checkpoint served");
	}
	rc->stopped = true;
	rc->cur = rc->n;
	if (connection_closed) {
		memset(rc->slot, 0, sizeof(rc->slot));
		rc->head = rc->tail = rc->inflight = 0;
	}
	if (!rc->inflight)
		rc_release_buf(rc);
}

unsigned int roundcopy_inflight(const struct roundcopy *rc)
{
	return rc->inflight;
}

bool roundcopy_adopt(struct roundcopy *rc, const struct ctrl_region *g)
{
	if (!g->has_xxh3)
		return false;
	for (size_t i = 0; i < rc->n; i++) {
		struct rc_copy *c = &rc->c[i];

		if (!c->kept || c->addr != g->addr || c->len != g->len || c->xxh3 != g->xxh3)
			continue;
		if (!c->used)
			rc->stats.regions_used++;
		c->used = c->adopted = true;
		c->serve_rkey = g->rkey;
		return true;
	}
	return false;
}

void roundcopy_unadopt_all(struct roundcopy *rc)
{
	for (size_t i = 0; i < rc->n; i++)
		rc->c[i].adopted = false;
}

int roundcopy_pread(struct roundcopy *rc, uint64_t raddr, uint32_t rkey, void *dst, size_t len)
{
	for (size_t i = 0; i < rc->n; i++) {
		const struct rc_copy *c = &rc->c[i];
		uint64_t off;

		if (!c->adopted || c->serve_rkey != rkey || raddr < c->addr)
			continue;
		off = raddr - c->addr;
		if (off > c->len || len > c->len - off)
			continue;
		if (rc_io(c->fd, false, dst, len, (off_t)off) < 0)
			return -errno;
		rc->stats.bytes_local += len;
		return 0;
	}
	return -ENOENT;
}

void roundcopy_get_stats(const struct roundcopy *rc, struct roundcopy_stats *out)
{
	*out = rc->stats;
}
