#!/bin/bash
# shellcheck disable=SC2016 # the commands expand in the guest
# Failure modes end in one clear line and a non-zero status (c): a command
# that outlives --timeout, a guest whose setup fails, a guest kernel panic.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
tap_plan 10

# The limit counts the guest's boot too: leave it time to print before the limit.
tap_run --timeout 25 -- 'echo started; sleep 300; echo never'
tap_is "$RUN_STATUS" 124 "timeout: status 124"
tap_like "$RUN_ERR" '^rxe: guest timed out after 25 s \(console: /.*/console\.log\)$' "timeout: the message names the limit and the console"
tap_one_line "$RUN_ERR" "timeout: one line on stderr"
tap_cmp "$RUN_SECS" -le 31 "timeout: the run stops soon after the limit"
tap_is "$RUN_OUT" "started" "timeout: output before the timeout is kept"
console=$(sed -n 's/.*(console: \(.*\))$/\1/p' <<<"$RUN_ERR")
[[ -s $console ]]
tap_ok $? "timeout: the console log named is kept"

# An MTU veth refuses makes the guest's network setup fail.
tap_run --timeout 120 --mtu 70000 -- true
tap_like "$RUN_ERR" '^rxe: guest setup failed: cannot create the veth pair veth0 \(console: ' "setup failure is reported with its reason"
tap_one_line "$RUN_ERR" "setup failure: one line, status $RUN_STATUS"

tap_run --timeout 120 -- 'echo c >/proc/sysrq-trigger'
tap_like "$RUN_ERR" '^rxe: guest kernel panic: sysrq triggered crash' "kernel panic is reported"
tap_one_line "$RUN_ERR" "kernel panic: one line, status $RUN_STATUS"
tap_done
