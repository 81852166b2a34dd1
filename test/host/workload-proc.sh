#!/bin/bash
# rdmig-workload --time-faults keeps out of /proc where a dump may freeze
# it: criu dump fails on an open /proc/self/stat ("unsupported file"), and
# the workload used to read it every 10 ms.  It reads its identity once at
# the start, then only after a thread saw its clock jump (a freeze: here a
# SIGSTOP of two seconds).  Counted under strace: the opens of /proc/self/stat.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
: "${RDMIG_WORKLOAD:?}"

plan 4

# stat_opens: the workload's opens of /proc/self/stat so far.
stat_opens() { grep -c 'openat(.*"/proc/self/stat"' "$T/trace.out"; }

strace -f -qq -e trace=openat -o "$T/trace.out" "$RDMIG_WORKLOAD" --size 4 --threads 2 \
	--report "$T/report" --check-file "$T/check" --pid-file "$T/pid" --time-faults \
	>"$T/workload.out" 2>&1 &
spid=$!
for _ in $(seq 100); do
	[ -s "$T/pid" ] && break
	sleep 0.1
done
wpid=$(cat "$T/pid" 2>/dev/null)
check "the workload started under strace" test -n "$wpid"
# Three seconds: the old pace would have opened it about 300 times.
sleep 3
n1=$(stat_opens)
echo "# /proc/self/stat opened $n1 times in the first 3 s"
check "it read /proc/self/stat at the start" test "$n1" -ge 1
# A loaded host may stall a thread past the 200 ms gap now and then: far
# fewer than one look every 10 ms, whatever the load.
check "and hardly ever while it ran (not every 10 ms)" test "$n1" -lt 10
kill -STOP "$wpid"
sleep 2
kill -CONT "$wpid"
for _ in $(seq 50); do
	[ "$(stat_opens)" -gt "$n1" ] && break
	sleep 0.1
done
n2=$(stat_opens)
echo "# and $n2 times after a stop of 2 s"
check "after a freeze it looks for a restore again" test "$n2" -gt "$n1"
kill -TERM "$wpid" 2>/dev/null
wait "$spid"
finish
