/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msgauth: integrity of the control messages after the handshake
 * (docs/protocol.md, "Session keys and message authentication").
 *
 * Once both proofs have been verified, each side derives two keys with
 * HKDF-SHA256: IKM = the migration's secret, salt = the source's nonce then
 * the destination's, info = a label, the SHA-256 of the authenticated
 * transcript (auth_transcript_hash()) and the direction.  Every message
 * then carries HMAC-SHA256(key of its direction, be64(n) || bytes)
 * truncated to MSGAUTH_TAG_LEN bytes, where n counts the sealed messages
 * of that direction from 0 and is never sent: a replayed, reordered,
 * dropped, truncated or reflected message fails to open.
 *
 * Keys and counters live in the caller's struct msgauth (no heap);
 * msgauth_clear() cleanses it.  Functions return 0 or a negative errno.
 */
#ifndef RDMIG_MSGAUTH_H
#define RDMIG_MSGAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

#define MSGAUTH_KEY_LEN 32
/* 128 bits: the first failed tag ends the migration, so a forger gets one try. */
#define MSGAUTH_TAG_LEN	 16
#define MSGAUTH_SALT_LEN (2 * AUTH_NONCE_LEN)
/* label, transcript hash, direction byte */
#define MSGAUTH_INFO_LEN (sizeof(MSGAUTH_LABEL) - 1 + AUTH_TRANSCRIPT_HASH_LEN + 1)
/* Domain separation of the session keys; changes with the key schedule. */
#define MSGAUTH_LABEL "rdmig session key v2"

/* The direction byte of the HKDF info. */
enum msgauth_dir {
	MSGAUTH_SOURCE_TO_DEST = 1,
	MSGAUTH_DEST_TO_SOURCE = 2,
};

struct msgauth_key {
	uint8_t key[MSGAUTH_KEY_LEN];
	uint64_t next; /* implicit sequence number of the next message */
};

struct msgauth {
	bool ready;
	struct msgauth_key send, recv;
};

/*
 * The key of one direction: HKDF-SHA256 over the secret, the transcript's
 * nonces as salt and MSGAUTH_LABEL || auth_transcript_hash(t) || dir as
 * info.  Exposed for known-answer tests.
 */
int msgauth_derive_key(const struct auth_secret *s, const struct auth_transcript *t,
		       enum msgauth_dir dir, uint8_t key[MSGAUTH_KEY_LEN]);

/*
 * Both keys of the side `self` (sending key: self to peer), counters at 0.
 * On failure ma is left cleared (not ready).
 */
int msgauth_init(struct msgauth *ma, const struct auth_secret *s, const struct auth_transcript *t,
		 enum auth_role self);

/* Tags the next outgoing message and advances the sending counter. */
int msgauth_seal(struct msgauth *ma, const void *msg, size_t len, uint8_t tag[MSGAUTH_TAG_LEN]);

/*
 * Checks the next incoming message's tag in constant time and advances the
 * receiving counter.  -EBADMSG when it does not match (or tag_len is not
 * MSGAUTH_TAG_LEN); the counter is then left as it was.  -EIO when the MAC
 * cannot be computed, -EPERM before msgauth_init().
 */
int msgauth_open(struct msgauth *ma, const void *msg, size_t len, const uint8_t *tag,
		 size_t tag_len);

/* Cleanses the keys; ma is not ready afterwards. */
void msgauth_clear(struct msgauth *ma);

#endif
