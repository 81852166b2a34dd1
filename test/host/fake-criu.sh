#!/bin/bash
# A stand-in for criu in the host tests of rdmig-source's own dump and
# rollback: `dump ... -D DIR` writes a synthetic checkpoint there with
# rdmig-mkimage (after FAKE_CRIU_DELAY seconds, default 1, so the test sees
# the migration dumping); `restore ... -D DIR` succeeds unless DIR holds a
# file named fail-restore.  Every call's arguments go to DIR/fake-criu.args.
# `dump --lazy-pages --port P --status-fd N` writes --lazy-only images and
# then serves their pages as the dump's page server (rdmig-fakedump), which
# hangs up mid-pull when DIR's name is FAKE_CRIU_HANGUP_ID, and waits
# FAKE_CRIU_PSRV_DELAY_MS before each reply when that is set, and marks
# no page lazy (every one in the pages files, as criu's is_stack() misfire
# does: design.md §10.3) when DIR's name is FAKE_CRIU_NONE_LAZY_ID; its images'
# pid is the dumped one (-t), so a `rdmig-mkimage --hold` process dumped
# holds the very pages they describe.
# `pre-dump` writes a round as `dump` does (no delay), then leaves only
# what criu pre-dump writes (pagemaps, pages, an inventory without
# img_version); with
# `--prev-images-dir P` (pre-dump or dump) a fraction of the runs
# (FAKE_CRIU_PARENT_FRAC, default 0.5) is written in-parent, without data,
# and DIR/parent links to P, as criu does.  Every pre-dump round after the
# first marks the same runs (its page count equals the round before's, so
# --precopy auto stops after round 3); the final dump marks others.
# FAKE_CRIU_PREDUMP_PARENT_FRAC, when set, is the fraction for pre-dump
# alone (0: a round rewrites every page, so the round before is
# superseded).  FAKE_CRIU_HOOK, when set, is run by bash with VERB and DIR
# in its environment after a pre-dump wrote its round and before a dump
# writes anything, so a test can change the rounds at those points.
# FAKE_CRIU_PROCFD_FAILS=N: the first N dumps into a directory fail as
# criu's parasite does when another dump holds "proc.crtools" in the same
# working directory ("Can't get proc fd"), writing nothing else.
# `check`: each agent runs it at its start (common/criucheck.h).
[ "${1:-}" = check ] && exec "$(dirname "$0")/fake-criu-check.sh" "$@"
verb=$1
args="$*"
dir=
tpid=
lazy=
port=
status_fd=
prev=
while [ $# -gt 0 ]; do
	case $1 in
	-D) dir=$2 ;;
	-t) tpid=$2 ;;
	--lazy-pages) lazy=1 ;;
	--port) port=$2 ;;
	--status-fd) status_fd=$2 ;;
	--prev-images-dir) prev=$2 ;;
	esac
	shift
done
[ -n "$dir" ] || exit 2
echo "$args" >>"$dir/fake-criu.args"
# parent_args ROUND: mkimage's in-parent arguments.  The parent link is
# made after mkimage, which reads its images back with this directory as
# the root, which a link to a sibling round would leave.
parent_args() {
	[ -n "$prev" ] || return 0
	local frac=${FAKE_CRIU_PARENT_FRAC:-0.5}
	[ "$verb" != pre-dump ] || frac=${FAKE_CRIU_PREDUMP_PARENT_FRAC:-$frac}
	echo "--in-parent $frac --round $1"
}
link_parent() {
	[ -z "$prev" ] || ln -sfn "$prev" "$dir/parent"
}
hook() {
	[ -z "${FAKE_CRIU_HOOK:-}" ] || VERB=$verb DIR=$dir bash -c "$FAKE_CRIU_HOOK"
}
case $verb in
pre-dump)
	# shellcheck disable=SC2046
	"${RDMIG_MKIMAGE:?}" -D "$dir" --size 4M $(parent_args 1) >"$dir/mkimage.out" 2>&1 ||
		exit 1
	link_parent
	# What criu pre-dump leaves: no pstree or mm image, an inventory without img_version.
	rm -f "$dir/pstree.img" "$dir"/mm-*.img
	printf '\x16\x31\x31\x58\x02\x00\x00\x00\x08\x00' >"$dir/inventory.img"
	echo "(00.100000) Pre-dumping finished successfully" >"$dir/pre-dump.log"
	hook
	;;
dump)
	hook
	sleep "${FAKE_CRIU_DELAY:-1}"
	if [ "${FAKE_CRIU_PROCFD_FAILS:-0}" -gt 0 ]; then
		n=$(($(cat "$dir/fake-criu.procfd" 2>/dev/null || echo 0) + 1))
		echo "$n" >"$dir/fake-criu.procfd"
		if [ "$n" -le "$FAKE_CRIU_PROCFD_FAILS" ]; then
			printf '%s\n' '(00.010000) pie: 1: Error (criu/pie/parasite.c:550): Can'"'"'t create a directory (-17)' \
				'(00.010100) Error (criu/cr-dump.c:1584): Can'"'"'t get proc fd (pid: 1)' \
				'(00.010200) Unfreezing tasks into 1' \
				'(00.010300) Error (criu/cr-dump.c:2053): Dumping FAILED.' >"$dir/dump.log"
			exit 1
		fi
	fi
	if [ -n "$lazy" ]; then
		# The dumped pid's own images: a `rdmig-mkimage --hold` process
		# dumped so holds these very pages.
		none=
		[ "$(basename "$dir")" = "${FAKE_CRIU_NONE_LAZY_ID:-}" ] && none=--none-lazy
		# shellcheck disable=SC2086 # none: a word or none
		"${RDMIG_MKIMAGE:?}" -D "$dir" --size 4M --lazy-only $none --pid "$tpid" >"$dir/mkimage.out" 2>&1 || exit 1
		hangup=
		[ "$(basename "$dir")" = "${FAKE_CRIU_HANGUP_ID:-}" ] && hangup=--hangup
		exec "${RDMIG_FAKEDUMP:?}" -D "$dir" --port "$port" --status-fd "$status_fd" \
			$hangup --delay-ms "${FAKE_CRIU_PSRV_DELAY_MS:-0}" 2>>"$dir/dump.log"
	fi
	# shellcheck disable=SC2046
	"${RDMIG_MKIMAGE:?}" -D "$dir" --size 4M $(parent_args 2) >"$dir/mkimage.out" 2>&1 || exit 1
	link_parent
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
