/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * runcrun: the runc commands of the source agent for a container
 * migration (design.md §12): the checkpoint, the rollback's restore, and
 * what runc's state file says of a container (its init's pid, its bundle).
 *
 * The command lines follow runc 1.1.5 (Debian bookworm) as
 * test/rxe/lib/runc-migrate.sh drives it: `runc [--root R] checkpoint
 * --image-path DIR --work-path DIR ... ID`, and `runc [--root R] restore
 * --image-path DIR --work-path DIR --bundle B -d ... ID`.  With the work
 * path the images directory, runc has criu write dump.log / restore.log
 * there, where common/criuproc.h reads a failure's last error line, as for
 * criu run directly.  The commands run through src_criu_start().
 *
 * The state parser is pure (no I/O): the caller reads
 * <root>/<id>/state.json off the loop (offload thread), as the root may
 * sit on a slow mount.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_RUNCRUN_H
#define RDMIG_SRC_RUNCRUN_H

#include <stddef.h>
#include <sys/types.h>

#include "criurun.h"

/* runc's state root when none is given (runc's default for root). */
#define SRC_RUNC_ROOT_DEFAULT "/run/runc"

enum src_runc_verb {
	SRC_RUNC_CHECKPOINT, /* runc checkpoint: the container stops (as criu dump) */
	SRC_RUNC_RESTORE,    /* runc restore -d: the rollback, on this host */
};

/*
 * Builds av for verb on container id.  root NULL: runc's default.  dir is
 * both --image-path and --work-path.  bundle: the restore's --bundle
 * (required there, ignored for a checkpoint).  The criu options runc has
 * no flag for (link_remap, manage_cgroups "ignore", a log level) are
 * refused: -EINVAL with *why naming the option, never dropped silently.
 * Every string must outlive av.
 */
int src_runc_argv_build(struct src_criu_argv *av, const char *runc, enum src_runc_verb verb,
			const char *root, const char *id, const char *dir, const char *bundle,
			const struct src_criu_opts *o, const char **why);

/*
 * From the text of a runc state.json (len bytes, not NUL-terminated):
 * the container's init pid (init_process_pid) and its bundle (the
 * "bundle=" label runc records), copied into bundle (blen bytes).
 * -EINVAL: not runc's state, or a field missing or out of range;
 * -ENAMETOOLONG: the bundle does not fit.
 */
int src_runc_state_parse(const char *json, size_t len, pid_t *pid, char *bundle, size_t blen);

#endif
