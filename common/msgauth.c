// SPDX-License-Identifier: GPL-2.0-or-later
#include "msgauth.h"

#include <errno.h>
#include <limits.h>
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

/* Keys the direction's cipher context once; each message then only sets a nonce. */
static int msgauth_key_ctx(struct msgauth_key *k)
{
	k->ctx = EVP_CIPHER_CTX_new();
	if (!k->ctx || !EVP_EncryptInit_ex(k->ctx, EVP_aes_256_gcm(), NULL, k->key, NULL)) {
		msgauth_log_ssl("AES-256-GCM context for a session key");
		return -EIO;
	}
	return 0;
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
	if (ret == 0)
		ret = msgauth_key_ctx(&ma->send);
	if (ret == 0)
		ret = msgauth_key_ctx(&ma->recv);
	if (ret < 0) {
		msgauth_clear(ma);
		return ret;
	}
	ma->ready = true;
	return 0;
}

/*
 * GMAC: AES-256-GCM with msg as additional data and nothing to encrypt,
 * nonce 0^32 || be64(next).  Each nonce is used once per key: the counter
 * only moves forward and each direction has its own key.
 */
static int msgauth_tag(const struct msgauth_key *k, const void *msg, size_t len,
		       uint8_t tag[MSGAUTH_TAG_LEN])
{
	uint8_t iv[12] = {0}, none[16];
	int out_len = 0;

	if (len > INT_MAX)
		return -EMSGSIZE;
	for (int i = 0; i < 8; i++)
		iv[4 + i] = (uint8_t)(k->next >> (56 - 8 * i));
	if (!EVP_EncryptInit_ex(k->ctx, NULL, NULL, NULL, iv) ||
	    !EVP_EncryptUpdate(k->ctx, NULL, &out_len, msg, (int)len) ||
	    !EVP_EncryptFinal_ex(k->ctx, none, &out_len) ||
	    !EVP_CIPHER_CTX_ctrl(k->ctx, EVP_CTRL_AEAD_GET_TAG, MSGAUTH_TAG_LEN, tag)) {
		msgauth_log_ssl("AES-256-GMAC of a control message");
		return -EIO;
	}
	return 0;
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
	EVP_CIPHER_CTX_free(ma->send.ctx);
	EVP_CIPHER_CTX_free(ma->recv.ctx);
	OPENSSL_cleanse(ma, sizeof(*ma));
}
