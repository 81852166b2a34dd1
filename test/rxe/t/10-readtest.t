#!/bin/bash
# The project's own RDMA code over soft-RoCE: rdmig-readtest moves 64 MiB by
# one-sided RDMA READ in 4 KiB, 64 KiB and 1 MiB chunks and verifies every
# byte, first in one guest (rxe loopback), then between two guests.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
rt=$build/test/rxe/rdmig-readtest
tap_plan 9

if [[ ! -x $rt ]]; then
	echo "Bail out! $rt is not built (run make)"
	exit 1
fi

check_passes() {
	local out=$1 where=$2 chunk
	for chunk in '4.0 KiB' '64.0 KiB' '1.0 MiB'; do
		tap_like "$out" "read 64\.0 MiB in $chunk chunks.*every byte verified" \
			"$where: 64 MiB in $chunk chunks verified"
	done
	tap_like "$out" '^(\[dest\] )?readtest: OK' "$where: client reports OK"
	tap_unlike "$out" 'CORRUPT|mismatch' "$where: no corrupt chunk"
}

tap_run --timeout 300 -- sh -c "
	$rt --serve --once --addr \$RDMIG_ADDR --size 64M &
	$rt --connect \$RDMIG_ADDR --chunks 4K,64K,1M --depth 32 || exit 1
	wait \$!"
tap_is "$RUN_STATUS" 0 "one guest: client and server exit 0"
check_passes "$RUN_OUT" "one guest"
tap_diag "$(grep -E '^read ' <<<"$RUN_OUT")"

tap_run --timeout 400 --pair \
	--source "$rt --serve --once --addr \$RDMIG_ADDR --size 64M" \
	--dest "$rt --connect \$RDMIG_SOURCE_ADDR --chunks 4K,64K,1M --depth 32 --wait 60"
tap_is "$RUN_STATUS" 0 "host pair: both guests exit 0"
tap_like "$RUN_OUT" 'read 64\.0 MiB in 1\.0 MiB chunks.*every byte verified' \
	"host pair: 64 MiB verified across the link"
tap_like "$RUN_OUT$RUN_ERR" '\[source\].*reports: every byte verified' \
	"host pair: the source saw the client's verdict"
tap_diag "$(grep -E '^\[dest\] read ' <<<"$RUN_OUT")"
tap_done
