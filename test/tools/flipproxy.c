// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rdmig-flipproxy: a man in the middle for the host tests.  It accepts one
 * TCP connection (rdmig-dest, pointed at it as if it were the source),
 * connects to the real rdmig-source, and forwards both directions.  In the
 * source-to-destination stream it follows the control protocol's framing
 * (u32 big-endian length, payload) and flips one byte of one frame's
 * payload: the Nth frame (--frame N), or the first frame carrying body
 * field T (--type T: 7 ImageFile, 12 ReadResp, ...; proto/rdmig.proto).
 * Without either it only forwards: the control case.  A stream whose
 * frames travel inside TLS has no framing to follow: --byte B flips byte B
 * (from 0) of the raw source-to-destination stream instead.  --cut T loses
 * the first frame of type T in either direction (16 DoneAck, 15 Done):
 * nothing from its start on is forwarded, both connections close, and the
 * proxy then forwards one more connection untouched (the reconnection).
 *
 *   rdmig-flipproxy --to HOST:PORT [--frame N | --type T | --byte B | --cut T]
 *                   [--offset O]
 *
 * It listens on 127.0.0.1, a port the kernel picks, and prints
 * "listening on 127.0.0.1:PORT" then, when it tampers, "flipped frame N
 * (type T, L bytes) at payload offset O: 0xAA -> 0xBB" on stdout (line
 * buffered); it exits when either side closes.  A test tool: blocking
 * sockets and poll(), one connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct s2d {
	uint64_t frame;	     /* frames started so far */
	uint8_t hdr[4];	     /* header bytes of the current frame */
	size_t hdr_have;     /* 0..4 */
	uint32_t len;	     /* current frame's payload length */
	uint32_t at;	     /* payload bytes seen of the current frame */
	uint8_t head[16];    /* the payload's first bytes, to find its type */
	int type;	     /* body field number, -1 until known */
	uint64_t want_frame; /* 0: not by number */
	int want_type;	     /* -1: not by type */
	uint32_t offset;     /* in the payload; clamped to its last byte */
	int64_t want_byte;   /* -1: not by stream position */
	uint64_t bytes;	     /* stream bytes seen so far */
	int done;
	int cut;	    /* --cut: lose the target frame instead of flipping a byte */
	size_t frame_start; /* in the current buffer, of the current frame (0: before it) */
};

static int connect_to(const char *hostport)
{
	char host[256], *colon;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int fd, ret;

	snprintf(host, sizeof(host), "%s", hostport);
	colon = strrchr(host, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	ret = getaddrinfo(host, colon + 1, &hints, &ai);
	if (ret) {
		fprintf(stderr, "flipproxy: %s: %s\n", hostport, gai_strerror(ret));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		fprintf(stderr, "flipproxy: connect %s: %s\n", hostport, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* The body's field number: skip the seq field (key 0x08 and a varint). */
static int body_type(const uint8_t *p, size_t n)
{
	size_t i = 0;

	if (n < 2 || p[0] != 0x08)
		return -1;
	for (i = 1; i < n && (p[i] & 0x80); i++)
		;
	i++;
	return i < n ? p[i] >> 3 : -1;
}

/* Whether the current frame is the one to tamper with, once its type is known. */
static int is_target(const struct s2d *s)
{
	if (s->done)
		return 0;
	if (s->want_frame)
		return s->frame == s->want_frame;
	return s->want_type >= 0 && s->type == s->want_type;
}

/*
 * Where in the current payload to flip: --offset, inside the payload; when
 * choosing by type, not before the bytes that tell the type.
 */
static uint32_t flip_pos(const struct s2d *s)
{
	uint32_t pos = s->offset < s->len ? s->offset : s->len - 1;
	uint32_t known = s->len < sizeof(s->head) ? s->len - 1 : sizeof(s->head) - 1;

	return s->want_type >= 0 && pos < known ? known : pos;
}

/* Flips byte --byte of the raw stream if it is in buf[0..n). */
static void tamper_raw(struct s2d *s, uint8_t *buf, size_t n)
{
	uint64_t at = (uint64_t)s->want_byte;

	if (!s->done && at >= s->bytes && at < s->bytes + n) {
		uint8_t *p = buf + (at - s->bytes), was = *p;

		*p ^= 0x20;
		s->done = 1;
		printf("flipped stream byte %llu: 0x%02x -> 0x%02x\n", (unsigned long long)at, was,
		       *p);
	}
	s->bytes += n;
}

/*
 * Walks the frames of buf[0..n), flipping the chosen byte in place.  With
 * --cut, returns how many bytes to forward before the target frame (the
 * connection is then closed), else n.
 */
static size_t tamper(struct s2d *s, uint8_t *buf, size_t n)
{
	if (s->want_byte >= 0) {
		tamper_raw(s, buf, n);
		return n;
	}
	s->frame_start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s->hdr_have < 4) {
			if (s->hdr_have == 0)
				s->frame_start = i;
			s->hdr[s->hdr_have++] = buf[i];
			if (s->hdr_have == 4) {
				s->len = (uint32_t)s->hdr[0] << 24 | (uint32_t)s->hdr[1] << 16 |
					 (uint32_t)s->hdr[2] << 8 | s->hdr[3];
				s->at = 0;
				s->type = -1;
				s->frame++;
				if (s->len == 0)
					s->hdr_have = 0;
			}
			continue;
		}
		if (s->at < sizeof(s->head)) {
			s->head[s->at] = buf[i];
			if (s->at + 1 == sizeof(s->head) || s->at + 1 == s->len)
				s->type = body_type(s->head, s->at + 1);
		}
		if (s->cut && is_target(s)) {
			s->done = 1;
			printf("cut frame %llu (type %d, %u bytes)\n", (unsigned long long)s->frame,
			       s->type, s->len);
			return s->frame_start;
		}
		if (is_target(s) && s->at == flip_pos(s)) {
			uint8_t was = buf[i], x = (was ^ 0x20) ? 0x20 : 0x40;

			buf[i] ^= x;
			s->done = 1;
			printf(
			    "flipped frame %llu (type %d, %u bytes) at payload offset %u: 0x%02x "
			    "-> 0x%02x\n",
			    (unsigned long long)s->frame, s->type, s->len, s->at, was, buf[i]);
		}
		if (++s->at == s->len)
			s->hdr_have = 0;
	}
	return n;
}

/* Copies what from has into to; 0 when from closed, -1 on error. */
static int pump(int from, int to, struct s2d *s)
{
	static uint8_t buf[1 << 16];
	ssize_t n = read(from, buf, sizeof(buf)), w;
	size_t off = 0, keep;

	if (n <= 0)
		return n == 0 ? 0 : -1;
	keep = s ? tamper(s, buf, (size_t)n) : (size_t)n;
	while (off < keep) {
		w = write(to, buf + off, keep - off);
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return keep == (size_t)n ? 1 : 0;
}

/* Forwards between the destination dfd and the source at to until one side closes. */
static int forward(int dfd, const char *to, struct s2d *s, struct s2d *d2s)
{
	int sfd = connect_to(to);

	if (sfd < 0)
		return 1;
	for (;;) {
		struct pollfd p[2] = {{.fd = dfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("flipproxy: poll");
			return 1;
		}
		if (p[0].revents && pump(dfd, sfd, d2s) <= 0)
			break;
		if (p[1].revents && pump(sfd, dfd, s) <= 0)
			break;
	}
	if (s->want_byte >= 0)
		printf("closed after %llu bytes from the source\n", (unsigned long long)s->bytes);
	else
		printf("closed after %llu frames from the source\n", (unsigned long long)s->frame);
	close(dfd);
	close(sfd);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"to", required_argument, NULL, 't'},
	    {"frame", required_argument, NULL, 'f'},
	    {"type", required_argument, NULL, 'y'},
	    {"offset", required_argument, NULL, 'o'},
	    {"byte", required_argument, NULL, 'b'},
	    {"cut", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	struct s2d s = {.want_type = -1, .type = -1, .want_byte = -1};
	struct s2d d2s = {.want_type = -1, .type = -1, .want_byte = -1};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	const char *to = NULL;
	int lfd, dfd, c, ret, one = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 'f':
			s.want_frame = strtoull(optarg, NULL, 0);
			break;
		case 'y':
			s.want_type = atoi(optarg);
			break;
		case 'o':
			s.offset = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			s.want_byte = (int64_t)strtoull(optarg, NULL, 0);
			break;
		case 'c':
			s.want_type = d2s.want_type = atoi(optarg);
			s.cut = d2s.cut = 1;
			break;
		default:
			fprintf(
			    stderr,
			    "usage: %s --to HOST:PORT [--frame N | --type T | --byte B | --cut T] "
			    "[--offset O]\n",
			    argv[0]);
			return 2;
		}
	}
	if (!to) {
		fprintf(stderr, "flipproxy: --to is required\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("flipproxy: listen");
		return 1;
	}
	printf("listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
	dfd = accept(lfd, NULL, NULL);
	if (dfd < 0) {
		perror("flipproxy: accept");
		return 1;
	}
	ret = forward(dfd, to, &s, s.cut ? &d2s : NULL);
	/* After a cut, the peer's reconnection goes through untouched. */
	if (ret == 0 && s.cut) {
		struct s2d plain = {.want_type = -1, .type = -1, .want_byte = -1};

		dfd = accept(lfd, NULL, NULL);
		ret = dfd < 0 ? 1 : forward(dfd, to, &plain, NULL);
	}
	close(lfd);
	return ret;
}
