#!/bin/bash
# Runs inside a soft-RoCE guest (or natively): one side of a synthetic
# post-copy migration, or both.
#   migrate.sh source|dest|both
# Environment: RDMIG_BUILD (build dir), RDMIG_SECRET (secret file),
# RDMIG_SIZE (image size, default 64M), RDMIG_THREADS (default 4),
# RDMIG_TRANSPORT (rdma|tcp, default rdma), RDMIG_PORT (default 7471),
# RDMIG_ADDR (own address), RDMIG_SOURCE_ADDR (dest side),
# RDMIG_STANDIN_ARGS, RDMIG_DEST_ARGS, RDMIG_SOURCE_ARGS, RDMIG_MKIMAGE_ARGS
# (extra options).  RDMIG_LINK_DOWN=SECS (dest side): once rdmig-dest reports
# draining (its --progress-fd lines), take RDMIG_RXE_NETDEV down for SECS,
# then up again; RDMIG_SOURCE_STOP=SECS (both): once draining, SIGSTOP
# rdmig-source for SECS, then SIGCONT.  RDMIG_PAUSE_EXPIRES=1 (dest side):
# the migration is expected to end paused past rdmig-dest's --pause-limit;
# then the state of the stand-in's processes is printed (`migrate: at the
# pause limit: ...`) before rdmig-dest is stopped with SIGTERM.  What
# rdmig-dest reported on --progress-fd (JSON) is printed at the end:
# `migrate: states: ...`, `migrate: pauses: N`, `migrate: pages: total T
# fetched F remaining R`.
set -u
role=${1:?usage: migrate.sh source|dest|both}
B=${RDMIG_BUILD:?}
secret=${RDMIG_SECRET:?}
size=${RDMIG_SIZE:-64M}
threads=${RDMIG_THREADS:-4}
kind=${RDMIG_TRANSPORT:-rdma}
port=${RDMIG_PORT:-7471}
work=$(mktemp -d /tmp/rdmig-migrate.XXXXXX)

source_side() {
	mkdir -p "$work/src"
	# shellcheck disable=SC2086
	"$B/test/rdmig-mkimage" -D "$work/src" --size "$size" --holes ${RDMIG_MKIMAGE_ARGS:-} || return 1
	# shellcheck disable=SC2086
	"$B/source-agent/rdmig-source" -t "$kind" -l "$RDMIG_ADDR:$port" \
		-m "m1:$work/src:$secret" --verify --once ${RDMIG_SOURCE_ARGS:-}
}

# The link goes down in post-copy, or the source stops, and comes back.
disrupt() {
	local dev=${RDMIG_RXE_NETDEV:-eth0} i
	for i in $(seq 1200); do
		grep -q '"state":"draining"' "$work/progress" 2>/dev/null && break
		sleep 0.1
	done
	if [ -n "${RDMIG_SOURCE_STOP:-}" ]; then
		pkill -STOP -x rdmig-source && echo "migrate: rdmig-source stopped for $RDMIG_SOURCE_STOP s"
		sleep "$RDMIG_SOURCE_STOP"
		pkill -CONT -x rdmig-source && echo "migrate: rdmig-source continued"
		return
	fi
	ip link set "$dev" down && echo "migrate: link $dev down for $RDMIG_LINK_DOWN s"
	sleep "$RDMIG_LINK_DOWN"
	ip link set "$dev" up && echo "migrate: link $dev up"
}

# at_limit DPID SPID: once rdmig-dest reports failed (the pause limit), says
# whether it still runs and the state letters of the stand-in's processes
# (T: stopped), then stops rdmig-dest.
at_limit() {
	local dpid=$1 spid=$2 i kids letters=
	for i in $(seq 9000); do
		grep -q '"state":"failed"' "$work/progress" 2>/dev/null && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	kids=$(pgrep -P "$spid")
	for i in $kids; do
		letters="$letters $(sed -n 's/^[0-9]* ([^)]*) \(.\).*/\1/p' "/proc/$i/stat")"
	done
	echo "migrate: at the pause limit: rdmig-dest $(kill -0 "$dpid" 2>/dev/null && echo running || echo gone), processes:${letters:- none}"
	kill -TERM "$dpid" 2>/dev/null
}

# progress_end: what rdmig-dest's --progress-fd JSON lines said: the states
# in order, the pauses (entries into paused, as rdmig-dest --serve counts
# them) and the last page counters.
progress_end() {
	local states
	states=$(jq -r '.state // empty' "$work/progress" | uniq | tr '\n' ' ')
	echo "migrate: states: $states"
	echo "migrate: pauses: $(grep -o paused <<<"$states" | wc -l)"
	echo "migrate: pages: $(jq -sr 'map(select(.pages_total != null)) | last // {} |
		"total \(.pages_total) fetched \(.pages_fetched) remaining \(.pages_remaining)"' "$work/progress")"
}

dest_side() {
	local src=${RDMIG_SOURCE_ADDR:-$RDMIG_ADDR} dpid spid st i fpid=
	mkdir -p "$work/dst"
	# shellcheck disable=SC2086
	"$B/dest-agent/rdmig-dest" --source "$src:$port" -t "$kind" -m m1 \
		--secret-file "$secret" --verify -D "$work/dst" --connect-timeout 120 \
		--status-fd 3 --progress-fd 4 ${RDMIG_DEST_ARGS:-} 3>"$work/ready" 4>"$work/progress" &
	dpid=$!
	if [ -n "${RDMIG_LINK_DOWN:-}${RDMIG_SOURCE_STOP:-}" ]; then
		disrupt &
		fpid=$!
	fi
	for i in $(seq 600); do
		[ -s "$work/ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.2
	done
	if [ ! -s "$work/ready" ]; then
		echo "migrate: rdmig-dest never became ready" >&2
		wait "$dpid"
		return 1
	fi
	# shellcheck disable=SC2086
	"$B/test/rdmig-standin" -D "$work/dst" --threads "$threads" ${RDMIG_STANDIN_ARGS:-} &
	spid=$!
	[ -n "${RDMIG_PAUSE_EXPIRES:-}" ] && at_limit "$dpid" "$spid" &
	wait "$spid"
	st=$?
	wait "$dpid" || st=1
	[ -n "$fpid" ] && wait "$fpid"
	progress_end
	return $st
}

case $role in
source) source_side ;;
dest) dest_side ;;
both)
	source_side &
	spid=$!
	dest_side
	st=$?
	wait "$spid" || st=1
	exit $st
	;;
*)
	echo "migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
