#!/bin/bash
# Sourced by the runc guest scripts (lib/runc-migrate.sh,
# lib/container-migrate.sh): the OCI bundle they run rdmig-workload in.
#
# runc_bundle DIR TESTDIR IO ARGS_JSON [MEM_MAX CPU_QUOTA CPU_PERIOD]
#   DIR/rootfs is a read-only root that binds the guest's /usr (so /bin,
#   /lib... exist), TESTDIR (the build's test/, at /rdmig) and the writable
#   IO at /io; DIR/config.json comes from `runc spec`, adjusted with
#   python3: no terminal, no network namespace, the process ARGS_JSON (a
#   JSON array), and with MEM_MAX given the cgroup limits
#   linux.resources.memory.limit and cpu quota/period.
# cstate ID, cpid ID: the container's status (running, stopped; empty when
# gone) and its init's pid, from runc state.
runc_bundle() {
	local dir=$1 test=$2 io=$3 args=$4
	mkdir -p "$dir/rootfs" "$io" || return 1
	(
		cd "$dir/rootfs" || exit 1
		mkdir -p usr proc dev sys tmp io rdmig
		ln -s usr/bin bin && ln -s usr/lib lib && ln -s usr/lib64 lib64 && ln -s usr/sbin sbin
	) || return 1
	(cd "$dir" && runc spec) || return 1
	# python3: criu depends on it, so it is there wherever criu is.
	python3 - "$dir/config.json" "$test" "$io" "$args" "${5:-}" "${6:-}" "${7:-}" <<'EOF_PY'
import json, sys
path, test, io, args, mem, quota, period = sys.argv[1:]
with open(path) as f:
    c = json.load(f)
c["process"]["terminal"] = False
c["process"]["args"] = json.loads(args)
# No network namespace: the workload needs none, so criu has no network
# namespace (interfaces, routes, firewall rules) to dump and restore.
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
if mem:
    c["linux"]["resources"]["memory"] = {"limit": int(mem)}
    c["linux"]["resources"]["cpu"] = {"quota": int(quota), "period": int(period)}
# "bind", not "rbind": criu cannot dump the submounts of an external bind
# mount (the guest has its kernel's modules bound at /usr/lib/modules).
c["mounts"] += [
    {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["bind", "ro"]},
    {"destination": "/rdmig", "type": "bind", "source": test, "options": ["bind", "ro"]},
    {"destination": "/io", "type": "bind", "source": io, "options": ["bind", "rw"]},
]
with open(path + ".new", "w") as f:
    json.dump(c, f, indent=1)
EOF_PY
	[ -s "$dir/config.json.new" ] && mv "$dir/config.json.new" "$dir/config.json"
}

# runc_workload_bundle DIR TESTDIR IO SIZE_MB [MEM_MAX CPU_QUOTA CPU_PERIOD]:
# runc_bundle whose process is rdmig-workload (SIZE_MB MiB, 2 threads
# rewriting and verifying it; report, check and pid files in /io).
runc_workload_bundle() {
	runc_bundle "$1" "$2" "$3" "[\"/rdmig/rdmig-workload\", \"--size\", \"$4\", \"--threads\", \"2\", \"--report\", \"/io/report\", \"--check-file\", \"/io/check\", \"--pid-file\", \"/io/pid\"]" "${@:5}"
}

cstate() { runc state "$1" 2>/dev/null | sed -n 's/^ *"status": "\([a-z]*\)".*/\1/p'; }
cpid() { runc state "$1" 2>/dev/null | sed -n 's/^ *"pid": \([0-9]*\).*/\1/p'; }
