// SPDX-License-Identifier: GPL-2.0-or-later
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "util.h"

/* Long-only options get codes above any char. */
enum {
	OPT_AGENT = 256,
	OPT_TO,
	OPT_TRANSPORT,
	OPT_SECRET_FILE,
	OPT_ID,
	OPT_VERIFY,
	OPT_LAZY_DUMP,
	OPT_NO_LAZY_DUMP,
	OPT_NO_QUEUE,
	OPT_PRECOPY,
	OPT_WAIT,
	OPT_WATCH,
	OPT_ADVERTISE,
	OPT_DEST_IMAGES,
	OPT_CRIU_LOG_LEVEL,
	OPT_FORCE,
	OPT_CONTAINER,
	OPT_RUNTIME,
	OPT_RUNTIME_ROOT,
	OPT_DEST_BUNDLE,
};

#define M_GLOBAL   0u /* every command, and before the command */
#define M_MIGRATE  (1u << CLI_CMD_MIGRATE)
#define M_STATUS   (1u << CLI_CMD_STATUS)
#define M_ROLLBACK (1u << CLI_CMD_ROLLBACK)
#define M_WAITLIKE (M_MIGRATE | M_STATUS)

static const struct option cli_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"api", required_argument, NULL, 'a'},
    {"agent", required_argument, NULL, OPT_AGENT},
    {"timeout", required_argument, NULL, 't'},
    {"json", no_argument, NULL, 'j'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"pid", required_argument, NULL, 'p'},
    {"images", required_argument, NULL, 'i'},
    {"to", required_argument, NULL, OPT_TO},
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
    {"id", required_argument, NULL, OPT_ID},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"lazy-dump", no_argument, NULL, OPT_LAZY_DUMP},
    {"no-lazy-dump", no_argument, NULL, OPT_NO_LAZY_DUMP},
    {"no-queue", no_argument, NULL, OPT_NO_QUEUE},
    {"precopy", required_argument, NULL, OPT_PRECOPY},
    {"wait", no_argument, NULL, OPT_WAIT},
    {"watch", no_argument, NULL, OPT_WATCH},
    {"advertise", required_argument, NULL, OPT_ADVERTISE},
    {"dest-images", required_argument, NULL, OPT_DEST_IMAGES},
    {"criu-log-level", required_argument, NULL, OPT_CRIU_LOG_LEVEL},
    {"force", no_argument, NULL, OPT_FORCE},
    {"container", required_argument, NULL, OPT_CONTAINER},
    {"runtime", required_argument, NULL, OPT_RUNTIME},
    {"runtime-root", required_argument, NULL, OPT_RUNTIME_ROOT},
    {"dest-bundle", required_argument, NULL, OPT_DEST_BUNDLE},
    TLS_LONGOPTS,
    {NULL, 0, NULL, 0},
};

/* Which commands accept an option (0: global). */
static unsigned cli_option_mask(int code)
{
	switch (code) {
	case 'p':
	case 'i':
	case OPT_TO:
	case OPT_TRANSPORT:
	case OPT_SECRET_FILE:
	case OPT_ID:
	case OPT_VERIFY:
	case OPT_LAZY_DUMP:
	case OPT_NO_LAZY_DUMP:
	case OPT_NO_QUEUE:
	case OPT_PRECOPY:
	case OPT_WAIT:
	case OPT_ADVERTISE:
	case OPT_DEST_IMAGES:
	case OPT_CRIU_LOG_LEVEL:
	case OPT_CONTAINER:
	case OPT_RUNTIME:
	case OPT_RUNTIME_ROOT:
	case OPT_DEST_BUNDLE:
		return M_MIGRATE;
	case OPT_WATCH:
		return M_STATUS;
	case OPT_FORCE:
		return M_ROLLBACK;
	case 'w':
		return M_WAITLIKE;
	default:
		return M_GLOBAL;
	}
}

static const struct {
	const char *name;
	enum cli_cmd cmd;
} cli_commands[] = {
    {"health", CLI_CMD_HEALTH}, {"migrate", CLI_CMD_MIGRATE},	{"status", CLI_CMD_STATUS},
    {"abort", CLI_CMD_ABORT},	{"rollback", CLI_CMD_ROLLBACK},
};

static const char *cli_cmd_name(enum cli_cmd c)
{
	for (size_t i = 0; i < ARRAY_SIZE(cli_commands); i++) {
		if (cli_commands[i].cmd == c)
			return cli_commands[i].name;
	}
	return "rdmigctl";
}

void cli_usage(FILE *f, enum cli_cmd cmd)
{
	static const char globals[] =
	    "\nConnection options (anywhere on the line):\n"
	    "  -s, --socket PATH    the agent's UNIX socket (default " API_SOCKET_SOURCE ",\n"
	    "                       or " API_SOCKET_DEST " with --agent dest)\n"
	    "      --agent ROLE     source (default) or dest: which default socket\n"
	    "  -a, --api https://HOST:PORT\n"
	    "                       the agent's TCP listener instead, over mutual TLS\n"
	    "                       (the agent's certificate must name HOST)\n"
	    "      --tls-cert FILE  with https: this operator's certificate (PEM)\n"
	    "      --tls-key FILE   its private key (PEM)\n"
	    "      --tls-ca FILE    the CA that signs the agents' certificates\n"
	    "  -a, --api HOST:PORT  plain HTTP: only an agent's --insecure-api loopback\n"
	    "                       listener answers\n"
	    "  -t, --timeout SECS   per request (default 10)\n"
	    "  -j, --json           print the API's JSON instead of text\n"
	    "  -v, --verbose        more logging\n"
	    "  -h, --help           show help (per command too) and exit\n"
	    "  -V, --version        show the version and exit\n";

	switch (cmd) {
	case CLI_CMD_HEALTH:
		fprintf(f,
			"Usage: rdmigctl [OPTIONS] health\n"
			"Check that the agent answers; prints its role, version and how many\n"
			"migrations it knows.\n%s",
			globals);
		break;
	case CLI_CMD_MIGRATE:
		fprintf(
		    f,
		    "Usage: rdmigctl [OPTIONS] migrate (--pid PID | --container ID\n"
		    "                [--runtime runc] [--runtime-root DIR] | --images DIR)\n"
		    "                [--to HOST[:PORT] [--advertise HOST[:PORT]]\n"
		    "                [--dest-images DIR]] [--transport rdma|tcp|tls]\n"
		    "                [--secret-file FILE] [--id ID] [--verify]\n"
		    "                [--lazy-dump | --no-lazy-dump | --precopy N|auto]\n"
		    "                [--criu-log-level N] [--no-queue] [--wait]\n"
		    "Start a migration on the source agent.\n\n"
		    "  -p, --pid PID          the agent dumps this running process tree (criu\n"
		    "                         dump) and serves its images\n"
		    "      --container ID     the agent checkpoints this container with its\n"
		    "                         runtime (runc checkpoint) instead\n"
		    "      --runtime R        the container's runtime: runc (default, the only\n"
		    "                         one so far)\n"
		    "      --runtime-root DIR the runtime's state directory on the source\n"
		    "                         (runc --root; absolute; default: the runtime's)\n"
		    "      --dest-bundle DIR  the container's bundle on the destination, when\n"
		    "                         not at its path on the source (absolute)\n"
		    "  -i, --images DIR       serve images already dumped in DIR instead\n"
		    "                         (below the source agent's --images-root)\n"
		    "      --to HOST[:PORT]   the destination agent's API (port default %d):\n"
		    "                         once the images are served, the source agent\n"
		    "                         hands the migration over to it (with the\n"
		    "                         secret: see rdmigctl(8), SECURITY); without\n"
		    "                         --to, start the destination side yourself\n"
		    "      --advertise H[:P]  where the destination is to connect to the\n"
		    "                         source (default: its listener's address, or\n"
		    "                         its address towards the destination agent)\n"
		    "      --dest-images DIR  the images directory on the destination\n"
		    "                         (absolute, below its --work-root, new;\n"
		    "                         default: its agent chooses)\n"
		    "      --transport T      rdma (default), tcp, or tls (TCP inside mutual\n"
		    "                         TLS); the source agent's own --transport\n"
		    "      --secret-file F    the shared secret file, read by the agent\n"
		    "      --id ID            the migration id ([A-Za-z0-9._-], up to 64);\n"
		    "                         default: chosen by the agent\n"
		    "      --verify           checksum every page\n"
		    "      --lazy-dump        with --pid: criu dump --lazy-pages, the\n"
		    "                         freeze writes no memory; the source pulls it\n"
		    "                         from criu's page server during post-copy\n"
		    "                         (the default with --to a destination agent\n"
		    "                         that takes one, unless the source agent runs\n"
		    "                         with --no-lazy-dump)\n"
		    "      --no-lazy-dump     with --pid: a plain dump, every page written\n"
		    "                         while the workload is frozen\n"
		    "      --precopy N|auto   with --pid: N criu pre-dump rounds (1..8) while\n"
		    "                         the workload runs, then a dump of what they\n"
		    "                         did not have; auto: rounds until one writes\n"
		    "                         less than a fifth fewer pages (at most 8)\n"
		    "      --criu-log-level N criu's -vN for the dump and the restore, 0..4\n"
		    "                         (default: the agents', 2); 4 makes the freeze\n"
		    "                         several times longer\n"
		    "      --no-queue         with --pid or --container: refused (exit 1)\n"
		    "                         when no slot is free, instead of waiting in\n"
		    "                         the source agent's queue (state queued)\n"
		    "  -w, --wait             follow the migration (its place while it is\n"
		    "                         queued), then print its report:\n"
		    "                         downtime, times, pages, faults; exit 1 with\n"
		    "                         the reason unless it ends \"done\"\n%s",
		    API_DEST_PORT_DEFAULT, globals);
		break;
	case CLI_CMD_STATUS:
		fprintf(
		    f,
		    "Usage: rdmigctl [OPTIONS] status [ID] [--watch]\n"
		    "Without ID: a table of the agent's migrations.  With ID: its report.\n\n"
		    "  -w, --watch   redraw one progress line until the migration is final\n"
		    "                (without ID: the only active migration); exit 1 unless\n"
		    "                it ends \"done\".  With --json: one JSON line per update.\n%s",
		    globals);
		break;
	case CLI_CMD_ABORT:
		fprintf(f,
			"Usage: rdmigctl [OPTIONS] abort ID\n"
			"Abort a migration.\n%s",
			globals);
		break;
	case CLI_CMD_ROLLBACK:
		fprintf(f,
			"Usage: rdmigctl [OPTIONS] rollback [--force] ID\n"
			"Roll a migration back on the source agent: the process resumes there.\n"
			"Refused (exit 1) while the destination may still run the workload: the\n"
			"source asks the destination agent first.\n\n"
			"Options:\n"
			"      --force            roll back without the destination's word (make\n"
			"                         sure the workload is stopped there first)\n%s",
			globals);
		break;
	case CLI_CMD_NONE:
	default:
		fprintf(f,
			"Usage: rdmigctl [OPTIONS] COMMAND [ARGS]\n"
			"Start, watch and abort migrations through the rdmig agents' API.\n\n"
			"Commands:\n"
			"  health                 is the agent up?\n"
			"  migrate ...            start a migration (source agent)\n"
			"  status [ID]            list migrations, or show one\n"
			"  abort ID               abort a migration\n"
			"  rollback ID            roll a migration back (source agent)\n"
			"\n`rdmigctl COMMAND --help` describes a command.\n%s",
			globals);
		break;
	}
}

static int cli_bad(FILE *err, enum cli_cmd cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints "rdmigctl: <reason>" and a hint; returns -EINVAL. */
static int cli_bad(FILE *err, enum cli_cmd cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("rdmigctl: ", err);
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	if (cmd != CLI_CMD_NONE)
		fprintf(err, "\nTry 'rdmigctl %s --help'.\n", cli_cmd_name(cmd));
	else
		fputs("\nTry 'rdmigctl --help'.\n", err);
	return -EINVAL;
}

static int cli_check_hostport(const char *s, bool port_required)
{
	char host[API_HOSTPORT_MAX + 1], port[8];
	uint64_t v;

	if (parse_hostport(s, port_required ? NULL : "", host, sizeof(host), port, sizeof(port)) <
		0 ||
	    strpbrk(host, " \t/"))
		return -EINVAL;
	if (port[0] && parse_uint(port, 1, 65535, &v) < 0)
		return -EINVAL;
	return 0;
}

/* Applies one option; phase_cmd is CLI_CMD_NONE before the command name. */
static int cli_apply(struct cli_args *a, int c, const char *arg, const char *name, FILE *err)
{
	uint64_t v;

	switch (c) {
	case 's':
		a->socket_path = arg;
		break;
	case 'a':
		a->api_tls = strncmp(arg, "https://", 8) == 0;
		if (a->api_tls)
			arg += 8;
		else if (strncmp(arg, "http://", 7) == 0)
			arg += 7;
		if (cli_check_hostport(arg, true) < 0)
			return cli_bad(err, a->cmd,
				       "--api wants https://HOST:PORT (or HOST:PORT), not \"%s\"",
				       arg);
		a->api = arg;
		break;
	case OPT_AGENT:
		if (strcmp(arg, "source") != 0 && strcmp(arg, "dest") != 0)
			return cli_bad(err, a->cmd, "--agent is source or dest, not \"%s\"", arg);
		a->dest_agent = strcmp(arg, "dest") == 0;
		break;
	case 't':
		if (parse_uint(arg, 1, 3600, &v) < 0)
			return cli_bad(err, a->cmd, "--timeout wants 1..3600 seconds, not \"%s\"",
				       arg);
		a->timeout_ms = (int)v * 1000;
		break;
	case 'j':
		a->json = true;
		break;
	case 'v':
		a->verbose++;
		break;
	case 'h':
		a->help = true;
		break;
	case 'V':
		a->version = true;
		break;
	case 'p':
		if (parse_uint(arg, 1, 4194304, &v) < 0)
			return cli_bad(err, a->cmd, "--pid wants a process id, not \"%s\"", arg);
		a->pid = (pid_t)v;
		break;
	case OPT_CONTAINER:
		if (!container_id_valid(arg))
			return cli_bad(err, a->cmd,
				       "invalid container id \"%s\" (" CONTAINER_ID_RULE ")", arg);
		a->container = arg;
		break;
	case OPT_RUNTIME:
		if (strcmp(arg, API_CONTAINER_RUNTIME) != 0)
			return cli_bad(err, a->cmd,
				       "--runtime: only " API_CONTAINER_RUNTIME
				       " is supported, not \"%s\"",
				       arg);
		a->runtime = arg;
		break;
	case OPT_RUNTIME_ROOT:
		/* A path on the source agent's host: nothing here can make it absolute. */
		if (arg[0] != '/')
			return cli_bad(err, a->cmd,
				       "--runtime-root wants an absolute path, not \"%s\"", arg);
		a->runtime_root = arg;
		break;
	case OPT_DEST_BUNDLE:
		if (arg[0] != '/')
			return cli_bad(err, a->cmd,
				       "--dest-bundle wants an absolute path, not \"%s\"", arg);
		a->dest_bundle = arg;
		break;
	case 'i':
		if (!arg[0])
			return cli_bad(err, a->cmd, "--images wants a directory");
		a->images_dir = arg;
		break;
	case OPT_TO:
		if (cli_check_hostport(arg, false) < 0)
			return cli_bad(
			    err, a->cmd,
			    "--to wants HOST or HOST:PORT (IPv6 in brackets), not \"%s\"", arg);
		a->to = arg;
		break;
	case OPT_ADVERTISE:
		if (cli_check_hostport(arg, false) < 0)
			return cli_bad(
			    err, a->cmd,
			    "--advertise wants HOST or HOST:PORT (IPv6 in brackets), not \"%s\"",
			    arg);
		a->advertise = arg;
		break;
	case OPT_DEST_IMAGES:
		/* A path on the destination host: nothing here can make it absolute. */
		if (arg[0] != '/')
			return cli_bad(err, a->cmd,
				       "--dest-images wants an absolute path, not \"%s\"", arg);
		a->dest_images = arg;
		break;
	case OPT_TRANSPORT:
		if (strcmp(arg, "rdma") != 0 && strcmp(arg, "tcp") != 0 && strcmp(arg, "tls") != 0)
			return cli_bad(err, a->cmd, "--transport is rdma, tcp or tls, not \"%s\"",
				       arg);
		a->transport = arg;
		break;
	case OPT_SECRET_FILE:
		if (!arg[0])
			return cli_bad(err, a->cmd, "--secret-file wants a file name");
		a->secret_file = arg;
		break;
	case OPT_ID:
		if (!migration_id_valid(arg))
			return cli_bad(err, a->cmd,
				       "invalid migration id \"%s\" (" MIGRATION_ID_RULE ")", arg);
		a->id = arg;
		break;
	case OPT_VERIFY:
		a->verify = true;
		break;
	case OPT_LAZY_DUMP:
		a->lazy_dump = API_LAZY_YES;
		break;
	case OPT_NO_LAZY_DUMP:
		a->lazy_dump = API_LAZY_NO;
		break;
	case OPT_NO_QUEUE:
		a->no_queue = true;
		break;
	case OPT_PRECOPY:
		if (strcmp(arg, "auto") == 0)
			a->precopy = API_PRECOPY_AUTO;
		else if (parse_uint(arg, 0, API_PRECOPY_MAX, &v) == 0)
			a->precopy = (int)v;
		else
			return cli_bad(err, a->cmd, "--precopy is 0..%d or auto, not \"%s\"",
				       API_PRECOPY_MAX, arg);
		break;
	case OPT_CRIU_LOG_LEVEL:
		if (parse_uint(arg, 0, 4, &v) < 0)
			return cli_bad(err, a->cmd, "--criu-log-level is 0..4, not \"%s\"", arg);
		a->criu_log_level = (int)v;
		break;
	case OPT_WAIT:
		a->wait = true;
		break;
	case OPT_WATCH:
		a->watch = true;
		break;
	case OPT_FORCE:
		a->force = true;
		break;
	case 'w':
		/* -w is --wait for migrate and --watch for status. */
		if (a->cmd == CLI_CMD_MIGRATE)
			a->wait = true;
		else
			a->watch = true;
		break;
	default:
		if (tls_opts_handle(&a->tls, c, arg, "rdmigctl") == 1)
			break;
		return cli_bad(err, a->cmd, "unhandled option %s", name);
	}
	return 0;
}

/* getopt over argv[0..argc); stop_at_cmd: stop at the first non-option. */
static int cli_getopt(int argc, char **argv, struct cli_args *a, bool stop_at_cmd, FILE *err)
{
	const char *shorts = stop_at_cmd ? "+:s:a:t:jvhVp:i:w" : ":s:a:t:jvhVp:i:w";
	int c, idx;

	optind = 0; /* 0, not 1: glibc then also resets its internal state */
	opterr = 0;
	while ((idx = -1, c = getopt_long(argc, argv, shorts, cli_options, &idx)) != -1) {
		const char *name = argv[optind - 1];
		unsigned mask;
		int ret;

		if (c == '?') {
			if (optopt && optopt < 256)
				return cli_bad(err, a->cmd, "unknown option -%c", optopt);
			return cli_bad(err, a->cmd, "unknown option %s", name);
		}
		if (c == ':')
			return cli_bad(err, a->cmd, "option %s needs an argument", name);
		mask = cli_option_mask(c);
		if (mask && (a->cmd == CLI_CMD_NONE || !(mask & (1u << a->cmd)))) {
			char buf[32];

			if (idx >= 0)
				snprintf(buf, sizeof(buf), "--%s", cli_options[idx].name);
			else
				snprintf(buf, sizeof(buf), "-%c", c);
			if (a->cmd == CLI_CMD_NONE)
				return cli_bad(err, a->cmd, "option %s belongs after its command",
					       buf);
			return cli_bad(err, a->cmd, "option %s is not valid for %s", buf,
				       cli_cmd_name(a->cmd));
		}
		ret = cli_apply(a, c, optarg, name, err);
		if (ret)
			return ret;
	}
	return optind;
}

int cli_parse(int argc, char **argv, struct cli_args *a, FILE *err)
{
	int first, n;
	char **rest;

	memset(a, 0, sizeof(*a));
	a->timeout_ms = 10000;
	a->criu_log_level = -1;
	first = cli_getopt(argc, argv, a, true, err);
	if (first < 0)
		return first;
	if (a->help || a->version)
		return 0;
	if (first >= argc)
		return cli_bad(err, CLI_CMD_NONE, "no command given");
	for (size_t i = 0; i < ARRAY_SIZE(cli_commands); i++) {
		if (strcmp(argv[first], cli_commands[i].name) == 0)
			a->cmd = cli_commands[i].cmd;
	}
	if (a->cmd == CLI_CMD_NONE)
		return cli_bad(err, CLI_CMD_NONE, "unknown command \"%s\"", argv[first]);

	/* The command name plays argv[0] for the second pass. */
	rest = argv + first;
	n = cli_getopt(argc - first, rest, a, false, err);
	if (n < 0)
		return n;
	if (a->help || a->version)
		return 0;
	if (a->socket_path && a->api)
		return cli_bad(err, a->cmd, "--socket and --api exclude each other");
	if (a->tls.nallow || a->tls.insecure_api)
		return cli_bad(err, a->cmd,
			       "--allow-peer and --insecure-api are the agents' options");
	if (tls_opts_any(&a->tls) != a->api_tls)
		return cli_bad(err, a->cmd,
			       a->api_tls
				   ? "--api https:// wants --tls-cert, --tls-key and --tls-ca"
				   : "--tls-cert, --tls-key and --tls-ca go with --api "
				     "https://HOST:PORT");
	if (a->api_tls && !(a->tls.cert && a->tls.key && a->tls.ca))
		return cli_bad(err, a->cmd,
			       "--api https:// wants --tls-cert, --tls-key and --tls-ca");

	switch (a->cmd) {
	case CLI_CMD_HEALTH:
	case CLI_CMD_MIGRATE:
		if (n < argc - first)
			return cli_bad(err, a->cmd, "unexpected argument \"%s\"", rest[n]);
		break;
	case CLI_CMD_STATUS:
		if (argc - first - n > 1)
			return cli_bad(err, a->cmd, "unexpected argument \"%s\"", rest[n + 1]);
		if (n < argc - first)
			a->id = rest[n];
		break;
	default:
		if (n >= argc - first)
			return cli_bad(err, a->cmd, "%s needs a migration ID",
				       cli_cmd_name(a->cmd));
		if (argc - first - n > 1)
			return cli_bad(err, a->cmd, "unexpected argument \"%s\"", rest[n + 1]);
		a->id = rest[n];
		break;
	}
	if (a->id && !migration_id_valid(a->id))
		return cli_bad(err, a->cmd, "invalid migration id \"%s\" (" MIGRATION_ID_RULE ")",
			       a->id);
	if (a->cmd == CLI_CMD_MIGRATE) {
		if (!!a->pid + !!a->images_dir + !!a->container != 1)
			return cli_bad(err, a->cmd, "give one of --pid, --container or --images");
		if ((a->runtime || a->runtime_root || a->dest_bundle) && !a->container)
			return cli_bad(err, a->cmd, "%s needs --container",
				       a->runtime	 ? "--runtime"
				       : a->runtime_root ? "--runtime-root"
							 : "--dest-bundle");
		if (a->lazy_dump != API_LAZY_AUTO && !a->pid)
			return cli_bad(err, a->cmd, "%s needs --pid",
				       a->lazy_dump == API_LAZY_YES ? "--lazy-dump"
								    : "--no-lazy-dump");
		if (a->no_queue && !a->pid && !a->container)
			return cli_bad(err, a->cmd, "--no-queue needs --pid or --container");
		if (a->precopy != API_PRECOPY_OFF && !a->pid)
			return cli_bad(err, a->cmd, "--precopy needs --pid");
		if (a->precopy != API_PRECOPY_OFF && a->lazy_dump == API_LAZY_YES)
			return cli_bad(err, a->cmd,
				       "--precopy and --lazy-dump do not go together (a lazy "
				       "dump's page server does not serve in-parent pages)");
		if ((a->advertise || a->dest_images) && !a->to)
			return cli_bad(err, a->cmd, "%s needs --to (the destination agent)",
				       a->advertise ? "--advertise" : "--dest-images");
	}
	return 0;
}

const char *cli_socket_path(const struct cli_args *a)
{
	if (a->socket_path)
		return a->socket_path;
	return a->dest_agent ? API_SOCKET_DEST : API_SOCKET_SOURCE;
}

/* path made absolute against the current directory (the agent runs elsewhere). */
static json_t *cli_abs_path(const char *path)
{
	char cwd[PATH_MAX], *joined;
	json_t *j;

	if (path[0] == '/')
		return json_string(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (asprintf(&joined, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, path) < 0)
		return NULL;
	j = json_string(joined);
	free(joined);
	return j;
}

int cli_migrate_body(const struct cli_args *a, char **out, char *errbuf, size_t errlen)
{
	json_t *body = json_object(), *v;
	int ret = -ENOMEM;

	*out = NULL;
	if (errlen)
		errbuf[0] = '\0';
	if (!body)
		goto out;
	if (a->id && json_object_set_new(body, "id", json_string(a->id)) < 0)
		goto out;
	if (a->pid && json_object_set_new(body, "pid", json_integer(a->pid)) < 0)
		goto out;
	if (a->container) {
		v = json_pack("{s:s, s:s}", "runtime",
			      a->runtime ? a->runtime : API_CONTAINER_RUNTIME, "id", a->container);
		if (!v || json_object_set_new(body, "container", v) < 0)
			goto out;
		/* Absent, not null: the agent takes only a string. */
		if (a->runtime_root &&
		    json_object_set_new(v, "root", json_string(a->runtime_root)) < 0)
			goto out;
		if (a->dest_bundle &&
		    json_object_set_new(v, "bundle", json_string(a->dest_bundle)) < 0)
			goto out;
	}
	if (a->images_dir) {
		v = cli_abs_path(a->images_dir);
		if (!v || json_object_set_new(body, "images_dir", v) < 0) {
			snprintf(errbuf, errlen, "cannot make %s absolute: %s", a->images_dir,
				 strerror(errno));
			ret = errno ? -errno : -ENOMEM;
			goto out;
		}
	}
	if (a->to && json_object_set_new(body, "dest", json_string(a->to)) < 0)
		goto out;
	if (a->advertise && json_object_set_new(body, "advertise", json_string(a->advertise)) < 0)
		goto out;
	if (a->dest_images &&
	    json_object_set_new(body, "dest_images_dir", json_string(a->dest_images)) < 0)
		goto out;
	if (a->transport && json_object_set_new(body, "transport", json_string(a->transport)) < 0)
		goto out;
	if (a->secret_file) {
		v = cli_abs_path(a->secret_file);
		if (!v || json_object_set_new(body, "secret_file", v) < 0) {
			snprintf(errbuf, errlen, "cannot make %s absolute: %s", a->secret_file,
				 strerror(errno));
			ret = errno ? -errno : -ENOMEM;
			goto out;
		}
	}
	if (a->verify && json_object_set_new(body, "verify", json_true()) < 0)
		goto out;
	if (a->lazy_dump != API_LAZY_AUTO &&
	    json_object_set_new(body, "lazy_dump", json_boolean(a->lazy_dump == API_LAZY_YES)) < 0)
		goto out;
	if (a->no_queue && json_object_set_new(body, "queue", json_false()) < 0)
		goto out;
	if (a->precopy != API_PRECOPY_OFF &&
	    json_object_set_new(body, "precopy",
				a->precopy == API_PRECOPY_AUTO ? json_string("auto")
							       : json_integer(a->precopy)) < 0)
		goto out;
	if (a->criu_log_level >= 0) {
		v = json_pack("{s:i}", "log_level", a->criu_log_level);
		if (!v || json_object_set_new(body, "criu_opts", v) < 0)
			goto out;
	}
	*out = json_dumps(body, JSON_COMPACT);
	ret = *out ? 0 : -ENOMEM;
out:
	if (ret == -ENOMEM && errbuf[0] == '\0')
		snprintf(errbuf, errlen, "out of memory");
	json_decref(body);
	return ret;
}

/* Control characters and DEL become '?'; true when s had any. */
static bool cli_clean_text(char *s)
{
	bool dirty = false;

	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			*s = '?';
			dirty = true;
		}
	}
	return dirty;
}

const char *cli_error_message(int status, const char *reason, const char *body, char *buf,
			      size_t len)
{
	json_t *j = body ? json_loads(body, 0, NULL) : NULL;
	const char *msg = NULL;

	if (j && json_unpack(j, "{s:{s:s}}", "error", "message", &msg) == 0 && msg[0])
		snprintf(buf, len, "%s", msg);
	else
		snprintf(buf, len, "HTTP %d %s", status, reason && reason[0] ? reason : "error");
	json_decref(j);
	cli_clean_text(buf);
	return buf;
}

int cli_clean_json(json_t *j)
{
	char *s;
	int ret = 0;

	if (json_is_object(j)) {
		for (void *it = json_object_iter(j); it && ret == 0;
		     it = json_object_iter_next(j, it))
			ret = cli_clean_json(json_object_iter_value(it));
		return ret;
	}
	if (json_is_array(j)) {
		for (size_t i = 0; i < json_array_size(j) && ret == 0; i++)
			ret = cli_clean_json(json_array_get(j, i));
		return ret;
	}
	if (!json_is_string(j))
		return 0;
	s = strdup(json_string_value(j));
	if (!s)
		return -ENOMEM;
	if (cli_clean_text(s) && json_string_set(j, s) < 0)
		ret = -ENOMEM;
	free(s);
	return ret;
}

/* --- Reading resources ----------------------------------------------------- */

static const json_t *cli_get(const json_t *m, const char *group, const char *key)
{
	if (group)
		m = json_object_get(m, group);
	return m ? json_object_get(m, key) : NULL;
}

static const char *cli_str(const json_t *m, const char *group, const char *key)
{
	const char *s = json_string_value(cli_get(m, group, key));

	return s ? s : "-";
}

/* -1 for null or missing. */
static long long cli_int(const json_t *m, const char *group, const char *key)
{
	const json_t *v = cli_get(m, group, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static const char *cli_percent(const json_t *m, char *buf, size_t len)
{
	long long total = cli_int(m, "progress", "pages_total"),
		  done = cli_int(m, "progress", "pages_fetched");

	if (total <= 0 || done < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.1f%%", 100.0 * (double)done / (double)total);
	return buf;
}

static const char *cli_ms(long long ms, char *buf, size_t len)
{
	if (ms < 0)
		snprintf(buf, len, "-");
	else if (ms < 10000)
		snprintf(buf, len, "%lld ms", ms);
	else
		snprintf(buf, len, "%.1f s", (double)ms / 1000.0);
	return buf;
}

static const char *cli_us(long long us, char *buf, size_t len)
{
	if (us < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%lld us", us);
	return buf;
}

static const char *cli_bytes(long long b, char *buf, size_t len)
{
	if (b < 0)
		snprintf(buf, len, "-");
	else
		fmt_bytes((uint64_t)b, buf, len);
	return buf;
}

const char *cli_format_progress(const json_t *m, char *buf, size_t len)
{
	char pct[16], bytes[32], p50[24], p99[24], total[24];
	const char *err = json_string_value(json_object_get(m, "error"));
	const char *dest_state = json_string_value(json_object_get(m, "dest_state"));
	int n;

	n = snprintf(buf, len, "%s  %s  %s  %lld/%lld pages  %s  %lld faults  p50 %s  p99 %s  %s",
		     cli_str(m, NULL, "id"), cli_str(m, NULL, "state"),
		     cli_percent(m, pct, sizeof(pct)), cli_int(m, "progress", "pages_fetched"),
		     cli_int(m, "progress", "pages_total"),
		     cli_bytes(cli_int(m, "progress", "bytes"), bytes, sizeof(bytes)),
		     cli_int(m, "progress", "faults"),
		     cli_us(cli_int(m, "latency_us", "fault_p50"), p50, sizeof(p50)),
		     cli_us(cli_int(m, "latency_us", "fault_p99"), p99, sizeof(p99)),
		     cli_ms(cli_int(m, "times", "total_ms"), total, sizeof(total)));
	if (dest_state && n > 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, "  dest %s", dest_state);
	if (json_is_object(json_object_get(m, "queue")) && n > 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, "  queued: position %lld (%s)",
			      cli_int(m, "queue", "position"), cli_str(m, "queue", "reason"));
	if (err && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "  (%s)", err);
	return buf;
}

/*
 * The downtime when known; else, with only the dump's freeze known, that
 * as a lower bound (">=85 ms").
 */
static const char *cli_downtime(const json_t *m, char *buf, size_t len)
{
	long long down = cli_int(m, "times", "downtime_ms"),
		  freeze = cli_int(m, "times", "freeze_ms");
	char t[24];

	if (down >= 0)
		return cli_ms(down, buf, len);
	if (freeze < 0)
		return cli_ms(-1, buf, len);
	snprintf(buf, len, ">=%s", cli_ms(freeze, t, sizeof(t)));
	return buf;
}

void cli_print_table(FILE *f, const json_t *migrations)
{
	int idw = 2;
	size_t i;

	if (json_array_size(migrations) == 0) {
		fprintf(f, "no migrations\n");
		return;
	}
	for (i = 0; i < json_array_size(migrations); i++) {
		int l = (int)strlen(cli_str(json_array_get(migrations, i), NULL, "id"));

		if (l > idw)
			idw = l;
	}
	fprintf(f, "%-*s  %-6s  %-11s  %8s  %15s  %10s  %8s  %9s  %9s\n", idw, "ID", "ROLE",
		"STATE", "PROGRESS", "PAGES", "MOVED", "FAULTS", "DOWNTIME", "TOTAL");
	for (i = 0; i < json_array_size(migrations); i++) {
		const json_t *m = json_array_get(migrations, i);
		char pct[16], pages[48], bytes[32], down[24], total[24];

		snprintf(pages, sizeof(pages), "%lld/%lld", cli_int(m, "progress", "pages_fetched"),
			 cli_int(m, "progress", "pages_total"));
		fprintf(f, "%-*s  %-6s  %-11s  %8s  %15s  %10s  %8lld  %9s  %9s\n", idw,
			cli_str(m, NULL, "id"), cli_str(m, NULL, "role"), cli_str(m, NULL, "state"),
			cli_percent(m, pct, sizeof(pct)), pages,
			cli_bytes(cli_int(m, "progress", "bytes"), bytes, sizeof(bytes)),
			cli_int(m, "progress", "faults"), cli_downtime(m, down, sizeof(down)),
			cli_ms(cli_int(m, "times", "total_ms"), total, sizeof(total)));
	}
}

/* One line per pre-dump round, and the final dump's pages; nothing without pre-copy. */
static void cli_print_precopy(FILE *f, const json_t *pc)
{
	const json_t *rounds = json_object_get(pc, "rounds");
	const json_t *r;
	size_t i;

	if (!json_is_object(pc))
		return;
	json_array_foreach(rounds, i, r)
	{
		fprintf(f, "  round %zu:    %lld pages in %lld ms (%lld pages/s dirtied)\n", i + 1,
			(long long)json_integer_value(json_object_get(r, "pages")),
			(long long)json_integer_value(json_object_get(r, "ms")),
			(long long)json_integer_value(json_object_get(r, "dirty_pages_per_s")));
	}
	if (json_is_integer(json_object_get(pc, "final_pages")))
		fprintf(f, "  final dump: %lld pages dirtied since the last round\n",
			(long long)json_integer_value(json_object_get(pc, "final_pages")));
}

/* How often post-copy paused and for how long; a destination's takeovers. */
static void cli_print_pauses(FILE *f, const json_t *m)
{
	const json_t *p = json_object_get(m, "pause");
	const char *reason = json_string_value(json_object_get(p, "reason"));
	char t[24];

	if (!json_is_object(p))
		return; /* an agent older than pauses */
	fprintf(f, "  pauses:     %lld (%s in all)%s%s\n", cli_int(m, "pause", "count"),
		cli_ms(cli_int(m, "pause", "total_ms"), t, sizeof(t)),
		reason ? "; paused now: " : "", reason ? reason : "");
	if (json_is_integer(json_object_get(m, "takeovers")))
		fprintf(f, "  takeovers:  %lld (workers that took over from a dead one's guard)\n",
			cli_int(m, NULL, "takeovers"));
}

void cli_print_report(FILE *f, const json_t *m)
{
	char pct[16], bytes[32], p50[24], p99[24], down[24], total[24], t[24];
	const char *err = json_string_value(json_object_get(m, "error"));
	const char *dest_state = json_string_value(json_object_get(m, "dest_state"));
	bool source = strcmp(cli_str(m, NULL, "role"), "source") == 0;
	long long pid = cli_int(m, NULL, "pid");
	bool ctr = json_is_object(json_object_get(m, "container"));

	fprintf(f, "migration %s (%s): %s\n", cli_str(m, NULL, "id"), cli_str(m, NULL, "role"),
		cli_str(m, NULL, "state"));
	fprintf(f, "  transport:  %s%s%s\n", cli_str(m, NULL, "transport"),
		json_is_true(json_object_get(m, "verify")) ? ", pages verified" : "",
		json_is_true(json_object_get(m, "lazy_dump")) ? ", lazy dump" : "");
	fprintf(f, "  source:     %s\n", cli_str(m, NULL, "source"));
	if (dest_state)
		fprintf(f, "  dest:       %s (destination agent: %s)\n", cli_str(m, NULL, "dest"),
			dest_state);
	else
		fprintf(f, "  dest:       %s\n", cli_str(m, NULL, "dest"));
	if (pid > 0)
		fprintf(f, "  pid:        %lld\n", pid);
	if (ctr)
		fprintf(f, "  container:  %s (%s)\n", cli_str(m, "container", "id"),
			cli_str(m, "container", "runtime"));
	if (json_is_string(json_object_get(m, "images_dir")))
		fprintf(f, "  images:     %s\n", cli_str(m, NULL, "images_dir"));
	fprintf(f, "  pages:      %lld of %lld fetched, %lld remaining (%s)\n",
		cli_int(m, "progress", "pages_fetched"), cli_int(m, "progress", "pages_total"),
		cli_int(m, "progress", "pages_remaining"), cli_percent(m, pct, sizeof(pct)));
	fprintf(f, "  moved:      %s\n",
		cli_bytes(cli_int(m, "progress", "bytes"), bytes, sizeof(bytes)));
	fprintf(f, "  faults:     %lld (latency p50 %s, p99 %s)\n",
		cli_int(m, "progress", "faults"),
		cli_us(cli_int(m, "latency_us", "fault_p50"), p50, sizeof(p50)),
		cli_us(cli_int(m, "latency_us", "fault_p99"), p99, sizeof(p99)));
	fprintf(f, "  downtime:   %s%s\n", cli_downtime(m, down, sizeof(down)),
		cli_int(m, "times", "downtime_ms") >= 0 ? " (frozen on the source until running "
							  "on the destination)"
							: "");
	if (source)
		cli_print_precopy(f, json_object_get(m, "precopy"));
	if (source)
		fprintf(f, "  dump:       %s (%s; the workload is frozen from its start)\n",
			cli_ms(cli_int(m, "times", "freeze_ms"), t, sizeof(t)),
			ctr ? "runc checkpoint" : "criu dump");
	fprintf(f, "  restore:    %s (%s on the destination)\n",
		cli_ms(cli_int(m, "times", "restore_ms"), t, sizeof(t)),
		ctr ? "runc restore" : "criu restore");
	if (!source)
		fprintf(f, "  resumed:    %s after the destination took the migration\n",
			cli_ms(cli_int(m, "times", "resumed_ms"), t, sizeof(t)));
	cli_print_pauses(f, m);
	if (json_is_object(json_object_get(m, "queue")))
		fprintf(f, "  queue:      position %lld, waiting for %s since %s\n",
			cli_int(m, "queue", "position"), cli_str(m, "queue", "reason"),
			cli_str(m, "queue", "since"));
	fprintf(f, "  total:      %s\n",
		cli_ms(cli_int(m, "times", "total_ms"), total, sizeof(total)));
	fprintf(f, "  created:    %s\n", cli_str(m, "times", "created"));
	fprintf(f, "  finished:   %s\n", cli_str(m, "times", "finished"));
	if (err)
		fprintf(f, "  error:      %s\n", err);
}

void cli_print_health(FILE *f, const json_t *h)
{
	fprintf(f, "%s: %s agent %s, %lld migrations (%lld active)\n", cli_str(h, NULL, "status"),
		cli_str(h, NULL, "role"), cli_str(h, NULL, "version"),
		cli_int(h, NULL, "migrations"), cli_int(h, NULL, "active"));
}
