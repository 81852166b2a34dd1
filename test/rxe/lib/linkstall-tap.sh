# shellcheck shell=bash
# The t/42-linkdown.t, 43-linkflaps.t and 44-precopy-linkdown.t files'
# side (host) of lib/linkstall-migrate.sh: the pair run and the assertions
# on its output (RUN_OUT).  Source it after tap.sh.  "Every
# page moved" is not pages_fetched == pages_total here, which does not hold
# for a workload that frees memory in post-copy: redis's freed pages are never fetched (docs/api.md: pages_fetched counts
# pages installed), and the worker drops them from what is left to move on
# the REMOVE/UNMAP events.

top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/linkstall-migrate.sh

# ls_setup [CMD...]: bails out without the binaries, criu, jq or CMDs;
# makes the agents' certificates.
ls_setup() {
	rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest \
		rdmigctl/rdmigctl test/rdmig-workload
	rxe_require_cmds criu jq "$@"
	rxe_agents_pki "$top"
}

# ls_run SECS ENV...: the pair run of the cases in ENV (RDMIG_CASES, words
# as the guests' shell reads them), at most SECS.
# shellcheck disable=SC2154 # secrets: rxe_agents_pki's
ls_run() {
	local secs=$1 env
	shift
	env="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki $*"
	tap_run --timeout "$secs" --grace 60 --pair --source "$env $mig source" --dest "$env $mig dest"
}

# ls_pages ID WL: every page moved, from the destination's JSON and its
# worker's summary: done, the worker's verdict ok with no process failed
# (a process killed or gone has its missing pages counted as dropped too),
# nothing left to move, every lazy page either installed or freed by the
# workload (none dropped without an event), and the source's JSON
# agreeing; for the workload (wl), which frees nothing, every page
# installed.
ls_pages() {
	local id=$1 wl=$2 d s sum ok=0
	d=$(grep -a " $id dest json: " <<<"$RUN_OUT" | tail -n 1 | sed "s/.* $id dest json: //")
	s=$(grep -a " $id source json: " <<<"$RUN_OUT" | tail -n 1 | sed "s/.* $id source json: //")
	sum=$(grep -a " $id dest summary json: " <<<"$RUN_OUT" | tail -n 1 | sed "s/.* $id dest summary json: //")
	jq -e -n --argjson d "${d:-null}" --argjson s "${s:-null}" --argjson m "${sum:-null}" --arg wl "$wl" '
		$d.progress as $p | $d.state == "done" and $m.status == "ok" and $m.failed == 0 and
		$p.pages_total >= 1024 and $p.pages_remaining == 0 and
		$p.pages_fetched + $m.dropped == $p.pages_total and $m.lazy == $p.pages_total and
		$m.dropped_no_vma == 0 and $m.left == 0 and
		($m.dropped == 0 or $m.removes + $m.unmaps > 0) and
		($wl != "wl" or $m.dropped == 0) and
		$s.progress.pages_total == $p.pages_total and
		$s.progress.pages_fetched == $p.pages_fetched' >/dev/null 2>&1 || ok=1
	tap_ok $ok "$id: every page moved: $(jq -r -n --argjson d "${d:-null}" --argjson m "${sum:-null}" \
		'"\($d.progress.pages_fetched) installed + \($m.dropped) freed by the workload of \($d.progress.pages_total), \($d.progress.pages_remaining) remaining, \($m.dropped_no_vma) dropped without an event, worker \($m.status), \($m.failed) process(es) failed"' 2>/dev/null)"
	[[ $ok -eq 0 ]] || tap_diag "dest progress: $(jq -c .progress <<<"${d:-null}" 2>/dev/null)" \
		"source progress: $(jq -c .progress <<<"${s:-null}" 2>/dev/null)" "worker summary: $sum"
}

# ls_case ID EVENTS PAUSES PAUSED WL: one case of lib/linkstall-migrate.sh:
# EVENTS outages, flaps or stops each started in post-copy and ended with
# the migration running again; done on both agents (JSON) with every page
# moved (ls_pages); each agent's JSON counts at least PAUSES pauses (a
# word: "SRC/DEST") lasting at least PAUSED ms in all on the side that
# paused most; the workload WL (wl or redis) verified after the trouble and
# after the last page, never wrong; it runs on the destination only.
ls_case() {
	local id=$1 events=$2 pauses=$3 paused=$4 wl=$5 n bad=0 who c pt tot=0
	for n in $(seq "$events"); do
		grep -qaE "linkstall: $id: event $n: .*: before (postcopy|draining), at its end [a-z]+, then .*(postcopy|draining|done), pauses count=" <<<"$RUN_OUT" || bad=$((bad + 1))
	done
	tap_is "$bad" 0 "$id: each of the $events events started in post-copy and the migration ran again after it"
	[[ $bad -eq 0 ]] || tap_diag "$(grep -a "linkstall: $id: event" <<<"$RUN_OUT")"
	tap_like "$RUN_OUT" "linkstall: $id: rdmigctl migrate exited 0" "$id: rdmigctl migrate --wait exited 0"
	for who in source dest; do
		tap_is "$(guest_json "$id $who" .state)" "done" "$id: the $who agent's JSON says done"
		c=$(guest_json "$id $who" .pause.count)
		if [[ $who == source ]]; then n=${pauses%/*}; else n=${pauses#*/}; fi
		tap_cmp "${c:-x}" -ge "$n" "$id: the $who agent's JSON counts the pauses: ${c:-none} (total $(guest_json "$id $who" .pause.total_ms) ms), at least $n"
		pt=$(guest_json "$id $who" .pause.total_ms)
		[[ ${pt:-0} -gt $tot ]] && tot=$pt
	done
	ls_pages "$id" "$wl"
	tap_cmp "$tot" -ge "$paused" "$id: the pauses' total time in the JSON covers the trouble ($tot ms, at least $paused)"
	tap_like "$RUN_OUT" "linkstall: $id: verified after the trouble \([a-z]+\): OK" \
		"$id: the $wl workload verified all its memory on the destination after the trouble"
	tap_like "$RUN_OUT" "linkstall: $id: verified after the last page: OK" "$id: ... and after the last page"
	tap_unlike "$RUN_OUT" "linkstall: $id: .*(CORRUPT|MISMATCH|no report)" "$id: never a wrong page"
	[[ $(grep -a "linkstall: $id: left on the source: " <<<"$RUN_OUT" | sed 's/.*: //') == 0 &&
		$(grep -a "linkstall: $id: running on the destination: " <<<"$RUN_OUT" | sed 's/.*: //') == 1 ]]
	tap_ok $? "$id: the workload runs on the destination only (none left on the source)"
}
