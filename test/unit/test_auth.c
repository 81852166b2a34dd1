// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

static const char secret_txt[] = "correct horse battery staple";

static struct auth_transcript make_transcript(uint8_t src_nonce_byte, uint8_t dst_nonce_byte)
{
	struct auth_transcript t = {
	    .migration_id = "mig-42",
	    .source = {.min_version = 1, .max_version = 1, .features = 3, .page_size = 4096},
	    .dest = {.min_version = 1, .max_version = 2, .features = 7, .page_size = 4096},
	};

	memset(t.source.nonce, src_nonce_byte, AUTH_NONCE_LEN);
	memset(t.dest.nonce, dst_nonce_byte, AUTH_NONCE_LEN);
	return t;
}

static struct auth_secret *secret_of(const char *s)
{
	struct auth_secret *sec = NULL;

	assert_int_equal(auth_secret_from_buf(s, strlen(s), &sec), 0);
	assert_non_null(sec);
	return sec;
}

static void test_proof_roundtrip(void **state)
{
	struct auth_secret *s = secret_of(secret_txt);
	struct auth_transcript t = make_transcript(0x11, 0x22);
	uint8_t pd[AUTH_PROOF_LEN], ps[AUTH_PROOF_LEN];

	assert_int_equal(auth_proof_compute(s, AUTH_ROLE_DEST, &t, pd), 0);
	assert_int_equal(auth_proof_compute(s, AUTH_ROLE_SOURCE, &t, ps), 0);
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t, pd, sizeof(pd)), 0);
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_SOURCE, &t, ps, sizeof(ps)), 0);
	/* The two directions never share a proof: no reflection. */
	assert_memory_not_equal(pd, ps, AUTH_PROOF_LEN);
	auth_secret_free(s);
}

static void test_proof_rejections(void **state)
{
	struct auth_secret *s = secret_of(secret_txt);
	struct auth_secret *other = secret_of("another secret of some length");
	struct auth_transcript t = make_transcript(0x11, 0x22), t2;
	uint8_t pd[AUTH_PROOF_LEN], bad[AUTH_PROOF_LEN];

	assert_int_equal(auth_proof_compute(s, AUTH_ROLE_DEST, &t, pd), 0);

	/* Wrong secret. */
	assert_int_equal(auth_proof_verify(other, AUTH_ROLE_DEST, &t, pd, sizeof(pd)), -EACCES);
	/* Reflected: the dest's proof presented as the source's. */
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_SOURCE, &t, pd, sizeof(pd)), -EACCES);
	/* Another migration. */
	t2 = t;
	t2.migration_id = "mig-43";
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t2, pd, sizeof(pd)), -EACCES);
	/* Replayed into a connection with a fresh source nonce. */
	t2 = make_transcript(0x12, 0x22);
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t2, pd, sizeof(pd)), -EACCES);
	/* Nonces swapped between the hellos. */
	t2 = make_transcript(0x22, 0x11);
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t2, pd, sizeof(pd)), -EACCES);
	/* A feature downgrade by a man in the middle. */
	t2 = t;
	t2.dest.features = 1;
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t2, pd, sizeof(pd)), -EACCES);
	/* A channel kind swapped. */
	t2 = t;
	t2.source.channel = t2.dest.channel = 1;
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t2, pd, sizeof(pd)), -EACCES);
	/* One flipped bit, a short proof, no proof. */
	memcpy(bad, pd, sizeof(bad));
	bad[31] ^= 1;
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t, bad, sizeof(bad)), -EACCES);
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t, pd, sizeof(pd) - 1), -EACCES);
	assert_int_equal(auth_proof_verify(s, AUTH_ROLE_DEST, &t, NULL, 0), -EACCES);
	/* Bad transcript inputs are errors, not matches. */
	t2 = t;
	t2.migration_id = "";
	assert_int_equal(auth_proof_compute(s, AUTH_ROLE_DEST, &t2, bad), -EINVAL);
	assert_int_equal(auth_proof_verify(s, 3, &t, pd, sizeof(pd)), -EINVAL);
	auth_secret_free(s);
	auth_secret_free(other);
}

static void put_be(uint8_t **p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--)
		*(*p)++ = (uint8_t)(v >> (8 * i));
}

static void put_hello(uint8_t **p, const struct auth_hello *h)
{
	put_be(p, h->min_version, 4);
	put_be(p, h->max_version, 4);
	put_be(p, h->features, 8);
	put_be(p, h->page_size, 4);
	put_be(p, h->channel, 4);
	memcpy(*p, h->nonce, AUTH_NONCE_LEN);
	*p += AUTH_NONCE_LEN;
}

/* The transcript layout of docs/protocol.md, rebuilt by hand: the wire format is pinned. */
static void test_proof_matches_spec(void **state)
{
	static const char label[] = "rdmig control auth v1";
	struct auth_secret *s = secret_of(secret_txt);
	struct auth_transcript t = make_transcript(0xa5, 0x5a);
	uint8_t buf[512], *p = buf, mac[EVP_MAX_MD_SIZE], proof[AUTH_PROOF_LEN];
	unsigned mac_len = 0;

	*p++ = sizeof(label) - 1;
	memcpy(p, label, sizeof(label) - 1);
	p += sizeof(label) - 1;
	*p++ = AUTH_ROLE_SOURCE;
	*p++ = (uint8_t)strlen(t.migration_id);
	memcpy(p, t.migration_id, strlen(t.migration_id));
	p += strlen(t.migration_id);
	put_hello(&p, &t.source);
	put_hello(&p, &t.dest);
	assert_non_null(HMAC(EVP_sha256(), secret_txt, (int)strlen(secret_txt), buf,
			     (size_t)(p - buf), mac, &mac_len));
	assert_int_equal(mac_len, AUTH_PROOF_LEN);
	assert_int_equal(auth_proof_compute(s, AUTH_ROLE_SOURCE, &t, proof), 0);
	assert_memory_equal(proof, mac, AUTH_PROOF_LEN);
	auth_secret_free(s);
}

static void test_nonce(void **state)
{
	uint8_t a[AUTH_NONCE_LEN], b[AUTH_NONCE_LEN], zero[AUTH_NONCE_LEN] = {0};

	assert_int_equal(auth_nonce(a), 0);
	assert_int_equal(auth_nonce(b), 0);
	assert_memory_not_equal(a, b, AUTH_NONCE_LEN);
	assert_memory_not_equal(a, zero, AUTH_NONCE_LEN);
}

static void test_secret_lengths(void **state)
{
	char big[AUTH_SECRET_MAX + 1];
	struct auth_secret *s = NULL;

	memset(big, 'x', sizeof(big));
	assert_int_equal(auth_secret_from_buf("short", 5, &s), -EINVAL);
	assert_int_equal(auth_secret_from_buf(big, AUTH_SECRET_MIN - 1, &s), -EINVAL);
	assert_int_equal(auth_secret_from_buf(big, AUTH_SECRET_MAX + 1, &s), -EINVAL);
	assert_null(s);
	assert_int_equal(auth_secret_from_buf(big, AUTH_SECRET_MAX, &s), 0);
	auth_secret_free(s);
	s = NULL;
	assert_int_equal(auth_secret_from_buf(big, AUTH_SECRET_MIN, &s), 0);
	auth_secret_free(s);
	auth_secret_free(NULL);
}

struct tmpdir {
	char dir[64];
	char path[128];
};

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int tmp_setup(void **state)
{
	struct tmpdir *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	snprintf(d->dir, sizeof(d->dir), "/tmp/rdmig-auth-XXXXXX");
	if (!mkdtemp(d->dir))
		return -1;
	snprintf(d->path, sizeof(d->path), "%s/secret", d->dir);
	*state = d;
	return 0;
}

static int tmp_teardown(void **state)
{
	struct tmpdir *d = *state;

	unlink(d->path);
	rmdir(d->dir);
	free(d);
	return 0;
}

/* Runs auth_secret_load_file() with stderr captured into out. */
static int load_capturing(const char *path, struct auth_secret **s, char *out, size_t cap)
{
	FILE *tmp = tmpfile();
	int saved, ret;
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	ret = auth_secret_load_file(path, s);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, cap - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return ret;
}

static void test_secret_file(void **state)
{
	struct tmpdir *d = *state;
	struct auth_secret *from_file = NULL, *from_buf = secret_of(secret_txt);
	struct auth_transcript t = make_transcript(1, 2);
	uint8_t p1[AUTH_PROOF_LEN], p2[AUTH_PROOF_LEN];
	char err[2048], line[64];

	/* A trailing newline is not part of the secret. */
	snprintf(line, sizeof(line), "%s\n", secret_txt);
	write_file(d->path, line, strlen(line), 0600);
	assert_int_equal(load_capturing(d->path, &from_file, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(auth_proof_compute(from_file, AUTH_ROLE_DEST, &t, p1), 0);
	assert_int_equal(auth_proof_compute(from_buf, AUTH_ROLE_DEST, &t, p2), 0);
	assert_memory_equal(p1, p2, AUTH_PROOF_LEN);
	auth_secret_free(from_file);
	from_file = NULL;

	/* Stricter than 0600 is fine. */
	write_file(d->path, secret_txt, strlen(secret_txt), 0400);
	assert_int_equal(load_capturing(d->path, &from_file, err, sizeof(err)), 0);
	auth_secret_free(from_file);
	auth_secret_free(from_buf);
}

/* Random bytes that happen to end in 0x0a are a secret of their own length. */
static void test_secret_file_binary_newline(void **state)
{
	static const uint8_t bin[32] = {0x91, 0x00, 0x7f, 0xe2, 0x13, 0x37, 0xc0, 0xde,
					0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
					0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x10, 0x20,
					0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x0d, 0x0a};
	struct tmpdir *d = *state;
	struct auth_secret *from_file = NULL, *whole = NULL, *cut = NULL;
	struct auth_transcript t = make_transcript(1, 2);
	uint8_t p1[AUTH_PROOF_LEN], p2[AUTH_PROOF_LEN], p3[AUTH_PROOF_LEN];
	char err[2048];

	write_file(d->path, (const char *)bin, sizeof(bin), 0600);
	assert_int_equal(load_capturing(d->path, &from_file, err, sizeof(err)), 0);
	assert_int_equal(auth_secret_from_buf(bin, sizeof(bin), &whole), 0);
	assert_int_equal(auth_secret_from_buf(bin, sizeof(bin) - 2, &cut), 0);
	assert_int_equal(auth_proof_compute(from_file, AUTH_ROLE_DEST, &t, p1), 0);
	assert_int_equal(auth_proof_compute(whole, AUTH_ROLE_DEST, &t, p2), 0);
	assert_int_equal(auth_proof_compute(cut, AUTH_ROLE_DEST, &t, p3), 0);
	assert_memory_equal(p1, p2, AUTH_PROOF_LEN);
	assert_memory_not_equal(p1, p3, AUTH_PROOF_LEN);
	auth_secret_free(from_file);
	auth_secret_free(whole);
	auth_secret_free(cut);
}

/* Any group or other bit: refused, never just a warning; the log names file and rule. */
static void test_secret_file_loose_modes(void **state)
{
	static const mode_t modes[] = {0644, 0640, 0604, 0660, 0601, 0610, 0602, 0620};
	struct tmpdir *d = *state;
	struct auth_secret *s = NULL;
	char err[2048];

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		write_file(d->path, secret_txt, strlen(secret_txt), modes[i]);
		assert_int_equal(load_capturing(d->path, &s, err, sizeof(err)), -EACCES);
		assert_null(s);
		assert_non_null(strstr(err, d->path));
		assert_non_null(strstr(err, "group or others"));
		assert_non_null(strstr(err, "mode 0600 or stricter"));
	}
}

/* Owned by someone else than root (and than us): refused. */
static void test_secret_file_foreign_owner(void **state)
{
	struct tmpdir *d = *state;
	struct auth_secret *s = NULL;
	char err[2048];

	write_file(d->path, secret_txt, strlen(secret_txt), 0600);
	if (geteuid() != 0 || chown(d->path, 65534, 65534) < 0) {
		skip(); /* needs root to give the file away */
		return;
	}
	assert_int_equal(load_capturing(d->path, &s, err, sizeof(err)), -EACCES);
	assert_null(s);
	assert_non_null(strstr(err, "owned by uid 65534"));
}

/* A symlink to a good file is refused: the last component is never followed. */
static void test_secret_file_symlink(void **state)
{
	struct tmpdir *d = *state;
	struct auth_secret *s = NULL;
	char link[160], err[2048];

	write_file(d->path, secret_txt, strlen(secret_txt), 0600);
	snprintf(link, sizeof(link), "%s/link", d->dir);
	assert_int_equal(symlink(d->path, link), 0);
	assert_int_equal(load_capturing(link, &s, err, sizeof(err)), -ELOOP);
	assert_null(s);
	assert_non_null(strstr(err, "symbolic link"));
	unlink(link);
}

static void on_alarm(int sig)
{
	(void)sig;
	fail_msg("auth_secret_load_file() blocked");
}

/*
 * A FIFO without a writer and a pty without a reader-side peer would each
 * block a plain open()/read() for ever: both are refused at once (the alarm
 * fails the test instead of hanging it), before any byte is read.
 */
static void test_secret_file_not_regular(void **state)
{
	struct tmpdir *d = *state;
	struct auth_secret *s = NULL;
	char fifo[160], err[2048];
	const char *pts;
	int master;

	signal(SIGALRM, on_alarm);
	alarm(5);
	snprintf(fifo, sizeof(fifo), "%s/fifo", d->dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(load_capturing(fifo, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a FIFO"));
	unlink(fifo);

	master = posix_openpt(O_RDWR | O_NOCTTY);
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	pts = ptsname(master);
	assert_non_null(pts);
	assert_int_equal(load_capturing(pts, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a character device"));
	close(master);

	/* The controlling tty, if any (ENXIO without one): refused either way. */
	assert_true(load_capturing("/dev/tty", &s, err, sizeof(err)) < 0);
	assert_int_equal(load_capturing("/dev/null", &s, err, sizeof(err)), -EINVAL);
	assert_int_equal(load_capturing(d->dir, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a directory"));
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	assert_null(s);
}

/* Mappings of this process whose VmFlags carry "dd" (MADV_DONTDUMP). */
static int dontdump_mappings(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " dd"))
			n++;
	fclose(f);
	return n;
}

/* Every secret lives in its own mapping that core dumps leave out. */
static void test_secret_dontdump(void **state)
{
	struct auth_secret *s = NULL;
	int before = dontdump_mappings();

	s = secret_of(secret_txt);
	assert_int_equal(dontdump_mappings(), before + 1);
	auth_secret_free(s);
	assert_int_equal(dontdump_mappings(), before);
}

static void test_secret_file_rejects(void **state)
{
	struct tmpdir *d = *state;
	struct auth_secret *s = NULL;
	char big[AUTH_SECRET_MAX + 8], err[2048];

	write_file(d->path, "0123456789abcde\n", 16, 0600); /* 15 bytes of secret */
	assert_int_equal(load_capturing(d->path, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too short"));
	write_file(d->path, "", 0, 0600);
	assert_int_equal(load_capturing(d->path, &s, err, sizeof(err)), -EINVAL);
	memset(big, 'k', sizeof(big));
	write_file(d->path, big, AUTH_SECRET_MAX + 1, 0600);
	assert_int_equal(load_capturing(d->path, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(load_capturing("/nonexistent/rdmig/secret", &s, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/rdmig/secret"));
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_proof_roundtrip),
	    cmocka_unit_test(test_proof_rejections),
	    cmocka_unit_test(test_proof_matches_spec),
	    cmocka_unit_test(test_nonce),
	    cmocka_unit_test(test_secret_lengths),
	    cmocka_unit_test_setup_teardown(test_secret_file_binary_newline, tmp_setup,
					    tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_secret_file, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_secret_file_rejects, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_secret_file_loose_modes, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_secret_file_foreign_owner, tmp_setup,
					    tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_secret_file_symlink, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_secret_file_not_regular, tmp_setup, tmp_teardown),
	    cmocka_unit_test(test_secret_dontdump),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
