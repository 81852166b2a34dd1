#!/bin/bash
# shellcheck disable=SC2034 # B, pki, size, report, check, GUEST_TAG: read by guest.sh
# Runs in a soft-RoCE guest pair (test/rxe/t/33-handover.t, make demo): one
# command migrates a running process between the hosts, the source agent
# handing the migration over to the destination agent's API.
#   handover-migrate.sh source   guest A: rdmig-source with its API;
#       rdmig-workload runs here; `rdmigctl migrate --pid P --to B --wait`
#       dumps it (criu dump by the agent), serves it over RDMA and hands it
#       over; prints rdmigctl's progress and report.
#   handover-migrate.sh dest     guest B: `rdmig-dest --serve --api-tcp
#       0.0.0.0:7472` (mutual TLS), which receives the images, runs criu restore
#       --lazy-pages and serves the faults; the workload then runs here and
#       verifies all its memory while its pages still move, and again
#       after the last one, rewriting it all along.
# The guests meet in RDMIG_SHARED_DIR: "gen0" (the workload's generation
# before the dump), "migrated" (rdmigctl's exit status), "verified" (the
# destination's verdict).  The handover runs over mutual TLS with the
# certificates in RDMIG_PKI (test/lib/pki.sh's pki_agents: "source" and
# "dest", whose SAN has the destination's address), and the source agent
# makes the migration's secret (no secret file).  Prints `handover: ...`
# lines.  Environment: RDMIG_BUILD, RDMIG_PKI, RDMIG_ADDR, RDMIG_PEER_ADDR,
# RDMIG_SHARED_DIR, RDMIG_SIZE_MB (default 64), RDMIG_ID (h1),
# RDMIG_KEEP_LOGS (a directory), RDMIG_CTL_ARGS (more `rdmigctl migrate`
# options, words), RDMIG_FAULT_SAMPLES_OUT (the workload times its first
# touch of every page after the restore and its samples, ns one a line, are
# copied there: bench/, section downtime), RDMIG_VERIFY (default 1: the
# agent and the migration --verify; 0: without, rdmigctl's default),
# RDMIG_TRANSPORT (rdma, the default, or tcp: rdmig-source's -t and the
# migration's --transport), RDMIG_WL_ARGS (more rdmig-workload options,
# words, e.g. --delay-us to bound its rewrite rate), RDMIG_SOURCE_ARGS (more
# rdmig-source options, words, e.g. --no-early), RDMIG_WORKER_LOG (1: the
# destination worker's whole log in the output).
#   handover-migrate.sh lazyfail   guest A alone: a lazy dump whose criu is
#       killed while it serves; the workload stays stopped, then a rollback
#       continues it here.
#   handover-migrate.sh lazypost / lazypostdest   guests A / B: a lazy dump
#       handed over to B, its criu killed once the workload runs on B with
#       pages missing: B stops its copy, a rollback continues A's.
set -u
role=${1:?usage: handover-migrate.sh source|dest}
B=${RDMIG_BUILD:?}
pki=${RDMIG_PKI:?}
shared=${RDMIG_SHARED_DIR:?}
size=${RDMIG_SIZE_MB:-64}
id=${RDMIG_ID:-h1}
# The same paths in both guests: the restored workload reopens them by name.
top=/tmp/rdmig-handover
report=$top/report
check=$top/check
samples=$top/fault-samples
GUEST_TAG=handover
# shellcheck source=guest.sh
. "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
vflag=--verify
[ "${RDMIG_VERIFY:-1}" = 0 ] && vflag=
transport=${RDMIG_TRANSPORT:-rdma}

# start_source_side: rdmig-source with its API on $sock, the workload in
# its own pid namespace; sets spid and wpid, checks the workload once.
start_source_side() {
	rm -rf "$top" && mkdir -p "$top"
	# shellcheck disable=SC2086 # vflag: a word or none
	if ! start_source_agent "$sock" $vflag ${RDMIG_SOURCE_ARGS:-} || ! start_workload; then
		say "the workload or rdmig-source did not start"
		echo 1 >"$shared/migrated"
		return 1
	fi
	if ! check_workload; then
		echo 1 >"$shared/migrated"
		return 1
	fi
}

# src_state: the migration's state on the source agent.
src_state() { mig_state "$id" "$sock"; }

# wait_src_state STATE SECS
wait_src_state() { wait_state "$id" "$1" "$2" "$sock" >/dev/null; }

# kill_lazy_dump WHEN: SIGKILL of the migration's `criu dump --lazy-pages`
# (its page server; the caller's $wpid, $sock, $id); waits for the
# migration to fail and says how the dumped workload was left.
kill_lazy_dump() {
	local cpid st=0
	cpid=$(pgrep -f "^criu dump -t $wpid " | head -n 1)
	say "killing criu dump --lazy-pages (pid ${cpid:-none}) $1"
	[ -n "$cpid" ] && kill -KILL "$cpid"
	wait_src_state failed 60 || st=1
	say "after its page server died: $(src_state): $(mig_get "$id" .error "$sock")"
	sleep 1
	say "the dumped workload: $(ps -o stat= -p "$wpid")"
	return $st
}

# rollback_runs G0 SECS: rdmigctl rollback (rolled back within SECS); the
# workload then verifies all its memory here and has moved past
# generation G0; it is told to exit after.
rollback_runs() {
	local st=0 g1
	"$ctl" --socket "$sock" rollback "$id" 2>&1 | sed 's/^/handover: /'
	wait_src_state rolled_back "$2" || st=1
	say "after the rollback: $(src_state)"
	sleep 1
	ask_check || st=1
	g1=$(last_gen)
	if [ "${g1:-0}" -gt "${1:-0}" ]; then
		say "the workload runs on the source again: generation $1 -> $g1"
	else
		say "the workload did not progress: generation $1 -> ${g1:-?}"
		st=1
	fi
	ask_check exit >/dev/null 2>&1
	return $st
}

# lazyfail: a lazy dump whose criu (its page server) is killed while it
# serves: the migration fails, the dumped workload stays stopped, and a
# rollback continues it on this host, where it verifies all its memory.
lazyfail_side() {
	local sock=$top/source.sock spid wpid st=0 g0
	start_source_side || return 1
	g0=$(last_gen)
	head -c 32 /dev/urandom >"$top/secret" && chmod 600 "$top/secret"
	"$ctl" --socket "$sock" migrate --pid "$wpid" --id "$id" --transport "$transport" \
		--lazy-dump --secret-file "$top/secret" 2>&1 | sed 's/^/handover: /'
	wait_src_state serving 300 || st=1
	kill_lazy_dump "while it serves" || st=1
	rollback_runs "$g0" 60 || st=1
	kill -TERM "$spid"
	wait "$spid"
	sed 's/^/source: /' "$top/source.log"
	return "$st"
}

# lazypost: a lazy dump handed over to B, whose criu (its page server) is
# killed once the workload runs on B with pages still missing: the
# migration fails here naming the page server, the dumped workload stays
# stopped, B stops its copy (never a zero page), and a rollback continues
# the workload here, where it verifies all its memory.
lazypost_side() {
	local sock=$top/source.sock spid wpid st=0 g0 d
	start_source_side || return 1
	g0=$(last_gen)
	echo "$g0" >"$shared/gen0"
	wait_dest_api
	# shellcheck disable=SC2086 # vflag: a word or none
	"$ctl" --socket "$sock" migrate --pid "$wpid" --to "$RDMIG_PEER_ADDR" --id "$id" \
		--transport "$transport" --lazy-dump $vflag 2>&1 | sed 's/^/handover: /'
	# The workload runs on B: the destination agent says so to the source.
	for _ in $(seq 3000); do
		d=$(mig_get "$id" .dest_state "$sock")
		case $d in postcopy | draining | done | failed) break ;; esac
		sleep 0.1
	done
	say "the destination's state before the kill: ${d:-none}"
	[ "$d" = postcopy ] || [ "$d" = draining ] || st=1
	kill_lazy_dump "in post-copy" || st=1
	# B's verdict first: its copy must be gone before this one runs again.
	echo 0 >"$shared/migrated"
	wait_file "$shared/verified" 300 || say "no verdict from the destination"
	rollback_runs "$g0" 120 || st=1
	echo "done" >"$shared/rolled"
	kill -TERM "$spid"
	wait "$spid"
	keep_logs "$top/source.log"
	grep -aE ' (error|warn): |page server|rolled back|rolling back' "$top/source.log" |
		tail -n 30 | sed 's/^/source: /'
	return "$st"
}

# lazypostdest: B's side of lazypost: rdmig-dest --serve draining one 4 KiB
# page at a time (pages stay missing); once its migration runs the
# workload, waits for it to fail and says what is left here.
lazypostdest_side() {
	local sock=$top/dest.sock dpid st=0 s
	rm -rf "$top" && mkdir -p "$top"
	start_dest_agent "$sock" --drain-depth 1 --drain-chunk 4K
	wait_state "$id" "failed|done" 600 "$sock" >/dev/null
	s=$(mig_state "$id" "$sock")
	say "the destination agent's state: ${s:-none}: $(mig_get "$id" .error "$sock")"
	sleep 2
	say "running on the destination: $(workloads_here)"
	say "dest summary: $(grep -ah 'summary: ' "$top/dest/$id/rdmig-dest.log" 2>/dev/null | tail -n 1 | sed 's/.*summary: //')"
	grep -ahE ' (error|warn): ' "$top/dest/$id/rdmig-dest.log" 2>/dev/null | tail -n 10 |
		sed 's/^/handover: dest worker: /'
	[ "$s" = failed ] || st=1
	echo "$st" >"$shared/verified"
	wait_file "$shared/rolled" 300 >/dev/null 2>&1
	kill -TERM "$dpid"
	wait "$dpid"
	keep_logs "$top/dest.log" "$top/dest/$id/rdmig-dest.log"
	return $st
}

# source_end ST: the migration's JSON, ST to "migrated"; once the
# destination's verdict is in, stops the caller's source agent ($spid,
# API $sock) and prints its log.
source_end() {
	say "json: $(mig_json "$id" "$sock")"
	echo "$1" >"$shared/migrated"
	wait_file "$shared/verified" 600 || say "no verdict from the destination"
	kill -TERM "$spid"
	wait "$spid"
	keep_logs "$top/source.log" "$top/images/$id/dump.log"
	sed 's/^/source: /' "$top/source.log"
}

source_side() {
	local sock=$top/source.sock spid wpid st=0
	start_source_side || return 1
	wait_dest_api
	# --wait: the progress lines, then the report.  No secret: the agent makes one.
	# shellcheck disable=SC2086 # RDMIG_CTL_ARGS: words; vflag: a word or none
	"$ctl" --socket "$sock" migrate --pid "$wpid" --to "$RDMIG_PEER_ADDR" --id "$id" \
		--transport "$transport" $vflag ${RDMIG_CTL_ARGS:-} --wait 2>&1 |
		sed -u 's/^/handover: /'
	st=${PIPESTATUS[0]}
	say "rdmigctl migrate exited $st"
	# What the freeze wrote: a lazy dump leaves the memory out of the pages files.
	say "pages files: $(cat "$top/images/$id"/pages-*.img 2>/dev/null | wc -c) bytes"
	say "source workload after the migration: $(ps -o stat= -p "$wpid" 2>/dev/null || echo gone)"
	source_end "$st"
	# A failed lazy dump leaves the workload stopped here: gone before the
	# next migration in this guest (bench/), whose pgrep must not find it.
	kill -KILL "$wpid" 2>/dev/null
	return "$st"
}

# dest_verify SOCK: follows migration $id on the destination agent at SOCK;
# the workload verifies its memory as soon as it runs here and after the
# last page; writes the verdict to "verified".  Returns it.
dest_verify() {
	local sock=$1 st=0 g0 g1 g2 s
	# Verify while pages still move: as soon as the workload runs here.
	s=$(wait_runs_here "$id" "$sock")
	say "the destination agent's state: ${s:-none}"
	if [ "$s" = postcopy ] || [ "$s" = draining ] || [ "$s" = "done" ]; then
		if [ "$s" = "done" ]; then
			say "verifying after the last page (done before the first look)"
		else
			say "verifying while pages still move ($s)"
		fi
		ask_check || st=1
		g1=$(last_gen)
		if [ -n "${RDMIG_FAULT_SAMPLES_OUT:-}" ] && [ -f "$samples" ]; then
			cp -f "$samples" "$RDMIG_FAULT_SAMPLES_OUT"
		fi
	else
		st=1
	fi
	wait_file "$shared/migrated" 900 || say "no word from the source"
	[ "$(cat "$shared/migrated" 2>/dev/null)" = 0 ] || st=1
	g0=$(cat "$shared/gen0" 2>/dev/null || echo 0)
	if [ $st -eq 0 ]; then
		sleep 1
		ask_check exit || st=1
		g2=$(last_gen)
		if [ "${g1:-0}" -gt "$g0" ] && [ "${g2:-0}" -gt "${g1:-0}" ]; then
			say "the workload kept rewriting on the destination: generation $g0 -> $g1 -> $g2"
		else
			say "the workload did not progress: generation $g0 -> ${g1:-?} -> ${g2:-?}"
			st=1
		fi
	fi
	"$ctl" --socket "$sock" status "$id" 2>&1 | sed 's/^/handover: dest agent: /'
	say "dest json: $(mig_json "$id" "$sock")"
	# The migration's worker logs to its own file: its lazy dump summary and
	# what it did with a pre-copy's rounds, or all of it with
	# RDMIG_WORKER_LOG=1 (where the freeze went, seen from B).
	if [ "${RDMIG_WORKER_LOG:-0}" = 1 ]; then
		sed 's/^/handover: dest worker: /' "$top/dest/$id/rdmig-dest.log" 2>/dev/null
	else
		grep -h 'lazy dump:\|pre-copy round\|copied ahead\|from its copy\|rounds stopped' \
			"$top/dest/$id/rdmig-dest.log" 2>/dev/null | sed 's/^/handover: dest worker: /'
	fi
	echo "$st" >"$shared/verified"
	return $st
}

dest_side() {
	local sock=$top/dest.sock dpid st=0
	rm -rf "$top" && mkdir -p "$top"
	start_dest_agent "$sock"
	dest_verify "$sock" || st=1
	kill -TERM "$dpid"
	wait "$dpid"
	keep_logs "$top/dest.log" "$top/dest/$id/restore.log"
	sed 's/^/dest: /' "$top/dest.log"
	[ $st -eq 0 ] || grep -h 'Error' "$top/dest/$id/restore.log" 2>/dev/null | tail -n 5
	return $st
}

# RDMIG_HANDOVER_LIB=1: only the functions (for package-migrate.sh).
[ "${RDMIG_HANDOVER_LIB:-0}" = 1 ] && return 0
case $role in
source) source_side ;;
lazyfail) lazyfail_side ;;
lazypost) lazypost_side ;;
lazypostdest) lazypostdest_side ;;
dest) dest_side ;;
*)
	echo "handover-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
