#!/bin/bash
# 64 MiB image, local page source, 4 threads reading sequentially: every byte
# verified, rdmig-dest exits 0 and its counts match the images.
. "$(dirname "$0")/lib.sh"
plan 9

mkimage "$T/img" --size 64M
start_dest "$T/dest.log" -D "$T/img" --local
check "rdmig-dest reports ready on --status-fd" test -n "$dest_pid"
check "the socket is in the images dir" test -S "$T/img/lazy-pages.socket"
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 4 --access seq >"$T/standin.out" 2>&1
rc=$?
check "stand-in exits 0" test "$rc" -eq 0
check "every page verified, no mismatch" standin_ok "$T/standin.out" 16384
wait_dest
check "rdmig-dest exits 0" test "$code" -eq 0
check "summary says ok" test "$(field "$T/dest.log" status)" = ok
check "lazy pages match the images" test "$(field "$T/dest.log" lazy)" -eq "$(standin_lazy "$T/standin.out")"
check "every lazy page installed, none dropped" consistent "$T/dest.log"
check "nothing dropped" test "$(field "$T/dest.log" dropped)" -eq 0
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin.out"; diag_file "$T/dest.log"; }
grep -o "summary: .*" "$T/dest.log" | sed 's/^/# /'
grep "pages .* verified" "$T/standin.out" | sed 's/^/# /'
finish
