#!/bin/bash
# The source agent's queue (issue 12, item 5): a start that finds no slot
# waits, listed as queued, instead of a 503, and nothing is frozen while it
# waits.  rdmig-source dumps real processes (counters in a shell loop) with
# the gate criu stand-in of freezelib.sh and hands them to rdmig-dest
# --serve --max-migrations 1.  (1) Three starts: the first reserves and
# dumps; the two others are accepted (exit 0) and queued with positions 1
# and 2 (reason slot) in GET /v1/migrations and /v1/migrations/ID, their
# processes running untouched; rdmigctl status shows the place.  (2)
# --no-queue is refused before any freeze (exit 1, 503 no free slot), as
# before the queue.  (3) A fourth queued then DELETEd: aborted, untouched,
# nothing made, and the others move up.  (4) Once the gate opens each
# migrates in turn (frozen in the order they were started), all done.
# (4b) The destination's refusal for want of a slot is coded no_slot; a
# queued migration whose process exits fails; one still queued is dropped
# by a restart of the source agent.
# (5) --max-dumps 1: a second dump waits queued (reason dump) before its
# freeze, then runs.  Binaries: RDMIG_CTL besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
. "$(dirname "$0")/freezelib.sh"
: "${RDMIG_CTL:?}"
plan 19
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }
command -v jq >/dev/null || { echo "1..0 # SKIP jq not found"; exit 0; }

secret "$T/secret"
sock=$T/run/source.sock
root=$T/images
mkdir -p "$root" "$T/droot" "$T/droot2"
CTL=("$RDMIG_CTL" --socket "$sock")
gate_criu

# sapi METHOD PATH: the source agent's API into $T/sapi.out; prints the status.
sapi() {
	curl -s -o "$T/sapi.out" -w '%{http_code}' --unix-socket "$sock" -X "$1" "http://localhost$2"
}
# queue_of ID: "STATE POSITION REASON" from GET /v1/migrations/ID.
queue_of() {
	"${CTL[@]}" status "$1" --json 2>/dev/null |
		jq -r '"\(.state) \(.queue.position // "-") \(.queue.reason // "-")"'
}

# migrate_to ID PID PORT [ARGS...]: rdmigctl migrate of PID as ID to the
# destination agent on PORT, its output in $T/ID.out; returns its exit.
migrate_to() {
	local id=$1 pid=$2 port=$3
	shift 3
	"${CTL[@]}" migrate --pid "$pid" --secret-file "$T/secret" --id "$id" \
		--to "127.0.0.1:$port" "$@" >"$T/$id.out" 2>&1
}

# start_each PREFIX N PORT: N workloads PREFIX1..N, each migrated in turn to
# the destination agent on PORT; their pids in wl[], rdmigctl's exits in rc[].
start_each() {
	for i in $(seq "$2"); do
		workload "$1$i"
		wl[$i]=$wl_pid
		migrate_to "$1$i" "${wl[$i]}" "$3"
		rc[$i]=$?
	done
}

start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh"
start_dagent d1 --work-root "$T/droot" --max-migrations 1
d1=$dport

# (1) Three starts into one slot, the dumps held at the gate.
rm "$T/dump-go"
start_each q 3 "$d1"
check "three starts into --max-migrations 1: all accepted (exit 0)" \
	test "${rc[1]}:${rc[2]}:${rc[3]}" = "0:0:0"
check "... q1 dumps, q2 and q3 are queued at positions 1 and 2 for a slot (GET /v1/migrations/ID)" \
	eval "test \"\$(queue_of q1)\" = 'dumping - -' && test \"\$(queue_of q2)\" = 'queued 1 slot' && test \"\$(queue_of q3)\" = 'queued 2 slot'"
code=$(sapi GET /v1/migrations)
check "... the list says the same, with since and no error" \
	eval "test $code = 200 && test \"\$(jq -r '[.migrations[] | select(.state == \"queued\") | \"\(.id):\(.queue.position):\(.queue.since != null):\(.final)\"] | join(\" \")' '$T/sapi.out')\" = 'q2:1:true:false q3:2:true:false'"
check "... their processes were never stopped (/proc/PID/status) and keep running" \
	eval "untouched q2 ${wl[2]} && untouched q3 ${wl[3]}"
check "... nothing was made for them: no images dir" test ! -e "$root/q2" -a ! -e "$root/q3"
"${CTL[@]}" status q3 >"$T/q3.status" 2>&1
check "rdmigctl status shows the place in the queue" \
	grep -q '^  queue:      position 2, waiting for slot since ' "$T/q3.status"

# (2) The old behaviour, asked for.
workload n1
migrate_to n1 "$wl_pid" "$d1" --no-queue
rc_n=$?
check "--no-queue: refused before any freeze (exit 1, no free slot, 503)" \
	eval "test $rc_n -eq 1 && grep -q 'HTTP 503' '$T/n1.out' && grep -q 'no free slot' '$T/n1.out'"
check "... untouched, and not listed" \
	eval "untouched n1 $wl_pid && test \$(sapi GET /v1/migrations/n1) = 404"

# (3) A queued migration deleted.
workload q4
wl[4]=$wl_pid
migrate_to q4 "${wl[4]}" "$d1"
before=$(queue_of q4)
code=$(sapi DELETE /v1/migrations/q4)
check "DELETE of a queued migration (position 3): accepted, aborted, nothing to roll back" \
	eval "test '$before' = 'queued 3 slot' && test $code = 202 && wait_state q4 aborted 10 && test \"\$(queue_of q4)\" = 'aborted - -'"
check "... its process untouched, no images dir, q3 still second" \
	eval "untouched q4 ${wl[4]} && test ! -e '$root/q4' && test \"\$(queue_of q3)\" = 'queued 2 slot'"

# (4) The gate opens: each in turn, in the order started.
touch "$T/dump-go"
all_done=0
for i in 1 2 3; do
	wait_state "q$i" done 60 && wait_until 30 dest_is d1 "q$i" done && all_done=$((all_done + 1))
done
check "q1, q2 and q3 migrate one after the other: all done (on both agents)" test "$all_done" -eq 3
check "... frozen in the order they were started, each once" \
	eval "test \"\$(tr '\n' ' ' <'$T/frozen')\" = '${wl[1]} ${wl[2]} ${wl[3]} '"
code=$(dapi d1 GET /v1/reservations)
check "... no reservation is left on the destination agent" \
	eval "test $code = 200 && jq -e '.reservations == []' '$T/dapi.out' >/dev/null"

# (4b) A restart drops the queue (design.md §7.1): d1's only slot held by
# a reservation made through its API, whose refusal of another is coded.
code=$(dapi d1 POST /v1/reservations '{"migration":"hold","bytes":0,"ttl_s":600}')
rid=$(jq -r .id "$T/dapi.out")
code2=$(dapi d1 POST /v1/reservations '{"migration":"x2","bytes":0}')
check "the destination agent's refusal for want of a slot: 503 with error.code no_slot" \
	eval "test $code = 201 && test $code2 = 503 && test \"\$(jq -r .error.code '$T/dapi.out')\" = no_slot"
[ "$code:$code2" = 201:503 ] || echo "# the hold: HTTP $code, then x2: HTTP $code2 $(cat "$T/dapi.out")"
workload r1
wl[5]=$wl_pid
migrate_to r1 "${wl[5]}" "$d1"
before=$(queue_of r1)
workload r2
migrate_to r2 "$wl_pid" "$d1"
before2=$(queue_of r2)
kill -KILL "$wl_pid"
check "a queued migration whose process exits fails, with nothing asked for it" \
	eval "test '$before2' = 'queued 2 slot' && wait_state r2 failed 10 && \"\${CTL[@]}\" status r2 --json | jq -e '.error | test(\"exited while the migration was queued\")' >/dev/null"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
start_source "$T/source1b.log" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh"
check "a restart of the source agent drops a queued migration: unknown after it (404), untouched" \
	eval "test '$before' = 'queued 1 slot' && test \$(sapi GET /v1/migrations/r1) = 404 && untouched r1 ${wl[5]} && test ! -e '$root/r1'"
dapi d1 DELETE "/v1/reservations/$rid" >/dev/null

# (5) One dump at a time.
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
start_source "$T/source2.log" --api-socket "$sock" --images-root "$root/two" \
	--criu "$T/criu.sh" --max-dumps 1
start_dagent d4 --work-root "$T/droot2" --max-migrations 4
rm "$T/dump-go"
start_each p 2 "$dport"
check "--max-dumps 1: both accepted; the second waits for a dump slot (queued 1 dump)" \
	eval "test '${rc[1]}:${rc[2]}' = '0:0' && test \"\$(queue_of p1)\" = 'dumping - -' && test \"\$(queue_of p2)\" = 'queued 1 dump'"
check "... its process untouched while it waits" untouched p2 "${wl[2]}"
touch "$T/dump-go"
check "... then dumped in turn: both done" \
	eval "wait_state p1 done 60 && wait_state p2 done 60"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log" 40
	diag_file "$T/source2.log" 40
	diag_file "$T/d1.log" 20
}
finish
