// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the lazy-pages socket records (dest-agent/lpsock.c):
 * what `criu restore --lazy-pages` writes on lazy-pages.socket.
 *
 * The parser reads a connected stream socket from the event loop, so the
 * target feeds it as criu would: through a socketpair, in the chunks the
 * input describes, each chunk optionally carrying file descriptors
 * (SCM_RIGHTS), and runs the loop after each chunk.
 *
 * Input: one flags byte (bit 0: no image set, so no pid check; bit 1: the
 * task callback rejects every userfaultfd), then chunks of
 *   [ctl] [len] [len bytes]
 * where ctl bits 0-1 attach nothing, a userfaultfd, a non-userfaultfd fd
 * (/dev/null) or both, and bit 2 shuts the writing side after the chunk.
 * The images hold pids 100 and 101 with memory and 102 without.
 *
 * Besides crashes, it aborts when the callbacks see what lpsock.h rules
 * out (a pid outside the images or twice, a task without memory, a fd that
 * is no userfaultfd, anything after an error or after FIN but the end, a
 * second error) or when a file descriptor leaks.
 *
 * Run: `make fuzz FUZZ_TARGETS=lpsock` (docs/testing.md, "Fuzzing").
 */
#include <event2/event.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fuzz.h"
#include "log.h"
#include "lpsock.h"
#include "uffd.h"

#define FUZZ_NO_IMAGES 1u
#define FUZZ_REJECT    2u

#define FUZZ_FD_UFFD  1u
#define FUZZ_FD_OTHER 2u
#define FUZZ_SHUT_WR  4u

#define FUZZ_PIDS_MAX 64

static struct img_task fuzz_tasks[] = {
    {.pid = 100, .has_memory = true},
    {.pid = 101, .has_memory = true},
    {.pid = 102, .has_memory = false},
};
static struct img_set fuzz_set = {.dir = (char *)"fuzz", .tasks = fuzz_tasks, .nr_tasks = 3};

/* What the callbacks saw of one input. */
struct fuzz_rec {
	const struct img_set *imgs;
	bool reject;
	int32_t pids[FUZZ_PIDS_MAX];
	size_t nr_pids;
	uint32_t tasks, zombies;
	bool finished, failed;
};

/* Made once: a userfaultfd and a fd of another kind to pass, and the loop. */
static struct {
	struct event_base *base;
	int uffd;
	int other;
} fuzz_env = {NULL, -1, -1};

static void fuzz_env_init(void)
{
	struct uffdio_api api = {.api = UFFD_API};

	if (fuzz_env.base)
		return;
	log_set_level(LOG_LVL_ERR);
	fuzz_env.base = event_base_new();
	fuzz_env.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fuzz_env.uffd >= 0 && ioctl(fuzz_env.uffd, UFFDIO_API, &api) < 0) {
		close(fuzz_env.uffd);
		fuzz_env.uffd = -1;
	}
	fuzz_env.other = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fuzz_check(fuzz_env.base && fuzz_env.other >= 0);
}

/* A record's pid: in the images (with memory for a task), and new. */
static void fuzz_see_pid(struct fuzz_rec *r, int32_t pid, bool task)
{
	const struct img_task *t = r->imgs ? image_set_task(r->imgs, pid) : NULL;

	fuzz_check(!r->finished && !r->failed);
	fuzz_check(pid > 0 && pid <= IMG_PID_MAX);
	fuzz_check(!r->imgs || (t && (!task || t->has_memory)));
	for (size_t i = 0; i < r->nr_pids; i++)
		fuzz_check(r->pids[i] != pid);
	if (r->nr_pids < FUZZ_PIDS_MAX)
		r->pids[r->nr_pids++] = pid;
}

static int fuzz_task(void *arg, int32_t pid, int uffd, pid_t sender)
{
	struct fuzz_rec *r = arg;

	fuzz_see_pid(r, pid, true);
	fuzz_check(uffd_check_fd(uffd, NULL, 0) == 0);
	close(uffd);
	r->tasks++;
	return r->reject ? -EINVAL : 0;
}

static void fuzz_zombie(void *arg, int32_t pid)
{
	struct fuzz_rec *r = arg;

	fuzz_see_pid(r, pid, false);
	r->zombies++;
}

static void fuzz_finished(void *arg)
{
	struct fuzz_rec *r = arg;

	fuzz_check(!r->finished && !r->failed);
	r->finished = true;
}

static void fuzz_error(void *arg, int err, const char *reason)
{
	struct fuzz_rec *r = arg;

	fuzz_check(!r->failed && err < 0 && reason && reason[0]);
	r->failed = true;
}

static const struct lpsock_ops fuzz_ops = {
    .task = fuzz_task,
    .zombie = fuzz_zombie,
    .finished = fuzz_finished,
    .error = fuzz_error,
};

/* Sends one chunk with its fds; false once the parser has hung up. */
static bool fuzz_send(int sock, const uint8_t *buf, size_t len, unsigned ctl)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int fds[2], nr = 0;
	ssize_t n;

	if (ctl & FUZZ_FD_UFFD && fuzz_env.uffd >= 0)
		fds[nr++] = fuzz_env.uffd;
	if (ctl & FUZZ_FD_OTHER)
		fds[nr++] = fuzz_env.other;
	/* A message with fds needs a byte to ride on. */
	if (len == 0 && nr == 0)
		return true;
	if (len == 0)
		iov.iov_base = (void *)"", iov.iov_len = 1;
	if (nr) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nr * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nr * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nr * sizeof(int));
	}
	n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	return n >= 0;
}

static void fuzz_spin(void)
{
	/* Level-triggered: 8 rounds of up to 64 records drain any 255-byte chunk. */
	for (int i = 0; i < 8; i++)
		event_base_loop(fuzz_env.base, EVLOOP_NONBLOCK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_rec r = {0};
	struct lpsock *ls = NULL;
	int sv[2], probe_before, probe_after;
	size_t off = 1;

	if (size < 1)
		return 0;
	fuzz_env_init();
	probe_before = dup(0);
	close(probe_before);
	r.imgs = data[0] & FUZZ_NO_IMAGES ? NULL : &fuzz_set;
	r.reject = data[0] & FUZZ_REJECT;
	fuzz_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	fuzz_check(lpsock_attach(fuzz_env.base, sv[0], r.imgs, &fuzz_ops, &r, &ls) == 0);
	while (off + 2 <= size) {
		unsigned ctl = data[off];
		size_t len = data[off + 1];

		off += 2;
		if (len > size - off)
			len = size - off;
		if (!fuzz_send(sv[1], data + off, len, ctl))
			break;
		off += len;
		fuzz_spin();
		if (ctl & FUZZ_SHUT_WR)
			break;
	}
	close(sv[1]);
	fuzz_spin();
	fuzz_check(lpsock_nr_tasks(ls) == r.tasks && lpsock_nr_zombies(ls) == r.zombies);
	fuzz_check(lpsock_finished(ls) == r.finished);
	/* Every stream ends in FIN or an error: the hang-up at the latest. */
	fuzz_check(r.finished || r.failed);
	lpsock_free(ls);
	/* Every fd the parser was given was closed (or handed to the task callback). */
	probe_after = dup(0);
	close(probe_after);
	fuzz_check(probe_after == probe_before);
	return 0;
}
