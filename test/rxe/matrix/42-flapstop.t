#!/bin/bash
# Two cases of issue 12's failure matrix (Tests) through both agents, in one
# guest pair, one migration each over RDMA (guest A: rdmig-source with its
# API, `rdmigctl migrate --pid P --to 192.0.2.2 --verify --wait`; guest B:
# rdmig-dest --serve draining one 4 KiB page at a time; both --dead-after
# 3; B's eth0 delaying what it sends 30 ms until the trouble is over):
#   stop  redis-server with known keys (lib/redis-migrate.sh's data set);
#         once it runs on B, the migration's worker is SIGSTOPped 30 s
#         (past its --fetch-timeout 30 and --dead-after 3): the source
#         pauses; continued, the worker forgives itself the stop, finds the
#         connection closed, pauses and resumes;
#   flap  the 32 MiB self-checking rdmig-workload; once it runs on B, B's
#         eth0 goes down 2 s and comes back 20 times, each time until the
#         migration runs again.  Last: after a flap the 6.1 kernel's rxe of
#         guest B answers no rdma_cm again (docs/testing.md).
# Asserted per case on the agents' JSON and the workload's verdicts: every
# event began in post-copy and the migration ran again after it, done on
# both agents with every page moved (installed, or freed by redis: none
# left, none dropped without an event), the pauses counted and timed, every
# key and value (redis) or all the memory (workload) verified on B after
# the trouble and after the last page, the workload on B only.  About 5
# minutes.  Guest side: lib/linkstall-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=linkstall-tap.sh
. "$(dirname "$0")/linkstall-tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/linkstall-migrate.sh
tap_plan 25

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds criu jq redis-server redis-cli
rxe_agents_pki "$top"
env="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=32 RDMIG_REDIS_KEYS=8000"
# The workload rewrites about 40 pages/s: the 20 flaps keep the link
# unusable a third of the time at most, and at 100 pages/s its own faults
# could bring every page before the last flap.
env="$env RDMIG_WL_ARGS='--delay-us 50000'"
env="$env RDMIG_CASES='stop:stop:30:redis flap:flaps:20x2:wl'"
tap_run --timeout 900 --grace 60 --pair --source "$env $mig source" --dest "$env $mig dest"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"
# The source pauses while the worker is stopped; the worker, continued,
# finds its connection closed and pauses too (until it has a new one).
ls_case stop 1 1/1 26000 redis
ls_case flap 20 1/1 1000 wl
tap_linkstall_diag
tap_done
