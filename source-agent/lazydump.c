// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * lazydump: the source side of a lazy-dump migration (see lazydump.h).
 */
#include "lazydump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "proctree.h"

/* The status pipe's write end is kept above criu's fd 3 (criuproc.h). */
#define LAZYDUMP_FD_MIN 10

struct src_lazydump {
	struct event_base *base;
	const struct src_lazydump_ops *ops;
	void *arg;
	pid_t pid;
	int pidfd;
	int port;
	int status_rfd, status_wfd;
	struct event *status_ev;
	bool ready;
	bool released;
	uint64_t tree_start; /* the root's start time (proctree_start_time()) */
	/*
	 * Taken again after a restart of the agent (src_lazydump_adopt()):
	 * no criu, the stage reads the stopped tree; host_pids per task of the
	 * images, from src_lazydump_bind().
	 */
	bool adopted;
	/*
	 * criu marked pages lazy-able not lazy (image_set_relazy()): its page
	 * server holds none of them, so its session was ended and the stopped
	 * tree serves every page, as for an adopted one.
	 */
	bool from_tree;
	pid_t *host_pids;
	struct lazystage *stage;
	void *area; /* the stage's area, made ahead by src_lazydump_area() */
	size_t area_len;
};

/* A port free on 127.0.0.1 now; the dump binds it a moment later. */
static int ld_pick_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd, ret;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		ret = -errno;
	else
		ret = ntohs(sa.sin_port);
	close(fd);
	return ret;
}

/* A lazydump of pid with no fd yet. */
static struct src_lazydump *ld_alloc(struct event_base *base, pid_t pid,
				     const struct src_lazydump_ops *ops, void *arg)
{
	struct src_lazydump *ld = calloc(1, sizeof(*ld));

	if (!ld)
		return NULL;
	ld->base = base;
	ld->ops = ops;
	ld->arg = arg;
	ld->pid = pid;
	ld->status_rfd = ld->status_wfd = ld->pidfd = -1;
	return ld;
}

int src_lazydump_new(struct event_base *base, pid_t pid, const struct src_lazydump_ops *ops,
		     void *arg, struct src_lazydump **out)
{
	struct src_lazydump *ld;
	int p[2], ret;

	*out = NULL;
	ld = ld_alloc(base, pid, ops, arg);
	if (!ld)
		return -ENOMEM;
	/* Held from before the freeze: the pid cannot be another process's when signalled. */
	ld->pidfd = proctree_pidfd_open(pid);
	if (ld->pidfd < 0) {
		ret = ld->pidfd;
		log_err("lazy dump of pid %d: pidfd_open: %s", (int)pid, strerror(-ret));
		goto out;
	}
	ret = proctree_start_time(pid, &ld->tree_start);
	if (ret < 0) {
		log_err("lazy dump of pid %d: cannot read its start time: %s", (int)pid,
			strerror(-ret));
		goto out;
	}
	ret = ld_pick_port();
	if (ret < 0) {
		log_err("lazy dump of pid %d: no free loopback port: %s", (int)pid, strerror(-ret));
		goto out;
	}
	ld->port = ret;
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		ret = -errno;
		log_err("lazy dump of pid %d: pipe2: %s", (int)pid, strerror(-ret));
		goto out;
	}
	ld->status_rfd = p[0];
	ld->status_wfd = fcntl(p[1], F_DUPFD_CLOEXEC, LAZYDUMP_FD_MIN);
	close(p[1]);
	if (ld->status_wfd < 0) {
		ret = -errno;
		goto out;
	}
	/* criu writes one byte and may block on nothing else: blocking for it. */
	fcntl(ld->status_wfd, F_SETFL, 0);
	*out = ld;
	ld = NULL;
	ret = 0;
out:
	src_lazydump_free(ld);
	return ret;
}

int src_lazydump_port(const struct src_lazydump *ld)
{
	return ld->port;
}

uint64_t src_lazydump_tree_start(const struct src_lazydump *ld)
{
	return ld->tree_start;
}

/* A state letter of a process that cannot run: stopped, traced, a zombie, gone. */
static bool ld_held(char state)
{
	return state == 'T' || state == 't' || state == 'Z' || state == 'X';
}

/*
 * Ends the session of a dump's page server that may still wait for its
 * client on port: a connection closed at once is a clean end, criu then
 * exits and leaves the tree stopped (--leave-stopped).  A loopback connect
 * does not wait.  0, or a negative errno (-ECONNREFUSED: nothing listens).
 */
static int ld_end_port(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, ret = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int src_lazydump_adopt(struct event_base *base, pid_t pid, uint64_t tree_start, int port,
		       const struct src_lazydump_ops *ops, void *arg, struct src_lazydump **out,
		       char *why, size_t why_len)
{
	struct proctree_member *mem = NULL;
	struct src_lazydump *ld;
	uint64_t start;
	int n, i, ret;

	*out = NULL;
	ld = ld_alloc(base, pid, ops, arg);
	if (!ld)
		return -ENOMEM;
	ld->tree_start = tree_start;
	ld->ready = ld->adopted = true;
	ret = -ESRCH;
	if (pid <= 0 || !tree_start) {
		snprintf(why, why_len, "its record does not say which process was dumped");
		goto out;
	}
	/* Held first: the start time read next is then surely this process's. */
	ld->pidfd = proctree_pidfd_open(pid);
	if (ld->pidfd < 0 || proctree_start_time(pid, &start) < 0) {
		ret = ld->pidfd < 0 ? ld->pidfd : -ESRCH;
		snprintf(why, why_len, "the dumped process %d is gone", (int)pid);
		goto out;
	}
	if (start != tree_start) {
		snprintf(why, why_len,
			 "pid %d is another process now (started at tick %" PRIu64
			 ", the dumped one at %" PRIu64 ")",
			 (int)pid, start, tree_start);
		goto out;
	}
	if (port > 0 && ld_end_port(port) == 0)
		log_info("lazy dump: ended the session of a page server still waiting on "
			 "127.0.0.1:%d",
			 port);
	n = proctree_members(pid, &mem);
	if (n < 0) {
		ret = n;
		snprintf(why, why_len, "cannot list the dumped tree of %d: %s", (int)pid,
			 strerror(-n));
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (ld_held(mem[i].state))
			continue;
		ret = -EBUSY;
		snprintf(why, why_len,
			 "process %d of the dumped tree of %d runs (state %c): it was continued, "
			 "its memory may have changed",
			 (int)mem[i].pid, (int)pid, mem[i].state);
		goto out;
	}
	log_info("lazy dump of pid %d: its stopped tree taken again (%d process(es))", (int)pid, n);
	*out = ld;
	ld = NULL;
	ret = 0;
out:
	free(mem);
	src_lazydump_free(ld);
	return ret;
}

/* Finds the stopped tree's process of every task of set with lazy pages. */
static int ld_bind(struct src_lazydump *ld, const struct img_set *set, char *why, size_t why_len)
{
	struct proctree_member *mem = NULL;
	pid_t *host = NULL;
	size_t t;
	int n, i, ret;

	if (ld->host_pids)
		return 0;
	n = proctree_members(ld->pid, &mem);
	if (n < 0) {
		snprintf(why, why_len, "cannot list the dumped tree of %d: %s", (int)ld->pid,
			 strerror(-n));
		return n;
	}
	host = calloc(set->nr_tasks ? set->nr_tasks : 1, sizeof(*host));
	ret = host ? 0 : -ENOMEM;
	for (t = 0; ret == 0 && t < set->nr_tasks; t++) {
		if (!set->tasks[t].nr_lazy)
			continue;
		for (i = 0; i < n && !host[t]; i++)
			/* Stopped or traced: a zombie or a gone one holds no memory. */
			if (mem[i].vpid == set->tasks[t].pid &&
			    (mem[i].state == 'T' || mem[i].state == 't'))
				host[t] = mem[i].pid;
		if (!host[t]) {
			ret = -ESRCH;
			snprintf(why, why_len,
				 "process %d of the images (lazy pages) is not in the stopped tree "
				 "of %d any more",
				 set->tasks[t].pid, (int)ld->pid);
		}
	}
	free(mem);
	if (ret < 0) {
		free(host);
		return ret;
	}
	ld->host_pids = host;
	return 0;
}

int src_lazydump_bind(struct src_lazydump *ld, const struct img_set *set, char *why, size_t why_len)
{
	return ld->adopted ? ld_bind(ld, set, why, why_len) : 0;
}

int src_lazydump_status_fd(const struct src_lazydump *ld)
{
	return ld->status_wfd;
}

static void ld_status_cb(evutil_socket_t fd, short what, void *arg)
{
	struct src_lazydump *ld = arg;
	char c;
	ssize_t n;
	int ret;

	(void)what;
	n = read(fd, &c, 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	event_del(ld->status_ev);
	if (n != 1) {
		/* criu exited or failed before its page server was up: its exit says why. */
		log_info("lazy dump of pid %d: criu closed its status fd without the byte",
			 (int)ld->pid);
		return;
	}
	ld->ready = true;
	ret = proctree_stop(ld->pidfd, ld->pid);
	if (ret < 0)
		log_err("lazy dump of pid %d: cannot stop the dumped tree (%s): a failed transfer "
			"would resume it",
			(int)ld->pid, strerror(-ret));
	else
		log_info("lazy dump of pid %d: images written, page server on 127.0.0.1:%d; %d "
			 "process(es) stopped",
			 (int)ld->pid, ld->port, ret);
	ld->ops->ready(ld, ld->arg);
}

int src_lazydump_watch(struct src_lazydump *ld)
{
	if (ld->status_wfd >= 0)
		close(ld->status_wfd);
	ld->status_wfd = -1;
	ld->status_ev = event_new(ld->base, ld->status_rfd, EV_READ | EV_PERSIST, ld_status_cb, ld);
	if (!ld->status_ev || event_add(ld->status_ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

bool src_lazydump_is_ready(const struct src_lazydump *ld)
{
	return ld->ready;
}

static void ld_staged(struct lazystage *ls, const struct lazystage_unit *u, void *arg)
{
	struct src_lazydump *ld = arg;

	(void)ls;
	ld->ops->staged(ld, u, ld->arg);
}

static void ld_failed(struct lazystage *ls, int err, void *arg)
{
	struct src_lazydump *ld = arg;

	(void)ls;
	ld->ops->failed(ld, err, ld->arg);
}

static void ld_closed(struct lazystage *ls, int status, void *arg)
{
	struct src_lazydump *ld = arg;

	(void)ls;
	if (status != 0)
		log_warn("lazy dump of pid %d: the page server ended its session with %d",
			 (int)ld->pid, status);
}

static const struct lazystage_ops ld_stage_ops = {
    .staged = ld_staged,
    .failed = ld_failed,
    .closed = ld_closed,
};

int src_lazydump_stage(struct src_lazydump *ld, const struct img_set *set, const uint8_t *page_key)
{
	char port[8];
	int ret;

	if (ld->stage)
		return 0;
	if (!ld->adopted && set->relazied) {
		ret = ld_end_port(ld->port);
		if (ret < 0) {
			log_err(
			    "lazy dump of pid %d: criu marked no page lazy, and its page server "
			    "cannot be reached to end its session: %s",
			    (int)ld->pid, strerror(-ret));
			return ret;
		}
		ld->from_tree = true;
		log_info("lazy dump of pid %d: criu marked no page lazy (design.md §10.3): its "
			 "page server holds none, its session ended; the stopped tree serves them",
			 (int)ld->pid);
	}
	if (ld->from_tree) {
		char why[256];

		ret = ld_bind(ld, set, why, sizeof(why));
		if (ret < 0) {
			log_err("lazy dump of pid %d: %s", (int)ld->pid, why);
			return ret;
		}
	}
	if (ld->adopted || ld->from_tree) {
		if (!ld->host_pids)
			return -ENXIO;
		ret = lazystage_open_proc(ld->base, set, ld->area, page_key, ld->host_pids,
					  &ld_stage_ops, ld, &ld->stage);
		if (ret < 0)
			log_err("lazy dump of pid %d: cannot stage from its stopped tree: %s",
				(int)ld->pid, strerror(-ret));
		else
			log_info(
			    "lazy dump of pid %d: staging from its stopped tree (criu is gone)",
			    (int)ld->pid);
		return ret;
	}
	snprintf(port, sizeof(port), "%d", ld->port);
	ret = lazystage_open(ld->base, set, ld->area, page_key, "127.0.0.1", port, &ld_stage_ops,
			     ld, &ld->stage);
	if (ret < 0)
		log_err("lazy dump of pid %d: cannot stage from 127.0.0.1:%d: %s", (int)ld->pid,
			ld->port, strerror(-ret));
	return ret;
}

int src_lazydump_area(struct src_lazydump *ld, const struct img_set *set, void **base, size_t *len)
{
	uint64_t n = lazystage_area_len(set);
	void *a;

	if (ld->stage)
		return -EALREADY;
	if (!ld->area && n) {
		a = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (a == MAP_FAILED) {
			log_err("lazy dump of pid %d: cannot map a %" PRIu64
				"-byte staging area: %s",
				(int)ld->pid, n, strerror(errno));
			return -ENOMEM;
		}
		ld->area = a;
		ld->area_len = n;
	}
	*base = ld->area;
	*len = ld->area_len;
	return 0;
}

bool src_lazydump_from_tree(const struct src_lazydump *ld)
{
	return ld && ld->from_tree;
}

struct lazystage *src_lazydump_stage_of(const struct src_lazydump *ld)
{
	return ld ? ld->stage : NULL;
}

void src_lazydump_end(struct src_lazydump *ld)
{
	int ret;

	if (ld->stage) {
		lazystage_close(ld->stage);
		return;
	}
	if (ld->adopted || ld->from_tree)
		return;
	/* Never connected: the dump waits in accept(). */
	ret = ld_end_port(ld->port);
	if (ret < 0)
		log_warn("lazy dump of pid %d: cannot reach its page server to end it: %s",
			 (int)ld->pid, strerror(-ret));
}

void src_lazydump_release(struct src_lazydump *ld)
{
	int ret;

	if (ld->released)
		return;
	ld->released = true;
	if (ld->stage)
		lazystage_close(ld->stage);
	ret = proctree_kill(ld->pidfd, ld->pid);
	if (ret < 0 && ret != -ESRCH)
		log_err("lazy dump of pid %d: cannot kill the source's stopped copy: %s",
			(int)ld->pid, strerror(-ret));
	else
		log_info("lazy dump of pid %d: the destination has every page; the source's "
			 "stopped copy is killed",
			 (int)ld->pid);
}

int src_lazydump_resume(struct src_lazydump *ld)
{
	int ret;

	if (ld->released)
		return -ESRCH;
	ret = proctree_cont(ld->pidfd, ld->pid);
	if (ret >= 0)
		log_info("lazy dump of pid %d: rolled back: %d process(es) continued", (int)ld->pid,
			 ret + 1);
	return ret < 0 ? ret : 0;
}

void src_lazydump_free(struct src_lazydump *ld)
{
	if (!ld)
		return;
	lazystage_free(ld->stage);
	if (ld->area)
		munmap(ld->area, ld->area_len);
	if (ld->status_ev)
		event_free(ld->status_ev);
	if (ld->status_rfd >= 0)
		close(ld->status_rfd);
	if (ld->status_wfd >= 0)
		close(ld->status_wfd);
	if (ld->pidfd >= 0)
		close(ld->pidfd);
	free(ld->host_pids);
	free(ld);
}
