#!/bin/bash
# rdmig-dest --restore over TCP with a criu that fails (/bin/false): the
# images arrive, rdmig-dest reports the failed restore, aborts the
# migration and exits 1; the source hears why and keeps its checkpoint.
. "$(dirname "$0")/netlib.sh"
plan 5

mkimage "$T/src" --size 16M
mkdir "$T/dst"
secret "$T/secret"
sum0=$(dir_sum "$T/src")
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --once
check "rdmig-source listens on a free port" test -n "$src_port"
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args m1 "$T/secret") --restore --criu /bin/false
wait_dest
check "rdmig-dest exits 1" test "$code" -eq 1
check "rdmig-dest says the restore failed" \
	grep -q "restore failed: criu restore exited with status 1 .* $T/dst/restore.log" "$T/dest.log"
for i in $(seq 100); do grep -q "the destination aborted" "$T/source.log" && break; sleep 0.1; done
check "the source hears the restore failed and keeps its checkpoint" \
	grep -q "the destination aborted: criu restore failed on the destination .*keeping the checkpoint" "$T/source.log"
check "the source's images dir is untouched" test "$(dir_sum "$T/src")" = "$sum0"
[ "$tap_failed" -eq 0 ] || { diag_file "$T/dest.log"; diag_file "$T/source.log"; }
finish
