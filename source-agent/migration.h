/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * migration: the source's record of one migration it serves.
 *
 * A migration is an images directory, mapped (imgmap), and the secret the
 * destination must prove it knows.  The checkpoint stays mapped and on disk
 * until a destination reports Done with the right digest; a lost
 * destination leaves it untouched, so the workload can be restored on
 * either host, and a new destination connection may take over.
 *
 * Ownership: the list owns its migrations; a migration owns its imgmap and
 * secret.  Sessions borrow a migration while they serve it.
 */
#ifndef RDMIG_SRC_MIGRATION_H
#define RDMIG_SRC_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "auth.h"
#include "imgmap.h"

enum src_mig_state {
	SRC_MIG_READY,	 /* mapped, waiting for a destination */
	SRC_MIG_SERVING, /* a destination is authenticated and fetching */
	SRC_MIG_DONE,	 /* the destination has every page, verified */
	SRC_MIG_FAILED,
};

struct src_migration {
	LIST_ENTRY(src_migration) link;
	char id[AUTH_MIGRATION_ID_MAX + 1];
	char *dir;
	struct auth_secret *secret;
	struct imgmap *map;
	enum src_mig_state state;
	bool busy;	       /* a session holds it */
	uint64_t reads_served; /* TCP ReadReqs answered */
	uint64_t bytes_served; /* by ReadResp */
	uint64_t started_ns;
	uint64_t done_ns;
};

LIST_HEAD(src_mig_list, src_migration);

const char *src_mig_state_str(enum src_mig_state st);

/*
 * Maps dir and loads the secret file.  page_hashes: compute per-page
 * checksums so destinations can verify every page.
 */
int src_mig_create(const char *id, const char *dir, const char *secret_file, bool page_hashes,
		   struct src_migration **out);
void src_mig_destroy(struct src_migration *m);

struct src_migration *src_mig_find(struct src_mig_list *list, const char *id);
/* True when every migration in the list is done. */
bool src_mig_all_done(const struct src_mig_list *list);

#endif
