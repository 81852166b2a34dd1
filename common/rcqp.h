/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rcqp: RC queue pairs connected by hand, without rdma_cm.
 *
 * What rdma_cm computes from its MADs (the peer's QP number and PSN, the
 * address vector, the path MTU) comes here from the peer itself, over a
 * channel the caller authenticated (protocol.md §7.4, RcConnect).  Only
 * RoCE v2 is handled: the local address's GID is looked up in the port's
 * GID table, and the peer is reached through a GRH to its GID.
 *
 * Nothing is allocated here; the caller owns the queue pairs.  Functions
 * return 0 or a negative errno and log the failing call.
 */
#ifndef RDMIG_RCQP_H
#define RDMIG_RCQP_H

#include <infiniband/verbs.h>
#include <stdint.h>
#include <sys/socket.h>

#define RCQP_GID_LEN 16

/* What one side tells the other about its queue pair. */
struct rcqp_addr {
	uint32_t qpn;
	uint32_t psn; /* its first send PSN */
	uint8_t gid[RCQP_GID_LEN];
	uint32_t mtu;	    /* enum ibv_mtu of its port */
	uint32_t rd_atomic; /* READs it answers at once */
};

/* One end's place: its port, the GID index of its address, its limits. */
struct rcqp_local {
	uint8_t port;
	uint8_t gid_index;
	uint8_t init_depth;    /* READs it may have outstanding */
	struct rcqp_addr addr; /* qpn and psn are the caller's */
};

/* The path from a local end to a peer, for RTR and RTS. */
struct rcqp_path {
	uint8_t port;
	uint8_t gid_index;
	uint8_t dgid[RCQP_GID_LEN];
	enum ibv_mtu mtu;
	uint8_t init_depth; /* our READs outstanding: at most what the peer answers */
	uint8_t resp_res;   /* the peer's READs we answer */
};

/*
 * Fills *out for the address addr (IPv4 or IPv6) on ctx's port: the RoCE v2
 * GID index and GID of addr, the port's active MTU, the device's READ
 * depths.  -ENOENT: no RoCE v2 GID for that address on the port.
 */
int rcqp_local(struct ibv_context *ctx, uint8_t port, const struct sockaddr *addr,
	       struct rcqp_local *out);

/* The path from me to peer (whose fields were validated by ctrl.c). */
void rcqp_path(const struct rcqp_local *me, const struct rcqp_addr *peer, struct rcqp_path *out);

/* RESET to INIT on port, with the remote access given (e.g. IBV_ACCESS_REMOTE_READ). */
int rcqp_init(struct ibv_qp *qp, uint8_t port, unsigned int access);
/* INIT to RTR towards the peer's queue pair. */
int rcqp_rtr(struct ibv_qp *qp, const struct rcqp_path *p, uint32_t peer_qpn, uint32_t peer_psn);
/* RTR to RTS: my first PSN; retries as the rdma_cm path uses. */
int rcqp_rts(struct ibv_qp *qp, const struct rcqp_path *p, uint32_t my_psn);

#endif
