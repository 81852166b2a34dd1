// SPDX-License-Identifier: GPL-2.0-or-later
/* Two control states, one per side, taken through the handshake in memory (ctrlpair.h). */
#include "ctrlpair.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

uint8_t *wire;

/* One message from one state to the other through the codec. */
int xfer(struct ctrl_state *from, struct ctrl_state *to, struct ctrl_out *o, RdmigMsg **got)
{
	size_t len = 0;
	int ret;

	uint8_t *buf = NULL;

	*got = NULL;
	ret = ctrl_state_encode(from, &o->msg, &buf, &len);
	ctrl_out_release(o);
	if (ret < 0)
		return ret;
	assert_true(len <= CTRL_DATA_MSG_MAX);
	memcpy(wire, buf, len);
	free(buf);
	return ctrl_state_recv(to, wire, len, got);
}

/* Sends and expects the peer to admit the message; frees it. */
void pass(struct ctrl_state *from, struct ctrl_state *to, struct ctrl_out *o)
{
	RdmigMsg *m = NULL;

	assert_int_equal(xfer(from, to, o, &m), 0);
	assert_non_null(m);
	ctrl_free(m);
}

void pair_init(struct pair *p, uint64_t feat_src, uint64_t feat_dst)
{
	static const char secret[] = "0123456789abcdef-test-secret";

	memset(p, 0, sizeof(*p));
	ctrl_state_init(&p->src, CTRL_ROLE_SOURCE, "test-dest");
	ctrl_state_init(&p->dst, CTRL_ROLE_DEST, "test-source");
	assert_int_equal(auth_secret_from_buf(secret, strlen(secret), &p->secret), 0);
	assert_int_equal(auth_nonce(p->nsrc), 0);
	assert_int_equal(auth_nonce(p->ndst), 0);
	p->mig_src = p->mig_dst = "mig-1";
	p->feat_src = feat_src;
	p->feat_dst = feat_dst;
	p->channel = CTRL_CHANNEL_CONTROL;
}

void pair_fini(struct pair *p)
{
	ctrl_state_clear(&p->src);
	ctrl_state_clear(&p->dst);
	auth_secret_free(p->secret);
}

void hello_of(struct ctrl_out *o, struct pair *p, enum ctrl_role role)
{
	struct ctrl_hello h = {
	    .role = role,
	    .channel = p->channel,
	    .features = role == CTRL_ROLE_SOURCE ? p->feat_src : p->feat_dst,
	    .page_size = PS,
	    .migration_id = role == CTRL_ROLE_SOURCE ? p->mig_src : p->mig_dst,
	    .nonce = role == CTRL_ROLE_SOURCE ? p->nsrc : p->ndst,
	    .agent_version = "rdmig 0.1.0",
	};

	assert_int_equal(ctrl_msg_hello(o, &h), 0);
}

void prove(struct ctrl_state *st, struct auth_secret *s, struct ctrl_out *o)
{
	/* Builders borrow: the proof must outlive this function. */
	static uint8_t proof[AUTH_PROOF_LEN];
	struct auth_transcript t;

	assert_int_equal(ctrl_state_transcript(st, &t), 0);
	assert_int_equal(
	    auth_proof_compute(s, st->self == CTRL_ROLE_SOURCE ? AUTH_ROLE_SOURCE : AUTH_ROLE_DEST,
			       &t, proof),
	    0);
	assert_int_equal(ctrl_msg_auth_proof(o, proof), 0);
}

int verify(struct ctrl_state *st, struct auth_secret *s, const RdmigMsg *m)
{
	struct auth_transcript t;

	assert_int_equal(ctrl_state_transcript(st, &t), 0);
	return auth_proof_verify(s,
				 st->self == CTRL_ROLE_SOURCE ? AUTH_ROLE_DEST : AUTH_ROLE_SOURCE,
				 &t, m->auth_proof->hmac.data, m->auth_proof->hmac.len);
}

/* The whole handshake of docs/protocol.md, asserting each step. */
void handshake(struct pair *p)
{
	struct ctrl_out o;
	RdmigMsg *m;

	hello_of(&o, p, CTRL_ROLE_DEST);
	pass(&p->dst, &p->src, &o);
	hello_of(&o, p, CTRL_ROLE_SOURCE);
	pass(&p->src, &p->dst, &o);
	assert_int_equal(p->src.phase, CTRL_PH_DEST_PROOF);
	assert_int_equal(p->dst.phase, CTRL_PH_DEST_PROOF);

	prove(&p->dst, p->secret, &o);
	assert_int_equal(xfer(&p->dst, &p->src, &o, &m), 0);
	assert_int_equal(verify(&p->src, p->secret, m), 0);
	ctrl_free(m);
	ctrl_state_set_peer_verified(&p->src);
	assert_int_equal(ctrl_state_derive_keys(&p->src, p->secret), 0);
	ctrl_msg_auth_result(&o, true, NULL);
	pass(&p->src, &p->dst, &o);

	prove(&p->src, p->secret, &o);
	assert_int_equal(xfer(&p->src, &p->dst, &o, &m), 0);
	assert_int_equal(verify(&p->dst, p->secret, m), 0);
	ctrl_free(m);
	ctrl_state_set_peer_verified(&p->dst);
	assert_int_equal(ctrl_state_derive_keys(&p->dst, p->secret), 0);
	ctrl_msg_auth_result(&o, true, NULL);
	pass(&p->dst, &p->src, &o);
	assert_true(ctrl_state_authenticated(&p->src));
	assert_true(ctrl_state_authenticated(&p->dst));
}

/* cmocka group setup and teardown: wire allocated for the group. */
int group_setup(void **state)
{
	wire = malloc(CTRL_DATA_MSG_MAX);
	return wire ? 0 : -1;
}

int group_teardown(void **state)
{
	free(wire);
	return 0;
}
