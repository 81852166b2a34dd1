#!/bin/bash
# A page source that fails (an error, gone for good, a fetch that never
# completes, wrong data): the stand-in is killed before it can read a page
# that was never installed, never sees a wrong byte, and rdmig-dest reports
# the error and exits non-zero.
. "$(dirname "$0")/lib.sh"
plan 20

mkimage "$T/img" --size 64M
n=0
for inj in "fail-after=40,delay=1000" "gone-after=30,delay=1000" "hang-after=30" "corrupt-after=20,verify"; do
	n=$((n + 1))
	extra=()
	case $inj in hang-*) extra=(--fetch-timeout 1) ;; esac
	start_dest "$T/dest$n.log" -D "$T/img" --local --inject "$inj" "${extra[@]}"
	timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 4 --access random >"$T/standin$n.out" 2>&1
	rc=$?
	wait_dest
	check "$inj: stand-in stopped (killed)" eval "test $rc -eq 4 && grep -q 'killed by signal 9' '$T/standin$n.out'"
	check "$inj: stand-in never saw a wrong byte" eval "! grep -q 'MISMATCH\|mismatches [1-9]' '$T/standin$n.out'"
	check "$inj: rdmig-dest exits 1" test "$code" -eq 1
	check "$inj: rdmig-dest reports the failure" grep -q "migration failed for this process" "$T/dest$n.log"
	check "$inj: summary says failed" test "$(field "$T/dest$n.log" status)" = failed
	[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin$n.out"; diag_file "$T/dest$n.log"; }
	grep -E "error: pid .*stopping|verification" "$T/dest$n.log" | head -2 | sed 's/^/# /'
done
finish
