// SPDX-License-Identifier: GPL-2.0-or-later
#include "session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctrl.h"
#include "log.h"
#include "rdmig-config.h"
#include "util.h"

#define KEEPALIVE_S 1

struct src_session {
	LIST_ENTRY(src_session) link;
	struct src_agent *agent;
	struct xport *x;
	struct ctrl_state st;
	struct src_migration *mig; /* borrowed once the Hello named it */
	bool owner;		   /* authenticated: holds mig (mig->busy) */
	uint8_t nonce[AUTH_NONCE_LEN];
	struct ibv_mr **mrs; /* per imgmap file, RDMA only */
	size_t nr_mrs;
	struct event *tick;
	uint64_t started_ns;
	uint64_t last_rx_ns;
	uint64_t ka_seq;
	char name[160];
};

struct hole {
	uint64_t off;
	uint64_t len;
};

static void sess_release_memory(struct src_session *s)
{
	size_t i;

	for (i = 0; i < s->nr_mrs; i++)
		if (s->mrs[i] && ibv_dereg_mr(s->mrs[i]))
			log_warn("%s: ibv_dereg_mr failed", s->name);
	free(s->mrs);
	s->mrs = NULL;
	s->nr_mrs = 0;
}

static void sess_free(struct src_session *s)
{
	if (s->owner) {
		s->mig->busy = false;
		if (s->mig->state == SRC_MIG_SERVING)
			s->mig->state = SRC_MIG_READY;
	}
	sess_release_memory(s);
	if (s->tick)
		event_free(s->tick);
	xport_close(s->x);
	LIST_REMOVE(s, link);
	free(s);
}

static int sess_send(struct src_session *s, struct ctrl_out *o)
{
	uint8_t *buf = NULL;
	size_t len;
	int ret;

	ret = ctrl_state_send(&s->st, &o->msg);
	if (ret == 0)
		ret = ctrl_pack_alloc(&o->msg, &buf, &len);
	if (ret == 0)
		ret = xport_send(s->x, buf, len);
	if (ret < 0)
		log_err("%s: cannot send %s: %s", s->name, ctrl_msg_type_str(o->msg.body_case),
			strerror(-ret));
	free(buf);
	ctrl_out_release(o);
	return ret;
}

/* Sends Abort (best effort) and ends the session. */
static void sess_abort(struct src_session *s, uint32_t code, const char *reason)
{
	struct ctrl_out o;

	log_err("%s: aborting: %s (%s)", s->name, reason, ctrl_abort_str(code));
	if (ctrl_state_may_send(&s->st, RDMIG_MSG__BODY_ABORT) == 0 &&
	    ctrl_msg_abort(&o, code, reason) == 0)
		sess_send(s, &o);
	sess_free(s);
}

static bool sess_range_known(void *arg, int32_t pid, uint64_t img_vaddr, uint64_t len)
{
	struct src_session *s = arg;
	const void *data;

	return s->mig && imgmap_locate(s->mig->map, pid, img_vaddr, len, &data) == 0;
}

static uint64_t sess_features(const struct src_session *s)
{
	uint64_t f = s->agent->kind == XPORT_RDMA ? CTRL_FEAT_RDMA_READ : CTRL_FEAT_TCP_READ;

	if (s->agent->verify)
		f |= CTRL_FEAT_VERIFY_PAGES;
	return f;
}

static int on_hello(struct src_session *s, const Hello *h)
{
	struct ctrl_hello mine = {
	    .role = CTRL_ROLE_SOURCE,
	    .channel = CTRL_CHANNEL_CONTROL,
	    .page_size = IMG_PAGE_SIZE,
	    .agent_version = "rdmig-source " RDMIG_VERSION,
	};
	struct src_migration *m;
	struct ctrl_out o;
	int ret;

	m = src_mig_find(&s->agent->migrations, h->migration_id);
	if (!m) {
		sess_abort(s, CTRL_ABORT_MIGRATION, "no such migration on this source");
		return -ENOENT;
	}
	if (m->state == SRC_MIG_DONE) {
		sess_abort(s, CTRL_ABORT_MIGRATION, "migration already completed");
		return -EALREADY;
	}
	if (m->busy) {
		sess_abort(s, CTRL_ABORT_MIGRATION, "migration is being served to another peer");
		return -EBUSY;
	}
	/* The migration is claimed only once the peer has proven the secret. */
	s->mig = m;
	snprintf(s->name, sizeof(s->name), "migration %s, peer %s", m->id, xport_name(s->x));
	ret = auth_nonce(s->nonce);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "no randomness for a nonce");
		return ret;
	}
	mine.features = sess_features(s);
	mine.migration_id = m->id;
	mine.nonce = s->nonce;
	ret = ctrl_msg_hello(&o, &mine);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0)
		sess_abort(s, CTRL_ABORT_INTERNAL, "cannot answer Hello");
	return ret;
}

static int on_auth_proof(struct src_session *s, const AuthProof *p)
{
	uint8_t proof[AUTH_PROOF_LEN];
	struct auth_transcript t;
	struct ctrl_out o;
	int ret;

	ret = ctrl_state_transcript(&s->st, &t);
	if (ret == 0)
		ret = auth_proof_verify(s->mig->secret, AUTH_ROLE_DEST, &t, p->hmac.data,
					p->hmac.len);
	if (ret < 0) {
		/* Nothing about the checkpoint has left this host. */
		log_warn("%s: the peer's proof is wrong: refusing it", s->name);
		if (ctrl_msg_auth_result(&o, false, "authentication failed") == 0)
			sess_send(s, &o);
		sess_free(s);
		return -EACCES;
	}
	/* Another peer may have authenticated during this one's handshake. */
	if (s->mig->busy || s->mig->state == SRC_MIG_DONE) {
		sess_abort(s, CTRL_ABORT_MIGRATION,
			   s->mig->busy ? "migration is being served to another peer"
					: "migration already completed");
		return -EBUSY;
	}
	s->mig->busy = true;
	s->owner = true;
	ctrl_state_set_peer_verified(&s->st);
	ret = ctrl_msg_auth_result(&o, true, NULL);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret == 0)
		ret = auth_proof_compute(s->mig->secret, AUTH_ROLE_SOURCE, &t, proof);
	if (ret == 0)
		ret = ctrl_msg_auth_proof(&o, proof);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_INTERNAL, "cannot prove the source's identity");
		return ret;
	}
	return 0;
}

static int send_regions(struct src_session *s)
{
	const struct imgmap *map = s->mig->map;
	struct ctrl_region regs[CTRL_REGIONS_MAX];
	struct ctrl_out o;
	size_t i, n = 0;
	int ret;

	if (map->nr_files > CTRL_REGIONS_MAX)
		return -E2BIG;
	s->mrs = calloc(map->nr_files ? map->nr_files : 1, sizeof(*s->mrs));
	if (!s->mrs)
		return -ENOMEM;
	s->nr_mrs = map->nr_files;
	for (i = 0; i < map->nr_files; i++) {
		if (!map->files[i].base)
			continue;
		/* Remote read only: the peer can read the checkpoint, nothing else. */
		ret = xport_reg(s->x, map->files[i].base, map->files[i].len, IBV_ACCESS_REMOTE_READ,
				&s->mrs[i]);
		if (ret < 0)
			return ret;
		regs[n].addr = (uintptr_t)map->files[i].base;
		regs[n].len = map->files[i].len;
		regs[n].rkey = s->mrs[i]->rkey;
		n++;
	}
	ret = ctrl_msg_mem_regions(&o, regs, n);
	return ret < 0 ? ret : sess_send(s, &o);
}

static int hole_cmp(const void *a, const void *b)
{
	const struct hole *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The lazy ranges of pages file `file`, as merged holes sorted by offset. */
static int file_holes(const struct imgmap *map, size_t file, struct hole **out, size_t *nr)
{
	struct hole *h = NULL;
	size_t i, j, n = 0, cap = 0, m;

	for (i = 0; i < map->nr_tasks; i++) {
		for (j = 0; j < map->tasks[i].nr_ranges; j++) {
			const struct imgmap_range *r = &map->tasks[i].ranges[j];

			if (r->file != file)
				continue;
			if (n == cap) {
				struct hole *nh;

				cap = cap ? cap * 2 : 64;
				nh = realloc(h, cap * sizeof(*h));
				if (!nh) {
					free(h);
					return -ENOMEM;
				}
				h = nh;
			}
			h[n].off = r->offset;
			h[n].len = r->len;
			n++;
		}
	}
	if (n)
		qsort(h, n, sizeof(*h), hole_cmp);
	for (i = 0, m = 0; i < n; i++) {
		if (m && h[m - 1].off + h[m - 1].len >= h[i].off) {
			uint64_t end = h[i].off + h[i].len;

			if (end > h[m - 1].off + h[m - 1].len)
				h[m - 1].len = end - h[m - 1].off;
		} else {
			h[m++] = h[i];
		}
	}
	*out = h;
	*nr = m;
	return 0;
}

static int send_file(struct src_session *s, const char *name, const char *path)
{
	const struct imgmap *map = s->mig->map;
	struct hole *holes = NULL;
	struct ctrl_hole ch[CTRL_HOLES_MAX];
	struct ctrl_file_chunk c;
	struct ctrl_out o;
	const uint8_t *data = NULL;
	uint8_t *buf = NULL;
	size_t nh = 0, hi = 0, i;
	uint64_t size, cur = 0;
	struct stat st;
	int fd = -1, ret = 0;

	for (i = 0; i < map->nr_files; i++) {
		if (strcmp(map->files[i].path, path) == 0) {
			ret = file_holes(map, i, &holes, &nh);
			if (ret < 0)
				goto out;
			data = map->files[i].base;
			size = map->files[i].len;
			goto stream;
		}
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		log_err("%s: cannot read image %s: %s", s->name, path, strerror(errno));
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (size > 0) {
		ssize_t n;

		buf = malloc(size);
		if (!buf) {
			ret = -ENOMEM;
			goto out;
		}
		n = pread(fd, buf, size, 0);
		if (n < 0 || (uint64_t)n != size) {
			ret = n < 0 ? -errno : -EIO;
			log_err("%s: short read of image %s", s->name, path);
			goto out;
		}
		data = buf;
	}
stream:
	do {
		uint64_t end = size, dlen;
		size_t k = 0;

		if (hi < nh && holes[hi].off < end)
			end = holes[hi].off;
		dlen = end > cur ? end - cur : 0;
		if (dlen > CTRL_FILE_CHUNK_MAX)
			dlen = CTRL_FILE_CHUNK_MAX;
		memset(&c, 0, sizeof(c));
		c.name = name;
		c.total_size = size;
		c.offset = cur;
		c.data = dlen ? data + cur : NULL;
		c.data_len = dlen;
		cur += dlen;
		while (hi < nh && holes[hi].off == cur && k < CTRL_HOLES_MAX) {
			uint64_t hlen = holes[hi].len;

			if (holes[hi].off + hlen > size)
				hlen = size - holes[hi].off;
			ch[k].offset = holes[hi].off;
			ch[k].len = hlen;
			cur += hlen;
			k++;
			hi++;
		}
		c.holes = k ? ch : NULL;
		c.nr_holes = k;
		c.last = cur >= size;
		ret = ctrl_msg_image_file(&o, &c);
		if (ret == 0)
			ret = sess_send(s, &o);
	} while (ret == 0 && cur < size);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(holes);
	return ret;
}

static int send_files(struct src_session *s, uint32_t *count)
{
	struct dirent **ents = NULL;
	char path[4096];
	struct ctrl_err e;
	struct stat st;
	int n, i, ret = 0;

	n = scandir(s->mig->dir, &ents, NULL, alphasort);
	if (n < 0) {
		ret = -errno;
		log_err("%s: cannot list %s: %s", s->name, s->mig->dir, strerror(errno));
		return ret;
	}
	*count = 0;
	for (i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;

		if (ret < 0 || name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", s->mig->dir, name);
		/* Only regular files: a `parent` link or sockets are not images to ship. */
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (ctrl_validate_file_name(name, &e) < 0) {
			log_warn("%s: not sending %s: %s", s->name, name, e.text);
			continue;
		}
		ret = send_file(s, name, path);
		if (ret == 0)
			(*count)++;
	}
	for (i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	return ret;
}

static int send_tables(struct src_session *s, uint32_t *tasks)
{
	const struct imgmap *map = s->mig->map;
	struct ctrl_range *r;
	struct ctrl_out o;
	size_t i, j, k, n;
	bool rdma = xport_kind(s->x) == XPORT_RDMA;
	int ret = 0;

	r = calloc(CTRL_RANGES_MAX, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*tasks = 0;
	for (i = 0; i < map->nr_tasks && ret == 0; i++) {
		const struct imgmap_task *t = &map->tasks[i];

		if (t->nr_ranges == 0)
			continue;
		for (j = 0; j < t->nr_ranges && ret == 0; j += n) {
			n = t->nr_ranges - j;
			if (n > CTRL_RANGES_MAX)
				n = CTRL_RANGES_MAX;
			for (k = 0; k < n; k++) {
				const struct imgmap_range *ir = &t->ranges[j + k];

				r[k].img_vaddr = ir->img_vaddr;
				r[k].len = ir->len;
				r[k].xxh3 = ir->csum;
				r[k].has_remote = rdma;
				if (rdma) {
					r[k].remote_addr =
					    (uintptr_t)map->files[ir->file].base + ir->offset;
					r[k].rkey = s->mrs[ir->file]->rkey;
				}
			}
			ret = ctrl_msg_task_table(&o, t->pid, r, n, j + n == t->nr_ranges);
			if (ret == 0)
				ret = sess_send(s, &o);
		}
		if (ret == 0)
			(*tasks)++;
	}
	free(r);
	return ret;
}

static int send_page_hashes(struct src_session *s)
{
	const struct imgmap *map = s->mig->map;
	struct ctrl_out o;
	size_t i, j;
	uint64_t p, n, pages;
	int ret = 0;

	for (i = 0; i < map->nr_tasks && ret == 0; i++) {
		const struct imgmap_task *t = &map->tasks[i];

		for (j = 0; j < t->nr_ranges && ret == 0; j++) {
			const struct imgmap_range *r = &t->ranges[j];

			pages = r->len / IMG_PAGE_SIZE;
			for (p = 0; p < pages && ret == 0; p += n) {
				n = pages - p;
				if (n > CTRL_PAGE_HASHES_MAX)
					n = CTRL_PAGE_HASHES_MAX;
				ret = ctrl_msg_page_hashes(&o, t->pid,
							   r->img_vaddr + p * IMG_PAGE_SIZE,
							   r->page_hashes + p, (size_t)n);
				if (ret == 0)
					ret = sess_send(s, &o);
			}
		}
	}
	return ret;
}

/* The peer is authenticated for this migration: now, and only now, expose memory. */
static void sess_start_stream(struct src_session *s)
{
	const struct ctrl_negotiated *neg = ctrl_state_negotiated(&s->st);
	struct ctrl_out o;
	uint32_t files = 0, tasks = 0;
	char sz[32];
	int ret = 0;

	log_info("%s: destination authenticated; sending images over %s", s->name,
		 xport_kind_str(xport_kind(s->x)));
	s->mig->state = SRC_MIG_SERVING;
	if (!s->mig->started_ns)
		s->mig->started_ns = now_ns();
	if (xport_kind(s->x) == XPORT_RDMA) {
		ret = send_regions(s);
		if (ret < 0) {
			sess_abort(s, CTRL_ABORT_READ, "cannot register the checkpoint for RDMA");
			return;
		}
	}
	ret = send_files(s, &files);
	if (ret == 0)
		ret = send_tables(s, &tasks);
	if (ret == 0 && (neg->features & CTRL_FEAT_VERIFY_PAGES))
		ret = send_page_hashes(s);
	if (ret == 0)
		ret = ctrl_msg_images_done(&o, files, tasks, s->mig->map->lazy_bytes);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_IMAGES, "cannot send the images");
		return;
	}
	log_info("%s: sent %u image files and %u range tables; %s of lazy pages to serve", s->name,
		 files, tasks, fmt_bytes(s->mig->map->lazy_bytes, sz, sizeof(sz)));
}

static int on_read_req(struct src_session *s, const ReadReq *r)
{
	const void *data = NULL;
	struct ctrl_out o;
	int status, ret;

	status = imgmap_locate(s->mig->map, r->pid, r->img_vaddr, r->len, &data);
	ret = ctrl_msg_read_resp(&o, r->cookie, status, status == 0 ? data : NULL,
				 status == 0 ? r->len : 0);
	if (ret == 0)
		ret = sess_send(s, &o);
	if (ret < 0) {
		sess_abort(s, CTRL_ABORT_READ, "cannot answer a read");
		return ret;
	}
	if (status == 0) {
		s->mig->reads_served++;
		s->mig->bytes_served += r->len;
	}
	return 0;
}

static void on_done(struct src_session *s, const Done *d)
{
	struct src_agent *a = s->agent;
	struct src_migration *m = s->mig;
	struct ctrl_out o;
	char sz[32];

	if (d->digest != m->map->digest) {
		sess_abort(s, CTRL_ABORT_VERIFY,
			   "Done digest does not match the ranges this source sent");
		return;
	}
	m->state = SRC_MIG_DONE;
	m->done_ns = now_ns();
	if (ctrl_msg_done_ack(&o, true, NULL) == 0)
		sess_send(s, &o);
	log_info("migration %s done: the destination installed %" PRIu64 " pages (%s), %" PRIu64
		 " ranges verified, in %.2f s; checkpoint released",
		 m->id, d->pages, fmt_bytes(d->bytes, sz, sizeof(sz)), d->ranges_verified,
		 (double)(m->done_ns - m->started_ns) / 1e9);
	sess_free(s);
	if (a->exit_when_done && src_mig_all_done(&a->migrations))
		event_base_loopexit(a->base, NULL);
}

static void sess_recv(struct xport *x, const void *buf, size_t len, void *arg)
{
	struct src_session *s = arg;
	RdmigMsg *m = NULL;
	uint32_t code;
	const char *why;

	s->last_rx_ns = now_ns();
	if (ctrl_state_recv(&s->st, buf, len, &m) < 0) {
		why = ctrl_state_error(&s->st, &code);
		sess_abort(s, code, why);
		return;
	}
	switch (m->body_case) {
	case RDMIG_MSG__BODY_HELLO:
		on_hello(s, m->hello);
		break;
	case RDMIG_MSG__BODY_AUTH_PROOF:
		on_auth_proof(s, m->auth_proof);
		break;
	case RDMIG_MSG__BODY_AUTH_RESULT:
		if (!m->auth_result->ok) {
			log_err("%s: the destination refused this source's proof: %s", s->name,
				m->auth_result->reason ? m->auth_result->reason : "no reason");
			sess_free(s);
			break;
		}
		sess_start_stream(s);
		break;
	case RDMIG_MSG__BODY_READ_REQ:
		on_read_req(s, m->read_req);
		break;
	case RDMIG_MSG__BODY_PROGRESS:
		log_debug("%s: progress %" PRIu64 " pages, %" PRIu64 " faults", s->name,
			  m->progress->pages, m->progress->faults);
		break;
	case RDMIG_MSG__BODY_KEEPALIVE:
		break;
	case RDMIG_MSG__BODY_DONE:
		on_done(s, m->done);
		break;
	case RDMIG_MSG__BODY_ABORT:
		log_err("%s: the destination aborted: %s (%s); keeping the checkpoint", s->name,
			m->abort->reason ? m->abort->reason : "no reason",
			ctrl_abort_str(m->abort->code));
		sess_free(s);
		break;
	default:
		sess_abort(s, CTRL_ABORT_PROTOCOL, "unexpected message");
		break;
	}
	ctrl_free(m);
}

static void sess_closed(struct xport *x, int reason, void *arg)
{
	struct src_session *s = arg;

	if (s->mig && s->mig->state == SRC_MIG_SERVING)
		log_err("%s: destination lost (%s); keeping the checkpoint for a retry or a "
			"rollback",
			s->name, strerror(-reason));
	else
		log_info("%s: connection closed (%s)", s->name, strerror(-reason));
	sess_free(s);
}

static void sess_tick(evutil_socket_t fd, short what, void *arg)
{
	struct src_session *s = arg;
	uint64_t now = now_ns();
	struct ctrl_out o;

	if (!ctrl_state_authenticated(&s->st) &&
	    now - s->started_ns > (uint64_t)s->agent->handshake_timeout_s * 1000000000ull) {
		sess_abort(s, CTRL_ABORT_TIMEOUT, "no authentication in time");
		return;
	}
	if (now - s->last_rx_ns > (uint64_t)s->agent->dead_after_s * 1000000000ull) {
		sess_abort(s, CTRL_ABORT_TIMEOUT, "the destination fell silent");
		return;
	}
	if (ctrl_state_authenticated(&s->st) &&
	    ctrl_state_may_send(&s->st, RDMIG_MSG__BODY_KEEPALIVE) == 0 &&
	    ctrl_msg_keepalive(&o, ++s->ka_seq, now) == 0)
		sess_send(s, &o);
}

static const struct xport_ops sess_ops = {
    .recv = sess_recv,
    .closed = sess_closed,
};

int src_session_start(struct src_agent *a, struct xport *x)
{
	struct timeval tv = {KEEPALIVE_S, 0};
	struct src_session *s;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->agent = a;
	s->x = x;
	s->started_ns = s->last_rx_ns = now_ns();
	snprintf(s->name, sizeof(s->name), "peer %s", xport_name(x));
	ctrl_state_init(&s->st, CTRL_ROLE_SOURCE, s->name);
	ctrl_state_set_range_check(&s->st, sess_range_known, s);
	s->tick = event_new(a->base, -1, EV_PERSIST, sess_tick, s);
	if (!s->tick || event_add(s->tick, &tv) < 0) {
		if (s->tick)
			event_free(s->tick);
		free(s);
		return -ENOMEM;
	}
	LIST_INSERT_HEAD(&a->sessions, s, link);
	xport_set_ops(x, &sess_ops, s);
	log_info("connection from %s", xport_name(x));
	return 0;
}

void src_session_close_all(struct src_agent *a)
{
	struct src_session *s;

	while ((s = LIST_FIRST(&a->sessions)) != NULL)
		sess_abort(s, CTRL_ABORT_CANCELLED, "source agent shutting down");
}
