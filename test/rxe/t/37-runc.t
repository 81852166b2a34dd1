#!/bin/bash
# Post-copy migration of a runc container: Debian's runc 1.1.5 (driving
# criu 3.17) checkpoints a container running rdmig-workload (32 MiB,
# 2 threads rewriting and verifying it) with a plain `runc checkpoint`,
# rdmig-source serves the images, rdmig-dest takes the place of
# `criu lazy-pages` for `runc restore --lazy-pages`, pages move by RDMA
# READ, one guest (lib/runc-migrate.sh).  The restored workload verifies
# all its memory while pages still move and after the last one.
# (a) runc restore --work-path WORK, rdmig-dest -W WORK, a slowed drain so
# that faults and drain overlap; (b) neither given: runc's work path and
# rdmig-dest's socket both default to the image directory.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/runc-migrate.sh
tap_plan 22

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-workload
rxe_require_cmds runc criu python3
rxe_secret "$top"
env_common="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_SIZE_MB=32"

check_runc() {
	local out=$1 where=$2 sock=$3
	tap_like "$out" '^runc-migrate: container rdmig-wl running: status running' "$where: runc run -d started the container"
	tap_like "$out" '^runc-migrate: before checkpoint: generation [0-9]+' \
		"$where: the workload verified itself in the container before the checkpoint"
	tap_like "$out" '^runc-migrate: checkpointed in .* container state after it: gone' \
		"$where: runc checkpoint dumped the container and removed it"
	tap_like "$out" "^runc-migrate: rdmig-dest ready .* socket $sock\$" \
		"$where: rdmig-dest received the images and listens on $sock"
	tap_like "$out" '^runc-migrate: restored in .*: status running' \
		"$where: runc restore -d --lazy-pages succeeded, the container runs"
	tap_like "$out" '^runc-migrate: container workload kept rewriting after restore' \
		"$where: the restored workload verified 32 MiB twice while rewriting it"
	tap_unlike "$out" 'CORRUPT|no report|^runc-migrate: .*failed' "$where: never a wrong page, no failed step"
	tap_like "$out" 'summary: status=ok .* left=0 ' "$where: rdmig-dest installed every lazy page"
	tap_like "$out" '^runc-migrate: rdmig-dest exited 0' "$where: rdmig-dest exits 0"
	tap_like "$out" 'migration c1 done: .* checkpoint released' "$where: the source saw Done"
}

# (a) --work-path, slowed drain.
tap_run --timeout 240 -- sh -c "$env_common RDMIG_RUNC_WORK=1 RDMIG_DEST_ARGS='--drain-depth 2 --drain-chunk 64K' $mig"
tap_is "$RUN_STATUS" 0 "work path: runc checkpoint + rdmig over RDMA + runc restore --lazy-pages exits 0"
check_runc "$RUN_OUT$RUN_ERR" "work path" /tmp/rdmig-runc/work/lazy-pages.socket
tap_diag "$(grep -h 'runc-migrate: times:' <<<"$RUN_OUT" | sed 's/.*times: //')"
tap_diag "$(grep -h 'summary:' <<<"$RUN_OUT" | sed 's/.*summary: //')"

# (b) Defaults: runc's work path is the image path, rdmig-dest's -W is -D.
tap_run --timeout 240 -- sh -c "$env_common RDMIG_RUNC_WORK=0 $mig"
tap_is "$RUN_STATUS" 0 "image path only: runc checkpoint + rdmig over RDMA + runc restore --lazy-pages exits 0"
check_runc "$RUN_OUT$RUN_ERR" "image path only" /tmp/rdmig-runc/restore/lazy-pages.socket
tap_diag "$(grep -h 'runc-migrate: times:' <<<"$RUN_OUT" | sed 's/.*times: //')"
tap_done
