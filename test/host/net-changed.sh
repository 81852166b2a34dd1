#!/bin/bash
# Pages files that change while served (finding 6 of the security review):
# a pages file truncated under a destination that is fetching, one renamed
# over by another file, and one that is a FIFO.  Each time that migration
# fails, its error naming the file; rdmig-source lives, answers
# /v1/health, and a last migration still completes.  Binaries: RDMIG_CTL
# besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 11

mkimage "$T/img" --size 16M
for m in m1 m2 m3 m4; do cp -a "$T/img" "$T/$m" && mkdir "$T/dst-$m"; done
secret "$T/secret"
sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")
start_source "$T/source.log" --api-socket "$sock" --images-root "$T"
wait_log "$T/source.log" "api: serving on $sock" >/dev/null

json() { "${CTL[@]}" status "$1" --json 2>/dev/null; }
healthy() { "${CTL[@]}" health --json 2>/dev/null | grep -q '"status": *"ok"'; }
# serve ID: start ID and have a destination take its images (it then waits
# for a restore that never comes); its pid in $dpid.
serve() {
	"${CTL[@]}" migrate --images "$T/$1" --secret-file "$T/secret" --id "$1" >/dev/null 2>&1
	wait_state "$1" serving >/dev/null
	# shellcheck disable=SC2046
	"$RDMIG_DEST" -D "$T/dst-$1" $(net_args "$1" "$T/secret") >"$T/dest-$1.log" 2>&1 &
	dpid=$!
	track "$dpid"
	wait_log "$T/dest-$1.log" "listening on .*lazy-pages.socket" 20 >/dev/null
}

serve m1
truncate -s 8192 "$T/m1/pages-1.img"
check "a pages file truncated while served: that migration fails" wait_state m1 failed
check "... its error names the file" eval "json m1 | grep -q '\"error\": \".*$T/m1/pages-1.img changed while served'"
check "... and rdmig-source is alive and healthy" eval "alive $src_pid && healthy"
check "... its destination was told" \
	wait_log "$T/dest-m1.log" 'the source aborted: pages file .*pages-1.img changed while served'
kill "$dpid" 2>/dev/null
wait "$dpid" 2>/dev/null

serve m2
cp "$T/img/pages-1.img" "$T/m2/pages-1.new" && mv "$T/m2/pages-1.new" "$T/m2/pages-1.img"
check "a pages file renamed over while served: that migration fails" wait_state m2 failed
check "... its error names the file, replaced" \
	eval "json m2 | grep -q 'pages-1.img changed while served (replaced by another file)'"
kill "$dpid" 2>/dev/null
wait "$dpid" 2>/dev/null

rm "$T/m3/pages-1.img" && mkfifo "$T/m3/pages-1.img"
"${CTL[@]}" migrate --images "$T/m3" --secret-file "$T/secret" --id m3 >"$T/m3.out" 2>&1
# The images directory is checked before the start is accepted (only root's
# regular files are served): a FIFO is refused at once, never opened.
check "a pages file that is a FIFO: that migration is refused at once" \
	eval "! '${CTL[0]}' --socket '$sock' status m3 >/dev/null 2>&1 && grep -q 'pages-1.img' '$T/m3.out'"
check "... naming the file in the log" grep -q "m3: .*pages-1.img is not a regular file" "$T/source.log"

"${CTL[@]}" migrate --images "$T/m4" --secret-file "$T/secret" --id m4 >/dev/null 2>&1
wait_state m4 serving >/dev/null
# shellcheck disable=SC2046
start_dest "$T/dest-m4.log" -D "$T/dst-m4" $(net_args m4 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst-m4" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "another migration then completes: every page verified, exit 0" \
	eval "test $rc -eq 0 && test $code -eq 0 && standin_ok '$T/standin.out' 4096"
check "... the source says done" wait_state m4 done
check "rdmig-source ran through all of it" alive "$src_pid"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/source.log" 40; diag_file "$T/dest-m1.log" 10; }
finish
