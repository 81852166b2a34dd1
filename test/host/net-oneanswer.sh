#!/bin/bash
# Before its proof a peer learns nothing about which migrations exist
# (finding 11 of the security review): a Hello for an unknown id, or for a
# migration that is ready, mapping, done or aborted, gets the same answers
# from rdmig-source (the Hello, then "authentication failed" for a wrong
# proof), in the same time class.  A destination with the right secret is
# still told what is wrong after its proof.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 8
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not found"; exit 0; }

mkimage "$T/src" --size 4M
secret "$T/secret"
mkdir "$T/dst" "$T/dst2"
sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")
start_source "$T/source.log" -m "ready:$T/src:$T/secret" -m "done:$T/src:$T/secret" \
	--api-socket "$sock" --images-root "$T" --test-map-delay 60000
wait_log "$T/source.log" "api: serving on $sock" >/dev/null
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args done "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
wait_dest
"${CTL[@]}" migrate --images "$T/src" --secret-file "$T/secret" --id mapping >/dev/null 2>&1
"${CTL[@]}" migrate --images "$T/src" --secret-file "$T/secret" --id aborted >/dev/null 2>&1
"${CTL[@]}" abort aborted >/dev/null 2>&1
for id in done mapping aborted; do
	"${CTL[@]}" status "$id" --json 2>/dev/null | grep -o '"state": "[a-z]*"' | head -1
done >"$T/states.out"
check "the migrations are done, mapping (pending) and aborted" \
	test "$(tr '\n' ' ' <"$T/states.out")" = '"state": "done" "state": "pending" "state": "aborted" '

for id in nosuch ready mapping done aborted; do
	timeout 20 python3 "$(dirname "$0")/rawpeer.py" "$src_port" probe "$id" >"$T/probe-$id.json" 2>&1
done
answers() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["answers"])' "$1" 2>/dev/null; }
ms() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(int(j["hello_ms"] + j["proof_ms"]))' "$1" 2>/dev/null; }
ref=$(answers "$T/probe-nosuch.json")
hello_then_refused() { grep -q 'msg2{.*msg4{1=0,2=authentication failed}' <<<"$ref"; }
check "an unknown id gets a Hello, then 'authentication failed'" hello_then_refused
for id in ready mapping done aborted; do
	check "migration '$id' (state hidden): the very same answers as an unknown id" \
		test "$(answers "$T/probe-$id.json")" = "$ref"
done
# Nothing waits on a migration's state: every probe is answered at once.
slow=0
for id in nosuch ready mapping done aborted; do
	t=$(ms "$T/probe-$id.json")
	echo "# $id: answered in ${t:-?} ms"
	[ -n "$t" ] && [ "$t" -lt 1000 ] || slow=1
done
check "every probe answered within 1 s, none held back" test "$slow" -eq 0

# shellcheck disable=SC2046
timeout 30 "$RDMIG_DEST" -D "$T/dst2" $(net_args mapping "$T/secret") --connect-timeout 3 \
	>"$T/dest-mapping.log" 2>&1
check "with the right secret, a destination is told after its proof: still being mapped" \
	grep -q 'the source aborted: migration is still being mapped on the source' "$T/dest-mapping.log"
[ "$tap_failed" -eq 0 ] || { for f in "$T"/probe-*.json; do diag_file "$f"; done; diag_file "$T/source.log" 30; }
finish
