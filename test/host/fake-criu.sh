#!/bin/bash
# A stand-in for criu in the host tests of rdmig-source's own dump and
# rollback: `dump ... -D DIR` writes a synthetic checkpoint there with
# rdmig-mkimage (after FAKE_CRIU_DELAY seconds, default 1, so the test sees
# the migration dumping); `restore ... -D DIR` succeeds unless DIR holds a
# file named fail-restore.  Every call's arguments go to DIR/fake-criu.args.
# `dump --lazy-pages --port P --status-fd N` writes --lazy-only images and
# then serves their pages as the dump's page server (rdmig-fakedump), which
# hangs up mid-pull when DIR's name is FAKE_CRIU_HANGUP_ID, and waits
# FAKE_CRIU_PSRV_DELAY_MS before each reply when that is set.
verb=$1
args="$*"
dir=
lazy=
port=
status_fd=
while [ $# -gt 0 ]; do
	case $1 in
	-D) dir=$2 ;;
	--lazy-pages) lazy=1 ;;
	--port) port=$2 ;;
	--status-fd) status_fd=$2 ;;
	esac
	shift
done
[ -n "$dir" ] || exit 2
echo "$args" >>"$dir/fake-criu.args"
case $verb in
dump)
	sleep "${FAKE_CRIU_DELAY:-1}"
	if [ -n "$lazy" ]; then
		"${RDMIG_MKIMAGE:?}" -D "$dir" --size 4M --lazy-only >"$dir/mkimage.out" 2>&1 || exit 1
		hangup=
		[ "$(basename "$dir")" = "${FAKE_CRIU_HANGUP_ID:-}" ] && hangup=--hangup
		exec "${RDMIG_FAKEDUMP:?}" -D "$dir" --port "$port" --status-fd "$status_fd" \
			$hangup --delay-ms "${FAKE_CRIU_PSRV_DELAY_MS:-0}" 2>>"$dir/dump.log"
	fi
	"${RDMIG_MKIMAGE:?}" -D "$dir" --size 4M >"$dir/mkimage.out" 2>&1 || exit 1
	echo "(00.100000) Dumping finished successfully" >"$dir/dump.log"
	;;
restore)
	if [ -e "$dir/fail-restore" ]; then
		printf '(00.000100) Restoring\n(00.000200) Error (criu/cr-restore.c:42): fake restore failure\n(00.000300) Restoring FAILED.\n' \
			>"$dir/restore-rollback.log"
		exit 1
	fi
	echo "(00.100000) Restore finished successfully" >"$dir/restore-rollback.log"
	;;
*) exit 2 ;;
esac
