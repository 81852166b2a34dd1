#!/bin/bash
# A slow page source (3 ms per request, 2 background requests): the
# processes fault while the drain runs, with random and mixed access.
. "$(dirname "$0")/lib.sh"
plan 12

mkimage "$T/img" --size 32M --tasks 2
for access in random mixed; do
	start_dest "$T/dest-$access.log" -D "$T/img" --local --inject delay=3000 --drain-depth 2
	timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 4 --access "$access" >"$T/standin-$access.out" 2>&1
	rc=$?
	wait_dest
	log=$T/dest-$access.log
	check "$access: stand-in exits 0" test "$rc" -eq 0
	check "$access: both processes verified every page" test "$(grep -c 'pages 8192 verified, mismatches 0' "$T/standin-$access.out")" -eq 2
	check "$access: rdmig-dest exits 0" test "$code" -eq 0
	check "$access: faults served from the source during the drain" test "$(field "$log" fault)" -gt 0 -a "$(field "$log" drain)" -gt 0
	check "$access: fault latency measured" test "$(field "$log" timed)" -gt 0 -a "$(field "$log" fault_p50_us)" -gt 0
	check "$access: counts consistent" consistent "$log"
	[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin-$access.out"; diag_file "$log"; }
	grep -o "summary: .*" "$log" | sed 's/^/# /'
done
finish
