// SPDX-License-Identifier: GPL-2.0-or-later
/* imgmap_copy(): a mapping whose file shrank is an -EFAULT, not a SIGBUS. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "source-agent/imgmap.h"

#define LEN (4 * 4096)

static void test_copy_truncated(void **state)
{
	char path[] = "/tmp/test_imgmap.XXXXXX";
	uint8_t buf[LEN], data[LEN];
	uint8_t *map;
	int fd;

	memset(data, 0x5a, sizeof(data));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, sizeof(data)), LEN);
	map = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(map != MAP_FAILED);

	assert_int_equal(imgmap_copy(buf, map, LEN), 0);
	assert_memory_equal(buf, data, LEN);
	/* The file shrinks to one page: the rest of the mapping now faults. */
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(imgmap_copy(buf, map, 4096), 0);
	assert_int_equal(imgmap_copy(buf, map, LEN), -EFAULT);
	assert_int_equal(imgmap_copy(buf, map + 2 * 4096, 4096), -EFAULT);
	/* The guard is re-armed after a fault: the next copies work again. */
	assert_int_equal(imgmap_copy(buf, data, LEN), 0);
	assert_int_equal(imgmap_copy(buf, map + 100, 200), 0);
	munmap(map, LEN);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy_truncated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
