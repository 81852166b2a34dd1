#!/bin/bash
# A runc container with a time namespace and a monotonic offset, one guest
# (lib/container-ns.sh).  Debian bookworm's runc 1.1.5 knows no time
# namespace (runc 1.2 brought it): the test asserts runc's refusal, as
# design.md §12 and operations.md §1.4 record it.  A runc that runs it
# must keep CLOCK_MONOTONIC going forward across runc checkpoint and runc
# restore (criu restores the namespace's offsets).
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
tap_plan 2
rxe_require_cmds runc criu python3
tap_run --timeout 300 -- sh -c "$top/test/rxe/lib/container-ns.sh"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "the time-namespace run exits 0"
tap_diag "$(grep -h '^ns: ' <<<"$out")"
if grep -q '^ns: runc run failed: ' <<<"$out"; then
	tap_like "$out" '^ns: runc run failed: runc run failed: namespace \{\\"time\\" \\"\\"\} does not exist$' \
		"runc refuses a time namespace as recorded (design.md §12): namespace {\"time\" \"\"} does not exist"
else
	before=$(sed -n 's/^ns: restored; .* (before the checkpoint \([0-9.]*\))$/\1/p' <<<"$out")
	after=$(sed -n 's/^ns: restored; CLOCK_MONOTONIC inside \([0-9.]*\) .*/\1/p' <<<"$out")
	awk -v a="${after:-0}" -v b="${before:-x}" 'BEGIN { exit !(b != "x" && a + 0 >= b + 0) }'
	tap_ok $? "CLOCK_MONOTONIC inside does not go back across checkpoint and restore ($before -> $after)"
fi
tap_done
