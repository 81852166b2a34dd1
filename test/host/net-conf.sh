#!/bin/bash
# The agents' configuration files (rdmig.conf(5)): an rdmig-source started
# from one serves what the file says, the command line wins over the file
# (for a repeatable option too), and unknown keys, bad values and a missing
# --config file are exit 2 naming the file and line.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 10
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

secret "$T/secret"
mkdir -p "$T/run" "$T/root/a" "$T/root/b" "$T/dst"
mkimage "$T/root/a" --size 4M
mkimage "$T/root/b" --size 4M

# get SOCKET PATH: the HTTP status of GET PATH on the API socket.
get() { curl -s -o /dev/null -w '%{http_code}' --unix-socket "$1" "http://localhost$2"; }

cat >"$T/source.conf" <<CONF
# rdmig-source for the host test
transport = tcp
listen = 127.0.0.1:0   # any free port
api-socket = $T/run/file.sock
images-root = "$T/root"
migration = ma:$T/root/a:$T/secret
migration = mb:$T/root/b:$T/secret
verify = false
CONF

# Everything from the file (start_source's own -t/-l equal the file's).
start_source "$T/src1.log" --config "$T/source.conf"
wait_log "$T/src1.log" "api: serving on" >/dev/null
check "the file's api-socket serves the API" test "$(get "$T/run/file.sock" /v1/health)" = 200
check "both of the file's migrations are served" \
	test "$(get "$T/run/file.sock" /v1/migrations/ma)$(get "$T/run/file.sock" /v1/migrations/mb)" = 200200
kill -TERM "$src_pid"
wait_pid "$src_pid"

# The command line wins: its api-socket and its one --migration replace the file's.
start_source "$T/src2.log" --config="$T/source.conf" --api-socket "$T/run/cmd.sock" \
	--migration "mc:$T/root/b:$T/secret"
wait_log "$T/src2.log" "api: serving on" >/dev/null
check "the command line's api-socket, not the file's" \
	eval "[ \"\$(get '$T/run/cmd.sock' /v1/health)\" = 200 ] && [ ! -e '$T/run/file.sock' ]"
check "the command line's --migration replaces every one of the file's" \
	test "$(get "$T/run/cmd.sock" /v1/migrations/mc)$(get "$T/run/cmd.sock" /v1/migrations/ma)" = 200404
# The migration really serves: rdmig-dest fetches it and the stand-in finds every page.
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args mc "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" >"$T/standin.out" 2>&1
wait_dest
check "a migration of the command line moves every page" \
	eval "[ $code = 0 ] && standin_ok '$T/standin.out' 1024"
kill -TERM "$src_pid"
wait_pid "$src_pid"

# bad FILE-TEXT: runs the source on it; $code and $T/bad.err are the outcome.
bad() {
	printf '%s\n' "$@" >"$T/bad.conf"
	"$RDMIG_SOURCE" --config "$T/bad.conf" >"$T/bad.err" 2>&1
	code=$?
}
bad "transport = tcp" "" "listen-addr = 127.0.0.1"
check "an unknown key: exit 2 naming the file and line 3" \
	eval "[ $code = 2 ] && grep -qF '$T/bad.conf:3: unknown key' '$T/bad.err'"
bad "# two" "transport = udp"
check "a bad value: exit 2, the agent's message, then the file and line 2" \
	eval "[ $code = 2 ] && grep -q 'transport is rdma' '$T/bad.err' &&
	      grep -qF '(the option above is $T/bad.conf line 2)' '$T/bad.err'"
bad "verify = yes"
check "a flag takes true or false: exit 2 naming line 1" \
	eval "[ $code = 2 ] && grep -qF '$T/bad.conf:1:' '$T/bad.err'"
printf 'serve = true\n# the limit\nmax-pending = many\n' >"$T/dest.conf"
"$RDMIG_DEST" --config "$T/dest.conf" --api-socket "$T/run/d.sock" >"$T/bad.err" 2>&1
code=$?
check "rdmig-dest: a bad value is exit 2 naming the option, then the file and line 3" \
	eval "[ $code = 2 ] && grep -q -- '--max-pending=many: not a valid value' '$T/bad.err' &&
	      grep -qF '(the option above is $T/dest.conf line 3)' '$T/bad.err'"
"$RDMIG_SOURCE" --config "$T/missing.conf" >"$T/bad.err" 2>&1
code=$?
check "a missing --config file: exit 2 naming it" \
	eval "[ $code = 2 ] && grep -qF '$T/missing.conf' '$T/bad.err'"
finish
