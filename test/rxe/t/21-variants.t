#!/bin/bash
# The post-copy variants over RDMA in one soft-RoCE guest: the restored
# process forks, mremaps, madvise(DONTNEED)s or munmaps during post-copy,
# and a process tree with a zombie; every byte is checked each time.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/migrate.sh
tap_plan 15

secret=$(mktemp "$top/.cache/rxe/secret.XXXXXX")
trap 'rm -f "$secret"' EXIT
head -c 32 /dev/urandom >"$secret" && chmod 600 "$secret"

# One boot, five migrations; each prints a marker with its status.
tap_run --timeout 600 -- sh -c "
	export RDMIG_BUILD=$build RDMIG_SECRET=$secret RDMIG_SIZE=16M
	export RDMIG_DEST_ARGS='--drain-depth 1 --drain-chunk 4K'
	port=7480
	for v in fork mremap madvise munmap; do
		port=\$((port + 1))
		RDMIG_PORT=\$port RDMIG_STANDIN_ARGS=\"--access mixed --\$v\" $mig both
		echo \"variant \$v status \$?\"
	done
	RDMIG_PORT=7490 RDMIG_MKIMAGE_ARGS='--tasks 3 --zombies 1' $mig both
	echo \"variant zombie status \$?\""
tap_is "$RUN_STATUS" 0 "the guest ran every variant"
out="$RUN_OUT"$'\n'"$RUN_ERR"
for v in fork mremap madvise munmap zombie; do
	tap_like "$out" "^variant $v status 0\$" "$v: migration over RDMA succeeds"
done
tap_unlike "$out" 'MISMATCH|mismatches [1-9]' "no variant read a wrong byte"
tap_like "$out" 'fork child: pages [0-9]+ verified, mismatches 0' "fork: the child verified its pages"
tap_like "$out" 'summary: status=ok .*forks=1' "fork: rdmig-dest served the child's uffd"
tap_like "$out" 'moved 0x' "mremap: the moved range was verified"
tap_like "$out" 'summary: status=ok .*remaps=[1-9]' "mremap: rdmig-dest followed the REMAP event"
tap_like "$out" 'MADV_DONTNEED 0x' "madvise: the range read as zero afterwards"
tap_like "$out" 'summary: status=ok .*removes=[1-9]' "madvise: rdmig-dest handled the REMOVE event"
tap_like "$out" 'summary: status=ok .*unmaps=[1-9]' "munmap: rdmig-dest handled the UNMAP event"
tap_like "$out" 'summary: status=ok tasks=2 .*zombies=1' "zombie: two processes and one zombie served"
tap_diag "$(grep -hE '^variant|summary:' <<<"$out")"
tap_done
