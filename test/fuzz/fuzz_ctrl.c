// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the control protocol (common/ctrl.c): the decoder,
 * the validators and the phase machine, from both peers' side.
 *
 * Two struct ctrl_state play the source and the destination of one
 * connection.  The input is one flags byte (bit 0: the source checks
 * ReadReq/PageHashes ranges against a fixed table, as rdmig-source does),
 * then frames
 *   [sel] [len lo] [len hi] [len bytes: one packed RdmigMsg]
 * sel bit 0: who sends it (0 source, 1 destination); the other side
 *            receives it with ctrl_state_recv(), as netsrc.c and session.c
 *            do, so messages in a wrong order, phase or role are exercised;
 * sel bit 1: the harness stamps the sequence number the receiver expects
 *            (so mutations get past the sequence check);
 * sel bit 2: the message also goes through ctrl_unpack(), ctrl_validate()
 *            and ctrl_state_accept() alone, whatever the phase;
 * sel bit 3: a received AuthProof counts as wrong (the receiver's peer
 *            stays unverified); otherwise as right, as a peer knowing the
 *            secret would send;
 * sel bit 4: the sender's state does not record the message as sent (the
 *            two views drift apart on purpose).
 *
 * Besides crashes, it aborts when:
 *  - a refused message changed the receiver's state (ctrl.h: checks come
 *    before any change), or an error text holds a non-printable byte (peer
 *    bytes must not reach the logs raw);
 *  - a message carrying addresses, rkeys or image bytes, or a ReadReq, is
 *    accepted before the receiver has authenticated its peer;
 *  - while both views are in step, the sender's ctrl_state_send() refuses a
 *    message the receiver accepted (apart from the known one-sided rules),
 *    or the two sides disagree afterwards on phase, negotiation or stream
 *    counters;
 *  - an accepted message does not pack again within its limit.
 *
 * Run: `make fuzz FUZZ_TARGETS=ctrl` (docs/testing.md, "Fuzzing").
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "ctrl.h"
#include "fuzz.h"
#include "log.h"

#define FUZZ_RANGE_CHECK 1u

#define SEL_FROM_DEST 1u
#define SEL_FIX_SEQ   2u
#define SEL_ALONE     4u
#define SEL_BAD_PROOF 8u
#define SEL_NO_MIRROR 16u

/* The lazy ranges rdmig-source would serve; the corpus' tables use them. */
static const struct {
	int32_t pid;
	uint64_t start, len;
} fuzz_ranges[] = {
    {100, 0x400000, 0x100000},
    {100, 0x7f0000000000, 0x10000},
    {101, 0x10000, 0x4000},
};

static bool fuzz_range_known(void *arg, int32_t pid, uint64_t vaddr, uint64_t len)
{
	for (size_t i = 0; i < sizeof(fuzz_ranges) / sizeof(fuzz_ranges[0]); i++) {
		if (fuzz_ranges[i].pid == pid && vaddr >= fuzz_ranges[i].start &&
		    vaddr - fuzz_ranges[i].start <= fuzz_ranges[i].len &&
		    len <= fuzz_ranges[i].len - (vaddr - fuzz_ranges[i].start))
			return true;
	}
	return false;
}

static void fuzz_check_text(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	fuzz_check(len < cap);
	for (size_t i = 0; i < len; i++)
		fuzz_check(s[i] >= 0x20 && s[i] <= 0x7e);
}

/* Types that must never be accepted before the peer proved the secret. */
static bool fuzz_needs_auth(RdmigMsg__BodyCase t)
{
	switch (t) {
	case RDMIG_MSG__BODY_MEM_REGIONS:
	case RDMIG_MSG__BODY_IMAGE_FILE:
	case RDMIG_MSG__BODY_TASK_TABLE:
	case RDMIG_MSG__BODY_PAGE_HASHES:
	case RDMIG_MSG__BODY_IMAGES_DONE:
	case RDMIG_MSG__BODY_READ_REQ:
	case RDMIG_MSG__BODY_READ_RESP:
	case RDMIG_MSG__BODY_PROGRESS:
	case RDMIG_MSG__BODY_DONE:
	case RDMIG_MSG__BODY_DONE_ACK:
		return true;
	default:
		return false;
	}
}

/* Equal apart from the last error (the last field), which a refusal sets. */
static bool fuzz_same_state(const struct ctrl_state *a, const struct ctrl_state *b)
{
	return memcmp(a, b, offsetof(struct ctrl_state, err)) == 0;
}

/* What both ends of a connection in step must agree on. */
static void fuzz_check_in_step(const struct ctrl_state *s, const struct ctrl_state *d)
{
	fuzz_check(s->phase == d->phase && s->negotiated == d->negotiated);
	fuzz_check(!s->negotiated || memcmp(&s->neg, &d->neg, sizeof(s->neg)) == 0);
	fuzz_check(s->send_seq == d->recv_seq && d->send_seq == s->recv_seq);
	fuzz_check(s->nr_regions == d->nr_regions && s->lazy_bytes == d->lazy_bytes);
	fuzz_check(s->files_done == d->files_done && s->tables_done == d->tables_done);
	fuzz_check(s->file_open == d->file_open && s->table_open == d->table_open);
}

static void fuzz_check_negotiated(const struct ctrl_state *st)
{
	const struct ctrl_negotiated *n = ctrl_state_negotiated(st);
	struct auth_transcript t;

	fuzz_check((ctrl_state_transcript(st, &t) == 0) == (n != NULL));
	if (!n)
		return;
	fuzz_check(n->page_size >= CTRL_PAGE_SIZE_MIN && n->page_size <= CTRL_PAGE_SIZE_MAX &&
		   (n->page_size & (n->page_size - 1)) == 0);
	fuzz_check(n->features & (CTRL_FEAT_RDMA_READ | CTRL_FEAT_TCP_READ));
	fuzz_check(n->version >= CTRL_PROTO_MIN_VERSION);
}

/* The message on its own: decode, validate in the receiver's context, phase check. */
static void fuzz_alone(const struct ctrl_state *st, const uint8_t *buf, size_t len)
{
	struct ctrl_err e = {0};
	RdmigMsg *m = NULL;

	if (ctrl_unpack(buf, len, &m) < 0)
		return;
	if (ctrl_validate(st, m, &e) < 0)
		fuzz_check_text(e.text, sizeof(e.text));
	(void)ctrl_state_accept(st, m->body_case);
	ctrl_free(m);
}

/* The sender records m as sent; false when it refuses. */
static bool fuzz_mirror(struct ctrl_state *sender, const uint8_t *buf, size_t len)
{
	RdmigMsg *m = NULL;
	int ret;

	if (ctrl_unpack(buf, len, &m) < 0)
		return false;
	ret = ctrl_state_send(sender, m);
	ctrl_free(m);
	return ret == 0;
}

/* Would a sender in step legitimately refuse what the receiver took? */
static bool fuzz_one_sided(const struct ctrl_state *sender, const RdmigMsg *m)
{
	/* Only the verifier says ok, after checking the proof itself. */
	if (m->body_case == RDMIG_MSG__BODY_AUTH_RESULT && m->auth_result->ok &&
	    !sender->peer_verified)
		return true;
	/* The source checks its own hashes against its ranges; the dest cannot. */
	return m->body_case == RDMIG_MSG__BODY_PAGE_HASHES && sender->range_known;
}

/* Re-stamps the sequence number; *out is malloc()ed, or NULL when it does not decode. */
static void fuzz_fix_seq(const struct ctrl_state *rcv, const uint8_t *buf, size_t len,
			 uint8_t **out, size_t *out_len)
{
	RdmigMsg *m = NULL;

	*out = NULL;
	if (ctrl_unpack(buf, len, &m) < 0)
		return;
	m->seq = rcv->recv_seq + 1;
	if (ctrl_pack_alloc(m, out, out_len) < 0)
		*out = NULL;
	ctrl_free(m);
}

static void fuzz_frame(struct ctrl_state *src, struct ctrl_state *dst, bool *in_step, unsigned sel,
		       const uint8_t *buf, size_t len)
{
	struct ctrl_state *snd = sel & SEL_FROM_DEST ? dst : src;
	struct ctrl_state *rcv = sel & SEL_FROM_DEST ? src : dst;
	struct ctrl_state before;
	uint8_t *fixed = NULL, *again = NULL;
	size_t again_len;
	bool authed;
	RdmigMsg *m = NULL;
	int ret;

	if (sel & SEL_FIX_SEQ) {
		fuzz_fix_seq(rcv, buf, len, &fixed, &len);
		if (!fixed)
			return;
		buf = fixed;
	}
	if (sel & SEL_ALONE)
		fuzz_alone(rcv, buf, len);
	memcpy(&before, rcv, sizeof(before));
	authed = ctrl_state_authenticated(rcv);
	ret = ctrl_state_recv(rcv, buf, len, &m);
	if (ret < 0) {
		uint32_t code;

		fuzz_check(!m && fuzz_same_state(&before, rcv));
		fuzz_check_text(ctrl_state_error(rcv, &code), sizeof(rcv->err.text));
		fuzz_check(code != 0);
		goto out;
	}
	fuzz_check(m && before.phase != CTRL_PH_CLOSED);
	fuzz_check(rcv->recv_seq == before.recv_seq + 1 && m->seq == rcv->recv_seq);
	fuzz_check(authed || !fuzz_needs_auth(m->body_case));
	fuzz_check(ctrl_pack_alloc(m, &again, &again_len) == 0);
	fuzz_check_negotiated(rcv);
	/* A peer that knows the secret sends a proof that verifies. */
	if (m->body_case == RDMIG_MSG__BODY_AUTH_PROOF && !(sel & SEL_BAD_PROOF))
		ctrl_state_set_peer_verified(rcv);
	if (sel & SEL_NO_MIRROR) {
		*in_step = false;
		goto out;
	}
	if (!fuzz_mirror(snd, buf, len)) {
		fuzz_check(!*in_step || fuzz_one_sided(snd, m));
		*in_step = false;
	}
	if (*in_step)
		fuzz_check_in_step(src, dst);
out:
	ctrl_free(m);
	free(again);
	free(fixed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctrl_state src, dst;
	bool in_step = true;
	size_t off = 1;

	if (size < 1)
		return 0;
	log_set_level(LOG_LVL_ERR);
	ctrl_state_init(&src, CTRL_ROLE_SOURCE, "dest");
	ctrl_state_init(&dst, CTRL_ROLE_DEST, "source");
	if (data[0] & FUZZ_RANGE_CHECK)
		ctrl_state_set_range_check(&src, fuzz_range_known, NULL);
	while (off + 3 <= size) {
		unsigned sel = data[off];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;

		off += 3;
		if (len > size - off)
			len = size - off;
		fuzz_frame(&src, &dst, &in_step, sel, data + off, len);
		off += len;
	}
	return 0;
}
