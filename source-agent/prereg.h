/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * prereg: a migration's checkpoint registered for RDMA READ before its
 * destination connects (issue 10 item 1; design.md §5).
 *
 * Registering the pages files pins every page and costs seconds per
 * hundred MiB under soft-RoCE; done after the destination authenticated it
 * sat inside the workload's freeze.  Once the images are mapped, the source
 * makes a protection domain for the migration on the device of its RDMA
 * listen address (or uses the one src_prereg_open() made before the dump,
 * for a destination that connects during it: design.md §10.3) and
 * registers the pages files there (REMOTE_READ only) on
 * its offload thread, while the handover's POST, the destination worker's
 * start and the RDMA connection go on.  A destination's connection that
 * names the migration (connhint.h) gets its queue pairs in that PD, with
 * remote access off until it has authenticated (rdma.h); then the session
 * takes the registered regions (src_prereg_take()) and only the tables go
 * out.  The regions serve one session: any later one (a reconnect, another
 * destination) registers afresh, in its connection's PD, through
 * src_prereg_register() like the first one would have, so its rkeys are
 * new.  No rkey or address leaves before the peer authenticated.
 *
 * With pre-copy (design.md §13) most pages are in rounds written while the
 * workload still ran, so each round's pages files are mapped, and over
 * RDMA registered in the migration's PD, on the offload thread as soon as
 * the round ends (src_prereg_round()), while the next round or the
 * workload runs; the final dump starts once they are.  When the final
 * dump's chain is mapped, src_prereg_rounds_settle() keeps the regions of
 * the rounds' files the chain still reads (same path, same file as mapped
 * then: a file changed since its round fails the migration, -ESTALE) and
 * releases those of rounds whose pages later rounds all wrote again;
 * src_prereg_start() then registers only the rest, in practice the final dump's own pages file:
 * the only registration left in the freeze.  A region registered over a
 * round's mapping has its own addresses: the session advertises each
 * region's ibv_mr.addr, not the map's mapping of the same file.
 *
 * Ownership: the migration owns its prereg (src_migration.prereg) and
 * drops it (src_prereg_drop()) when it ends; a session owns the regions it
 * took.  Everything here runs on the loop thread except the registration
 * itself, which runs on the offload thread on copies.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_PREREG_H
#define RDMIG_SRC_PREREG_H

#include <event2/event.h>
#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stddef.h>

#include "ctrl.h"
#include "imgmap.h"
#include "offload.h"
#include "rdma.h"

struct src_migration;

/*
 * Registers each of the n files' mappings in pd, REMOTE_READ only, into
 * mrs[i] (NULL for an empty file); on failure deregisters what it did.
 * Any thread.  The one registration of a checkpoint, early or not.
 */
int src_prereg_register(const struct imgmap_file *files, size_t n, struct ibv_pd *pd,
			struct ibv_mr **mrs);
/* Deregisters mrs[0..n) (NULLs skipped), logging failures with who. */
void src_prereg_deregister(struct ibv_mr **mrs, size_t n, const char *who);

typedef void (*src_prereg_done_fn)(struct src_migration *m, int ret);

/*
 * Starts registering m's mapped pages files in m's PD (made on verbs if
 * no round made it), on o, all but those whose rounds registered them
 * already; done(m, ret) follows on the loop unless m drops it first.
 * -EINVAL: m has no pages file to register (a lazy dump's, or no lazy
 * page).
 */
int src_prereg_start(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
		     src_prereg_done_fn done);
/* Chunks a staging area is registered in, at most: one bit each in a uint64_t. */
#define SRC_PREREG_AREA_CHUNKS_MAX 64u
/* The smallest chunk: about 0.05 s to fault in and register in the guests. */
#define SRC_PREREG_AREA_CHUNK_MIN (2u << 20)

/* Chunk idx of m's staging area is registered (src_prereg_area_find() finds it now). */
typedef void (*src_prereg_chunk_fn)(struct src_migration *m, unsigned int idx);

/* A staging area to register (src_prereg_start_area()). */
struct src_prereg_area_spec {
	void *base; /* lazydump.h src_lazydump_area(): mapped, not filled yet */
	size_t len;
	size_t overlap; /* the largest unit */
	/*
	 * Testing (rdmig-source --test-prereg-delay): the first chunk waits
	 * this long, on evbase's timer so that the offload thread stays free;
	 * 0 otherwise.
	 */
	unsigned int delay_ms;
	struct event_base *evbase;
	src_prereg_done_fn done;
	src_prereg_chunk_fn chunk;
};

/*
 * A lazy dump's staging area registered the same way, in chunks of at
 * least SRC_PREREG_AREA_CHUNK_MIN, one after the other on o: the
 * registration, which pins and clears every page of it, leaves the freeze
 * too, and a destination reads the units of a chunk as soon as that chunk
 * is in rather than after the whole area (seconds at hundreds of MiB on
 * soft-RoCE).  Chunk i's region is [i * chunk, (i + 1) * chunk + overlap)
 * of the area, so a unit of at most overlap bytes that starts in chunk i
 * lies in its region whole.  chunk(m, i) follows each chunk but the last;
 * done(m, ret) follows the last, or the first failure (the chunks
 * registered before it stay readable until src_prereg_drop()).  The area
 * must stay mapped until every region is deregistered (src_prereg_drop(),
 * or the session that took them).
 */
int src_prereg_start_area(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
			  const struct src_prereg_area_spec *spec);
/*
 * While m's staging area is registered: the chunk whose region holds
 * [addr, +len) of the area, if that chunk is registered in pd: 0 with its
 * index and region (still prereg's: valid until src_prereg_drop() or
 * src_prereg_take()).  -EAGAIN while it is not, and then with want the
 * chunk is registered next (a destination waits for a unit in it).
 * -ENOENT: no such area or chunk, another PD, or a failed registration.
 */
int src_prereg_area_find(struct src_migration *m, const struct ibv_pd *pd, const void *addr,
			 size_t len, bool want, unsigned int *idx, struct ibv_mr **mr);

typedef void (*src_prereg_round_fn)(struct src_migration *m, int ret);

/*
 * Maps every pages file of m's pre-dump round in dir on o and, with verbs
 * (NULL: TCP, mapped only), registers them REMOTE_READ in m's PD, made on
 * the first round; done(m, ret) follows on the loop unless m drops it
 * first.  ret < 0: the round's files cannot be mapped (logged; also kept
 * for src_prereg_rounds_check()).  A failed registration is only logged:
 * those files are registered with the final dump's.  hash: also the XXH3
 * of each registered file, on o, for a destination that copies the round
 * ahead (FEAT_ROUNDS, below).
 */
int src_prereg_round(struct src_migration *m, struct offload *o, struct ibv_context *verbs,
		     const char *dir, uint32_t round, bool hash, src_prereg_round_fn done);

/*
 * A round's registered pages file as a held early destination hears of it
 * (RoundPages): its region (g.has_xxh3 always) and round.  gone: released
 * as superseded before the final dump; not to be announced any more.
 */
struct src_round_region {
	struct ctrl_region g;
	uint32_t round;
	bool gone;
};

/*
 * The hashed round regions so far, in round order (entries are only ever
 * appended: a session counts how many it sent), and entry i, or NULL.
 */
size_t src_prereg_round_regions(const struct src_migration *m);
const struct src_round_region *src_prereg_round_region(const struct src_migration *m, size_t i);
/*
 * mr, a region of the final mapping of len bytes registered by any
 * session (the first, or a resumed one with its own rkey), maps a round's
 * file the destination may hold a copy of: its XXH3 into *xxh3.
 */
/*
 * Where f's pages file is mapped by its pre-copy round, when f (a file of
 * the final mapping) is a round's file still in the chain; NULL otherwise.
 * A session that registers the checkpoint itself (a resumed one, in its
 * own PD) registers that mapping, so that its regions keep the addresses
 * the destination's copies were announced at.  Owned by prereg.
 */
void *src_prereg_round_base(const struct src_migration *m, const struct imgmap_file *f);
bool src_prereg_region_xxh3(const struct src_migration *m, const struct ibv_mr *mr, size_t len,
			    uint64_t *xxh3);
/* A round's mapping still running. */
bool src_prereg_rounds_pending(const struct src_migration *m);
/*
 * 0 when every round mapped so far could be, and each of its files is
 * still the file mapped then (imgmap_file_changed()); otherwise the error
 * (-ESTALE for a change), and why, naming the file.
 */
int src_prereg_rounds_check(const struct src_migration *m, char *why, size_t len);

/*
 * Once m's chain is mapped (m->map): src_prereg_rounds_check(), then the
 * rounds' files are matched to the map's (imgmap_match()): the regions of
 * those it reads wait for src_prereg_start(), those it no longer reads
 * (superseded) are released on o.  -ESTALE with why when a file changed.
 */
int src_prereg_rounds_settle(struct src_migration *m, struct offload *o, char *why, size_t len);

/*
 * Opens m's PD on verbs before its checkpoint exists, so that a destination
 * connecting during the dump (FEAT_EARLY, design.md §10.3) gets its queue
 * pairs there and src_prereg_start() later registers in it.  -EALREADY: m
 * has one.
 */
int src_prereg_open(struct src_migration *m, struct ibv_context *verbs);
/* Registration still running (or, for a staging area, held: --test-prereg-delay). */
bool src_prereg_pending(const struct src_migration *m);
/* The PD for a connection that names m, or NULL. */
struct rdma_pd *src_prereg_pd(const struct src_migration *m);
/*
 * The registered regions (one per m->map file, or one per chunk of a lazy
 * dump's area, in chunk order) if they are in pd and no session took them
 * yet: the caller owns *mrs (n entries) from then.  -ENOENT otherwise.
 */
int src_prereg_take(struct src_migration *m, const struct ibv_pd *pd, struct ibv_mr ***mrs,
		    size_t *n);
/* Deregisters what no session took and releases the PD; m->prereg is NULL after. */
void src_prereg_drop(struct src_migration *m);

#endif
