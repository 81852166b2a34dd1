// SPDX-License-Identifier: GPL-2.0-or-later
#include "connhint.h"

#include <errno.h>
#include <string.h>

#include "util.h"

#define HINT_MAGIC   "RDMG"
#define HINT_VERSION 1
#define HINT_HDR     6

size_t connhint_make(const char *id, uint8_t *buf, size_t size)
{
	size_t n = strlen(id);

	if (n == 0 || n > CONNHINT_ID_MAX || size < HINT_HDR + n || !migration_id_valid(id))
		return 0;
	memcpy(buf, HINT_MAGIC, 4);
	buf[4] = HINT_VERSION;
	buf[5] = (uint8_t)n;
	memcpy(buf + HINT_HDR, id, n);
	return HINT_HDR + n;
}

int connhint_parse(const void *data, size_t len, char *id, size_t size)
{
	const uint8_t *d = data;
	size_t n;

	if (!d || len < HINT_HDR || memcmp(d, HINT_MAGIC, 4) != 0 || d[4] != HINT_VERSION)
		return -EINVAL;
	n = d[5];
	if (n == 0 || n > CONNHINT_ID_MAX || len < HINT_HDR + n || size <= n ||
	    memchr(d + HINT_HDR, '\0', n))
		return -EINVAL;
	/* The rest is rdma_cm's zero padding: anything else is another layout. */
	for (size_t i = HINT_HDR + n; i < len; i++)
		if (d[i])
			return -EINVAL;
	memcpy(id, d + HINT_HDR, n);
	id[n] = '\0';
	/* Only a migration id can pick a PD; other bytes must not reach a lookup or a log. */
	return migration_id_valid(id) ? 0 : -EINVAL;
}
