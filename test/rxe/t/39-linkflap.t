#!/bin/bash
# The destination's link down for 10 s in post-copy (issue "post-copy that
# survives", item 1), a guest pair: rdmig-source serves a 32 MiB synthetic
# image over RDMA, rdmig-dest (drain slowed to one page at a time) serves the
# stand-in; once it reports draining, the dest guest's eth0 goes down for
# 10 s and up again (lib/migrate.sh, RDMIG_LINK_DOWN).  Both agents pause.
# Under the guests' Debian 6.1 kernel the dest's rxe then drops every packet
# to QP1 for good, so no rdma_cm connection completes again (docs/testing.md,
# "Link down over RDMA"); rdmig-dest reconnects without rdma_cm instead: an
# authenticated TCP side channel carries both queue pairs' numbers, PSNs and
# GIDs (FEAT_RC_SIDE, docs/protocol.md §7.4) and each side moves its new QP
# to RTS by hand.  Asserted: both sides paused and counted it, resumed over
# the side channel, the migration ends done with every page verified and
# none dropped, and the source released its checkpoint only after Done.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/migrate.sh
tap_plan 15

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-standin test/rdmig-mkimage
rxe_secret "$top"

env="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_SIZE=32M"
# rdmig-source --once exits by itself once the migration is done; if it has
# not a few seconds after the dest side ended, it is stopped (and says so).
src="$env RDMIG_SOURCE_ARGS='--dead-after 4' $mig source & p=\$!
	while kill -0 \$p 2>/dev/null && [ ! -e \"\$RDMIG_SHARED_DIR/dest-done\" ]; do sleep 1; done
	for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 \$p 2>/dev/null || break; sleep 1; done
	pkill -KILL -x rdmig-source && echo 'linkflap: rdmig-source killed'
	wait \$p; echo \"linkflap: rdmig-source exit \$?\"; true"
dst="$env RDMIG_LINK_DOWN=10 \
	RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 4K --dead-after 4 --pause-limit 300' $mig dest
	st=\$?; touch \"\$RDMIG_SHARED_DIR/dest-done\"; exit \$st"
tap_run --timeout 900 --grace 30 --pair --source "$src" --dest "$dst"
out="$RUN_OUT"$'\n'"$RUN_ERR"
tap_like "$out" 'migrate: link eth0 down for 10 s' "the dest guest's link went down in post-copy"
tap_like "$out" 'migrate: link eth0 up' "... and up again"
tap_is "$RUN_STATUS" 0 "the migration survives the link flap (rdmig-dest and the stand-in exit 0)"
tap_like "$out" 'migrate: states: .*draining paused (postcopy |draining )+done' \
	"rdmig-dest reported paused, then draining again, then done"
# rdmig-dest's --progress-fd JSON (lib/migrate.sh's progress_end).
pages=$(sed -n 's/.*migrate: pages: total \([0-9]*\) fetched \([0-9]*\) remaining \([0-9]*\)$/\1 \2 \3/p' <<<"$out" | tail -n 1)
read -r p_total p_fetched p_left <<<"$pages"
[[ -n $p_total && $p_total -gt 0 && $p_fetched == "$p_total" && $p_left == 0 ]]
tap_ok $? "rdmig-dest's JSON: every page installed (${p_fetched:-?} of ${p_total:-?}, ${p_left:-?} left)"
tap_like "$out" 'summary: status=ok .*dropped=0 ' "... and its summary: none dropped (no JSON says it)"
tap_like "$out" 'migrate: pauses: [1-9]' "rdmig-dest's JSON reported the pause (paused, then running again)"
tap_like "$out" 'rdmig-source.*migration m1 paused: ' "the source paused the migration too"
n_src=$(sed -n 's/.*migration m1 resumed after .* (\([0-9]*\) pause(s)).*/\1/p' <<<"$out" | tail -n 1)
tap_cmp "${n_src:-0}" -ge 1 "the source resumed it and counts its pause (${n_src:-none})"
side_dst=$(grep -c "rdmig-dest.*RC side channel: queue pair to the source's [0-9]* made by hand" <<<"$out")
side_src=$(grep -c 'rdmig-source.*made by hand for the resuming destination' <<<"$out")
[[ $side_dst -ge 1 && $side_src -ge 1 ]]
tap_ok $? "resumed over queue pairs made by hand via the TCP side channel (dest $side_dst, source $side_src)"
lanes=$(grep -c 'rdmig-dest.*fault lane up' <<<"$out")
tap_cmp "$lanes" -ge 2 "the fault lane came up again on the queue pairs made by hand ($lanes times)"
tap_like "$out" 'pages [0-9]+ verified, mismatches 0' "the stand-in verified its pages"
tap_unlike "$out" 'MISMATCH|mismatches [1-9]' "no wrong byte reached the stand-in"
# The source's own lines, in order: the release comes once, after the resume.
srclines=$(grep -a "^\[source\]" <<<"$out")
l_res=$(grep -n 'migration m1 resumed after' <<<"$srclines" | tail -n 1 | cut -d: -f1)
l_rel=$(grep -n 'checkpoint released' <<<"$srclines" | cut -d: -f1)
[[ -n $l_res && -n $l_rel && $l_rel =~ ^[0-9]+$ && $l_rel -gt $l_res ]]
tap_ok $? "the source released its checkpoint once, after the resume and the Done (lines ${l_res:-?} < ${l_rel:-?})"
tap_like "$out" 'linkflap: rdmig-source exit 0' "rdmig-source --once exited 0 by itself: the migration is done there"
tap_diag "$(grep -hE 'migrate: |paused|resumed|made by hand|side channel|fault lane|reconnection attempt|summary:|pauses:|pages:|linkflap:' <<<"$out" | tail -n 30)"
if [[ $tap_failed -gt 0 ]]; then
	tap_diag "--- the agents' errors:" "$(grep -aE '(error|warn)' <<<"$out" | tail -n 40)"
fi
tap_done
