// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the connect data a destination's rdma_cm connect
 * request carries (common/connhint.c, docs/protocol.md "Connect data"):
 * "RDMG", version 1, the id's length n (1..CONNHINT_ID_MAX), the id's n
 * bytes, the rest of the private data area zero.
 *
 * Input: the private data as the accepting side gets it.  It is parsed
 * whole, cut at every length below its own (the truncations), and taken
 * as an id for connhint_make() (up to the first NUL).
 *
 * Besides crashes, it aborts when:
 *  - an accepted hint names no migration id (migration_id_valid()), one
 *    longer than CONNHINT_ID_MAX, or is not byte for byte what
 *    connhint_make() writes for that id followed by zeros: the parser
 *    accepts exactly the layout the destination writes;
 *  - a hint is accepted without room for its id and the NUL, or refused
 *    with exactly that room;
 *  - a cut hint is accepted although it ends inside the id, or refused
 *    although it holds the whole id;
 *  - connhint_make() writes more than RDMA_CONN_DATA_MAX bytes, names an
 *    id it should not (not a migration id, longer than CONNHINT_ID_MAX),
 *    or writes a hint the parser does not give back as the same id.
 *
 * Run: `make fuzz FUZZ_TARGETS=connhint` (docs/testing.md, "Fuzzing").
 */
#include <string.h>

#include "connhint.h"
#include "fuzz.h"
#include "rdma.h"
#include "util.h"

#define HINT_HDR 6

static bool fuzz_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* What the parser accepted is the destination's layout, and nothing else. */
static void fuzz_accepted(const uint8_t *data, size_t size, const char *id)
{
	uint8_t made[RDMA_CONN_DATA_MAX];
	char small[CONNHINT_ID_MAX + 1];
	size_t n = strlen(id), len;

	fuzz_check(n >= 1 && n <= CONNHINT_ID_MAX && migration_id_valid(id));
	len = connhint_make(id, made, sizeof(made));
	fuzz_check(len == HINT_HDR + n && len <= size && memcmp(made, data, len) == 0);
	fuzz_check(fuzz_zero(data + len, size - len));
	/* Room for the id and its NUL is enough; one byte less is not. */
	fuzz_check(connhint_parse(data, size, small, n + 1) == 0 && strcmp(small, id) == 0);
	fuzz_check(connhint_parse(data, size, small, n) < 0);
	for (size_t cut = 0; cut < size; cut++)
		fuzz_check((connhint_parse(data, cut, small, sizeof(small)) == 0) == (cut >= len));
}

/* The input as an id: what connhint_make() writes parses back to it. */
static void fuzz_make(const uint8_t *data, size_t size)
{
	uint8_t buf[RDMA_CONN_DATA_MAX + 8];
	char id[CONNHINT_ID_MAX + 16], back[CONNHINT_ID_MAX + 1];
	size_t n = strnlen((const char *)data, size < sizeof(id) - 1 ? size : sizeof(id) - 1);
	size_t len;

	memcpy(id, data, n);
	id[n] = '\0';
	memset(buf, 0, sizeof(buf));
	len = connhint_make(id, buf, RDMA_CONN_DATA_MAX);
	fuzz_check(len <= RDMA_CONN_DATA_MAX);
	if (len == 0) {
		fuzz_check(n == 0 || n > CONNHINT_ID_MAX || !migration_id_valid(id));
		return;
	}
	fuzz_check(n <= CONNHINT_ID_MAX && migration_id_valid(id));
	/* rdma_cm hands the accepting side the whole area, zero-padded. */
	fuzz_check(connhint_parse(buf, sizeof(buf), back, sizeof(back)) == 0);
	fuzz_check(strcmp(back, id) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[CONNHINT_ID_MAX + 1];

	if (connhint_parse(data, size, id, sizeof(id)) == 0)
		fuzz_accepted(data, size, id);
	fuzz_make(data, size);
	return 0;
}
