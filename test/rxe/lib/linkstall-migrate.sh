#!/bin/bash
# shellcheck disable=SC2034 # B, pki, size, report, check, GUEST_TAG: read by guest.sh
# shellcheck source-path=SCRIPTDIR
# Runs in a soft-RoCE guest pair (test/rxe/t/42-linkdown.t, 43-linkflaps.t):
# the link/stall part of issue 12's failure matrix, through both agents
# (`rdmigctl migrate --pid P --to B --verify --wait` on A, `rdmig-dest
# --serve` on B, mutual TLS, RDMA transport), one migration per case, the
# cases in sequence in one boot:
#   linkstall-migrate.sh source   guest A: per case rdmig-source with its API
#       and the workload (rdmig-workload, or redis-server with known keys),
#       migrated to B; prints the migration's JSON and what is left here.
#   linkstall-migrate.sh dest     guest B: per case rdmig-dest --serve, its
#       drain slowed to one 4 KiB read at a time so the migration is still
#       in post-copy when the trouble starts; once the workload runs here:
#         outages:S1,S2,...  eth0 down S1 s, up until the migration
#                            resumed, down S2 s, ...
#         flaps:NxS          N times eth0 down S s, up until resumed
#         stop:S             the migration's worker SIGSTOPped S s
#       then the workload verifies all its memory (while pages still move,
#       or after the last one when done came first) and again after done.
#       From its agent's start until the trouble is over B's eth0 delays
#       every packet it sends RDMIG_LINK_DELAY_MS (default 30; tc netem):
#       each 4 KiB drain read then takes a round trip of that much, so the
#       migration stays in post-copy through every outage, flap or stop
#       (without it the drain and the workload's own faults brought every
#       page before the third outage of the link-down case and before the fifth
#       flap of the flap case); the rest then drains at full speed.
# RDMIG_CASES: the cases, words ID:KIND:ARG:WORKLOAD[:lazy|precopy] (WORKLOAD:
# wl or redis; lazy: `--lazy-dump`, else `--no-lazy-dump`; precopy: also
# `--precopy 1`, rdmig-source --rounds-wait 30000, so that B reads the
# pages the final dump did not rewrite from its copy of the round; each
# outage's event line gives progress.pages_local as the link went down
# and as it came back), the same in both guests.  Both agents run with --dead-after
# RDMIG_DEAD_AFTER (default 3).  The guests meet per case in
# RDMIG_SHARED_DIR/ID: "gen0", "migrated", "verified".  Prints `linkstall:
# ID ...` lines; "ID source json: {...}" and "ID dest json: {...}" are the
# migration's resource on each agent at the end (docs/api.md §4); "ID dest
# summary json: {...}" the worker's summary line (key=value) as JSON, with
# "dropped_no_vma", its warnings of pages dropped without an event (the
# summary's "dropped" counts as well the pages the workload freed: REMOVE
# and UNMAP events); "ID event N: ..." one line per outage, flap or stop.
# Environment: RDMIG_BUILD, RDMIG_PKI, RDMIG_ADDR, RDMIG_PEER_ADDR,
# RDMIG_SHARED_DIR, RDMIG_SIZE_MB (default 32), RDMIG_WL_ARGS (default
# --delay-us 20000: about 100 pages/s rewritten; at 2000 the workload's own
# faults brought every page within two outages), RDMIG_LINK_DELAY_MS,
# RDMIG_KEEP_LOGS.
# Why the link goes down here and not the source's: docs/testing.md, "Link
# down over RDMA" (after a flap the 6.1 kernel's rxe of the guest whose link
# went down answers no rdma_cm again, so a case with flaps comes last).
set -u
role=${1:?usage: linkstall-migrate.sh source|dest}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
B=${RDMIG_BUILD:?}
pki=${RDMIG_PKI:?}
size=${RDMIG_SIZE_MB:-32}
dead=${RDMIG_DEAD_AFTER:-3}
: "${RDMIG_WL_ARGS:=--delay-us 20000}"
base=${RDMIG_LINKSTALL_DIR:-/tmp/rdmig-linkstall}
top=$base
GUEST_TAG=linkstall
# shellcheck source=redis-migrate.sh
RDMIG_REDIS_LIB=1 RDMIG_CRIU_DIR=$base/redis . "$here/redis-migrate.sh" "$role"
# shellcheck source=guest.sh
. "$here/guest.sh"
dev=${RDMIG_RXE_NETDEV:-eth0}
link_delay=${RDMIG_LINK_DELAY_MS:-30}

# slow_link on|off: B's eth0 delays what it sends link_delay ms, or no more.
slow_link() {
	if [ "$1" = off ]; then
		tc qdisc del dev "$dev" root 2>/dev/null
		return 0
	fi
	[ "$link_delay" -gt 0 ] || return 0
	modprobe sch_netem && tc qdisc replace dev "$dev" root netem delay "${link_delay}ms" &&
		say "$id: $dev delays what it sends $link_delay ms until the trouble is over"
}

# case_paths ID: this case's directories (the same paths in both guests).
case_paths() {
	top=$base/$1
	report=$top/report
	check=$top/check
	shared=$RDMIG_SHARED_DIR/$1
	rm -rf "$top" && mkdir -p "$top" "$shared"
}

# redis_start: redis-server with the known keys (redis-migrate.sh's gen), in
# its own pid namespace; sets wpid; the digest goes to "gen0".
redis_start() {
	(cd / && exec unshare -p -f setsid redis-server --bind 127.0.0.1 --port "$rport" \
		--save '' --appendonly no --daemonize no --logfile '' \
		</dev/null >/dev/null 2>&1) &
	wait_ping 60 || return 1
	wpid=$(redis_pid)
	say "redis: loaded: $(gen resp | rcli --pipe 2>&1 | tail -n 1)"
	digest source >"$shared/gen0" || return 1
	say "redis: source dbsize $(rcli DBSIZE), digest $(cat "$shared/gen0")"
	wait_no_clients
}

# redis_verify WHEN TAG: every key and value read back equal to the source's.
redis_verify() {
	local d
	d=$(digest "$2")
	if [ -n "$d" ] && [ "$d" = "$(cat "$shared/gen0")" ]; then
		say "$id: verified $1: OK (redis: every key and value, dbsize $(rcli DBSIZE))"
		return 0
	fi
	say "$id: verified $1: MISMATCH (redis digest ${d:-none})"
	return 1
}

# wl_verify WHEN [exit]: the workload verifies all its memory.
wl_verify() {
	if ask_check "${2:-check}"; then
		say "$id: verified $1: OK (generation $(last_gen))"
		return 0
	fi
	say "$id: verified $1: CORRUPT or no report"
	return 1
}

# running_here WL: the migrated workload's processes in this guest.
running_here() {
	if [ "$1" = redis ]; then
		pgrep -c -x redis-server
	else
		workloads_here
	fi
}

source_case() {
	local id=$1 load=$2 mode=$3 sock st how=(--no-lazy-dump --verify) more=()
	[ "$mode" = lazy ] && how=(--lazy-dump --verify)
	# One round, its copy on B made whole before the freeze (TCG copies slowly).
	[ "$mode" = precopy ] && how=(--no-lazy-dump --verify --precopy 1) more=(--rounds-wait 30000)
	case_paths "$id"
	sock=$top/source.sock
	spid=
	wpid=
	if ! start_source_agent "$sock" --verify --dead-after "$dead" "${more[@]}"; then
		say "$id: rdmig-source did not start"
		echo 1 >"$shared/migrated"
		return 1
	fi
	if [ "$load" = redis ]; then
		redis_start
	else
		start_workload && check_workload
	fi || {
		say "$id: the workload did not start"
		echo 1 >"$shared/migrated"
		kill -TERM "$spid"
		return 1
	}
	wait_dest_api
	"$ctl" --socket "$sock" migrate --pid "$wpid" --to "$RDMIG_PEER_ADDR" --id "$id" \
		--transport "${RDMIG_TRANSPORT:-rdma}" "${how[@]}" --wait 2>&1 | sed -u "s/^/linkstall: $id: /"
	st=${PIPESTATUS[0]}
	say "$id: rdmigctl migrate exited $st"
	say_json "$id source" "$id" "$sock"
	say "$id: source pauses: $(pause_info "$id" "$sock")"
	sleep 1
	say "$id: left on the source: $(running_here "$load")"
	echo "$st" >"$shared/migrated"
	wait_file "$shared/verified" 900 || say "$id: no verdict from the destination"
	kill -TERM "$spid"
	wait "$spid"
	# A failed migration leaves the workload here: gone before the next case.
	[ -n "$wpid" ] && kill -KILL "$wpid" 2>/dev/null
	keep_logs "$top/source.log"
	grep -aE ' (error|warn): ' "$top/source.log" | tail -n 20 | sed "s/^/linkstall: $id: source: /"
	grep -aE 'paused|resumed|made by hand' "$top/source.log" | tail -n 30 | sed "s/^/linkstall: $id: source: /"
	return "$st"
}

# event_end N WHAT BEFORE DURING: waits until the migration runs again (not
# paused) and says what it went through: its state before the trouble, at
# its end, the states seen until it ran again, and its pauses (JSON).
event_end() {
	local seen
	seen=$(wait_state "$id" "postcopy|draining|done" 180 "$dsock" | sed 's/.*states of [^:]*: *//')
	say "$id: event $1: $2: before $3, at its end $4, then $seen, pauses $(pause_info "$id" "$dsock")${5:+, $5}"
}

# link_out N SECS: B's eth0 down SECS s.  The pages read from the copies of
# pre-copy rounds (progress.pages_local) as it goes down and as it comes
# back: what was served while the source could not be reached.
link_out() {
	local n=$1 secs=$2 before during l0 l1
	before=$(mig_state "$id" "$dsock")
	l0=$(mig_get "$id" .progress.pages_local "$dsock")
	ip link set "$dev" down
	sleep "$secs"
	during=$(mig_state "$id" "$dsock")
	l1=$(mig_get "$id" .progress.pages_local "$dsock")
	ip link set "$dev" up
	event_end "$n" "link $dev down $secs s" "$before" "$during" "local pages ${l0:-null} -> ${l1:-null}"
}

# worker_pid ID: the migration's worker (the supervisor execs it as
# `rdmig-dest -D DIR ... -m ID ...`).
# Its guard, forked by the worker, has the same command line.
worker_pid() { pgrep -P "$dpid" -f "^rdmig-dest -D .* -m $1 " | head -n 1; }

disrupt() {
	local kind=$1 arg=$2 n=0 s w
	case $kind in
	outages)
		for s in ${arg//,/ }; do
			n=$((n + 1))
			link_out "$n" "$s"
		done
		;;
	flaps)
		for _ in $(seq "${arg%x*}"); do
			n=$((n + 1))
			link_out "$n" "${arg#*x}"
		done
		;;
	stop)
		w=$(worker_pid "$id")
		s=$(mig_state "$id" "$dsock")
		kill -STOP "$w" && say "$id: worker $w stopped for $arg s"
		sleep "$arg"
		kill -CONT "$w"
		event_end 1 "worker SIGSTOP $arg s" "$s" "stopped"
		;;
	esac
}

dest_case() {
	local id=$1 kind=$2 arg=$3 load=$4 dsock st=0 s g0 g1 g2
	case_paths "$id"
	dsock=$top/dest.sock
	start_dest_agent "$dsock" --drain-depth 1 --drain-chunk 4K --dead-after "$dead" || {
		say "$id: rdmig-dest --serve did not start"
		echo 1 >"$shared/verified"
		return 1
	}
	slow_link on || {
		say "$id: cannot delay $dev (tc netem)"
		st=1
	}
	# The workload runs here, or the source gave up before.
	for _ in $(seq 6000); do
		case $(mig_state "$id" "$dsock") in postcopy | draining | done | failed | aborted) break ;; esac
		[ -e "$shared/migrated" ] && break
		sleep 0.1
	done
	if [ $st -eq 0 ] && wait_state "$id" "postcopy|draining" 1 "$dsock"; then
		disrupt "$kind" "$arg"
		slow_link off
		s=$(mig_state "$id" "$dsock")
		if [ "$load" = redis ]; then
			redis_verify "after the trouble ($s)" moving || st=1
		else
			wl_verify "after the trouble ($s)" || st=1
			g1=$(last_gen)
		fi
	else
		st=1
	fi
	[ $st -eq 0 ] && { wait_state "$id" "done" 600 "$dsock" || st=1; }
	wait_file "$shared/migrated" 900 || say "$id: no word from the source"
	[ "$(cat "$shared/migrated" 2>/dev/null)" = 0 ] || st=1
	say "$id: running on the destination: $(running_here "$load")"
	if [ $st -ne 0 ]; then
		say "$id: not verified after the last page: the migration failed"
	elif [ "$load" = redis ]; then
		redis_verify "after the last page" final || st=1
		rcli SHUTDOWN NOSAVE >/dev/null 2>&1
	else
		sleep 1
		wl_verify "after the last page" exit || st=1
		g2=$(last_gen)
		g0=$(cat "$shared/gen0" 2>/dev/null || echo 0)
		say "$id: generations $g0 -> ${g1:-?} -> ${g2:-?}"
	fi
	slow_link off
	say_json "$id dest" "$id" "$dsock"
	say "$id dest summary json: $(summary_json "$top/dest/$id/rdmig-dest.log")"
	say "$id: dest pauses: $(pause_info "$id" "$dsock"), takeovers $(mig_get "$id" .takeovers "$dsock")"
	# The verdict once this agent is gone: the next case's source must not
	# find it still answering.
	kill -TERM "$dpid"
	wait "$dpid"
	echo "$st" >"$shared/verified"
	keep_logs "$top/dest.log" "$top/dest/$id/rdmig-dest.log"
	grep -ahE ' (error|warn): |paused|resumed|resuming a lazy dump|units staged|made by hand|copied ahead|from its copy|rounds: ' "$top/dest.log" "$top/dest/$id/rdmig-dest.log" 2>/dev/null |
		tail -n 40 | sed "s/^/linkstall: $id: dest: /"
	return $st
}

all_cases() {
	local c st=0 id kind arg load mode
	for c in ${RDMIG_CASES:?}; do
		IFS=: read -r id kind arg load mode <<<"$c"
		if [ "$role" = source ]; then
			source_case "$id" "${load:-wl}" "${mode:-}" || st=1
		else
			dest_case "$id" "$kind" "$arg" "${load:-wl}" || st=1
		fi
	done
	return $st
}

case $role in
source | dest) all_cases ;;
*)
	echo "linkstall-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
