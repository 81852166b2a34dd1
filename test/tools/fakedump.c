// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-fakedump: the page-server half of `criu dump --lazy-pages`, for
 * the host tests of rdmig-source's lazy dump (test/host/fake-criu.sh runs
 * it after writing --lazy-only images with rdmig-mkimage).
 *
 *   rdmig-fakedump -D DIR --port P [--status-fd N] [--hangup] [--delay-ms MS]
 *
 * Reads the PE_LAZY ranges of the images in DIR, listens on 127.0.0.1:P,
 * writes the status byte to fd N (as criu's --status-fd) and serves one
 * client with test/unit/fake_psrv.c: the pages mkimage would have written
 * (pattern_fill() per pid), strictly in order, shortened at 819-page
 * buffers, PS_IOV_CLOSE answered with 0.  --hangup closes the connection
 * half-way through its first reply: a page server that dies mid-pull.
 * --delay-ms waits that long before each reply: a slow dump, so the
 * destination faults on units not staged yet.
 * Exits 0 when the client ended the session cleanly, 1 otherwise (criu
 * exits 1 when its lazy transfer failed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "image.h"
#include "unit/fake_psrv.h"

/* CRIU's pipe buffer on x86-64: 8 * 4096 / sizeof(struct pipe_buffer). */
#define FAKEDUMP_CHUNK 819

static int fd_listen(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"status-fd", required_argument, NULL, 's'},
	    {"hangup", no_argument, NULL, 'H'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	struct fake_psrv f = {.chunk = FAKEDUMP_CHUNK};
	struct fake_range *ranges = NULL;
	struct img_set *set = NULL;
	const char *dir = NULL;
	int port = 0, status_fd = -1, lfd, c;
	size_t i, j, n = 0;

	while ((c = getopt_long(argc, argv, "D:", opts, NULL)) != -1) {
		switch (c) {
		case 'D':
			dir = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 's':
			status_fd = atoi(optarg);
			break;
		case 'H':
			f.mode = FAKE_HANGUP_MID_DATA;
			break;
		case 'd':
			f.delay_ms = (unsigned int)atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (!dir || port <= 0 || image_set_open(dir, &set) < 0) {
		fprintf(stderr, "rdmig-fakedump: need -D DIR (images) and --port P\n");
		return 2;
	}
	for (i = 0; i < set->nr_tasks; i++)
		n += set->tasks[i].nr_lazy;
	ranges = calloc(n ? n : 1, sizeof(*ranges));
	if (!ranges)
		return 1;
	for (i = 0, n = 0; i < set->nr_tasks; i++) {
		for (j = 0; j < set->tasks[i].nr_lazy; j++, n++) {
			ranges[n].pid = (uint32_t)set->tasks[i].pid;
			ranges[n].vaddr = set->tasks[i].lazy[j].vaddr;
			ranges[n].nr = set->tasks[i].lazy[j].len / IMG_PAGE_SIZE;
		}
	}
	f.v42 = set->pagemap_v42;
	f.ranges = ranges;
	f.nr_ranges = n;
	lfd = fd_listen(port);
	if (lfd < 0) {
		perror("rdmig-fakedump: 127.0.0.1");
		return 1;
	}
	/* Ready, as criu is right before accept(). */
	if (status_fd >= 0) {
		if (write(status_fd, "", 1) != 1)
			return 1;
		close(status_fd);
	}
	fake_psrv_start_listen(&f, lfd);
	fake_psrv_join(&f);
	close(lfd);
	fprintf(stderr, "rdmig-fakedump: %d GETs, close %d, protocol error %d\n", f.gets,
		f.saw_close, f.protocol_error);
	image_set_free(set);
	free(ranges);
	return f.mode == FAKE_GOOD && !f.protocol_error && f.saw_close ? 0 : 1;
}
