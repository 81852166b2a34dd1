#!/bin/bash
# rdmig-dest --restore: rdmig-dest runs `criu restore --lazy-pages` itself.
# No CRIU here: --criu points at stand-ins.  /bin/false and a criu that
# logs errors and fails: rdmig-dest reports "restore failed" with the log
# path and the last Error line and exits 1 (the readiness byte still
# comes first).  A criu that runs rdmig-standin against the socket and
# writes its --pidfile: rdmig-dest exits 0 and logs restore_ms and the pid.
. "$(dirname "$0")/lib.sh"
plan 19

mkimage "$T/img" --size 16M

# The fake criu: --fake=fail|ok comes through --criu-opt.
cat >"$T/criu" <<'EOS'
#!/bin/bash
echo "cwd=$PWD args=$*" >"$FAKE_CRIU_ARGS"
D= W= log= pidf= mode=ok
while [ $# -gt 0 ]; do
	case $1 in
	-D) D=$2; shift ;;
	-W) W=$2; shift ;;
	-o) log=$2; shift ;;
	--pidfile) pidf=$2; shift ;;
	--fake=*) mode=${1#--fake=} ;;
	esac
	shift
done
case $mode in
fail)
	printf '(00.001) Error (criu/files.c:10): fake: first error\n' >"$log"
	printf '(00.002) Error (criu/cr-restore.c:2500): fake: Restoring FAILED.\n' >>"$log"
	printf '(00.003) Unlock network\n' >>"$log"
	exit 1 ;;
ok)
	"$RDMIG_STANDIN" -D "$D" -W "$W" --threads 2 >"$W/standin.out" 2>&1 || exit 1
	echo $$ >"$pidf"
	exit 0 ;;
esac
exit 3
EOS
chmod +x "$T/criu"
export FAKE_CRIU_ARGS=$T/criu.args

# 1. /bin/false: no log at all.
mkdir "$T/w1"
start_dest "$T/d1.log" -D "$T/img" -W "$T/w1" --local --restore --criu /bin/false
check "/bin/false: the readiness byte still comes first" test $? -eq 0
wait_dest
check "/bin/false: rdmig-dest exits 1" test "$code" -eq 1
check "/bin/false: says the restore failed, with the log path" \
	grep -q "restore failed: criu restore exited with status 1 after [0-9]* ms; its log $T/w1/restore.log" "$T/d1.log"
check "/bin/false: summary says failed, with restore_ms" \
	eval "test '$(field "$T/d1.log" status)' = failed && test -n '$(field "$T/d1.log" restore_ms)'"

# 2. A criu that fails with errors in its log.
mkdir "$T/w2"
start_dest "$T/d2.log" -D "$T/img" -W "$T/w2" --local --restore --criu "$T/criu" \
	--criu-opt --fake=fail
wait_dest
check "failing criu: rdmig-dest exits 1" test "$code" -eq 1
check "failing criu: the last Error line of restore.log before criu's closing FAILED. is quoted" \
	grep -q "restore failed: criu restore exited with status 1 .*; see $T/w2/restore.log: (00.001) Error (criu/files.c:10): fake: first error" "$T/d2.log"
check "failing criu: run in the work dir with the fixed options (-v2 by default)" \
	grep -q "^cwd=$T/w2 args=restore -D $T/img -W $T/w2 --lazy-pages -d -v2 -o $T/w2/restore.log --pidfile $T/w2/restore.pid --fake=fail\$" "$T/criu.args"

# 3. A criu that cannot be run at all.
mkdir "$T/w3"
start_dest "$T/d3.log" -D "$T/img" -W "$T/w3" --local --restore --criu "$T/no-such-criu"
wait_dest
check "missing criu: rdmig-dest exits 1" test "$code" -eq 1
check "missing criu: says so" grep -q "cannot run $T/no-such-criu: No such file or directory" "$T/d3.log"

# 4. A criu whose restored processes (the stand-in) get every page.
mkdir "$T/w4"
start_dest "$T/d4.log" -D "$T/img" -W "$T/w4" --local --restore --criu "$T/criu" \
	--criu-opt --fake=ok --criu-log-level 4
wait_dest
check "working criu: rdmig-dest exits 0" test "$code" -eq 0
check "working criu: --criu-log-level 4 is criu's -v4" \
	grep -q "^cwd=$T/w4 args=restore -D $T/img -W $T/w4 --lazy-pages -d -v4 -o " "$T/criu.args"
check "working criu: the stand-in saw every page" standin_ok "$T/w4/standin.out" 4096
check "working criu: every lazy page accounted for" consistent "$T/d4.log"
check "working criu: logs the restore time and the restored root pid" \
	grep -q "criu restore done in [0-9]* ms: restored root pid [0-9]" "$T/d4.log"
check "working criu: summary ok with restore_ms" \
	eval "test '$(field "$T/d4.log" status)' = ok && test -n '$(field "$T/d4.log" restore_ms)'"

# 5. Options: --criu without --restore is refused; no --restore: drop-in (no restore_ms).
"$RDMIG_DEST" -D "$T/img" --local --criu /bin/true >"$T/o" 2>&1
check "--criu without --restore exits 2" test $? -eq 2
"$RDMIG_DEST" -D "$T/img" --local --criu-log-level 1 >"$T/o" 2>&1
check "--criu-log-level without --restore exits 2" test $? -eq 2
start_dest "$T/d5.log" -D "$T/img" --local
timeout 60 "$RDMIG_STANDIN" -D "$T/img" --threads 2 >"$T/standin5.out" 2>&1
wait_dest
check "without --restore: drop-in mode, exits 0" test "$code" -eq 0
check "without --restore: no restore_ms" eval "! grep -q restore_ms '$T/d5.log'"
[ "$tap_failed" -eq 0 ] || for f in "$T"/d*.log "$T/criu.args" "$T"/w4/standin.out; do diag_file "$f"; done
finish
