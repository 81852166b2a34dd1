#!/bin/bash
# rdmig-source stopped (SIGSTOP) or starved while a request to the
# destination agent waits for its answer, for longer than that request's
# timeout: the handover's timeouts are judged by a tick that forgives the
# time the source did not run (common/tickclock.h), so the answer that
# waits in the source's socket is read, not thrown away as a timeout
# (design.md §7.2).  To have the request surely in flight when the source
# stops, the destination agent is stopped first and continued once the
# source is stopped: it answers while the source cannot read.
#  1. The handover's POST (timeout 10 s), the source stopped 12 s: the
#     destination agent took the migration; the source follows it
#     (dest_state) and the migration ends done on both agents.
#  2. A rollback's question (GET, timeout 5 s), the source stopped 7 s:
#     the destination agent's answer (aborted there) is read and the
#     rollback runs.
# Asserted on both agents' status JSON.  Binaries: RDMIG_CTL besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 5

sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")
secret "$T/secret"
mkdir -p "$T/images" "$T/droot"

# criu dump waits for $T/go-ID, so the test stops the destination agent
# before the migration serves.
held_criu "$T/criu.sh"
export FAKE_CRIU_DELAY=0

# sjson ID EXPR / djson ID EXPR: EXPR (jq) of the source's / the destination
# agent's ($dname's) JSON.
sjson() { "${CTL[@]}" status "$1" --json 2>/dev/null | jq -c "$2" 2>/dev/null; }
dname=d
djson() {
	dapi "$dname" GET "/v1/migrations/$1" >/dev/null
	jq -c "$2" "$T/dapi.out" 2>/dev/null
}
# is FN ID EXPR VALUE: FN (sjson or djson) ID EXPR prints VALUE.
is() { [ "$("$1" "$2" "$3")" = "$4" ]; }
workload() {
	sleep 1000 &
	wl_pid=$!
	track "$wl_pid"
}

# -v: the debug line that says the health check during the dump was answered.
# --no-early: the worker starts at the POST, so nothing but the source's
# stop holds the migration (an early worker would be served the images
# at once and could finish before the stop, then wait in vain for DoneAck).
start_source "$T/source.log" --api-socket "$sock" --images-root "$T/images" --criu "$T/criu.sh" -v \
	--no-early
wait_log "$T/source.log" "api: serving on" >/dev/null
# The worker's own timers are not under test: the source's stop is within them.
start_dagent d --work-root "$T/droot" --dead-after 60

# 1. The POST.
workload
"${CTL[@]}" migrate --pid "$wl_pid" --no-lazy-dump --secret-file "$T/secret" --id h1 \
	--to "127.0.0.1:$dport" >"$T/h1.out" 2>&1
# Its health, asked during the dump, answered: the POST goes out as the migration serves.
wait_log "$T/source.log" "migration h1: destination agent .* answers; the POST waits" >/dev/null
kill -STOP "$dagent_pid"
touch "$T/go-h1"
wait_log "$T/source.log" "migration h1: handing over to destination agent" >/dev/null
kill -STOP "$src_pid"
kill -CONT "$dagent_pid"
# Longer than the POST's 10 s: the length of the stop is what is tested.
sleep 12
kill -CONT "$src_pid"
wait_until 60 is djson h1 .state '"done"'
check "POST: the destination agent took h1 and it is done there" is djson h1 .state '"done"'
check "... the source read its answer and follows it: done, dest_state done, no error" \
	eval "wait_until 30 is sjson h1 '[.state, .dest_state, .error]' '[\"done\",\"done\",null]'"

# 2. A rollback's question.  h2 is aborted on the source while its restore
# is held on the destination (the fake restore waits for $T/hold): the
# abort is passed on, so the destination agent says aborted.
export FAKE_CRIU_HOLD=$T/hold
start_dagent d2 --work-root "$T/droot2" --dead-after 60
unset FAKE_CRIU_HOLD
touch "$T/go-h2"
workload
"${CTL[@]}" migrate --pid "$wl_pid" --no-lazy-dump --secret-file "$T/secret" --id h2 \
	--to "127.0.0.1:$dport" >"$T/h2.out" 2>&1
dname=d2
wait_until 60 is djson h2 .state '"restoring"'
"${CTL[@]}" abort h2 >"$T/h2-abort.out" 2>&1
# The worker told to stop ends sooner once its restore is not held.
touch "$T/hold"
wait_until 60 is djson h2 .state '"aborted"'
check "h2 aborted on the source, and on the destination agent" \
	eval "is sjson h2 .state '\"aborted\"' && is djson h2 .state '\"aborted\"'"
kill -STOP "$dagent_pid"
"${CTL[@]}" --timeout 60 rollback h2 >"$T/h2-rb.out" 2>&1 &
rb_pid=$!
wait_log "$T/source.log" "migration h2: rollback: asking destination agent" >/dev/null
kill -STOP "$src_pid"
kill -CONT "$dagent_pid"
# Longer than the question's 5 s.
sleep 7
kill -CONT "$src_pid"
wait_pid "$rb_pid" 60
check "rollback: the destination agent's answer (aborted there) is read: exit 0" \
	test "$code" -eq 0
check "... and h2 is rolled back" wait_until 60 is sjson h2 .state '"rolled_back"'
[ "$tap_failed" -eq 0 ] || {
	for f in "$T/source.log" "$T/d.log" "$T/d2.log"; do diag_file "$f" 40; done
	for f in "$T"/*.out; do diag_file "$f" 5; done
}
finish
