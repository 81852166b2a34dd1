/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * connhint: the migration a destination's RDMA connection is for, named in
 * its connect request (rdma_cm private data), so the source can put the
 * connection's queue pairs in the protection domain where that migration's
 * checkpoint is already registered (design.md §5).
 *
 * The hint is untrusted and proves nothing: it only picks a PD.  The
 * destination still authenticates in the Hello exchange, and no rkey or
 * address leaves before it has (the connection's remote access stays off
 * until then, rdma.h).  Layout (docs/protocol.md, "Connect data"): "RDMG",
 * a version byte (1), the id's length n (1..CONNHINT_ID_MAX), the id's n
 * bytes; an id too long for it is not named (the source then registers in
 * the connection's own PD after authentication, as before).
 */
#ifndef RDMIG_CONNHINT_H
#define RDMIG_CONNHINT_H

#include <stddef.h>
#include <stdint.h>

#define CONNHINT_ID_MAX 46

/*
 * Writes the hint for id into buf (at least 6 + CONNHINT_ID_MAX bytes): its
 * length, or 0 when id is no migration id (migration_id_valid()) or too long.
 */
size_t connhint_make(const char *id, uint8_t *buf, size_t size);

/*
 * The id named in data (len bytes, trailing zero padding allowed) into id
 * (at least CONNHINT_ID_MAX + 1 bytes): 0, or -EINVAL when data is no hint
 * (another layout or version, a bad length, bytes other than zeros after
 * the id, an id that is no migration id); id is then undefined.
 */
int connhint_parse(const void *data, size_t len, char *id, size_t size);

#endif
