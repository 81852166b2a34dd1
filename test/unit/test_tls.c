// SPDX-License-Identifier: GPL-2.0-or-later
/* tls: option rules, loopback names, and whom a certificate names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* A self-signed certificate with subject CN cn (NULL: none) and SAN san (NULL: none). */
static X509 *make_cert(const char *cn, const char *san)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;

	assert_non_null(key);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	if (cn)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
							    (const unsigned char *)cn, -1, -1, 0),
				 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	if (san) {
		X509V3_CTX ctx;
		X509_EXTENSION *ext;

		X509V3_set_ctx_nodb(&ctx);
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		assert_non_null(ext);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	EVP_PKEY_free(key);
	return x;
}

static void test_names(void **state)
{
	const char *const allow[] = {"source-a.example", "Operator.Example"};
	X509 *both = make_cert("ignored-cn", "DNS:node-x.example,DNS:source-a.example");
	X509 *upper = make_cert(NULL, "DNS:OPERATOR.example");
	X509 *cn_only = make_cert("source-a.example", NULL);
	X509 *ip_only = make_cert("source-a.example", "IP:192.0.2.1");
	X509 *cn_with_dns = make_cert("source-a.example", "DNS:other.example");
	X509 *nameless = make_cert(NULL, NULL);
	char buf[TLS_NAME_MAX];

	/* Any SAN DNS name, without case. */
	assert_true(tls_cert_allowed(both, allow, 2));
	assert_true(tls_cert_allowed(upper, allow, 2));
	/* The CN only when there is no SAN DNS name: an IP SAN does not count. */
	assert_true(tls_cert_allowed(cn_only, allow, 2));
	assert_true(tls_cert_allowed(ip_only, allow, 2));
	assert_false(tls_cert_allowed(cn_with_dns, allow, 2));
	assert_false(tls_cert_allowed(nameless, allow, 2));
	/* Nobody with an empty list, nothing without a certificate. */
	assert_false(tls_cert_allowed(both, allow, 0));
	assert_false(tls_cert_allowed(NULL, allow, 2));
	assert_false(tls_peer_allowed(NULL, allow, 2));

	assert_string_equal(tls_cert_name(both, buf, sizeof(buf)), "node-x.example");
	assert_string_equal(tls_cert_name(cn_only, buf, sizeof(buf)), "source-a.example");
	assert_string_equal(tls_cert_name(nameless, buf, sizeof(buf)), "(no name)");
	assert_string_equal(tls_cert_name(NULL, buf, sizeof(buf)), "(no certificate)");
	X509_free(both);
	X509_free(upper);
	X509_free(cn_only);
	X509_free(ip_only);
	X509_free(cn_with_dns);
	X509_free(nameless);
}

static void test_loopback(void **state)
{
	assert_true(tls_host_is_loopback("localhost"));
	assert_true(tls_host_is_loopback("LocalHost"));
	assert_true(tls_host_is_loopback("127.0.0.1"));
	assert_true(tls_host_is_loopback("127.8.9.10"));
	assert_true(tls_host_is_loopback("::1"));
	assert_true(tls_host_is_loopback("::ffff:127.0.0.1"));
	assert_false(tls_host_is_loopback("192.0.2.1"));
	assert_false(tls_host_is_loopback("::ffff:192.0.2.1"));
	assert_false(tls_host_is_loopback("localhost.example"));
	assert_false(tls_host_is_loopback("128.0.0.1"));
	assert_false(tls_host_is_loopback("0.0.0.0"));
}

/* Feeds "--opt[=arg]" words through tls_opts_handle; the check's result. */
static int opts(bool server, const char *words)
{
	static const struct {
		const char *name;
		int c;
	} map[] = {{"cert", TLS_OPT_CERT},
		   {"key", TLS_OPT_KEY},
		   {"ca", TLS_OPT_CA},
		   {"allow", TLS_OPT_ALLOW_PEER},
		   {"insecure", TLS_OPT_INSECURE_API}};
	struct tls_opts o = {0};
	char buf[256], *save = NULL, *w;

	snprintf(buf, sizeof(buf), "%s", words);
	for (w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		size_t i;

		if (eq)
			*eq++ = '\0';
		for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(w, map[i].name) == 0)
				break;
		assert_true(i < sizeof(map) / sizeof(map[0]));
		if (tls_opts_handle(&o, map[i].c, eq ? eq : "", "test") != 1)
			return -EINVAL;
	}
	return tls_opts_check(&o, server, "test");
}

static void test_opts(void **state)
{
	struct tls_opts o = {0};

	assert_int_equal(tls_opts_handle(&o, 'v', NULL, "test"), 0);
	assert_int_equal(opts(true, ""), 0);
	assert_int_equal(opts(true, "insecure"), 0);
	assert_int_equal(opts(true, "cert=c key=k ca=a allow=x allow=y"), 0);
	/* A client: the files, no allow-list. */
	assert_int_equal(opts(false, "cert=c key=k ca=a"), 0);
	assert_int_equal(opts(false, "cert=c key=k ca=a allow=x"), -EINVAL);
	assert_int_equal(opts(false, "insecure"), -EINVAL);
	/* All three files or none; a TLS listener wants an allow-list. */
	assert_int_equal(opts(true, "cert=c key=k allow=x"), -EINVAL);
	assert_int_equal(opts(true, "cert=c key=k ca=a"), -EINVAL);
	assert_int_equal(opts(true, "allow=x"), -EINVAL);
	assert_int_equal(opts(true, "cert=c key=k ca=a allow=x insecure"), -EINVAL);
	assert_int_equal(opts(true, "cert="), -EINVAL);
	assert_int_equal(opts(true, "allow="), -EINVAL);
}

static void test_ctx_files(void **state)
{
	struct tls_opts o = {
	    .cert = "/nonexistent/c.pem", .key = "/nonexistent/k.pem", .ca = "/nonexistent/ca.pem"};
	SSL_CTX *ctx = (SSL_CTX *)&o;

	assert_int_equal(tls_ctx_new(TLS_SERVER, &o, &ctx), -EINVAL);
	assert_null(ctx);
	assert_int_equal(tls_ctx_new(TLS_CLIENT, &o, &ctx), -EINVAL);
	assert_null(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_loopback),
	    cmocka_unit_test(test_opts),
	    cmocka_unit_test(test_ctx_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
