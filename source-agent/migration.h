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
 * Ownership: the list owns its migrations; a migration owns its imgmap,
 * secret and handover.  Sessions and the handover borrow a migration.  A
 * map job in flight belongs to the offload (offload.h), not to the
 * migration: the migration only points at it until it comes back or is
 * let go (src_mig_map_cancel()).
 *
 * Threading: everything here runs on the event loop's thread; only the
 * map job's work runs on the offload thread, on copies of what it needs.
 */
#ifndef RDMIG_SRC_MIGRATION_H
#define RDMIG_SRC_MIGRATION_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "api.h"
#include "auth.h"
#include "criurun.h"
#include "imgmap.h"
#include "offload.h"
#include "util.h"

enum src_mig_state {
	SRC_MIG_DUMPING, /* the agent's criu dump runs; not mapped yet */
	SRC_MIG_MAPPING, /* the offload thread maps and checksums the images */
	SRC_MIG_READY,	 /* mapped, waiting for a destination */
	SRC_MIG_SERVING, /* a destination is authenticated and fetching */
	SRC_MIG_DONE,	 /* the destination has every page, verified */
	SRC_MIG_FAILED,
	SRC_MIG_ABORTED,     /* aborted through the API: unmapped, refused to peers */
	SRC_MIG_RESTORING,   /* rollback: criu restore runs on the source */
	SRC_MIG_ROLLED_BACK, /* the workload runs on the source again */
	/*
	 * Post-copy, its destination's connection lost (or the agent
	 * restarted while it served): still mapped, waiting for that
	 * destination to reconnect and resume (Attach, FEAT_RESUME); no
	 * fresh destination may take it.
	 */
	SRC_MIG_PAUSED,
	/*
	 * Waiting in the agent's queue (design.md §7.1): for a slot on its
	 * destination agent or in this agent (--max-migrations), or, its
	 * reservation granted, for a dump slot (--max-dumps).  Nothing is
	 * frozen, nothing runs, nothing is on disk for it.
	 */
	SRC_MIG_QUEUED,
};

/* Why a queued migration waits (its status JSON's queue.reason). */
enum src_queue_reason {
	SRC_QUEUE_SLOT,	  /* its destination agent's --max-migrations is full */
	SRC_QUEUE_SOURCE, /* this agent's --max-migrations is full */
	SRC_QUEUE_DUMP,	  /* reserved there; --max-dumps dumps run here */
};

#define SRC_MIG_ERROR_MAX 512

struct api_later;
struct src_agent;
struct src_handover;
struct src_lazydump;

/* The container of a migration, kept in its record for the rollback. */
struct src_container {
	char id[CONTAINER_ID_MAX + 1]; /* "": not a container */
	char root[PATH_MAX];	       /* runc --root; "": runc's default */
	char bundle[PATH_MAX];	       /* on this host, from runc's state */
};
struct src_map_job;
struct src_records;

/*
 * What the destination agent last reported through the handover
 * (handover.h); numbers are -1 until it reported them.
 */
struct src_dest_report {
	char state[16];	 /* its API state, "unreachable", or "" before it answered */
	char error[256]; /* its "error", or "" */
	bool seen;	 /* a migration resource was read at least once */
	int64_t pages_total;
	int64_t pages_fetched;
	int64_t bytes;
	int64_t faults;
	int64_t fault_p50_us;
	int64_t fault_p99_us;
	int64_t restore_ms;
	int64_t resumed_ms;  /* from accepting the handover to the workload running there */
	int64_t received_ms; /* from accepting the handover to its images in */
};

struct src_migration {
	TAILQ_ENTRY(src_migration) link;
	char id[AUTH_MIGRATION_ID_MAX + 1];
	char *dir;
	struct src_agent *agent; /* borrowed, for the API's callbacks; NULL: --migration */
	char *dest;		 /* the destination agent's API "host:port" (handover), or NULL */
	struct src_handover *handover; /* owned; NULL without a destination agent */
	/*
	 * The API request answered once the destination agent spoke: the
	 * start while reserving, a rollback while asking (api.h), or NULL.
	 */
	struct api_later *later;
	struct auth_secret *secret;
	struct imgmap *map;	     /* NULL until mapped, and once final */
	struct src_map_job *map_job; /* in flight (the offload's), or NULL */
	/* The checkpoint registered before a destination connects (prereg.h), or NULL; owned. */
	struct src_prereg *prereg;
	enum src_mig_state state; /* written by src_mig_set_state() only */
	/* Borrowed: where the record is kept (records.h); NULL: not kept (--migration). */
	struct src_records *records;
	/*
	 * The agent restarted while this migration's rollback restore ran:
	 * whether the process runs again is unknown, so no second restore.
	 */
	bool restore_interrupted;
	/*
	 * The images' digest (imgmap's) once mapped, kept in the record; a
	 * migration reloaded after a restart must map to the same one.
	 */
	uint64_t digest;
	pid_t pid; /* dumped by the agent; 0: images given */
	/*
	 * A container checkpointed with runc (design.md §12); id "" for a
	 * pid.  pid is then its init's, so that everything keyed on "dumped
	 * by the agent" holds; its rollback is a runc restore, never criu's.
	 */
	struct src_container ctr;
	/*
	 * criu dump --lazy-pages (design.md §11): the tree stays stopped on
	 * this host with its memory, pulled into lazy's stage during
	 * post-copy.  lazy is owned; NULL for a plain dump.  The tree's root
	 * start time (proctree_start_time()) and the page server's port go
	 * into the record: a restarted agent takes the stopped tree again
	 * only if the pid still names that process (src_lazydump_adopt()).
	 */
	bool lazy_dump;
	bool lazy_auto; /* lazy_dump was the agent's choice, not the request's */
	struct src_lazydump *lazy;
	uint64_t lazy_tree_start;
	int lazy_port;
	/*
	 * Pre-copy (design.md §13): the request's precopy (API_PRECOPY_*),
	 * the criu pre-dump rounds run into <dir>/round-K so far, when each
	 * started (monotonic), and the pages the final dump wrote (-1: none yet).
	 */
	int precopy;
	struct api_precopy_round rounds[API_PRECOPY_MAX];
	size_t nr_rounds;
	uint64_t round_start_ns[API_PRECOPY_MAX];
	int64_t final_pages;
	/* The rounds are done; the final dump waits for their mapping (prereg.h). */
	bool dump_waits;
	/*
	 * The final dump waits for the destination agent's word that it still
	 * holds the reservation (asked), or has it (checked).
	 */
	bool final_asked;
	bool final_checked;
	bool images_complete;	   /* a plain dump that succeeded (or images given) */
	struct src_criu_opts criu; /* for the dump and a rollback's restore */
	struct criuproc *job;	   /* criu dump or restore running, or NULL */
	int64_t freeze_ms;	   /* criu dump's run time; -1: not dumped by the agent */
	uint64_t freeze_start_ns;  /* monotonic, when criu dump started; 0: no dump */
	int64_t handover_ms;	   /* from the freeze to the handover request; -1 */
	int64_t early_dest_ms;	   /* from the freeze to an early destination's proof; -1 */
	int64_t register_ms;	   /* the serving session's own registration (0: ahead); -1 */
	struct src_dest_report dr; /* the destination agent's view */
	/*
	 * Reserved, its destination's worker started at the reservation: the
	 * tick that waits, unfrozen, for it to authenticate before the dump
	 * (api_glue.c); NULL otherwise.  Owned.
	 */
	struct event *early_wait;
	uint64_t early_wait_ns; /* when that wait began (monotonic) */
	/*
	 * Pre-copy: the tick that holds the final dump, unfrozen, while the
	 * held destination copies the rounds (FEAT_ROUNDS); rounds_waited once
	 * that wait is over.  Owned.
	 */
	struct event *rounds_wait;
	uint64_t rounds_wait_ns;
	uint64_t rounds_wait_max_ms;
	uint64_t rounds_stop_ns; /* RoundsStop sent (monotonic), 0 before */
	bool rounds_waited;
	bool busy;	       /* a session holds it */
	bool verify;	       /* page checksums computed: offered to destinations */
	uint64_t lazy_bytes;   /* the map's, kept after it is released */
	uint64_t reads_served; /* TCP ReadReqs answered */
	uint64_t bytes_served; /* by ReadResp */
	uint64_t started_ns;
	uint64_t done_ns;
	int64_t created_unix_ms;  /* wall clock */
	int64_t finished_unix_ms; /* 0: not final */
	char peer[128];		  /* the last authenticated destination, "" before */
	char error[SRC_MIG_ERROR_MAX];
	/* The destination's last Progress (or its Done): pages installed there. */
	bool has_progress;
	uint64_t prog_pages;
	uint64_t prog_bytes;
	uint64_t prog_faults;
	/* Pauses (SRC_MIG_PAUSED): the last one's reason and start, how many, how long in all. */
	char pause_reason[256];
	int64_t pause_since_unix_ms; /* wall clock; 0: not paused now */
	uint64_t pause_since_ns;     /* monotonic */
	uint32_t pauses;
	uint64_t paused_ns; /* ended pauses only */
	/* Reloaded from a record that served: paused once mapped, for its destination. */
	bool pause_when_mapped;
	/*
	 * Reloaded from a record that was paused (wall clock; 0: not): that
	 * pause goes on once mapped, counted once and timed from its start.
	 */
	int64_t pause_resume_unix_ms;
	/*
	 * Queued (SRC_MIG_QUEUED): why, since when (wall clock), whether its
	 * reservation is being asked for now, and when it may be asked again
	 * (monotonic) after backoff_ms.  FIFO: the agent's list keeps the
	 * order the migrations were started in.
	 */
	enum src_queue_reason queue_reason;
	int64_t queue_since_unix_ms;
	bool queue_asking;
	uint64_t queue_retry_ns;
	unsigned int queue_backoff_ms;
	/*
	 * At its last refusal, this agent's migrations to the same
	 * destination that held a slot there: one fewer, and it asks at once.
	 */
	unsigned int queue_dest_busy;
	bool queue_ok;		   /* the request's "queue": it may wait rather than be refused */
	unsigned int dump_retries; /* criu dumps run again after a collision (api_glue.c) */
};

TAILQ_HEAD(src_mig_list, src_migration);

const char *src_mig_state_str(enum src_mig_state st);
/* The state named s (src_mig_state_str()'s words): 0, or -EINVAL. */
int src_mig_state_parse(const char *s, enum src_mig_state *out);

/*
 * The one way a migration changes state: only the transitions of the
 * table in migration.c are taken (-EINVAL and an error logged otherwise),
 * each logged, and the record saved when the migration has one.  Set
 * error, times and flags first: the record is written from m as it is.
 */
int src_mig_set_state(struct src_migration *m, enum src_mig_state st);

/*
 * Pauses m (serving or, reloaded after a restart, ready) with why: its
 * destination runs the workload and may reconnect.  Logged, counted.
 */
void src_mig_pause(struct src_migration *m, const char *why);

/*
 * src_mig_pause() for a migration whose record was paused since
 * since_unix_ms (wall clock) when the agent stopped: the same pause goes
 * on, not counted again, its time counted from since_unix_ms.  0 (an
 * older record, or one not paused): a new pause, as src_mig_pause().
 */
void src_mig_pause_since(struct src_migration *m, const char *why, int64_t since_unix_ms);

/*
 * Loads a --migration / "secret_file" secret (auth_secret_load_file(): a
 * file that breaks AUTH_SECRET_FILE_RULE is refused).  Caller owns *out.
 */
int src_mig_load_secret(const char *id, const char *secret_file, struct auth_secret **out);

/*
 * A migration of dir that is not mapped yet (state dumping); takes
 * ownership of secret (also on failure).
 */
int src_mig_new(const char *id, const char *dir, struct auth_secret *secret, bool page_hashes,
		struct src_migration **out);
/*
 * The result of src_mig_map_start(), on the loop: ret 0, m is ready (its
 * map set); < 0, m is still mapping, and the callee decides its fate.
 */
typedef void (*src_mig_mapped_fn)(struct src_migration *m, int ret);

/*
 * Maps and checksums m's images on the offload thread o, without blocking
 * the loop; m is mapping until cb runs.  delay_ms (testing) makes the job
 * wait that long first.  src_mig_map_cancel() lets the job go.
 */
int src_mig_map_start(struct src_migration *m, struct offload *o, unsigned int delay_ms,
		      src_mig_mapped_fn cb);

/*
 * Lets m's map job go, if any: cb will not be called; the job stops early
 * and its result is released when it comes back.  src_mig_finish(),
 * src_mig_set_aborted() and src_mig_destroy() call it.
 */
void src_mig_map_cancel(struct src_migration *m);

/*
 * Maps dir and takes ownership of secret (also on failure).  page_hashes:
 * compute per-page checksums so destinations can verify every page.
 * Blocks while the images are read and checksummed: for the agent's
 * startup (--migration), before the loop runs.
 */
int src_mig_create(const char *id, const char *dir, struct auth_secret *secret, bool page_hashes,
		   struct src_migration **out);
void src_mig_destroy(struct src_migration *m);

/*
 * Marks a migration that no session holds any more aborted, with why, and
 * releases its mapping and secret; the images stay on disk.
 */
void src_mig_set_aborted(struct src_migration *m, const char *why);

/*
 * Makes m final (failed, rolled back...) with why (NULL: no error), and
 * releases its mapping and, unless it is done, its secret (a done one
 * keeps it until m is destroyed: see session.c's sess_answer_done());
 * the images stay on disk.
 */
void src_mig_finish(struct src_migration *m, enum src_mig_state st, const char *why);

struct src_migration *src_mig_find(struct src_mig_list *list, const char *id);
/* Done, failed, aborted or rolled back: nothing more happens to it. */
bool src_mig_final(const struct src_migration *m);
bool src_mig_final_state(enum src_mig_state st);
/*
 * A destination fetches it (the workload may run there on this source's
 * pages), or criu runs for it: a stopping agent waits for these.
 */
bool src_mig_in_progress(const struct src_migration *m);
/*
 * The state a record gave m (records.h), set once when the agent starts,
 * before anything acts on m: not a transition, and not saved again.
 */
void src_mig_reloaded(struct src_migration *m, enum src_mig_state st);
/* The final migration that finished first, or NULL. */
struct src_migration *src_mig_oldest_final(struct src_mig_list *list);
/* True when every migration in the list is done. */
bool src_mig_all_done(const struct src_mig_list *list);

/* Wall clock, ms since the epoch. */
int64_t src_unix_ms(void);

#endif
