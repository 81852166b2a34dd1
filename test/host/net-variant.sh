#!/bin/bash
# A post-copy variant of the stand-in over TCP (fork, mremap, madvise,
# munmap, zombie), with a slow drain (one 4 KiB request at a time) so the
# change happens while pages are still on the source.  --verify on both sides.
. "$(dirname "$0")/netlib.sh"
variant=${1:?usage: net-variant.sh fork|mremap|madvise|munmap|zombie}
plan 9

slow=(--verify --drain-depth 1 --drain-chunk 4K --readahead 4)
secret "$T/secret"
mkdir "$T/dst"
case $variant in
zombie) mkimage "$T/src" --size 16M --tasks 3 --zombies 1 ;;
*) mkimage "$T/src" --size 64M ;;
esac
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --verify --once
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args m1 "$T/secret") "${slow[@]}"
args=(--threads 4 --access mixed)
[ "$variant" = zombie ] || args+=("--$variant")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" "${args[@]}" >"$T/standin.out" 2>&1
rc=$?
wait_dest
log=$T/dest.log
check "stand-in exits 0" test "$rc" -eq 0
check "no mismatch anywhere" eval "never_wrong '$T/standin.out' && grep -q 'mismatches 0' '$T/standin.out'"
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
zombie)
	check "the stand-in announced the image's zombie" grep -q "announcing zombie 4244" "$T/standin.out"
	check "two processes and one zombie served" \
		test "$(field "$log" tasks)" -eq 2 -a "$(field "$log" zombies)" -eq 1 -a \
		"$(grep -c 'pages 4096 verified, mismatches 0' "$T/standin.out")" -eq 2
	;;
*)
	echo "Bail out! unknown variant $variant"
	exit 1
	;;
esac
check "faults were served while pages were still missing" test "$(field "$log" fault)" -gt 0
check "counts consistent" consistent "$log"
wait_pid "$src_pid" 20
check "rdmig-source --once logs the migration done and exits 0" \
	eval "test $code -eq 0 && grep -q 'migration m1 done' '$T/source.log'"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin.out"; diag_file "$log"; diag_file "$T/source.log"; }
grep -o "summary: .*" "$log" | sed 's/^/# /'
finish
