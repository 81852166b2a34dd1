// SPDX-License-Identifier: GPL-2.0-or-later
/* The lazy-pages socket parser, fed through a socketpair the way criu restore writes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "lpsock.h"
#include "uffd.h"

#define MAX_EVENTS 16

struct rec {
	int nr_tasks;
	int32_t task_pid[MAX_EVENTS];
	pid_t sender[MAX_EVENTS];
	int uffd_ok[MAX_EVENTS];
	int nr_zombies;
	int32_t zombie_pid[MAX_EVENTS];
	int finished;
	int errors;
	int last_err;
	char reason[256];
	int reject; /* task() returns this */
};

static int rec_task(void *arg, int32_t pid, int uffd, pid_t sender)
{
	struct rec *r = arg;

	r->task_pid[r->nr_tasks] = pid;
	r->sender[r->nr_tasks] = sender;
	r->uffd_ok[r->nr_tasks] = uffd_check_fd(uffd, NULL, 0) == 0;
	r->nr_tasks++;
	close(uffd);
	return r->reject;
}

static void rec_zombie(void *arg, int32_t pid)
{
	struct rec *r = arg;

	r->zombie_pid[r->nr_zombies++] = pid;
}

static void rec_finished(void *arg)
{
	struct rec *r = arg;

	r->finished++;
}

static void rec_error(void *arg, int err, const char *reason)
{
	struct rec *r = arg;

	r->errors++;
	r->last_err = err;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

static const struct lpsock_ops rec_ops = {
    .task = rec_task,
    .zombie = rec_zombie,
    .finished = rec_finished,
    .error = rec_error,
};

/* pids 100 and 101 have memory, 102 is a zombie in the images. */
static struct img_task fake_tasks[] = {
    {.pid = 100, .has_memory = true},
    {.pid = 101, .has_memory = true},
    {.pid = 102, .has_memory = false},
};
static struct img_set fake_set = {.dir = (char *)"fake", .tasks = fake_tasks, .nr_tasks = 3};

struct fixture {
	struct event_base *base;
	struct lpsock *ls;
	int peer;
	struct rec rec;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int sv[2];

	assert_non_null(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->base = event_base_new();
	assert_non_null(f->base);
	assert_int_equal(lpsock_attach(f->base, sv[0], &fake_set, &rec_ops, &f->rec, &f->ls), 0);
	f->peer = sv[1];
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	lpsock_free(f->ls);
	if (f->peer >= 0)
		close(f->peer);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void spin(struct fixture *f)
{
	for (int i = 0; i < 8; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static int new_uffd(void)
{
	struct uffdio_api api = {.api = UFFD_API};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	return fd;
}

static void send_bytes(int sock, const void *buf, size_t len)
{
	assert_int_equal(send(sock, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void send_int(int sock, int32_t v)
{
	send_bytes(sock, &v, sizeof(v));
}

/* The 1-byte message with nfds copies of fd (nfds 0: no SCM_RIGHTS at all). */
static void send_fd_msg(int sock, int fd, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctrl;
	char byte = 0;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int fds[4] = {fd, fd, fd, fd};

	if (nfds) {
		struct cmsghdr *c;

		mh.msg_control = ctrl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), 1);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_split_records(void **state)
{
	struct fixture *f = *state;
	int32_t pid = 100;
	const uint8_t *p = (const uint8_t *)&pid;
	int uffd = new_uffd();

	/* The pid arrives a byte at a time: nothing is reported until it is whole. */
	for (int i = 0; i < 4; i++) {
		send_bytes(f->peer, p + i, 1);
		spin(f);
		assert_int_equal(f->rec.nr_tasks, 0);
	}
	assert_int_equal(f->rec.errors, 0);
	send_fd_msg(f->peer, uffd, 1);
	spin(f);
	assert_int_equal(f->rec.nr_tasks, 1);
	assert_int_equal(f->rec.task_pid[0], 100);
	assert_true(f->rec.uffd_ok[0]);
	/* The kernel fills in the sender from SO_PASSCRED. */
	assert_int_equal(f->rec.sender[0], getpid());
	/* FIN split in two halves. */
	{
		uint32_t fin = LPSOCK_FIN;

		send_bytes(f->peer, &fin, 2);
		spin(f);
		assert_int_equal(f->rec.finished, 0);
		send_bytes(f->peer, (const uint8_t *)&fin + 2, 2);
		spin(f);
	}
	assert_int_equal(f->rec.finished, 1);
	assert_true(lpsock_finished(f->ls));
	/* Hang-up after FIN is the normal end. */
	close(f->peer);
	f->peer = -1;
	spin(f);
	assert_int_equal(f->rec.errors, 0);
	assert_int_equal(lpsock_nr_tasks(f->ls), 1);
	close(uffd);
}

static void test_burst_with_zombie(void **state)
{
	struct fixture *f = *state;
	int a = new_uffd(), b = new_uffd();
	uint32_t fin = LPSOCK_FIN;

	/* Everything queued before the parser runs once. */
	send_int(f->peer, 101);
	send_fd_msg(f->peer, a, 1);
	send_int(f->peer, -102);
	send_int(f->peer, 100);
	send_fd_msg(f->peer, b, 1);
	send_bytes(f->peer, &fin, 4);
	spin(f);
	assert_int_equal(f->rec.errors, 0);
	assert_int_equal(f->rec.nr_tasks, 2);
	assert_int_equal(f->rec.task_pid[0], 101);
	assert_int_equal(f->rec.task_pid[1], 100);
	assert_true(f->rec.uffd_ok[0] && f->rec.uffd_ok[1]);
	assert_int_equal(f->rec.nr_zombies, 1);
	assert_int_equal(f->rec.zombie_pid[0], 102);
	assert_int_equal(f->rec.finished, 1);
	assert_int_equal(lpsock_nr_zombies(f->ls), 1);
	close(a);
	close(b);
}

static void test_hup_before_fin(void **state)
{
	struct fixture *f = *state;
	int uffd = new_uffd();

	send_int(f->peer, 100);
	send_fd_msg(f->peer, uffd, 1);
	send_bytes(f->peer, "\x65\x00", 2); /* half of the next pid */
	close(f->peer);
	f->peer = -1;
	spin(f);
	assert_int_equal(f->rec.nr_tasks, 1);
	assert_int_equal(f->rec.errors, 1);
	assert_int_equal(f->rec.last_err, -EPIPE);
	assert_non_null(strstr(f->rec.reason, "before restore finished"));
	assert_non_null(strstr(f->rec.reason, "middle of a pid"));
	assert_false(lpsock_finished(f->ls));
	close(uffd);
}

static void test_hup_after_pid(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, 100);
	close(f->peer);
	f->peer = -1;
	spin(f);
	assert_int_equal(f->rec.errors, 1);
	assert_non_null(strstr(f->rec.reason, "announced but not sent"));
}

/* One garbage scenario: what is sent, and a word the reason must contain. */
static void expect_garbage(struct fixture *f, int err, const char *word)
{
	spin(f);
	assert_int_equal(f->rec.errors, 1);
	assert_int_equal(f->rec.last_err, err);
	if (!strstr(f->rec.reason, word))
		fail_msg("reason '%s' lacks '%s'", f->rec.reason, word);
	/* The client is dropped, as criu lazy-pages does: its next send fails. */
	assert_int_equal(send(f->peer, "x", 1, MSG_NOSIGNAL), -1);
	assert_int_equal(errno, EPIPE);
}

static void test_garbage_pid_values(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, 0);
	expect_garbage(f, -EBADMSG, "garbage");
}

static void test_garbage_huge_pid(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, 0x7fffffff);
	expect_garbage(f, -EBADMSG, "garbage");
}

static void test_pid_not_in_images(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, 999);
	expect_garbage(f, -ESRCH, "not in the images");
}

static void test_zombie_not_in_images(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, -998);
	expect_garbage(f, -ESRCH, "zombie pid 998");
}

static void test_alive_without_memory(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, 102);
	expect_garbage(f, -EBADMSG, "no memory images");
}

static void test_not_a_uffd(void **state)
{
	struct fixture *f = *state;
	int p[2], before;

	assert_int_equal(pipe(p), 0);
	before = count_fds();
	send_int(f->peer, 100);
	send_fd_msg(f->peer, p[0], 1);
	expect_garbage(f, -EBADMSG, "not a userfaultfd but pipe:[");
	assert_int_equal(f->rec.nr_tasks, 0);
	/* The received copy was closed: our socket end is closed too, hence one less. */
	assert_int_equal(count_fds(), before - 1);
	close(p[0]);
	close(p[1]);
}

static void test_record_without_fd(void **state)
{
	struct fixture *f = *state;

	send_int(f->peer, 100);
	send_fd_msg(f->peer, -1, 0);
	expect_garbage(f, -EBADMSG, "got 0 fds");
}

static void test_record_with_two_fds(void **state)
{
	struct fixture *f = *state;
	int uffd = new_uffd(), before = count_fds();

	send_int(f->peer, 100);
	send_fd_msg(f->peer, uffd, 2);
	expect_garbage(f, -EBADMSG, "got 2 fds");
	assert_int_equal(count_fds(), before - 1);
	close(uffd);
}

static void test_fd_inside_pid(void **state)
{
	struct fixture *f = *state;
	int uffd = new_uffd();

	/* An fd riding on the pid bytes is not criu's protocol. */
	send_fd_msg(f->peer, uffd, 1);
	expect_garbage(f, -EBADMSG, "none belongs");
	close(uffd);
}

static void test_pid_twice(void **state)
{
	struct fixture *f = *state;
	int uffd = new_uffd();

	send_int(f->peer, 100);
	send_fd_msg(f->peer, uffd, 1);
	send_int(f->peer, 100);
	expect_garbage(f, -EBADMSG, "sent twice");
	assert_int_equal(f->rec.nr_tasks, 1);
	close(uffd);
}

static void test_data_after_fin(void **state)
{
	struct fixture *f = *state;
	uint32_t fin = LPSOCK_FIN;

	send_bytes(f->peer, &fin, 4);
	send_int(f->peer, 100);
	expect_garbage(f, -EBADMSG, "after restore finished");
	assert_int_equal(f->rec.finished, 1);
}

static void test_owner_rejects(void **state)
{
	struct fixture *f = *state;
	int uffd = new_uffd();

	f->rec.reject = -ENOMEM;
	send_int(f->peer, 100);
	send_fd_msg(f->peer, uffd, 1);
	expect_garbage(f, -ENOMEM, "rejected");
	close(uffd);
}

/* SO_PEERCRED: a client of another uid is refused, root's accepted. */
static void test_peer_uid(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len;
	int l, c, conn, status;
	uid_t uid;
	pid_t pid;

	/* An abstract name: no file permissions in the way of the other uid. */
	snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "rdmig-lpsock-test-%d", (int)getpid());
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(listen(l, 4), 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, len), 0);
	conn = accept(l, NULL, NULL);
	assert_int_equal(lpsock_peer_check(conn, &uid), 0);
	assert_int_equal(uid, geteuid());
	close(conn);
	close(c);
	if (geteuid() != 0) {
		close(l);
		skip();
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		c = socket(AF_UNIX, SOCK_STREAM, 0);
		_exit(connect(c, (struct sockaddr *)&sa, len) == 0 ? 0 : 3);
	}
	conn = accept(l, NULL, NULL);
	assert_true(conn >= 0);
	assert_int_equal(lpsock_peer_check(conn, &uid), -EPERM);
	assert_int_equal(uid, 65534);
	close(conn);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	close(l);
}

/* The real socket: created in the work dir, stale file replaced, one client only. */
static void test_listen_and_accept(void **state)
{
	char dir[] = "/tmp/rdmig-lpsock-XXXXXX", path[64];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct event_base *base = event_base_new();
	struct lpsock *ls = NULL;
	struct rec rec = {0};
	uint32_t fin = LPSOCK_FIN;
	int c1, c2, uffd = new_uffd(), stale;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, LPSOCK_NAME);
	/* A file that is not a socket is never removed: the agent did not make it. */
	stale = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(stale >= 0);
	close(stale);
	assert_int_equal(lpsock_listen(dir, &ls), -EEXIST);
	assert_int_equal(unlink(path), 0);
	/* A socket of an earlier run is. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	stale = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(stale);
	assert_int_equal(lpsock_listen(dir, &ls), 0);
	assert_string_equal(lpsock_path(ls), path);
	assert_int_equal(lpsock_start(ls, base, &fake_set, &rec_ops, &rec), 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c1 = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(c1, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* Records sent before the daemon even accepted still carry the sender. */
	send_int(c1, 100);
	send_fd_msg(c1, uffd, 1);
	for (int i = 0; i < 8; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(rec.nr_tasks, 1);
	assert_int_equal(rec.sender[0], getpid());
	/* The listening socket is closed after the first client. */
	c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(c2, (struct sockaddr *)&sa, sizeof(sa)), -1);
	send_bytes(c1, &fin, 4);
	for (int i = 0; i < 8; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(rec.finished, 1);
	assert_int_equal(rec.errors, 0);
	close(c1);
	close(c2);
	close(uffd);
	lpsock_free(ls);
	event_base_free(base);
	unlink(path);
	rmdir(dir);
}

/* A work dir too long for sun_path still works (through its /proc/self/fd link). */
static void test_long_work_dir(void **state)
{
	char dir[512] = "/tmp/rdmig-lpsock-long-XXXXXX";
	struct lpsock *ls = NULL;
	struct stat st;
	char path[600];
	size_t base_len;

	assert_non_null(mkdtemp(dir));
	base_len = strlen(dir);
	strcat(dir, "/");
	for (int i = 0; i < 120; i++)
		strcat(dir, "d");
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(lpsock_listen(dir, &ls), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, LPSOCK_NAME);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	lpsock_free(ls);
	unlink(path);
	rmdir(dir);
	dir[base_len] = '\0';
	rmdir(dir);
	/* A missing work dir is an error, not a crash. */
	assert_int_equal(lpsock_listen("/nonexistent/rdmig", &ls), -ENOENT);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_split_records),
	    T(test_burst_with_zombie),
	    T(test_hup_before_fin),
	    T(test_hup_after_pid),
	    T(test_garbage_pid_values),
	    T(test_garbage_huge_pid),
	    T(test_pid_not_in_images),
	    T(test_zombie_not_in_images),
	    T(test_alive_without_memory),
	    T(test_not_a_uffd),
	    T(test_record_without_fd),
	    T(test_record_with_two_fds),
	    T(test_fd_inside_pid),
	    T(test_pid_twice),
	    T(test_data_after_fin),
	    T(test_owner_rejects),
	    cmocka_unit_test(test_peer_uid),
	    cmocka_unit_test(test_listen_and_accept),
	    cmocka_unit_test(test_long_work_dir),
	};
#undef T

	/* Rejections are logged to stderr; TAP goes to stdout. */
	log_init("test_lpsock", LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
