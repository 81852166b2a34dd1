#!/bin/bash
# One command migrates a running process between two soft-RoCE hosts:
# guest A runs rdmig-source with its API and rdmig-workload (64 MiB, two
# threads rewriting and checking it); guest B runs `rdmig-dest --serve
# --api-tcp 0.0.0.0:7472` with mutual TLS (certificates made here).
# `rdmigctl migrate --pid P --to 192.0.2.2 --wait` (no secret file: the
# source agent makes the secret and hands it over inside TLS)
# on A: the source agent dumps the workload (real CRIU; lazily, the default
# for --pid --to an agent that takes a lazy dump: criu dump --lazy-pages
# writes no memory and the agent pulls it from criu's page server), serves
# it for RDMA READ and hands the migration over to B's API, which restores
# it with criu restore --lazy-pages and serves its faults.  The workload verifies
# all its memory on B as soon as B's agent reports it running (usually
# while pages still move) and after the last one; the report gives the
# downtime, total time, pages, bytes and faults.  Then a second migration,
# of a 16 MiB workload that locks all its memory (--mlock): criu marks no
# page lazy, and every page goes with the images (a lazy dump with nothing
# to stage).  A third, plain (--no-lazy-dump), of a 16 MiB workload with a
# thread stopped with its stack pointer on a page boundary
# (--sp-page-aligned): criu marks none of its pages lazy, and the source
# serves them lazily all the same; a fourth, the same dumped lazily: the
# source stages every page from the stopped tree.  The plain dump's other flows are
# 41-*.t's and 42-linkdown.t's.  Guest side:
# lib/handover-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/handover-migrate.sh
tap_plan 37

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
if ! "$build/dest-agent/rdmig-dest" --help 2>&1 | grep -q -- --serve; then
	echo "Bail out! rdmig-dest has no --serve (the destination agent's API)"
	exit 1
fi
rxe_require_cmds criu
# The agents' certificates, made here, read by the guests through the share.
rxe_agents_pki "$top"
env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=64"

tap_run_pair "$env_common" "$mig"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "rdmigctl migrate --pid --to: the pair run exits 0"
tap_like "$out" '^\[source\] handover: destination agent: ok: dest agent' \
	"guest B's rdmig-dest --serve answers on its TCP API, over mutual TLS"
tap_like "$out" '^\[dest\] dest: .*api: listening on TCP 0\.0\.0\.0, port 7472 \(mutual TLS\)' \
	"... which is TLS only"
tap_unlike "$out" 'api: refused|TLS handshake failed|certificate is refused' \
	"... and the source agent's certificate passed, both ways"
tap_like "$out" '^\[source\] handover: migration h1 started' "migrate --pid --to --wait starts h1"
tap_like "$out" '^\[source\] handover: migration h1 \(source\): done$' "the report says done"
tap_like "$out" '^\[source\] handover:   dest: +192\.0\.2\.2:7472 \(destination agent: done\)' \
	"... the destination agent on 192.0.2.2:7472 says done too"
tap_like "$out" '^\[source\] source: .*handing over to destination agent 192\.0\.2\.2:7472, to connect to 192\.0\.2\.1:7471 \(rdma\)' \
	"the source told the destination to connect to its RDMA listener"
tap_like "$out" "^\\[source\\] source: .*lazy dump of pid [0-9]+: images written, page server on 127\\.0\\.0\\.1:[0-9]+" \
	"no --lazy-dump asked: the agent dumped lazily (B's agent takes one), criu's page server kept the memory"
tap_like "$out" '^\[source\] source: .*the staging area was registered (before the destination connected|off the loop)' \
	"the source registered its staging area for RDMA READ out of the freeze"
tap_diag "$(grep -h '^\[source\] source: .*\(registered\|destination authenticated\|sent [0-9]* image files\)' <<<"$RUN_OUT")"
tap_like "$out" '^\[dest\] dest: .*migration h1: postcopy' "the workload ran on guest B while pages moved"
tap_like "$out" '^\[dest\] handover: verifying (while pages still move|after the last page)' \
	"the destination agent reported the workload running; it was checked at once"
tap_diag "$(grep -h '^\[dest\] handover: verifying' <<<"$RUN_OUT")"
down=$(handover_num times.downtime_ms)
freeze=$(handover_num times.freeze_ms)
total=$(handover_num times.total_ms)
faults=$(handover_num progress.faults)
tap_cmp "${down:-x}" -ge "${freeze:-y}" "downtime_ms ($down) is reported and >= the dump's freeze_ms ($freeze)"
tap_cmp "${total:-x}" -ge "${down:-y}" "total_ms ($total) >= downtime_ms"
tap_cmp "$(handover_num progress.pages_total)" -ge 16384 "pages_total covers the 64 MiB"
pf=$(sed -n 's/^\[source\] handover: pages files: \([0-9]*\) bytes/\1/p' <<<"$RUN_OUT" | tail -n 1)
j=$(handover_json)
[[ $(jq -r .lazy_dump <<<"${j:-null}" 2>/dev/null) == true && -n $pf && $pf -lt 4194304 ]]
tap_ok $? "the status says lazy_dump; the freeze wrote ${pf:-?} bytes of pages files, not the 64 MiB"
tap_handover_verified "$out"
tap_like "$out" '^\[source\] handover:   faults: +[0-9]+ \(latency p50 [0-9]+ us, p99 [0-9]+ us\)' \
	"the report gives the faults and their p50/p99 latency ($faults faults)"
tap_diag "report: $(grep -h '^\[source\] handover:   \(downtime\|dump\|restore\|total\|faults\|moved\):' <<<"$RUN_OUT" | sed 's/^\[source\] handover: *//' | tr -s ' ' | paste -sd ';' -)"

# A workload that locks its memory (mlockall, as some databases do): criu
# marks no page of a locked VMA lazy, so the checkpoint has nothing to serve
# by RDMA READ.  The migration goes on with every page in the pages files
# sent with the images (protocol.md §7) and restored by criu, not refused.
tap_run_pair "$env_common RDMIG_SIZE_MB=16 RDMIG_WL_ARGS=--mlock RDMIG_ID=h2" "$mig"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "a workload with all its memory locked (16 MiB): the pair run exits 0"
j=$(handover_json)
tap_is "$(jq -r '"\(.state) \(.dest_state) \(.lazy_dump)"' <<<"${j:-null}" 2>/dev/null)" "done done true" \
	"... done on both agents, a lazy dump (the source's JSON)"
tap_is "$(jq -r '"\(.progress.pages_total) \(.progress.pages_remaining)"' <<<"${j:-null}" 2>/dev/null)" "0 0" \
	"... with no page to serve by RDMA READ (pages_total 0): criu marked none lazy"
tap_like "$out" '^\[dest\] handover: the workload kept rewriting on the destination' \
	"... the workload verified its 16 MiB on guest B twice: every page came with the images"
tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "... never a wrong page"

# criu dump's is_stack() (criu/mem.c) tests the offset of a thread's stack
# pointer in its page where it means the page: a thread stopped with it on
# a page boundary makes criu write every page present and none lazy.  The
# source marks lazy what criu marks in any other dump, so the memory moves
# by RDMA READ after the restore, not all of it with the images before.
# misfired ID LAZY [CTL_ARGS]: a 16 MiB --sp-page-aligned workload migrated
# as ID: done on both agents (lazy_dump LAZY), every page read after the
# restore, verified twice on guest B (five assertions).
misfired() {
	local j pt pf
	tap_run_pair "$env_common RDMIG_SIZE_MB=16 RDMIG_WL_ARGS=--sp-page-aligned ${3:+RDMIG_CTL_ARGS=$3} RDMIG_ID=$1" "$mig"
	out="$RUN_OUT$RUN_ERR"
	tap_is "$RUN_STATUS" 0 "$1: a thread with its stack pointer on a page boundary, lazy_dump $2: the pair run exits 0"
	j=$(handover_json)
	tap_is "$(jq -r '"\(.state) \(.dest_state) \(.lazy_dump)"' <<<"${j:-null}" 2>/dev/null)" "done done $2" \
		"... done on both agents, lazy_dump $2 (the source's JSON)"
	pt=$(jq -r '.progress.pages_total // 0' <<<"${j:-null}" 2>/dev/null)
	pf=$(jq -r '.progress.pages_fetched // -1' <<<"${j:-null}" 2>/dev/null)
	[[ ${pt:-0} -ge 4096 && $pf == "$pt" ]]
	tap_ok $? "... its 16 MiB served by RDMA READ after the restore: $pf of ${pt:-?} pages, not sent with the images"
	tap_like "$out" '^\[dest\] handover: the workload kept rewriting on the destination' \
		"... the workload verified its 16 MiB on guest B twice"
	tap_unlike "$out" 'CORRUPT|no report|MISMATCH' "... never a wrong page"
	tap_diag "$(grep -h '^\[source\] source: .*\(criu marked\|no lazy pages\|stopped tree\|criu dump --lazy-pages ended\)' <<<"$RUN_OUT" | head -n 5)"
}
misfired h3 false --no-lazy-dump
tap_like "$out" '^\[source\] source: .*task [0-9]+: criu marked none of the [0-9]+ pages it could serve lazily as lazy' \
	"h3: criu marked them not lazy, and the source agent says it serves them lazily"
# Dumped lazily (the default): criu wrote every page into its pages files
# during the freeze and its page server holds none.  The source ends that
# server's session and stages every page from the stopped tree.
misfired h4 true
tap_like "$out" '^\[source\] source: .*lazy dump of pid [0-9]+: criu marked no page lazy .*the stopped tree serves them' \
	"h4: the source ended criu's page server session and staged from the stopped tree"
tap_done
