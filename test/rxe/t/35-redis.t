#!/bin/bash
# A real application from Debian: redis-server (no persistence, listening on
# 127.0.0.1) holds 20000 keys of 2 KiB (about 40 MiB of values) in the source
# guest of a host pair; a plain `criu dump` (no client connection open, so no
# --tcp-established), rdmig-source serves it, rdmig-dest and `criu restore
# --lazy-pages` restore it in the dest guest over RDMA (rxe).  There, redis
# must answer PING, and every value is read back while pages still move and
# again after the drain: the digest of all keys and values, DBSIZE and DEBUG
# DIGEST must match the source's and the expected data.  The assertions
# read the guests' JSON lines (`redis-migrate: redis WHAT json: {...}`: the
# script's measures and rdmig-dest's summary line as JSON; neither agent
# runs an API here), and rdmig-source's log for its Done.  Guest side:
# lib/redis-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/redis-migrate.sh
keys=20000
tap_plan 15

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest
rxe_require_cmds criu redis-server redis-cli jq
rxe_secret "$top"
# The digest of the data set, computed here from the generator alone.
want=$(RDMIG_REDIS_KEYS=$keys "$mig" expect)
tap_diag "expected digest of $keys keys: $want"
# A slowed drain, so that the first full read overlaps the background transfer.
env_common="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_REDIS_KEYS=$keys RDMIG_REDIS_EXPECT=$want"

tap_run --timeout 420 --grace 60 --pair \
	--source "$env_common $mig source" \
	--dest "$env_common RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 64K' $mig dest"
out=$RUN_OUT$RUN_ERR
tap_is "$RUN_STATUS" 0 "host pair: redis dumped, served over RDMA, restored lazily: exits 0"
dd=$(guest_json "redis source" .debug_digest)
tap_json "redis source" ".dbsize == $keys" "source: redis holds $keys keys"
tap_json "redis source" ".digest == \"$want\"" "source: the loaded data has the expected digest"
tap_json "redis source" '.dump == 0' "source: criu dump of redis-server (listening socket, no client) succeeds"
tap_json "redis dest" '.restore == 0 and .pid > 0' "dest: criu restore --lazy-pages of redis-server succeeds"
tap_json "redis dest" '.ping == "PONG"' "dest: redis answers PING right after restore"
tap_json "redis dest" '.dest_running_at_start' "dest: the first full read began while rdmig-dest was still moving pages"
tap_json "redis dest" ".digest_moving == \"$want\"" \
	"dest: every value read while pages moved is right (the source's digest and the expected one)"
tap_json "redis dest" ".dbsize == $keys" "dest: DBSIZE matches the source ($keys)"
tap_json "redis dest" ".digest_after == \"$want\"" "dest: every value read after the drain is right"
tap_json "redis dest" "(.debug_digest | length) > 0 and .debug_digest == \"$dd\"" \
	"dest: redis's own DEBUG DIGEST matches the source's"
tap_json "redis summary" '.status == "ok" and .left == 0' "dest: rdmig-dest installed every lazy page (left=0)"
tap_json "redis summary" '.lazy_faults > 0' "dest: redis's faults were served by rdmig-dest ($(guest_json "redis summary" .lazy_faults))"
tap_json "redis dest" '.dest_exit == 0' "dest: rdmig-dest exits 0"
tap_like "$out" 'source: .*migration m1 done: .* checkpoint released' "source: rdmig-source saw Done"
tap_diag "$(grep -hE 'redis-migrate: (loaded|dumped|restored|digest while|times:|redis summary json)' <<<"$RUN_OUT")"
if [[ $tap_failed -gt 0 ]]; then
	tap_diag "--- output of the failed run:" "$(tail -n 80 <<<"$out")"
fi
tap_done
