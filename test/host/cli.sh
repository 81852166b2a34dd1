#!/bin/bash
# rdmig-dest as a drop-in for `criu lazy-pages`: options, --work-dir,
# --daemon with --pidfile, --status-fd, and SIGTERM with pages missing.
. "$(dirname "$0")/lib.sh"
plan 16

"$RDMIG_DEST" --bogus >"$T/o" 2>&1
check "an unknown option exits 2" test $? -eq 2
check "... with a clear message" grep -q "unknown option '--bogus'" "$T/o"
"$RDMIG_DEST" --local >"$T/o" 2>&1
check "a missing -D exits 2" test $? -eq 2
"$RDMIG_DEST" -D /nonexistent --local --readahead 0 >"$T/o" 2>&1
check "a bad value exits 2" test $? -eq 2
"$RDMIG_DEST" --help >"$T/o" 2>&1
check "--help exits 0" eval "test $? -eq 0 && grep -q -- --work-dir '$T/o'"

mkimage "$T/img" --size 16M
mkdir "$T/work"
"$RDMIG_DEST" -D "$T/img" -W "$T/work" --local -d --pidfile "$T/pid" -o "$T/daemon.log"
check "--daemon returns 0 once ready" test $? -eq 0
check "the socket is in the work dir" test -S "$T/work/lazy-pages.socket"
dpid=$(cat "$T/pid" 2>/dev/null)
check "the pidfile names the running daemon" kill -0 "${dpid:-0}"
timeout 60 "$RDMIG_STANDIN" -D "$T/img" -W "$T/work" --threads 2 >"$T/standin.out" 2>&1
check "a stand-in in the same work dir completes" test $? -eq 0
for i in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
check "the daemon exits when done" eval "! kill -0 $dpid 2>/dev/null"
check "the daemon's log ends with an ok summary" test "$(field "$T/daemon.log" status)" = ok

# SIGTERM while pages are missing (the source hangs): processes are killed, not fed zeros.
start_dest "$T/term.log" -D "$T/img" --local --inject hang-after=10
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 2 >"$T/standin2.out" 2>&1 &
spid=$!
for i in $(seq 100); do grep -q "restore finished" "$T/term.log" && break; sleep 0.1; done
sleep 0.3
kill -TERM "$dest_pid"
wait_dest
wait "$spid"
rc=$?
check "SIGTERM with pages missing: rdmig-dest exits 1" test "$code" -eq 1
check "... and says the processes are killed" grep -q "killing the restored processes" "$T/term.log"
check "... the stand-in was killed" test "$rc" -eq 4
check "... and never saw a wrong byte" eval "! grep -q 'MISMATCH\|mismatches [1-9]' '$T/standin2.out'"

# SIGTERM with nothing connected: a quick, clean stop.
start_dest "$T/idle.log" -D "$T/img" --local
kill -TERM "$dest_pid"
wait_dest
check "SIGTERM while idle: exits (1: nothing was migrated)" test "$code" -eq 1
[ "$tap_failed" -eq 0 ] || { diag_file "$T/daemon.log"; diag_file "$T/term.log"; diag_file "$T/standin2.out"; }
finish
