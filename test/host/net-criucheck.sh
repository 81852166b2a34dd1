#!/bin/bash
# criu's kernel probe at each agent's start (common/criucheck.h): rdmig-source
# with its API and rdmig-dest --serve each run `criu check -o
# ROOT/.criu-check.log` once they serve (fake-criu-check.sh stands in), log
# its verdict, and serve whatever it says; a failed check is a warning with
# criu's error line.  Where criu's cache (/run/criu.kdat) exists already
# nothing is run and the agents say so.  Binaries: netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 8

mkdir -p "$T/src" "$T/src2" "$T/dwork" "$T/run"
src=$(realpath "$T/src")
dwork=$(realpath "$T/dwork")
kdat=/run/criu.kdat
healthy() { "$RDMIG_CTL" --socket "$1" health --json 2>/dev/null | grep -q '"status": *"ok"'; }

start_source "$T/source.log" --api-socket "$T/run/s.sock" --images-root "$src" \
	--criu "$net_here/fake-criu.sh"
start_dagent dest --work-root "$dwork"
if [ -e "$kdat" ]; then
	echo "# $kdat exists on this machine: the agents run no criu check"
	check "rdmig-source: criu's cache found, no criu check" \
		eval "wait_log '$T/source.log' 'is cached ($kdat): no criu check' >/dev/null && ! test -e '$src/fake-criu-check.args'"
	check "rdmig-dest --serve: criu's cache found, no criu check" \
		eval "wait_log '$T/dest.log' 'is cached ($kdat): no criu check' >/dev/null && ! test -e '$dwork/fake-criu-check.args'"
	check "... neither said it started one" \
		eval "! grep -q 'criu check started' '$T/source.log' '$T/dest.log'"
	check "... and both serve" eval "healthy '$T/run/s.sock' && healthy '$T/dest.sock'"
else
	check "rdmig-source ran criu check -o IMAGES_ROOT/.criu-check.log once" \
		eval "wait_until 20 test -s '$src/fake-criu-check.args' && test \"\$(cat '$src/fake-criu-check.args')\" = 'check -o $src/.criu-check.log'"
	check "... and logged that it passed" wait_log "$T/source.log" 'info: criu check passed in [0-9]* ms'
	check "rdmig-dest --serve ran criu check -o WORK_ROOT/.criu-check.log once, and logged that it passed" \
		eval "wait_log '$T/dest.log' 'info: criu check passed in [0-9]* ms' >/dev/null && test \"\$(cat '$dwork/fake-criu-check.args')\" = 'check -o $dwork/.criu-check.log'"
	check "... and both serve" eval "healthy '$T/run/s.sock' && healthy '$T/dest.sock'"
fi
kill -TERM "$src_pid" "$dagent_pid"
wait_pid "$src_pid" 20
s1=$code
wait_pid "$dagent_pid" 20
check "both stop on SIGTERM with status 0" test "$s1:$code" = "0:0"

# A check that fails: a warning naming criu's error and its log, the agent
# serves; the migrations' own criu runs will say what they meet.
FAKE_CRIU_CHECK_FAIL=1 start_source "$T/source2.log" --api-socket "$T/run/s2.sock" \
	--images-root "$(realpath "$T/src2")" --criu "$net_here/fake-criu.sh"
wait_log "$T/source2.log" "api: serving on $T/run/s2.sock" >/dev/null
if [ -e "$kdat" ]; then
	check "a failing criu check is not run where criu's cache exists" \
		eval "wait_log '$T/source2.log' 'is cached ($kdat)' >/dev/null && ! test -e '$T/src2/fake-criu-check.args'"
	check "... and nothing warns" eval "! grep -q 'warn: criu check' '$T/source2.log'"
else
	check "a failing criu check: a warning with criu's error line and its log" \
		wait_log "$T/source2.log" "warn: criu check failed (exit status 1) after [0-9]* ms: Error (criu/kerndat.c:1): the stand-in's probe failed (log $(realpath "$T/src2")/.criu-check.log); dumps and restores are still tried"
	check "... and warns once" test "$(grep -c 'warn: criu check' "$T/source2.log")" = 1
fi
check "... and rdmig-source serves" eval "alive $src_pid && healthy '$T/run/s2.sock'"
finish
