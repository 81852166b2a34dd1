#!/bin/bash
# The destination worker started at the reservation (issue 10,
# design.md §10.3).  rdmig-source dumps a process with a criu stand-in
# whose dump waits for $T/go-ID (and then fails if $T/fail-ID exists), so
# every "while it dumps" below is a state, not a race.  (1) rdmigctl
# migrate --to: the reservation carries "start", the destination agent
# spawns the worker at once, which authenticates while the source is still
# dumping (the source's JSON: state dumping, times.early_dest_ms set: 0, as
# the source waited for its proof before the freeze); the POST adopts it
# (one worker for the migration) and the migration is done.
# (2) A POST that differs from the reservation's start: 409, and the early
# worker is stopped.  (3) A reservation's expiry and (4) its DELETE stop
# the early worker; the slot is free once it exited, and a new reservation
# for the same migration replaces the record and directory of a worker so
# stopped, which received nothing (before: 409).  (5) A dump that
# fails: the early worker held by the source is told Abort(CANCELLED) and
# exits.  (7) A worker that never authenticates: the source dumps after
# waiting 5 s for it.  (8) A start queued for a slot on its destination
# agent waits the same way for the worker its reservation started once
# it has that slot (before: it froze at once).  (6) A source without FEAT_EARLY (--no-early): the early worker
# leaves before its proof and connects at SIGUSR1 (the POST's adoption),
# then gets the images.
# Binaries: RDMIG_CTL besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 25
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

secret "$T/secret"
sock=$T/run/source.sock
root=$T/images
mkdir -p "$root" "$T/droot"
CTL=("$RDMIG_CTL" --socket "$sock")
# A secret for the API-only cases, whose workers never reach a source.
b64=$(head -c 32 /dev/urandom | base64 -w0)

held_criu "$T/criu.sh"
export FAKE_CRIU_DELAY=0

# sjson ID EXPR: EXPR (Python, on the object j) of the source's JSON for ID.
sjson() {
	"${CTL[@]}" status "$1" --json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
# djson NAME PATH EXPR: EXPR of the destination agent's answer to GET PATH.
djson() {
	dapi "$1" GET "$2" >/dev/null
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$T/dapi.out" "$3" 2>/dev/null
}
# wait_early ID: the source's migration ID had a destination authenticate early.
wait_early() {
	for _ in $(seq 300); do
		[ "$(sjson "$1" 'j["times"]["early_dest_ms"] is not None')" = True ] && return 0
		sleep 0.1
	done
	return 1
}
# wait_dstate NAME ID STATE...: the destination agent's migration ID reaches one of STATEs.
wait_dstate() {
	local name=$1 id=$2 st
	shift 2
	for _ in $(seq 300); do
		st=$(djson "$name" "/v1/migrations/$id" 'j["state"]')
		for want in "$@"; do [ "$st" = "$want" ] && return 0; done
		sleep 0.1
	done
	echo "# $id is $st there"
	return 1
}
workload() {
	sleep 1000 &
	wl_pid=$!
	track "$wl_pid"
}

start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh"
start_dagent d --work-root "$T/droot" --max-migrations 2

# (1) The early worker, held during the dump, then adopted.
workload
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id e1 \
	--to "127.0.0.1:$dport" >"$T/e1.out" 2>&1
check "migrate --to: the reservation started the worker (worker: started)" \
	eval "test \$(djson d /v1/reservations 'j[\"reservations\"][0][\"worker\"]') = started"
check "... which authenticated while the source still dumps (state, times.early_dest_ms)" \
	eval "wait_early e1 && test \$(sjson e1 'j[\"state\"]') = dumping"
check "... the source waited for it before the freeze: early_dest_ms 0, and said so" \
	eval "test \$(sjson e1 'j[\"times\"][\"early_dest_ms\"]') = 0 && grep -q \"migration e1: its destination's worker authenticated [0-9]* ms after the reservation, before the freeze\" '$T/source.log'"
check "... and the source holds it: nothing of the checkpoint went out yet" \
	eval "grep -q 'migration e1, .*held until the migration serves' '$T/source.log' && ! grep -q 'migration e1, .*sending images' '$T/source.log'"
touch "$T/go-e1"
check "... the dump ends: the migration is done" wait_state e1 done 60
check "... the POST adopted the early worker: one worker for the migration" \
	eval "grep -q 'migration e1: uses its reservation r-[0-9a-f]*: its POST adopts worker' '$T/d.log' && test \$(grep -c 'migration e1: worker [0-9]* started' '$T/d.log') = 1"
# The source's done comes from the worker's Done; the destination agent
# learns it when the worker reports: wait for that, not a race with it.
d_done() { test "$(djson d /v1/migrations/e1 'j["state"]')" = done; }
check "... done on the destination too" wait_until 30 d_done

# (7) A worker that cannot reach the source (advertised a closed port):
# the source waits for it at most 5 s, unfrozen, then dumps all the same.
workload
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id w1 \
	--to "127.0.0.1:$dport" --advertise 127.0.0.1:1 >"$T/w1.out" 2>&1
check "a worker that never authenticates: the dump begins after 5 s, with a warning" \
	eval "wait_log '$T/source.log' 'migration w1: its destination.s worker did not authenticate within 5000 ms of the reservation: dumping all the same' 20 >/dev/null && test \$(sjson w1 'j[\"state\"]') = dumping"
# Its dump fails, which gives the reservation (and the worker) back.
touch "$T/fail-w1" "$T/go-w1"
wait_state w1 failed 30 >/dev/null

# (8) A start queued for a slot on its destination agent, once reserved
# there, waits unfrozen for the worker that reservation started, as a
# start reserved at once does.
mkdir -p "$T/droot3"
start_dagent d3 --work-root "$T/droot3" --max-migrations 1
workload
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id q1 \
	--to "127.0.0.1:$dport" >"$T/q1.out" 2>&1
wait_early q1 >/dev/null
workload
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id q2 \
	--to "127.0.0.1:$dport" >"$T/q2.out" 2>&1
check "a start to a destination agent whose one slot a dump holds is queued" \
	eval "test \$(sjson q2 'j[\"state\"]') = queued"
touch "$T/go-q1"
check "... reserved once that migration is done, it waits for its early worker before the freeze (early_dest_ms 0)" \
	eval "wait_state q2 dumping 60 && wait_early q2 && test \$(sjson q2 'j[\"times\"][\"early_dest_ms\"]') = 0 &&
	grep -q \"migration q2: its destination's worker authenticated [0-9]* ms after the reservation, before the freeze\" '$T/source.log'"
touch "$T/go-q2"
check "... and it is done" wait_state q2 done 60

# (2) A POST unlike the reservation's start: 409, the worker stopped.
start='"start":{"source":"127.0.0.1:1","transport":"tcp","secret":"base64:'$b64'"}'
code=$(dapi d POST /v1/reservations '{"migration":"x1","bytes":0,'"$start"'}')
rid=$(sed -n 's/.*"id":"\(r-[0-9a-f]*\)".*/\1/p' "$T/dapi.out")
code2=$(dapi d POST /v1/migrations '{"id":"x1","source":"127.0.0.1:1","transport":"tcp","verify":true,"secret":"base64:'$b64'","reservation":"'$rid'"}')
check "a POST whose verify differs from its reservation's start: 409 naming it" \
	eval "test $code = 201 && test $code2 = 409 && grep -q 'verify' '$T/dapi.out'"
check "... the early worker is stopped and the reservation gone" \
	eval "wait_dstate d x1 aborted && test \$(djson d /v1/reservations 'len(j[\"reservations\"])') = 0"

# (3) Expiry and (4) DELETE, one slot.
mkdir -p "$T/droot1"
start_dagent d1 --work-root "$T/droot1" --max-migrations 1
code=$(dapi d1 POST /v1/reservations '{"migration":"x2","bytes":0,"ttl_s":1,'"$start"'}')
code2=$(dapi d1 POST /v1/reservations '{"migration":"x3","bytes":0}')
check "a reservation with start holds the only slot (201, then 503)" \
	eval "test $code = 201 && test $code2 = 503"
check "... its expiry stops its worker" \
	eval "wait_dstate d1 x2 aborted && grep -q 'reservation r-[0-9a-f]* for migration x2 expired after 1 s unused: stopping its worker' '$T/d1.log'"
code=$(dapi d1 POST /v1/reservations '{"migration":"x3","bytes":0,'"$start"'}')
rid=$(sed -n 's/.*"id":"\(r-[0-9a-f]*\)".*/\1/p' "$T/dapi.out")
check "... and the slot is free once it exited (201)" test "$code" = 201
code=$(dapi d1 DELETE "/v1/reservations/$rid")
check "DELETE of a reservation with start: 200, its worker stopped" \
	eval "test $code = 200 && wait_dstate d1 x3 aborted"
# A pre-copy's source reserves again when its first reservation is gone.
wait_until 20 eval "test \$(djson d1 /v1/migrations/x3 'j[\"final\"]') = True"
code=$(dapi d1 POST /v1/reservations '{"migration":"x3","bytes":0,'"$start"'}')
rid=$(sed -n 's/.*"id":"\(r-[0-9a-f]*\)".*/\1/p' "$T/dapi.out")
check "... a new reservation with start for the same migration: 201, the unused worker's record and directory replaced" \
	eval "test $code = 201 && grep -q 'migration x3: the worker started at its earlier reservation ended unused (aborted, nothing received): its record and $T/droot1/x3 go for the new reservation' '$T/d1.log' &&
	test \$(djson d1 /v1/migrations/x3 'j[\"final\"]') = False && test -d '$T/droot1/x3'"
code=$(dapi d1 DELETE "/v1/reservations/$rid")
check "... which DELETE stops in turn (200)" eval "test $code = 200 && wait_dstate d1 x3 aborted"
code=$(dapi d1 POST /v1/reservations '{"migration":"x4","bytes":0}')
check "... and the slot is free again (201)" test "$code" = 201

# (5) A dump that fails: the held worker is told and exits.
# The migration first: a worker that came before it would be refused (unknown id).
workload
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id f1 >"$T/f1.out" 2>&1
mkdir -p "$T/f1d"
"$RDMIG_DEST" -D "$T/f1d" $(net_args f1 "$T/secret") --early >"$T/f1.log" 2>&1 &
f1_pid=$!
track "$f1_pid"
check "an early worker (rdmig-dest --early) is held while the source dumps" wait_early f1
touch "$T/fail-f1" "$T/go-f1"
wait_pid "$f1_pid" 30
check "... the dump fails: Abort(CANCELLED) to it, and it exits 1 saying so" \
	eval "test $code = 1 && grep -q 'the source aborted: the migration ended on the source before its checkpoint served (cancelled)' '$T/f1.log'"

# (6) A source without FEAT_EARLY: the worker waits for SIGUSR1.
start_source "$T/old.log" --api-socket "$T/run/old.sock" --images-root "$root/old" \
	--criu "$T/criu.sh" --no-early
workload
"$RDMIG_CTL" --socket "$T/run/old.sock" migrate --pid "$wl_pid" --secret-file "$T/secret" \
	--id o1 >"$T/o1.out" 2>&1
mkdir -p "$T/o1d"
"$RDMIG_DEST" -D "$T/o1d" $(net_args o1 "$T/secret") --early >"$T/o1.log" 2>&1 &
o1_pid=$!
track "$o1_pid"
check "a source with --no-early: the early worker leaves before its proof and waits" \
	eval "wait_log '$T/o1.log' 'the source holds no early connection' >/dev/null && ! grep -q 'migration o1, .*destination authenticated' '$T/old.log'"
touch "$T/go-o1"
CTL=("$RDMIG_CTL" --socket "$T/run/old.sock")
wait_state o1 serving 30
kill -USR1 "$o1_pid"
check "... SIGUSR1 (the POST's adoption): it connects and gets the images" \
	eval "wait_log '$T/old.log' 'migration o1, .*sent [0-9]* image files' >/dev/null && alive $o1_pid"
kill -TERM "$o1_pid"
wait_pid "$o1_pid" 30
check "... and stops cleanly when told to (SIGTERM)" test "$code" -le 1

finish
