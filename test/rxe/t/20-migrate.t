#!/bin/bash
# Post-copy migration of a 64 MiB synthetic process over real soft-RoCE:
# rdmig-source serves the images, rdmig-dest fetches by one-sided RDMA READ
# while 4 threads of rdmig-standin fault, with a slowed drain so faults and
# drain overlap; every byte is verified.  Faults go on their own queue pair
# (the fault lane); a source that offers none (--one-lane, as an older
# source) still migrates over one.  The host pair's drain runs over four
# queue pairs (--drain-qps 4, FEAT_DRAIN_QPS).  Then the failure cases: a wrong
# secret gets no memory, and a source killed mid-migration leaves the
# process stopped, never running on zero pages.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/migrate.sh
tap_plan 28

for b in source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-standin test/rdmig-mkimage; do
	if [[ ! -x $build/$b ]]; then
		echo "Bail out! $build/$b is not built (run make)"
		exit 1
	fi
done
secrets=$(mktemp -d "$top/.cache/rxe/secrets.XXXXXX")
trap 'rm -rf "$secrets"' EXIT
head -c 32 /dev/urandom >"$secrets/good" && chmod 600 "$secrets/good"
head -c 32 /dev/urandom >"$secrets/bad" && chmod 600 "$secrets/bad"
env_common="RDMIG_BUILD=$build RDMIG_SECRET=$secrets/good RDMIG_DEST_ARGS='--drain-depth 2 --drain-chunk 64K'"

check_ok() {
	local out=$1 where=$2
	tap_like "$out" 'pages 16384 verified, mismatches 0' "$where: every byte of 64 MiB verified"
	tap_like "$out" 'summary: status=ok .* left=0 ' "$where: rdmig-dest installed every lazy page"
	tap_like "$out" 'lazy_faults=[1-9]' "$where: faults were served while the drain ran"
	tap_like "$out" 'migration m1 done: .* checkpoint released' "$where: the source saw Done"
}

# 1. One guest: both agents on the guest's rxe device.
tap_run --timeout 400 -- sh -c "$env_common RDMIG_STANDIN_ARGS='--access random' $mig both"
tap_is "$RUN_STATUS" 0 "one guest: migration over RDMA exits 0"
check_ok "$RUN_OUT$RUN_ERR" "one guest"
tap_like "$RUN_OUT$RUN_ERR" 'source .*: fault lane up' "one guest: the faults had their own queue pair"
tap_diag "$(grep -hE 'summary:|standin: pid' <<<"$RUN_OUT$RUN_ERR")"

# 2. A host pair: the source guest serves, the dest guest restores, the
# drain over four queue pairs.
tap_run --timeout 500 --pair \
	--source "$env_common $mig source" \
	--dest "RDMIG_BUILD=$build RDMIG_SECRET=$secrets/good RDMIG_DEST_ARGS='--drain-depth 2 --drain-chunk 64K --drain-qps 4' $mig dest"
tap_is "$RUN_STATUS" 0 "host pair: migration over RDMA exits 0"
check_ok "$RUN_OUT$RUN_ERR" "host pair"
tap_like "$RUN_OUT$RUN_ERR" 'source .*: fault lane up' "host pair: the faults had their own queue pair"
tap_unlike "$RUN_OUT$RUN_ERR" 'no drain QP|cannot connect drain QP' "host pair: every extra drain QP was made"
tap_like "$RUN_OUT$RUN_ERR" 'lanes: .* drain_qps=4' "host pair: the drain's READs went over four queue pairs"
tap_diag "$(grep -hE 'summary:|standin: pid' <<<"$RUN_OUT$RUN_ERR")"

# 3. A wrong secret: refused before any memory region or range is sent.
tap_run --timeout 300 --grace 3 --pair \
	--source "RDMIG_BUILD=$build RDMIG_SECRET=$secrets/good RDMIG_SIZE=8M RDMIG_SOURCE_ARGS='--handshake-timeout 5' $mig source" \
	--dest "RDMIG_BUILD=$build RDMIG_SECRET=$secrets/bad RDMIG_SIZE=8M $mig dest"
tap_cmp "$RUN_STATUS" -ne 0 "wrong secret: the migration fails"
tap_like "$RUN_OUT$RUN_ERR" 'refused our authentication' "wrong secret: the dest says it was refused"
tap_like "$RUN_OUT$RUN_ERR" 'received 0 memory regions and 0 range tables' \
	"wrong secret: no rkey or address reached the dest"
tap_unlike "$RUN_OUT$RUN_ERR" 'destination authenticated' "wrong secret: the source never exposed memory"

# 4. The source killed mid-migration: the process is stopped, never sees zeros.
# (A source without resume, as an older one: with it the destination would
# pause and wait for the source to come back, 39-pause.t.)
tap_run --timeout 400 -- sh -c "
	RDMIG_BUILD=$build RDMIG_SECRET=$secrets/good RDMIG_SIZE=64M RDMIG_SOURCE_ARGS=--no-resume \
	RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 4K --fetch-timeout 20' $mig both &
	m=\$!
	for i in \$(seq 300); do pgrep -x rdmig-standin >/dev/null && break; sleep 0.2; done
	sleep 0.3
	pkill -KILL -x rdmig-source
	wait \$m"
tap_cmp "$RUN_STATUS" -ne 0 "source killed: the migration fails"
tap_unlike "$RUN_OUT$RUN_ERR" 'MISMATCH|mismatches [1-9]' "source killed: the process never read a wrong byte"
tap_like "$RUN_OUT$RUN_ERR" 'source lost|connection to the source lost|silent|gone' \
	"source killed: rdmig-dest reports the lost source"
tap_like "$RUN_OUT$RUN_ERR" 'summary: status=failed' "source killed: rdmig-dest ends failed"
tap_diag "$(grep -hE 'summary:|standin:|error' <<<"$RUN_OUT$RUN_ERR" | tail -n 8)"

# 5. A source without the fault lane (as before FEAT_FAULT_LANE): one queue pair.
tap_run --timeout 400 -- sh -c "$env_common RDMIG_SOURCE_ARGS='--one-lane' RDMIG_STANDIN_ARGS='--access random' $mig both"
tap_is "$RUN_STATUS" 0 "one lane: migration over RDMA exits 0"
check_ok "$RUN_OUT$RUN_ERR" "one lane"
tap_unlike "$RUN_OUT$RUN_ERR" 'fault lane' "one lane: no fault lane was offered or made"
tap_diag "$(grep -hE 'summary:|standin: pid' <<<"$RUN_OUT$RUN_ERR")"
tap_done
