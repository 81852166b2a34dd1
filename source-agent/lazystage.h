/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lazystage: the staging area of a lazy-dump migration (design.md §11).
 *
 * The lazy pages of `criu dump --lazy-pages` exist only in the frozen
 * dump's page server.  lazystage cuts the images' lazy ranges into units
 * of at most LAZYSTAGE_UNIT bytes (never across a lazy range, so never
 * across a VMA), allocates one anonymous area of their total size (the
 * caller registers it for REMOTE_READ: lazystage_area()), and fills it
 * from the page server through criupsrv: units in table order, at most
 * LAZYSTAGE_WINDOW of them asked for at a time; a unit a destination
 * fault waits for (lazystage_want()) overtakes them all but the few
 * criupsrv already sent (CRIUPSRV_MAX_INFLIGHT).
 * Each unit, once all its pages are in, gets its XXH3-64 (and its page
 * tags, with a page key) and is reported
 * through staged(); the destination may READ it from then on, not before.
 *
 * Event loop: everything on the caller's loop (criupsrv is non-blocking);
 * callbacks never run from inside a lazystage_*() call.  staged() may call
 * lazystage_want() and lazystage_close(); failed() and closed() may free.
 *
 * Ownership: lazystage_open() keeps a pointer to set, which must outlive
 * the stage; the units, and the area unless the caller lent it, are the
 * stage's, valid until lazystage_free() (deregister the area before).
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_LAZYSTAGE_H
#define RDMIG_SRC_LAZYSTAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "criupsrv.h"
#include "ctrl.h"
#include "image.h"

struct event_base;
struct lazystage;

/* Largest unit: one TaskTable range under FEAT_LAZY_DUMP (protocol.md §11.2). */
#define LAZYSTAGE_UNIT	     CTRL_STAGE_UNIT
#define LAZYSTAGE_UNIT_PAGES (LAZYSTAGE_UNIT / IMG_PAGE_SIZE)
/* Units asked for at once by the background pull (16 MiB). */
#define LAZYSTAGE_WINDOW 64u

enum lazystage_state {
	LAZYSTAGE_NOT_ASKED = 0,
	LAZYSTAGE_ASKED,
	LAZYSTAGE_STAGED,
};

struct lazystage_unit {
	int32_t pid;
	uint64_t img_vaddr;
	uint64_t len;
	uint64_t area_off; /* where its bytes are in the area */
	uint64_t csum;	   /* XXH3-64, once staged */
	uint64_t *tags;	   /* with a page key: len / IMG_PAGE_SIZE page tags, once staged */
	enum lazystage_state state;
	bool wanted; /* asked for by a fault, ahead of the pull */
	struct criupsrv_req req;
};

struct lazystage_ops {
	/* u's pages are in the area at u->area_off; u->csum is set. */
	void (*staged)(struct lazystage *ls, const struct lazystage_unit *u, void *arg);
	/* The page server failed (criupsrv's error); no unit is staged after it. */
	void (*failed)(struct lazystage *ls, int err, void *arg);
	/* lazystage_close() ended the dump's session; status is its int32 or -errno. */
	void (*closed)(struct lazystage *ls, int status, void *arg);
};

/* The area's length for set: the sum of its lazy ranges. */
uint64_t lazystage_area_len(const struct img_set *set);

/*
 * Builds the units of set's lazy ranges and the area, and connects to the
 * dump's page server at host:port (numeric).  The pull starts at once.
 * area: NULL, the stage maps its own; else lazystage_area_len(set) bytes
 * of anonymous memory the caller mapped (and registered, maybe) before,
 * which stays the caller's to unmap after lazystage_free().
 * page_key: NULL, or the migration's MSGAUTH_PAGE_KEY_LEN-byte page key
 * (copied): each staged unit then has its page tags (u->tags).
 */
int lazystage_open(struct event_base *base, const struct img_set *set, void *area,
		   const uint8_t *page_key, const char *host, const char *port,
		   const struct lazystage_ops *ops, void *arg, struct lazystage **out);

/*
 * The same over an already connected socket fd (owned by the stage from
 * the call on, even on failure); for tests.
 */
int lazystage_open_fd(struct event_base *base, const struct img_set *set, void *area,
		      const uint8_t *page_key, int fd, const struct lazystage_ops *ops, void *arg,
		      struct lazystage **out);

/*
 * The same, read from the dumped tree itself instead of a page server: the
 * dump's criu is gone, its tasks stay stopped with their memory (a restart
 * of rdmig-source, design.md §11).  host_pids[i] is set->tasks[i]'s pid in
 * the agent's namespace (0: none, for a task without lazy ranges).  Units
 * are read with process_vm_readv(), a few a pass of the loop, wanted ones
 * first; one no longer mapped there fails the stage.  closed() gets 0.
 */
int lazystage_open_proc(struct event_base *base, const struct img_set *set, void *area,
			const uint8_t *page_key, const pid_t *host_pids,
			const struct lazystage_ops *ops, void *arg, struct lazystage **out);

/* The area to register: base and length (0 when nothing is lazy). */
void lazystage_area(const struct lazystage *ls, void **base, size_t *len);

/* Units in table order: tasks in images order, addresses ascending. */
const struct lazystage_unit *lazystage_units(const struct lazystage *ls, size_t *n);

/*
 * The unit of pid that starts at img_vaddr, or NULL (not a unit start:
 * the destination only names units from the tables).
 */
const struct lazystage_unit *lazystage_find(const struct lazystage *ls, int32_t pid,
					    uint64_t img_vaddr);

/*
 * The staged bytes of [img_vaddr, +len) of pid, which must lie inside one
 * unit: 0 with *data in the area, -EAGAIN when that unit is not staged
 * yet, -ERANGE when the span is not inside one unit.  data may be NULL
 * (a check only: then an unstaged unit is 0 too).
 */
int lazystage_locate(const struct lazystage *ls, int32_t pid, uint64_t img_vaddr, uint64_t len,
		     const void **data);

/*
 * The Done digest over every unit's XXH3 in table order (ctrl.h
 * ctrl_digest_add()); -EAGAIN while a unit is not staged.
 */
int lazystage_digest(const struct lazystage *ls, uint64_t *digest);

/*
 * A fault waits for the unit of pid at img_vaddr: ask for it before any
 * unit not asked for yet.  0 (also when it is already staged or asked),
 * -ENOENT for no such unit, -ESHUTDOWN after a failure or close.
 */
int lazystage_want(struct lazystage *ls, int32_t pid, uint64_t img_vaddr);

/* Units staged so far, and in all. */
size_t lazystage_staged(const struct lazystage *ls);

/*
 * Ends the dump's session (PS_IOV_CLOSE) once the units asked for are in;
 * nothing more is pulled.  closed() follows.
 */
int lazystage_close(struct lazystage *ls);

/* Releases the stage, its area and its session.  NULL is fine. */
void lazystage_free(struct lazystage *ls);

#endif
