/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tls: mutual TLS 1.3 for the agents' TCP APIs and their clients (rdmigctl,
 * the source's handover client), with OpenSSL.
 *
 * Every TLS endpoint has a certificate and key and trusts one CA: a server
 * refuses a client without a certificate signed by that CA (the handshake
 * fails, no HTTP is spoken), a client refuses a server whose certificate
 * is not signed by it or does not name the host it was asked to reach.
 * Authentication is the handshake's; authorization is the caller's:
 * tls_peer_allowed() matches the peer's names against --allow-peer.
 *
 * The command-line options are shared by rdmig-source, rdmig-dest and
 * rdmigctl: put TLS_LONGOPTS in the getopt table and hand every option to
 * tls_opts_handle().
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_TLS_H
#define RDMIG_TLS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define TLS_ALLOW_MAX 64
/* A peer name as logged and matched: a DNS name or a CN. */
#define TLS_NAME_MAX 256

enum tls_role {
	TLS_SERVER = 0,
	TLS_CLIENT,
};

/* getopt values of the shared options; above every agent's own. */
enum {
	TLS_OPT_CERT = 0x1000,
	TLS_OPT_KEY,
	TLS_OPT_CA,
	TLS_OPT_ALLOW_PEER,
	TLS_OPT_INSECURE_API,
};

/* clang-format off */
#define TLS_LONGOPTS \
	{"tls-cert", required_argument, NULL, TLS_OPT_CERT}, \
	{"tls-key", required_argument, NULL, TLS_OPT_KEY}, \
	{"tls-ca", required_argument, NULL, TLS_OPT_CA}, \
	{"allow-peer", required_argument, NULL, TLS_OPT_ALLOW_PEER}, \
	{"insecure-api", no_argument, NULL, TLS_OPT_INSECURE_API}
/* clang-format on */

/* The options as given; strings borrowed from argv. */
struct tls_opts {
	const char *cert;
	const char *key;
	const char *ca;
	const char *allow[TLS_ALLOW_MAX];
	size_t nallow;
	bool insecure_api; /* plain HTTP on a loopback TCP API */
};

/*
 * Takes getopt's c and optarg if c is one of TLS_OPT_*: 1 when taken, 0
 * when c is not a TLS option, -EINVAL (reason on stderr, prefixed by prog)
 * for a bad value.
 */
int tls_opts_handle(struct tls_opts *o, int c, const char *arg, const char *prog);

/* True when --tls-cert, --tls-key or --tls-ca was given. */
bool tls_opts_any(const struct tls_opts *o);

/*
 * The checks once every option was read: cert, key and CA all or none;
 * --allow-peer and --insecure-api against the rest.  server: the program
 * has a TCP API listener (--api-tcp).  -EINVAL with the reason on stderr.
 */
int tls_opts_check(const struct tls_opts *o, bool server, const char *prog);

/*
 * A context for role from o's files: TLS 1.3 only, the peer's certificate
 * verified against o->ca and required both ways.  Errors name the file
 * and give OpenSSL's reason.  Caller owns *out (SSL_CTX_free).
 */
int tls_ctx_new(enum tls_role role, const struct tls_opts *o, SSL_CTX **out);

/*
 * Makes ssl (a client's) check the server's certificate against host, a
 * DNS name or an IP address literal, and sends host as SNI when it is a
 * name.
 */
int tls_client_expect_host(SSL *ssl, const char *host);

/*
 * The name the peer's certificate gives: its first SAN DNS name, else its
 * CN; "(no certificate)" or "(no name)" otherwise.  Printable ASCII.
 */
const char *tls_peer_name(const SSL *ssl, char *buf, size_t len);

/* The same two for a certificate at hand (cert may be NULL). */
const char *tls_cert_name(X509 *cert, char *buf, size_t len);
bool tls_cert_allowed(X509 *cert, const char *const *allow, size_t n);

/*
 * Whether the peer's certificate names one of allow[0..n): any SAN DNS
 * name, or the subject's CN when there is no SAN DNS name, compared
 * without case.  False without a certificate or with an empty list.
 */
bool tls_peer_allowed(const SSL *ssl, const char *const *allow, size_t n);

/*
 * Whether host (a name or an address literal, no brackets) is this host's
 * loopback without a name lookup: "localhost", 127.0.0.0/8, ::1 or a
 * v4-mapped 127 address.  Plain HTTP may go there, nowhere else.
 */
bool tls_host_is_loopback(const char *host);

/* OpenSSL's queued errors, most recent first, as one line (queue cleared). */
const char *tls_error_text(char *buf, size_t len);

#endif
