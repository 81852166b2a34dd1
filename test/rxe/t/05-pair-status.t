#!/bin/bash
# shellcheck disable=SC2016 # the commands expand in the guest
# Pair-mode outcomes: the dest's failure is the run's status; a source that
# fails ends the run after the grace period, with the source's status; both
# are named on one line.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
tap_plan 6

tap_run --timeout 300 --grace 2 --pair --source 'sleep 300' -- 'echo dest ends; exit 4'
tap_is "$RUN_STATUS" 4 "failing dest: its status is the run's"
tap_like "$RUN_ERR" '^rxe: pair: dest command failed with status 4 \(run directory: ' "failing dest: named on stderr"
tap_one_line "$RUN_ERR" "failing dest: one line (the source is stopped quietly)"

tap_run --timeout 300 --grace 2 --pair --source 'exit 7' -- 'sleep 300'
tap_is "$RUN_STATUS" 7 "failing source: its status is the run's"
tap_like "$RUN_ERR" '^rxe: pair: dest command was stopped after the source failed; source command failed with status 7' "failing source: both sides named"
tap_cmp "$RUN_SECS" -lt 60 "failing source: the dest is stopped after the grace period, not the timeout"
tap_done
