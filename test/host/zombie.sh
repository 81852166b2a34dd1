#!/bin/bash
# Zombies: announced as -pid, no fd.  One from the images is accepted; one
# the images do not know makes rdmig-dest reject the restore, stop the
# processes, and never let them read a wrong byte.
. "$(dirname "$0")/lib.sh"
plan 10

mkimage "$T/img" --size 16M --tasks 3 --zombies 1
start_dest "$T/dest.log" -D "$T/img" --local
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "stand-in announced the image's zombie" grep -q "announcing zombie 4244" "$T/standin.out"
check "stand-in exits 0" test "$rc" -eq 0
check "rdmig-dest exits 0" test "$code" -eq 0
check "two processes and one zombie served" test "$(field "$T/dest.log" tasks)" -eq 2 -a "$(field "$T/dest.log" zombies)" -eq 1
check "counts consistent" consistent "$T/dest.log"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin.out"; diag_file "$T/dest.log"; }

# A slow source keeps pages missing when the bad record arrives.
start_dest "$T/dest2.log" -D "$T/img" --local --inject delay=20000
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 2 --zombie 9999 >"$T/standin2.out" 2>&1
rc=$?
wait_dest
check "rdmig-dest names the unknown zombie" grep -q "zombie pid 9999 is not in the images" "$T/dest2.log"
check "rdmig-dest exits non-zero" test "$code" -ne 0
check "the restore fails for the stand-in" test "$rc" -ne 0
check "the stand-in never saw a wrong byte" eval "! grep -q 'MISMATCH\|mismatches [1-9]' '$T/standin2.out'"
check "no process was left running" eval "! pgrep -f 'rdmig-standin -D $T/img' >/dev/null"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin2.out"; diag_file "$T/dest2.log"; }
finish
