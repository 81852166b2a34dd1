// SPDX-License-Identifier: GPL-2.0-or-later
#include "rcqp.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "log.h"

/*
 * The ACK timeout rdma_cm gives RoCE connections (4.096 us << 17, about
 * 0.5 s: its packet life time plus one), and retries as in rdma.c's
 * connection parameters (7 RNR retries: forever).
 */
#define RCQP_TIMEOUT   17
#define RCQP_RETRY     7
#define RCQP_RNR_RETRY 7
#define RCQP_MIN_RNR   12 /* 0.64 ms */
#define RCQP_HOP_LIMIT 64

/* The GID a RoCE v2 port gives addr: an IPv4 address is mapped into IPv6. */
static int addr_gid(const struct sockaddr *addr, uint8_t gid[RCQP_GID_LEN])
{
	memset(gid, 0, RCQP_GID_LEN);
	if (addr->sa_family == AF_INET) {
		gid[10] = 0xff;
		gid[11] = 0xff;
		memcpy(gid + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		return 0;
	}
	if (addr->sa_family == AF_INET6) {
		memcpy(gid, &((const struct sockaddr_in6 *)addr)->sin6_addr, RCQP_GID_LEN);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static uint8_t clamp_u8(int v)
{
	return (uint8_t)(v < 1 ? 1 : v > 255 ? 255 : v);
}

int rcqp_local(struct ibv_context *ctx, uint8_t port, const struct sockaddr *addr,
	       struct rcqp_local *out)
{
	const char *dev = ibv_get_device_name(ctx->device);
	struct ibv_port_attr pa;
	struct ibv_device_attr da;
	struct ibv_gid_entry ge;
	uint8_t want[RCQP_GID_LEN];
	int ret, i;

	memset(out, 0, sizeof(*out));
	ret = addr_gid(addr, want);
	if (ret < 0)
		return ret;
	ret = ibv_query_port(ctx, port, &pa);
	if (ret) {
		log_err("ibv_query_port(%s port %u): %s", dev, port, strerror(ret));
		return -ret;
	}
	ret = ibv_query_device(ctx, &da);
	if (ret) {
		log_err("ibv_query_device(%s): %s", dev, strerror(ret));
		return -ret;
	}
	for (i = 0; i < pa.gid_tbl_len && i < 256; i++) {
		/* Unused entries fail (ENODATA): skip them. */
		if (ibv_query_gid_ex(ctx, port, (uint32_t)i, &ge, 0) != 0)
			continue;
		if (ge.gid_type == IBV_GID_TYPE_ROCE_V2 &&
		    memcmp(ge.gid.raw, want, RCQP_GID_LEN) == 0)
			break;
	}
	if (i >= pa.gid_tbl_len || i >= 256) {
		log_err("%s port %u has no RoCE v2 GID for the side connection's address", dev,
			port);
		return -ENOENT;
	}
	out->port = port;
	out->gid_index = (uint8_t)i;
	out->init_depth = clamp_u8(da.max_qp_init_rd_atom);
	memcpy(out->addr.gid, want, RCQP_GID_LEN);
	out->addr.mtu = pa.active_mtu;
	out->addr.rd_atomic = clamp_u8(da.max_qp_rd_atom);
	return 0;
}

void rcqp_path(const struct rcqp_local *me, const struct rcqp_addr *peer, struct rcqp_path *out)
{
	memset(out, 0, sizeof(*out));
	out->port = me->port;
	out->gid_index = me->gid_index;
	memcpy(out->dgid, peer->gid, RCQP_GID_LEN);
	out->mtu = (enum ibv_mtu)(peer->mtu < me->addr.mtu ? peer->mtu : me->addr.mtu);
	out->init_depth =
	    clamp_u8(me->init_depth < peer->rd_atomic ? me->init_depth : (int)peer->rd_atomic);
	out->resp_res = clamp_u8((int)me->addr.rd_atomic);
}

static int qp_modify(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask, const char *to)
{
	int ret = ibv_modify_qp(qp, a, mask);

	if (ret) {
		log_err("ibv_modify_qp (QP %u to %s): %s", qp->qp_num, to, strerror(ret));
		return -ret;
	}
	return 0;
}

int rcqp_init(struct ibv_qp *qp, uint8_t port, unsigned int access)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_INIT,
	    .pkey_index = 0,
	    .port_num = port,
	    .qp_access_flags = access,
	};

	return qp_modify(
	    qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, "INIT");
}

int rcqp_rtr(struct ibv_qp *qp, const struct rcqp_path *p, uint32_t peer_qpn, uint32_t peer_psn)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_RTR,
	    .path_mtu = p->mtu,
	    .dest_qp_num = peer_qpn & 0xffffff,
	    .rq_psn = peer_psn & 0xffffff,
	    .max_dest_rd_atomic = p->resp_res,
	    .min_rnr_timer = RCQP_MIN_RNR,
	};

	a.ah_attr.is_global = 1;
	a.ah_attr.port_num = p->port;
	a.ah_attr.grh.sgid_index = p->gid_index;
	a.ah_attr.grh.hop_limit = RCQP_HOP_LIMIT;
	memcpy(a.ah_attr.grh.dgid.raw, p->dgid, RCQP_GID_LEN);
	return qp_modify(qp, &a,
			 IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			     IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
			 "RTR");
}

int rcqp_rts(struct ibv_qp *qp, const struct rcqp_path *p, uint32_t my_psn)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_RTS,
	    .timeout = RCQP_TIMEOUT,
	    .retry_cnt = RCQP_RETRY,
	    .rnr_retry = RCQP_RNR_RETRY,
	    .sq_psn = my_psn & 0xffffff,
	    .max_rd_atomic = p->init_depth,
	};

	return qp_modify(qp, &a,
			 IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			     IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
			 "RTS");
}
