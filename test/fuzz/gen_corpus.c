// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Writes the seed corpora of fuzz_ctrl, fuzz_api_json, fuzz_lpsock,
 * fuzz_progress and fuzz_connhint (test/fuzz/corpus/<target>/) with the
 * project's own encoders: whole control sessions built with the
 * ctrl_msg_*() builders and checked by both peers' ctrl_state, request
 * bodies from rdmigctl's cli_migrate_body(), resources from
 * api_migration_to_json(), progress lines from progress_encode(),
 * lazy-pages records as criu writes them, connect data from
 * connhint_make() and cut or altered from it.  Each
 * input's format is described at the top of its target.  Usage:
 *     BUILD/test/fuzz/fuzz-gen-corpus test/fuzz/corpus
 * The files it names are overwritten; others (crash-*, regress-*, the
 * minimised min-* of fuzzing runs) are kept.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "cli.h"
#include "connhint.h"
#include "ctrl.h"
#include "fuzz.h"
#include "log.h"
#include "lpsock.h"
#include "progress.h"
#include "rdma.h"

static const char *gen_top;

static void gen_die(const char *what)
{
	fprintf(stderr, "fuzz-gen-corpus: %s\n", what);
	exit(1);
}

static void gen_write(const char *target, const char *name, const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", gen_top, target);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		gen_die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", gen_top, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		gen_die(path);
}

/* A growing byte buffer. */
struct gen_buf {
	uint8_t data[64 * 1024];
	size_t len;
};

static void gen_put(struct gen_buf *b, const void *p, size_t len)
{
	if (len > sizeof(b->data) - b->len)
		gen_die("input too large");
	memcpy(b->data + b->len, p, len);
	b->len += len;
}

static void gen_byte(struct gen_buf *b, uint8_t v)
{
	gen_put(b, &v, 1);
}

/* ---- control sessions (fuzz_ctrl) ---- */

struct gen_sess {
	struct ctrl_state src, dst;
	const struct auth_secret *secret;
	struct gen_buf in;
};

static bool gen_range_known(void *arg, int32_t pid, uint64_t vaddr, uint64_t len)
{
	return true;
}

static void gen_sess_init(struct gen_sess *s, const struct auth_secret *secret, bool range_check)
{
	memset(s, 0, sizeof(*s));
	s->secret = secret;
	ctrl_state_init(&s->src, CTRL_ROLE_SOURCE, "dest");
	ctrl_state_init(&s->dst, CTRL_ROLE_DEST, "source");
	if (range_check)
		ctrl_state_set_range_check(&s->src, gen_range_known, NULL);
	gen_byte(&s->in, range_check ? 1 : 0);
}

static void gen_sess_fini(struct gen_sess *s)
{
	ctrl_state_clear(&s->src);
	ctrl_state_clear(&s->dst);
}

static void gen_frame(struct gen_sess *s, uint8_t sel, const uint8_t *msg, size_t len)
{
	gen_byte(&s->in, sel);
	gen_byte(&s->in, (uint8_t)len);
	gen_byte(&s->in, (uint8_t)(len >> 8));
	gen_put(&s->in, msg, len);
}

/*
 * Records o from the source (the destination with from_dest) as a frame
 * with the extra selector bits sel (SEL_RAW, SEL_TAMPER, or none for a
 * message out of range: the receiver must refuse it), of its first cut
 * bytes when cut is not 0 (all but the last with GEN_CUT_LAST), without
 * sending it; o stays built, for gen_send().
 */
#define GEN_CUT_LAST ((size_t)-1)
static void gen_refused(struct gen_sess *s, bool from_dest, uint8_t sel, struct ctrl_out *o,
			size_t cut)
{
	const struct ctrl_state *snd = from_dest ? &s->dst : &s->src;
	uint8_t *buf = NULL;
	size_t len;

	o->msg.seq = snd->send_seq + 1;
	if (ctrl_pack_alloc(&o->msg, &buf, &len) < 0)
		gen_die("cannot pack a message");
	if (cut == GEN_CUT_LAST)
		cut = len - 1;
	gen_frame(s, sel | (from_dest ? SEL_FROM_DEST : 0), buf, cut && cut < len ? cut : len);
	free(buf);
}

/*
 * Sends o from one side to the other as the agents do (MAC included once
 * both are authenticated) and records the frame without its MAC, which
 * fuzz_ctrl appends itself; both sides must agree.
 */
static void gen_send(struct gen_sess *s, bool from_dest, struct ctrl_out *o, int built)
{
	struct ctrl_state *snd = from_dest ? &s->dst : &s->src;
	struct ctrl_state *rcv = from_dest ? &s->src : &s->dst;
	bool sealed = ctrl_state_authenticated(snd);
	uint8_t *buf = NULL;
	RdmigMsg *m = NULL;
	size_t len, body;

	if (built < 0 || ctrl_state_encode(snd, &o->msg, &buf, &len) < 0 ||
	    ctrl_state_recv(rcv, buf, len, &m) < 0)
		gen_die("a session message was refused");
	body = sealed ? len - MSGAUTH_TAG_LEN : len;
	/* Both proofs are right here: the receiver verified it, as an agent would. */
	if (m->body_case == RDMIG_MSG__BODY_AUTH_PROOF) {
		ctrl_state_set_peer_verified(rcv);
		if (ctrl_state_derive_keys(rcv, s->secret) < 0)
			gen_die("cannot derive the session keys");
	}
	gen_frame(s, from_dest ? SEL_FROM_DEST : 0, buf, body);
	ctrl_free(m);
	free(buf);
	ctrl_out_release(o);
}

static void gen_hellos(struct gen_sess *s, uint64_t src_feat, uint64_t dst_feat,
		       enum ctrl_channel ch)
{
	static const uint8_t nonce_s[AUTH_NONCE_LEN] = {1, 2, 3, 4};
	static const uint8_t nonce_d[AUTH_NONCE_LEN] = {5, 6, 7, 8};
	struct ctrl_hello h = {
	    .role = CTRL_ROLE_SOURCE,
	    .channel = ch,
	    .features = src_feat,
	    .page_size = 4096,
	    .migration_id = "m-fuzz",
	    .nonce = nonce_s,
	    .agent_version = "rdmig 0.1.0",
	};
	struct ctrl_out o;

	gen_send(s, false, &o, ctrl_msg_hello(&o, &h));
	h.role = CTRL_ROLE_DEST;
	h.features = dst_feat;
	h.nonce = nonce_d;
	gen_send(s, true, &o, ctrl_msg_hello(&o, &h));
}

/* Both proofs; with dest_refused the source answers the first one "no". */
static void gen_auth(struct gen_sess *s, bool dest_refused)
{
	static const uint8_t proof[AUTH_PROOF_LEN] = {0xa5, 0x5a};
	struct ctrl_out o;

	gen_send(s, true, &o, ctrl_msg_auth_proof(&o, proof));
	if (dest_refused) {
		/* The harness counts every proof as right: refuse without claiming ok. */
		gen_send(s, false, &o, ctrl_msg_auth_result(&o, false, "authentication failed"));
		return;
	}
	gen_send(s, false, &o, ctrl_msg_auth_result(&o, true, NULL));
	gen_send(s, false, &o, ctrl_msg_auth_proof(&o, proof));
	gen_send(s, true, &o, ctrl_msg_auth_result(&o, true, NULL));
}

static void gen_images(struct gen_sess *s, bool rdma, bool verify)
{
	static const uint8_t inv[] = {0x54, 0x0f, 0x2d, 0x58, 0x01, 0x02};
	static const uint8_t chunk[96] = {0x11, 0x22, 0x33};
	const struct ctrl_hole holes[] = {{8192, 4096}};
	const struct ctrl_region regs[] = {{0x10000000, 0x200000, 0x1234}};
	struct ctrl_range r[] = {
	    {0x400000, 0x2000, rdma, 0x10000000, 0x1234, 0x1111},
	    {0x404000, 0x1000, rdma, 0x10002000, 0x1234, 0x2222},
	};
	const uint64_t hashes[] = {1, 2};
	struct ctrl_file_chunk c = {
	    .name = "inventory.img",
	    .total_size = sizeof(inv),
	    .data = inv,
	    .data_len = sizeof(inv),
	    .last = true,
	};
	uint64_t lazy = 0x2000 + 0x1000 + 0x2000;
	struct ctrl_out o;

	if (rdma)
		gen_send(s, false, &o, ctrl_msg_mem_regions(&o, regs, 1));
	gen_send(s, false, &o, ctrl_msg_image_file(&o, &c));
	c.name = "core-1.img";
	gen_send(s, false, &o, ctrl_msg_image_file(&o, &c));
	c = (struct ctrl_file_chunk){
	    .name = "pages-1.img", .total_size = 16384, .data = chunk, .data_len = sizeof(chunk)};
	gen_send(s, false, &o, ctrl_msg_image_file(&o, &c));
	c = (struct ctrl_file_chunk){.name = "pages-1.img",
				     .total_size = 16384,
				     .offset = 4096,
				     .data = chunk,
				     .data_len = sizeof(chunk),
				     .holes = holes,
				     .nr_holes = 1,
				     .last = true};
	gen_send(s, false, &o, ctrl_msg_image_file(&o, &c));
	gen_send(s, false, &o, ctrl_msg_task_table(&o, 100, r, 1, false));
	gen_send(s, false, &o, ctrl_msg_task_table(&o, 100, r + 1, 1, true));
	r[0].img_vaddr = 0x10000;
	r[0].remote_addr = 0x10100000;
	gen_send(s, false, &o, ctrl_msg_task_table(&o, 101, r, 1, true));
	if (verify)
		gen_send(s, false, &o, ctrl_msg_page_hashes(&o, 100, 0x400000, hashes, 2));
	gen_send(s, false, &o, ctrl_msg_images_done(&o, 3, 2, lazy));
}

static void gen_postcopy(struct gen_sess *s, bool tcp, bool control)
{
	static const uint8_t page[64] = {0x42};
	const struct ctrl_done d = {.pages = 4, .bytes = 16384, .ranges_verified = 0};
	struct ctrl_out o;

	if (tcp) {
		gen_send(s, true, &o, ctrl_msg_read_req(&o, 7, 100, 0x400000, 4096));
		gen_send(s, false, &o, ctrl_msg_read_resp(&o, 7, 0, page, sizeof(page)));
		gen_send(s, true, &o, ctrl_msg_read_req(&o, 8, 101, 0x10000, 4096));
		gen_send(s, false, &o, ctrl_msg_read_resp(&o, 8, -EIO, NULL, 0));
	}
	gen_send(s, true, &o, ctrl_msg_keepalive(&o, 1, 123456789));
	gen_send(s, false, &o, ctrl_msg_keepalive(&o, 1, 123456790));
	if (!control)
		return;
	gen_send(s, true, &o, ctrl_msg_progress(&o, 2, 8192, 1));
	gen_send(s, true, &o, ctrl_msg_done(&o, &d));
	gen_send(s, false, &o, ctrl_msg_done_ack(&o, true, NULL));
}

/*
 * The messages of the later features: Attach and Running (FEAT_RESUME),
 * FaultLane (FEAT_FAULT_LANE), DrainLane (FEAT_DRAIN_QPS), StageRegion and
 * StageReq (FEAT_LAZY_DUMP), RoundPages, RoundsStop and RoundsCopied
 * (FEAT_ROUNDS), and the DoneAck that answers the Attach{resume} of a migration the
 * source already finished (its first DoneAck lost).
 */
static void gen_ctrl_newer(const struct auth_secret *secret)
{
	const uint64_t tcp = CTRL_FEAT_TCP_READ, rdma = CTRL_FEAT_RDMA_READ,
		       verify = CTRL_FEAT_VERIFY_PAGES, resume = CTRL_FEAT_RESUME,
		       lane = CTRL_FEAT_FAULT_LANE | CTRL_FEAT_DRAIN_QPS,
		       lazy = CTRL_FEAT_LAZY_DUMP, early = CTRL_FEAT_EARLY,
		       rounds = CTRL_FEAT_ROUNDS;
	const struct ctrl_region round_regs[] = {{0x20000000, 0x200000, 0x77, true, 0xabcd},
						 {0x30000000, 0x1000, 0x78, true, 0xef01}};
	static const uint8_t page[64] = {0x42};
	const struct ctrl_range unit = {0x400000, 0x2000, false, 0, 0, 0x1111};
	const struct ctrl_done d = {.pages = 3, .bytes = 12288, .digest = 0x5eed};
	struct ctrl_out o;
	struct gen_sess s;

	gen_sess_init(&s, secret, false);
	gen_hellos(&s, rdma | verify | resume | lane, rdma | verify | resume | lane,
		   CTRL_CHANNEL_CONTROL);
	gen_auth(&s, false);
	gen_send(&s, true, &o, ctrl_msg_attach(&o, false, false));
	gen_send(&s, true, &o, ctrl_msg_fault_lane(&o, 0x11, 0x2345));
	gen_send(&s, false, &o, ctrl_msg_fault_lane(&o, 0x12, 0x6789));
	gen_send(&s, true, &o, ctrl_msg_drain_lane(&o, 1, 0x13, 0x2346));
	gen_send(&s, false, &o, ctrl_msg_drain_lane(&o, 1, 0x14, 0x678a));
	gen_images(&s, true, true);
	gen_send(&s, true, &o, ctrl_msg_running(&o));
	gen_postcopy(&s, false, true);
	gen_write("ctrl", "rdma-resume-lane", s.in.data, s.in.len);
	gen_sess_fini(&s);

	gen_sess_init(&s, secret, true);
	gen_hellos(&s, tcp | verify | resume, tcp | verify | resume, CTRL_CHANNEL_CONTROL);
	gen_auth(&s, false);
	gen_send(&s, true, &o, ctrl_msg_attach(&o, true, false));
	gen_send(&s, false, &o, ctrl_msg_done_ack(&o, true, "migration already done"));
	gen_write("ctrl", "resume-already-done", s.in.data, s.in.len);
	gen_sess_fini(&s);

	gen_sess_init(&s, secret, false);
	gen_hellos(&s, tcp | lazy, tcp | lazy, CTRL_CHANNEL_CONTROL);
	gen_auth(&s, false);
	gen_images(&s, false, false);
	gen_send(&s, true, &o, ctrl_msg_stage_req(&o, 100, 0x400000));
	gen_send(&s, false, &o, ctrl_msg_stage_region(&o, 100, &unit, NULL, 0));
	gen_send(&s, true, &o, ctrl_msg_read_req(&o, 9, 100, 0x400000, 4096));
	gen_send(&s, false, &o, ctrl_msg_read_resp(&o, 9, 0, page, sizeof(page)));
	gen_send(&s, true, &o, ctrl_msg_done(&o, &d));
	gen_send(&s, false, &o, ctrl_msg_stage_region(&o, 101, &unit, NULL, 0));
	gen_send(&s, false, &o, ctrl_msg_done_ack(&o, true, NULL));
	gen_write("ctrl", "lazy-dump-staged", s.in.data, s.in.len);
	gen_sess_fini(&s);

	/* FEAT_ROUNDS on a held early session: two rounds, a stop, the answer, then the images. */
	gen_sess_init(&s, secret, false);
	gen_hellos(&s, rdma | early | rounds, rdma | early | rounds, CTRL_CHANNEL_CONTROL);
	gen_auth(&s, false);
	gen_send(&s, false, &o, ctrl_msg_round_pages(&o, 1, round_regs, 2));
	gen_send(&s, false, &o, ctrl_msg_round_pages(&o, 2, round_regs + 1, 1));
	gen_send(&s, true, &o, ctrl_msg_rounds_copied(&o, 1, 0x200000));
	gen_send(&s, false, &o, ctrl_msg_rounds_stop(&o));
	gen_send(&s, true, &o, ctrl_msg_rounds_copied(&o, 2, 0x200000));
	gen_images(&s, true, false);
	gen_write("ctrl", "rdma-early-rounds", s.in.data, s.in.len);
	gen_sess_fini(&s);
}

/* An RcConnect the receiver must refuse: one field out of range, or cut short. */
struct gen_rc_bad {
	const char *name;
	uint32_t qpn, psn, mtu, rd_atomic;
	size_t gid_len; /* 0: a GID of zeros */
	size_t cut;	/* bytes of the packed message kept, 0: all */
};

/*
 * RcConnect on an RC side channel (FEAT_RC_SIDE, protocol.md §7.4): the
 * destination's offer and the source's answer; then, one session each, an
 * offer with one field out of range or cut short, refused, before the
 * valid one.
 */
static void gen_ctrl_rc_connect(const struct auth_secret *secret)
{
	const uint64_t feat = CTRL_FEAT_RDMA_READ | CTRL_FEAT_RC_SIDE;
	/* ::ffff:192.0.2.2 and ::ffff:192.0.2.1, RoCE v2 GIDs of IPv4 addresses. */
	static const uint8_t gid_d[CTRL_GID_LEN] = {[10] = 0xff, 0xff, 192, 0, 2, 2};
	static const uint8_t gid_s[CTRL_GID_LEN] = {[10] = 0xff, 0xff, 192, 0, 2, 1};
	static const struct gen_rc_bad bad[] = {
	    {"qpn-zero", 0, 1, 5, 16, CTRL_GID_LEN, 0},
	    {"qpn-25-bits", 1u << 24, 1, 5, 16, CTRL_GID_LEN, 0},
	    {"psn-25-bits", 0x11, 1u << 24, 5, 16, CTRL_GID_LEN, 0},
	    {"gid-15-bytes", 0x11, 1, 5, 16, CTRL_GID_LEN - 1, 0},
	    {"gid-17-bytes", 0x11, 1, 5, 16, CTRL_GID_LEN + 1, 0},
	    {"gid-zero", 0x11, 1, 5, 16, 0, 0},
	    {"mtu-zero", 0x11, 1, 0, 16, CTRL_GID_LEN, 0},
	    {"mtu-6", 0x11, 1, CTRL_RC_MTU_MAX + 1, 16, CTRL_GID_LEN, 0},
	    {"rd-atomic-zero", 0x11, 1, 5, 0, CTRL_GID_LEN, 0},
	    {"rd-atomic-256", 0x11, 1, 5, 256, CTRL_GID_LEN, 0},
	    {"truncated-header", 0x11, 1, 5, 16, CTRL_GID_LEN, 4},
	    {"truncated-gid", 0x11, 1, 5, 16, CTRL_GID_LEN, 20},
	    {"truncated-last-byte", 0x11, 1, 5, 16, CTRL_GID_LEN, GEN_CUT_LAST},
	};
	uint8_t gid[CTRL_GID_LEN + 1];
	struct ctrl_out o;
	struct gen_sess s;
	char name[64];

	for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
		const struct gen_rc_bad *b = i < sizeof(bad) / sizeof(bad[0]) ? &bad[i] : NULL;

		gen_sess_init(&s, secret, false);
		gen_hellos(&s, feat, feat, CTRL_CHANNEL_RC_SIDE);
		gen_auth(&s, false);
		if (b) {
			memset(gid, 0, sizeof(gid));
			if (b->gid_len)
				memcpy(gid, gid_d, CTRL_GID_LEN);
			ctrl_msg_rc_connect(&o, b->qpn, b->psn, gid, b->mtu, b->rd_atomic);
			o.body.rc_connect.gid.len = b->gid_len ? b->gid_len : CTRL_GID_LEN;
			gen_refused(&s, true, 0, &o, b->cut);
			ctrl_out_release(&o);
		}
		gen_send(&s, true, &o, ctrl_msg_rc_connect(&o, 0x11, 0x123456, gid_d, 5, 16));
		gen_send(&s, false, &o, ctrl_msg_rc_connect(&o, 0x12, 0x654321, gid_s, 3, 255));
		gen_send(&s, true, &o, ctrl_msg_keepalive(&o, 1, 123456789));
		snprintf(name, sizeof(name), "rc-connect%s%s", b ? "-refused-" : "",
			 b ? b->name : "");
		gen_write("ctrl", name, s.in.data, s.in.len);
		gen_sess_fini(&s);
	}
}

static void gen_ctrl(void)
{
	const uint64_t tcp = CTRL_FEAT_TCP_READ, rdma = CTRL_FEAT_RDMA_READ,
		       verify = CTRL_FEAT_VERIFY_PAGES;
	static const uint8_t inv[] = {0x54, 0x0f, 0x2d, 0x58};
	const struct ctrl_file_chunk c = {
	    .name = "inventory.img",
	    .total_size = sizeof(inv),
	    .data = inv,
	    .data_len = sizeof(inv),
	    .last = true,
	};
	struct auth_secret *secret;
	struct ctrl_out o;
	struct gen_sess s;

	if (auth_secret_from_buf(FUZZ_CTRL_SECRET, strlen(FUZZ_CTRL_SECRET), &secret) < 0)
		gen_die("cannot make the secret");
	for (int rc = 0; rc < 2; rc++) {
		char name[64];

		gen_sess_init(&s, secret, rc);
		gen_hellos(&s, tcp | rdma | verify, tcp | verify, CTRL_CHANNEL_CONTROL);
		gen_auth(&s, false);
		gen_images(&s, false, true);
		gen_postcopy(&s, true, true);
		snprintf(name, sizeof(name), "tcp-verify%s", rc ? "-rangecheck" : "");
		gen_write("ctrl", name, s.in.data, s.in.len);
		gen_sess_fini(&s);
	}
	gen_sess_init(&s, secret, false);
	gen_hellos(&s, rdma | tcp, rdma, CTRL_CHANNEL_CONTROL);
	gen_auth(&s, false);
	gen_images(&s, true, false);
	gen_postcopy(&s, false, true);
	gen_write("ctrl", "rdma", s.in.data, s.in.len);
	gen_sess_fini(&s);

	gen_sess_init(&s, secret, true);
	gen_hellos(&s, tcp, tcp, CTRL_CHANNEL_DATA);
	gen_auth(&s, false);
	gen_postcopy(&s, true, false);
	gen_write("ctrl", "tcp-data-channel", s.in.data, s.in.len);
	gen_sess_fini(&s);

	/* After the handshake: a message without its MAC, one with a bit flipped, then the real
	 * one. */
	gen_sess_init(&s, secret, false);
	gen_hellos(&s, tcp, tcp, CTRL_CHANNEL_CONTROL);
	gen_auth(&s, false);
	if (ctrl_msg_image_file(&o, &c) < 0)
		gen_die("cannot build an ImageFile");
	gen_refused(&s, false, SEL_RAW, &o, 0);
	gen_refused(&s, false, SEL_TAMPER, &o, 0);
	gen_send(&s, false, &o, 0);
	gen_write("ctrl", "mac-refused", s.in.data, s.in.len);
	gen_sess_fini(&s);

	gen_ctrl_newer(secret);
	gen_ctrl_rc_connect(secret);

	gen_sess_init(&s, secret, false);
	gen_hellos(&s, tcp, tcp, CTRL_CHANNEL_CONTROL);
	gen_auth(&s, true);
	gen_write("ctrl", "auth-refused", s.in.data, s.in.len);
	gen_sess_fini(&s);

	gen_sess_init(&s, secret, false);
	gen_hellos(&s, tcp, tcp, CTRL_CHANNEL_CONTROL);
	gen_send(&s, true, &o, ctrl_msg_abort(&o, CTRL_ABORT_MIGRATION, "no such migration"));
	gen_write("ctrl", "abort", s.in.data, s.in.len);
	gen_sess_fini(&s);
	auth_secret_free(secret);
}

/* ---- API JSON (fuzz_api_json) ---- */

/*
 * A request body seed (kinds 0, 1, 7, 8) must reach the parser's end, so the
 * replay in make check goes through every field it names; unless its name
 * says it is refused, then it must be.
 */
static void gen_json_check_request(const char *name, uint8_t kind, const char *text)
{
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	struct api_start_buf *buf = NULL;
	struct api_error err = {0};
	struct api_start_req sr;
	struct api_reserve_req rr;
	bool force;
	int ret;

	if (kind < 2)
		ret = api_start_parse(kind == 0 ? API_ROLE_SOURCE : API_ROLE_DEST, root, &sr, &buf,
				      &err);
	else if (kind == 7) {
		ret = api_reserve_parse(root, &rr, &err);
		api_reserve_req_clear(&rr);
	} else
		ret = api_rollback_parse(root, &force, &err);
	api_start_buf_free(buf);
	json_decref(root);
	if ((ret == 0) == (strstr(name, "refused") != NULL)) {
		fprintf(stderr, "fuzz-gen-corpus: seed %s: %s\n", name,
			ret ? err.message : "accepted");
		gen_die("a request seed does not do what its name says");
	}
}

static void gen_json_input(const char *name, uint8_t kind, const char *text)
{
	struct gen_buf b = {.len = 0};

	if (kind < 2 || kind >= 7)
		gen_json_check_request(name, kind, text);

	gen_byte(&b, kind);
	gen_put(&b, text, strlen(text));
	gen_write("api_json", name, b.data, b.len);
}

static void gen_json_value(const char *name, uint8_t kind, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (!text)
		gen_die("json_dumps");
	gen_json_input(name, kind, text);
	free(text);
	json_decref(j);
}

static void gen_migrate_body(const char *name, const struct cli_args *a)
{
	char *body, err[128];

	if (cli_migrate_body(a, &body, err, sizeof(err)) < 0)
		gen_die(err);
	gen_json_input(name, 0, body);
	free(body);
}

static json_t *gen_resource(enum api_role role, enum api_state state)
{
	struct api_migration_view v;

	api_migration_view_init(&v);
	v.id = role == API_ROLE_SOURCE ? "m-1f2e3d4c5b6a" : "web-7";
	v.role = role;
	v.state = state;
	v.error = state == API_STATE_FAILED ? "criu restore exited with status 1" : NULL;
	v.source = "192.0.2.1:7471";
	v.dest = role == API_ROLE_SOURCE ? "192.0.2.2:7472" : NULL;
	v.dest_state = role == API_ROLE_SOURCE ? "postcopy" : NULL;
	v.transport = API_TRANSPORT_TCP;
	v.pid = role == API_ROLE_SOURCE ? 4242 : 0;
	v.images_dir = "/var/lib/rdmig/images/web-7";
	v.verify = true;
	v.pages_total = 4096;
	v.pages_fetched = 1200;
	v.pages_remaining = 2896;
	v.faults = 37;
	v.bytes = 4915200;
	v.fault_p50_us = 95;
	v.fault_p99_us = 410;
	v.created_unix_ms = 1796300000000;
	v.finished_unix_ms = api_state_is_final(state) ? 1796300012345 : 0;
	v.freeze_ms = 85;
	v.total_ms = 12345;
	v.restore_ms = 812;
	v.resumed_ms = 990;
	v.downtime_ms = 1075;
	return api_migration_to_json(&v);
}

static void gen_api_json(void)
{
	struct cli_args a = {.pid = 4242,
			     .id = "web-7",
			     .to = "192.0.2.2:7472",
			     .advertise = "192.0.2.1:7471",
			     .dest_images = "/var/lib/rdmig/in",
			     .transport = "tcp",
			     .secret_file = "/etc/rdmig/secret",
			     .verify = true};
	json_t *list;

	gen_migrate_body("start-source-pid", &a);
	a = (struct cli_args){.images_dir = "/var/lib/rdmig/images/web-7", .transport = "rdma"};
	gen_migrate_body("start-source-images", &a);
	gen_json_input("start-source-inline", 0,
		       "{\"id\":\"m.2_x-\",\"pid\":1,\"dest\":\"[2001:db8::2]:7472\","
		       "\"secret\":\"hex:00112233445566778899aabbccddeeff\","
		       "\"criu_opts\":{\"shell_job\":true,\"tcp_established\":false,"
		       "\"ext_unix_sk\":true,\"file_locks\":true,\"link_remap\":true,"
		       "\"leave_running\":true,\"manage_cgroups\":\"soft\",\"log_level\":4}}");
	gen_json_input("start-dest", 1,
		       "{\"id\":\"web-7\",\"source\":\"192.0.2.1:7471\",\"transport\":\"tcp\","
		       "\"secret\":\"base64:AAECAwQFBgcICQoLDA0ODxAREhM=\",\"verify\":true,"
		       "\"images_dir\":\"/srv/rdmig/in\",\"work_dir\":\"/srv/rdmig/work\","
		       "\"restore\":false,\"criu_opts\":{\"manage_cgroups\":\"ignore\","
		       "\"log_level\":0}}");
	gen_json_input("start-dest-min", 1, "{\"source\":\"src.example\"}");
	/* The later fields: lazy_dump, container, reservation, a reservation's bundle, force. */
	a = (struct cli_args){.pid = 4242, .to = "192.0.2.2:7472", .lazy_dump = true};
	gen_migrate_body("start-source-lazy-dump", &a);
	gen_json_input("start-source-container", 0,
		       "{\"id\":\"web-7\",\"dest\":\"192.0.2.2:7472\",\"transport\":\"rdma\","
		       "\"container\":{\"runtime\":\"runc\",\"id\":\"web-7\","
		       "\"root\":\"/run/runc\"}}");
	gen_json_input("start-dest-reservation", 1,
		       "{\"id\":\"web-7\",\"source\":\"192.0.2.1:7471\","
		       "\"reservation\":\"web-7\"}");
	gen_json_input("reserve-bundle", 7,
		       "{\"migration\":\"web-7\",\"bytes\":134217728,"
		       "\"images_dir\":\"/srv/rdmig/in/web-7\",\"ttl_s\":60,"
		       "\"bundle\":\"/srv/bundles/web-7\"}");
	gen_json_input("reserve-min", 7, "{\"migration\":\"m1\",\"bytes\":0}");
	/* A reservation whose "start" spawns the worker at once (design.md §10.3). */
	gen_json_input("reserve-start", 7,
		       "{\"migration\":\"web-7\",\"bytes\":4096,\"start\":{\"source\":"
		       "\"192.0.2.1:7471\",\"transport\":\"tcp\",\"verify\":true,\"secret\":"
		       "\"base64:MDEyMzQ1Njc4OWFiY2RlZg==\",\"criu_opts\":{\"shell_job\":true}}}");
	gen_json_input("reserve-start-refused", 7,
		       "{\"migration\":\"web-7\",\"bytes\":0,\"start\":{\"source\":"
		       "\"192.0.2.1\",\"secret_file\":\"/etc/rdmig/web-7.secret\"}}");
	gen_json_input("rollback-force", 8, "{\"force\":true}");
	gen_json_input("rollback-refused", 8, "{\"force\":1,\"why\":\"x\"}");
	gen_json_input("start-refused", 0, "{\"pid\":1,\"images_dir\":\"/x\",\"bogus\":1}");
	/* The queue (design.md §7.1): a start that asks for the old 503 instead. */
	gen_json_input(
	    "start-source-no-queue", 0,
	    "{\"id\":\"web-7\",\"pid\":4242,\"dest\":\"192.0.2.2:7472\",\"queue\":false}");

	gen_json_value("resource-source", 2, gen_resource(API_ROLE_SOURCE, API_STATE_POSTCOPY));
	gen_json_value("resource-dest-failed", 2, gen_resource(API_ROLE_DEST, API_STATE_FAILED));
	gen_json_value("resource-queued", 2, gen_resource(API_ROLE_SOURCE, API_STATE_QUEUED));
	list = json_pack("{s:[o,o]}", "migrations", gen_resource(API_ROLE_SOURCE, API_STATE_DONE),
			 gen_resource(API_ROLE_DEST, API_STATE_DRAINING));
	gen_json_value("list", 3, list);
	gen_json_input("list-empty", 3, "{\"migrations\":[]}");
	gen_json_input("health", 4,
		       "{\"status\":\"ok\",\"role\":\"dest\",\"version\":\"0.1.0\","
		       "\"migrations\":2,\"active\":1}");
	gen_json_value("dest-resource", 6, gen_resource(API_ROLE_DEST, API_STATE_POSTCOPY));
	gen_json_input("dest-error", 6,
		       "{\"error\":{\"code\":\"conflict\",\"message\":\"migration web-7 "
		       "exists\"}}");
	gen_json_input("error", 5,
		       "{\"error\":{\"code\":\"invalid_request\",\"message\":\"field \\\"pid\\\" "
		       "must be 1..4194304\"}}");
}

/* ---- lazy-pages records (fuzz_lpsock) ---- */

#define GEN_FD_UFFD 1
#define GEN_SHUT_WR 4

static void gen_chunk(struct gen_buf *b, uint8_t ctl, const void *p, size_t len)
{
	gen_byte(b, ctl);
	gen_byte(b, (uint8_t)len);
	gen_put(b, p, len);
}

static void gen_word(struct gen_buf *b, uint8_t ctl, int32_t v)
{
	gen_chunk(b, ctl, &v, sizeof(v));
}

static void gen_lpsock(void)
{
	const uint32_t fin = LPSOCK_FIN;
	struct gen_buf b = {.len = 0};
	uint8_t split[6];
	int32_t pid = 101;

	/* As criu restore writes it: pid, a byte with the uffd, zombies, FIN. */
	gen_byte(&b, 0);
	gen_word(&b, 0, 100);
	gen_chunk(&b, GEN_FD_UFFD, "", 1);
	gen_word(&b, 0, 101);
	gen_chunk(&b, GEN_FD_UFFD, "", 1);
	gen_word(&b, 0, -102);
	gen_chunk(&b, 0, &fin, sizeof(fin));
	gen_write("lpsock", "restore", b.data, b.len);

	/* Split across writes, a pid's bytes in two chunks. */
	b.len = 0;
	gen_byte(&b, 0);
	memcpy(split, &pid, 4);
	memcpy(split + 4, &fin, 2);
	gen_chunk(&b, 0, split, 2);
	gen_chunk(&b, 0, split + 2, 2);
	gen_chunk(&b, GEN_FD_UFFD, "", 1);
	gen_chunk(&b, 0, (const uint8_t *)&fin, 4);
	gen_write("lpsock", "split", b.data, b.len);

	/* Without images: any pid; the hang-up before FIN is a failure. */
	b.len = 0;
	gen_byte(&b, 1);
	gen_word(&b, 0, 7);
	gen_chunk(&b, GEN_FD_UFFD, "", 1);
	gen_word(&b, GEN_SHUT_WR, -8);
	gen_write("lpsock", "no-images-hangup", b.data, b.len);

	b.len = 0;
	gen_byte(&b, 0);
	gen_chunk(&b, 0, &fin, sizeof(fin));
	gen_write("lpsock", "fin-only", b.data, b.len);
}

/* ---- progress lines (fuzz_progress) ---- */

static void gen_progress(void)
{
	struct gen_buf all = {.len = 0};
	static const enum api_state states[] = {
	    API_STATE_CONNECTING, API_STATE_RECEIVING, API_STATE_RESTORING,
	    API_STATE_POSTCOPY,	  API_STATE_DRAINING,  API_STATE_DONE,
	};
	struct progress_msg m;
	char line[PROGRESS_LINE_MAX + 1];
	int n;

	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		progress_msg_init(&m);
		m.has_state = true;
		m.state = states[i];
		if (states[i] == API_STATE_POSTCOPY)
			m.restore_ms = 812;
		n = progress_encode(&m, line, sizeof(line));
		if (n < 0)
			gen_die("progress_encode");
		gen_put(&all, line, (size_t)n);
		gen_write("progress", api_state_str(states[i]), line, (size_t)n);
	}
	progress_msg_init(&m);
	m.has_counters = true;
	m.c = (struct progress_counters){4096, 1200, 2896, 37, 4915200, 95, 410};
	n = progress_encode(&m, line, sizeof(line));
	if (n < 0)
		gen_die("progress_encode");
	gen_put(&all, line, (size_t)n);
	gen_write("progress", "counters", line, (size_t)n);
	m.c.fault_p50_us = m.c.fault_p99_us = -1;
	n = progress_encode(&m, line, sizeof(line));
	if (n < 0)
		gen_die("progress_encode");
	gen_write("progress", "counters-no-latency", line, (size_t)n);
	progress_msg_init(&m);
	m.has_state = true;
	m.state = API_STATE_FAILED;
	snprintf(m.error, sizeof(m.error), "criu restore exited with status 1: \"x\"\t\\");
	n = progress_encode(&m, line, sizeof(line));
	if (n < 0)
		gen_die("progress_encode");
	gen_put(&all, line, (size_t)n);
	gen_write("progress", "failed", line, (size_t)n);
	gen_write("progress", "session", all.data, all.len);
}

/* ---- connect data (fuzz_connhint) ---- */

/*
 * One input: the first len bytes of the hint for id (RDMA_CONN_DATA_MAX,
 * zero-padded, when len is 0) with byte at set to val when at is not 0;
 * the generator fails unless connhint_parse() refuses it exactly when its
 * name says so.
 */
static void gen_hint(const char *name, const char *id, size_t len, size_t at, uint8_t val)
{
	uint8_t buf[RDMA_CONN_DATA_MAX + 4] = {0};
	char back[CONNHINT_ID_MAX + 1];
	bool refused;

	if (connhint_make(id, buf, RDMA_CONN_DATA_MAX) == 0)
		gen_die("connhint_make refused a seed's id");
	if (at)
		buf[at] = val;
	if (!len)
		len = RDMA_CONN_DATA_MAX;
	refused = connhint_parse(buf, len, back, sizeof(back)) < 0;
	if (refused != (strstr(name, "refused") != NULL)) {
		fprintf(stderr, "fuzz-gen-corpus: seed %s: %s\n", name,
			refused ? "refused" : "accepted");
		gen_die("a connect data seed does not do what its name says");
	}
	gen_write("connhint", name, buf, len);
}

static void gen_connhint(void)
{
	char longest[CONNHINT_ID_MAX + 1];
	size_t n = CONNHINT_ID_MAX;

	memset(longest, 'a', n);
	longest[n] = '\0';
	gen_hint("short-exact", "web-7", 6 + 5, 0, 0);
	gen_hint("short-padded", "web-7", 0, 0, 0);
	gen_hint("rdma-cm-area", "m.2_x-Z9", RDMA_CONN_DATA_MAX + 4, 0, 0);
	gen_hint("longest", longest, 0, 0, 0);
	gen_hint("refused-empty", "web-7", 1, 0, 0);
	gen_hint("refused-magic-only", "web-7", 4, 0, 0);
	gen_hint("refused-no-length", "web-7", 5, 0, 0);
	gen_hint("refused-header-only", "web-7", 6, 0, 0);
	gen_hint("refused-cut-in-id", "web-7", 6 + 4, 0, 0);
	gen_hint("refused-longest-cut", longest, 6 + n - 1, 0, 0);
	gen_hint("refused-magic", "web-7", 0, 3, 'X');
	gen_hint("refused-version-0", "web-7", 0, 4, 0);
	gen_hint("refused-version-2", "web-7", 0, 4, 2);
	gen_hint("refused-length-0", "web-7", 0, 5, 0);
	gen_hint("refused-length-47", longest, 0, 5, CONNHINT_ID_MAX + 1);
	gen_hint("refused-length-255", "web-7", 0, 5, 255);
	gen_hint("refused-nul-in-id", "web-7", 0, 8, 0);
	gen_hint("refused-newline-in-id", "web-7", 0, 8, '\n');
	gen_hint("refused-dot-first", "web-7", 0, 6, '.');
	gen_hint("refused-after-id", "web-7", 0, 6 + 5, 'x');
	gen_hint("refused-last-byte", "web-7", 0, RDMA_CONN_DATA_MAX - 1, 1);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-gen-corpus CORPUS_DIR\n");
		return 2;
	}
	gen_top = argv[1];
	log_init("fuzz-gen-corpus", LOG_LVL_ERR);
	gen_ctrl();
	gen_api_json();
	gen_lpsock();
	gen_progress();
	gen_connhint();
	return 0;
}
