#!/bin/bash
# One post-copy variant of the stand-in (fork, mremap, madvise, munmap)
# against a slow source, so the change happens while pages are missing.
. "$(dirname "$0")/lib.sh"
variant=${1:?usage: variant.sh fork|mremap|madvise|munmap}
plan 7

mkimage "$T/img" --size 64M
start_dest "$T/dest.log" -D "$T/img" --local --inject delay=4000 --drain-depth 2
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 4 --access mixed "--$variant" >"$T/standin.out" 2>&1
rc=$?
wait_dest
log=$T/dest.log
check "stand-in exits 0" test "$rc" -eq 0
check "no mismatch anywhere" eval "! grep -q MISMATCH '$T/standin.out' && grep -q 'mismatches 0' '$T/standin.out'"
check "rdmig-dest exits 0" test "$code" -eq 0
check "summary says ok" test "$(field "$log" status)" = ok
case $variant in
fork)
	check "the fork child verified every page" grep -q "fork child: pages 16384 verified, mismatches 0" "$T/standin.out"
	check "the fork was served as a second task" test "$(field "$log" forks)" -eq 1 -a "$(field "$log" tasks)" -eq 2
	;;
mremap)
	check "the moved range was verified" grep -q "moved 0x" "$T/standin.out"
	check "the remap event was seen" test "$(field "$log" remaps)" -ge 1
	;;
madvise)
	check "the range read as zero after MADV_DONTNEED" grep -q "MADV_DONTNEED 0x" "$T/standin.out"
	check "the remove event was seen" test "$(field "$log" removes)" -ge 1
	;;
munmap)
	check "the range was unmapped" grep -q "unmapped 0x" "$T/standin.out"
	check "the unmap event was seen" test "$(field "$log" unmaps)" -ge 1
	;;
*)
	echo "Bail out! unknown variant $variant"
	exit 1
	;;
esac
check "counts consistent" consistent "$log"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin.out"; diag_file "$log"; }
grep -o "summary: .*" "$log" | sed 's/^/# /'
finish
