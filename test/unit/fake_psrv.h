/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fake_psrv: a stand-in for the page server of `criu dump --lazy-pages`,
 * for the unit tests of source-agent/criupsrv.c and lazystage.c.  A thread
 * on one end of a stream socket follows the protocol as docs/protocol.md
 * §11.1 states it: PS_IOV_GET headers in (24 or 32 bytes), replies
 * ADD_F|PE_PRESENT out, shortened at the end of its "pipe buffers" of
 * `chunk` pages, strictly in order; PS_IOV_CLOSE answered with an int32 0,
 * then a wait for the client's end of file.  Page contents are
 * pattern_fill() of the dump-time address with pattern_seed_for_pid(pid).
 * A request outside its ranges ends the session, as the dump does.
 */
#ifndef RDMIG_TEST_FAKE_PSRV_H
#define RDMIG_TEST_FAKE_PSRV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

struct fake_range {
	uint32_t pid;
	uint64_t vaddr;
	uint64_t nr; /* pages */
};

enum fake_mode {
	FAKE_GOOD = 0,
	FAKE_HANGUP_MID_DATA, /* closes after half of the first reply's pages */
	FAKE_BAD_PID,	      /* answers with another dst_id */
	FAKE_ZERO_PAGES,      /* answers with nr_pages 0 */
};

#define FAKE_LOG_GETS 128

struct fake_psrv {
	/* Set by the test before fake_psrv_start*(). */
	bool v42;
	uint64_t chunk;
	enum fake_mode mode;
	const struct fake_range *ranges;
	size_t nr_ranges;
	unsigned int delay_ms; /* before each reply: a slow dump */
	/* Results, read after fake_psrv_join(). */
	int gets;
	uint64_t get_vaddr[FAKE_LOG_GETS]; /* the first GETs' addresses, in order */
	bool saw_close;
	bool saw_eof_after_close;
	bool protocol_error; /* the client sent something the dump would refuse */
	/* The fake's. */
	int fd;
	int listen_fd;
	pthread_t thread;
};

/* How a client session ended, as the tests' failed()/closed() callbacks saw it. */
struct fake_end {
	struct event_base *base; /* left when the session ends */
	int failed_calls, failed_err;
	int closed_calls, closed_status;
};

void fake_end_failed(struct fake_end *e, int err);
void fake_end_closed(struct fake_end *e, int status);

/* Starts the fake on a socketpair; *client_fd is the other end. */
void fake_psrv_start_pair(struct fake_psrv *f, int *client_fd);
/* Starts the fake accepting one connection on listen_fd (owned by the caller). */
void fake_psrv_start_listen(struct fake_psrv *f, int listen_fd);
/* Waits for the fake's session to end (the client must have closed). */
void fake_psrv_join(struct fake_psrv *f);

#endif
