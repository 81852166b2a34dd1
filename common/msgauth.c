// SPDX-License-Identifier: GPL-2.0-or-later
#include "msgauth.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <string.h>

#include "log.h"

static void msgauth_log_ssl(const char *what)
{
	char txt[256] = "no OpenSSL error recorded";
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, txt, sizeof(txt));
	ERR_clear_error();
	log_err("%s: %s", what, txt);
}

int msgauth_derive_key(const struct auth_secret *s, const struct auth_transcript *t,
		       enum msgauth_dir dir, uint8_t key[MSGAUTH_KEY_LEN])
{
	uint8_t ikm[AUTH_SECRET_MAX], salt[MSGAUTH_SALT_LEN], info[MSGAUTH_INFO_LEN];
	char digest[] = "SHA256";
	const size_t label_len = sizeof(MSGAUTH_LABEL) - 1;
	EVP_KDF_CTX *kctx = NULL;
	EVP_KDF *kdf = NULL;
	OSSL_PARAM params[5];
	size_t ikm_len = 0;
	int ret;

	if (dir != MSGAUTH_SOURCE_TO_DEST && dir != MSGAUTH_DEST_TO_SOURCE)
		return -EINVAL;
	memcpy(info, MSGAUTH_LABEL, label_len);
	ret = auth_transcript_hash(t, info + label_len);
	if (ret < 0)
		return ret;
	info[label_len + AUTH_TRANSCRIPT_HASH_LEN] = (uint8_t)dir;
	memcpy(salt, t->source.nonce, AUTH_NONCE_LEN);
	memcpy(salt + AUTH_NONCE_LEN, t->dest.nonce, AUTH_NONCE_LEN);
	ret = auth_secret_copy(s, ikm, sizeof(ikm), &ikm_len);
	if (ret < 0)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm, ikm_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt));
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info));
	params[4] = OSSL_PARAM_construct_end();
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	if (!kctx || EVP_KDF_derive(kctx, key, MSGAUTH_KEY_LEN, params) != 1) {
		msgauth_log_ssl("HKDF-SHA256 of a session key");
		OPENSSL_cleanse(key, MSGAUTH_KEY_LEN);
		ret = -EIO;
	}
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	OPENSSL_cleanse(ikm, sizeof(ikm));
	return ret;
}

int msgauth_init(struct msgauth *ma, const struct auth_secret *s, const struct auth_transcript *t,
		 enum auth_role self)
{
	enum msgauth_dir out = MSGAUTH_SOURCE_TO_DEST, in = MSGAUTH_DEST_TO_SOURCE;
	int ret;

	msgauth_clear(ma);
	if (self != AUTH_ROLE_SOURCE && self != AUTH_ROLE_DEST)
		return -EINVAL;
	if (self == AUTH_ROLE_DEST) {
		out = MSGAUTH_DEST_TO_SOURCE;
		in = MSGAUTH_SOURCE_TO_DEST;
	}
	ret = msgauth_derive_key(s, t, out, ma->send.key);
	if (ret == 0)
		ret = msgauth_derive_key(s, t, in, ma->recv.key);
	if (ret < 0) {
		msgauth_clear(ma);
		return ret;
	}
	ma->ready = true;
	return 0;
}

/* HMAC-SHA256(key, be64(seq) || msg), the first MSGAUTH_TAG_LEN bytes. */
static int msgauth_tag(const struct msgauth_key *k, const void *msg, size_t len,
		       uint8_t tag[MSGAUTH_TAG_LEN])
{
	uint8_t seq[8], full[32];
	char digest[] = "SHA256";
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx = NULL;
	EVP_MAC *mac = NULL;
	size_t out_len = 0;
	int ret = 0;

	for (int i = 0; i < 8; i++)
		seq[i] = (uint8_t)(k->next >> (56 - 8 * i));
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	if (!ctx || !EVP_MAC_init(ctx, k->key, MSGAUTH_KEY_LEN, params) ||
	    !EVP_MAC_update(ctx, seq, sizeof(seq)) || !EVP_MAC_update(ctx, msg, len) ||
	    !EVP_MAC_final(ctx, full, &out_len, sizeof(full)) || out_len != sizeof(full)) {
		msgauth_log_ssl("HMAC-SHA256 of a control message");
		ret = -EIO;
	} else {
		memcpy(tag, full, MSGAUTH_TAG_LEN);
	}
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	OPENSSL_cleanse(full, sizeof(full));
	return ret;
}

int msgauth_seal(struct msgauth *ma, const void *msg, size_t len, uint8_t tag[MSGAUTH_TAG_LEN])
{
	int ret;

	if (!ma->ready)
		return -EPERM;
	ret = msgauth_tag(&ma->send, msg, len, tag);
	if (ret == 0)
		ma->send.next++;
	return ret;
}

int msgauth_open(struct msgauth *ma, const void *msg, size_t len, const uint8_t *tag,
		 size_t tag_len)
{
	uint8_t expect[MSGAUTH_TAG_LEN];
	int ret;

	if (!ma->ready)
		return -EPERM;
	if (!tag || tag_len != MSGAUTH_TAG_LEN)
		return -EBADMSG;
	ret = msgauth_tag(&ma->recv, msg, len, expect);
	if (ret == 0)
		ret = CRYPTO_memcmp(expect, tag, MSGAUTH_TAG_LEN) == 0 ? 0 : -EBADMSG;
	if (ret == 0)
		ma->recv.next++;
	return ret;
}

void msgauth_clear(struct msgauth *ma)
{
	OPENSSL_cleanse(ma, sizeof(*ma));
}
