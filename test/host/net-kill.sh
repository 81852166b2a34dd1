#!/bin/bash
# The source is lost mid-migration: killed (SIGKILL) while the stand-in
# faults, or stopped (SIGSTOP) until rdmig-dest declares it dead.  The
# stand-in is killed before it can read a page that never arrived (never a
# wrong or zero byte), rdmig-dest exits 1 naming the lost source, and the
# source's checkpoint is untouched.  The source runs with --no-resume (as an
# older source): with resume the destination pauses instead (net-pause.sh).
. "$(dirname "$0")/netlib.sh"
plan 16

mkimage "$T/src" --size 64M
secret "$T/secret"
sum0=$(dir_sum "$T/src")
# One 4 KiB request at a time, one page per fault: the migration takes a while.
slow=(--drain-depth 1 --drain-chunk 4K --readahead 1 --verify)

for how in kill stop; do
	rm -rf "$T/dst"
	mkdir "$T/dst"
	start_source "$T/source-$how.log" -m "m1:$T/src:$T/secret" --verify --once --no-resume
	extra=()
	[ $how = stop ] && extra=(--dead-after 2)
	# shellcheck disable=SC2046
	start_dest "$T/dest-$how.log" -D "$T/dst" $(net_args m1 "$T/secret") "${slow[@]}" "${extra[@]}"
	# Each process faults its first page before FIN: the faults the checks below count
	# have happened by the time the drain starts, however slow the machine.  One
	# faulting thread: with four, the 64 MiB once came in before the source froze.
	timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 1 --access random --fault-before-fin \
		>"$T/standin-$how.out" 2>&1 &
	spid=$!
	track "$spid"
	wait_log "$T/dest-$how.log" "restore finished: draining"
	sleep 0.2
	# Freeze the source first so the stand-in surely waits for pages, then lose it.
	kill -STOP "$src_pid"
	t0=$(date +%s%N)
	if [ $how = kill ]; then
		sleep 0.3
		kill -KILL "$src_pid"
	fi
	wait_dest 2>/dev/null # (not the shell's note about the killed source)
	dcode=$code
	t1=$(date +%s%N)
	wait_pid "$spid" 20
	rc=$code
	kill -KILL "$src_pid" 2>/dev/null
	wait "$src_pid" 2>/dev/null
	out=$T/standin-$how.out
	log=$T/dest-$how.log
	check "$how: the stand-in was killed" eval "test $rc -eq 4 && grep -q 'killed by signal 9' '$out'"
	check "$how: ... and never saw a wrong or zero byte" never_wrong "$out"
	check "$how: ... after it had faulted pages in" test "$(field "$log" fault)" -gt 0
	check "$how: rdmig-dest exits 1" test "$dcode" -eq 1
	case $how in
	kill) check "kill: rdmig-dest names the lost source" \
		grep -q "error: migration m1, source 127.0.0.1:$src_port: connection to the source lost" "$log" ;;
	stop) check "stop: rdmig-dest names the silent source" \
		grep -q "error: migration m1, source 127.0.0.1:$src_port: the source has been silent for 2 s" "$log" ;;
	esac
	check "$how: ... and stops the processes that still need pages" \
		grep -q "migration failed for this process" "$log"
	check "$how: summary says failed, the missing pages dropped with the process" \
		test "$(field "$log" status)" = failed -a "$(field "$log" dropped)" -gt 0
	check "$how: the source's images dir is untouched" test "$(dir_sum "$T/src")" = "$sum0"
	echo "# $how: rdmig-dest exited $(((t1 - t0) / 1000000)) ms after the source froze"
	[ "$tap_failed" -eq 0 ] || { diag_file "$out"; diag_file "$log"; diag_file "$T/source-$how.log"; }
done
finish
