/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * api_glue: rdmig-source's side of the agents' API (common/api.h,
 * docs/api.md).  Starts migrations of images already dumped or of a
 * running pid (the agent runs criu dump into <images-root>/<id>, see
 * criurun.h), reports them, aborts them and rolls them back (criu restore
 * on the source); the destination still connects to the source's listener
 * exactly as for a --migration given on the command line.
 *
 * State mapping (src_mig_state -> api_state): dumping -> dumping, ready
 * and serving -> serving (images mapped; waiting for or serving the
 * destination), done -> done, failed -> failed, aborted -> aborted,
 * restoring (rollback) -> restoring, rolled back -> rolled_back.
 */
#ifndef RDMIG_SRC_API_GLUE_H
#define RDMIG_SRC_API_GLUE_H

#include "agent.h"

struct src_api_opts {
	const char *socket_path; /* UNIX socket, or NULL */
	const char *tcp;	 /* "host:port" (already checked), or NULL */
	const char *group;	 /* --api-group, or NULL: the socket is root's only */
	/* The TCP listener's TLS (api_config's tls, allow, nallow, insecure_tcp). */
	struct ssl_ctx_st *tls;
	const char *const *allow;
	size_t nallow;
	bool insecure_tcp;
	unsigned int test_secret_delay_ms; /* --test-secret-delay (api_config) */
};

/*
 * Serves the API on a->base.  -EADDRINUSE: another agent listens on the
 * socket; -EEXIST: the path exists and is not a socket.
 */
int src_api_start(struct src_agent *a, const struct src_api_opts *o);

/* Stops serving; never from inside an API callback.  Fine without an API. */
void src_api_stop(struct src_agent *a);

#endif
