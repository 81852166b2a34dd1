#!/bin/bash
# Post-copy migration of a real process with unmodified CRIU 3.17:
# rdmig-workload (64 MiB, 2 threads rewriting and verifying it) is dumped
# with a plain `criu dump`, rdmig-source serves the images, rdmig-dest
# takes the place of `criu lazy-pages` for `criu restore --lazy-pages`,
# pages move by RDMA READ.  The workload verifies all its memory right
# after restore (while pages still move) and again after the last page,
# and must have kept rewriting it.  (a) one guest, (b) a host pair, (c)
# CRIU's own lazy migration of the same workload, for comparison; the
# times of (a) and (c) are printed as diagnostics (lib/criu-migrate.sh).
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/criu-migrate.sh
tap_plan 21

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-workload
rxe_require_cmds criu
rxe_secret "$top"
env_common="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s"

check_rdmig() {
	local out=$1 where=$2
	tap_like "$out" '^(\[source\] )?criu-migrate: before dump: generation [0-9]+' \
		"$where: the workload verified itself before the dump"
	tap_like "$out" 'criu-migrate: restored in ' "$where: criu restore --lazy-pages succeeded"
	tap_like "$out" 'criu-migrate: workload kept rewriting after restore' \
		"$where: the restored workload verified 64 MiB twice while rewriting it"
	tap_unlike "$out" 'CORRUPT|no report' "$where: never a wrong page"
	tap_like "$out" 'summary: status=ok .* left=0 ' "$where: rdmig-dest installed every lazy page"
	tap_like "$out" 'criu-migrate: rdmig-dest exited 0' "$where: rdmig-dest exits 0"
	tap_like "$out" 'migration m1 done: .* checkpoint released' "$where: the source saw Done"
}

# (a) One guest: both agents on the guest's rxe device; a slowed drain so
# that the workload's faults and the drain overlap.
tap_run --timeout 300 -- sh -c "$env_common RDMIG_DEST_ARGS='--drain-depth 2 --drain-chunk 64K' $mig both"
tap_is "$RUN_STATUS" 0 "one guest: criu dump + rdmig over RDMA + criu restore exits 0"
check_rdmig "$RUN_OUT$RUN_ERR" "one guest"
tap_like "$RUN_OUT" 'summary: .* lazy_faults=[1-9]' "one guest: faults were served while the drain ran"
times_rdmig=$(grep -h 'criu-migrate: times:' <<<"$RUN_OUT")
tap_diag "rdmig one guest: ${times_rdmig#*times: }"
tap_diag "$(grep -h 'summary:' <<<"$RUN_OUT" | sed 's/.*summary: //')"

# (b) A host pair: dump and rdmig-source in one guest, rdmig-dest and
# criu restore in the other, which sees nothing of the dump but what
# rdmig-source ships.
tap_run --timeout 400 --pair \
	--source "$env_common $mig source" \
	--dest "$env_common $mig dest"
tap_is "$RUN_STATUS" 0 "host pair: criu dump + rdmig over RDMA + criu restore exits 0"
check_rdmig "$RUN_OUT$RUN_ERR" "host pair"
tap_diag "rdmig host pair: $(grep -h 'criu-migrate: times:' <<<"$RUN_OUT" | sed 's/.*times: //')"

# (c) CRIU's own lazy migration of the same workload, one guest, TCP on loopback.
tap_run --timeout 300 -- sh -c "RDMIG_BUILD=$build $mig criu"
tap_is "$RUN_STATUS" 0 "criu lazy-pages: dump, lazy-pages, restore exit 0"
tap_like "$RUN_OUT" 'criu-migrate: workload kept rewriting after restore' \
	"criu lazy-pages: the restored workload verified 64 MiB twice while rewriting it"
tap_unlike "$RUN_OUT$RUN_ERR" 'CORRUPT|no report' "criu lazy-pages: never a wrong page"
tap_like "$RUN_OUT" 'criu-migrate: criu lazy-pages exited 0' "criu lazy-pages: the daemon exits 0"
tap_diag "criu lazy-pages one guest: $(grep -h 'criu-migrate: times:' <<<"$RUN_OUT" | sed 's/.*times: //')"
tap_diag "rdmig one guest: ${times_rdmig#*times: }"
tap_done
