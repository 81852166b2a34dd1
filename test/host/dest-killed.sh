#!/bin/bash
# rdmig-dest is SIGKILLed in the middle of post-copy.  The kernel would then
# wake the faulting threads onto plain anonymous memory (zeros); rdmig-dest's
# guard process, holding duplicates of the userfaultfds, kills the restored
# processes instead.  Never a wrong byte, never a process left running.
. "$(dirname "$0")/lib.sh"
plan 7

mkimage "$T/img" --size 32M --tasks 2
# 20 ms per request and a narrow drain: pages stay missing for seconds.
start_dest "$T/dest.log" -D "$T/img" --local --inject delay=20000 --drain-depth 1
guard=$(pgrep -P "$dest_pid" | head -1)
check "rdmig-dest runs a guard process" test -n "$guard"
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 2 --access random >"$T/standin.out" 2>&1 &
standin=$!
# Kill once the processes fault and pages are still missing.
for _ in $(seq 600); do
	grep -q "lazy pages (" "$T/dest.log" 2>/dev/null && [ "$(grep -c 'lazy pages (' "$T/dest.log")" -ge 2 ] && break
	sleep 0.1
done
sleep 1
kill -KILL "$dest_pid"
wait "$dest_pid" 2>/dev/null
dest_pid=
wait "$standin"
rc=$?
check "the stand-in did not finish as if nothing happened" test "$rc" -ne 0 -a "$rc" -ne 124
check "its processes were killed" grep -q "killed by signal 9" "$T/standin.out"
check "the stand-in never saw a wrong byte" eval "! grep -q 'MISMATCH\|mismatches [1-9]' '$T/standin.out'"
check "the guard logged what it killed" grep -q "guard: rdmig-dest is gone with pages missing: killed process" "$T/dest.log"
check "no process was left running" eval "! pgrep -f 'rdmig-standin -D $T/img' >/dev/null"
# Bounds, not guesses: on a loaded machine the guard's exit may take seconds.
for _ in $(seq 600); do kill -0 "$guard" 2>/dev/null || break; sleep 0.1; done
check "the guard exited" eval "! kill -0 $guard 2>/dev/null"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/standin.out"; diag_file "$T/dest.log"; }
finish
