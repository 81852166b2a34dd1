#!/bin/bash
# What the systemd units rely on, without systemd: each agent started by
# systemd-socket-activate (LISTEN_FDS, the API socket as fd 3) serves the
# API on that socket, leaves the file as systemd made it, sends READY=1 to
# $NOTIFY_SOCKET, and keeps fd 3 from the processes it starts.
# (systemd-socket-activate passes on only the environment given by -E.)
. "$(dirname "$0")/netlib.sh"
for t in curl python3 systemd-socket-activate; do
	command -v $t >/dev/null || { echo "1..0 # SKIP $t not found"; exit 0; }
done
plan 7
mkdir -p "$T/run" "$T/root" "$T/work"
chmod 700 "$T/root" "$T/work"

# notify_listen NAME: a datagram socket $T/NAME.notify; what it receives
# goes to $T/NAME.ready (one datagram, 60 s at most).
notify_listen() {
	python3 - "$T/$1.notify" "$T/$1.ready" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
try:
    open(sys.argv[2], "wb").write(s.recv(4096))
except socket.timeout:
    pass
PY
	track $!
	for _ in $(seq 100); do [ -S "$T/$1.notify" ] && return 0; sleep 0.05; done
	return 1
}
# health SOCK: the HTTP status of GET /v1/health there (the first request
# also makes systemd-socket-activate start the agent).
health() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 --unix-socket "$1" http://localhost/v1/health; }
# wait_ready NAME: READY=1 arrived.
wait_ready() {
	for _ in $(seq 200); do grep -qx 'READY=1' "$T/$1.ready" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}

notify_listen src
systemd-socket-activate -E NOTIFY_SOCKET="$T/src.notify" -l "$T/run/src.sock" "$RDMIG_SOURCE" -t tcp \
	-l 127.0.0.1:0 --api-socket "$T/run/src.sock" --images-root "$T/root" >"$T/source.log" 2>&1 &
src_pid=$!
track "$src_pid"
for _ in $(seq 100); do [ -S "$T/run/src.sock" ] && break; sleep 0.05; done
ino=$(stat -c %i "$T/run/src.sock")
check "rdmig-source: the first request on systemd's socket is answered (200)" \
	test "$(health "$T/run/src.sock")" = 200
check "... on the inherited fd 3, the socket file left as systemd made it" \
	eval "grep -q 'api: serving inherited socket fd 3' '$T/source.log' &&
	      [ \"\$(stat -c %i '$T/run/src.sock')\" = '$ino' ]"
check "... READY=1 on NOTIFY_SOCKET" wait_ready src

notify_listen dst
systemd-socket-activate -E NOTIFY_SOCKET="$T/dst.notify" -l "$T/run/dst.sock" "$RDMIG_DEST" --serve \
	--api-socket "$T/run/dst.sock" --work-root "$T/work" -o "$T/sup.log" >"$T/dst.out" 2>&1 &
dst_pid=$!
track "$dst_pid"
for _ in $(seq 100); do [ -S "$T/run/dst.sock" ] && break; sleep 0.05; done
check "rdmig-dest --serve: the first request on systemd's socket is answered (200)" \
	test "$(health "$T/run/dst.sock")" = 200
check "... on the inherited fd 3, and READY=1 on NOTIFY_SOCKET" \
	eval "grep -q 'api: serving inherited socket fd 3' '$T/sup.log' && wait_ready dst"

# cloexec PID: its fd 3 is close-on-exec (criu and the workers never get it).
cloexec() {
	local f
	f=$(sed -n 's/^flags:[[:space:]]*//p' "/proc/$1/fdinfo/3")
	[ -n "$f" ] && (((8#$f & 8#2000000) != 0))
}
check "both agents keep fd 3 from what they start (O_CLOEXEC)" \
	eval "cloexec $src_pid && cloexec $dst_pid"
kill -TERM "$src_pid" "$dst_pid"
wait_pid "$src_pid"
c1=$code
wait_pid "$dst_pid"
check "both stop on SIGTERM with status 0" test "$c1:$code" = 0:0
finish
