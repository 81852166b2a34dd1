#!/bin/bash
# rdmig-dest's images dir already holds a file the source sends: a clear
# error, exit 1, the file not overwritten; the source keeps its checkpoint
# and serves a destination with a clean dir afterwards.
. "$(dirname "$0")/netlib.sh"
plan 13

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

# The restore fails on the destination (a zombie the images do not know):
# the processes are stopped, and the source hears why and keeps its checkpoint.
mkdir "$T/dst3"
sum0=$(dir_sum "$T/src")
start_source "$T/source3.log" -m "m1:$T/src:$T/secret" --once
# shellcheck disable=SC2046
start_dest "$T/dest3.log" -D "$T/dst3" $(net_args m1 "$T/secret") --drain-depth 1 --drain-chunk 4K
timeout 60 "$RDMIG_STANDIN" -D "$T/dst3" --threads 2 --zombie 9999 >"$T/standin3.out" 2>&1
rc=$?
wait_dest
check "unknown zombie: rdmig-dest exits 1 naming it" \
	eval "test $code -eq 1 && grep -q 'zombie pid 9999 is not in the images' '$T/dest3.log'"
check "... the stand-in fails and never saw a wrong byte" \
	eval "test $rc -ne 0 && never_wrong '$T/standin3.out'"
check "... the source hears the restore failed and keeps its checkpoint" \
	grep -q "the destination aborted: .*(restore failed); keeping the checkpoint" "$T/source3.log"
check "... which is untouched, and the source still serves it" \
	eval "test $(dir_sum "$T/src") = $sum0 && alive $src_pid"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/dest.log"
	diag_file "$T/source.log"
	diag_file "$T/dest2.log"
	diag_file "$T/dest3.log"
	diag_file "$T/source3.log"
}
finish
