#!/bin/bash
# rdmig-source dumps and rolls back by itself (rdmigctl migrate --pid,
# rdmigctl rollback), real CRIU 3.17 in one guest, RDMA (rxe).  (1) The
# agent dumps rdmig-workload (dumping -> serving), rdmig-dest and `criu
# restore --lazy-pages` restore it, it verifies its memory and the
# migration is done; rolling that back is refused.  (2) Another dump with
# no destination is rolled back: the workload runs on the source again and
# verifies its memory.  The assertions read the guest's JSON lines
# (`agent-migrate: WHO json: {...}`: the migration's resource from the
# source agent, rdmigctl --json's answers, the workload's verdicts), and
# the source's log for its rollback line.  Guest side: lib/agent-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
tap_plan 17

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds criu jq
rxe_agents_pki "$top"

tap_run --timeout 240 -- sh -c "RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_PKI=$secrets/pki $top/test/rxe/lib/agent-migrate.sh"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "agent dump + restore, agent dump + rollback: exits 0"
tap_json "a1 migrate" '.exit == 0 and .json.id == "a1" and .json.state == "dumping"' \
	"migrate --pid: the migration starts dumping (rdmigctl --json migrate)"
tap_json "a1 serving" '.state == "serving" and .error == null' "a1: dumping -> serving (rdmigctl status a1 --json)"
tap_json "a1 dumped" '.gone' "a1: criu dump took the workload"
tap_json "a1 serving" '.times.freeze_ms > 0' "a1: freeze_ms reported: $(guest_json "a1 serving" .times.freeze_ms)"
tap_json "a1 dest" '.restore == 0 and .check_restored' \
	"a1: criu restore --lazy-pages succeeded and the workload verified its memory"
tap_json "a1 dest" '.dest_exit == 0' "a1: rdmig-dest exits 0"
tap_json "a1 done" '.state == "done" and .final and .error == null and .progress.pages_remaining == 0' \
	"a1: the migration is done"
tap_json "a1 dest" '.check_done' "a1: the workload verified its memory again once done"
tap_json "a1 rollback" '.exit != 0 and .json == null and (.error | test("a1.* is done: the destination has every page"))' \
	"a1: rolling back a done migration is refused"
tap_json "a1 after rollback" '.state == "done"' "a1: ... and it stays done"
tap_json "b1 migrate" '.exit == 0 and .json.state == "dumping"' "b1: migrate --pid starts dumping"
tap_json "b1 serving" '.state == "serving"' "b1: dumping -> serving"
tap_json "b1 final" '.state == "rolled_back" and .error == null' "b1: rollback -> rolled_back"
tap_json "b1 verdict" '.check1 and .check2 and .gen1 >= .gen0 and .gen2 > .gen1' \
	"b1: the workload runs on the source again, verifies its memory and keeps rewriting it: $(guest_obj "b1 verdict")"
if [[ $(guest_json "b1 verdict" '.check1 and .check2') != true ]]; then
	tap_diag "b1 diagnosis:" \
		"$(grep -E 'agent-migrate: (workload|b1|diag|part 2)|agent-migrate: workload: ' <<<"$out")" \
		"$(grep -E '^source: .*(b1|rollback)' <<<"$out" | tail -n 15)"
fi
tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "never a wrong page"
tap_like "$out" 'source: .*migration b1 rolled back: restored from' "the source logs the rollback"
if [[ $tap_failed -gt 0 ]]; then
	tap_diag "--- the run's agent-migrate lines:" "$(grep -a 'agent-migrate: ' <<<"$out" | tail -n 60)"
	tap_diag "--- stderr:" "$(tail -n 20 <<<"$RUN_ERR")"
fi
tap_done
