#!/bin/bash
# Runs inside ONE soft-RoCE guest (test/rxe/t/40-container-ns.t): a runc
# container with a time namespace (config.json linux.namespaces type
# "time", linux.timeOffsets monotonic +10 days) and a shell that sleeps as
# its init.  `runc run -d`; when it runs, its CLOCK_MONOTONIC read inside
# (runc exec python3) before `runc checkpoint` and after `runc restore -d`.
# Debian bookworm's runc 1.1.5 knows no time namespace: the run fails, and
# its error (runc's --log) is printed for the test to name.
# Prints `ns: ...` lines.  Environment: RDMIG_NS_DIR (default /tmp/rdmig-ns).
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=runc-bundle.sh
. "$here/runc-bundle.sh"
top=${RDMIG_NS_DIR:-/tmp/rdmig-ns}
id=rdmig-time
b=$top/time
img=$top/img

say() { echo "ns: $*"; }
# runc_err FILE: the last message of runc's --log FILE.
runc_err() { sed -n 's/.*msg="\(.*\)"$/\1/p' "$1" 2>/dev/null | tail -n 1; }
mono() { runc exec "$id" python3 -c 'import time; print("%.3f" % time.monotonic())' 2>&1 | tail -n 1; }

# Pipes for the container's stdio: criu dumps those, not files outside it.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
exec {in_r}<> <(:)
exec {out_w}<> <(:)

rm -rf "$top" && mkdir -p "$top" "$img" || exit 1
say "runc $(runc --version | head -n 1 | awk '{print $3}'), criu $(criu --version | head -n 1 | awk '{print $2}'), kernel $(uname -r)"
runc_bundle "$b" /tmp "$top/io" '["/bin/sh", "-c", "exec sleep 100000"]' || exit 1
python3 - "$b/config.json" <<'EOF_PY' || exit 1
import json, sys
with open(sys.argv[1]) as f:
    c = json.load(f)
c["linux"]["namespaces"].append({"type": "time"})
c["linux"]["timeOffsets"] = {"monotonic": {"secs": 864000, "nanosecs": 0}}
with open(sys.argv[1], "w") as f:
    json.dump(c, f, indent=1)
EOF_PY
if ! (cd "$b" && runc --log "$top/run.log" run -d "$id" <&"$in_r" >&"$out_w" 2>&"$out_w"); then
	say "runc run failed: $(runc_err "$top/run.log")"
	exit 0
fi
m0=$(mono)
say "running; CLOCK_MONOTONIC inside $m0, offsets $(tr '\n' ' ' <"/proc/$(cpid "$id")/timens_offsets")"
st=0
if runc --log "$top/ckpt.log" checkpoint --image-path "$img" --work-path "$img" "$id" &&
	(cd "$b" && runc --log "$top/rst.log" restore -d --image-path "$img" --work-path "$img" "$id" \
		<&"$in_r" >&"$out_w" 2>&"$out_w"); then
	say "restored; CLOCK_MONOTONIC inside $(mono) (before the checkpoint $m0)"
else
	say "checkpoint or restore failed: $(runc_err "$top/ckpt.log") $(runc_err "$top/rst.log")"
	st=1
fi
runc kill "$id" KILL >/dev/null 2>&1
sleep 0.3
runc delete -f "$id" >/dev/null 2>&1
exit $st
