#!/bin/bash
# rdmig-source dumps and rolls back by itself (rdmigctl migrate --pid,
# rdmigctl rollback), real CRIU 3.17 in one guest, RDMA (rxe).  (1) The
# agent dumps rdmig-workload (dumping -> serving), rdmig-dest and `criu
# restore --lazy-pages` restore it, it verifies its memory and the
# migration is done; rolling that back is refused.  (2) Another dump with
# no destination is rolled back: the workload runs on the source again and
# verifies its memory.  Guest side: lib/agent-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
tap_plan 14

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_secret "$top"

tap_run --timeout 240 -- sh -c "RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s $top/test/rxe/lib/agent-migrate.sh"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "agent dump + restore, agent dump + rollback: exits 0"
tap_like "$out" '^agent-migrate: migration a1 started \(dumping\)' "migrate --pid: the migration starts dumping"
tap_like "$out" '^agent-migrate: a1 states:.* serving$' "a1: dumping -> serving"
tap_like "$out" 'agent-migrate: a1: the dumped workload is gone from the source' "a1: criu dump took the workload"
tap_like "$out" '^agent-migrate: a1 freeze_ms: [1-9][0-9]*$' "a1: freeze_ms reported"
tap_like "$out" 'agent-migrate: a1: restored on the destination' "a1: criu restore --lazy-pages succeeded"
tap_like "$out" 'agent-migrate: a1: rdmig-dest exited 0' "a1: rdmig-dest exits 0"
tap_like "$out" '^agent-migrate: a1 states: (serving )?done$' "a1: the migration is done"
tap_like "$out" 'agent-migrate: rdmigctl: .*a1.* is done: the destination has every page' "a1: rolling back a done migration is refused"
tap_like "$out" '^agent-migrate: b1 states:.* serving$' "b1: dumping -> serving"
tap_like "$out" '^agent-migrate: b1 states:.* rolled_back$' "b1: rollback -> rolled_back"
tap_like "$out" 'agent-migrate: b1: rolled back workload kept rewriting' "b1: the workload runs on the source again and verifies its memory"
if ! grep -q 'agent-migrate: b1: rolled back workload kept rewriting' <<<"$out"; then
	tap_diag "b1 diagnosis:" \
		"$(grep -E 'agent-migrate: (workload|b1|diag|part 2)|agent-migrate: workload: ' <<<"$out")" \
		"$(grep -E '^source: .*(b1|rollback)' <<<"$out" | tail -n 15)"
fi
tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "never a wrong page"
tap_like "$out" 'source: .*migration b1 rolled back: restored from' "the source logs the rollback"
tap_done
