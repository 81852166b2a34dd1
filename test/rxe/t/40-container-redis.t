#!/bin/bash
# redis-server with known keys in a runc container, between two soft-RoCE
# hosts through both agents (issue 13): guest A's container rdmig-redis
# (host network, no persistence) holds 20000 keys of 2 KiB loaded with
# redis-cli --pipe; `rdmigctl migrate --container rdmig-redis --to
# 192.0.2.2 --verify --wait` checkpoints it with runc (no client connected)
# and guest B's destination agent restores it with runc restore
# --lazy-pages.  On B every key and value is read back at once (while pages
# still move) and after the last page: both digests must equal the one
# computed here from the generator alone; `runc list` has it running on B
# only.  Guest side: lib/container-migrate.sh (redis-source, redis-dest).
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/container-migrate.sh
keys=20000
tap_plan 8

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl
rxe_require_cmds runc criu python3 redis-server redis-cli
rxe_agents_pki "$top"
want=$(RDMIG_REDIS_KEYS=$keys "$top/test/rxe/lib/redis-migrate.sh" expect)
tap_diag "expected digest of $keys keys: $want"
env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_REDIS_KEYS=$keys RDMIG_REDIS_EXPECT=$want"

tap_run --timeout 900 --grace 60 --pair --source "$env_common $mig redis-source" \
	--dest "$env_common $mig redis-dest"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "rdmigctl migrate --container (redis) --to: the pair run exits 0"
tap_like "$out" "^\\[source\\] handover: redis: source dbsize $keys, digest $want\$" \
	"guest A's container holds the $keys keys: the expected digest"
tap_like "$out" '^\[source\] handover: migration r1 \(source\): done$' "the report says done"
tap_like "$out" '^\[dest\] handover: redis: dest runc list: .*rdmig-redis=running' "runc list on guest B: running"
tap_unlike "$(grep -a '^\[source\] handover: redis: source runc list after' <<<"$RUN_OUT")" 'rdmig-redis' \
	"runc list on guest A: gone"
tap_like "$out" "^\\[dest\\] handover: redis: digest at once \\([a-z]+\\): $want\$" \
	"every key and value read back on B at once: the expected digest"
tap_like "$out" "^\\[dest\\] handover: redis: digest after the last page: $want, dbsize $keys\$" \
	"... and after the last page"
tap_diag "$(grep -h '^\[dest\] handover: redis: digest at once' <<<"$RUN_OUT")"
tap_like "$out" '^\[source\] handover:   restore: .*\(runc restore on the destination\)' \
	"the report gives runc's restore time"
tap_handover_diag
tap_done
