#!/bin/bash
# Runs inside one soft-RoCE guest: rdmig-source dumps and rolls back by
# itself, driven through its API with rdmigctl (test/rxe/t/31-agent.t).
#   1. rdmigctl migrate --pid: the agent runs criu dump (dumping), serves the
#      images (serving); rdmig-dest + `criu restore --lazy-pages` restore the
#      workload, which verifies its memory; the migration becomes done.
#   2. Another workload is dumped the same way, no destination comes, and
#      rdmigctl rollback restores it on the source (rolled_back); it verifies
#      its memory and keeps running.
# Prints `agent-migrate: ...` lines.  Environment: RDMIG_BUILD, RDMIG_SECRET,
# RDMIG_ADDR, RDMIG_SIZE_MB (default 32), RDMIG_PORT (7471).
set -u
B=${RDMIG_BUILD:?}
secret=${RDMIG_SECRET:?}
addr=${RDMIG_ADDR:?}
size=${RDMIG_SIZE_MB:-32}
port=${RDMIG_PORT:-7471}
top=/tmp/rdmig-agent
wl=$B/test/rdmig-workload
report=$top/report
check=$top/check
sock=$top/source.sock
ctl=("$B/rdmigctl/rdmigctl" --socket "$sock")

say() { echo "agent-migrate: $*"; }
note() { echo "agent-migrate: $(date +%T.%N | cut -c1-12) $*"; }

ask_check() {
	rm -f "$report"
	echo "${1:-check}" >"$check"
	for _ in $(seq 600); do
		[ -s "$report" ] && break
		sleep 0.1
	done
	[ -s "$report" ] || {
		say "no report from the workload"
		return 1
	}
	say "$(cat "$report")"
	grep -q '^workload: OK' "$report"
}
last_gen() { sed -n 's/.*generation \([0-9]*\).*/\1/p' "$report"; }

# start_workload: sets wpid.  The new one is the workload that did not run
# before: its --pid-file says 1 (it is its pid namespace's init), and an
# earlier workload may still run, reading the same check file.
start_workload() {
	local before p
	before=" $(all_workloads | tr '\n' ' ') "
	rm -f "$top/pid"
	(cd / && exec unshare -p -f setsid "$wl" --size "$size" --threads 2 \
		--report "$report" --check-file "$check" --pid-file "$top/pid" \
		</dev/null >/dev/null 2>&1) &
	for _ in $(seq 600); do
		[ -s "$top/pid" ] && break
		sleep 0.1
	done
	wpid=
	for p in $(all_workloads); do
		case $before in *" $p "*) ;; *) wpid=$p ;; esac
	done
	[ -n "$wpid" ] || {
		say "the workload did not start"
		return 1
	}
	say "workload pid $wpid"
}

# live PID: runs and is not a zombie (a restored workload that exited stays
# one: the guest's init does not reap it).
live() { [ -n "$1" ] && grep -q '^State:[[:space:]]*[^Z]' "/proc/$1/status" 2>/dev/null; }
# Every running (not zombie) workload, one pid a line.
all_workloads() {
	local p
	for p in $(pgrep -x rdmig-workload); do
		live "$p" && echo "$p"
	done
}
# stop_workloads: none may survive into the next part (they share the
# report and check files); older workloads ignore "exit" in the check file.
stop_workloads() {
	local p
	for p in $(all_workloads); do
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
gone() {
	for _ in $(seq $(($2 * 10))); do
		live "$1" || return 0
		sleep 0.1
	done
	return 1
}

state() { "${ctl[@]}" status "$1" --json 2>/dev/null | sed -n 's/.*"state": "\([a-z_]*\)".*/\1/p'; }
# wait_state ID STATE SECS: prints the states seen on the way.
wait_state() {
	local seen='' s
	for _ in $(seq $(($3 * 10))); do
		s=$(state "$1")
		[ "${seen##* }" = "$s" ] || seen="$seen $s"
		[ "$s" = "$2" ] && break
		case $s in failed | aborted | rolled_back | done) break ;; esac
		sleep 0.1
	done
	say "$1 states:$seen"
	[ "$s" = "$2" ]
}

rm -rf "$top" && mkdir -p "$top/restore" "$top/work"
"$B/source-agent/rdmig-source" -t rdma -l "$addr:$port" --verify --api-socket "$sock" \
	--images-root "$top/images" -o "$top/source.log" &
spid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	sleep 0.1
done
st=0

# 1. Dump by the agent, restore on the "destination" (same guest).
start_workload || exit 1
sleep 1
ask_check || exit 1
"${ctl[@]}" migrate --pid "$wpid" --secret-file "$secret" --id a1 | sed 's/^/agent-migrate: /'
wait_state a1 serving 120 || st=1
gone "$wpid" 10 && say "a1: the dumped workload is gone from the source"
say "a1 freeze_ms: $("${ctl[@]}" status a1 --json | sed -n 's/.*"freeze_ms": \([0-9]*\).*/\1/p')"
"$B/dest-agent/rdmig-dest" --source "$addr:$port" -t rdma -m a1 --secret-file "$secret" \
	--verify -D "$top/restore" -W "$top/work" --connect-timeout 60 --status-fd 3 \
	-o "$top/work/rdmig-dest.log" 3>"$top/work/ready" &
dpid=$!
for _ in $(seq 600); do
	[ -s "$top/work/ready" ] && break
	kill -0 "$dpid" 2>/dev/null || break
	sleep 0.1
done
if (cd "$top/work" && criu restore -D "$top/restore" -W "$top/work" --lazy-pages -d \
	-v4 -o restore.log); then
	say "a1: restored on the destination"
	ask_check || st=1
else
	say "a1: criu restore failed"
	grep -E 'Error' "$top/work/restore.log" | tail -n 5
	st=1
fi
gone "$dpid" 120 || kill "$dpid"
wait "$dpid" && say "a1: rdmig-dest exited 0" || st=1
note "a1: waiting for done"
wait_state a1 done 30 || st=1
ask_check exit || st=1
note "a1: checked"
stop_workloads

note "part 2"
# 2. Dump by the agent, no destination, roll back on the source.
start_workload || exit 1
sleep 1
ask_check || exit 1
g0=$(last_gen)
"${ctl[@]}" migrate --pid "$wpid" --secret-file "$secret" --id b1 | sed 's/^/agent-migrate: /'
wait_state b1 serving 120 || st=1
gone "$wpid" 10 && say "b1: the dumped workload is gone from the source"
"${ctl[@]}" rollback b1 | sed 's/^/agent-migrate: /'
if wait_state b1 rolled_back 120; then
	sleep 1
	if ask_check; then
		g1=$(last_gen)
		sleep 1
		ask_check exit || st=1
		g2=$(last_gen)
		if [ "$g1" -ge "$g0" ] && [ "$g2" -gt "$g1" ]; then
			say "b1: rolled back workload kept rewriting: generation $g0 -> $g1 -> $g2"
		else
			say "b1: rolled back workload did not progress: generation $g0 -> $g1 -> $g2"
			diag "b1 generations (dumped pid $wpid)"
			st=1
		fi
	else
		diag "b1: no good report after the rollback (dumped pid $wpid)"
		st=1
	fi
else
	"${ctl[@]}" status b1
	grep -E 'Error' "$top/images/b1/restore-rollback.log" | tail -n 5
	diag "b1: not rolled back"
	st=1
fi
[ $st -eq 0 ] || grep -E 'Error|Restor.*(finished|FAILED)' "$top/images/b1/restore-rollback.log" |
	tail -n 5 | sed 's/^/agent-migrate: diag: rollback log: /'
stop_workloads
"${ctl[@]}" rollback a1 2>&1 | sed 's/^/agent-migrate: /'

kill -TERM "$spid"
wait "$spid"
sed 's/^/source: /' "$top/source.log"
exit $st
