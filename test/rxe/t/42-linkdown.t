#!/bin/bash
# Issue 12's stall and link-loss cases through both agents (Tests), in one
# guest pair, one migration each over RDMA: guest A's rdmig-source with its
# API, `rdmigctl migrate --pid P --to 192.0.2.2 --verify --wait`; guest B's
# rdmig-dest --serve draining one 4 KiB page at a time (--drain-depth 1
# --drain-chunk 4K, handed to its workers); both --dead-after 3; B's eth0
# delays what it sends 30 ms until the trouble is over (tc netem: each
# drain read a round trip of 30 ms), so the workload runs on B on pages
# still missing when:
#   stop  redis-server with known keys (lib/redis-migrate.sh's data set);
#         the migration's worker is SIGSTOPped 30 s (past its
#         --fetch-timeout 30 and --dead-after 3): the source pauses;
#         continued, the worker forgives itself the stop, finds the
#         connection closed, pauses and resumes;
#   lazy  the 32 MiB self-checking rdmig-workload, dumped with
#         `--lazy-dump --verify` (criu's page server feeds the source's
#         staging area; each unit's page tags go with its StageRegion); the
#         worker SIGSTOPped 10 s (past --dead-after 3): both agents pause;
#         continued, the worker reconnects (over the RC side channel) and
#         every staged unit is announced again with the new connection's
#         rkey;
#   down  the 32 MiB self-checking rdmig-workload; B's eth0 goes down 5 s,
#         comes back until the migration runs again, goes down 30 s, then
#         120 s.  It comes after `stop`: once B's link has been down, the
#         6.1 kernel's rxe of guest B answers no rdma_cm again (the agents
#         resume over their side channel), so no later migration could
#         start in this boot (docs/testing.md).
# Asserted per case (lib/linkstall-tap.sh's ls_case) on the agents' JSON and
# the workload's verdicts: every event began in post-copy and the
# migration ran again after it, done on both agents with every page moved
# (installed, or freed by redis: none left, none dropped without an
# event), the pauses counted and timed, every key and value (redis) or all
# the memory (workload) verified on B after the trouble and after the last
# page, the workload on B only.  About 7 minutes.  Guest side:
# lib/linkstall-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/linkstall-tap.sh
. "$(dirname "$0")/../lib/linkstall-tap.sh"
tap_plan 39

ls_setup redis-server redis-cli
ls_run 1200 RDMIG_SIZE_MB=32 RDMIG_REDIS_KEYS=8000 \
	"RDMIG_CASES='stop:stop:30:redis lazy:stop:10:wl:lazy down:outages:5,30,120:wl'"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"
# The source pauses while the worker is stopped; the worker, continued,
# finds its connection closed and pauses too (until it has a new one).
ls_case stop 1 1/1 26000 redis
# The source notices after 3 s of the 10 s stop; the worker's pause is short.
ls_case lazy 1 1/1 6000 wl
tap_like "$RUN_OUT" "linkstall: lazy: dest: .*resuming a lazy dump: [0-9]+ request" \
	"lazy: on resume the destination waited for every unit's StageRegion again"
tap_like "$RUN_OUT" "linkstall: lazy: dest: .*lazy dump: [0-9]+ of [0-9]+ units staged, .*every page read checked by its tag" \
	"lazy: the destination checked every page it read by the tag its StageRegion brought"
# At least 143 s paused: each outage less the 4 s it takes to notice.
ls_case down 3 3/3 143000 wl
tap_linkstall_diag
tap_done
