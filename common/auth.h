/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * auth: the per-migration shared secret and the mutual HMAC proofs of the
 * control protocol (docs/protocol.md, "Authentication").
 *
 * A proof is HMAC-SHA256(secret, transcript) where the transcript encodes a
 * domain-separation label, the prover's role, the migration id and the
 * negotiated fields and nonces of both Hellos, always source first.  The
 * role makes a proof useless when reflected back to its sender, the
 * migration id and the nonces make it useless in any other migration or
 * connection.  All cryptography is OpenSSL libcrypto; comparisons are
 * constant-time and secret copies are cleansed before they are freed.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_AUTH_H
#define RDMIG_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_SECRET_MIN		 16
#define AUTH_SECRET_MAX		 1024
#define AUTH_NONCE_LEN		 32
#define AUTH_PROOF_LEN		 32
#define AUTH_TRANSCRIPT_HASH_LEN 32
/* Longest migration id accepted in a transcript (ctrl enforces the charset). */
#define AUTH_MIGRATION_ID_MAX 64

/* Values match the protocol's Role enum. */
enum auth_role {
	AUTH_ROLE_SOURCE = 1,
	AUTH_ROLE_DEST = 2,
};

struct auth_secret;

/*
 * What a secret file must be; also the API's answer when one is refused,
 * which says nothing about whether the path exists.
 */
#define AUTH_SECRET_FILE_RULE                                                                      \
	"a regular file (not a symbolic link) owned by root, of mode 0600 or stricter, "           \
	"holding 16..1024 bytes"

/*
 * Reads the secret from a file: its whole content, less one trailing "\n"
 * or "\r\n", must be AUTH_SECRET_MIN..AUTH_SECRET_MAX bytes, and the file
 * must follow AUTH_SECRET_FILE_RULE (owned by root or by this process's
 * effective user; no group or other permission bit).  A refused file is
 * never read: the path is opened O_NOFOLLOW | O_NONBLOCK and checked with
 * fstat() first, so a FIFO, a tty, a socket or a device cannot make the
 * caller wait; O_NONBLOCK also turns a conflicting file lease (and, on old
 * kernels, a mandatory lock) into an error instead of a wait.  What
 * remains is reading at most 1027 bytes of a regular file, which may still
 * block on a hung network or FUSE filesystem: the API module calls this on
 * its offload thread, never on the event loop.  Thread-safe.  Logs the
 * precise reason.
 * Returns -EINVAL (not a regular file, bad length), -EACCES (owner or mode), -ELOOP (a symlink), or
 * the errno of open/read.  Caller owns *out and releases it with auth_secret_free().
 */
int auth_secret_load_file(const char *path, struct auth_secret **out);

/* Copies len bytes of buf into a new secret; same length rule. */
int auth_secret_from_buf(const void *buf, size_t len, struct auth_secret **out);

/*
 * Reads the secret from fd until end of file: every byte read is the
 * secret, exactly (no trailing newline is removed, unlike
 * auth_secret_load_file(), so binary secrets pass unchanged).  Meant for a
 * pipe a supervising process wrote the secret into, so the secret is never
 * on a command line, in the environment or in a file.  Same length rule;
 * -EINVAL past AUTH_SECRET_MAX.  fd stays open and owned by the caller.
 * Caller owns *out.
 */
int auth_secret_read_fd(int fd, struct auth_secret **out);

/*
 * Writes the secret's bytes to fd (blocking, all of them): the other end
 * of auth_secret_read_fd().  A pipe holds AUTH_SECRET_MAX bytes without a
 * reader, so writing into a fresh pipe never waits.  Returns 0, -EIO on a
 * short write, or the errno of write.
 */
int auth_secret_write_fd(const struct auth_secret *s, int fd);

/*
 * Copies the secret's bytes into buf (the source hands them to a
 * destination agent); the caller cleanses buf.  -ENOSPC if cap is short.
 */
int auth_secret_copy(const struct auth_secret *s, uint8_t *buf, size_t cap, size_t *len);

/* The same bytes (in constant time for equal lengths); NULL equals nothing. */
bool auth_secret_same(const struct auth_secret *a, const struct auth_secret *b);

/*
 * Cleanses and frees; NULL is fine.  Every secret is held in memory kept
 * out of core dumps (MADV_DONTDUMP) and, when RLIMIT_MEMLOCK allows, out
 * of swap (mlock).
 */
void auth_secret_free(struct auth_secret *s);

/* Fills out with AUTH_NONCE_LEN bytes from the OpenSSL CSPRNG; -EIO on failure. */
int auth_nonce(uint8_t out[AUTH_NONCE_LEN]);

/* One side's Hello fields that the proofs bind. */
struct auth_hello {
	uint32_t min_version;
	uint32_t max_version;
	uint64_t features;
	uint32_t page_size;
	uint32_t channel;
	uint8_t nonce[AUTH_NONCE_LEN];
};

/* Everything both proofs of a connection cover.  Borrowed pointers. */
struct auth_transcript {
	const char *migration_id; /* 1..AUTH_MIGRATION_ID_MAX bytes */
	struct auth_hello source;
	struct auth_hello dest;
};

/* Computes the proof of `prover` over t into out. */
int auth_proof_compute(const struct auth_secret *s, enum auth_role prover,
		       const struct auth_transcript *t, uint8_t out[AUTH_PROOF_LEN]);

/*
 * Checks a received proof of `prover` in constant time.  Returns 0 when it
 * matches, -EACCES when it does not (including a wrong length), or another
 * negative errno when it cannot be computed.
 */
int auth_proof_verify(const struct auth_secret *s, enum auth_role prover,
		      const struct auth_transcript *t, const uint8_t *proof, size_t len);

/*
 * SHA-256 of both transcripts the proofs cover, T(DEST) then T(SOURCE): what
 * session keys are bound to (msgauth.h).  0 or a negative errno.
 */
int auth_transcript_hash(const struct auth_transcript *t, uint8_t out[AUTH_TRANSCRIPT_HASH_LEN]);

#endif
