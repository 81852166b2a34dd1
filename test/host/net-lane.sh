#!/bin/bash
# Faults over TCP on a connection of their own (FEAT_FAULT_CONN,
# docs/protocol.md §7.2): with both agents offering it, the faults' reads go
# on the fault connection while the drain's go on the control connection
# (drain.fault_lane_reads in the progress JSON counts them; the stand-in
# faults a page before its FIN, so a drain that wins the race with its
# threads cannot leave the fault connection unused); with
# --one-lane on either side (as an older peer) there is none and the
# migration still completes, every page verified.  Over TCP the drain keeps
# its depth while faults come, unless --drain-floor N lets them narrow it
# down to N full requests (never below).
. "$(dirname "$0")/netlib.sh"
plan 21

mkimage "$T/src" --size 32M
secret "$T/secret"

# lanes FILE KEY: KEY's value in rdmig-dest's "lanes:" line.
lanes() { grep -o "lanes: .*" "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | tail -1; }

# lane_reads FILE: fault_lane_reads of the last --progress-fd line ("None": null).
lane_reads() { progress_last "$1" 'j.get("fault_lane_reads")'; }

# run NAME SOURCE_ARGS DEST_ARGS: one migration, the big drain READs of
# 1 MiB in flight while 4 threads fault at random.
run() {
	local name=$1 sargs=$2 dargs=$3
	mkdir "$T/dst-$name"
	# shellcheck disable=SC2086
	start_source "$T/source-$name.log" -m "m1:$T/src:$T/secret" --verify --once $sargs
	exec 7>"$T/progress-$name.jsonl"
	# shellcheck disable=SC2046,SC2086
	start_dest "$T/dest-$name.log" -D "$T/dst-$name" $(net_args m1 "$T/secret") --verify \
		--drain-depth 4 --drain-chunk 1M --progress-fd 7 $dargs
	exec 7>&-
	[ -z "${before_standin:-}" ] || "$before_standin" "$name"
	timeout 60 "$RDMIG_STANDIN" -D "$T/dst-$name" --threads 4 --access random --fault-before-fin \
		>"$T/standin-$name.out" 2>&1
	rc=$?
	wait_dest
	wait_pid "$src_pid" 20
	src_code=$code
}

# completed NAME: the stand-in verified every page and both agents exit 0.
completed() {
	check "$1: stand-in exits 0, every page verified" \
		eval "test $rc -eq 0 && standin_ok '$T/standin-$1.out' 8192"
	check "$1: both agents exit 0, every lazy page installed" \
		eval "test \"\$(field '$T/dest-$1.log' status)\" = ok -a $src_code -eq 0 && consistent '$T/dest-$1.log'"
}
# one_lane NAME: no fault connection was opened, none counted.
one_lane() {
	check "$1: no fault connection (fault_lane_reads null)" \
		test "$(lane_reads "$T/progress-$1.jsonl")" = None
	check "$1: the source saw one connection" \
		test "$(grep -c "connection from" "$T/source-$1.log")" -eq 1
}

run lane "" ""
completed lane
n=$(lane_reads "$T/progress-lane.jsonl")
check "the faults' reads went on the fault connection (fault_lane_reads $n > 0)" \
	test "${n:-0}" != None -a "${n:-0}" -gt 0
check "... and no more of them than pages faulted" \
	test "${n:-0}" -le "$(field "$T/dest-lane.log" fault)"
check "the source admitted the fault connection after its proof" \
	eval "test \$(grep -c 'connection from' '$T/source-lane.log') -eq 2 && grep -q 'fault connection up' '$T/source-lane.log'"
check "no --drain-floor: the TCP drain kept its depth under faults (drain_shrinks=0)" \
	test "$(lanes "$T/dest-lane.log" drain_shrinks)" = 0

# With a floor: faults narrow the TCP drain, to 2 requests of 1 MiB at least.
run floor "" "--drain-floor 2"
completed floor
check "floor: faults narrowed the TCP drain (drain_shrinks > 0)" \
	test "$(lanes "$T/dest-floor.log" drain_shrinks)" -gt 0
check "floor: never below 2 requests of the full chunk (every progress line)" \
	test "$(python3 -c 'import json,sys
l=[json.loads(x) for x in open(sys.argv[1]) if x.strip()]
d=[x.get("drain_depth") for x in l if x.get("drain_depth") is not None]
c=[x.get("drain_chunk") for x in l if x.get("drain_chunk") is not None]
print(bool(d) and min(d) >= 2 and min(c or [1 << 20]) == 1 << 20)' "$T/progress-floor.jsonl")" = True

# cut NAME: destroys the destination's end of the fault connection (the
# second connection the source accepted) once it is up, before any fault.
cut() {
	local port
	wait_log "$T/source-$1.log" "fault connection up" >/dev/null
	port=$(sed -n 's/.*info: connection from 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/source-$1.log" | sed -n 2p)
	ss -K -t src "127.0.0.1:$port" >/dev/null 2>&1
	wait_log "$T/dest-$1.log" "faults share the control connection" >/dev/null
}

# Losing the fault connection alone: faults go on the control connection.
before_standin=cut run cut "" ""
completed cut
check "cut: the destination went on without the fault connection" \
	grep -q "fault connection closed (.*); faults share the control connection" "$T/dest-cut.log"

run dest-one-lane "" --one-lane
completed dest-one-lane
one_lane dest-one-lane

run source-one-lane --one-lane ""
completed source-one-lane
one_lane source-one-lane
[ "$tap_failed" -eq 0 ] || for f in "$T"/*.log; do diag_file "$f"; done
finish
