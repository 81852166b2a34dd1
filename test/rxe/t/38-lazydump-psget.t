#!/bin/bash
# rdmig-source's lazy-dump client (source-agent/criupsrv.c) against a real
# `criu dump --lazy-pages` (CRIU 3.17) in one guest (lib/criu-migrate.sh):
# pull: rdmig-workload (64 MiB, 2 threads) is dumped plainly and left
#   stopped, then dumped again with --lazy-pages --leave-stopped;
#   rdmig-psget pulls every PE_LAZY page from the dump's page server and
#   compares each with the plain dump's copy of the same page.  After
#   PS_IOV_CLOSE the dump must end well and leave the workload stopped, and
#   the workload, continued, must verify its whole memory.
# fail: a lazy dump of the running workload whose transfer rdmig-psget
#   breaks on purpose: CRIU then resumes the dumped tasks whatever
#   --leave-stopped says; a SIGSTOP sent while the dump holds them (what
#   rdmig-source does, design.md section 11) must keep them stopped.
# nostop: the same without that SIGSTOP, to show the test can tell: the
#   workload runs again.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/criu-migrate.sh
tap_plan 16

rxe_require_built "$build" test/rdmig-psget test/rdmig-workload
rxe_require_cmds criu

tap_run --timeout 600 -- sh -c "export RDMIG_BUILD=$build RDMIG_FAULT_TIMES=0
echo 'case pull begin'; $mig psget; echo \"case pull status \$?\"
echo 'case fail begin'; RDMIG_SIZE_MB=16 $mig psget-fail; echo \"case fail status \$?\"
echo 'case nostop begin'; RDMIG_SIZE_MB=16 RDMIG_PSGET_NOSTOP=1 $mig psget-fail
echo \"case nostop status \$?\""
tap_is "$RUN_STATUS" 0 "the guest ran the three cases"

# section C: the output lines of case C.
section() {
	awk -v b="case $1 begin" -v e="case $1 status" '
		index($0, b) == 1 { on = 1; next }
		index($0, e) == 1 { on = 0 }
		on' <<<"$RUN_OUT"
}
status() { sed -n "s/^case $1 status //p" <<<"$RUN_OUT"; }
json_of() { sed -n 's/^criu-migrate: psget: //p' <<<"$1" | tail -n 1; }
num() { sed -n "s/.*\"$2\": \([0-9-]*\).*/\1/p" <<<"$1"; }

out=$(section pull)
json=$(json_of "$out")
pages=$(num "$json" pages)
tap_is "$(status pull)" 0 "pull: plain dump, lazy dump, pull, compare and the workload's check exit 0"
tap_ok "$([[ ${pages:-0} -ge 16384 ]] && echo 0 || echo 1)" \
	"pull: every lazy page of the 64 MiB workload came (${pages:-none} pages)"
tap_is "$(num "$json" compared)" "$pages" "pull: each compared with the plain dump's copy"
tap_is "$(num "$json" mismatched)" 0 "pull: none differs"
tap_is "$(num "$json" close_status)" 0 "pull: the dump answered PS_IOV_CLOSE with 0"
tap_like "$out" 'criu-migrate: dump: Lazy pages transfer finished successfully' \
	"pull: criu dump --lazy-pages ended its transfer well"
tap_like "$out" 'after the lazy transfer the workload is in state T' \
	"pull: --leave-stopped: the workload is stopped after the transfer"
tap_like "$out" 'criu-migrate: workload after SIGCONT: generation' \
	"pull: continued, the workload verified all its memory"
tap_diag "pull: $json"

out=$(section fail)
tap_is "$(status fail)" 0 "fail: broken transfer, stopped workload, its check after SIGCONT: exit 0"
tap_like "$out" 'criu-migrate: dump: Lazy pages transfer FAILED' \
	"fail: the dump's transfer failed (the path where CRIU resumes the tasks)"
tap_like "$out" 'after the failed lazy transfer the workload is in state T' \
	"fail: the workload stayed stopped: it cannot run beside the destination"
tap_like "$out" 'criu-migrate: workload after SIGCONT: generation' \
	"fail: continued (a rollback), the workload verified all its memory"

out=$(section nostop)
tap_like "$out" 'criu-migrate: dump: Lazy pages transfer FAILED' "nostop: the transfer failed too"
tap_like "$out" 'after the failed lazy transfer the workload is in state [RS]' \
	"nostop: without the SIGSTOP, CRIU let the workload run again"
tap_unlike "$RUN_OUT$RUN_ERR" 'CORRUPT|no report' "never a wrong page"
tap_diag "$(grep -h 'after the' <<<"$RUN_OUT")"
tap_done
