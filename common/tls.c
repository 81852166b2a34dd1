// SPDX-License-Identifier: GPL-2.0-or-later
#include "tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"

int tls_opts_handle(struct tls_opts *o, int c, const char *arg, const char *prog)
{
	switch (c) {
	case TLS_OPT_CERT:
	case TLS_OPT_KEY:
	case TLS_OPT_CA:
		if (!arg[0]) {
			fprintf(stderr, "%s: --tls-%s wants a file\n", prog,
				c == TLS_OPT_CERT  ? "cert"
				: c == TLS_OPT_KEY ? "key"
						   : "ca");
			return -EINVAL;
		}
		if (c == TLS_OPT_CERT)
			o->cert = arg;
		else if (c == TLS_OPT_KEY)
			o->key = arg;
		else
			o->ca = arg;
		return 1;
	case TLS_OPT_ALLOW_PEER:
		if (!arg[0] || strlen(arg) >= TLS_NAME_MAX) {
			fprintf(stderr, "%s: --allow-peer wants a certificate name\n", prog);
			return -EINVAL;
		}
		if (o->nallow == TLS_ALLOW_MAX) {
			fprintf(stderr, "%s: more than %d --allow-peer\n", prog, TLS_ALLOW_MAX);
			return -EINVAL;
		}
		o->allow[o->nallow++] = arg;
		return 1;
	case TLS_OPT_INSECURE_API:
		o->insecure_api = true;
		return 1;
	default:
		return 0;
	}
}

bool tls_opts_any(const struct tls_opts *o)
{
	return o->cert || o->key || o->ca;
}

int tls_opts_check(const struct tls_opts *o, bool server, const char *prog)
{
	if (tls_opts_any(o) && !(o->cert && o->key && o->ca)) {
		fprintf(stderr, "%s: TLS wants all of --tls-cert, --tls-key and --tls-ca\n", prog);
		return -EINVAL;
	}
	if (o->insecure_api && tls_opts_any(o)) {
		fprintf(stderr, "%s: --insecure-api and --tls-cert exclude each other\n", prog);
		return -EINVAL;
	}
	if (o->insecure_api && !server) {
		fprintf(stderr, "%s: --insecure-api is only for a loopback --api-tcp\n", prog);
		return -EINVAL;
	}
	if (o->nallow && !(server && tls_opts_any(o))) {
		fprintf(stderr,
			"%s: --allow-peer is for a TLS --api-tcp (give --tls-cert, "
			"--tls-key, --tls-ca)\n",
			prog);
		return -EINVAL;
	}
	/* Every CA-signed certificate welcome would be a trap: say who may call. */
	if (server && tls_opts_any(o) && o->nallow == 0) {
		fprintf(stderr,
			"%s: a TLS --api-tcp wants at least one --allow-peer NAME (the "
			"certificate names of the callers it accepts)\n",
			prog);
		return -EINVAL;
	}
	return 0;
}

const char *tls_error_text(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (!e)
		snprintf(buf, len, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int tls_fail(const char *what, const char *file)
{
	char why[256];

	log_err("tls: %s %s: %s", what, file, tls_error_text(why, sizeof(why)));
	return -EINVAL;
}

/*
 * A server's handshake that fails ends in an alert it sends: log it with
 * the client's address (evhttp drops such a connection silently).
 */
static void tls_server_info_cb(const SSL *ssl, int where, int ret)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64] = "?";
	long v;

	if (!(where & SSL_CB_WRITE_ALERT) || SSL_alert_type_string(ret)[0] != 'F')
		return;
	if (getpeername(SSL_get_fd(ssl), (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0,
			    NI_NUMERICHOST);
	v = SSL_get_verify_result(ssl);
	log_warn("tls: refused a client from %s: %s%s%s", host, SSL_alert_desc_string_long(ret),
		 v != X509_V_OK ? ": " : "",
		 v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
}

int tls_ctx_new(enum tls_role role, const struct tls_opts *o, SSL_CTX **out)
{
	SSL_CTX *ctx;
	int ret;

	*out = NULL;
	ERR_clear_error();
	ctx = SSL_CTX_new(role == TLS_SERVER ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		log_err("tls: cannot create a context: out of memory");
		return -ENOMEM;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		ret = tls_fail("cannot require TLS 1.3 for", o->cert);
		goto out;
	}
	/* A peer that closes without close_notify is an EOF: HTTP frames its bodies. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
		ret = tls_fail("cannot load the certificate (--tls-cert)", o->cert);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
		ret = tls_fail("cannot load the private key (--tls-key)", o->key);
		goto out;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		char why[256];

		log_err("tls: the key %s does not match the certificate %s: %s", o->key, o->cert,
			tls_error_text(why, sizeof(why)));
		ret = -EINVAL;
		goto out;
	}
	if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
		ret = tls_fail("cannot load the CA certificates (--tls-ca)", o->ca);
		goto out;
	}
	if (role == TLS_SERVER) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);

		/* Tells clients which CA to pick their certificate for. */
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_info_callback(ctx, tls_server_info_cb);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	*out = ctx;
	ctx = NULL;
	ret = 0;
out:
	SSL_CTX_free(ctx);
	return ret;
}

int tls_client_expect_host(SSL *ssl, const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];
	bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
			return -EINVAL;
		return 0;
	}
	if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)
		return -EINVAL;
	return 0;
}

bool tls_host_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

/* Copies a certificate's string, printable ASCII only; false for embedded NULs or empty. */
static bool tls_copy_name(const ASN1_STRING *s, char *buf, size_t len)
{
	const unsigned char *p = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);

	if (n <= 0 || (size_t)n >= len || memchr(p, '\0', (size_t)n))
		return false;
	for (int i = 0; i < n; i++)
		buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	buf[n] = '\0';
	return true;
}

/*
 * Calls fn(name, arg) for each SAN DNS name of cert, or for its CN when it
 * has none, until fn returns true; returns whether one did.
 */
static bool tls_each_name(X509 *cert, bool (*fn)(const char *name, void *arg), void *arg)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	char name[TLS_NAME_MAX];
	bool any_dns = false, hit = false;
	X509_NAME *subj;
	int i;

	for (i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !hit; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

		if (g->type != GEN_DNS)
			continue;
		any_dns = true;
		if (tls_copy_name(g->d.dNSName, name, sizeof(name)))
			hit = fn(name, arg);
	}
	GENERAL_NAMES_free(sans);
	if (any_dns || hit)
		return hit;
	subj = X509_get_subject_name(cert);
	i = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
	if (i >= 0 && tls_copy_name(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)), name,
				    sizeof(name)))
		return fn(name, arg);
	return false;
}

struct tls_name_buf {
	char *buf;
	size_t len;
};

static bool tls_first_name(const char *name, void *arg)
{
	struct tls_name_buf *b = arg;

	snprintf(b->buf, b->len, "%s", name);
	return true;
}

const char *tls_cert_name(X509 *cert, char *buf, size_t len)
{
	struct tls_name_buf b = {buf, len};

	if (!cert)
		snprintf(buf, len, "(no certificate)");
	else if (!tls_each_name(cert, tls_first_name, &b))
		snprintf(buf, len, "(no name)");
	return buf;
}

const char *tls_peer_name(const SSL *ssl, char *buf, size_t len)
{
	return tls_cert_name(ssl ? SSL_get0_peer_certificate(ssl) : NULL, buf, len);
}

struct tls_allow_list {
	const char *const *allow;
	size_t n;
};

static bool tls_name_listed(const char *name, void *arg)
{
	const struct tls_allow_list *l = arg;

	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(name, l->allow[i]) == 0)
			return true;
	return false;
}

bool tls_cert_allowed(X509 *cert, const char *const *allow, size_t n)
{
	struct tls_allow_list l = {allow, n};

	return cert && n > 0 && tls_each_name(cert, tls_name_listed, &l);
}

bool tls_peer_allowed(const SSL *ssl, const char *const *allow, size_t n)
{
	/* The handshake verified the chain; a failed verification never gets here. */
	if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK)
		return false;
	return tls_cert_allowed(SSL_get0_peer_certificate(ssl), allow, n);
}
