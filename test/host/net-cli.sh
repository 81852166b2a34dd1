#!/bin/bash
# rdmig-dest's network options: --source needs --migration-id and
# --secret-file, --local excludes it (exit 2), and the criu lazy-pages
# spelling --page-server --address H --port P works like --source H:P.
. "$(dirname "$0")/netlib.sh"
plan 14

mkdir "$T/d"
secret "$T/secret"
D=("$RDMIG_DEST" -D "$T/d")
"${D[@]}" --source 127.0.0.1:1 -t tcp --secret-file "$T/secret" >"$T/o1" 2>&1
check "--source without --migration-id exits 2" test $? -eq 2
check "... saying what is missing" grep -q -- "--source needs --migration-id and" "$T/o1"
"${D[@]}" --source 127.0.0.1:1 -t tcp -m m1 >"$T/o2" 2>&1
check "--source without --secret-file exits 2" test $? -eq 2
"${D[@]}" --local --source 127.0.0.1:1 -t tcp -m m1 --secret-file "$T/secret" >"$T/o3" 2>&1
check "--local with --source exits 2" test $? -eq 2
check "... saying to give exactly one page source" grep -q "give exactly one page source" "$T/o3"
"${D[@]}" --local --page-server --address 127.0.0.1 --port 1 -m m1 --secret-file "$T/secret" >"$T/o4" 2>&1
check "--local with --address exits 2" test $? -eq 2
"${D[@]}" --address 127.0.0.1 --port 70000 -m m1 --secret-file "$T/secret" >"$T/o5" 2>&1
check "--port out of range exits 2" test $? -eq 2
"${D[@]}" --source 127.0.0.1:1 -t carrier-pigeon -m m1 --secret-file "$T/secret" >"$T/o6" 2>&1
check "an unknown transport exits 2" test $? -eq 2
check "no socket or file left behind by the refusals" no_images "$T/d"
check "... nor a socket" test -z "$(ls -A "$T/d")"

# The criu lazy-pages spelling against a real source.
mkimage "$T/src" --size 16M
mkdir "$T/dst"
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --once
start_dest "$T/dest.log" -D "$T/dst" --page-server --address 127.0.0.1 --port "$src_port" \
	-t tcp --migration-id m1 --secret-file "$T/secret"
check "--page-server --address --port: rdmig-dest connects and gets the images" \
	grep -q "migration m1, source 127.0.0.1:$src_port: received 5 image files" "$T/dest.log"
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "... the stand-in verifies every page" eval "test $rc -eq 0 && standin_ok '$T/standin.out' 4096"
check "... rdmig-dest exits 0" test "$code" -eq 0
wait_pid "$src_pid" 20
check "... rdmig-source --once exits 0" test "$code" -eq 0
[ "$tap_failed" -eq 0 ] || { for f in "$T"/o*; do diag_file "$f"; done; diag_file "$T/dest.log"; }
finish
