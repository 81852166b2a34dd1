// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the control protocol (common/ctrl.c): the decoder,
 * the validators, the phase machine and the MAC after the handshake, from
 * both peers' side.
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
 *            two views drift apart on purpose);
 * sel bit 5: after the handshake, the bytes go without a MAC (protocol v2:
 *            the frame's own last MSGAUTH_TAG_LEN bytes stand for one);
 * sel bit 6: the MAC is appended, then one bit of the result flipped: in
 *            the byte the message's last byte picks, bit 0 (bit 1 with
 *            sel bit 7).
 * The frames hold packed messages without their MAC: once the receiver
 * has authenticated its peer, the harness seals each frame as the sender
 * would (ctrl_state_encode()), under session keys both sides derive from
 * FUZZ_CTRL_SECRET when a proof verifies, as the agents do.  With the two
 * views drifted apart it seals with the receiver's key and counter, so the
 * checks past the MAC stay reachable.
 *
 * Besides crashes, it aborts when:
 *  - a refused message changed the receiver's state (ctrl.h: checks come
 *    before any change), or an error text holds a non-printable byte (peer
 *    bytes must not reach the logs raw);
 *  - a message carrying addresses, rkeys or image bytes, or a ReadReq, is
 *    accepted before the receiver has authenticated its peer;
 *  - after the handshake, a message without its MAC or with a flipped bit
 *    is accepted, or one sealed by a sender in step is refused for its MAC;
 *  - while in step, what the sender's ctrl_state_encode() writes carries a
 *    MAC where the receiver expects none or the other way round, or does
 *    not open under the receiver's key and counter;
 *  - while both views are in step, the sender's ctrl_state_send() refuses a
 *    message the receiver accepted (apart from the known one-sided rules),
 *    or the two sides disagree afterwards on phase, negotiation, stream
 *    counters, session keys or MAC counters;
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
#include "msgauth.h"

#define FUZZ_RANGE_CHECK 1u

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
	fuzz_check(ctrl_state_authenticated(s) == ctrl_state_authenticated(d));
	fuzz_check(!ctrl_state_authenticated(s) || (s->mac.ready && d->mac.ready));
	if (!s->mac.ready || !d->mac.ready)
		return;
	/* The same transcript: each side's sending key is the other's receiving key. */
	fuzz_check(memcmp(s->mac.send.key, d->mac.recv.key, MSGAUTH_KEY_LEN) == 0);
	fuzz_check(memcmp(d->mac.send.key, s->mac.recv.key, MSGAUTH_KEY_LEN) == 0);
	fuzz_check(memcmp(s->mac.send.key, s->mac.recv.key, MSGAUTH_KEY_LEN) != 0);
	fuzz_check(s->mac.send.next == d->mac.recv.next && d->mac.send.next == s->mac.recv.next);
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
	fuzz_check(n->version >= CTRL_PROTO_MIN_VERSION && n->version <= CTRL_PROTO_VERSION);
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

/*
 * The sender sends m as the agents do (ctrl_state_encode()); false when it
 * refuses.  rcv is the receiver as it was before it took m: while the two
 * are in step, what the sender wrote carries a MAC exactly when rcv
 * expected one, and it opens under rcv's key and counter.
 */
static bool fuzz_mirror(struct ctrl_state *sender, const struct ctrl_state *rcv, bool in_step,
			const uint8_t *buf, size_t len)
{
	struct msgauth peer = {.ready = true, .recv = rcv->mac.recv};
	uint8_t *out = NULL;
	size_t out_len = 0, body;
	RdmigMsg *m = NULL;
	bool sealed;

	if (ctrl_unpack(buf, len, &m) < 0)
		return false;
	if (ctrl_state_encode(sender, m, &out, &out_len) < 0) {
		ctrl_free(m);
		return false;
	}
	body = rdmig_msg__get_packed_size(m);
	fuzz_check(out_len == body || out_len == body + MSGAUTH_TAG_LEN);
	sealed = out_len > body;
	if (in_step) {
		fuzz_check(sealed == ctrl_state_authenticated(rcv));
		/* peer borrows rcv's cipher context: not cleared here. */
		fuzz_check(!sealed ||
			   msgauth_open(&peer, out, body, out + body, MSGAUTH_TAG_LEN) == 0);
	}
	free(out);
	ctrl_free(m);
	return true;
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

/*
 * Appends the MAC a sender holding key k would, after buf[len] (room for
 * MSGAUTH_TAG_LEN bytes); k's counter does not move: only a message the
 * receiver admitted is recorded as sent.
 */
static size_t fuzz_seal(const struct msgauth_key *k, uint8_t *buf, size_t len)
{
	/* ma borrows k's cipher context: not cleared here. */
	struct msgauth ma = {.ready = true, .send = *k};

	fuzz_check(msgauth_seal(&ma, buf, len, buf + len) == 0);
	return len + MSGAUTH_TAG_LEN;
}

/* The key the frame is sealed with, or NULL when none is due. */
static const struct msgauth_key *fuzz_seal_key(const struct ctrl_state *snd,
					       const struct ctrl_state *rcv, bool in_step)
{
	if (in_step)
		return ctrl_state_authenticated(snd) && snd->mac.ready ? &snd->mac.send : NULL;
	return ctrl_state_authenticated(rcv) && rcv->mac.ready ? &rcv->mac.recv : NULL;
}

static void fuzz_frame(struct ctrl_state *src, struct ctrl_state *dst, bool *in_step, unsigned sel,
		       const uint8_t *buf, size_t len, const struct auth_secret *secret)
{
	struct ctrl_state *snd = sel & SEL_FROM_DEST ? dst : src;
	struct ctrl_state *rcv = sel & SEL_FROM_DEST ? src : dst;
	const struct msgauth_key *key;
	struct ctrl_state before;
	uint8_t *fixed = NULL, *again = NULL, *wire = NULL;
	size_t again_len, wire_len = len;
	bool authed, sealed, tampered;
	RdmigMsg *m = NULL;
	int ret;

	if (sel & SEL_FIX_SEQ) {
		fuzz_fix_seq(rcv, buf, len, &fixed, &len);
		if (!fixed)
			return;
		buf = fixed;
		wire_len = len;
	}
	if (sel & SEL_ALONE)
		fuzz_alone(rcv, buf, len);
	if (*in_step)
		fuzz_check(ctrl_state_authenticated(snd) == ctrl_state_authenticated(rcv));
	wire = malloc(len + MSGAUTH_TAG_LEN);
	fuzz_check(wire != NULL);
	memcpy(wire, buf, len);
	key = fuzz_seal_key(snd, rcv, *in_step);
	sealed = key && !(sel & SEL_RAW);
	if (sealed)
		wire_len = fuzz_seal(key, wire, len);
	tampered = sealed && (sel & SEL_TAMPER);
	if (tampered)
		wire[(len ? buf[len - 1] : 0) % wire_len] ^= 1u << (sel >> 7);
	memcpy(&before, rcv, sizeof(before));
	authed = ctrl_state_authenticated(rcv);
	ret = ctrl_state_recv(rcv, wire, wire_len, &m);
	if (ret < 0) {
		uint32_t code;
		bool mac_refused;

		fuzz_check(!m && fuzz_same_state(&before, rcv));
		fuzz_check_text(ctrl_state_error(rcv, &code), sizeof(rcv->err.text));
		fuzz_check(code != 0);
		mac_refused = ret == -EBADMSG && code == CTRL_ABORT_AUTH;
		/*
		 * A sender in step seals what the receiver can open; an empty
		 * message sealed is only a tag, refused as one without room for it.
		 */
		fuzz_check(!authed || !*in_step || !sealed || tampered || len == 0 || !mac_refused);
		goto out;
	}
	fuzz_check(m && before.phase != CTRL_PH_CLOSED);
	fuzz_check(rcv->recv_seq == before.recv_seq + 1 && m->seq == rcv->recv_seq);
	fuzz_check(authed || !fuzz_needs_auth(m->body_case));
	/* After the handshake only what the peer's key sealed, unaltered, gets in. */
	fuzz_check(!authed || (sealed && !tampered));
	fuzz_check(ctrl_pack_alloc(m, &again, &again_len) == 0);
	fuzz_check_negotiated(rcv);
	/* A peer that knows the secret sends a proof that verifies; the agent then derives its
	 * keys. */
	if (m->body_case == RDMIG_MSG__BODY_AUTH_PROOF && !(sel & SEL_BAD_PROOF)) {
		ctrl_state_set_peer_verified(rcv);
		if (!rcv->mac.ready)
			fuzz_check(ctrl_state_derive_keys(rcv, secret) == 0);
	}
	if (sel & SEL_NO_MIRROR) {
		*in_step = false;
		goto out;
	}
	if (!fuzz_mirror(snd, &before, *in_step, buf, len)) {
		fuzz_check(!*in_step || fuzz_one_sided(snd, m));
		*in_step = false;
	}
	if (*in_step)
		fuzz_check_in_step(src, dst);
out:
	ctrl_free(m);
	free(again);
	free(fixed);
	free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Made once: the same fixed secret for every input. */
	static struct auth_secret *secret;
	struct ctrl_state src, dst;
	bool in_step = true;
	size_t off = 1;

	if (size < 1)
		return 0;
	log_set_level(LOG_LVL_ERR);
	if (!secret)
		fuzz_check(
		    auth_secret_from_buf(FUZZ_CTRL_SECRET, strlen(FUZZ_CTRL_SECRET), &secret) == 0);
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
		fuzz_frame(&src, &dst, &in_step, sel, data + off, len, secret);
		off += len;
	}
	ctrl_state_clear(&src);
	ctrl_state_clear(&dst);
	return 0;
}
