#!/bin/bash
# A pre-copy migration that loses its link in post-copy, through both agents
# over RDMA, in a guest pair of its own: guest A's rdmig-source (--verify,
# --dead-after 3, --rounds-wait 30000) with the 64 MiB self-checking
# rdmig-workload, `rdmigctl migrate --pid P --to 192.0.2.2 --precopy 1
# --verify --wait`; guest B's rdmig-dest --serve, held early, copies the
# round over RDMA while the workload still runs on A (FEAT_ROUNDS), then
# drains one 4 KiB page at a time; B's eth0 delays what it sends 30 ms.
# Once the workload runs on B, B's eth0 goes down 10 s.  Both agents pause
# and resume over the RC side channel; the resumed session registers the
# checkpoint again with new rkeys, and its MemRegions must still name the
# round's file by its XXH3, so that B adopts its copy again: most pages
# (all but the 1-2 thousand the final dump wrote) are read from the copy
# after the resume, B's progress.pages_local growing by thousands from the
# outage's end to done.  Then as 42-linkdown.t's cases
# (lib/linkstall-tap.sh's ls_case): the migration ran again, done on both
# agents with every page installed, the pause counted and timed, all the
# memory verified on B after the outage and after the last page, the
# workload on B only.  A boot of its
# own: after B's link went down, the 6.1 kernel's rxe of guest B answers
# no rdma_cm again (docs/testing.md).  Guest side: lib/linkstall-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/linkstall-tap.sh
. "$(dirname "$0")/../lib/linkstall-tap.sh"
tap_plan 15

# shellcheck disable=SC2119 # no commands beyond criu and jq
ls_setup
ls_run 900 RDMIG_SIZE_MB=64 "RDMIG_CASES='pcdown:outages:10:wl:precopy'"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"
ls_case pcdown 1 1/1 7000 wl
ev=$(grep -a "linkstall: pcdown: event 1: " <<<"$RUN_OUT" | tail -n 1)
l0=$(sed -n 's/.*local pages \([0-9]*\) -> [0-9]*$/\1/p' <<<"$ev")
l1=$(sed -n 's/.*local pages [0-9]* -> \([0-9]*\)$/\1/p' <<<"$ev")
lz=$(guest_json "pcdown dest" .progress.pages_local)
[[ -n $l0 && -n $l1 && -n $lz && $lz -ge $((l1 + 4096)) ]]
tap_ok $? "pcdown: after the resume B read pages from its copy of the round again: progress.pages_local ${l0:-none} as the link went down, ${l1:-none} as it came back, ${lz:-none} at the end"
tap_json "pcdown source" '.precopy.rounds | length == 1' "pcdown: one pre-copy round in the source's JSON"
tap_linkstall_diag
tap_done
