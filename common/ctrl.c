// SPDX-License-Identifier: GPL-2.0-or-later
#include "ctrl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "imgname.h"
#include "log.h"
#include "util.h"

_Static_assert((int)AUTH_ROLE_SOURCE == (int)CTRL_ROLE_SOURCE, "role values differ");
_Static_assert((int)AUTH_ROLE_DEST == (int)CTRL_ROLE_DEST, "role values differ");

/* ---- names ------------------------------------------------------------ */

static const char *const type_names[] = {
    [RDMIG_MSG__BODY_HELLO] = "Hello",
    [RDMIG_MSG__BODY_AUTH_PROOF] = "AuthProof",
    [RDMIG_MSG__BODY_AUTH_RESULT] = "AuthResult",
    [RDMIG_MSG__BODY_ABORT] = "Abort",
    [RDMIG_MSG__BODY_MEM_REGIONS] = "MemRegions",
    [RDMIG_MSG__BODY_IMAGE_FILE] = "ImageFile",
    [RDMIG_MSG__BODY_TASK_TABLE] = "TaskTable",
    [RDMIG_MSG__BODY_PAGE_HASHES] = "PageHashes",
    [RDMIG_MSG__BODY_IMAGES_DONE] = "ImagesDone",
    [RDMIG_MSG__BODY_READ_REQ] = "ReadReq",
    [RDMIG_MSG__BODY_READ_RESP] = "ReadResp",
    [RDMIG_MSG__BODY_PROGRESS] = "Progress",
    [RDMIG_MSG__BODY_KEEPALIVE] = "Keepalive",
    [RDMIG_MSG__BODY_DONE] = "Done",
    [RDMIG_MSG__BODY_DONE_ACK] = "DoneAck",
    [RDMIG_MSG__BODY_STAGE_REGION] = "StageRegion",
    [RDMIG_MSG__BODY_STAGE_REQ] = "StageReq",
    [RDMIG_MSG__BODY_ROUND_PAGES] = "RoundPages",
    [RDMIG_MSG__BODY_ROUNDS_COPIED] = "RoundsCopied",
    [RDMIG_MSG__BODY_ROUNDS_STOP] = "RoundsStop",
    [RDMIG_MSG__BODY_FAULT_LANE] = "FaultLane",
    [RDMIG_MSG__BODY_ATTACH] = "Attach",
    [RDMIG_MSG__BODY_RUNNING] = "Running",
    [RDMIG_MSG__BODY_RC_CONNECT] = "RcConnect",
    [RDMIG_MSG__BODY_DRAIN_LANE] = "DrainLane",
};

static bool type_known(int type)
{
	return (type >= RDMIG_MSG__BODY_HELLO && type <= RDMIG_MSG__BODY_DONE_ACK) ||
	       type == RDMIG_MSG__BODY_STAGE_REGION || type == RDMIG_MSG__BODY_STAGE_REQ ||
	       type == RDMIG_MSG__BODY_FAULT_LANE || type == RDMIG_MSG__BODY_ATTACH ||
	       type == RDMIG_MSG__BODY_RUNNING || type == RDMIG_MSG__BODY_RC_CONNECT ||
	       type == RDMIG_MSG__BODY_DRAIN_LANE || type == RDMIG_MSG__BODY_ROUND_PAGES ||
	       type == RDMIG_MSG__BODY_ROUNDS_COPIED || type == RDMIG_MSG__BODY_ROUNDS_STOP;
}

const char *ctrl_msg_type_str(RdmigMsg__BodyCase type)
{
	if (!type_known((int)type))
		return type == RDMIG_MSG__BODY__NOT_SET ? "(no body)" : "(unknown type)";
	return type_names[type];
}

const char *ctrl_abort_str(uint32_t code)
{
	static const char *const names[] = {
	    [ABORT_CODE__ABORT_UNSPEC] = "unspecified",
	    [CTRL_ABORT_PROTOCOL] = "protocol error",
	    [CTRL_ABORT_VERSION] = "no common protocol version",
	    [CTRL_ABORT_AUTH] = "authentication failed",
	    [CTRL_ABORT_MIGRATION] = "migration mismatch",
	    [CTRL_ABORT_FEATURES] = "no common transport",
	    [CTRL_ABORT_IMAGES] = "image stream failed",
	    [CTRL_ABORT_READ] = "source cannot serve pages",
	    [CTRL_ABORT_VERIFY] = "checksum mismatch",
	    [CTRL_ABORT_RESTORE] = "restore failed",
	    [CTRL_ABORT_TIMEOUT] = "timeout",
	    [CTRL_ABORT_CANCELLED] = "cancelled",
	    [CTRL_ABORT_INTERNAL] = "internal error",
	};

	return code < sizeof(names) / sizeof(names[0]) ? names[code] : "unknown abort code";
}

const char *ctrl_role_str(enum ctrl_role role)
{
	switch (role) {
	case CTRL_ROLE_SOURCE:
		return "source";
	case CTRL_ROLE_DEST:
		return "dest";
	}
	return "invalid role";
}

const char *ctrl_phase_str(enum ctrl_phase ph)
{
	static const char *const names[] = {
	    [CTRL_PH_HELLO] = "hello",
	    [CTRL_PH_DEST_PROOF] = "dest-proof",
	    [CTRL_PH_SOURCE_RESULT] = "source-result",
	    [CTRL_PH_SOURCE_PROOF] = "source-proof",
	    [CTRL_PH_DEST_RESULT] = "dest-result",
	    [CTRL_PH_IMAGES] = "images",
	    [CTRL_PH_POSTCOPY] = "postcopy",
	    [CTRL_PH_DONE] = "done",
	    [CTRL_PH_CLOSED] = "closed",
	};

	return (unsigned)ph < CTRL_PH_COUNT ? names[ph] : "invalid phase";
}

static int err_set(struct ctrl_err *e, uint32_t code, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int err_set(struct ctrl_err *e, uint32_t code, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return ret;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	return ret;
}

/* ---- codec ------------------------------------------------------------ */

/* The message's own bytes: with its MAC, a message fits one RDMA receive buffer. */
static size_t type_limit(RdmigMsg__BodyCase type)
{
	return type == RDMIG_MSG__BODY_READ_RESP ? CTRL_DATA_MSG_MAX - MSGAUTH_TAG_LEN
						 : CTRL_MSG_MAX - MSGAUTH_TAG_LEN;
}

int ctrl_pack(const RdmigMsg *m, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n;

	if (!type_known((int)m->body_case)) {
		log_err("cannot pack a control message without a known body (case %d)",
			(int)m->body_case);
		return -EINVAL;
	}
	n = rdmig_msg__get_packed_size(m);
	if (n > type_limit(m->body_case)) {
		log_err("%s of %zu bytes exceeds the limit of %zu bytes",
			ctrl_msg_type_str(m->body_case), n, type_limit(m->body_case));
		return -EMSGSIZE;
	}
	if (n > cap)
		return -ENOBUFS;
	*len = rdmig_msg__pack(m, buf);
	return 0;
}

/* Packs into a new buffer with `extra` bytes of room after the message. */
static int pack_alloc(const RdmigMsg *m, size_t extra, uint8_t **buf, size_t *len)
{
	uint8_t *p;
	size_t cap;
	int ret;

	if (!type_known((int)m->body_case))
		return ctrl_pack(m, NULL, 0, len);
	cap = rdmig_msg__get_packed_size(m);
	p = malloc(cap + extra ? cap + extra : 1);
	if (!p)
		return -ENOMEM;
	ret = ctrl_pack(m, p, cap, len);
	if (ret < 0) {
		free(p);
		return ret;
	}
	*buf = p;
	return 0;
}

int ctrl_pack_alloc(const RdmigMsg *m, uint8_t **buf, size_t *len)
{
	return pack_alloc(m, 0, buf, len);
}

int ctrl_unpack(const void *buf, size_t len, RdmigMsg **out)
{
	RdmigMsg *m;
	int ret = 0;

	*out = NULL;
	/* protobuf-c allocates in proportion to the input: bound it first. */
	if (len > CTRL_DATA_MSG_MAX)
		return -EMSGSIZE;
	m = rdmig_msg__unpack(NULL, len, buf);
	if (!m)
		return -EBADMSG;
	if (!type_known((int)m->body_case))
		ret = -EBADMSG;
	else if (len > type_limit(m->body_case))
		ret = -EMSGSIZE;
	if (ret < 0) {
		rdmig_msg__free_unpacked(m, NULL);
		return ret;
	}
	*out = m;
	return 0;
}

void ctrl_free(RdmigMsg *m)
{
	if (m)
		rdmig_msg__free_unpacked(m, NULL);
}

/* ---- builders ------------------------------------------------------------ */

static void out_reset(struct ctrl_out *o, RdmigMsg__BodyCase type)
{
	memset(o, 0, sizeof(*o));
	rdmig_msg__init(&o->msg);
	o->msg.body_case = type;
}

void ctrl_out_release(struct ctrl_out *o)
{
	free(o->scratch);
	o->scratch = NULL;
}

/*
 * One block for a repeated field: n pointers, then n elements.  Every
 * element type here is 8-byte aligned, as the pointer array's end is.
 */
static void *out_array(struct ctrl_out *o, size_t n, size_t elem, void ***ptrs)
{
	uint8_t *blk;

	blk = calloc(n, sizeof(void *) + elem);
	if (!blk)
		return NULL;
	o->scratch = blk;
	*ptrs = (void **)blk;
	return blk + n * sizeof(void *);
}

int ctrl_msg_hello(struct ctrl_out *o, const struct ctrl_hello *h)
{
	Hello *b = &o->body.hello;

	out_reset(o, RDMIG_MSG__BODY_HELLO);
	if (!h->migration_id || !h->nonce)
		return -EINVAL;
	hello__init(b);
	b->min_version = CTRL_PROTO_MIN_VERSION;
	b->max_version = CTRL_PROTO_VERSION;
	b->features = h->features;
	b->role = (Role)h->role;
	b->channel = (Channel)h->channel;
	/* protobuf-c fields are not const; packing only reads them. */
	b->migration_id = (char *)h->migration_id;
	b->nonce.data = (uint8_t *)h->nonce;
	b->nonce.len = AUTH_NONCE_LEN;
	b->page_size = h->page_size;
	b->agent_version = (char *)h->agent_version;
	o->msg.hello = b;
	return 0;
}

int ctrl_msg_auth_proof(struct ctrl_out *o, const uint8_t proof[AUTH_PROOF_LEN])
{
	AuthProof *b = &o->body.auth_proof;

	out_reset(o, RDMIG_MSG__BODY_AUTH_PROOF);
	if (!proof)
		return -EINVAL;
	auth_proof__init(b);
	b->hmac.data = (uint8_t *)proof;
	b->hmac.len = AUTH_PROOF_LEN;
	o->msg.auth_proof = b;
	return 0;
}

int ctrl_msg_auth_result(struct ctrl_out *o, bool ok, const char *reason)
{
	AuthResult *b = &o->body.auth_result;

	out_reset(o, RDMIG_MSG__BODY_AUTH_RESULT);
	auth_result__init(b);
	b->ok = ok;
	b->reason = (char *)reason;
	o->msg.auth_result = b;
	return 0;
}

int ctrl_msg_abort(struct ctrl_out *o, uint32_t code, const char *reason)
{
	Abort *b = &o->body.abort;

	out_reset(o, RDMIG_MSG__BODY_ABORT);
	abort__init(b);
	b->code = (AbortCode)code;
	b->reason = (char *)reason;
	o->msg.abort = b;
	return 0;
}

/* n regions of r as MemRegion items of o: the array, or NULL (-ENOMEM, -E2BIG, -EINVAL in *ret). */
static MemRegion **out_regions(struct ctrl_out *o, const struct ctrl_region *r, size_t n, int *ret)
{
	MemRegion *items;
	void **ptrs;

	*ret = n > CTRL_REGIONS_MAX ? -E2BIG : n == 0 || !r ? -EINVAL : 0;
	if (*ret < 0)
		return NULL;
	items = out_array(o, n, sizeof(*items), &ptrs);
	if (!items) {
		*ret = -ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		mem_region__init(&items[i]);
		items[i].addr = r[i].addr;
		items[i].len = r[i].len;
		items[i].rkey = r[i].rkey;
		items[i].has_xxh3 = r[i].has_xxh3;
		items[i].xxh3 = r[i].xxh3;
		ptrs[i] = &items[i];
	}
	return (MemRegion **)ptrs;
}

int ctrl_msg_mem_regions(struct ctrl_out *o, const struct ctrl_region *r, size_t n)
{
	MemRegions *b = &o->body.mem_regions;
	int ret;

	out_reset(o, RDMIG_MSG__BODY_MEM_REGIONS);
	mem_regions__init(b);
	b->regions = out_regions(o, r, n, &ret);
	if (!b->regions)
		return ret;
	b->n_regions = n;
	o->msg.mem_regions = b;
	return 0;
}

int ctrl_msg_round_pages(struct ctrl_out *o, uint32_t round, const struct ctrl_region *r, size_t n)
{
	RoundPages *b = &o->body.round_pages;
	int ret;

	out_reset(o, RDMIG_MSG__BODY_ROUND_PAGES);
	round_pages__init(b);
	b->regions = out_regions(o, r, n, &ret);
	if (!b->regions)
		return ret;
	b->round = round;
	b->n_regions = n;
	o->msg.round_pages = b;
	return 0;
}

int ctrl_msg_rounds_copied(struct ctrl_out *o, uint32_t round, uint64_t bytes)
{
	RoundsCopied *b = &o->body.rounds_copied;

	out_reset(o, RDMIG_MSG__BODY_ROUNDS_COPIED);
	rounds_copied__init(b);
	b->round = round;
	b->bytes = bytes;
	o->msg.rounds_copied = b;
	return 0;
}

int ctrl_msg_rounds_stop(struct ctrl_out *o)
{
	RoundsStop *b = &o->body.rounds_stop;

	out_reset(o, RDMIG_MSG__BODY_ROUNDS_STOP);
	rounds_stop__init(b);
	o->msg.rounds_stop = b;
	return 0;
}

int ctrl_msg_image_file(struct ctrl_out *o, const struct ctrl_file_chunk *c)
{
	ImageFile *b = &o->body.image_file;
	Hole *items = NULL;
	void **ptrs = NULL;

	out_reset(o, RDMIG_MSG__BODY_IMAGE_FILE);
	if (!c->name || (c->data_len && !c->data) || (c->nr_holes && !c->holes))
		return -EINVAL;
	if (c->data_len > CTRL_FILE_CHUNK_MAX || c->nr_holes > CTRL_HOLES_MAX)
		return -E2BIG;
	if (c->nr_holes) {
		items = out_array(o, c->nr_holes, sizeof(*items), &ptrs);
		if (!items)
			return -ENOMEM;
	}
	image_file__init(b);
	b->name = (char *)c->name;
	b->total_size = c->total_size;
	b->offset = c->offset;
	if (c->data_len) {
		b->has_data = true;
		b->data.data = (uint8_t *)c->data;
		b->data.len = c->data_len;
	}
	for (size_t i = 0; i < c->nr_holes; i++) {
		hole__init(&items[i]);
		items[i].offset = c->holes[i].offset;
		items[i].len = c->holes[i].len;
		ptrs[i] = &items[i];
	}
	b->n_holes = c->nr_holes;
	b->holes = (Hole **)ptrs;
	if (c->last) {
		b->has_flags = true;
		b->flags = CTRL_IMAGE_FILE_LAST;
	}
	o->msg.image_file = b;
	return 0;
}

int ctrl_msg_task_table(struct ctrl_out *o, int32_t pid, const struct ctrl_range *r, size_t n,
			bool last)
{
	TaskTable *b = &o->body.task_table;
	LazyRange *items = NULL;
	void **ptrs = NULL;

	out_reset(o, RDMIG_MSG__BODY_TASK_TABLE);
	if (n > CTRL_RANGES_MAX)
		return -E2BIG;
	if (n && !r)
		return -EINVAL;
	if (n) {
		items = out_array(o, n, sizeof(*items), &ptrs);
		if (!items)
			return -ENOMEM;
	}
	task_table__init(b);
	b->pid = pid;
	for (size_t i = 0; i < n; i++) {
		lazy_range__init(&items[i]);
		items[i].img_vaddr = r[i].img_vaddr;
		items[i].len = r[i].len;
		items[i].xxh3 = r[i].xxh3;
		if (r[i].has_remote) {
			items[i].has_remote_addr = true;
			items[i].remote_addr = r[i].remote_addr;
			items[i].has_rkey = true;
			items[i].rkey = r[i].rkey;
		}
		ptrs[i] = &items[i];
	}
	b->n_ranges = n;
	b->ranges = (LazyRange **)ptrs;
	if (last) {
		b->has_flags = true;
		b->flags = CTRL_TASK_TABLE_LAST;
	}
	o->msg.task_table = b;
	return 0;
}

int ctrl_msg_page_hashes(struct ctrl_out *o, int32_t pid, uint64_t first_vaddr,
			 const uint64_t *hashes, size_t n)
{
	PageHashes *b = &o->body.page_hashes;

	out_reset(o, RDMIG_MSG__BODY_PAGE_HASHES);
	if (n > CTRL_PAGE_HASHES_MAX)
		return -E2BIG;
	if (n == 0 || !hashes)
		return -EINVAL;
	page_hashes__init(b);
	b->pid = pid;
	b->first_vaddr = first_vaddr;
	b->n_hashes = n;
	b->hashes = (uint64_t *)hashes;
	o->msg.page_hashes = b;
	return 0;
}

int ctrl_msg_images_done(struct ctrl_out *o, uint32_t files, uint32_t tasks, uint64_t lazy_bytes)
{
	ImagesDone *b = &o->body.images_done;

	out_reset(o, RDMIG_MSG__BODY_IMAGES_DONE);
	images_done__init(b);
	b->files = files;
	b->tasks = tasks;
	b->lazy_bytes = lazy_bytes;
	o->msg.images_done = b;
	return 0;
}

int ctrl_msg_read_req(struct ctrl_out *o, uint64_t cookie, int32_t pid, uint64_t img_vaddr,
		      uint32_t len)
{
	ReadReq *b = &o->body.read_req;

	out_reset(o, RDMIG_MSG__BODY_READ_REQ);
	read_req__init(b);
	b->cookie = cookie;
	b->pid = pid;
	b->img_vaddr = img_vaddr;
	b->len = len;
	o->msg.read_req = b;
	return 0;
}

int ctrl_msg_read_resp(struct ctrl_out *o, uint64_t cookie, int32_t status, const void *data,
		       size_t len)
{
	ReadResp *b = &o->body.read_resp;

	out_reset(o, RDMIG_MSG__BODY_READ_RESP);
	if (len > CTRL_READ_MAX)
		return -E2BIG;
	if ((len && !data) || (status != 0 && len))
		return -EINVAL;
	read_resp__init(b);
	b->cookie = cookie;
	b->status = status;
	if (len) {
		b->has_data = true;
		b->data.data = (uint8_t *)data;
		b->data.len = len;
	}
	o->msg.read_resp = b;
	return 0;
}

int ctrl_msg_progress(struct ctrl_out *o, uint64_t pages, uint64_t bytes, uint64_t faults)
{
	Progress *b = &o->body.progress;

	out_reset(o, RDMIG_MSG__BODY_PROGRESS);
	progress__init(b);
	b->pages = pages;
	b->bytes = bytes;
	b->faults = faults;
	o->msg.progress = b;
	return 0;
}

int ctrl_msg_fault_lane(struct ctrl_out *o, uint32_t qpn, uint32_t psn)
{
	FaultLane *b = &o->body.fault_lane;

	out_reset(o, RDMIG_MSG__BODY_FAULT_LANE);
	fault_lane__init(b);
	b->qpn = qpn;
	b->psn = psn;
	o->msg.fault_lane = b;
	return 0;
}

int ctrl_msg_drain_lane(struct ctrl_out *o, uint32_t index, uint32_t qpn, uint32_t psn)
{
	DrainLane *b = &o->body.drain_lane;

	out_reset(o, RDMIG_MSG__BODY_DRAIN_LANE);
	drain_lane__init(b);
	b->index = index;
	b->qpn = qpn;
	b->psn = psn;
	o->msg.drain_lane = b;
	return 0;
}

int ctrl_msg_attach(struct ctrl_out *o, bool resume, bool page_hashes)
{
	Attach *b = &o->body.attach;

	out_reset(o, RDMIG_MSG__BODY_ATTACH);
	attach__init(b);
	b->resume = resume;
	if (page_hashes) {
		b->has_page_hashes = true;
		b->page_hashes = true;
	}
	o->msg.attach = b;
	return 0;
}

int ctrl_msg_running(struct ctrl_out *o)
{
	Running *b = &o->body.running;

	out_reset(o, RDMIG_MSG__BODY_RUNNING);
	running__init(b);
	o->msg.running = b;
	return 0;
}

int ctrl_msg_rc_connect(struct ctrl_out *o, uint32_t qpn, uint32_t psn,
			const uint8_t gid[CTRL_GID_LEN], uint32_t mtu, uint32_t rd_atomic)
{
	RcConnect *b = &o->body.rc_connect;

	out_reset(o, RDMIG_MSG__BODY_RC_CONNECT);
	rc_connect__init(b);
	b->qpn = qpn;
	b->psn = psn;
	b->gid.data = (uint8_t *)gid;
	b->gid.len = CTRL_GID_LEN;
	b->mtu = mtu;
	b->rd_atomic = rd_atomic;
	o->msg.rc_connect = b;
	return 0;
}

int ctrl_msg_keepalive(struct ctrl_out *o, uint64_t seq, uint64_t time_ns)
{
	Keepalive *b = &o->body.keepalive;

	out_reset(o, RDMIG_MSG__BODY_KEEPALIVE);
	keepalive__init(b);
	b->seq = seq;
	b->time_ns = time_ns;
	o->msg.keepalive = b;
	return 0;
}

int ctrl_msg_done(struct ctrl_out *o, const struct ctrl_done *d)
{
	Done *b = &o->body.done;

	out_reset(o, RDMIG_MSG__BODY_DONE);
	done__init(b);
	b->pages = d->pages;
	b->bytes = d->bytes;
	b->ranges_verified = d->ranges_verified;
	b->digest = d->digest;
	o->msg.done = b;
	return 0;
}

int ctrl_msg_done_ack(struct ctrl_out *o, bool ok, const char *reason)
{
	DoneAck *b = &o->body.done_ack;

	out_reset(o, RDMIG_MSG__BODY_DONE_ACK);
	done_ack__init(b);
	b->ok = ok;
	b->reason = (char *)reason;
	o->msg.done_ack = b;
	return 0;
}

int ctrl_msg_stage_region(struct ctrl_out *o, int32_t pid, const struct ctrl_range *r,
			  const uint64_t *tags, size_t n_tags)
{
	StageRegion *b = &o->body.stage_region;

	out_reset(o, RDMIG_MSG__BODY_STAGE_REGION);
	if (n_tags > CTRL_STAGE_UNIT / CTRL_PAGE_SIZE_MIN || (n_tags && !tags))
		return -EINVAL;
	stage_region__init(b);
	b->n_page_tags = n_tags;
	b->page_tags = (uint64_t *)tags;
	b->pid = pid;
	b->img_vaddr = r->img_vaddr;
	b->len = r->len;
	b->has_remote_addr = b->has_rkey = r->has_remote;
	b->remote_addr = r->remote_addr;
	b->rkey = r->rkey;
	b->xxh3 = r->xxh3;
	o->msg.stage_region = b;
	return 0;
}

int ctrl_msg_stage_req(struct ctrl_out *o, int32_t pid, uint64_t img_vaddr)
{
	StageReq *b = &o->body.stage_req;

	out_reset(o, RDMIG_MSG__BODY_STAGE_REQ);
	stage_req__init(b);
	b->pid = pid;
	b->img_vaddr = img_vaddr;
	o->msg.stage_req = b;
	return 0;
}

uint64_t ctrl_digest_add(uint64_t digest, uint64_t range_xxh3)
{
	uint8_t le[8];

	/* Little-endian on the wire's behalf, so both ends agree on any host. */
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(range_xxh3 >> (8 * i));
	return XXH3_64bits_withSeed(le, sizeof(le), digest);
}

/* ---- validators ------------------------------------------------------------ */

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static bool aligned(uint64_t v, uint32_t page_size)
{
	return (v & ((uint64_t)page_size - 1)) == 0;
}

static bool name_char(char c, bool allow_plus)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-' || (allow_plus && c == '+');
}

int ctrl_validate_file_name(const char *name, struct ctrl_err *e)
{
	size_t len;

	if (!name)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "file name missing");
	len = strnlen(name, CTRL_FILE_NAME_MAX + 1);
	if (len == 0)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "empty file name");
	if (len > CTRL_FILE_NAME_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "file name longer than %d bytes",
			       CTRL_FILE_NAME_MAX);
	/* Names are logged: say which rule failed, never echo the raw bytes. */
	for (size_t i = 0; i < len; i++)
		if (!name_char(name[i], true))
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "file name has a forbidden byte 0x%02x at %zu",
				       (unsigned char)name[i], i);
	if (name[0] == '.')
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "file name \"%s\" starts with '.'",
			       name);
	if (strstr(name, ".."))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "file name \"%s\" contains \"..\"",
			       name);
	/* The receiver creates the file: only the names CRIU writes (imgname.h). */
	if (!imgname_allowed(name))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "file name \"%s\" is not one CRIU writes into an images directory",
			       name);
	return 0;
}

int ctrl_validate_migration_id(const char *id, struct ctrl_err *e)
{
	size_t len;

	if (!id)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "migration id missing");
	len = strnlen(id, CTRL_MIGRATION_ID_MAX + 1);
	if (len == 0 || len > CTRL_MIGRATION_ID_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "migration id must be 1..%d bytes",
			       CTRL_MIGRATION_ID_MAX);
	for (size_t i = 0; i < len; i++)
		if (!name_char(id[i], false))
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "migration id has a forbidden byte 0x%02x at %zu",
				       (unsigned char)id[i], i);
	/* The one rule of every id (util.h); above, only the detail for the message. */
	if (!migration_id_valid(id))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "migration id must start with a letter or a digit");
	return 0;
}

int ctrl_validate_text(const char *s, size_t max, const char *what, struct ctrl_err *e)
{
	size_t len;

	if (!s)
		return 0;
	len = strnlen(s, max + 1);
	if (len > max)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "%s longer than %zu bytes", what,
			       max);
	/* Peer text ends up in logs: no control characters or escape sequences. */
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "%s has a non-printable byte 0x%02x at %zu", what,
				       (unsigned char)s[i], i);
	return 0;
}

int ctrl_validate_hello(const Hello *h, struct ctrl_err *e)
{
	int ret;

	if (h->min_version < 1 || h->min_version > h->max_version)
		return err_set(e, CTRL_ABORT_VERSION, -EINVAL,
			       "Hello: version range %" PRIu32 "..%" PRIu32 " is invalid",
			       h->min_version, h->max_version);
	if (h->role != ROLE__ROLE_SOURCE && h->role != ROLE__ROLE_DEST)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "Hello: invalid role %d",
			       (int)h->role);
	if (h->channel != CHANNEL__CHANNEL_CONTROL && h->channel != CHANNEL__CHANNEL_DATA &&
	    h->channel != CHANNEL__CHANNEL_RC_SIDE)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "Hello: invalid channel %d",
			       (int)h->channel);
	ret = ctrl_validate_migration_id(h->migration_id, e);
	if (ret < 0)
		return ret;
	if (h->nonce.len != AUTH_NONCE_LEN)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "Hello: nonce of %zu bytes, expected %d", h->nonce.len,
			       AUTH_NONCE_LEN);
	if (!is_pow2(h->page_size) || h->page_size < CTRL_PAGE_SIZE_MIN ||
	    h->page_size > CTRL_PAGE_SIZE_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "Hello: invalid page size %" PRIu32,
			       h->page_size);
	return ctrl_validate_text(h->agent_version, CTRL_AGENT_VERSION_MAX, "Hello.agent_version",
				  e);
}

static int check_page_size(uint32_t page_size, const char *what, struct ctrl_err *e)
{
	if (!is_pow2(page_size))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "%s before a page size is agreed",
			       what);
	return 0;
}

int ctrl_validate_image_file(const ImageFile *f, uint32_t page_size, struct ctrl_err *e)
{
	uint64_t data_len = f->has_data ? f->data.len : 0;
	uint64_t end;
	int ret;

	ret = ctrl_validate_file_name(f->name, e);
	if (ret < 0)
		return ret;
	ret = check_page_size(page_size, "ImageFile", e);
	if (ret < 0)
		return ret;
	if (f->total_size > CTRL_FILE_SIZE_MAX)
		return err_set(e, CTRL_ABORT_IMAGES, -ERANGE,
			       "ImageFile %s: total size %" PRIu64 " over the limit", f->name,
			       f->total_size);
	if (data_len > CTRL_FILE_CHUNK_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
			       "ImageFile %s: chunk of %" PRIu64 " bytes over %u", f->name,
			       data_len, CTRL_FILE_CHUNK_MAX);
	if (f->offset > f->total_size || data_len > f->total_size - f->offset)
		return err_set(e, CTRL_ABORT_IMAGES, -ERANGE,
			       "ImageFile %s: data [%" PRIu64 ", +%" PRIu64
			       ") beyond the file size %" PRIu64,
			       f->name, f->offset, data_len, f->total_size);
	if (f->has_flags && (f->flags & ~CTRL_IMAGE_FILE_LAST))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "ImageFile %s: unknown flags 0x%" PRIx32, f->name, f->flags);
	if (f->n_holes > CTRL_HOLES_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE, "ImageFile %s: %zu holes over %d",
			       f->name, f->n_holes, CTRL_HOLES_MAX);
	end = f->offset + data_len;
	for (size_t i = 0; i < f->n_holes; i++) {
		const Hole *h = f->holes[i];

		if (h->len == 0 || !aligned(h->offset, page_size) || !aligned(h->len, page_size))
			return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
				       "ImageFile %s: hole %zu [%" PRIu64 ", +%" PRIu64
				       ") empty or not page aligned",
				       f->name, i, h->offset, h->len);
		if (h->offset < end)
			return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
				       "ImageFile %s: hole %zu at %" PRIu64
				       " overlaps the data or an earlier hole (ends %" PRIu64 ")",
				       f->name, i, h->offset, end);
		if (h->offset > f->total_size || h->len > f->total_size - h->offset)
			return err_set(e, CTRL_ABORT_IMAGES, -ERANGE,
				       "ImageFile %s: hole %zu beyond the file size %" PRIu64,
				       f->name, i, f->total_size);
		end = h->offset + h->len;
	}
	return 0;
}

int ctrl_validate_regions(const MemRegions *r, struct ctrl_err *e)
{
	if (r->n_regions == 0 || r->n_regions > CTRL_REGIONS_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
			       "MemRegions: %zu regions, expected 1..%d", r->n_regions,
			       CTRL_REGIONS_MAX);
	for (size_t i = 0; i < r->n_regions; i++) {
		const MemRegion *g = r->regions[i];

		if (g->len == 0 || g->addr > UINT64_MAX - g->len)
			return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
				       "MemRegions: region %zu [0x%" PRIx64 ", +%" PRIu64
				       ") is empty or wraps",
				       i, g->addr, g->len);
	}
	return 0;
}

/* FEAT_ROUNDS: the regions' own rules, each with its XXH3, a round counted from 1. */
static int validate_round_pages(const RoundPages *rp, struct ctrl_err *e)
{
	MemRegions as = MEM_REGIONS__INIT;
	int ret;

	if (rp->round == 0)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "RoundPages: round 0");
	as.n_regions = rp->n_regions;
	as.regions = rp->regions;
	ret = ctrl_validate_regions(&as, e);
	for (size_t i = 0; ret == 0 && i < rp->n_regions; i++)
		if (!rp->regions[i]->has_xxh3)
			ret = err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				      "RoundPages: region %zu without its XXH3", i);
	return ret;
}

static bool region_contains(const struct ctrl_region *regions, size_t n, uint32_t rkey,
			    uint64_t addr, uint64_t len)
{
	for (size_t i = 0; i < n; i++) {
		const struct ctrl_region *g = &regions[i];
		uint64_t off;

		if (g->rkey != rkey || addr < g->addr)
			continue;
		off = addr - g->addr;
		if (off <= g->len && len <= g->len - off)
			return true;
	}
	return false;
}

/* An image address range: page aligned, not empty, below CTRL_VADDR_LIMIT. */
static bool vrange_ok(uint64_t vaddr, uint64_t len, uint32_t page_size)
{
	return len > 0 && aligned(vaddr, page_size) && aligned(len, page_size) &&
	       vaddr < CTRL_VADDR_LIMIT && len <= CTRL_VADDR_LIMIT - vaddr;
}

int ctrl_validate_ranges(LazyRange *const *r, size_t n, uint32_t page_size, bool need_remote,
			 const struct ctrl_region *regions, size_t nr_regions, struct ctrl_err *e)
{
	uint64_t prev_end = 0;
	int ret;

	ret = check_page_size(page_size, "TaskTable", e);
	if (ret < 0)
		return ret;
	if (n > CTRL_RANGES_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE, "TaskTable: %zu ranges over %d", n,
			       CTRL_RANGES_MAX);
	for (size_t i = 0; i < n; i++) {
		const LazyRange *g = r[i];
		bool has_remote = g->has_remote_addr || g->has_rkey;

		if (!vrange_ok(g->img_vaddr, g->len, page_size))
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "TaskTable: range %zu [0x%" PRIx64 ", +0x%" PRIx64
				       ") empty, not page aligned or out of the address space",
				       i, g->img_vaddr, g->len);
		if (i > 0 && g->img_vaddr < prev_end)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "TaskTable: range %zu at 0x%" PRIx64
				       " is unsorted or overlaps the previous one (ends 0x%" PRIx64
				       ")",
				       i, g->img_vaddr, prev_end);
		prev_end = g->img_vaddr + g->len;
		if (!need_remote) {
			if (has_remote)
				return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
					       "TaskTable: range %zu carries a remote address "
					       "without RDMA",
					       i);
			continue;
		}
		if (!g->has_remote_addr || !g->has_rkey)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "TaskTable: range %zu lacks its remote address or rkey", i);
		if (!region_contains(regions, nr_regions, g->rkey, g->remote_addr, g->len))
			return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
				       "TaskTable: range %zu remote [0x%" PRIx64 ", +0x%" PRIx64
				       ") rkey 0x%" PRIx32 " is outside every announced region",
				       i, g->remote_addr, g->len, g->rkey);
	}
	return 0;
}

static int validate_pid(int32_t pid, const char *what, struct ctrl_err *e)
{
	if (pid <= 0)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "%s: invalid pid %" PRId32, what,
			       pid);
	return 0;
}

static int validate_known(const struct ctrl_state *st, int32_t pid, uint64_t vaddr, uint64_t len,
			  const char *what, struct ctrl_err *e)
{
	if (st->range_known && !st->range_known(st->range_arg, pid, vaddr, len))
		return err_set(e, CTRL_ABORT_PROTOCOL, -ESRCH,
			       "%s: pid %" PRId32 " [0x%" PRIx64 ", +0x%" PRIx64
			       ") is not a lazy range of this migration",
			       what, pid, vaddr, len);
	return 0;
}

static int validate_task_table(const struct ctrl_state *st, const TaskTable *t, struct ctrl_err *e)
{
	int ret;

	ret = validate_pid(t->pid, "TaskTable", e);
	if (ret < 0)
		return ret;
	if (t->has_flags && (t->flags & ~CTRL_TASK_TABLE_LAST))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "TaskTable pid %" PRId32 ": unknown flags 0x%" PRIx32, t->pid,
			       t->flags);
	/* A lazy dump's ranges get their remote address when staged (StageRegion). */
	return ctrl_validate_ranges(t->ranges, t->n_ranges, st->neg.page_size,
				    (st->neg.features & CTRL_FEAT_RDMA_READ) &&
					!(st->neg.features & CTRL_FEAT_LAZY_DUMP),
				    st->regions, st->nr_regions, e);
}

/*
 * StageRegion: one known range, its remote bytes (RDMA) inside an
 * announced region; the same rules as a TaskTable range, which it
 * completes.
 */
static int validate_stage_region(const struct ctrl_state *st, const StageRegion *r,
				 struct ctrl_err *e)
{
	LazyRange g = LAZY_RANGE__INIT;
	LazyRange *gp = &g;
	uint64_t want;
	int ret;

	ret = validate_pid(r->pid, "StageRegion", e);
	if (ret < 0)
		return ret;
	g.img_vaddr = r->img_vaddr;
	g.len = r->len;
	g.has_remote_addr = r->has_remote_addr;
	g.remote_addr = r->remote_addr;
	g.has_rkey = r->has_rkey;
	g.rkey = r->rkey;
	g.xxh3 = r->xxh3;
	ret =
	    ctrl_validate_ranges(&gp, 1, st->neg.page_size, st->neg.features & CTRL_FEAT_RDMA_READ,
				 st->regions, st->nr_regions, e);
	if (ret < 0)
		return ret;
	/* A tag per page with page tags, none without (len is page aligned by now). */
	want = st->neg.features & CTRL_FEAT_VERIFY_PAGES ? r->len / st->neg.page_size : 0;
	if (r->n_page_tags != want)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "StageRegion pid %" PRId32 " at 0x%" PRIx64
			       ": %zu page tags, want %" PRIu64,
			       r->pid, r->img_vaddr, r->n_page_tags, want);
	return validate_known(st, r->pid, r->img_vaddr, r->len, "StageRegion", e);
}

/* Values a queue pair can be moved to RTR/RTS with; the GID is a real address. */
static int validate_rc_connect(const RcConnect *r, struct ctrl_err *e)
{
	static const uint8_t zero[CTRL_GID_LEN];

	if (r->qpn == 0 || r->qpn > 0xffffff || r->psn > 0xffffff)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "RcConnect qpn %" PRIu32 " psn %" PRIu32 " out of range", r->qpn,
			       r->psn);
	if (r->gid.len != CTRL_GID_LEN || memcmp(r->gid.data, zero, CTRL_GID_LEN) == 0)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "RcConnect gid of %zu bytes (or zero): want %d", r->gid.len,
			       CTRL_GID_LEN);
	if (r->mtu < CTRL_RC_MTU_MIN || r->mtu > CTRL_RC_MTU_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "RcConnect mtu %" PRIu32 " is no ibv_mtu (%d..%d)", r->mtu,
			       CTRL_RC_MTU_MIN, CTRL_RC_MTU_MAX);
	if (r->rd_atomic == 0 || r->rd_atomic > 255)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "RcConnect rd_atomic %" PRIu32 " out of 1..255", r->rd_atomic);
	return 0;
}

static int validate_stage_req(const struct ctrl_state *st, const StageReq *r, struct ctrl_err *e)
{
	uint32_t ps = st->neg.page_size;
	int ret;

	ret = validate_pid(r->pid, "StageReq", e);
	if (ret == 0)
		ret = check_page_size(ps, "StageReq", e);
	if (ret < 0)
		return ret;
	if (!vrange_ok(r->img_vaddr, ps, ps))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "StageReq pid %" PRId32 ": 0x%" PRIx64
			       " not page aligned or out of the address space",
			       r->pid, r->img_vaddr);
	return validate_known(st, r->pid, r->img_vaddr, ps, "StageReq", e);
}

static int validate_page_hashes(const struct ctrl_state *st, const PageHashes *p,
				struct ctrl_err *e)
{
	uint32_t ps = st->neg.page_size;
	int ret;

	ret = validate_pid(p->pid, "PageHashes", e);
	if (ret == 0)
		ret = check_page_size(ps, "PageHashes", e);
	if (ret < 0)
		return ret;
	if (p->n_hashes == 0 || p->n_hashes > CTRL_PAGE_HASHES_MAX)
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
			       "PageHashes pid %" PRId32 ": %zu hashes, expected 1..%d", p->pid,
			       p->n_hashes, CTRL_PAGE_HASHES_MAX);
	/* n_hashes * page size cannot overflow: both are small. */
	if (!vrange_ok(p->first_vaddr, (uint64_t)p->n_hashes * ps, ps))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "PageHashes pid %" PRId32 ": first page 0x%" PRIx64
			       " not aligned or out of the address space",
			       p->pid, p->first_vaddr);
	return validate_known(st, p->pid, p->first_vaddr, (uint64_t)p->n_hashes * ps, "PageHashes",
			      e);
}

static int validate_read_req(const struct ctrl_state *st, const ReadReq *r, struct ctrl_err *e)
{
	uint32_t ps = st->neg.page_size;
	int ret;

	ret = validate_pid(r->pid, "ReadReq", e);
	if (ret == 0)
		ret = check_page_size(ps, "ReadReq", e);
	if (ret < 0)
		return ret;
	if (r->len > CTRL_READ_MAX || !vrange_ok(r->img_vaddr, r->len, ps))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "ReadReq pid %" PRId32 " [0x%" PRIx64 ", +0x%" PRIx32
			       "): empty, over %u bytes, or not page aligned",
			       r->pid, r->img_vaddr, r->len, CTRL_READ_MAX);
	return validate_known(st, r->pid, r->img_vaddr, r->len, "ReadReq", e);
}

static int validate_read_resp(const ReadResp *r, struct ctrl_err *e)
{
	size_t len = r->has_data ? r->data.len : 0;

	/* Linux errno values stay below 4096. */
	if (r->status > 0 || r->status < -4095)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "ReadResp cookie %" PRIu64 ": invalid status %" PRId32, r->cookie,
			       r->status);
	if (r->status == 0 && (len == 0 || len > CTRL_READ_MAX))
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
			       "ReadResp cookie %" PRIu64 ": %zu bytes of data, expected 1..%u",
			       r->cookie, len, CTRL_READ_MAX);
	if (r->status < 0 && len)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
			       "ReadResp cookie %" PRIu64 ": data with error status %" PRId32,
			       r->cookie, r->status);
	return 0;
}

int ctrl_validate(const struct ctrl_state *st, const RdmigMsg *m, struct ctrl_err *e)
{
	switch (m->body_case) {
	case RDMIG_MSG__BODY_HELLO:
		return ctrl_validate_hello(m->hello, e);
	case RDMIG_MSG__BODY_AUTH_PROOF:
		if (m->auth_proof->hmac.len != AUTH_PROOF_LEN)
			return err_set(e, CTRL_ABORT_AUTH, -EINVAL,
				       "AuthProof of %zu bytes, expected %d",
				       m->auth_proof->hmac.len, AUTH_PROOF_LEN);
		return 0;
	case RDMIG_MSG__BODY_AUTH_RESULT:
		return ctrl_validate_text(m->auth_result->reason, CTRL_TEXT_MAX,
					  "AuthResult.reason", e);
	case RDMIG_MSG__BODY_ABORT:
		return ctrl_validate_text(m->abort->reason, CTRL_TEXT_MAX, "Abort.reason", e);
	case RDMIG_MSG__BODY_MEM_REGIONS:
		return ctrl_validate_regions(m->mem_regions, e);
	case RDMIG_MSG__BODY_ROUND_PAGES:
		return validate_round_pages(m->round_pages, e);
	case RDMIG_MSG__BODY_ROUNDS_COPIED:
		if (m->rounds_copied->round == 0)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "RoundsCopied: round 0");
		return 0;
	case RDMIG_MSG__BODY_IMAGE_FILE:
		return ctrl_validate_image_file(m->image_file, st->neg.page_size, e);
	case RDMIG_MSG__BODY_TASK_TABLE:
		return validate_task_table(st, m->task_table, e);
	case RDMIG_MSG__BODY_PAGE_HASHES:
		return validate_page_hashes(st, m->page_hashes, e);
	case RDMIG_MSG__BODY_READ_REQ:
		return validate_read_req(st, m->read_req, e);
	case RDMIG_MSG__BODY_READ_RESP:
		return validate_read_resp(m->read_resp, e);
	case RDMIG_MSG__BODY_STAGE_REGION:
		return validate_stage_region(st, m->stage_region, e);
	case RDMIG_MSG__BODY_STAGE_REQ:
		return validate_stage_req(st, m->stage_req, e);
	case RDMIG_MSG__BODY_DONE_ACK:
		return ctrl_validate_text(m->done_ack->reason, CTRL_TEXT_MAX, "DoneAck.reason", e);
	case RDMIG_MSG__BODY_FAULT_LANE:
		if (m->fault_lane->qpn == 0 || m->fault_lane->qpn > 0xffffff ||
		    m->fault_lane->psn > 0xffffff)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "FaultLane qpn %" PRIu32 " psn %" PRIu32 " out of range",
				       m->fault_lane->qpn, m->fault_lane->psn);
		return 0;
	case RDMIG_MSG__BODY_DRAIN_LANE:
		if (m->drain_lane->index == 0 || m->drain_lane->index >= CTRL_DRAIN_QPS_MAX ||
		    m->drain_lane->qpn == 0 || m->drain_lane->qpn > 0xffffff ||
		    m->drain_lane->psn > 0xffffff)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL,
				       "DrainLane index %" PRIu32 " qpn %" PRIu32 " psn %" PRIu32
				       " out of range",
				       m->drain_lane->index, m->drain_lane->qpn,
				       m->drain_lane->psn);
		return 0;
	case RDMIG_MSG__BODY_RC_CONNECT:
		return validate_rc_connect(m->rc_connect, e);
	case RDMIG_MSG__BODY_IMAGES_DONE:
	case RDMIG_MSG__BODY_ROUNDS_STOP:
	case RDMIG_MSG__BODY_ATTACH:
	case RDMIG_MSG__BODY_RUNNING:
	case RDMIG_MSG__BODY_PROGRESS:
	case RDMIG_MSG__BODY_KEEPALIVE:
	case RDMIG_MSG__BODY_DONE:
		return 0;
	case RDMIG_MSG__BODY__NOT_SET:
	default:
		break;
	}
	return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "message without a known body (case %d)",
		       (int)m->body_case);
}

/* ---- state ------------------------------------------------------------ */

#define PH(x)	     (1u << CTRL_PH_##x)
#define PH_AUTHED    (PH(IMAGES) | PH(POSTCOPY) | PH(DONE))
#define PH_NOT_CLOSE (((1u << CTRL_PH_COUNT) - 1) & ~PH(CLOSED))

/*
 * Who may send what in which phase: the table of docs/protocol.md.
 * data: also legal on a data channel (which skips the image phase); side:
 * legal on an RC side channel (which skips it too).
 */
static const struct {
	uint16_t source, dest;
	uint64_t feature; /* required negotiated feature, or 0 */
	bool data;
	bool side;
} legal[] = {
    [RDMIG_MSG__BODY_HELLO] = {PH(HELLO), PH(HELLO), 0, true, true},
    [RDMIG_MSG__BODY_AUTH_PROOF] = {PH(SOURCE_PROOF), PH(DEST_PROOF), 0, true, true},
    [RDMIG_MSG__BODY_AUTH_RESULT] = {PH(SOURCE_RESULT), PH(DEST_RESULT), 0, true, true},
    [RDMIG_MSG__BODY_ABORT] = {PH_NOT_CLOSE, PH_NOT_CLOSE, 0, true, true},
    /* In post-copy only with FEAT_LATE_REGIONS (state_legal()). */
    [RDMIG_MSG__BODY_MEM_REGIONS] = {PH(IMAGES) | PH(POSTCOPY), 0, CTRL_FEAT_RDMA_READ, false},
    [RDMIG_MSG__BODY_IMAGE_FILE] = {PH(IMAGES), 0, 0, false},
    [RDMIG_MSG__BODY_TASK_TABLE] = {PH(IMAGES), 0, 0, false},
    [RDMIG_MSG__BODY_PAGE_HASHES] = {PH(IMAGES), 0, CTRL_FEAT_VERIFY_PAGES, false},
    [RDMIG_MSG__BODY_IMAGES_DONE] = {PH(IMAGES), 0, 0, false},
    [RDMIG_MSG__BODY_READ_REQ] = {0, PH(POSTCOPY), CTRL_FEAT_TCP_READ, true},
    [RDMIG_MSG__BODY_READ_RESP] = {PH(POSTCOPY) | PH(DONE), 0, CTRL_FEAT_TCP_READ, true},
    [RDMIG_MSG__BODY_PROGRESS] = {0, PH(POSTCOPY), 0, false},
    [RDMIG_MSG__BODY_KEEPALIVE] = {PH_AUTHED, PH_AUTHED, 0, true, true},
    [RDMIG_MSG__BODY_DONE] = {0, PH(POSTCOPY), 0, false},
    /* In the image phase only as the answer to Attach{resume} (state_apply()). */
    [RDMIG_MSG__BODY_DONE_ACK] = {PH(IMAGES) | PH(DONE), 0, 0, false},
    [RDMIG_MSG__BODY_STAGE_REGION] = {PH(POSTCOPY) | PH(DONE), 0, CTRL_FEAT_LAZY_DUMP, false},
    [RDMIG_MSG__BODY_STAGE_REQ] = {0, PH(POSTCOPY), CTRL_FEAT_LAZY_DUMP, false},
    /* Only before the first image or region (state_apply()): the session is held. */
    [RDMIG_MSG__BODY_ROUND_PAGES] = {PH(IMAGES), 0, CTRL_FEAT_ROUNDS, false},
    /* Sent in the image phase; it may cross the source's ImagesDone. */
    [RDMIG_MSG__BODY_ROUNDS_COPIED] = {0, PH(IMAGES) | PH(POSTCOPY), CTRL_FEAT_ROUNDS, false},
    /* Like RoundPages: only on a held session (state_apply()). */
    [RDMIG_MSG__BODY_ROUNDS_STOP] = {PH(IMAGES), 0, CTRL_FEAT_ROUNDS, false},
    /* The source's answer may cross the destination's Done (a resume with nothing left). */
    [RDMIG_MSG__BODY_FAULT_LANE] = {PH(IMAGES) | PH(POSTCOPY) | PH(DONE), PH(IMAGES) | PH(POSTCOPY),
				    CTRL_FEAT_FAULT_LANE, false},
    [RDMIG_MSG__BODY_ATTACH] = {0, PH(IMAGES), CTRL_FEAT_RESUME, false},
    [RDMIG_MSG__BODY_RUNNING] = {0, PH(POSTCOPY), CTRL_FEAT_RESUME, false},
    [RDMIG_MSG__BODY_RC_CONNECT] = {PH(POSTCOPY), PH(POSTCOPY), CTRL_FEAT_RC_SIDE, false, true},
    /* Like FaultLane: the answer may cross the destination's Done. */
    [RDMIG_MSG__BODY_DRAIN_LANE] = {PH(IMAGES) | PH(POSTCOPY) | PH(DONE), PH(IMAGES) | PH(POSTCOPY),
				    CTRL_FEAT_DRAIN_QPS, false},
};

static enum ctrl_role role_other(enum ctrl_role r)
{
	return r == CTRL_ROLE_SOURCE ? CTRL_ROLE_DEST : CTRL_ROLE_SOURCE;
}

void ctrl_state_init(struct ctrl_state *st, enum ctrl_role self, const char *peer_name)
{
	memset(st, 0, sizeof(*st));
	st->self = self;
	st->phase = CTRL_PH_HELLO;
	st->peer_name = peer_name ? peer_name : "peer";
}

void ctrl_state_set_range_check(struct ctrl_state *st, ctrl_range_known_fn fn, void *arg)
{
	st->range_known = fn;
	st->range_arg = arg;
}

static int state_legal(const struct ctrl_state *st, enum ctrl_role sender, RdmigMsg__BodyCase type,
		       struct ctrl_err *e)
{
	const char *name = ctrl_msg_type_str(type);
	uint16_t phases;

	if (!type_known((int)type))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO, "%s", name);
	phases = sender == CTRL_ROLE_SOURCE ? legal[type].source : legal[type].dest;
	if (!(phases & (1u << st->phase)))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
			       "%s from the %s is illegal in phase %s", name, ctrl_role_str(sender),
			       ctrl_phase_str(st->phase));
	if (type == RDMIG_MSG__BODY_HELLO &&
	    (sender == st->self ? st->mine.present : st->theirs.present))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO, "second Hello from the %s",
			       ctrl_role_str(sender));
	if (!st->negotiated)
		return 0;
	if (legal[type].feature && !(st->neg.features & legal[type].feature))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
			       "%s needs a feature that was not negotiated", name);
	if (st->neg.channel == CTRL_CHANNEL_DATA && !legal[type].data)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO, "%s is illegal on a data channel",
			       name);
	/* An RC side channel says where a queue pair is, and nothing else (§7.4). */
	if (st->neg.channel == CTRL_CHANNEL_RC_SIDE && !legal[type].side)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
			       "%s is illegal on an RC side channel", name);
	if (st->neg.channel != CTRL_CHANNEL_RC_SIDE && type == RDMIG_MSG__BODY_RC_CONNECT)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
			       "RcConnect is legal only on an RC side channel");
	if (type == RDMIG_MSG__BODY_MEM_REGIONS && st->phase == CTRL_PH_POSTCOPY &&
	    (st->neg.features & (CTRL_FEAT_LATE_REGIONS | CTRL_FEAT_LAZY_DUMP)) !=
		(CTRL_FEAT_LATE_REGIONS | CTRL_FEAT_LAZY_DUMP))
		return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
			       "MemRegions in post-copy needs FEAT_LATE_REGIONS with a lazy dump");
	return 0;
}

int ctrl_state_accept(const struct ctrl_state *st, RdmigMsg__BodyCase type)
{
	return state_legal(st, role_other(st->self), type, NULL);
}

int ctrl_state_may_send(const struct ctrl_state *st, RdmigMsg__BodyCase type)
{
	return state_legal(st, st->self, type, NULL);
}

static void hello_record(struct ctrl_hello_seen *s, const Hello *h)
{
	s->present = true;
	s->role = (enum ctrl_role)h->role;
	s->a.min_version = h->min_version;
	s->a.max_version = h->max_version;
	s->a.features = h->features;
	s->a.page_size = h->page_size;
	s->a.channel = (uint32_t)h->channel;
	memcpy(s->a.nonce, h->nonce.data, AUTH_NONCE_LEN);
	snprintf(s->migration_id, sizeof(s->migration_id), "%s", h->migration_id);
}

/* Both Hellos known: agree on everything or name the mismatch. */
static int hello_negotiate(const struct ctrl_hello_seen *a, const struct ctrl_hello_seen *b,
			   struct ctrl_negotiated *neg, struct ctrl_err *e)
{
	uint32_t lo = a->a.min_version > b->a.min_version ? a->a.min_version : b->a.min_version;
	uint32_t hi = a->a.max_version < b->a.max_version ? a->a.max_version : b->a.max_version;

	/* Whatever the Hellos offer, never a version without the MAC (found by fuzz_ctrl). */
	if (lo < CTRL_PROTO_MIN_VERSION)
		lo = CTRL_PROTO_MIN_VERSION;
	if (hi > CTRL_PROTO_VERSION)
		hi = CTRL_PROTO_VERSION;
	if (lo > hi)
		return err_set(e, CTRL_ABORT_VERSION, -EPROTONOSUPPORT,
			       "no common protocol version: %" PRIu32 "..%" PRIu32
			       " against %" PRIu32 "..%" PRIu32,
			       a->a.min_version, a->a.max_version, b->a.min_version,
			       b->a.max_version);
	if (strcmp(a->migration_id, b->migration_id) != 0)
		return err_set(e, CTRL_ABORT_MIGRATION, -EINVAL,
			       "migration id \"%s\" does not match \"%s\"", b->migration_id,
			       a->migration_id);
	if (a->a.page_size != b->a.page_size)
		return err_set(e, CTRL_ABORT_MIGRATION, -EINVAL,
			       "page size %" PRIu32 " does not match %" PRIu32, b->a.page_size,
			       a->a.page_size);
	if (a->a.channel != b->a.channel)
		return err_set(e, CTRL_ABORT_PROTOCOL, -EINVAL, "channel kinds differ");
	/* An echoed nonce is a reflection attempt: the proofs would be computable from ours. */
	if (memcmp(a->a.nonce, b->a.nonce, AUTH_NONCE_LEN) == 0)
		return err_set(e, CTRL_ABORT_AUTH, -EACCES, "the peer's nonce equals ours");
	neg->version = hi;
	neg->features = a->a.features & b->a.features;
	neg->page_size = a->a.page_size;
	neg->channel = (enum ctrl_channel)a->a.channel;
	if (!(neg->features & (CTRL_FEAT_RDMA_READ | CTRL_FEAT_TCP_READ)))
		return err_set(e, CTRL_ABORT_FEATURES, -EPROTONOSUPPORT,
			       "no common page transport: features 0x%" PRIx64 " and 0x%" PRIx64,
			       a->a.features, b->a.features);
	return 0;
}

static int apply_hello(struct ctrl_state *st, enum ctrl_role sender, const Hello *h,
		       struct ctrl_err *e)
{
	struct ctrl_hello_seen *slot = sender == st->self ? &st->mine : &st->theirs;
	const struct ctrl_hello_seen *other = sender == st->self ? &st->theirs : &st->mine;
	struct ctrl_hello_seen seen = {0};
	struct ctrl_negotiated neg = {0};
	int ret;

	if ((enum ctrl_role)h->role != sender)
		return err_set(e, CTRL_ABORT_MIGRATION, -EINVAL,
			       "Hello from the %s claims the role %s", ctrl_role_str(sender),
			       ctrl_role_str((enum ctrl_role)h->role));
	hello_record(&seen, h);
	if (other->present) {
		ret = hello_negotiate(other, &seen, &neg, e);
		if (ret < 0)
			return ret;
		st->neg = neg;
		st->negotiated = true;
		st->phase = CTRL_PH_DEST_PROOF;
	}
	*slot = seen;
	return 0;
}

static int apply_image_file(struct ctrl_state *st, const ImageFile *f, struct ctrl_err *e)
{
	uint64_t end = f->offset + (f->has_data ? f->data.len : 0);

	if (f->n_holes)
		end = f->holes[f->n_holes - 1]->offset + f->holes[f->n_holes - 1]->len;
	if (st->file_open) {
		if (strcmp(f->name, st->file_name) != 0)
			return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
				       "ImageFile %s starts before %s is complete", f->name,
				       st->file_name);
		if (f->total_size != st->file_size || f->offset < st->file_next)
			return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
				       "ImageFile %s: chunk at %" PRIu64
				       " overlaps the previous one or changes the size",
				       f->name, f->offset);
	} else {
		snprintf(st->file_name, sizeof(st->file_name), "%s", f->name);
		st->file_size = f->total_size;
	}
	st->file_next = end;
	st->file_open = !(f->has_flags && (f->flags & CTRL_IMAGE_FILE_LAST));
	if (!st->file_open)
		st->files_done++;
	return 0;
}

static int apply_task_table(struct ctrl_state *st, const TaskTable *t, struct ctrl_err *e)
{
	uint64_t bytes = 0;

	if (st->table_open && t->pid != st->table_pid)
		return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
			       "TaskTable for pid %" PRId32 " before pid %" PRId32 " is complete",
			       t->pid, st->table_pid);
	if (st->table_open && t->n_ranges && t->ranges[0]->img_vaddr < st->table_next)
		return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
			       "TaskTable pid %" PRId32 ": range at 0x%" PRIx64
			       " overlaps the previous chunk",
			       t->pid, t->ranges[0]->img_vaddr);
	/* Each len < 2^57 and n <= 1024: the per-message sum cannot wrap. */
	for (size_t i = 0; i < t->n_ranges; i++)
		bytes += t->ranges[i]->len;
	if (st->lazy_bytes > UINT64_MAX - bytes)
		return err_set(e, CTRL_ABORT_IMAGES, -ERANGE, "lazy byte count overflows");
	st->lazy_bytes += bytes;
	if (!st->table_open)
		st->table_next = 0;
	if (t->n_ranges)
		st->table_next =
		    t->ranges[t->n_ranges - 1]->img_vaddr + t->ranges[t->n_ranges - 1]->len;
	st->table_pid = t->pid;
	st->table_open = !(t->has_flags && (t->flags & CTRL_TASK_TABLE_LAST));
	if (!st->table_open)
		st->tables_done++;
	return 0;
}

static int apply_images_done(struct ctrl_state *st, const ImagesDone *d, struct ctrl_err *e)
{
	if (st->file_open)
		return err_set(e, CTRL_ABORT_IMAGES, -EINVAL, "ImagesDone while %s is incomplete",
			       st->file_name);
	if (st->table_open)
		return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
			       "ImagesDone while the table of pid %" PRId32 " is incomplete",
			       st->table_pid);
	if (d->files != st->files_done || d->tasks != st->tables_done ||
	    d->lazy_bytes != st->lazy_bytes)
		return err_set(e, CTRL_ABORT_IMAGES, -EINVAL,
			       "ImagesDone announces %" PRIu32 " files, %" PRIu32 " tasks, %" PRIu64
			       " lazy bytes; the stream had %" PRIu32 ", %" PRIu32 ", %" PRIu64,
			       d->files, d->tasks, d->lazy_bytes, st->files_done, st->tables_done,
			       st->lazy_bytes);
	st->phase = CTRL_PH_POSTCOPY;
	return 0;
}

static int apply_regions(struct ctrl_state *st, const MemRegions *r, struct ctrl_err *e)
{
	if (r->n_regions > CTRL_REGIONS_MAX - st->nr_regions)
		return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE, "more than %d regions announced",
			       CTRL_REGIONS_MAX);
	for (size_t i = 0; i < r->n_regions; i++) {
		st->regions[st->nr_regions].addr = r->regions[i]->addr;
		st->regions[st->nr_regions].len = r->regions[i]->len;
		st->regions[st->nr_regions].rkey = r->regions[i]->rkey;
		st->nr_regions++;
	}
	return 0;
}

/*
 * The stream rules and phase changes of a message that is legal and
 * valid.  Checks come before any change, so a refused message leaves st
 * as it was.
 */
static int state_apply(struct ctrl_state *st, enum ctrl_role sender, const RdmigMsg *m,
		       struct ctrl_err *e)
{
	switch (m->body_case) {
	case RDMIG_MSG__BODY_HELLO:
		return apply_hello(st, sender, m->hello, e);
	case RDMIG_MSG__BODY_AUTH_PROOF:
		st->phase =
		    st->phase == CTRL_PH_DEST_PROOF ? CTRL_PH_SOURCE_RESULT : CTRL_PH_DEST_RESULT;
		return 0;
	case RDMIG_MSG__BODY_AUTH_RESULT:
		if (!m->auth_result->ok)
			st->phase = CTRL_PH_CLOSED;
		else if (st->phase == CTRL_PH_SOURCE_RESULT)
			st->phase = CTRL_PH_SOURCE_PROOF;
		else
			st->phase = st->neg.channel == CTRL_CHANNEL_CONTROL ? CTRL_PH_IMAGES
									    : CTRL_PH_POSTCOPY;
		return 0;
	case RDMIG_MSG__BODY_DONE_ACK:
		/* The lost-DoneAck case: a resume of a migration the source has finished. */
		if (st->phase == CTRL_PH_IMAGES &&
		    (!st->resume_attached || !m->done_ack->ok || st->nr_regions || st->file_open ||
		     st->files_done || st->table_open || st->tables_done))
			return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
				       "DoneAck in the image phase answers only Attach{resume}, "
				       "before any image, with ok");
		st->phase = CTRL_PH_CLOSED;
		return 0;
	case RDMIG_MSG__BODY_ABORT:
		st->phase = CTRL_PH_CLOSED;
		return 0;
	case RDMIG_MSG__BODY_ATTACH:
		st->resume_attached = m->attach->resume;
		return 0;
	case RDMIG_MSG__BODY_MEM_REGIONS:
		return apply_regions(st, m->mem_regions, e);
	case RDMIG_MSG__BODY_ROUND_PAGES:
	case RDMIG_MSG__BODY_ROUNDS_STOP:
		if (st->nr_regions || st->file_open || st->files_done || st->table_open ||
		    st->tables_done)
			return err_set(e, CTRL_ABORT_PROTOCOL, -EPROTO,
				       "%s after the checkpoint's images began",
				       ctrl_msg_type_str(m->body_case));
		if (m->body_case != RDMIG_MSG__BODY_ROUND_PAGES)
			return 0;
		if (m->round_pages->n_regions > CTRL_REGIONS_MAX - st->nr_round_regions)
			return err_set(e, CTRL_ABORT_PROTOCOL, -ERANGE,
				       "more than %d round regions announced", CTRL_REGIONS_MAX);
		st->nr_round_regions += m->round_pages->n_regions;
		return 0;
	case RDMIG_MSG__BODY_IMAGE_FILE:
		return apply_image_file(st, m->image_file, e);
	case RDMIG_MSG__BODY_TASK_TABLE:
		return apply_task_table(st, m->task_table, e);
	case RDMIG_MSG__BODY_IMAGES_DONE:
		return apply_images_done(st, m->images_done, e);
	case RDMIG_MSG__BODY_DONE:
		st->phase = CTRL_PH_DONE;
		return 0;
	default:
		return 0;
	}
}

int ctrl_state_send(struct ctrl_state *st, RdmigMsg *m)
{
	int ret;

	ret = state_legal(st, st->self, m->body_case, &st->err);
	if (ret < 0)
		goto out;
	if (m->body_case == RDMIG_MSG__BODY_AUTH_RESULT && m->auth_result->ok &&
	    !st->peer_verified) {
		ret = err_set(&st->err, CTRL_ABORT_INTERNAL, -EPERM,
			      "AuthResult ok before the peer's proof was verified");
		goto out;
	}
	ret = ctrl_validate(st, m, &st->err);
	if (ret < 0)
		goto out;
	ret = state_apply(st, st->self, m, &st->err);
	if (ret < 0)
		goto out;
	m->seq = ++st->send_seq;
out:
	if (ret < 0)
		log_err("refusing to send %s to %s: %s", ctrl_msg_type_str(m->body_case),
			st->peer_name, st->err.text);
	return ret;
}

int ctrl_state_encode(struct ctrl_state *st, RdmigMsg *m, uint8_t **buf, size_t *len)
{
	/* Decided before the message moves the phase: the dest's AuthResult goes unsealed. */
	bool seal = ctrl_state_authenticated(st);
	uint8_t *p = NULL;
	size_t n = 0;
	int ret;

	*buf = NULL;
	if (seal && !st->mac.ready) {
		ret = err_set(&st->err, CTRL_ABORT_INTERNAL, -EPERM, "no session keys");
		log_err("refusing to send %s to %s: %s", ctrl_msg_type_str(m->body_case),
			st->peer_name, st->err.text);
		return ret;
	}
	ret = ctrl_state_send(st, m);
	if (ret == 0)
		ret = pack_alloc(m, seal ? MSGAUTH_TAG_LEN : 0, &p, &n);
	if (ret == 0 && seal) {
		ret = msgauth_seal(&st->mac, p, n, p + n);
		n += MSGAUTH_TAG_LEN;
	}
	if (ret < 0) {
		free(p);
		return ret;
	}
	*buf = p;
	*len = n;
	return 0;
}

/*
 * Checks and strips the MAC of a message received after the handshake,
 * before anything of it is decoded.
 */
static int state_open(struct ctrl_state *st, const uint8_t *buf, size_t *len)
{
	uint64_t n = st->mac.recv.next;
	size_t body;

	if (!st->mac.ready)
		return err_set(&st->err, CTRL_ABORT_INTERNAL, -EPERM, "no session keys");
	if (*len <= MSGAUTH_TAG_LEN)
		return err_set(&st->err, CTRL_ABORT_AUTH, -EBADMSG,
			       "control message failed authentication (%zu bytes, no room for "
			       "its MAC)",
			       *len);
	body = *len - MSGAUTH_TAG_LEN;
	if (msgauth_open(&st->mac, buf, body, buf + body, MSGAUTH_TAG_LEN) < 0)
		return err_set(&st->err, CTRL_ABORT_AUTH, -EBADMSG,
			       "control message failed authentication (message %" PRIu64
			       " of the %s since the handshake, %zu bytes)",
			       n, ctrl_role_str(role_other(st->self)), *len);
	*len = body;
	return 0;
}

int ctrl_state_recv(struct ctrl_state *st, const void *buf, size_t len, RdmigMsg **out)
{
	enum ctrl_role peer = role_other(st->self);
	uint64_t mac_next = st->mac.recv.next;
	RdmigMsg *m = NULL;
	int ret;

	*out = NULL;
	if (ctrl_state_authenticated(st)) {
		ret = state_open(st, buf, &len);
		if (ret < 0)
			goto out;
	}
	ret = ctrl_unpack(buf, len, &m);
	if (ret == -EMSGSIZE) {
		err_set(&st->err, CTRL_ABORT_PROTOCOL, ret, "message of %zu bytes over the limit",
			len);
		goto out;
	}
	if (ret < 0) {
		err_set(&st->err, CTRL_ABORT_PROTOCOL, ret,
			"undecodable message of %zu bytes, or of an unknown type", len);
		goto out;
	}
	if (m->seq != st->recv_seq + 1) {
		ret = err_set(&st->err, CTRL_ABORT_PROTOCOL, -EPROTO,
			      "%s with sequence number %" PRIu64 ", expected %" PRIu64,
			      ctrl_msg_type_str(m->body_case), m->seq, st->recv_seq + 1);
		goto out;
	}
	ret = state_legal(st, peer, m->body_case, &st->err);
	if (ret == 0)
		ret = ctrl_validate(st, m, &st->err);
	if (ret == 0)
		ret = state_apply(st, peer, m, &st->err);
	if (ret < 0)
		goto out;
	st->recv_seq = m->seq;
	*out = m;
	m = NULL;
out:
	if (ret < 0) {
		/* Like the rest of st, the MAC counter only moves for an admitted message. */
		st->mac.recv.next = mac_next;
		log_err("control message from %s refused: %s", st->peer_name, st->err.text);
	}
	ctrl_free(m);
	return ret;
}

void ctrl_state_set_peer_verified(struct ctrl_state *st)
{
	st->peer_verified = true;
}

int ctrl_state_derive_keys(struct ctrl_state *st, const struct auth_secret *s)
{
	struct auth_transcript t;
	int ret;

	ret = ctrl_state_transcript(st, &t);
	if (ret == 0)
		ret =
		    msgauth_init(&st->mac, s, &t,
				 st->self == CTRL_ROLE_SOURCE ? AUTH_ROLE_SOURCE : AUTH_ROLE_DEST);
	if (ret < 0)
		log_err("cannot derive the session keys with %s: %s", st->peer_name,
			strerror(-ret));
	return ret;
}

void ctrl_state_clear(struct ctrl_state *st)
{
	msgauth_clear(&st->mac);
}

bool ctrl_state_authenticated(const struct ctrl_state *st)
{
	return st->peer_verified && (PH_AUTHED & (1u << st->phase));
}

const struct ctrl_negotiated *ctrl_state_negotiated(const struct ctrl_state *st)
{
	return st->negotiated ? &st->neg : NULL;
}

int ctrl_state_transcript(const struct ctrl_state *st, struct auth_transcript *t)
{
	const struct ctrl_hello_seen *src, *dst;

	if (!st->negotiated)
		return -EAGAIN;
	src = st->self == CTRL_ROLE_SOURCE ? &st->mine : &st->theirs;
	dst = st->self == CTRL_ROLE_SOURCE ? &st->theirs : &st->mine;
	t->migration_id = src->migration_id;
	t->source = src->a;
	t->dest = dst->a;
	return 0;
}

const char *ctrl_state_error(const struct ctrl_state *st, uint32_t *code)
{
	if (code)
		*code = st->err.code ? st->err.code : CTRL_ABORT_PROTOCOL;
	return st->err.text;
}
