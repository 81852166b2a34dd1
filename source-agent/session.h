/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * session: one destination connection on the source.
 *
 * A session authenticates the destination for one migration (HMAC proof of
 * the per-migration secret, docs/protocol.md), and only then takes the
 * checkpoint's pages files registered before it connected (prereg.h) or
 * registers them in the connection's protection domain (REMOTE_READ only),
 * sends their rkeys, streams the image files (lazy ranges as holes), the
 * range tables with remote addresses and rkeys, and the page checksums.
 * Over TCP it answers ReadReqs from the mapped files.  On Done with the
 * right digest it marks the migration done and deregisters everything.
 *
 * A session that fails or loses its peer deregisters its memory and ends;
 * the migration and its checkpoint stay, ready for another destination.
 */
#ifndef RDMIG_SRC_SESSION_H
#define RDMIG_SRC_SESSION_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "agent.h"
#include "migration.h"
#include "xport.h"

struct src_session;

/*
 * Takes ownership of x (an accepted connection), or refuses it with -EBUSY
 * when it would pass max_preauth or max_preauth_per_addr (the caller
 * closes it at once).
 */
int src_session_start(struct src_agent *a, struct xport *x);
/*
 * Ends the session that serves m, sending Abort(CANCELLED) with reason;
 * sessions still authenticating for m forget it (their proof will fail
 * like any other, nothing is said before).  Before m is destroyed.
 */
void src_session_cancel(struct src_agent *a, const struct src_migration *m, const char *reason);
/* The same with another Abort code (a lazy dump's page server failing: ABORT_READ). */
void src_session_cancel_code(struct src_agent *a, const struct src_migration *m, uint32_t code,
			     const char *reason);
/*
 * A lazy dump's unit u of m is staged: announced (StageRegion) to the
 * session serving m, once its tables are out.
 */
struct lazystage_unit;
void src_session_staged(struct src_agent *a, const struct src_migration *m,
			const struct lazystage_unit *u);
/*
 * m's checkpoint registration ahead of the destination ended (prereg.h):
 * the session that authenticated meanwhile, if any, starts serving.
 */
void src_session_prereg_done(struct src_agent *a, const struct src_migration *m);
/*
 * A pre-copy round of m was registered and hashed: a destination held
 * early with FEAT_ROUNDS hears of it (RoundPages) and copies it ahead.
 */
void src_session_rounds(struct src_agent *a, const struct src_migration *m);
/*
 * A held destination still copies rounds announced to it (no RoundsCopied
 * for the last one yet): the final dump may wait for it, the workload
 * running (api_glue.c).
 */
bool src_session_rounds_copying(const struct src_agent *a, const struct src_migration *m);
/*
 * Asks such a destination to stop copying (RoundsStop): its RoundsCopied
 * then says no READ of a round is in flight, so the final mapping may
 * release a superseded round's registration.
 */
void src_session_rounds_stop(struct src_agent *a, const struct src_migration *m);
/*
 * Chunk idx of m's staging area is registered while the rest is not
 * (prereg.h): its staged units go to the session serving m.
 */
void src_session_area_chunk(struct src_agent *a, struct src_migration *m, unsigned int idx);
/*
 * Whether the session that authenticated for m before its freeze still
 * registers a lazy dump's first units' region (the dump waits for it).
 */
bool src_session_early_pending(struct src_agent *a, const struct src_migration *m);
/*
 * m's checkpoint is mapped and serves: a destination that authenticated
 * while it was being made (FEAT_EARLY) gets the images now.
 */
void src_session_served(struct src_agent *a, const struct src_migration *m);
/*
 * The data listener's rdma_pd_cb: the PD where the migration named in a
 * connect request (connhint.h) is registered, or NULL.  arg: the agent.
 */
struct rdma_pd *src_session_conn_pd(struct ibv_context *verbs, const void *data, size_t len,
				    void *arg);
/* Ends every session (agent shutdown). */
void src_session_close_all(struct src_agent *a);

#endif
