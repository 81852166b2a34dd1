#!/bin/bash
# shellcheck disable=SC2016 # the commands expand in the guest
# Host-pair topology (e): two guests on a private socket link. The dest
# pings the source, runs rping against it, reads a file the source put in
# the shared directory and runs ib_read_bw 64 KiB against it.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
tap_plan 10

tap_run --timeout 400 --pair --source '
	echo "env role=$RDMIG_ROLE addr=$RDMIG_ADDR peer=$RDMIG_PEER_ADDR dev=$RDMIG_RXE_DEV"
	echo "hello from $(hostname)" >"$RDMIG_SHARED_DIR/hello"
	rping -s -a "$RDMIG_ADDR" -C 10 -v || exit 10
	ib_read_bw -d "$RDMIG_RXE_DEV" -F -s 65536 -n 500 || exit 11' \
	--dest '
	echo "env role=$RDMIG_ROLE addr=$RDMIG_ADDR peer=$RDMIG_PEER_ADDR source=$RDMIG_SOURCE_ADDR"
	busybox ping -c 3 "$RDMIG_SOURCE_ADDR" || exit 20
	ok=0
	for i in $(seq 20); do
		rping -c -a "$RDMIG_SOURCE_ADDR" -C 10 -v && { ok=1; break; }
		sleep 0.5
	done
	[ $ok = 1 ] || exit 21
	cat "$RDMIG_SHARED_DIR/hello" || exit 22
	for i in $(seq 20); do
		ib_read_bw -d "$RDMIG_RXE_DEV" -F -s 65536 -n 500 "$RDMIG_SOURCE_ADDR" && exit 0
		sleep 0.5
	done
	exit 23'
tap_is "$RUN_STATUS" 0 "both commands succeed"
tap_unlike "$RUN_ERR" "^rxe:" "nothing from the test bed on stderr"
tap_like "$RUN_OUT" '^\[source\] env role=source addr=192\.0\.2\.1 peer=192\.0\.2\.2 dev=rxe0$' "source environment"
tap_like "$RUN_OUT" '^\[dest\] env role=dest addr=192\.0\.2\.2 peer=192\.0\.2\.1 source=192\.0\.2\.1$' "dest environment"
tap_like "$RUN_OUT" '^\[dest\] 3 packets transmitted, 3 packets received' "dest pings the source over eth0"
tap_like "$RUN_OUT" '^\[dest\] ping data: rdma-ping-9: ' "rping client completed 10 pings"
tap_like "$RUN_OUT" '^\[source\] server ping data: rdma-ping-9: ' "rping server saw 10 pings"
tap_like "$RUN_OUT" '^\[dest\] hello from rxe-source$' "shared directory carries a file from source to dest"
bw=$(awk '$1 == "[dest]" && $2 == 65536 && NF >= 6 { print $5; exit }' <<<"$RUN_OUT")
tap_diag "pair: ib_read_bw 64 KiB ${bw:-?} MB/s"
[[ $bw =~ ^[0-9]+\.[0-9]+$ ]] && awk -v v="$bw" 'BEGIN { exit !(v > 0) }'
tap_ok $? "ib_read_bw between the guests reports a bandwidth (${bw:-none} MB/s)"
tap_cmp "$RUN_SECS" -lt 120 "pair run stays short"
tap_done
