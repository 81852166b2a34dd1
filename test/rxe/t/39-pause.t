#!/bin/bash
# Post-copy survives a silent source over RDMA (issue "post-copy that
# survives", item 1), one soft-RoCE guest: rdmig-source serves a 128 MiB
# synthetic image; rdmig-dest (drain slowed to one page at a time) serves the
# stand-in; once it reports draining, rdmig-source is SIGSTOPped for 12 s
# (both agents' --dead-after 4).  One-sided READs go on while the process is
# stopped, its keepalives do not: rdmig-dest must pause (never stop the
# process), reconnect over rdma_cm once the source runs again (a new QP, the
# source's MRs registered again, new rkeys, the fault lane again), issue its
# reads again and finish: every page verified, the summary counting the
# pause.  Guest side: lib/migrate.sh (RDMIG_SOURCE_STOP; RDMIG_LINK_DOWN takes
# a pair's link down instead, see docs/testing.md).
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/migrate.sh
tap_plan 10

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-standin test/rdmig-mkimage
rxe_secret "$top"

tap_run --timeout 600 -- sh -c "
	RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_SIZE=128M RDMIG_SOURCE_STOP=12 \
	RDMIG_SOURCE_ARGS='--dead-after 4' \
	RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 4K --dead-after 4' $mig both"
out="$RUN_OUT"$'\n'"$RUN_ERR"
tap_is "$RUN_STATUS" 0 "the migration survives the stopped source (exit 0)"
tap_like "$out" 'migrate: rdmig-source stopped for 12 s' "rdmig-source was stopped in post-copy"
tap_like "$out" 'migrate: states: .*draining paused (postcopy |draining )+done' \
	"rdmig-dest reported paused, then draining again, then done"
# rdmig-dest's --progress-fd JSON (lib/migrate.sh's progress_end).
pages=$(sed -n 's/.*migrate: pages: total \([0-9]*\) fetched \([0-9]*\) remaining \([0-9]*\)$/\1 \2 \3/p' <<<"$out" | tail -n 1)
read -r p_total p_fetched p_left <<<"$pages"
[[ -n $p_total && $p_total -gt 0 && $p_fetched == "$p_total" && $p_left == 0 ]]
tap_ok $? "rdmig-dest's JSON: every page installed (${p_fetched:-?} of ${p_total:-?}, ${p_left:-?} left)"
tap_like "$out" 'summary: status=ok .*dropped=0 ' "... and its summary: none dropped (no JSON says it)"
tap_like "$out" 'migrate: pauses: [1-9]' "rdmig-dest's JSON reported the pause (paused, then running again)"
tap_like "$out" 'pages [0-9]+ verified, mismatches 0' "the stand-in verified its pages"
tap_unlike "$out" 'MISMATCH|mismatches [1-9]' "no wrong byte"
tap_like "$out" 'resumes post-copy over rdma' "the source registered its pages again for the resumed connection"
# Either agent logs each lane it sees come up; the source's count does not
# depend on which side's log line won the race with the last page.
lanes=$(grep -c 'rdmig-source.*fault lane up' <<<"$out")
tap_cmp "$lanes" -ge 2 "the fault lane came up again on the resumed connection ($lanes times)"
tap_diag "$(grep -hE 'migrate: (rdmig-source|link|states)|paused|resumed|summary:|pauses:|pages:|fault lane' <<<"$out" | tail -n 20)"
if [[ $tap_failed -gt 0 ]]; then
	tap_diag "--- the agents' errors:" "$(grep -aE '(error|warn)' <<<"$out" | tail -n 40)"
fi
tap_done
