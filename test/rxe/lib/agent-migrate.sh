#!/bin/bash
# shellcheck disable=SC2034 # GUEST_TAG, size, pki, api: read by guest.sh
# Runs inside one soft-RoCE guest: rdmig-source dumps and rolls back by
# itself, driven through its API with rdmigctl (test/rxe/t/31-agent.t).
#   1. a1: rdmigctl migrate --pid: the agent runs criu dump (dumping),
#      serves the images (serving); rdmig-dest + `criu restore --lazy-pages`
#      restore the workload in this guest, which verifies its memory; the
#      migration becomes done, and a rollback of it is refused.
#   2. b1: another workload is dumped the same way, no destination comes,
#      and rdmigctl rollback restores it on the source (rolled_back); it
#      verifies its memory twice and its generation grows.
# Prints `agent-migrate: ...` lines (guest.sh's say).  The machine-readable
# ones, `agent-migrate: WHO json: {...}` (tap.sh's guest_json WHO):
#   a1 migrate, b1 migrate, b1 rollback, a1 rollback: rdmigctl --json's
#     exit status, the API's answer and its error (guest.sh's say_ctl);
#   a1 serving, b1 serving, a1 done, a1 after rollback, b1 final: the
#     migration's resource from the source agent (say_json);
#   a1 dumped, b1 dumped: the dumped workload left the source (say_gone);
#   a1 dest: {"restore": criu restore's exit status, "check_restored": the
#     restored workload's verdict, "dest_exit": rdmig-dest's exit status,
#     "check_done": its verdict once done};
#   b1 verdict: the rolled back workload's two verdicts and generations
#     (say_twice).
# Environment: RDMIG_BUILD, RDMIG_SECRET, RDMIG_PKI (test/lib/pki.sh's
# pki_agents: the source agent's certificate), RDMIG_ADDR, RDMIG_SIZE_MB
# (default 32).
set -u
B=${RDMIG_BUILD:?}
secret=${RDMIG_SECRET:?}
pki=${RDMIG_PKI:?}
: "${RDMIG_ADDR:?}"
size=${RDMIG_SIZE_MB:-32}
top=/tmp/rdmig-agent
GUEST_TAG=agent-migrate
# shellcheck source=guest.sh
. "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
sock=$top/source.sock
api=$sock

# new_workload: a workload started (guest.sh's start_workload) and checked.
# The pid file goes first: start_workload waits for it, and an earlier
# workload's would end the wait before the new one runs.
new_workload() {
	rm -f "$top/pid"
	start_workload || {
		say "the workload did not start"
		return 1
	}
	say "workload pid $wpid"
	sleep 1
	# shellcheck disable=SC2119 # a plain check
	ask_check
}

# stop_workloads: none may survive into the next part (they share the
# report and check files); older workloads ignore "exit" in the check file.
stop_workloads() {
	local p
	for p in $(live_workloads); do
		gone "$p" 10 && continue
		say "workload $p still runs: killing it"
		kill -KILL "$p"
		gone "$p" 10
	done
}

# diag WHAT: what a failed check needs (printed as `agent-migrate: diag: ...`).
diag() {
	local p
	say "diag: $1"
	say "diag: report: $(cat "$report" 2>/dev/null || echo '(none)')"
	for p in $(pgrep -x rdmig-workload); do
		say "diag: workload $p: $(grep -E '^(State|Threads|NSpid):' "/proc/$p/status" 2>/dev/null | tr -s '\t\n' '  ')"
	done
}

# restore_a1: rdmig-dest and `criu restore --lazy-pages` bring a1 back in
# this guest; the workload verifies its memory while pages move and once
# the migration is done.  Says "a1 dest json"; 0 if all went well.
restore_a1() {
	local rst=0 dst=0 c1=false c2=false rdest
	"$B/dest-agent/rdmig-dest" --source "$RDMIG_ADDR:7471" -t rdma -m a1 --secret-file "$secret" \
		--verify -D "$top/restore" -W "$top/work" --connect-timeout 60 --status-fd 3 \
		-o "$top/work/rdmig-dest.log" 3>"$top/work/ready" &
	rdest=$!
	for _ in $(seq 600); do
		[ -s "$top/work/ready" ] && break
		kill -0 "$rdest" 2>/dev/null || break
		sleep 0.1
	done
	(cd "$top/work" && criu restore -D "$top/restore" -W "$top/work" --lazy-pages -d \
		-v4 -o restore.log) || rst=$?
	if [ $rst -eq 0 ]; then
		say "a1: restored on the destination"
		# shellcheck disable=SC2119 # a plain check
		ask_check && c1=true
	else
		say "a1: criu restore failed"
		grep -E 'Error' "$top/work/restore.log" | tail -n 5
	fi
	gone "$rdest" 120 || kill "$rdest"
	wait "$rdest" || dst=$?
	wait_state a1 "done" 30
	say_json "a1 done" a1
	ask_check exit && c2=true
	say "a1 dest json: $(jq -nc --argjson r "$rst" --argjson c1 "$c1" --argjson d "$dst" \
		--argjson c2 "$c2" '{restore: $r, check_restored: $c1, dest_exit: $d, check_done: $c2}')"
	[ $rst -eq 0 ] && [ $dst -eq 0 ] && [ "$c1" = true ] && [ "$c2" = true ] &&
		[ "$(mig_state a1)" = "done" ]
}

rm -rf "$top" && mkdir -p "$top/restore" "$top/work"
start_source_agent "$sock" --verify || {
	say "rdmig-source did not start"
	exit 1
}
st=0

# 1. Dump by the agent, restore on the "destination" (same guest).
new_workload || exit 1
say_ctl "a1 migrate" "$sock" migrate --pid "$wpid" --secret-file "$secret" --id a1 || st=1
wait_state a1 serving 120 || st=1
say_gone "a1 dumped" "$wpid" 10 || st=1
say_json "a1 serving" a1
restore_a1 || st=1
stop_workloads

say "part 2"
# 2. Dump by the agent, no destination, roll back on the source.
new_workload || exit 1
g0=$(last_gen)
say_ctl "b1 migrate" "$sock" migrate --pid "$wpid" --secret-file "$secret" --id b1 || st=1
wait_state b1 serving 120 || st=1
say_gone "b1 dumped" "$wpid" 10 || st=1
say_json "b1 serving" b1
say_ctl "b1 rollback" "$sock" rollback b1 || st=1
if wait_state b1 rolled_back 120; then
	say_twice "b1 verdict" "$g0" || {
		diag "b1: the rolled back workload did not verify or progress (dumped pid $wpid)"
		st=1
	}
else
	grep -E 'Error' "$top/images/b1/restore-rollback.log" | tail -n 5
	diag "b1: not rolled back"
	st=1
fi
say_json "b1 final" b1
[ $st -eq 0 ] || grep -E 'Error|Restor.*(finished|FAILED)' "$top/images/b1/restore-rollback.log" |
	tail -n 5 | sed 's/^/agent-migrate: diag: rollback log: /'
stop_workloads
# A done migration has nothing to roll back to: refused, and it stays done.
say_ctl "a1 rollback" "$sock" rollback a1 && st=1
say_json "a1 after rollback" a1

kill -TERM "$spid"
wait "$spid"
sed 's/^/source: /' "$top/source.log"
exit $st
