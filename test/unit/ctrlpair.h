/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ctrlpair: the unit tests' source and destination control states
 * (ctrl.h), with the handshake of docs/protocol.md done in memory and
 * asserted step by step (cmocka).  Used by test_ctrl.c and test_ctrlconn.c.
 */
#ifndef RDMIG_TEST_CTRLPAIR_H
#define RDMIG_TEST_CTRLPAIR_H

#include <stdint.h>

#include "auth.h"
#include "ctrl.h"

#define PS 4096u

/* CTRL_DATA_MSG_MAX bytes, shared by the tests; each test program allocates it. */
extern uint8_t *wire;

struct pair {
	struct ctrl_state src, dst;
	struct auth_secret *secret;
	uint8_t nsrc[AUTH_NONCE_LEN], ndst[AUTH_NONCE_LEN];
	const char *mig_src, *mig_dst;
	uint64_t feat_src, feat_dst;
	enum ctrl_channel channel;
};

/* One message from one state to the other through the codec; *got as ctrl_state_recv(). */
int xfer(struct ctrl_state *from, struct ctrl_state *to, struct ctrl_out *o, RdmigMsg **got);
/* Sends and expects the peer to admit the message; frees it. */
void pass(struct ctrl_state *from, struct ctrl_state *to, struct ctrl_out *o);
void pair_init(struct pair *p, uint64_t feat_src, uint64_t feat_dst);
void pair_fini(struct pair *p);
void hello_of(struct ctrl_out *o, struct pair *p, enum ctrl_role role);
void prove(struct ctrl_state *st, struct auth_secret *s, struct ctrl_out *o);
int verify(struct ctrl_state *st, struct auth_secret *s, const RdmigMsg *m);
/* The whole handshake of docs/protocol.md, asserting each step. */
void handshake(struct pair *p);

/* The group setup and teardown of a test program: wire, allocated and freed. */
int group_setup(void **state);
int group_teardown(void **state);

#endif
