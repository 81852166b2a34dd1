#!/bin/bash
# bench/lib/guest.sh: runs the benchmark plan in a soft-RoCE guest (or
# natively), one side or both.  Started by bench/run; not meant by hand.
#   guest.sh source|dest|both
# Environment (set by bench/run):
#   BENCH_PLAN    the plan: one step a line, "ID KIND KEY=VALUE..."
#   BENCH_RAW     where each step's raw output goes (the project share)
#   BENCH_SYNC    a directory both sides see: ready.ID, done.ID, drain.ID
#   BENCH_BUILD   the build directory; BENCH_SECRET the secret file
#   BENCH_VERIFY  1: the agents run with --verify
#   BENCH_PKI     the agents' certificates: for transport=tls and the
#                 downtime steps: ca.pem, source.* (naming the source's
#                 address) and dest.* (dest.bench), as test/lib/pki.sh makes
#   RDMIG_ADDR, RDMIG_SOURCE_ADDR, RDMIG_RXE_DEV (from the test bed)
# Kinds: lat, bw (perftest), fault, drain (rdmig + rdmig-standin),
# criu (test/rxe/lib/criu-migrate.sh: rdmig or CRIU's own lazy-pages; the
# workload's own fault times go to ID.wlat), downtime (pair only: rdmig's
# agents, `rdmigctl migrate --pid --to --wait` by
# test/rxe/lib/handover-migrate.sh, its status JSON in ID.source; or
# CRIU's own lazy migration by criu-migrate.sh criu in the dest guest; the
# workload's fault times to ID.wlat).
# Progress goes to stderr, one line a step.
set -u
role=${1:?usage: guest.sh source|dest|both}
plan=${BENCH_PLAN:?}
raw=${BENCH_RAW:?}
sync=${BENCH_SYNC:?}
B=${BENCH_BUILD:?}
secret=${BENCH_SECRET:?}
verify=${BENCH_VERIFY:-0}
# The tests pace their workloads (test/rxe/lib/guest.sh, RDMIG_WL_PACE_US); the
# bench's run at full speed, or at the rate a step names (delay_us).
export RDMIG_WL_PACE_US=0
pki=${BENCH_PKI:-}
top=$(cd "$(dirname "$0")/../.." && pwd)
dev=${RDMIG_RXE_DEV:-}
work=/tmp/rdmig-bench.$role
img_size=
nsteps=$(grep -c . "$plan")

say() { echo "bench[$role]: $*" >&2; }
now_ms() { date +%s%3N; }

# The step's parameters: p[KEY]=VALUE.
declare -A p
parse_step() {
	local kv
	p=()
	for kv in $1; do
		p[${kv%%=*}]=${kv#*=}
	done
}

# wait_file FILE SECS: 0 once FILE exists, 1 after SECS.
wait_file() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# reap PID ID: waits for a server; once the dest is done with step ID it
# gets 20 s more, then it is killed.  Returns its status.
reap() {
	local pid=$1 id=$2 t=0
	while kill -0 "$pid" 2>/dev/null; do
		if [ -e "$sync/done.$id" ]; then
			t=$((t + 1))
			if [ $t -gt 200 ]; then
				say "step $id: server $pid still running after the client ended; killing it"
				kill "$pid" 2>/dev/null
				sleep 1
				kill -9 "$pid" 2>/dev/null
				break
			fi
		fi
		sleep 0.1
	done
	wait "$pid"
}

# image SIZE: a synthetic CRIU image of SIZE in $work/img (one size kept).
image() {
	if [ "$img_size" != "$1" ]; then
		rm -rf "$work/img"
		"$B/test/rdmig-mkimage" -D "$work/img" --size "$1" --holes >/dev/null || return 1
		img_size=$1
	fi
}

# cpu_sampler PID ID: every 0.2 s, rdmig-source's utime+stime and this
# machine's busy and total jiffies; "mark" lines once the dest has started
# the stand-in (drain.ID) and the last sample before the source exits.
cpu_sampler() {
	local pid=$1 id=$2 st a c line marked=0 out
	out=$raw/$id.cpu
	: >"$out"
	while read -r st 2>/dev/null <"/proc/$pid/stat"; do
		# shellcheck disable=SC2206 # split the fields
		a=($st)
		read -r line </proc/stat
		# shellcheck disable=SC2206
		c=($line)
		line="$(now_ms) $((a[13] + a[14])) $((c[1] + c[2] + c[3] + c[6] + c[7] + c[8])) $((c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7] + c[8]))"
		if [ $marked = 0 ] && [ -e "$sync/drain.$id" ]; then
			echo "start $line" >>"$out"
			marked=1
		fi
		echo "sample $line" >>"$out"
		sleep 0.2
	done
	echo "clk_tck $(getconf CLK_TCK) ncpu $(nproc)" >>"$out"
}

# ---- the source side ----

src_perftest() {
	local id=$1 tool=$2
	"$tool" ${dev:+-d "$dev"} -F -s "${p[size]}" -n "${p[iters]}" -p "$((18600 + id))" \
		>"$raw/$id.server" 2>&1 &
	local pid=$!
	touch "$sync/ready.$id"
	reap "$pid" "$id" >/dev/null 2>&1
	echo $? >"$raw/$id.src_status"
}

# tls_args NAME: the --tls-* options of certificate NAME for transport=tls.
tls_args() {
	[ "${p[transport]}" = tls ] || return 0
	echo "--tls-cert $pki/$1.pem --tls-key $pki/$1.key --tls-ca $pki/ca.pem"
	[ "$1" = source ] && echo "--allow-dest dest.bench"
}

src_rdmig() {
	local id=$1 pid
	local vflag=
	[ "$verify" = 1 ] && vflag=--verify
	if ! image "${p[size]}"; then
		say "step $id: rdmig-mkimage failed"
		echo 1 >"$raw/$id.src_status"
		touch "$sync/ready.$id"
		return
	fi
	# shellcheck disable=SC2046 # tls_args gives several words
	"$B/source-agent/rdmig-source" -t "${p[transport]}" -l "$RDMIG_ADDR:$((17500 + id))" \
		-m "m$id:$work/img:$secret" --once $vflag $(tls_args source) >"$raw/$id.source" 2>&1 &
	pid=$!
	cpu_sampler "$pid" "$id" &
	local spid=$!
	touch "$sync/ready.$id"
	reap "$pid" "$id"
	echo $? >"$raw/$id.src_status"
	wait "$spid"
}

src_criu() {
	local id=$1
	# CRIU's own lazy-pages and the one-guest runs are the dest side's.
	if [ "${p[mode]}" = criu ] || [ "$role" = both ]; then
		touch "$sync/ready.$id"
		echo 0 >"$raw/$id.src_status"
		return
	fi
	mkdir -p "$sync/criu-$id"
	touch "$sync/ready.$id"
	RDMIG_BUILD=$B RDMIG_SECRET=$secret RDMIG_SIZE_MB=${p[size_mb]} \
		RDMIG_THREADS=${p[threads]} RDMIG_TRANSPORT=${p[transport]} \
		RDMIG_PORT=$((17500 + id)) RDMIG_SHARED_DIR=$sync/criu-$id \
		RDMIG_CRIU_DIR=/tmp/rdmig-bench-criu.$id \
		timeout 900 "$top/test/rxe/lib/criu-migrate.sh" source >"$raw/$id.source" 2>&1
	echo $? >"$raw/$id.src_status"
}

# downtime_env ID: the environment of a downtime step's scripts.
downtime_env() {
	echo "RDMIG_BUILD=$B RDMIG_SIZE_MB=${p[size_mb]} RDMIG_PKI=${BENCH_PKI:-}" \
		"RDMIG_SHARED_DIR=$sync/dt-$1 RDMIG_ID=dt$1 RDMIG_SECRET=$secret" \
		"RDMIG_PORT=$((17500 + $1)) RDMIG_CRIU_DIR=/tmp/rdmig-bench-criu.$1" \
		"RDMIG_CRIU_LEVEL=${p[level]:-2} RDMIG_FAULT_SAMPLES_OUT=$raw/$1.wlat" \
		"RDMIG_VERIFY=$verify" \
		"${p[delay_us]:+RDMIG_WL_ARGS=--delay-us=${p[delay_us]}}" \
		"$(case ${p[flow]:-} in noearly | lazynoearly | precopy2noearly) echo RDMIG_SOURCE_ARGS=--no-early ;; esac)" \
		"$(case ${p[flow]:-} in early | lazyearly) echo RDMIG_SOURCE_ARGS=--early ;; precopy2wait) echo RDMIG_SOURCE_ARGS=--rounds-wait=30000 ;; esac)"
}

# downtime_ctl: the rdmigctl migrate options of a downtime step's flow.
downtime_ctl() {
	case ${p[flow]:-plain} in
	plain | early | noearly) echo --no-lazy-dump ;;
	lazy | lazyearly | lazynoearly) echo --lazy-dump ;;
	precopy2 | precopy2noearly | precopy2wait) echo --precopy=2 ;;
	precopyauto) echo --precopy=auto ;;
	esac
	# level=4: the rows before criu ran at -v2 (the agents ran it at -v4).
	[ -n "${p[level]:-}" ] && echo "--criu-log-level ${p[level]}"
}

# watched ID SOCK CMD...: runs CMD (a downtime step's script, which starts
# an agent with its API on SOCK) and ends it as soon as that agent reports
# the migration dt<ID> failed, aborted or rolled back (its status JSON), or
# the other guest's agent did ($sync/fail.ID), instead of waiting out the
# script's own 900 s: a failed destination leaves the source agent waiting
# for it.  The reason goes to $raw/ID.fail and the step's status is 3.
watched() {
	local id=$1 sock=$2 pid st s why=
	shift 2
	# Its own process group: the agents and rdmigctl it started end with it.
	setsid "$@" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if [ -s "$sync/fail.$id" ]; then
			why="the other guest: $(cat "$sync/fail.$id")"
			break
		fi
		# python3 only once it failed: a run a second would take a good
		# share of the guest's one vCPU from the migration it measures.
		s=$("$B/rdmigctl/rdmigctl" --socket "$sock" status "dt$id" --json 2>/dev/null)
		[[ $s =~ \"state\":\"(failed|aborted|rolled_back)\" ]] || s=
		[ -n "$s" ] && s=$(python3 -c 'import json, sys
j = json.load(sys.stdin)
e = j.get("error")
print(j["state"], (e.get("message") if isinstance(e, dict) else e) or "")' <<<"$s" 2>/dev/null)
		if [ -n "$s" ]; then
			why="$role agent: migration dt$id $s"
			echo "$why" >"$sync/fail.$id"
			break
		fi
	done
	if [ -n "$why" ]; then
		say "step $id: $why; ending the step"
		echo "$why" >"$raw/$id.fail"
		# The script's last words (status, logs) first, if it ends on its own.
		for _ in $(seq 10); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		kill -TERM -- "-$pid" 2>/dev/null
		sleep 1
		kill -KILL -- "-$pid" 2>/dev/null
		wait "$pid"
		return 3
	fi
	wait "$pid"
	st=$?
	return $st
}

src_downtime() {
	local id=$1
	mkdir -p "$sync/dt-$id"
	touch "$sync/ready.$id"
	if [ "${p[mode]}" != rdmig ]; then
		echo 0 >"$raw/$id.src_status"
		return
	fi
	# shellcheck disable=SC2046 # the environment: words
	watched "$id" /tmp/rdmig-handover/source.sock env $(downtime_env "$id") \
		RDMIG_CTL_ARGS="$(downtime_ctl | xargs)" \
		timeout 900 "$top/test/rxe/lib/handover-migrate.sh" source >"$raw/$id.source" 2>&1
	echo $? >"$raw/$id.src_status"
}

source_step() {
	local id=$1 kind=$2
	case $kind in
	lat) src_perftest "$id" ib_read_lat ;;
	bw) src_perftest "$id" ib_read_bw ;;
	fault | drain) src_rdmig "$id" ;;
	criu) src_criu "$id" ;;
	downtime) src_downtime "$id" ;;
	esac
	# Wait for the dest to finish the step before the next one.
	wait_file "$sync/done.$id" 1200 || say "step $id: the dest never finished"
}

# ---- the dest side ----

dst_perftest() {
	local id=$1 tool=$2 i st=1 src=${RDMIG_SOURCE_ADDR:-$RDMIG_ADDR}
	for i in $(seq 20); do
		sleep 0.5
		"$tool" ${dev:+-d "$dev"} -F -s "${p[size]}" -n "${p[iters]}" -p "$((18600 + id))" \
			"$src" >"$raw/$id.out" 2>&1
		st=$?
		[ $st = 0 ] && break
	done
	return $st
}

dst_rdmig() {
	local id=$1 kind=$2 src=${RDMIG_SOURCE_ADDR:-$RDMIG_ADDR} dpid st i
	local dargs=() sargs=() vflag=() wrap=() db=${p[build]:-$B}
	[ "$verify" = 1 ] && vflag=(--verify)
	rm -rf "$work/dst" && mkdir -p "$work/dst"
	if [ "$kind" = fault ]; then
		# Single-page faults at random addresses, no drain competing:
		# read-ahead 1 and FIN held back until the stand-in is done.
		dargs=(--readahead 1)
		sargs=(--access random --threads "${p[threads]}" --fin-delay 600000)
	elif [ "${p[faults]}" = 1 ]; then
		sargs=(--access random --threads "${p[threads]}")
		# lanes=1: faults share the drain's queue pair, as before the fault lane.
		[ "${p[lanes]:-}" = 1 ] && dargs=(--one-lane)
	else
		sargs=(--touch-after-drain --threads 1)
	fi
	# bench/run --drain-qps: the drain's READs over that many queue pairs.
	[ -n "${p[qps]:-}" ] && dargs+=(--drain-qps "${p[qps]}")
	# bench/run --drain-floor: how narrow faults may make the drain.
	[ -n "${p[floor]:-}" ] && dargs+=(--drain-floor "${p[floor]}")
	# The fault-path profile (bench/run --fault-ab): syscalls of rdmig-dest,
	# or where the whole guest's CPU goes while it serves the faults.
	case ${p[trace]:-} in
	strace) wrap=(strace -f -c -S calls -o "$raw/$id.strace") ;;
	perf) wrap=(perf record -a -g -e cpu-clock -F 2000 -q -o "$work/perf.data") ;;
	esac
	# shellcheck disable=SC2046 # tls_args gives several words
	"${wrap[@]}" "$db/dest-agent/rdmig-dest" --source "$src:$((17500 + id))" -t "${p[transport]}" \
		-m "m$id" --secret-file "$secret" "${vflag[@]}" $(tls_args dest) -D "$work/dst" \
		--connect-timeout 120 --status-fd 3 --latency-out "$raw/$id.lat" "${dargs[@]}" \
		3>"$work/ready" 2>"$raw/$id.dest" &
	dpid=$!
	for i in $(seq 3000); do
		[ -s "$work/ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$work/ready" ]; then
		say "step $id: rdmig-dest never became ready"
		wait "$dpid"
		return 1
	fi
	touch "$sync/drain.$id"
	echo "start $(now_ms)" >"$raw/$id.times"
	"$B/test/rdmig-standin" -D "$work/dst" --timeout 1200 "${sargs[@]}" >"$raw/$id.standin" 2>&1
	st=$?
	wait "$dpid" || st=1
	echo "end $(now_ms)" >>"$raw/$id.times"
	if [ "${p[trace]:-}" = perf ]; then
		perf report -i "$work/perf.data" --stdio --no-children --sort comm,dso,sym \
			-g none --percent-limit 0.5 >"$raw/$id.perf" 2>/dev/null
		perf report -i "$work/perf.data" --stdio --no-children --comm rdmig-dest \
			-g caller,0.5,callee --percent-limit 2 >"$raw/$id.perfg" 2>/dev/null
		rm -f "$work/perf.data"
	fi
	rm -f "$work/ready"
	rm -rf "$work/dst"
	return $st
}

dst_criu() {
	local id=$1 r=dest slow=
	if [ "${p[mode]}" = criu ]; then
		r=criu
	elif [ "$role" = both ]; then
		r=both
	fi
	# drain=slow: one 4 KiB page at a time, so the workload meets faults.
	[ "${p[drain]:-}" = slow ] && slow='--drain-depth 1 --drain-chunk 4K'
	mkdir -p "$sync/criu-$id"
	RDMIG_BUILD=$B RDMIG_SECRET=$secret RDMIG_SIZE_MB=${p[size_mb]} RDMIG_DEST_ARGS=$slow \
		RDMIG_THREADS=${p[threads]} RDMIG_TRANSPORT=${p[transport]:-tcp} \
		RDMIG_PORT=$((17500 + id)) RDMIG_SHARED_DIR=$sync/criu-$id \
		RDMIG_CRIU_DIR=/tmp/rdmig-bench-criu.$id RDMIG_FAULT_SAMPLES_OUT=$raw/$id.wlat \
		timeout 900 "$top/test/rxe/lib/criu-migrate.sh" $r >"$raw/$id.out" 2>&1
}

dst_downtime() {
	local id=$1 script=handover-migrate.sh role=dest
	mkdir -p "$sync/dt-$id"
	[ "${p[mode]}" = rdmig ] || script=criu-migrate.sh role=criu
	# shellcheck disable=SC2046 # the environment: words
	watched "$id" /tmp/rdmig-handover/dest.sock env $(downtime_env "$id") \
		timeout 900 "$top/test/rxe/lib/$script" $role >"$raw/$id.out" 2>&1
}

dest_step() {
	local id=$1 kind=$2 st t0
	if ! wait_file "$sync/ready.$id" 1200; then
		say "step $id: the source never got ready"
		echo 1 >"$raw/$id.status"
		touch "$sync/done.$id"
		return
	fi
	t0=$(now_ms)
	case $kind in
	lat) dst_perftest "$id" ib_read_lat ;;
	bw) dst_perftest "$id" ib_read_bw ;;
	fault | drain) dst_rdmig "$id" "$kind" ;;
	criu) dst_criu "$id" ;;
	downtime) dst_downtime "$id" ;;
	*) false ;;
	esac
	st=$?
	echo $st >"$raw/$id.status"
	touch "$sync/done.$id"
	say "[$id/$nsteps] $kind ${3:-} -> $([ $st = 0 ] && echo ok || echo "FAILED ($st)")" \
		"in $(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s"
}

# ---- main ----

rm -rf "$work"
mkdir -p "$work" "$raw" "$sync"
{
	echo "role=$role"
	echo "kernel=$(uname -r)"
	echo "ncpu=$(nproc)"
	echo "mem_kb=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"
	echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "guest=${RDMIG_RXE_GUEST:-?}"
	echo "dev=$dev"
	echo "netdev=${RDMIG_RXE_NETDEV:-}"
	[ -n "$dev" ] && echo "active_mtu=$(ibv_devinfo -d "$dev" 2>/dev/null |
		awk '/active_mtu/ { print $2; exit }')"
} >"$raw/meta.$role"

# warm_criu: before the first downtime step, criu and the agents are read
# once through the guest's 9p root, so the first step's freeze does not pay
# for a cold page cache (it did: the first dump in a guest ran 3-6x longer).
warm_criu() {
	grep -q ' downtime ' "$plan" || return 0
	cat "$(command -v criu)" "$B/source-agent/rdmig-source" "$B/dest-agent/rdmig-dest" \
		"$B/rdmigctl/rdmigctl" "$B/test/rdmig-workload" >/dev/null 2>&1
	criu check >/dev/null 2>&1
	return 0
}

run_side() {
	local side=$1 id kind rest
	while read -r id kind rest; do
		[ -n "$id" ] || continue
		parse_step "$rest"
		if [ "$side" = source ]; then
			source_step "$id" "$kind"
		else
			dest_step "$id" "$kind" "$rest"
		fi
	done <"$plan"
}

warm_criu
case $role in
source) run_side source ;;
dest) run_side dest ;;
both)
	run_side source &
	spid=$!
	run_side dest
	wait "$spid"
	;;
*)
	echo "guest.sh: unknown role $role" >&2
	exit 2
	;;
esac
rm -rf "$work"
say "plan finished"
exit 0
