#!/bin/bash
# Over TCP: 64 MiB image, --verify on both sides, 4 threads faulting while
# the drain runs.  Every byte verified, both agents exit 0, counts match.
. "$(dirname "$0")/netlib.sh"
plan 16

mkimage "$T/src" --size 64M
mkdir "$T/dst"
secret "$T/secret"
sum0=$(dir_sum "$T/src")
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --verify --once
check "rdmig-source listens on a free port" test -n "$src_port"
# Two background requests of 64 KiB: the drain is still running when the threads fault.
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args m1 "$T/secret") --verify --drain-depth 2 \
	--drain-chunk 64K
check "rdmig-dest reports ready once the images are in" test -n "$dest_pid"
check "the images arrived (all but the lazy pages)" same_meta "$T/src" "$T/dst"
check "they came with page checksums" grep -q "range tables, .* lazy, with page checksums" "$T/dest.log"
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 4 --access random >"$T/standin.out" 2>&1
rc=$?
check "stand-in exits 0" test "$rc" -eq 0
check "every page verified, no mismatch" standin_ok "$T/standin.out" 16384
wait_dest
log=$T/dest.log
check "rdmig-dest exits 0" test "$code" -eq 0
check "summary says ok" test "$(field "$log" status)" = ok
check "lazy pages match the images" test "$(field "$log" lazy)" -eq "$(standin_lazy "$T/standin.out")"
check "every lazy page installed (fault + drain = lazy, left=0, none dropped)" \
	eval "consistent '$log' && test \"\$(field '$log' dropped)\" -eq 0"
check "faults served over the network while the drain ran" \
	test "$(field "$log" fault)" -gt 0 -a "$(field "$log" drain)" -gt 0
check "the source acknowledged Done" grep -q "the source confirmed every page arrived" "$log"
wait_pid "$src_pid" 20
check "rdmig-source --once exits 0" test "$code" -eq 0
lazy=$(field "$log" lazy)
check "the source logs the migration done with the dest's page count" \
	grep -q "migration m1 done: the destination installed $lazy pages" "$T/source.log"
check "... and every range verified by checksum" \
	eval "grep -q 'installed $lazy pages (.*), [1-9][0-9]* ranges verified' '$T/source.log'"
check "the source's images dir is untouched" test "$(dir_sum "$T/src")" = "$sum0"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin.out"; diag_file "$log"; diag_file "$T/source.log"; }
grep -o "summary: .*" "$log" | sed 's/^/# /'
grep "migration m1 done" "$T/source.log" | sed 's/^.*info: /# /'
finish
