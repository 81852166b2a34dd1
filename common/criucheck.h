/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * criucheck: one `criu check` an agent runs from its loop when it starts,
 * so that criu's probe of the running kernel is made before a workload is
 * frozen, not inside the first dump's or restore's freeze.
 *
 * Every criu command first probes the kernel's features (namespaces,
 * veth, vDSO, ptrace, ...) unless it finds the result cached by an earlier
 * run in /run/criu.kdat, which criu writes when /run is a tmpfs and which
 * a reboot clears.  In the one-vCPU soft-RoCE guests the probe took 0.8 s
 * of the first dump's freeze and 1.8 s of the first restore's
 * (docs/performance.md, "criu's kernel probe"); on a real host it is less,
 * but it is paid by a frozen workload all the same.  The check is never
 * waited for: a migration that comes first runs its criu beside it.
 *
 * Threading: the loop's thread.  Ownership: the caller owns *out from
 * criucheck_start() and frees it with criucheck_free() before the event
 * base; a check still running then is killed.
 */
#ifndef RDMIG_CRIUCHECK_H
#define RDMIG_CRIUCHECK_H

struct event_base;
struct criucheck;

/* Where criu run as root keeps its probe (criu's kerndat.c: KDAT_RUNDIR). */
#define CRIUCHECK_KDAT_PATH "/run/criu.kdat"

/*
 * Starts `criu check -o log_path` (criu: a path or a name looked up in
 * PATH) unless kdat_path exists already; its end is logged (info when it
 * passed, warn with criu's last error when not: a dump or restore may
 * still work, so the agent goes on).  *out is NULL when nothing was
 * started.  Returns 0, or a negative errno when criu could not be started
 * (logged; nothing to free).
 */
int criucheck_start(struct event_base *base, const char *criu, const char *log_path,
		    const char *kdat_path, struct criucheck **out);

/* Kills a check still running, reaps it and frees.  NULL is fine. */
void criucheck_free(struct criucheck *c);

#endif
