#!/bin/bash
# A lazy dump through both agents (issue 10 item 2, design.md §11): as
# 33-handover.t, `rdmigctl migrate --pid P --to 192.0.2.2 --lazy-dump
# --wait` on guest A, but the source agent runs `criu dump --lazy-pages`
# (real CRIU): the freeze writes no memory, the source stops the dumped
# workload, pulls its pages from criu's page server into its staging area
# and announces each unit (StageRegion; over RDMA the area's registration
# starts before the destination connects, here held 3 s so that the images
# and ImagesDone go first and its MemRegions follow: FEAT_LATE_REGIONS;
# the units the restore asks for meanwhile go from a region of their own,
# so the workload runs before the registration ends, and the area goes in
# chunks, each readable once it is registered);
# guest B's agent restores it and
# serves its faults from the staged units (StageReq for a unit not staged
# yet).  The workload (64 MiB, two threads rewriting it) verifies all its
# memory on B while pages still move and after the last one.  Once per
# transport in RDMIG_LAZY_TRANSPORTS (default "rdma tcp").  Then a failure
# on guest A alone: criu dump --lazy-pages killed (SIGKILL) while its page
# server serves: the migration fails naming it, the dumped workload stays
# stopped (the SIGSTOP sent at the status byte outlives criu's hold on it),
# and a rollback continues it on A, where it verifies all its memory.
# Last, criu killed in post-copy, with --verify: the workload runs on B
# with pages missing (B drains one page at a time); the migration fails on
# both agents, B stops its copy (never a zero page: the processes missing
# pages are stopped), the dumped workload stayed stopped on A, and a
# rollback without --force (B's agent confirms) continues it on A, where
# it verifies all its memory.
# Guest side: lib/handover-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/handover-migrate.sh
transports=${RDMIG_LAZY_TRANSPORTS:-rdma tcp}
# RDMA's four more: the registration that ends after ImagesDone.
tap_plan $((10 * $(wc -w <<<"$transports") + 16 + 4 * $(grep -cw rdma <<<"$transports")))

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds criu
rxe_agents_pki "$top"

for tr in $transports; do
	env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=64 RDMIG_ID=l1"
	env_common="$env_common RDMIG_VERIFY=0 RDMIG_TRANSPORT=$tr RDMIG_CTL_ARGS=--lazy-dump"
	# RDMA: the staging area's registration held 3 s, so that the images
	# surely go before it ends (FEAT_LATE_REGIONS).
	[[ $tr == rdma ]] && env_common="$env_common RDMIG_SOURCE_ARGS='--test-prereg-delay 3000'"
	tap_run --timeout 900 --grace 60 --pair \
		--source "$env_common $mig source" \
		--dest "$env_common $mig dest"
	out="$RUN_OUT$RUN_ERR"
	tap_is "$RUN_STATUS" 0 "$tr: rdmigctl migrate --pid --to --lazy-dump: the pair run exits 0"
	tap_like "$out" '^\[source\] handover: migration l1 \(source\): done$' "$tr: the report says done"
	tap_like "$out" "^\\[source\\] source: .*lazy dump of pid [0-9]+: images written, page server on 127\\.0\\.0\\.1:[0-9]+; [0-9]+ process\\(es\\) stopped" \
		"$tr: criu dump --lazy-pages wrote its images; the source stopped the dumped tree"
	tap_like "$out" '^\[dest\] handover: the workload kept rewriting on the destination' \
		"$tr: the workload verified 64 MiB on guest B twice, rewriting it all along"
	tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "$tr: never a wrong page"
	tap_like "$out" "^\\[dest\\] handover: dest worker: .*lazy dump: ([0-9]+) of \\1 units staged" \
		"$tr: the destination got every unit announced (StageRegion)"
	tap_diag "$(grep -h 'lazy dump: [0-9]* of' <<<"$RUN_OUT" | sed 's/.*lazy dump: /units: /')"
	json=$(grep -h '^\[source\] handover: json: ' <<<"$RUN_OUT" | tail -n 1)
	num() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$json"; }
	pages=$(num pages_total)
	fetched=$(num pages_fetched)
	[[ -n $pages && $pages -ge 16384 && $fetched == "$pages" && $json == *'"lazy_dump":true'* ]]
	tap_ok $? "$tr: the API report: lazy_dump, every page moved ($fetched of ${pages:-?}), freeze $(num freeze_ms) ms, downtime $(num downtime_ms) ms"
	# RDMA: the staging area was registered while the destination was asked
	# and connected, and its session took it (0 ms after the proof); TCP
	# registers nothing (null).
	if [[ $tr == rdma ]]; then
		[[ $(num register_ms) == 0 ]]
		tap_ok $? "$tr: the staging area was registered ahead of the destination (register_ms $(num register_ms))"
		tap_like "$out" "^\\[source\\] source: .*the staging area's registration goes on while the images go out" \
			"$tr: its registration held 3 s, the images and ImagesDone went first (FEAT_LATE_REGIONS)"
		tap_like "$out" "^\\[source\\] source: .*the staging area was registered off the loop while the images went out and the destination restored" \
			"$tr: ... its MemRegions followed ImagesDone"
		# criu restore itself faults on lazy pages (each thread's rseq
		# area): those units went from a region of their own, so the
		# workload ran before the held registration ended.
		src_log=$(grep -h '^\[source\] source: ' <<<"$RUN_OUT")
		ran=$(grep -n 'the workload runs on the destination' <<<"$src_log" | head -n 1 | cut -d: -f1)
		reg=$(grep -n 'the staging area was registered off the loop' <<<"$src_log" | head -n 1 | cut -d: -f1)
		[[ -n $ran && -n $reg && $ran -lt $reg ]] &&
			grep -q 'unit(s) asked for while the staging area was registered were announced from their own region' <<<"$src_log"
		tap_ok $? "$tr: ... the units the restore asked for went from their own region: the workload ran before the registration ended (source log lines ${ran:-?} < ${reg:-?})"
		# The area goes in chunks of 2 MiB (33 for the workload's 64 MiB and
		# the rest): the held one first, the workload already running, so
		# its units were announced before the rest was registered.
		nchunks=$(sed -n 's/.*staging area registered for RDMA READ in \([0-9]*\) chunk(s) of 2048 KiB.*/\1/p' <<<"$src_log" | head -n 1)
		chunks=$(sed -n 's/.*: the units of \([0-9]*\) chunk(s) of the staging area were announced before the whole area was registered.*/\1/p' <<<"$src_log" | head -n 1)
		[[ -n $nchunks && $nchunks -ge 32 && -n $chunks && $chunks -ge 1 ]]
		tap_ok $? "$tr: ... registered in ${nchunks:-?} chunks, and the units of ${chunks:-no} chunk(s) were announced before the whole area was registered"
	else
		[[ $json == *'"register_ms":null'* ]]
		tap_ok $? "$tr: nothing registered (register_ms null)"
	fi
	pf=$(sed -n 's/^\[source\] handover: pages files: \([0-9]*\) bytes/\1/p' <<<"$RUN_OUT" | tail -n 1)
	tap_cmp "${pf:-x}" -lt 4194304 "$tr: the dump wrote no memory: pages files hold $pf bytes of 64 MiB"
	tap_like "$out" '^\[source\] handover: source workload after the migration: gone' \
		"$tr: the source's stopped copy was killed once the destination had every page"
	tap_diag "report: $(grep -h '^\[source\] handover:   \(downtime\|dump\|restore\|total\|faults\|moved\):' <<<"$RUN_OUT" | sed 's/^\[source\] handover: *//' | tr -s ' ' | paste -sd ';' -)"
done

env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=64 RDMIG_ID=l2 RDMIG_VERIFY=0"
tap_run --timeout 600 --grace 60 --pair --source "$env_common $mig lazyfail" --dest "true"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "page server killed: the run exits 0"
tap_like "$out" '^\[source\] handover: killing criu dump --lazy-pages \(pid [0-9]+\) while it serves' \
	"criu dump --lazy-pages was killed while it served"
tap_like "$out" "^\\[source\\] handover: after its page server died: failed: the lazy dump's page server ended" \
	"... the migration failed, naming the page server"
tap_like "$out" '^\[source\] handover: the dumped workload: T' "... and the dumped workload stayed stopped"
tap_like "$out" '^\[source\] handover: the workload runs on the source again: generation' \
	"a rollback continued it: it runs on the source and verified all its memory"
tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "never a wrong page"

# criu's page server killed in post-copy: the workload runs on B with pages
# missing (B drains one 4 KiB page at a time), --verify on both agents.
env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=64 RDMIG_ID=l3"
tap_run --timeout 600 --grace 60 --pair --source "$env_common $mig lazypost" \
	--dest "$env_common $mig lazypostdest"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "page server killed in post-copy: the run exits 0"
tap_like "$out" '^\[source\] handover: the destination.s state before the kill: (postcopy|draining)' \
	"... criu was killed while the workload ran on the destination"
tap_like "$out" '^\[source\] handover: after its page server died: failed: the lazy dump.s page server' \
	"... the migration failed on the source, naming the page server"
tap_like "$out" '^\[dest\] handover: the destination agent.s state: failed: ' \
	"... and on the destination"
tap_like "$out" '^\[dest\] handover: dest summary: status=[a-z]+ .*failed=[1-9]' \
	"... which stopped the processes that still missed pages (never a zero page)"
tap_like "$out" '^\[dest\] handover: running on the destination: 0$' "... none of them left on the destination"
tap_like "$out" '^\[source\] handover: the dumped workload: T' "the dumped workload stayed stopped on the source"
tap_like "$out" '^\[source\] handover: after the rollback: rolled_back' \
	"rdmigctl rollback (no --force: the destination agent confirmed) rolled it back"
tap_like "$out" '^\[source\] handover: the workload runs on the source again: generation' \
	"... the workload runs on the source again and verified all its memory"
tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "never a wrong page"
tap_done
