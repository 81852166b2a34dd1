#!/bin/bash
# The post-copy variants with real CRIU 3.17 across a host pair: right
# after `criu restore --lazy-pages`, while pages still move over RDMA, the
# restored rdmig-workload (32 MiB, 2 threads rewriting it)
#   fork:    forks a child that verifies every page as it was at the fork
#            (COW-shared ones and missing ones, faulted through the child's
#            userfaultfd from the FORK event) while the parent rewrites;
#   mremap:  moves an eighth of its memory elsewhere and verifies it there;
#   madvise: MADV_DONTNEEDs a sixteenth (zeros, then refilled) and unmaps
#            another, then verifies the rest.
# rdmig-dest must follow the event (its summary counts it), install every
# lazy page (left=0) and exit 0; the workload's verdict on the variant and
# its full check after the last page must be OK, never CORRUPT.  One boot
# of the pair runs the three migrations in turn (lib/criu-migrate.sh with
# RDMIG_VARIANT), each on its own port.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/criu-migrate.sh
variants="fork mremap madvise"
tap_plan 24

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest test/rdmig-workload
rxe_require_cmds criu
if ! "$build/test/rdmig-workload" --help | grep -q mremap; then
	echo "Bail out! $build/test/rdmig-workload has no variants: rebuild"
	exit 1
fi
rxe_secret "$top"

# Each side runs the variants in turn.  A variant's files on the shared
# directory (generation, dump time) are its own: the source may start the
# next one before the dest has read them.  The variant must happen while
# pages still move, so nothing may bring them all in first: the drain
# moves one page per READ, one READ at a time, each fault fetches its own
# page only, and the workload pauses 2 ms after each page it rewrites.
# With 16 KiB drain READs and 4-page read-ahead, a CI rehearsal saw the fork and
# the mremap find every page in: the two rewriting threads had pulled the
# rest by their own faults before the script asked for the variant.
side() {
	cat <<EOF
export RDMIG_BUILD=$build RDMIG_SECRET=$secrets/s RDMIG_SIZE_MB=32
export RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 4K --readahead 1' RDMIG_WL_ARGS='--delay-us 2000'
port=7520
for v in $variants; do
	port=\$((port + 1))
	echo "variant \$v begin"
	mkdir -p "\$RDMIG_SHARED_DIR/\$v"
	RDMIG_VARIANT=\$v RDMIG_PORT=\$port RDMIG_SHARED_DIR=\$RDMIG_SHARED_DIR/\$v $mig $1
	echo "variant \$v status \$?"
done
EOF
}
tap_run --timeout 900 --pair --source "$(side source)" --dest "$(side dest)"
tap_is "$RUN_STATUS" 0 "host pair: three migrations ran"
out=$RUN_OUT$'\n'$RUN_ERR

# section SIDE V: that side's lines of variant V, unprefixed.
section() {
	awk -v b="[$1] variant $2 begin" -v e="[$1] variant $2 status" -v p="[$1] " '
		index($0, b) == 1 { on = 1; next }
		index($0, e) == 1 { on = 0 }
		on && index($0, p) == 1 { print substr($0, length(p) + 1) }' <<<"$RUN_OUT"
}

# The summary's order: status tasks forks ... left remaps removes unmaps ...
declare -A counter=(
	[fork]='summary: status=ok .*forks=[1-9][0-9]* .* left=0 '
	[mremap]='summary: status=ok .* left=0 remaps=[1-9]'
	[madvise]='summary: status=ok .* left=0 remaps=[0-9]+ removes=[1-9][0-9]* unmaps=[1-9]'
)
done_n=0
for v in $variants; do
	d=$(section dest "$v")
	s=$(section source "$v")
	tap_like "$RUN_OUT" "^\[dest\] variant $v status 0\$" "$v: criu dump + rdmig over RDMA + criu restore + checks exit 0"
	tap_like "$d" "^workload: $v OK" "$v: the workload's verdict on the variant is OK"
	n=$(sed -n "s/^workload: $v .*(\([0-9]*\) pages were not in yet).*/\1/p" <<<"$d" | head -n 1)
	tap_cmp "${n:-0}" -gt 0 "$v: it happened while pages were still moving ($n pages not in)"
	tap_like "$d" "${counter[$v]}" \
		"$v: rdmig-dest followed the event and installed every lazy page (/${counter[$v]}/)"
	tap_like "$d" '^workload: OK verified [0-9]+ MiB' "$v: full check after the last page is OK"
	tap_like "$d" '^criu-migrate: workload kept rewriting after restore' \
		"$v: the workload kept rewriting through it"
	tap_like "$d" '^criu-migrate: rdmig-dest exited 0' "$v: rdmig-dest exits 0"
	grep -qE 'migration m1 done: .* checkpoint released' <<<"$s" && done_n=$((done_n + 1))
	tap_diag "$v: $(grep -hE "^workload: ($v|fault latency)" <<<"$d" | cut -c1-230)"
	tap_diag "$v: $(grep -h 'summary:' <<<"$d" | sed 's/.*summary: //')"
done
tap_is "$done_n" 3 "the source saw Done for each of the three"
tap_unlike "$out" 'CORRUPT|no report|workload: .*FAILED' "never a wrong page, never a missing verdict"
tap_done
