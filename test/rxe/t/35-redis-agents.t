#!/bin/bash
# redis-server (Debian's) through both agents as a process, four times: the
# default lazy dump, then `--precopy 1`, `--precopy 3` and `--precopy auto`
# (issue 10's tests: every page verified by a real application in each
# mode).  Guest A loads 10000 keys of 2 KiB (about 20 MiB of values) into
# redis in its own pid namespace and runs `rdmigctl migrate --pid --to
# 192.0.2.2 --verify --wait` against its rdmig-source; guest B's rdmig-dest
# --serve restores it, and every key and value is read back there while
# pages still move and again after the last one: the digest of all keys
# and values and DBSIZE must be the expected ones.  The pre-copy runs go
# through the destination's copies of the rounds (FEAT_ROUNDS): `--precopy
# 1` with the default wait (at most 1 s after one round, then RoundsStop),
# `3` and `auto` with rdmig-source --rounds-wait 30000, where the idle
# redis's rounds are copied whole and its pages are read from the copies
# (the destination's progress.pages_local).  Guest side:
# lib/redis-agents.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/redis-agents.sh
keys=10000
tap_plan 26

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl
rxe_require_cmds criu redis-server redis-cli
rxe_agents_pki "$top"
want=$(RDMIG_REDIS_KEYS=$keys "$top/test/rxe/lib/redis-migrate.sh" expect)
tap_diag "expected digest of $keys keys: $want"

for run in lazy 1 3 auto; do
	id=ra$run
	env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_ID=$id"
	env_common="$env_common RDMIG_REDIS_KEYS=$keys RDMIG_REDIS_EXPECT=$want"
	lbl="redis, lazy dump"
	if [ "$run" != lazy ]; then
		lbl="redis, --precopy $run"
		env_common="$env_common RDMIG_CTL_ARGS=--precopy=$run"
		[ "$run" != 1 ] && env_common="$env_common RDMIG_SOURCE_ARGS=--rounds-wait=30000"
	fi
	tap_run --timeout 600 --grace 60 --pair \
		--source "$env_common $mig source" \
		--dest "$env_common $mig dest"
	out="$RUN_OUT$RUN_ERR"
	tap_is "$RUN_STATUS" 0 "$lbl: rdmigctl migrate --pid --to: the pair run exits 0"
	tap_like "$out" "^\\[source\\] redis-agents: source dbsize $keys, digest $want," \
		"$lbl: guest A's redis holds the $keys keys: the expected digest"
	tap_like "$out" "^\\[source\\] handover: migration $id \\(source\\): done$" "$lbl: the report says done"
	tap_like "$out" "^\\[dest\\] redis-agents: digest at once \\([a-z]+\\): $want\$" \
		"$lbl: every key and value read back on B at once: the expected digest"
	tap_like "$out" "^\\[dest\\] redis-agents: digest after the last page: $want, dbsize $keys\$" \
		"$lbl: ... and after the last page"
	json=$(grep -h '^\[source\] redis-agents: json: ' <<<"$RUN_OUT" | tail -n 1)
	djson=$(grep -h '^\[dest\] redis-agents: dest json: ' <<<"$RUN_OUT" | tail -n 1)
	rounds=$(grep -o '"dirty_pages_per_s"' <<<"$json" | wc -l)
	local_pages=$(sed -n 's/.*"pages_local":\([0-9]*\).*/\1/p' <<<"$djson")
	case $run in
	lazy)
		[[ $json == *'"lazy_dump":true'* && $json == *'"precopy":null'* ]]
		tap_ok $? "$lbl: the source's JSON says a lazy dump, no pre-copy"
		;;
	auto)
		[[ $json == *'"requested":"auto"'* && $rounds -ge 2 && $rounds -le 8 ]]
		tap_ok $? "$lbl: $rounds rounds in the source's JSON"
		;;
	*)
		[[ $json == *"\"requested\":$run"* && $rounds -eq $run ]]
		tap_ok $? "$lbl: $rounds rounds in the source's JSON"
		;;
	esac
	if [ "$run" = 3 ] || [ "$run" = auto ]; then
		[[ -n $local_pages && $local_pages -gt 0 ]]
		tap_ok $? "$lbl: ${local_pages:-no} pages read from the destination's copies of the rounds"
	fi
	tap_diag "$lbl: pages_local ${local_pages:-null}; $(grep -h '^\[source\] handover:   \(downtime\|dump\|restore\|round [0-9]\|final dump\):' <<<"$RUN_OUT" | sed 's/^\[source\] handover: *//' | tr -s ' ' | paste -sd ';' -)"
done
tap_done
