#!/bin/bash
# redis-server (Debian's, no persistence, listening on 127.0.0.1, in its own
# pid namespace) migrated through both agents as a process:
#   redis-agents.sh source   guest A: rdmig-source with its API, redis
#       loaded with RDMIG_REDIS_KEYS keys of 2 KiB, `rdmigctl migrate --pid
#       --to $RDMIG_PEER_ADDR --verify $RDMIG_CTL_ARGS --wait` (a lazy dump
#       by default; --precopy=N|auto for pre-copy rounds).
#   redis-agents.sh dest     guest B: rdmig-dest --serve; once redis runs
#       there, every key and value is read back while pages still move and
#       again after the last one, and must give RDMIG_REDIS_EXPECT.
# The guests meet in RDMIG_SHARED_DIR ("migrated": the source's status,
# "verified": the destination's verdict).  Environment as
# handover-migrate.sh's: RDMIG_BUILD, RDMIG_PKI, RDMIG_ADDR,
# RDMIG_PEER_ADDR, RDMIG_SHARED_DIR, RDMIG_ID, RDMIG_CTL_ARGS,
# RDMIG_SOURCE_ARGS; and RDMIG_REDIS_KEYS, RDMIG_REDIS_EXPECT.
# shellcheck source-path=SCRIPTDIR disable=SC2034 # B, pki, GUEST_TAG: guest.sh's
set -u
role=${1:?usage: redis-agents.sh source|dest}
B=${RDMIG_BUILD:?}
pki=${RDMIG_PKI:?}
shared=${RDMIG_SHARED_DIR:?}
id=${RDMIG_ID:-ra1}
top=/tmp/rdmig-redis-agents
GUEST_TAG=redis-agents
export RDMIG_CRIU_DIR=$top
# shellcheck source=redis-migrate.sh
RDMIG_REDIS_LIB=1 . "$(dirname "${BASH_SOURCE[0]}")/redis-migrate.sh" "$role"
# shellcheck source=guest.sh
. "$(dirname "${BASH_SOURCE[0]}")/guest.sh"

source_side() {
	local sock=$top/source.sock spid rpid d0 st=0
	rm -rf "$top" && mkdir -p "$top"
	# shellcheck disable=SC2086 # RDMIG_SOURCE_ARGS: words
	if ! start_source_agent "$sock" --verify ${RDMIG_SOURCE_ARGS:-}; then
		say "rdmig-source did not start"
		echo 1 >"$shared/migrated"
		return 1
	fi
	if ! redis_launch; then
		echo 1 >"$shared/migrated"
		return 1
	fi
	rpid=$(redis_pid)
	say "loaded: $(gen resp | rcli --pipe 2>&1 | tail -n 1)"
	d0=$(digest before)
	say "source dbsize $(rcli DBSIZE), digest $d0, rss $(rss_mib "$rpid") MiB"
	wait_no_clients || say "a client is still connected"
	wait_dest_api
	# shellcheck disable=SC2086 # RDMIG_CTL_ARGS: words
	"$ctl" --socket "$sock" migrate --pid "$rpid" --to "$RDMIG_PEER_ADDR" --id "$id" \
		--transport rdma --verify ${RDMIG_CTL_ARGS:-} --wait 2>&1 | sed -u 's/^/handover: /'
	st=${PIPESTATUS[0]}
	say "rdmigctl migrate exited $st"
	say "json: $(mig_json "$id" "$sock")"
	echo "$st" >"$shared/migrated"
	wait_file "$shared/verified" 600 || say "no verdict from the destination"
	say "source redis after the migration: $(live "$rpid" && echo running || echo gone)"
	kill -KILL "$rpid" 2>/dev/null
	kill -TERM "$spid"
	wait "$spid"
	sed 's/^/source: /' "$top/source.log"
	return "$st"
}

dest_side() {
	local sock=$top/dest.sock dpid d1 d2 s st=0
	rm -rf "$top" && mkdir -p "$top"
	# The migration's request carries --verify: the agent gives its workers their options.
	if ! start_dest_agent "$sock"; then
		say "rdmig-dest --serve did not start"
		echo 1 >"$shared/verified"
		return 1
	fi
	s=$(wait_runs_here "$id" "$sock")
	say "the destination agent's state: ${s:-none}"
	if wait_ping 60; then
		d1=$(digest during) || st=1
		say "digest at once ($s): ${d1:-none}"
	else
		say "redis does not answer PING on the destination"
		st=1
	fi
	wait_file "$shared/migrated" 900 || say "no word from the source"
	[ "$(cat "$shared/migrated" 2>/dev/null)" = 0 ] || st=1
	wait_state "$id" "done" 300 "$sock" >/dev/null || st=1
	d2=$(digest after) || st=1
	say "digest after the last page: ${d2:-none}, dbsize $(rcli DBSIZE)"
	[ "${d1:-}" = "$RDMIG_REDIS_EXPECT" ] && [ "${d2:-}" = "$RDMIG_REDIS_EXPECT" ] || st=1
	[ $st -eq 0 ] && say "every key and value read back equal, twice"
	say "dest json: $(mig_json "$id" "$sock")"
	echo "$st" >"$shared/verified"
	rcli SHUTDOWN NOSAVE >/dev/null 2>&1
	kill -TERM "$dpid"
	wait "$dpid"
	sed 's/^/dest: /' "$top/dest.log"
	return $st
}

case $role in
source) source_side ;;
dest) dest_side ;;
*)
	echo "redis-agents.sh: unknown role $role" >&2
	exit 2
	;;
esac
