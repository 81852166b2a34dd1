// SPDX-License-Identifier: GPL-2.0-or-later
/* rdmigctl's cli module: argument parsing, request bodies and output formatting. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../rdmigctl/cli.h"
#include "api.h"

/* A command line split on spaces, with storage that outlives the parse. */
struct line {
	char store[512];
	char *argv[32];
	int argc;
	char *err; /* what cli_parse wrote to its error stream */
	size_t errlen;
};

static int parse(struct line *l, const char *cmdline, struct cli_args *a)
{
	FILE *err = open_memstream(&l->err, &l->errlen);
	int ret;

	assert_non_null(err);
	snprintf(l->store, sizeof(l->store), "rdmigctl %s", cmdline);
	l->argc = 0;
	for (char *save, *tok = strtok_r(l->store, " ", &save); tok && l->argc < 31;
	     tok = strtok_r(NULL, " ", &save))
		l->argv[l->argc++] = tok;
	l->argv[l->argc] = NULL;
	ret = cli_parse(l->argc, l->argv, a, err);
	fclose(err);
	return ret;
}

static void line_free(struct line *l)
{
	free(l->err);
	l->err = NULL;
}

static void test_parse_ok(void **state)
{
	struct cli_args a;
	struct line l;

	assert_int_equal(parse(&l, "health", &a), 0);
	assert_int_equal(a.cmd, CLI_CMD_HEALTH);
	assert_string_equal(cli_socket_path(&a), API_SOCKET_SOURCE);
	assert_int_equal(a.timeout_ms, 10000);
	line_free(&l);

	/* Global options before and after the command. */
	assert_int_equal(parse(&l, "--agent dest -t 3 health --json", &a), 0);
	assert_true(a.json);
	assert_int_equal(a.timeout_ms, 3000);
	assert_string_equal(cli_socket_path(&a), API_SOCKET_DEST);
	line_free(&l);
	assert_int_equal(parse(&l, "health --socket /tmp/x.sock", &a), 0);
	assert_string_equal(cli_socket_path(&a), "/tmp/x.sock");
	line_free(&l);

	assert_int_equal(parse(&l,
			       "migrate --pid 1234 --to 10.0.0.2:7471 --transport tcp "
			       "--secret-file /etc/rdmig/s --id m.1 --verify -w",
			       &a),
			 0);
	assert_int_equal(a.cmd, CLI_CMD_MIGRATE);
	assert_int_equal(a.pid, 1234);
	assert_string_equal(a.to, "10.0.0.2:7471");
	assert_string_equal(a.transport, "tcp");
	assert_string_equal(a.secret_file, "/etc/rdmig/s");
	assert_string_equal(a.id, "m.1");
	assert_true(a.verify);
	assert_true(a.wait);
	assert_false(a.watch);
	line_free(&l);

	assert_int_equal(parse(&l, "migrate -i img --to [2001:db8::2]:9", &a), 0);
	assert_string_equal(a.images_dir, "img");
	assert_int_equal(a.pid, 0);
	assert_null(a.advertise);
	assert_null(a.dest_images);
	line_free(&l);

	/* The handover's options ride with --to. */
	assert_int_equal(parse(&l,
			       "migrate --pid 9 --to 192.0.2.2 --advertise 192.0.2.1:7000 "
			       "--dest-images /var/lib/rdmig/x",
			       &a),
			 0);
	assert_string_equal(a.to, "192.0.2.2");
	assert_string_equal(a.advertise, "192.0.2.1:7000");
	assert_string_equal(a.dest_images, "/var/lib/rdmig/x");
	line_free(&l);

	/* -w is --watch for status; the ID may come before or after options. */
	assert_int_equal(parse(&l, "status m1 -w", &a), 0);
	assert_int_equal(a.cmd, CLI_CMD_STATUS);
	assert_string_equal(a.id, "m1");
	assert_true(a.watch);
	assert_false(a.wait);
	line_free(&l);
	assert_int_equal(parse(&l, "status", &a), 0);
	assert_null(a.id);
	line_free(&l);
	assert_int_equal(parse(&l, "--api 127.0.0.1:8080 abort m-2", &a), 0);
	assert_int_equal(a.cmd, CLI_CMD_ABORT);
	assert_string_equal(a.api, "127.0.0.1:8080");
	assert_string_equal(a.id, "m-2");
	assert_false(a.api_tls);
	line_free(&l);
	assert_int_equal(parse(&l,
			       "--api https://node-a:7480 --tls-cert c.pem --tls-key c.key "
			       "--tls-ca ca.pem health",
			       &a),
			 0);
	assert_true(a.api_tls);
	assert_string_equal(a.api, "node-a:7480");
	assert_string_equal(a.tls.cert, "c.pem");
	assert_string_equal(a.tls.key, "c.key");
	assert_string_equal(a.tls.ca, "ca.pem");
	line_free(&l);
	assert_int_equal(parse(&l, "rollback m-2", &a), 0);
	assert_int_equal(a.cmd, CLI_CMD_ROLLBACK);
	line_free(&l);

	/* --help and --version win over missing arguments. */
	assert_int_equal(parse(&l, "--version", &a), 0);
	assert_true(a.version);
	line_free(&l);
	assert_int_equal(parse(&l, "migrate --help", &a), 0);
	assert_true(a.help);
	assert_int_equal(a.cmd, CLI_CMD_MIGRATE);
	line_free(&l);
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *line;
		const char *says;
	} bad[] = {
	    {"", "no command given"},
	    {"frobnicate", "unknown command \"frobnicate\""},
	    {"health --bogus", "unknown option --bogus"},
	    {"health -x", "unknown option -x"},
	    {"health extra", "unexpected argument \"extra\""},
	    {"--pid 3 migrate --to h", "belongs after its command"},
	    {"status --pid 3", "not valid for status"},
	    {"health -w", "not valid for health"},
	    {"migrate --to h", "one of --pid, --container or --images"},
	    {"migrate --pid 3 --images /i --to h", "one of --pid, --container or --images"},
	    {"migrate --pid 3 --container c1 --to h", "one of --pid, --container or --images"},
	    {"migrate --container ../c --to h", "invalid container id"},
	    {"migrate --container -c --to h", "invalid container id"},
	    {"migrate --container c1 --runtime crun --to h", "only runc is supported"},
	    {"migrate --container c1 --runtime-root rel --to h", "--runtime-root wants an abs"},
	    {"migrate --pid 3 --runtime runc --to h", "--runtime needs --container"},
	    {"migrate --pid 3 --runtime-root /r --to h", "--runtime-root needs --container"},
	    {"migrate --pid 3 --dest-bundle /b --to h", "--dest-bundle needs --container"},
	    {"migrate --container c1 --dest-bundle b --to h", "--dest-bundle wants an abs"},
	    {"status --container c1", "not valid for status"},
	    {"migrate --pid 0 --to h", "--pid wants a process id"},
	    {"migrate --pid 12x --to h", "--pid wants a process id"},
	    {"migrate --pid 3 --to h:99999", "--to wants HOST"},
	    {"migrate --pid 3 --to h --transport udp", "rdma, tcp or tls"},
	    {"migrate --pid 3 --to h --id a/b", "invalid migration id"},
	    {"migrate --pid 3 --to", "needs an argument"},
	    {"migrate --pid 3 --advertise h", "--advertise needs --to"},
	    {"migrate --pid 3 --dest-images /d", "--dest-images needs --to"},
	    {"migrate --pid 3 --to h --dest-images rel/d", "--dest-images wants an absolute path"},
	    {"migrate --pid 3 --to h --advertise h:0", "--advertise wants HOST"},
	    {"status --advertise h", "not valid for status"},
	    {"abort", "needs a migration ID"},
	    {"abort a b", "unexpected argument \"b\""},
	    {"rollback ../x", "invalid migration id"},
	    {"abort ..", "invalid migration id"},
	    {"abort .hidden", "invalid migration id"},
	    {"migrate --pid 3 --id -x", "invalid migration id"},
	    {"migrate -i imgs --lazy-dump", "--lazy-dump needs --pid"},
	    {"migrate -i imgs --no-lazy-dump", "--no-lazy-dump needs --pid"},
	    {"migrate -i imgs --no-queue", "--no-queue needs --pid or --container"},
	    {"migrate -i imgs --precopy 2", "--precopy needs --pid"},
	    {"migrate --pid 1 --precopy 9", "--precopy is 0..8 or auto"},
	    {"migrate --pid 1 --precopy often", "--precopy is 0..8 or auto"},
	    {"migrate --pid 1 --precopy 1 --lazy-dump", "do not go together"},
	    {"status --lazy-dump", "lazy-dump"},
	    {"status a b", "unexpected argument \"b\""},
	    {"--socket /s --api h:1 health", "exclude each other"},
	    {"--api localhost health", "--api wants https://HOST:PORT"},
	    {"--api https://h:1 health", "wants --tls-cert, --tls-key and --tls-ca"},
	    {"--api https://h:1 --tls-cert c --tls-key k health", "wants --tls-cert"},
	    {"--api h:1 --tls-cert c --tls-key k --tls-ca a health", "go with --api https://"},
	    {"--api https://h:1 --tls-cert c --tls-key k --tls-ca a --allow-peer x health",
	     "the agents' options"},
	    {"--agent both health", "source or dest"},
	    {"-t 0 health", "1..3600"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cli_args a;
		struct line l;

		assert_int_equal(parse(&l, bad[i].line, &a), -EINVAL);
		if (!strstr(l.err, bad[i].says) || strncmp(l.err, "rdmigctl: ", 10) != 0 ||
		    !strstr(l.err, "--help"))
			fail_msg("\"%s\": got \"%s\"", bad[i].line, l.err);
		line_free(&l);
	}
}

static const char *cli_test_str(const json_t *j, const char *group, const char *key)
{
	return json_string_value(json_object_get(json_object_get(j, group), key));
}

static void test_migrate_body(void **state)
{
	struct cli_args a;
	struct line l;
	char *body, err[128], cwd[PATH_MAX], want[PATH_MAX + 16];
	json_t *j;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(parse(&l, "migrate -i imgs --to h:1 --secret-file s.key --verify", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_non_null(j);
	snprintf(want, sizeof(want), "%s/imgs", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(json_string_value(json_object_get(j, "images_dir")), want);
	snprintf(want, sizeof(want), "%s/s.key", strcmp(cwd, "/") ? cwd : "");
	assert_string_equal(json_string_value(json_object_get(j, "secret_file")), want);
	assert_string_equal(json_string_value(json_object_get(j, "dest")), "h:1");
	assert_true(json_is_true(json_object_get(j, "verify")));
	/* Unset options are left to the agent's defaults. */
	assert_null(json_object_get(j, "id"));
	assert_null(json_object_get(j, "pid"));
	assert_null(json_object_get(j, "transport"));
	assert_int_equal(json_object_size(j), 4);
	json_decref(j);
	free(body);
	line_free(&l);

	assert_int_equal(
	    parse(&l, "migrate --pid 77 --to h --id x1 --transport tcp --lazy-dump", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_true(json_is_true(json_object_get(j, "lazy_dump")));
	assert_int_equal(json_integer_value(json_object_get(j, "pid")), 77);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "x1");
	assert_string_equal(json_string_value(json_object_get(j, "transport")), "tcp");
	assert_null(json_object_get(j, "verify"));
	/* Without --no-queue the agent's default (wait in its queue) holds. */
	assert_null(json_object_get(j, "queue"));
	json_decref(j);
	free(body);
	line_free(&l);

	/* --no-lazy-dump says false; neither leaves the choice to the agent. */
	assert_int_equal(parse(&l, "migrate --pid 77 --to h --no-lazy-dump", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_true(json_is_false(json_object_get(j, "lazy_dump")));
	json_decref(j);
	free(body);
	line_free(&l);
	assert_int_equal(parse(&l, "migrate --pid 77 --to h", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_null(json_object_get(j, "lazy_dump"));
	json_decref(j);
	free(body);
	line_free(&l);

	assert_int_equal(parse(&l, "migrate --pid 77 --to h --no-queue", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_true(json_is_false(json_object_get(j, "queue")));
	json_decref(j);
	free(body);
	line_free(&l);

	/* --precopy: a number, or the string "auto". */
	assert_int_equal(parse(&l, "migrate --pid 77 --to h --precopy 3", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "precopy")), 3);
	json_decref(j);
	free(body);
	line_free(&l);
	assert_int_equal(parse(&l, "migrate --pid 77 --to h --precopy auto", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "precopy")), "auto");
	json_decref(j);
	free(body);
	line_free(&l);

	/* --container: the runtime defaults to runc; the root only when given. */
	assert_int_equal(parse(&l, "migrate --container web.1 --to h", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_null(json_object_get(j, "pid"));
	assert_string_equal(cli_test_str(j, "container", "runtime"), "runc");
	assert_string_equal(cli_test_str(j, "container", "id"), "web.1");
	assert_null(json_object_get(json_object_get(j, "container"), "root"));
	json_decref(j);
	free(body);
	line_free(&l);
	assert_int_equal(
	    parse(&l, "migrate --container c2 --runtime runc --runtime-root /run/r --to h", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_string_equal(cli_test_str(j, "container", "root"), "/run/r");
	assert_int_equal(json_object_size(json_object_get(j, "container")), 3);
	json_decref(j);
	free(body);
	line_free(&l);
	/* The bundle mapped to another path on the destination. */
	assert_int_equal(parse(&l, "migrate --container c3 --dest-bundle /srv/b --to h", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_string_equal(cli_test_str(j, "container", "bundle"), "/srv/b");
	json_decref(j);
	free(body);
	line_free(&l);

	/* criu's log level goes in criu_opts, the object the agent takes it from; 0 is a level. */
	assert_int_equal(parse(&l, "migrate --pid 9 --criu-log-level 0", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(j, "criu_opts"), "log_level")), 0);
	json_decref(j);
	free(body);
	line_free(&l);
	assert_int_not_equal(parse(&l, "migrate --pid 9 --criu-log-level 5", &a), 0);
	line_free(&l);
	assert_int_not_equal(parse(&l, "status --criu-log-level 2", &a), 0);
	line_free(&l);

	assert_int_equal(
	    parse(&l, "migrate --pid 5 --to h --advertise 10.0.0.1 --dest-images /d", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "dest")), "h");
	assert_string_equal(json_string_value(json_object_get(j, "advertise")), "10.0.0.1");
	assert_string_equal(json_string_value(json_object_get(j, "dest_images_dir")), "/d");
	json_decref(j);
	free(body);
	line_free(&l);

	/* --images without --to: no "dest" (the destination side is started by other means). */
	assert_int_equal(parse(&l, "migrate -i /imgs --secret-file /s --id m2", &a), 0);
	assert_int_equal(cli_migrate_body(&a, &body, err, sizeof(err)), 0);
	j = json_loads(body, 0, NULL);
	assert_null(json_object_get(j, "dest"));
	assert_string_equal(json_string_value(json_object_get(j, "images_dir")), "/imgs");
	json_decref(j);
	free(body);
	line_free(&l);
}

static void test_error_message(void **state)
{
	char buf[128];

	assert_string_equal(cli_error_message(404, "Not Found",
					      "{\"error\":{\"code\":\"not_found\","
					      "\"message\":\"no migration \\\"x\\\"\"}}",
					      buf, sizeof(buf)),
			    "no migration \"x\"");
	/* evhttp's own HTML pages and other bodies fall back to the status line. */
	assert_string_equal(
	    cli_error_message(413, "Request Entity Too Large", "<HTML><HEAD>", buf, sizeof(buf)),
	    "HTTP 413 Request Entity Too Large");
	assert_string_equal(cli_error_message(500, "", NULL, buf, sizeof(buf)), "HTTP 500 error");
}

static json_t *sample(const char *id, enum api_state st, const char *error)
{
	struct api_migration_view v;

	api_migration_view_init(&v);
	v.id = id;
	v.state = st;
	v.error = error;
	v.dest = "10.0.0.2:7471";
	v.pid = 4242;
	v.pages_total = 100;
	v.pages_fetched = 40;
	v.pages_remaining = 60;
	v.faults = 7;
	v.bytes = 40 * 4096;
	v.fault_p50_us = 12;
	v.total_ms = 3200;
	v.freeze_ms = 85;
	v.pauses = 2;
	v.paused_ms = 12300;
	return api_migration_to_json(&v);
}

/* A source's migration handed over to a destination agent. */
static json_t *sample_handover(void)
{
	struct api_migration_view v;

	api_migration_view_init(&v);
	v.id = "h1";
	v.state = API_STATE_DONE;
	v.dest = "192.0.2.2:7472";
	v.dest_state = "done";
	v.pages_total = 100;
	v.pages_fetched = 100;
	v.bytes = 100 * 4096;
	v.faults = 9;
	v.fault_p50_us = 150;
	v.fault_p99_us = 900;
	v.freeze_ms = 800;
	v.restore_ms = 300;
	v.resumed_ms = 450;
	v.downtime_ms = 1270;
	v.total_ms = 12345;
	return api_migration_to_json(&v);
}

static char *capture(void (*fn)(FILE *, const json_t *), const json_t *j)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	fn(f, j);
	fclose(f);
	return out;
}

static void test_format(void **state)
{
	json_t *m = sample("m1", API_STATE_POSTCOPY, NULL);
	json_t *failed = sample("m2", API_STATE_FAILED, "the peer went away");
	json_t *ho = sample_handover();
	json_t *arr = json_array(), *h;
	char line[256], *out;

	assert_string_equal(cli_format_progress(m, line, sizeof(line)),
			    "m1  postcopy  40.0%  40/100 pages  160.0 KiB  7 faults  p50 12 us  "
			    "p99 -  3200 ms");
	assert_non_null(
	    strstr(cli_format_progress(failed, line, sizeof(line)), "(the peer went away)"));
	/* A short buffer truncates, it does not overflow. */
	assert_int_equal(strlen(cli_format_progress(m, line, 10)), 9);

	out = capture(cli_print_report, m);
	assert_non_null(strstr(out, "migration m1 (source): postcopy\n"));
	assert_non_null(strstr(out, "  pid:        4242\n"));
	assert_non_null(strstr(out, "  pages:      40 of 100 fetched, 60 remaining (40.0%)\n"));
	assert_non_null(strstr(out, "  faults:     7 (latency p50 12 us, p99 -)\n"));
	/* Only the dump's freeze known: a lower bound. */
	assert_non_null(strstr(out, "  downtime:   >=85 ms\n"));
	assert_non_null(strstr(out, "  dump:       85 ms (criu dump"));
	assert_non_null(strstr(out, "  restore:    - ("));
	assert_non_null(strstr(out, "  dest:       10.0.0.2:7471\n"));
	assert_non_null(strstr(out, "  pauses:     2 (12.3 s in all)\n"));
	assert_null(strstr(out, "takeovers:"));
	assert_null(strstr(out, "error:"));
	assert_null(strstr(out, "container:"));
	assert_null(strstr(out, "queue:"));
	free(out);
	/* Queued: its place on the progress line and in the report. */
	json_object_set_new(m, "queue",
			    json_pack("{s:i, s:s, s:s}", "position", 2, "since",
				      "2026-12-04T17:00:00.000Z", "reason", "slot"));
	assert_non_null(
	    strstr(cli_format_progress(m, line, sizeof(line)), "  queued: position 2 (slot)"));
	out = capture(cli_print_report, m);
	assert_non_null(strstr(
	    out, "  queue:      position 2, waiting for slot since 2026-12-04T17:00:00.000Z\n"));
	free(out);
	json_object_del(m, "queue");
	json_object_set_new(ho, "container",
			    json_pack("{s:s, s:s, s:n}", "runtime", "runc", "id", "web1", "root"));
	out = capture(cli_print_report, ho);
	assert_non_null(strstr(out, "  container:  web1 (runc)\n"));
	assert_non_null(strstr(out, "migration h1 (source): done\n"));
	assert_non_null(strstr(out, "  dest:       192.0.2.2:7472 (destination agent: done)\n"));
	assert_non_null(strstr(out, "  downtime:   1270 ms (frozen on the source until running on "
				    "the destination)\n"));
	/* A container's are runc's checkpoint and restore. */
	assert_non_null(strstr(out, "  dump:       800 ms (runc checkpoint"));
	assert_non_null(strstr(out, "  restore:    300 ms (runc restore on the destination)\n"));
	assert_non_null(strstr(out, "  faults:     9 (latency p50 150 us, p99 900 us)\n"));
	assert_non_null(strstr(out, "  total:      12.3 s\n"));
	free(out);
	assert_non_null(strstr(cli_format_progress(ho, line, sizeof(line)), "  12.3 s  dest done"));
	out = capture(cli_print_report, failed);
	assert_non_null(strstr(out, "  error:      the peer went away\n"));
	free(out);

	out = capture(cli_print_table, arr);
	assert_string_equal(out, "no migrations\n");
	free(out);
	json_array_append(arr, m);
	json_array_append(arr, failed);
	out = capture(cli_print_table, arr);
	assert_int_equal(strncmp(out, "ID  ROLE    STATE", 17), 0);
	assert_non_null(strstr(out, "\nm1  source  postcopy        40.0%"));
	assert_non_null(strstr(out, "\nm2  source  failed  "));
	assert_non_null(strstr(out, "160.0 KiB"));
	assert_non_null(strstr(out, "  >=85 ms    3200 ms\n"));
	free(out);
	json_array_clear(arr);
	json_array_append(arr, ho);
	out = capture(cli_print_table, arr);
	assert_non_null(strstr(out, "  1270 ms     12.3 s\n"));
	free(out);

	h = json_pack("{s:s,s:s,s:s,s:i,s:i}", "status", "ok", "role", "dest", "version", "0.1.0",
		      "migrations", 3, "active", 1);
	out = capture(cli_print_health, h);
	assert_string_equal(out, "ok: dest agent 0.1.0, 3 migrations (1 active)\n");
	free(out);

	json_decref(h);
	json_decref(arr);
	json_decref(m);
	json_decref(failed);
	json_decref(ho);
}

static void test_usage(void **state)
{
	static const enum cli_cmd cmds[] = {CLI_CMD_NONE,   CLI_CMD_HEALTH, CLI_CMD_MIGRATE,
					    CLI_CMD_STATUS, CLI_CMD_ABORT,  CLI_CMD_ROLLBACK};
	static const char *const says[] = {"COMMAND", "health",	  "--pid PID",
					   "--watch", "abort ID", "rollback [--force] ID"};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *out = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&out, &len);

		cli_usage(f, cmds[i]);
		fclose(f);
		assert_int_equal(strncmp(out, "Usage: rdmigctl", 15), 0);
		assert_non_null(strstr(out, says[i]));
		assert_non_null(strstr(out, "--socket PATH"));
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_ok),	 cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_migrate_body), cmocka_unit_test(test_error_message),
	    cmocka_unit_test(test_format),	 cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
