// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmigctl: client of the agents' API (docs/api.md).  A CLI may block: each
 * command is a few blocking requests through apiclient.  Exit status: 0
 * success, 1 failure (unreachable agent, API error, migration not done),
 * 2 usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "api.h"
#include "apiclient.h"
#include "cli.h"
#include "log.h"
#include "rdmig-config.h"
#include "tls.h"
#include "util.h"

/* Polls, 500 ms apart, for a destination agent's last figures. */
#define CTL_LINGER_POLLS 10

struct ctl {
	struct cli_args a;
	struct apiclient_target t;
	char host[API_HOSTPORT_MAX + 1];
	char port[8];
	char where[300];
};

/* Reports a failed exchange in one line; always returns CLI_EXIT_FAILURE. */
static int ctl_transport_error(const struct ctl *c, int ret)
{
	switch (ret) {
	case -ETIMEDOUT:
		fprintf(stderr, "rdmigctl: the agent at %s did not answer within %d s\n", c->where,
			c->t.timeout_ms / 1000);
		break;
	case -ECONNABORTED:
		fprintf(stderr, "rdmigctl: no TLS session with the agent at %s (see above)\n",
			c->where);
		break;
	case -EPROTO:
	case -EMSGSIZE:
		fprintf(stderr, "rdmigctl: bad response from the agent at %s: %s\n", c->where,
			strerror(-ret));
		break;
	default:
		fprintf(stderr, "rdmigctl: cannot reach the agent at %s: %s\n", c->where,
			strerror(-ret));
		break;
	}
	return CLI_EXIT_FAILURE;
}

/*
 * One request; on success *j holds the parsed body of a 2xx answer and
 * *status its code.  Anything else is reported and CLI_EXIT_FAILURE
 * returned.
 */
static int ctl_call(struct ctl *c, const char *method, const char *path, const char *body,
		    int *status, json_t **j)
{
	struct apiclient_resp r;
	char msg[512];
	int ret;

	*j = NULL;
	log_debug("%s %s via %s", method, path, c->where);
	ret = apiclient_request(&c->t, method, path, body, body ? strlen(body) : 0, &r);
	if (ret)
		return ctl_transport_error(c, ret);
	if (r.status < 200 || r.status > 299) {
		fprintf(stderr, "rdmigctl: %s\n",
			cli_error_message(r.status, r.reason, r.body, msg, sizeof(msg)));
		ret = CLI_EXIT_FAILURE;
		goto out;
	}
	*j = json_loads(r.body, 0, NULL);
	if (!*j || cli_clean_json(*j) < 0) {
		json_decref(*j);
		*j = NULL;
		fprintf(stderr, "rdmigctl: the agent at %s sent invalid JSON (HTTP %d)\n", c->where,
			r.status);
		ret = CLI_EXIT_FAILURE;
		goto out;
	}
	*status = r.status;
	ret = CLI_EXIT_OK;
out:
	apiclient_resp_release(&r);
	return ret;
}

static void ctl_print_json(const json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

static void ctl_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The end of a followed migration: 0 if done, else a one-line reason and 1. */
static int ctl_final_status(const json_t *m)
{
	const char *state = json_string_value(json_object_get(m, "state"));
	const char *err = json_string_value(json_object_get(m, "error"));
	const char *id = json_string_value(json_object_get(m, "id"));

	if (state && strcmp(state, "done") == 0)
		return CLI_EXIT_OK;
	fprintf(stderr, "rdmigctl: migration %s %s%s%s\n", id ? id : "?", state ? state : "?",
		err ? ": " : "", err ? err : "");
	return CLI_EXIT_FAILURE;
}

/*
 * A source's migration can be done before its destination agent reported
 * its last figures (resume time, latencies): those are worth a short wait.
 */
static bool ctl_dest_pending(const json_t *m)
{
	const char *state = json_string_value(json_object_get(m, "state"));
	const char *ds = json_string_value(json_object_get(m, "dest_state"));
	enum api_state s;

	if (!state || strcmp(state, "done") != 0 || !ds || strcmp(ds, "unreachable") == 0)
		return false;
	return api_state_parse(ds, &s) < 0 || !api_state_is_final(s);
}

/*
 * Follows a migration until it is final: a redrawn line on a terminal, one
 * line per second otherwise (or one JSON object per line with --json).
 */
static int ctl_watch(struct ctl *c, const char *id)
{
	bool tty = isatty(STDOUT_FILENO) && !c->a.json;
	char path[128], line[512];
	json_t *m = NULL;
	int status, ret, linger = 0;

	snprintf(path, sizeof(path), "/v1/migrations/%s", id);
	for (;;) {
		json_decref(m);
		ret = ctl_call(c, "GET", path, NULL, &status, &m);
		if (ret) {
			if (tty)
				fputc('\n', stdout);
			return ret;
		}
		if (c->a.json) {
			json_dumpf(m, stdout, JSON_COMPACT);
			fputc('\n', stdout);
		} else if (tty) {
			/* \033[K clears what a longer previous line left behind. */
			printf("\r%s\033[K", cli_format_progress(m, line, sizeof(line)));
		} else {
			printf("%s\n", cli_format_progress(m, line, sizeof(line)));
		}
		fflush(stdout);
		if (json_is_true(json_object_get(m, "final")) &&
		    (!ctl_dest_pending(m) || ++linger > CTL_LINGER_POLLS))
			break;
		ctl_sleep_ms(tty || linger ? 500 : 1000);
	}
	if (tty)
		fputc('\n', stdout);
	if (!c->a.json)
		cli_print_report(stdout, m);
	ret = ctl_final_status(m);
	json_decref(m);
	return ret;
}

static int ctl_health(struct ctl *c)
{
	json_t *j;
	int status, ret = ctl_call(c, "GET", "/v1/health", NULL, &status, &j);

	if (ret)
		return ret;
	if (c->a.json)
		ctl_print_json(j);
	else
		cli_print_health(stdout, j);
	json_decref(j);
	return CLI_EXIT_OK;
}

static int ctl_migrate(struct ctl *c)
{
	const char *id;
	char *body = NULL, err[256];
	json_t *m = NULL;
	int status, ret;

	ret = cli_migrate_body(&c->a, &body, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "rdmigctl: %s\n", err);
		return CLI_EXIT_FAILURE;
	}
	ret = ctl_call(c, "POST", "/v1/migrations", body, &status, &m);
	free(body);
	if (ret)
		return ret;
	id = json_string_value(json_object_get(m, "id"));
	if (!id) {
		fprintf(stderr, "rdmigctl: the agent accepted the migration but sent no id\n");
		ret = CLI_EXIT_FAILURE;
	} else if (c->a.wait) {
		if (!c->a.json)
			printf("migration %s started\n", id);
		ret = ctl_watch(c, id);
	} else if (c->a.json) {
		ctl_print_json(m);
	} else {
		printf("migration %s started (%s)\n", id,
		       json_string_value(json_object_get(m, "state")));
		if (json_is_object(json_object_get(m, "queue")))
			printf("queued: position %lld, waiting for %s\n",
			       (long long)json_integer_value(
				   json_object_get(json_object_get(m, "queue"), "position")),
			       json_string_value(
				   json_object_get(json_object_get(m, "queue"), "reason")));
	}
	json_decref(m);
	return ret;
}

/* --watch without an ID: the one migration that is not final. */
static int ctl_pick_active(struct ctl *c, char *id, size_t len)
{
	json_t *j, *arr, *found = NULL;
	int status, active = 0, ret;

	ret = ctl_call(c, "GET", "/v1/migrations", NULL, &status, &j);
	if (ret)
		return ret;
	arr = json_object_get(j, "migrations");
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *m = json_array_get(arr, i);

		if (!json_is_true(json_object_get(m, "final"))) {
			active++;
			found = m;
		}
	}
	if (active == 1)
		snprintf(id, len, "%s", json_string_value(json_object_get(found, "id")));
	else if (active == 0)
		fprintf(stderr, "rdmigctl: no active migration to watch\n");
	else
		fprintf(stderr, "rdmigctl: %d active migrations; name the one to watch\n", active);
	json_decref(j);
	return active == 1 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

static int ctl_status(struct ctl *c)
{
	char id[API_ID_MAX + 1], path[128];
	json_t *j;
	int status, ret;

	if (c->a.watch) {
		if (c->a.id) {
			snprintf(id, sizeof(id), "%s", c->a.id);
		} else {
			ret = ctl_pick_active(c, id, sizeof(id));
			if (ret)
				return ret;
		}
		return ctl_watch(c, id);
	}
	if (!c->a.id) {
		ret = ctl_call(c, "GET", "/v1/migrations", NULL, &status, &j);
		if (ret)
			return ret;
		if (c->a.json)
			ctl_print_json(j);
		else
			cli_print_table(stdout, json_object_get(j, "migrations"));
		json_decref(j);
		return CLI_EXIT_OK;
	}
	snprintf(path, sizeof(path), "/v1/migrations/%s", c->a.id);
	ret = ctl_call(c, "GET", path, NULL, &status, &j);
	if (ret)
		return ret;
	if (c->a.json)
		ctl_print_json(j);
	else
		cli_print_report(stdout, j);
	json_decref(j);
	return CLI_EXIT_OK;
}

static int ctl_abort(struct ctl *c)
{
	char path[128];
	json_t *m;
	int status, ret;

	snprintf(path, sizeof(path), "/v1/migrations/%s", c->a.id);
	ret = ctl_call(c, "DELETE", path, NULL, &status, &m);
	if (ret)
		return ret;
	if (c->a.json)
		ctl_print_json(m);
	else if (status == 200)
		printf("migration %s already ended (%s)\n", c->a.id,
		       json_string_value(json_object_get(m, "state")));
	else
		printf("abort of migration %s requested\n", c->a.id);
	json_decref(m);
	return CLI_EXIT_OK;
}

static int ctl_rollback(struct ctl *c)
{
	char path[128];
	json_t *m;
	int status, ret;

	snprintf(path, sizeof(path), "/v1/migrations/%s/rollback", c->a.id);
	ret = ctl_call(c, "POST", path, c->a.force ? "{\"force\":true}" : NULL, &status, &m);
	if (ret)
		return ret;
	if (c->a.json)
		ctl_print_json(m);
	else if (c->a.force)
		printf("rollback of migration %s requested, forced: the destination was not asked "
		       "whether the workload still runs there\n",
		       c->a.id);
	else
		printf("rollback of migration %s requested\n", c->a.id);
	json_decref(m);
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct ctl c = {0};
	enum log_level level = LOG_LVL_WARN;
	SSL_CTX *tls = NULL;
	int ret;

	log_init(argv[0], level);
	/* A daemon that closes mid-request is an error to report, not a signal. */
	if (proc_harden(false) < 0)
		log_warn("cannot ignore SIGPIPE");
	if (cli_parse(argc, argv, &c.a, stderr) < 0)
		return CLI_EXIT_USAGE;
	if (c.a.version) {
		printf("rdmigctl %s\n", RDMIG_VERSION);
		return CLI_EXIT_OK;
	}
	if (c.a.help) {
		cli_usage(stdout, c.a.cmd);
		return CLI_EXIT_OK;
	}
	for (int i = 0; i < c.a.verbose && level < LOG_LVL_DEBUG; i++)
		level++;
	log_set_level(level);

	c.t.timeout_ms = c.a.timeout_ms;
	if (c.a.api) {
		/* cli_parse checked the syntax. */
		parse_hostport(c.a.api, NULL, c.host, sizeof(c.host), c.port, sizeof(c.port));
		c.t.host = c.host;
		c.t.port = c.port;
	} else {
		c.t.unix_path = cli_socket_path(&c.a);
	}
	/* OpenSSL writes with write(2): an agent that closes must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (c.a.api_tls && tls_ctx_new(TLS_CLIENT, &c.a.tls, &tls) < 0)
		return CLI_EXIT_FAILURE;
	c.t.tls = tls;
	apiclient_target_str(&c.t, c.where, sizeof(c.where));

	switch (c.a.cmd) {
	case CLI_CMD_HEALTH:
		ret = ctl_health(&c);
		break;
	case CLI_CMD_MIGRATE:
		ret = ctl_migrate(&c);
		break;
	case CLI_CMD_STATUS:
		ret = ctl_status(&c);
		break;
	case CLI_CMD_ABORT:
		ret = ctl_abort(&c);
		break;
	case CLI_CMD_ROLLBACK:
		ret = ctl_rollback(&c);
		break;
	default:
		cli_usage(stderr, CLI_CMD_NONE);
		ret = CLI_EXIT_USAGE;
		break;
	}
	SSL_CTX_free(tls);
	return ret;
}
