#!/bin/bash
# Who may call the agents' APIs, and what a caller can make them read.
# Both rdmig-source and rdmig-dest --serve, each with a UNIX socket, a
# loopback TCP listener and --api-group GID:
# - the socket file is 0660 root:GID; as nobody without GID, connecting
#   fails; with the file opened up to 0666 (as a careless systemd
#   SocketMode= would), the peer-credential check itself answers 403 and
#   the agent logs the uid and pid; nobody with GID as its primary or a
#   supplementary group is served;
# - a form-encoded POST is 415; a Host that does not name loopback is 421
#   on the loopback TCP listener;
# - a FIFO and a tty as secret_file are refused at once (400) and
#   /v1/health answers within 1 s meanwhile; a secret file of mode 0644,
#   owned by nobody, or a symlink is refused (400, one message for all);
# - ids ".." ".hidden" "-x" are refused (400).
# GID is a group number no group has: setpriv gives it to the test's
# nobody processes directly, so nothing is added to /etc/group.
. "$(dirname "$0")/netlib.sh"
plan 45

command -v curl >/dev/null && command -v setpriv >/dev/null && command -v python3 >/dev/null || {
	for _ in $(seq 45); do
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - # SKIP needs curl, setpriv and python3"
	done
	finish
}

gid=54321
while getent group "$gid" >/dev/null; do gid=$((gid + 1)); done

# nobody must reach the sockets' directory; the secrets stay 0600.
chmod 711 "$T"
mkdir -m 755 "$T/run"
mkimage "$T/src" --size 1M
secret "$T/secret"
cp "$T/secret" "$T/loose" && chmod 644 "$T/loose"
cp "$T/secret" "$T/foreign" && chown nobody "$T/foreign"
ln -s "$T/secret" "$T/link"
mkfifo -m 600 "$T/fifo"
# A pty whose master stays open: reading its slave would wait for ever.
python3 -c 'import os, pty, sys, time
m, s = pty.openpty()
print(os.ttyname(s), flush=True)
time.sleep(600)' >"$T/pty" &
pty_pid=$!
track "$pty_pid"
for _ in $(seq 100); do [ -s "$T/pty" ] && break; sleep 0.05; done
tty=$(cat "$T/pty")

start_source "$T/source.log" --api-socket "$T/run/source.sock" --images-root "$T" --api-tcp 0 --insecure-api --api-group "$gid"
"$RDMIG_DEST" --serve --api-socket "$T/run/dest.sock" --api-tcp 127.0.0.1:0 --insecure-api --api-group "$gid" \
	--work-root "$T/root" -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on TCP port" >/dev/null
src_api=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/source.log")
dst_api=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/sup.log")

# as WHO SOCK PATH: GET over the socket as nobody (WHO: none, primary,
# supplementary: where GID is); prints the HTTP status (000: no HTTP).
as() {
	local ids out
	case $1 in
	none) ids=(--regid=nogroup --clear-groups) ;;
	primary) ids=(--regid="$gid" --clear-groups) ;;
	supplementary) ids=(--regid=nogroup --groups="$gid") ;;
	esac
	# nobody cannot write into $T: the body comes back on stdout.
	out=$(setpriv --reuid=nobody "${ids[@]}" curl -s -w '\n%{http_code}' --max-time 5 \
		--unix-socket "$2" "http://localhost$3")
	printf '%s\n' "${out%$'\n'*}" >"$T/resp"
	echo "${out##*$'\n'}"
}
# post SOCK BODY [CONTENT-TYPE]: POST /v1/migrations as root; prints the status.
post() {
	curl -s -o "$T/resp" -w '%{http_code}' --max-time 5 --unix-socket "$1" -X POST \
		-H "Content-Type: ${3:-application/json}" -d "$2" http://localhost/v1/migrations
}
# codes SOCK FIELDS MEMBERS...: one POST per MEMBERS (JSON members, FIELDS
# added); prints their statuses on one line.
codes() {
	local sock=$1 f=$2 b out=()
	shift 2
	for b; do out+=("$(post "$sock" "{$b,$f}")"); done
	echo "${out[*]}"
}
# host PORT HOST: GET /v1/health on 127.0.0.1:PORT with that Host header.
host() {
	curl -s -o "$T/resp" -w '%{http_code}' --max-time 5 -H "Host: $2" \
		"http://127.0.0.1:$1/v1/health"
}
# stalls SOCK LOG BODY-FIELDS WHAT: POST a migration whose secret_file is
# WHAT (in the background); meanwhile /v1/health answers within 1 s and
# the POST ends in a 400 that names no reason.
stalls() {
	local code health
	curl -s -o "$T/stall.resp" -w '%{http_code}' --max-time 5 --unix-socket "$1" -X POST \
		-H 'Content-Type: application/json' \
		-d "{\"id\":\"s$RANDOM\",$3,\"secret_file\":\"$4\"}" \
		http://localhost/v1/migrations >"$T/stall.code" &
	sleep 0.2
	health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 --unix-socket "$1" \
		http://localhost/v1/health)
	wait $!
	code=$(cat "$T/stall.code")
	[ "$health $code" = "200 400" ] && grep -q 'is not usable: it must be a regular file' "$T/stall.resp" || {
		echo "# health $health, POST $code: $(cat "$T/stall.resp")"
		return 1
	}
}

# checks NAME SOCK TCP-PORT LOG BODY-FIELDS: everything above, on one agent.
checks() {
	local name=$1 sock=$2 port=$3 log=$4 f=$5 c1 c2 c3

	check "$name: socket 0660, group $gid" test "$(stat -c '%a %g' "$sock")" = "660 $gid"
	c1=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" http://localhost/v1/health)
	check "$name: root is served" test "$c1" = 200
	check "$name: nobody outside the group cannot even connect" test "$(as none "$sock" /v1/health)" = 000
	chmod 666 "$sock"
	c1=$(as none "$sock" /v1/health)
	check "$name: ... with the socket opened up, SO_PEERCRED refuses it: 403 in JSON" \
		eval "test $c1 = 403 && grep -q '\"code\":\"forbidden\"' '$T/resp' && grep -q 'uid 65534 may not use this API' '$T/resp'"
	check "$name: ... and logs the uid and the pid" \
		grep -q "api: refused GET /v1/health from uid 65534 (pid [0-9]*): only root and group $gid" "$log"
	c1=$(as none "$sock" /v1/migrations)
	check "$name: ... every route: GET /v1/migrations 403 too" test "$c1" = 403
	chmod 660 "$sock"
	check "$name: nobody with the group as its primary group is served" \
		test "$(as primary "$sock" /v1/health)" = 200
	check "$name: nobody with it as a supplementary group is served" \
		test "$(as supplementary "$sock" /v1/health)" = 200
	c1=$(post "$sock" "{\"id\":\"f1\",$f}" application/x-www-form-urlencoded)
	check "$name: a form-encoded POST: 415" \
		eval "test $c1 = 415 && grep -q '\"code\":\"unsupported_media_type\"' '$T/resp'"
	c1=$(codes "$sock" "$f" '"id":".."' '"id":".hidden"' '"id":"-x"')
	check "$name: ids .. .hidden -x: 400 ($c1)" test "$c1" = "400 400 400"
	c1=$(host "$port" evil.example)
	check "$name: loopback TCP, Host evil.example: 421" \
		eval "test $c1 = 421 && grep -q misdirected_request '$T/resp'"
	c1=$(host "$port" "127.0.0.1.evil.example:$port")
	c2=$(host "$port" "localhost:$port")
	c3=$(host "$port" "[::1]:$port")
	check "$name: ... 127.0.0.1.evil.example 421; localhost, [::1] with a port 200" \
		test "$c1 $c2 $c3" = "421 200 200"
	check "$name: a FIFO as secret_file: 400 at once, health within 1 s" stalls "$sock" "$log" "$f" "$T/fifo"
	check "$name: a tty ($tty) as secret_file: the same" stalls "$sock" "$log" "$f" "$tty"
	c1=$(post "$sock" "{\"id\":\"l1\",$f,\"secret_file\":\"$T/loose\"}" \
		'application/json; charset="UTF-8"')
	check "$name: a secret file of mode 0644: 400, the log says why" \
		eval "test $c1 = 400 && grep -q 'mode 0600 or stricter' '$T/resp' && grep -q 'secret file $T/loose refused: its mode 0644' '$log'"
	c1=$(codes "$sock" "$f" "\"id\":\"l2\",\"secret_file\":\"$T/foreign\"" \
		"\"id\":\"l3\",\"secret_file\":\"$T/link\"" \
		"\"id\":\"l4\",\"secret_file\":\"$T/no-such\"")
	check "$name: owned by nobody, a symlink, missing: 400 each ($c1)" test "$c1" = "400 400 400"
	m1=$(sed "s|$T/no-such||" "$T/resp")
	post "$sock" "{\"id\":\"l5\",$f,\"secret_file\":\"$T/fifo\"}" >/dev/null
	m2=$(sed "s|$T/fifo||" "$T/resp")
	check "$name: ... one message for a missing file and a FIFO" test "$m1" = "$m2"
	check "$name: the agent is still alive" alive "$([ "$name" = source ] && echo "$src_pid" || echo "$sup_pid")"
}

checks source "$T/run/source.sock" "$src_api" "$T/source.log" "\"images_dir\":\"$T/src\""
checks dest "$T/run/dest.sock" "$dst_api" "$T/sup.log" '"source":"127.0.0.1:1"'

# The tools send what the agents now require.
"$RDMIG_CTL" --api "127.0.0.1:$src_api" health >"$T/ctl.out" 2>&1
check "rdmigctl over loopback TCP passes the Host check" test $? -eq 0
"$RDMIG_CTL" --socket "$T/run/source.sock" migrate --images "$T/src" \
	--secret-file "$T/secret" --id ok1 >"$T/ctl.out" 2>&1
check "rdmigctl migrate (a JSON POST) is accepted" test $? -eq 0

kill -TERM "$src_pid" "$sup_pid"
wait_pid "$src_pid" 10
wait_pid "$sup_pid" 10
check "both agents exit and remove their sockets" \
	eval "test ! -e '$T/run/source.sock' && test ! -e '$T/run/dest.sock'"
check "no group was created" eval "! getent group $gid >/dev/null"

# A secret file whose read is slow.  No file here can make a local read
# block (a FIFO or tty is refused before it is read), so
# --test-secret-delay makes the read on the API's offload thread wait 5 s
# first, as on a hung mount: the loop answers /v1/health meanwhile, and the
# start is answered once the file is read.
# read_waits NAME FILE LOG PATTERN: on the source serving $T/run/NAME.sock,
# POSTs migration NAME with secret_file FILE in the background, waits for
# PATTERN in LOG (the read under way), then GETs /v1/health: sets health
# (its status), pending (0: the POST still unanswered) and post_pid; the
# POST's status goes to $T/NAME.code.
read_waits() {
	# start_source returns once the data listener listens: the API may follow.
	wait_for_file "$T/run/$1.sock"
	curl -s -o "$T/$1.resp" -w '%{http_code}' --max-time 30 --unix-socket "$T/run/$1.sock" \
		-X POST -H 'Content-Type: application/json' \
		-d "{\"id\":\"$1\",\"images_dir\":\"$T/src\",\"secret_file\":\"$2\"}" \
		http://localhost/v1/migrations >"$T/$1.code" &
	post_pid=$!
	health_while "$T/run/$1.sock" "$3" "$4"
}
start_source "$T/slow.log" --api-socket "$T/run/slow.sock" --images-root "$T" \
	--test-secret-delay 5000
read_waits slow "$T/secret" "$T/slow.log" "api: migration slow: reading its secret_file"
wait "$post_pid"
check "a slow secret_file read: /v1/health answers 200 while the start waits ($health, $pending)" \
	test "$health $pending" = "200 0"
check "... then the start is answered 202, the migration serves" \
	eval "test \"\$(cat '$T/slow.code')\" = 202 && grep -q 'api: migration slow started' '$T/slow.log'"
# A client that leaves before its answer: the late answer goes nowhere.
curl -s -o /dev/null --max-time 1 --unix-socket "$T/run/slow.sock" -X POST \
	-H 'Content-Type: application/json' \
	-d "{\"id\":\"slow2\",\"images_dir\":\"$T/src\",\"secret_file\":\"$T/secret\"}" \
	http://localhost/v1/migrations
wait_log "$T/slow.log" "api: migration slow2 started" 15 >/dev/null
health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$T/run/slow.sock" \
	http://localhost/v1/health)
check "... a client gone before its answer: the agent lives on and answers ($health)" \
	eval "alive $src_pid && test '$health' = 200"
kill -TERM "$src_pid"
wait_pid "$src_pid" 10

# A read that really hangs: a secret file on a FUSE mount whose read
# returns only once the test releases it (test/tools/hangfs.py; skipped
# where FUSE cannot be mounted).
hang=$T/hang
if hang_mount "$hang" secret &&
	start_source "$T/hang-src.log" --api-socket "$T/run/hang.sock" --images-root "$T"; then
	read_waits hang "$hang/mnt/secret" "$hang.log" "read of /secret waits"
	touch "$hang/release"
	wait "$post_pid"
	check "a secret_file on a hung FUSE mount: /v1/health answers while its read hangs ($health, $pending)" \
		eval "grep -q 'read of /secret waits' '$hang.log' && test '$health $pending' = '200 0'"
	check "... released, the read ends and the start is answered 202" \
		eval "test \"\$(cat '$T/hang.code')\" = 202 && grep -q 'api: migration hang started' '$T/hang-src.log'"
else
	skip_fuse "a secret_file on a hung FUSE mount: /v1/health answers while its read hangs" \
		"... released, the read ends and the start is answered 202"
fi
hang_release "$hang"
if alive "$src_pid"; then
	kill -TERM "$src_pid"
	wait_pid "$src_pid" 10
fi
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log" 40
	diag_file "$T/sup.log" 40
	diag_file "$T/resp"
}
finish
