#!/bin/bash
# The TCP data transport inside mutual TLS (-t tls, docs/security.md): a
# migration over it with every page verified; a client without a
# certificate, or with one of the CA not in --allow-dest, is refused before
# the source reads a byte of its Hello (so before any secret proof, image
# or page); a source whose certificate does not name the host the
# destination reached is refused by the destination; a plain TCP client
# gets nowhere; a byte flipped in the TLS stream fails the migration and
# nothing tampered is written.  Certificates are made here (test/lib/pki.sh).
# shellcheck disable=SC2046 # pki_tls_args gives several words
. "$(dirname "$0")/netlib.sh"
. "$(dirname "$0")/../lib/pki.sh"
: "${RDMIG_FLIPPROXY:?}"
plan 22

P=$T/pki
pki_ca "$P" &&
	pki_cert "$P" source "DNS:source.test,IP:127.0.0.1" &&
	pki_cert "$P" dest "DNS:dest.test" &&
	pki_cert "$P" stranger "DNS:stranger.test" &&
	pki_cert "$P" named "DNS:source.test" || exit 1
mkimage "$T/src" --size 16M
secret "$T/secret"
mkdir "$T/dst" "$T/dst-stranger" "$T/dst-named" "$T/dst-flip"
sum0=$(dir_sum "$T/src")
SRC_TRANSPORT=tls
src_tls="$(pki_tls_args "$P" source) --allow-dest dest.test"

# dest_tls ID CERT [PORT]: rdmig-dest's options for migration ID over TLS with CERT.
dest_tls() {
	echo "--source 127.0.0.1:${3:-$src_port} -t tls -m $1 --secret-file $T/secret" \
		"$(pki_tls_args "$P" "$2")"
}

# (1) Start-up checks.
timeout 10 "$RDMIG_SOURCE" -t tls -l 127.0.0.1:0 -m "m0:$T/src:$T/secret" \
	$(pki_tls_args "$P" source) >"$T/r1.log" 2>&1
rc=$?
check "rdmig-source -t tls without --allow-dest: refused (exit 2), says why" \
	eval "test $rc -eq 2 && grep -q 'wants at least one --allow-dest' '$T/r1.log'"
timeout 10 "$RDMIG_SOURCE" -t tls -l 127.0.0.1:0 -m "m0:$T/src:$T/secret" \
	--allow-dest dest.test >"$T/r2.log" 2>&1
rc=$?
check "... without --tls-*: refused (exit 2)" \
	eval "test $rc -eq 2 && grep -q 'transport tls wants --tls-cert' '$T/r2.log'"
timeout 10 "$RDMIG_DEST" -D "$T/dst" --source 127.0.0.1:1 -t tls -m m0 \
	--secret-file "$T/secret" >"$T/r3.log" 2>&1
rc=$?
check "rdmig-dest -t tls without --tls-*: refused (exit 2)" \
	eval "test $rc -eq 2 && grep -q 'transport tls wants --tls-cert' '$T/r3.log'"

# (2) Strangers first, against a source that then serves the real one.
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --verify $src_tls || exit 1
check "rdmig-source listens with TLS" grep -q "listening on 127.0.0.1:$src_port (tls)" "$T/source.log"
timeout 10 openssl s_client -connect "127.0.0.1:$src_port" -CAfile "$P/ca.pem" \
	</dev/null >"$T/nocert.out" 2>&1
wait_log "$T/source.log" "tls: refused a client from 127.0.0.1" >/dev/null
check "a client without a certificate: the handshake is refused, logged with its address" \
	grep -q "handshake with 127.0.0.1:[0-9]*: TLS: .*peer did not return a certificate" \
	"$T/source.log"
timeout 30 "$RDMIG_DEST" -D "$T/dst-stranger" $(dest_tls m1 stranger) --connect-timeout 5 \
	>"$T/dest-stranger.log" 2>&1
rc=$?
check "a certificate of the CA not in --allow-dest: rdmig-dest fails (exit 1)" test $rc -eq 1
check "... the source refused it by name, after the handshake" \
	grep -q "tls: refused a connection from 127.0.0.1:[0-9]*: certificate \"stranger.test\" is not allowed" \
	"$T/source.log"
check "... before anything of the protocol: no Hello read, no image sent" \
	eval "! grep -q 'destination authenticated\|hello' '$T/source.log' && no_images '$T/dst-stranger'"
# plain_hello: what a client of plain -t tcp sends first (a frame), and what comes back.
exec 3<>"/dev/tcp/127.0.0.1/$src_port"
printf '\0\0\0\x10rdmig-plain-hello' >&3
timeout 5 cat <&3 >"$T/plain.out"
exec 3<&-
first=$(head -c1 "$T/plain.out" | od -An -tx1 | tr -d ' ')
check "plain TCP to the TLS listener: refused at the handshake, at most a TLS alert back ($first)" \
	eval "[[ '$first' == '' || '$first' == 15 ]] && test \$(stat -c %s '$T/plain.out') -le 7"
tls_port=$src_port

# (3) The destination agent checks the source's name: a certificate of the
# CA without the address it reached is not the source.
start_source "$T/source-named.log" -m "m2:$T/src:$T/secret" \
	$(pki_tls_args "$P" named) --allow-dest dest.test || exit 1
named_port=$src_port
timeout 30 "$RDMIG_DEST" -D "$T/dst-named" $(dest_tls m2 dest "$named_port") \
	--connect-timeout 5 >"$T/dest-named.log" 2>&1
rc=$?
check "a source whose certificate does not name 127.0.0.1: rdmig-dest refuses it (exit 1)" \
	eval "test $rc -eq 1 && grep -q 'its certificate is refused: IP address mismatch' '$T/dest-named.log'"
check "... and sent it nothing of the protocol" \
	eval "! grep -q 'destination authenticated' '$T/source-named.log' && no_images '$T/dst-named'"

# (4) The real destination: every page verified over TLS.
start_dest "$T/dest.log" -D "$T/dst" $(dest_tls m1 dest "$tls_port") --verify || exit 1
check "the images arrived over TLS (all but the lazy pages)" same_meta "$T/src" "$T/dst"
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 4 --access random >"$T/standin.out" 2>&1
rc=$?
check "stand-in exits 0, every page verified" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 4096"
wait_dest
check "rdmig-dest exits 0, counts consistent, nothing dropped" \
	eval "test $code -eq 0 && consistent '$T/dest.log' && test \"\$(field '$T/dest.log' dropped)\" -eq 0"
check "... the source acknowledged Done" \
	grep -q "the source confirmed every page arrived" "$T/dest.log"
check "the source logged the destination's certificate and the transport" \
	eval "grep -q 'tls: connection from 127.0.0.1:[0-9]*, certificate \"dest.test\"' '$T/source.log' && grep -q 'sending images over tls' '$T/source.log'"
check "the fault connection was a second TLS session with the same certificate" \
	eval "test \$(grep -c 'tls: connection from 127.0.0.1:[0-9]*, certificate \"dest.test\"' '$T/source.log') -eq 2 && grep -q 'fault connection up' '$T/source.log'"
check "the source's images dir is untouched" test "$(dir_sum "$T/src")" = "$sum0"

# (5) A man in the middle flips one byte of the TLS stream, deep in the
# page data (ReadResps of 16 MiB of lazy pages): TLS refuses the record,
# the migration fails, the stand-in never reads a wrong byte.  (A source
# offering resume would have the destination pause and reconnect instead:
# net-pause.sh; here the source is an older one, --no-resume.)
start_source "$T/source-flip.log" -m "m3:$T/src:$T/secret" $src_tls --no-resume || exit 1
"$RDMIG_FLIPPROXY" --to "127.0.0.1:$src_port" --byte 8000000 >"$T/proxy.log" 2>&1 &
px_pid=$!
track $px_pid
wait_log "$T/proxy.log" "listening on" >/dev/null
px_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/proxy.log")
# The proxy is reached as 127.0.0.1 too: the source's certificate names it.
start_dest "$T/dest-flip.log" -D "$T/dst-flip" $(dest_tls m3 dest "$px_port") || exit 1
timeout 60 "$RDMIG_STANDIN" -D "$T/dst-flip" --threads 2 >"$T/standin-flip.out" 2>&1
rc=$?
wait_dest
check "the proxy flipped a byte of the TLS stream in the page data" \
	grep -q "flipped stream byte 8000000" "$T/proxy.log"
check "... rdmig-dest exits 1, TLS refused the record" \
	eval "test $code -eq 1 && grep -q 'TLS: .*\(bad record mac\|decrypt\)' '$T/dest-flip.log'"
check "... the stand-in did not complete and never read a wrong byte" \
	eval "test $rc -ne 0 && never_wrong '$T/standin-flip.out'"
check "... the source fails or keeps the migration, it never counts it done" \
	eval "! grep -q 'migration m3 done' '$T/source-flip.log'"
[ "$tap_failed" -eq 0 ] || for f in "$T"/*.log; do diag_file "$f" 30; done
finish
