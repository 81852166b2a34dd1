// SPDX-License-Identifier: GPL-2.0-or-later
/* fake_psrv: a stand-in for CRIU's lazy page server (see fake_psrv.h). */
#include "fake_psrv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "pattern.h"

#define PAGE 4096u

/* Blocking read or write of exactly len bytes; -1 on end of file or error. */
static int xfer_full(int fd, void *buf, size_t len, bool out)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = out ? send(fd, p, len, MSG_NOSIGNAL) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	return xfer_full(fd, buf, len, false);
}

static int write_full(int fd, const void *buf, size_t len)
{
	return xfer_full(fd, (void *)buf, len, true);
}

static void fhdr_put(const struct fake_psrv *f, uint8_t *h, uint32_t cmd, uint64_t nr,
		     uint64_t vaddr, uint64_t dst)
{
	uint32_t nr32 = (uint32_t)nr;

	memset(h, 0, 32);
	memcpy(h, &cmd, 4);
	if (f->v42) {
		memcpy(h + 8, &nr, 8);
		memcpy(h + 16, &vaddr, 8);
		memcpy(h + 24, &dst, 8);
	} else {
		memcpy(h + 4, &nr32, 4);
		memcpy(h + 8, &vaddr, 8);
		memcpy(h + 16, &dst, 8);
	}
}

static void fhdr_get(const struct fake_psrv *f, const uint8_t *h, uint32_t *cmd, uint64_t *nr,
		     uint64_t *vaddr, uint64_t *dst)
{
	uint32_t nr32;

	memcpy(cmd, h, 4);
	if (f->v42) {
		memcpy(nr, h + 8, 8);
		memcpy(vaddr, h + 16, 8);
		memcpy(dst, h + 24, 8);
	} else {
		memcpy(&nr32, h + 4, 4);
		*nr = nr32;
		memcpy(vaddr, h + 8, 8);
		memcpy(dst, h + 16, 8);
	}
}

static const struct fake_range *frange_of(const struct fake_psrv *f, uint64_t pid, uint64_t vaddr)
{
	size_t i;

	for (i = 0; i < f->nr_ranges; i++)
		if (f->ranges[i].pid == pid && vaddr >= f->ranges[i].vaddr &&
		    vaddr < f->ranges[i].vaddr + f->ranges[i].nr * PAGE)
			return &f->ranges[i];
	return NULL;
}

/* Answers one GET the way the dump does; returns -1 to end the session. */
static int fake_serve_get(struct fake_psrv *f, uint64_t nr, uint64_t vaddr, uint64_t dst)
{
	const struct fake_range *r = frange_of(f, dst, vaddr);
	uint64_t in_chunk, n, i, end;
	uint8_t hdr[32], *pages;
	size_t hlen = f->v42 ? 32 : 24, len;
	int ret;

	if (f->gets < FAKE_LOG_GETS)
		f->get_vaddr[f->gets] = vaddr;
	f->gets++;
	if (f->delay_ms)
		usleep(f->delay_ms * 1000u);
	/* The dump only knows PE_LAZY ranges of its own pids. */
	if (!r || vaddr % PAGE || nr == 0) {
		f->protocol_error = true;
		return -1;
	}
	/* Shortened to the end of the pipe buffer that holds vaddr. */
	in_chunk = f->chunk - ((vaddr - r->vaddr) / PAGE) % f->chunk;
	end = (r->vaddr + r->nr * PAGE - vaddr) / PAGE;
	n = nr < in_chunk ? nr : in_chunk;
	n = n < end ? n : end;
	fhdr_put(f, hdr, (4u << 16) | 6u, f->mode == FAKE_ZERO_PAGES ? 0 : n, vaddr,
		 f->mode == FAKE_BAD_PID ? dst + 1 : dst);
	if (write_full(f->fd, hdr, hlen) < 0)
		return -1;
	if (f->mode == FAKE_ZERO_PAGES || f->mode == FAKE_BAD_PID)
		return 0;
	len = n * PAGE;
	pages = malloc(len);
	assert_non_null(pages);
	for (i = 0; i < n; i++)
		pattern_fill(pages + i * PAGE, vaddr + i * PAGE,
			     pattern_seed_for_pid((int32_t)dst));
	if (f->mode == FAKE_HANGUP_MID_DATA)
		len /= 2;
	ret = write_full(f->fd, pages, len);
	free(pages);
	return f->mode == FAKE_HANGUP_MID_DATA ? -1 : ret;
}

static void *fake_main(void *arg)
{
	struct fake_psrv *f = arg;
	size_t hlen = f->v42 ? 32 : 24;
	uint64_t nr, vaddr, dst;
	uint8_t hdr[32], c;
	int32_t zero = 0;
	uint32_t cmd;

	if (f->listen_fd >= 0) {
		f->fd = accept(f->listen_fd, NULL, NULL);
		if (f->fd < 0)
			return NULL;
	}
	while (read_full(f->fd, hdr, hlen) == 0) {
		fhdr_get(f, hdr, &cmd, &nr, &vaddr, &dst);
		if (cmd == 0x1023) {
			f->saw_close = true;
			if (write_full(f->fd, &zero, sizeof(zero)) < 0)
				break;
			/* The dump waits for the client's end of file. */
			f->saw_eof_after_close = read(f->fd, &c, 1) == 0;
			break;
		}
		if (cmd != 7) {
			f->protocol_error = true;
			break;
		}
		if (fake_serve_get(f, nr, vaddr, dst) < 0)
			break;
	}
	close(f->fd);
	return NULL;
}

void fake_psrv_start_pair(struct fake_psrv *f, int *client_fd)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[1];
	f->listen_fd = -1;
	*client_fd = sv[0];
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

void fake_psrv_start_listen(struct fake_psrv *f, int listen_fd)
{
	f->fd = -1;
	f->listen_fd = listen_fd;
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

void fake_psrv_join(struct fake_psrv *f)
{
	pthread_join(f->thread, NULL);
}

void fake_end_failed(struct fake_end *e, int err)
{
	e->failed_calls++;
	e->failed_err = err;
	event_base_loopexit(e->base, NULL);
}

void fake_end_closed(struct fake_end *e, int status)
{
	e->closed_calls++;
	e->closed_status = status;
	event_base_loopexit(e->base, NULL);
}
