#!/bin/bash
# The destination worker hurt in post-copy (issue 12's Tests), a soft-RoCE
# guest pair, both agents as in t/33-handover.t (`rdmigctl migrate --pid
# --to`, RDMA, --verify, mutual TLS), a 16 MiB rdmig-workload verifying all
# its memory on the destination while pages move and after the last one.
# The destination agent runs from a copy of rdmig-dest in a temp dir.
#   wkill: the worker SIGKILLed once 20% of the pages are in: `rdmig-dest
#     --serve` starts a new worker that takes the userfaultfds from the
#     guard (the workload's faults wait in the kernel meanwhile); done.
#   binswap: that copy replaced by a new file (a new inode, as a package
#     upgrade does), then the worker SIGKILLed at 20%: the worker taking
#     over runs the new file; done.
# The destination agent drains one 4 KiB page at a time (agentfail-migrate.sh's
# RDMIG_DRAIN_ARGS) and the workload rewrites about 100 pages/s, so 20% is
# seen with most pages left.
# Guest side: lib/agentfail-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/agentfail-tap.sh
. "$(dirname "$0")/../lib/agentfail-tap.sh"
tap_plan 22
af_setup
af_run RDMIG_SIZE_MB=16 RDMIG_CASES="'wkill binswap'"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"

for c in wkill binswap; do
	af_true $c at '.total > 0 and .fetched < .total and (.final | not)' \
		"$c: the destination worker SIGKILLed in post-copy with pages left: $(af_json $c at)"
	af_true $c exe '.new_worker > 0' "$c: rdmig-dest --serve started a new worker"
	af_ends $c
	af_paused $c source
	af_true $c dest '.takeovers == 1' "$c: the destination agent counts one takeover"
done
af_true binswap exe '.worker_ino == .file_ino and .worker_ino != .supervisor_ino' \
	"binswap: the worker that took over runs the replaced file, not the supervisor's old binary: $(af_json binswap exe)"
af_diag
tap_done
