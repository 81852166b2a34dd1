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
 * The state parser is pure (no I/O).  src_runc_state_read() opens
 * <root>/<id>/state.json only beneath a root the operator allowed
 * (rdmig-source --runtime-root), the way common/safepath.h opens what a
 * request names: no "..", no symbolic link, trusted directories, a
 * regular file.  It blocks on a hung root, so it runs off the loop.
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

/* Bytes of a runc state.json the agent reads at most. */
#define SRC_RUNC_STATE_MAX (1u << 20)

/*
 * rdmig-source --runtime-root (repeatable; none given: /run/runc): the
 * runc roots a request's container.root may name, as given (absolute,
 * without ".", ".." or empty components: src_runc_root_valid()).
 * Parsed configuration, never changed once the agent runs.
 */
#define SRC_RUNC_ROOTS_MAX 8
struct src_runc_roots {
	const char *dirs[SRC_RUNC_ROOTS_MAX];
	unsigned int n;
};

/* 0 when dir can be a --runtime-root (absolute, canonical as written); else -EINVAL. */
int src_runc_root_valid(const char *dir);

/*
 * The allowed root a request's container.root lies in: root itself one
 * of r's or below one (lexically, as written), *i its index and *rel the
 * part below it ("" for the root itself).  root NULL: the first one.
 * -EACCES when it lies in none, or has ".", ".." or empty components.
 * No I/O.
 */
int src_runc_root_pick(const struct src_runc_roots *r, const char *root, unsigned int *i,
		       const char **rel);

/*
 * What <allowed>/<rel>/<id>/state.json says (src_runc_state_parse()),
 * opened beneath the directory allowed (an allowed root as configured):
 * every directory from it down to the container's trusted
 * (safepath_check_trusted()), no symbolic link on the way, state.json a
 * regular file, root's (or ours), not group/other-writable, at most
 * SRC_RUNC_STATE_MAX bytes.  -ENOENT: no such container there (or no
 * such root); -ELOOP, -EPERM, -EACCES, -EXDEV: refused (*why says why);
 * -EBADF: not a regular file; -EINVAL from the parser.  Blocks on a hung
 * root: call it off the loop.
 */
int src_runc_state_read(const char *allowed, const char *rel, const char *id, pid_t *pid,
			char *bundle, size_t blen, const char **why);

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
