#!/bin/bash
# Confinement of paths (issue 9; review findings 1, 2 and 9): the path
# escapes of the review, which now fail.
# Source agent (--images-root R): an images_dir outside R (a root-only
# directory elsewhere, or R/../x) is 403 and nothing is served; below R,
# a link to outside, a symlinked pages file, a group-writable directory
# (or parent) and one not owned by root are 403; a plain one is served.
# Destination agent (--work-root W): images_dir / work_dir outside W (a
# temp dir, /etc/cron.d), through a link below W, with "..", or existing
# are refused (403 / 400 / 409) and nothing is created there; a handover
# whose dest_images_dir is outside W fails with the agent's reason.
# A relay that renames an image file in the stream: the destination
# refuses it, the migration fails, and no such file is created.
# Needs curl and python3.
. "$(dirname "$0")/netlib.sh"
plan 25
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not found"; exit 0; }

secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")
iroot=$T/iroot
droot=$T/droot
out=$T/outside
mkdir -m 700 "$iroot" "$out"
mkimage "$iroot/good" --size 4M
# A root-only directory elsewhere: what a caller would like to read.
mkimage "$T/private" --size 4M
chmod 700 "$T/private"
ln -s "$T/private" "$iroot/link"
cp -a "$iroot/good" "$iroot/lpages"
ln -sf "$T/private/pages-1.img" "$iroot/lpages/pages-1.img"
cp -a "$iroot/good" "$iroot/gw"
chmod 770 "$iroot/gw"
mkdir -m 777 "$iroot/open"
cp -a "$iroot/good" "$iroot/open/x"
cp -a "$iroot/good" "$iroot/nobody"
chown 65534 "$iroot/nobody"

ssock=$T/run/source.sock
dsock=$T/run/dest.sock
# api SOCK ID-OR-PATH [JSON]: POST (with JSON) or GET; prints the status, body in $T/resp.
api() {
	if [ $# -gt 2 ]; then
		curl -s -o "$T/resp" -w '%{http_code}' --unix-socket "$1" -X POST \
			-H 'Content-Type: application/json' -d "$3" http://localhost/v1/migrations
	else
		curl -s -o "$T/resp" -w '%{http_code}' --unix-socket "$1" \
			"http://localhost/v1/migrations${2:+/$2}"
	fi
}
# spost ID FIELDS: a source migration of images_dir etc.
spost() { api "$ssock" - "{\"id\":\"$1\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\",$2}"; }
# dpost ID FIELDS: a destination migration from a source that is not there.
dpost() {
	api "$dsock" - "{\"id\":\"$1\",\"source\":\"127.0.0.1:1\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\",\"restore\":false,$2}"
}
says() { grep -qF -- "$1" "$T/resp"; }

start_source "$T/source.log" --api-socket "$ssock" --images-root "$iroot"
wait_log "$T/source.log" "api: serving on $ssock" >/dev/null

# refused POST ID FIELD PATH CODE TEXT WHAT: POST (spost or dpost) of a
# migration with FIELD=PATH answers CODE with TEXT in its body.
refused() {
	local c
	c=$($1 "$2" "\"$3\":\"$4\"")
	check "$7: $5 ($c)" eval "test '$c' = '$5' && says '$6'"
}
# (b) Outside the images root.
refused spost b1 images_dir "$T/private" 403 "not below the images root $iroot (--images-root)" \
	"source: a root-only images_dir outside --images-root"
c=$(api "$ssock" b1)
check "... nothing is served: no migration b1 ($c)" test "$c" = 404
refused spost b2 images_dir "$iroot/../private" 403 "not below the images root" \
	"source: R/../private"
refused spost b3 images_dir "$T/no-such" 403 "not below the images root" \
	"source: a missing path outside the root, 403 too (whether it exists is not told)"
# (c) Links below the root.
refused spost c1 images_dir "$iroot/link" 403 "not below the images root" \
	"source: a link below the root to outside"
refused spost c2 images_dir "$iroot/lpages" 403 "pages-1.img is a symbolic link" \
	"source: a symlinked pages file, named"
# (d) Untrusted directories.
refused spost d1 images_dir "$iroot/gw" 403 "writable by group or others" \
	"source: a group-writable images_dir"
refused spost d2 images_dir "$iroot/open/x" 403 "writable by group or others" \
	"source: below a world-writable directory"
refused spost d3 images_dir "$iroot/nobody" 403 "not owned by root" \
	"source: an images_dir not owned by root"
c=$(api "$ssock" "")
check "... none of them became a migration" \
	eval "test '$c' = 200 && ! grep -qE '\"(b2|b3|c1|c2|d1|d2|d3)\"' '$T/resp'"
c=$(spost g1 "\"images_dir\":\"$iroot/good\"")
check "source: a root-owned images_dir below the root: 202 ($c)" test "$c" = 202

# (a) The destination agent.
"$RDMIG_DEST" --serve --api-socket "$dsock" --api-tcp 127.0.0.1:0 --insecure-api --work-root "$droot" \
	--criu /bin/false -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on TCP port" >/dev/null
dport=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/sup.log")
refused dpost a1 images_dir "$out/a1" 403 "not below the work root $droot (--work-root)" \
	"dest: images_dir in a temp dir outside --work-root"
refused dpost a2 images_dir /etc/cron.d/rdmig-a2 403 "not below the work root" \
	"dest: images_dir /etc/cron.d/..."
check "... not created there" test ! -e /etc/cron.d/rdmig-a2
refused dpost a3 work_dir "$out/a3" 403 "not below the work root" "dest: work_dir outside"
check "... WORK_ROOT/a3, made for its images, removed again" test ! -e "$droot/a3"
refused dpost a4 images_dir "$droot/../outside/a4" 400 "or empty components" \
	"dest: a '..' below the root"
ln -s "$out" "$droot/esc"
refused dpost a5 images_dir "$droot/esc/a5" 403 "symbolic link" "dest: through a link below the root"
mkdir -m 700 "$droot/pre"
refused dpost a6 images_dir "$droot/pre" 409 "the agent receives only into a directory it creates" \
	"dest: an existing directory below the root"
check "... nothing was created outside the roots" test -z "$(ls -A "$out")"
c=$(spost h1 "\"images_dir\":\"$iroot/good\",\"dest\":\"127.0.0.1:$dport\",\"dest_images_dir\":\"$out/h1\"")
for _ in $(seq 100); do
	api "$ssock" h1 >/dev/null
	grep -q '"state": *"failed"' "$T/resp" && break
	sleep 0.1
done
check "handover with dest_images_dir outside the dest's root: failed, with its reason" \
	eval "grep -q '\"state\": *\"failed\"' '$T/resp' && says 'not below the work root' && test ! -e '$out/h1'"

# (e) A peer naming a file CRIU never writes: a relay between the source and
# rdmig-dest renames inventory.img to authorized_ke (same length) on its way.
cat >"$T/relay.py" <<'PY'
import select, socket, sys
up_port, port_file = int(sys.argv[1]), sys.argv[2]
old, new = b"inventory.img", b"authorized_ke"
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
open(port_file, "w").write(str(l.getsockname()[1]))
c, _ = l.accept()
u = socket.create_connection(("127.0.0.1", up_port))
held = b""  # from upstream, kept back in case a name is split across reads
while True:
    r, _, _ = select.select([c, u], [], [], 0.05)
    if not r and held:
        c.sendall(held)
        held = b""
    if c in r:
        d = c.recv(65536)
        if not d:
            break
        u.sendall(d)
    if u in r:
        d = u.recv(65536)
        if not d:
            c.sendall(held)
            break
        d = (held + d).replace(old, new)
        c.sendall(d[:-len(old)])
        held = d[-len(old):]
PY
timeout 60 python3 "$T/relay.py" "$src_port" "$T/relay.port" 2>"$T/relay.err" &
relay_pid=$!
track "$relay_pid"
for _ in $(seq 100); do [ -s "$T/relay.port" ] && break; sleep 0.05; done
mkdir -m 700 "$T/edst"
timeout 60 "$RDMIG_DEST" -D "$T/edst" --source "127.0.0.1:$(cat "$T/relay.port")" -t tcp -m g1 \
	--secret-file "$T/secret" >"$T/e.log" 2>&1
rc=$?
check "a peer sending 'authorized_ke': rdmig-dest fails (exit $rc)" test "$rc" -ne 0
# Since protocol v2 every message after the handshake carries a MAC: the
# renamed ImageFile fails authentication before its name is even read (an
# authenticated peer that sends such a name is refused by the allow-list,
# test_ctrl's file-name cases).
check "... on the tampered message" \
	grep -q 'file name "authorized_ke" is not one CRIU writes\|control message failed authentication' "$T/e.log"
check "... and created no such file" test ! -e "$T/edst/authorized_ke"

kill -TERM "$sup_pid" "$src_pid"
wait_pid "$sup_pid" 20
sc=$code
wait_pid "$src_pid" 20
check "both agents stop on SIGTERM (exit $sc $code)" test "$sc $code" = "0 0"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log"
	diag_file "$T/sup.log"
	diag_file "$T/e.log"
}
finish
