/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * handover: the source hands a migration over to the destination agent's
 * API (docs/api.md, "Handover"), so one `rdmigctl migrate --to HOST` drives
 * both sides.
 *
 * Once the migration serves, the source asks the destination agent for
 * GET /v1/health (a dest agent must answer), then POSTs /v1/migrations with
 * the migration's id, the source's data endpoint (advertise, the listener's
 * address, or the local end of the API connection), its transport, its
 * secret (inline), verify, the restore's criu_opts and the images directory
 * wanted there.  A 202 starts a poll of GET /v1/migrations/{id} every
 * 500 ms; what the destination reports is mirrored into the migration
 * (struct src_dest_report).  A refusal (HTTP error, no connection, no
 * answer in time) before any destination fetches the migration fails it,
 * keeping its checkpoint for a rollback.  After the 202, an unreachable
 * destination agent changes nothing but dest_state ("unreachable"): the
 * data connection decides the migration's fate.  An abort on the source
 * is passed on: DELETE /v1/migrations/{id} to the destination agent once
 * the POST went out (best effort, 5 s, logged), so its side stops too.
 *
 * Before the freeze (a dumped pid), the source first reserves the
 * migration there: POST /v1/reservations with the id, the images'
 * expected size, the images directory and a container's bundle (which the
 * destination agent must have: the bundle contract, design.md §12); the POST names the reservation
 * it got; a reservation no POST used is released (DELETE) when the
 * handover stops.  A rollback first asks the destination agent whether the
 * workload is stopped there (GET /v1/migrations/{id}).
 *
 * Everything runs on the agent's event loop through libevent's evhttp
 * client and evdns (no blocking name lookups), with bounded timeouts
 * that do not count time the source itself did not run (stopped,
 * starved: common/tickclock.h).  The
 * secret travels in the clear over the destination's TCP API: keep that on
 * a management network, behind a firewall or in an SSH tunnel.  No rkey or
 * address leaves with it: the data connection still authenticates first.
 *
 * Ownership: a migration owns its handover (src_migration.handover); the
 * handover borrows the agent and the migration, and owns its copy of the
 * secret (wiped once sent, or when the handover stops) and its connection.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_SRC_HANDOVER_H
#define RDMIG_SRC_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent.h"

struct src_handover;

struct src_handover_params {
	const char *host;	     /* the destination agent's API: name or address, no brackets */
	uint16_t port;		     /* 0: API_DEST_PORT_DEFAULT */
	const char *advertise;	     /* "host[:port]" for the destination to connect to, or NULL */
	const char *dest_images_dir; /* or NULL: the destination agent chooses */
	/*
	 * A container's bundle on the destination (its reservation's
	 * "bundle", its POST's "container"), or NULL: not a container.
	 */
	const char *dest_bundle;
	const uint8_t *secret; /* copied */
	size_t secret_len;
	/*
	 * Never ask for a worker started at the reservation (its "start",
	 * design.md §10.3), even from an agent that takes one.
	 */
	bool no_early;
};

/*
 * The answer to a request made for the migration m: ret 0 or a negative
 * errno and why (a sentence naming the destination agent; "" when there
 * is nothing to say).  Called from the handover's timer, never from
 * inside a request's callback: it may free the handover (the migration).
 */
typedef void (*src_handover_result_fn)(struct src_migration *m, int ret, const char *why);

/*
 * Prepares the handover of m (nothing is sent yet) and sets m->dest to the
 * destination agent's "host:port".  Caller (the migration) owns *out.
 */
int src_handover_new(struct src_agent *a, struct src_migration *m,
		     const struct src_handover_params *p, struct src_handover **out);

/*
 * While the workload is frozen for its dump: checks the destination
 * agent's /v1/health now (TLS handshake included), so that once the
 * migration serves only the POST is left in the freeze.  Its failure
 * changes nothing: src_handover_begin() then starts over.
 */
void src_handover_prepare(struct src_handover *h);

/*
 * Before the freeze: POST /v1/reservations for bytes (the images' expected
 * size), with a TTL long enough for the dump.  cb gets 0 (reserved: the
 * POST will name it), -EOPNOTSUPP (the agent has no reservations: 404),
 * -EHOSTUNREACH (no answer) or the refusal as an errno (-EUSERS for a
 * 503 coded no_slot: its --max-migrations is full; -EAGAIN another 503,
 * -EBUSY 409, -EINVAL 400, -EACCES 403), with the agent's reason in why.
 * 0, or a negative errno when nothing could be sent (cb is not called).
 */
int src_handover_reserve(struct src_handover *h, uint64_t bytes, src_handover_result_fn cb);

/*
 * After the reservation's answer: the agent's health said it takes a lazy
 * dump (asked only for a lazy-dump migration; an older agent says nothing).
 */
bool src_handover_takes_lazy(const struct src_handover *h);

/*
 * Whether the last reservation asked for went with a "start": its agent
 * starts the migration's worker at once (FEAT_EARLY, design.md §10.3).
 */
bool src_handover_early_sent(const struct src_handover *h);

/*
 * Stops the handover as src_handover_stop() does, releasing its
 * reservation, and calls cb (ret 0) once that DELETE is answered, however
 * (the caller may then free the migration).  -ENOENT: no reservation to
 * release; -EIO: the DELETE could not be sent; cb is not called then.
 */
int src_handover_release(struct src_handover *h, src_handover_result_fn cb);

/* The reservation granted, or NULL. */
const char *src_handover_reservation(const struct src_handover *h);

/*
 * A rollback's question: GET /v1/migrations/{id} on the destination
 * agent.  cb gets 0 when the migration is failed or aborted there (its
 * worker ended, stopping the processes that still needed pages),
 * -EBUSY when the workload may run there (done, not final, or not known
 * there: an agent that restarted forgets), -EHOSTUNREACH when it does not
 * answer; why says which.  0, or a negative errno (cb is not called).
 */
int src_handover_ask_stopped(struct src_handover *h, src_handover_result_fn cb);

/*
 * Before a pre-copy's final dump (design.md §13), which may come long after
 * the reservation: GET /v1/reservations/{id} (GET /v1/health for an agent
 * without reservations).  cb gets 0 when it still holds it; when it is gone
 * (expired, released, the agent restarted) a new one is asked for and cb
 * gets that answer, as src_handover_reserve()'s; -EHOSTUNREACH when the
 * agent does not answer, or its refusal as an errno, with why.  0, or a
 * negative errno (cb is not called): -EBUSY while another request of the
 * handover is in flight.
 */
int src_handover_recheck(struct src_handover *h, src_handover_result_fn cb);

/*
 * A migration reloaded after a restart in post-copy, whose POST the
 * destination agent took before: polls it again as after its 202 (the
 * migration's dest_state, a destination that gave up), and passes an
 * abort on to it.  Nothing else is sent (no secret is kept).
 */
void src_handover_follow(struct src_handover *h);

/* The migration serves: starts talking to the destination agent (or POSTs, prepared). */
void src_handover_begin(struct src_handover *h);

/*
 * Stops talking to the destination agent (abort, rollback, a failed dump)
 * and wipes the secret; what was reported so far stays.  A reservation
 * that no POST used is released (DELETE, best effort, logged).  A
 * question or result not delivered yet is dropped.  Not from inside
 * the handover's own callbacks.  NULL is fine.
 */
void src_handover_stop(struct src_handover *h);

/*
 * The migration was aborted on the source: stops talking to the
 * destination agent as src_handover_stop() does and, if the POST went out
 * (the agent may have the migration, even without a 202 seen), sends it
 * DELETE /v1/migrations/{id}, queued behind a request still in flight so
 * it cannot overtake the POST.  Asynchronous, at most 5 s, best effort:
 * the outcome is only logged.  Not from inside the handover's own
 * callbacks.  NULL is fine.
 */
void src_handover_abort(struct src_handover *h);

/* Stops and frees; an abort's DELETE still unanswered is dropped (logged).  NULL is fine. */
void src_handover_free(struct src_handover *h);

#endif
