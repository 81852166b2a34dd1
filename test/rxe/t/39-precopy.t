#!/bin/bash
# Pre-copy rounds through both agents (issue 10 item 3, design.md §13): as
# 33-handover.t, `rdmigctl migrate --pid P --to 192.0.2.2 --wait` on guest
# A, with `--precopy 1` and `--precopy 3`: the source agent runs
# `criu pre-dump --track-mem` rounds (real CRIU) into the images dir's
# round-1.., the workload running on, then `criu dump --track-mem
# --prev-images-dir round-N`; it serves every page from the round that
# wrote it last, the destination restores from the flat images it gets,
# and the workload (64 MiB, two threads rewriting it) verifies all its
# memory on guest B while pages still move and after the last one.  The
# rounds are in the migration's JSON.  A third run, `--precopy auto` with
# the workload's rewrites bounded (--delay-us 5000 per page and thread: at
# most 400 pages/s of 16384), checks what pre-copy is for: the final dump
# writes fewer pages than the first round.  Each round's pages files are
# registered for RDMA READ when the round ends, not in the freeze
# (design.md §5): the source's log says so for every round, and, in the
# bounded run, that the chain's files from the rounds were registered
# before the freeze, and the source's JSON that the serving session took
# them (times.register_ms 0): the destination's connection, made during
# the rounds, is in the PD they were registered in; before each final
# dump the source asked the destination agent whether it still holds the
# reservation (design.md §13).  The destination's worker, started at the
# reservation (a pre-copy asks for it by default), is held during the
# rounds and copies each one as it ends (FEAT_ROUNDS): the source
# announces every round, the worker verifies its copies by their XXH3, and
# in the bounded run, whose rounds the final dump does not supersede, it
# reads pages from those copies instead of the network (the destination's
# progress.pages_local).  The last two runs let the final dump wait for
# the copies (rdmig-source --rounds-wait 30000: in TCG a 64 MiB round takes
# seconds to copy); the first keeps the default, which after one round
# waits at most 1 s, then stops the copies (RoundsStop).  Over RDMA only (a run takes a
# minute or two in TCG); guest side: lib/handover-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/handover-migrate.sh
tap_plan 38

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds criu
rxe_agents_pki "$top"

for run in 1 3 slow; do
	pc=${run/slow/auto}
	lbl="--precopy $pc"
	[ "$run" = slow ] && lbl="$lbl, rewrites bounded"
	env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=64 RDMIG_ID=p$run"
	env_common="$env_common RDMIG_VERIFY=0 RDMIG_TRANSPORT=rdma RDMIG_CTL_ARGS=--precopy=$pc"
	[ "$run" = slow ] && env_common="$env_common RDMIG_WL_ARGS=--delay-us=5000"
	[ "$run" != 1 ] && env_common="$env_common RDMIG_SOURCE_ARGS=--rounds-wait=30000"
	tap_run --timeout 900 --grace 60 --pair \
		--source "$env_common $mig source" \
		--dest "$env_common $mig dest"
	out="$RUN_OUT$RUN_ERR"
	tap_is "$RUN_STATUS" 0 "$lbl: rdmigctl migrate --pid --to: the pair run exits 0"
	tap_like "$out" "^\\[source\\] handover: migration p$run \\(source\\): done$" "$lbl: the report says done"
	tap_like "$out" '^\[dest\] handover: the workload kept rewriting on the destination' \
		"$lbl: the workload verified 64 MiB on guest B twice, rewriting it all along"
	tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "$lbl: never a wrong page"
	json=$(grep -h '^\[source\] handover: json: ' <<<"$RUN_OUT" | tail -n 1)
	num() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$json"; }
	pages=$(num pages_total)
	fetched=$(num pages_fetched)
	rounds=$(grep -o '"dirty_pages_per_s"' <<<"$json" | wc -l)
	[[ -n $pages && $pages -ge 16384 && $fetched == "$pages" ]]
	tap_ok $? "$lbl: every page moved ($fetched of ${pages:-?}), freeze $(num freeze_ms) ms, downtime $(num downtime_ms) ms"
	if [ "$pc" = auto ]; then
		[[ $json == *'"requested":"auto"'* && $rounds -ge 2 && $rounds -le 8 ]]
	else
		[[ $json == *"\"requested\":$pc"* && $rounds -eq $pc ]]
	fi
	tap_ok $? "$lbl: $rounds rounds in the JSON"
	[[ $json =~ \"final_pages\":[0-9]+ ]]
	tap_ok $? "$lbl: the final dump's pages in the JSON: $(num final_pages)"
	reg=$(grep -c "migration p$run: pre-dump round .* mapped and registered for RDMA READ" <<<"$RUN_OUT")
	early=$(sed -n "s/.*migration p$run: \([0-9]*\) of its [0-9]* pages files were registered when their rounds ended.*/\1/p" <<<"$RUN_OUT" | tail -n 1)
	if [ "$run" = slow ]; then
		[[ $reg -eq $rounds && ${early:-0} -ge 1 ]]
	else
		# The whole memory rewritten: the final dump may supersede every round.
		[[ $reg -eq $rounds && -n $early ]]
	fi
	tap_ok $? "$lbl: $reg of $rounds rounds registered when they ended; ${early:-?} of the chain's files were, so not in the freeze"
	tap_like "$RUN_OUT" "migration p$run: destination agent [^ ]+ still holds reservation r-[0-9a-f]+ before the final dump" \
		"$lbl: before the final dump the source asked its destination agent, which still held the reservation"
	# The destination's connection is in the PD the rounds registered in: its session takes them.
	regms=$(num register_ms)
	[[ $regms == 0 ]]
	tap_ok $? "$lbl: the session registered nothing after the destination's proof (times.register_ms ${regms:-null})"
	if [ "$run" = slow ]; then
		first=$(grep -o '"rounds":\[{"pages":[0-9]*' <<<"$json" | grep -o '[0-9]*$')
		final=$(num final_pages)
		[[ -n $first && -n $final && $final -lt $first ]]
		tap_ok $? "$lbl: the final dump wrote $final pages, round 1 ${first:-?}"
	fi
	# FEAT_ROUNDS: each round announced on the held session and copied by the worker.
	ann=$(grep -c "pre-copy round [0-9]* announced to the destination" <<<"$RUN_OUT")
	[[ $ann -ge 1 ]]
	tap_ok $? "$lbl: the source announced $ann round(s) to the destination held early"
	kept=$(grep -c "^\[dest\] handover: dest worker: .*round [0-9]*'s region .* copied ahead and verified" <<<"$RUN_OUT")
	waits=$(grep -c "migration p$run: the final dump waits for its destination to copy" <<<"$RUN_OUT")
	if [ "$run" = 1 ]; then
		# The default: a wait, if any, bounded (1 s after one round, else by the dirty rate).
		auto=$(grep -c "migration p$run: the final dump waits for its destination to copy .*\(while it dirties a tenth of its memory\|the default after one round\)" <<<"$RUN_OUT")
		[[ $waits -eq $auto ]]
		tap_ok $? "$lbl: the final dump's wait for the copies ($waits) was the default's, bounded ($auto); $kept region(s) copied"
	else
		[[ $kept -ge 1 ]]
		tap_ok $? "$lbl: the destination copied $kept round region(s) before the freeze, each verified by its XXH3"
	fi
	djson=$(grep -h '^\[dest\] handover: dest json: ' <<<"$RUN_OUT" | tail -n 1)
	local_pages=$(sed -n 's/.*"pages_local":\([0-9]*\).*/\1/p' <<<"$djson")
	if [ "$run" = slow ]; then
		[[ -n $local_pages && $local_pages -gt 0 && $local_pages -le ${pages:-0} ]]
		tap_ok $? "$lbl: $local_pages of ${pages:-?} pages read from those copies, not the network (progress.pages_local)"
	fi
	tap_diag "destination: pages_local ${local_pages:-null}; $(grep -h '^\[dest\] handover: dest worker: ' <<<"$RUN_OUT" | grep -c 'from its copy') region(s) served from copies"
	tap_diag "rounds: $(grep -o '"rounds":\[[^]]*\]' <<<"$json")"
	tap_diag "report: $(grep -h '^\[source\] handover:   \(downtime\|dump\|restore\|total\|faults\|moved\|round [0-9]\|final dump\):' <<<"$RUN_OUT" | sed 's/^\[source\] handover: *//' | tr -s ' ' | paste -sd ';' -)"
done
tap_done
