// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "msgauth.h"

static const char secret_txt[] = "correct horse battery staple";

/*
 * Known answers computed outside this code: the transcript hash with
 * python3's hashlib over the layout of docs/protocol.md §6 (T(DEST) then
 * T(SOURCE)), the keys with
 *   openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:<secret>
 *     -kdfopt hexsalt:<11 x32><22 x32> -kdfopt hexinfo:<label><hash><dir> HKDF
 * and the tags of "hello" with
 *   openssl mac -cipher AES-256-GCM -macopt hexkey:<K1> -macopt hexiv:<0^32 be64(n)> GMAC
 */
static const char kat_hash[] = "b40e40dc29e35f5cdbdb69a3395bf368cf0044e08ed015a83c66267d21db27be";
static const char kat_s2d[] = "49f949fdff221a4192209687b070497f0a12c85e71b2d6b165e6c6a6e609977c";
static const char kat_d2s[] = "920fc273de206230faf5478c334175837975538077a6852e465bb64b9e8f2530";
static const char kat_tag0[] = "69c3955da68f4ae9d9fa22c8d9e4cb01";
static const char kat_tag1[] = "e033e047890b666a4dfa25773945c4c0";

static struct auth_transcript make_transcript(uint8_t src_nonce_byte)
{
	struct auth_transcript t = {
	    .migration_id = "mig-42",
	    .source = {.min_version = 2, .max_version = 2, .features = 2, .page_size = 4096},
	    .dest = {.min_version = 2, .max_version = 2, .features = 6, .page_size = 4096},
	};

	memset(t.source.nonce, src_nonce_byte, AUTH_NONCE_LEN);
	memset(t.dest.nonce, 0x22, AUTH_NONCE_LEN);
	return t;
}

static struct auth_secret *secret_of(const char *s)
{
	struct auth_secret *sec = NULL;

	assert_int_equal(auth_secret_from_buf(s, strlen(s), &sec), 0);
	return sec;
}

static void hex_of(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Both ends of one connection, keys derived. */
struct ends {
	struct auth_secret *s;
	struct msgauth src, dst;
};

static void ends_init(struct ends *e)
{
	struct auth_transcript t = make_transcript(0x11);

	memset(e, 0, sizeof(*e));
	e->s = secret_of(secret_txt);
	assert_int_equal(msgauth_init(&e->src, e->s, &t, AUTH_ROLE_SOURCE), 0);
	assert_int_equal(msgauth_init(&e->dst, e->s, &t, AUTH_ROLE_DEST), 0);
}

static void ends_fini(struct ends *e)
{
	msgauth_clear(&e->src);
	msgauth_clear(&e->dst);
	assert_false(e->src.ready);
	auth_secret_free(e->s);
}

static void test_known_answers(void **state)
{
	struct auth_transcript t = make_transcript(0x11);
	uint8_t h[AUTH_TRANSCRIPT_HASH_LEN], k[MSGAUTH_KEY_LEN], tag[MSGAUTH_TAG_LEN];
	char hex[2 * 32 + 1];
	struct ends e;

	assert_int_equal(auth_transcript_hash(&t, h), 0);
	hex_of(h, sizeof(h), hex);
	assert_string_equal(hex, kat_hash);

	ends_init(&e);
	assert_int_equal(msgauth_derive_key(e.s, &t, MSGAUTH_SOURCE_TO_DEST, k), 0);
	hex_of(k, sizeof(k), hex);
	assert_string_equal(hex, kat_s2d);
	assert_int_equal(msgauth_derive_key(e.s, &t, MSGAUTH_DEST_TO_SOURCE, k), 0);
	hex_of(k, sizeof(k), hex);
	assert_string_equal(hex, kat_d2s);
	assert_int_equal(msgauth_derive_key(e.s, &t, 3, k), -EINVAL);
	/* Each side sends with its direction's key and receives with the other. */
	assert_memory_equal(e.src.send.key, e.dst.recv.key, MSGAUTH_KEY_LEN);
	assert_memory_equal(e.dst.send.key, e.src.recv.key, MSGAUTH_KEY_LEN);
	hex_of(e.src.send.key, MSGAUTH_KEY_LEN, hex);
	assert_string_equal(hex, kat_s2d);

	assert_int_equal(msgauth_seal(&e.src, "hello", 5, tag), 0);
	hex_of(tag, sizeof(tag), hex);
	assert_string_equal(hex, kat_tag0);
	assert_int_equal(msgauth_seal(&e.src, "hello", 5, tag), 0);
	hex_of(tag, sizeof(tag), hex);
	assert_string_equal(hex, kat_tag1);
	ends_fini(&e);
}

/* Another nonce or another secret: other keys. */
static void test_keys_bound(void **state)
{
	struct auth_transcript t = make_transcript(0x11), t2 = make_transcript(0x12);
	struct auth_secret *other = secret_of("correct horse battery staplf");
	uint8_t k[MSGAUTH_KEY_LEN], k2[MSGAUTH_KEY_LEN];
	struct ends e;

	ends_init(&e);
	assert_int_equal(msgauth_derive_key(e.s, &t, MSGAUTH_SOURCE_TO_DEST, k), 0);
	assert_int_equal(msgauth_derive_key(e.s, &t2, MSGAUTH_SOURCE_TO_DEST, k2), 0);
	assert_memory_not_equal(k, k2, sizeof(k));
	assert_int_equal(msgauth_derive_key(other, &t, MSGAUTH_SOURCE_TO_DEST, k2), 0);
	assert_memory_not_equal(k, k2, sizeof(k));
	t2 = t;
	t2.source.features = 3; /* a negotiated field the proofs bind */
	assert_int_equal(msgauth_derive_key(e.s, &t2, MSGAUTH_SOURCE_TO_DEST, k2), 0);
	assert_memory_not_equal(k, k2, sizeof(k));
	assert_memory_not_equal(e.src.send.key, e.src.recv.key, MSGAUTH_KEY_LEN);
	auth_secret_free(other);
	ends_fini(&e);
}

static void test_roundtrip(void **state)
{
	uint8_t tag[MSGAUTH_TAG_LEN];
	char msg[32];
	struct ends e;

	ends_init(&e);
	for (int i = 0; i < 100; i++) {
		snprintf(msg, sizeof(msg), "message %d", i);
		assert_int_equal(msgauth_seal(&e.src, msg, strlen(msg), tag), 0);
		assert_int_equal(msgauth_open(&e.dst, msg, strlen(msg), tag, sizeof(tag)), 0);
		assert_int_equal(msgauth_seal(&e.dst, msg, strlen(msg), tag), 0);
		assert_int_equal(msgauth_open(&e.src, msg, strlen(msg), tag, sizeof(tag)), 0);
	}
	assert_int_equal(e.dst.recv.next, 100);
	ends_fini(&e);
}

/* Every flipped bit of the message or the tag is caught; the counter stays. */
static void test_tamper(void **state)
{
	uint8_t msg[64], tag[MSGAUTH_TAG_LEN];
	struct ends e;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7);
	ends_init(&e);
	assert_int_equal(msgauth_seal(&e.src, msg, sizeof(msg), tag), 0);
	for (size_t bit = 0; bit < 8 * sizeof(msg); bit++) {
		msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(msgauth_open(&e.dst, msg, sizeof(msg), tag, sizeof(tag)),
				 -EBADMSG);
		msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	for (size_t bit = 0; bit < 8 * sizeof(tag); bit++) {
		tag[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(msgauth_open(&e.dst, msg, sizeof(msg), tag, sizeof(tag)),
				 -EBADMSG);
		tag[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(e.dst.recv.next, 0);
	assert_int_equal(msgauth_open(&e.dst, msg, sizeof(msg), tag, sizeof(tag)), 0);
	ends_fini(&e);
}

static void test_replay_reorder(void **state)
{
	uint8_t t0[MSGAUTH_TAG_LEN], t1[MSGAUTH_TAG_LEN];
	struct ends e;

	ends_init(&e);
	assert_int_equal(msgauth_seal(&e.src, "first", 5, t0), 0);
	assert_int_equal(msgauth_seal(&e.src, "first", 5, t1), 0);
	/* Same bytes, other position: other tags. */
	assert_memory_not_equal(t0, t1, sizeof(t0));
	/* The second before the first: reordered. */
	assert_int_equal(msgauth_open(&e.dst, "first", 5, t1, sizeof(t1)), -EBADMSG);
	assert_int_equal(msgauth_open(&e.dst, "first", 5, t0, sizeof(t0)), 0);
	/* The first again: replayed. */
	assert_int_equal(msgauth_open(&e.dst, "first", 5, t0, sizeof(t0)), -EBADMSG);
	assert_int_equal(msgauth_open(&e.dst, "first", 5, t1, sizeof(t1)), 0);
	/* A dropped message: the next one no longer opens. */
	assert_int_equal(msgauth_seal(&e.src, "third", 5, t0), 0);
	assert_int_equal(msgauth_seal(&e.src, "fourth", 6, t1), 0);
	assert_int_equal(msgauth_open(&e.dst, "fourth", 6, t1, sizeof(t1)), -EBADMSG);
	ends_fini(&e);
}

static void test_truncation(void **state)
{
	uint8_t tag[MSGAUTH_TAG_LEN];
	struct ends e;

	ends_init(&e);
	assert_int_equal(msgauth_seal(&e.src, "abcdef", 6, tag), 0);
	assert_int_equal(msgauth_open(&e.dst, "abcdef", 5, tag, sizeof(tag)), -EBADMSG);
	assert_int_equal(msgauth_open(&e.dst, "abcdef", 0, tag, sizeof(tag)), -EBADMSG);
	assert_int_equal(msgauth_open(&e.dst, "abcdef", 6, tag, sizeof(tag) - 1), -EBADMSG);
	assert_int_equal(msgauth_open(&e.dst, "abcdef", 6, NULL, 0), -EBADMSG);
	/* Message bytes moved into the tag's place. */
	assert_int_equal(msgauth_open(&e.dst, "abcdefg", 7, tag, sizeof(tag)), -EBADMSG);
	assert_int_equal(msgauth_open(&e.dst, "abcdef", 6, tag, sizeof(tag)), 0);
	ends_fini(&e);
}

/* A message reflected to its sender, or opened with a fresh state of the wrong role. */
static void test_wrong_direction(void **state)
{
	struct auth_transcript t = make_transcript(0x11);
	uint8_t tag[MSGAUTH_TAG_LEN];
	struct msgauth again = {0};
	struct ends e;

	ends_init(&e);
	assert_int_equal(msgauth_seal(&e.src, "to the dest", 11, tag), 0);
	assert_int_equal(msgauth_open(&e.src, "to the dest", 11, tag, sizeof(tag)), -EBADMSG);
	assert_int_equal(msgauth_init(&again, e.s, &t, AUTH_ROLE_SOURCE), 0);
	assert_int_equal(msgauth_open(&again, "to the dest", 11, tag, sizeof(tag)), -EBADMSG);
	msgauth_clear(&again);
	assert_int_equal(msgauth_seal(&e.dst, "to the source", 13, tag), 0);
	assert_int_equal(msgauth_open(&e.dst, "to the source", 13, tag, sizeof(tag)), -EBADMSG);
	assert_int_equal(msgauth_open(&e.src, "to the source", 13, tag, sizeof(tag)), 0);
	assert_int_equal(msgauth_init(&again, e.s, &t, 3), -EINVAL);
	assert_false(again.ready);
	ends_fini(&e);
}

/*
 * Page tags: the key from
 *   openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:<secret>
 *     -kdfopt salt:mig-42 -kdfopt info:"rdmig page tag v2" HKDF
 * and the tag, the first 8 bytes of
 *   openssl dgst -sha256 -mac HMAC -macopt hexkey:<key> <page>
 * read as a little-endian u64, of a page of bytes (7 i + 3) mod 256.
 */
static void test_page_tags(void **state)
{
	static const char kat_page_key[] =
	    "7ec461cbc216fcfdf33d0b8887cdbcf80feac7074ffc9ab5e471c430d2dcd732";
	struct auth_secret *s = secret_of(secret_txt);
	uint8_t key[MSGAUTH_PAGE_KEY_LEN], page[4096];
	struct msgauth_pages mp = {0};
	char hex[2 * MSGAUTH_PAGE_KEY_LEN + 1];
	uint64_t tag, again;

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(7 * i + 3);
	assert_int_equal(msgauth_page_key(s, "mig-42", key), 0);
	hex_of(key, sizeof(key), hex);
	assert_string_equal(hex, kat_page_key);
	assert_int_equal(msgauth_page_key(s, "", key), -EINVAL);
	assert_int_equal(msgauth_page_key(s, "mig-42", key), 0);
	assert_int_equal(msgauth_pages_init(&mp, key), 0);
	assert_int_equal(msgauth_page_tag(&mp, page, sizeof(page), &tag), 0);
	assert_true(tag == 0xa9798670563392f7ull);
	/* The context is reused: the same page, the same tag; one bit off, another. */
	assert_int_equal(msgauth_page_tag(&mp, page, sizeof(page), &again), 0);
	assert_true(again == tag);
	page[4095] ^= 1;
	assert_int_equal(msgauth_page_tag(&mp, page, sizeof(page), &again), 0);
	assert_true(again != tag);
	msgauth_pages_free(&mp);
	/* Another migration id: another key, another tag. */
	page[4095] ^= 1;
	assert_int_equal(msgauth_page_key(s, "mig-43", key), 0);
	assert_int_equal(msgauth_pages_init(&mp, key), 0);
	assert_int_equal(msgauth_page_tag(&mp, page, sizeof(page), &again), 0);
	assert_true(again != tag);
	msgauth_pages_free(&mp);
	auth_secret_free(s);
}

static void test_not_ready(void **state)
{
	struct msgauth ma;
	uint8_t tag[MSGAUTH_TAG_LEN] = {0};

	memset(&ma, 0, sizeof(ma));
	assert_int_equal(msgauth_seal(&ma, "x", 1, tag), -EPERM);
	assert_int_equal(msgauth_open(&ma, "x", 1, tag, sizeof(tag)), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_answers),   cmocka_unit_test(test_keys_bound),
	    cmocka_unit_test(test_roundtrip),	    cmocka_unit_test(test_tamper),
	    cmocka_unit_test(test_replay_reorder),  cmocka_unit_test(test_truncation),
	    cmocka_unit_test(test_wrong_direction), cmocka_unit_test(test_page_tags),
	    cmocka_unit_test(test_not_ready),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
