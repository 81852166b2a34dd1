#!/bin/bash
# rdmig-source dumping and rolling back by itself (POST /v1/migrations with
# "pid", POST .../rollback), with fake-criu.sh standing in for criu: the
# migration is dumping, then serving its images to a destination (every
# page verified); another is rolled back (rolled_back), and a rollback whose
# restore fails ends failed naming the log.  A source with --criu /bin/false
# reports the failed dump.  A dump that fails as criu's parasite does when
# another dump holds its proc directory ("Can't get proc fd") is run again,
# at most twice, its log kept.  The real criu runs in test/rxe/t/31-agent.t.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 21

fake=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
secret "$T/secret"
mkdir "$T/dst"
sock=$T/run/source.sock
root=$T/images/root
CTL=("$RDMIG_CTL" --socket "$sock")

start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$fake"
# No --to: the destination is started by hand below (--to would hand the
# migration over to a destination agent's API: net-handover.sh).
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id d1 >"$T/d1.out" 2>&1
check "rdmigctl migrate --pid exits 0, the migration is dumping" \
	eval "test $? -eq 0 && grep -q '^migration d1 started (dumping)' '$T/d1.out'"
check "the images root is made 0700, the dump goes to ROOT/ID" \
	eval "test \"\$(stat -c %a '$root')\" = 700 && test -d '$root/d1'"
check "criu dump gets -t PID -D DIR -v2 -o dump.log (criu's own default level)" \
	grep -qx "dump -t $$ -D $root/d1 -v2 -o dump.log" "$root/d1/fake-criu.args"
wait_state d1 serving
check "once dumped it is serving" test "$(state d1)" = serving
"${CTL[@]}" status d1 --json >"$T/d1.json" 2>&1
check "... with the pid, the images dir and freeze_ms >= 1000" \
	eval "grep -q '\"pid\": $$' '$T/d1.json' && grep -q '\"images_dir\": \"$root/d1\"' '$T/d1.json' && grep -Eq '\"freeze_ms\": [1-9][0-9]{3}' '$T/d1.json'"
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args d1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "a destination took d1: every page verified, rdmig-dest exits 0" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 1024 && test $code -eq 0"
wait_state d1 done
check "d1 is done" test "$(state d1)" = done

# Rollback: criu_opts map to criu flags (the restore gets those that apply).
curl -s --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
	-d "{\"id\":\"r1\",\"pid\":$$,\"secret_file\":\"$T/secret\",\"criu_opts\":{\"shell_job\":true,\"tcp_established\":true,\"ext_unix_sk\":true,\"file_locks\":true,\"link_remap\":true,\"manage_cgroups\":\"soft\",\"log_level\":3}}" \
	http://localhost/v1/migrations >"$T/r1.out" 2>&1
"${CTL[@]}" rollback r1 >"$T/r1-early.out" 2>&1
check "a rollback while criu dump runs exits 1 (409)" \
	eval "test $? -eq 1 && grep -q 'criu dump is running' '$T/r1-early.out'"
wait_state r1 serving
"${CTL[@]}" rollback r1 >"$T/r1-rb.out" 2>&1
check "rdmigctl rollback r1 exits 0" test $? -eq 0
wait_state r1 rolled_back
check "r1 becomes rolled_back, final, no error" \
	eval "\"\${CTL[@]}\" status r1 --json >'$T/r1.json' 2>&1 && grep -q '\"final\": true' '$T/r1.json' && grep -q '\"error\": null' '$T/r1.json'"
check "criu got the options: dump and restore" \
	eval "grep -qx 'dump -t $$ -D $root/r1 -v3 -o dump.log --shell-job --tcp-established --ext-unix-sk --file-locks --link-remap --manage-cgroups=soft' '$root/r1/fake-criu.args' && grep -qx 'restore -D $root/r1 -d -v3 -o restore-rollback.log --shell-job --tcp-established --ext-unix-sk --file-locks --link-remap --manage-cgroups=soft' '$root/r1/fake-criu.args'"
"${CTL[@]}" rollback r1 >"$T/r1-again.out" 2>&1
check "rolling back again exits 1: already rolled back" \
	eval "test $? -eq 1 && grep -q 'already rolled back' '$T/r1-again.out'"

"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id r2 >/dev/null 2>&1
wait_state r2 serving
touch "$root/r2/fail-restore"
"${CTL[@]}" rollback r2 >/dev/null 2>&1
wait_state r2 failed
"${CTL[@]}" status r2 --json >"$T/r2.json" 2>&1
check "a failed restore: r2 failed, naming the log and its error line" \
	grep -q "rollback: criu restore failed (exit status 1); see $root/r2/restore-rollback.log: Error (criu/cr-restore.c:42): fake restore failure" "$T/r2.json"

kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0)" test "$code" -eq 0

# A criu that fails at once.
sock2=$T/run/source2.sock
start_source "$T/source2.log" --api-socket "$sock2" --images-root "$root" --criu /bin/false
CTL=("$RDMIG_CTL" --socket "$sock2")
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id f1 >/dev/null 2>&1
wait_state f1 failed 10
"${CTL[@]}" status f1 --json >"$T/f1.json" 2>&1
check "--criu /bin/false: failed, naming the exit status and dump.log" \
	grep -q "criu dump failed (exit status 1); see $root/f1/dump.log: (no log written)" "$T/f1.json"
"$RDMIG_CTL" --socket "$sock2" rollback f1 >"$T/f1-rb.out" 2>&1
check "... and it cannot be rolled back (409: no complete checkpoint)" \
	eval "test $? -eq 1 && grep -q 'no complete checkpoint' '$T/f1-rb.out'"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20

# The parasite's collision: once (run again, then serving), then every time.
sock3=$T/run/source3.sock
FAKE_CRIU_PROCFD_FAILS=1 start_source "$T/source3.log" --api-socket "$sock3" --images-root "$root" \
	--criu "$fake"
wait_log "$T/source3.log" "api: serving on $sock3" >/dev/null
CTL=("$RDMIG_CTL" --socket "$sock3")
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id p1 >/dev/null 2>&1
wait_state p1 serving 20
"${CTL[@]}" status p1 --json >"$T/p1.json" 2>&1
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
FAKE_CRIU_PROCFD_FAILS=9 start_source "$T/source4.log" --api-socket "$sock3" --images-root "$root" \
	--criu "$fake"
# Its API comes up after its records are read: the same socket, not the last agent's.
wait_log "$T/source4.log" "api: serving on $sock3" >/dev/null
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id p3 >/dev/null 2>&1
wait_state p3 failed 20
"${CTL[@]}" status p3 --json >"$T/p3.json" 2>&1
check "proc fd collision once: dumped again, the failed run's log kept" \
	eval "test \$(grep -c '^dump ' '$root/p1/fake-criu.args') -eq 2 && grep -q \"Can't get proc fd\" '$root/p1/dump-failed-1.log'"
check "... and the second run's images are served (serving)" \
	eval "grep -q '\"state\": \"serving\"' '$T/p1.json' && grep -q 'migration p1: process $$ dumped to $root/p1' '$T/source3.log'"
check "... the log says why it ran again" \
	grep -q "migration p1: criu dump failed before it dumped anything (Error (criu/cr-dump.c:1584): Can't get proc fd (pid: 1)).*dumping it again (1 of 2)" "$T/source3.log"
check "every time: three runs in all, then failed" \
	eval "test \$(grep -c '^dump ' '$root/p3/fake-criu.args') -eq 3 && grep -q '\"state\": \"failed\"' '$T/p3.json'"
check "... naming criu's error, not its closing line" \
	grep -q "criu dump failed (exit status 1); see $root/p3/dump.log: Error (criu/cr-dump.c:1584): Can't get proc fd (pid: 1)" "$T/p3.json"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log"
	diag_file "$T/source2.log"
	diag_file "$T/source3.log"
	diag_file "$T/source4.log"
	diag_file "$T/dest.log"
	for f in "$T"/*.out "$T"/*.json; do diag_file "$f" 5; done
}
finish
