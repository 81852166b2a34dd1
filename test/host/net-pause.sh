#!/bin/bash
# Post-copy survives its source (issue "post-copy that survives", item 1):
# with the workload running on the destination, a lost or silent source
# pauses the migration on both sides (faulting threads wait, unanswered),
# rdmig-dest reconnects with backoff (a new connection, a new handshake),
# issues every outstanding read again and finishes; no page is lost or
# wrong.  Three ways: rdmig-source SIGKILLed mid-drain and started again
# (its records bring the migration back, paused until the destination
# resumes it), rdmig-source SIGSTOPped past the destination's keepalive
# timeout, and a source gone for good with --pause-limit 3: the processes
# are stopped (SIGSTOP), not killed, and the state says why.  Then through
# rdmig-dest --serve: its API shows the migration paused, with the reason,
# and done after the source is back.
# States are read from the agents' APIs and the worker's progress lines.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 21

secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")
sock=$T/run/source.sock
root=$T/images/root
CTL=("$RDMIG_CTL" --socket "$sock")
src_args=(--api-socket "$sock" --images-root "$root" --verify)
# One 4 KiB request at a time, one page per fault, 128 MiB: the migration
# takes a while, so the source is lost while pages are missing even when a
# loaded machine is slow to see the drain start (64 MiB were done first).
slow=(--drain-depth 1 --drain-chunk 4K --readahead 1 --verify)
npages=32768

# jfield FILE EXPR: a value of the JSON in FILE (EXPR indexes `j`).
jfield() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
# states FILE: the states of the worker's progress lines, in order, one per line.
states() {
	python3 -c '
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "state" in j:
        print(j["state"])' "$1" 2>/dev/null
}
# why FILE STATE: the "error" of the first progress line in STATE.
why() {
	python3 -c '
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j.get("state") == sys.argv[2]:
        print(j.get("error"))
        break' "$1" "$2" 2>/dev/null
}
# wait_progress FILE STATE [SECS]: waits (60 s at most) until a progress line says STATE.
wait_progress() {
	for _ in $(seq $((${3:-60} * 10))); do
		states "$1" | grep -qx "$2" && return 0
		sleep 0.1
	done
	echo "# no \"$2\" line in $1"
	return 1
}
# source_on PORT LOG [args...]: rdmig-source again on the port the destination knows.
source_on() {
	local port=$1 log=$2
	shift 2
	"$RDMIG_SOURCE" -t tcp -l "127.0.0.1:$port" "$@" >"$log" 2>&1 &
	src_pid=$!
	track "$src_pid"
	wait_log "$log" "listening on 127.0.0.1:$port" >/dev/null
}
# drain_with N ID [dest args...]: rdmig-dest (log dest$N.log, progress lines
# progress$N.jsonl) takes ID into dst$N and the stand-in (pid spid) faults;
# returns as the drain starts: the source is to be lost at once, mid-drain.
drain_with() {
	local n=$1 id=$2
	shift 2
	mkdir "$T/dst$n"
	# shellcheck disable=SC2046
	start_dest "$T/dest$n.log" -D "$T/dst$n" $(net_args "$id" "$T/secret") "${slow[@]}" "$@" \
		--progress-fd 3 3>"$T/progress$n.jsonl"
	"$RDMIG_STANDIN" -D "$T/dst$n" --threads 4 --access random >"$T/standin$n.out" 2>&1 &
	spid=$!
	track "$spid"
	wait_log "$T/dest$n.log" "restore finished: draining"
}
# pstate PID: the process's state letter (T: stopped).
pstate() { sed -n 's/^[0-9]* ([^)]*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null; }

# 1. rdmig-source SIGKILLed mid-drain, started again on the same port.
start_source "$T/source1.log" "${src_args[@]}"
port=$src_port
wait_log "$T/source1.log" "api: serving on" >/dev/null
mkdir -p "$root/k1"
mkimage "$root/k1" --size 128M
sum0=$(dir_sum "$root/k1")
curl -s -o /dev/null --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
	-d "{\"id\":\"k1\",\"images_dir\":\"$root/k1\",\"secret\":\"base64:$sec64\",\"verify\":true}" \
	http://localhost/v1/migrations
wait_state k1 serving
drain_with 1 k1
kill -KILL "$src_pid"
wait "$src_pid" 2>/dev/null
wait_progress "$T/progress1.jsonl" paused
check "kill: the worker reports paused, with the reason" \
	eval "why '$T/progress1.jsonl' paused | grep -q '^connection to the source lost'"
check "kill: ... and rdmig-dest and the stand-in still run" eval "alive $dest_pid && alive $spid"
sleep 1
source_on "$port" "$T/source2.log" "${src_args[@]}"
wait_dest
dcode=$code
wait_pid "$spid" 20
check "kill: after the restart rdmig-dest resumes and finishes (exit 0)" test "$dcode" -eq 0
check "kill: the stand-in verified every page, none wrong" \
	eval "test $code -eq 0 && standin_ok '$T/standin1.out' $npages"
wait_state k1 done
"${CTL[@]}" status k1 --json >"$T/k1.json" 2>&1
check "kill: the restarted source reloaded k1 paused, until the destination resumed it" \
	eval "test \"\$(jfield '$T/k1.json' 'j[\"pause\"][\"count\"],j[\"pause\"][\"total_ms\"] > 0')\" = '(1, True)'"
check "kill: k1 is done on the source, no pause left" \
	eval "test \"\$(jfield '$T/k1.json' 'j[\"state\"],j[\"pause\"][\"reason\"],j[\"pause\"][\"since\"]')\" = \"('done', None, None)\""
check "kill: the progress lines go paused, then draining again, then done" \
	eval "test \"\$(states '$T/progress1.jsonl' | sed -n '/^paused$/,\$p' | uniq | tr '\n' ' ')\" = 'paused draining done '"
check "kill: the summary counts one pause; every lazy page installed once" \
	eval "grep -q 'pauses: count=1 ' '$T/dest1.log' && consistent '$T/dest1.log' && test \"\$(field '$T/dest1.log' dropped)\" = 0"
check "kill: the page tags kept across the pause checked every installed page: none unverified" \
	eval "l='$T/dest1.log'; test \"\$(field \$l unverified),\$(field \$l verify_failures)\" = 0,0 && test \"\$(field \$l verified)\" -ge \$((\$(field \$l fault) + \$(field \$l drain))) && test \$((\$(field \$l fault) + \$(field \$l drain))) -gt 0"
check "kill: the images on the source are untouched" test "$(dir_sum "$root/k1")" = "$sum0"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T"/source[12].log "$T/dest1.log" "$T/standin1.out" "$T/progress1.jsonl"; do diag_file "$f" 40; done

# 2. rdmig-source SIGSTOPped for longer than --dead-after, then SIGCONT.
mkimage "$T/src2" --size 128M
start_source "$T/source3.log" -m "s2:$T/src2:$T/secret" --verify --once
drain_with 2 s2 --dead-after 2
kill -STOP "$src_pid"
wait_progress "$T/progress2.jsonl" paused
check "stop: the silent source pauses the migration (the reason says so)" \
	eval "test \"\$(why '$T/progress2.jsonl' paused)\" = 'the source has been silent for 2 s'"
sleep 3
kill -CONT "$src_pid"
wait_dest
dcode=$code
wait_pid "$spid" 20
check "stop: after SIGCONT rdmig-dest resumes and finishes (exit 0)" test "$dcode" -eq 0
check "stop: the stand-in verified every page, none wrong" \
	eval "test $code -eq 0 && standin_ok '$T/standin2.out' $npages"
check "stop: the source paused and resumed the migration" \
	eval "grep -q 'migration s2 paused' '$T/source3.log' && grep -q 'migration s2 resumed after' '$T/source3.log'"
wait_pid "$src_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T/source3.log" "$T/dest2.log" "$T/standin2.out" "$T/progress2.jsonl"; do diag_file "$f" 40; done

# 3. The source gone for good, --pause-limit 3: stopped, never killed.
mkimage "$T/src3" --size 128M
start_source "$T/source4.log" -m "g3:$T/src3:$T/secret" --verify --once
drain_with 3 g3 --pause-limit 3
kill -KILL "$src_pid"
wait "$src_pid" 2>/dev/null
wait_progress "$T/progress3.jsonl" failed
check "limit: after 3 s paused the worker reports failed, saying why" \
	eval "why '$T/progress3.jsonl' failed | grep -q '^paused for more than 3 s (--pause-limit): connection to the source lost.*stopped (SIGSTOP)'"
# The stand-in's restored process is its child.
kids=$(cat /proc/"$spid"/task/*/children 2>/dev/null)
check "limit: the stand-in's process is stopped (SIGSTOP), not killed" \
	eval "test -n '$kids' && for k in $kids; do test \"\$(pstate \$k)\" = T || exit 1; done"

check "limit: ... and rdmig-dest keeps its userfaultfd, still running" alive "$dest_pid"
kill -TERM "$dest_pid"
wait_dest
wait_pid "$spid" 20
check "limit: the stand-in never saw a wrong or zero byte" never_wrong "$T/standin3.out"
[ "$tap_failed" -eq 0 ] || for f in "$T/source4.log" "$T/dest3.log" "$T/standin3.out" "$T/progress3.jsonl"; do diag_file "$f" 40; done

# 4. rdmig-dest --serve: the source stopped while the (fake) criu restore
# is held, released, then silent past the worker's --dead-after (10 s).
dsock=$T/run/dest.sock
cp "$(dirname "$0")/fake-criu-restore.sh" "$T/criu"
start_source "$T/source5.log" -m "v4:$T/src2:$T/secret"
FAKE_CRIU_HOLD=$T/hold "$RDMIG_DEST" --serve --api-socket "$dsock" --work-root "$T/droot" \
	--criu "$T/criu" -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on $dsock" >/dev/null
curl -s -o /dev/null --unix-socket "$dsock" -X POST -H 'Content-Type: application/json' \
	-d "{\"id\":\"v4\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\"}" \
	http://localhost/v1/migrations
DCTL=("$RDMIG_CTL" --socket "$dsock")
dstate() { "${DCTL[@]}" status v4 --json 2>/dev/null | sed -n 's/.*"state": "\([a-z_]*\)".*/\1/p'; }
dstate_is() { [ "$(dstate)" = "$1" ]; }
wait_until 120 dstate_is restoring
kill -STOP "$src_pid"
touch "$T/hold"
wait_until 120 dstate_is paused
"${DCTL[@]}" status v4 --json >"$T/v4-paused.json" 2>&1
check "serve: the destination agent's API shows v4 paused, with the reason and since when" \
	eval "test \"\$(jfield '$T/v4-paused.json' 'j[\"state\"],j[\"pause\"][\"reason\"],j[\"pause\"][\"since\"] is not None,j[\"final\"]')\" = \"('paused', 'the source has been silent for 10 s', True, False)\""
kill -CONT "$src_pid"
wait_until 120 dstate_is done
"${DCTL[@]}" status v4 --json >"$T/v4.json" 2>&1
check "serve: once the source runs again v4 resumes and is done, one pause counted" \
	eval "test \"\$(jfield '$T/v4.json' 'j[\"state\"],j[\"pause\"][\"count\"],j[\"pause\"][\"reason\"],j[\"pause\"][\"total_ms\"] > 0')\" = \"('done', 1, None, True)\""
check "serve: the restored process verified every page" standin_ok "$T/droot/v4/standin.out" $npages
kill -TERM "$sup_pid"
wait_pid "$sup_pid" 20
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T/source5.log" "$T/sup.log" "$T/droot/v4/rdmig-dest.log" "$T"/v4*.json; do diag_file "$f" 40; done
finish
