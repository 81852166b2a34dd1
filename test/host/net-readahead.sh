#!/bin/bash
# Read-ahead that follows the workload (dest-agent/readahead.h), over TCP:
# a sequential scan is detected as "sequential" and fetched in large
# windows, random access as "random" one page at a time, every 32nd page
# as "strided" with its stride; the progress line's "readahead" object
# (--progress-fd) names the pattern, window and stride per task.
# No drain until the stand-in is done (--fin-delay), so the faults see the
# pattern.
. "$(dirname "$0")/netlib.sh"
plan 13

mkimage "$T/src" --size 16M
secret "$T/secret"

# ra FILE EXPR: EXPR of the last progress line's "readahead" object `r`.
ra() { progress_last "$1" "(lambda r: $2)(j.get('readahead'))"; }

# run NAME [ACCESS]: one migration, the stand-in's one thread reading in
# that order (default NAME).
run() {
	local access=${2:-$1}
	mkdir "$T/dst-$1"
	start_source "$T/source-$1.log" -m "m1:$T/src:$T/secret" --once
	exec 7>"$T/progress-$1.jsonl"
	# shellcheck disable=SC2046
	start_dest "$T/dest-$1.log" -D "$T/dst-$1" $(net_args m1 "$T/secret") --progress-fd 7 \
		--drain-depth 1 --drain-chunk 4K
	exec 7>&-
	timeout 60 "$RDMIG_STANDIN" -D "$T/dst-$1" --access "$access" --fin-delay 600000 >"$T/standin-$1.out" 2>&1
	rc=$?
	wait_dest
	wait_pid "$src_pid" 20
	check "$1: every page verified, both agents exit 0" \
		eval "test $rc -eq 0 && standin_ok '$T/standin-$1.out' 4096 && test \"\$(field '$T/dest-$1.log' status)\" = ok"
}

run seq
check "seq: the task's pattern is sequential" \
	test "$(ra "$T/progress-seq.jsonl" 'r["tasks"][0]["pattern"]')" = sequential
check "seq: its window grew to the maximum (64 pages)" \
	test "$(ra "$T/progress-seq.jsonl" 'r["tasks"][0]["window"]')" = 64
check "seq: no stride" \
	test "$(ra "$T/progress-seq.jsonl" 'r["tasks"][0]["stride"]')" = 0
check "seq: most faults sequential" \
	test "$(ra "$T/progress-seq.jsonl" 'r["sequential"] > r["random"] + r["strided"]')" = True

run random
check "random: the task's pattern is random" \
	test "$(ra "$T/progress-random.jsonl" 'r["tasks"][0]["pattern"]')" = random
# Not the last window: a random fault now and then lands where a stream
# or a stride would go next, and takes a larger window for that one fault.
check "random: nearly every fault took a one-page window (>= 95%)" \
	test "$(ra "$T/progress-random.jsonl" 'r["random"] >= 0.95 * (r["random"] + r["sequential"] + r["strided"])')" = True
check "random: far more faults than the scan needed" \
	test "$(field "$T/dest-random.log" faults)" -gt "$(field "$T/dest-seq.log" faults)"

run stride stride:32
check "stride: the task's pattern is strided" \
	test "$(ra "$T/progress-stride.jsonl" 'r["tasks"][0]["pattern"]')" = strided
check "stride: its stride is 32 pages" \
	test "$(ra "$T/progress-stride.jsonl" 'r["tasks"][0]["stride"]')" = 32
check "stride: most faults strided" \
	test "$(ra "$T/progress-stride.jsonl" 'r["strided"] > r["random"] + r["sequential"]')" = True
[ "$tap_failed" -eq 0 ] || for f in "$T"/*.log; do diag_file "$f"; done
finish
