#!/usr/bin/env python3
"""Raw TCP peers of rdmig-source's data listener, for the host tests.

rawpeer.py PORT CASE           one hostile peer (net-proto.sh's cases); prints
                               what the source answered (hex) or EOF
rawpeer.py PORT resets N       N peers send a Hello, then reset the connection
rawpeer.py PORT probe ID       a Hello for ID, then a wrong AuthProof; prints
                               the answers (nonces masked) and the time taken
rawpeer.py PORT side ID SECRET_FILE [wrong]
                               an RC side channel's handshake (Hello with
                               channel 2 and FEAT_RC_SIDE, then the proof with
                               the secret, or a wrong one); prints the answers
                               and the source's features as JSON
rawpeer.py PORT flood N PER TOTAL ADDR...
                               opens N unauthenticated connections from the
                               local addresses ADDR... in turn, every tenth
                               starting a 1 MiB frame, the others 60 KiB of a
                               64 KiB frame; then holds them until the source
                               has settled them (every 1 MiB one closed, at
                               most PER open per address and TOTAL in all) or
                               60 s passed; prints JSON counts
Always to 127.0.0.1.  Messages are hand-encoded protobuf (proto/rdmig.proto).
"""
import hashlib
import hmac
import json
import os
import selectors
import socket
import struct
import sys
import time


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
    return (field(1, 0, 2) + field(2, 0, 2) + field(3, 0, 2) + field(4, 0, 2) +
            field(5, 2, mig) + field(6, 2, os.urandom(32)) + field(7, 0, 4096) +
            field(9, 0, 0))


def msg(seq, num, body):
    return field(1, 0, seq) + field(num, 2, body)


def frame(b):
    return struct.pack(">I", len(b)) + b


def connect(port, src=None, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_all(s, limit=8):
    s.settimeout(limit)
    got = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except Exception as e:
        print("error", e)
    return got


def hostile(port, case):
    data = {
        "garbage": b"GET / HTTP/1.0\r\n\r\n" + os.urandom(64),
        "oversized": struct.pack(">I", 0x7FFFFFFF) + b"x" * 16,
        "empty": struct.pack(">I", 0),
        "short-header": b"\x00\x00",
        "undecodable": frame(b"\xff" * 32),
        # seq 1, ReadReq{cookie 1, pid 4242, img_vaddr 0x10000, len 4096}: before Hello
        "readreq-first": frame(msg(1, 11, field(1, 0, 1) + field(2, 0, 4242) +
                                   field(3, 0, 0x10000) + field(4, 0, 4096))),
        "bad-seq": frame(msg(7, 2, hello())),
        "silent": b"",
        "hello-then-silent": frame(msg(1, 2, hello())),
    }[case]
    s = connect(port)
    s.sendall(data)
    if case == "short-header":
        s.shutdown(socket.SHUT_WR)
    got = read_all(s)
    print(case, "answer", got.hex() if got else "EOF")


def resets(port, n):
    for _ in range(n):
        s = connect(port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(frame(msg(1, 2, hello())))
        s.close()


def fields(buf):
    """(number, value) of one protobuf message; bytes for length-delimited."""
    out, i = [], 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, v))
    return out


def read_varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def recv_frame(s):
    hdr = b""
    while len(hdr) < 4:
        b = s.recv(4 - len(hdr))
        if not b:
            return None
        hdr += b
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        b = s.recv(n - len(body))
        if not b:
            return None
        body += b
    return body


def describe(body):
    """A message as text, without what differs per connection (seq, nonce, id)."""
    parts = []
    for num, v in fields(body):
        if num == 1:
            continue
        inner = []
        for n2, v2 in fields(v):
            if num == 2 and n2 == 6:
                v2 = "nonce(%d)" % len(v2)
            elif num == 2 and n2 == 5:
                v2 = "(the id asked for)"
            elif isinstance(v2, bytes):
                v2 = v2.decode("utf-8", "replace")
            inner.append("%d=%s" % (n2, v2))
        parts.append("msg%d{%s}" % (num, ",".join(inner)))
    return " ".join(parts)


def probe(port, mig):
    s = connect(port)
    s.settimeout(8)
    t0 = time.monotonic()
    s.sendall(frame(msg(1, 2, hello(mig.encode()))))
    answers = []
    b = recv_frame(s)
    if b is not None:
        answers.append(describe(b))
        t1 = time.monotonic()
        s.sendall(frame(msg(2, 3, field(1, 2, os.urandom(32)))))
        while True:
            b = recv_frame(s)
            if b is None:
                break
            answers.append(describe(b))
    else:
        t1 = time.monotonic()
    t2 = time.monotonic()
    print(json.dumps({"id": mig, "answers": answers, "hello_ms": round((t1 - t0) * 1000, 1),
                      "proof_ms": round((t2 - t1) * 1000, 1)}))


def transcript(role, mig, src, dst):
    """T(role) of docs/protocol.md §6: what each proof is an HMAC of."""
    label = b"rdmig control auth v1"
    t = bytes([len(label)]) + label + bytes([role, len(mig)]) + mig
    for h in (src, dst):
        t += struct.pack(">IIQII", h[1], h[2], h[3], h[7], h.get(9, 0)) + h[6]
    return t


def side(port, mig, secret_file, wrong):
    """The destination's half of an RC side channel's handshake, as rdmig-dest."""
    mig = mig.encode()
    mine = {1: 2, 2: 2, 3: 2 | 64 | 2048, 6: os.urandom(32), 7: 4096, 9: 2}
    body = (field(1, 0, 2) + field(2, 0, 2) + field(3, 0, mine[3]) + field(4, 0, 2) +
            field(5, 2, mig) + field(6, 2, mine[6]) + field(7, 0, 4096) + field(9, 0, 2))
    s = connect(port)
    s.settimeout(8)
    s.sendall(frame(msg(1, 2, body)))
    b = recv_frame(s)
    if b is None:
        print(json.dumps({"answers": [], "source_features": None}))
        return
    answers = [describe(b)]
    theirs = dict(fields(dict(fields(b))[2]))
    with open(secret_file, "rb") as f:
        key = f.read()
    if wrong:
        key = bytes(x ^ 1 for x in key)
    proof = hmac.new(key, transcript(2, mig, theirs, mine), hashlib.sha256).digest()
    s.sendall(frame(msg(2, 3, field(1, 2, proof))))
    while True:
        b = recv_frame(s)
        if b is None:
            break
        answers.append(describe(b))
    print(json.dumps({"answers": answers, "source_features": theirs[3]}))


def flood_settled(socks, per, total):
    held = {}
    for v in socks.values():
        if v["big"] and not v["closed"]:
            return False
        if not v["closed"]:
            held[v["addr"]] = held.get(v["addr"], 0) + 1
    return sum(held.values()) <= total and max(held.values(), default=0) <= per


def flood(port, n, per, total, addrs):
    sel = selectors.DefaultSelector()
    socks = {}
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((addrs[i % len(addrs)], 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        big = i % 10 == 0
        socks[s] = {"big": big, "addr": addrs[i % len(addrs)], "closed": False,
                    "sent": False}
        sel.register(s, selectors.EVENT_WRITE)
        # Let the agent accept as we go: a full backlog only delays connects.
        for key, ev in sel.select(0):
            pump(sel, key.fileobj, socks[key.fileobj], ev)
    # Open connections only ever close: once settled, the counts are final.
    # The bound is for a source that never settles, however slow the machine.
    deadline = time.monotonic() + 60
    while not flood_settled(socks, per, total) and time.monotonic() < deadline:
        for key, ev in sel.select(0.05):
            pump(sel, key.fileobj, socks[key.fileobj], ev)
    st = socks.values()
    held = {}
    for v in st:
        if not v["closed"]:
            held[v["addr"]] = held.get(v["addr"], 0) + 1
    print(json.dumps({
        "opened": len(socks),
        "held": sum(held.values()),
        "held_per_addr_max": max(held.values()) if held else 0,
        "oversized": sum(1 for v in st if v["big"]),
        "oversized_closed": sum(1 for v in st if v["big"] and v["closed"]),
    }))
    for s in socks:
        s.close()


def pump(sel, s, v, ev):
    if ev & selectors.EVENT_WRITE and not v["sent"]:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            v["closed"] = True
            sel.unregister(s)
            return
        try:
            if v["big"]:
                s.send(struct.pack(">I", 1 << 20) + os.urandom(60 << 10))
            else:
                s.send(struct.pack(">I", 64 << 10) + os.urandom(60 << 10))
        except OSError:
            pass
        v["sent"] = True
        sel.modify(s, selectors.EVENT_READ)
        return
    if ev & selectors.EVENT_READ:
        try:
            b = s.recv(65536)
        except OSError:
            b = b""
        if not b:
            v["closed"] = True
            sel.unregister(s)


def main():
    port, case = int(sys.argv[1]), sys.argv[2]
    if case == "resets":
        resets(port, int(sys.argv[3]))
    elif case == "probe":
        probe(port, sys.argv[3])
    elif case == "side":
        side(port, sys.argv[3], sys.argv[4], len(sys.argv) > 5 and sys.argv[5] == "wrong")
    elif case == "flood":
        flood(port, int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:])
    else:
        hostile(port, case)


main()
