#!/bin/bash
# rdmig-dest's images dir already holds a file the source sends: a clear
# error, exit 1, the file not overwritten; the source keeps its checkpoint
# and serves a destination with a clean dir afterwards.
. "$(dirname "$0")/netlib.sh"
plan 9

mkimage "$T/src" --size 16M
secret "$T/secret"
mkdir "$T/dst" "$T/dst2"
echo "precious, not an image" >"$T/dst/pstree.img"
sum0=$(md5sum <"$T/dst/pstree.img")
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --once
# shellcheck disable=SC2046
timeout 30 "$RDMIG_DEST" -D "$T/dst" $(net_args m1 "$T/secret") --connect-timeout 5 \
	>"$T/dest.log" 2>&1
code=$?
check "rdmig-dest exits 1" test "$code" -eq 1
check "... naming the file in the way" \
	grep -q "cannot create $T/dst/pstree.img: File exists (the images directory must start empty)" "$T/dest.log"
check "... and that nothing was restored" grep -q "nothing was restored" "$T/dest.log"
check "the file was not overwritten" test "$(md5sum <"$T/dst/pstree.img")" = "$sum0"
check "the source hears why and keeps its checkpoint" \
	grep -q "the destination aborted: cannot store the images (.*); keeping the checkpoint" "$T/source.log"
check "... and keeps serving" alive "$src_pid"

# shellcheck disable=SC2046
start_dest "$T/dest2.log" -D "$T/dst2" $(net_args m1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst2" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "a clean dir then: every page verified" eval "test $rc -eq 0 && standin_ok '$T/standin.out' 4096"
check "... rdmig-dest exits 0" test "$code" -eq 0
wait_pid "$src_pid" 20
check "... rdmig-source --once exits 0" test "$code" -eq 0
[ "$tap_failed" -eq 0 ] || { diag_file "$T/dest.log"; diag_file "$T/source.log"; diag_file "$T/dest2.log"; }
finish
