// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * supervisor: rdmig-dest --serve (see supervisor.h).
 */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "criucheck.h"
#include "log.h"
#include "promtext.h"
#include "svcmgr.h"
#include "progress.h"
#include "proctree.h"
#include "safepath.h"
#include "tls.h"
#include "util.h"

extern char **environ;

/* Finished migrations kept for GET; older ones are forgotten. */
#define SUP_KEEP_FINAL 64
/*
 * After SIGTERM, how long workers get to stop: their own grace for killed
 * processes (10 s) plus the wait for a criu restore still running (30 s).
 */
#define SUP_STOP_WAIT_S 45
/* Progress bytes read per wakeup: a flooding worker cannot starve the API. */
#define SUP_READ_BUDGET (64 * 1024)
/* What is left in the pipe of a worker that exited; bounded all the same. */
#define SUP_READ_LAST (1024 * 1024)
/* Malformed progress lines logged per migration; the rest are only counted. */
#define SUP_BAD_LINES_LOGGED 5
/* The worker's fds for the progress pipe, the secret pipe and the guard's takeover channel. */
#define SUP_CHILD_PROGRESS_FD 3
#define SUP_CHILD_SECRET_FD   4
#define SUP_CHILD_GUARD_FD    5
/*
 * Workers started for one migration to take over from a dead one's guard:
 * beyond this, a worker that dies at once each time is not started again
 * (the guard then stops the processes).
 */
#define SUP_TAKEOVERS_MAX 16
/* Pipe ends meant for the child are moved above this, clear of 3, 4 and 5. */
#define SUP_FD_FLOOR	      10
#define SUP_ARGV_MAX	      48
#define SUP_DATA_PORT_DEFAULT 7471

struct sup;

/* One migration: its worker while it runs, its record afterwards. */
struct sup_mig {
	TAILQ_ENTRY(sup_mig) link;
	struct sup *sup;
	char id[API_ID_MAX + 1];
	char source[API_HOSTPORT_MAX + 1]; /* as the request gave it */
	char images_dir[PATH_MAX];
	char work_dir[PATH_MAX];
	enum api_transport transport;
	bool verify;
	bool restore;
	/* A container restored with runc (design.md §12): id "" for a process tree. */
	char ctr_id[CONTAINER_ID_MAX + 1];
	char ctr_root[PATH_MAX]; /* runc --root, or "" */
	char ctr_bundle[PATH_MAX];
	/* The state the worker reported last; the verdict once it exited. */
	enum api_state state;
	bool final;
	char error[PROGRESS_ERROR_MAX];
	/* The worker's pauses: the current one's reason and start, how many, how long. */
	char pause_reason[PROGRESS_ERROR_MAX];
	int64_t pause_since_unix_ms;
	uint64_t pause_since_ns;
	uint64_t pauses;
	uint64_t paused_ns;
	enum api_state pre_pause; /* the state the pause interrupted */
	bool reported_done;
	bool reported_failed;
	bool abort_requested;
	bool shutdown; /* aborted because the agent stops */
	struct progress_counters c;
	int64_t restore_ms;
	int64_t resumed_ms;
	int64_t received_ms; /* accepted to the worker's "restoring": the images are in */
	int64_t created_unix_ms;
	int64_t finished_unix_ms;
	uint64_t t_accept_ns;
	uint64_t t_final_ns;
	/* the worker */
	pid_t pid;
	int pidfd;
	struct event *exit_ev;
	int prog_fd;
	struct event *prog_ev;
	struct evbuffer *prog_buf;
	bool prog_skip; /* dropping the rest of an oversized line */
	unsigned int bad_lines;
	bool pending; /* its source has not authenticated yet: counted in nr_pending */
	/*
	 * A worker that dies in post-copy is replaced (design.md §10.2): the
	 * new one is started from what the request gave (source, transport,
	 * id, directories, the secret, kept in memory here) and takes the
	 * userfaultfds from the old one's guard over tk_fd, our end of the
	 * guard's takeover channel (closed once the migration is final: a
	 * guard still waiting then stops the processes).
	 */
	int tk_fd;
	struct auth_secret *secret;
	char source_arg[API_HOSTPORT_MAX + 8]; /* the workers' --source */
	unsigned int takeovers;
	/*
	 * Started at its reservation (design.md §10.3): resv is that
	 * reservation until the POST adopts the worker (or it is released,
	 * expires, or the worker ends); early stays set until the adoption.
	 * criu is the start's, compared with the POST's.
	 */
	struct sup_resv *resv;
	bool early;
	bool resv_ended; /* stopped because its reservation was released or expired */
	struct api_criu_opts criu;
};

TAILQ_HEAD(sup_mig_list, sup_mig);

/*
 * A reservation: a source's claim on a slot and disk space before it
 * freezes the workload, until the migration's POST names it, the source
 * releases it, or its TTL runs out.
 */
struct sup_resv {
	TAILQ_ENTRY(sup_resv) link;
	struct sup *sup;
	char id[API_ID_MAX + 1];
	char migration[API_ID_MAX + 1];
	char images_dir[PATH_MAX];  /* as asked, or "" */
	char images_path[PATH_MAX]; /* where the images will go */
	char work_path[PATH_MAX];   /* "" : the images' */
	char bundle[PATH_MAX];	    /* the container's bundle checked, or "" */
	uint64_t bytes;
	unsigned int ttl_s;
	int64_t created_unix_ms;
	int64_t expires_unix_ms;
	struct event *timer;
	/* Its "start"'s worker, which holds the slot from then on (nr_running), or NULL. */
	struct sup_mig *early;
};

TAILQ_HEAD(sup_resv_list, sup_resv);

struct sup {
	const struct sup_config *cfg;
	struct event_base *base;
	struct api_server *api;
	SSL_CTX *tls; /* the TCP API's, or NULL */
	struct sup_mig_list migs;
	struct sup_resv_list resvs;
	unsigned int nr_resv;
	uint64_t resv_bytes;	 /* the reservations' estimates, together */
	unsigned int nr_running; /* workers alive, pending ones included */
	unsigned int nr_pending;
	unsigned int nr_final;
	uint64_t takeovers; /* workers started to take over, all migrations */
	struct event *sig_ev[2];
	struct event *stop_ev;
	bool stopping;
	char work_root[PATH_MAX];
	int root_fd; /* work_root, trusted: every directory is made beneath it */
	/* This binary's path at start, for the takeover workers; "" unknown. */
	char exe[PATH_MAX];
	struct criucheck *criu_check; /* the `criu check` made at start, owned; or NULL */
};

static int64_t sup_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sup_mig *sup_find(struct sup *s, const char *id)
{
	struct sup_mig *m;

	TAILQ_FOREACH(m, &s->migs, link)
	if (strcmp(m->id, id) == 0)
		return m;
	return NULL;
}

static void sup_mig_free(struct sup_mig *m)
{
	if (!m)
		return;
	if (m->exit_ev)
		event_free(m->exit_ev);
	if (m->prog_ev)
		event_free(m->prog_ev);
	if (m->prog_buf)
		evbuffer_free(m->prog_buf);
	if (m->pidfd >= 0)
		close(m->pidfd);
	if (m->prog_fd >= 0)
		close(m->prog_fd);
	if (m->tk_fd >= 0)
		close(m->tk_fd);
	auth_secret_free(m->secret);
	free(m);
}

/* ---- directories ---- */

/*
 * Creates the directory a start request names (want: absolute below the
 * work root, or relative to it; NULL: the migration's id) beneath the
 * root's fd, and writes its path into out.  It must not exist: the worker
 * writes received images, logs and its socket only where the agent made
 * a fresh directory, never into one someone else prepared.  Nothing
 * outside the work root is ever named: 403 (400 for a malformed name).
 */
/*
 * The path a request's directory will have (want as in sup_make_dir()),
 * into out, and *relp its part below the work root; nothing is created.
 */
static int sup_dir_path(const struct sup *s, const char *what, const char *want, const char *id,
			char *out, size_t len, const char **relp, struct api_error *err)
{
	const char *rel = want ? want : id;

	if (want && want[0] == '/' && (!safepath_below(s->work_root, want, &rel) || !*rel))
		return api_error_set(err, -EACCES,
				     "%s %s: not below the work root %s (--work-root): the agent "
				     "creates the directories it writes, below its root",
				     what, want, s->work_root);
	if (safepath_check_rel(rel) < 0)
		return api_error_set(err, -EINVAL,
				     "%s %s: give a path below the work root %s, without \".\", "
				     "\"..\" or empty components",
				     what, rel, s->work_root);
	if ((size_t)snprintf(out, len, "%s/%s", s->work_root, rel) >= len)
		return api_error_set(err, -EINVAL, "%s %s: path too long", what, rel);
	*relp = rel;
	return 0;
}

static int sup_make_dir(const struct sup *s, const char *what, const char *want, const char *id,
			char *out, size_t len, struct api_error *err)
{
	const char *rel;
	int fd, ret;

	ret = sup_dir_path(s, what, want, id, out, len, &rel, err);
	if (ret < 0)
		return ret;
	fd = safepath_mkdir(s->root_fd, rel, 0700);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	log_err("%s %s: cannot create it: %s", what, out, strerror(-fd));
	switch (fd) {
	case -EEXIST:
		return api_error_set(err, -EEXIST,
				     "%s %s exists: the agent receives only into a directory it "
				     "creates",
				     what, out);
	case -ELOOP:
		return api_error_set(err, -EACCES,
				     "%s %s: a symbolic link on the way (not followed below the "
				     "work root)",
				     what, out);
	case -ENOENT:
	case -ENOTDIR:
		return api_error_set(err, -EINVAL, "%s %s: its parent is not a directory: %s", what,
				     out, strerror(-fd));
	default:
		return api_error_set(err, -EIO, "%s %s: cannot create it: %s", what, out,
				     strerror(-fd));
	}
}

/* ---- the worker's view ---- */

static void sup_view(const struct sup_mig *m, struct api_migration_view *v)
{
	uint64_t end = m->final ? m->t_final_ns : now_ns();

	v->id = m->id;
	v->role = API_ROLE_DEST;
	v->state = m->state;
	v->error = m->error[0] && (m->final || m->reported_failed) ? m->error : NULL;
	v->source = m->source;
	v->transport = m->transport;
	v->images_dir = m->images_dir;
	if (m->ctr_id[0]) {
		v->container.runtime = API_CONTAINER_RUNTIME;
		v->container.id = m->ctr_id;
		v->container.root = m->ctr_root[0] ? m->ctr_root : NULL;
		v->container.bundle = m->ctr_bundle;
	}
	v->verify = m->verify;
	v->pages_total = m->c.pages_total;
	v->pages_fetched = m->c.pages_fetched;
	v->pages_remaining = m->c.pages_remaining;
	v->faults = m->c.faults;
	v->bytes = m->c.bytes;
	v->fault_p50_us = m->c.fault_p50_us;
	v->fault_p99_us = m->c.fault_p99_us;
	memcpy(v->fault_hist, m->c.fault_hist, sizeof(v->fault_hist));
	v->fault_sum_us = m->c.fault_sum_us;
	v->drain_depth = m->c.drain_depth;
	v->drain_chunk = m->c.drain_chunk;
	v->fault_lane_reads = m->c.fault_lane_reads;
	v->pages_local = m->c.pages_local;
	if (m->c.nr_ra_tasks) {
		struct readahead all = {0};

		memcpy(all.n, m->c.ra_faults, sizeof(all.n));
		v->ra_pattern = readahead_pattern_str(readahead_pattern(&all));
		v->ra_sequential = (int64_t)m->c.ra_faults[RA_SEQUENTIAL];
		v->ra_strided = (int64_t)m->c.ra_faults[RA_STRIDED];
		v->ra_random = (int64_t)m->c.ra_faults[RA_RANDOM];
		for (uint32_t i = 0; i < m->c.nr_ra_tasks && i < API_RA_TASKS; i++) {
			v->ra_tasks[i].pid = m->c.ra_tasks[i].pid;
			v->ra_tasks[i].pattern = readahead_pattern_str(m->c.ra_tasks[i].pattern);
			v->ra_tasks[i].window = m->c.ra_tasks[i].window;
			v->ra_tasks[i].stride = m->c.ra_tasks[i].stride;
			v->nr_ra_tasks = i + 1;
		}
	}
	v->created_unix_ms = m->created_unix_ms;
	v->finished_unix_ms = m->finished_unix_ms;
	v->total_ms = (int64_t)((end - m->t_accept_ns) / 1000000);
	v->restore_ms = m->restore_ms;
	v->resumed_ms = m->resumed_ms;
	v->received_ms = m->received_ms;
	if (m->state == API_STATE_PAUSED) {
		v->pause_reason = m->pause_reason;
		v->pause_since_unix_ms = m->pause_since_unix_ms;
	}
	v->pauses = m->pauses;
	v->paused_ms = (int64_t)(m->paused_ns / 1000000);
	v->takeovers = m->takeovers;
}

/* ---- progress from the worker ---- */

/* Past connecting, the worker's source has proven the secret: a running slot now. */
static void sup_mig_authenticated(struct sup_mig *m)
{
	if (!m->pending ||
	    progress_state_rank(m->state) <= progress_state_rank(API_STATE_CONNECTING))
		return;
	m->pending = false;
	m->sup->nr_pending--;
}

/*
 * Paused (the reason in the line's error) and back: the only way a state
 * goes back to one it had.  True when p was one of these.
 */
static bool sup_apply_pause(struct sup_mig *m, const struct progress_msg *p)
{
	struct timespec ts;

	if (p->state == API_STATE_PAUSED) {
		if (m->state == API_STATE_PAUSED)
			return true;
		clock_gettime(CLOCK_REALTIME, &ts);
		m->pre_pause = m->state;
		m->state = API_STATE_PAUSED;
		m->pause_since_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		m->pause_since_ns = now_ns();
		m->pauses++;
		snprintf(m->pause_reason, sizeof(m->pause_reason), "%s", p->error);
		log_warn("migration %s: paused: %s", m->id, m->pause_reason);
		return true;
	}
	if (m->state != API_STATE_PAUSED ||
	    (p->state != API_STATE_POSTCOPY && p->state != API_STATE_DRAINING))
		return false;
	m->paused_ns += now_ns() - m->pause_since_ns;
	m->state = progress_state_rank(p->state) > progress_state_rank(m->pre_pause) ? p->state
										     : m->pre_pause;
	log_info("migration %s: resumed after %.1f s paused", m->id,
		 (double)(now_ns() - m->pause_since_ns) / 1e9);
	return true;
}

static void sup_apply_state(struct sup_mig *m, const struct progress_msg *p)
{
	if (p->state == API_STATE_DONE || p->state == API_STATE_FAILED) {
		/* The verdict waits for the exit: a worker may still fail after "done". */
		if (m->reported_done || m->reported_failed)
			return;
		m->reported_done = p->state == API_STATE_DONE;
		m->reported_failed = p->state == API_STATE_FAILED;
		if (m->reported_failed)
			snprintf(m->error, sizeof(m->error), "%s",
				 p->error[0] ? p->error : "the worker reported a failure");
		log_info("migration %s: worker %d reports %s%s%s", m->id, (int)m->pid,
			 api_state_str(p->state), m->reported_failed ? ": " : "",
			 m->reported_failed ? m->error : "");
		return;
	}
	if (m->reported_done || m->reported_failed || sup_apply_pause(m, p) ||
	    progress_state_rank(p->state) <= progress_state_rank(m->state))
		return;
	m->state = p->state;
	sup_mig_authenticated(m);
	/* The worker reports each state as it enters it: these times have no tick in them. */
	if (p->state >= API_STATE_RESTORING && p->state <= API_STATE_DONE && m->received_ms < 0)
		m->received_ms = (int64_t)((now_ns() - m->t_accept_ns) / 1000000);
	if (p->state == API_STATE_POSTCOPY && m->resumed_ms < 0)
		m->resumed_ms = (int64_t)((now_ns() - m->t_accept_ns) / 1000000);
	if (p->state == API_STATE_POSTCOPY)
		log_info("migration %s: %s: the workload runs here, %" PRId64
			 " ms after the request",
			 m->id, api_state_str(p->state), m->resumed_ms);
	else
		log_info("migration %s: %s", m->id, api_state_str(p->state));
}

static void sup_handle_line(struct sup_mig *m, const char *line, size_t len)
{
	struct progress_msg p;
	int ret;

	ret = progress_decode(line, len, &p);
	if (ret < 0) {
		if (m->bad_lines++ < SUP_BAD_LINES_LOGGED)
			log_warn(
			    "migration %s: ignoring a malformed progress line of %zu bytes from "
			    "worker %d: %s",
			    m->id, len, (int)m->pid,
			    ret == -E2BIG ? "too long" : "not a progress object");
		return;
	}
	if (p.restore_ms >= 0 && m->restore_ms < 0)
		m->restore_ms = p.restore_ms;
	if (p.has_counters)
		m->c = p.c;
	if (p.has_state)
		sup_apply_state(m, &p);
}

/* Splits what arrived into lines, each bounded by PROGRESS_LINE_MAX. */
static void sup_parse_lines(struct sup_mig *m)
{
	size_t n;
	char *line;

	for (;;) {
		line = evbuffer_readln(m->prog_buf, &n, EVBUFFER_EOL_LF);
		if (!line) {
			if (evbuffer_get_length(m->prog_buf) > PROGRESS_LINE_MAX) {
				if (!m->prog_skip && m->bad_lines++ < SUP_BAD_LINES_LOGGED)
					log_warn("migration %s: worker %d sends a progress line "
						 "over %d bytes: dropping it",
						 m->id, (int)m->pid, PROGRESS_LINE_MAX);
				evbuffer_drain(m->prog_buf, evbuffer_get_length(m->prog_buf));
				m->prog_skip = true;
			}
			return;
		}
		if (m->prog_skip)
			m->prog_skip = false; /* the end of the oversized line */
		else
			sup_handle_line(m, line, n);
		free(line);
	}
}

/* Reads up to budget bytes: 1 at end of file, 0 otherwise, or a negative errno. */
static int sup_read_progress(struct sup_mig *m, size_t budget)
{
	size_t got = 0;
	int n, ret = 0;

	while (got < budget) {
		n = evbuffer_read(m->prog_buf, m->prog_fd, 4096);
		if (n > 0) {
			got += (size_t)n;
			sup_parse_lines(m);
			continue;
		}
		if (n == 0) {
			ret = 1;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			ret = -errno;
		break;
	}
	return ret;
}

static void sup_progress_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sup_mig *m = arg;
	int ret = sup_read_progress(m, SUP_READ_BUDGET);

	if (ret == 0)
		return;
	/* End of file or a broken pipe: the worker's exit (pidfd) decides the rest. */
	if (ret < 0)
		log_warn("migration %s: progress pipe of worker %d: %s", m->id, (int)m->pid,
			 strerror(-ret));
	event_del(m->prog_ev);
}

/* ---- the worker's exit ---- */

static int sup_start_worker(struct sup *s, struct sup_mig *m, const struct api_start_req *req,
			    struct api_error *err);
static void sup_resv_free(struct sup_resv *r);

static void sup_forget_old(struct sup *s)
{
	struct sup_mig *m, *next;

	for (m = TAILQ_FIRST(&s->migs); m && s->nr_final > SUP_KEEP_FINAL; m = next) {
		next = TAILQ_NEXT(m, link);
		if (!m->final)
			continue;
		TAILQ_REMOVE(&s->migs, m, link);
		s->nr_final--;
		log_debug("migration %s: forgotten (more than %d finished)", m->id, SUP_KEEP_FINAL);
		sup_mig_free(m);
	}
}

static void sup_verdict(struct sup_mig *m, int wstatus)
{
	char how[64];

	if (WIFEXITED(wstatus))
		snprintf(how, sizeof(how), "worker exited with status %d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(how, sizeof(how), "worker killed by signal %d", WTERMSIG(wstatus));
	else
		snprintf(how, sizeof(how), "worker ended with wait status %#x", wstatus);

	if (m->reported_done && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
		m->state = API_STATE_DONE;
		m->error[0] = '\0';
	} else if (m->abort_requested) {
		m->state = API_STATE_ABORTED;
		snprintf(m->error, sizeof(m->error), "%s",
			 m->shutdown ? "aborted: the destination agent is shutting down"
				     : "aborted through the API");
	} else {
		m->state = API_STATE_FAILED;
		if (!m->reported_failed)
			snprintf(m->error, sizeof(m->error), "%s%s", how,
				 m->reported_done ? " after reporting done" : "");
	}
	m->final = true;
	m->t_final_ns = now_ns();
	m->finished_unix_ms = sup_unix_ms();
	/* No worker will take over any more: a guard still holding processes stops them. */
	if (m->tk_fd >= 0) {
		close(m->tk_fd);
		m->tk_fd = -1;
	}
	if (m->state == API_STATE_DONE)
		log_info("migration %s: done in %" PRIu64 " ms (%" PRIu64 " pages, %" PRIu64
			 " faults); %s",
			 m->id, (m->t_final_ns - m->t_accept_ns) / 1000000, m->c.pages_fetched,
			 m->c.faults, how);
	else
		log_info("migration %s: %s: %s (%s; its log: %s/rdmig-dest.log)", m->id,
			 api_state_str(m->state), m->error, how, m->work_dir);
}

/*
 * A migration's first worker runs this very binary (/proc/self/exe, even if
 * the file was replaced since): it speaks the argv and pipes of the
 * supervisor that starts it.  A worker taking over runs the file at this
 * binary's path as it is now: the takeover is how a binary upgraded under
 * a running migration comes into use (design.md §10.2); the file gone, this
 * binary again.
 */
static const char *sup_worker_exe(const struct sup *s, bool takeover)
{
	if (takeover && s->exe[0] && access(s->exe, X_OK) == 0)
		return s->exe;
	return "/proc/self/exe";
}

/*
 * The workload runs here and its worker died without a verdict (a crash,
 * a SIGKILL, an upgrade): a new worker may take over from its guard.
 */
static bool sup_may_take_over(const struct sup *s, const struct sup_mig *m)
{
	enum api_state st = m->state == API_STATE_PAUSED ? m->pre_pause : m->state;

	return !s->stopping && !m->abort_requested && m->tk_fd >= 0 && !m->reported_done &&
	       !m->reported_failed && (st == API_STATE_POSTCOPY || st == API_STATE_DRAINING) &&
	       m->takeovers < SUP_TAKEOVERS_MAX;
}

/* Starts the worker that takes over; 0, or a negative errno (the verdict follows then). */
static int sup_take_over(struct sup *s, struct sup_mig *m, int wstatus)
{
	struct api_error err = {0};
	pid_t old = m->pid;
	int ret;

	event_free(m->exit_ev);
	m->exit_ev = NULL;
	event_free(m->prog_ev);
	m->prog_ev = NULL;
	evbuffer_free(m->prog_buf);
	m->prog_buf = NULL;
	m->prog_skip = false;
	ret = sup_start_worker(s, m, NULL, &err);
	if (ret < 0) {
		log_err("migration %s: worker %d died in post-copy and no worker can take over: "
			"%s",
			m->id, (int)old, err.message[0] ? err.message : strerror(-ret));
		return ret;
	}
	m->takeovers++;
	s->takeovers++;
	log_warn("migration %s: worker %d died in post-copy (%s %d); worker %d (%s) takes over "
		 "from its guard (takeover %u)",
		 m->id, (int)old, WIFSIGNALED(wstatus) ? "signal" : "exit status",
		 WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus), (int)m->pid,
		 sup_worker_exe(s, true), m->takeovers);
	return 0;
}

static void sup_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sup_mig *m = arg;
	struct sup *s = m->sup;
	int wstatus = 0;
	pid_t p;

	do
		p = waitpid(m->pid, &wstatus, WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p == 0)
		return; /* not yet: the event is persistent */
	if (p < 0) {
		log_err("migration %s: worker %d: waitpid: %s", m->id, (int)m->pid,
			strerror(errno));
		wstatus = W_EXITCODE(255, 0);
	}
	/* Everything the worker wrote is in the pipe now: read it before judging. */
	if (m->prog_ev) {
		event_del(m->prog_ev);
		sup_read_progress(m, SUP_READ_LAST);
	}
	event_del(m->exit_ev);
	close(m->pidfd);
	m->pidfd = -1;
	close(m->prog_fd);
	m->prog_fd = -1;
	if (sup_may_take_over(s, m) && sup_take_over(s, m, wstatus) == 0)
		return;
	sup_verdict(m, wstatus);
	if (m->resv) {
		log_info("reservation %s for migration %s ends with its worker", m->resv->id,
			 m->id);
		sup_resv_free(m->resv);
	}
	if (m->pending) {
		m->pending = false;
		s->nr_pending--;
	}
	s->nr_running--;
	s->nr_final++;
	sup_forget_old(s);
	if (s->stopping && s->nr_running == 0)
		event_base_loopexit(s->base, NULL);
}

/* ---- starting a worker ---- */

/* The argv of a worker; every string lives here or in the migration. */
struct sup_argv {
	char *v[SUP_ARGV_MAX];
	int n;
	char source[API_HOSTPORT_MAX + 8];
	char log[PATH_MAX + 32];
	char secret_fd[16];
	char progress_fd[16];
	char guard_fd[16];
	char connect_timeout[16];
	char pause_limit[16];
	char dead_after[16];
	char drain_depth[16];
	char drain_chunk[24];
	char cgroups[64];
	char level[32];
	char runc_cgroups[64];
};

static void sup_arg(struct sup_argv *a, const char *s)
{
	/* Callers stay well below the bound; the last slot is the NULL. */
	if (a->n < SUP_ARGV_MAX - 1)
		a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

/*
 * The criu options criu and runc spell alike.  One argv element each:
 * "--criu-opt X" would let X be read as an option.
 */
static void sup_criu_flags(struct sup_argv *a, const struct api_criu_opts *c)
{
	if (c->shell_job)
		sup_arg(a, "--criu-opt=--shell-job");
	if (c->tcp_established)
		sup_arg(a, "--criu-opt=--tcp-established");
	if (c->ext_unix_sk)
		sup_arg(a, "--criu-opt=--ext-unix-sk");
	if (c->file_locks)
		sup_arg(a, "--criu-opt=--file-locks");
}

/* The options the agent was given for its workers' connection and drain. */
static void sup_tuning_args(const struct sup_config *cfg, struct sup_argv *a)
{
	if (cfg->dead_after_s) {
		snprintf(a->dead_after, sizeof(a->dead_after), "%u", cfg->dead_after_s);
		sup_arg(a, "--dead-after");
		sup_arg(a, a->dead_after);
	}
	if (cfg->drain_depth) {
		snprintf(a->drain_depth, sizeof(a->drain_depth), "%u", cfg->drain_depth);
		sup_arg(a, "--drain-depth");
		sup_arg(a, a->drain_depth);
	}
	if (cfg->drain_chunk) {
		snprintf(a->drain_chunk, sizeof(a->drain_chunk), "%" PRIu64, cfg->drain_chunk);
		sup_arg(a, "--drain-chunk");
		sup_arg(a, a->drain_chunk);
	}
}

/*
 * A container's worker restores it with runc: the criu options in runc's
 * spelling (sup_container() refused those runc has none for).
 */
static int sup_build_runc_argv(const struct sup *s, const struct sup_mig *m,
			       const struct api_criu_opts *c, struct sup_argv *a)
{
	if (s->cfg->runc) {
		sup_arg(a, "--runc");
		sup_arg(a, s->cfg->runc);
	}
	sup_arg(a, "--container");
	sup_arg(a, m->ctr_id);
	sup_arg(a, "--bundle");
	sup_arg(a, m->ctr_bundle);
	if (m->ctr_root[0]) {
		sup_arg(a, "--runc-root");
		sup_arg(a, m->ctr_root);
	}
	sup_criu_flags(a, c);
	if (c->manage_cgroups) {
		snprintf(a->runc_cgroups, sizeof(a->runc_cgroups),
			 "--criu-opt=--manage-cgroups-mode=%s", c->manage_cgroups);
		sup_arg(a, a->runc_cgroups);
	}
	return 0;
}

/* req NULL: the worker takes over from the guard of one that died (no restore then). */
static int sup_build_argv(const struct sup *s, const struct sup_mig *m,
			  const struct api_start_req *req, struct sup_argv *a)
{
	const struct api_criu_opts *c;
	int level;

	a->n = 0;
	if ((size_t)snprintf(a->log, sizeof(a->log), "%s/rdmig-dest.log", m->work_dir) >=
	    sizeof(a->log))
		return -ENAMETOOLONG;
	snprintf(a->source, sizeof(a->source), "%s", m->source_arg);
	snprintf(a->secret_fd, sizeof(a->secret_fd), "%d", SUP_CHILD_SECRET_FD);
	snprintf(a->progress_fd, sizeof(a->progress_fd), "%d", SUP_CHILD_PROGRESS_FD);
	snprintf(a->guard_fd, sizeof(a->guard_fd), "%d", SUP_CHILD_GUARD_FD);
	sup_arg(a, "rdmig-dest");
	sup_arg(a, "-D");
	sup_arg(a, m->images_dir);
	sup_arg(a, "-W");
	sup_arg(a, m->work_dir);
	sup_arg(a, "--source");
	sup_arg(a, a->source);
	sup_arg(a, "-t");
	sup_arg(a, api_transport_str(m->transport));
	/* The agent's own identity: the source admits it by --allow-dest. */
	if (m->transport == API_TRANSPORT_TLS) {
		sup_arg(a, "--tls-cert");
		sup_arg(a, s->cfg->tls->cert);
		sup_arg(a, "--tls-key");
		sup_arg(a, s->cfg->tls->key);
		sup_arg(a, "--tls-ca");
		sup_arg(a, s->cfg->tls->ca);
	}
	sup_arg(a, "-m");
	sup_arg(a, m->id);
	sup_arg(a, "--secret-fd");
	sup_arg(a, a->secret_fd);
	sup_arg(a, "--progress-fd");
	sup_arg(a, a->progress_fd);
	sup_arg(a, req ? "--guard-fd" : "--takeover-fd");
	sup_arg(a, a->guard_fd);
	sup_arg(a, "-o");
	sup_arg(a, a->log);
	if (m->verify)
		sup_arg(a, "--verify");
	if (m->early && req)
		sup_arg(a, "--early");
	if (s->cfg->connect_timeout_s) {
		snprintf(a->connect_timeout, sizeof(a->connect_timeout), "%u",
			 s->cfg->connect_timeout_s);
		sup_arg(a, "--connect-timeout");
		sup_arg(a, a->connect_timeout);
	}
	if (s->cfg->pause_limit_s >= 0) {
		snprintf(a->pause_limit, sizeof(a->pause_limit), "%d", s->cfg->pause_limit_s);
		sup_arg(a, "--pause-limit");
		sup_arg(a, a->pause_limit);
	}
	sup_tuning_args(s->cfg, a);
	if (s->cfg->verbose)
		sup_arg(a, "-v");
	if (!req || !m->restore)
		return 0;
	c = &req->criu;
	sup_arg(a, "--restore");
	if (m->ctr_id[0])
		return sup_build_runc_argv(s, m, c, a);
	if (s->cfg->criu) {
		sup_arg(a, "--criu");
		sup_arg(a, s->cfg->criu);
	}
	sup_criu_flags(a, c);
	if (c->link_remap)
		sup_arg(a, "--criu-opt=--link-remap");
	if (c->manage_cgroups) {
		snprintf(a->cgroups, sizeof(a->cgroups), "--criu-opt=--manage-cgroups=%s",
			 c->manage_cgroups);
		sup_arg(a, a->cgroups);
	}
	/* The request's level, else the agent's; the worker's default otherwise. */
	level = c->log_level >= 0 ? c->log_level : s->cfg->criu_log_level;
	if (level >= 0) {
		snprintf(a->level, sizeof(a->level), "--criu-log-level=%d", level);
		sup_arg(a, a->level);
	}
	return 0;
}

/* Moves fd above SUP_FD_FLOOR (close-on-exec), so dup2 onto 3 and 4 cannot clash. */
static int sup_fd_high(int *fd)
{
	int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, SUP_FD_FLOOR);

	if (nfd < 0)
		return -errno;
	close(*fd);
	*fd = nfd;
	return 0;
}

/*
 * posix_spawn of the worker with fds 0/1 on /dev/null, 2 the agent's log,
 * 3 the progress pipe, 4 the secret pipe, 5 the guard's takeover channel,
 * nothing else; default signal
 * handling; its own process group, so a terminal's ^C reaches the
 * supervisor only, which then stops the workers in order.
 */
static int sup_spawn(struct sup_mig *m, const char *exe, char *const argv[], int prog_w,
		     int secret_r, int chan)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int ret;

	sigemptyset(&none);
	/*
	 * An early worker gets SIGUSR1 (adopted) blocked: one sent before it
	 * set its handler up stays pending instead of killing it.
	 */
	if (m->early)
		sigaddset(&none, SIGUSR1);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	ret = posix_spawnattr_setsigmask(&attr, &none);
	if (!ret)
		ret = posix_spawnattr_setsigdefault(&attr, &dfl);
	if (!ret)
		ret = posix_spawnattr_setpgroup(&attr, 0);
	if (!ret)
		ret = posix_spawnattr_setflags(
		    &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	if (!ret)
		ret = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (!ret)
		ret =
		    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	if (!ret)
		ret = posix_spawn_file_actions_adddup2(&fa, prog_w, SUP_CHILD_PROGRESS_FD);
	if (!ret)
		ret = posix_spawn_file_actions_adddup2(&fa, secret_r, SUP_CHILD_SECRET_FD);
	if (!ret)
		ret = posix_spawn_file_actions_adddup2(&fa, chan, SUP_CHILD_GUARD_FD);
	if (!ret)
		ret = posix_spawn_file_actions_addclosefrom_np(&fa, SUP_CHILD_GUARD_FD + 1);
	if (ret) {
		ret = -ret;
		log_err("migration %s: worker spawn setup: %s", m->id, strerror(-ret));
		goto out;
	}
	ret = posix_spawn(&m->pid, exe, &fa, &attr, argv, environ);
	if (ret) {
		ret = -ret;
		m->pid = 0;
		log_err("migration %s: cannot start a worker (%s): %s", m->id, exe, strerror(-ret));
		goto out;
	}
out:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return ret;
}

/*
 * The secret goes into a pipe before the worker exists: at most
 * AUTH_SECRET_MAX bytes, which a pipe buffers whole, and the write end is
 * closed at once, so the worker reads it to end of file.
 */
static int sup_keep_secret(struct sup_mig *m, const struct api_start_req *req,
			   struct api_error *err)
{
	int ret;

	/* A secret_file's bytes are in req->secret: the API module read it off the loop. */
	if (!req->secret)
		return api_error_set(err, -EINVAL,
				     "give \"secret\" or \"secret_file\": the destination agent "
				     "has no default secret");
	ret = auth_secret_from_buf(req->secret, req->secret_len, &m->secret);
	if (ret < 0)
		return api_error_set(err, ret == -ENOMEM ? -ENOMEM : -EINVAL,
				     "field \"secret\" is not usable: %s", strerror(-ret));
	return 0;
}

static int sup_secret_pipe(const struct auth_secret *secret, int *read_end, struct api_error *err)
{
	int p[2] = {-1, -1}, ret;

	if (pipe2(p, O_CLOEXEC) < 0) {
		ret = -errno;
		log_err("secret pipe: %s", strerror(-ret));
		ret = api_error_set(err, ret, "cannot create a pipe: %s", strerror(-ret));
		goto out;
	}
	ret = auth_secret_write_fd(secret, p[1]);
	if (ret == 0)
		ret = sup_fd_high(&p[0]);
	if (ret < 0) {
		ret = api_error_set(err, -EIO, "cannot hand the secret over: %s", strerror(-ret));
		goto out;
	}
	*read_end = p[0];
	p[0] = -1;
out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return ret;
}

/*
 * The guard's takeover channel: our end stays in m, the other goes to the
 * first worker, which hands it to its guard.  Both above SUP_FD_FLOOR.
 */
static int sup_guard_channel(struct sup_mig *m, int *child_end, struct api_error *err)
{
	int sv[2], ret;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		log_err("migration %s: guard channel: %s", m->id, strerror(-ret));
		return api_error_set(err, -EIO, "cannot create a socket pair: %s", strerror(-ret));
	}
	ret = sup_fd_high(&sv[0]);
	if (ret == 0)
		ret = sup_fd_high(&sv[1]);
	if (ret < 0) {
		close(sv[0]);
		close(sv[1]);
		return api_error_set(err, -EIO, "cannot move a descriptor: %s", strerror(-ret));
	}
	m->tk_fd = sv[0];
	*child_end = sv[1];
	return 0;
}

/*
 * Spawns m's worker and starts watching it; on failure nothing is left
 * running.  req NULL: a worker taking over from the guard of one that died.
 */
static int sup_start_worker(struct sup *s, struct sup_mig *m, const struct api_start_req *req,
			    struct api_error *err)
{
	struct sup_argv a;
	int prog[2] = {-1, -1}, secret_r = -1, chan = -1, ret;

	if (req) {
		const char *host = req->peer_host;
		unsigned int port = req->peer_port ? req->peer_port : SUP_DATA_PORT_DEFAULT;

		snprintf(m->source_arg, sizeof(m->source_arg),
			 strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
		ret = sup_keep_secret(m, req, err);
		if (ret == 0)
			ret = sup_guard_channel(m, &chan, err);
		if (ret < 0)
			goto out;
	}
	ret = sup_build_argv(s, m, req, &a);
	if (ret < 0) {
		ret = api_error_set(err, -EINVAL, "work_dir %s: path too long", m->work_dir);
		goto out;
	}
	ret = sup_secret_pipe(m->secret, &secret_r, err);
	if (ret < 0)
		goto out;
	if (pipe2(prog, O_CLOEXEC) < 0 || sup_fd_high(&prog[1]) < 0 ||
	    fd_set_nonblock(prog[0]) < 0) {
		ret = -errno;
		log_err("migration %s: progress pipe: %s", m->id, strerror(-ret));
		ret = api_error_set(err, -EIO, "cannot create a pipe: %s", strerror(-ret));
		goto out;
	}
	m->prog_buf = evbuffer_new();
	m->prog_ev = event_new(s->base, prog[0], EV_READ | EV_PERSIST, sup_progress_cb, m);
	if (!m->prog_buf || !m->prog_ev) {
		ret = api_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	m->prog_fd = prog[0];
	prog[0] = -1;
	ret = sup_spawn(m, sup_worker_exe(s, req == NULL), a.v, prog[1], secret_r,
			req ? chan : m->tk_fd);
	if (ret < 0) {
		ret = api_error_set(err, -EIO, "cannot start a worker: %s", strerror(-ret));
		goto out;
	}
	ret = proctree_pidfd_open(m->pid);
	if (ret >= 0) {
		m->pidfd = ret;
		m->exit_ev = event_new(s->base, m->pidfd, EV_READ | EV_PERSIST, sup_exit_cb, m);
		ret = m->exit_ev && event_add(m->exit_ev, NULL) == 0 &&
			      event_add(m->prog_ev, NULL) == 0
			  ? 0
			  : -ENOMEM;
	}
	if (ret < 0) {
		log_err("migration %s: cannot watch worker %d: %s; stopping it", m->id, (int)m->pid,
			strerror(-ret));
		/* Nothing was restored yet: the worker is still connecting. */
		kill(m->pid, SIGKILL);
		while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR)
			;
		ret = api_error_set(err, -EIO, "cannot watch the worker: %s", strerror(-ret));
		goto out;
	}
out:
	if (prog[0] >= 0)
		close(prog[0]);
	if (prog[1] >= 0)
		close(prog[1]);
	if (secret_r >= 0)
		close(secret_r);
	if (chan >= 0)
		close(chan);
	return ret;
}

/* No two running workers may share a directory: sockets and images would mix. */
static int sup_check_dirs(struct sup *s, const struct sup_mig *m, struct api_error *err)
{
	const struct sup_mig *o;

	TAILQ_FOREACH(o, &s->migs, link)
	{
		if (o->final)
			continue;
		if (strcmp(o->images_dir, m->images_dir) == 0 ||
		    strcmp(o->work_dir, m->work_dir) == 0 ||
		    strcmp(o->images_dir, m->work_dir) == 0 ||
		    strcmp(o->work_dir, m->images_dir) == 0)
			return api_error_set(err, -EBUSY,
					     "migration \"%s\" (running) uses the same directory",
					     o->id);
	}
	return 0;
}

/* ---- reservations ---- */

static void sup_resv_free(struct sup_resv *r)
{
	struct sup *s;

	if (!r)
		return;
	s = r->sup;
	TAILQ_REMOVE(&s->resvs, r, link);
	/* With a worker, the slot is the worker's: freed when its pidfd fires. */
	if (r->early)
		r->early->resv = NULL;
	else
		s->nr_resv--;
	s->resv_bytes -= r->bytes;
	if (r->timer)
		event_free(r->timer);
	free(r);
}

static struct sup_resv *sup_resv_find(struct sup *s, const char *id)
{
	struct sup_resv *r;

	TAILQ_FOREACH(r, &s->resvs, link)
	if (strcmp(r->id, id) == 0)
		return r;
	return NULL;
}

static int sup_stop_worker(struct sup_mig *m, bool shutdown);

/* A reservation ends unused: its early worker, which restored nothing, is stopped. */
static void sup_resv_end(struct sup_resv *r, const char *how)
{
	if (r->early) {
		log_info("reservation %s for migration %s %s: stopping its worker %d; the slot is "
			 "free once it exited",
			 r->id, r->migration, how, (int)r->early->pid);
		r->early->resv_ended = true;
		sup_stop_worker(r->early, false);
	} else {
		log_info("reservation %s for migration %s %s: its slot is free", r->id,
			 r->migration, how);
	}
	sup_resv_free(r);
}

/*
 * A worker its reservation started, stopped because the reservation was
 * released or expired before any POST, and which never got as far as a
 * restore: the workload never ran here, and the source still holds the
 * whole checkpoint.  A new reservation or POST for the same migration
 * replaces its record and directories instead of being refused (409)
 * until an operator removed them, as a pre-copy's second reservation
 * needs (design.md §13).
 */
static bool sup_unused_early(const struct sup_mig *m)
{
	return m->final && m->early && m->resv_ended && m->received_ms < 0 && m->restore_ms < 0 &&
	       m->resumed_ms < 0;
}

/*
 * Removes path, a directory below the work root that the agent made, and
 * the files in it (a worker's log, socket, images received in part); one
 * holding a directory is left whole: -ENOTEMPTY.  Gone already is 0.
 */
static int sup_remove_dir(const struct sup *s, const char *path)
{
	char parent[PATH_MAX];
	const char *rel, *base;
	struct dirent *de;
	int fd, pfd = -1, ret = 0;
	struct stat st;
	DIR *d;

	if (!safepath_below(s->work_root, path, &rel) || !*rel)
		return -EXDEV;
	fd = safepath_openat(s->root_fd, rel, O_RDONLY | O_DIRECTORY, 0);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	ret = opendir_at(fd, &d);
	close(fd);
	if (ret < 0)
		return ret;
	while (ret == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			ret = -errno;
		else if (S_ISDIR(st.st_mode))
			ret = -ENOTEMPTY;
		else if (unlinkat(dirfd(d), de->d_name, 0) < 0)
			ret = -errno;
	}
	closedir(d);
	if (ret < 0)
		return ret;
	base = strrchr(rel, '/');
	if (base) {
		snprintf(parent, sizeof(parent), "%.*s", (int)(base - rel), rel);
		pfd = safepath_openat(s->root_fd, parent, O_RDONLY | O_DIRECTORY, 0);
		if (pfd < 0)
			return pfd;
		base++;
	} else {
		base = rel;
	}
	if (unlinkat(pfd >= 0 ? pfd : s->root_fd, base, AT_REMOVEDIR) < 0 && errno != ENOENT)
		ret = -errno;
	if (pfd >= 0)
		close(pfd);
	return ret;
}

/* Drops m (sup_unused_early()) and its directories for a new request (what). */
static int sup_drop_unused(struct sup *s, struct sup_mig *m, const char *what,
			   struct api_error *err)
{
	const char *dir = m->images_dir;
	int ret;

	ret = sup_remove_dir(s, dir);
	if (ret == 0 && strcmp(m->work_dir, m->images_dir) != 0) {
		dir = m->work_dir;
		ret = sup_remove_dir(s, dir);
	}
	if (ret < 0) {
		log_err("migration %s: cannot remove %s of its unused worker: %s", m->id, dir,
			safepath_strerror(ret));
		return api_error_set(err, -EEXIST,
				     "the worker of migration \"%s\" started at an earlier "
				     "reservation ended unused, but its directory %s cannot be "
				     "removed: %s",
				     m->id, dir, safepath_strerror(ret));
	}
	log_info("migration %s: the worker started at its earlier reservation ended unused "
		 "(%s, nothing received): its record and %s go for the %s",
		 m->id, api_state_str(m->state), m->images_dir, what);
	TAILQ_REMOVE(&s->migs, m, link);
	s->nr_final--;
	sup_mig_free(m);
	return 0;
}

static void sup_resv_expired(evutil_socket_t fd, short what, void *arg)
{
	struct sup_resv *r = arg;
	char how[64];

	snprintf(how, sizeof(how), "expired after %u s unused", r->ttl_s);
	sup_resv_end(r, how);
}

static bool sup_same_dir(const char *a, const char *b)
{
	return a[0] && b[0] && strcmp(a, b) == 0;
}

/* The directories r asks for are free: not there yet, and nobody else's. */
static int sup_resv_check_dirs(struct sup *s, const struct sup_resv *r, const char *rel,
			       struct api_error *err)
{
	const char *work = r->work_path[0] ? r->work_path : r->images_path;
	const struct sup_resv *o;
	const struct sup_mig *m;
	struct stat st;

	if (fstatat(s->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return api_error_set(err, -EEXIST,
				     "images_dir %s exists: the agent receives only into a "
				     "directory it creates",
				     r->images_path);
	TAILQ_FOREACH(o, &s->resvs, link)
	{
		const char *owork = o->work_path[0] ? o->work_path : o->images_path;

		if (sup_same_dir(o->images_path, r->images_path) || sup_same_dir(owork, work) ||
		    sup_same_dir(o->images_path, work) || sup_same_dir(owork, r->images_path))
			return api_error_set(err, -EBUSY,
					     "reservation %s (migration \"%s\") holds the same "
					     "directory",
					     o->id, o->migration);
	}
	TAILQ_FOREACH(m, &s->migs, link)
	if (!m->final &&
	    (sup_same_dir(m->images_dir, r->images_path) || sup_same_dir(m->work_dir, work)))
		return api_error_set(err, -EBUSY,
				     "migration \"%s\" (running) uses the same directory", m->id);
	return 0;
}

/* Room below the work root for bytes more than the reservations hold already. */
static int sup_resv_check_space(struct sup *s, uint64_t bytes, struct api_error *err)
{
	char free_s[32], need_s[32], held_s[32];
	struct statvfs sv;
	uint64_t avail;

	if (statvfs(s->work_root, &sv) < 0) {
		int ret = -errno;

		log_err("work root %s: statvfs: %s", s->work_root, strerror(-ret));
		return api_error_set(err, -EIO, "cannot tell the free space below %s: %s",
				     s->work_root, strerror(-ret));
	}
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (bytes <= avail && s->resv_bytes <= avail - bytes)
		return 0;
	fmt_bytes(avail, free_s, sizeof(free_s));
	fmt_bytes(bytes, need_s, sizeof(need_s));
	fmt_bytes(s->resv_bytes, held_s, sizeof(held_s));
	return api_error_set(err, -ENOSPC,
			     "not enough disk space for the images below %s: %s free, %s needed "
			     "(the source's estimate), %s held by other reservations",
			     s->work_root, free_s, need_s, held_s);
}

static void sup_resv_id(char *buf, size_t len)
{
	uint8_t b[6];

	if (getrandom(b, sizeof(b), GRND_NONBLOCK) != (ssize_t)sizeof(b)) {
		/* Ids must be unique, not secret. */
		uint64_t x = now_ns();

		memcpy(b, &x, sizeof(b));
	}
	snprintf(buf, len, "r-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

static void sup_resv_view(const struct sup_resv *r, struct api_reservation_view *v)
{
	v->id = r->id;
	v->migration = r->migration;
	v->bytes = r->bytes;
	v->images_dir = r->images_path;
	v->bundle = r->bundle[0] ? r->bundle : NULL;
	v->ttl_s = r->ttl_s;
	v->created_unix_ms = r->created_unix_ms;
	v->expires_unix_ms = r->expires_unix_ms;
	v->worker_started = r->early != NULL;
}

/*
 * The bundle contract (design.md §12): a container's bundle must be here
 * before its source freezes it, below one of the --bundle-root
 * directories, with no symbolic link on the way out of it, holding
 * config.json (a file) and rootfs (a directory).
 */
static int sup_check_bundle(struct sup *s, const char *bundle, struct api_error *err)
{
	const char *rel = NULL;
	int rootfd = -1, fd = -1, ret;
	struct stat st;
	unsigned int i;

	for (i = 0; i < s->cfg->nbundle_roots; i++) {
		if (safepath_below(s->cfg->bundle_roots[i], bundle, &rel) && rel[0])
			break;
	}
	if (i == s->cfg->nbundle_roots) {
		ret = api_error_set(err, -EACCES,
				    "bundle %s: not below a bundle root of this agent "
				    "(--bundle-root%s)",
				    bundle, s->cfg->nbundle_roots ? "" : ": it has none");
		goto out;
	}
	rootfd = safepath_open_dir(s->cfg->bundle_roots[i]);
	fd = rootfd < 0 ? rootfd : safepath_openat(rootfd, rel, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0) {
		ret = api_error_set(err, fd == -ENOENT ? -ENOENT : -EACCES,
				    "bundle %s: not here: %s (the destination needs the "
				    "container's bundle at this path)",
				    bundle, safepath_strerror(fd));
		goto out;
	}
	if (fstatat(fd, "config.json", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
		ret = api_error_set(err, -ENOENT, "bundle %s: no config.json file in it", bundle);
		goto out;
	}
	if (fstatat(fd, "rootfs", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
		ret = api_error_set(err, -ENOENT, "bundle %s: no rootfs directory in it", bundle);
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rootfd >= 0)
		close(rootfd);
	return ret;
}

static int sup_check_start(struct sup *s, const struct api_start_req *req, struct api_error *err);
static int sup_launch(struct sup *s, const struct api_start_req *req, bool early,
		      struct sup_mig **out, struct api_error *err);

/*
 * The worker of a reservation's "start", spawned now: connected and
 * authenticated while the source dumps; it takes r's slot over.
 */
static int sup_resv_start(struct sup *s, struct sup_resv *r, const struct api_start_req *req,
			  struct api_error *err)
{
	struct sup_mig *m;
	int ret = sup_launch(s, req, true, &m, err);

	if (ret < 0)
		return ret;
	r->early = m;
	m->resv = r;
	s->nr_resv--;
	return 0;
}

static int sup_api_reserve(void *agent, const struct api_reserve_req *req,
			   struct api_reservation_view *out, struct api_error *err)
{
	struct timeval tv = {.tv_sec = req->ttl_s};
	struct sup *s = agent;
	struct sup_resv *r = NULL, *o;
	struct sup_mig *m;
	const char *rel, *wrel;
	int ret;

	if (s->stopping) {
		ret = api_error_set(err, -EAGAIN, "the destination agent is shutting down");
		goto out;
	}
	m = sup_find(s, req->migration);
	if (m && sup_unused_early(m)) {
		ret = sup_drop_unused(s, m, "new reservation", err);
		if (ret < 0)
			goto out;
		m = NULL;
	}
	if (m && !m->final) {
		ret = api_error_set(err, -EEXIST, "migration \"%s\" already runs here (%s)",
				    req->migration, api_state_str(m->state));
		goto out;
	}
	TAILQ_FOREACH(o, &s->resvs, link)
	if (strcmp(o->migration, req->migration) == 0) {
		ret = api_error_set(err, -EEXIST, "migration \"%s\" is reserved already (%s)",
				    req->migration, o->id);
		goto out;
	}
	if (s->nr_running + s->nr_resv >= s->cfg->max_running) {
		/* -EUSERS: code no_slot, which a source waits for in its queue. */
		ret = api_error_set(err, -EUSERS,
				    "no free slot: %u migrations running and %u reserved, the most "
				    "this agent runs at once is %u (--max-migrations)",
				    s->nr_running, s->nr_resv, s->cfg->max_running);
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		ret = api_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	r->sup = s;
	snprintf(r->migration, sizeof(r->migration), "%s", req->migration);
	ret = req->bundle ? sup_check_bundle(s, req->bundle, err) : 0;
	if (ret < 0)
		goto out;
	snprintf(r->bundle, sizeof(r->bundle), "%s", req->bundle ? req->bundle : "");
	ret = sup_dir_path(s, "images_dir", req->images_dir, req->migration, r->images_path,
			   sizeof(r->images_path), &rel, err);
	if (ret == 0 && req->work_dir)
		ret = sup_dir_path(s, "work_dir", req->work_dir, req->migration, r->work_path,
				   sizeof(r->work_path), &wrel, err);
	if (ret == 0)
		ret = sup_resv_check_dirs(s, r, rel, err);
	if (ret == 0)
		ret = sup_resv_check_space(s, req->bytes, err);
	if (ret == 0 && req->start)
		ret = sup_check_start(s, req->start, err);
	if (ret < 0)
		goto out;
	r->timer = evtimer_new(s->base, sup_resv_expired, r);
	if (!r->timer || evtimer_add(r->timer, &tv) < 0) {
		ret = api_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	sup_resv_id(r->id, sizeof(r->id));
	r->bytes = req->bytes;
	r->ttl_s = req->ttl_s;
	r->created_unix_ms = sup_unix_ms();
	r->expires_unix_ms = r->created_unix_ms + (int64_t)req->ttl_s * 1000;
	TAILQ_INSERT_TAIL(&s->resvs, r, link);
	s->nr_resv++;
	s->resv_bytes += r->bytes;
	log_info("reservation %s for migration %s: a slot and %" PRIu64
		 " bytes below %s, for %u s%s%s",
		 r->id, r->migration, r->bytes, s->work_root, r->ttl_s,
		 r->bundle[0] ? "; its container's bundle is here: " : "", r->bundle);
	if (req->start) {
		ret = sup_resv_start(s, r, req->start, err);
		if (ret < 0) {
			sup_resv_free(r);
			r = NULL;
			goto out;
		}
	}
	sup_resv_view(r, out);
	r = NULL;
	ret = 0;
out:
	if (r && r->timer)
		event_free(r->timer);
	free(r);
	return ret;
}

static int sup_api_release(void *agent, const char *id, struct api_error *err)
{
	struct sup_resv *r = sup_resv_find(agent, id);

	if (!r)
		return api_error_set(err, -ENOENT,
				     "no reservation \"%s\" (released, used or expired)", id);
	sup_resv_end(r, "released by its source");
	return 0;
}

static int sup_api_list_resv(void *agent, api_emit_resv_fn emit, void *ctx)
{
	struct sup *s = agent;
	struct api_reservation_view v;
	const struct sup_resv *r;
	int ret;

	TAILQ_FOREACH(r, &s->resvs, link)
	{
		memset(&v, 0, sizeof(v));
		sup_resv_view(r, &v);
		ret = emit(ctx, &v);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * The slot of a start: the reservation it names, used up now (also if the
 * start fails later: the slot is free then), or a free one, never one a
 * reservation holds.
 */
static int sup_take_slot(struct sup *s, const struct api_start_req *req, struct api_error *err)
{
	struct sup_resv *r = req->reservation ? sup_resv_find(s, req->reservation) : NULL;

	if (r && strcmp(r->migration, req->id) != 0)
		return api_error_set(err, -EBUSY,
				     "reservation %s is for migration \"%s\", not \"%s\"", r->id,
				     r->migration, req->id);
	if (r) {
		log_info("migration %s: uses its reservation %s", req->id, r->id);
		sup_resv_free(r);
		return 0;
	}
	if (req->reservation)
		log_warn("migration %s: its reservation %s is gone (expired or released): it needs "
			 "a free slot",
			 req->id, req->reservation);
	if (s->nr_running - s->nr_pending + s->nr_resv >= s->cfg->max_running)
		return api_error_set(err, -EUSERS,
				     "%u migrations are running and %u slots reserved, the most "
				     "this agent runs at once (--max-migrations)",
				     s->nr_running - s->nr_pending, s->nr_resv);
	if (s->nr_pending >= s->cfg->max_pending)
		return api_error_set(
		    err, -EAGAIN,
		    "%u migrations are waiting for their source to connect, the most "
		    "this agent keeps waiting (--max-pending); each waits at most "
		    "--connect-timeout",
		    s->nr_pending);
	return 0;
}

/*
 * A container's start: its bundle here (the contract, checked again: a
 * POST need not follow a reservation), and only criu options runc can
 * pass on.
 */
static int sup_container(struct sup *s, const struct api_start_req *req, struct api_error *err)
{
	if (req->criu.link_remap || req->criu.log_level >= 0 ||
	    (req->criu.manage_cgroups && strcmp(req->criu.manage_cgroups, "ignore") == 0))
		return api_error_set(err, -EINVAL,
				     "container %s: runc restore cannot take criu_opts %s",
				     req->container.id,
				     req->criu.link_remap	? "link_remap"
				     : req->criu.log_level >= 0 ? "log_level"
								: "manage_cgroups \"ignore\"");
	return sup_check_bundle(s, req->container.bundle, err);
}

/* ---- API callbacks ---- */

/* What a start needs of this agent whether it spawns its worker now or adopts one. */
static int sup_check_start(struct sup *s, const struct api_start_req *req, struct api_error *err)
{
	if (req->transport == API_TRANSPORT_TLS && !(s->cfg->tls && tls_opts_any(s->cfg->tls)))
		return api_error_set(err, -EINVAL,
				     "transport \"tls\": this destination agent has no certificate "
				     "(start it with --tls-cert, --tls-key and --tls-ca)");
	return req->container.runtime ? sup_container(s, req, err) : 0;
}

/*
 * Makes the migration's directories and spawns its worker (early: at its
 * reservation, --early); the slot was taken by the caller.  *out is the
 * migration, in the list and counted as running.
 */
static int sup_launch(struct sup *s, const struct api_start_req *req, bool early,
		      struct sup_mig **out, struct api_error *err)
{
	struct sup_mig *m = NULL;
	bool made_images = false, made_work = false;
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m) {
		ret = api_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	m->sup = s;
	m->pidfd = -1;
	m->prog_fd = -1;
	m->tk_fd = -1;
	m->state = API_STATE_PENDING;
	m->restore_ms = -1;
	m->resumed_ms = -1;
	m->received_ms = -1;
	m->c.fault_p50_us = -1;
	m->c.fault_p99_us = -1;
	m->c.drain_depth = -1;
	m->c.drain_chunk = -1;
	m->c.fault_lane_reads = -1;
	m->c.pages_local = -1;
	m->t_accept_ns = now_ns();
	m->created_unix_ms = sup_unix_ms();
	snprintf(m->id, sizeof(m->id), "%s", req->id);
	snprintf(m->source, sizeof(m->source), "%s", req->peer);
	m->transport = req->transport;
	m->verify = req->verify;
	m->restore = req->restore;
	m->early = early;
	m->criu = req->criu;
	if (req->container.runtime) {
		snprintf(m->ctr_id, sizeof(m->ctr_id), "%s", req->container.id);
		snprintf(m->ctr_root, sizeof(m->ctr_root), "%s",
			 req->container.root ? req->container.root : "");
		snprintf(m->ctr_bundle, sizeof(m->ctr_bundle), "%s", req->container.bundle);
	}

	ret = sup_make_dir(s, "images_dir", req->images_dir, req->id, m->images_dir,
			   sizeof(m->images_dir), err);
	if (ret < 0)
		goto out;
	made_images = true;
	if (req->work_dir) {
		ret = sup_make_dir(s, "work_dir", req->work_dir, req->id, m->work_dir,
				   sizeof(m->work_dir), err);
		if (ret < 0)
			goto out;
		made_work = true;
	} else {
		snprintf(m->work_dir, sizeof(m->work_dir), "%s", m->images_dir);
	}
	ret = sup_check_dirs(s, m, err);
	if (ret < 0)
		goto out;
	ret = sup_start_worker(s, m, req, err);
	if (ret < 0)
		goto out;
	TAILQ_INSERT_TAIL(&s->migs, m, link);
	s->nr_running++;
	/* An early worker holds its reservation's slot: it is not waiting for one. */
	m->pending = !early;
	if (m->pending)
		s->nr_pending++;
	log_info("migration %s: worker %d started%s: source %s over %s, images %s, work %s%s%s",
		 m->id, (int)m->pid, early ? " at its reservation" : "", m->source,
		 api_transport_str(m->transport), m->images_dir, m->work_dir,
		 m->ctr_id[0] ? ", running runc restore"
		 : m->restore ? ", running criu restore"
			      : ", for an external restore",
		 m->verify ? ", verified" : "");
	*out = m;
	m = NULL;
	ret = 0;
out:
	if (ret < 0 && made_work)
		rmdir(m->work_dir);
	if (ret < 0 && made_images)
		rmdir(m->images_dir);
	sup_mig_free(m);
	return ret;
}

static bool sup_same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/*
 * The first field in which a POST differs from the "start" its early
 * worker was spawned with, or NULL: the same migration, asked alike.
 */
static const char *sup_start_differs(const struct sup *s, const struct sup_mig *m,
				     const struct api_start_req *req)
{
	const struct api_criu_opts *a = &m->criu, *b = &req->criu;
	char path[PATH_MAX];
	struct auth_secret *sec = NULL;
	const char *rel;
	struct api_error e;
	bool same;

	if (strcmp(m->source, req->peer) != 0)
		return "source";
	if (m->transport != req->transport)
		return "transport";
	if (m->verify != req->verify)
		return "verify";
	if (m->restore != req->restore)
		return "restore";
	if (a->shell_job != b->shell_job || a->tcp_established != b->tcp_established ||
	    a->ext_unix_sk != b->ext_unix_sk || a->file_locks != b->file_locks ||
	    a->link_remap != b->link_remap || a->log_level != b->log_level ||
	    !sup_same_str(a->manage_cgroups, b->manage_cgroups))
		return "criu_opts";
	if (!sup_same_str(m->ctr_id[0] ? m->ctr_id : NULL, req->container.id) ||
	    !sup_same_str(m->ctr_root[0] ? m->ctr_root : NULL, req->container.root) ||
	    !sup_same_str(m->ctr_bundle[0] ? m->ctr_bundle : NULL, req->container.bundle))
		return "container";
	if (req->images_dir && (sup_dir_path(s, "images_dir", req->images_dir, req->id, path,
					     sizeof(path), &rel, &e) < 0 ||
				strcmp(path, m->images_dir) != 0))
		return "images_dir";
	if (req->work_dir && (sup_dir_path(s, "work_dir", req->work_dir, req->id, path,
					   sizeof(path), &rel, &e) < 0 ||
			      strcmp(path, m->work_dir) != 0))
		return "work_dir";
	/* The secret: a secret_file's bytes were read into req->secret by the API module. */
	if (!req->secret || auth_secret_from_buf(req->secret, req->secret_len, &sec) < 0)
		return "secret";
	same = auth_secret_same(sec, m->secret);
	auth_secret_free(sec);
	return same ? NULL : "secret";
}

/*
 * The POST of a migration whose worker its reservation started: adopted
 * (told by SIGUSR1) when asked alike, else 409 and that worker stopped.
 */
static int sup_adopt(struct sup *s, struct sup_resv *r, const struct api_start_req *req,
		     struct api_error *err)
{
	struct sup_mig *m = r->early;
	const char *field = strcmp(r->migration, req->id) != 0 ? "id" : NULL;

	if (!field)
		field = sup_start_differs(s, m, req);
	if (field) {
		log_warn("migration %s: its POST differs from reservation %s's start in \"%s\": "
			 "stopping the worker started then",
			 req->id, r->id, field);
		/* The answer first: the reservation goes with its worker. */
		api_error_set(
		    err, -EBUSY,
		    "field \"%s\" differs from the \"start\" of reservation %s: its worker "
		    "is stopped; reserve again",
		    field, r->id);
		sup_resv_end(r, "refused");
		return -EBUSY;
	}
	if (kill(m->pid, SIGUSR1) < 0) {
		int ret = -errno;

		log_err("migration %s: cannot signal its worker %d: %s", m->id, (int)m->pid,
			strerror(-ret));
		return api_error_set(err, -EIO,
				     "cannot reach the worker started at the "
				     "reservation");
	}
	log_info("migration %s: uses its reservation %s: its POST adopts worker %d, started then",
		 m->id, r->id, (int)m->pid);
	sup_resv_free(r);
	m->early = false;
	/*
	 * received_ms and resumed_ms count from the POST, as for any worker
	 * (the source adds them to its own freeze-to-POST time); a part the
	 * worker finished before the POST came counts 0.
	 */
	m->t_accept_ns = now_ns();
	if (m->received_ms >= 0)
		m->received_ms = 0;
	if (m->resumed_ms >= 0)
		m->resumed_ms = 0;
	return 0;
}

/*
 * The source lets a held early worker go once its checkpoint serves, before
 * its POST goes out: a small migration can be done before the POST comes.
 * The POST then takes that result, as it would a running worker.
 */
static int sup_adopt_finished(struct sup_mig *m)
{
	log_info("migration %s: its worker, started at the reservation, was done before the POST; "
		 "the POST takes its result",
		 m->id);
	m->early = false;
	/* Counted from the POST, as in sup_adopt(): what was done before it counts 0. */
	m->t_accept_ns = m->t_final_ns;
	if (m->received_ms >= 0)
		m->received_ms = 0;
	if (m->resumed_ms >= 0)
		m->resumed_ms = 0;
	return 0;
}

static int sup_api_start(void *agent, const struct api_start_req *req, struct api_error *err)
{
	struct sup *s = agent;
	struct sup_resv *r = req->reservation ? sup_resv_find(s, req->reservation) : NULL;
	struct sup_mig *m, *old;
	int ret;

	if (s->stopping)
		return api_error_set(err, -EAGAIN, "the destination agent is shutting down");
	if (r && r->early)
		return sup_adopt(s, r, req, err);
	old = sup_find(s, req->id);
	if (old && sup_unused_early(old)) {
		ret = sup_drop_unused(s, old, "POST", err);
		if (ret < 0)
			return ret;
		old = NULL;
	}
	if (old && old->final && old->early && old->state == API_STATE_DONE &&
	    !sup_start_differs(s, old, req))
		return sup_adopt_finished(old);
	if (old && old->final && old->early)
		return api_error_set(err, -EEXIST,
				     "the worker started at the reservation of migration \"%s\" "
				     "ended before its POST (%s): %s",
				     req->id, api_state_str(old->state), old->error);
	if (old)
		return api_error_set(err, -EEXIST, "migration \"%s\" already exists (%s)", req->id,
				     api_state_str(old->state));
	ret = sup_check_start(s, req, err);
	if (ret == 0)
		ret = sup_take_slot(s, req, err);
	return ret < 0 ? ret : sup_launch(s, req, false, &m, err);
}

static int sup_api_get(void *agent, const char *id, struct api_migration_view *out)
{
	const struct sup_mig *m = sup_find(agent, id);

	if (!m)
		return -ENOENT;
	sup_view(m, out);
	return 0;
}

static int sup_api_list(void *agent, api_emit_fn emit, void *ctx)
{
	struct sup *s = agent;
	struct api_migration_view v;
	const struct sup_mig *m;
	int ret;

	TAILQ_FOREACH(m, &s->migs, link)
	{
		api_migration_view_init(&v);
		sup_view(m, &v);
		ret = emit(ctx, &v);
		if (ret)
			return ret;
	}
	return 0;
}

/* SIGTERM: the worker stops the restored processes that still need pages and aborts. */
static int sup_stop_worker(struct sup_mig *m, bool shutdown)
{
	if (m->abort_requested)
		return 0;
	if (kill(m->pid, SIGTERM) < 0) {
		log_err("migration %s: cannot signal worker %d: %s", m->id, (int)m->pid,
			strerror(errno));
		return -errno;
	}
	m->abort_requested = true;
	m->shutdown = shutdown;
	log_info("migration %s: stopping worker %d (%s)", m->id, (int)m->pid,
		 shutdown ? "the agent is shutting down" : "aborted through the API");
	return 0;
}

static int sup_api_abort(void *agent, const char *id, struct api_error *err)
{
	struct sup_mig *m = sup_find(agent, id);
	int ret;

	if (!m)
		return api_error_set(err, -ENOENT, "no migration \"%s\"", id);
	if (m->final)
		return -EALREADY;
	ret = sup_stop_worker(m, false);
	if (ret < 0)
		return api_error_set(err, ret, "cannot stop the worker: %s", strerror(-ret));
	return 0;
}

/* GET /metrics: the workers, and whether a stop waits for them. */
static int sup_api_metrics(void *agent, struct evbuffer *out)
{
	struct sup *s = agent;
	const char *running[] = {"state", "running", NULL};
	const char *pending[] = {"state", "pending", NULL};

	if (prom_family(out, "rdmig_dest_workers", PROM_GAUGE,
			"migration workers: running (pending ones included) and pending") < 0 ||
	    prom_u64(out, "rdmig_dest_workers", running, s->nr_running) < 0 ||
	    prom_u64(out, "rdmig_dest_workers", pending, s->nr_pending) < 0 ||
	    prom_family(out, "rdmig_dest_reservations", PROM_GAUGE,
			"reservations holding a slot (POST /v1/reservations)") < 0 ||
	    prom_u64(out, "rdmig_dest_reservations", NULL, s->nr_resv) < 0 ||
	    prom_family(out, "rdmig_dest_stopping", PROM_GAUGE,
			"1 while a stop waits for the workers") < 0 ||
	    prom_u64(out, "rdmig_dest_stopping", NULL, s->stopping) < 0 ||
	    prom_family(out, "rdmig_dest_takeovers_total", PROM_COUNTER,
			"workers started to take a migration over from the guard of one that "
			"died in post-copy") < 0 ||
	    prom_u64(out, "rdmig_dest_takeovers_total", NULL, s->takeovers) < 0)
		return -ENOMEM;
	return 0;
}

static const struct api_ops sup_api_ops = {
    .start = sup_api_start,
    .get = sup_api_get,
    .list = sup_api_list,
    .abort = sup_api_abort,
    .rollback = NULL, /* nothing to roll back here: the route answers 405 */
    .metrics = sup_api_metrics,
    .reserve = sup_api_reserve,
    .release = sup_api_release,
    .list_reservations = sup_api_list_resv,
};

/* ---- signals ---- */

static void sup_stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sup *s = arg;

	log_err("%u workers still running %d s after the stop request: leaving them to finish "
		"their own shutdown",
		s->nr_running, SUP_STOP_WAIT_S);
	event_base_loopexit(s->base, NULL);
}

static void sup_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = {.tv_sec = SUP_STOP_WAIT_S};
	struct sup *s = arg;
	struct sup_mig *m;

	if (s->stopping) {
		log_err("signal %d again: exiting now; %u workers finish their shutdown alone",
			(int)sig, s->nr_running);
		event_base_loopexit(s->base, NULL);
		return;
	}
	s->stopping = true;
	log_warn("signal %d: stopping: refusing new migrations, stopping %u workers", (int)sig,
		 s->nr_running);
	TAILQ_FOREACH(m, &s->migs, link)
	if (!m->final)
		sup_stop_worker(m, true);
	if (s->nr_running == 0) {
		event_base_loopexit(s->base, NULL);
		return;
	}
	s->stop_ev = evtimer_new(s->base, sup_stop_timeout_cb, s);
	if (!s->stop_ev || evtimer_add(s->stop_ev, &tv) < 0)
		event_base_loopexit(s->base, NULL);
}

/* ---- the daemon ---- */

static int sup_setup(struct sup *s)
{
	static const int sigs[2] = {SIGINT, SIGTERM};
	const struct tls_opts *tls = s->cfg->tls;
	struct api_config ac = {
	    .role = API_ROLE_DEST,
	    .socket_path = s->cfg->api_socket,
	    .tcp = s->cfg->api_tcp,
	    .group = s->cfg->api_group,
	    .allow = tls ? tls->allow : NULL,
	    .nallow = tls ? tls->nallow : 0,
	    .insecure_tcp = tls && tls->insecure_api,
	    /* Its workers offer FEAT_LAZY_DUMP (netsrc.c). */
	    .lazy_dump = true,
	    /* Socket activation (systemd/rdmig-dest.socket): the API socket, bound by systemd. */
	    .listen_fd = svcmgr_listen_fd(),
	};
	int ret;

	if (!realpath(s->cfg->work_root, s->work_root)) {
		ret = -errno;
		log_err("work root %s: %s", s->cfg->work_root, strerror(-ret));
		goto out;
	}
	s->root_fd = safepath_open_dir(s->work_root);
	ret = s->root_fd < 0 ? s->root_fd : safepath_check_trusted(s->root_fd);
	if (ret < 0) {
		log_err("work root %s: %s", s->work_root, safepath_strerror(ret));
		goto out;
	}
	s->base = event_base_new();
	if (!s->base) {
		ret = -ENOMEM;
		log_err("event_base_new failed");
		goto out;
	}
	/* evhttp writes to clients that may have gone. */
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < 2; i++) {
		s->sig_ev[i] = evsignal_new(s->base, sigs[i], sup_signal_cb, s);
		if (!s->sig_ev[i] || event_add(s->sig_ev[i], NULL) < 0) {
			ret = -ENOMEM;
			log_err("cannot install signal events");
			goto out;
		}
	}
	if (s->cfg->api_tcp && tls && tls_opts_any(tls)) {
		ret = tls_ctx_new(TLS_SERVER, tls, &s->tls);
		if (ret < 0)
			goto out;
		ac.tls = s->tls;
	}
	ret = api_server_create(s->base, &ac, &sup_api_ops, s, &s->api);
	if (ret < 0) {
		log_err("api: cannot serve on %s%s%s: %s",
			s->cfg->api_socket ? s->cfg->api_socket : API_SOCKET_DEST,
			s->cfg->api_tcp ? " and " : "", s->cfg->api_tcp ? s->cfg->api_tcp : "",
			strerror(-ret));
		goto out;
	}
	if (api_server_socket_path(s->api))
		log_info("api: serving on %s", api_server_socket_path(s->api));
	if (s->cfg->api_tcp)
		log_info("api: serving on TCP port %d (%s)", api_server_tcp_port(s->api),
			 s->tls ? "mutual TLS" : "plain HTTP, loopback only");
	ret = 0;
out:
	return ret;
}

/* Workers restore with criu (also under runc): its kernel probe now, not in the first freeze. */
static void sup_criu_check_start(struct sup *s)
{
	char log_path[PATH_MAX + 32];

	snprintf(log_path, sizeof(log_path), "%s/.criu-check.log", s->work_root);
	criucheck_start(s->base, s->cfg->criu ? s->cfg->criu : "criu", log_path,
			CRIUCHECK_KDAT_PATH, &s->criu_check);
}

int sup_run(const struct sup_config *cfg)
{
	struct sup s = {.cfg = cfg, .root_fd = -1};
	struct sup_mig *m;
	int ret, code = 1;

	TAILQ_INIT(&s.migs);
	TAILQ_INIT(&s.resvs);
	/* Read now: once the file is replaced, the link names it "(deleted)". */
	ret = (int)readlink("/proc/self/exe", s.exe, sizeof(s.exe) - 1);
	if (ret <= 0 || (size_t)ret >= sizeof(s.exe) - 1) {
		log_warn("cannot read this binary's path (/proc/self/exe): %s; a worker taking "
			 "over runs this binary, not an upgraded one",
			 ret < 0 ? strerror(errno) : "too long");
		ret = 0;
	}
	s.exe[ret] = '\0';
	ret = mkdir_private(cfg->work_root);
	if (ret < 0) {
		log_err("cannot create directory %s: %s", cfg->work_root, strerror(-ret));
		goto out;
	}
	ret = sup_setup(&s);
	if (ret < 0) {
		/* A socket in use, a plain TCP API refused, TLS files unusable: configuration. */
		bool config =
		    ret == -EADDRINUSE || ret == -EEXIST || ret == -EPERM || ret == -EINVAL;

		code = config ? 78 : 1;
		goto out;
	}
	log_info("serving migrations: images under %s, at most %u at once", s.work_root,
		 cfg->max_running);
	sup_criu_check_start(&s);
	/* Type=notify: the API answers from here on. */
	svcmgr_notify("READY=1");
	event_base_dispatch(s.base);
	code = 0;
out:
	api_server_destroy(s.api);
	criucheck_free(s.criu_check);
	while (!TAILQ_EMPTY(&s.resvs))
		sup_resv_free(TAILQ_FIRST(&s.resvs));
	while ((m = TAILQ_FIRST(&s.migs)) != NULL) {
		TAILQ_REMOVE(&s.migs, m, link);
		/* Its progress writes now fail with EPIPE; it goes on unreported. */
		if (!m->final)
			log_warn("migration %s: worker %d still running; no longer supervised",
				 m->id, (int)m->pid);
		sup_mig_free(m);
	}
	if (s.stop_ev)
		event_free(s.stop_ev);
	for (int i = 0; i < 2; i++)
		if (s.sig_ev[i])
			event_free(s.sig_ev[i]);
	if (s.base)
		event_base_free(s.base);
	if (s.root_fd >= 0)
		close(s.root_fd);
	SSL_CTX_free(s.tls);
	return code;
}
