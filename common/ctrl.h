/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ctrl: the control protocol between rdmig-source and rdmig-dest
 * (proto/rdmig.proto, specified in docs/protocol.md).
 *
 * Three layers, usable separately:
 *  - codec: ctrl_pack()/ctrl_unpack()/ctrl_free() with the size limits;
 *  - validators: ctrl_validate_*() check one message or field against the
 *    protocol's rules (lengths, names, alignment, ranges inside regions);
 *  - struct ctrl_state: one per connection; it numbers outgoing messages,
 *    checks the sequence numbers, which message is legal in which phase,
 *    negotiates the Hellos, and refuses to let memory addresses, rkeys or
 *    image bytes out before the peer has been authenticated.
 *
 * Sending:   build with a ctrl_msg_*() builder into a struct ctrl_out,
 *            ctrl_state_encode() (ctrl_state_send(), ctrl_pack() and the MAC),
 *            transport send, ctrl_out_release().
 * Receiving: ctrl_state_recv() (MAC + decode + sequence + phase + validation),
 *            act on the message, ctrl_free().  On failure send
 *            Abort(ctrl_state_error()) and close.
 *
 * Functions return 0 or a negative errno and never trust a field of a
 * received message before it has been validated.
 */
#ifndef RDMIG_CTRL_H
#define RDMIG_CTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "msgauth.h"
#include "rdmig.pb-c.h"

/* 2: every message after the handshake carries a MAC (msgauth.h); 1 is refused. */
#define CTRL_PROTO_VERSION     2
#define CTRL_PROTO_MIN_VERSION 2

/* Limits; docs/protocol.md "Limits" explains each. */
#define CTRL_MSG_MAX	       (64u * 1024) /* a whole message and its MAC, except ReadResp */
#define CTRL_READ_MAX	       (1u << 20)   /* ReadReq.len, ReadResp.data */
#define CTRL_DATA_MSG_MAX      (CTRL_READ_MAX + 1024u) /* a ReadResp with its envelope */
#define CTRL_FILE_CHUNK_MAX    (48u * 1024)
#define CTRL_FILE_NAME_MAX     128
#define CTRL_FILE_SIZE_MAX     (1ull << 40)
#define CTRL_HOLES_MAX	       256
#define CTRL_REGIONS_MAX       256
#define CTRL_RANGES_MAX	       1024
#define CTRL_PAGE_HASHES_MAX   6144
#define CTRL_MIGRATION_ID_MAX  AUTH_MIGRATION_ID_MAX
#define CTRL_AGENT_VERSION_MAX 64
#define CTRL_TEXT_MAX	       256 /* reasons in AuthResult, Abort, DoneAck */
#define CTRL_VADDR_LIMIT       (1ull << 57)
#define CTRL_PAGE_SIZE_MIN     4096u
#define CTRL_PAGE_SIZE_MAX     65536u
/* FEAT_LAZY_DUMP: lazy ranges are cut into units of this size from their start. */
#define CTRL_STAGE_UNIT (256u << 10)

#define CTRL_FEAT_RDMA_READ    ((uint64_t)FEATURE__FEAT_RDMA_READ)
#define CTRL_FEAT_TCP_READ     ((uint64_t)FEATURE__FEAT_TCP_READ)
#define CTRL_FEAT_VERIFY_PAGES ((uint64_t)FEATURE__FEAT_VERIFY_PAGES)
/* Lazy dump: TaskTable ranges are staged later (StageRegion), asked for by StageReq. */
#define CTRL_FEAT_LAZY_DUMP  ((uint64_t)FEATURE__FEAT_LAZY_DUMP)
#define CTRL_FEAT_FAULT_LANE ((uint64_t)FEATURE__FEAT_FAULT_LANE)
/* TCP: a data channel (CTRL_CHANNEL_DATA) of the control connection's peer carries faults. */
#define CTRL_FEAT_FAULT_CONN ((uint64_t)FEATURE__FEAT_FAULT_CONN)
/* Post-copy survives a lost connection: the destination reconnects and resumes (Attach). */
#define CTRL_FEAT_RESUME ((uint64_t)FEATURE__FEAT_RESUME)
/* RDMA: a resuming destination's queue pair made by hand, set up over an RC side channel. */
#define CTRL_FEAT_RC_SIDE ((uint64_t)FEATURE__FEAT_RC_SIDE)
/* RDMA: the drain over extra queue pairs (DrainLane). */
#define CTRL_FEAT_DRAIN_QPS ((uint64_t)FEATURE__FEAT_DRAIN_QPS)
/* Queue pairs the drain may use in all (the first QP and DrainLane's). */
#define CTRL_DRAIN_QPS_MAX 4
/*
 * A destination started at its reservation connects while the checkpoint
 * is still being made: the source authenticates it and holds it, sending
 * keepalives only, until the migration serves (design.md §10.3).
 */
#define CTRL_FEAT_EARLY ((uint64_t)FEATURE__FEAT_EARLY)
/*
 * With FEAT_LAZY_DUMP over RDMA: MemRegions may also come in post-copy
 * (before the StageRegions that name it), so ImagesDone and the restore
 * need not wait for the staging area's registration (protocol.md §11.2).
 */
#define CTRL_FEAT_LATE_REGIONS ((uint64_t)FEATURE__FEAT_LATE_REGIONS)
/*
 * RDMA, with FEAT_EARLY: the held session announces each pre-copy round's
 * registered pages files (RoundPages) so the destination copies them while
 * the workload still runs (design.md §13, protocol.md §11.4).
 */
#define CTRL_FEAT_ROUNDS ((uint64_t)FEATURE__FEAT_ROUNDS)
/* RcConnect: a GID's bytes; the path MTUs of enum ibv_mtu (256 .. 4096 bytes). */
#define CTRL_GID_LEN	16
#define CTRL_RC_MTU_MIN 1
#define CTRL_RC_MTU_MAX 5

#define CTRL_IMAGE_FILE_LAST 1u
#define CTRL_TASK_TABLE_LAST 1u

enum ctrl_role {
	CTRL_ROLE_SOURCE = ROLE__ROLE_SOURCE,
	CTRL_ROLE_DEST = ROLE__ROLE_DEST,
};

enum ctrl_channel {
	CTRL_CHANNEL_CONTROL = CHANNEL__CHANNEL_CONTROL,
	CTRL_CHANNEL_DATA = CHANNEL__CHANNEL_DATA,
	CTRL_CHANNEL_RC_SIDE = CHANNEL__CHANNEL_RC_SIDE,
};

enum ctrl_abort {
	CTRL_ABORT_PROTOCOL = ABORT_CODE__ABORT_PROTOCOL,
	CTRL_ABORT_VERSION = ABORT_CODE__ABORT_VERSION,
	CTRL_ABORT_AUTH = ABORT_CODE__ABORT_AUTH,
	CTRL_ABORT_MIGRATION = ABORT_CODE__ABORT_MIGRATION,
	CTRL_ABORT_FEATURES = ABORT_CODE__ABORT_FEATURES,
	CTRL_ABORT_IMAGES = ABORT_CODE__ABORT_IMAGES,
	CTRL_ABORT_READ = ABORT_CODE__ABORT_READ,
	CTRL_ABORT_VERIFY = ABORT_CODE__ABORT_VERIFY,
	CTRL_ABORT_RESTORE = ABORT_CODE__ABORT_RESTORE,
	CTRL_ABORT_TIMEOUT = ABORT_CODE__ABORT_TIMEOUT,
	CTRL_ABORT_CANCELLED = ABORT_CODE__ABORT_CANCELLED,
	CTRL_ABORT_INTERNAL = ABORT_CODE__ABORT_INTERNAL,
};

/* "ImageFile", "unknown(40)": for log messages. */
const char *ctrl_msg_type_str(RdmigMsg__BodyCase type);
const char *ctrl_abort_str(uint32_t code);
const char *ctrl_role_str(enum ctrl_role role);

/* A validation failure: the Abort code to send and a text naming the field. */
struct ctrl_err {
	uint32_t code;
	char text[160];
};

/* ---- codec ---------------------------------------------------------- */

/*
 * Packs m into buf.  Returns -EINVAL when no body is set, -EMSGSIZE when the
 * message exceeds its type's limit (CTRL_MSG_MAX, or CTRL_DATA_MSG_MAX for
 * ReadResp), -ENOBUFS when cap is too small.  *len is the packed length.
 */
int ctrl_pack(const RdmigMsg *m, uint8_t *buf, size_t cap, size_t *len);
/* Same into a malloc()ed buffer the caller frees. */
int ctrl_pack_alloc(const RdmigMsg *m, uint8_t **buf, size_t *len);

/*
 * Decodes one message.  Checks only what needs no context: the size limit
 * of its type, that it decodes, and that a known body is set (-EMSGSIZE,
 * -EBADMSG).  Use ctrl_validate() or ctrl_state_recv() before trusting a
 * field.  Caller owns *out and releases it with ctrl_free().
 */
int ctrl_unpack(const void *buf, size_t len, RdmigMsg **out);
void ctrl_free(RdmigMsg *m);

/* ---- builders -------------------------------------------------------- */

/*
 * An outgoing message and storage for its body.  Builders reset *o and
 * fill it with pointers that borrow the caller's strings and buffers: they
 * must stay valid until ctrl_pack() returns.  Builders of repeated fields
 * allocate index arrays, so always finish with ctrl_out_release().
 * Builders return -EINVAL for a missing argument and -E2BIG for a count
 * above the protocol's limit; the field rules are checked later by
 * ctrl_state_send().
 */
struct ctrl_out {
	RdmigMsg msg;
	union {
		Hello hello;
		AuthProof auth_proof;
		AuthResult auth_result;
		Abort abort;
		MemRegions mem_regions;
		RoundPages round_pages;
		RoundsCopied rounds_copied;
		RoundsStop rounds_stop;
		ImageFile image_file;
		TaskTable task_table;
		PageHashes page_hashes;
		ImagesDone images_done;
		ReadReq read_req;
		StageRegion stage_region;
		StageReq stage_req;
		ReadResp read_resp;
		Progress progress;
		Keepalive keepalive;
		Done done;
		DoneAck done_ack;
		FaultLane fault_lane;
		Attach attach;
		Running running;
		RcConnect rc_connect;
		DrainLane drain_lane;
	} body;
	void *scratch;
};

void ctrl_out_release(struct ctrl_out *o);

struct ctrl_hello {
	enum ctrl_role role;
	enum ctrl_channel channel;
	uint64_t features;
	uint32_t page_size;
	const char *migration_id;
	const uint8_t *nonce;	   /* AUTH_NONCE_LEN bytes */
	const char *agent_version; /* may be NULL */
};

struct ctrl_hole {
	uint64_t offset;
	uint64_t len;
};

struct ctrl_file_chunk {
	const char *name;
	uint64_t total_size;
	uint64_t offset;
	const void *data;
	size_t data_len;
	const struct ctrl_hole *holes;
	size_t nr_holes;
	bool last;
};

struct ctrl_region {
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	bool has_xxh3; /* FEAT_ROUNDS: a round's region, xxh3 of its bytes */
	uint64_t xxh3;
};

struct ctrl_range {
	uint64_t img_vaddr;
	uint64_t len;
	bool has_remote; /* RDMA: remote_addr and rkey are sent */
	uint64_t remote_addr;
	uint32_t rkey;
	uint64_t xxh3;
};

struct ctrl_done {
	uint64_t pages;
	uint64_t bytes;
	uint64_t ranges_verified;
	uint64_t digest; /* ctrl_digest_add() over every range, in table order */
};

int ctrl_msg_hello(struct ctrl_out *o, const struct ctrl_hello *h);
int ctrl_msg_auth_proof(struct ctrl_out *o, const uint8_t proof[AUTH_PROOF_LEN]);
int ctrl_msg_auth_result(struct ctrl_out *o, bool ok, const char *reason);
int ctrl_msg_abort(struct ctrl_out *o, uint32_t code, const char *reason);
int ctrl_msg_mem_regions(struct ctrl_out *o, const struct ctrl_region *r, size_t n);
int ctrl_msg_image_file(struct ctrl_out *o, const struct ctrl_file_chunk *c);
int ctrl_msg_task_table(struct ctrl_out *o, int32_t pid, const struct ctrl_range *r, size_t n,
			bool last);
int ctrl_msg_page_hashes(struct ctrl_out *o, int32_t pid, uint64_t first_vaddr,
			 const uint64_t *hashes, size_t n);
int ctrl_msg_images_done(struct ctrl_out *o, uint32_t files, uint32_t tasks, uint64_t lazy_bytes);
int ctrl_msg_read_req(struct ctrl_out *o, uint64_t cookie, int32_t pid, uint64_t img_vaddr,
		      uint32_t len);
/* status is 0 with len bytes of data, or a negative errno without data. */
int ctrl_msg_read_resp(struct ctrl_out *o, uint64_t cookie, int32_t status, const void *data,
		       size_t len);
int ctrl_msg_progress(struct ctrl_out *o, uint64_t pages, uint64_t bytes, uint64_t faults);
int ctrl_msg_keepalive(struct ctrl_out *o, uint64_t seq, uint64_t time_ns);
int ctrl_msg_done(struct ctrl_out *o, const struct ctrl_done *d);
int ctrl_msg_done_ack(struct ctrl_out *o, bool ok, const char *reason);
/*
 * FEAT_LAZY_DUMP: r is one TaskTable range, now staged (has_remote over
 * RDMA); with FEAT_VERIFY_PAGES, tags holds its r->len / page size page
 * tags (borrowed until the message is sent), else NULL and 0.
 */
int ctrl_msg_stage_region(struct ctrl_out *o, int32_t pid, const struct ctrl_range *r,
			  const uint64_t *tags, size_t n_tags);
int ctrl_msg_stage_req(struct ctrl_out *o, int32_t pid, uint64_t img_vaddr);
int ctrl_msg_fault_lane(struct ctrl_out *o, uint32_t qpn, uint32_t psn);
/* FEAT_ROUNDS: round's regions (1..CTRL_REGIONS_MAX), each with has_xxh3. */
int ctrl_msg_round_pages(struct ctrl_out *o, uint32_t round, const struct ctrl_region *r, size_t n);
/* FEAT_ROUNDS: copying every round up to round (>= 1) ended; bytes kept. */
int ctrl_msg_rounds_copied(struct ctrl_out *o, uint32_t round, uint64_t bytes);
/* FEAT_ROUNDS: stop copying; the answer is RoundsCopied, with no READ in flight. */
int ctrl_msg_rounds_stop(struct ctrl_out *o);
/* FEAT_DRAIN_QPS: extra drain QP index (1..CTRL_DRAIN_QPS_MAX-1). */
int ctrl_msg_drain_lane(struct ctrl_out *o, uint32_t index, uint32_t qpn, uint32_t psn);
/*
 * FEAT_RESUME: resume a paused post-copy (true) or take the images (false);
 * page_hashes: on a resume, ask for the PageHashes again (a takeover).
 */
int ctrl_msg_attach(struct ctrl_out *o, bool resume, bool page_hashes);
/* FEAT_RESUME: the destination's workload runs (post-copy proper). */
int ctrl_msg_running(struct ctrl_out *o);
/*
 * FEAT_RC_SIDE: where the sender's hand-made queue pair is (protocol.md
 * §7.4).  The message borrows gid: send it before gid goes.
 */
int ctrl_msg_rc_connect(struct ctrl_out *o, uint32_t qpn, uint32_t psn,
			const uint8_t gid[CTRL_GID_LEN], uint32_t mtu, uint32_t rd_atomic);

/* Folds one range checksum into the Done digest; start from 0. */
uint64_t ctrl_digest_add(uint64_t digest, uint64_t range_xxh3);

/* ---- validators ----------------------------------------------------------
 * Each returns 0, or -EINVAL (malformed) / -ERANGE (outside a limit or a
 * known region) / -ESRCH (unknown pid or range) with e filled when non-NULL.
 */

/* A plain file name: 1..CTRL_FILE_NAME_MAX of [A-Za-z0-9._+-], not starting with '.', no "..". */
int ctrl_validate_file_name(const char *name, struct ctrl_err *e);
/* migration_id_valid() (util.h): [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
int ctrl_validate_migration_id(const char *id, struct ctrl_err *e);
/* NULL or at most max bytes of printable ASCII; `what` names the field. */
int ctrl_validate_text(const char *s, size_t max, const char *what, struct ctrl_err *e);
int ctrl_validate_hello(const Hello *h, struct ctrl_err *e);
int ctrl_validate_image_file(const ImageFile *f, uint32_t page_size, struct ctrl_err *e);
int ctrl_validate_regions(const MemRegions *r, struct ctrl_err *e);

/*
 * One TaskTable's ranges: len > 0, page aligned, no overflow, below
 * CTRL_VADDR_LIMIT, sorted and non-overlapping; with need_remote every
 * range carries remote_addr and rkey and [remote_addr, +len) lies inside
 * one of the regions with that rkey; without it none carries them.
 */
int ctrl_validate_ranges(LazyRange *const *r, size_t n, uint32_t page_size, bool need_remote,
			 const struct ctrl_region *regions, size_t nr_regions, struct ctrl_err *e);

/*
 * Everything about one message that needs no stream history: the rules of
 * its type, with the page size, features and regions of st.
 */
struct ctrl_state;
int ctrl_validate(const struct ctrl_state *st, const RdmigMsg *m, struct ctrl_err *e);

/* Whether pid serves [img_vaddr, img_vaddr + len); a source-side callback. */
typedef bool (*ctrl_range_known_fn)(void *arg, int32_t pid, uint64_t img_vaddr, uint64_t len);

/* ---- per-connection state ------------------------------------------------ */

enum ctrl_phase {
	CTRL_PH_HELLO,	       /* both send Hello */
	CTRL_PH_DEST_PROOF,    /* the dest sends AuthProof */
	CTRL_PH_SOURCE_RESULT, /* the source verified it: AuthResult */
	CTRL_PH_SOURCE_PROOF,  /* the source sends AuthProof */
	CTRL_PH_DEST_RESULT,   /* the dest verified it: AuthResult */
	CTRL_PH_IMAGES,	       /* source streams regions, files, tables */
	CTRL_PH_POSTCOPY,      /* after ImagesDone (data channel: after auth) */
	CTRL_PH_DONE,	       /* the dest sent Done; the source acks */
	CTRL_PH_CLOSED,	       /* DoneAck, Abort or a refused AuthResult */
	CTRL_PH_COUNT,
};

const char *ctrl_phase_str(enum ctrl_phase ph);

struct ctrl_negotiated {
	uint32_t version;
	uint64_t features; /* both peers' bits */
	uint32_t page_size;
	enum ctrl_channel channel;
};

/* Both sides' Hello fields, kept for negotiation and the auth transcript. */
struct ctrl_hello_seen {
	bool present;
	enum ctrl_role role;
	struct auth_hello a;
	char migration_id[CTRL_MIGRATION_ID_MAX + 1];
};

/*
 * One connection's protocol state.  Initialise with ctrl_state_init(); the
 * fields are private to ctrl.c (public only so the struct can be embedded).
 */
struct ctrl_state {
	enum ctrl_role self;
	enum ctrl_phase phase;
	const char *peer_name; /* borrowed, for logs */
	uint64_t send_seq;
	uint64_t recv_seq;
	bool peer_verified;
	struct ctrl_hello_seen mine, theirs;
	bool negotiated;
	struct ctrl_negotiated neg;

	/* Regions announced by MemRegions: every TaskTable range must lie in one. */
	struct ctrl_region regions[CTRL_REGIONS_MAX];
	size_t nr_regions;
	/*
	 * RoundPages regions so far: at most CTRL_REGIONS_MAX per connection,
	 * as MemRegions (the final regions could name no more), so a peer
	 * cannot make the destination hold copies without bound.
	 */
	size_t nr_round_regions;
	ctrl_range_known_fn range_known;
	void *range_arg;

	/* The image stream: one file, then one task table, at a time. */
	bool file_open;
	char file_name[CTRL_FILE_NAME_MAX + 1];
	uint64_t file_size;
	uint64_t file_next;
	uint32_t files_done;
	bool table_open;
	int32_t table_pid;
	uint64_t table_next;
	uint32_t tables_done;
	uint64_t lazy_bytes;
	/* Attach{resume} went by: a DoneAck may answer it (a migration already done). */
	bool resume_attached;

	/* Session keys, from ctrl_state_derive_keys(). */
	struct msgauth mac;

	struct ctrl_err err;
};

/* peer_name is borrowed for log messages (e.g. tcpconn_name()). */
void ctrl_state_init(struct ctrl_state *st, enum ctrl_role self, const char *peer_name);

/* The source checks every ReadReq and PageHashes range with fn. */
void ctrl_state_set_range_check(struct ctrl_state *st, ctrl_range_known_fn fn, void *arg);

/* 0 when a message of this type from the peer is legal now, else -EPROTO. */
int ctrl_state_accept(const struct ctrl_state *st, RdmigMsg__BodyCase type);
/* 0 when we may send a message of this type now, else -EPROTO. */
int ctrl_state_may_send(const struct ctrl_state *st, RdmigMsg__BodyCase type);

/*
 * Prepares an outgoing message: checks it is legal now and valid, refuses
 * AuthResult{ok} before ctrl_state_set_peer_verified(), stamps m->seq and
 * advances the phase.  Pack and send m afterwards.
 */
int ctrl_state_send(struct ctrl_state *st, RdmigMsg *m);

/*
 * Decodes and admits one received message: size, decoding, sequence
 * number, phase, field validation and the stream rules.  On success
 * *out is the message (caller frees with ctrl_free()); on failure *out is
 * NULL, the reason is logged with the peer's name, and ctrl_state_error()
 * gives the Abort to send.
 */
int ctrl_state_recv(struct ctrl_state *st, const void *buf, size_t len, RdmigMsg **out);

/* Records that the peer's AuthProof verified.  Only then may we say ok. */
void ctrl_state_set_peer_verified(struct ctrl_state *st);

/*
 * Derives the session keys from the secret and the transcript (both Hellos
 * known) once the peer's proof verified.  From the images phase (data
 * channel: postcopy) on, every message either way carries a MAC:
 * ctrl_state_encode() appends it, ctrl_state_recv() checks and strips it
 * and refuses the message ("control message failed authentication",
 * ABORT_AUTH) when it does not match.  Without keys nothing is sent or
 * accepted in those phases.
 */
int ctrl_state_derive_keys(struct ctrl_state *st, const struct auth_secret *s);

/*
 * What agents send with: ctrl_state_send(), then the packed message with
 * its MAC when one is due, in a malloc()ed buffer the caller frees (*buf is
 * NULL on failure).  A failure after ctrl_state_send() leaves the
 * connection unusable: abort it.
 */
int ctrl_state_encode(struct ctrl_state *st, RdmigMsg *m, uint8_t **buf, size_t *len);

/* Cleanses the session keys; call before freeing or re-initialising st. */
void ctrl_state_clear(struct ctrl_state *st);

/* True once both proofs are through: data may flow. */
bool ctrl_state_authenticated(const struct ctrl_state *st);

/* Valid once both Hellos went through: the negotiated version, features, page size. */
const struct ctrl_negotiated *ctrl_state_negotiated(const struct ctrl_state *st);

/*
 * The transcript both AuthProofs cover, once both Hellos are known
 * (-EAGAIN before).  t borrows from st.
 */
int ctrl_state_transcript(const struct ctrl_state *st, struct auth_transcript *t);

/* The last failure's Abort code; returns its text. */
const char *ctrl_state_error(const struct ctrl_state *st, uint32_t *code);

#endif
