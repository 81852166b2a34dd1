#!/bin/bash
# rdmig-source's lazy dump (rdmigctl migrate --pid P --lazy-dump) over TCP,
# with fake-criu.sh standing in for `criu dump --lazy-pages`: --lazy-only
# images, then rdmig-fakedump serving their pages as the dump's page server
# (test/unit/fake_psrv.c, CRIU's protocol as docs/protocol.md §11.1 has it).
# (1) The dump gets the lazy options; at its status byte the dumped process
# is stopped; the migration serves; rdmig-dest (which offers
# FEAT_LAZY_DUMP) takes it with the stand-in restore: every page verified,
# every unit announced by StageRegion and checked by its XXH3, the Done
# digest over the units accepted; the source's stopped copy is then killed.
# (2) The page server hangs up in its first reply: the migration fails
# naming it, the destination fails (before its restore, or after it by
# stopping its processes: never a wrong or zero byte), the dumped process
# stays stopped, and a rollback continues it.  (3) A lazy request without pid, or with
# leave_running, is refused.  (4) With --verify on both agents, rdmig-source
# stopped mid-migration: the lazy migration pauses and resumes, the units
# announced again with their page tags, every page read checked by its tag.
# (5) rdmig-source SIGKILLed in post-copy and started again: it takes the
# stopped tree again and stages the rest from it; done, every page
# verified.  (6) The same, the dumped tree continued meanwhile: the
# restarted agent does not take it again, the migration fails, never a wrong
# byte.  (7) A lazy dump no destination took, rdmig-source killed and
# started again: a rollback continues the stopped tree.  (8) rdmig-source
# killed in the dump, criu's page server up and waiting: the restarted
# agent ends its wait, fails the migration, and a rollback continues the
# stopped tree.  (9) criu marked no page lazy: the source stages every
# page from the stopped tree.  The real criu
# runs in the guests (test/rxe/t/).
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}" "${RDMIG_FAKEDUMP:?}"
plan 45

fake=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
secret "$T/secret"
sock=$T/run/source.sock
root=$T/images/root
CTL=("$RDMIG_CTL" --socket "$sock")
# A slow page server (200 ms a reply): the destination runs before every
# unit is staged and asks for units first (StageReq).
export RDMIG_FAKEDUMP FAKE_CRIU_HANGUP_ID=l2 FAKE_CRIU_PSRV_DELAY_MS=200 FAKE_CRIU_NONE_LAZY_ID=l9

# proc_state PID: its state letter in /proc (T stopped, S sleeping, Z a zombie).
proc_state() { sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null; }

# held_migration N [--verify]: a `rdmig-mkimage --hold` process (w: it
# holds the very pages fake-criu.sh's images of it describe) dumped lazily
# as lN, taken by rdmig-dest (draining one 4 KiB page at a time) and the
# stand-in (spid), until the restore is done.
held_migration() {
	local n=$1
	shift
	"$RDMIG_MKIMAGE" --hold --size 4M >"$T/hold$n.out" 2>&1 &
	w=$!
	track "$w"
	wait_log "$T/hold$n.out" "holding $w" >/dev/null
	"${CTL[@]}" migrate --pid "$w" --lazy-dump "$@" --secret-file "$T/secret" --id "l$n" \
		>/dev/null 2>&1
	wait_state "l$n" serving
	mkdir "$T/dst$n"
	# shellcheck disable=SC2046
	start_dest "$T/dest$n.log" -D "$T/dst$n" $(net_args "l$n" "$T/secret") --dead-after 2 \
		--drain-depth 1 --drain-chunk 4K --readahead 1 "$@"
	"$RDMIG_STANDIN" -D "$T/dst$n" --threads 2 --access random >"$T/standin$n.out" 2>&1 &
	spid=$!
	track "$spid"
	wait_log "$T/dest$n.log" "restore finished: draining" >/dev/null
}

# copy_killed PID: the dumped process, once the destination has every
# page, is killed (a zombie or gone within 5 s).
copy_killed() {
	for _ in $(seq 50); do
		[ "$(proc_state "$1")" = Z ] || ! alive "$1" && return 0
		sleep 0.1
	done
	return 1
}

# kill_source: rdmig-source SIGKILLed, as a crash.
kill_source() {
	kill -KILL "$src_pid"
	wait "$src_pid" 2>/dev/null
}

# restart_source LOG: rdmig-source started again on its port, as before.
restart_source() {
	"$RDMIG_SOURCE" -t tcp -l "127.0.0.1:$src_port" --early --api-socket "$sock" \
		--images-root "$root" --criu "$fake" >"$1" 2>&1 &
	src_pid=$!
	track "$src_pid"
}

start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$fake"
sleep 600 &
w1=$!
track "$w1"
"${CTL[@]}" migrate --pid "$w1" --lazy-dump --secret-file "$T/secret" --id l1 >"$T/l1.out" 2>&1
check "rdmigctl migrate --pid --lazy-dump exits 0" test $? -eq 0
wait_state l1 serving
check "criu dump gets --lazy-pages --leave-stopped, its server on loopback, --status-fd 3" \
	grep -Eqx "dump -t $w1 -D $root/l1 -v2 -o dump.log --lazy-pages --leave-stopped --address 127.0.0.1 --port [0-9]+ --status-fd 3" "$root/l1/fake-criu.args"
check "at the status byte the dumped process is stopped" test "$(proc_state "$w1")" = T
"${CTL[@]}" status l1 --json >"$T/l1.json" 2>&1
check "the migration reports lazy_dump and a freeze of at least the dump's 1 s" \
	eval "grep -q '\"lazy_dump\": true' '$T/l1.json' && grep -Eq '\"freeze_ms\": [1-9][0-9]{3}' '$T/l1.json'"
mkdir "$T/dst1"
# shellcheck disable=SC2046
start_dest "$T/dest1.log" -D "$T/dst1" $(net_args l1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst1" --threads 2 >"$T/standin1.out" 2>&1
rc=$?
wait_dest
check "the destination took l1: every page verified, rdmig-dest exits 0" \
	eval "test $rc -eq 0 && standin_ok '$T/standin1.out' 1024 && test $code -eq 0"
wait_state l1 done
check "l1 is done: the Done digest over the staged units matched" test "$(state l1)" = done
units=$(sed -n 's/.*lazy dump: \([0-9]*\) of \([0-9]*\) units staged, \([0-9]*\) asked for first.* \([0-9]*\) read whole and checked by XXH3.*/\1 \2 \3 \4/p' "$T/dest1.log")
read -r staged total asked whole <<<"${units:-0 -1 0 0}"
check "every unit was announced (StageRegion), some asked for first (StageReq), whole ones checked by XXH3 ($units)" \
	eval "test $staged -eq $total && test $total -ge 16 && test $asked -gt 0 && test $whole -gt 0"
check "once done, the source's stopped copy is killed" copy_killed "$w1"
wait "$w1" 2>/dev/null
check "criu's page server saw the session closed (PS_IOV_CLOSE)" \
	grep -q 'close 1, protocol error 0' "$root/l1/dump.log"

# (2) The page server dies mid-pull.
sleep 600 &
w2=$!
track "$w2"
"${CTL[@]}" migrate --pid "$w2" --lazy-dump --secret-file "$T/secret" --id l2 >/dev/null 2>&1
wait_state l2 serving
mkdir "$T/dst2"
# shellcheck disable=SC2046
start_dest "$T/dest2.log" -D "$T/dst2" $(net_args l2 "$T/secret")
# The page server hangs up at once: the destination fails before or after
# its restore; a stand-in that never got a process to run is let go.
"$RDMIG_STANDIN" -D "$T/dst2" --threads 2 >"$T/standin2.out" 2>&1 &
spid=$!
track "$spid"
wait_dest
dcode=$code
wait_pid "$spid" 3
rc=$code
wait_state l2 failed
"${CTL[@]}" status l2 --json >"$T/l2.json" 2>&1
check "a page server that hangs up fails l2, naming it" \
	grep -q "the lazy dump's page server failed" "$T/l2.json"
check "... the destination fails (rdmig-dest exits 1) and never saw a wrong or zero byte" \
	eval "test $dcode -eq 1 && test $rc -ne 0 && never_wrong '$T/standin2.out'"
check "... and the dumped process stays stopped" test "$(proc_state "$w2")" = T
# A destination fetched l2 and no destination agent can say its workload is
# stopped: the plain rollback is refused (never twice); this test's bare
# rdmig-dest exited, so the operator forces it.
"${CTL[@]}" rollback l2 >"$T/l2-rb.out" 2>&1
check "rdmigctl rollback l2 without force is refused (no destination agent to confirm)" \
	eval "test $? -ne 0 && grep -q 'roll back with force' '$T/l2-rb.out' && test \"\$(proc_state $w2)\" = T"
"${CTL[@]}" rollback --force l2 >"$T/l2-rb.out" 2>&1
check "rdmigctl rollback --force l2 exits 0" test $? -eq 0
wait_state l2 rolled_back
check "l2 is rolled back and its process runs again (SIGCONT), not restored by criu" \
	eval "test \"\$(state l2)\" = rolled_back && test \"\$(proc_state $w2)\" = S && ! grep -q '^restore' '$root/l2/fake-criu.args'"
kill "$w2"
wait "$w2" 2>/dev/null

# (4) A lazy dump pauses and resumes: rdmig-source is stopped past the
# destination's --dead-after while units are still being staged and
# requests wait for them; continued, the destination reconnects, its
# Attach{resume} gets every staged unit announced again and it asks again
# for the units its requests wait for.
sleep 600 &
w4=$!
track "$w4"
"${CTL[@]}" migrate --pid "$w4" --lazy-dump --verify --secret-file "$T/secret" --id l4 >/dev/null 2>&1
wait_state l4 serving
mkdir "$T/dst4"
# shellcheck disable=SC2046
start_dest "$T/dest4.log" -D "$T/dst4" $(net_args l4 "$T/secret") --dead-after 2 \
	--drain-depth 1 --drain-chunk 4K --readahead 1 --verify
"$RDMIG_STANDIN" -D "$T/dst4" --threads 2 --access random >"$T/standin4.out" 2>&1 &
spid=$!
track "$spid"
wait_log "$T/dest4.log" "restore finished: draining" >/dev/null
kill -STOP "$src_pid"
wait_log "$T/dest4.log" "migration paused" 20 >/dev/null
check "pause: the silent source pauses the lazy migration; rdmig-dest and the stand-in wait" \
	eval "alive $dest_pid && alive $spid"
sleep 1
kill -CONT "$src_pid"
wait_dest
dcode=$code
wait_pid "$spid" 30
check "pause: after SIGCONT rdmig-dest resumes and finishes: every page verified, exit 0" \
	eval "test $dcode -eq 0 && test $code -eq 0 && standin_ok '$T/standin4.out' 1024"
wait_state l4 done
check "pause: l4 is done: the Done digest over the units announced twice matched" \
	test "$(state l4)" = done
check "pause: the source paused l4 and the destination resumed it" \
	eval "grep -q 'migration l4 paused' '$T/source.log' && grep -q 'resumed after' '$T/dest4.log'"
units=$(sed -n 's/.*lazy dump: \([0-9]*\) of \([0-9]*\) units staged.*/\1 \2/p' "$T/dest4.log")
read -r staged total <<<"${units:-0 -1}"
check "pause: every unit announced, none twice in the count ($units)" \
	eval "test $staged -eq $total && test $total -ge 16"
check "pause: on resume the waiting requests were parked and their units asked for again" \
	grep -Eq 'resuming a lazy dump: [0-9]+ request\(s\) wait for their units' "$T/dest4.log"
check "pause: with --verify every page read was checked by the tag its StageRegion brought" \
	eval "l='$T/dest4.log'; grep -q 'every page read checked by its tag' \$l && test \"\$(field \$l unverified),\$(field \$l verify_failures)\" = 0,0 && test \"\$(field \$l verified)\" -ge \$((\$(field \$l fault) + \$(field \$l drain))) && test \$((\$(field \$l fault) + \$(field \$l drain))) -gt 0"

# (5) rdmig-source SIGKILLed in post-copy and started again on its port:
# criu's page server (the fake) lost its client; the restarted agent
# reloads l5's record, takes the dumped tree again (the same process, still
# stopped) and stages the units left from the tree itself
# (process_vm_readv), the ones staged before announced again with the same
# XXH3.  The dumped process is `rdmig-mkimage --hold`: it holds the very
# pages its images (fake-criu.sh's) describe.
held_migration 5 --verify
w5=$w
check "restart: l5's record names its stopped tree (start time) and its page server's port" \
	eval "jq -e '.lazy_dump.tree_start > 0 and .lazy_dump.port > 0' '$root/.records/l5.json' >/dev/null"
kill_source
wait_log "$T/dest5.log" "migration paused" 20 >/dev/null
restart_source "$T/source5.log"
wait_dest
dcode=$code
wait_pid "$spid" 30
check "restart: rdmig-dest paused, resumed with the restarted agent and finished: every page verified" \
	eval "test $dcode -eq 0 && test $code -eq 0 && standin_ok '$T/standin5.out' 1024 && grep -q 'resumed after' '$T/dest5.log'"
wait_state l5 done
check "restart: l5 is done on the restarted agent: the Done digest matched" \
	test "$(state l5)" = done
check "restart: the restarted agent took the stopped tree again and staged from it, criu gone" \
	eval "grep -q 'lazy dump of pid $w5: its stopped tree taken again (1 process' '$T/source5.log' && grep -q 'lazy dump of pid $w5: staging from its stopped tree' '$T/source5.log'"
units=$(sed -n 's/.*lazy dump: \([0-9]*\) of \([0-9]*\) units staged.*/\1 \2/p' "$T/dest5.log")
read -r staged total <<<"${units:-0 -1}"
check "restart: every unit announced, none counted twice, every page read checked by its tag ($units)" \
	eval "test $staged -eq $total && test $total -ge 16 && grep -q 'every page read checked by its tag' '$T/dest5.log' && test \"\$(field '$T/dest5.log' verify_failures)\" = 0"
check "restart: once done, the source's stopped copy is killed" copy_killed "$w5"
wait "$w5" 2>/dev/null

# (6) The same kill, but the dumped tree is continued (SIGCONT) while the
# agent is down: its memory may have changed, so the restarted agent does
# not take it again: l6 fails saying why, the destination's resume is
# refused and it fails without a wrong or zero byte, and no rollback can
# claim the running tree.
held_migration 6
w6=$w
kill_source
kill -CONT "$w6"
wait_log "$T/dest6.log" "migration paused" 20 >/dev/null
restart_source "$T/source6.log"
wait_state l6 failed
"${CTL[@]}" status l6 --json >"$T/l6.json" 2>&1
check "continued: the restarted agent fails l6: its tree runs, its memory may have changed" \
	grep -q "cannot take this lazy dump's stopped tree again: process $w6 .* runs" "$T/l6.json"
wait_dest
dcode=$code
wait_pid "$spid" 5
check "continued: the destination fails (rdmig-dest exits 1), never a wrong or zero byte" \
	eval "test $dcode -eq 1 && never_wrong '$T/standin6.out'"
"${CTL[@]}" rollback --force l6 >"$T/l6-rb.out" 2>&1
check "continued: a rollback is refused: the agent holds no stopped tree of it" \
	eval "test $? -ne 0 && grep -q 'holds no stopped tree' '$T/l6-rb.out' && test \"\$(state l6)\" = failed"
kill "$w6"
wait "$w6" 2>/dev/null

# (7) A lazy dump no destination ever took, rdmig-source SIGKILLed and
# started again: the restarted agent takes the stopped tree again and
# serves it (no destination ever ran it), so once aborted a rollback still
# continues it (no destination authenticated: no --force).
sleep 600 &
w7=$!
track "$w7"
"${CTL[@]}" migrate --pid "$w7" --lazy-dump --secret-file "$T/secret" --id l7 >/dev/null 2>&1
wait_state l7 serving
kill_source
restart_source "$T/source7.log"
wait_state l7 serving
check "rollback after a restart: l7 served again, its stopped tree taken again" \
	eval "test \"\$(proc_state $w7)\" = T && grep -q 'lazy dump of pid $w7: its stopped tree taken again' '$T/source7.log'"
"${CTL[@]}" abort l7 >/dev/null 2>&1
wait_state l7 aborted
"${CTL[@]}" rollback l7 >"$T/l7-rb.out" 2>&1
check "... rdmigctl rollback l7 (no --force) exits 0" test $? -eq 0
wait_state l7 rolled_back
check "... rolled back: its process runs again (SIGCONT), no criu restore" \
	eval "test \"\$(proc_state $w7)\" = S && ! grep -q '^restore' '$root/l7/fake-criu.args'"
kill "$w7"
wait "$w7" 2>/dev/null

# (8) rdmig-source dies in the dump after criu's status byte, before it
# read it (held in the dump by FAKE_CRIU_HOOK, SIGSTOPped, the byte
# written, then SIGKILLed): criu's page server waits for a client, the
# tree frozen (SIGSTOPped here, as criu keeps it).  The restarted agent
# ends that wait (the stand-in exits, as criu then does), fails the
# migration (nothing reached a destination) and takes the tree again: a
# rollback continues it.
listening() { grep -q "^ *[0-9]*: 0100007F:$(printf %04X "$1") 00000000:0000 0A" /proc/net/tcp; }
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
export FAKE_CRIU_HOOK="touch '$T/hook8-in'; until [ -e '$T/hook8-go' ]; do sleep 0.05; done"
start_source "$T/source8a.log" --api-socket "$sock" --images-root "$root" --criu "$fake"
unset FAKE_CRIU_HOOK
# start_source waits for the data listener; the API socket comes a moment later.
wait_log "$T/source8a.log" "api: serving on $sock" >/dev/null
sleep 600 &
w8=$!
track "$w8"
"${CTL[@]}" migrate --pid "$w8" --lazy-dump --secret-file "$T/secret" --id l8 >/dev/null 2>&1
wait_until 30 test -e "$T/hook8-in"
kill -STOP "$src_pid" "$w8"
touch "$T/hook8-go"
port8=$(sed -n 's/.* --port \([0-9]*\) .*/\1/p' "$root/l8/fake-criu.args")
wait_until 30 listening "${port8:-0}"
check "the dump's page server listens, its status byte unread, the agent stopped" \
	eval "listening '${port8:-0}' && test \"\$(proc_state $src_pid)\" = T"
kill_source
psrv8=$(pgrep -f "rdmig-fakedump -D $root/l8 ")
restart_source "$T/source8.log"
wait_state l8 failed
check "restarted: l8 failed, nothing reached a destination; the page server's wait ended" \
	eval "\"\${CTL[@]}\" status l8 --json | jq -r .error | grep -q 'restarted while criu dump --lazy-pages ran; nothing reached a destination, and the dumped tree is held stopped' && grep -q 'ended the session of a page server still waiting on 127.0.0.1:$port8' '$T/source8.log' && wait_until 20 test ! -e /proc/${psrv8:-0}"
check "... the tree taken again, still stopped" \
	eval "grep -q 'lazy dump of pid $w8: its stopped tree taken again' '$T/source8.log' && test \"\$(proc_state $w8)\" = T"
"${CTL[@]}" rollback l8 >"$T/l8-rb.out" 2>&1
wait_state l8 rolled_back
check "... a rollback continues it (SIGCONT), no criu restore" \
	eval "test \"\$(proc_state $w8)\" = S && ! grep -q '^restore' '$root/l8/fake-criu.args'"
kill "$w8"
wait "$w8" 2>/dev/null

# (9) criu marked no page lazy (its is_stack() misfire, design.md §10.3):
# every page went into the pages files and none is in its page server.
# The source makes them lazy, ends the page server's session at once and
# stages every unit from the stopped tree; the destination gets the flat
# images (those pages lazy, without data) and verifies every page.
held_migration 9
w9=$w
wait_dest
dcode=$code
wait_pid "$spid" 30
check "none lazy: every page verified on the destination, rdmig-dest exits 0" \
	eval "test $dcode -eq 0 && test $code -eq 0 && standin_ok '$T/standin9.out' 1024"
wait_state l9 done
check "none lazy: l9 is done; the source made the pages lazy, ended the page server's session and staged from the stopped tree" \
	eval "test \"\$(state l9)\" = done && grep -q 'task [0-9]*: criu marked none of the [0-9]* pages it could serve lazily as lazy' '$T/source8.log' &&
	grep -q 'lazy dump of pid $w9: criu marked no page lazy' '$T/source8.log' && grep -q 'lazy dump of pid $w9: staging from its stopped tree' '$T/source8.log'"
units=$(sed -n 's/.*lazy dump: \([0-9]*\) of \([0-9]*\) units staged.*/\1 \2/p' "$T/dest9.log")
read -r staged total <<<"${units:-0 -1}"
pf=$(cat "$T/dst9"/pages-*.img 2>/dev/null | wc -c)
check "none lazy: every unit announced ($units); the images brought $pf bytes of pages, not the 4 MiB" \
	eval "test $staged -eq $total && test $total -ge 16 && test $pf -lt 262144"
check "none lazy: once done, the source's stopped copy is killed" copy_killed "$w9"
wait "$w9" 2>/dev/null

# (3) Refusals.
"${CTL[@]}" migrate --images "$root/l1" --lazy-dump --secret-file "$T/secret" >"$T/r1.out" 2>&1
check "--lazy-dump without --pid is refused by rdmigctl" \
	eval "test $? -ne 0 && grep -q -- '--lazy-dump needs --pid' '$T/r1.out'"
curl -s --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
	-d "{\"id\":\"r2\",\"pid\":$$,\"lazy_dump\":true,\"criu_opts\":{\"leave_running\":true},\"secret_file\":\"$T/secret\"}" \
	-w '%{http_code}' -o "$T/r2.json" http://localhost/v1/migrations >"$T/r2.code"
check "lazy_dump with leave_running: 400, saying why" \
	eval "test \"\$(cat '$T/r2.code')\" = 400 && grep -q 'cannot go with' '$T/r2.json'"

kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0)" test "$code" -eq 0
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log" 60
	diag_file "$T/dest1.log" 30
	diag_file "$T/dest2.log" 30
	diag_file "$T/dest4.log" 40
	diag_file "$T/source5.log" 40
	diag_file "$T/dest5.log" 40
	diag_file "$T/source6.log" 30
	diag_file "$T/dest6.log" 30
	diag_file "$T/source7.log" 30
	diag_file "$T/source8a.log" 30
	diag_file "$T/source8.log" 30
	for f in "$T"/*.out "$T"/*.json "$root"/l*/dump.log; do diag_file "$f" 10; done
}
finish
