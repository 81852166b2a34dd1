/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * records: the source agent's migrations, kept on disk so that a restarted
 * rdmig-source knows them again (docs/design.md, "Records").
 *
 * Every migration started through the API has a record,
 * <images-root>/.records/<id>.json (mode 0600, in a 0700 directory the
 * agent makes beneath the root's fd), rewritten at each of its state
 * changes: a temporary file, fsync, rename, fsync of the directory, so a
 * crash leaves the old record or the new one, never a torn one.  While the
 * migration is not final its secret is kept beside it, <id>.secret (0600):
 * the checkpoint it guards is in the same root-only tree, and a
 * destination that reconnects after the restart must still prove it.  A
 * final migration's secret file is removed with its secret.
 *
 * The writes block the loop for an fsync: a state change is rare (a
 * handful per migration) and its record must be on disk before the agent
 * acts on the new state (a rollback's criu restore, say).
 *
 * Ownership: src_records_open() returns a handle the agent owns; a
 * migration borrows it.  src_records_load() hands out records the callee
 * borrows for the call.  Threading: the event loop's thread only.
 */
#ifndef RDMIG_SRC_RECORDS_H
#define RDMIG_SRC_RECORDS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth.h"
#include "criurun.h"
#include "migration.h"

struct src_records;

/* A migration as its record has it. */
struct src_record {
	char id[AUTH_MIGRATION_ID_MAX + 1];
	enum src_mig_state state;
	const char *dir;  /* images directory */
	const char *dest; /* the destination agent's "host:port", or NULL */
	const char *peer; /* the last authenticated destination, or "" */
	const char *error;
	pid_t pid;
	struct src_container ctr; /* id "": not a container ("container" null or absent) */
	bool images_complete;
	bool verify;
	bool restore_interrupted;
	struct src_criu_opts criu;
	int64_t created_unix_ms;
	int64_t finished_unix_ms;
	int64_t freeze_ms;
	int64_t handover_ms;
	uint64_t lazy_bytes;
	uint64_t digest; /* 0: never mapped */
	/*
	 * A lazy dump ("lazy_dump", optional: absent or null is a plain dump):
	 * its tree's root start time and its page server's loopback port.
	 */
	bool lazy_dump;
	uint64_t lazy_tree_start;
	int lazy_port;
	/* Pre-copy ("precopy", optional: absent or null is off, as before it was kept). */
	int precopy;
	struct api_precopy_round rounds[API_PRECOPY_MAX];
	size_t nr_rounds;
	int64_t final_pages;
	/*
	 * Its pauses (optional, 0 when absent: older records): how many, the
	 * ended ones' time, and the wall-clock start of one going on (0: none).
	 */
	uint32_t pauses;
	int64_t paused_ms;
	int64_t pause_since_unix_ms;
	/* Its secret, when the record has one (not final); the callee may take it (NULL it). */
	struct auth_secret *secret;
};

/*
 * Opens (making it, 0700, when missing) the records directory beneath
 * root_fd, the images root whose resolved path is root_path; it must be
 * trusted (root's, not group/other-writable).  Caller owns *out.
 */
int src_records_open(int root_fd, const char *root_path, struct src_records **out);
void src_records_close(struct src_records *r);

/*
 * Writes m's record (and, m not final, its secret once); on a final m
 * removes the secret file.  Logs and returns a negative errno on failure:
 * the migration goes on, only its record is stale.
 */
int src_records_save(struct src_records *r, const struct src_migration *m);

/* Removes id's record and secret (the agent forgot the migration). */
void src_records_forget(struct src_records *r, const char *id);

/*
 * Calls fn for every readable record, in no particular order; a record
 * that cannot be read or parsed is logged, named by its file, and
 * skipped (left in place for the operator).  Returns the number of
 * records skipped, or a negative errno when the directory cannot be read.
 */
typedef void (*src_records_fn)(void *arg, struct src_record *rec);
int src_records_load(struct src_records *r, src_records_fn fn, void *arg);

/* The records directory's path, for messages. */
const char *src_records_path(const struct src_records *r);

#endif
