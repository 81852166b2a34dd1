#!/bin/bash
# One command on the destination: `rdmig-dest --restore` runs
# `criu restore --lazy-pages` itself (Debian's criu 3.17, one guest).
# rdmig-workload (32 MiB, 2 threads) is dumped with a plain `criu dump`,
# rdmig-source serves it, rdmig-dest receives the images and restores it;
# the workload verifies all its memory while pages still move and after
# the last one; rdmig-dest logs the restore time and root pid, exits 0.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/criu-migrate.sh
tap_plan 9

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-workload
rxe_require_cmds criu
rxe_secret "$top"

tap_run --timeout 300 -- sh -c "RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_SIZE_MB=32 RDMIG_DEST_RESTORE=1 $mig both"
out=$RUN_OUT$RUN_ERR
tap_is "$RUN_STATUS" 0 "criu dump + rdmig over RDMA + rdmig-dest --restore exits 0"
tap_like "$out" 'criu-migrate: rdmig-dest: criu restore done in [0-9]+ ms: restored root pid [0-9]+' \
	"rdmig-dest ran criu restore and logged its time and the restored root pid"
tap_like "$out" 'criu-migrate: restored in ' "the restore driven by rdmig-dest succeeded"
tap_unlike "$out" 'criu-migrate: criu restore failed|restore failed' "no restore failure"
tap_like "$out" 'criu-migrate: workload kept rewriting after restore' \
	"the restored workload verified its memory twice while rewriting it"
tap_unlike "$out" 'CORRUPT|no report' "never a wrong page"
tap_like "$out" 'summary: status=ok .* left=0 .* restore_ms=[0-9]+' \
	"rdmig-dest installed every lazy page; the summary has restore_ms"
tap_like "$out" 'criu-migrate: rdmig-dest exited 0' "rdmig-dest exits 0"
tap_like "$out" 'migration m1 done: .* checkpoint released' "the source saw Done"
tap_diag "$(grep -h 'criu restore done in' <<<"$RUN_OUT" | head -1)"
tap_diag "$(grep -h 'criu-migrate: times:' <<<"$RUN_OUT" | sed 's/.*times: //')"
tap_done
