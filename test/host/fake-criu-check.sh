#!/bin/bash
# A stand-in for `criu check -o LOG`, which both agents run when they start
# (common/criucheck.h), called by fake-criu.sh and fake-criu-restore.sh for
# the verb check: appends its arguments to fake-criu-check.args beside LOG
# and writes LOG; FAKE_CRIU_CHECK_FAIL=1 makes it fail as criu does when its
# probe of the kernel fails (an Error line, exit status 1).
log=
while [ $# -gt 0 ]; do
	[ "$1" = -o ] && log=$2
	shift
done
[ -n "$log" ] || exit 2
echo "check -o $log" >>"$(dirname "$log")/fake-criu-check.args"
if [ "${FAKE_CRIU_CHECK_FAIL:-0}" = 1 ]; then
	echo "(00.001000) Error (criu/kerndat.c:1): the stand-in's probe failed" >"$log"
	exit 1
fi
echo "(00.001000) Looks good." >"$log"
