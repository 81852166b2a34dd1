// SPDX-License-Identifier: GPL-2.0-or-later
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "roundcopy.h"

/*
 * The network is a table of posted READs, completed when and in the order
 * a test says; the "remote" memory is this process's own.
 */
struct posted {
	void *local;
	uint64_t raddr;
	uint32_t len;
	uint64_t cookie;
};

struct fake {
	struct posted p[64];
	size_t n;
	int regs, deregs, fail_read;
	char dir[64];
	int dir_fd;
};

static int fake_reg(void *arg, void *buf, size_t len, struct ibv_mr **out)
{
	struct fake *f = arg;
	struct ibv_mr *mr = calloc(1, sizeof(*mr));

	assert_non_null(mr);
	mr->addr = buf;
	mr->length = len;
	mr->lkey = 7;
	f->regs++;
	*out = mr;
	return 0;
}

static int fake_read(void *arg, void *local, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		     uint32_t len, uint64_t cookie)
{
	struct fake *f = arg;

	assert_int_equal(lkey, 7);
	assert_int_equal(rkey, 0x42);
	assert_true(roundcopy_cookie(cookie));
	if (f->fail_read)
		return -EIO;
	assert_true(f->n < 64);
	f->p[f->n++] = (struct posted){local, raddr, len, cookie};
	return 0;
}

static void fake_dereg(void *arg, struct ibv_mr *mr)
{
	struct fake *f = arg;

	f->deregs++;
	free(mr);
}

static const struct roundcopy_ops ops = {fake_reg, fake_read, fake_dereg};

/* Completes posted READ i (copying the remote bytes unless status fails it). */
static void complete(struct roundcopy *rc, struct fake *f, size_t i, int status)
{
	struct posted p = f->p[i];

	f->p[i] = f->p[--f->n];
	if (status == 0)
		memcpy(p.local, (const void *)(uintptr_t)p.raddr, p.len);
	roundcopy_read_done(rc, p.cookie, status);
}

/* Completes everything posted, newest first (so out of order), until nothing is. */
static void complete_all_reversed(struct roundcopy *rc, struct fake *f)
{
	while (f->n)
		complete(rc, f, f->n - 1, 0);
}

static uint8_t *pattern(size_t len, unsigned int seed)
{
	uint8_t *b = malloc(len);

	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(i * 31 + seed + (i >> 12));
	return b;
}

static struct ctrl_region region(const void *p, size_t len, uint64_t xxh3)
{
	return (struct ctrl_region){
	    .addr = (uintptr_t)p, .len = len, .rkey = 0x42, .has_xxh3 = true, .xxh3 = xxh3};
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/rdmig-roundcopy.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->dir_fd = open(f->dir, O_DIRECTORY | O_RDONLY);
	assert_true(f->dir_fd >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;

	close(f->dir_fd);
	/* The copies were unnamed files: nothing may be left in the directory. */
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static void test_copies_verify_and_serve(void **state)
{
	struct fake *f = *state;
	size_t la = 2 * ROUNDCOPY_CHUNK_BYTES + ROUNDCOPY_CHUNK_BYTES / 2, lb = 8192;
	uint8_t *a = pattern(la, 1), *b = pattern(lb, 2), out[8192];
	struct ctrl_region r[2] = {region(a, la, XXH3_64bits(a, la)),
				   region(b, lb, XXH3_64bits(b, lb))};
	struct ctrl_region fin;
	struct roundcopy_stats st;
	struct roundcopy *rc;

	assert_int_equal(roundcopy_new(f->dir_fd, "test", &ops, f, &rc), 0);
	assert_int_equal(roundcopy_add(rc, 1, r, 2), 0);
	/* The first region's three chunks at once, the second only after them. */
	assert_int_equal(f->n, 3);
	assert_int_equal(roundcopy_idle_round(rc), 0);
	complete_all_reversed(rc, f);
	assert_int_equal(roundcopy_idle_round(rc), 1);
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_announced, 2);
	assert_int_equal(st.regions_kept, 2);
	assert_int_equal(st.bytes_copied, la + lb);
	assert_int_equal(st.regions_bad, 0);

	/* Not adopted yet: nothing is served locally. */
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a, 0x42, out, 4096), -ENOENT);
	/* The final MemRegion: same address, length and XXH3, another rkey. */
	fin = r[0];
	fin.rkey = 0x99;
	assert_true(roundcopy_adopt(rc, &fin));
	fin.has_xxh3 = false;
	assert_false(roundcopy_adopt(rc, &fin));
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a + la - 8192, 0x99, out, 8192), 0);
	assert_memory_equal(out, a + la - 8192, 8192);
	/* Another rkey, past the end, or the unadopted region: from the source. */
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a, 0x42, out, 4096), -ENOENT);
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a + la - 4096, 0x99, out, 8192), -ENOENT);
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)b, 0x42, out, 4096), -ENOENT);
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_used, 1);
	assert_int_equal(st.bytes_local, 8192);
	/* A new connection's regions adopt again, with its rkey; still one region used. */
	roundcopy_unadopt_all(rc);
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a + la - 8192, 0x99, out, 8192), -ENOENT);
	fin.has_xxh3 = true;
	fin.rkey = 0x77;
	assert_true(roundcopy_adopt(rc, &fin));
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a + la - 8192, 0x99, out, 8192), -ENOENT);
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a + la - 8192, 0x77, out, 8192), 0);
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_used, 1);
	roundcopy_unadopt_all(rc);

	roundcopy_stop(rc, false);
	assert_int_equal(f->deregs, 1);
	assert_int_equal(roundcopy_add(rc, 2, r, 1), -EBUSY);
	roundcopy_free(rc);
	assert_int_equal(f->regs, 1);
	free(a);
	free(b);
}

/*
 * READs that complete out of order (the drain's queue pairs) never get a
 * slot reused before its own READ is in: a later chunk done first posts
 * nothing, and the copy still comes out whole.
 */
static void test_out_of_order_keeps_slots(void **state)
{
	struct fake *f = *state;
	size_t len = 7 * ROUNDCOPY_CHUNK_BYTES;
	uint8_t *a = pattern(len, 9), *out = malloc(len);
	struct ctrl_region r = region(a, len, XXH3_64bits(a, len));
	struct roundcopy_stats st;
	struct roundcopy *rc;

	assert_non_null(out);
	assert_int_equal(roundcopy_new(f->dir_fd, "test", &ops, f, &rc), 0);
	assert_int_equal(roundcopy_add(rc, 1, &r, 1), 0);
	assert_int_equal(f->n, ROUNDCOPY_SLOTS);
	/* The second chunk first: its slot waits for the first, nothing is posted. */
	complete(rc, f, 1, 0);
	assert_int_equal(f->n, ROUNDCOPY_SLOTS - 1);
	/* Then the first: both written, two slots free, two READs posted. */
	complete(rc, f, 0, 0);
	assert_int_equal(f->n, ROUNDCOPY_SLOTS);
	while (f->n) {
		/* Always the newest first. */
		complete(rc, f, f->n - 1, 0);
	}
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_kept, 1);
	assert_int_equal(st.regions_bad, 0);
	assert_true(roundcopy_adopt(rc, &r));
	assert_int_equal(roundcopy_pread(rc, r.addr, r.rkey, out, len), 0);
	assert_memory_equal(out, a, len);
	roundcopy_stop(rc, false);
	roundcopy_free(rc);
	free(out);
	free(a);
}

static void test_wrong_hash_is_never_used(void **state)
{
	struct fake *f = *state;
	size_t len = 16384;
	uint8_t *a = pattern(len, 3), out[4096];
	struct ctrl_region r = region(a, len, XXH3_64bits(a, len) ^ 1);
	struct roundcopy_stats st;
	struct roundcopy *rc;

	assert_int_equal(roundcopy_new(f->dir_fd, "test", &ops, f, &rc), 0);
	assert_int_equal(roundcopy_add(rc, 1, &r, 1), 0);
	complete_all_reversed(rc, f);
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_bad, 1);
	assert_int_equal(st.regions_kept, 0);
	/* Never copied a second time. */
	assert_int_equal(f->n, 0);
	assert_false(roundcopy_adopt(rc, &r));
	r.xxh3 ^= 1;
	assert_false(roundcopy_adopt(rc, &r));
	assert_int_equal(roundcopy_pread(rc, (uintptr_t)a, 0x42, out, 4096), -ENOENT);
	roundcopy_stop(rc, false);
	roundcopy_free(rc);
	free(a);
}

static void test_stop_when_served_drops_the_rest(void **state)
{
	struct fake *f = *state;
	size_t la = 6 * ROUNDCOPY_CHUNK_BYTES, lb = 4096;
	uint8_t *a = pattern(la, 4), *b = pattern(lb, 5);
	struct ctrl_region r[2] = {region(a, la, XXH3_64bits(a, la)),
				   region(b, lb, XXH3_64bits(b, lb))};
	struct roundcopy_stats st;
	struct roundcopy *rc;

	assert_int_equal(roundcopy_new(f->dir_fd, "test", &ops, f, &rc), 0);
	assert_int_equal(roundcopy_add(rc, 1, r, 2), 0);
	assert_int_equal(f->n, ROUNDCOPY_SLOTS);
	/* The first chunk in: the next one goes out in its slot. */
	complete(rc, f, 0, 0);
	assert_int_equal(f->n, ROUNDCOPY_SLOTS);
	/* The checkpoint serves: READs in flight may still land, so the buffer stays. */
	roundcopy_stop(rc, false);
	assert_int_equal(f->deregs, 0);
	assert_int_equal(roundcopy_inflight(rc), ROUNDCOPY_SLOTS);
	complete_all_reversed(rc, f);
	assert_int_equal(f->n, 0); /* nothing new posted */
	assert_int_equal(f->deregs, 1);
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_kept, 0);
	assert_int_equal(st.regions_left, 2);
	assert_false(roundcopy_adopt(rc, &r[0]));
	roundcopy_free(rc);
	free(a);
	free(b);
}

static void test_failed_read_stops_copying(void **state)
{
	struct fake *f = *state;
	size_t len = 2 * ROUNDCOPY_CHUNK_BYTES;
	uint8_t *a = pattern(len, 6), *b = pattern(4096, 7);
	struct ctrl_region r[2] = {region(a, len, XXH3_64bits(a, len)),
				   region(b, 4096, XXH3_64bits(b, 4096))};
	struct roundcopy_stats st;
	struct roundcopy *rc;

	assert_int_equal(roundcopy_new(f->dir_fd, "test", &ops, f, &rc), 0);
	assert_int_equal(roundcopy_add(rc, 1, r, 2), 0);
	complete(rc, f, 0, -EIO);
	/* Given up, but its READs still in flight: not idle until they are in. */
	assert_int_equal(roundcopy_idle_round(rc), 0);
	complete_all_reversed(rc, f);
	assert_int_equal(f->n, 0);
	assert_int_equal(roundcopy_idle_round(rc), 1);
	roundcopy_get_stats(rc, &st);
	assert_int_equal(st.regions_kept, 0);
	assert_false(roundcopy_adopt(rc, &r[1]));
	/* The connection closed: the buffer goes at once. */
	roundcopy_stop(rc, true);
	assert_int_equal(f->deregs, 1);
	roundcopy_free(rc);

	/* A READ that cannot be posted: nothing kept, nothing in flight. */
	f->fail_read = 1;
	assert_int_equal(roundcopy_new(f->dir_fd, "test", &ops, f, &rc), 0);
	assert_int_equal(roundcopy_add(rc, 1, r, 1), 0);
	assert_int_equal(roundcopy_inflight(rc), 0);
	roundcopy_stop(rc, true);
	roundcopy_free(rc);
	f->fail_read = 0;
	free(a);
	free(b);
}

static void test_cookies(void **state)
{
	static int x;

	(void)state;
	/* A request's cookie is its (aligned) address: never taken for ours. */
	assert_false(roundcopy_cookie((uint64_t)(uintptr_t)&x));
	assert_true(roundcopy_cookie(1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_copies_verify_and_serve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_order_keeps_slots, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_hash_is_never_used, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_when_served_drops_the_rest, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_read_stops_copying, setup, teardown),
	    cmocka_unit_test(test_cookies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
