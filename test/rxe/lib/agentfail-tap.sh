# shellcheck shell=bash
# The t/41-agentfail-*.t files' side (host) of lib/agentfail-migrate.sh:
# the pair run and the assertions on its JSON lines (`agentfail: json CASE
# WHAT {...}`, last of each in RUN_OUT).  Source it after tap.sh.
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/agentfail-migrate.sh

# af_setup: bails out without the binaries, criu or jq; makes the agents'
# certificates.
af_setup() {
	rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest \
		rdmigctl/rdmigctl test/rdmig-workload
	rxe_require_cmds criu jq
	rxe_agents_pki "$top"
}

# af_run ENV...: the pair run of RDMIG_CASES (in ENV) in one boot.  The
# workloads pause 20 ms after each page they rewrite (about 100 pages/s):
# at full speed their two threads starve the one-vCPU guest, whose script
# then took minutes per case (the second run of 41-agentfail-worker.t hit
# the 600 s limit), and their own faults bring every page in seconds.
# shellcheck disable=SC2154 # secrets: rxe_agents_pki's
af_run() {
	local env="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_WL_ARGS='--delay-us 20000' $*"
	tap_run --timeout 900 --grace 120 --pair --source "$env $mig source" \
		--dest "$env $mig dest"
}

# af_json CASE WHAT: that JSON object ({} when absent).
af_json() {
	local j
	j=$(grep -a "^\[[a-z]*\] agentfail: json $1 $2 " <<<"$RUN_OUT" | tail -n 1 |
		sed "s/^.*agentfail: json $1 $2 //")
	echo "${j:-{\}}"
}

# af_true CASE WHAT FILTER DESCRIPTION: jq's FILTER holds on that object.
af_true() {
	local j
	j=$(af_json "$1" "$2")
	jq -e "$3" >/dev/null 2>&1 <<<"$j"
	local st=$?
	tap_ok $st "$4"
	[[ $st -eq 0 ]] || tap_diag "$1 $2: $j" "wanted: $3"
}

# af_ends CASE: what every case ends with: done on both agents, every page
# moved and verified, the workload running on the destination only.
af_ends() {
	local c=$1
	af_true "$c" source '.state == "done" and .error == null' \
		"$c: done on the source agent (rdmigctl status $c --json)"
	af_true "$c" dest '.state == "done" and .error == null' "$c: done on the destination agent"
	af_true "$c" dest '.progress.pages_total > 0 and .progress.pages_remaining == 0 and
		.progress.pages_fetched == .progress.pages_total' "$c: every page moved"
	af_true "$c" verdict '.during and .after and .gen1 > .gen0 and .gen2 > .gen1' \
		"$c: the workload verified all its memory on the destination while pages moved and after the last, rewriting it all along"
	af_true "$c" verdict '.pid > 0 and (.state == "R" or .state == "S")' \
		"$c: ... running there (not stopped) when done"
	af_true "$c" srcwl '.state == "gone"' "$c: ... and not on the source"
}

# af_paused CASE [WHO]: the failure made the agent WHO (dest, or source)
# pause, in its report.  A worker's death pauses the source (its peer
# gone) while the destination agent's state stays postcopy/draining
# through the takeover (docs/api.md), which counts in "takeovers".
af_paused() {
	af_true "$1" "${2:-dest}" '.pause.count >= 1 and .pause.total_ms > 0 and .pause.reason == null' \
		"$1: the ${2:-dest} agent's report shows the pause(s): $(af_json "$1" "${2:-dest}" | jq -c .pause 2>/dev/null)"
}

# af_diag: the run's agentfail lines, and after a failed assertion the
# agents' errors and stderr.
# shellcheck disable=SC2154 # tap_failed: tap.sh's
af_diag() {
	tap_diag "$(grep -a 'agentfail: .*\(report:   \(pauses\|total\|downtime\)\|json [a-z0-9]* \(at\|hurt\) \|exited\|SIGKILLed\)' <<<"$RUN_OUT")"
	[[ $tap_failed -gt 0 ]] || return 0
	tap_diag "--- the run's agentfail lines:" "$(grep -a 'agentfail: ' <<<"$RUN_OUT" | tail -n 80)"
	tap_diag "--- the agents' errors:" "$(grep -aE '(source-[0-9]|dest): .* (error|warn): ' <<<"$RUN_OUT" | tail -n 40)"
	tap_diag "--- stderr:" "$(tail -n 20 <<<"$RUN_ERR")"
}
