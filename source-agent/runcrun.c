// SPDX-License-Identifier: GPL-2.0-or-later
#include "runcrun.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* Linux's PID_MAX_LIMIT. */
#define RUNC_PID_MAX 4194304

/* What runc cannot pass on to criu; NULL when everything can go. */
static const char *runc_unsupported(const struct src_criu_opts *o)
{
	if (o->link_remap)
		return "criu_opts.link_remap (runc has no such option)";
	if (strcmp(o->manage_cgroups, "ignore") == 0)
		return "criu_opts.manage_cgroups \"ignore\" (runc takes soft, full or strict)";
	if (o->log_level >= 0)
		return "criu_opts.log_level (runc sets criu's log level itself)";
	return NULL;
}

int src_runc_argv_build(struct src_criu_argv *av, const char *runc, enum src_runc_verb verb,
			const char *root, const char *id, const char *dir, const char *bundle,
			const struct src_criu_opts *o, const char **why)
{
	int ret = 0;

	memset(av, 0, sizeof(*av));
	*why = runc_unsupported(o);
	if (*why)
		return -EINVAL;
	if (verb == SRC_RUNC_RESTORE && !bundle) {
		*why = "the container's bundle (the restore needs it)";
		return -EINVAL;
	}
	ret |= src_criu_argv_add(av, runc);
	if (root) {
		ret |= src_criu_argv_add(av, "--root");
		ret |= src_criu_argv_add(av, root);
	}
	ret |= src_criu_argv_add(av, verb == SRC_RUNC_CHECKPOINT ? "checkpoint" : "restore");
	ret |= src_criu_argv_add(av, "--image-path");
	ret |= src_criu_argv_add(av, dir);
	ret |= src_criu_argv_add(av, "--work-path");
	ret |= src_criu_argv_add(av, dir);
	if (verb == SRC_RUNC_RESTORE) {
		ret |= src_criu_argv_add(av, "--bundle");
		ret |= src_criu_argv_add(av, bundle);
		ret |= src_criu_argv_add(av, "-d");
	}
	ret |= src_criu_argv_flags(av, o);
	if (o->manage_cgroups[0]) {
		ret |= src_criu_argv_add(av, "--manage-cgroups-mode");
		ret |= src_criu_argv_add(av, o->manage_cgroups);
	}
	if (verb == SRC_RUNC_CHECKPOINT && o->leave_running)
		ret |= src_criu_argv_add(av, "--leave-running");
	ret |= src_criu_argv_add(av, id);
	return ret ? -E2BIG : 0;
}

int src_runc_state_parse(const char *json, size_t len, pid_t *pid, char *bundle, size_t blen)
{
	json_t *root = json_loadb(json, len, 0, NULL), *labels, *v;
	const char *b = NULL;
	json_int_t p;
	size_t i;
	int ret = -EINVAL;

	*pid = 0;
	if (blen)
		bundle[0] = '\0';
	if (!json_is_object(root))
		goto out;
	v = json_object_get(root, "init_process_pid");
	p = json_is_integer(v) ? json_integer_value(v) : 0;
	if (p < 1 || p > RUNC_PID_MAX)
		goto out;
	labels = json_object_get(json_object_get(root, "config"), "labels");
	json_array_foreach(labels, i, v)
	{
		const char *s = json_string_value(v);

		if (s && strncmp(s, "bundle=", 7) == 0)
			b = s + 7;
	}
	if (!b || b[0] != '/')
		goto out;
	if ((size_t)snprintf(bundle, blen, "%s", b) >= blen) {
		ret = -ENAMETOOLONG;
		goto out;
	}
	*pid = (pid_t)p;
	ret = 0;
out:
	json_decref(root);
	return ret;
}
