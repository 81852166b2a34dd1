#!/bin/bash
# The source agent hurt in post-copy (issue 12's Tests), a soft-RoCE guest
# pair, both agents as in t/33-handover.t (`rdmigctl migrate --pid --to`,
# RDMA, --verify, mutual TLS), a 16 MiB rdmig-workload verifying all its
# memory on the destination while pages move and after the last one.
#   srckill: rdmig-source SIGKILLed once 10% of the pages are in (the
#     destination agent's word, through the shared directory) and started
#     again 5 s later with the same options: it reloads its record, the
#     destination (paused meanwhile, its faults waiting) resumes; done.
#     Pages must be left in the destination's progress sampled just after
#     the kill (the share above is read before it).
#   lazykill: srckill's kill and restart, the workload dumped with
#     --lazy-dump (the real criu's page server feeding the staging area):
#     the restarted agent takes the dumped tree again (the same process,
#     still stopped) and stages the pages left from it; done.  A lazy
#     dump that came with no lazy page (rare: criu wrote every page into
#     the images) has nothing to hurt in post-copy: it is migrated to the
#     end, its diagnostics printed, and the case run again as lazykill2.
#   srcterm: rdmig-source SIGTERMed likewise: it keeps serving until the
#     destination has every page, then exits 0 by itself.
# The destination agent drains one 4 KiB page at a time (agentfail-migrate.sh's
# RDMIG_DRAIN_ARGS) and the workload rewrites about 100 pages/s.
# Guest side: lib/agentfail-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/agentfail-tap.sh
. "$(dirname "$0")/../lib/agentfail-tap.sh"
tap_plan 27
af_setup
af_run RDMIG_SIZE_MB=16 RDMIG_CASES="'srckill lazykill srcterm'"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"

af_true srckill hurt '.total > 0 and .fetched < .total and (.final | not)' \
	"srckill: rdmig-source SIGKILLed in post-copy with pages left (the destination's progress just after): $(af_json srckill hurt)"
af_ends srckill
af_paused srckill

# A lazy dump criu marked no page of is migrated to the end and the case
# run again as lazykill2 (agentfail-migrate.sh's no_lazy()); its asserts.
lk=$(af_json lazykill nolazy | jq -r 'if .at then "lazykill2" else "lazykill" end' 2>/dev/null)
lk=${lk:-lazykill}
if [ "$lk" != lazykill ]; then
	tap_diag "lazykill: criu's dump marked no page lazy; asserting on its second run: $(af_json lazykill nolazy)" \
		"$(grep -a 'agentfail: lazykill: \(criu\|agent\): ' <<<"$RUN_OUT")"
fi
af_true "$lk" hurt '.total > 0 and .fetched < .total and (.final | not)' \
	"$lk: rdmig-source SIGKILLed in post-copy of a lazy dump with pages left: $(af_json "$lk" hurt)"
af_true "$lk" adopt '.taken and .from_tree' \
	"$lk: the restarted agent took the dumped tree again and staged from it, criu gone"
af_ends "$lk"
af_paused "$lk"

af_true srcterm hurt '.total > 0 and .fetched < .total and (.final | not)' \
	"srcterm: rdmig-source SIGTERMed in post-copy with pages left (the destination's progress just after): $(af_json srcterm hurt)"
af_true srcterm term '.alive_after_1s and .exit == 0 and .record.state == "done"' \
	"srcterm: it stayed, served until done, then exited 0 by itself; its record says done"
af_ends srcterm
af_true srcterm dest '.pause.count == 0' "srcterm: the destination never had to pause"
af_diag
tap_done
