#!/bin/bash
# Option handling of test/rxe/run; boots nothing.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
tap_plan 8

tap_run
tap_is "$RUN_STATUS" 2 "no command: usage error"
tap_one_line "$RUN_ERR" "no command: one line on stderr"

tap_run --bogus -- true
tap_is "$RUN_STATUS" 2 "unknown option: usage error"

tap_run --pair -- true
tap_like "$RUN_ERR" 'needs --source' "--pair without --source is refused"

tap_run --timeout abc -- true
tap_is "$RUN_STATUS" 2 "--timeout wants a number"

tap_run --help
tap_like "$RUN_OUT" '^usage: test/rxe/run' "--help prints the usage"

if compgen -G '/sys/class/infiniband/*' >/dev/null; then
	tap_skip "--native without a device fails" "this host has an RDMA device"
	tap_skip "--native without a device: one line" "this host has an RDMA device"
else
	tap_run --native -- true
	tap_like "$RUN_ERR" 'no RDMA device' "--native without a device fails clearly"
	tap_one_line "$RUN_ERR" "--native without a device: one line, status $RUN_STATUS"
fi
tap_done
