#!/bin/bash
# shellcheck disable=SC2034 # GUEST_TAG, size, report, check, api: read by guest.sh
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
#     workload stopped), rdmigctl rollback --force ID -> rolled_back; the
#     workload verifies all its memory twice and its generation grows
#     -> ID.finished
# Prints `rollback-migrate: ...` lines (guest.sh's say) and the agents'
# logs (`source: `, `dest: `).  The machine-readable ones, `rollback-migrate:
# ID WHAT json: {...}` (tap.sh's guest_json "ID WHAT"), on the source:
#   migrate, fetching rollback, plain rollback, forced rollback: rdmigctl
#     --json's exit status, the API's answer and its error (say_ctl);
#   serving, fetching (after the refused rollback), lost (after the loss),
#     final: the migration's resource from the source agent (say_json);
#   dumped: the dumped workload left the source (say_gone);
#   noticed: {"noticed", "after_s", "line"}: the source's first log line
#     about the lost destination (its JSON does not tell a lost destination
#     from a slow one: the state stays serving) and how long after the loss;
#   checkpoint: {"files", "unchanged"}: its image files' sha256 after the
#     loss equal those before;
#   verdict: the rolled back workload's two verdicts and generations
#     (say_twice);
# on the destination (`rdmig-dest --restore` has no API: its log says
# when the restore is done), "ID dest": {"how", "restored", "root_pid",
# "rss_mib" (the workload's resident MiB at the loss), "size_mib",
# "killed" (the restored workload stopped without the script),
# "after_s", "report" (the verdict of one that still ran, else null),
# "dest_exit" (rdmig-dest's exit status in "link"; null in "kill"), "left"
# (a restored workload still runs here once the script is done with it)}.
# Environment: RDMIG_BUILD, RDMIG_SECRET, RDMIG_PKI (test/lib/pki.sh's
# pki_agents: the source agent's certificate), RDMIG_ADDR,
# RDMIG_SOURCE_ADDR, RDMIG_SHARED_DIR, RDMIG_SIZE_MB (64), RDMIG_DEAD_AFTER
# (5, both agents), RDMIG_ROLLBACK_CASES, RDMIG_DEST_ARGS (more rdmig-dest
# options; the default slows the drain to one 4 KiB page at a time so pages
# remain at the loss).
set -u
role=${1:?usage: rollback-migrate.sh source|dest}
B=${RDMIG_BUILD:?}
secret=${RDMIG_SECRET:?}
sh=${RDMIG_SHARED_DIR:?}
size=${RDMIG_SIZE_MB:-64}
dead=${RDMIG_DEAD_AFTER:-5}
cases=${RDMIG_ROLLBACK_CASES:-kill link}
top=/tmp/rdmig-rollback
GUEST_TAG=rollback-migrate
# shellcheck source=guest.sh
. "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
# The source agent's log; follow() copies it to the output as it grows.
slog=$top/source.log
sock=$top/source.sock
api=$sock

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
not_live() { ! live "$1"; }
rss_mib() { awk '/^RssAnon:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

# use ID: guest.sh's workload files are case ID's, $top/ID/report and
# check (the same paths in both guests: the restored workload reopens them).
use() {
	report=$top/$1/report
	check=$top/$1/check
}

# follow LOG PREFIX: copy LOG's lines to stdout as they come; sets fpid
# (sed's) and flog.  tail's pid goes to LOG.tail, and sed also writes what
# it copied to LOG.copied, for unfollow.  (A pipe, not a process
# substitution: the guests' devtmpfs has no /dev/fd.)
follow() {
	touch "$1"
	: >"$1.copied"
	{
		tail -n +1 -F "$1" 2>/dev/null &
		echo $! >"$1.tail"
		wait
	} | sed -u "s/^/$2/w $1.copied" &
	fpid=$! flog=$1
}

# unfollow: stop follow once every line of its log is copied (at most
# 10 s).  A one-vCPU TCG guest may not run tail and sed for a second while
# an agent writes its last lines and exits; a fixed sleep lost them.
unfollow() {
	local end=$((SECONDS + 10))
	while [ "$(wc -l <"$flog")" -gt "$(wc -l <"$flog.copied")" ] && [ $SECONDS -lt $end ]; do
		sleep 0.1
	done
	# tail's end ends sed, which writes its last lines first.
	kill "$(cat "$flog.tail" 2>/dev/null)" 2>/dev/null
	wait "$fpid" 2>/dev/null
}

# ---- source guest -------------------------------------------------------

# noticed LINE: the source's first log line after LINE about the lost
# destination (and success), or nothing (and failure).
noticed() {
	tail -n +"$(($1 + 1))" "$slog" |
		grep -m1 -E 'destination lost|fell silent|the destination aborted|connection closed|disconnected' |
		sed 's/^.*rdmig-source\[[0-9]*\] [a-z]*: //' | grep .
}

sums() { (cd "$top/images/$1" && sha256sum ./*.img | sort -k2); }

# say_noticed ID FROM: waits for the source to log the loss (after line
# FROM of its log); says "ID noticed json".
say_noticed() {
	local t0 t1 line
	t0=$(now)
	poll 60 noticed "$2" >/dev/null
	t1=$(now)
	line=$(noticed "$2")
	say "$1 noticed json: $(jq -nc --arg l "$line" --argjson s "$(secs "$t0" "$t1")" \
		'{noticed: ($l != ""), after_s: $s, line: $l}')"
}

# say_checkpoint ID: its image files against their sums when it served;
# says "ID checkpoint json".
say_checkpoint() {
	local same=false
	sums "$1" | cmp -s - "$top/$1.sums0" && same=true
	[ "$same" = true ] || sums "$1" | diff "$top/$1.sums0" - | head -n 10
	say "$1 checkpoint json: $(jq -nc --argjson n "$(wc -l <"$top/$1.sums0")" \
		--argjson u "$same" '{files: $n, unchanged: $u}')"
}

source_case() {
	local id=r-$1 g0 from
	use "$id"
	rm -f "$top/pid" && mkdir -p "$top/$id"
	start_workload || {
		say "$id: the workload did not start"
		return 1
	}
	say "$id: workload pid $wpid, $size MiB, 2 threads"
	sleep 1
	# shellcheck disable=SC2119 # a plain check
	ask_check || return 1
	g0=$(last_gen)
	say "$id: before the dump: generation $g0"
	say_ctl "$id migrate" "$sock" migrate --pid "$wpid" --secret-file "$secret" --id "$id" --verify
	wait_state "$id" serving 180 || return 1
	say_gone "$id dumped" "$wpid" 10
	say_json "$id serving" "$id"
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
	say_ctl "$id fetching rollback" "$sock" rollback "$id"
	say_json "$id fetching" "$id"
	: >"$sh/$id.refused"
	if ! poll 300 test -e "$sh/$id.lost"; then
		say "$id: the destination was never lost"
		return 1
	fi
	say_noticed "$id" "$from"
	sleep 0.5
	say_json "$id lost" "$id"
	say_checkpoint "$id"
	# Only once the destination made sure no restored copy runs there.
	if ! poll 300 test -e "$sh/$id.dest"; then
		say "$id: no word from the destination"
		return 1
	fi
	say "$id: destination: $(cat "$sh/$id.dest")"
	# Never twice: no destination agent can confirm the workload stopped
	# there, so a plain rollback is refused; the operator (this script,
	# told by the destination above) forces it.
	say_ctl "$id plain rollback" "$sock" rollback "$id"
	say_ctl "$id forced rollback" "$sock" rollback --force "$id"
	wait_state "$id" rolled_back 180
	say_json "$id final" "$id"
	if [ "$(mig_state "$id")" != rolled_back ]; then
		grep -E 'Error' "$top/images/$id/restore-rollback.log" | tail -n 5
		return 1
	fi
	say_twice "$id verdict" "$g0" || return 1
	gone "$(live_workloads | head -n 1)" 10
}

source_side() {
	local st=0 c
	rm -rf "$top" && mkdir -p "$top"
	follow "$slog" "source: "
	# --no-resume: the destination lost in post-copy fails (as with an older
	# source) instead of pausing, which is what a rollback needs here.
	start_source_agent "$sock" --verify --dead-after "$dead" --no-resume || {
		say "rdmig-source did not start"
		unfollow
		echo 1 >"$sh/source.end"
		return 1
	}
	for c in $cases; do
		say "case $c"
		source_case "$c" || {
			say "r-$c: FAILED"
			st=1
		}
		: >"$sh/r-$c.finished"
	done
	kill -TERM "$spid"
	wait "$spid"
	unfollow
	echo "$st" >"$sh/source.end"
	return $st
}

# ---- dest guest ---------------------------------------------------------

restore_ended() { grep -q 'criu restore done in\|restore failed' "$2" || ! kill -0 "$1" 2>/dev/null; }

# lose ID HOW RDEST: the destination is lost the HOW way: kill -9 of
# rdmig-dest (RDEST), or its link down.
lose() {
	case $2 in
	kill)
		kill -9 "$3"
		wait "$3" 2>/dev/null
		say "$1: killed rdmig-dest (kill -9)"
		;;
	link)
		ip link set "${RDMIG_RXE_NETDEV:-eth0}" down
		say "$1: link ${RDMIG_RXE_NETDEV:-eth0} down"
		;;
	esac
}

dest_case() {
	local id=r-$1 how=$1 rdest rp log t0 t1 rss rep='' killed=false dexit=null left=false
	log=$top/$id/rdmig-dest.log
	use "$id"
	rm -rf "${top:?}/$id" && mkdir -p "$top/$id/restore" "$top/$id/work"
	if ! poll 300 test -e "$sh/$id.serving"; then
		say "$id: the source never served"
		return 1
	fi
	# shellcheck disable=SC2086,SC2094 # RDMIG_DEST_ARGS: words; the log gets what it says before -o
	"$B/dest-agent/rdmig-dest" --source "$RDMIG_SOURCE_ADDR:7471" -t rdma -m "$id" \
		--secret-file "$secret" --verify -D "$top/$id/restore" -W "$top/$id/work" \
		--connect-timeout 60 --dead-after "$dead" -o "$log" --restore 2>>"$log" \
		${RDMIG_DEST_ARGS:---readahead 1 --drain-depth 1 --drain-chunk 4K} &
	rdest=$!
	follow "$log" "dest: "
	poll 300 restore_ended "$rdest" "$log"
	if ! grep -q 'criu restore done in' "$log" 2>/dev/null; then
		say "$id: the restore did not succeed"
		say "$id dest json: $(jq -nc --arg h "$how" '{how: $h, restored: false}')"
		kill "$rdest" 2>/dev/null
		wait "$rdest"
		unfollow
		echo "restore failed" >"$sh/$id.dest"
		poll 60 test -e "$sh/$id.finished"
		return 1
	fi
	rp=$(sed -n 's/.*restored root pid \([0-9]*\).*/\1/p' "$log" | head -n 1)
	live "$rp" || rp=$(live_workloads | head -n 1)
	say "$id: $(grep -h -m1 -o 'criu restore done in.*' "$log"); workload pid $rp"
	: >"$sh/$id.restored"
	poll 30 test -e "$sh/$id.refused"
	rss=$(rss_mib "$rp")
	t0=$(now)
	lose "$id" "$how" "$rdest"
	say "$id: lost with the workload at $rss of $size MiB resident"
	: >"$sh/$id.lost"
	# The restored workload may not run on with missing pages: it must be
	# killed.  Give whoever should do it the agent's dead-after and more.
	if gone "$rp" $((dead * 3 + 15)); then
		killed=true
	else
		# shellcheck disable=SC2119 # a plain check
		ask_check && rep=OK || rep=$(cat "$report" 2>/dev/null)
		rep=${rep:-no report}
		kill -9 "$rp" 2>/dev/null
		gone "$rp" 10
	fi
	t1=$(now)
	# rdmig-dest must end by itself once the source fell silent.
	if [ "$how" = link ]; then
		poll 60 not_live "$rdest"
		kill -0 "$rdest" 2>/dev/null && kill "$rdest"
		wait "$rdest"
		dexit=$?
	fi
	unfollow
	[ -n "$(live_workloads)" ] && left=true
	say "$id dest json: $(jq -nc --arg h "$how" --argjson rp "${rp:-null}" --argjson rss "${rss:-null}" \
		--argjson sz "$size" --argjson k "$killed" --argjson a "$(secs "$t0" "$t1")" \
		--arg rep "$rep" --argjson dx "$dexit" --argjson left "$left" \
		'{how: $h, restored: true, root_pid: $rp, rss_mib: $rss, size_mib: $sz, killed: $k,
		  after_s: $a, report: (if $rep == "" then null else $rep end), dest_exit: $dx, left: $left}')"
	# Only now may the source roll back: no restored copy runs here.
	[ "$left" = false ] && echo "no restored workload runs here (killed by the agents: $killed)" >"$sh/$id.dest" ||
		echo "a restored workload still runs here" >"$sh/$id.dest"
	if [ "$how" = link ]; then
		ip link set "${RDMIG_RXE_NETDEV:-eth0}" up
	fi
	poll 300 test -e "$sh/$id.finished"
}

dest_side() {
	local st=0 c
	rm -rf "$top" && mkdir -p "$top"
	for c in $cases; do
		say "case $c"
		dest_case "$c" || st=1
	done
	# The source's last lines come when it ends: wait for them.
	poll 120 test -e "$sh/source.end"
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
