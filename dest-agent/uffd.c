// SPDX-License-Identifier: GPL-2.0-or-later
#include "uffd.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int uffd_check_fd(int fd, char *what, size_t len)
{
	static const char want[] = "anon_inode:[userfaultfd]";
	char path[64], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		if (what)
			snprintf(what, len, "unreadable: %s", strerror(errno));
		return -errno;
	}
	target[n] = '\0';
	if (what)
		snprintf(what, len, "%s", target);
	return strcmp(target, want) == 0 ? 0 : -ENOTTY;
}

int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t *copied)
{
	struct uffdio_copy c = {
	    .dst = dst,
	    .src = (uint64_t)(uintptr_t)src,
	    .len = len,
	    .mode = 0,
	};
	int ret = 0;

	if (ioctl(uffd, UFFDIO_COPY, &c) < 0)
		ret = -errno;
	*copied = c.copy > 0 ? (uint64_t)c.copy : 0;
	return ret;
}

int uffd_zeropage(int uffd, uint64_t addr)
{
	struct uffdio_zeropage z = {.range = {.start = addr, .len = 4096}, .mode = 0};

	if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) < 0)
		return -errno;
	return 0;
}

int uffd_unregister(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};

	if (ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0)
		return -errno;
	return 0;
}

/* mmap_min_addr, page aligned; 64 KiB if it cannot be read. */
static uint64_t uffd_min_addr(void)
{
	unsigned long long v = 65536;
	FILE *f = fopen("/proc/sys/vm/mmap_min_addr", "re");

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 65536;
		fclose(f);
	}
	return (v + 4095) & ~4095ull;
}

int uffd_wake_all(int uffd)
{
	/* The largest user address space the kernel accepts: 57, 48, 47 or 39 bits. */
	static const unsigned int bits[] = {56, 48, 47, 39};
	uint64_t start = uffd_min_addr();
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		uint64_t end = (1ull << bits[i]) - 4096;
		struct uffdio_range r = {.start = start, .len = end - start};

		if (ioctl(uffd, UFFDIO_WAKE, &r) == 0)
			return 0;
		ret = -errno;
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

int uffd_probe_alive(int uffd)
{
	/* Above mmap_min_addr (64 KiB), far below anything a process maps. */
	struct uffdio_writeprotect wp = {.range = {.start = 1ull << 20, .len = 4096}, .mode = 0};

	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
		return 1;
	if (errno == ESRCH)
		return 0;
	if (errno == ENOENT || errno == EAGAIN || errno == EINVAL)
		return 1;
	return -errno;
}

bool uffd_err_gone(int err)
{
	return err == -ESRCH || err == -ENOSPC;
}
