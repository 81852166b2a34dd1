#!/bin/bash
# SIGTERM of rdmig-source while a destination fetches a migration: the agent
# starts no new migration (503) but keeps serving until the destination has
# every page, then exits 0 by itself.  A second SIGTERM, or
# --shutdown-timeout, stops it at once, naming the migration it leaves.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 10
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")

# serve N LOG [args...]: a source (API socket $T/run/sN.sock, root $T/rootN)
# serving migration sN, and an rdmig-dest that authenticated for it and
# waits for its restorer (no stand-in yet): the migration is in progress.
serve() {
	local n=$1 log=$2 root=$T/root$1
	shift 2
	sock=$T/run/s$n.sock
	CTL=("$RDMIG_CTL" --socket "$sock")
	mkdir -p "$root/img" "$T/dst$n"
	mkimage "$root/img" --size 8M
	start_source "$log" --api-socket "$sock" --images-root "$root" "$@"
	wait_log "$log" "api: serving on" >/dev/null
	curl -s -o /dev/null --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
		-d "{\"id\":\"s$n\",\"images_dir\":\"$root/img\",\"secret\":\"base64:$sec64\"}" \
		http://localhost/v1/migrations
	wait_state "s$n" serving
	# shellcheck disable=SC2046
	start_dest "$T/dest$n.log" -D "$T/dst$n" $(net_args "s$n" "$T/secret")
	wait_log "$log" "destination authenticated" >/dev/null
}

serve 1 "$T/src1.log"
kill -TERM "$src_pid"
wait_log "$T/src1.log" "stopping once the 1 migration(s) in progress end" >/dev/null
sleep 1
check "SIGTERM with a destination fetching: the source stays, saying why" \
	eval "alive $src_pid && grep -q 'stopping once the 1 migration(s) in progress end; no new ones' '$T/src1.log'"
code=$(curl -s -o "$T/new.json" -w '%{http_code}' --unix-socket "$sock" -X POST \
	-H 'Content-Type: application/json' \
	-d "{\"id\":\"n1\",\"images_dir\":\"$T/root1/img\",\"secret\":\"base64:$sec64\"}" \
	http://localhost/v1/migrations)
check "... a new migration is refused: 503, the agent is stopping" \
	eval "test '$code' = 503 && grep -q 'the agent is stopping' '$T/new.json'"
timeout 60 "$RDMIG_STANDIN" -D "$T/dst1" --threads 2 >"$T/standin1.out" 2>&1
rc=$?
wait_dest
check "the destination still gets every page (verified), rdmig-dest exits 0" \
	eval "test $rc -eq 0 && standin_ok '$T/standin1.out' 2048 && test $code -eq 0"
wait_pid "$src_pid" 20
check "then the source exits 0 by itself" test "$code" -eq 0
check "... once the migration ended (logged), leaving nothing behind" \
	eval "grep -q 'migration s1 done' '$T/src1.log' && grep -q 'every migration in progress has ended: stopping' '$T/src1.log' && ! grep -q 'leaving migration' '$T/src1.log'"

serve 2 "$T/src2.log"
kill -TERM "$src_pid"
wait_log "$T/src2.log" "stopping once" >/dev/null
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "a second SIGTERM stops the source at once (exit 0)" test "$code" -eq 0
check "... naming the migration it leaves and its destination" \
	eval "grep -q 'stopping now (signalled again)' '$T/src2.log' && grep -q 'leaving migration s2 served: destination 127.0.0.1:[0-9]* loses its source' '$T/src2.log'"
# It waits for a restorer that never comes: stopped, it leaves nothing running.
kill -TERM "$dest_pid"
wait_pid "$dest_pid" 15
dest_pid=

serve 3 "$T/src3.log" --shutdown-timeout 1
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "--shutdown-timeout 1: the source stops by itself (exit 0)" test "$code" -eq 0
check "... saying why and what it leaves" \
	eval "grep -q 'within 1 s (--shutdown-timeout)' '$T/src3.log' && grep -q 'stopping now (--shutdown-timeout)' '$T/src3.log' && grep -q 'leaving migration s3 served' '$T/src3.log'"
# It waits for a restorer that never comes: stopped, it leaves nothing running.
kill -TERM "$dest_pid"
wait_pid "$dest_pid" 15
dest_pid=
check "no sanitizer report or crash in the sources' logs" \
	eval "! grep -q 'Sanitizer\|runtime error\|Segmentation' '$T'/src*.log"
[ "$tap_failed" -eq 0 ] || {
	for f in "$T"/src*.log "$T"/dest*.log; do diag_file "$f" 25; done
	diag_file "$T/new.json"
}
finish
