// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the JSON the agents and rdmigctl read from others:
 * the POST /v1/migrations body parser of both agents (common/api.c,
 * api_start_parse()) and rdmigctl's readers of the agents' answers
 * (rdmigctl/cli.c: a migration resource, the list, /v1/health, an error)
 * and the source's reader of the destination agent's answers after a
 * handover (source-agent/destreport.c).
 *
 * Input: one selector byte, then the JSON text.  Selector % 9:
 *   0 a start request to the source agent, 1 to the destination agent,
 *   2 a migration resource as `rdmigctl status` and `--watch` print it,
 *   3 a GET /v1/migrations answer (the table), 4 a /v1/health answer,
 *   5 an error answer (the message rdmigctl prints),
 *   6 the destination agent's resource or error answer, read by the source,
 *   7 a POST /v1/reservations body (the destination agent),
 *   8 a rollback's body (the source agent: "force").
 *
 * Besides crashes, it aborts when an accepted start request breaks what
 * api.h promises the agent (valid id, absolute clean paths, secret length,
 * one of pid / images_dir / container on the source, a peer on the
 * destination; an accepted reservation: valid migration id, clean paths,
 * ttl in range), when
 * a refusal is not -EINVAL with a printable message, when the message
 * quotes the secret, when rdmigctl would print a control character
 * (other than the newline) that an agent put in its answer, or when the
 * source keeps a destination's text unclean or a number out of range.
 *
 * Run: `make fuzz FUZZ_TARGETS=api_json` (docs/testing.md, "Fuzzing").
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "cli.h"
#include "destreport.h"
#include "fuzz.h"
#include "log.h"

static void fuzz_check_printable(const char *s, size_t len, bool newline_ok)
{
	for (size_t i = 0; i < len; i++)
		fuzz_check(((unsigned char)s[i] >= 0x20 && s[i] != 0x7f) ||
			   (newline_ok && s[i] == '\n'));
}

static void fuzz_check_path(const char *p)
{
	if (!p)
		return;
	fuzz_check(p[0] == '/' && strlen(p) <= API_PATH_MAX);
	fuzz_check_printable(p, strlen(p), false);
}

static bool fuzz_id_ok(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > API_ID_MAX)
		return false;
	return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
	       len;
}

static void fuzz_check_start(enum api_role role, const struct api_start_req *r)
{
	fuzz_check(r->role == role && r->id && fuzz_id_ok(r->id));
	fuzz_check_path(r->images_dir);
	fuzz_check_path(r->work_dir);
	fuzz_check_path(r->secret_file);
	fuzz_check_path(r->dest_images_dir);
	fuzz_check(!r->secret || (r->secret_len >= API_SECRET_MIN &&
				  r->secret_len <= API_SECRET_MAX && !r->secret_file));
	fuzz_check(r->pid >= 0);
	fuzz_check_path(r->container.root);
	fuzz_check(!r->container.runtime || (r->container.id && r->container.id[0]));
	if (role == API_ROLE_SOURCE)
		fuzz_check(
		    (r->pid > 0) + (r->images_dir != NULL) + (r->container.runtime != NULL) == 1);
	else
		fuzz_check(r->peer && r->pid == 0 && !r->advertise && !r->dest_images_dir);
	fuzz_check(!r->peer || (r->peer_host && r->peer_host[0]));
	fuzz_check(!(r->advertise || r->dest_images_dir) || r->peer);
	fuzz_check(r->criu.log_level >= -1 && r->criu.log_level <= 4);
	fuzz_check(role == API_ROLE_SOURCE || !r->criu.leave_running);
}

static void fuzz_start(enum api_role role, const char *text, size_t len)
{
	struct api_error err = {0};
	struct api_start_buf *buf = NULL;
	struct api_start_req r;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	const char *secret;
	int ret;

	if (!json_is_object(root))
		goto out;
	ret = api_start_parse(role, root, &r, &buf, &err);
	if (ret == 0) {
		fuzz_check_start(role, &r);
		goto out;
	}
	fuzz_check(ret == -EINVAL || ret == -ENOMEM);
	fuzz_check(strnlen(err.message, sizeof(err.message)) < sizeof(err.message));
	fuzz_check_printable(err.message, strlen(err.message), false);
	/* An unknown key is the client's own text; anything else must not quote the secret. */
	secret = json_string_value(json_object_get(root, "secret"));
	if (secret && strlen(secret) >= 8 && strncmp(err.message, "unknown field", 13) != 0)
		fuzz_check(!strstr(err.message, secret));
out:
	api_start_buf_free(buf);
	json_decref(root);
}

/* The other request bodies: a reservation (kind 7), a rollback's (kind 8). */
static void fuzz_other_body(unsigned kind, const char *text, size_t len)
{
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	struct api_error err = {0};
	struct api_reserve_req r;
	bool force = false;
	int ret;

	if (!json_is_object(root))
		goto out;
	if (kind == 7) {
		ret = api_reserve_parse(root, &r, &err);
		if (ret == 0) {
			fuzz_check(fuzz_id_ok(r.migration));
			fuzz_check_path(r.images_dir);
			fuzz_check_path(r.work_dir);
			fuzz_check_path(r.bundle);
			fuzz_check(r.ttl_s >= 1 && r.ttl_s <= API_RESERVE_TTL_MAX_S);
			fuzz_check(!r.start || strcmp(r.start->id, r.migration) == 0);
		}
		api_reserve_req_clear(&r);
	} else {
		ret = api_rollback_parse(root, &force, &err);
		fuzz_check(ret < 0 || json_object_size(root) <= 1);
	}
	if (ret < 0) {
		fuzz_check(ret == -EINVAL);
		fuzz_check(strnlen(err.message, sizeof(err.message)) < sizeof(err.message));
		fuzz_check_printable(err.message, strlen(err.message), false);
	}
out:
	json_decref(root);
}

/* rdmigctl's view of an agent's answer, printed into memory. */
static void fuzz_cli(unsigned kind, const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, 0, NULL);
	char line[512], *out = NULL;
	size_t out_len = 0;
	FILE *f;

	if (kind == 5) {
		/* The client reads the body as a string: up to the first NUL. */
		char *body = strndup(text, len);

		fuzz_check(body != NULL);
		cli_error_message(400, "Bad Request", body, line, sizeof(line));
		fuzz_check_printable(line, strlen(line), false);
		free(body);
		json_decref(j);
		return;
	}
	/* As rdmigctl's ctl_call() does with every answer. */
	if (!j || cli_clean_json(j) < 0) {
		json_decref(j);
		return;
	}
	f = open_memstream(&out, &out_len);
	fuzz_check(f != NULL);
	if (kind == 2) {
		cli_format_progress(j, line, sizeof(line));
		fuzz_check_printable(line, strlen(line), false);
		cli_print_report(f, j);
	} else if (kind == 3) {
		cli_print_table(f, json_object_get(j, "migrations"));
	} else {
		cli_print_health(f, j);
	}
	fuzz_check(fclose(f) == 0);
	fuzz_check_printable(out, out_len, true);
	free(out);
	json_decref(j);
}

static void fuzz_check_report_int(int64_t v, int64_t max)
{
	fuzz_check(v == -1 || (v >= 0 && v <= max));
}

/* The source's view of what a destination agent answered. */
static void fuzz_dest_report(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, 0, NULL);
	struct src_dest_report r;
	char msg[API_ERROR_MSG_MAX];

	memset(&r, 0x5a, sizeof(r));
	dest_report_parse(j, &r);
	fuzz_check(r.seen);
	fuzz_check(strnlen(r.state, sizeof(r.state)) < sizeof(r.state));
	fuzz_check(strnlen(r.error, sizeof(r.error)) < sizeof(r.error));
	fuzz_check_printable(r.state, strlen(r.state), false);
	fuzz_check_printable(r.error, strlen(r.error), false);
	fuzz_check_report_int(r.pages_total, INT64_MAX);
	fuzz_check_report_int(r.pages_fetched, INT64_MAX);
	fuzz_check_report_int(r.bytes, INT64_MAX);
	fuzz_check_report_int(r.faults, INT64_MAX);
	fuzz_check_report_int(r.fault_p50_us, INT64_MAX);
	fuzz_check_report_int(r.fault_p99_us, INT64_MAX);
	fuzz_check_report_int(r.restore_ms, DEST_REPORT_MS_MAX);
	fuzz_check_report_int(r.resumed_ms, DEST_REPORT_MS_MAX);
	if (dest_report_error_message(j, msg, sizeof(msg))) {
		fuzz_check(msg[0] != '\0' && strnlen(msg, sizeof(msg)) < sizeof(msg));
		fuzz_check_printable(msg, strlen(msg), false);
	}
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;
	unsigned kind;

	if (size < 1)
		return 0;
	log_set_level(LOG_LVL_ERR);
	kind = data[0] % 9;
	if (kind < 2)
		fuzz_start(kind == 0 ? API_ROLE_SOURCE : API_ROLE_DEST, text, size - 1);
	else if (kind >= 7)
		fuzz_other_body(kind, text, size - 1);
	else if (kind == 6)
		fuzz_dest_report(text, size - 1);
	else
		fuzz_cli(kind, text, size - 1);
	return 0;
}
