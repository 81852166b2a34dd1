#!/bin/bash
# shellcheck disable=SC2016 # the commands expand in the guest
# One boot of the one-guest topology: the rxe device, the environment and
# file sharing the tests rely on, CRIU's prerequisites, exit status (a, b, d).
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
tap_plan 13

project=$(git -C "$TAP_RXE_DIR" rev-parse --show-toplevel)
mkdir -p "$project/.cache/rxe"
scratch=$(mktemp -d "$project/.cache/rxe/t01.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
token=$RANDOM$RANDOM
cd "$scratch" || exit 1

export RXE_T01_TOKEN=$token
tap_run --timeout 300 -- '
	echo "cwd=$(pwd)"
	echo "token=$RXE_T01_TOKEN"
	echo "env=$RDMIG_ADDR $RDMIG_RXE_DEV $RDMIG_RXE_NETDEV $RDMIG_RXE_GUEST"
	ibv_devices
	rdma link show
	ibv_devinfo -d "$RDMIG_RXE_DEV"
	criu check 2>/dev/null
	ip -br link show lo
	echo "written by the guest $RXE_T01_TOKEN" >from-guest
	echo "to stderr" >&2
	exit 3'

tap_is "$RUN_STATUS" 3 "exit status 3 of the command comes back"
tap_like "$RUN_OUT" '^[[:space:]]+rxe0[[:space:]]+[0-9a-f]{16}$' "ibv_devices lists rxe0"
tap_like "$RUN_OUT" '^link rxe0/1 state ACTIVE physical_state LINK_UP netdev veth0' "rdma link: rxe0 ACTIVE on veth0"
tap_like "$RUN_OUT" 'state:[[:space:]]+PORT_ACTIVE' "ibv_devinfo: PORT_ACTIVE"
tap_like "$RUN_OUT" 'active_mtu:[[:space:]]+4096' "MTU 9000 gives IB MTU 4096"
tap_like "$RUN_OUT" '^env=192\.0\.2\.1 rxe0 veth0 1$' "RDMIG_ADDR, RDMIG_RXE_DEV, RDMIG_RXE_NETDEV set"
tap_is "$(grep '^cwd=' <<<"$RUN_OUT")" "cwd=$scratch" "command runs in the caller's cwd"
tap_is "$(grep '^token=' <<<"$RUN_OUT")" "token=$token" "caller's environment reaches the command"
tap_like "$RUN_OUT" '^Looks good' "criu check passes in the guest"
tap_like "$RUN_OUT" '^lo +[A-Z]+ +.*<LOOPBACK,UP' "lo is up"
tap_is "$(cat "$scratch/from-guest" 2>/dev/null)" "written by the guest $token" "guest writes in the project tree reach the host"
tap_is "$RUN_ERR" "to stderr" "stderr stays on stderr, no test-bed noise"
tap_unlike "$RUN_OUT" 'to stderr' "stderr does not leak into stdout"
tap_done
