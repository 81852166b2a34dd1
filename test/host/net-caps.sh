#!/bin/bash
# What rdmig-source keeps (finding 12 of the security review): a migration
# that ends drops its mapping at once (the pages file leaves
# /proc/PID/maps), and the agent keeps at most --max-migrations: the final
# migration that finished first is forgotten to make room, and a start
# with that many not final is refused with 503.  Binaries: RDMIG_CTL
# besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 7
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

mkimage "$T/src" --size 4M
secret "$T/secret"
mkdir "$T/dst"
sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")
start_source "$T/source.log" --api-socket "$sock" --images-root "$T" --max-migrations 2
wait_log "$T/source.log" "api: serving on $sock" >/dev/null
mapped() { grep -c "$T/src/pages-1.img" "/proc/$src_pid/maps"; }
# start ID: POST /v1/migrations; prints the HTTP status.
start() {
	curl -s -o "$T/$1.resp" -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' \
		-d "{\"id\":\"$1\",\"images_dir\":\"$T/src\",\"secret_file\":\"$T/secret\"}" \
		http://localhost/v1/migrations
}

start m1 >/dev/null
wait_state m1 serving >/dev/null
n_serving=$(mapped)
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args m1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "m1 completes (exit 0, every page verified)" \
	eval "test $rc -eq 0 && test $code -eq 0 && wait_state m1 done"
check "the pages file was mapped while served ($n_serving), not once m1 is done ($(mapped))" \
	eval "test '$n_serving' -ge 1 && test \"\$(mapped)\" = 0"

code=$(start m2)
code="$code $(start m3)"
check "with m1 final, two more starts are taken (202 202)" test "$code" = "202 202"
check "... m1, the oldest final one, was forgotten" \
	eval "! \"\${CTL[@]}\" status m1 >/dev/null 2>&1 && grep -q 'migration m1 (done) forgotten' '$T/source.log'"
code=$(start m4)
check "m2 and m3 not final, --max-migrations 2: a start is refused, 503" \
	eval "test $code = 503 && grep -q 'not final, the most this agent keeps (--max-migrations)' '$T/m4.resp'"
"${CTL[@]}" abort m2 >/dev/null 2>&1
check "once m2 is aborted (mapping released: $(mapped) left for m3), m4 is taken: 202" \
	eval "test \"\$(mapped)\" = 1 && test \"\$(start m4)\" = 202"
check "rdmig-source serves on" alive "$src_pid"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/source.log" 30; for f in "$T"/*.resp; do diag_file "$f"; done; }
finish
