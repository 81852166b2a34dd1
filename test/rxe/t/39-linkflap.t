#!/bin/bash
# The destination's link down for 10 s in post-copy (issue "post-copy that
# survives", item 1), a guest pair: rdmig-source serves a 32 MiB synthetic
# image over RDMA, rdmig-dest (drain slowed to one page at a time) serves the
# stand-in; once it reports draining, the dest guest's eth0 goes down for
# 10 s and up again (lib/migrate.sh, RDMIG_LINK_DOWN).  Both agents pause.
# Under the guests' Debian 6.1 kernel the dest's rxe then drops every RoCE
# packet it receives (inside rxe_rcv: counted by UDP, never by rxe), for any
# process and even for a re-created rxe device, so no rdma_cm connection
# completes again: docs/testing.md, "Link down over RDMA", has the evidence.
# What must hold then, and is asserted: both sides paused and counted it,
# no page was lost or wrong, and at --pause-limit the restored processes
# are stopped (T), not killed, while the source keeps its checkpoint.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/migrate.sh
tap_plan 10

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-standin test/rdmig-mkimage
rxe_secret "$top"

env="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_SIZE=32M"
# The source serves (paused) until the dest side is over, then is stopped.
src="$env RDMIG_SOURCE_ARGS='--dead-after 4' $mig source & p=\$!
	while kill -0 \$p 2>/dev/null && [ ! -e \"\$RDMIG_SHARED_DIR/dest-done\" ]; do sleep 1; done
	pkill -KILL -x rdmig-source; wait \$p; true"
dst="$env RDMIG_LINK_DOWN=10 RDMIG_PAUSE_EXPIRES=1 \
	RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 4K --dead-after 4 --pause-limit 45' $mig dest
	st=\$?; touch \"\$RDMIG_SHARED_DIR/dest-done\"; exit \$st"
tap_run --timeout 900 --grace 30 --pair --source "$src" --dest "$dst"
out="$RUN_OUT"$'\n'"$RUN_ERR"
tap_like "$out" 'migrate: link eth0 down for 10 s' "the dest guest's link went down in post-copy"
tap_like "$out" 'migrate: link eth0 up' "... and up again"
tap_like "$out" 'migrate: states: .*draining paused (.* )?failed' \
	"rdmig-dest reported paused, then failed at the pause limit"
tap_like "$out" 'pauses: count=[1-9]' "rdmig-dest's summary counts the pause"
tap_like "$out" 'rdmig-source.*migration m1 paused: ' "the source paused the migration too"
# The test's SIGTERM after the limit kills the processes: their pages not in
# are dropped then, and only then.
n_sig=$(sed -n 's/.*signal 15 with \([0-9]*\) lazy pages not installed.*/\1/p' <<<"$out" | head -n 1)
n_drop=$(sed -n 's/.*summary: status=failed .* dropped=\([0-9]*\) .*/\1/p' <<<"$out" | head -n 1)
[[ -n $n_sig && $n_sig == "$n_drop" ]]
tap_ok $? "no page dropped before the test stopped rdmig-dest (dropped=${n_drop:-?}, not installed at SIGTERM: ${n_sig:-?})"
tap_unlike "$out" 'MISMATCH|mismatches [1-9]' "no wrong byte reached the stand-in"
tap_like "$out" 'migrate: at the pause limit: rdmig-dest running, processes:( T)+$' \
	"at the pause limit the processes are stopped (T), not killed, rdmig-dest still runs"
tap_unlike "$out" 'checkpoint released' "the source kept its checkpoint"
tap_cmp "$(grep -c 'reconnection attempt failed' <<<"$out")" -ge 3 \
	"rdmig-dest kept reconnecting with backoff while paused"
tap_diag "$(grep -hE 'migrate: |paused|resumed|reconnection attempt|summary:|pauses:' <<<"$out" | tail -n 25)"
tap_done
