#!/bin/bash
# A stand-in for `criu restore --lazy-pages` in the host tests of
# rdmig-dest --serve: runs rdmig-stand-in (RDMIG_STANDIN) on -D/-W, which
# plays the restored process and verifies every page it faults in (its
# output: W/standin.out); returns, like criu restore -d, once it runs.
# FAKE_CRIU_ARGS: a file to append "cwd=... args=..." to; FAKE_CRIU_DELAY:
# seconds to take first (default 0); FAKE_CRIU_HOLD: a file to wait for
# first (60 s at most), so a test sees "restoring" for as long as it needs;
# FAKE_STANDIN_ARGS: more options of the stand-in.
# `check`: each agent runs it at its start (common/criucheck.h).
[ "${1:-}" = check ] && exec "$(dirname "$0")/fake-criu-check.sh" "$@"
D= W= pidf=
[ -z "${FAKE_CRIU_ARGS:-}" ] || echo "cwd=$PWD args=$*" >>"$FAKE_CRIU_ARGS"
sleep "${FAKE_CRIU_DELAY:-0}"
if [ -n "${FAKE_CRIU_HOLD:-}" ]; then
	for _ in $(seq 1200); do [ -e "$FAKE_CRIU_HOLD" ] && break; sleep 0.05; done
fi
while [ $# -gt 0 ]; do
	case $1 in
	-D) D=$2; shift ;;
	-W) W=$2; shift ;;
	--pidfile) pidf=$2; shift ;;
	esac
	shift
done
# shellcheck disable=SC2086 # options, split
"${RDMIG_STANDIN:?}" -D "$D" -W "$W" --threads 2 ${FAKE_STANDIN_ARGS:-} >"$W/standin.out" 2>&1 </dev/null &
s=$!
for _ in $(seq 400); do
	grep -q "restore finished" "$W/standin.out" 2>/dev/null && break
	kill -0 $s 2>/dev/null || exit 1
	sleep 0.05
done
[ -z "$pidf" ] || echo $s >"$pidf"
