// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * criucheck: criu's kernel probe made when an agent starts (see criucheck.h).
 */
#include "criucheck.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "criuproc.h"
#include "log.h"

struct criucheck {
	struct criuproc *proc;
	char log_path[4096];
};

static void criucheck_exited(void *arg, const struct criuproc_exit *e)
{
	struct criucheck *c = arg;
	unsigned int ms = (unsigned int)(e->elapsed_ns / 1000000);

	if (e->ok) {
		log_info("criu check passed in %u ms: criu's probe of this kernel is made "
			 "before any workload is frozen",
			 ms);
		return;
	}
	if (e->signal)
		log_warn("criu check killed by signal %d after %u ms (log %s)", e->signal, ms,
			 c->log_path);
	else
		log_warn("criu check failed (exit status %d) after %u ms: %s (log %s); dumps and "
			 "restores are still tried and may pay for criu's probe of this kernel",
			 e->status, ms, e->log_tail[0] ? e->log_tail : "no error line in its log",
			 c->log_path);
}

int criucheck_start(struct event_base *base, const char *criu, const char *log_path,
		    const char *kdat_path, struct criucheck **out)
{
	struct criuproc_spec spec = {
	    .what = "criu check",
	    .flags =
		CRIUPROC_STDOUT_NULL | CRIUPROC_CLOSE_FDS | CRIUPROC_TAIL_BARE | CRIUPROC_TAIL_ANY,
	};
	struct criucheck *c;
	char verb[] = "check", opt[] = "-o";
	char *argv[5];
	int ret;

	*out = NULL;
	if (kdat_path && access(kdat_path, F_OK) == 0) {
		log_info("criu's probe of this kernel is cached (%s): no criu check", kdat_path);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(c->log_path, sizeof(c->log_path), "%s", log_path);
	argv[0] = (char *)criu;
	argv[1] = verb;
	argv[2] = opt;
	argv[3] = c->log_path;
	argv[4] = NULL;
	spec.argv = argv;
	spec.log_path = c->log_path;

	ret = criuproc_spawn(base, &spec, criucheck_exited, c, &c->proc);
	if (ret < 0) {
		free(c);
		return ret;
	}
	log_info("criu check started (pid %d), so that the first dump or restore finds criu's "
		 "probe of this kernel made",
		 (int)criuproc_pid(c->proc));
	*out = c;
	return 0;
}

void criucheck_free(struct criucheck *c)
{
	if (!c)
		return;
	if (criuproc_running(c->proc))
		criuproc_kill(c->proc);
	criuproc_free(c->proc);
	free(c);
}
