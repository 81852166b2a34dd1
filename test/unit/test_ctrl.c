// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "ctrl.h"
#include "ctrlpair.h"

/* ---- helpers --------------------------------------------------------- */

/* Packs o and decodes it again without a state: the codec alone. */
static RdmigMsg *roundtrip(struct ctrl_out *o)
{
	RdmigMsg *m = NULL;
	size_t len = 0;

	o->msg.seq = 7;
	assert_int_equal(ctrl_pack(&o->msg, wire, CTRL_DATA_MSG_MAX, &len), 0);
	assert_int_equal(ctrl_unpack(wire, len, &m), 0);
	assert_non_null(m);
	assert_int_equal(m->seq, 7);
	assert_int_equal(m->body_case, o->msg.body_case);
	ctrl_out_release(o);
	return m;
}

/*
 * Appends to buf the MAC `to` expects next, when it expects one: what the
 * peer's state would add.  Returns the new length.
 */
static size_t seal_for(const struct ctrl_state *to, uint8_t *buf, size_t len)
{
	struct msgauth peer = {.ready = true, .send = to->mac.recv};

	if (!ctrl_state_authenticated(to))
		return len;
	/* peer borrows to's context: not cleared here. */
	assert_int_equal(msgauth_seal(&peer, buf, len, buf + len), 0);
	return len + MSGAUTH_TAG_LEN;
}

/* Packs a message with a chosen seq for `to`, bypassing the sender's state. */
static size_t forge(const struct ctrl_state *to, struct ctrl_out *o, uint64_t seq)
{
	size_t len = 0;

	o->msg.seq = seq;
	assert_int_equal(ctrl_pack(&o->msg, wire, CTRL_DATA_MSG_MAX, &len), 0);
	ctrl_out_release(o);
	return seal_for(to, wire, len);
}

static uint32_t err_code(const struct ctrl_state *st)
{
	uint32_t code = 0;

	ctrl_state_error(st, &code);
	return code;
}

/* ---- codec round trips --------------------------------------------------- */

static void test_roundtrip_handshake_msgs(void **state)
{
	uint8_t nonce[AUTH_NONCE_LEN], proof[AUTH_PROOF_LEN];
	struct ctrl_hello h = {.role = CTRL_ROLE_DEST,
			       .channel = CTRL_CHANNEL_DATA,
			       .features = CTRL_FEAT_TCP_READ | CTRL_FEAT_VERIFY_PAGES,
			       .page_size = 16384,
			       .migration_id = "job_7.a-b",
			       .nonce = nonce,
			       .agent_version = "rdmig 0.1.0"};
	struct ctrl_out o;
	RdmigMsg *m;

	memset(nonce, 0xab, sizeof(nonce));
	memset(proof, 0xcd, sizeof(proof));
	assert_int_equal(ctrl_msg_hello(&o, &h), 0);
	m = roundtrip(&o);
	assert_int_equal(m->hello->min_version, CTRL_PROTO_MIN_VERSION);
	assert_int_equal(m->hello->max_version, CTRL_PROTO_VERSION);
	assert_int_equal(m->hello->features, h.features);
	assert_int_equal(m->hello->role, ROLE__ROLE_DEST);
	assert_int_equal(m->hello->channel, CHANNEL__CHANNEL_DATA);
	assert_int_equal(m->hello->page_size, 16384);
	assert_string_equal(m->hello->migration_id, "job_7.a-b");
	assert_string_equal(m->hello->agent_version, "rdmig 0.1.0");
	assert_int_equal(m->hello->nonce.len, AUTH_NONCE_LEN);
	assert_memory_equal(m->hello->nonce.data, nonce, AUTH_NONCE_LEN);
	assert_int_equal(ctrl_validate_hello(m->hello, NULL), 0);
	ctrl_free(m);

	assert_int_equal(ctrl_msg_auth_proof(&o, proof), 0);
	m = roundtrip(&o);
	assert_int_equal(m->auth_proof->hmac.len, AUTH_PROOF_LEN);
	assert_memory_equal(m->auth_proof->hmac.data, proof, AUTH_PROOF_LEN);
	ctrl_free(m);

	ctrl_msg_auth_result(&o, false, "bad proof");
	m = roundtrip(&o);
	assert_false(m->auth_result->ok);
	assert_string_equal(m->auth_result->reason, "bad proof");
	ctrl_free(m);

	ctrl_msg_abort(&o, CTRL_ABORT_VERIFY, "range 3 mismatch");
	m = roundtrip(&o);
	assert_int_equal(m->abort->code, CTRL_ABORT_VERIFY);
	assert_string_equal(m->abort->reason, "range 3 mismatch");
	assert_string_equal(ctrl_abort_str(m->abort->code), "checksum mismatch");
	ctrl_free(m);
}

static void test_roundtrip_image_msgs(void **state)
{
	struct ctrl_region regs[2] = {{0x10000, 0x20000, 7}, {0x7f0000000000, 4096, 9}};
	struct ctrl_hole holes[2] = {{8192, 4096}, {16384, 8192}};
	struct ctrl_range ranges[2] = {
	    {.img_vaddr = 0x400000,
	     .len = 8192,
	     .has_remote = true,
	     .remote_addr = 0x10000,
	     .rkey = 7,
	     .xxh3 = 0x1122334455667788ull},
	    {.img_vaddr = 0x800000, .len = 4096, .xxh3 = 42},
	};
	uint64_t hashes[3] = {1, 2, UINT64_MAX};
	uint8_t data[100];
	struct ctrl_file_chunk fc = {.name = "pages-1.img",
				     .total_size = 32768,
				     .offset = 0,
				     .data = data,
				     .data_len = sizeof(data),
				     .holes = holes,
				     .nr_holes = 2,
				     .last = true};
	struct ctrl_out o;
	RdmigMsg *m;

	memset(data, 0x5a, sizeof(data));
	assert_int_equal(ctrl_msg_mem_regions(&o, regs, 2), 0);
	m = roundtrip(&o);
	assert_int_equal(m->mem_regions->n_regions, 2);
	assert_int_equal(m->mem_regions->regions[1]->addr, 0x7f0000000000);
	assert_int_equal(m->mem_regions->regions[1]->rkey, 9);
	ctrl_free(m);

	assert_int_equal(ctrl_msg_image_file(&o, &fc), 0);
	m = roundtrip(&o);
	assert_string_equal(m->image_file->name, "pages-1.img");
	assert_int_equal(m->image_file->total_size, 32768);
	assert_true(m->image_file->has_data);
	assert_int_equal(m->image_file->data.len, sizeof(data));
	assert_memory_equal(m->image_file->data.data, data, sizeof(data));
	assert_int_equal(m->image_file->n_holes, 2);
	assert_int_equal(m->image_file->holes[1]->offset, 16384);
	assert_int_equal(m->image_file->holes[1]->len, 8192);
	assert_int_equal(m->image_file->flags, CTRL_IMAGE_FILE_LAST);
	assert_int_equal(ctrl_validate_image_file(m->image_file, PS, NULL), 0);
	ctrl_free(m);

	assert_int_equal(ctrl_msg_task_table(&o, 1234, ranges, 2, true), 0);
	m = roundtrip(&o);
	assert_int_equal(m->task_table->pid, 1234);
	assert_int_equal(m->task_table->n_ranges, 2);
	assert_true(m->task_table->ranges[0]->has_rkey);
	assert_int_equal(m->task_table->ranges[0]->remote_addr, 0x10000);
	assert_int_equal(m->task_table->ranges[0]->xxh3, 0x1122334455667788ull);
	assert_false(m->task_table->ranges[1]->has_remote_addr);
	assert_false(m->task_table->ranges[1]->has_rkey);
	assert_int_equal(m->task_table->flags, CTRL_TASK_TABLE_LAST);
	ctrl_free(m);

	assert_int_equal(ctrl_msg_page_hashes(&o, 1234, 0x400000, hashes, 3), 0);
	m = roundtrip(&o);
	assert_int_equal(m->page_hashes->n_hashes, 3);
	assert_int_equal(m->page_hashes->hashes[2], UINT64_MAX);
	assert_int_equal(m->page_hashes->first_vaddr, 0x400000);
	ctrl_free(m);

	ctrl_msg_images_done(&o, 12, 3, 1ull << 33);
	m = roundtrip(&o);
	assert_int_equal(m->images_done->files, 12);
	assert_int_equal(m->images_done->tasks, 3);
	assert_int_equal(m->images_done->lazy_bytes, 1ull << 33);
	ctrl_free(m);
}

static void test_roundtrip_postcopy_msgs(void **state)
{
	static uint8_t big[CTRL_READ_MAX];
	struct ctrl_done d = {.pages = 10, .bytes = 40960, .ranges_verified = 2, .digest = 99};
	struct ctrl_out o;
	RdmigMsg *m;

	memset(big, 0x77, sizeof(big));
	ctrl_msg_read_req(&o, 0xdeadbeefcafeull, 77, 0x7ffff000, 4096);
	m = roundtrip(&o);
	assert_int_equal(m->read_req->cookie, 0xdeadbeefcafeull);
	assert_int_equal(m->read_req->pid, 77);
	assert_int_equal(m->read_req->img_vaddr, 0x7ffff000);
	assert_int_equal(m->read_req->len, 4096);
	ctrl_free(m);

	/* The largest ReadResp is the one message allowed above CTRL_MSG_MAX. */
	assert_int_equal(ctrl_msg_read_resp(&o, 5, 0, big, sizeof(big)), 0);
	m = roundtrip(&o);
	assert_int_equal(m->read_resp->status, 0);
	assert_int_equal(m->read_resp->data.len, CTRL_READ_MAX);
	assert_memory_equal(m->read_resp->data.data, big, CTRL_READ_MAX);
	ctrl_free(m);

	assert_int_equal(ctrl_msg_read_resp(&o, 6, -EFAULT, NULL, 0), 0);
	m = roundtrip(&o);
	assert_int_equal(m->read_resp->status, -EFAULT);
	assert_false(m->read_resp->has_data);
	ctrl_free(m);
	assert_int_equal(ctrl_msg_read_resp(&o, 6, -EFAULT, big, 1), -EINVAL);
	ctrl_out_release(&o);

	ctrl_msg_progress(&o, 1, 2, 3);
	m = roundtrip(&o);
	assert_int_equal(m->progress->pages, 1);
	assert_int_equal(m->progress->bytes, 2);
	assert_int_equal(m->progress->faults, 3);
	ctrl_free(m);

	ctrl_msg_keepalive(&o, 4, 5);
	m = roundtrip(&o);
	assert_int_equal(m->keepalive->seq, 4);
	assert_int_equal(m->keepalive->time_ns, 5);
	ctrl_free(m);

	ctrl_msg_done(&o, &d);
	m = roundtrip(&o);
	assert_int_equal(m->done->pages, 10);
	assert_int_equal(m->done->bytes, 40960);
	assert_int_equal(m->done->ranges_verified, 2);
	assert_int_equal(m->done->digest, 99);
	ctrl_free(m);

	ctrl_msg_done_ack(&o, true, "checkpoint released");
	m = roundtrip(&o);
	assert_true(m->done_ack->ok);
	assert_string_equal(m->done_ack->reason, "checkpoint released");
	ctrl_free(m);
}

/* The chunk limits leave every worst-case message under CTRL_MSG_MAX. */
static void test_limits_fit(void **state)
{
	static struct ctrl_range ranges[CTRL_RANGES_MAX];
	static struct ctrl_hole holes[CTRL_HOLES_MAX];
	static uint64_t hashes[CTRL_PAGE_HASHES_MAX];
	static uint8_t data[CTRL_FILE_CHUNK_MAX];
	static char name[CTRL_FILE_NAME_MAX + 1];
	struct ctrl_file_chunk fc = {.name = name,
				     .total_size = CTRL_FILE_SIZE_MAX,
				     .offset = CTRL_FILE_SIZE_MAX / 2,
				     .data = data,
				     .data_len = sizeof(data),
				     .holes = holes,
				     .nr_holes = CTRL_HOLES_MAX,
				     .last = true};
	struct ctrl_out o;
	size_t len;

	for (size_t i = 0; i < CTRL_RANGES_MAX; i++)
		ranges[i] = (struct ctrl_range){.img_vaddr = UINT64_MAX - i,
						.len = UINT64_MAX,
						.has_remote = true,
						.remote_addr = UINT64_MAX,
						.rkey = UINT32_MAX,
						.xxh3 = UINT64_MAX};
	assert_int_equal(ctrl_msg_task_table(&o, INT32_MAX, ranges, CTRL_RANGES_MAX, true), 0);
	o.msg.seq = UINT64_MAX;
	assert_int_equal(ctrl_pack(&o.msg, wire, CTRL_DATA_MSG_MAX, &len), 0);
	assert_true(len <= CTRL_MSG_MAX);
	ctrl_out_release(&o);
	assert_int_equal(ctrl_msg_task_table(&o, 1, ranges, CTRL_RANGES_MAX + 1, true), -E2BIG);
	ctrl_out_release(&o);

	memset(name, 'n', CTRL_FILE_NAME_MAX);
	for (size_t i = 0; i < CTRL_HOLES_MAX; i++)
		holes[i] = (struct ctrl_hole){UINT64_MAX, UINT64_MAX};
	assert_int_equal(ctrl_msg_image_file(&o, &fc), 0);
	o.msg.seq = UINT64_MAX;
	assert_int_equal(ctrl_pack(&o.msg, wire, CTRL_DATA_MSG_MAX, &len), 0);
	assert_true(len <= CTRL_MSG_MAX);
	ctrl_out_release(&o);

	assert_int_equal(ctrl_msg_page_hashes(&o, 1, UINT64_MAX, hashes, CTRL_PAGE_HASHES_MAX), 0);
	o.msg.seq = UINT64_MAX;
	assert_int_equal(ctrl_pack(&o.msg, wire, CTRL_DATA_MSG_MAX, &len), 0);
	assert_true(len <= CTRL_MSG_MAX);
	ctrl_out_release(&o);
	assert_int_equal(ctrl_msg_page_hashes(&o, 1, 0, hashes, CTRL_PAGE_HASHES_MAX + 1), -E2BIG);
	ctrl_out_release(&o);
}

/* ---- codec rejections -------------------------------------------------- */

static void test_unpack_rejects(void **state)
{
	static uint8_t big[CTRL_FILE_CHUNK_MAX * 2];
	/* seq = 1, then field 40 (not in the oneof) as an empty length-delimited field. */
	static const uint8_t unknown_body[] = {0x08, 0x01, 0xc2, 0x02, 0x00};
	static const uint8_t no_body[] = {0x08, 0x01};
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff};
	/* A Keepalive body without the envelope's required seq. */
	static const uint8_t no_seq[] = {0x72, 0x04, 0x08, 0x01, 0x10, 0x02};
	static char pages_name[] = "pages-1.img";
	ImageFile f = IMAGE_FILE__INIT;
	RdmigMsg env = RDMIG_MSG__INIT;
	RdmigMsg *m = (RdmigMsg *)0x1;
	size_t len;

	assert_int_equal(ctrl_unpack(unknown_body, sizeof(unknown_body), &m), -EBADMSG);
	assert_null(m);
	assert_int_equal(ctrl_unpack(no_body, sizeof(no_body), &m), -EBADMSG);
	assert_int_equal(ctrl_unpack(garbage, sizeof(garbage), &m), -EBADMSG);
	assert_int_equal(ctrl_unpack(no_seq, sizeof(no_seq), &m), -EBADMSG);
	assert_int_equal(ctrl_unpack(wire, 0, &m), -EBADMSG);
	assert_int_equal(ctrl_unpack(wire, CTRL_DATA_MSG_MAX + 1, &m), -EMSGSIZE);

	/* An ImageFile over CTRL_MSG_MAX, packed behind ctrl_pack()'s back. */
	f.name = pages_name;
	f.total_size = sizeof(big);
	f.has_data = true;
	f.data.data = big;
	f.data.len = sizeof(big);
	env.seq = 1;
	env.body_case = RDMIG_MSG__BODY_IMAGE_FILE;
	env.image_file = &f;
	assert_int_equal(ctrl_pack(&env, wire, CTRL_DATA_MSG_MAX, &len), -EMSGSIZE);
	len = rdmig_msg__pack(&env, wire);
	assert_true(len > CTRL_MSG_MAX);
	assert_int_equal(ctrl_unpack(wire, len, &m), -EMSGSIZE);
	assert_null(m);

	/* Too small a buffer, and no body at all. */
	env.body_case = RDMIG_MSG__BODY_KEEPALIVE;
	{
		Keepalive k = KEEPALIVE__INIT;

		env.keepalive = &k;
		assert_int_equal(ctrl_pack(&env, wire, 2, &len), -ENOBUFS);
	}
	env.body_case = RDMIG_MSG__BODY__NOT_SET;
	assert_int_equal(ctrl_pack(&env, wire, CTRL_DATA_MSG_MAX, &len), -EINVAL);
}

/* ---- validators -------------------------------------------------------- */

static void test_file_names(void **state)
{
	static const char *const good[] = {"pagemap-123.img", "pages-1.img", "inventory.img",
					   "tmpfs-dev-63.tar.gz.img", "stats-dump"};
	static const char *const bad[] = {"",	  "../x", "a/b",    "/etc/passwd", ".",
					  "..",	  "..x",  "a..b",   ".hidden",	   "a b",
					  "a\nb", "a\\b", "pages*", "p\x7f",	   "\xc3\xa9.img"};
	char longname[CTRL_FILE_NAME_MAX + 2];
	struct ctrl_err e;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(ctrl_validate_file_name(good[i], NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0, sizeof(e));
		assert_int_equal(ctrl_validate_file_name(bad[i], &e), -EINVAL);
		assert_true(e.text[0] != '\0');
	}
	assert_int_equal(ctrl_validate_file_name(NULL, NULL), -EINVAL);
	/* Well formed but not a name CRIU writes. */
	assert_int_equal(ctrl_validate_file_name("x+y_z.img", &e), -EINVAL);
	assert_non_null(strstr(e.text, "not one CRIU writes"));
	memset(longname, 'a', sizeof(longname));
	longname[CTRL_FILE_NAME_MAX + 1] = '\0';
	assert_int_equal(ctrl_validate_file_name(longname, &e), -EINVAL);
	assert_non_null(strstr(e.text, "longer"));
}

static void test_hello_rules(void **state)
{
	uint8_t nonce[AUTH_NONCE_LEN] = {1};
	struct ctrl_hello h = {.role = CTRL_ROLE_SOURCE,
			       .features = CTRL_FEAT_RDMA_READ,
			       .page_size = PS,
			       .migration_id = "m1",
			       .nonce = nonce};
	char longid[CTRL_MIGRATION_ID_MAX + 2];
	char slash_id[] = "a/b", good_id[] = "m1", evil[] = "evil\x1b[2J";
	struct ctrl_out o;
	Hello *b = &o.body.hello;
	struct ctrl_err e;

	assert_int_equal(ctrl_msg_hello(&o, &h), 0);
	assert_int_equal(ctrl_validate_hello(b, NULL), 0);
	b->nonce.len = 31;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->nonce.len = AUTH_NONCE_LEN;
	b->page_size = 4095;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->page_size = 1u << 20;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->page_size = PS;
	b->role = 3;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->role = ROLE__ROLE_DEST;
	b->channel = CHANNEL__CHANNEL_RC_SIDE;
	assert_int_equal(ctrl_validate_hello(b, NULL), 0);
	b->channel = 3;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->channel = CHANNEL__CHANNEL_CONTROL;
	b->min_version = 2;
	b->max_version = 1;
	assert_int_equal(ctrl_validate_hello(b, &e), -EINVAL);
	assert_int_equal(e.code, CTRL_ABORT_VERSION);
	b->min_version = 0;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->min_version = b->max_version = 1;
	b->migration_id = slash_id;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	memset(longid, 'i', sizeof(longid));
	longid[sizeof(longid) - 1] = '\0';
	b->migration_id = longid;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->migration_id = good_id;
	b->agent_version = evil;
	assert_int_equal(ctrl_validate_hello(b, NULL), -EINVAL);
	b->agent_version = NULL;
	assert_int_equal(ctrl_validate_hello(b, NULL), 0);
	ctrl_out_release(&o);
}

static void test_image_file_rules(void **state)
{
	struct ctrl_hole holes[2] = {{8192, 4096}, {16384, 4096}};
	uint8_t data[4096] = {0};
	struct ctrl_file_chunk fc = {.name = "pages-2.img",
				     .total_size = 65536,
				     .offset = 4096,
				     .data = data,
				     .data_len = sizeof(data),
				     .holes = holes,
				     .nr_holes = 2};
	char dotdot[] = "../pages-2.img", good[] = "pages-2.img";
	struct ctrl_out o;
	ImageFile *f = &o.body.image_file;
	struct ctrl_err e;

	assert_int_equal(ctrl_msg_image_file(&o, &fc), 0);
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), 0);
	/* Data beyond the announced size. */
	f->total_size = 6000;
	assert_int_equal(ctrl_validate_image_file(f, PS, &e), -ERANGE);
	f->total_size = 65536;
	f->offset = UINT64_MAX - 10;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -ERANGE);
	f->offset = 4096;
	/* A hole over the chunk's data. */
	f->holes[0]->offset = 4096;
	assert_int_equal(ctrl_validate_image_file(f, PS, &e), -EINVAL);
	assert_non_null(strstr(e.text, "overlaps"));
	/* Holes out of order / overlapping each other. */
	f->holes[0]->offset = 16384;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -EINVAL);
	/* Unaligned, empty, beyond the end, wrapping. */
	f->holes[0]->offset = 8192 + 1;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -EINVAL);
	f->holes[0]->offset = 8192;
	f->holes[0]->len = 0;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -EINVAL);
	f->holes[0]->len = 4096;
	f->holes[1]->len = 1ull << 20;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -ERANGE);
	f->holes[1]->offset = UINT64_MAX - 4095;
	f->holes[1]->len = 8192;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -ERANGE);
	f->holes[1]->offset = 16384;
	f->holes[1]->len = 4096;
	/* Unknown flags, oversized file, bad name, no page size yet. */
	f->has_flags = true;
	f->flags = 2;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -EINVAL);
	f->flags = CTRL_IMAGE_FILE_LAST;
	f->total_size = CTRL_FILE_SIZE_MAX + 1;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -ERANGE);
	f->total_size = 65536;
	f->name = dotdot;
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), -EINVAL);
	f->name = good;
	assert_int_equal(ctrl_validate_image_file(f, 0, NULL), -EINVAL);
	assert_int_equal(ctrl_validate_image_file(f, PS, NULL), 0);
	ctrl_out_release(&o);
}

/* Builds LazyRange pointers for ctrl_validate_ranges(). */
struct ranges {
	LazyRange r[4];
	LazyRange *p[4];
};

static void ranges_set(struct ranges *rs, size_t i, uint64_t vaddr, uint64_t len, bool remote,
		       uint64_t raddr, uint32_t rkey)
{
	lazy_range__init(&rs->r[i]);
	rs->r[i].img_vaddr = vaddr;
	rs->r[i].len = len;
	rs->r[i].has_remote_addr = rs->r[i].has_rkey = remote;
	rs->r[i].remote_addr = raddr;
	rs->r[i].rkey = rkey;
	rs->p[i] = &rs->r[i];
}

static void test_range_rules(void **state)
{
	const struct ctrl_region reg[2] = {{0x100000, 0x10000, 5}, {0x900000, 0x1000, 6}};
	struct ranges rs;
	struct ctrl_err e;

	ranges_set(&rs, 0, 0x1000, 0x2000, true, 0x100000, 5);
	ranges_set(&rs, 1, 0x3000, 0x1000, true, 0x10f000, 5);
	ranges_set(&rs, 2, 0x8000, 0x1000, true, 0x900000, 6);
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), 0);

	/* Overlapping and unsorted. */
	rs.r[1].img_vaddr = 0x2000;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, &e), -EINVAL);
	assert_non_null(strstr(e.text, "overlaps"));
	rs.r[1].img_vaddr = 0x0;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	rs.r[1].img_vaddr = 0x3000;
	/* Empty, unaligned, wrapping, beyond the address space. */
	rs.r[2].len = 0;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	rs.r[2].len = 0x800;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	rs.r[2].len = 0x1000;
	rs.r[2].img_vaddr = 0x8100;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	rs.r[2].img_vaddr = UINT64_MAX - 0xfff;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	rs.r[2].img_vaddr = CTRL_VADDR_LIMIT - 0x1000;
	rs.r[2].len = 0x2000;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	rs.r[2].img_vaddr = 0x8000;
	rs.r[2].len = 0x1000;

	/* Remote side outside the region, across its end, wrapping, wrong rkey. */
	rs.r[1].remote_addr = 0x110000;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, &e), -ERANGE);
	assert_non_null(strstr(e.text, "outside"));
	rs.r[1].remote_addr = 0x10f800;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -ERANGE);
	rs.r[1].remote_addr = 0xff000;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -ERANGE);
	rs.r[1].remote_addr = UINT64_MAX - 0x7ff;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -ERANGE);
	rs.r[1].remote_addr = 0x10f000;
	rs.r[1].rkey = 6;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -ERANGE);
	rs.r[1].rkey = 5;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, NULL, 0, NULL), -ERANGE);
	/* RDMA needs the remote fields; TCP must not carry them. */
	rs.r[0].has_rkey = false;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, true, reg, 2, NULL), -EINVAL);
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, false, NULL, 0, &e), -EINVAL);
	assert_non_null(strstr(e.text, "without RDMA"));
	for (int i = 0; i < 3; i++)
		rs.r[i].has_remote_addr = rs.r[i].has_rkey = false;
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, PS, false, NULL, 0, NULL), 0);
	assert_int_equal(ctrl_validate_ranges(rs.p, 3, 0, false, NULL, 0, NULL), -EINVAL);
}

static void test_text_rules(void **state)
{
	char big[CTRL_TEXT_MAX + 2];

	memset(big, 'r', sizeof(big));
	big[CTRL_TEXT_MAX] = '\0';
	assert_int_equal(ctrl_validate_text(big, CTRL_TEXT_MAX, "reason", NULL), 0);
	big[CTRL_TEXT_MAX] = 'r';
	big[CTRL_TEXT_MAX + 1] = '\0';
	assert_int_equal(ctrl_validate_text(big, CTRL_TEXT_MAX, "reason", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_text("line\nbreak", 64, "reason", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_text(NULL, 64, "reason", NULL), 0);
	assert_int_equal(ctrl_validate_migration_id("a.b_c-9", NULL), 0);
	assert_int_equal(ctrl_validate_migration_id("a+b", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_migration_id("", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_migration_id(".", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_migration_id("..", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_migration_id(".hidden", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_migration_id("-x", NULL), -EINVAL);
	assert_int_equal(ctrl_validate_migration_id("9.x", NULL), 0);
}

/* ---- the state machine ---------------------------------------------------- */

static void stream_images(struct pair *p, bool rdma)
{
	struct ctrl_region reg = {0x10000000, 1u << 20, 0x77};
	struct ctrl_hole hole = {8192, 8192};
	uint8_t data[8192] = {1, 2, 3};
	struct ctrl_file_chunk fc = {.name = "pages-1.img",
				     .total_size = 16384,
				     .offset = 0,
				     .data = data,
				     .data_len = sizeof(data),
				     .holes = &hole,
				     .nr_holes = 1,
				     .last = true};
	struct ctrl_file_chunk inv = {
	    .name = "inventory.img", .total_size = 3, .data = data, .data_len = 3, .last = true};
	struct ctrl_range r[2] = {
	    {.img_vaddr = 0x400000,
	     .len = 8192,
	     .has_remote = rdma,
	     .remote_addr = 0x10000000,
	     .rkey = 0x77,
	     .xxh3 = 11},
	    {.img_vaddr = 0x600000,
	     .len = 4096,
	     .has_remote = rdma,
	     .remote_addr = 0x10002000,
	     .rkey = 0x77,
	     .xxh3 = 22},
	};
	struct ctrl_out o;

	if (rdma) {
		ctrl_msg_mem_regions(&o, &reg, 1);
		pass(&p->src, &p->dst, &o);
	}
	ctrl_msg_image_file(&o, &inv);
	pass(&p->src, &p->dst, &o);
	ctrl_msg_image_file(&o, &fc);
	pass(&p->src, &p->dst, &o);
	/* One pid's table in two chunks. */
	ctrl_msg_task_table(&o, 100, &r[0], 1, false);
	pass(&p->src, &p->dst, &o);
	ctrl_msg_task_table(&o, 100, &r[1], 1, true);
	pass(&p->src, &p->dst, &o);
	ctrl_msg_images_done(&o, 2, 1, 12288);
	pass(&p->src, &p->dst, &o);
	assert_int_equal(p->src.phase, CTRL_PH_POSTCOPY);
	assert_int_equal(p->dst.phase, CTRL_PH_POSTCOPY);
}

static void test_state_full_session_tcp(void **state)
{
	struct ctrl_done d = {.pages = 3, .bytes = 12288, .ranges_verified = 2};
	uint8_t page[4096] = {9};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;

	pair_init(&p, CTRL_FEAT_TCP_READ | CTRL_FEAT_VERIFY_PAGES,
		  CTRL_FEAT_TCP_READ | CTRL_FEAT_RDMA_READ);
	handshake(&p);
	assert_int_equal(ctrl_state_negotiated(&p.src)->features, CTRL_FEAT_TCP_READ);
	assert_int_equal(ctrl_state_negotiated(&p.dst)->page_size, PS);
	stream_images(&p, false);

	ctrl_msg_read_req(&o, 1, 100, 0x400000, 4096);
	pass(&p.dst, &p.src, &o);
	ctrl_msg_read_resp(&o, 1, 0, page, sizeof(page));
	assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
	assert_memory_equal(m->read_resp->data.data, page, sizeof(page));
	ctrl_free(m);
	ctrl_msg_progress(&o, 1, 4096, 1);
	pass(&p.dst, &p.src, &o);
	ctrl_msg_keepalive(&o, 1, 123);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_keepalive(&o, 1, 456);
	pass(&p.dst, &p.src, &o);
	d.digest = ctrl_digest_add(ctrl_digest_add(0, 11), 22);
	ctrl_msg_done(&o, &d);
	pass(&p.dst, &p.src, &o);
	/* A read response still in flight when Done crosses it is fine. */
	ctrl_msg_read_resp(&o, 2, -EIO, NULL, 0);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_done_ack(&o, true, NULL);
	pass(&p.src, &p.dst, &o);
	assert_int_equal(p.src.phase, CTRL_PH_CLOSED);
	assert_int_equal(p.dst.phase, CTRL_PH_CLOSED);
	/* Nothing more after the end. */
	ctrl_msg_keepalive(&o, 2, 0);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	pair_fini(&p);
}

static void test_state_full_session_rdma(void **state)
{
	struct ranges rs;
	struct pair p;
	struct ctrl_out o;
	size_t len;
	RdmigMsg *m;

	pair_init(&p, CTRL_FEAT_RDMA_READ, CTRL_FEAT_RDMA_READ | CTRL_FEAT_TCP_READ);
	handshake(&p);
	stream_images(&p, true);
	/* Over RDMA pages move by READ: no ReadReq, no ReadResp. */
	ctrl_msg_read_req(&o, 1, 100, 0x400000, 4096);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), -EPROTO);
	ctrl_msg_read_req(&o, 1, 100, 0x400000, 4096);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	(void)rs;
	pair_fini(&p);
}

/*
 * FaultLane: only with FEAT_FAULT_LANE on both sides, only once both proved
 * the secret, either way, in images and postcopy; QP numbers are 24 bits.
 */
static void test_state_fault_lane(void **state)
{
	const uint64_t lane = CTRL_FEAT_RDMA_READ | CTRL_FEAT_FAULT_LANE;
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m = NULL;
	size_t len;

	pair_init(&p, lane, lane);
	/* Not before the handshake: no QP toward an unauthenticated peer. */
	ctrl_msg_fault_lane(&o, 17, 5);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_fault_lane(&o, 17, 5);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	pair_fini(&p);

	pair_init(&p, lane, lane);
	handshake(&p);
	assert_true(ctrl_state_negotiated(&p.src)->features & CTRL_FEAT_FAULT_LANE);
	ctrl_msg_fault_lane(&o, 17, 5);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_int_equal(m->fault_lane->qpn, 17);
	assert_int_equal(m->fault_lane->psn, 5);
	ctrl_free(m);
	ctrl_msg_fault_lane(&o, 0xffffff, 0);
	pass(&p.src, &p.dst, &o);
	/* A QP number is 24 bits and never 0; a PSN is 24 bits. */
	ctrl_msg_fault_lane(&o, 0, 1);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EINVAL);
	ctrl_out_release(&o);
	ctrl_msg_fault_lane(&o, 1u << 24, 1);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	pair_fini(&p);

	/* An older source does not offer the bit: the message is illegal. */
	pair_init(&p, CTRL_FEAT_RDMA_READ, lane);
	handshake(&p);
	assert_false(ctrl_state_negotiated(&p.dst)->features & CTRL_FEAT_FAULT_LANE);
	ctrl_msg_fault_lane(&o, 17, 5);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	pair_fini(&p);
}

/*
 * DrainLane: only with FEAT_DRAIN_QPS on both sides (an older source
 * without the bit never sees one), after the proofs, either way; index
 * 1..CTRL_DRAIN_QPS_MAX-1, QP numbers 24 bits.
 */
static void test_state_drain_lane(void **state)
{
	const uint64_t qps = CTRL_FEAT_RDMA_READ | CTRL_FEAT_DRAIN_QPS;
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m = NULL;
	size_t len;

	pair_init(&p, qps, qps);
	ctrl_msg_drain_lane(&o, 1, 17, 5);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	pair_fini(&p);

	pair_init(&p, qps, qps);
	handshake(&p);
	assert_true(ctrl_state_negotiated(&p.dst)->features & CTRL_FEAT_DRAIN_QPS);
	ctrl_msg_drain_lane(&o, 3, 17, 5);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_int_equal(m->drain_lane->index, 3);
	assert_int_equal(m->drain_lane->qpn, 17);
	assert_int_equal(m->drain_lane->psn, 5);
	ctrl_free(m);
	ctrl_msg_drain_lane(&o, 1, 0xffffff, 0);
	pass(&p.src, &p.dst, &o);
	/* Index 0 is the first QP, made by rdma_cm; 4 is past the limit. */
	ctrl_msg_drain_lane(&o, 0, 17, 5);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EINVAL);
	ctrl_out_release(&o);
	ctrl_msg_drain_lane(&o, CTRL_DRAIN_QPS_MAX, 17, 5);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	pair_fini(&p);

	pair_init(&p, qps, qps);
	handshake(&p);
	ctrl_msg_drain_lane(&o, 2, 1u << 24, 5);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EINVAL);
	ctrl_out_release(&o);
	pair_fini(&p);

	/* An older source does not offer the bit: the destination may not ask. */
	pair_init(&p, CTRL_FEAT_RDMA_READ | CTRL_FEAT_FAULT_LANE, qps);
	handshake(&p);
	assert_false(ctrl_state_negotiated(&p.dst)->features & CTRL_FEAT_DRAIN_QPS);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_DRAIN_LANE), -EPROTO);
	pair_fini(&p);
}

/*
 * Attach: only with FEAT_RESUME on both sides, only from the destination,
 * only once both proved the secret, in the images phase; a resumed stream
 * has tables and ImagesDone without files.  Running: from the destination,
 * in post-copy.
 */
static void test_state_attach(void **state)
{
	const uint64_t resume = CTRL_FEAT_TCP_READ | CTRL_FEAT_RESUME;
	struct ctrl_range r = {.img_vaddr = 0x1000, .len = 4096, .xxh3 = 1};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m = NULL;
	size_t len;

	pair_init(&p, resume, resume);
	ctrl_msg_attach(&o, true, false);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_attach(&o, true, false);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	pair_fini(&p);

	pair_init(&p, resume, resume);
	handshake(&p);
	assert_true(ctrl_state_negotiated(&p.src)->features & CTRL_FEAT_RESUME);
	/* The source never sends it. */
	ctrl_msg_attach(&o, false, false);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_attach(&o, true, false);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_true(m->attach->resume);
	assert_false(m->attach->has_page_hashes);
	ctrl_free(m);
	/* Resuming: the same table, no file, then ImagesDone{0 files}. */
	ctrl_msg_task_table(&o, 7, &r, 1, true);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_images_done(&o, 0, 1, 4096);
	pass(&p.src, &p.dst, &o);
	/* After the images phase it is illegal; Running is legal there, from the dest. */
	ctrl_msg_attach(&o, true, false);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_running(&o);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_running(&o);
	pass(&p.dst, &p.src, &o);
	pair_fini(&p);

	/* A takeover asks for the page tags again: they come between the table and ImagesDone. */
	pair_init(&p, resume | CTRL_FEAT_VERIFY_PAGES, resume | CTRL_FEAT_VERIFY_PAGES);
	handshake(&p);
	ctrl_msg_attach(&o, true, true);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_true(m->attach->resume && m->attach->has_page_hashes && m->attach->page_hashes);
	ctrl_free(m);
	ctrl_msg_task_table(&o, 7, &r, 1, true);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_page_hashes(&o, 7, 0x1000, &r.xxh3, 1);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_images_done(&o, 0, 1, 4096);
	pass(&p.src, &p.dst, &o);
	pair_fini(&p);

	/* An older source does not offer the bit: the message is illegal. */
	pair_init(&p, CTRL_FEAT_TCP_READ, resume);
	handshake(&p);
	ctrl_msg_attach(&o, false, false);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	pair_fini(&p);
}

static void test_state_refuses_before_auth(void **state)
{
	struct ctrl_range r = {.img_vaddr = 0x1000, .len = 4096, .xxh3 = 1};
	struct ctrl_file_chunk fc = {.name = "core-1.img", .total_size = 0, .last = true};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m = NULL;
	size_t len;

	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	/* The source's own state will not let addresses or image bytes out. */
	ctrl_msg_task_table(&o, 1, &r, 1, true);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_image_file(&o, &fc);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	assert_int_equal(ctrl_state_may_send(&p.src, RDMIG_MSG__BODY_MEM_REGIONS), -EPROTO);

	/* A forged TaskTable as the first message is refused by the dest. */
	ctrl_msg_task_table(&o, 1, &r, 1, true);
	len = forge(&p.dst, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EPROTO);
	assert_null(m);
	assert_int_equal(err_code(&p.dst), CTRL_ABORT_PROTOCOL);
	assert_int_equal(ctrl_state_accept(&p.dst, RDMIG_MSG__BODY_TASK_TABLE), -EPROTO);
	assert_int_equal(ctrl_state_accept(&p.dst, RDMIG_MSG__BODY_HELLO), 0);
	assert_int_equal(ctrl_state_accept(&p.dst, RDMIG_MSG__BODY_ABORT), 0);

	/* Half way through the handshake: still refused. */
	hello_of(&o, &p, CTRL_ROLE_DEST);
	pass(&p.dst, &p.src, &o);
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_task_table(&o, 1, &r, 1, true);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_keepalive(&o, 1, 1);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EPROTO);

	/* The source must not prove first, nor say ok before verifying the dest. */
	prove(&p.src, p.secret, &o);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	prove(&p.dst, p.secret, &o);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	ctrl_free(m);
	ctrl_msg_auth_result(&o, true, NULL);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPERM);
	ctrl_out_release(&o);
	assert_false(ctrl_state_authenticated(&p.src));
	pair_fini(&p);
}

static void test_state_wrong_proof(void **state)
{
	struct pair p;
	struct ctrl_out o;
	struct auth_secret *wrong;
	RdmigMsg *m;

	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	assert_int_equal(auth_secret_from_buf("not the right secret!", 21, &wrong), 0);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	pass(&p.dst, &p.src, &o);
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	pass(&p.src, &p.dst, &o);
	prove(&p.dst, wrong, &o);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_int_equal(verify(&p.src, p.secret, m), -EACCES);
	ctrl_free(m);
	/* The source aborts; the dest sees the migration closed. */
	ctrl_msg_abort(&o, CTRL_ABORT_AUTH, "authentication failed");
	assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
	assert_int_equal(m->abort->code, CTRL_ABORT_AUTH);
	ctrl_free(m);
	assert_int_equal(p.dst.phase, CTRL_PH_CLOSED);
	assert_int_equal(p.src.phase, CTRL_PH_CLOSED);
	auth_secret_free(wrong);
	pair_fini(&p);
}

static void test_state_hello_mismatch(void **state)
{
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;

	/* Another migration. */
	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	p.mig_dst = "mig-2";
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	pass(&p.src, &p.dst, &o);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), -EINVAL);
	pair_fini(&p);
	/* The dest found it on its own send too. */
	assert_int_equal(err_code(&p.dst), CTRL_ABORT_MIGRATION);

	/* A reflected nonce. */
	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	memcpy(p.ndst, p.nsrc, AUTH_NONCE_LEN);
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	pass(&p.src, &p.dst, &o);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EACCES);
	assert_int_equal(err_code(&p.src), CTRL_ABORT_AUTH);
	pair_fini(&p);

	/* No common transport. */
	pair_init(&p, CTRL_FEAT_RDMA_READ, CTRL_FEAT_TCP_READ);
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	pass(&p.src, &p.dst, &o);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTONOSUPPORT);
	assert_int_equal(err_code(&p.src), CTRL_ABORT_FEATURES);
	pair_fini(&p);

	/* Two Hellos that both speak only version 1: refused, not negotiated. */
	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	o.body.hello.min_version = o.body.hello.max_version = 1;
	pass(&p.src, &p.dst, &o);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	o.body.hello.min_version = o.body.hello.max_version = 1;
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTONOSUPPORT);
	assert_int_equal(err_code(&p.src), CTRL_ABORT_VERSION);
	assert_null(ctrl_state_negotiated(&p.src));
	pair_fini(&p);

	/* A peer claiming our own role, and a second Hello. */
	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	hello_of(&o, &p, CTRL_ROLE_SOURCE);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	pass(&p.dst, &p.src, &o);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	len = forge(&p.src, &o, 2);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	pair_fini(&p);
}

static void test_state_sequence(void **state)
{
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;

	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	hello_of(&o, &p, CTRL_ROLE_DEST);
	len = forge(&p.src, &o, 2); /* skipped 1 */
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	assert_non_null(strstr(ctrl_state_error(&p.src, NULL), "sequence"));
	hello_of(&o, &p, CTRL_ROLE_DEST);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), 0);
	ctrl_free(m);
	/* The same message again: a replay. */
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	pair_fini(&p);
}

static void test_state_stream_rules(void **state)
{
	struct ctrl_range r[2] = {{.img_vaddr = 0x2000, .len = 4096, .xxh3 = 1},
				  {.img_vaddr = 0x1000, .len = 4096, .xxh3 = 2}};
	struct ctrl_file_chunk a = {
	    .name = "core-1.img", .total_size = 10, .data = "0123456789", .data_len = 5};
	struct ctrl_file_chunk b = {
	    .name = "core-2.img", .total_size = 1, .data = "x", .data_len = 1, .last = true};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;

	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	handshake(&p);
	/* A file starting while another is incomplete. */
	ctrl_msg_image_file(&o, &a);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_image_file(&o, &b);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	assert_int_equal(err_code(&p.dst), CTRL_ABORT_IMAGES);
	/* A chunk going backwards. */
	a.offset = 2;
	a.data_len = 3;
	ctrl_msg_image_file(&o, &a);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	/* ImagesDone while core-1.img is incomplete. */
	ctrl_msg_images_done(&o, 0, 0, 0);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	a.offset = 5;
	a.data_len = 5;
	a.last = true;
	ctrl_msg_image_file(&o, &a);
	pass(&p.src, &p.dst, &o);

	/* A task table chunk overlapping the previous chunk of the same pid. */
	ctrl_msg_task_table(&o, 5, &r[0], 1, false);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_task_table(&o, 5, &r[1], 1, true);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	/* Another pid before pid 5's last chunk. */
	ctrl_msg_task_table(&o, 6, &r[1], 1, true);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	/* Unsorted within one message; pid 0; an rkey over TCP. */
	ctrl_msg_task_table(&o, 5, r, 2, true);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	ctrl_msg_task_table(&o, 0, NULL, 0, true);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	r[1] = (struct ctrl_range){
	    .img_vaddr = 0x9000, .len = 4096, .has_remote = true, .remote_addr = 0x1000, .rkey = 1};
	ctrl_msg_task_table(&o, 5, &r[1], 1, true);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	r[1].has_remote = false;
	ctrl_msg_task_table(&o, 5, &r[1], 1, true);
	pass(&p.src, &p.dst, &o);

	/* ImagesDone must match what was streamed. */
	ctrl_msg_images_done(&o, 2, 1, 8192);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	assert_non_null(strstr(ctrl_state_error(&p.dst, NULL), "ImagesDone"));
	ctrl_msg_images_done(&o, 1, 1, 8192);
	pass(&p.src, &p.dst, &o);

	/* Roles: the source never sends ReadReq or Done; the dest never sends ReadResp. */
	assert_int_equal(ctrl_state_may_send(&p.src, RDMIG_MSG__BODY_READ_REQ), -EPROTO);
	assert_int_equal(ctrl_state_may_send(&p.src, RDMIG_MSG__BODY_DONE), -EPROTO);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_READ_RESP), -EPROTO);
	assert_int_equal(ctrl_state_accept(&p.dst, RDMIG_MSG__BODY_READ_REQ), -EPROTO);
	assert_int_equal(ctrl_state_accept(&p.src, RDMIG_MSG__BODY_READ_REQ), 0);
	/* Images are over. */
	assert_int_equal(ctrl_state_accept(&p.dst, RDMIG_MSG__BODY_IMAGE_FILE), -EPROTO);
	/* DoneAck before Done. */
	assert_int_equal(ctrl_state_may_send(&p.src, RDMIG_MSG__BODY_DONE_ACK), -EPROTO);
	pair_fini(&p);
}

static bool only_pid_7(void *arg, int32_t pid, uint64_t vaddr, uint64_t len)
{
	int *calls = arg;

	(*calls)++;
	return pid == 7 && vaddr >= 0x10000 && vaddr + len <= 0x20000;
}

static void test_state_read_checks(void **state)
{
	uint64_t hashes[2] = {1, 2};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;
	int calls = 0;

	pair_init(&p, CTRL_FEAT_TCP_READ | CTRL_FEAT_VERIFY_PAGES, CTRL_FEAT_TCP_READ);
	ctrl_state_set_range_check(&p.src, only_pid_7, &calls);
	handshake(&p);
	/* VERIFY_PAGES was not agreed: no PageHashes. */
	ctrl_msg_page_hashes(&o, 7, 0x10000, hashes, 2);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_images_done(&o, 0, 0, 0);
	pass(&p.src, &p.dst, &o);

	ctrl_msg_read_req(&o, 1, 7, 0x10000, 8192);
	pass(&p.dst, &p.src, &o);
	assert_int_equal(calls, 1); /* the source checked the range on receipt */
	/* Unknown pid, outside the ranges, unaligned, too large, pid 0. */
	ctrl_msg_read_req(&o, 2, 8, 0x10000, 4096);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -ESRCH);
	ctrl_msg_read_req(&o, 2, 7, 0x1f000, 8192);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -ESRCH);
	ctrl_msg_read_req(&o, 2, 7, 0x10010, 4096);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	ctrl_msg_read_req(&o, 2, 7, 0x10000, CTRL_READ_MAX + 4096);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	ctrl_msg_read_req(&o, 2, 7, 0x10000, 0);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	ctrl_msg_read_req(&o, 2, 0, 0x10000, 4096);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);

	/* ReadResp: a positive status, or success without data. */
	ctrl_msg_read_resp(&o, 1, 0, NULL, 0);
	o.body.read_resp.status = 5;
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	ctrl_msg_read_resp(&o, 1, 0, NULL, 0);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -ERANGE);
	pair_fini(&p);
}

/*
 * FEAT_LAZY_DUMP over RDMA: TaskTable ranges come without a remote
 * address, StageRegion gives it later (inside an announced region, for a
 * known range), StageReq goes the other way; without the feature neither
 * message is legal and a range without its remote address is refused.
 */
static void test_state_lazy_dump(void **state)
{
	struct ctrl_region reg = {0x10000000, 1u << 20, 0x77};
	struct ctrl_range r = {.img_vaddr = 0x10000, .len = 8192, .xxh3 = 5};
	struct ctrl_range staged = r;
	const uint64_t tags[2] = {0x1111, 0x2222};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;
	int calls = 0;

	(void)state;
	pair_init(&p, CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP,
		  CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP);
	ctrl_state_set_range_check(&p.src, only_pid_7, &calls);
	ctrl_state_set_range_check(&p.dst, only_pid_7, &calls);
	handshake(&p);
	assert_true(ctrl_state_negotiated(&p.src)->features & CTRL_FEAT_LAZY_DUMP);
	ctrl_msg_mem_regions(&o, &reg, 1);
	pass(&p.src, &p.dst, &o);
	/* Not staged yet: no remote address in the table, and none needed. */
	ctrl_msg_task_table(&o, 7, &r, 1, true);
	pass(&p.src, &p.dst, &o);
	/* Not in postcopy yet. */
	ctrl_msg_stage_region(&o, 7, &r, NULL, 0);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_images_done(&o, 0, 1, 8192);
	pass(&p.src, &p.dst, &o);

	ctrl_msg_stage_req(&o, 7, 0x10000);
	pass(&p.dst, &p.src, &o);
	staged.has_remote = true;
	staged.remote_addr = 0x10000000;
	staged.rkey = 0x77;
	ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
	assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
	assert_int_equal(m->stage_region->remote_addr, 0x10000000);
	assert_int_equal(m->stage_region->xxh3, 5);
	ctrl_free(m);
	/* The source never asks; the destination never stages. */
	ctrl_msg_stage_req(&o, 7, 0x10000);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	/* Received: outside every region, without remote, unknown range, unaligned. */
	staged.remote_addr = 0x10100000 - 4096;
	ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -ERANGE);
	ctrl_msg_stage_region(&o, 7, &r, NULL, 0);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	staged.remote_addr = 0x10000000;
	staged.img_vaddr = 0x30000;
	ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -ESRCH);
	ctrl_msg_stage_req(&o, 7, 0x10010);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	ctrl_msg_stage_req(&o, 8, 0x10000);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -ESRCH);
	/* Page tags without FEAT_VERIFY_PAGES. */
	staged.img_vaddr = 0x10000;
	ctrl_msg_stage_region(&o, 7, &staged, tags, 2);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	pair_fini(&p);

	/* With FEAT_VERIFY_PAGES: one tag per page of the unit, no fewer. */
	pair_init(&p, CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP | CTRL_FEAT_VERIFY_PAGES,
		  CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP | CTRL_FEAT_VERIFY_PAGES);
	ctrl_state_set_range_check(&p.src, only_pid_7, &calls);
	ctrl_state_set_range_check(&p.dst, only_pid_7, &calls);
	handshake(&p);
	ctrl_msg_mem_regions(&o, &reg, 1);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_task_table(&o, 7, &r, 1, true);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_images_done(&o, 0, 1, 8192);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_stage_region(&o, 7, &staged, tags, 2);
	assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
	assert_int_equal(m->stage_region->n_page_tags, 2);
	assert_int_equal(m->stage_region->page_tags[1], tags[1]);
	ctrl_free(m);
	ctrl_msg_stage_region(&o, 7, &staged, tags, 1);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	assert_int_equal(ctrl_msg_stage_region(&o, 7, &staged, NULL, 3), -EINVAL);
	pair_fini(&p);

	/* An old peer: no FEAT_LAZY_DUMP in common. */
	pair_init(&p, CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP, CTRL_FEAT_RDMA_READ);
	handshake(&p);
	assert_false(ctrl_state_negotiated(&p.src)->features & CTRL_FEAT_LAZY_DUMP);
	ctrl_msg_mem_regions(&o, &reg, 1);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_task_table(&o, 7, &r, 1, true);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	pair_fini(&p);
}

/*
 * FEAT_LATE_REGIONS with a lazy dump: the staging area's MemRegions may
 * come after ImagesDone, and a StageRegion naming it only after them;
 * without the feature (or without a lazy dump) MemRegions stays an
 * image-phase message.
 */
static void test_state_late_regions(void **state)
{
	const uint64_t both = CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP | CTRL_FEAT_LATE_REGIONS;
	const uint64_t peers[3][2] = {
	    {both, both},
	    {both, CTRL_FEAT_RDMA_READ | CTRL_FEAT_LAZY_DUMP},
	    {CTRL_FEAT_RDMA_READ | CTRL_FEAT_LATE_REGIONS,
	     CTRL_FEAT_RDMA_READ | CTRL_FEAT_LATE_REGIONS},
	};
	struct ctrl_region reg = {0x10000000, 1u << 20, 0x77};
	struct ctrl_range r = {.img_vaddr = 0x10000, .len = 8192, .xxh3 = 5};
	struct ctrl_range staged = r;
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;
	int calls = 0;

	(void)state;
	staged.has_remote = true;
	staged.remote_addr = 0x10000000;
	staged.rkey = 0x77;
	for (int i = 0; i < 3; i++) {
		pair_init(&p, peers[i][0], peers[i][1]);
		ctrl_state_set_range_check(&p.src, only_pid_7, &calls);
		ctrl_state_set_range_check(&p.dst, only_pid_7, &calls);
		handshake(&p);
		/* Without a lazy dump, no table: its ranges would need a region first. */
		if (i != 2) {
			ctrl_msg_task_table(&o, 7, &r, 1, true);
			pass(&p.src, &p.dst, &o);
		}
		ctrl_msg_images_done(&o, 0, i != 2, i != 2 ? 8192 : 0);
		pass(&p.src, &p.dst, &o);
		if (i == 0) {
			/* A StageRegion before its MemRegions names no region. */
			ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
			len = forge(&p.dst, &o, p.dst.recv_seq + 1);
			assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -ERANGE);
			ctrl_msg_mem_regions(&o, &reg, 1);
			pass(&p.src, &p.dst, &o);
			ctrl_msg_stage_region(&o, 7, &staged, NULL, 0);
			assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
			ctrl_free(m);
		} else {
			ctrl_msg_mem_regions(&o, &reg, 1);
			assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
			ctrl_out_release(&o);
			ctrl_msg_mem_regions(&o, &reg, 1);
			len = forge(&p.dst, &o, p.dst.recv_seq + 1);
			assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EPROTO);
		}
		pair_fini(&p);
	}
}

/*
 * FEAT_ROUNDS: RoundPages goes from the source on a held session, before
 * the checkpoint's first region or image, every region with its XXH3,
 * and RoundsStop likewise, RoundsCopied from the destination; MemRegion's xxh3 goes through the
 * codec.  Refused without the feature,
 * after the images began, from the destination, as round 0 or without a
 * region's XXH3.
 */
static void test_state_round_pages(void **state)
{
	const uint64_t f = CTRL_FEAT_RDMA_READ | CTRL_FEAT_EARLY | CTRL_FEAT_ROUNDS;
	struct ctrl_region g[2] = {{0x10000000, 1u << 20, 0x77, true, 0xabc},
				   {0x20000000, 8192, 0x78, true, 0xdef}};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len;

	(void)state;
	pair_init(&p, f, f);
	handshake(&p);
	ctrl_msg_round_pages(&o, 1, g, 2);
	assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
	assert_int_equal(m->body_case, RDMIG_MSG__BODY_ROUND_PAGES);
	assert_int_equal(m->round_pages->round, 1);
	assert_int_equal(m->round_pages->n_regions, 2);
	assert_true(m->round_pages->regions[1]->has_xxh3);
	assert_int_equal(m->round_pages->regions[1]->xxh3, 0xdef);
	ctrl_free(m);
	ctrl_msg_round_pages(&o, 2, g, 1);
	pass(&p.src, &p.dst, &o);
	/* The destination's word that its copying ended: its own, never round 0. */
	ctrl_msg_rounds_copied(&o, 2, 1u << 20);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_int_equal(m->rounds_copied->round, 2);
	assert_int_equal(m->rounds_copied->bytes, 1u << 20);
	ctrl_free(m);
	ctrl_msg_rounds_copied(&o, 2, 0);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_rounds_copied(&o, 0, 0);
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	/* The source's RoundsStop, never the destination's. */
	ctrl_msg_rounds_stop(&o);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_rounds_stop(&o);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	/* Round 0, or a region without its XXH3. */
	ctrl_msg_round_pages(&o, 0, g, 1);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	g[0].has_xxh3 = false;
	ctrl_msg_round_pages(&o, 3, g, 2);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EINVAL);
	/* The final MemRegions carries the XXH3 of a round's region. */
	g[0].has_xxh3 = true;
	ctrl_msg_mem_regions(&o, g, 2);
	assert_int_equal(xfer(&p.src, &p.dst, &o, &m), 0);
	assert_true(m->mem_regions->regions[0]->has_xxh3);
	assert_int_equal(m->mem_regions->regions[0]->xxh3, 0xabc);
	ctrl_free(m);
	/* The checkpoint's images began: no more rounds, nothing to stop. */
	ctrl_msg_round_pages(&o, 3, g, 1);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_rounds_stop(&o);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_round_pages(&o, 3, g, 1);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EPROTO);
	/* Never from the destination. */
	ctrl_msg_round_pages(&o, 3, g, 1);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	pair_fini(&p);

	/* At most CTRL_REGIONS_MAX round regions on one connection. */
	pair_init(&p, f, f);
	handshake(&p);
	{
		static struct ctrl_region many[CTRL_REGIONS_MAX];

		for (size_t i = 0; i < CTRL_REGIONS_MAX; i++)
			many[i] = (struct ctrl_region){0x10000000 + i * 8192, 4096, 7, true, i};
		ctrl_msg_round_pages(&o, 1, many, CTRL_REGIONS_MAX - 1);
		pass(&p.src, &p.dst, &o);
		ctrl_msg_round_pages(&o, 2, many, 2);
		assert_int_equal(ctrl_state_send(&p.src, &o.msg), -ERANGE);
		ctrl_out_release(&o);
		ctrl_msg_round_pages(&o, 2, many, 2);
		len = forge(&p.dst, &o, p.dst.recv_seq + 1);
		assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -ERANGE);
		ctrl_msg_round_pages(&o, 2, many, 1);
		pass(&p.src, &p.dst, &o);
	}
	pair_fini(&p);

	/* Not negotiated: the destination did not offer it. */
	pair_init(&p, f, CTRL_FEAT_RDMA_READ | CTRL_FEAT_EARLY);
	handshake(&p);
	ctrl_msg_round_pages(&o, 1, g, 1);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_round_pages(&o, 1, g, 1);
	len = forge(&p.dst, &o, p.dst.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EPROTO);
	pair_fini(&p);
}

/*
 * After the handshake every message carries a MAC: a flipped byte, a
 * missing MAC, a replay or a message reflected to its sender is refused
 * with ABORT_AUTH before it is decoded, and leaves the state as it was.
 */
static void test_state_mac(void **state)
{
	struct ctrl_file_chunk a = {
	    .name = "core-1.img", .total_size = 4, .data = "abcd", .data_len = 4, .last = true};
	static uint8_t good[256];
	uint8_t *buf = NULL;
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m;
	size_t len, plain;

	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	handshake(&p);
	ctrl_msg_image_file(&o, &a);
	assert_int_equal(ctrl_state_encode(&p.src, &o.msg, &buf, &len), 0);
	ctrl_out_release(&o);
	assert_true(len <= sizeof(good));
	memcpy(good, buf, len);
	free(buf);
	/* Sealed: the packed message, then the tag. */
	assert_int_equal(ctrl_unpack(good, len - MSGAUTH_TAG_LEN, &m), 0);
	assert_int_equal(m->body_case, RDMIG_MSG__BODY_IMAGE_FILE);
	ctrl_free(m);
	for (size_t i = 0; i < len; i += 7) {
		memcpy(wire, good, len);
		wire[i] ^= 0x20;
		assert_int_equal(ctrl_state_recv(&p.dst, wire, len, &m), -EBADMSG);
		assert_null(m);
		assert_int_equal(err_code(&p.dst), CTRL_ABORT_AUTH);
		assert_non_null(strstr(ctrl_state_error(&p.dst, NULL),
				       "control message failed authentication"));
	}
	/* Truncated, or without its tag (what a version 1 peer would send). */
	assert_int_equal(ctrl_state_recv(&p.dst, good, len - 1, &m), -EBADMSG);
	assert_int_equal(ctrl_state_recv(&p.dst, good, len - MSGAUTH_TAG_LEN, &m), -EBADMSG);
	assert_int_equal(ctrl_state_recv(&p.dst, good, MSGAUTH_TAG_LEN, &m), -EBADMSG);
	/* Reflected back to the source. */
	assert_int_equal(ctrl_state_recv(&p.src, good, len, &m), -EBADMSG);
	/* Every refusal left the state alone: the original still passes, once. */
	assert_int_equal(ctrl_state_recv(&p.dst, good, len, &m), 0);
	ctrl_free(m);
	assert_int_equal(ctrl_state_recv(&p.dst, good, len, &m), -EBADMSG);
	assert_int_equal(err_code(&p.dst), CTRL_ABORT_AUTH);
	/* The right next message, with the MAC of the position after it. */
	ctrl_msg_images_done(&o, 1, 0, 0);
	p.dst.mac.recv.next++;
	plain = forge(&p.dst, &o, p.dst.recv_seq + 1);
	p.dst.mac.recv.next--;
	assert_int_equal(ctrl_state_recv(&p.dst, wire, plain, &m), -EBADMSG);
	/* Without keys nothing goes out after the handshake. */
	ctrl_state_clear(&p.src);
	ctrl_msg_keepalive(&o, 1, 2);
	assert_int_equal(ctrl_state_encode(&p.src, &o.msg, &buf, &len), -EPERM);
	assert_null(buf);
	ctrl_out_release(&o);
	pair_fini(&p);
}

static void test_state_data_channel(void **state)
{
	struct ctrl_file_chunk fc = {.name = "core-3.img", .total_size = 0, .last = true};
	uint8_t page[4096] = {0};
	struct pair p;
	struct ctrl_out o;

	pair_init(&p, CTRL_FEAT_TCP_READ, CTRL_FEAT_TCP_READ);
	p.channel = CTRL_CHANNEL_DATA;
	handshake(&p);
	/* A data channel goes straight to serving reads. */
	assert_int_equal(p.src.phase, CTRL_PH_POSTCOPY);
	ctrl_msg_read_req(&o, 9, 1, 0, 4096);
	pass(&p.dst, &p.src, &o);
	ctrl_msg_read_resp(&o, 9, 0, page, sizeof(page));
	pass(&p.src, &p.dst, &o);
	ctrl_msg_image_file(&o, &fc);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_DONE), -EPROTO);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_PROGRESS), -EPROTO);
	pair_fini(&p);
}

/* A pair through the handshake of an RC side channel, the source offering src. */
static void rc_side_pair(struct pair *p, uint64_t src)
{
	pair_init(p, src, CTRL_FEAT_RDMA_READ | CTRL_FEAT_RC_SIDE | CTRL_FEAT_RESUME);
	p->channel = CTRL_CHANNEL_RC_SIDE;
	handshake(p);
}

/*
 * An RC side channel (FEAT_RC_SIDE): after its handshake only RcConnect,
 * Keepalive and Abort; RcConnect nowhere else; every field checked.
 */
static void test_state_rc_side(void **state)
{
	const uint64_t side = CTRL_FEAT_RDMA_READ | CTRL_FEAT_RC_SIDE | CTRL_FEAT_RESUME;
	uint8_t gid[CTRL_GID_LEN] = {[10] = 0xff, [11] = 0xff, 192, 0, 2, 1};
	uint8_t zero[CTRL_GID_LEN] = {0};
	/* Out of range: QP 0 or above 24 bits, PSN above 24 bits, no GID, no ibv_mtu, depth 0. */
	static const struct {
		uint32_t qpn, psn;
		bool zero_gid;
		uint32_t mtu, rd_atomic;
	} bad[] = {
	    {0, 5, false, 3, 16}, {1u << 24, 5, false, 3, 16}, {17, 1u << 24, false, 3, 16},
	    {17, 5, true, 3, 16}, {17, 5, false, 0, 16},       {17, 5, false, 6, 16},
	    {17, 5, false, 3, 0}, {17, 5, false, 3, 256},
	};
	struct ctrl_file_chunk fc = {.name = "core-3.img", .total_size = 0, .last = true};
	struct pair p;
	struct ctrl_out o;
	RdmigMsg *m = NULL;
	size_t len, i;

	pair_init(&p, side, side);
	p.channel = CTRL_CHANNEL_RC_SIDE;
	/* No queue pair's number before both proofs. */
	ctrl_msg_rc_connect(&o, 17, 5, gid, 3, 16);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_rc_connect(&o, 17, 5, gid, 3, 16);
	len = forge(&p.src, &o, 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EPROTO);
	pair_fini(&p);

	rc_side_pair(&p, side);
	assert_int_equal(p.src.phase, CTRL_PH_POSTCOPY);
	assert_int_equal(ctrl_state_negotiated(&p.src)->channel, CTRL_CHANNEL_RC_SIDE);
	ctrl_msg_rc_connect(&o, 17, 5, gid, 3, 16);
	assert_int_equal(xfer(&p.dst, &p.src, &o, &m), 0);
	assert_int_equal(m->rc_connect->qpn, 17);
	assert_int_equal(m->rc_connect->psn, 5);
	assert_int_equal(m->rc_connect->gid.len, CTRL_GID_LEN);
	assert_memory_equal(m->rc_connect->gid.data, gid, CTRL_GID_LEN);
	assert_int_equal(m->rc_connect->mtu, 3);
	assert_int_equal(m->rc_connect->rd_atomic, 16);
	ctrl_free(m);
	ctrl_msg_rc_connect(&o, 0xffffff, 0xffffff, gid, 5, 255);
	pass(&p.src, &p.dst, &o);
	ctrl_msg_keepalive(&o, 1, 2);
	pass(&p.src, &p.dst, &o);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ctrl_msg_rc_connect(&o, bad[i].qpn, bad[i].psn, bad[i].zero_gid ? zero : gid,
				    bad[i].mtu, bad[i].rd_atomic);
		assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EINVAL);
		ctrl_out_release(&o);
	}
	/* Received too, before anything is used: a GID that is not 16 bytes. */
	ctrl_msg_rc_connect(&o, 17, 5, gid, 3, 16);
	o.body.rc_connect.gid.len = 4;
	len = forge(&p.src, &o, p.src.recv_seq + 1);
	assert_int_equal(ctrl_state_recv(&p.src, wire, len, &m), -EINVAL);
	pair_fini(&p);

	/* Nothing of a migration crosses a side channel. */
	rc_side_pair(&p, side);
	ctrl_msg_image_file(&o, &fc);
	assert_int_equal(ctrl_state_send(&p.src, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	ctrl_msg_read_req(&o, 9, 1, 0, 4096);
	assert_int_equal(ctrl_state_send(&p.dst, &o.msg), -EPROTO);
	ctrl_out_release(&o);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_ATTACH), -EPROTO);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_FAULT_LANE), -EPROTO);
	pair_fini(&p);

	/* RcConnect is illegal without the bit, and on a control connection. */
	rc_side_pair(&p, CTRL_FEAT_RDMA_READ);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_RC_CONNECT), -EPROTO);
	pair_fini(&p);
	pair_init(&p, side, side);
	handshake(&p);
	stream_images(&p, true);
	assert_int_equal(ctrl_state_may_send(&p.dst, RDMIG_MSG__BODY_RC_CONNECT), -EPROTO);
	assert_int_equal(ctrl_state_may_send(&p.src, RDMIG_MSG__BODY_RC_CONNECT), -EPROTO);
	pair_fini(&p);
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rnd(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545f4914f6cdd1dull;
}

/*
 * Mutated copies of valid source messages against an authenticated dest:
 * each is either admitted whole or refused cleanly (ASan/UBSan watch).
 */
static void test_mutated_messages(void **state)
{
	static uint8_t orig[CTRL_MSG_MAX], buf[CTRL_MSG_MAX + MSGAUTH_TAG_LEN];
	uint64_t hashes[4] = {1, 2, 3, 4}, x = 0x9e3779b97f4a7c15ull;
	struct ctrl_hole holes[2] = {{8192, 4096}, {16384, 8192}};
	struct ctrl_region reg = {0x10000, 1u << 20, 3};
	struct ctrl_range r[3] = {
	    {.img_vaddr = 0x1000,
	     .len = 4096,
	     .has_remote = true,
	     .remote_addr = 0x10000,
	     .rkey = 3,
	     .xxh3 = 1},
	    {.img_vaddr = 0x3000,
	     .len = 8192,
	     .has_remote = true,
	     .remote_addr = 0x20000,
	     .rkey = 3,
	     .xxh3 = 2},
	    {.img_vaddr = 0x9000,
	     .len = 4096,
	     .has_remote = true,
	     .remote_addr = 0x30000,
	     .rkey = 3,
	     .xxh3 = 3},
	};
	struct ctrl_file_chunk fc = {.name = "pages-9.img",
				     .total_size = 32768,
				     .data = "abcdef",
				     .data_len = 6,
				     .holes = holes,
				     .nr_holes = 2};
	struct pair p;
	struct ctrl_out o;
	size_t admitted = 0, refused = 0;
	int saved_err, devnull;

	pair_init(&p, CTRL_FEAT_RDMA_READ | CTRL_FEAT_VERIFY_PAGES,
		  CTRL_FEAT_RDMA_READ | CTRL_FEAT_VERIFY_PAGES);
	handshake(&p);
	ctrl_msg_mem_regions(&o, &reg, 1);
	pass(&p.src, &p.dst, &o);
	/* Thousands of refusals would flood the test log. */
	fflush(stderr);
	saved_err = dup(STDERR_FILENO);
	devnull = open("/dev/null", O_WRONLY);
	assert_true(saved_err >= 0 && devnull >= 0);
	dup2(devnull, STDERR_FILENO);
	for (int kind = 0; kind < 6; kind++) {
		size_t len;

		switch (kind) {
		case 0:
			ctrl_msg_image_file(&o, &fc);
			break;
		case 1:
			ctrl_msg_task_table(&o, 42, r, 3, true);
			break;
		case 2:
			ctrl_msg_page_hashes(&o, 42, 0x1000, hashes, 1);
			break;
		case 3:
			ctrl_msg_mem_regions(&o, &reg, 1);
			break;
		case 4:
			ctrl_msg_abort(&o, CTRL_ABORT_READ, "no such page");
			break;
		default:
			ctrl_msg_images_done(&o, 0, 0, 0);
			break;
		}
		o.msg.seq = p.dst.recv_seq + 1;
		assert_int_equal(ctrl_pack(&o.msg, orig, sizeof(orig), &len), 0);
		ctrl_out_release(&o);
		for (int i = 0; i < 3000; i++) {
			struct ctrl_state st = p.dst;
			size_t n = len, flips = 1 + rnd(&x) % 4;
			RdmigMsg *m = (RdmigMsg *)0x1;
			int ret;

			memcpy(buf, orig, len);
			/* Keep the sequence number (bytes 0-1), mutate the rest. */
			for (size_t f = 0; f < flips; f++)
				buf[2 + rnd(&x) % (len - 2)] ^= (uint8_t)(1u << (rnd(&x) % 8));
			if (rnd(&x) % 8 == 0)
				n = 2 + rnd(&x) % (len - 2);
			/* A valid MAC over the mutation: past it, onto the decoder and validators.
			 */
			n = seal_for(&st, buf, n);
			ret = ctrl_state_recv(&st, buf, n, &m);
			if (ret == 0) {
				assert_non_null(m);
				assert_int_equal(m->seq, p.dst.recv_seq + 1);
				ctrl_free(m);
				admitted++;
			} else {
				assert_true(ret < 0);
				assert_null(m);
				assert_true(st.err.text[0] != '\0');
				refused++;
			}
		}
	}
	fflush(stderr);
	dup2(saved_err, STDERR_FILENO);
	close(saved_err);
	close(devnull);
	/* Both outcomes happened: the mutations reached the validators. */
	assert_true(admitted > 0);
	assert_true(refused > 0);
	pair_fini(&p);
}

static void test_digest(void **state)
{
	uint64_t a = ctrl_digest_add(ctrl_digest_add(0, 1), 2);
	uint64_t b = ctrl_digest_add(ctrl_digest_add(0, 2), 1);

	assert_int_equal(a, ctrl_digest_add(ctrl_digest_add(0, 1), 2));
	assert_int_not_equal(a, b);
	assert_int_not_equal(ctrl_digest_add(0, 1), ctrl_digest_add(0, 3));
}

static void test_names(void **state)
{
	assert_string_equal(ctrl_msg_type_str(RDMIG_MSG__BODY_TASK_TABLE), "TaskTable");
	assert_string_equal(ctrl_msg_type_str((RdmigMsg__BodyCase)40), "(unknown type)");
	assert_string_equal(ctrl_abort_str(1000), "unknown abort code");
	assert_string_equal(ctrl_phase_str(CTRL_PH_IMAGES), "images");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_handshake_msgs),
	    cmocka_unit_test(test_roundtrip_image_msgs),
	    cmocka_unit_test(test_roundtrip_postcopy_msgs),
	    cmocka_unit_test(test_limits_fit),
	    cmocka_unit_test(test_unpack_rejects),
	    cmocka_unit_test(test_file_names),
	    cmocka_unit_test(test_hello_rules),
	    cmocka_unit_test(test_image_file_rules),
	    cmocka_unit_test(test_range_rules),
	    cmocka_unit_test(test_text_rules),
	    cmocka_unit_test(test_state_full_session_tcp),
	    cmocka_unit_test(test_state_full_session_rdma),
	    cmocka_unit_test(test_state_refuses_before_auth),
	    cmocka_unit_test(test_state_wrong_proof),
	    cmocka_unit_test(test_state_hello_mismatch),
	    cmocka_unit_test(test_state_sequence),
	    cmocka_unit_test(test_state_mac),
	    cmocka_unit_test(test_state_stream_rules),
	    cmocka_unit_test(test_state_read_checks),
	    cmocka_unit_test(test_state_lazy_dump),
	    cmocka_unit_test(test_state_late_regions),
	    cmocka_unit_test(test_state_round_pages),
	    cmocka_unit_test(test_state_data_channel),
	    cmocka_unit_test(test_mutated_messages),
	    cmocka_unit_test(test_digest),
	    cmocka_unit_test(test_state_fault_lane),
	    cmocka_unit_test(test_state_drain_lane),
	    cmocka_unit_test(test_state_rc_side),
	    cmocka_unit_test(test_state_attach),
	    cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
