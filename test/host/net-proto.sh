#!/bin/bash
# Protocol robustness: raw TCP peers sending garbage, an oversized or empty
# frame length, a truncated header, a valid frame that is not a Hello, a
# Hello with a wrong sequence number, or nothing at all.  rdmig-source logs
# each, drops that peer and keeps serving: a real destination then succeeds,
# even while an unauthenticated peer that named the migration sits silent.
. "$(dirname "$0")/netlib.sh"
plan 16
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not found"; exit 0; }

mkimage "$T/src" --size 16M
secret "$T/secret"
mkdir "$T/dst"
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --once --handshake-timeout 2

# raw PORT CASE: one hostile peer; prints what the source answered (hex) or EOF.
raw() {
	timeout 10 python3 - "$@" <<'PY'
import os, socket, struct, sys, time
port, case = int(sys.argv[1]), sys.argv[2]
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
def field(num, wt, payload):
    key = varint(num << 3 | wt)
    return key + (varint(payload) if wt == 0 else varint(len(payload)) + payload)
def hello(mig=b"m1"):
    h = (field(1, 0, 2) + field(2, 0, 2) + field(3, 0, 2) + field(4, 0, 2) +
         field(5, 2, mig) + field(6, 2, os.urandom(32)) + field(7, 0, 4096) + field(9, 0, 0))
    return h
def msg(seq, num, body):
    return field(1, 0, seq) + field(num, 2, body)
def frame(b):
    return struct.pack(">I", len(b)) + b
data = {
    "garbage": b"GET / HTTP/1.0\r\n\r\n" + os.urandom(64),
    "oversized": struct.pack(">I", 0x7FFFFFFF) + b"x" * 16,
    "empty": struct.pack(">I", 0),
    "short-header": b"\x00\x00",
    "undecodable": frame(b"\xff" * 32),
    # seq 1, ReadReq{cookie 1, pid 4242, img_vaddr 0x10000, len 4096}: well formed, before Hello
    "readreq-first": frame(msg(1, 11, field(1, 0, 1) + field(2, 0, 4242) + field(3, 0, 0x10000) + field(4, 0, 4096))),
    "bad-seq": frame(msg(7, 2, hello())),
    "silent": b"",
    "hello-then-silent": frame(msg(1, 2, hello())),
}[case]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(data)
if case == "short-header":
    s.shutdown(socket.SHUT_WR)
s.settimeout(8)
got = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except Exception as e:
    print("error", e)
print(case, "answer", got.hex() if got else "EOF")
PY
}

for c in garbage oversized empty short-header undecodable readreq-first bad-seq; do
	raw "$src_port" "$c" >"$T/raw-$c.out" 2>&1
done
log=$T/source.log
check "garbage: the absurd frame length is refused" grep -q "error: frame of 1195725856 bytes from 127.0.0.1:[0-9]*: too large" "$log"
check "oversized: refused on the header" grep -q "error: frame of 2147483647 bytes from .*: too large" "$log"
check "empty frame: refused" grep -q "error: frame of 0 bytes from .*: empty" "$log"
check "truncated header: the peer is dropped" grep -q "closed the connection in the middle of a frame (2 bytes unread)" "$log"
check "undecodable frame: refused with an Abort" \
	eval "grep -q 'error: peer .*: aborting: undecodable message' '$log' && ! grep -q 'answer EOF' '$T/raw-undecodable.out'"
check "a ReadReq before Hello: refused as a protocol error" \
	grep -q "error: peer .*: aborting: .*(protocol error)" "$log"
check "... and nothing served for it" eval "! grep -q 'sending images\|sent [0-9]* image' '$log'"
check "a Hello with sequence number 7: refused" grep -qi "seq" "$log"
check "the source is still serving" alive "$src_pid"

# A peer that sends nothing is dropped after --handshake-timeout.
raw "$src_port" silent >"$T/raw-silent.out" 2>&1
check "a silent peer is dropped after the handshake timeout" \
	eval "grep -q 'aborting: no authentication in time' '$log' && grep -q 'silent answer [0-9a-f]' '$T/raw-silent.out'"

# A peer that names the migration, then never proves anything, must not lock it.
raw "$src_port" hello-then-silent >"$T/raw-hello.out" 2>&1 &
rpid=$!
track "$rpid"
raw "$src_port" silent >"$T/raw-silent2.out" 2>&1 &
spid=$!
track "$spid"
wait_log "$log" "connection from.*" 5
sleep 0.3
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args m1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "a real destination then completes: every page verified" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 4096"
check "... rdmig-dest exits 0" test "$code" -eq 0
wait_pid "$rpid" 15
wait_pid "$spid" 15
check "the unauthenticated peers are dropped, told why" \
	eval "grep -q 'answer [0-9a-f]' '$T/raw-hello.out' && grep -q 'answer [0-9a-f]' '$T/raw-silent2.out'"
wait_pid "$src_pid" 20
check "rdmig-source --once exits 0 after the migration" test "$code" -eq 0
check "... which it logs done once" test "$(grep -c 'migration m1 done' "$log")" -eq 1
check "no crash or sanitizer report" eval "! grep -q 'Sanitizer\|runtime error\|Segmentation' '$log'"
for f in "$T"/raw-*.out; do sed 's/^/# /' "$f"; done
[ "$tap_failed" -eq 0 ] || { diag_file "$log" 60; diag_file "$T/dest.log"; }
finish
