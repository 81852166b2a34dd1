#!/bin/bash
# A stand-in for runc in the host tests of a container migration through
# both agents (design.md §12), on top of the host tests' fake criu:
#   runc [--root R] checkpoint --image-path DIR --work-path DIR ... ID
#     fake-criu.sh dump -D DIR (a synthetic checkpoint, dump.log); then,
#     as a plain runc checkpoint does, the container is gone: R/ID removed;
#   runc [--root R] restore --lazy-pages ... --work-path W --pid-file P ... ID
#     (the destination agent's worker) fake-criu-restore.sh -D DIR -W W
#     --pidfile P: the stand-in plays the restored container;
#   runc [--root R] restore ... --bundle B -d ID (a rollback on the source)
#     fake-criu.sh restore -D DIR (fails when DIR holds fail-restore), then
#     R/ID/state.json is written again: the container runs here.
# R defaults to /run/runc.  Every call appends "runc ARGS" to
# FAKE_RUNC_ARGS when that is set (and to DIR/fake-runc.args).
here=$(cd "$(dirname "$0")" && pwd)
args="$*"
root=/run/runc
if [ "${1:-}" = --root ]; then
	root=$2
	shift 2
fi
verb=$1
shift
dir="" work="" bundle="" pidf="" lazy="" id=""
while [ $# -gt 0 ]; do
	case $1 in
	--image-path) dir=$2; shift ;;
	--work-path) work=$2; shift ;;
	--bundle) bundle=$2; shift ;;
	--pid-file) pidf=$2; shift ;;
	--manage-cgroups-mode) shift ;;
	--lazy-pages) lazy=1 ;;
	-*) ;;
	*) id=$1 ;;
	esac
	shift
done
[ -n "$dir" ] && [ -n "$id" ] || exit 2
[ -z "${FAKE_RUNC_ARGS:-}" ] || echo "runc $args" >>"$FAKE_RUNC_ARGS"
case $verb in
checkpoint)
	echo "runc $args" >>"$dir/fake-runc.args"
	"$here/fake-criu.sh" dump -D "$dir" || exit 1
	rm -rf "${root:?}/$id"
	;;
restore)
	if [ -n "$lazy" ]; then
		exec "$here/fake-criu-restore.sh" -D "$dir" -W "${work:-$dir}" --pidfile "$pidf"
	fi
	echo "runc $args" >>"$dir/fake-runc.args"
	[ -n "$bundle" ] || exit 2
	# runc has criu log to restore.log in its work path.
	"$here/fake-criu.sh" restore -D "$dir"
	st=$?
	mv -f "$dir/restore-rollback.log" "$dir/restore.log"
	[ $st -eq 0 ] || exit 1
	mkdir -p "$root/$id" &&
		printf '{"id":"%s","init_process_pid":%d,"config":{"labels":["bundle=%s"]}}\n' \
			"$id" $$ "$bundle" >"$root/$id/state.json"
	;;
*) exit 2 ;;
esac
