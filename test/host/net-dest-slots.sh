#!/bin/bash
# rdmig-dest --serve's slots (finding 12 of the security review): requests
# naming a source that never answers only take the --max-pending places,
# for --connect-timeout at most, then fail and free them; a migration
# whose source authenticated takes a --max-migrations slot.  Binaries:
# netlib.sh's.
. "$(dirname "$0")/netlib.sh"
plan 6
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

mkimage "$T/src" --size 4M
secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")
sock=$T/run/dest.sock
start_source "$T/source.log" -m "r1:$T/src:$T/secret"
"$RDMIG_DEST" --serve --api-socket "$sock" --work-root "$T/root" --max-migrations 1 \
	--max-pending 2 --connect-timeout 2 -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on $sock" >/dev/null

# post ID PORT: POST a migration from 127.0.0.1:PORT, "restore": false; prints the HTTP status.
post() {
	curl -s -o "$T/$1.resp" -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' \
		-d "{\"id\":\"$1\",\"source\":\"127.0.0.1:$2\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\",\"restore\":false}" \
		http://localhost/v1/migrations
}
dstate() {
	curl -s --unix-socket "$sock" "http://localhost/v1/migrations/$1" |
		sed -n 's/.*"state": *"\([a-z_]*\)".*/\1/p' | head -1
}
# wait_dstate ID STATE: up to 30 s (a bound for slow machines, not a timing check).
wait_dstate() {
	for _ in $(seq 300); do
		[ "$(dstate "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	echo "# $1 is $(dstate "$1"), not $2"
	return 1
}

# Port 1 on loopback: nothing listens, the workers retry until their timeout.
codes="$(post b1 1) $(post b2 1) $(post b3 1)"
check "two requests for a source that never answers: 202; a third: 503 (--max-pending 2)" \
	test "$codes" = "202 202 503"
check "... the 503 says why" grep -q 'waiting for their source to connect.*--max-pending' "$T/b3.resp"
check "after --connect-timeout (2 s) both failed, freeing their places" \
	eval "wait_dstate b1 failed && wait_dstate b2 failed"
check "a migration whose source answers is then accepted (202) and authenticates" \
	eval "test \"\$(post r1 $src_port)\" = 202 && wait_dstate r1 restoring"
check "with r1 authenticated, --max-migrations 1 is reached: 503" \
	eval "test \"\$(post b4 1)\" = 503 && grep -q 'running.*--max-migrations' '$T/b4.resp'"
# r1's worker waits for a restore that never comes: abort it, so that no
# worker outlives the test.
curl -s -o /dev/null --unix-socket "$sock" -X DELETE http://localhost/v1/migrations/r1
check "r1 aborted through the API: its worker is gone" \
	eval "wait_dstate r1 aborted && ! pgrep -f -- 'rdmig-dest -D $T/root/r1' >/dev/null"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/sup.log" 30; for f in "$T"/*.resp; do diag_file "$f"; done; }
finish
