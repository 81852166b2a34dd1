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
 * Whether the process behind uffd still has its mm, without touching its
 * memory: an un-write-protect over an address nothing registers WP on
 * fails with -ENOENT while the mm lives and -ESRCH once it is gone.
 * Returns 1 (alive), 0 (gone) or a negative errno (unknown).
 */
int uffd_probe_alive(int uffd);

bool uffd_err_gone(int err);

#endif
