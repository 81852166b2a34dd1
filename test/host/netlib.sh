# Helpers of the network host tests (sourced after lib.sh's variables are set).
#
# rdmig-source serves a synthetic images dir over TCP on 127.0.0.1, on a
# port the kernel picks (listen on port 0, read the port from the log), so
# parallel runs never clash.  rdmig-dest fetches the images and serves the
# stand-in.  Every process started here is killed on exit, even on failure.
# Binaries: RDMIG_SOURCE besides lib.sh's RDMIG_DEST, RDMIG_STANDIN,
# RDMIG_MKIMAGE.

. "$(dirname "$0")/lib.sh"
: "${RDMIG_SOURCE:?}"

net_pids=()
net_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src_pid=
src_port=

net_cleanup() {
	local p
	for p in "${net_pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null
			wait "$p" 2>/dev/null
		fi
	done
	cleanup
}
trap net_cleanup EXIT

# track PID: kill it on exit if still running.
track() { net_pids+=("$1"); }

# secret FILE [BYTES]: a fresh random secret, readable by the owner only.
secret() {
	head -c "${2:-32}" /dev/urandom >"$1" && chmod 600 "$1"
}

# start_source LOG [args...]: rdmig-source -t tcp (or -t $SRC_TRANSPORT) on
# 127.0.0.1, any free port.  Returns once it listens (sets src_pid, src_port)
# or fails if it exited.
start_source() {
	local log=$1 i
	shift
	src_port=
	# --early: the host tests cover the worker at the reservation for
	# every migration (by default a lazy dump's only); a later --no-early
	# wins.
	"$RDMIG_SOURCE" -t "${SRC_TRANSPORT:-tcp}" -l 127.0.0.1:0 --early "$@" >"$log" 2>&1 &
	src_pid=$!
	track "$src_pid"
	for i in $(seq 1200); do
		src_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (t[cl][ps]).*/\1/p' "$log" 2>/dev/null)
		[ -n "$src_port" ] && return 0
		kill -0 "$src_pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "# rdmig-source did not start listening"
	diag_file "$log"
	return 1
}

# wait_pid PID [SECONDS]: waits for a child (killing it after SECONDS, 30 by
# default); its exit code goes to $code (137 when it had to be killed).
wait_pid() {
	local pid=$1 i
	for i in $(seq $((${2:-30} * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "# process $pid still running after ${2:-30} s: killing it"
		kill -KILL "$pid"
	fi
	wait "$pid"
	code=$?
}

# state ID: the migration's state, through the API (the caller's CTL array:
# rdmigctl and its --socket).
state() { "${CTL[@]}" status "$1" --json 2>/dev/null | sed -n 's/.*"state": "\([a-z_]*\)".*/\1/p'; }

# wait_state ID STATE [SECS]: waits up to SECS (60) seconds for that state.
wait_state() {
	for _ in $(seq $((${3:-60} * 10))); do
		[ "$(state "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	echo "# $1 is $(state "$1"), not $2"
	return 1
}

# start_fakedest NAME [ARGS...]: rdmig-fakedest (RDMIG_FAKEDEST, a stand-in
# for the destination agent's API) recording into $T/NAME, its log
# $T/NAME.log; sets fake_pid and fake_port.
start_fakedest() {
	local name=$1
	shift
	mkdir -p "$T/$name"
	"${RDMIG_FAKEDEST:?}" --record "$T/$name" --port-file "$T/$name.port" "$@" \
		>"$T/$name.log" 2>&1 &
	fake_pid=$!
	track "$fake_pid"
	for _ in $(seq 1200); do
		[ -s "$T/$name.port" ] && break
		sleep 0.05
	done
	fake_port=$(cat "$T/$name.port" 2>/dev/null)
}

# wait_until SECS CMD...: runs CMD every 0.1 s until it succeeds; fails
# after SECS seconds.  For waiting on an event: SECS only bounds a test
# gone wrong, so it is generous, never a guess at how long the event takes.
wait_until() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.1
	done
}

# alive PID: the process runs (and is not a zombie we could reap).
alive() { kill -0 "$1" 2>/dev/null; }

# wait_for_file FILE [SECONDS]: waits (30 s by default) until FILE exists.
wait_for_file() {
	local i
	for i in $(seq $((${2:-30} * 20))); do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# hang_mount DIR FILE: a FUSE mount at DIR/mnt holding FILE, whose read
# waits until DIR/release exists (test/tools/hangfs.py, its log in
# DIR.log); fails where FUSE cannot be mounted (python3-fusepy, /dev/fuse).
# hang_release DIR undoes it.
hang_mount() {
	mkdir -p "$1/mnt"
	/usr/bin/python3 -c 'import fusepy' 2>/dev/null || return 1
	/usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/../tools/hangfs.py" "$1/mnt" "$1/release" \
		"$2" >"$1.log" 2>&1 &
	hang_pid=$!
	track "$hang_pid"
	wait_for_file "$1/mnt/$2"
}
hang_release() {
	touch "$1/release"
	[ -n "${hang_pid:-}" ] && kill -TERM "$hang_pid" 2>/dev/null
	umount -l "$1/mnt" 2>/dev/null
	hang_pid=
}
# health_while SOCK LOG PATTERN: once LOG has PATTERN (a read under way),
# GETs /v1/health on the API socket SOCK: sets health (its status) and
# pending (0: the POST $post_pid still unanswered).
# shellcheck disable=SC2034 # health and pending are the callers'
health_while() {
	wait_log "$2" "$3" 10 >/dev/null
	health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --unix-socket "$1" \
		http://localhost/v1/health)
	kill -0 "$post_pid" 2>/dev/null
	pending=$?
}
# skip_fuse DESCRIPTION...: one skipped TAP line for each, when hang_mount failed.
skip_fuse() {
	local d
	for d in "$@"; do
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $d # SKIP no FUSE mount here (python3-fusepy, /dev/fuse)"
	done
}

# wait_log FILE PATTERN [SECONDS]: waits until FILE has a line matching PATTERN.
wait_log() {
	local i
	for i in $(seq $((${3:-60} * 20))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "# '$2' not in $1 after ${3:-60} s"
	return 1
}

# proxy LOG [args...]: rdmig-flipproxy ($RDMIG_FLIPPROXY) in front of the running source (sets px_port, px_pid).
proxy() {
	local log=$1 i
	shift
	px_port=
	"$RDMIG_FLIPPROXY" --to "127.0.0.1:$src_port" "$@" >"$log" 2>&1 &
	px_pid=$!
	track "$px_pid"
	for i in $(seq 100); do
		px_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
		[ -n "$px_port" ] && return 0
		sleep 0.05
	done
	echo "# rdmig-flipproxy did not start"
	return 1
}

# net_args ID SECRET: rdmig-dest's options to take migration ID from the
# source (its $SRC_TRANSPORT; for tls, $DEST_DATA_TLS gives the --tls-* options).
net_args() {
	echo "--source 127.0.0.1:$src_port -t ${SRC_TRANSPORT:-tcp} ${DEST_DATA_TLS:-} -m $1 --secret-file $2"
}

# dir_sum DIR: a checksum of the names, sizes, modes and contents of DIR's files.
dir_sum() {
	(cd "$1" && find . -type f -printf '%p %s %m\n' | sort && find . -type f -print0 |
		sort -z | xargs -0 md5sum) | md5sum | cut -d' ' -f1
}

# no_images DIR: DIR holds no image file (the socket rdmig-dest made is fine).
no_images() {
	[ -z "$(find "$1" -type f -print -quit)" ] || {
		echo "# files in $1:"
		ls -la "$1" | sed 's/^/# /'
		return 1
	}
}

# same_meta SRC DST: every image but the pages files is byte-identical, and
# the pages files have the source's size.
same_meta() {
	local f n
	for f in "$1"/*.img; do
		n=${f##*/}
		case $n in
		pages-*) [ "$(stat -c %s "$f")" = "$(stat -c %s "$2/$n" 2>/dev/null)" ] ;;
		*) cmp -s "$f" "$2/$n" ;;
		esac || {
			echo "# $n differs"
			return 1
		}
	done
}

# never_wrong OUT: the stand-in never reported a wrong byte.
never_wrong() {
	! grep -q 'MISMATCH\|mismatches [1-9]' "$1"
}

# progress_last FILE EXPR: EXPR (Python, on the object `j`) of the last
# --progress-fd line in FILE; "None" for null.
progress_last() {
	python3 -c 'import json,sys
lines=[l for l in open(sys.argv[1]) if l.strip()]
j=json.loads(lines[-1])
print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}

# start_dagent NAME ARGS...: rdmig-dest --serve on loopback TCP (plain) and
# $T/NAME.sock; sets dport and dagent_pid.
start_dagent() {
	local name=$1
	shift
	"$RDMIG_DEST" --serve --api-socket "$T/$name.sock" --api-tcp 127.0.0.1:0 --insecure-api \
		--criu "$net_here/fake-criu-restore.sh" -o "$T/$name.log" "$@" &
	dagent_pid=$!
	track $!
	dport=
	for _ in $(seq 1200); do
		dport=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/$name.log" 2>/dev/null)
		[ -n "$dport" ] && break
		sleep 0.05
	done
}
# dapi NAME METHOD PATH [BODY]: the destination agent's API; the body to
# $T/dapi.out, the HTTP status printed.
dapi() {
	curl -s -o "$T/dapi.out" -w '%{http_code}' --unix-socket "$T/$1.sock" -X "$2" \
		${4:+-H 'Content-Type: application/json' -d "$4"} "http://localhost$3"
}
# dest_is NAME ID STATE: the destination agent NAME has migration ID in
# STATE.  The source's done comes first, from the worker's Done; the
# destination agent's slot is free only once its worker reported: a test
# that next needs the slot waits for this (wait_until), not for the source.
dest_is() {
	dapi "$1" GET "/v1/migrations/$2" >/dev/null &&
		[ "$(jq -r '.state // empty' "$T/dapi.out" 2>/dev/null)" = "$3" ]
}

# held_criu FILE: a criu stand-in at FILE whose dump into DIR waits for
# $T/go-ID (ID: DIR's name), then fails if $T/fail-ID exists, else is
# fake-criu.sh's, as is everything else; so "while it dumps" is a state.
held_criu() {
	cat >"$1" <<EOF
#!/bin/bash
[ "\$1" = dump ] || exec "$net_here/fake-criu.sh" "\$@"
dir= prev=
for a in "\$@"; do [ "\$prev" = -D ] && dir=\$a; prev=\$a; done
id=\$(basename "\$dir")
while [ ! -e "$T/go-\$id" ]; do sleep 0.05; done
[ -e "$T/fail-\$id" ] && exit 1
exec "$net_here/fake-criu.sh" "\$@"
EOF
	chmod +x "$1"
}
