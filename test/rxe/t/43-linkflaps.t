#!/bin/bash
# Issue 12's link flaps through both agents (Tests), one migration over RDMA
# in a guest pair: guest A's rdmig-source with its API and the 32 MiB
# self-checking rdmig-workload, `rdmigctl migrate --pid P --to 192.0.2.2
# --verify --wait`; guest B's rdmig-dest --serve draining one 4 KiB page at
# a time; both --dead-after 3; B's eth0 delays what it sends 30 ms until
# the flaps are over.  Once the workload runs on B, B's eth0 goes down 2 s
# and comes back 20 times, each time until the migration runs again.  A
# boot of its own: after B's link went down, the 6.1 kernel's rxe of guest
# B answers no rdma_cm again (docs/testing.md), so the flaps cannot follow
# 42-linkdown.t's outages in one boot.
# Asserted (lib/linkstall-tap.sh's ls_case) on the agents' JSON and the
# workload's verdicts: every flap began in post-copy and the migration ran
# again after it, done on both agents with every page installed, the pauses
# counted and timed, all the memory verified on B after the flaps and after
# the last page, the workload on B only.  About 3 minutes.  Guest side:
# lib/linkstall-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/linkstall-tap.sh
. "$(dirname "$0")/../lib/linkstall-tap.sh"
tap_plan 13

# shellcheck disable=SC2119 # no commands beyond criu and jq
ls_setup
# The workload rewrites about 40 pages/s: the 20 flaps keep the link
# unusable a third of the time at most, and at 100 pages/s its own faults
# could bring every page before the last flap.
ls_run 900 RDMIG_SIZE_MB=32 "RDMIG_WL_ARGS='--delay-us 50000'" "RDMIG_CASES='flap:flaps:20x2:wl'"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"
ls_case flap 20 1/1 1000 wl
tap_linkstall_diag
tap_done
