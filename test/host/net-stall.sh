#!/bin/bash
# An agent stopped (SIGSTOP) in post-copy for longer than the destination's
# timers (--fetch-timeout 3, --dead-after 2; 8 s) pauses the migration,
# never fails it (issue 12 item 1, design.md §7.2):
#  1. the destination's worker stopped with faults in flight: on SIGCONT
#     its ticks forgive the time it did not run (no fetch times out, the
#     source is not judged silent), it finds the connection the source
#     closed meanwhile (the source's --dead-after 2), pauses, reconnects,
#     issues every request again and finishes;
#  2. the source agent stopped (the mirror): the destination pauses (the
#     source silent, or a fetch not done in time: either pauses), resumes
#     once the source runs again, and finishes;
#  3. the source agent stopped 5 s, past --fetch-timeout 2 but within
#     --dead-after 30: the connection stays up and the source is not
#     judged silent, so the pause is the fetch not done in time; the
#     worker resumes once the source runs again, and finishes.
# Each ends done on both agents, every page checked by its tag (--verify)
# and by the stand-in, the pause counted in the source's status JSON, in
# the worker's progress lines and in its summary.  To stop the worker
# while its fetches are surely outstanding, the source is frozen a moment
# first (0.2 s: below the ticks' lateness threshold, forgiven by nobody).
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 25

secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")
sock=$T/run/source.sock
root=$T/images/root
CTL=("$RDMIG_CTL" --socket "$sock")
# The source drops a silent destination after 2 s, well within the 8 s stop.
src_args=(--api-socket "$sock" --images-root "$root" --verify --dead-after 2)
# One 4 KiB request at a time, one page per fault, 128 MiB: pages are
# missing for the whole stop; both timers of the destination are short.
dest_args=(--drain-depth 1 --drain-chunk 4K --readahead 1 --verify --fetch-timeout 3
	--dead-after 2)
npages=32768
stop_s=8

# states FILE: the states of the worker's progress lines, in order, one per line.
states() { jq -r 'select(.state) | .state' "$1" 2>/dev/null; }
# why FILE STATE: the "error" of the first progress line in STATE.
why() { jq -r --arg s "$2" 'select(.state == $s) | .error' "$1" 2>/dev/null | head -1; }
# remaining FILE: pages_remaining of the last counters line before the first pause.
remaining() {
	jq -s -r '(map(.state == "paused") | index(true)) as $p | .[:$p + 1] |
		map(select(.pages_remaining)) | last | .pages_remaining' "$1" 2>/dev/null
}
# sjson ID EXPR: EXPR (jq) of the source's status JSON of ID.
sjson() { "${CTL[@]}" status "$1" --json 2>/dev/null | jq -c "$2" 2>/dev/null; }

start_source "$T/source.log" "${src_args[@]}"
wait_log "$T/source.log" "api: serving on" >/dev/null

# run_case N ID WHO [DEST ARGS...]: migration ID through the source's API
# (rdmig-dest with dest_args, then DEST ARGS); once the drain runs, WHO
# (dest or source) is stopped for $stop_s s, then continued.  Leaves dcode
# (rdmig-dest's exit) and scode (the stand-in's).
run_case() {
	local n=$1 id=$2 who=$3
	shift 3
	mkdir -p "$root/$id" "$T/dst$n"
	mkimage "$root/$id" --size 128M
	curl -s -o /dev/null --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
		-d "{\"id\":\"$id\",\"images_dir\":\"$root/$id\",\"secret\":\"base64:$sec64\",\"verify\":true}" \
		http://localhost/v1/migrations
	wait_state "$id" serving
	# shellcheck disable=SC2046
	start_dest "$T/dest$n.log" -D "$T/dst$n" $(net_args "$id" "$T/secret") "${dest_args[@]}" \
		"$@" --progress-fd 3 3>"$T/progress$n.jsonl"
	"$RDMIG_STANDIN" -D "$T/dst$n" --threads 4 --access random >"$T/standin$n.out" 2>&1 &
	spid=$!
	track "$spid"
	wait_log "$T/dest$n.log" "restore finished: draining" >/dev/null
	kill -STOP "$src_pid"
	if [ "$who" = dest ]; then
		sleep 0.2
		kill -STOP "$dest_pid"
		kill -CONT "$src_pid"
		sleep "$stop_s"
		kill -CONT "$dest_pid"
	else
		sleep "$stop_s"
		kill -CONT "$src_pid"
	fi
	wait_dest
	dcode=$code
	wait_pid "$spid" 30
	scode=$code
	wait_state "$id" done 30
}

# 1. The worker stopped.
run_case 1 w1 dest
check "worker stopped: rdmig-dest finishes (exit 0)" test "$dcode" -eq 0
check "worker stopped: the stand-in verified every page, none wrong" \
	eval "test $scode -eq 0 && standin_ok '$T/standin1.out' $npages"
check "worker stopped: it was stopped with pages missing" \
	eval "test \"\$(remaining '$T/progress1.jsonl')\" -gt 0"
check "worker stopped: the first pause is the connection the source closed, not a timer" \
	eval "why '$T/progress1.jsonl' paused | grep -q '^connection to the source lost'"
check "worker stopped: no progress line says failed; paused, then draining, then done" \
	eval "test \"\$(states '$T/progress1.jsonl' | sed -n '/^paused$/,\$p' | uniq | tr '\n' ' ')\" = 'paused draining done ' && ! states '$T/progress1.jsonl' | grep -qx failed"
check "worker stopped: the summary says ok, a pause counted, nothing dropped" \
	eval "test \"\$(field '$T/dest1.log' status),\$(field '$T/dest1.log' failed),\$(field '$T/dest1.log' dropped)\" = ok,0,0 && grep -q 'pauses: count=[1-9]' '$T/dest1.log' && consistent '$T/dest1.log'"
check "worker stopped: every installed page checked by its tag" \
	eval "l='$T/dest1.log'; test \"\$(field \$l unverified),\$(field \$l verify_failures)\" = 0,0 && test \"\$(field \$l verified)\" -ge \$((\$(field \$l fault) + \$(field \$l drain)))"
check "worker stopped: the source's status: done, the pause counted" \
	eval "test \"\$(sjson w1 '[.state, .pause.count >= 1, .pause.total_ms > 0, .pause.reason]')\" = '[\"done\",true,true,null]'"
[ "$tap_failed" -eq 0 ] || for f in "$T/source.log" "$T/dest1.log" "$T/standin1.out" "$T/progress1.jsonl"; do diag_file "$f" 60; done

# 2. The source agent stopped.
failed0=$tap_failed
run_case 2 s2 source
check "source stopped: rdmig-dest finishes (exit 0)" test "$dcode" -eq 0
check "source stopped: the stand-in verified every page, none wrong" \
	eval "test $scode -eq 0 && standin_ok '$T/standin2.out' $npages"
check "source stopped: it was stopped with pages missing" \
	eval "test \"\$(remaining '$T/progress2.jsonl')\" -gt 0"
check "source stopped: the worker paused on the silent source or an unanswered fetch" \
	eval "why '$T/progress2.jsonl' paused | grep -Eq '^(the source has been silent for 2 s|fetch of [0-9]+ bytes not done after [0-9]+ ms)\$'"
check "source stopped: no progress line says failed; paused, then draining, then done" \
	eval "test \"\$(states '$T/progress2.jsonl' | sed -n '/^paused$/,\$p' | uniq | tr '\n' ' ')\" = 'paused draining done ' && ! states '$T/progress2.jsonl' | grep -qx failed"
check "source stopped: the summary says ok, a pause counted, nothing dropped" \
	eval "test \"\$(field '$T/dest2.log' status),\$(field '$T/dest2.log' failed),\$(field '$T/dest2.log' dropped)\" = ok,0,0 && grep -q 'pauses: count=[1-9]' '$T/dest2.log' && consistent '$T/dest2.log'"
check "source stopped: every installed page checked by its tag" \
	eval "l='$T/dest2.log'; test \"\$(field \$l unverified),\$(field \$l verify_failures)\" = 0,0 && test \"\$(field \$l verified)\" -ge \$((\$(field \$l fault) + \$(field \$l drain)))"
check "source stopped: the source's status: done, the pause counted" \
	eval "test \"\$(sjson s2 '[.state, .pause.count >= 1, .pause.total_ms > 0, .pause.reason]')\" = '[\"done\",true,true,null]'"
check "source stopped: the paused time covers the stop" \
	eval "test \"\$(grep -o 'pauses: count=[0-9]* paused_ms=[0-9]*' '$T/dest2.log' | sed 's/.*paused_ms=//')\" -ge $(((stop_s - 3) * 1000))"
[ "$tap_failed" -eq "$failed0" ] || for f in "$T/source.log" "$T/dest2.log" "$T/standin2.out" "$T/progress2.jsonl"; do diag_file "$f" 60; done

# 3. The source stopped past the fetch timeout, within --dead-after.
failed0=$tap_failed
stop_s=5
run_case 3 f3 source --fetch-timeout 2 --dead-after 30
check "fetch timeout: rdmig-dest finishes (exit 0), the stand-in verified every page" \
	eval "test $dcode -eq 0 && test $scode -eq 0 && standin_ok '$T/standin3.out' $npages"
check "fetch timeout: it was stopped with pages missing" \
	eval "test \"\$(remaining '$T/progress3.jsonl')\" -gt 0"
check "fetch timeout: the worker paused on the fetch not done in time, the connection up" \
	eval "why '$T/progress3.jsonl' paused | grep -Eq '^fetch of [0-9]+ bytes not done after [0-9]+ ms\$'"
check "fetch timeout: no progress line says failed; paused, then draining, then done" \
	eval "test \"\$(states '$T/progress3.jsonl' | sed -n '/^paused$/,\$p' | uniq | tr '\n' ' ')\" = 'paused draining done ' && ! states '$T/progress3.jsonl' | grep -qx failed"
check "fetch timeout: the source's status: done, the pause counted" \
	eval "test \"\$(sjson f3 '[.state, .pause.count >= 1, .pause.total_ms > 0, .pause.reason]')\" = '[\"done\",true,true,null]'"
[ "$tap_failed" -eq "$failed0" ] || for f in "$T/source.log" "$T/dest3.log" "$T/standin3.out" "$T/progress3.jsonl"; do diag_file "$f" 60; done

# All: the source agent itself still serves (no session left behind).
check "the source agent is still up and answers its API" eval "\"\${CTL[@]}\" status w1 --json >/dev/null"
check "the migrations final and done on the source, no error" \
	eval "test \"\$(sjson w1 '[.final, .error]')\$(sjson s2 '[.final, .error]')\$(sjson f3 '[.final, .error]')\" = '[true,null][true,null][true,null]'"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "the source agent exits 0 on SIGTERM" test "$code" -eq 0
finish
