#!/bin/bash
# Runs inside a soft-RoCE guest: post-copy migration of a real process
# (rdmig-workload) with unmodified CRIU, one side or both.
#   criu-migrate.sh source|dest|both    rdmig-source / rdmig-dest + criu restore
#   criu-migrate.sh criu                CRIU's own lazy migration, one guest
#   criu-migrate.sh psget               rdmig-psget pulls a lazy dump's pages
#   criu-migrate.sh psget-fail          ... and breaks its transfer instead
# source: start the workload in its own pid namespace, `criu dump` it
#   (a normal dump), then serve the images with rdmig-source --once.
# dest: rdmig-dest receives the images and listens on lazy-pages.socket;
#   `criu restore --lazy-pages` restores the workload; the workload then
#   verifies all its memory twice (while still rewriting it), and rdmig-dest
#   must exit 0 once every page moved.  With RDMIG_VARIANT=fork|mremap|
#   madvise the first verification right after restore is that variant
#   instead (test/tools/workload.c): a child verifies the memory, or part
#   of it moves, or part is dropped and part unmapped.  The second one,
#   after the last page, is a full check, then the workload exits.
# criu: `criu dump --lazy-pages --port`, `criu lazy-pages --page-server`,
#   `criu restore --lazy-pages`, same checks.
# psget: `criu dump --leave-stopped` (plain), then `criu dump --lazy-pages
#   --leave-stopped` of the same stopped workload; rdmig-psget
#   (source-agent/criupsrv.c) pulls every lazy page from the dump's page
#   server and compares it with the plain dump's copy; prints its JSON line
#   as `criu-migrate: psget: {...}`, then the workload's state after the lazy
#   transfer, then SIGCONT and a full check of its memory.
# psget-fail: `criu dump --lazy-pages --leave-stopped` of the running
#   workload, SIGSTOP of it while the dump holds it (unless
#   RDMIG_PSGET_NOSTOP=1), `rdmig-psget --break` makes the dump's transfer
#   fail (CRIU then resumes the tasks); prints the workload's state after
#   the dump exits, then SIGCONT and a full check.
# The workload times its first touch of every page after restore
# (--time-faults) and its report, printed, has a `workload: fault latency`
# line.  Prints `criu-migrate: ...` lines, among them one `times: ...` line.
# Environment: RDMIG_BUILD (build dir), RDMIG_SECRET (secret file),
# RDMIG_SIZE_MB (default 64), RDMIG_THREADS (2), RDMIG_TRANSPORT (rdma|tcp),
# RDMIG_PORT (7471), RDMIG_ADDR, RDMIG_SOURCE_ADDR (dest side),
# RDMIG_DEST_ARGS, RDMIG_SOURCE_ARGS, RDMIG_DEST_RESTORE (1: rdmig-dest
# --restore runs criu restore itself, the script does not), RDMIG_CRIU_DIR (default
# /tmp/rdmig-criu: same path in both guests), RDMIG_KEEP_LOGS (a directory
# to copy the CRIU and agent logs to), RDMIG_VARIANT (above),
# RDMIG_FAULT_TIMES (default 1; 0: the workload does not time its faults),
# RDMIG_WL_ARGS (more rdmig-workload options, words, e.g. --delay-us),
# RDMIG_WL_PACE_US (the workload's --delay-us unless RDMIG_WL_ARGS gives
# one: default 1000, 0 full speed; guest.sh says why, above start_workload),
# RDMIG_FAULT_SAMPLES_OUT (a file to copy the workload's fault times to,
# ns one a line), RDMIG_CRIU_LEVEL (criu's -v in the criu role: default 4).
# In the criu role the `times:` line's dump, handover and restore are the
# freeze's parts: dump start to its page server up (the status fd), images
# copied and `criu lazy-pages` up, `criu restore -d` (exits once the
# restored tasks run).
set -u
role=${1:?usage: criu-migrate.sh source|dest|both|criu}
B=${RDMIG_BUILD:?}
size=${RDMIG_SIZE_MB:-64}
threads=${RDMIG_THREADS:-2}
kind=${RDMIG_TRANSPORT:-rdma}
port=${RDMIG_PORT:-7471}
top=${RDMIG_CRIU_DIR:-/tmp/rdmig-criu}
wl=$B/test/rdmig-workload
variant=${RDMIG_VARIANT:-}
case $variant in
'' | fork | mremap | madvise) ;;
*)
	echo "criu-migrate.sh: RDMIG_VARIANT must be fork, mremap or madvise" >&2
	exit 2
	;;
esac
# The workload's report and check files: the same paths before and after.
report=$top/report
check=$top/check
samples=$top/fault-samples

say() { echo "criu-migrate: $*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

keep_logs() {
	[ -n "${RDMIG_KEEP_LOGS:-}" ] || return 0
	mkdir -p "$RDMIG_KEEP_LOGS" && cp -f "$@" "$RDMIG_KEEP_LOGS"/ 2>/dev/null
	return 0
}

# ask_check [REQUEST]: have the workload verify all memory (or do REQUEST:
# exit, fork, mremap, madvise), print its verdict.
ask_check() {
	rm -f "$report"
	# Renamed into place: the workload must never read a half-written request.
	echo "${1:-check}" >"$check.new" && mv -f "$check.new" "$check"
	for _ in $(seq 600); do
		[ -s "$report" ] && break
		sleep 0.1
	done
	if [ ! -s "$report" ]; then
		say "no report from the workload"
		return 1
	fi
	cat "$report"
	grep -qE '^workload: ([a-z]+ )?OK' "$report"
}

# The generation number of the last report.
last_gen() { sed -n 's/.*generation \([0-9]*\).*/\1/p' "$report" | head -n 1; }

# stop_workload: kill what is left of this run's workload (after a failure,
# or one that did not exit), so that later runs in the guest have the CPU.
stop_workload() {
	local p
	# A restored process's command line is in its (lazy) memory: bounded.
	for p in $(timeout 10 pgrep -f -- "--report $report( |\$)"); do
		kill -KILL "$p" 2>/dev/null
	done
	return 0
}

# start_workload: in its own pid namespace and session, fds away from us,
# cwd /; sets wpid (its pid here).
start_workload() {
	local up timing=()
	rm -rf "$top/pid" "$samples"
	[ "${RDMIG_FAULT_TIMES:-1}" = 1 ] && timing=(--time-faults --fault-samples "$samples")
	# shellcheck disable=SC2086 # RDMIG_WL_ARGS: words
	(cd / && exec unshare -p -f setsid "$wl" --size "$size" --threads "$threads" \
		--report "$report" --check-file "$check" --pid-file "$top/pid" "${timing[@]}" \
		--delay-us "${RDMIG_WL_PACE_US:-1000}" ${RDMIG_WL_ARGS:-} </dev/null >/dev/null 2>&1) &
	up=$!
	for _ in $(seq 600); do
		[ -s "$top/pid" ] && break
		sleep 0.1
	done
	# Ours is unshare's child: other workloads (restored ones, zombies) may
	# run in this guest too.
	wpid=$(pgrep -x -P "$up" rdmig-workload | head -n 1)
	[ -n "$wpid" ] || wpid=$(pgrep -x -P "$(pgrep -P "$up" | head -n 1)" rdmig-workload | head -n 1)
	if [ -z "$wpid" ]; then
		say "the workload did not start"
		return 1
	fi
	say "workload pid $wpid (1 in its namespace), $size MiB, $threads threads"
}

# dump DIR [CRIU ARGS...]: criu dump of the workload.
dump() {
	local dir=$1
	shift
	mkdir -p "$dir"
	criu dump -t "$wpid" -D "$dir" -v4 -o dump.log "$@"
}

# wait_gone PID SECS
# stamp_exit PID FILE: in the background, writes the time PID ends to FILE.
# The daemon's end is when every page is in, whatever the workload's check
# in the foreground is still doing; sets stamp_pid.
stamp_exit() {
	rm -f "$2"
	(
		while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
		now >"$2"
	) &
	stamp_pid=$!
}

wait_gone() {
	for _ in $(seq $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# check_during: right after restore, while pages still move, the workload
# verifies all its memory (faulting in what is missing); sets g1.
check_during() {
	say "verifying while pages still move${variant:+: $variant}"
	ask_check "${variant:-check}" || return 1
	g1=$(last_gen)
	if [ -n "${RDMIG_FAULT_SAMPLES_OUT:-}" ] && [ -f "$samples" ]; then
		cp -f "$samples" "$RDMIG_FAULT_SAMPLES_OUT"
	fi
	return 0
}

# check_after G0: after every page moved, verify again and exit; the
# generation must have grown at each step (the workload kept rewriting).
check_after() {
	local g0=$1 g2
	sleep 1
	ask_check exit || return 1
	g2=$(last_gen)
	if [ "$g1" -gt "$g0" ] && [ "$g2" -gt "$g1" ]; then
		say "workload kept rewriting after restore: generation $g0 -> $g1 -> $g2"
	else
		say "workload did not progress: generation $g0 -> $g1 -> $g2"
		return 1
	fi
}

source_side() {
	local t0 t1 st
	rm -rf "$top/dump" "$top/t_dump_end" && mkdir -p "$top/dump"
	start_workload || return 1
	sleep 1
	ask_check || {
		stop_workload
		return 1
	}
	say "before dump: generation $(last_gen)"
	last_gen >"$top/gen0"
	[ -n "${RDMIG_SHARED_DIR:-}" ] && cp "$top/gen0" "$RDMIG_SHARED_DIR/gen0"
	t0=$(now)
	dump "$top/dump"
	st=$?
	t1=$(now)
	keep_logs "$top/dump/dump.log"
	if [ $st -ne 0 ]; then
		say "criu dump failed ($st)"
		grep -E 'Error|error' "$top/dump/dump.log" | tail -n 5
		stop_workload
		return 1
	fi
	say "dumped in $(secs "$t0" "$t1") s: $(du -sh "$top/dump" | cut -f1) (ended $(date +%T.%N -d "@$t1"))"
	secs "$t0" "$t1" >"$top/t_dump"
	echo "$t1" >"$top/t_dump_end"
	[ -n "${RDMIG_SHARED_DIR:-}" ] && cp "$top/t_dump" "$RDMIG_SHARED_DIR/t_dump"
	# shellcheck disable=SC2086
	"$B/source-agent/rdmig-source" -t "$kind" -l "$RDMIG_ADDR:$port" \
		-m "m1:$top/dump:$RDMIG_SECRET" --verify --once ${RDMIG_SOURCE_ARGS:-} \
		2>&1 | sed -u 's/^/source: /'
	return "${PIPESTATUS[0]}"
}

dest_side() {
	local src=${RDMIG_SOURCE_ADDR:-$RDMIG_ADDR} dpid st=0 hand t0 t1 t2 t3 g0 g1=0 own=()
	rm -rf "$top/restore" "$top/work" "$samples" && mkdir -p "$top/restore" "$top/work"
	[ "${RDMIG_DEST_RESTORE:-0}" = 1 ] && own=(--restore)
	t0=$(now)
	# shellcheck disable=SC2086
	"$B/dest-agent/rdmig-dest" --source "$src:$port" -t "$kind" -m m1 \
		--secret-file "$RDMIG_SECRET" --verify -D "$top/restore" -W "$top/work" \
		--connect-timeout 300 --status-fd 3 -o "$top/work/rdmig-dest.log" \
		"${own[@]}" ${RDMIG_DEST_ARGS:-} 3>"$top/work/ready" &
	dpid=$!
	for _ in $(seq 3000); do
		[ -s "$top/work/ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	t1=$(now)
	if [ ! -s "$top/work/ready" ]; then
		say "rdmig-dest never became ready"
		wait "$dpid"
		cat "$top/work/rdmig-dest.log"
		return 1
	fi
	say "rdmig-dest ready at $(date +%T.%N -d "@$t1"): $(find "$top/restore" -type f | wc -l) image files received"
	if [ ${#own[@]} -gt 0 ]; then
		# rdmig-dest runs criu restore: wait for its verdict in the log.
		st=1
		for _ in $(seq 3000); do
			grep -q 'criu restore done in' "$top/work/rdmig-dest.log" && { st=0; break; }
			grep -q 'restore failed' "$top/work/rdmig-dest.log" && break
			kill -0 "$dpid" 2>/dev/null || break
			sleep 0.1
		done
		# rdmig-dest may log its verdict and exit between two looks above.
		grep -q 'criu restore done in' "$top/work/rdmig-dest.log" && st=0
		grep -h 'criu restore done in\|restore failed' "$top/work/rdmig-dest.log" |
			sed 's/^.*rdmig-dest\[[0-9]*\] [a-z]*: /rdmig-dest: /;s/^/criu-migrate: /'
	else
		(cd "$top/work" && criu restore -D "$top/restore" -W "$top/work" --lazy-pages -d \
			-v4 -o restore.log)
		st=$?
	fi
	t2=$(now)
	keep_logs "$top/work/restore.log"
	if [ $st -ne 0 ]; then
		say "criu restore failed ($st)"
		grep -E 'Error|error' "$top/work/restore.log" | tail -n 8
		kill "$dpid" 2>/dev/null
		wait "$dpid"
		cat "$top/work/rdmig-dest.log"
		return 1
	fi
	say "restored in $(secs "$t1" "$t2") s"
	stamp_exit "$dpid" "$top/t_dest_exit"
	check_during || st=1
	if ! wait_gone "$dpid" 600; then
		say "rdmig-dest still running after 600 s"
		kill "$dpid"
		st=1
	fi
	wait "$dpid" || st=1
	wait "$stamp_pid"
	t3=$(cat "$top/t_dest_exit" 2>/dev/null || now)
	keep_logs "$top/work/rdmig-dest.log"
	sed 's/^/dest: /' "$top/work/rdmig-dest.log"
	if [ $st -eq 0 ]; then say "rdmig-dest exited 0"; else say "rdmig-dest failed"; fi
	g0=$(cat "${RDMIG_SHARED_DIR:-$top}/gen0" 2>/dev/null || echo 0)
	check_after "$g0" || st=1
	# handover: dump end to rdmig-dest ready (one guest only: one clock).
	hand='?'
	[ -s "$top/t_dump_end" ] && hand=$(secs "$(cat "$top/t_dump_end")" "$t1")
	stop_workload
	say "times: transport=$kind dump=$(cat "${RDMIG_SHARED_DIR:-$top}/t_dump" 2>/dev/null || echo ?)" \
		"handover=$hand restore=$(secs "$t1" "$t2") all_pages=$(secs "$t1" "$t3")" \
		"(s; all_pages from restore start)"
	return $st
}

# CRIU's own post-copy, one guest: lazy dump + page server, lazy-pages
# daemon over TCP on loopback, lazy restore.
criu_side() {
	local t0 t1 t2 t3 t4 dpid lpid st=0 g0 g1=0 cport=$((port + 1)) clevel=${RDMIG_CRIU_LEVEL:-4}
	rm -rf "$top/cdump" "$top/crestore" "$top/cwork"
	mkdir -p "$top/cdump" "$top/crestore" "$top/cwork"
	start_checked || return 1
	t0=$(now)
	(cd "$top/cdump" && exec criu dump -t "$wpid" -D "$top/cdump" -v"$clevel" -o dump.log \
		--lazy-pages --address 127.0.0.1 --port "$cport" --status-fd 3 3>"$top/cdump.ready") &
	dpid=$!
	for _ in $(seq 3000); do
		[ -s "$top/cdump.ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.05
	done
	t1=$(now)
	if [ ! -s "$top/cdump.ready" ]; then
		say "criu dump --lazy-pages never became ready"
		wait "$dpid"
		grep -E 'Error' "$top/cdump/dump.log" | tail -n 5
		stop_workload
		return 1
	fi
	say "lazy dump ready in $(secs "$t0" "$t1") s: $(du -sh "$top/cdump" | cut -f1)"
	cp -a "$top/cdump/." "$top/crestore/"
	(cd "$top/cwork" && exec criu lazy-pages --page-server --address 127.0.0.1 \
		--port "$cport" -D "$top/crestore" -W "$top/cwork" -v"$clevel" -o lazy-pages.log \
		--status-fd 3 3>"$top/cwork/ready") &
	lpid=$!
	for _ in $(seq 3000); do
		[ -s "$top/cwork/ready" ] && break
		kill -0 "$lpid" 2>/dev/null || break
		sleep 0.05
	done
	t2=$(now)
	(cd "$top/cwork" && criu restore -D "$top/crestore" -W "$top/cwork" --lazy-pages -d \
		-v"$clevel" -o restore.log)
	st=$?
	t3=$(now)
	if [ $st -ne 0 ]; then
		say "criu restore failed ($st)"
		grep -E 'Error' "$top/cwork/restore.log" | tail -n 8
		kill "$lpid" "$dpid" 2>/dev/null
		stop_workload
		return 1
	fi
	say "restored in $(secs "$t2" "$t3") s"
	stamp_exit "$lpid" "$top/t_lp_exit"
	check_during || st=1
	wait_gone "$lpid" 600 || { say "criu lazy-pages still running"; st=1; }
	wait "$lpid" || { say "criu lazy-pages failed"; st=1; }
	wait "$stamp_pid"
	t4=$(cat "$top/t_lp_exit" 2>/dev/null || now)
	wait "$dpid" || { say "criu dump --lazy-pages failed"; st=1; }
	keep_logs "$top/cdump/dump.log" "$top/cwork/lazy-pages.log" "$top/cwork/restore.log"
	[ $st -eq 0 ] && say "criu lazy-pages exited 0"
	check_after "$g0" || st=1
	stop_workload
	say "times: transport=criu-tcp dump=$(secs "$t0" "$t1") handover=$(secs "$t1" "$t2")" \
		"restore=$(secs "$t2" "$t3") all_pages=$(secs "$t2" "$t4")" \
		"(s; all_pages from restore start)"
	return $st
}

# start_checked: start the workload and have it verify itself; sets g0.
start_checked() {
	start_workload || return 1
	sleep 1
	ask_check || {
		stop_workload
		return 1
	}
	g0=$(last_gen)
	say "before dump: generation $g0"
}

# lazy_dump_ready DIR PORT: `criu dump --lazy-pages --leave-stopped` of the
# workload into DIR, its page server on 127.0.0.1:PORT; waits for its
# status byte; sets dpid.
lazy_dump_ready() {
	local dir=$1 cport=$2
	rm -rf "$dir" "$dir.ready" && mkdir -p "$dir"
	(cd "$dir" && exec criu dump -t "$wpid" -D "$dir" -v4 -o dump.log \
		--lazy-pages --leave-stopped --address 127.0.0.1 --port "$cport" \
		--status-fd 3 3>"$dir.ready") &
	dpid=$!
	for _ in $(seq 3000); do
		[ -s "$dir.ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.05
	done
	[ -s "$dir.ready" ] && return 0
	say "criu dump --lazy-pages never became ready"
	wait "$dpid"
	grep -E 'Error' "$dir/dump.log" | tail -n 5
	return 1
}

# lazy_dump_end DIR WHAT: the dump's verdict line from its log, the
# workload's state "after WHAT", then SIGCONT, a full check and its exit.
lazy_dump_end() {
	local state
	keep_logs "$1/dump.log"
	grep -E 'Lazy pages transfer' "$1/dump.log" |
		sed 's/^.*\(Lazy pages transfer\)/criu-migrate: dump: \1/'
	sleep 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$wpid/status" 2>/dev/null)
	say "after $2 the workload is in state ${state:-gone}"
	kill -CONT "$wpid" 2>/dev/null
	sleep 1
	if ask_check exit; then
		say "workload after SIGCONT: generation $g0 -> $(last_gen)"
	else
		stop_workload
		return 1
	fi
	stop_workload
}

# rdmig-psget as the client of `criu dump --lazy-pages`, one guest.
psget_side() {
	local dpid st=0 g0 out
	rm -rf "$top/pdump" && mkdir -p "$top/pdump"
	start_checked || return 1
	# Both dumps see the same memory: the first leaves the tasks stopped.
	if ! dump "$top/pdump" --leave-stopped; then
		say "plain criu dump failed"
		stop_workload
		return 1
	fi
	keep_logs "$top/pdump/dump.log"
	lazy_dump_ready "$top/ldump" $((port + 2)) || {
		stop_workload
		return 1
	}
	say "lazy dump ready: $(du -sh "$top/ldump" | cut -f1)"
	out=$("$B/test/rdmig-psget" -D "$top/ldump" --address 127.0.0.1 --port $((port + 2)) \
		--compare "$top/pdump") || st=1
	say "psget: $out"
	wait "$dpid" || { say "criu dump --lazy-pages failed"; st=1; }
	lazy_dump_end "$top/ldump" "the lazy transfer" || st=1
	return $st
}

# A lazy dump whose transfer fails: the source tasks must stay stopped.
psget_fail_side() {
	local dpid st=0 g0 out
	start_checked || return 1
	lazy_dump_ready "$top/fdump" $((port + 3)) || {
		stop_workload
		return 1
	}
	# What rdmig-source does after the status byte (design.md section 11).
	[ "${RDMIG_PSGET_NOSTOP:-0}" = 1 ] || kill -STOP "$wpid"
	out=$("$B/test/rdmig-psget" -D "$top/fdump" --address 127.0.0.1 --port $((port + 3)) \
		--break) || st=1
	say "psget: $out"
	if wait "$dpid"; then
		say "criu dump --lazy-pages exited 0"
		st=1
	else
		say "criu dump --lazy-pages failed, as it should"
	fi
	lazy_dump_end "$top/fdump" "the failed lazy transfer" || st=1
	return $st
}

mkdir -p "$top"
case $role in
source) source_side ;;
dest) dest_side ;;
both)
	: "${RDMIG_SECRET:?}"
	source_side &
	spid=$!
	dest_side
	st=$?
	wait "$spid" || st=1
	exit $st
	;;
criu) criu_side ;;
psget) psget_side ;;
psget-fail) psget_fail_side ;;
*)
	echo "criu-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
