#!/bin/bash
# A runc container between two soft-RoCE hosts through both agents, with
# one command (issue 13): guest A's rdmig-source (--runc) checkpoints the
# container rdmig-ctr (rdmig-workload, 64 MiB, two threads rewriting and
# checking it) with Debian's runc 1.1.5 and criu 3.17 when guest B's
# rdmig-dest --serve (--bundle-root, --runc) has reserved the migration and
# found the bundle; B's worker restores it with `runc restore --lazy-pages`
# under the same id, serving its faults over RDMA.  `rdmigctl migrate
# --container rdmig-ctr --to 192.0.2.2 --verify --wait`.  The workload
# verifies all its memory on B while pages still move and after the last
# one; `runc list` has it running on B only; its cgroup limits
# (memory.max, cpu.max, from the bundle's config.json) are equal on both
# sides; its bind mount with shared propagation under the rootfs (/shared)
# comes back on B, still shared.  Before that, a container whose bundle B lacks is refused before
# its freeze and keeps running on A; and a rollback: a second container
# (rdmig-rb) checkpointed by A's agent without a destination agent is
# restored on B by a one-shot `rdmig-dest --restore --container` (a slowed
# drain) that is killed in post-copy: the container on B must be killed,
# a plain rollback is refused (the source paused it: a destination in
# post-copy may come back), `rdmigctl abort` and `rollback --force` restore
# it on A with runc restore, where it verifies its memory and keeps
# rewriting it.  Guest side: lib/container-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/container-migrate.sh
tap_plan 27

rxe_require_built "$build" source-agent/rdmig-source dest-agent/rdmig-dest rdmigctl/rdmigctl test/rdmig-workload
rxe_require_cmds runc criu python3
rxe_agents_pki "$top"
env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SECRET=$secrets/s RDMIG_SIZE_MB=64"

tap_run_pair "$env_common" "$mig"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "rdmigctl migrate --container --to: the pair run exits 0"
# said SIDE WHAT: the rest of the first line where SIDE (source, dest)
# said "rdmig-ctr WHAT" of its container (WHAT a sed pattern).
said() { sed -n "s/^\\[$1\\] handover: $1: rdmig-ctr $2//p" <<<"$RUN_OUT" | head -n 1; }
src_lim=$(said source 'running pid [0-9]*, limits ')
dst_lim=$(said dest 'running pid [0-9]*, limits ')
src_mnt=$(said source 'mount: ')
dst_mnt=$(said dest 'mount: ')
tap_is "$src_lim" "memory.max=268435456 cpu.max=50000/100000" \
	"the container runs on guest A with the bundle's limits"
tap_like "$out" '^\[source\] handover: bad bundle: migrate exited 1: rdmigctl: nothing was frozen: .*bundle /tmp/rdmig-ctr/bundles/bad: not here' \
	"a container whose bundle guest B lacks: refused before the freeze, the bundle named"
tap_like "$out" '^\[source\] handover: bad bundle: rdmig-bad after the refusal: running$' \
	"... and it still runs on guest A"
tap_like "$out" '^\[source\] handover: rb: checkpointed and serving \(serving\); runc list on A: ' \
	"rb: checkpointed by the source agent without a destination agent, serving"
tap_unlike "$(grep -a '^\[source\] handover: rb: checkpointed' <<<"$RUN_OUT")" 'rdmig-rb=' \
	"rb: gone from runc's list on A once checkpointed"
tap_like "$out" '^\[dest\] handover: rb: runc restored rdmig-rb on B: running, pid [0-9]+' \
	"rb: rdmig-dest --restore --container restored it on B with runc restore --lazy-pages"
tap_like "$out" '^\[dest\] handover: rb: the restored container was killed' \
	"rb: rdmig-dest killed in post-copy: the container on B was killed, never ran on with missing pages"
tap_like "$out" '^\[source\] handover: rb: rollback without force: status 1 \(.*is paused' \
	"rb: a plain rollback is refused: the source paused the migration"
tap_like "$out" '^\[source\] handover: rb: abort: status 0 .*; state aborted$' \
	"rb: told by B that no copy runs there, the operator aborts it"
tap_like "$out" '^\[source\] handover: rb: after the rollback: rolled_back; rdmig-rb running; runc list on A: .*rdmig-rb=running' \
	"rb: rollback --force: rolled_back, the container runs on A again (runc list)"
tap_like "$out" '^\[source\] handover: rb: the rolled back container verified its memory and kept rewriting it' \
	"rb: the rolled back container verified 64 MiB and its generation advanced"
tap_like "$out" '^\[source\] source: .*migration c1: container rdmig-ctr \(init process [0-9]+\) checkpointed to ' \
	"the source agent checkpointed the container with runc"
tap_like "$out" '^\[source\] handover: migration c1 \(source\): done$' "the report says done"
tap_like "$out" '^\[source\] handover:   dest: +192\.0\.2\.2:7472 \(destination agent: done\)' \
	"... the destination agent on 192.0.2.2:7472 says done too"
tap_like "$out" '^\[dest\] handover: dest worker: .*runc restore of container rdmig-ctr: .* restore --lazy-pages .*--bundle /tmp/rdmig-ctr/bundles/wl -d .* rdmig-ctr$' \
	"guest B's worker restored it with runc restore --lazy-pages, same bundle, same id"
tap_like "$out" '^\[dest\] handover: dest runc list: .*rdmig-ctr=running' "runc list on guest B: running"
tap_unlike "$(grep -a '^\[source\] handover: source runc list after the migration:' <<<"$RUN_OUT")" 'rdmig-ctr' \
	"runc list on guest A: gone (never in two places)"
tap_is "$dst_lim" "$src_lim" "memory.max and cpu.max equal on both sides ($dst_lim)"
tap_like "$src_mnt" '^/[^ ]*/propagated /shared rw[^ ]* .*shared:[0-9]+' \
	"the container on A has /shared, a bind mount with shared propagation ($src_mnt)"
tap_like "$dst_mnt" "^${src_mnt%% *} /shared rw[^ ]* .*shared:[0-9]+" \
	"... it came back on B: same source, same mount point, still shared ($dst_mnt)"
tap_like "$out" '^\[source\] handover: json: .*"container":\{"runtime":"runc","id":"rdmig-ctr",.*"verify":true' \
	"the source's API reports the container, verified migration"
tap_diag "$(grep -h '^\[dest\] handover: verifying' <<<"$RUN_OUT")"
tap_handover_verified "$out"
down=$(handover_num times.downtime_ms)
freeze=$(handover_num times.freeze_ms)
tap_cmp "${down:-x}" -ge "${freeze:-y}" "downtime_ms ($down) is reported and >= the checkpoint's freeze_ms ($freeze)"
tap_like "$out" '^\[source\] handover:   dump: +[0-9.]+ m?s \(runc checkpoint;' \
	"the report names runc's checkpoint and restore"
tap_handover_diag
tap_done
