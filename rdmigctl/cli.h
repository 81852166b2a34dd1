/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cli: rdmigctl's command line and output formatting, kept apart from the
 * I/O in main.c so unit tests can drive them.
 */
#ifndef RDMIG_CLI_H
#define RDMIG_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "api.h"
#include "tls.h"

#define CLI_EXIT_OK	 0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE	 2

enum cli_cmd {
	CLI_CMD_NONE = 0,
	CLI_CMD_HEALTH,
	CLI_CMD_MIGRATE,
	CLI_CMD_STATUS,
	CLI_CMD_ABORT,
	CLI_CMD_ROLLBACK,
};

/* Everything parsed from argv; strings point into argv. */
struct cli_args {
	enum cli_cmd cmd;
	bool help;    /* --help: print cli_usage(cmd) and exit 0 */
	bool version; /* --version */
	int verbose;
	const char *socket_path; /* --socket; NULL: the agent's default */
	const char *api;	 /* --api HOST:PORT, without its "https://" */
	bool api_tls;		 /* --api https://HOST:PORT: mutual TLS */
	struct tls_opts tls;	 /* --tls-cert, --tls-key, --tls-ca */
	bool dest_agent;	 /* --agent dest */
	int timeout_ms;		 /* --timeout, per request */
	bool json;
	/* migrate */
	const char *id; /* also status/abort/rollback's ID */
	pid_t pid;
	const char *container;	  /* --container ID: checkpoint it with its runtime */
	const char *runtime;	  /* --runtime; NULL: runc */
	const char *runtime_root; /* --runtime-root: the runtime's state root (absolute) */
	const char *dest_bundle;  /* --dest-bundle: the bundle's path on the destination */
	const char *images_dir;
	const char *to;		 /* the destination agent's API: the source hands over to it */
	const char *advertise;	 /* with --to: where the destination connects */
	const char *dest_images; /* with --to: the images directory there (absolute) */
	const char *transport;
	const char *secret_file;
	bool verify;
	enum api_lazy_dump lazy_dump; /* migrate --lazy-dump, --no-lazy-dump, or neither */
	bool no_queue;		      /* migrate --no-queue: "queue": false */
	int precopy;		      /* migrate --precopy: API_PRECOPY_OFF (0), 1..MAX, AUTO */
	int criu_log_level;	      /* --criu-log-level: criu_opts.log_level; < 0: not given */
	bool wait;
	/* status */
	bool watch;
	/* rollback */
	bool force;
};

/*
 * Parses argv.  Returns 0, or -EINVAL after writing a one-line reason and a
 * hint to err (the caller exits CLI_EXIT_USAGE).
 */
int cli_parse(int argc, char **argv, struct cli_args *a, FILE *err);

/* Help text of cmd (CLI_CMD_NONE: the overview). */
void cli_usage(FILE *f, enum cli_cmd cmd);

/* The UNIX socket rdmigctl talks to: --socket, else the agent's default. */
const char *cli_socket_path(const struct cli_args *a);

/*
 * The POST /v1/migrations body of a migrate command; relative paths are
 * made absolute.  Caller frees *out.  On error writes a reason to errbuf.
 */
int cli_migrate_body(const struct cli_args *a, char **out, char *errbuf, size_t errlen);

/* The API's error message in body, else "HTTP <status> <reason>"; control characters become '?'. */
const char *cli_error_message(int status, const char *reason, const char *body, char *buf,
			      size_t len);

/*
 * Replaces control characters and DEL in every string value of j by '?'.
 * An agent's answer reaches the operator's terminal, where an escape
 * sequence in, say, a migration's error text would be obeyed: rdmigctl
 * cleans every answer before reading it.  Returns 0 or -ENOMEM.
 */
int cli_clean_json(json_t *j);

/* One line of progress for a migration resource (no newline). */
const char *cli_format_progress(const json_t *m, char *buf, size_t len);

/* A table of the "migrations" array; a note when it is empty. */
void cli_print_table(FILE *f, const json_t *migrations);

/* The multi-line report of one migration. */
void cli_print_report(FILE *f, const json_t *m);

/* One line for a /v1/health answer. */
void cli_print_health(FILE *f, const json_t *h);

#endif
