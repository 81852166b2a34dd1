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

/* 32 bytes of HKDF-SHA256 with the secret as IKM. */
static int msgauth_hkdf(const struct auth_secret *s, const void *salt, size_t salt_len,
			const void *info, size_t info_len, uint8_t out[32])
{
	uint8_t ikm[AUTH_SECRET_MAX];
	char digest[] = "SHA256";
	EVP_KDF_CTX *kctx = NULL;
	EVP_KDF *kdf = NULL;
	OSSL_PARAM params[5];
	size_t ikm_len = 0;
	int ret;

	ret = auth_secret_copy(s, ikm, sizeof(ikm), &ikm_len);
	if (ret < 0)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm, ikm_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
	params[4] = OSSL_PARAM_construct_end();
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	if (!kctx || EVP_KDF_derive(kctx, out, 32, params) != 1) {
		msgauth_log_ssl("HKDF-SHA256 of a key");
		OPENSSL_cleanse(out, 32);
		ret = -EIO;
	}
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	OPENSSL_cleanse(ikm, sizeof(ikm));
	return ret;
}

int msgauth_derive_key(const struct auth_secret *s, const struct auth_transcript *t,
		       enum msgauth_dir dir, uint8_t key[MSGAUTH_KEY_LEN])
{
	uint8_t salt[MSGAUTH_SALT_LEN], info[MSGAUTH_INFO_LEN];
	const size_t label_len = sizeof(MSGAUTH_LABEL) - 1;
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
	return msgauth_hkdf(s, salt, sizeof(salt), info, sizeof(info), key);
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

int msgauth_page_key(const struct auth_secret *s, const char *migration_id,
		     uint8_t key[MSGAUTH_PAGE_KEY_LEN])
{
	size_t id_len = migration_id ? strnlen(migration_id, AUTH_MIGRATION_ID_MAX + 1) : 0;

	if (id_len == 0 || id_len > AUTH_MIGRATION_ID_MAX)
		return -EINVAL;
	return msgauth_hkdf(s, migration_id, id_len, MSGAUTH_PAGE_LABEL,
			    sizeof(MSGAUTH_PAGE_LABEL) - 1, key);
}

int msgauth_pages_init(struct msgauth_pages *mp, const uint8_t key[MSGAUTH_PAGE_KEY_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[2];
	EVP_MAC *mac;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	mp->ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context keeps its own reference */
	if (!mp->ctx || !EVP_MAC_init(mp->ctx, key, MSGAUTH_PAGE_KEY_LEN, params)) {
		msgauth_log_ssl("HMAC-SHA256 context for page tags");
		return -EIO;
	}
	return 0;
}

int msgauth_page_tag(struct msgauth_pages *mp, const void *page, size_t len, uint64_t *tag)
{
	uint8_t full[32];
	size_t out_len = 0;

	/* A NULL key re-initialises the context with the key it was given. */
	if (!EVP_MAC_init(mp->ctx, NULL, 0, NULL) || !EVP_MAC_update(mp->ctx, page, len) ||
	    !EVP_MAC_final(mp->ctx, full, &out_len, sizeof(full)) || out_len != sizeof(full)) {
		msgauth_log_ssl("HMAC-SHA256 of a page");
		return -EIO;
	}
	*tag = 0;
	for (int i = 7; i >= 0; i--)
		*tag = *tag << 8 | full[i];
	return 0;
}

void msgauth_pages_free(struct msgauth_pages *mp)
{
	EVP_MAC_CTX_free(mp->ctx);
	mp->ctx = NULL;
}

void msgauth_clear(struct msgauth *ma)
{
	EVP_CIPHER_CTX_free(ma->send.ctx);
	EVP_CIPHER_CTX_free(ma->recv.ctx);
	OPENSSL_cleanse(ma, sizeof(*ma));
}
