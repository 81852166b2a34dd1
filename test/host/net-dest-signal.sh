#!/bin/bash
# A worker handles SIGTERM while the images are still to come (its one loop
# runs the signal events from the start, dest-agent/worker.c): the source
# here is a TCP listener that accepts and never speaks, so rdmig-dest waits
# in its images phase.  SIGTERM then ends it with exit status 1 (not the
# signal's default death), and its last --progress-fd line is "failed" with
# the signal as the cause.  Then a connect that fails at once, before the
# loop runs (-t rdma on a host with no RDMA device): the worker ends by
# itself with exit status 1 instead of waiting for a signal.
. "$(dirname "$0")/netlib.sh"
plan 7
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not found"; exit 0; }

secret "$T/secret"
mkdir -p "$T/imgs"
# A silent peer: prints its port, writes "accepted" once rdmig-dest connected.
python3 - "$T/port" "$T/accepted" <<'PY' &
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
open(sys.argv[1], "w").write("%d\n" % s.getsockname()[1])
c, _ = s.accept()
open(sys.argv[2], "w").write("accepted\n")
c.recv(65536)
c.recv(65536)
PY
track $!
wait_log "$T/port" "[0-9]" >/dev/null
port=$(cat "$T/port")

"$RDMIG_DEST" -D "$T/imgs" -t tcp --source "127.0.0.1:$port" -m m1 --secret-file "$T/secret" \
	--progress-fd 3 -o "$T/dest.log" 3>"$T/progress.jsonl" &
dpid=$!
track "$dpid"
wait_for_file "$T/accepted"
check "rdmig-dest connected to the silent source and waits for the images" alive "$dpid"
kill -TERM "$dpid"
wait_pid "$dpid" 20
check "SIGTERM while the images arrive: exit status 1 (got $code)" test "$code" -eq 1
check "... the last progress line says failed" \
	test "$(progress_last "$T/progress.jsonl" 'j["state"]')" = failed
check "... with the signal as the cause" \
	test "$(progress_last "$T/progress.jsonl" 'j["error"]')" = "stopped by signal 15"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/dest.log"; diag_file "$T/progress.jsonl"; }

if [ -n "$(ls -A /sys/class/infiniband 2>/dev/null)" ]; then
	for d in "a connect that fails at once ends the worker" "... exit status 1" \
		"... its last progress line says why"; do
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $d # SKIP this host has an RDMA device"
	done
else
	mkdir -p "$T/imgs2"
	"$RDMIG_DEST" -D "$T/imgs2" -t rdma --source 127.0.0.1:1 -m m2 --secret-file "$T/secret" \
		--progress-fd 3 -o "$T/dest2.log" 3>"$T/progress2.jsonl" &
	dpid=$!
	track "$dpid"
	wait_pid "$dpid" 60
	check "a connect that fails at once ends the worker by itself (not killed after 60 s)" test "$code" -ne 137
	check "... exit status 1 (got $code)" test "$code" -eq 1
	check "... its last progress line says failed, naming the connection" \
		grep -q '"state": *"failed".*cannot connect\|cannot connect.*"state": *"failed"' \
		<(tail -n 1 "$T/progress2.jsonl")
	[ "$tap_failed" -eq 0 ] || { diag_file "$T/dest2.log"; diag_file "$T/progress2.jsonl"; }
fi
finish
