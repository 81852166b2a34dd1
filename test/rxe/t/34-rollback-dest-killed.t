#!/bin/bash
# Rollback after the destination is lost during post-copy, host pair, real
# CRIU 3.17, RDMA (rxe).  rdmig-source runs with its API; `rdmigctl migrate
# --pid` dumps rdmig-workload (64 MiB, 2 threads); in the dest guest
# `rdmig-dest --restore` restores it, with a drain slowed to one page at a
# time so that pages remain; then the destination is lost:
#   (kill) rdmig-dest gets kill -9;
#   (link) the dest guest's eth0 goes down (the agents' --dead-after 5).
# The source must notice, keep its checkpoint (state serving, files
# unchanged), refuse a rollback while the destination fetched; the restored
# workload on the destination must be killed, never run on with missing
# memory (kill: by rdmig-dest's guard process; link: by rdmig-dest once the
# source fell silent); `rdmigctl rollback` then restores the workload on the
# source (rolled_back), where it verifies all its memory and keeps
# rewriting it.  Never twice: without a destination agent to confirm that
# the workload is stopped there, a plain rollback is refused (409); the
# script, told by the destination side, rolls back with --force.  The
# assertions read the guests' JSON lines (`rollback-migrate: ID WHAT json:
# {...}`: the migration's resource from the source agent, rdmigctl --json's
# answers, the scripts' measures and verdicts); the agents' logs only for
# what their JSON does not carry: why the source lost its destination, and
# what `rdmig-dest --restore` (no API) noticed and did.
# Guest side: lib/rollback-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/rollback-migrate.sh
size=64
tap_plan 37

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds criu ip jq
rxe_agents_pki "$top"
env_common="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=$size RDMIG_DEAD_AFTER=5"

tap_run --timeout 540 --grace 120 --pair \
	--source "$env_common $mig source" \
	--dest "$env_common $mig dest"
# Per side, so that a failed assertion shows the lines of that side.
src=$(grep -a '^\[source\] ' <<<"$RUN_OUT")
dst=$(grep -a '^\[dest\] ' <<<"$RUN_OUT")
tap_is "$RUN_STATUS" 0 "host pair: both sides of both cases run to their end (exit 0)"

# check_case ID: the assertions both cases share.
check_case() {
	local id=$1
	tap_json "$id migrate" '.exit == 0 and .json.state == "dumping"' "$id: migrate --pid: the agent dumps"
	tap_json "$id serving" '.state == "serving" and .error == null' "$id: dumping -> serving"
	tap_json "$id dest" '.restored and .root_pid > 0' \
		"$id: rdmig-dest --restore restored the workload on the destination"
	tap_json "$id fetching rollback" '.exit == 1 and .json == null and (.error | test("is fetching"))' \
		"$id: a rollback while the destination fetches is refused"
	tap_json "$id fetching" '.state == "serving" and .error == null' "$id: ... and changes nothing (serving)"
	tap_json "$id dest" '.rss_mib != null and .rss_mib < .size_mib' \
		"$id: the destination was lost with pages still remaining ($(guest_json "$id dest" .rss_mib) of $size MiB resident)"
	tap_json "$id noticed" '.noticed' "$id: the source noticed the lost destination ($(guest_json "$id noticed" .after_s) s)"
	tap_json "$id lost" '.state == "serving" and .error == null' \
		"$id: the source keeps the migration (state serving, no error) for a retry or a rollback"
	tap_json "$id checkpoint" '.files > 0 and .unchanged' "$id: the source keeps its checkpoint unchanged"
	tap_json "$id dest" '.killed and (.left | not)' \
		"$id: the restored workload on the destination was killed, never ran on with missing pages"
	tap_json "$id plain rollback" '.exit == 1 and .json == null and
		(.error | test("no destination agent can tell whether the workload is stopped there"))' \
		"$id: after the loss, a rollback without force is refused: no destination agent to confirm"
	tap_json "$id forced rollback" ".exit == 0 and .json.id == \"$id\"" "$id: rdmigctl rollback --force is accepted"
	tap_json "$id final" '.state == "rolled_back" and .error == null' "$id: ... -> rolled_back"
	tap_json "$id verdict" '.check1 and .check2 and .gen1 >= .gen0 and .gen2 > .gen1' \
		"$id: the rolled back workload verifies $size MiB twice and its generation advances: $(guest_obj "$id verdict")"
	tap_like "$src" "source: .*migration $id rolled back: restored from" "$id: the source logs the rollback"
}

check_case r-kill
tap_like "$src" 'source: .*destination lost \(.*\); keeping the checkpoint for a retry or a rollback' \
	"r-kill: the source logs the lost destination and keeps the checkpoint"
check_case r-link
tap_like "$src" 'source: .*the destination fell silent' "r-link: the source's keepalive timeout found the silent destination"
tap_like "$dst" 'dest: .*the source has been silent for [0-9]+ s|dest: .*connection to the source lost' \
	"r-link: rdmig-dest noticed the lost source"
tap_like "$dst" 'dest: .*lazy pages not installed: stopping the process' "r-link: rdmig-dest stopped the process that still needed pages"
tap_json "r-link dest" '.dest_exit == 1' "r-link: rdmig-dest exits 1"
tap_unlike "$src" '^\[source\] rollback-migrate: (workload: CORRUPT|no report|r-[a-z]+: FAILED)' \
	"the source: never a wrong page, every step ran"

tap_diag "$(grep -haE 'rollback-migrate: r-[a-z]+ (dest|noticed|verdict) json: ' <<<"$RUN_OUT")"
for id in r-kill r-link; do
	tap_diag "$id: the source after the loss: $(guest_json "$id lost" '"\(.state), \(.progress.pages_remaining) of \(.progress.pages_total) pages remaining"')"
done
if [[ $tap_failed -gt 0 ]]; then
	tap_diag "--- the failed run, rollback-migrate lines:" "$(grep -a 'rollback-migrate: ' <<<"$RUN_OUT")"
	tap_diag "--- the agents' errors:" "$(grep -aE '(source|dest): .* (error|warn): ' <<<"$RUN_OUT" | tail -n 40)"
	tap_diag "--- stderr:" "$(tail -n 20 <<<"$RUN_ERR")"
fi
tap_done
