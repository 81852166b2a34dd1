/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ctrlconn: what both peers do with one control connection (an xport and
 * its struct ctrl_state), written once for rdmig-source's sessions
 * (source-agent/session.c) and rdmig-dest's connection to the source
 * (dest-agent/netsrc.c, its control and fault connections):
 *  - send a message: seal and encode it (ctrl_state_encode()), queue it on
 *    the transport, release it, log a failure naming the connection;
 *  - send Abort, best effort, before the owner closes the connection;
 *  - the once-a-second tick (struct ctrlconn_tick, one per owner): time
 *    we were stopped forgiven first, then the owner's own deadlines, then
 *    the peer silent for longer than --dead-after, then the keepalive that
 *    keeps us from looking silent;
 *  - receive: ctrl_state_recv() (MAC, decode, sequence, phase, validation),
 *    then the owner's handler for that message type from its table.
 *
 * The owner keeps its own xport, ctrl_state and name: the functions borrow
 * them for the call.  What to do after an Abort, a refusal or a
 * silent peer (close, pause, fail) stays the owner's.  Functions return 0
 * or a negative errno.  Loop thread only.
 */
#ifndef RDMIG_CTRLCONN_H
#define RDMIG_CTRLCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctrl.h"
#include "xport.h"

struct event_base;

/*
 * Encodes o with st (sequence number, MAC), queues it on x and releases o
 * (also on failure).  A failure is logged with name and the message type.
 */
int ctrlconn_send(struct xport *x, struct ctrl_state *st, const char *name, struct ctrl_out *o);

/*
 * Sends Abort(code, reason) when the phase allows one; best effort (the
 * caller closes the connection next either way).  Nothing without x.
 */
void ctrlconn_send_abort(struct xport *x, struct ctrl_state *st, const char *name, uint32_t code,
			 const char *reason);

/*
 * The tick's keepalive: once authenticated, a Keepalive numbered ++*seq
 * with now (monotonic ns), when the phase allows one.
 */
void ctrlconn_keepalive(struct xport *x, struct ctrl_state *st, const char *name, uint64_t *seq,
			uint64_t now);

/* The tick's dead-peer check: nothing received since last_rx_ns for over dead_after_s. */
bool ctrlconn_silent(uint64_t last_rx_ns, uint64_t now, unsigned int dead_after_s);

/* Seconds between two ticks. */
#define CTRLCONN_TICK_S 1

/* The connection a tick checks, as its owner has it now (borrowed for the tick). */
struct ctrlconn_peer {
	struct xport *x;
	struct ctrl_state *st;
	const char *name;
	uint64_t *ka_seq;	   /* the keepalive's counter */
	uint64_t last_rx_ns;	   /* when the peer last sent anything */
	unsigned int dead_after_s; /* --dead-after */
};

/* What a tick asks of its owner; arg is the owner's, given to ctrlconn_tick_new(). */
struct ctrlconn_tick_ops {
	/*
	 * First, each tick: the owner's own deadlines (a handshake or a
	 * pause too long).  Fills *p and returns true when the connection is
	 * to be checked now; false when not (none, not authenticated,
	 * paused), or when the owner closed it or freed itself (and the tick
	 * with it).
	 */
	bool (*check)(void *arg, uint64_t now, struct ctrlconn_peer *p);
	/* The peer sent nothing for longer than p->dead_after_s: the owner closes, pauses or fails.
	 */
	void (*silent)(void *arg);
	/*
	 * Optional, the peer not silent: what else the owner checks each tick
	 * before the keepalive goes out.  false: no keepalive this time (the
	 * owner may have freed itself).
	 */
	bool (*alive)(void *arg, uint64_t now);
	/*
	 * Optional, before check: the tick at now ran gap_ns later than due
	 * (this process was stopped or starved, common/tickclock.h).  The
	 * owner moves what it judges by elapsed time (last_rx_ns, its own
	 * deadlines) forward by gap_ns (tickclock_shift()): we did not listen,
	 * so the peer was not silent.
	 */
	void (*late)(void *arg, uint64_t now, uint64_t gap_ns);
};

struct ctrlconn_tick;

/*
 * A timer on base that runs ctrlconn_tick_run() every CTRLCONN_TICK_S
 * seconds for its owner (arg) until ctrlconn_tick_free(), after ops->late
 * when it ran late (logged with name).  ops and name must outlive it.
 * 0 or -ENOMEM.
 */
int ctrlconn_tick_new(struct event_base *base, const char *name,
		      const struct ctrlconn_tick_ops *ops, void *arg, struct ctrlconn_tick **out);

/* Stops and frees t (NULL is fine); safe from the owner's callbacks. */
void ctrlconn_tick_free(struct ctrlconn_tick *t);

/* One tick at now (monotonic ns): check, then silent, or alive and the keepalive. */
void ctrlconn_tick_run(struct ctrlconn_tick *t, uint64_t now);

/* Body cases a dispatch table covers (RdmigMsg__BodyCase values below this). */
#define CTRLCONN_MSG_TYPES 128

/* A received message, valid and legal now; m is freed after the handler returns. */
typedef void (*ctrlconn_msg_fn)(void *arg, const RdmigMsg *m);

/* An owner's receive dispatch: one handler per message type, and its refusal. */
struct ctrlconn_handlers {
	ctrlconn_msg_fn on[CTRLCONN_MSG_TYPES]; /* NULL: unexpected on this connection */
	/*
	 * A message st refused (code and why: the Abort to send) or one with
	 * no handler (CTRL_ABORT_PROTOCOL, "unexpected message").  The owner
	 * aborts: nothing more is read from a peer that broke the protocol.
	 */
	void (*refused)(void *arg, uint32_t code, const char *why);
};

/* A handler for messages that only prove the peer is alive (Keepalive). */
void ctrlconn_ignore(void *arg, const RdmigMsg *m);

/*
 * Checks buf (one frame from the transport) with st and hands the message
 * to its handler in h, or calls h->refused.  The handler or refused may
 * free the connection and st with it: nothing here touches them after.
 * Returns 0 when a handler ran, -EPROTO when refused.
 */
int ctrlconn_recv(struct ctrl_state *st, const void *buf, size_t len,
		  const struct ctrlconn_handlers *h, void *arg);

#endif
