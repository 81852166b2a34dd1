/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msgauth: integrity of the control messages after the handshake
 * (docs/protocol.md, "Session keys and message authentication").
 *
 * Once both proofs have been verified, each side derives two keys with
 * HKDF-SHA256: IKM = the migration's secret, salt = the source's nonce then
 * the destination's, info = a label, the SHA-256 of the authenticated
 * transcript (auth_transcript_hash()) and the direction.  Every message
 * then carries a MSGAUTH_TAG_LEN-byte AES-256-GMAC tag: AES-256-GCM under
 * the key of its direction, with the message as the only (additional,
 * unencrypted) data and the 96-bit nonce 0^32 || be64(n), where n counts
 * the sealed messages of that direction from 0 and is never sent: a
 * replayed, reordered, dropped, truncated or reflected message fails to
 * open.  GMAC rather than HMAC-SHA256 for speed: it runs at 4 times the
 * rate here (AES-NI and carry-less multiply), and every page sent over TCP
 * passes through it twice.
 *
 * The caller owns struct msgauth: after a successful msgauth_init() it
 * holds one keyed OpenSSL cipher context per direction (the AES key
 * schedule is set up once, a message costs only its GHASH), which
 * msgauth_clear() frees along with
 * cleansing the keys.  Not thread-safe; a copy shares the contexts.
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_MSGAUTH_H
#define RDMIG_MSGAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

#define MSGAUTH_KEY_LEN 32
/* 128 bits, the full GCM tag: the first failed tag ends the migration. */
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

struct evp_cipher_ctx_st;
struct evp_mac_ctx_st;

struct msgauth_key {
	uint8_t key[MSGAUTH_KEY_LEN];
	uint64_t next;		       /* implicit sequence number of the next message */
	struct evp_cipher_ctx_st *ctx; /* AES-256-GCM keyed with key */
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
 * ma must be zeroed or cleared before; on failure it is left cleared.
 */
int msgauth_init(struct msgauth *ma, const struct auth_secret *s, const struct auth_transcript *t,
		 enum auth_role self);

/*
 * Tags the next outgoing message and advances the sending counter.
 * -EMSGSIZE above INT_MAX bytes.
 */
int msgauth_seal(struct msgauth *ma, const void *msg, size_t len, uint8_t tag[MSGAUTH_TAG_LEN]);

/*
 * Checks the next incoming message's tag in constant time and advances the
 * receiving counter.  -EBADMSG when it does not match (or tag_len is not
 * MSGAUTH_TAG_LEN); the counter is then left as it was.  -EIO when the MAC
 * cannot be computed, -EPERM before msgauth_init().
 */
int msgauth_open(struct msgauth *ma, const void *msg, size_t len, const uint8_t *tag,
		 size_t tag_len);

/* Frees the contexts and cleanses the keys; ma is not ready afterwards. */
void msgauth_clear(struct msgauth *ma);

/*
 * Page tags (FEAT_VERIFY_PAGES): what PageHashes carries for every lazy
 * page, in place of an unkeyed checksum, so that a page altered where no
 * message MAC covers it (an RDMA READ payload) cannot be made to match:
 * the first 8 bytes of HMAC-SHA256(page key, page) as a little-endian
 * u64.  The page key is HKDF-SHA256 of the secret with the migration id as
 * salt and MSGAUTH_PAGE_LABEL as info: per migration, not per connection,
 * because the source computes the tags once, when it maps the images.
 */
#define MSGAUTH_PAGE_KEY_LEN 32
#define MSGAUTH_PAGE_LABEL   "rdmig page tag v2"

int msgauth_page_key(const struct auth_secret *s, const char *migration_id,
		     uint8_t key[MSGAUTH_PAGE_KEY_LEN]);

/* A keyed context for page tags; one thread at a time. */
struct msgauth_pages {
	struct evp_mac_ctx_st *ctx;
};

/* Caller frees with msgauth_pages_free() (also after a failure). */
int msgauth_pages_init(struct msgauth_pages *mp, const uint8_t key[MSGAUTH_PAGE_KEY_LEN]);
int msgauth_page_tag(struct msgauth_pages *mp, const void *page, size_t len, uint64_t *tag);
void msgauth_pages_free(struct msgauth_pages *mp);

#endif
