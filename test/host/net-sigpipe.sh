#!/bin/bash
# An agent never dies of writing to a peer that has gone (finding 4 of the
# security review).  API clients send a request to a stopped rdmig-source
# and close without reading the answer; once the agent runs again it writes
# its answers into closed sockets (EPIPE).  The agent must stay alive and
# keep answering /v1/health; a raw peer that closes right after its Hello
# does the same on the data listener; and rdmig-dest --serve's API too.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 6
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not found"; exit 0; }

mkimage "$T/src" --size 4M
secret "$T/secret"
sock=$T/run/source.sock
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --api-socket "$sock"
wait_log "$T/source.log" "api: serving on $sock" >/dev/null

# gone SOCKET N: N clients send GET /v1/migrations and close at once.
gone() {
	timeout 20 python3 - "$@" <<'PY'
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"GET /v1/migrations HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.close()
PY
}

kill -STOP "$src_pid"
gone "$sock" 20 >"$T/gone.out" 2>&1
check "20 clients sent a request to the stopped agent and closed" test $? -eq 0
kill -CONT "$src_pid"
sleep 1
check "rdmig-source is still alive after answering into closed sockets" alive "$src_pid"
"$RDMIG_CTL" --socket "$sock" health --json >"$T/health.json" 2>&1
check "... and /v1/health answers ok" grep -q '"status": *"ok"' "$T/health.json"

# The data listener: a peer sends a Hello and resets the connection at once.
timeout 10 python3 "$(dirname "$0")/rawpeer.py" "$src_port" resets 20 >"$T/rst.out" 2>&1
sleep 1
check "rdmig-source is still alive after peers reset their connections" alive "$src_pid"
"$RDMIG_CTL" --socket "$sock" health --json >"$T/health2.json" 2>&1
check "... and /v1/health still answers ok" grep -q '"status": *"ok"' "$T/health2.json"
# The same for rdmig-dest --serve's API.
dsock=$T/run/dest.sock
"$RDMIG_DEST" --serve --api-socket "$dsock" --work-root "$T/root" -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on $dsock" >/dev/null
kill -STOP "$sup_pid"
gone "$dsock" 20 >"$T/gone-dest.out" 2>&1
kill -CONT "$sup_pid"
sleep 1
"$RDMIG_CTL" --socket "$dsock" health --json >"$T/health-dest.json" 2>&1
check "rdmig-dest --serve too: alive after answering into closed sockets, health ok" \
	eval "alive $sup_pid && grep -q '\"status\": *\"ok\"' '$T/health-dest.json'"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/source.log" 30; diag_file "$T/health.json"; diag_file "$T/sup.log" 10; }
finish
