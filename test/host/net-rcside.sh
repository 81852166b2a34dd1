#!/bin/bash
# The RC side channel (FEAT_RC_SIDE, docs/protocol.md §7.4) on the host,
# where no RDMA device exists: its handshake against rdmig-source over TCP.
# A side channel proves the secret like a control connection before
# anything else crosses; a source that does not serve over RDMA refuses it
# after the proof, naming why, and never offers the bit.  The queue pairs
# themselves are made only in the guests (test/rxe/t/39-linkflap.t).
. "$(dirname "$0")/netlib.sh"
plan 4
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not found"; exit 0; }

mkimage "$T/src" --size 1M
secret "$T/secret"
start_source "$T/source.log" -m "m1:$T/src:$T/secret"
peer() { timeout 20 python3 "$(dirname "$0")/rawpeer.py" "$src_port" side "$@"; }
peer m1 "$T/secret" >"$T/right.json" 2>&1
peer m1 "$T/secret" wrong >"$T/wrong.json" 2>&1
answers() { python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["answers"]))' "$1" 2>/dev/null; }
feats() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_features"])' "$1" 2>/dev/null; }
check "a wrong proof on a side channel: 'authentication failed', nothing else" \
	grep -qx 'msg2{.*} msg4{1=0,2=authentication failed}' <<<"$(answers "$T/wrong.json")"
check "the right proof: refused after it, the source serves no RDMA (Abort ABORT_MIGRATION)" \
	grep -qx 'msg2{.*} msg5{1=4,2=an RC side channel comes over TCP to a source serving over RDMA}' \
	<<<"$(answers "$T/right.json")"
f=$(feats "$T/right.json")
check "a TCP source does not offer FEAT_RC_SIDE (features ${f:-?})" \
	test -n "$f" -a "$((${f:-2048} & 2048))" -eq 0
check "the source logged the refusal after the proof" \
	grep -q 'aborting: an RC side channel comes over TCP to a source serving over RDMA' "$T/source.log"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/right.json"; diag_file "$T/wrong.json"; diag_file "$T/source.log" 20; }
finish
