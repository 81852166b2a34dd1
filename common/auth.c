// SPDX-License-Identifier: GPL-2.0-or-later
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/*
 * Bumped whenever the transcript layout changes, so proofs of different
 * layouts can never match each other.
 */
static const char auth_label[] = "rdmig control auth v1";

/* label, role, id, two hellos: see auth_transcript_encode(). */
#define AUTH_TRANSCRIPT_MAX                                                                        \
	(1 + sizeof(auth_label) + 1 + 1 + AUTH_MIGRATION_ID_MAX +                                  \
	 2 * (4 + 4 + 8 + 4 + 4 + AUTH_NONCE_LEN))

/*
 * The secret lives in its own anonymous mapping so that madvise() can keep
 * it out of core dumps (MADV_DONTDUMP) and mlock() out of swap; a heap
 * object would share its pages with everything else.
 */
struct auth_secret {
	size_t len;
	size_t map_len;
	uint8_t buf[];
};

static int secret_new(const void *buf, size_t len, struct auth_secret **out)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t map_len;
	struct auth_secret *s;

	if (len < AUTH_SECRET_MIN || len > AUTH_SECRET_MAX) {
		log_err("secret of %zu bytes rejected: it must be %d..%d bytes", len,
			AUTH_SECRET_MIN, AUTH_SECRET_MAX);
		return -EINVAL;
	}
	if (page <= 0)
		page = 4096;
	map_len = (sizeof(*s) + len + (size_t)page - 1) / (size_t)page * (size_t)page;
	s = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return -ENOMEM;
	if (madvise(s, map_len, MADV_DONTDUMP) < 0)
		log_warn("secret memory: madvise(MADV_DONTDUMP): %s", strerror(errno));
	/* Best effort: a low RLIMIT_MEMLOCK only lets the page reach swap. */
	if (mlock(s, map_len) < 0)
		log_debug("secret memory: mlock: %s", strerror(errno));
	s->len = len;
	s->map_len = map_len;
	memcpy(s->buf, buf, len);
	*out = s;
	return 0;
}

int auth_secret_from_buf(const void *buf, size_t len, struct auth_secret **out)
{
	return secret_new(buf, len, out);
}

/* Reads fd until end of file or until buf is full; *len: bytes read. */
static int secret_read_all(int fd, uint8_t *buf, size_t cap, size_t *len)
{
	ssize_t n;

	*len = 0;
	while (*len < cap) {
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		*len += (size_t)n;
	}
	return 0;
}

static const char *secret_file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	default:
		return "not a regular file";
	}
}

/*
 * The rules of AUTH_SECRET_FILE_RULE on an open file, before any byte is
 * read: nothing but a regular file can make read() wait for another
 * process, and only root (or the agent's own user) may have written it.
 */
static int secret_file_check(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode)) {
		log_err("secret file %s refused: it is %s; it must be %s", path,
			secret_file_kind(st->st_mode), AUTH_SECRET_FILE_RULE);
		return -EINVAL;
	}
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		log_err("secret file %s refused: it is owned by uid %u; it must be %s", path,
			(unsigned)st->st_uid, AUTH_SECRET_FILE_RULE);
		return -EACCES;
	}
	if (st->st_mode & (S_IRWXG | S_IRWXO)) {
		log_err("secret file %s refused: its mode %04o lets group or others in; it must be "
			"%s (chmod 600 it)",
			path, (unsigned)(st->st_mode & 07777), AUTH_SECRET_FILE_RULE);
		return -EACCES;
	}
	return 0;
}

/* Printable ASCII, tabs and line ends only: what echo or an editor writes. */
static bool secret_is_text(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((buf[i] < 0x20 && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r') ||
		    buf[i] >= 0x7f)
			return false;
	return true;
}

int auth_secret_load_file(const char *path, struct auth_secret **out)
{
	/* Room for the longest secret, a "\r\n", and one byte to detect excess. */
	uint8_t buf[AUTH_SECRET_MAX + 3];
	size_t len = 0;
	struct stat st;
	int fd, ret;

	/*
	 * O_NONBLOCK: opening a FIFO or a tty returns at once instead of
	 * waiting for a writer or a carrier; O_NOFOLLOW: a symlink as the
	 * last component is refused (ELOOP), never followed.
	 */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		ret = -errno;
		log_err("secret file %s refused: %s; it must be %s", path,
			errno == ELOOP ? "it is a symbolic link" : strerror(errno),
			AUTH_SECRET_FILE_RULE);
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		log_err("cannot stat secret file %s: %s", path, strerror(errno));
		goto out;
	}
	ret = secret_file_check(path, &st);
	if (ret < 0)
		goto out;
	ret = secret_read_all(fd, buf, sizeof(buf), &len);
	if (ret < 0) {
		log_err("cannot read secret file %s: %s", path, strerror(-ret));
		goto out;
	}
	/*
	 * A text secret written by echo or an editor ends in a newline that is
	 * not part of it.  A binary one (random bytes) is taken whole: its last
	 * byte is 0x0a one time in 256, and cutting it would make the file
	 * disagree with the same secret given as base64.
	 */
	if (secret_is_text(buf, len)) {
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len < AUTH_SECRET_MIN || len > AUTH_SECRET_MAX) {
		ret = -EINVAL;
		log_err("secret file %s: %s secret: it must be %d..%d bytes", path,
			len < AUTH_SECRET_MIN ? "too short a" : "too long a", AUTH_SECRET_MIN,
			AUTH_SECRET_MAX);
		goto out;
	}
	ret = secret_new(buf, len, out);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return ret;
}

int auth_secret_read_fd(int fd, struct auth_secret **out)
{
	/* One byte more than the longest secret, to detect excess. */
	uint8_t buf[AUTH_SECRET_MAX + 1];
	size_t len = 0;
	int ret;

	ret = secret_read_all(fd, buf, sizeof(buf), &len);
	if (ret < 0) {
		log_err("cannot read the secret from fd %d: %s", fd, strerror(-ret));
		goto out;
	}
	if (len < AUTH_SECRET_MIN || len > AUTH_SECRET_MAX) {
		ret = -EINVAL;
		log_err("secret from fd %d: %s secret: it must be %d..%d bytes", fd,
			len < AUTH_SECRET_MIN ? "too short a" : "too long a", AUTH_SECRET_MIN,
			AUTH_SECRET_MAX);
		goto out;
	}
	ret = secret_new(buf, len, out);
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return ret;
}

int auth_secret_write_fd(const struct auth_secret *s, int fd)
{
	size_t off = 0;
	ssize_t n;

	while (off < s->len) {
		n = write(fd, s->buf + off, s->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_err("cannot write the secret to fd %d: %s", fd, strerror(errno));
			return -errno;
		}
		if (n == 0) {
			log_err("cannot write the secret to fd %d: short write", fd);
			return -EIO;
		}
		off += (size_t)n;
	}
	return 0;
}

bool auth_secret_same(const struct auth_secret *a, const struct auth_secret *b)
{
	return a && b && a->len == b->len && CRYPTO_memcmp(a->buf, b->buf, a->len) == 0;
}

int auth_secret_copy(const struct auth_secret *s, uint8_t *buf, size_t cap, size_t *len)
{
	if (cap < s->len)
		return -ENOSPC;
	memcpy(buf, s->buf, s->len);
	*len = s->len;
	return 0;
}

void auth_secret_free(struct auth_secret *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s->buf, s->len);
	munmap(s, s->map_len);
}

/* Logs the OpenSSL error queue under one message, then clears it. */
static void auth_log_ssl(const char *what)
{
	unsigned long e = ERR_get_error();
	char txt[256] = "no OpenSSL error recorded";

	if (e)
		ERR_error_string_n(e, txt, sizeof(txt));
	log_err("%s: %s", what, txt);
	ERR_clear_error();
}

int auth_nonce(uint8_t out[AUTH_NONCE_LEN])
{
	if (RAND_bytes(out, AUTH_NONCE_LEN) != 1) {
		auth_log_ssl("RAND_bytes for an authentication nonce");
		return -EIO;
	}
	return 0;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	return p + bytes;
}

static uint8_t *put_hello(uint8_t *p, const struct auth_hello *h)
{
	p = put_be(p, h->min_version, 4);
	p = put_be(p, h->max_version, 4);
	p = put_be(p, h->features, 8);
	p = put_be(p, h->page_size, 4);
	p = put_be(p, h->channel, 4);
	memcpy(p, h->nonce, AUTH_NONCE_LEN);
	return p + AUTH_NONCE_LEN;
}

/*
 * Variable-length parts carry a length byte so that no two different
 * transcripts encode to the same bytes.
 */
static int auth_transcript_encode(enum auth_role prover, const struct auth_transcript *t,
				  uint8_t *buf, size_t *len)
{
	size_t id_len;
	uint8_t *p = buf;

	if (prover != AUTH_ROLE_SOURCE && prover != AUTH_ROLE_DEST) {
		log_err("authentication transcript: invalid prover role %d", (int)prover);
		return -EINVAL;
	}
	id_len = t->migration_id ? strnlen(t->migration_id, AUTH_MIGRATION_ID_MAX + 1) : 0;
	if (id_len == 0 || id_len > AUTH_MIGRATION_ID_MAX) {
		log_err("authentication transcript: migration id must be 1..%d bytes",
			AUTH_MIGRATION_ID_MAX);
		return -EINVAL;
	}
	*p++ = (uint8_t)(sizeof(auth_label) - 1);
	memcpy(p, auth_label, sizeof(auth_label) - 1);
	p += sizeof(auth_label) - 1;
	*p++ = (uint8_t)prover;
	*p++ = (uint8_t)id_len;
	memcpy(p, t->migration_id, id_len);
	p += id_len;
	p = put_hello(p, &t->source);
	p = put_hello(p, &t->dest);
	*len = (size_t)(p - buf);
	return 0;
}

int auth_proof_compute(const struct auth_secret *s, enum auth_role prover,
		       const struct auth_transcript *t, uint8_t out[AUTH_PROOF_LEN])
{
	uint8_t msg[AUTH_TRANSCRIPT_MAX];
	size_t msg_len, out_len = 0;
	int ret;

	ret = auth_transcript_encode(prover, t, msg, &msg_len);
	if (ret < 0)
		return ret;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, s->buf, s->len, msg, msg_len, out,
		       AUTH_PROOF_LEN, &out_len) ||
	    out_len != AUTH_PROOF_LEN) {
		auth_log_ssl("HMAC-SHA256 of the authentication transcript");
		OPENSSL_cleanse(out, AUTH_PROOF_LEN);
		return -EIO;
	}
	return 0;
}

int auth_proof_verify(const struct auth_secret *s, enum auth_role prover,
		      const struct auth_transcript *t, const uint8_t *proof, size_t len)
{
	uint8_t expect[AUTH_PROOF_LEN];
	int ret;

	if (!proof || len != AUTH_PROOF_LEN)
		return -EACCES;
	ret = auth_proof_compute(s, prover, t, expect);
	if (ret < 0)
		goto out;
	ret = CRYPTO_memcmp(expect, proof, AUTH_PROOF_LEN) == 0 ? 0 : -EACCES;
out:
	OPENSSL_cleanse(expect, sizeof(expect));
	return ret;
}

int auth_transcript_hash(const struct auth_transcript *t, uint8_t out[AUTH_TRANSCRIPT_HASH_LEN])
{
	uint8_t msg[2 * AUTH_TRANSCRIPT_MAX];
	size_t a, b;
	int ret;

	ret = auth_transcript_encode(AUTH_ROLE_DEST, t, msg, &a);
	if (ret == 0)
		ret = auth_transcript_encode(AUTH_ROLE_SOURCE, t, msg + a, &b);
	if (ret < 0)
		return ret;
	if (!EVP_Digest(msg, a + b, out, NULL, EVP_sha256(), NULL)) {
		auth_log_ssl("SHA-256 of the authentication transcript");
		return -EIO;
	}
	return 0;
}
