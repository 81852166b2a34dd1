#!/bin/bash
# The destination's link down 5 s, 30 s and 120 s in post-copy, one
# migration through both agents (issue 12, Tests): guest A's rdmig-source
# with its API and the 32 MiB self-checking rdmig-workload, `rdmigctl
# migrate --pid P --to 192.0.2.2 --verify --wait` over RDMA; guest B's
# rdmig-dest --serve drains one 4 KiB page at a time (--drain-depth 1
# --drain-chunk 4K, handed to its worker) and its eth0 delays what it sends
# 30 ms until the last outage is over (tc netem: each drain read a round
# trip of 30 ms), so the workload runs there on
# pages still missing when B's eth0 goes down for 5 s, comes back until the
# migration runs again, goes down 30 s, then 120 s.  Both agents use
# --dead-after 3.  Asserted on the agents' JSON and the workload's verdicts:
# each outage began in post-copy and the migration ran again after it,
# done on both agents with every page moved, the pauses counted (at least
# 3 on each side) and timed (at least 143 s in all: each outage less the
# 4 s it takes to notice), the workload verified all its memory on B after
# the outages and after the last page, and runs on B only.  About 5
# minutes.  Guest side: lib/linkstall-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=linkstall-tap.sh
. "$(dirname "$0")/linkstall-tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/linkstall-migrate.sh
tap_plan 13

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds criu jq
rxe_agents_pki "$top"
env="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=32 RDMIG_CASES=down:outages:5,30,120:wl"
tap_run --timeout 900 --grace 60 --pair --source "$env $mig source" --dest "$env $mig dest"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"
ls_case down 3 3/3 143000 wl
tap_linkstall_diag
tap_done
