#!/bin/bash
# Mutual TLS on the agents' TCP APIs (docs/api.md §1), with a CA made here
# by the openssl CLI: a client without a certificate of the CA gets no HTTP
# (as root and as nobody), a certificate of the CA not in --allow-peer gets
# a JSON 403, an allowed one 200; a TCP API without TLS refuses to start
# unless it is on loopback with --insecure-api; rdmigctl --api https://
# checks the agent's name; a handover between the real agents runs inside
# mutual TLS with a secret the source made, and a source the destination
# does not allow, or one without TLS, cannot hand over.
# shellcheck disable=SC2046,SC2207 # pki_tls_args gives several words
. "$(dirname "$0")/netlib.sh"
. "$(dirname "$0")/../lib/pki.sh"
: "${RDMIG_CTL:?}"
plan 30

P=$T/pki
pki_ca "$P" &&
	pki_cert "$P" dest "DNS:dest.test,DNS:localhost,IP:127.0.0.1" &&
	pki_cert "$P" source "DNS:source.test,DNS:localhost" &&
	pki_cert "$P" operator "DNS:operator.test" &&
	pki_cert "$P" stranger "DNS:stranger.test" &&
	pki_cert "$P" cn-only "" &&
	pki_ca "$P" rogue-ca &&
	pki_cert "$P" rogue "DNS:operator.test" rogue-ca || exit 1
# What nobody may read: the CA and the clients it tries with.
N=$T/nobody
mkdir -m 755 "$N" && chmod 755 "$T"
cp "$P/ca.pem" "$P"/stranger.* "$P"/rogue.* "$N"/ && chmod 644 "$N"/*
mkimage "$T/src" --size 4M
mkdir -p "$T/run"
here=$(cd "$(dirname "$0")" && pwd)
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }

# serve_dest NAME [args]: rdmig-dest --serve on 127.0.0.1, any port; sets dport.
serve_dest() {
	local name=$1
	shift
	"$RDMIG_DEST" --serve --api-socket "$T/run/$name.sock" --api-tcp 127.0.0.1:0 \
		--work-root "$T/$name" --criu "$here/fake-criu-restore.sh" "$@" \
		>"$T/$name.log" 2>&1 &
	track $!
	dport=
	for _ in $(seq 100); do
		dport=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/$name.log")
		[ -n "$dport" ] && return 0
		sleep 0.05
	done
	diag_file "$T/$name.log"
	return 1
}

# (1) Start-up: no plain HTTP over TCP but on loopback with --insecure-api.
refused() { # LOG PATTERN CMD...: exits 78 at once, saying PATTERN
	local log=$1 pat=$2
	shift 2
	timeout 10 "$@" >"$log" 2>&1
	local rc=$?
	[ $rc -eq 78 ] && grep -q -- "$pat" "$log"
}
check "rdmig-dest --api-tcp without TLS: refuses to start (exit 78), says why" \
	refused "$T/r1.log" "would be plain HTTP, open to anyone" \
	"$RDMIG_DEST" --serve --api-socket "$T/run/r1.sock" --api-tcp 127.0.0.1:0 --work-root "$T/r1"
check "... --insecure-api off loopback: refused too" \
	refused "$T/r2.log" "on loopback only, and 0.0.0.0:0 is not" \
	"$RDMIG_DEST" --serve --api-socket "$T/run/r2.sock" --api-tcp 0.0.0.0:0 --insecure-api \
	--work-root "$T/r2"
check "rdmig-source --api-tcp on a non-loopback address without TLS: refused (exit 78)" \
	refused "$T/r3.log" "would be plain HTTP" \
	"$RDMIG_SOURCE" -t tcp -l 127.0.0.1:0 --api-tcp 0.0.0.0:0 --images-root "$T/r3"
timeout 10 "$RDMIG_DEST" --serve --api-socket "$T/run/r4.sock" --api-tcp 127.0.0.1:0 \
	$(pki_tls_args "$P" dest) --work-root "$T/r4" >"$T/r4.log" 2>&1
rc=$?
check "a TLS listener without --allow-peer: refused (usage, exit 2)" \
	eval "test $rc -eq 2 && grep -q 'wants at least one --allow-peer' '$T/r4.log'"
check "a key that is not the certificate's: refused, naming the file" \
	refused "$T/r5.log" "$P/operator.key" \
	"$RDMIG_DEST" --serve --api-socket "$T/run/r5.sock" --api-tcp 127.0.0.1:0 \
	--tls-cert "$P/dest.pem" --tls-key "$P/operator.key" --tls-ca "$P/ca.pem" \
	--allow-peer source.test --work-root "$T/r5"
serve_dest plain --insecure-api
code=$(curl -s -o "$T/plain.json" -w '%{http_code}' "http://127.0.0.1:$dport/v1/health")
check "loopback with --insecure-api: starts, plain HTTP answers 200" \
	eval "test '$code' = 200 && grep -q '\"role\":\"dest\"' '$T/plain.json' && grep -q 'plain HTTP, loopback only' '$T/plain.log'"
code=$(curl -s -o "$T/plain-tls.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-d '{"id":"pt1","source":"127.0.0.1:1","transport":"tls","secret":"hex:00112233445566778899aabbccddeeff"}' \
	"http://127.0.0.1:$dport/v1/migrations")
check "... a migration over \"transport\": \"tls\" to an agent without certificates: 400, says why" \
	eval "test '$code' = 400 && grep -q 'this destination agent has no certificate' '$T/plain-tls.json'"

# (2) The TLS destination agent: the source agents and an operator may call.
serve_dest tls $(pki_tls_args "$P" dest) --allow-peer source.test --allow-peer OPERATOR.test \
	--allow-peer cn-only || exit 1
tport=$dport
url=https://localhost:$tport/v1/health
# get WHO [curl args]: "HTTP-status curl-exit", the body in $T/got.json.
get() {
	local who=$1 out
	shift
	rm -f "$T/got.json"
	if [ "$who" = nobody ]; then
		out=$(as_nobody curl -s -w '\n%{http_code}' "$@" "$url" 2>/dev/null)
	else
		out=$(curl -s -w '\n%{http_code}' "$@" "$url" 2>/dev/null)
	fi
	local rc=$?
	printf '%s\n' "$out" | sed '$d' >"$T/got.json"
	echo "$(printf '%s\n' "$out" | tail -n 1) $rc"
}
for who in root nobody; do
	got=$(get $who --cacert "$N/ca.pem")
	check "as $who: no client certificate: no HTTP at all, the handshake fails ($got)" \
		eval "[[ '$got' == '000 '[1-9]* ]] && ! grep -q . '$T/got.json'"
	got=$(get $who --cacert "$N/ca.pem" --cert "$N/rogue.pem" --key "$N/rogue.key")
	check "as $who: a certificate of another CA (named operator.test): no HTTP ($got)" \
		eval "[[ '$got' == '000 '[1-9]* ]] && ! grep -q . '$T/got.json'"
	got=$(get $who --cacert "$N/ca.pem" --cert "$N/stranger.pem" --key "$N/stranger.key")
	check "as $who: a certificate of the CA not in --allow-peer: 403, JSON forbidden ($got)" \
		eval "test '$got' = '403 0' && grep -q '\"code\":\"forbidden\"' '$T/got.json' && grep -q 'stranger.test' '$T/got.json'"
done
check "... the agent logs the refused peer's name and address" \
	grep -q 'api: refused GET from 127.0.0.1 port [0-9]*: certificate "stranger.test" is not in --allow-peer' "$T/tls.log"
got=$(get root --cacert "$P/ca.pem" --cert "$P/operator.pem" --key "$P/operator.key")
check "an allowed certificate (SAN DNS, matched without case): 200 from /v1/health ($got)" \
	eval "test '$got' = '200 0' && grep -q '\"status\":\"ok\"' '$T/got.json'"
got=$(get root --cacert "$P/ca.pem" --cert "$P/cn-only.pem" --key "$P/cn-only.key")
check "a certificate without SAN DNS is matched by its CN: 200 ($got)" test "$got" = "200 0"
# A client that connects and never says hello holds no one up.
exec 3<>"/dev/tcp/127.0.0.1/$tport"
t0=$(date +%s%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 --unix-socket "$T/run/tls.sock" \
	http://localhost/v1/health)
ms=$((($(date +%s%N) - t0) / 1000000))
exec 3<&-
check "a handshake that never comes blocks nothing: the UNIX socket answers ($code, $ms ms)" \
	eval "test '$code' = 200 && test $ms -lt 1000"
got=$(get root --tls-max 1.2 --cacert "$P/ca.pem" --cert "$P/operator.pem" --key "$P/operator.key")
check "TLS 1.2 is refused: TLS 1.3 only ($got)" eval "[[ '$got' == '000 '[1-9]* ]]"

# (3) rdmigctl --api https://: the agent must be the one named.
CTLS=("$RDMIG_CTL" $(pki_tls_args "$P" operator))
"${CTLS[@]}" --api "https://localhost:$tport" health >"$T/ctl1.out" 2>&1
rc=$?
check "rdmigctl --api https://localhost:PORT with the operator's certificate: health ok" \
	eval "test $rc -eq 0 && grep -q '^ok: dest agent' '$T/ctl1.out'"
"${CTLS[@]}" --api "https://127.0.0.1:$tport" --json status >"$T/ctl2.out" 2>&1
rc=$?
check "... by address too (SAN IP): status lists the migrations" \
	eval "test $rc -eq 0 && grep -q '\"migrations\"' '$T/ctl2.out'"
"$RDMIG_CTL" $(pki_tls_args "$P" stranger) --api "https://localhost:$tport" health \
	>"$T/ctl3.out" 2>&1
rc=$?
check "... a certificate the agent does not allow: exit 1, the agent's 403 message" \
	eval "test $rc -eq 1 && grep -q 'certificate \"stranger.test\" is not allowed' '$T/ctl3.out'"
"$RDMIG_CTL" --api "127.0.0.1:$tport" health >"$T/ctl4.out" 2>&1
rc=$?
check "... plain HTTP against the TLS listener gets nowhere (exit 1)" test $rc -eq 1

# (4) A TLS source agent: its own API is TLS, its handovers are.
start_source "$T/source.log" --api-socket "$T/run/source.sock" --images-root "$T" \
	--api-tcp 127.0.0.1:0 $(pki_tls_args "$P" source) --allow-peer operator.test || exit 1
sport=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/source.log")
"${CTLS[@]}" --api "https://127.0.0.1:$sport" health >"$T/ctl5.out" 2>&1
rc=$?
check "rdmigctl refuses an agent whose certificate does not name the host it reached" \
	eval "test $rc -eq 1 && grep -q 'its certificate is refused: hostname mismatch\|IP address mismatch' '$T/ctl5.out'"
# tls_migrate ID DEST: migrate --images over the source's TLS API and wait,
# without --secret-file (the source makes the secret); output in $T/ID.out,
# exit status in rc.
tls_migrate() {
	"${CTLS[@]}" --api "https://localhost:$sport" migrate --images "$T/src" --id "$1" \
		--to "$2" --transport tcp --wait >"$T/$1.out" 2>&1
	rc=$?
}
tls_migrate t1 "localhost:$tport"
check "migrate over the source's TLS API, handed over in mutual TLS, no secret file: done" \
	eval "test $rc -eq 0 && grep -q '^  dest:       localhost:$tport (destination agent: done)' '$T/t1.out'"
check "... the destination's criu restore verified every page" \
	eval "standin_ok \$(find '$T/tls/t1' -name standin.out | head -n 1) 1024"
check "... the source generated the migration's secret and logged none of it" \
	eval "grep -q 'migration t1: handing over to destination agent localhost:$tport' '$T/source.log' && ! grep -qi 'base64:' '$T/source.log' '$T/tls.log'"

# The source agent's own certificate has no IP SAN: as a destination
# reached by address it is not the agent named, whatever the CA says.
tls_migrate t4 "127.0.0.1:$sport"
check "a destination agent whose certificate does not name the dest host: failed, TLS said why" \
	eval "test $rc -eq 1 && grep -q 'destination agent 127.0.0.1:$sport unreachable: TLS: its certificate is refused: IP address mismatch' '$T/t4.out'"
check "the agents log the clients refused at the handshake, with their address" \
	eval "grep -q 'tls: refused a client from 127.0.0.1: .*' '$T/tls.log'"

# (5) A source the destination agent does not allow cannot hand over.
"$RDMIG_SOURCE" -t tcp -l 127.0.0.1:0 --api-socket "$T/run/stranger.sock" \
	--images-root "$T" $(pki_tls_args "$P" stranger) >"$T/stranger-src.log" 2>&1 &
track $!
wait_log "$T/stranger-src.log" "api: serving on" >/dev/null
"$RDMIG_CTL" --socket "$T/run/stranger.sock" migrate --images "$T/src" --id t2 \
	--to "localhost:$tport" --wait >"$T/t2.out" 2>&1
rc=$?
check "a source agent not in the destination's --allow-peer: failed, 403 said why" \
	eval "test $rc -eq 1 && grep -q 'certificate \\\\\"stranger.test\\\\\" is not allowed\|certificate \"stranger.test\" is not allowed' '$T/t2.out'"

# (6) A source without TLS hands over to loopback only.
"$RDMIG_SOURCE" -t tcp -l 127.0.0.1:0 --api-socket "$T/run/plain-src.sock" \
	--images-root "$T" >"$T/plain-src.log" 2>&1 &
track $!
wait_log "$T/plain-src.log" "api: serving on" >/dev/null
"$RDMIG_CTL" --socket "$T/run/plain-src.sock" migrate --images "$T/src" --id t3 \
	--to 192.0.2.9:7472 >"$T/t3.out" 2>&1
rc=$?
check "a source without TLS refuses a non-loopback dest (the secret would leave in clear)" \
	eval "test $rc -eq 1 && grep -q 'this source has no TLS' '$T/t3.out'"
finish
