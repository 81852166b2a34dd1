#!/bin/bash
# A restarted rdmig-source knows its migrations again (issue "post-copy that
# survives", item 2): every state change of an API migration is written to
# IMAGES_ROOT/.records/ID.json (0600, atomically), its secret beside it
# while it may be served.  Killed with SIGKILL and started again, the agent
# reloads every record: a migration that served serves again (a
# destination then takes every page), one killed in criu dump is failed
# but can be rolled back (the dump completed), final ones keep their end.
# Corrupt or foreign records are skipped with an error naming the file.
# fake-criu.sh stands in for criu, as in net-criu.sh.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 24

fake=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")
mkdir "$T/dst"
sock=$T/run/source.sock
root=$T/images/root
rec=$root/.records
CTL=("$RDMIG_CTL" --socket "$sock")
src_args=(--api-socket "$sock" --images-root "$root" --criu "$fake")

# jfield FILE EXPR: a value of the JSON in FILE (EXPR indexes `j`).
jfield() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
post() {
	curl -s -o "$T/$1.post" -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' -d "$2" http://localhost/v1/migrations
}

start_source "$T/source1.log" "${src_args[@]}"
wait_log "$T/source1.log" "api: serving on" >/dev/null
mkdir -p "$root/given"
mkimage "$root/given" --size 4M
# s1: images given, inline secret: serving.  a1: aborted (final).  d1: dumping when killed.
c1=$(post s1 "{\"id\":\"s1\",\"images_dir\":\"$root/given\",\"secret\":\"base64:$sec64\"}")
wait_state s1 serving
mkdir -p "$root/other"
mkimage "$root/other" --size 4M
c3=$(post c1 "{\"id\":\"c1\",\"images_dir\":\"$root/other\",\"secret\":\"base64:$sec64\"}")
wait_state c1 serving
c2=$(post a1 "{\"id\":\"a1\",\"images_dir\":\"$root/given\",\"secret\":\"base64:$sec64\"}")
wait_state a1 serving
"${CTL[@]}" abort a1 >/dev/null 2>&1
wait_state a1 aborted
check "s1, c1 and a1 started (202 202 202): s1 serving, a1 aborted" \
	eval "test '$c1 $c3 $c2' = '202 202 202' && test \"\$(state s1)\" = serving"
check "records: the directory is 0700, each record 0600, s1's secret kept, a1's gone" \
	eval "test \"\$(stat -c %a '$rec')\" = 700 && test \"\$(stat -c %a '$rec/s1.json')\" = 600 &&
	      test \"\$(stat -c %a '$rec/s1.secret')\" = 600 && cmp -s '$rec/s1.secret' '$T/secret' &&
	      test -f '$rec/a1.json' && ! test -e '$rec/a1.secret'"
check "... and a record is the migration: s1 is ready with its images dir" \
	eval "test \"\$(jfield '$rec/s1.json' 'j[\"state\"],j[\"images_dir\"],j[\"pid\"]')\" = \"('ready', '$root/given', 0)\""

FAKE_CRIU_DELAY=3 "${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id d1 >/dev/null 2>&1
wait_state d1 dumping
# A record that is not JSON, one naming images outside the root: both skipped.
echo 'not json' >"$rec/bad.json"
chmod 600 "$rec/bad.json"
sed -e 's/"s1"/"x1"/' -e "s#$root/given#/etc#" "$rec/s1.json" >"$rec/x1.json"
cp -p "$rec/s1.secret" "$rec/x1.secret"
chmod 600 "$rec/x1.json"
# s2: s1's images and secret, recorded as serving with two pauses behind it.
jq '.id = "s2" | .state = "serving" | .pause = {"count": 2, "total_ms": 1500, "since_unix_ms": 0}' \
	"$rec/s1.json" >"$rec/s2.json"
chmod 600 "$rec/s2.json"
cp -p "$rec/s1.secret" "$rec/s2.secret"
# a1's record as an agent before pauses were recorded wrote it: no "pause".
jq 'del(.pause)' "$rec/a1.json" >"$rec/a1.old" && cat "$rec/a1.old" >"$rec/a1.json" && rm "$rec/a1.old"
kill -KILL "$src_pid"
wait "$src_pid" 2>/dev/null
# c1's pages change while no agent runs: its digest no longer matches the record.
pages=$(ls "$root/other"/pages-*.img | head -1)
printf 'X' | dd of="$pages" bs=1 seek=4096 conv=notrunc status=none
# criu outlives the agent (it is not killed with it) and finishes the dump.
wait_log "$root/d1/dump.log" "Dumping finished successfully" 10 >/dev/null

start_source "$T/source2.log" "${src_args[@]}"
wait_log "$T/source2.log" "api: serving on" >/dev/null
"${CTL[@]}" status --json >"$T/list.json" 2>&1
check "after SIGKILL and a restart: s1, s2, c1, a1 and d1 are known again, nothing else" \
	eval "test \"\$(jfield '$T/list.json' 'sorted(m[\"id\"] for m in j[\"migrations\"])')\" = \"['a1', 'c1', 'd1', 's1', 's2']\""
wait_state c1 failed
"${CTL[@]}" status c1 --json >"$T/c1.json" 2>&1
check "c1, whose pages changed while the agent was down, fails: not served" \
	grep -q "the images in $root/other changed while the agent was stopped" "$T/c1.json"
check "... the corrupt record and the one outside the root are skipped, named" \
	eval "grep -q 'records: $rec/bad.json skipped: not JSON' '$T/source2.log' &&
	      grep -q 'records: migration x1 skipped: its images dir /etc is not below' '$T/source2.log'"
wait_state s1 serving
"${CTL[@]}" status a1 --json >"$T/a1.json" 2>&1
check "a1 (a record without \"pause\") is still aborted, with its error, no pause" \
	eval "test \"\$(jfield '$T/a1.json' 'j[\"state\"],j[\"error\"],j[\"pause\"][\"count\"]')\" = \"('aborted', 'aborted through the API', 0)\""
wait_state s2 paused
"${CTL[@]}" status s2 --json >"$T/s2.json" 2>&1
check "s2, served when the agent stopped, is paused: a third pause, the time of the two before kept" \
	eval "test \"\$(jfield '$T/s2.json' 'j[\"pause\"][\"count\"],j[\"pause\"][\"total_ms\"],j[\"pause\"][\"reason\"]')\" = \"(3, 1500, 'the source agent restarted while the migration was served')\""
"${CTL[@]}" abort s2 >/dev/null 2>&1
"${CTL[@]}" status d1 --json >"$T/d1.json" 2>&1
check "d1, cut short in criu dump, is failed and says the checkpoint is complete" \
	eval "test \"\$(jfield '$T/d1.json' 'j[\"state\"]')\" = failed && grep -q 'restarted while criu dump ran; the checkpoint in $root/d1 is complete' '$T/d1.json'"

# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args s1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "a destination takes s1 from the restarted source: every page verified" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 1024 && test $code -eq 0"
wait_state s1 done
check "s1 is done, its record says so, its secret file is gone" \
	eval "test \"\$(jfield '$rec/s1.json' 'j[\"state\"]')\" = done && ! test -e '$rec/s1.secret'"

"${CTL[@]}" rollback d1 >"$T/d1-rb.out" 2>&1
check "rdmigctl rollback d1 after the restart exits 0" test $? -eq 0
wait_state d1 rolled_back
check "d1 is rolled back: criu restore ran with its dump's options" \
	eval "test \"\$(state d1)\" = rolled_back && grep -q '^restore -D $root/d1 -d -v2 -o restore-rollback.log' '$root/d1/fake-criu.args'"

# A restore cut short: the next agent refuses a second one (the process may run).
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id r1 >/dev/null 2>&1
wait_state r1 serving
python3 - "$rec/r1.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["state"] = "restoring"
open(sys.argv[1], "w").write(json.dumps(j))
PY
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0)" test "$code" -eq 0
start_source "$T/source3.log" "${src_args[@]}"
wait_log "$T/source3.log" "api: serving on" >/dev/null
"${CTL[@]}" rollback r1 >"$T/r1-rb.out" 2>&1
check "a rollback whose restore was cut short is not run twice (409, says why)" \
	eval "test $? -eq 1 && grep -q 'restarted while its rollback.s criu restore ran' '$T/r1-rb.out'"
"${CTL[@]}" status --json >"$T/list3.json" 2>&1
check "a third start: s1 done, d1 rolled back, a1 and s2 aborted, c1 and r1 failed" \
	eval "test \"\$(jfield '$T/list3.json' 'sorted((m[\"id\"], m[\"state\"]) for m in j[\"migrations\"])')\" = \"[('a1', 'aborted'), ('c1', 'failed'), ('d1', 'rolled_back'), ('r1', 'failed'), ('s1', 'done'), ('s2', 'aborted')]\""
check "no secret is left on disk for a final migration" \
	eval "! ls '$rec'/*.secret 2>/dev/null | grep -v x1.secret | grep -q ."
kill -TERM "$src_pid"
wait_pid "$src_pid" 20

# p1: handed over to a destination agent (rdmig-dest --serve), held in
# post-copy: rdmig-source stopped while the (fake) criu restore is held,
# the restore released, the worker pauses on the silent source (its
# --dead-after 10) and is stopped itself.  The source, continued, pauses
# too (one pause, recorded).  Then rdmig-source SIGKILLed and started again
# on its port: the reloaded p1 is the same pause going on (its count, its
# start) and follows the destination agent again (its dest_state); the
# worker continued, p1 resumes and ends done on both agents, the pause's
# time counted from its start before the restart.  p2, held beside it the
# same way, is aborted on the restarted source: the abort is passed on to
# the destination agent (aborted there, not failed), and a rollback,
# asking it, runs.
sock4=$T/run/source4.sock
root4=$T/images/root4
CTL=("$RDMIG_CTL" --socket "$sock4")
src4=(--api-socket "$sock4" --images-root "$root4" --criu "$fake")
# sjson ID EXPR / djson ID EXPR: EXPR (jq) of the source's / the destination agent's JSON.
sjson() { "${CTL[@]}" status "$1" --json 2>/dev/null | jq -c "$2" 2>/dev/null; }
djson() {
	dapi pc GET "/v1/migrations/$1" >/dev/null
	jq -c "$2" "$T/dapi.out" 2>/dev/null
}
# is FN ID EXPR VALUE: FN (sjson or djson) ID EXPR prints VALUE.
is() { [ "$("$1" "$2" "$3")" = "$4" ]; }
# followed ID: the source's dest_state is the destination agent's state.
followed() { [ "$(sjson "$1" .dest_state)" = "$(djson "$1" .state)" ]; }
mkdir -p "$T/droot"
FAKE_CRIU_DELAY=0 start_source "$T/source4.log" "${src4[@]}"
port4=$src_port
wait_log "$T/source4.log" "api: serving on" >/dev/null
FAKE_CRIU_HOLD=$T/hold4 start_dagent pc --work-root "$T/droot" --dead-after 10
for id in p1 p2; do
	sleep 1000 &
	track $!
	"${CTL[@]}" migrate --pid $! --no-lazy-dump --secret-file "$T/secret" --id $id --to "127.0.0.1:$dport" \
		>"$T/$id.out" 2>&1
	wait_until 120 is djson $id .state '"restoring"'
done
w=$(sed -n 's/.*migration p1: worker \([0-9]*\) started.*/\1/p' "$T/pc.log" | head -1)
w2=$(sed -n 's/.*migration p2: worker \([0-9]*\) started.*/\1/p' "$T/pc.log" | head -1)
kill -STOP "$src_pid"
touch "$T/hold4"
wait_until 120 is djson p1 .state '"paused"'
wait_until 120 is djson p2 .state '"paused"'
kill -STOP "$w" "$w2"
kill -CONT "$src_pid"
wait_until 60 is sjson p1 '[.state, .pause.count]' '["paused",1]'
wait_until 60 is sjson p2 '[.state, .pause.count]' '["paused",1]'
since0=$(sjson p1 .pause.since)
# The pause lasts a while before the kill: its time must not start again at the restart.
sleep 2
kill -KILL "$src_pid"
wait "$src_pid" 2>/dev/null
check "p1 paused in post-copy: its record counts the pause and its start" \
	eval "test \"\$(jq -c '[.state, .pause.count, .pause.since_unix_ms > 0]' '$root4/.records/p1.json')\" = '[\"paused\",1,true]'"
rec_since=$(jq '.pause.since_unix_ms' "$root4/.records/p1.json")
"$RDMIG_SOURCE" -t tcp -l "127.0.0.1:$port4" --early "${src4[@]}" >"$T/source5.log" 2>&1 &
src_pid=$!
track "$src_pid"
wait_log "$T/source5.log" "api: serving on" >/dev/null
wait_until 120 is sjson p1 .state '"paused"'
seen_ms=$(date +%s%3N)
check "restarted: p1 is the same pause going on: count 1, the same start" \
	eval "test \"\$(sjson p1 '[.state, .pause.count, .pause.since]')\" = '[\"paused\",1,$since0]'"
check "... and it follows the destination agent again: dest_state is that agent's state" \
	eval "wait_until 30 followed p1 && is sjson p1 .dest_state '\"paused\"'"
wait_until 120 is sjson p2 .state '"paused"'
"${CTL[@]}" abort p2 >"$T/p2-abort.out" 2>&1
# The DELETE reached the agent (it signals the stopped worker): the worker may go on.
wait_log "$T/source5.log" "migration p2: destination agent .* aborts it too" >/dev/null
kill -CONT "$w2"
wait_until 60 is djson p2 '.final' true
check "p2 aborted on the restarted source: the abort passed on, aborted there (not failed)" \
	eval "is sjson p2 .state '\"aborted\"' && is djson p2 .state '\"aborted\"'"
"${CTL[@]}" rollback p2 >"$T/p2-rb.out" 2>&1
check "... and a rollback asks that agent and runs: rolled back" \
	eval "test $? -eq 0 && wait_until 60 is sjson p2 .state '\"rolled_back\"'"
kill -CONT "$w"
wait_until 120 is djson p1 .state '"done"'
check "the worker continued: p1 resumed and is done on the destination agent, every page verified" \
	eval "is djson p1 .state '\"done\"' && standin_ok '$T/droot/p1/standin.out' 1024"
check "... and on the source: one pause, timed from its start before the restart, done followed" \
	eval "wait_until 60 is sjson p1 '[.state, .dest_state, .pause.count, .pause.reason]' '[\"done\",\"done\",1,null]' && test \"\$(sjson p1 .pause.total_ms)\" -ge $((seen_ms - rec_since))"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
[ "$tap_failed" -eq 0 ] || {
	for f in "$T"/source*.log "$T/dest.log" "$T/pc.log"; do diag_file "$f" 30; done
	for f in "$T"/*.out "$T"/*.json "$T"/*.post; do diag_file "$f" 5; done
}
finish
