/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * api: the agents' local HTTP/1.1 + JSON API (docs/api.md), served by
 * libevent's evhttp on the agent's one event loop.
 *
 * The module owns routing, request validation and the JSON shapes; it knows
 * nothing about migrations.  The agent implements struct api_ops and fills
 * plain C views; the module turns them into JSON, so both agents report the
 * same resource shape.  All callbacks run in the event loop and must not
 * block: start() begins the work and returns, progress is read back through
 * get()/list().
 *
 * Listeners: a UNIX socket (default API_SOCKET_SOURCE / API_SOCKET_DEST,
 * mode 0600, i.e. root-only; 0660 with api_config.group) or an inherited
 * listening fd (systemd socket activation), plus an optional TCP listener.
 * GET /metrics answers Prometheus' text format (docs/api.md, "Metrics").
 * Every request on a UNIX socket must come from root or a member of the
 * configured group (403); every POST must be Content-Type application/json
 * (415); a request on a loopback TCP address must name loopback in its
 * Host header (421).  The TCP listener speaks
 * mutual TLS (common/tls.h): a client without a certificate of the CA
 * gets no HTTP, one whose certificate names no allowed peer gets 403 on
 * every request.  Plain HTTP over TCP only on loopback, when asked for.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef RDMIG_API_H
#define RDMIG_API_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct evbuffer;
struct api_error;

#include "util.h"

#define API_SOCKET_SOURCE "/run/rdmig/source.sock"
#define API_SOCKET_DEST	  "/run/rdmig/dest.sock"
/*
 * The destination agent's TCP API port when a source's "dest" names no
 * port.  The source hands a migration over to that API (docs/api.md).
 */
#define API_DEST_PORT_DEFAULT 7472

#define API_BODY_MAX_DEFAULT (64u * 1024)
/*
 * Bodies above the configured limit get a JSON 413 from the module.  Bodies
 * above API_BODY_HARD_FACTOR times the limit are refused by evhttp itself,
 * before routing, with its own (HTML) 413 page: that bounds the memory one
 * request can pin.
 */
#define API_BODY_HARD_FACTOR  16
#define API_BODY_MAX_LIMIT    (16u << 20) /* largest max_body accepted */
#define API_TIMEOUT_DEFAULT_S 30

#define API_ID_MAX	  MIGRATION_ID_MAX /* migration_id_valid() in util.h */
#define API_SECRET_MIN	  16		   /* bytes after decoding */
#define API_SECRET_MAX	  1024
#define API_ERROR_MSG_MAX 256
#define API_PATH_MAX	  4095
#define API_HOSTPORT_MAX  262 /* "[" 253 "]:" 5 */
/* Buckets of a fault-latency histogram, as dest-agent/latstat.h keeps them. */
#define API_HIST_BUCKETS 32

enum api_role {
	API_ROLE_SOURCE = 0,
	API_ROLE_DEST,
};

enum api_transport {
	API_TRANSPORT_RDMA = 0,
	API_TRANSPORT_TCP,
	API_TRANSPORT_TLS, /* TCP inside mutual TLS */
};

/* Migration states as the API reports them; the last four are final. */
enum api_state {
	API_STATE_PENDING = 0,
	API_STATE_DUMPING,    /* source: criu dump running */
	API_STATE_SERVING,    /* source: images mapped, waiting for / serving the dest */
	API_STATE_CONNECTING, /* dest: control connection and handshake */
	API_STATE_RECEIVING,  /* dest: fetching the non-lazy images */
	API_STATE_RESTORING,  /* dest: criu restore running */
	API_STATE_POSTCOPY,   /* process runs on the dest, faults served remotely */
	API_STATE_DRAINING,   /* background fetch of the remaining pages */
	API_STATE_DONE,
	API_STATE_FAILED,
	API_STATE_ABORTED,
	API_STATE_ROLLED_BACK,
	/* post-copy without its peer: waiting for the destination to reconnect */
	API_STATE_PAUSED,
	/* source: waiting in its queue for a slot (design.md §7.1): nothing frozen, nothing run */
	API_STATE_QUEUED,
	API_STATE__COUNT,
};

const char *api_state_str(enum api_state s);
/* Parses a state name; -EINVAL when unknown. */
int api_state_parse(const char *s, enum api_state *out);
bool api_state_is_final(enum api_state s);
const char *api_role_str(enum api_role r);
const char *api_transport_str(enum api_transport t);

/*
 * A container the source agent checkpoints with its runtime, instead of a
 * pid ("container" in a start request, docs/api.md).  Pointers borrowed as
 * the struct holding it says.  runtime NULL: no container.
 */
#define API_CONTAINER_RUNTIME "runc" /* the only runtime supported so far */
struct api_container {
	const char *runtime; /* API_CONTAINER_RUNTIME */
	const char *id;	     /* container_id_valid() (util.h) */
	const char *root;    /* the runtime's state root (runc --root), absolute; NULL: default */
	/*
	 * The bundle on the destination, absolute.  A source request: NULL
	 * for the container's own path (runc's state), else mapped to this.
	 * A destination request: required; a view: the bundle used.
	 */
	const char *bundle;
};

/* The request's "precopy": off, 1..API_PRECOPY_MAX rounds, or "auto" (design.md §13). */
#define API_PRECOPY_OFF	 0
#define API_PRECOPY_AUTO (-1)
#define API_PRECOPY_MAX	 8

/* One criu pre-dump round, as the source measured it. */
struct api_precopy_round {
	uint64_t pages;	     /* pages the round wrote (its pages files' size / 4096) */
	uint64_t bytes;	     /* those files' bytes */
	int64_t ms;	     /* how long criu pre-dump ran */
	uint64_t dirty_rate; /* pages/s dirtied since the previous round started; 0 for the first */
};

/*
 * What the agent reports about one migration.  Every pointer is borrowed:
 * it must stay valid until the callback that produced the view returns
 * (the module converts the view at once).  NULL strings and -1 numbers
 * become JSON null; every key is always present, whatever the role.
 */
/* The read-ahead of one task of a destination (dest-agent/readahead.h). */
#define API_RA_TASKS 8
struct api_ra_task {
	int32_t pid;
	const char *pattern; /* static: "sequential", "strided", "random" or "none" */
	uint32_t window;     /* pages its latest fault fetched */
	int64_t stride;	     /* pages between its strided faults; 0 unless strided */
};

struct api_migration_view {
	const char *id;
	enum api_role role;
	enum api_state state;
	const char *error;	/* why it failed/aborted, NULL otherwise */
	const char *source;	/* "host:port" of the source agent's endpoint, or NULL */
	const char *dest;	/* source: "host:port" of the destination agent's API, or NULL */
	const char *dest_state; /* source: the destination agent's state as last seen, or NULL */
	enum api_transport transport;
	pid_t pid;			/* source started from a pid; 0: none */
	struct api_container container; /* the container migrated; runtime NULL: none */
	const char *images_dir;		/* NULL: none */
	bool verify;
	bool lazy_dump; /* source: dumped with criu dump --lazy-pages (design.md §11) */
	/* source: the request's precopy (0: off, the others null the "precopy" object) */
	int precopy;
	const struct api_precopy_round *precopy_rounds; /* the rounds run so far */
	size_t nr_precopy_rounds;
	int64_t precopy_final_pages; /* pages the final dump wrote; -1: not dumped yet */
	uint64_t pages_total;
	uint64_t pages_fetched; /* installed on the dest / read from the source */
	uint64_t pages_remaining;
	uint64_t faults; /* userfaultfd faults resolved remotely */
	/* dest: pages read from the pre-copy rounds' copies made before the freeze; -1: n/a */
	int64_t pages_local;
	uint64_t bytes;	      /* page bytes moved */
	int64_t fault_p50_us; /* -1: no sample yet */
	int64_t fault_p99_us;
	/* dest: every fault's latency, log2-microsecond buckets (dest-agent/latstat.h); sum */
	uint64_t fault_hist[API_HIST_BUCKETS];
	uint64_t fault_sum_us;
	/* dest over RDMA: the adaptive drain's width now, fault READs on the fault lane; -1 */
	int64_t drain_depth;
	int64_t drain_chunk; /* bytes */
	int64_t fault_lane_reads;
	/* dest: the read-ahead's prevailing pattern and faults per pattern; NULL / -1: n/a */
	const char *ra_pattern;
	int64_t ra_sequential;
	int64_t ra_strided;
	int64_t ra_random;
	/* dest: per task (the first API_RA_TASKS): its pattern, window and stride */
	size_t nr_ra_tasks;
	struct api_ra_task ra_tasks[API_RA_TASKS];
	int64_t created_unix_ms;  /* wall clock; 0: unknown */
	int64_t finished_unix_ms; /* 0: not finished */
	int64_t freeze_ms; /* source: frozen by criu dump until the images were on disk; -1 */
	int64_t total_ms;  /* start to final state (or to now); -1: n/a */
	/*
	 * dest: how long criu restore ran, and the time from accepting the
	 * request to the restored workload running again; -1: not (yet).
	 */
	int64_t restore_ms;
	int64_t resumed_ms;
	/* dest: from accepting the request to every image in (criu restore starts); -1 */
	int64_t received_ms;
	/* source: from the freeze to sending the handover request; -1 */
	int64_t handover_ms;
	/*
	 * source: from the freeze to a destination authenticating while the
	 * checkpoint was still being made (FEAT_EARLY, design.md §10.3); 0:
	 * before the freeze; -1: none
	 */
	int64_t early_dest_ms;
	/*
	 * source over RDMA: what the serving session spent registering the
	 * checkpoint after its destination's proof (0: it took the regions
	 * registered ahead, prereg.h); -1: no session served it yet
	 */
	int64_t register_ms;
	/*
	 * source with a destination agent: the workload's downtime, from the
	 * freeze to running on the destination.  Summed from durations each
	 * host measures itself (freeze to handover here, request to resume
	 * there), so the hosts' clocks need not agree.  -1: not (yet) known.
	 */
	int64_t downtime_ms;
	/*
	 * Pauses (state paused): the current one's reason and start (NULL / 0
	 * when not paused), how many so far, and how long the ended ones took.
	 */
	const char *pause_reason;
	int64_t pause_since_unix_ms;
	uint64_t pauses;
	int64_t paused_ms;
	/*
	 * Destination: how many workers took the migration over from the
	 * guard of one that died in post-copy (design.md §10.2); -1 (null):
	 * the source, which has none.
	 */
	int64_t takeovers;
	/*
	 * source, state queued: its place among the migrations queued for the
	 * same destination (1: next), since when it waits, and why ("slot":
	 * the destination's --max-migrations, "source": this agent's own,
	 * "dump": a dump slot, --max-dumps); position 0: not queued (null).
	 */
	unsigned int queue_position;
	int64_t queue_since_unix_ms;
	const char *queue_reason;
};

/* Fills v with "unknown" values (-1 / 0 / NULL) so agents set only what they know. */
void api_migration_view_init(struct api_migration_view *v);

/* The resource JSON of v (docs/api.md, "Migration resource").  New reference, NULL on ENOMEM. */
json_t *api_migration_to_json(const struct api_migration_view *v);

/* Options handed to criu dump (source) or criu restore (dest). */
struct api_criu_opts {
	bool shell_job;
	bool tcp_established;
	bool ext_unix_sk;
	bool file_locks;
	bool link_remap;
	bool leave_running;	    /* source only */
	const char *manage_cgroups; /* NULL, "soft", "full", "strict" or "ignore" */
	int log_level;		    /* 0..4, -1: criu's default */
};

/* A start's "lazy_dump": absent, false or true. */
enum api_lazy_dump {
	API_LAZY_AUTO = 0, /* absent: the source agent decides (design.md §11, "The default") */
	API_LAZY_NO,
	API_LAZY_YES,
};

/*
 * A validated POST /v1/migrations body.  Everything is borrowed for the
 * duration of api_ops.start() only: copy what the migration keeps.  The
 * inline secret is wiped by the module when start() returns.
 */
struct api_start_req {
	enum api_role role;
	const char *id; /* always set: from the body, or generated ("m-" + 12 hex) */
	bool id_generated;
	enum api_transport transport; /* default rdma */
	bool transport_set;	      /* "transport" was in the body */
	/*
	 * source: the "dest" field, the destination agent's API (TCP); when
	 * given, the source hands the migration over to that agent once it
	 * serves.  Optional: without it an orchestrator starts the
	 * destination side itself.  dest: the "source" field, the source
	 * agent's data endpoint, required.  NULL when not given.
	 */
	const char *peer;
	const char *peer_host; /* host part, without IPv6 brackets */
	uint16_t peer_port;    /* 0: not given, the agent's default port */
	/*
	 * source only, with "dest": the data endpoint the destination should
	 * connect to ("advertise"; NULL: the local address of the connection
	 * to the destination agent, with the listener's port), and the
	 * images directory to ask for there ("dest_images_dir"; NULL: the
	 * destination agent chooses).
	 */
	const char *advertise;
	const char *dest_images_dir;
	pid_t pid; /* source: >0, or 0 when images_dir or container is given */
	/* source: the container to checkpoint, instead of pid; runtime NULL: none */
	struct api_container container;
	const char *images_dir; /* absolute; source: with pid == 0; dest: NULL = agent's choice */
	const char *work_dir;	/* dest: absolute or NULL (= images_dir) */
	/*
	 * The secret's bytes: decoded from "secret", or read from
	 * "secret_file" by the module before start() is called (on its
	 * offload thread, so a file on a hung mount stalls only that request;
	 * a refused file is answered 400 without calling start()).
	 */
	const uint8_t *secret;
	size_t secret_len;	 /* API_SECRET_MIN..API_SECRET_MAX when set */
	const char *secret_file; /* absolute path it came from, or NULL: inline or none */
	bool verify;		 /* checksum pages; default false */
	/*
	 * source with pid: criu dump --lazy-pages.  Absent (API_LAZY_AUTO):
	 * lazy when the agent may choose it (api_glue's glue_lazy_wanted()).
	 */
	enum api_lazy_dump lazy_dump;
	int precopy;  /* source with pid: API_PRECOPY_OFF (default), 1..MAX, AUTO */
	bool restore; /* dest: run criu restore itself; default true */
	/*
	 * source with pid or container: wait in the agent's queue when no
	 * slot is free (default true); false: refused at once (503) instead.
	 */
	bool queue;
	/* dest: the reservation (POST /v1/reservations) this migration uses, or NULL */
	const char *reservation;
	struct api_criu_opts criu;
	/*
	 * Set by the server for start(): an agent that can only answer later
	 * keeps it and returns -EINPROGRESS, then calls api_later_answer()
	 * exactly once.  Any other return: the server answers and frees it.
	 */
	struct api_later *later;
	/*
	 * With a container and api_ops.start_prepare: what it found off the
	 * loop (the agent's own type), borrowed for the start() call only.
	 */
	const void *prepared;
};

/*
 * A request answered later (a start that waits for a reservation, a
 * rollback that asks the destination agent first).  Owned by the agent
 * from the -EINPROGRESS on, until api_later_answer().
 */
struct api_later;

/*
 * Answers l as its callback's own return would have been (0: 202 with
 * the resource; else the failure from ret and err; err may be NULL) and
 * frees l.  After api_server_destroy() (which answered 503 already) it
 * only frees.
 */
void api_later_answer(struct api_later *l, int ret, const struct api_error *err);

/* A validated POST /v1/rollback body; borrowed for the rollback() call only. */
struct api_rollback_req {
	const char *id;
	bool force;		 /* "force": true: roll back without the destination's word */
	struct api_later *later; /* as in api_start_req */
};

/*
 * POST /v1/reservations (destination agent): a source reserves a slot and
 * disk space before it freezes the workload (docs/api.md, "Reservations").
 * Borrowed for the reserve() call only.
 */
#define API_RESERVE_TTL_DEFAULT_S 120
#define API_RESERVE_TTL_MAX_S	  3600
struct api_reserve_req {
	const char *migration;	/* the migration's id, as the handover will name it */
	uint64_t bytes;		/* the source's estimate of the images' size */
	const char *images_dir; /* absolute, or NULL: the agent's choice */
	const char *work_dir;	/* absolute, or NULL */
	/*
	 * absolute, or NULL: a container's bundle, which must exist here
	 * (config.json and rootfs) below one of the agent's --bundle-root
	 */
	const char *bundle;
	unsigned int ttl_s; /* 1..API_RESERVE_TTL_MAX_S */
	/*
	 * "start" (design.md §10.3), or NULL: the POST's fields for the
	 * worker started at once (source, transport, secret inline, verify,
	 * restore, criu_opts, container), checked by the POST's own parser;
	 * its id is the migration's.  Points into start_req and start_buf,
	 * which api_reserve_req_clear() wipes and frees.
	 */
	const struct api_start_req *start;
	struct api_start_req start_req;
	struct api_start_buf *start_buf;
};

/* A reservation as the API shows it; pointers borrowed as in api_migration_view. */
struct api_reservation_view {
	const char *id;
	const char *migration;
	uint64_t bytes;
	const char *images_dir; /* NULL: the agent's choice */
	const char *bundle;	/* the container's bundle checked, or NULL */
	unsigned int ttl_s;
	int64_t created_unix_ms;
	int64_t expires_unix_ms;
	bool worker_started; /* "worker": "started": its "start" spawned the worker */
};

/* Called by list_reservations() once per reservation; non-zero stops the walk. */
typedef int (*api_emit_resv_fn)(void *ctx, const struct api_reservation_view *v);

/*
 * A failure a callback reports.  The HTTP status derives from the errno the
 * callback returns, unless status is set:
 *   -EINVAL 400, -EPERM/-EACCES 403, -ENOENT 404, -EEXIST/-EBUSY/-EALREADY 409,
 *   -EOPNOTSUPP 501, -EAGAIN/-ENOSPC/-ENOMEM/-EMFILE/-ENFILE 503, others 500.
 * message is shown to the client; never put a secret in it.
 */
/*
 * The "code" of a 503 whose cause is a full --max-migrations (the errno
 * -EUSERS): a slot frees when a migration there ends, so a source queues
 * a start refused so rather than failing it.
 */
#define API_CODE_NO_SLOT "no_slot"

struct api_error {
	int status;
	char message[API_ERROR_MSG_MAX];
};

/*
 * The parser the server runs on every POST /v1/migrations body, callable
 * on its own (for the fuzz target test/fuzz/fuzz_api_json.c).  root is
 * the body as the server loads it (json_loadb() with
 * JSON_REJECT_DUPLICATES, an object).  Validates it for role into *r,
 * whose pointers borrow from root and from *buf; *buf is allocated also
 * on failure and released, wiped, with api_start_buf_free().  Returns 0,
 * -EINVAL with err->message set, or -ENOMEM.
 */
struct api_start_buf;
int api_start_parse(enum api_role role, const json_t *root, struct api_start_req *r,
		    struct api_start_buf **buf, struct api_error *err);
void api_start_buf_free(struct api_start_buf *b);

/*
 * The parsers of the other request bodies, callable without a request (the
 * fuzz target): a POST /v1/reservations body into r (pointers borrow from
 * root), and the optional body of a rollback ({"force": bool}) into force.
 * Return 0 or -EINVAL with err->message set.
 */
int api_reserve_parse(const json_t *root, struct api_reserve_req *r, struct api_error *err);
/* Releases what api_reserve_parse() kept for r's "start" (the secret wiped); r may be unparsed. */
void api_reserve_req_clear(struct api_reserve_req *r);
int api_rollback_parse(const json_t *root, bool *force, struct api_error *err);

/* Formats e->message and returns neg_errno, for `return api_error_set(err, -EEXIST, ...)`. */
int api_error_set(struct api_error *e, int neg_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The answer to a "secret_file" that auth_secret_load_file() refused with
 * ret: one message, whatever the reason (missing, a symlink, a FIFO, the
 * wrong owner or mode, a bad length), so that a caller learns nothing
 * about the path beyond "not usable"; the agent's log has the reason.
 * Returns -ENOMEM (503) or -EINVAL (400).
 */
int api_error_secret_file(struct api_error *e, int ret, const char *path);

/* Called by list() once per migration; a non-zero return stops the walk and is returned. */
typedef int (*api_emit_fn)(void *ctx, const struct api_migration_view *v);

/*
 * Implemented by the agent.  All run in the event loop, must not block,
 * and receive the agent pointer given to api_server_create().
 */
struct api_ops {
	/*
	 * Starts a migration.  0: accepted (202).  -EEXIST: the id exists
	 * (409).  -EAGAIN: the agent cannot take it now (503).  -EINVAL:
	 * the request is valid JSON but unusable here (400).
	 */
	int (*start)(void *agent, const struct api_start_req *req, struct api_error *err);
	/*
	 * Optional: the part of a start with a "container" that may block
	 * (the runtime's state on its root, which may hang), run on the
	 * module's offload thread before start(), as a secret_file's read
	 * is.  It may use ctx (api_config.prepare_ctx: constant
	 * configuration) and req, nothing of the agent or the loop.  0: *out
	 * (may be NULL) goes to start() as req->prepared, then to
	 * prepared_free(); else the request is answered from ret and err
	 * (its status from the errno) and start() is not called.
	 */
	int (*start_prepare)(const void *ctx, const struct api_start_req *req, void **out,
			     struct api_error *err);
	void (*prepared_free)(void *prepared);
	/* Fills *out (pre-initialised with api_migration_view_init()); -ENOENT when unknown. */
	int (*get)(void *agent, const char *id, struct api_migration_view *out);
	/* Calls emit() for every migration the agent still knows, oldest first. */
	int (*list)(void *agent, api_emit_fn emit, void *ctx);
	/*
	 * Aborts.  0: abort under way (202).  -EALREADY: already in a final
	 * state, nothing done (200).  -ENOENT: unknown (404).
	 */
	int (*abort)(void *agent, const char *id, struct api_error *err);
	/*
	 * Source only (NULL on the dest: the route answers 405).  0: rollback
	 * under way (202).  -ENOENT (404).  -EBUSY: not possible in the
	 * current state, or the destination may run the workload (409).
	 * -EINPROGRESS: req->later is kept and answered later.
	 */
	int (*rollback)(void *agent, const struct api_rollback_req *req, struct api_error *err);
	/*
	 * Destination only (NULL: the routes under /v1/reservations answer
	 * 404, as an agent without them).  reserve: 0 and *out filled (201);
	 * -EAGAIN no slot, -ENOSPC no room (503 both), -EEXIST/-EBUSY (409).
	 * release: 0 (200), -ENOENT (404).
	 */
	int (*reserve)(void *agent, const struct api_reserve_req *req,
		       struct api_reservation_view *out, struct api_error *err);
	int (*release)(void *agent, const char *id, struct api_error *err);
	int (*list_reservations)(void *agent, api_emit_resv_fn emit, void *ctx);
	/*
	 * GET /metrics: appends the agent's own series (Prometheus text
	 * format, common/promtext.h) to out, after the ones every agent has
	 * (common/apimetrics.h); the module adds its refused requests last.
	 * Families must not repeat those names.  NULL: none of its own.
	 */
	int (*metrics)(void *agent, struct evbuffer *out);
};

struct api_config {
	enum api_role role;
	/* UNIX socket path; NULL: the role's default; "": no UNIX socket. */
	const char *socket_path;
	/*
	 * 0: 0600, or 0660 with a group.  The parent directory is created
	 * 0755 when missing.
	 */
	mode_t socket_mode;
	/*
	 * --api-group: NULL, only root may use the UNIX socket (or the
	 * inherited one); else also the members of this group (a name or a
	 * gid), and the socket file gets this group.  Checked on every
	 * request with the peer's credentials (SO_PEERCRED, SO_PEERGROUPS);
	 * others get a JSON 403.  An unknown group fails api_server_create()
	 * with -ENOENT.
	 */
	const char *group;
	/*
	 * > 0: an already listening stream socket (e.g. systemd's fd 3),
	 * used instead of socket_path.  api_server_create() takes ownership,
	 * also when it fails.
	 */
	int listen_fd;
	/* NULL: no TCP listener.  "host:port" (port 0 picks one). */
	const char *tcp;
	/*
	 * The TCP listener's TLS server context (tls_ctx_new(TLS_SERVER)),
	 * borrowed for the server's lifetime, and the certificate names
	 * allowed to call (borrowed; at least one with TLS).  NULL: plain
	 * HTTP, refused (-EPERM) unless insecure_tcp and the listener is on
	 * loopback.
	 */
	struct ssl_ctx_st *tls;
	const char *const *allow;
	size_t nallow;
	bool insecure_tcp;
	size_t max_body;    /* 0: API_BODY_MAX_DEFAULT; at most API_BODY_MAX_LIMIT */
	unsigned timeout_s; /* idle connection timeout; 0: API_TIMEOUT_DEFAULT_S */
	/* Testing: each secret_file read waits this long first, as on a slow mount. */
	unsigned int test_secret_delay_ms;
	/* Given to api_ops.start_prepare on the offload thread; must not change. */
	const void *prepare_ctx;
	/*
	 * A destination agent whose workers take a lazy dump (FEAT_LAZY_DUMP):
	 * said in GET /v1/health, so a source can dump plainly for one that
	 * does not before it freezes anything.
	 */
	bool lazy_dump;
};

struct api_server;

/*
 * Creates the listeners and starts serving on base.  A stale UNIX socket
 * (nothing accepts on it) is replaced; a live one is -EADDRINUSE; a path
 * that exists and is not a socket is -EEXIST.  ops and agent must outlive
 * the server.  Caller owns *out.
 */
int api_server_create(struct event_base *base, const struct api_config *cfg,
		      const struct api_ops *ops, void *agent, struct api_server **out);

/*
 * Closes the listeners and open connections, and removes the UNIX socket if
 * it is still the one this server created.  Not from inside an api_ops
 * callback.  NULL is fine.
 */
void api_server_destroy(struct api_server *s);

/* The TCP port actually bound, or -ENOENT without a TCP listener. */
int api_server_tcp_port(const struct api_server *s);

/* The UNIX socket path served, or NULL. */
const char *api_server_socket_path(const struct api_server *s);

#endif
