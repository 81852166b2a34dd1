#!/bin/bash
# Runs in a soft-RoCE guest pair (test/rxe/t/40-container.t): a runc
# container moves between the hosts through both agents, with one command.
#   container-migrate.sh source   guest A: rdmig-source with its API and
#       --runc; the container rdmig-ctr runs rdmig-workload (RDMIG_SIZE_MB,
#       2 threads rewriting and verifying it); first a container whose
#       bundle guest B lacks (rdmig-bad) is refused before its freeze, then
#       `rdmigctl migrate --container rdmig-ctr --to B --verify --wait`.
#   container-migrate.sh dest     guest B: `rdmig-dest --serve` with
#       --bundle-root and --runc (mutual TLS), whose worker runs runc
#       restore --lazy-pages; the workload verifies its memory as soon as it
#       runs here (while pages still move) and after the last page.
# Before the main migration, the rollback case (rollback_source and
# rollback_dest): a second container is restored on B by a one-shot
# rdmig-dest --container that is killed in post-copy, and rolled back on A.
# The bundle is made alike, at the same path, in both guests (as
# lib/runc-migrate.sh makes it) with cgroup limits in config.json: each
# side prints the container's memory.max and cpu.max and `runc list`.
# Helpers come from lib/handover-migrate.sh (RDMIG_HANDOVER_LIB=1); prints
# `handover: ...` lines.  Environment: RDMIG_BUILD, RDMIG_PKI, RDMIG_ADDR,
# RDMIG_PEER_ADDR, RDMIG_SOURCE_ADDR, RDMIG_SHARED_DIR, RDMIG_SECRET (the
# rollback case's secret file), RDMIG_SIZE_MB (default 64).
# shellcheck source-path=SCRIPTDIR
set -u
role=${1:?usage: container-migrate.sh source|dest|redis-source|redis-dest}
here=$(cd "$(dirname "$0")" && pwd)
# redis-migrate.sh's first: handover-migrate.sh's say() and paths win.
# shellcheck source=redis-migrate.sh
RDMIG_REDIS_LIB=1 . "$here/redis-migrate.sh" "$role"
RDMIG_ID=c1 RDMIG_HANDOVER_LIB=1 . "$here/handover-migrate.sh" "$role"
# shellcheck source=runc-bundle.sh
. "$here/runc-bundle.sh"
size=${RDMIG_SIZE_MB:-64}
# handover-migrate.sh's paths, moved: the workload's files are in /io.
top=/tmp/rdmig-ctr
io=$top/io
# shellcheck disable=SC2034 # read by handover-migrate.sh's functions
report=$io/report
# shellcheck disable=SC2034
check=$io/check
bundles=$top/bundles
ctr=rdmig-ctr
runc=$(command -v runc)
# The cgroup limits of the bundle: 256 MiB, half a CPU.
mem_max=268435456
cpu_quota=50000
cpu_period=100000

# The workloads' bundles, alike in both guests: wl (the main migration,
# files in $io) and rb (the rollback case, files in $io_rb).
io_rb=$top/io-rb
# wl also has a bind mount with shared propagation under its rootfs
# (/shared, from $propagated): it must come back on B, still shared.
propagated=$top/propagated
make_wl_bundle() {
	runc_workload_bundle "$bundles/wl" "$B/test" "$io" "$size" "$mem_max" "$cpu_quota" "$cpu_period" &&
		runc_workload_bundle "$bundles/rb" "$B/test" "$io_rb" "$size" &&
		mkdir -p "$propagated" "$bundles/wl/rootfs/shared" &&
		python3 - "$bundles/wl/config.json" "$propagated" <<'EOF_PY'
import json, sys
path, src = sys.argv[1:]
with open(path) as f:
    c = json.load(f)
c["mounts"].append({"destination": "/shared", "type": "bind", "source": src,
                    "options": ["bind", "rw", "shared"]})
with open(path, "w") as f:
    json.dump(c, f, indent=1)
EOF_PY
}
# shared_mnt ID: the container's /shared in its own mountinfo: root, mount
# point, options and the optional fields (shared:N when shared).
shared_mnt() {
	awk '$5 == "/shared" { o = ""; for (i = 7; $i != "-"; i++) o = o " " $i; print $4, $5, $6 o }' \
		"/proc/$(cpid "$1")/mountinfo" 2>/dev/null
}

# limits ID: the container's memory.max and cpu.max, from its init's cgroup.
limits() {
	local p cg
	p=$(cpid "$1")
	cg=$(sed -n 's/^0:://p' "/proc/$p/cgroup" 2>/dev/null)
	echo "memory.max=$(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null) cpu.max=$(tr ' ' / <"/sys/fs/cgroup$cg/cpu.max" 2>/dev/null)"
}
# runc_list: "ID=STATUS" of every container runc knows here.
runc_list() { runc list 2>/dev/null | awk 'NR > 1 { printf "%s=%s ", $1, $3 }'; }

# Pipes for the containers' stdio, as lib/runc-migrate.sh (and runc's own
# checkpoint tests) use; /dev/fd for bash's <(...).
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
exec {in_r}<> <(:)
exec {out_w}<> <(:)
# run_ctr ID BUNDLE: runc run -d.
run_ctr() { (cd "$2" && runc run -d "$1" <&"$in_r" >&"$out_w" 2>&"$out_w"); }

# start_src_agent: rdmig-source with its API on the caller's $sock, --runc
# and TLS; sets the caller's spid.
start_src_agent() {
	# shellcheck disable=SC2046 # the options are words
	"$B/source-agent/rdmig-source" -t rdma -l "$RDMIG_ADDR:7471" --verify \
		--api-socket "$sock" --images-root "$top/images" --runc "$runc" $(tls source) \
		-o "$top/source.log" &
	spid=$!
}

# start_dest_agent: rdmig-dest --serve on the caller's $sock and TCP (TLS),
# with --bundle-root and --runc; sets the caller's dpid.
start_dest_agent() {
	# shellcheck disable=SC2046 # the options are words
	"$B/dest-agent/rdmig-dest" --serve --api-socket "$sock" --api-tcp "0.0.0.0:$api_port" \
		$(tls dest) --allow-peer source.rdmig.test --work-root "$top/dest" \
		--bundle-root "$bundles" --runc "$runc" -o "$top/dest.log" &
	dpid=$!
}

# rollback_source: the rollback case, guest A.  rdmig-rb is checkpointed
# without a destination agent; guest B's one-shot rdmig-dest (--container)
# restores it and is killed during post-copy; once B says no copy runs
# there (the source paused the migration), `rdmigctl abort` and `rollback
# --force` restore it here with runc restore,
# where it verifies its memory and keeps rewriting it.
rollback_source() {
	local id=rb report=$io_rb/report check=$io_rb/check g0 g1 out rc
	run_ctr rdmig-rb "$bundles/rb"
	if ! wait_file "$io_rb/pid" 60 || ! sleep 1 || ! ask_check; then
		say "rb: the container did not start"
		: >"$shared/rb.serving"
		return 1
	fi
	g0=$(last_gen)
	"$ctl" --socket "$sock" migrate --container rdmig-rb --id rb --secret-file "$RDMIG_SECRET" \
		--verify >/dev/null 2>&1
	wait_src_state serving 300
	say "rb: checkpointed and serving ($(src_state)); runc list on A: $(runc_list)"
	: >"$shared/rb.serving"
	wait_file "$shared/rb.dest" 600
	say "rb: destination: $(cat "$shared/rb.dest" 2>/dev/null)"
	out=$("$ctl" --socket "$sock" rollback rb 2>&1)
	say "rb: rollback without force: status $? ($out)"
	# The source paused it (a destination in post-copy may come back): the
	# operator, told by B that no copy runs there, aborts it, then forces.
	out=$("$ctl" --socket "$sock" abort rb 2>&1)
	say "rb: abort: status $? ($out); state $(src_state)"
	out=$("$ctl" --socket "$sock" rollback --force rb 2>&1)
	rc=$?
	say "rb: rollback --force: status $rc ($out)"
	wait_src_state rolled_back 120
	say "rb: after the rollback: $(src_state); rdmig-rb $(cstate rdmig-rb); runc list on A: $(runc_list)"
	sleep 1
	ask_check
	g1=$(last_gen)
	if [ "${g1:-0}" -gt "${g0:-0}" ]; then
		say "rb: the rolled back container verified its memory and kept rewriting it: generation $g0 -> $g1"
	fi
	ask_check exit >/dev/null
	sleep 1
	runc delete -f rdmig-rb >/dev/null 2>&1
}

# rollback_dest: the rollback case, guest B: restores rdmig-rb with the
# worker's options by hand (a slowed drain, so pages remain), then kill -9.
rollback_dest() {
	local dpid rp log=$top/rb.log verdict
	wait_file "$shared/rb.serving" 600 || return 1
	mkdir -p "$top/rb"
	"$B/dest-agent/rdmig-dest" --source "$RDMIG_SOURCE_ADDR:7471" -t rdma -m rb \
		--secret-file "$RDMIG_SECRET" --verify -D "$top/rb" --connect-timeout 60 -o "$log" \
		--restore --container rdmig-rb --bundle "$bundles/rb" --runc "$runc" \
		--readahead 1 --drain-depth 1 --drain-chunk 4K &
	dpid=$!
	for _ in $(seq 3000); do
		[ "$(cstate rdmig-rb)" = running ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	rp=$(cpid rdmig-rb)
	say "rb: runc restored rdmig-rb on B: $(cstate rdmig-rb), pid ${rp:-none}"
	kill -9 "$dpid"
	wait "$dpid" 2>/dev/null
	say "rb: killed rdmig-dest (kill -9) in post-copy"
	for _ in $(seq 300); do
		kill -0 "$rp" 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$rp" ] && ! kill -0 "$rp" 2>/dev/null; then
		verdict="the restored container was killed, runc state: $(cstate rdmig-rb)"
	else
		verdict="the restored container still runs"
		kill -9 "$rp" 2>/dev/null
	fi
	say "rb: $verdict"
	echo "$verdict" >"$shared/rb.dest"
	grep -h 'runc restore\|lazy pages not installed\|guard' "$log" 2>/dev/null | sed 's/^/rb: dest: /'
	runc delete -f rdmig-rb >/dev/null 2>&1
}

container_source() {
	local sock=$top/source.sock spid st=0
	rm -rf "$top" && mkdir -p "$top"
	if ! make_wl_bundle || ! runc_bundle "$bundles/bad" "$B/test" "$io" '["/usr/bin/sleep", "600"]'; then
		say "cannot build the bundles"
		echo 1 >"$shared/migrated"
		return 1
	fi
	start_src_agent
	run_ctr "$ctr" "$bundles/wl" && run_ctr rdmig-bad "$bundles/bad"
	if ! wait_file "$io/pid" 60 || ! wait_file "$sock" 10 || ! check_workload; then
		say "the container or rdmig-source did not start"
		echo 1 >"$shared/migrated"
		return 1
	fi
	say "source: $ctr $(cstate "$ctr") pid $(cpid "$ctr"), limits $(limits "$ctr")"
	say "source: $ctr mount: $(shared_mnt "$ctr")"
	wait_dest_api
	# A bundle guest B does not have: refused before the freeze.
	"$ctl" --socket "$sock" migrate --container rdmig-bad --to "$RDMIG_PEER_ADDR" --id bad \
		--wait >"$top/bad.out" 2>&1
	say "bad bundle: migrate exited $?: $(tail -n 1 "$top/bad.out")"
	say "bad bundle: rdmig-bad after the refusal: $(cstate rdmig-bad)"
	runc kill rdmig-bad KILL >/dev/null 2>&1
	sleep 0.5
	runc delete -f rdmig-bad >/dev/null 2>&1
	rollback_source
	"$ctl" --socket "$sock" migrate --container "$ctr" --to "$RDMIG_PEER_ADDR" --id "$id" \
		--verify --wait 2>&1 | sed -u 's/^/handover: /'
	st=${PIPESTATUS[0]}
	say "rdmigctl migrate exited $st"
	say "source runc list after the migration: $(runc_list)"
	source_end "$st"
	grep -h 'Error' "$top/images/$id/dump.log" 2>/dev/null | tail -n 5
	return "$st"
}

container_dest() {
	local sock=$top/dest.sock dpid st=0
	rm -rf "$top" && mkdir -p "$top"
	make_wl_bundle || {
		say "cannot build the bundle"
		return 1
	}
	start_dest_agent
	rollback_dest
	# Once runc restored it: its limits and runc's list, then the checks.
	for _ in $(seq 6000); do
		[ "$(cstate "$ctr")" = running ] && break
		[ -e "$shared/migrated" ] && break
		sleep 0.1
	done
	say "dest: $ctr $(cstate "$ctr") pid $(cpid "$ctr"), limits $(limits "$ctr")"
	say "dest: $ctr mount: $(shared_mnt "$ctr")"
	say "dest runc list: $(runc_list)"
	dest_verify "$sock" || st=1
	grep -h 'runc restore' "$top/dest/$id/rdmig-dest.log" 2>/dev/null | sed 's/^/handover: dest worker: /'
	kill -TERM "$dpid"
	wait "$dpid"
	sed 's/^/dest: /' "$top/dest.log"
	[ $st -eq 0 ] || grep -h 'Error' "$top/dest/$id/restore.log" 2>/dev/null | tail -n 5
	runc delete -f "$ctr" >/dev/null 2>&1
	return $st
}

# The redis case (redis-source, redis-dest): redis-server with known keys
# in the container rdmig-redis (bundle $bundles/redis, host network, no
# persistence), migrated as c1 is; B reads every key back while pages
# still move and after the last one.
redis_bundle() {
	runc_bundle "$bundles/redis" "$B/test" "$io" '["/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no", "--daemonize", "no", "--enable-debug-command", "yes", "--logfile", ""]'
}

redis_source() {
	local sock=$top/source.sock spid st=0 d0 id=r1
	rm -rf "$top" && mkdir -p "$top"
	if ! redis_bundle; then
		echo 1 >"$shared/migrated"
		return 1
	fi
	start_src_agent
	run_ctr rdmig-redis "$bundles/redis"
	if ! wait_ping 60 || ! wait_file "$sock" 10; then
		say "redis: the container or rdmig-source did not start"
		echo 1 >"$shared/migrated"
		return 1
	fi
	say "redis: loaded: $(gen resp | rcli --pipe 2>&1 | tail -n 1)"
	d0=$(digest before)
	say "redis: source dbsize $(rcli DBSIZE), digest $d0"
	wait_no_clients || say "redis: a client is still connected"
	wait_dest_api
	"$ctl" --socket "$sock" migrate --container rdmig-redis --to "$RDMIG_PEER_ADDR" --id "$id" \
		--verify --wait 2>&1 | sed -u 's/^/handover: /'
	st=${PIPESTATUS[0]}
	say "rdmigctl migrate exited $st"
	say "redis: source runc list after the migration: $(runc_list)"
	source_end "$st"
	return "$st"
}

redis_dest() {
	local sock=$top/dest.sock dpid st=0 d1 d2 s id=r1
	rm -rf "$top" && mkdir -p "$top"
	redis_bundle || return 1
	start_dest_agent
	for _ in $(seq 6000); do
		[ "$(cstate rdmig-redis)" = running ] && break
		[ -e "$shared/migrated" ] && break
		sleep 0.1
	done
	s=$("$ctl" --socket "$sock" status "$id" --json 2>/dev/null | sed -n 's/^  "state": "\([a-z_]*\)".*/\1/p')
	say "redis: dest runc list: $(runc_list) (migration $s)"
	wait_ping 60 || st=1
	d1=$(digest during) || st=1
	say "redis: digest at once ($s): $d1"
	wait_file "$shared/migrated" 900
	d2=$(digest after) || st=1
	say "redis: digest after the last page: $d2, dbsize $(rcli DBSIZE)"
	[ "$d1" = "$RDMIG_REDIS_EXPECT" ] && [ "$d2" = "$RDMIG_REDIS_EXPECT" ] || st=1
	[ $st -eq 0 ] && say "redis: every key and value read back equal, twice"
	echo "$st" >"$shared/verified"
	rcli SHUTDOWN NOSAVE >/dev/null 2>&1
	kill -TERM "$dpid"
	wait "$dpid"
	sed 's/^/dest: /' "$top/dest.log"
	runc delete -f rdmig-redis >/dev/null 2>&1
	return $st
}

case $role in
source) container_source ;;
dest) container_dest ;;
redis-source) redis_source ;;
redis-dest) redis_dest ;;
*)
	echo "container-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
