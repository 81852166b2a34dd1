#!/bin/bash
# shellcheck disable=SC2016 # the commands expand in the guest
# perftest in one guest (f): ib_read_bw 64 KiB and ib_read_lat 4 KiB, server
# and client both on 192.0.2.1, i.e. through rxe's loopback on veth0.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
tap_plan 4

tap_run --timeout 300 -- '
	dev=$RDMIG_RXE_DEV
	ib_read_bw -d $dev -F -s 65536 -n 500 >/tmp/bw-server.log 2>&1 &
	for i in $(seq 20); do
		sleep 0.5
		ib_read_bw -d $dev -F -s 65536 -n 500 "$RDMIG_ADDR" && break
	done
	wait
	ib_read_lat -d $dev -F -s 4096 -n 1000 >/tmp/lat-server.log 2>&1 &
	for i in $(seq 20); do
		sleep 0.5
		ib_read_lat -d $dev -F -s 4096 -n 1000 "$RDMIG_ADDR" && break
	done
	wait'
tap_is "$RUN_STATUS" 0 "perftest commands succeed"
bw=$(awk '$1 == 65536 && NF >= 5 { print $4; exit }' <<<"$RUN_OUT")
lat=$(awk '$1 == 4096 && NF >= 6 { print $5; exit }' <<<"$RUN_OUT")
tap_diag "one guest: ib_read_bw 64 KiB ${bw:-?} MB/s, ib_read_lat 4 KiB typical ${lat:-?} us"
[[ $bw =~ ^[0-9]+\.[0-9]+$ ]] && awk -v v="$bw" 'BEGIN { exit !(v > 0) }'
tap_ok $? "ib_read_bw reports a bandwidth (${bw:-none} MB/s)"
[[ $lat =~ ^[0-9]+\.[0-9]+$ ]] && awk -v v="$lat" 'BEGIN { exit !(v > 0) }'
tap_ok $? "ib_read_lat reports a latency (${lat:-none} us)"
tap_like "$RUN_OUT" 'Mtu +: 4096\[B\]' "perftest runs at IB MTU 4096"
tap_done
