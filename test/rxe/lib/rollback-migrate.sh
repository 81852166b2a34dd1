#!/bin/bash
# Rollback after the destination is lost mid-migration, in a host pair
# (test/rxe/t/34-rollback-dest-killed.t).
#   rollback-migrate.sh source   rdmig-source with its API; per case, dumps a
#                                workload (rdmigctl migrate --pid) and, once
#                                the destination is lost, rolls it back
#   rollback-migrate.sh dest     per case, rdmig-dest --restore restores the
#                                workload, then the destination is lost
# Cases (RDMIG_ROLLBACK_CASES, default "kill link"), one migration each:
#   kill  kill -9 rdmig-dest during post-copy (pages still remaining)
#   link  `ip link set eth0 down` in the dest guest during post-copy
# Per case ID (r-kill, r-link), through RDMIG_SHARED_DIR:
#   source: workload (RDMIG_SIZE_MB MiB, 2 threads) verified; migrate --pid;
#     serving; checksums of the checkpoint; -> ID.serving
#   dest: rdmig-dest --restore; "criu restore done" -> ID.restored
#   source: rollback while the destination fetches must be refused -> ID.refused
#   dest: the loss (kill -9 / link down) -> ID.lost; then watches the
#     restored workload: it must be killed, never run on with missing pages
#     (if it still runs, it is asked to verify its memory, which reports the
#     zero pages, and is killed by the script) -> ID.dest
#   source: the loss must show in its log; state still serving (waiting for
#     another destination), checkpoint unchanged; after ID.dest, a plain
#     rdmigctl rollback ID is refused (no destination agent to confirm the
#     workload stopped), rdmigctl rollback --force ID -> rolled_back; the workload verifies all its
#     memory twice and its generation grows -> ID.finished
# Prints `rollback-migrate: ...` lines.  Environment: RDMIG_BUILD,
# RDMIG_SECRET, RDMIG_ADDR, RDMIG_SOURCE_ADDR, RDMIG_SHARED_DIR,
# RDMIG_SIZE_MB (64), RDMIG_PORT (7471), RDMIG_DEAD_AFTER (5, both agents),
# RDMIG_ROLLBACK_CASES, RDMIG_DEST_ARGS (more rdmig-dest options; the default
# slows the drain to one 4 KiB page at a time so pages remain at the loss).
set -u
role=${1:?usage: rollback-migrate.sh source|dest}
B=${RDMIG_BUILD:?}
secret=${RDMIG_SECRET:?}
sh=${RDMIG_SHARED_DIR:?}
size=${RDMIG_SIZE_MB:-64}
port=${RDMIG_PORT:-7471}
dead=${RDMIG_DEAD_AFTER:-5}
cases=${RDMIG_ROLLBACK_CASES:-kill link}
top=/tmp/rdmig-rollback
# The agents' logs; follow() copies them to the output as they grow.
slog=$top/source.log
wl=$B/test/rdmig-workload
sock=$top/source.sock
ctl=("$B/rdmigctl/rdmigctl" --socket "$sock")

say() { echo "rollback-migrate: $*"; }
note() { echo "rollback-migrate: $(date +%T.%N | cut -c1-12) $*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# poll SECS CMD...: run CMD every 0.1 s until it succeeds (0) or SECS
# seconds passed (1).  By the clock: under TCG each round costs much more
# than 0.1 s.
poll() {
	local end=$((SECONDS + $1))
	shift
	while :; do
		"$@" && return 0
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.1
	done
}
wait_file() { poll "$2" test -e "$1"; }

# live PID: runs and is not a zombie (the guest's init does not reap).
live() { [ -n "$1" ] && grep -q '^State:[[:space:]]*[^Z]' "/proc/$1/status" 2>/dev/null; }
not_live() { ! live "$1"; }
workload_pid() {
	local p
	for p in $(pgrep -x rdmig-workload); do
		live "$p" && echo "$p" && return 0
	done
}
gone() { poll "$2" not_live "$1"; }
rss_mib() { awk '/^RssAnon:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

# ask_check ID [exit]: the workload of case ID verifies all its memory.
ask_check() {
	local r=$top/$1/report
	rm -f "$r"
	echo "${2:-check}" >"$top/$1/check"
	if ! poll 60 test -s "$r"; then
		say "$1: no report from the workload"
		return 1
	fi
	say "$1: $(cat "$r")"
	grep -q '^workload: OK' "$r"
}
last_gen() { sed -n 's/.*generation \([0-9]*\).*/\1/p' "$top/$1/report"; }

start_workload() {
	local id=$1
	mkdir -p "$top/$id"
	(cd / && exec unshare -p -f setsid "$wl" --size "$size" --threads 2 \
		--report "$top/$id/report" --check-file "$top/$id/check" --pid-file "$top/$id/pid" \
		</dev/null >/dev/null 2>&1) &
	poll 60 test -s "$top/$id/pid"
	wpid=$(workload_pid)
	[ -n "$wpid" ] || {
		say "$id: the workload did not start"
		return 1
	}
	say "$id: workload pid $wpid, $size MiB, 2 threads"
}

# follow LOG PREFIX: copy LOG's lines to stdout as they come; sets fpid.
follow() {
	touch "$1"
	tail -n +1 -F "$1" 2>/dev/null | sed -u "s/^/$2/" &
	fpid=$!
}

# ---- source guest -------------------------------------------------------

json_field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([a-z_0-9]*\).*/\1/p"; }
state() { "${ctl[@]}" status "$1" --json 2>/dev/null | json_field state; }
# wait_state ID STATE SECS: prints the states seen on the way.
wait_state() {
	local seen='' s end=$((SECONDS + $3))
	while :; do
		s=$(state "$1")
		[ "${seen##* }" = "$s" ] || seen="$seen $s"
		[ "$s" = "$2" ] && break
		case $s in failed | aborted | rolled_back | done) break ;; esac
		[ "$SECONDS" -ge "$end" ] && break
		sleep 0.1
	done
	say "$1 states:$seen"
	[ "$s" = "$2" ]
}

# noticed LINE: the source's first log line after LINE about the lost
# destination (and success), or nothing (and failure).
noticed() {
	tail -n +"$(($1 + 1))" "$slog" |
		grep -m1 -E 'destination lost|fell silent|the destination aborted|connection closed|disconnected' |
		sed 's/^.*rdmig-source\[[0-9]*\] [a-z]*: //' | grep .
}

sums() { (cd "$top/images/$1" && sha256sum ./*.img | sort -k2); }

source_case() {
	local id=r-$1 g0 g1 g2 from t0 t1 j line out
	start_workload "$id" || return 1
	sleep 1
	ask_check "$id" || return 1
	g0=$(last_gen "$id")
	say "$id: before the dump: generation $g0"
	"${ctl[@]}" migrate --pid "$wpid" --secret-file "$secret" --id "$id" --verify 2>&1 |
		sed 's/^/rollback-migrate: /'
	wait_state "$id" serving 180 || return 1
	gone "$wpid" 10 && say "$id: the dumped workload is gone from the source"
	sums "$id" >"$top/$id.sums0"
	say "$id: checkpoint: $(wc -l <"$top/$id.sums0") image files, $(du -sh "$top/images/$id" | cut -f1)"
	from=$(wc -l <"$slog")
	: >"$sh/$id.serving"
	# While the destination fetches, a rollback would fork the process.
	poll 300 test -e "$sh/$id.restored" -o -e "$sh/$id.dest"
	if [ ! -e "$sh/$id.restored" ]; then
		say "$id: the destination did not restore: $(cat "$sh/$id.dest" 2>/dev/null)"
		: >"$sh/$id.finished"
		return 1
	fi
	out=$("${ctl[@]}" rollback "$id" 2>&1)
	say "$id: rollback while the destination fetches: status $? ($out)"
	say "$id: state after the refused rollback: $(state "$id")"
	: >"$sh/$id.refused"
	if ! wait_file "$sh/$id.lost" 300; then
		say "$id: the destination was never lost"
		return 1
	fi
	t0=$(now)
	poll 60 noticed "$from" >/dev/null
	t1=$(now)
	line=$(noticed "$from")
	if [ -n "$line" ]; then
		say "$id: the source noticed the loss $(secs "$t0" "$t1") s after it: $line"
	else
		say "$id: the source did not notice the loss within $(secs "$t0" "$t1") s"
	fi
	sleep 0.5
	j=$("${ctl[@]}" status "$id" --json 2>&1)
	say "$id: after the loss: state $(json_field state <<<"$j"), error $(sed -n 's/.*"error": *\([^,]*\),.*/\1/p' <<<"$j" | head -n 1)," \
		"pages remaining $(json_field pages_remaining <<<"$j") of $(json_field pages_total <<<"$j")"
	if sums "$id" | cmp -s - "$top/$id.sums0"; then
		say "$id: the checkpoint is unchanged after the loss"
	else
		say "$id: the checkpoint CHANGED after the loss"
		sums "$id" | diff "$top/$id.sums0" - | head -n 10
	fi
	# Only once the destination made sure no restored copy runs there.
	if ! wait_file "$sh/$id.dest" 300; then
		say "$id: no word from the destination"
		return 1
	fi
	say "$id: destination: $(cat "$sh/$id.dest")"
	# Never twice: no destination agent can confirm the workload stopped
	# there, so a plain rollback is refused; the operator (this script,
	# told by the destination above) forces it.
	out=$("${ctl[@]}" rollback "$id" 2>&1)
	say "$id: rollback without force: status $? ($out)"
	"${ctl[@]}" rollback --force "$id" 2>&1 | sed 's/^/rollback-migrate: /'
	if ! wait_state "$id" rolled_back 180; then
		"${ctl[@]}" status "$id" 2>&1 | sed 's/^/rollback-migrate: /'
		grep -E 'Error' "$top/images/$id/restore-rollback.log" | tail -n 5
		return 1
	fi
	sleep 1
	ask_check "$id" || return 1
	g1=$(last_gen "$id")
	sleep 1
	ask_check "$id" exit || return 1
	g2=$(last_gen "$id")
	if [ "$g1" -ge "$g0" ] && [ "$g2" -gt "$g1" ]; then
		say "$id: the rolled back workload verified its memory and kept rewriting it: generation $g0 -> $g1 -> $g2"
	else
		say "$id: the rolled back workload did not progress: generation $g0 -> $g1 -> $g2"
		return 1
	fi
	gone "$(workload_pid)" 10
}

source_side() {
	local spid st=0 c
	rm -rf "$top" && mkdir -p "$top"
	follow "$slog" "source: "
	# Its stderr, not -o: with -o (freopen of stderr) rdmig-source's log is
	# block-buffered and shows its lines only in 4 KiB chunks or at exit.
	# --no-resume: the destination lost in post-copy fails (as with an older
	# source) instead of pausing, which is what a rollback needs here.
	"$B/source-agent/rdmig-source" -t rdma -l "$RDMIG_ADDR:$port" --verify --api-socket "$sock" \
		--images-root "$top/images" --dead-after "$dead" --no-resume 2>>"$slog" &
	spid=$!
	poll 10 test -S "$sock"
	for c in $cases; do
		note "case $c"
		source_case "$c" || {
			say "r-$c: FAILED"
			st=1
		}
		: >"$sh/r-$c.finished"
	done
	kill -TERM "$spid"
	wait "$spid"
	sleep 0.5
	kill "$fpid"
	echo "$st" >"$sh/source.end"
	return $st
}

# ---- dest guest ---------------------------------------------------------

restore_ended() { grep -q 'criu restore done in\|restore failed' "$2" || ! kill -0 "$1" 2>/dev/null; }

dest_case() {
	local id=r-$1 how=$1 dpid rp log t0 t1 rss verdict rep='' killed=no
	log=$top/$id/rdmig-dest.log
	rm -rf "${top:?}/$id" && mkdir -p "$top/$id/restore" "$top/$id/work"
	if ! wait_file "$sh/$id.serving" 300; then
		say "$id: the source never served"
		return 1
	fi
	# shellcheck disable=SC2086
	"$B/dest-agent/rdmig-dest" --source "$RDMIG_SOURCE_ADDR:$port" -t rdma -m "$id" \
		--secret-file "$secret" --verify -D "$top/$id/restore" -W "$top/$id/work" \
		--connect-timeout 60 --dead-after "$dead" -o "$log" --restore 2>>"$log" \
		${RDMIG_DEST_ARGS:---readahead 1 --drain-depth 1 --drain-chunk 4K} &
	dpid=$!
	follow "$log" "dest: "
	poll 300 restore_ended "$dpid" "$log"
	if ! grep -q 'criu restore done in' "$log" 2>/dev/null; then
		say "$id: the restore did not succeed"
		kill "$dpid" 2>/dev/null
		wait "$dpid"
		sleep 0.5
		kill "$fpid"
		echo "restore failed" >"$sh/$id.dest"
		wait_file "$sh/$id.finished" 60
		return 1
	fi
	rp=$(sed -n 's/.*restored root pid \([0-9]*\).*/\1/p' "$log" | head -n 1)
	live "$rp" || rp=$(workload_pid)
	say "$id: $(grep -h -m1 -o 'criu restore done in.*' "$log"); workload pid $rp"
	: >"$sh/$id.restored"
	wait_file "$sh/$id.refused" 30
	rss=$(rss_mib "$rp")
	t0=$(now)
	case $how in
	kill)
		kill -9 "$dpid"
		wait "$dpid" 2>/dev/null
		say "$id: killed rdmig-dest (kill -9) with the workload at $rss of $size MiB resident"
		;;
	link)
		ip link set "${RDMIG_RXE_NETDEV:-eth0}" down
		say "$id: link ${RDMIG_RXE_NETDEV:-eth0} down with the workload at $rss of $size MiB resident"
		;;
	esac
	: >"$sh/$id.lost"
	# The restored workload may not run on with missing pages: it must be
	# killed.  Give whoever should do it the agent's dead-after and more.
	if gone "$rp" $((dead * 3 + 15)); then
		t1=$(now)
		killed=yes
		verdict="the restored workload was killed $(secs "$t0" "$t1") s after the loss"
	else
		t1=$(now)
		ask_check "$id" && rep=OK || rep=$(cat "$top/$id/report" 2>/dev/null)
		verdict="the restored workload still runs $(secs "$t0" "$t1") s after the loss: ${rep:-no report}"
		kill -9 "$rp" 2>/dev/null
		gone "$rp" 10
	fi
	say "$id: $verdict"
	if [ "$how" = link ]; then
		poll 60 not_live "$dpid"
		kill -0 "$dpid" 2>/dev/null && kill "$dpid"
		wait "$dpid"
		say "$id: rdmig-dest exited with status $?"
	fi
	sleep 0.5
	kill "$fpid"
	# Only now may the source roll back: no restored copy runs here.
	[ -z "$(workload_pid)" ] && echo "no restored workload runs here (killed by the agents: $killed)" >"$sh/$id.dest" ||
		echo "a restored workload still runs here" >"$sh/$id.dest"
	if [ "$how" = link ]; then
		ip link set "${RDMIG_RXE_NETDEV:-eth0}" up
	fi
	wait_file "$sh/$id.finished" 300
}

dest_side() {
	local st=0 c
	rm -rf "$top" && mkdir -p "$top"
	for c in $cases; do
		note "case $c"
		dest_case "$c" || st=1
	done
	# The source's last lines come when it ends: wait for them.
	wait_file "$sh/source.end" 120
	return $st
}

case $role in
source) source_side ;;
dest) dest_side ;;
*)
	echo "rollback-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
