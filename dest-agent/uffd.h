/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * uffd: the userfaultfd ioctls the daemon issues, as 0 / -errno calls.
 *
 * Error meanings (kernel fs/userfaultfd.c, mm/userfaultfd.c):
 *  -EAGAIN  an mm-changing event (fork, remap, remove, unmap) is queued and
 *           not read yet, or the copy was partial (see *copied);
 *  -EEXIST  a page is already mapped there;
 *  -ENOENT  no registered VMA covers the range any more;
 *  -ESRCH / -ENOSPC  the process (its mm) is gone.
 */
#ifndef RDMIG_UFFD_H
#define RDMIG_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A change of a task's layout (a non-cooperative event) as a worker
 * applied it: kind UFFD_EVENT_REMAP moves len bytes from -> to;
 * UFFD_EVENT_REMOVE and UFFD_EVENT_UNMAP drop from..to.  The guard keeps
 * them for a worker that takes over (guard.h, engine_adopt_task()).
 */
struct uffd_layout {
	uint32_t kind;
	uint64_t from;
	uint64_t to;
	uint64_t len;
};

/*
 * 0 if fd is a userfaultfd; -ENOTTY if it is something else; -errno on
 * failure.  what (may be NULL) gets what the fd is, e.g. "pipe:[1234]".
 */
int uffd_check_fd(int fd, char *what, size_t len);

/* UFFDIO_COPY of len bytes from src to dst; *copied gets the bytes installed (also on error). */
int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t *copied);
/* UFFDIO_ZEROPAGE of one page at addr. */
int uffd_zeropage(int uffd, uint64_t addr);
int uffd_unregister(int uffd, uint64_t addr, uint64_t len);
/*
 * UFFDIO_WAKE over the whole user address space (from mmap_min_addr up):
 * every thread waiting on a fault of this uffd retries its access, and
 * one whose page is still missing faults again (a new message).  For a
 * worker taking over uffds whose faults an earlier one read and never
 * answered.
 */
int uffd_wake_all(int uffd);
/*
 * Whether the process behind uffd still has its mm, without touching its
 * memory: an un-write-protect over an address nothing registers WP on
 * fails with -ENOENT while the mm lives and -ESRCH once it is gone.
 * Returns 1 (alive), 0 (gone) or a negative errno (unknown).
 */
int uffd_probe_alive(int uffd);

bool uffd_err_gone(int err);

#endif
